//! JSON read at the top level only: an object's members as raw text with their byte ranges, and a
//! structural scan of valid JSON text (strings and nesting) that finds values without parsing them.
//! Everything below the top level stays bytes: a 100 KB conversation is never built into values.
//! Hand-written scan on the hot path, measured: a full `serde_json::Value` parse of a 100 KB body cost
//! ~330 µs of Envoy CPU, the top-level split ~50 µs, and the scan finds the opening messages in one pass.

use crate::wire::text::truncated;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

/// One top-level member of a JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member<'a> {
    /// The key, unescaped.
    pub key: Cow<'a, str>,
    /// The raw JSON text of the value.
    pub value: &'a str,
    /// Byte range of the value in the body.
    pub value_range: Range<usize>,
}

/// The most top-level members an object may have. A chat request has a few dozen fields at most, a
/// provider's completion or SSE event about ten; the cap stops a body of a million keys early (the scan
/// ends at the first member over it) whoever sent it.
pub const MAX_MEMBERS: usize = 256;

/// The members of a JSON object's top level, with the offset of its `{`: values stay raw text. Errors
/// (not an object, not JSON, more than [`MAX_MEMBERS`] members, a duplicate key) are phrased to follow
/// "the request body ".
pub fn top_level(text: &str) -> Result<(usize, Vec<Member<'_>>), String> {
    let trimmed = text.trim_start();
    if !trimmed.starts_with('{') {
        return Err("must be a JSON object".into());
    }
    let object_start = text.len() - trimmed.len();
    let mut de = serde_json::Deserializer::from_str(text);
    let raw = match TopLevel::deserialize_from(&mut de).and_then(|t| de.end().map(|_| t)) {
        Ok(raw) => raw,
        Err(e) if e.to_string().starts_with(TOO_MANY) => {
            return Err(format!("has more than {MAX_MEMBERS} top-level members"));
        }
        Err(e) => return Err(format!("is not valid JSON: {e}")),
    };
    if let Some(key) = duplicate_key(&raw.0) {
        return Err(format!("has a duplicate key \"{}\"", truncated(key, 100)));
    }
    let base = text.as_ptr() as usize;
    let members = raw
        .0
        .into_iter()
        .map(|(key, value)| {
            let v = value.get();
            let start = v.as_ptr() as usize - base;
            Member { key, value: v, value_range: start..start + v.len() }
        })
        .collect();
    Ok((object_start, members))
}

/// A key that occurs twice, in O(n log n): the few members of a real body are compared pairwise (no
/// allocation), a longer list is sorted first.
fn duplicate_key<'k>(members: &'k [(Cow<'_, str>, &RawValue)]) -> Option<&'k str> {
    if members.len() <= 16 {
        return members.iter().enumerate().find_map(|(i, (k, _))| {
            members.get(..i)?.iter().any(|(other, _)| other == k).then_some(k.as_ref())
        });
    }
    let mut keys: Vec<&str> = members.iter().map(|(k, _)| k.as_ref()).collect();
    keys.sort_unstable();
    keys.windows(2).find_map(|w| match w {
        [a, b] if a == b => Some(*a),
        _ => None,
    })
}

/// The visitor's error past [`MAX_MEMBERS`] (serde_json appends the position).
const TOO_MANY: &str = "too many members";

/// The members of the top-level object as borrowed raw values.
struct TopLevel<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> TopLevel<'a> {
    fn deserialize_from(
        de: &mut serde_json::Deserializer<serde_json::de::StrRead<'a>>,
    ) -> serde_json::Result<Self> {
        de.deserialize_map(TopLevelVisitor)
    }
}

struct TopLevelVisitor;

impl<'de> Visitor<'de> for TopLevelVisitor {
    type Value = TopLevel<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(12);
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            if out.len() == MAX_MEMBERS {
                return Err(de::Error::custom(TOO_MANY));
            }
            let v: &'de RawValue = map.next_value()?;
            out.push((k, v));
        }
        Ok(TopLevel(out))
    }
}

/// A key borrowed from the body when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// In valid JSON text `bytes`, the first position from `at` that is neither whitespace nor `separator`
/// (`,` between elements or members, `:` after a key).
pub fn skip(bytes: &[u8], mut at: usize, separator: u8) -> usize {
    while bytes.get(at).is_some_and(|b| b.is_ascii_whitespace() || *b == separator) {
        at += 1;
    }
    at
}

