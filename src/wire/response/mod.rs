//! What the client receives from a provider's successful answer, OpenRouter style: `model` is the public
//! id that served, `provider` its display name, `usage` carries `cost`, `cost_details` and
//! `cache_discount`; streams are rewritten event by event, and a stream that ends without `[DONE]` ends
//! with OpenRouter's typed error chunk. Only the top level of each object is touched.

use crate::catalog::Pricing;
use crate::wire::json::{top_level, Member};
use crate::wire::sse::{Event, Kind, SseParser};
use crate::wire::text::push_json_str;
use crate::wire::usage::{cost, push_cost_members, usage_in, Cost, Usage};

/// Largest SSE event we parse; bigger ones pass through untouched (flagged, never dropped).
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// Who served: the facts the rewrite adds.
#[derive(Debug, Clone, PartialEq)]
pub struct Served {
    /// The public model id, as a JSON string literal.
    pub model_json: String,
    /// The provider's display name, as a JSON string literal.
    pub provider_json: String,
    /// The serving endpoint's prices.
    pub pricing: Pricing,
}

/// Usage and cost seen in a response (`None` = unknown).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accounted {
    pub usage: Option<Usage>,
    pub cost: Option<Cost>,
}

/// Rewrites a non-streamed chat completion. A body that is not a JSON object is left as it is (its usage
/// is then unknown).
pub fn rewrite_completion(body: &[u8], served: &Served) -> (Option<Vec<u8>>, Accounted) {
    let Some((text, members)) = std::str::from_utf8(body).ok().and_then(|t| Some((t, top_level(t).ok()?.1)))
    else {
        return (None, Accounted::default());
    };
    let usage = usage_in(&members);
    let accounted = Accounted { usage, cost: usage.map(|u| cost(&u, &served.pricing)) };
    let out = rebuild(&members, text.len(), served, accounted.cost.as_ref(), true);
    (Some(out.into_bytes()), accounted)
}

