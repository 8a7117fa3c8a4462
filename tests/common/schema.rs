//! JSON Schema validation of our responses against OpenRouter's own schemas.
//!
//! The schemas are vendored in `tests/schemas/openrouter.json` (see `tests/schemas/README.md`;
//! regenerate with `scripts/vendor-schemas`). Nothing outside the repository is read, and no
//! network access is attempted: `$ref`s only point into the file's own `$defs`.
//!
//! ```ignore
//! schema::assert_valid("ChatResult", &body);
//! schema::assert_valid("ChatStreamChunk", &chunk);
//! schema::assert_valid("ModelsListResponse", &models);
//! schema::assert_valid("NotFoundResponse", &error_body);
//! ```
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use jsonschema::{Draft, Validator};
use serde_json::{json, Value};

/// Path of the vendored schema file, relative to the crate root.
pub const SCHEMA_FILE: &str = "tests/schemas/openrouter.json";

/// The vendored document, parsed once.
fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join(SCHEMA_FILE);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read vendored schemas {}: {e}", path.display()));
        let doc: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
        assert!(doc.get("$defs").is_some_and(Value::is_object), "{} has no `$defs` object", path.display());
        doc
    })
}

/// Names of every schema in the vendored file (`#/$defs/<name>`), sorted.
pub fn names() -> Vec<&'static str> {
    let mut names: Vec<&str> =
        document()["$defs"].as_object().expect("$defs is an object").keys().map(String::as_str).collect();
    names.sort_unstable();
    names
}

/// The compiled validator for `#/$defs/<name>`, compiled once per name.
fn validator(name: &str) -> Result<Arc<Validator>, String> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Validator>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    // A panicking test may poison the lock; the map itself is always consistent.
    let mut cache = cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(v) = cache.get(name) {
        return Ok(Arc::clone(v));
    }
    let doc = document();
    if doc["$defs"].get(name).is_none() {
        return Err(format!("no schema named {name:?} in {SCHEMA_FILE}; known: {}", names().join(", ")));
    }
    // A root that points at the wanted definition, carrying all of them so that nested
    // `#/$defs/...` references resolve inside the same document.
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": format!("#/$defs/{name}"),
        "$defs": doc["$defs"].clone(),
    });
    let compiled = jsonschema::options()
        .with_draft(Draft::Draft202012)
        // `format` (int32, double, date-time, ...) stays an annotation, as 2020-12 specifies.
        .should_validate_formats(false)
        .build(&root)
        .map_err(|e| format!("schema {name:?} from {SCHEMA_FILE} does not compile: {e}"))?;
    let compiled = Arc::new(compiled);
    cache.insert(name.to_string(), Arc::clone(&compiled));
    Ok(compiled)
}

/// Validates `value` against `#/$defs/<name>` of tests/schemas/openrouter.json; Err lists every
/// violation with its JSON path.
pub fn validate(name: &str, value: &Value) -> Result<(), String> {
    let validator = validator(name)?;
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| {
            let path = e.instance_path().to_string();
            let path = if path.is_empty() { "/" } else { path.as_str() };
            // schema_path is the canonical keyword location, e.g. /$defs/ChatChoice/properties/index/type.
            format!("  at {path}: {e} (schema: #{})", e.schema_path())
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("{} violation(s) of OpenRouter schema {name}:\n{}", errors.len(), errors.join("\n")))
    }
}

/// Panics (with every violation and the pretty-printed value) unless `value` validates against
/// `#/$defs/<name>` of tests/schemas/openrouter.json.
#[track_caller]
pub fn assert_valid(name: &str, value: &Value) {
    if let Err(errors) = validate(name, value) {
        let pretty = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
        panic!("{errors}\nvalue:\n{pretty}");
    }
}
