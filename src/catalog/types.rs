//! The catalog's types: providers, models and their endpoints, client keys, routing defaults, and the
//! lookups by name. Built by `load`, then only read.

use super::endpoint::Endpoint;
use super::ids::{ModelId, ProviderId};
use crate::fnv::FnvMap;
use std::fmt;

/// Looks up an environment variable of Envoy's process (provider keys).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// How clients authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// A bearer token whose SHA-256 is in `keys` is required.
    Keys,
    /// No authentication by the filter (something in front authenticates).
    None,
}

/// A provider's data policy (`data_collection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataCollection {
    /// The provider may retain or train on prompts.
    Allow,
    /// It does not.
    Deny,
}

/// The API a provider speaks (`providers[].api`): each attempt's body is translated for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// OpenAI's Chat Completions (`<prefix>/chat/completions`): the client's body, model spliced in.
    OpenAi,
    /// Anthropic's Messages API (`<prefix>/v1/messages`, `x-api-key`, `anthropic-version`).
    Anthropic,
    /// Google's Gemini API (`<prefix>/v1beta/models/<model>:generateContent`, `x-goog-api-key`).
    Gemini,
}

impl Api {
    /// The catalog's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Api::OpenAi => "openai",
            Api::Anthropic => "anthropic",
            Api::Gemini => "gemini",
        }
    }

    /// Whether the request body must be translated for it (every API but OpenAI's).
    pub fn is_native(self) -> bool {
        self != Api::OpenAi
    }

    /// Request parameters this API has no equivalent for: the translation drops them, so an endpoint
    /// of this API may not list them in `supported_parameters` (and `require_parameters` then leaves it
    /// out of a request that sets one).
    pub fn unsupported_parameters(self) -> &'static [&'static str] {
        match self {
            Api::OpenAi => &[],
            Api::Anthropic => &[
                "min_p",
                "top_a",
                "frequency_penalty",
                "presence_penalty",
                "repetition_penalty",
                "logit_bias",
                "logprobs",
                "top_logprobs",
                "seed",
                "prediction",
                "include_reasoning",
                "web_search_options",
                "verbosity",
            ],
            Api::Gemini => &[
                "min_p",
                "top_a",
                "repetition_penalty",
                "logit_bias",
                "logprobs",
                "top_logprobs",
                "parallel_tool_calls",
                "prediction",
                "include_reasoning",
                "web_search_options",
                "verbosity",
            ],
        }
    }
}

/// The `anthropic-version` an Anthropic provider gets unless its catalog entry says otherwise.
pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

/// A provider key, kept out of `Debug` output so it can never reach a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub(super) String);

impl Secret {
    /// The secret value, for building the one header that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One upstream provider (one Envoy cluster).
#[derive(Debug, Clone)]
pub struct Provider {
    /// Slug, unique, `[a-z0-9._-]`.
    pub name: String,
    /// Display name (defaults to `name`).
    pub display_name: String,
    /// Where requests go.
    pub endpoint: Endpoint,
    /// The environment variable holding the key, if the provider needs one.
    pub api_key_env: Option<String>,
    /// The full value of the auth header (`Bearer <key>`), read from the environment at load.
    pub auth_value: Option<Secret>,
    /// Lowercase header name carrying the key.
    pub auth_header: String,
    /// The API it speaks.
    pub api: Api,
    /// Data policy.
    pub data_collection: DataCollection,
    /// Zero data retention.
    pub zdr: bool,
    /// PEM bundle to verify the provider's certificate instead of the system trust store.
    pub ca_file: Option<String>,
    /// Extra headers sent to this provider only (lowercase names).
    pub headers: Vec<(String, String)>,
    /// Its shared-data key in the health memory (`llm_router.health.<name>`: one key per provider, so the
    /// key count stays fixed, since shared data has no expiry), made once.
    pub health_key: String,
    /// The `:path` of its chat endpoint, made once: `<prefix>/chat/completions` (OpenAI),
    /// `<prefix>/v1/messages` (Anthropic), `<prefix>/v1beta/models/` (Gemini: the model and the method
    /// follow, per request).
    pub chat_path: String,
    /// `display_name` as a JSON string literal (the `provider` field of rewritten responses), made once.
    pub display_json: String,
}

impl Provider {
    /// The Envoy cluster serving this provider as a request's first choice (slot 0: the downstream role
    /// already set its model, key and host, so the cluster has no upstream filter).
    pub fn cluster_name(&self) -> String {
        format!("{CLUSTER_PREFIX}{}", self.name)
    }

