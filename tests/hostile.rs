//! Hostile clients and providers through a real Envoy: inputs that once stalled or trapped the VM, or
//! carried a credential across a boundary. Each test sends the input, checks the documented answer, and
//! then checks the VM is still the one it was and serves the next normal request.

mod common;

use common::http::{post_chunked_with_trailer, request, try_request, Response};
use common::router::{catalog, chat_body, endpoint, provider, provider_key, Router, CLIENT_KEY};
use llm_router_testkit::mock::{Behavior, MockProvider};
use serde_json::{json, Value};

/// `first` (cheapest) and `second` serving `test/m`.
fn router() -> Router {
    let first = MockProvider::start("first");
    let second = MockProvider::start("second");
    let c = catalog(
        vec![provider("first", first.port()), provider("second", second.port())],
        vec![json!({"id": "test/m", "endpoints": [
            endpoint("first", "m@first", 1.0),
            endpoint("second", "m@second", 2.0),
        ]})],
        json!({}),
    );
    Router::start(c, vec![first, second])
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
