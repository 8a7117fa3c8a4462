use super::*;
use crate::catalog::Catalog;
use ranking::Ordering;
use session::Source;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// Providers one, two, three at $1, $2, $3 (prompt + completion), all with a cache discount; `free` at $0
/// on model `m/free-mix`; data policies and capabilities vary for the filters.
const CATALOG: &str = r#"{
  "providers": [
    {"name": "one", "display_name": "One Inc", "endpoint": "http://one", "data_collection": "allow"},
    {"name": "two", "endpoint": "http://two", "data_collection": "deny"},
    {"name": "three", "endpoint": "http://three", "data_collection": "deny", "zdr": true},
    {"name": "free", "endpoint": "http://free", "data_collection": "deny"},
    {"name": "gift", "endpoint": "http://gift", "data_collection": "deny"}
  ],
  "models": [
    {"id": "m/chat", "aliases": ["chat"], "context_length": 1000, "endpoints": [
      {"provider": "one", "model": "c1", "pricing": {"prompt": 0.5, "completion": 0.5, "cache_read": 0.1},
       "throughput": 50, "latency_ms": 900, "supported_parameters": ["temperature"]},
      {"provider": "two", "model": "c2", "pricing": {"prompt": 1, "completion": 1, "cache_read": 0.2},
       "throughput": 200, "latency_ms": 300, "quantization": "fp8", "max_completion_tokens": 100,
       "supported_parameters": ["tools", "temperature", "max_tokens"]},
      {"provider": "three", "model": "c3", "pricing": {"prompt": 1.5, "completion": 1.5, "cache_read": 0.3},
       "throughput": 100, "latency_ms": 100, "quantization": "bf16",
       "supported_parameters": ["tools", "tool_choice", "temperature", "max_tokens"]}
    ]},
    {"id": "m/free-mix", "endpoints": [
      {"provider": "one", "model": "f1", "pricing": {"prompt": 1, "completion": 1}},
      {"provider": "free", "model": "f0", "pricing": {"prompt": 0, "completion": 0}},
      {"provider": "gift", "model": "g0", "pricing": {"prompt": 0, "completion": 0}}
    ]},
    {"id": "m/other", "endpoints": [
      {"provider": "two", "model": "o2", "pricing": {"prompt": 4, "completion": 4}},
      {"provider": "three", "model": "o3", "pricing": {"prompt": 3, "completion": 3}}
    ]}
  ],
  "keys": [
    {"name": "open", "sha256": "0000000000000000000000000000000000000000000000000000000000000000"},
    {"name": "careful", "sha256": "1111111111111111111111111111111111111111111111111111111111111111",
     "policy": {"data_collection": "deny"}},
    {"name": "other", "sha256": "2222222222222222222222222222222222222222222222222222222222222222"}
  ],
  "routing": {"max_attempts": 3}
}"#;

fn catalog() -> Catalog {
    Catalog::parse(CATALOG.as_bytes(), None).unwrap()
}

struct Req<'a> {
    body: String,
    session: Option<&'a str>,
    request_id: &'a str,
    /// The calling key's position in `keys` (`None`: `auth: none`).
    caller: Option<usize>,
    /// The health memory, by provider slug.
    health: &'a dyn Fn(&str) -> Status,
}

fn req(body: &str) -> Req<'static> {
    Req {
        body: body.to_string(),
        session: None,
        request_id: "r",
        caller: Some(0),
        health: &|_| Status::default(),
    }
}

impl Req<'_> {
    fn run(&self, c: &Catalog) -> Result<Route, ApiError> {
        let request = ChatRequest::parse(self.body.as_bytes()).unwrap();
        let health = |p: ProviderId| (self.health)(&c.provider(p).name);
        let inputs = Inputs {
            request: &request,
            caller: self.caller.map(|i| c.key_ids().nth(i).unwrap()),
            session_header: self.session.map(str::as_bytes),
            request_id: Some(self.request_id.as_bytes()),
            health: &health,
        };
        route(c, &inputs)
    }

    /// The rendered explanation.
    fn explain(&self, c: &Catalog) -> String {
        self.run(c).unwrap().explanation.render(c)
    }

    /// The plan as "provider:native" strings.
    fn plan(&self, c: &Catalog) -> Vec<String> {
        let r = self.run(c).unwrap_or_else(|e| panic!("{}: {}", self.body, e.body()));
        r.plan.iter().map(|x| format!("{}:{}", c.provider_of(*x).name, c.endpoint(*x).model)).collect()
    }

    fn first(&self, c: &Catalog) -> String {
        self.plan(c)[0].clone()
    }
}

