//! The health memory: one small record per provider (when it last failed, until when it asked us to back
//! off), kept in Envoy's process-wide shared data so every worker plans with what any worker saw.
//!
//! The access logger (`upstream_log`, once per attempt) turns each attempt's outcome into a [`Record`]
//! update with [`classify`] and [`next`]; the downstream role reads the records when it plans and asks
//! [`status`] what they mean now. Each provider's record lives under its own key (`Provider::health_key`). Time is always passed in (milliseconds since the Unix epoch): nothing here
//! reads a clock.

/// Longest cool-down a `Retry-After` can impose: a provider asking for more (or a broken header) must not
/// take itself out of rotation for hours.
pub const MAX_COOLDOWN_MS: u64 = 3_600_000;

/// The statuses `Retry-After` is defined for (a cool-down on any other status is ignored).
pub const RETRY_AFTER_STATUSES: [u16; 2] = [429, 503];

/// Version byte leading every stored record. Shared data outlives a VM reload with new code (same `vm_id`),
/// so a changed layout must not be misread as the old one.
const VERSION: u8 = 1;
/// Stored size: the version byte and two little-endian `u64`s.
const ENCODED_LEN: usize = 17;

/// What the memory holds for one provider. Both times are milliseconds since the Unix epoch; 0 = never.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Record {
    /// End of the provider's most recent failed attempt.
    pub last_failure_ms: u64,
    /// The provider is not to be called before this (from its `Retry-After`).
    pub cooldown_until_ms: u64,
}

impl Record {
    /// The stored form: a version byte, then both times as little-endian `u64`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENCODED_LEN);
        out.push(VERSION);
        out.extend_from_slice(&self.last_failure_ms.to_le_bytes());
        out.extend_from_slice(&self.cooldown_until_ms.to_le_bytes());
        out
    }

    /// The record in `bytes`, or `None` for a cleared record (empty value: shared data cannot delete a key)
    /// and for anything this version did not write.
    pub fn decode(bytes: &[u8]) -> Option<Record> {
        if bytes.len() != ENCODED_LEN || bytes.first() != Some(&VERSION) {
            return None;
        }
        let word =
            |at: usize| -> Option<u64> { Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?)) };
        Some(Record { last_failure_ms: word(1)?, cooldown_until_ms: word(9)? })
    }
}

/// What one attempt says about its provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The provider answered 2xx. `started_ms` is when the attempt began: only an attempt that began after
    /// the last recorded failure proves the provider has recovered (a long stream that began before the
    /// failure and ends after it says nothing new).
    Success { started_ms: u64 },
    /// The provider failed; it may have asked for a cool-down (`Retry-After`, bounded).
    Failure { retry_after_ms: Option<u64> },
    /// Nothing about the provider's health: the request's own fault (400, 404, 413…), a reset on our side or
    /// by the client, an informational status.
    Neutral,
}

/// Envoy's response flags as the `response.flags` property encodes them (`legacyResponseFlags()`: bit n =
/// `CoreResponseFlag` n), limited to the ones that blame the provider.
pub mod flags {
    /// `UH`: no healthy host in the provider's cluster.
    pub const NO_HEALTHY_UPSTREAM: u64 = 0x2;
    /// `UT`: the attempt timed out (`per_try_timeout`, our first-byte timeout).
    pub const UPSTREAM_REQUEST_TIMEOUT: u64 = 0x4;
    /// `UR`: the provider reset the stream.
    pub const UPSTREAM_REMOTE_RESET: u64 = 0x10;
    /// `UF`: the connection could not be established (refused, TLS handshake failed, connect timeout).
    pub const UPSTREAM_CONNECTION_FAILURE: u64 = 0x20;
    /// `UC`: the provider's connection closed under the stream.
    pub const UPSTREAM_CONNECTION_TERMINATION: u64 = 0x40;
    /// `UPE`: the provider's response broke the HTTP protocol.
    pub const UPSTREAM_PROTOCOL_ERROR: u64 = 0x80_0000;
    /// `DF`: the provider's host name did not resolve.
    pub const DNS_RESOLUTION_FAILED: u64 = 0x400_0000;
    /// Any of the above. Deliberately absent: `LR` (we reset the stream, e.g. the client went away), `DC` /
    /// `DR` (the client went away), `UO` (our own circuit breaker): none of them is the provider's doing.
    pub const PROVIDER_FAILURE: u64 = NO_HEALTHY_UPSTREAM
        | UPSTREAM_REQUEST_TIMEOUT
        | UPSTREAM_REMOTE_RESET
        | UPSTREAM_CONNECTION_FAILURE
        | UPSTREAM_CONNECTION_TERMINATION
        | UPSTREAM_PROTOCOL_ERROR
        | DNS_RESOLUTION_FAILED;
}

