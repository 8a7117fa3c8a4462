//! Provider preferences, variants, key policies, model fallback lists and route explanations, end to end
//! through Envoy: what each provider received and what the client got.

mod common;

use common::http::{post_json, request, Response};
use common::router::{endpoint, provider, Router, CLIENT_KEY};
use common::schema::assert_valid;
use llm_router::catalog::hash_token;
use llm_router_testkit::mock::{Behavior, MockProvider};
use serde_json::{json, Value};

const CAREFUL_KEY: &str = "sk-careful-client";

/// p1 $1 (collects data, fp8, tools), p2 $2 (no data, zdr, fastest), p3 $3 (no data, tools and
/// response_format); p0 free. Models: t/m on p1..p3, t/free on p0 and p1, t/second on p0 and p3.
fn router() -> Router {
    let mocks: Vec<MockProvider> = ["p0", "p1", "p2", "p3"].iter().map(|n| MockProvider::start(n)).collect();
    let mut providers: Vec<Value> = mocks.iter().map(|m| provider(m.name(), m.port())).collect();
    providers[1]["data_collection"] = json!("allow");
    providers[2]["data_collection"] = json!("deny");
    providers[2]["zdr"] = json!(true);
    providers[3]["data_collection"] = json!("deny");
    providers[3]["display_name"] = json!("Third Party");
    providers[0]["data_collection"] = json!("deny");
    let mut e1 = endpoint("p1", "m@p1", 1.0);
    e1["quantization"] = json!("fp8");
    e1["throughput"] = json!(10);
    e1["supported_parameters"] = json!(["tools", "temperature"]);
    let mut e2 = endpoint("p2", "m@p2", 2.0);
    e2["throughput"] = json!(300);
    e2["supported_parameters"] = json!(["temperature"]);
    let mut e3 = endpoint("p3", "m@p3", 3.0);
    e3["throughput"] = json!(100);
    e3["supported_parameters"] = json!(["tools", "response_format", "temperature"]);
    let catalog = json!({
        "providers": providers,
        "models": [
            {"id": "t/m", "endpoints": [e1, e2, e3]},
            {"id": "t/free", "endpoints": [endpoint("p0", "free@p0", 0.0), endpoint("p1", "free@p1", 1.0)]},
            {"id": "t/second", "endpoints": [endpoint("p0", "second@p0", 2.0), endpoint("p3", "second@p3", 3.0)]},
        ],
        "keys": [
            {"name": "tests", "sha256": hash_token(CLIENT_KEY), "debug": true},
            {"name": "careful", "sha256": hash_token(CAREFUL_KEY), "policy": {"data_collection": "deny"}},
        ],
        "routing": {"max_attempts": 3},
    });
    Router::start(catalog, mocks)
}

fn chat(r: &Router, key: &str, body: Value) -> Response {
    let auth = format!("Bearer {key}");
    request(
        r.envoy.port,
        "POST",
        "/v1/chat/completions",
        &[("authorization", &auth), ("content-type", "application/json"), ("x-llm-router-debug", "1")],
        body.to_string().as_bytes(),
    )
}

fn body(model: &str, extra: Value) -> Value {
    let mut b = json!({"model": model, "messages": [{"role": "user", "content": "Hello"}]});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

#[test]
fn variants_and_preferences_pick_the_right_provider_with_its_model_name() {
    let r = router();
    // (model, extra body fields, key, provider that must serve)
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        ("t/m:floor", json!({}), CLIENT_KEY, "p1"),
        ("t/m:nitro", json!({}), CLIENT_KEY, "p2"),
        ("t/free:free", json!({}), CLIENT_KEY, "p0"),
        ("t/m", json!({"provider": {"order": ["Third Party", "p1"]}}), CLIENT_KEY, "p3"),
        ("t/m", json!({"provider": {"only": ["p2"]}}), CLIENT_KEY, "p2"),
        ("t/m", json!({"provider": {"ignore": ["p1", "p2"]}}), CLIENT_KEY, "p3"),
        ("t/m", json!({"provider": {"data_collection": "deny", "sort": "price"}}), CLIENT_KEY, "p2"),
        ("t/m", json!({"provider": {"sort": "price"}}), CAREFUL_KEY, "p2"),
        ("t/m", json!({"provider": {"data_collection": "allow", "sort": "price"}}), CAREFUL_KEY, "p2"),
        (
            "t/m",
            json!({"provider": {"max_price": {"prompt": "1.6"}, "sort": "throughput"}}),
            CLIENT_KEY,
            "p1",
        ),
        (
            "t/m",
            json!({"tools": [], "provider": {"require_parameters": true, "sort": "price"}}),
            CLIENT_KEY,
            "p1",
        ),
        (
            "t/m",
            json!({"response_format": {"type": "json_object"}, "provider": {"require_parameters": true}}),
            CLIENT_KEY,
            "p3",
        ),
    ];
    for (model, extra, key, want) in cases {
        let what = format!("{model} {extra} {}", if key == CAREFUL_KEY { "careful key" } else { "" });
        for m in &r.mocks {
            m.clear();
        }
        let resp = chat(&r, key, body(model, extra));
        assert_eq!(resp.status, 200, "{what}: {}", resp.text());
        assert_eq!(
            resp.header("x-llm-provider"),
            Some(want),
            "{what}: route {:?}",
            resp.header("x-llm-route")
        );
        let got = r.mock(want).requests();
        assert_eq!(got.len(), 1, "{what}");
        let native = if model.starts_with("t/free") { format!("free@{want}") } else { format!("m@{want}") };
        assert_eq!(got[0].json()["model"], native.as_str(), "{what}");
        assert!(got[0].json().get("provider").is_none(), "{what}");
    }
}

