//! Limits across many Envoys through Envoy's global rate limit service (`routing.rate_limit_service`):
//! the Envoy side (two rate limit filters after ours, the service's HTTP/2 cluster, the route's
//! `rate_limits` and the local replies for its refusals) and the service's own configuration
//! (envoyproxy/ratelimit's YAML), both from the catalog, with the descriptor names the filter uses
//! (`llm_router::routing::fleet`).

use crate::yaml::{int, list, map, render, s, Value, With};
use llm_router::catalog::{Catalog, RateLimitService};
use llm_router::routing::fleet::{CLASSES, HEADERS, KEY_HEADER};

/// The service's cluster.
pub const CLUSTER: &str = "llm_rate_limit_service";
/// The rate limit filters, in chain order, each with the status of its refusals and its classes (one
/// filter has one status). The checks that count nothing come first: a request they refuse is not
/// counted by the request and free quotas after them.
const FILTERS: [(&str, u16, &[&str]); 3] = [
    ("llm_budget", 402, &["usd_day", "usd_week", "usd_month"]),
    ("llm_tokens", 429, &["tokens"]),
    ("llm_rate_limit", 429, &["requests", "free_minute", "free_day"]),
];

/// Envoy's rate limit filters, placed after ours (which decides the descriptors in the body phase) and
/// before the router.
pub fn http_filters(service: &RateLimitService) -> Vec<Value> {
    FILTERS
        .into_iter()
        .map(|(name, status, _)| {
            let config = typed("envoy.extensions.filters.http.ratelimit.v3.RateLimit")
                .with("domain", s(service.domain.as_str()))
                .with("timeout", s(format!("{}s", service.timeout_ms as f64 / 1000.0)))
                .with("failure_mode_deny", Value::Bool(service.deny_when_unreachable))
                .with("rate_limited_status", map([("code", int(status))]))
                .with("enable_x_ratelimit_headers", s("DRAFT_VERSION_03"))
                .with("stat_prefix", s(name))
                .with(
                    "rate_limit_service",
                    map([
                        ("transport_api_version", s("V3")),
                        (
                            "grpc_service",
                            map([
                                ("envoy_grpc", map([("cluster_name", s(CLUSTER))])),
                                ("timeout", s(format!("{}s", service.timeout_ms as f64 / 1000.0))),
                            ]),
                        ),
                    ]),
                );
            map([("name", s(name)), ("typed_config", config)])
        })
        .collect()
}

/// The service's cluster: gRPC, so HTTP/2 (cleartext; put the service beside Envoy or behind a mesh's
/// mTLS).
pub fn cluster(service: &RateLimitService) -> Value {
    let ip = service.host.parse::<std::net::IpAddr>().is_ok();
    let options = typed("envoy.extensions.upstreams.http.v3.HttpProtocolOptions")
        .with("explicit_http_config", map([("http2_protocol_options", map([]))]));
    map([
        ("name", s(CLUSTER)),
        ("type", s(if ip { "STATIC" } else { "STRICT_DNS" })),
        ("connect_timeout", s("1s")),
        (
            "load_assignment",
            map([
                ("cluster_name", s(CLUSTER)),
                (
                    "endpoints",
                    list([map([(
                        "lb_endpoints",
                        list([map([(
                            "endpoint",
                            map([(
                                "address",
                                map([(
                                    "socket_address",
                                    map([
                                        ("address", s(service.host.as_str())),
                                        ("port_value", int(service.port)),
                                    ]),
                                )]),
                            )]),
                        )])]),
                    )])]),
                ),
            ]),
        ),
        (
            "typed_extension_protocol_options",
            map([("envoy.extensions.upstreams.http.v3.HttpProtocolOptions", options)]),
        ),
    ])
}

