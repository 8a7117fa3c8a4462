//! A small blocking HTTP/1.1 client for tests (plain TCP to 127.0.0.1), on hyper's client connection.
//!
//! Each request gets its own connection, driven by a current-thread tokio runtime that lives as long as
//! the call (or the [`Stream`]): dropping a `Stream` closes its connection. Requests carry exactly the
//! headers given, plus `host`, `content-length` (for a body, or any POST-like method) and
//! `connection: close` unless given: no user-agent, accept or accept-encoding of the client's own, and
//! bodies come back as sent (a gzip body stays gzip).
//!
//! Bytes no client library sends (a chunked body ended by trailers, a malformed request, a connection
//! half-closed on purpose) are written by the tests themselves on a `TcpStream`.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::runtime::Runtime;

/// How long connecting, sending, or any single read may block.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    /// Names lowercased; each name where it first appeared, its values in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// All values of this header, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().filter(|(n, _)| *n == name).map(|(_, v)| v.as_str()).collect()
    }

    /// The body as JSON; panics with the status and body text if it isn't JSON.
    pub fn json(&self) -> serde_json::Value {
        match serde_json::from_slice(&self.body) {
            Ok(v) => v,
            Err(e) => {
                panic!("response body is not JSON ({e}); status {}, body: {:?}", self.status, self.text())
            }
        }
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let name = name.to_ascii_lowercase();
    headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
}

/// The headers as (lowercase name, value) pairs.
fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect()
}

fn runtime() -> Result<Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))
}

/// `fut`, or an error after `t`.
async fn within<T>(t: Duration, what: &str, fut: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(t, fut).await.map_err(|_| format!("{what}: no answer within {t:?}"))
}

/// Connects, sends the request and returns once the response head has arrived (each step within
/// `timeout`). The connection is driven by a task on the caller's (current-thread) runtime.
async fn send(
    timeout: Duration,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<hyper::Response<Incoming>, String> {
    let method = Method::from_bytes(method.as_bytes()).map_err(|e| format!("method {method:?}: {e}"))?;
    let mut req = Request::builder()
        .method(method.clone())
        .uri(path)
        .body(Full::new(Bytes::copy_from_slice(body)))
        .map_err(|e| format!("request {path:?}: {e}"))?;
    let h = req.headers_mut();
    for (n, v) in headers {
        let name = HeaderName::from_bytes(n.as_bytes()).map_err(|e| format!("header name {n:?}: {e}"))?;
        let value = HeaderValue::from_str(v).map_err(|e| format!("header {n}: {v:?}: {e}"))?;
        h.append(name, value);
    }
    if !h.contains_key("host") {
        h.insert(
            "host",
            HeaderValue::from_str(&format!("127.0.0.1:{port}"))
                .unwrap_or(HeaderValue::from_static("127.0.0.1")),
        );
    }
    let bodyless = matches!(method, Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS);
    if !h.contains_key("content-length")
        && !h.contains_key("transfer-encoding")
        && (!body.is_empty() || !bodyless)
    {
        h.insert("content-length", HeaderValue::from(body.len()));
    }
    if !h.contains_key("connection") {
        h.insert("connection", HeaderValue::from_static("close"));
    }

    let tcp = within(timeout, "connect", TcpStream::connect(("127.0.0.1", port)))
        .await?
        .map_err(|e| format!("connect to 127.0.0.1:{port}: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| format!("socket options: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    // Ends with the connection (the server closes it after `connection: close`, or the runtime goes).
    tokio::spawn(conn);
    within(timeout, "response head", sender.send_request(req))
        .await?
        .map_err(|e| format!("{e}{}", source_of(&e)))
}

/// The innermost cause of a hyper error, which says what went wrong (hyper's own text often doesn't).
fn source_of(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e.source();
    let mut last = None;
    while let Some(c) = cause {
        last = Some(c.to_string());
        cause = c.source();
    }
    last.map(|c| format!(": {c}")).unwrap_or_default()
}

/// The next body bytes: `Ok(None)` at the end of the body (trailers are skipped).
async fn next_data(body: &mut Incoming, t: Duration) -> Result<Option<Bytes>, String> {
    loop {
        match within(t, "reading body", body.frame()).await? {
            None => return Ok(None),
            Some(Err(e)) => return Err(format!("{e}{}", source_of(&e))),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// Like [`request`] but returns I/O and protocol failures as `Err`.
pub fn try_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, String> {
    runtime()?.block_on(async {
        let resp = send(READ_TIMEOUT, port, method, path, headers, body)
            .await
            .map_err(|e| format!("{method} {path} on port {port}: {e}"))?;
        let status = resp.status().as_u16();
        let headers = header_pairs(resp.headers());
        let mut incoming = resp.into_body();
        let mut body = Vec::new();
        while let Some(data) = next_data(&mut incoming, READ_TIMEOUT)
            .await
            .map_err(|e| format!("{method} {path} on port {port}: reading body: {e}"))?
        {
            body.extend_from_slice(&data);
        }
        Ok(Response { status, headers, body })
    })
}

/// Send one request on a fresh connection (`connection: close`) and read the
/// whole response. Panics with a clear message on any I/O failure.
pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    try_request(port, method, path, headers, body).unwrap_or_else(|e| panic!("HTTP request failed: {e}"))
}

/// A chunked `POST /v1/chat/completions` written by hand (the client above always sends
/// content-length), its body in 1000-byte chunks and its last chunk followed by `trailer` (e.g.
/// `x-client-trailer: 1\r\n`, or nothing). Returns the status and the whole response as text.
pub fn post_chunked_with_trailer(port: u16, key: &str, body: &[u8], trailer: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(READ_TIMEOUT)).expect("read timeout");
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).expect("write head");
    for chunk in body.chunks(1000) {
        s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).expect("write chunk");
        s.write_all(chunk).expect("write chunk");
        s.write_all(b"\r\n").expect("write chunk");
    }
    let _ = s.write_all(format!("0\r\n{trailer}\r\n").as_bytes());
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text)
}

/// POST a JSON body (content-type application/json; `authorization: Bearer <key>` when given).
pub fn post_json(port: u16, path: &str, key: Option<&str>, body: &serde_json::Value) -> Response {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    request(port, "POST", path, &headers, body.to_string().as_bytes())
}

/// A response whose body is read incrementally, one SSE event at a time.
pub struct Stream {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// `None` once the body has ended.
    body: Option<Incoming>,
    /// Decoded body bytes not yet returned as events.
    pending: Vec<u8>,
    read_timeout: Duration,
    /// Drives the connection while the body is read; dropped last, closing it.
    runtime: Runtime,
}

/// Send a request and return once the response head has arrived; the body is
/// then read with [`Stream::next_event`]. Panics on I/O failure.
pub fn open_stream(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Stream {
    open_stream_within(READ_TIMEOUT, port, method, path, headers, body)
}

/// [`open_stream`] where the response head, and then each read of the body, may take at most `timeout`
/// (e.g. [`crate::mock::FIRST_EVENT_TIMEOUT`] for a stream the mock holds).
pub fn open_stream_within(
    timeout: Duration,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Stream {
    let run = || -> Result<Stream, String> {
        let runtime = runtime()?;
        let resp = runtime.block_on(send(timeout, port, method, path, headers, body))?;
        Ok(Stream {
            status: resp.status().as_u16(),
            headers: header_pairs(resp.headers()),
            body: Some(resp.into_body()),
            pending: Vec::new(),
            read_timeout: timeout,
            runtime,
        })
    };
    run().unwrap_or_else(|e| panic!("open_stream {method} {path} on port {port}: {e}"))
}

/// Where the first blank line (`\n\n` or `\r\n\r\n`) ends: (event end, separator end).
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            let rest = &buf[i + 1..];
            if rest.first() == Some(&b'\n') {
                return Some((i, i + 2));
            }
            if rest.starts_with(b"\r\n") {
                return Some((i, i + 3));
            }
        }
        i += 1;
    }
    None
}

