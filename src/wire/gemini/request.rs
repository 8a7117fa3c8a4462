//! An OpenAI chat request, already parsed at the top level ([`ChatRequest`]), as a Gemini
//! `GenerateContentRequest` body. The model is in the path (`/v1beta/models/{model}:generateContent`) and
//! so is the choice to stream (`:streamGenerateContent?alt=sse`): neither is in the body. Only the members
//! translated are read below the top level; every value passed through (schemas, tool arguments, image
//! data, sampling numbers) is copied as the client's JSON text, never rebuilt from values. All work is
//! linear in the body's size.
//!
//! **Translated**
//! - `messages`: `system` and `developer` messages, wherever they are, → `systemInstruction.parts` in
//!   order (one text part per string content or text part); `user` → role `user`, `assistant` → role
//!   `model`, consecutive turns of one role merged into one (Gemini expects turns to alternate); `tool`
//!   messages → `functionResponse` parts of a `user` turn, so a run of them (parallel results) is one
//!   turn, the results before any other part of that turn.
//! - content parts: `text` (empty ones skipped: Gemini refuses empty parts); `image_url` with a
//!   `data:image/…;base64,` URL → `inlineData {mimeType, data}`, the data sliced out of the URL as it is,
//!   not decoded; `file` with a base64 data URL → `inlineData` of its media type (PDF, text, audio, video:
//!   Gemini decides what it reads); `input_audio` (`wav`/`mp3`/…) → `inlineData` `audio/<format>`.
//! - assistant `tool_calls` → `functionCall {name, args}` parts after the text: `arguments` parsed as
//!   the `args` object (its JSON text copied), `""` or absent → `{}`. The OpenAI ids are not sent:
//!   Gemini matches a response to its call by name.
//! - `tool` messages → `functionResponse {name, response: {"output": <content text>}}`: the name is the
//!   one of the assistant tool call with that `tool_call_id` (the latest such call, so ids reused across
//!   turns still resolve to the call being answered); `output` is the key Gemini documents for a
//!   function's result. The content (a string, or its text parts joined) is sent as a JSON string, as
//!   the client wrote it, even when it holds JSON: no guessing at the tool's types.
//! - `tools` (function tools) → one `tools[0].functionDeclarations` list of `{name, description,
//!   parametersJsonSchema}`: the client's `parameters` JSON Schema copied. `parametersJsonSchema` (not
//!   `parameters`, an OpenAPI subset that refuses members such as `additionalProperties` and `$ref`,
//!   which OpenAI clients send) takes JSON Schema as it is. No parameters → no schema (a function with
//!   no arguments).
//! - `tool_choice` `auto`/`required`/`none`/named → `toolConfig.functionCallingConfig.mode`
//!   `AUTO`/`ANY`/`NONE`/`ANY` with `allowedFunctionNames: [name]`.
//! - `response_format` `json_schema` → `generationConfig.responseMimeType: "application/json"` and
//!   `responseJsonSchema` (the schema copied: JSON Schema as it is, unlike `responseSchema`);
//!   `json_object` → `responseMimeType: "application/json"` alone.
//! - `generationConfig`: `max_completion_tokens`, else `max_tokens`, else the endpoint's default →
//!   `maxOutputTokens` (always sent); `temperature` (0–2, Gemini's range too), `top_p`, `top_k` (0 means
//!   no limit: omitted), `seed`, `presence_penalty`, `frequency_penalty` → `temperature`, `topP`,
//!   `topK`, `seed`, `presencePenalty`, `frequencyPenalty`; `stop` (a string or up to
//!   [`MAX_STOP_SEQUENCES`]) → `stopSequences`.
//! - `reasoning` / `reasoning_effort` → `thinkingConfig {thinkingBudget, includeThoughts}`:
//!   `reasoning.max_tokens` as given, else the effort's share of `maxOutputTokens` (the shares of
//!   [`crate::wire::anthropic::request::effort_share`]; `enabled: true` alone = medium) within
//!   [`MIN_THINKING_BUDGET`]..=[`MAX_EFFORT_BUDGET`]; effort `none` or `enabled: false` →
//!   `thinkingBudget: 0` (thinking off; models that cannot turn it off answer 400, passed on);
//!   `includeThoughts` is true unless `reasoning.exclude`. No reasoning member → no `thinkingConfig`
//!   (the model's own default).
//!
//! **Dropped** (listed in [`DROPPED`]): `user` (Gemini has no end-user field); `parallel_tool_calls`
//! (Gemini has no switch: it may call several functions in one turn); `cache_control` anywhere (Gemini
//! caches prompts implicitly; its explicit cache is a separate resource); a message's `name`, an
//! assistant's `refusal`/`reasoning`/`reasoning_details`; `tools[].function.strict`; `stream` and
//! `stream_options` (the path chooses streaming; Gemini always reports usage); `response_format`
//! `text`; and every other top-level member.
//!
//! **Refused** with 400 naming the field: `n` > 1 (`candidateCount` is not used: OpenRouter refuses
//! several choices for such providers); more than [`MAX_STOP_SEQUENCES`] stop sequences (dropping some
//! would change where the answer ends); a `temperature` outside 0–2, `top_p` outside 0–1, a negative
//! `top_k`, `presence_penalty`/`frequency_penalty` outside −2–2, a `seed` outside 32 bits, a
//! `max_tokens` of 0; images by `http(s)` URL (Gemini's `fileData` takes only files uploaded to its
//! Files API: send images as base64 data URLs), images that are not `image/*`, data URLs that are not
//! base64; non-function tools; `tool_calls` arguments that are not a JSON object; a `tool` message whose
//! `tool_call_id` matches no earlier assistant tool call, or whose content is not text; unknown roles
//! (`function` included) and malformed messages; a conversation with no user or assistant content.

