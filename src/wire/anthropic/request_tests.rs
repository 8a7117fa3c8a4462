use super::*;
use crate::wire::anthropic::fixture_tests::translate;
use serde_json::{json, Value};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn tool_ids_are_valid_stable_and_distinct() {
    let valid =
        |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let ids = ["call_1", "call.1", "call:1", "call 1", "", "é", "ü", &"x.".repeat(500), "toolu_01A-b"];
    let mut seen = std::collections::BTreeSet::new();
    for id in ids {
        let t = tool_id(id);
        assert!(valid(&t) && t.len() <= 64 + 17, "{id:?} → {t:?}");
        assert_eq!(tool_id(id), t, "deterministic");
        assert!(seen.insert(t.into_owned()), "distinct ids stay distinct: {id:?}");
    }
    assert_eq!(tool_id("call_1"), "call_1", "valid ids are unchanged");
}

/// Replaces, in every fixture request, each top-level value and each message member in turn with values
/// of every JSON type: the translation never panics, and answers valid JSON or a 400.
#[test]
fn any_value_of_any_type_anywhere_is_json_or_a_400() {
    let cases: Vec<Value> =
        serde_json::from_str(include_str!("../../../tests/fixtures/anthropic/requests.json")).unwrap();
    let values = [
        json!(null),
        json!(0),
        json!(-1),
        json!(1.5),
        json!(1e300),
        json!("s"),
        json!(""),
        json!(true),
        json!([]),
        json!([1, "a", null]),
        json!({}),
        json!({"type": "text"}),
        json!([{"type": "text", "text": 1}]),
    ];
    let mut checked = 0;
    for case in cases {
        let base = case["openai"].clone();
        let mut variants = Vec::new();
        for key in base.as_object().unwrap().keys() {
            for v in &values {
                let mut b = base.clone();
                b[key.as_str()] = v.clone();
                variants.push(b);
            }
        }
        for (i, m) in base["messages"].as_array().unwrap().iter().enumerate() {
            for key in m
                .as_object()
                .unwrap()
                .keys()
                .chain(["tool_calls".to_string(), "cache_control".to_string()].iter())
            {
                for v in &values {
                    let mut b = base.clone();
                    b["messages"][i][key.as_str()] = v.clone();
                    variants.push(b);
                }
            }
        }
        for b in variants {
            match translate(&b) {
                Ok(v) => assert!(v.is_object()),
                Err(e) => assert_eq!(e.status(), 400, "{b}: {e:?}"),
            }
            checked += 1;
        }
    }
    assert!(checked > 1000, "{checked}");
}

#[test]
fn a_long_conversation_translates_in_one_pass() {
    // 20 000 alternating messages and 2 000 parallel tool results: linear work, whatever the shape.
    let mut messages: Vec<Value> = (0..20_000)
        .map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": format!("m{i}")}))
        .collect();
    let calls: Vec<Value> = (0..2_000)
        .map(|i| json!({"id": format!("c.{i}"), "type": "function", "function": {"name": "f", "arguments": "{}"}}))
        .collect();
    messages.push(json!({"role": "assistant", "tool_calls": calls}));
    messages.extend(
        (0..2_000).map(|i| json!({"role": "tool", "tool_call_id": format!("c.{i}"), "content": "r"})),
    );
    let out = translate(&json!({"model": "m", "messages": messages})).unwrap();
    let turns = out["messages"].as_array().unwrap();
    assert_eq!(turns.len(), 20_001);
    let last = turns.last().unwrap()["content"].as_array().unwrap();
    assert_eq!(last.len(), 2_000, "one user turn of results");
    let uses = turns[turns.len() - 2]["content"].as_array().unwrap();
    for (u, r) in uses.iter().filter(|b| b["type"] == "tool_use").zip(last) {
        assert_eq!(u["id"], r["tool_use_id"], "each result answers its call");
    }
}

#[test]
fn the_model_is_the_providers_and_the_body_is_compact_json() {
    let body = br#"{"model":"anthropic/claude","messages":[{"role":"user","content":"x"}]}"#;
    let req = ChatRequest::parse(body).unwrap();
    let out = to_anthropic(&req, "claude-\"quoted\"", 10).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        r#"{"model":"claude-\"quoted\"","max_tokens":10,"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}]}"#
    );
}
