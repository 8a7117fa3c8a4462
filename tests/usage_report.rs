//! `scripts/usage-report` on a fixture access log with known numbers (tests/fixtures/access-log.jsonl: five
//! chats and one `GET /v1/models`, in the generated config's format), and its doctests.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn script() -> PathBuf {
    root().join("scripts/usage-report")
}

fn fixture() -> PathBuf {
    root().join("tests/fixtures/access-log.jsonl")
}

fn run(args: &[&str], stdin: Option<&Path>) -> Output {
    let mut cmd = Command::new("python3");
    cmd.arg(script()).args(args);
    cmd.stdin(match stdin {
        Some(path) => Stdio::from(std::fs::File::open(path).unwrap()),
        None => Stdio::null(),
    });
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run python3 {}: {e}", script().display()));
    assert!(out.status.success(), "usage-report {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn report(args: &[&str], stdin: Option<&Path>) -> Value {
    let out = run(args, stdin);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("--json output is not JSON ({e}):\n{}", String::from_utf8_lossy(&out.stdout))
    })
}

fn row<'a>(rows: &'a Value, fields: &[(&str, &str)]) -> &'a Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| fields.iter().all(|(k, v)| r[*k] == *v))
        .unwrap_or_else(|| panic!("no row {fields:?} in {rows:#}"))
}

const LLAMA: &str = "meta-llama/llama-3.3-70b-instruct";

#[test]
fn totals_per_model_provider_app_and_key() {
    let r = report(&["--json", fixture().to_str().unwrap()], None);
    assert_eq!(r["unaccounted"], 1, "GET /v1/models has no account");
    assert_eq!(r["unreadable"], 0);
    let total = &r["total"];
    for (field, want) in [
        ("requests", json!(5)),
        ("errors", json!(2)),
        ("error_types", json!({"model_not_found": 1, "provider_unavailable": 1})),
        ("prompt_tokens", json!(42)),
        ("completion_tokens", json!(24)),
        ("cached_tokens", json!(3)),
        ("cost_nano_usd", json!(29970)),
        ("cost_usd", json!("0.00002997")),
    ] {
        assert_eq!(total[field], want, "total {field}");
    }

    let alpha = row(&r["by_model_provider"], &[("model", LLAMA), ("provider", "alpha")]);
    assert_eq!(
        (&alpha["requests"], &alpha["errors"], &alpha["prompt_tokens"], &alpha["cost_nano_usd"]),
        (&json!(2), &json!(0), &json!(22), &json!(9970))
    );
    // Nearest rank over durations [100, 200] and first-byte times [40, 50].
    assert_eq!((&alpha["p50_ms"], &alpha["p95_ms"]), (&json!(100), &json!(200)));
    assert_eq!((&alpha["ttfb_p50_ms"], &alpha["ttfb_p95_ms"]), (&json!(40), &json!(50)));

    let beta = row(&r["by_model_provider"], &[("model", LLAMA), ("provider", "beta")]);
    assert_eq!(
        (&beta["requests"], &beta["errors"], &beta["cost_nano_usd"]),
        (&json!(2), &json!(1), &json!(20000))
    );
    assert_eq!((&beta["p50_ms"], &beta["p95_ms"]), (&json!(50), &json!(300)));
    assert_eq!(beta["ttfb_p50_ms"], 100, "the failed request had no first byte: one sample");

    let unrouted = row(&r["by_model_provider"], &[("model", "(none)"), ("provider", "(none)")]);
    assert_eq!((&unrouted["requests"], &unrouted["errors"]), (&json!(1), &json!(1)));
    assert!(unrouted["ttfb_p50_ms"].is_null());

    assert_eq!(row(&r["by_app"], &[("app", "search-ui")])["requests"], 2);
    assert_eq!(row(&r["by_app"], &[("app", "other")])["cost_nano_usd"], 20000);
    assert_eq!(row(&r["by_app"], &[("app", "(none)")])["errors"], 2);
    assert_eq!(row(&r["by_key"], &[("key", "team-a")])["cost_nano_usd"], 29970);
    assert_eq!(row(&r["by_key"], &[("key", "team-b")])["requests"], 2);

    // Most expensive first.
    assert_eq!(r["by_model_provider"][0]["provider"], "beta");
}

#[test]
fn stdin_and_tables() {
    let from_stdin = report(&["--json"], Some(&fixture()));
    assert_eq!(from_stdin, report(&["--json", fixture().to_str().unwrap()], None));

    let text = String::from_utf8(run(&[fixture().to_str().unwrap()], None).stdout).unwrap();
    for want in ["By model and provider", "By app", "By client key", "p50_ms", "p95_ms", "cost_usd"] {
        assert!(text.contains(want), "{want:?} missing in\n{text}");
    }
    let alpha = text.lines().find(|l| l.contains(LLAMA) && l.contains("alpha")).unwrap_or_default();
    let cells: Vec<&str> = alpha.split_whitespace().collect();
    assert_eq!(
        cells,
        [LLAMA, "alpha", "2", "0", "22", "14", "3", "0.00000997", "100", "200", "40", "50"],
        "{text}"
    );
    let totals = text.lines().filter(|l| l.starts_with("TOTAL")).count();
    assert_eq!(totals, 3, "{text}");
    assert!(text.contains("1 requests without an account"), "{text}");
}

#[test]
fn doctests_pass() {
    let code = "import doctest, importlib.machinery, importlib.util, sys\n\
                loader = importlib.machinery.SourceFileLoader('usage_report', sys.argv[1])\n\
                module = importlib.util.module_from_spec(importlib.util.spec_from_loader('usage_report', loader))\n\
                loader.exec_module(module)\n\
                result = doctest.testmod(module)\n\
                sys.exit(1 if result.failed or not result.attempted else 0)\n";
    let out = Command::new("python3").arg("-c").arg(code).arg(script()).output().unwrap();
    assert!(
        out.status.success(),
        "doctests failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
