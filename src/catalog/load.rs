//! Loading the catalog: the JSON document parsed once, validated with an error naming the field
//! (`models[3].endpoints[0].provider: unknown provider "deepinfar"`), provider keys read from the
//! environment, names indexed, `/models` rendered.

use super::endpoint::Endpoint;
use super::fields::{list, parse_document, FieldError};
use super::ids::{id, ModelId, ProviderId};
use super::keys::validate_key;
use super::models_api;
use super::raw::{RawCatalog, RawEndpoint, RawKey, RawModel, RawProvider, RawRateLimitService, RawRouting};
use super::types::{
    Api, AuthMode, Catalog, DataCollection, EnvLookup, Model, ModelEndpoint, Pricing, Provider,
    RateLimitService, Routing, Secret, DEFAULT_ANTHROPIC_VERSION, INPUT_MODALITIES, KNOWN_PARAMETERS,
    MAX_ATTEMPTS_LIMIT, OUTPUT_MODALITIES,
};
use crate::fnv::FnvMap;
use serde_json::Value;

impl Catalog {
    /// Parses and validates a catalog. With `env`, every provider's `api_key_env` must be set (the filter);
    /// without, keys are not read (the config generator).
    pub fn parse(json: &[u8], env: Option<EnvLookup<'_>>) -> Result<Catalog, FieldError> {
        let doc = parse_document(json).map_err(|e| err("", format!("invalid catalog: {e}")))?;
        let raw = RawCatalog::read(&doc)?;
        let providers = list(raw.providers, "providers", RawProvider::read)?;
        if providers.is_empty() {
            return Err(err("providers", "at least one provider is required"));
        }
        let mut catalog = Catalog {
            providers: Vec::with_capacity(providers.len()),
            models: Vec::new(),
            keys: Vec::new(),
            auth: AuthMode::Keys,
            routing: parse_routing(raw.routing.unwrap_or(&Value::Null))?,
            provider_header_names: Vec::new(),
            models_json: String::new(),
            by_model_name: FnvMap::default(),
            by_provider_name: FnvMap::default(),
        };
        for (i, p) in providers.into_iter().enumerate() {
            let provider = validate_provider(p, &format!("providers[{i}]"), env)?;
            if catalog.by_provider_name.insert(provider.name.clone(), ProviderId(id(i))).is_some() {
                return Err(err(
                    &format!("providers[{i}].name"),
                    format!("duplicate provider \"{}\"", provider.name),
                ));
            }
            catalog.providers.push(provider);
        }
        let models = list(raw.models, "models", RawModel::read)?;
        if models.is_empty() {
            return Err(err("models", "at least one model is required"));
        }
        for (i, m) in models.into_iter().enumerate() {
            let path = format!("models[{i}]");
            let model = catalog.validate_model(m, &path)?;
            for (j, name) in std::iter::once(&model.id).chain(model.aliases.iter()).enumerate() {
                if catalog.by_model_name.insert(name.clone(), ModelId(id(i))).is_some() {
                    let field =
                        if j == 0 { format!("{path}.id") } else { format!("{path}.aliases[{}]", j - 1) };
                    return Err(err(&field, format!("model name \"{name}\" is already used")));
                }
            }
            catalog.models.push(model);
        }
        catalog.auth = match raw.auth.as_deref() {
            None | Some("keys") => AuthMode::Keys,
            Some("none") => AuthMode::None,
            Some(other) => return Err(err("auth", format!("must be \"keys\" or \"none\", not \"{other}\""))),
        };
        let keys = match raw.keys {
            Some(keys) => list(keys, "keys", RawKey::read)?,
            None => Vec::new(),
        };
        for (i, k) in keys.into_iter().enumerate() {
            let key = validate_key(k, &format!("keys[{i}]"), &catalog.providers)?;
            if catalog.keys.iter().any(|other| other.name == key.name) {
                return Err(err(&format!("keys[{i}].name"), format!("duplicate key name \"{}\"", key.name)));
            }
            catalog.keys.push(key);
        }
        if catalog.auth == AuthMode::Keys && catalog.keys.is_empty() {
            return Err(err(
                "keys",
                "auth is \"keys\" but no keys are listed (set \"auth\": \"none\" to disable)",
            ));
        }
        if let Some(service) = &mut catalog.routing.rate_limit_service {
            let largest = catalog
                .keys
                .iter()
                .flat_map(|k| [k.limits.usd_per_day, k.limits.usd_per_week, k.limits.usd_per_month])
                .flatten()
                .max()
                .unwrap_or(0);
            while largest / service.usd_unit_nano > u64::from(u32::MAX) {
                service.usd_unit_nano *= 10;
            }
        }
        let mut names: Vec<String> = Vec::new();
        for p in &catalog.providers {
            names.push(p.auth_header.clone());
            names.extend(p.headers.iter().map(|(n, _)| n.clone()));
        }
        names.sort();
        names.dedup();
        catalog.provider_header_names = names;
        catalog.models_json = models_api::render(&catalog);
        Ok(catalog)
    }

