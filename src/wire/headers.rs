//! HTTP headers as the router reads them: lowercase names and raw byte values (a client's or provider's
//! header need not be UTF-8), and the header names that carry meaning for us.

/// A header map as the host gives it: lowercase names, raw byte values, in order.
pub type Headers = [(String, Vec<u8>)];

/// The first value of header `name` (lowercase).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a [u8]> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
}

/// Envoy's attempt counter: on the request to a provider (the matcher picks attempt k's slot by it) and,
/// with `include_attempt_count_in_response`, on the response. Never shown to clients.
pub const ATTEMPT_COUNT: &str = "x-envoy-attempt-count";

/// The value of [`ATTEMPT_COUNT`] (1 = the first attempt); `None` when malformed.
pub fn attempt_count(value: &[u8]) -> Option<u64> {
    decimal(value)
}

/// The `:status` of a response header map (0 when absent or malformed).
pub fn status(headers: &Headers) -> u16 {
    header(headers, ":status").and_then(decimal).and_then(|s| u16::try_from(s).ok()).unwrap_or(0)
}

/// A non-negative decimal integer, surrounding whitespace allowed.
pub fn decimal(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

/// The media type of a `content-type` value, without parameters (`application/json; charset=utf-8` →
/// `application/json`); compare it case-insensitively.
pub fn media_type(content_type: &[u8]) -> &[u8] {
    content_type.split(|b| *b == b';').next().unwrap_or_default().trim_ascii()
}

/// The token of an `authorization: Bearer <token>` value.
pub fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let (scheme, token) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = token.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Whether a client's request header goes on to providers: the pseudo-headers, the body's type, length
/// and framing, what the client accepts, and Envoy's own `x-request-id` and `x-forwarded-proto` (without
/// the latter Envoy finds no route once the filter changes the headers: measured, 404 NR). Everything
/// else stays with us, by
/// allowlist: the client's credentials in any API's style (`authorization`, `x-api-key`,
/// `anthropic-api-key`, …), cookies, organisation and project ids, other APIs' options, attribution,
/// and every header that steers Envoy or the router (`x-envoy-*`, `x-llm-*`). What a provider needs
/// besides is set per attempt from the catalog (its key, host, path and `headers`).
pub fn forwardable_request_header(name: &str) -> bool {
    name.starts_with(':')
        || matches!(
            name,
            "content-type"
                | "content-length"
                | "transfer-encoding"
                | "accept"
                | "x-request-id"
                | "x-forwarded-proto"
        )
}

/// Whether a response header goes on to the client: everything of a reply Envoy or we made, and of a
/// provider's only the allowlist (content type and length, `retry-after`), plus its rate-limit headers
/// when `provider_limits` (they describe the quota every tenant shares). Never the attempt count.
pub fn forwardable_response_header(name: &str, via_upstream: bool, provider_limits: bool) -> bool {
    if name == ATTEMPT_COUNT {
        return false;
    }
    if !via_upstream {
        return true;
    }
    name.starts_with(':')
        || matches!(name, "content-type" | "content-length" | "retry-after")
        || (provider_limits && name.starts_with("x-ratelimit-"))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer_token(b"Bearer sk-1"), Some(&b"sk-1"[..]));
        assert_eq!(bearer_token(b" bearer   sk-1 "), Some(&b"sk-1"[..]));
        for bad in [&b""[..], b"Bearer", b"Bearer ", b"Basic abc", b"sk-1", b"Bearersk-1"] {
            assert_eq!(bearer_token(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn numbers_statuses_and_media_types() {
        assert_eq!(attempt_count(b"2"), Some(2));
        assert_eq!(attempt_count(b"x"), None);
        let h = |s: &str| vec![(":status".to_string(), s.as_bytes().to_vec())];
        assert_eq!((status(&h("429")), status(&h("70000")), status(&h("")), status(&[])), (429, 0, 0, 0));
        assert_eq!(media_type(b" Application/JSON ; charset=utf-8"), b"Application/JSON");
    }

    #[test]
    fn only_allowlisted_provider_headers_reach_the_client() {
        for (name, ok) in [
            (":status", true),
            ("content-type", true),
            ("retry-after", true),
            ("set-cookie", false),
            ("x-mock-secret", false),
            (ATTEMPT_COUNT, false),
        ] {
            assert_eq!(forwardable_response_header(name, true, false), ok, "{name}");
            assert_eq!(forwardable_response_header(name, true, true), ok, "{name}");
        }
        // The provider's quota is every tenant's: only a key that may debug sees it.
        assert!(!forwardable_response_header("x-ratelimit-remaining-requests", true, false));
        assert!(forwardable_response_header("x-ratelimit-remaining-requests", true, true));
        assert!(forwardable_response_header("x-anything", false, false));
        assert!(!forwardable_response_header(ATTEMPT_COUNT, false, true));
    }
}
