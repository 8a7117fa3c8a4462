//! The generated config's bounds, through a real Envoy: one HTTP/2 connection cannot open more streams
//! than the listener announces nor make Envoy's memory grow with the streams it tries; an attempt count
//! the matcher does not know goes to no provider; a client cannot choose its request id (the generation
//! id); the admin interface serves only read-only pages on the loopback interface.

mod common;

use common::envoy::{wasm_path, Envoy};
use common::http::{request, try_request};
use common::router::{catalog, chat_body, endpoint, provider, provider_key, Router, CLIENT_KEY};
use llm_router_cli::envoy_config::{generate, Options};
use llm_router_testkit::mock::{Behavior, MockProvider};
use serde_json::json;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// What the generated listener announces and enforces (`H2_MAX_CONCURRENT_STREAMS` in the generator).
const MAX_STREAMS: u32 = 100;
/// Its HTTP/2 per-stream window (`H2_STREAM_WINDOW`).
const STREAM_WINDOW: u32 = 64 * 1024;

fn one_provider_router() -> Router {
    let m = MockProvider::start("first");
    let c = catalog(
        vec![provider("first", m.port())],
        vec![json!({"id": "test/m", "endpoints": [endpoint("first", "m@first", 1.0)]})],
        json!({}),
    );
    Router::start(c, vec![m])
}

/// A minimal HTTP/2 client over prior-knowledge h2c, raw frames: it does what a hostile client does
/// (opens streams past the announced limit), which a real client library never would.
mod h2 {
    use super::*;

    pub const DATA: u8 = 0;
    pub const HEADERS: u8 = 1;
    pub const RST_STREAM: u8 = 3;
    pub const SETTINGS: u8 = 4;
    pub const PING: u8 = 6;
    pub const GOAWAY: u8 = 7;
    pub const WINDOW_UPDATE: u8 = 8;
    pub const END_HEADERS: u8 = 0x4;
    pub const ACK: u8 = 0x1;
    pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const REFUSED_STREAM: u32 = 0x7;

    pub struct Frame {
        pub kind: u8,
        pub flags: u8,
        pub stream: u32,
        pub payload: Vec<u8>,
    }

    impl Frame {
        pub fn u32_at(&self, i: usize) -> u32 {
            u32::from_be_bytes(self.payload[i..i + 4].try_into().unwrap())
        }
    }

    pub struct Conn {
        pub sock: TcpStream,
        /// Bytes Envoy lets us send on the connection (all streams together).
        pub send_window: i64,
        /// The server's SETTINGS, as (id, value).
        pub settings: Vec<(u16, u32)>,
        /// Streams Envoy refused (RST_STREAM REFUSED_STREAM) and reset otherwise.
        pub refused: Vec<u32>,
        pub reset_other: Vec<(u32, u32)>,
        pub goaway: Option<u32>,
        /// Envoy closed the connection.
        pub closed: bool,
    }

    /// An HPACK string literal (no Huffman coding) with its length as a 7-bit-prefix integer.
    fn string(out: &mut Vec<u8>, s: &str) {
        let mut n = s.len();
        if n < 127 {
            out.push(n as u8);
        } else {
            out.push(127);
            n -= 127;
            while n >= 128 {
                out.push((n % 128 + 128) as u8);
                n /= 128;
            }
            out.push(n as u8);
        }
        out.extend_from_slice(s.as_bytes());
    }

    /// A header block of literal fields without indexing (new names): no state shared between blocks.
    pub fn header_block(headers: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in headers {
            out.push(0x00);
            string(&mut out, name);
            string(&mut out, value);
        }
        out
    }

    impl Conn {
        /// Connects and sends the preface and empty SETTINGS; it does not wait for the server's (which
        /// [`Conn::read_frame`] acknowledges when it comes).
        pub fn open(port: u16) -> Conn {
            let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
            sock.set_nodelay(true).unwrap();
            let mut c = Conn {
                sock,
                send_window: 65_535,
                settings: Vec::new(),
                refused: Vec::new(),
                reset_other: Vec::new(),
                goaway: None,
                closed: false,
            };
            c.sock.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
            c.send(SETTINGS, 0, 0, &[]);
            c
        }

