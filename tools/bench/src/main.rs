//! `bench-load`: the load generator of `scripts/bench` (std-only).
//!
//! Sends one request body a fixed number of times over `--concurrency` keep-alive HTTP/1.1 connections
//! (one thread each) and prints one JSON object: requests/s, latency percentiles, for streams the time
//! to the first SSE event, and the CPU time and memory the processes named by `--pid` spent while the
//! measured requests ran. Phases: connect, `--warmup` requests (not measured), CPU snapshot, the
//! `--requests` measured requests, CPU snapshot, close. Connection set-up and teardown are outside the
//! measured window, so CPU per request is the steady-state cost of one request.
//!
//! CPU is read two ways from /proc: the sum over the process's threads of `schedstat`'s run time
//! (nanoseconds; the kernel's own accounting, the same quantity `utime + stime` samples) and
//! `utime + stime` of `/proc/<pid>/stat` (clock ticks, 10 ms on most kernels: too coarse for short runs,
//! kept as a cross-check).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

const USAGE: &str =
    "usage: bench-load --port N --body FILE [--path /v1/chat/completions] [--header 'name: value']...
       [--requests N] [--warmup N] [--concurrency C] [--stream] [--max-seconds S] [--pid LABEL=PID]...
       [--expect 'name: value']
Prints one JSON object with rps, latency (and time-to-first-event for --stream) percentiles in µs,
and for each --pid the CPU µs per measured request and the RSS. A response counts as an error unless
its status is 200, it has this header line (with --expect, case-insensitive), and, with --stream, it
carries at least two SSE events.";

struct Args {
    port: u16,
    path: String,
    body: Vec<u8>,
    headers: Vec<String>,
    requests: i64,
    warmup: i64,
    concurrency: usize,
    stream: bool,
    max_seconds: f64,
    pids: Vec<(String, u32)>,
    expect: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        port: 0,
        path: "/v1/chat/completions".into(),
        body: Vec::new(),
        headers: Vec::new(),
        requests: 1000,
        warmup: 100,
        concurrency: 1,
        stream: false,
        max_seconds: 120.0,
        pids: Vec::new(),
        expect: None,
    };
    let mut have_body = false;
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        if flag == "--stream" {
            a.stream = true;
            continue;
        }
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<i64>().map_err(|_| format!("{flag}: not a number: {v}"));
        match flag.as_str() {
            "--port" => a.port = v.parse().map_err(|_| format!("--port: bad port {v}"))?,
            "--path" => a.path = v,
            "--body" => {
                a.body = std::fs::read(&v).map_err(|e| format!("--body {v}: {e}"))?;
                have_body = true;
            }
            "--header" => {
                if !v.contains(':') || v.contains('\r') || v.contains('\n') {
                    return Err(format!("--header: expected 'name: value', got {v:?}"));
                }
                a.headers.push(v)
            }
            "--expect" => a.expect = Some(v.to_ascii_lowercase()),
            "--requests" => a.requests = num(&v)?.max(1),
            "--warmup" => a.warmup = num(&v)?.max(0),
            "--concurrency" => a.concurrency = num(&v)?.clamp(1, 1024) as usize,
            "--max-seconds" => a.max_seconds = v.parse().map_err(|_| format!("--max-seconds: bad {v}"))?,
            "--pid" => {
                let (label, pid) = v.split_once('=').ok_or("--pid LABEL=PID")?;
                a.pids.push((label.to_string(), pid.parse().map_err(|_| format!("--pid: bad pid {pid}"))?));
            }
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    if a.port == 0 || !have_body {
        return Err("--port and --body are required".into());
    }
    Ok(a)
}

/// What one connection thread measured.
#[derive(Default)]
struct ThreadResult {
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
    ttfe: Option<Duration>,
    events: u64,
    bytes: u64,
    close: bool,
    snippet: Vec<u8>,
    /// The head had the `--expect` header line (or none was asked for).
    expected: bool,
}

/// A keep-alive connection with its own read buffer.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
}

