//! Test support for llm-router, never part of the filter: mock providers ([`mock`]), a real Envoy
//! running the built filter ([`envoy`], [`router`]) and an HTTP/1.1 client ([`http`]).

pub mod envoy;
pub mod http;
pub mod mock;
pub mod router;
