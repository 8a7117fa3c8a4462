//! The fuzz targets' properties (tools/fuzz) over their seed corpus and over the hostile request corpus,
//! natively and fast: what the libFuzzer runs found stays checked in scripts/test.

mod common;

use common::corpus;
use std::path::PathBuf;

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/fuzz/corpus")).join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files.into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect()
}

/// A fuzz target: its name (its seed folder) and its properties.
type Target = (&'static str, fn(&[u8]));

#[test]
fn every_target_holds_its_properties_over_its_seeds() {
    let targets: [Target; 8] = [
        ("request", llm_router_fuzz::request),
        ("catalog", llm_router_fuzz::catalog),
        ("preferences", llm_router_fuzz::preferences),
        ("stream", llm_router_fuzz::stream),
        ("completion", llm_router_fuzz::completion),
        ("native_request", llm_router_fuzz::native_request),
        ("native_stream", llm_router_fuzz::native_stream),
        ("native_completion", llm_router_fuzz::native_completion),
    ];
    // Every seed runs, so that one failing seed does not hide the others; the failures are listed at
    // the end.
    let mut failed = Vec::new();
    for (target, run) in targets {
        for (path, data) in seeds(target) {
            // A failing seed names itself before the property's message.
            eprintln!("{target}: {}", path.display());
            if std::panic::catch_unwind(|| run(&data)).is_err() {
                failed.push(format!("{target}: {}", path.display()));
            }
        }
    }
    assert!(failed.is_empty(), "seeds failing their target's properties:\n{}", failed.join("\n"));
}

#[test]
fn the_hostile_requests_hold_the_request_properties() {
    let (_, cases) = corpus::load();
    for case in cases {
        let mut data = Vec::new();
        for (name, value) in &case.headers {
            data.extend_from_slice(name.as_bytes());
            data.extend_from_slice(b": ");
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        data.extend_from_slice(b"\n\n");
        data.extend_from_slice(&case.body);
        eprintln!("{}", case.name);
        llm_router_fuzz::request(&data);
    }
}
