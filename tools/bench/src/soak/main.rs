//! `soak`: faults under load and a soak, through a real Envoy running the generated config (the tool of
//! `scripts/soak`; see README.md, "Faults under load and soak").
//!
//! Each run starts its own Envoy (the testkit's harness, `$ENVOY_BIN`, the filter from
//! `$LLM_ROUTER_WASM`) on a catalog made by the testkit's router fixture, with in-process mock providers
//! (the testkit's `MockProvider`), and drives it with keep-alive HTTP/1.1 connections (`load`).
//!
//! 1. Faults under load: three providers serve `test/m` at one price (so each gets a third of the first
//!    attempts), `routing.max_attempts` 3; provider `first` misbehaves: its port closed, 503 to every
//!    other request, 429 with `retry-after` to everything, no answer at all, or a byte a second; the first
//!    two also with `outage_window_seconds` 0 (the retry path under load, without the health memory
//!    moving `first` behind the others). Two baselines: the same load on bare Envoy straight to a healthy mock, and on the router with three
//!    healthy providers. Per run: success rate, provider attempts per client request (what the mocks
//!    received ÷ client requests, and `x-llm-attempts`: its mean, its maximum and how often it exceeded
//!    `max_attempts`), latency.
//! 2. The soak: healthy providers, a deterministic mix of streamed and non-streamed requests from 1 KB to
//!    1 MB and 1 % hostile requests (tests/corpus/requests.json), sampled every 10 s: Envoy's RSS, the
//!    allocator's bytes, the wasm VMs (created, active), the outcomes by status.

#[path = "../conn.rs"]
mod conn;
mod load;
mod mix;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use llm_router_testkit::envoy::{self, Envoy};
use llm_router_testkit::http;
use llm_router_testkit::mock::{Behavior, MockProvider};
use llm_router_testkit::router::{self, Router};
use serde_json::{json, Value};

use load::{lock, pct, Load, Tally};

/// `routing.max_attempts` of every catalog here.
const MAX_ATTEMPTS: u32 = 3;
/// The per-attempt timeouts (`first_byte_timeout_ms`, `response_timeout_ms`) of the runs that need a
/// low one (no answer, a trickle).
const LOW_TIMEOUT_MS: u64 = 1500;
/// Content events of each mock stream (plus usage and `[DONE]`).
const STREAM_CHUNKS: usize = 20;
/// The providers of every router run; the faulty one is the first.
const PROVIDERS: [&str; 3] = ["first", "second", "third"];
/// The window over which the soak's RSS growth is reported.
const GROWTH_WINDOW_S: f64 = 300.0;

#[derive(Parser)]
#[command(
    name = "soak",
    about = "Faults under load and a soak through a real Envoy running llm-router (see scripts/soak)"
)]
struct Args {
    /// Short runs: each fault scenario 5 s, the soak 1 minute.
    #[arg(long)]
    quick: bool,
    /// Length of the soak in minutes (default 10; --quick: 1).
    #[arg(long)]
    minutes: Option<f64>,
    /// Seconds of load per fault scenario (default 25; --quick: 5).
    #[arg(long)]
    fault_seconds: Option<f64>,
    /// Only the fault scenarios.
    #[arg(long, conflicts_with = "soak_only")]
    faults_only: bool,
    /// Only the soak.
    #[arg(long)]
    soak_only: bool,
    /// Client connections (keep-alive, each sending requests back to back).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    concurrency: u16,
    /// Envoy worker threads.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    envoy_concurrency: u32,
    /// A request with no whole answer within this many seconds counts as "timeout".
    #[arg(long, default_value_t = 10.0)]
    request_timeout: f64,
    /// Seconds between two soak samples.
    #[arg(long, default_value_t = 10.0)]
    sample_seconds: f64,
    /// Where results.json goes.
    #[arg(long, default_value = "target/soak")]
    out: PathBuf,
}

