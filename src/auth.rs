//! Client authentication: the bearer token's SHA-256 compared in constant time with every catalog key.

use crate::catalog::{AuthMode, Catalog};
use crate::error::ApiError;
use sha2::{Digest, Sha256};

/// Who is calling: the index of the matching `keys[]` entry, or `None` with `auth: none`.
pub type Caller = Option<usize>;

/// Checks the `authorization` header value (`Bearer <token>`).
pub fn authenticate(catalog: &Catalog, authorization: Option<&[u8]>) -> Result<Caller, ApiError> {
    if catalog.auth == AuthMode::None {
        return Ok(None);
    }
    let token = authorization.and_then(bearer_token).ok_or_else(|| {
        ApiError::Unauthorized("Missing API key: send \"Authorization: Bearer <key>\"".to_string())
    })?;
    let digest: [u8; 32] = Sha256::digest(token).into();
    // Compare with every key, whatever matches, so timing says nothing about which key is close.
    let mut found = None;
    for (i, key) in catalog.keys.iter().enumerate() {
        if constant_time_eq(&digest, &key.sha256) && found.is_none() {
            found = Some(i);
        }
    }
    found.map(Some).ok_or_else(|| ApiError::Unauthorized("Invalid API key".to_string()))
}

/// The hex SHA-256 of a token, as written in `keys[].sha256`.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    if value.len() < 7 || !value[..7].eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = value[7..].trim_ascii();
    (!token.is_empty()).then_some(token)
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tests::demo;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn known_key_is_accepted_others_are_401() {
        let c = demo();
        assert_eq!(authenticate(&c, Some(b"Bearer sk-test-1")), Ok(Some(0)));
        assert_eq!(authenticate(&c, Some(b"bearer   sk-test-1 ")), Ok(Some(0)));
        for bad in
            [None, Some(&b"Bearer "[..]), Some(b"sk-test-1"), Some(b"Bearer sk-test-2"), Some(b"Basic abc")]
        {
            assert_eq!(authenticate(&c, bad).unwrap_err().status(), 401);
        }
    }

    #[test]
    fn hash_matches_sha256sum() {
        assert_eq!(
            hash_token("sk-demo-llm-router"),
            "6e642b523c88456ac29a1fff7b4187d6ff5548686cf85400224679fddfe51858"
        );
    }
}
