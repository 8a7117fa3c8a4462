//! Envoy YAML from a catalog: one cluster per provider (with the upstream role), the listener with the
//! downstream role, the retry policy and the attempt → slot → cluster matcher, and local replies in our JSON
//! error shape. Generated from the same catalog the filter reads, so the two never disagree.

use crate::rate_limit_service;
use crate::yaml::{int, list, map, map_of, render, s, Value, With};
use llm_router::catalog::{Catalog, FieldError as ConfigError, Provider};
use llm_router::filter::downstream::request::too_large;
use llm_router::filter::downstream::response::envoy_error_type;
pub use llm_router::filter::{DOWNSTREAM_ROOT_ID, LOGGER_ROOT_ID, UPSTREAM_ROOT_ID, VM_ID};
use llm_router::observe::account::ACCOUNT_KEY;
use llm_router::observe::metrics::{ENVOY_NAMESPACE, LATENCY_BUCKETS_MS, PREFIX, STATS_TAGS};
use llm_router::routing::plan::{slot_key, slot_value};
use llm_router::wire::headers::ATTEMPT_COUNT;

/// Which cluster serves provider `p` at slot `k` (0: first choice).
pub(crate) type ClusterOf<'a> = &'a dyn Fn(&Provider, usize) -> String;

/// Our own clusters: a first-choice and a fallback cluster per provider.
fn own_cluster(p: &Provider, k: usize) -> String {
    if k == 0 {
        p.cluster_name()
    } else {
        p.fallback_cluster_name()
    }
}

/// Where the generated Envoy listens and what it loads.
#[derive(Debug, Clone)]
pub struct Options {
    /// Listener address (default 127.0.0.1).
    pub address: String,
    /// Listener port (0 = any free port).
    pub port: u16,
    /// Admin port on 127.0.0.1 (0 = any free port).
    pub admin_port: u16,
    /// Path of `llm_router.wasm` as Envoy should open it.
    pub wasm_path: String,
    /// Named in the header comment: where the catalog came from.
    pub source: String,
    /// The system trust store, for providers without `ca_file`. Envoy requires a CA file whenever a
    /// certificate's names are checked, so the system roots are given as a bundle file.
    pub ca_bundle: String,
    /// Spread connections exactly over the workers (`connection_balance_config: exact_balance`): each new
    /// connection goes to the worker with the fewest open ones. Tests use it to reach every worker; off by
    /// default, since it takes a lock on every accept (Envoy recommends it only for few long-lived
    /// connections) and the kernel's `SO_REUSEPORT` spreading serves many short ones well.
    pub exact_balance: bool,
    /// Where Envoy writes the access log, one JSON line per request (default `/dev/stdout`).
    pub access_log_path: String,
    /// The heap the overload manager protects (default 1 GiB): at 85 % it starts resetting the streams that
    /// buffer the most, at 90 % it asks the allocator to return memory, at 95 % it refuses new requests.
    /// Set it below the memory limit of Envoy's container.
    pub max_heap_bytes: u64,
}

/// Where the access log goes unless [`Options::access_log_path`] says otherwise.
pub const DEFAULT_ACCESS_LOG_PATH: &str = "/dev/stdout";

/// Where Debian, Ubuntu (and so Envoy's and Istio's images) keep the system trust store.
pub const DEFAULT_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

impl Default for Options {
    fn default() -> Self {
        Options {
            address: "127.0.0.1".into(),
            port: 10000,
            admin_port: 9901,
            wasm_path: "target/wasm32-wasip1/release/llm_router.wasm".into(),
            source: "catalog.json".into(),
            ca_bundle: DEFAULT_CA_BUNDLE.into(),
            exact_balance: false,
            access_log_path: DEFAULT_ACCESS_LOG_PATH.into(),
            max_heap_bytes: DEFAULT_MAX_HEAP_BYTES,
        }
    }
}

/// The heap [`Options::max_heap_bytes`] protects unless told otherwise.
pub const DEFAULT_MAX_HEAP_BYTES: u64 = 1 << 30;

// Bounded limits: Envoy's defaults leave several resources unbounded (or bounded only far beyond what an
// LLM API needs). Each value is in the README's "Bounded limits" table, with the same reason.

/// HTTP/2 streams one client connection may have open at once (Envoy's default: 2^31 - 1). Streams beyond
/// it are refused by the protocol; with the buffer limit below it caps one connection's memory.
const H2_MAX_CONCURRENT_STREAMS: u32 = 100;
/// HTTP/2 per-stream flow-control window (Envoy's default: 256 MiB): how much a client may send on one
/// stream before Envoy has taken it in. 64 KiB is Envoy's edge recommendation; one upload moves at most
/// this much per round trip.
const H2_STREAM_WINDOW: u32 = 64 * 1024;
/// HTTP/2 per-connection window (Envoy's default: 256 MiB): unacknowledged bytes in flight on one
/// connection, all streams together.
const H2_CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Envoy's buffer per client and per provider connection (the raw socket buffers: bytes read but not yet
/// processed, bytes a slow reader has not taken yet). Envoy's default, and the HTTP/2 connection window.
/// A request's body is bounded by the route's `request_body_buffer_limit` instead.
const CONNECTION_BUFFER: u32 = 1024 * 1024;
/// Request headers, all together (Envoy's default: 60 KiB). API clients send a few hundred bytes.
const MAX_REQUEST_HEADERS_KB: u32 = 32;
/// Request headers, by count (Envoy's default, stated so it cannot drift).
const MAX_HEADERS_COUNT: u32 = 100;
/// From a request's first header byte to its last (Envoy's default: none).
const REQUEST_HEADERS_TIMEOUT: &str = "10s";
/// From a request's first byte to its complete body (Envoy's default: none): a client trickling a body
/// holds a stream and its buffer until then. 8 MiB in 60 s needs 140 KB/s.
const REQUEST_TIMEOUT: &str = "60s";
/// A connection with no open stream is closed after this (Envoy's default: 1 h).
const CONNECTION_IDLE_TIMEOUT: &str = "300s";
/// The least `stream_idle_timeout` (Envoy's default, 5 min): SSE streams send events, and the longest
/// legitimate silence, a non-streamed answer through every attempt, raises it (see [`stream_idle_timeout`]).
const MIN_STREAM_IDLE_TIMEOUT_S: u64 = 300;
/// Client connections over all listeners (Envoy's default: unlimited): past it new connections are
/// closed at once. Well below common file-descriptor limits, with room for the provider connections.
const MAX_DOWNSTREAM_CONNECTIONS: u32 = 10_000;
/// Each provider cluster's circuit breakers: connections, pending and active requests, and retries
/// (Envoy's defaults: 1024, 1024, 1024 and 3). Retries equal requests: under one provider's outage every
/// request in flight may fall back into another provider's cluster at once (with Envoy's 3, most
/// concurrent requests got the failed provider's error instead of a fallback).
const CLUSTER_LIMIT: u32 = 4096;
/// Streams with at least 2^20 bytes (1 MiB) buffered are tracked, so that under memory pressure the
/// overload manager can reset the ones that buffer the most (`reset_high_memory_stream`).
const TRACKED_STREAM_BYTES_POW2: u32 = 20;
/// The cluster no attempt-count value leads to except one the matcher does not know: it does not exist,
/// so such an attempt is answered 503 by Envoy instead of going to any provider.
pub const NO_SUCH_ATTEMPT_CLUSTER: &str = "llm_no_such_attempt";

/// Header added to replies our retry policy's 503 mapper produces.
const RETRY_AFTER_SECONDS: &str = "1";
/// Head-room of Envoy's own buffers above `routing.max_request_bytes`, so a body at the limit is still
/// buffered whole and retried intact; the filter's own check answers 413 first.
const BUFFER_HEADROOM: u64 = 1024 * 1024;

/// Generates the Envoy config for `catalog_text` (the catalog file's exact text, embedded as the
/// downstream role's configuration).
pub fn generate(catalog_text: &str, opts: &Options) -> Result<String, ConfigError> {
    let catalog = Catalog::parse(catalog_text.as_bytes(), None)?;
    let doc = map([
        ("admin", admin(opts)),
        ("overload_manager", overload_manager(opts)),
        ("stats_config", stats_config()),
        (
            "static_resources",
            map([
                ("listeners", list([listener(&catalog, catalog_text, opts)])),
                ("clusters", list(clusters(&catalog, opts))),
            ]),
        ),
    ]);
    let header = format!(
        "# Generated by `llm-router generate` from {}. Do not edit: change the catalog and regenerate.\n",
        opts.source
    );
    let yaml = render(&doc).map_err(|message| ConfigError { path: String::new(), message })?;
    Ok(header + &yaml)
}

