//! A mock OpenAI-compatible LLM provider for tests and local demos (std-only).
//!
//! One thread accepts connections on 127.0.0.1; each connection gets its own
//! thread and is served as HTTP/1.1 with keep-alive (Envoy pools upstream
//! connections and sends many requests on each). Request bodies may be sent
//! with `content-length` or `transfer-encoding: chunked`.
//!
//! * `POST .../chat/completions` is recorded (see [`MockProvider::requests`]) and
//!   answered according to the current [`Behavior`].
//! * Other `POST`s are answered 404 under [`Behavior::Ok`], or with the
//!   configured status under [`Behavior::Status`].
//! * `GET` of any path answers 200 `{"ok":true}` (whatever the behaviour, so
//!   health checks keep working).
//! * Other methods answer 405; a malformed request gets 400 and the connection
//!   is closed.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest request line or header line accepted.
const MAX_LINE: u64 = 64 * 1024;
/// Most header lines accepted in one request.
const MAX_HEADERS: usize = 200;
/// Largest request body accepted.
const MAX_BODY: u64 = 64 * 1024 * 1024;
/// A held stream resumes on its own after this long.
const HOLD_TIMEOUT: Duration = Duration::from_secs(30);

/// The usage block every completion reports.
const USAGE_JSON: &str = r#"{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}"#;

/// One request received on a `.../chat/completions` path.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// The request target as sent (path and query).
    pub path: String,
    /// Header names lowercased, in the order received.
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
    /// 200 completion (JSON, or SSE when the request body has "stream": true).
    Ok,
    /// Reply with this status, extra headers and body (e.g. 503, 429 + retry-after) to every request.
    /// (`GET` health probes still answer 200.) `content-type: application/json` is added unless
    /// `headers` has a content-type.
    Status { code: u16, headers: Vec<(String, String)>, body: String },
    /// Wait this long before answering as `Ok` (for per-attempt timeouts).
    Delay { ms: u64 },
    /// Streams stop after this many events without `data: [DONE]`: ending the response cleanly, or with
    /// `reset`, closing the connection mid-response. Non-streamed requests answer as `Ok`.
    Cut { after_events: usize, reset: bool },
    /// A non-streamed completion sent chunked and ended by a trailer (`x-mock-trailer: done`), as HTTP/2
    /// providers may end theirs (Envoy passes HTTP/1 trailers on with `enable_trailers`).
    Trailers,
}

struct HoldState {
    /// Streams that start while this is set pause after their first event.
    hold: bool,
    /// Bumped by `release_stream`; a held stream waits for a change.
    release_gen: u64,
    /// Streams currently paused.
    held: usize,
}

struct Shared {
    name: String,
    behavior: Mutex<Behavior>,
    requests: Mutex<Vec<Recorded>>,
    hold: Mutex<HoldState>,
    hold_cv: Condvar,
    stopped: AtomicBool,
    next_id: AtomicU64,
    next_conn: AtomicU64,
    /// Chat requests are kept for [`MockProvider::requests`] while this is set (the default).
    record: AtomicBool,
    /// Content events per SSE stream; 0 = the default stream ("Hello ", "from ", name).
    stream_chunks: AtomicU64,
    /// Pause before each SSE event, in microseconds (0 = none).
    chunk_delay_us: AtomicU64,
    /// Open connections (clones), so `stop` can shut them down.
    conns: Mutex<HashMap<u64, TcpStream>>,
}

