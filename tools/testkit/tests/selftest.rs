//! Tests of the test harness itself: the mock provider, the HTTP client, and
//! running Envoy (plain and as a TLS front).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use llm_router_testkit::envoy::{self, certs_dir, Envoy, TlsFront};
use llm_router_testkit::http::{self, open_stream, open_stream_within, post_json, request};
use llm_router_testkit::mock::{Behavior, MockProvider, FIRST_EVENT_TIMEOUT};
use serde_json::{json, Value};

const CHAT: &str = "/v1/chat/completions";

/// Poll `cond` every 10 ms until it holds, panicking after `secs` seconds.
fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn data_json(event: &str) -> Value {
    let data = event.strip_prefix("data: ").unwrap_or_else(|| panic!("not a data event: {event:?}"));
    serde_json::from_str(data).unwrap_or_else(|e| panic!("bad event JSON ({e}): {data}"))
}

/// Checks the 5 events of a mock stream for provider `name` and `model`.
fn check_stream_events(events: &[String], name: &str, model: &str) {
    assert_eq!(events.len(), 5, "events: {events:#?}");
    let parts: Vec<Value> = events[..4].iter().map(|e| data_json(e)).collect();
    let deltas: Vec<&str> =
        parts[..3].iter().map(|p| p["choices"][0]["delta"]["content"].as_str().unwrap_or("?")).collect();
    assert_eq!(deltas, ["Hello ", "from ", name]);
    for p in &parts {
        assert_eq!(p["object"], "chat.completion.chunk");
        assert_eq!(p["model"], model);
        assert_eq!(p["id"], parts[0]["id"]);
    }
    assert_eq!(parts[0]["choices"][0]["finish_reason"], Value::Null);
    assert_eq!(parts[2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(parts[3]["choices"], json!([]));
    assert_eq!(parts[3]["usage"], json!({"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}));
    assert_eq!(events[4], "data: [DONE]");
}

#[test]
fn mock_records_post_and_answers_ok() {
    let mock = MockProvider::start("alpha");
    assert_eq!(mock.name(), "alpha");
    let body = json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]});
    let r = post_json(mock.port(), CHAT, Some("sk-123"), &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("X-Ratelimit-Remaining-Requests"), Some("99"));
    assert_eq!(r.header("x-mock-secret"), Some("internal"));
    let v = r.json();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-mock-"), "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(v["model"], "gpt-test");
    assert_eq!(v["system_fingerprint"], Value::Null);
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from alpha");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["total_tokens"], 18);

    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].path, CHAT);
    assert_eq!(reqs[0].header("Authorization"), Some("Bearer sk-123"));
    assert_eq!(reqs[0].header("content-type"), Some("application/json"));
    assert_eq!(reqs[0].json(), body);
    assert!(reqs[0].headers.iter().all(|(n, _)| *n == n.to_lowercase()));

    // Only chat completions are recorded; ids count up.
    let r2 = post_json(mock.port(), "/openai/v1/chat/completions?x=1", None, &body);
    assert_ne!(r2.json()["id"], v["id"]);
    assert_eq!(request(mock.port(), "GET", "/health", &[], b"").json(), json!({"ok": true}));
    assert_eq!(post_json(mock.port(), "/v1/embeddings", None, &body).status, 404);
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].path, "/openai/v1/chat/completions?x=1");
    assert_eq!(reqs[1].header("authorization"), None);

    mock.clear();
    assert!(mock.requests().is_empty());

    // A non-JSON body is recorded (json() is Null) and answered 400.
    let r = request(mock.port(), "POST", CHAT, &[], b"not json");
    assert_eq!(r.status, 400);
    assert_eq!(mock.requests()[0].json(), Value::Null);
}

