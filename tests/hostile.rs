//! Hostile clients and providers through a real Envoy: inputs that once stalled or trapped the VM, or
//! carried a credential across a boundary. Each test sends the input, checks the documented answer, and
//! then checks the VM is still the one it was and serves the next normal request.

mod common;

use common::corpus;
use common::http::{post_chunked_with_trailer, request, try_request, Response};
use common::router::{
    catalog, chat_body, endpoint, first_and_second, provider, provider_key, Router, CLIENT_KEY,
};
use llm_router_testkit::mock::{Behavior, MockProvider};
use serde_json::{json, Value};

/// `first` (cheapest) and `second` serving `test/m`.
fn router() -> Router {
    first_and_second(json!({}), json!({}))
}

/// The VMs Envoy has created so far (one per worker plus the main thread's; a trapped VM that is
/// replaced adds one).
fn vms_created(r: &Router) -> u64 {
    r.envoy.stat("wasm.envoy.wasm.runtime.v8.created").expect("the wasm runtime's created stat")
}

/// After a hostile exchange: no panic in Envoy's log, no VM replaced since `created`, and a run of
/// normal requests all served (a trapped VM would fail them with 503).
fn assert_still_serving(r: &Router, created: u64) {
    for behavior in ["first", "second"] {
        r.mock(behavior).set_behavior(Behavior::Ok);
    }
    for i in 0..8 {
        let resp = r.chat(&chat_body("test/m", i % 2 == 1));
        assert_eq!(resp.status, 200, "normal request {i} after the hostile one: {}", resp.text());
    }
    let log = r.envoy.log();
    assert!(!log.contains("panicked"), "the filter panicked:\n{log}");
    assert_eq!(vms_created(r), created, "no VM was replaced");
}