/// Envoy's admin interface, on the loopback interface only: whoever reaches it could change Envoy's log
/// level (its debug log prints request headers, provider keys among them), its runtime values, or stop it.
/// Only read-only pages are served: readiness, stats, and what Envoy runs.
fn admin(opts: &Options) -> Value {
    // Envoy matches these against the path with its query string (`/stats?format=json`), so by prefix; no
    // page that changes anything starts with one of them.
    let pages = ["/ready", "/stats", "/server_info", "/listeners", "/clusters", "/config_dump", "/memory"];
    let paths = pages.iter().map(|p| map([("prefix", s(*p))]));
    map([("address", socket("127.0.0.1", opts.admin_port)), ("allow_paths", list(paths))])
}

/// The overload manager: the process-wide bounds no per-connection limit gives. The heap (`fixed_heap`,
/// [`Options::max_heap_bytes`]): from 85 % on, streams that buffer the most are reset (more of them the
/// closer to 95 %), at 90 % the allocator is asked to return free memory, at 95 % new requests get 503.
/// Client connections: at most [`MAX_DOWNSTREAM_CONNECTIONS`] over all listeners.
fn overload_manager(opts: &Options) -> Value {
    const HEAP: &str = "envoy.resource_monitors.fixed_heap";
    const CONNECTIONS: &str = "envoy.resource_monitors.global_downstream_max_connections";
    let threshold = |at: f64| list([map([("name", s(HEAP)), ("threshold", map([("value", frac(at))]))])]);
    let scaled = list([map([
        ("name", s(HEAP)),
        ("scaled", map([("scaling_threshold", frac(0.85)), ("saturation_threshold", frac(0.95))])),
    ])]);
    map([
        ("refresh_interval", s("0.25s")),
        (
            "resource_monitors",
            list([
                map([
                    ("name", s(HEAP)),
                    (
                        "typed_config",
                        typed("envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig")
                            .with("max_heap_size_bytes", int(opts.max_heap_bytes.min(i64::MAX as u64) as i64)),
                    ),
                ]),
                map([
                    ("name", s(CONNECTIONS)),
                    (
                        "typed_config",
                        typed("envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig")
                            .with("max_active_downstream_connections", int(MAX_DOWNSTREAM_CONNECTIONS)),
                    ),
                ]),
            ]),
        ),
        (
            "actions",
            list([
                map([("name", s("envoy.overload_actions.reset_high_memory_stream")), ("triggers", scaled)]),
                map([("name", s("envoy.overload_actions.shrink_heap")), ("triggers", threshold(0.90))]),
                map([("name", s("envoy.overload_actions.stop_accepting_requests")), ("triggers", threshold(0.95))]),
            ]),
        ),
        ("buffer_factory_config", map([("minimum_account_to_track_power_of_two", int(TRACKED_STREAM_BYTES_POW2))])),
    ])
}

/// A fraction (the overload thresholds).
fn frac(v: f64) -> Value {
    Value::Number(v.into())
}

pub(crate) fn socket(address: &str, port: u16) -> Value {
    map([("socket_address", map([("address", s(address)), ("port_value", int(port))]))])
}

pub(crate) fn typed(type_name: &str) -> Value {
    map([("@type", s(format!("type.googleapis.com/{type_name}")))])
}

/// The VM every role runs in: the same vm_config byte for byte, so Envoy runs one VM per worker.
fn vm_config(catalog: &Catalog, opts: &Options) -> Value {
    vm_config_of(catalog, Some(VM_ID), &opts.wasm_path)
}

/// A VM loading `wasm_path` with the provider keys from Envoy's environment; `vm_id` `None` leaves it
/// blank (Envoy then names the VM by its code's hash, as Istio's WasmPlugin does).
pub(crate) fn vm_config_of(catalog: &Catalog, vm_id: Option<&str>, wasm_path: &str) -> Value {
    let env_keys: Vec<Value> =
        catalog.providers.iter().filter_map(|p| p.api_key_env.as_deref()).map(s).collect();
    let mut vm = map([
        ("vm_id", s(vm_id.unwrap_or(""))),
        ("runtime", s("envoy.wasm.runtime.v8")),
        ("code", map([("local", map([("filename", s(wasm_path))]))])),
    ]);
    if !env_keys.is_empty() {
        vm = vm.with("environment_variables", map([("host_env_keys", list(env_keys))]));
    }
    vm
}

/// What Envoy does after the filter's VM traps (a bug: the filter has no panics, and no host status can
/// make one). FAIL_CLOSED answers 503 to every later request on that worker until Envoy restarts;
/// FAIL_OPEN would pass requests on unchecked, with no key injected and no client key checked; FAIL_RELOAD
/// starts a fresh VM after a back-off (measured in tests/failure_policy.rs: see the README).
const FAILURE_POLICY: &str = "FAIL_RELOAD";

/// The back-off before a trapped VM is replaced: short, so the requests that arrive meanwhile (503) are
/// few; growing to a few seconds if the fresh VM traps again at once.
fn reload_config() -> Value {
    map([("backoff", map([("base_interval", s("0.1s")), ("max_interval", s("5s"))]))])
}

fn wasm_filter(name: &str, root_id: &str, configuration: &str, catalog: &Catalog, opts: &Options) -> Value {
    wasm_filter_in(name, root_id, configuration, vm_config(catalog, opts))
}

/// A wasm HTTP filter playing `root_id` with `configuration`, in the VM `vm`.
pub(crate) fn wasm_filter_in(name: &str, root_id: &str, configuration: &str, vm: Value) -> Value {
    map([
        ("name", s(name)),
        (
            "typed_config",
            typed("envoy.extensions.filters.http.wasm.v3.Wasm").with(
                "config",
                map([
                    ("name", s(name)),
                    ("root_id", s(root_id)),
                    ("vm_config", vm),
                    ("configuration", typed("google.protobuf.StringValue").with("value", s(configuration))),
                    ("failure_policy", s(FAILURE_POLICY)),
                    ("reload_config", reload_config()),
                    ("allow_on_headers_stop_iteration", Value::Bool(true)),
                ]),
            ),
        ),
    ])
}

fn listener(catalog: &Catalog, catalog_text: &str, opts: &Options) -> Value {
    let hcm = typed("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager")
        .with("stat_prefix", s("llm_router"))
        .with("codec_type", s("AUTO"))
        // HTTP/1.1 clients' chunked trailers reach the filter, which routes such a request on them.
        .with("http_protocol_options", http1())
        .with(
            "http2_protocol_options",
            map([
                ("max_concurrent_streams", int(H2_MAX_CONCURRENT_STREAMS)),
                ("initial_stream_window_size", int(H2_STREAM_WINDOW)),
                ("initial_connection_window_size", int(H2_CONNECTION_WINDOW)),
            ]),
        )
        .with(
            "common_http_protocol_options",
            map([
                ("idle_timeout", s(CONNECTION_IDLE_TIMEOUT)),
                ("max_headers_count", int(MAX_HEADERS_COUNT)),
                // `x_api_key` and `x-api-key` are one header to many servers (CGI names both HTTP_X_API_KEY):
                // a client header with an underscore could pass our header filters and reach a provider as
                // another. Dropped (and counted), so a client that sends one still gets its answer.
                ("headers_with_underscores_action", s("DROP_HEADER")),
            ]),
        )
        .with("max_request_headers_kb", int(MAX_REQUEST_HEADERS_KB))
        .with("request_headers_timeout", s(REQUEST_HEADERS_TIMEOUT))
        .with("request_timeout", s(REQUEST_TIMEOUT))
        .with("stream_idle_timeout", s(format!("{}s", stream_idle_timeout(catalog))))
        // The client is whoever opened the connection, never what its headers claim: Envoy regenerates
        // x-request-id (the filter's generation id and draw entropy) for every request from outside, and
        // strips the x-envoy-* headers only trusted peers may send.
        .with("use_remote_address", Value::Bool(true))
        .with("generate_request_id", Value::Bool(true))
        .with("preserve_external_request_id", Value::Bool(false))
        // Providers do not learn the client's address from us (as before use_remote_address).
        .with("skip_xff_append", Value::Bool(true))
        .with("local_reply_config", local_replies(catalog))
        .with("access_log", list([access_log(opts)]))
        .with(
            "route_config",
            map([
                ("name", s("llm_router")),
                (
                    "virtual_hosts",
                    list([map([
                        ("name", s("llm_router")),
                        ("domains", list([s("*")])),
                        ("include_request_attempt_count", Value::Bool(true)),
                        // The filter reads the attempt count from the response it already holds (one
                        // property read fewer per request) and never forwards it.
                        ("include_attempt_count_in_response", Value::Bool(true)),
                        ("routes", list([route(catalog)])),
                    ])]),
                ),
            ]),
        )
        .with(
            "http_filters",
            list(
                std::iter::once(wasm_filter("llm_router", DOWNSTREAM_ROOT_ID, catalog_text, catalog, opts))
                    .chain(
                        catalog.routing.rate_limit_service.iter().flat_map(rate_limit_service::http_filters),
                    )
                    .chain([map([
                        ("name", s("envoy.filters.http.router")),
                        (
                            "typed_config",
                            typed("envoy.extensions.filters.http.router.v3.Router")
                                .with("upstream_log", list([health_logger(catalog, opts)])),
                        ),
                    ])]),
            ),
        );
    let mut l = map([
        ("name", s("llm_router")),
        ("address", socket(&opts.address, opts.port)),
        ("per_connection_buffer_limit_bytes", int(CONNECTION_BUFFER)),
        (
            "filter_chains",
            list([map([(
                "filters",
                list([map([
                    ("name", s("envoy.filters.network.http_connection_manager")),
                    ("typed_config", hcm),
                ])]),
            )])]),
        ),
    ]);
    if opts.exact_balance {
        l = l.with("connection_balance_config", map([("exact_balance", map([]))]));
    }
    l
}