#[test]
fn mock_status_behavior() {
    let mock = MockProvider::start("beta");
    mock.set_behavior(Behavior::Status {
        code: 429,
        headers: vec![("retry-after".into(), "7".into())],
        body: r#"{"error":{"message":"slow down"}}"#.into(),
    });
    let body = json!({"model": "m", "stream": true});
    let r = post_json(mock.port(), CHAT, Some("k"), &body);
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json()["error"]["message"], "slow down");
    assert_eq!(mock.requests().len(), 1);

    mock.set_behavior(Behavior::Status {
        code: 503,
        headers: vec![("content-type".into(), "text/plain".into())],
        body: "down".into(),
    });
    let r = post_json(mock.port(), CHAT, None, &body);
    assert_eq!((r.status, r.text().as_str()), (503, "down"));
    assert_eq!(r.header("content-type"), Some("text/plain"));
    // Health probes still succeed.
    assert_eq!(request(mock.port(), "GET", "/", &[], b"").status, 200);

    mock.set_behavior(Behavior::Ok);
    assert_eq!(post_json(mock.port(), CHAT, None, &json!({"model": "m"})).status, 200);
    assert_eq!(mock.requests().len(), 3);
}

#[test]
fn mock_flaky_fails_an_even_share_and_counts_what_it_received() {
    let mock = MockProvider::start("flaky");
    mock.set_recording(false);
    let body = json!({"model": "m"});
    mock.set_behavior(Behavior::Flaky { percent: 50, code: 503 });
    let statuses: Vec<u16> = (0..6).map(|_| post_json(mock.port(), CHAT, None, &body).status).collect();
    assert_eq!(statuses, [200, 503, 200, 503, 200, 503], "every other request fails");
    assert_eq!(post_json(mock.port(), CHAT, None, &body).status, 200);
    let failed = post_json(mock.port(), CHAT, None, &body);
    assert_eq!(failed.status, 503);
    assert_eq!(failed.header("content-type"), Some("application/json"));
    assert!(failed.json()["error"]["message"].as_str().unwrap().contains("flaky"), "{}", failed.text());
    // Streams too; health probes and other paths are not counted.
    let r = post_json(mock.port(), CHAT, None, &json!({"model": "m", "stream": true}));
    assert_eq!(r.status, 200);
    assert_eq!(request(mock.port(), "GET", "/health", &[], b"").status, 200);
    assert_eq!(post_json(mock.port(), "/v1/embeddings", None, &body).status, 200);
    // received() counts every chat request although none was recorded.
    assert_eq!(mock.received(), 9);
    assert!(mock.requests().is_empty());

    // 25 %: the 4th, 8th, …; 0 and 100: never and always.
    let fresh = MockProvider::start("flaky-25");
    fresh.set_behavior(Behavior::Flaky { percent: 25, code: 429 });
    let statuses: Vec<u16> = (0..8).map(|_| post_json(fresh.port(), CHAT, None, &body).status).collect();
    assert_eq!(statuses, [200, 200, 200, 429, 200, 200, 200, 429]);
    fresh.set_behavior(Behavior::Flaky { percent: 0, code: 503 });
    assert!((0..4).all(|_| post_json(fresh.port(), CHAT, None, &body).status == 200));
    fresh.set_behavior(Behavior::Flaky { percent: 100, code: 502 });
    assert!((0..4).all(|_| post_json(fresh.port(), CHAT, None, &body).status == 502));
    assert_eq!(fresh.received(), 16);
    assert_eq!(fresh.requests().len(), 16, "recorded by default");
}

/// Reads a chunked response on `s` (after its head) chunk by chunk: each chunk's data and when it
/// arrived, until the last chunk.
fn read_chunks(r: &mut BufReader<TcpStream>) -> Vec<(Vec<u8>, Instant)> {
    let mut chunks = Vec::new();
    loop {
        let mut size = String::new();
        r.read_line(&mut size).unwrap();
        let at = Instant::now();
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or_else(|e| panic!("{size:?}: {e}"));
        let mut data = vec![0; n + 2];
        r.read_exact(&mut data).unwrap();
        assert!(data.ends_with(b"\r\n"));
        if n == 0 {
            return chunks;
        }
        data.truncate(n);
        chunks.push((data, at));
    }
}

