//! Limits across two Envoys through Envoy's global rate limit service: a stand-in for
//! envoyproxy/ratelimit (tools/ratelimit) counting in a real Redis, configured by
//! `llm-router ratelimit-config` from the same catalog the two Envoys were generated from.

mod common;

use common::http::{post_json, Response};
use common::router::{catalog, endpoint, provider, Router, CLIENT_KEY};
use llm_router::catalog::Catalog;
use llm_router_cli::rate_limit_service::service_config;
use llm_router_ratelimit::proto::RateLimitDescriptor;
use llm_router_ratelimit::{RateLimitService, Redis};
use llm_router_testkit::mock::MockProvider;
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const DOMAIN: &str = "llm-router";

/// Redis, the service (configured from `limits` on the test key) and two Envoys, each with its own mock
/// provider, both asking the service.
struct Fleet {
    redis: Redis,
    service: RateLimitService,
    envoys: [Router; 2],
}

fn catalog_for(port: u16, limits: &Value, service: &str) -> Value {
    let mut c = catalog(
        vec![provider("only", port)],
        vec![json!({"id": "test/m", "endpoints": [endpoint("only", "m@only", 1.0)]})],
        json!({"rate_limit_service": {"address": service, "domain": DOMAIN, "timeout_ms": 2000}}),
    );
    c["keys"][0]["limits"] = limits.clone();
    c
}

fn fleet(limits: Value) -> Fleet {
    let redis =
        Redis::start().unwrap_or_else(|e| panic!("redis-server (scripts/lib/redis.sh installs it): {e}"));
    // The service's configuration comes from the catalog: its address does not enter it.
    let text = catalog_for(1, &limits, "127.0.0.1:1").to_string();
    let parsed = Catalog::parse(text.as_bytes(), None).unwrap();
    let yaml = service_config(&parsed, parsed.routing.rate_limit_service.as_ref().unwrap(), "test").unwrap();
    let service = RateLimitService::start(&yaml, redis.addr()).unwrap();
    let address = service.addr().to_string();
    let envoys = [0, 1].map(|_| {
        let mock = MockProvider::start("only");
        Router::start_with_concurrency(catalog_for(mock.port(), &limits, &address), vec![mock], 2)
    });
    Fleet { redis, service, envoys }
}

impl Fleet {
    fn chat(&self, i: usize, body: &Value) -> Response {
        post_json(self.envoys[i % 2].envoy.port, "/v1/chat/completions", Some(CLIENT_KEY), body)
    }

    fn provider_requests(&self) -> usize {
        self.envoys.iter().map(|r| r.mock("only").requests().len()).sum()
    }

    /// The service's counter for `(limit, class)(key, tests)` now (0 when absent).
    fn counter(&self, class: &str) -> u64 {
        let d = RateLimitDescriptor::new(&[("limit", class), ("key", "tests")]);
        let key = self.service.key_for(DOMAIN, &d).expect("a configured limit");
        self.redis.counter(&key).unwrap().unwrap_or(0)
    }