/// The router's `upstream_log`: our wasm access logger, called once per attempt (the only place Envoy
/// reports every attempt's outcome), feeding the health memory. Its `vm_config` is the filters' own,
/// byte for byte, so it runs in the same VM per worker and shares the parsed catalog and shared data.
/// Filtered to the attempts that can be failures (a status of 400 or more, or any response flag): a
/// clean success, the common case, costs no wasm call (the downstream role clears recovered providers).
fn health_logger(catalog: &Catalog, opts: &Options) -> Value {
    health_logger_in(vm_config(catalog, opts), "{}")
}

/// The health logger in the VM `vm`, with `configuration` (`{}`, or the catalog where the downstream
/// role runs in another VM).
pub(crate) fn health_logger_in(vm: Value, configuration: &str) -> Value {
    let min_status =
        map([("default_value", int(400)), ("runtime_key", s("llm_router.health_log_min_status"))]);
    let failed = map([(
        "or_filter",
        map([(
            "filters",
            list([
                map([(
                    "status_code_filter",
                    map([("comparison", map([("op", s("GE")), ("value", min_status)]))]),
                )]),
                map([("response_flag_filter", map([]))]),
            ]),
        )]),
    )]);
    map([
        ("name", s("envoy.access_loggers.wasm")),
        ("filter", failed),
        (
            "typed_config",
            typed("envoy.extensions.access_loggers.wasm.v3.WasmAccessLog").with(
                "config",
                map([
                    ("name", s("llm_router_log")),
                    ("root_id", s(LOGGER_ROOT_ID)),
                    ("vm_config", vm),
                    ("configuration", typed("google.protobuf.StringValue").with("value", s(configuration))),
                    ("failure_policy", s(FAILURE_POLICY)),
                    ("reload_config", reload_config()),
                ]),
            ),
        ),
    ])
}

/// Our stats' label values travel in their names (Envoy stats have no labels); these tag extractors turn
/// them back into labels, so `/stats/prometheus` shows e.g.
/// `llm_router_model_requests{model="meta-llama_llama-3_3-70b-instruct",provider="alpha"}`.
///
/// Our latency histograms get buckets for LLM calls (milliseconds, 5 ms to 10 min) instead of Envoy's
/// defaults, which are sparse between 1 and 10 seconds.
fn stats_config() -> Value {
    let tags = STATS_TAGS.iter().map(|(name, regex)| map([("tag_name", s(*name)), ("regex", s(*regex))]));
    let buckets = LATENCY_BUCKETS_MS.iter().map(|b| int(*b));
    map([
        ("stats_tags", list(tags)),
        (
            "histogram_bucket_settings",
            list([map([
                ("match", map([("prefix", s(format!("{ENVOY_NAMESPACE}.{PREFIX}.")))])),
                ("buckets", list(buckets)),
            ])]),
        ),
    ])
}

/// One JSON line per request: Envoy's own facts and the request's account (`wasm.llm_account`, written
/// once by the filter, the route explanation included); `null` where the filter wrote none (a request that
/// is not a chat). Envoy renders a wasm filter-state value as a string (`PLAIN`; `TYPED` is a
/// base64 `BytesValue`), so `account` is the account's JSON object encoded as a JSON string:
/// `jq '.account | fromjson'`.
fn access_log(opts: &Options) -> Value {
    let fields = [
        ("start_time", "%START_TIME%"),
        ("method", "%REQ(:METHOD)%"),
        ("path", "%REQ(:PATH)%"),
        ("status", "%RESPONSE_CODE%"),
        ("response_flags", "%RESPONSE_FLAGS%"),
        ("duration_ms", "%DURATION%"),
        ("upstream_cluster", "%UPSTREAM_CLUSTER%"),
        ("request_id", "%REQ(X-REQUEST-ID)%"),
        ("bytes_received", "%BYTES_RECEIVED%"),
        ("bytes_sent", "%BYTES_SENT%"),
    ];
    let mut format: Vec<(String, Value)> = fields.iter().map(|(k, v)| (k.to_string(), s(*v))).collect();
    format.push(("account".into(), s(format!("%FILTER_STATE(wasm.{ACCOUNT_KEY}:PLAIN)%"))));
    map([
        ("name", s("envoy.access_loggers.file")),
        (
            "typed_config",
            typed("envoy.extensions.access_loggers.file.v3.FileAccessLog")
                .with("path", s(opts.access_log_path.as_str()))
                .with("log_format", map([("json_format", map_of(format))])),
        ),
    ])
}

/// What Envoy buffers for one request (its body, held whole by the filter and kept for retries) and for
/// one held response: `routing.max_request_bytes` and head-room.
pub(crate) fn buffer_limit(catalog: &Catalog) -> i64 {
    (catalog.routing.max_request_bytes + BUFFER_HEADROOM) as i64
}

/// Seconds a stream may pass with no byte either way: at least [`MIN_STREAM_IDLE_TIMEOUT_S`], and more
/// than a non-streamed request can legitimately wait in silence, every attempt of the longest plan
/// running into `routing.response_timeout_ms`.
fn stream_idle_timeout(catalog: &Catalog) -> u64 {
    let attempts = catalog.max_plan_len().max(1) as u64;
    let silent_ms = catalog.routing.response_timeout_ms.saturating_mul(attempts);
    (silent_ms.div_ceil(1000).saturating_add(10)).max(MIN_STREAM_IDLE_TIMEOUT_S)
}

fn route(catalog: &Catalog) -> Value {
    let r = map([
        ("match", map([("prefix", s("/"))])),
        // Each request may buffer its body (and its held response) up to this, whatever the connection
        // buffers are: the filter's own check answers 413 past max_request_bytes.
        ("request_body_buffer_limit", int(buffer_limit(catalog))),
        ("route", route_action(catalog, &own_cluster)),
    ]);
    if catalog.routing.rate_limit_service.is_none() {
        return r;
    }
    // The descriptors' headers are the filter's word to the rate limit filters, not the provider's.
    r.with("typed_per_filter_config", rate_limit_service::per_route_config())
        .with("request_headers_to_remove", rate_limit_service::headers_to_remove())
}

