//! Observability end to end: each kind of request moves our Envoy stats by exactly its amounts (requests,
//! attempts, fallbacks, tokens, cost = tokens × the catalog's prices, errors by class), `/stats/prometheus`
//! shows them as labelled series, and the access log has one JSON line per request with the account.

mod common;

use common::http;
use common::router::{catalog, provider, Router, CLIENT_KEY};
use llm_router_testkit::mock::{Behavior, MockProvider, FIRST_EVENT_TIMEOUT};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The mock's usage block: 11 prompt and 7 completion tokens on every completion and stream.
const PROMPT: u64 = 11;
const COMPLETION: u64 = 7;

/// Nano-USD per token at a price of 1 USD per million tokens.
const NANO: u64 = 1_000;

/// `cheap`: prompt 1, completion 2, cache read 0.5 (USD per million tokens); `backup`: prompt 3,
/// completion 4. One model, `test/chat`, on both; only `search-ui` is a known app.
fn router() -> Router {
    let cheap = MockProvider::start("cheap");
    let backup = MockProvider::start("backup");
    let c = catalog(
        vec![provider("cheap", cheap.port()), provider("backup", backup.port())],
        vec![json!({"id": "test/chat", "endpoints": [
            {"provider": "backup", "model": "chat@backup", "pricing": {"prompt": 3, "completion": 4}},
            {"provider": "cheap", "model": "chat@cheap",
             "pricing": {"prompt": 1, "completion": 2, "cache_read": 0.5}},
        ]})],
        json!({"apps": ["search-ui"]}),
    );
    Router::start(c, vec![cheap, backup])
}

/// A chat for `test/chat`, cheapest provider first, with extra request headers.
fn chat(r: &Router, stream: bool, headers: &[(&str, &str)]) -> http::Response {
    let body = json!({"model": "test/chat", "stream": stream, "provider": {"sort": "price"},
                      "messages": [{"role": "user", "content": "Hello"}]});
    let auth = format!("Bearer {CLIENT_KEY}");
    let mut all = vec![("content-type", "application/json"), ("authorization", auth.as_str())];
    all.extend_from_slice(headers);
    http::request(r.envoy.port, "POST", "/v1/chat/completions", &all, body.to_string().as_bytes())
}

fn fail(code: u16) -> Behavior {
    Behavior::Status { code, headers: vec![], body: format!(r#"{{"error":{{"message":"mock {code}"}}}}"#) }
}

/// Every counter we define, by its Envoy name (`wasmcustom.llm_router.…`).
fn counters(r: &Router) -> BTreeMap<String, u64> {
    let resp = r.envoy.admin_get("/stats?format=json&filter=%5Ewasmcustom%5C.llm_router%5C.");
    let v: Value = serde_json::from_slice(&resp.body).unwrap();
    v["stats"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| Some((s["name"].as_str()?.to_string(), s["value"].as_u64()?)))
        .collect()
}

/// Waits until some counter grew past `before` and the counters stopped changing (the account is recorded
/// when Envoy finishes the request, and counters reach Envoy at the filter's next flush, within a second),
/// then returns the
/// counters that moved, by how much, without the `wasmcustom.` namespace.
fn moved(r: &Router, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = counters(r);
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = counters(r);
        let grew = now.iter().any(|(k, v)| *v > before.get(k).copied().unwrap_or(0));
        if grew && now == last {
            break;
        }
        assert!(Instant::now() < deadline, "the counters did not move: {now:#?}");
        last = now;
    }
    last.into_iter()
        .filter_map(|(name, v)| {
            let d = v - before.get(&name).copied().unwrap_or(0);
            (d > 0).then(|| (name.trim_start_matches("wasmcustom.").to_string(), d))
        })
        .collect()
}

fn expect(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(n, v)| (n.to_string(), *v)).collect()
}

/// The counters a served request moves: `model` and `key` families, tokens and cost.
fn served(model_family: &str, key_family: &str, cached: u64, cost: u64, attempts: u64) -> Vec<(String, u64)> {
    let mut out = vec![];
    for family in [model_family, key_family] {
        out.push((format!("{family}.requests"), 1));
        out.push((format!("{family}.prompt_tokens"), PROMPT));
        out.push((format!("{family}.completion_tokens"), COMPLETION));
        out.push((format!("{family}.cached_tokens"), cached));
        out.push((format!("{family}.cost_nano_usd"), cost));
    }
    out.push((format!("{model_family}.attempts"), attempts));
    out.push((format!("{model_family}.fallbacks"), u64::from(attempts > 1)));
    out.retain(|(_, v)| *v > 0);
    out
}

const CHEAP: &str = "llm_router.model.test_chat.provider.cheap";
const BACKUP: &str = "llm_router.model.test_chat.provider.backup";

