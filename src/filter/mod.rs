//! The filter's roles. One `.wasm` plays each of them, told apart by the plugin's root id, all in one VM
//! per Envoy worker (every instance has the same `vm_config`).

/// The `vm_id` every instance of the filter shares (one VM per worker, one parsed catalog).
pub const VM_ID: &str = "llm_router";
/// Root id of the downstream role (listener).
pub const DOWNSTREAM_ROOT_ID: &str = "llm_router";
/// Root id of the upstream role (provider clusters).
pub const UPSTREAM_ROOT_ID: &str = "llm_router_upstream";
/// Root id of the access-logger role (the router's `upstream_log`: every attempt's outcome).
pub const LOGGER_ROOT_ID: &str = "llm_router_log";
