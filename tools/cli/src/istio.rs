//! Istio resources from the catalog, for an egress gateway (the natural home of provider keys and egress
//! policy): a `ServiceEntry` and `DestinationRule` per provider (TLS origination with SNI and SAN
//! checks), a `Gateway` and `VirtualService` giving the router a host on its own gateway port, and one
//! `EnvoyFilter` for what those APIs cannot express:
//!
//! - the downstream role before the router on that port's listener (`HTTP_FILTER` INSERT_BEFORE). Not a
//!   `WasmPlugin`: the role holds a request's headers until its body is routed, which Envoy allows only
//!   with the plugin's `allow_on_headers_stop_iteration` (without it, verified on Envoy 1.40, the body
//!   never reaches the filter and the request hangs), and WasmPlugin has no field for it;
//! - the route's retry policy, attempt → slot → cluster matcher and `refresh_cluster_on_retry`
//!   (`HTTP_ROUTE` MERGE), and the attempt-count headers (`VIRTUAL_HOST` MERGE);
//! - the upstream role on each provider cluster `outbound|<port>||<host>` (`CLUSTER` MERGE of its
//!   `typed_extension_protocol_options`: Istio has no upstream-filter patch, istio/istio#57342);
//! - the health logger as the router's `upstream_log` (`HTTP_FILTER` MERGE) and our JSON local replies
//!   (`NETWORK_FILTER` MERGE).
//!
//! Every role loads the module from a file in the gateway pod: the filter's OCI image mounted as an
//! image volume (README, "Deploying"). The VMs' `vm_id` is blank, so Envoy names each by the module's
//! hash and the roles share shared data (the health memory, the limits' counters); the upstream role and
//! the logger carry the catalog themselves, in case they run in another VM than the downstream role.

use crate::envoy_config::{
    buffer_limit, health_logger_in, local_replies, route_action, typed, vm_config_of, wasm_filter_in,
};
use crate::mesh::{annotate_module, documents, upstream_protocol_options, with_catalog};
use crate::yaml::{int, list, map, s, Value, With};
use llm_router::catalog::{Catalog, FieldError as ConfigError, Provider};
use llm_router::filter::DOWNSTREAM_ROOT_ID;

/// What the Istio resources need besides the catalog.
#[derive(Debug, Clone)]
pub struct IstioOptions {
    /// The filter's image by digest: `oci://<registry>/<repository>@sha256:<64 hex>` (`scripts/package`
    /// prints the digest).
    pub image: String,
    /// Where the egress gateway runs (default `istio-system`).
    pub namespace: String,
    /// The label that selects the egress gateway's pods (default `istio: egressgateway`).
    pub gateway_label: (String, String),
    /// The egress gateway's Service, in `namespace` (default `istio-egressgateway`).
    pub gateway_service: String,
    /// The host clients call the router at (default `llm-router.internal`).
    pub router_host: String,
    /// The gateway port for the router alone (default 8088; add it to the gateway's Service, with the
    /// same target port): the downstream role sits on that port's listener, so the gateway's other
    /// egress traffic never meets it.
    pub router_port: u16,
    /// The module as a file in the gateway pod, for the roles the EnvoyFilter loads.
    pub wasm_path: String,
    /// Named in the header comment.
    pub source: String,
}

impl Default for IstioOptions {
    fn default() -> Self {
        IstioOptions {
            image: String::new(),
            namespace: "istio-system".into(),
            gateway_label: ("istio".into(), "egressgateway".into()),
            gateway_service: "istio-egressgateway".into(),
            router_host: "llm-router.internal".into(),
            router_port: 8088,
            wasm_path: "/var/lib/llm-router/plugin.wasm".into(),
            source: "catalog.json".into(),
        }
    }
}

/// The VirtualService route the EnvoyFilter patches (Istio names the Envoy route after it).
pub const ROUTE_NAME: &str = "llm-router";

