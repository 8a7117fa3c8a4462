//! Every error a client can receive, as one enum turned into OpenRouter's JSON shape in one place.
//!
//! Body: `{"error":{"code":<status>,"message":"…","metadata":{"error_type":"…"}}}`. Messages never carry a
//! provider key, a client key or an internal header name. `error_type` values come from OpenRouter's
//! `ApiErrorType` list, except `model_not_found`, which our contract names for an unknown model.

use crate::wire::text::truncated;
use crate::wire::usage::usd_json_u64;
use serde_json::json;

/// The longest message a client receives: messages quote what the client sent (a model name, a field),
/// and an 8 MiB model name must not come back whole.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// An error answered to the client instead of (or in place of) a provider's response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 400: the request cannot be understood (bad JSON, bad `model`, wrong content type, …).
    InvalidRequest(String),
    /// 401: missing or unknown client key.
    Unauthorized(String),
    /// 404: the requested model is not in the catalog.
    ModelNotFound(String),
    /// 404: every endpoint of the requested models was filtered out; `excluded_by` says why, per endpoint.
    NoEndpoints { message: String, excluded_by: Vec<(String, String)> },
    /// 404: no such API path.
    NotFound(String),
    /// 405: the path exists but not for this method.
    MethodNotAllowed(String),
    /// 413: the request body is larger than `routing.max_request_bytes`.
    PayloadTooLarge(String),
    /// 415: the body is compressed (`content-encoding` other than identity): the router reads it.
    UnsupportedMediaType(String),
    /// 429: the last provider tried was rate limited; `retry_after` in seconds.
    RateLimited { message: String, retry_after: u64 },
    /// 429: the client key's own rate limit is reached (`limit` per window, `remaining` left: less than
    /// the request needs) until `reset_ms` (ms since the epoch), `retry_after` seconds away; the request
    /// reached no provider.
    KeyLimitReached { message: String, limit: u64, remaining: u64, reset_ms: u64, retry_after: u64 },
    /// 402: the client key's dollar budget (`limit_nano` per window, `remaining_nano` left) cannot hold
    /// the request's worst-case cost until `reset_ms`, `retry_after` seconds away; the request reached
    /// no provider.
    BudgetExceeded { message: String, limit_nano: u64, remaining_nano: u64, reset_ms: u64, retry_after: u64 },
    /// A provider answered the request itself with a client error (4xx other than 401/403/408/429, which
    /// are the router's or the provider's own trouble): passed on with the provider's status and message.
    ProviderRejected { status: u16, message: String },
    /// 502: the last provider tried failed (5xx, bad credentials on our side, invalid answer, TLS).
    BadGateway(String),
    /// 503: no provider could be reached at all.
    ProviderUnavailable(String),
    /// 500: the router cannot serve the request as configured (never sent to a provider).
    Internal(String),
}

