//! An OpenAI chat request, already parsed at the top level ([`ChatRequest`]), as an Anthropic Messages
//! request body. Only the members translated are read below the top level; every value passed through
//! (schemas, tool arguments, `cache_control`, image data) is copied as the client's JSON text, never
//! rebuilt from values. All work is linear in the body's size.
//!
//! **Translated**
//! - `messages`: `system` and `developer` messages, wherever they are, → `system` text blocks in order (one
//!   per string content, one per text part); `user`/`assistant` → turns, consecutive turns of one role
//!   merged into one; `tool` messages → `tool_result` blocks in a user turn, so a run of them (parallel
//!   results) is one turn; in a user turn the `tool_result` blocks come first, as Anthropic requires.
//! - content parts: `text` (empty ones skipped: Anthropic refuses empty text blocks); `image_url` with a
//!   `data:image/{jpeg,png,gif,webp};base64,` URL → a `base64` source whose data is the URL's tail, sliced
//!   not decoded; with an `http(s)` URL → a `url` source; `file` with a PDF data URL → a `document` block.
//! - assistant `tool_calls` → `tool_use` blocks after the text: `arguments` parsed as the `input` (its JSON
//!   text copied), `""` or absent → `{}`.
//! - tool ids ([`tool_id`]): valid Anthropic ids (`^[a-zA-Z0-9_-]+$`) unchanged; any other id made valid
//!   and suffixed with a hash of the original, the same function for `tool_calls[].id` and
//!   `tool_call_id`, so pairs still match and distinct ids stay distinct.
//! - `cache_control` on a content part, on a message (→ its last block) or on a tool: copied; more than
//!   [`MAX_CACHE_BREAKPOINTS`] is a 400 (Anthropic's limit).
//! - `tools` (function tools) → `name`, `description`, `input_schema` (= `parameters`, or an empty object
//!   schema); `tool_choice` `auto`/`required`/`none`/named → `auto`/`any`/`none`/`tool`;
//!   `parallel_tool_calls: false` → `disable_parallel_tool_use: true`.
//! - `response_format` `json_schema` → `output_config.format` (`{"type":"json_schema","schema":…}`),
//!   Anthropic's generally available structured output (documented for Claude 4.5 models and later;
//!   an older model answers 400, which the router passes on as the provider's rejection). Chosen over a
//!   forced tool because the answer stays ordinary text: no unwrapping of a tool call, streamed or not,
//!   and it composes with the client's own tools and `tool_choice`.
//! - `max_completion_tokens`, else `max_tokens`, else the endpoint's default → `max_tokens` (required).
//! - `stop` → `stop_sequences`; `temperature` (OpenAI's 0–2: above 1 clamped to Anthropic's maximum 1),
//!   `top_p`, `top_k` (0 means no limit: omitted); `user` → `metadata.user_id`; `stream`.
//! - `reasoning` / `reasoning_effort` → `thinking: {"type":"enabled","budget_tokens":…}`:
//!   `reasoning.max_tokens` as given (at least 1024, Anthropic's minimum), else the effort's share of
//!   `max_tokens` (max 0.95, xhigh 0.9, high 0.8, medium 0.5, low 0.2, minimal 0.1; `enabled: true`
//!   alone = medium) within 1024..=32000, as OpenRouter documents; effort `none` or `enabled: false` →
//!   no thinking. With thinking on, `temperature` and `top_k` are dropped and `top_p` raised to 0.95
//!   (Anthropic's constraints for thinking).
//!
//! **Dropped** (Anthropic has no equivalent; listed in [`DROPPED`]): thinking when its budget would not
//! be below `max_tokens` or when `tool_choice` forces a tool (Anthropic refuses both);
//! `response_format` `json_object` (no schema-less JSON mode) and other non-schema formats; a message's
//! `name`, an assistant's `refusal`/`reasoning`/`reasoning_details`; `tools[].function.strict`;
//! `stream_options` (Anthropic always reports usage); and every other top-level member.
//!
//! **Refused** with 400 naming the field: `n` > 1; more than four `cache_control` breakpoints; a
//! `temperature` outside 0–2, `top_p` outside 0–1, a negative `top_k`, a `max_tokens` of 0; audio parts
//! (`input_audio`), images of other types or schemes, files other than PDF data; non-function tools;
//! `tool_calls` arguments that are not a JSON object; unknown roles (`function` included) and malformed
//! messages; a conversation with no user or assistant content.

