//! The plumbing both native stream translators share, so that each API's `stream` module holds only how
//! its events read: the SSE parsing fed in arbitrary chunks ([`Translator`]), and the OpenAI chunks
//! written for the client ([`Chunks`]): the role chunk held back until something is said (so that a
//! failure before any content reaches the caller with no byte sent), content and finish chunks, the
//! usage chunk and `[DONE]` at the end, OpenRouter's typed error chunk, and the failure handed to a
//! caller that can still fail over.

use super::{push_usage, ProviderError, Step};
use crate::wire::response::{Accounted, Served, MAX_EVENT_BYTES};
use crate::wire::sse::{Event, Kind, SseParser};
use crate::wire::text::{push_json_str, push_u64};
use crate::wire::usage::{cost, Usage};

/// The longest provider id the chunks repeat (real ones are a few dozen bytes).
pub const MAX_ID_BYTES: usize = 128;

/// How one API's stream events become chunks; everything around them is the [`Translator`]'s.
pub trait ApiEvents: Default {
    /// The chunk id until the provider names one (unquoted).
    const DEFAULT_ID: &'static str;
    /// A `data: [DONE]` event is not the API's own but may be added on the way (a proxy's): ignored,
    /// rather than an event that cannot be translated.
    const IGNORES_DONE: bool;
    /// The API has no stop event: after the finish chunk, the end of the stream ends it well (else it
    /// ends well only at the API's stop event, and any other end is a cut stream).
    const ENDS_AT_STREAM_END: bool;

    /// Translates one complete event's `data` into `chunks`; `false` when it is not one of the API's
    /// events (the stream then fails as one that cannot be translated).
    fn event(&mut self, chunks: &mut Chunks, data: &[u8]) -> bool;
}

/// A native stream translator: one per streamed response, `E` reading the API's events.
pub struct Translator<E> {
    parser: SseParser,
    chunks: Chunks,
    events: E,
}

impl<E: ApiEvents> Translator<E> {
    /// A translator for the stream served by `served`; chunks carry `created` (Unix seconds).
    pub fn new(served: Served, created: u64) -> Translator<E> {
        Translator {
            parser: SseParser::new(MAX_EVENT_BYTES),
            chunks: Chunks::new(served, created, E::DEFAULT_ID),
            events: E::default(),
        }
    }

    /// A translator whose caller cannot fail over any more (the client has the response's headers): a
    /// failure before anything was sent is the typed error chunk too, never [`Step::Failed`].
    pub fn without_failover(mut self) -> Translator<E> {
        self.chunks.failover = false;
        self
    }

    /// Feeds provider bytes: what to send the client now, or the failure to fail over on.
    pub fn feed(&mut self, input: &[u8]) -> Step<'_> {
        self.chunks.out.clear();
        let (events, chunks) = (&mut self.events, &mut self.chunks);
        self.parser.feed(input, &mut |e| event(events, chunks, e));
        self.chunks.step()
    }

    /// At the end of the provider's stream: what is left. A stream that ended well gets the usage chunk
    /// and `[DONE]` (if not sent yet); one that did not, the typed error chunk when something was sent,
    /// a failure when nothing was.
    pub fn finish(&mut self) -> Step<'_> {
        self.chunks.out.clear();
        let (events, chunks) = (&mut self.events, &mut self.chunks);
        self.parser.finish(&mut |e| event(events, chunks, e));
        if !self.chunks.done {
            if E::ENDS_AT_STREAM_END && self.chunks.finished {
                self.chunks.end();
            } else {
                self.chunks.fail(ProviderError {
                    status: 502,
                    native_type: String::new(),
                    message: "The provider ended the stream before it was complete".into(),
                });
            }
        }
        self.chunks.step()
    }

    /// Usage and cost as the stream reported them so far (unknown before it did: the caller then
    /// estimates as for a cut OpenAI stream).
    pub fn accounted(&self) -> Accounted {
        self.chunks.accounted
    }

    /// Who serves this stream.
    pub fn served(&self) -> &Served {
        &self.chunks.served
    }

    /// Content chunks (text, reasoning, tool call) sent so far.
    pub fn content_chunks(&self) -> u64 {
        self.chunks.content_chunks
    }
}