impl ApiError {
    /// The HTTP status of the reply.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::InvalidRequest(_) => 400,
            ApiError::Unauthorized(_) => 401,
            ApiError::ModelNotFound(_) | ApiError::NotFound(_) | ApiError::NoEndpoints { .. } => 404,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::PayloadTooLarge(_) => 413,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::RateLimited { .. } | ApiError::KeyLimitReached { .. } => 429,
            ApiError::BudgetExceeded { .. } => 402,
            ApiError::ProviderRejected { status, .. } => *status,
            ApiError::BadGateway(_) => 502,
            ApiError::ProviderUnavailable(_) => 503,
            ApiError::Internal(_) => 500,
        }
    }

    /// The machine-readable reason, `error.metadata.error_type`.
    pub fn error_type(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::Unauthorized(_) => "authentication",
            ApiError::ModelNotFound(_) => "model_not_found",
            ApiError::NotFound(_) | ApiError::NoEndpoints { .. } => "not_found",
            ApiError::MethodNotAllowed(_) | ApiError::UnsupportedMediaType(_) => "invalid_request",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::RateLimited { .. } | ApiError::KeyLimitReached { .. } => "rate_limit_exceeded",
            ApiError::BudgetExceeded { .. } => "payment_required",
            // 401, 403, 408 and 429 from a provider are never passed on as its own rejection.
            ApiError::ProviderRejected { status, .. } => match status {
                402 => "payment_required",
                404 => "not_found",
                413 => "payload_too_large",
                422 => "unprocessable",
                _ => "invalid_request",
            },
            ApiError::BadGateway(_) | ApiError::ProviderUnavailable(_) => "provider_unavailable",
            ApiError::Internal(_) => "server",
        }
    }

    /// The human-readable message, `error.message`.
    pub fn message(&self) -> &str {
        match self {
            ApiError::InvalidRequest(m)
            | ApiError::Unauthorized(m)
            | ApiError::ModelNotFound(m)
            | ApiError::NotFound(m)
            | ApiError::MethodNotAllowed(m)
            | ApiError::PayloadTooLarge(m)
            | ApiError::UnsupportedMediaType(m)
            | ApiError::BadGateway(m)
            | ApiError::ProviderUnavailable(m)
            | ApiError::Internal(m) => m,
            ApiError::RateLimited { message, .. }
            | ApiError::KeyLimitReached { message, .. }
            | ApiError::BudgetExceeded { message, .. }
            | ApiError::ProviderRejected { message, .. }
            | ApiError::NoEndpoints { message, .. } => message,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        let mut metadata = serde_json::Map::new();
        metadata.insert("error_type".into(), self.error_type().into());
        if let ApiError::NoEndpoints { excluded_by, .. } = self {
            let reasons: serde_json::Map<String, serde_json::Value> =
                excluded_by.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect();
            metadata.insert("excluded_by".into(), reasons.into());
        }
        json!({
            "error": {
                "code": self.status(),
                "message": truncated(self.message(), MAX_MESSAGE_BYTES),
                "metadata": metadata,
            }
        })
        .to_string()
    }

    /// Response headers besides the status: always `content-type`, plus `retry-after` on 429.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![("content-type", "application/json".to_string())];
        match self {
            ApiError::RateLimited { retry_after, .. } => {
                headers.push(("retry-after", retry_after.to_string()))
            }
            ApiError::KeyLimitReached { limit, remaining, reset_ms, retry_after, .. } => {
                headers.push(("retry-after", retry_after.to_string()));
                headers.push(("x-ratelimit-limit", limit.to_string()));
                headers.push(("x-ratelimit-remaining", remaining.to_string()));
                headers.push(("x-ratelimit-reset", reset_ms.to_string()));
            }
            // Dollar figures in USD, as `/key` shows them.
            ApiError::BudgetExceeded { limit_nano, remaining_nano, reset_ms, retry_after, .. } => {
                let usd = |nano: &u64| usd_json_u64(*nano);
                headers.push(("retry-after", retry_after.to_string()));
                headers.push(("x-ratelimit-limit", usd(limit_nano)));
                headers.push(("x-ratelimit-remaining", usd(remaining_nano)));
                headers.push(("x-ratelimit-reset", reset_ms.to_string()));
            }
            _ => {}
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn body_has_integer_code_and_error_type() {
        let e = ApiError::ModelNotFound("no model \"x\"".into());
        let v: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(v["error"]["code"], 404);
        assert_eq!(v["error"]["message"], "no model \"x\"");
        assert_eq!(v["error"]["metadata"]["error_type"], "model_not_found");
    }

    #[test]
    fn a_message_quoting_a_huge_client_string_is_cut() {
        let e = ApiError::ModelNotFound(format!("Model \"{}\" is not available", "m".repeat(8 << 20)));
        let v: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(v["error"]["message"].as_str().map(str::len), Some(MAX_MESSAGE_BYTES));
        // Cut at a character, never inside one.
        let e = ApiError::InvalidRequest("é".repeat(MAX_MESSAGE_BYTES));
        let v: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(v["error"]["message"].as_str().map(str::len), Some(MAX_MESSAGE_BYTES));
        let e = ApiError::InvalidRequest(format!("x{}", "é".repeat(MAX_MESSAGE_BYTES)));
        let v: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(v["error"]["message"].as_str().map(str::len), Some(MAX_MESSAGE_BYTES - 1));
    }

    #[test]
    fn internal_errors_keep_the_body_the_upstream_role_always_sent() {
        let e = ApiError::Internal("Router misconfigured: no routing plan for this request".into());
        assert_eq!(
            e.body(),
            r#"{"error":{"code":500,"message":"Router misconfigured: no routing plan for this request","metadata":{"error_type":"server"}}}"#
        );
    }

    #[test]
    fn a_providers_own_rejection_keeps_its_status_and_a_matching_type() {
        for (status, error_type) in [
            (400, "invalid_request"),
            (402, "payment_required"),
            (404, "not_found"),
            (413, "payload_too_large"),
            (422, "unprocessable"),
            (418, "invalid_request"),
        ] {
            let e = ApiError::ProviderRejected { status, message: "m".into() };
            assert_eq!((e.status(), e.error_type()), (status, error_type));
        }
    }

    #[test]
    fn a_key_budget_is_a_402_with_its_figures_in_usd() {
        let e = ApiError::BudgetExceeded {
            message: "m".into(),
            limit_nano: 5_000_000_000,
            remaining_nano: 1_250,
            reset_ms: 9,
            retry_after: 3,
        };
        assert_eq!((e.status(), e.error_type()), (402, "payment_required"));
        assert_eq!(
            e.headers(),
            [
                ("content-type", "application/json".to_string()),
                ("retry-after", "3".to_string()),
                ("x-ratelimit-limit", "5".to_string()),
                ("x-ratelimit-remaining", "0.00000125".to_string()),
                ("x-ratelimit-reset", "9".to_string()),
            ]
        );
    }

    #[test]
    fn rate_limited_carries_retry_after() {
        let e = ApiError::RateLimited { message: "slow down".into(), retry_after: 7 };
        assert_eq!(e.status(), 429);
        assert!(e.headers().contains(&("retry-after", "7".to_string())));
    }
}
