//! Google's Gemini API (`POST /v1beta/models/{model}:generateContent`, streamed with
//! `:streamGenerateContent?alt=sse`) spoken on a client's behalf: the OpenAI chat request translated on
//! the way out ([`request`]), the answer translated back, whole ([`response`]) or streamed ([`stream`]),
//! with usage and cost exactly as for an OpenAI provider.
//!
//! Plain functions and one state machine: no host calls, no clock (the caller passes `created`), no
//! proxy-wasm types. The model and the streaming choice are in the path the caller builds, never in the
//! body. The filter reaches them through [`crate::wire::native`] (by the provider's `api`).
//!
//! Shared here: Gemini's `usageMetadata` and how it becomes OpenAI's usage ([`GeminiUsage`]), and the
//! `finishReason` mapping ([`finish_reason`]). The OpenRouter `usage` object is written by
//! [`crate::wire::native::push_usage`], as for Anthropic.

pub mod request;
pub mod response;
pub mod stream;

use crate::wire::usage::Usage;
use serde::Deserialize;

/// Gemini's `usageMetadata` (a response's, or a stream event's: there the counts are cumulative, so the
/// last one seen is the stream's). Counts are optional: a blocked prompt has no candidate counts.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GeminiUsage {
    /// Prompt tokens, cached ones included.
    #[serde(default)]
    pub prompt_token_count: Option<u64>,
    /// Prompt tokens read from the context cache (implicit or explicit).
    #[serde(default)]
    pub cached_content_token_count: Option<u64>,
    /// Answer tokens, thinking excluded.
    #[serde(default)]
    pub candidates_token_count: Option<u64>,
    /// Thinking tokens (billed as output).
    #[serde(default)]
    pub thoughts_token_count: Option<u64>,
    /// Prompt tokens of the results of Gemini's own tools (code execution, search), billed as input.
    #[serde(default)]
    pub tool_use_prompt_token_count: Option<u64>,
}

impl GeminiUsage {
    /// In OpenAI's convention: `prompt_tokens` = `promptTokenCount` (which, like OpenAI's, includes the
    /// cached tokens) + `toolUsePromptTokenCount`; `completion_tokens` = `candidatesTokenCount` +
    /// `thoughtsTokenCount` (Gemini counts thinking apart, OpenAI inside), with the thoughts as
    /// `reasoning_tokens`; `cached_tokens` = `cachedContentTokenCount`. Gemini has no cache-write charge:
    /// `cache_write_tokens` is 0.
    pub fn to_usage(self) -> Usage {
        let thoughts = self.thoughts_token_count.unwrap_or(0);
        Usage {
            prompt_tokens: self
                .prompt_token_count
                .unwrap_or(0)
                .saturating_add(self.tool_use_prompt_token_count.unwrap_or(0)),
            completion_tokens: self.candidates_token_count.unwrap_or(0).saturating_add(thoughts),
            cached_tokens: self.cached_content_token_count.unwrap_or(0),
            cache_write_tokens: 0,
            reasoning_tokens: thoughts,
        }
    }
}

/// OpenAI's `finish_reason` for Gemini's `finishReason` (or a prompt's `blockReason`); `calls`: the
/// answer holds function calls.
///
/// `STOP` → `stop`, or `tool_calls` when the answer called functions (Gemini says `STOP` either way);
/// `MAX_TOKENS` → `length`; the safety family (`SAFETY`, `RECITATION`, `BLOCKLIST`,
/// `PROHIBITED_CONTENT`, `SPII`, `IMAGE_SAFETY`, `IMAGE_PROHIBITED_CONTENT`, `IMAGE_RECITATION`) →
/// `content_filter`. Every other reason (`MALFORMED_FUNCTION_CALL`, `LANGUAGE`, `OTHER`, reasons added
/// later, …) → `stop`, or `tool_calls` when calls came: the model ended its turn, and what it said is
/// in the message. The native value is always kept beside it as `native_finish_reason`.
pub fn finish_reason(native: &str, calls: bool) -> &'static str {
    match native {
        "MAX_TOKENS" => "length",
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION" => "content_filter",
        _ if calls => "tool_calls",
        _ => "stop",
    }
}

#[cfg(test)]
#[path = "fixture_tests.rs"]
mod fixture_tests;
