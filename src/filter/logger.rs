//! The access-logger role (the router's `upstream_log`): Envoy calls it when it releases an attempt (a
//! failed one before the retry starts), with that attempt's own stream info. It turns the outcome into an
//! update of the provider's health record. The generated config's access-log filter calls it only for
//! attempts with a status of 400 or more or a response flag: a clean success costs no call here (the
//! downstream role clears a recovered provider's record).
//!
//! What Envoy 1.40 shows this logger (each read back from a running Envoy): the attempt's cluster; its
//! response code, absent when no response headers arrived; its response flags as the legacy bitmask
//! (`UF` 0x20 for a refused connection, `UT` 0x4 for a per-try timeout, 0 for any answered attempt); when
//! the attempt began; the provider's response headers (none when there were none).

use super::health_memory;
use super::host::{Host, IntAttribute, TextAttribute};
use crate::catalog::Catalog;
use crate::observe::metrics::unanswered_attempt;
use crate::routing::health::{classify, flags, Outcome, RETRY_AFTER_STATUSES};

/// The longest an attempt can have lasted: an older start time is not believed.
const MAX_ATTEMPT_MS: u64 = 86_400_000;

/// Records the outcome of the attempt being logged. Never logs on this path (it runs once per attempt);
/// anything unreadable means "no update".
pub fn log_attempt(catalog: &Catalog, host: &mut dyn Host) {
    let Some(cluster) = host.text_attribute(TextAttribute::ClusterName) else {
        return;
    };
    let Some(provider) = catalog.provider_by_cluster(&cluster) else {
        return;
    };
    let status =
        host.int_attribute(IntAttribute::ResponseCode).and_then(|c| u16::try_from(c).ok()).unwrap_or(0);
    let flags = host.int_attribute(IntAttribute::ResponseFlags).unwrap_or(0);
    let now = host.now_ms();
    // Only the statuses it means something for pay for the header lookup and the start time.
    let retry_after =
        if RETRY_AFTER_STATUSES.contains(&status) { host.response_header("retry-after") } else { None };
    let started = if (200..300).contains(&status) {
        attempt_start(host.int_attribute(IntAttribute::RequestStartMs), now).unwrap_or(now)
    } else {
        now
    };
    let outcome = classify(status, flags, retry_after.as_deref(), started);
    if outcome != Outcome::Neutral {
        health_memory::update(host, &provider.health_key, outcome, now);
    }
    if status == 0 && flags & UNANSWERED != 0 {
        let bytes = host.int_attribute(IntAttribute::RequestBodyBytes).unwrap_or(0);
        for m in unanswered_attempt(&provider.name, bytes) {
            if let Some(id) = host.define_metric(m.kind, &m.name) {
                host.increment_metric(id, i64::try_from(m.value).unwrap_or(i64::MAX));
            }
        }
    }
}

/// Response flags of an attempt the provider received and never answered: it may bill the prompt.
const UNANSWERED: u64 =
    flags::UPSTREAM_REQUEST_TIMEOUT | flags::UPSTREAM_REMOTE_RESET | flags::UPSTREAM_CONNECTION_TERMINATION;

/// When the attempt began, if believable: a time more than a day before `now` is unknown (no attempt
/// lasts that long), one after it is `now` (another clock's reading a moment later).
fn attempt_start(start_ms: Option<u64>, now: u64) -> Option<u64> {
    let ms = start_ms?;
    (now.saturating_sub(ms) < MAX_ATTEMPT_MS).then_some(ms.min(now))
}
