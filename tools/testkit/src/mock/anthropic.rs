//! The mock's Anthropic Messages API answers (`POST .../v1/messages`): a `message`, or its event stream,
//! as documented at <https://docs.anthropic.com/en/api/messages> and
//! <https://docs.anthropic.com/en/api/messages-streaming>.

use super::{js, Ask};

/// What [`super::Behavior::StreamError`] ends an Anthropic stream with.
pub(super) const STREAM_ERROR: &str =
    "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";

/// The tool call's id and input.
const TOOL_ID: &str = "toolu_mock_1";
const TOOL_INPUT: &str = r#"{"x":1}"#;
/// The tool input as its stream sends it, in `input_json_delta` fragments.
const TOOL_INPUT_FRAGMENTS: [&str; 2] = [r#"{"x":"#, "1}"];

/// The answer's extra headers, and its whole body (one part) or its stream's events.
pub(super) fn answer(ask: &Ask) -> (Vec<(String, String)>, Vec<String>) {
    let headers = vec![
        ("anthropic-ratelimit-requests-remaining".to_string(), "99".to_string()),
        ("request-id".to_string(), format!("req_mock_{}", ask.n)),
    ];
    let id = js(&format!("msg_mock_{}", ask.n));
    let model = js(&ask.model);
    let tool = first_tool(ask).map(|name| js(&name));
    let stop_reason = if tool.is_some() { "tool_use" } else { "end_turn" };
    let usage = |output_tokens: u64| {
        format!(
            r#"{{"input_tokens":11,"cache_creation_input_tokens":{},"cache_read_input_tokens":{},"output_tokens":{output_tokens}}}"#,
            ask.cache_write, ask.cache_read
        )
    };
    if !ask.stream {
        let mut content = format!(r#"{{"type":"text","text":{}}}"#, js(&ask.text()));
        if let Some(name) = &tool {
            content.push_str(&format!(
                r#",{{"type":"tool_use","id":"{TOOL_ID}","name":{name},"input":{TOOL_INPUT}}}"#
            ));
        }
        let body = format!(
            r#"{{"id":{id},"type":"message","role":"assistant","model":{model},"content":[{content}],"stop_reason":"{stop_reason}","stop_sequence":null,"usage":{}}}"#,
            usage(7)
        );
        return (headers, vec![body]);
    }
    let event = |name: &str, data: String| format!("event: {name}\ndata: {data}\n\n");
    let mut events = vec![
        event(
            "message_start",
            format!(
                r#"{{"type":"message_start","message":{{"id":{id},"type":"message","role":"assistant","content":[],"model":{model},"stop_reason":null,"stop_sequence":null,"usage":{}}}}}"#,
                usage(1)
            ),
        ),
        event(
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#
                .to_string(),
        ),
        event("ping", r#"{"type":"ping"}"#.to_string()),
    ];
    for d in &ask.deltas {
        events.push(event(
            "content_block_delta",
            format!(
                r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":{}}}}}"#,
                js(d)
            ),
        ));
    }
    events.push(event("content_block_stop", r#"{"type":"content_block_stop","index":0}"#.to_string()));
    if let Some(name) = &tool {
        events.push(event(
            "content_block_start",
            format!(
                r#"{{"type":"content_block_start","index":1,"content_block":{{"type":"tool_use","id":"{TOOL_ID}","name":{name},"input":{{}}}}}}"#
            ),
        ));
        for fragment in TOOL_INPUT_FRAGMENTS {
            events.push(event(
                "content_block_delta",
                format!(
                    r#"{{"type":"content_block_delta","index":1,"delta":{{"type":"input_json_delta","partial_json":{}}}}}"#,
                    js(fragment)
                ),
            ));
        }
        events.push(event("content_block_stop", r#"{"type":"content_block_stop","index":1}"#.to_string()));
    }
    events.push(event(
        "message_delta",
        format!(
            r#"{{"type":"message_delta","delta":{{"stop_reason":"{stop_reason}","stop_sequence":null}},"usage":{{"output_tokens":7}}}}"#
        ),
    ));
    events.push(event("message_stop", r#"{"type":"message_stop"}"#.to_string()));
    (headers, events)
}

/// The name of the request's first tool, when `tools` is a non-empty array.
fn first_tool(ask: &Ask) -> Option<String> {
    let first = ask.tools.as_ref()?.as_array()?.first()?;
    Some(first.get("name").and_then(|n| n.as_str()).unwrap_or("tool").to_string())
}

/// Anthropic's error body: `{"type":"error","error":{"type":…,"message":…}}`, the type the status's.
pub(super) fn error_body(code: u16, message: &str) -> String {
    let kind = match code {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    serde_json::json!({"type": "error", "error": {"type": kind, "message": message}}).to_string()
}
