//! Native providers through Envoy: Anthropic's Messages API and Gemini's generateContent behind the
//! OpenAI API. What each mock provider received (its API's body, path and key, no other provider's or
//! client's credentials), what the client got (OpenRouter-shaped, validated against its schemas, with
//! `usage.cost` exact), and fallback across APIs both ways, streamed and not.

mod common;

use common::http::open_stream;
use common::router::{provider_key, three_apis, Router, CLIENT_KEY};
use common::schema::assert_valid;
use llm_router_testkit::mock::Behavior;
use serde_json::{json, Value};

/// Prices per million tokens: the OpenAI provider $1/$2, Anthropic $3/$15 (cache read $0.30, write
/// $3.75), Gemini $0.5/$4. The mocks report 11 prompt and 7 completion tokens.
const OAI_COST: f64 = 0.000025; // 11 × 1 + 7 × 2
const ANT_COST: f64 = 0.000138; // 11 × 3 + 7 × 15
const GEM_COST: f64 = 0.0000335; // 11 × 0.5 + 7 × 4

fn body(order: &[&str], stream: bool) -> Value {
    json!({"model": "test/m", "stream": stream, "provider": {"order": order, "allow_fallbacks": false},
           "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]})
}

/// A streamed request's chunks (each validated), after its `[DONE]`.
fn stream_chunks(r: &Router, body: &Value) -> Vec<Value> {
    let headers =
        [("authorization", format!("Bearer {CLIENT_KEY}")), ("content-type", "application/json".into())];
    let h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let mut s = open_stream(r.envoy.port, "POST", "/v1/chat/completions", &h, body.to_string().as_bytes());
    assert_eq!(s.status, 200);
    let events = s.collect_events();
    assert_eq!(events.last().map(String::as_str), Some("data: [DONE]"), "{events:?}");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    for c in &chunks {
        assert_valid("ChatStreamChunk", c);
        assert_eq!(c["model"], "test/m");
    }
    chunks
}

fn text_of(chunks: &[Value]) -> String {
    chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect()
}

/// What `name`'s mock received, as (path, body) of each request.
fn received(r: &Router, name: &str) -> Vec<(String, Value)> {
    r.mock(name).requests().iter().map(|q| (q.path.clone(), q.json())).collect()
}

#[test]
fn anthropic_serves_a_completion_and_a_stream_in_openai_s_shape() {
    let r = three_apis();
    let resp = r.chat(&body(&["ant"], false));
    assert_eq!(resp.status, 200, "{}", resp.text());
    let v = resp.json();
    assert_valid("ChatResult", &v);
    assert_eq!((v["model"].as_str(), v["provider"].as_str()), (Some("test/m"), Some("Provider ANT")));
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from ant");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["choices"][0]["native_finish_reason"], "end_turn");
    assert_eq!(v["usage"]["cost"], ANT_COST);
    assert_eq!(resp.header("x-llm-cost-usd"), Some("0.000138"));
    let sent = &r.mock("ant").requests()[0];
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some(provider_key("ant").as_str()));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.header("authorization"), None, "neither the client's key nor an OpenAI-style one");
    assert_eq!(sent.header("content-length"), Some(sent.body.len().to_string().as_str()));
    assert_eq!(
        sent.json(),
        json!({"model": "claude-m", "max_tokens": 2048, "system": [{"type": "text", "text": "Be brief."}],
               "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}]})
    );

    let chunks = stream_chunks(&r, &body(&["ant"], true));
    assert_eq!(text_of(&chunks), "Hello from ant");
    let last = chunks.last().unwrap();
    assert_eq!((last["choices"].clone(), last["usage"]["cost"].as_f64()), (json!([]), Some(ANT_COST)));
    assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "stop"));
    assert_eq!(r.mock("ant").requests()[1].json()["stream"], true);
}

