//! What the soak sends: request bodies and the deterministic mixes of the fault scenarios and the soak.

use std::sync::Arc;

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use llm_router_testkit::corpus;
use llm_router_testkit::router::CLIENT_KEY;
use serde_json::json;

use crate::load::{Mix, Spec};

/// The model every request asks for (the hostile corpus's too).
pub const MODEL: &str = "test/m";

/// The body sizes of the soak and their shares in every 100 normal requests.
pub const SOAK_SIZES: [(usize, u64); 5] =
    [(1_000, 50), (10_000, 25), (100_000, 15), (300_000, 7), (1_000_000, 3)];
/// Of every 100 soak requests, this one is hostile (1 %).
const HOSTILE_SLOT: u64 = 37;
/// Hostile cases larger than this are left out (the limit cases are 3 MB; the soak's largest body is
/// 1 MB).
const HOSTILE_MAX_BODY: usize = 1_100_000;

/// A chat body of about `size` bytes: a system message and a user message padded to the size.
pub fn chat_body(size: usize, stream: bool) -> Bytes {
    let base = json!({"model": MODEL, "stream": stream, "messages": [
        {"role": "system", "content": "You are the soak test."},
        {"role": "user", "content": ""},
    ]})
    .to_string();
    let pad = size.saturating_sub(base.len());
    // Words, so the body looks like text.
    let words = "the quick brown fox jumps over the lazy dog ".repeat(pad / 44 + 1);
    let content = words.get(..pad).unwrap_or("");
    let body = json!({"model": MODEL, "stream": stream, "messages": [
        {"role": "system", "content": "You are the soak test."},
        {"role": "user", "content": content},
    ]});
    Bytes::from(body.to_string())
}

/// The headers of a normal request: the fixture's client key, JSON.
pub fn headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {CLIENT_KEY}")) {
        h.insert("authorization", v);
    }
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h
}

fn spec(body: Bytes, stream: bool) -> Arc<Spec> {
    Arc::new(Spec { body, headers: headers(), stream, hostile: None })
}

/// The fault scenarios' mix: a 1 KB chat, streamed every other request.
pub fn faults() -> Mix {
    let plain = spec(chat_body(1_000, false), false);
    let streamed = spec(chat_body(1_000, true), true);
    Arc::new(move |i| if i % 2 == 1 { streamed.clone() } else { plain.clone() })
}

/// The hostile corpus's cases that hyper can send (a bare CR in a header value cannot be) and that are
/// at most 1.1 MB, as requests; and the names of the ones left out, with why.
pub fn hostile_cases() -> (Vec<Arc<Spec>>, Vec<String>) {
    let (_, cases) = corpus::load();
    let mut specs = Vec::new();
    let mut left_out = Vec::new();
    'cases: for case in cases {
        if case.body.len() > HOSTILE_MAX_BODY {
            left_out.push(format!("{} ({} bytes)", case.name, case.body.len()));
            continue;
        }
        // As tests/hostile.rs sends them: the case's headers replace the defaults of the same name, an
        // empty value removes it.
        let mut h = headers();
        for (name, value) in &case.headers {
            let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
                left_out.push(format!("{} (header name)", case.name));
                continue 'cases;
            };
            h.remove(&name);
            if value.is_empty() {
                continue;
            }
            match HeaderValue::from_bytes(value) {
                Ok(v) => {
                    h.append(name, v);
                }
                Err(_) => {
                    left_out.push(format!("{} (a header value hyper will not send)", case.name));
                    continue 'cases;
                }
            }
        }
        let stream = case.body.windows(14).any(|w| w == br#""stream":true"#);
        specs.push(Arc::new(Spec {
            body: Bytes::from(case.body),
            headers: h,
            stream,
            hostile: Some((case.name, case.status)),
        }));
    }
    (specs, left_out)
}

/// The soak's mix: of every 100 requests one hostile case (the corpus in turn) and 99 normal ones, a
/// third of them streamed, their sizes by [`SOAK_SIZES`] (request i's size is picked by a fixed
/// scramble of i, so the sizes interleave).
pub fn soak(hostile: Vec<Arc<Spec>>) -> Mix {
    let mut normal = Vec::new();
    for (size, _) in SOAK_SIZES {
        normal.push([spec(chat_body(size, false), false), spec(chat_body(size, true), true)]);
    }
    Arc::new(move |i| {
        if i % 100 == HOSTILE_SLOT && !hostile.is_empty() {
            return hostile[(i / 100) as usize % hostile.len()].clone();
        }
        let mut pick = i.wrapping_mul(7919) % 100;
        let mut k = 0;
        for (j, (_, share)) in SOAK_SIZES.iter().enumerate() {
            if pick < *share {
                k = j;
                break;
            }
            pick -= share;
        }
        normal[k][usize::from(i % 3 == 1)].clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_their_size_and_parse() {
        for (size, _) in SOAK_SIZES {
            for stream in [false, true] {
                let body = chat_body(size, stream);
                assert!(body.len().abs_diff(size) <= 2, "{size}: {}", body.len());
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(v["model"], MODEL);
                assert_eq!(v["stream"], stream);
            }
        }
    }

    #[test]
    fn the_soak_mix_has_its_shares() {
        let hostile = vec![Arc::new(Spec {
            body: Bytes::from_static(b"{}"),
            headers: headers(),
            stream: false,
            hostile: Some(("case".into(), 400)),
        })];
        let mix = soak(hostile);
        let mut by_size = std::collections::BTreeMap::new();
        let (mut streamed, mut hostile) = (0, 0);
        for i in 1000..1300 {
            let s = mix(i);
            if s.hostile.is_some() {
                hostile += 1;
                continue;
            }
            streamed += u64::from(s.stream);
            let size = SOAK_SIZES.iter().map(|(n, _)| *n).min_by_key(|n| n.abs_diff(s.body.len())).unwrap();
            *by_size.entry(size).or_insert(0u64) += 1;
        }
        assert_eq!(hostile, 3, "one in a hundred");
        assert_eq!(streamed, 99, "a third of the 297 others");
        // Each hundred has every share but where the hostile request took a slot.
        for (size, share) in SOAK_SIZES {
            let n = by_size[&size];
            assert!(n.abs_diff(3 * share) <= 3, "{size}: {n} of 300, share {share} %");
        }
    }

    #[test]
    fn hostile_cases_keep_their_documented_status() {
        let (specs, left_out) = hostile_cases();
        assert!(specs.len() >= 20, "{} cases", specs.len());
        assert!(specs.iter().all(|s| s.body.len() <= HOSTILE_MAX_BODY && s.hostile.is_some()));
        assert!(left_out.iter().any(|n| n.contains("bare CR")), "{left_out:?}");
        let unknown = specs.iter().find(|s| s.hostile.as_ref().is_some_and(|(n, _)| n == "an unknown model"));
        assert_eq!(unknown.and_then(|s| s.hostile.as_ref()).map(|(_, st)| *st), Some(404));
        let no_key = specs.iter().find(|s| s.hostile.as_ref().is_some_and(|(n, _)| n == "no key")).unwrap();
        assert!(no_key.headers.get("authorization").is_none(), "an empty value removes the default");
    }
}
