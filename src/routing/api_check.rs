//! Which endpoints of a plan can take the request in their provider's API. A request a native API
//! cannot express (`n` above 1, an image by URL for Gemini, more cache breakpoints than Anthropic allows,
//! …) is not sent to that API's providers; when no endpoint of the plan can take it, the first refusing
//! API's 400 is the answer, and the request reaches no provider.
//!
//! Each native API of the plan translates the request once here (the upstream role translates it again
//! for the attempt that goes there: a plan carries no bodies). A plan of OpenAI providers costs nothing.

use crate::catalog::{Api, Catalog, EndpointRef};
use crate::wire::chat_request::ChatRequest;
use crate::wire::error::ApiError;
use crate::wire::native::translate_request;

/// `plan` without the endpoints whose API cannot take `req`, or the first refusal when none is left.
pub fn translatable(
    catalog: &Catalog,
    req: &ChatRequest<'_>,
    plan: Vec<EndpointRef>,
) -> Result<Vec<EndpointRef>, ApiError> {
    let api = |e: &EndpointRef| catalog.provider_of(*e).api;
    if !plan.iter().any(|e| api(e).is_native()) {
        return Ok(plan);
    }
    let mut checked: Vec<(Api, Option<ApiError>)> = Vec::new();
    for e in &plan {
        let a = api(e);
        if !a.is_native() || checked.iter().any(|(c, _)| *c == a) {
            continue;
        }
        let endpoint = catalog.endpoint(*e);
        let refusal = translate_request(a, req, &endpoint.model, endpoint.max_completion_tokens).err();
        checked.push((a, refusal));
    }
    let refuses = |a: Api| checked.iter().any(|(c, r)| *c == a && r.is_some());
    let kept: Vec<EndpointRef> = plan.iter().copied().filter(|e| !refuses(api(e))).collect();
    if kept.is_empty() {
        let first = checked.into_iter().find_map(|(_, r)| r);
        return Err(first.unwrap_or_else(|| ApiError::Internal("empty plan".into())));
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tests::{demo_json, endpoint};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// The demo catalog with gamma speaking Anthropic's API.
    fn mixed() -> Catalog {
        let json = demo_json().replace(
            r#"{"name": "gamma", "endpoint": "http://gamma.local"}"#,
            r#"{"name": "gamma", "endpoint": "http://gamma.local", "api": "anthropic"}"#,
        );
        let env = |_: &str| Some("k".to_string());
        Catalog::parse(json.as_bytes(), Some(&env)).unwrap()
    }

    fn check(c: &Catalog, body: &str, plan: &[&str]) -> Result<Vec<String>, ApiError> {
        let req = ChatRequest::parse(body.as_bytes()).unwrap();
        let plan = plan.iter().map(|p| endpoint(c, "llama", p)).collect();
        let kept = translatable(c, &req, plan)?;
        Ok(kept.iter().map(|e| c.provider_of(*e).name.clone()).collect())
    }

    #[test]
    fn a_request_every_api_takes_keeps_its_plan() {
        let c = mixed();
        let body = r#"{"model":"llama","messages":[{"role":"user","content":"hi"}]}"#;
        assert_eq!(check(&c, body, &["gamma", "alpha", "beta"]).unwrap(), ["gamma", "alpha", "beta"]);
    }

    #[test]
    fn an_api_that_cannot_take_it_leaves_the_plan() {
        let c = mixed();
        let body = r#"{"model":"llama","n":2,"messages":[{"role":"user","content":"hi"}]}"#;
        assert_eq!(check(&c, body, &["gamma", "alpha", "beta"]).unwrap(), ["alpha", "beta"]);
        assert_eq!(check(&c, body, &["alpha"]).unwrap(), ["alpha"]);
    }

    #[test]
    fn when_no_endpoint_can_take_it_the_api_says_why() {
        let c = mixed();
        let body = r#"{"model":"llama","n":2,"messages":[{"role":"user","content":"hi"}]}"#;
        let e = check(&c, body, &["gamma"]).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.body().contains("greater than 1"), "{}", e.body());
    }
}
