//! Per-key request windows in the proxy's shared data (one value per key that has a rate limit, every
//! worker sees it), admitted with compare-and-swap so that two workers never both take the last slot.
//! What a window means is `routing::rate_limit`'s business.

use super::host::Host;
use super::shared_value::compare_and_swap;
use crate::routing::calendar::Period;
use crate::routing::rate_limit::{admit as decide, settle, Admission, Window};

/// The compare-and-swap value that creates a missing key: Envoy creates a missing key whatever the CAS,
/// and refuses to overwrite one that exists under another version, so two workers' first requests
/// cannot both create the window and lose a count. (Versions come from one counter for the whole
/// process, so a stored value has this one only once in 2^32 − 1 writes; a write that meets it is
/// merely retried.)
pub(super) const CREATE_ONLY: u32 = u32::MAX;

/// Attempts before refusing under contention (only the key's concurrent requests on other workers
/// collide): a request never gets in uncounted.
pub(super) const CAS_TRIES: usize = 32;

/// The shared-data key of a client key's window for one quota (`rate`, `free_minute`, `free_day`; key
/// names are `[A-Za-z0-9._-]`, empty without a key).
pub fn key_of(quota: &str, name: &str) -> String {
    format!("llm_router.{quota}.{name}")
}

/// Counts one request against `limit` per `period` under `key`, or says when to come back. Refuses
/// when the window is full, and when the store refused the write or every compare-and-swap lost (never
/// admits uncounted).
pub fn admit(host: &mut dyn Host, key: &str, limit: u64, period: Period, now_ms: u64) -> Admission {
    let mut decision = None;
    let written = compare_and_swap(host, key, CAS_TRIES, Some(CREATE_ONLY), |bytes| {
        let d = decide(bytes.and_then(Window::decode), limit, 1, period, now_ms);
        decision = Some(d);
        match d {
            Admission::Admit { window, .. } => Some(window.encode()),
            Admission::Refuse { .. } => None,
        }
    });
    match (written, decision) {
        (Ok(_), Some(d)) => d,
        _ => Admission::Refuse { remaining: 0, reset_ms: now_ms, retry_after: 1 },
    }
}

/// Takes back one request counted under `key` in window `number` (a later limit refused the request:
/// a refused request consumes nothing). Gives up quietly under contention: the count then errs on the
/// safe side.
pub fn release(host: &mut dyn Host, key: &str, number: u64) {
    let _ = compare_and_swap(host, key, CAS_TRIES, None, |bytes| {
        settle(bytes.and_then(Window::decode), number, 1, 0).map(|w| w.encode())
    });
}
