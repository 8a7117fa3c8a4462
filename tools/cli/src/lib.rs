//! llm-router's tooling library: the Envoy config generator (and, behind the `llm-router` binary, the
//! command line around it). Never part of the filter.

pub mod envoy_config;
pub mod envoy_gateway;
pub mod istio;
pub mod mesh;
pub mod rate_limit_service;
mod yaml;
