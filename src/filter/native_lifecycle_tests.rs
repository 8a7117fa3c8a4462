//! Lifecycles of a request served by a native provider (Anthropic's Messages API), run against
//! [`FakeHost`]: the upstream role translates each attempt's body and holds a stream until it shows
//! content or fails; the downstream role translates the answer back and accounts it.

use super::downstream::Downstream;
use super::fake_host::{
    get, headers, receive_response, send_request, set_header, FakeHost, HttpRole, Received, Sent,
};
use super::host::TextAttribute;
use super::lifecycle_tests::configured;
use super::Vm;
use crate::catalog::tests::demo_json;
use crate::catalog::Catalog;
use serde_json::Value;
use std::rc::Rc;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const START: u64 = 1_700_000_000_000;

/// The demo catalog with gamma speaking Anthropic's API (key `gamma-secret`), endpoint cap 900 tokens.
fn vm() -> (Vm, Rc<Catalog>) {
    let json = demo_json()
        .replace(
            r#"{"name": "gamma", "endpoint": "http://gamma.local"}"#,
            r#"{"name": "gamma", "endpoint": "http://gamma.local", "api": "anthropic", "api_key_env": "GAMMA_KEY"}"#,
        )
        .replace(
            r#"{"provider": "gamma", "model": "llama-g", "pricing": {"prompt": 1, "completion": 1}}"#,
            r#"{"provider": "gamma", "model": "claude-g", "pricing": {"prompt": 1, "completion": 1}, "max_completion_tokens": 900}"#,
        );
    assert!(json.contains("claude-g") && json.contains("anthropic"));
    configured(&json)
}

fn client_headers() -> super::host::HeaderList {
    headers(&[
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        (":authority", "router.local"),
        ("authorization", "Bearer sk-test-1"),
        ("x-api-key", "client-anthropic-key"),
        ("content-type", "application/json"),
    ])
}

/// A chat for llama with gamma (Anthropic) first, then alpha.
fn chat(stream: bool) -> Vec<u8> {
    format!(
        r#"{{"model":"llama","messages":[{{"role":"system","content":"be brief"}},{{"role":"user","content":"hi"}}],"provider":{{"order":["gamma","alpha"]}},"stream":{stream}}}"#
    )
    .into_bytes()
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

/// The client's request through the downstream role: the headers and body the router sends on.
fn route(d: &mut Downstream, host: &mut FakeHost, body: &[u8]) -> (super::host::HeaderList, Vec<u8>) {
    match send_request(d, host, client_headers(), &[body], false) {
        Sent::Forwarded { headers, body } => (headers, body),
        Sent::Replied(r) => panic!("replied {} {}", r.status, String::from_utf8_lossy(&r.body)),
    }
}

/// Attempt `n` to `provider`, in that provider's cluster, with the router's header map and replayed body.
fn attempt(
    vm: &Vm,
    down: &FakeHost,
    routed: &(super::host::HeaderList, Vec<u8>),
    provider: &str,
    n: &str,
) -> (super::upstream::Upstream, FakeHost, Sent) {
    let mut host = FakeHost::beside(down, START + 10);
    host.filter_state = down.filter_state.clone();
    let mut h = routed.0.clone();
    set_header(&mut h, "x-envoy-attempt-count", n.as_bytes());
    let mut up = vm.upstream(provider.into());
    let sent = send_request(&mut up, &mut host, h, &[&routed.1], false);
    (up, host, sent)
}

const MESSAGE: &[u8] = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-g","content":[{"type":"text","text":"Hello"}],"stop_reason":"end_turn","usage":{"input_tokens":1000,"cache_read_input_tokens":0,"cache_creation_input_tokens":0,"output_tokens":500}}"#;

const STREAM_START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-g\",\"content\":[],\"usage\":{\"input_tokens\":1000,\"output_tokens\":1}}}\n\nevent: ping\ndata: {\"type\":\"ping\"}\n\n";
const STREAM_REST: &str = "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\nevent: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":500}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
const OVERLOADED: &str =
    "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";

fn response_headers(status: &str, content_type: &str, attempt: &str) -> super::host::HeaderList {
    headers(&[(":status", status), ("content-type", content_type), ("x-envoy-attempt-count", attempt)])
}

