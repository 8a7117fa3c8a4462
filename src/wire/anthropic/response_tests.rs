use super::*;
use crate::wire::anthropic::fixture_tests::{served, CREATED};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn a_body_that_is_not_a_message_is_a_502() {
    for body in [&b"not json"[..], b"{}", br#"{"id":"x","type":"error","error":{}}"#, b"\xff", b"[]"] {
        let e = to_completion(body, &served(), CREATED).unwrap_err();
        assert_eq!(e.status(), 502, "{}", String::from_utf8_lossy(body));
    }
}

#[test]
fn text_is_escaped_and_unicode_kept() {
    let body = r#"{"id":"msg_1","type":"message","content":[{"type":"text","text":"“hi” \"q\" \\ \n é 🌍"}],"stop_reason":"end_turn"}"#;
    let (out, _) = to_completion(body.as_bytes(), &served(), CREATED).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "“hi” \"q\" \\ \n é 🌍");
}

#[test]
fn an_unknown_stop_reason_is_stop_and_kept_native() {
    let body = r#"{"id":"msg_1","type":"message","content":[],"stop_reason":"pause_turn"}"#;
    let (out, _) = to_completion(body.as_bytes(), &served(), CREATED).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["choices"][0]["native_finish_reason"], "pause_turn");
    assert_eq!(crate::wire::anthropic::finish_reason("model_context_window_exceeded"), "length");
}