use crate::wire::anthropic::request::MIN_THINKING_BUDGET;
use crate::wire::chat_request::ChatRequest;
use crate::wire::error::ApiError;
use crate::wire::json::array_elements;
use crate::wire::native::request_reader::{
    arguments, data_url, invalid, max_tokens, opt, ranged, reasoning, response_format, scheme, single_choice,
    stop, tool_choice, tools, top_k, unknown_tool_choice, FunctionTool, InAudio, InMessage, InPart,
    InToolCall, JsonFormat, Thinking, ToolChoice,
};
use crate::wire::native::transcript;
use crate::wire::text::{push_json_str, push_u64, truncated};
use std::borrow::Cow;
use std::collections::HashMap;

/// The longest function name a tool call may have: OpenAI's and Gemini's own limit (64).
pub const MAX_FUNCTION_NAME_BYTES: usize = 64;

/// Gemini's limit on `stopSequences`.
pub const MAX_STOP_SEQUENCES: usize = 5;

/// Largest thinking budget an effort level asks for: the largest every Gemini 2.5 model accepts (Flash's
/// maximum; Pro's is 32768), so an effort never makes a request invalid.
pub const MAX_EFFORT_BUDGET: u64 = 24_576;

/// Top-level request members with no Gemini equivalent: not sent. (Members not listed and not translated
/// are not sent either; this is the documented list.)
pub const DROPPED: &[&str] = &[
    "user",
    "parallel_tool_calls",
    "stream",
    "stream_options",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "repetition_penalty",
    "min_p",
    "top_a",
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

/// The Gemini `GenerateContentRequest` body for `req`, with `default_max_tokens` (the endpoint's) when
/// the request sets none. Errors are 400s naming the field.
pub fn to_gemini(req: &ChatRequest<'_>, default_max_tokens: u64) -> Result<Vec<u8>, ApiError> {
    let params = Params::read(req, default_max_tokens)?;
    // Function name by tool call id, from the assistant messages so far (a later call with the same id
    // replaces an earlier one): a tool result names its function.
    let mut calls: HashMap<String, String> = HashMap::new();
    let conversation =
        transcript::read(req, "{\"text\":", |i, m, parts| message_parts(i, m, parts, &mut calls))?;
    let tools = push_tools(&tools(req)?);
    let tool_config = tool_config(req, tools.is_some())?;

    let mut out = String::with_capacity(req.body.len() + 256);
    out.push_str("{\"contents\":[");
    conversation.push_turns(&mut out, "{\"role\":\"model\",\"parts\":[", "{\"role\":\"user\",\"parts\":[");
    out.push(']');
    if !conversation.system.is_empty() {
        out.push_str(",\"systemInstruction\":{\"parts\":[");
        out.push_str(&conversation.system);
        out.push_str("]}");
    }
    if let Some(tools) = tools {
        out.push_str(",\"tools\":[{\"functionDeclarations\":[");
        out.push_str(&tools);
        out.push_str("]}]");
    }
    if let Some(config) = tool_config {
        out.push_str(",\"toolConfig\":{\"functionCallingConfig\":");
        out.push_str(&config);
        out.push('}');
    }
    params.push_generation_config(&mut out);
    out.push('}');
    Ok(out.into_bytes())
}

// ---------------------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------------------

/// The top-level parameters, read and checked; numbers as the client's JSON text.
struct Params<'a> {
    max_tokens: u64,
    temperature: Option<&'a str>,
    top_p: Option<&'a str>,
    top_k: Option<u64>,
    seed: Option<i64>,
    presence_penalty: Option<&'a str>,
    frequency_penalty: Option<&'a str>,
    stop: Vec<String>,
    /// `response_format` asks for JSON.
    json: bool,
    /// The JSON schema of `response_format`, raw.
    schema: Option<&'a str>,
    /// `thinkingConfig`: the budget and `includeThoughts`.
    thinking: Option<(u64, bool)>,
}

