//! Fixed windows counted in Redis, as envoyproxy/ratelimit's Redis cache does it.
//!
//! A port of `src/redis/fixed_cache_impl.go`, `src/limiter/{base_limiter,cache_key}.go`,
//! `src/utils/utilities.go` and the response assembly of `src/service/ratelimit.go`
//! (envoyproxy/ratelimit at f2fb157), with the service's defaults: no local over-limit cache,
//! `STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT=false`, no global shadow or quota mode, one Redis.
//!
//! - Every descriptor with a limit adds its hits with `INCRBY key hits` then `EXPIRE key
//!   window+jitter`, in one pipeline, over the limit or not: a refused request still counts.
//! - `hits` is the descriptor's own `hits_addend` when present, 0 included (0 is a pure check:
//!   `INCRBY key 0` reads the count); otherwise the request's `hits_addend`, 0 meaning 1.
//! - The key is `prefix + domain + "_" + (key + "_" + value + "_")* + window start`, the window start
//!   being unix time rounded down to a multiple of the unit's length in seconds. Windows are fixed
//!   lengths counted from the epoch: a WEEK is 7 days (starting on Thursdays, as 1970-01-01 was), a
//!   MONTH 30 days and a YEAR 365 days, not calendar months or years.
//! - Over the limit means the count after adding exceeds `requests_per_unit`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use crate::config::{Config, Limit};
use crate::proto::{
    Code, DescriptorStatus, Duration, RateLimit, RateLimitDescriptor, RateLimitRequest, RateLimitResponse,
    Unit,
};

/// The length of a unit's window in seconds (`UnitToDivider`); `None` for UNKNOWN.
pub fn unit_seconds(unit: Unit) -> Option<i64> {
    Some(match unit {
        Unit::Unknown => return None,
        Unit::Second => 1,
        Unit::Minute => 60,
        Unit::Hour => 60 * 60,
        Unit::Day => 60 * 60 * 24,
        Unit::Week => 60 * 60 * 24 * 7,
        Unit::Month => 60 * 60 * 24 * 30,
        Unit::Year => 60 * 60 * 24 * 365,
    })
}

/// The start (unix seconds) of the window `now` falls in.
pub fn window_start(now: i64, window: i64) -> i64 {
    (now / window) * window
}

/// Seconds until the window `now` falls in ends (`CalculateReset`): the full window at its start.
pub fn seconds_until_reset(now: i64, window: i64) -> i64 {
    window - now % window
}

/// The Redis key counting `descriptor` under `limit` at time `now` (`GenerateCacheKey`).
/// `prefix` is the service's `CACHE_KEY_PREFIX` (empty by default).
pub fn cache_key(
    prefix: &str,
    domain: &str,
    descriptor: &RateLimitDescriptor,
    limit: &Limit,
    now: i64,
) -> Option<String> {
    let window = unit_seconds(limit.unit)?;
    let mut key = format!("{prefix}{domain}_");
    for (i, e) in descriptor.entries.iter().enumerate() {
        let value = limit.shared_values.get(i).and_then(Option::as_deref).unwrap_or(&e.value);
        key.push_str(&e.key);
        key.push('_');
        key.push_str(value);
        key.push('_');
    }
    key.push_str(&window_start(now, window).to_string());
    Some(key)
}

/// The hits each descriptor adds (`GetHitsAddends`).
pub fn hits_addends(request: &RateLimitRequest) -> Vec<u64> {
    let default = u64::from(request.hits_addend.max(1));
    request.descriptors.iter().map(|d| d.hits_addend.map_or(default, |h| h.value)).collect()
}

/// What can fail while answering: the service's errors become a non-OK gRPC status, which Envoy
/// treats as a rate limit service error (`failure_mode_deny` decides).
#[derive(Debug)]
pub enum LimitError {
    /// A request the service refuses (`serviceError`), or a limit it cannot count.
    Service(String),
    /// Redis failed (`RedisError`).
    Redis(redis::RedisError),
}

impl std::fmt::Display for LimitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitError::Service(m) => f.write_str(m),
            LimitError::Redis(e) => write!(f, "redis error: {e}"),
        }
    }
}

/// Knobs the real service takes from its environment, with its defaults.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `CACHE_KEY_PREFIX` (default empty).
    pub key_prefix: String,
    /// `EXPIRATION_JITTER_MAX_SECONDS` (default 300): a key's TTL is its window plus a random
    /// whole number of seconds below this, so that keys do not all expire at once.
    pub expiration_jitter_max_seconds: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { key_prefix: String::new(), expiration_jitter_max_seconds: 300 }
    }
}

