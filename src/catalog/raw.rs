//! The catalog exactly as written by users, read member by member ([`Object`]): a wrong type is an error
//! naming the field, and so is an unknown field, so a typo is an error at load, not a silently ignored
//! setting. What the values mean (and whether they are valid) is `load`'s business.

use super::fields::{Checked, Object};
use serde_json::Value;
use std::collections::BTreeMap;

/// The whole catalog document.
#[derive(Debug)]
pub struct RawCatalog<'v> {
    pub providers: &'v Value,
    pub models: &'v Value,
    pub keys: Option<&'v Value>,
    pub auth: Option<String>,
    pub routing: Option<&'v Value>,
}

impl<'v> RawCatalog<'v> {
    /// Reads the document's top level.
    pub fn read(v: &'v Value) -> Checked<RawCatalog<'v>> {
        let mut o = Object::new(v, "")?;
        let providers = o.value("providers").unwrap_or(&Value::Null);
        let models = o.value("models").unwrap_or(&Value::Null);
        let raw = RawCatalog {
            providers,
            models,
            keys: o.value("keys"),
            auth: o.opt_string("auth")?,
            routing: o.value("routing"),
        };
        o.finish()?;
        Ok(raw)
    }
}

/// `providers[]`.
#[derive(Debug)]
pub struct RawProvider {
    pub name: String,
    pub display_name: Option<String>,
    pub endpoint: String,
    pub api_key_env: Option<String>,
    pub auth_header: Option<String>,
    pub auth_scheme: Option<String>,
    pub data_collection: Option<String>,
    pub zdr: Option<bool>,
    pub ca_file: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub api: Option<String>,
    pub anthropic_version: Option<String>,
}

impl RawProvider {
    /// Reads `providers[i]`.
    pub fn read(v: &Value, path: &str) -> Checked<RawProvider> {
        let mut o = Object::new(v, path)?;
        let p = RawProvider {
            name: o.string("name")?,
            display_name: o.opt_string("display_name")?,
            endpoint: o.string("endpoint")?,
            api_key_env: o.opt_string("api_key_env")?,
            auth_header: o.opt_string("auth_header")?,
            auth_scheme: o.opt_string("auth_scheme")?,
            data_collection: o.opt_string("data_collection")?,
            zdr: o.opt_bool("zdr")?,
            ca_file: o.opt_string("ca_file")?,
            headers: o.string_map("headers")?,
            api: o.opt_string("api")?,
            anthropic_version: o.opt_string("anthropic_version")?,
        };
        o.finish()?;
        Ok(p)
    }
}

/// `models[]`.
#[derive(Debug)]
pub struct RawModel<'v> {
    pub id: String,
    pub aliases: Vec<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub created: Option<u64>,
    pub context_length: Option<u64>,
    pub input_modalities: Option<Vec<String>>,
    pub output_modalities: Option<Vec<String>>,
    pub endpoints: &'v Value,
}

impl<'v> RawModel<'v> {
    /// Reads `models[i]`.
    pub fn read(v: &'v Value, path: &str) -> Checked<RawModel<'v>> {
        let mut o = Object::new(v, path)?;
        let m = RawModel {
            id: o.string("id")?,
            aliases: o.opt_strings("aliases")?.unwrap_or_default(),
            name: o.opt_string("name")?,
            description: o.opt_string("description")?,
            created: o.opt_u64("created")?,
            context_length: o.opt_u64("context_length")?,
            input_modalities: o.opt_strings("input_modalities")?,
            output_modalities: o.opt_strings("output_modalities")?,
            endpoints: o.value("endpoints").unwrap_or(&Value::Null),
        };
        o.finish()?;
        Ok(m)
    }
}

/// `models[].endpoints[]`.
#[derive(Debug)]
pub struct RawEndpoint {
    pub provider: String,
    pub model: String,
    pub pricing: RawPricing,
    pub quantization: Option<String>,
    pub context_length: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    pub supported_parameters: Option<Vec<String>>,
    pub throughput: Option<f64>,
    pub latency_ms: Option<f64>,
}

impl RawEndpoint {
    /// Reads `models[i].endpoints[j]`.
    pub fn read(v: &Value, path: &str) -> Checked<RawEndpoint> {
        let mut o = Object::new(v, path)?;
        let pricing_path = o.path("pricing");
        let e = RawEndpoint {
            provider: o.string("provider")?,
            model: o.string("model")?,
            pricing: RawPricing::read(o.value("pricing").unwrap_or(&Value::Null), &pricing_path)?,
            quantization: o.opt_string("quantization")?,
            context_length: o.opt_u64("context_length")?,
            max_completion_tokens: o.opt_u64("max_completion_tokens")?,
            supported_parameters: o.opt_strings("supported_parameters")?,
            throughput: o.opt_number("throughput")?,
            latency_ms: o.opt_number("latency_ms")?,
        };
        o.finish()?;
        Ok(e)
    }
}

/// `pricing`, USD per million tokens (`request` per request, `image` per image).
#[derive(Debug, Clone, Copy)]
pub struct RawPricing {
    pub prompt: f64,
    pub completion: f64,
    pub cache_read: Option<f64>,
    pub cache_write: Option<f64>,
    pub request: Option<f64>,
    pub image: Option<f64>,
}

impl RawPricing {
    /// Reads `…pricing` (required: `null` or absent is an error naming `prompt`).
    pub fn read(v: &Value, path: &str) -> Checked<RawPricing> {
        let mut o = Object::new(v, path)?;
        let p = RawPricing {
            prompt: o.number("prompt")?,
            completion: o.number("completion")?,
            cache_read: o.opt_number("cache_read")?,
            cache_write: o.opt_number("cache_write")?,
            request: o.opt_number("request")?,
            image: o.opt_number("image")?,
        };
        o.finish()?;
        Ok(p)
    }
}

/// `keys[]`.
#[derive(Debug)]
pub struct RawKey<'v> {
    pub name: String,
    pub sha256: String,
    pub policy: Option<&'v Value>,
    pub debug: Option<bool>,
    pub limits: Option<RawLimits>,
}

