//! The health memory end to end, with two Envoy workers (two wasm VMs, one process-wide shared data): every
//! attempt's outcome, recorded by our `upstream_log` access logger, steers the next plans on every worker.
//! A failure moves the provider last, a `Retry-After` excludes it until the cool-down ends, a 2xx clears it.

mod common;

use common::http::Response;
use common::router::{catalog, chat_body, endpoint, provider, Router};
use llm_router_testkit::mock::{Behavior, MockProvider};
use serde_json::{json, Value};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const WORKERS: u32 = 2;

/// Providers `cheap` (first choice) and `backup`. Models: `test/chat` on both, `test/backup-only` on
/// backup, `test/cheap-only` on cheap.
fn router() -> Router {
    let cheap = MockProvider::start("cheap");
    let backup = MockProvider::start("backup");
    let c = catalog(
        vec![provider("cheap", cheap.port()), provider("backup", backup.port())],
        vec![
            json!({"id": "test/chat", "endpoints": [
                endpoint("backup", "chat@backup", 2.0),
                endpoint("cheap", "chat@cheap", 1.0),
            ]}),
            json!({"id": "test/backup-only", "endpoints": [endpoint("backup", "only@backup", 2.0)]}),
            json!({"id": "test/cheap-only", "endpoints": [endpoint("cheap", "only@cheap", 1.0)]}),
        ],
        json!({}),
    );
    Router::start_with_concurrency(c, vec![cheap, backup], WORKERS)
}

