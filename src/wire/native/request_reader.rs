//! The OpenAI chat request as every native translation reads it: the top-level parameters with their
//! checks (`n`, `max_tokens`, the sampling ranges, `stop`, `reasoning`), `tools` and `tool_choice`, and
//! the shapes of messages, content parts, data URLs and tool call arguments, each refused with the same
//! 400 whichever API the request goes to. What is read is handed back as the client's text (`&str`,
//! `&RawValue`, a number's own spelling): each API's `request` module writes only its own JSON.

use crate::wire::chat_request::ChatRequest;
use crate::wire::error::ApiError;
use crate::wire::json::array_elements;
use crate::wire::text::truncated;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// A 400 with `message`.
pub fn invalid(message: &str) -> ApiError {
    ApiError::InvalidRequest(message.to_string())
}

// ---------------------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------------------

/// A top-level member of type `T`; null or absent is `None`; another type is a 400 naming it.
pub fn opt<T: serde::de::DeserializeOwned>(req: &ChatRequest<'_>, key: &str) -> Result<Option<T>, ApiError> {
    match req.get(key) {
        None => Ok(None),
        Some(raw) => serde_json::from_str::<Option<T>>(raw)
            .map_err(|_| invalid(&format!("\"{key}\" has the wrong type for this provider"))),
    }
}

/// A top-level number within `min..=max`: its raw JSON text (passed on as the client spelled it) and
/// its value; null or absent is `None`.
pub fn ranged<'a>(
    req: &ChatRequest<'a>,
    key: &str,
    min: f64,
    max: f64,
) -> Result<Option<(&'a str, f64)>, ApiError> {
    match (opt::<f64>(req, key)?, req.get(key)) {
        (Some(v), _) if !(min..=max).contains(&v) => {
            Err(invalid(&format!("\"{key}\" must be between {min} and {max}")))
        }
        (Some(v), Some(raw)) => Ok(Some((raw.trim(), v))),
        _ => Ok(None),
    }
}

/// Refuses `n` > 1: one choice is all a native API is asked for (as OpenRouter does for such providers).
pub fn single_choice(req: &ChatRequest<'_>) -> Result<(), ApiError> {
    match opt::<u64>(req, "n")? {
        Some(n) if n > 1 => Err(invalid("\"n\" greater than 1 is not supported by this provider")),
        _ => Ok(()),
    }
}

/// `max_completion_tokens`, else `max_tokens`, else `default` (at least 1); 0 is refused.
pub fn max_tokens(req: &ChatRequest<'_>, default: u64) -> Result<u64, ApiError> {
    match (opt::<u64>(req, "max_completion_tokens")?, opt::<u64>(req, "max_tokens")?) {
        (Some(0), _) => Err(invalid("\"max_completion_tokens\" must be a positive integer")),
        (Some(n), _) => Ok(n),
        (None, Some(0)) => Err(invalid("\"max_tokens\" must be a positive integer")),
        (None, Some(n)) => Ok(n),
        (None, None) => Ok(default.max(1)),
    }
}

/// `top_k`; 0 (no limit) is `None`, as the APIs have no way to say it but to omit it.
pub fn top_k(req: &ChatRequest<'_>) -> Result<Option<u64>, ApiError> {
    Ok(opt::<u64>(req, "top_k")?.filter(|k| *k > 0))
}

/// `stop`: a string or an array of strings, empty ones left out (they would stop nothing).
pub fn stop(req: &ChatRequest<'_>) -> Result<Vec<String>, ApiError> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stop {
        One(String),
        Many(Vec<String>),
    }
    let stop = match req.get("stop") {
        None => Vec::new(),
        Some(raw) => match serde_json::from_str::<Option<Stop>>(raw) {
            Ok(None) => Vec::new(),
            Ok(Some(Stop::One(s))) => vec![s],
            Ok(Some(Stop::Many(v))) => v,
            Err(_) => return Err(invalid("\"stop\" must be a string or an array of strings")),
        },
    };
    Ok(stop.into_iter().filter(|s| !s.is_empty()).collect())
}

/// `response_format` asking for JSON: `json_object` (no schema), or `json_schema` with its schema
/// (raw); `text` and other types ask for nothing.
pub enum JsonFormat<'a> {
    /// `json_object`.
    Object,
    /// `json_schema`: the schema's JSON text.
    Schema(&'a str),
}