/// The Istio resources for `catalog_text`, as one multi-document YAML.
pub fn generate_istio(catalog_text: &str, opts: &IstioOptions) -> Result<String, ConfigError> {
    let catalog = Catalog::parse(catalog_text.as_bytes(), None)?;
    check_image(&opts.image)?;
    if catalog.routing.rate_limit_service.is_some() {
        return Err(ConfigError::new(
            "routing.rate_limit_service",
            "is not supported by --target istio yet (generate the plain Envoy config for fleet-wide limits)",
        ));
    }
    for (i, p) in catalog.providers.iter().enumerate() {
        if catalog.providers.iter().take(i).any(|o| o.istio_host() == p.istio_host()) {
            return Err(ConfigError::new(
                &format!("providers[{i}].name"),
                format!("gives the same mesh host as another provider ({}): rename one", p.istio_host()),
            ));
        }
    }
    let catalog_json: serde_json::Value = serde_json::from_str(catalog_text)
        .map_err(|e| ConfigError::new("", format!("invalid catalog: {e}")))?;
    let mut docs = Vec::new();
    for p in &catalog.providers {
        docs.push(service_entry(p, opts));
        docs.push(destination_rule(p, opts));
    }
    docs.extend(router_host(&catalog, opts));
    docs.push(envoy_filter(&catalog, catalog_text, &catalog_json, opts));
    let header = format!(
        "# Istio resources generated by `llm-router generate --target istio` from {}. Do not edit: change the\n\
         # catalog and regenerate. For an egress gateway (label {}={}) in namespace {} that exposes port {}\n\
         # and mounts {} at {} (README, \"Deploying\").\n",
        opts.source,
        opts.gateway_label.0,
        opts.gateway_label.1,
        opts.namespace,
        opts.router_port,
        opts.image,
        opts.wasm_path
    );
    documents(header, docs)
}

fn check_image(image: &str) -> Result<(), ConfigError> {
    let digest = image.strip_prefix("oci://").and_then(|r| r.split_once("@sha256:")).map(|(_, d)| d);
    match digest {
        Some(d) if d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) => Ok(()),
        _ => Err(ConfigError::new(
            "--image",
            "must be oci://<registry>/<repository>@sha256:<64 hex digits> (scripts/package prints the digest)",
        )),
    }
}

fn metadata(name: &str, opts: &IstioOptions) -> Value {
    map([
        ("name", s(name)),
        ("namespace", s(opts.namespace.as_str())),
        ("labels", map([("app.kubernetes.io/part-of", s("llm-router"))])),
    ])
}

fn resource(api_version: &str, kind: &str, name: &str, opts: &IstioOptions, spec: Value) -> Value {
    map([
        ("apiVersion", s(api_version)),
        ("kind", s(kind)),
        ("metadata", metadata(name, opts)),
        ("spec", spec),
    ])
}

fn selector(opts: &IstioOptions) -> Value {
    map([(opts.gateway_label.0.as_str(), s(opts.gateway_label.1.as_str()))])
}

fn provider_resource_name(p: &Provider) -> String {
    format!("llm-router-{}", p.name.replace(['_', '.'], "-"))
}

fn port_name(p: &Provider) -> String {
    format!("{}-{}", if p.endpoint.tls { "https" } else { "http" }, p.endpoint.port)
}

/// The provider under its mesh-private host, its one endpoint the real host, seen only in the
/// gateway's namespace: the gateway's other traffic to that provider (and every other pod of the mesh)
/// keeps its own ServiceEntries, clusters and policy, and never meets the router's filters.
fn service_entry(p: &Provider, opts: &IstioOptions) -> Value {
    let ep = &p.endpoint;
    let spec = map([
        ("hosts", list([s(p.istio_host())])),
        ("exportTo", list([s(".")])),
        ("location", s("MESH_EXTERNAL")),
        ("resolution", s("DNS")),
        ("endpoints", list([map([("address", s(ep.host.as_str()))])])),
        (
            "ports",
            list([map([
                ("number", int(ep.port)),
                ("name", s(port_name(p))),
                ("protocol", s(if ep.tls { "HTTPS" } else { "HTTP" })),
            ])]),
        ),
    ]);
    resource("networking.istio.io/v1", "ServiceEntry", &provider_resource_name(p), opts, spec)
}

