//! The native (non-OpenAI) provider APIs behind one face: the request translated for an API
//! ([`translate_request`], [`request_path`]), an answer's stream translated back ([`NativeStream`]), the
//! gate that holds a stream until it is known to be content or a failure ([`StreamGate`]), and what the
//! APIs share on the way back: an error they reported ([`ProviderError`]) and what a stream translator
//! hands its caller per chunk ([`Step`]), and the OpenRouter `usage` object written for a translated
//! answer ([`push_usage`]).

use super::chat_request::ChatRequest;
use super::error::ApiError;
use super::response::{Accounted, Served};
use super::{anthropic, gemini};
use crate::catalog::{Api, Provider};
use crate::wire::text::push_u64;
use crate::wire::usage::{push_cost_members, Cost, Usage};

pub mod completion;
#[cfg(test)]
pub(crate) mod harness_tests;
pub mod request_reader;
pub mod stream;
pub mod transcript;

/// `max_tokens` for a request that sets none, sent to an API that requires one (Anthropic), when the
/// endpoint declares no `max_completion_tokens`.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The body of `req` for a provider of `api` serving `model` (its native name); `max_completion_tokens`
/// is the endpoint's (`None`: [`DEFAULT_MAX_TOKENS`]). A request the API cannot take is a 400 naming the
/// field. (`api` OpenAI: the body needs no translation, and this is never called for it.)
pub fn translate_request(
    api: Api,
    req: &ChatRequest<'_>,
    model: &str,
    max_completion_tokens: Option<u64>,
) -> Result<Vec<u8>, ApiError> {
    let default_max_tokens = max_completion_tokens.filter(|n| *n > 0).unwrap_or(DEFAULT_MAX_TOKENS);
    match api {
        Api::Anthropic => anthropic::request::to_anthropic(req, model, default_max_tokens),
        Api::Gemini => gemini::request::to_gemini(req, default_max_tokens),
        Api::OpenAi => Ok(req.body.as_bytes().to_vec()),
    }
}

/// A native provider's whole (non-streamed) answer as the client's `chat.completion`, with its usage and
/// cost; a body that is not the API's answer is a 502.
pub fn translate_completion(
    api: Api,
    body: &[u8],
    served: &Served,
    created: u64,
) -> Result<(Vec<u8>, Accounted), ApiError> {
    match api {
        Api::Anthropic => anthropic::response::to_completion(body, served, created),
        Api::Gemini => gemini::response::to_completion(body, served, created),
        Api::OpenAi => Err(ApiError::BadGateway("The provider's answer could not be read".into())),
    }
}

/// The message of a native provider's error body (`None` when it has none).
pub fn error_message(api: Api, status: u16, body: &[u8]) -> Option<String> {
    let e = match api {
        Api::Anthropic => anthropic::response::parse_error(Some(status), body),
        Api::Gemini => gemini::response::parse_error(Some(status), body),
        Api::OpenAi => return None,
    };
    Some(e.message).filter(|m| !m.is_empty())
}

/// The `:path` of a request to provider `p` for `model`, streamed or not: Gemini names the model and the
/// method in the path (`…/models/<model>:streamGenerateContent?alt=sse`); the others have one path.
pub fn request_path(p: &Provider, model: &str, stream: bool) -> String {
    match p.api {
        Api::Gemini => {
            let method = if stream { ":streamGenerateContent?alt=sse" } else { ":generateContent" };
            let mut path = String::with_capacity(p.chat_path.len() + model.len() + method.len());
            path.push_str(&p.chat_path);
            path.push_str(model);
            path.push_str(method);
            path
        }
        _ => p.chat_path.clone(),
    }
}

/// A native stream translated to OpenAI chunks, for the client.
pub enum NativeStream {
    /// Anthropic's Messages events.
    Anthropic(anthropic::stream::StreamTranslator),
    /// Gemini's `alt=sse` stream of `GenerateContentResponse`s.
    Gemini(gemini::stream::StreamTranslator),
}

impl NativeStream {
    /// The translator for a stream of `api` (`None` for OpenAI's, which needs none). With `failover`, a
    /// failure before anything was sent is [`Step::Failed`]; without, it is the typed error chunk.
    pub fn new(api: Api, served: Served, created: u64, failover: bool) -> Option<NativeStream> {
        match api {
            Api::Anthropic => {
                let t = anthropic::stream::StreamTranslator::new(served, created);
                Some(NativeStream::Anthropic(if failover { t } else { t.without_failover() }))
            }
            Api::Gemini => {
                let t = gemini::stream::StreamTranslator::new(served, created);
                Some(NativeStream::Gemini(if failover { t } else { t.without_failover() }))
            }
            Api::OpenAi => None,
        }
    }

    /// Feeds provider bytes: what to send the client now, or the failure to fail over on.
    pub fn feed(&mut self, input: &[u8]) -> Step<'_> {
        match self {
            NativeStream::Anthropic(t) => t.feed(input),
            NativeStream::Gemini(t) => t.feed(input),
        }
    }

    /// At the end of the provider's stream: what is left (the error chunk if it was not complete).
    pub fn finish(&mut self) -> Step<'_> {
        match self {
            NativeStream::Anthropic(t) => t.finish(),
            NativeStream::Gemini(t) => t.finish(),
        }
    }

    /// Usage and cost, once the stream reported them.
    pub fn accounted(&self) -> Accounted {
        match self {
            NativeStream::Anthropic(t) => t.accounted(),
            NativeStream::Gemini(t) => t.accounted(),
        }
    }

    /// Who serves the stream.
    pub fn served(&self) -> &Served {
        match self {
            NativeStream::Anthropic(t) => t.served(),
            NativeStream::Gemini(t) => t.served(),
        }
    }

    /// Content chunks sent so far.
    pub fn content_chunks(&self) -> u64 {
        match self {
            NativeStream::Anthropic(t) => t.content_chunks(),
            NativeStream::Gemini(t) => t.content_chunks(),
        }
    }
}

