//! The downstream role (listener) as a state machine: one per request, driven by the host's callbacks.
//!
//! Request side: the headers decide between a local reply and a chat; a chat is held until its body is
//! complete (last chunk or trailers), then routed: slots for the route's matcher, the first attempt's
//! body edit and headers. Response side: the final response's headers decide who served and what the
//! client sees; a completion is held and rewritten (cost header included), a stream is rewritten event by
//! event, a provider's error is replaced by ours. The account is written once, when the request ends.
//!
//! Decisions that need no host live in [`request`] and [`response`] as plain functions.

pub mod request;
pub mod response;

use super::health_memory;
use super::host::{Flow, Host, IntAttribute, TextAttribute};
use super::rate_memory;
use super::spend_memory::{self, NotReserved};
use super::stats::Stats;
use crate::catalog::Pricing;
use crate::catalog::{Catalog, ProviderId};
use crate::observe::account::{Account, ACCOUNT_KEY};
use crate::routing::budget::{spent, windows_at, Charge, Spend};
use crate::routing::calendar::Period;
use crate::routing::fleet;
use crate::routing::health::{status, Outcome};
use crate::routing::key_api::key_json;
use crate::routing::rate_limit::Admission;
use crate::wire::error::ApiError;
use crate::wire::headers::{attempt_count, header, status as header_status, ATTEMPT_COUNT};
use crate::wire::native::{translate_completion, Step};
use crate::wire::response::{rewrite_completion, Accounted};
use crate::wire::text::decimal;
use crate::wire::usage::{cost, estimate, usd_json_u64, BYTES_PER_TOKEN};
use request::{
    on_request_body, on_request_headers, requested_model, too_large, ChatHead, HeadVerdict, Reply, Routed,
};
use response::{
    envoy_error_type, error_reply, on_response_headers, recovered_provider, response_body, Origin,
    ResponseBody, ResponseVerdict,
};
use std::cell::RefCell;
use std::rc::Rc;

/// `response.code_details` of a reply of Envoy's rate limit filter.
const RATE_LIMITED_DETAILS: &str = "request_rate_limited";

/// One request's downstream role.
pub struct Downstream {
    catalog: Rc<Catalog>,
    stats: Rc<RefCell<Stats>>,
    /// When the request's headers arrived, ms since the epoch (one clock read serves the health memory,
    /// time to first byte and duration).
    start_ms: u64,
    /// Where the request side stands.
    request: RequestState,
    /// What happens to the response body.
    body: ResponseBody,
    /// The account, filled in as the request goes; written once at the end.
    account: Account,
    /// The account was written (filter state and stats).
    accounted: bool,
    /// A response body callback ran: Envoy holds a body buffer we may write. A response of headers and
    /// trailers alone has none, and writing one fails (the SDK would panic).
    response_has_body: bool,
    /// The size of the routed request body (the prompt of a usage estimate).
    request_bytes: u64,
    /// What the key's ledger holds for this request, to settle when it ends (`None`: no key).
    charge: Option<Charge>,
    /// The request windows (shared-data key, window number) this request was counted in.
    counted: Vec<(String, u64)>,
}

/// The request side's state.
enum RequestState {
    /// Nothing decided yet.
    Start,
    /// We answered the request ourselves (an error or `/models`): the response is ours, left alone.
    Replied,
    /// A chat, held until its body is complete.
    AwaitingBody(ChatHead),
    /// A chat that was routed: what the response phase needs.
    Routed {
        routed: Routed,
        /// Providers that had a health record when the request was planned: only their 2xx can clear
        /// one (a record written later is newer than the request, so a success keeps it).
        had_record: Vec<ProviderId>,
    },
}

impl Downstream {
    /// The role for one request of the VM whose catalog and stats these are.
    pub fn new(catalog: Rc<Catalog>, stats: Rc<RefCell<Stats>>) -> Self {
        Downstream {
            catalog,
            stats,
            start_ms: 0,
            request: RequestState::Start,
            body: ResponseBody::Pass,
            account: Account::default(),
            accounted: false,
            response_has_body: false,
            request_bytes: 0,
            charge: None,
            counted: Vec::new(),
        }
    }

