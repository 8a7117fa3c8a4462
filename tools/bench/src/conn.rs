//! One keep-alive HTTP/1.1 client connection to the loopback, for `bench-load` and `soak`.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Opens a keep-alive connection (connecting may take `connect_timeout`); hyper's connection state
/// machine (reading and writing the socket) runs as its own task until the server closes the
/// connection or the handle is dropped.
pub async fn open(port: u16, connect_timeout: Duration) -> Result<SendRequest<Full<Bytes>>, String> {
    let tcp = tokio::time::timeout(connect_timeout, TcpStream::connect(("127.0.0.1", port)))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}