fn error_of(resp: &Response) -> Value {
    let v = resp.json();
    assert_eq!(v["error"]["code"], resp.status, "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
    v
}

/// `{"model":…,"messages":[…],"k0000001":0,…}` with `extra` more keys.
fn many_keys(extra: usize) -> String {
    let mut body = String::from(r#"{"model":"test/m","messages":[{"role":"user","content":"Hi"}]"#);
    for i in 0..extra {
        body.push_str(&format!(r#","k{i:07}":0"#));
    }
    body.push('}');
    body
}

#[test]
fn a_request_with_300000_top_level_keys_is_refused_at_once() {
    // Each key was compared with every earlier one: 300,000 keys stalled the worker past the client's
    // 30 s timeout (the harness's read timeout fails this test then).
    let r = router();
    let created = vms_created(&r);
    let body = many_keys(300_000);
    let auth = format!("Bearer {CLIENT_KEY}");
    let resp = try_request(
        r.envoy.port,
        "POST",
        "/v1/chat/completions",
        &[("authorization", &auth), ("content-type", "application/json")],
        body.as_bytes(),
    )
    .expect("an answer within the read timeout");
    assert_eq!(resp.status, 400, "{}", resp.text());
    let v = error_of(&resp);
    assert_eq!(v["error"]["message"], "the request body has more than 256 top-level members", "{v}");
    assert!(r.mock("first").requests().is_empty(), "a refused request reaches no provider");
    assert_still_serving(&r, created);
}

#[test]
fn a_provider_completion_with_300000_keys_does_not_stall_the_worker() {
    let r = router();
    let created = vms_created(&r);
    let body = many_keys(300_000);
    r.mock("first").set_behavior(Behavior::Status { code: 200, headers: vec![], body: body.clone() });
    let resp = r.chat(&chat_body("test/m", false));
    // Not a completion we can read: passed on as the provider sent it, unaccounted.
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.len(), body.len());
    assert_still_serving(&r, created);
}

#[test]
fn a_provider_error_with_no_body_but_trailers_is_replaced_without_trapping_the_vm() {
    // Headers, then trailers, and no data: the filter has no response body to write its error into.
    // Writing one anyway made the SDK panic and the worker's VM answer 503 to every later request.
    let r = router();
    let created = vms_created(&r);
    for m in ["first", "second"] {
        r.mock(m).set_behavior(Behavior::TrailersOnly { code: 400 });
    }
    let resp = r.chat(&chat_body("test/m", false));
    assert_eq!(resp.status, 400, "{}", resp.text());
    let v = error_of(&resp);
    assert_eq!(v["error"]["message"], "Provider FIRST rejected the request (status 400)", "{v}");
    for m in ["first", "second"] {
        r.mock(m).set_behavior(Behavior::TrailersOnly { code: 503 });
    }
    let resp = r.chat(&chat_body("test/m", false));
    assert_eq!(resp.status, 502, "{}", resp.text());
    error_of(&resp);
    // Headers alone (an empty body ends the stream at the headers): our error has a body all the same.
    for m in ["first", "second"] {
        r.mock(m).set_behavior(Behavior::Status { code: 503, headers: vec![], body: String::new() });
    }
    let resp = r.chat(&chat_body("test/m", false));
    assert_eq!(resp.status, 502, "{}", resp.text());
    error_of(&resp);
    assert_still_serving(&r, created);
}

#[test]
fn a_retried_body_ended_by_trailers_gets_the_fallbacks_model_name() {
    // Envoy replays a body that ended with trailers without end-of-stream on its data, then the
    // trailers: the fallback's model name must be spliced on those.
    let r = router();
    let created = vms_created(&r);
    r.mock("first").set_behavior(Behavior::Status { code: 503, headers: vec![], body: "{}".into() });
    let body = chat_body("test/m", false).to_string();
    let (status, text) =
        post_chunked_with_trailer(r.envoy.port, CLIENT_KEY, body.as_bytes(), "x-client-trailer: 1\r\n");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("x-llm-provider: second"), "{text}");
    let got = r.mock("second").requests();
    assert_eq!(got.len(), 1);
    let mut want: Value = serde_json::from_str(&body).unwrap();
    want["model"] = json!("m@second");
    want.as_object_mut().unwrap().remove("provider");
    assert_eq!(got[0].json(), want, "the fallback's own model name, and a body of the right length");
    assert_still_serving(&r, created);
}

#[test]
fn providers_get_only_allowlisted_client_headers() {
    let r = router();
    r.mock("first").set_behavior(Behavior::Status { code: 503, headers: vec![], body: "{}".into() });
    let auth = format!("Bearer {CLIENT_KEY}");
    let sent = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        ("accept", "application/json"),
        ("openai-organization", "org-client"),
        ("openai-project", "proj-client"),
        ("anthropic-api-key", "sk-ant-client-secret"),
        ("anthropic-beta", "tools-2024"),
        ("anthropic-version", "2023-06-01"),
        ("x-goog-user-project", "client-project"),
        ("cookie", "session=client-cookie"),
        ("x-session-id", "client-session"),
        ("x-title", "client app"),
        ("http-referer", "https://client.example"),
        ("user-agent", "client-agent/1.0"),
        ("x-custom", "anything"),
    ];
    let resp = request(
        r.envoy.port,
        "POST",
        "/v1/chat/completions",
        &sent,
        chat_body("test/m", false).to_string().as_bytes(),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    // Both attempts (the first provider's and the fallback's) saw the same scrubbed header map.
    for m in ["first", "second"] {
        let got = r.mock(m).requests();
        assert_eq!(got.len(), 1, "{m}");
        let names: Vec<&str> = got[0].headers.iter().map(|(n, _)| n.as_str()).collect();
        for (name, value) in &sent[3..] {
            assert!(got[0].header(name).is_none(), "{m} got the client's {name}: {names:?}");
            assert!(
                !got[0].headers.iter().any(|(_, v)| v.contains(value)),
                "{m} got the client's {name} value under another name: {:?}",
                got[0].headers
            );
        }
        assert_eq!(got[0].header("content-type"), Some("application/json"), "{m}");
        assert_eq!(got[0].header("accept"), Some("application/json"), "{m}");
        assert_eq!(
            got[0].header("authorization"),
            Some(format!("Bearer {}", provider_key(m)).as_str()),
            "{m}"
        );
    }
}

#[test]
fn a_compressed_request_body_is_refused_not_forwarded_unread() {
    let r = router();
    let auth = format!("Bearer {CLIENT_KEY}");
    let body = chat_body("test/m", false).to_string();
    let resp = request(
        r.envoy.port,
        "POST",
        "/v1/chat/completions",
        &[("authorization", &auth), ("content-type", "application/json"), ("content-encoding", "gzip")],
        body.as_bytes(),
    );
    assert_eq!(resp.status, 415, "{}", resp.text());
    assert_eq!(error_of(&resp)["error"]["metadata"]["error_type"], "invalid_request");
    assert!(r.mock("first").requests().is_empty() && r.mock("second").requests().is_empty());
}

#[test]
fn only_a_key_that_may_debug_sees_the_route_and_the_providers_quota() {
    // The explanation names other tenants' exclusions and recent failures; x-ratelimit-* is the
    // provider account every tenant shares.
    let first = MockProvider::start("first");
    let mut c = catalog(
        vec![provider("first", first.port())],
        vec![json!({"id": "test/m", "endpoints": [endpoint("first", "m@first", 1.0)]})],
        json!({}),
    );
    let other_key = "sk-other-tenant";
    c["keys"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "other", "sha256": llm_router::catalog::hash_token(other_key)}));
    let r = Router::start(c, vec![first]);
    let body = chat_body("test/m", false).to_string();
    for (key, sees) in [(CLIENT_KEY, true), (other_key, false)] {
        let auth = format!("Bearer {key}");
        let resp = request(
            r.envoy.port,
            "POST",
            "/v1/chat/completions",
            &[("authorization", &auth), ("content-type", "application/json"), ("x-llm-router-debug", "1")],
            body.as_bytes(),
        );
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(resp.header("x-llm-route").is_some(), sees, "{key}: {:?}", resp.headers);
        assert_eq!(
            resp.header("x-ratelimit-remaining-requests").is_some(),
            sees,
            "{key}: {:?}",
            resp.headers
        );
    }
}

