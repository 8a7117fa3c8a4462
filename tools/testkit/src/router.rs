//! A running router for integration tests: mock providers on free loopback ports, a catalog pointing at
//! them, the generated Envoy config, and Envoy with the built `.wasm`.

use super::envoy::{wasm_path, Envoy};
use super::http::{self, Response};
use crate::mock::MockProvider;
use llm_router_cli::envoy_config::{generate, Options};
use serde_json::{json, Value};

/// The client key every fixture accepts (allowed to debug: it sees `x-llm-route` and providers'
/// `x-ratelimit-*` headers).
pub const CLIENT_KEY: &str = "sk-client-test-key";

/// A provider key as the environment gives it to Envoy.
pub fn provider_key(name: &str) -> String {
    format!("secret-key-of-{name}")
}

pub struct Router {
    pub envoy: Envoy,
    pub mocks: Vec<MockProvider>,
    pub catalog: Value,
}

impl Router {
    /// Starts one mock per name, then Envoy on `catalog` (see `catalog_for`), with every provider key set.
    pub fn start(catalog: Value, mocks: Vec<MockProvider>) -> Router {
        Router::start_with_concurrency(catalog, mocks, 1)
    }

    /// [`Router::start`] with `concurrency` Envoy workers; with more than one, the listener balances
    /// connections exactly (each new connection goes to the worker with the fewest open ones).
    pub fn start_with_concurrency(catalog: Value, mocks: Vec<MockProvider>, concurrency: u32) -> Router {
        Router::start_with(catalog, mocks, concurrency, &wasm_path(), |yaml| yaml)
    }

    /// [`Router::start_with_concurrency`] with this `.wasm`, and the generated YAML passed through `edit`.
    pub fn start_with(
        catalog: Value,
        mocks: Vec<MockProvider>,
        concurrency: u32,
        wasm: &std::path::Path,
        edit: impl FnOnce(String) -> String,
    ) -> Router {
        let text = serde_json::to_string_pretty(&catalog).unwrap();
        let opts = Options {
            port: 0,
            admin_port: 0,
            wasm_path: wasm.display().to_string(),
            source: "test".into(),
            exact_balance: concurrency > 1,
            ..Options::default()
        };
        let yaml = edit(generate(&text, &opts).unwrap_or_else(|e| panic!("generate: {e}")));
        let names: Vec<String> = catalog["providers"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["api_key_env"].as_str().map(str::to_string))
            .collect();
        let values: Vec<(String, String)> = names
            .iter()
            .map(|var| (var.clone(), provider_key(&var.to_lowercase().replace("_api_key", ""))))
            .collect();
        let env: Vec<(&str, &str)> = values.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let envoy = Envoy::start_with(&yaml, &env, concurrency)
            .unwrap_or_else(|e| panic!("envoy did not start: {e}"));
        Router { envoy, mocks, catalog }
    }

    pub fn mock(&self, name: &str) -> &MockProvider {
        self.mocks.iter().find(|m| m.name() == name).unwrap()
    }

    pub fn chat(&self, body: &Value) -> Response {
        http::post_json(self.envoy.port, "/v1/chat/completions", Some(CLIENT_KEY), body)
    }
}

/// A provider entry for a mock: `http://127.0.0.1:<port>/<name>/v1`, key in `<NAME>_API_KEY`.
pub fn provider(name: &str, port: u16) -> Value {
    json!({
        "name": name,
        "display_name": format!("Provider {}", name.to_uppercase()),
        "endpoint": format!("http://127.0.0.1:{port}/{name}/v1"),
        "api_key_env": format!("{}_API_KEY", name.to_uppercase()),
    })
}

/// A native provider entry for a mock (`api`: `anthropic` or `gemini`): its base URL
/// `http://127.0.0.1:<port>` (the API's own paths follow), key in `<NAME>_API_KEY`.
pub fn native_provider(name: &str, port: u16, api: &str) -> Value {
    json!({
        "name": name,
        "display_name": format!("Provider {}", name.to_uppercase()),
        "endpoint": format!("http://127.0.0.1:{port}"),
        "api": api,
        "api_key_env": format!("{}_API_KEY", name.to_uppercase()),
    })
}

/// An endpoint of a model on `provider` with a native name `<model>@<provider>` and a price.
pub fn endpoint(provider: &str, native: &str, price: f64) -> Value {
    json!({"provider": provider, "model": native, "pricing": {"prompt": price, "completion": price}})
}

/// A catalog with the given providers and models, the test client key, and routing overrides.
pub fn catalog(providers: Vec<Value>, models: Vec<Value>, routing: Value) -> Value {
    json!({
        "providers": providers,
        "models": models,
        "keys": [{"name": "tests", "sha256": llm_router::catalog::hash_token(CLIENT_KEY), "debug": true}],
        "routing": routing,
    })
}

/// A user message body for `model`, sorted by price so the cheapest provider is always tried first (the
/// default weighted draw would make the order a matter of chance; tests/stickiness.rs covers it).
pub fn chat_body(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "provider": {"sort": "price"},
           "messages": [{"role": "user", "content": "Hello"}]})
}

/// Mocks `first` (cheapest, $1) and `second` ($2) serving model `test/m` (with `model_fields` merged into
/// its entry, e.g. a context length), the catalog's `routing` as given.
pub fn first_and_second(model_fields: Value, routing: Value) -> Router {
    let first = MockProvider::start("first");
    let second = MockProvider::start("second");
    let mut model = json!({"id": "test/m", "endpoints": [
        endpoint("first", "m@first", 1.0),
        endpoint("second", "m@second", 2.0),
    ]});
    if let (Some(m), Some(extra)) = (model.as_object_mut(), model_fields.as_object()) {
        m.extend(extra.clone());
    }
    let c = catalog(
        vec![provider("first", first.port()), provider("second", second.port())],
        vec![model],
        routing,
    );
    Router::start(c, vec![first, second])
}

/// Mocks `oai` (OpenAI's API), `ant` (Anthropic's) and `gem` (Gemini's), each serving model `test/m`
/// (natively `m-oai`, `claude-m` with `max_completion_tokens` 2048, `gemini-m`) at $1/$2, $3/$15 (cache
/// read $0.30, write $3.75) and $0.5/$4 per million prompt/completion tokens; `max_attempts` 3.
pub fn three_apis() -> Router {
    let (oai, ant, gem) =
        (MockProvider::start("oai"), MockProvider::start("ant"), MockProvider::start("gem"));
    let c = catalog(
        vec![
            provider("oai", oai.port()),
            native_provider("ant", ant.port(), "anthropic"),
            native_provider("gem", gem.port(), "gemini"),
        ],
        vec![json!({"id": "test/m", "endpoints": [
            {"provider": "oai", "model": "m-oai", "pricing": {"prompt": 1, "completion": 2}},
            {"provider": "ant", "model": "claude-m", "max_completion_tokens": 2048,
             "pricing": {"prompt": 3, "completion": 15, "cache_read": 0.3, "cache_write": 3.75}},
            {"provider": "gem", "model": "gemini-m", "pricing": {"prompt": 0.5, "completion": 4}}
        ]})],
        json!({"max_attempts": 3}),
    );
    Router::start(c, vec![oai, ant, gem])
}
