//! A mock LLM provider for tests and local demos: OpenAI-compatible, and also speaking Anthropic's
//! Messages API and Google Gemini's `generateContent`, chosen by the request path.
//!
//! It is served by hyper (HTTP/1.1 with keep-alive: Envoy pools upstream connections and sends many
//! requests on each) on a tokio runtime of its own, so its API stays blocking for the tests. Request
//! bodies may be sent with `content-length` or `transfer-encoding: chunked`.
//!
//! * `POST .../chat/completions` is recorded (see [`MockProvider::requests`]) and answered according to
//!   the current [`Behavior`]. A completion carries `x-ratelimit-remaining-requests: 99` and
//!   `x-mock-secret: internal`; it is gzip-compressed when the request's `accept-encoding` allows gzip;
//!   with `"stream": true` it is an SSE stream of content events, a usage event, then `data: [DONE]`
//!   (see [`MockProvider::set_stream_shape`] and [`MockProvider::hold_streams`]).
//! * `POST .../v1/messages` is an Anthropic Messages request, recorded and answered by the same
//!   behaviours: a `message` (JSON), or with `"stream": true` Anthropic's event stream (`message_start`,
//!   `content_block_start`, `ping`, one `content_block_delta` per text chunk, `content_block_stop`,
//!   `message_delta`, `message_stop`). With a non-empty `tools` array the message also calls the first
//!   tool (`tool_use` block `toolu_mock_1`, input `{"x":1}`, `stop_reason: "tool_use"`). It carries
//!   `anthropic-ratelimit-requests-remaining: 99`, `request-id: req_mock_<n>` and `x-mock-secret`.
//! * `POST .../models/{model}:generateContent` is a Gemini request, answered with a
//!   `GenerateContentResponse`; `POST .../models/{model}:streamGenerateContent?alt=sse` with a stream
//!   of them (`data: {...}\r\n\r\n`, one per text chunk, cumulative `usageMetadata` on each,
//!   `finishReason: "STOP"` on the last, no `[DONE]`). With a function declaration in `tools` the answer
//!   also calls the first one (a `functionCall` part, args `{"x":1}`). Without `alt=sse` a stream
//!   request is answered 400 (Gemini's JSON-array streaming is not served).
//! * The answer's text is the same in all three APIs: "Hello from NAME", streamed as "Hello ", "from ",
//!   NAME (or the chunks of [`MockProvider::set_stream_shape`]; the native APIs' whole answers then hold
//!   the chunks' concatenation). Usage is 11 prompt and 7 completion tokens, plus the cache counts of
//!   [`MockProvider::set_native_usage`] in the native APIs. Errors the mock makes up itself (invalid JSON,
//!   [`Behavior::Flaky`]) are in the path's API's error shape.
//! * Other `POST`s are answered 404 under [`Behavior::Ok`], or with the configured status under
//!   [`Behavior::Status`] (and as an OpenAI completion under the other behaviours).
//! * `GET` of any path answers 200 `{"ok":true}` (whatever the behaviour, so health checks keep
//!   working).
//! * Other methods answer 405; a malformed request gets 400 and the connection is closed.
//!
//! Two faults are not what an HTTP library will send, and are made underneath hyper, in [`MockIo`]:
//! the trailer of [`Behavior::Trailers`] is written raw on the socket, and the cut of
//! [`Behavior::Cut`] with `reset` waits until every event before it is on the wire.
//!
//! The transport (recording, behaviours, pacing, holds, cuts) is shared; what differs by API is only
//! how an answer and an error are written, in the `anthropic` and `gemini` submodules.

mod anthropic;
mod gemini;

use std::convert::Infallible;
use std::future::Future;
use std::io::{self, Write as _};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, watch};

/// Hyper's read buffer, so also the longest request head. Hyper's default (~400 KB) made a 1 MB body cost
/// a fifth more CPU (fresh pages for every read).
const READ_BUF: usize = 64 * 1024;
/// Most header lines accepted in one request.
const MAX_HEADERS: usize = 200;
/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024 * 1024;
/// A connection keeps its body buffer for the next request up to this size.
const MAX_KEPT_BODY: usize = 8 * 1024 * 1024;
/// Streams that pause less than this before each event run on the blocking pool (see `produce_paced`).
const PRECISE_PAUSE: Duration = Duration::from_millis(20);

/// How long a test waits for the 1st event of a stream the mock holds: far below any hold (a held stream
/// waits for its release), so a proxy that buffers the stream fails the read instead of getting the whole
/// stream once the hold ends.
pub const FIRST_EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The usage block every completion reports.
const USAGE_JSON: &str = r#"{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}"#;

/// One completion request received: on a `.../chat/completions`, `.../v1/messages` (Anthropic) or
/// `...:generateContent` / `...:streamGenerateContent` (Gemini) path.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// The request target as sent (path and query).
    pub path: String,
    /// Header names lowercased; each name where it first appeared, its values in the order received.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Recorded {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, or `Null` if it is not valid JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// How the mock answers `POST` requests.