    /// The request's headers.
    pub fn on_request_headers(&mut self, host: &mut dyn Host, end_of_stream: bool) -> Flow {
        self.start_ms = host.now_ms();
        let headers = host.request_headers();
        match on_request_headers(&self.catalog, &headers, end_of_stream) {
            HeadVerdict::Reply(r) => self.reply(host, r),
            HeadVerdict::KeyInfo(k) => {
                let key = self.catalog.key(k);
                let ledger = spend_memory::read(host, &spend_memory::key_of(&key.name));
                let body = key_json(key, ledger.as_ref(), self.start_ms);
                let headers = vec![("content-type", "application/json".to_string())];
                self.reply(host, Reply { status: 200, headers, body, error_type: None })
            }
            HeadVerdict::Chat(head) => {
                self.account.key_name =
                    head.caller.map_or(String::new(), |k| self.catalog.key(k).name.clone());
                self.account.app = head.app.clone();
                self.request = RequestState::AwaitingBody(head);
                // Held until the body is complete: the route depends on it.
                Flow::Pause
            }
        }
    }

    /// A chunk of the request body; `size` is how much Envoy holds so far.
    pub fn on_request_body(&mut self, host: &mut dyn Host, size: usize, end_of_stream: bool) -> Flow {
        match self.request {
            RequestState::Replied => return Flow::Pause,
            RequestState::AwaitingBody(_) => {}
            _ => return Flow::Continue,
        }
        if size as u64 > self.catalog.routing.max_request_bytes {
            return self.reply(host, too_large(&self.catalog).into());
        }
        if !end_of_stream {
            return Flow::Pause;
        }
        let body = host.request_body(size);
        self.route_body(host, &body)
    }

    /// Trailers end a request whose last body chunk did not (HTTP/2 clients; HTTP/1 chunked trailers):
    /// the body is complete now, and is routed like any other.
    pub fn on_request_trailers(&mut self, host: &mut dyn Host) -> Flow {
        if !matches!(self.request, RequestState::AwaitingBody(_)) {
            return Flow::Continue;
        }
        let body = host.request_body(usize::MAX);
        if body.len() as u64 > self.catalog.routing.max_request_bytes {
            return self.reply(host, too_large(&self.catalog).into());
        }
        self.route_body(host, &body)
    }

    /// The final response's headers (a provider's, or a reply of Envoy's or ours).
    pub fn on_response_headers(&mut self, host: &mut dyn Host, end_of_stream: bool) -> Flow {
        let (routed, had_record) = match &self.request {
            RequestState::Replied => return Flow::Continue,
            RequestState::Routed { routed, had_record } => (Some(routed), had_record.as_slice()),
            _ => (None, &[][..]),
        };
        let empty = Routed::default();
        let routed = routed.unwrap_or(&empty);
        let headers = host.response_headers();
        let status = header_status(&headers);
        let mut origin = Origin {
            via_upstream: true,
            attempts: header(&headers, ATTEMPT_COUNT)
                .and_then(attempt_count)
                .or_else(|| host.int_attribute(IntAttribute::AttemptCount)),
            transport_failure: None,
        };
        if status >= 400 {
            let details = host.text_attribute(TextAttribute::ResponseCodeDetails);
            origin.via_upstream = details.as_deref() == Some("via_upstream");
            if details.as_deref() == Some(RATE_LIMITED_DETAILS) {
                // Envoy's rate limit filter refused it (a limit across the fleet): it reached no
                // provider, so this Envoy's own windows give back what it counted (its reservation is
                // settled to nothing with the rest of the account).
                release_all(host, std::mem::take(&mut self.counted));
            } else if !origin.via_upstream {
                origin.transport_failure = host.text_attribute(TextAttribute::TransportFailureReason);
            }
        }
        self.account.attempts = origin.attempts.unwrap_or(0);
        self.account.status = status;
        if let Some(e) = routed.served(origin.attempts) {
            self.account.model = Some(self.catalog.model(e.model).id.clone());
            self.account.provider = Some(self.catalog.provider_of(e).name.clone());
        }
        let now = host.now_ms();
        self.account.ttfb_ms = Some(now.saturating_sub(self.start_ms));
        if let Some(p) = recovered_provider(&self.catalog, status, &origin, routed) {
            if had_record.iter().any(|id| self.catalog.provider(*id).name == p.name) {
                // The request began before its attempt: a record stamped after that is kept (conservative).
                health_memory::update(
                    host,
                    &p.health_key,
                    Outcome::Success { started_ms: self.start_ms },
                    now,
                );
            }
        }
        // Envoy gave up waiting on the last attempt: its provider had the prompt and may bill it.
        let timed_out_at = routed
            .served(origin.attempts)
            .filter(|_| status == 504 && !origin.via_upstream)
            .map(|e| self.catalog.endpoint(e).pricing);
        let flow = match on_response_headers(&self.catalog, &headers, &origin, routed) {
            ResponseVerdict::Forward(mut out) => {
                let content_type = header(&out, "content-type").map(<[u8]>::to_vec).unwrap_or_default();
                self.body = response_body(&self.catalog, status, &content_type, &origin, routed, now / 1000);
                if !matches!(self.body, ResponseBody::Pass) {
                    out.retain(|(n, _)| n != "content-length");
                }
                match &mut self.body {
                    // A completion's cost goes in a header: hold the headers until the body is complete and
                    // write them once then.
                    ResponseBody::Completion { headers, .. } if !end_of_stream => {
                        *headers = out;
                        Flow::Pause
                    }
                    _ => {
                        set_response_headers(host, &out);
                        Flow::Continue
                    }
                }
            }
            ResponseVerdict::Replace(replacement) => {
                let e = error_reply(&self.catalog, &replacement, b"");
                self.account.status = e.status();
                self.account.error_type = Some(e.error_type().to_string());
                if end_of_stream {
                    // No body will come to write ours into: our reply replaces the response.
                    self.reply_in_place(host, e)
                } else {
                    // Held: the provider's message (in its body) may go into ours.
                    self.body = ResponseBody::Replacing(replacement);
                    Flow::Pause
                }
            }
        };
        if status >= 400 && self.account.error_type.is_none() {
            self.account.error_type = Some(envoy_error_type(status).to_string());
        }
        if let Some(pricing) = timed_out_at {
            self.estimate_usage(0, &pricing);
        }
        if end_of_stream {
            self.finish_account(host);
        }
        flow
    }

