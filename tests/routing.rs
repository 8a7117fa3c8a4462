//! End to end through a real Envoy: model resolution, per-attempt rewrites, keys, fallback, streaming.

mod common;

use common::http::{open_stream_within, request};
use common::router::{catalog, chat_body, endpoint, provider, provider_key, Router, CLIENT_KEY};
use common::schema::assert_valid;
use llm_router_testkit::mock::{Behavior, MockProvider, FIRST_EVENT_TIMEOUT};
use serde_json::{json, Value};
use std::net::TcpListener;

/// Providers `cheap` (first choice) and `backup`, plus `dead` (cheapest of all, refusing connections).
/// Models: `test/chat` (alias `chat`) on cheap+backup; `test/refused` on dead+backup.
fn two_providers() -> Router {
    let cheap = MockProvider::start("cheap");
    let backup = MockProvider::start("backup");
    let dead_port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }; // closed again: connections are refused
    let mut backup_provider = provider("backup", backup.port());
    backup_provider["auth_header"] = json!("x-api-key");
    backup_provider["auth_scheme"] = json!("");
    let c = catalog(
        vec![provider("cheap", cheap.port()), backup_provider, provider("dead", dead_port)],
        vec![
            json!({"id": "test/chat", "aliases": ["chat"], "endpoints": [
                endpoint("backup", "chat@backup", 2.0),
                endpoint("cheap", "chat@cheap", 1.0),
            ]}),
            json!({"id": "test/refused", "endpoints": [
                endpoint("dead", "refused@dead", 0.5),
                endpoint("backup", "refused@backup", 2.0),
            ]}),
        ],
        json!({"max_attempts": 3}),
    );
    Router::start(c, vec![cheap, backup])
}

#[test]
fn third_slot_serves_when_the_first_two_fail() {
    let r = two_providers_and_three_deep();
    r.mock("cheap").set_behavior(status_behavior(503));
    let resp = r.chat(&chat_body("test/three", true));
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("x-llm-provider"), Some("backup"));
    assert_eq!(resp.header("x-llm-attempts"), Some("3"), "dead, then cheap, then backup");
    assert_eq!(r.mock("cheap").requests()[0].json()["model"], "three@cheap");
    assert_eq!(r.mock("backup").requests()[0].json()["model"], "three@backup");
}

fn two_providers_and_three_deep() -> Router {
    let cheap = MockProvider::start("cheap");
    let backup = MockProvider::start("backup");
    let dead_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let c = catalog(
        vec![provider("cheap", cheap.port()), provider("backup", backup.port()), provider("dead", dead_port)],
        vec![json!({"id": "test/three", "endpoints": [
            endpoint("backup", "three@backup", 3.0),
            endpoint("cheap", "three@cheap", 2.0),
            endpoint("dead", "three@dead", 1.0),
        ]})],
        json!({"max_attempts": 3}),
    );
    Router::start(c, vec![cheap, backup])
}

