use super::*;
use crate::wire::gemini::fixture_tests::{payloads, run, served, CREATED};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const TEXT: &str = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"hi\"}],\"role\":\"model\"}}],\"usageMetadata\":{\"promptTokenCount\":3,\"candidatesTokenCount\":1},\"responseId\":\"r1\"}\n\n";
const STOP: &str = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"!\"}],\"role\":\"model\"},\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":3,\"candidatesTokenCount\":4},\"responseId\":\"r1\"}\n\n";
const ERROR: &str = "data: {\"error\":{\"code\":500,\"message\":\"boom\",\"status\":\"INTERNAL\"}}\n\n";

#[test]
fn nothing_is_sent_before_content_and_a_failure_is_reported_once() {
    let mut t = StreamTranslator::new(served(), CREATED);
    let empty = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"\"}]}}],\"usageMetadata\":{\"promptTokenCount\":3}}\n\n";
    assert_eq!(t.feed(empty.as_bytes()), Step::Forward(b""));
    assert_eq!(t.feed(b": keep-alive\n\n"), Step::Forward(b""));
    match t.feed(ERROR.as_bytes()) {
        Step::Failed(f) => {
            assert_eq!((f.status, f.native_type.as_str(), f.retriable()), (500, "INTERNAL", true))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(t.feed(TEXT.as_bytes()), Step::Forward(b""), "after a failure nothing more");
    assert_eq!(t.finish(), Step::Forward(b""));
}

#[test]
fn usage_is_the_last_seen_and_the_end_comes_with_the_streams_end() {
    let mut t = StreamTranslator::new(served(), CREATED);
    let _ = t.feed(TEXT.as_bytes());
    let usage = t.accounted().usage.unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (3, 1), "cumulative so far");
    assert_eq!(t.content_chunks(), 1);
    let Step::Forward(out) = t.feed(STOP.as_bytes()) else { panic!("forwarded") };
    let out = String::from_utf8(out.to_vec()).unwrap();
    assert!(out.contains("\"finish_reason\":\"stop\",\"native_finish_reason\":\"STOP\""), "{out}");
    assert!(!out.contains("[DONE]"), "Gemini has no stop event: the end waits for the stream's end");
    let usage = t.accounted().usage.unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (3, 4));
    // Content after the finish is not sent; its usage, the last seen, is what counts.
    assert_eq!(t.feed(TEXT.as_bytes()), Step::Forward(b""));
    let Step::Forward(end) = t.finish() else { panic!("forwarded") };
    let end = String::from_utf8(end.to_vec()).unwrap();
    let chunks = payloads(&end);
    assert_eq!(chunks.len(), 2, "{chunks:?}"); // usage, [DONE]
    assert!(chunks[0].contains("\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,"));
    assert_eq!(chunks[1], "[DONE]");
}

#[test]
fn an_error_after_content_is_the_error_chunk_with_its_status() {
    let r = run(&[TEXT.as_bytes(), ERROR.as_bytes(), STOP.as_bytes()]);
    assert_eq!(r.failed, None);
    let chunks = payloads(&r.out);
    let last: serde_json::Value = serde_json::from_str(chunks.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], 500);
    assert_eq!(last["error"]["metadata"]["error_type"], "provider_unavailable");
    assert_eq!(last["error"]["message"], "The provider failed mid-stream (INTERNAL)");
    assert_eq!(last["id"], "r1");
    assert_eq!(r.out.matches("\"error\":{").count(), 1);
    assert!(!r.out.contains("[DONE]"));
}

#[test]
fn an_event_that_is_not_json_or_too_large_ends_with_the_error_chunk() {
    let bad = format!("{TEXT}data: {{not json\n\n");
    let r = run(&[bad.as_bytes()]);
    let last = *payloads(&r.out).last().unwrap();
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(v["error"]["code"], 502);
    let huge = format!("{TEXT}data: {}\n\n", "x".repeat(crate::wire::response::MAX_EVENT_BYTES + 10));
    let r = run(&[huge.as_bytes()]);
    let last = *payloads(&r.out).last().unwrap();
    assert!(last.contains("\"finish_reason\":\"error\""), "{last}");
    assert_eq!(r.out.matches("\"error\":{").count(), 1);
}

#[test]
fn a_done_marker_is_ignored_and_an_id_less_stream_has_the_default_id() {
    let s = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]},\"finishReason\":\"STOP\"}]}\n\ndata: [DONE]\n\n";
    let r = run(&[s.as_bytes()]);
    let chunks = payloads(&r.out);
    assert_eq!(chunks.len(), 4, "{chunks:?}"); // role, text, finish, [DONE] (no usage known)
    assert!(chunks[0].starts_with("{\"id\":\"gen-gemini\""));
    assert_eq!(chunks[3], "[DONE]");
}

#[test]
fn tool_indices_count_calls_across_events() {
    let call = |name: &str| {
        format!("data: {{\"candidates\":[{{\"content\":{{\"parts\":[{{\"functionCall\":{{\"name\":\"{name}\",\"args\":{{}}}}}},{{\"text\":\"t\"}}]}}}}]}}\n\n")
    };
    let s = format!("{}{}{STOP}", call("a"), call("b"));
    let r = run(&[s.as_bytes()]);
    let chunks = payloads(&r.out);
    let v = |i: usize| serde_json::from_str::<serde_json::Value>(chunks[i]).unwrap();
    assert_eq!(v(1)["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
    assert_eq!(v(1)["choices"][0]["delta"]["tool_calls"][0]["id"], "call_0");
    assert_eq!(v(3)["choices"][0]["delta"]["tool_calls"][0]["index"], 1);
    assert_eq!(v(3)["choices"][0]["delta"]["tool_calls"][0]["id"], "call_1");
    let finish = v(6);
    assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
}

#[test]
fn a_provider_s_own_error_text_never_reaches_the_client() {
    // A provider may echo the router's key in an error event: neither its message nor an undocumented
    // type is quoted in the error chunk.
    let secret = "sk-provider-secret-0123456789";
    let error = format!("data: {{\"error\":{{\"code\":500,\"message\":\"bad key {secret}\",\"status\":\"{secret}\"}}}}\r\n\r\n");
    let r = run(&[TEXT.as_bytes(), error.as_bytes()]);
    assert!(r.out.contains("\"finish_reason\":\"error\""), "{}", r.out);
    assert!(!r.out.contains(secret), "{}", r.out);
    assert!(r.out.contains("\"message\":\"The provider failed mid-stream\""), "{}", r.out);
}
