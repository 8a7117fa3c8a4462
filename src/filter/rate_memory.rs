//! Per-key request windows in the proxy's shared data (one value per key that has a rate limit, every
//! worker sees it), admitted with compare-and-swap so that two workers never both take the last slot.
//! What a window means is `routing::rate_limit`'s business.

use super::host::{Host, SharedDataError};
use crate::routing::rate_limit::{admit as decide, release as take_back, Admission, Window};

/// A compare-and-swap value no stored value has (versions count up from 1, and 2^32 − 1 writes would
/// wrap first): writing with it creates a value only where none exists. Envoy creates a missing key
/// whatever the CAS, and refuses one that exists under another version, so two workers' first requests
/// cannot both create the window and lose a count.
const CREATE_ONLY: u32 = u32::MAX;

/// Attempts before refusing under contention (only the key's concurrent requests on other workers
/// collide): a request never gets in uncounted.
const CAS_TRIES: usize = 32;

/// The shared-data key of a client key's window for one quota (`rate`, `free_minute`, `free_day`; key
/// names are `[A-Za-z0-9._-]`, empty without a key).
pub fn key_of(quota: &str, name: &str) -> String {
    format!("llm_router.{quota}.{name}")
}

/// Counts one request against `limit` per window of `window_ms` under `key`, or says when to come back.
/// Refuses when the window is full, and when every compare-and-swap lost (never admits uncounted).
pub fn admit(host: &mut dyn Host, key: &str, limit: u64, window_ms: u64, now_ms: u64) -> Admission {
    let mut last = Admission::Refuse { reset_ms: now_ms, retry_after: 1 };
    for _ in 0..CAS_TRIES {
        let (bytes, cas) = host.shared_data(key);
        let stored = bytes.as_deref().and_then(Window::decode);
        let decision = decide(stored, limit, window_ms, now_ms);
        let Admission::Admit { window, .. } = decision else {
            return decision;
        };
        match host.set_shared_data(key, &window.encode(), Some(cas.unwrap_or(CREATE_ONLY))) {
            Ok(()) => return decision,
            Err(SharedDataError::CasMismatch) => last = decision,
            // The store refused the write: nothing was counted, so nothing is admitted.
            Err(SharedDataError::Failed) => return Admission::Refuse { reset_ms: now_ms, retry_after: 1 },
        }
    }
    match last {
        Admission::Admit { .. } => Admission::Refuse { reset_ms: now_ms, retry_after: 1 },
        refused => refused,
    }
}

/// Takes back one request counted under `key` in `now_ms`'s window (a later quota refused the request:
/// a refused request consumes nothing). Gives up quietly under contention: the count then errs on the
/// safe side.
pub fn release(host: &mut dyn Host, key: &str, window_ms: u64, now_ms: u64) {
    for _ in 0..CAS_TRIES {
        let (bytes, cas) = host.shared_data(key);
        let Some(window) = take_back(bytes.as_deref().and_then(Window::decode), window_ms, now_ms) else {
            return;
        };
        match host.set_shared_data(key, &window.encode(), cas) {
            Err(SharedDataError::CasMismatch) => continue,
            _ => return,
        }
    }
}
