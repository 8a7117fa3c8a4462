//! The access-logger role (`upstream_log` of the router, root id `llm_router_log`): Envoy calls its root
//! context's `on_log` when it releases an attempt (a failed one before the retry starts), with that
//! attempt's own stream info. It turns the outcome into an update of the provider's health record in
//! shared data. The generated config's access-log filter calls it only for attempts with a status of 400
//! or more or a response flag: a clean success costs no call here (the downstream role clears a
//! recovered provider's record).
//!
//! What Envoy 1.40 shows this logger (each read back from a running Envoy): `xds.cluster_name` = the
//! attempt's cluster; `response.code` = the provider's status (8-byte integer), absent when no response
//! headers arrived; `response.flags` = the attempt's response flags as the legacy bitmask (8-byte
//! integer: `UF` 0x20 for a refused connection, `UT` 0x4 for a per-try timeout, 0 for any answered
//! attempt); `request.time` = when the attempt began; the provider's response headers through the
//! response-header map calls (`NotFound` when there were none).

use super::host::{int_property, string_property, update_health};
use crate::health::{classify, Outcome, RETRY_AFTER_STATUSES};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::Context;
use proxy_wasm::types::MapType;
use std::time::{SystemTime, UNIX_EPOCH};

/// Records the outcome of the attempt being logged. Never logs on this path (it runs once per attempt);
/// anything unreadable means "no update".
pub fn on_log<C: Context + ?Sized>(ctx: &C) {
    let Some(catalog) = super::vm_catalog() else {
        return;
    };
    let Some(cluster) = string_property(ctx, &["xds", "cluster_name"]) else {
        return;
    };
    let Some(provider) = catalog.provider_by_cluster(&cluster) else {
        return;
    };
    let status = int_property(ctx, &["response", "code"]).and_then(|c| u16::try_from(c).ok()).unwrap_or(0);
    let flags = int_property(ctx, &["response", "flags"]).unwrap_or(0);
    let now = now_ms(ctx);
    // Only the statuses it means something for pay for the header lookup and the start time.
    let retry_after =
        if RETRY_AFTER_STATUSES.contains(&status) { response_header("retry-after") } else { None };
    let started = if (200..300).contains(&status) { attempt_start_ms(now).unwrap_or(now) } else { now };
    let outcome = classify(status, flags, retry_after.as_deref(), started);
    if outcome != Outcome::Neutral {
        update_health(ctx, &provider.health_key, outcome, now);
    }
}

/// A response header of the attempt being logged: in the access-log phase the root context reads that
/// attempt's headers. Bytes, since a provider's header need not be UTF-8. Only called for an attempt
/// with a status, so the map exists (Envoy answers `NotFound` for a missing map in this phase anyway).
fn response_header(name: &str) -> Option<Vec<u8>> {
    hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, name).ok().flatten()
}

/// When the attempt began: `request.time` of the attempt's stream info, which Envoy hands over as 8
/// little-endian bytes of nanoseconds since the epoch (same clock as `get_current_time`). A time more
/// than a day before `now` is treated as unknown (no attempt lasts that long), one after it as `now`.
fn attempt_start_ms(now: u64) -> Option<u64> {
    let b = hostcalls::get_property(vec!["request", "time"]).ok().flatten()?;
    let nanos = i64::from_le_bytes(b.as_slice().try_into().ok()?);
    let ms = u64::try_from(nanos / 1_000_000).ok()?;
    (now.saturating_sub(ms) < 86_400_000).then_some(ms.min(now))
}

/// Milliseconds since the Unix epoch by the host's clock (0 if it is before the epoch).
fn now_ms<C: Context + ?Sized>(ctx: &C) -> u64 {
    let now: SystemTime = ctx.get_current_time();
    now.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