/// One attempt's outcome from what the access logger sees: the provider's status (0 = no response
/// headers), Envoy's `response.flags` bitmask (see [`flags`]), the provider's `Retry-After` value and when
/// the attempt began (kept in [`Outcome::Success`]).
///
/// A provider-side transport failure wins over the status (a 200 stream the provider reset half-way is a
/// failure). 5xx, 429, 401/403 (our key refused) and 408 are failures; `Retry-After` counts on 429 and 503,
/// the two statuses it is defined for. Every other status is neutral: the request, not the provider, was
/// wrong.
pub fn classify(status: u16, response_flags: u64, retry_after: Option<&[u8]>, started_ms: u64) -> Outcome {
    let cooldown = || retry_after.and_then(parse_retry_after);
    if response_flags & flags::PROVIDER_FAILURE != 0 {
        let retry_after_ms = if RETRY_AFTER_STATUSES.contains(&status) { cooldown() } else { None };
        return Outcome::Failure { retry_after_ms };
    }
    match status {
        200..=299 => Outcome::Success { started_ms },
        429 | 503 => Outcome::Failure { retry_after_ms: cooldown() },
        401 | 403 | 408 | 500..=599 => Outcome::Failure { retry_after_ms: None },
        _ => Outcome::Neutral,
    }
}

/// `Retry-After` as milliseconds, capped at [`MAX_COOLDOWN_MS`]: only the delay-seconds form. The
/// HTTP-date form is ignored (a failure without cool-down): LLM providers send seconds, and a date would
/// also depend on the provider's clock agreeing with ours.
fn parse_retry_after(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let seconds = digits.iter().fold(0u64, |n, d| n.saturating_mul(10).saturating_add(u64::from(d - b'0')));
    Some(seconds.saturating_mul(1000).min(MAX_COOLDOWN_MS))
}

/// The change `outcome` (observed at `now_ms`) makes to a provider's record: `None` = leave it as it is,
/// `Some(None)` = clear it, `Some(Some(r))` = store `r`.
///
/// A failure stamps `now_ms` and extends the cool-down (never shortens one another attempt recorded); a
/// success clears the record only when its attempt began at or after the last failure.
pub fn next(prev: Option<Record>, outcome: Outcome, now_ms: u64) -> Option<Option<Record>> {
    match outcome {
        Outcome::Neutral => None,
        Outcome::Success { started_ms } => match prev {
            Some(r) if started_ms >= r.last_failure_ms => Some(None),
            _ => None,
        },
        Outcome::Failure { retry_after_ms } => {
            let p = prev.unwrap_or_default();
            let until = retry_after_ms
                .filter(|ms| *ms > 0)
                .map_or(0, |ms| now_ms.saturating_add(ms.min(MAX_COOLDOWN_MS)))
                .max(p.cooldown_until_ms);
            Some(Some(Record { last_failure_ms: now_ms.max(p.last_failure_ms), cooldown_until_ms: until }))
        }
    }
}

/// What a record means at `now_ms` for planning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status {
    /// The provider failed within the outage window: it moves last.
    pub recently_failed: bool,
    /// The provider is cooling down for this much longer: it is not called at all.
    pub cooldown_remaining_ms: Option<u64>,
}