    /// A chunk of the response body; `size` is how much Envoy holds so far.
    pub fn on_response_body(&mut self, host: &mut dyn Host, size: usize, end_of_stream: bool) -> Flow {
        self.response_has_body = true;
        match &mut self.body {
            ResponseBody::Completion { .. } | ResponseBody::Replacing(_) => {
                if !end_of_stream {
                    return Flow::Pause;
                }
                let body = host.response_body(size);
                self.complete_held(host, &body);
                return Flow::Continue;
            }
            ResponseBody::Stream(rewriter) => {
                let chunk = host.response_body(size);
                let mut out = rewriter.feed(&chunk).to_vec();
                if end_of_stream {
                    out.extend_from_slice(rewriter.finish());
                }
                host.replace_response_body(size, &out);
            }
            ResponseBody::NativeStream(translator) => {
                // Made without failover (the client has the headers): every step forwards.
                let chunk = host.response_body(size);
                let mut out = forwarded(translator.feed(&chunk)).to_vec();
                if end_of_stream {
                    out.extend_from_slice(forwarded(translator.finish()));
                }
                host.replace_response_body(size, &out);
            }
            ResponseBody::Pass => {}
        }
        if end_of_stream {
            self.finish_account(host);
        }
        Flow::Continue
    }

    /// Trailers end a response whose last body chunk did not (HTTP/2 providers): a held completion or
    /// error is complete now, with the whole buffered body.
    pub fn on_response_trailers(&mut self, host: &mut dyn Host) -> Flow {
        if matches!(self.body, ResponseBody::Completion { .. } | ResponseBody::Replacing(_)) {
            let body = host.response_body(usize::MAX);
            self.complete_held(host, &body);
        }
        Flow::Continue
    }

    /// The request is over (completed, reset, or the client went away).
    pub fn on_log(&mut self, host: &mut dyn Host) {
        self.finish_account(host);
    }

    fn reply(&mut self, host: &mut dyn Host, r: Reply) -> Flow {
        self.request = RequestState::Replied;
        self.account.status = r.status;
        self.account.error_type = r.error_type.map(str::to_string);
        let headers: Vec<(&str, &str)> = r.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        host.send_reply(r.status, &headers, r.body.as_bytes());
        Flow::Pause
    }