/// Sends one corpus case on a raw socket (header bytes as given, CR and 0xFF included): the status,
/// the response head as text and the body (de-chunked).
fn send_raw(port: u16, case: &corpus::Case) -> (u16, String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut headers: Vec<(String, Vec<u8>)> = vec![
        ("authorization".into(), format!("Bearer {CLIENT_KEY}").into_bytes()),
        ("content-type".into(), b"application/json".to_vec()),
    ];
    for (name, value) in &case.headers {
        headers.retain(|(n, _)| n != name);
        if !value.is_empty() {
            headers.push((name.clone(), value.clone()));
        }
    }
    let mut request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: router\r\nconnection: close\r\ncontent-length: {}\r\n",
        case.body.len()
    )
    .into_bytes();
    for (name, value) in &headers {
        request.extend_from_slice(name.as_bytes());
        request.extend_from_slice(b": ");
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(&case.body);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(common::http::READ_TIMEOUT)).unwrap();
    // Envoy may answer (413) and close before the whole body is written.
    let _ = s.write_all(&request);
    // Read until the response is complete (not to the close: after an early reply Envoy waits out its
    // delayed-close timeout, a second per case).
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
        let length: Option<usize> =
            head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok());
        let done = match length {
            Some(len) => out.len() >= end + 4 + len,
            None => out.ends_with(b"0\r\n\r\n"),
        };
        if done {
            break;
        }
    }
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(out.len());
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let mut body = out.get(split + 4..).unwrap_or_default().to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut plain = Vec::new();
        let mut rest = &body[..];
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16).unwrap_or(0);
            if size == 0 || rest.len() < eol + 2 + size {
                break;
            }
            plain.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[(eol + 4 + size).min(rest.len())..];
        }
        body = plain;
    }
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, head, body)
}

#[test]
fn the_hostile_corpus_gets_its_documented_answers_and_leaks_nothing() {
    let (limit, cases) = corpus::load();
    let r = first_and_second(json!({"context_length": 1_000_000}), json!({"max_request_bytes": limit}));
    let created = vms_created(&r);
    let secrets = [corpus::CANARY.to_string(), provider_key("first"), provider_key("second")];
    let mut wrong = Vec::new();
    for case in &cases {
        let (status, head, body) = send_raw(r.envoy.port, case);
        let text = String::from_utf8_lossy(&body);
        if status != case.status {
            wrong.push(format!(
                "{}: {status} (want {}): {}",
                case.name,
                case.status,
                &text[..text.len().min(300)]
            ));
            continue;
        }
        for secret in &secrets {
            let leaked = head.contains(secret.as_str()) || text.contains(secret.as_str());
            assert!(!leaked, "{}: a secret came back", case.name);
        }
        if status >= 400 && !case.envoy {
            let v: Value =
                serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{}: {e}: {text}", case.name));
            assert_eq!(v["error"]["code"], status, "{}: {v}", case.name);
            assert!(v["error"]["metadata"]["error_type"].is_string(), "{}: {v}", case.name);
            assert!(v["error"]["message"].as_str().is_some_and(|m| m.len() <= 1024), "{}: {v}", case.name);
        }
    }
    assert!(wrong.is_empty(), "cases with another status:\n{}", wrong.join("\n"));
    // No provider received a client secret, in any header or body.
    for m in ["first", "second"] {
        for req in r.mock(m).requests() {
            let all = format!("{:?} {}", req.headers, String::from_utf8_lossy(&req.body));
            assert!(
                !all.contains(corpus::CANARY),
                "{m} received the client's secret: {}",
                &all[..all.len().min(500)]
            );
            assert!(!all.contains(CLIENT_KEY), "{m} received the client's key");
            assert!(req.header("x-injected").is_none(), "{m} received a header a CR smuggled in");
        }
    }
    let log = r.envoy.log();
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "a secret in Envoy's log");
    }
    assert_still_serving(&r, created);
}

