//! What the mesh fixture runs share (tests/istio.rs, tests/envoy_gateway.rs): a patched config checked
//! by `envoy --mode validate` and started, and the fallback that must work through it.

use super::envoy::{envoy_bin, Envoy};
use super::http::request;
use super::router::{catalog, endpoint, provider, provider_key, CLIENT_KEY};
use llm_router_testkit::mock::{Behavior, MockProvider};
use serde_json::{json, Value};
use std::process::Command;

/// `envoy --mode validate` on `config`, then Envoy running it, with the keys of providers `first` and
/// `second` in its environment.
pub fn validate_and_start(config: &Value, name: &str) -> Envoy {
    let text = serde_json::to_string_pretty(config).unwrap();
    let env: Vec<(String, String)> = ["first", "second"]
        .iter()
        .map(|n| (format!("{}_API_KEY", n.to_uppercase()), provider_key(n)))
        .collect();
    let dir = std::env::temp_dir().join(format!("llm-router-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{name}.json"));
    std::fs::write(&file, &text).unwrap();
    let out = Command::new(envoy_bin())
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(&file)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && log.contains("OK"), "envoy --mode validate:\n{log}");
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Envoy::start_with(&text, &env_refs, 1).unwrap_or_else(|e| panic!("envoy did not start: {e}"))
}

/// Through `envoy`, at the router's `host`: `first` answers 503 and `second` serves, each attempt with its
/// provider's own model name and key; then the health logger's record makes the next request skip
/// `first` (the three roles share the health memory).
pub fn falls_back_then_skips_the_failed_provider(
    envoy: &Envoy,
    host: &str,
    first: &MockProvider,
    second: &MockProvider,
) {
    let body = serde_json::to_vec(&json!({"model": "test/m", "provider": {"sort": "price"},
        "messages": [{"role": "user", "content": "Hello"}]}))
    .unwrap();
    let auth = format!("Bearer {CLIENT_KEY}");
    let headers = [("host", host), ("authorization", auth.as_str()), ("content-type", "application/json")];
    let r = request(envoy.port, "POST", "/v1/chat/completions", &headers, &body);
    assert_eq!(r.status, 200, "{} {:?}\n{}", r.text(), r.headers, envoy.log());
    assert_eq!(r.header("x-llm-provider"), Some("second"));
    assert_eq!(r.header("x-llm-attempts"), Some("2"));
    let tried = first.requests();
    let served = second.requests();
    assert_eq!((tried.len(), served.len()), (1, 1));
    let model = |b: &[u8]| serde_json::from_slice::<Value>(b).unwrap()["model"].clone();
    assert_eq!(model(&tried[0].body), "m@first");
    assert_eq!(model(&served[0].body), "m@second", "the fallback's own model name");
    let key = |h: &[(String, String)]| h.iter().find(|(n, _)| n == "authorization").map(|(_, v)| v.clone());
    assert_eq!(key(&tried[0].headers), Some(format!("Bearer {}", provider_key("first"))), "its own key");
    assert_eq!(key(&served[0].headers), Some(format!("Bearer {}", provider_key("second"))), "its own key");
    let again = request(envoy.port, "POST", "/v1/chat/completions", &headers, &body);
    assert_eq!((again.status, again.header("x-llm-attempts")), (200, Some("1")), "{}", again.text());
    assert_eq!(first.requests().len(), 1, "the provider that failed was not tried again");
}

/// Providers `first` (cheaper, answering 503) and `second` (serving) of model `test/m`, and the
/// catalog naming them.
pub fn first_down_second_up() -> (MockProvider, MockProvider, Value) {
    let first = MockProvider::start("first");
    let down = r#"{"error":{"message":"down"}}"#.into();
    first.set_behavior(Behavior::Status { code: 503, headers: vec![], body: down });
    let second = MockProvider::start("second");
    let c = catalog(
        vec![provider("first", first.port()), provider("second", second.port())],
        vec![
            json!({"id": "test/m", "endpoints": [endpoint("first", "m@first", 1.0), endpoint("second", "m@second", 2.0)]}),
        ],
        json!({}),
    );
    (first, second, c)
}
