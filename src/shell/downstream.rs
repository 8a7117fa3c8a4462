//! The downstream role (listener): hands headers and the complete body to the brain and carries out its
//! decisions (local replies, body splice, filter-state plan, headers), then shapes the final response.

use super::host::{int_property, string_property, update_health};
use crate::accounting::{Account, ACCOUNT_KEY};
use crate::catalog::Catalog;
use crate::downstream::{
    attempts_of, body_mode, envoy_error_type, error_reply, on_request_body, on_request_headers,
    on_response_headers, recovered_provider, requested_model, response_status, too_large, BodyMode, ChatHead,
    HeadVerdict, Origin, Reply, ResponseVerdict, Routed,
};
use crate::health::{status, Outcome, Record};
use crate::response::{rewrite_completion, Accounted, Served, StreamRewriter};
use crate::select::ProviderHealth;
use crate::usage::usd_json;
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
    /// A completion's response headers, held until its body (and cost) is known: one write at the end.
    response_headers: Vec<(String, Vec<u8>)>,
    /// The decision, for the response phase.
    routed: Routed,
    /// What happens to the response body.
    body: ResponseBody,
    /// The account, filled in as the request goes; written once at the end.
    account: Account,
    /// The account was written (filter state and metrics).
    accounted: bool,
    /// When the request's headers arrived, ms since the epoch.
    start_ms: u64,
    /// Providers (catalog indices) that had a health record when the request was planned: only their
    /// 2xx can clear one (a record written later is newer than the request, so a success keeps it).
    had_record: Vec<usize>,
}

/// The response body's treatment, with its state.
enum ResponseBody {
    Pass,
    Completion(Served),
    Stream(Box<StreamRewriter>),
}

impl Downstream {
    pub fn new(catalog: Rc<Catalog>) -> Self {
        Downstream {
            catalog,
            replied: false,
            replacing: None,
            head: None,
            response_headers: Vec::new(),
            routed: Routed::default(),
            body: ResponseBody::Pass,
            account: Account::default(),
            accounted: false,
            start_ms: 0,
            had_record: Vec::new(),
        }
    }

    fn reply(&mut self, r: Reply) -> Action {
        self.replied = true;
        self.account.status = r.status;
        self.account.error_type = r.error_type.map(str::to_string);
        self.send_http_response(
            r.status as u32,
            r.headers.iter().map(|(n, v)| (*n, v.as_str())).collect(),
            Some(r.body.as_bytes()),
        );
        Action::Pause
    }

    fn take_usage(&mut self, a: Accounted) {
        self.account.usage = a.usage;
        self.account.cost_nano = a.cost.map(|c| c.total_nano);
    }

    /// Writes the account once: filter state for the access log, then Envoy stats.
    fn finish_account(&mut self) {
        // Chat requests and every error are accounted; `GET /models` is not.
        if self.accounted || (self.head.is_none() && self.account.error_type.is_none()) {
            return;
        }
        self.accounted = true;
        if let ResponseBody::Stream(r) = &self.body {
            let a = r.accounted();
            self.take_usage(a);
        }
        self.account.duration_ms = Some(now_ms(self).saturating_sub(self.start_ms));
        self.set_property(vec![ACCOUNT_KEY], Some(self.account.to_json().as_bytes()));
        super::metrics::record(&self.account);
    }

