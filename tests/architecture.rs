//! The brain's architecture, checked mechanically over the source (`src/`):
//!
//! - no module imports one that imports it back, at any level (a parent that uses its children is fine;
//!   a child that then uses its parent's items is a loop);
//! - the layers depend one way: `shell → filter → observe, routing → wire → catalog`, `fnv` a leaf;
//! - only `shell` names proxy-wasm, and nothing outside it reads a clock or the environment.
//!
//! The source is read as text with comments and string contents blanked out. References are `use` trees
//! (nested groups included) and paths in code that start with `crate::`, `super::`, `self::`, a child
//! module's name, or an external crate's. Test code (`tests.rs`, `*_tests.rs`, `fake_host.rs`, and each
//! item behind `#[cfg(test)]`) is left out: tests may reach anywhere.

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

/// External paths only the shell may use.
const SHELL_ONLY: &[&str] = &["proxy_wasm", "std::env", "std::time::SystemTime", "std::time::Instant"];

fn repo() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).to_path_buf()
}

fn is_test_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name == "tests.rs" || name.ends_with("_tests.rs") || name == "fake_host.rs"
}

/// Every module file under `src`, by module path (`routing::ranking`; `lib.rs` is the empty path).
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for path in entries {
            let name = path.file_stem().unwrap().to_str().unwrap().to_string();
            let mut p = prefix.to_vec();
            if path.is_dir() {
                p.push(name);
                walk(&path, &p, out);
            } else if path.extension().is_some_and(|e| e == "rs") && !is_test_file(&path) {
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

/// The code with comments and the contents of string and char literals blanked (quotes kept), so that
/// neither a comment nor a `"http://…"` is read as code.
fn blank(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i < b.len() && !(b[i] == '*' && b.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if c == 'r' && (next == Some('#') || next == Some('"')) && (i == 0 || !is_ident(b[i - 1])) {
            // Raw string r#"…"#.
            let hashes = b[i + 1..].iter().take_while(|c| **c == '#').count();
            if b.get(i + 1 + hashes) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            out.push('"');
            i += 2 + hashes;
            let close: String = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
            while i < b.len() && !b[i..].iter().collect::<String>().starts_with(&close) {
                i += 1;
            }
            out.push('"');
            i += close.len();
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < b.len() && b[i] != '"' {
                i += if b[i] == '\\' { 2 } else { 1 };
            }
            out.push('"');
            i += 1;
        } else if c == '\'' && (b.get(i + 2) == Some(&'\'') || next == Some('\\')) {
            // A char literal ('x', '\n', '\u{…}'); a lifetime has no closing quote.
            let end = b[i + 1..].iter().position(|c| *c == '\'').map_or(b.len(), |p| i + 1 + p);
            out.push_str("' '");
            i = end + 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `code` without the items behind `#[cfg(test)]` (a `mod x;` line or a braced item).
fn without_tests(code: &str) -> String {
    let mut out = String::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        let semi = after.find(';').unwrap_or(after.len());
        let brace = after.find('{').unwrap_or(after.len());
        rest = if semi < brace {
            &after[(semi + 1).min(after.len())..]
        } else {
            let mut depth = 0;
            let mut end = after.len();
            for (k, c) in after.char_indices().skip(brace) {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = k + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            &after[end..]
        };
    }
    out.push_str(rest);
    out
}

/// The paths of a `use` tree (`a::{b, c::{d as e, *}}` → `a::b`, `a::c::d`, `a::c`).
fn use_tree(tree: &str) -> Vec<Vec<String>> {
    fn walk(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
        let tree = tree.trim();
        let (head, group) = match tree.find('{') {
            Some(open) => (&tree[..open], Some(&tree[open + 1..tree.rfind('}').unwrap_or(tree.len())])),
            None => (tree, None),
        };
        let mut path = prefix.to_vec();
        let head = head.split(" as ").next().unwrap_or("");
        path.extend(head.split("::").map(str::trim).filter(|s| !s.is_empty() && *s != "*").map(String::from));
        match group {
            None => out.push(path),
            Some(group) => {
                // Split the group at top-level commas.
                let (mut depth, mut start) = (0, 0);
                let parts: Vec<&str> = group
                    .char_indices()
                    .filter_map(|(k, c)| {
                        match c {
                            '{' => depth += 1,
                            '}' => depth -= 1,
                            ',' if depth == 0 => {
                                let part = &group[start..k];
                                start = k + 1;
                                return Some(part);
                            }
                            _ => {}
                        }
                        None
                    })
                    .collect::<Vec<_>>()
                    .into_iter()
                    .chain(std::iter::once(&group[start..]))
                    .collect();
                for part in parts.into_iter().filter(|p| !p.trim().is_empty()) {
                    if part.trim() == "self" {
                        out.push(path.clone());
                    } else {
                        walk(&path, part, out);
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&[], tree, &mut out);
    out
}

/// The paths a module's code refers to, made absolute: crate paths from the crate root (`["routing",
/// "plan", "PlanRecord"]`), external ones with their crate first (`["std", "env", "var"]`).
fn references(module: &str, code: &str, children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let here: Vec<String> =
        if module.is_empty() { vec![] } else { module.split("::").map(String::from).collect() };
    let absolute = |p: Vec<String>| -> Vec<String> {
        let mut base = here.clone();
        let mut rest = p.as_slice();
        match rest.first().map(String::as_str) {
            Some("crate") => {
                base.clear();
                rest = &rest[1..];
            }
            Some("self") => rest = &rest[1..],
            Some("super") => {
                while rest.first().map(String::as_str) == Some("super") {
                    base.pop();
                    rest = &rest[1..];
                }
            }
            Some(first) if children.contains(first) => {}
            _ => return p, // an external crate (or a local item: not a module path)
        }
        base.extend(rest.iter().cloned());
        base
    };
    let mut out = Vec::new();
    let code = without_tests(&blank(code));
    // `use` declarations, whole trees.
    let mut rest = code.as_str();
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().last();
        let after = &rest[at + 4..];
        let end = after.find(';').unwrap_or(after.len());
        if before.is_none_or(|c| !is_ident(c) && c != ':') {
            out.extend(use_tree(&after[..end]).into_iter().map(absolute));
        }
        rest = &after[end.min(after.len())..];
    }
    // Paths in code: `a::b::c` sequences.
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if is_ident(chars[i]) && (i == 0 || (!is_ident(chars[i - 1]) && chars[i - 1] != ':')) {
            let mut segments = Vec::new();
            let mut j = i;
            loop {
                let start = j;
                while j < chars.len() && is_ident(chars[j]) {
                    j += 1;
                }
                segments.push(chars[start..j].iter().collect::<String>());
                if chars.get(j) == Some(&':')
                    && chars.get(j + 1) == Some(&':')
                    && chars.get(j + 2).is_some_and(|c| is_ident(*c))
                {
                    j += 2;
                } else {
                    break;
                }
            }
            if segments.len() > 1 {
                out.push(absolute(segments));
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// The deepest module a path lands in.
fn resolve(path: &[String], modules: &BTreeMap<String, PathBuf>) -> Option<String> {
    (1..=path.len()).rev().map(|n| path[..n].join("::")).find(|m| modules.contains_key(m))
}

/// Module → (the modules it uses, the external paths it names). A module's children count: a child that
/// uses its parent's items back is a loop.
fn graph(src: &Path) -> BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> {
    let modules = modules(src);
    let mut graph = BTreeMap::new();
    for (module, path) in &modules {
        let prefix = if module.is_empty() { String::new() } else { format!("{module}::") };
        let children: BTreeSet<String> = modules
            .keys()
            .filter_map(|m| m.strip_prefix(&prefix).filter(|rest| !rest.is_empty() && !rest.contains("::")))
            .map(String::from)
            .collect();
        let (mut uses, mut external) = (BTreeSet::new(), BTreeSet::new());
        for r in references(module, &std::fs::read_to_string(path).unwrap(), &children) {
            match resolve(&r, &modules) {
                Some(target) if target != *module && !target.is_empty() => {
                    uses.insert(target);
                }
                Some(_) => {}
                None => {
                    external.insert(r.join("::"));
                }
            }
        }
        graph.insert(module.clone(), (uses, external));
    }
    graph
}

/// A cycle in the module graph, if any, as the modules along it.
fn find_cycle(graph: &BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flat_map(|(uses, _)| uses) {
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

/// Every use against the layers, and every shell-only path named outside the shell.
fn violations(graph: &BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)>) -> Vec<String> {
    let top = |m: &str| m.split("::").next().unwrap_or("").to_string();
    let mut wrong = Vec::new();
    for (module, (uses, external)) in graph {
        let allowed: &[&str] = match LAYERS.iter().find(|(layer, _)| *layer == top(module)) {
            Some((_, allowed)) => allowed,
            None if module.is_empty() => &["fnv", "catalog", "wire", "routing", "observe", "filter", "shell"],
            None => {
                wrong.push(format!("{module} is in no layer"));
                continue;
            }
        };
        for target in uses {
            if top(target) != top(module) && !allowed.contains(&top(target).as_str()) {
                wrong.push(format!("{module} uses {target}"));
            }
        }
        if top(module) != "shell" {
            for path in external {
                if SHELL_ONLY.iter().any(|s| path == s || path.starts_with(&format!("{s}::"))) {
                    wrong.push(format!("{module} names {path}"));
                }
            }
        }
    }
    wrong
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = graph(&repo().join("src"));
    assert!(graph.len() > 30, "the scan found the modules: {:?}", graph.keys().collect::<Vec<_>>());
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import loop: {}", cycle.join(" → "));
    }
}

#[test]
fn layers_depend_one_way_and_only_the_shell_names_proxy_wasm_a_clock_or_the_environment() {
    let wrong = violations(&graph(&repo().join("src")));
    assert!(wrong.is_empty(), "against the architecture:\n{}", wrong.join("\n"));
    // A renamed dependency would hide proxy-wasm from the path check.
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    assert!(!manifest.contains("package = \"proxy-wasm\""), "proxy-wasm is renamed in Cargo.toml");
}

#[test]
fn the_checker_finds_what_is_planted_in_a_source_tree() {
    let dir = std::env::temp_dir().join(format!("llm-router-architecture-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let write = |path: &str, text: &str| {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write("lib.rs", "pub mod catalog;\npub mod wire;\npub mod routing;\n");
    write("catalog/mod.rs", "mod ids;\npub use ids::Id;\n#[cfg(test)]\nmod tests;\npub struct Catalog;\n");
    // A child using its parent's item after a `#[cfg(test)] mod tests;` line, through a nested group.
    write("catalog/ids.rs", "use crate::{wire::text::{hex}, catalog::{Catalog}};\npub struct Id;\n");
    // An expression path upwards, a string and a comment that name a module but are not code.
    write(
        "wire/text.rs",
        "// crate::routing::plan in a comment\npub fn hex() -> &'static str { let _ = \"http://x crate::routing::y\"; crate::routing::plan::X }\n",
    );
    write("wire/mod.rs", "pub mod text;\n");
    write(
        "routing/mod.rs",
        "pub mod plan;\nfn f() { let _ = std::env::var(\"X\"); }\nuse std::{time::{Instant, Duration}};\n",
    );
    write("routing/plan.rs", "pub const X: &str = \"\";\n");
    let g = graph(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    let cycle = find_cycle(&g).expect("the catalog ↔ catalog::ids loop");
    assert!(
        cycle.contains(&"catalog::ids".to_string()) && cycle.contains(&"catalog".to_string()),
        "{cycle:?}"
    );
    let wrong = violations(&g);
    for want in [
        "catalog::ids uses wire::text",
        "wire::text uses routing::plan",
        "routing names std::env::var",
        "routing names std::time::Instant",
    ] {
        assert!(wrong.iter().any(|w| w == want), "{want} in {wrong:?}");
    }
    assert!(!wrong.iter().any(|w| w.contains("routing::y")), "a string is not code: {wrong:?}");
    assert_eq!(
        use_tree("crate::{a::{b, c::d as e}, f, g::*}"),
        [
            vec!["crate".to_string(), "a".into(), "b".into()],
            vec!["crate".to_string(), "a".into(), "c".into(), "d".into()],
            vec!["crate".to_string(), "f".into()],
            vec!["crate".to_string(), "g".into()],
        ]
    );
}