#[test]
fn mock_trickle_sends_the_body_one_byte_at_a_time() {
    let mock = MockProvider::start("trickle");
    let interval = Duration::from_millis(4);
    mock.set_behavior(Behavior::Trickle { interval_ms: 4 });
    for stream in [false, true] {
        let conn = TcpStream::connect(("127.0.0.1", mock.port())).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut w = conn.try_clone().unwrap();
        let mut r = BufReader::new(conn);
        let body = json!({"model": "slow", "stream": stream}).to_string();
        let sent = Instant::now();
        write!(w, "POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        let mut head = String::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            head.push_str(&line.to_lowercase());
        }
        // The head at once (long before the body could have trickled), chunked.
        assert!(sent.elapsed() < Duration::from_secs(2), "{:?}", sent.elapsed());
        assert!(
            head.starts_with("http/1.1 200 ok\r\n") && head.contains("transfer-encoding: chunked"),
            "{head}"
        );
        let chunks = read_chunks(&mut r);
        assert!(chunks.len() > 50, "{} chunks", chunks.len());
        assert!(chunks.iter().all(|(c, _)| c.len() == 1), "one byte per chunk");
        let first = chunks[0].1;
        let last = chunks[chunks.len() - 1].1;
        let least = interval * (chunks.len() as u32 - 1);
        assert!(last - first >= least, "{} bytes in {:?}, at least {least:?}", chunks.len(), last - first);
        let bytes: Vec<u8> = chunks.into_iter().flat_map(|(c, _)| c).collect();
        let text = String::from_utf8(bytes).unwrap();
        if stream {
            assert!(text.starts_with("data: {") && text.ends_with("data: [DONE]\n\n"), "{text}");
            assert!(text.contains("Hello "), "{text}");
        } else {
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["choices"][0]["message"]["content"], "Hello from trickle");
            assert_eq!(v["model"], "slow");
        }
    }
    assert_eq!(mock.received(), 2);
}

#[test]
fn mock_streams_sse() {
    let mock = MockProvider::start("gamma");
    let body = json!({"model": "stream-model", "stream": true});
    let mut s = open_stream(
        mock.port(),
        "POST",
        CHAT,
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    );
    assert_eq!(s.status, 200);
    assert_eq!(s.header("content-type"), Some("text/event-stream"));
    assert_eq!(s.header("transfer-encoding"), Some("chunked"));
    assert_eq!(s.header("x-mock-secret"), Some("internal"));
    let events = s.collect_events();
    check_stream_events(&events, "gamma", "stream-model");
    assert_eq!(s.next_event(), None);
    assert_eq!(mock.requests()[0].json(), body);
}

#[test]
fn mock_hold_and_release_stream() {
    let mock = MockProvider::start("delta");
    mock.hold_streams(true);
    let body = json!({"model": "m", "stream": true}).to_string();
    let mut s = open_stream_within(FIRST_EVENT_TIMEOUT, mock.port(), "POST", CHAT, &[], body.as_bytes());
    assert_eq!(s.status, 200);
    let first = s.next_event().expect("event 1");
    assert_eq!(data_json(&first)["choices"][0]["delta"]["content"], "Hello ");
    // The stream counts as held from before event 1 was sent: it is parked before event 2.
    assert_eq!(mock.held(), 1);
    mock.release_stream();
    let mut events = vec![first];
    events.extend(s.collect_events());
    check_stream_events(&events, "delta", "m");
    wait_until(10, "the stream to be released", || mock.held() == 0);

    // Still holding: the next stream pauses too; hold_streams(false) lets it go.
    let mut s = open_stream_within(FIRST_EVENT_TIMEOUT, mock.port(), "POST", CHAT, &[], body.as_bytes());
    s.next_event().expect("event 1");
    assert_eq!(mock.held(), 1, "the 2nd stream is held");
    mock.hold_streams(false);
    assert_eq!(s.collect_events().len(), 4);

    // Not holding: streams run straight through.
    let mut s = open_stream(mock.port(), "POST", CHAT, &[], body.as_bytes());
    assert_eq!(s.collect_events().len(), 5);
}

#[test]
fn mock_holds_a_stream_past_any_client_read_timeout() {
    // A held stream has no hold timeout of its own: a client (or a buffering proxy in front of the mock)
    // that waits for event 2 gives up first, while the mock still holds the stream.
    let mock = MockProvider::start("theta");
    mock.hold_streams(true);
    let body = json!({"model": "m", "stream": true}).to_string();
    let mut s = open_stream_within(FIRST_EVENT_TIMEOUT, mock.port(), "POST", CHAT, &[], body.as_bytes());
    assert!(s.next_event().is_some_and(|e| e.contains("Hello ")));
    s.set_read_timeout(Duration::from_millis(300));
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.next_event()));
    assert!(waited.is_err(), "event 2 arrived while held: {waited:?}");
    assert_eq!(mock.held(), 1);
    drop(s);
    // A stream whose client went away stops holding once released.
    mock.release_stream();
    wait_until(10, "the stream to be released", || mock.held() == 0);
}

