//! The stand-in over real gRPC (h2c) and a real redis-server: what it counts, where, and what it
//! answers.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use llm_router_ratelimit::limiter::Settings;
use llm_router_ratelimit::proto::{Code, RateLimitDescriptor, RateLimitRequest, RateLimitResponse, Unit};
use llm_router_ratelimit::{grpc::status, redis_server_binary, CallError, Options, RateLimitService, Redis};

const CONFIG: &str = r#"
domain: llm
descriptors:
  - key: client
    rate_limit: { unit: minute, requests_per_unit: 3 }
    descriptors:
      - key: model
        rate_limit: { unit: day, requests_per_unit: 100, name: per_model }
  - key: client
    value: vip
    rate_limit: { unlimited: true }
  - key: shadow
    shadow_mode: true
    rate_limit: { unit: minute, requests_per_unit: 1 }
"#;

/// 2026-03-04T05:06:07Z: 7 s into a minute, so a minute window has 53 s left.
const T: i64 = 1_772_600_767;

/// A real Redis, or `None` (after saying why) when redis-server is not installed outside CI.
/// Under CI a missing redis-server fails the test: CI must install it (scripts/lib/redis.sh).
fn redis() -> Option<Redis> {
    if redis_server_binary().is_none() && std::env::var("CI").map_or(true, |v| v != "true") {
        eprintln!("SKIPPED: redis-server not installed (source scripts/lib/redis.sh && ensure_redis)");
        return None;
    }
    Some(Redis::start().unwrap())
}

/// The service with its clock pinned to a value the test moves.
fn service(redis: &Redis, jitter: i64) -> (RateLimitService, Arc<AtomicI64>) {
    let now = Arc::new(AtomicI64::new(T));
    let clock = Arc::clone(&now);
    let options = Options {
        settings: Settings { key_prefix: String::new(), expiration_jitter_max_seconds: jitter },
        clock: Some(Arc::new(move || clock.load(Ordering::SeqCst))),
        ..Options::default()
    };
    (RateLimitService::start_with(CONFIG, redis.addr(), options).unwrap(), now)
}

fn call(
    rls: &RateLimitService,
    hits_addend: u32,
    descriptors: Vec<RateLimitDescriptor>,
) -> RateLimitResponse {
    try_call(rls, "llm", hits_addend, descriptors).unwrap()
}

fn try_call(
    rls: &RateLimitService,
    domain: &str,
    hits_addend: u32,
    descriptors: Vec<RateLimitDescriptor>,
) -> Result<RateLimitResponse, CallError> {
    let request = RateLimitRequest { domain: domain.into(), descriptors, hits_addend };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(llm_router_ratelimit::should_rate_limit(rls.addr(), &request))
}

fn alice() -> RateLimitDescriptor {
    RateLimitDescriptor::new(&[("client", "alice")])
}

/// (code, limit_remaining) of each status.
fn codes(r: &RateLimitResponse) -> Vec<(i32, u32)> {
    r.statuses.iter().map(|s| (s.code, s.limit_remaining)).collect()
}

const OK: i32 = Code::Ok as i32;
const OVER: i32 = Code::OverLimit as i32;

#[test]
fn counts_every_request_and_refuses_past_the_limit() {
    let Some(redis) = redis() else { return };
    let (rls, _) = service(&redis, 300);
    let key = "llm_client_alice_1772600760";
    assert_eq!(rls.key_for("llm", &alice()).as_deref(), Some(key));

    for remaining in [2, 1, 0] {
        let r = call(&rls, 0, vec![alice()]);
        assert_eq!((r.overall_code, codes(&r)), (OK, vec![(OK, remaining)]));
    }
    let r = call(&rls, 0, vec![alice()]);
    assert_eq!((r.overall_code, codes(&r)), (OVER, vec![(OVER, 0)]));
    let status = &r.statuses[0];
    let limit = status.current_limit.as_ref().unwrap();
    assert_eq!((limit.requests_per_unit, limit.unit), (3, Unit::Minute as i32));
    assert_eq!(status.duration_until_reset.map(|d| d.seconds), Some(53));

    // The refused request was counted too, and the key lives a window plus jitter.
    assert_eq!(redis.counter(key).unwrap(), Some(4));
    let ttl = redis.ttl(key).unwrap();
    assert!((55..360).contains(&ttl), "TTL {ttl}");
    assert_eq!(redis.keys("*").unwrap(), vec![key]);
}

