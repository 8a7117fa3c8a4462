//! UTC windows that limits count in: minutes, days, weeks starting on Monday, and calendar months. A
//! window is a number (counted from the Unix epoch in windows of its kind) and ends where the next one
//! starts, so a counter stamped with its window's number is reused when the window turns.

/// One minute.
pub const MINUTE_MS: u64 = 60_000;
/// One day (UTC days: the epoch starts at midnight).
pub const DAY_MS: u64 = 86_400_000;
/// 1970-01-01 was a Thursday: three days after the Monday that starts week 0.
const EPOCH_AFTER_MONDAY: u64 = 3;

/// The kind of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// A UTC minute.
    Minute,
    /// A UTC day.
    Day,
    /// Monday 00:00 UTC to the next Monday.
    Week,
    /// The 1st 00:00 UTC to the next month's 1st.
    Month,
}

impl Period {
    /// The number of the window `now_ms` (ms since the epoch) falls in.
    pub fn number(self, now_ms: u64) -> u64 {
        let days = now_ms / DAY_MS;
        match self {
            Period::Minute => now_ms / MINUTE_MS,
            Period::Day => days,
            Period::Week => (days + EPOCH_AFTER_MONDAY) / 7,
            Period::Month => {
                let (year, month, _) = civil_from_days(days);
                year * 12 + (month - 1)
            }
        }
    }

    /// Where window `number` ends (the next one starts), ms since the epoch.
    pub fn end_ms(self, number: u64) -> u64 {
        let next = number.saturating_add(1);
        match self {
            Period::Minute => next.saturating_mul(MINUTE_MS),
            Period::Day => next.saturating_mul(DAY_MS),
            Period::Week => next.saturating_mul(7).saturating_sub(EPOCH_AFTER_MONDAY).saturating_mul(DAY_MS),
            Period::Month => days_from_civil(next / 12, next % 12 + 1).saturating_mul(DAY_MS),
        }
    }

    /// OpenRouter's name for a budget's reset (`/key`'s `limit_reset`).
    pub fn reset_name(self) -> &'static str {
        match self {
            Period::Minute => "minutely",
            Period::Day => "daily",
            Period::Week => "weekly",
            Period::Month => "monthly",
        }
    }
}

/// Seconds from `now_ms` to `reset_ms`, at least 1 (a `Retry-After`).
pub fn retry_after(reset_ms: u64, now_ms: u64) -> u64 {
    reset_ms.saturating_sub(now_ms).div_ceil(1000).max(1)
}

/// The (year, month 1–12, day 1–31) of a day counted from 1970-01-01 (H. Hinnant's `civil_from_days`,
/// for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The day, counted from 1970-01-01, of the 1st of `month` (1–12) of `year` (1970 or later).
fn days_from_civil(year: u64, month: u64) -> u64 {
    let y = if month <= 2 { year.saturating_sub(1) } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// 2026-12-07 00:00:00 UTC, a Monday.
    const MONDAY: u64 = 1_796_601_600_000;

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        // Sunday 23:59:59.999 is the end of the week before; Monday 00:00 the start of the next.
        let week = Period::Week.number(MONDAY);
        assert_eq!(Period::Week.number(MONDAY - 1), week - 1);
        assert_eq!(Period::Week.end_ms(week - 1), MONDAY);
        assert_eq!(Period::Week.end_ms(week), MONDAY + 7 * DAY_MS);
        // December 2026 ends at 2027-01-01 00:00 UTC (1798761600 s).
        let december = Period::Month.number(MONDAY);
        assert_eq!(december, 2026 * 12 + 11);
        assert_eq!(Period::Month.end_ms(december), 1_798_761_600_000);
        assert_eq!(Period::Month.number(1_798_761_600_000), december + 1);
        assert_eq!(Period::Month.number(1_798_761_599_999), december);
        // February of a leap year has 29 days: 2028-03-01 is 1835481600 s.
        let feb_2028 = 2028 * 12 + 1;
        assert_eq!(Period::Month.end_ms(feb_2028), 1_835_481_600_000);
        // The epoch: January 1970 ends on 1970-02-01 (31 days).
        assert_eq!(Period::Month.number(0), 1970 * 12);
        assert_eq!(Period::Month.end_ms(1970 * 12), 31 * DAY_MS);
        assert_eq!(Period::Week.number(0), 0);
        assert_eq!(Period::Week.end_ms(0), 4 * DAY_MS, "Monday 1970-01-05");
    }

    #[test]
    fn every_day_of_400_years_round_trips() {
        // Every month start found by days_from_civil is the day civil_from_days calls the 1st.
        for number in 1970 * 12..2370 * 12 {
            let start = days_from_civil(number / 12, number % 12 + 1);
            assert_eq!(civil_from_days(start), (number / 12, number % 12 + 1, 1));
            assert_eq!(Period::Month.number(start * DAY_MS), number);
            assert_eq!(Period::Month.number(Period::Month.end_ms(number) - 1), number);
        }
    }

    #[test]
    fn retry_after_counts_to_the_window_end() {
        let after = |p: Period, now: u64| retry_after(p.end_ms(p.number(now)), now);
        assert_eq!(after(Period::Minute, MONDAY + 10_000), 50);
        assert_eq!(after(Period::Minute, MONDAY + 59_999), 1);
        assert_eq!(after(Period::Day, MONDAY), 86_400);
        assert_eq!(after(Period::Week, MONDAY + DAY_MS), 6 * 86_400);
    }
}
