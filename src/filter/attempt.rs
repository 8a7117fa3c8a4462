//! One attempt's request, as data: for one provider, its model name, key, `:authority` and path. The
//! downstream role prepares the first attempt with [`provider_headers`]; the upstream role prepares each
//! fallback with [`prepare`]. Attempts share one request header map, so every attempt rebuilds the
//! provider-specific headers from scratch.

use crate::catalog::{Api, Catalog, Provider};
use crate::routing::plan::PlanRecord;
use crate::wire::headers::{attempt_count, header, Headers, ATTEMPT_COUNT};
use std::ops::Range;

/// The changes for one attempt.
#[derive(Debug, PartialEq, Eq)]
pub struct Attempt {
    /// Request headers to remove: other providers' credentials and headers, client routing headers.
    pub remove: Vec<String>,
    /// Request headers to set (replacing any value).
    pub set: Vec<(String, Vec<u8>)>,
    /// Replace this byte range of the body with this model name (OpenAI slots after the first).
    pub splice: Option<(Range<usize>, String)>,
    /// Translate the whole body for this provider's API (native providers, every attempt).
    pub translate: Option<Translation>,
}

/// A native provider's attempt: the body is translated once complete, and its length is known then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translation {
    /// The provider's API.
    pub api: Api,
    /// The native model name (unquoted).
    pub model: String,
    /// The endpoint's `max_completion_tokens`.
    pub max_completion_tokens: Option<u64>,
}

/// Why an attempt cannot be prepared (a configuration error: the request is refused, never sent keyless).
#[derive(Debug, PartialEq, Eq)]
pub enum AttemptError {
    /// No plan in filter state, or not one this provider is part of.
    NoPlan,
    /// The provider is not in the catalog.
    UnknownProvider,
}

/// Whether an attempt to a provider of `api` needs the upstream role at all: the first attempt already
/// carries slot 0's model, key, host and path (set by the downstream role), so only retries
/// (`x-envoy-attempt-count` > 1) do, and every attempt to a native provider (its body is translated).
pub fn needs_rewrite(api: Api, count: Option<&[u8]>) -> bool {
    api.is_native() || count.and_then(attempt_count).is_some_and(|n| n > 1)
}

/// Builds the attempt for `provider` from the plan record and the current request headers.
pub fn prepare(
    catalog: &Catalog,
    provider: &str,
    plan: &str,
    headers: &Headers,
) -> Result<Attempt, AttemptError> {
    let p =
        catalog.provider_named(provider).map(|p| catalog.provider(p)).ok_or(AttemptError::UnknownProvider)?;
    let record = PlanRecord::decode(plan).ok_or(AttemptError::NoPlan)?;
    // Attempt n (1-based, set by the router) uses slot n-1; fall back to this provider's first slot.
    let attempt = header(headers, ATTEMPT_COUNT).and_then(attempt_count).unwrap_or(1);
    let wanted = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
    let slot = match record.slots.get(wanted) {
        Some(s) if s.provider == provider => wanted,
        _ => record.slots.iter().position(|s| s.provider == provider).ok_or(AttemptError::NoPlan)?,
    };
    let chosen = record.slots.get(slot).ok_or(AttemptError::NoPlan)?;
    let model_json = &chosen.model_json;
    let (content_length, splice, translate) = if p.api.is_native() {
        let model = serde_json::from_str::<String>(model_json).map_err(|_| AttemptError::NoPlan)?;
        let max_completion_tokens = chosen.max_completion_tokens;
        (None, None, Some(Translation { api: p.api, model, max_completion_tokens }))
    } else if slot == 0 {
        (Some(record.body_len), None, None)
    } else {
        let new_len = record.body_len - record.model_range.len() + model_json.len();
        (Some(new_len), Some((record.model_range.clone(), model_json.clone())), None)
    };
    let set = provider_headers(p, content_length);
    // Envoy's own x-envoy-* headers on the upstream request stay: the router reads
    // x-envoy-attempt-count back from this shared map to pick the next attempt's cluster.
    let remove = headers
        .iter()
        .map(|(name, _)| name)
        .filter(|name| {
            !set.iter().any(|(n, _)| n == *name)
                && (catalog.provider_header_names.contains(name) || name.starts_with("x-llm-"))
        })
        .cloned()
        .collect();
    Ok(Attempt { remove, set, splice, translate })
}

