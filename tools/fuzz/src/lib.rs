//! The fuzz targets' bodies: each feeds untrusted bytes to one part of the brain and panics when a
//! property fails. libFuzzer calls them (`fuzz_targets/`, nightly); `tests/fuzz_corpus.rs` replays the
//! seed corpus and the hostile corpus through them on stable.
//!
//! Properties checked on every input, besides "no panic, no hang":
//! - `request`: every refusal is OpenRouter's JSON error with its status; a routed request's forwarded
//!   headers hold no client credential (a canary key in several header styles) and nothing off the
//!   allowlist; the model billed (the plan's first endpoint) is the model sent in the provider's body,
//!   which is valid JSON with every client member but the router's own kept byte for byte.
//! - `catalog`: a catalog either loads, with a `/models` document that is valid JSON, or is refused.
//! - `preferences`: a `provider` object either parses or is a 400.
//! - `stream`: the rewritten bytes and the usage of an SSE stream are the same whatever the chunk
//!   boundaries.
//! - `completion`: a rewritten completion keeps every top-level member but `model`, `provider`, `usage`
//!   and `system_fingerprint` byte for byte, in order.
//! - `native_request`: a chat request translated for Anthropic and for Gemini (with and without the
//!   endpoint's `max_completion_tokens`) is valid JSON (Anthropic's with the endpoint's `model` and a
//!   positive `max_tokens`, Gemini's with a positive `maxOutputTokens` and no `model`), or a 400 in
//!   OpenRouter's shape; its size is linear in the request's.
//! - `native_stream`: a provider's SSE stream translated for each native API, with failover and
//!   without, gives the same bytes, failure, usage and content count whatever the chunk boundaries; the
//!   output is `data: ` events of `chat.completion.chunk` JSON objects ending in `[DONE]` or an error
//!   chunk (or, with failover and nothing sent, one failure and no byte), linear in the stream's size.
//! - `native_completion`: a provider's answer translated is a `chat.completion` JSON object, linear in
//!   the answer's size, or a 502 in OpenRouter's shape; reading it as an error body never panics and
//!   gives an error status.

use llm_router::catalog::{hash_token, Api, Catalog};
use llm_router::filter::downstream::request::{on_request_body, on_request_headers, HeadVerdict};
use llm_router::routing::health::Status;
use llm_router::routing::preferences::Preferences;
use llm_router::wire::chat_request::ChatRequest;
use llm_router::wire::error::ApiError;
use llm_router::wire::headers::forwardable_request_header;
use llm_router::wire::json::top_level;
use llm_router::wire::native::{error_message, translate_completion, translate_request, NativeStream, Step};
use llm_router::wire::response::{rewrite_completion, Served, StreamRewriter};
use llm_router::wire::{anthropic, gemini};
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The client key of [`catalog`]'s only key.
pub const CLIENT_KEY: &str = "sk-fuzz-client-key";
/// A second client credential the request target adds in other APIs' header styles.
const CANARY: &str = "sk-canary-never-forwarded";
/// Header names a client may put its credentials in, in any API's style.
const CREDENTIAL_HEADERS: [&str; 5] =
    ["x-api-key", "api-key", "x-goog-api-key", "anthropic-api-key", "cookie"];

/// The test catalog (tests/fixtures/catalog.json) with [`CLIENT_KEY`], parsed once.
pub fn catalog_fixture() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let json =
            include_str!("../../../tests/fixtures/catalog.json").replace("SHA", &hash_token(CLIENT_KEY));
        let env = |name: &str| Some(format!("provider-secret-{name}"));
        Catalog::parse(json.as_bytes(), Some(&env)).expect("the fixture catalog loads")
    })
}

/// An error body is OpenRouter's shape with this status; it quotes no credential from the request's
/// headers (a client that wrote one into its body may see its own text quoted back).
fn assert_error_shape(status: u16, body: &str, request_body: &[u8]) {
    let v: serde_json::Value = serde_json::from_str(body).expect("an error body is JSON");
    assert_eq!(v["error"]["code"], status, "{body}");
    assert!(v["error"]["message"].is_string() && v["error"]["metadata"]["error_type"].is_string(), "{body}");
    assert!((400..600).contains(&status), "{status}");
    for secret in [CANARY, CLIENT_KEY] {
        let own_text = request_body.windows(secret.len()).any(|w| w == secret.as_bytes());
        assert!(own_text || !body.contains(secret), "an error echoes a credential: {body}");
    }
}

