//! `llm-router generate --target envoy-gateway`: every resource is valid against Envoy Gateway's and the
//! Gateway API's CRDs (vendored in tests/crds/), and the EnvoyPatchPolicy's JSON patches, applied to xDS
//! shaped like Envoy Gateway's for the generated resources (tests/fixtures/envoy-gateway-xds.yaml, with
//! the EnvoyExtensionPolicy's wasm filter as Envoy Gateway builds it, its module fetched over HTTP from a
//! `wasm_cluster`), give a config Envoy 1.40 accepts and that routes with fallback through a real Envoy.

mod common;

use common::envoy::wasm_path;
use common::json_patch::{self, Resource};
use common::router::{catalog, endpoint, provider};
use common::{crd, mesh};
use llm_router::catalog::Catalog;
use llm_router_cli::envoy_gateway::{
    generate_envoy_gateway, provider_cluster, xds_names, EnvoyGatewayOptions, XdsNameScheme, XdsNames,
};
use llm_router_testkit::mock::MockProvider;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

const IMAGE: &str = "oci://registry.example/llm-router@sha256:7842cfeb1536b33553498f17ad2a803fddeae644a22299557d4452bb75382148";
const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
const ROUTE_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

fn options(source: &str) -> EnvoyGatewayOptions {
    EnvoyGatewayOptions { image: IMAGE.into(), source: source.into(), ..EnvoyGatewayOptions::default() }
}

fn repo(path: &str) -> String {
    std::fs::read_to_string(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join(path)).unwrap()
}

fn kind<'a>(manifests: &'a [Value], kind: &str) -> Vec<&'a Value> {
    manifests.iter().filter(|m| m["kind"] == kind).collect()
}

#[test]
fn every_generated_resource_is_valid_against_the_crds() {
    for catalog in ["envoy/example-catalog.json", "envoy/demo-catalog.json"] {
        let text = repo(catalog);
        let yaml = generate_envoy_gateway(&text, &options(catalog)).unwrap();
        let n = crd::validate_all(&yaml).unwrap_or_else(|e| panic!("{catalog}:\n{e}"));
        let manifests = crd::manifests(&yaml).unwrap();
        let providers = Catalog::parse(text.as_bytes(), None).unwrap().providers.len();
        assert_eq!(kind(&manifests, "Gateway").len(), 1);
        assert_eq!(kind(&manifests, "Backend").len(), providers, "{catalog}: a Backend per provider");
        assert_eq!(
            kind(&manifests, "HTTPRoute").len(),
            providers + 1,
            "{catalog}: the router's and one per provider"
        );
        for k in ["EnvoyExtensionPolicy", "BackendTrafficPolicy", "EnvoyPatchPolicy"] {
            assert_eq!(kind(&manifests, k).len(), 1, "{catalog}: {k}");
        }
        let eep = kind(&manifests, "EnvoyExtensionPolicy")[0];
        let wasm = &eep["spec"]["wasm"][0];
        assert_eq!(wasm["code"]["type"], "Image");
        assert_eq!(wasm["code"]["image"]["url"], IMAGE);
        assert_eq!(wasm["code"]["image"]["sha256"].as_str(), IMAGE.split_once("@sha256:").map(|(_, d)| d));
        assert_eq!(wasm["failOpen"], false);
        assert_eq!(wasm["config"], serde_json::from_str::<Value>(&text).unwrap(), "config: the catalog");
        let unchecked = crd::unevaluated_rules_all(&yaml).unwrap();
        eprintln!("{catalog}: {n} resources valid; CEL rules not evaluated: {}", unchecked.len());
    }
}