    /// Replaces a provider's response whose headers are still held with our error, as a local reply
    /// (Envoy sends it straight to the client, past the filters). Later response callbacks, if any, are
    /// left alone.
    fn reply_in_place(&mut self, host: &mut dyn Host, e: ApiError) -> Flow {
        self.body = ResponseBody::Pass;
        self.reply(host, e.into())
    }

    /// Routes a complete request body: the plan, the provider's body and headers, or a local error.
    fn route_body(&mut self, host: &mut dyn Host, body: &[u8]) -> Flow {
        let RequestState::AwaitingBody(head) = std::mem::replace(&mut self.request, RequestState::Start)
        else {
            return Flow::Continue;
        };
        // The request's start is recent enough for the health memory (its windows are seconds long).
        let window = self.catalog.routing.outage_window_seconds;
        let had_record = RefCell::new(Vec::new());
        let decision = {
            let host: &dyn Host = host;
            let health = |p: ProviderId| {
                let record = health_memory::read(host, &self.catalog.provider(p).health_key);
                if record.is_some() {
                    had_record.borrow_mut().push(p);
                }
                status(record, self.start_ms, window)
            };
            on_request_body(&self.catalog, body, &head, &health)
        };
        match decision {
            Err(e) => {
                self.account.requested_model = requested_model(body);
                self.reply(host, e.into())
            }
            Ok(d) => {
                if let Some(refused) = self.admit(host, &head, d.routed.free, d.reserve) {
                    self.account.requested_model = d.routed.requested_model.clone();
                    return self.reply(host, refused.into());
                }
                for (key, value) in &d.filter_state {
                    host.set_filter_state(key, value.as_bytes());
                }
                // Only the edited prefix goes back: the rest of the buffer stays in Envoy.
                host.replace_request_body_prefix(d.body.replaced, &d.body.prefix);
                for name in &d.remove {
                    host.remove_request_header(name);
                }
                for (name, value) in &d.set {
                    host.set_request_header(name, value);
                }
                self.account.route = Some(d.route);
                self.request_bytes = body.len() as u64;
                self.account.requested_model = d.routed.requested_model.clone();
                self.account.session = d.routed.session.clone();
                self.account.stream = d.stream;
                self.request = RequestState::Routed { routed: d.routed, had_record: had_record.into_inner() };
                Flow::Continue
            }
        }
    }

    /// Counts a routable request against its key's `requests_per_minute` and, for a `:free` variant,
    /// the free quotas per minute and per day, then reserves its worst case (`reserve`) against the key's
    /// token and dollar limits; all exact across the workers (shared data, compare-and-swap). The error
    /// for the first that refuses, with what the others counted taken back (a refused request consumes
    /// nothing). A key without limits asking for no free variant costs nothing here.
    fn admit(
        &mut self,
        host: &mut dyn Host,
        head: &ChatHead,
        free: bool,
        reserve: Option<Spend>,
    ) -> Option<ApiError> {
        let key = head.caller.map(|k| self.catalog.key(k));
        let name = key.map_or("", |k| k.name.as_str());
        let routing = &self.catalog.routing;
        let mut quotas: Vec<(&str, u64, Period, &str)> = Vec::new();
        if let Some(limit) = key.and_then(|k| k.limits.requests_per_minute) {
            quotas.push(("rate", limit, Period::Minute, "requests per minute for this key"));
        }
        if free {
            quotas.push((
                "free_day",
                routing.free_requests_per_day,
                Period::Day,
                "free-model requests per day",
            ));
            quotas.push((
                "free_minute",
                routing.free_requests_per_minute,
                Period::Minute,
                "free-model requests per minute",
            ));
        }
        // Now, not when the headers came: the body may have taken a while, and a window must not be
        // counted in as if it had not turned. (Nothing to count: no clock read.)
        let now = if quotas.is_empty() && reserve.is_none() { self.start_ms } else { host.now_ms() };
        for (quota, limit, period, what) in &quotas {
            let shared_key = rate_memory::key_of(quota, name);
            match rate_memory::admit(host, &shared_key, *limit, *period, now) {
                Admission::Admit { window, .. } => self.counted.push((shared_key, window.number)),
                Admission::Refuse { remaining, reset_ms, retry_after } => {
                    self.release_counted(host);
                    return Some(ApiError::KeyLimitReached {
                        message: format!("Rate limit exceeded: {limit} {what}"),
                        limit: *limit,
                        remaining,
                        reset_ms,
                        retry_after,
                    });
                }
            }
        }
        let key = key?;
        let Some(worst) = reserve else {
            // Nothing to reserve: what the request spends is counted when it ends (for `/key`).
            self.charge = Some(Charge { reserved: Spend::default(), numbers: windows_at(now) });
            return None;
        };
        match spend_memory::reserve(host, &spend_memory::key_of(name), &key.limits, worst, now) {
            Ok(charge) => {
                self.charge = Some(charge);
                None
            }
            Err(not) => {
                self.release_counted(host);
                Some(match not {
                    NotReserved::Refused(r) => r.error(worst),
                    NotReserved::Contended => ApiError::KeyLimitReached {
                        message: "Too many concurrent requests for this key: retry".into(),
                        limit: 0,
                        remaining: 0,
                        reset_ms: now.saturating_add(1000),
                        retry_after: 1,
                    },
                })
            }
        }
    }