/// TLS origination at the gateway to the real host (SNI and the certificate's name checked, against the
/// provider's `ca_file` where it has one, else the system's CAs), and retries up to Envoy's circuit
/// breaker: under one provider's outage every request in flight may fall back at once.
fn destination_rule(p: &Provider, opts: &IstioOptions) -> Value {
    let ep = &p.endpoint;
    let mut port = map([("port", map([("number", int(ep.port))]))]);
    if ep.tls {
        let mut tls = map([
            ("mode", s("SIMPLE")),
            ("sni", s(ep.host.as_str())),
            ("subjectAltNames", list([s(ep.host.as_str())])),
        ]);
        if let Some(ca) = &p.ca_file {
            tls = tls.with("caCertificates", s(ca.as_str()));
        }
        port = port.with("tls", tls);
    }
    let spec = map([
        ("host", s(p.istio_host())),
        ("exportTo", list([s(".")])),
        (
            "trafficPolicy",
            map([
                ("connectionPool", map([("http", map([("maxRetries", int(4096))]))])),
                ("portLevelSettings", list([port])),
            ]),
        ),
    ]);
    resource("networking.istio.io/v1", "DestinationRule", &provider_resource_name(p), opts, spec)
}

/// The router's own host: a ServiceEntry so the mesh knows the name; a Gateway on the router's port of
/// the egress gateway, mutual TLS with the mesh's identities (clients' keys never cross the cluster in
/// clear); a DestinationRule making the clients' sidecars speak it; and a VirtualService sending the
/// mesh's requests to the gateway and the gateway's to the first provider (a placeholder the
/// EnvoyFilter's route patch replaces with the matcher).
fn router_host(catalog: &Catalog, opts: &IstioOptions) -> Vec<Value> {
    let host = opts.router_host.as_str();
    let port = i64::from(opts.router_port);
    let http_port = || map([("number", int(port)), ("name", s("http-llm-router")), ("protocol", s("HTTP"))]);
    let entry = map([
        ("hosts", list([s(host)])),
        ("location", s("MESH_EXTERNAL")),
        ("resolution", s("DNS")),
        ("ports", list([http_port()])),
    ]);
    let gateway = map([
        ("selector", selector(opts)),
        (
            "servers",
            list([map([
                (
                    "port",
                    map([("number", int(port)), ("name", s("https-llm-router")), ("protocol", s("HTTPS"))]),
                ),
                ("hosts", list([s(host)])),
                ("tls", map([("mode", s("ISTIO_MUTUAL"))])),
            ])]),
        ),
    ]);
    let gateway_service = format!("{}.{}.svc.cluster.local", opts.gateway_service, opts.namespace);
    let to_gateway = map([
        ("host", s(gateway_service.as_str())),
        (
            "trafficPolicy",
            map([(
                "portLevelSettings",
                list([map([
                    ("port", map([("number", int(port))])),
                    ("tls", map([("mode", s("ISTIO_MUTUAL")), ("sni", s(host))])),
                ])]),
            )]),
        ),
    ]);
    let first = catalog.providers.first().map(|p| (p.istio_host(), p.endpoint.port));
    let (first_host, first_port) = first.unwrap_or_default();
    let virtual_service = map([
        ("hosts", list([s(host)])),
        ("gateways", list([s("mesh"), s("llm-router")])),
        (
            "http",
            list([
                map([
                    ("name", s("to-gateway")),
                    ("match", list([map([("gateways", list([s("mesh")]))])])),
                    (
                        "route",
                        list([map([(
                            "destination",
                            map([("host", s(gateway_service)), ("port", map([("number", int(port))]))]),
                        )])]),
                    ),
                ]),
                map([
                    ("name", s(ROUTE_NAME)),
                    ("match", list([map([("gateways", list([s("llm-router")]))])])),
                    (
                        "route",
                        list([map([(
                            "destination",
                            map([("host", s(first_host)), ("port", map([("number", int(first_port))]))]),
                        )])]),
                    ),
                ]),
            ]),
        ),
    ]);
    vec![
        resource("networking.istio.io/v1", "ServiceEntry", "llm-router", opts, entry),
        resource("networking.istio.io/v1", "Gateway", "llm-router", opts, gateway),
        resource("networking.istio.io/v1", "DestinationRule", "llm-router-gateway", opts, to_gateway),
        resource("networking.istio.io/v1", "VirtualService", "llm-router", opts, virtual_service),
    ]
}

/// The gateway's virtual host for the router, as Istio names it: `<host>:<port>`.
pub fn virtual_host_name(opts: &IstioOptions) -> String {
    format!("{}:{}", opts.router_host, opts.router_port)
}

