use super::*;
use crate::catalog::tests::{demo, endpoint};
use crate::routing::calendar::DAY_MS;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// 2026-12-07 00:00:00 UTC, a Monday.
const MONDAY: u64 = 1_796_601_600_000;
const USD: u64 = 1_000_000_000;

fn limits(tokens: Option<u64>, day: Option<u64>, week: Option<u64>, month: Option<u64>) -> KeyLimits {
    KeyLimits {
        requests_per_minute: None,
        tokens_per_minute: tokens,
        usd_per_day: day,
        usd_per_week: week,
        usd_per_month: month,
    }
}

fn facts(max_tokens: Option<u64>, choices: u64, provider_prompt: bool) -> CostFacts {
    CostFacts { max_tokens, choices, provider_prompt }
}

fn admitted(v: Verdict) -> (Ledger, Charge) {
    match v {
        Verdict::Admit { ledger, charge } => (ledger, charge),
        Verdict::Refuse(r) => panic!("refused: {r:?}"),
    }
}

#[test]
fn reservations_fill_a_budget_exactly_and_refusals_count_nothing() {
    let l = limits(None, Some(USD), None, None);
    let quarter = Spend { tokens: 10, nano: USD / 4 };
    let mut ledger = None;
    for _ in 0..4 {
        let (next, _) = admitted(admit(ledger.as_ref(), &l, quarter, MONDAY + 1000));
        ledger = Some(next);
    }
    let before = ledger;
    let Verdict::Refuse(r) = admit(ledger.as_ref(), &l, Spend { tokens: 1, nano: 1 }, MONDAY + 1000) else {
        panic!("a full day must refuse one more nano-USD");
    };
    assert_eq!(r.limit, Limit::Usd(Period::Day));
    assert_eq!((r.of, r.remaining), (USD, 0));
    assert_eq!(r.reset_ms, MONDAY + DAY_MS);
    assert_eq!(r.retry_after, 86_399);
    assert_eq!(ledger, before, "admission is pure: the caller writes only an admitted ledger");
    // The next day has the whole budget again; the week and month keep counting (no limit there).
    let (next, _) = admitted(admit(ledger.as_ref(), &l, quarter, MONDAY + DAY_MS));
    assert_eq!(Ledger::current(Some(&next), MONDAY + DAY_MS), [10, USD / 4, 5 * USD / 4, 5 * USD / 4]);
    assert_eq!(next.total_nano, 5 * USD / 4);
}

#[test]
fn settling_gives_back_what_the_reservation_did_not_spend() {
    let l = limits(Some(1000), Some(USD), Some(USD), Some(USD));
    let reserved = Spend { tokens: 600, nano: 600_000_000 };
    let (ledger, charge) = admitted(admit(None, &l, reserved, MONDAY));
    // A second request of the same size does not fit while the first is in flight...
    assert!(matches!(admit(Some(&ledger), &l, reserved, MONDAY), Verdict::Refuse(_)));
    // ...and does once the first settled at what it spent.
    let spent = Spend { tokens: 150, nano: 100_000_000 };
    let settled = settle(Some(&ledger), &charge, spent).unwrap();
    assert_eq!(Ledger::current(Some(&settled), MONDAY), [150, 100_000_000, 100_000_000, 100_000_000]);
    assert_eq!(settled.total_nano, 100_000_000);
    admitted(admit(Some(&settled), &l, reserved, MONDAY));
    // Taken back entirely (a refused request): nothing was spent.
    let back = settle(Some(&ledger), &charge, Spend::default()).unwrap();
    assert_eq!(Ledger::current(Some(&back), MONDAY), [0; 4]);
    assert_eq!(back.total_nano, 0);
    assert_eq!(settle(Some(&ledger), &charge, reserved), None, "spent exactly the reservation");
}

#[test]
fn a_request_that_ends_after_its_window_turned_leaves_the_new_window_alone() {
    let l = limits(Some(1000), None, None, None);
    let (ledger, charge) = admitted(admit(None, &l, Spend { tokens: 900, nano: 5 }, MONDAY + 59_000));
    // The next minute: another request was admitted in it.
    let (later, _) = admitted(admit(Some(&ledger), &l, Spend { tokens: 100, nano: 5 }, MONDAY + 61_000));
    let settled = settle(Some(&later), &charge, Spend { tokens: 10, nano: 1 }).unwrap();
    assert_eq!(Ledger::current(Some(&settled), MONDAY + 61_000)[0], 100, "the new minute keeps its count");
    assert_eq!(Ledger::current(Some(&settled), MONDAY + 61_000)[1], 6, "the day settles");
}

