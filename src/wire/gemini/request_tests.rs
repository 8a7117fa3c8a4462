use super::*;
use crate::wire::gemini::fixture_tests::translate;
use serde_json::{json, Value};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// Replaces, in every fixture request, each top-level value and each message member in turn with values
/// of every JSON type: the translation never panics, and answers valid JSON or a 400.
#[test]
fn any_value_of_any_type_anywhere_is_json_or_a_400() {
    let cases: Vec<Value> =
        serde_json::from_str(include_str!("../../../tests/fixtures/gemini/requests.json")).unwrap();
    let values = [
        json!(null),
        json!(0),
        json!(-1),
        json!(1.5),
        json!(1e300),
        json!("s"),
        json!(""),
        json!("data:image/png;base64,"),
        json!("https://x"),
        json!(true),
        json!([]),
        json!([1, "a", null]),
        json!({}),
        json!({"type": "text"}),
        json!([{"type": "text", "text": 1}]),
        json!([{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]),
    ];
    let mut checked = 0;
    for case in cases {
        let base = case["openai"].clone();
        let mut variants = Vec::new();
        for key in
            base.as_object().unwrap().keys().chain(["reasoning".to_string(), "tools".to_string()].iter())
        {
            for v in &values {
                let mut b = base.clone();
                b[key.as_str()] = v.clone();
                variants.push(b);
            }
        }
        for (i, m) in base["messages"].as_array().into_iter().flatten().enumerate() {
            let Some(m) = m.as_object() else { continue };
            for key in m.keys().chain(["tool_calls".to_string(), "tool_call_id".to_string()].iter()) {
                for v in &values {
                    let mut b = base.clone();
                    b["messages"][i][key.as_str()] = v.clone();
                    variants.push(b);
                }
            }
        }
        for b in variants {
            match translate(&b) {
                Ok(v) => assert!(v.is_object() && v["contents"].is_array(), "{b}"),
                Err(e) => assert_eq!(e.status(), 400, "{b}: {e:?}"),
            }
            checked += 1;
        }
    }
    assert!(checked > 5000, "{checked}");
}

#[test]
fn a_long_conversation_translates_in_one_pass() {
    // 20 000 alternating messages and 2 000 parallel tool results: linear work, whatever the shape.
    let mut messages: Vec<Value> = (0..20_000)
        .map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": format!("m{i}")}))
        .collect();
    let calls: Vec<Value> = (0..2_000)
        .map(|i| json!({"id": format!("c.{i}"), "type": "function", "function": {"name": format!("f{i}"), "arguments": "{}"}}))
        .collect();
    messages.push(json!({"role": "assistant", "tool_calls": calls}));
    messages.extend(
        (0..2_000).rev().map(|i| json!({"role": "tool", "tool_call_id": format!("c.{i}"), "content": "r"})),
    );
    let out = translate(&json!({"model": "m", "messages": messages})).unwrap();
    let turns = out["contents"].as_array().unwrap();
    assert_eq!(turns.len(), 20_001);
    let last = turns.last().unwrap()["parts"].as_array().unwrap();
    assert_eq!(last.len(), 2_000, "one user turn of results");
    for (j, r) in last.iter().enumerate() {
        assert_eq!(
            r["functionResponse"]["name"],
            format!("f{}", 1_999 - j),
            "each result named from its call"
        );
    }
}

#[test]
fn the_body_is_compact_json_without_model_or_stream() {
    let body = br#"{"model":"google/gemini","stream":true,"messages":[{"role":"user","content":"x"}]}"#;
    let req = ChatRequest::parse(body).unwrap();
    let out = to_gemini(&req, 10).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        r#"{"contents":[{"role":"user","parts":[{"text":"x"}]}],"generationConfig":{"maxOutputTokens":10}}"#
    );
}

#[test]
fn passed_through_values_are_the_clients_text() {
    // Numbers keep their spelling and schemas and arguments their member order and escapes.
    let body = br#"{"model":"m","temperature":0.70,"top_p":1e-1,"messages":[{"role":"user","content":"x"},
        {"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{\"z\":1,\"a\":\"\\u00e9\"}"}}]}],
        "tools":[{"type":"function","function":{"name":"f","parameters":{"z":{},"a":"\u00e9"}}}]}"#;
    let req = ChatRequest::parse(body).unwrap();
    let out = String::from_utf8(to_gemini(&req, 10).unwrap()).unwrap();
    assert!(out.contains(r#""temperature":0.70,"topP":1e-1"#), "{out}");
    assert!(out.contains(r#""args":{"z":1,"a":"\u00e9"}"#), "{out}");
    assert!(out.contains(r#""parametersJsonSchema":{"z":{},"a":"\u00e9"}"#), "{out}");
}

#[test]
fn the_dropped_list_names_members_that_are_not_sent() {
    let mut openai = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
    for key in DROPPED {
        openai[*key] = json!(null);
    }
    openai["user"] = json!("u-1");
    openai["parallel_tool_calls"] = json!(true);
    let out = translate(&openai).unwrap();
    fn keys(v: &Value, into: &mut Vec<String>) {
        match v {
            Value::Object(m) => m.iter().for_each(|(k, v)| {
                into.push(k.clone());
                keys(v, into)
            }),
            Value::Array(a) => a.iter().for_each(|v| keys(v, into)),
            _ => {}
        }
    }
    let mut sent = Vec::new();
    keys(&out, &mut sent);
    for key in DROPPED {
        assert!(!sent.iter().any(|k| k == key), "{key} in {out}");
    }
}
