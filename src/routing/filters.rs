//! The endpoint filters: which rule, if any, leaves an endpoint out of a request's candidates, named as
//! OpenRouter names it (`error.metadata.excluded_by`).

use super::preferences::Preferences;
use super::request_facts::Facts;
use crate::catalog::policy::names_provider;
use crate::catalog::{Catalog, DataCollection, EndpointRef, ModelEndpoint};

/// Why an endpoint was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Excluded {
    DataTraining,
    DataZdr,
    MaxPrice,
    RequireParameters,
    Quantization,
    AllowedProviders,
    ContextLength,
    Unhealthy,
    /// The provider's API cannot express the request (see `api_check`).
    UnsupportedByApi,
}

impl Excluded {
    /// The machine-readable name.
    pub fn name(self) -> &'static str {
        match self {
            Excluded::DataTraining => "data_policy:training",
            Excluded::DataZdr => "data_policy:zdr",
            Excluded::MaxPrice => "max_price",
            Excluded::RequireParameters => "require_parameters",
            Excluded::Quantization => "quantization",
            Excluded::AllowedProviders => "allowed_providers",
            Excluded::ContextLength => "context_length",
            Excluded::Unhealthy => "unhealthy",
            Excluded::UnsupportedByApi => "unsupported_by_api",
        }
    }

    /// How the "No endpoints found that …" message ends when this is the most common reason.
    pub fn phrase(self) -> &'static str {
        match self {
            Excluded::DataTraining | Excluded::DataZdr => {
                "match your data policy (zero retention, no training)"
            }
            Excluded::MaxPrice => "meet your max_price",
            Excluded::RequireParameters => "support all the requested parameters",
            Excluded::Quantization => "match the requested quantizations",
            Excluded::AllowedProviders => "are allowed by your provider preferences",
            Excluded::ContextLength => "can hold the requested context and max_tokens",
            Excluded::Unhealthy => "are available right now",
            Excluded::UnsupportedByApi => "can take this request in their provider's API",
        }
    }
}

/// The first rule that leaves endpoint `e` out, if any (health is checked by the caller, since it is
/// not a property of the request).
pub fn exclusion(catalog: &Catalog, e: EndpointRef, prefs: &Preferences, facts: &Facts) -> Option<Excluded> {
    let p = catalog.provider_of(e);
    let endpoint = catalog.endpoint(e);
    let in_order = prefs.order.iter().any(|n| names_provider(n, p));
    if !prefs.allows_provider(p) || (!prefs.allow_fallbacks && !prefs.order.is_empty() && !in_order) {
        return Some(Excluded::AllowedProviders);
    }
    if prefs.deny_data_collection && p.data_collection == DataCollection::Allow {
        return Some(Excluded::DataTraining);
    }
    if prefs.zdr && !p.zdr {
        return Some(Excluded::DataZdr);
    }
    if !prefs.allows_quantization(endpoint.quantization.as_deref()) {
        return Some(Excluded::Quantization);
    }
    if !prefs.max_price.allows(&endpoint.pricing) {
        return Some(Excluded::MaxPrice);
    }
    if prefs.require_parameters && !facts.used.iter().all(|u| supports(endpoint, u)) {
        return Some(Excluded::RequireParameters);
    }
    let max_tokens = facts.max_tokens.unwrap_or(0);
    if let Some(context) = endpoint.context_length.or(catalog.model(e.model).context_length) {
        if max_tokens.saturating_add(facts.body_tokens) > context {
            return Some(Excluded::ContextLength);
        }
    }
    if endpoint.max_completion_tokens.is_some_and(|limit| max_tokens > limit) {
        return Some(Excluded::ContextLength);
    }
    None
}

/// Whether an endpoint lists a parameter (`max_tokens` and `max_completion_tokens` are one capability).
pub fn supports(e: &ModelEndpoint, param: &str) -> bool {
    let same = |s: &str| match param {
        "max_tokens" | "max_completion_tokens" => s == "max_tokens" || s == "max_completion_tokens",
        _ => s == param,
    };
    e.supported_parameters.iter().any(|s| same(s))
}