/// One fault scenario: what `first` does (`None`: its port is closed), whether the per-attempt timeouts
/// are low, and whether `routing.outage_window_seconds` is 0 (the health memory then never moves a
/// provider that failed behind the others, so the retry path carries the load; cool-downs still apply).
struct Fault {
    name: &'static str,
    what: &'static str,
    first: Option<Behavior>,
    low_timeouts: bool,
    no_window: bool,
}

fn faults() -> Vec<Fault> {
    let error = |m: &str| json!({"error": {"message": m, "type": "mock_error"}}).to_string();
    vec![
        Fault {
            name: "healthy",
            what: "three healthy providers (the router's baseline)",
            first: Some(Behavior::Ok),
            low_timeouts: false,
            no_window: false,
        },
        Fault {
            name: "a-down",
            what: "first's port closed (connection refused)",
            first: None,
            low_timeouts: false,
            no_window: false,
        },
        Fault {
            name: "a-down/w0",
            what: "first's port closed, outage window 0",
            first: None,
            low_timeouts: false,
            no_window: true,
        },
        Fault {
            name: "b-503-half",
            what: "first answers 503 to every other request",
            first: Some(Behavior::Flaky { percent: 50, code: 503 }),
            low_timeouts: false,
            no_window: false,
        },
        Fault {
            name: "b-503-half/w0",
            what: "first answers 503 to every other request, outage window 0",
            first: Some(Behavior::Flaky { percent: 50, code: 503 }),
            low_timeouts: false,
            no_window: true,
        },
        Fault {
            name: "c-429-storm",
            what: "first answers 429 with retry-after: 2 to everything",
            first: Some(Behavior::Status {
                code: 429,
                headers: vec![("retry-after".into(), "2".into())],
                body: error("rate limited"),
            }),
            low_timeouts: false,
            no_window: false,
        },
        Fault {
            name: "d-no-answer",
            what: "first accepts and never answers (per-attempt timeouts 1.5 s)",
            first: Some(Behavior::Delay { ms: 3_600_000 }),
            low_timeouts: true,
            no_window: false,
        },
        Fault {
            name: "e-trickle",
            what: "first answers at once, then a byte a second (per-attempt timeouts 1.5 s)",
            first: Some(Behavior::Trickle { interval_ms: 1000 }),
            low_timeouts: true,
            no_window: false,
        },
    ]
}

/// The catalog's `routing`: `max_attempts`, the hostile corpus's body limit (so its cases get their
/// documented answers), and the fault's timeouts and outage window.
fn routing(low_timeouts: bool, no_window: bool) -> Value {
    let (limit, _) = llm_router_testkit::corpus::load();
    let mut r = json!({"max_attempts": MAX_ATTEMPTS, "max_request_bytes": limit});
    if low_timeouts {
        r["first_byte_timeout_ms"] = json!(LOW_TIMEOUT_MS);
        r["response_timeout_ms"] = json!(LOW_TIMEOUT_MS);
    }
    if no_window {
        r["outage_window_seconds"] = json!(0);
    }
    r
}

/// The Envoy running now (its pid, which is its process group), for [`stop_on_signal`].
static RUNNING: Mutex<Option<u32>> = Mutex::new(None);

/// An Envoy of ours, registered in [`RUNNING`] while it runs.
struct Running<T>(Option<T>);

impl<T> Running<T> {
    fn new(inner: T, pid: u32) -> Running<T> {
        *lock(&RUNNING) = Some(pid);
        Running(Some(inner))
    }
}

impl<T> std::ops::Deref for Running<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0.as_ref().unwrap_or_else(|| unreachable!("set until dropped"))
    }
}

impl<T> Drop for Running<T> {
    fn drop(&mut self) {
        // Unregistered first: once the harness has killed and reaped Envoy its pid may be reused.
        *lock(&RUNNING) = None;
        drop(self.0.take());
    }
}