#[test]
fn the_refusal_named_is_the_one_that_resets_last() {
    // Both the minute's tokens and the month's dollars are short: the request fits no sooner than the
    // month's end, so that is what the client is told.
    let l = limits(Some(10), None, None, Some(5));
    let Verdict::Refuse(r) = admit(None, &l, Spend { tokens: 11, nano: 6 }, MONDAY) else { panic!() };
    assert_eq!(r.limit, Limit::Usd(Period::Month));
    assert_eq!(r.reset_ms, 1_798_761_600_000);
    let Verdict::Refuse(r) = admit(None, &l, Spend { tokens: 11, nano: 5 }, MONDAY) else { panic!() };
    assert_eq!((r.limit, r.of, r.remaining), (Limit::TokensPerMinute, 10, 10));
}

#[test]
fn ledgers_round_trip_and_garbage_is_no_ledger() {
    let l = limits(Some(1000), Some(USD), None, None);
    let (ledger, _) = admitted(admit(None, &l, Spend { tokens: 7, nano: 9 }, MONDAY));
    assert_eq!(Ledger::decode(&ledger.encode()), Some(ledger));
    let text = String::from_utf8(ledger.encode()).unwrap();
    for bad in ["", "1 2 3", &format!("{text} 1"), &text.replace(' ', "  "), &text.replacen('7', "x", 1)] {
        assert_eq!(Ledger::decode(bad.as_bytes()), None, "{bad:?}");
    }
}

#[test]
fn the_worst_case_is_the_dearest_endpoint_at_its_completion_bound() {
    let c = demo();
    let plan = [endpoint(&c, "meta/llama", "alpha"), endpoint(&c, "meta/llama", "beta")];
    let prices: Vec<_> = plan.iter().map(|e| c.endpoint(*e).pricing).collect();
    let bound = |e: &crate::catalog::ModelEndpoint| {
        e.max_completion_tokens
            .or(e.context_length)
            .or(c.models[0].context_length)
            .unwrap_or(UNKNOWN_COMPLETION_TOKENS)
    };
    // With max_tokens: every endpoint completes at most that many (or its own cap if lower).
    let w = worst_case(&c, &plan, 1000, &facts(Some(50), 1, false));
    let want = plan
        .iter()
        .zip(&prices)
        .map(|(e, p)| {
            let completion = 50u64.min(bound(c.endpoint(*e)));
            let prompt_price = [p.prompt, p.cache_read.unwrap_or(0.0), p.cache_write.unwrap_or(0.0)]
                .into_iter()
                .fold(0.0, f64::max);
            ((1000.0 * prompt_price + completion as f64 * p.completion) * 1000.0
                + p.request.unwrap_or(0.0) * 1e9)
                .round() as u64
        })
        .max()
        .unwrap();
    assert_eq!(w.nano, want);
    assert_eq!(w.tokens, 1050);
    // Without it: the endpoints' own bounds.
    let w = worst_case(&c, &plan, 1000, &facts(None, 1, false));
    let most = plan.iter().map(|e| bound(c.endpoint(*e))).max().unwrap();
    assert_eq!(w.tokens, 1000 + most);
    assert!(w.nano > want);
}

#[test]
fn cache_writes_dearer_than_the_prompt_price_every_prompt_token() {
    let mut c = demo();
    let e = endpoint(&c, "meta/llama", "alpha");
    for m in c.models.iter_mut().flat_map(|m| m.endpoints.iter_mut()) {
        m.pricing.prompt = 1.0;
        m.pricing.completion = 0.0;
        m.pricing.cache_write = Some(1.25);
        m.pricing.request = None;
    }
    // 1000 tokens × $1.25 per million.
    assert_eq!(worst_case(&c, &[e], 1000, &facts(Some(0), 1, false)).nano, 1_250_000);
}

