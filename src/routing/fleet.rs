//! What the filter tells Envoy's global rate limit service about a request (when the catalog names one,
//! `routing.rate_limit_service`): internal request headers that the route's `rate_limits` turn into
//! descriptors at admission, and filter-state values that charge what the request spent when it ends.
//! The generator reads the same names, so the Envoy config and the filter agree.
//!
//! Descriptors are `(limit, <class>)(key, <client key name>)`; the service's configuration (generated
//! from the catalog) gives each class its limit per key.

use super::budget::Spend;
use crate::catalog::{Catalog, ClientKey, RateLimitService};

/// The client key's name: every descriptor's second entry.
pub const KEY_HEADER: &str = "x-llm-rl-key";
/// Present when the key has a request rate.
pub const REQUESTS_HEADER: &str = "x-llm-rl-requests";
/// Present on requests for a `:free` variant (the free quotas apply).
pub const FREE_HEADER: &str = "x-llm-rl-free";
/// Present when the key has a token limit; its value is what admission adds to the token counter.
pub const TOKENS_HEADER: &str = "x-llm-rl-tokens";
/// Present when the key has a dollar limit; its value is what admission adds to the dollar counters.
pub const USD_HEADER: &str = "x-llm-rl-usd";
/// Every header above: none may reach a provider (the route removes them) or come from a client.
pub const HEADERS: [&str; 5] = [KEY_HEADER, REQUESTS_HEADER, FREE_HEADER, TOKENS_HEADER, USD_HEADER];

/// Filter state (`wasm.` + this) holding the tokens a finished request spent.
pub const TOKENS_SPENT: &str = "llm_rl_tokens";
/// Filter state holding the dollars it spent, in the service's unit ([`RateLimitService::usd_units`]).
pub const USD_SPENT: &str = "llm_rl_usd";

/// The largest `hits_addend` Envoy sends (a larger one drops the descriptor: Envoy 1.40's
/// `MAX_HITS_ADDEND`): a charge above it is charged this much rather than nothing.
pub const MAX_HITS: u64 = 1_000_000_000;

/// A descriptor class: its name (the `limit` entry's value) and what it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Class {
    /// The `limit` entry's value.
    pub name: &'static str,
    /// The header whose presence makes the descriptor (and whose value is its admission hits, where it
    /// has one).
    pub header: &'static str,
    /// Charged again when the stream is done, from this filter state (tokens and dollars: admission only
    /// checks, the spend is added once known).
    pub spent: Option<&'static str>,
}

/// Every class, in the order the route lists them.
pub const CLASSES: [Class; 7] = [
    Class { name: "requests", header: REQUESTS_HEADER, spent: None },
    Class { name: "free_minute", header: FREE_HEADER, spent: None },
    Class { name: "free_day", header: FREE_HEADER, spent: None },
    Class { name: "tokens", header: TOKENS_HEADER, spent: Some(TOKENS_SPENT) },
    Class { name: "usd_day", header: USD_HEADER, spent: Some(USD_SPENT) },
    Class { name: "usd_week", header: USD_HEADER, spent: Some(USD_SPENT) },
    Class { name: "usd_month", header: USD_HEADER, spent: Some(USD_SPENT) },
];

/// The admission hits of token and dollar descriptors: none. The service counts only what was spent
/// (charged when the stream is done); admission asks whether the counter is already past its limit.
/// (A reservation added at admission could never be taken back: the service only adds.)
pub const ADMISSION_HITS: &str = "0";

/// The headers a request admitted on this Envoy carries to the service's filters.
pub fn headers(catalog: &Catalog, key: Option<&ClientKey>, free: bool) -> Vec<(String, Vec<u8>)> {
    let (Some(_), Some(key)) = (&catalog.routing.rate_limit_service, key) else {
        return Vec::new();
    };
    let l = &key.limits;
    let mut out = vec![(KEY_HEADER.to_string(), key.name.clone().into_bytes())];
    if l.requests_per_minute.is_some() {
        out.push((REQUESTS_HEADER.to_string(), b"1".to_vec()));
    }
    if free {
        out.push((FREE_HEADER.to_string(), b"1".to_vec()));
    }
    if l.tokens_per_minute.is_some() {
        out.push((TOKENS_HEADER.to_string(), ADMISSION_HITS.into()));
    }
    if l.usd_per_day.is_some() || l.usd_per_week.is_some() || l.usd_per_month.is_some() {
        out.push((USD_HEADER.to_string(), ADMISSION_HITS.into()));
    }
    out
}

/// The filter-state values that charge what a finished request spent to its key's token and dollar
/// descriptors (`service`'s unit, rounded up).
pub fn spent(service: &RateLimitService, key: &ClientKey, spend: Spend) -> Vec<(&'static str, String)> {
    let l = &key.limits;
    let mut out = Vec::new();
    if l.tokens_per_minute.is_some() {
        out.push((TOKENS_SPENT, spend.tokens.min(MAX_HITS).to_string()));
    }
    if l.usd_per_day.is_some() || l.usd_per_week.is_some() || l.usd_per_month.is_some() {
        out.push((USD_SPENT, service.usd_units(spend.nano).min(MAX_HITS).to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tests::{demo_json, demo_json_with};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn catalog(limits: &str) -> Catalog {
        let json = demo_json_with(limits, r#", "rate_limit_service": {"address": "127.0.0.1:8081"}"#);
        Catalog::parse(json.as_bytes(), None).unwrap()
    }

    fn names(h: &[(String, Vec<u8>)]) -> Vec<&str> {
        h.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn a_class_is_named_only_where_the_key_has_its_limit() {
        let c = catalog(r#"{"usd_per_week": 1}"#);
        let key = &c.keys[0];
        let h = headers(&c, Some(key), false);
        assert_eq!(names(&h), [KEY_HEADER, USD_HEADER]);
        assert_eq!(h[0].1, b"team-a");
        assert_eq!(h[1].1, ADMISSION_HITS.as_bytes());
        assert_eq!(names(&headers(&c, Some(key), true)), [KEY_HEADER, FREE_HEADER, USD_HEADER]);
        let c = catalog(r#"{"tokens_per_minute": 10, "requests_per_minute": 5}"#);
        assert_eq!(
            names(&headers(&c, Some(&c.keys[0]), false)),
            [KEY_HEADER, REQUESTS_HEADER, TOKENS_HEADER]
        );
        // No key, or no service: nothing.
        assert!(headers(&c, None, true).is_empty());
        let plain = Catalog::parse(demo_json().as_bytes(), None).unwrap();
        assert!(headers(&plain, Some(&plain.keys[0]), true).is_empty());
    }

    #[test]
    fn the_spend_is_charged_in_the_services_units_rounded_up() {
        let c = catalog(r#"{"tokens_per_minute": 10, "usd_per_day": 1}"#);
        let service = c.routing.rate_limit_service.as_ref().unwrap();
        let out = spent(service, &c.keys[0], Spend { tokens: 42, nano: 18_001 });
        assert_eq!(out, [(TOKENS_SPENT, "42".to_string()), (USD_SPENT, "19".to_string())]);
        let c = catalog(r#"{"requests_per_minute": 10}"#);
        assert!(
            spent(c.routing.rate_limit_service.as_ref().unwrap(), &c.keys[0], Spend::default()).is_empty()
        );
    }

    #[test]
    fn every_header_is_one_the_client_may_not_send_us_or_a_provider() {
        for h in HEADERS {
            assert!(!crate::wire::headers::forwardable_request_header(h), "{h}");
        }
    }
}