    /// Waits until the counter reaches `want` (charges at stream end arrive after the client's answer).
    fn await_counter(&self, class: &str, want: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.counter(class);
            if got >= want {
                assert_eq!(got, want, "{class} counter");
                return;
            }
            if Instant::now() >= deadline {
                let calls: Vec<_> = self.service.calls().into_iter().map(|c| c.request).collect();
                panic!("{class} counter stuck at {got}, want {want}; the service was asked {calls:#?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn body() -> Value {
    json!({"model": "test/m", "max_tokens": 7, "messages": [{"role": "user", "content": "Hello"}]})
}

#[test]
fn requests_per_minute_hold_across_two_envoys() {
    // Each Envoy alone would admit 10; together they admit 10.
    let f = fleet(json!({"requests_per_minute": 10}));
    let minute = now_s() / 60;
    let statuses: Vec<u16> = (0..30).map(|i| f.chat(i, &body()).status).collect();
    if now_s() / 60 != minute {
        eprintln!("the minute turned during the test: not asserted");
        return;
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 10, "{statuses:?}");
    assert_eq!(f.provider_requests(), 10, "a refused request reaches no provider");
    let refused = f.chat(0, &body());
    assert_eq!(refused.status, 429);
    let v = refused.json();
    assert_eq!(v["error"]["code"], 429, "{v}");
    assert_eq!(v["error"]["metadata"]["error_type"], "rate_limit_exceeded");
    let retry: u64 = refused.header("retry-after").expect("retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(
        refused.header("x-ratelimit-limit").is_some() && refused.header("x-ratelimit-remaining").is_some()
    );
    // The service's own counter: the 10 admitted, and the refused ones counted past the limit as
    // envoyproxy/ratelimit does (its counter only grows).
    assert!(f.counter("requests") >= 10);
}

#[test]
fn a_dollar_budget_across_two_envoys_is_charged_what_was_spent_and_refuses_with_402() {
    // 18 tokens at $1 per million: each request spends 18 micro-dollars. The budget holds 20 of them;
    // each Envoy alone would admit 16 (it reserves a worst case of ~85 micro-dollars).
    let f = fleet(json!({"usd_per_day": 20.0 * 18e-6}));
    let day = now_s() / 86_400;
    let mut served = 0;
    for i in 0..40 {
        let r = f.chat(i, &body());
        if r.status != 200 {
            assert_eq!(r.status, 402, "{}", r.text());
            let v = r.json();
            assert_eq!(v["error"]["metadata"]["error_type"], "payment_required", "{v}");
            break;
        }
        served += 1;
        f.await_counter("usd_day", 18 * served);
    }
    if now_s() / 86_400 != day {
        eprintln!("the UTC day turned during the test: not asserted");
        return;
    }
    assert_eq!(served, 20, "admitted while the fleet's spend was below the budget");
    assert_eq!(f.provider_requests(), 20);
    // The descriptors' headers never reach a provider, though they are back on the request for the
    // charge at stream end.
    for r in &f.envoys {
        for req in r.mock("only").requests() {
            assert!(req.headers.iter().all(|(n, _)| !n.starts_with("x-llm-rl-")), "{:?}", req.headers);
        }
    }
    // What the service counted is what the two Envoys spent, to the micro-dollar.
    let spent: f64 = f
        .envoys
        .iter()
        .map(|r| {
            let key = common::http::request(
                r.envoy.port,
                "GET",
                "/v1/key",
                &[("authorization", &format!("Bearer {CLIENT_KEY}"))],
                b"",
            );
            key.json()["data"]["usage_daily"].as_f64().unwrap()
        })
        .sum();
    assert_eq!((spent * 1e6).round() as u64, f.counter("usd_day"));
}

#[test]
fn an_unreachable_service_lets_requests_through_by_default() {
    let f = fleet(json!({"requests_per_minute": 10}));
    // The service is asked while it is up...
    assert_eq!(f.chat(0, &body()).status, 200);
    assert!(!f.service.calls().is_empty(), "the request was counted by the service");
    // ...and when it is gone, the request goes through on this Envoy's own limits.
    drop(f.service);
    let r = post_json(f.envoys[0].envoy.port, "/v1/chat/completions", Some(CLIENT_KEY), &body());
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn a_burst_across_two_envoys_then_the_budget_is_spent_to_the_micro_dollar() {
    // 200 concurrent requests, half to each Envoy, on a budget of 20 requests' spend. Each Envoy holds
    // the budget exactly for what it admits (reservations: ~4 worst cases in flight at once), the
    // service holds it across both (asked "has the spend reached the budget?" at admission, charged at
    // each stream's end): requests admitted together before the first charges land could pass it,
    // by at most what the Envoys had in flight.
    const SENT: usize = 200;
    let budget = 20 * 18;
    let f = fleet(json!({"usd_per_day": budget as f64 * 1e-6}));
    let day = now_s() / 86_400;
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..SENT)
            .map(|i| {
                s.spawn({
                    let f = &f;
                    move || f.chat(i, &body()).status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let served = statuses.iter().filter(|s| **s == 200).count() as u64;
    assert_eq!(statuses.iter().filter(|s| **s == 402).count() as u64, SENT as u64 - served, "{statuses:?}");
    // Every charge lands: the service's counter is the fleet's spend, to the micro-dollar.
    f.await_counter("usd_day", 18 * served);
    let burst = 18 * served;
    // Each Envoy's reservations fit its own copy of the budget.
    assert!(burst <= 2 * budget, "{served} served");
    // Then, one request at a time: admitted until the fleet's spend reaches the budget, and no further.
    let mut spent = burst;
    for i in 0.. {
        let r = f.chat(i, &body());
        if r.status != 200 {
            assert_eq!(r.status, 402, "{}", r.text());
            break;
        }
        spent += 18;
        f.await_counter("usd_day", spent);
    }
    eprintln!("fleet burst: {served} served at once, {} in all for a budget of 20", spent / 18);
    if now_s() / 86_400 != day {
        return;
    }
    assert_eq!(spent, burst.max(budget), "the budget is spent exactly (or was passed by the burst)");
}
