//! What a request asks of an endpoint, read once from its body: the parameters it uses (for
//! `require_parameters` and the preference for tool support), its completion-token cap, and a bound on
//! its prompt size (for `context_length`).

use crate::wire::chat_request::ChatRequest;
use crate::wire::error::ApiError;

/// The facts the endpoint filters and the ranking need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The parameters of [`CHECKED_PARAMETERS`] the request sets, in that order.
    pub used: Vec<&'static str>,
    /// The completion-token cap it asks for ([`max_tokens`]).
    pub max_tokens: Option<u64>,
    /// Its prompt size in tokens, estimated as body bytes / 4.
    pub body_tokens: u64,
}

impl Facts {
    /// The facts of `req`; a malformed `max_tokens` / `max_completion_tokens` is a 400.
    pub fn of(req: &ChatRequest<'_>) -> Result<Facts, ApiError> {
        Ok(Facts {
            used: used_parameters(req),
            max_tokens: max_tokens(req)?,
            body_tokens: req.body.len() as u64 / 4,
        })
    }
}

/// The request parameters [`used_parameters`] looks for (what `require_parameters` checks).
pub const CHECKED_PARAMETERS: &[&str] = &[
    "tools",
    "tool_choice",
    "response_format",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "top_k",
    "stop",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "reasoning",
    "parallel_tool_calls",
];

/// The parameters of [`CHECKED_PARAMETERS`] the request sets (present and not `null`), in that order.
pub fn used_parameters(req: &ChatRequest<'_>) -> Vec<&'static str> {
    CHECKED_PARAMETERS.iter().copied().filter(|k| req.get(k).is_some_and(|v| v.trim() != "null")).collect()
}

/// The completion-token cap the request asks for: `max_completion_tokens`, else `max_tokens` (both are
/// validated when both are set). Each must be a non-negative integer or `null`.
pub fn max_tokens(req: &ChatRequest<'_>) -> Result<Option<u64>, ApiError> {
    let read = |key: &str| -> Result<Option<u64>, ApiError> {
        match req.get(key) {
            None => Ok(None),
            Some(v) => serde_json::from_str::<Option<u64>>(v)
                .map_err(|_| ApiError::InvalidRequest(format!("{key}: must be a non-negative integer"))),
        }
    };
    let completion = read("max_completion_tokens")?;
    let legacy = read("max_tokens")?;
    Ok(completion.or(legacy))
}

/// Most completions one request may ask for (`n`; OpenAI's own limit).
pub const MAX_CHOICES: u64 = 128;

/// What a request may cost at most, as far as its body says: the larger of its two completion caps (a
/// provider may read either), how many completions it asks for (`n`, validated: 1 to [`MAX_CHOICES`]),
/// and whether the provider adds a prompt of its own (tools or a response format it renders into one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CostFacts {
    /// `max(max_tokens, max_completion_tokens)`, when either is set.
    pub max_tokens: Option<u64>,
    /// `n` (1 when absent or `null`).
    pub choices: u64,
    /// `tools` or `response_format` is set.
    pub provider_prompt: bool,
}

