//! Gemini's `streamGenerateContent?alt=sse` stream, fed in arbitrary chunks, as OpenAI
//! `chat.completion.chunk` events as they arrive. Each Gemini event (`data: <GenerateContentResponse>`,
//! no event names, no end marker) is translated when its blank line is in ([`SseParser`]: CRLF and
//! `data:` without a space included); nothing is held beyond the current event, except the role chunk,
//! which waits for the first event that says something (so that an error before any content reaches the
//! caller with no byte sent to the client yet).
//!
//! | Gemini event | OpenAI chunks |
//! |---|---|
//! | first content, finish or end | `{"delta":{"role":"assistant","content":""}}` (the chunk id is the first `responseId`) |
//! | text part | `{"delta":{"content":…}}` |
//! | text part with `thought: true` | `{"delta":{"reasoning":…}}` |
//! | `functionCall` part (always whole) | `tool_calls[{index, id, type, function{name, arguments}}]`: `index` counts the calls, `id` Gemini's or `call_<index>`, `arguments` the whole `args` JSON text |
//! | `finishReason` | `{"delta":{},"finish_reason":…,"native_finish_reason":…}` ([`super::finish_reason`]; `tool_calls` when calls came) |
//! | `promptFeedback.blockReason`, no candidate | the finish chunk, `content_filter`, the block reason as native |
//! | `usageMetadata` | remembered: it is cumulative, the last one seen counts |
//! | the end of the stream, after a finish | the usage chunk (`choices: []`), then `data: [DONE]` (Gemini has no stop event: the end is its end) |
//! | `{"error":…}`, before anything was sent | [`Step::Failed`]: the caller fails over |
//! | `{"error":…}` after, an invalid or oversized event, or the end without a `finishReason` | OpenRouter's typed error chunk (`finish_reason: "error"`), and the stream ends |
//! | `data: [DONE]` (not Gemini's; a proxy's), comments | nothing |
//!
//! A stream that ends before anything was sent is a [`Step::Failed`] too. Output is identical whatever the
//! chunk boundaries (the parser's guarantee, and nothing here depends on them).

use super::finish_reason;
use super::response::{parse_error, push_tool_call, GenerateContentResponse, DEFAULT_ID};
use crate::wire::native::stream::{ApiEvents, Chunks, Translator};
pub use crate::wire::native::Step;
use crate::wire::text::push_json_str;

/// The translator; one per streamed response (the shared plumbing, reading Gemini's events).
pub type StreamTranslator = Translator<ResponseEvents>;

/// What Gemini's events leave to remember between them.
#[derive(Default)]
pub struct ResponseEvents {
    /// Function calls sent so far.
    calls: u64,
}

impl ApiEvents for ResponseEvents {
    const DEFAULT_ID: &'static str = DEFAULT_ID;
    // Gemini sends no `[DONE]`; one added on the way is no reason to fail.
    const IGNORES_DONE: bool = true;
    // Gemini has no stop event: after a finish, the end of the stream is its end.
    const ENDS_AT_STREAM_END: bool = true;

    fn event(&mut self, chunks: &mut Chunks, data: &[u8]) -> bool {
        let Ok(ev) = serde_json::from_slice::<GenerateContentResponse<'_>>(data) else { return false };
        if ev.error.is_some() {
            chunks.fail(parse_error(None, data));
            return true;
        }
        if !chunks.sent() {
            if let Some(id) = ev.response_id.as_deref().filter(|id| !id.is_empty()) {
                chunks.set_id(id);
            }
        }
        // Cumulative: the last one seen is the stream's.
        if let Some(u) = ev.usage_metadata {
            chunks.account(u.to_usage());
        }
        if chunks.finished() {
            // Only usage counts after the finish (a last event may carry only `usageMetadata`).
            return true;
        }
        let Some(candidate) = ev.candidates.first() else {
            if let Some(block) = ev.block_reason() {
                chunks.finish_chunk("content_filter", Some(block));
            }
            return true;
        };
        for part in candidate.content.iter().flat_map(|c| &c.parts) {
            if let Some(call) = &part.function_call {
                let n = self.calls;
                self.calls += 1;
                chunks.content(|out| {
                    out.push_str("\"tool_calls\":[");
                    push_tool_call(out, call, n, Some(n));
                    out.push(']');
                });
            } else if let Some(t) = part.text.as_deref().filter(|t| !t.is_empty()) {
                let key = if part.thought == Some(true) { "\"reasoning\":" } else { "\"content\":" };
                chunks.content(|out| {
                    out.push_str(key);
                    push_json_str(out, t);
                });
            }
        }
        if let Some(native) = candidate.finish_reason.as_deref() {
            chunks.finish_chunk(finish_reason(native, self.calls > 0), Some(native));
        }
        true
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
