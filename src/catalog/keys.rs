//! Client keys: stored only as the SHA-256 of their bearer token, found by comparing a token's digest in
//! constant time with every key's.

use super::fields::FieldError;
use super::ids::{id, KeyId};
use super::policy::parse_key_policy;
use super::raw::{RawKey, RawLimits};
use super::types::{Catalog, ClientKey, KeyLimits, KeyPolicy, Provider};
use sha2::{Digest, Sha256};

impl Catalog {
    /// The key whose token this is, if any. Compares with every key, whatever matches, so timing says
    /// nothing about which key is close.
    pub fn key_for_token(&self, token: &[u8]) -> Option<KeyId> {
        let digest: [u8; 32] = Sha256::digest(token).into();
        let mut found = None;
        for (i, key) in self.keys.iter().enumerate() {
            if constant_time_eq(&digest, &key.sha256) && found.is_none() {
                found = Some(KeyId(id(i)));
            }
        }
        found
    }
}

/// The hex SHA-256 of a token, as written in `keys[].sha256`.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Validates `keys[i]` at catalog load.
pub(super) fn validate_key(k: RawKey, path: &str, providers: &[Provider]) -> Result<ClientKey, FieldError> {
    if k.name.is_empty() || !k.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        return Err(FieldError::new(&format!("{path}.name"), "must be a non-empty name of [A-Za-z0-9._-]"));
    }
    let sha256 = decode_sha256(&k.sha256).ok_or_else(|| {
        FieldError::new(&format!("{path}.sha256"), "must be 64 hex digits (the SHA-256 of the bearer token)")
    })?;
    let policy = match &k.policy {
        Some(v) => parse_key_policy(v, &format!("{path}.policy"), providers)?,
        None => KeyPolicy::default(),
    };
    let limits = match &k.limits {
        Some(l) => validate_limits(l, &format!("{path}.limits"))?,
        None => KeyLimits::default(),
    };
    Ok(ClientKey { name: k.name, sha256, policy, debug: k.debug.unwrap_or(false), limits })
}

/// The largest dollar limit: a billion USD, far inside what nano-USD counters hold (1.8·10¹⁰ USD).
const MAX_USD: f64 = 1e9;

/// Validates `keys[i].limits`: counts of at least one, dollar amounts from 0 to [`MAX_USD`], kept as
/// nano-USD.
fn validate_limits(l: &RawLimits, path: &str) -> Result<KeyLimits, FieldError> {
    for (field, value) in
        [("requests_per_minute", l.requests_per_minute), ("tokens_per_minute", l.tokens_per_minute)]
    {
        if value == Some(0) {
            return Err(FieldError::new(&format!("{path}.{field}"), "must be at least 1"));
        }
    }
    let nano = |field: &str, value: Option<f64>| match value {
        Some(v) if !(0.0..=MAX_USD).contains(&v) => {
            Err(FieldError::new(&format!("{path}.{field}"), "must be a number of USD from 0 to 1000000000"))
        }
        // In range: the product fits a u64 exactly enough (10¹⁸ < 2⁶⁴).
        Some(v) => Ok(Some((v * 1e9).round() as u64)),
        None => Ok(None),
    };
    Ok(KeyLimits {
        requests_per_minute: l.requests_per_minute,
        tokens_per_minute: l.tokens_per_minute,
        usd_per_day: nano("usd_per_day", l.usd_per_day)?,
        usd_per_week: nano("usd_per_week", l.usd_per_week)?,
        usd_per_month: nano("usd_per_month", l.usd_per_month)?,
    })
}

fn decode_sha256(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16);
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        let (hi, lo) = (digit(*pair.first()?)?, digit(*pair.get(1)?)?);
        *byte = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tests::demo;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn only_a_listed_token_finds_its_key() {
        let c = demo();
        let team_a = c.key_ids().next().unwrap();
        assert_eq!(c.key_for_token(b"sk-test-1"), Some(team_a));
        for bad in [&b""[..], b"sk-test-2", b"sk-test-1 ", b"SK-TEST-1"] {
            assert_eq!(c.key_for_token(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_digest_off_in_two_bytes_is_no_match() {
        // Differences that would cancel out under XOR must still be a mismatch.
        let mut near: [u8; 32] = Sha256::digest(b"sk-test-1").into();
        near[0] ^= 0x5a;
        near[1] ^= 0x5a;
        let right: [u8; 32] = Sha256::digest(b"sk-test-1").into();
        assert!(constant_time_eq(&right, &right));
        assert!(!constant_time_eq(&right, &near));
    }

    #[test]
    fn key_names_are_checked() {
        let c = demo();
        for (name, ok) in [("team-a.b_c", true), ("", false), ("team a", false), ("team/a", false)] {
            let raw = serde_json::json!({"name": name, "sha256": hash_token("x")});
            let k = RawKey::read(&raw, "keys[0]").unwrap();
            assert_eq!(validate_key(k, "keys[0]", &c.providers).is_ok(), ok, "{name:?}");
        }
    }

    #[test]
    fn hash_matches_sha256sum() {
        assert_eq!(
            hash_token("sk-demo-llm-router"),
            "6e642b523c88456ac29a1fff7b4187d6ff5548686cf85400224679fddfe51858"
        );
    }

    #[test]
    fn sha256_is_64_hex_digits() {
        let hex = hash_token("x");
        let want: [u8; 32] = Sha256::digest(b"x").into();
        assert_eq!(decode_sha256(&hex), Some(want));
        assert_eq!(decode_sha256(&hex.to_uppercase()), Some(want));
        for bad in ["", "00", &hex[1..], &format!("{hex}0"), &hex.replace(|c: char| c.is_ascii_digit(), "g")]
        {
            assert_eq!(decode_sha256(bad), None, "{bad}");
        }
    }
}
