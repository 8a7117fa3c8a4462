//! Envoy Gateway resources from the catalog: a Gateway of the router's own (one HTTP listener, on an Envoy
//! fleet parameterised by an `EnvoyProxy` the operator writes: README, "Deploying"), a `Backend` and an
//! `HTTPRoute` per provider, the router's `HTTPRoute`, an `EnvoyExtensionPolicy` loading the downstream
//! role from the filter's image, a `BackendTrafficPolicy` with what it can say of the retries, and one
//! `EnvoyPatchPolicy` (JSON patches on the xDS Envoy Gateway generates) for what no API has a field for.
//!
//! What the API expresses:
//!
//! - the downstream role: `EnvoyExtensionPolicy` wasm (`code.type: Image` by digest, `config` = the catalog,
//!   `env.hostKeys` = the providers' key variables, `failOpen: false`) on the router's HTTPRoute;
//! - TLS to each provider with SNI and the system CAs (`Backend.spec.tls`);
//! - the retry triggers, retriable codes, count and back-off, and the circuit breaker's parallel retries
//!   (`BackendTrafficPolicy`); no whole-request timeout (`HTTPRoute` rule `timeouts.request: 0s`).
//!
//! What needs the `EnvoyPatchPolicy`, and why:
//!
//! - `allow_on_headers_stop_iteration: true` (and `failure_policy: FAIL_RELOAD`) on the policy's wasm
//!   filter: the downstream role holds a request's headers until its body is routed, which Envoy allows
//!   only with that flag (without it, verified on Envoy 1.40, the request hangs), and Envoy Gateway's
//!   translation never sets it (`wasmConfig` in `internal/xds/translator/wasm.go`);
//! - the route's attempt → slot → cluster matcher and `refresh_cluster_on_retry` (the API routes to one
//!   rule's backends), and the body buffer limit;
//! - the attempt-count headers and a `*` domain on the virtual host: the filter sets each attempt's
//!   `:authority` to its provider's and Envoy picks the route again;
//! - the upstream role on each provider's cluster (Envoy Gateway has no upstream HTTP filters), as its
//!   `typed_extension_protocol_options` (HTTP/1.1 with trailers, the upstream role, the codec);
//! - the health logger as the router's `upstream_log`, and our JSON local replies.
//!
//! The upstream role and the logger are loaded from a file in the Envoy pod (the same image mounted as a
//! volume: the `EnvoyProxy` of the README): Envoy Gateway serves the policy's module from its own HTTP
//! cache at a salted, unguessable path (`internal/wasm/httpserver.go`), which a patch cannot name. Their
//! `vm_id` is the one Envoy Gateway gives the policy's VM, `envoyextensionpolicy/<ns>/<name>/wasm/0`, so
//! that all three roles share shared data (the health memory, the limits' counters).
//!
//! **What the patches assume**, read in `envoyproxy/gateway` at commit `d32f282942` (v1.9.0-rc.0-375,
//! the commit of the vendored CRDs): `internal/gatewayapi/helpers.go` (`irListenerName`
//! `<ns>/<gateway>/<listener>`, `irRouteName` `httproute/<ns>/<route>/rule/<i>/match/<j>`,
//! `irRouteDestinationName` `httproute/<ns>/<route>/rule/<i>`, `irConfigName`), `internal/gatewayapi/
//! envoyextensionpolicy.go` (`irConfigNameForWasm`), `internal/xds/translator/translator.go` and
//! `listener.go` (listener, route configuration and virtual host names under the default scheme and
//! under the `XDSNameSchemeV2` runtime flag; a plain HTTP listener's HCM in `default_filter_chain`),
//! `wasm.go` (filter `envoy.filters.http.wasm/<ir name>`, `vm_id` = the IR name, disabled on the HCM and
//! enabled per route), `route.go` (`buildRetryPolicy`), `jsonpatch.go` and `internal/utils/jsonpatch/`
//! (patches by type and name; `jsonPath` resolved to JSON pointers, `path` appended; `add` creates
//! missing parents). Backend merging (`mergeBackends`) must be off for this Gateway, so that each rule
//! keeps its own cluster `httproute/<ns>/<route>/rule/0`.

