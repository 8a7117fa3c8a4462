//! Envoy stats from one request's [`Account`]: which counters move by how much, which histograms get a
//! sample. Envoy stats have no labels, so every label combination is its own stat whose name carries the
//! label values; the generated bootstrap's `stats_tags` ([`STATS_TAGS`]) turn those name parts back into
//! Prometheus labels. The shell defines each name on first use and applies the list.
//!
//! The scheme (names as defined; Envoy files them under `wasmcustom.`, and `/stats/prometheus` shows the
//! Prometheus name with the labels):
//!
//! | stat | Prometheus |
//! |---|---|
//! | `llm_router.model.<model>.provider.<provider>.<leaf>` | `llm_router_model_<leaf>{model, provider}` |
//! | `llm_router.key.<key>.app.<app>.<leaf>` | `llm_router_key_<leaf>{key, app}` |
//! | `llm_router.error.<error_type>.provider.<provider>.requests` | `llm_router_error_requests{error_type, provider}` |
//! | `llm_router.provider.<provider>.ttfb_ms` / `.duration_ms` (histograms) | `llm_router_ttfb_ms{provider}` / `llm_router_duration_ms{provider}` |
//!
//! Model leaves: `requests`, `errors`, `attempts`, `fallbacks`, `prompt_tokens`, `completion_tokens`,
//! `cached_tokens`, `cost_nano_usd`, `usage_estimated`; key leaves: the same without `attempts`,
//! `fallbacks` and `usage_estimated`. Every request counts once in each family, so each family sums to
//! the request count; a request with no served model or provider, key or app counts under [`NONE`].
//! Unknown usage or cost moves no token or cost counter (never guessed as zero); an estimate (the
//! provider worked and bills, but its usage never reached us) moves them and `usage_estimated`.

use super::account::Account;

/// First segment of every stat we define.
pub const PREFIX: &str = "llm_router";

/// Envoy's namespace for stats a wasm module defines: the stat's full name is `wasmcustom.<name>`, and
/// `/stats/prometheus` drops the namespace (and Envoy's `envoy_` prefix) from the Prometheus name.
pub const ENVOY_NAMESPACE: &str = "wasmcustom";

/// The label value for a dimension the request does not have (no served model, no key, no app…).
pub const NONE: &str = "none";

/// How Envoy keeps a stat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A monotonic counter, incremented by the value.
    Counter,
    /// A histogram, recording the value as one sample.
    Histogram,
}

/// One stat to move: its name (label values sanitized into it), its kind, and the amount or sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    /// The stat name as defined (without Envoy's `wasmcustom.` namespace).
    pub name: String,
    /// Counter or histogram.
    pub kind: Kind,
    /// The increment (counters; 0 defines the stat without moving it) or the sample (histograms).
    pub value: u64,
}

/// Histogram buckets (milliseconds) for `ttfb_ms` and `duration_ms`.
pub const LATENCY_BUCKETS_MS: [i64; 23] = [
    5, 10, 25, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10000, 15000, 20000, 30000,
    60000, 120000, 300000, 600000,
];

/// `(tag_name, regex)` pairs for the bootstrap's `stats_config.stats_tags`: each regex matches our full
/// stat names (namespace included); its first group is the part Envoy removes from the name, its second
/// the label value. A label value never contains `.`, so each match is unambiguous.
pub const STATS_TAGS: [(&str, &str); 5] = [
    ("model", r"^wasmcustom\.llm_router\.model\.(([^.]+)\.)"),
    ("key", r"^wasmcustom\.llm_router\.key\.(([^.]+)\.)"),
    ("app", r"^wasmcustom\.llm_router\.key\.[^.]+\.(app\.([^.]+)\.)"),
    ("error_type", r"^wasmcustom\.llm_router\.error\.(([^.]+)\.)"),
    ("provider", r"^wasmcustom\.llm_router\.(?:(?:model|error)\.[^.]+\.)?(provider\.([^.]+)\.)"),
];

/// A label value as a stat-name segment: every character outside `[A-Za-z0-9_-]` (so `.`, `:`, `/`, …)
/// becomes `_`; empty becomes [`NONE`]. `meta-llama/llama-3.3-70b-instruct` →
/// `meta-llama_llama-3_3-70b-instruct`.
pub fn label(value: &str) -> String {
    if value.is_empty() {
        return NONE.to_string();
    }
    value.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect()
}

