//! Whole request lifecycles of the roles, run natively (and on wasm32) against [`FakeHost`]: what the
//! provider receives, what the client gets, what is accounted, for completions, streams, local replies,
//! provider errors, fallbacks, trailers, disconnects and the health memory.

use super::downstream::Downstream;
use super::fake_host::{
    get, headers, receive_response, reply_response, send_request, set_header, FakeHost, LocalReply, Received,
    Sent,
};
use super::host::{Flow, IntAttribute, TextAttribute};
use super::{Role, Vm, DOWNSTREAM_ROOT_ID, LOGGER_ROOT_ID, UPSTREAM_ROOT_ID};
use crate::catalog::tests::{demo_json, demo_json_with};
use crate::catalog::Catalog;
use crate::routing::health::Record;
use serde_json::Value;
use std::rc::Rc;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const START: u64 = 1_700_000_000_000;

fn env(name: &str) -> Option<String> {
    match name {
        "ALPHA_KEY" => Some("alpha-secret".into()),
        "BETA_KEY" => Some("beta-secret".into()),
        "GAMMA_KEY" => Some("gamma-secret".into()),
        _ => None,
    }
}

/// A VM and the catalog its downstream plugin instance was configured with.
struct Configured {
    vm: Vm,
    catalog: Rc<Catalog>,
}

impl Configured {
    /// The downstream role for a new request.
    fn downstream(&self) -> Option<Downstream> {
        Some(self.vm.downstream(&self.catalog))
    }
}

impl std::ops::Deref for Configured {
    type Target = Vm;
    fn deref(&self) -> &Vm {
        &self.vm
    }
}

impl std::ops::DerefMut for Configured {
    fn deref_mut(&mut self) -> &mut Vm {
        &mut self.vm
    }
}

