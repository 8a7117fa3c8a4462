//! Text building on the hot path: JSON strings, integers and hex pushed straight into a `String`. In wasm,
//! `format!` and serde's writers cost a dynamic dispatch per piece and an allocation per call, which the
//! per-request paths (response rewrite, account, metrics, explanations) paid dozens of times (measured:
//! issue 5's anatomy runs). Integers go through `itoa`; the JSON string escaper is ours because it writes
//! into the caller's `String` with serde_json's exact escapes and no intermediate buffer.

/// Appends `s` as a JSON string literal (quotes included), escaped as serde_json escapes it.
pub fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(s.get(start..i).unwrap_or_default());
        if escape.is_empty() {
            out.push_str("\\u00");
            push_hex_byte(out, b);
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(s.get(start..).unwrap_or_default());
    out.push('"');
}

/// Appends `n` in decimal.
pub fn push_u64(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// `n` in decimal.
pub fn decimal(n: u64) -> String {
    itoa::Buffer::new().format(n).to_string()
}

/// Appends `n` in decimal, padded with zeros to `width` digits.
pub fn push_u64_padded(out: &mut String, n: u64, width: usize) {
    let digits = std::iter::successors(Some(n), |k| (*k >= 10).then_some(k / 10)).count();
    for _ in digits..width {
        out.push('0');
    }
    push_u64(out, n);
}

/// Appends `x` rounded to 3 decimals (`0.735`) for the shares route explanations print: like `{:.3}` but
/// for exact binary ties (which round up here) and for NaN or negatives (printed as 0).
pub fn push_fixed3(out: &mut String, x: f64) {
    let milli = (x.max(0.0) * 1000.0).round() as u64;
    push_u64(out, milli / 1000);
    out.push('.');
    push_u64_padded(out, milli % 1000, 3);
}

/// Appends the two lowercase hex digits of `b`.
pub fn push_hex_byte(out: &mut String, b: u8) {
    for nibble in [b >> 4, b & 0xf] {
        out.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
    }
}

/// `bytes` in lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        push_hex_byte(&mut out, *b);
    }
    out
}

/// At most `max` bytes of `s`, cut at a character boundary: what a client or provider sent is echoed
/// into errors and logs only this far.
pub fn truncated(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn json_strings_match_serde() {
        for s in
            ["", "plain", "quote\" back\\slash", "ctl\u{1}\u{1f}\n\r\t\u{8}\u{c}", "é ü 日本 \u{7f}", "a/b"]
        {
            let mut out = String::new();
            push_json_str(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn numbers_match_format() {
        for n in [0u64, 7, 10, 999, 1000, 123_456_789, u64::MAX] {
            let mut out = String::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string());
            let mut padded = String::new();
            push_u64_padded(&mut padded, n, 9);
            assert_eq!(padded, format!("{n:09}"));
        }
        for x in [0.0, 0.0004, 0.0005, 0.1234, 0.735, 0.9996, 1.0, 12.3456] {
            let mut out = String::new();
            push_fixed3(&mut out, x);
            assert_eq!(out, format!("{x:.3}"), "{x}");
        }
        assert_eq!(hex(&[0x00, 0x9f, 0xff]), "009fff");
    }
}