    /// The Envoy cluster serving this provider as a fallback (slots 1…: its upstream role rewrites the
    /// attempt for this provider).
    pub fn fallback_cluster_name(&self) -> String {
        format!("{FALLBACK_CLUSTER_PREFIX}{}", self.name)
    }

    /// The mesh-private host Istio knows this provider by: a ServiceEntry of the router's alone (its
    /// endpoint is the provider's real host), so that the gateway's other traffic to the same provider
    /// never meets the router's filters.
    pub fn istio_host(&self) -> String {
        format!("{}.{ISTIO_HOST_SUFFIX}", self.name.replace('_', "-"))
    }

    /// The Istio cluster of [`Provider::istio_host`] (what its ServiceEntry makes).
    pub fn istio_cluster_name(&self) -> String {
        format!("outbound|{}||{}", self.endpoint.port, self.istio_host())
    }
}

/// The domain of the providers' mesh-private hosts ([`Provider::istio_host`]).
pub const ISTIO_HOST_SUFFIX: &str = "llm-router.internal";

/// Prefix of every first-choice provider cluster's name; the rest is the provider's slug.
pub const CLUSTER_PREFIX: &str = "llm_provider_";

/// Prefix of every fallback provider cluster's name; the rest is the provider's slug.
pub const FALLBACK_CLUSTER_PREFIX: &str = "llm_fallback_";

/// Prices in USD per million tokens (`request`: per request, `image`: per image).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Pricing {
    pub prompt: f64,
    pub completion: f64,
    pub cache_read: Option<f64>,
    pub cache_write: Option<f64>,
    pub request: Option<f64>,
    pub image: Option<f64>,
}

impl Pricing {
    /// The default ranking key: prompt + completion per million tokens.
    pub fn rank_price(&self) -> f64 {
        self.prompt + self.completion
    }
}

/// One provider serving one model.
#[derive(Debug, Clone)]
pub struct ModelEndpoint {
    /// The provider serving it.
    pub provider: ProviderId,
    /// The provider's native model name.
    pub model: String,
    /// `model` as a JSON string literal, ready to splice into a body.
    pub model_json: String,
    /// `<provider>@<rank price>`, as route explanations list the plan (made once).
    pub plan_label: String,
    /// `<provider slug>\0<model id>`: what a weighted draw hashes for this endpoint (made once).
    pub draw_key: Vec<u8>,
    pub pricing: Pricing,
    pub quantization: Option<String>,
    pub context_length: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    pub supported_parameters: Vec<String>,
    pub throughput: Option<f64>,
    pub latency_ms: Option<f64>,
}

/// A public model and the endpoints that serve it.
#[derive(Debug, Clone)]
pub struct Model {
    /// Public id `author/slug`.
    pub id: String,
    pub aliases: Vec<String>,
    pub name: String,
    pub description: String,
    pub created: u64,
    pub context_length: Option<u64>,
    pub input_modalities: Vec<String>,
    pub output_modalities: Vec<String>,
    pub endpoints: Vec<ModelEndpoint>,
    /// `id` as a JSON string literal (the `model` field of rewritten responses), made once.
    pub id_json: String,
}

/// Routing defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    pub max_attempts: u32,
    pub outage_window_seconds: u64,
    pub sticky_sessions: bool,
    pub max_request_bytes: u64,
    pub first_byte_timeout_ms: u64,
    pub response_timeout_ms: u64,
    pub apps: Vec<String>,
    /// Per client key, requests for `:free` variants per UTC minute and per UTC day (OpenRouter's 20
    /// and 50).
    pub free_requests_per_minute: u64,
    pub free_requests_per_day: u64,
    /// Envoy's global rate limit service, for limits across many Envoys (the generator emits its filter;
    /// the filter names each request's limits for it).
    pub rate_limit_service: Option<RateLimitService>,
}

