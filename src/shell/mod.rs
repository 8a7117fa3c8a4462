//! The proxy-wasm shell, the only code that names proxy-wasm: the entry point, the root contexts (one per
//! plugin instance: configuration, ticks, the logger's `on_log`) and one HTTP context per request or
//! attempt. Each callback gathers nothing itself: it calls the role's state machine with the host
//! ([`host::WasmHost`]) and returns its answer as an `Action`.

mod abi;
mod host;

use crate::filter::downstream::Downstream;
use crate::filter::host::Flow;
use crate::filter::upstream::Upstream;
use crate::filter::{Role, Vm};
use host::WasmHost;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::cell::RefCell;
use std::time::Duration;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { role: None }) });
}}

thread_local! {
    /// What the roles of this VM share (the VM is single-threaded).
    static VM: RefCell<Vm> = RefCell::new(Vm::default());
}

fn action(flow: Flow) -> Action {
    match flow {
        Flow::Continue => Action::Continue,
        Flow::Pause => Action::Pause,
    }
}

/// One plugin instance.
struct Root {
    role: Option<Role>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let root_id = abi::property(&["plugin_root_id"]).unwrap_or_default();
        let configuration = abi::buffer(abi::PLUGIN_CONFIGURATION, usize::MAX).unwrap_or_default();
        let env = |name: &str| std::env::var(name).ok();
        match VM.with(|vm| vm.borrow_mut().configure(&root_id, &configuration, &env)) {
            Ok(role) => {
                if let Some(ms) = role.tick_period_ms() {
                    self.set_tick_period(Duration::from_millis(ms));
                }
                self.role = Some(role);
                true
            }
            Err(e) => {
                log::error!("llm-router: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        match self.role.as_ref()? {
            Role::Downstream(catalog) => {
                Some(Box::new(DownstreamContext(VM.with(|vm| vm.borrow().downstream(catalog)))))
            }
            Role::Upstream(provider) => {
                Some(Box::new(UpstreamContext(VM.with(|vm| vm.borrow().upstream(provider.clone())))))
            }
            Role::Logger => None,
        }
    }

    fn on_tick(&mut self) {
        VM.with(|vm| vm.borrow().tick(&mut WasmHost));
    }

    fn on_log(&mut self) {
        if let Some(Role::Logger) = self.role {
            VM.with(|vm| vm.borrow().log_attempt(&mut WasmHost));
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct DownstreamContext(Downstream);

impl Context for DownstreamContext {}

impl HttpContext for DownstreamContext {
    fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        #[cfg(feature = "trap-for-tests")]
        trap_if_asked();
        action(self.0.on_request_headers(&mut WasmHost, end_of_stream))
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        action(self.0.on_request_body(&mut WasmHost, size, end_of_stream))
    }

    fn on_http_request_trailers(&mut self, _n: usize) -> Action {
        action(self.0.on_request_trailers(&mut WasmHost))
    }

    fn on_http_response_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        action(self.0.on_response_headers(&mut WasmHost, end_of_stream))
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        action(self.0.on_response_body(&mut WasmHost, size, end_of_stream))
    }

    fn on_http_response_trailers(&mut self, _n: usize) -> Action {
        action(self.0.on_response_trailers(&mut WasmHost))
    }

    fn on_log(&mut self) {
        self.0.on_log(&mut WasmHost);
    }
}

struct UpstreamContext(Upstream);

impl Context for UpstreamContext {}

impl HttpContext for UpstreamContext {
    fn on_http_request_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        action(self.0.on_request_headers(&mut WasmHost))
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        action(self.0.on_request_body(&mut WasmHost, size, end_of_stream))
    }

    fn on_http_request_trailers(&mut self, _n: usize) -> Action {
        action(self.0.on_request_trailers(&mut WasmHost))
    }

    fn on_http_response_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        action(self.0.on_response_headers(&mut WasmHost, end_of_stream))
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        action(self.0.on_response_body(&mut WasmHost, size, end_of_stream))
    }

    fn on_http_response_trailers(&mut self, _n: usize) -> Action {
        action(self.0.on_response_trailers(&mut WasmHost))
    }
}

/// Test builds only (feature `trap-for-tests`): a request with `x-llm-test-trap` traps the VM (the
/// release profile aborts on panic), as a bug would.
#[cfg(feature = "trap-for-tests")]
#[allow(clippy::panic)]
fn trap_if_asked() {
    if abi::header(abi::REQUEST_HEADERS, "x-llm-test-trap").is_some() {
        panic!("trap requested by a test");
    }
}
