//! A client key's request rate limit (`keys[].limits.requests_per_minute`) as data: a fixed window of
//! one UTC minute (minutes since the Unix epoch) and the requests admitted in it. The filter keeps one
//! window per key in the proxy's shared data and admits with compare-and-swap, so the count is exact
//! across every worker of one Envoy; the window's counter is reused when the minute turns.

/// One minute, the window of `requests_per_minute`.
pub const WINDOW_MS: u64 = 60_000;

/// The requests admitted in one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The window's minute, counted from the Unix epoch.
    pub minute: u64,
    /// Requests admitted in it.
    pub count: u64,
}

impl Window {
    /// `"<minute> <count>"`, as shared data holds it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = crate::wire::text::decimal(self.minute);
        out.push(' ');
        crate::wire::text::push_u64(&mut out, self.count);
        out.into_bytes()
    }

    /// Reads [`Window::encode`]'s text; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Window> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (minute, count) = text.split_once(' ')?;
        Some(Window { minute: minute.parse().ok()?, count: count.parse().ok()? })
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

/// Decides on one more request at `now_ms` against `limit` per minute, given the stored window (a window
/// of an earlier minute counts as empty: the counter is reused, never accumulated).
pub fn admit(stored: Option<Window>, limit: u64, now_ms: u64) -> Admission {
    let minute = now_ms / WINDOW_MS;
    let used = stored.filter(|w| w.minute == minute).map_or(0, |w| w.count);
    if used < limit {
        let window = Window { minute, count: used + 1 };
        Admission::Admit { window, remaining: limit - used - 1 }
    } else {
        let reset_ms = minute.saturating_add(1).saturating_mul(WINDOW_MS);
        Admission::Refuse { reset_ms, retry_after: reset_ms.saturating_sub(now_ms).div_ceil(1000).max(1) }
    }
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
            match admit(stored, 3, T0 + 10_000) {
                Admission::Admit { window, remaining } => {
                    assert_eq!((window.count, remaining), (n, 3 - n));
                    stored = Some(window);
                }
                other => panic!("request {n}: {other:?}"),
            }
        }
        // Full until the minute turns: retry after the seconds left (50), reset at the next minute.
        assert_eq!(
            admit(stored, 3, T0 + 10_000),
            Admission::Refuse { reset_ms: T0 + 60_000, retry_after: 50 }
        );
        assert_eq!(
            admit(stored, 3, T0 + 59_999),
            Admission::Refuse { reset_ms: T0 + 60_000, retry_after: 1 }
        );
        // The next minute reuses the counter from zero.
        assert_eq!(
            admit(stored, 3, T0 + 60_000),
            Admission::Admit { window: Window { minute: T0 / 60_000 + 1, count: 1 }, remaining: 2 }
        );
        // A limit of zero admits nothing (the catalog refuses it, but the arithmetic holds).
        assert!(matches!(admit(None, 0, T0), Admission::Refuse { .. }));
    }

    #[test]
    fn windows_round_trip_and_garbage_is_no_window() {
        let w = Window { minute: 29_943_360, count: 7 };
        assert_eq!(Window::decode(&w.encode()), Some(w));
        for bad in [&b""[..], b"1", b"a b", b"1 2 3", b"-1 2"] {
            assert_eq!(Window::decode(bad), None, "{bad:?}");
        }
    }
}
