use super::*;
use crate::catalog::tests::{demo, endpoint};
use crate::filter::downstream::request::tests::h;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// `meta/llama`'s endpoint on `provider` in the test catalog.
fn ep(c: &Catalog, provider: &str) -> crate::catalog::EndpointRef {
    endpoint(c, "meta/llama", provider)
}

#[test]
fn upstream_errors_are_replaced_and_headers_allowlisted() {
    let c = demo();
    let origin = Origin { via_upstream: true, attempts: Some(2), transport_failure: None };
    // Attempt 2 went to slot 1: beta.
    let routed =
        Routed { plan: vec![ep(&c, "alpha"), ep(&c, "beta")], provider_limits: true, ..Routed::default() };
    let ok = h(&[
        (":status", "200"),
        ("content-type", "application/json"),
        ("x-ratelimit-remaining-requests", "9"),
        ("x-internal", "secret"),
        ("server", "provider"),
        ("x-envoy-attempt-count", "2"),
    ]);
    let ResponseVerdict::Forward(out) = on_response_headers(&c, &ok, &origin, &routed) else { panic!() };
    let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            ":status",
            "content-type",
            "x-ratelimit-remaining-requests",
            "x-llm-provider",
            "x-llm-attempts",
            "x-llm-model"
        ]
    );
    // A key that may not debug does not see the provider's quota (every tenant shares it).
    let other = Routed { provider_limits: false, ..routed.clone() };
    let ResponseVerdict::Forward(out) = on_response_headers(&c, &ok, &origin, &other) else { panic!() };
    assert!(out.iter().all(|(n, _)| !n.starts_with("x-ratelimit-")), "{out:?}");
    let limited = h(&[(":status", "429"), ("retry-after", "12")]);
    assert_eq!(
        on_response_headers(&c, &limited, &origin, &routed),
        ResponseVerdict::Replace(Replacement {
            provider: "beta".into(),
            status: 429,
            retry_after: Some(12),
            api: Api::OpenAi
        })
    );
    // Envoy's own replies pass (local_reply_config shapes them) unless a TLS check failed.
    let local = Origin { via_upstream: false, ..origin.clone() };
    assert!(matches!(
        on_response_headers(&c, &h(&[(":status", "503")]), &local, &routed),
        ResponseVerdict::Forward(_)
    ));
    let tls = Origin {
        transport_failure: Some(
            "TLS_error:|268435581:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED".into(),
        ),
        ..local
    };
    assert!(matches!(
        on_response_headers(&c, &h(&[(":status", "503")]), &tls, &routed),
        ResponseVerdict::Replace(Replacement { status: 0, .. })
    ));
}

