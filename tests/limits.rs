//! Client keys' limits through a real Envoy: `requests_per_minute` exact across Envoy's workers.

mod common;

use common::http::post_json;
use common::router::{catalog, chat_body, endpoint, provider, Router, CLIENT_KEY};
use llm_router_testkit::mock::MockProvider;
use serde_json::json;
use std::time::{SystemTime, UNIX_EPOCH};

fn minute_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() / 60
}

#[test]
fn requests_per_minute_holds_exactly_across_two_workers_and_refusals_reach_no_provider() {
    const LIMIT: usize = 20;
    const SENT: usize = 100;
    let only = MockProvider::start("only");
    let mut c = catalog(
        vec![provider("only", only.port())],
        vec![json!({"id": "test/m", "endpoints": [endpoint("only", "m@only", 1.0)]})],
        json!({}),
    );
    c["keys"][0]["limits"] = json!({"requests_per_minute": LIMIT});
    // Two workers, connections balanced exactly between them: the window is shared data.
    let r = Router::start_with_concurrency(c, vec![only], 2);
    let port = r.envoy.port;
    let before = minute_now();
    let responses: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..SENT)
            .map(|_| {
                s.spawn(move || {
                    post_json(port, "/v1/chat/completions", Some(CLIENT_KEY), &chat_body("test/m", false))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let after = minute_now();
    let admitted = responses.iter().filter(|r| r.status == 200).count();
    let refused: Vec<_> = responses.iter().filter(|r| r.status == 429).collect();
    assert_eq!(admitted + refused.len(), SENT, "every answer is 200 or 429");
    if before == after {
        assert_eq!(admitted, LIMIT, "exactly the limit in one window");
    } else {
        // The minute turned during the burst: at most one window's worth on each side.
        assert!((LIMIT..=2 * LIMIT).contains(&admitted), "{admitted}");
    }
    assert_eq!(r.mock("only").requests().len(), admitted, "a refused request reaches no provider");
    let first = refused.first().expect("some refused");
    let v = first.json();
    assert_eq!(v["error"]["code"], 429);
    assert_eq!(v["error"]["metadata"]["error_type"], "rate_limit_exceeded");
    assert_eq!(first.header("x-ratelimit-limit"), Some(LIMIT.to_string().as_str()));
    assert_eq!(first.header("x-ratelimit-remaining"), Some("0"));
    let reset: u64 = first.header("x-ratelimit-reset").unwrap().parse().unwrap();
    assert_eq!(reset % 60_000, 0, "the reset is the next minute's start, in ms");
    let retry: u64 = first.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
}

#[test]
fn free_variants_are_held_to_their_quota_per_key() {
    let only = MockProvider::start("only");
    let c = catalog(
        vec![provider("only", only.port())],
        vec![json!({"id": "test/m", "endpoints": [endpoint("only", "m@only", 0.0)]})],
        json!({"free_requests_per_minute": 1000, "free_requests_per_day": 3}),
    );
    let r = Router::start(c, vec![only]);
    let statuses: Vec<u16> = (0..5)
        .map(|_| {
            post_json(
                r.envoy.port,
                "/v1/chat/completions",
                Some(CLIENT_KEY),
                &chat_body("test/m:free", false),
            )
            .status
        })
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    assert_eq!(r.mock("only").requests().len(), 3);
    // The same model without the variant is not a free-variant request.
    let paid = post_json(r.envoy.port, "/v1/chat/completions", Some(CLIENT_KEY), &chat_body("test/m", false));
    assert_eq!(paid.status, 200);
}