use crate::envoy_config::{
    buffer_limit, health_logger_in, local_replies, route_action, vm_config_of, wasm_filter_in,
};
use crate::mesh::{annotate_module, documents, upstream_protocol_options, with_catalog};
use crate::yaml::{int, list, map, s, Value, With};
use llm_router::catalog::{Catalog, FieldError as ConfigError, Provider};
use llm_router::filter::DOWNSTREAM_ROOT_ID;

/// How Envoy Gateway names the xDS listener, route configuration and virtual host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XdsNameScheme {
    /// The default: `<ns>/<gateway>/<listener>` for the listener and its route configuration,
    /// `<ns>/<gateway>/<listener>/<host with _ for .>` for the virtual host.
    #[default]
    V1,
    /// The `XDSNameSchemeV2` runtime flag: `tcp-<port>`, `http-<port>`, `<host with _ for .>`.
    V2,
}

/// What the Envoy Gateway resources need besides the catalog.
#[derive(Debug, Clone)]
pub struct EnvoyGatewayOptions {
    /// The filter's image by digest: `oci://<registry>/<repository>@sha256:<64 hex>`.
    pub image: String,
    /// The namespace of every generated resource (the Gateway's).
    pub namespace: String,
    /// The router's Gateway (made here, with one listener, [`LISTENER`]).
    pub gateway_name: String,
    /// Its GatewayClass (Envoy Gateway's controller).
    pub gateway_class: String,
    /// The `EnvoyProxy` the Gateway is parameterised by (written by the operator: keys, module volume).
    pub envoy_proxy: String,
    /// The host clients call the router at.
    pub router_host: String,
    /// The Gateway listener's port.
    pub router_port: u16,
    /// The module as a file in the Envoy pod, for the roles the patches load.
    pub wasm_path: String,
    /// Envoy Gateway's xDS naming.
    pub xds_names: XdsNameScheme,
    /// Named in the header comment.
    pub source: String,
}

impl Default for EnvoyGatewayOptions {
    fn default() -> Self {
        EnvoyGatewayOptions {
            image: String::new(),
            namespace: "llm-router".into(),
            gateway_name: "llm-router".into(),
            gateway_class: "eg".into(),
            envoy_proxy: "llm-router".into(),
            router_host: "llm-router.internal".into(),
            router_port: 8088,
            wasm_path: "/var/lib/llm-router/plugin.wasm".into(),
            xds_names: XdsNameScheme::V1,
            source: "catalog.json".into(),
        }
    }
}

/// The Gateway listener's name (its `sectionName`).
pub const LISTENER: &str = "llm-router";
/// The router's HTTPRoute, and the EnvoyExtensionPolicy, BackendTrafficPolicy and EnvoyPatchPolicy.
pub const ROUTER: &str = "llm-router";

const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
const ROUTE_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const HCM: &str = "envoy.filters.network.http_connection_manager";

/// The xDS names the patches address, as Envoy Gateway makes them for the generated resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdsNames {
    pub listener: String,
    pub route_configuration: String,
    pub virtual_host: String,
    /// The router's route (rule 0, match 0 of its HTTPRoute).
    pub route: String,
    /// The router's rule's own cluster (the first provider's Backend; never chosen by the matcher).
    pub router_cluster: String,
    /// The policy's wasm HTTP filter.
    pub wasm_filter: String,
    /// The policy's VM (`vm_id`), shared by every role.
    pub vm_id: String,
}

/// The names under `opts`.
pub fn xds_names(opts: &EnvoyGatewayOptions) -> XdsNames {
    let ns = &opts.namespace;
    let host = opts.router_host.replace('.', "_");
    let ir_listener = format!("{ns}/{}/{LISTENER}", opts.gateway_name);
    let (listener, route_configuration, virtual_host) = match opts.xds_names {
        XdsNameScheme::V1 => (ir_listener.clone(), ir_listener.clone(), format!("{ir_listener}/{host}")),
        XdsNameScheme::V2 => {
            (format!("tcp-{}", opts.router_port), format!("http-{}", opts.router_port), host.clone())
        }
    };
    let vm_id = format!("envoyextensionpolicy/{ns}/{ROUTER}/wasm/0");
    XdsNames {
        listener,
        route_configuration,
        virtual_host,
        route: format!("httproute/{ns}/{ROUTER}/rule/0/match/0/{host}"),
        router_cluster: format!("httproute/{ns}/{ROUTER}/rule/0"),
        wasm_filter: format!("envoy.filters.http.wasm/{vm_id}"),
        vm_id,
    }
}

