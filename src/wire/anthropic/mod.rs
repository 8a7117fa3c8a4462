//! Anthropic's Messages API (`POST /v1/messages`, `anthropic-version: 2023-06-01`) spoken on a client's
//! behalf: the OpenAI chat request translated on the way out ([`request`]), the answer translated back,
//! whole ([`response`]) or streamed ([`stream`]), with usage and cost exactly as for an OpenAI provider.
//!
//! Plain functions and one state machine: no host calls, no clock (the caller passes `created`), no
//! proxy-wasm types. The filter reaches them through [`crate::wire::native`] (by the provider's `api`).
//!
//! Shared here: Anthropic's usage counts and how they become OpenAI's ([`AnthropicUsage`]), the
//! `stop_reason` mapping ([`finish_reason`]); the OpenRouter `usage` object with its cost
//! ([`crate::wire::native::push_usage`]) is shared with Gemini.

pub mod request;
pub mod response;
pub mod stream;

use crate::wire::usage::Usage;
use serde::Deserialize;

/// Anthropic's `usage` object (a message's, `message_start`'s or `message_delta`'s). Counts are
/// optional because `message_delta` may carry only `output_tokens`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub struct AnthropicUsage {
    /// Prompt tokens neither read from nor written to the cache.
    #[serde(default)]
    pub input_tokens: Option<u64>,
    /// Completion tokens (thinking included); cumulative in `message_delta`.
    #[serde(default)]
    pub output_tokens: Option<u64>,
    /// Prompt tokens written to the cache.
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
    /// Prompt tokens read from the cache.
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
}

impl AnthropicUsage {
    /// `later`'s counts where it has them, ours otherwise (a `message_delta` updates `message_start`).
    pub fn updated(self, later: AnthropicUsage) -> AnthropicUsage {
        AnthropicUsage {
            input_tokens: later.input_tokens.or(self.input_tokens),
            output_tokens: later.output_tokens.or(self.output_tokens),
            cache_creation_input_tokens: later
                .cache_creation_input_tokens
                .or(self.cache_creation_input_tokens),
            cache_read_input_tokens: later.cache_read_input_tokens.or(self.cache_read_input_tokens),
        }
    }

    /// In OpenAI's convention: Anthropic's `input_tokens` excludes cached and cache-write tokens, OpenAI's
    /// `prompt_tokens` includes both (so the cost is computed as for an OpenAI provider). Anthropic does
    /// not count thinking tokens apart: `reasoning_tokens` stays 0 (they are inside the completion).
    pub fn to_usage(self) -> Usage {
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let write = self.cache_creation_input_tokens.unwrap_or(0);
        Usage {
            prompt_tokens: self.input_tokens.unwrap_or(0).saturating_add(read).saturating_add(write),
            completion_tokens: self.output_tokens.unwrap_or(0),
            cached_tokens: read,
            cache_write_tokens: write,
            reasoning_tokens: 0,
        }
    }
}

/// OpenAI's `finish_reason` for Anthropic's `stop_reason`: `end_turn`, `stop_sequence` and `pause_turn`
/// (a server tool paused the turn: what was said is complete) → `stop`; `max_tokens` and
/// `model_context_window_exceeded` → `length`; `tool_use` → `tool_calls`; `refusal` → `content_filter`.
/// A reason this table does not know is `stop` (the provider ended the message normally); the native
/// value is always kept beside it as `native_finish_reason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

#[cfg(test)]
#[path = "fixture_tests.rs"]
mod fixture_tests;