fn status(code: u16, retry_after: Option<&str>) -> Behavior {
    let headers = retry_after.map(|v| vec![("retry-after".to_string(), v.to_string())]).unwrap_or_default();
    Behavior::Status { code, headers, body: format!(r#"{{"error":{{"message":"mock {code}"}}}}"#) }
}

/// The logger records an attempt when Envoy releases it, which can be a moment after the client has the
/// response. Envoy writes a request's access-log line after its attempts' upstream logs, so once there is a
/// line for every completed request, every outcome is in the health memory.
fn settle(r: &Router) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let completed = r.envoy.stat("http.llm_router.downstream_rq_completed").unwrap_or(0);
        let text = std::fs::read_to_string(r.envoy.dir().join("stdout.txt")).unwrap_or_default();
        let lines = text.lines().filter(|l| l.starts_with('{')).count() as u64;
        if completed > 0 && lines >= completed {
            return;
        }
        assert!(Instant::now() < deadline, "{lines} access-log lines for {completed} completed requests");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One per-worker counter of the listener, e.g. `downstream_cx_total`. The stat prefix carries the
/// configured address (`127.0.0.1_0` here: the tests configure port 0), or the bound port.
fn worker_stat(r: &Router, worker: u32, name: &str) -> u64 {
    for port in [0, r.envoy.port] {
        if let Some(v) = r.envoy.stat(&format!("listener.127.0.0.1_{port}.worker_{worker}.{name}")) {
            return v;
        }
    }
    panic!("no stat listener.127.0.0.1_*.worker_{worker}.{name}:\n{}", r.envoy.admin_get("/stats").text());
}

fn connections_per_worker(r: &Router) -> Vec<u64> {
    (0..WORKERS).map(|w| worker_stat(r, w, "downstream_cx_total")).collect()
}

/// Waits until the listener holds exactly `n` open connections.
fn wait_for_open_connections(r: &Router, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open: u64 = (0..WORKERS).map(|w| worker_stat(r, w, "downstream_cx_active")).sum();
        if open == n {
            return;
        }
        assert!(Instant::now() < deadline, "{open} open connections, want {n}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends a chat on a new connection; returns the response and the worker that served it.
fn chat_seen(r: &Router, body: &Value) -> (Response, usize) {
    let before = connections_per_worker(r);
    let resp = r.chat(body);
    let after = connections_per_worker(r);
    let took: Vec<usize> = (0..before.len()).filter(|&w| after[w] > before[w]).collect();
    assert_eq!(took.len(), 1, "exactly one worker took the connection: {before:?} → {after:?}");
    (resp, took[0])
}

/// Sends `body` twice on new connections, steering one to each worker: the listener balances exactly
/// (each connection goes to the worker with the fewest open ones), so an idle connection parked on one
/// worker sends the first request to the other, and with none open the second goes back to the first.
fn chat_on_both_workers(r: &Router, body: &Value) -> Vec<Response> {
    wait_for_open_connections(r, 0);
    let idle = TcpStream::connect(("127.0.0.1", r.envoy.port)).unwrap();
    wait_for_open_connections(r, 1);
    let (first, w1) = chat_seen(r, body);
    drop(idle);
    wait_for_open_connections(r, 0);
    let (second, w2) = chat_seen(r, body);
    assert_ne!(w1, w2, "both workers must serve");
    vec![first, second]
}

/// One request on each worker: both served by `provider` at the first attempt.
fn first_choice_everywhere(r: &Router, body: &Value, provider: &str) {
    for resp in chat_on_both_workers(r, body) {
        assert_eq!(served_by(&resp), (200, Some(provider), Some("1")), "{}", resp.text());
    }
}

fn served_by(resp: &Response) -> (u16, Option<&str>, Option<&str>) {
    (resp.status, resp.header("x-llm-provider"), resp.header("x-llm-attempts"))
}

#[test]
fn a_failure_moves_the_provider_last_on_every_worker_and_a_success_clears_it() {
    let r = router();
    let chat = chat_body("test/chat", false);

    // Healthy: cheap first.
    first_choice_everywhere(&r, &chat, "cheap");

    // cheap fails once: that request falls back to backup…
    r.mock("cheap").set_behavior(status(503, None));
    let resp = r.chat(&chat);
    assert_eq!(served_by(&resp), (200, Some("backup"), Some("2")), "{}", resp.text());
    r.mock("cheap").set_behavior(Behavior::Ok);
    settle(&r);

    // …and every later plan, on either worker, tries backup first although cheap has recovered.
    r.mock("cheap").clear();
    first_choice_everywhere(&r, &chat, "backup");
    assert!(r.mock("cheap").requests().is_empty(), "cheap is last, not called while backup answers");

    // cheap answers a request for a model only it serves: a success that began after its failure clears
    // its record, so cheap is first again everywhere (backup has no record: only the clear explains it).
    let resp = r.chat(&chat_body("test/cheap-only", false));
    assert_eq!(served_by(&resp), (200, Some("cheap"), Some("1")), "{}", resp.text());
    first_choice_everywhere(&r, &chat, "cheap");

    // Records are per provider: backup fails on its own model…
    r.mock("backup").set_behavior(status(503, None));
    assert_eq!(r.chat(&chat_body("test/backup-only", false)).status, 502);
    r.mock("backup").set_behavior(Behavior::Ok);
    settle(&r);
    // …then serves as cheap's fallback, which clears backup's record while cheap's failure is recorded…
    r.mock("cheap").set_behavior(status(503, None));
    let resp = r.chat(&chat);
    assert_eq!(served_by(&resp), (200, Some("backup"), Some("2")), "{}", resp.text());
    r.mock("cheap").set_behavior(Behavior::Ok);
    settle(&r);
    // …so backup is first (with both records kept, the cheaper cheap would be).
    first_choice_everywhere(&r, &chat, "backup");
}

#[test]
fn retry_after_excludes_the_provider_and_all_cooling_down_is_a_local_429() {
    let r = router();
    let chat = chat_body("test/chat", false);

    // cheap is rate limited for 30 s: that request falls back to backup.
    r.mock("cheap").set_behavior(status(429, Some("30")));
    let resp = r.chat(&chat);
    assert_eq!(served_by(&resp), (200, Some("backup"), Some("2")), "{}", resp.text());
    r.mock("cheap").set_behavior(Behavior::Ok);
    settle(&r);

    // Next requests, on both workers, leave cheap out entirely.
    r.mock("cheap").clear();
    first_choice_everywhere(&r, &chat, "backup");
    // Excluded, not merely last: when backup fails, cheap is still not tried.
    r.mock("backup").set_behavior(status(500, None));
    let resp = r.chat(&chat);
    assert_eq!(resp.status, 502, "{}", resp.text());
    assert!(r.mock("cheap").requests().is_empty(), "cheap is cooling down: never called");

    // backup is rate limited too, for 20 s: now every candidate is cooling down.
    r.mock("backup").set_behavior(status(429, Some("20")));
    let resp = r.chat(&chat);
    assert_eq!(resp.status, 429, "{}", resp.text());
    r.mock("backup").set_behavior(Behavior::Ok);
    settle(&r);

    // No provider is called; the answer is our 429 with the shortest remaining cool-down (backup's).
    r.mock("cheap").clear();
    r.mock("backup").clear();
    for resp in chat_on_both_workers(&r, &chat) {
        assert_eq!(resp.status, 429, "{}", resp.text());
        let retry_after: u64 = resp.header("retry-after").and_then(|v| v.parse().ok()).unwrap_or(0);
        assert!(
            (15..=20).contains(&retry_after),
            "retry-after {retry_after}: backup's 20 s cool-down, not cheap's 30"
        );
        let body = resp.json();
        assert_eq!(body["error"]["code"], 429, "{body}");
        assert_eq!(body["error"]["metadata"]["error_type"], "rate_limit_exceeded", "{body}");
        assert_eq!(resp.header("x-llm-provider"), None);
    }
    assert!(r.mock("cheap").requests().is_empty() && r.mock("backup").requests().is_empty());
}