    fn validate_model(&self, m: RawModel, path: &str) -> Result<Model, FieldError> {
        check_model_name(&m.id, &format!("{path}.id"))?;
        for (j, a) in m.aliases.iter().enumerate() {
            check_model_name(a, &format!("{path}.aliases[{j}]"))?;
        }
        for (field, values, known) in [
            ("input_modalities", &m.input_modalities, INPUT_MODALITIES),
            ("output_modalities", &m.output_modalities, OUTPUT_MODALITIES),
        ] {
            check_known(values.as_deref().unwrap_or_default(), known, &format!("{path}.{field}"))?;
        }
        let raw_endpoints = list(m.endpoints, &format!("{path}.endpoints"), RawEndpoint::read)?;
        if raw_endpoints.is_empty() {
            return Err(err(&format!("{path}.endpoints"), "at least one endpoint is required"));
        }
        let mut endpoints = Vec::with_capacity(raw_endpoints.len());
        for (j, e) in raw_endpoints.into_iter().enumerate() {
            let epath = format!("{path}.endpoints[{j}]");
            let provider = self.provider_named(&e.provider).ok_or_else(|| {
                err(&format!("{epath}.provider"), format!("unknown provider \"{}\"", e.provider))
            })?;
            if endpoints.iter().any(|x: &ModelEndpoint| x.provider == provider) {
                return Err(err(
                    &format!("{epath}.provider"),
                    format!("provider \"{}\" is listed twice", e.provider),
                ));
            }
            if e.model.is_empty() {
                return Err(err(&format!("{epath}.model"), "must not be empty"));
            }
            check_known(
                e.supported_parameters.as_deref().unwrap_or_default(),
                KNOWN_PARAMETERS,
                &format!("{epath}.supported_parameters"),
            )?;
            let api = self.provider(provider).api;
            // Gemini's model is a path segment: nothing that could end it or start a query.
            if api == Api::Gemini
                && !e.model.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            {
                return Err(err(
                    &format!("{epath}.model"),
                    "a Gemini model name is [A-Za-z0-9._-] (it goes in the path)",
                ));
            }
            for (k, param) in e.supported_parameters.iter().flatten().enumerate() {
                if api.unsupported_parameters().contains(&param.as_str()) {
                    return Err(err(
                        &format!("{epath}.supported_parameters[{k}]"),
                        format!("the {} API has no \"{param}\": its translation drops it", api.name()),
                    ));
                }
            }
            let p = e.pricing;
            for (field, v) in [
                ("prompt", Some(p.prompt)),
                ("completion", Some(p.completion)),
                ("cache_read", p.cache_read),
                ("cache_write", p.cache_write),
                ("request", p.request),
                ("image", p.image),
            ] {
                if let Some(v) = v {
                    if !v.is_finite() || v < 0.0 {
                        return Err(err(&format!("{epath}.pricing.{field}"), "must be a price >= 0"));
                    }
                }
            }
            let pricing = Pricing {
                prompt: p.prompt,
                completion: p.completion,
                cache_read: p.cache_read,
                cache_write: p.cache_write,
                request: p.request,
                image: p.image,
            };
            endpoints.push(ModelEndpoint {
                provider,
                model_json: serde_json::Value::String(e.model.clone()).to_string(),
                plan_label: format!("{}@{}", self.provider(provider).name, pricing.rank_price()),
                draw_key: format!("{}\0{}", self.provider(provider).name, m.id).into_bytes(),
                model: e.model,
                pricing,
                quantization: e.quantization,
                context_length: e.context_length,
                max_completion_tokens: e.max_completion_tokens,
                supported_parameters: e.supported_parameters.unwrap_or_default(),
                throughput: e.throughput,
                latency_ms: e.latency_ms,
            });
        }
        Ok(Model {
            name: m.name.unwrap_or_else(|| m.id.clone()),
            description: m.description.unwrap_or_default(),
            created: m.created.unwrap_or(0),
            context_length: m.context_length,
            input_modalities: m.input_modalities.unwrap_or_else(|| vec!["text".into()]),
            output_modalities: m.output_modalities.unwrap_or_else(|| vec!["text".into()]),
            id_json: serde_json::Value::String(m.id.clone()).to_string(),
            id: m.id,
            aliases: m.aliases,
            endpoints,
        })
    }
}

fn err(path: &str, message: impl Into<String>) -> FieldError {
    FieldError::new(path, message)
}

