//! The proxy-wasm shell: root contexts (configuration, one per role) and the entry point. It moves bytes
//! between Envoy and the brain and decides nothing itself.

mod downstream;
mod host;
mod logger;
mod metrics;
mod upstream;

use crate::catalog::Catalog;
use crate::filter::{DOWNSTREAM_ROOT_ID, LOGGER_ROOT_ID, UPSTREAM_ROOT_ID};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};
use std::cell::RefCell;
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

thread_local! {
    /// The catalog of this VM, set by the downstream role's configuration; the upstream roles (one per
    /// provider cluster, same VM) read it at request time, since clusters may be configured first.
    static CATALOG: RefCell<Option<Rc<Catalog>>> = const { RefCell::new(None) };
}

fn vm_catalog() -> Option<Rc<Catalog>> {
    CATALOG.with(|c| c.borrow().clone())
}

#[derive(Default)]
enum Role {
    #[default]
    Unconfigured,
    Downstream(Rc<Catalog>),
    Upstream(Rc<str>),
    /// The router's `upstream_log`: records each attempt's outcome in the health memory.
    Logger,
}

#[derive(Default)]
struct Root {
    role: Role,
}

impl Context for Root {}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamConfig {
    provider: String,
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let root_id = self.get_property(vec!["plugin_root_id"]).unwrap_or_default();
        let config = self.get_plugin_configuration().unwrap_or_default();
        match root_id.as_slice() {
            id if id == DOWNSTREAM_ROOT_ID.as_bytes() => {
                let env = |name: &str| std::env::var(name).ok();
                match Catalog::parse(&config, Some(&env)) {
                    Ok(catalog) => {
                        let catalog = Rc::new(catalog);
                        CATALOG.with(|c| *c.borrow_mut() = Some(catalog.clone()));
                        self.role = Role::Downstream(catalog);
                        // Counters are flushed to Envoy once a second, not per request (host calls).
                        self.set_tick_period(std::time::Duration::from_millis(metrics::FLUSH_PERIOD_MS));
                        true
                    }
                    Err(e) => {
                        log::error!("llm-router: invalid catalog: {e}");
                        false
                    }
                }
            }
            id if id == UPSTREAM_ROOT_ID.as_bytes() => {
                match serde_json::from_slice::<UpstreamConfig>(&config) {
                    Ok(c) => {
                        self.role = Role::Upstream(c.provider.into());
                        true
                    }
                    Err(e) => {
                        log::error!("llm-router: invalid upstream configuration: {e}");
                        false
                    }
                }
            }
            // Nothing to configure: the logger reads the catalog the downstream role parsed in this VM.
            id if id == LOGGER_ROOT_ID.as_bytes() => {
                self.role = Role::Logger;
                true
            }
            other => {
                log::error!("llm-router: unknown root_id {:?}", String::from_utf8_lossy(other));
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        match &self.role {
            Role::Downstream(catalog) => Some(Box::new(downstream::Downstream::new(catalog.clone()))),
            Role::Upstream(provider) => Some(Box::new(upstream::Upstream::new(provider.clone()))),
            Role::Logger | Role::Unconfigured => None,
        }
    }

    fn on_tick(&mut self) {
        metrics::flush();
    }

    fn on_log(&mut self) {
        if let Role::Logger = self.role {
            logger::on_log(self);
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