#[derive(Clone, Debug)]
pub enum Behavior {
    /// 200 completion in the path's API (JSON, or SSE when the request body has "stream": true, or for
    /// Gemini when the path is `:streamGenerateContent`).
    Ok,
    /// Reply with this status, extra headers and body (e.g. 503, 429 + retry-after) to every request.
    /// (`GET` health probes still answer 200.) `content-type: application/json` is added unless
    /// `headers` has a content-type.
    Status { code: u16, headers: Vec<(String, String)>, body: String },
    /// Wait this long before answering as `Ok` (for per-attempt timeouts).
    Delay { ms: u64 },
    /// Streams stop after this many events (counted as for [`Behavior::StreamError`]) without their end
    /// (`data: [DONE]`, Anthropic's `message_stop`, or Gemini's `finishReason` event when the cut is
    /// before it): ending the response cleanly, or with `reset`, closing the connection mid-response (no
    /// terminating chunk). Non-streamed requests answer as `Ok`.
    Cut { after_events: usize, reset: bool },
    /// A non-streamed completion sent chunked and ended by a trailer (`x-mock-trailer: done`), as HTTP/2
    /// providers may end theirs (Envoy passes HTTP/1 trailers on with `enable_trailers`). On a native
    /// path, that API's whole answer (even to a stream request).
    Trailers,
    /// This status with headers, then a trailer and no body at all (chunked: only `0\r\n` and the
    /// trailer), as an HTTP/2 provider's HEADERS + trailing HEADERS: the filter sees no response body.
    TrailersOnly { code: u16 },
    /// `percent` % of completion requests (0 to 100) answered with `code` and a JSON error in the path's
    /// API's shape, the others as `Ok`. Deterministic and evenly spread: the n-th completion request
    /// under this behaviour (counting from 1, whatever its API)
    /// fails when ⌊n·percent/100⌋ grows, so 50 fails every other request (the 2nd, 4th, …) and 25 every
    /// fourth.
    Flaky { percent: u8, code: u16 },
    /// Answer as `Ok`, headers at once, then the body (a completion or an SSE stream) one byte every
    /// `interval_ms` (chunked): a provider that trickles its answer.
    Trickle { interval_ms: u64 },
    /// Streams answer 200, send `after_events` events as under `Ok`, then the API's error event, and end
    /// (cleanly, without the rest). Non-streamed requests answer as `Ok`. Events count as for `Cut`:
    ///
    /// * OpenAI: every `data:` event: the content chunks, the usage chunk, `[DONE]`. The error is
    ///   `data: {"error":{"message":"Overloaded","code":502}}`.
    /// * Anthropic: every event, `ping` included, in the order `message_start`, `content_block_start`,
    ///   `ping`, the text deltas, `content_block_stop`, (with tools: `content_block_start`, 2
    ///   `input_json_delta`s, `content_block_stop`), `message_delta`, `message_stop`. So 1 fails after
    ///   `message_start` (no content block yet), 3 after `ping` (no text yet), 4 after the first text
    ///   delta. The error is `event: error` with `{"type":"error","error":{"type":"overloaded_error",
    ///   "message":"Overloaded"}}`.
    /// * Gemini: every `data:` event: one per text chunk, then (with tools) the `functionCall` one; the
    ///   last carries `finishReason`. The error is `data: {"error":{"code":503,"message":"The model is
    ///   overloaded.","status":"UNAVAILABLE"}}`.
    ///
    /// `after_events` at or beyond the stream's length sends the whole stream and then the error.
    StreamError { after_events: usize },
}

/// What [`MockProvider::hold_streams`] and [`MockProvider::release_stream`] set.
#[derive(Clone, Copy, Debug, Default)]
struct Hold {
    /// Streams that start while this is set pause after their first event.
    on: bool,
    /// Bumped by `release_stream`; a held stream waits for a change.
    release_gen: u64,
    /// Set when the mock stops: every hold ends.
    stopped: bool,
}

struct Shared {
    name: String,
    behavior: Mutex<Behavior>,
    requests: Mutex<Vec<Recorded>>,
    hold: watch::Sender<Hold>,
    /// Streams holding now (see [`MockProvider::held`]).
    held: AtomicUsize,
    next_id: AtomicU64,
    /// Chat requests are kept for [`MockProvider::requests`] while this is set (the default).
    record: AtomicBool,
    /// Content events per SSE stream; 0 = the default stream ("Hello ", "from ", name).
    stream_chunks: AtomicU64,
    /// Pause before each SSE event, in microseconds (0 = none).
    chunk_delay_us: AtomicU64,
    /// Chat requests received, recorded or not (see [`MockProvider::received`]).
    received: AtomicU64,
    /// Completion requests answered under [`Behavior::Flaky`] so far.
    flaky_seq: AtomicU64,
    /// Prompt tokens read from the cache, in native usage (see [`MockProvider::set_native_usage`]).
    cache_read: AtomicU64,
    /// Prompt tokens written to the cache, in Anthropic's usage.
    cache_write: AtomicU64,
}

/// Lock, ignoring poisoning (a panicking test thread must not wedge the mock).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running mock provider. Dropping it (or [`MockProvider::stop`]) stops it.
pub struct MockProvider {
    shared: Arc<Shared>,
    port: u16,
    /// Serves the listener and every connection; shutting it down closes them all.
    runtime: Option<Runtime>,
}

impl MockProvider {
    /// Start on 127.0.0.1 with an OS-assigned port. Panics if it cannot bind.
    #[allow(clippy::panic)]
    pub fn start(name: &str) -> MockProvider {
        match Self::start_on(name, 0) {
            Ok(m) => m,
            Err(e) => panic!("mock provider {name}: cannot bind 127.0.0.1:0: {e}"),
        }
    }

