use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn served() -> Served {
    Served {
        model_json: r#""meta/llama""#.into(),
        provider_json: r#""Alpha Inc""#.into(),
        pricing: Pricing {
            prompt: 1.0,
            completion: 2.0,
            cache_read: Some(0.5),
            cache_write: None,
            request: None,
            image: None,
        },
    }
}

const COMPLETION: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":7,"model":"llama-native",
 "choices":[{"index":0,"message":{"role":"assistant","content":"hi  there"},"finish_reason":"stop"}],
 "usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18,"cost":99}}"#;

#[test]
fn completion_gets_public_model_provider_fingerprint_and_cost() {
    let (out, accounted) = rewrite_completion(COMPLETION.as_bytes(), &served());
    let out = String::from_utf8(out.unwrap()).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["model"], "meta/llama");
    assert_eq!(v["provider"], "Alpha Inc");
    assert!(v["system_fingerprint"].is_null() && v.get("system_fingerprint").is_some());
    assert_eq!(v["id"], "chatcmpl-1", "ids keep the provider's");
    // 11 × $1/M + 7 × $2/M = $0.000025
    assert_eq!(v["usage"]["cost"], 0.000025);
    assert_eq!(v["usage"]["is_byok"], false);
    assert!(v["usage"]["cost_details"].is_object());
    assert!(out.contains(r#""content":"hi  there""#), "inner values are byte-exact: {out}");
    assert_eq!(accounted.usage.unwrap().prompt_tokens, 11);
    assert_eq!(accounted.cost.unwrap().total_nano, 25_000);
}

#[test]
fn a_completion_keeps_its_own_fingerprint_gets_a_model_and_one_cost() {
    let with_fp = COMPLETION
        .replace(r#""created":7,"model":"llama-native","#, r#""created":7,"system_fingerprint":"fp_1","#);
    let (out, _) = rewrite_completion(with_fp.as_bytes(), &served());
    let out = String::from_utf8(out.unwrap()).unwrap();
    // No "model" member came: one is added; the provider's fingerprint stays, once, and no null one.
    assert_eq!(out.matches("\"system_fingerprint\"").count(), 1, "{out}");
    assert!(
        out.contains(r#""system_fingerprint":"fp_1""#) && out.contains(r#""model":"meta/llama""#),
        "{out}"
    );
    // The provider's own cost is replaced, not joined by ours; its other usage members stay.
    assert_eq!(out.matches("\"cost\":").count(), 1, "{out}");
    assert!(!out.contains("99") && out.contains(r#""total_tokens":18"#), "{out}");
}

#[test]
fn a_chunk_keeps_a_string_fingerprint() {
    let chunk = STREAM.replace(r#""system_fingerprint":null"#, r#""system_fingerprint":"fp_2""#);
    let (out, _) = run_stream(&[chunk.as_bytes()]);
    assert_eq!(out.matches(r#""system_fingerprint":"fp_2""#).count(), 1, "{out}");
}

#[test]
fn a_body_that_is_not_json_is_left_alone_with_unknown_usage() {
    let (out, accounted) = rewrite_completion(b"not json", &served());
    assert_eq!((out, accounted), (None, Accounted::default()));
}

const STREAM: &str = concat!(
    ": keep-alive\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"llama-native\",",
    "\"system_fingerprint\":null,\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}]}\r\n\r\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"llama-native\",",
    "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"llama-native\",",
    "\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":7,\"total_tokens\":18}}\n\n",
    "data: [DONE]\n\n",
);

fn run_stream(pieces: &[&[u8]]) -> (String, StreamRewriter) {
    let mut r = StreamRewriter::new(served());
    let mut out = Vec::new();
    for p in pieces {
        out.extend_from_slice(r.feed(p));
    }
    out.extend_from_slice(r.finish());
    (String::from_utf8(out).unwrap(), r)
}

#[test]
fn stream_chunks_carry_the_public_model_and_the_last_one_the_cost() {
    let (out, r) = run_stream(&[STREAM.as_bytes()]);
    assert!(!out.contains("\"error\""), "a complete stream gets no error chunk: {out}");
    assert!(!out.contains("llama-native"), "{out}");
    let datas: Vec<&str> = out.split("\n\n").filter_map(|e| e.strip_prefix("data: ")).collect();
    assert_eq!(datas.len(), 4);
    for d in &datas[..3] {
        let v: serde_json::Value = serde_json::from_str(d).unwrap();
        assert_eq!(v["model"], "meta/llama");
        assert!(v.get("system_fingerprint").is_none(), "null fingerprints are dropped in chunks");
    }
    let last: serde_json::Value = serde_json::from_str(datas[2]).unwrap();
    assert_eq!(last["usage"]["cost"], 0.000025);
    assert_eq!(last["provider"], "Alpha Inc");
    assert_eq!(datas[3], "[DONE]");
    assert!(out.starts_with(": keep-alive\n\n"), "comments pass through");
    assert_eq!(r.accounted().cost.unwrap().total_nano, 25_000);
}

#[test]
fn stream_output_is_the_same_whatever_the_chunk_boundaries() {
    let (whole, _) = run_stream(&[STREAM.as_bytes()]);
    let bytes = STREAM.as_bytes();
    for cut in 1..bytes.len() {
        let (split, _) = run_stream(&[&bytes[..cut], &bytes[cut..]]);
        assert_eq!(split, whole, "split at {cut}");
    }
    let ones: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(run_stream(&ones).0, whole);
}

#[test]
fn a_stream_cut_before_done_ends_with_a_typed_error_chunk() {
    let cut = &STREAM[..STREAM.find("data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"llama-native\",\"choices\":[]").unwrap()];
    let (out, r) = run_stream(&[cut.as_bytes()]);
    let last = out.trim_end().rsplit("\n\n").next().unwrap();
    let v: serde_json::Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(v["error"]["code"], 502);
    assert_eq!(v["error"]["metadata"]["error_type"], "provider_unavailable");
    assert_eq!(v["choices"][0]["finish_reason"], "error");
    assert_eq!((v["id"].as_str(), v["model"].as_str()), (Some("c1"), Some("meta/llama")));
    assert_eq!(r.accounted().usage, None, "usage not seen stays unknown");
}
