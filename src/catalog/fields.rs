//! Validation errors that name the field, and the small readers of JSON values that produce them.
//!
//! One error type and one way of validating for the whole brain: the catalog at load
//! (`models[3].endpoints[0].provider: unknown provider "deepinfar"`), a key's policy, and a request's
//! `provider` preferences (`provider.sort: unknown value "fastest"`). The readers walk a
//! `serde_json::Value` with the path of each value, so an error always says where; `null` is absent.

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

/// A value that failed validation: where it is, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Where in the document, e.g. `providers[1].endpoint` or `provider.max_price.prompt`.
    pub path: String,
    /// What is wrong; never contains a secret.
    pub message: String,
}

impl FieldError {
    /// An error at `path`.
    pub fn new(path: &str, message: impl Into<String>) -> FieldError {
        FieldError { path: path.to_string(), message: message.into() }
    }

    /// A value we understand but cannot honour: `<what> is not supported: <why>`.
    pub fn unsupported(path: &str, what: &str, why: &str) -> FieldError {
        FieldError::new(path, format!("{what} is not supported: {why}"))
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for FieldError {}

/// A validation result.
pub type Checked<T> = Result<T, FieldError>;

/// An object's members, or `None` for `null`.
pub fn object_or_null<'v>(value: &'v Value, path: &str) -> Checked<Option<&'v Map<String, Value>>> {
    match value {
        Value::Null => Ok(None),
        Value::Object(map) => Ok(Some(map)),
        _ => Err(FieldError::new(path, "must be an object")),
    }
}

/// A boolean.
pub fn boolean(v: &Value, path: &str) -> Checked<bool> {
    v.as_bool().ok_or_else(|| FieldError::new(path, "must be a boolean"))
}

/// An array of provider names.
pub fn names(v: &Value, path: &str) -> Checked<Vec<String>> {
    let Value::Array(items) = v else {
        return Err(FieldError::new(path, "must be an array of provider names"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => Ok(s.clone()),
            _ => Err(FieldError::new(&format!("{path}[{i}]"), "must be a string")),
        })
        .collect()
}

/// A non-negative number.
pub fn non_negative_number(v: &Value, path: &str) -> Checked<f64> {
    match v.as_f64() {
        Some(n) if n >= 0.0 => Ok(n),
        Some(_) => Err(FieldError::new(path, "must not be negative")),
        None => Err(FieldError::new(path, "must be a number")),
    }
}

/// `None` for an empty list: SDKs send empty lists to mean "no restriction".
pub fn non_empty(list: Vec<String>) -> Option<Vec<String>> {
    (!list.is_empty()).then_some(list)
}

/// An object read member by member: [`Object::finish`] refuses any member that was not read, so a typo is
/// an error naming it rather than a setting silently ignored.
pub struct Object<'v> {
    /// `None` for `null`.
    map: Option<&'v Map<String, Value>>,
    path: String,
    read: Vec<&'static str>,
}

impl<'v> Object<'v> {
    /// The object at `path` (`null` reads as an empty object).
    pub fn new(value: &'v Value, path: &str) -> Checked<Object<'v>> {
        let map = match value {
            Value::Object(map) => Some(map),
            Value::Null => None,
            _ => return Err(FieldError::new(path, "must be an object")),
        };
        Ok(Object { map, path: path.to_string(), read: Vec::new() })
    }

    /// The path of member `key`.
    pub fn path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Member `key`, unless absent or `null`.
    pub fn value(&mut self, key: &'static str) -> Option<&'v Value> {
        self.read.push(key);
        self.map?.get(key).filter(|v| !v.is_null())
    }

    fn typed<T>(
        &mut self,
        key: &'static str,
        what: &str,
        f: impl Fn(&Value) -> Option<T>,
    ) -> Checked<Option<T>> {
        match self.value(key) {
            None => Ok(None),
            Some(v) => {
                f(v).map(Some).ok_or_else(|| FieldError::new(&self.path(key), format!("must be {what}")))
            }
        }
    }

    /// A string member, required.
    pub fn string(&mut self, key: &'static str) -> Checked<String> {
        self.opt_string(key)?.ok_or_else(|| FieldError::new(&self.path(key), "is required"))
    }

    /// A string member.
    pub fn opt_string(&mut self, key: &'static str) -> Checked<Option<String>> {
        self.typed(key, "a string", |v| v.as_str().map(String::from))
    }

    /// A boolean member.
    pub fn opt_bool(&mut self, key: &'static str) -> Checked<Option<bool>> {
        self.typed(key, "a boolean", Value::as_bool)
    }

    /// A non-negative integer member.
    pub fn opt_u64(&mut self, key: &'static str) -> Checked<Option<u64>> {
        self.typed(key, "a non-negative integer", Value::as_u64)
    }

    /// A number member, required.
    pub fn number(&mut self, key: &'static str) -> Checked<f64> {
        self.opt_number(key)?.ok_or_else(|| FieldError::new(&self.path(key), "is required"))
    }

    /// A number member.
    pub fn opt_number(&mut self, key: &'static str) -> Checked<Option<f64>> {
        self.typed(key, "a number", Value::as_f64)
    }

    /// An array-of-strings member.
    pub fn opt_strings(&mut self, key: &'static str) -> Checked<Option<Vec<String>>> {
        let strings = |v: &Value| v.as_array()?.iter().map(|s| s.as_str().map(String::from)).collect();
        self.typed(key, "an array of strings", strings)
    }

    /// An object-of-strings member (empty when absent).
    pub fn string_map(&mut self, key: &'static str) -> Checked<BTreeMap<String, String>> {
        let strings = |v: &Value| {
            v.as_object()?.iter().map(|(k, s)| Some((k.clone(), s.as_str()?.to_string()))).collect()
        };
        Ok(self.typed(key, "an object of strings", strings)?.unwrap_or_default())
    }

    /// Refuses the members that were not read.
    pub fn finish(self) -> Checked<()> {
        match self.map.into_iter().flat_map(Map::keys).find(|k| !self.read.contains(&k.as_str())) {
            Some(k) => Err(FieldError::new(&self.path(k), "unknown field")),
            None => Ok(()),
        }
    }
}

/// The elements of an array, each read by `read` with its own path (`providers[2]`).
pub fn list<'v, T>(
    value: &'v Value,
    path: &str,
    read: impl Fn(&'v Value, &str) -> Checked<T>,
) -> Checked<Vec<T>> {
    let items = value.as_array().ok_or_else(|| FieldError::new(path, "must be an array"))?;
    items.iter().enumerate().map(|(i, v)| read(v, &format!("{path}[{i}]"))).collect()
}

/// Parses a JSON document that must not repeat a key in any object (a repeated `providers` or `name`
/// would otherwise silently lose all but its last value).
pub fn parse_document(json: &[u8]) -> Result<Value, String> {
    serde_json::from_slice::<Strict>(json).map(|s| s.0).map_err(|e| e.to_string())
}

/// A JSON value whose objects have distinct keys.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
        Ok(Strict(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
        Ok(Strict(Value::String(v.to_string())))
    }

    fn visit_string<E>(self, v: String) -> Result<Strict, E> {
        Ok(Strict(Value::String(v)))
    }

    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Strict(Value::Array(out)))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("duplicate key \"{key}\"")));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Strict(Value::Object(out)))
    }
}