        pub fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
            let len = payload.len() as u32;
            let mut head = [0u8; 9];
            head[..3].copy_from_slice(&len.to_be_bytes()[1..]);
            head[3] = kind;
            head[4] = flags;
            head[5..].copy_from_slice(&stream.to_be_bytes());
            self.sock.write_all(&head).unwrap();
            self.sock.write_all(payload).unwrap();
        }

        /// Reads one frame within `wait` (None when none came) and does what the protocol asks:
        /// acknowledges SETTINGS and PING, credits WINDOW_UPDATE, records resets and GOAWAY.
        pub fn read_frame(&mut self, wait: Duration) -> Option<Frame> {
            if self.closed {
                return None;
            }
            self.sock.set_read_timeout(Some(wait)).unwrap();
            let mut head = [0u8; 9];
            match self.sock.read_exact(&mut head) {
                Ok(()) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return None,
                Err(e) if matches!(e.kind(), ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset) => {
                    self.closed = true;
                    return None;
                }
                Err(e) => panic!("reading from Envoy: {e}"),
            }
            self.sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len];
            self.sock.read_exact(&mut payload).unwrap();
            let f = Frame {
                kind: head[3],
                flags: head[4],
                stream: u32::from_be_bytes(head[5..].try_into().unwrap()) & 0x7fff_ffff,
                payload,
            };
            match f.kind {
                SETTINGS if f.flags & ACK == 0 => {
                    for s in f.payload.chunks(6) {
                        let value = u32::from_be_bytes(s[2..6].try_into().unwrap());
                        self.settings.push((u16::from_be_bytes([s[0], s[1]]), value));
                    }
                    self.send(SETTINGS, ACK, 0, &[]);
                }
                PING if f.flags & ACK == 0 => {
                    let p = f.payload.clone();
                    self.send(PING, ACK, 0, &p);
                }
                WINDOW_UPDATE if f.stream == 0 => self.send_window += i64::from(f.u32_at(0) & 0x7fff_ffff),
                RST_STREAM if f.u32_at(0) == REFUSED_STREAM => self.refused.push(f.stream),
                RST_STREAM => self.reset_other.push((f.stream, f.u32_at(0))),
                GOAWAY => self.goaway = Some(f.u32_at(4)),
                _ => {}
            }
            Some(f)
        }

        pub fn setting(&self, id: u16) -> Option<u32> {
            self.settings.iter().rev().find(|(i, _)| *i == id).map(|(_, v)| *v)
        }
    }
}

