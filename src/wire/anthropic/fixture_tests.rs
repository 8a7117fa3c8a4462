//! Table-driven translation tests over tests/fixtures/anthropic (written from the public API references:
//! see the README there), every direction, plus the OpenRouter schema check of every response and chunk.

use super::request::{to_anthropic, tool_id};
use super::response::{parse_error, to_completion};
use super::stream::MessageEvents;
use crate::catalog::Pricing;
use crate::wire::chat_request::ChatRequest;
use crate::wire::error::ApiError;
pub(crate) use crate::wire::native::harness_tests::payloads;
use crate::wire::native::harness_tests::{self, assert_schema, assert_split_anywhere, Run};
use crate::wire::response::Served;
use serde_json::{json, Value};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const REQUESTS: &str = include_str!("../../../tests/fixtures/anthropic/requests.json");
const RESPONSES: &str = include_str!("../../../tests/fixtures/anthropic/responses.json");
const ERRORS: &str = include_str!("../../../tests/fixtures/anthropic/errors.json");
const STREAMS: &str = include_str!("../../../tests/fixtures/anthropic/streams.json");

/// The stream fixtures by file name.
fn stream_file(name: &str) -> &'static str {
    match name {
        "text.sse" => include_str!("../../../tests/fixtures/anthropic/streams/text.sse"),
        "tools.sse" => include_str!("../../../tests/fixtures/anthropic/streams/tools.sse"),
        "thinking.sse" => include_str!("../../../tests/fixtures/anthropic/streams/thinking.sse"),
        "crlf_utf8.sse" => include_str!("../../../tests/fixtures/anthropic/streams/crlf_utf8.sse"),
        "error_before_content.sse" => {
            include_str!("../../../tests/fixtures/anthropic/streams/error_before_content.sse")
        }
        "error_after_content.sse" => {
            include_str!("../../../tests/fixtures/anthropic/streams/error_after_content.sse")
        }
        "cut.sse" => include_str!("../../../tests/fixtures/anthropic/streams/cut.sse"),
        "cut_before_content.sse" => {
            include_str!("../../../tests/fixtures/anthropic/streams/cut_before_content.sse")
        }
        other => panic!("no stream fixture {other}"),
    }
}

pub(crate) fn served() -> Served {
    Served {
        model_json: r#""anthropic/claude""#.into(),
        provider_json: r#""Anthropic""#.into(),
        pricing: Pricing {
            prompt: 3.0,
            completion: 15.0,
            cache_read: Some(0.3),
            cache_write: Some(3.75),
            request: None,
            image: None,
        },
    }
}

pub(crate) const CREATED: u64 = 1_700_000_000;

/// The Anthropic body for an OpenAI request given as a JSON value.
pub(crate) fn translate(openai: &Value) -> Result<Value, ApiError> {
    let body = serde_json::to_string(openai).unwrap();
    let req = ChatRequest::parse(body.as_bytes())?;
    let out = to_anthropic(&req, "claude-sonnet-4-5", 4096)?;
    Ok(serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out))))
}

#[test]
fn every_request_fixture_translates_as_written() {
    let cases: Vec<Value> = serde_json::from_str(REQUESTS).unwrap();
    assert!(cases.len() >= 40);
    let hashed = tool_id("call.2:x").into_owned();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let got = translate(&case["openai"]);
        match case.get("error") {
            Some(Value::String(want)) => match got {
                Err(ApiError::InvalidRequest(m)) => {
                    assert!(m.contains(want.as_str()), "{name}: {m:?} lacks {want:?}")
                }
                other => panic!("{name}: want a 400 with {want:?}, got {other:?}"),
            },
            _ => {
                let want: Value = serde_json::from_str(
                    &case["anthropic"].to_string().replace("call_2_x_TOOL_ID_HASH", &hashed),
                )
                .unwrap();
                let got = got.unwrap_or_else(|e| panic!("{name}: {e:?}"));
                assert_eq!(got, want, "{name}\n got: {got}\nwant: {want}");
            }
        }
    }
}