/// The stats an attempt moves that the provider received but never answered (a per-try timeout, a reset
/// after the request was sent): the provider may bill its prompt, which no account shows (the request
/// went on to a fallback, or ended in Envoy's error). Counted per provider, with the prompt estimated
/// from the request body's size (`wire::usage::estimate`).
pub fn unanswered_attempt(provider: &str, request_bytes: u64) -> [Metric; 2] {
    let provider = label(provider);
    let name = |leaf: &str| format!("{PREFIX}.provider.{provider}.{leaf}");
    [
        Metric { name: name("unanswered_attempts"), kind: Kind::Counter, value: 1 },
        Metric {
            name: name("unanswered_prompt_tokens_estimated"),
            kind: Kind::Counter,
            value: crate::wire::usage::estimate(request_bytes, 0).prompt_tokens,
        },
    ]
}

/// The stats one finished request moves, in a stable order.
pub fn metrics(a: &Account) -> Vec<Metric> {
    let mut out = Vec::with_capacity(20);
    walk(a, |name, kind, value| out.push(Metric { name: name(), kind, value }));
    out
}

/// The amounts of [`metrics`]`(a)`, in the same order, without building a name: requests with the same
/// [`series_key`] move the same stats, so a shell that kept the stat ids of a key only needs these.
pub fn amounts(a: &Account) -> Vec<u64> {
    let mut out = Vec::with_capacity(20);
    walk(a, |_, _, value| out.push(value));
    out
}

/// What decides the names (and kinds) [`metrics`] gives: the label values and which families apply. Two
/// accounts with the same key get the same names in the same order.
pub fn series_key(a: &Account) -> String {
    let parts = [
        a.model.as_deref().unwrap_or(""),
        a.provider.as_deref().unwrap_or(""),
        &a.key_name,
        &a.app,
        a.error_type.as_deref().unwrap_or(""),
    ];
    let mut key = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum::<usize>() + 6);
    for p in parts {
        key.push_str(p);
        key.push('\0');
    }
    for flag in [
        a.provider.is_some(),
        has_error(a),
        a.usage.is_some(),
        a.usage_estimated,
        a.cost_nano.is_some(),
        a.ttfb_ms.is_some(),
        a.duration_ms.is_some(),
    ] {
        key.push(if flag { '1' } else { '0' });
    }
    key
}

fn has_error(a: &Account) -> bool {
    a.error_type.is_some() || a.status >= 400
}