use crate::wire::chat_request::ChatRequest;
use crate::wire::error::ApiError;
use crate::wire::json::array_elements;
pub use crate::wire::native::request_reader::effort_share;
use crate::wire::native::request_reader::{
    arguments, data_url, invalid, max_tokens, opt, ranged, reasoning, response_format, scheme, single_choice,
    stop, tool_choice, tools, top_k, unknown_tool_choice, FunctionTool, InMessage, InPart, InToolCall,
    JsonFormat, Thinking, ToolChoice,
};
use crate::wire::native::transcript;
use crate::wire::text::{push_json_str, push_u64};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Anthropic's limit on `cache_control` breakpoints per request.
pub const MAX_CACHE_BREAKPOINTS: usize = 4;

/// Smallest thinking budget Anthropic accepts.
pub const MIN_THINKING_BUDGET: u64 = 1024;

/// Largest thinking budget an effort level asks for (OpenRouter's cap).
pub const MAX_EFFORT_BUDGET: u64 = 32_000;

/// Top-level request members with no Anthropic equivalent: not sent. (Members not listed and not
/// translated are not sent either; this is the documented list.)
pub const DROPPED: &[&str] = &[
    "frequency_penalty",
    "presence_penalty",
    "repetition_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "seed",
    "min_p",
    "top_a",
    "stream_options",
    "service_tier",
    "prediction",
    "modalities",
    "audio",
    "store",
    "metadata",
    "prompt_cache_key",
    "verbosity",
    "web_search_options",
    "functions",
    "function_call",
];

/// Image media types Anthropic accepts.
const IMAGE_TYPES: &[&str] = &["image/jpeg", "image/png", "image/gif", "image/webp"];

/// The Anthropic Messages request for `req`, for the provider's `model` (its native name, unquoted),
/// with `default_max_tokens` (the endpoint's) when the request sets none. Errors are 400s naming the
/// field.
pub fn to_anthropic(
    req: &ChatRequest<'_>,
    model: &str,
    default_max_tokens: u64,
) -> Result<Vec<u8>, ApiError> {
    let params = Params::read(req, default_max_tokens)?;
    let mut breakpoints = 0usize;
    let conversation = transcript::read(req, "{\"type\":\"text\"", |i, m, blocks| {
        message_blocks(i, m, blocks, &mut breakpoints)
    })?;
    let tools = push_tools(&tools(req)?, &mut breakpoints);
    if breakpoints > MAX_CACHE_BREAKPOINTS {
        return Err(invalid(&format!(
            "at most {MAX_CACHE_BREAKPOINTS} cache_control breakpoints are allowed (found {breakpoints})"
        )));
    }
    let tool_choice = tool_choice_json(req, tools.is_some())?;
    let forced =
        tool_choice.as_deref().is_some_and(|c| c.starts_with(FORCED_ANY) || c.starts_with(FORCED_TOOL));
    let thinking = params.thinking.filter(|b| *b < params.max_tokens && !forced);

    let mut out = String::with_capacity(req.body.len() + 256);
    out.push_str("{\"model\":");
    push_json_str(&mut out, model);
    out.push_str(",\"max_tokens\":");
    push_u64(&mut out, params.max_tokens);
    if !conversation.system.is_empty() {
        out.push_str(",\"system\":[");
        out.push_str(&conversation.system);
        out.push(']');
    }
    out.push_str(",\"messages\":[");
    conversation.push_turns(
        &mut out,
        "{\"role\":\"assistant\",\"content\":[",
        "{\"role\":\"user\",\"content\":[",
    );
    out.push(']');
    if let Some(tools) = tools {
        out.push_str(",\"tools\":[");
        out.push_str(&tools);
        out.push(']');
    }
    if let Some(choice) = tool_choice {
        out.push_str(",\"tool_choice\":");
        out.push_str(&choice);
    }
    if !params.stop.is_empty() {
        out.push_str(",\"stop_sequences\":[");
        for (i, s) in params.stop.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_str(&mut out, s);
        }
        out.push(']');
    }
    match thinking {
        Some(budget) => {
            if let Some(top_p) = params.top_p {
                out.push_str(",\"top_p\":");
                out.push_str(if top_p.1 < 0.95 { "0.95" } else { top_p.0 });
            }
            out.push_str(",\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":");
            push_u64(&mut out, budget);
            out.push('}');
        }
        None => {
            if let Some(t) = params.temperature {
                out.push_str(",\"temperature\":");
                out.push_str(t);
            }
            if let Some(top_p) = params.top_p {
                out.push_str(",\"top_p\":");
                out.push_str(top_p.0);
            }
            if let Some(k) = params.top_k {
                out.push_str(",\"top_k\":");
                push_u64(&mut out, k);
            }
        }
    }
    if let Some(user) = params.user {
        out.push_str(",\"metadata\":{\"user_id\":");
        push_json_str(&mut out, &user);
        out.push('}');
    }
    if let Some(schema) = params.schema {
        out.push_str(",\"output_config\":{\"format\":{\"type\":\"json_schema\",\"schema\":");
        out.push_str(schema);
        out.push_str("}}");
    }
    if req.stream {
        out.push_str(",\"stream\":true");
    }
    out.push('}');
    Ok(out.into_bytes())
}

