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

use super::response::{documented_status, parse_error, Block};
use super::{finish_reason, push_usage, AnthropicUsage};
use crate::wire::error::MAX_MESSAGE_BYTES;
use crate::wire::native::ProviderError;
pub use crate::wire::native::Step;
use crate::wire::response::{Accounted, Served, MAX_EVENT_BYTES};
use crate::wire::sse::{Event, Kind, SseParser};
use crate::wire::text::{push_json_str, push_u64, truncated};
use crate::wire::usage::cost;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// One tool call in the stream.
#[derive(Debug, Clone, Copy)]
struct Tool {
    /// Its OpenAI `index`: the count of tool calls before it.
    index: u32,
    /// An argument fragment was sent.
    arguments: bool,
}

/// The translator; one per streamed response.
pub struct StreamTranslator {
    parser: SseParser,
    served: Served,
    created: u64,
    out: String,
    /// The message id, as a JSON string literal.
    id: String,
    /// Something was sent to the client (the role chunk first).
    sent: bool,
    /// A failure before anything was sent is [`Step::Failed`] (else the error chunk).
    failover: bool,
    /// The finish chunk was sent.
    finished: bool,
    /// The stream is over for the client: `[DONE]` or an error chunk sent, or failed over.
    done: bool,
    failure: Option<ProviderError>,
    /// Usage as known so far (`message_start`, updated by each `message_delta`).
    usage: AnthropicUsage,
    accounted: Accounted,
    /// Tool calls by content block index.
    tools: BTreeMap<u64, Tool>,
    content_chunks: u64,
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

impl StreamTranslator {
    /// A translator for the stream served by `served`; chunks carry `created` (Unix seconds).
    pub fn new(served: Served, created: u64) -> StreamTranslator {
        StreamTranslator {
            parser: SseParser::new(MAX_EVENT_BYTES),
            served,
            created,
            out: String::new(),
            id: "\"gen-anthropic\"".into(),
            sent: false,
            finished: false,
            done: false,
            failure: None,
            usage: AnthropicUsage::default(),
            accounted: Accounted::default(),
            tools: BTreeMap::new(),
            content_chunks: 0,
            failover: true,
        }
    }

    /// A translator whose caller cannot fail over any more (the client has the response's headers): a
    /// failure before anything was sent is the typed error chunk too, never [`Step::Failed`].
    pub fn without_failover(mut self) -> StreamTranslator {
        self.failover = false;
        self
    }

    /// Feeds provider bytes: what to send the client now, or the failure to fail over on.
    pub fn feed(&mut self, input: &[u8]) -> Step<'_> {
        self.out.clear();
        let mut parser = std::mem::replace(&mut self.parser, SseParser::new(0));
        parser.feed(input, &mut |e| self.event(e));
        self.parser = parser;
        self.step()
    }

