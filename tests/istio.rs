//! `llm-router generate --target istio`: every resource is valid against Istio's CRDs (vendored in
//! tests/crds/), and the EnvoyFilter's patches, applied to a config shaped like an Istio egress
//! gateway's (tests/fixtures/istio-egress-gateway.yaml), give a config Envoy 1.40 accepts and that routes
//! with fallback through a real Envoy.

mod common;

use common::envoy::wasm_path;
use common::{crd, envoy_filter, mesh};
use llm_router_cli::istio::{generate_istio, virtual_host_name, IstioOptions};
use serde_json::{json, Value};
use std::path::Path;

const IMAGE: &str = "oci://registry.example/llm-router@sha256:7842cfeb1536b33553498f17ad2a803fddeae644a22299557d4452bb75382148";

fn options(source: &str) -> IstioOptions {
    IstioOptions { image: IMAGE.into(), source: source.into(), ..IstioOptions::default() }
}

fn repo(path: &str) -> String {
    std::fs::read_to_string(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join(path)).unwrap()
}

#[test]
fn every_generated_resource_is_valid_against_istios_crds() {
    for catalog in ["envoy/example-catalog.json", "envoy/demo-catalog.json"] {
        let yaml = generate_istio(&repo(catalog), &options(catalog)).unwrap();
        let n = crd::validate_all(&yaml).unwrap_or_else(|e| panic!("{catalog}:\n{e}"));
        let kinds: Vec<String> =
            crd::manifests(&yaml).unwrap().iter().map(|m| m["kind"].as_str().unwrap().to_string()).collect();
        for kind in ["ServiceEntry", "DestinationRule", "Gateway", "VirtualService", "EnvoyFilter"] {
            assert!(kinds.iter().any(|k| k == kind), "{catalog}: no {kind} in {kinds:?}");
        }
        let unchecked = crd::unevaluated_rules_all(&yaml).unwrap();
        eprintln!("{catalog}: {n} resources valid; CEL rules not evaluated: {}", unchecked.len());
    }
}

#[test]
fn a_bad_image_reference_or_two_providers_with_one_mesh_host_are_refused() {
    let text = repo("envoy/example-catalog.json");
    for image in ["", "ghcr.io/x/llm-router:latest", "oci://ghcr.io/x/llm-router@sha256:abc"] {
        let e = generate_istio(&text, &IstioOptions { image: image.into(), ..options("x") }).unwrap_err();
        assert!(e.to_string().contains("--image"), "{image}: {e}");
    }
    // `a_b` and `a-b` would both be a-b.llm-router.internal.
    let mut c: Value = serde_json::from_str(&text).unwrap();
    let renamed = text.replace("\"deepinfra\"", "\"a_b\"").replace("\"together\"", "\"a-b\"");
    c = serde_json::from_str(&renamed).unwrap_or(c);
    let e = generate_istio(&c.to_string(), &options("x")).unwrap_err();
    assert!(
        e.to_string().starts_with("providers[2].name:") && e.to_string().contains("a-b.llm-router.internal"),
        "{e}"
    );
}

#[test]
fn providers_are_private_to_the_router_and_clients_reach_it_over_mutual_tls() {
    let yaml = generate_istio(&repo("envoy/example-catalog.json"), &options("x")).unwrap();
    let all = crd::manifests(&yaml).unwrap();
    let named = |kind: &str, name: &str| {
        all.iter()
            .find(|m| m["kind"] == kind && m["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{kind}/{name}"))
    };
    // The gateway's other traffic to api.openai.com keeps its own ServiceEntry and cluster.
    let openai = named("ServiceEntry", "llm-router-openai");
    assert_eq!(openai["spec"]["hosts"], json!(["openai.llm-router.internal"]));
    assert_eq!(openai["spec"]["endpoints"], json!([{"address": "api.openai.com"}]));
    assert_eq!(openai["spec"]["exportTo"], json!(["."]));
    let tls = &named("DestinationRule", "llm-router-openai")["spec"]["trafficPolicy"]["portLevelSettings"][0]
        ["tls"];
    assert_eq!((tls["mode"].as_str(), tls["sni"].as_str()), (Some("SIMPLE"), Some("api.openai.com")));
    assert_eq!(tls["subjectAltNames"], json!(["api.openai.com"]));
    let server = &named("Gateway", "llm-router")["spec"]["servers"][0];
    assert_eq!(server["tls"]["mode"], "ISTIO_MUTUAL");
    let sidecars = &named("DestinationRule", "llm-router-gateway")["spec"];
    assert_eq!(sidecars["host"], "istio-egressgateway.istio-system.svc.cluster.local");
    assert_eq!(sidecars["trafficPolicy"]["portLevelSettings"][0]["tls"]["mode"], "ISTIO_MUTUAL");
    // The EnvoyFilter touches only the router's clusters and listener.
    let filter = named("EnvoyFilter", "llm-router");
    for p in filter["spec"]["configPatches"].as_array().unwrap() {
        let m = &p["match"];
        if p["applyTo"] == "CLUSTER" {
            assert!(m["cluster"]["service"].as_str().unwrap().ends_with(".llm-router.internal"), "{m}");
        }
        if p["applyTo"] == "HTTP_FILTER" || p["applyTo"] == "NETWORK_FILTER" {
            assert_eq!(m["listener"]["portNumber"], 8088, "{m}");
        }
    }
}