/// The id Anthropic receives for an OpenAI tool call id: the id itself when it matches
/// `^[a-zA-Z0-9_-]+$`; otherwise its first 64 characters with every other character replaced by `_`,
/// then `_` and the 16 hex digits of its XXH3 hash (so `call.1` and `call:1` stay distinct). Pure:
/// the same id always gives the same answer, on the `tool_use` and the `tool_result` side alike.
pub fn tool_id(id: &str) -> Cow<'_, str> {
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if !id.is_empty() && id.chars().all(valid) {
        return Cow::Borrowed(id);
    }
    let mut out: String = id.chars().take(64).map(|c| if valid(c) { c } else { '_' }).collect();
    out.push('_');
    let hash = xxhash_rust::xxh3::xxh3_64(id.as_bytes());
    for byte in hash.to_be_bytes() {
        crate::wire::text::push_hex_byte(&mut out, byte);
    }
    Cow::Owned(out)
}

// ---------------------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------------------

/// The top-level parameters, read and checked.
struct Params<'a> {
    max_tokens: u64,
    /// Raw JSON text (clamped to `1` above 1).
    temperature: Option<&'a str>,
    /// Raw JSON text and value.
    top_p: Option<(&'a str, f64)>,
    top_k: Option<u64>,
    stop: Vec<String>,
    user: Option<String>,
    /// The JSON schema of `response_format`, raw.
    schema: Option<&'a str>,
    /// The thinking budget asked for, before the checks against `max_tokens` and `tool_choice`.
    thinking: Option<u64>,
}