impl<'a> Params<'a> {
    fn read(req: &ChatRequest<'a>, default_max_tokens: u64) -> Result<Params<'a>, ApiError> {
        single_choice(req)?;
        let max_tokens = max_tokens(req, default_max_tokens)?;
        let raw = |v: Option<(&'a str, f64)>| v.map(|(raw, _)| raw);
        let temperature = raw(ranged(req, "temperature", 0.0, 2.0)?);
        let top_p = raw(ranged(req, "top_p", 0.0, 1.0)?);
        let presence_penalty = raw(ranged(req, "presence_penalty", -2.0, 2.0)?);
        let frequency_penalty = raw(ranged(req, "frequency_penalty", -2.0, 2.0)?);
        let top_k = top_k(req)?;
        let seed = opt::<i64>(req, "seed")?;
        if seed.is_some_and(|s| i32::try_from(s).is_err()) {
            return Err(invalid("\"seed\" must be a 32-bit integer for this provider"));
        }
        let stop = stop(req)?;
        if stop.len() > MAX_STOP_SEQUENCES {
            return Err(invalid(&format!(
                "\"stop\" may hold at most {MAX_STOP_SEQUENCES} sequences for this provider"
            )));
        }
        let (json, schema) = match response_format(req)? {
            Some(JsonFormat::Schema(schema)) => (true, Some(schema)),
            Some(JsonFormat::Object) => (true, None),
            None => (false, None),
        };
        let thinking = match reasoning(req, true)? {
            (Thinking::Unset, _) => None,
            (Thinking::Off, _) => Some((0, false)),
            (Thinking::Tokens(budget), include) => Some((budget, include)),
            (Thinking::Share(share), include) => Some((
                Thinking::share_budget(share, max_tokens, MIN_THINKING_BUDGET, MAX_EFFORT_BUDGET),
                include,
            )),
        };
        Ok(Params {
            max_tokens,
            temperature,
            top_p,
            top_k,
            seed,
            presence_penalty,
            frequency_penalty,
            stop,
            json,
            schema,
            thinking,
        })
    }

    /// Appends `,"generationConfig":{…}` (never empty: `maxOutputTokens` is always set).
    fn push_generation_config(&self, out: &mut String) {
        out.push_str(",\"generationConfig\":{\"maxOutputTokens\":");
        push_u64(out, self.max_tokens);
        for (key, raw) in [
            ("temperature", self.temperature),
            ("topP", self.top_p),
            ("presencePenalty", self.presence_penalty),
            ("frequencyPenalty", self.frequency_penalty),
        ] {
            if let Some(raw) = raw {
                out.push_str(",\"");
                out.push_str(key);
                out.push_str("\":");
                out.push_str(raw);
            }
        }
        if let Some(k) = self.top_k {
            out.push_str(",\"topK\":");
            push_u64(out, k);
        }
        if let Some(seed) = self.seed {
            out.push_str(",\"seed\":");
            if seed < 0 {
                out.push('-');
            }
            push_u64(out, seed.unsigned_abs());
        }
        if !self.stop.is_empty() {
            out.push_str(",\"stopSequences\":[");
            for (i, s) in self.stop.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_str(out, s);
            }
            out.push(']');
        }
        if self.json {
            out.push_str(",\"responseMimeType\":\"application/json\"");
        }
        if let Some(schema) = self.schema {
            out.push_str(",\"responseJsonSchema\":");
            out.push_str(schema);
        }
        if let Some((budget, include)) = self.thinking {
            out.push_str(",\"thinkingConfig\":{\"thinkingBudget\":");
            push_u64(out, budget);
            out.push_str(",\"includeThoughts\":");
            out.push_str(if include { "true" } else { "false" });
            out.push('}');
        }
        out.push('}');
    }
}

// ---------------------------------------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------------------------------------

/// `tools` as Gemini's `functionDeclarations` (the members, without brackets); `None` for none.
fn push_tools(tools: &[FunctionTool<'_>]) -> Option<String> {
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
        if let Some(p) = tool.parameters {
            out.push_str(",\"parametersJsonSchema\":");
            out.push_str(p);
        }
        out.push('}');
    }
    (!out.is_empty()).then_some(out)
}

/// `tool_choice` as Gemini's `functionCallingConfig` (JSON text); none without tools or without a
/// choice (Gemini's default is `AUTO`).
fn tool_config(req: &ChatRequest<'_>, has_tools: bool) -> Result<Option<String>, ApiError> {
    let Some(choice) = tool_choice(req)?.filter(|_| has_tools) else { return Ok(None) };
    let config = match choice {
        ToolChoice::Auto => "{\"mode\":\"AUTO\"}".to_string(),
        ToolChoice::Required => "{\"mode\":\"ANY\"}".to_string(),
        ToolChoice::None => "{\"mode\":\"NONE\"}".to_string(),
        ToolChoice::Unknown => return Err(unknown_tool_choice()),
        ToolChoice::Named(name) => {
            let mut out = String::from("{\"mode\":\"ANY\",\"allowedFunctionNames\":[");
            push_json_str(&mut out, &name);
            out.push_str("]}");
            out
        }
    };
    Ok(Some(config))
}

// ---------------------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------------------

/// Message `i`'s Gemini parts (its content, a tool message's `functionResponse`, an assistant's
/// `functionCall`s, recorded in `calls`), appended to `parts`.
fn message_parts(
    i: usize,
    m: InMessage<'_>,
    parts: &mut Vec<String>,
    calls: &mut HashMap<String, String>,
) -> Result<(), ApiError> {
    let field = |rest: &str| format!("messages[{i}]{rest}");
    let role = m.role.as_ref();
    if role != "tool" {
        if let Some(content) = m.content {
            content_parts(content.get(), &field(".content"), role == "assistant", parts)?;
        }
    } else {
        let id = m
            .tool_call_id
            .as_deref()
            .ok_or_else(|| invalid(&format!("{}: a tool message needs \"tool_call_id\"", field(""))))?;
        let name = calls.get(id).ok_or_else(|| {
            invalid(&format!(
                "{}.tool_call_id \"{}\" matches no earlier assistant tool call",
                field(""),
                truncated(id, 64)
            ))
        })?;
        let text = match m.content {
            Some(content) => tool_text(content.get(), &field(".content"))?,
            None => Cow::Borrowed(""),
        };
        let mut part = String::with_capacity(text.len() + name.len() + 64);
        part.push_str("{\"functionResponse\":{\"name\":");
        push_json_str(&mut part, name);
        part.push_str(",\"response\":{\"output\":");
        push_json_str(&mut part, &text);
        part.push_str("}}}");
        parts.push(part);
    }
    if role == "assistant" {
        for (j, call) in m.tool_calls.iter().flatten().enumerate() {
            let at = field(&format!(".tool_calls[{j}]"));
            // Each tool result repeats its call's name: an unbounded name would make the body grow
            // as the name's length times the results (found by the `native_request` fuzz target).
            if call.function.name.len() > MAX_FUNCTION_NAME_BYTES {
                return Err(invalid(&format!(
                    "{at}.function.name: at most {MAX_FUNCTION_NAME_BYTES} characters"
                )));
            }
            parts.push(function_call(call, &at)?);
            calls.insert(call.id.clone().into_owned(), call.function.name.clone().into_owned());
        }
    }
    Ok(())
}

/// A tool call as a `functionCall` part.
fn function_call(call: &InToolCall<'_>, field: &str) -> Result<String, ApiError> {
    let args = arguments(call, field)?;
    let mut out = String::with_capacity(args.len() + 64);
    out.push_str("{\"functionCall\":{\"name\":");
    push_json_str(&mut out, &call.function.name);
    out.push_str(",\"args\":");
    out.push_str(args);
    out.push_str("}}");
    Ok(out)
}

/// A tool message's content as one text: a string as it is, text parts joined, null empty.
fn tool_text<'a>(raw: &'a str, field: &str) -> Result<Cow<'a, str>, ApiError> {
    let raw = raw.trim();
    if raw.starts_with('"') {
        return serde_json::from_str(raw).map_err(|e| invalid(&format!("{field}: {e}")));
    }
    if raw == "null" {
        return Ok(Cow::Borrowed(""));
    }
    if !raw.starts_with('[') {
        return Err(invalid(&format!("{field} must be a string, an array of text parts or null")));
    }
    let mut text = String::new();
    for (j, element) in array_elements(raw).enumerate() {
        let part: InPart<'_, InAudio<'_>> =
            serde_json::from_str(element).map_err(|e| invalid(&format!("{field}[{j}]: {e}")))?;
        match (part.kind.as_ref(), part.text) {
            ("text", Some(t)) => text.push_str(&t),
            _ => {
                return Err(invalid(&format!(
                    "{field}[{j}]: a tool result may hold only text parts for this provider"
                )))
            }
        }
    }
    Ok(Cow::Owned(text))
}

