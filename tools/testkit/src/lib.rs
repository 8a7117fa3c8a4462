//! Test support for llm-router, never part of the filter: mock providers ([`mock`]), a real Envoy
//! running the built filter ([`envoy`], [`router`]), an HTTP/1.1 client ([`http`]) and the hostile
//! request corpus ([`corpus`]).

pub mod corpus;
pub mod envoy;
pub mod http;
pub mod mock;
pub mod router;