#[test]
fn each_request_moves_the_counters_by_exactly_its_amounts() {
    let r = router();
    let cheap_cost = PROMPT * NANO + COMPLETION * 2 * NANO;

    // Non-streamed, a known app by title.
    let before = counters(&r);
    let resp = chat(&r, false, &[("x-title", "search-ui")]);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let want: BTreeMap<String, u64> =
        served(CHEAP, "llm_router.key.tests.app.search-ui", 0, cheap_cost, 1).into_iter().collect();
    assert_eq!(moved(&r, &before), want, "non-streamed");

    // Streamed, an unlisted app by referer: `other`.
    let before = counters(&r);
    let resp = chat(&r, true, &[("http-referer", "https://unknown.example/page")]);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(resp.text().contains("data: [DONE]"), "{}", resp.text());
    let want: BTreeMap<String, u64> =
        served(CHEAP, "llm_router.key.tests.app.other", 0, cheap_cost, 1).into_iter().collect();
    assert_eq!(moved(&r, &before), want, "streamed");

    // Cached prompt tokens: 4 of the 11 at the cache-read price.
    r.mock("cheap").set_behavior(Behavior::Status {
        code: 200,
        headers: vec![],
        body: json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "chat@cheap",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": PROMPT, "completion_tokens": COMPLETION, "total_tokens": PROMPT + COMPLETION,
                      "prompt_tokens_details": {"cached_tokens": 4}}})
        .to_string(),
    });
    let before = counters(&r);
    let resp = chat(&r, false, &[]);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let cached_cost = (PROMPT - 4) * NANO + 4 * NANO / 2 + COMPLETION * 2 * NANO;
    let want: BTreeMap<String, u64> =
        served(CHEAP, "llm_router.key.tests.app.none", 4, cached_cost, 1).into_iter().collect();
    assert_eq!(moved(&r, &before), want, "cached tokens");

    // The cheap provider fails: backup serves on the second attempt, at its own prices.
    r.mock("cheap").set_behavior(fail(500));
    let before = counters(&r);
    let resp = chat(&r, false, &[]);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("x-llm-provider"), Some("backup"));
    let backup_cost = PROMPT * 3 * NANO + COMPLETION * 4 * NANO;
    let want: BTreeMap<String, u64> =
        served(BACKUP, "llm_router.key.tests.app.none", 0, backup_cost, 2).into_iter().collect();
    assert_eq!(moved(&r, &before), want, "fallback");

    // Both fail: a 502 `provider_unavailable`, no tokens, no cost, counted for the last provider tried:
    // `cheap`, which the health memory has moved last since it failed just before.
    r.mock("backup").set_behavior(fail(503));
    let before = counters(&r);
    let resp = chat(&r, false, &[]);
    assert_eq!(resp.status, 502, "{}", resp.text());
    assert_eq!(resp.json()["error"]["metadata"]["error_type"], "provider_unavailable");
    let want = expect(&[
        ("llm_router.error.provider_unavailable.provider.cheap.requests", 1),
        (&format!("{CHEAP}.requests"), 1),
        (&format!("{CHEAP}.errors"), 1),
        (&format!("{CHEAP}.attempts"), 2),
        (&format!("{CHEAP}.fallbacks"), 1),
        ("llm_router.key.tests.app.none.requests", 1),
        ("llm_router.key.tests.app.none.errors", 1),
    ]);
    assert_eq!(moved(&r, &before), want, "every provider failed");

    // An unknown model: no model, no provider.
    let before = counters(&r);
    let body = json!({"model": "nope/none", "messages": [{"role": "user", "content": "Hello"}]});
    let resp = r.chat(&body);
    assert_eq!(resp.status, 404, "{}", resp.text());
    let want = expect(&[
        ("llm_router.error.model_not_found.provider.none.requests", 1),
        ("llm_router.model.none.provider.none.requests", 1),
        ("llm_router.model.none.provider.none.errors", 1),
        ("llm_router.key.tests.app.none.requests", 1),
        ("llm_router.key.tests.app.none.errors", 1),
    ]);
    assert_eq!(moved(&r, &before), want, "unknown model");
}

