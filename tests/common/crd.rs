//! Offline validation of Kubernetes manifests (Istio, Envoy Gateway, Gateway API) against their
//! CustomResourceDefinitions.
//!
//! The CRDs are vendored, unmodified, in `tests/crds/` (see `tests/crds/NOTE.md`); nothing outside
//! the repository is read and nothing is fetched. A manifest is checked the way the API server
//! would check it on create, as far as that can be done without a CEL evaluator:
//!
//! - the CRD is found by `apiVersion` (group/version) and `kind`; the version must be served;
//! - `metadata`: `name` required, a DNS-1123 subdomain; `namespace` a DNS-1123 label and absent on
//!   cluster-scoped kinds; label and annotation keys qualified names, label values valid; no field
//!   that `ObjectMeta` does not have;
//! - `default`s are applied first (as the API server does before validating);
//! - `spec.versions[].schema.openAPIV3Schema` is checked with the `jsonschema` crate, after turning
//!   the OpenAPI v3 structural schema into JSON Schema: `nullable: true` adds `null` to the type
//!   (and to `enum`), `x-kubernetes-int-or-string` becomes `type: [integer, string]`; a `null` where
//!   the schema is not nullable is an error (the API server would silently drop it);
//! - pruning: a field that is neither in `properties`, nor allowed by `additionalProperties`, nor
//!   under `x-kubernetes-preserve-unknown-fields: true` (nor `apiVersion`/`kind`/`metadata` of the
//!   root or of an `x-kubernetes-embedded-resource`) is an error, as a typo must fail;
//! - `x-kubernetes-list-type: set` (no duplicates) and `map` (unique `x-kubernetes-list-map-keys`);
//! - formats: `date-time` (RFC 3339) and `byte` (base64) on strings, `int32`/`int64` ranges on
//!   integers; `double` and any other format are annotations.
//!
//! `x-kubernetes-validations` (CEL) rules are NOT evaluated: [`unevaluated_rules`] lists those that
//! apply to the fields present (transition rules that need `oldSelf` are left out: they only run on
//! update). Stricter than the API server on purpose: a `null` in a non-nullable field, a namespace on
//! a cluster-scoped kind, a missing `metadata.name`, and (in [`validate_all`]) plain YAML 1.1 booleans
//! such as `on` or `yes` that kubectl would read as booleans ([`yaml11_ambiguities`]).
//!
//! ```ignore
//! crd::assert_valid(&manifest);                        // or crd::validate(&manifest) -> Result<(), String>
//! let n = crd::validate_all(&generated_yaml)?;         // multi-document YAML; Ok(number of manifests)
//! for rule in crd::unevaluated_rules(&manifest) { eprintln!("not checked: {rule}"); }
//! ```
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use jsonschema::{Draft, PatternOptions, Validator};
use serde_json::{json, Map, Value};

/// Directory of the vendored CRDs, relative to the repository root.
pub const CRD_DIR: &str = "tests/crds";

/// Longest error message kept from the `jsonschema` crate (some quote a whole sub-document).
const MAX_MESSAGE: usize = 300;

/// Whether a kind lives in a namespace or not (`spec.scope`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// One version of a CRD.
#[derive(Debug)]
pub struct CrdVersion {
    pub name: String,
    pub served: bool,
    pub deprecated: bool,
    /// `schema.openAPIV3Schema`, as vendored.
    pub schema: Value,
}

/// One vendored CustomResourceDefinition.
#[derive(Debug)]
pub struct Crd {
    pub group: String,
    pub kind: String,
    pub plural: String,
    pub scope: Scope,
    pub versions: Vec<CrdVersion>,
    /// The vendored file it was read from, relative to the repository root.
    pub file: String,
}

impl Crd {
    pub fn version(&self, name: &str) -> Option<&CrdVersion> {
        self.versions.iter().find(|v| v.name == name)
    }
}

fn repo_root() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).to_path_buf()
}

