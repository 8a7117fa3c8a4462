//! The soak's load: keep-alive HTTP/1.1 connections (hyper on one tokio thread, as `bench-load`), each
//! sending requests back to back until a deadline, each request chosen by its sequence number from a
//! deterministic mix, every outcome tallied.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, HOST};
use hyper::{Method, Request, Uri};

/// Where every request goes.
pub const PATH: &str = "/v1/chat/completions";
/// Most response bytes kept to judge a response (the mock's answers are a few KB).
const KEEP: usize = 1 << 20;
/// Error texts kept per run, to print.
const KEEP_ERRORS: usize = 5;

/// One request of the mix.
pub struct Spec {
    pub body: Bytes,
    /// Every header but `host` and `content-length`.
    pub headers: HeaderMap,
    pub stream: bool,
    /// A hostile case: its name and the status the corpus documents for it.
    pub hostile: Option<(String, u16)>,
}

/// Request number → what to send.
pub type Mix = Arc<dyn Fn(u64) -> Arc<Spec> + Send + Sync>;

/// Everything the connections counted. Hostile requests are counted apart from the others.
#[derive(Default, Clone)]
pub struct Tally {
    /// Normal requests answered (or failed) so far.
    pub requests: u64,
    /// Of those, the ones that succeeded: 200 with a complete body (a stream with `data: [DONE]` and no
    /// error event).
    pub ok: u64,
    pub streamed: u64,
    /// Normal requests by outcome: the status ("200", "502"…), "200-incomplete", "timeout" (no whole
    /// answer within the request timeout), "io" (the connection failed), "connect".
    pub by_status: BTreeMap<String, u64>,
    /// Latency of each successful request, µs.
    pub latency_us: Vec<u64>,
    /// `x-llm-attempts` of each normal request that had one → how many.
    pub attempts: BTreeMap<u32, u64>,
    /// Normal requests answered without `x-llm-attempts`.
    pub attempts_missing: u64,
    /// `x-llm-provider` → successful requests it served.
    pub served_by: BTreeMap<String, u64>,
    pub hostile: u64,
    /// Hostile requests answered with the status the corpus documents.
    pub hostile_documented: u64,
    /// "case name: what came instead" → how many.
    pub hostile_wrong: BTreeMap<String, u64>,
    /// The first few failures, as text.
    pub errors: Vec<String>,
}

impl Tally {
    pub fn success_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.ok as f64 / self.requests as f64
        }
    }

    /// A copy without the latencies: cheap enough to take under the lock while the load runs.
    pub fn counts(&self) -> Tally {
        Tally {
            requests: self.requests,
            ok: self.ok,
            streamed: self.streamed,
            by_status: self.by_status.clone(),
            latency_us: Vec::new(),
            attempts: self.attempts.clone(),
            attempts_missing: self.attempts_missing,
            served_by: self.served_by.clone(),
            hostile: self.hostile,
            hostile_documented: self.hostile_documented,
            hostile_wrong: self.hostile_wrong.clone(),
            errors: self.errors.clone(),
        }
    }

    fn error(&mut self, text: String) {
        if self.errors.len() < KEEP_ERRORS {
            self.errors.push(text);
        }
    }
}

/// Lock, ignoring poisoning.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What one exchange gave.
struct Outcome {
    status: u16,
    attempts: Option<u32>,
    provider: Option<String>,
    /// The body is whole: `data: [DONE]` and no error event for a stream, something for a completion.
    complete: bool,
    /// The server said it closes the connection.
    close: bool,
    snippet: String,
}

/// The load of one run.
pub struct Load {
    pub port: u16,
    pub mix: Mix,
    pub concurrency: usize,
    /// No request starts after this long; the ones under way finish (or time out).
    pub duration: Duration,
    /// A request with no whole answer by then counts as "timeout" and its connection is closed.
    pub request_timeout: Duration,
}

/// Runs the load on a thread of its own until its deadline and every request under way has ended,
/// counting into `tally`. Returns the thread; join it for the wall time of the whole run.
pub fn start(load: Load, tally: Arc<Mutex<Tally>>) -> std::thread::JoinHandle<Duration> {
    std::thread::spawn(move || {
        let started = Instant::now();
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                lock(&tally).error(format!("tokio runtime: {e}"));
                return started.elapsed();
            }
        };
        let load = Arc::new(load);
        let next = Arc::new(AtomicU64::new(0));
        let end = started + load.duration;
        rt.block_on(async {
            let tasks: Vec<_> = (0..load.concurrency.max(1))
                .map(|_| tokio::spawn(connection(load.clone(), next.clone(), end, tally.clone())))
                .collect();
            for t in tasks {
                let _ = t.await;
            }
        });
        started.elapsed()
    })
}

