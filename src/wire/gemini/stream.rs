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

use super::response::{parse_error, push_tool_call, GenerateContentResponse, DEFAULT_ID};
use super::{finish_reason, GeminiUsage};
use crate::wire::error::MAX_MESSAGE_BYTES;
pub use crate::wire::native::Step;
use crate::wire::native::{push_usage, ProviderError};
use crate::wire::response::{Accounted, Served, MAX_EVENT_BYTES};
use crate::wire::sse::{Event, Kind, SseParser};
use crate::wire::text::{push_json_str, push_u64, truncated};
use crate::wire::usage::cost;

/// The translator; one per streamed response.
pub struct StreamTranslator {
    parser: SseParser,
    served: Served,
    created: u64,
    out: String,
    /// The chunk id, as a JSON string literal.
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
    accounted: Accounted,
    /// Function calls sent so far.
    calls: u64,
    content_chunks: u64,
}

impl StreamTranslator {
    /// A translator for the stream served by `served`; chunks carry `created` (Unix seconds).
    pub fn new(served: Served, created: u64) -> StreamTranslator {
        let mut id = String::new();
        push_json_str(&mut id, DEFAULT_ID);
        StreamTranslator {
            parser: SseParser::new(MAX_EVENT_BYTES),
            served,
            created,
            out: String::new(),
            id,
            sent: false,
            finished: false,
            done: false,
            failure: None,
            accounted: Accounted::default(),
            calls: 0,
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

    /// At the end of the provider's stream: what is left. After a finish, the usage chunk and
    /// `[DONE]`; without one, the typed error chunk when something was sent, a failure when nothing was.
    pub fn finish(&mut self) -> Step<'_> {
        self.out.clear();
        let mut parser = std::mem::replace(&mut self.parser, SseParser::new(0));
        parser.finish(&mut |e| self.event(e));
        self.parser = parser;
        if !self.done {
            if self.finished {
                self.end();
            } else {
                self.fail(ProviderError {
                    status: 502,
                    native_type: String::new(),
                    message: "The provider ended the stream before it was complete".into(),
                });
            }
        }
        self.step()
    }

    /// Usage and cost as the last `usageMetadata` seen says (cumulative, so the best known at any
    /// point); unknown before the first one.
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
            // Gemini sends no `[DONE]`; one added on the way is no reason to fail.
            (Kind::CommentOrEmpty, _, _) | (Kind::Done, _, _) => return,
            // An event cut by the end of the stream is discarded, as an SSE client would.
            (_, _, false) if e.kind != Kind::Oversized => return,
            // Not ours to wait for: a piece of an event too large to translate ends the stream.
            (Kind::Oversized, _, _) | (_, None, _) => None,
            (Kind::Data, Some(d), _) => Some(d),
        };
        let parsed =
            data.and_then(|d| Some((d, serde_json::from_slice::<GenerateContentResponse<'_>>(d).ok()?)));
        let Some((data, ev)) = parsed else {
            self.fail(ProviderError {
                status: 502,
                native_type: String::new(),
                message: "The provider sent a stream event that could not be translated".into(),
            });
            return;
        };
        if ev.error.is_some() {
            let error = parse_error(None, data);
            self.fail(error);
            return;
        }
        if !self.sent {
            if let Some(id) = ev.response_id.as_deref().filter(|id| !id.is_empty()) {
                self.id.clear();
                push_json_str(&mut self.id, id);
            }
        }
        if let Some(u) = ev.usage_metadata {
            self.account(u);
        }
        if self.finished {
            // Only usage counts after the finish (a last event may carry only `usageMetadata`).
            return;
        }
        let Some(candidate) = ev.candidates.first() else {
            if let Some(block) = ev.block_reason() {
                self.finish_chunk("content_filter", Some(block));
            }
            return;
        };
        for part in candidate.content.iter().flat_map(|c| &c.parts) {
            if let Some(call) = &part.function_call {
                let n = self.calls;
                self.calls += 1;
                self.content(|out| {
                    out.push_str("\"tool_calls\":[");
                    push_tool_call(out, call, n, Some(n));
                    out.push(']');
                });
            } else if let Some(t) = part.text.as_deref().filter(|t| !t.is_empty()) {
                let key = if part.thought == Some(true) { "\"reasoning\":" } else { "\"content\":" };
                self.content(|out| {
                    out.push_str(key);
                    push_json_str(out, t);
                });
            }
        }
        if let Some(native) = candidate.finish_reason.as_deref() {
            self.finish_chunk(finish_reason(native, self.calls > 0), Some(native));
        }
    }

    fn account(&mut self, u: GeminiUsage) {
        let usage = u.to_usage();
        let c = cost(&usage, &self.served.pricing);
        self.accounted = Accounted { usage: Some(usage), cost: Some(c) };
    }

    /// A content chunk whose delta members `delta` writes.
    fn content(&mut self, delta: impl FnOnce(&mut String)) {
        self.content_chunks += 1;
        self.chunk(delta, None);
    }

    /// The finish chunk, once.
    fn finish_chunk(&mut self, reason: &'static str, native: Option<&str>) {
        if !self.finished {
            self.finished = true;
            self.chunk(|_| {}, Some((reason, native)));
        }
    }

    /// The end of a finished stream: the usage chunk if the usage is known, `[DONE]`.
    fn end(&mut self) {
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

    /// One chunk with one choice; `finish`: the finish chunk's reason and Gemini's, if known.
    fn chunk(&mut self, delta: impl FnOnce(&mut String), finish: Option<(&'static str, Option<&str>)>) {
        self.head();
        self.out.push_str(",\"choices\":[{\"index\":0,\"delta\":{");
        delta(&mut self.out);
        self.out.push_str("},\"finish_reason\":");
        match finish {
            None => self.out.push_str("null"),
            Some((reason, native)) => {
                self.out.push('"');
                self.out.push_str(reason);
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
        // message naming Gemini's status (its own text bounded).
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
        push_u64(&mut self.out, u64::from(error.status));
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
