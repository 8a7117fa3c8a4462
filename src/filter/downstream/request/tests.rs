use super::*;
use crate::catalog::tests::{demo, demo_debug, demo_json};
use crate::routing::plan::{record_of_slot, PlanRecord};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

pub(crate) fn h(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    pairs.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect()
}

fn chat_headers(extra: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    let mut v = h(&[
        (":method", "POST"),
        (":path", "/api/v1/chat/completions?x=1"),
        ("authorization", "Bearer sk-test-1"),
        ("content-type", "application/json; charset=utf-8"),
    ]);
    v.extend(h(extra));
    v
}

/// The request header map a provider receives once the shell applies `d.remove` and `d.set` (replacing)
/// to the client's `headers`.
fn forwarded<'a>(d: &'a BodyDecision, client: &'a Headers) -> Vec<(&'a str, &'a [u8])> {
    let kept = client
        .iter()
        .filter(|(n, _)| !d.remove.contains(n) && !d.set.iter().any(|(s, _)| s == n))
        .map(|(n, v)| (n.as_str(), v.as_slice()));
    kept.chain(d.set.iter().map(|(n, v)| (n.as_str(), v.as_slice()))).collect()
}

/// The body phase for key `team-a`, everyone healthy.
pub(crate) fn body(c: &Catalog, bytes: &[u8]) -> Result<BodyDecision, ApiError> {
    let head = ChatHead {
        caller: c.key_ids().next(),
        remove: vec!["authorization".into()],
        session_header: None,
        request_id: None,
        debug: false,
        provider_limits: false,
        app: String::new(),
    };
    on_request_body(c, bytes, &head, &|_| Status::default())
}

fn reply_status(v: HeadVerdict) -> u16 {
    match v {
        HeadVerdict::Reply(r) => r.status,
        HeadVerdict::Chat(_) | HeadVerdict::KeyInfo(_) => 0,
    }
}

#[test]
fn chat_head_removes_every_client_header_but_the_allowlist() {
    let c = demo();
    let v = on_request_headers(
        &c,
        &chat_headers(&[
            ("x-api-key", "k"),
            ("x-envoy-max-retries", "9"),
            ("x-llm-try", "x"),
            ("x-title", "app"),
            ("anthropic-api-key", "k"),
            ("cookie", "c"),
            ("accept", "application/json"),
            ("x-request-id", "r"),
        ]),
        false,
    );
    let HeadVerdict::Chat(head) = v else { panic!("{v:?}") };
    assert_eq!(head.caller, c.key_ids().next());
    assert!(!head.debug);
    assert_eq!(
        head.remove,
        [
            "authorization",
            "x-api-key",
            "x-envoy-max-retries",
            "x-llm-try",
            "x-title",
            "anthropic-api-key",
            "cookie"
        ]
    );
}

#[test]
fn head_errors() {
    let c = demo();
    type Case = (Vec<(String, Vec<u8>)>, bool, u16);
    let cases: Vec<Case> = vec![
        (h(&[(":method", "GET"), (":path", "/v1/chat/completions")]), false, 405),
        (h(&[(":method", "POST"), (":path", "/v1/models")]), false, 405),
        (h(&[(":method", "GET"), (":path", "/v2/other")]), true, 404),
        (chat_headers(&[]).into_iter().filter(|(n, _)| n != "authorization").collect(), false, 401),
        (chat_headers(&[]).into_iter().filter(|(n, _)| n != "content-type").collect(), false, 400),
        (chat_headers(&[("content-length", "99999999999")]), false, 413),
        (chat_headers(&[("content-length", "abc")]), false, 400),
        (chat_headers(&[]), true, 400),
        (chat_headers(&[("content-encoding", "gzip")]), false, 415),
        (chat_headers(&[("accept", "a\rx-injected: 1")]), false, 400),
        (chat_headers(&[("content-encoding", "br")]), false, 415),
    ];
    for (headers, eos, want) in cases {
        assert_eq!(reply_status(on_request_headers(&c, &headers, eos)), want, "{headers:?}");
    }
    // A bare CR off the allowlist is removed, not refused: it never reaches a provider.
    assert!(matches!(
        on_request_headers(&c, &chat_headers(&[("x-other", "a\rb")]), false),
        HeadVerdict::Chat(_)
    ));
    let identity = chat_headers(&[("content-encoding", " Identity")]);
    assert!(matches!(on_request_headers(&c, &identity, false), HeadVerdict::Chat(_)));
}

#[test]
fn models_needs_no_key_and_ignores_query() {
    let c = demo();
    let v = on_request_headers(
        &c,
        &h(&[(":method", "GET"), (":path", "/api/v1/models?offset=0&limit=500")]),
        true,
    );
    let HeadVerdict::Reply(r) = v else { panic!() };
    assert_eq!((r.status, r.body.as_str()), (200, c.models_json.as_str()));
}

