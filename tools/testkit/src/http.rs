//! A tiny std-only HTTP/1.1 client for tests (plain TCP to 127.0.0.1).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// How long any single read may block.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    /// Names lowercased, in order received.
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

fn connect(port: u16) -> Result<TcpStream, String> {
    let stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect to 127.0.0.1:{port}: {e}"))?;
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .and_then(|_| stream.set_write_timeout(Some(READ_TIMEOUT)))
        .and_then(|_| stream.set_nodelay(true))
        .map_err(|e| format!("socket options: {e}"))?;
    Ok(stream)
}

fn send_request(
    stream: &mut TcpStream,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), String> {
    let has = |n: &str| headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(n));
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !has("host") {
        head.push_str(&format!("host: 127.0.0.1:{port}\r\n"));
    }
    let bodyless = matches!(method, "GET" | "HEAD" | "DELETE" | "OPTIONS");
    if !has("content-length") && !has("transfer-encoding") && (!body.is_empty() || !bodyless) {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    if !has("connection") {
        head.push_str("connection: close\r\n");
    }
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut buf = head.into_bytes();
    buf.extend_from_slice(body);
    stream
        .write_all(&buf)
        .and_then(|_| stream.flush())
        .map_err(|e| format!("send {method} {path} to port {port}: {e}"))
}

