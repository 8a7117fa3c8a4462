//! The checked-in Envoy examples are exactly the generator's output for their catalogs, and Envoy 1.40
//! accepts every one of them (`--mode validate`, which also loads the filter and its catalog).

mod common;

use common::envoy;
use llm_router::catalog::Catalog;
use llm_router_cli::envoy_config::{generate, Options};
use llm_router_cli::rate_limit_service::service_config;
use std::path::{Path, PathBuf};
use std::process::Command;

fn examples() -> Vec<(String, PathBuf, PathBuf)> {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root.join("envoy")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if let Some(stem) = name.strip_suffix("-catalog.json") {
            out.push((
                format!("envoy/{name}"),
                path.clone(),
                root.join("envoy").join(format!("{stem}.yaml")),
            ));
        }
    }
    out.sort();
    assert!(out.len() >= 2, "expected the demo and example catalogs, found {out:?}");
    out
}

#[test]
fn checked_in_examples_match_the_generator() {
    for (source, catalog, yaml) in examples() {
        let text = std::fs::read_to_string(&catalog).unwrap();
        let want = generate(&text, &Options { source: source.clone(), ..Options::default() }).unwrap();
        let have = std::fs::read_to_string(&yaml).unwrap_or_default();
        assert!(have == want, "{} is out of date with {source}: run scripts/gen-examples", yaml.display());
    }
}

#[test]
fn checked_in_rate_limit_configs_match_the_generator_and_the_service_reads_them() {
    let mut seen = 0;
    for (source, catalog, yaml) in examples() {
        let text = std::fs::read_to_string(&catalog).unwrap();
        let parsed = Catalog::parse(text.as_bytes(), None).unwrap();
        let path = yaml
            .with_file_name(yaml.file_name().unwrap().to_str().unwrap().replace(".yaml", "-ratelimit.yaml"));
        let Some(service) = &parsed.routing.rate_limit_service else {
            assert!(!path.exists(), "{} has no rate_limit_service", catalog.display());
            continue;
        };
        seen += 1;
        let want = service_config(&parsed, service, &source).unwrap();
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(have == want, "{} is out of date with {source}: run scripts/gen-examples", path.display());
        let config = llm_router_ratelimit::config::Config::parse(&have).unwrap();
        assert_eq!(config.domain(), service.domain);
    }
    assert!(seen >= 1, "the fleet example");
}

#[test]
fn envoy_validates_every_example() {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    assert!(
        root.join(Options::default().wasm_path).exists(),
        "build the filter first (scripts/test does): {}",
        Options::default().wasm_path
    );
    for (_, catalog, yaml) in examples() {
        let text = std::fs::read(&catalog).unwrap();
        let parsed = Catalog::parse(&text, None).unwrap();
        let mut cmd = Command::new(envoy::envoy_bin());
        cmd.current_dir(root).args(["--mode", "validate", "--disable-hot-restart", "-c"]).arg(&yaml);
        for var in parsed.providers.iter().filter_map(|p| p.api_key_env.as_deref()) {
            cmd.env(var, "validate-dummy-key");
        }
        let out = cmd.output().unwrap();
        let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && log.contains("OK"), "{} rejected:\n{log}", yaml.display());
    }
}
