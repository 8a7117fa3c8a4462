//! Shared harness for the integration tests (each tests/*.rs does `mod common;`): the testkit crate's
//! Envoy harness, HTTP client and router fixture, plus the schema validator over tests/schemas.
#![allow(dead_code, unused_imports)]

pub use llm_router_testkit::{envoy, http, router};
pub mod corpus;
pub mod schema;