#[test]
fn a_bad_image_reference_or_two_providers_with_one_resource_name_are_refused() {
    let text = repo("envoy/example-catalog.json");
    for image in ["", "registry.example/llm-router:latest", "oci://registry.example/llm-router@sha256:abc"] {
        let e = generate_envoy_gateway(&text, &EnvoyGatewayOptions { image: image.into(), ..options("x") })
            .unwrap_err();
        assert!(e.to_string().contains("--image"), "{image}: {e}");
    }
    // `x_y` and `x.y` would both be `llm-router-x-y`.
    let mut twins = catalog(
        vec![provider("x_y", 1001), provider("x.y", 1002)],
        vec![json!({"id": "t/m", "endpoints": [endpoint("x_y", "m", 1.0), endpoint("x.y", "m", 2.0)]})],
        json!({}),
    );
    twins["providers"][1]["api_key_env"] = json!("XY_API_KEY");
    let e = generate_envoy_gateway(&twins.to_string(), &options("x")).unwrap_err();
    assert!(e.to_string().starts_with("providers[1].name:"), "{e}");
    twins["providers"][1]["name"] = json!("x-");
    twins["models"][0]["endpoints"][1]["provider"] = json!("x-");
    let e = generate_envoy_gateway(&twins.to_string(), &options("x")).unwrap_err();
    assert!(e.to_string().starts_with("providers[1].name:"), "{e}");
}

#[test]
fn the_xds_names_follow_envoy_gateways_two_schemes() {
    let v1 = xds_names(&options("x"));
    assert_eq!(v1.listener, "llm-router/llm-router/llm-router");
    assert_eq!(v1.route_configuration, "llm-router/llm-router/llm-router");
    assert_eq!(v1.virtual_host, "llm-router/llm-router/llm-router/llm-router_internal");
    assert_eq!(v1.route, "httproute/llm-router/llm-router/rule/0/match/0/llm-router_internal");
    assert_eq!(v1.wasm_filter, "envoy.filters.http.wasm/envoyextensionpolicy/llm-router/llm-router/wasm/0");
    let v2 = xds_names(&EnvoyGatewayOptions { xds_names: XdsNameScheme::V2, ..options("x") });
    assert_eq!((v2.listener.as_str(), v2.route_configuration.as_str()), ("tcp-8088", "http-8088"));
    assert_eq!(v2.virtual_host, "llm-router_internal");
    assert_eq!(v2.route, v1.route);
}

#[test]
fn the_json_patch_applier_follows_envoy_gateways_semantics() {
    let mut doc = json!({"name": "rc", "virtual_hosts": [
        {"name": "a", "routes": [{"name": "x"}]},
        {"name": "b/c", "routes": [{"name": "y"}, {"name": "z"}]}]});
    assert_eq!(
        json_patch::select(&doc, "$.virtual_hosts[?(@.name=='b/c')].routes[?(@.name=='z')]").unwrap(),
        ["/virtual_hosts/1/routes/1"]
    );
    assert_eq!(json_patch::select(&doc, "$.virtual_hosts[*].routes[0]").unwrap().len(), 2);
    assert!(json_patch::select(&doc, "$").is_err());
    let op = json!({"op": "add", "jsonPath": "$.virtual_hosts[?(@.name=='a')]", "path": "/domains/-", "value": "*"});
    json_patch::apply_operation(&mut doc, &op).unwrap();
    assert_eq!(doc["virtual_hosts"][0]["domains"], json!(["*"]), "add creates the missing array");
    let op = json!({"op": "add", "path": "/typed_extension_protocol_options/k.v3.X", "value": {"a": 1}});
    json_patch::apply_operation(&mut doc, &op).unwrap();
    assert_eq!(doc["typed_extension_protocol_options"]["k.v3.X"]["a"], 1, "add creates the missing object");
    let op = json!({"op": "remove", "jsonPath": "$.virtual_hosts[?(@.name=='b/c')].routes[?(@.name=='y')]"});
    json_patch::apply_operation(&mut doc, &op).unwrap();
    assert_eq!(doc["virtual_hosts"][1]["routes"], json!([{"name": "z"}]));
    let none = json!({"op": "add", "jsonPath": "$.virtual_hosts[?(@.name=='q')]", "path": "/x", "value": 1});
    assert!(json_patch::apply_operation(&mut doc, &none).is_err(), "a jsonPath that selects nothing");
    assert!(json_patch::apply_operation(&mut doc, &json!({"op": "remove", "path": "/no/such"})).is_err());
    assert!(
        json_patch::apply_operation(&mut doc, &json!({"op": "replace", "path": "/no", "value": 1})).is_err()
    );
}