/// On SIGINT or SIGTERM, kills the running Envoy's process group (Envoy runs in its own group, so a
/// terminal's ^C does not reach it) and exits: the harness's own clean-up would not run.
fn stop_on_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    for (kind, code) in [(SignalKind::interrupt(), 130), (SignalKind::terminate(), 143)] {
        std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            let received = rt.block_on(async {
                match signal(kind) {
                    Ok(mut s) => s.recv().await.is_some(),
                    Err(_) => false,
                }
            });
            if !received {
                return;
            }
            if let Some(pid) = lock(&RUNNING).take() {
                let _ = std::process::Command::new("kill")
                    .args(["-s", "KILL", "--", &format!("-{pid}")])
                    .status();
            }
            eprintln!("soak: interrupted");
            std::process::exit(code);
        });
    }
}

fn mock(name: &str) -> MockProvider {
    let m = MockProvider::start(name);
    // Nothing kept per request: a long run would only grow.
    m.set_recording(false);
    m.set_stream_shape(STREAM_CHUNKS, Duration::ZERO);
    m
}

/// Envoy running the generated config for [`PROVIDERS`] serving [`mix::MODEL`] at one price, `first`
/// behaving as `first` says (`None`: its port closed), the access log to /dev/null (formatted and
/// written as in production, not kept).
fn start_router(first: Option<Behavior>, routing: Value, envoy_concurrency: u32) -> Running<Router> {
    let mut mocks = Vec::new();
    let mut providers = Vec::new();
    let mut endpoints = Vec::new();
    for (k, name) in PROVIDERS.iter().enumerate() {
        let m = mock(name);
        providers.push(router::provider(name, m.port()));
        endpoints.push(router::endpoint(name, &format!("m@{name}"), 1.0));
        match (k, &first) {
            // Stopped: its port refuses connections.
            (0, None) => m.stop(),
            (0, Some(b)) => {
                m.set_behavior(b.clone());
                mocks.push(m);
            }
            _ => mocks.push(m),
        }
    }
    let catalog = router::catalog(
        providers,
        vec![json!({"id": mix::MODEL, "context_length": 1_000_000, "endpoints": endpoints})],
        routing,
    );
    let r = Router::start_with(catalog, mocks, envoy_concurrency, &envoy::wasm_path(), |yaml| {
        yaml.replace("/dev/stdout", "/dev/null")
    });
    let pid = r.envoy.pid();
    Running::new(r, pid)
}

/// Envoy's counters and gauges whose names start with one of `prefixes` (one admin request).
fn stats(admin_port: u16, prefixes: &[&str]) -> BTreeMap<String, u64> {
    let alternatives: Vec<String> = prefixes.iter().map(|p| p.replace('.', "\\.")).collect();
    let re = format!("^({})", alternatives.join("|"));
    let mut query = String::new();
    for b in re.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            query.push(b as char);
        } else {
            query.push_str(&format!("%{b:02X}"));
        }
    }
    let mut out = BTreeMap::new();
    let Ok(r) = http::try_request(admin_port, "GET", &format!("/stats?format=json&filter={query}"), &[], b"")
    else {
        return out;
    };
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    for s in v["stats"].as_array().into_iter().flatten() {
        if let (Some(n), Some(x)) = (s["name"].as_str(), s["value"].as_u64()) {
            out.insert(n.to_string(), x);
        }
    }
    out
}

