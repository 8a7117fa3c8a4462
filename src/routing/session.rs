//! The session key: what makes one conversation land on one provider (prompt caching) on every worker and
//! replica, with no shared state. First found: body `session_id`, header `x-session-id`, body
//! `prompt_cache_key`, else a hash of the conversation's opening messages.
//!
//! The digest is XXH3 (xxhash-rust), a published, specified hash: every worker and replica, whatever its
//! build, computes the same session key and the same draws, which is what keeps a conversation on one
//! provider. Not cryptographic, and nothing here needs that: a crafted collision only puts two
//! conversations on the same provider. (SHA-256 in wasm, with no SHA instructions, cost more than the
//! rest of the routing decision.)

use crate::wire::chat_request::ChatRequest;
use crate::wire::error::ApiError;
use crate::wire::json::{array_elements, skip, value_end};
use xxhash_rust::xxh3::{xxh3_128, xxh3_64_with_seed};

/// Longest accepted `session_id` / `x-session-id`, in bytes.
pub const MAX_SESSION_ID: usize = 256;

/// How much of each opening message is hashed.
const OPENING_PREFIX: usize = 4096;

/// A session key: the 128-bit XXH3 of its material, never logged raw (only a hash prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionKey(pub u128);

impl SessionKey {
    /// A short hex prefix (8 digits) for logs and explanations.
    pub fn short(&self) -> String {
        crate::wire::text::hex(&self.0.to_be_bytes()[..4])
    }

    /// The 64-bit seed a draw mixes with each candidate.
    fn seed(&self) -> u64 {
        (self.0 as u64) ^ ((self.0 >> 64) as u64).rotate_left(32)
    }
}

/// Where the session key came from (for explanations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    SessionId,
    Header,
    PromptCacheKey,
    OpeningMessages,
}

impl Source {
    /// Name used in explanations.
    pub fn name(self) -> &'static str {
        match self {
            Source::SessionId => "session_id",
            Source::Header => "x-session-id",
            Source::PromptCacheKey => "prompt_cache_key",
            Source::OpeningMessages => "messages",
        }
    }
}

/// Derives the session key of a request. `key_name` is the client key's name ("" with `auth: none`);
/// the model id is mixed in later, per candidate.
pub fn session_key(
    req: &ChatRequest<'_>,
    header: Option<&[u8]>,
    key_name: &str,
) -> Result<(SessionKey, Source), ApiError> {
    let (source, material): (Source, Vec<u8>) = if let Some(id) = body_string(req, "session_id")? {
        check_len("session_id", id.len())?;
        (Source::SessionId, id.into_bytes())
    } else if let Some(h) = header {
        check_len("x-session-id", h.len())?;
        (Source::Header, h.to_vec())
    } else if let Some(k) = body_string(req, "prompt_cache_key")? {
        (Source::PromptCacheKey, k.into_bytes())
    } else {
        (Source::OpeningMessages, opening_messages(req.get("messages").unwrap_or("[]")))
    };
    // The version tag changes whenever the material does: sessions then reshuffle once, everywhere alike.
    let mut input = Vec::with_capacity(material.len() + key_name.len() + 48);
    input.extend_from_slice(b"llm-router session v4\0");
    input.push(source as u8);
    input.extend_from_slice(&(material.len() as u64).to_le_bytes());
    input.extend_from_slice(&material);
    input.extend_from_slice(key_name.as_bytes());
    Ok((SessionKey(xxh3_128(&input)), source))
}

/// A string member of the body; `null` counts as absent, another type is a 400.
fn body_string(req: &ChatRequest<'_>, field: &str) -> Result<Option<String>, ApiError> {
    match req.get(field) {
        None => Ok(None),
        Some(raw) => serde_json::from_str::<Option<String>>(raw)
            .map_err(|_| ApiError::InvalidRequest(format!("\"{field}\" must be a string"))),
    }
}

fn check_len(field: &str, len: usize) -> Result<(), ApiError> {
    if len > MAX_SESSION_ID {
        return Err(ApiError::InvalidRequest(format!("\"{field}\" must be at most {MAX_SESSION_ID} bytes")));
    }
    Ok(())
}

