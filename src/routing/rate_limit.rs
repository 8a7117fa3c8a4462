//! Counting against a limit per window, as data: a window's number (see [`calendar`]) and what was
//! admitted in it. The filter keeps each counter in the proxy's shared data and changes it with
//! compare-and-swap, so a count is exact across every worker of one Envoy; a counter is reused when its
//! window turns, never accumulated. Requests count 1 each; budgets count a reservation, later settled
//! to what was actually spent.
//!
//! [`calendar`]: super::calendar

use super::calendar::{retry_after, Period};

/// What was admitted in one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Window {
    /// The window's number ([`Period::number`]).
    pub number: u64,
    /// What was admitted in it (requests, tokens or nano-USD).
    pub count: u64,
}

impl Window {
    /// `"<window number> <count>"`, as shared data holds it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::with_capacity(24);
        self.push(&mut out);
        out.into_bytes()
    }

    /// Appends [`Window::encode`]'s text.
    pub fn push(&self, out: &mut String) {
        crate::wire::text::push_u64(out, self.number);
        out.push(' ');
        crate::wire::text::push_u64(out, self.count);
    }

    /// Reads [`Window::encode`]'s text; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Window> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (number, count) = text.split_once(' ')?;
        Some(Window { number: number.parse().ok()?, count: count.parse().ok()? })
    }

    /// What this stored window counts in window `number` (an earlier window counts nothing).
    pub fn used_in(stored: Option<Window>, number: u64) -> u64 {
        stored.filter(|w| w.number == number).map_or(0, |w| w.count)
    }
}

/// Whether `amount` more fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// It fits: write `window` (the amount counted); `remaining` more fits in it.
    Admit { window: Window, remaining: u64 },
    /// It does not: `remaining` is what is left, until `reset_ms` (ms since the epoch), `retry_after`
    /// seconds away.
    Refuse { remaining: u64, reset_ms: u64, retry_after: u64 },
}

/// Decides on `amount` more at `now_ms` against `limit` per `period`, given the stored window. A
/// stored window newer than `now_ms`'s (another worker's clock was read later, at a window's turn) is
/// the one counted in: a window is never written back over a newer one, which would erase its count.
pub fn admit(stored: Option<Window>, limit: u64, amount: u64, period: Period, now_ms: u64) -> Admission {
    let number = period.number(now_ms).max(stored.map_or(0, |w| w.number));
    let used = Window::used_in(stored, number);
    let remaining = limit.saturating_sub(used);
    if amount <= remaining {
        Admission::Admit {
            window: Window { number, count: used.saturating_add(amount) },
            remaining: remaining - amount,
        }
    } else {
        let reset_ms = period.end_ms(number);
        Admission::Refuse { remaining, reset_ms, retry_after: retry_after(reset_ms, now_ms) }
    }
}

/// The stored window once `reserved`, counted in window `number` at admission, is replaced by what was
/// actually spent (`actual`; 0 takes the reservation back). A window that has turned since keeps its
/// count; one not written yet in `number` (a key with no limit counts only what was spent) starts at
/// `actual`. `None`: nothing to write.
pub fn settle(stored: Option<Window>, number: u64, reserved: u64, actual: u64) -> Option<Window> {
    match stored {
        Some(w) if w.number > number => None,
        Some(w) if w.number == number => (reserved != actual)
            .then(|| Window { number, count: w.count.saturating_sub(reserved).saturating_add(actual) }),
        _ => (actual > 0).then_some(Window { number, count: actual }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::calendar::MINUTE_MS;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// 2026-12-07 00:00:00 UTC, a minute boundary.
    const T0: u64 = 1_796_601_600_000;

    #[test]
    fn a_window_holds_the_limit_and_turns_with_the_minute() {
        let mut stored = None;
        for n in 1..=3 {
            match admit(stored, 3, 1, Period::Minute, T0 + 10_000) {
                Admission::Admit { window, remaining } => {
                    assert_eq!((window.count, remaining), (n, 3 - n));
                    stored = Some(window);
                }
                other => panic!("request {n}: {other:?}"),
            }
        }
        // Full until the minute turns: retry after the seconds left (50), reset at the next minute.
        assert_eq!(
            admit(stored, 3, 1, Period::Minute, T0 + 10_000),
            Admission::Refuse { remaining: 0, reset_ms: T0 + 60_000, retry_after: 50 }
        );
        assert_eq!(
            admit(stored, 3, 1, Period::Minute, T0 + 59_999),
            Admission::Refuse { remaining: 0, reset_ms: T0 + 60_000, retry_after: 1 }
        );
        // The next minute reuses the counter from zero.
        assert_eq!(
            admit(stored, 3, 1, Period::Minute, T0 + 60_000),
            Admission::Admit { window: Window { number: T0 / MINUTE_MS + 1, count: 1 }, remaining: 2 }
        );
        // A limit of zero admits nothing (the catalog refuses it, but the arithmetic holds).
        assert!(matches!(admit(None, 0, 1, Period::Minute, T0), Admission::Refuse { .. }));
    }

    #[test]
    fn an_amount_fits_exactly_or_not_at_all() {
        let n = Period::Day.number(T0);
        let stored = Some(Window { number: n, count: 60 });
        assert_eq!(
            admit(stored, 100, 40, Period::Day, T0),
            Admission::Admit { window: Window { number: n, count: 100 }, remaining: 0 }
        );
        assert!(matches!(admit(stored, 100, 41, Period::Day, T0), Admission::Refuse { remaining: 40, .. }));
        // Over the limit already (a provider billed past its reservation): nothing fits, nothing wraps.
        let over = Some(Window { number: n, count: 150 });
        assert!(matches!(admit(over, 100, 1, Period::Day, T0), Admission::Refuse { remaining: 0, .. }));
    }

    #[test]
    fn a_late_clock_counts_in_the_newer_stored_window_and_never_erases_it() {
        // A request whose clock reads 23:59:59.999 admitted after another already counted in the next
        // minute: it counts on top, in that minute.
        let next = Period::Minute.number(T0);
        let stored = Some(Window { number: next, count: 2 });
        assert_eq!(
            admit(stored, 3, 1, Period::Minute, T0 - 1),
            Admission::Admit { window: Window { number: next, count: 3 }, remaining: 0 }
        );
        assert_eq!(
            admit(Some(Window { number: next, count: 3 }), 3, 1, Period::Minute, T0 - 1),
            Admission::Refuse { remaining: 0, reset_ms: T0 + 60_000, retry_after: 61 }
        );
    }

    #[test]
    fn settling_replaces_the_reservation_in_its_own_window() {
        let stored = Some(Window { number: 7, count: 100 });
        assert_eq!(settle(stored, 7, 30, 12), Some(Window { number: 7, count: 82 }));
        assert_eq!(settle(stored, 7, 30, 0), Some(Window { number: 7, count: 70 }), "taken back");
        assert_eq!(settle(stored, 7, 30, 30), None, "nothing changes");
        assert_eq!(settle(stored, 7, 30, 45), Some(Window { number: 7, count: 115 }), "billed past it");
        assert_eq!(settle(stored, 6, 30, 12), None, "the window turned: the new one never held it");
        assert_eq!(settle(stored, 8, 0, 12), Some(Window { number: 8, count: 12 }));
        assert_eq!(settle(None, 8, 0, 12), Some(Window { number: 8, count: 12 }));
        assert_eq!(settle(None, 8, 0, 0), None);
        // Never below zero, whatever a lost write left behind.
        assert_eq!(
            settle(Some(Window { number: 7, count: 5 }), 7, 30, 0),
            Some(Window { number: 7, count: 0 })
        );
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
