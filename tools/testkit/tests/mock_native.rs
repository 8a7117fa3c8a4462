//! Tests of the mock provider's native APIs: Anthropic's Messages API (`/v1/messages`) and Gemini's
//! `generateContent` / `streamGenerateContent`, under the behaviours they share with chat completions.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use llm_router_testkit::http::{open_stream, open_stream_within, post_json, request, Stream};
use llm_router_testkit::mock::{Behavior, MockProvider, FIRST_EVENT_TIMEOUT};
use serde_json::{json, Value};

const MESSAGES: &str = "/v1/messages";
const CHAT: &str = "/v1/chat/completions";
const GEMINI: &str = "/v1beta/models/gemini-2.5-flash:generateContent";
const GEMINI_STREAM: &str = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";

/// The headers an Anthropic client sends.
const ANTHROPIC_HEADERS: [(&str, &str); 3] =
    [("content-type", "application/json"), ("x-api-key", "sk-ant-1"), ("anthropic-version", "2023-06-01")];

fn anthropic_body(stream: bool, tools: Value) -> Value {
    json!({
        "model": "claude-test",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
        "tools": tools,
    })
}

fn gemini_body(tools: Value) -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "tools": tools})
}

fn post(port: u16, path: &str, body: &Value) -> llm_router_testkit::http::Response {
    request(port, "POST", path, &ANTHROPIC_HEADERS, body.to_string().as_bytes())
}

fn stream(port: u16, path: &str, body: &Value) -> Stream {
    open_stream(port, "POST", path, &ANTHROPIC_HEADERS, body.to_string().as_bytes())
}

/// An Anthropic event's name and data.
fn anthropic_event(event: &str) -> (String, Value) {
    let (name, data) = event.split_once('\n').unwrap_or_else(|| panic!("not an event: {event:?}"));
    let name = name.strip_prefix("event: ").unwrap_or_else(|| panic!("no event name: {event:?}"));
    let data = data.strip_prefix("data: ").unwrap_or_else(|| panic!("no data: {event:?}"));
    let data: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data}"));
    // Each event's `type` is its name.
    assert_eq!(data["type"], name, "{event}");
    (name.to_string(), data)
}