/// Lock, ignoring poisoning (a panicking test thread must not wedge the mock).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running mock provider. Dropping it (or [`MockProvider::stop`]) stops it.
pub struct MockProvider {
    shared: Arc<Shared>,
    port: u16,
    accept: Option<JoinHandle<()>>,
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
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            name: name.to_string(),
            behavior: Mutex::new(Behavior::Ok),
            requests: Mutex::new(Vec::new()),
            hold: Mutex::new(HoldState { hold: false, release_gen: 0, held: 0 }),
            hold_cv: Condvar::new(),
            stopped: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            next_conn: AtomicU64::new(1),
            record: AtomicBool::new(true),
            stream_chunks: AtomicU64::new(0),
            chunk_delay_us: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
        });
        let sh = Arc::clone(&shared);
        let accept = thread::Builder::new()
            .name(format!("mock-{name}-accept"))
            .spawn(move || accept_loop(listener, sh))?;
        Ok(MockProvider { shared, port, accept: Some(accept) })
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

    /// Every chat request received, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.requests).clone()
    }

    /// Keep recording chat requests (the default) or not (a long-running mock, e.g. under load).
    pub fn set_recording(&self, on: bool) {
        self.shared.record.store(on, Ordering::Relaxed);
        if !on {
            self.clear();
        }
    }

    /// Shape of SSE streams: `chunks` content events (0 = the default "Hello ", "from ", name), each
    /// event (usage and `[DONE]` included) preceded by a pause of `delay`.
    pub fn set_stream_shape(&self, chunks: usize, delay: Duration) {
        self.shared.stream_chunks.store(chunks as u64, Ordering::Relaxed);
        self.shared.chunk_delay_us.store(delay.as_micros() as u64, Ordering::Relaxed);
    }

    /// Forget the recorded requests.
    pub fn clear(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Make the next streams pause before sending their 2nd SSE event until
    /// `release_stream()` is called. `hold_streams(false)` also lets any paused
    /// stream continue.
    pub fn hold_streams(&self, hold: bool) {
        let mut st = lock(&self.shared.hold);
        st.hold = hold;
        self.shared.hold_cv.notify_all();
    }

    /// Let every stream currently paused (or about to pause) continue.
    /// Streams that start afterwards still pause while `hold_streams(true)`.
    pub fn release_stream(&self) {
        let mut st = lock(&self.shared.hold);
        st.release_gen += 1;
        self.shared.hold_cv.notify_all();
    }

    /// How many streams are paused right now (after their 1st event).
    pub fn held(&self) -> usize {
        lock(&self.shared.hold).held
    }

    /// Stop accepting (connections are refused afterwards) and close open connections.
    pub fn stop(self) {
        drop(self)
    }

    fn shutdown(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.shared.stopped.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag and drops the listener.
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(2));
        let _ = accept.join();
        for (_, c) in lock(&self.shared.conns).drain() {
            let _ = c.shutdown(Shutdown::Both);
        }
        // Held streams: let them go (their writes will fail).
        let _st = lock(&self.shared.hold);
        self.shared.hold_cv.notify_all();
    }
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let conn = listener.accept();
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        match conn {
            Ok((stream, _)) => {
                let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
                if let Ok(clone) = stream.try_clone() {
                    lock(&shared.conns).insert(id, clone);
                }
                let sh = Arc::clone(&shared);
                let spawned =
                    thread::Builder::new().name(format!("mock-{}-conn{id}", shared.name)).spawn(move || {
                        serve_connection(stream, &sh);
                        lock(&sh.conns).remove(&id);
                    });
                if spawned.is_err() {
                    lock(&shared.conns).remove(&id);
                }
            }
            // E.g. too many open files: back off a little.
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// A parsed request.
struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    keep_alive: bool,
}

enum ReadError {
    /// Peer closed (or I/O failed): just drop the connection.
    Closed,
    /// Not HTTP/1.x we understand: answer 400 and close.
    Malformed(String),
}

