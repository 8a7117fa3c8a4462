//! Applies an Istio `EnvoyFilter`'s `configPatches` to an Envoy bootstrap config (as JSON), the way
//! istiod would to the config it generates for the matched proxy, for the patch kinds and matches the
//! generator uses: `CLUSTER` (by `service` and `portNumber`), `VIRTUAL_HOST` and `HTTP_ROUTE` (by virtual
//! host and route name), `HTTP_FILTER` and `NETWORK_FILTER` (by listener port and filter names), with
//! `MERGE` and `INSERT_BEFORE`. Anything else is an error, so a new patch cannot pass unapplied.
//!
//! `MERGE` follows protobuf merge semantics, as istiod's does: messages merge field by field, repeated
//! fields append, scalars are replaced, a map's entries replace the entries of the same key
//! (`typed_extension_protocol_options`, `typed_per_filter_config`), an `Any` (`typed_config`) of the same
//! type merges and of another type is replaced, and setting one member of the route's cluster-specifier
//! `oneof` clears the others.

use serde_json::{Map, Value};

/// Map fields (proto `map<string, …>`): a merge replaces each entry whole.
const MAP_FIELDS: &[&str] = &["typed_extension_protocol_options", "typed_per_filter_config"];
/// The route action's cluster specifier `oneof`.
const CLUSTER_SPECIFIER: &[&str] = &[
    "cluster",
    "cluster_header",
    "weighted_clusters",
    "cluster_specifier_plugin",
    "inline_cluster_specifier_plugin",
];

/// Applies every patch of `envoy_filter` (its `spec.configPatches`) to `config`; `Err` names the patch
/// that matched nothing or that this applier does not know.
pub fn apply(config: &mut Value, envoy_filter: &Value) -> Result<(), String> {
    let patches = envoy_filter["spec"]["configPatches"].as_array().ok_or("no configPatches")?;
    for (i, p) in patches.iter().enumerate() {
        let applied = apply_one(config, p).map_err(|e| format!("configPatches[{i}]: {e}"))?;
        if applied == 0 {
            return Err(format!("configPatches[{i}] ({}) matched nothing", p["applyTo"]));
        }
    }
    Ok(())
}

fn apply_one(config: &mut Value, p: &Value) -> Result<usize, String> {
    let m = &p["match"];
    if m["context"] != "GATEWAY" {
        return Err(format!("context {} (the fixture is a gateway)", m["context"]));
    }
    let op = p["patch"]["operation"].as_str().unwrap_or_default();
    let value = &p["patch"]["value"];
    let mut applied = 0;
    match (p["applyTo"].as_str().unwrap_or_default(), op) {
        ("CLUSTER", "MERGE") => {
            let name = format!(
                "outbound|{}||{}",
                m["cluster"]["portNumber"],
                m["cluster"]["service"].as_str().ok_or("cluster.service")?
            );
            for c in array_mut(&mut config["static_resources"]["clusters"]) {
                if c["name"] == name.as_str() {
                    merge(c, value);
                    applied += 1;
                }
            }
        }
        (kind @ ("VIRTUAL_HOST" | "HTTP_ROUTE"), "MERGE") => {
            let vhost = &m["routeConfiguration"]["vhost"];
            for hcm in hcms(config, None) {
                for vh in array_mut(&mut hcm["route_config"]["virtual_hosts"]) {
                    if vh["name"] != vhost["name"] {
                        continue;
                    }
                    if kind == "VIRTUAL_HOST" {
                        merge(vh, value);
                        applied += 1;
                        continue;
                    }
                    for r in array_mut(&mut vh["routes"]) {
                        if r["name"] == vhost["route"]["name"] {
                            merge(r, value);
                            applied += 1;
                        }
                    }
                }
            }
        }
        ("HTTP_FILTER", op @ ("MERGE" | "INSERT_BEFORE")) => {
            let listener = &m["listener"];
            let filter = &listener["filterChain"]["filter"];
            if filter["name"] != "envoy.filters.network.http_connection_manager" {
                return Err("HTTP_FILTER outside the HTTP connection manager".into());
            }
            let sub = filter["subFilter"]["name"].as_str().ok_or("subFilter.name")?;
            for hcm in hcms(config, listener["portNumber"].as_u64()) {
                let filters = array_mut(&mut hcm["http_filters"]);
                if let Some(at) = filters.iter().position(|f| f["name"] == sub) {
                    if op == "MERGE" {
                        if let Some(f) = filters.get_mut(at) {
                            merge(f, value);
                        }
                    } else {
                        filters.insert(at, value.clone());
                    }
                    applied += 1;
                }
            }
        }
        ("NETWORK_FILTER", "MERGE") => {
            let listener = &m["listener"];
            let name = &listener["filterChain"]["filter"]["name"];
            for l in array_mut(&mut config["static_resources"]["listeners"]) {
                if !port_matches(l, listener["portNumber"].as_u64()) {
                    continue;
                }
                for chain in array_mut(&mut l["filter_chains"]) {
                    for f in array_mut(&mut chain["filters"]) {
                        if &f["name"] == name {
                            merge(f, value);
                            applied += 1;
                        }
                    }
                }
            }
        }
        (kind, op) => return Err(format!("{kind} {op} is not something this applier knows")),
    }
    Ok(applied)
}

/// The HTTP connection managers' configs, of the listener named for `port` (all when `None`).
fn hcms(config: &mut Value, port: Option<u64>) -> Vec<&mut Value> {
    let mut out = Vec::new();
    for l in array_mut(&mut config["static_resources"]["listeners"]) {
        if !port_matches(l, port) {
            continue;
        }
        for chain in array_mut(&mut l["filter_chains"]) {
            for f in array_mut(&mut chain["filters"]) {
                if f["name"] == "envoy.filters.network.http_connection_manager" {
                    out.push(&mut f["typed_config"]);
                }
            }
        }
    }
    out
}

/// Istio names a gateway's listeners `0.0.0.0_<port>`.
fn port_matches(listener: &Value, port: Option<u64>) -> bool {
    port.is_none_or(|p| listener["name"] == format!("0.0.0.0_{p}").as_str())
}

fn array_mut(v: &mut Value) -> &mut Vec<Value> {
    if !v.is_array() {
        *v = Value::Array(Vec::new());
    }
    match v {
        Value::Array(a) => a,
        _ => unreachable!(),
    }
}

/// Protobuf merge of `src` into `dst` (see the module doc).
pub fn merge(dst: &mut Value, src: &Value) {
    match (dst, src) {
        (Value::Object(d), Value::Object(s)) => {
            if d.get("@type").is_some_and(|t| Some(t) != s.get("@type")) && s.contains_key("@type") {
                *d = s.clone();
                return;
            }
            if s.keys().any(|k| CLUSTER_SPECIFIER.contains(&k.as_str())) {
                d.retain(|k, _| !CLUSTER_SPECIFIER.contains(&k.as_str()));
            }
            for (k, v) in s {
                if MAP_FIELDS.contains(&k.as_str()) {
                    let entries = d.entry(k.clone()).or_insert_with(|| Value::Object(Map::new()));
                    if let (Value::Object(e), Value::Object(new)) = (entries, v) {
                        for (key, entry) in new {
                            e.insert(key.clone(), entry.clone());
                        }
                    }
                    continue;
                }
                match d.get_mut(k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        d.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(d), Value::Array(s)) => d.extend(s.iter().cloned()),
        (d, s) => *d = s.clone(),
    }
}
