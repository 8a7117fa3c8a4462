//! The `llm-router` command line: offline route explanations, config generation errors, key hashing, usage
//! errors.

use std::process::Command;

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_llm-router"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

fn request_file(name: &str, body: &str) -> String {
    let path = std::env::temp_dir().join(format!("llm-router-cli-{}-{name}.json", std::process::id()));
    std::fs::write(&path, body).unwrap();
    path.display().to_string()
}

#[test]
fn route_prints_the_attempts_or_the_error_a_client_would_get() {
    let ok = request_file(
        "ok",
        r#"{"model":"llama-3.3-70b","messages":[],"provider":{"data_collection":"deny","sort":"price"}}"#,
    );
    let (success, out) = run(&["route", "--catalog", "envoy/demo-catalog.json", "--request", &ok]);
    assert!(success, "{out}");
    assert!(
        out.contains(
            "1. meta-llama/llama-3.3-70b-instruct via alpha as \"meta-llama/Llama-3.3-70B-Instruct-Turbo\""
        ),
        "{out}"
    );
    assert!(out.contains("2. meta-llama/llama-3.3-70b-instruct via gamma"), "{out}");
    assert!(out.contains("excluded=beta:data_policy:training"), "{out}");
    let none = request_file(
        "none",
        r#"{"model":"llama-3.3-70b","messages":[],"provider":{"zdr":true,"only":["beta"]}}"#,
    );
    let (success, out) = run(&["route", "--catalog", "envoy/demo-catalog.json", "--request", &none]);
    assert!(success, "an explanation, even of an error: {out}");
    assert!(out.contains("the client gets 404") && out.contains("\"excluded_by\""), "{out}");
}

#[test]
fn generate_names_the_bad_field() {
    let bad = request_file(
        "catalog",
        r#"{"providers":[{"name":"p","endpoint":"http://p"}],"auth":"none",
            "models":[{"id":"m","endpoints":[{"provider":"q","model":"x","pricing":{"prompt":1,"completion":1}}]}]}"#,
    );
    let (success, out) = run(&["generate", "--catalog", &bad]);
    assert!(!success);
    assert!(
        out.contains(&format!("{bad}: models[0].endpoints[0].provider: unknown provider \"q\"")),
        "{out}"
    );
}

#[test]
fn hash_key_prints_the_sha256_the_demo_catalog_holds() {
    let (success, out) = run(&["hash-key", "sk-demo-llm-router"]);
    assert!(success, "{out}");
    assert_eq!(out, "6e642b523c88456ac29a1fff7b4187d6ff5548686cf85400224679fddfe51858\n");
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../envoy/demo-catalog.json"))
        .unwrap();
    assert!(demo.contains(out.trim()), "{out}");
}

#[test]
fn an_unknown_flag_is_an_error() {
    // An unknown flag used to be ignored (`--target istio` generated the default config, before the
    // flag existed).
    let (success, out) = run(&["generate", "--catalog", "envoy/demo-catalog.json", "--flavor", "istio"]);
    assert!(!success, "{out}");
    assert!(out.contains("error: unexpected argument '--flavor' found"), "{out}");
    assert!(!out.contains("static_resources"), "nothing generated: {out}");
}

#[test]
fn the_istio_target_needs_the_image_by_digest() {
    let (success, out) = run(&["generate", "--catalog", "envoy/demo-catalog.json", "--target", "istio"]);
    assert!(!success && out.contains("--image"), "{out}");
    let (success, out) = run(&[
        "generate",
        "--catalog",
        "envoy/demo-catalog.json",
        "--target",
        "istio",
        "--image",
        "oci://r/x:latest",
    ]);
    assert!(!success && out.contains("--image: must be oci://"), "{out}");
    let digest = "0".repeat(64);
    let image = format!("oci://registry.example/llm-router@sha256:{digest}");
    let (success, out) =
        run(&["generate", "--catalog", "envoy/demo-catalog.json", "--target", "istio", "--image", &image]);
    assert!(success, "{out}");
    assert!(out.contains("kind: EnvoyFilter") && !out.contains("static_resources"), "{out}");
}

#[test]
fn the_overload_managers_heap_is_set_in_mib() {
    let (success, out) = run(&["generate", "--catalog", "envoy/demo-catalog.json", "--max-heap-mb", "512"]);
    assert!(success, "{out}");
    assert!(out.contains("max_heap_size_bytes: 536870912\n"), "{out}");
    let (success, out) = run(&["generate", "--catalog", "envoy/demo-catalog.json", "--max-heap-mb", "8"]);
    assert!(!success && out.contains("--max-heap-mb"), "too small for Envoy to start: {out}");
}