async fn connection(load: Arc<Load>, next: Arc<AtomicU64>, end: Instant, tally: Arc<Mutex<Tally>>) {
    let host =
        HeaderValue::from_str(&format!("127.0.0.1:{}", load.port)).unwrap_or(HeaderValue::from_static("x"));
    let mut conn: Option<SendRequest<Full<Bytes>>> = None;
    while Instant::now() < end {
        let spec = (load.mix)(next.fetch_add(1, Ordering::Relaxed));
        // A connection the server closed between two requests is replaced before the next is sent.
        if let Some(c) = conn.as_mut() {
            if c.ready().await.is_err() {
                conn = None;
            }
        }
        let sender = match conn.as_mut() {
            Some(c) => c,
            None => match crate::conn::open(load.port, Duration::from_secs(10)).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    record(&mut lock(&tally), &spec, Err(("connect", e)), Duration::ZERO);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let started = Instant::now();
        let result = tokio::time::timeout(load.request_timeout, exchange(sender, &spec, &host)).await;
        let elapsed = started.elapsed();
        match result {
            Ok(Ok(o)) => {
                if o.close {
                    conn = None;
                }
                record(&mut lock(&tally), &spec, Ok(o), elapsed);
            }
            Ok(Err(e)) => {
                conn = None;
                record(&mut lock(&tally), &spec, Err(("io", e)), elapsed);
            }
            Err(_) => {
                // Dropping the connection closes it: Envoy sees the client leave.
                conn = None;
                let e = format!("no whole answer within {:?}", load.request_timeout);
                record(&mut lock(&tally), &spec, Err(("timeout", e)), elapsed);
            }
        }
    }
}

async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    spec: &Spec,
    host: &HeaderValue,
) -> Result<Outcome, String> {
    let mut req = Request::new(Full::new(spec.body.clone()));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = Uri::from_static(PATH);
    *req.headers_mut() = spec.headers.clone();
    req.headers_mut().insert(HOST, host.clone());
    req.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(spec.body.len()));
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let status = resp.status().as_u16();
    let attempts = header("x-llm-attempts").and_then(|v| v.trim().parse().ok());
    let provider = header("x-llm-provider");
    let close = header("connection").is_some_and(|v| v.to_ascii_lowercase().contains("close"));
    let mut body = resp.into_body();
    let mut kept = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|e| e.to_string())?.into_data() else { continue };
        total += data.len();
        if kept.len() + data.len() <= KEEP {
            kept.extend_from_slice(&data);
        }
    }
    let text = String::from_utf8_lossy(&kept);
    let complete = if spec.stream {
        text.contains("data: [DONE]") && !text.contains(r#""finish_reason":"error""#)
    } else {
        total > 0
    };
    let snippet: String = text.chars().take(300).collect();
    Ok(Outcome { status, attempts, provider, complete, close, snippet })
}

/// Counts one request: `Err((kind, why))` when no answer came.
fn record(t: &mut Tally, spec: &Spec, result: Result<Outcome, (&str, String)>, elapsed: Duration) {
    if let Some((case, want)) = &spec.hostile {
        t.hostile += 1;
        match result {
            Ok(o) if o.status == *want => t.hostile_documented += 1,
            Ok(o) => {
                *t.hostile_wrong.entry(format!("{case}: {} (documented {want})", o.status)).or_default() += 1
            }
            Err((kind, _)) => {
                *t.hostile_wrong.entry(format!("{case}: {kind} (documented {want})")).or_default() += 1
            }
        }
        return;
    }
    t.requests += 1;
    t.streamed += u64::from(spec.stream);
    let key = match result {
        Ok(o) => {
            match o.attempts {
                Some(n) => *t.attempts.entry(n).or_default() += 1,
                None => t.attempts_missing += 1,
            }
            if o.status == 200 && o.complete {
                t.ok += 1;
                t.latency_us.push(elapsed.as_micros() as u64);
                *t.served_by.entry(o.provider.unwrap_or_else(|| "-".into())).or_default() += 1;
                return;
            }
            let key = if o.status == 200 { "200-incomplete".to_string() } else { o.status.to_string() };
            t.error(format!("{key} after {} ms: {}", elapsed.as_millis(), o.snippet));
            key
        }
        Err((kind, why)) => {
            t.error(format!("{kind} after {} ms: {why}", elapsed.as_millis()));
            kind.to_string()
        }
    };
    *t.by_status.entry(key).or_default() += 1;
}

/// Nearest-rank percentile of sorted values.
pub fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied().unwrap_or(0)
}