    /// Start on 127.0.0.1:`port` (0 = any free port).
    pub fn start_on(name: &str, port: u16) -> io::Result<MockProvider> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).min(4);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name(format!("mock-{name}"))
            .enable_io()
            .enable_time()
            .build()?;
        let listener = {
            let _in_runtime = runtime.enter();
            TcpListener::from_std(listener)?
        };
        let shared = Arc::new(Shared {
            name: name.to_string(),
            behavior: Mutex::new(Behavior::Ok),
            requests: Mutex::new(Vec::new()),
            hold: watch::Sender::new(Hold::default()),
            held: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            record: AtomicBool::new(true),
            stream_chunks: AtomicU64::new(0),
            chunk_delay_us: AtomicU64::new(0),
            received: AtomicU64::new(0),
            flaky_seq: AtomicU64::new(0),
            cache_read: AtomicU64::new(0),
            cache_write: AtomicU64::new(0),
        });
        runtime.spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(MockProvider { shared, port, runtime: Some(runtime) })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub fn set_behavior(&self, b: Behavior) {
        *lock(&self.shared.behavior) = b;
    }

    /// Every completion request received (chat, Anthropic, Gemini), in order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.requests).clone()
    }

    /// How many completion requests (chat, Anthropic, Gemini) this mock has received since it started,
    /// whether or not it records them
    /// (a count that costs no memory, for long runs under load).
    pub fn received(&self) -> u64 {
        self.shared.received.load(Ordering::Relaxed)
    }

    /// Keep recording completion requests (the default) or not (a long-running mock, e.g. under load).
    pub fn set_recording(&self, on: bool) {
        self.shared.record.store(on, Ordering::Relaxed);
        if !on {
            self.clear();
        }
    }

    /// Shape of SSE streams: `chunks` content events (0 = the default "Hello ", "from ", name), each
    /// event (usage and `[DONE]` included) preceded by a pause of `delay`. The same for the native
    /// APIs' streams: `chunks` text deltas (Anthropic) or text events (Gemini), every event paced; their
    /// whole answers hold the chunks' text, "token0 token1 ...".
    pub fn set_stream_shape(&self, chunks: usize, delay: Duration) {
        self.shared.stream_chunks.store(chunks as u64, Ordering::Relaxed);
        self.shared.chunk_delay_us.store(delay.as_micros() as u64, Ordering::Relaxed);
    }

    /// Cache counts in the native APIs' usage (both 0 by default), whole and streamed: Anthropic's
    /// `cache_read_input_tokens` and `cache_creation_input_tokens` (beside `input_tokens: 11`, which
    /// excludes them), Gemini's `cachedContentTokenCount` (omitted when 0; Gemini's `promptTokenCount`
    /// includes it, so it becomes 11 + `cache_read`, and the total grows with it). Gemini reports no
    /// cache writes: `cache_write` is Anthropic's only. OpenAI answers are unchanged.
    pub fn set_native_usage(&self, cache_read: u64, cache_write: u64) {
        self.shared.cache_read.store(cache_read, Ordering::Relaxed);
        self.shared.cache_write.store(cache_write, Ordering::Relaxed);
    }

    /// Forget the recorded requests.
    pub fn clear(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Make the next streams pause before sending their 2nd SSE event until `release_stream()` is
    /// called. `hold_streams(false)` also lets any paused stream continue. A held stream waits for
    /// nothing else (no timeout): a client that waits for its 2nd event without releasing it waits until
    /// its own read timeout, or until the mock stops.
    pub fn hold_streams(&self, hold: bool) {
        self.shared.hold.send_modify(|h| h.on = hold);
    }

    /// Let every stream currently paused (or about to pause) continue.
    /// Streams that start afterwards still pause while `hold_streams(true)`.
    pub fn release_stream(&self) {
        self.shared.hold.send_modify(|h| h.release_gen += 1);
    }

    /// How many streams are holding right now: counted from before their 1st event is sent until they
    /// are released (or end), so a client that has read a held stream's 1st event sees it counted.
    pub fn held(&self) -> usize {
        self.shared.held.load(Ordering::SeqCst)
    }

    /// Stop accepting (connections are refused afterwards) and close open connections.
    pub fn stop(self) {
        drop(self)
    }
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        // Shutting the runtime down drops the listener and every connection task (so their sockets), held
        // streams included; it waits for the streams on the blocking pool, which end once their holds do.
        self.shared.hold.send_modify(|h| h.stopped = true);
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                // Each SSE event leaves as soon as it is written.
                let _ = tcp.set_nodelay(true);
                tokio::spawn(serve_connection(tcp, Arc::clone(&shared)));
            }
            // E.g. out of file descriptors: try again shortly rather than spin.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn serve_connection(tcp: TcpStream, shared: Arc<Shared>) {
    let ctl = Arc::new(ConnCtl::default());
    let io = TokioIo::new(MockIo { tcp, ctl: Arc::clone(&ctl), raw: Raw::Idle });
    let service = hyper::service::service_fn(move |req| handle(req, Arc::clone(&shared), Arc::clone(&ctl)));
    // An error here is the client going away, a malformed request (hyper has answered 400), or a stream
    // cut on purpose: the connection is closed either way.
    let _ = hyper::server::conn::http1::Builder::new()
        .max_buf_size(READ_BUF)
        .max_headers(MAX_HEADERS)
        .auto_date_header(false)
        .serve_connection(io, service)
        .await;
}