    /// Routes a complete request body: the plan, the provider's body and headers, or a local error.
    fn route_body(&mut self, body: &[u8]) -> Action {
        let Some(head) = self.head.as_ref() else {
            return Action::Continue;
        };
        // The request's start is recent enough for the health memory (its windows are seconds long).
        let now_ms = self.start_ms;
        let window = self.catalog.routing.outage_window_seconds;
        let had_record = std::cell::RefCell::new(Vec::new());
        let health = |provider: &str| {
            let Some(i) = self.catalog.provider(provider) else {
                return ProviderHealth::default();
            };
            let key = &self.catalog.providers[i].health_key;
            let record = self.get_shared_data(key).0.and_then(|b| Record::decode(&b));
            if record.is_some() {
                had_record.borrow_mut().push(i);
            }
            let s = status(record, now_ms, window);
            ProviderHealth {
                recently_failed: s.recently_failed,
                cooldown_remaining_ms: s.cooldown_remaining_ms,
            }
        };
        let decision = on_request_body(&self.catalog, body, head, &health);
        self.had_record = had_record.into_inner();
        if decision.is_err() {
            self.account.requested_model = requested_model(body);
        }
        match decision {
            Err(e) => self.reply(e.into()),
            Ok(d) => {
                for (key, value) in &d.filter_state {
                    self.set_property(vec![key.as_str()], Some(value.as_bytes()));
                }
                // Only the edited prefix goes back: the rest of the buffer stays in Envoy.
                self.set_http_request_body(0, d.body.replaced, &d.body.prefix);
                for name in &d.remove {
                    self.remove_http_request_header(name);
                }
                for (name, value) in &d.set {
                    self.set_http_request_header_bytes(name, Some(value));
                }
                self.account.route = Some(d.route);
                self.account.requested_model = d.routed.requested_model.clone();
                self.account.session = d.routed.session.clone();
                self.account.stream = d.stream;
                self.routed = d.routed;
                Action::Continue
            }
        }
    }

    /// Finishes a held response once its body is complete: a provider error replaced by ours, or a
    /// completion rewritten, its held headers written once (with its length and cost), and accounted.
    fn complete_held(&mut self, body: &[u8]) {
        if let Some((provider, status, retry_after)) = self.replacing.take() {
            let e = error_reply(&provider, status, retry_after, body);
            self.set_http_response_body(0, body.len(), e.body().as_bytes());
            self.finish_account();
            return;
        }
        let ResponseBody::Completion(served) = std::mem::replace(&mut self.body, ResponseBody::Pass) else {
            return;
        };
        let (rewritten, accounted) = rewrite_completion(body, &served);
        let mut headers = std::mem::take(&mut self.response_headers);
        let length = rewritten.as_ref().map_or(body.len(), Vec::len);
        if let Some(new_body) = rewritten {
            self.set_http_response_body(0, body.len(), &new_body);
        }
        headers.push(("content-length".into(), length.to_string().into_bytes()));
        if let Some(c) = accounted.cost {
            headers.push(("x-llm-cost-usd".into(), usd_json(c.total_nano as i64).into_bytes()));
        }
        self.set_http_response_headers_bytes(
            headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect(),
        );
        self.take_usage(accounted);
        self.finish_account();
    }
}

impl Context for Downstream {}