#[test]
fn gemini_serves_a_completion_and_a_stream_in_openai_s_shape() {
    let r = three_apis();
    let resp = r.chat(&body(&["gem"], false));
    assert_eq!(resp.status, 200, "{}", resp.text());
    let v = resp.json();
    assert_valid("ChatResult", &v);
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from gem");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["cost"], GEM_COST);
    let sent = &r.mock("gem").requests()[0];
    assert_eq!(sent.path, "/v1beta/models/gemini-m:generateContent");
    assert_eq!(sent.header("x-goog-api-key"), Some(provider_key("gem").as_str()));
    assert_eq!(sent.header("authorization"), None);
    assert_eq!(sent.header("content-length"), Some(sent.body.len().to_string().as_str()));
    let sent = sent.json();
    assert_eq!(sent["systemInstruction"]["parts"], json!([{"text": "Be brief."}]));
    assert_eq!(sent["contents"], json!([{"role": "user", "parts": [{"text": "Hello"}]}]));

    let chunks = stream_chunks(&r, &body(&["gem"], true));
    assert_eq!(text_of(&chunks), "Hello from gem");
    assert_eq!(chunks.last().unwrap()["usage"]["cost"], GEM_COST);
    assert_eq!(r.mock("gem").requests()[1].path, "/v1beta/models/gemini-m:streamGenerateContent?alt=sse");
}

/// Each case on a fresh router: a provider that failed is kept out of the next requests' plans for a
/// while (the health memory), so one failure per router.
fn falls_back(failing: &str, behavior: Behavior, order: &[&str], stream: bool) -> Router {
    let r = three_apis();
    r.mock(failing).set_behavior(behavior);
    let serving = order[1];
    let cost = match serving {
        "oai" => OAI_COST,
        "ant" => ANT_COST,
        _ => GEM_COST,
    };
    if stream {
        let chunks = stream_chunks(&r, &body(order, true));
        assert_eq!(text_of(&chunks), format!("Hello from {serving}"));
        assert_eq!(chunks.last().unwrap()["usage"]["cost"], cost);
    } else {
        let resp = r.chat(&body(order, false));
        assert_eq!((resp.status, resp.header("x-llm-provider")), (200, Some(serving)), "{}", resp.text());
        assert_eq!(resp.header("x-llm-attempts"), Some("2"));
        assert_valid("ChatResult", &resp.json());
        assert_eq!(resp.json()["usage"]["cost"], cost);
    }
    assert_eq!(r.mock(failing).requests().len(), 1, "the failing provider was tried first");
    r
}

fn unavailable() -> Behavior {
    Behavior::Status { code: 503, headers: vec![], body: "{}".into() }
}

fn overloaded() -> Behavior {
    let body = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    Behavior::Status { code: 529, headers: vec![], body: body.into() }
}

/// Anthropic got its own API's body, with its model name, on every attempt that reached it.
fn anthropic_got_its_own_body(r: &Router) {
    for (path, sent) in received(r, "ant") {
        assert_eq!((path.as_str(), sent["model"].as_str()), ("/v1/messages", Some("claude-m")));
        assert!(sent.get("provider").is_none() && sent["messages"][0]["content"].is_array(), "{sent}");
    }
}

/// The OpenAI provider got the client's body with its model: no trace of another API's translation.
fn openai_got_its_own_body(r: &Router) {
    for (path, sent) in received(r, "oai") {
        assert_eq!((path.as_str(), sent["model"].as_str()), ("/oai/v1/chat/completions", Some("m-oai")));
        assert_eq!(sent["messages"][0], json!({"role": "system", "content": "Be brief."}));
    }
}

#[test]
fn a_failed_openai_provider_falls_back_to_anthropic() {
    anthropic_got_its_own_body(&falls_back("oai", unavailable(), &["oai", "ant"], false));
}

#[test]
fn a_failed_openai_stream_falls_back_to_anthropic() {
    anthropic_got_its_own_body(&falls_back("oai", unavailable(), &["oai", "ant"], true));
}

#[test]
fn an_overloaded_anthropic_falls_back_to_openai() {
    openai_got_its_own_body(&falls_back("ant", overloaded(), &["ant", "oai"], false));
}

#[test]
fn an_anthropic_stream_failing_before_content_falls_back_to_openai() {
    // A 200 stream whose next event after message_start is an error: retried as a status would be.
    let stream_error = Behavior::StreamError { after_events: 1 };
    openai_got_its_own_body(&falls_back("ant", stream_error, &["ant", "oai"], true));
}