/// A message's `content` (a string, an array of parts, or null) as parts.
fn content_parts(raw: &str, field: &str, assistant: bool, out: &mut Vec<String>) -> Result<(), ApiError> {
    let raw = raw.trim();
    if raw.starts_with('"') {
        let text: Cow<'_, str> = serde_json::from_str(raw).map_err(|e| invalid(&format!("{field}: {e}")))?;
        if !text.is_empty() {
            out.push(text_part(&text));
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
        let part: InPart<'_, InAudio<'_>> =
            serde_json::from_str(element).map_err(|e| invalid(&format!("{field}: {e}")))?;
        let part = match part.kind.as_ref() {
            "text" => match part.text.as_deref() {
                Some("") => continue,
                Some(t) => text_part(t),
                None => return Err(invalid(&format!("{field}.text is required"))),
            },
            // An assistant's refusal is not resent (Gemini has no such part).
            "refusal" if assistant => continue,
            "image_url" => {
                let url = part.image_url.ok_or_else(|| invalid(&format!("{field}.image_url is required")))?;
                inline_data(&url.url, &format!("{field}.image_url.url"), true)?
            }
            "file" => {
                let data = part.file.and_then(|f| f.file_data).ok_or_else(|| {
                    invalid(&format!("{field}.file.file_data (a base64 data URL) is required"))
                })?;
                inline_data(&data, &format!("{field}.file.file_data"), false)?
            }
            "input_audio" => {
                let audio =
                    part.input_audio.ok_or_else(|| invalid(&format!("{field}.input_audio is required")))?;
                let format = audio.format.to_ascii_lowercase();
                if format.is_empty() || !format.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return Err(invalid(&format!("{field}.input_audio.format must be an audio format name")));
                }
                let mut p = String::with_capacity(audio.data.len() + 64);
                p.push_str("{\"inlineData\":{\"mimeType\":\"audio/");
                p.push_str(&format);
                p.push_str("\",\"data\":");
                push_json_str(&mut p, &audio.data);
                p.push_str("}}");
                p
            }
            other => {
                return Err(invalid(&format!(
                    "{field}.type \"{}\" is not supported by this provider",
                    truncated(other, 40)
                )))
            }
        };
        out.push(part);
    }
    Ok(())
}

