//! A client key's request quotas as data: `keys[].limits.requests_per_minute`, and the quotas on `:free`
//! variants per minute and per day. Each is a fixed UTC window (windows counted from the Unix epoch)
//! and the requests admitted in it. The filter keeps one window per key and quota in the proxy's shared
//! data and admits with compare-and-swap, so the count is exact across every worker of one Envoy; a
//! window's counter is reused when the window turns.

/// One minute.
pub const MINUTE_MS: u64 = 60_000;
/// One day (UTC days: the epoch starts at midnight).
pub const DAY_MS: u64 = 86_400_000;

/// The requests admitted in one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The window's number, counted from the Unix epoch in windows of its length.
    pub number: u64,
    /// Requests admitted in it.
    pub count: u64,
}

impl Window {
    /// `"<window number> <count>"`, as shared data holds it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = crate::wire::text::decimal(self.number);
        out.push(' ');
        crate::wire::text::push_u64(&mut out, self.count);
        out.into_bytes()
    }

    /// Reads [`Window::encode`]'s text; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Window> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (number, count) = text.split_once(' ')?;
        Some(Window { number: number.parse().ok()?, count: count.parse().ok()? })
    }
}

/// Whether one more request fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// It fits: write `window` (this request counted); `remaining` more fit in it.
    Admit { window: Window, remaining: u64 },
    /// It does not: the window is full until `reset_ms` (ms since the epoch), `retry_after` seconds away.
    Refuse { reset_ms: u64, retry_after: u64 },
}

/// Decides on one more request at `now_ms` against `limit` per window of `window_ms`, given the stored
/// window (an earlier window counts as empty: the counter is reused, never accumulated).
pub fn admit(stored: Option<Window>, limit: u64, window_ms: u64, now_ms: u64) -> Admission {
    let number = now_ms / window_ms.max(1);
    let used = stored.filter(|w| w.number == number).map_or(0, |w| w.count);
    if used < limit {
        let window = Window { number, count: used + 1 };
        Admission::Admit { window, remaining: limit - used - 1 }
    } else {
        let reset_ms = number.saturating_add(1).saturating_mul(window_ms);
        Admission::Refuse { reset_ms, retry_after: reset_ms.saturating_sub(now_ms).div_ceil(1000).max(1) }
    }
}

/// The stored window with one admitted request taken back (a later quota refused it), if it is still
/// `now_ms`'s window and counts one.
pub fn release(stored: Option<Window>, window_ms: u64, now_ms: u64) -> Option<Window> {
    let w = stored.filter(|w| w.number == now_ms / window_ms.max(1) && w.count > 0)?;
    Some(Window { number: w.number, count: w.count - 1 })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// 2026-12-07 00:00:00 UTC, a minute boundary.
    const T0: u64 = 1_796_601_600_000;

    #[test]
    fn a_window_holds_the_limit_and_turns_with_the_minute() {
        let mut stored = None;
        for n in 1..=3 {
            match admit(stored, 3, MINUTE_MS, T0 + 10_000) {
                Admission::Admit { window, remaining } => {
                    assert_eq!((window.count, remaining), (n, 3 - n));
                    stored = Some(window);
                }
                other => panic!("request {n}: {other:?}"),
            }
        }
        // Full until the minute turns: retry after the seconds left (50), reset at the next minute.
        assert_eq!(
            admit(stored, 3, MINUTE_MS, T0 + 10_000),
            Admission::Refuse { reset_ms: T0 + 60_000, retry_after: 50 }
        );
        assert_eq!(
            admit(stored, 3, MINUTE_MS, T0 + 59_999),
            Admission::Refuse { reset_ms: T0 + 60_000, retry_after: 1 }
        );
        // The next minute reuses the counter from zero.
        assert_eq!(
            admit(stored, 3, MINUTE_MS, T0 + 60_000),
            Admission::Admit { window: Window { number: T0 / 60_000 + 1, count: 1 }, remaining: 2 }
        );
        // A limit of zero admits nothing (the catalog refuses it, but the arithmetic holds).
        assert!(matches!(admit(None, 0, MINUTE_MS, T0), Admission::Refuse { .. }));
    }

    #[test]
    fn windows_round_trip_and_garbage_is_no_window() {
        let w = Window { number: 29_943_360, count: 7 };
        assert_eq!(Window::decode(&w.encode()), Some(w));
        for bad in [&b""[..], b"1", b"a b", b"1 2 3", b"-1 2"] {
            assert_eq!(Window::decode(bad), None, "{bad:?}");
        }
    }
}