#[test]
fn an_attempt_the_provider_never_answered_is_counted_with_its_estimated_prompt() {
    // The provider had the prompt (and may bill it) but the per-try timeout moved on to the fallback:
    // the logger counts the attempt and estimates its prompt tokens per provider.
    let r = first_and_second(json!({}), json!({"response_timeout_ms": 300}));
    r.mock("first").set_behavior(Behavior::Delay { ms: 3000 });
    let body = chat_body("test/m", false);
    let resp = r.chat(&body);
    assert_eq!((resp.status, resp.header("x-llm-provider")), (200, Some("second")), "{}", resp.text());
    // The prompt the provider received: the body as sent to it (the router's own fields removed).
    let sent = r.mock("first").requests()[0].body.len() as u64;
    let want_tokens = sent.div_ceil(4);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let stat = |leaf: &str| r.envoy.stat(&format!("wasmcustom.llm_router.provider.first.{leaf}"));
    loop {
        let got = (stat("unanswered_attempts"), stat("unanswered_prompt_tokens_estimated"));
        if got == (Some(1), Some(want_tokens)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the stats never showed the attempt: {got:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(stat("unanswered_attempts"), Some(1));
}

#[test]
fn a_provider_quoting_its_key_in_an_error_never_shows_it_to_the_client() {
    let r = router();
    for m in ["first", "second"] {
        let body = format!(r#"{{"error":{{"message":"Incorrect API key provided: {}"}}}}"#, provider_key(m));
        r.mock(m).set_behavior(Behavior::Status { code: 400, headers: vec![], body });
    }
    let resp = r.chat(&chat_body("test/m", false));
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(error_of(&resp)["error"]["message"], "Provider FIRST: Incorrect API key provided: [redacted]");
    assert!(!resp.text().contains(&provider_key("first")));
}

#[test]
fn hostile_provider_answers_get_documented_answers() {
    // (what the only provider answers, the client's status, whether the body is our JSON error)
    let big_message = format!(r#"{{"error":{{"message":"{}"}}}}"#, "m".repeat(200_000));
    let dup = r#"{"id":"x","model":"a","model":"b","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#;
    let not_json = "<html>oops</html>";
    let cases: Vec<(&str, u16, String, u16, bool)> = vec![
        ("a 200 that is not JSON: passed on, unaccounted", 200, not_json.into(), 200, false),
        ("a 200 with a duplicate key: passed on as sent", 200, dup.into(), 200, false),
        ("a 400 with a 200 KB message: ours, cut", 400, big_message.clone(), 400, true),
        ("a 500 with a 200 KB message: ours", 500, big_message, 502, true),
        ("a 400 that is not JSON: ours, generic", 400, not_json.into(), 400, true),
    ];
    let r = first_and_second(json!({}), json!({"max_attempts": 1}));
    let created = vms_created(&r);
    for (name, code, body, want, ours) in cases {
        // Both alike: a 5xx moves a provider behind the other in the health memory.
        for m in ["first", "second"] {
            r.mock(m).set_behavior(Behavior::Status { code, headers: vec![], body: body.clone() });
        }
        let resp = r.chat(&chat_body("test/m", false));
        assert_eq!(resp.status, want, "{name}: {}", &resp.text()[..resp.text().len().min(200)]);
        if ours {
            let v = error_of(&resp);
            assert!(v["error"]["message"].as_str().unwrap().len() <= 1024, "{name}");
        } else {
            assert_eq!(resp.body, body.as_bytes(), "{name}");
        }
    }
    assert_still_serving(&r, created);
}

#[test]
fn a_provider_trickling_a_completion_cannot_hold_the_client_for_ever() {
    // Envoy's per-try timeout ends at the response's headers; a body then sent a byte at a time held the
    // client until its own timeout (scripts/soak, scenario e). A completion now has a whole-request
    // timeout: every attempt's wait (2 × 300 ms here). The client's 30 s read timeout fails this test.
    let r = first_and_second(json!({}), json!({"response_timeout_ms": 300, "max_attempts": 2}));
    for m in ["first", "second"] {
        r.mock(m).set_behavior(Behavior::Trickle { interval_ms: 200 });
    }
    let auth = format!("Bearer {CLIENT_KEY}");
    let got = try_request(
        r.envoy.port,
        "POST",
        "/v1/chat/completions",
        &[("authorization", &auth), ("content-type", "application/json")],
        chat_body("test/m", false).to_string().as_bytes(),
    );
    // Envoy ends it: our 504 if the held headers had not gone out, else a reset of the stream.
    match got {
        Ok(resp) => assert_eq!(resp.status, 504, "{}", resp.text()),
        // The harness's own timeout reads "no answer within 30s".
        Err(e) => assert!(!e.contains("no answer within"), "the client waited out its own timeout: {e}"),
    }
}