/// The route's action: no whole-request timeout, the retry policy, and the attempt → slot → cluster
/// matcher over `cluster_of`'s clusters.
pub(crate) fn route_action(catalog: &Catalog, cluster_of: ClusterOf<'_>) -> Value {
    let slots = catalog.max_plan_len();
    map([
        // Streams must not be cut by a whole-response timeout; the filter sets per-try timeouts.
        ("timeout", s("0s")),
        (
            "retry_policy",
            map([
                ("retry_on", s("5xx,reset,connect-failure,retriable-status-codes")),
                ("retriable_status_codes", list([int(401), int(403), int(408), int(429)])),
                ("num_retries", int(slots.saturating_sub(1).max(1) as i64)),
                ("refresh_cluster_on_retry", Value::Bool(true)),
                ("retry_back_off", map([("base_interval", s("0.005s")), ("max_interval", s("0.05s"))])),
            ]),
        ),
        (
            "inline_cluster_specifier_plugin",
            map([(
                "extension",
                map([
                    ("name", s("envoy.router.cluster_specifier_plugin.matcher")),
                    (
                        "typed_config",
                        typed(
                            "envoy.extensions.router.cluster_specifiers.matcher.v3.MatcherClusterSpecifier",
                        )
                        .with("cluster_matcher", attempt_matcher(catalog, slots, cluster_of)),
                    ),
                ]),
            )]),
        ),
    ])
}

/// The first attempt (no `x-envoy-attempt-count` yet) uses slot 0. When retry k re-selects the cluster,
/// the header still holds k, the count stamped on the attempt that failed: so k → slot k. Any other
/// value goes nowhere ([`NO_SUCH_ATTEMPT_CLUSTER`], a 503 from Envoy): slot 0's provider, first choice of a
/// request that may have just failed there, is only for a request with no attempt count at all.
fn attempt_matcher(catalog: &Catalog, slots: usize, cluster_of: ClusterOf<'_>) -> Value {
    let attempt = || {
        map([
            ("name", s("attempt")),
            (
                "typed_config",
                typed("envoy.type.matcher.v3.HttpRequestHeaderMatchInput")
                    .with("header_name", s(ATTEMPT_COUNT)),
            ),
        ])
    };
    // A header that is absent gives the matcher no value, which no string matcher matches, `.*` included.
    let first = map([(
        "matcher_list",
        map([(
            "matchers",
            list([map([
                (
                    "predicate",
                    map([(
                        "single_predicate",
                        map([
                            ("input", attempt()),
                            (
                                "value_match",
                                map([("safe_regex", map([("google_re2", map([])), ("regex", s(".*"))]))]),
                            ),
                        ]),
                    )]),
                ),
                ("on_match", map([("action", cluster_action(NO_SUCH_ATTEMPT_CLUSTER.to_string()))])),
            ])]),
        )]),
    )])
    .with("on_no_match", map([("matcher", slot_matcher(catalog, 0, cluster_of))]));
    if slots < 2 {
        // Envoy refuses an empty exact_match_map.
        return first;
    }
    let retries: Vec<(String, Value)> = (1..slots)
        .map(|k| (k.to_string(), map([("matcher", slot_matcher(catalog, k, cluster_of))])))
        .collect();
    map([("matcher_tree", map([("input", attempt()), ("exact_match_map", map([("map", map_of(retries))]))]))])
        .with("on_no_match", map([("matcher", first)]))
}

fn slot_matcher(catalog: &Catalog, k: usize, cluster_of: ClusterOf<'_>) -> Value {
    // Keys `<slug>|`: a slot's value starts with its provider's (slot 0 carries the plan record after it).
    // Slot 0 goes to first-choice clusters, later slots to fallback clusters.
    let clusters: Vec<(String, Value)> = catalog
        .providers
        .iter()
        .map(|p| (slot_value(&p.name, None), map([("action", cluster_action(cluster_of(p, k)))])))
        .collect();
    map([(
        "matcher_tree",
        map([
            (
                "input",
                map([
                    ("name", s("slot")),
                    (
                        "typed_config",
                        typed("envoy.extensions.matching.common_inputs.network.v3.FilterStateInput")
                            .with("key", s(format!("wasm.{}", slot_key(k)))),
                    ),
                ]),
            ),
            ("prefix_match_map", map([("map", map_of(clusters))])),
        ]),
    )])
}

fn cluster_action(cluster: String) -> Value {
    map([
        ("name", s("cluster")),
        (
            "typed_config",
            typed("envoy.extensions.router.cluster_specifiers.matcher.v3.ClusterAction")
                .with("cluster", s(cluster)),
        ),
    ])
}

/// Replies Envoy generates itself (no provider reachable, timeouts, oversized requests) in our JSON shape.
pub(crate) fn local_replies(catalog: &Catalog) -> Value {
    let payload = too_large(catalog);
    // The error_type per status is the one the filter accounts Envoy's own replies under.
    let mut mappers = Vec::new();
    if catalog.routing.rate_limit_service.is_some() {
        // The rate limit filters' refusals (response flag RL) and errors (RLSE), in our error shape.
        mappers.push(flagged(429, "RL", "Rate limit exceeded: this key's limit across the fleet is reached"));
        mappers.push(flagged(402, "RL", "Key budget exceeded: this key's budget across the fleet is spent"));
        mappers.push(flagged(500, "RLSE", "The rate limit service could not be reached"));
    }
    mappers.extend([
        mapper(503, "No provider could be reached for this request", true),
        mapper(504, "The provider did not answer in time", false),
        mapper(502, "The provider sent an invalid response", false),
        mapper(413, payload.message(), false),
        mapper(431, "Request headers too large", false),
        mapper(408, "The request was not received in time", false),
    ]);
    map([("mappers", list(mappers))])
}

/// A local reply mapper for replies of `status` with Envoy's response flag `flag`.
fn flagged(status: u16, flag: &str, message: &str) -> Value {
    let m = mapper(status, message, false);
    let by_status = m.get("filter").cloned().unwrap_or(Value::Null);
    let by_flag = map([("response_flag_filter", map([("flags", list([s(flag)]))]))]);
    m.with("filter", map([("and_filter", map([("filters", list([by_status, by_flag]))]))]))
}

fn mapper(status: u16, message: &str, retry_after: bool) -> Value {
    let error_type = envoy_error_type(status);
    let filter = map([(
        "status_code_filter",
        map([(
            "comparison",
            map([
                ("op", s("EQ")),
                (
                    "value",
                    map([
                        ("default_value", int(status)),
                        ("runtime_key", s(format!("llm_router.local_reply_{status}"))),
                    ]),
                ),
            ]),
        )]),
    )]);
    let body = map([(
        "json_format",
        map([(
            "error",
            map([
                ("code", s("%RESPONSE_CODE%")),
                ("message", s(message)),
                ("metadata", map([("error_type", s(error_type))])),
            ]),
        )]),
    )]);
    let mut m = map([("filter", filter), ("body_format_override", body)]);
    if retry_after {
        m = m.with(
            "headers_to_add",
            list([map([
                ("header", map([("key", s("retry-after")), ("value", s(RETRY_AFTER_SECONDS))])),
                ("append_action", s("OVERWRITE_IF_EXISTS_OR_ADD")),
            ])]),
        );
    }
    m
}

/// HTTP/1.1 towards a provider: its trailers reach the filter (and a response that ends with them is
/// finished there), as an HTTP/2 provider's do.
pub(crate) fn http1() -> Value {
    map([("enable_trailers", Value::Bool(true))])
}

/// Two clusters per provider, both to its endpoint: the first-choice cluster (slot 0) has no upstream
/// filter, since the downstream role already prepared the first attempt (Envoy then makes no wasm call at
/// all in the cluster), except for a native provider (Anthropic, Gemini), whose every attempt's body the
/// upstream role translates; the fallback cluster (slots 1…) runs the upstream role. Catalogs whose plans
/// have a single slot get no fallback clusters.
fn clusters(catalog: &Catalog, opts: &Options) -> Vec<Value> {
    let mut out: Vec<Value> = catalog.providers.iter().map(|p| cluster(catalog, p, opts, false)).collect();
    if catalog.max_plan_len() > 1 {
        out.extend(catalog.providers.iter().map(|p| cluster(catalog, p, opts, true)));
    }
    out.extend(catalog.routing.rate_limit_service.iter().map(rate_limit_service::cluster));
    out
}