fn assert_api_error(e: &ApiError, request_body: &[u8]) {
    assert_error_shape(e.status(), &e.body(), request_body);
}

/// Target `request`: `data` is header lines (`name: value`), a blank line, then the body. The client's
/// key, content type, method and path are added; so are credential headers holding [`CANARY`].
pub fn request(data: &[u8]) {
    let split = data.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(at) => (data.get(..at).unwrap_or_default(), data.get(at + 2..).unwrap_or_default()),
        None => (&b""[..], data),
    };
    let mut headers: Vec<(String, Vec<u8>)> = vec![
        (":method".into(), b"POST".to_vec()),
        (":path".into(), b"/v1/chat/completions".to_vec()),
        ("authorization".into(), format!("Bearer {CLIENT_KEY}").into_bytes()),
        ("content-type".into(), b"application/json".to_vec()),
    ];
    for name in CREDENTIAL_HEADERS {
        headers.push((name.into(), CANARY.as_bytes().to_vec()));
    }
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':').filter(|at| *at > 0) else { continue };
        let (name, value) =
            (line.get(..colon).unwrap_or_default(), line.get(colon + 1..).unwrap_or_default());
        // What Envoy's codecs let through: lowercase token names, values without CR, LF or NUL.
        let token = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.!#$%&'*+^`|~".contains(b);
        if !name.iter().all(token) || value.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            continue;
        }
        let name = String::from_utf8_lossy(name).into_owned();
        if name == "authorization" || name == "content-type" || name == "content-length" {
            continue;
        }
        headers.push((name, value.trim_ascii().to_vec()));
    }
    let c = catalog_fixture();
    let head = match on_request_headers(c, &headers, false) {
        HeadVerdict::Reply(r) => return assert_error_shape(r.status, &r.body, body),
        HeadVerdict::Chat(head) => head,
        // The path is always /v1/chat/completions here.
        HeadVerdict::KeyInfo(_) => panic!("a chat request was taken for GET /key"),
    };
    let d = match on_request_body(c, body, &head, &|_| Status::default()) {
        Err(e) => return assert_api_error(&e, body),
        Ok(d) => d,
    };
    // The provider's header map: the client's, minus what the router removes, plus what it sets.
    let forwarded: Vec<(&str, &[u8])> = headers
        .iter()
        .filter(|(n, _)| !d.remove.contains(n) && !d.set.iter().any(|(s, _)| s == n))
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .chain(d.set.iter().map(|(n, v)| (n.as_str(), v.as_slice())))
        .collect();
    for (name, value) in &forwarded {
        let set_by_router = d.set.iter().any(|(s, v)| s == name && v.as_slice() == *value);
        let allowed = set_by_router || forwardable_request_header(name);
        assert!(allowed, "{name} is neither allowlisted nor the router's");
        // The router's own values never carry a client secret; an allowlisted header passes on what the
        // client wrote in it (a client that copies its key into `accept` sends it on itself).
        let text = String::from_utf8_lossy(value);
        let secret = text.contains(CANARY) || text.contains(CLIENT_KEY);
        assert!(!(set_by_router && secret), "the router set a client secret in {name}: {text}");
        let credential = CREDENTIAL_HEADERS.contains(name) || *name == "authorization";
        assert!(!credential || set_by_router, "the client's {name} forwarded: {text}");
    }
    // The model billed is the model sent, in a valid body that keeps the client's other members.
    let sent = d.body.apply(body);
    let sent_text = std::str::from_utf8(&sent).expect("the provider's body is UTF-8");
    let (_, members) = top_level(sent_text).expect("the provider's body is a JSON object");
    let model = members.iter().find(|m| m.key == "model").expect("a model member");
    let billed = d.routed.plan.first().map(|e| c.endpoint(*e).model.as_str()).expect("a plan");
    assert_eq!(serde_json::from_str::<String>(model.value).ok().as_deref(), Some(billed));
    let (_, client) =
        top_level(std::str::from_utf8(body).unwrap_or_default()).expect("it was routed: an object");
    let router_only =
        ["model", "models", "provider", "route", "session_id", "transforms", "plugins", "usage", "debug"];
    let kept: Vec<(&str, &str)> = client
        .iter()
        .filter(|m| !router_only.contains(&m.key.as_ref()))
        .map(|m| (m.key.as_ref(), m.value))
        .collect();
    let got: Vec<(&str, &str)> = members
        .iter()
        .filter(|m| !router_only.contains(&m.key.as_ref()) && m.key != "stream_options")
        .map(|m| (m.key.as_ref(), m.value))
        .collect();
    let kept: Vec<(&str, &str)> = kept.into_iter().filter(|(k, _)| *k != "stream_options").collect();
    assert_eq!(got, kept, "the client's own members, byte for byte");
}

