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
    let routed = Routed { plan: vec![ep(&c, "alpha"), ep(&c, "beta")], ..Routed::default() };
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
    let limited = h(&[(":status", "429"), ("retry-after", "12")]);
    assert_eq!(
        on_response_headers(&c, &limited, &origin, &routed),
        ResponseVerdict::Replace(Replacement { provider: "beta".into(), status: 429, retry_after: Some(12) })
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
    let r = |status, retry_after| Replacement { provider: "P".into(), status, retry_after };
    assert_eq!(error_reply(&r(503, None), b"").status(), 502);
    assert_eq!(error_reply(&r(401, None), b"sk-secret").status(), 502);
    assert!(!error_reply(&r(401, None), b"sk-secret").body().contains("sk-secret"));
    let e = error_reply(&r(429, Some(30)), b"");
    assert_eq!((e.status(), e.headers()[1].1.as_str()), (429, "30"));
    assert_eq!(error_reply(&r(0, None), b"").status(), 502);
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
