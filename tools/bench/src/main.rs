//! `bench-load`: the load generator of `scripts/bench` (clap for the flags, hyper 1 on tokio for HTTP/1.1).
//!
//! Sends one request body a fixed number of times over `--concurrency` keep-alive HTTP/1.1 connections
//! (one task each on a single-threaded tokio runtime, requests back to back) and prints one JSON object: requests/s, latency percentiles, for
//! streams the time to the first SSE event, and the CPU time and memory the processes named by `--pid`
//! spent while the measured requests ran. Phases: connect, `--warmup` requests (not measured), CPU
//! snapshot, the `--requests` measured requests, CPU snapshot, close. Connection set-up and teardown are
//! outside the measured window, so CPU per request is the steady-state cost of one request.
//!
//! CPU is read two ways from /proc: the sum over the process's threads of `schedstat`'s run time
//! (nanoseconds; the kernel's own accounting, the same quantity `utime + stime` samples) and
//! `utime + stime` of `/proc/<pid>/stat` (clock ticks, 10 ms on most kernels: too coarse for short runs,
//! kept as a cross-check). The client's own CPU over the same window is reported as `client`.

mod conn;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, HOST};
use hyper::{Method, Request, Uri};
use tokio::sync::Barrier;
use tokio::time::timeout;

/// How long connecting, and one request with its whole response, may take.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Parser)]
#[command(
    name = "bench-load",
    about = "Load generator of scripts/bench: one request body, N keep-alive HTTP/1.1 connections.",
    long_about = "Load generator of scripts/bench: sends one request body over --concurrency keep-alive \
HTTP/1.1 connections to 127.0.0.1 and prints one JSON object with rps, latency (and time-to-first-event \
for --stream) percentiles in µs, and for each --pid the CPU µs per measured request and the RSS. A \
response counts as an error unless its status is 200, it has the --expect header line (case-insensitive), \
and, with --stream, it carries at least two SSE events."
)]
struct Args {
    /// Port on 127.0.0.1.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    port: u16,
    /// Request path.
    #[arg(long, default_value = "/v1/chat/completions", value_parser = parse_path)]
    path: Uri,
    /// File with the request body (sent as a POST with content-length).
    #[arg(long, value_name = "FILE")]
    body: PathBuf,
    /// A request header, repeatable.
    #[arg(long = "header", value_name = "'NAME: VALUE'", value_parser = parse_header)]
    headers: Vec<(HeaderName, HeaderValue)>,
    /// Measured requests (at least 1).
    #[arg(long, default_value_t = 1000, allow_negative_numbers = true)]
    requests: i64,
    /// Requests before the measured ones, on the same connections.
    #[arg(long, default_value_t = 100, allow_negative_numbers = true)]
    warmup: i64,
    /// Keep-alive connections, each sending its requests back to back (1..1024).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    concurrency: i64,
    /// The responses are SSE streams: time the first complete event, require at least two events.
    #[arg(long)]
    stream: bool,
    /// Stop sending new requests after this many seconds (the result says "truncated").
    #[arg(long, default_value_t = 120.0)]
    max_seconds: f64,
    /// A process whose CPU and memory to report, repeatable.
    #[arg(long = "pid", value_name = "LABEL=PID", value_parser = parse_pid)]
    pids: Vec<(String, u32)>,
    /// A response header every response must have.
    #[arg(long, value_name = "'NAME: VALUE'", value_parser = parse_expect)]
    expect: Option<(HeaderName, String)>,
}

fn parse_path(v: &str) -> Result<Uri, String> {
    match v.parse::<Uri>() {
        Ok(u) if v.starts_with('/') => Ok(u),
        _ => Err(format!("expected a path such as /v1/chat/completions, got {v:?}")),
    }
}

fn parse_header(v: &str) -> Result<(HeaderName, HeaderValue), String> {
    let bad = || format!("expected 'name: value', got {v:?}");
    let (n, val) = v.split_once(':').ok_or_else(bad)?;
    let n = HeaderName::from_bytes(n.trim().as_bytes()).map_err(|_| bad())?;
    let val = HeaderValue::from_str(val.trim()).map_err(|_| bad())?;
    Ok((n, val))
}

fn parse_expect(v: &str) -> Result<(HeaderName, String), String> {
    let (n, val) = parse_header(v)?;
    let val = val.to_str().map_err(|_| format!("expected an ASCII value, got {v:?}"))?;
    Ok((n, val.to_string()))
}

fn parse_pid(v: &str) -> Result<(String, u32), String> {
    let (label, pid) = v.split_once('=').ok_or("expected LABEL=PID")?;
    Ok((label.to_string(), pid.parse().map_err(|_| format!("bad pid {pid:?}"))?))
}