/// The headers that make a request go to provider `p`: its host and path, its key, identity encoding (so
/// usage stays readable), the body's exact length (when known: a translated body's is known once it is
/// translated), and its own extra headers.
pub fn provider_headers(p: &Provider, content_length: Option<usize>) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::with_capacity(6 + p.headers.len());
    out.push((":authority".into(), p.endpoint.authority.clone().into_bytes()));
    out.push((":path".into(), p.chat_path.clone().into_bytes()));
    out.push(("accept-encoding".into(), b"identity".to_vec()));
    if let Some(n) = content_length {
        out.push(("content-length".into(), crate::wire::text::decimal(n as u64).into_bytes()));
    }
    if let Some(auth) = &p.auth_value {
        out.push((p.auth_header.clone(), auth.expose().as_bytes().to_vec()));
    }
    for (name, value) in &p.headers {
        out.push((name.clone(), value.clone().into_bytes()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tests::demo;
    use crate::filter::downstream::request::tests::body;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        pairs.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect()
    }

    /// The header map after applying an attempt's changes.
    fn apply(mut headers: Vec<(String, Vec<u8>)>, a: &Attempt) -> Vec<(String, Vec<u8>)> {
        headers.retain(|(n, _)| !a.remove.contains(n) && !a.set.iter().any(|(s, _)| s == n));
        headers.extend(a.set.iter().cloned());
        headers
    }

    fn get<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Vec<&'a str> {
        headers.iter().filter(|(n, _)| n == name).map(|(_, v)| std::str::from_utf8(v).unwrap()).collect()
    }

    #[test]
    fn each_attempt_gets_its_provider_model_key_and_host_only() {
        let c = demo();
        let sent = br#"{"model":"llama","messages":[],"provider":{"sort":"price"}}"#;
        let d = body(&c, sent).unwrap();
        let plan = crate::routing::plan::record_of_slot(&d.filter_state[0].1).unwrap();
        let body = String::from_utf8(d.body.apply(sent)).unwrap();
        assert_eq!(body, r#"{"model":"llama-a","messages":[]}"#);
        // Attempt 1: alpha, body untouched. The client's leftovers are scrubbed.
        let base = h(&[
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
            (":authority", "router.local"),
            ("accept-encoding", "gzip"),
            ("x-envoy-attempt-count", "1"),
            ("x-llm-plan", "evil"),
            ("content-type", "application/json"),
        ]);
        let a1 = prepare(&c, "alpha", plan, &base).unwrap();
        assert_eq!(a1.splice, None);
        let h1 = apply(base.clone(), &a1);
        assert_eq!(get(&h1, "authorization"), ["Bearer alpha-secret"]);
        assert_eq!(get(&h1, ":authority"), ["api.alpha.example"]);
        assert_eq!(get(&h1, ":path"), ["/v1/chat/completions"]);
        assert_eq!(get(&h1, "accept-encoding"), ["identity"]);
        assert_eq!(get(&h1, "content-length"), [body.len().to_string().as_str()]);
        assert!(get(&h1, "x-llm-plan").is_empty());
        assert_eq!(get(&h1, "content-type"), ["application/json"]);
        // Attempt 2 reuses attempt 1's header map: alpha's key must go, beta's come.
        let mut second = h1.clone();
        second.retain(|(n, _)| n != "x-envoy-attempt-count");
        second.push(("x-envoy-attempt-count".into(), b"2".to_vec()));
        let a2 = prepare(&c, "beta", plan, &second).unwrap();
        let h2 = apply(second.clone(), &a2);
        assert!(get(&h2, "authorization").is_empty());
        assert_eq!(get(&h2, "x-api-key"), ["beta-secret"]);
        assert_eq!(get(&h2, "x-beta-version"), ["2"]);
        assert_eq!(get(&h2, ":authority"), ["127.0.0.1:8080"]);
        assert_eq!(get(&h2, ":path"), ["/openai/v1/chat/completions"]);
        let (range, model) = a2.splice.unwrap();
        let mut spliced = body.clone();
        spliced.replace_range(range, &model);
        assert_eq!(spliced, r#"{"model":"llama-b","messages":[]}"#);
        assert_eq!(get(&h2, "content-length"), [spliced.len().to_string().as_str()]);
    }

    #[test]
    fn only_retries_need_the_upstream_role() {
        assert!(!needs_rewrite(Api::OpenAi, None));
        assert!(!needs_rewrite(Api::OpenAi, Some(b"1")));
        assert!(needs_rewrite(Api::OpenAi, Some(b"2")));
        assert!(!needs_rewrite(Api::OpenAi, Some(b"x")));
        assert!(needs_rewrite(Api::Anthropic, None));
        assert!(needs_rewrite(Api::Gemini, Some(b"1")));
    }

    #[test]
    fn no_plan_means_no_attempt() {
        let c = demo();
        assert_eq!(prepare(&c, "alpha", "", &[]), Err(AttemptError::NoPlan));
        assert_eq!(prepare(&c, "nope", "1 0 0\n", &[]), Err(AttemptError::UnknownProvider));
        assert_eq!(prepare(&c, "gamma", "10 0 3\nalpha\t\"x\"\n", &[]), Err(AttemptError::NoPlan));
    }

    #[test]
    fn a_provider_twice_in_the_plan_gets_the_attempts_own_slot() {
        // `models` fallback lists can put one provider in two slots, with two native models.
        let c = demo();
        let plan = "30 9 3\nalpha\t\"a\"\nbeta\t\"first\"\nbeta\t\"second\"\n";
        let attempt =
            |n: &str| prepare(&c, "beta", plan, &h(&[("x-envoy-attempt-count", n)])).unwrap().splice;
        assert_eq!(attempt("2").map(|(_, m)| m), Some("\"first\"".to_string()));
        assert_eq!(attempt("3").map(|(_, m)| m), Some("\"second\"".to_string()));
        // An attempt count that points at another provider's slot falls back to this provider's first.
        assert_eq!(attempt("1").map(|(_, m)| m), Some("\"first\"".to_string()));
    }
}