/// Polls `f` every 50 ms until it returns Some, for at most `within`.
fn eventually<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn one_http2_connection_gets_at_most_100_streams_and_envoy_memory_stays_bounded() {
    const STREAMS: u32 = 1000;
    // Each stream's body so far: under the stream window, so flow control never stops a stream; a
    // request body never finished, so each stream holds its buffer until its request times out.
    const BODY: usize = 32 * 1024;
    // Envoy's growth allowed for the streams it accepts (100 x 32 KiB = 3.2 MiB of bodies, plus each
    // stream's state; measured: 4.6 MiB): far below what an unbounded connection costs (with Envoy's
    // defaults all 1,000 streams were taken, 45 MiB).
    const GROWTH_BOUND: u64 = 16 << 20;
    let r = one_provider_router();
    // One request first, so that what a first request allocates once is in the baseline.
    assert_eq!(r.chat(&chat_body("test/m", false)).status, 200);
    // Envoy's allocator, read live (the `server.memory_allocated` gauge is refreshed only every stats flush).
    let allocated = || -> u64 {
        let v = r.envoy.admin_get("/memory").json();
        v["allocated"].as_str().and_then(|a| a.parse().ok()).unwrap_or_else(|| panic!("/memory: {v}"))
    };
    let before = allocated();

    let mut c = h2::Conn::open(r.envoy.port);
    let auth = format!("Bearer {CLIENT_KEY}");
    let block = h2::header_block(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "127.0.0.1"),
        (":path", "/v1/chat/completions"),
        ("authorization", &auth),
        ("content-type", "application/json"),
    ]);
    // Every stream at once, before Envoy's SETTINGS could be read, as a hostile client would.
    let ids: Vec<u32> = (0..STREAMS).map(|i| 2 * i + 1).collect();
    for id in &ids {
        c.send(h2::HEADERS, h2::END_HEADERS, *id, &block);
    }
    // Envoy refuses each stream past the limit with RST_STREAM (REFUSED_STREAM), keeping the connection.
    let refused = eventually(Duration::from_secs(20), || {
        while c.read_frame(Duration::from_millis(10)).is_some() {}
        (c.refused.len() + c.reset_other.len() >= (STREAMS - MAX_STREAMS) as usize || c.closed).then_some(())
    });
    assert!(refused.is_some(), "refused {} streams, reset {:?}", c.refused.len(), c.reset_other);
    assert_eq!(c.setting(h2::SETTINGS_MAX_CONCURRENT_STREAMS), Some(MAX_STREAMS), "{:?}", c.settings);
    assert_eq!(c.setting(h2::SETTINGS_INITIAL_WINDOW_SIZE), Some(STREAM_WINDOW), "{:?}", c.settings);
    assert_eq!(c.goaway, None, "the connection stays up");
    assert_eq!(c.reset_other, [], "only refusals");
    assert_eq!(c.refused.len(), (STREAMS - MAX_STREAMS) as usize);
    // The bodies, on the streams Envoy kept, as far as flow control lets us; the refused ones get none.
    let open: Vec<u32> = ids.iter().copied().filter(|id| !c.refused.contains(id)).collect();
    assert_eq!(open.len(), MAX_STREAMS as usize);
    let chunk = vec![b' '; 16 * 1024];
    for id in &open {
        let mut sent = 0;
        while sent < BODY {
            let deadline = Instant::now() + Duration::from_secs(20);
            while c.send_window < chunk.len() as i64 {
                assert!(Instant::now() < deadline, "Envoy stopped crediting the connection window");
                c.read_frame(Duration::from_millis(100));
            }
            c.send(h2::DATA, 0, *id, &chunk);
            c.send_window -= chunk.len() as i64;
            sent += chunk.len();
        }
    }
    // Envoy holds exactly the streams it announced, each with its body so far.
    let active = eventually(Duration::from_secs(20), || {
        while c.read_frame(Duration::from_millis(1)).is_some() {}
        let rx = r.envoy.stat("http.llm_router.downstream_cx_rx_bytes_total").unwrap_or(0);
        let active = r.envoy.stat("http.llm_router.downstream_rq_active").unwrap_or(0);
        (active == u64::from(MAX_STREAMS) && rx >= u64::from(MAX_STREAMS) * BODY as u64).then_some(active)
    });
    assert_eq!(active, Some(u64::from(MAX_STREAMS)), "streams Envoy holds");
    let after = allocated();
    let growth = after.saturating_sub(before);
    eprintln!(
        "Envoy's allocated memory (admin /memory): {before} before, {after} with {MAX_STREAMS} streams of \
         {BODY} bytes held ({:.1} MiB more); {} streams refused",
        growth as f64 / (1 << 20) as f64,
        c.refused.len()
    );
    assert!(growth < GROWTH_BOUND, "Envoy grew by {growth} bytes (bound {GROWTH_BOUND})");
    assert!(r.mock("first").requests().len() == 1, "no unfinished request reached the provider");

    // Once the client has acknowledged the limit, a stream past it is a protocol error: Envoy closes the
    // connection, and every stream it held goes with it.
    c.send(h2::HEADERS, h2::END_HEADERS, 2 * STREAMS + 1, &block);
    let closed = eventually(Duration::from_secs(20), || {
        while c.read_frame(Duration::from_millis(10)).is_some() {}
        c.closed.then_some(())
    });
    assert!(closed.is_some(), "Envoy kept a connection that opened stream {}", MAX_STREAMS + 1);
    let drained = eventually(Duration::from_secs(20), || {
        (r.envoy.stat("http.llm_router.downstream_rq_active") == Some(0)).then_some(())
    });
    assert!(drained.is_some(), "streams still active after the connection closed");
}