fn cluster(catalog: &Catalog, p: &Provider, opts: &Options, fallback: bool) -> Value {
    let ep = &p.endpoint;
    let name = if fallback { p.fallback_cluster_name() } else { p.cluster_name() };
    let upstream_config = serde_json::json!({ "provider": p.name }).to_string();
    let protocol = if ep.tls {
        map([("auto_config", map([("http_protocol_options", http1()), ("http2_protocol_options", map([]))]))])
    } else {
        map([("explicit_http_config", map([("http_protocol_options", http1())]))])
    };
    let mut options = typed("envoy.extensions.upstreams.http.v3.HttpProtocolOptions");
    if let (Some(o), Value::Mapping(extra)) = (options.as_mapping_mut(), protocol) {
        o.extend(extra);
    }
    // A native provider's every attempt is translated there, the first included.
    if fallback || p.api.is_native() {
        options = options.with(
            "http_filters",
            list([
                wasm_filter("llm_router_upstream", UPSTREAM_ROOT_ID, &upstream_config, catalog, opts),
                map([
                    ("name", s("envoy.filters.http.upstream_codec")),
                    ("typed_config", typed("envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec")),
                ]),
            ]),
        );
    }
    let limit = int(CLUSTER_LIMIT);
    let mut c = map([
        ("name", s(name.as_str())),
        ("type", s(if ep.host_is_ip() { "STATIC" } else { "LOGICAL_DNS" })),
        ("dns_lookup_family", s("V4_PREFERRED")),
        ("connect_timeout", s("5s")),
        // The route's request_body_buffer_limit keeps a whole body for retries; this is the socket's.
        ("per_connection_buffer_limit_bytes", int(CONNECTION_BUFFER)),
        (
            "circuit_breakers",
            map([(
                "thresholds",
                list([map([
                    ("max_connections", limit.clone()),
                    ("max_pending_requests", limit.clone()),
                    ("max_requests", limit.clone()),
                    ("max_retries", limit),
                ])]),
            )]),
        ),
        (
            "load_assignment",
            map([
                ("cluster_name", s(name)),
                (
                    "endpoints",
                    list([map([(
                        "lb_endpoints",
                        list([map([("endpoint", map([("address", socket(&ep.host, ep.port))]))])]),
                    )])]),
                ),
            ]),
        ),
        (
            "typed_extension_protocol_options",
            map([("envoy.extensions.upstreams.http.v3.HttpProtocolOptions", options)]),
        ),
    ]);
    if ep.tls {
        c = c.with("transport_socket", tls_socket(p, &opts.ca_bundle));
    }
    c
}