/// Target `catalog`: a catalog loads (with a valid `/models` document) or is refused, never worse.
pub fn catalog(data: &[u8]) {
    let env = |name: &str| Some(format!("secret-{name}"));
    if let Ok(c) = Catalog::parse(data, Some(&env)) {
        serde_json::from_str::<serde_json::Value>(&c.models_json).expect("/models is JSON");
    }
}

/// Target `preferences`: a `provider` object parses or is a 400.
pub fn preferences(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = Preferences::parse(Some(text)) {
        assert_eq!(e.status(), 400, "{e:?}");
        assert_api_error(&e, data);
    }
}

fn served() -> Served {
    Served {
        model_json: "\"meta/llama\"".into(),
        provider_json: "\"Alpha\"".into(),
        pricing: llm_router::catalog::Pricing {
            prompt: 0.1,
            completion: 0.2,
            cache_read: Some(0.05),
            cache_write: None,
            request: None,
            image: None,
        },
    }
}

/// Target `stream`: the first byte chooses chunk boundaries, the rest is the provider's stream. Fed
/// whole or in pieces, the client gets the same bytes and the account the same usage.
pub fn stream(data: &[u8]) {
    let Some((&seed, stream)) = data.split_first() else { return };
    let run = |pieces: &mut dyn Iterator<Item = &[u8]>| {
        let mut r = StreamRewriter::new(served());
        let mut out = Vec::new();
        for piece in pieces {
            out.extend_from_slice(r.feed(piece));
        }
        out.extend_from_slice(r.finish());
        (out, r.accounted(), r.content_chunks())
    };
    let whole = run(&mut std::iter::once(stream));
    let step = usize::from(seed % 17) + 1;
    let pieces = run(&mut stream.chunks(step));
    assert_eq!(whole, pieces, "chunked by {step}");
    let bytes = run(&mut stream.chunks(1));
    assert_eq!(whole, bytes, "byte by byte");
}

/// Target `completion`: a rewritten completion keeps every member it does not own byte for byte.
pub fn completion(data: &[u8]) {
    let (out, accounted) = rewrite_completion(data, &served());
    let Some(out) = out else {
        assert!(accounted.usage.is_none());
        return;
    };
    let text = std::str::from_utf8(&out).expect("the rewrite is UTF-8");
    let (_, rewritten) = top_level(text).expect("the rewrite is a JSON object");
    let (_, original) = top_level(std::str::from_utf8(data).unwrap_or_default()).expect("it was an object");
    let owned = ["model", "provider", "usage", "system_fingerprint"];
    let keep = |m: &&llm_router::wire::json::Member<'_>| !owned.contains(&m.key.as_ref());
    let before: Vec<(&str, &str)> = original.iter().filter(keep).map(|m| (m.key.as_ref(), m.value)).collect();
    let after: Vec<(&str, &str)> = rewritten.iter().filter(keep).map(|m| (m.key.as_ref(), m.value)).collect();
    assert_eq!(before, after);
    let model = rewritten.iter().find(|m| m.key == "model").map(|m| m.value);
    assert_eq!(model, Some("\"meta/llama\""));
}

