//! A small, faithful stand-in for [envoyproxy/ratelimit], Envoy's global rate limit service, for
//! tests: the gRPC `ShouldRateLimit` method over h2c, its YAML configuration, and its fixed-window
//! counters in a real Redis (same keys, same `INCRBY`/`EXPIRE`, same answers).
//!
//! ```no_run
//! use llm_router_ratelimit::{proto::RateLimitDescriptor, RateLimitService, Redis};
//!
//! let redis = Redis::start()?;
//! let rls = RateLimitService::start(
//!     "domain: llm\ndescriptors:\n  - key: client\n    rate_limit: { unit: minute, requests_per_unit: 5 }\n",
//!     redis.addr(),
//! )?;
//! // Point Envoy's rate limit cluster at rls.addr(); afterwards:
//! let d = RateLimitDescriptor::new(&[("client", "alice")]);
//! let key = rls.key_for("llm", &d).ok_or("no limit")?;
//! assert_eq!(redis.counter(&key)?, Some(1));
//! # Ok::<(), String>(())
//! ```
//!
//! What it leaves out: statistics, the local over-limit cache, `STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT`,
//! global shadow and quota modes, response headers and dynamic metadata, memcached, several
//! configuration files, and Redis Cluster. `duration_until_reset` is computed from the same clock
//! reading as the key, where the service reads its clock a second time.
//!
//! [envoyproxy/ratelimit]: https://github.com/envoyproxy/ratelimit

pub mod config;
pub mod grpc;
pub mod limiter;
pub mod proto;
mod redis_server;
mod service;

pub use grpc::{should_rate_limit, CallError};
pub use redis_server::{redis_server_binary, Redis};
pub use service::{Call, Clock, Options, RateLimitService};
