//! The service: `ShouldRateLimit` over h2c on 127.0.0.1, on its own Tokio runtime.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::runtime::Runtime;

use crate::config::Config;
use crate::grpc::{self, status, GrpcBody};
use crate::limiter::{self, LimitError, Settings};
use crate::proto::{RateLimitRequest, RateLimitResponse, SHOULD_RATE_LIMIT_PATH};

/// Unix time in seconds, as the service reads it for every request.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// How the service runs, beyond its configuration file. The default is the real service's
/// defaults, on a free port, on the system clock.
#[derive(Clone, Default)]
pub struct Options {
    /// The real service's environment settings (key prefix, expiry jitter).
    pub settings: Settings,
    /// 127.0.0.1 port to serve on; 0 picks a free one.
    pub port: u16,
    /// The time windows are computed from; the system clock by default. Tests can pin it to
    /// control which window a request falls in.
    pub clock: Option<Clock>,
    /// Print every call (request and answer) to stderr.
    pub log_calls: bool,
}

/// One `ShouldRateLimit` the service answered: what came in, and the answer or the error sent.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub request: RateLimitRequest,
    pub response: Result<RateLimitResponse, String>,
}

struct Shared {
    config: Config,
    redis: redis::aio::MultiplexedConnection,
    options: Options,
    calls: Mutex<Vec<Call>>,
    /// Notified on every new call, for [`RateLimitService::wait_for_calls`].
    called: Condvar,
}

/// A running stand-in for envoyproxy/ratelimit. Dropping it stops it.
pub struct RateLimitService {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// Serves the listener and every connection; shutting it down closes them all.
    runtime: Option<Runtime>,
}

impl Drop for RateLimitService {
    fn drop(&mut self) {
        // Not a plain drop: dropping a runtime panics inside an async context (a #[tokio::test]).
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RateLimitService {
    /// Loads `config_yaml` (one domain, envoyproxy/ratelimit's format), connects to the Redis at
    /// `redis_addr` and serves on a free port of 127.0.0.1 with the real service's defaults.
    pub fn start(config_yaml: &str, redis_addr: SocketAddr) -> Result<RateLimitService, String> {
        Self::start_with(config_yaml, redis_addr, Options::default())
    }

    /// [`RateLimitService::start`] with options.
    pub fn start_with(
        config_yaml: &str,
        redis_addr: SocketAddr,
        options: Options,
    ) -> Result<RateLimitService, String> {
        let config = Config::parse(config_yaml).map_err(|e| format!("ratelimit config: {e}"))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ratelimit-standin")
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        let setup = async {
            let redis = redis::Client::open(format!("redis://{redis_addr}/"))
                .map_err(|e| e.to_string())?
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| format!("redis {redis_addr}: {e}"))?;
            let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, options.port))
                .await
                .map_err(|e| format!("bind 127.0.0.1:{}: {e}", options.port))?;
            Ok::<_, String>((listener, redis))
        };
        // On a thread of its own: `block_on` panics on a thread already running async code, and
        // tests may start the service from a #[tokio::test].
        let (listener, redis) = std::thread::scope(|s| s.spawn(|| runtime.block_on(setup)).join())
            .map_err(|_| "ratelimit service setup panicked".to_string())??;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let shared = Arc::new(Shared {
            config,
            redis,
            options,
            calls: Mutex::new(Vec::new()),
            called: Condvar::new(),
        });
        runtime.spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(RateLimitService { addr, shared, runtime: Some(runtime) })
    }

    /// Where it serves gRPC (h2c).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The domain of its configuration.
    pub fn domain(&self) -> &str {
        self.shared.config.domain()
    }

    /// Every call answered so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.shared.calls).clone()
    }

    /// Waits until at least `n` calls have been answered, or `timeout` passes; returns them all.
    /// For calls Envoy makes without waiting for them (`apply_on_stream_done`, sent after the
    /// response). It blocks the thread: from async code, run it with `spawn_blocking`.
    pub fn wait_for_calls(&self, n: usize, timeout: Duration) -> Vec<Call> {
        let deadline = Instant::now() + timeout;
        let mut calls = lock(&self.shared.calls);
        while calls.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            calls = self.shared.called.wait_timeout(calls, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        calls.clone()
    }

    /// Forgets the calls recorded so far.
    pub fn clear_calls(&self) {
        lock(&self.shared.calls).clear();
    }

    /// The Redis key that counts `descriptor` right now (by the service's clock), if a limit
    /// applies to it and is counted: what to read with [`crate::Redis::counter`].
    pub fn key_for(&self, domain: &str, descriptor: &crate::proto::RateLimitDescriptor) -> Option<String> {
        let limit = self.shared.config.limit_for(domain, descriptor).filter(|l| !l.unlimited)?;
        limiter::cache_key(
            &self.shared.options.settings.key_prefix,
            domain,
            descriptor,
            &limit,
            self.shared.now(),
        )
    }
}

impl Shared {
    fn now(&self) -> i64 {
        match &self.options.clock {
            Some(clock) => clock(),
            None => SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64),
        }
    }

    async fn answer(&self, body: &[u8]) -> Result<RateLimitResponse, (u32, String)> {
        let message = grpc::unframe(body).map_err(|e| (status::INTERNAL, e))?;
        let request: RateLimitRequest = prost::Message::decode(message)
            .map_err(|e| (status::INTERNAL, format!("decoding the request: {e}")))?;
        // The multiplexed connection is a cheap handle onto one shared connection.
        let mut redis = self.redis.clone();
        let result = limiter::should_rate_limit(
            &self.config,
            &mut redis,
            &self.options.settings,
            &request,
            self.now(),
        )
        .await
        .map_err(|e| match e {
            LimitError::Service(m) => m,
            LimitError::Redis(e) => format!("redis error: {e}"),
        });
        if self.options.log_calls {
            eprintln!("ShouldRateLimit {request:?}\n  -> {result:?}");
        }
        let call = Call { request, response: result.clone() };
        lock(&self.calls).push(call);
        self.called.notify_all();
        result.map_err(|m| (status::UNKNOWN, m))
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(Arc::clone(&shared), req));
            // A connection error concerns that connection only.
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<GrpcBody>, Infallible> {
    if req.uri().path() != SHOULD_RATE_LIMIT_PATH {
        let text = format!("unknown method {}", req.uri().path());
        return Ok(GrpcBody::response(Err((status::UNIMPLEMENTED, text))));
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(GrpcBody::response(Err((status::INTERNAL, format!("reading the request: {e}")))))
        }
    };
    let result = shared.answer(&body).await;
    Ok(GrpcBody::response(result.map(|r| grpc::frame(&r))))
}
