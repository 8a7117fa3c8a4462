//! Shared harness for the integration tests (each tests/*.rs does `mod common;`).
#![allow(dead_code)]

pub mod envoy;
pub mod http;
pub mod router;
pub mod schema;