/// VmRSS of a process, KB.
fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The figures of one load run, as JSON.
fn summary(t: &Tally, wall: Duration) -> Value {
    let mut lat = t.latency_us.clone();
    lat.sort_unstable();
    let with_header: u64 = t.attempts.values().sum();
    let attempts_sum: u64 = t.attempts.iter().map(|(n, c)| u64::from(*n) * c).sum();
    json!({
        "requests": t.requests,
        "ok": t.ok,
        "success_rate": t.success_rate(),
        "streamed": t.streamed,
        "rps": t.requests as f64 / wall.as_secs_f64().max(1e-9),
        "by_status": t.by_status,
        "latency_ms": {"p50": ms(pct(&lat, 50.0)), "p90": ms(pct(&lat, 90.0)), "p99": ms(pct(&lat, 99.0)),
                       "max": ms(lat.last().copied().unwrap_or(0))},
        "x_llm_attempts": {
            "mean": if with_header > 0 { attempts_sum as f64 / with_header as f64 } else { 0.0 },
            "max": t.attempts.keys().max().copied().unwrap_or(0),
            "histogram": t.attempts.iter().map(|(n, c)| (n.to_string(), json!(c))).collect::<serde_json::Map<_, _>>(),
            "over_max_attempts": t.attempts.iter().filter(|(n, _)| **n > MAX_ATTEMPTS).map(|(_, c)| c).sum::<u64>(),
            "missing": t.attempts_missing,
        },
        "served_by": t.served_by,
        "first_errors": t.errors,
    })
}

/// Runs `mix` against `port` for `seconds`, returning the tally and the wall time (load + the requests
/// under way at the end).
fn run_load(port: u16, mix: load::Mix, args: &Args, seconds: f64) -> (Tally, Duration) {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let handle = load::start(
        Load {
            port,
            mix,
            concurrency: usize::from(args.concurrency),
            duration: Duration::from_secs_f64(seconds),
            request_timeout: Duration::from_secs_f64(args.request_timeout),
        },
        tally.clone(),
    );
    let wall = handle.join().unwrap_or_default();
    let t = lock(&tally).clone();
    (t, wall)
}

fn run_faults(args: &Args, seconds: f64) -> Value {
    let mut runs = Vec::new();
    log(&format!("bare Envoy → one healthy mock, {seconds} s"));
    {
        let m = mock("bare");
        let bare = Envoy::start_with(&envoy::plain_proxy_yaml(m.port()), &[], args.envoy_concurrency)
            .unwrap_or_else(|e| panic!("bare Envoy did not start: {e}"));
        let pid = bare.pid();
        let bare = Running::new(bare, pid);
        let (t, wall) = run_load(bare.port, mix::faults(), args, seconds);
        let mut s = summary(&t, wall);
        s["name"] = json!("bare-envoy");
        s["what"] = json!("bare Envoy straight to one healthy mock (no wasm, no retries)");
        s["provider_requests_per_client_request"] = json!(m.received() as f64 / t.requests.max(1) as f64);
        s["mock_received"] = json!({"bare": m.received()});
        runs.push(s);
    }
    for f in faults() {
        log(&format!("{}: {}, {seconds} s", f.name, f.what));
        let r = start_router(f.first.clone(), routing(f.low_timeouts, f.no_window), args.envoy_concurrency);
        let created = "wasm.envoy.wasm.runtime.v8.created";
        let before = stats(r.envoy.admin_port, &[created]).get(created).copied();
        let (t, wall) = run_load(r.envoy.port, mix::faults(), args, seconds);
        let mut s = summary(&t, wall);
        let received: BTreeMap<String, u64> =
            r.mocks.iter().map(|m| (m.name().to_string(), m.received())).collect();
        let total: u64 = received.values().sum();
        s["name"] = json!(f.name);
        s["what"] = json!(f.what);
        s["mock_received"] = json!(received);
        s["provider_requests_per_client_request"] = json!(total as f64 / t.requests.max(1) as f64);
        // What Envoy saw of `first`: its two clusters (first attempts, fallbacks).
        let first =
            stats(r.envoy.admin_port, &["cluster.llm_provider_first.", "cluster.llm_fallback_first."]);
        let sum =
            |suffix: &str| -> u64 { first.iter().filter(|(n, _)| n.ends_with(suffix)).map(|(_, v)| v).sum() };
        s["envoy_first"] = json!({
            "attempts": sum(".upstream_rq_total") + sum(".upstream_cx_connect_fail"),
            "upstream_rq_total": sum(".upstream_rq_total"),
            "upstream_cx_connect_fail": sum(".upstream_cx_connect_fail"),
            "upstream_rq_per_try_timeout": sum(".upstream_rq_per_try_timeout"),
            "upstream_rq_rx_reset": sum(".upstream_rq_rx_reset"),
            "upstream_rq_tx_reset": sum(".upstream_rq_tx_reset"),
        });
        let vm = stats(r.envoy.admin_port, &["wasm.envoy.wasm.runtime.v8."]);
        let after = vm.get(created).copied();
        s["wasm_vms"] = json!({
            "created_start": before,
            "created_end": after,
            "replaced": match (before, after) { (Some(a), Some(b)) => Some(b.saturating_sub(a)), _ => None },
            "active_end": vm.get("wasm.envoy.wasm.runtime.v8.active"),
        });
        s["routing"] = routing(f.low_timeouts, f.no_window);
        runs.push(s);
    }
    json!(runs)
}

