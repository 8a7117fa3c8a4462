//! The brain's architecture, checked mechanically over the source (`src/`):
//!
//! - no module imports one that imports it back, at any level (a parent that uses its children is fine;
//!   a child that then uses its parent's items is a loop);
//! - the layers depend one way: `shell → filter → observe, routing → wire → catalog`, `fnv` a leaf;
//! - only `shell` names proxy-wasm, and nothing outside it reads a clock or the environment.
//!
//! References are read from the text: `crate::a::b` paths, `super::…` paths, and `use child::…` of a
//! module's own children. Test code (`tests.rs`, `*_tests.rs`, `fake_host.rs`, and everything after a
//! file's `#[cfg(test)]` line) is left out: tests may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each top-level module may use.
const LAYERS: &[(&str, &[&str])] = &[
    ("fnv", &[]),
    ("catalog", &["fnv"]),
    ("wire", &["catalog"]),
    ("routing", &["wire", "catalog"]),
    ("observe", &["wire", "catalog"]),
    ("filter", &["observe", "routing", "wire", "catalog", "fnv"]),
    ("shell", &["filter", "observe", "routing", "wire", "catalog", "fnv"]),
];

fn is_test_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name == "tests.rs" || name.ends_with("_tests.rs") || name == "fake_host.rs"
}

/// Every module file under `src/`, by module path (`routing::ranking`; `lib.rs` is the empty path).
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for path in entries {
            let name = path.file_stem().unwrap().to_str().unwrap().to_string();
            if path.is_dir() {
                let mut p = prefix.to_vec();
                p.push(name);
                walk(&path, &p, out);
            } else if path.extension().is_some_and(|e| e == "rs") && !is_test_file(&path) {
                let mut p = prefix.to_vec();
                if name != "mod" && name != "lib" {
                    p.push(name);
                }
                out.insert(p.join("::"), path);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(src, &[], &mut out);
    out
}

/// The file's code without its tests.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        if line.trim() == "#[cfg(test)]" {
            break;
        }
        // Comments may name paths without using them.
        let line = line.split("//").next().unwrap_or("");
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The paths a module's code refers to, as segments from the crate root.
fn references(module: &str, code: &str, children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let here: Vec<String> =
        if module.is_empty() { vec![] } else { module.split("::").map(String::from).collect() };
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = Vec::new();
    // A path from `rest` on, its `{…}` group (after any leading segments) expanded one level.
    let mut push_paths = |mut base: Vec<String>, rest: &str| {
        let head: String = rest.trim_start().chars().take_while(|c| is_ident(*c) || *c == ':').collect();
        base.extend(head.split("::").filter(|s| !s.is_empty()).map(String::from));
        let after = rest.trim_start()[head.len()..].trim_start();
        match after.strip_prefix('{') {
            Some(group) if head.is_empty() || head.ends_with("::") => {
                for item in group.split('}').next().unwrap_or("").split(',') {
                    let item: String =
                        item.trim().chars().take_while(|c| is_ident(*c) || *c == ':').collect();
                    let mut p = base.clone();
                    p.extend(item.split("::").filter(|s| !s.is_empty()).map(String::from));
                    out.push(p);
                }
            }
            _ => out.push(base),
        }
    };
    let mut i = 0;
    let bytes = code.as_bytes();
    while i < code.len() {
        let before_ok = i == 0 || !is_ident(bytes[i - 1] as char) && bytes[i - 1] != b':';
        let rest = &code[i..];
        if before_ok && rest.starts_with("crate::") {
            push_paths(vec![], &rest["crate::".len()..]);
        } else if before_ok && rest.starts_with("super::") {
            // Each `super::` climbs one level from the module's own path.
            let mut base = here.clone();
            let mut r = rest;
            while let Some(after) = r.strip_prefix("super::") {
                base.pop();
                r = after;
            }
            push_paths(base, r);
        } else if before_ok && rest.starts_with("use ") {
            let after = rest["use ".len()..].trim_start();
            let first: String = after.chars().take_while(|c| is_ident(*c)).collect();
            if children.contains(&first) && after[first.len()..].starts_with("::") {
                let mut base = here.clone();
                base.push(first.clone());
                push_paths(base, &after[first.len() + 2..]);
            }
        }
        i += rest.chars().next().map_or(1, char::len_utf8);
    }
    out
}