/// `routing.rate_limit_service`: where Envoy's rate limit filter asks (envoyproxy/ratelimit or any
/// `envoy.service.ratelimit.v3.RateLimitService`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitService {
    /// Host name or IP address.
    pub host: String,
    pub port: u16,
    /// The service's domain for these limits (default `llm-router`).
    pub domain: String,
    /// How long Envoy waits for an answer (default 100 ms).
    pub timeout_ms: u64,
    /// When the service cannot be reached or errs: refuse the request (true) or let it through
    /// (false, the default: the per-Envoy limits still hold).
    pub deny_when_unreachable: bool,
    /// The unit dollar limits are counted in by the service, in nano-USD: a micro-dollar (1000), or a
    /// larger power of ten when a key's budget would not fit the service's 32-bit limits in micro-dollars
    /// ($4,294.97).
    pub usd_unit_nano: u64,
}

impl RateLimitService {
    /// `nano` in [`RateLimitService::usd_unit_nano`]s, rounded up (a charge never undercounts).
    pub fn usd_units(&self, nano: u64) -> u64 {
        nano.div_ceil(self.usd_unit_nano.max(1))
    }
}

/// The validated catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub providers: Vec<Provider>,
    pub models: Vec<Model>,
    pub keys: Vec<ClientKey>,
    pub auth: AuthMode,
    pub routing: Routing,
    /// Every request header name any provider's upstream role sets, so each attempt can remove the others'.
    pub provider_header_names: Vec<String>,
    /// The rendered `GET /models` body.
    pub models_json: String,
    pub(super) by_model_name: FnvMap<String, ModelId>,
    pub(super) by_provider_name: FnvMap<String, ProviderId>,
}

/// Request parameters OpenRouter's API knows (`supported_parameters` values).
pub const KNOWN_PARAMETERS: &[&str] = &[
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "top_a",
    "frequency_penalty",
    "presence_penalty",
    "repetition_penalty",
    "max_tokens",
    "max_completion_tokens",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "prediction",
    "seed",
    "response_format",
    "structured_outputs",
    "stop",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "include_reasoning",
    "reasoning",
    "reasoning_effort",
    "web_search_options",
    "verbosity",
];

/// Input modalities OpenRouter's API knows.
pub const INPUT_MODALITIES: &[&str] = &["text", "image", "file", "audio", "video"];

/// Output modalities OpenRouter's API knows.
pub const OUTPUT_MODALITIES: &[&str] =
    &["text", "image", "embeddings", "audio", "video", "rerank", "speech", "transcription"];

/// Most models a request may list (`model` plus `models`); bounds the generated matcher's slots.
pub const MAX_MODELS: usize = 8;

/// Largest number of attempts a request may make (bounds the generated matcher).
pub const MAX_ATTEMPTS_LIMIT: u32 = 10;

impl Catalog {
    /// The model named by `name` (id or alias).
    pub fn model_named(&self, name: &str) -> Option<ModelId> {
        self.by_model_name.get(name).copied()
    }

    /// The provider whose slug is `name`.
    pub fn provider_named(&self, name: &str) -> Option<ProviderId> {
        self.by_provider_name.get(name).copied()
    }