/// `response_format`, when it asks for JSON.
pub fn response_format<'a>(req: &ChatRequest<'a>) -> Result<Option<JsonFormat<'a>>, ApiError> {
    #[derive(Deserialize)]
    struct Format<'a> {
        #[serde(rename = "type", borrow)]
        kind: Cow<'a, str>,
        #[serde(borrow, default)]
        json_schema: Option<JsonSchema<'a>>,
    }
    #[derive(Deserialize)]
    struct JsonSchema<'a> {
        #[serde(borrow, default)]
        schema: Option<&'a RawValue>,
    }
    let Some(raw) = req.get("response_format") else { return Ok(None) };
    let format: Option<Format<'a>> = serde_json::from_str(raw)
        .map_err(|_| invalid("\"response_format\" must be an object with a \"type\""))?;
    match format {
        Some(f) if f.kind == "json_schema" => match f.json_schema.and_then(|j| j.schema) {
            Some(schema) if schema.get().starts_with('{') => Ok(Some(JsonFormat::Schema(schema.get()))),
            _ => Err(invalid("\"response_format.json_schema.schema\" must be a JSON schema object")),
        },
        Some(f) if f.kind == "json_object" => Ok(Some(JsonFormat::Object)),
        _ => Ok(None),
    }
}

/// The share of the completion budget (`max_tokens`) an OpenRouter reasoning effort gives to thinking:
/// max 0.95, xhigh 0.9, high 0.8, medium 0.5, low 0.2, minimal 0.1, as OpenRouter documents; `None` for
/// any other word (`none` included: it asks for no thinking, which callers check first).
pub fn effort_share(effort: &str) -> Option<f64> {
    match effort {
        "max" => Some(0.95),
        "xhigh" => Some(0.9),
        "high" => Some(0.8),
        "medium" => Some(0.5),
        "low" => Some(0.2),
        "minimal" => Some(0.1),
        _ => None,
    }
}

/// What `reasoning` / `reasoning_effort` ask for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Thinking {
    /// Nothing: the model's own default.
    Unset,
    /// No thinking (effort `none` or `enabled: false`).
    Off,
    /// `reasoning.max_tokens`, as given.
    Tokens(u64),
    /// An effort's share of `max_tokens` ([`effort_share`]; `enabled: true` alone is medium's).
    Share(f64),
}

impl Thinking {
    /// The budget of a [`Thinking::Share`] of `max_tokens`, within `min..=max`.
    pub fn share_budget(share: f64, max_tokens: u64, min: u64, max: u64) -> u64 {
        ((max_tokens as f64 * share) as u64).clamp(min, max)
    }
}

/// `reasoning` / `reasoning_effort` read and checked, and whether the thoughts are to be shown
/// (`reasoning.exclude` not true). With `exclude`, a `reasoning.exclude` that is not a boolean is
/// refused (for an API that can hide the thoughts); without, it is not read.
pub fn reasoning(req: &ChatRequest<'_>, exclude: bool) -> Result<(Thinking, bool), ApiError> {
    #[derive(Deserialize, Default)]
    struct Reasoning<'a> {
        #[serde(default)]
        effort: Option<String>,
        #[serde(default)]
        max_tokens: Option<u64>,
        #[serde(default)]
        enabled: Option<bool>,
        #[serde(borrow, default)]
        exclude: Option<&'a RawValue>,
    }
    let malformed = || invalid("\"reasoning\" must be an object (effort, max_tokens, enabled, exclude)");
    let reasoning = match req.get("reasoning") {
        None => Reasoning::default(),
        Some(raw) => {
            serde_json::from_str::<Option<Reasoning<'_>>>(raw).map_err(|_| malformed())?.unwrap_or_default()
        }
    };
    let excluded = match reasoning.exclude.filter(|_| exclude) {
        Some(raw) => serde_json::from_str::<Option<bool>>(raw.get()).map_err(|_| malformed())?,
        None => None,
    };
    let shorthand = opt::<String>(req, "reasoning_effort")?;
    let effort = match (reasoning.effort, shorthand) {
        (Some(a), Some(b)) if a != b => {
            return Err(invalid("\"reasoning_effort\" and \"reasoning.effort\" differ"));
        }
        (a, b) => a.or(b),
    };
    let include = excluded != Some(true);
    if reasoning.enabled == Some(false) || effort.as_deref() == Some("none") {
        return Ok((Thinking::Off, include));
    }
    if let Some(budget) = reasoning.max_tokens {
        return Ok((Thinking::Tokens(budget), include));
    }
    let thinking = match effort.as_deref() {
        Some(e) => Thinking::Share(effort_share(e).ok_or_else(|| {
            invalid(&format!(
                "\"reasoning_effort\" must be none, minimal, low, medium, high, xhigh or max (got \"{}\")",
                truncated(e, 40)
            ))
        })?),
        None if reasoning.enabled == Some(true) => Thinking::Share(0.5),
        None => Thinking::Unset,
    };
    Ok((thinking, include))
}