/// One SSE event: nothing once the stream is over; comments and events cut by the end skipped; the
/// data of a whole event to the API's reader; anything else ends the stream.
fn event<E: ApiEvents>(events: &mut E, chunks: &mut Chunks, e: Event<'_>) {
    if chunks.done {
        return;
    }
    let data = match (e.kind, e.data, e.complete) {
        (Kind::CommentOrEmpty, _, _) => return,
        (Kind::Done, _, _) if E::IGNORES_DONE => return,
        // An event cut by the end of the stream is discarded, as an SSE client would.
        (_, _, false) if e.kind != Kind::Oversized => return,
        // Not ours to wait for: a piece of an event too large to translate ends the stream.
        (Kind::Oversized, _, _) | (Kind::Done, _, _) | (_, None, _) => None,
        (Kind::Data, Some(d), _) => Some(d),
    };
    if !data.is_some_and(|d| events.event(chunks, d)) {
        chunks.fail(ProviderError {
            status: 502,
            native_type: String::new(),
            message: "The provider sent a stream event that could not be translated".into(),
        });
    }
}

/// The OpenAI chunks of one translated stream, written into the output of the current call.
pub struct Chunks {
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
    content_chunks: u64,
}

impl Chunks {
    fn new(served: Served, created: u64, default_id: &str) -> Chunks {
        let mut id = String::new();
        push_json_str(&mut id, default_id);
        Chunks {
            served,
            created,
            out: String::new(),
            id,
            sent: false,
            failover: true,
            finished: false,
            done: false,
            failure: None,
            accounted: Accounted::default(),
            content_chunks: 0,
        }
    }

    /// Whether something was sent to the client (after which the chunk id no longer changes for it).
    pub fn sent(&self) -> bool {
        self.sent
    }

    /// Whether the finish chunk was sent.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The id of the chunks from now on (the provider's message or response id). An id longer than
    /// [`MAX_ID_BYTES`] is not taken: every chunk repeats the id, so a provider's megabyte id would make
    /// the output grow as the id's length times the events (found by the `native_stream` fuzz target).
    pub fn set_id(&mut self, id: &str) {
        if id.len() > MAX_ID_BYTES {
            return;
        }
        self.id.clear();
        push_json_str(&mut self.id, id);
    }

    /// The stream's usage as the provider reported it so far, priced for the serving endpoint.
    pub fn account(&mut self, usage: Usage) {
        let c = cost(&usage, &self.served.pricing);
        self.accounted = Accounted { usage: Some(usage), cost: Some(c) };
    }

    /// A content chunk whose delta members `delta` writes.
    pub fn content(&mut self, delta: impl FnOnce(&mut String)) {
        self.content_chunks += 1;
        self.chunk(delta, None);
    }

    /// The finish chunk, once: OpenAI's `reason` and the API's own (`native`, null when unknown).
    pub fn finish_chunk(&mut self, reason: &str, native: Option<&str>) {
        if !self.finished {
            self.finished = true;
            self.chunk(|_| {}, Some((reason, native)));
        }
    }

    /// The end of a stream that ended well: the usage chunk if the usage is known, `[DONE]`.
    pub fn end(&mut self) {
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

    /// The provider failed: before anything was sent, a failure for the caller (if it can still fail
    /// over); else the typed error chunk with the error's status. Either way the stream is over.
    pub fn fail(&mut self, error: ProviderError) {
        self.done = true;
        if !self.sent && self.failover {
            self.failure = Some(error);
            return;
        }
        // Mid-stream the client sees what OpenRouter sends: a status and type for the error, and a
        // message naming the API's own error type when it is a documented one. The provider's own text
        // is not quoted: this translator knows no provider key to redact from it (a provider echoing
        // the router's key in an error event must not hand it to a client), unlike the error replies,
        // which redact before they cut.
        let mut message = String::from("The provider failed mid-stream");
        if let Some(native) = error.documented_type() {
            message.push_str(" (");
            message.push_str(native);
            message.push(')');
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

    /// What the current call hands the caller: the failure, reported once, or the chunks written.
    fn step(&mut self) -> Step<'_> {
        match self.failure.take() {
            Some(f) => Step::Failed(f),
            None => Step::Forward(self.out.as_bytes()),
        }
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

    /// One chunk with one choice; `finish`: the finish chunk's reason and the API's, if known.
    fn chunk(&mut self, delta: impl FnOnce(&mut String), finish: Option<(&str, Option<&str>)>) {
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
}
