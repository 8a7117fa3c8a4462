//! Building the generated Envoy configs as YAML values (`serde_norway`, a fork of the archived `serde_yaml`).
//! Its mappings keep their keys in insertion order, so the output reads like a hand-written Envoy config:
//! `name` before `typed_config`, `@type` first. Quoting and block style are the library's.

pub use serde_norway::Value;

/// A mapping from `(key, value)` pairs, in this order.
pub fn map<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    map_of(pairs.into_iter().map(|(k, v)| (k.to_string(), v)))
}

/// A mapping from computed `(key, value)` pairs, in iteration order.
pub fn map_of(pairs: impl IntoIterator<Item = (String, Value)>) -> Value {
    Value::Mapping(pairs.into_iter().map(|(k, v)| (Value::String(k), v)).collect())
}

/// A sequence.
pub fn list(items: impl IntoIterator<Item = Value>) -> Value {
    Value::Sequence(items.into_iter().collect())
}

/// A string.
pub fn s(v: impl Into<String>) -> Value {
    Value::String(v.into())
}

/// An integer.
pub fn int(v: impl Into<i64>) -> Value {
    Value::Number(v.into().into())
}

/// Adding keys to a mapping built with [`map`].
pub trait With {
    /// Appends `key: value` to a mapping (no-op on other values).
    fn with(self, key: &str, value: Value) -> Value;
}

impl With for Value {
    fn with(mut self, key: &str, value: Value) -> Value {
        if let Value::Mapping(m) = &mut self {
            m.insert(s(key), value);
        }
        self
    }
}

/// Renders as a YAML document, or says which string Envoy would misread.
///
/// The serializer quotes the strings that YAML 1.2 reads as something else (`true`, `12`, `null`), but Envoy
/// parses its config with yaml-cpp, which also takes YAML 1.1's `yes`/`no`/`on`/`off`/`y`/`n` for booleans
/// and `0X1F` for an integer: given such a plain scalar where it wants a string, Envoy refuses the whole
/// config. The serializer cannot be told to quote one scalar, so such a value is refused here, with where it
/// is. (Mapping keys are safe: Envoy reads every key as a string.)
pub fn render(doc: &Value) -> Result<String, String> {
    if let Some(e) = misread(doc, "") {
        return Err(e);
    }
    // Only a non-string mapping key or a tagged value can fail to serialize, and the builders above make
    // neither.
    Ok(serde_norway::to_string(doc).expect("a tree of strings, numbers, booleans, mappings and sequences"))
}

/// The first string value (depth first) that yaml-cpp would read as a boolean or a number, as an error.
fn misread(v: &Value, path: &str) -> Option<String> {
    match v {
        Value::String(s) if envoy_misreads(s) => Some(format!(
            "{path}: {s:?} would be a plain YAML scalar, which Envoy reads as a boolean or a number"
        )),
        Value::Sequence(items) => {
            items.iter().enumerate().find_map(|(i, v)| misread(v, &format!("{path}[{i}]")))
        }
        Value::Mapping(m) => m.iter().find_map(|(k, v)| {
            let key = k.as_str().unwrap_or("?");
            misread(v, &if path.is_empty() { key.to_string() } else { format!("{path}.{key}") })
        }),
        _ => None,
    }
}

/// Strings the serializer leaves unquoted but yaml-cpp does not read as strings: YAML 1.1 booleans in the
/// casings yaml-cpp accepts, and hexadecimal with a capital `0X` (base detection; `0x` gets quoted).
fn envoy_misreads(s: &str) -> bool {
    let bool_word = matches!(
        s,
        "y" | "Y"
            | "yes"
            | "Yes"
            | "YES"
            | "n"
            | "N"
            | "no"
            | "No"
            | "NO"
            | "on"
            | "On"
            | "ON"
            | "off"
            | "Off"
            | "OFF"
    );
    let hex = s
        .trim_start_matches(['+', '-'])
        .strip_prefix("0X")
        .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()));
    bool_word || hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_key_order_and_round_trips() {
        let doc = map([
            ("z", map([("@type", s("x.y/Z")), ("num", int(3)), ("t", s("true"))])),
            ("a", list([map([("name", s("c1")), ("port", int(80))]), s("plain")])),
            ("empty", map([])),
            ("text", s("{\n  \"k\": 1\n}\n")),
            ("flag", Value::Bool(true)),
        ])
        .with("m", map_of([("2".to_string(), int(2)), ("1".to_string(), int(1))]));
        let text = render(&doc).unwrap();
        let keys: Vec<&str> = text.lines().filter(|l| !l.starts_with([' ', '-'])).collect();
        assert_eq!(keys, ["z:", "a:", "empty: {}", "text: |", "flag: true", "m:"], "{text}");
        assert!(text.contains("  '@type': x.y/Z\n  num: 3\n  t: 'true'\n"), "{text}");
        assert!(text.contains("m:\n  '2': 2\n  '1': 1\n"), "{text}");
        assert_eq!(serde_norway::from_str::<Value>(&text).unwrap(), doc);
    }

    #[test]
    fn refuses_strings_envoy_would_not_read_as_strings() {
        for bad in ["ON", "yes", "n", "Off", "0X1F", "-0XAB"] {
            let doc = map([("a", list([map([("b", s(bad))])]))]);
            let e = render(&doc).unwrap_err();
            assert!(e.starts_with(&format!("a[0].b: {bad:?} would be a plain YAML scalar")), "{e}");
        }
        // Quoted by the serializer, or plain and read as strings by Envoy too.
        for fine in
            ["true", "0x1F", "017", "+12", "12", "null", "onion", "oN", "yess", "0X", "0XG", "5s", "alpha|"]
        {
            let text = render(&map([("b", s(fine))])).unwrap();
            assert_eq!(serde_norway::from_str::<Value>(&text).unwrap()["b"], s(fine), "{text}");
        }
        assert!(render(&map([("on", s("x"))])).is_ok(), "keys are always strings to Envoy");
    }
}
