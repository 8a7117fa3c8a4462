use super::*;
use crate::wire::gemini::fixture_tests::{served, CREATED};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn a_body_that_is_not_a_response_is_a_502() {
    for body in [
        &b"not json"[..],
        b"{}",
        b"[]",
        b"\xff",
        br#"{"candidates":[]}"#,
        br#"{"candidates":null}"#,
        br#"{"error":{"code":500,"message":"x","status":"INTERNAL"}}"#,
        br#"{"candidates":[{"content":{"parts":[{"text":1}]}}]}"#,
        br#"{"promptFeedback":{}}"#,
    ] {
        let e = to_completion(body, &served(), CREATED).unwrap_err();
        assert_eq!(e.status(), 502, "{}", String::from_utf8_lossy(body));
    }
}

#[test]
fn only_the_first_candidate_is_read() {
    let body = br#"{"candidates":[{"content":{"parts":[{"text":"a"}]},"finishReason":"STOP"},{"content":{"parts":[{"text":"b"}]},"finishReason":"MAX_TOKENS"}]}"#;
    let (out, accounted) = to_completion(body, &served(), CREATED).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["choices"].as_array().unwrap().len(), 1);
    assert_eq!(v["choices"][0]["message"]["content"], "a");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(accounted, Accounted::default(), "no usageMetadata, no usage");
}

#[test]
fn finish_reasons_map_as_documented() {
    use crate::wire::gemini::finish_reason;
    for (native, calls, want) in [
        ("STOP", false, "stop"),
        ("STOP", true, "tool_calls"),
        ("MAX_TOKENS", true, "length"),
        ("SAFETY", false, "content_filter"),
        ("BLOCKLIST", false, "content_filter"),
        ("SPII", false, "content_filter"),
        ("IMAGE_SAFETY", false, "content_filter"),
        ("OTHER", false, "stop"),
        ("MALFORMED_FUNCTION_CALL", false, "stop"),
        ("", false, "stop"),
    ] {
        assert_eq!(finish_reason(native, calls), want, "{native} {calls}");
    }
}

#[test]
fn every_status_name_has_a_documented_status_and_the_http_status_wins() {
    assert_eq!(documented_status("UNAVAILABLE"), 503);
    assert_eq!(documented_status("RESOURCE_EXHAUSTED"), 429);
    assert_eq!(documented_status("NOPE"), 502);
    let body = br#"{"error":{"code":503,"message":"m","status":"UNAVAILABLE"}}"#;
    assert_eq!(parse_error(Some(500), body).status, 500);
    assert_eq!(parse_error(Some(200), body).status, 503, "a 2xx is not an error status: the body's code");
    let e = parse_error(None, br#"[{"error":{"code":99,"message":"m","status":"DEADLINE_EXCEEDED"}}]"#);
    assert_eq!((e.status, e.native_type.as_str(), e.message.as_str()), (504, "DEADLINE_EXCEEDED", "m"));
}
