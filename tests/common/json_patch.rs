//! Applies an Envoy Gateway `EnvoyPatchPolicy`'s `jsonPatches` to xDS resources (as JSON with proto field
//! names, the form Envoy Gateway patches), the way Envoy Gateway does (`internal/xds/translator/
//! jsonpatch.go` and `internal/utils/jsonpatch/` in envoyproxy/gateway at d32f282942):
//!
//! - each patch names its resource by `type` (Listener, RouteConfiguration, Cluster) and `name`;
//! - an `operation` with a `jsonPath` is first resolved against the document as patched so far: each
//!   node it selects becomes a JSON pointer, with `path` appended; an operation whose `jsonPath` selects
//!   nothing is an error; without `jsonPath`, `path` is the pointer;
//! - RFC 6902 `add`, `remove`, `replace`, `move`, `copy`, `test`, with evanphx/json-patch v5's
//!   `EnsurePathExistsOnAdd`: an `add` creates missing parents, an array where the next token is an
//!   index or `-`, an object otherwise.
//!
//! JSONPath: the subset the generator uses and Envoy Gateway's ojg supports: `$`, `.name`, `['name']`,
//! `[N]`, `[*]` and filters `[?(@.field=='string')]`. Anything else is an error, and so is every patch
//! that Envoy Gateway would reject (where it would skip that patch and report it in the policy's status),
//! so a patch cannot pass unapplied.

use serde_json::{Map, Value};

/// One xDS resource as Envoy Gateway holds it: its type URL, name and JSON.
#[derive(Debug, Clone)]
pub struct Resource {
    pub type_url: String,
    pub value: Value,
}

/// Applies every patch of `policy` (an EnvoyPatchPolicy manifest) to `resources`, in order.
pub fn apply_policy(resources: &mut [Resource], policy: &Value) -> Result<usize, String> {
    if policy["spec"]["type"] != "JSONPatch" {
        return Err(format!("spec.type {} is not JSONPatch", policy["spec"]["type"]));
    }
    let patches = policy["spec"]["jsonPatches"].as_array().ok_or("no spec.jsonPatches")?;
    for (i, p) in patches.iter().enumerate() {
        let (type_url, name) =
            (p["type"].as_str().unwrap_or_default(), p["name"].as_str().unwrap_or_default());
        let target = resources
            .iter_mut()
            .find(|r| r.type_url == type_url && r.value["name"] == name)
            .ok_or_else(|| format!("jsonPatches[{i}]: no {type_url} named {name}"))?;
        apply_operation(&mut target.value, &p["operation"])
            .map_err(|e| format!("jsonPatches[{i}] ({name}): {e}"))?;
        // Envoy Gateway reads each patched resource back into its proto and validates it, patch by
        // patch, and skips a patch that fails: the state after every patch must be a valid resource.
        valid_after_patch(&target.value).map_err(|e| format!("jsonPatches[{i}] ({name}) leaves {e}"))?;
    }
    Ok(patches.len())
}

/// The proto rules a patched resource most easily breaks, checked as Envoy Gateway's read-back and
/// validation would: every route has exactly one of the route action's cluster specifiers (the `oneof`
/// cannot hold two; validation wants one).
fn valid_after_patch(resource: &Value) -> Result<(), String> {
    const SPECIFIERS: [&str; 5] = [
        "cluster",
        "cluster_header",
        "weighted_clusters",
        "cluster_specifier_plugin",
        "inline_cluster_specifier_plugin",
    ];
    for vh in resource["virtual_hosts"].as_array().into_iter().flatten() {
        for r in vh["routes"].as_array().into_iter().flatten() {
            let Some(action) = r.get("route") else { continue };
            let set = SPECIFIERS.iter().filter(|k| action.get(**k).is_some()).count();
            if set != 1 {
                return Err(format!("route {} with {set} cluster specifiers", r["name"]));
            }
        }
    }
    Ok(())
}

/// One `operation` (`op`, `jsonPath`, `path`, `from`, `value`) on `doc`.
pub fn apply_operation(doc: &mut Value, operation: &Value) -> Result<(), String> {
    let op = operation["op"].as_str().ok_or("no op")?;
    let path = operation["path"].as_str().unwrap_or("");
    let pointers = match operation["jsonPath"].as_str() {
        Some(json_path) => {
            let found = select(doc, json_path)?;
            if found.is_empty() {
                return Err(format!("jsonPath {json_path} selects nothing"));
            }
            found.into_iter().map(|p| concat(&p, path)).collect()
        }
        None => vec![path.to_string()],
    };
    for pointer in pointers {
        apply_rfc6902(
            doc,
            op,
            &pointer,
            operation.get("from").and_then(Value::as_str),
            operation.get("value"),
        )
        .map_err(|e| format!("{op} {pointer}: {e}"))?;
    }
    Ok(())
}

