//! The validated, immutable catalog: providers, models, client keys and routing defaults.
//!
//! Parsed once when Envoy configures the filter ([`load`]); every error names the field path
//! (`models[3].endpoints[0].provider: unknown provider "deepinfar"`). After that it is only read, by typed
//! ids ([`ids`]). This file only declares the parts and names what the rest of the brain uses.

mod endpoint;
pub mod fields;
mod ids;
mod keys;
mod load;
mod lookup;
pub mod models_api;
pub mod policy;
mod raw;
mod types;

pub use endpoint::Endpoint;
pub use fields::FieldError;
pub use ids::{EndpointRef, KeyId, ModelId, ProviderId};
pub use keys::hash_token;
pub use load::{is_header_name, is_header_value};
pub use types::{
    Api, AuthMode, Catalog, ClientKey, DataCollection, EnvLookup, KeyLimits, KeyPolicy, MaxPrice, Model,
    ModelEndpoint, Pricing, Provider, RateLimitService, Routing, Secret, CLUSTER_PREFIX,
    FALLBACK_CLUSTER_PREFIX, INPUT_MODALITIES, ISTIO_HOST_SUFFIX, KNOWN_PARAMETERS, MAX_ATTEMPTS_LIMIT,
    MAX_MODELS, OUTPUT_MODALITIES,
};

#[cfg(test)]
pub(crate) mod tests;