/// The value of one Prometheus sample line `name{labels} value`, if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn prometheus_shows_labelled_series_and_latency_histograms() {
    let r = router();
    for stream in [false, true] {
        assert_eq!(chat(&r, stream, &[("x-title", "search-ui")]).status, 200);
    }
    let model = r#"{model="test_chat",provider="cheap"}"#;
    let key = r#"{key="tests",app="search-ui"}"#;
    // Histograms reach /stats/prometheus on Envoy's stats flush (every 5 s by default).
    let deadline = Instant::now() + Duration::from_secs(15);
    let text = loop {
        let text = r.envoy.admin_get("/stats/prometheus").text();
        if sample(&text, r#"llm_router_duration_ms_count{provider="cheap"}"#) == Some(2.0) {
            break text;
        }
        assert!(Instant::now() < deadline, "no duration histogram with 2 samples:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    };
    for (series, want) in [
        (format!("llm_router_model_requests{model}"), 2.0),
        (format!("llm_router_model_prompt_tokens{model}"), 2.0 * PROMPT as f64),
        (format!("llm_router_model_completion_tokens{model}"), 2.0 * COMPLETION as f64),
        (format!("llm_router_model_cached_tokens{model}"), 0.0),
        (format!("llm_router_model_cost_nano_usd{model}"), 2.0 * (PROMPT + 2 * COMPLETION) as f64 * 1000.0),
        (format!("llm_router_model_attempts{model}"), 2.0),
        (format!("llm_router_model_fallbacks{model}"), 0.0),
        (format!("llm_router_model_errors{model}"), 0.0),
        (format!("llm_router_key_requests{key}"), 2.0),
        (format!("llm_router_key_cost_nano_usd{key}"), 2.0 * (PROMPT + 2 * COMPLETION) as f64 * 1000.0),
        (r#"llm_router_ttfb_ms_count{provider="cheap"}"#.to_string(), 2.0),
        (r#"llm_router_duration_ms_bucket{provider="cheap",le="+Inf"}"#.to_string(), 2.0),
    ] {
        assert_eq!(sample(&text, &series), Some(want), "{series} in\n{text}");
    }
    assert!(text.contains("# TYPE llm_router_duration_ms histogram"), "{text}");
    assert!(text.contains(r#"llm_router_ttfb_ms_bucket{provider="cheap",le="5"}"#), "our buckets:\n{text}");
    assert!(!text.contains("wasmcustom"), "the namespace never reaches Prometheus names");
}

/// Every access-log line so far: the generated config writes them to `/dev/stdout`, which the harness
/// sends to `stdout.txt` in Envoy's directory. Waits until there are at least `n`.
fn access_log(r: &Router, n: usize) -> Vec<Value> {
    let path = r.envoy.dir().join("stdout.txt");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("access log line is not JSON ({e}): {l}"))
            })
            .collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(Instant::now() < deadline, "{} access-log lines, want {n}:\n{text}", lines.len());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The account in an access-log line (a JSON object encoded as a string: see the README).
fn account(line: &Value) -> Value {
    match &line["account"] {
        Value::String(s) => {
            serde_json::from_str(s).unwrap_or_else(|e| panic!("account is not JSON ({e}): {s}"))
        }
        other => other.clone(),
    }
}

#[test]
fn the_access_log_has_one_json_line_per_request_with_the_account() {
    let r = router();
    assert_eq!(chat(&r, false, &[("x-title", "search-ui")]).status, 200);
    assert_eq!(chat(&r, true, &[]).status, 200);
    r.mock("cheap").set_behavior(fail(500));
    assert_eq!(chat(&r, false, &[]).status, 200);
    let models = http::request(r.envoy.port, "GET", "/v1/models", &[], b"");
    assert_eq!(models.status, 200);

    let lines = access_log(&r, 4);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    for line in &lines {
        for field in
            ["start_time", "method", "path", "status", "duration_ms", "upstream_cluster", "request_id"]
        {
            assert!(line.get(field).is_some(), "{field} missing in {line}");
        }
        assert!(!line.to_string().contains(CLIENT_KEY), "the client key never reaches the log: {line}");
    }
    let (first, stream, fallback, list) = (&lines[0], &lines[1], &lines[2], &lines[3]);
    assert_eq!(first["method"], "POST");
    // The path as sent to the provider that served: the upstream role rewrites the request's (shared)
    // header map, which is what the access log reads.
    assert!(first["path"].as_str().is_some_and(|p| p.ends_with("/chat/completions")), "{first}");
    assert_eq!(first["status"], 200);
    assert_eq!(first["upstream_cluster"], "llm_provider_cheap");
    assert!(first.get("route").is_none(), "the route explanation is in the account: {first}");

    let a = account(first);
    assert!(a["route"].as_str().is_some_and(|s| s.contains("test/chat")), "{a}");
    let cheap_cost = PROMPT * NANO + COMPLETION * 2 * NANO;
    for (field, want) in [
        ("key", json!("tests")),
        ("app", json!("search-ui")),
        ("requested_model", json!("test/chat")),
        ("model", json!("test/chat")),
        ("provider", json!("cheap")),
        ("attempts", json!(1)),
        ("status", json!(200)),
        ("stream", json!(false)),
        ("prompt_tokens", json!(PROMPT)),
        ("completion_tokens", json!(COMPLETION)),
        ("cached_tokens", json!(0)),
        ("cost_nano_usd", json!(cheap_cost)),
        ("error_type", Value::Null),
    ] {
        assert_eq!(a[field], want, "{field} in {a}");
    }
    let session = a["session"].as_str().unwrap_or_default();
    assert!(session.len() == 8 && session.bytes().all(|b| b.is_ascii_hexdigit()), "session prefix: {a}");
    assert!(a["ttfb_ms"].is_u64() && a["duration_ms"].is_u64(), "{a}");

    let s = account(stream);
    assert_eq!((s["stream"].as_bool(), s["app"].as_str()), (Some(true), Some("")), "{s}");
    assert_eq!((s["prompt_tokens"].as_u64(), s["cost_nano_usd"].as_u64()), (Some(PROMPT), Some(cheap_cost)));

    let f = account(fallback);
    assert_eq!((f["provider"].as_str(), f["attempts"].as_u64()), (Some("backup"), Some(2)), "{f}");
    assert_eq!(f["cost_nano_usd"], json!(PROMPT * 3 * NANO + COMPLETION * 4 * NANO));
    assert_eq!(fallback["upstream_cluster"], "llm_fallback_backup", "fallbacks go through fallback clusters");

    assert_eq!(list["path"], "/v1/models");
    assert!(list["account"].is_null(), "no account for a non-chat request: {list}");
}

#[test]
fn usage_report_reads_the_real_access_log() {
    let r = router();
    for stream in [false, true, false] {
        assert_eq!(chat(&r, stream, &[("x-title", "search-ui")]).status, 200);
    }
    access_log(&r, 3);
    let script = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join("scripts/usage-report");
    let out = Command::new("python3")
        .arg(&script)
        .arg("--json")
        .arg(r.envoy.dir().join("stdout.txt"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = report["by_model_provider"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["model"] == "test/chat" && row["provider"] == "cheap")
        .unwrap_or_else(|| panic!("no test/chat on cheap in {report:#}"))
        .clone();
    assert_eq!(row["requests"], 3);
    assert_eq!(row["errors"], 0);
    assert_eq!(row["prompt_tokens"], 3 * PROMPT);
    assert_eq!(row["completion_tokens"], 3 * COMPLETION);
    assert_eq!(row["cost_nano_usd"], 3 * (PROMPT + 2 * COMPLETION) * NANO);
    assert!(row["p50_ms"].is_number() && row["p95_ms"].is_number(), "{row}");
    let app = report["by_app"].as_array().unwrap().iter().find(|a| a["app"] == "search-ui").cloned();
    assert_eq!(app.map(|a| a["requests"].clone()), Some(json!(3)), "{report:#}");
}

/// A client that hangs up mid-stream is still accounted: one access-log line with the account of what was
/// delivered (here the stream ended before the usage chunk, so tokens and cost are unknown, not zero).
#[test]
fn a_client_that_disconnects_mid_stream_is_still_accounted() {
    let r = router();
    r.mock("cheap").hold_streams(true);
    let body = json!({"model": "test/chat", "stream": true, "provider": {"sort": "price"},
                      "messages": [{"role": "user", "content": "Hello"}]})
    .to_string();
    let auth = format!("Bearer {CLIENT_KEY}");
    // The hold outlasts the head's and event 1's read timeout: event 1 must come while the mock still
    // holds the stream.
    let mut s = http::open_stream_within(
        FIRST_EVENT_TIMEOUT,
        r.envoy.port,
        "POST",
        "/v1/chat/completions",
        &[("authorization", &auth), ("content-type", "application/json")],
        body.as_bytes(),
    );
    assert!(s.next_event().is_some_and(|e| e.contains("Hello ")));
    assert_eq!(r.mock("cheap").held(), 1, "event 1 must arrive while the mock holds event 2");
    drop(s);
    r.mock("cheap").release_stream();
    let lines = access_log(&r, 1);
    let a = account(&lines[0]);
    assert_eq!((a["stream"].as_bool(), a["provider"].as_str()), (Some(true), Some("cheap")), "{a}");
    // The provider streamed and bills, but its usage chunk never reached us: an estimate, flagged. The
    // prompt from the body's bytes (4 to a token), one completion token per content chunk seen.
    let prompt = (body.len() as u64).div_ceil(4);
    assert_eq!(
        (a["usage_estimated"].as_bool(), a["prompt_tokens"].as_u64(), a["completion_tokens"].as_u64()),
        (Some(true), Some(prompt), Some(1)),
        "{a}"
    );
    assert!(a["cost_nano_usd"].as_u64().is_some_and(|c| c > 0), "{a}");
    assert!(a["duration_ms"].is_u64(), "{a}");
}