fn anthropic_events(s: &mut Stream) -> Vec<(String, Value)> {
    s.collect_events().iter().map(|e| anthropic_event(e)).collect()
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

/// The text of an Anthropic stream's text deltas, concatenated.
fn anthropic_text(events: &[(String, Value)]) -> String {
    events
        .iter()
        .filter(|(_, d)| d["delta"]["type"] == "text_delta")
        .map(|(_, d)| d["delta"]["text"].as_str().unwrap().to_string())
        .collect()
}

/// A Gemini stream's events, read raw: each must end with `\r\n\r\n`.
fn gemini_events(s: &mut Stream) -> Vec<Value> {
    let raw = String::from_utf8(s.read_rest()).unwrap();
    assert!(raw.is_empty() || raw.ends_with("\r\n\r\n"), "{raw:?}");
    assert!(!raw.contains("[DONE]"), "{raw}");
    raw.split_terminator("\r\n\r\n")
        .map(|e| {
            assert!(!e.contains('\n'), "one line per event: {e:?}");
            let data = e.strip_prefix("data: ").unwrap_or_else(|| panic!("not a data event: {e:?}"));
            serde_json::from_str(data).unwrap_or_else(|err| panic!("{err}: {data}"))
        })
        .collect()
}

fn gemini_text(events: &[Value]) -> String {
    events
        .iter()
        .flat_map(|e| e["candidates"][0]["content"]["parts"].as_array().unwrap().clone())
        .filter_map(|p| p["text"].as_str().map(str::to_string))
        .collect()
}

const DEFAULT_ANTHROPIC: [&str; 9] = [
    "message_start",
    "content_block_start",
    "ping",
    "content_block_delta",
    "content_block_delta",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
];

#[test]
fn anthropic_message_is_recorded_and_answered() {
    let mock = MockProvider::start("anth");
    let body = anthropic_body(false, json!([]));
    let r = post(mock.port(), MESSAGES, &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-mock-secret"), Some("internal"));
    assert_eq!(r.header("anthropic-ratelimit-requests-remaining"), Some("99"));
    assert_eq!(r.header("request-id"), Some("req_mock_1"));
    assert_eq!(r.header("x-ratelimit-remaining-requests"), None, "OpenAI's header only");
    assert_eq!(
        r.json(),
        json!({
            "id": "msg_mock_1", "type": "message", "role": "assistant", "model": "claude-test",
            "content": [{"type": "text", "text": "Hello from anth"}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 11, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                      "output_tokens": 7}
        })
    );

    // Recorded like a chat request, on any prefix; ids count up across APIs.
    let r = post(mock.port(), "/anthropic/v1/messages?beta=true", &body);
    assert_eq!(r.json()["id"], "msg_mock_2");
    let r = post(mock.port(), CHAT, &json!({"model": "m"}));
    assert_eq!(r.json()["id"], "chatcmpl-mock-3");
    // Not a Messages path: not recorded, 404.
    assert_eq!(post(mock.port(), "/v1/messages/count_tokens", &body).status, 404);
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(mock.received(), 3);
    assert_eq!((reqs[0].method.as_str(), reqs[0].path.as_str()), ("POST", MESSAGES));
    assert_eq!(reqs[0].header("X-Api-Key"), Some("sk-ant-1"));
    assert_eq!(reqs[0].header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(reqs[0].json(), body);
    assert_eq!(reqs[1].path, "/anthropic/v1/messages?beta=true");
    assert_eq!(reqs[2].path, CHAT);

    // A body that is not JSON: recorded, 400 in Anthropic's error shape.
    let r = request(mock.port(), "POST", MESSAGES, &[], b"{nope");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    assert_eq!(mock.requests().len(), 4);
}

#[test]
fn anthropic_tool_use_answer() {
    let mock = MockProvider::start("anth-tools");
    let tools = json!([
        {"name": "get_weather", "description": "w", "input_schema": {"type": "object"}},
        {"name": "other", "input_schema": {"type": "object"}}
    ]);
    let v = post(mock.port(), MESSAGES, &anthropic_body(false, tools.clone())).json();
    assert_eq!(
        v["content"],
        json!([
            {"type": "text", "text": "Hello from anth-tools"},
            {"type": "tool_use", "id": "toolu_mock_1", "name": "get_weather", "input": {"x": 1}}
        ])
    );
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(v["usage"]["output_tokens"], 7);

    // Streamed: the text block, then the tool block with its input in 2 fragments.
    let events = anthropic_events(&mut stream(mock.port(), MESSAGES, &anthropic_body(true, tools)));
    let mut expected = DEFAULT_ANTHROPIC[..7].to_vec();
    expected.extend([
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]);
    assert_eq!(names(&events), expected);
    assert_eq!(
        events[7].1["content_block"],
        json!({"type": "tool_use", "id": "toolu_mock_1", "name": "get_weather", "input": {}})
    );
    assert_eq!(events[7].1["index"], 1);
    let fragments: Vec<&str> = events[8..10]
        .iter()
        .map(|(_, d)| {
            assert_eq!(
                (d["index"].as_u64(), d["delta"]["type"].as_str()),
                (Some(1), Some("input_json_delta"))
            );
            d["delta"]["partial_json"].as_str().unwrap()
        })
        .collect();
    assert_eq!(fragments, [r#"{"x":"#, "1}"]);
    assert_eq!(serde_json::from_str::<Value>(&fragments.concat()).unwrap(), json!({"x": 1}));
    assert_eq!(events[10].1, json!({"type": "content_block_stop", "index": 1}));
    assert_eq!(events[11].1["delta"]["stop_reason"], "tool_use");
    assert_eq!(anthropic_text(&events), "Hello from anth-tools");

    // No tools (absent, or an empty array): no tool call.
    let mut body = anthropic_body(false, json!([]));
    body.as_object_mut().unwrap().remove("tools");
    let v = post(mock.port(), MESSAGES, &body).json();
    assert_eq!(v["content"].as_array().unwrap().len(), 1);
    assert_eq!(v["stop_reason"], "end_turn");
}

#[test]
fn anthropic_stream_events_in_order() {
    let mock = MockProvider::start("anth-stream");
    let mut s = stream(mock.port(), MESSAGES, &anthropic_body(true, json!([])));
    assert_eq!(s.status, 200);
    assert_eq!(s.header("content-type"), Some("text/event-stream"));
    assert_eq!(s.header("cache-control"), Some("no-cache"));
    assert_eq!(s.header("request-id"), Some("req_mock_1"));
    let events = anthropic_events(&mut s);
    assert_eq!(names(&events), DEFAULT_ANTHROPIC);
    assert_eq!(
        events[0].1["message"],
        json!({
            "id": "msg_mock_1", "type": "message", "role": "assistant", "content": [], "model": "claude-test",
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 11, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                      "output_tokens": 1}
        })
    );
    assert_eq!(
        events[1].1,
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    );
    let deltas: Vec<&str> = events[3..6].iter().map(|(_, d)| d["delta"]["text"].as_str().unwrap()).collect();
    assert_eq!(deltas, ["Hello ", "from ", "anth-stream"]);
    assert!(events[3..6].iter().all(|(_, d)| d["index"] == 0 && d["delta"]["type"] == "text_delta"));
    assert_eq!(events[6].1, json!({"type": "content_block_stop", "index": 0}));
    assert_eq!(
        events[7].1,
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
               "usage": {"output_tokens": 7}})
    );
    // The streamed text is the whole answer's.
    let whole = post(mock.port(), MESSAGES, &anthropic_body(false, json!([]))).json();
    assert_eq!(whole["content"][0]["text"], anthropic_text(&events).as_str());
    assert_eq!(mock.requests()[0].json()["stream"], true);

    // The stream's shape and pacing: 4 deltas, 2 ms before each event; the whole answer holds their text.
    mock.set_stream_shape(4, Duration::from_millis(2));
    let t = Instant::now();
    let events = anthropic_events(&mut stream(mock.port(), MESSAGES, &anthropic_body(true, json!([]))));
    assert!(t.elapsed() >= Duration::from_millis(2 * 10), "{:?}", t.elapsed());
    assert_eq!(events.len(), 10);
    assert_eq!(anthropic_text(&events), "token0 token1 token2 token3 ");
    let whole = post(mock.port(), MESSAGES, &anthropic_body(false, json!([]))).json();
    assert_eq!(whole["content"][0]["text"], "token0 token1 token2 token3 ");
}

#[test]
fn native_cache_usage() {
    let mock = MockProvider::start("cache");
    mock.set_native_usage(100, 30);
    let v = post(mock.port(), MESSAGES, &anthropic_body(false, json!([]))).json();
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 11, "cache_creation_input_tokens": 30, "cache_read_input_tokens": 100,
               "output_tokens": 7})
    );
    let events = anthropic_events(&mut stream(mock.port(), MESSAGES, &anthropic_body(true, json!([]))));
    assert_eq!(events[0].1["message"]["usage"]["cache_read_input_tokens"], 100);
    assert_eq!(events[0].1["message"]["usage"]["cache_creation_input_tokens"], 30);

    // Gemini: cached tokens are part of the prompt; cache writes are not reported.
    let v = post(mock.port(), GEMINI, &gemini_body(json!([]))).json();
    assert_eq!(
        v["usageMetadata"],
        json!({"promptTokenCount": 111, "candidatesTokenCount": 7, "totalTokenCount": 118,
               "cachedContentTokenCount": 100})
    );
    let events = gemini_events(&mut stream(mock.port(), GEMINI_STREAM, &gemini_body(json!([]))));
    assert!(events.iter().all(|e| e["usageMetadata"]["cachedContentTokenCount"] == 100), "{events:?}");

    // OpenAI answers are unchanged; back to zeros, and Gemini omits the count.
    let v = post(mock.port(), CHAT, &json!({"model": "m"})).json();
    assert_eq!(v["usage"], json!({"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}));
    mock.set_native_usage(0, 0);
    let v = post(mock.port(), GEMINI, &gemini_body(json!([]))).json();
    assert_eq!(
        v["usageMetadata"],
        json!({"promptTokenCount": 11, "candidatesTokenCount": 7, "totalTokenCount": 18})
    );
    let v = post(mock.port(), MESSAGES, &anthropic_body(false, json!([]))).json();
    assert_eq!(v["usage"]["cache_read_input_tokens"], 0);
}

#[test]
fn gemini_generate_content() {
    let mock = MockProvider::start("gem");
    let body = gemini_body(json!([]));
    let r = request(
        mock.port(),
        "POST",
        GEMINI,
        &[("content-type", "application/json"), ("x-goog-api-key", "AIza-1")],
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-mock-secret"), Some("internal"));
    assert_eq!(
        r.json(),
        json!({
            "candidates": [{"content": {"role": "model", "parts": [{"text": "Hello from gem"}]},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 11, "candidatesTokenCount": 7, "totalTokenCount": 18},
            "modelVersion": "gemini-2.5-flash",
            "responseId": "mock-1"
        })
    );
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, GEMINI);
    assert_eq!(reqs[0].header("x-goog-api-key"), Some("AIza-1"));
    assert_eq!(reqs[0].json(), body);

    // The model is the path's (the body has none), on any prefix, with a query.
    let v = post(mock.port(), "/gemini/v1/models/gemini-pro:generateContent?key=k", &body).json();
    assert_eq!((v["modelVersion"].as_str(), v["responseId"].as_str()), (Some("gemini-pro"), Some("mock-2")));
    // Other model methods are not completions.
    assert_eq!(post(mock.port(), "/v1beta/models/gemini-pro:countTokens", &body).status, 404);
    assert_eq!(mock.requests().len(), 2);

    // Tools: the first function declared is called (camelCase or snake_case).
    let tools = json!([
        {"googleSearch": {}},
        {"functionDeclarations": [{"name": "lookup", "parameters": {"type": "object"}}, {"name": "second"}]}
    ]);
    let v = post(mock.port(), GEMINI, &gemini_body(tools)).json();
    assert_eq!(
        v["candidates"][0]["content"]["parts"],
        json!([{"text": "Hello from gem"}, {"functionCall": {"name": "lookup", "args": {"x": 1}}}])
    );
    assert_eq!(v["candidates"][0]["finishReason"], "STOP");
    let v = post(mock.port(), GEMINI, &gemini_body(json!([{"function_declarations": [{"name": "snake"}]}])))
        .json();
    assert_eq!(v["candidates"][0]["content"]["parts"][1]["functionCall"]["name"], "snake");
    let v = post(mock.port(), GEMINI, &gemini_body(json!([{"googleSearch": {}}]))).json();
    assert_eq!(v["candidates"][0]["content"]["parts"].as_array().unwrap().len(), 1);

    // Not JSON: 400 in Gemini's error shape.
    let r = request(mock.port(), "POST", GEMINI, &[], b"[1,");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(r.json()["error"]["code"], 400);
}

#[test]
fn gemini_stream_events() {
    let mock = MockProvider::start("gem-stream");
    let mut s = stream(mock.port(), GEMINI_STREAM, &gemini_body(json!([])));
    assert_eq!(s.status, 200);
    assert_eq!(s.header("content-type"), Some("text/event-stream"));
    let events = gemini_events(&mut s);
    assert_eq!(events.len(), 3, "{events:#?}");
    assert_eq!(gemini_text(&events), "Hello from gem-stream");
    let tokens: Vec<u64> =
        events.iter().map(|e| e["usageMetadata"]["candidatesTokenCount"].as_u64().unwrap()).collect();
    assert_eq!(tokens, [3, 5, 7]);
    for (i, e) in events.iter().enumerate() {
        let last = i == events.len() - 1;
        assert_eq!(e["candidates"][0]["content"]["role"], "model");
        assert_eq!(e["candidates"][0].get("finishReason").is_some(), last, "{e}");
        assert_eq!(e["usageMetadata"]["promptTokenCount"], 11);
        assert_eq!(e["usageMetadata"]["totalTokenCount"], 11 + tokens[i]);
        assert_eq!(e["modelVersion"], "gemini-2.5-flash");
        assert_eq!(e["responseId"], "mock-1");
    }
    assert_eq!(events[2]["candidates"][0]["finishReason"], "STOP");
    assert_eq!(
        events[0]["candidates"][0]["content"]["parts"],
        json!([{"text": "Hello "}]),
        "one text part per event"
    );

    // Tools: a last event with the call and the finish reason.
    let tools = json!([{"functionDeclarations": [{"name": "lookup"}]}]);
    let events = gemini_events(&mut stream(mock.port(), GEMINI_STREAM, &gemini_body(tools)));
    assert_eq!(events.len(), 4);
    assert_eq!(events[2]["candidates"][0].get("finishReason"), None);
    assert_eq!(
        events[3]["candidates"][0]["content"]["parts"],
        json!([{"functionCall": {"name": "lookup", "args": {"x": 1}}}])
    );
    assert_eq!(events[3]["candidates"][0]["finishReason"], "STOP");
    assert_eq!(events[3]["usageMetadata"]["candidatesTokenCount"], 7);

    // Many chunks: counts still grow to 7, never back.
    mock.set_stream_shape(20, Duration::ZERO);
    let events = gemini_events(&mut stream(mock.port(), GEMINI_STREAM, &gemini_body(json!([]))));
    assert_eq!(events.len(), 20);
    let tokens: Vec<u64> =
        events.iter().map(|e| e["usageMetadata"]["candidatesTokenCount"].as_u64().unwrap()).collect();
    assert!(tokens.windows(2).all(|w| w[0] <= w[1]) && tokens[19] == 7, "{tokens:?}");
    let whole = post(mock.port(), GEMINI, &gemini_body(json!([]))).json();
    assert_eq!(whole["candidates"][0]["content"]["parts"][0]["text"], gemini_text(&events).as_str());

    // Without alt=sse: recorded, refused.
    let path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent";
    let r = post(mock.port(), path, &gemini_body(json!([])));
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("alt=sse"), "{}", r.text());
    assert_eq!(mock.requests().last().unwrap().path, path);
}

#[test]
fn stream_error_before_and_after_content() {
    let mock = MockProvider::start("overloaded");
    // Anthropic, after message_start only.
    mock.set_behavior(Behavior::StreamError { after_events: 1 });
    let mut s = stream(mock.port(), MESSAGES, &anthropic_body(true, json!([])));
    assert_eq!(s.status, 200);
    let events = anthropic_events(&mut s);
    assert_eq!(names(&events), ["message_start", "error"]);
    assert_eq!(
        events[1].1,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );
    // After the first text delta.
    mock.set_behavior(Behavior::StreamError { after_events: 4 });
    let events = anthropic_events(&mut stream(mock.port(), MESSAGES, &anthropic_body(true, json!([]))));
    assert_eq!(names(&events), [&DEFAULT_ANTHROPIC[..4], &["error"]].concat());
    assert_eq!(anthropic_text(&events), "Hello ");
    // Non-streamed requests answer as Ok.
    assert_eq!(post(mock.port(), MESSAGES, &anthropic_body(false, json!([]))).status, 200);

    // Gemini: before any event, and after 2 (the raw error line is CRLF-terminated).
    mock.set_behavior(Behavior::StreamError { after_events: 0 });
    let events = gemini_events(&mut stream(mock.port(), GEMINI_STREAM, &gemini_body(json!([]))));
    assert_eq!(
        events,
        [json!({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}})]
    );
    mock.set_behavior(Behavior::StreamError { after_events: 2 });
    let events = gemini_events(&mut stream(mock.port(), GEMINI_STREAM, &gemini_body(json!([]))));
    assert_eq!(events.len(), 3);
    assert_eq!(gemini_text(&events[..2]), "Hello from ");
    assert_eq!(events[2]["error"]["status"], "UNAVAILABLE");

    // OpenAI: after the 1st content chunk, then the end (no [DONE]).
    mock.set_behavior(Behavior::StreamError { after_events: 1 });
    let body = json!({"model": "m", "stream": true}).to_string();
    let events = open_stream(mock.port(), "POST", CHAT, &[], body.as_bytes()).collect_events();
    assert_eq!(events.len(), 2, "{events:#?}");
    assert!(events[0].contains(r#""content":"Hello ""#), "{}", events[0]);
    assert_eq!(events[1], r#"data: {"error":{"message":"Overloaded","code":502}}"#);

    // Beyond the stream's length: the whole stream, then the error.
    mock.set_behavior(Behavior::StreamError { after_events: 100 });
    let events = anthropic_events(&mut stream(mock.port(), MESSAGES, &anthropic_body(true, json!([]))));
    assert_eq!(names(&events), [&DEFAULT_ANTHROPIC[..], &["error"]].concat());
}

#[test]
fn native_cuts() {
    let mock = MockProvider::start("cut");
    // Anthropic: 5 events (2 deltas), no message_stop, the response ended cleanly.
    mock.set_behavior(Behavior::Cut { after_events: 5, reset: false });
    let events = anthropic_events(&mut stream(mock.port(), MESSAGES, &anthropic_body(true, json!([]))));
    assert_eq!(names(&events), DEFAULT_ANTHROPIC[..5]);
    // Just before the end: everything but message_stop.
    mock.set_behavior(Behavior::Cut { after_events: 8, reset: false });
    let events = anthropic_events(&mut stream(mock.port(), MESSAGES, &anthropic_body(true, json!([]))));
    assert_eq!(names(&events), DEFAULT_ANTHROPIC[..8]);
    // Gemini: the text events, without the finishReason one.
    mock.set_behavior(Behavior::Cut { after_events: 2, reset: false });
    let events = gemini_events(&mut stream(mock.port(), GEMINI_STREAM, &gemini_body(json!([]))));
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e["candidates"][0].get("finishReason").is_none()));
    // A reset: the connection closes after the events, without the last chunk.
    mock.set_behavior(Behavior::Cut { after_events: 1, reset: true });
    let raw = raw_exchange(mock.port(), GEMINI_STREAM, &gemini_body(json!([])));
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
    assert_eq!(raw.matches("data: ").count(), 1, "{raw}");
    assert!(raw.contains(r#""text":"Hello ""#) && !raw.ends_with("0\r\n\r\n"), "{raw}");
    // Non-streamed: whole.
    assert_eq!(post(mock.port(), GEMINI, &gemini_body(json!([]))).status, 200);
}

/// POSTs `body` to `path` on a fresh connection (`connection: close`) and reads until the server closes it.
fn raw_exchange(port: u16, path: &str, body: &Value) -> String {
    let body = body.to_string();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn native_status_flaky_delay_and_trailers() {
    let mock = MockProvider::start("status");
    // The test's own error bodies pass through, whatever the API.
    let anthropic_error = r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#;
    mock.set_behavior(Behavior::Status {
        code: 429,
        headers: vec![("retry-after".into(), "3".into())],
        body: anthropic_error.into(),
    });
    let r = post(mock.port(), MESSAGES, &anthropic_body(true, json!([])));
    assert_eq!((r.status, r.text().as_str()), (429, anthropic_error));
    assert_eq!(r.header("retry-after"), Some("3"));
    let gemini_error = r#"{"error":{"code":503,"message":"busy","status":"UNAVAILABLE"}}"#;
    mock.set_behavior(Behavior::Status { code: 503, headers: vec![], body: gemini_error.into() });
    let r = post(mock.port(), GEMINI_STREAM, &gemini_body(json!([])));
    assert_eq!((r.status, r.text().as_str()), (503, gemini_error));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(mock.requests().len(), 2);

    // Flaky counts every completion request, failing in the path's API's shape.
    mock.set_behavior(Behavior::Flaky { percent: 50, code: 529 });
    let r = post(mock.port(), MESSAGES, &anthropic_body(false, json!([])));
    assert_eq!(r.status, 200);
    let r = post(mock.port(), MESSAGES, &anthropic_body(false, json!([])));
    assert_eq!(r.status, 529);
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.json()["error"]["type"], "overloaded_error");
    mock.set_behavior(Behavior::Flaky { percent: 100, code: 429 });
    let r = post(mock.port(), GEMINI, &gemini_body(json!([])));
    assert_eq!((r.status, r.json()["error"]["status"].as_str()), (429, Some("RESOURCE_EXHAUSTED")));
    assert_eq!(r.json()["error"]["code"], 429);

    // Delay.
    mock.set_behavior(Behavior::Delay { ms: 150 });
    let t = Instant::now();
    let r = post(mock.port(), GEMINI, &gemini_body(json!([])));
    assert!(t.elapsed() >= Duration::from_millis(150));
    assert_eq!(r.json()["candidates"][0]["content"]["parts"][0]["text"], "Hello from status");

    // Trailers: the native whole answer, chunked, ended by the trailer.
    mock.set_behavior(Behavior::Trailers);
    let raw = raw_exchange(mock.port(), MESSAGES, &anthropic_body(false, json!([])));
    assert!(
        raw.starts_with("HTTP/1.1 200 OK\r\n") && raw.ends_with("\r\n0\r\nx-mock-trailer: done\r\n\r\n"),
        "{raw}"
    );
    assert!(raw.contains(r#""type":"message""#) && raw.contains("Hello from status"), "{raw}");

    // Trickle: a native stream, one byte at a time.
    mock.set_behavior(Behavior::Trickle { interval_ms: 0 });
    let events = anthropic_events(&mut stream(mock.port(), MESSAGES, &anthropic_body(true, json!([]))));
    assert_eq!(names(&events), DEFAULT_ANTHROPIC);

    // gzip, when accepted.
    mock.set_behavior(Behavior::Ok);
    let body = anthropic_body(false, json!([])).to_string();
    let r = request(mock.port(), "POST", MESSAGES, &[("accept-encoding", "gzip")], body.as_bytes());
    assert_eq!((r.status, r.header("content-encoding")), (200, Some("gzip")));
    assert_eq!(&r.body[..2], &[0x1f, 0x8b]);
}

#[test]
fn native_streams_hold() {
    let mock = MockProvider::start("hold");
    mock.hold_streams(true);
    let body = anthropic_body(true, json!([])).to_string();
    let mut s = open_stream_within(FIRST_EVENT_TIMEOUT, mock.port(), "POST", MESSAGES, &[], body.as_bytes());
    let first = anthropic_event(&s.next_event().expect("event 1"));
    assert_eq!(first.0, "message_start");
    assert_eq!(mock.held(), 1);
    mock.release_stream();
    let mut events = vec![first];
    events.extend(anthropic_events(&mut s));
    assert_eq!(names(&events), DEFAULT_ANTHROPIC);

    let body = gemini_body(json!([])).to_string();
    let mut s =
        open_stream_within(FIRST_EVENT_TIMEOUT, mock.port(), "POST", GEMINI_STREAM, &[], body.as_bytes());
    assert!(s.next_event().expect("event 1").contains(r#""text":"Hello ""#));
    assert_eq!(mock.held(), 1);
    mock.hold_streams(false);
    assert_eq!(s.collect_events().len(), 2);
    assert_eq!(mock.held(), 0);
}

#[test]
fn recorded_requests_can_be_switched_off() {
    let mock = MockProvider::start("quiet");
    mock.set_recording(false);
    post(mock.port(), MESSAGES, &anthropic_body(false, json!([])));
    post(mock.port(), GEMINI, &gemini_body(json!([])));
    assert!(mock.requests().is_empty());
    assert_eq!(mock.received(), 2);
    // post_json's bearer key is recorded as sent.
    mock.set_recording(true);
    post_json(mock.port(), GEMINI, Some("k"), &gemini_body(json!([])));
    assert_eq!(mock.requests()[0].header("authorization"), Some("Bearer k"));
}