// ---------------------------------------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------------------------------------

/// A function tool of `tools`, checked.
pub struct FunctionTool<'a> {
    /// `function.name`.
    pub name: Cow<'a, str>,
    /// `function.description`, when not empty.
    pub description: Option<Cow<'a, str>>,
    /// `function.parameters`: a JSON schema object's text; `None` when absent or null.
    pub parameters: Option<&'a str>,
    /// The tool's `cache_control`, raw (Anthropic's extension).
    pub cache_control: Option<&'a RawValue>,
}

/// `tools`: function tools only; null, absent or `[]` is none.
pub fn tools<'a>(req: &ChatRequest<'a>) -> Result<Vec<FunctionTool<'a>>, ApiError> {
    #[derive(Deserialize)]
    struct Tool<'a> {
        #[serde(rename = "type", borrow)]
        kind: Cow<'a, str>,
        #[serde(borrow, default)]
        function: Option<Function<'a>>,
        #[serde(borrow, default)]
        cache_control: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct Function<'a> {
        #[serde(borrow)]
        name: Cow<'a, str>,
        #[serde(borrow, default)]
        description: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        parameters: Option<&'a RawValue>,
    }
    let Some(raw) = req.get("tools").filter(|raw| raw.trim() != "null") else { return Ok(Vec::new()) };
    if !raw.trim_start().starts_with('[') {
        return Err(invalid("\"tools\" must be an array"));
    }
    let mut out = Vec::new();
    for (i, element) in array_elements(raw).enumerate() {
        let tool: Tool<'a> =
            serde_json::from_str(element).map_err(|e| invalid(&format!("tools[{i}]: {e}")))?;
        let function = match (tool.kind.as_ref(), tool.function) {
            ("function", Some(f)) => f,
            _ => {
                return Err(invalid(&format!(
                    "tools[{i}]: only function tools are supported by this provider"
                )))
            }
        };
        let parameters = match function.parameters.map(RawValue::get).filter(|p| *p != "null") {
            Some(p) if p.starts_with('{') => Some(p),
            Some(_) => {
                return Err(invalid(&format!("tools[{i}].function.parameters must be a JSON schema object")))
            }
            None => None,
        };
        out.push(FunctionTool {
            name: function.name,
            description: function.description.filter(|d| !d.is_empty()),
            parameters,
            cache_control: tool.cache_control,
        });
    }
    Ok(out)
}

/// `tool_choice`.
#[derive(Debug, PartialEq, Eq)]
pub enum ToolChoice {
    /// `auto`.
    Auto,
    /// `required`: any tool.
    Required,
    /// `none`.
    None,
    /// The function named.
    Named(String),
    /// Another word: refused ([`unknown_tool_choice`]) when there are tools to choose from, as it is
    /// meaningless without them.
    Unknown,
}

/// The 400 for [`ToolChoice::Unknown`].
pub fn unknown_tool_choice() -> ApiError {
    invalid("\"tool_choice\" must be \"auto\", \"required\", \"none\" or a named function")
}

/// `tool_choice`; null or absent is `None`.
pub fn tool_choice(req: &ChatRequest<'_>) -> Result<Option<ToolChoice>, ApiError> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Choice {
        Mode(String),
        Named { function: Named },
    }
    #[derive(Deserialize)]
    struct Named {
        name: String,
    }
    let Some(raw) = req.get("tool_choice") else { return Ok(None) };
    let choice = serde_json::from_str::<Option<Choice>>(raw).map_err(|_| {
        invalid("\"tool_choice\" must be \"auto\", \"required\", \"none\" or {\"type\":\"function\",\"function\":{\"name\":…}}")
    })?;
    Ok(choice.map(|c| match c {
        Choice::Mode(m) => match m.as_str() {
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            "none" => ToolChoice::None,
            _ => ToolChoice::Unknown,
        },
        Choice::Named { function } => ToolChoice::Named(function.name),
    }))
}

// ---------------------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------------------

