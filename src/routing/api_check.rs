//! Which endpoints can take the request in their provider's API. A request a native API cannot express
//! (`n` above 1, an image by URL for Gemini, more cache breakpoints than Anthropic allows, …) is not sent
//! to that API's providers: they are left out of the candidates like any other excluded endpoint (so the
//! plan's attempts go to endpoints that can serve it); when no endpoint is left, the first refusing
//! API's 400 is the answer, and the request reaches no provider.
//!
//! Each native API asked about translates the request once here (the upstream role translates it again
//! for the attempt that goes there: a plan carries no bodies). OpenAI endpoints cost nothing.

use crate::catalog::{Api, Catalog, EndpointRef};
use crate::wire::chat_request::ChatRequest;
use crate::wire::error::ApiError;
use crate::wire::native::translate_request;

/// Each native API's verdict on one request, made when first asked.
pub struct ApiVerdicts<'r> {
    req: &'r ChatRequest<'r>,
    /// Per API asked: its refusal, or `None` when it takes the request.
    verdicts: Vec<(Api, Option<ApiError>)>,
}

impl<'r> ApiVerdicts<'r> {
    /// No verdict yet on `req`.
    pub fn new(req: &'r ChatRequest<'r>) -> Self {
        ApiVerdicts { req, verdicts: Vec::new() }
    }

    /// Whether endpoint `e`'s provider's API cannot take the request.
    pub fn refuses(&mut self, catalog: &Catalog, e: EndpointRef) -> bool {
        let api = catalog.provider_of(e).api;
        if !api.is_native() {
            return false;
        }
        if let Some((_, refusal)) = self.verdicts.iter().find(|(a, _)| *a == api) {
            return refusal.is_some();
        }
        let endpoint = catalog.endpoint(e);
        let refusal = translate_request(api, self.req, &endpoint.model, endpoint.max_completion_tokens).err();
        let refuses = refusal.is_some();
        self.verdicts.push((api, refusal));
        refuses
    }

    /// The first refusal, if any API refused.
    pub fn first_refusal(self) -> Option<ApiError> {
        self.verdicts.into_iter().find_map(|(_, r)| r)
    }
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

    fn verdicts(c: &Catalog, body: &str, providers: &[&str]) -> (Vec<bool>, Option<ApiError>) {
        let req = ChatRequest::parse(body.as_bytes()).unwrap();
        let mut v = ApiVerdicts::new(&req);
        let refused = providers.iter().map(|p| v.refuses(c, endpoint(c, "llama", p))).collect();
        (refused, v.first_refusal())
    }

    #[test]
    fn every_api_takes_a_plain_request() {
        let body = r#"{"model":"llama","messages":[{"role":"user","content":"hi"}]}"#;
        let (refused, first) = verdicts(&mixed(), body, &["gamma", "alpha", "beta"]);
        assert_eq!(refused, [false, false, false]);
        assert!(first.is_none());
    }

    #[test]
    fn an_api_that_cannot_take_it_refuses_with_its_400() {
        let body = r#"{"model":"llama","n":2,"messages":[{"role":"user","content":"hi"}]}"#;
        let (refused, first) = verdicts(&mixed(), body, &["gamma", "alpha", "beta"]);
        assert_eq!(refused, [true, false, false]);
        let e = first.unwrap();
        assert_eq!(e.status(), 400);
        assert!(e.body().contains("greater than 1"), "{}", e.body());
    }
}