/// The object `text` with `model` set, `provider` added, `usage` given its cost (when `cost`), and — for a
/// completion — `system_fingerprint` present (null when the provider sent none). For a stream chunk a
/// null `system_fingerprint` is dropped (the chunk schema allows only strings).
fn rebuild(
    members: &[Member<'_>],
    len: usize,
    served: &Served,
    cost: Option<&Cost>,
    completion: bool,
) -> String {
    let mut out = String::with_capacity(len + 256);
    out.push('{');
    let mut first = true;
    let mut push = |out: &mut String, key: &str, value: &str| {
        if !first {
            out.push(',');
        }
        first = false;
        push_json_str(out, key);
        out.push(':');
        out.push_str(value);
    };
    let mut fingerprint = false;
    for m in members {
        match m.key.as_ref() {
            "model" => push(&mut out, "model", &served.model_json),
            "provider" => {}
            "system_fingerprint" if !completion && m.value == "null" => {}
            "usage" => match add_cost(m.value, cost) {
                Some(u) => push(&mut out, "usage", u.as_str()),
                None => push(&mut out, "usage", m.value),
            },
            key => {
                fingerprint |= key == "system_fingerprint";
                push(&mut out, key, m.value);
            }
        }
    }
    if !members.iter().any(|m| m.key == "model") {
        push(&mut out, "model", &served.model_json);
    }
    if completion && !fingerprint {
        push(&mut out, "system_fingerprint", "null");
    }
    if completion || cost.is_some() {
        push(&mut out, "provider", &served.provider_json);
    }
    out.push('}');
    out
}

/// The usage object with `cost`, `cost_details`, `cache_discount` and `is_byok` (replacing any the
/// provider sent).
fn add_cost(usage: &str, cost: Option<&Cost>) -> Option<String> {
    let cost = cost?;
    let (_, members) = top_level(usage).ok()?;
    let mut out = String::with_capacity(usage.len() + 200);
    out.push('{');
    for m in members
        .iter()
        .filter(|m| !matches!(m.key.as_ref(), "cost" | "cost_details" | "cache_discount" | "is_byok"))
    {
        push_json_str(&mut out, &m.key);
        out.push(':');
        out.push_str(m.value);
        out.push(',');
    }
    push_cost_members(&mut out, cost);
    out.push('}');
    Some(out)
}

/// Rewrites a provider's SSE stream as it arrives.
pub struct StreamRewriter {
    parser: SseParser,
    served: Served,
    out: Vec<u8>,
    accounted: Accounted,
    done: bool,
    /// `id` and `created` of the last chunk, for a closing error chunk.
    last_id: Option<String>,
    last_created: Option<String>,
    /// Chunks with choices seen: the completion tokens [`estimate`](crate::wire::usage::estimate)
    /// counts when the usage chunk never comes (providers stream about one token per chunk).
    content_chunks: u64,
}

impl StreamRewriter {
    /// A rewriter for the stream served by `served`.
    pub fn new(served: Served) -> StreamRewriter {
        StreamRewriter {
            parser: SseParser::new(MAX_EVENT_BYTES),
            served,
            out: Vec::new(),
            accounted: Accounted::default(),
            done: false,
            last_id: None,
            last_created: None,
            content_chunks: 0,
        }
    }

    /// Feeds provider bytes; returns the bytes to send the client now (complete events only).
    pub fn feed(&mut self, input: &[u8]) -> &[u8] {
        self.out.clear();
        let mut parser = std::mem::replace(&mut self.parser, SseParser::new(0));
        parser.feed(input, &mut |e| self.event(e));
        self.parser = parser;
        &self.out
    }

    /// At the end of the provider's stream: what is left, plus the typed error chunk when the stream ended
    /// without `data: [DONE]` (the provider cut it).
    pub fn finish(&mut self) -> &[u8] {
        self.out.clear();
        let mut parser = std::mem::replace(&mut self.parser, SseParser::new(0));
        parser.finish(&mut |e| self.event(e));
        self.parser = parser;
        if !self.done {
            let chunk = self.error_chunk("The provider ended the stream before it was complete");
            self.out.extend_from_slice(chunk.as_bytes());
            self.done = true;
        }
        &self.out
    }

    /// Usage and cost seen so far.
    pub fn accounted(&self) -> Accounted {
        self.accounted
    }

    /// Who serves this stream.
    pub fn served(&self) -> &Served {
        &self.served
    }

    /// Chunks with non-empty `choices` seen so far.
    pub fn content_chunks(&self) -> u64 {
        self.content_chunks
    }

    fn event(&mut self, e: Event<'_>) {
        match (e.kind, e.data) {
            (Kind::Done, _) => {
                self.done = true;
                self.out.extend_from_slice(e.raw);
            }
            (Kind::Data, Some(data)) => match self.rewrite_chunk(data) {
                Some(chunk) => {
                    self.out.extend_from_slice(b"data: ");
                    self.out.extend_from_slice(chunk.as_bytes());
                    self.out.extend_from_slice(b"\n\n");
                }
                None => self.out.extend_from_slice(e.raw),
            },
            _ => self.out.extend_from_slice(e.raw),
        }
    }

    fn rewrite_chunk(&mut self, data: &[u8]) -> Option<String> {
        let text = std::str::from_utf8(data).ok()?;
        let (_, members) = top_level(text).ok()?;
        let usage = usage_in(&members);
        let cost = usage.map(|u| cost(&u, &self.served.pricing));
        if usage.is_some() {
            self.accounted = Accounted { usage, cost };
        }
        for m in &members {
            match m.key.as_ref() {
                "choices" if m.value != "[]" => self.content_chunks += 1,
                "id" if self.last_id.as_deref() != Some(m.value) => self.last_id = Some(m.value.to_string()),
                "created" if self.last_created.as_deref() != Some(m.value) => {
                    self.last_created = Some(m.value.to_string())
                }
                _ => {}
            }
        }
        Some(rebuild(&members, text.len(), &self.served, cost.as_ref(), false))
    }

    fn error_chunk(&self, message: &str) -> String {
        format!(
            concat!(
                r#"data: {{"id":{},"object":"chat.completion.chunk","created":{},"model":{},"provider":{},"#,
                r#""error":{{"code":502,"message":{},"metadata":{{"error_type":"provider_unavailable"}}}},"#,
                r#""choices":[{{"index":0,"delta":{{"content":""}},"finish_reason":"error"}}]}}"#,
                "\n\n"
            ),
            self.last_id.as_deref().unwrap_or("\"gen-error\""),
            self.last_created.as_deref().unwrap_or("0"),
            self.served.model_json,
            self.served.provider_json,
            serde_json::Value::String(message.to_string()),
        )
    }
}

#[cfg(test)]
mod tests;