/// Least-squares slope of y over x (per unit of x); `None` with fewer than two distinct x.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

fn run_soak(args: &Args, minutes: f64) -> Value {
    let (hostile, left_out) = mix::hostile_cases();
    log(&format!(
        "soak: {minutes} min, {} connections, bodies 1 KB–1 MB, a third streamed, 1 % hostile ({} corpus cases; left out: {})",
        args.concurrency,
        hostile.len(),
        if left_out.is_empty() { "none".to_string() } else { left_out.join(", ") }
    ));
    let hostile_names: Vec<String> =
        hostile.iter().filter_map(|s| s.hostile.as_ref().map(|(n, _)| n.clone())).collect();
    let r = start_router(Some(Behavior::Ok), routing(false, false), args.envoy_concurrency);
    let pid = r.envoy.pid();
    let admin = r.envoy.admin_port;
    let watched = ["wasm.envoy.wasm.runtime.v8.", "server.memory_allocated", "server.memory_heap_size"];
    let tally = Arc::new(Mutex::new(Tally::default()));
    let seconds = minutes * 60.0;
    let started = Instant::now();
    let handle = load::start(
        Load {
            port: r.envoy.port,
            mix: mix::soak(hostile),
            concurrency: usize::from(args.concurrency),
            duration: Duration::from_secs_f64(seconds),
            request_timeout: Duration::from_secs_f64(args.request_timeout),
        },
        tally.clone(),
    );
    let every = Duration::from_secs_f64(args.sample_seconds.max(1.0));
    let mut samples: Vec<Value> = Vec::new();
    let mut previous = Tally::default();
    let mut k = 0u32;
    loop {
        // The next tick, or the end of the load if it comes first.
        let due = started + every * k;
        while !handle.is_finished() {
            let Some(left) = due.checked_duration_since(Instant::now()) else { break };
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
        let finished = handle.is_finished();
        let t = lock(&tally).counts();
        let s = stats(admin, &watched);
        let errors: BTreeMap<String, u64> = t
            .by_status
            .iter()
            .map(|(status, n)| (status.clone(), n - previous.by_status.get(status).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let sample = json!({
            "t_s": started.elapsed().as_secs_f64(),
            "rss_kb": rss_kb(pid),
            "allocated_bytes": s.get("server.memory_allocated"),
            "heap_bytes": s.get("server.memory_heap_size"),
            "vms_created": s.get("wasm.envoy.wasm.runtime.v8.created"),
            "vms_active": s.get("wasm.envoy.wasm.runtime.v8.active"),
            "requests": t.requests,
            "ok": t.ok,
            "hostile": t.hostile,
            "interval_requests": t.requests - previous.requests,
            "interval_errors": errors,
        });
        println_sample(&sample);
        samples.push(sample);
        previous = t;
        if finished {
            break;
        }
        k += 1;
    }
    let wall = handle.join().unwrap_or_default();
    let t = lock(&tally).clone();
    let rss: Vec<(f64, f64)> =
        samples.iter().filter_map(|s| Some((s["t_s"].as_f64()?, s["rss_kb"].as_f64()? / 1024.0))).collect();
    let alloc: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|s| Some((s["t_s"].as_f64()?, s["allocated_bytes"].as_f64()? / 1048576.0)))
        .collect();
    // The growth window: the last five minutes of the load, after its first minute (half of a shorter
    // soak), so the climb from idle to the working set is not counted as growth.
    let from = (seconds - GROWTH_WINDOW_S).max((seconds / 2.0).min(60.0));
    let to = seconds + 1.0;
    let window = |pts: &[(f64, f64)]| -> Vec<(f64, f64)> {
        pts.iter().copied().filter(|p| p.0 >= from && p.0 <= to).collect()
    };
    let per_min = |pts: &[(f64, f64)]| slope(&window(pts)).map(|s| s * 60.0);
    let first_last = |pts: &[(f64, f64)]| -> Option<f64> {
        let w = window(pts);
        let (a, b) = (w.first()?, w.last()?);
        (b.0 > a.0).then(|| (b.1 - a.1) / (b.0 - a.0) * 60.0)
    };
    let vms = |key: &str| samples.iter().filter_map(|s| s[key].as_u64()).collect::<Vec<_>>();
    let created = vms("vms_created");
    let mut out = summary(&t, wall);
    out["minutes"] = json!(minutes);
    out["hostile"] = json!({
        "sent": t.hostile,
        "as_documented": t.hostile_documented,
        "otherwise": t.hostile_wrong,
        "cases": hostile_names,
        "left_out": left_out,
    });
    out["rss_mb"] = json!({
        "start": rss.first().map(|p| p.1),
        "end": rss.last().map(|p| p.1),
        "max": rss.iter().map(|p| p.1).fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x)))),
        "growth_window_s": [from, to.min(rss.last().map_or(to, |p| p.0))],
        "growth_per_min_fit": per_min(&rss),
        "growth_per_min_first_last": first_last(&rss),
    });
    out["allocated_mb"] = json!({
        "start": alloc.first().map(|p| p.1),
        "end": alloc.last().map(|p| p.1),
        "growth_per_min_fit": per_min(&alloc),
    });
    out["wasm_vms"] = json!({
        "created_start": created.first(),
        "created_end": created.last(),
        "replaced": match (created.first(), created.last()) { (Some(a), Some(b)) => Some(b - a), _ => None },
        "active_end": vms("vms_active").last(),
    });
    out["shared_data_keys"] = json!({
        "measured": Value::Null,
        "why": "Envoy exposes no stat or admin page for proxy-wasm shared data, and the proxy-wasm ABI has no call \
                that lists keys, so neither Envoy nor the filter can count them without new code in the filter. \
                By construction the filter writes only `llm_router.health.<provider>` (src/filter/health_memory.rs; \
                a cleared record is written empty, never deleted), so at most one key per catalog provider.",
        "bound_by_construction": PROVIDERS.len(),
    });
    out["samples"] = json!(samples);
    out
}

