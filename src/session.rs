//! The session key: what makes one conversation land on one provider (prompt caching) on every worker and
//! replica, with no shared state. First found: body `session_id`, header `x-session-id`, body
//! `prompt_cache_key`, else a hash of the conversation's opening messages.

use crate::error::ApiError;
use crate::request::ChatRequest;

/// Longest accepted `session_id` / `x-session-id`, in bytes.
pub const MAX_SESSION_ID: usize = 256;

/// How much of each opening message is hashed.
const OPENING_PREFIX: usize = 4096;

/// A session key: 32 bytes, never logged raw (only a hash prefix, for explanations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionKey(pub [u8; 32]);

impl SessionKey {
    /// A short hex prefix for logs and explanations.
    pub fn short(&self) -> String {
        crate::text::hex(&self.0[..4])
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
    // SHA-256 in wasm (no SHA instructions) cost more than the rest of the routing decision; the key
    // only has to spread sessions evenly and identically on every replica (see `fast_digest`).
    let mut input = Vec::with_capacity(material.len() + key_name.len() + 32);
    input.extend_from_slice(b"llm-router session v3\0");
    input.push(source as u8);
    input.extend_from_slice(&(material.len() as u64).to_le_bytes());
    input.extend_from_slice(&material);
    input.extend_from_slice(key_name.as_bytes());
    Ok((SessionKey(expand(fast_digest(&input))), source))
}

/// 32 well-mixed bytes from a 128-bit digest: the digest, then two fmix64 of its words crossed.
fn expand(d: [u8; 16]) -> [u8; 32] {
    let (mut w0, mut w1) = ([0u8; 8], [0u8; 8]);
    w0.copy_from_slice(&d[..8]);
    w1.copy_from_slice(&d[8..]);
    let (a, b) = (u64::from_le_bytes(w0), u64::from_le_bytes(w1));
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(&d);
    out[16..24].copy_from_slice(&fmix64(a ^ b.rotate_left(7) ^ 0x243f_6a88_85a3_08d3).to_le_bytes());
    out[24..].copy_from_slice(&fmix64(b ^ a.rotate_left(13) ^ 0x1319_8a2e_0370_7344).to_le_bytes());
    out
}

/// A fast 128-bit digest: two multiply-rotate lanes over little-endian 8-byte words, each finished with
/// murmur3's fmix64. Not cryptographic (nothing here needs that: a crafted collision only puts two
/// conversations on the same provider), but deterministic everywhere and well spread.
fn fast_digest(data: &[u8]) -> [u8; 16] {
    const K1: u64 = 0x9e37_79b9_7f4a_7c15;
    const K2: u64 = 0xc2b2_ae3d_27d4_eb4f;
    let len = data.len() as u64;
    let (mut a, mut b) = (K1 ^ len, K2 ^ len.rotate_left(32));
    let mut lane = |w: u64| {
        a = (a ^ w).wrapping_mul(K1).rotate_left(31);
        b = (b ^ w.rotate_left(23)).wrapping_mul(K2).rotate_left(29);
    };
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        lane(u64::from_le_bytes(w));
    }
    let rest = chunks.remainder();
    let mut w = [0u8; 8];
    w[..rest.len()].copy_from_slice(rest);
    lane(u64::from_le_bytes(w) ^ (rest.len() as u64) << 56);
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&fmix64(a ^ b.rotate_left(17)).to_le_bytes());
    out[8..].copy_from_slice(&fmix64(b ^ a.rotate_left(41)).to_le_bytes());
    out
}

/// murmur3's 64-bit finalizer: every input bit flips each output bit with probability ~1/2.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// The little-endian u64 at `at` of a 32-byte seed.
fn word(seed: &[u8; 32], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&seed[at..at + 8]);
    u64::from_le_bytes(w)
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
        out.extend_from_slice(&m[..m.len().min(OPENING_PREFIX)]);
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
        let key = &message[at..key_end];
        at = key_end;
        at = skip(bytes, at, b':');
        let end = value_end(bytes, at);
        let value = message[at..end].trim_end();
        at = end;
        if key == "\"role\"" || (key.contains('\\') && serde_json::from_str::<String>(key).ok()? == "role") {
            return serde_json::from_str::<Option<std::borrow::Cow<'_, str>>>(value).ok()?;
        }
    }
}

/// The first position from `at` that is neither whitespace nor `separator` (`,` between elements or
/// members, `:` after a key).
fn skip(bytes: &[u8], mut at: usize, separator: u8) -> usize {
    while at < bytes.len() && (bytes[at].is_ascii_whitespace() || bytes[at] == separator) {
        at += 1;
    }
    at
}

/// Where the JSON value starting at `start` ends (exclusive): at the `,`, `}` or `]` closing its
/// container, past a string's closing quote, or at the end. The text is valid JSON: strings and
/// nesting are all that must be tracked.
fn value_end(bytes: &[u8], start: usize) -> usize {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut at = start;
    while at < bytes.len() {
        let b = bytes[at];
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b != b'"' {
                // Most of a message is string content: skip to its next quote or backslash at once.
                at += bytes[at..].iter().position(|c| *c == b'"' || *c == b'\\').unwrap_or(bytes.len() - at);
                continue;
            } else {
                in_string = false;
                if depth == 0 {
                    return at + 1;
                }
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' | b',' if depth == 0 => return at,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        return at + 1;
                    }
                }
                _ => {}
            }
        }
        at += 1;
    }
    at
}