impl From<io::Error> for ReadError {
    fn from(_: io::Error) -> Self {
        ReadError::Closed
    }
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut out = write_half;
    let mut reader = BufReader::new(stream);
    loop {
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let req = match read_request(&mut reader, &mut out) {
            Ok(Some(r)) => r,
            Ok(None) | Err(ReadError::Closed) => return,
            Err(ReadError::Malformed(why)) => {
                let body = error_json(&format!("malformed request: {why}"), "invalid_request_error");
                let _ = write_response(&mut out, 400, &[], body.as_bytes(), true);
                let _ = out.shutdown(Shutdown::Both);
                return;
            }
        };
        let keep_alive = req.keep_alive;
        if handle(&req, &mut out, shared).is_err() || !keep_alive {
            let _ = out.flush();
            let _ = out.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Read one line (up to and including `\n`); `Ok(None)` at a clean EOF.
fn read_line<R: BufRead>(r: &mut R) -> Result<Option<String>, ReadError> {
    let mut buf = Vec::new();
    let n = r.by_ref().take(MAX_LINE).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        if n as u64 >= MAX_LINE {
            return Err(ReadError::Malformed("line too long".into()));
        }
        // Peer closed mid-line.
        return Err(ReadError::Closed);
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf).map(Some).map_err(|_| ReadError::Malformed("line is not UTF-8".into()))
}

fn read_request<R: BufRead, W: Write>(r: &mut R, out: &mut W) -> Result<Option<Request>, ReadError> {
    // Request line (tolerate stray blank lines between requests).
    let line = loop {
        match read_line(r)? {
            None => return Ok(None),
            Some(l) if l.is_empty() => continue,
            Some(l) => break l,
        }
    };
    let mut parts = line.split(' ').filter(|p| !p.is_empty());
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Malformed(format!("bad request line {line:?}")));
    };
    if !version.starts_with("HTTP/1.") || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ReadError::Malformed(format!("bad request line {line:?}")));
    }
    if !target.starts_with('/') && target != "*" && !target.contains("://") {
        return Err(ReadError::Malformed(format!("bad request target {target:?}")));
    }
    let http10 = version == "HTTP/1.0";

    let mut headers = Vec::new();
    loop {
        let Some(line) = read_line(r)? else {
            return Err(ReadError::Closed);
        };
        if line.is_empty() {
            break;
        }
        if headers.len() >= MAX_HEADERS {
            return Err(ReadError::Malformed("too many headers".into()));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ReadError::Malformed(format!("bad header line {line:?}")));
        };
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(ReadError::Malformed(format!("bad header name {name:?}")));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }

    fn all<'a>(headers: &'a [(String, String)], name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        headers.iter().filter(move |(h, _)| h == name).map(|(_, v)| v.as_str())
    }
    let find = |n: &'static str| all(&headers, n);
    let chunked = find("transfer-encoding").any(|v| v.to_ascii_lowercase().contains("chunked"));
    let lengths: Vec<_> = find("content-length").map(|v| v.parse::<u64>()).collect();
    let length = match lengths.first() {
        None => None,
        Some(Ok(n)) => {
            if lengths.iter().any(|l| l.as_ref().ok() != Some(n)) {
                return Err(ReadError::Malformed("conflicting content-length".into()));
            }
            Some(*n)
        }
        Some(Err(_)) => return Err(ReadError::Malformed("bad content-length".into())),
    };
    let connection: Vec<String> = find("connection").map(|v| v.to_ascii_lowercase()).collect();
    let keep_alive = if http10 {
        connection.iter().any(|v| v.contains("keep-alive"))
    } else {
        !connection.iter().any(|v| v.contains("close"))
    };

    if find("expect").any(|v| v.eq_ignore_ascii_case("100-continue")) && !http10 {
        out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        out.flush()?;
    }

    let body = if chunked {
        read_chunked(r)?
    } else if let Some(n) = length {
        if n > MAX_BODY {
            return Err(ReadError::Malformed("body too large".into()));
        }
        let mut body = Vec::with_capacity(n as usize);
        r.by_ref().take(n).read_to_end(&mut body)?;
        if (body.len() as u64) < n {
            return Err(ReadError::Closed);
        }
        body
    } else {
        Vec::new()
    };

    Ok(Some(Request { method: method.to_string(), target: target.to_string(), headers, body, keep_alive }))
}

