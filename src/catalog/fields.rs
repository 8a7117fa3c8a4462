//! Validation errors that name the field, and the small readers of JSON values that produce them.
//!
//! One error type for the whole brain's validation: the catalog at load (`models[3].endpoints[0].provider:
//! unknown provider "deepinfar"`), a key's policy, and a request's `provider` preferences
//! (`provider.sort: unknown value "fastest"`). The readers walk a `serde_json::Value` with the path of
//! each value, so an error always says where.

use serde_json::{Map, Value};
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