/// Envoy Gateway's `concat`: the pointer, then `path` (one `/` between).
fn concat(pointer: &str, path: &str) -> String {
    if path.is_empty() {
        return pointer.to_string();
    }
    format!("{}/{}", pointer.trim_end_matches('/'), path.trim_start_matches('/'))
}

fn tokens(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let rest = pointer.strip_prefix('/').ok_or_else(|| format!("pointer {pointer} does not start with /"))?;
    Ok(rest.split('/').map(|t| t.replace("~1", "/").replace("~0", "~")).collect())
}

fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// RFC 6902, with `EnsurePathExistsOnAdd`.
fn apply_rfc6902(
    doc: &mut Value,
    op: &str,
    pointer: &str,
    from: Option<&str>,
    value: Option<&Value>,
) -> Result<(), String> {
    let need_value = || value.cloned().ok_or_else(|| "no value".to_string());
    match op {
        "add" => {
            let v = need_value()?;
            add(doc, &tokens(pointer)?, v, true)
        }
        "remove" => remove(doc, &tokens(pointer)?).map(|_| ()),
        "replace" => {
            let v = need_value()?;
            let target = get_mut(doc, &tokens(pointer)?).ok_or("replace: no such location")?;
            *target = v;
            Ok(())
        }
        "move" => {
            let from = tokens(from.ok_or("move without from")?)?;
            let v = remove(doc, &from)?;
            add(doc, &tokens(pointer)?, v, false)
        }
        "copy" => {
            let from = tokens(from.ok_or("copy without from")?)?;
            let v = get_mut(doc, &from).ok_or("copy: no such from")?.clone();
            add(doc, &tokens(pointer)?, v, false)
        }
        "test" => {
            let v = need_value()?;
            let found = get_mut(doc, &tokens(pointer)?).ok_or("test: no such location")?;
            if *found == v {
                Ok(())
            } else {
                Err(format!("test failed: {found} != {v}"))
            }
        }
        other => Err(format!("unknown op {other}")),
    }
}

fn get_mut<'a>(doc: &'a mut Value, tokens: &[String]) -> Option<&'a mut Value> {
    let mut at = doc;
    for t in tokens {
        at = match at {
            Value::Object(m) => m.get_mut(t)?,
            Value::Array(a) => a.get_mut(t.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(at)
}

fn add(doc: &mut Value, tokens: &[String], value: Value, ensure: bool) -> Result<(), String> {
    let Some((last, parents)) = tokens.split_last() else {
        *doc = value;
        return Ok(());
    };
    let mut at = doc;
    for (i, t) in parents.iter().enumerate() {
        let next_is_index = {
            let next = tokens.get(i + 1).map(String::as_str).unwrap_or("");
            next == "-" || next.parse::<usize>().is_ok()
        };
        at = match at {
            Value::Object(m) => {
                if !m.contains_key(t) {
                    if !ensure {
                        return Err(format!("no {t}"));
                    }
                    let fresh =
                        if next_is_index { Value::Array(Vec::new()) } else { Value::Object(Map::new()) };
                    m.insert(t.clone(), fresh);
                }
                m.get_mut(t).ok_or("unreachable")?
            }
            Value::Array(a) => {
                let i: usize = t.parse().map_err(|_| format!("{t} is not an index"))?;
                a.get_mut(i).ok_or_else(|| format!("index {i} out of range"))?
            }
            other => return Err(format!("{t}: cannot descend into {other}")),
        };
    }
    match at {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) if last == "-" => {
            a.push(value);
            Ok(())
        }
        Value::Array(a) => {
            let i: usize = last.parse().map_err(|_| format!("{last} is not an index"))?;
            if i > a.len() {
                return Err(format!("index {i} out of range"));
            }
            a.insert(i, value);
            Ok(())
        }
        other => Err(format!("cannot add {last} to {other}")),
    }
}

fn remove(doc: &mut Value, tokens: &[String]) -> Result<Value, String> {
    let (last, parents) = tokens.split_last().ok_or("cannot remove the whole document")?;
    match get_mut(doc, parents).ok_or("remove: no such parent")? {
        Value::Object(m) => m.remove(last).ok_or_else(|| format!("remove: no {last}")),
        Value::Array(a) => {
            let i: usize = last.parse().map_err(|_| format!("{last} is not an index"))?;
            if i >= a.len() {
                return Err(format!("remove: index {i} out of range"));
            }
            Ok(a.remove(i))
        }
        _ => Err("remove: parent is not a container".into()),
    }
}

/// One step of a JSONPath.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Child(String),
    Index(usize),
    All,
    Filter { field: String, equals: String },
}