impl HttpContext for Downstream {
    fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        // One clock read serves the health memory, time to first byte and duration.
        self.start_ms = now_ms(self);
        let headers = self.get_http_request_headers_bytes();
        match on_request_headers(&self.catalog, &headers, end_of_stream) {
            HeadVerdict::Reply(r) => self.reply(r),
            HeadVerdict::Chat(head) => {
                self.account.key_name = head
                    .caller
                    .and_then(|i| self.catalog.keys.get(i))
                    .map_or(String::new(), |k| k.name.clone());
                self.account.app = head.app.clone();
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
        self.route_body(&body)
    }

    /// Trailers end a request whose last body chunk did not (HTTP/2 clients; HTTP/1 chunked trailers):
    /// the body is complete now, and must be routed like any other.
    fn on_http_request_trailers(&mut self, _n: usize) -> Action {
        if self.replied || self.head.is_none() {
            return Action::Continue;
        }
        // Envoy reads no further than the buffered body.
        let body = self.get_http_request_body(0, usize::MAX).unwrap_or_default();
        if body.len() as u64 > self.catalog.routing.max_request_bytes {
            return self.reply(too_large(&self.catalog).into());
        }
        self.route_body(&body)
    }

    fn on_http_response_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        if self.replied {
            return Action::Continue;
        }
        let headers = self.get_http_response_headers_bytes();
        let status = response_status(&headers);
        let mut origin = Origin {
            via_upstream: true,
            attempts: attempts_of(&headers)
                .or_else(|| int_property(self, &["upstream", "request_attempt_count"])),
            transport_failure: None,
        };
        if status >= 400 {
            origin.via_upstream =
                string_property(self, &["response", "code_details"]).as_deref() == Some("via_upstream");
            if !origin.via_upstream {
                origin.transport_failure = string_property(self, &["upstream", "transport_failure_reason"]);
            }
        }
        self.account.attempts = origin.attempts.unwrap_or(0);
        self.account.status = status;
        if let Some(c) = self.routed.served(origin.attempts) {
            let m = &self.catalog.models[c.model];
            self.account.model = Some(m.id.clone());
            self.account.provider =
                Some(self.catalog.providers[m.endpoints[c.endpoint].provider].name.clone());
        }
        let now = now_ms(self);
        self.account.ttfb_ms = Some(now.saturating_sub(self.start_ms));
        if let Some(p) = recovered_provider(&self.catalog, status, &origin, &self.routed) {
            if let Some(i) = self.had_record.iter().copied().find(|i| self.catalog.providers[*i].name == p) {
                // The request began before its attempt: a record stamped after that is kept (conservative).
                let key = &self.catalog.providers[i].health_key;
                update_health(self, key, Outcome::Success { started_ms: self.start_ms }, now);
            }
        }
        let action = match on_response_headers(&self.catalog, &headers, &origin, &self.routed) {
            ResponseVerdict::Forward(mut out) => {
                let content_type =
                    out.iter().find(|(n, _)| n == "content-type").map(|(_, v)| v.clone()).unwrap_or_default();
                self.body = match body_mode(&self.catalog, status, &content_type, &origin, &self.routed) {
                    BodyMode::Pass => ResponseBody::Pass,
                    BodyMode::Completion(s) => ResponseBody::Completion(s),
                    BodyMode::Stream(s) => ResponseBody::Stream(Box::new(StreamRewriter::new(s))),
                };
                let rewriting = !matches!(self.body, ResponseBody::Pass);
                if rewriting {
                    out.retain(|(n, _)| n != "content-length");
                }
                // A completion's cost goes in a header: hold the headers until the body is complete and
                // write them once then.
                if matches!(self.body, ResponseBody::Completion(_)) && !end_of_stream {
                    self.response_headers = out;
                    Action::Pause
                } else {
                    self.set_http_response_headers_bytes(
                        out.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect(),
                    );
                    Action::Continue
                }
            }
            ResponseVerdict::Replace { provider, status, retry_after } => {
                let e = error_reply(&provider, status, retry_after, b"");
                self.account.status = e.status();
                self.account.error_type = Some(e.error_type().to_string());
                let mut out: Vec<(&str, String)> = vec![(":status", e.status().to_string())];
                out.extend(e.headers());
                self.set_http_response_headers(out.iter().map(|(n, v)| (*n, v.as_str())).collect());
                self.replacing = Some((provider, status, retry_after));
                Action::Continue
            }
        };
        if status >= 400 && self.account.error_type.is_none() {
            self.account.error_type = Some(envoy_error_type(status).to_string());
        }
        if end_of_stream {
            self.finish_account();
        }
        action
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if self.replacing.is_some() || matches!(self.body, ResponseBody::Completion(_)) {
            if !end_of_stream {
                return Action::Pause;
            }
            let body = self.get_http_response_body(0, size).unwrap_or_default();
            self.complete_held(&body);
            return Action::Continue;
        }
        if matches!(self.body, ResponseBody::Stream(_)) {
            let chunk = self.get_http_response_body(0, size).unwrap_or_default();
            let ResponseBody::Stream(rewriter) = &mut self.body else {
                return Action::Continue;
            };
            let mut out = rewriter.feed(&chunk).to_vec();
            if end_of_stream {
                out.extend_from_slice(rewriter.finish());
            }
            self.set_http_response_body(0, size, &out);
        }
        if end_of_stream {
            self.finish_account();
        }
        Action::Continue
    }

    /// Trailers end a response whose last body chunk did not (HTTP/2 providers): a held completion or
    /// error is complete now, with the whole buffered body.
    fn on_http_response_trailers(&mut self, _n: usize) -> Action {
        if self.replacing.is_some() || matches!(self.body, ResponseBody::Completion(_)) {
            // Envoy reads no further than the buffered body.
            let body = self.get_http_response_body(0, usize::MAX).unwrap_or_default();
            self.complete_held(&body);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        self.finish_account();
    }
}
