//! The mock's Gemini answers (`POST .../models/{model}:generateContent` and
//! `...:streamGenerateContent?alt=sse`): a `GenerateContentResponse`, or a stream of them, as documented
//! at <https://ai.google.dev/api/generate-content>.

use super::{js, Ask};

/// What [`super::Behavior::StreamError`] ends a Gemini stream with.
pub(super) const STREAM_ERROR: &str =
    "data: {\"error\":{\"code\":503,\"message\":\"The model is overloaded.\",\"status\":\"UNAVAILABLE\"}}\r\n\r\n";

/// Completion tokens: the whole answer's, and the last stream event's (counts are cumulative).
const CANDIDATES_TOKENS: u64 = 7;

/// The whole body (one part) or the stream's events (`data: …\r\n\r\n`: Gemini ends lines with CRLF).
pub(super) fn answer(ask: &Ask) -> Vec<String> {
    let model = js(&ask.model);
    let id = js(&format!("mock-{}", ask.n));
    let call = first_function(ask)
        .map(|name| format!(r#"{{"functionCall":{{"name":{},"args":{{"x":1}}}}}}"#, js(&name)));
    let response = |parts: &str, last: bool, candidates_tokens: u64| {
        let finish = if last { r#","finishReason":"STOP""# } else { "" };
        format!(
            r#"{{"candidates":[{{"content":{{"role":"model","parts":[{parts}]}}{finish},"index":0}}],"usageMetadata":{},"modelVersion":{model},"responseId":{id}}}"#,
            usage(ask, candidates_tokens)
        )
    };
    let text_part = |text: &str| format!(r#"{{"text":{}}}"#, js(text));
    if !ask.stream {
        let mut parts = text_part(&ask.text());
        if let Some(call) = &call {
            parts.push(',');
            parts.push_str(call);
        }
        return vec![response(&parts, true, CANDIDATES_TOKENS)];
    }
    let mut parts: Vec<String> = ask.deltas.iter().map(|d| text_part(d)).collect();
    parts.extend(call);
    let total = parts.len() as u64;
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let i = i as u64 + 1;
            // Growing with each event, 7 on the last.
            let tokens = (CANDIDATES_TOKENS * i).div_ceil(total);
            format!("data: {}\r\n\r\n", response(p, i == total, tokens))
        })
        .collect()
}

/// `usageMetadata`: 11 uncached prompt tokens plus the cached ones (which Gemini counts in the prompt).
fn usage(ask: &Ask, candidates_tokens: u64) -> String {
    let prompt = 11 + ask.cache_read;
    let cached = if ask.cache_read > 0 {
        format!(r#","cachedContentTokenCount":{}"#, ask.cache_read)
    } else {
        String::new()
    };
    format!(
        r#"{{"promptTokenCount":{prompt},"candidatesTokenCount":{candidates_tokens},"totalTokenCount":{}{cached}}}"#,
        prompt + candidates_tokens
    )
}

/// The name of the first function declared in the request's `tools` (`functionDeclarations`, or
/// `function_declarations`, which Gemini accepts too).
fn first_function(ask: &Ask) -> Option<String> {
    ask.tools.as_ref()?.as_array()?.iter().find_map(|tool| {
        let decls = tool.get("functionDeclarations").or_else(|| tool.get("function_declarations"))?;
        decls.as_array()?.first()?.get("name")?.as_str().map(str::to_string)
    })
}

/// Gemini's error body: `{"error":{"code":…,"message":…,"status":…}}`, the status the code's.
pub(super) fn error_body(code: u16, message: &str) -> String {
    let status = match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    };
    serde_json::json!({"error": {"code": code, "message": message, "status": status}}).to_string()
}