fn status_behavior(code: u16) -> Behavior {
    let headers = if code == 429 { vec![("retry-after".to_string(), "7".to_string())] } else { vec![] };
    Behavior::Status { code, headers, body: format!(r#"{{"error":{{"message":"mock {code}"}}}}"#) }
}

#[test]
fn alias_reaches_cheapest_provider_with_native_name_and_only_its_key() {
    let r = two_providers();
    let mut body = chat_body("chat", false);
    body["provider"] = json!({"sort": "price"});
    body["temperature"] = json!(0.25);
    let resp = common::http::request(
        r.envoy.port,
        "POST",
        "/api/v1/chat/completions",
        &[
            ("authorization", &format!("Bearer {CLIENT_KEY}")),
            ("content-type", "application/json"),
            ("x-api-key", "client-other-key"),
            ("api-key", "client-azure-key"),
            ("x-goog-api-key", "client-google-key"),
            ("x-llm-plan", "evil"),
            ("x-envoy-max-retries", "9"),
            ("x-envoy-upstream-rq-per-try-timeout-ms", "1"),
            ("accept-encoding", "gzip"),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("x-llm-provider"), Some("cheap"));
    assert_eq!(resp.header("x-llm-attempts"), Some("1"));
    assert_eq!(resp.header("x-envoy-attempt-count"), None, "Envoy's count is read, never forwarded");
    assert_eq!(resp.header("x-mock-secret"), None, "provider headers outside the allowlist are dropped");
    assert_eq!(resp.header("x-ratelimit-remaining-requests"), Some("99"));
    assert_eq!(resp.json()["choices"][0]["message"]["content"], "Hello from cheap");

    let got = r.mock("cheap").requests();
    assert_eq!(got.len(), 1);
    let req = &got[0];
    assert_eq!(req.path, "/cheap/v1/chat/completions");
    assert_eq!(req.header("authorization"), Some(format!("Bearer {}", provider_key("cheap")).as_str()));
    assert_eq!(req.header("host"), Some(format!("127.0.0.1:{}", r.mock("cheap").port()).as_str()));
    assert_eq!(req.header("accept-encoding"), Some("identity"));
    let sent = req.json();
    assert_eq!(sent["model"], "chat@cheap");
    assert_eq!(sent["temperature"], 0.25);
    assert!(sent.get("provider").is_none(), "router-only fields are removed");
    assert_eq!(req.header("content-length"), Some(req.body.len().to_string().as_str()));
    for (name, value) in &req.headers {
        for client_secret in [CLIENT_KEY, "client-other-key", "client-azure-key", "client-google-key"] {
            assert!(!value.contains(client_secret), "client credential leaked in {name}");
        }
        assert!(!name.starts_with("x-llm-"), "routing header {name} reached the provider");
        assert!(!value.contains("secret-key-of-backup"), "another provider's key leaked in {name}");
    }
    assert!(req.header("x-envoy-max-retries").is_none());
    for client_header in ["x-api-key", "api-key", "x-goog-api-key"] {
        assert_eq!(req.header(client_header), None, "{client_header} reached the provider");
    }
    assert!(r.mock("backup").requests().is_empty());
    // One vm_config shared by every filter instance: one VM per thread (plus the base copy), not one per
    // provider cluster. Three clusters with their own VMs would make this at least 6 at --concurrency 1.
    let vms = r.envoy.stat("wasm.envoy.wasm.runtime.v8.active").unwrap();
    assert!((1..=3).contains(&vms), "{vms} wasm VMs");
}

#[test]
fn failover_to_next_provider_for_5xx_429_401_403_408_and_refused_streamed_or_not() {
    for stream in [false, true] {
        // 401/403 (our key refused) and 408 are retried like 5xx; checked once, without streaming.
        let extra: &[(&str, &str)] =
            if stream { &[] } else { &[("401", "test/chat"), ("403", "test/chat"), ("408", "test/chat")] };
        let cases = [("503", "test/chat"), ("429", "test/chat"), ("refused", "test/refused")];
        for &(case, model) in cases.iter().chain(extra) {
            // A fresh router per case: the health memory would otherwise move cheap last (or exclude it,
            // after the 429's Retry-After) for the cases that follow.
            let r = two_providers();
            r.mock("cheap").set_behavior(match case {
                "refused" => Behavior::Ok,
                code => status_behavior(code.parse().unwrap()),
            });
            r.mock("cheap").clear();
            r.mock("backup").clear();
            let resp = r.chat(&chat_body(model, stream));
            let what = format!("case {case}, stream {stream}");
            assert_eq!(resp.status, 200, "{what}: {}", resp.text());
            assert_eq!(resp.header("x-llm-provider"), Some("backup"), "{what}");
            assert_eq!(resp.header("x-llm-attempts"), Some("2"), "{what}");
            assert_eq!(resp.header("x-envoy-attempt-count"), None, "{what}");
            let got = r.mock("backup").requests();
            assert_eq!(got.len(), 1, "{what}");
            let want_model = if case == "refused" { "refused@backup" } else { "chat@backup" };
            assert_eq!(got[0].json()["model"], want_model, "{what}");
            assert_eq!(got[0].json()["stream"], stream, "{what}");
            assert_eq!(got[0].header("x-api-key"), Some(provider_key("backup").as_str()), "{what}");
            assert_eq!(got[0].header("authorization"), None, "{what}: the first attempt's key must be gone");
            assert_eq!(got[0].header("content-length"), Some(got[0].body.len().to_string().as_str()));
            if case != "refused" {
                assert_eq!(r.mock("cheap").requests().len(), 1, "{what}");
            }
            if stream {
                assert!(resp.text().contains("data: [DONE]"), "{what}: {}", resp.text());
            }
        }
    }
}

#[test]
fn stream_events_arrive_one_at_a_time() {
    let r = two_providers();
    r.mock("cheap").hold_streams(true);
    let body = chat_body("chat", true).to_string();
    // The mock holds event 2 until we have event 1: this only passes if nothing buffers the stream. The
    // hold outlasts the head's and event 1's read timeout, so a buffering router fails the read.
    let mut s = open_stream_within(
        FIRST_EVENT_TIMEOUT,
        r.envoy.port,
        "POST",
        "/v1/chat/completions",
        &[("authorization", &format!("Bearer {CLIENT_KEY}")), ("content-type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(s.status, 200);
    assert_eq!(s.header("content-type"), Some("text/event-stream"));
    let first = s.next_event().expect("first event");
    assert!(first.contains("Hello "), "{first}");
    assert_eq!(r.mock("cheap").held(), 1, "event 1 must arrive while the mock holds event 2");
    r.mock("cheap").release_stream();
    let rest = s.collect_events();
    assert!(rest.iter().any(|e| e.contains("cheap")), "{rest:?}");
    assert_eq!(rest.last().map(String::as_str), Some("data: [DONE]"));
}

#[test]
fn a_completion_ended_by_trailers_is_still_rewritten_and_its_headers_filtered() {
    // HTTP/2 providers may end a response with trailers: the last body chunk then does not end the
    // stream, and the completion (held for its cost header) must be finished on the trailers.
    let r = two_providers();
    r.mock("cheap").set_behavior(Behavior::Trailers);
    let mut body = chat_body("chat", false);
    body["provider"] = json!({"sort": "price"});
    let resp = r.chat(&body);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("x-llm-provider"), Some("cheap"));
    assert_eq!(resp.header("x-mock-secret"), None, "the provider's headers are still allowlisted");
    // The mock reports 11 prompt and 7 completion tokens; cheap charges $1 per million of each.
    assert_eq!(resp.header("x-llm-cost-usd"), Some("0.000018"), "the cost header is written");
    let v = resp.json();
    assert_eq!(v["model"], "test/chat", "the completion is rewritten: {v}");
    assert!(v["usage"]["cost"].is_number(), "{v}");
    assert_eq!(resp.header("content-length"), Some(resp.text().len().to_string().as_str()));
}

#[test]
fn all_candidates_failing_give_json_errors() {
    let r = two_providers();
    let cases = [
        (503, 502, "provider_unavailable"),
        (500, 502, "provider_unavailable"),
        (429, 429, "rate_limit_exceeded"),
    ];
    for (provider_status, want, error_type) in cases {
        r.mock("cheap").set_behavior(status_behavior(provider_status));
        r.mock("backup").set_behavior(status_behavior(provider_status));
        let resp = r.chat(&chat_body("chat", false));
        assert_eq!(resp.status, want, "provider {provider_status}: {}", resp.text());
        assert_eq!(resp.header("content-type"), Some("application/json"));
        assert_eq!(resp.header("x-envoy-attempt-count"), None);
        let v = resp.json();
        assert_eq!(v["error"]["code"], want);
        assert_eq!(v["error"]["metadata"]["error_type"], error_type);
        assert!(!resp.text().contains("mock "), "the provider's body is not passed on: {}", resp.text());
        if want == 429 {
            assert_eq!(resp.header("retry-after"), Some("7"));
            assert_valid("TooManyRequestsResponse", &v);
        } else {
            assert_valid("BadGatewayResponse", &v);
        }
    }
    // Nobody reachable: no attempt got a response → 503.
    r.mock("backup").set_behavior(status_behavior(503));
    let mut r2 = r;
    let backup = r2.mocks.pop().unwrap();
    backup.stop();
    let resp = r2.chat(&chat_body("test/refused", false));
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(resp.header("x-envoy-attempt-count"), None, "Envoy's own reply: count read, not forwarded");
    // backup is still cooling down after its 429 above (Retry-After 7): only dead is tried.
    assert_eq!(resp.header("x-llm-attempts"), Some("1"), "dead alone");
    let v = resp.json();
    assert_eq!(v["error"]["code"], 503);
    assert_eq!(v["error"]["metadata"]["error_type"], "provider_unavailable");
    assert_valid("ServiceUnavailableResponse", &v);
}

#[test]
fn provider_client_errors_keep_status_and_message() {
    let r = two_providers();
    r.mock("cheap").set_behavior(Behavior::Status {
        code: 400,
        headers: vec![],
        body: r#"{"error":{"message":"temperature must be <= 2","type":"invalid_request_error"}}"#.into(),
    });
    let resp = r.chat(&chat_body("chat", false));
    assert_eq!(resp.status, 400);
    let v = resp.json();
    assert_eq!(v["error"]["code"], 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("temperature must be <= 2"), "{v}");
    assert_valid("BadRequestResponse", &v);
    assert!(r.mock("backup").requests().is_empty(), "a 400 is the client's fault: no fallback");
}

#[test]
fn models_list_needs_no_key_and_matches_schema() {
    let r = two_providers();
    for path in ["/v1/models", "/api/v1/models?offset=0&limit=500"] {
        let resp = request(r.envoy.port, "GET", path, &[], b"");
        assert_eq!(resp.status, 200, "{path}");
        let v = resp.json();
        assert_valid("ModelsListResponse", &v);
        let ids: Vec<&str> =
            v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["test/chat", "test/refused"]);
        // The listed price is the default choice's (the cheapest endpoint), USD per token.
        assert_eq!(v["data"][0]["pricing"]["prompt"], "0.000001");
    }
}

fn error_of(resp: &common::http::Response) -> Value {
    assert_eq!(resp.header("content-type"), Some("application/json"), "{}", resp.text());
    resp.json()
}

#[test]
fn each_client_error_has_its_status_and_shape() {
    let r = two_providers();
    let port = r.envoy.port;
    let auth = format!("Bearer {CLIENT_KEY}");
    let json_ct = ("content-type", "application/json");
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/v1/chat/completions",
            vec![("authorization", &auth), json_ct],
            b"{not json".to_vec(),
            400,
            "invalid_request",
            "BadRequestResponse",
        ),
        (
            "POST",
            "/v1/chat/completions",
            vec![("authorization", &auth), json_ct],
            br#"{"messages":[]}"#.to_vec(),
            400,
            "invalid_request",
            "BadRequestResponse",
        ),
        (
            "POST",
            "/v1/chat/completions",
            vec![("authorization", &auth), json_ct],
            br#"{"model":7,"messages":[]}"#.to_vec(),
            400,
            "invalid_request",
            "BadRequestResponse",
        ),
        (
            "POST",
            "/v1/chat/completions",
            vec![("authorization", &auth), ("content-type", "text/plain")],
            br#"{"model":"chat","messages":[]}"#.to_vec(),
            400,
            "invalid_request",
            "BadRequestResponse",
        ),
        (
            "POST",
            "/v1/chat/completions",
            vec![json_ct],
            br#"{"model":"chat","messages":[]}"#.to_vec(),
            401,
            "authentication",
            "UnauthorizedResponse",
        ),
        (
            "POST",
            "/v1/chat/completions",
            vec![("authorization", "Bearer sk-wrong"), json_ct],
            br#"{"model":"chat","messages":[]}"#.to_vec(),
            401,
            "authentication",
            "UnauthorizedResponse",
        ),
        (
            "POST",
            "/v1/chat/completions",
            vec![("authorization", &auth), json_ct],
            br#"{"model":"nope/nope","messages":[]}"#.to_vec(),
            404,
            "model_not_found",
            "NotFoundResponse",
        ),
        (
            "GET",
            "/v1/chat/completions",
            vec![("authorization", &auth)],
            vec![],
            405,
            "invalid_request",
            "BadRequestResponse",
        ),
        ("GET", "/v1/unknown", vec![], vec![], 404, "not_found", "NotFoundResponse"),
    ];
    for (method, path, headers, body, status, error_type, schema) in cases {
        let resp = request(port, method, path, &headers, &body);
        let what = format!("{method} {path} {}", String::from_utf8_lossy(&body));
        assert_eq!(resp.status, status, "{what}: {}", resp.text());
        let v = error_of(&resp);
        assert_eq!(v["error"]["code"], status, "{what}");
        assert_eq!(v["error"]["metadata"]["error_type"], error_type, "{what}");
        assert_valid(schema, &v);
        assert!(!resp.text().contains(CLIENT_KEY) && !resp.text().contains("secret-key-of"), "{what}");
    }
    assert!(r.mock("cheap").requests().is_empty() && r.mock("backup").requests().is_empty());
}