/// Calls `emit(name, kind, amount)` for each stat of `a`, in order; `name` builds the stat's name when
/// called (label values sanitized into it).
fn walk(a: &Account, mut emit: impl FnMut(&dyn Fn() -> String, Kind, u64)) {
    let provider = || label(a.provider.as_deref().unwrap_or(""));
    let error_type = || label(a.error_type.as_deref().unwrap_or("unknown"));
    let error = u64::from(has_error(a));
    let name = |parts: &[&str]| {
        let mut n = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        parts.iter().for_each(|p| n.push_str(p));
        n
    };
    let by_model = |leaf: &str| {
        let model = label(a.model.as_deref().unwrap_or(""));
        name(&[PREFIX, ".model.", &model, ".provider.", &provider(), ".", leaf])
    };
    let by_key =
        |leaf: &str| name(&[PREFIX, ".key.", &label(&a.key_name), ".app.", &label(&a.app), ".", leaf]);
    let counter = Kind::Counter;
    emit(&|| by_model("requests"), counter, 1);
    emit(&|| by_model("errors"), counter, error);
    emit(&|| by_model("attempts"), counter, a.attempts);
    emit(&|| by_model("fallbacks"), counter, u64::from(a.attempts > 1));
    emit(&|| by_key("requests"), counter, 1);
    emit(&|| by_key("errors"), counter, error);
    let families: [&dyn Fn(&str) -> String; 2] = [&by_model, &by_key];
    for family in families {
        if let Some(u) = a.usage {
            emit(&|| family("prompt_tokens"), counter, u.prompt_tokens);
            emit(&|| family("completion_tokens"), counter, u.completion_tokens);
            emit(&|| family("cached_tokens"), counter, u.cached_tokens);
        }
        if let Some(cost) = a.cost_nano {
            emit(&|| family("cost_nano_usd"), counter, cost);
        }
    }
    if a.usage_estimated {
        emit(&|| by_model("usage_estimated"), counter, 1);
    }
    if has_error(a) {
        emit(
            &|| name(&[PREFIX, ".error.", &error_type(), ".provider.", &provider(), ".requests"]),
            counter,
            1,
        );
    }
    if a.provider.is_some() {
        for (leaf, value) in [("ttfb_ms", a.ttfb_ms), ("duration_ms", a.duration_ms)] {
            if let Some(value) = value {
                emit(&|| name(&[PREFIX, ".provider.", &provider(), ".", leaf]), Kind::Histogram, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::usage::Usage;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// A non-streamed request of key `team-a` from app `search-ui`, served by alpha at the first attempt.
    fn served() -> Account {
        Account {
            key_name: "team-a".into(),
            app: "search-ui".into(),
            requested_model: "llama".into(),
            model: Some("meta-llama/llama-3.3-70b-instruct".into()),
            provider: Some("alpha".into()),
            attempts: 1,
            status: 200,
            usage: Some(Usage {
                prompt_tokens: 11,
                completion_tokens: 7,
                cached_tokens: 3,
                ..Usage::default()
            }),
            cost_nano: Some(2900),
            ttfb_ms: Some(12),
            duration_ms: Some(40),
            ..Account::default()
        }
    }

    /// The metrics as `name kind value` lines, for readable comparisons.
    fn lines(a: &Account) -> Vec<String> {
        metrics(a)
            .iter()
            .map(|m| {
                let kind = match m.kind {
                    Kind::Counter => "c",
                    Kind::Histogram => "h",
                };
                format!("{} {kind} {}", m.name, m.value)
            })
            .collect()
    }

    const M: &str = "llm_router.model.meta-llama_llama-3_3-70b-instruct.provider.alpha";
    const K: &str = "llm_router.key.team-a.app.search-ui";

    #[test]
    fn labels_fold_everything_outside_the_name_alphabet() {
        for (value, want) in [
            ("meta-llama/llama-3.3-70b-instruct", "meta-llama_llama-3_3-70b-instruct"),
            ("openai/gpt-4o:free", "openai_gpt-4o_free"),
            ("docs.example.com", "docs_example_com"),
            ("a b\"c{d}=é", "a_b_c_d___"),
            ("Team_A-1", "Team_A-1"),
            ("", "none"),
        ] {
            assert_eq!(label(value), want, "{value:?}");
        }
    }

    #[test]
    fn each_kind_of_request_moves_exactly_these_stats() {
        let beta = "llm_router.model.meta-llama_llama-3_3-70b-instruct.provider.beta";
        let none = "llm_router.model.none.provider.none";
        let cases: Vec<(&str, Account, Vec<String>)> = vec![
            (
                "served: everything, histograms by provider",
                served(),
                vec![
                    format!("{M}.requests c 1"),
                    format!("{M}.errors c 0"),
                    format!("{M}.attempts c 1"),
                    format!("{M}.fallbacks c 0"),
                    format!("{K}.requests c 1"),
                    format!("{K}.errors c 0"),
                    format!("{M}.prompt_tokens c 11"),
                    format!("{M}.completion_tokens c 7"),
                    format!("{M}.cached_tokens c 3"),
                    format!("{M}.cost_nano_usd c 2900"),
                    format!("{K}.prompt_tokens c 11"),
                    format!("{K}.completion_tokens c 7"),
                    format!("{K}.cached_tokens c 3"),
                    format!("{K}.cost_nano_usd c 2900"),
                    "llm_router.provider.alpha.ttfb_ms h 12".into(),
                    "llm_router.provider.alpha.duration_ms h 40".into(),
                ],
            ),
            (
                "served by a fallback: all attempts, one fallback",
                Account {
                    provider: Some("beta".into()),
                    attempts: 3,
                    usage: None,
                    cost_nano: None,
                    ttfb_ms: None,
                    duration_ms: None,
                    ..served()
                },
                vec![
                    format!("{beta}.requests c 1"),
                    format!("{beta}.errors c 0"),
                    format!("{beta}.attempts c 3"),
                    format!("{beta}.fallbacks c 1"),
                    format!("{K}.requests c 1"),
                    format!("{K}.errors c 0"),
                ],
            ),
            (
                "usage known, cost unknown: tokens only",
                Account { cost_nano: None, ttfb_ms: None, duration_ms: None, ..served() },
                vec![
                    format!("{M}.requests c 1"),
                    format!("{M}.errors c 0"),
                    format!("{M}.attempts c 1"),
                    format!("{M}.fallbacks c 0"),
                    format!("{K}.requests c 1"),
                    format!("{K}.errors c 0"),
                    format!("{M}.prompt_tokens c 11"),
                    format!("{M}.completion_tokens c 7"),
                    format!("{M}.cached_tokens c 3"),
                    format!("{K}.prompt_tokens c 11"),
                    format!("{K}.completion_tokens c 7"),
                    format!("{K}.cached_tokens c 3"),
                ],
            ),
            (
                "the provider failed: an error of its class, no tokens",
                Account {
                    status: 502,
                    error_type: Some("provider_unavailable".into()),
                    attempts: 2,
                    usage: None,
                    cost_nano: None,
                    ttfb_ms: None,
                    ..served()
                },
                vec![
                    format!("{M}.requests c 1"),
                    format!("{M}.errors c 1"),
                    format!("{M}.attempts c 2"),
                    format!("{M}.fallbacks c 1"),
                    format!("{K}.requests c 1"),
                    format!("{K}.errors c 1"),
                    "llm_router.error.provider_unavailable.provider.alpha.requests c 1".into(),
                    "llm_router.provider.alpha.duration_ms h 40".into(),
                ],
            ),
            (
                "no key, app, model or provider: counted under none, no histogram",
                Account {
                    requested_model: "x".into(),
                    status: 401,
                    error_type: Some("authentication".into()),
                    duration_ms: Some(1),
                    ..Account::default()
                },
                vec![
                    format!("{none}.requests c 1"),
                    format!("{none}.errors c 1"),
                    format!("{none}.attempts c 0"),
                    format!("{none}.fallbacks c 0"),
                    "llm_router.key.none.app.none.requests c 1".into(),
                    "llm_router.key.none.app.none.errors c 1".into(),
                    "llm_router.error.authentication.provider.none.requests c 1".into(),
                ],
            ),
            (
                "an error status without an error type: class unknown",
                Account { status: 418, ..Account::default() },
                vec![
                    format!("{none}.requests c 1"),
                    format!("{none}.errors c 1"),
                    format!("{none}.attempts c 0"),
                    format!("{none}.fallbacks c 0"),
                    "llm_router.key.none.app.none.requests c 1".into(),
                    "llm_router.key.none.app.none.errors c 1".into(),
                    "llm_router.error.unknown.provider.none.requests c 1".into(),
                ],
            ),
        ];
        for (what, account, want) in &cases {
            assert_eq!(&lines(account), want, "{what}");
            let values: Vec<u64> = metrics(account).iter().map(|m| m.value).collect();
            assert_eq!(amounts(account), values, "{what}: amounts in the order of the names");
        }
        // Equal series keys, equal names (a shell reuses the stat ids of a key); here every case differs.
        for (i, (_, a, _)) in cases.iter().enumerate() {
            for (_, b, _) in &cases[i + 1..] {
                let names =
                    |x: &Account| metrics(x).into_iter().map(|m| (m.name, m.kind)).collect::<Vec<_>>();
                assert_eq!(series_key(a) == series_key(b), names(a) == names(b), "{a:?} / {b:?}");
            }
        }
        let mut other_usage = served();
        other_usage.usage = Some(Usage { prompt_tokens: 99, ..Usage::default() });
        other_usage.cost_nano = Some(1);
        assert_eq!(series_key(&other_usage), series_key(&served()), "amounts are not part of the key");
    }

    /// A regex-free check of what the `STATS_TAGS` regexes rely on: label values free of `.`, and the
    /// dimension words at fixed positions of each family.
    #[test]
    fn every_name_has_the_shape_the_stats_tags_expect() {
        let hostile = Account {
            key_name: "key.with:dots".into(),
            app: "app.example".into(),
            model: Some("provider.model".into()),
            provider: Some("model.provider".into()),
            error_type: Some("rate.limited".into()),
            ..served()
        };
        for m in metrics(&hostile) {
            let parts: Vec<&str> = m.name.split('.').collect();
            assert_eq!(parts[0], PREFIX);
            let shape = match parts[1] {
                "model" | "error" => (parts.len(), parts[3], m.kind) == (6, "provider", Kind::Counter),
                "key" => (parts.len(), parts[3], m.kind) == (6, "app", Kind::Counter),
                "provider" => (parts.len(), m.kind) == (4, Kind::Histogram),
                _ => false,
            };
            assert!(shape, "unexpected shape: {}", m.name);
        }
        for (tag, regex) in STATS_TAGS {
            assert!(regex.starts_with(&format!(r"^{ENVOY_NAMESPACE}\.{PREFIX}\.")), "{tag}: {regex}");
        }
    }
}
