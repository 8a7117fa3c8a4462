//! Request size limits, provider TLS verification, and catalogs Envoy must refuse at load.

mod common;

use common::envoy::{certs_dir, start_expect_failure, wasm_path, TlsFront};
use common::http::{post_chunked_with_trailer, request, Response};
use common::router::{
    catalog, chat_body, endpoint, first_and_second, provider, provider_key, Router, CLIENT_KEY,
};
use common::schema::assert_valid;
use llm_router_cli::envoy_config::{generate, Options};
use llm_router_testkit::mock::{Behavior, MockProvider};
use serde_json::{json, Value};

const LIMIT: usize = 4096;

fn limited_router() -> Router {
    first_and_second(json!({}), json!({"max_request_bytes": LIMIT}))
}

/// A chat body of exactly `len` bytes.
fn body_of_len(len: usize) -> Vec<u8> {
    let base = chat_body("test/m", false).to_string();
    let pad = len - base.len() - r#","x":"""#.len();
    let body = format!(r#"{},"x":"{}"}}"#, &base[..base.len() - 1], "p".repeat(pad));
    assert_eq!(body.len(), len);
    body.into_bytes()
}

fn post(port: u16, body: &[u8]) -> Response {
    let auth = format!("Bearer {CLIENT_KEY}");
    request(
        port,
        "POST",
        "/v1/chat/completions",
        &[("authorization", &auth), ("content-type", "application/json")],
        body,
    )
}

/// Sends a chunked request by hand (the harness client always sends content-length).
fn post_chunked(port: u16, body: &[u8]) -> (u16, String) {
    post_chunked_with_trailer(port, CLIENT_KEY, body, "")
}

#[test]
fn bodies_over_the_limit_get_413_whether_sized_or_chunked() {
    let r = limited_router();
    let resp = post(r.envoy.port, &body_of_len(LIMIT + 1));
    assert_eq!(resp.status, 413, "{}", resp.text());
    let v = resp.json();
    assert_eq!(v["error"]["metadata"]["error_type"], "payload_too_large");
    assert_valid("PayloadTooLargeResponse", &v);
    let (status, text) = post_chunked(r.envoy.port, &body_of_len(LIMIT + 1));
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("payload_too_large"), "{text}");
    assert!(r.mock("first").requests().is_empty());
}

#[test]
fn a_body_at_the_limit_is_retried_intact() {
    let r = limited_router();
    r.mock("first").set_behavior(Behavior::Status { code: 503, headers: vec![], body: "{}".into() });
    let body = body_of_len(LIMIT);
    let resp = post(r.envoy.port, &body);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let got = r.mock("second").requests();
    assert_eq!(got.len(), 1);
    let mut want: Value = serde_json::from_slice(&body).unwrap();
    want["model"] = json!("m@second");
    want.as_object_mut().unwrap().remove("provider"); // router-only: never forwarded
    assert_eq!(got[0].json(), want);
    let (status, _) = post_chunked(r.envoy.port, &body);
    assert_eq!(status, 200);
}

#[test]
fn a_chunked_body_ended_by_trailers_is_routed_without_the_client_key() {
    // The last body chunk does not end the stream when trailers follow: the body is routed on them.
    let r = limited_router();
    let body = body_of_len(1000);
    let (status, text) =
        post_chunked_with_trailer(r.envoy.port, CLIENT_KEY, &body, "x-client-trailer: 1\r\n");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("x-llm-provider: first"), "{text}");
    let got = r.mock("first").requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["model"], "m@first");
    assert!(got[0].header("authorization").is_none_or(|v| !v.contains(CLIENT_KEY)), "{:?}", got[0].headers);
}

fn tls_router(cert: &str) -> (Router, TlsFront) {
    let backend = MockProvider::start("secure");
    let dir = certs_dir();
    let front = TlsFront::start(
        backend.port(),
        &dir.join(format!("{cert}.pem")),
        &dir.join(format!("{cert}-key.pem")),
    );
    let mut p = provider("secure", 0);
    p["endpoint"] = json!(format!("https://localhost:{}/v1", front.port));
    p["ca_file"] = json!(dir.join("ca.pem").display().to_string());
    let c = catalog(
        vec![p],
        vec![json!({"id": "test/tls", "endpoints": [endpoint("secure", "tls@secure", 1.0)]})],
        json!({}),
    );
    (Router::start(c, vec![backend]), front)
}

