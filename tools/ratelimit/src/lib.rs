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
//! Envoy's `envoy.filters.http.ratelimit` waits only 20 ms for an answer unless its `timeout` is
//! set: give tests a larger one (e.g. `timeout: 1s`) so that a loaded machine does not turn slow
//! answers into rate limit errors. What Envoy 1.40 was seen sending to this service:
//! - a descriptor's own `hits_addend` only from `rate_limits` in the filter's per-route config
//!   (`RateLimitPerRoute`) or in the filter config; a route's own `rate_limits` ignore `hits_addend`;
//! - with `apply_on_stream_done`, a second call after the response (also after the filter's own
//!   429) whose answer is ignored; its `hits_addend` format can read `%RESP(..)%`, dynamic metadata
//!   and filter state, even filter state a wasm filter set in `on_log`;
//! - filter state `envoy.ratelimit.hits_addend` (which a wasm filter can set with the foreign
//!   function `set_envoy_filter_state`) as the request-level `hits_addend` of both calls.
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
