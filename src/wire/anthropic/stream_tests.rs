use super::*;
use crate::wire::anthropic::fixture_tests::{payloads, run, served, CREATED};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n";
const TEXT: &str = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n";
const DELTA: &str = "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":4}}\n\n";
const STOP: &str = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

#[test]
fn nothing_is_sent_before_content_and_a_failure_is_reported_once() {
    let mut t = StreamTranslator::new(served(), CREATED);
    assert_eq!(t.feed(START.as_bytes()), Step::Forward(b""));
    assert_eq!(t.feed(b"event: ping\ndata: {\"type\":\"ping\"}\n\n"), Step::Forward(b""));
    let e = b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"boom\"}}\n\n";
    match t.feed(e) {
        Step::Failed(f) => {
            assert_eq!((f.status, f.native_type.as_str(), f.retriable()), (500, "api_error", true))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(t.feed(TEXT.as_bytes()), Step::Forward(b""), "after a failure nothing more");
    assert_eq!(t.finish(), Step::Forward(b""));
}

#[test]
fn usage_is_known_from_the_message_delta_and_events_after_the_stop_are_ignored() {
    let mut t = StreamTranslator::new(served(), CREATED);
    let _ = t.feed(START.as_bytes());
    let _ = t.feed(TEXT.as_bytes());
    assert_eq!(t.accounted().usage, None, "the completion is not known yet");
    assert_eq!(t.content_chunks(), 1);
    let _ = t.feed(DELTA.as_bytes());
    let usage = t.accounted().usage.unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (3, 4));
    let _ = t.feed(STOP.as_bytes());
    assert_eq!(t.feed(TEXT.as_bytes()), Step::Forward(b""));
    assert_eq!(t.finish(), Step::Forward(b""), "a stopped stream needs no error chunk");
}

#[test]
fn an_event_that_is_not_json_or_too_large_ends_with_the_error_chunk() {
    let bad = format!("{START}{TEXT}data: {{not json\n\n");
    let r = run(&[bad.as_bytes()]);
    let last = *payloads(&r.out).last().unwrap();
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(v["error"]["code"], 502);
    let huge = format!("{START}{TEXT}data: {}\n\n", "x".repeat(crate::wire::response::MAX_EVENT_BYTES + 10));
    let r = run(&[huge.as_bytes()]);
    let last = *payloads(&r.out).last().unwrap();
    assert!(last.contains("\"finish_reason\":\"error\""), "{last}");
    assert_eq!(r.out.matches("\"error\":{").count(), 1);
}

#[test]
fn a_stream_with_a_stop_but_no_delta_still_finishes_without_usage() {
    let r = run(&[format!("{START}{TEXT}{STOP}").as_bytes()]);
    let chunks = payloads(&r.out);
    assert_eq!(chunks.len(), 4, "{chunks:?}"); // role, text, finish, [DONE]
    assert!(chunks[2].contains("\"finish_reason\":\"stop\",\"native_finish_reason\":null"));
    assert_eq!(chunks[3], "[DONE]");
}

#[test]
fn tool_indices_count_tool_calls_not_blocks() {
    let tool = |block: u32, id: &str| {
        format!("data: {{\"type\":\"content_block_start\",\"index\":{block},\"content_block\":{{\"type\":\"tool_use\",\"id\":\"{id}\",\"name\":\"f\",\"input\":{{}}}}}}\n\n")
    };
    let args = |block: u32| {
        format!("data: {{\"type\":\"content_block_delta\",\"index\":{block},\"delta\":{{\"type\":\"input_json_delta\",\"partial_json\":\"{{}}\"}}}}\n\n")
    };
    // Text at block 0 and 2, tools at blocks 1 and 3; a delta for block 1 after block 3 started.
    let s = format!("{START}{TEXT}{}{}{}{}{}", tool(1, "a"), tool(3, "b"), args(3), args(1), STOP);
    let r = run(&[s.as_bytes()]);
    let chunks = payloads(&r.out);
    let v = |i: usize| serde_json::from_str::<serde_json::Value>(chunks[i]).unwrap();
    assert_eq!(v(2)["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
    assert_eq!(v(3)["choices"][0]["delta"]["tool_calls"][0]["index"], 1);
    assert_eq!(v(4)["choices"][0]["delta"]["tool_calls"][0]["index"], 1);
    assert_eq!(v(5)["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
}
