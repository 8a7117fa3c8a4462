//! A non-streamed Anthropic message as the OpenAI `chat.completion` the client receives (OpenRouter's
//! additions included: public `model`, `provider`, `usage.cost`), and Anthropic's error bodies as a
//! status, an OpenRouter `error_type` and whether another provider should be tried.
//!
//! The message: text blocks joined → `message.content` (null when the answer is only tool calls);
//! `tool_use` blocks → `tool_calls` (`input`'s JSON text as the `arguments` string, ids kept: Anthropic's
//! are valid OpenAI ids); `thinking` blocks joined → `message.reasoning` (redacted thinking, server-tool
//! and citation blocks are not shown); `stop_reason` → `finish_reason` ([`super::finish_reason`]) with
//! `native_finish_reason` kept; usage in OpenAI's convention ([`super::AnthropicUsage::to_usage`]) priced
//! like an OpenAI provider's.

use super::{finish_reason, AnthropicUsage};
use crate::wire::error::ApiError;
use crate::wire::native::completion::Completion;
use crate::wire::native::ProviderError;
use crate::wire::response::{Accounted, Served};
use crate::wire::text::push_json_str;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// An Anthropic message (`"type":"message"`), the members we read.
#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Vec<Block<'a>>,
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

/// A content block; only the members of the types we translate are read.
#[derive(Deserialize)]
pub(super) struct Block<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow, default)]
    pub text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub thinking: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub input: Option<&'a RawValue>,
}

/// The client's `chat.completion` for Anthropic's message `body`, served by `served`, `created` (Unix
/// seconds: Anthropic's message has no timestamp). A body that is not an Anthropic message is a 502
/// (the client must not receive another API's shape). The usage is known when the message has one.
pub fn to_completion(body: &[u8], served: &Served, created: u64) -> Result<(Vec<u8>, Accounted), ApiError> {
    let bad = || ApiError::BadGateway("The provider's answer is not a valid Messages API message".into());
    let text = std::str::from_utf8(body).map_err(|_| bad())?;
    let message: Message<'_> = serde_json::from_str(text).map_err(|_| bad())?;
    if message.kind.as_deref().is_some_and(|k| k != "message") {
        return Err(bad());
    }
    let mut content = String::new();
    let mut reasoning = String::new();
    let mut calls = String::new();
    for block in &message.content {
        match block.kind.as_ref() {
            "text" => content.push_str(block.text.as_deref().unwrap_or("")),
            "thinking" => reasoning.push_str(block.thinking.as_deref().unwrap_or("")),
            "tool_use" => {
                if !calls.is_empty() {
                    calls.push(',');
                }
                calls.push_str("{\"id\":");
                push_json_str(&mut calls, block.id.as_deref().unwrap_or(""));
                calls.push_str(",\"type\":\"function\",\"function\":{\"name\":");
                push_json_str(&mut calls, block.name.as_deref().unwrap_or(""));
                calls.push_str(",\"arguments\":");
                push_json_str(&mut calls, block.input.map_or("{}", RawValue::get));
                calls.push_str("}}");
            }
            _ => {}
        }
    }
    let native = message.stop_reason.as_deref();
    let completion = Completion {
        id: &message.id,
        content: Some(content.as_str()).filter(|c| !c.is_empty() || calls.is_empty()),
        reasoning: &reasoning,
        tool_calls: &calls,
        finish_reason: finish_reason(native.unwrap_or("")),
        native_finish_reason: native,
        usage: message.usage.map(AnthropicUsage::to_usage),
    };
    Ok(completion.write(served, created, body.len()))
}

/// Anthropic's error from a body (`{"type":"error","error":{"type":…,"message":…}}`) with `status`
/// (the HTTP status, or `None` for a stream event). A body that does not parse keeps the status and
/// an empty type.
pub fn parse_error(status: Option<u16>, body: &[u8]) -> ProviderError {
    #[derive(Deserialize)]
    struct Body {
        error: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        #[serde(rename = "type", default)]
        kind: String,
        #[serde(default)]
        message: String,
    }
    let (native_type, message) = match serde_json::from_slice::<Body>(body) {
        Ok(b) => (b.error.kind, b.error.message),
        Err(_) => (String::new(), String::new()),
    };
    let status = status.filter(|s| *s >= 400).unwrap_or_else(|| documented_status(&native_type));
    ProviderError { status, native_type, message }
}

/// The HTTP status Anthropic documents for an error type (stream `error` events carry no status).
pub fn documented_status(native_type: &str) -> u16 {
    match native_type {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "api_error" => 500,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 502,
    }
}

#[cfg(test)]
#[path = "response_tests.rs"]
mod tests;
