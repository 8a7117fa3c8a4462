//! A non-streamed Gemini `GenerateContentResponse` as the OpenAI `chat.completion` the client receives
//! (OpenRouter's additions included: public `model`, `provider`, `usage.cost`), and Gemini's error bodies
//! as a status, an OpenRouter `error_type` and whether another provider should be tried.
//!
//! The response: the first candidate's text parts joined → `message.content` (null when the answer is
//! only function calls); parts with `thought: true` joined → `message.reasoning`; `functionCall` parts →
//! `tool_calls` (`args`' JSON text as the `arguments` string; the call's `id` when Gemini sent one, else
//! `call_<n>`, `n` counting the calls of the answer from 0, deterministic so a stream and a whole answer
//! agree); other parts (inline images, executable code, …) are not shown;
//! `finishReason` → `finish_reason` ([`super::finish_reason`]) with `native_finish_reason` kept. A prompt
//! Gemini blocked (`promptFeedback.blockReason`, no candidate) is `finish_reason: "content_filter"` with
//! null content, the block reason as `native_finish_reason`. Usage in OpenAI's convention
//! ([`super::GeminiUsage::to_usage`]) priced like an OpenAI provider's.

use super::{finish_reason, GeminiUsage};
use crate::wire::error::ApiError;
use crate::wire::native::completion::Completion;
use crate::wire::native::ProviderError;
use crate::wire::response::{Accounted, Served};
use crate::wire::text::{push_json_str, push_u64};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// A `GenerateContentResponse` (a whole answer, or one stream event), the members we read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GenerateContentResponse<'a> {
    #[serde(borrow, default)]
    pub candidates: Vec<Candidate<'a>>,
    #[serde(borrow, default)]
    pub prompt_feedback: Option<PromptFeedback<'a>>,
    #[serde(default)]
    pub usage_metadata: Option<GeminiUsage>,
    #[serde(borrow, default)]
    pub response_id: Option<Cow<'a, str>>,
    /// Present when the body (or event) is an error, not a response.
    #[serde(borrow, default)]
    pub error: Option<&'a RawValue>,
}

impl GenerateContentResponse<'_> {
    /// The block reason of a prompt Gemini refused to answer.
    pub fn block_reason(&self) -> Option<&str> {
        self.prompt_feedback.as_ref().and_then(|f| f.block_reason.as_deref())
    }
}

/// A candidate: only the first is read (`n` > 1 is refused on the way out).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Candidate<'a> {
    #[serde(borrow, default)]
    pub content: Option<Content<'a>>,
    #[serde(borrow, default)]
    pub finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
pub(super) struct Content<'a> {
    #[serde(borrow, default)]
    pub parts: Vec<Part<'a>>,
}

/// A part; only the members of the kinds we translate are read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Part<'a> {
    #[serde(borrow, default)]
    pub text: Option<Cow<'a, str>>,
    #[serde(default)]
    pub thought: Option<bool>,
    #[serde(borrow, default)]
    pub function_call: Option<FunctionCall<'a>>,
}

#[derive(Deserialize)]
pub(super) struct FunctionCall<'a> {
    #[serde(borrow, default)]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub args: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PromptFeedback<'a> {
    #[serde(borrow, default)]
    pub block_reason: Option<Cow<'a, str>>,
}

/// The id of a chat completion whose Gemini response has no `responseId`.
pub(super) const DEFAULT_ID: &str = "gen-gemini";

/// Appends an OpenAI tool call (`index`: `Some` in a stream delta) for Gemini's `call`, the `n`th call
/// of the answer (counted from 0): `id` Gemini's or `call_<n>`, `arguments` the `args` JSON text
/// (`{}` when absent).
pub(super) fn push_tool_call(out: &mut String, call: &FunctionCall<'_>, n: u64, index: Option<u64>) {
    out.push('{');
    if let Some(i) = index {
        out.push_str("\"index\":");
        push_u64(out, i);
        out.push(',');
    }
    out.push_str("\"id\":");
    match call.id.as_deref().filter(|id| !id.is_empty()) {
        Some(id) => push_json_str(out, id),
        None => {
            out.push_str("\"call_");
            push_u64(out, n);
            out.push('"');
        }
    }
    out.push_str(",\"type\":\"function\",\"function\":{\"name\":");
    push_json_str(out, call.name.as_deref().unwrap_or(""));
    out.push_str(",\"arguments\":");
    push_json_str(out, call.args.map_or("{}", RawValue::get));
    out.push_str("}}");
}