impl Conn {
    fn open(port: u16) -> io::Result<Conn> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        s.set_write_timeout(Some(Duration::from_secs(30)))?;
        Ok(Conn { s, buf: vec![0; 64 * 1024], pos: 0, len: 0 })
    }

    /// Reads more bytes into the buffer; error at EOF.
    fn fill(&mut self) -> io::Result<()> {
        if self.pos == self.len {
            self.pos = 0;
            self.len = 0;
        } else if self.len == self.buf.len() {
            if self.pos > 0 {
                self.buf.copy_within(self.pos..self.len, 0);
                self.len -= self.pos;
                self.pos = 0;
            } else {
                self.buf.resize(self.buf.len() * 2, 0);
            }
        }
        let n = self.s.read(&mut self.buf[self.len..])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        self.len += n;
        Ok(())
    }

    /// One line without its CRLF.
    fn line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = self.buf[self.pos..self.len].iter().position(|&b| b == b'\n') {
                let mut l = self.buf[self.pos..self.pos + i].to_vec();
                self.pos += i + 1;
                if l.last() == Some(&b'\r') {
                    l.pop();
                }
                return Ok(l);
            }
            self.fill()?;
        }
    }

    /// Consumes `n` body bytes, calling `see` on each piece.
    fn take(&mut self, mut n: u64, see: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        while n > 0 {
            if self.pos == self.len {
                self.fill()?;
            }
            let k = ((self.len - self.pos) as u64).min(n) as usize;
            see(&self.buf[self.pos..self.pos + k]);
            self.pos += k;
            n -= k as u64;
        }
        Ok(())
    }

    fn request(&mut self, req: &[u8], started: Instant, expect: Option<&str>) -> io::Result<Outcome> {
        self.s.write_all(req)?;
        let status_line = self.line()?;
        let status = std::str::from_utf8(&status_line)
            .ok()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad status line"))?;
        let mut length = None;
        let mut chunked = false;
        let mut close = false;
        let mut expected = expect.is_none();
        loop {
            let l = self.line()?;
            if l.is_empty() {
                break;
            }
            let l = String::from_utf8_lossy(&l).to_ascii_lowercase();
            if let Some(e) = expect {
                if let Some((n, v)) = l.split_once(':') {
                    expected |= e
                        .split_once(':')
                        .is_some_and(|(en, ev)| en.trim() == n.trim() && ev.trim() == v.trim());
                }
            }
            if let Some((n, v)) = l.split_once(':') {
                match n.trim() {
                    "content-length" => length = v.trim().parse::<u64>().ok(),
                    "transfer-encoding" => chunked = v.contains("chunked"),
                    "connection" => close = v.contains("close"),
                    _ => {}
                }
            }
        }
        let mut out =
            Outcome { status, ttfe: None, events: 0, bytes: 0, close, snippet: Vec::new(), expected };
        // Counts SSE events by their "data:" at the start of a line (a body's first bytes count as one).
        let mut at_line_start = true;
        let mut partial: Vec<u8> = Vec::new();
        let mut see = |piece: &[u8]| {
            if out.ttfe.is_none() && !piece.is_empty() {
                out.ttfe = Some(started.elapsed());
            }
            out.bytes += piece.len() as u64;
            if out.snippet.len() < 300 {
                out.snippet.extend_from_slice(&piece[..piece.len().min(300 - out.snippet.len())]);
            }
            for &b in piece {
                if at_line_start || !partial.is_empty() {
                    partial.push(b);
                    if partial.len() == 5 {
                        if partial == b"data:" {
                            out.events += 1;
                        }
                        partial.clear();
                    } else if !b"data:".starts_with(&partial) {
                        partial.clear();
                    }
                }
                at_line_start = b == b'\n';
            }
        };
        if chunked {
            loop {
                let l = self.line()?;
                let size = std::str::from_utf8(&l)
                    .ok()
                    .and_then(|s| u64::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
                    .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
                if size == 0 {
                    while !self.line()?.is_empty() {}
                    break;
                }
                self.take(size, &mut see)?;
                self.line()?;
            }
        } else if let Some(n) = length {
            self.take(n, &mut see)?;
        } else {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "response without length"));
        }
        Ok(out)
    }
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

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("bench-load: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut head = format!("POST {} HTTP/1.1\r\nhost: 127.0.0.1:{}\r\n", args.path, args.port);
    for h in &args.headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", args.body.len()));
    let mut req = head.into_bytes();
    req.extend_from_slice(&args.body);
    let req: Arc<Vec<u8>> = Arc::new(req);

    let c = args.concurrency;
    // Connection threads + this one meet at: connected and warmed up; measured requests done.
    let warmed = Arc::new(Barrier::new(c + 1));
    let go = Arc::new(Barrier::new(c + 1));
    let done = Arc::new(Barrier::new(c + 1));
    let close = Arc::new(Barrier::new(c + 1));
    let warm_left = Arc::new(AtomicI64::new(args.warmup));
    let left = Arc::new(AtomicI64::new(args.requests));
    let stop = Arc::new(AtomicBool::new(false));
    let fatal: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));

    let mut threads = Vec::new();
    for _ in 0..c {
        let (req, warmed, go, done, close) =
            (req.clone(), warmed.clone(), go.clone(), done.clone(), close.clone());
        let (warm_left, left, stop, fatal) = (warm_left.clone(), left.clone(), stop.clone(), fatal.clone());
        let (port, stream, expect) = (args.port, args.stream, args.expect.clone());
        threads.push(std::thread::spawn(move || {
            let mut r = ThreadResult::default();
            let mut conn = Conn::open(port).map_err(|e| e.to_string());
            // One request; reconnects on a closed connection. Returns false when the connection is unusable.
            let mut one = |r: &mut ThreadResult, measured: bool| -> bool {
                let c = match conn.as_mut() {
                    Ok(c) => c,
                    Err(e) => {
                        let mut f = fatal.lock().unwrap_or_else(|e| e.into_inner());
                        f.get_or_insert_with(|| format!("connect: {e}"));
                        return false;
                    }
                };
                let started = Instant::now();
                match c.request(&req, started, expect.as_deref()) {
                    Ok(o) => {
                        let elapsed = started.elapsed();
                        let ok = o.status == 200 && o.expected && (!stream || o.events >= 2);
                        if measured {
                            if ok {
                                r.latencies_us.push(elapsed.as_micros() as u64);
                                if stream {
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
                            conn = Conn::open(port).map_err(|e| e.to_string());
                        }
                        true
                    }
                    Err(e) => {
                        if measured {
                            r.errors += 1;
                        }
                        r.first_error.get_or_insert_with(|| format!("i/o: {e}"));
                        r.reconnects += 1;
                        conn = Conn::open(port).map_err(|e| e.to_string());
                        true
                    }
                }
            };
            while !stop.load(Ordering::Relaxed) && warm_left.fetch_sub(1, Ordering::Relaxed) > 0 {
                if !one(&mut r, false) {
                    break;
                }
            }
            warmed.wait();
            go.wait();
            while !stop.load(Ordering::Relaxed) && left.fetch_sub(1, Ordering::Relaxed) > 0 {
                if !one(&mut r, true) {
                    break;
                }
            }
            done.wait();
            close.wait();
            r
        }));
    }

    let deadline = Duration::from_secs_f64(args.max_seconds.max(1.0));
    let watchdog_stop = stop.clone();
    std::thread::spawn(move || {
        std::thread::sleep(deadline);
        watchdog_stop.store(true, Ordering::Relaxed);
    });

    warmed.wait();
    let before: Vec<Option<Proc>> = args.pids.iter().map(|(_, p)| read_proc(*p)).collect();
    let start = Instant::now();
    go.wait();
    done.wait();
    let elapsed = start.elapsed();
    let after: Vec<Option<Proc>> = args.pids.iter().map(|(_, p)| read_proc(*p)).collect();
    close.wait();

    let mut lat = Vec::new();
    let mut ttfe = Vec::new();
    let (mut errors, mut reconnects, mut events, mut bytes) = (0, 0, 0, 0);
    let mut first_error = None;
    for t in threads {
        match t.join() {
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
    let tck = clk_tck();
    let mut cpu = Vec::new();
    for (i, (label, pid)) in args.pids.iter().enumerate() {
        let (Some(b), Some(a)) = (before[i], after[i]) else {
            cpu.push(format!(r#"{}:{{"pid":{pid},"error":"process gone"}}"#, json_str(label)));
            continue;
        };
        let ns = a.run_ns.saturating_sub(b.run_ns);
        let tick_us = a.ticks.saturating_sub(b.ticks) * 1_000_000 / tck;
        let per = |x: f64| if done_requests > 0 { x / done_requests as f64 } else { 0.0 };
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
    let fatal = fatal.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let secs = elapsed.as_secs_f64();
    let mut out = format!(
        r#"{{"requests":{done_requests},"ok":{ok},"errors":{errors},"reconnects":{reconnects},"concurrency":{c},"elapsed_s":{secs:.4},"rps":{:.1},"truncated":{},"bytes_in":{bytes},"events":{events},"latency_us":{}"#,
        if secs > 0.0 { ok as f64 / secs } else { 0.0 },
        stop.load(Ordering::Relaxed) || done_requests < args.requests as u64,
        dist(lat),
    );
    if args.stream {
        out += &format!(r#","ttfe_us":{}"#, dist(ttfe));
    }
    out += &format!(r#","procs":{{{}}}"#, cpu.join(","));
    if let Some(e) = fatal.or(first_error) {
        out += &format!(r#","first_error":{}"#, json_str(&e));
    }
    out += "}";
    println!("{out}");
    if ok == 0 {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