fn parse_routing(value: &Value) -> Result<Routing, FieldError> {
    let raw = RawRouting::read(value)?;
    let max_attempts = raw.max_attempts.unwrap_or(3);
    if max_attempts == 0 || max_attempts > u64::from(MAX_ATTEMPTS_LIMIT) {
        return Err(err("routing.max_attempts", format!("must be between 1 and {MAX_ATTEMPTS_LIMIT}")));
    }
    let routing = Routing {
        max_attempts: u32::try_from(max_attempts).unwrap_or(MAX_ATTEMPTS_LIMIT),
        outage_window_seconds: raw.outage_window_seconds.unwrap_or(30),
        sticky_sessions: raw.sticky_sessions.unwrap_or(true),
        max_request_bytes: raw.max_request_bytes.unwrap_or(8 * 1024 * 1024),
        first_byte_timeout_ms: raw.first_byte_timeout_ms.unwrap_or(10_000),
        response_timeout_ms: raw.response_timeout_ms.unwrap_or(120_000),
        apps: raw.apps,
        free_requests_per_minute: raw.free_requests_per_minute.unwrap_or(20),
        free_requests_per_day: raw.free_requests_per_day.unwrap_or(50),
        rate_limit_service: raw.rate_limit_service.map(parse_rate_limit_service).transpose()?,
    };
    for (field, value) in [
        ("free_requests_per_minute", routing.free_requests_per_minute),
        ("free_requests_per_day", routing.free_requests_per_day),
    ] {
        if value == 0 {
            return Err(err(&format!("routing.{field}"), "must be at least 1"));
        }
    }
    if routing.max_request_bytes < 1024 || routing.max_request_bytes > 1 << 30 {
        return Err(err("routing.max_request_bytes", "must be between 1024 and 1073741824"));
    }
    if routing.first_byte_timeout_ms == 0 || routing.response_timeout_ms == 0 {
        return Err(err("routing", "timeouts must be > 0 ms"));
    }
    Ok(routing)
}

fn parse_rate_limit_service(raw: RawRateLimitService) -> Result<RateLimitService, FieldError> {
    let path = "routing.rate_limit_service";
    let (host, port) = raw
        .address
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.trim_start_matches('[').trim_end_matches(']'), p.parse::<u16>().ok()?)))
        .filter(|(h, p)| {
            !h.is_empty() && *p != 0 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b))
        })
        .ok_or_else(|| err(&format!("{path}.address"), "must be host:port"))?;
    let domain = raw.domain.unwrap_or_else(|| "llm-router".into());
    if domain.is_empty() || !domain.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        return Err(err(&format!("{path}.domain"), "must be a non-empty name of [A-Za-z0-9._-]"));
    }
    let timeout_ms = raw.timeout_ms.unwrap_or(100);
    if timeout_ms == 0 || timeout_ms > 60_000 {
        return Err(err(&format!("{path}.timeout_ms"), "must be between 1 and 60000"));
    }
    Ok(RateLimitService {
        host: host.to_string(),
        port,
        domain,
        timeout_ms,
        deny_when_unreachable: raw.deny_when_unreachable.unwrap_or(false),
        usd_unit_nano: 1000,
    })
}

