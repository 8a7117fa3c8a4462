//! llm-router: an OpenRouter-class LLM router that runs inside Envoy as a proxy-wasm filter.
//!
//! The brain (every module here but `shell`) is plain Rust with no proxy-wasm types: catalog, request view,
//! candidate ranking, per-attempt rewrites, errors, `/models`. The shell (wasm32-wasip1 only) moves bytes
//! and headers between Envoy and the brain.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod accounting;
pub mod auth;
pub mod catalog;
pub mod downstream;
pub mod error;
pub mod filter;
pub mod fnv;
pub mod health;
pub mod metrics;
pub mod plan;
pub mod prefs;
pub mod request;
pub mod response;
pub mod select;
pub mod session;
pub mod text;
pub mod upstream;
pub mod usage;

#[cfg(target_os = "wasi")]
mod shell;
