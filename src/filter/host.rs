//! What a role needs from the proxy that runs it, and nothing proxy-specific: the request's and
//! response's headers and body buffers, stream attributes, filter state, the process-wide shared data with
//! compare-and-swap, the clock, stats, and local replies.
//!
//! The shell implements it over proxy-wasm; `FakeHost` (tests) implements it in memory, so whole request
//! lifecycles run natively. Another shell (Envoy dynamic modules, say) would implement the same trait.
//! Every method is one host call; a failed read is `None` / empty, a failed write is reported where the
//! caller can act on it and ignored elsewhere. (The shell calls the host functions itself, not through
//! the proxy-wasm SDK's wrappers, which panic on statuses they did not expect.)

/// A header map or list as the roles read it: lowercase names, raw byte values.
pub type HeaderList = Vec<(String, Vec<u8>)>;

/// A stream attribute with a text value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextAttribute {
    /// The cluster of the attempt (logger) or of the last attempt (downstream).
    ClusterName,
    /// How the response came about (`via_upstream` when a provider sent it).
    ResponseCodeDetails,
    /// Why the connection to the provider failed, when it did (TLS errors name themselves here).
    TransportFailureReason,
}

/// A stream attribute with an integer value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntAttribute {
    /// Attempts the router made for this request.
    AttemptCount,
    /// The response status of the attempt being logged (absent when no response headers arrived).
    ResponseCode,
    /// The attempt's response flags, as Envoy's legacy bitmask (see `routing::health::flags`).
    ResponseFlags,
    /// When the attempt being logged began, ms since the Unix epoch.
    RequestStartMs,
    /// The size of the request's body, bytes.
    RequestBodyBytes,
}

/// A stat's kind.
pub use crate::observe::metrics::Kind as MetricKind;

/// Why a shared-data write did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedDataError {
    /// Another writer changed the value since it was read: read again and retry.
    CasMismatch,
    /// Anything else (the write is lost).
    Failed,
}

/// The proxy, as one role's callback sees it.
pub trait Host {
    /// Milliseconds since the Unix epoch, by the proxy's clock.
    fn now_ms(&self) -> u64;

    /// Every request header.
    fn request_headers(&self) -> HeaderList;
    /// One request header.
    fn request_header(&self, name: &str) -> Option<Vec<u8>>;
    /// Sets (replaces) one request header.
    fn set_request_header(&mut self, name: &str, value: &[u8]);
    /// Removes one request header.
    fn remove_request_header(&mut self, name: &str);
    /// The first `len` bytes of the buffered request body (`usize::MAX`: all of it).
    fn request_body(&self, len: usize) -> Vec<u8>;
    /// Replaces the buffered request body's first `replaced` bytes with `prefix`.
    fn replace_request_body_prefix(&mut self, replaced: usize, prefix: &[u8]);

    /// Every response header.
    fn response_headers(&self) -> HeaderList;
    /// One response header.
    fn response_header(&self, name: &str) -> Option<Vec<u8>>;
    /// Replaces the whole response header map (one host call, whatever the count).
    fn set_response_headers(&mut self, headers: &[(&str, &[u8])]);
    /// The first `len` bytes of the buffered response body (`usize::MAX`: all of it).
    fn response_body(&self, len: usize) -> Vec<u8>;
    /// Up to `len` bytes of the buffered response body from offset `start` (what a held body gained
    /// since the last callback, without copying it all again).
    fn response_body_from(&self, start: usize, len: usize) -> Vec<u8>;
    /// Replaces the buffered response body's first `replaced` bytes with `bytes`.
    fn replace_response_body(&mut self, replaced: usize, bytes: &[u8]);

    /// Answers the client with this response instead of forwarding the request.
    fn send_reply(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]);

    /// A text attribute of the stream.
    fn text_attribute(&self, a: TextAttribute) -> Option<String>;
    /// An integer attribute of the stream.
    fn int_attribute(&self, a: IntAttribute) -> Option<u64>;
    /// Writes a value other filters, the route's matcher and the access log read (`wasm.<key>`).
    fn set_filter_state(&mut self, key: &str, value: &[u8]);
    /// Reads a value a filter wrote for this request.
    fn filter_state(&self, key: &str) -> Option<Vec<u8>>;

    /// A shared-data value (all workers see one store) and its version for compare-and-swap.
    fn shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes a shared-data value if its version is still `cas` (`None`: unconditionally).
    fn set_shared_data(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedDataError>;

    /// Defines a stat (or finds it: the same name gives the same stat), returning its id.
    fn define_metric(&mut self, kind: MetricKind, name: &str) -> Option<u32>;
    /// Adds to a counter.
    fn increment_metric(&mut self, id: u32, by: i64);
    /// Records a histogram sample.
    fn record_metric(&mut self, id: u32, value: u64);

    /// Tells the operator something is wrong with the configuration (never on a healthy request's path;
    /// never a secret).
    fn warn(&mut self, message: &str);
}

/// What a callback tells the proxy to do with the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on (pass what was buffered).
    Continue,
    /// Stop here: keep buffering the body, or hold the headers, until a later callback continues.
    Pause,
}