/// Every vendored CRD, read and indexed by (group, kind) once.
fn registry() -> &'static BTreeMap<(String, String), Crd> {
    static REGISTRY: OnceLock<BTreeMap<(String, String), Crd>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let dir = repo_root().join(CRD_DIR);
        let mut files = Vec::new();
        collect_yaml_files(&dir, &mut files);
        files.sort();
        assert!(!files.is_empty(), "no CRD files under {}", dir.display());
        let mut map = BTreeMap::new();
        for path in files {
            let rel = path.strip_prefix(repo_root()).unwrap_or(&path).display().to_string();
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"));
            let docs = documents(&text).unwrap_or_else(|e| panic!("{rel}: {e}"));
            for doc in docs {
                if doc["kind"] != "CustomResourceDefinition" {
                    continue;
                }
                let crd = parse_crd(&doc, &rel).unwrap_or_else(|e| panic!("{rel}: {e}"));
                let key = (crd.group.clone(), crd.kind.clone());
                if let Some(old) = map.insert(key, crd) {
                    panic!("{}.{} is defined twice: in {} and {rel}", old.kind, old.group, old.file);
                }
            }
        }
        map
    })
}

fn collect_yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect_yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

fn parse_crd(doc: &Value, file: &str) -> Result<Crd, String> {
    let str_at = |ptr: &str| -> Result<String, String> {
        doc.pointer(ptr)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("CRD without {ptr}"))
    };
    let scope = match str_at("/spec/scope")?.as_str() {
        "Namespaced" => Scope::Namespaced,
        "Cluster" => Scope::Cluster,
        other => return Err(format!("unknown scope {other:?}")),
    };
    let versions = doc
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .ok_or("CRD without /spec/versions")?
        .iter()
        .map(|v| {
            let name = v["name"].as_str().ok_or("version without name")?.to_string();
            let schema = v
                .pointer("/schema/openAPIV3Schema")
                .cloned()
                .ok_or_else(|| format!("version {name} has no schema.openAPIV3Schema"))?;
            Ok(CrdVersion {
                served: v["served"].as_bool().unwrap_or(false),
                deprecated: v["deprecated"].as_bool().unwrap_or(false),
                name,
                schema,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Crd {
        group: str_at("/spec/group")?,
        kind: str_at("/spec/names/kind")?,
        plural: str_at("/spec/names/plural")?,
        scope,
        versions,
        file: file.to_string(),
    })
}

/// (group, kind, served versions) of every vendored CRD, sorted.
pub fn known_kinds() -> Vec<(String, String, Vec<String>)> {
    registry()
        .values()
        .map(|c| {
            let versions = c.versions.iter().filter(|v| v.served).map(|v| v.name.clone()).collect();
            (c.group.clone(), c.kind.clone(), versions)
        })
        .collect()
}

/// The vendored CRD of `kind` in `group`, if any.
pub fn crd(group: &str, kind: &str) -> Option<&'static Crd> {
    registry().get(&(group.to_string(), kind.to_string()))
}

/// The documents of a multi-document YAML text, as JSON values; empty documents are skipped.
/// Duplicate mapping keys and non-string keys are errors (kubectl rejects the first, and JSON has
/// no place for the second).
pub fn documents(yaml: &str) -> Result<Vec<Value>, String> {
    use serde::Deserialize as _;
    let mut out = Vec::new();
    for (i, de) in serde_norway::Deserializer::from_str(yaml).enumerate() {
        let doc =
            serde_norway::Value::deserialize(de).map_err(|e| format!("YAML document #{}: {e}", i + 1))?;
        if doc.is_null() {
            continue;
        }
        let json =
            serde_json::to_value(&doc).map_err(|e| format!("YAML document #{}: not JSON: {e}", i + 1))?;
        out.push(json);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Schema conversion and compilation.

/// The OpenAPI v3 structural schema turned into JSON Schema (draft 4, which OpenAPI 3.0 follows).
/// Kubernetes' own keywords stay in place (JSON Schema ignores unknown keywords).
fn to_json_schema(schema: &Value) -> Value {
    let Some(obj) = schema.as_object() else { return schema.clone() };
    let mut out = Map::new();
    for (key, value) in obj {
        let converted = match key.as_str() {
            "properties" => Value::Object(
                value
                    .as_object()
                    .map(|p| p.iter().map(|(k, s)| (k.clone(), to_json_schema(s))).collect())
                    .unwrap_or_default(),
            ),
            "additionalProperties" | "items" | "not" if value.is_object() => to_json_schema(value),
            "allOf" | "anyOf" | "oneOf" | "items" => Value::Array(
                value.as_array().map(|a| a.iter().map(to_json_schema).collect()).unwrap_or_default(),
            ),
            _ => value.clone(),
        };
        out.insert(key.clone(), converted);
    }
    if obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) && !out.contains_key("type") {
        out.insert("type".into(), json!(["integer", "string"]));
    }
    if obj.get("nullable") == Some(&Value::Bool(true)) {
        match out.get_mut("type") {
            Some(Value::String(t)) => {
                let t = t.clone();
                out.insert("type".into(), json!([t, "null"]));
            }
            Some(Value::Array(types)) => types.push(json!("null")),
            _ => {}
        }
        if let Some(Value::Array(values)) = out.get_mut("enum") {
            values.push(Value::Null);
        }
        if ["allOf", "anyOf", "oneOf", "not"].iter().any(|k| out.contains_key(*k)) {
            return json!({"anyOf": [{"type": "null"}, Value::Object(out)]});
        }
    }
    Value::Object(out)
}

/// `format: byte`: standard base64 with padding, as Go's encoding/base64 StdEncoding decodes it.
fn is_base64(s: &str) -> bool {
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return false;
    }
    let padding = bytes.iter().rev().take_while(|&&b| b == b'=').count();
    padding <= 2
        && bytes[..bytes.len() - padding]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

fn compile(schema: &Value) -> Result<Validator, String> {
    let converted = to_json_schema(schema);
    jsonschema::options()
        .with_draft(Draft::Draft4)
        .should_validate_formats(true)
        .with_format("byte", is_base64)
        // Kubernetes patterns are Go RE2 expressions: the linear-time `regex` engine is the closer one.
        .with_pattern_options(PatternOptions::regex())
        .build(&converted)
        .map_err(|e| e.to_string())
}

/// The compiled validator of (group, kind, version), compiled once.
fn validator(crd: &Crd, version: &CrdVersion) -> Result<Arc<Validator>, String> {
    type Cache = Mutex<HashMap<(String, String, String), Arc<Validator>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let key = (crd.group.clone(), crd.kind.clone(), version.name.clone());
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    // A panicking test may poison the lock; the map itself is always consistent.
    if let Some(v) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Ok(Arc::clone(v));
    }
    // Compiled outside the lock: tests running in parallel on other kinds need not wait.
    let compiled = Arc::new(compile(&version.schema).map_err(|e| {
        format!(
            "the schema of {}/{} {} ({}) does not compile: {e}",
            crd.group, version.name, crd.kind, crd.file
        )
    })?);
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    Ok(Arc::clone(cache.entry(key).or_insert(compiled)))
}

/// Compiles the schema of every served version of every vendored CRD; Err lists those that fail.
pub fn compile_all() -> Result<usize, String> {
    let mut n = 0;
    let mut errors = Vec::new();
    for crd in registry().values() {
        for version in crd.versions.iter().filter(|v| v.served) {
            match validator(crd, version) {
                Ok(_) => n += 1,
                Err(e) => errors.push(e),
            }
        }
    }
    if errors.is_empty() {
        Ok(n)
    } else {
        Err(errors.join("\n"))
    }
}

// ---------------------------------------------------------------------------------------------
// Looking a manifest up.

/// The CRD and version of a manifest, or why there is none.
fn resolve(manifest: &Value) -> Result<(&'static Crd, &'static CrdVersion), String> {
    let obj = manifest
        .as_object()
        .ok_or_else(|| format!("a manifest must be a mapping, not {}", short(manifest)))?;
    let api_version =
        obj.get("apiVersion").and_then(Value::as_str).ok_or("manifest without a string `apiVersion`")?;
    let kind = obj.get("kind").and_then(Value::as_str).ok_or("manifest without a string `kind`")?;
    let (group, version) = api_version.split_once('/').ok_or_else(|| {
        format!("{kind}: apiVersion {api_version:?} is a core Kubernetes group, not one of the vendored CRDs")
    })?;
    let Some(crd) = crd(group, kind) else {
        let in_group: Vec<String> =
            registry().values().filter(|c| c.group == group).map(|c| c.kind.clone()).collect();
        return Err(if in_group.is_empty() {
            let groups: HashSet<&str> = registry().values().map(|c| c.group.as_str()).collect();
            let mut groups: Vec<&str> = groups.into_iter().collect();
            groups.sort_unstable();
            format!("{kind}: no vendored CRD for group {group:?} (known groups: {})", groups.join(", "))
        } else {
            format!("{kind}: no kind {kind:?} in group {group:?} (known: {})", in_group.join(", "))
        });
    };
    let Some(v) = crd.version(version) else {
        let known: Vec<&str> = crd.versions.iter().map(|v| v.name.as_str()).collect();
        return Err(format!(
            "{kind}: {group} has no version {version:?} of {kind} (known: {})",
            known.join(", ")
        ));
    };
    if !v.served {
        return Err(format!("{kind}: version {version} of {kind}.{group} is not served"));
    }
    Ok((crd, v))
}

/// `Kind/name` (or `Kind/<no name>`) for messages.
fn ident(manifest: &Value) -> String {
    let kind = manifest["kind"].as_str().unwrap_or("<no kind>");
    let name = manifest.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("<no name>");
    format!("{kind}/{name}")
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    truncate(&s, 80)
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn pointer_push(path: &str, key: &str) -> String {
    format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"))
}

// ---------------------------------------------------------------------------------------------
// Metadata.

/// DNS-1123 label: at most 63 of [a-z0-9-], starting and ending alphanumeric.
fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// DNS-1123 subdomain: at most 253 characters, dot-separated DNS-1123 labels.
fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, at most 63 characters (a label value may also be empty).
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A label or annotation key: `[prefix/]name`, prefix a DNS-1123 subdomain.
fn is_qualified_name(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => is_dns1123_subdomain(prefix) && is_qualified_name_part(name),
        None => is_qualified_name_part(s),
    }
}

const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

fn check_metadata(manifest: &Value, scope: Scope, errors: &mut Vec<String>) {
    let Some(meta) = manifest.get("metadata") else {
        errors.push("at /metadata: required (keyword: required)".into());
        return;
    };
    let Some(meta) = meta.as_object() else {
        errors.push(format!("at /metadata: {} is not an object (keyword: type)", short(meta)));
        return;
    };
    for key in meta.keys() {
        if !OBJECT_META_FIELDS.contains(&key.as_str()) {
            errors.push(format!(
                "at {}: unknown field of ObjectMeta (keyword: unknown field)",
                pointer_push("/metadata", key)
            ));
        }
    }
    match meta.get("name") {
        None => errors.push("at /metadata/name: required (keyword: required)".into()),
        Some(Value::String(name)) if !is_dns1123_subdomain(name) => errors.push(format!(
            "at /metadata/name: {name:?} is not a DNS-1123 subdomain (at most 253 of [a-z0-9-.], \
             alphanumeric at both ends of each label) (keyword: metadata.name)"
        )),
        Some(Value::String(_)) => {}
        Some(other) => {
            errors.push(format!("at /metadata/name: {} is not a string (keyword: type)", short(other)))
        }
    }
    match (meta.get("namespace"), scope) {
        (None, _) => {}
        (Some(_), Scope::Cluster) => errors.push(
            "at /metadata/namespace: the kind is cluster-scoped and takes no namespace (keyword: scope)"
                .into(),
        ),
        (Some(Value::String(ns)), Scope::Namespaced) if is_dns1123_label(ns) => {}
        (Some(ns), Scope::Namespaced) => errors.push(format!(
            "at /metadata/namespace: {} is not a DNS-1123 label (keyword: metadata.namespace)",
            short(ns)
        )),
    }
    for (field, values_are_labels) in [("labels", true), ("annotations", false)] {
        let Some(map) = meta.get(field) else { continue };
        let path = format!("/metadata/{field}");
        let Some(map) = map.as_object() else {
            errors.push(format!("at {path}: {} is not an object (keyword: type)", short(map)));
            continue;
        };
        for (key, value) in map {
            let at = pointer_push(&path, key);
            if !is_qualified_name(key) {
                errors.push(format!("at {at}: {key:?} is not a qualified name (keyword: metadata.{field})"));
            }
            match value {
                Value::String(v) if values_are_labels && !(v.is_empty() || is_qualified_name_part(v)) => {
                    errors
                        .push(format!("at {at}: {v:?} is not a valid label value (keyword: metadata.labels)"))
                }
                Value::String(_) => {}
                other => errors.push(format!("at {at}: {} is not a string (keyword: type)", short(other))),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Defaulting and the structural walk (pruning, list types, integer formats, CEL rules).

fn is_true(schema: &Value, key: &str) -> bool {
    schema.get(key) == Some(&Value::Bool(true))
}

/// Applies `default`s the way the API server does before validation: a property missing from an
/// object gets its schema's default, then defaults apply inside it. The root `metadata` is left alone.
fn apply_defaults(schema: &Value, value: &mut Value, root: bool) {
    match value {
        Value::Object(obj) => {
            let props = schema.get("properties").and_then(Value::as_object);
            if let Some(props) = props {
                for (key, sub) in props {
                    if root && key == "metadata" {
                        continue;
                    }
                    if let Some(default) = sub.get("default") {
                        obj.entry(key.clone()).or_insert_with(|| default.clone());
                    }
                }
            }
            let additional = schema.get("additionalProperties").filter(|s| s.is_object());
            for (key, child) in obj.iter_mut() {
                if root && key == "metadata" {
                    continue;
                }
                if let Some(sub) = props.and_then(|p| p.get(key)).or(additional) {
                    apply_defaults(sub, child, false);
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items").filter(|s| s.is_object()) {
                for item in items {
                    apply_defaults(sub, item, false);
                }
            }
        }
        _ => {}
    }
}

struct Walk {
    errors: Vec<String>,
    rules: Vec<String>,
}

fn walk(schema: &Value, value: &Value, path: &str, root: bool, out: &mut Walk) {
    if let Some(rules) = schema.get("x-kubernetes-validations").and_then(Value::as_array) {
        for rule in rules {
            let text = rule["rule"].as_str().unwrap_or_default();
            if mentions_old_self(text) && !is_true(rule, "optionalOldSelf") {
                continue; // a transition rule: only evaluated on update
            }
            let message =
                rule["message"].as_str().or(rule["messageExpression"].as_str()).unwrap_or("(no message)");
            let at = if path.is_empty() { "/" } else { path };
            out.rules.push(format!(
                "at {at}: {message} [rule: {}]",
                text.split_whitespace().collect::<Vec<_>>().join(" ")
            ));
        }
    }
    if let (Some(format), Some(n)) = (schema.get("format").and_then(Value::as_str), value.as_number()) {
        let range = match format {
            "int32" => Some((i64::from(i32::MIN), i64::from(i32::MAX))),
            "int64" => Some((i64::MIN, i64::MAX)),
            _ => None,
        };
        if let Some((lo, hi)) = range {
            if !n.as_i64().is_some_and(|i| (lo..=hi).contains(&i)) && (n.is_i64() || n.is_u64()) {
                out.errors
                    .push(format!("at {path}: {n} is out of the range of format {format} (keyword: format)"));
            }
        }
    }
    match value {
        Value::Object(obj) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let preserve = is_true(schema, "x-kubernetes-preserve-unknown-fields");
            let embedded = is_true(schema, "x-kubernetes-embedded-resource");
            for (key, child) in obj {
                let at = pointer_push(path, key);
                if root && key == "metadata" {
                    continue; // ObjectMeta: checked by check_metadata
                }
                if let Some(sub) = props.and_then(|p| p.get(key)) {
                    walk(sub, child, &at, false, out);
                } else if let Some(sub) = additional.filter(|a| a.is_object()) {
                    walk(sub, child, &at, false, out);
                } else if additional == Some(&Value::Bool(true)) || preserve {
                    // kept as is, unchecked
                } else if (root || embedded) && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    // always kept
                } else {
                    let known: Vec<&str> =
                        props.map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default();
                    out.errors.push(format!(
                        "at {at}: unknown field {key:?}, Kubernetes would prune it (keyword: properties; known here: {})",
                        if known.is_empty() { "none".to_string() } else { known.join(", ") }
                    ));
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items").filter(|s| s.is_object()) {
                for (i, item) in items.iter().enumerate() {
                    walk(sub, item, &format!("{path}/{i}"), false, out);
                }
            }
            check_list_type(schema, items, path, out);
        }
        _ => {}
    }
}

fn mentions_old_self(rule: &str) -> bool {
    rule.match_indices("oldSelf").any(|(i, _)| {
        let before = rule[..i].chars().next_back();
        let after = rule[i + "oldSelf".len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

fn check_list_type(schema: &Value, items: &[Value], path: &str, out: &mut Walk) {
    match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => {
            for (i, item) in items.iter().enumerate() {
                if let Some(j) = items[..i].iter().position(|earlier| earlier == item) {
                    out.errors.push(format!(
                        "at {path}/{i}: duplicate of item {j} ({}) in a list of x-kubernetes-list-type set \
                         (keyword: x-kubernetes-list-type)",
                        short(item)
                    ));
                }
            }
        }
        Some("map") => {
            let keys: Vec<&str> = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut seen: Vec<Vec<&Value>> = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let tuple: Vec<&Value> = keys.iter().map(|k| item.get(*k).unwrap_or(&Value::Null)).collect();
                if let Some(j) = seen.iter().position(|t| *t == tuple) {
                    out.errors.push(format!(
                        "at {path}/{i}: same [{}] as item {j} ({}) in a list of x-kubernetes-list-type map \
                         (keyword: x-kubernetes-list-map-keys)",
                        keys.join(", "),
                        tuple.iter().map(|v| short(v)).collect::<Vec<_>>().join(", ")
                    ));
                }
                seen.push(tuple);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// The public checks.

/// Validates one manifest (a JSON value) against its vendored CRD; Err names the resource, and
/// each violation's JSON path and keyword, one per line.
pub fn validate(manifest: &Value) -> Result<(), String> {
    let (crd, version) = resolve(manifest).map_err(|e| format!("{}: {e}", ident(manifest)))?;
    let mut errors = Vec::new();
    check_metadata(manifest, crd.scope, &mut errors);

    let mut defaulted = manifest.clone();
    apply_defaults(&version.schema, &mut defaulted, true);

    let mut walked = Walk { errors: Vec::new(), rules: Vec::new() };
    walk(&version.schema, &defaulted, "", true, &mut walked);
    errors.append(&mut walked.errors);

    let validator = validator(crd, version)?;
    for e in validator.iter_errors(&defaulted) {
        let path = e.instance_path().to_string();
        let path = if path.is_empty() { "/".to_string() } else { path };
        let message = truncate(&e.to_string(), MAX_MESSAGE);
        errors.push(format!(
            "at {path}: {message} (keyword: {}, schema: #{})",
            e.kind().keyword(),
            e.schema_path()
        ));
    }
    if errors.is_empty() {
        return Ok(());
    }
    errors.sort();
    errors.dedup();
    Err(format!(
        "{} ({}/{}): {} violation(s) of {}:\n  {}",
        ident(manifest),
        crd.group,
        version.name,
        errors.len(),
        crd.file,
        errors.join("\n  ")
    ))
}

/// The `x-kubernetes-validations` (CEL) rules that apply to the fields present in `manifest` (after
/// defaulting), as `at <path>: <message> [rule: <CEL>]`; none is evaluated here. Transition rules
/// (those using `oldSelf`, unless `optionalOldSelf`) are left out: they only run on update. Empty if
/// the manifest has no vendored CRD.
pub fn unevaluated_rules(manifest: &Value) -> Vec<String> {
    let Ok((_, version)) = resolve(manifest) else { return Vec::new() };
    let mut defaulted = manifest.clone();
    apply_defaults(&version.schema, &mut defaulted, true);
    let mut walked = Walk { errors: Vec::new(), rules: Vec::new() };
    walk(&version.schema, &defaulted, "", true, &mut walked);
    let id = ident(manifest);
    walked.rules.into_iter().map(|r| format!("{id}: {r}")).collect()
}

/// The manifests of a multi-document YAML text, `kind: List` (v1) expanded into its items.
pub fn manifests(yaml: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for doc in documents(yaml)? {
        if doc["apiVersion"] == "v1" && doc["kind"] == "List" {
            let items = doc["items"].as_array().ok_or("a v1 List without `items`")?;
            out.extend(items.iter().cloned());
        } else {
            out.push(doc);
        }
    }
    Ok(out)
}

/// YAML 1.1 booleans that YAML 1.2 (serde_norway, and this validator) reads as strings.
const YAML11_BOOLEANS: &[&str] =
    &["y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF"];

/// Plain (unquoted) scalars, keys or values in block style, that kubectl reads differently: its YAML
/// parser (go-yaml v2 under sigs.k8s.io/yaml) follows YAML 1.1, where `yes`, `on`, `y`, `off`... are
/// booleans, while serde_norway (YAML 1.2) reads and writes them as plain strings. A line scan:
/// block scalars (`|`, `>`) are skipped, flow collections (`[on]`, `{a: on}`) are not looked into.
/// Each entry is `line N: ...`.
pub fn yaml11_ambiguities(yaml: &str) -> Vec<String> {
    let mut found = Vec::new();
    // Inside a block scalar: the indentation of the line that opened it.
    let mut block: Option<usize> = None;
    for (n, line) in yaml.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let text = line.trim();
        if let Some(parent) = block {
            if text.is_empty() || indent > parent {
                continue;
            }
            block = None;
        }
        if text.is_empty() || text.starts_with('#') || text.starts_with("---") || text.starts_with("...") {
            continue;
        }
        // Sequence dashes, then an optional `key:`, then the value.
        let mut rest = text;
        while let Some(r) = rest.strip_prefix("- ").or_else(|| (rest == "-").then_some("")) {
            rest = r.trim_start();
        }
        let (key, value) = split_key(rest);
        let value = strip_comment(value).trim();
        if let Some(key) = key {
            if YAML11_BOOLEANS.contains(&key) {
                found.push(format!(
                    "line {}: plain key `{key}` is a boolean to kubectl (YAML 1.1): quote it",
                    n + 1
                ));
            }
        }
        if YAML11_BOOLEANS.contains(&value) {
            found.push(format!(
                "line {}: plain `{value}` is a boolean to kubectl (YAML 1.1): quote it",
                n + 1
            ));
        }
        let header = value.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-' || c == '+');
        if header == "|" || header == ">" {
            block = Some(indent);
        }
    }
    found
}

/// `key: value` into (Some(key), value); a plain or quoted key, as block mappings write them.
fn split_key(text: &str) -> (Option<&str>, &str) {
    let key_end = match text.chars().next() {
        Some(q @ ('\'' | '"')) => text[1..].find(q).map(|i| i + 2),
        _ => text.find(": ").or_else(|| text.ends_with(':').then(|| text.len() - 1)),
    };
    match key_end {
        Some(end)
            if text[end..].starts_with(':')
                && (text.len() == end + 1 || text[end + 1..].starts_with(' ')) =>
        {
            (Some(&text[..end]), &text[end + 1..])
        }
        _ => (None, text),
    }
}

/// A plain value without its trailing ` # comment`.
fn strip_comment(value: &str) -> &str {
    let value = value.trim_start();
    if value.starts_with('\'') || value.starts_with('"') {
        return value;
    }
    value.find(" #").map_or(value, |i| &value[..i])
}

/// Validates every manifest of a multi-document YAML text (see [`manifests`]); Ok is how many were
/// validated, Err every failure of every manifest, and every [`yaml11_ambiguities`] of the text.
pub fn validate_all(yaml_multi_doc: &str) -> Result<usize, String> {
    let manifests = manifests(yaml_multi_doc)?;
    let mut errors: Vec<String> = yaml11_ambiguities(yaml_multi_doc);
    errors.extend(
        manifests
            .iter()
            .enumerate()
            .filter_map(|(i, m)| validate(m).err().map(|e| format!("manifest #{}: {e}", i + 1))),
    );
    if errors.is_empty() {
        Ok(manifests.len())
    } else {
        Err(errors.join("\n"))
    }
}

/// [`unevaluated_rules`] of every manifest of a multi-document YAML text.
pub fn unevaluated_rules_all(yaml_multi_doc: &str) -> Result<Vec<String>, String> {
    Ok(manifests(yaml_multi_doc)?.iter().flat_map(unevaluated_rules).collect())
}

/// Panics (with every violation and the manifest) unless `manifest` is valid.
#[track_caller]
pub fn assert_valid(manifest: &Value) {
    if let Err(errors) = validate(manifest) {
        let pretty = serde_json::to_string_pretty(manifest).unwrap_or_else(|_| manifest.to_string());
        panic!("{errors}\nmanifest:\n{pretty}");
    }
}

/// Panics unless every manifest of the YAML text is valid; returns how many there were.
#[track_caller]
pub fn assert_all_valid(yaml_multi_doc: &str) -> usize {
    validate_all(yaml_multi_doc).unwrap_or_else(|e| panic!("{e}"))
}