fn read_line(r: &mut impl BufRead) -> Result<String, String> {
    let mut buf = Vec::new();
    r.read_until(b'\n', &mut buf).map_err(|e| format!("read: {e}"))?;
    if buf.last() != Some(&b'\n') {
        return Err(format!("connection closed mid-line (got {:?})", String::from_utf8_lossy(&buf)));
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Read the status line and headers, skipping 1xx interim responses.
fn read_head(r: &mut impl BufRead) -> Result<(u16, Vec<(String, String)>), String> {
    loop {
        let line = read_line(r)?;
        let mut parts = line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        let status = parts.next().and_then(|s| s.parse::<u16>().ok());
        let Some(status) = status.filter(|_| version.starts_with("HTTP/1.")) else {
            return Err(format!("bad status line {line:?}"));
        };
        let mut headers = Vec::new();
        loop {
            let line = read_line(r)?;
            if line.is_empty() {
                break;
            }
            let Some((n, v)) = line.split_once(':') else {
                return Err(format!("bad header line {line:?}"));
            };
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        return Ok((status, headers));
    }
}

/// How the body is delimited.
#[derive(Debug)]
enum Framing {
    Chunked { left_in_chunk: u64, done: bool },
    Length(u64),
    UntilEof { done: bool },
}

impl Framing {
    fn new(method: &str, status: u16, headers: &[(String, String)]) -> Result<Framing, String> {
        if method == "HEAD" || status == 204 || status == 304 {
            return Ok(Framing::Length(0));
        }
        let chunked = headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            return Ok(Framing::Chunked { left_in_chunk: 0, done: false });
        }
        if let Some(cl) = find_header(headers, "content-length") {
            let n = cl.parse::<u64>().map_err(|_| format!("bad content-length {cl:?}"))?;
            return Ok(Framing::Length(n));
        }
        Ok(Framing::UntilEof { done: false })
    }

    /// Read some body bytes into `out`; `Ok(false)` once the body has ended.
    fn read_some(&mut self, r: &mut impl BufRead, out: &mut Vec<u8>) -> Result<bool, String> {
        match self {
            Framing::Length(0) => Ok(false),
            Framing::Length(left) => {
                let n = read_upto(r, *left, out)?;
                if n == 0 {
                    return Err(format!("connection closed with {left} body bytes missing"));
                }
                *left -= n;
                Ok(true)
            }
            Framing::UntilEof { done: true } => Ok(false),
            Framing::UntilEof { done } => {
                let n = read_upto(r, 64 * 1024, out)?;
                if n == 0 {
                    *done = true;
                }
                Ok(n > 0)
            }
            Framing::Chunked { done: true, .. } => Ok(false),
            Framing::Chunked { left_in_chunk, done } => {
                if *left_in_chunk == 0 {
                    let line = read_line(r)?;
                    let size = line.split(';').next().unwrap_or("").trim();
                    let size =
                        u64::from_str_radix(size, 16).map_err(|_| format!("bad chunk size line {line:?}"))?;
                    if size == 0 {
                        // Trailers up to a blank line.
                        while !read_line(r)?.is_empty() {}
                        *done = true;
                        return Ok(false);
                    }
                    *left_in_chunk = size;
                }
                let n = read_upto(r, *left_in_chunk, out)?;
                if n == 0 {
                    return Err("connection closed inside a chunk".to_string());
                }
                *left_in_chunk -= n;
                if *left_in_chunk == 0 {
                    let crlf = read_line(r)?;
                    if !crlf.is_empty() {
                        return Err(format!("chunk data not followed by CRLF: {crlf:?}"));
                    }
                }
                Ok(true)
            }
        }
    }
}

/// Append up to `max` bytes that are available (blocking for at least one); 0 at EOF.
fn read_upto(r: &mut impl BufRead, max: u64, out: &mut Vec<u8>) -> Result<u64, String> {
    let avail = r.fill_buf().map_err(|e| format!("read body: {e}"))?;
    let n = avail.len().min(max.min(usize::MAX as u64) as usize);
    out.extend_from_slice(&avail[..n]);
    r.consume(n);
    Ok(n as u64)
}

/// Like [`request`] but returns I/O and protocol failures as `Err`.
pub fn try_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, String> {
    let mut stream = connect(port)?;
    send_request(&mut stream, port, method, path, headers, body)?;
    let mut r = BufReader::new(stream);
    let (status, headers) =
        read_head(&mut r).map_err(|e| format!("{method} {path} on port {port}: reading response: {e}"))?;
    let mut framing = Framing::new(method, status, &headers)?;
    let mut body = Vec::new();
    while framing
        .read_some(&mut r, &mut body)
        .map_err(|e| format!("{method} {path} on port {port}: reading body: {e}"))?
    {}
    Ok(Response { status, headers, body })
}

/// Send one request on a fresh connection (`connection: close`) and read the
/// whole response. Panics with a clear message on any I/O failure.
pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    try_request(port, method, path, headers, body).unwrap_or_else(|e| panic!("HTTP request failed: {e}"))
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
    reader: BufReader<TcpStream>,
    framing: Framing,
    /// Decoded body bytes not yet returned as events.
    pending: Vec<u8>,
}

/// Send a request and return once the response head has arrived; the body is
/// then read with [`Stream::next_event`]. Panics on I/O failure.
pub fn open_stream(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Stream {
    let run = || -> Result<Stream, String> {
        let mut stream = connect(port)?;
        send_request(&mut stream, port, method, path, headers, body)?;
        let mut reader = BufReader::new(stream);
        let (status, headers) = read_head(&mut reader)?;
        let framing = Framing::new(method, status, &headers)?;
        Ok(Stream { status, headers, reader, framing, pending: Vec::new() })
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

    /// The next complete SSE event: its text up to (not including) the blank
    /// line that ends it, trailing `\r` trimmed, e.g. `data: {...}`. Returns as
    /// soon as that event has arrived (it does not wait for the end of the body).
    /// At the end of the body, any leftover non-blank text is returned as a last
    /// event, then `None`. Panics on I/O failure or a 30 s read timeout.
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
            let more = self
                .framing
                .read_some(&mut self.reader, &mut self.pending)
                .unwrap_or_else(|e| panic!("reading stream: {e}"));
            if !more {
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
        let mut out = std::mem::take(&mut self.pending);
        while self
            .framing
            .read_some(&mut self.reader, &mut out)
            .unwrap_or_else(|e| panic!("reading stream: {e}"))
        {}
        out
    }

    /// Change the read timeout of the underlying socket.
    pub fn set_read_timeout(&mut self, t: Duration) {
        let _ = self.reader.get_ref().set_read_timeout(Some(t));
    }
}
