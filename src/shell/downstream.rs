//! The downstream role (listener): hands headers and the complete body to the brain and carries out its
//! decisions (local replies, body splice, filter-state plan, headers), then shapes the final response.

use super::host::{int_property, string_property};
use crate::catalog::Catalog;
use crate::downstream::{
    error_reply, on_request_body, on_request_headers, on_response_headers, response_status, too_large,
    ChatHead, HeadVerdict, Origin, Reply, ResponseVerdict, Routed,
};
use crate::health::{shared_key, status, Record};
use crate::select::ProviderHealth;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

/// Milliseconds since the epoch, from the host's clock.
fn now_ms(ctx: &dyn Context) -> u64 {
    ctx.get_current_time().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

pub struct Downstream {
    catalog: Rc<Catalog>,
    /// We answered locally: leave the response alone.
    replied: bool,
    /// The provider's error response is being replaced: (provider, status, retry-after).
    replacing: Option<(String, u16, Option<u64>)>,
    /// The request-header facts the body phase needs.
    head: Option<ChatHead>,
    /// The decision, for the response phase.
    routed: Routed,
}

impl Downstream {
    pub fn new(catalog: Rc<Catalog>) -> Self {
        Downstream { catalog, replied: false, replacing: None, head: None, routed: Routed::default() }
    }

    fn reply(&mut self, r: Reply) -> Action {
        self.replied = true;
        self.send_http_response(
            r.status as u32,
            r.headers.iter().map(|(n, v)| (*n, v.as_str())).collect(),
            Some(r.body.as_bytes()),
        );
        Action::Pause
    }
}

impl Context for Downstream {}

impl HttpContext for Downstream {
    fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        let headers = self.get_http_request_headers_bytes();
        match on_request_headers(&self.catalog, &headers, end_of_stream) {
            HeadVerdict::Reply(r) => self.reply(r),
            HeadVerdict::Chat(head) => {
                for name in &head.remove {
                    self.remove_http_request_header(name);
                }
                self.head = Some(head);
                // Held until the body is complete: the route depends on it.
                Action::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if self.replied {
            return Action::Pause;
        }
        if size as u64 > self.catalog.routing.max_request_bytes {
            return self.reply(too_large(&self.catalog).into());
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, size).unwrap_or_default();
        let Some(head) = self.head.take() else {
            return Action::Continue;
        };
        let now_ms = now_ms(self);
        let window = self.catalog.routing.outage_window_seconds;
        let health = |provider: &str| {
            let record = self.get_shared_data(&shared_key(provider)).0.and_then(|b| Record::decode(&b));
            let s = status(record, now_ms, window);
            ProviderHealth {
                recently_failed: s.recently_failed,
                cooldown_remaining_ms: s.cooldown_remaining_ms,
            }
        };
        match on_request_body(&self.catalog, &body, &head, &health) {
            Err(e) => self.reply(e.into()),
            Ok(d) => {
                for (key, value) in &d.filter_state {
                    self.set_property(vec![key.as_str()], Some(value.as_bytes()));
                }
                self.set_http_request_body(0, size, &d.body);
                for (name, value) in &d.headers {
                    self.set_http_request_header(name, Some(value));
                }
                self.routed = d.routed;
                Action::Continue
            }
        }
    }

    fn on_http_response_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        if self.replied {
            return Action::Continue;
        }
        let headers = self.get_http_response_headers_bytes();
        let status = response_status(&headers);
        let mut origin = Origin {
            via_upstream: true,
            cluster: string_property(self, &["xds", "cluster_name"]),
            attempts: int_property(self, &["upstream", "request_attempt_count"]),
            transport_failure: None,
        };
        if status >= 400 {
            origin.via_upstream =
                string_property(self, &["response", "code_details"]).as_deref() == Some("via_upstream");
            if !origin.via_upstream {
                origin.transport_failure = string_property(self, &["upstream", "transport_failure_reason"]);
            }
        }
        match on_response_headers(&self.catalog, &headers, &origin, &self.routed) {
            ResponseVerdict::Forward(out) => {
                self.set_http_response_headers_bytes(
                    out.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect(),
                );
            }
            ResponseVerdict::Replace { provider, status, retry_after } => {
                let e = error_reply(&provider, status, retry_after, b"");
                let mut out: Vec<(&str, String)> = vec![(":status", e.status().to_string())];
                out.extend(e.headers());
                self.set_http_response_headers(out.iter().map(|(n, v)| (*n, v.as_str())).collect());
                self.replacing = Some((provider, status, retry_after));
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        let Some((provider, status, retry_after)) = &self.replacing else {
            return Action::Continue;
        };
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_response_body(0, size).unwrap_or_default();
        let e = error_reply(provider, *status, *retry_after, &body);
        self.set_http_response_body(0, size, e.body().as_bytes());
        Action::Continue
    }
}