/// The client's `chat.completion` for Gemini's response `body`, served by `served`, `created` (Unix
/// seconds). A body that is not a `GenerateContentResponse` with a candidate or a block reason is a 502
/// (the client must not receive another API's shape). The usage is known when the body has
/// `usageMetadata`.
pub fn to_completion(body: &[u8], served: &Served, created: u64) -> Result<(Vec<u8>, Accounted), ApiError> {
    let bad = || ApiError::BadGateway("The provider's answer is not a valid generateContent response".into());
    let text = std::str::from_utf8(body).map_err(|_| bad())?;
    let response: GenerateContentResponse<'_> = serde_json::from_str(text).map_err(|_| bad())?;
    let block = response.block_reason();
    if response.error.is_some() || (response.candidates.is_empty() && block.is_none()) {
        return Err(bad());
    }
    let mut content = String::new();
    let mut reasoning = String::new();
    let mut calls = String::new();
    let mut n = 0u64;
    let candidate = response.candidates.first();
    for part in candidate.and_then(|c| c.content.as_ref()).map_or(&[][..], |c| &c.parts[..]) {
        if let Some(call) = &part.function_call {
            if n > 0 {
                calls.push(',');
            }
            push_tool_call(&mut calls, call, n, None);
            n += 1;
        } else if let Some(t) = &part.text {
            if part.thought == Some(true) {
                reasoning.push_str(t);
            } else {
                content.push_str(t);
            }
        }
    }
    let native = match candidate {
        Some(c) => c.finish_reason.as_deref(),
        None => block,
    };
    let finish = match candidate {
        Some(_) => finish_reason(native.unwrap_or(""), n > 0),
        None => "content_filter",
    };
    let completion = Completion {
        id: response.response_id.as_deref().unwrap_or(DEFAULT_ID),
        // Null for a blocked prompt (no candidate) and for an answer of function calls only.
        content: Some(content.as_str()).filter(|c| candidate.is_some() && (!c.is_empty() || n == 0)),
        reasoning: &reasoning,
        tool_calls: &calls,
        finish_reason: finish,
        native_finish_reason: native,
        usage: response.usage_metadata.map(GeminiUsage::to_usage),
    };
    Ok(completion.write(served, created, body.len()))
}

/// Gemini's error from a body (`{"error":{"code":503,"message":…,"status":"UNAVAILABLE"}}`, or that object
/// wrapped in a JSON array, as Gemini sometimes sends it) with `status` (the HTTP status, or `None` for a
/// stream event). The status is the HTTP one when it is an error status, else the body's `error.code`
/// when that is one, else [`documented_status`] of `error.status`. A body that does not parse keeps the
/// status and an empty type.
pub fn parse_error(status: Option<u16>, body: &[u8]) -> ProviderError {
    #[derive(Deserialize)]
    struct Body {
        error: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        // Values, so that a member of an unexpected type loses only itself.
        #[serde(default)]
        code: Option<serde_json::Value>,
        #[serde(default)]
        message: Option<serde_json::Value>,
        #[serde(default)]
        status: Option<serde_json::Value>,
    }
    // The array first: serde would also read a struct from an array (as a tuple), and find nothing.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Wrapped {
        Many(Vec<Body>),
        One(Body),
    }
    let inner = match serde_json::from_slice::<Wrapped>(body) {
        Ok(Wrapped::One(b)) => Some(b.error),
        Ok(Wrapped::Many(v)) => v.into_iter().next().map(|b| b.error),
        Err(_) => None,
    };
    let (code, native_type, message) = match inner {
        Some(e) => (
            e.code.and_then(|c| c.as_u64()).and_then(|c| u16::try_from(c).ok()),
            e.status.and_then(|s| s.as_str().map(str::to_string)).unwrap_or_default(),
            e.message.and_then(|m| m.as_str().map(str::to_string)).unwrap_or_default(),
        ),
        None => (None, String::new(), String::new()),
    };
    let status = status
        .filter(|s| *s >= 400)
        .or(code.filter(|c| (400..=599).contains(c)))
        .unwrap_or_else(|| documented_status(&native_type));
    ProviderError { status, native_type, message }
}

/// The HTTP status Google documents for a canonical error status name (Gemini's `error.status`), for an
/// error that came without a usable status (a stream event with no `code`); 502 for an unknown name.
pub fn documented_status(native_type: &str) -> u16 {
    match native_type {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => 400,
        "UNAUTHENTICATED" => 401,
        "PERMISSION_DENIED" => 403,
        "NOT_FOUND" => 404,
        "ABORTED" | "ALREADY_EXISTS" => 409,
        "RESOURCE_EXHAUSTED" => 429,
        "CANCELLED" => 499,
        "INTERNAL" | "UNKNOWN" | "DATA_LOSS" => 500,
        "UNIMPLEMENTED" => 501,
        "UNAVAILABLE" => 503,
        "DEADLINE_EXCEEDED" => 504,
        _ => 502,
    }
}

#[cfg(test)]
#[path = "response_tests.rs"]
mod tests;