fn validate_provider(p: RawProvider, path: &str, env: Option<EnvLookup<'_>>) -> Result<Provider, FieldError> {
    if p.name.is_empty()
        || !p.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
    {
        return Err(err(&format!("{path}.name"), "must be a non-empty slug of [a-z0-9._-]"));
    }
    let endpoint = Endpoint::parse(&p.endpoint).map_err(|m| err(&format!("{path}.endpoint"), m))?;
    let api = match p.api.as_deref() {
        None | Some("openai") => Api::OpenAi,
        Some("anthropic") => Api::Anthropic,
        Some("gemini") => Api::Gemini,
        Some(other) => {
            return Err(err(
                &format!("{path}.api"),
                format!("must be \"openai\", \"anthropic\" or \"gemini\", not \"{other}\""),
            ))
        }
    };
    // Each API's own key header, unless the catalog says otherwise.
    let (default_header, default_scheme) = match api {
        Api::OpenAi => ("authorization", "Bearer"),
        Api::Anthropic => ("x-api-key", ""),
        Api::Gemini => ("x-goog-api-key", ""),
    };
    let auth_header = p.auth_header.unwrap_or_else(|| default_header.into()).to_ascii_lowercase();
    if !is_header_name(&auth_header) {
        return Err(err(&format!("{path}.auth_header"), "is not a valid header name"));
    }
    let auth_scheme = p.auth_scheme.unwrap_or_else(|| default_scheme.into());
    if !is_header_value(&auth_scheme) {
        return Err(err(&format!("{path}.auth_scheme"), "is not a valid header value"));
    }
    let mut auth_value = None;
    if let Some(var) = &p.api_key_env {
        if var.is_empty() || !var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(err(&format!("{path}.api_key_env"), "must be an environment variable name"));
        }
        if let Some(lookup) = env {
            let key = lookup(var).filter(|k| !k.is_empty()).ok_or_else(|| {
                err(
                    &format!("{path}.api_key_env"),
                    format!("provider \"{}\" needs environment variable {var}, which is not set", p.name),
                )
            })?;
            if !is_header_value(&key) {
                return Err(err(
                    &format!("{path}.api_key_env"),
                    format!("environment variable {var} of provider \"{}\" holds characters not allowed in a header", p.name),
                ));
            }
            let value = if auth_scheme.is_empty() { key } else { format!("{auth_scheme} {key}") };
            auth_value = Some(Secret(value));
        }
    }
    let data_collection = match p.data_collection.as_deref() {
        None | Some("allow") => DataCollection::Allow,
        Some("deny") => DataCollection::Deny,
        Some(other) => {
            return Err(err(
                &format!("{path}.data_collection"),
                format!("must be \"allow\" or \"deny\", not \"{other}\""),
            ))
        }
    };
    let mut headers = Vec::new();
    for (name, value) in p.headers {
        let lower = name.to_ascii_lowercase();
        if !is_header_name(&lower) || lower.starts_with(':') || !is_header_value(&value) {
            return Err(err(&format!("{path}.headers.{name}"), "is not a valid header"));
        }
        headers.push((lower, value));
    }
    match (api, p.anthropic_version) {
        (Api::Anthropic, version) => {
            let version = version.unwrap_or_else(|| DEFAULT_ANTHROPIC_VERSION.into());
            if !is_header_value(&version) || version.is_empty() {
                return Err(err(&format!("{path}.anthropic_version"), "is not a valid header value"));
            }
            if !headers.iter().any(|(n, _)| n == "anthropic-version") {
                headers.push(("anthropic-version".into(), version));
            }
        }
        (_, Some(_)) => {
            return Err(err(
                &format!("{path}.anthropic_version"),
                "is only for providers with \"api\": \"anthropic\"",
            ))
        }
        (_, None) => {}
    }
    // The native APIs' paths carry their version: an endpoint that already ends with it (the OpenAI
    // habit of giving `…/v1`) would reach `/v1/v1/messages`, a 404 on every request.
    let versioned = |suffixes: &[&str]| suffixes.iter().any(|v| endpoint.path_prefix.ends_with(v));
    if (api == Api::Anthropic && versioned(&["/v1"]))
        || (api == Api::Gemini && versioned(&["/v1", "/v1beta"]))
    {
        return Err(err(
            &format!("{path}.endpoint"),
            format!(
                "the {} API's base URL comes without its version (e.g. {})",
                api.name(),
                match api {
                    Api::Gemini => "https://generativelanguage.googleapis.com",
                    _ => "https://api.anthropic.com",
                }
            ),
        ));
    }
    let chat_path = match api {
        Api::OpenAi => format!("{}/chat/completions", endpoint.path_prefix),
        Api::Anthropic => format!("{}/v1/messages", endpoint.path_prefix),
        Api::Gemini => format!("{}/v1beta/models/", endpoint.path_prefix),
    };
    let display_name = p.display_name.unwrap_or_else(|| p.name.clone());
    Ok(Provider {
        health_key: format!("llm_router.health.{}", p.name),
        chat_path,
        api,
        display_json: serde_json::Value::String(display_name.clone()).to_string(),
        display_name,
        name: p.name,
        endpoint,
        api_key_env: p.api_key_env,
        auth_value,
        auth_header,
        data_collection,
        zdr: p.zdr.unwrap_or(false),
        ca_file: p.ca_file,
        headers,
    })
}

fn check_known(values: &[String], known: &[&str], path: &str) -> Result<(), FieldError> {
    for (i, v) in values.iter().enumerate() {
        if !known.contains(&v.as_str()) {
            return Err(err(
                &format!("{path}[{i}]"),
                format!("unknown value \"{v}\" (known: {})", known.join(", ")),
            ));
        }
    }
    Ok(())
}

fn check_model_name(name: &str, path: &str) -> Result<(), FieldError> {
    // Visible ASCII: model ids travel in response headers (`x-llm-model`).
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(err(path, "must be a non-empty name of visible ASCII characters (no spaces)"));
    }
    Ok(())
}

/// An HTTP header name we are willing to set (token characters, lowercase).
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A header value Envoy accepts: visible ASCII, spaces and tabs, no CR/LF.
pub fn is_header_value(value: &str) -> bool {
    value.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}