#[test]
fn hits_addend_request_level_and_per_descriptor() {
    let Some(redis) = redis() else { return };
    let (rls, _) = service(&redis, 0);
    let key = "llm_client_alice_1772600760";

    // Request-level 2 for a descriptor without its own.
    let r = call(&rls, 2, vec![alice()]);
    assert_eq!(codes(&r), vec![(OK, 1)]);
    assert_eq!(redis.counter(key).unwrap(), Some(2));
    // An explicit per-descriptor 0 is a pure check: nothing added, the key's state reported.
    let r = call(&rls, 5, vec![alice().with_hits(0)]);
    assert_eq!(codes(&r), vec![(OK, 1)]);
    assert_eq!(redis.counter(key).unwrap(), Some(2));
    // A per-descriptor value overrides the request's, and can take the count past the limit.
    let r = call(&rls, 1, vec![alice().with_hits(5)]);
    assert_eq!((r.overall_code, codes(&r)), (OVER, vec![(OVER, 0)]));
    assert_eq!(redis.counter(key).unwrap(), Some(7));
    // A check on a key already over is refused without counting.
    let r = call(&rls, 0, vec![alice().with_hits(0)]);
    assert_eq!(codes(&r), vec![(OVER, 0)]);
    assert_eq!(redis.counter(key).unwrap(), Some(7));
    // With no jitter the TTL is the window.
    assert!((55..=60).contains(&redis.ttl(key).unwrap()));
}

#[test]
fn one_answer_per_descriptor_in_order() {
    let Some(redis) = redis() else { return };
    let (rls, _) = service(&redis, 0);
    let r = call(
        &rls,
        0,
        vec![
            RateLimitDescriptor::new(&[("client", "bob"), ("model", "m1")]),
            RateLimitDescriptor::new(&[("client", "vip")]),
            RateLimitDescriptor::new(&[("nothing", "configured")]),
            RateLimitDescriptor::new(&[("client", "bob")]),
        ],
    );
    assert_eq!(r.overall_code, OK);
    assert_eq!(codes(&r), vec![(OK, 99), (OK, u32::MAX), (OK, 0), (OK, 2)]);
    let nested = r.statuses[0].current_limit.as_ref().unwrap();
    assert_eq!((nested.unit, nested.name.as_str()), (Unit::Day as i32, "per_model"));
    // Unlimited and unmatched descriptors carry no limit and touch no key.
    assert!(r.statuses[1].current_limit.is_none() && r.statuses[2].current_limit.is_none());
    assert_eq!(
        redis.keys("*").unwrap(),
        vec!["llm_client_bob_1772600760", "llm_client_bob_model_m1_1772582400"]
    );
}

#[test]
fn a_new_window_starts_a_new_key() {
    let Some(redis) = redis() else { return };
    let (rls, now) = service(&redis, 0);
    now.store(T - 7 + 59, Ordering::SeqCst);
    assert_eq!(codes(&call(&rls, 4, vec![alice()])), vec![(OVER, 0)]);
    now.store(T - 7 + 60, Ordering::SeqCst);
    let r = call(&rls, 0, vec![alice()]);
    assert_eq!(codes(&r), vec![(OK, 2)]);
    assert_eq!(r.statuses[0].duration_until_reset.map(|d| d.seconds), Some(60));
    assert_eq!(redis.counter("llm_client_alice_1772600760").unwrap(), Some(4));
    assert_eq!(redis.counter("llm_client_alice_1772600820").unwrap(), Some(1));
}

#[test]
fn shadow_mode_counts_but_never_refuses() {
    let Some(redis) = redis() else { return };
    let (rls, _) = service(&redis, 0);
    let shadow = || RateLimitDescriptor::new(&[("shadow", "x")]);
    call(&rls, 0, vec![shadow()]);
    let r = call(&rls, 0, vec![shadow()]);
    assert_eq!((r.overall_code, codes(&r)), (OK, vec![(OK, 0)]));
    assert_eq!(redis.counter("llm_shadow_x_1772600760").unwrap(), Some(2));
}

#[test]
fn errors_are_grpc_statuses_and_calls_are_recorded() {
    let Some(redis) = redis() else { return };
    let (rls, _) = service(&redis, 0);
    let e = try_call(&rls, "", 0, vec![alice()]).unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (Some(status::UNKNOWN), "rate limit domain must not be empty"));
    let e = try_call(&rls, "llm", 0, vec![]).unwrap_err();
    assert_eq!(e.code, Some(status::UNKNOWN));
    // Another domain: no limit, nothing counted.
    let r = try_call(&rls, "other", 0, vec![alice()]).unwrap();
    assert_eq!(codes(&r), vec![(OK, 0)]);
    assert_eq!(redis.keys("*").unwrap(), Vec::<String>::new());

    let calls = rls.wait_for_calls(3, Duration::from_secs(5));
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[2].request.domain, "other");
    assert!(calls[0].response.is_err());

    // Redis gone: the call fails (Envoy then applies its failure mode).
    drop(redis);
    let e = try_call(&rls, "llm", 0, vec![alice()]).unwrap_err();
    assert_eq!(e.code, Some(status::UNKNOWN), "{e}");
}

#[tokio::test]
async fn usable_from_async_tests() {
    let Some(redis) = redis() else { return };
    let rls = RateLimitService::start(CONFIG, redis.addr()).unwrap();
    let request = RateLimitRequest { domain: "llm".into(), descriptors: vec![alice()], hits_addend: 0 };
    let r = llm_router_ratelimit::should_rate_limit(rls.addr(), &request).await.unwrap();
    assert_eq!(codes(&r), vec![(OK, 2)]);
    // Dropping the service here, inside a runtime, must not panic.
    drop(rls);
}