    /// At the end of the provider's stream: what is left; the typed error chunk when the stream ended
    /// without `message_stop` after something was sent, a failure when nothing was.
    pub fn finish(&mut self) -> Step<'_> {
        self.out.clear();
        let mut parser = std::mem::replace(&mut self.parser, SseParser::new(0));
        parser.finish(&mut |e| self.event(e));
        self.parser = parser;
        if !self.done {
            self.fail(ProviderError {
                status: 502,
                native_type: String::new(),
                message: "The provider ended the stream before it was complete".into(),
            });
        }
        self.step()
    }

    /// Usage and cost: known once a `message_delta` gave the completion's token count (before that the
    /// completion is unknown, and the caller estimates as for a cut OpenAI stream).
    pub fn accounted(&self) -> Accounted {
        self.accounted
    }

    /// Who serves this stream.
    pub fn served(&self) -> &Served {
        &self.served
    }

    /// Content chunks (text, reasoning, tool call) sent so far.
    pub fn content_chunks(&self) -> u64 {
        self.content_chunks
    }

    fn step(&mut self) -> Step<'_> {
        match self.failure.take() {
            Some(f) => Step::Failed(f),
            None => Step::Forward(self.out.as_bytes()),
        }
    }

    fn event(&mut self, e: Event<'_>) {
        if self.done {
            return;
        }
        let data = match (e.kind, e.data, e.complete) {
            (Kind::CommentOrEmpty, _, _) => return,
            // An event cut by the end of the stream is discarded, as an SSE client would.
            (_, _, false) if e.kind != Kind::Oversized => return,
            // Not ours to wait for: a piece of an event too large to translate ends the stream.
            (Kind::Oversized, _, _) | (Kind::Done, _, _) | (_, None, _) => None,
            (Kind::Data, Some(d), _) => Some(d),
        };
        let parsed = data.and_then(|d| Some((d, serde_json::from_slice::<Ev<'_>>(d).ok()?)));
        let Some((data, ev)) = parsed else {
            self.fail(ProviderError {
                status: 502,
                native_type: String::new(),
                message: "The provider sent a stream event that could not be translated".into(),
            });
            return;
        };
        match ev.kind.as_ref() {
            "message_start" => {
                if let Some(m) = ev.message {
                    self.id.clear();
                    push_json_str(&mut self.id, &m.id);
                    self.usage = self.usage.updated(m.usage.unwrap_or_default());
                }
            }
            "content_block_start" => self.block_start(ev.index.unwrap_or(0), ev.content_block),
            "content_block_delta" => {
                if let Some(d) = ev.delta {
                    self.block_delta(ev.index.unwrap_or(0), d);
                }
            }
            "content_block_stop" => {
                let index = ev.index.unwrap_or(0);
                if let Some(tool) = self.tools.get(&index).copied().filter(|t| !t.arguments) {
                    self.tool_arguments(index, tool, "{}");
                }
            }
            "message_delta" => {
                if let Some(u) = ev.usage {
                    self.usage = self.usage.updated(u);
                    if self.usage.output_tokens.is_some() {
                        let usage = self.usage.to_usage();
                        let c = cost(&usage, &self.served.pricing);
                        self.accounted = Accounted { usage: Some(usage), cost: Some(c) };
                    }
                }
                if let Some(reason) = ev.delta.and_then(|d| d.stop_reason) {
                    self.finish_chunk(Some(&reason));
                }
            }
            "message_stop" => self.end(),
            "error" => {
                let error = parse_error(None, data);
                self.fail(error);
            }
            // `ping` keeps the connection alive; new event types may come (Anthropic says so).
            _ => {}
        }
    }

    fn block_start(&mut self, index: u64, block: Option<Block<'_>>) {
        let Some(block) = block else { return };
        match block.kind.as_ref() {
            "text" => {
                if let Some(t) = block.text.filter(|t| !t.is_empty()) {
                    self.content(|out| {
                        out.push_str("\"content\":");
                        push_json_str(out, &t);
                    });
                }
            }
            "thinking" => {
                if let Some(t) = block.thinking.filter(|t| !t.is_empty()) {
                    self.content(|out| {
                        out.push_str("\"reasoning\":");
                        push_json_str(out, &t);
                    });
                }
            }
            "tool_use" => {
                let tool =
                    Tool { index: u32::try_from(self.tools.len()).unwrap_or(u32::MAX), arguments: false };
                self.tools.insert(index, tool);
                let id = block.id.unwrap_or_default();
                let name = block.name.unwrap_or_default();
                self.content(|out| {
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
                    self.tool_arguments(index, tool, input);
                }
            }
            _ => {}
        }
    }

    fn block_delta(&mut self, index: u64, d: Delta<'_>) {
        match d.kind.as_deref() {
            Some("text_delta") => {
                if let Some(t) = d.text.filter(|t| !t.is_empty()) {
                    self.content(|out| {
                        out.push_str("\"content\":");
                        push_json_str(out, &t);
                    });
                }
            }
            Some("thinking_delta") => {
                if let Some(t) = d.thinking.filter(|t| !t.is_empty()) {
                    self.content(|out| {
                        out.push_str("\"reasoning\":");
                        push_json_str(out, &t);
                    });
                }
            }
            Some("input_json_delta") => {
                let tool = self.tools.get(&index).copied();
                if let (Some(tool), Some(fragment)) = (tool, d.partial_json.filter(|p| !p.is_empty())) {
                    self.tool_arguments(index, tool, &fragment);
                }
            }
            // `signature_delta` (the thinking block's signature), `citations_delta`: nothing to show.
            _ => {}
        }
    }

    fn tool_arguments(&mut self, block: u64, tool: Tool, fragment: &str) {
        self.content(|out| {
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

    /// A content chunk whose delta members `delta` writes.
    fn content(&mut self, delta: impl FnOnce(&mut String)) {
        self.content_chunks += 1;
        self.chunk(delta, None);
    }

    /// The finish chunk, once (`native` is Anthropic's stop reason, if known).
    fn finish_chunk(&mut self, native: Option<&str>) {
        if !self.finished {
            self.finished = true;
            self.chunk(|_| {}, Some(native));
        }
    }

    /// `message_stop`: the finish chunk if none came, the usage chunk if the usage is known, `[DONE]`.
    fn end(&mut self) {
        self.finish_chunk(None);
        if let (Some(usage), Some(c)) = (self.accounted.usage, self.accounted.cost) {
            self.head();
            self.out.push_str(",\"provider\":");
            self.out.push_str(&self.served.provider_json);
            self.out.push_str(",\"choices\":[],\"usage\":");
            push_usage(&mut self.out, &usage, &c);
            self.out.push_str("}\n\n");
        }
        self.out.push_str("data: [DONE]\n\n");
        self.done = true;
    }

    /// `data: {"id":…,"object":"chat.completion.chunk","created":…,"model":…` (the role chunk first,
    /// if not sent yet).
    fn head(&mut self) {
        if !self.sent {
            self.sent = true;
            self.head();
            self.out.push_str(
                ",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
            );
        }
        self.out.push_str("data: {\"id\":");
        self.out.push_str(&self.id);
        self.out.push_str(",\"object\":\"chat.completion.chunk\",\"created\":");
        push_u64(&mut self.out, self.created);
        self.out.push_str(",\"model\":");
        self.out.push_str(&self.served.model_json);
    }

    /// One chunk with one choice; `finish`: the finish chunk, with Anthropic's reason if known.
    fn chunk(&mut self, delta: impl FnOnce(&mut String), finish: Option<Option<&str>>) {
        self.head();
        self.out.push_str(",\"choices\":[{\"index\":0,\"delta\":{");
        delta(&mut self.out);
        self.out.push_str("},\"finish_reason\":");
        match finish {
            None => self.out.push_str("null"),
            Some(native) => {
                self.out.push('"');
                self.out.push_str(finish_reason(native.unwrap_or("")));
                self.out.push_str("\",\"native_finish_reason\":");
                match native {
                    Some(n) => push_json_str(&mut self.out, n),
                    None => self.out.push_str("null"),
                }
            }
        }
        self.out.push_str("}]}\n\n");
    }

    /// The provider failed: before anything was sent, a failure for the caller; after, the typed error
    /// chunk. Either way the stream is over.
    fn fail(&mut self, error: ProviderError) {
        self.done = true;
        if !self.sent && self.failover {
            self.failure = Some(error);
            return;
        }
        // Mid-stream the client sees what OpenRouter sends: a status and type for the error, and a
        // message naming Anthropic's type (its own text bounded).
        let status = if error.native_type.is_empty() { 502 } else { documented_status(&error.native_type) };
        let mut message = String::from("The provider failed mid-stream");
        if !error.native_type.is_empty() {
            message.push_str(" (");
            message.push_str(truncated(&error.native_type, 64));
            message.push(')');
        }
        if !error.message.is_empty() {
            message.push_str(": ");
            message.push_str(truncated(&error.message, MAX_MESSAGE_BYTES / 2));
        }
        // `head` writes the role chunk first if nothing was sent yet.
        self.head();
        self.out.push_str(",\"provider\":");
        self.out.push_str(&self.served.provider_json);
        self.out.push_str(",\"error\":{\"code\":");
        push_u64(&mut self.out, u64::from(status));
        self.out.push_str(",\"message\":");
        push_json_str(&mut self.out, &message);
        self.out.push_str(",\"metadata\":{\"error_type\":\"");
        self.out.push_str(error.error_type());
        self.out.push_str(
            "\"}},\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_reason\":\"error\"}]}\n\n",
        );
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