fn tls_socket(p: &Provider, ca_bundle: &str) -> Value {
    let ep = &p.endpoint;
    let ca = p.ca_file.as_deref().unwrap_or(ca_bundle);
    let trust = map([("trusted_ca", map([("filename", s(ca))]))]);
    let san_type = if ep.host_is_ip() { "IP_ADDRESS" } else { "DNS" };
    let validation = trust.with(
        "match_typed_subject_alt_names",
        list([map([("san_type", s(san_type)), ("matcher", map([("exact", s(ep.host.as_str()))]))])]),
    );
    let mut tls = typed("envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext");
    if !ep.host_is_ip() {
        tls = tls.with("sni", s(ep.host.as_str()));
    }
    tls = tls.with(
        "common_tls_context",
        map([("alpn_protocols", list([s("h2"), s("http/1.1")])), ("validation_context", validation)]),
    );
    map([("name", s("envoy.transport_sockets.tls")), ("typed_config", tls)])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The brain's test catalog (key `sk-test-1`), shared with its unit tests.
    fn demo_json() -> String {
        include_str!("../../../tests/fixtures/catalog.json")
            .replace("SHA", &llm_router::catalog::hash_token("sk-test-1"))
    }

    /// The generated config for `catalog`, parsed: the tests check values, not the text's layout.
    fn config(catalog: &str, opts: &Options) -> Value {
        serde_norway::from_str(&generate(catalog, opts).unwrap()).unwrap()
    }

    fn demo() -> Value {
        config(&demo_json(), &Options::default())
    }

    /// An expected value, written as YAML in a Rust string: the lines after the first are dedented by their
    /// common indentation, so the first line (right after the quote) lines up with them.
    fn yaml(text: &str) -> Value {
        let rest = text.lines().skip(1).filter(|l| !l.trim().is_empty());
        let indent = rest.map(|l| l.len() - l.trim_start().len()).min().unwrap_or(0);
        let lines: Vec<&str> = text
            .lines()
            .enumerate()
            .map(|(i, l)| if i == 0 { l } else { l.get(indent..).unwrap_or("") })
            .collect();
        serde_norway::from_str(&lines.join("\n")).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    /// The HTTP connection manager's config.
    fn hcm(doc: &Value) -> &Value {
        &doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    }

    /// The one route's action (`route:`).
    fn route_action(doc: &Value) -> &Value {
        &hcm(doc)["route_config"]["virtual_hosts"][0]["routes"][0]["route"]
    }

    fn clusters(doc: &Value) -> &[Value] {
        doc["static_resources"]["clusters"].as_sequence().unwrap()
    }

    fn cluster<'a>(doc: &'a Value, name: &str) -> &'a Value {
        clusters(doc).iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no cluster {name}"))
    }

    /// The `prefix_match_map` of a slot matcher: slot-value prefix → cluster.
    fn slot_clusters(slot_matcher: &Value) -> Vec<(&str, &str)> {
        let tree = &slot_matcher["matcher_tree"];
        tree["prefix_match_map"]["map"]
            .as_mapping()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str().unwrap(), v["action"]["typed_config"]["cluster"].as_str().unwrap()))
            .collect()
    }

    #[test]
    fn retries_on_every_failure_a_fallback_is_for_and_nothing_else() {
        // Fallback: 5xx (a per-try timeout counts as one), a reset, a refused connection, 429, 401, 403, 408.
        // The filter sends x-envoy-max-retries per request (its plan's length - 1); num_retries is the most
        // any plan needs: one slot per endpoint here (4), so 3 retries.
        let doc = demo();
        let policy = &route_action(&doc)["retry_policy"];
        let mut codes: Vec<u64> = policy["retriable_status_codes"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .collect();
        codes.sort_unstable();
        assert_eq!(codes, [401, 403, 408, 429]);
        let mut retry_on: Vec<&str> = policy["retry_on"].as_str().unwrap().split(',').collect();
        retry_on.sort_unstable();
        assert_eq!(retry_on, ["5xx", "connect-failure", "reset", "retriable-status-codes"]);
        assert_eq!(policy["num_retries"], 3);
        // The whole policy, so that an added field (a retry_host_predicate, a per_try_timeout) shows too.
        let want = yaml(
            "retry_on: 5xx,reset,connect-failure,retriable-status-codes
             retriable_status_codes: [401, 403, 408, 429]
             num_retries: 3
             refresh_cluster_on_retry: true
             retry_back_off: {base_interval: 0.005s, max_interval: 0.05s}",
        );
        assert_eq!(*policy, want);
        // Streams must not be cut by a whole-response timeout; the filter sets per-try timeouts.
        assert_eq!(route_action(&doc)["timeout"], "0s");
    }

    #[test]
    fn one_cluster_per_provider_and_role_with_its_endpoint_and_tls() {
        let doc = demo();
        let names: Vec<&str> = clusters(&doc).iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "llm_provider_alpha",
                "llm_provider_beta",
                "llm_provider_gamma",
                "llm_fallback_alpha",
                "llm_fallback_beta",
                "llm_fallback_gamma"
            ]
        );
        let alpha = cluster(&doc, "llm_provider_alpha");
        assert_eq!(alpha["type"], "LOGICAL_DNS");
        assert_eq!(
            alpha["per_connection_buffer_limit_bytes"],
            1024 * 1024,
            "the socket's; bodies: the route's"
        );
        assert_eq!(
            alpha["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"],
            yaml("socket_address: {address: api.alpha.example, port_value: 443}")
        );
        let tls = &alpha["transport_socket"]["typed_config"];
        assert_eq!(tls["sni"], "api.alpha.example");
        assert_eq!(
            tls["common_tls_context"],
            yaml(
                "alpn_protocols: [h2, http/1.1]
                 validation_context:
                   trusted_ca: {filename: /etc/ssl/certs/ca-certificates.crt}
                   match_typed_subject_alt_names: [{san_type: DNS, matcher: {exact: api.alpha.example}}]"
            )
        );
        let beta = cluster(&doc, "llm_provider_beta");
        assert_eq!(beta["type"], "STATIC");
        assert_eq!(
            beta["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"],
            yaml("socket_address: {address: 127.0.0.1, port_value: 8080}")
        );
        assert!(beta.get("transport_socket").is_none(), "plain HTTP");
        let text = generate(&demo_json(), &Options::default()).unwrap();
        assert!(!text.contains("FAIL_OPEN") && !text.contains("sk-test-1"));
    }

    #[test]
    fn the_filters_share_one_vm_with_the_provider_keys_and_the_catalog() {
        let doc = demo();
        let filter = &hcm(&doc)["http_filters"][0];
        assert_eq!(filter["name"], "llm_router");
        let config = &filter["typed_config"]["config"];
        assert_eq!(config["root_id"], DOWNSTREAM_ROOT_ID);
        assert_eq!(config["failure_policy"], "FAIL_RELOAD");
        assert_eq!(config["reload_config"]["backoff"]["base_interval"], "0.1s");
        assert_eq!(config["allow_on_headers_stop_iteration"], true);
        assert_eq!(config["configuration"]["value"], demo_json().as_str(), "the catalog's exact text");
        assert_eq!(
            config["vm_config"],
            yaml(
                "vm_id: llm_router
                 runtime: envoy.wasm.runtime.v8
                 code: {local: {filename: target/wasm32-wasip1/release/llm_router.wasm}}
                 environment_variables: {host_env_keys: [ALPHA_KEY, BETA_KEY]}"
            )
        );
        let host = &hcm(&doc)["route_config"]["virtual_hosts"][0];
        assert_eq!(host["domains"], yaml("['*']"));
        assert_eq!(host["include_request_attempt_count"], true);
        assert_eq!(host["include_attempt_count_in_response"], true);
    }

    #[test]
    fn first_choice_clusters_have_no_upstream_filter_and_fallbacks_have_it() {
        let doc = demo();
        let options = |name: &str| {
            &cluster(&doc, name)["typed_extension_protocol_options"]
                ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
        };
        let downstream_vm = &hcm(&doc)["http_filters"][0]["typed_config"]["config"]["vm_config"];
        for p in ["alpha", "beta", "gamma"] {
            assert!(options(&format!("llm_provider_{p}")).get("http_filters").is_none(), "{p}");
            let filters = &options(&format!("llm_fallback_{p}"))["http_filters"];
            let names: Vec<&str> =
                filters.as_sequence().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
            assert_eq!(names, ["llm_router_upstream", "envoy.filters.http.upstream_codec"], "{p}");
            let upstream = &filters[0]["typed_config"]["config"];
            assert_eq!(upstream["root_id"], UPSTREAM_ROOT_ID, "{p}");
            assert_eq!(
                upstream["configuration"]["value"],
                format!(r#"{{"provider":"{p}"}}"#).as_str(),
                "{p}"
            );
            assert_eq!(upstream["vm_config"], *downstream_vm, "{p}: the same VM");
        }
        // A native provider's first attempt is translated in its first-choice cluster too.
        let json = demo_json().replacen(r#""name": "gamma""#, r#""name": "gamma", "api": "anthropic""#, 1);
        assert!(json.contains(r#""api": "anthropic""#));
        let doc = config(&json, &Options::default());
        let first = &cluster(&doc, "llm_provider_gamma")["typed_extension_protocol_options"]
            ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["http_filters"];
        assert_eq!(first[0]["typed_config"]["config"]["root_id"], UPSTREAM_ROOT_ID);
        // Slot 0 (no x-envoy-attempt-count yet) routes to first-choice clusters, slot k (retry k) to fallbacks.
        let matcher = &route_action(&doc)["inline_cluster_specifier_plugin"]["extension"]["typed_config"]
            ["cluster_matcher"];
        assert_eq!(matcher["matcher_tree"]["input"]["typed_config"]["header_name"], "x-envoy-attempt-count");
        let slot0 = first_attempt(&matcher["on_no_match"]["matcher"]);
        assert_eq!(slot0["matcher_tree"]["input"]["typed_config"]["key"], "wasm.llm_try_0");
        assert_eq!(
            slot_clusters(slot0),
            [
                ("alpha|", "llm_provider_alpha"),
                ("beta|", "llm_provider_beta"),
                ("gamma|", "llm_provider_gamma")
            ]
        );
        let retries = matcher["matcher_tree"]["exact_match_map"]["map"].as_mapping().unwrap();
        let attempts: Vec<&str> = retries.keys().map(|k| k.as_str().unwrap()).collect();
        assert_eq!(attempts, ["1", "2", "3"], "one slot per endpoint (4)");
        for (k, slot) in retries {
            let slot = &slot["matcher"];
            let key = format!("wasm.llm_try_{}", k.as_str().unwrap());
            assert_eq!(slot["matcher_tree"]["input"]["typed_config"]["key"], key.as_str());
            assert_eq!(
                slot_clusters(slot),
                [
                    ("alpha|", "llm_fallback_alpha"),
                    ("beta|", "llm_fallback_beta"),
                    ("gamma|", "llm_fallback_gamma")
                ]
            );
        }
    }

    /// The matcher for a request with no known attempt count: any count at all goes to
    /// [`NO_SUCH_ATTEMPT_CLUSTER`]; none (the first attempt) to slot 0, which this returns.
    fn first_attempt(m: &Value) -> &Value {
        let matchers = m["matcher_list"]["matchers"].as_sequence().unwrap();
        assert_eq!(matchers.len(), 1);
        assert_eq!(
            matchers[0]["predicate"]["single_predicate"],
            yaml(
                "input:
                   name: attempt
                   typed_config:
                     '@type': type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput
                     header_name: x-envoy-attempt-count
                 value_match: {safe_regex: {google_re2: {}, regex: '.*'}}"
            )
        );
        assert_eq!(matchers[0]["on_match"]["action"]["typed_config"]["cluster"], NO_SUCH_ATTEMPT_CLUSTER);
        &m["on_no_match"]["matcher"]
    }

    #[test]
    fn an_attempt_count_the_matcher_does_not_know_goes_to_no_cluster() {
        // Before, every value but "1".."3" fell through to slot 0: the first choice's cluster, with no
        // upstream filter, took an attempt prepared for another provider.
        let doc = demo();
        let matcher = &route_action(&doc)["inline_cluster_specifier_plugin"]["extension"]["typed_config"]
            ["cluster_matcher"];
        let unknown = &matcher["on_no_match"]["matcher"];
        assert!(unknown.get("matcher_tree").is_none(), "{unknown:?}");
        first_attempt(unknown);
        assert!(
            clusters(&doc).iter().all(|c| c["name"] != NO_SUCH_ATTEMPT_CLUSTER),
            "the cluster must not exist"
        );
    }

    #[test]
    fn a_single_slot_needs_no_retry_map() {
        // Envoy refuses an empty exact_match_map: with one endpoint per model there are no retry slots.
        let one = r#"{"providers": [{"name": "p", "endpoint": "http://p"}], "auth": "none",
            "models": [{"id": "m", "endpoints": [{"provider": "p", "model": "n", "pricing": {"prompt": 1, "completion": 1}}]}]}"#;
        let doc = config(one, &Options::default());
        let matcher = &route_action(&doc)["inline_cluster_specifier_plugin"]["extension"]["typed_config"]
            ["cluster_matcher"];
        assert!(matcher.get("matcher_tree").is_none(), "{matcher:?}");
        let slot0 = first_attempt(matcher);
        assert_eq!(slot0["matcher_tree"]["input"]["typed_config"]["key"], "wasm.llm_try_0");
        assert_eq!(slot_clusters(slot0), [("p|", "llm_provider_p")]);
        assert!(slot0.get("on_no_match").is_none());
        let names: Vec<&str> = clusters(&doc).iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["llm_provider_p"], "no fallback clusters");
        // The generator's floor; what limits a request is the x-envoy-max-retries the filter sets (plan - 1).
        assert_eq!(route_action(&doc)["retry_policy"]["num_retries"], 1);
    }

    #[test]
    fn every_limit_envoy_leaves_open_is_bounded() {
        // Before, the generated config left Envoy's defaults: 2^31 - 1 streams per HTTP/2 connection,
        // 256 MiB windows, no overload manager, no connection limit, no header or request timeout,
        // circuit breakers at 10^6, a 9 MiB socket buffer per connection.
        let doc = demo();
        let h = hcm(&doc);
        assert_eq!(
            h["http2_protocol_options"],
            yaml(
                "max_concurrent_streams: 100
                 initial_stream_window_size: 65536
                 initial_connection_window_size: 1048576"
            )
        );
        assert_eq!(
            h["common_http_protocol_options"],
            yaml(
                "idle_timeout: 300s
                 max_headers_count: 100
                 headers_with_underscores_action: DROP_HEADER"
            )
        );
        assert_eq!(h["max_request_headers_kb"], 32);
        assert_eq!(h["request_headers_timeout"], "10s");
        assert_eq!(h["request_timeout"], "60s");
        // The fixture's longest plan has 4 attempts of up to 120 s each without a byte to the client.
        assert_eq!(h["stream_idle_timeout"], "490s");
        let listener = &doc["static_resources"]["listeners"][0];
        assert_eq!(listener["per_connection_buffer_limit_bytes"], 1024 * 1024);
        // A body at max_request_bytes is still taken whole (and a response as large held): the route's.
        assert_eq!(
            hcm(&doc)["route_config"]["virtual_hosts"][0]["routes"][0]["request_body_buffer_limit"],
            9 << 20
        );
        for c in clusters(&doc) {
            assert_eq!(
                c["per_connection_buffer_limit_bytes"],
                1024 * 1024,
                "{}",
                c["name"].as_str().unwrap()
            );
            assert_eq!(
                c["circuit_breakers"],
                yaml(
                    "thresholds:
                     - {max_connections: 4096, max_pending_requests: 4096, max_requests: 4096, max_retries: 4096}"
                ),
                "max_retries as high as max_requests: every request may fall back at once"
            );
        }
        assert_eq!(
            doc["overload_manager"],
            yaml(
                "refresh_interval: 0.25s
                 resource_monitors:
                 - name: envoy.resource_monitors.fixed_heap
                   typed_config:
                     '@type': type.googleapis.com/envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig
                     max_heap_size_bytes: 1073741824
                 - name: envoy.resource_monitors.global_downstream_max_connections
                   typed_config:
                     '@type': type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig
                     max_active_downstream_connections: 10000
                 actions:
                 - name: envoy.overload_actions.reset_high_memory_stream
                   triggers:
                   - name: envoy.resource_monitors.fixed_heap
                     scaled: {scaling_threshold: 0.85, saturation_threshold: 0.95}
                 - name: envoy.overload_actions.shrink_heap
                   triggers:
                   - {name: envoy.resource_monitors.fixed_heap, threshold: {value: 0.9}}
                 - name: envoy.overload_actions.stop_accepting_requests
                   triggers:
                   - {name: envoy.resource_monitors.fixed_heap, threshold: {value: 0.95}}
                 buffer_factory_config: {minimum_account_to_track_power_of_two: 20}"
            )
        );
        let small = config(&demo_json(), &Options { max_heap_bytes: 256 << 20, ..Options::default() });
        assert_eq!(
            small["overload_manager"]["resource_monitors"][0]["typed_config"]["max_heap_size_bytes"],
            256 << 20
        );
    }

    #[test]
    fn the_stream_idle_timeout_outlasts_every_attempt_of_a_silent_answer() {
        let with = |routing: &str| {
            let text = demo_json().replacen("\"routing\": {", &format!("\"routing\": {{{routing}"), 1);
            assert_ne!(text, demo_json(), "the fixture has a routing object");
            let doc = config(&text, &Options::default());
            hcm(&doc)["stream_idle_timeout"].as_str().unwrap().to_string()
        };
        assert_eq!(with(r#""response_timeout_ms": 1000,"#), "300s", "never below Envoy's default");
        assert_eq!(with(r#""response_timeout_ms": 100001,"#), "411s", "4 attempts, rounded up, + 10 s");
    }

    #[test]
    fn clients_are_who_connected_and_providers_do_not_learn_their_address() {
        let doc = demo();
        let h = hcm(&doc);
        assert_eq!(h["use_remote_address"], true);
        assert_eq!(h["generate_request_id"], true);
        assert_eq!(h["preserve_external_request_id"], false);
        assert_eq!(h["skip_xff_append"], true);
    }

    #[test]
    fn admin_listens_on_loopback_and_serves_only_read_only_pages() {
        let public = config(&demo_json(), &Options { address: "0.0.0.0".into(), ..Options::default() });
        assert_eq!(
            public["static_resources"]["listeners"][0]["address"]["socket_address"]["address"],
            "0.0.0.0"
        );
        assert_eq!(
            public["admin"]["address"],
            yaml("socket_address: {address: 127.0.0.1, port_value: 9901}")
        );
        let pages: Vec<&str> = public["admin"]["allow_paths"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|m| m["prefix"].as_str().unwrap())
            .collect();
        assert_eq!(
            pages,
            ["/ready", "/stats", "/server_info", "/listeners", "/clusters", "/config_dump", "/memory"]
        );
    }

    #[test]
    fn local_replies_are_our_json_errors() {
        let doc = demo();
        let mappers = hcm(&doc)["local_reply_config"]["mappers"].as_sequence().unwrap();
        let got: Vec<(u64, &str)> = mappers
            .iter()
            .map(|m| {
                let value = &m["filter"]["status_code_filter"]["comparison"]["value"];
                let error = &m["body_format_override"]["json_format"]["error"];
                assert_eq!(error["code"], "%RESPONSE_CODE%");
                (value["default_value"].as_u64().unwrap(), error["metadata"]["error_type"].as_str().unwrap())
            })
            .collect();
        assert_eq!(
            got,
            [
                (503, "provider_unavailable"),
                (504, "timeout"),
                (502, "provider_unavailable"),
                (413, "payload_too_large"),
                (431, "invalid_request"),
                (408, "timeout")
            ]
        );
        assert_eq!(
            mappers[0]["headers_to_add"],
            yaml("[{header: {key: retry-after, value: '1'}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}]")
        );
        assert!(mappers[1..].iter().all(|m| m.get("headers_to_add").is_none()));
    }

    #[test]
    fn stats_tags_label_our_stats_and_the_access_log_prints_the_account() {
        let doc = demo();
        let tags: Vec<(&str, &str)> = doc["stats_config"]["stats_tags"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|t| (t["tag_name"].as_str().unwrap(), t["regex"].as_str().unwrap()))
            .collect();
        assert_eq!(tags, STATS_TAGS);
        assert_eq!(tags[0], ("model", r"^wasmcustom\.llm_router\.model\.(([^.]+)\.)"), "backslashes survive");
        let buckets = &doc["stats_config"]["histogram_bucket_settings"];
        assert_eq!(buckets[0]["match"], yaml("prefix: wasmcustom.llm_router."));
        let bounds: Vec<i64> =
            buckets[0]["buckets"].as_sequence().unwrap().iter().map(|b| b.as_i64().unwrap()).collect();
        assert_eq!(bounds, LATENCY_BUCKETS_MS);
        assert_eq!(buckets.as_sequence().unwrap().len(), 1);

        let logs = hcm(&doc)["access_log"].as_sequence().unwrap();
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0]["name"], "envoy.access_loggers.file");
        let log = &logs[0]["typed_config"];
        assert_eq!(log["@type"], "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog");
        assert_eq!(log["path"], "/dev/stdout");
        assert_eq!(
            log["log_format"]["json_format"],
            yaml(
                r#"start_time: "%START_TIME%"
                   method: "%REQ(:METHOD)%"
                   path: "%REQ(:PATH)%"
                   status: "%RESPONSE_CODE%"
                   response_flags: "%RESPONSE_FLAGS%"
                   duration_ms: "%DURATION%"
                   upstream_cluster: "%UPSTREAM_CLUSTER%"
                   request_id: "%REQ(X-REQUEST-ID)%"
                   bytes_received: "%BYTES_RECEIVED%"
                   bytes_sent: "%BYTES_SENT%"
                   account: "%FILTER_STATE(wasm.llm_account:PLAIN)%""#
            ),
            "the route explanation is part of the account"
        );
        let to_file = config(
            &demo_json(),
            &Options { access_log_path: "/var/log/llm.log".into(), ..Options::default() },
        );
        assert_eq!(hcm(&to_file)["access_log"][0]["typed_config"]["path"], "/var/log/llm.log");
    }

    #[test]
    fn a_value_envoy_would_read_as_a_boolean_is_refused() {
        // `ON` is a fine variable name, but a plain `ON` in Envoy's YAML is `true` and Envoy refuses the config.
        let e = generate(&demo_json().replace("\"BETA_KEY\"", "\"ON\""), &Options::default()).unwrap_err();
        assert!(e.to_string().contains(".environment_variables.host_env_keys[1]: \"ON\" would be"), "{e}");
    }

    #[test]
    fn invalid_catalog_is_refused_with_path() {
        let e = generate("{\"providers\": 1, \"models\": []}", &Options::default()).unwrap_err();
        assert_eq!(e.path, "providers");
    }

    #[test]
    fn the_router_logs_every_attempt_to_our_logger_in_the_shared_vm() {
        let doc = demo();
        let router = &hcm(&doc)["http_filters"][1];
        assert_eq!(router["name"], "envoy.filters.http.router");
        let loggers = router["typed_config"]["upstream_log"].as_sequence().unwrap();
        assert_eq!(loggers.len(), 1);
        let logger = &loggers[0];
        assert_eq!(logger["name"], "envoy.access_loggers.wasm");
        // Only for attempts that can be failures: status >= 400 or any response flag.
        assert_eq!(logger["filter"].as_mapping().map(|m| m.len()), Some(1), "only or_filter");
        assert_eq!(
            logger["filter"]["or_filter"]["filters"],
            yaml(
                "- status_code_filter:
                     comparison: {op: GE, value: {default_value: 400, runtime_key: llm_router.health_log_min_status}}
                 - response_flag_filter: {}"
            )
        );
        let wasm = &logger["typed_config"]["config"];
        assert_eq!(
            logger["typed_config"]["@type"],
            "type.googleapis.com/envoy.extensions.access_loggers.wasm.v3.WasmAccessLog"
        );
        assert_eq!(wasm["root_id"], LOGGER_ROOT_ID);
        assert_eq!(wasm["configuration"]["value"], "{}");
        assert_eq!(wasm["failure_policy"], "FAIL_RELOAD");
        // Same VM as the filters: its vm_config is theirs.
        assert_eq!(wasm["vm_config"], hcm(&doc)["http_filters"][0]["typed_config"]["config"]["vm_config"]);

        let listener = &doc["static_resources"]["listeners"][0];
        assert!(listener.get("connection_balance_config").is_none(), "off unless asked for");
        let balanced = config(&demo_json(), &Options { exact_balance: true, ..Options::default() });
        assert_eq!(
            balanced["static_resources"]["listeners"][0]["connection_balance_config"],
            yaml("exact_balance: {}")
        );
    }
}

#[cfg(test)]
mod rate_limit_service_tests {
    use super::*;
    use crate::rate_limit_service::service_config;

    fn catalog_json(service: &str, limits: &str) -> String {
        include_str!("../../../tests/fixtures/catalog.json")
            .replace("SHA", &llm_router::catalog::hash_token("sk-test-1"))
            .replace(
                r#""max_attempts": 2"#,
                &format!(r#""max_attempts": 2, "rate_limit_service": {service}"#),
            )
            .replace(r#"{"name": "team-a","#, &format!(r#"{{"name": "team-a", "limits": {limits},"#))
    }

    fn hcm(doc: &Value) -> &Value {
        &doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    }

    #[test]
    fn without_a_service_nothing_of_it_is_generated() {
        let text = include_str!("../../../tests/fixtures/catalog.json")
            .replace("SHA", &llm_router::catalog::hash_token("sk-test-1"));
        let yaml = generate(&text, &Options::default()).unwrap();
        assert!(!yaml.contains("ratelimit") && !yaml.contains("x-llm-rl-"), "{yaml}");
    }

    #[test]
    fn the_service_gets_its_filters_after_ours_its_cluster_and_the_routes_descriptors() {
        let text = catalog_json(
            r#"{"address": "rls.internal:8081", "timeout_ms": 250, "deny_when_unreachable": true}"#,
            r#"{"requests_per_minute": 60, "usd_per_day": 5}"#,
        );
        let doc: Value = serde_norway::from_str(&generate(&text, &Options::default()).unwrap()).unwrap();
        let filters: Vec<&str> = hcm(&doc)["http_filters"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            filters,
            ["llm_router", "llm_budget", "llm_tokens", "llm_rate_limit", "envoy.filters.http.router"]
        );
        let budget = &hcm(&doc)["http_filters"][1]["typed_config"];
        assert_eq!(budget["rate_limited_status"]["code"], 402);
        assert_eq!(budget["failure_mode_deny"], true);
        assert_eq!(budget["timeout"], "0.25s");
        assert_eq!(budget["domain"], "llm-router");
        let cluster = doc["static_resources"]["clusters"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|c| c["name"] == crate::rate_limit_service::CLUSTER)
            .unwrap();
        assert_eq!(cluster["type"], "STRICT_DNS");
        let options = &cluster["typed_extension_protocol_options"]
            ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
        assert!(options["explicit_http_config"]["http2_protocol_options"].is_mapping());
        let route = &hcm(&doc)["route_config"]["virtual_hosts"][0]["routes"][0];
        let removed: Vec<&str> = route["request_headers_to_remove"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(removed, llm_router::routing::fleet::HEADERS);
        // Dollars: a check at admission with the header's hits, a charge at stream end from filter state.
        let usd = route["typed_per_filter_config"]["llm_budget"]["rate_limits"].as_sequence().unwrap();
        assert_eq!(usd.len(), 6, "day, week and month, each checked and charged");
        assert_eq!(usd[0]["hits_addend"]["format"], "%REQ(x-llm-rl-usd)%");
        assert_eq!(usd[1]["apply_on_stream_done"], true);
        assert_eq!(usd[1]["hits_addend"]["format"], "%FILTER_STATE(wasm.llm_rl_usd:PLAIN)%");
        assert_eq!(usd[0]["actions"][0]["header_value_match"]["descriptor_value"], "usd_day");
        let rates = route["typed_per_filter_config"]["llm_rate_limit"]["rate_limits"].as_sequence().unwrap();
        assert_eq!(rates[0]["actions"][1]["request_headers"]["header_name"], "x-llm-rl-key");
        assert!(rates[0].get("hits_addend").is_none(), "a request counts 1");
    }

    #[test]
    fn the_services_configuration_comes_from_the_same_catalog() {
        let text = catalog_json(
            r#"{"address": "127.0.0.1:8081"}"#,
            r#"{"tokens_per_minute": 1000, "usd_per_month": 5}"#,
        );
        let c = Catalog::parse(text.as_bytes(), None).unwrap();
        let service = c.routing.rate_limit_service.as_ref().unwrap();
        let doc: Value = serde_norway::from_str(&service_config(&c, service, "c.json").unwrap()).unwrap();
        assert_eq!(doc["domain"], "llm-router");
        let classes: Vec<&str> =
            doc["descriptors"].as_sequence().unwrap().iter().map(|d| d["value"].as_str().unwrap()).collect();
        // No key has a requests, daily or weekly limit: those classes are absent (unlimited).
        assert_eq!(classes, ["free_minute", "free_day", "tokens", "usd_month"]);
        let month = &doc["descriptors"][3]["descriptors"][0];
        assert_eq!((month["key"].as_str(), month["value"].as_str()), (Some("key"), Some("team-a")));
        // $5 in micro-dollars, one less: the service refuses a counter past its limit, so the spend may
        // reach the budget and no more.
        assert_eq!(month["rate_limit"]["requests_per_unit"], 4_999_999);
        assert_eq!(month["rate_limit"]["unit"], "month");
        assert_eq!(doc["descriptors"][2]["descriptors"][0]["rate_limit"]["requests_per_unit"], 999);
        // The free quotas hold for every key.
        assert!(doc["descriptors"][0]["descriptors"][0].get("value").is_none());
    }

    #[test]
    fn budgets_past_32_bits_of_micro_dollars_count_in_larger_units() {
        let text = catalog_json(r#"{"address": "127.0.0.1:8081"}"#, r#"{"usd_per_month": 100000}"#);
        let c = Catalog::parse(text.as_bytes(), None).unwrap();
        let service = c.routing.rate_limit_service.as_ref().unwrap();
        // $100,000 is 10^11 micro-dollars: counted in units of 100 micro-dollars (10^9 of them).
        assert_eq!(service.usd_unit_nano, 100_000);
        assert_eq!(service.usd_units(1), 1, "a charge rounds up");
        let yaml = service_config(&c, service, "c.json").unwrap();
        assert!(yaml.contains("requests_per_unit: 999999999"), "{yaml}");
    }
}