    /// The provider served by an Envoy cluster of ours (first-choice or fallback), by an Istio
    /// cluster `outbound|<port>|<subset>|<host>` of its endpoint's host and port, or by an Envoy Gateway
    /// cluster `httproute/<namespace>/<route>/rule/<n>` of the HTTPRoute `llm-router-<name>` that
    /// `llm-router generate --target envoy-gateway` makes for it (`_` and `.` of its name as `-`; the
    /// generator refuses two providers whose routes would share a name).
    pub fn provider_by_cluster(&self, cluster: &str) -> Option<&Provider> {
        if let Some(rest) = cluster.strip_prefix("outbound|") {
            let mut parts = rest.splitn(3, '|');
            let port = parts.next()?.parse::<u16>().ok()?;
            let host = parts.nth(1)?;
            return self.providers.iter().find(|p| p.endpoint.port == port && p.istio_host() == host);
        }
        if let Some(rest) = cluster.strip_prefix("httproute/") {
            let mut parts = rest.split('/');
            let (_namespace, route) = (parts.next()?, parts.next()?);
            let (rule, n) = (parts.next()?, parts.next()?);
            if rule != "rule" || n.parse::<u32>().is_err() || parts.next().is_some() {
                return None;
            }
            let name = route.strip_prefix("llm-router-")?;
            return self.providers.iter().find(|p| {
                p.name.len() == name.len()
                    && p.name
                        .bytes()
                        .zip(name.bytes())
                        .all(|(a, b)| a == b || (b == b'-' && (a == b'_' || a == b'.')))
            });
        }
        cluster
            .strip_prefix(CLUSTER_PREFIX)
            .or_else(|| cluster.strip_prefix(FALLBACK_CLUSTER_PREFIX))
            .and_then(|n| self.provider_named(n))
            .map(|p| self.provider(p))
    }

    /// The longest plan any request can have: max(`max_attempts`, models a request may list), never more
    /// than the catalog's endpoints (a plan holds each model's endpoint once). Bounds the matcher's slots.
    pub fn max_plan_len(&self) -> usize {
        let endpoints: usize = self.models.iter().map(|m| m.endpoints.len()).sum();
        (self.routing.max_attempts as usize).max(MAX_MODELS).min(endpoints).max(1)
    }
}

/// A client key.
#[derive(Debug, Clone)]
pub struct ClientKey {
    /// Its name (metric label, account, session key).
    pub name: String,
    /// The SHA-256 of its bearer token.
    pub sha256: [u8; 32],
    /// The floor every request made with this key is held to.
    pub policy: KeyPolicy,
    /// `debug: true`: requests made with it may ask for the route's explanation (`x-llm-route`) and see
    /// providers' `x-ratelimit-*` headers. Both tell of other tenants (policies, failures, the shared
    /// provider quota), so other keys never see them.
    pub debug: bool,
    /// Its `limits`.
    pub limits: KeyLimits,
}

/// A client key's `limits`, each enforced exactly on one Envoy (README, "Limits and budgets").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyLimits {
    /// Requests admitted per UTC minute (at least 1).
    pub requests_per_minute: Option<u64>,
    /// Prompt and completion tokens per minute (at least 1).
    pub tokens_per_minute: Option<u64>,
    /// Nano-USD per UTC day (`usd_per_day` × 10⁹, rounded).
    pub usd_per_day: Option<u64>,
    /// Nano-USD per UTC week, from Monday.
    pub usd_per_week: Option<u64>,
    /// Nano-USD per UTC calendar month.
    pub usd_per_month: Option<u64>,
}

impl KeyLimits {
    /// A token or dollar limit applies: requests reserve their worst case.
    pub fn has_budget(&self) -> bool {
        self.tokens_per_minute.is_some()
            || self.usd_per_day.is_some()
            || self.usd_per_week.is_some()
            || self.usd_per_month.is_some()
    }
}

/// A client key's `policy` from the catalog: a floor every request made with the key is held to.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KeyPolicy {
    /// `data_collection: "deny"`.
    pub deny_data_collection: bool,
    /// Only zero-data-retention providers.
    pub zdr: bool,
    /// Only these providers (each named provider's slug and display name); `None` = no restriction.
    pub only: Option<Vec<String>>,
    /// Never these providers (each named provider's slug and display name).
    pub ignore: Vec<String>,
    /// Price ceilings.
    pub max_price: MaxPrice,
    /// Only these quantizations; `None` = no restriction.
    pub quantizations: Option<Vec<String>>,
}

/// Price ceilings (`max_price`): USD per million tokens for `prompt` and `completion`, USD per request for
/// `request`, USD per image for `image`. `None` = no ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MaxPrice {
    pub prompt: Option<f64>,
    pub completion: Option<f64>,
    pub request: Option<f64>,
    pub image: Option<f64>,
}