/// A text part.
fn text_part(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 16);
    p.push_str("{\"text\":");
    push_json_str(&mut p, text);
    p.push('}');
    p
}

/// An `inlineData` part for a base64 data URL, the data sliced out as it is; `image`: only `image/*`
/// media types. Any other URL is refused: Gemini reads only inline data or its own uploaded files.
fn inline_data(url: &str, field: &str, image: bool) -> Result<String, ApiError> {
    let Some((media, data)) = data_url(url, field)? else {
        if matches!(scheme(url).as_deref(), Some("http" | "https")) {
            return Err(invalid(&format!(
                "{field}: http(s) URLs are not supported by this provider (it reads only files uploaded to it); send the data as a base64 data URL"
            )));
        }
        return Err(invalid(&format!("{field} must be a base64 data URL")));
    };
    let valid = media.split_once('/').is_some_and(|(t, s)| !t.is_empty() && !s.is_empty());
    if !valid || (image && !media.starts_with("image/")) {
        return Err(invalid(&format!(
            "{field}: media type \"{}\" is not supported{}",
            truncated(&media, 60),
            if image { " (an image/* type is needed)" } else { "" }
        )));
    }
    let mut p = String::with_capacity(data.len() + media.len() + 48);
    p.push_str("{\"inlineData\":{\"mimeType\":");
    push_json_str(&mut p, &media);
    p.push_str(",\"data\":");
    push_json_str(&mut p, data);
    p.push_str("}}");
    Ok(p)
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