impl Stream {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Appends the next body bytes to `pending`; false at the end of the body. Panics on I/O failure or
    /// when no bytes come within the read timeout.
    fn read_more(&mut self) -> bool {
        let Some(body) = self.body.as_mut() else {
            return false;
        };
        match self.runtime.block_on(next_data(body, self.read_timeout)) {
            Ok(Some(data)) => {
                self.pending.extend_from_slice(&data);
                true
            }
            Ok(None) => {
                self.body = None;
                false
            }
            Err(e) => panic!("reading stream: {e}"),
        }
    }

    /// The next complete SSE event: its text up to (not including) the blank
    /// line that ends it, trailing `\r` trimmed, e.g. `data: {...}`. Returns as
    /// soon as that event has arrived (it does not wait for the end of the body).
    /// At the end of the body, any leftover non-blank text is returned as a last
    /// event, then `None`. Panics on I/O failure or a read timeout ([`READ_TIMEOUT`] unless
    /// [`open_stream_within`] or [`Stream::set_read_timeout`] say otherwise).
    pub fn next_event(&mut self) -> Option<String> {
        loop {
            if let Some((end, sep_end)) = find_event_end(&self.pending) {
                let ev: Vec<u8> = self.pending.drain(..sep_end).take(end).collect();
                let ev = String::from_utf8_lossy(&ev).trim_end_matches('\r').to_string();
                if ev.trim().is_empty() {
                    continue;
                }
                return Some(ev);
            }
            if !self.read_more() {
                let rest = String::from_utf8_lossy(&std::mem::take(&mut self.pending)).trim().to_string();
                return (!rest.is_empty()).then_some(rest);
            }
        }
    }

    /// All remaining events, until the body ends.
    pub fn collect_events(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.next_event()).collect()
    }

    /// The rest of the body, raw.
    pub fn read_rest(&mut self) -> Vec<u8> {
        while self.read_more() {}
        std::mem::take(&mut self.pending)
    }

    /// How long each later read may wait for body bytes.
    pub fn set_read_timeout(&mut self, t: Duration) {
        self.read_timeout = t;
    }
}