/// The native APIs, each translated both ways.
const NATIVE_APIS: [Api; 2] = [Api::Anthropic, Api::Gemini];
/// `created` of the translated answers.
const CREATED: u64 = 1_700_000_000;
/// What a translation may write per byte of untrusted input (plus [`OUTPUT_SLACK`]): far above what any
/// translation writes for ordinary input (a stream's smallest content event, about 13 bytes of Gemini
/// text part, becomes a chunk of about 160), far below what copying one input string into every
/// chunk, part or message would write.
pub const OUTPUT_PER_INPUT_BYTE: usize = 64;
/// The constant part of the output bound: role, finish, usage and error chunks, defaults.
pub const OUTPUT_SLACK: usize = 64 * 1024;
/// Largest stream also fed byte by byte.
const BYTE_BY_BYTE_MAX: usize = 64 * 1024;

/// `output` bytes were written for `input` bytes: no more than linearly many.
fn assert_linear(what: &str, input: usize, output: usize) {
    let bound = input.saturating_mul(OUTPUT_PER_INPUT_BYTE).saturating_add(OUTPUT_SLACK);
    assert!(
        output <= bound,
        "{what}: {output} bytes out for {input} in (more than {OUTPUT_PER_INPUT_BYTE}× + {OUTPUT_SLACK})"
    );
}

/// `text` is one JSON value (any depth, any number size: the grammar only, as serde_json reads it when
/// it skips a value) and, when it is an object, its members by key.
fn json_members<'a>(what: &str, text: &'a str) -> Option<BTreeMap<String, &'a RawValue>> {
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
        panic!("{what} is not JSON ({e}): {}", text.get(..text.len().min(2000)).unwrap_or(text));
    }
    serde_json::from_str(text).ok()
}

/// A member's JSON text.
fn member<'a>(members: &BTreeMap<String, &'a RawValue>, key: &str) -> Option<&'a str> {
    members.get(key).map(|v| v.get())
}

/// A member that must be a positive integer.
fn positive(what: &str, raw: Option<&str>) -> u64 {
    let n = raw.and_then(|r| serde_json::from_str::<u64>(r).ok());
    assert!(n.is_some_and(|n| n > 0), "{what} is not a positive integer: {raw:?}");
    n.unwrap_or_default()
}

/// Target `native_request`: `data` is a client's chat request body, translated for each native API,
/// with the endpoint's `max_completion_tokens` (1000) and without.
pub fn native_request(data: &[u8]) {
    let req = match ChatRequest::parse(data) {
        Ok(req) => req,
        Err(e) => {
            assert_eq!(e.status(), 400, "{e:?}");
            return assert_api_error(&e, data);
        }
    };
    // The request sets no limit of its own (no key can spell one without `max_` or an escape).
    let no_limit = !data.windows(4).any(|w| w == b"max_") && !data.contains(&b'\\');
    for api in NATIVE_APIS {
        for endpoint_max in [Some(1000), None] {
            let what = format!("{api:?} request (endpoint max {endpoint_max:?})");
            let body = match translate_request(api, &req, "model-x", endpoint_max) {
                Ok(body) => body,
                Err(e) => {
                    assert_eq!(e.status(), 400, "{what}: {e:?}");
                    assert_api_error(&e, data);
                    continue;
                }
            };
            assert_linear(&what, data.len(), body.len());
            let text = std::str::from_utf8(&body).unwrap_or_else(|e| panic!("{what} is not UTF-8: {e}"));
            let members = json_members(&what, text).unwrap_or_else(|| panic!("{what} is not an object"));
            let default = endpoint_max.unwrap_or(llm_router::wire::native::DEFAULT_MAX_TOKENS);
            let max = match api {
                Api::Anthropic => {
                    assert_eq!(member(&members, "model"), Some("\"model-x\""), "{what}");
                    positive(&format!("{what}: max_tokens"), member(&members, "max_tokens"))
                }
                _ => {
                    assert_eq!(member(&members, "model"), None, "{what}: Gemini's model is in the path");
                    let config = member(&members, "generationConfig").unwrap_or("null");
                    let config = json_members(&what, config).unwrap_or_default();
                    positive(&format!("{what}: maxOutputTokens"), member(&config, "maxOutputTokens"))
                }
            };
            assert!(!no_limit || max == default, "{what}: {max} tokens where the request set none");
        }
    }
}