impl<'a> Params<'a> {
    fn read(req: &ChatRequest<'a>, default_max_tokens: u64) -> Result<Params<'a>, ApiError> {
        single_choice(req)?;
        let max_tokens = max_tokens(req, default_max_tokens)?;
        let temperature = match ranged(req, "temperature", 0.0, 2.0)? {
            // Anthropic's maximum is 1.
            Some((_, t)) if t > 1.0 => Some("1"),
            other => other.map(|(raw, _)| raw),
        };
        let top_p = ranged(req, "top_p", 0.0, 1.0)?;
        let top_k = top_k(req)?;
        let stop = stop(req)?;
        let user = opt::<String>(req, "user")?;
        // Other formats (`json_object`, `text`) have no Anthropic equivalent and are dropped.
        let schema = match response_format(req)? {
            Some(JsonFormat::Schema(schema)) => Some(schema),
            _ => None,
        };
        let thinking = match reasoning(req, false)?.0 {
            Thinking::Unset | Thinking::Off => None,
            Thinking::Tokens(budget) => Some(budget.max(MIN_THINKING_BUDGET)),
            Thinking::Share(share) => {
                Some(Thinking::share_budget(share, max_tokens, MIN_THINKING_BUDGET, MAX_EFFORT_BUDGET))
            }
        };
        Ok(Params { max_tokens, temperature, top_p, top_k, stop, user, schema, thinking })
    }
}

// ---------------------------------------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------------------------------------

/// `tools` as Anthropic's tool list (the members, without brackets); `None` for none.
fn push_tools(tools: &[FunctionTool<'_>], breakpoints: &mut usize) -> Option<String> {
    let mut out = String::new();
    for tool in tools {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str("{\"name\":");
        push_json_str(&mut out, &tool.name);
        if let Some(d) = &tool.description {
            out.push_str(",\"description\":");
            push_json_str(&mut out, d);
        }
        out.push_str(",\"input_schema\":");
        out.push_str(tool.parameters.unwrap_or("{\"type\":\"object\",\"properties\":{}}"));
        push_cache_control(&mut out, tool.cache_control, breakpoints);
        out.push('}');
    }
    (!out.is_empty()).then_some(out)
}

/// How a `tool_choice` that makes the model call a tool (any, or the one named) begins.
const FORCED_ANY: &str = "{\"type\":\"any\"";
const FORCED_TOOL: &str = "{\"type\":\"tool\",\"name\":";

/// `tool_choice` and `parallel_tool_calls` as Anthropic's `tool_choice` (JSON text); none without tools.
fn tool_choice_json(req: &ChatRequest<'_>, has_tools: bool) -> Result<Option<String>, ApiError> {
    let choice = tool_choice(req)?;
    let parallel = opt::<bool>(req, "parallel_tool_calls")?;
    if !has_tools {
        return Ok(None);
    }
    let mut out = String::from("{\"type\":");
    match &choice {
        None | Some(ToolChoice::Auto) => out.push_str("\"auto\""),
        Some(ToolChoice::Required) => out = FORCED_ANY.into(),
        Some(ToolChoice::None) => return Ok(Some("{\"type\":\"none\"}".into())),
        Some(ToolChoice::Unknown) => return Err(unknown_tool_choice()),
        Some(ToolChoice::Named(name)) => {
            out = FORCED_TOOL.into();
            push_json_str(&mut out, name);
        }
    }
    if parallel == Some(false) {
        out.push_str(",\"disable_parallel_tool_use\":true");
    } else if choice.is_none() {
        // Anthropic's default is auto: say nothing the client did not.
        return Ok(None);
    }
    out.push('}');
    Ok(Some(out))
}

// ---------------------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------------------

/// Message `i`'s Anthropic blocks (its content, a tool message's `tool_result`, an assistant's `tool_use`
/// blocks, its `cache_control`), appended to `blocks`.
fn message_blocks(
    i: usize,
    m: InMessage<'_>,
    blocks: &mut Vec<String>,
    breakpoints: &mut usize,
) -> Result<(), ApiError> {
    let field = |rest: &str| format!("messages[{i}]{rest}");
    let role = m.role.as_ref();
    if role != "tool" {
        if let Some(content) = m.content {
            let assistant = role == "assistant";
            content_blocks(content.get(), &field(".content"), assistant, blocks, breakpoints)?;
        }
    } else {
        let id = m
            .tool_call_id
            .as_deref()
            .ok_or_else(|| invalid(&format!("{}: a tool message needs \"tool_call_id\"", field(""))))?;
        let mut block = String::from("{\"type\":\"tool_result\",\"tool_use_id\":");
        push_json_str(&mut block, &tool_id(id));
        let mut inner = Vec::new();
        if let Some(content) = m.content {
            content_blocks(content.get(), &field(".content"), false, &mut inner, breakpoints)?;
        }
        if !inner.is_empty() {
            block.push_str(",\"content\":[");
            block.push_str(&inner.join(","));
            block.push(']');
        }
        block.push('}');
        blocks.push(block);
    }
    if role == "assistant" {
        for (j, call) in m.tool_calls.iter().flatten().enumerate() {
            blocks.push(tool_use(call, &field(&format!(".tool_calls[{j}]")))?);
        }
    }
    // A message-level breakpoint marks the message's last block (unless that block has its own).
    if let (Some(cc), Some(last)) = (m.cache_control, blocks.last_mut()) {
        // Only text, image and document blocks get one of their own; a tool block's `input` or
        // nested results may hold the same text without it being the block's.
        let own = !last.starts_with("{\"type\":\"tool_") && last.contains(CACHE_MARK);
        if cc.get() != "null" && !own {
            last.pop();
            push_cache_control(last, Some(cc), breakpoints);
            last.push('}');
        }
    }
    Ok(())
}

/// How a copied `cache_control` begins in a text, image or document block (client text inside such a
/// block is escaped, so this exact text can only be ours).
const CACHE_MARK: &str = ",\"cache_control\":";

/// Appends `,"cache_control":…` for a non-null value.
fn push_cache_control(out: &mut String, cc: Option<&RawValue>, count: &mut usize) {
    if let Some(cc) = cc.map(RawValue::get).filter(|c| *c != "null") {
        out.push_str(CACHE_MARK);
        out.push_str(cc);
        *count += 1;
    }
}

/// A tool call as a `tool_use` block.
fn tool_use(call: &InToolCall<'_>, field: &str) -> Result<String, ApiError> {
    let input = arguments(call, field)?;
    let mut out = String::with_capacity(input.len() + 64);
    out.push_str("{\"type\":\"tool_use\",\"id\":");
    push_json_str(&mut out, &tool_id(&call.id));
    out.push_str(",\"name\":");
    push_json_str(&mut out, &call.function.name);
    out.push_str(",\"input\":");
    out.push_str(input);
    out.push('}');
    Ok(out)
}

/// A message's `content` (a string, an array of parts, or null) as blocks.
fn content_blocks(
    raw: &str,
    field: &str,
    assistant: bool,
    out: &mut Vec<String>,
    breakpoints: &mut usize,
) -> Result<(), ApiError> {
    let raw = raw.trim();
    if raw.starts_with('"') {
        let text: Cow<'_, str> = serde_json::from_str(raw).map_err(|e| invalid(&format!("{field}: {e}")))?;
        if !text.is_empty() {
            out.push(text_block(&text));
        }
        return Ok(());
    }
    if raw == "null" {
        return Ok(());
    }
    if !raw.starts_with('[') {
        return Err(invalid(&format!("{field} must be a string, an array of parts or null")));
    }
    for (j, element) in array_elements(raw).enumerate() {
        let field = format!("{field}[{j}]");
        let part: InPart<'_> =
            serde_json::from_str(element).map_err(|e| invalid(&format!("{field}: {e}")))?;
        let mut block = match part.kind.as_ref() {
            "text" => match part.text.as_deref() {
                Some("") => continue,
                Some(t) => text_block(t),
                None => return Err(invalid(&format!("{field}.text is required"))),
            },
            // An assistant's refusal is not resent (Anthropic has no such block).
            "refusal" if assistant => continue,
            "image_url" => {
                let url = part.image_url.ok_or_else(|| invalid(&format!("{field}.image_url is required")))?;
                let mut b = String::from("{\"type\":\"image\",\"source\":");
                push_source(&mut b, &url.url, &format!("{field}.image_url.url"), false)?;
                b.push('}');
                b
            }
            "file" => {
                let data = part.file.and_then(|f| f.file_data).ok_or_else(|| {
                    invalid(&format!("{field}.file.file_data (a PDF data URL) is required"))
                })?;
                let mut b = String::from("{\"type\":\"document\",\"source\":");
                push_source(&mut b, &data, &format!("{field}.file.file_data"), true)?;
                b.push('}');
                b
            }
            "input_audio" => {
                return Err(invalid(&format!("{field}: audio input is not supported by this provider")))
            }
            other => {
                return Err(invalid(&format!(
                    "{field}.type \"{}\" is not supported by this provider",
                    crate::wire::text::truncated(other, 40)
                )))
            }
        };
        if part.cache_control.is_some_and(|c| c.get() != "null") {
            block.pop();
            push_cache_control(&mut block, part.cache_control, breakpoints);
            block.push('}');
        }
        out.push(block);
    }
    Ok(())
}

/// A text block.
fn text_block(text: &str) -> String {
    let mut b = String::with_capacity(text.len() + 32);
    b.push_str("{\"type\":\"text\",\"text\":");
    push_json_str(&mut b, text);
    b.push('}');
    b
}

/// An image's (or, with `pdf`, a document's) `source`: a base64 data URL's data sliced out as it is, or
/// an http(s) URL.
fn push_source(out: &mut String, url: &str, field: &str, pdf: bool) -> Result<(), ApiError> {
    if let Some((media, data)) = data_url(url, field)? {
        let allowed = if pdf { media == "application/pdf" } else { IMAGE_TYPES.contains(&media.as_str()) };
        if !allowed {
            let expected =
                if pdf { "application/pdf" } else { "image/jpeg, image/png, image/gif or image/webp" };
            return Err(invalid(&format!(
                "{field}: media type \"{}\" is not supported by this provider ({expected})",
                crate::wire::text::truncated(&media, 60)
            )));
        }
        out.push_str("{\"type\":\"base64\",\"media_type\":");
        push_json_str(out, &media);
        out.push_str(",\"data\":");
        push_json_str(out, data);
        out.push('}');
        return Ok(());
    }
    if !pdf && matches!(scheme(url).as_deref(), Some("http" | "https")) {
        out.push_str("{\"type\":\"url\",\"url\":");
        push_json_str(out, url);
        out.push('}');
        return Ok(());
    }
    let expected = if pdf { "a base64 PDF data URL" } else { "a base64 data URL or an http(s) URL" };
    Err(invalid(&format!("{field} must be {expected}")))
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