/// Where the JSON value starting at `start` ends (exclusive): at the `,`, `}` or `]` closing its
/// container, past a string's closing quote, or at the end. The text is valid JSON: strings and
/// nesting are all that must be tracked.
pub fn value_end(bytes: &[u8], start: usize) -> usize {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut at = start;
    while let Some(&b) = bytes.get(at) {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b != b'"' {
                // Most of a message is string content: skip to its next quote or backslash at once.
                let rest = bytes.get(at..).unwrap_or_default();
                at += rest.iter().position(|c| *c == b'"' || *c == b'\\').unwrap_or(rest.len());
                continue;
            } else {
                in_string = false;
                if depth == 0 {
                    return at + 1;
                }
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' | b',' if depth == 0 => return at,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        return at + 1;
                    }
                }
                _ => {}
            }
        }
        at += 1;
    }
    at
}

/// The elements of a JSON array given as valid JSON text, raw and trimmed, lazily; nothing for text
/// that is not an array.
pub fn array_elements(text: &str) -> impl Iterator<Item = &str> {
    let bytes = text.as_bytes();
    let lead = text.len() - text.trim_start().len();
    let mut at = if bytes.get(lead) == Some(&b'[') { lead + 1 } else { bytes.len() };
    std::iter::from_fn(move || {
        // An element starts after whitespace (and the comma before it).
        at = skip(bytes, at, b',');
        if bytes.get(at).is_none_or(|b| *b == b']') {
            return None;
        }
        let start = at;
        at = value_end(bytes, at);
        // Only invalid JSON (a stray `}`) yields an empty element: stop rather than yield it forever.
        text.get(start..at).filter(|_| at > start).map(str::trim_end)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// `{"k0":0,…}` with `n` members, plus `extra` text before the closing brace.
    fn object(n: usize, extra: &str) -> String {
        let members: Vec<String> = (0..n).map(|i| format!(r#""k{i}":0"#)).collect();
        format!("{{{}{extra}}}", members.join(","))
    }

    #[test]
    fn members_are_capped_and_duplicates_found_however_many() {
        assert_eq!(top_level(&object(MAX_MEMBERS, "")).map(|(_, m)| m.len()), Ok(MAX_MEMBERS));
        assert_eq!(
            top_level(&object(MAX_MEMBERS + 1, "")).map(|(_, m)| m.len()),
            Err(format!("has more than {MAX_MEMBERS} top-level members"))
        );
        // Found when the first copy is far from the second (the sorted check) and when near (pairwise).
        assert_eq!(top_level(&object(200, r#","k3":1"#)), Err(r#"has a duplicate key "k3""#.to_string()));
        assert_eq!(top_level(&object(5, r#","k3":1"#)), Err(r#"has a duplicate key "k3""#.to_string()));
        // Escaped spellings are the same key.
        assert_eq!(top_level(r#"{"model":1,"mod\u0065l":2}"#), Err(r#"has a duplicate key "model""#.into()));
        // A key quoted in the error is cut.
        let long = "x".repeat(10_000);
        let err = top_level(&format!(r#"{{"{long}":1,"{long}":2}}"#)).unwrap_err();
        assert_eq!(err.len(), r#"has a duplicate key """#.len() + 100);
    }

    #[test]
    fn array_elements_split_valid_json_arrays() {
        fn all(t: &str) -> Vec<&str> {
            array_elements(t).collect()
        }
        assert!(all("[]").is_empty() && all(" [ ] ").is_empty());
        assert!(all(r#"{"not":"an array"}"#).is_empty());
        // Invalid JSON never reaches here (the body is validated first), but must still end.
        for bad in ["[}]", "[1}]", "[1,}", "[", "[\"open"] {
            assert!(array_elements(bad).take(10).count() < 10, "{bad}");
        }
        // Every element of a serde-valid array, as serde sees it: strings with brackets, commas, quotes
        // and backslashes; nesting; scalars.
        let text = r#" [ {"role":"system","content":"a \"quoted\" ], } \\"} , {"role":"user","content":[{"type":"text","text":"x,]"}]},3,null,"s\\",[[],{}] ] "#;
        let raw: Vec<Box<serde_json::value::RawValue>> = serde_json::from_str(text).unwrap();
        assert_eq!(all(text), raw.iter().map(|r| r.get()).collect::<Vec<_>>());
    }
}
