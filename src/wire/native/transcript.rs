//! A chat's `messages` laid out as both native APIs want them: the system text apart, then turns that
//! alternate between the user's side and the assistant's (consecutive messages of one side merged into
//! one turn), a user turn's tool results before its other parts. Each API translates a message's content
//! into its own parts ([`read`]'s `translate`); how they are filed is the same.

use super::request_reader::{invalid, InMessage};
use crate::wire::chat_request::ChatRequest;
use crate::wire::error::ApiError;
use crate::wire::json::array_elements;
use crate::wire::text::truncated;

/// One turn being built: its parts as JSON text, comma-separated.
#[derive(Default)]
pub struct Turn {
    /// The assistant's side (else the user's).
    pub assistant: bool,
    /// Tool results (user turns): they open the turn, answering the calls before it.
    results: String,
    /// Every other part.
    parts: String,
}

/// The translated conversation.
#[derive(Default)]
pub struct Transcript {
    /// The system and developer messages' parts, comma-separated, in order.
    pub system: String,
    /// The turns, in order.
    pub turns: Vec<Turn>,
}

/// Reads `req`'s `messages`: `translate` writes each message's parts (given its index, the message,
/// whose role is one of system, developer, user, assistant, tool); `text_part` is how the API's text
/// parts begin (a system message may hold only those). A 400 naming the message for anything else, and
/// for a conversation with no user or assistant content.
pub fn read<'a>(
    req: &ChatRequest<'a>,
    text_part: &str,
    mut translate: impl FnMut(usize, InMessage<'a>, &mut Vec<String>) -> Result<(), ApiError>,
) -> Result<Transcript, ApiError> {
    let messages = req.get("messages").unwrap_or("null");
    if !messages.trim_start().starts_with('[') {
        return Err(invalid("\"messages\" must be an array"));
    }
    let mut transcript = Transcript::default();
    for (i, raw) in array_elements(messages).enumerate() {
        let m: InMessage<'a> =
            serde_json::from_str(raw).map_err(|e| invalid(&format!("messages[{i}]: {e}")))?;
        let role = m.role.clone();
        if !matches!(role.as_ref(), "system" | "developer" | "user" | "assistant" | "tool") {
            return Err(invalid(&format!(
                "messages[{i}].role \"{}\" is not supported (system, developer, user, assistant, tool)",
                truncated(&role, 40)
            )));
        }
        let mut parts = Vec::new();
        translate(i, m, &mut parts)?;
        transcript.file(i, &role, parts, text_part)?;
    }
    if transcript.turns.is_empty() {
        return Err(invalid("\"messages\" must contain a user or assistant message with content"));
    }
    Ok(transcript)
}

impl Transcript {
    /// Files message `i`'s parts: a system or developer message's into `system` (text only), a tool
    /// message's among its user turn's results, any other's among its turn's parts.
    fn file(&mut self, i: usize, role: &str, parts: Vec<String>, text_part: &str) -> Result<(), ApiError> {
        if parts.is_empty() {
            return Ok(());
        }
        if role == "system" || role == "developer" {
            if parts.iter().any(|p| !p.starts_with(text_part)) {
                return Err(invalid(&format!("messages[{i}].content: system messages may hold only text")));
            }
            for p in parts {
                push_listed(&mut self.system, &p);
            }
            return Ok(());
        }
        let assistant = role == "assistant";
        if self.turns.last().is_none_or(|t| t.assistant != assistant) {
            self.turns.push(Turn { assistant, ..Turn::default() });
        }
        if let Some(turn) = self.turns.last_mut() {
            let target = if role == "tool" { &mut turn.results } else { &mut turn.parts };
            for p in parts {
                push_listed(target, &p);
            }
        }
        Ok(())
    }

    /// Appends the turns as a JSON array's members, each opened by `assistant_open` or `user_open` (the
    /// turn object up to its parts' `[`).
    pub fn push_turns(&self, out: &mut String, assistant_open: &str, user_open: &str) {
        for (i, turn) in self.turns.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(if turn.assistant { assistant_open } else { user_open });
            out.push_str(&turn.results);
            if !turn.results.is_empty() && !turn.parts.is_empty() {
                out.push(',');
            }
            out.push_str(&turn.parts);
            out.push_str("]}");
        }
    }
}

/// Appends `item` to a comma-separated list.
fn push_listed(list: &mut String, item: &str) {
    if !list.is_empty() {
        list.push(',');
    }
    list.push_str(item);
}