#[test]
fn every_response_fixture_becomes_the_completion_written() {
    let cases: Vec<Value> = serde_json::from_str(RESPONSES).unwrap();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let body = case["anthropic"].to_string();
        let (out, accounted) = to_completion(body.as_bytes(), &served(), CREATED).unwrap();
        let mut got: Value = serde_json::from_slice(&out).unwrap();
        assert_schema("ChatResult", &got);
        let mut want = case["openai"].clone();
        // `usage` is compared on the members the fixture lists (the cost details are checked in full in
        // the first case); everything else exactly.
        match (want.as_object_mut().unwrap().remove("usage"), got.as_object_mut().unwrap().remove("usage")) {
            (Some(w), Some(g)) => {
                for (k, v) in w.as_object().unwrap() {
                    assert_eq!(&g[k], v, "{name}: usage.{k}");
                }
                assert_eq!(accounted.usage.map(|u| u.prompt_tokens), g["prompt_tokens"].as_u64());
                assert_eq!(accounted.cost.map(|c| c.total_nano as f64 / 1e9), g["cost"].as_f64());
            }
            (None, None) => assert_eq!(accounted.usage, None, "{name}"),
            (w, g) => panic!("{name}: usage {w:?} vs {g:?}"),
        }
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn every_error_fixture_maps_to_its_status_type_and_retry() {
    let cases: Vec<Value> = serde_json::from_str(ERRORS).unwrap();
    for case in cases {
        let body = match &case["body"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let status = case["status"].as_u64().map(|s| s as u16);
        let e = parse_error(status, body.as_bytes());
        let want = &case["expect"];
        assert_eq!(u64::from(e.status), want["status"].as_u64().unwrap(), "{case}");
        assert_eq!(e.error_type(), want["error_type"].as_str().unwrap(), "{case}");
        assert_eq!(e.retriable(), want["retriable"].as_bool().unwrap(), "{case}");
    }
}

/// Feeds `pieces` in order to a new translator, then finishes.
pub(crate) fn run(pieces: &[&[u8]]) -> Run {
    harness_tests::run::<MessageEvents>(served(), CREATED, pieces)
}

#[test]
fn every_stream_fixture_rebuilds_the_message_written() {
    let cases: Vec<Value> = serde_json::from_str(STREAMS).unwrap();
    for case in cases {
        let file = case["file"].as_str().unwrap();
        let r = run(&[stream_file(file).as_bytes()]);
        match case["ends"].as_str().unwrap() {
            "failed" => {
                assert_eq!(r.out, "", "{file}: nothing reaches the client before a failure");
                let e = r.failed.unwrap_or_else(|| panic!("{file}: want a failure"));
                assert_eq!(u64::from(e.status), case["failed_status"].as_u64().unwrap(), "{file}");
                assert_eq!(e.native_type, case["failed_type"].as_str().unwrap(), "{file}");
                assert!(e.retriable(), "{file}");
                continue;
            }
            ends => {
                assert_eq!(r.failed, None, "{file}");
                let chunks = payloads(&r.out);
                let (mut content, mut reasoning) = (String::new(), String::new());
                let mut calls: Vec<(String, String, String)> = Vec::new();
                let mut finish = None;
                let mut usage = None;
                for (i, p) in chunks.iter().enumerate() {
                    if *p == "[DONE]" {
                        assert_eq!((ends, i), ("done", chunks.len() - 1), "{file}: [DONE] last");
                        continue;
                    }
                    let v: Value = serde_json::from_str(p).unwrap_or_else(|e| panic!("{file}: {e}: {p}"));
                    assert_schema("ChatStreamChunk", &v);
                    assert_eq!(
                        (v["object"].as_str(), v["model"].as_str()),
                        (Some("chat.completion.chunk"), Some("anthropic/claude"))
                    );
                    assert_eq!(v["created"], CREATED);
                    assert!(v["id"].as_str().is_some_and(|id| id.starts_with("msg_01")), "{file}: {v}");
                    if i == 0 {
                        assert_eq!(
                            v["choices"][0]["delta"],
                            json!({"role": "assistant", "content": ""}),
                            "{file}"
                        );
                    }
                    if let Some(e) = v.get("error") {
                        assert_eq!((ends, i), ("error", chunks.len() - 1), "{file}: the error chunk ends it");
                        assert_eq!(e["code"], case["error_code"], "{file}");
                        assert_eq!(e["metadata"]["error_type"], case["error_type"], "{file}");
                        assert_eq!(v["choices"][0]["finish_reason"], "error");
                        continue;
                    }
                    if let Some(u) = v.get("usage") {
                        assert!(
                            usage.is_none() && v["choices"] == json!([]),
                            "{file}: one usage chunk, no choices"
                        );
                        assert_eq!(v["provider"], "Anthropic");
                        usage = Some(u.clone());
                        continue;
                    }
                    let choice = &v["choices"][0];
                    let delta = &choice["delta"];
                    content.push_str(delta["content"].as_str().unwrap_or(""));
                    reasoning.push_str(delta["reasoning"].as_str().unwrap_or(""));
                    for call in delta["tool_calls"].as_array().into_iter().flatten() {
                        let index = call["index"].as_u64().unwrap() as usize;
                        if index == calls.len() {
                            calls.push((
                                call["id"].as_str().unwrap().into(),
                                call["function"]["name"].as_str().unwrap().into(),
                                String::new(),
                            ));
                        }
                        calls[index].2.push_str(call["function"]["arguments"].as_str().unwrap_or(""));
                    }
                    if !choice["finish_reason"].is_null() {
                        assert!(finish.is_none(), "{file}: one finish chunk");
                        finish =
                            Some((choice["finish_reason"].clone(), choice["native_finish_reason"].clone()));
                    }
                }
                assert_eq!(content, case["content"].as_str().unwrap(), "{file}");
                if ends == "error" {
                    continue;
                }
                assert_eq!(reasoning, case["reasoning"].as_str().unwrap(), "{file}");
                let want_calls: Vec<(String, String, String)> = case["tool_calls"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| {
                        (
                            c["id"].as_str().unwrap().into(),
                            c["name"].as_str().unwrap().into(),
                            c["arguments"].as_str().unwrap().into(),
                        )
                    })
                    .collect();
                assert_eq!(calls, want_calls, "{file}");
                for (_, _, args) in &calls {
                    serde_json::from_str::<Value>(args)
                        .unwrap_or_else(|e| panic!("{file}: arguments {args:?}: {e}"));
                }
                assert_eq!(
                    finish,
                    Some((case["finish_reason"].clone(), case["native_finish_reason"].clone())),
                    "{file}"
                );
                let usage = usage.unwrap_or_else(|| panic!("{file}: a usage chunk"));
                let want = &case["usage"];
                assert_eq!(usage["prompt_tokens"], want["prompt_tokens"], "{file}");
                assert_eq!(usage["completion_tokens"], want["completion_tokens"], "{file}");
                assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], want["cached_tokens"], "{file}");
                assert_eq!(
                    usage["prompt_tokens_details"]["cache_write_tokens"], want["cache_write_tokens"],
                    "{file}"
                );
                assert!(usage["cost"].as_f64().is_some_and(|c| c > 0.0), "{file}");
            }
        }
    }
}

#[test]
fn every_stream_fixture_gives_the_same_output_split_at_every_byte() {
    let cases: Vec<Value> = serde_json::from_str(STREAMS).unwrap();
    for case in cases {
        let file = case["file"].as_str().unwrap();
        assert_split_anywhere(file, stream_file(file).as_bytes(), run);
    }
}
