//! What the native (non-OpenAI) provider APIs share on the way back: an error they reported
//! ([`ProviderError`]) and what a stream translator hands its caller per chunk ([`Step`]).

/// What one call of a stream translator hands the caller.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// Bytes to send the client now (possibly none).
    Forward(&'a [u8]),
    /// The provider failed before anything was sent to the client: try another provider. Reported
    /// once; later calls forward nothing.
    Failed(ProviderError),
}

/// An error a native provider reported: in a non-2xx body or as an error event of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderError {
    /// The HTTP status: the response's, or, for a stream event (sent after a 200), the status the API
    /// documents for the error's type.
    pub status: u16,
    /// The API's own error type: Anthropic's `error.type` (`overloaded_error`, …), Gemini's
    /// `error.status` (`UNAVAILABLE`, …); empty when the body had none.
    pub native_type: String,
    /// The API's `error.message`, as sent (bounded by the body's size; a caller quoting it to the
    /// client cuts and redacts it as it does for OpenAI errors).
    pub message: String,
}

impl ProviderError {
    /// OpenRouter's `error_type`: by the native type (Anthropic's and Gemini's names do not collide),
    /// else by status.
    pub fn error_type(&self) -> &'static str {
        match self.native_type.as_str() {
            "invalid_request_error" => "invalid_request",
            "authentication_error" => "authentication",
            "permission_error" => "permission_denied",
            "billing_error" => "payment_required",
            "not_found_error" => "not_found",
            "request_too_large" => "payload_too_large",
            "rate_limit_error" => "rate_limit_exceeded",
            "timeout_error" => "timeout",
            "overloaded_error" => "provider_overloaded",
            "api_error" => "provider_unavailable",
            "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => "invalid_request",
            "UNAUTHENTICATED" => "authentication",
            "PERMISSION_DENIED" => "permission_denied",
            "NOT_FOUND" => "not_found",
            "RESOURCE_EXHAUSTED" => "rate_limit_exceeded",
            "DEADLINE_EXCEEDED" => "timeout",
            "UNAVAILABLE" | "INTERNAL" => "provider_unavailable",
            _ => match self.status {
                429 => "rate_limit_exceeded",
                408 | 504 => "timeout",
                400..=499 => "invalid_request",
                _ => "provider_unavailable",
            },
        }
    }

    /// Whether another provider should be tried: the router's fallback statuses (5xx and 529 overloaded,
    /// 429 rate limited, 408 timeout, and 401/403, which say the router's key is wrong, not the request).
    /// `invalid_request_error` and the other 4xx are the request's fault: every provider would refuse it.
    pub fn retriable(&self) -> bool {
        matches!(self.status, 401 | 403 | 408 | 429) || self.status >= 500
    }
}
