//! The downstream role's decisions on the final response, as data: where it came from and who served,
//! which headers the client gets, whether a provider's error is replaced by ours, what happens to the
//! body, and which provider it proves healthy.

use super::request::Routed;
use crate::catalog::{Api, Catalog, Provider};
use crate::wire::error::ApiError;
use crate::wire::headers::{decimal, forwardable_response_header, header, media_type, status, Headers};
use crate::wire::native::{error_message, NativeStream};
use crate::wire::response::{Served, StreamRewriter};
use crate::wire::text::{decimal as decimal_text, truncated};

/// Where a response came from, as far as the host could tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The response came from a provider (`response.code_details` is `via_upstream`).
    pub via_upstream: bool,
    /// Attempts made: the response's `x-envoy-attempt-count`, else the stream's attempt count. The plan
    /// says which provider the last one went to.
    pub attempts: Option<u64>,
    /// Why the connection to the provider failed (local replies after a failed connection).
    pub transport_failure: Option<String>,
}

/// What to do with the final response's headers.
#[derive(Debug, PartialEq, Eq)]
pub enum ResponseVerdict {
    /// Send on with exactly these headers (the provider's, allowlisted, plus ours).
    Forward(Vec<(String, Vec<u8>)>),
    /// Replace the response with our error once the provider's body is complete ([`error_reply`]).
    Replace(Replacement),
}

/// A provider's failed response, to be replaced by our error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacement {
    /// The provider's display name, for the message.
    pub provider: String,
    /// Its status (0: no response at all, a TLS failure).
    pub status: u16,
    /// Its `Retry-After`, in seconds.
    pub retry_after: Option<u64>,
    /// The API it speaks (how its error body reads).
    pub api: Api,
}

/// The served provider of a response, by the plan and the attempt count.
fn served_provider<'c>(catalog: &'c Catalog, origin: &Origin, routed: &Routed) -> Option<&'c Provider> {
    routed.served(origin.attempts).map(|e| catalog.provider_of(e))
}

/// Decides on the final response headers.
pub fn on_response_headers(
    catalog: &Catalog,
    headers: &Headers,
    origin: &Origin,
    routed: &Routed,
) -> ResponseVerdict {
    let status = status(headers);
    let provider = served_provider(catalog, origin, routed);
    let tls_failure = origin
        .transport_failure
        .as_deref()
        .is_some_and(|r| r.contains("TLS") || r.contains("CERTIFICATE") || r.contains("SSL"));
    if (origin.via_upstream && status >= 400) || (!origin.via_upstream && status == 503 && tls_failure) {
        return ResponseVerdict::Replace(Replacement {
            provider: provider.map_or_else(|| "the provider".to_string(), |p| p.display_name.clone()),
            status: if origin.via_upstream { status } else { 0 },
            retry_after: header(headers, "retry-after").and_then(decimal),
            api: provider.map_or(Api::OpenAi, |p| p.api),
        });
    }
    let mut out: Vec<(String, Vec<u8>)> = headers
        .iter()
        .filter(|(n, _)| forwardable_response_header(n, origin.via_upstream, routed.provider_limits))
        .cloned()
        .collect();
    if let Some(p) = provider {
        out.push(("x-llm-provider".into(), p.name.clone().into_bytes()));
    }
    if !origin.via_upstream && matches!(status, 402 | 429) && header(headers, "retry-after").is_none() {
        // Envoy's rate limit filter refused the request (a limit across the fleet): its
        // `x-ratelimit-reset` is the seconds to the window's end, which is what `Retry-After` says.
        if let Some(reset) = header(headers, "x-ratelimit-reset").and_then(decimal) {
            out.push(("retry-after".into(), decimal_text(reset.max(1)).into_bytes()));
        }
    }
    if let Some(n) = origin.attempts {
        out.push(("x-llm-attempts".into(), decimal_text(n).into_bytes()));
        if let Some(e) = routed.served(Some(n)) {
            out.push(("x-llm-model".into(), catalog.model(e.model).id.clone().into_bytes()));
        }
    }
    if let Some(explain) = &routed.explain {
        out.push(("x-llm-route".into(), explain.clone().into_bytes()));
    }
    if let Some(id) = &routed.generation_id {
        out.push(("x-generation-id".into(), id.clone().into_bytes()));
    }
    ResponseVerdict::Forward(out)
}

