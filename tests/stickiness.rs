//! Sticky sessions without shared state: two separately started Envoys (think two replicas, or one
//! before and after a restart) send each conversation to the same provider.

mod common;

use common::http::request;
use common::router::{catalog, provider, Router, CLIENT_KEY};
use llm_router_testkit::mock::MockProvider;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// Three providers at nearly equal prices, all with a cache discount (so stickiness is on).
fn replica() -> Router {
    let mocks: Vec<MockProvider> = ["a", "b", "c"].iter().map(|n| MockProvider::start(n)).collect();
    let providers: Vec<Value> = mocks.iter().map(|m| provider(m.name(), m.port())).collect();
    let endpoints: Vec<Value> = [("a", 1.0), ("b", 1.1), ("c", 1.2)]
        .iter()
        .map(|(p, price)| {
            json!({"provider": p, "model": format!("s@{p}"),
                   "pricing": {"prompt": price, "completion": price, "cache_read": 0.1}})
        })
        .collect();
    Router::start(
        catalog(providers, vec![json!({"id": "t/sticky", "endpoints": endpoints})], json!({})),
        mocks,
    )
}

fn served_by(r: &Router, headers: &[(&str, &str)], body: &Value) -> String {
    let auth = format!("Bearer {CLIENT_KEY}");
    let mut all = vec![("authorization", auth.as_str()), ("content-type", "application/json")];
    all.extend_from_slice(headers);
    let resp = request(r.envoy.port, "POST", "/v1/chat/completions", &all, body.to_string().as_bytes());
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.header("x-llm-provider").unwrap().to_string()
}

#[test]
fn each_conversation_lands_on_the_same_provider_on_two_replicas() {
    let (one, two) = (replica(), replica());
    let mut used = BTreeSet::new();
    for i in 0..30 {
        let opening = json!({"model": "t/sticky", "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": format!("question {i}")},
        ]});
        let mut later = opening.clone();
        later["messages"].as_array_mut().unwrap().extend([
            json!({"role": "assistant", "content": "answer"}),
            json!({"role": "user", "content": "follow-up"}),
        ]);
        let first = served_by(&one, &[], &opening);
        assert_eq!(served_by(&two, &[], &opening), first, "conversation {i} on replica two");
        assert_eq!(served_by(&two, &[], &later), first, "conversation {i}, later turn");
        let session = format!("session-{i}");
        let by_header = served_by(&one, &[("x-session-id", &session)], &opening);
        assert_eq!(served_by(&two, &[("x-session-id", &session)], &later), by_header);
        used.insert(first);
        used.insert(by_header);
    }
    assert!(used.len() > 1, "sessions spread over providers: {used:?}");
}