/// A VM configured with the brain's test catalog (`routing` overridden by `routing`, JSON members).
fn vm_with(routing: &str) -> Configured {
    let catalog = demo_json().replace(r#""max_attempts": 2"#, &format!(r#""max_attempts": 2{routing}"#));
    let mut vm = Vm::default();
    match vm.configure(DOWNSTREAM_ROOT_ID.as_bytes(), catalog.as_bytes(), &env) {
        Ok(Role::Downstream(catalog)) => Configured { vm, catalog },
        other => panic!("{other:?}"),
    }
}

fn vm() -> Configured {
    vm_with("")
}

/// `routing` members naming a rate limit service (for [`demo_json_with`]).
const RATE_LIMIT_SERVICE: &str = r#", "rate_limit_service": {"address": "127.0.0.1:8081"}"#;

/// A VM whose downstream role was configured with `catalog` (JSON), and that catalog.
pub(super) fn configured(catalog: &str) -> (Vm, Rc<Catalog>) {
    let mut vm = Vm::default();
    match vm.configure(DOWNSTREAM_ROOT_ID.as_bytes(), catalog.as_bytes(), &env) {
        Ok(Role::Downstream(catalog)) => (vm, catalog),
        other => panic!("the catalog loads: {other:?}"),
    }
}

/// A client's chat request headers, with every kind of credential and routing header a client might send.
fn chat_headers() -> super::host::HeaderList {
    headers(&[
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        (":authority", "router.local"),
        ("authorization", "Bearer sk-test-1"),
        ("x-api-key", "client-anthropic-key"),
        ("api-key", "client-azure-key"),
        ("x-goog-api-key", "client-google-key"),
        ("content-type", "application/json"),
        ("accept-encoding", "gzip"),
        ("x-envoy-max-retries", "9"),
        ("x-llm-plan", "forged"),
        ("x-request-id", "req-1"),
        ("x-title", "some app"),
    ])
}

const CHAT: &[u8] =
    br#"{"model":"llama","messages":[{"role":"user","content":"hi"}],"provider":{"sort":"price"}}"#;
const STREAM: &[u8] = br#"{"model":"llama","messages":[{"role":"user","content":"hi"}],"provider":{"sort":"price"},"stream":true}"#;

/// `CHAT` in three chunks.
fn chunks(body: &[u8]) -> Vec<&[u8]> {
    let (a, rest) = body.split_at(10);
    let (b, c) = rest.split_at(20);
    vec![a, b, c]
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

fn forwarded(sent: Sent) -> (super::host::HeaderList, Vec<u8>) {
    match sent {
        Sent::Forwarded { headers, body } => (headers, body),
        Sent::Replied(r) => panic!("replied {} {}", r.status, String::from_utf8_lossy(&r.body)),
    }
}

fn replied(sent: Sent) -> LocalReply {
    match sent {
        Sent::Replied(r) => r,
        Sent::Forwarded { headers, .. } => panic!("forwarded with {headers:?}"),
    }
}

fn account(host: &FakeHost) -> Value {
    json(host.filter_state.get("llm_account").expect("the account was written"))
}

fn completion(prompt: u64, completion: u64) -> Vec<u8> {
    format!(
        r#"{{"id":"c1","object":"chat.completion","created":1,"model":"llama-a","choices":[{{"index":0,"message":{{"role":"assistant","content":"Hello"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":{prompt},"completion_tokens":{completion}}}}}"#
    )
    .into_bytes()
}

fn provider_response(status: &str, content_type: &str, attempt: &str) -> super::host::HeaderList {
    headers(&[
        (":status", status),
        ("content-type", content_type),
        ("content-length", "999"),
        ("x-envoy-attempt-count", attempt),
        ("x-ratelimit-remaining-requests", "9"),
        ("server", "provider"),
        ("x-mock-secret", "internal"),
    ])
}

/// A provider's 200 completion (10 prompt and 5 completion tokens, one chunk) after attempt `attempt`,
/// through the downstream role; ended by trailers when `trailers`.
fn answer(d: &mut Downstream, host: &mut FakeHost, attempt: &str, trailers: bool) -> Received {
    let completion = completion(10, 5);
    let response = provider_response("200", "application/json", attempt);
    receive_response(d, host, response, &[&completion], trailers)
}

fn names(h: &super::host::HeaderList) -> Vec<&str> {
    let mut v: Vec<&str> = h.iter().map(|(n, _)| n.as_str()).collect();
    v.sort_unstable();
    v
}

#[test]
fn a_completion_is_routed_rewritten_and_accounted() {
    let vm = vm();
    let mut d = vm.downstream().unwrap();
    let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
    let (sent, body) = forwarded(send_request(&mut d, &mut host, chat_headers(), &chunks(CHAT), false));

    // The provider gets its own key, host, path and model, none of the client's credentials or routing
    // headers, an exact length, and our retry count and per-attempt timeout.
    assert_eq!(body, br#"{"model":"llama-a","messages":[{"role":"user","content":"hi"}]}"#.to_vec());
    for (name, want) in [
        ("authorization", Some("Bearer alpha-secret")),
        (":authority", Some("api.alpha.example")),
        (":path", Some("/v1/chat/completions")),
        ("accept-encoding", Some("identity")),
        ("content-length", Some(body.len().to_string().as_str())),
        ("x-envoy-max-retries", Some("1")),
        ("x-envoy-upstream-rq-per-try-timeout-ms", Some("120000")),
        // Both attempts' waits in all: a provider trickling its body cannot hold the client for ever.
        ("x-envoy-upstream-rq-timeout-ms", Some("240000")),
        ("x-api-key", None),
        ("api-key", None),
        ("x-goog-api-key", None),
        ("x-llm-plan", None),
        ("x-title", None),
    ] {
        assert_eq!(get(&sent, name), want, "{name}");
    }
    // One slot per attempt for the route's matcher; slot 0 carries the plan.
    assert!(host.filter_state["llm_try_0"].starts_with(b"alpha|"));
    assert_eq!(host.filter_state["llm_try_1"], b"beta|");

    host.now_ms = START + 50;
    let completion = completion(1000, 500);
    let (a, b) = completion.split_at(40);
    let got = receive_response(
        &mut d,
        &mut host,
        provider_response("200", "application/json", "1"),
        &[a, b],
        false,
    );

    // The headers waited for the body (they carry its length and cost) and went out once, filtered.
    assert_eq!(got.pieces, [None, Some(got.body.len())]);
    assert_eq!(
        names(&got.headers),
        [
            ":status",
            "content-length",
            "content-type",
            "x-generation-id",
            "x-llm-attempts",
            "x-llm-cost-usd",
            "x-llm-model",
            "x-llm-provider"
        ]
    );
    // 1000 prompt tokens at $0.1/M and 500 completion tokens at $0.2/M: $0.0002.
    for (name, want) in [
        ("x-llm-provider", "alpha"),
        ("x-llm-model", "meta/llama"),
        ("x-llm-attempts", "1"),
        ("x-llm-cost-usd", "0.0002"),
        ("x-generation-id", "gen-req-1"),
        ("content-length", got.body.len().to_string().as_str()),
    ] {
        assert_eq!(get(&got.headers, name), Some(want), "{name}");
    }
    let v = json(&got.body);
    assert_eq!((v["model"].as_str(), v["provider"].as_str()), (Some("meta/llama"), Some("Alpha")));
    assert_eq!(v["usage"]["cost"], 0.0002);

    host.now_ms = START + 80;
    d.on_log(&mut host);
    // The account was written when the body completed (at START + 50), not at the log.
    let a = account(&host);
    for (field, want) in [
        ("status", Value::from(200)),
        ("provider", "alpha".into()),
        ("model", "meta/llama".into()),
        ("requested_model", "llama".into()),
        ("key", "team-a".into()),
        ("app", "other".into()),
        ("attempts", 1.into()),
        ("prompt_tokens", 1000.into()),
        ("completion_tokens", 500.into()),
        ("cost_nano_usd", 200_000.into()),
        ("stream", false.into()),
        ("ttfb_ms", 50.into()),
        ("duration_ms", 50.into()),
    ] {
        assert_eq!(a[field], want, "{field} in {a}");
    }
    // Counters reach Envoy on the tick.
    vm.tick(&mut host);
    let stats = host.stats.borrow();
    assert_eq!(stats.counter("llm_router.model.meta_llama.provider.alpha.requests"), Some(1));
    assert_eq!(stats.counter("llm_router.model.meta_llama.provider.alpha.cost_nano_usd"), Some(200_000));
    assert_eq!(stats.counter("llm_router.key.team-a.app.other.prompt_tokens"), Some(1000));
}

#[test]
fn a_completion_costs_a_bounded_number_of_host_calls() {
    // Host calls are much of the filter's cost in Envoy (README, Performance), so a change that adds some
    // should be seen. The second request of a series is measured (the first also defines its stats).
    // When this moves, re-run `scripts/bench --quick` and update the bound with the figures.
    let vm = vm();
    let client = headers(&[
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        ("authorization", "Bearer sk-test-1"),
        ("content-type", "application/json"),
    ]);
    let mut calls = Vec::new();
    for _ in 0..2 {
        let mut d = vm.downstream().unwrap();
        let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
        forwarded(send_request(&mut d, &mut host, client.clone(), &[CHAT], false));
        let request = host.calls.get();
        answer(&mut d, &mut host, "1", false);
        d.on_log(&mut host);
        calls.push((request, host.calls.get()));
    }
    // Request: clock, headers, body, 3 health reads, 2 slots, body prefix, 8 header writes (the whole
    // request's timeout is the eighth: a completion's only).
    // Response: clock, headers, body, body write, header map write, the key's ledger (read and write:
    // what it spent, for `/key`), account, clock, 2 histogram samples.
    assert_eq!(calls[1], (17, 28), "host calls (request phase, whole request)");
}

#[test]
fn a_stream_is_rewritten_event_by_event_and_accounted_from_its_usage_chunk() {
    let vm = vm();
    let mut d = vm.downstream().unwrap();
    let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
    let (sent, body) = forwarded(send_request(&mut d, &mut host, chat_headers(), &[STREAM], false));
    // A stream asks the provider for usage and waits only for its first byte.
    let v = json(&body);
    assert_eq!(v["stream_options"]["include_usage"], true);
    assert_eq!(get(&sent, "x-envoy-upstream-rq-per-try-timeout-ms"), Some("10000"));
    assert_eq!(get(&sent, "x-envoy-upstream-rq-timeout-ms"), None, "a stream's length is not bounded");

    let event = |delta: &str| {
        format!(
            r#"data: {{"id":"s1","object":"chat.completion.chunk","created":1,"model":"llama-a","choices":[{{"index":0,"delta":{{"content":"{delta}"}}}}]}}"#
        ) + "\n\n"
    };
    let usage = r#"data: {"id":"s1","object":"chat.completion.chunk","created":1,"model":"llama-a","choices":[],"usage":{"prompt_tokens":100,"completion_tokens":50}}"#.to_string() + "\n\n";
    let (first, second) = (event("Hel"), event("lo"));
    let (second_a, second_b) = second.as_bytes().split_at(25);
    let pieces: Vec<&[u8]> =
        vec![first.as_bytes(), second_a, second_b, usage.as_bytes(), b"data: [DONE]\n\n"];
    let got = receive_response(
        &mut d,
        &mut host,
        provider_response("200", "text/event-stream", "1"),
        &pieces,
        false,
    );

    // Headers at once, then each event as soon as it is complete: nothing waits for the end.
    assert_eq!(got.pieces.first(), Some(&None));
    assert_eq!(got.pieces.len(), 5, "headers, event 1, event 2 (completed by its second piece), usage, DONE");
    assert_eq!(get(&got.headers, "content-length"), None, "a rewritten stream has no fixed length");
    let text = String::from_utf8(got.body).unwrap();
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 4, "{text}");
    for e in &events[..3] {
        let v = json(e.strip_prefix("data: ").unwrap().as_bytes());
        assert_eq!(v["model"], "meta/llama", "{e}");
    }
    let last = json(events[2].strip_prefix("data: ").unwrap().as_bytes());
    // 100 × $0.1/M + 50 × $0.2/M = $0.00002.
    assert_eq!((last["usage"]["cost"].as_f64(), last["provider"].as_str()), (Some(0.00002), Some("Alpha")));
    assert_eq!(events[3], "data: [DONE]");
    d.on_log(&mut host);
    let a = account(&host);
    assert_eq!(
        (a["stream"].as_bool(), a["prompt_tokens"].as_u64(), a["cost_nano_usd"].as_u64()),
        (Some(true), Some(100), Some(20_000))
    );
}

#[test]
fn a_stream_cut_before_done_ends_with_the_typed_error_chunk() {
    let vm = vm();
    let mut d = vm.downstream().unwrap();
    let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
    forwarded(send_request(&mut d, &mut host, chat_headers(), &[STREAM], false));
    let event = br#"data: {"id":"s1","object":"chat.completion.chunk","created":7,"model":"llama-a","choices":[{"index":0,"delta":{"content":"Hel"}}]}

"#;
    let got = receive_response(
        &mut d,
        &mut host,
        provider_response("200", "text/event-stream", "1"),
        &[event],
        false,
    );
    let text = String::from_utf8(got.body).unwrap();
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    let v = json(last.strip_prefix("data: ").unwrap().as_bytes());
    assert_eq!(
        (v["error"]["code"].as_u64(), v["choices"][0]["finish_reason"].as_str()),
        (Some(502), Some("error"))
    );
    assert_eq!(
        (v["id"].as_str(), v["created"].as_u64()),
        (Some("s1"), Some(7)),
        "the stream's own id and time"
    );
}

#[test]
fn local_replies_reach_no_provider_and_are_accounted() {
    let vm = vm_with(r#", "max_request_bytes": 1024"#);
    let without = |name: &str| {
        let mut h = chat_headers();
        h.retain(|(n, _)| n != name);
        h
    };
    let big = vec![b' '; 700];
    type Case<'a> = (&'a str, super::host::HeaderList, Vec<&'a [u8]>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("no key", without("authorization"), vec![CHAT], 401, "authentication"),
        ("not JSON", without("content-type"), vec![CHAT], 400, "invalid_request"),
        ("unknown model", chat_headers(), vec![br#"{"model":"nope","messages":[]}"#], 404, "model_not_found"),
        ("bad body", chat_headers(), vec![b"{"], 400, "invalid_request"),
        ("too large, in chunks", chat_headers(), vec![&big, &big], 413, "payload_too_large"),
    ];
    for (what, h, body, status, error_type) in cases {
        let mut d = vm.downstream().unwrap();
        let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
        let reply = replied(send_request(&mut d, &mut host, h, &body, false));
        assert_eq!(reply.status, status, "{what}");
        assert_eq!(json(&reply.body)["error"]["metadata"]["error_type"], error_type, "{what}");
        assert!(!host.filter_state.contains_key("llm_try_0"), "{what}: no plan");
        let got = reply_response(&mut d, &mut host, &reply);
        assert_eq!(got.body, reply.body, "{what}: the reply passes the response path untouched");
        d.on_log(&mut host);
        let a = account(&host);
        assert_eq!(
            (a["status"].as_u64(), a["error_type"].as_str()),
            (Some(u64::from(status)), Some(error_type)),
            "{what}"
        );
        assert!(a["provider"].is_null(), "{what}");
    }
    // The model a failed request asked for is still accounted.
    let mut d = vm.downstream().unwrap();
    let mut host = FakeHost::default();
    send_request(&mut d, &mut host, chat_headers(), &[br#"{"model":"nope","messages":[]}"#], false);
    d.on_log(&mut host);
    assert_eq!(account(&host)["requested_model"], "nope");
    // `/models` needs no key and is not a chat: no account.
    let mut d = vm.downstream().unwrap();
    let mut host = FakeHost::default();
    let models = headers(&[(":method", "GET"), (":path", "/api/v1/models?x=1")]);
    let reply = replied(send_request(&mut d, &mut host, models, &[], false));
    assert_eq!((reply.status, json(&reply.body)["total_count"].as_u64()), (200, Some(2)));
    d.on_log(&mut host);
    assert!(!host.filter_state.contains_key("llm_account"));
}

#[test]
fn a_provider_error_is_held_and_replaced_by_ours() {
    let vm = vm();
    // Attempt 1 went to the first slot: alpha.
    for (status, provider_body, want_status, want_message, retry_after) in [
        (
            "429",
            &br#"{"error":{"message":"slow down"}}"#[..],
            429,
            "Alpha is rate limited; retry later",
            Some("7"),
        ),
        ("400", br#"{"error":{"message":"bad temperature"}}"#, 400, "Alpha: bad temperature", None),
        (
            "401",
            br#"{"error":{"message":"sk-alpha-secret is wrong"}}"#,
            502,
            "Alpha refused the router's credentials (status 401)",
            None,
        ),
    ] {
        let mut d = vm.downstream().unwrap();
        let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
        forwarded(send_request(&mut d, &mut host, chat_headers(), &[CHAT], false));
        // Envoy says the provider sent it (not one of its own replies).
        host.text_attributes.push((TextAttribute::ResponseCodeDetails, "via_upstream".into()));
        let mut response = provider_response(status, "application/json", "1");
        set_header(&mut response, "retry-after", b"7");
        let (a, b) = provider_body.split_at(5);
        let got = receive_response(&mut d, &mut host, response, &[a, b], false);
        assert_eq!(get(&got.headers, ":status"), Some(want_status.to_string().as_str()), "{status}");
        assert_eq!(get(&got.headers, "retry-after"), retry_after, "{status}");
        assert_eq!(get(&got.headers, "x-mock-secret"), None, "{status}");
        let v = json(&got.body);
        assert_eq!(
            (v["error"]["code"].as_u64(), v["error"]["message"].as_str()),
            (Some(want_status), Some(want_message))
        );
        d.on_log(&mut host);
        assert_eq!(account(&host)["status"], want_status, "{status}");
    }
}

#[test]
fn a_fallback_attempt_gets_its_own_provider_and_the_response_names_it() {
    let vm = vm();
    let mut d = vm.downstream().unwrap();
    let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
    let (first, body) = forwarded(send_request(&mut d, &mut host, chat_headers(), &chunks(CHAT), false));

    // Attempt 2 reuses attempt 1's header map and replayed body, in beta's fallback cluster.
    let mut attempt = FakeHost::beside(&host, START + 10);
    attempt.filter_state = host.filter_state.clone();
    attempt.request_headers = first;
    set_header(&mut attempt.request_headers, "x-envoy-attempt-count", b"2");
    attempt.request_body = body;
    let mut up = vm.upstream("beta".into());
    assert_eq!(up.on_request_headers(&mut attempt), Flow::Continue);
    let size = attempt.request_body.len();
    assert_eq!(up.on_request_body(&mut attempt, size, true), Flow::Continue);
    let spliced = br#"{"model":"llama-b","messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(attempt.request_body, spliced.to_vec());
    for (name, want) in [
        ("authorization", None),
        ("x-api-key", Some("beta-secret")),
        ("x-beta-version", Some("2")),
        (":authority", Some("127.0.0.1:8080")),
        (":path", Some("/openai/v1/chat/completions")),
        ("content-length", Some(spliced.len().to_string().as_str())),
    ] {
        assert_eq!(get(&attempt.request_headers, name), want, "{name}");
    }

    let got = answer(&mut d, &mut host, "2", false);
    assert_eq!(
        (get(&got.headers, "x-llm-provider"), get(&got.headers, "x-llm-attempts")),
        (Some("beta"), Some("2"))
    );
    d.on_log(&mut host);
    let a = account(&host);
    assert_eq!((a["provider"].as_str(), a["attempts"].as_u64()), (Some("beta"), Some(2)));
}

#[test]
fn a_provider_error_without_a_body_is_replaced_by_our_reply_not_written_into_nothing() {
    // Headers then trailers (or headers alone): Envoy has no body buffer to write our error into (the
    // FakeHost traps as the VM did), so our error replaces the held response as a local reply.
    let vm = vm();
    for (status, trailers, want_status, want_message) in [
        ("400", true, 400, "Alpha rejected the request (status 400)"),
        ("400", false, 400, "Alpha rejected the request (status 400)"),
        ("503", true, 502, "Alpha failed (status 503) and no other provider could serve"),
    ] {
        let mut d = vm.downstream().unwrap();
        let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
        forwarded(send_request(&mut d, &mut host, chat_headers(), &[CHAT], false));
        host.text_attributes.push((TextAttribute::ResponseCodeDetails, "via_upstream".into()));
        let response = provider_response(status, "application/json", "1");
        let got = receive_response(&mut d, &mut host, response, &[], trailers);
        assert_eq!(get(&got.headers, ":status"), Some(want_status.to_string().as_str()), "{status}");
        assert_eq!(get(&got.headers, "content-type"), Some("application/json"));
        let v = json(&got.body);
        assert_eq!(v["error"]["message"], want_message, "{status} {trailers}");
        d.on_log(&mut host);
        assert_eq!(account(&host)["status"], want_status, "{status}");
    }
}

#[test]
fn a_replayed_body_ended_by_trailers_is_spliced_on_them() {
    // Envoy replays a body the client ended with trailers without end-of-stream on the data.
    let vm = vm();
    let mut d = vm.downstream().unwrap();
    let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
    let (first, body) = forwarded(send_request(&mut d, &mut host, chat_headers(), &chunks(CHAT), true));
    let mut attempt = FakeHost::beside(&host, START + 10);
    attempt.filter_state = host.filter_state.clone();
    attempt.request_headers = first;
    set_header(&mut attempt.request_headers, "x-envoy-attempt-count", b"2");
    attempt.request_body = body.clone();
    let mut up = vm.upstream("beta".into());
    assert_eq!(up.on_request_headers(&mut attempt), Flow::Continue);
    assert_eq!(up.on_request_body(&mut attempt, body.len(), false), Flow::Pause, "held for the splice");
    assert_eq!(attempt.request_body, body, "not yet");
    assert_eq!(up.on_request_trailers(&mut attempt), Flow::Continue);
    let spliced = br#"{"model":"llama-b","messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(attempt.request_body, spliced.to_vec());
    assert_eq!(get(&attempt.request_headers, "content-length"), Some(spliced.len().to_string().as_str()));
    // Once only: trailers after a body that was already spliced change nothing.
    assert_eq!(up.on_request_trailers(&mut attempt), Flow::Continue);
    assert_eq!(attempt.request_body, spliced.to_vec());
}

#[test]
fn an_attempt_without_a_plan_is_refused_not_sent() {
    let vm = vm();
    let mut up = vm.upstream("beta".into());
    let mut attempt =
        FakeHost { request_headers: headers(&[("x-envoy-attempt-count", "2")]), ..FakeHost::default() };
    assert_eq!(up.on_request_headers(&mut attempt), Flow::Pause);
    let reply = attempt.reply.clone().expect("a local reply");
    assert_eq!(reply.status, 500);
    assert_eq!(json(&reply.body)["error"]["metadata"]["error_type"], "server");
    assert_eq!(attempt.warnings, ["no routing plan for provider beta"]);
    // The first attempt was prepared by the downstream role: nothing to do, whatever the filter state.
    let mut first =
        FakeHost { request_headers: headers(&[("x-envoy-attempt-count", "1")]), ..FakeHost::default() };
    assert_eq!(up.on_request_headers(&mut first), Flow::Continue);
    assert!(first.reply.is_none());
}

#[test]
fn bodies_ended_by_trailers_are_routed_and_finished_on_them() {
    let vm = vm();
    let mut d = vm.downstream().unwrap();
    let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
    let (sent, _) = forwarded(send_request(&mut d, &mut host, chat_headers(), &chunks(CHAT), true));
    assert_eq!(get(&sent, "authorization"), Some("Bearer alpha-secret"));
    let got = answer(&mut d, &mut host, "1", true);
    assert!(get(&got.headers, "x-llm-cost-usd").is_some(), "finished on the trailers: {:?}", got.headers);
    assert_eq!(get(&got.headers, "x-mock-secret"), None);
    assert_eq!(json(&got.body)["model"], "meta/llama");
}

#[test]
fn a_client_that_goes_away_mid_stream_is_accounted_once() {
    let vm = vm();
    let mut d = vm.downstream().unwrap();
    let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
    forwarded(send_request(&mut d, &mut host, chat_headers(), &[STREAM], false));
    host.response_headers = provider_response("200", "text/event-stream", "1");
    d.on_response_headers(&mut host, false);
    host.response_body = br#"data: {"id":"s","choices":[]}

data: {"id":"s","choices":[{"index":0,"delta":{"content":"Hel"}}]}

data: {"id":"s","choices":[{"index":0,"delta":{"content":"lo"}}]}

"#
    .to_vec();
    host.response_has_body = true;
    let size = host.response_body.len();
    d.on_response_body(&mut host, size, false);
    // The client hangs up: Envoy logs the request without ending the stream.
    d.on_log(&mut host);
    d.on_log(&mut host);
    let a = account(&host);
    assert_eq!((a["stream"].as_bool(), a["provider"].as_str()), (Some(true), Some("alpha")));
    // The provider billed what it streamed, but its usage chunk never came: estimated, and flagged. The
    // prompt from the body's bytes (4 to a token), the completion one token per content chunk, priced
    // at alpha's $0.1 (prompt) and $0.2 (completion) per million.
    let prompt = (STREAM.len() as u64).div_ceil(4);
    assert_eq!(
        (a["usage_estimated"].as_bool(), a["prompt_tokens"].as_u64(), a["completion_tokens"].as_u64()),
        (Some(true), Some(prompt), Some(2)),
        "{a}"
    );
    assert_eq!(a["cost_nano_usd"].as_u64(), Some(prompt * 100 + 2 * 200), "{a}");
    vm.tick(&mut host);
    let stats = host.stats.borrow();
    assert_eq!(stats.counter("llm_router.model.meta_llama.provider.alpha.requests"), Some(1));
    assert_eq!(stats.counter("llm_router.model.meta_llama.provider.alpha.usage_estimated"), Some(1));
    assert_eq!(
        stats.counter("llm_router.model.meta_llama.provider.alpha.prompt_tokens"),
        Some(prompt as i64)
    );
}

/// The health record of `provider` in the shared store, if any.
fn record(host: &FakeHost, provider: &str) -> Option<Record> {
    let key = format!("llm_router.health.{provider}");
    host.shared.borrow().values.get(&key).and_then(|(v, _)| Record::decode(v))
}

fn put_record(host: &FakeHost, provider: &str, r: Record) {
    let key = format!("llm_router.health.{provider}");
    host.shared.borrow_mut().values.insert(key, (r.encode(), 1));
}

#[test]
fn a_2xx_clears_a_record_older_than_the_request_and_keeps_a_newer_one() {
    let vm = vm();
    let old = Record { last_failure_ms: START - 100_000, cooldown_until_ms: 0 };
    for (written_after_planning, cleared) in [(false, true), (true, false)] {
        let mut d = vm.downstream().unwrap();
        let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
        if !written_after_planning {
            put_record(&host, "alpha", old);
        }
        let (sent, _) = forwarded(send_request(&mut d, &mut host, chat_headers(), &[CHAT], false));
        assert_eq!(get(&sent, ":authority"), Some("api.alpha.example"), "an old failure does not move it");
        let newer = Record { last_failure_ms: START + 5, cooldown_until_ms: 0 };
        if written_after_planning {
            put_record(&host, "alpha", newer);
        }
        host.now_ms = START + 10;
        answer(&mut d, &mut host, "1", false);
        assert_eq!(
            record(&host, "alpha").is_none(),
            cleared,
            "written after planning: {written_after_planning}"
        );
    }
}

#[test]
fn the_logger_records_failures_and_cool_downs_and_ignores_the_clients_faults() {
    let mut vm = vm();
    assert!(matches!(vm.configure(LOGGER_ROOT_ID.as_bytes(), b"", &env), Ok(Role::Logger)));
    let attempt = |cluster: &str, code: Option<u64>, flags: u64, retry_after: Option<&str>| {
        let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
        host.text_attributes.push((TextAttribute::ClusterName, cluster.to_string()));
        if let Some(code) = code {
            host.int_attributes.push((IntAttribute::ResponseCode, code));
        }
        host.int_attributes.push((IntAttribute::ResponseFlags, flags));
        if let Some(v) = retry_after {
            host.response_headers = headers(&[("retry-after", v)]);
        }
        vm.log_attempt(&mut host);
        (record(&host, "beta"), record(&host, "alpha"))
    };
    let cooling = Record { last_failure_ms: START, cooldown_until_ms: START + 30_000 };
    assert_eq!(attempt("llm_fallback_beta", Some(429), 0, Some("30")), (Some(cooling), None));
    assert_eq!(
        attempt("llm_provider_beta", Some(503), 0, None).0,
        Some(Record { last_failure_ms: START, cooldown_until_ms: 0 })
    );
    assert_eq!(
        attempt("llm_provider_beta", None, 0x20, None).0.map(|r| r.last_failure_ms),
        Some(START),
        "refused"
    );
    assert_eq!(attempt("llm_provider_beta", Some(404), 0, None), (None, None), "the request's fault");
    assert_eq!(attempt("some_other_cluster", Some(503), 0, None), (None, None));
    // A 2xx clears a record only if its attempt began at or after the failure (a day-old start time is
    // not believed: the attempt counts as starting now).
    let failed = Record { last_failure_ms: START - 100, cooldown_until_ms: 0 };
    let day = 86_400_000;
    for (started, cleared) in
        [(START - 50, true), (START - 200, false), (START - day + 1, false), (START - day, true)]
    {
        let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
        put_record(&host, "beta", failed);
        host.text_attributes.push((TextAttribute::ClusterName, "llm_fallback_beta".into()));
        host.int_attributes.push((IntAttribute::ResponseCode, 200));
        host.int_attributes.push((IntAttribute::RequestStartMs, started));
        vm.log_attempt(&mut host);
        assert_eq!(record(&host, "beta").is_none(), cleared, "attempt started at {started}");
    }
}

#[test]
fn an_attempt_the_provider_never_answered_is_counted_with_its_estimated_prompt() {
    // A per-try timeout or a reset after the request went out: the provider may bill the prompt, and
    // no account shows it (a fallback served, or Envoy answered).
    let mut vm = vm();
    assert!(matches!(vm.configure(LOGGER_ROOT_ID.as_bytes(), b"", &env), Ok(Role::Logger)));
    for (code, flags, counted) in [
        (None, 0x4, true),   // UT: timed out waiting for the answer
        (None, 0x10, true),  // UR: reset by the provider
        (None, 0x40, true),  // UC: connection terminated
        (None, 0x20, false), // UF: never connected, never received
        (Some(503), 0, false),
    ] {
        let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
        host.text_attributes.push((TextAttribute::ClusterName, "llm_fallback_beta".into()));
        if let Some(code) = code {
            host.int_attributes.push((IntAttribute::ResponseCode, code));
        }
        host.int_attributes.push((IntAttribute::ResponseFlags, flags));
        host.int_attributes.push((IntAttribute::RequestBodyBytes, 401));
        vm.log_attempt(&mut host);
        let stats = host.stats.borrow();
        let got = (
            stats.counter("llm_router.provider.beta.unanswered_attempts"),
            stats.counter("llm_router.provider.beta.unanswered_prompt_tokens_estimated"),
        );
        let want = if counted { (Some(1), Some(101)) } else { (None, None) };
        assert_eq!(got, want, "flags {flags:#x}, status {code:?}");
    }
}

#[test]
fn stats_envoy_refuses_are_defined_again_by_the_next_request() {
    let vm = vm();
    let envoy = FakeHost::default();
    for refuse in [true, false] {
        let mut host = FakeHost { refuse_metrics: refuse, ..FakeHost::beside(&envoy, START) };
        let mut d = vm.downstream().unwrap();
        forwarded(send_request(&mut d, &mut host, chat_headers(), &[CHAT], false));
        answer(&mut d, &mut host, "1", false);
        d.on_log(&mut host);
        vm.tick(&mut host);
    }
    // The first request's stats were lost (never worth failing a request for), the second's counted.
    let stats = envoy.stats.borrow();
    assert_eq!(stats.counter("llm_router.model.meta_llama.provider.alpha.requests"), Some(1));
}

#[test]
fn configuration_picks_the_role_and_names_what_is_wrong() {
    let mut vm = Vm::default();
    let bad = demo_json()
        .replace(r#""provider": "beta", "model": "llama-b""#, r#""provider": "betta", "model": "llama-b""#);
    let e = vm.configure(DOWNSTREAM_ROOT_ID.as_bytes(), bad.as_bytes(), &env).unwrap_err();
    assert!(e.contains("models[0].endpoints[2].provider: unknown provider \"betta\""), "{e}");
    assert!(vm.configure(b"other", b"", &env).unwrap_err().contains("unknown root_id"));
    assert!(matches!(
        vm.configure(UPSTREAM_ROOT_ID.as_bytes(), br#"{"provider":"beta"}"#, &env),
        Ok(Role::Upstream(p)) if &*p == "beta"
    ));
    assert!(vm.configure(UPSTREAM_ROOT_ID.as_bytes(), br#"{"provider":"beta","x":1}"#, &env).is_err());
    let no_keys = |_: &str| None;
    let e = vm.configure(DOWNSTREAM_ROOT_ID.as_bytes(), demo_json().as_bytes(), &no_keys).unwrap_err();
    assert!(e.contains("ALPHA_KEY") && !e.contains("secret"), "{e}");
    assert_eq!(Role::Logger.tick_period_ms(), None);
    // Two listeners, two catalogs, one VM: each plugin instance routes with its own.
    let other = demo_json().replace(r#""model": "llama-a""#, r#""model": "llama-a2""#);
    let (Ok(first), Ok(second)) = (
        vm.configure(DOWNSTREAM_ROOT_ID.as_bytes(), demo_json().as_bytes(), &env),
        vm.configure(DOWNSTREAM_ROOT_ID.as_bytes(), other.as_bytes(), &env),
    ) else {
        panic!("both catalogs load")
    };
    assert_eq!(first.tick_period_ms(), Some(1000));
    for (role, native) in [(first, "llama-a"), (second, "llama-a2")] {
        let Role::Downstream(catalog) = role else { panic!("{role:?}") };
        let mut d = vm.downstream(&catalog);
        let mut host = FakeHost::default();
        let (_, body) = forwarded(send_request(&mut d, &mut host, chat_headers(), &[CHAT], false));
        assert_eq!(json(&body)["model"], native);
    }
}

#[test]
fn a_body_at_the_limit_is_routed_and_one_byte_more_is_413_whether_ended_by_data_or_trailers() {
    let vm = vm_with(r#", "max_request_bytes": 1024"#);
    let at_limit = |len: usize| {
        let head =
            r#"{"model":"llama","provider":{"sort":"price"},"messages":[{"role":"user","content":"hi"}]"#;
        format!("{head}{}}}", " ".repeat(len - head.len() - 1)).into_bytes()
    };
    for trailers in [false, true] {
        for (len, status) in [(1024, None), (1025, Some(413))] {
            let mut d = vm.downstream().unwrap();
            let mut host = FakeHost::default();
            let body = at_limit(len);
            let (a, b) = body.split_at(100);
            match (send_request(&mut d, &mut host, chat_headers(), &[a, b], trailers), status) {
                (Sent::Forwarded { .. }, None) => {}
                (Sent::Replied(r), Some(s)) if r.status == s => {}
                (other, _) => panic!("{len} bytes, trailers {trailers}: {other:?}"),
            }
        }
    }
}

#[test]
fn after_a_local_reply_the_role_leaves_the_exchange_alone() {
    let vm = vm();
    let mut d = vm.downstream().unwrap();
    let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
    let mut h = chat_headers();
    h.retain(|(n, _)| n != "authorization");
    host.request_headers = h;
    assert_eq!(d.on_request_headers(&mut host, false), Flow::Pause);
    assert_eq!(host.reply.as_ref().map(|r| r.status), Some(401));
    // A body still arriving is neither routed nor passed on.
    host.request_body = CHAT.to_vec();
    assert_eq!(d.on_request_body(&mut host, CHAT.len(), true), Flow::Pause);
    assert!(host.filter_state.is_empty(), "no plan");
    // The reply's own response passes untouched, and is not timed as a provider's first byte.
    let reply = host.reply.clone().unwrap();
    host.now_ms = START + 30;
    let got = reply_response(&mut d, &mut host, &reply);
    assert!(got.headers.iter().all(|(n, _)| !n.starts_with("x-llm-")), "{:?}", got.headers);
    d.on_log(&mut host);
    let a = account(&host);
    assert_eq!((a["status"].as_u64(), a["ttfb_ms"].is_null()), (Some(401), true), "{a}");
}

#[test]
fn a_tls_failure_reaching_no_provider_is_our_502_naming_it() {
    let vm = vm();
    let mut d = vm.downstream().unwrap();
    let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
    forwarded(send_request(&mut d, &mut host, chat_headers(), &[CHAT], false));
    // Envoy's own 503 after the connection failed its certificate check (not via_upstream).
    host.int_attributes.push((IntAttribute::AttemptCount, 1));
    host.text_attributes.push((
        TextAttribute::TransportFailureReason,
        "TLS_error:|268435581:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED".into(),
    ));
    let envoy_reply = headers(&[(":status", "503"), ("content-type", "application/json")]);
    let got = receive_response(&mut d, &mut host, envoy_reply, &[br#"{"error":{"code":503}}"#], false);
    assert_eq!(get(&got.headers, ":status"), Some("502"));
    assert_eq!(json(&got.body)["error"]["message"], "Could not verify the TLS certificate of Alpha");
    // Any other reply of Envoy's passes as its local_reply_config shaped it.
    let mut d = vm.downstream().unwrap();
    let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
    forwarded(send_request(&mut d, &mut host, chat_headers(), &[CHAT], false));
    host.text_attributes.push((TextAttribute::TransportFailureReason, "connection refused".into()));
    let got = receive_response(&mut d, &mut host, headers(&[(":status", "503")]), &[b"{}"], false);
    assert_eq!((get(&got.headers, ":status"), got.body.as_slice()), (Some("503"), &b"{}"[..]));
}

#[test]
fn a_completion_with_no_body_is_forwarded_at_once_filtered() {
    let vm = vm();
    let mut d = vm.downstream().unwrap();
    let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
    forwarded(send_request(&mut d, &mut host, chat_headers(), &[CHAT], false));
    host.response_headers = provider_response("200", "application/json", "1");
    assert_eq!(d.on_response_headers(&mut host, true), Flow::Continue, "nothing to wait for");
    assert_eq!(get(&host.response_headers, "x-llm-provider"), Some("alpha"));
    assert_eq!(get(&host.response_headers, "x-mock-secret"), None);
    assert!(host.filter_state.contains_key("llm_account"), "the exchange is over");
}

#[test]
fn envoys_own_error_replies_are_accounted_by_their_status() {
    let vm = vm();
    for (status, error_type) in
        [("504", Some("timeout")), ("503", Some("provider_unavailable")), ("200", None)]
    {
        let mut d = vm.downstream().unwrap();
        let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
        forwarded(send_request(&mut d, &mut host, chat_headers(), &[CHAT], false));
        let reply = headers(&[(":status", status), ("content-type", "text/plain")]);
        receive_response(&mut d, &mut host, reply, &[b"x"], false);
        d.on_log(&mut host);
        assert_eq!(account(&host)["error_type"].as_str(), error_type, "{status}");
    }
}

#[test]
fn usage_the_provider_never_reported_is_estimated_only_where_it_worked() {
    let vm = vm();
    let prompt = (CHAT.len() as u64).div_ceil(4);
    // A 2xx completion without usage: the body's size bounds the completion.
    let body = br#"{"id":"c1","object":"chat.completion","choices":[]}"#;
    // Envoy's own 504 after the attempt to alpha timed out: the prompt only.
    // Envoy's 503 (no provider reached) and a provider's own usage: no estimate.
    type Case<'a> = (&'a str, &'a [u8], Option<&'a str>, Option<(u64, u64)>);
    let cases: [Case; 4] = [
        ("200", body, Some("1"), Some((prompt, (body.len() as u64).div_ceil(4)))),
        ("504", b"upstream request timeout", None, Some((prompt, 0))),
        ("503", b"no healthy upstream", None, None),
        ("200", &completion(10, 5), Some("1"), None),
    ];
    for (status, body, attempt, want) in cases {
        let mut d = vm.downstream().unwrap();
        let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
        forwarded(send_request(&mut d, &mut host, chat_headers(), &[CHAT], false));
        let mut response = headers(&[(":status", status), ("content-type", "application/json")]);
        match attempt {
            Some(n) => set_header(&mut response, "x-envoy-attempt-count", n.as_bytes()),
            None => host.int_attributes.push((IntAttribute::AttemptCount, 1)),
        }
        receive_response(&mut d, &mut host, response, &[body], false);
        d.on_log(&mut host);
        let a = account(&host);
        let got = a["usage_estimated"]
            .as_bool()
            .filter(|e| *e)
            .map(|_| (a["prompt_tokens"].as_u64().unwrap(), a["completion_tokens"].as_u64().unwrap()));
        assert_eq!(got, want, "{status}: {a}");
        if want.is_some() {
            assert!(a["cost_nano_usd"].as_u64().is_some_and(|c| c > 0), "{a}");
        }
    }
}

#[test]
fn a_keys_requests_per_minute_are_counted_across_workers_and_the_rest_refused_before_any_provider() {
    let (vm, catalog) = configured(&demo_json_with(r#"{"requests_per_minute": 2}"#, ""));
    // Three requests on (possibly) different workers: one shared store.
    let store = FakeHost { now_ms: START, ..FakeHost::default() };
    let mut sent = Vec::new();
    for n in 0..3 {
        let mut host = FakeHost::beside(&store, START + n);
        let mut d = vm.downstream(&catalog);
        sent.push(send_request(&mut d, &mut host, chat_headers(), &[CHAT], false));
        if n == 2 {
            d.on_log(&mut host);
            let a = account(&host);
            assert_eq!(
                (a["status"].as_u64(), a["error_type"].as_str()),
                (Some(429), Some("rate_limit_exceeded"))
            );
        }
    }
    assert!(matches!(sent[0], Sent::Forwarded { .. }) && matches!(sent[1], Sent::Forwarded { .. }));
    let Sent::Replied(reply) = &sent[2] else {
        panic!("the third request reaches a provider: {:?}", sent[2])
    };
    assert_eq!(reply.status, 429);
    let header = |n: &str| reply.headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    // START is 00:00:00 UTC: the window resets at the next minute.
    let reset = (START / 60_000 + 1) * 60_000;
    assert_eq!(header("retry-after"), Some(((reset - START - 2).div_ceil(1000)).to_string().as_str()));
    assert_eq!(header("x-ratelimit-limit"), Some("2"));
    assert_eq!(header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(header("x-ratelimit-reset"), Some(reset.to_string().as_str()));
    assert_eq!(json(&reply.body)["error"]["code"], 429);
    // The next minute, the window starts again.
    let mut host = FakeHost::beside(&store, reset);
    let mut d = vm.downstream(&catalog);
    assert!(matches!(
        send_request(&mut d, &mut host, chat_headers(), &[CHAT], false),
        Sent::Forwarded { .. }
    ));
    // A key without limits reads and writes nothing for them.
    let plain = vm_with("");
    let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
    forwarded(send_request(&mut plain.downstream().unwrap(), &mut host, chat_headers(), &[CHAT], false));
    assert!(host.shared.borrow().values.keys().all(|k| !k.starts_with("llm_router.rate.")));
}

#[test]
fn free_variants_have_per_minute_and_per_day_quotas_and_a_refusal_consumes_neither() {
    use crate::routing::rate_limit::Window;
    // alpha's llama-a made free, quotas of 2 per minute and 3 per day.
    let catalog = demo_json()
        .replace(
            r#""pricing": {"prompt": 0.1, "completion": 0.2}"#,
            r#""pricing": {"prompt": 0, "completion": 0}"#,
        )
        .replace(
            r#""max_attempts": 2"#,
            r#""max_attempts": 2, "free_requests_per_minute": 2, "free_requests_per_day": 3"#,
        );
    let (vm, catalog) = configured(&catalog);
    let free = br#"{"model":"llama:free","messages":[{"role":"user","content":"hi"}]}"#;
    let store = FakeHost::default();
    let send = |now: u64| {
        let mut host = FakeHost::beside(&store, now);
        send_request(&mut vm.downstream(&catalog), &mut host, chat_headers(), &[free], false)
    };
    let stored = |quota: &str| {
        let key = crate::filter::rate_memory::key_of(quota, "team-a");
        store.shared.borrow().values.get(&key).and_then(|(v, _)| Window::decode(v)).map(|w| w.count)
    };
    let refused = |sent: Sent| match sent {
        Sent::Replied(r) => r,
        other => panic!("not refused: {other:?}"),
    };
    assert!(matches!(send(START), Sent::Forwarded { .. }));
    assert!(matches!(send(START + 1), Sent::Forwarded { .. }));
    let r = refused(send(START + 2));
    assert_eq!(json(&r.body)["error"]["message"], "Rate limit exceeded: 2 free-model requests per minute");
    assert_eq!(
        (stored("free_day"), stored("free_minute")),
        (Some(2), Some(2)),
        "the refusal took back its day count"
    );
    // The next minute: one more fits the day, then the day is full until midnight UTC.
    assert!(matches!(send(START + 60_000), Sent::Forwarded { .. }));
    let r = refused(send(START + 60_001));
    assert_eq!(json(&r.body)["error"]["message"], "Rate limit exceeded: 3 free-model requests per day");
    let reset = (START / 86_400_000 + 1) * 86_400_000;
    assert!(r.headers.contains(&("x-ratelimit-reset".to_string(), reset.to_string())), "{:?}", r.headers);
    assert_eq!((stored("free_day"), stored("free_minute")), (Some(3), Some(1)));
    // A paid model is not a free variant: no quota applies.
    assert!(matches!(
        send_request(
            &mut vm.downstream(&catalog),
            &mut FakeHost::beside(&store, START + 60_002),
            chat_headers(),
            &[CHAT],
            false
        ),
        Sent::Forwarded { .. }
    ));
}

#[test]
fn two_workers_creating_a_window_at_once_both_count() {
    use crate::filter::rate_memory::{admit, key_of};
    use crate::routing::calendar::Period;
    use crate::routing::rate_limit::{Admission, Window};
    // Worker A reads "no window"; before it writes, worker B creates the window with its own request.
    // A's create-only write must fail and A count on top of B's, not overwrite it.
    let key = key_of("rate", "team-a");
    let mut a = FakeHost { now_ms: START, ..FakeHost::default() };
    let minute = START / 60_000;
    *a.racing_write.borrow_mut() = Some(Window { number: minute, count: 1 }.encode());
    assert!(matches!(admit(&mut a, &key, 5, Period::Minute, START), Admission::Admit { remaining: 3, .. }));
    let stored = a.shared.borrow().values[&key].0.clone();
    assert_eq!(Window::decode(&stored), Some(Window { number: minute, count: 2 }), "both requests counted");
}

#[test]
fn a_health_update_that_loses_a_race_reads_again_and_writes() {
    let mut vm = vm();
    assert!(matches!(vm.configure(LOGGER_ROOT_ID.as_bytes(), b"", &env), Ok(Role::Logger)));
    let host = FakeHost { now_ms: START, ..FakeHost::default() };
    put_record(&host, "beta", Record { last_failure_ms: START - 10, cooldown_until_ms: 0 });
    let mut host = FakeHost { cas_conflicts: std::cell::Cell::new(2), ..host };
    host.text_attributes.push((TextAttribute::ClusterName, "llm_fallback_beta".into()));
    host.int_attributes.push((IntAttribute::ResponseCode, 503));
    vm.log_attempt(&mut host);
    assert_eq!(record(&host, "beta").map(|r| r.last_failure_ms), Some(START), "written on the third try");
}

#[test]
fn a_flush_gives_envoy_only_the_counters_that_moved() {
    let vm = vm();
    let envoy = FakeHost::default();
    let mut host = FakeHost::beside(&envoy, START);
    // A request Envoy answered itself: no usage, no cost, one attempt of none.
    let mut d = vm.downstream().unwrap();
    forwarded(send_request(&mut d, &mut host, chat_headers(), &[CHAT], false));
    receive_response(&mut d, &mut host, headers(&[(":status", "503")]), &[b"x"], false);
    d.on_log(&mut host);
    let mut tick = FakeHost::beside(&envoy, START);
    vm.tick(&mut tick);
    let moved = envoy.stats.borrow().counters.len();
    assert_eq!(tick.calls.get(), moved, "one increment per counter that moved");
    assert!(envoy.stats.borrow().counters.values().all(|n| *n > 0));
    assert!(envoy.stats.borrow().names.len() > moved, "the zero ones were defined, not incremented");
}

#[test]
fn a_replayed_body_shorter_than_the_plan_says_is_not_spliced() {
    let vm = vm();
    let mut d = vm.downstream().unwrap();
    let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
    let (first, _) = forwarded(send_request(&mut d, &mut host, chat_headers(), &[CHAT], false));
    let mut attempt =
        FakeHost { filter_state: host.filter_state.clone(), request_headers: first, ..FakeHost::default() };
    set_header(&mut attempt.request_headers, "x-envoy-attempt-count", b"2");
    let mut up = vm.upstream("beta".into());
    assert_eq!(up.on_request_headers(&mut attempt), Flow::Continue);
    attempt.request_body = br#"{"model":"ll"#.to_vec();
    assert_eq!(up.on_request_body(&mut attempt, 12, true), Flow::Continue);
    assert_eq!(attempt.request_body, br#"{"model":"ll"#.to_vec(), "left as it is");
    // One that ends right after the model value is spliced (the range is within it).
    let mut up = vm.upstream("beta".into());
    let mut attempt = FakeHost { request_headers: attempt.request_headers.clone(), ..attempt };
    assert_eq!(up.on_request_headers(&mut attempt), Flow::Continue);
    attempt.request_body = br#"{"model":"llama-a""#.to_vec();
    assert_eq!(up.on_request_body(&mut attempt, 18, true), Flow::Continue);
    assert_eq!(attempt.request_body, br#"{"model":"llama-b""#.to_vec());
}

#[test]
fn a_dollar_budget_reserves_the_worst_case_settles_to_the_cost_and_refuses_with_402() {
    use crate::filter::rate_memory;
    use crate::routing::rate_limit::Window;
    // The plan is alpha then beta (sort by price); with no max_tokens a completion may fill the model's
    // context (1000). The worst case is beta's: every token at $0.5 per million.
    let worst = 500 * (CHAT.len() as u64 + 1000);
    let limits = format!(r#"{{"requests_per_minute": 100, "usd_per_day": {}}}"#, (2 * worst) as f64 / 1e9);
    let (vm, catalog) = configured(&demo_json_with(&limits, ""));
    let store = FakeHost { now_ms: START, ..FakeHost::default() };
    let start = |now: u64| {
        let mut host = FakeHost::beside(&store, now);
        let mut d = vm.downstream(&catalog);
        let sent = send_request(&mut d, &mut host, chat_headers(), &[CHAT], false);
        (d, host, sent)
    };
    let key_info = |now: u64| {
        let mut host = FakeHost::beside(&store, now);
        let get =
            headers(&[(":method", "GET"), (":path", "/api/v1/key"), ("authorization", "Bearer sk-test-1")]);
        let r = replied(send_request(&mut vm.downstream(&catalog), &mut host, get, &[], false));
        assert_eq!(r.status, 200);
        json(&r.body)["data"].clone()
    };
    let requests = || {
        let key = rate_memory::key_of("rate", "team-a");
        store.shared.borrow().values.get(&key).and_then(|(v, _)| Window::decode(v)).map_or(0, |w| w.count)
    };
    // Two reservations fit; the third does not, and counts against nothing.
    let (mut first, mut first_host, sent) = start(START);
    forwarded(sent);
    let (mut second, mut second_host, sent) = start(START + 1);
    forwarded(sent);
    let (_, _, sent) = start(START + 2);
    let r = replied(sent);
    assert_eq!(r.status, 402);
    let body = json(&r.body);
    assert_eq!(body["error"]["metadata"]["error_type"], "payment_required");
    let header = |r: &LocalReply, n: &str| r.headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    assert_eq!(header(&r, "x-ratelimit-remaining").as_deref(), Some("0"));
    assert_eq!(requests(), 2, "the refused request's minute count was taken back");
    assert_eq!(key_info(START + 3)["limit_remaining"], 0);
    // The first is served by alpha (10 + 5 tokens at 0.1 and 0.2 per million: 2000 nano-USD): what its
    // reservation did not spend is free again, but not enough for a whole worst case.
    answer(&mut first, &mut first_host, "1", false);
    first.on_log(&mut first_host);
    let d = key_info(START + 4);
    assert_eq!(d["usage_daily"].as_f64(), Some((worst + 2000) as f64 / 1e9));
    assert_eq!(d["limit_remaining"].as_f64(), Some((worst - 2000) as f64 / 1e9));
    assert_eq!(replied(start(START + 5).2).status, 402);
    // The second ends in a provider error: nothing was served, its reservation is released whole.
    let error = br#"{"error":{"message":"boom"}}"#;
    receive_response(
        &mut second,
        &mut second_host,
        provider_response("503", "application/json", "2"),
        &[error],
        false,
    );
    second.on_log(&mut second_host);
    assert_eq!(key_info(START + 6)["usage_daily"].as_f64(), Some(2000.0 / 1e9));
    // Now a worst case fits again. Its client leaves before any answer: what the provider billed is
    // unknown, so the reservation stands.
    let (mut third, mut third_host, sent) = start(START + 7);
    forwarded(sent);
    third.on_log(&mut third_host);
    let d = key_info(START + 8);
    assert_eq!(d["usage_daily"].as_f64(), Some((worst + 2000) as f64 / 1e9));
    assert_eq!((d["label"].as_str(), d["limit_reset"].as_str()), (Some("team-a"), Some("daily")));
    assert_eq!(requests(), 3);
    // The next day the whole budget is back; the week and the month keep what was spent.
    let d = key_info(START + 86_400_000);
    assert_eq!(
        (d["usage_daily"].as_f64(), d["usage_monthly"].as_f64()),
        (Some(0.0), Some((worst + 2000) as f64 / 1e9))
    );
}

#[test]
fn key_info_needs_a_valid_key_and_get() {
    let vm = vm();
    for (method, auth, status) in [
        ("GET", None, 401),
        ("GET", Some("Bearer sk-nope"), 401),
        ("POST", Some("Bearer sk-test-1"), 405),
        ("GET", Some("Bearer sk-test-1"), 200),
    ] {
        let mut h = vec![(":method", method), (":path", "/v1/key")];
        h.extend(auth.map(|a| ("authorization", a)));
        let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
        let r = replied(send_request(&mut vm.downstream().unwrap(), &mut host, headers(&h), &[], false));
        assert_eq!(r.status, status, "{method} {auth:?}");
        if status == 200 {
            let d = json(&r.body)["data"].clone();
            assert_eq!((d["usage"].as_u64(), d["limit"].is_null()), (Some(0), true));
        }
    }
}

#[test]
fn with_a_rate_limit_service_the_request_names_its_limits_and_its_end_charges_what_it_spent() {
    let (vm, catalog) = configured(&demo_json_with(r#"{"usd_per_day": 5}"#, RATE_LIMIT_SERVICE));
    let mut d = vm.downstream(&catalog);
    let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
    // A client's own copy of a descriptor header is not what the service sees.
    let mut client = chat_headers();
    client.push(("x-llm-rl-key".into(), b"someone-else".to_vec()));
    let (sent, _) = forwarded(send_request(&mut d, &mut host, client, &[CHAT], false));
    let get = |h: &super::host::HeaderList, n: &str| {
        h.iter().filter(|(k, _)| k == n).map(|(_, v)| v.clone()).collect::<Vec<_>>()
    };
    assert_eq!(get(&sent, "x-llm-rl-key"), [b"team-a".to_vec()]);
    assert_eq!(get(&sent, "x-llm-rl-usd"), [b"0".to_vec()]);
    assert!(get(&sent, "x-llm-rl-tokens").is_empty(), "no token limit");
    // Envoy's route removes them before the provider; the end of the stream puts them back with what
    // the request spent (10 + 5 tokens at alpha's prices: 2000 nano-USD, 2 micro-dollars).
    host.request_headers.retain(|(n, _)| !n.starts_with("x-llm-rl-"));
    answer(&mut d, &mut host, "1", false);
    assert_eq!(host.filter_state.get("llm_rl_usd").map(Vec::as_slice), Some(&b"2"[..]));
    assert_eq!(get(&host.request_headers, "x-llm-rl-key"), [b"team-a".to_vec()]);
}

#[test]
fn a_body_that_ends_after_the_minute_turned_is_counted_in_the_new_minute_not_over_it() {
    use crate::filter::rate_memory;
    use crate::routing::rate_limit::Window;
    let (vm, catalog) = configured(&demo_json_with(r#"{"requests_per_minute": 2}"#, ""));
    // The new minute (START is a minute's start) already holds two requests from other workers.
    let key = rate_memory::key_of("rate", "team-a");
    let store = FakeHost::default();
    let full = Window { number: START / 60_000, count: 2 };
    store.shared.borrow_mut().values.insert(key.clone(), (full.encode(), 1));
    // This request's headers came in the minute before; its body ends in the new one.
    let mut host = FakeHost::beside(&store, START - 1);
    host.request_headers = chat_headers();
    let mut d = vm.downstream(&catalog);
    assert_eq!(d.on_request_headers(&mut host, false), Flow::Pause);
    host.now_ms = START + 10;
    host.request_body = CHAT.to_vec();
    d.on_request_body(&mut host, CHAT.len(), true);
    let reply = host.reply.clone().expect("refused: the minute it is admitted in is full");
    assert_eq!(reply.status, 429);
    let stored = store.shared.borrow().values.get(&key).and_then(|(v, _)| Window::decode(v));
    assert_eq!(stored, Some(full), "the new minute's count stands");
}

#[test]
fn a_refusal_by_envoys_rate_limit_filter_gives_back_this_envoys_counts() {
    use crate::filter::rate_memory;
    use crate::routing::rate_limit::Window;
    let (vm, catalog) = configured(&demo_json_with(r#"{"requests_per_minute": 5}"#, RATE_LIMIT_SERVICE));
    let mut d = vm.downstream(&catalog);
    let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
    forwarded(send_request(&mut d, &mut host, chat_headers(), &[CHAT], false));
    let key = rate_memory::key_of("rate", "team-a");
    let count = |h: &FakeHost| {
        h.shared.borrow().values.get(&key).and_then(|(v, _)| Window::decode(v)).map(|w| w.count)
    };
    assert_eq!(count(&host), Some(1));
    host.text_attributes.push((TextAttribute::ResponseCodeDetails, "request_rate_limited".into()));
    receive_response(
        &mut d,
        &mut host,
        headers(&[(":status", "429"), ("x-ratelimit-reset", "17")]),
        &[b"{}"],
        false,
    );
    assert_eq!(count(&host), Some(0), "taken back");
    d.on_log(&mut host);
}

#[test]
fn an_upstream_role_or_logger_in_a_vm_of_its_own_uses_the_catalog_it_was_given() {
    // A mesh may load the roles into separate VMs: the upstream role then has no downstream role's
    // catalog to read, and carries one.
    let catalog: Value = serde_json::from_str(&demo_json()).unwrap();
    let mut vm = Vm::default();
    let config = serde_json::json!({"provider": "beta", "catalog": catalog}).to_string();
    assert!(matches!(
        vm.configure(UPSTREAM_ROOT_ID.as_bytes(), config.as_bytes(), &env),
        Ok(Role::Upstream(_))
    ));
    let mut attempt = FakeHost { filter_state: Default::default(), ..FakeHost::default() };
    // Its attempt is prepared (a plan from a downstream role elsewhere), not refused for want of a catalog.
    let other = vm_with("");
    let mut d = other.downstream().unwrap();
    let mut host = FakeHost { now_ms: START, ..FakeHost::default() };
    let (first, _) = forwarded(send_request(&mut d, &mut host, chat_headers(), &[CHAT], false));
    attempt.filter_state = host.filter_state.clone();
    attempt.request_headers = first;
    set_header(&mut attempt.request_headers, "x-envoy-attempt-count", b"2");
    let mut up = vm.upstream("beta".into());
    assert_eq!(up.on_request_headers(&mut attempt), Flow::Continue);
    assert!(attempt.reply.is_none());
    // A malformed catalog is named, as the downstream role names it.
    let bad = serde_json::json!({"provider": "beta", "catalog": {"providers": []}}).to_string();
    let e = Vm::default().configure(UPSTREAM_ROOT_ID.as_bytes(), bad.as_bytes(), &env).unwrap_err();
    assert!(e.contains("invalid catalog: providers"), "{e}");
    // A newer catalog given later replaces it (a regenerated mesh config); a downstream role's is kept.
    let moved = demo_json().replace("127.0.0.1:8080/openai/v1/", "127.0.0.1:8080/openai/v2/");
    let newer: Value = serde_json::from_str(&moved).unwrap();
    let config = serde_json::json!({"provider": "beta", "catalog": newer}).to_string();
    assert!(vm.configure(UPSTREAM_ROOT_ID.as_bytes(), config.as_bytes(), &env).is_ok());
    let mut up = vm.upstream("beta".into());
    let mut again = FakeHost { filter_state: attempt.filter_state.clone(), ..FakeHost::default() };
    again.request_headers = attempt.request_headers.clone();
    assert_eq!(up.on_request_headers(&mut again), Flow::Continue);
    let path = again.request_headers.iter().find(|(n, _)| n == ":path").map(|(_, v)| v.clone());
    assert_eq!(path.as_deref(), Some(&b"/openai/v2/chat/completions"[..]), "the newer catalog's endpoint");
    let logger = serde_json::json!({"catalog": catalog}).to_string();
    assert!(matches!(
        Vm::default().configure(LOGGER_ROOT_ID.as_bytes(), logger.as_bytes(), &env),
        Ok(Role::Logger)
    ));
    assert!(Vm::default().configure(LOGGER_ROOT_ID.as_bytes(), br#"{"x":1}"#, &env).is_err());
}