/// `keys[].limits`.
#[derive(Debug, Default)]
pub struct RawLimits {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub usd_per_day: Option<f64>,
    pub usd_per_week: Option<f64>,
    pub usd_per_month: Option<f64>,
}

impl RawLimits {
    /// Reads `keys[i].limits`.
    pub fn read(v: &Value, path: &str) -> Checked<RawLimits> {
        let mut o = Object::new(v, path)?;
        let l = RawLimits {
            requests_per_minute: o.opt_u64("requests_per_minute")?,
            tokens_per_minute: o.opt_u64("tokens_per_minute")?,
            usd_per_day: o.opt_number("usd_per_day")?,
            usd_per_week: o.opt_number("usd_per_week")?,
            usd_per_month: o.opt_number("usd_per_month")?,
        };
        o.finish()?;
        Ok(l)
    }
}

impl<'v> RawKey<'v> {
    /// Reads `keys[i]`.
    pub fn read(v: &'v Value, path: &str) -> Checked<RawKey<'v>> {
        let mut o = Object::new(v, path)?;
        let k = RawKey {
            name: o.string("name")?,
            sha256: o.string("sha256")?,
            policy: o.value("policy"),
            debug: o.opt_bool("debug")?,
            limits: match o.value("limits") {
                Some(l) if !l.is_null() => Some(RawLimits::read(l, &o.path("limits"))?),
                _ => None,
            },
        };
        o.finish()?;
        Ok(k)
    }
}

/// `routing`.
#[derive(Debug, Default)]
pub struct RawRouting {
    pub max_attempts: Option<u64>,
    pub outage_window_seconds: Option<u64>,
    pub sticky_sessions: Option<bool>,
    pub max_request_bytes: Option<u64>,
    pub first_byte_timeout_ms: Option<u64>,
    pub response_timeout_ms: Option<u64>,
    pub apps: Vec<String>,
    pub free_requests_per_minute: Option<u64>,
    pub free_requests_per_day: Option<u64>,
    pub rate_limit_service: Option<RawRateLimitService>,
}

/// `routing.rate_limit_service`.
#[derive(Debug, Default)]
pub struct RawRateLimitService {
    pub address: String,
    pub domain: Option<String>,
    pub timeout_ms: Option<u64>,
    pub deny_when_unreachable: Option<bool>,
}

impl RawRouting {
    /// Reads `routing` (`null` or absent: every default).
    pub fn read(v: &Value) -> Checked<RawRouting> {
        let mut o = Object::new(v, "routing")?;
        let r = RawRouting {
            max_attempts: o.opt_u64("max_attempts")?,
            outage_window_seconds: o.opt_u64("outage_window_seconds")?,
            sticky_sessions: o.opt_bool("sticky_sessions")?,
            max_request_bytes: o.opt_u64("max_request_bytes")?,
            first_byte_timeout_ms: o.opt_u64("first_byte_timeout_ms")?,
            response_timeout_ms: o.opt_u64("response_timeout_ms")?,
            apps: o.opt_strings("apps")?.unwrap_or_default(),
            free_requests_per_minute: o.opt_u64("free_requests_per_minute")?,
            free_requests_per_day: o.opt_u64("free_requests_per_day")?,
            rate_limit_service: match o.value("rate_limit_service") {
                Some(v) => {
                    let mut s = Object::new(v, &o.path("rate_limit_service"))?;
                    let service = RawRateLimitService {
                        address: s.string("address")?,
                        domain: s.opt_string("domain")?,
                        timeout_ms: s.opt_u64("timeout_ms")?,
                        deny_when_unreachable: s.opt_bool("deny_when_unreachable")?,
                    };
                    s.finish()?;
                    Some(service)
                }
                None => None,
            },
        };
        o.finish()?;
        Ok(r)
    }
}