/// What a connection's request handlers tell its [`MockIo`], and what it tells them.
#[derive(Default)]
struct ConnCtl {
    /// Completed flushes: hyper flushes the socket only once its write buffer is empty, so every byte
    /// hyper had before the n-th flush is on the wire after it.
    flushes: AtomicU64,
    /// A body waiting for the next flush.
    flush_waker: Mutex<Option<Waker>>,
    /// Bytes to send in place of hyper's next response (see [`Behavior::Trailers`]).
    raw_response: Mutex<Option<Vec<u8>>>,
    /// The buffer request bodies are read into, kept between requests.
    body_buf: Mutex<Vec<u8>>,
}

/// Where [`MockIo`] is with a raw response.
enum Raw {
    Idle,
    /// Dropping hyper's response head; `matched` bytes of its closing `\r\n\r\n` seen so far.
    Swallow {
        matched: usize,
        bytes: Vec<u8>,
    },
    /// Writing the raw response in its place.
    Write {
        bytes: Vec<u8>,
        pos: usize,
    },
}

/// A connection's socket as hyper sees it: the TCP stream, plus the two faults a library does not make.
///
/// * Raw response ([`Behavior::Trailers`]): hyper's HTTP/1 server writes trailer fields only when the
///   request said `TE: trailers`, and Envoy's upstream codec does not say it, so a trailer must be
///   written raw. The handler answers hyper with an empty `content-length: 0` response and arms
///   `ConnCtl::raw_response`; this drops that response's head (up to its blank line: header lines
///   hold no CRLF) and writes the raw bytes in its place. Hyper then goes on with the connection
///   (keep-alive) as after any complete response. (Clients that pipeline requests could have a
///   previous response still buffered here; Envoy does not pipeline.)
/// * Flush count ([`Behavior::Cut`] with `reset`): hyper closes the connection without the terminating
///   chunk when a response body fails, but it fails the connection at once, dropping what it has
///   buffered; the body waits for the next flush first (see [`Events`]).
struct MockIo {
    tcp: TcpStream,
    ctl: Arc<ConnCtl>,
    raw: Raw,
}

impl MockIo {
    /// Writes what is left of a raw response; ready once nothing is.
    fn poll_raw(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Raw::Write { bytes, pos } = &mut self.raw {
            while *pos < bytes.len() {
                let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &bytes[*pos..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *pos += n;
            }
            self.raw = Raw::Idle;
        }
        Poll::Ready(Ok(()))
    }

    /// Ready(Some(n)) when `buf` went to a raw response (n bytes of hyper's head dropped).
    fn swallow(&mut self, buf: &[u8]) -> Option<usize> {
        if matches!(self.raw, Raw::Idle) {
            let bytes = lock(&self.ctl.raw_response).take()?;
            self.raw = Raw::Swallow { matched: 0, bytes };
        }
        let Raw::Swallow { matched, bytes } = &mut self.raw else {
            return None;
        };
        const END: &[u8] = b"\r\n\r\n";
        for (i, &b) in buf.iter().enumerate() {
            *matched = if b == END[*matched] { *matched + 1 } else { usize::from(b == b'\r') };
            if *matched == END.len() {
                self.raw = Raw::Write { bytes: std::mem::take(bytes), pos: 0 };
                return Some(i + 1);
            }
        }
        Some(buf.len())
    }
}

impl AsyncRead for MockIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for MockIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_raw(cx))?;
        if let Some(n) = this.swallow(buf) {
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut this.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_raw(cx))?;
        let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| &b[..]);
        if let Some(n) = this.swallow(first) {
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_raw(cx))?;
        ready!(Pin::new(&mut this.tcp).poll_flush(cx))?;
        this.ctl.flushes.fetch_add(1, Ordering::SeqCst);
        if let Some(w) = lock(&this.ctl.flush_waker).take() {
            w.wake();
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_raw(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

/// A response body: all at once, SSE events as a stream produces them, or either one byte at a time.
enum MockBody {
    Full(Option<Bytes>),
    Events(Events),
    Trickle(Trickle),
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            MockBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            MockBody::Events(e) => e.poll_frame(cx),
            MockBody::Trickle(t) => t.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, MockBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            MockBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            // Chunked: hyper writes each byte as it comes.
            MockBody::Events(_) | MockBody::Trickle(_) => SizeHint::default(),
        }
    }
}

/// The body of [`Behavior::Trickle`]: another body's bytes, one per frame, `interval` apart (the first at
/// once).
struct Trickle {
    inner: Box<MockBody>,
    /// Bytes of the inner body's last frame not sent yet.
    pending: Bytes,
    interval: Duration,
    /// The pause before the next byte (none before the first).
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Trickle {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        loop {
            if !self.pending.is_empty() {
                if let Some(pause) = self.pause.as_mut() {
                    ready!(pause.as_mut().poll(cx));
                }
                let byte = self.pending.split_to(1);
                self.pause = Some(Box::pin(tokio::time::sleep(self.interval)));
                return Poll::Ready(Some(Ok(Frame::data(byte))));
            }
            match ready!(Pin::new(&mut *self.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.pending = data,
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                other => return Poll::Ready(other),
            }
        }
    }
}

/// What a stream's producer sends its body.
enum Item {
    Event(Bytes),
    /// Close the connection here, without ending the response.
    Reset,
}

/// The body of an SSE response: the events its producer task sends, in order.
struct Events {
    rx: mpsc::Receiver<Item>,
    ctl: Arc<ConnCtl>,
    /// Set at a reset: the flush count then. The connection fails only after a later flush, so every
    /// event before the cut reaches the client.
    reset_after: Option<u64>,
}

impl Events {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.reset_after.is_none() {
            match ready!(self.rx.poll_recv(cx)) {
                Some(Item::Event(b)) => return Poll::Ready(Some(Ok(Frame::data(b)))),
                None => return Poll::Ready(None),
                Some(Item::Reset) => self.reset_after = Some(self.ctl.flushes.load(Ordering::SeqCst)),
            }
        }
        let after = self.reset_after.unwrap_or(0);
        *lock(&self.ctl.flush_waker) = Some(cx.waker().clone());
        if self.ctl.flushes.load(Ordering::SeqCst) > after {
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "mock: stream reset",
            ))));
        }
        Poll::Pending
    }
}

