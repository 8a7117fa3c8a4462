//! The top-level view of a chat request: which members exist and where their bytes are. Nothing below the
//! top level is parsed into values (messages stay raw bytes); serde_json still checks the whole body is JSON.

use super::error::ApiError;
use super::json::{top_level, Member};
use std::borrow::Cow;
use std::ops::Range;

/// The body a provider receives, as an edit of the client's: `prefix` replaces the client body's first
/// `replaced` bytes, the rest stays byte for byte (what Envoy's buffer replacement from offset 0 does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    /// The new first bytes.
    pub prefix: Vec<u8>,
    /// How many of the client body's first bytes they replace.
    pub replaced: usize,
    /// The new body's length.
    pub len: usize,
    /// Byte range of the model value in the new body.
    pub model_range: Range<usize>,
}

impl Rewritten {
    /// The whole new body, given the client's.
    pub fn apply(&self, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(body.get(self.replaced..).unwrap_or_default());
        out
    }
}

/// A parsed chat completion request body.
#[derive(Debug)]
pub struct ChatRequest<'a> {
    /// The whole body (valid UTF-8 JSON).
    pub body: &'a str,
    /// Byte offset of the opening `{`.
    pub object_start: usize,
    /// Top-level members, in body order.
    pub members: Vec<Member<'a>>,
    /// `model`, when present and a string.
    pub model: Option<String>,
    /// `models`, when present.
    pub models: Vec<String>,
    /// `stream: true`.
    pub stream: bool,
}

/// Top-level fields other gateways read as a destination or a credential (LiteLLM's per-request
/// `api_base` and `api_key`, …). The router never honours them, and a provider must not receive a
/// client's key or an address in the body: a request carrying one is refused.
pub const REFUSED_FIELDS: &[&str] = &["api_key", "api_base", "base_url", "extra_headers"];

/// Top-level fields that are OpenRouter's, not the OpenAI API's: removed before a provider sees the body.
pub const ROUTER_ONLY_FIELDS: &[&str] =
    &["models", "route", "provider", "transforms", "session_id", "plugins", "usage", "debug"];

impl<'a> ChatRequest<'a> {
    /// Parses the body: must be a JSON object with a usable `model` (or a non-empty `models` list).
    pub fn parse(body: &'a [u8]) -> Result<ChatRequest<'a>, ApiError> {
        let text = std::str::from_utf8(body).map_err(|_| invalid("the request body is not valid UTF-8"))?;
        let (object_start, members) =
            top_level(text).map_err(|e| invalid(&format!("the request body {e}")))?;
        let mut req =
            ChatRequest { body: text, object_start, members, model: None, models: Vec::new(), stream: false };
        if let Some(v) = req.get("model") {
            match serde_json::from_str::<Option<String>>(v) {
                Ok(m) => req.model = m,
                Err(_) => return Err(invalid("\"model\" must be a string")),
            }
        }
        if let Some(v) = req.get("models") {
            match serde_json::from_str::<Option<Vec<String>>>(v) {
                Ok(m) => req.models = m.unwrap_or_default(),
                Err(_) => return Err(invalid("\"models\" must be an array of model ids")),
            }
        }
        if let Some(v) = req.get("stream") {
            match serde_json::from_str::<Option<bool>>(v) {
                Ok(s) => req.stream = s.unwrap_or(false),
                Err(_) => return Err(invalid("\"stream\" must be a boolean")),
            }
        }
        if let Some(field) = REFUSED_FIELDS.iter().find(|f| req.get(f).is_some()) {
            return Err(invalid(&format!(
                "\"{field}\" is not accepted: the router chooses the provider and holds its credentials"
            )));
        }
        if req.get("messages").is_none() {
            return Err(invalid("\"messages\" is required"));
        }
        if req.model.as_deref().is_some_and(str::is_empty) {
            return Err(invalid("\"model\" must not be empty"));
        }
        if req.model.is_none() && req.models.is_empty() {
            return Err(invalid("\"model\" is required (or a non-empty \"models\" list)"));
        }
        Ok(req)
    }

    /// The raw value of a top-level member.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.members.iter().find(|m| m.key == key).map(|m| m.value)
    }

