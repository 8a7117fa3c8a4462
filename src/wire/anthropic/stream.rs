//! Anthropic's message stream, fed in arbitrary chunks, as OpenAI `chat.completion.chunk` events as they
//! arrive. Each Anthropic event is translated when its blank line is in ([`SseParser`]); nothing is held
//! beyond the current event, except the role chunk, which waits for the first event that says something
//! (so that an error before any content reaches the caller with no byte sent to the client yet).
//!
//! | Anthropic | OpenAI chunks |
//! |---|---|
//! | `message_start` | remembered: the id, prompt usage |
//! | first content, stop or end | `{"delta":{"role":"assistant","content":""}}` |
//! | `text_delta` | `{"delta":{"content":…}}` |
//! | `thinking_delta` | `{"delta":{"reasoning":…}}` |
//! | `content_block_start` `tool_use` | `tool_calls[{index, id, type, function{name, arguments:""}}]`, `index` counting tool calls (not blocks) |
//! | `input_json_delta` | `tool_calls[{index, function{arguments: fragment}}]` |
//! | `content_block_stop` of a tool with no argument fragment | `arguments: "{}"` (a call with no arguments still parses) |
//! | `message_delta` with `stop_reason` | `{"delta":{},"finish_reason":…,"native_finish_reason":…}` |
//! | `message_stop` | the usage chunk (`choices: []`, prompt from `message_start`, completion from the last `message_delta`'s cumulative `output_tokens`), then `data: [DONE]` |
//! | `ping`, `signature_delta`, `citations_delta`, unknown events | nothing |
//! | `error`, before anything was sent | [`Step::Failed`]: the caller fails over |
//! | `error` after, an invalid or oversized event, or the end without `message_stop` | OpenRouter's typed error chunk (`finish_reason: "error"`), and the stream ends |
//!
//! A stream that ends before anything was sent is a [`Step::Failed`] too. Output is identical whatever the
//! chunk boundaries (the parser's guarantee, and nothing here depends on them).

use super::response::{parse_error, Block};
use super::{finish_reason, AnthropicUsage};
use crate::wire::native::stream::{ApiEvents, Chunks, Translator};
pub use crate::wire::native::Step;
use crate::wire::text::{push_json_str, push_u64};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// The translator; one per streamed response (the shared plumbing, reading Anthropic's events).
pub type StreamTranslator = Translator<MessageEvents>;

/// One tool call in the stream.
#[derive(Debug, Clone, Copy)]
struct Tool {
    /// Its OpenAI `index`: the count of tool calls before it.
    index: u32,
    /// An argument fragment was sent.
    arguments: bool,
}

/// What Anthropic's events leave to remember between them.
#[derive(Default)]
pub struct MessageEvents {
    /// Usage as known so far (`message_start`, updated by each `message_delta`).
    usage: AnthropicUsage,
    /// Tool calls by content block index.
    tools: BTreeMap<u64, Tool>,
}

/// The members of an Anthropic stream event we read.
#[derive(Deserialize)]
struct Ev<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    message: Option<Start<'a>>,
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow, default)]
    content_block: Option<Block<'a>>,
    #[serde(borrow, default)]
    delta: Option<Delta<'a>>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct Start<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    thinking: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
}

impl ApiEvents for MessageEvents {
    const DEFAULT_ID: &'static str = "gen-anthropic";
    // `[DONE]` is not Anthropic's: a stream that says it is not one to translate.
    const IGNORES_DONE: bool = false;
    // The stream ends well only at `message_stop`.
    const ENDS_AT_STREAM_END: bool = false;