#[test]
fn https_provider_verified_with_its_ca_file_is_served() {
    let (r, _front) = tls_router("localhost");
    let resp = r.chat(&chat_body("test/tls", false));
    assert_eq!(resp.status, 200, "{}", resp.text());
    let got = r.mock("secure").requests();
    assert_eq!(got[0].json()["model"], "tls@secure");
    assert_eq!(got[0].header("authorization"), Some(format!("Bearer {}", provider_key("secure")).as_str()));
}

#[test]
fn https_provider_with_a_mismatched_name_gets_no_key_and_the_client_a_json_502() {
    let (r, _front) = tls_router("wrong");
    let resp = r.chat(&chat_body("test/tls", false));
    assert_eq!(resp.status, 502, "{}", resp.text());
    let v = resp.json();
    assert_eq!(v["error"]["code"], 502);
    assert!(v["error"]["message"].as_str().unwrap().contains("TLS"), "{v}");
    assert_valid("BadGatewayResponse", &v);
    assert!(r.mock("secure").requests().is_empty(), "nothing, and so no key, reached the provider");
}

#[test]
fn a_catalog_whose_key_variable_is_unset_is_refused_at_load() {
    let c = catalog(
        vec![provider("lonely", 9)],
        vec![json!({"id": "test/x", "endpoints": [endpoint("lonely", "x", 1.0)]})],
        json!({}),
    );
    let opts = Options {
        port: 0,
        admin_port: 0,
        wasm_path: wasm_path().display().to_string(),
        ..Options::default()
    };
    let yaml = generate(&c.to_string(), &opts).unwrap();
    let log = start_expect_failure(&yaml, &[]);
    assert!(
        log.contains("provider \"lonely\" needs environment variable LONELY_API_KEY, which is not set"),
        "{log}"
    );
}

#[test]
fn a_provider_slower_than_the_per_attempt_timeout_is_skipped_and_all_slow_is_a_json_504() {
    let slow = MockProvider::start("slow");
    let fast = MockProvider::start("fast");
    let c = catalog(
        vec![provider("slow", slow.port()), provider("fast", fast.port())],
        vec![json!({"id": "test/t", "endpoints": [
            endpoint("slow", "t@slow", 1.0),
            endpoint("fast", "t@fast", 2.0),
        ]})],
        json!({"response_timeout_ms": 300, "first_byte_timeout_ms": 300}),
    );
    let r = Router::start(c, vec![slow, fast]);
    r.mock("slow").set_behavior(Behavior::Delay { ms: 3000 });
    for stream in [false, true] {
        let resp = r.chat(&chat_body("test/t", stream));
        assert_eq!(resp.status, 200, "stream {stream}: {}", resp.text());
        assert_eq!(resp.header("x-llm-provider"), Some("fast"));
    }
    r.mock("fast").set_behavior(Behavior::Delay { ms: 3000 });
    let resp = r.chat(&chat_body("test/t", false));
    assert_eq!(resp.status, 504, "{}", resp.text());
    let v = resp.json();
    assert_eq!(
        (v["error"]["code"].as_u64(), v["error"]["metadata"]["error_type"].as_str()),
        (Some(504), Some("timeout"))
    );
}

#[test]
fn oversized_headers_get_a_json_431() {
    let r = limited_router();
    let big = "h".repeat(70 * 1024);
    let auth = format!("Bearer {CLIENT_KEY}");
    let resp = request(
        r.envoy.port,
        "POST",
        "/v1/chat/completions",
        &[("authorization", &auth), ("content-type", "application/json"), ("x-big", &big)],
        chat_body("test/m", false).to_string().as_bytes(),
    );
    assert_eq!(resp.status, 431, "{}", resp.text());
    let v = resp.json();
    assert_eq!(v["error"]["code"], 431);
    assert_eq!(v["error"]["metadata"]["error_type"], "invalid_request");
}