#[test]
fn an_unavailable_gemini_falls_back_to_anthropic_and_its_stream_too() {
    falls_back("gem", unavailable(), &["gem", "ant"], false);
    falls_back("gem", Behavior::StreamError { after_events: 0 }, &["gem", "ant"], true);
}

#[test]
fn an_error_after_content_ends_the_stream_with_the_typed_error_chunk() {
    let r = three_apis();
    r.mock("ant").set_behavior(Behavior::StreamError { after_events: 4 });
    let headers =
        [("authorization", format!("Bearer {CLIENT_KEY}")), ("content-type", "application/json".into())];
    let h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let mut s = open_stream(
        r.envoy.port,
        "POST",
        "/v1/chat/completions",
        &h,
        body(&["ant", "oai"], true).to_string().as_bytes(),
    );
    let events = s.collect_events();
    let last: Value = serde_json::from_str(events.last().unwrap().strip_prefix("data: ").unwrap()).unwrap();
    assert_valid("ChatStreamChunk", &last);
    assert_eq!(last["choices"][0]["finish_reason"], "error", "{events:?}");
    assert_eq!(last["error"]["metadata"]["error_type"], "provider_overloaded");
    assert!(r.mock("oai").requests().is_empty(), "content had gone out: no fallback");
}

#[test]
fn anthropic_s_refusal_of_the_request_is_the_client_s_400_and_no_fallback() {
    let r = three_apis();
    let invalid =
        r#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too large"}}"#;
    r.mock("ant").set_behavior(Behavior::Status { code: 400, headers: vec![], body: invalid.into() });
    let resp = r.chat(&body(&["ant", "oai"], false));
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(resp.json()["error"]["message"], "Provider ANT: max_tokens: too large");
    assert!(r.mock("oai").requests().is_empty());
}

#[test]
fn a_request_an_api_cannot_take_skips_it_or_is_refused_before_any_provider() {
    let r = three_apis();
    let mut two = body(&["ant", "oai"], false);
    two["n"] = json!(2);
    let resp = r.chat(&two);
    assert_eq!((resp.status, resp.header("x-llm-provider")), (200, Some("oai")), "{}", resp.text());
    two["provider"]["order"] = json!(["ant"]);
    let resp = r.chat(&two);
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert!(resp.json()["error"]["message"].as_str().unwrap().contains("\"n\""), "{}", resp.text());
    assert!(r.mock("ant").requests().is_empty(), "a refused request reaches no provider");
}

#[test]
fn anthropic_cache_reads_and_writes_are_priced_at_the_endpoint_s_cache_prices() {
    let r = three_apis();
    r.mock("ant").set_native_usage(100, 40);
    let v = r.chat(&body(&["ant"], false)).json();
    let u = &v["usage"];
    // prompt = input + cache read + cache write; cached_tokens = the reads.
    assert_eq!(
        (u["prompt_tokens"].as_u64(), u["prompt_tokens_details"]["cached_tokens"].as_u64()),
        (Some(151), Some(100))
    );
    // 11 × 3 + 100 × 0.30 + 40 × 3.75 + 7 × 15 = 33 + 30 + 150 + 105 = 318 µUSD.
    assert_eq!(u["cost"], 0.000318);
    let chunks = stream_chunks(&r, &body(&["ant"], true));
    assert_eq!(chunks.last().unwrap()["usage"]["cost"], 0.000318);
}

#[test]
fn tool_calls_come_back_as_openai_tool_calls_from_both_apis() {
    let r = three_apis();
    let tools =
        json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]);
    for p in ["ant", "gem"] {
        let mut b = body(&[p], false);
        b["tools"] = tools.clone();
        let v = r.chat(&b).json();
        assert_valid("ChatResult", &v);
        let call = &v["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(
            (call["function"]["name"].as_str(), call["function"]["arguments"].as_str()),
            (Some("lookup"), Some(r#"{"x":1}"#)),
            "{p}: {v}"
        );
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{p}");
        b["stream"] = json!(true);
        let chunks = stream_chunks(&r, &b);
        let args: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
            .collect();
        assert_eq!(args, r#"{"x":1}"#, "{p}");
        assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "tool_calls"), "{p}");
    }
}