fn body(model: &str, extra: &str) -> String {
    format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]{extra}}}"#)
}

#[test]
fn first_choice_shares_follow_inverse_square_price_over_20000_sessions() {
    let c = catalog();
    let mut counts = [0usize; 3];
    let n = 20_000;
    for i in 0..n {
        let session = format!("session-{i}");
        let r = Req { session: Some(&session), ..req(&body("chat", "")) };
        let first = r.first(&c);
        counts[["one:c1", "two:c2", "three:c3"].iter().position(|p| *p == first).unwrap()] += 1;
    }
    // Weights 1, 1/4, 1/9 → 73.5 %, 18.4 %, 8.2 %.
    let total = 1.0 + 0.25 + 1.0 / 9.0;
    for (k, w) in [1.0, 0.25, 1.0 / 9.0].iter().enumerate() {
        let share = counts[k] as f64 / n as f64;
        assert!((share - w / total).abs() < 0.015, "provider {k}: {share} vs {}", w / total);
    }
}

#[test]
fn a_session_keeps_its_provider_whatever_the_request_id_or_catalog_order() {
    let c = catalog();
    // The same catalog with every list reversed and a provider added in front: every position changes.
    let mut doc: serde_json::Value = serde_json::from_str(CATALOG).unwrap();
    doc["providers"].as_array_mut().unwrap().reverse();
    doc["providers"]
        .as_array_mut()
        .unwrap()
        .insert(0, serde_json::json!({"name": "zero", "endpoint": "http://zero"}));
    for m in doc["models"].as_array_mut().unwrap() {
        m["endpoints"].as_array_mut().unwrap().reverse();
    }
    let c2 = Catalog::parse(doc.to_string().as_bytes(), None).unwrap();
    let first_listed = |c: &Catalog| {
        c.provider_of(c.endpoints_of(c.model_named("m/chat").unwrap()).next().unwrap()).name.clone()
    };
    assert_ne!(first_listed(&c), first_listed(&c2), "the reordering moved the endpoints");
    for i in 0..200 {
        let session = format!("s{i}");
        let a = Req { session: Some(&session), request_id: "x", ..req(&body("chat", "")) }.first(&c);
        let b = Req { session: Some(&session), request_id: "y", ..req(&body("chat", "")) }.first(&c);
        let d = Req { session: Some(&session), request_id: "z", ..req(&body("chat", "")) }.first(&c2);
        assert_eq!((a.as_str(), a.as_str()), (b.as_str(), d.as_str()), "session {session}");
    }
}

