//! The upstream role (inside each provider's cluster, once per attempt): applies that attempt's headers
//! and, for fallback slots, splices the provider's model name into the replayed body.

use crate::plan::{record_of_slot, slot_key};
use crate::upstream::{needs_rewrite, prepare};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::ops::Range;
use std::rc::Rc;

pub struct Upstream {
    provider: Rc<str>,
    splice: Option<(Range<usize>, String)>,
}

impl Upstream {
    pub fn new(provider: Rc<str>) -> Self {
        Upstream { provider, splice: None }
    }
}

impl Context for Upstream {}

impl HttpContext for Upstream {
    fn on_http_request_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        if !needs_rewrite(self.get_http_request_header_bytes("x-envoy-attempt-count").as_deref()) {
            return Action::Continue;
        }
        let slot0 = self.get_property(vec![&slot_key(0)]).unwrap_or_default();
        let plan = std::str::from_utf8(&slot0).ok().and_then(record_of_slot).unwrap_or("");
        let headers = self.get_http_request_headers_bytes();
        let attempt = super::vm_catalog()
            .ok_or(())
            .and_then(|c| prepare(&c, &self.provider, plan, &headers).map_err(|_| ()));
        match attempt {
            Ok(a) => {
                for name in &a.remove {
                    self.remove_http_request_header(name);
                }
                for (name, value) in &a.set {
                    self.set_http_request_header_bytes(name, Some(value));
                }
                self.splice = a.splice;
                Action::Continue
            }
            Err(()) => {
                // Never send a request we could not prepare (it would go without the right key or model).
                log::warn!("llm-router: no routing plan for provider {}", self.provider);
                self.send_http_response(
                    500,
                    vec![("content-type", "application/json")],
                    Some(br#"{"error":{"code":500,"message":"Router misconfigured: no routing plan for this request","metadata":{"error_type":"server"}}}"#),
                );
                Action::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        let Some((range, model)) = &self.splice else {
            return Action::Continue;
        };
        if !end_of_stream {
            return Action::Pause;
        }
        if range.end > size {
            return Action::Continue;
        }
        // Envoy replaces only from offset 0: rewrite the prefix up to the end of the model value.
        let mut prefix = self.get_http_request_body(0, range.start).unwrap_or_default();
        prefix.extend_from_slice(model.as_bytes());
        self.set_http_request_body(0, range.end, &prefix);
        Action::Continue
    }
}
