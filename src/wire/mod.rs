//! The wire format: what clients and providers send and receive, read and written with the byte-level
//! discipline of the hot path (parse the top level once, splice, never re-serialise what did not change).
//! Depends only on the catalog (prices).

pub mod anthropic;
pub mod chat_request;
pub mod error;
pub mod gemini;
pub mod headers;
pub mod json;
pub mod native;
pub mod response;
pub mod sse;
pub mod text;
pub mod usage;