fn response(code: u16, headers: &[(String, String)], body: impl Into<Bytes>) -> Response<MockBody> {
    let mut resp = Response::new(MockBody::Full(Some(body.into())));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    for (n, v) in headers {
        let skip = ["content-length", "connection", "transfer-encoding"];
        if skip.iter().any(|s| n.eq_ignore_ascii_case(s)) {
            continue;
        }
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(n.as_bytes()), HeaderValue::from_str(v)) {
            h.append(n, v);
        }
    }
    if !h.contains_key(CONTENT_TYPE) {
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    resp
}

fn error_json(message: &str, kind: &str) -> String {
    serde_json::json!({"error": {"message": message, "type": kind}}).to_string()
}

fn unix_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A JSON string literal.
fn js(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// The request as the handlers need it: head and whole body.
struct Req {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    fn accepts_gzip(&self) -> bool {
        self.headers
            .iter()
            .any(|(n, v)| n == "accept-encoding" && v.split(',').any(|e| e.trim().starts_with("gzip")))
    }
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    ctl: Arc<ConnCtl>,
) -> Result<Response<MockBody>, Infallible> {
    if req.method() == Method::GET {
        return Ok(response(200, &[], &br#"{"ok":true}"#[..]));
    }
    if req.method() != Method::POST {
        let body = error_json(&format!("method {} not allowed", req.method()), "invalid_request_error");
        return Ok(response(405, &[("allow".into(), "GET, POST".into())], body));
    }
    let (head, mut body) = req.into_parts();
    // Into the connection's buffer, reused from request to request: a fresh megabyte per request cost
    // page faults under the benchmark.
    let mut buf = std::mem::take(&mut *lock(&ctl.body_buf));
    buf.clear();
    if let Err(why) = read_body(&mut body, &mut buf).await {
        let body = error_json(&format!("malformed request: {why}"), "invalid_request_error");
        // The request's framing is broken: the connection cannot be read on.
        let mut resp = response(400, &[], body);
        resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        return Ok(resp);
    }
    let req = Req {
        method: head.method.to_string(),
        target: head.uri.to_string(),
        headers: head
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body: buf,
    };
    let resp = answer(&req, &shared, &ctl).await;
    if req.body.capacity() <= MAX_KEPT_BODY {
        *lock(&ctl.body_buf) = req.body;
    }
    Ok(resp)
}

/// Appends the request body to `buf`; `Err` says why it could not be read.
async fn read_body(body: &mut Incoming, buf: &mut Vec<u8>) -> Result<(), String> {
    let hint = body.size_hint().lower().min(MAX_BODY as u64) as usize;
    buf.reserve(hint);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            let top: &(dyn std::error::Error + 'static) = &e;
            std::iter::successors(Some(top), |e| e.source()).last().map_or(String::new(), |e| e.to_string())
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > MAX_BODY {
                return Err("body too large".to_string());
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(())
}

/// The API a completion request speaks, by its path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Api {
    OpenAi,
    Anthropic,
    /// The model is the path's; `stream` for `:streamGenerateContent`, `sse` when the query has
    /// `alt=sse`.
    Gemini {
        model: String,
        stream: bool,
        sse: bool,
    },
}

impl Api {
    /// The API of a completion request to `target` (path and query), `None` for any other path.
    fn of(target: &str) -> Option<Api> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        if path.ends_with("/chat/completions") {
            return Some(Api::OpenAi);
        }
        if path.ends_with("/v1/messages") {
            return Some(Api::Anthropic);
        }
        let (_, call) = path.rsplit_once("/models/")?;
        let (model, method) = call.rsplit_once(':')?;
        let stream = match method {
            "generateContent" => false,
            "streamGenerateContent" => true,
            _ => return None,
        };
        if model.is_empty() || model.contains('/') {
            return None;
        }
        let sse = query.split('&').any(|p| p == "alt=sse");
        Some(Api::Gemini { model: model.to_string(), stream, sse })
    }

    /// An error body in this API's shape (`openai_kind` is the OpenAI error's `type`).
    fn error_body(&self, code: u16, message: &str, openai_kind: &str) -> String {
        match self {
            Api::OpenAi => error_json(message, openai_kind),
            Api::Anthropic => anthropic::error_body(code, message),
            Api::Gemini { .. } => gemini::error_body(code, message),
        }
    }

    /// The event [`Behavior::StreamError`] ends a stream with.
    fn stream_error(&self) -> &'static str {
        match self {
            Api::OpenAi => "data: {\"error\":{\"message\":\"Overloaded\",\"code\":502}}\n\n",
            Api::Anthropic => anthropic::STREAM_ERROR,
            Api::Gemini { .. } => gemini::STREAM_ERROR,
        }
    }
}

/// How a stream ends (non-streamed answers are whole whatever this says).
#[derive(Clone, Copy, Debug)]
enum End {
    /// All its events.
    Whole,
    /// See [`Behavior::Cut`].
    Cut { after: usize, reset: bool },
    /// See [`Behavior::StreamError`].
    Error { after: usize },
}

/// The answer to a POST, by the current behaviour.
async fn answer(req: &Req, shared: &Arc<Shared>, ctl: &Arc<ConnCtl>) -> Response<MockBody> {
    let path = req.target.split('?').next().unwrap_or("");
    let api = Api::of(&req.target);
    let known = api.is_some();
    if known {
        shared.received.fetch_add(1, Ordering::Relaxed);
    }
    if known && shared.record.load(Ordering::Relaxed) {
        lock(&shared.requests).push(Recorded {
            method: req.method.clone(),
            path: req.target.clone(),
            headers: req.headers.clone(),
            body: req.body.clone(),
        });
    }
    // Other paths, under the behaviours that answer them, get an OpenAI completion.
    let api = api.unwrap_or(Api::OpenAi);
    let behavior = lock(&shared.behavior).clone();
    match behavior {
        Behavior::Status { code, headers, body } => response(code, &headers, body),
        Behavior::Ok if !known => {
            response(404, &[], error_json(&format!("no route for {path}"), "not_found"))
        }
        Behavior::Ok => complete(req, shared, ctl, &api, End::Whole),
        Behavior::Trailers => complete_with_trailer(req, shared, ctl, &api),
        Behavior::TrailersOnly { code } => raw_with_trailer(req, ctl, code, ""),
        Behavior::Cut { after_events, reset } => {
            complete(req, shared, ctl, &api, End::Cut { after: after_events, reset })
        }
        Behavior::StreamError { after_events } => {
            complete(req, shared, ctl, &api, End::Error { after: after_events })
        }
        Behavior::Delay { ms } => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            complete(req, shared, ctl, &api, End::Whole)
        }
        Behavior::Flaky { percent, code } if known => {
            let p = u64::from(percent.min(100));
            let n = shared.flaky_seq.fetch_add(1, Ordering::Relaxed) + 1;
            if n * p / 100 > (n - 1) * p / 100 {
                let message = format!("mock: flaky failure (status {code})");
                response(code, &[], api.error_body(code, &message, "server_error"))
            } else {
                complete(req, shared, ctl, &api, End::Whole)
            }
        }
        Behavior::Flaky { .. } => complete(req, shared, ctl, &api, End::Whole),
        Behavior::Trickle { interval_ms } => {
            let (head, body) = complete(req, shared, ctl, &api, End::Whole).into_parts();
            let trickle = Trickle {
                inner: Box::new(body),
                pending: Bytes::new(),
                interval: Duration::from_millis(interval_ms),
                pause: None,
            };
            Response::from_parts(head, MockBody::Trickle(trickle))
        }
    }
}

/// See [`Behavior::Trailers`] and [`MockIo`]: the response goes on the wire raw, hyper's is dropped.
/// A native request gets its API's whole answer (a stream request too).
fn complete_with_trailer(req: &Req, shared: &Shared, ctl: &ConnCtl, api: &Api) -> Response<MockBody> {
    if *api != Api::OpenAi {
        let ask = match Ask::parse(req, shared, api) {
            Ok(ask) => Ask { stream: false, ..ask },
            Err(body) => return response(400, &[], body),
        };
        let (_, body) = native_answer(&ask, api);
        return raw_with_trailer(req, ctl, 200, &body.concat());
    }
    let content = js(&format!("Hello from {}", shared.name));
    let body = format!(
        r#"{{"id":"chatcmpl-trailer","object":"chat.completion","created":{},"model":"native","choices":[{{"index":0,"message":{{"role":"assistant","content":{content}}},"finish_reason":"stop"}}],"usage":{USAGE_JSON}}}"#,
        unix_secs()
    );
    raw_with_trailer(req, ctl, 200, &body)
}

/// A chunked response with this status and body (no data chunk when it is empty) ended by the trailer
/// `x-mock-trailer: done`, armed to replace hyper's (see [`MockIo`]).
fn raw_with_trailer(req: &Req, ctl: &ConnCtl, code: u16, body: &str) -> Response<MockBody> {
    let close =
        req.headers.iter().any(|(n, v)| n == "connection" && v.to_ascii_lowercase().contains("close"));
    let reason = hyper::StatusCode::from_u16(code).ok().and_then(|c| c.canonical_reason()).unwrap_or("Mock");
    let mut raw = format!(
        "HTTP/1.1 {code} {reason}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\
         trailer: x-mock-trailer\r\nx-mock-secret: internal\r\n",
    );
    if close {
        raw.push_str("connection: close\r\n");
    }
    raw.push_str("\r\n");
    if !body.is_empty() {
        raw.push_str(&format!("{:x}\r\n{body}\r\n", body.len()));
    }
    raw.push_str("0\r\nx-mock-trailer: done\r\n\r\n");
    *lock(&ctl.raw_response) = Some(raw.into_bytes());
    // What hyper writes for this is dropped; an empty body keeps its framing in step with the raw one.
    response(200, &[], Bytes::new())
}

/// What the answer builders know of a request.
struct Ask {
    /// The answer's number (for its ids), counting from 1 across the mock's answers.
    n: u64,
    /// The request's model (Gemini: the path's), "unknown" if it has none.
    model: String,
    stream: bool,
    /// The request's `tools`, native APIs only.
    tools: Option<serde_json::Value>,
    /// The text, in the chunks a stream sends it in.
    deltas: Vec<String>,
    /// See [`MockProvider::set_native_usage`].
    cache_read: u64,
    cache_write: u64,
}

impl Ask {
    /// The request's body read for `api`, or the body of the 400 answer to one that is not JSON.
    fn parse(req: &Req, shared: &Shared, api: &Api) -> Result<Ask, String> {
        // Only the fields the answer depends on: the rest is validated but never built (a 1 MB
        // conversation parsed into a `Value` made the mock slower than Envoy under the benchmark).
        #[derive(serde::Deserialize)]
        struct Head<'a> {
            #[serde(borrow, default)]
            model: Option<std::borrow::Cow<'a, str>>,
            #[serde(default)]
            stream: Option<serde_json::Value>,
            #[serde(borrow, default)]
            tools: Option<&'a serde_json::value::RawValue>,
        }
        let native = *api != Api::OpenAi;
        let (model, stream, tools) = match serde_json::from_slice::<Head>(&req.body) {
            Ok(h) => (
                h.model.map(|m| m.into_owned()),
                h.stream,
                h.tools.filter(|_| native).and_then(|t| serde_json::from_str(t.get()).ok()),
            ),
            // Not an object, a duplicate key, `model` not a string: what the full parse makes of it.
            Err(_) => match serde_json::from_slice::<serde_json::Value>(&req.body) {
                Ok(json) => (
                    json.get("model").and_then(|m| m.as_str()).map(str::to_string),
                    json.get("stream").cloned(),
                    json.get("tools").filter(|_| native).cloned(),
                ),
                Err(_) => {
                    return Err(api.error_body(
                        400,
                        "request body is not valid JSON",
                        "invalid_request_error",
                    ));
                }
            },
        };
        let (model, stream) = match api {
            Api::Gemini { model, stream, .. } => (model.clone(), *stream),
            _ => (
                model.unwrap_or_else(|| "unknown".to_string()),
                stream.as_ref().and_then(|s| s.as_bool()) == Some(true),
            ),
        };
        Ok(Ask {
            n: shared.next_id.fetch_add(1, Ordering::Relaxed),
            model,
            stream,
            tools,
            deltas: text_deltas(shared),
            cache_read: shared.cache_read.load(Ordering::Relaxed),
            cache_write: shared.cache_write.load(Ordering::Relaxed),
        })
    }

    /// The text of a whole answer: the deltas' concatenation.
    fn text(&self) -> String {
        self.deltas.concat()
    }
}

