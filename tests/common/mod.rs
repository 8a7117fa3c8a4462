//! Shared harness for the integration tests (each tests/*.rs does `mod common;`): the testkit crate's
//! Envoy harness, HTTP client, router fixture and hostile corpus, plus the schema validator over
//! tests/schemas.
#![allow(dead_code, unused_imports)]

pub use llm_router_testkit::{corpus, envoy, http, router};
pub mod crd;
pub mod envoy_filter;
pub mod json_patch;
pub mod mesh;
pub mod schema;