fn read_chunked<R: BufRead>(r: &mut R) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        let Some(line) = read_line(r)? else {
            return Err(ReadError::Closed);
        };
        let size_str = line.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size_str, 16)
            .map_err(|_| ReadError::Malformed(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // Trailers, up to a blank line.
            loop {
                match read_line(r)? {
                    None => return Err(ReadError::Closed),
                    Some(l) if l.is_empty() => return Ok(body),
                    Some(_) => {}
                }
            }
        }
        if body.len() as u64 + size > MAX_BODY {
            return Err(ReadError::Malformed("body too large".into()));
        }
        let before = body.len();
        r.by_ref().take(size).read_to_end(&mut body)?;
        if ((body.len() - before) as u64) < size {
            return Err(ReadError::Closed);
        }
        match read_line(r)? {
            Some(l) if l.is_empty() => {}
            Some(_) => return Err(ReadError::Malformed("chunk not followed by CRLF".into())),
            None => return Err(ReadError::Closed),
        }
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

fn write_response<W: Write>(
    out: &mut W,
    code: u16,
    headers: &[(String, String)],
    body: &[u8],
    close: bool,
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {code} {}\r\n", reason(code));
    let has = |n: &str| headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(n));
    if !has("content-type") {
        head.push_str("content-type: application/json\r\n");
    }
    for (n, v) in headers {
        if n.eq_ignore_ascii_case("content-length")
            || n.eq_ignore_ascii_case("connection")
            || n.eq_ignore_ascii_case("transfer-encoding")
        {
            continue;
        }
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\n", body.len()));
    if close {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut buf = head.into_bytes();
    buf.extend_from_slice(body);
    out.write_all(&buf)?;
    out.flush()
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

/// Answer one request. `Err` means the connection must be closed.
fn handle<W: Write>(req: &Request, out: &mut W, shared: &Shared) -> io::Result<()> {
    let path = req.target.split('?').next().unwrap_or("");
    match req.method.as_str() {
        "GET" => write_response(out, 200, &[], br#"{"ok":true}"#, !req.keep_alive),
        "POST" => {
            let is_chat = path.ends_with("/chat/completions");
            if is_chat && shared.record.load(Ordering::Relaxed) {
                lock(&shared.requests).push(Recorded {
                    method: req.method.clone(),
                    path: req.target.clone(),
                    headers: req.headers.clone(),
                    body: req.body.clone(),
                });
            }
            let behavior = lock(&shared.behavior).clone();
            match behavior {
                Behavior::Status { code, headers, body } => {
                    write_response(out, code, &headers, body.as_bytes(), !req.keep_alive)
                }
                Behavior::Ok if !is_chat => {
                    let body = error_json(&format!("no route for {path}"), "not_found");
                    write_response(out, 404, &[], body.as_bytes(), !req.keep_alive)
                }
                Behavior::Ok => complete(req, out, shared),
                Behavior::Trailers => complete_with_trailer(req, out, shared),
                Behavior::Cut { after_events, reset } => {
                    complete_cut(req, out, shared, Some((after_events, reset)))
                }
                Behavior::Delay { ms } => {
                    std::thread::sleep(std::time::Duration::from_millis(ms));
                    complete(req, out, shared)
                }
            }
        }
        _ => {
            let body = error_json(&format!("method {} not allowed", req.method), "invalid_request_error");
            let allow = vec![("allow".to_string(), "GET, POST".to_string())];
            write_response(out, 405, &allow, body.as_bytes(), !req.keep_alive)
        }
    }
}

/// See [`Behavior::Trailers`].
fn complete_with_trailer<W: Write>(req: &Request, out: &mut W, shared: &Shared) -> io::Result<()> {
    let content = js(&format!("Hello from {}", shared.name));
    let body = format!(
        r#"{{"id":"chatcmpl-trailer","object":"chat.completion","created":{},"model":"native","choices":[{{"index":0,"message":{{"role":"assistant","content":{content}}},"finish_reason":"stop"}}],"usage":{USAGE_JSON}}}"#,
        unix_secs()
    );
    let mut msg = String::from(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\
         trailer: x-mock-trailer\r\nx-mock-secret: internal\r\n",
    );
    if !req.keep_alive {
        msg.push_str("connection: close\r\n");
    }
    msg.push_str(&format!("\r\n{:x}\r\n{body}\r\n0\r\nx-mock-trailer: done\r\n\r\n", body.len()));
    out.write_all(msg.as_bytes())?;
    out.flush()
}

fn complete<W: Write>(req: &Request, out: &mut W, shared: &Shared) -> io::Result<()> {
    complete_cut(req, out, shared, None)
}

fn complete_cut<W: Write>(
    req: &Request,
    out: &mut W,
    shared: &Shared,
    cut: Option<(usize, bool)>,
) -> io::Result<()> {
    let close = !req.keep_alive;
    // Only the two fields the answer depends on: the rest is validated but never built (a 1 MB
    // conversation parsed into a `Value` made the mock slower than Envoy under the benchmark).
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(borrow, default)]
        model: Option<std::borrow::Cow<'a, str>>,
        #[serde(default)]
        stream: Option<serde_json::Value>,
    }
    let (model, stream) = match serde_json::from_slice::<Head>(&req.body) {
        Ok(h) => (h.model.map(|m| m.into_owned()), h.stream),
        // Not an object, a duplicate key, `model` not a string: what the full parse makes of it.
        Err(_) => match serde_json::from_slice::<serde_json::Value>(&req.body) {
            Ok(json) => {
                (json.get("model").and_then(|m| m.as_str()).map(str::to_string), json.get("stream").cloned())
            }
            Err(_) => {
                let body = error_json("request body is not valid JSON", "invalid_request_error");
                return write_response(out, 400, &[], body.as_bytes(), close);
            }
        },
    };
    let model = model.as_deref().unwrap_or("unknown");
    let stream = stream.as_ref().and_then(|s| s.as_bool()) == Some(true);
    let n = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let id = js(&format!("chatcmpl-mock-{n}"));
    let created = unix_secs();
    let model = js(model);
    let extra = [
        ("x-ratelimit-remaining-requests".to_string(), "99".to_string()),
        ("x-mock-secret".to_string(), "internal".to_string()),
    ];
    if !stream {
        let content = js(&format!("Hello from {}", shared.name));
        let body = format!(
            r#"{{"id":{id},"object":"chat.completion","created":{created},"model":{model},"system_fingerprint":null,"choices":[{{"index":0,"message":{{"role":"assistant","content":{content}}},"finish_reason":"stop"}}],"usage":{USAGE_JSON}}}"#
        );
        // Like real providers, compress when the client allows it (usage then hides inside gzip).
        let gzip_ok = req
            .headers
            .iter()
            .any(|(n, v)| n == "accept-encoding" && v.split(',').any(|e| e.trim().starts_with("gzip")));
        if gzip_ok {
            let mut headers = extra.to_vec();
            headers.push(("content-encoding".to_string(), "gzip".to_string()));
            return write_response(out, 200, &headers, &gzip_stored(body.as_bytes()), close);
        }
        return write_response(out, 200, &extra, body.as_bytes(), close);
    }

    let mut head = String::from("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n");
    for (n, v) in &extra {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if close {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    out.flush()?;

    let chunk = |delta: &str, finish: &str| {
        format!(
            r#"data: {{"id":{id},"object":"chat.completion.chunk","created":{created},"model":{model},"choices":[{{"index":0,"delta":{{"content":{}}},"finish_reason":{finish}}}]}}"#,
            js(delta)
        ) + "\n\n"
    };
    let chunks = shared.stream_chunks.load(Ordering::Relaxed) as usize;
    let mut events = if chunks == 0 {
        vec![chunk("Hello ", "null"), chunk("from ", "null"), chunk(&shared.name, r#""stop""#)]
    } else {
        (0..chunks)
            .map(|i| chunk(&format!("token{i} "), if i + 1 == chunks { r#""stop""# } else { "null" }))
            .collect()
    };
    events.extend([
        format!(
            r#"data: {{"id":{id},"object":"chat.completion.chunk","created":{created},"model":{model},"choices":[],"usage":{USAGE_JSON}}}"#
        ) + "\n\n",
        "data: [DONE]\n\n".to_string(),
    ]);
    let delay = Duration::from_micros(shared.chunk_delay_us.load(Ordering::Relaxed));

    // Decide before event 1 is written, so a release that follows the client
    // reading event 1 can never be missed.
    let hold_gen = {
        let st = lock(&shared.hold);
        st.hold.then_some(st.release_gen)
    };
    for (i, ev) in events.iter().enumerate() {
        match cut {
            Some((after, false)) if i == after => break,
            Some((after, true)) if i == after => {
                out.flush()?;
                return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "mock: stream reset"));
            }
            _ => {}
        }
        if i == 1 {
            if let Some(gen) = hold_gen {
                wait_release(shared, gen);
            }
        }
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        write_chunk(out, ev.as_bytes())?;
    }
    out.write_all(b"0\r\n\r\n")?;
    out.flush()
}

fn write_chunk<W: Write>(out: &mut W, data: &[u8]) -> io::Result<()> {
    let mut buf = format!("{:x}\r\n", data.len()).into_bytes();
    buf.extend_from_slice(data);
    buf.extend_from_slice(b"\r\n");
    out.write_all(&buf)?;
    out.flush()
}

fn wait_release(shared: &Shared, gen: u64) {
    let deadline = Instant::now() + HOLD_TIMEOUT;
    let mut st = lock(&shared.hold);
    st.held += 1;
    while st.hold && st.release_gen == gen && !shared.stopped.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        st = match shared.hold_cv.wait_timeout(st, deadline - now) {
            Ok((g, _)) => g,
            Err(e) => e.into_inner().0,
        };
    }
    st.held -= 1;
}

/// `data` as a gzip member of stored (uncompressed) deflate blocks: real gzip framing, no codec needed.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut chunks = data.chunks(0xffff).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        let last = u8::from(chunks.peek().is_none());
        let len = chunk.len() as u16;
        out.push(last);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    let mut crc: u32 = 0xffff_ffff;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    out.extend_from_slice(&(!crc).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn gzip_stored_is_real_gzip() {
        use std::io::Write as _;
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut child = std::process::Command::new("gzip")
            .arg("-dc")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&super::gzip_stored(&data)).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, data);
    }

    use super::*;

    fn parse(raw: &[u8]) -> Result<Option<Request>, ReadError> {
        let mut r = BufReader::new(raw);
        read_request(&mut r, &mut Vec::new())
    }

    #[test]
    fn parses_content_length_and_chunked() {
        let r = parse(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
            .ok()
            .flatten()
            .expect("parsed");
        assert_eq!(r.body, b"{}");
        assert_eq!(r.headers[0], ("host".to_string(), "x".to_string()));
        assert!(r.keep_alive);

        let r = parse(b"POST /x HTTP/1.1\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nx-t: 1\r\n\r\n")
            .ok()
            .flatten()
            .expect("parsed");
        assert_eq!(r.body, b"abcde");
        assert!(!r.keep_alive);
    }

    #[test]
    fn rejects_garbage() {
        for raw in [
            &b"hello\r\n\r\n"[..],
            b"GET / HTTP/2\r\n\r\n",
            b"POST / HTTP/1.1\r\ncontent-length: x\r\n\r\n",
            b"POST / HTTP/1.1\r\nno colon\r\n\r\n",
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        ] {
            assert!(matches!(parse(raw), Err(ReadError::Malformed(_))), "{raw:?}");
        }
        assert!(matches!(parse(b""), Ok(None)));
    }
}
