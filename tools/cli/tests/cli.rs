//! The `llm-router` command line: offline route explanations, config generation errors, key hashing.

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
    let (_, out) = run(&["route", "--catalog", "envoy/demo-catalog.json", "--request", &none]);
    assert!(out.contains("the client gets 404") && out.contains("\"excluded_by\""), "{out}");
}

#[test]
fn generate_names_the_bad_field_and_hash_key_matches_the_demo_key() {
    let bad = request_file(
        "catalog",
        r#"{"providers":[{"name":"p","endpoint":"http://p"}],"auth":"none",
            "models":[{"id":"m","endpoints":[{"provider":"q","model":"x","pricing":{"prompt":1,"completion":1}}]}]}"#,
    );
    let (success, out) = run(&["generate", "--catalog", &bad]);
    assert!(!success);
    assert!(out.contains("models[0].endpoints[0].provider: unknown provider \"q\""), "{out}");
    let (_, out) = run(&["hash-key", "sk-demo-llm-router"]);
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../envoy/demo-catalog.json"))
        .unwrap();
    assert!(demo.contains(out.trim()), "{out}");
}