#[test]
fn mock_paced_streams_hold_and_end_at_stop() {
    let mock = MockProvider::start("mu");
    let body = json!({"model": "m", "stream": true}).to_string();
    let open = || open_stream_within(FIRST_EVENT_TIMEOUT, mock.port(), "POST", CHAT, &[], body.as_bytes());
    // Pauses of 25 ms (tokio's timer) and of 1 ms (slept on the blocking pool).
    for pause in [25, 1] {
        mock.set_stream_shape(2, Duration::from_millis(pause));
        let events = open().collect_events();
        assert_eq!(events.len(), 4, "{pause} ms: {events:#?}");
        assert_eq!(data_json(&events[1])["choices"][0]["delta"]["content"], "token1 ");
    }
    mock.hold_streams(true);
    let mut s = open();
    assert!(s.next_event().is_some_and(|e| e.contains("token0 ")));
    assert_eq!(mock.held(), 1);
    mock.release_stream();
    assert_eq!(s.collect_events().len(), 3);
    // A held stream ends when the mock stops: stop() does not wait out the hold (it would give up on the
    // stream's thread after 5 s), and the client sees the response cut short.
    let mut s = open();
    assert!(s.next_event().is_some());
    assert_eq!(mock.held(), 1);
    let t = Instant::now();
    mock.stop();
    assert!(t.elapsed() < Duration::from_secs(4), "stop took {:?}", t.elapsed());
    let rest = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.collect_events()));
    assert!(rest.is_err(), "the stream ended cleanly after stop: {rest:?}");
}

/// Reads one response from a raw keep-alive connection: (status line, body).
fn read_raw_response(r: &mut BufReader<TcpStream>) -> (String, String) {
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    let mut len = 0;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some(v) = line.to_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    (status.trim().to_string(), String::from_utf8(body).unwrap())
}