#[test]
fn what_was_spent_is_the_providers_usage_else_the_reservation_else_nothing() {
    let reserved = Spend { tokens: 1000, nano: 500 };
    let usage = Usage { prompt_tokens: 30, completion_tokens: 12, ..Usage::default() };
    assert_eq!(spent(reserved, Some(&usage), false, 40, 200), Spend { tokens: 42, nano: 40 });
    // An estimate is not what the provider billed: the worst case stands (the estimate when larger).
    assert_eq!(spent(reserved, Some(&usage), true, 40, 200), reserved);
    assert_eq!(spent(Spend::default(), Some(&usage), true, 40, 200), Spend { tokens: 42, nano: 40 });
    // The client left before any answer: the provider may still have worked.
    assert_eq!(spent(reserved, None, false, 0, 0), reserved);
    // A 2xx whose usage could not be read (a body passed through as it came): served, billed unknown.
    assert_eq!(spent(reserved, None, false, 0, 200), reserved);
    // An error answer: nothing was served.
    assert_eq!(spent(reserved, None, false, 0, 503), Spend::default());
}

#[test]
fn refusals_tell_the_client_what_was_left_in_its_own_units() {
    let r = Refusal {
        limit: Limit::Usd(Period::Week),
        of: 5 * USD,
        remaining: USD / 2,
        reset_ms: 1,
        retry_after: 2,
    };
    let e = r.error(Spend { tokens: 10, nano: 3 * USD / 4 });
    assert_eq!(e.status(), 402);
    assert_eq!(
        e.message(),
        "Key budget exceeded: 5 USD weekly (0.5 USD left; this request may cost up to 0.75 USD)"
    );
    let r = Refusal { limit: Limit::TokensPerMinute, of: 100, remaining: 7, reset_ms: 1, retry_after: 2 };
    let e = r.error(Spend { tokens: 10, nano: 0 });
    assert_eq!(e.status(), 429);
    assert!(!e.message().contains("never"), "{}", e.message());
    // A worst case past the whole limit: waiting will not help, a smaller max_tokens will.
    let e = r.error(Spend { tokens: 1000, nano: 0 });
    assert!(e.message().ends_with("it can never fit: lower max_tokens)"), "{}", e.message());
    assert!(e.headers().contains(&("x-ratelimit-remaining", "7".to_string())));
}

#[test]
fn a_request_admitted_with_a_clock_from_before_a_turn_does_not_erase_the_new_month() {
    // The review's scenario: $1 a month; two $0.90 requests would not both fit in January. One is
    // admitted in January; a request whose clock still reads 31 December comes next.
    let jan = 1_798_761_600_000;
    let l = limits(None, None, None, Some(USD));
    let (ledger, _) = admitted(admit(None, &l, Spend { tokens: 1, nano: 9 * USD / 10 }, jan + 5_000));
    let Verdict::Refuse(r) = admit(Some(&ledger), &l, Spend { tokens: 1, nano: 9 * USD / 10 }, jan - 1)
    else {
        panic!("a late clock must not see an empty month")
    };
    assert_eq!(r.limit, Limit::Usd(Period::Month));
    // One that fits is counted in January, and settles there.
    let (later, charge) = admitted(admit(Some(&ledger), &l, Spend { tokens: 1, nano: USD / 20 }, jan - 1));
    assert_eq!(Ledger::current(Some(&later), jan + 6_000)[3], 95 * USD / 100);
    let settled = settle(Some(&later), &charge, Spend::default()).unwrap();
    assert_eq!(Ledger::current(Some(&settled), jan + 6_000)[3], 9 * USD / 10);
}

#[test]
fn every_choice_and_the_providers_own_prompt_are_reserved() {
    let c = demo();
    let e = endpoint(&c, "meta/llama", "alpha");
    let one = worst_case(&c, &[e], 100, &facts(Some(50), 1, false));
    assert_eq!(one.tokens, 150);
    assert_eq!(worst_case(&c, &[e], 100, &facts(Some(50), 4, false)).tokens, 300, "n = 4: four completions");
    let tools = worst_case(&c, &[e], 100, &facts(Some(50), 1, true));
    assert_eq!(tools.tokens, 150 + PROVIDER_PROMPT_TOKENS);
    assert!(tools.nano > one.nano);
}
