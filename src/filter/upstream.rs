//! The upstream role (inside each fallback cluster, once per attempt) as a state machine: it applies that
//! attempt's headers ([`super::attempt::prepare`]) and splices the provider's model name into the body the
//! router replays. First attempts never come here: the downstream role prepared them.

use super::attempt::{needs_rewrite, prepare};
use super::host::{Flow, Host};
use crate::catalog::Catalog;
use crate::routing::plan::{record_of_slot, slot_key};
use crate::wire::error::ApiError;
use crate::wire::headers::ATTEMPT_COUNT;
use std::ops::Range;
use std::rc::Rc;

/// One attempt's upstream role.
pub struct Upstream {
    /// The VM's catalog (`None` if the downstream role's configuration never arrived).
    catalog: Option<Rc<Catalog>>,
    /// The provider this cluster serves.
    provider: Rc<str>,
    /// Replace this byte range of the replayed body with this model name.
    splice: Option<(Range<usize>, String)>,
}

impl Upstream {
    /// The role for one attempt to `provider`.
    pub fn new(catalog: Option<Rc<Catalog>>, provider: Rc<str>) -> Self {
        Upstream { catalog, provider, splice: None }
    }

    /// The attempt's request headers: this provider's, or a 500 if the attempt cannot be prepared (it
    /// would go without the right key or model).
    pub fn on_request_headers(&mut self, host: &mut dyn Host) -> Flow {
        if !needs_rewrite(host.request_header(ATTEMPT_COUNT).as_deref()) {
            return Flow::Continue;
        }
        let slot0 = host.filter_state(&slot_key(0)).unwrap_or_default();
        let plan = std::str::from_utf8(&slot0).ok().and_then(record_of_slot).unwrap_or("");
        let headers = host.request_headers();
        let attempt = self.catalog.as_ref().and_then(|c| prepare(c, &self.provider, plan, &headers).ok());
        let Some(a) = attempt else {
            host.warn(&format!("no routing plan for provider {}", self.provider));
            let e = ApiError::Internal("Router misconfigured: no routing plan for this request".into());
            let headers = e.headers();
            let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            host.send_reply(e.status(), &headers, e.body().as_bytes());
            return Flow::Pause;
        };
        for name in &a.remove {
            host.remove_request_header(name);
        }
        for (name, value) in &a.set {
            host.set_request_header(name, value);
        }
        self.splice = a.splice;
        Flow::Continue
    }

    /// The replayed body: the model splice, once it is all there (here, or on the trailers).
    pub fn on_request_body(&mut self, host: &mut dyn Host, size: usize, end_of_stream: bool) -> Flow {
        if self.splice.is_none() {
            return Flow::Continue;
        }
        if !end_of_stream {
            return Flow::Pause;
        }
        self.apply_splice(host, Some(size));
        Flow::Continue
    }

    /// Trailers end a replayed body whose last chunk did not: Envoy re-sends a body that the client ended
    /// with trailers without end-of-stream on its data, so the splice happens here.
    pub fn on_request_trailers(&mut self, host: &mut dyn Host) -> Flow {
        self.apply_splice(host, None);
        Flow::Continue
    }

    /// Splices the model name into the buffered body (`size` when the host told it), once.
    fn apply_splice(&mut self, host: &mut dyn Host, size: Option<usize>) {
        let Some((range, model)) = self.splice.take() else {
            return;
        };
        // Envoy replaces only from offset 0: rewrite the prefix up to the end of the model value.
        let mut prefix = host.request_body(range.end);
        if size.unwrap_or(prefix.len()) < range.end || prefix.len() < range.end {
            // Shorter than the plan says: not the body the plan was made for; leave it alone.
            return;
        }
        prefix.truncate(range.start);
        prefix.extend_from_slice(model.as_bytes());
        host.replace_request_body_prefix(range.end, &prefix);
    }
}