/// A provider's Backend and HTTPRoute: `llm-router-<name>`, `_` and `.` as `-` (what
/// `Catalog::provider_by_cluster` reads back from the cluster name).
pub fn provider_resource_name(p: &Provider) -> String {
    format!("llm-router-{}", p.name.replace(['_', '.'], "-"))
}

/// The cluster Envoy Gateway makes for a provider's HTTPRoute.
pub fn provider_cluster(p: &Provider, opts: &EnvoyGatewayOptions) -> String {
    format!("httproute/{}/{}/rule/0", opts.namespace, provider_resource_name(p))
}

/// The Envoy Gateway resources for `catalog_text`, as one multi-document YAML.
pub fn generate_envoy_gateway(catalog_text: &str, opts: &EnvoyGatewayOptions) -> Result<String, ConfigError> {
    let catalog = Catalog::parse(catalog_text.as_bytes(), None)?;
    let digest = image_digest(&opts.image)?;
    if catalog.routing.rate_limit_service.is_some() {
        return Err(ConfigError::new(
            "routing.rate_limit_service",
            "is not supported by --target envoy-gateway yet (generate the plain Envoy config for fleet-wide limits)",
        ));
    }
    for (i, p) in catalog.providers.iter().enumerate() {
        let name = provider_resource_name(p);
        if catalog.providers.iter().take(i).any(|o| provider_resource_name(o) == name) {
            return Err(ConfigError::new(
                &format!("providers[{i}].name"),
                format!("gives the same resource name as another provider ({name}): the health logger could not tell them apart"),
            ));
        }
        if name.ends_with('-') || name.len() > 63 {
            return Err(ConfigError::new(
                &format!("providers[{i}].name"),
                format!("gives {name}, not a valid Kubernetes resource name (at most 63 characters, ending in [a-z0-9])"),
            ));
        }
    }
    let catalog_json: serde_json::Value = serde_json::from_str(catalog_text)
        .map_err(|e| ConfigError::new("", format!("invalid catalog: {e}")))?;
    let mut docs = vec![gateway(opts)];
    for p in &catalog.providers {
        docs.push(backend(p, opts));
        docs.push(provider_route(p, opts));
    }
    docs.push(router_route(&catalog, opts));
    docs.push(extension_policy(&catalog, &catalog_json, &digest, opts)?);
    docs.push(traffic_policy(&catalog, opts));
    docs.push(patch_policy(&catalog, &catalog_json, opts));
    let header = format!(
        "# Envoy Gateway resources generated by `llm-router generate --target envoy-gateway` from {}. Do not\n\
         # edit: change the catalog and regenerate. Gateway {}/{} (class {}) on port {}, parameterised by the\n\
         # EnvoyProxy {} that gives Envoy the provider keys and mounts {} at {} (README, \"Deploying\").\n",
        opts.source,
        opts.namespace,
        opts.gateway_name,
        opts.gateway_class,
        opts.router_port,
        opts.envoy_proxy,
        opts.image,
        opts.wasm_path
    );
    documents(header, docs)
}

/// The manifest digest of `oci://<registry>/<repository>@sha256:<64 hex>`.
fn image_digest(image: &str) -> Result<String, ConfigError> {
    let digest = image.strip_prefix("oci://").and_then(|r| r.split_once("@sha256:")).map(|(_, d)| d);
    match digest {
        Some(d) if d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) => {
            Ok(d.to_string())
        }
        _ => Err(ConfigError::new(
            "--image",
            "must be oci://<registry>/<repository>@sha256:<64 hex digits> (scripts/package prints the digest)",
        )),
    }
}

