//! An in-memory [`Host`] and a small model of how Envoy drives a filter through one request, so whole
//! lifecycles of the roles run natively (and on wasm32) with no proxy.
//!
//! What the model keeps of Envoy (each verified against Envoy 1.40 in the integration tests): a body
//! callback's `size` is everything buffered since the filter last continued; a paused body callback makes
//! Envoy buffer the next chunk onto it, a continued one passes the buffer on; headers held by a paused
//! headers callback go out when the filter next continues; a local reply sent from the request path goes
//! back through the filter's response callbacks; every attempt of a request shares one request header
//! map; shared data is one store for every worker, with a version per key for compare-and-swap.
//!
//! What it leaves out, so the integration tests must cover it: how the shell reads Envoy's properties
//! (paths, byte encodings, units: attributes arrive here already typed), Envoy's buffer limits (413 on a
//! held body over the listener's limit), what Envoy does with an upstream filter's local reply (it is that
//! attempt's response, retried and logged like a provider's), and how filter state reaches the upstream
//! filter (tests copy it by hand).

use super::host::{Flow, HeaderList, Host, IntAttribute, MetricKind, SharedDataError, TextAttribute};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

/// Envoy's process-wide shared data: values with a version each.
#[derive(Debug, Default)]
pub struct SharedStore {
    pub values: BTreeMap<String, (Vec<u8>, u32)>,
}

/// The stats Envoy keeps for the VM: defined names, counter totals, histogram samples.
#[derive(Debug, Default)]
pub struct FakeStats {
    pub names: Vec<(String, MetricKind)>,
    pub counters: BTreeMap<u32, i64>,
    pub samples: BTreeMap<u32, Vec<u64>>,
}

impl FakeStats {
    /// A counter's total, by name (`None` when never defined).
    pub fn counter(&self, name: &str) -> Option<i64> {
        let id = self.names.iter().position(|(n, _)| n == name)?;
        Some(self.counters.get(&(id as u32)).copied().unwrap_or(0))
    }
}

/// A reply the filter sent itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// One stream as the filter sees it, plus the process-wide parts (shared data, stats) behind `Rc`s so
/// several hosts (workers, attempts) can share them.
#[derive(Debug, Default)]
pub struct FakeHost {
    pub now_ms: u64,
    pub request_headers: HeaderList,
    pub request_body: Vec<u8>,
    pub response_headers: HeaderList,
    pub response_body: Vec<u8>,
    /// Envoy holds a response body buffer: a body callback ran. A response of headers and trailers alone
    /// has none, and a write to it fails (the proxy-wasm SDK panics, trapping the VM): so does this one.
    pub response_has_body: bool,
    pub reply: Option<LocalReply>,
    pub text_attributes: Vec<(TextAttribute, String)>,
    pub int_attributes: Vec<(IntAttribute, u64)>,
    pub filter_state: BTreeMap<String, Vec<u8>>,
    pub shared: Rc<RefCell<SharedStore>>,
    pub stats: Rc<RefCell<FakeStats>>,
    pub warnings: Vec<String>,
    /// Envoy refuses stat definitions (a name it cannot take).
    pub refuse_metrics: bool,
    /// This many compare-and-swap writes lose to another worker's write first.
    pub cas_conflicts: Cell<usize>,
    /// Another worker writes this value under the key of the next compare-and-swap write first (also
    /// where the key does not exist yet: the race for a new key).
    pub racing_write: RefCell<Option<Vec<u8>>>,
    /// Host calls made (each method of [`Host`] is one).
    pub calls: Cell<usize>,
}

/// Sets a header in a list, replacing every value of that name.
pub fn set_header(headers: &mut HeaderList, name: &str, value: &[u8]) {
    headers.retain(|(n, _)| n != name);
    headers.push((name.to_string(), value.to_vec()));
}

/// Header pairs from text.
pub fn headers(pairs: &[(&str, &str)]) -> HeaderList {
    pairs.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect()
}

/// The first value of a header, as text.
pub fn get<'a>(headers: &'a HeaderList, name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n == name).and_then(|(_, v)| std::str::from_utf8(v).ok())
}

