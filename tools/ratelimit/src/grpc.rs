//! Just enough gRPC for one unary method over h2c: length-prefixed messages, `grpc-status` in
//! trailers, and a client for tests.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame};
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::proto::{RateLimitRequest, RateLimitResponse, SHOULD_RATE_LIMIT_PATH};

/// gRPC status codes used here.
pub mod status {
    pub const OK: u32 = 0;
    /// What grpc-go answers for an error a handler returns that is not a gRPC status, which is how
    /// envoyproxy/ratelimit reports its service and Redis errors.
    pub const UNKNOWN: u32 = 2;
    pub const UNIMPLEMENTED: u32 = 12;
    pub const INTERNAL: u32 = 13;
}

/// Frames one message: a 0 byte (not compressed), its length (big-endian u32), the message.
pub fn frame(message: &impl prost::Message) -> Bytes {
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    // Encoding into a buffer with enough room cannot fail.
    let _ = message.encode(&mut buf);
    buf.freeze()
}

/// The single uncompressed message of a unary call's body.
pub fn unframe(body: &[u8]) -> Result<&[u8], String> {
    let (&[flag, a, b, c, d], message) =
        body.split_first_chunk::<5>().ok_or("grpc body shorter than a frame header")?;
    if flag != 0 {
        return Err("compressed grpc messages are not supported".into());
    }
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    if message.len() != len {
        return Err(format!("grpc frame says {len} bytes, body has {}", message.len()));
    }
    Ok(message)
}

/// `grpc-message` is percent-encoded: anything outside printable ASCII, and `%` itself.
fn percent_encode(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    for b in msg.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A unary gRPC response body: at most one message, then the trailers with the status.
pub struct GrpcBody {
    message: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl GrpcBody {
    /// A response: `Ok(message)` with status 0, or `Err((code, text))` with no message.
    pub fn response(result: Result<Bytes, (u32, String)>) -> Response<GrpcBody> {
        let mut trailers = HeaderMap::new();
        let (message, code) = match result {
            Ok(m) => (Some(m), status::OK),
            Err((code, text)) => {
                if let Ok(v) = HeaderValue::from_str(&percent_encode(&text)) {
                    trailers.insert("grpc-message", v);
                }
                (None, code)
            }
        };
        trailers.insert("grpc-status", HeaderValue::from(code));
        let mut response = Response::new(GrpcBody { message, trailers: Some(trailers) });
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        response
    }
}

impl Body for GrpcBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(m) = this.message.take() {
            return Poll::Ready(Some(Ok(Frame::data(m))));
        }
        Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.message.is_none() && self.trailers.is_none()
    }
}

/// A non-OK answer to a gRPC call, or a failure to make it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// The gRPC status, `None` when there was none (connection or HTTP failure).
    pub code: Option<u32>,
    pub message: String,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.code {
            Some(c) => write!(f, "grpc-status {c}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for CallError {}

fn failed(message: impl std::fmt::Display) -> CallError {
    CallError { code: None, message: message.to_string() }
}

/// Calls `ShouldRateLimit` on `addr` over a new h2c connection, as Envoy's gRPC client would.
pub async fn should_rate_limit(
    addr: SocketAddr,
    request: &RateLimitRequest,
) -> Result<RateLimitResponse, CallError> {
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(failed)?;
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .map_err(failed)?;
    tokio::spawn(conn);
    let http_request = Request::post(format!("http://{addr}{SHOULD_RATE_LIMIT_PATH}"))
        .header(CONTENT_TYPE, "application/grpc")
        .header("te", "trailers")
        .body(Full::new(frame(request)))
        .map_err(failed)?;
    let response = sender.send_request(http_request).await.map_err(failed)?;
    if !response.status().is_success() {
        return Err(failed(format!("HTTP status {}", response.status())));
    }
    let headers = response.headers().clone();
    let collected = response.into_body().collect().await.map_err(failed)?;
    // A trailers-only answer carries the status in the headers.
    let meta = collected.trailers().cloned().unwrap_or(headers);
    let code = meta.get("grpc-status").and_then(|v| v.to_str().ok()?.parse::<u32>().ok());
    match code {
        Some(status::OK) => {
            let body = collected.to_bytes();
            let message = unframe(&body).map_err(failed)?;
            prost::Message::decode(message).map_err(failed)
        }
        code => Err(CallError {
            code,
            message: meta.get("grpc-message").and_then(|v| v.to_str().ok()).unwrap_or("").to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let r = RateLimitRequest { domain: "d".into(), descriptors: vec![], hits_addend: 3 };
        let f = frame(&r);
        assert_eq!(&f[..5], &[0, 0, 0, 0, 5]);
        let back: RateLimitRequest = prost::Message::decode(unframe(&f).unwrap()).unwrap();
        assert_eq!(back, r);
        assert!(unframe(&f[..4]).is_err());
        assert!(unframe(&f[..6]).is_err());
        let mut compressed = f.to_vec();
        compressed[0] = 1;
        assert!(unframe(&compressed).is_err());
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(percent_encode("a b%\n"), "a b%25%0A");
    }
}