impl CostFacts {
    /// The facts of `req`; a malformed `n` is a 400 (`max_tokens` was checked by routing).
    pub fn of(req: &ChatRequest<'_>) -> Result<CostFacts, ApiError> {
        let read =
            |key: &str| req.get(key).and_then(|v| serde_json::from_str::<Option<u64>>(v).ok().flatten());
        let choices = match req.get("n").map(str::trim) {
            None | Some("null") => 1,
            Some(v) => v.parse::<u64>().ok().filter(|n| (1..=MAX_CHOICES).contains(n)).ok_or_else(|| {
                ApiError::InvalidRequest(format!("n: must be an integer from 1 to {MAX_CHOICES}"))
            })?,
        };
        let used = |key: &str| req.get(key).is_some_and(|v| v.trim() != "null");
        Ok(CostFacts {
            max_tokens: read("max_tokens").max(read("max_completion_tokens")),
            choices,
            provider_prompt: used("tools") || used("response_format"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn chat(body: &str) -> ChatRequest<'_> {
        ChatRequest::parse(body.as_bytes()).unwrap()
    }

    #[test]
    fn cost_facts_take_the_larger_cap_every_choice_and_the_providers_own_prompt() {
        let f = CostFacts::of(&chat(
            r#"{"model":"m","messages":[],"max_completion_tokens":1,"max_tokens":100000,"n":3}"#,
        ))
        .unwrap();
        assert_eq!(f, CostFacts { max_tokens: Some(100_000), choices: 3, provider_prompt: false });
        let f = CostFacts::of(&chat(r#"{"model":"m","messages":[],"n":null,"tools":[]}"#)).unwrap();
        assert_eq!(f, CostFacts { max_tokens: None, choices: 1, provider_prompt: true });
        for bad in ["0", "129", "1.5", "\"2\"", "-1"] {
            let body = format!(r#"{{"model":"m","messages":[],"n":{bad}}}"#);
            assert!(CostFacts::of(&chat(&body)).is_err(), "{bad}");
        }
    }

    #[test]
    fn used_parameters_lists_non_null_ones() {
        let cases: &[(&str, &[&str])] = &[
            (r#"{"model":"m","messages":[]}"#, &[]),
            (
                r#"{"model":"m","messages":[],"temperature":0,"tools":[],"seed":null,"stop":"x","top_k":5,
                   "parallel_tool_calls":false,"reasoning":{"effort":"low"},"user":"u","max_tokens":10}"#,
                &["tools", "max_tokens", "temperature", "top_k", "stop", "reasoning", "parallel_tool_calls"],
            ),
            (
                r#"{"model":"m","messages":[],"tool_choice":"auto","response_format":{"type":"json_object"},
                   "max_completion_tokens":1,"top_p":1,"frequency_penalty":0,"presence_penalty":0,
                   "logit_bias":{},"logprobs":true,"top_logprobs":2}"#,
                &[
                    "tool_choice",
                    "response_format",
                    "max_completion_tokens",
                    "top_p",
                    "frequency_penalty",
                    "presence_penalty",
                    "logit_bias",
                    "logprobs",
                    "top_logprobs",
                ],
            ),
        ];
        for (body, want) in cases {
            assert_eq!(used_parameters(&chat(body)), *want, "{body}");
        }
    }

    #[test]
    fn max_tokens_reads_either_field() {
        let ok = [
            (r#"{"model":"m","messages":[]}"#, None),
            (r#"{"model":"m","messages":[],"max_tokens":100}"#, Some(100)),
            (r#"{"model":"m","messages":[],"max_tokens":null}"#, None),
            (r#"{"model":"m","messages":[],"max_completion_tokens":0}"#, Some(0)),
            (r#"{"model":"m","messages":[],"max_tokens":100,"max_completion_tokens":50}"#, Some(50)),
            (r#"{"model":"m","messages":[],"max_tokens":100,"max_completion_tokens":null}"#, Some(100)),
        ];
        for (body, want) in ok {
            assert_eq!(max_tokens(&chat(body)).unwrap(), want, "{body}");
        }
        let bad = [
            (r#"{"model":"m","messages":[],"max_tokens":-1}"#, "max_tokens:"),
            (r#"{"model":"m","messages":[],"max_tokens":1.5}"#, "max_tokens:"),
            (r#"{"model":"m","messages":[],"max_tokens":"10"}"#, "max_tokens:"),
            (r#"{"model":"m","messages":[],"max_completion_tokens":true}"#, "max_completion_tokens:"),
            (r#"{"model":"m","messages":[],"max_completion_tokens":5,"max_tokens":-5}"#, "max_tokens:"),
        ];
        for (body, field) in bad {
            let e = max_tokens(&chat(body)).unwrap_err();
            assert_eq!(e.status(), 400, "{body}");
            assert!(e.message().starts_with(field), "{body}: {}", e.message());
        }
    }
}
