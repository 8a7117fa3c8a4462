//! The filter's roles as state machines over a [`host::Host`]: one `.wasm` plays each of them, told apart
//! by the plugin's root id, all in one VM per Envoy worker (every instance has the same `vm_config`).
//!
//! - [`downstream::Downstream`] (listener, one per request): checks, routes, prepares the first attempt,
//!   shapes the response, accounts.
//! - [`upstream::Upstream`] (fallback clusters, one per attempt): applies a fallback attempt.
//! - [`logger::log_attempt`] (the router's `upstream_log`): keeps the health memory.
//!
//! [`Vm`] holds what the roles of one VM share: the catalog (parsed once, by the downstream role's
//! configuration) and the stats registry.

pub mod attempt;
pub mod downstream;
pub mod health_memory;
pub mod host;
pub mod logger;
pub mod rate_memory;
pub mod shared_value;
pub mod spend_memory;
pub mod stats;
pub mod upstream;

#[cfg(test)]
mod fake_host;
#[cfg(test)]
mod lifecycle_tests;
#[cfg(test)]
mod native_lifecycle_tests;

use crate::catalog::{Catalog, EnvLookup};
use downstream::Downstream;
use host::Host;
use stats::Stats;
use std::cell::RefCell;
use std::rc::Rc;
use upstream::Upstream;

/// The `vm_id` every instance of the filter shares (one VM per worker, one parsed catalog).
pub const VM_ID: &str = "llm_router";
/// Root id of the downstream role (listener).
pub const DOWNSTREAM_ROOT_ID: &str = "llm_router";
/// Root id of the upstream role (provider clusters).
pub const UPSTREAM_ROOT_ID: &str = "llm_router_upstream";
/// Root id of the access-logger role (the router's `upstream_log`: every attempt's outcome).
pub const LOGGER_ROOT_ID: &str = "llm_router_log";

/// The role a plugin instance plays.
#[derive(Debug, Clone)]
pub enum Role {
    /// The listener's filter, with the catalog its configuration holds: every request of this plugin
    /// instance routes with it (another listener's instance may hold another catalog).
    Downstream(Rc<Catalog>),
    /// A fallback cluster's filter, for this provider.
    Upstream(Rc<str>),
    /// The router's `upstream_log`.
    Logger,
}

impl Role {
    /// How often the host should call [`Vm::tick`] for this role (only the downstream role flushes stats).
    pub fn tick_period_ms(&self) -> Option<u64> {
        matches!(self, Role::Downstream(_)).then_some(stats::FLUSH_PERIOD_MS)
    }
}

/// The upstream role's configuration: which provider its cluster serves.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamConfig {
    provider: String,
    /// The catalog, where the downstream role runs in another VM (a mesh loads the roles separately).
    #[serde(default)]
    catalog: Option<serde_json::Value>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LoggerConfig {
    /// As [`UpstreamConfig::catalog`].
    #[serde(default)]
    catalog: Option<serde_json::Value>,
}

/// What the roles of one VM share.
#[derive(Debug, Default)]
pub struct Vm {
    /// The catalog the downstream role configured last; the upstream and logger roles (same VM) read it
    /// at request time, since clusters may be configured first.
    catalog: Option<Rc<Catalog>>,
    /// `catalog` came from a downstream role of this VM (a catalog carried by another role then never
    /// replaces it).
    catalog_from_downstream: bool,
    stats: Rc<RefCell<Stats>>,
}

impl Vm {
    /// Configures one plugin instance: its role from `root_id`, its `configuration` validated (the
    /// catalog for the downstream role, with provider keys from `env`). An error names the bad field;
    /// the host then refuses the configuration.
    pub fn configure(
        &mut self,
        root_id: &[u8],
        configuration: &[u8],
        env: EnvLookup<'_>,
    ) -> Result<Role, String> {
        match root_id {
            id if id == DOWNSTREAM_ROOT_ID.as_bytes() => {
                let catalog =
                    Catalog::parse(configuration, Some(env)).map_err(|e| format!("invalid catalog: {e}"))?;
                let catalog = Rc::new(catalog);
                self.catalog = Some(catalog.clone());
                self.catalog_from_downstream = true;
                Ok(Role::Downstream(catalog))
            }
            id if id == UPSTREAM_ROOT_ID.as_bytes() => {
                let c = serde_json::from_slice::<UpstreamConfig>(configuration)
                    .map_err(|e| format!("invalid upstream configuration: {e}"))?;
                self.adopt(c.catalog.as_ref(), env)?;
                Ok(Role::Upstream(c.provider.into()))
            }
            // The logger reads the catalog the downstream role parsed in this VM, or its own.
            id if id == LOGGER_ROOT_ID.as_bytes() => {
                if !configuration.trim_ascii().is_empty() {
                    let c = serde_json::from_slice::<LoggerConfig>(configuration)
                        .map_err(|e| format!("invalid logger configuration: {e}"))?;
                    self.adopt(c.catalog.as_ref(), env)?;
                }
                Ok(Role::Logger)
            }
            other => Err(format!("unknown root_id {:?}", String::from_utf8_lossy(other))),
        }
    }

    /// Takes a catalog given to the upstream or logger role, unless the downstream role's is here (a mesh
    /// may load the roles into separate VMs: Envoy Gateway's policy VM and the patched-in roles' differ
    /// in configuration). The latest one given wins, so a regenerated catalog reaches such a VM.
    fn adopt(&mut self, catalog: Option<&serde_json::Value>, env: EnvLookup<'_>) -> Result<(), String> {
        let Some(value) = catalog else { return Ok(()) };
        let text = serde_json::to_vec(value).map_err(|e| format!("invalid catalog: {e}"))?;
        let parsed = Catalog::parse(&text, Some(env)).map_err(|e| format!("invalid catalog: {e}"))?;
        if !self.catalog_from_downstream {
            self.catalog = Some(Rc::new(parsed));
        }
        Ok(())
    }

    /// The downstream role for a new request routed with `catalog` (its plugin instance's).
    pub fn downstream(&self, catalog: &Rc<Catalog>) -> Downstream {
        Downstream::new(catalog.clone(), self.stats.clone())
    }

    /// The upstream role for a new attempt to `provider`.
    pub fn upstream(&self, provider: Rc<str>) -> Upstream {
        Upstream::new(self.catalog.clone(), provider)
    }

    /// The logger role, for the attempt being logged.
    pub fn log_attempt(&self, host: &mut dyn Host) {
        if let Some(catalog) = &self.catalog {
            logger::log_attempt(catalog, host);
        }
    }

    /// The periodic tick: gives Envoy the counters gathered since the last one.
    pub fn tick(&self, host: &mut dyn Host) {
        self.stats.borrow_mut().flush(host);
    }
}