    fn event(&mut self, chunks: &mut Chunks, data: &[u8]) -> bool {
        let Ok(ev) = serde_json::from_slice::<Ev<'_>>(data) else { return false };
        match ev.kind.as_ref() {
            "message_start" => {
                if let Some(m) = ev.message {
                    chunks.set_id(&m.id);
                    self.usage = self.usage.updated(m.usage.unwrap_or_default());
                }
            }
            "content_block_start" => self.block_start(chunks, ev.index.unwrap_or(0), ev.content_block),
            "content_block_delta" => {
                if let Some(d) = ev.delta {
                    self.block_delta(chunks, ev.index.unwrap_or(0), d);
                }
            }
            "content_block_stop" => {
                let index = ev.index.unwrap_or(0);
                if let Some(tool) = self.tools.get(&index).copied().filter(|t| !t.arguments) {
                    self.tool_arguments(chunks, index, tool, "{}");
                }
            }
            "message_delta" => {
                if let Some(u) = ev.usage {
                    self.usage = self.usage.updated(u);
                    if self.usage.output_tokens.is_some() {
                        chunks.account(self.usage.to_usage());
                    }
                }
                if let Some(reason) = ev.delta.and_then(|d| d.stop_reason) {
                    chunks.finish_chunk(finish_reason(&reason), Some(&reason));
                }
            }
            // The finish chunk if none came, then the usage chunk and `[DONE]`.
            "message_stop" => {
                chunks.finish_chunk(finish_reason(""), None);
                chunks.end();
            }
            "error" => chunks.fail(parse_error(None, data)),
            // `ping` keeps the connection alive; new event types may come (Anthropic says so).
            _ => {}
        }
        true
    }
}

impl MessageEvents {
    fn block_start(&mut self, chunks: &mut Chunks, index: u64, block: Option<Block<'_>>) {
        let Some(block) = block else { return };
        match block.kind.as_ref() {
            "text" => {
                if let Some(t) = block.text.filter(|t| !t.is_empty()) {
                    push_text(chunks, "\"content\":", &t);
                }
            }
            "thinking" => {
                if let Some(t) = block.thinking.filter(|t| !t.is_empty()) {
                    push_text(chunks, "\"reasoning\":", &t);
                }
            }
            "tool_use" => {
                let tool =
                    Tool { index: u32::try_from(self.tools.len()).unwrap_or(u32::MAX), arguments: false };
                self.tools.insert(index, tool);
                let id = block.id.unwrap_or_default();
                let name = block.name.unwrap_or_default();
                chunks.content(|out| {
                    out.push_str("\"tool_calls\":[{\"index\":");
                    push_u64(out, u64::from(tool.index));
                    out.push_str(",\"id\":");
                    push_json_str(out, &id);
                    out.push_str(",\"type\":\"function\",\"function\":{\"name\":");
                    push_json_str(out, &name);
                    out.push_str(",\"arguments\":\"\"}}]");
                });
                // A start that already carries the whole input (not the usual `{}`) sends it as is.
                if let Some(input) = block.input.map(RawValue::get).filter(|i| *i != "{}") {
                    self.tool_arguments(chunks, index, tool, input);
                }
            }
            _ => {}
        }
    }

    fn block_delta(&mut self, chunks: &mut Chunks, index: u64, d: Delta<'_>) {
        match d.kind.as_deref() {
            Some("text_delta") => {
                if let Some(t) = d.text.filter(|t| !t.is_empty()) {
                    push_text(chunks, "\"content\":", &t);
                }
            }
            Some("thinking_delta") => {
                if let Some(t) = d.thinking.filter(|t| !t.is_empty()) {
                    push_text(chunks, "\"reasoning\":", &t);
                }
            }
            Some("input_json_delta") => {
                let tool = self.tools.get(&index).copied();
                if let (Some(tool), Some(fragment)) = (tool, d.partial_json.filter(|p| !p.is_empty())) {
                    self.tool_arguments(chunks, index, tool, &fragment);
                }
            }
            // `signature_delta` (the thinking block's signature), `citations_delta`: nothing to show.
            _ => {}
        }
    }

    fn tool_arguments(&mut self, chunks: &mut Chunks, block: u64, tool: Tool, fragment: &str) {
        chunks.content(|out| {
            out.push_str("\"tool_calls\":[{\"index\":");
            push_u64(out, u64::from(tool.index));
            out.push_str(",\"function\":{\"arguments\":");
            push_json_str(out, fragment);
            out.push_str("}}]");
        });
        if let Some(t) = self.tools.get_mut(&block) {
            t.arguments = true;
        }
    }
}

/// A content chunk of text under `key` (`"content":` or `"reasoning":`).
fn push_text(chunks: &mut Chunks, key: &str, text: &str) {
    chunks.content(|out| {
        out.push_str(key);
        push_json_str(out, text);
    });
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
