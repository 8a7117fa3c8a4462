//! A small ordered tree and its YAML rendering, for the generated Envoy configs. Keys keep the order they
//! were written in, so the output reads like a hand-written Envoy config; strings are quoted whenever a
//! plain scalar could be misread.

/// A YAML value.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Map(Vec<(String, Node)>),
    List(Vec<Node>),
    Str(String),
    Int(i64),
    Bool(bool),
}

/// A map from `(key, value)` pairs.
pub fn map<const N: usize>(pairs: [(&str, Node); N]) -> Node {
    Node::Map(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// A string.
pub fn s(v: impl Into<String>) -> Node {
    Node::Str(v.into())
}

/// An integer.
pub fn int(v: impl Into<i64>) -> Node {
    Node::Int(v.into())
}

impl Node {
    /// Adds a key to a map (no-op on other nodes).
    pub fn with(mut self, key: &str, value: Node) -> Node {
        if let Node::Map(pairs) = &mut self {
            pairs.push((key.to_string(), value));
        }
        self
    }

    /// Renders as a YAML document.
    pub fn render(&self) -> String {
        let mut out = String::new();
        match self {
            Node::Map(pairs) if !pairs.is_empty() => write_map(&mut out, pairs, 0),
            other => {
                write_inline(&mut out, other);
                out.push('\n');
            }
        }
        out
    }
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn is_block(node: &Node) -> bool {
    match node {
        Node::Map(p) => !p.is_empty(),
        Node::List(l) => !l.is_empty(),
        Node::Str(s) => literal_ok(s),
        _ => false,
    }
}

fn is_short_scalar(node: &Node) -> bool {
    match node {
        Node::Str(s) => !literal_ok(s) && s.len() < 40,
        Node::Int(_) | Node::Bool(_) => true,
        _ => false,
    }
}

fn write_map(out: &mut String, pairs: &[(String, Node)], level: usize) {
    for (k, v) in pairs {
        indent(out, level);
        write_scalar(out, k);
        out.push(':');
        write_value(out, v, level);
    }
}

/// Writes what follows `key:` (or `- `), including the newline.
fn write_value(out: &mut String, v: &Node, level: usize) {
    match v {
        Node::Map(p) if !p.is_empty() => {
            out.push('\n');
            write_map(out, p, level + 2);
        }
        Node::List(l) if !l.is_empty() && !l.iter().all(is_short_scalar) => {
            out.push('\n');
            write_list(out, l, level);
        }
        Node::Str(s) if literal_ok(s) => {
            out.push_str(if s.ends_with('\n') { " |\n" } else { " |-\n" });
            for line in s.lines() {
                if !line.is_empty() {
                    indent(out, level + 2);
                    out.push_str(line);
                }
                out.push('\n');
            }
        }
        other => {
            out.push(' ');
            write_inline(out, other);
            out.push('\n');
        }
    }
}

fn write_list(out: &mut String, items: &[Node], level: usize) {
    for item in items {
        indent(out, level);
        out.push('-');
        match item {
            Node::Map(p) if !p.is_empty() => {
                // First pair on the dash line, the rest aligned under it.
                let (k, v) = &p[0];
                out.push(' ');
                write_scalar(out, k);
                out.push(':');
                write_value(out, v, level + 2);
                write_map(out, &p[1..], level + 2);
            }
            other if is_block(other) => write_value(out, other, level),
            other => {
                out.push(' ');
                write_inline(out, other);
                out.push('\n');
            }
        }
    }
}

fn write_inline(out: &mut String, v: &Node) {
    match v {
        Node::Map(p) if p.is_empty() => out.push_str("{}"),
        Node::List(l) if l.is_empty() => out.push_str("[]"),
        Node::Map(p) => {
            out.push('{');
            for (i, (k, v)) in p.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_scalar(out, k);
                out.push_str(": ");
                write_inline(out, v);
            }
            out.push('}');
        }
        Node::List(l) => {
            out.push('[');
            for (i, v) in l.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_inline(out, v);
            }
            out.push(']');
        }
        Node::Str(s) => write_scalar(out, s),
        Node::Int(n) => out.push_str(&n.to_string()),
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
    }
}

/// A string as a plain scalar when that is unambiguous, else JSON-quoted (valid YAML double quotes).
fn write_scalar(out: &mut String, s: &str) {
    if plain_ok(s) {
        out.push_str(s);
    } else {
        out.push_str(&serde_json::Value::String(s.to_string()).to_string());
    }
}

fn plain_ok(s: &str) -> bool {
    let first_ok = s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'/' || b == b'_');
    let chars_ok = s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b));
    let reserved = matches!(
        s.to_ascii_lowercase().as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
    );
    first_ok && chars_ok && !reserved
}

/// Multi-line text without characters that would need escaping goes in a literal block.
fn literal_ok(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with([' ', '\n'])
        && s.bytes().all(|b| b == b'\n' || (b' '..=b'~').contains(&b))
        && !s.lines().any(|l| l.ends_with(' '))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn renders_nested_maps_lists_and_quotes() {
        let doc = map([
            ("a", map([("@type", s("x.y/Z")), ("num", int(3)), ("t", s("true"))])),
            ("list", Node::List(vec![map([("name", s("c1")), ("port", int(80))]), s("plain")])),
            ("empty", map([])),
            ("codes", Node::List(vec![int(401), int(429)])),
            ("text", s("{\n  \"k\": 1\n}\n")),
            ("flag", Node::Bool(true)),
            ("odd", s("a: b")),
        ]);
        let want = "a:\n  \"@type\": x.y/Z\n  num: 3\n  t: \"true\"\nlist:\n- name: c1\n  port: 80\n- plain\n\
                    empty: {}\ncodes: [401, 429]\ntext: |\n  {\n    \"k\": 1\n  }\nflag: true\nodd: \"a: b\"\n";
        assert_eq!(doc.render(), want);
    }
}