/// What is fixed for the whole run, and the counters and meeting points the connections share.
struct Shared {
    port: u16,
    uri: Uri,
    /// Every request's headers: host, the --header ones, content-length.
    headers: HeaderMap,
    body: Bytes,
    stream: bool,
    expect: Option<(HeaderName, String)>,
    warm_left: AtomicI64,
    left: AtomicI64,
    stop: AtomicBool,
    fatal: Mutex<Option<String>>,
    /// Connection tasks + the main task meet at: connected and warmed up; go; measured requests done; close.
    warmed: Barrier,
    go: Barrier,
    done: Barrier,
    close: Barrier,
}

/// What one connection measured.
#[derive(Default)]
struct ConnResult {
    latencies_us: Vec<u64>,
    ttfe_us: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
    reconnects: u64,
    events: u64,
    bytes_in: u64,
}

/// One request's outcome.
struct Outcome {
    status: u16,
    /// When the first complete SSE event had arrived.
    ttfe: Option<Duration>,
    events: u64,
    bytes: u64,
    close: bool,
    snippet: Vec<u8>,
    /// The head had the `--expect` header line (or none was asked for).
    expected: bool,
}

/// Counts complete SSE events: a blank line ends an event, which counts if it had a `data:` line.
/// Lines end in `\n` (a `\r` before it is ignored).
#[derive(Default)]
struct SseCounter {
    line: [u8; 5],
    line_len: usize,
    has_data: bool,
    events: u64,
}

impl SseCounter {
    fn feed(&mut self, piece: &[u8]) {
        for &b in piece {
            match b {
                b'\n' => {
                    if self.line_len == 0 {
                        if self.has_data {
                            self.events += 1;
                            self.has_data = false;
                        }
                    } else if self.line_len == 5 && &self.line == b"data:" {
                        self.has_data = true;
                    }
                    self.line_len = 0;
                }
                b'\r' => {}
                _ => {
                    if self.line_len < 5 {
                        self.line[self.line_len] = b;
                    }
                    // Saturates at 5: only "is it empty" and the first five bytes matter.
                    self.line_len = (self.line_len + 1).min(5);
                }
            }
        }
    }
}

async fn request(
    s: &Shared,
    sender: &mut SendRequest<Full<Bytes>>,
    started: Instant,
) -> Result<Outcome, String> {
    let mut req = Request::new(Full::new(s.body.clone()));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = s.uri.clone();
    *req.headers_mut() = s.headers.clone();
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let close = resp
        .headers()
        .get_all(CONNECTION)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.to_ascii_lowercase().contains("close")));
    let expected = s.expect.as_ref().is_none_or(|(n, want)| {
        resp.headers()
            .get_all(n)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.trim().eq_ignore_ascii_case(want)))
    });
    let mut out = Outcome { status, ttfe: None, events: 0, bytes: 0, close, snippet: Vec::new(), expected };
    let mut sse = SseCounter::default();
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|e| e.to_string())?.into_data() else { continue };
        out.bytes += data.len() as u64;
        if out.snippet.len() < 300 {
            out.snippet.extend_from_slice(&data[..data.len().min(300 - out.snippet.len())]);
        }
        sse.feed(&data);
        if out.ttfe.is_none() && sse.events > 0 {
            out.ttfe = Some(started.elapsed());
        }
    }
    out.events = sse.events;
    Ok(out)
}

/// One request on `conn`, recorded in `r` when `measured`; reconnects after a closed or failed connection.
/// Returns false when the connection cannot be used (connecting failed).
async fn one(
    s: &Shared,
    conn: &mut Result<SendRequest<Full<Bytes>>, String>,
    r: &mut ConnResult,
    measured: bool,
) -> bool {
    // A connection the server closed between two requests is replaced before the request is sent.
    let closed = match conn.as_mut() {
        Ok(c) => c.ready().await.is_err(),
        Err(_) => false,
    };
    if closed {
        r.reconnects += 1;
        *conn = conn::open(s.port, IO_TIMEOUT).await;
    }
    let sender = match conn.as_mut() {
        Ok(c) => c,
        Err(e) => {
            let mut f = s.fatal.lock().unwrap_or_else(|e| e.into_inner());
            f.get_or_insert_with(|| format!("connect: {e}"));
            return false;
        }
    };
    let started = Instant::now();
    let result = timeout(IO_TIMEOUT, request(s, sender, started)).await;
    match result.unwrap_or_else(|_| Err("no complete response within 30 s".to_string())) {
        Ok(o) => {
            let elapsed = started.elapsed();
            let ok = o.status == 200 && o.expected && (!s.stream || o.events >= 2);
            if measured {
                if ok {
                    r.latencies_us.push(elapsed.as_micros() as u64);
                    if s.stream {
                        r.ttfe_us.push(o.ttfe.unwrap_or(elapsed).as_micros() as u64);
                    }
                    r.events += o.events;
                    r.bytes_in += o.bytes;
                } else {
                    r.errors += 1;
                }
            }
            if !ok && r.first_error.is_none() {
                r.first_error = Some(format!(
                    "status {} events {} expected header {}: {}",
                    o.status,
                    o.events,
                    o.expected,
                    String::from_utf8_lossy(&o.snippet)
                ));
            }
            if o.close {
                r.reconnects += 1;
                *conn = conn::open(s.port, IO_TIMEOUT).await;
            }
        }
        Err(e) => {
            if measured {
                r.errors += 1;
            }
            r.first_error.get_or_insert_with(|| format!("i/o: {e}"));
            r.reconnects += 1;
            *conn = conn::open(s.port, IO_TIMEOUT).await;
        }
    }
    true
}