/// Most bytes of a stream held before its first content: past this, the stream is let through as it
/// is (a provider that sends that much without content or error is not failing fast).
pub const MAX_GATED_BYTES: usize = 64 * 1024;

/// What the gate decided about a held stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    /// Not known yet: keep holding.
    Hold,
    /// Content came (or the stream ended well, or it is too long to hold): let it through as it is.
    Release,
    /// The provider failed before any content: answer the router with this error instead, so that it
    /// tries the next provider (Envoy's retry policy, by status).
    Fail(ProviderError),
}

/// Holds a native stream's first bytes, in the upstream role, until they show content or a failure: an
/// error event after a 200 but before content then becomes an error status the router retries on, where
/// the client would otherwise get a failed stream. It translates as the client's translator will, and
/// throws the output away.
pub struct StreamGate {
    stream: NativeStream,
    /// Bytes of the buffered body already fed.
    seen: usize,
}

impl StreamGate {
    /// A gate for a stream of `api` (`None` for OpenAI's).
    pub fn new(api: Api) -> Option<StreamGate> {
        let served =
            Served { model_json: "\"\"".into(), provider_json: "\"\"".into(), pricing: Default::default() };
        Some(StreamGate { stream: NativeStream::new(api, served, 0, true)?, seen: 0 })
    }

    /// Bytes the gate has been fed: where the next call's `new` bytes start in the held body.
    pub fn seen(&self) -> usize {
        self.seen
    }

    /// The held body's bytes since the last call (`new`, from offset [`StreamGate::seen`]) and whether the
    /// body is complete.
    pub fn check(&mut self, new: &[u8], end_of_stream: bool) -> Gate {
        self.seen = self.seen.saturating_add(new.len());
        let fed = match self.stream.feed(new) {
            Step::Failed(e) => return Gate::Fail(e),
            Step::Forward(out) => !out.is_empty(),
        };
        if fed || self.seen > MAX_GATED_BYTES {
            return Gate::Release;
        }
        if !end_of_stream {
            return Gate::Hold;
        }
        match self.stream.finish() {
            Step::Failed(e) => Gate::Fail(e),
            Step::Forward(_) => Gate::Release,
        }
    }
}

impl ProviderError {
    /// The body the router's error path reads (the OpenAI error shape, whose `message` it quotes).
    pub fn body(&self) -> String {
        let mut out = String::from("{\"error\":{\"message\":");
        super::text::push_json_str(&mut out, &self.message);
        out.push_str(",\"type\":");
        super::text::push_json_str(&mut out, &self.native_type);
        out.push_str("}}");
        out
    }
}

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
        self.error_type_by_name().unwrap_or(match self.status {
            429 => "rate_limit_exceeded",
            408 | 504 => "timeout",
            400..=499 => "invalid_request",
            _ => "provider_unavailable",
        })
    }

    /// OpenRouter's `error_type` for a native type the APIs document.
    fn error_type_by_name(&self) -> Option<&'static str> {
        Some(match self.native_type.as_str() {
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
            _ => return None,
        })
    }

    /// The native type when it is one the APIs document (the names [`ProviderError::error_type`]
    /// knows): safe to show, unlike any other text a provider sends.
    pub fn documented_type(&self) -> Option<&str> {
        self.error_type_by_name().map(|_| self.native_type.as_str())
    }

    /// Whether another provider should be tried: the router's fallback statuses (5xx and 529 overloaded,
    /// 429 rate limited, 408 timeout, and 401/403, which say the router's key is wrong, not the request).
    /// `invalid_request_error` and the other 4xx are the request's fault: every provider would refuse it.
    pub fn retriable(&self) -> bool {
        matches!(self.status, 401 | 403 | 408 | 429) || self.status >= 500
    }
}

/// Appends OpenRouter's `usage` object: OpenAI's counts (`prompt_tokens_details.cached_tokens` and
/// `.cache_write_tokens`; `completion_tokens_details.reasoning_tokens` when the API counted reasoning
/// apart, as Gemini does, so an unknown count is never shown as 0) and, given its cost, `cost`,
/// `cost_details`, `cache_discount` and `is_byok` (the same members the OpenAI response rewrite adds).
pub fn push_usage(out: &mut String, usage: &Usage, cost: &Cost) {
    out.push_str("{\"prompt_tokens\":");
    push_u64(out, usage.prompt_tokens);
    out.push_str(",\"completion_tokens\":");
    push_u64(out, usage.completion_tokens);
    out.push_str(",\"total_tokens\":");
    push_u64(out, usage.prompt_tokens.saturating_add(usage.completion_tokens));
    out.push_str(",\"prompt_tokens_details\":{\"cached_tokens\":");
    push_u64(out, usage.cached_tokens);
    out.push_str(",\"cache_write_tokens\":");
    push_u64(out, usage.cache_write_tokens);
    out.push('}');
    if usage.reasoning_tokens > 0 {
        out.push_str(",\"completion_tokens_details\":{\"reasoning_tokens\":");
        push_u64(out, usage.reasoning_tokens);
        out.push('}');
    }
    out.push(',');
    push_cost_members(out, cost);
    out.push('}');
}