fn resource(api_version: &str, kind: &str, name: &str, opts: &EnvoyGatewayOptions, spec: Value) -> Value {
    map([
        ("apiVersion", s(api_version)),
        ("kind", s(kind)),
        (
            "metadata",
            map([
                ("name", s(name)),
                ("namespace", s(opts.namespace.as_str())),
                ("labels", map([("app.kubernetes.io/part-of", s("llm-router"))])),
            ]),
        ),
        ("spec", spec),
    ])
}

/// The router's own Gateway: the patches change its listener (local replies, a `*` domain), and its
/// Envoy fleet holds the provider keys and the module.
fn gateway(opts: &EnvoyGatewayOptions) -> Value {
    let spec = map([
        ("gatewayClassName", s(opts.gateway_class.as_str())),
        (
            "infrastructure",
            map([(
                "parametersRef",
                map([
                    ("group", s("gateway.envoyproxy.io")),
                    ("kind", s("EnvoyProxy")),
                    ("name", s(opts.envoy_proxy.as_str())),
                ]),
            )]),
        ),
        (
            "listeners",
            list([map([
                ("name", s(LISTENER)),
                ("protocol", s("HTTP")),
                ("port", int(opts.router_port)),
                ("allowedRoutes", map([("namespaces", map([("from", s("Same"))]))])),
            ])]),
        ),
    ]);
    resource("gateway.networking.k8s.io/v1", "Gateway", &opts.gateway_name, opts, spec)
}

/// The provider's endpoint; TLS with SNI and the system's CAs (the provider's `ca_file` is not carried).
fn backend(p: &Provider, opts: &EnvoyGatewayOptions) -> Value {
    let ep = &p.endpoint;
    let endpoint = if ep.host.parse::<std::net::IpAddr>().is_ok() {
        map([("ip", map([("address", s(ep.host.as_str())), ("port", int(ep.port))]))])
    } else {
        map([("fqdn", map([("hostname", s(ep.host.as_str())), ("port", int(ep.port))]))])
    };
    let mut spec = map([("endpoints", list([endpoint]))]);
    if ep.tls {
        spec =
            spec.with("tls", map([("sni", s(ep.host.as_str())), ("wellKnownCACertificates", s("System"))]));
    }
    resource("gateway.envoyproxy.io/v1alpha1", "Backend", &provider_resource_name(p), opts, spec)
}