    /// Takes back the request windows this request was counted in (something refused it after them: a
    /// refused request consumes nothing).
    fn release_counted(&mut self, host: &mut dyn Host) {
        release_all(host, std::mem::take(&mut self.counted));
    }

    /// Finishes a held response once its body is complete: a provider error replaced by ours, or a
    /// completion rewritten, its held headers written once (with its length and cost), and accounted.
    fn complete_held(&mut self, host: &mut dyn Host, body: &[u8]) {
        match std::mem::replace(&mut self.body, ResponseBody::Pass) {
            ResponseBody::Replacing(r) => {
                let e = error_reply(&self.catalog, &r, body);
                if !self.response_has_body {
                    self.reply_in_place(host, e);
                } else {
                    replace_response(host, body.len(), &e);
                }
            }
            ResponseBody::Completion { served, mut headers, api } => {
                // An OpenAI completion is rewritten where needed; a native one is translated whole.
                let answer = if api.is_native() {
                    let created = host.now_ms() / 1000;
                    translate_completion(api, body, &served, created).map(|(t, a)| (Some(t), a))
                } else {
                    Ok(rewrite_completion(body, &served))
                };
                match answer {
                    Ok((rewritten, accounted)) => {
                        let length = rewritten.as_ref().map_or(body.len(), Vec::len);
                        if let Some(new_body) = rewritten {
                            host.replace_response_body(body.len(), &new_body);
                        }
                        headers.push(("content-length".into(), decimal(length as u64).into_bytes()));
                        if let Some(c) = accounted.cost {
                            headers.push(("x-llm-cost-usd".into(), usd_json_u64(c.total_nano).into_bytes()));
                        }
                        set_response_headers(host, &headers);
                        if accounted.usage.is_some() {
                            self.take_usage(accounted);
                        } else {
                            // A 2xx with no readable usage was still served (and billed): the body's size
                            // bounds the completion.
                            let completion = (body.len() as u64).div_ceil(BYTES_PER_TOKEN);
                            self.estimate_usage(completion, &served.pricing);
                        }
                    }
                    Err(e) => {
                        // Served (and billed) but untranslatable: the client gets our error, the account
                        // an estimate.
                        let completion = (body.len() as u64).div_ceil(BYTES_PER_TOKEN);
                        self.estimate_usage(completion, &served.pricing);
                        self.account.status = e.status();
                        self.account.error_type = Some(e.error_type().to_string());
                        replace_response(host, body.len(), &e);
                    }
                }
            }
            other => {
                self.body = other;
                return;
            }
        }
        self.finish_account(host);
    }

    /// Writes what the request spent where the rate limit filters charge it when the stream is done
    /// (only with `routing.rate_limit_service`; see `routing::fleet`).
    fn charge_fleet(&self, host: &mut dyn Host, actual: Spend) {
        let (Some(service), RequestState::Routed { routed, .. }) =
            (&self.catalog.routing.rate_limit_service, &self.request)
        else {
            return;
        };
        let Some(key) = routed.caller.map(|k| self.catalog.key(k)) else { return };
        for (name, value) in fleet::spent(service, key, actual) {
            host.set_filter_state(name, value.as_bytes());
        }
        // The stream-done charge builds its descriptors from the request headers again, and the route
        // removed ours before the provider saw them: they go back on (the request is long sent).
        for (name, value) in fleet::headers(&self.catalog, Some(key), routed.free) {
            host.set_request_header(&name, &value);
        }
    }