    /// The model to route: `model`, else the first of `models`.
    pub fn requested_model(&self) -> &str {
        self.model.as_deref().or(self.models.first().map(String::as_str)).unwrap_or("")
    }

    /// The body a provider receives: `model` set to `model_json` (a JSON string literal), the router-only
    /// fields removed and, with `stream_usage`, `stream_options.include_usage` set so the provider reports
    /// usage at the end of a stream; every other byte as the client sent it. Returned as an edit of the
    /// client's body ([`Rewritten`]): only the bytes up to the last change are rebuilt (the model usually
    /// comes first, so for a large conversation that is a few dozen bytes).
    pub fn rewrite_prefix(&self, model_json: &str, stream_usage: bool) -> Rewritten {
        const INCLUDE_USAGE: &str = r#","stream_options":{"include_usage":true}"#;
        // Edits are (range of the old body, replacement, is the model), applied in body order.
        let mut edits: Vec<(Range<usize>, Cow<'_, str>, bool)> = Vec::new();
        let mut kept_any = false;
        let mut model_end = None;
        let mut has_options = false;
        // While no member is kept yet, removals run contiguously from just after `{`.
        let mut cursor = self.object_start + 1;
        // The end of the previous member's value, and whether another member follows.
        let mut prev_end = None;
        let mut members = self.members.iter().peekable();
        while let Some(m) = members.next() {
            let has_next = members.peek().is_some();
            let previous = prev_end.replace(m.value_range.end);
            if m.key == "model" {
                model_end = Some(m.value_range.end);
                edits.push((m.value_range.clone(), model_json.into(), true));
                kept_any = true;
            } else if ROUTER_ONLY_FIELDS.contains(&m.key.as_ref()) {
                let span =
                    self.member_span(m.value_range.end, previous.filter(|_| kept_any), has_next, cursor);
                cursor = span.end;
                edits.push((span, "".into(), false));
            } else {
                if m.key == "stream_options" && stream_usage {
                    has_options = true;
                    if let Some(merged) = with_include_usage(m.value) {
                        edits.push((m.value_range.clone(), merged.into(), false));
                    }
                }
                kept_any = true;
            }
        }
        if let (Some(end), false, true) = (model_end, has_options, stream_usage) {
            edits.push((end..end, INCLUDE_USAGE.into(), false));
            edits.sort_by_key(|e| (e.0.start, e.0.end));
        }
        let mut out = Vec::with_capacity(model_json.len() + INCLUDE_USAGE.len() + 64);
        let bytes = self.body.as_bytes();
        let mut model_range = 0..0;
        let mut pos = 0;
        if model_end.is_none() {
            // Insert `"model":…` first; the comma is needed when any member stays.
            out.extend_from_slice(bytes.get(..=self.object_start).unwrap_or_default());
            out.extend_from_slice(b"\"model\":");
            model_range = out.len()..out.len() + model_json.len();
            out.extend_from_slice(model_json.as_bytes());
            if stream_usage && !has_options {
                out.extend_from_slice(INCLUDE_USAGE.as_bytes());
            }
            if self.members.iter().any(|m| !ROUTER_ONLY_FIELDS.contains(&m.key.as_ref())) {
                out.push(b',');
            }
            pos = self.object_start + 1;
        }
        for (range, replacement, is_model) in edits {
            if range.start < pos {
                continue; // overlapping spans cannot happen; stay safe rather than panic
            }
            out.extend_from_slice(bytes.get(pos..range.start).unwrap_or_default());
            if is_model {
                model_range = out.len()..out.len() + replacement.len();
            }
            out.extend_from_slice(replacement.as_bytes());
            pos = range.end;
        }
        let len = out.len() + bytes.len().saturating_sub(pos);
        Rewritten { prefix: out, replaced: pos, len, model_range }
    }

    /// The bytes to delete to remove the member whose value ends at `end`: from the end of the previous
    /// value when an earlier member is kept (`kept_previous_end`, taking the comma before it), else from
    /// `cursor` up to and including the comma after it (when another member follows).
    fn member_span(
        &self,
        end: usize,
        kept_previous_end: Option<usize>,
        has_next: bool,
        cursor: usize,
    ) -> Range<usize> {
        if let Some(previous) = kept_previous_end {
            return previous..end;
        }
        if has_next {
            // Up to the next member's comma, inclusive.
            let rest = self.body.as_bytes().get(end..).unwrap_or_default();
            let comma = rest.iter().position(|b| *b == b',').map_or(0, |p| p + 1);
            return cursor..end + comma;
        }
        cursor..end
    }
}

/// `stream_options` with `include_usage: true` added (a small object: re-serialised), or `None` to leave it.
fn with_include_usage(value: &str) -> Option<String> {
    match serde_json::from_str::<Option<serde_json::Map<String, serde_json::Value>>>(value) {
        Ok(Some(mut o)) => {
            if o.get("include_usage") == Some(&serde_json::Value::Bool(true)) {
                return None;
            }
            o.insert("include_usage".into(), true.into());
            Some(serde_json::Value::Object(o).to_string())
        }
        Ok(None) => Some(r#"{"include_usage":true}"#.into()),
        Err(_) => None,
    }
}

fn invalid(message: &str) -> ApiError {
    ApiError::InvalidRequest(message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn rewrite(body: &str, model: &str) -> String {
        let req = ChatRequest::parse(body.as_bytes()).unwrap();
        let r = req.rewrite_prefix(model, false);
        let (out, range) = (r.apply(body.as_bytes()), r.model_range);
        let out = String::from_utf8(out).unwrap();
        assert_eq!(&out[range], model, "model range points at the model in {out}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap_or_else(|e| panic!("{out}: {e}"));
        out
    }

    #[test]
    fn only_the_edited_prefix_is_rebuilt() {
        let tail = format!(r#","messages":[{{"role":"user","content":"{}"}}]}}"#, "x".repeat(100_000));
        let body = format!(r#"{{"model":"llama","provider":{{"sort":"price"}}{tail}"#);
        let req = ChatRequest::parse(body.as_bytes()).unwrap();
        let r = req.rewrite_prefix(r#""native""#, true);
        assert!(r.replaced < 60 && r.prefix.len() < 100, "{r:?}");
        let whole = r.apply(body.as_bytes());
        assert_eq!(whole.len(), r.len);
        assert_eq!(
            String::from_utf8(whole).unwrap(),
            format!(r#"{{"model":"native","stream_options":{{"include_usage":true}}{tail}"#)
        );
    }

    #[test]
    fn splices_model_and_keeps_other_bytes() {
        let body =
            r#"{ "model" : "llama",  "messages":[{"role":"user","content":"hi  there"}], "temperature":0.5}"#;
        assert_eq!(
            rewrite(body, r#""native/x""#),
            r#"{ "model" : "native/x",  "messages":[{"role":"user","content":"hi  there"}], "temperature":0.5}"#
        );
    }

    #[test]
    fn removes_router_only_fields_anywhere() {
        let body =
            r#"{"provider":{"order":["a"]},"model":"m","models":["m","n"],"messages":[],"route":"fallback"}"#;
        assert_eq!(rewrite(body, r#""x""#), r#"{"model":"x","messages":[]}"#);
        let body = r#"{"models":["a"],"messages":[], "session_id":"s"}"#;
        assert_eq!(rewrite(body, r#""x""#), r#"{"model":"x","messages":[]}"#);
        let body = r#"{"provider":1, "session_id":"s" ,"model":"m","messages":[]}"#;
        assert_eq!(rewrite(body, r#""x""#), r#"{"model":"x","messages":[]}"#);
    }

    #[test]
    fn inserts_model_when_only_models_given() {
        let body = r#"{"models":["a"],"messages":[{"role":"user","content":"q"}]}"#;
        assert_eq!(rewrite(body, r#""x""#), r#"{"model":"x","messages":[{"role":"user","content":"q"}]}"#);
        let req = ChatRequest::parse(body.as_bytes()).unwrap();
        assert_eq!(req.requested_model(), "a");
    }

    #[test]
    fn escaped_keys_are_recognised() {
        let body = r#"{"mod\u0065l":"m","messages":[]}"#;
        let req = ChatRequest::parse(body.as_bytes()).unwrap();
        assert_eq!(req.model.as_deref(), Some("m"));
    }

    #[test]
    fn bad_bodies_are_400() {
        for body in [
            "",
            "[]",
            "{",
            r#"{"model":1,"messages":[]}"#,
            r#"{"messages":[]}"#,
            r#"{"model":"m"}"#,
            r#"{"model":"m","messages":[]} trailing"#,
            r#"{"model":"m","model":"n","messages":[]}"#,
            r#"{"model":"m","messages":[],"stream":"yes"}"#,
            r#"{"model":"","messages":[]}"#,
            r#"{"model":"m","messages":[],"api_key":"sk-client"}"#,
            r#"{"model":"m","messages":[],"api_base":"http://127.0.0.1:1"}"#,
            r#"{"model":"m","messages":[],"base_url":"http://127.0.0.1:1"}"#,
            r#"{"model":"m","messages":[],"extra_headers":{"x":"y"}}"#,
        ] {
            let e = ChatRequest::parse(body.as_bytes()).unwrap_err();
            assert_eq!(e.status(), 400, "{body}");
        }
        assert_eq!(ChatRequest::parse(b"{\"model\":\"\xff\"}").unwrap_err().status(), 400);
    }

    #[test]
    fn streams_ask_the_provider_for_usage() {
        let stream = |body: &str| {
            let req = ChatRequest::parse(body.as_bytes()).unwrap();
            let r = req.rewrite_prefix(r#""x""#, true);
            let (out, range) = (r.apply(body.as_bytes()), r.model_range);
            let out = String::from_utf8(out).unwrap();
            assert_eq!(&out[range], r#""x""#);
            out
        };
        assert_eq!(
            stream(r#"{"model":"m","messages":[],"stream":true}"#),
            r#"{"model":"x","stream_options":{"include_usage":true},"messages":[],"stream":true}"#
        );
        assert_eq!(
            stream(r#"{"messages":[],"models":["m"],"stream":true}"#),
            r#"{"model":"x","stream_options":{"include_usage":true},"messages":[],"stream":true}"#
        );
        assert_eq!(
            stream(r#"{"model":"m","stream_options":{"other":1},"messages":[]}"#),
            r#"{"model":"x","stream_options":{"include_usage":true,"other":1},"messages":[]}"#
        );
        assert_eq!(
            stream(r#"{"model":"m","stream_options":null,"messages":[]}"#),
            r#"{"model":"x","stream_options":{"include_usage":true},"messages":[]}"#
        );
        let kept = r#"{"model":"m","stream_options":{"include_usage":true},"messages":[]}"#;
        assert_eq!(stream(kept), kept.replace(r#""m""#, r#""x""#));
    }

    #[test]
    fn stream_flag() {
        let req = ChatRequest::parse(br#"{"model":"m","messages":[],"stream":true}"#).unwrap();
        assert!(req.stream);
        let req = ChatRequest::parse(br#"{"model":"m","messages":[],"stream":null}"#).unwrap();
        assert!(!req.stream);
    }
}
