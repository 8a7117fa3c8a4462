//! [`Host`] over proxy-wasm: each method is one host call ([`super::abi`], which never panics), with
//! failures turned into `None` / empty values or ignored writes. Stream attributes are Envoy's
//! properties, decoded here (integers arrive as 8 little-endian bytes).

use super::abi::{self, REQUEST_BODY, REQUEST_HEADERS, RESPONSE_BODY, RESPONSE_HEADERS};
use crate::filter::host::{HeaderList, Host, IntAttribute, MetricKind, SharedDataError, TextAttribute};

/// The proxy-wasm host of the current callback (the host tracks which stream that is).
pub struct WasmHost;

fn property(path: &[&str]) -> Option<Vec<u8>> {
    abi::property(path)
}

fn int_property(path: &[&str]) -> Option<i64> {
    let bytes: [u8; 8] = property(path)?.as_slice().try_into().ok()?;
    Some(i64::from_le_bytes(bytes))
}

impl Host for WasmHost {
    fn now_ms(&self) -> u64 {
        abi::now_ns().map_or(0, |ns| ns / 1_000_000)
    }

    fn request_headers(&self) -> HeaderList {
        abi::header_pairs(REQUEST_HEADERS).unwrap_or_default()
    }

    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        abi::header(REQUEST_HEADERS, name)
    }

    fn set_request_header(&mut self, name: &str, value: &[u8]) {
        let _ = abi::set_header(REQUEST_HEADERS, name, value);
    }

    fn remove_request_header(&mut self, name: &str) {
        let _ = abi::remove_header(REQUEST_HEADERS, name);
    }

    fn request_body(&self, len: usize) -> Vec<u8> {
        abi::buffer(REQUEST_BODY, len).unwrap_or_default()
    }

    fn replace_request_body_prefix(&mut self, replaced: usize, prefix: &[u8]) {
        let _ = abi::set_buffer(REQUEST_BODY, replaced, prefix);
    }

    fn response_headers(&self) -> HeaderList {
        abi::header_pairs(RESPONSE_HEADERS).unwrap_or_default()
    }

    fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        abi::header(RESPONSE_HEADERS, name)
    }

    fn set_response_headers(&mut self, headers: &[(&str, &[u8])]) {
        let _ = abi::set_header_pairs(RESPONSE_HEADERS, headers);
    }

    fn response_body(&self, len: usize) -> Vec<u8> {
        abi::buffer(RESPONSE_BODY, len).unwrap_or_default()
    }

    fn response_body_from(&self, start: usize, len: usize) -> Vec<u8> {
        abi::buffer_from(RESPONSE_BODY, start, len).unwrap_or_default()
    }

    fn replace_response_body(&mut self, replaced: usize, bytes: &[u8]) {
        let _ = abi::set_buffer(RESPONSE_BODY, replaced, bytes);
    }

    fn send_reply(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        let _ = abi::send_reply(status, headers, body);
    }

    fn text_attribute(&self, a: TextAttribute) -> Option<String> {
        let path: &[&str] = match a {
            TextAttribute::ClusterName => &["xds", "cluster_name"],
            TextAttribute::ResponseCodeDetails => &["response", "code_details"],
            TextAttribute::TransportFailureReason => &["upstream", "transport_failure_reason"],
        };
        property(path).and_then(|b| String::from_utf8(b).ok())
    }

    fn int_attribute(&self, a: IntAttribute) -> Option<u64> {
        let value = match a {
            IntAttribute::AttemptCount => int_property(&["upstream", "request_attempt_count"]),
            IntAttribute::ResponseCode => int_property(&["response", "code"]),
            IntAttribute::ResponseFlags => int_property(&["response", "flags"]),
            // Nanoseconds since the epoch, on the clock `get_current_time` reads.
            IntAttribute::RequestStartMs => int_property(&["request", "time"]).map(|ns| ns / 1_000_000),
            IntAttribute::RequestBodyBytes => int_property(&["request", "size"]),
        };
        value.and_then(|v| u64::try_from(v).ok())
    }

    fn set_filter_state(&mut self, key: &str, value: &[u8]) {
        let _ = abi::set_property(key, value);
    }

    fn filter_state(&self, key: &str) -> Option<Vec<u8>> {
        property(&[key])
    }

    fn shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        abi::shared_data(key)
    }

    fn set_shared_data(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedDataError> {
        match abi::set_shared_data(key, value, cas) {
            Ok(()) => Ok(()),
            Err(abi::CAS_MISMATCH) => Err(SharedDataError::CasMismatch),
            Err(_) => Err(SharedDataError::Failed),
        }
    }

    fn define_metric(&mut self, kind: MetricKind, name: &str) -> Option<u32> {
        let kind = match kind {
            MetricKind::Counter => 0,
            MetricKind::Histogram => 2,
        };
        abi::define_metric(kind, name)
    }

    fn increment_metric(&mut self, id: u32, by: i64) {
        let _ = abi::increment_metric(id, by);
    }

    fn record_metric(&mut self, id: u32, value: u64) {
        let _ = abi::record_metric(id, value);
    }

    fn warn(&mut self, message: &str) {
        log::warn!("llm-router: {message}");
    }
}