/// A stream's text chunks: "Hello ", "from ", the mock's name; or those of `set_stream_shape`.
fn text_deltas(shared: &Shared) -> Vec<String> {
    match shared.stream_chunks.load(Ordering::Relaxed) as usize {
        0 => vec!["Hello ".to_string(), "from ".to_string(), shared.name.clone()],
        chunks => (0..chunks).map(|i| format!("token{i} ")).collect(),
    }
}

/// A native API's answer: its extra headers, and the whole body (one part) or the stream's events.
fn native_answer(ask: &Ask, api: &Api) -> (Vec<(String, String)>, Vec<String>) {
    match api {
        Api::Anthropic => anthropic::answer(ask),
        _ => (Vec::new(), gemini::answer(ask)),
    }
}

/// A completion in the path's API: JSON (gzip when accepted), or an SSE stream ended as `end` says.
fn complete(req: &Req, shared: &Arc<Shared>, ctl: &Arc<ConnCtl>, api: &Api, end: End) -> Response<MockBody> {
    let ask = match Ask::parse(req, shared, api) {
        Ok(ask) => ask,
        Err(body) => return response(400, &[], body),
    };
    if let Api::Gemini { stream: true, sse: false, .. } = api {
        let message = "mock: streamGenerateContent is served as SSE only (add ?alt=sse)";
        return response(400, &[], api.error_body(400, message, ""));
    }
    let mut headers = match api {
        Api::OpenAi => vec![("x-ratelimit-remaining-requests".to_string(), "99".to_string())],
        _ => Vec::new(),
    };
    headers.push(("x-mock-secret".to_string(), "internal".to_string()));
    let events = if *api == Api::OpenAi {
        openai_answer(&ask, shared)
    } else {
        let (extra, events) = native_answer(&ask, api);
        headers.extend(extra);
        events
    };
    if !ask.stream {
        let body = events.concat();
        // Like real providers, compress when the client allows it (usage then hides inside gzip).
        if req.accepts_gzip() {
            headers.push(("content-encoding".to_string(), "gzip".to_string()));
            return response(200, &headers, gzip(body.as_bytes()));
        }
        return response(200, &headers, body);
    }
    let mut events = events;
    let cut = match end {
        End::Whole => None,
        End::Cut { after, reset } => Some((after, reset)),
        End::Error { after } => {
            events.truncate(after);
            events.push(api.stream_error().to_string());
            None
        }
    };
    let delay = Duration::from_micros(shared.chunk_delay_us.load(Ordering::Relaxed));
    // Decided before event 1 is sent, so a release that follows the client reading event 1 is never
    // missed, and the stream counts as held by then.
    let hold = HeldStream::start(shared);
    let steps = plan(events, cut, hold);
    let (tx, rx) = mpsc::channel(1);
    if delay.is_zero() || delay >= PRECISE_PAUSE {
        tokio::spawn(produce(steps, tx, delay));
    } else {
        let rt = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || produce_paced(steps, tx, delay, rt));
    }
    headers.push(("content-type".to_string(), "text/event-stream".to_string()));
    headers.push(("cache-control".to_string(), "no-cache".to_string()));
    let mut resp = response(200, &headers, Bytes::new());
    *resp.body_mut() = MockBody::Events(Events { rx, ctl: Arc::clone(ctl), reset_after: None });
    resp
}