fn parent_and_host(opts: &EnvoyGatewayOptions) -> [(&'static str, Value); 2] {
    [
        ("parentRefs", list([map([("name", s(opts.gateway_name.as_str())), ("sectionName", s(LISTENER))])])),
        ("hostnames", list([s(opts.router_host.as_str())])),
    ]
}

fn backend_ref(p: &Provider) -> Value {
    map([
        ("group", s("gateway.envoyproxy.io")),
        ("kind", s("Backend")),
        ("name", s(provider_resource_name(p))),
        ("port", int(p.endpoint.port)),
    ])
}

/// A provider's own HTTPRoute: its one rule gives the provider a cluster of its own, and never matches a
/// request (a path regex `^$`: a request's path is never empty); the router's matcher sends attempts there.
fn provider_route(p: &Provider, opts: &EnvoyGatewayOptions) -> Value {
    let [parents, hosts] = parent_and_host(opts);
    let rule = map([
        ("matches", list([map([("path", map([("type", s("RegularExpression")), ("value", s("^$"))]))])])),
        ("backendRefs", list([backend_ref(p)])),
    ]);
    let spec = map([parents, hosts, ("rules", list([rule]))]);
    resource("gateway.networking.k8s.io/v1", "HTTPRoute", &provider_resource_name(p), opts, spec)
}

/// The router's HTTPRoute: every path of the router's host; the first provider as the rule's backend (the
/// patch replaces the cluster with the matcher); no whole-request timeout, so streams are not cut.
fn router_route(catalog: &Catalog, opts: &EnvoyGatewayOptions) -> Value {
    let [parents, hosts] = parent_and_host(opts);
    let mut rule =
        map([("matches", list([map([("path", map([("type", s("PathPrefix")), ("value", s("/"))]))])]))]);
    if let Some(first) = catalog.providers.first() {
        rule = rule.with("backendRefs", list([backend_ref(first)]));
    }
    let rule = rule.with("timeouts", map([("request", s("0s"))]));
    let spec = map([parents, hosts, ("rules", list([rule]))]);
    resource("gateway.networking.k8s.io/v1", "HTTPRoute", ROUTER, opts, spec)
}

fn route_ref(name: &str) -> Value {
    map([("group", s("gateway.networking.k8s.io")), ("kind", s("HTTPRoute")), ("name", s(name))])
}

/// The downstream role, from the image by digest.
fn extension_policy(
    catalog: &Catalog,
    catalog_json: &serde_json::Value,
    digest: &str,
    opts: &EnvoyGatewayOptions,
) -> Result<Value, ConfigError> {
    let config: Value =
        serde_norway::to_value(catalog_json).map_err(|e| ConfigError::new("", format!("catalog: {e}")))?;
    let mut wasm = map([
        ("name", s("llm_router")),
        ("rootID", s(DOWNSTREAM_ROOT_ID)),
        (
            "code",
            map([
                ("type", s("Image")),
                ("image", map([("url", s(opts.image.as_str())), ("sha256", s(digest))])),
                ("pullPolicy", s("IfNotPresent")),
            ]),
        ),
        ("config", config),
    ]);
    let keys: Vec<Value> = catalog.providers.iter().filter_map(|p| p.api_key_env.as_deref()).map(s).collect();
    if !keys.is_empty() {
        wasm = wasm.with("env", map([("hostKeys", list(keys))]));
    }
    let wasm = wasm.with("failOpen", Value::Bool(false));
    let spec = map([("targetRefs", list([route_ref(ROUTER)])), ("wasm", list([wasm]))]);
    Ok(resource("gateway.envoyproxy.io/v1alpha1", "EnvoyExtensionPolicy", ROUTER, opts, spec))
}

/// Envoy Gateway's duration for one of ours (`0.005s` → `5ms`).
fn duration_ms(seconds: &str) -> String {
    let ms = seconds.trim_end_matches('s').parse::<f64>().unwrap_or(0.0) * 1000.0;
    format!("{}ms", ms.round() as u64)
}

/// The retry policy of [`route_action`] as far as the API says it (all but `refresh_cluster_on_retry`),
/// and the circuit breaker's retries: under one provider's outage every request in flight may fall back.
fn traffic_policy(catalog: &Catalog, opts: &EnvoyGatewayOptions) -> Value {
    let action = route_action(catalog, &|p: &Provider, _| provider_cluster(p, opts));
    let retry = &action["retry_policy"];
    let triggers = retry["retry_on"].as_str().unwrap_or_default().split(',').map(s);
    let backoff = &retry["retry_back_off"];
    let spec = map([
        (
            "targetRefs",
            list(
                std::iter::once(route_ref(ROUTER))
                    .chain(catalog.providers.iter().map(|p| route_ref(&provider_resource_name(p)))),
            ),
        ),
        (
            "retry",
            map([
                ("numRetries", retry["num_retries"].clone()),
                (
                    "retryOn",
                    map([
                        ("triggers", list(triggers)),
                        ("httpStatusCodes", retry["retriable_status_codes"].clone()),
                    ]),
                ),
                (
                    "perRetry",
                    map([(
                        "backOff",
                        map([
                            (
                                "baseInterval",
                                s(duration_ms(backoff["base_interval"].as_str().unwrap_or("0s"))),
                            ),
                            ("maxInterval", s(duration_ms(backoff["max_interval"].as_str().unwrap_or("0s")))),
                        ]),
                    )]),
                ),
            ]),
        ),
        ("circuitBreaker", map([("maxParallelRetries", int(4096))])),
    ]);
    resource("gateway.envoyproxy.io/v1alpha1", "BackendTrafficPolicy", ROUTER, opts, spec)
}

/// One JSON patch of the EnvoyPatchPolicy.
fn json_patch(
    type_url: &str,
    name: &str,
    op: &str,
    json_path: Option<&str>,
    path: &str,
    value: Option<Value>,
) -> Value {
    let mut operation = map([("op", s(op))]);
    if let Some(jp) = json_path {
        operation = operation.with("jsonPath", s(jp));
    }
    operation = operation.with("path", s(path));
    if let Some(v) = value {
        operation = operation.with("value", v);
    }
    map([("type", s(type_url)), ("name", s(name)), ("operation", operation)])
}

/// JSONPath of the HCM in a plain HTTP listener, and of one of its HTTP filters.
fn hcm_path() -> String {
    format!("$.default_filter_chain.filters[?(@.name=='{HCM}')].typed_config")
}

fn http_filter_path(filter: &str) -> String {
    format!("{}.http_filters[?(@.name=='{filter}')].typed_config", hcm_path())
}

fn patch_policy(catalog: &Catalog, catalog_json: &serde_json::Value, opts: &EnvoyGatewayOptions) -> Value {
    let names = xds_names(opts);
    let vm = || vm_config_of(catalog, Some(&names.vm_id), &opts.wasm_path);
    let listener = |op: &str, jp: &str, path: &str, v: Value| {
        json_patch(LISTENER_TYPE, &names.listener, op, Some(jp), path, Some(v))
    };
    let wasm_config = format!("{}.config", http_filter_path(&names.wasm_filter));
    // The fields Envoy Gateway leaves out of the policy's PluginConfig, from ours.
    let ours = wasm_filter_in("llm_router", DOWNSTREAM_ROOT_ID, "", vm());
    let plugin = &ours["typed_config"]["config"];
    let mut patches = vec![
        listener("add", &wasm_config, "/allow_on_headers_stop_iteration", Value::Bool(true)),
        listener("add", &wasm_config, "/failure_policy", plugin["failure_policy"].clone()),
        listener("add", &wasm_config, "/reload_config", plugin["reload_config"].clone()),
        listener(
            "add",
            &http_filter_path("envoy.filters.http.router"),
            "/upstream_log/-",
            health_logger_in(vm(), &with_catalog(catalog_json, None)),
        ),
        listener("add", &hcm_path(), "/local_reply_config", local_replies(catalog)),
    ];
    let vhost = format!("$.virtual_hosts[?(@.name=='{}')]", names.virtual_host);
    let route = format!("{vhost}.routes[?(@.name=='{}')]", names.route);
    let rc = |op: &str, jp: &str, path: &str, v: Option<Value>| {
        json_patch(ROUTE_TYPE, &names.route_configuration, op, Some(jp), path, v)
    };
    let action = route_action(catalog, &|p: &Provider, _| provider_cluster(p, opts));
    patches.extend([
        rc("add", &vhost, "/include_request_attempt_count", Some(Value::Bool(true))),
        rc("add", &vhost, "/include_attempt_count_in_response", Some(Value::Bool(true))),
        // The filter sets each attempt's `:authority` to its provider's, and Envoy then picks the route
        // again: on the router's own listener any authority must find this virtual host.
        rc("add", &vhost, "/domains/-", Some(s("*"))),
        rc("add", &route, "/request_body_buffer_limit", Some(int(buffer_limit(catalog)))),
        // The whole action in one operation: Envoy Gateway validates the route after each patch and
        // skips one that fails, and a route has exactly one cluster specifier (removing the cluster
        // first, or adding the matcher beside it, would each be skipped).
        rc("replace", &route, "/route", Some(action)),
    ]);
    for p in &catalog.providers {
        let options = upstream_protocol_options(catalog_json, &p.name, vm());
        patches.push(json_patch(
            CLUSTER_TYPE,
            &provider_cluster(p, opts),
            "add",
            None,
            "/typed_extension_protocol_options/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            Some(options),
        ));
    }
    let spec = map([
        (
            "targetRef",
            map([
                ("group", s("gateway.networking.k8s.io")),
                ("kind", s("Gateway")),
                ("name", s(opts.gateway_name.as_str())),
            ]),
        ),
        ("type", s("JSONPatch")),
        ("jsonPatches", Value::Sequence(patches)),
    ]);
    let policy = resource("gateway.envoyproxy.io/v1alpha1", "EnvoyPatchPolicy", ROUTER, opts, spec);
    annotate_module(policy, &opts.image, &opts.wasm_path)
}