fn answer(role: &mut dyn HttpRole, host: &mut FakeHost, status: &str, ct: &str, body: &[&[u8]]) -> Received {
    host.text_attributes.push((TextAttribute::ResponseCodeDetails, "via_upstream".into()));
    receive_response(role, host, response_headers(status, ct, "1"), body, false)
}

#[test]
fn an_anthropic_attempt_gets_a_translated_body_sized_exactly_and_its_own_headers() {
    let (vm, catalog) = vm();
    let mut d = vm.downstream(&catalog);
    let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
    let routed = route(&mut d, &mut host, &chat(false));
    // The router's buffer keeps the OpenAI body (a later attempt may go to an OpenAI provider).
    assert!(routed.1.starts_with(br#"{"model":"claude-g","messages""#));
    let (_, up, sent) = attempt(&vm, &host, &routed, "gamma", "1");
    let Sent::Forwarded { headers: h, body } = sent else { panic!("refused") };
    assert_eq!(
        json(&body),
        json(br#"{"model":"claude-g","max_tokens":900,"system":[{"type":"text","text":"be brief"}],"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}"#)
    );
    for (name, want) in [
        (":path", Some("/v1/messages")),
        (":authority", Some("gamma.local")),
        ("x-api-key", Some("gamma-secret")),
        ("anthropic-version", Some("2023-06-01")),
        ("authorization", None),
        ("content-length", Some(body.len().to_string().as_str())),
    ] {
        assert_eq!(get(&h, name), want, "{name}");
    }
    assert!(up.reply.is_none());
}

#[test]
fn a_fallback_from_anthropic_to_openai_is_spliced_from_the_untranslated_body() {
    let (vm, catalog) = vm();
    let mut d = vm.downstream(&catalog);
    let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
    let routed = route(&mut d, &mut host, &chat(false));
    let (_, _, sent) = attempt(&vm, &host, &routed, "alpha", "2");
    let Sent::Forwarded { headers: h, body } = sent else { panic!("refused") };
    assert!(body.starts_with(br#"{"model":"llama-a","messages""#), "{}", String::from_utf8_lossy(&body));
    assert_eq!(get(&h, "authorization"), Some("Bearer alpha-secret"));
    assert_eq!(get(&h, "x-api-key"), None, "the Anthropic key stays with Anthropic");
    assert_eq!(get(&h, "anthropic-version"), None);
    assert_eq!(get(&h, ":path"), Some("/v1/chat/completions"));
}

#[test]
fn an_anthropic_completion_reaches_the_client_as_a_chat_completion_with_its_cost() {
    let (vm, catalog) = vm();
    let mut d = vm.downstream(&catalog);
    let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
    route(&mut d, &mut host, &chat(false));
    let got = answer(&mut d, &mut host, "200", "application/json", &[MESSAGE]);
    let v = json(&got.body);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "meta/llama");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // 1000 × $1 + 500 × $1 per million.
    assert_eq!(v["usage"]["cost"], 0.0015);
    assert_eq!(get(&got.headers, "x-llm-cost-usd"), Some("0.0015"));
    assert_eq!(get(&got.headers, "content-length"), Some(got.body.len().to_string().as_str()));
    d.on_log(&mut host);
    let a = json(&host.filter_state["llm_account"]);
    assert_eq!((a["provider"].as_str(), a["prompt_tokens"].as_u64()), (Some("gamma"), Some(1000)));
    assert_eq!((a["cost_nano_usd"].as_u64(), a["usage_estimated"].as_bool()), (Some(1_500_000), Some(false)));
}

#[test]
fn an_anthropic_stream_reaches_the_client_as_chunks_then_usage_then_done() {
    let (vm, catalog) = vm();
    let mut d = vm.downstream(&catalog);
    let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
    route(&mut d, &mut host, &chat(true));
    let got = answer(
        &mut d,
        &mut host,
        "200",
        "text/event-stream",
        &[STREAM_START.as_bytes(), STREAM_REST.as_bytes()],
    );
    let text = String::from_utf8(got.body).unwrap();
    assert!(text.contains(r#""delta":{"content":"Hello"}"#), "{text}");
    assert!(text.contains(r#""cost":0.0015"#), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
}

#[test]
fn the_gate_turns_an_error_before_content_into_a_status_the_router_retries() {
    let (vm, catalog) = vm();
    let mut d = vm.downstream(&catalog);
    let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
    let routed = route(&mut d, &mut host, &chat(true));
    let (mut up, mut attempt_host, _) = attempt(&vm, &host, &routed, "gamma", "1");
    // Held while it says nothing yet, then the error: a 529 with Anthropic's message, as JSON.
    let got = answer(
        &mut up,
        &mut attempt_host,
        "200",
        "text/event-stream",
        &[STREAM_START.as_bytes(), OVERLOADED.as_bytes()],
    );
    assert_eq!(get(&got.headers, ":status"), Some("529"));
    assert_eq!(get(&got.headers, "content-type"), Some("application/json"));
    assert_eq!(json(&got.body)["error"]["message"], "Overloaded");
    assert_eq!(got.pieces.first(), Some(&None), "nothing went out before the verdict");
}

#[test]
fn the_gate_lets_a_stream_through_at_its_first_content() {
    let (vm, catalog) = vm();
    let mut d = vm.downstream(&catalog);
    let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
    let routed = route(&mut d, &mut host, &chat(true));
    let (mut up, mut attempt_host, _) = attempt(&vm, &host, &routed, "gamma", "1");
    let body = [STREAM_START.as_bytes(), STREAM_REST.as_bytes(), OVERLOADED.as_bytes()];
    let got = answer(&mut up, &mut attempt_host, "200", "text/event-stream", &body);
    assert_eq!(get(&got.headers, ":status"), Some("200"));
    // The provider's bytes, untouched (the downstream role translates them): a later error is the
    // client's typed error chunk, not a retry.
    assert_eq!(got.body, body.concat());
}

#[test]
fn an_anthropic_refusal_quotes_its_message() {
    let (vm, catalog) = vm();
    let mut d = vm.downstream(&catalog);
    let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
    route(&mut d, &mut host, &chat(false));
    let error =
        br#"{"type":"error","error":{"type":"invalid_request_error","message":"messages: too long"}}"#;
    let got = answer(&mut d, &mut host, "400", "application/json", &[error]);
    assert_eq!(get(&got.headers, ":status"), Some("400"));
    let v = json(&got.body);
    assert_eq!(v["error"]["message"], "gamma: messages: too long");
}

#[test]
fn a_200_stream_that_ends_with_its_headers_is_a_failed_attempt_not_an_empty_answer() {
    let (vm, catalog) = vm();
    let mut d = vm.downstream(&catalog);
    let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
    let routed = route(&mut d, &mut host, &chat(true));
    let (mut up, mut attempt_host, _) = attempt(&vm, &host, &routed, "gamma", "1");
    let got = answer(&mut up, &mut attempt_host, "200", "text/event-stream", &[]);
    assert_eq!(get(&got.headers, ":status"), Some("502"), "retried by Envoy's policy, like a 5xx");
}

#[test]
fn the_gate_holds_a_stream_fed_a_byte_at_a_time_until_its_first_content() {
    let (vm, catalog) = vm();
    let mut d = vm.downstream(&catalog);
    let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
    let routed = route(&mut d, &mut host, &chat(true));
    let (mut up, mut attempt_host, _) = attempt(&vm, &host, &routed, "gamma", "1");
    let stream = [STREAM_START, STREAM_REST].concat();
    let bytes: Vec<&[u8]> = stream.as_bytes().chunks(1).collect();
    let got = answer(&mut up, &mut attempt_host, "200", "text/event-stream", &bytes);
    assert_eq!(get(&got.headers, ":status"), Some("200"));
    assert_eq!(got.body, stream.as_bytes(), "every byte, once, in order");
    // Nothing went out before the first text delta was complete.
    let first_out = got.pieces.iter().filter_map(|p| *p).next().unwrap();
    let first_delta_end = stream.find("\"Hello\"}}\n\n").unwrap() + "\"Hello\"}}\n\n".len();
    assert_eq!(first_out, first_delta_end);
}

#[test]
fn a_native_answer_that_is_neither_json_nor_a_stream_is_our_502() {
    let (vm, catalog) = vm();
    let mut d = vm.downstream(&catalog);
    let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
    route(&mut d, &mut host, &chat(false));
    let got = answer(&mut d, &mut host, "200", "text/html", &[b"<html>maintenance</html>"]);
    assert_eq!(get(&got.headers, ":status"), Some("502"));
    assert!(!String::from_utf8_lossy(&got.body).contains("maintenance"));
}