/// The route's `typed_per_filter_config` for the two filters: per class, a descriptor
/// `(limit, <class>)(key, <name>)` made only when the filter set the class's header. Requests count 1 at
/// admission; tokens and dollars are checked at admission with the header's hits (0: has the spend
/// reached the limit?) and charged what the request spent when the stream is done, from the filter
/// state the filter writes then. (`hits_addend` is honoured only here, not in a route's own
/// `rate_limits`: verified on Envoy 1.40.)
pub fn per_route_config() -> Value {
    let entries = |classes: &[&str]| {
        let mut out = Vec::new();
        for c in CLASSES.iter().filter(|c| classes.contains(&c.name)) {
            let actions = || {
                list([
                    map([(
                        "header_value_match",
                        map([
                            ("descriptor_key", s("limit")),
                            ("descriptor_value", s(c.name)),
                            (
                                "headers",
                                list([map([("name", s(c.header)), ("present_match", Value::Bool(true))])]),
                            ),
                        ]),
                    )]),
                    map([(
                        "request_headers",
                        map([("header_name", s(KEY_HEADER)), ("descriptor_key", s("key"))]),
                    )]),
                ])
            };
            match c.spent {
                Some(spent) => {
                    out.push(map([
                        ("actions", actions()),
                        ("hits_addend", map([("format", s(format!("%REQ({})%", c.header)))])),
                    ]));
                    out.push(map([
                        ("actions", actions()),
                        ("apply_on_stream_done", Value::Bool(true)),
                        ("hits_addend", map([("format", s(format!("%FILTER_STATE(wasm.{spent}:PLAIN)%")))])),
                    ]));
                }
                None => out.push(map([("actions", actions())])),
            }
        }
        typed("envoy.extensions.filters.http.ratelimit.v3.RateLimitPerRoute")
            .with("rate_limits", Value::Sequence(out))
    };
    let mut config = map([]);
    for (name, _, classes) in FILTERS {
        config = config.with(name, entries(classes));
    }
    config
}

/// Request headers the route removes before any provider sees them.
pub fn headers_to_remove() -> Value {
    list(HEADERS.iter().map(|h| s(*h)))
}

/// The service's configuration (envoyproxy/ratelimit's YAML) for the catalog's limits: one entry per
/// class and key that has the limit; the free quotas for every key.
pub fn service_config(catalog: &Catalog, service: &RateLimitService, source: &str) -> Result<String, String> {
    let limit = |unit: &str, n: u64| -> Value {
        map([("unit", s(unit)), ("requests_per_unit", int(n.min(u64::from(u32::MAX)) as i64))])
    };
    let per_key = |class: &str, unit: &str, of: &dyn Fn(&llm_router::catalog::KeyLimits) -> Option<u64>| {
        let keys: Vec<Value> = catalog
            .keys
            .iter()
            .filter_map(|k| {
                of(&k.limits).map(|n| {
                    map([("key", s("key")), ("value", s(k.name.as_str())), ("rate_limit", limit(unit, n))])
                })
            })
            .collect();
        map([("key", s("limit")), ("value", s(class)), ("descriptors", Value::Sequence(keys))])
    };
    // Spend is checked at admission with 0 hits, and the service refuses only a counter *past* its
    // limit: one unit less makes it refuse once the spend has reached the limit.
    let spend = |n: Option<u64>| n.map(|n| n.saturating_sub(1));
    let usd = |n: Option<u64>| spend(n.map(|nano| service.usd_units(nano)));
    let routing = &catalog.routing;
    let any_key = |class: &str, unit: &str, n: u64| {
        map([
            ("key", s("limit")),
            ("value", s(class)),
            ("descriptors", list([map([("key", s("key")), ("rate_limit", limit(unit, n))])])),
        ])
    };
    let descriptors = list(
        [
            per_key("requests", "minute", &|l| l.requests_per_minute),
            any_key("free_minute", "minute", routing.free_requests_per_minute),
            any_key("free_day", "day", routing.free_requests_per_day),
            per_key("tokens", "minute", &|l| spend(l.tokens_per_minute)),
            per_key("usd_day", "day", &|l| usd(l.usd_per_day)),
            per_key("usd_week", "week", &|l| usd(l.usd_per_week)),
            per_key("usd_month", "month", &|l| usd(l.usd_per_month)),
        ]
        .into_iter()
        // A class no key has: no entry (its descriptors then have no limit).
        .filter(|d| d.get("descriptors").and_then(Value::as_sequence).is_none_or(|keys| !keys.is_empty())),
    );
    let doc = map([("domain", s(service.domain.as_str())), ("descriptors", descriptors)]);
    let header = format!(
        "# envoyproxy/ratelimit configuration, generated by `llm-router ratelimit-config` from {source}.\n\
         # Do not edit: change the catalog and regenerate. Dollar limits count units of {} nano-USD.\n",
        service.usd_unit_nano
    );
    Ok(header + &render(&doc)?)
}

fn typed(type_name: &str) -> Value {
    map([("@type", s(format!("type.googleapis.com/{type_name}")))])
}