#[test]
fn error_replies_by_provider_status() {
    let c = demo();
    let error_reply = |r: &Replacement, body: &[u8]| error_reply(&c, r, body);
    let r = |status, retry_after| Replacement { provider: "P".into(), status, retry_after, api: Api::OpenAi };
    assert_eq!(error_reply(&r(503, None), b"").status(), 502);
    assert_eq!(error_reply(&r(401, None), b"sk-secret").status(), 502);
    assert!(!error_reply(&r(401, None), b"sk-secret").body().contains("sk-secret"));
    let e = error_reply(&r(429, Some(30)), b"");
    assert_eq!((e.status(), e.headers()[1].1.as_str()), (429, "30"));
    let e = error_reply(&r(0, None), b"");
    assert_eq!((e.status(), e.message()), (502, "Could not verify the TLS certificate of P"));
    let e = error_reply(&r(408, None), b"");
    assert_eq!((e.status(), e.message()), (502, "P timed out (status 408)"));
    // A provider error with an empty message gets ours.
    let e = error_reply(&r(422, None), br#"{"error":{"message":""}}"#);
    assert_eq!((e.status(), e.message()), (422, "P rejected the request (status 422)"));
    let e = error_reply(&r(400, None), br#"{"error":{"message":"bad temperature"}}"#);
    assert_eq!((e.status(), e.message()), (400, "P: bad temperature"));
}

#[test]
fn only_a_providers_own_2xx_shows_it_recovered() {
    let c = demo();
    let routed = Routed { plan: vec![ep(&c, "alpha"), ep(&c, "beta")], ..Routed::default() };
    let origin = |via_upstream, attempts| Origin { via_upstream, attempts, transport_failure: None };
    assert_eq!(
        recovered_provider(&c, 200, &origin(true, Some(1)), &routed).map(|p| p.name.as_str()),
        Some("alpha")
    );
    assert_eq!(
        recovered_provider(&c, 200, &origin(true, Some(2)), &routed).map(|p| p.name.as_str()),
        Some("beta")
    );
    assert_eq!(recovered_provider(&c, 503, &origin(true, Some(2)), &routed).map(|p| p.name.as_str()), None);
    assert_eq!(
        recovered_provider(&c, 200, &origin(false, Some(1)), &routed).map(|p| p.name.as_str()),
        None,
        "Envoy's own reply"
    );
    assert_eq!(recovered_provider(&c, 200, &origin(true, None), &routed).map(|p| p.name.as_str()), None);
}

#[test]
fn envoys_own_replies_are_typed_by_status() {
    for (status, want) in [
        (408, "timeout"),
        (504, "timeout"),
        (413, "payload_too_large"),
        (429, "rate_limit_exceeded"),
        (400, "invalid_request"),
        (431, "invalid_request"),
        (503, "provider_unavailable"),
        (500, "provider_unavailable"),
    ] {
        assert_eq!(envoy_error_type(status), want, "{status}");
    }
}

#[test]
fn a_connection_failure_names_tls_only_when_the_reason_says_so() {
    let c = demo();
    let routed = Routed { plan: vec![ep(&c, "alpha")], ..Routed::default() };
    for (reason, replaced) in [
        ("TLS_error:|268435581:routines", true),
        ("upstream connect error: CERTIFICATE_VERIFY_FAILED", true),
        ("SSL routines failed", true),
        ("delayed connect error: 111", false),
    ] {
        let origin =
            Origin { via_upstream: false, attempts: Some(1), transport_failure: Some(reason.into()) };
        let verdict = on_response_headers(&c, &h(&[(":status", "503")]), &origin, &routed);
        assert_eq!(matches!(verdict, ResponseVerdict::Replace(_)), replaced, "{reason}");
    }
}

#[test]
fn only_a_providers_own_2xx_body_is_rewritten() {
    let c = demo();
    let routed = Routed { plan: vec![ep(&c, "alpha")], ..Routed::default() };
    let origin = |via_upstream| Origin { via_upstream, attempts: Some(1), transport_failure: None };
    let body = |status, via, ct: &str| response_body(&c, status, ct.as_bytes(), &origin(via), &routed, 0);
    assert!(matches!(body(200, true, "application/json; charset=utf-8"), ResponseBody::Completion { .. }));
    assert!(matches!(body(200, true, "Text/Event-Stream"), ResponseBody::Stream(_)));
    assert!(matches!(body(200, true, "text/plain"), ResponseBody::Pass));
    assert!(matches!(body(200, false, "application/json"), ResponseBody::Pass), "Envoy's own reply");
    assert!(matches!(body(404, true, "application/json"), ResponseBody::Pass));
}

#[test]
fn long_provider_messages_are_cut_at_a_character() {
    let long = format!(r#"{{"error":{{"message":"{}é tail"}}}}"#, "x".repeat(999));
    let r = Replacement { provider: "P".into(), status: 400, retry_after: None, api: Api::OpenAi };
    let e = error_reply(&demo(), &r, long.as_bytes());
    // 999 bytes of x, then a 2-byte 'é' that would straddle byte 1000: cut before it.
    assert_eq!(e.message(), format!("P: {}", "x".repeat(999)));
}

#[test]
fn a_provider_key_quoted_in_a_providers_message_is_redacted_even_across_the_cut() {
    let c = demo();
    let r = Replacement { provider: "P".into(), status: 400, retry_after: None, api: Api::OpenAi };
    let message = |m: &str| error_reply(&c, &r, format!(r#"{{"error":{{"message":"{m}"}}}}"#).as_bytes());
    let e = message("Incorrect API key provided: alpha-secret. Bearer alpha-secret, or beta-secret");
    assert_eq!(
        e.message(),
        "P: Incorrect API key provided: [redacted]. [redacted], or [redacted]",
        "the key alone, the whole Authorization value, any provider's"
    );
    // A key straddling byte 1000 would leave its first bytes after a cut: redacted first, then cut.
    let e = message(&format!("{}alpha-secret", "x".repeat(995)));
    assert!(!e.message().contains("alpha-"), "{}", e.message());
}
