//! `llm-router generate --target istio`: every resource is valid against Istio's CRDs (vendored in
//! tests/crds/), and the EnvoyFilter's patches, applied to a config shaped like an Istio egress
//! gateway's (tests/fixtures/istio-egress-gateway.yaml), give a config Envoy 1.40 accepts and that routes
//! with fallback through a real Envoy.

mod common;

use common::envoy::{envoy_bin, wasm_path, Envoy};
use common::http::request;
use common::router::{catalog, endpoint, provider, provider_key, CLIENT_KEY};
use common::{crd, envoy_filter};
use llm_router_cli::istio::{generate_istio, virtual_host_name, IstioOptions};
use llm_router_testkit::mock::{Behavior, MockProvider};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

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
    let first = MockProvider::start("first");
    first.set_behavior(Behavior::Status {
        code: 503,
        headers: vec![],
        body: r#"{"error":{"message":"down"}}"#.into(),
    });
    let second = MockProvider::start("second");
    let c = catalog(
        vec![provider("first", first.port()), provider("second", second.port())],
        vec![
            json!({"id": "test/m", "endpoints": [endpoint("first", "m@first", 1.0), endpoint("second", "m@second", 2.0)]}),
        ],
        json!({}),
    );
    let wasm = wasm_path();
    let opts = IstioOptions { wasm_path: wasm.display().to_string(), ..options("test") };
    let yaml = generate_istio(&serde_json::to_string_pretty(&c).unwrap(), &opts).unwrap();
    crd::validate_all(&yaml).unwrap();
    let filter = crd::manifests(&yaml).unwrap().into_iter().find(|m| m["kind"] == "EnvoyFilter").unwrap();
    let mut config = fixture(&opts, &[&first, &second]);
    envoy_filter::apply(&mut config, &filter).unwrap();
    let text = serde_json::to_string_pretty(&config).unwrap();
    let env: Vec<(String, String)> = ["first", "second"]
        .iter()
        .map(|n| (format!("{}_API_KEY", n.to_uppercase()), provider_key(n)))
        .collect();
    // `envoy --mode validate`, then a real run.
    let dir = std::env::temp_dir().join(format!("llm-router-istio-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("egress-gateway.json");
    std::fs::write(&file, &text).unwrap();
    let out = Command::new(envoy_bin())
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(&file)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && log.contains("OK"), "envoy --mode validate:\n{log}");
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let envoy = Envoy::start_with(&text, &env_refs, 1).unwrap_or_else(|e| panic!("envoy did not start: {e}"));
    let host = virtual_host_name(&opts).replace(&format!(":{}", opts.router_port), "");
    let body = serde_json::to_vec(&json!({"model": "test/m", "provider": {"sort": "price"},
        "messages": [{"role": "user", "content": "Hello"}]}))
    .unwrap();
    let auth = format!("Bearer {CLIENT_KEY}");
    let r = request(
        envoy.port,
        "POST",
        "/v1/chat/completions",
        &[("host", host.as_str()), ("authorization", auth.as_str()), ("content-type", "application/json")],
        &body,
    );
    assert_eq!(r.status, 200, "{} {:?}", r.text(), r.headers);
    assert_eq!(r.header("x-llm-provider"), Some("second"));
    assert_eq!(r.header("x-llm-attempts"), Some("2"));
    let tried = first.requests();
    let served = second.requests();
    assert_eq!((tried.len(), served.len()), (1, 1));
    let model = |b: &[u8]| serde_json::from_slice::<Value>(b).unwrap()["model"].clone();
    assert_eq!(model(&tried[0].body), "m@first");
    assert_eq!(model(&served[0].body), "m@second", "the fallback's own model name");
    let key = |h: &[(String, String)]| h.iter().find(|(n, _)| n == "authorization").map(|(_, v)| v.clone());
    assert_eq!(key(&served[0].headers), Some(format!("Bearer {}", provider_key("second"))), "its own key");
    // The health logger (the router's upstream_log, patched in) recorded the 503 in the memory the
    // downstream role reads: the next request skips the first provider.
    let again = request(
        envoy.port,
        "POST",
        "/v1/chat/completions",
        &[("host", host.as_str()), ("authorization", auth.as_str()), ("content-type", "application/json")],
        &body,
    );
    assert_eq!((again.status, again.header("x-llm-attempts")), (200, Some("1")), "{}", again.text());
    assert_eq!(first.requests().len(), 1, "the provider that failed was not tried again");
    let _ = std::fs::remove_dir_all(&dir);
}