/// Answers one `ShouldRateLimit` at unix time `now`, counting in Redis through `redis`.
pub async fn should_rate_limit<C: redis::aio::ConnectionLike>(
    config: &Config,
    redis: &mut C,
    settings: &Settings,
    request: &RateLimitRequest,
    now: i64,
) -> Result<RateLimitResponse, LimitError> {
    if request.domain.is_empty() {
        return Err(LimitError::Service("rate limit domain must not be empty".into()));
    }
    if request.descriptors.is_empty() {
        return Err(LimitError::Service("rate limit descriptor list must not be empty".into()));
    }
    let limits = config.limits_for(&request.domain, &request.descriptors);
    let hits = hits_addends(request);

    // Keys to count: descriptors with a limit that is not `unlimited`.
    let mut counted = Vec::new();
    let mut pipe = redis::pipe();
    for (i, (descriptor, limit)) in request.descriptors.iter().zip(&limits).enumerate() {
        let Some(limit) = limit.as_ref().filter(|l| !l.unlimited) else { continue };
        let (Some(key), Some(window)) = (
            cache_key(&settings.key_prefix, &request.domain, descriptor, limit, now),
            unit_seconds(limit.unit),
        ) else {
            return Err(LimitError::Service(format!("descriptor {i}: limit with unit UNKNOWN")));
        };
        let hits = hits.get(i).copied().unwrap_or(1);
        pipe.cmd("INCRBY")
            .arg(&key)
            .arg(hits)
            .cmd("EXPIRE")
            .arg(&key)
            .arg(window + jitter(settings))
            .ignore();
        counted.push(i);
    }
    let counts: Vec<u64> = if counted.is_empty() {
        Vec::new()
    } else {
        pipe.query_async(redis).await.map_err(LimitError::Redis)?
    };

    let mut statuses = Vec::with_capacity(request.descriptors.len());
    let (mut failed, mut quota_total, mut quota_failed) = (0, 0, 0);
    for (i, limit) in limits.iter().enumerate() {
        let status = match limit {
            // No matching limit (or replaced): OK, with nothing else filled in.
            None => DescriptorStatus { code: Code::Ok as i32, ..Default::default() },
            Some(l) if l.unlimited => {
                DescriptorStatus { code: Code::Ok as i32, limit_remaining: u32::MAX, ..Default::default() }
            }
            Some(l) => {
                let after =
                    counted.iter().position(|&c| c == i).and_then(|at| counts.get(at)).copied().unwrap_or(0);
                let status = counted_status(l, after, now);
                if l.quota_mode {
                    quota_total += 1;
                    quota_failed += usize::from(status.code == Code::OverLimit as i32);
                } else {
                    failed += usize::from(status.code == Code::OverLimit as i32);
                }
                status
            }
        };
        statuses.push(status);
    }
    let over = failed > 0 || (quota_total > 0 && quota_total == quota_failed);
    Ok(RateLimitResponse { overall_code: if over { Code::OverLimit } else { Code::Ok } as i32, statuses })
}

/// The status of a counted descriptor whose key holds `after` once this request's hits are added.
pub fn counted_status(limit: &Limit, after: u64, now: i64) -> DescriptorStatus {
    let max = u64::from(limit.requests_per_unit);
    let over = after > max;
    DescriptorStatus {
        // Shadow mode: counted and judged as usual, but never refused.
        code: if over && !limit.shadow_mode { Code::OverLimit } else { Code::Ok } as i32,
        current_limit: Some(RateLimit {
            requests_per_unit: limit.requests_per_unit,
            unit: limit.unit as i32,
            name: limit.name.clone(),
        }),
        limit_remaining: if over { 0 } else { u32::try_from(max - after).unwrap_or(u32::MAX) },
        duration_until_reset: unit_seconds(limit.unit)
            .map(|w| Duration { seconds: seconds_until_reset(now, w), nanos: 0 }),
    }
}