#[test]
fn restrictions_never_fall_back_to_an_excluded_provider() {
    let r = router();
    for m in &r.mocks {
        m.set_behavior(Behavior::Status { code: 503, headers: vec![], body: "{}".into() });
    }
    r.mock("p3").set_behavior(Behavior::Ok);
    // order + allow_fallbacks:false: p2 fails and nothing else may serve, although p3 is healthy.
    let resp =
        chat(&r, CLIENT_KEY, body("t/m", json!({"provider": {"order": ["p2"], "allow_fallbacks": false}})));
    assert_eq!(resp.status, 502, "{}", resp.text());
    assert!(r.mock("p3").requests().is_empty());
    // A deny key never reaches the collecting provider, even as the last resort.
    for m in &r.mocks {
        m.clear();
        m.set_behavior(Behavior::Status { code: 503, headers: vec![], body: "{}".into() });
    }
    let resp = chat(&r, CAREFUL_KEY, body("t/m", json!({"provider": {"data_collection": "allow"}})));
    assert_eq!(resp.status, 502);
    assert!(r.mock("p1").requests().is_empty(), "p1 collects data");
    assert_eq!(r.mock("p2").requests().len() + r.mock("p3").requests().len(), 2);
}

#[test]
fn nothing_fits_is_a_404_with_the_exclusions() {
    let r = router();
    let resp =
        chat(&r, CLIENT_KEY, body("t/m", json!({"provider": {"zdr": true, "quantizations": ["fp8"]}})));
    assert_eq!(resp.status, 404, "{}", resp.text());
    let v = resp.json();
    assert_valid("NotFoundResponse", &v);
    assert_eq!(
        v["error"]["metadata"]["excluded_by"],
        json!({"p1": "data_policy:zdr", "p2": "quantization", "p3": "data_policy:zdr"})
    );
    assert_eq!(v["error"]["message"], "No endpoints found matching your data policy");
    let resp = chat(&r, CLIENT_KEY, body("t/m", json!({"provider": {"sort": "exacto"}})));
    assert_eq!(resp.status, 400);
    assert!(resp.json()["error"]["message"].as_str().unwrap().contains("provider.sort"), "{}", resp.text());
    for m in &r.mocks {
        assert!(m.requests().is_empty());
    }
}

#[test]
fn models_list_falls_back_to_the_next_model_with_its_own_names() {
    let r = router();
    for p in ["p1", "p2", "p3"] {
        r.mock(p).set_behavior(Behavior::Status { code: 503, headers: vec![], body: "{}".into() });
    }
    // max(3 attempts, 2 models) = 3 slots: t/m's two cheapest (p1, p2), then t/second's first (p0).
    let resp = chat(
        &r,
        CLIENT_KEY,
        json!({"models": ["t/m", "t/second"], "route": "fallback", "provider": {"sort": "price"},
               "messages": [{"role": "user", "content": "Hello"}]}),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("x-llm-provider"), Some("p0"));
    assert_eq!(resp.header("x-llm-model"), Some("t/second"));
    assert_eq!(resp.header("x-llm-attempts"), Some("3"));
    assert_eq!(r.mock("p1").requests()[0].json()["model"], "m@p1");
    assert_eq!(r.mock("p2").requests()[0].json()["model"], "m@p2");
    assert!(r.mock("p3").requests().is_empty());
    let served = &r.mock("p0").requests()[0];
    assert_eq!(served.json()["model"], "second@p0");
    assert!(served.json().get("models").is_none() && served.json().get("route").is_none());
    // `model` comes before `models`.
    r.mock("p0").clear();
    let resp = chat(
        &r,
        CLIENT_KEY,
        json!({"model": "t/second", "models": ["t/m"], "messages": [{"role": "user", "content": "Hello"}],
               "provider": {"sort": "price"}}),
    );
    assert_eq!((resp.status, resp.header("x-llm-model")), (200, Some("t/second")));
    assert_eq!(resp.header("x-llm-attempts"), Some("1"));
}

#[test]
fn the_debug_header_explains_the_route() {
    let r = router();
    let resp = chat(
        &r,
        CLIENT_KEY,
        body("t/m", json!({"session_id": "conversation-1", "provider": {"ignore": ["p1"]}})),
    );
    assert_eq!(resp.status, 200);
    let route = resp.header("x-llm-route").expect("x-llm-route");
    assert!(route.starts_with("t/m:weighted(random) p2=0.692 p3=0.308"), "{route}");
    assert!(
        route.contains("session=session_id:") && route.contains("excluded=p1:allowed_providers"),
        "{route}"
    );
    let plain = post_json(r.envoy.port, "/v1/chat/completions", Some(CLIENT_KEY), &body("t/m", json!({})));
    assert_eq!(plain.header("x-llm-route"), None, "only on request");
    let auth = format!("Bearer {CLIENT_KEY}");
    let or = request(
        r.envoy.port,
        "POST",
        "/v1/chat/completions",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("x-openrouter-metadata", "enabled"),
        ],
        body("t/m", json!({})).to_string().as_bytes(),
    );
    let or_route = or.header("x-llm-route").expect("x-openrouter-metadata: enabled explains too");
    assert!(or_route.starts_with("t/m:weighted(") && or_route.contains("; plan="), "{or_route}");
}
