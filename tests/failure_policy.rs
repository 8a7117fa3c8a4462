//! What Envoy's failure policy does to the requests that share a trapped VM, measured with a test build
//! of the filter (feature `trap-for-tests`: a request with `x-llm-test-trap` traps the VM, as a bug
//! would). The shipped policy, FAIL_RELOAD, must give the worker a fresh VM; FAIL_CLOSED (Envoy's
//! default) leaves it failing every request. The figures printed here are the README's.

mod common;

use common::envoy::workspace_root;
use common::http::{request, Response};
use common::router::{catalog, chat_body, endpoint, provider, Router, CLIENT_KEY};
use llm_router_testkit::mock::MockProvider;
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Builds the trapping filter once (its own target directory: the shipped build is untouched).
fn trap_wasm() -> PathBuf {
    let root = workspace_root();
    let target = root.join("target/trap-for-tests");
    let status = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args(["build", "--quiet", "--release", "--target", "wasm32-wasip1", "-p", "llm-router", "--lib"])
        .args(["--features", "trap-for-tests", "--target-dir"])
        .arg(&target)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the trap-for-tests filter");
    target.join("wasm32-wasip1/release/llm_router.wasm")
}

fn router(wasm: &std::path::Path, policy: &str) -> Router {
    let m = MockProvider::start("only");
    let c = catalog(
        vec![provider("only", m.port())],
        vec![json!({"id": "test/m", "endpoints": [endpoint("only", "m@only", 1.0)]})],
        json!({}),
    );
    Router::start_with(c, vec![m], 1, wasm, |yaml| yaml.replace("FAIL_RELOAD", policy))
}

fn chat(r: &Router, trap: bool) -> Response {
    let auth = format!("Bearer {CLIENT_KEY}");
    let mut headers = vec![("authorization", auth.as_str()), ("content-type", "application/json")];
    if trap {
        headers.push(("x-llm-test-trap", "1"));
    }
    request(
        r.envoy.port,
        "POST",
        "/v1/chat/completions",
        &headers,
        chat_body("test/m", false).to_string().as_bytes(),
    )
}

/// After one trap: how many innocent requests failed before one succeeded, and how long that took (or
/// `None` if none succeeded within `within`).
fn recovery(r: &Router, within: Duration) -> (usize, Option<Duration>) {
    assert_eq!(chat(r, false).status, 200, "before the trap");
    let trapped = chat(r, true);
    assert!(trapped.status >= 500, "the trapping request fails: {}", trapped.status);
    let start = Instant::now();
    let mut failed = 0;
    while start.elapsed() < within {
        if chat(r, false).status == 200 {
            return (failed, Some(start.elapsed()));
        }
        failed += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    (failed, None)
}

#[test]
fn fail_reload_gives_the_worker_a_fresh_vm_and_fail_closed_does_not() {
    let wasm = trap_wasm();

    let r = router(&wasm, "FAIL_RELOAD");
    let created = r.envoy.stat("wasm.envoy.wasm.runtime.v8.created").unwrap();
    let (failed, took) = recovery(&r, Duration::from_secs(10));
    let took = took.expect("FAIL_RELOAD: a request succeeds again within 10 s");
    eprintln!(
        "FAIL_RELOAD: {failed} innocent requests failed; the first success came {took:?} after the trap"
    );
    assert!(r.envoy.stat("wasm.envoy.wasm.runtime.v8.created").unwrap() > created, "a fresh VM");
    // A fresh VM after every trap, not only the first.
    let (_, again) = recovery(&r, Duration::from_secs(10));
    assert!(again.is_some(), "FAIL_RELOAD recovers from a second trap too");

    let r = router(&wasm, "FAIL_CLOSED");
    let (failed, took) = recovery(&r, Duration::from_secs(2));
    eprintln!("FAIL_CLOSED: {failed} innocent requests failed in 2 s, none succeeded");
    assert_eq!(took, None, "FAIL_CLOSED: the worker stays failed");
}