#[test]
fn mock_keep_alive_chunked_and_malformed() {
    let mock = MockProvider::start("eps");
    let conn = TcpStream::connect(("127.0.0.1", mock.port())).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);

    let b1 = r#"{"model":"one"}"#;
    write!(w, "POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{b1}", b1.len()).unwrap();
    let (st, body) = read_raw_response(&mut r);
    assert_eq!(st, "HTTP/1.1 200 OK");
    assert!(body.contains(r#""model":"one""#), "{body}");

    // Same connection, chunked request body.
    w.write_all(
        format!("POST {CHAT} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{{\"mod\r\na\r\nel\":\"two\"}}\r\n0\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let (st, body) = read_raw_response(&mut r);
    assert_eq!(st, "HTTP/1.1 200 OK");
    assert!(body.contains(r#""model":"two""#), "{body}");

    // Unknown method on the same connection: 405, connection stays open.
    w.write_all(b"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").unwrap();
    assert_eq!(read_raw_response(&mut r).0, "HTTP/1.1 405 Method Not Allowed");

    // Garbage: 400, then the server closes the connection.
    w.write_all(b"this is not http\r\n\r\n").unwrap();
    assert_eq!(read_raw_response(&mut r).0, "HTTP/1.1 400 Bad Request");
    let mut rest = Vec::new();
    assert_eq!(r.read_to_end(&mut rest).map(|_| rest.len()).unwrap_or(0), 0);

    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].json(), json!({"model": "two"}));
    assert_eq!(reqs[1].header("transfer-encoding"), Some("chunked"));

    // Malformed requests get 400 on a fresh connection too, which is then closed. (Raw: an HTTP client
    // sends none of these.)
    for raw in [
        &b"hello\r\n\r\n"[..],
        b"GET / HTTP/2\r\n\r\n",
        b"POST / HTTP/1.1\r\ncontent-length: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nno colon\r\n\r\n",
        // A malformed body framing.
        b"POST /v1/chat/completions HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    ] {
        let text = raw_exchange(mock.port(), raw);
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{raw:?} → {text}");
    }
    // Chunk extensions and request trailers are read past; `connection: close` is honoured.
    let text = raw_exchange(
        mock.port(),
        b"POST /v1/chat/completions HTTP/1.1\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
          3;ext=1\r\n{\"m\r\n9\r\nodel\":\"x\"\r\n1\r\n}\r\n0\r\nx-t: 1\r\n\r\n",
    );
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n") && text.contains("connection: close\r\n"), "{text}");
    assert_eq!(mock.requests().last().map(|r| r.json()), Some(json!({"model": "x"})));
}

/// Sends `raw` on a fresh connection and reads until the server closes it.
fn raw_exchange(port: u16, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("{raw:?}: {e} after {:?}", String::from_utf8_lossy(&out)));
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads from `r` until what was read ends with `end`.
fn read_until_end(r: &mut impl Read, end: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(end.as_bytes()) {
        let n = r.read(&mut buf).unwrap_or_else(|e| panic!("{e} after {:?}", String::from_utf8_lossy(&got)));
        assert!(n > 0, "closed before {end:?}: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).unwrap()
}

#[test]
fn mock_trailers_and_cuts_on_the_wire() {
    // Raw: an HTTP client hides the trailer and a missing last chunk, which are what is checked here.
    let mock = MockProvider::start("iota");
    mock.set_behavior(Behavior::Trailers);
    let conn = TcpStream::connect(("127.0.0.1", mock.port())).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    let b = r#"{"model":"m"}"#;
    write!(w, "POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{b}", b.len()).unwrap();
    let text = read_until_end(&mut r, "\r\n0\r\nx-mock-trailer: done\r\n\r\n");
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    for h in ["transfer-encoding: chunked", "trailer: x-mock-trailer", "x-mock-secret: internal"] {
        assert!(head.contains(h), "{h} in {head}");
    }
    let (size, rest) = body.split_once("\r\n").unwrap();
    let json = &rest[..usize::from_str_radix(size, 16).unwrap()];
    assert_eq!(
        serde_json::from_str::<Value>(json).unwrap()["choices"][0]["message"]["content"],
        "Hello from iota"
    );
    // The connection goes on after the raw response.
    w.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_raw_response(&mut r), ("HTTP/1.1 200 OK".to_string(), r#"{"ok":true}"#.to_string()));

    let stream = |model: &str| {
        let b = json!({"model": model, "stream": true}).to_string();
        format!(
            "POST {CHAT} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )
    };
    // A clean cut: the response ends (last chunk) after 2 events, without [DONE].
    mock.set_behavior(Behavior::Cut { after_events: 2, reset: false });
    let text = raw_exchange(mock.port(), stream("clean").as_bytes());
    assert_eq!(text.matches("data: ").count(), 2, "{text}");
    assert!(!text.contains("[DONE]") && text.ends_with("\r\n0\r\n\r\n"), "{text}");
    // A reset: the connection closes after 2 events, without the last chunk.
    mock.set_behavior(Behavior::Cut { after_events: 2, reset: true });
    let text = raw_exchange(mock.port(), stream("reset").as_bytes());
    assert_eq!(text.matches("data: ").count(), 2, "{text}");
    assert!(text.contains(r#""content":"from ""#), "both events are on the wire: {text}");
    assert!(!text.contains("[DONE]") && !text.ends_with("0\r\n\r\n"), "{text}");
}

#[test]
fn mock_gzips_completions_when_accepted() {
    let mock = MockProvider::start("kappa");
    let body = json!({"model": "m"}).to_string();
    let r = request(mock.port(), "POST", CHAT, &[("accept-encoding", "br, gzip;q=0.5")], body.as_bytes());
    assert_eq!((r.status, r.header("content-encoding")), (200, Some("gzip")));
    // Real gzip: gzip(1) decodes it.
    let mut child =
        Command::new("gzip").arg("-dc").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(&r.body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from kappa");
    // Not accepted: plain JSON.
    let r = request(mock.port(), "POST", CHAT, &[("accept-encoding", "identity")], body.as_bytes());
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.json()["model"], "m");
}

#[test]
fn client_keeps_repeated_headers_in_order() {
    let mock = MockProvider::start("lambda");
    let h = |n: &str, v: &str| (n.to_string(), v.to_string());
    mock.set_behavior(Behavior::Status {
        code: 503,
        headers: vec![h("X-Multi", "1"), h("x-other", "a"), h("x-multi", "2")],
        body: "{}".into(),
    });
    let r = request(mock.port(), "POST", CHAT, &[], b"{}");
    assert_eq!(r.header_all("x-multi"), ["1", "2"]);
    assert_eq!(r.header("X-OTHER"), Some("a"));
    assert!(r.headers.iter().all(|(n, _)| *n == n.to_lowercase()), "{:?}", r.headers);
    // What the client sent: its own headers are host, content-length and connection: close, no others.
    let sent = &mock.requests()[0];
    let names: Vec<&str> = sent.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["host", "content-length", "connection"]);
    assert_eq!(sent.header("connection"), Some("close"));
}

#[test]
fn mock_stop_refuses_connections_and_port_in_use() {
    let mock = MockProvider::start("zeta");
    let port = mock.port();
    let err = MockProvider::start_on("dup", port).err().expect("port is taken");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    // An idle keep-alive connection is closed by stop().
    let mut idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(request(port, "GET", "/", &[], b"").status, 200);
    mock.stop();
    // Polled: a process that another test spawns at that moment holds a copy of the listening socket from
    // its fork until its exec (close-on-exec), so connections may be accepted for those microseconds
    // (seen in ~2% of stops with processes spawned in a loop beside them, the std mock as well).
    wait_until(10, "connections to be refused", || TcpStream::connect(("127.0.0.1", port)).is_err());
    let mut buf = [0u8; 16];
    assert_eq!(idle.read(&mut buf).unwrap_or(0), 0);
    // The port can be reused.
    let again = MockProvider::start_on("again", port).expect("rebind");
    assert_eq!(request(port, "GET", "/", &[], b"").status, 200);
    drop(again);
}

/// Kills the child on drop.
struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn mock_provider_binary() {
    let bin = env!("CARGO_BIN_EXE_mock-provider");
    let mut child = Kill(
        Command::new(bin)
            .args(["--port", "0", "--name", "cli-mock", "--status", "503"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port: u16 = line
        .trim()
        .strip_prefix("mock-provider cli-mock listening on 127.0.0.1:")
        .unwrap_or_else(|| panic!("unexpected banner {line:?}"))
        .parse()
        .unwrap();
    let r = post_json(port, CHAT, None, &json!({"model": "m"}));
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"]["code"], 503);

    let out = Command::new(bin).args(["--port", &port.to_string(), "--name", "dup"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), format!("port {port} is in use"));
    drop(child);

    // Stream shape flags (`--flag=value` too, fractional milliseconds).
    let mut child = Kill(
        Command::new(bin)
            .args(["--port=0", "--name", "shaped", "--chunks", "5", "--chunk-delay-ms=0.5"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port: u16 = line.trim().rsplit(':').next().unwrap().parse().unwrap();
    let body = json!({"model": "m", "stream": true}).to_string();
    let events = open_stream(port, "POST", CHAT, &[], body.as_bytes()).collect_events();
    assert_eq!(events.len(), 7, "5 content events, usage, [DONE]: {events:#?}");
    assert_eq!(data_json(&events[4])["choices"][0]["delta"]["content"], "token4 ");
    drop(child);

    // Bad flags: exit 2 with the reason; --help: exit 0.
    for (args, why) in [
        (&["--port", "0", "--name", "x", "--chunks", "0"][..], "--chunks"),
        (&["--port", "0", "--name", "x", "--chunk-delay-ms", "soon"], "bad chunk delay"),
        (&["--port", "0", "--name", "x", "--status", "42"], "--status"),
        (&["--name", "x"], "--port"),
        (&["--port", "0", "--name", "x", "--colour"], "--colour"),
    ] {
        let out = Command::new(bin).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(why),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new(bin).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--chunk-delay-ms"), "{help}");
    for path in ["/chat/completions", "/v1/messages", ":generateContent", ":streamGenerateContent?alt=sse"] {
        assert!(help.contains(path), "{path} in {help}");
    }
}

#[test]
fn envoy_proxies_streams_event_by_event() {
    let mock = MockProvider::start("through-envoy");
    let envoy = Envoy::start(&envoy::plain_proxy_yaml(mock.port()), &[("UNUSED_VAR", "1")])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(envoy.port, 0);
    assert_ne!(envoy.admin_port, 0);
    // pid() is Envoy's own process (the soak reads its memory there).
    let status = std::fs::read_to_string(format!("/proc/{}/status", envoy.pid())).unwrap();
    assert!(status.lines().any(|l| l.starts_with("Name:") && l.contains("envoy")), "{status}");
    assert!(status.contains("VmRSS:"), "{status}");

    let r = post_json(envoy.port, CHAT, Some("k"), &json!({"model": "m"}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["choices"][0]["message"]["content"], "Hello from through-envoy");

    mock.hold_streams(true);
    let body = json!({"model": "m", "stream": true}).to_string();
    // The mock holds event 2 until released, far longer than the head and event 1 may take.
    let mut s = open_stream_within(FIRST_EVENT_TIMEOUT, envoy.port, "POST", CHAT, &[], body.as_bytes());
    assert_eq!(s.status, 200);
    let first = s.next_event().expect("event 1 through Envoy");
    assert_eq!(mock.held(), 1, "event 1 must arrive while the mock holds event 2");
    mock.release_stream();
    let mut events = vec![first];
    events.extend(s.collect_events());
    check_stream_events(&events, "through-envoy", "m");

    // Envoy pooled its upstream connection: both requests recorded.
    assert_eq!(mock.requests().len(), 2);
    wait_until(10, "the rq_completed stat", || {
        envoy.stat("http.tls_front.downstream_rq_completed") == Some(2)
    });
    assert_eq!(envoy.stat("cluster.backend.upstream_rq_200"), Some(2));
    assert_eq!(envoy.stat("no.such.stat"), None);
    assert!(envoy.log().is_empty() || !envoy.log().contains("critical"));
}

fn curl(args: &[&str]) -> std::process::Output {
    Command::new("curl")
        .args(["-sS", "--noproxy", "*", "--max-time", "20"])
        .args(args)
        .output()
        .expect("run curl")
}

#[test]
fn tls_front_serves_mock_over_tls() {
    let certs = certs_dir();
    let ca = certs.join("ca.pem");
    let ca = ca.to_str().unwrap();
    let mock = MockProvider::start("tls-mock");
    let front = TlsFront::start(mock.port(), &certs.join("localhost.pem"), &certs.join("localhost-key.pem"));
    let port = front.port.to_string();
    let resolve = format!("localhost:{port}:127.0.0.1");

    let out = curl(&["--cacert", ca, "--resolve", &resolve, &format!("https://localhost:{port}/")]);
    assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), r#"{"ok":true}"#);

    // By IP (the cert has IP:127.0.0.1), a chat completion.
    let out = curl(&[
        "--cacert",
        ca,
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"model":"tls-model"}"#,
        &format!("https://127.0.0.1:{port}{CHAT}"),
    ]);
    assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from tls-mock");
    assert_eq!(mock.requests().len(), 1);

    // Without the CA, verification fails (curl exit 60).
    let out = curl(&["--resolve", &resolve, &format!("https://localhost:{port}/")]);
    assert_eq!(out.status.code(), Some(60), "{}", String::from_utf8_lossy(&out.stderr));

    // A front with the wrong.example cert fails hostname verification for localhost.
    let wrong = TlsFront::start(mock.port(), &certs.join("wrong.pem"), &certs.join("wrong-key.pem"));
    let wport = wrong.port;
    let out = curl(&[
        "--cacert",
        ca,
        "--resolve",
        &format!("localhost:{wport}:127.0.0.1"),
        &format!("https://localhost:{wport}/"),
    ]);
    assert_eq!(out.status.code(), Some(60), "{}", String::from_utf8_lossy(&out.stderr));
    // ...but is trusted for its own name.
    let out = curl(&[
        "--cacert",
        ca,
        "--resolve",
        &format!("wrong.example:{wport}:127.0.0.1"),
        &format!("https://wrong.example:{wport}/"),
    ]);
    assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
    // Plain HTTP to the TLS port does not get through.
    assert!(http::try_request(front.port, "GET", "/", &[], b"").map_or(true, |r| r.status != 200));
}

#[test]
fn envoy_start_failure_is_reported() {
    let bad = envoy::plain_proxy_yaml(1).replace("type: STATIC", "type: NOT_A_TYPE");
    let log = envoy::start_expect_failure(&bad, &[]);
    assert!(log.contains("NOT_A_TYPE"), "log: {log}");
    let err = Envoy::start(&bad, &[]).err().expect("start must fail");
    assert!(err.contains("NOT_A_TYPE"), "{err}");
}