async fn connection(s: Arc<Shared>) -> ConnResult {
    let mut r = ConnResult::default();
    let mut conn = conn::open(s.port, IO_TIMEOUT).await;
    while !s.stop.load(Ordering::Relaxed) && s.warm_left.fetch_sub(1, Ordering::Relaxed) > 0 {
        if !one(&s, &mut conn, &mut r, false).await {
            break;
        }
    }
    s.warmed.wait().await;
    s.go.wait().await;
    while !s.stop.load(Ordering::Relaxed) && s.left.fetch_sub(1, Ordering::Relaxed) > 0 {
        if !one(&s, &mut conn, &mut r, true).await {
            break;
        }
    }
    s.done.wait().await;
    s.close.wait().await;
    r
}

/// CPU and memory of one process, from /proc.
#[derive(Clone, Copy, Default)]
struct Proc {
    run_ns: u64,
    ticks: u64,
    rss_kb: u64,
    hwm_kb: u64,
}

fn read_proc(pid: u32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which ends at the last ')': state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let mut run_ns = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
            run_ns += s.split(' ').next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some(Proc { run_ns, ticks, rss_kb: kb("VmRSS:"), hwm_kb: kb("VmHWM:") })
}

fn clk_tck() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn dist(mut v: Vec<u64>) -> String {
    v.sort_unstable();
    let mean = if v.is_empty() { 0.0 } else { v.iter().sum::<u64>() as f64 / v.len() as f64 };
    format!(
        r#"{{"p50":{},"p90":{},"p99":{},"max":{},"mean":{:.1}}}"#,
        pct(&v, 50.0),
        pct(&v, 90.0),
        pct(&v, 99.0),
        v.last().copied().unwrap_or(0),
        mean
    )
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o + "\""
}