/// Serves the module once per request at any path, over plain HTTP: Envoy Gateway's wasm cache as
/// Envoy sees it (a `remote` code source on `wasm_cluster`).
fn serve_module(module: Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) && line != "\r\n" {
                line.clear();
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/wasm\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                module.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&module);
        }
    });
    port
}

fn sha256_hex(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

/// Replaces every string that is exactly `@NAME@` with its value.
fn fill(v: &mut Value, values: &[(&str, Value)]) {
    match v {
        Value::String(s) => {
            if let Some((_, new)) = values.iter().find(|(k, _)| s == &format!("@{k}@")) {
                *v = new.clone();
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| fill(x, values)),
        Value::Object(m) => m.values_mut().for_each(|x| fill(x, values)),
        _ => {}
    }
}

/// Envoy Gateway's retry policy for the BackendTrafficPolicy's `retry` (`buildRetryPolicy`).
fn retry_policy(btp: &Value) -> Value {
    let r = &btp["spec"]["retry"];
    let triggers: Vec<&str> =
        r["retryOn"]["triggers"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    let ms = |d: &Value| {
        format!("{}s", d.as_str().unwrap().trim_end_matches("ms").parse::<f64>().unwrap() / 1000.0)
    };
    json!({
        "retry_on": triggers.join(","),
        "retriable_status_codes": r["retryOn"]["httpStatusCodes"],
        "num_retries": r["numRetries"],
        "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}}],
        "host_selection_retry_max_attempts": "5",
        "retry_back_off": {"base_interval": ms(&r["perRetry"]["backOff"]["baseInterval"]),
                           "max_interval": ms(&r["perRetry"]["backOff"]["maxInterval"])},
    })
}

/// A cluster as Envoy Gateway makes one for an HTTPRoute rule (its endpoints inline here instead of EDS),
/// with the BackendTrafficPolicy's circuit breaker.
fn rule_cluster(name: &str, port: u16, btp: &Value) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "10s",
        "per_connection_buffer_limit_bytes": 32768,
        "circuit_breakers": {"thresholds": [{"max_retries": btp["spec"]["circuitBreaker"]["maxParallelRetries"]}]},
        "ignore_health_on_host_removal": true,
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]},
    })
}

/// The fixture's resources for the generated manifests, as Envoy Gateway would give them to Envoy.
fn envoy_gateway_xds(
    manifests: &[Value],
    names: &XdsNames,
    opts: &EnvoyGatewayOptions,
    c: &Catalog,
    mocks: &[&MockProvider],
    wasm_server_port: u16,
    wasm_sha256: &str,
) -> Vec<Resource> {
    let eep = kind(manifests, "EnvoyExtensionPolicy")[0];
    let btp = kind(manifests, "BackendTrafficPolicy")[0];
    let wasm = &eep["spec"]["wasm"][0];
    let text = include_str!("fixtures/envoy-gateway-xds.yaml")
        .replace("@LISTENER@", &names.listener)
        .replace("@VHOST@", &names.virtual_host)
        .replace("@HOST@", &opts.router_host)
        .replace("@ROUTER_CLUSTER@", &names.router_cluster)
        .replace("@ROUTE@", &names.route)
        .replace("@WASM_FILTER@", &names.wasm_filter)
        .replace("@VM_ID@", &names.vm_id)
        .replace("@WASM_NAME@", wasm["name"].as_str().unwrap())
        .replace("@ROOT_ID@", wasm["rootID"].as_str().unwrap())
        .replace("@WASM_URL@", &format!("http://127.0.0.1:{wasm_server_port}/c2FsdGVkLXBhdGg=.wasm"))
        .replace("@WASM_SHA256@", wasm_sha256)
        .replace("@PORT@", &opts.router_port.to_string());
    let mut doc = crd::documents(&text).unwrap().remove(0);
    fill(
        &mut doc,
        &[
            // Envoy Gateway passes the policy's `config` as the JSON the API server stored.
            ("CONFIG", Value::String(wasm["config"].to_string())),
            ("HOST_KEYS", wasm["env"]["hostKeys"].clone()),
            ("RETRY_POLICY", retry_policy(btp)),
            ("WASM_SERVER_PORT", json!(wasm_server_port)),
        ],
    );
    // The providers' HTTPRoutes: one route each on the router's virtual host (a path regex that never
    // matches), one cluster each; the router's rule's own cluster (the first provider's Backend).
    let host = opts.router_host.replace('.', "_");
    let mut clusters = doc["clusters"].as_array().unwrap().clone();
    let vhost = &mut doc["routes"][0]["virtual_hosts"][0]["routes"];
    clusters.push(rule_cluster(&names.router_cluster, mocks[0].port(), btp));
    for (p, mock) in c.providers.iter().zip(mocks) {
        let cluster = provider_cluster(p, opts);
        vhost.as_array_mut().unwrap().push(json!({
            "name": format!("{}/match/0/{host}", cluster),
            "match": {"safe_regex": {"regex": "^$"}},
            "route": {"cluster": cluster, "retry_policy": retry_policy(btp), "upgrade_configs": [{"upgrade_type": "websocket"}]},
        }));
        clusters.push(rule_cluster(&cluster, mock.port(), btp));
    }
    let mut out = Vec::new();
    for (key, type_url) in [("listeners", LISTENER_TYPE), ("routes", ROUTE_TYPE)] {
        for v in doc[key].as_array().unwrap() {
            out.push(Resource { type_url: type_url.into(), value: v.clone() });
        }
    }
    out.extend(clusters.into_iter().map(|v| Resource { type_url: CLUSTER_TYPE.into(), value: v }));
    out
}

