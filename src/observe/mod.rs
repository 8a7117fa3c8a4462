//! What the router tells its operator about each request: the account (one per request, for the access
//! log) and the Envoy stats it moves.

pub mod account;
pub mod metrics;
