//! The host calls llm-router's downstream role makes for a non-streamed 1.5 KB completion, in the same
//! order, with constant values and no routing work: the bench's floor for this design (see Cargo.toml).
//! Routes every request to the bench catalog's `primary` provider (slot values as the router writes them).

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Skeleton { response: Vec::new() }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Skeleton {
    response: Vec<(String, Vec<u8>)>,
}

impl Context for Skeleton {}

impl HttpContext for Skeleton {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let _ = self.get_current_time();
        let _ = self.get_http_request_headers_bytes();
        Action::Pause
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, size).unwrap_or_default();
        let _ = self.get_shared_data("llm_router.health.primary");
        let _ = self.get_shared_data("llm_router.health.backup");
        let plan = "primary|1543 9 19\nprimary\t\"bench-chat-native\"\nbackup\t\"bench-chat-backup\"\n";
        self.set_property(vec!["llm_try_0"], Some(plan.as_bytes()));
        self.set_property(vec!["llm_try_1"], Some(b"backup|"));
        // The router replaces only the edited prefix (the model); here the first 24 bytes, unchanged.
        let prefix = body.len().min(24);
        self.set_http_request_body(0, prefix, &body[..prefix]);
        self.remove_http_request_header("authorization");
        let length = body.len().to_string();
        for (name, value) in [
            (":authority", "127.0.0.1"),
            (":path", "/v1/chat/completions"),
            ("accept-encoding", "identity"),
            ("content-length", length.as_str()),
            ("authorization", "Bearer bench-primary-key"),
            ("x-envoy-max-retries", "1"),
            ("x-envoy-upstream-rq-per-try-timeout-ms", "120000"),
        ] {
            self.set_http_request_header(name, Some(value));
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        let headers = self.get_http_response_headers_bytes();
        let _ = self.get_current_time();
        self.response = headers
            .into_iter()
            .filter(|(n, _)| n.starts_with(':') || n == "content-type" || n.starts_with("x-ratelimit-"))
            .collect();
        for (name, value) in
            [("x-llm-provider", "primary"), ("x-llm-attempts", "1"), ("x-llm-model", "bench/chat")]
        {
            self.response.push((name.into(), value.as_bytes().to_vec()));
        }
        if end_of_stream {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_response_body(0, size).unwrap_or_default();
        self.set_http_response_body(0, size, &body);
        let mut headers = std::mem::take(&mut self.response);
        headers.push(("content-length".into(), body.len().to_string().into_bytes()));
        headers.push(("x-llm-cost-usd".into(), b"0.00001".to_vec()));
        self.set_http_response_headers_bytes(
            headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect(),
        );
        let _ = self.get_current_time();
        let account = r#"{"app":"bench","attempts":1,"cached_tokens":0,"completion_tokens":7,"cost_nano_usd":5330,"duration_ms":1,"error_type":null,"key":"demo","model":"bench/chat","prompt_tokens":11,"provider":"primary","requested_model":"bench-chat","route":"bench/chat:weighted(sticky) primary=0.941 backup=0.059; session=messages:9f6b5258; plan=primary@0.5,backup@2","session":"9f6b5258","status":200,"stream":false,"ttfb_ms":1}"#;
        self.set_property(vec!["llm_account"], Some(account.as_bytes()));
        Action::Continue
    }
}