/// A message of `messages`, the members translated.
#[derive(Deserialize)]
pub struct InMessage<'a> {
    /// `role`.
    #[serde(borrow)]
    pub role: Cow<'a, str>,
    /// `content` (a string, an array of parts, or null), raw.
    #[serde(borrow, default)]
    pub content: Option<&'a RawValue>,
    /// An assistant's `tool_calls`.
    #[serde(borrow, default)]
    pub tool_calls: Option<Vec<InToolCall<'a>>>,
    /// A tool message's `tool_call_id`.
    #[serde(borrow, default)]
    pub tool_call_id: Option<Cow<'a, str>>,
    /// The message's `cache_control`, raw (Anthropic's extension).
    #[serde(borrow, default)]
    pub cache_control: Option<&'a RawValue>,
}

/// One of an assistant's `tool_calls`.
#[derive(Deserialize)]
pub struct InToolCall<'a> {
    /// `id`.
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// `function`.
    #[serde(borrow)]
    pub function: InFunction<'a>,
}

/// A tool call's `function`.
#[derive(Deserialize)]
pub struct InFunction<'a> {
    /// `name`.
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    /// `arguments`: JSON text in a string ([`arguments`] checks it).
    #[serde(borrow, default)]
    pub arguments: Option<Cow<'a, str>>,
}

/// A content part; `A` is what `input_audio` is read as (`IgnoredAny` for an API that refuses audio
/// by the part's type, so that the member is not checked).
// The bound replaces the `A: Default` serde would ask for (for `input_audio`, whose default is `None`).
#[derive(Deserialize)]
#[serde(bound(deserialize = "A: Deserialize<'de>"))]
pub struct InPart<'a, A = serde::de::IgnoredAny> {
    /// `type`.
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// A text part's `text`.
    #[serde(borrow, default)]
    pub text: Option<Cow<'a, str>>,
    /// An image part's `image_url`.
    #[serde(borrow, default)]
    pub image_url: Option<InImageUrl<'a>>,
    /// A file part's `file`.
    #[serde(borrow, default)]
    pub file: Option<InFile<'a>>,
    /// An audio part's `input_audio`.
    #[serde(default)]
    pub input_audio: Option<A>,
    /// The part's `cache_control`, raw (Anthropic's extension).
    #[serde(borrow, default)]
    pub cache_control: Option<&'a RawValue>,
}

/// An image part's `image_url`.
#[derive(Deserialize)]
pub struct InImageUrl<'a> {
    /// A data URL or an http(s) URL.
    #[serde(borrow)]
    pub url: Cow<'a, str>,
}

/// A file part's `file`.
#[derive(Deserialize)]
pub struct InFile<'a> {
    /// The file as a data URL.
    #[serde(borrow, default)]
    pub file_data: Option<Cow<'a, str>>,
}

/// An audio part's `input_audio`.
#[derive(Deserialize)]
pub struct InAudio<'a> {
    /// The audio, base64.
    #[serde(borrow)]
    pub data: Cow<'a, str>,
    /// Its format (`wav`, `mp3`, …).
    #[serde(borrow)]
    pub format: Cow<'a, str>,
}

/// A tool call's `arguments` as the JSON object text to pass on: `""` or absent is `{}`; anything but
/// a JSON object is a 400 (`field` names the call).
pub fn arguments<'a>(call: &'a InToolCall<'_>, field: &str) -> Result<&'a str, ApiError> {
    let args = call.function.arguments.as_deref().map(str::trim).unwrap_or("");
    if args.is_empty() {
        return Ok("{}");
    }
    match serde_json::from_str::<&RawValue>(args) {
        Ok(v) if v.get().starts_with('{') => Ok(v.get()),
        _ => Err(invalid(&format!("{field}.function.arguments must be a JSON object"))),
    }
}

/// A base64 data URL's media type (lowercase, parameters dropped) and data (sliced out as it is, not
/// decoded); `None` when `url` is not a data URL; a data URL without a comma or not base64 is a 400.
pub fn data_url<'u>(url: &'u str, field: &str) -> Result<Option<(String, &'u str)>, ApiError> {
    let Some(rest) = url.strip_prefix("data:") else { return Ok(None) };
    let (meta, data) =
        rest.split_once(',').ok_or_else(|| invalid(&format!("{field}: a data URL needs a comma")))?;
    let media = meta
        .strip_suffix(";base64")
        .ok_or_else(|| invalid(&format!("{field}: only base64 data URLs are supported")))?;
    let media = media.split(';').next().unwrap_or("").to_ascii_lowercase();
    Ok(Some((media, data)))
}

/// The lowercase scheme of a URL (`http`, `https`, …), if it has one.
pub fn scheme(url: &str) -> Option<String> {
    url.split_once("://").map(|(s, _)| s.to_ascii_lowercase())
}