/// The fixture with a cluster per ServiceEntry of `generated`, as istiod makes them: `outbound|<port>||
/// <host>`, the entry's endpoint address and port, HTTP/1.1 for a plain-HTTP port; the route's cluster
/// is the VirtualService's gateway destination.
fn fixture(opts: &IstioOptions, generated: &[Value]) -> Value {
    let vs = generated.iter().find(|m| m["kind"] == "VirtualService").unwrap();
    let dest = &vs["spec"]["http"][1]["route"][0]["destination"];
    let first = format!("outbound|{}||{}", dest["port"]["number"], dest["host"].as_str().unwrap());
    let text = include_str!("fixtures/istio-egress-gateway.yaml")
        .replace("@ROUTER_PORT@", &opts.router_port.to_string())
        .replace("@ROUTER_HOST@", &opts.router_host)
        .replace("@FIRST_CLUSTER@", &first);
    let mut config: Value = crd::documents(&text).unwrap().remove(0);
    let clusters: Vec<Value> = generated
        .iter()
        .filter(|m| m["kind"] == "ServiceEntry" && m["spec"]["endpoints"].is_array())
        .map(|se| {
            let port = &se["spec"]["ports"][0]["number"];
            let name = format!("outbound|{port}||{}", se["spec"]["hosts"][0].as_str().unwrap());
            json!({
                "name": name,
                "type": "STRICT_DNS",
                "connect_timeout": "10s",
                "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
                    "address": {"socket_address": {"address": se["spec"]["endpoints"][0]["address"], "port_value": port}}}}]}]},
                "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http_protocol_options": {}}}}
            })
        })
        .collect();
    config["static_resources"]["clusters"] = Value::Array(clusters);
    config
}

#[test]
fn the_envoy_filter_on_an_egress_gateway_config_is_valid_and_falls_back_through_envoy() {
    let (first, second, c) = mesh::first_down_second_up();
    let wasm = wasm_path();
    let opts = IstioOptions { wasm_path: wasm.display().to_string(), ..options("test") };
    let yaml = generate_istio(&serde_json::to_string_pretty(&c).unwrap(), &opts).unwrap();
    crd::validate_all(&yaml).unwrap();
    let filter = crd::manifests(&yaml).unwrap().into_iter().find(|m| m["kind"] == "EnvoyFilter").unwrap();
    let mut config = fixture(&opts, &crd::manifests(&yaml).unwrap());
    envoy_filter::apply(&mut config, &filter).unwrap();
    let envoy = mesh::validate_and_start(&config, "istio-egress-gateway");
    let host = virtual_host_name(&opts).replace(&format!(":{}", opts.router_port), "");
    mesh::falls_back_then_skips_the_failed_provider(&envoy, &host, &first, &second);
}

#[test]
fn a_catalog_too_large_for_one_kubernetes_object_is_refused() {
    // The EnvoyFilter carries the catalog once per provider: a large catalog with several providers
    // passes the 1 MiB an object may hold.
    let mut c: Value = serde_json::from_str(&repo("envoy/example-catalog.json")).unwrap();
    let long = "x".repeat(400_000);
    c["models"][0]["description"] = Value::String(long);
    let e = generate_istio(&c.to_string(), &options("x")).unwrap_err();
    assert!(e.to_string().contains("over the 1048576 a Kubernetes object may hold"), "{e}");
}