impl FakeHost {
    /// A host at time `now_ms` sharing `other`'s shared data and stats (another stream of the same Envoy).
    pub fn beside(other: &FakeHost, now_ms: u64) -> FakeHost {
        FakeHost { now_ms, shared: other.shared.clone(), stats: other.stats.clone(), ..FakeHost::default() }
    }

    fn call(&self) {
        self.calls.set(self.calls.get() + 1);
    }
}

impl Host for FakeHost {
    fn now_ms(&self) -> u64 {
        self.call();
        self.now_ms
    }

    fn request_headers(&self) -> HeaderList {
        self.call();
        self.request_headers.clone()
    }

    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        self.call();
        self.request_headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
    }

    fn set_request_header(&mut self, name: &str, value: &[u8]) {
        self.call();
        set_header(&mut self.request_headers, name, value);
    }

    fn remove_request_header(&mut self, name: &str) {
        self.call();
        self.request_headers.retain(|(n, _)| n != name);
    }

    fn request_body(&self, len: usize) -> Vec<u8> {
        self.call();
        self.request_body.iter().take(len).copied().collect()
    }

    fn replace_request_body_prefix(&mut self, replaced: usize, prefix: &[u8]) {
        self.call();
        let rest = self.request_body.split_off(replaced.min(self.request_body.len()));
        self.request_body = [prefix, &rest].concat();
    }

    fn response_headers(&self) -> HeaderList {
        self.call();
        self.response_headers.clone()
    }

    fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        self.call();
        self.response_headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
    }

    fn set_response_headers(&mut self, headers: &[(&str, &[u8])]) {
        self.call();
        self.response_headers = headers.iter().map(|(n, v)| (n.to_string(), v.to_vec())).collect();
    }

    fn response_body(&self, len: usize) -> Vec<u8> {
        self.call();
        self.response_body.iter().take(len).copied().collect()
    }

    fn response_body_from(&self, start: usize, len: usize) -> Vec<u8> {
        self.call();
        self.response_body.iter().skip(start).take(len).copied().collect()
    }

    fn replace_response_body(&mut self, replaced: usize, bytes: &[u8]) {
        self.call();
        assert!(self.response_has_body, "a response body written where Envoy has none: the VM would trap");
        let rest = self.response_body.split_off(replaced.min(self.response_body.len()));
        self.response_body = [bytes, &rest].concat();
    }

    fn send_reply(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        self.call();
        let headers = headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        self.reply = Some(LocalReply { status, headers, body: body.to_vec() });
    }

    fn text_attribute(&self, a: TextAttribute) -> Option<String> {
        self.call();
        self.text_attributes.iter().find(|(k, _)| *k == a).map(|(_, v)| v.clone())
    }

    fn int_attribute(&self, a: IntAttribute) -> Option<u64> {
        self.call();
        self.int_attributes.iter().find(|(k, _)| *k == a).map(|(_, v)| *v)
    }

    fn set_filter_state(&mut self, key: &str, value: &[u8]) {
        self.call();
        self.filter_state.insert(key.to_string(), value.to_vec());
    }

    fn filter_state(&self, key: &str) -> Option<Vec<u8>> {
        self.call();
        self.filter_state.get(key).cloned()
    }

    fn shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.call();
        match self.shared.borrow().values.get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    fn set_shared_data(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedDataError> {
        self.call();
        let mut store = self.shared.borrow_mut();
        if let Some(other) = self.racing_write.borrow_mut().take().filter(|_| cas.is_some()) {
            let version = store.values.get(key).map_or(0, |(_, v)| *v);
            store.values.insert(key.to_string(), (other, version + 1));
        }
        if cas.is_some() && self.cas_conflicts.get() > 0 {
            // Another worker wrote in between: its write bumps the version.
            self.cas_conflicts.set(self.cas_conflicts.get() - 1);
            if let Some((_, v)) = store.values.get_mut(key) {
                *v += 1;
            }
        }
        // Envoy's rule: a CAS that differs from a stored value's version fails; a missing key is
        // created whatever the CAS.
        let version = store.values.get(key).map(|(_, v)| *v);
        if let (Some(cas), Some(version)) = (cas, version) {
            if cas != version {
                return Err(SharedDataError::CasMismatch);
            }
        }
        store.values.insert(key.to_string(), (value.to_vec(), version.unwrap_or(0) + 1));
        Ok(())
    }

    fn define_metric(&mut self, kind: MetricKind, name: &str) -> Option<u32> {
        self.call();
        if self.refuse_metrics {
            return None;
        }
        let mut stats = self.stats.borrow_mut();
        let id = match stats.names.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                stats.names.push((name.to_string(), kind));
                stats.names.len() - 1
            }
        };
        Some(id as u32)
    }

    fn increment_metric(&mut self, id: u32, by: i64) {
        self.call();
        *self.stats.borrow_mut().counters.entry(id).or_insert(0) += by;
    }

    fn record_metric(&mut self, id: u32, value: u64) {
        self.call();
        self.stats.borrow_mut().samples.entry(id).or_default().push(value);
    }

    fn warn(&mut self, message: &str) {
        self.call();
        self.warnings.push(message.to_string());
    }
}

