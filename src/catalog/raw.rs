//! The catalog exactly as written by users (serde types). Unknown fields are refused so a typo is an
//! error at load, not a silently ignored setting. Validation and indexing happen in `super`.

use serde::Deserialize;
use std::collections::BTreeMap;

/// The whole catalog document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCatalog {
    pub providers: serde_json::Value,
    pub models: serde_json::Value,
    #[serde(default)]
    pub keys: serde_json::Value,
    #[serde(default)]
    pub auth: Option<String>,
    #[serde(default)]
    pub routing: serde_json::Value,
}

/// `providers[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub name: String,
    #[serde(default)]
    pub display_name: Option<String>,
    pub endpoint: String,
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub auth_header: Option<String>,
    #[serde(default)]
    pub auth_scheme: Option<String>,
    #[serde(default)]
    pub data_collection: Option<String>,
    #[serde(default)]
    pub zdr: Option<bool>,
    #[serde(default)]
    pub ca_file: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// `models[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub id: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub created: Option<u64>,
    #[serde(default)]
    pub context_length: Option<u64>,
    #[serde(default)]
    pub input_modalities: Option<Vec<String>>,
    #[serde(default)]
    pub output_modalities: Option<Vec<String>>,
    pub endpoints: serde_json::Value,
}

/// `models[].endpoints[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    pub provider: String,
    pub model: String,
    pub pricing: RawPricing,
    #[serde(default)]
    pub quantization: Option<String>,
    #[serde(default)]
    pub context_length: Option<u64>,
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    #[serde(default)]
    pub supported_parameters: Option<Vec<String>>,
    #[serde(default)]
    pub throughput: Option<f64>,
    #[serde(default)]
    pub latency_ms: Option<f64>,
}

/// `pricing`, USD per million tokens (`request` per request, `image` per image).
#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct RawPricing {
    pub prompt: f64,
    pub completion: f64,
    #[serde(default)]
    pub cache_read: Option<f64>,
    #[serde(default)]
    pub cache_write: Option<f64>,
    #[serde(default)]
    pub request: Option<f64>,
    #[serde(default)]
    pub image: Option<f64>,
}

/// `keys[]`. `limits` is accepted (the contract names it) but not enforced yet.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub name: String,
    pub sha256: String,
    #[serde(default)]
    pub policy: Option<serde_json::Value>,
    #[serde(default)]
    #[allow(dead_code)]
    pub limits: Option<serde_json::Value>,
}

/// `routing`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    #[serde(default)]
    pub max_attempts: Option<u32>,
    #[serde(default)]
    pub outage_window_seconds: Option<u64>,
    #[serde(default)]
    pub sticky_sessions: Option<bool>,
    #[serde(default)]
    pub max_request_bytes: Option<u64>,
    #[serde(default)]
    pub first_byte_timeout_ms: Option<u64>,
    #[serde(default)]
    pub response_timeout_ms: Option<u64>,
    #[serde(default)]
    pub apps: Vec<String>,
}
