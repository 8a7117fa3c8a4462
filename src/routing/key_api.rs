//! `GET /api/v1/key`: the calling key's limits and spending in OpenRouter's shape (`{"data": {...}}`).
//! Spending is what this Envoy counted (shared data is per process) since it started.

use super::budget::Ledger;
use super::calendar::Period;
use crate::catalog::ClientKey;
use crate::wire::usage::usd_json_u64;
use serde_json::{json, Value};

/// The body of `/key` for `key`, whose ledger is `stored`, at `now_ms`.
///
/// OpenRouter gives a key one dollar `limit` with its `limit_reset`; of our day, week and month budgets
/// the one with the least left is shown (it is the one that refuses first). Fields without a meaning
/// here are neutral: no BYOK usage, not a management key, no creator, no expiry.
pub fn key_json(key: &ClientKey, stored: Option<&Ledger>, now_ms: u64) -> String {
    let [_, day, week, month] = Ledger::current(stored, now_ms);
    let limits = &key.limits;
    let binding = [
        (limits.usd_per_day, day, Period::Day),
        (limits.usd_per_week, week, Period::Week),
        (limits.usd_per_month, month, Period::Month),
    ]
    .into_iter()
    .filter_map(|(limit, used, period)| limit.map(|l| (l, l.saturating_sub(used), period)))
    .min_by_key(|(_, remaining, _)| *remaining);
    let usd = |nano: u64| -> Value { serde_json::from_str(&usd_json_u64(nano)).unwrap_or(Value::Null) };
    let total = stored.map_or(0, |l| l.total_nano);
    let body = json!({
        "data": {
            "label": key.name,
            "limit": binding.map(|(l, _, _)| usd(l)),
            "limit_remaining": binding.map(|(_, r, _)| usd(r)),
            "limit_reset": binding.map(|(_, _, p)| p.reset_name()),
            "usage": usd(total),
            "usage_daily": usd(day),
            "usage_weekly": usd(week),
            "usage_monthly": usd(month),
            "byok_usage": 0,
            "byok_usage_daily": 0,
            "byok_usage_weekly": 0,
            "byok_usage_monthly": 0,
            "include_byok_in_limit": false,
            "is_free_tier": false,
            "is_management_key": false,
            "is_provisioning_key": false,
            "creator_user_id": null,
            "expires_at": null,
            "rate_limit": {
                "requests": limits.requests_per_minute.and_then(|n| i64::try_from(n).ok()).unwrap_or(-1),
                "interval": "1m",
                "note": "requests_per_minute of this key (-1: none); see the router's README for its limits"
            }
        }
    });
    body.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tests::demo;
    use crate::routing::budget::{admit, Spend, Verdict};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const MONDAY: u64 = 1_796_601_600_000;

    #[test]
    fn the_budget_with_least_left_is_the_limit_shown() {
        let mut key = demo().keys[0].clone();
        key.limits.usd_per_day = Some(2_000_000_000);
        key.limits.usd_per_month = Some(10_000_000_000);
        key.limits.requests_per_minute = Some(60);
        let Verdict::Admit { ledger, .. } =
            admit(None, &key.limits, Spend { tokens: 5, nano: 1_500_000_000 }, MONDAY)
        else {
            panic!()
        };
        let v: Value = serde_json::from_str(&key_json(&key, Some(&ledger), MONDAY + 1)).unwrap();
        let d = &v["data"];
        assert_eq!(d["label"], "team-a");
        assert_eq!((d["limit"].as_f64(), d["limit_remaining"].as_f64()), (Some(2.0), Some(0.5)));
        assert_eq!(d["limit_reset"], "daily");
        assert_eq!(d["usage_daily"].as_f64(), Some(1.5));
        assert_eq!(d["usage_monthly"].as_f64(), Some(1.5));
        assert_eq!(d["rate_limit"]["requests"], 60);
        // The next day has its 2 again; with a smaller month budget, the month binds.
        let v: Value = serde_json::from_str(&key_json(&key, Some(&ledger), MONDAY + 86_400_000)).unwrap();
        assert_eq!(
            (v["data"]["limit_remaining"].as_f64(), v["data"]["usage_daily"].as_f64()),
            (Some(2.0), Some(0.0))
        );
        key.limits.usd_per_month = Some(3_000_000_000);
        let v: Value = serde_json::from_str(&key_json(&key, Some(&ledger), MONDAY + 86_400_000)).unwrap();
        let d = &v["data"];
        assert_eq!((d["limit"].as_f64(), d["limit_remaining"].as_f64()), (Some(3.0), Some(1.5)));
        assert_eq!((d["limit_reset"].as_str(), d["usage_monthly"].as_f64()), (Some("monthly"), Some(1.5)));
        assert_eq!(d["usage"].as_f64(), Some(1.5));
    }

    #[test]
    fn a_key_without_budgets_has_no_limit() {
        let key = demo().keys[0].clone();
        let v: Value = serde_json::from_str(&key_json(&key, None, MONDAY)).unwrap();
        let d = &v["data"];
        assert!(d["limit"].is_null() && d["limit_remaining"].is_null() && d["limit_reset"].is_null());
        assert_eq!(d["usage"], 0);
        assert_eq!(d["rate_limit"]["requests"], -1);
    }
}