/// The status of a provider whose record is `rec` (`None` = no record: healthy).
pub fn status(rec: Option<Record>, now_ms: u64, outage_window_seconds: u64) -> Status {
    let Some(r) = rec else {
        return Status::default();
    };
    let window_ms = outage_window_seconds.saturating_mul(1000);
    Status {
        // A failure stamped later than `now_ms` (another worker's clock read a moment after ours) is recent.
        recently_failed: r.last_failure_ms != 0 && now_ms.saturating_sub(r.last_failure_ms) < window_ms,
        cooldown_remaining_ms: (r.cooldown_until_ms > now_ms).then(|| r.cooldown_until_ms - now_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const NOW: u64 = 1_700_000_000_000;

    fn rec(last_failure_ms: u64, cooldown_until_ms: u64) -> Option<Record> {
        Some(Record { last_failure_ms, cooldown_until_ms })
    }

    #[test]
    fn records_round_trip_and_foreign_bytes_are_refused() {
        for r in [Record::default(), Record { last_failure_ms: NOW, cooldown_until_ms: u64::MAX }] {
            assert_eq!(Record::decode(&r.encode()), Some(r));
            assert_eq!(r.encode().len(), ENCODED_LEN);
        }
        let good = Record { last_failure_ms: 1, cooldown_until_ms: 2 }.encode();
        let mut other_version = good.clone();
        other_version[0] = 2;
        for bad in [&b""[..], &good[..16], &other_version[..], &[good.clone(), vec![0]].concat()[..]] {
            assert_eq!(Record::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn classify_table() {
        use Outcome::*;
        let fail = |retry_after_ms| Failure { retry_after_ms };
        let ok = Success { started_ms: 5 };
        let cases: &[(u16, u64, Option<&[u8]>, Outcome)] = &[
            (200, 0, None, ok),
            (204, 0, Some(b"30"), ok),
            (429, 0, Some(b"30"), fail(Some(30_000))),
            (429, 0, Some(b" 7 "), fail(Some(7_000))),
            (429, 0, None, fail(None)),
            (429, 0, Some(b""), fail(None)),
            (429, 0, Some(b"Wed, 21 Oct 2015 07:28:00 GMT"), fail(None)),
            (429, 0, Some(b"1.5"), fail(None)),
            (429, 0, Some(b"-3"), fail(None)),
            (429, 0, Some(b"0"), fail(Some(0))),
            (429, 0, Some(b"999999"), fail(Some(MAX_COOLDOWN_MS))),
            (429, 0, Some(b"99999999999999999999"), fail(Some(MAX_COOLDOWN_MS))),
            (429, 0, Some(b"999999999999999999999999"), fail(Some(MAX_COOLDOWN_MS))),
            (503, 0, Some(b"12"), fail(Some(12_000))),
            (503, 0, None, fail(None)),
            (500, 0, Some(b"12"), fail(None)),
            (502, 0, None, fail(None)),
            (599, 0, None, fail(None)),
            (401, 0, None, fail(None)),
            (403, 0, None, fail(None)),
            (408, 0, None, fail(None)),
            (400, 0, None, Neutral),
            (404, 0, None, Neutral),
            (413, 0, None, Neutral),
            (422, 0, Some(b"30"), Neutral),
            (100, 0, None, Neutral),
            (301, 0, None, Neutral),
            (0, 0, None, Neutral),
            (0, flags::UPSTREAM_CONNECTION_FAILURE, None, fail(None)),
            (0, flags::UPSTREAM_REMOTE_RESET, None, fail(None)),
            (0, flags::UPSTREAM_CONNECTION_TERMINATION, None, fail(None)),
            (0, flags::UPSTREAM_REQUEST_TIMEOUT, None, fail(None)),
            (0, flags::UPSTREAM_PROTOCOL_ERROR, None, fail(None)),
            (0, flags::DNS_RESOLUTION_FAILED, None, fail(None)),
            (0, flags::NO_HEALTHY_UPSTREAM, None, fail(None)),
            // A stream the provider reset after its 200 headers failed all the same.
            (200, flags::UPSTREAM_REMOTE_RESET, None, fail(None)),
            (429, flags::UPSTREAM_REMOTE_RESET, Some(b"9"), fail(Some(9_000))),
            // Resets that are ours or the client's blame nobody.
            (0, 0x8, None, Neutral),         // LR
            (0, 0x4000, None, Neutral),      // DC
            (0, 0x1000_0000, None, Neutral), // DR
            (0, 0x80, None, Neutral),        // UO
            (200, 0x4000, None, ok),
        ];
        for &(status, fl, retry_after, want) in cases {
            assert_eq!(
                classify(status, fl, retry_after, 5),
                want,
                "status {status}, flags {fl:#x}, {retry_after:?}"
            );
        }
    }

    #[test]
    fn next_table() {
        use Outcome::*;
        let fail = |retry_after_ms| Failure { retry_after_ms };
        // (what, previous record, outcome, wanted change)
        type Case = (&'static str, Option<Record>, Outcome, Option<Option<Record>>);
        let cases: &[Case] = &[
            ("neutral changes nothing", rec(NOW - 5, 0), Neutral, None),
            ("neutral on no record", None, Neutral, None),
            ("success without a record writes nothing", None, Success { started_ms: NOW - 10 }, None),
            (
                "success after the failure clears",
                rec(NOW - 50, 0),
                Success { started_ms: NOW - 40 },
                Some(None),
            ),
            (
                "success started at the failure clears",
                rec(NOW - 50, 0),
                Success { started_ms: NOW - 50 },
                Some(None),
            ),
            (
                "success clears an active cool-down too",
                rec(NOW - 50, NOW + 9_000),
                Success { started_ms: NOW - 10 },
                Some(None),
            ),
            (
                "a success older than the failure proves nothing",
                rec(NOW - 50, 0),
                Success { started_ms: NOW - 60 },
                None,
            ),
            ("first failure", None, fail(None), Some(rec(NOW, 0))),
            ("failure with cool-down", None, fail(Some(30_000)), Some(rec(NOW, NOW + 30_000))),
            ("zero cool-down is none", None, fail(Some(0)), Some(rec(NOW, 0))),
            ("cool-down is capped", None, fail(Some(u64::MAX)), Some(rec(NOW, NOW + MAX_COOLDOWN_MS))),
            ("a later failure moves the stamp", rec(NOW - 1_000, 0), fail(None), Some(rec(NOW, 0))),
            (
                "a failure without Retry-After keeps the cool-down",
                rec(NOW - 1_000, NOW + 20_000),
                fail(None),
                Some(rec(NOW, NOW + 20_000)),
            ),
            (
                "a shorter Retry-After does not shorten it",
                rec(NOW - 1_000, NOW + 20_000),
                fail(Some(5_000)),
                Some(rec(NOW, NOW + 20_000)),
            ),
            (
                "a longer Retry-After extends it",
                rec(NOW - 1_000, NOW + 20_000),
                fail(Some(60_000)),
                Some(rec(NOW, NOW + 60_000)),
            ),
            (
                "a stamp from a moment later (another worker) is kept",
                rec(NOW + 3, 0),
                fail(None),
                Some(rec(NOW + 3, 0)),
            ),
        ];
        for (what, prev, outcome, want) in cases {
            assert_eq!(next(*prev, *outcome, NOW), *want, "{what}");
        }
    }

    #[test]
    fn status_table() {
        let st = |recently_failed, cooldown_remaining_ms| Status { recently_failed, cooldown_remaining_ms };
        let cases: &[(&str, Option<Record>, u64, Status)] = &[
            ("no record", None, 30, st(false, None)),
            ("failed just now", rec(NOW, 0), 30, st(true, None)),
            ("failed inside the window", rec(NOW - 29_999, 0), 30, st(true, None)),
            ("failed at the window's edge", rec(NOW - 30_000, 0), 30, st(false, None)),
            ("failed long ago", rec(NOW - 3_600_000, 0), 30, st(false, None)),
            ("window 0 forgets at once", rec(NOW, 0), 0, st(false, None)),
            ("stamp a moment ahead of us", rec(NOW + 2, 0), 30, st(true, None)),
            ("cooling down", rec(NOW - 1_000, NOW + 29_000), 30, st(true, Some(29_000))),
            ("cool-down over", rec(NOW - 40_000, NOW), 30, st(false, None)),
            ("cool-down outlives the window", rec(NOW - 40_000, NOW + 20_000), 30, st(false, Some(20_000))),
            ("empty record", rec(0, 0), 30, st(false, None)),
        ];
        for (what, r, window, want) in cases {
            assert_eq!(status(*r, NOW, *window), *want, "{what}");
        }
    }

    #[test]
    fn a_429_then_time_passing() {
        // The whole life of a record: 429 with Retry-After 30 → excluded → only moved last → forgotten.
        let o = classify(429, 0, Some(b"30"), NOW - 200);
        let r = next(None, o, NOW).flatten();
        assert_eq!(
            status(r, NOW + 10_000, 30),
            Status { recently_failed: true, cooldown_remaining_ms: Some(20_000) }
        );
        assert_eq!(
            status(r, NOW + 30_000, 60),
            Status { recently_failed: true, cooldown_remaining_ms: None }
        );
        assert_eq!(status(r, NOW + 60_000, 60), Status::default());
    }
}