/// Target `native_stream`: the first byte chooses chunk boundaries, the rest is a native provider's
/// SSE stream, translated for each native API with failover and without. Fed whole, in pieces of
/// pseudo-random sizes, cut at its line ends and byte by byte, the client gets the same bytes, the
/// caller the same failure, and the account the same usage.
pub fn native_stream(data: &[u8]) {
    let Some((&seed, stream)) = data.split_first() else { return };
    let mut splits: Vec<(&str, Vec<&[u8]>)> = vec![
        ("in pseudo-random pieces", random_pieces(seed, stream)),
        ("cut at line ends", line_pieces(seed, stream)),
    ];
    if stream.len() <= BYTE_BY_BYTE_MAX {
        splits.push(("byte by byte", stream.chunks(1).collect()));
    }
    for api in NATIVE_APIS {
        let run = |failover: bool, pieces: &[&[u8]]| {
            let mut s =
                NativeStream::new(api, served(), CREATED, failover).expect("a native API's translator");
            let (mut out, mut failed) = (Vec::new(), None);
            for piece in pieces.iter().copied().map(Some).chain([None]) {
                let step = match piece {
                    Some(piece) => s.feed(piece),
                    None => s.finish(),
                };
                match step {
                    Step::Forward(bytes) => {
                        assert!(failed.is_none() || bytes.is_empty(), "{api:?}: bytes sent after a failure");
                        out.extend_from_slice(bytes);
                    }
                    Step::Failed(e) => {
                        assert!(failover, "{api:?}: a failure without failover: {e:?}");
                        assert!(failed.is_none(), "{api:?}: a second failure: {e:?}");
                        assert!(out.is_empty(), "{api:?}: a failure after bytes were sent: {e:?}");
                        failed = Some(e);
                    }
                }
            }
            (out, failed, s.accounted(), s.content_chunks())
        };
        let mut outcomes = Vec::new();
        for failover in [true, false] {
            let what = format!("{api:?} stream (failover {failover})");
            let whole = run(failover, &[stream]);
            for (how, pieces) in &splits {
                assert_eq!(whole, run(failover, pieces), "{what}: fed whole and {how}");
            }
            let (out, failed, _, content_chunks) = &whole;
            assert_linear(&what, stream.len(), out.len());
            match failed {
                Some(e) => {
                    assert!((400..600).contains(&e.status), "{what}: failed with {e:?}");
                    let _ = (e.error_type(), e.retriable());
                    json_members(&format!("{what}: the failure's body"), &e.body());
                }
                None => assert_chunks(&what, out, *content_chunks),
            }
            outcomes.push(whole);
        }
        // Without failover, only a failure before anything was sent becomes something else (the error
        // chunk); every other stream is translated the same.
        if let [with, without] = outcomes.as_slice() {
            if with.1.is_none() {
                assert_eq!(with, without, "{api:?}: with failover and without");
            }
        }
    }
}