fn println_sample(s: &Value) {
    let mb = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{:.1}", x / 1024.0));
    let alloc = s["allocated_bytes"].as_f64().map_or("-".to_string(), |x| format!("{:.1}", x / 1048576.0));
    eprintln!(
        "    t={:>6.0} s  RSS {:>6} MB  allocated {:>6} MB  VMs created {} active {}  requests {:>7} (+{})  errors {}",
        s["t_s"].as_f64().unwrap_or(0.0),
        mb(&s["rss_kb"]),
        alloc,
        s["vms_created"],
        s["vms_active"],
        s["requests"],
        s["interval_requests"],
        s["interval_errors"]
    );
}

fn log(msg: &str) {
    eprintln!("==> {msg}");
}

fn f(v: &Value, digits: usize) -> String {
    v.as_f64().map_or("-".to_string(), |x| format!("{x:.digits$}"))
}

fn statuses(v: &Value) -> String {
    let parts: Vec<String> = v.as_object().into_iter().flatten().map(|(k, n)| format!("{k}×{n}")).collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

fn print_faults(runs: &Value, args: &Args, seconds: f64) {
    println!(
        "\nFaults under load: {seconds} s of load each, {} client connections, Envoy --concurrency {}; three providers at one price \
         (a third of the first attempts each), max_attempts {MAX_ATTEMPTS}; the faulty one is `first`",
        args.concurrency, args.envoy_concurrency
    );
    println!(
        "{:<13} {:>8} {:>6} {:>8} │ {:>8} {:>6} {:>4} {:>4} {:>6} │ {:>7} {:>7} {:>8} {:>8} │ errors",
        "scenario",
        "requests",
        "req/s",
        "success",
        "prov/req",
        "att",
        "max",
        ">max",
        "→first",
        "p50 ms",
        "p99 ms",
        "+p99 ms",
        "max ms"
    );
    let bare_p99 = runs[0]["latency_ms"]["p99"].as_f64();
    for r in runs.as_array().into_iter().flatten() {
        let bare = r["name"] == "bare-envoy";
        let p99 = r["latency_ms"]["p99"].as_f64();
        let added = match (bare, p99, bare_p99) {
            (false, Some(a), Some(b)) => format!("{:+.1}", a - b),
            _ => "-".into(),
        };
        let att = &r["x_llm_attempts"];
        println!(
            "{:<13} {:>8} {:>6} {:>7.2}% │ {:>8} {:>6} {:>4} {:>4} {:>6} │ {:>7} {:>7} {:>8} {:>8} │ {}",
            r["name"].as_str().unwrap_or("?"),
            r["requests"].to_string(),
            f(&r["rps"], 0),
            r["success_rate"].as_f64().unwrap_or(0.0) * 100.0,
            f(&r["provider_requests_per_client_request"], 3),
            if bare { "-".into() } else { f(&att["mean"], 3) },
            if bare { "-".into() } else { att["max"].to_string() },
            if bare { "-".into() } else { att["over_max_attempts"].to_string() },
            r["envoy_first"]["attempts"].as_u64().map_or("-".into(), |n| n.to_string()),
            f(&r["latency_ms"]["p50"], 1),
            f(&r["latency_ms"]["p99"], 1),
            added,
            f(&r["latency_ms"]["max"], 0),
            statuses(&r["by_status"]),
        );
    }
    println!(
        "prov/req: chat requests the mocks received ÷ client requests (a refused connection reaches no mock); att/max: \
         mean and largest x-llm-attempts; >max: responses with more than {MAX_ATTEMPTS}; →first: attempts Envoy made to `first` \
         (requests sent + connections refused, its clusters' stats); latency of the successful requests \
         (max: the slowest); +p99: p99 − bare Envoy's p99; errors: client requests by status (timeout: no whole answer in {} s); \
         /w0: routing.outage_window_seconds 0 (a provider that failed is not moved last, so it keeps its third of the \
         first attempts and the retries carry the load)",
        args.request_timeout
    );
}

fn print_soak(s: &Value) {
    let h = &s["hostile"];
    println!(
        "\nSoak: {} min, {} requests ({} streamed) + {} hostile, {} req/s; success {:.3} % (errors: {}); hostile as documented {}/{}{}",
        s["minutes"],
        s["requests"],
        s["streamed"],
        h["sent"],
        f(&s["rps"], 0),
        s["success_rate"].as_f64().unwrap_or(0.0) * 100.0,
        statuses(&s["by_status"]),
        h["as_documented"],
        h["sent"],
        if h["otherwise"].as_object().is_some_and(|o| !o.is_empty()) {
            format!(" (otherwise: {})", h["otherwise"])
        } else {
            String::new()
        }
    );
    println!(
        "  latency of successful requests: p50 {} ms, p99 {} ms; x-llm-attempts max {}",
        f(&s["latency_ms"]["p50"], 1),
        f(&s["latency_ms"]["p99"], 1),
        s["x_llm_attempts"]["max"]
    );
    let r = &s["rss_mb"];
    println!(
        "  Envoy RSS: {} MB at the start (idle), {} MB at the end (max {}); growth from {} s to {} s of the load: {} MB/min (linear fit), \
         {} MB/min (first→last)",
        f(&r["start"], 1),
        f(&r["end"], 1),
        f(&r["max"], 1),
        f(&r["growth_window_s"][0], 0),
        f(&r["growth_window_s"][1], 0),
        f(&r["growth_per_min_fit"], 2),
        f(&r["growth_per_min_first_last"], 2)
    );
    let a = &s["allocated_mb"];
    println!(
        "  Envoy allocated (server.memory_allocated): {} MB → {} MB, {} MB/min over the same window",
        f(&a["start"], 1),
        f(&a["end"], 1),
        f(&a["growth_per_min_fit"], 2)
    );
    let v = &s["wasm_vms"];
    println!(
        "  wasm VMs: created {} at the start, {} at the end (replaced: {}), active {}",
        v["created_start"], v["created_end"], v["replaced"], v["active_end"]
    );
    println!(
        "  shared-data keys: not measurable (see results.json); at most {} by construction",
        s["shared_data_keys"]["bound_by_construction"]
    );
}

fn main() -> ExitCode {
    let args = Args::parse();
    let minutes = args.minutes.unwrap_or(if args.quick { 1.0 } else { 10.0 });
    let fault_seconds = args.fault_seconds.unwrap_or(if args.quick { 5.0 } else { 25.0 });
    if !(minutes > 0.0 && fault_seconds > 0.0 && args.request_timeout > 0.0) {
        eprintln!("soak: --minutes, --fault-seconds and --request-timeout must be positive");
        return ExitCode::from(2);
    }
    stop_on_signal();
    // Fail early, with the harness's message, when Envoy or the filter is missing.
    let _ = envoy::envoy_bin();
    let wasm = envoy::wasm_path();
    let started = Instant::now();
    let mut out = json!({
        "mode": if args.quick { "quick" } else { "full" },
        "client_concurrency": args.concurrency,
        "envoy_concurrency": args.envoy_concurrency,
        "max_attempts": MAX_ATTEMPTS,
        "request_timeout_s": args.request_timeout,
        "wasm": wasm.display().to_string(),
    });
    if !args.soak_only {
        out["fault_seconds"] = json!(fault_seconds);
        out["faults"] = run_faults(&args, fault_seconds);
    }
    if !args.faults_only {
        out["soak"] = run_soak(&args, minutes);
    }
    out["elapsed_s"] = json!(started.elapsed().as_secs_f64());
    if !args.soak_only {
        print_faults(&out["faults"], &args, fault_seconds);
    }
    if !args.faults_only {
        print_soak(&out["soak"]);
    }
    let path = args.out.join("results.json");
    let written = std::fs::create_dir_all(&args.out)
        .and_then(|()| std::fs::write(&path, serde_json::to_string_pretty(&out).unwrap_or_default()));
    match written {
        Ok(()) => println!("\nresults: {}", path.display()),
        Err(e) => {
            eprintln!("soak: cannot write {}: {e}", path.display());
            return ExitCode::from(1);
        }
    }
    // Flag what must not happen: an attempt count over max_attempts, a VM replaced during the soak.
    let over: u64 = out["faults"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["x_llm_attempts"]["over_max_attempts"].as_u64())
        .sum();
    let replaced = out["soak"]["wasm_vms"]["replaced"].as_u64().unwrap_or(0)
        + out["faults"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["wasm_vms"]["replaced"].as_u64())
            .sum::<u64>();
    if over > 0 || replaced > 0 {
        eprintln!(
            "soak: FLAGGED: {over} responses with more than {MAX_ATTEMPTS} attempts, {replaced} wasm VMs replaced"
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
