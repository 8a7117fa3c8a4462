//! `llm-router generate --target istio`: every resource is valid against Istio's CRDs (vendored in
//! tests/crds/), and the EnvoyFilter's patches, applied to a config shaped like an Istio egress
//! gateway's (tests/fixtures/istio-egress-gateway.yaml), give a config Envoy 1.40 accepts and that routes
//! with fallback through a real Envoy.

mod common;

use common::envoy::wasm_path;
use common::{crd, envoy_filter, mesh};
use llm_router_cli::istio::{generate_istio, virtual_host_name, IstioOptions};
use llm_router_testkit::mock::MockProvider;
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
fn a_bad_image_reference_or_two_providers_on_one_host_are_refused() {
    let text = repo("envoy/example-catalog.json");
    for image in ["", "ghcr.io/x/llm-router:latest", "oci://ghcr.io/x/llm-router@sha256:abc"] {
        let e = generate_istio(&text, &IstioOptions { image: image.into(), ..options("x") }).unwrap_err();
        assert!(e.to_string().contains("--image"), "{image}: {e}");
    }
    let mut c: Value = serde_json::from_str(&text).unwrap();
    let first = c["providers"][0]["endpoint"].clone();
    c["providers"][1]["endpoint"] = first;
    let e = generate_istio(&c.to_string(), &options("x")).unwrap_err();
    assert!(e.to_string().starts_with("providers[1].endpoint:"), "{e}");
}

/// The fixture with the mocks' clusters, in the shape istiod gives a ServiceEntry's: `outbound|<port>||
/// <host>`, HTTP/1.1 for a plain-HTTP port.
fn fixture(opts: &IstioOptions, mocks: &[&MockProvider]) -> Value {
    let first = format!("outbound|{}||127.0.0.1", mocks[0].port());
    let text = include_str!("fixtures/istio-egress-gateway.yaml")
        .replace("@ROUTER_PORT@", &opts.router_port.to_string())
        .replace("@ROUTER_HOST@", &opts.router_host)
        .replace("@FIRST_CLUSTER@", &first);
    let mut config: Value = crd::documents(&text).unwrap().remove(0);
    let clusters: Vec<Value> = mocks
        .iter()
        .map(|m| {
            let name = format!("outbound|{}||127.0.0.1", m.port());
            json!({
                "name": name,
                "type": "STATIC",
                "connect_timeout": "10s",
                "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": m.port()}}}}]}]},
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
    let mut config = fixture(&opts, &[&first, &second]);
    envoy_filter::apply(&mut config, &filter).unwrap();
    let envoy = mesh::validate_and_start(&config, "istio-egress-gateway");
    let host = virtual_host_name(&opts).replace(&format!(":{}", opts.router_port), "");
    mesh::falls_back_then_skips_the_failed_provider(&envoy, &host, &first, &second);
}