fn envoy_filter(
    catalog: &Catalog,
    catalog_text: &str,
    catalog_json: &serde_json::Value,
    opts: &IstioOptions,
) -> Value {
    let vm = || vm_config_of(catalog, None, &opts.wasm_path);
    let gateway = |m: Value| map([("context", s("GATEWAY"))]).with_all(m);
    // Only the router's own listener (Istio names a gateway's listeners by port).
    let hcm_match = |sub: Option<&str>| {
        let mut filter = map([("name", s("envoy.filters.network.http_connection_manager"))]);
        if let Some(sub) = sub {
            filter = filter.with("subFilter", map([("name", s(sub))]));
        }
        gateway(map([(
            "listener",
            map([("portNumber", int(opts.router_port)), ("filterChain", map([("filter", filter)]))]),
        )]))
    };
    let vhost = virtual_host_name(opts);
    let istio_cluster = |p: &Provider, _k: usize| p.istio_cluster_name();
    let mut patches = vec![
        map([
            ("applyTo", s("HTTP_FILTER")),
            ("match", hcm_match(Some("envoy.filters.http.router"))),
            (
                "patch",
                map([
                    ("operation", s("INSERT_BEFORE")),
                    ("value", wasm_filter_in("llm_router", DOWNSTREAM_ROOT_ID, catalog_text, vm())),
                ]),
            ),
        ]),
        patch(
            "VIRTUAL_HOST",
            gateway(map([("routeConfiguration", map([("vhost", map([("name", s(vhost.as_str()))]))]))])),
            map([
                ("include_request_attempt_count", Value::Bool(true)),
                ("include_attempt_count_in_response", Value::Bool(true)),
                // The filter sets each attempt's `:authority` to its provider's, and Envoy then picks the
                // route again: on the router's own port any authority must find this virtual host
                // (appended to Istio's domains).
                ("domains", list([s("*")])),
            ]),
        ),
        patch(
            "HTTP_ROUTE",
            gateway(map([(
                "routeConfiguration",
                map([(
                    "vhost",
                    map([("name", s(vhost.as_str())), ("route", map([("name", s(ROUTE_NAME))]))]),
                )]),
            )])),
            map([
                ("request_body_buffer_limit", int(buffer_limit(catalog))),
                ("route", route_action(catalog, &istio_cluster)),
            ]),
        ),
        patch(
            "HTTP_FILTER",
            hcm_match(Some("envoy.filters.http.router")),
            map([(
                "typed_config",
                typed("envoy.extensions.filters.http.router.v3.Router")
                    .with("upstream_log", list([health_logger_in(vm(), &with_catalog(catalog_json, None))])),
            )]),
        ),
        patch(
            "NETWORK_FILTER",
            hcm_match(None),
            map([(
                "typed_config",
                typed("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager")
                    .with("local_reply_config", local_replies(catalog)),
            )]),
        ),
    ];
    for p in &catalog.providers {
        let options = upstream_protocol_options(catalog_json, &p.name, vm());
        patches.push(patch(
            "CLUSTER",
            gateway(map([(
                "cluster",
                map([("service", s(p.istio_host())), ("portNumber", int(p.endpoint.port))]),
            )])),
            map([(
                "typed_extension_protocol_options",
                map([("envoy.extensions.upstreams.http.v3.HttpProtocolOptions", options)]),
            )]),
        ));
    }
    let spec = map([
        ("workloadSelector", map([("labels", selector(opts))])),
        ("configPatches", Value::Sequence(patches)),
    ]);
    let filter = resource("networking.istio.io/v1alpha3", "EnvoyFilter", "llm-router", opts, spec);
    annotate_module(filter, &opts.image, &opts.wasm_path)
}

fn patch(apply_to: &str, match_: Value, value: Value) -> Value {
    map([
        ("applyTo", s(apply_to)),
        ("match", match_),
        ("patch", map([("operation", s("MERGE")), ("value", value)])),
    ])
}

/// Merging one mapping's entries into another.
trait WithAll {
    fn with_all(self, other: Value) -> Value;
}

impl WithAll for Value {
    fn with_all(mut self, other: Value) -> Value {
        if let (Value::Mapping(m), Value::Mapping(o)) = (&mut self, other) {
            m.extend(o);
        }
        self
    }
}
