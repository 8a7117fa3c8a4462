//! llm-router: an OpenRouter-class LLM router that runs inside Envoy as a proxy-wasm filter.
//!
//! The brain (every module but `shell`) is plain Rust with no proxy-wasm types; dependencies point one way
//! (checked by `tests/architecture.rs`):
//!
//! | layer | what |
//! |---|---|
//! | [`catalog`] | the configuration: parsed once, validated with field paths, immutable; typed ids |
//! | [`wire`] | what clients and providers send: top-level JSON, headers, chat request splice, response rewrite, SSE, usage and cost, errors |
//! | [`routing`] | preferences, filters, ranking, session keys, the plan, health records, the explanation |
//! | [`observe`] | the account of each request and the stats it moves |
//! | [`filter`] | the roles' per-request state machines over a `Host` trait |
//! | `shell` | proxy-wasm: implements `Host`, one callback = one call into a role (wasm32-wasip1 only) |
//!
//! `shell → filter → observe, routing → wire → catalog`; [`fnv`] is a leaf.
// The crate's [lints] deny these outside tests (Cargo.toml); tests may use them.
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::string_slice
    )
)]

pub mod catalog;
pub mod filter;
pub mod fnv;
pub mod observe;
pub mod routing;
pub mod wire;

#[cfg(target_os = "wasi")]
mod shell;