/// What happens to the body of a forwarded response.
pub enum ResponseBody {
    /// Leave it alone (errors we pass, local replies, unknown content).
    Pass,
    /// A chat completion: buffered, rewritten (translated from `api`'s answer), and its cost put in
    /// `x-llm-cost-usd`; its headers are held until then (`headers`, filled in when they are held).
    Completion { served: Served, headers: Vec<(String, Vec<u8>)>, api: Api },
    /// An OpenAI SSE stream: rewritten event by event.
    Stream(Box<StreamRewriter>),
    /// A native provider's stream: translated event by event.
    NativeStream(Box<NativeStream>),
    /// A provider's error response, replaced by ours once its body is complete.
    Replacing(Replacement),
}

/// Decides what happens to the body of a response that is forwarded (`created`: now, in Unix seconds,
/// for the chunks of a translated stream).
pub fn response_body(
    catalog: &Catalog,
    status: u16,
    content_type: &[u8],
    origin: &Origin,
    routed: &Routed,
    created: u64,
) -> ResponseBody {
    let Some(e) =
        routed.served(origin.attempts).filter(|_| origin.via_upstream && (200..300).contains(&status))
    else {
        return ResponseBody::Pass;
    };
    let endpoint = catalog.endpoint(e);
    let api = catalog.provider(endpoint.provider).api;
    let served = Served {
        model_json: catalog.model(e.model).id_json.clone(),
        provider_json: catalog.provider(endpoint.provider).display_json.clone(),
        pricing: endpoint.pricing,
    };
    let media = media_type(content_type);
    if media.eq_ignore_ascii_case(b"text/event-stream") {
        if !api.is_native() {
            return ResponseBody::Stream(Box::new(StreamRewriter::new(served)));
        }
        // Every native API has a translator: `Pass` is never taken.
        NativeStream::new(api, served, created, false)
            .map_or(ResponseBody::Pass, |native| ResponseBody::NativeStream(Box::new(native)))
    } else if media.eq_ignore_ascii_case(b"application/json") || api.is_native() {
        // A native provider's answer is only ever read through its translation: one that is neither
        // JSON nor a stream fails it (our 502), never reaching the client in the provider's own shape.
        ResponseBody::Completion { served, headers: Vec::new(), api }
    } else {
        ResponseBody::Pass
    }
}

/// The `error_type` of a reply Envoy generated itself (as our local_reply_config words it).
pub fn envoy_error_type(status: u16) -> &'static str {
    match status {
        408 | 504 => "timeout",
        402 => "payment_required",
        413 => "payload_too_large",
        429 => "rate_limit_exceeded",
        400..=499 => "invalid_request",
        _ => "provider_unavailable",
    }
}

/// The provider a response proves healthy: it answered 2xx itself. Its health record, if any, is cleared
/// (the logger, filtered to failed attempts, never sees a clean success).
pub fn recovered_provider<'c>(
    catalog: &'c Catalog,
    status: u16,
    origin: &Origin,
    routed: &Routed,
) -> Option<&'c Provider> {
    served_provider(catalog, origin, routed).filter(|_| origin.via_upstream && (200..300).contains(&status))
}

/// The error that replaces a failed provider response. `body` is the provider's body, used only for a
/// 4xx the client caused.
pub fn error_reply(catalog: &Catalog, r: &Replacement, body: &[u8]) -> ApiError {
    let provider = &r.provider;
    let status = r.status;
    match status {
        0 => ApiError::BadGateway(format!("Could not verify the TLS certificate of {provider}")),
        429 => ApiError::RateLimited {
            message: format!("{provider} is rate limited; retry later"),
            retry_after: r.retry_after.unwrap_or(1).clamp(1, 3600),
        },
        401 | 403 => {
            ApiError::BadGateway(format!("{provider} refused the router's credentials (status {status})"))
        }
        408 => ApiError::BadGateway(format!("{provider} timed out (status 408)")),
        400..=499 => ApiError::ProviderRejected {
            status,
            message: provider_message(catalog, provider, r.api, status, body),
        },
        _ => ApiError::BadGateway(format!(
            "{provider} failed (status {status}) and no other provider could serve"
        )),
    }
}

/// The message of a provider's error body (OpenAI's shape, or its native API's), bounded, with any
/// provider key it quotes redacted (before the cut, so no part of a key survives it); a generic one when
/// there is none.
fn provider_message(catalog: &Catalog, provider: &str, api: Api, status: u16, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Body {
        error: Inner,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        message: String,
    }
    let message = if api.is_native() {
        error_message(api, status, body)
    } else {
        serde_json::from_slice::<Body>(body).ok().map(|b| b.error.message).filter(|m| !m.is_empty())
    };
    match message {
        Some(message) => {
            // Redacting may only shorten what is kept: look a key's length past the cut.
            let head = catalog.without_keys(truncated(&message, 1000 + 512));
            format!("{provider}: {}", truncated(&head, 1000))
        }
        None => format!("{provider} rejected the request (status {status})"),
    }
}

#[cfg(test)]
mod tests;