/// What a request callback sequence came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// The filter answered itself; no provider was called.
    Replied(LocalReply),
    /// The request goes on to a provider with these headers and this body.
    Forwarded { headers: HeaderList, body: Vec<u8> },
}

/// What the client received.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Received {
    pub headers: HeaderList,
    pub body: Vec<u8>,
    /// The order in which pieces reached the client: `None` for the headers, `Some(n)` for n body bytes.
    pub pieces: Vec<Option<usize>>,
}

/// The callbacks of a downstream filter, as the driver calls them.
pub trait HttpRole {
    fn request_headers(&mut self, host: &mut FakeHost, end_of_stream: bool) -> Flow;
    fn request_body(&mut self, host: &mut FakeHost, size: usize, end_of_stream: bool) -> Flow;
    fn request_trailers(&mut self, host: &mut FakeHost) -> Flow;
    fn response_headers(&mut self, host: &mut FakeHost, end_of_stream: bool) -> Flow;
    fn response_body(&mut self, host: &mut FakeHost, size: usize, end_of_stream: bool) -> Flow;
    fn response_trailers(&mut self, host: &mut FakeHost) -> Flow;
}

impl HttpRole for super::downstream::Downstream {
    fn request_headers(&mut self, host: &mut FakeHost, end_of_stream: bool) -> Flow {
        self.on_request_headers(host, end_of_stream)
    }
    fn request_body(&mut self, host: &mut FakeHost, size: usize, end_of_stream: bool) -> Flow {
        self.on_request_body(host, size, end_of_stream)
    }
    fn request_trailers(&mut self, host: &mut FakeHost) -> Flow {
        self.on_request_trailers(host)
    }
    fn response_headers(&mut self, host: &mut FakeHost, end_of_stream: bool) -> Flow {
        self.on_response_headers(host, end_of_stream)
    }
    fn response_body(&mut self, host: &mut FakeHost, size: usize, end_of_stream: bool) -> Flow {
        self.on_response_body(host, size, end_of_stream)
    }
    fn response_trailers(&mut self, host: &mut FakeHost) -> Flow {
        self.on_response_trailers(host)
    }
}

impl HttpRole for super::upstream::Upstream {
    fn request_headers(&mut self, host: &mut FakeHost, _end_of_stream: bool) -> Flow {
        self.on_request_headers(host)
    }
    fn request_body(&mut self, host: &mut FakeHost, size: usize, end_of_stream: bool) -> Flow {
        self.on_request_body(host, size, end_of_stream)
    }
    fn request_trailers(&mut self, host: &mut FakeHost) -> Flow {
        self.on_request_trailers(host)
    }
    fn response_headers(&mut self, host: &mut FakeHost, end_of_stream: bool) -> Flow {
        self.on_response_headers(host, end_of_stream)
    }
    fn response_body(&mut self, host: &mut FakeHost, size: usize, end_of_stream: bool) -> Flow {
        self.on_response_body(host, size, end_of_stream)
    }
    fn response_trailers(&mut self, host: &mut FakeHost) -> Flow {
        self.on_response_trailers(host)
    }
}

