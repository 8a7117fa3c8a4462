//! [`Host`] over proxy-wasm: each method is one host call of the SDK's `hostcalls`, with failures turned
//! into `None` / empty values instead of the SDK's panics where the SDK lets us. Stream attributes are
//! Envoy's properties, decoded here (integers arrive as 8 little-endian bytes).

use crate::filter::host::{HeaderList, Host, IntAttribute, MetricKind, SharedDataError, TextAttribute};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, MetricType, Status};
use std::time::UNIX_EPOCH;

/// The proxy-wasm host of the current callback (the SDK tracks which stream that is).
pub struct WasmHost;

fn property(path: &[&str]) -> Option<Vec<u8>> {
    hostcalls::get_property(path.to_vec()).ok().flatten()
}

fn int_property(path: &[&str]) -> Option<i64> {
    let bytes: [u8; 8] = property(path)?.as_slice().try_into().ok()?;
    Some(i64::from_le_bytes(bytes))
}

impl Host for WasmHost {
    fn now_ms(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn request_headers(&self) -> HeaderList {
        hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default()
    }

    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name).ok().flatten()
    }

    fn set_request_header(&mut self, name: &str, value: &[u8]) {
        let _ = hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, Some(value));
    }

    fn remove_request_header(&mut self, name: &str) {
        let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name);
    }

    fn request_body(&self, len: usize) -> Vec<u8> {
        hostcalls::get_buffer(BufferType::HttpRequestBody, 0, len).ok().flatten().unwrap_or_default()
    }

    fn replace_request_body_prefix(&mut self, replaced: usize, prefix: &[u8]) {
        let _ = hostcalls::set_buffer(BufferType::HttpRequestBody, 0, replaced, prefix);
    }

    fn response_headers(&self) -> HeaderList {
        hostcalls::get_map_bytes(MapType::HttpResponseHeaders).unwrap_or_default()
    }

    fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, name).ok().flatten()
    }

    fn set_response_headers(&mut self, headers: &[(&str, &[u8])]) {
        let _ = hostcalls::set_map_bytes(MapType::HttpResponseHeaders, headers.to_vec());
    }

    fn response_body(&self, len: usize) -> Vec<u8> {
        hostcalls::get_buffer(BufferType::HttpResponseBody, 0, len).ok().flatten().unwrap_or_default()
    }

    fn replace_response_body(&mut self, replaced: usize, bytes: &[u8]) {
        let _ = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, replaced, bytes);
    }

    fn send_reply(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        let _ = hostcalls::send_http_response(u32::from(status), headers.to_vec(), Some(body));
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
        };
        value.and_then(|v| u64::try_from(v).ok())
    }

    fn set_filter_state(&mut self, key: &str, value: &[u8]) {
        let _ = hostcalls::set_property(vec![key], Some(value));
    }

    fn filter_state(&self, key: &str) -> Option<Vec<u8>> {
        property(&[key])
    }

    fn shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn set_shared_data(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedDataError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(SharedDataError::CasMismatch),
            Err(_) => Err(SharedDataError::Failed),
        }
    }

    fn define_metric(&mut self, kind: MetricKind, name: &str) -> Option<u32> {
        let kind = match kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Histogram => MetricType::Histogram,
        };
        hostcalls::define_metric(kind, name).ok()
    }

    fn increment_metric(&mut self, id: u32, by: i64) {
        let _ = hostcalls::increment_metric(id, by);
    }

    fn record_metric(&mut self, id: u32, value: u64) {
        let _ = hostcalls::record_metric(id, value);
    }

    fn warn(&mut self, message: &str) {
        log::warn!("llm-router: {message}");
    }
}
