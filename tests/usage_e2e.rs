//! Usage and cost through Envoy: OpenRouter-shaped bodies and chunks (validated against its schemas),
//! `usage.cost` from the mock's token counts × the catalog's prices, streams cut by the provider.

mod common;

use common::http::{open_stream, request};
use common::router::{catalog, chat_body, provider, Router, CLIENT_KEY};
use common::schema::assert_valid;
use llm_router_testkit::mock::{Behavior, MockProvider};
use serde_json::{json, Value};

/// The mock reports 11 prompt and 7 completion tokens; prices $0.5 and $1.5 per million:
/// 11 × 0.5 + 7 × 1.5 = 16 µUSD = 0.000016 USD.
const COST: f64 = 0.000016;

fn router() -> Router {
    let m = MockProvider::start("meter");
    let mut p = provider("meter", m.port());
    p["display_name"] = json!("Meter Co");
    let c = catalog(
        vec![p],
        vec![json!({"id": "acme/meter-1", "aliases": ["meter"], "endpoints": [
            {"provider": "meter", "model": "native-meter", "pricing": {"prompt": 0.5, "completion": 1.5}}
        ]})],
        json!({}),
    );
    Router::start(c, vec![m])
}

fn headers() -> Vec<(&'static str, String)> {
    vec![
        ("authorization", format!("Bearer {CLIENT_KEY}")),
        ("content-type", "application/json".into()),
        // What the openai SDKs send by default.
        ("accept-encoding", "gzip, deflate".into()),
        ("x-request-id", "req-42".into()),
    ]
}

/// Opens a streamed request for the meter model with the SDK-like headers.
fn open_meter_stream(r: &Router) -> common::http::Stream {
    let h = headers();
    let h: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
    open_stream(
        r.envoy.port,
        "POST",
        "/v1/chat/completions",
        &h,
        chat_body("meter", true).to_string().as_bytes(),
    )
}

#[test]
fn a_completion_reports_cost_public_model_and_provider() {
    let r = router();
    let h = headers();
    let h: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let resp = request(
        r.envoy.port,
        "POST",
        "/v1/chat/completions",
        &h,
        chat_body("meter", false).to_string().as_bytes(),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let v = resp.json();
    assert_valid("ChatResult", &v);
    assert_eq!(v["model"], "acme/meter-1");
    assert_eq!(v["provider"], "Meter Co");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-mock-"), "ids keep the provider's: {v}");
    assert_eq!(v["usage"]["cost"], COST);
    assert_eq!(v["usage"]["prompt_tokens"], 11);
    assert_eq!(resp.header("x-llm-cost-usd"), Some("0.000016"));
    assert_eq!(resp.header("content-length").map(|l| l.parse::<usize>().unwrap()), Some(resp.body.len()));
    let sent = &r.mock("meter").requests()[0];
    // The generation is named after the request id Envoy gave the request, never the client's own.
    let request_id = sent.header("x-request-id").unwrap();
    assert_ne!(request_id, "req-42");
    assert_eq!(resp.header("x-generation-id"), Some(format!("gen-{request_id}").as_str()));
    assert_eq!(sent.header("accept-encoding"), Some("identity"), "usage stays readable");
    // The same request straight to the mock comes back gzip-compressed: without the router's
    // `accept-encoding: identity`, usage (and so the cost) would be hidden.
    let direct = request(
        r.mock("meter").port(),
        "POST",
        "/v1/chat/completions",
        &h,
        chat_body("x", false).to_string().as_bytes(),
    );
    assert_eq!(direct.header("content-encoding"), Some("gzip"));
    assert!(sent.json().get("stream_options").is_none(), "only streams ask for usage");
}

#[test]
fn a_stream_reports_usage_and_cost_in_its_final_chunk() {
    let r = router();
    let mut s = open_meter_stream(&r);
    assert_eq!(s.status, 200);
    let events = s.collect_events();
    assert_eq!(events.last().map(String::as_str), Some("data: [DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .filter_map(|e| e.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks.len() >= 4, "{events:?}");
    for c in &chunks {
        assert_valid("ChatStreamChunk", c);
        assert_eq!(c["model"], "acme/meter-1");
    }
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["cost"], COST);
    assert_eq!(last["provider"], "Meter Co");
    let sent = r.mock("meter").requests()[0].json();
    assert_eq!(sent["stream_options"], json!({"include_usage": true}), "the provider is asked for usage");
}

#[test]
fn a_stream_the_provider_ends_early_closes_with_the_typed_error_chunk() {
    let r = router();
    r.mock("meter").set_behavior(Behavior::Cut { after_events: 2, reset: false });
    let mut s = open_meter_stream(&r);
    let events = s.collect_events();
    assert_eq!(events.len(), 3, "{events:?}");
    let err: Value = serde_json::from_str(events[2].strip_prefix("data: ").unwrap()).unwrap();
    assert_valid("ChatStreamChunk", &err);
    assert_eq!(err["choices"][0]["finish_reason"], "error");
    assert_eq!(err["error"]["metadata"]["error_type"], "provider_unavailable");
}

/// A provider that resets the connection mid-stream: Envoy resets the client's stream too (the filter
/// cannot add bytes after an upstream reset), so the client sees a truncated transfer — an error in every
/// HTTP client — never a stream that looks complete.
#[test]
fn a_stream_the_provider_resets_mid_way_is_not_passed_off_as_complete() {
    use std::io::{Read, Write};
    let r = router();
    r.mock("meter").set_behavior(Behavior::Cut { after_events: 2, reset: true });
    let body = chat_body("meter", true).to_string();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", r.envoy.port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {CLIENT_KEY}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("acme/meter-1"), "events before the cut arrive rewritten: {text}");
    assert!(
        !text.contains("[DONE]") && !text.ends_with("0\r\n\r\n"),
        "the transfer is visibly truncated: {text}"
    );
}