/// An OpenAI chat completion: the whole body (one part), or the stream's events.
fn openai_answer(ask: &Ask, shared: &Shared) -> Vec<String> {
    let id = js(&format!("chatcmpl-mock-{}", ask.n));
    let created = unix_secs();
    let model = js(&ask.model);
    if !ask.stream {
        let content = js(&format!("Hello from {}", shared.name));
        return vec![format!(
            r#"{{"id":{id},"object":"chat.completion","created":{created},"model":{model},"system_fingerprint":null,"choices":[{{"index":0,"message":{{"role":"assistant","content":{content}}},"finish_reason":"stop"}}],"usage":{USAGE_JSON}}}"#
        )];
    }
    let chunk = |delta: &str, finish: &str| {
        format!(
            r#"data: {{"id":{id},"object":"chat.completion.chunk","created":{created},"model":{model},"choices":[{{"index":0,"delta":{{"content":{}}},"finish_reason":{finish}}}]}}"#,
            js(delta)
        ) + "\n\n"
    };
    let last = ask.deltas.len().saturating_sub(1);
    let mut events: Vec<String> = ask
        .deltas
        .iter()
        .enumerate()
        .map(|(i, d)| chunk(d, if i == last { r#""stop""# } else { "null" }))
        .collect();
    events.extend([
        format!(
            r#"data: {{"id":{id},"object":"chat.completion.chunk","created":{created},"model":{model},"choices":[],"usage":{USAGE_JSON}}}"#
        ) + "\n\n",
        "data: [DONE]\n\n".to_string(),
    ]);
    events
}

/// What a stream's producer does, in order.
enum Step {
    /// Wait for the release of a held stream.
    Hold(HeldStream),
    /// The pause before an event.
    Pause,
    Send(Item),
}

/// The steps of a stream: a pause before each event, the hold before the 2nd, the cut.
fn plan(events: Vec<String>, cut: Option<(usize, bool)>, hold: Option<HeldStream>) -> Vec<Step> {
    let mut hold = hold;
    let mut steps = Vec::with_capacity(2 * events.len() + 1);
    for (i, ev) in events.into_iter().enumerate() {
        match cut {
            Some((after, false)) if i == after => break,
            Some((after, true)) if i == after => {
                steps.push(Step::Send(Item::Reset));
                break;
            }
            _ => {}
        }
        if i == 1 {
            steps.extend(hold.take().map(Step::Hold));
        }
        steps.push(Step::Pause);
        steps.push(Step::Send(Item::Event(Bytes::from(ev))));
    }
    steps
}

/// Runs a stream's steps on the runtime (`delay` zero, or long enough for tokio's millisecond timer).
async fn produce(steps: Vec<Step>, tx: mpsc::Sender<Item>, delay: Duration) {
    for step in steps {
        match step {
            Step::Hold(h) => h.wait().await,
            Step::Pause if delay.is_zero() => {}
            Step::Pause => tokio::time::sleep(delay).await,
            Step::Send(item) => {
                if tx.send(item).await.is_err() {
                    return; // The client went away.
                }
            }
        }
    }
}

/// Runs a stream's steps on a thread of the blocking pool, for short pauses: tokio's timer ticks in whole
/// milliseconds, and the benchmark's fast mock pauses 0.2 ms before each event. (Stopping the mock wakes
/// a hold, and closes the body a send waits for.)
fn produce_paced(steps: Vec<Step>, tx: mpsc::Sender<Item>, delay: Duration, rt: tokio::runtime::Handle) {
    for step in steps {
        match step {
            Step::Hold(h) => rt.block_on(h.wait()),
            Step::Pause => std::thread::sleep(delay),
            Step::Send(item) => {
                if tx.blocking_send(item).is_err() {
                    return;
                }
            }
        }
    }
}

/// A stream that started while streams are held: counted in [`MockProvider::held`] until released or
/// dropped (its connection gone, or the mock stopped).
struct HeldStream {
    shared: Arc<Shared>,
    gen: u64,
}

impl HeldStream {
    fn start(shared: &Arc<Shared>) -> Option<HeldStream> {
        let hold = *shared.hold.borrow();
        if !hold.on {
            return None;
        }
        shared.held.fetch_add(1, Ordering::SeqCst);
        Some(HeldStream { shared: Arc::clone(shared), gen: hold.release_gen })
    }

    /// Until `release_stream()` or `hold_streams(false)`.
    async fn wait(self) {
        let mut rx = self.shared.hold.subscribe();
        let gen = self.gen;
        let _ = rx.wait_for(|h| !h.on || h.release_gen != gen || h.stopped).await;
    }
}

impl Drop for HeldStream {
    fn drop(&mut self) {
        self.shared.held.fetch_sub(1, Ordering::SeqCst);
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc =
        flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 2 + 32), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}
