//! Token and dollar limits through a real Envoy at `--concurrency 2`: reservations exact across the
//! workers, settled to what was spent, refusals that reach no provider, and `/key`.

mod common;

use common::http::{post_json, request, Response};
use common::router::{catalog, endpoint, provider, Router, CLIENT_KEY};
use common::schema;
use llm_router_testkit::mock::MockProvider;
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// The mock reports 11 prompt and 7 completion tokens for every completion.
const SPENT_TOKENS: u64 = 18;

fn day_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() / 86_400
}

/// A body asking for at most 7 completion tokens: the worst case is its bytes plus 7 tokens.
fn body() -> Value {
    json!({"model": "test/m", "max_tokens": 7, "messages": [{"role": "user", "content": "Hello"}]})
}

fn key_info(port: u16, path: &str) -> Response {
    request(port, "GET", path, &[("authorization", &format!("Bearer {CLIENT_KEY}"))], b"")
}

fn usd(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// One endpoint at $1 per million tokens both ways, behind a key with `limits`.
fn router(limits: Value) -> Router {
    let only = MockProvider::start("only");
    let mut c = catalog(
        vec![provider("only", only.port())],
        vec![json!({"id": "test/m", "endpoints": [endpoint("only", "m@only", 1.0)]})],
        json!({}),
    );
    c["keys"][0]["limits"] = limits;
    Router::start_with_concurrency(c, vec![only], 2)
}

#[test]
fn a_dollar_budget_holds_under_200_concurrent_requests_with_no_phantom_refusals() {
    const SENT: usize = 200;
    let body = body();
    let worst_tokens = serde_json::to_vec(&body).unwrap().len() as u64 + 7;
    // $1 per million: a token costs 1000 nano-USD.
    let (worst, spent_each) = (worst_tokens * 1000, SPENT_TOKENS * 1000);
    let budget = 20 * worst;
    let r = router(json!({"usd_per_day": budget as f64 / 1e9}));
    let port = r.envoy.port;
    let day = day_now();
    let responses: Vec<Response> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..SENT)
            .map(|_| s.spawn(|| post_json(port, "/v1/chat/completions", Some(CLIENT_KEY), &body)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    if day_now() != day {
        eprintln!("the UTC day turned during the burst: its budget was two days'; not asserted");
        return;
    }
    let served: Vec<&Response> = responses.iter().filter(|r| r.status == 200).collect();
    let refused: Vec<&Response> = responses.iter().filter(|r| r.status == 402).collect();
    assert_eq!(served.len() + refused.len(), SENT, "every answer is 200 or 402");
    eprintln!("burst: {} served, {} refused (budget: 20 worst cases)", served.len(), refused.len());
    assert!(!refused.is_empty(), "200 worst cases cannot fit 20");
    assert_eq!(r.mock("only").requests().len(), served.len(), "a refused request reaches no provider");
    // Spend never passes the budget, and the ledger holds exactly what was spent (every reservation
    // settled to its cost).
    let costs: u64 = served.iter().map(|r| (usd(&r.json()["usage"]["cost"]) * 1e9).round() as u64).sum();
    assert_eq!(costs, served.len() as u64 * spent_each);
    assert!(costs <= budget, "spent {costs} of {budget}");
    let d = key_info(port, "/api/v1/key").json()["data"].clone();
    assert_eq!((usd(&d["usage_daily"]) * 1e9).round() as u64, costs);
    assert_eq!((usd(&d["limit_remaining"]) * 1e9).round() as u64, budget - costs);
    // Each refusal was right when it was made: what was left (after the reservations then in flight)
    // could not hold this request's worst case.
    for r in &refused {
        let v = r.json();
        assert_eq!(v["error"]["metadata"]["error_type"], "payment_required");
        let left: f64 = r.header("x-ratelimit-remaining").unwrap().parse().unwrap();
        assert!(((left * 1e9).round() as u64) < worst, "refused with {left} USD left: {v}");
        assert!(r.header("retry-after").is_some() && r.header("x-ratelimit-reset").is_some());
    }
    // No phantom refusals: with nothing in flight, requests are admitted one after another until what
    // is left is less than one worst case.
    let mut left = budget - costs;
    while left >= worst {
        let one = post_json(port, "/v1/chat/completions", Some(CLIENT_KEY), &body);
        assert_eq!(one.status, 200, "{left} nano-USD left fits a worst case of {worst}: {}", one.text());
        left -= spent_each;
    }
    let last = post_json(port, "/v1/chat/completions", Some(CLIENT_KEY), &body);
    if day_now() != day {
        eprintln!("the UTC day turned during the test: its budget was two days'; not asserted");
        return;
    }
    assert_eq!(last.status, 402, "{left} left cannot hold {worst}");
    let d = key_info(port, "/v1/key").json()["data"].clone();
    assert_eq!((usd(&d["limit_remaining"]) * 1e9).round() as u64, left);
    assert!(left < worst, "the budget was used to within one reservation");
}

#[test]
fn tokens_per_minute_refuses_a_worst_case_that_does_not_fit_with_429() {
    let body = body();
    let worst_tokens = serde_json::to_vec(&body).unwrap().len() as u64 + 7;
    // Room for one worst case: the first request fits and spends 18; then 18 + a worst case does not.
    let r = router(json!({"tokens_per_minute": worst_tokens + 5}));
    let minute = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() / 60;
    let before = minute();
    let first = post_json(r.envoy.port, "/v1/chat/completions", Some(CLIENT_KEY), &body);
    assert_eq!(first.status, 200, "{}", first.text());
    let second = post_json(r.envoy.port, "/v1/chat/completions", Some(CLIENT_KEY), &body);
    if minute() != before {
        eprintln!("the minute turned between the two requests: not asserted");
        return;
    }
    assert_eq!(second.status, 429, "{}", second.text());
    assert_eq!(second.json()["error"]["metadata"]["error_type"], "rate_limit_exceeded");
    assert_eq!(second.header("x-ratelimit-limit"), Some((worst_tokens + 5).to_string().as_str()));
    assert_eq!(
        second.header("x-ratelimit-remaining"),
        Some((worst_tokens + 5 - SPENT_TOKENS).to_string().as_str())
    );
    assert_eq!(r.mock("only").requests().len(), 1);
}

#[test]
fn key_describes_the_calling_key_in_openrouters_shape() {
    let r = router(json!({"requests_per_minute": 100, "usd_per_month": 5}));
    let port = r.envoy.port;
    let day = day_now();
    for _ in 0..3 {
        assert_eq!(post_json(port, "/v1/chat/completions", Some(CLIENT_KEY), &body()).status, 200);
    }
    for path in ["/api/v1/key", "/v1/key"] {
        let got = key_info(port, path);
        assert_eq!(got.status, 200, "{path}: {}", got.text());
        let v = got.json();
        schema::assert_valid("GetCurrentKeyResponse", &v);
        let d = &v["data"];
        assert_eq!(d["label"], "tests");
        assert_eq!((usd(&d["limit"]), d["limit_reset"].as_str()), (5.0, Some("monthly")));
        if day_now() == day {
            // (A month can only turn where a day does.)
            assert_eq!((usd(&d["usage_monthly"]) * 1e9).round() as u64, 3 * SPENT_TOKENS * 1000);
        }
        assert_eq!(d["rate_limit"]["requests"], 100);
    }
    let none = request(port, "GET", "/api/v1/key", &[], b"");
    assert_eq!(none.status, 401);
    assert_eq!(none.json()["error"]["code"], 401);
    let wrong = request(port, "GET", "/api/v1/key", &[("authorization", "Bearer sk-wrong")], b"");
    assert_eq!(wrong.status, 401);
}