/// Sends a client's request through `role`: headers, then the body in `chunks` (buffered while the role
/// pauses), ended by trailers when `trailers`. A local reply ends the request phase.
pub fn send_request(
    role: &mut dyn HttpRole,
    host: &mut FakeHost,
    request_headers: HeaderList,
    chunks: &[&[u8]],
    trailers: bool,
) -> Sent {
    host.request_headers = request_headers;
    let no_body = chunks.is_empty() && !trailers;
    role.request_headers(host, no_body);
    for (i, chunk) in chunks.iter().enumerate() {
        if host.reply.is_some() {
            break;
        }
        host.request_body.extend_from_slice(chunk);
        let last = i + 1 == chunks.len() && !trailers;
        role.request_body(host, host.request_body.len(), last);
    }
    if trailers && host.reply.is_none() {
        role.request_trailers(host);
    }
    match host.reply.clone() {
        Some(reply) => Sent::Replied(reply),
        None => Sent::Forwarded { headers: host.request_headers.clone(), body: host.request_body.clone() },
    }
}

/// Runs a response through `role`: `headers`, then the body in `chunks`, ended by trailers when
/// `trailers`; returns what the client receives. With a local reply pending, that reply is the response
/// (Envoy sends it through the filter's response callbacks).
pub fn receive_response(
    role: &mut dyn HttpRole,
    host: &mut FakeHost,
    response_headers: HeaderList,
    chunks: &[&[u8]],
    trailers: bool,
) -> Received {
    let mut out = Received::default();
    host.response_headers = response_headers;
    host.response_body.clear();
    host.response_has_body = false;
    let earlier_reply = host.reply.clone();
    let no_body = chunks.is_empty() && !trailers;
    let mut headers_out = role.response_headers(host, no_body) == Flow::Continue;
    if headers_out {
        out.headers = host.response_headers.clone();
        out.pieces.push(None);
    }
    let flush = |host: &mut FakeHost, out: &mut Received, headers_out: &mut bool| {
        if !*headers_out {
            out.headers = host.response_headers.clone();
            out.pieces.push(None);
            *headers_out = true;
        }
        if !host.response_body.is_empty() {
            out.pieces.push(Some(host.response_body.len()));
            out.body.append(&mut host.response_body);
        }
    };
    for (i, chunk) in chunks.iter().enumerate() {
        host.response_body.extend_from_slice(chunk);
        host.response_has_body = true;
        let last = i + 1 == chunks.len() && !trailers;
        if role.response_body(host, host.response_body.len(), last) == Flow::Continue {
            flush(host, &mut out, &mut headers_out);
        }
    }
    if trailers {
        role.response_trailers(host);
    }
    if host.reply != earlier_reply {
        // A local reply from the response path: while the response's headers are still held, Envoy
        // sends it to the client in their place, past the filters; after them, it could only reset.
        let Some(reply) = host.reply.clone() else { return out };
        assert!(!headers_out, "a local reply after the response headers went out: Envoy resets the stream");
        let mut headers = headers(&[(":status", &reply.status.to_string())]);
        headers.extend(reply.headers.iter().map(|(n, v)| (n.clone(), v.as_bytes().to_vec())));
        return Received { headers, body: reply.body, pieces: vec![None, Some(0)] };
    }
    if trailers || !headers_out {
        // The stream's end releases whatever was held.
        flush(host, &mut out, &mut headers_out);
    }
    out
}

/// A local reply as the response Envoy runs through the filter.
pub fn reply_response(role: &mut dyn HttpRole, host: &mut FakeHost, reply: &LocalReply) -> Received {
    let mut h = headers(&[(":status", &reply.status.to_string())]);
    h.extend(reply.headers.iter().map(|(n, v)| (n.clone(), v.as_bytes().to_vec())));
    let body = reply.body.clone();
    receive_response(role, host, h, &[&body], false)
}
