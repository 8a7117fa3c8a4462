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

use llm_router::catalog::{hash_token, Catalog};
use llm_router::filter::downstream::request::{on_request_body, on_request_headers, HeadVerdict};
use llm_router::routing::health::Status;
use llm_router::routing::preferences::Preferences;
use llm_router::wire::error::ApiError;
use llm_router::wire::headers::forwardable_request_header;
use llm_router::wire::json::top_level;
use llm_router::wire::response::{rewrite_completion, Served, StreamRewriter};
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
