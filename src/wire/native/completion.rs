//! The client's `chat.completion` for a native API's whole answer, once the API's module has read out
//! what it says: the same OpenAI shape (OpenRouter's additions included: public `model`, `provider`,
//! `usage` with its cost) whichever API answered.

use super::push_usage;
use crate::wire::response::{Accounted, Served};
use crate::wire::text::{push_json_str, push_u64};
use crate::wire::usage::{cost, Usage};

/// What an answer says, read out of the API's body.
pub struct Completion<'a> {
    /// The completion id (the API's message or response id), unquoted.
    pub id: &'a str,
    /// `message.content`; `None` writes null (an answer of tool calls only, or none at all).
    pub content: Option<&'a str>,
    /// `message.reasoning`, omitted when empty.
    pub reasoning: &'a str,
    /// OpenAI tool call objects, comma-separated; empty: no `tool_calls`.
    pub tool_calls: &'a str,
    /// OpenAI's `finish_reason`.
    pub finish_reason: &'a str,
    /// The API's own reason, kept as `native_finish_reason` (null when it gave none).
    pub native_finish_reason: Option<&'a str>,
    /// The usage in OpenAI's convention, when the answer reported it.
    pub usage: Option<Usage>,
}

impl Completion<'_> {
    /// The completion's JSON, served by `served`, `created` (Unix seconds), and its usage priced for the
    /// endpoint; `capacity` is a size hint (the API's body length).
    pub fn write(&self, served: &Served, created: u64, capacity: usize) -> (Vec<u8>, Accounted) {
        let priced = self.usage.map(|u| (u, cost(&u, &served.pricing)));
        let mut out = String::with_capacity(capacity + 512);
        out.push_str("{\"id\":");
        push_json_str(&mut out, self.id);
        out.push_str(",\"object\":\"chat.completion\",\"created\":");
        push_u64(&mut out, created);
        out.push_str(",\"model\":");
        out.push_str(&served.model_json);
        out.push_str(",\"provider\":");
        out.push_str(&served.provider_json);
        out.push_str(",\"system_fingerprint\":null,\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
        match self.content {
            Some(content) => push_json_str(&mut out, content),
            None => out.push_str("null"),
        }
        if !self.reasoning.is_empty() {
            out.push_str(",\"reasoning\":");
            push_json_str(&mut out, self.reasoning);
        }
        if !self.tool_calls.is_empty() {
            out.push_str(",\"tool_calls\":[");
            out.push_str(self.tool_calls);
            out.push(']');
        }
        out.push_str("},\"logprobs\":null,\"finish_reason\":\"");
        out.push_str(self.finish_reason);
        out.push_str("\",\"native_finish_reason\":");
        match self.native_finish_reason {
            Some(n) => push_json_str(&mut out, n),
            None => out.push_str("null"),
        }
        out.push_str("}]");
        if let Some((u, c)) = &priced {
            out.push_str(",\"usage\":");
            push_usage(&mut out, u, c);
        }
        out.push('}');
        let accounted = Accounted { usage: priced.map(|p| p.0), cost: priced.map(|p| p.1) };
        (out.into_bytes(), accounted)
    }
}
