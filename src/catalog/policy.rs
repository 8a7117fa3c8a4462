//! The vocabulary of provider restrictions shared by a client key's `policy` (catalog) and a request's
//! `provider` preferences (routing): price ceilings, quantizations, data policy, provider names. Here the
//! key policy is parsed at catalog load; `routing::preferences` holds a request to it.
//!
//! An empty `only` or `quantizations` list means "no restriction" (SDKs send empty lists, and the
//! catalog contract's example policy has `"only": []`).

use super::fields::{boolean, names, non_empty, object_or_null, Checked, FieldError};
use super::types::{KeyPolicy, MaxPrice, Pricing, Provider};
use serde_json::Value;

/// The quantization levels OpenRouter's schema knows (`Quantization`).
pub const QUANTIZATIONS: &[&str] =
    &["int4", "int8", "fp4", "mxfp4", "nvfp4", "fp6", "fp8", "mxfp8", "fp16", "bf16", "fp32", "unknown"];

/// Every field of a client key's `policy` in the catalog.
const POLICY_FIELDS: &[&str] = &["data_collection", "zdr", "only", "ignore", "max_price", "quantizations"];

impl MaxPrice {
    /// The stricter of two sets of ceilings, field by field.
    pub fn min(&self, other: &MaxPrice) -> MaxPrice {
        MaxPrice {
            prompt: min_opt(self.prompt, other.prompt),
            completion: min_opt(self.completion, other.completion),
            request: min_opt(self.request, other.request),
            image: min_opt(self.image, other.image),
        }
    }

    /// Whether an endpoint's prices are within every ceiling. An endpoint without a `request` or `image`
    /// price charges nothing for it.
    pub fn allows(&self, pricing: &Pricing) -> bool {
        let within = |max: Option<f64>, price: f64| max.is_none_or(|m| price <= m);
        within(self.prompt, pricing.prompt)
            && within(self.completion, pricing.completion)
            && within(self.request, pricing.request.unwrap_or(0.0))
            && within(self.image, pricing.image.unwrap_or(0.0))
    }
}

fn min_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Parses and validates `keys[i].policy` at catalog load. `path` is the field's path (`keys[0].policy`);
/// errors carry the full path of the offending field (`keys[0].policy.only[1]`). `null` means no policy.
///
/// Unlike a request, a policy is configuration, so every name in `only`/`ignore` must name a provider of
/// `providers` (slug or display name, case-insensitively): a typo would otherwise silently block or allow.
/// Each name is stored as that provider's slug and display name, so [`with_floor`]'s intersection matches a
/// request naming the provider either way.
pub fn parse_key_policy(value: &Value, path: &str, providers: &[Provider]) -> Checked<KeyPolicy> {
    let mut policy = KeyPolicy::default();
    let Some(map) = object_or_null(value, path)? else {
        return Ok(policy);
    };
    for (key, v) in map {
        let at = format!("{path}.{key}");
        if !POLICY_FIELDS.contains(&key.as_str()) {
            return Err(FieldError::new(&at, "unknown field"));
        }
        if v.is_null() {
            continue;
        }
        match key.as_str() {
            "data_collection" => policy.deny_data_collection = data_collection(v, &at)?,
            "zdr" => policy.zdr = boolean(v, &at)?,
            "only" => policy.only = non_empty(policy_names(v, &at, providers)?),
            "ignore" => policy.ignore = policy_names(v, &at, providers)?,
            "max_price" => policy.max_price = max_price(v, &at)?,
            "quantizations" => policy.quantizations = non_empty(quantizations(v, &at)?),
            _ => return Err(FieldError::new(&at, "unknown field")),
        }
    }
    Ok(policy)
}

/// Names that must each name a catalog provider; returns the slugs and display names of those named.
fn policy_names(v: &Value, path: &str, providers: &[Provider]) -> Checked<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for (i, name) in names(v, path)?.iter().enumerate() {
        let mut found = false;
        for p in providers.iter().filter(|p| names_provider(name, p)) {
            found = true;
            for n in [&p.name, &p.display_name] {
                if !out.iter().any(|o| eq_ci(o, n)) {
                    out.push(n.clone());
                }
            }
        }
        if !found {
            return Err(FieldError::new(&format!("{path}[{i}]"), format!("unknown provider \"{name}\"")));
        }
    }
    Ok(out)
}

/// Whether a name from `order`/`only`/`ignore` names this provider: its slug or display name,
/// case-insensitively. Names of no provider simply never match.
pub fn names_provider(name: &str, provider: &Provider) -> bool {
    eq_ci(name, &provider.name) || eq_ci(name, &provider.display_name)
}

pub fn eq_ci(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
        || (!(a.is_ascii() && b.is_ascii())
            && a.chars().flat_map(char::to_lowercase).eq(b.chars().flat_map(char::to_lowercase)))
}

/// `"deny"` → true, `"allow"` → false.
pub fn data_collection(v: &Value, path: &str) -> Checked<bool> {
    match v {
        Value::String(s) if s == "deny" => Ok(true),
        Value::String(s) if s == "allow" => Ok(false),
        Value::String(s) => {
            Err(FieldError::new(path, format!("unknown value \"{s}\" (expected \"allow\" or \"deny\")")))
        }
        _ => Err(FieldError::new(path, "must be \"allow\" or \"deny\"")),
    }
}

pub fn quantizations(v: &Value, path: &str) -> Checked<Vec<String>> {
    let Value::Array(items) = v else {
        return Err(FieldError::new(path, "must be an array of quantization levels"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = format!("{path}[{i}]");
            match item {
                Value::String(s) if QUANTIZATIONS.contains(&s.as_str()) => Ok(s.clone()),
                Value::String(s) => Err(FieldError::new(
                    &at,
                    format!("unknown value \"{s}\" (expected one of {})", QUANTIZATIONS.join(", ")),
                )),
                _ => Err(FieldError::new(&at, "must be a string")),
            }
        })
        .collect()
}

/// `max_price`: each value a number or a decimal string, non-negative.
pub fn max_price(v: &Value, path: &str) -> Checked<MaxPrice> {
    let Value::Object(map) = v else {
        return Err(FieldError::new(path, "must be an object {prompt, completion, request, image}"));
    };
    let mut out = MaxPrice::default();
    for (key, x) in map {
        let at = format!("{path}.{key}");
        let slot = match key.as_str() {
            "prompt" => &mut out.prompt,
            "completion" => &mut out.completion,
            "request" => &mut out.request,
            "image" => &mut out.image,
            "audio" => {
                if x.is_null() {
                    continue;
                }
                price(x, &at)?;
                return Err(FieldError::unsupported(&at, "a ceiling", "the catalog has no audio prices"));
            }
            _ => return Err(FieldError::new(&at, "unknown field")),
        };
        if !x.is_null() {
            *slot = Some(price(x, &at)?);
        }
    }
    Ok(out)
}

pub fn price(v: &Value, path: &str) -> Checked<f64> {
    let n = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|n| n.is_finite()),
        _ => return Err(FieldError::new(path, "must be a number or a decimal string (USD)")),
    };
    match n {
        Some(n) if n >= 0.0 => Ok(n),
        Some(_) => Err(FieldError::new(path, "must not be negative")),
        None => Err(FieldError::new(path, format!("cannot parse {v} as a price in USD"))),
    }
}