fn parse_path(path: &str) -> Result<Vec<Step>, String> {
    let mut rest = path.strip_prefix('$').ok_or_else(|| format!("{path}: must start with $"))?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("..") {
            return Err(format!("descendant segment ..{r} is not supported"));
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let (name, after) = r.split_at(end);
            if name.is_empty() {
                return Err(format!("{path}: empty name"));
            }
            steps.push(if name == "*" { Step::All } else { Step::Child(name.to_string()) });
            rest = after;
        } else if let Some(r) = rest.strip_prefix("[?(") {
            // [?(@.field=='value')]
            let end = r.find(")]").ok_or_else(|| format!("{path}: unclosed filter"))?;
            let (expr, after) = (&r[..end], &r[end + 2..]);
            let (lhs, rhs) =
                expr.split_once("==").ok_or_else(|| format!("filter {expr}: only == is supported"))?;
            let field =
                lhs.trim().strip_prefix("@.").ok_or_else(|| format!("filter {expr}: @.field expected"))?;
            let rhs = rhs.trim();
            let equals = rhs
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .ok_or_else(|| format!("filter {expr}: a '…' string expected"))?;
            steps.push(Step::Filter { field: field.to_string(), equals: equals.to_string() });
            rest = after;
        } else if let Some(r) = rest.strip_prefix("['") {
            let end = r.find("']").ok_or_else(|| format!("{path}: unclosed ['"))?;
            steps.push(Step::Child(r[..end].to_string()));
            rest = &r[end + 2..];
        } else if let Some(r) = rest.strip_prefix("[*]") {
            steps.push(Step::All);
            rest = r;
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').ok_or_else(|| format!("{path}: unclosed ["))?;
            let i =
                r[..end].parse::<usize>().map_err(|_| format!("{path}: [{}] is not supported", &r[..end]))?;
            steps.push(Step::Index(i));
            rest = &r[end + 1..];
        } else {
            return Err(format!("{path}: cannot read {rest}"));
        }
    }
    if steps.is_empty() {
        return Err("Using only Root ('$') in json path expression is not allowed!".into());
    }
    Ok(steps)
}

/// The JSON pointers of the nodes `json_path` selects in `doc`, in document order.
pub fn select(doc: &Value, json_path: &str) -> Result<Vec<String>, String> {
    let steps = parse_path(json_path)?;
    let mut at: Vec<(String, &Value)> = vec![(String::new(), doc)];
    for step in &steps {
        let mut next = Vec::new();
        for (pointer, v) in at {
            match (step, v) {
                (Step::Child(name), Value::Object(m)) => {
                    if let Some(c) = m.get(name) {
                        next.push((format!("{pointer}/{}", escape(name)), c));
                    }
                }
                (Step::Index(i), Value::Array(a)) => {
                    if let Some(c) = a.get(*i) {
                        next.push((format!("{pointer}/{i}"), c));
                    }
                }
                (Step::All, Value::Array(a)) => {
                    next.extend(a.iter().enumerate().map(|(i, c)| (format!("{pointer}/{i}"), c)));
                }
                (Step::All, Value::Object(m)) => {
                    next.extend(m.iter().map(|(k, c)| (format!("{pointer}/{}", escape(k)), c)));
                }
                (Step::Filter { field, equals }, Value::Array(a)) => {
                    for (i, c) in a.iter().enumerate() {
                        if c.get(field).and_then(Value::as_str) == Some(equals.as_str()) {
                            next.push((format!("{pointer}/{i}"), c));
                        }
                    }
                }
                (Step::Filter { field, equals }, Value::Object(m)) => {
                    for (k, c) in m {
                        if c.get(field).and_then(Value::as_str) == Some(equals.as_str()) {
                            next.push((format!("{pointer}/{}", escape(k)), c));
                        }
                    }
                }
                _ => {}
            }
        }
        at = next;
    }
    Ok(at.into_iter().map(|(p, _)| p).collect())
}