/// Hash material of the first system/developer message and the first other message: the first 4 KiB of
/// each one's raw JSON, plus their full lengths.
fn opening_messages(messages: &str) -> Vec<u8> {
    let (system, first) = first_messages(messages);
    let mut out = Vec::with_capacity(2 * OPENING_PREFIX + 16);
    for m in [system, first] {
        let m = m.unwrap_or("").as_bytes();
        out.extend_from_slice(&(m.len() as u64).to_le_bytes());
        out.extend_from_slice(m.get(..OPENING_PREFIX).unwrap_or(m));
    }
    out
}

/// The raw JSON of the first system/developer message and of the first other message, scanning only
/// as far as needed: the body was validated when its top level was split, so the array's elements are
/// found by tracking strings and nesting alone, and the messages after these two are never read.
fn first_messages(messages: &str) -> (Option<&str>, Option<&str>) {
    let (mut system, mut first) = (None, None);
    for m in array_elements(messages) {
        match role(m).as_deref() {
            Some("system") | Some("developer") => system = system.or(Some(m)),
            _ => first = first.or(Some(m)),
        }
        if system.is_some() && first.is_some() {
            break;
        }
    }
    (system, first)
}

/// The `role` of a message (valid JSON text), read without parsing the rest of it: members are walked
/// structurally up to `role`, which chat clients put first.
fn role(message: &str) -> Option<std::borrow::Cow<'_, str>> {
    let bytes = message.as_bytes();
    let mut at = message.len() - message.trim_start().len();
    if bytes.get(at) != Some(&b'{') {
        return None;
    }
    at += 1;
    loop {
        at = skip(bytes, at, b',');
        if bytes.get(at) != Some(&b'"') {
            return None; // `}`: no role
        }
        let key_end = value_end(bytes, at);
        let key = message.get(at..key_end)?;
        at = key_end;
        at = skip(bytes, at, b':');
        let end = value_end(bytes, at);
        let value = message.get(at..end)?.trim_end();
        at = end;
        if key == "\"role\"" || (key.contains('\\') && serde_json::from_str::<String>(key).ok()? == "role") {
            return serde_json::from_str::<Option<std::borrow::Cow<'_, str>>>(value).ok()?;
        }
    }
}