#[test]
fn body_decision_plans_the_two_cheap_providers_and_prepares_the_first() {
    let c = demo();
    let d = body(&c, br#"{"model":"meta/llama","messages":[],"stream":true}"#).unwrap();
    let client = chat_headers(&[]);
    let headers: Vec<(String, Vec<u8>)> =
        forwarded(&d, &client).into_iter().map(|(n, v)| (n.to_string(), v.to_vec())).collect();
    assert_eq!(d.filter_state[0].0, "llm_try_0");
    // The weighted draw (1/price²) puts alpha or beta first; gamma (the priciest) is never in a 2-slot plan.
    let (first, second) =
        if d.filter_state[0].1.starts_with("alpha|") { ("alpha", "beta") } else { ("beta", "alpha") };
    assert!(d.filter_state[0].1.starts_with(&format!("{first}|")), "{:?}", d.filter_state);
    assert!(
        PlanRecord::decode(record_of_slot(&d.filter_state[0].1).unwrap()).is_some(),
        "slot 0 carries the plan"
    );
    assert_eq!(d.filter_state[1], ("llm_try_1".to_string(), format!("{second}|")));
    assert_eq!(d.filter_state.len(), 2);
    let has = |n: &str, v: &str| headers.contains(&(n.to_string(), v.as_bytes().to_vec()));
    assert!(has("x-envoy-max-retries", "1"));
    assert!(has("x-envoy-upstream-rq-per-try-timeout-ms", "10000"));
    assert!(has("content-length", &d.body.len.to_string()));
    // The first attempt's provider headers are set here, so the upstream role has nothing to do on it.
    let first =
        if d.filter_state[0].1.starts_with("alpha|") { "api.alpha.example" } else { "127.0.0.1:8080" };
    assert!(has(":authority", first), "{headers:?}");
    assert!(has("accept-encoding", "identity"));
    // The whole map is forwarded in one write: the client's own headers stay, its credentials go, and
    // every header is there once.
    assert!(has(":method", "POST") && has("content-type", "application/json; charset=utf-8"));
    assert!(!headers.iter().any(|(n, v)| n == "authorization" && v == b"Bearer sk-test-1"));
    let mut names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    names.sort();
    let len = names.len();
    names.dedup();
    assert_eq!(names.len(), len, "a header twice in {headers:?}");
}

#[test]
fn the_forwarded_map_drops_what_the_head_phase_said() {
    let c = demo();
    let headers = chat_headers(&[("x-api-key", "k"), ("x-envoy-max-retries", "9"), ("x-title", "app")]);
    let HeadVerdict::Chat(head) = on_request_headers(&c, &headers, false) else { panic!() };
    let healthy = |_| Status::default();
    let d = on_request_body(&c, br#"{"model":"meta/llama","messages":[]}"#, &head, &healthy).unwrap();
    let sent = forwarded(&d, &headers);
    let get = |n: &str| sent.iter().filter(|(h, _)| *h == n).map(|(_, v)| v.to_vec()).collect::<Vec<_>>();
    assert!(!get("x-api-key").contains(&b"k".to_vec()), "the client's key is not forwarded");
    assert_eq!(get("x-envoy-max-retries"), [b"1".to_vec()], "ours replaces the client's");
    assert!(get("x-title").is_empty(), "not on the allowlist");
    let path = get(":path");
    assert!(path.len() == 1 && path[0].ends_with(b"/v1/chat/completions"), "the provider's path");
    assert_ne!(path[0], b"/api/v1/chat/completions?x=1".to_vec());
}

#[test]
fn body_errors() {
    let c = demo();
    let e = body(&c, br#"{"model":"nope","messages":[]}"#).unwrap_err();
    assert_eq!((e.status(), e.error_type()), (404, "model_not_found"));
    assert_eq!(body(&c, b"{").unwrap_err().status(), 400);
}

#[test]
fn sizes_at_the_limit_pass_and_one_byte_more_is_413() {
    let json = demo_json().replace(r#""max_attempts": 2"#, r#""max_attempts": 2, "max_request_bytes": 1024"#);
    let c = Catalog::parse(json.as_bytes(), None).unwrap();
    for (len, want) in [("1024", 0), ("1025", 413)] {
        let v = on_request_headers(&c, &chat_headers(&[("content-length", len)]), false);
        assert_eq!(reply_status(v), want, "content-length {len}");
    }
    let head = r#"{"model":"meta/llama","messages":[]"#;
    for (len, ok) in [(1024, true), (1025, false)] {
        let bytes = format!("{head}{}}}", " ".repeat(len - head.len() - 1));
        let d = body(&c, bytes.as_bytes());
        assert_eq!(d.map_err(|e| e.status()).err(), (!ok).then_some(413), "{len} bytes");
    }
}

#[test]
fn either_debug_header_asks_for_the_explanation_of_a_key_that_may_debug() {
    let c = demo_debug();
    let head = |c: &Catalog, extra: &[(&str, &str)]| match on_request_headers(c, &chat_headers(extra), false)
    {
        HeadVerdict::Chat(head) => (head.debug, head.provider_limits),
        other => panic!("{other:?}"),
    };
    assert_eq!(head(&c, &[("x-llm-router-debug", "1")]), (true, true));
    assert_eq!(head(&c, &[("x-openrouter-metadata", "Enabled")]), (true, true));
    assert_eq!(head(&c, &[("x-llm-router-debug", "0")]), (false, true));
    assert_eq!(head(&c, &[("x-openrouter-metadata", "disabled")]), (false, true));
    assert_eq!(head(&c, &[]), (false, true));
    // Any other key asks in vain: the explanation tells of other tenants.
    let c = demo();
    assert_eq!(head(&c, &[("x-llm-router-debug", "1")]), (false, false));
    assert_eq!(head(&c, &[("x-openrouter-metadata", "enabled")]), (false, false));
}