/// The elements of a JSON array given as valid JSON text, raw and trimmed, lazily; nothing for text
/// that is not an array.
fn array_elements(text: &str) -> impl Iterator<Item = &str> {
    let bytes = text.as_bytes();
    let lead = text.len() - text.trim_start().len();
    let mut at = if bytes.get(lead) == Some(&b'[') { lead + 1 } else { bytes.len() };
    std::iter::from_fn(move || {
        // An element starts after whitespace (and the comma before it).
        at = skip(bytes, at, b',');
        if at >= bytes.len() || bytes[at] == b']' {
            return None;
        }
        let start = at;
        at = value_end(bytes, at);
        // Only invalid JSON (a stray `}`) yields an empty element: stop rather than yield it forever.
        (at > start).then(|| text[start..at].trim_end())
    })
}

/// A uniform draw in (0, 1) for one candidate: the seed (a well-mixed digest, uniformly spread) mixed with
/// a digest of (provider slug, model id) through two rounds of fmix64, so neither catalog positions nor
/// other candidates affect it (editing the catalog moves no other session). No SHA-256 per candidate: in
/// wasm each block costs about half a microsecond.
pub fn uniform(seed: &[u8; 32], provider: &str, model_id: &str) -> f64 {
    let mut name = Vec::with_capacity(provider.len() + 1 + model_id.len());
    name.extend_from_slice(provider.as_bytes());
    name.push(0);
    name.extend_from_slice(model_id.as_bytes());
    let d = fast_digest(&name);
    let (mut d0, mut d1) = ([0u8; 8], [0u8; 8]);
    d0.copy_from_slice(&d[..8]);
    d1.copy_from_slice(&d[8..]);
    let x = fmix64(fmix64(word(seed, 0) ^ u64::from_le_bytes(d0)) ^ word(seed, 8) ^ u64::from_le_bytes(d1));
    // 53 random bits, centred in their interval: never 0 or 1.
    ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// Per-request entropy for a non-sticky draw, from `x-request-id`.
pub fn request_seed(request_id: &[u8], fallback: &SessionKey) -> [u8; 32] {
    let mut input = Vec::with_capacity(request_id.len() + 56);
    input.extend_from_slice(b"llm-router request v2\0");
    input.extend_from_slice(request_id);
    input.extend_from_slice(&fallback.0);
    expand(fast_digest(&input))
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
    fn array_elements_split_valid_json_arrays() {
        fn all(t: &str) -> Vec<&str> {
            array_elements(t).collect()
        }
        assert!(all("[]").is_empty() && all(" [ ] ").is_empty());
        assert!(all(r#"{"not":"an array"}"#).is_empty());
        // Invalid JSON never reaches here (the body is validated first), but must still end.
        for bad in ["[}]", "[1}]", "[1,}", "[", "[\"open"] {
            assert!(array_elements(bad).take(10).count() < 10, "{bad}");
        }
        // Every element of a serde-valid array, as serde sees it: strings with brackets, commas, quotes
        // and backslashes; nesting; scalars.
        let text = r#" [ {"role":"system","content":"a \"quoted\" ], } \\"} , {"role":"user","content":[{"type":"text","text":"x,]"}]},3,null,"s\\",[[],{}] ] "#;
        let raw: Vec<Box<serde_json::value::RawValue>> = serde_json::from_str(text).unwrap();
        assert_eq!(all(text), raw.iter().map(|r| r.get()).collect::<Vec<_>>());
    }

    #[test]
    fn roles_are_read_like_serde_reads_them() {
        for (m, want) in [
            (r#"{"role":"system","content":"x"}"#, Some("system")),
            (r#" { "content" : {"role":"nested"} , "role" : "developer" } "#, Some("developer")),
            (r#"{"content":"a \"role\": \"system\"","role":"user"}"#, Some("user")),
            (r#"{"\u0072ole":"system"}"#, Some("system")),
            (r#"{"role":"sys\u0074em"}"#, Some("system")),
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
    fn fast_digest_is_fixed_and_spreads() {
        // Golden value: every replica (and the wasm32 build of this test) must compute the same digest.
        assert_eq!(crate::text::hex(&fast_digest(b"hello, world")), GOLDEN);
        let base: Vec<u8> = (0..100u8).collect();
        let mut seen = std::collections::HashSet::new();
        assert!(seen.insert(fast_digest(&base)));
        for i in 0..base.len() {
            let mut flipped = base.clone();
            flipped[i] ^= 1;
            assert!(seen.insert(fast_digest(&flipped)), "flip at {i}");
        }
        for n in 0..20 {
            assert!(seen.insert(fast_digest(&vec![0u8; n])), "{n} zero bytes");
        }
    }
    const GOLDEN: &str = "f96d9a99578f7367558a689c80330d68";

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
        let seed = [7u8; 32];
        let mut sum = 0.0;
        for i in 0..1000 {
            let u = uniform(&seed, &format!("p{i}"), "m");
            assert!(u > 0.0 && u < 1.0);
            sum += u;
        }
        assert!((sum / 1000.0 - 0.5).abs() < 0.05);
    }
}