/// A uniform draw in (0, 1) for one candidate: XXH3 of the candidate's `draw_key` (provider slug and model
/// id, see `ModelEndpoint::draw_key`) seeded by the session, so neither catalog positions nor other
/// candidates affect it (editing the catalog moves no other session).
pub fn uniform(seed: &SessionKey, draw_key: &[u8]) -> f64 {
    let x = xxh3_64_with_seed(draw_key, seed.seed());
    // 53 random bits, centred in their interval: never 0 or 1.
    ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// Per-request entropy for a draw that is not sticky, from `x-request-id` (and the session key, so two
/// requests without an id still differ by conversation).
pub fn request_seed(request_id: &[u8], session: &SessionKey) -> SessionKey {
    let mut input = Vec::with_capacity(request_id.len() + 40);
    input.extend_from_slice(b"llm-router request v3\0");
    input.extend_from_slice(request_id);
    input.extend_from_slice(&session.0.to_le_bytes());
    SessionKey(xxh3_128(&input))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn key(body: &str, header: Option<&str>, name: &str) -> Result<(SessionKey, Source), ApiError> {
        let req = ChatRequest::parse(body.as_bytes()).unwrap();
        session_key(&req, header.map(str::as_bytes), name)
    }

    #[test]
    fn roles_are_read_like_serde_reads_them() {
        for (m, want) in [
            (r#"{"role":"system","content":"x"}"#, Some("system")),
            (r#" { "content" : {"role":"nested"} , "role" : "developer" } "#, Some("developer")),
            (r#"{"content":"a \"role\": \"system\"","role":"user"}"#, Some("user")),
            (r#"{"\u0072ole":"system"}"#, Some("system")),
            (r#"{"role":"sys\u0074em"}"#, Some("system")),
            (r#"{"we\nird":"system","role":"user"}"#, Some("user")),
            (r#"{"role":null}"#, None),
            (r#"{"content":"x"}"#, None),
            (r#"{}"#, None),
            (r#"["role","system"]"#, None),
            (r#"3"#, None),
        ] {
            assert_eq!(role(m).as_deref(), want, "{m}");
        }
    }

    #[test]
    fn the_digest_is_xxh3_and_session_keys_are_fixed() {
        // XXH3's published values for empty input: this is the specified hash, not a look-alike.
        assert_eq!(xxhash_rust::xxh3::xxh3_64(b""), 0x2d06_8005_38d3_94c2);
        assert_eq!(xxh3_128(b""), 0x99aa_06d3_0147_98d8_6001_c324_468d_497f);
        // Golden values: every replica (and the wasm32 build of this test) must compute the same key and
        // the same draw; a change here reshuffles every sticky session (say so in the README).
        let body =
            r#"{"model":"m","messages":[{"role":"system","content":"S"},{"role":"user","content":"U"}]}"#;
        let (k, source) = key(body, None, "team-a").unwrap();
        assert_eq!((format!("{:032x}", k.0), source), (GOLDEN_KEY.to_string(), Source::OpeningMessages));
        assert_eq!(k.short(), &GOLDEN_KEY[..8]);
        assert_eq!(uniform(&k, b"alpha\0meta/llama").to_bits(), GOLDEN_DRAW);
    }
    const GOLDEN_KEY: &str = "607c5111984d5cd149ab6237952ee0eb";
    const GOLDEN_DRAW: u64 = 4_606_401_691_765_889_992;

    #[test]
    fn sources_in_order_of_precedence() {
        let b = r#"{"model":"m","session_id":"s1","prompt_cache_key":"p","messages":[]}"#;
        assert_eq!(key(b, Some("h"), "k").unwrap().1, Source::SessionId);
        let b = r#"{"model":"m","prompt_cache_key":"p","messages":[]}"#;
        assert_eq!(key(b, Some("h"), "k").unwrap().1, Source::Header);
        assert_eq!(key(b, None, "k").unwrap().1, Source::PromptCacheKey);
        let b = r#"{"model":"m","session_id":null,"messages":[]}"#;
        assert_eq!(key(b, None, "k").unwrap().1, Source::OpeningMessages);
    }

    #[test]
    fn too_long_or_mistyped_ids_are_400() {
        let long = "x".repeat(257);
        let b = format!(r#"{{"model":"m","session_id":"{long}","messages":[]}}"#);
        assert_eq!(key(&b, None, "k").unwrap_err().status(), 400);
        assert_eq!(key(r#"{"model":"m","messages":[]}"#, Some(&long), "k").unwrap_err().status(), 400);
        assert_eq!(
            key(r#"{"model":"m","session_id":5,"messages":[]}"#, None, "k").unwrap_err().status(),
            400
        );
        let ok = "x".repeat(256);
        assert!(key(r#"{"model":"m","messages":[]}"#, Some(&ok), "k").is_ok());
    }

    #[test]
    fn opening_messages_decide_and_later_turns_do_not() {
        let one =
            r#"{"model":"m","messages":[{"role":"system","content":"S"},{"role":"user","content":"U"}]}"#;
        let two = r#"{"model":"m","messages":[{"role":"system","content":"S"},{"role":"user","content":"U"},
            {"role":"assistant","content":"A"},{"role":"user","content":"more"}]}"#;
        let other =
            r#"{"model":"m","messages":[{"role":"system","content":"S"},{"role":"user","content":"V"}]}"#;
        assert_eq!(key(one, None, "k").unwrap(), key(two, None, "k").unwrap());
        assert_ne!(key(one, None, "k").unwrap().0, key(other, None, "k").unwrap().0);
        // The client key is part of the session: two tenants never share one.
        assert_ne!(key(one, None, "k").unwrap().0, key(one, None, "j").unwrap().0);
        // Developer counts as system; the first non-system message may come first.
        let dev =
            r#"{"model":"m","messages":[{"role":"user","content":"U"},{"role":"developer","content":"S"}]}"#;
        assert_eq!(
            first_messages(&dev[dev.find('[').unwrap()..dev.len() - 1]).0,
            Some(r#"{"role":"developer","content":"S"}"#)
        );
    }

    #[test]
    fn only_the_first_4k_of_an_opening_message_is_hashed() {
        let a =
            format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{}A"}}]}}"#, "x".repeat(5000));
        let b =
            format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{}B"}}]}}"#, "x".repeat(5000));
        // Same prefix and length: same session (the length is hashed, the tail is not).
        assert_eq!(key(&a, None, "k").unwrap().0, key(&b, None, "k").unwrap().0);
    }

    #[test]
    fn uniform_is_in_the_open_interval_and_spread() {
        let seed = SessionKey(7);
        let mut sum = 0.0;
        for i in 0..1000 {
            let u = uniform(&seed, format!("p{i}\0m").as_bytes());
            assert!(u > 0.0 && u < 1.0);
            sum += u;
        }
        assert!((sum / 1000.0 - 0.5).abs() < 0.05);
    }
}