/// A random whole number of seconds in `[0, max)` (`JitterRand.Int63n`), 0 when `max` is 0.
fn jitter(settings: &Settings) -> i64 {
    let max = settings.expiration_jitter_max_seconds;
    if max <= 0 {
        return 0;
    }
    // A fresh RandomState is randomly keyed: enough randomness for spreading expiries.
    let r = RandomState::new().build_hasher().finish();
    i64::try_from(r % max as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::UInt64Value;

    fn limit(rpu: u32, unit: Unit) -> Limit {
        Limit {
            requests_per_unit: rpu,
            unit,
            name: String::new(),
            replaces: vec![],
            unlimited: false,
            shadow_mode: false,
            quota_mode: false,
            shared_values: vec![],
        }
    }

    #[test]
    fn windows_are_fixed_lengths_from_the_epoch() {
        // 2026-03-04T05:06:07Z, a Wednesday.
        let now = 1_772_600_767;
        assert_eq!(window_start(now, unit_seconds(Unit::Second).unwrap()), now);
        assert_eq!(window_start(now, unit_seconds(Unit::Minute).unwrap()), now - 7);
        assert_eq!(window_start(now, unit_seconds(Unit::Hour).unwrap()), now - 6 * 60 - 7);
        assert_eq!(window_start(now, unit_seconds(Unit::Day).unwrap()), 1_772_582_400); // 2026-03-04T00:00Z
                                                                                        // Weeks start on Thursdays (1970-01-01 was one): 2026-02-26T00:00Z.
        assert_eq!(window_start(now, unit_seconds(Unit::Week).unwrap()), 1_772_064_000);
        // 30-day "months" and 365-day "years" drift from the calendar: 2026-02-06 and 2025-12-18.
        assert_eq!(window_start(now, unit_seconds(Unit::Month).unwrap()), 1_770_336_000);
        assert_eq!(window_start(now, unit_seconds(Unit::Year).unwrap()), 1_766_016_000);
        assert_eq!(unit_seconds(Unit::Unknown), None);
    }

    #[test]
    fn reset_is_the_rest_of_the_window() {
        assert_eq!(seconds_until_reset(120, 60), 60, "at a window's start the whole window is left");
        assert_eq!(seconds_until_reset(179, 60), 1);
        assert_eq!(seconds_until_reset(1_772_600_767, 86_400), 86_400 - (5 * 3600 + 6 * 60 + 7));
    }

    #[test]
    fn key_scheme() {
        let d = RateLimitDescriptor::new(&[("client", "alice"), ("model", "big")]);
        let l = limit(5, Unit::Minute);
        assert_eq!(cache_key("", "llm", &d, &l, 130).unwrap(), "llm_client_alice_model_big_120");
        assert_eq!(cache_key("p:", "llm", &d, &l, 59).unwrap(), "p:llm_client_alice_model_big_0");
        let mut shared = l.clone();
        shared.shared_values = vec![None, Some("b*".into())];
        assert_eq!(cache_key("", "llm", &d, &shared, 130).unwrap(), "llm_client_alice_model_b*_120");
        assert_eq!(cache_key("", "llm", &d, &limit(1, Unit::Unknown), 130), None);
    }

    #[test]
    fn hits_per_descriptor_override_the_request() {
        let mut r = RateLimitRequest {
            domain: "d".into(),
            descriptors: vec![
                RateLimitDescriptor::new(&[("a", "1")]),
                RateLimitDescriptor::new(&[("a", "2")]).with_hits(7),
                RateLimitDescriptor::new(&[("a", "3")]).with_hits(0),
            ],
            hits_addend: 0,
        };
        assert_eq!(hits_addends(&r), vec![1, 7, 0], "request 0 means 1; an explicit 0 stays 0");
        r.hits_addend = 4;
        assert_eq!(hits_addends(&r), vec![4, 7, 0]);
        r.descriptors[0].hits_addend = Some(UInt64Value { value: 9 });
        assert_eq!(hits_addends(&r), vec![9, 7, 0]);
    }

    #[test]
    fn statuses() {
        let l = limit(3, Unit::Minute);
        let ok = counted_status(&l, 3, 61);
        assert_eq!((ok.code, ok.limit_remaining), (Code::Ok as i32, 0), "exactly at the limit is still OK");
        assert_eq!(ok.duration_until_reset, Some(Duration { seconds: 59, nanos: 0 }));
        assert_eq!(ok.current_limit.unwrap().unit, Unit::Minute as i32);
        let over = counted_status(&l, 4, 61);
        assert_eq!((over.code, over.limit_remaining), (Code::OverLimit as i32, 0));
        assert_eq!(counted_status(&l, 1, 61).limit_remaining, 2);
        let shadow = Limit { shadow_mode: true, ..l };
        assert_eq!(counted_status(&shadow, 9, 61).code, Code::Ok as i32);
    }
}