/// Runs the connections and prints the result; false when no request succeeded.
async fn run(args: Args, body: Vec<u8>) -> bool {
    let c = args.concurrency.clamp(1, 1024) as usize;
    let requests = args.requests.max(1);
    let mut headers = HeaderMap::new();
    headers.insert(HOST, HeaderValue::from_str(&format!("127.0.0.1:{}", args.port)).expect("a valid host"));
    for (n, v) in args.headers {
        headers.append(n, v);
    }
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    let s = Arc::new(Shared {
        port: args.port,
        uri: args.path,
        headers,
        body: Bytes::from(body),
        stream: args.stream,
        expect: args.expect,
        warm_left: AtomicI64::new(args.warmup.max(0)),
        left: AtomicI64::new(requests),
        stop: AtomicBool::new(false),
        fatal: Mutex::new(None),
        warmed: Barrier::new(c + 1),
        go: Barrier::new(c + 1),
        done: Barrier::new(c + 1),
        close: Barrier::new(c + 1),
    });
    let tasks: Vec<_> = (0..c).map(|_| tokio::spawn(connection(s.clone()))).collect();

    let deadline = Duration::from_secs_f64(args.max_seconds.max(1.0));
    let watchdog = {
        let s = s.clone();
        tokio::spawn(async move {
            tokio::time::sleep(deadline).await;
            s.stop.store(true, Ordering::Relaxed);
        })
    };

    let me = std::process::id();
    s.warmed.wait().await;
    let before: Vec<Option<Proc>> = args.pids.iter().map(|(_, p)| read_proc(*p)).collect();
    let me_before = read_proc(me);
    let start = Instant::now();
    s.go.wait().await;
    s.done.wait().await;
    let elapsed = start.elapsed();
    let after: Vec<Option<Proc>> = args.pids.iter().map(|(_, p)| read_proc(*p)).collect();
    let me_after = read_proc(me);
    s.close.wait().await;
    watchdog.abort();

    let mut lat = Vec::new();
    let mut ttfe = Vec::new();
    let (mut errors, mut reconnects, mut events, mut bytes) = (0, 0, 0, 0);
    let mut first_error = None;
    for t in tasks {
        match t.await {
            Ok(r) => {
                lat.extend(r.latencies_us);
                ttfe.extend(r.ttfe_us);
                errors += r.errors;
                reconnects += r.reconnects;
                events += r.events;
                bytes += r.bytes_in;
                if first_error.is_none() {
                    first_error = r.first_error;
                }
            }
            Err(_) => errors += 1,
        }
    }
    let ok = lat.len() as u64;
    let done_requests = ok + errors;
    let per = |x: f64| if done_requests > 0 { x / done_requests as f64 } else { 0.0 };
    let tck = clk_tck();
    let mut cpu = Vec::new();
    for (i, (label, pid)) in args.pids.iter().enumerate() {
        let (Some(b), Some(a)) = (before[i], after[i]) else {
            cpu.push(format!(r#"{}:{{"pid":{pid},"error":"process gone"}}"#, json_str(label)));
            continue;
        };
        let ns = a.run_ns.saturating_sub(b.run_ns);
        let tick_us = a.ticks.saturating_sub(b.ticks) * 1_000_000 / tck;
        cpu.push(format!(
            r#"{}:{{"pid":{pid},"cpu_us_per_req":{:.2},"stat_cpu_us_per_req":{:.2},"cpu_ms":{:.3},"stat_cpu_ms":{},"rss_kb":{},"hwm_kb":{}}}"#,
            json_str(label),
            per(ns as f64 / 1000.0),
            per(tick_us as f64),
            ns as f64 / 1e6,
            tick_us / 1000,
            a.rss_kb,
            a.hwm_kb
        ));
    }
    let fatal = s.fatal.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let secs = elapsed.as_secs_f64();
    let mut out = format!(
        r#"{{"requests":{done_requests},"ok":{ok},"errors":{errors},"reconnects":{reconnects},"concurrency":{c},"elapsed_s":{secs:.4},"rps":{:.1},"truncated":{},"bytes_in":{bytes},"events":{events},"latency_us":{}"#,
        if secs > 0.0 { ok as f64 / secs } else { 0.0 },
        s.stop.load(Ordering::Relaxed) || done_requests < requests as u64,
        dist(lat),
    );
    if s.stream {
        out += &format!(r#","ttfe_us":{}"#, dist(ttfe));
    }
    out += &format!(r#","procs":{{{}}}"#, cpu.join(","));
    if let (Some(b), Some(a)) = (me_before, me_after) {
        out += &format!(
            r#","client":{{"cpu_us_per_req":{:.2}}}"#,
            per(a.run_ns.saturating_sub(b.run_ns) as f64 / 1000.0)
        );
    }
    if let Some(e) = fatal.or(first_error) {
        out += &format!(r#","first_error":{}"#, json_str(&e));
    }
    out += "}";
    println!("{out}");
    ok > 0
}

fn main() -> ExitCode {
    let args = Args::parse();
    let body = match std::fs::read(&args.body) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("bench-load: --body {}: {e}", args.body.display());
            return ExitCode::from(2);
        }
    };
    // One thread runs every connection: at c=1 a multi-thread runtime cost the client more CPU and Envoy
    // more CPU per request (the response's wake-up crossed threads); at c=16 and 64 one thread keeps up with
    // Envoy, whose single worker is the bottleneck (see scripts/bench's mock capacity for the client's limit).
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench-load: tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let ok = rt.block_on(run(args, body));
    rt.shutdown_background();
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::SseCounter;

    fn count(pieces: &[&[u8]]) -> u64 {
        let mut c = SseCounter::default();
        for p in pieces {
            c.feed(p);
        }
        c.events
    }

    #[test]
    fn counts_complete_events_only() {
        assert_eq!(count(&[b"data: {\"a\":1}\n\ndata: [DONE]\n\n"]), 2);
        assert_eq!(count(&[b"data: {\"a\":1}\r\n\r\n"]), 1);
        // Not ended by a blank line yet.
        assert_eq!(count(&[b"data: {\"a\":1}\n"]), 0);
        // Split anywhere, even inside "data:" and between the two newlines.
        assert_eq!(count(&[b"da", b"ta: x\n", b"\n", b"data: y\n\n"]), 2);
        // A comment or a JSON body is no event.
        assert_eq!(count(&[b": keep-alive\n\n", b"{\"data:\":1}\n\n"]), 0);
    }
}