/// Pieces of `stream` of pseudo-random sizes (1 up to 2 to 128 bytes, by `seed`).
fn random_pieces(seed: u8, stream: &[u8]) -> Vec<&[u8]> {
    let max = 1usize << (seed % 8);
    let mut state = u32::from(seed).wrapping_mul(0x9E37_79B9) | 1;
    let mut pieces = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        // xorshift32
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let size = 1 + usize::try_from(state).unwrap_or(0) % max;
        let (piece, tail) = rest.split_at(size.min(rest.len()));
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

/// `stream` cut at every CR and LF: before it (odd `seed`), so that CRLF pairs and blank lines are
/// split, or after it (even).
fn line_pieces(seed: u8, stream: &[u8]) -> Vec<&[u8]> {
    let after = usize::from(seed.is_multiple_of(2));
    let mut pieces = Vec::new();
    let mut start = 0;
    for (i, b) in stream.iter().enumerate() {
        if matches!(b, b'\r' | b'\n') && i + after > start {
            pieces.push(stream.get(start..i + after).unwrap_or_default());
            start = i + after;
        }
    }
    pieces.push(stream.get(start..).unwrap_or_default());
    pieces
}

/// A translated stream the client receives in full: `data: ` events only, each a
/// `chat.completion.chunk` JSON object served by [`served`], the last one `[DONE]` or an error chunk.
fn assert_chunks(what: &str, out: &[u8], content_chunks: u64) {
    let text = std::str::from_utf8(out).unwrap_or_else(|e| panic!("{what}: not UTF-8: {e}"));
    let events = text.strip_suffix("\n\n").unwrap_or_else(|| panic!("{what}: no whole event at the end"));
    let events: Vec<&str> = events.split("\n\n").collect();
    let last = events.len() - 1;
    let mut chunks = 0u64;
    for (i, event) in events.iter().enumerate() {
        let data = event.strip_prefix("data: ").unwrap_or_else(|| panic!("{what}: not a data line: {event}"));
        assert!(!data.contains('\n'), "{what}: an event of several lines: {event}");
        if data == "[DONE]" {
            assert_eq!(i, last, "{what}: events after [DONE]");
            continue;
        }
        let members = json_members(&format!("{what}: {data}"), data)
            .unwrap_or_else(|| panic!("{what}: a chunk that is not an object: {data}"));
        assert_eq!(member(&members, "object"), Some("\"chat.completion.chunk\""), "{what}: {data}");
        assert_eq!(member(&members, "model"), Some("\"meta/llama\""), "{what}: {data}");
        assert_eq!(member(&members, "created"), Some("1700000000"), "{what}: {data}");
        chunks += 1;
        if i == last {
            assert!(
                members.contains_key("error"),
                "{what}: the stream ends with neither [DONE] nor an error"
            );
        }
    }
    // Besides its content chunks, a stream has the role, finish, usage and error chunks.
    assert!(content_chunks <= chunks, "{what}: {content_chunks} content chunks in {chunks}");
}

/// Target `native_completion`: `data` is a native provider's whole answer (or error body), translated
/// for each native API, and read as an error body with various statuses.
pub fn native_completion(data: &[u8]) {
    for api in NATIVE_APIS {
        let what = format!("{api:?} completion");
        match translate_completion(api, data, &served(), CREATED) {
            Err(e) => {
                assert_eq!(e.status(), 502, "{what}: {e:?}");
                assert_api_error(&e, data);
            }
            Ok((out, accounted)) => {
                assert_linear(&what, data.len(), out.len());
                let text = std::str::from_utf8(&out).unwrap_or_else(|e| panic!("{what} is not UTF-8: {e}"));
                let members = json_members(&what, text).unwrap_or_else(|| panic!("{what} is not an object"));
                assert_eq!(member(&members, "object"), Some("\"chat.completion\""), "{what}");
                assert_eq!(member(&members, "model"), Some("\"meta/llama\""), "{what}");
                assert_eq!(member(&members, "provider"), Some("\"Alpha\""), "{what}");
                assert!(member(&members, "choices").is_some_and(|c| c.starts_with('[')), "{what}");
                assert_eq!(members.contains_key("usage"), accounted.usage.is_some(), "{what}: usage");
            }
        }
        for status in [None, Some(0), Some(200), Some(399), Some(400), Some(429), Some(503), Some(u16::MAX)] {
            let e = match api {
                Api::Anthropic => anthropic::response::parse_error(status, data),
                _ => gemini::response::parse_error(status, data),
            };
            let what = format!("{api:?} error, status {status:?}");
            assert!(e.status >= 400, "{what}: {e:?}");
            assert!(status.is_none_or(|s| s < 400 || e.status == s), "{what}: {e:?}");
            let _ = (e.error_type(), e.retriable());
            json_members(&format!("{what}: its body"), &e.body());
            if let Some(s) = status {
                let message = Some(e.message).filter(|m| !m.is_empty());
                assert_eq!(error_message(api, s, data), message, "{what}: error_message");
            }
        }
    }
}
