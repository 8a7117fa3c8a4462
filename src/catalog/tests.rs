use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// A small catalog used by the brain's tests: key `sk-test-1`, three providers, `max_attempts` 2.
pub(crate) const DEMO: &str = include_str!("../../tests/fixtures/catalog.json");

pub(crate) fn demo_json() -> String {
    DEMO.replace("SHA", &hash_token("sk-test-1"))
}

/// [`demo_json`] with `limits` (a JSON object, e.g. `{"usd_per_day": 5}`) on its key and `routing`
/// (members, each after a comma, e.g. `, "free_requests_per_day": 3`) added to its routing.
pub(crate) fn demo_json_with(limits: &str, routing: &str) -> String {
    demo_json()
        .replace(r#""max_attempts": 2"#, &format!(r#""max_attempts": 2{routing}"#))
        .replace(r#"{"name": "team-a","#, &format!(r#"{{"name": "team-a", "limits": {limits},"#))
}

/// The endpoint of model `model` served by `provider` (test helper).
pub(crate) fn endpoint(c: &Catalog, model: &str, provider: &str) -> EndpointRef {
    let m = c.model_named(model).unwrap();
    c.endpoints_of(m).find(|e| c.provider_of(*e).name == provider).unwrap()
}

fn env(name: &str) -> Option<String> {
    match name {
        "ALPHA_KEY" => Some("alpha-secret".into()),
        "BETA_KEY" => Some("beta-secret".into()),
        _ => None,
    }
}

pub(crate) fn demo() -> Catalog {
    Catalog::parse(demo_json().as_bytes(), Some(&env)).unwrap()
}

/// [`demo`] with its key allowed to debug.
pub(crate) fn demo_debug() -> Catalog {
    let json = demo_json().replace(r#"{"name": "team-a","#, r#"{"name": "team-a", "debug": true,"#);
    let c = Catalog::parse(json.as_bytes(), Some(&env)).unwrap();
    assert!(c.keys.iter().all(|k| k.debug));
    c
}

fn parse_err(json: &str) -> String {
    Catalog::parse(json.as_bytes(), Some(&env)).unwrap_err().to_string()
}

#[test]
fn demo_parses_with_defaults_and_index() {
    let c = demo();
    assert_eq!(c.routing.max_attempts, 2);
    assert_eq!(c.routing.max_request_bytes, 8 * 1024 * 1024);
    assert_eq!(c.model_named("llama"), c.model_named("meta/llama"));
    assert_eq!(c.model_named("nope"), None);
    let beta = &c.providers[1];
    assert_eq!(beta.auth_header, "x-api-key");
    assert_eq!(beta.auth_value.as_ref().unwrap().expose(), "beta-secret");
    assert_eq!(c.providers[0].auth_value.as_ref().unwrap().expose(), "Bearer alpha-secret");
    assert_eq!(beta.endpoint.path_prefix, "/openai/v1");
    assert_eq!(beta.endpoint.authority, "127.0.0.1:8080");
    assert_eq!(c.providers[0].endpoint.authority, "api.alpha.example");
    assert_eq!(c.provider_header_names, ["authorization", "x-api-key", "x-beta-version"]);
    assert_eq!(c.models[1].endpoints[0].model_json, r#""gpt\"quoted""#);
    assert_eq!(c.max_plan_len(), 4, "max(max_attempts, MAX_MODELS), bounded by the 4 endpoints");
}

#[test]
fn secrets_never_show_in_debug() {
    let text = format!("{:?}", demo());
    assert!(!text.contains("alpha-secret") && !text.contains("beta-secret"), "{text}");
}

#[test]
fn errors_name_the_field_path() {
    let j = demo_json();
    let cases = [
        (
            j.replace(
                r#""provider": "beta", "model": "llama-b""#,
                r#""provider": "betta", "model": "llama-b""#,
            ),
            "models[0].endpoints[2].provider: unknown provider \"betta\"",
        ),
        (
            j.replace(r#""endpoint": "http://gamma.local""#, r#""endpoint": "ftp://gamma""#),
            "providers[2].endpoint:",
        ),
        (
            j.replace(r#""name": "gamma","#, r#""name": "gamma", "colour": "red","#),
            "providers[2].colour: unknown field",
        ),
        (
            j.replace(r#""name": "gamma","#, r#""name": "gamma", "zdr": "yes","#),
            "providers[2].zdr: must be a boolean",
        ),
        (j.replace(r#", "endpoint": "http://gamma.local""#, ""), "providers[2].endpoint: is required"),
        (j.replace(r#""max_attempts": 2"#, r#""max_attemps": 2"#), "routing.max_attemps: unknown field"),
        (
            j.replace(r#""max_attempts": 2"#, r#""max_attempts": 2.5"#),
            "routing.max_attempts: must be a non-negative integer",
        ),
        (j.replace(r#""providers": ["#, r#""providerz": 1, "providers": ["#), "providerz: unknown field"),
        (
            j.replace(r#""aliases": ["llama"]"#, r#""aliases": ["llama", 7]"#),
            "models[0].aliases: must be an array of strings",
        ),
        (
            j.replace(r#""pricing": {"prompt": 1, "completion": 1}"#, r#""pricing": {"prompt": 1}"#),
            "models[0].endpoints[0].pricing.completion: is required",
        ),
        (j.replace(r#""max_attempts": 2"#, r#""max_attempts": 0"#), "routing.max_attempts:"),
        (
            j.replace(r#""max_attempts": 2"#, r#""max_attempts": 11"#),
            "routing.max_attempts: must be between 1 and 10",
        ),
        (j.replace(r#""prompt": 2,"#, r#""prompt": -2,"#), "models[1].endpoints[0].pricing.prompt:"),
        (
            j.replace(r#"["tools", "max_tokens"]"#, r#"["tools", "max_tokenz"]"#),
            "models[0].endpoints[1].supported_parameters[1]: unknown value \"max_tokenz\"",
        ),
        (
            j.replace(r#""aliases": ["llama"]"#, r#""aliases": ["openai/gpt"]"#),
            "models[1].id: model name \"openai/gpt\" is already used",
        ),
        (
            j.replace(r#"[{"name": "team-a", "sha256": "#, r#"[{"name": "team-a", "sha256": "abc", "x": "#),
            "keys[0].x: unknown field",
        ),
        (
            j.replace(
                r#""max_attempts": 2"#,
                r#""max_attempts": 2, "rate_limit_service": {"address": "rls"}"#,
            ),
            "routing.rate_limit_service.address: must be host:port",
        ),
        (
            j.replace(r#""max_attempts": 2"#, r#""max_attempts": 2, "rate_limit_service": {"domain": "d"}"#),
            "routing.rate_limit_service.address: is required",
        ),
        (
            j.replace(
                r#""max_attempts": 2"#,
                r#""max_attempts": 2, "rate_limit_service": {"address": "rls:81", "timeout_ms": 0}"#,
            ),
            "routing.rate_limit_service.timeout_ms: must be between 1 and 60000",
        ),
        (
            j.replace(
                r#""max_attempts": 2"#,
                r#""max_attempts": 2, "rate_limit_service": {"address": "rls:81", "domain": "a b"}"#,
            ),
            "routing.rate_limit_service.domain: must be a non-empty name of [A-Za-z0-9._-]",
        ),
        (
            j.replace(
                r#""max_attempts": 2"#,
                r#""max_attempts": 2, "rate_limit_service": {"address": "rls:81", "deny": true}"#,
            ),
            "routing.rate_limit_service.deny: unknown field",
        ),
        (
            j.replace(r#""max_attempts": 2"#, r#""max_attempts": 2, "free_requests_per_day": 0"#),
            "routing.free_requests_per_day: must be at least 1",
        ),
        (
            j.replace(r#"{"name": "team-a","#, r#"{"name": "team-a", "limits": {"requests_per_minute": 0},"#),
            "keys[0].limits.requests_per_minute: must be at least 1",
        ),
        (
            j.replace(r#"{"name": "team-a","#, r#"{"name": "team-a", "limits": {"usd_per_day": -1},"#),
            "keys[0].limits.usd_per_day: must be a number of USD from 0 to 1000000000",
        ),
        (
            j.replace(r#"{"name": "team-a","#, r#"{"name": "team-a", "limits": {"usd_per_year": 5},"#),
            "keys[0].limits.usd_per_year: unknown field",
        ),
        (
            j.replace(
                r#"{"name": "team-a","#,
                r#"{"name": "team-a", "limits": {"requests_per_minute": 1.5},"#,
            ),
            "keys[0].limits.requests_per_minute:",
        ),
        ("{\"providers\": [], \"models\": []}".to_string(), "providers: at least one provider"),
        ("not json".to_string(), "invalid catalog"),
        ("[]".to_string(), "must be an object"),
        (
            j.replace(r#""providers": ["#, r#""providers": 1, "providers": ["#),
            "invalid catalog: duplicate key \"providers\"",
        ),
        (j.replace(r#""name": "gamma","#, r#""name": "gamma", "name": "delta","#), "duplicate key \"name\""),
    ];
    for (json, want) in cases {
        let got = parse_err(&json);
        assert!(got.contains(want), "want {want:?} in {got:?}");
    }
}

#[test]
fn missing_key_variable_names_provider_and_variable_only() {
    let no_env = |_: &str| None;
    let e = Catalog::parse(demo_json().as_bytes(), Some(&no_env)).unwrap_err().to_string();
    assert_eq!(
        e,
        "providers[0].api_key_env: provider \"alpha\" needs environment variable ALPHA_KEY, which is not set"
    );
    // The generator does not read keys.
    assert!(Catalog::parse(demo_json().as_bytes(), None).is_ok());
    let ten = demo_json().replace(r#""max_attempts": 2"#, r#""max_attempts": 10"#);
    assert_eq!(Catalog::parse(ten.as_bytes(), None).map(|c| c.routing.max_attempts), Ok(10));
}

#[test]
fn key_with_newline_is_refused_without_echoing_it() {
    let bad = |n: &str| (n == "ALPHA_KEY" || n == "BETA_KEY").then(|| "sec\nret".to_string());
    let e = Catalog::parse(demo_json().as_bytes(), Some(&bad)).unwrap_err().to_string();
    assert!(e.contains("ALPHA_KEY") && !e.contains("sec"), "{e}");
}

#[test]
fn endpoints_parse() {
    let e = Endpoint::parse("https://h.example:8443/a/b/").unwrap();
    assert_eq!((e.tls, e.host.as_str(), e.port, e.path_prefix.as_str()), (true, "h.example", 8443, "/a/b"));
    assert_eq!(e.authority, "h.example:8443");
    let e = Endpoint::parse("http://[::1]:9000").unwrap();
    assert_eq!((e.host.as_str(), e.port, e.authority.as_str()), ("::1", 9000, "[::1]:9000"));
    assert!(e.host_is_ip());
    assert!(!Endpoint::parse("https://h.example").unwrap().host_is_ip());
    assert!(Endpoint::parse("http://10.0.0.1:80").unwrap().host_is_ip());
    for bad in ["h.example", "https://", "https://h:0", "https://h:99999", "https://h/x?y=1", "http://a b"] {
        assert!(Endpoint::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn models_api_renders_openrouter_shape() {
    let c = demo();
    let v: serde_json::Value = serde_json::from_str(&c.models_json).unwrap();
    assert_eq!(v["total_count"], 2);
    let m = &v["data"][0];
    assert_eq!(m["id"], "meta/llama");
    assert_eq!(m["pricing"]["prompt"], "0.0000001");
    assert_eq!(m["pricing"]["completion"], "0.0000002");
    assert_eq!(m["context_length"], 1000);
    assert_eq!(m["supported_parameters"], serde_json::json!(["tools", "max_tokens"]));
}

#[test]
fn every_field_check_accepts_its_edge_and_refuses_past_it() {
    let j = demo_json();
    let gamma = r#""name": "gamma", "endpoint": "http://gamma.local""#;
    let provider = |extra: &str| {
        j.replace(gamma, &format!(r#""name": "gamma", "endpoint": "http://gamma.local"{extra}"#))
    };
    let routing = |extra: &str| j.replace(r#""max_attempts": 2"#, &format!(r#""max_attempts": 2, {extra}"#));
    let model_id = |id: &str| j.replace(r#""id": "openai/gpt""#, &format!(r#""id": {id}"#));
    // (catalog, error wanted: None = it loads)
    let cases: Vec<(String, Option<&str>)> = vec![
        (routing(r#""max_request_bytes": 1024"#), None),
        (routing(r#""max_request_bytes": 1023"#), Some("routing.max_request_bytes:")),
        (routing(r#""max_request_bytes": 1073741824"#), None),
        (routing(r#""max_request_bytes": 1073741825"#), Some("routing.max_request_bytes:")),
        (routing(r#""first_byte_timeout_ms": 0"#), Some("routing: timeouts")),
        (routing(r#""response_timeout_ms": 0"#), Some("routing: timeouts")),
        (routing(r#""first_byte_timeout_ms": 1, "response_timeout_ms": 1"#), None),
        (j.replace(r#""gamma""#, r#""gamma-2.x_y""#), None),
        (
            j.replace(r#""name": "gamma""#, r#""name": "Gamma""#),
            Some("providers[2].name: must be a non-empty slug"),
        ),
        (
            j.replace(r#""name": "gamma""#, r#""name": """#),
            Some("providers[2].name: must be a non-empty slug"),
        ),
        (provider(r#", "auth_header": "X-Key""#), None),
        (
            provider(r#", "auth_header": "x key""#),
            Some("providers[2].auth_header: is not a valid header name"),
        ),
        (provider(r#", "auth_header": """#), Some("providers[2].auth_header: is not a valid header name")),
        (provider(r#", "auth_scheme": "Token""#), None),
        (
            provider(r#", "auth_scheme": "Bad\nScheme""#),
            Some("providers[2].auth_scheme: is not a valid header value"),
        ),
        (
            provider(r#", "api_key_env": "GAMMA_KEY_2""#),
            Some("providers[2].api_key_env: provider \"gamma\" needs environment variable GAMMA_KEY_2"),
        ),
        (
            provider(r#", "api_key_env": "GAMMA-KEY""#),
            Some("providers[2].api_key_env: must be an environment variable name"),
        ),
        (
            provider(r#", "api_key_env": """#),
            Some("providers[2].api_key_env: must be an environment variable name"),
        ),
        (provider(r#", "data_collection": "deny""#), None),
        (
            provider(r#", "data_collection": "never""#),
            Some("providers[2].data_collection: must be \"allow\" or \"deny\""),
        ),
        (provider(r#", "headers": {"X-Org": "o-1"}"#), None),
        (
            provider(r#", "headers": {":path": "/x"}"#),
            Some("providers[2].headers.:path: is not a valid header"),
        ),
        (
            provider(r#", "headers": {"x org": "o"}"#),
            Some("providers[2].headers.x org: is not a valid header"),
        ),
        (
            provider(r#", "headers": {"x-org": "a\u0007b"}"#),
            Some("providers[2].headers.x-org: is not a valid header"),
        ),
        (model_id(r#""a/b~c""#), None),
        (model_id(r#""a b""#), Some("models[1].id: must be a non-empty name of visible ASCII")),
        (model_id(r#""""#), Some("models[1].id: must be a non-empty name of visible ASCII")),
        (model_id(r#""a/é""#), Some("models[1].id: must be a non-empty name of visible ASCII")),
        (
            j.replace(r#""aliases": ["llama"]"#, r#""aliases": ["lla ma"]"#),
            Some("models[0].aliases[0]: must be a non-empty"),
        ),
    ];
    for (json, want) in cases {
        let got = Catalog::parse(json.as_bytes(), Some(&env)).map(|_| ()).map_err(|e| e.to_string());
        match want {
            None => assert!(got.is_ok(), "{got:?} for {json}"),
            Some(want) => {
                assert!(got.as_ref().is_err_and(|e| e.starts_with(want)), "want {want:?}, got {got:?}")
            }
        }
    }
    assert!(is_header_name("x-a.b_c!#$%&'*+^`|~9") && !is_header_name("X-Upper") && !is_header_name(""));
    assert!(is_header_value("a b\tc~") && !is_header_value("a\rb") && !is_header_value("é"));
}

#[test]
fn keys_never_show_in_debug_output_and_clusters_are_named_for_envoy() {
    let c = demo();
    let alpha = &c.providers[0];
    assert_eq!(format!("{:?}", alpha.auth_value), "Some(Secret(***))");
    assert!(!format!("{alpha:?}").contains("alpha-secret") && !format!("{c:?}").contains("secret\""));
    assert_eq!(
        (alpha.cluster_name(), alpha.fallback_cluster_name()),
        ("llm_provider_alpha".into(), "llm_fallback_alpha".into())
    );
    assert_eq!(c.provider_by_cluster("llm_fallback_beta").map(|p| p.name.as_str()), Some("beta"));
    assert_eq!(c.provider_by_cluster("llm_provider_beta").map(|p| p.name.as_str()), Some("beta"));
    assert!(c.provider_by_cluster("beta").is_none());
}

#[test]
fn the_models_list_shows_the_cheapest_endpoint_and_every_provider_id_is_listed() {
    let c = demo();
    // gamma $2, alpha $0.3, beta $1: alpha's prices are shown; a tie keeps the first listed.
    let v: serde_json::Value = serde_json::from_str(&c.models_json).unwrap();
    assert_eq!(v["data"][0]["pricing"]["prompt"], "0.0000001");
    let tie = demo_json().replace(
        r#""prompt": 0.5, "completion": 0.5, "cache_read": 0.1"#,
        r#""prompt": 0.1, "completion": 0.2, "cache_read": 0.05"#,
    );
    let c2 = Catalog::parse(tie.as_bytes(), None).unwrap();
    let v: serde_json::Value = serde_json::from_str(&c2.models_json).unwrap();
    assert!(
        v["data"][0]["pricing"].get("input_cache_read").is_none(),
        "alpha (first of the two cheapest) has none"
    );
    let names: Vec<&str> = c.provider_ids().map(|p| c.provider(p).name.as_str()).collect();
    assert_eq!(names, ["alpha", "beta", "gamma"]);
}

#[test]
fn key_limits_are_read_and_optional() {
    let json = demo_json().replace(
        r#"{"name": "team-a","#,
        r#"{"name": "team-a", "limits": {"requests_per_minute": 60, "tokens_per_minute": 1000, "usd_per_day": 1.5, "usd_per_week": 5, "usd_per_month": 0},"#,
    );
    let c = Catalog::parse(json.as_bytes(), Some(&env)).unwrap();
    let want = KeyLimits {
        requests_per_minute: Some(60),
        tokens_per_minute: Some(1000),
        usd_per_day: Some(1_500_000_000),
        usd_per_week: Some(5_000_000_000),
        usd_per_month: Some(0),
    };
    assert_eq!(c.keys[0].limits, want);
    assert_eq!(demo().keys[0].limits, KeyLimits::default(), "none by default");
}

#[test]
fn a_rate_limit_service_is_read_with_its_defaults() {
    let json = demo_json().replace(
        r#""max_attempts": 2"#,
        r#""max_attempts": 2, "rate_limit_service": {"address": "[::1]:8081"}"#,
    );
    let c = Catalog::parse(json.as_bytes(), Some(&env)).unwrap();
    let s = c.routing.rate_limit_service.unwrap();
    assert_eq!((s.host.as_str(), s.port, s.domain.as_str()), ("::1", 8081, "llm-router"));
    assert_eq!((s.timeout_ms, s.deny_when_unreachable, s.usd_unit_nano), (100, false, 1000));
    assert_eq!(demo().routing.rate_limit_service, None);
}

#[test]
fn istio_clusters_name_their_provider_by_its_private_host() {
    let c = demo();
    let beta = &c.providers[1];
    assert_eq!(beta.istio_host(), "beta.llm-router.internal");
    assert_eq!(beta.istio_cluster_name(), "outbound|8080||beta.llm-router.internal");
    let name = |cluster: &str| c.provider_by_cluster(cluster).map(|p| p.name.clone());
    assert_eq!(name("outbound|8080||beta.llm-router.internal").as_deref(), Some("beta"));
    assert_eq!(name("outbound|443|some-subset|alpha.llm-router.internal").as_deref(), Some("alpha"));
    // The provider's real host is the gateway's other traffic, not ours.
    for other in [
        "outbound|8080||127.0.0.1",
        "outbound|443||api.alpha.example",
        "outbound|9999||beta.llm-router.internal",
        "outbound|x||beta.llm-router.internal",
        "outbound|8080",
        "inbound|8080||beta.llm-router.internal",
    ] {
        assert_eq!(name(other), None, "{other}");
    }
    assert_eq!(name("llm_fallback_gamma").as_deref(), Some("gamma"));
}

#[test]
fn envoy_gateway_clusters_name_their_provider_by_its_httproute() {
    let c = demo();
    let route = |cluster: &str| c.provider_by_cluster(cluster).map(|p| p.name.as_str());
    assert_eq!(route("httproute/llm/llm-router-beta/rule/0"), Some("beta"));
    assert_eq!(route("httproute/other-ns/llm-router-gamma/rule/12"), Some("gamma"));
    for other in [
        "httproute/llm/llm-router/rule/0",
        "httproute/llm/llm-router-beta/rule/x",
        "httproute/llm/llm-router-beta/rule/0/backend/0",
        "httproute/llm/llm-router-beta/match/0",
        "httproute/llm/beta/rule/0",
        "httproute/llm/llm-router-delta/rule/0",
        "grpcroute/llm/llm-router-beta/rule/0",
    ] {
        assert!(c.provider_by_cluster(other).is_none(), "{other}");
    }
}

/// The demo catalog with gamma's entry replaced by `gamma` (its members after the name).
fn with_gamma(gamma: &str) -> String {
    demo_json().replace(
        r#"{"name": "gamma", "endpoint": "http://gamma.local"}"#,
        &format!(r#"{{"name": "gamma", {gamma}}}"#),
    )
}

#[test]
fn native_providers_get_their_api_s_key_header_path_and_version() {
    let env = |_: &str| Some("k".to_string());
    let load = |gamma: &str| Catalog::parse(with_gamma(gamma).as_bytes(), Some(&env)).unwrap();
    let c = load(r#""endpoint": "https://api.anthropic.com", "api": "anthropic", "api_key_env": "K""#);
    let p = &c.providers[2];
    assert_eq!(
        (p.api, p.auth_header.as_str(), p.chat_path.as_str()),
        (Api::Anthropic, "x-api-key", "/v1/messages")
    );
    assert_eq!(p.auth_value.as_ref().unwrap().expose(), "k", "no scheme");
    assert_eq!(p.headers, [("anthropic-version".to_string(), "2023-06-01".to_string())]);
    assert!(c.provider_header_names.iter().any(|n| n == "anthropic-version"), "other attempts remove it");
    let c = load(
        r#""endpoint": "https://api.anthropic.com", "api": "anthropic", "anthropic_version": "2024-01-01""#,
    );
    assert_eq!(c.providers[2].headers[0].1, "2024-01-01");
    let c = load(
        r#""endpoint": "https://generativelanguage.googleapis.com", "api": "gemini", "api_key_env": "K""#,
    );
    let p = &c.providers[2];
    assert_eq!(
        (p.api, p.auth_header.as_str(), p.chat_path.as_str()),
        (Api::Gemini, "x-goog-api-key", "/v1beta/models/")
    );
    assert_eq!(
        crate::wire::native::request_path(p, "gemini-2.5-flash", true),
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    assert_eq!(
        crate::wire::native::request_path(p, "gemini-2.5-flash", false),
        "/v1beta/models/gemini-2.5-flash:generateContent"
    );
    assert_eq!(demo().providers[2].api, Api::OpenAi, "the default");
}

#[test]
fn a_native_provider_s_bad_fields_are_named() {
    for (gamma, want) in [
        (
            r#""endpoint": "http://g", "api": "cohere""#,
            "providers[2].api: must be \"openai\", \"anthropic\" or \"gemini\", not \"cohere\"",
        ),
        (
            r#""endpoint": "http://g", "anthropic_version": "2023-06-01""#,
            "providers[2].anthropic_version: is only for providers with \"api\": \"anthropic\"",
        ),
        (
            r#""endpoint": "http://g", "api": "anthropic", "anthropic_version": "a\nb""#,
            "providers[2].anthropic_version: is not a valid header value",
        ),
        (
            r#""endpoint": "https://api.anthropic.com/v1", "api": "anthropic""#,
            "providers[2].endpoint: the anthropic API's base URL comes without its version (e.g. https://api.anthropic.com)",
        ),
        (
            r#""endpoint": "https://g/v1beta/", "api": "gemini""#,
            "providers[2].endpoint: the gemini API's base URL comes without its version (e.g. https://generativelanguage.googleapis.com)",
        ),
    ] {
        assert_eq!(parse_err(&with_gamma(gamma)), want);
    }
    let json = with_gamma(r#""endpoint": "http://g", "api": "anthropic""#).replace(
        r#"{"provider": "gamma", "model": "llama-g", "pricing": {"prompt": 1, "completion": 1}}"#,
        r#"{"provider": "gamma", "model": "llama-g", "pricing": {"prompt": 1, "completion": 1}, "supported_parameters": ["tools", "seed"]}"#,
    );
    assert_eq!(
        parse_err(&json),
        "models[0].endpoints[0].supported_parameters[1]: the anthropic API has no \"seed\": its translation drops it"
    );
    let json = with_gamma(r#""endpoint": "http://g", "api": "gemini""#).replace("llama-g", "x/../y?z");
    assert_eq!(
        parse_err(&json),
        "models[0].endpoints[0].model: a Gemini model name is [A-Za-z0-9._-] (it goes in the path)"
    );
}