/// The deepest module a path lands in.
fn resolve(path: &[String], modules: &BTreeMap<String, PathBuf>) -> Option<String> {
    (1..=path.len()).rev().map(|n| path[..n].join("::")).find(|m| modules.contains_key(m))
}

/// Module → the modules it uses (itself left out; its children count: a child that uses its parent's
/// items back is a loop).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join("src");
    let modules = modules(&src);
    let mut graph = BTreeMap::new();
    for (module, path) in &modules {
        let prefix = if module.is_empty() { String::new() } else { format!("{module}::") };
        let children: BTreeSet<String> = modules
            .keys()
            .filter_map(|m| m.strip_prefix(&prefix).filter(|rest| !rest.is_empty() && !rest.contains("::")))
            .map(String::from)
            .collect();
        let mut uses = BTreeSet::new();
        for r in references(module, &code(path), &children) {
            if let Some(target) = resolve(&r, &modules) {
                if target != *module && !target.is_empty() {
                    uses.insert(target);
                }
            }
        }
        graph.insert(module.clone(), uses);
    }
    graph
}

/// A cycle in the graph, if any, as the modules along it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|n| n == next).unwrap();
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(next, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if state.get(node.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(node, graph, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = graph();
    assert!(graph.len() > 30, "the scan found the modules: {:?}", graph.keys().collect::<Vec<_>>());
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import loop: {}", cycle.join(" → "));
    }
}

#[test]
fn layers_depend_one_way() {
    let top = |m: &str| m.split("::").next().unwrap_or("").to_string();
    let mut wrong = Vec::new();
    for (module, uses) in graph() {
        let Some((_, allowed)) = LAYERS.iter().find(|(layer, _)| *layer == top(&module)) else {
            assert!(module.is_empty(), "{module} is in no layer: add it to LAYERS");
            continue;
        };
        for target in uses {
            if top(&target) != top(&module) && !allowed.contains(&top(&target).as_str()) {
                wrong.push(format!("{module} uses {target}"));
            }
        }
    }
    assert!(wrong.is_empty(), "against the layers:\n{}", wrong.join("\n"));
}

#[test]
fn only_the_shell_names_proxy_wasm_and_nothing_else_reads_a_clock_or_the_environment() {
    let src = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join("src");
    for (module, path) in modules(&src) {
        if module == "shell" || module.starts_with("shell::") {
            continue;
        }
        let code = code(&path);
        for forbidden in ["proxy_wasm", "SystemTime", "Instant::", "std::env"] {
            assert!(!code.contains(forbidden), "{} names {forbidden}", path.display());
        }
    }
}

#[test]
fn the_checker_sees_a_loop_and_a_layer_broken() {
    // The checks must be able to fail: a planted loop and a planted upward use are reported.
    let mut g = graph();
    g.get_mut("wire::json").unwrap().insert("wire::chat_request".into());
    assert!(find_cycle(&g).is_some_and(|c| c.contains(&"wire::json".to_string())));
    let children = BTreeSet::new();
    let refs = references(
        "catalog::types",
        "use crate::routing::plan::PlanRecord;\nuse super::ids::{ModelId, x::Y};",
        &children,
    );
    assert_eq!(
        refs,
        [
            vec!["routing".to_string(), "plan".into(), "PlanRecord".into()],
            vec!["catalog".to_string(), "ids".into(), "ModelId".into()],
            vec!["catalog".to_string(), "ids".into(), "x".into(), "Y".into()],
        ]
    );
}