#[test]
fn removing_an_endpoint_moves_only_its_sessions() {
    let c = catalog();
    let mut moved_elsewhere = 0;
    for i in 0..2000 {
        let session = format!("s{i}");
        let before = Req { session: Some(&session), ..req(&body("chat", "")) }.first(&c);
        let ignore_two = body("chat", r#","provider":{"ignore":["two"]}"#);
        let after = Req { session: Some(&session), ..req(&ignore_two) }.first(&c);
        if before == "two:c2" {
            assert_ne!(after, "two:c2");
        } else {
            moved_elsewhere += usize::from(before != after);
        }
    }
    assert_eq!(moved_elsewhere, 0, "sessions not on the removed endpoint must stay put");
}

#[test]
fn opening_messages_make_a_session_and_the_key_name_separates_tenants() {
    let c = catalog();
    let convo = |opening: usize, extra: &str| {
        format!(
            r#"{{"model":"chat","messages":[{{"role":"system","content":"be brief"}},{{"role":"user","content":"q{opening}"}}{extra}]}}"#
        )
    };
    let mut differ = 0;
    for i in 0..100 {
        let (short, long) = (convo(i, &format!(r#",{{"role":"assistant","content":"{i}"}}"#)), convo(i, ""));
        let a = Req { request_id: "1", ..req(&short) }.run(&c).unwrap();
        let b = Req { request_id: "2", ..req(&long) }.run(&c).unwrap();
        assert_eq!(
            (a.plan.clone(), a.session.clone()),
            (b.plan.clone(), b.session.clone()),
            "later turns do not move a conversation"
        );
        // Another tenant (same policy) with the same conversation has another session, so draws apart.
        let other = Req { caller: Some(2), ..req(&long) }.run(&c).unwrap();
        assert_ne!(other.session, b.session, "conversation {i}");
        differ += usize::from(other.plan[0] != b.plan[0]);
    }
    // A draw that ignored the key would never differ; with it, about 1 − Σp² ≈ 43 % of them do.
    assert!((20..70).contains(&differ), "{differ} of 100 first choices differ between tenants");
}

#[test]
fn without_stickiness_or_cache_discount_the_draw_is_per_request() {
    let c = Catalog::parse(
        CATALOG.replace(r#""max_attempts": 3"#, r#""max_attempts": 3, "sticky_sessions": false"#).as_bytes(),
        None,
    )
    .unwrap();
    let firsts: std::collections::BTreeSet<String> = (0..200)
        .map(|i| {
            let id = format!("req-{i}");
            Req { session: Some("same"), request_id: &id, ..req(&body("chat", "")) }.first(&c)
        })
        .collect();
    assert!(firsts.len() > 1, "one session spreads across providers when not sticky: {firsts:?}");
    // No cache discount anywhere: stickiness gains nothing, so the same session spreads too.
    let plain = CATALOG
        .replace(r#", "cache_read": 0.1"#, "")
        .replace(r#", "cache_read": 0.2"#, "")
        .replace(r#", "cache_read": 0.3"#, "");
    // A cache_read equal to the prompt price is no discount either.
    let equal = CATALOG
        .replace(r#""cache_read": 0.1"#, r#""cache_read": 0.5"#)
        .replace(r#""cache_read": 0.2"#, r#""cache_read": 1"#)
        .replace(r#""cache_read": 0.3"#, r#""cache_read": 1.5"#);
    for catalog in [plain, equal] {
        let c = Catalog::parse(catalog.as_bytes(), None).unwrap();
        let firsts: std::collections::BTreeSet<String> = (0..200)
            .map(|i| {
                let id = format!("req-{i}");
                Req { session: Some("same"), request_id: &id, ..req(&body("chat", "")) }.first(&c)
            })
            .collect();
        assert!(firsts.len() > 1, "{firsts:?}");
    }
}

#[test]
fn free_endpoints_are_drawn_uniformly_and_paid_ones_never_first() {
    let c = catalog();
    let mut free = 0;
    for i in 0..2000 {
        let id = format!("{i}");
        let first = Req { request_id: &id, ..req(&body("m/free-mix", "")) }.first(&c);
        assert_ne!(first, "one:f1");
        free += usize::from(first == "free:f0");
    }
    assert!((800..1200).contains(&free), "{free} of 2000");
}

#[test]
fn variants_floor_nitro_free() {
    let c = catalog();
    assert_eq!(req(&body("chat:floor", "")).plan(&c), ["one:c1", "two:c2", "three:c3"]);
    assert_eq!(req(&body("m/chat:nitro", "")).plan(&c), ["two:c2", "three:c3", "one:c1"]);
    assert_eq!(
        req(&body("m/free-mix:free", r#","provider":{"sort":"price"}"#)).plan(&c),
        ["free:f0", "gift:g0"]
    );
    let e = req(&body("chat:free", "")).run(&c).unwrap_err();
    assert_eq!(e.status(), 404);
    assert!(e.body().contains(r#""one":"max_price""#), "{}", e.body());
    assert_eq!(req(&body("chat:fast", "")).run(&c).unwrap_err().error_type(), "model_not_found");
}

#[test]
fn sort_and_order_preferences() {
    let c = catalog();
    let cases = [
        (r#","provider":{"sort":"latency"}"#, vec!["three:c3", "two:c2", "one:c1"]),
        (r#","provider":{"sort":{"by":"throughput"}}"#, vec!["two:c2", "three:c3", "one:c1"]),
        (r#","provider":{"order":["Three","one inc"]}"#, vec!["three:c3", "one:c1", "two:c2"]),
        (r#","provider":{"order":["three"],"allow_fallbacks":false}"#, vec!["three:c3"]),
        (r#","provider":{"only":["two","three"],"sort":"price"}"#, vec!["two:c2", "three:c3"]),
        (r#","provider":{"ignore":["One Inc"],"sort":"price"}"#, vec!["two:c2", "three:c3"]),
    ];
    for (extra, want) in cases {
        assert_eq!(req(&body("chat", extra)).plan(&c), want, "{extra}");
    }
}

#[test]
fn filters_and_their_exclusion_reasons() {
    let c = catalog();
    let sorted = r#""sort":"price""#;
    let cases: Vec<(String, Vec<&str>, &str)> = vec![
        (
            format!(r#","provider":{{"data_collection":"deny",{sorted}}}"#),
            vec!["two:c2", "three:c3"],
            "one:data_policy:training",
        ),
        (format!(r#","provider":{{"zdr":true,{sorted}}}"#), vec!["three:c3"], "two:data_policy:zdr"),
        (
            format!(r#","provider":{{"max_price":{{"prompt":"1.2"}},{sorted}}}"#),
            vec!["one:c1", "two:c2"],
            "three:max_price",
        ),
        (
            format!(r#","provider":{{"quantizations":["bf16"],{sorted}}}"#),
            vec!["three:c3"],
            "two:quantization",
        ),
        (
            format!(r#","tools":[],"provider":{{"require_parameters":true,{sorted}}}"#),
            vec!["two:c2", "three:c3"],
            "one:require_parameters",
        ),
        (
            format!(r#","max_tokens":150,"provider":{{{sorted}}}"#),
            vec!["one:c1", "three:c3"],
            "two:context_length",
        ),
        (format!(r#","max_tokens":990,"provider":{{{sorted}}}"#), vec![], "one:context_length"),
    ];
    for (extra, want, reason) in cases {
        let r = req(&body("chat", &extra));
        if want.is_empty() {
            let e = r.run(&c).unwrap_err();
            assert_eq!(e.status(), 404, "{extra}");
            continue;
        }
        assert_eq!(r.plan(&c), want, "{extra}");
        let r = r.run(&c).unwrap();
        let excluded: Vec<String> = r
            .explanation
            .excluded
            .iter()
            .map(|(e, x)| format!("{}:{}", c.provider_of(*e).name, x.name()))
            .collect();
        assert!(excluded.iter().any(|x| x == reason), "{reason} in {excluded:?}");
    }
}

#[test]
fn tools_prefer_supporting_endpoints_without_requiring_them() {
    let c = catalog();
    for i in 0..50 {
        let id = format!("{i}");
        let plan =
            Req { request_id: &id, ..req(&body("chat", r#","tools":[{"type":"function"}]"#)) }.plan(&c);
        assert_eq!(plan.last().map(String::as_str), Some("one:c1"), "one lacks tools: {plan:?}");
        assert_eq!(plan.len(), 3);
    }
}

#[test]
fn preferred_speeds_hold_at_their_edge() {
    let c = catalog();
    // Throughputs one 50, two 200, three 100; latencies one 900 ms, two 300 ms, three 100 ms.
    for (prefs, last) in [
        (r#""preferred_min_throughput":200"#, ["one:c1", "three:c3"]), // exactly 200 is fast enough
        (r#""preferred_max_latency":0.3"#, ["one:c1", "one:c1"]),      // exactly 300 ms is quick enough
    ] {
        for i in 0..30 {
            let id = format!("{i}");
            let b = body("chat", &format!(r#","provider":{{{prefs}}}"#));
            let plan = Req { request_id: &id, ..req(&b) }.plan(&c);
            assert!(!last.contains(&plan[0].as_str()), "{prefs}: {plan:?}");
            assert!(last.contains(&plan[2].as_str()), "{prefs}: {plan:?}");
        }
    }
}

#[test]
fn preferred_speed_moves_slow_endpoints_last() {
    let c = catalog();
    for i in 0..30 {
        let id = format!("{i}");
        let plan =
            Req { request_id: &id, ..req(&body("chat", r#","provider":{"preferred_max_latency":0.5}"#)) }
                .plan(&c);
        assert_eq!(plan[2], "one:c1", "{plan:?}");
    }
}

#[test]
fn the_key_policy_is_a_floor_the_request_cannot_loosen() {
    let c = catalog();
    let loosen = body("chat", r#","provider":{"data_collection":"allow","only":["one","two"]}"#);
    let r = Req { caller: Some(1), ..req(&loosen) };
    assert_eq!(r.plan(&c), ["two:c2"]);
    let e =
        Req { caller: Some(1), ..req(&body("chat", r#","provider":{"only":["one"]}"#)) }.run(&c).unwrap_err();
    assert_eq!(e.status(), 404);
}

#[test]
fn nothing_fits_is_a_404_listing_every_exclusion() {
    let c = catalog();
    let e =
        req(&body("chat", r#","provider":{"data_collection":"deny","zdr":true,"quantizations":["fp8"]}"#))
            .run(&c)
            .unwrap_err();
    let v: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
    assert_eq!(v["error"]["code"], 404);
    assert_eq!(v["error"]["message"], "No endpoints found matching your data policy");
    assert_eq!(
        v["error"]["metadata"]["excluded_by"],
        serde_json::json!({"one": "data_policy:training", "two": "data_policy:zdr", "three": "quantization"})
    );
    let e = req(&body("chat", r#","provider":{"max_price":{"prompt":0.1}}"#)).run(&c).unwrap_err();
    assert!(e.message().starts_with("No endpoints found that meet your max_price"), "{}", e.message());
    // The most common reason names the message, wherever it comes in the list: one is left out for its
    // quantization first, then two and three for their price.
    let prefs = r#","provider":{"quantizations":["fp8","bf16"],"max_price":{"prompt":0.6}}"#;
    let e = req(&body("chat", prefs)).run(&c).unwrap_err();
    assert_eq!(e.message(), "No endpoints found that meet your max_price");
    // With several models, each exclusion names its model.
    let both = r#"{"models":["chat","m/other"],"messages":[],"provider":{"only":["gift"]}}"#;
    let ApiError::NoEndpoints { excluded_by, .. } = req(both).run(&c).unwrap_err() else { panic!() };
    let keys: Vec<&str> = excluded_by.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["m/chat@one", "m/chat@two", "m/chat@three", "m/other@two", "m/other@three"]);
}

#[test]
fn health_moves_recent_failures_last_and_excludes_cooling_providers() {
    let c = catalog();
    let one_failed = |p: &str| Status { recently_failed: p == "one", cooldown_remaining_ms: None };
    for i in 0..50 {
        let id = format!("{i}");
        let plan = Req { request_id: &id, health: &one_failed, ..req(&body("chat", "")) }.plan(&c);
        assert_eq!(plan[2], "one:c1", "{plan:?}");
    }
    let sorted = Req { health: &one_failed, ..req(&body("chat", r#","provider":{"sort":"price"}"#)) };
    assert_eq!(sorted.plan(&c), ["two:c2", "three:c3", "one:c1"], "a sort keeps failures last too");
    let ordered = Req { health: &one_failed, ..req(&body("chat", r#","provider":{"order":["one"]}"#)) };
    assert_eq!(ordered.plan(&c)[0], "one:c1", "an explicit order is the client's call");
    let one_cooling =
        |p: &str| Status { recently_failed: true, cooldown_remaining_ms: (p == "one").then_some(2500) };
    let r = Req { health: &one_cooling, ..req(&body("chat", "")) };
    assert!(!r.plan(&c).contains(&"one:c1".to_string()));
    assert!(r.explain(&c).contains("one:unhealthy"));
    let all_cooling = |p: &str| Status {
        recently_failed: true,
        cooldown_remaining_ms: Some(if p == "two" { 1200 } else { 9000 }),
    };
    let e = Req { health: &all_cooling, ..req(&body("chat", "")) }.run(&c).unwrap_err();
    assert_eq!(e.status(), 429);
    assert!(e.headers().contains(&("retry-after", "2".to_string())), "{:?}", e.headers());
}

#[test]
fn models_list_falls_back_across_models_keeping_each_first_candidate() {
    let c = catalog();
    let b = r#"{"models":["chat","m/other"],"messages":[],"provider":{"sort":"price"}}"#;
    assert_eq!(req(b).plan(&c), ["one:c1", "two:c2", "three:o3"]);
    let b = r#"{"model":"m/other","models":["chat"],"messages":[],"provider":{"sort":"price"}}"#;
    assert_eq!(req(b).plan(&c), ["three:o3", "two:o2", "one:c1"]);
    let c1 = Catalog::parse(CATALOG.replace(r#""max_attempts": 3"#, r#""max_attempts": 1"#).as_bytes(), None)
        .unwrap();
    let b = r#"{"models":["chat","m/other","m/free-mix"],"messages":[],"provider":{"sort":"price"}}"#;
    assert_eq!(req(b).plan(&c1), ["one:c1", "three:o3", "free:f0"], "max(max_attempts, models)");
    let e = req(r#"{"models":["chat","nope"],"messages":[]}"#).run(&c).unwrap_err();
    assert_eq!(e.error_type(), "model_not_found");
    let many: Vec<String> =
        (0..9).map(|i| format!("\"chat{}\"", if i == 0 { "" } else { ":floor" })).collect();
    let e = req(&format!(r#"{{"models":[{}],"messages":[]}}"#, many.join(","))).run(&c);
    assert!(e.is_ok(), "duplicates collapse");
    // At most MAX_MODELS distinct models (a variant counts as its own).
    let distinct: Vec<String> = ["chat", "m/other", "m/free-mix"]
        .iter()
        .flat_map(|m| ["", ":floor", ":nitro"].map(|v| format!("\"{m}{v}\"")))
        .collect();
    let models = |n: usize| format!(r#"{{"models":[{}],"messages":[]}}"#, distinct[..n].join(","));
    assert!(req(&models(MAX_MODELS)).run(&c).is_ok());
    assert_eq!(req(&models(MAX_MODELS + 1)).run(&c).unwrap_err().status(), 400);
}

#[test]
fn the_explanation_is_data_rendered_once() {
    let c = catalog();
    let r = Req { session: Some("abc"), ..req(&body("chat", "")) }.run(&c).unwrap();
    let (model, Ordering::Weighted { sticky: true, shares }) = &r.explanation.models[0] else {
        panic!("{:?}", r.explanation)
    };
    assert_eq!(Some(*model), c.model_named("m/chat"));
    let shares: Vec<(&str, String)> =
        shares.iter().map(|(p, share)| (c.provider(*p).name.as_str(), format!("{share:.3}"))).collect();
    assert_eq!(shares, [("one", "0.735".to_string()), ("two", "0.184".into()), ("three", "0.082".into())]);
    let (short, source) = r.explanation.session.clone().unwrap();
    assert_eq!((short.len(), source), (8, Source::Header));
    assert_eq!(r.session, Some(short.clone()));
    let text = r.explanation.render(&c);
    let want = format!(
        "m/chat:weighted(sticky) one=0.735 two=0.184 three=0.082; session=x-session-id:{short}; plan="
    );
    assert!(text.starts_with(&want), "{text}");
    assert!(text.is_ascii() && !text.contains('\n'));
    // Several models: one section each, separated (they used to run together).
    let two = req(r#"{"models":["m/chat","m/other"],"messages":[],"provider":{"sort":"price"}}"#).explain(&c);
    assert!(two.starts_with("m/chat:sort=price; m/other:sort=price; "), "{two}");
}

#[test]
fn invalid_preferences_and_session_ids_are_400() {
    let c = catalog();
    for extra in [
        r#","provider":{"sort":"fastest"}"#,
        r#","provider":{"colour":1}"#,
        r#","provider":{"enforce_distillable_text":true}"#,
        r#","max_tokens":-1"#,
    ] {
        assert_eq!(req(&body("chat", extra)).run(&c).unwrap_err().status(), 400, "{extra}");
    }
    let long = "x".repeat(300);
    assert_eq!(Req { session: Some(&long), ..req(&body("chat", "")) }.run(&c).unwrap_err().status(), 400);
}

#[test]
fn context_and_completion_limits_hold_at_their_edge() {
    let c = catalog();
    let with = |max_tokens: u64| {
        body("chat", &format!(r#","max_tokens":{max_tokens},"provider":{{"sort":"price"}}"#))
    };
    // two's max_completion_tokens is 100: 100 fits, 101 does not.
    assert_eq!(req(&with(100)).plan(&c), ["one:c1", "two:c2", "three:c3"]);
    assert_eq!(req(&with(101)).plan(&c), ["one:c1", "three:c3"]);
    // The context (1000) holds max_tokens + body bytes / 4: exactly full fits, one more token does not.
    let len = with(900).len() as u64; // the same length for every 3-digit max_tokens
    let full = 1000 - len / 4;
    assert!((100..1000).contains(&full));
    assert_eq!(req(&with(full)).plan(&c), ["one:c1", "three:c3"]);
    assert_eq!(req(&with(full + 1)).run(&c).unwrap_err().status(), 404);
    // The largest max_tokens a client can write does not wrap the sum round to a small number.
    assert_eq!(req(&with(u64::MAX)).run(&c).unwrap_err().status(), 404);
}

#[test]
fn max_tokens_and_max_completion_tokens_are_one_capability() {
    let c = catalog();
    // one lists neither; two and three list max_tokens, which covers max_completion_tokens too.
    let b =
        body("chat", r#","max_completion_tokens":50,"provider":{"require_parameters":true,"sort":"price"}"#);
    assert_eq!(req(&b).plan(&c), ["two:c2", "three:c3"]);
}

#[test]
fn the_whole_explanation_line() {
    let c = catalog();
    let b = body(
        "chat",
        r#","provider":{"sort":"price","ignore":["one"],"zdr":false,"quantizations":["fp8","bf16"]}"#,
    );
    let r = req(&b).run(&c).unwrap();
    assert_eq!(
        r.explanation.render(&c),
        format!(
            "m/chat:sort=price; session=messages:{}; plan=two@2,three@3; excluded=one:allowed_providers",
            r.session.clone().unwrap()
        )
    );
    let b = body("chat", r#","provider":{"sort":"price","only":["three"]}"#);
    let text = req(&b).explain(&c);
    assert!(text.ends_with("; plan=three@3; excluded=one:allowed_providers,two:allowed_providers"), "{text}");
    // An unknown model's name is shown header-safe: non-ASCII becomes '?', spaces stay.
    let e = req(r#"{"model":"caf\u00e9 x","messages":[]}"#).run(&c).unwrap_err();
    assert_eq!(e.message(), "Model \"caf? x\" is not available");
}

#[test]
fn endpoints_whose_api_cannot_take_the_request_leave_the_plan_before_it_is_cut() {
    // One and two speak Anthropic's API, which has no `n` above 1; with `max_attempts` 2 the plan is cut
    // after the candidates are known, so three (OpenAI) still gets the request.
    let json = CATALOG
        .replace(
            r#"{"name": "one", "display_name": "One Inc", "endpoint": "http://one","#,
            r#"{"name": "one", "display_name": "One Inc", "endpoint": "http://one", "api": "anthropic","#,
        )
        .replace(
            r#"{"name": "two", "endpoint": "http://two","#,
            r#"{"name": "two", "endpoint": "http://two", "api": "anthropic","#,
        )
        .replace(r#""max_attempts": 3"#, r#""max_attempts": 2"#);
    let c = Catalog::parse(json.as_bytes(), None).unwrap();
    assert_eq!(c.provider(c.provider_named("one").unwrap()).api, crate::catalog::Api::Anthropic);
    let sorted = r#","provider":{"sort":"price"}"#;
    assert_eq!(req(&body("chat", sorted)).plan(&c), ["one:c1", "two:c2"]);
    let two = format!(r#","n":2{sorted}"#);
    assert_eq!(req(&body("chat", &two)).plan(&c), ["three:c3"]);
    assert!(req(&body("chat", &two)).explain(&c).contains("unsupported_by_api"));
    // No endpoint left: the API's own 400, not "no endpoints".
    let only = r#","n":2,"provider":{"only":["one","two"]}"#;
    let e = req(&body("chat", only)).run(&c).unwrap_err();
    assert_eq!(e.status(), 400);
    assert!(e.body().contains("greater than 1"), "{}", e.body());
}
