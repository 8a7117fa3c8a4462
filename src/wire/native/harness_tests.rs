//! Test helpers both native APIs' fixture tests use: the OpenRouter schema check, a whole run of a
//! stream translator, the payloads of its output, and the check that a stream translates the same
//! whatever its chunk boundaries.

use super::stream::{ApiEvents, Translator};
use super::{ProviderError, Step};
use crate::wire::response::Served;
use serde_json::Value;

/// Validates `value` against OpenRouter's schema `name` (tests/schemas/openrouter.json); natively only
/// (the validator is a native dev-dependency).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn assert_schema(name: &str, value: &Value) {
    use serde_json::json;
    use std::sync::OnceLock;
    static DOC: OnceLock<Value> = OnceLock::new();
    let doc = DOC.get_or_init(|| {
        serde_json::from_str(include_str!("../../../tests/schemas/openrouter.json")).unwrap()
    });
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": format!("#/$defs/{name}"),
        "$defs": doc["$defs"].clone(),
    });
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(false)
        .build(&root)
        .unwrap();
    let errors: Vec<String> =
        validator.iter_errors(value).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{name}: {errors:?}\n{value:#}");
}

#[cfg(target_arch = "wasm32")]
pub(crate) fn assert_schema(_: &str, _: &Value) {}

/// What a run of a translator produced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Run {
    pub out: String,
    pub failed: Option<ProviderError>,
}

/// Feeds `pieces` in order to a new translator for `served` and `created`, then finishes.
pub(crate) fn run<E: ApiEvents>(served: Served, created: u64, pieces: &[&[u8]]) -> Run {
    let mut t = Translator::<E>::new(served, created);
    let mut out = Vec::new();
    let mut failed = None;
    let mut take = |step: Step<'_>, failed: &mut Option<ProviderError>| match step {
        Step::Forward(bytes) => out.extend_from_slice(bytes),
        Step::Failed(e) => {
            assert!(failed.is_none(), "a failure is reported once");
            *failed = Some(e);
        }
    };
    for p in pieces {
        take(t.feed(p), &mut failed);
    }
    take(t.finish(), &mut failed);
    Run { out: String::from_utf8(out).expect("UTF-8 out"), failed }
}

/// The `data:` payloads of a translated stream, each a JSON chunk but `[DONE]`.
pub(crate) fn payloads(out: &str) -> Vec<&str> {
    assert!(out.is_empty() || out.ends_with("\n\n"), "whole events only: {out:?}");
    out.split_terminator("\n\n")
        .map(|e| e.strip_prefix("data: ").unwrap_or_else(|| panic!("not a data event: {e:?}")))
        .collect()
}

/// The stream `bytes` (fixture `file`) gives the same output cut in two at every byte, byte by byte
/// and in threes as whole (`run` runs a translator over pieces).
pub(crate) fn assert_split_anywhere(file: &str, bytes: &[u8], run: impl Fn(&[&[u8]]) -> Run) {
    let whole = run(&[bytes]);
    for cut in 1..bytes.len() {
        assert_eq!(run(&[&bytes[..cut], &bytes[cut..]]), whole, "{file} split at {cut}");
    }
    let ones: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(run(&ones), whole, "{file} byte by byte");
    let threes: Vec<&[u8]> = bytes.chunks(3).collect();
    assert_eq!(run(&threes), whole, "{file} in threes");
}