#[test]
fn a_client_cannot_choose_its_request_id_nor_send_a_header_under_another_name() {
    let r = one_provider_router();
    let auth = format!("Bearer {CLIENT_KEY}");
    let resp = request(
        r.envoy.port,
        "POST",
        "/v1/chat/completions",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            // The filter names the generation after the request id, and draws with it as entropy.
            ("x-request-id", "client-chosen"),
            // One header to CGI-style servers, which read both as HTTP_X_API_KEY.
            ("x_api_key", "sk-client-secret"),
        ],
        chat_body("test/m", false).to_string().as_bytes(),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let generation = resp.header("x-generation-id").unwrap_or_default();
    assert!(generation.starts_with("gen-") && generation != "gen-client-chosen", "{generation}");
    let sent = &r.mock("first").requests()[0];
    assert_eq!(sent.header("x-request-id"), generation.strip_prefix("gen-"), "{:?}", sent.headers);
    assert_eq!(sent.header("x_api_key"), None, "{:?}", sent.headers);
    // Envoy appends no client address for the provider to see.
    assert_eq!(sent.header("x-forwarded-for"), None, "{:?}", sent.headers);
    assert_eq!(r.envoy.stat("http1.dropped_headers_with_underscores"), Some(1));
}

#[test]
fn an_attempt_count_the_matcher_does_not_know_goes_to_no_provider() {
    // Three providers, the first two failing. The matcher is generated with keys "1" and "2" (retries 1
    // and 2); "2" is renamed here, so the third attempt carries a count the matcher does not know, as a
    // count out of step with the matcher would (a retry past the plan, a future Envoy counting otherwise).
    let mocks: Vec<MockProvider> =
        ["first", "second", "third"].into_iter().map(MockProvider::start).collect();
    for m in &mocks[..2] {
        m.set_behavior(Behavior::Status { code: 503, headers: vec![], body: "{}".into() });
    }
    let c = catalog(
        mocks.iter().map(|m| provider(m.name(), m.port())).collect(),
        vec![json!({"id": "test/m", "endpoints": [
            endpoint("first", "m@first", 1.0),
            endpoint("second", "m@second", 2.0),
            endpoint("third", "m@third", 3.0),
        ]})],
        json!({}),
    );
    let opts = Options {
        port: 0,
        admin_port: 0,
        wasm_path: wasm_path().display().to_string(),
        ..Options::default()
    };
    let yaml = generate(&c.to_string(), &opts).unwrap();
    let known = "\n                                '2':\n";
    assert_eq!(yaml.matches(known).count(), 1, "the matcher's key for retry 2 moved:\n{yaml}");
    let yaml = yaml.replace(known, "\n                                '9':\n");
    let keys: Vec<(String, String)> = mocks
        .iter()
        .map(|m| (format!("{}_API_KEY", m.name().to_uppercase()), provider_key(m.name())))
        .collect();
    let env: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let envoy = Envoy::start(&yaml, &env).unwrap_or_else(|e| panic!("{e}"));
    let resp = common::http::post_json(
        envoy.port,
        "/v1/chat/completions",
        Some(CLIENT_KEY),
        &chat_body("test/m", false),
    );
    let tried: Vec<usize> = mocks.iter().map(|m| m.requests().len()).collect();
    // Slot 0's provider is for the first attempt only: before, the unknown count went back to it.
    assert_eq!(tried, [1, 1, 0], "requests per provider; client got {} {}", resp.status, resp.text());
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(resp.json()["error"]["metadata"]["error_type"], "provider_unavailable");
}

#[test]
fn the_admin_interface_is_on_loopback_and_serves_only_read_only_pages() {
    let r = one_provider_router();
    let address = std::fs::read_to_string(r.envoy.dir().join("admin.txt")).unwrap();
    assert!(address.starts_with("127.0.0.1:"), "{address}");
    for page in ["/ready", "/stats?format=json", "/stats/prometheus", "/server_info", "/listeners", "/memory"]
    {
        let resp = r.envoy.admin_get(page);
        assert_eq!(resp.status, 200, "{page}: {}", resp.text());
    }
    // Raising the log level would print request headers, provider keys among them; the others change
    // or stop Envoy.
    for (method, page) in [
        ("POST", "/logging?level=debug"),
        ("POST", "/runtime_modify?llm_router.health_log_min_status=600"),
        ("POST", "/healthcheck/fail"),
        ("POST", "/reset_counters"),
        ("POST", "/drain_listeners"),
        ("POST", "/quitquitquit"),
    ] {
        let resp = try_request(r.envoy.admin_port, method, page, &[], b"").unwrap();
        assert_eq!(resp.status, 403, "{method} {page}: {}", resp.text());
    }
    assert_eq!(r.envoy.admin_get("/ready").text().trim(), "LIVE", "still running");
    assert_eq!(r.chat(&chat_body("test/m", false)).status, 200);
}