    fn take_usage(&mut self, a: Accounted) {
        self.account.usage = a.usage;
        self.account.cost_nano = a.cost.map(|c| c.total_nano);
    }

    /// Accounts an estimate ([`estimate`]) at `pricing`, unless the provider's own usage is known.
    fn estimate_usage(&mut self, completion_tokens: u64, pricing: &Pricing) {
        if self.account.usage.is_some() {
            return;
        }
        let usage = estimate(self.request_bytes, completion_tokens);
        self.account.cost_nano = Some(cost(&usage, pricing).total_nano);
        self.account.usage = Some(usage);
        self.account.usage_estimated = true;
    }

    /// Writes the account once: filter state for the access log, then Envoy stats. Chat requests and
    /// every error are accounted; `GET /models` is not.
    fn finish_account(&mut self, host: &mut dyn Host) {
        let chat = !matches!(self.request, RequestState::Start | RequestState::Replied)
            || self.account.error_type.is_some();
        if self.accounted || !chat {
            return;
        }
        self.accounted = true;
        // A provider that answered worked and bills even when its usage never reached us (the client
        // left, the stream was cut, a completion was never complete): estimated, and flagged.
        let unfinished = match &self.body {
            ResponseBody::Stream(r) if r.accounted().usage.is_some() => {
                let a = r.accounted();
                self.take_usage(a);
                None
            }
            ResponseBody::Stream(r) => Some((r.content_chunks(), r.served().pricing)),
            ResponseBody::NativeStream(t) if t.accounted().usage.is_some() => {
                let a = t.accounted();
                self.take_usage(a);
                None
            }
            ResponseBody::NativeStream(t) => Some((t.content_chunks(), t.served().pricing)),
            ResponseBody::Completion { served, .. } => Some((0, served.pricing)),
            _ => None,
        };
        if let Some((completion, pricing)) = unfinished {
            self.estimate_usage(completion, &pricing);
        }
        if let Some(charge) = self.charge.take() {
            let actual = spent(
                charge.reserved,
                self.account.usage.as_ref(),
                self.account.usage_estimated,
                self.account.cost_nano.unwrap_or(0),
                self.account.status,
            );
            spend_memory::settle(host, &spend_memory::key_of(&self.account.key_name), &charge, actual);
            self.charge_fleet(host, actual);
        }
        self.account.duration_ms = Some(host.now_ms().saturating_sub(self.start_ms));
        host.set_filter_state(ACCOUNT_KEY, self.account.to_json().as_bytes());
        self.stats.borrow_mut().record(host, &self.account);
    }
}

/// Takes back one request from each of these windows (shared-data key, window number).
fn release_all(host: &mut dyn Host, counted: Vec<(String, u64)>) {
    for (key, number) in counted {
        rate_memory::release(host, &key, number);
    }
}

/// Replaces a held response (headers and its `body_len` bytes of body) with our error.
fn replace_response(host: &mut dyn Host, body_len: usize, e: &ApiError) {
    let status = decimal(u64::from(e.status()));
    let text = e.body();
    let length = decimal(text.len() as u64);
    let mut out: Vec<(&str, &[u8])> =
        vec![(":status", status.as_bytes()), ("content-length", length.as_bytes())];
    let headers = e.headers();
    out.extend(headers.iter().map(|(n, v)| (*n, v.as_bytes())));
    host.set_response_headers(&out);
    host.replace_response_body(body_len, text.as_bytes());
}

/// The bytes of a translator's step (a failure, which a translator without failover never reports,
/// forwards nothing).
fn forwarded(step: Step<'_>) -> &[u8] {
    match step {
        Step::Forward(bytes) => bytes,
        Step::Failed(_) => b"",
    }
}

/// Writes a whole response header map in one host call.
fn set_response_headers(host: &mut dyn Host, headers: &[(String, Vec<u8>)]) {
    let pairs: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
    host.set_response_headers(&pairs);
}