/// A bootstrap from the resources: the route configuration inline where the HCM names it by RDS.
fn bootstrap(resources: &[Resource]) -> Value {
    let of = |t: &'static str| resources.iter().filter(move |r| r.type_url == t).map(|r| r.value.clone());
    let routes: Vec<Value> = of(ROUTE_TYPE).collect();
    let listeners: Vec<Value> = of(LISTENER_TYPE)
        .map(|mut l| {
            l["address"]["socket_address"] = json!({"address": "127.0.0.1", "port_value": 0});
            for f in l["default_filter_chain"]["filters"].as_array_mut().unwrap() {
                let hcm = &mut f["typed_config"];
                let name = hcm["rds"]["route_config_name"].clone();
                let rc = routes.iter().find(|r| r["name"] == name).unwrap().clone();
                hcm.as_object_mut().unwrap().remove("rds");
                hcm["route_config"] = rc;
            }
            l
        })
        .collect();
    json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"listeners": listeners, "clusters": of(CLUSTER_TYPE).collect::<Vec<_>>()},
    })
}

#[test]
fn the_patch_policy_on_envoy_gateways_xds_is_valid_and_falls_back_through_envoy() {
    let (first, second, c) = mesh::first_down_second_up();
    let text = serde_json::to_string_pretty(&c).unwrap();
    let parsed = Catalog::parse(text.as_bytes(), None).unwrap();
    let wasm = wasm_path();
    let opts = EnvoyGatewayOptions { wasm_path: wasm.display().to_string(), ..options("test") };
    let yaml = generate_envoy_gateway(&text, &opts).unwrap();
    crd::validate_all(&yaml).unwrap();
    let manifests = crd::manifests(&yaml).unwrap();
    let names = xds_names(&opts);
    let server = serve_module(std::fs::read(&wasm).unwrap());
    let mut resources =
        envoy_gateway_xds(&manifests, &names, &opts, &parsed, &[&first, &second], server, &sha256_hex(&wasm));
    let policy = kind(&manifests, "EnvoyPatchPolicy")[0];
    let n = json_patch::apply_policy(&mut resources, policy).unwrap();
    assert!(n > 10, "{n} patches");
    let config = bootstrap(&resources);
    let envoy = mesh::validate_and_start(&config, "envoy-gateway");
    mesh::falls_back_then_skips_the_failed_provider(&envoy, &opts.router_host, &first, &second);
}
