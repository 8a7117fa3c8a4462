//! Provider selection: from the requested models and preferences to the ordered plan of attempts, with
//! the reason every endpoint was left out and an explanation of the order.
//!
//! Per model: filter (policy, price, parameters, context, health) → order (explicit sort, `order`, or the
//! default: a weighted rendezvous draw for the first choice, the rest cheapest first) → the plan is the
//! models' lists in request order, keeping at least the first candidate of each model.

use crate::auth::Caller;
use crate::catalog::{Catalog, DataCollection, Model, ModelEndpoint};
use crate::error::ApiError;
use crate::plan::Candidate;
use crate::prefs::{
    max_tokens, names_provider, split_variant, used_parameters, with_floor, Preferences, SortBy, Variant,
};
use crate::request::ChatRequest;
use crate::session::{request_seed, session_key, uniform, SessionKey, Source};
use std::fmt::Write as _;

/// Most models a request may list (`model` plus `models`); bounds the generated matcher's slots.
pub const MAX_MODELS: usize = 8;

/// What the health memory says of one provider right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProviderHealth {
    /// A failure within `routing.outage_window_seconds`: the provider moves last.
    pub recently_failed: bool,
    /// Inside a `Retry-After` cool-down: the provider is excluded for this long.
    pub cooldown_remaining_ms: Option<u64>,
}

/// Everything besides the catalog that a decision depends on.
pub struct Inputs<'a> {
    /// The parsed body.
    pub request: &'a ChatRequest<'a>,
    /// The authenticated client key.
    pub caller: Caller,
    /// Header `x-session-id`.
    pub session_header: Option<&'a [u8]>,
    /// Header `x-request-id`: entropy for draws that are not sticky.
    pub request_id: Option<&'a [u8]>,
    /// The health memory, by provider slug.
    pub health: &'a dyn Fn(&str) -> ProviderHealth,
}

/// Why an endpoint was left out (`error.metadata.excluded_by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Excluded {
    DataTraining,
    DataZdr,
    MaxPrice,
    RequireParameters,
    Quantization,
    AllowedProviders,
    ContextLength,
    Unhealthy,
}

impl Excluded {
    /// The machine-readable name.
    pub fn name(self) -> &'static str {
        match self {
            Excluded::DataTraining => "data_policy:training",
            Excluded::DataZdr => "data_policy:zdr",
            Excluded::MaxPrice => "max_price",
            Excluded::RequireParameters => "require_parameters",
            Excluded::Quantization => "quantization",
            Excluded::AllowedProviders => "allowed_providers",
            Excluded::ContextLength => "context_length",
            Excluded::Unhealthy => "unhealthy",
        }
    }

    fn phrase(self) -> &'static str {
        match self {
            Excluded::DataTraining | Excluded::DataZdr => {
                "match your data policy (zero retention, no training)"
            }
            Excluded::MaxPrice => "meet your max_price",
            Excluded::RequireParameters => "support all the requested parameters",
            Excluded::Quantization => "match the requested quantizations",
            Excluded::AllowedProviders => "are allowed by your provider preferences",
            Excluded::ContextLength => "can hold the requested context and max_tokens",
            Excluded::Unhealthy => "are available right now",
        }
    }
}

/// The decision: the plan and a one-line explanation (`x-llm-route`, access log).
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Attempts in order.
    pub plan: Vec<Candidate>,
    /// Candidates, their weights or sort keys, and the exclusions, as header-safe ASCII.
    pub explain: String,
    /// The sticky session key's short hash (never the key), when sessions are sticky.
    pub session: Option<String>,
}

/// Decides the plan of a request.
pub fn route(catalog: &Catalog, inp: &Inputs<'_>) -> Result<Route, ApiError> {
    let models = requested_models(catalog, inp.request)?;
    let mut prefs = Preferences::parse(inp.request.get("provider"))?;
    if let Some(key) = inp.caller.and_then(|i| catalog.keys.get(i)) {
        prefs = with_floor(prefs, &key.policy);
    }
    let facts = Facts {
        used: used_parameters(inp.request),
        max_tokens: max_tokens(inp.request)?,
        body_tokens: inp.request.body.len() as u64 / 4,
    };
    let session = SessionSeed::new(catalog, inp)?;
    let mut explain = String::new();
    let mut lists = Vec::with_capacity(models.len());
    let mut excluded: Vec<(usize, usize, Excluded)> = Vec::new();
    let mut shortest_cooldown: Option<u64> = None;
    for (model, variant) in &models {
        let prefs = match variant {
            Some(v) => prefs.clone().with_variant(*v)?,
            None => prefs.clone(),
        };
        let m = &catalog.models[*model];
        let mut survivors = Vec::new();
        let mut health = Vec::new();
        for (i, e) in m.endpoints.iter().enumerate() {
            let h = (inp.health)(&catalog.providers[e.provider].name);
            let reason = exclusion(catalog, m, e, &prefs, &facts).or_else(|| {
                h.cooldown_remaining_ms.map(|ms| {
                    shortest_cooldown = Some(shortest_cooldown.map_or(ms, |s| s.min(ms)));
                    Excluded::Unhealthy
                })
            });
            match reason {
                Some(r) => excluded.push((*model, i, r)),
                None => {
                    survivors.push(i);
                    health.push(h);
                }
            }
        }
        let ordered = order(catalog, m, &survivors, &health, &prefs, &facts, &session, &mut explain);
        lists.push(ordered.into_iter().map(|endpoint| Candidate { model: *model, endpoint }).collect());
    }
    let plan = assemble(lists, catalog.routing.max_attempts as usize);
    if plan.is_empty() {
        return Err(nothing_fits(catalog, &models, &excluded, shortest_cooldown));
    }
    // The session's short hash: in the explanation and, for the account, on its own.
    let sticky = session.sticky.map(|(key, source)| (key.short(), source));
    finish_explain(catalog, &mut explain, &plan, &excluded, sticky.as_ref());
    Ok(Route { plan, explain, session: sticky.map(|(short, _)| short) })
}

/// Request facts the filters need.
struct Facts {
    used: Vec<&'static str>,
    max_tokens: Option<u64>,
    body_tokens: u64,
}

/// `model` then `models`, each resolved to (catalog index, variant), without duplicates.
fn requested_models(
    catalog: &Catalog,
    req: &ChatRequest<'_>,
) -> Result<Vec<(usize, Option<Variant>)>, ApiError> {
    let names = req.model.iter().chain(req.models.iter());
    let mut out: Vec<(usize, Option<Variant>)> = Vec::new();
    for name in names {
        let resolved = match catalog.model(name) {
            Some(m) => (m, None),
            None => {
                let (base, variant) = split_variant(name);
                let m = catalog.model(base).filter(|_| variant.is_some()).ok_or_else(|| {
                    ApiError::ModelNotFound(format!("Model \"{}\" is not available", ascii_safe(name, 200)))
                })?;
                (m, variant)
            }
        };
        if !out.contains(&resolved) {
            out.push(resolved);
        }
    }
    if out.len() > MAX_MODELS {
        return Err(ApiError::InvalidRequest(format!("\"models\" may list at most {MAX_MODELS} models")));
    }
    Ok(out)
}

/// The first rule that leaves endpoint `e` out, if any (health is checked by the caller).
fn exclusion(
    catalog: &Catalog,
    model: &Model,
    e: &ModelEndpoint,
    prefs: &Preferences,
    facts: &Facts,
) -> Option<Excluded> {
    let p = &catalog.providers[e.provider];
    let in_order = prefs.order.iter().any(|n| names_provider(n, p));
    if !prefs.allows_provider(p) || (!prefs.allow_fallbacks && !prefs.order.is_empty() && !in_order) {
        return Some(Excluded::AllowedProviders);
    }
    if prefs.deny_data_collection && p.data_collection == DataCollection::Allow {
        return Some(Excluded::DataTraining);
    }
    if prefs.zdr && !p.zdr {
        return Some(Excluded::DataZdr);
    }
    if !prefs.allows_quantization(e.quantization.as_deref()) {
        return Some(Excluded::Quantization);
    }
    if !prefs.max_price.allows(&e.pricing) {
        return Some(Excluded::MaxPrice);
    }
    if prefs.require_parameters && !facts.used.iter().all(|u| supports(e, u)) {
        return Some(Excluded::RequireParameters);
    }
    let max_tokens = facts.max_tokens.unwrap_or(0);
    if let Some(context) = e.context_length.or(model.context_length) {
        if max_tokens + facts.body_tokens > context {
            return Some(Excluded::ContextLength);
        }
    }
    if e.max_completion_tokens.is_some_and(|limit| max_tokens > limit) {
        return Some(Excluded::ContextLength);
    }
    None
}

/// Whether an endpoint lists a parameter (`max_tokens` and `max_completion_tokens` are one capability).
fn supports(e: &ModelEndpoint, param: &str) -> bool {
    let same = |s: &str| match param {
        "max_tokens" | "max_completion_tokens" => s == "max_tokens" || s == "max_completion_tokens",
        _ => s == param,
    };
    e.supported_parameters.iter().any(|s| same(s))
}

/// Parameters whose support is preferred even without `require_parameters`.
const PREFERRED_FEATURES: &[&str] = &["tools", "tool_choice", "response_format"];

/// The session seed of a request (sticky draws) and what the per-request one (non-sticky draws) is made
/// of, computed only when a draw needs it (a sticky winner does not).
struct SessionSeed<'a> {
    sticky: Option<(SessionKey, Source)>,
    key: SessionKey,
    request_id: &'a [u8],
}

impl<'a> SessionSeed<'a> {
    fn new(catalog: &Catalog, inp: &Inputs<'a>) -> Result<SessionSeed<'a>, ApiError> {
        let key_name = inp.caller.and_then(|i| catalog.keys.get(i)).map_or("", |k| k.name.as_str());
        let (key, source) = session_key(inp.request, inp.session_header, key_name)?;
        let sticky = catalog.routing.sticky_sessions.then_some((key, source));
        Ok(SessionSeed { sticky, key, request_id: inp.request_id.unwrap_or_default() })
    }

    fn request(&self) -> [u8; 32] {
        request_seed(self.request_id, &self.key)
    }
}

/// Orders one model's surviving endpoints (indices into `model.endpoints`).
#[allow(clippy::too_many_arguments)]
fn order(
    catalog: &Catalog,
    model: &Model,
    survivors: &[usize],
    health: &[ProviderHealth],
    prefs: &Preferences,
    facts: &Facts,
    session: &SessionSeed<'_>,
    explain: &mut String,
) -> Vec<usize> {
    let eps = &model.endpoints;
    let price = |i: usize| eps[i].pricing.rank_price();
    let by_price = |a: &usize, b: &usize| price(*a).total_cmp(&price(*b)).then(a.cmp(b));
    push_ascii_safe(explain, &model.id, 200);
    explain.push(':');
    let mut out: Vec<usize> = survivors.to_vec();
    // A provider that failed moments ago goes last in every mode but an explicit `order`.
    let failed = |i: usize| survivors.iter().position(|s| *s == i).is_some_and(|p| health[p].recently_failed);
    if let Some(sort) = prefs.sort {
        out.sort_by(|a, b| {
            failed(*a)
                .cmp(&failed(*b))
                .then(sort_key(&eps[*a], sort).total_cmp(&sort_key(&eps[*b], sort)))
                .then(by_price(a, b))
        });
        let _ = write!(explain, "sort={}", sort_name(sort));
        return out;
    }
    if !prefs.order.is_empty() {
        let rank = |i: usize| {
            let p = &catalog.providers[eps[i].provider];
            prefs.order.iter().position(|n| names_provider(n, p)).unwrap_or(usize::MAX)
        };
        out.sort_by(|a, b| rank(*a).cmp(&rank(*b)).then(by_price(a, b)));
        let _ = write!(explain, "order");
        return out;
    }
    // Default: tiers (healthy, preferred features, preferred speed), a weighted draw inside the best tier,
    // then everything else cheapest first.
    let wanted: Vec<&str> = facts.used.iter().copied().filter(|u| PREFERRED_FEATURES.contains(u)).collect();
    let has_features = |i: usize| wanted.iter().all(|u| supports(&eps[i], u));
    let some_have_features = survivors.iter().any(|i| has_features(*i));
    let too_slow = |i: usize| {
        let e = &eps[i];
        prefs.preferred_min_throughput.is_some_and(|min| e.throughput.is_none_or(|t| t < min))
            || prefs.preferred_max_latency_ms.is_some_and(|max| e.latency_ms.is_none_or(|l| l > max))
    };
    let tier = |pos: usize| -> u8 {
        let i = survivors[pos];
        (health[pos].recently_failed as u8) << 2
            | ((some_have_features && !has_features(i)) as u8) << 1
            | too_slow(i) as u8
    };
    let tiers: Vec<u8> = (0..survivors.len()).map(tier).collect();
    let Some(best) = tiers.iter().min().copied() else {
        let _ = write!(explain, "none");
        return out;
    };
    let group: Vec<usize> =
        (0..survivors.len()).filter(|p| tiers[*p] == best).map(|p| survivors[p]).collect();
    let weights = weights(eps, &group);
    let draw = |seed: &[u8; 32]| -> Option<usize> {
        group
            .iter()
            .zip(&weights)
            .filter(|(_, w)| **w > 0.0)
            .map(|(i, w)| {
                let u = uniform(seed, &catalog.providers[eps[*i].provider].name, &model.id);
                (*i, -u.ln() / w)
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i)
    };
    let mut how = "random";
    let mut winner = None;
    if let Some((key, _)) = &session.sticky {
        winner = draw(&key.0).filter(|i| has_cache_discount(&eps[*i]));
        how = "sticky";
    }
    if winner.is_none() {
        winner = draw(&session.request());
        how = "random";
    }
    let tier_of = |i: usize| survivors.iter().position(|s| *s == i).map_or(u8::MAX, |p| tiers[p]);
    out.sort_by(|a, b| {
        (Some(*b) == winner)
            .cmp(&(Some(*a) == winner))
            .then(tier_of(*a).cmp(&tier_of(*b)))
            .then(by_price(a, b))
    });
    let total: f64 = weights.iter().sum();
    explain.push_str("weighted(");
    explain.push_str(how);
    explain.push(')');
    for (i, w) in group.iter().zip(&weights) {
        let share = if total > 0.0 { w / total } else { 0.0 };
        explain.push(' ');
        explain.push_str(&catalog.providers[eps[*i].provider].name);
        explain.push('=');
        crate::text::push_fixed3(explain, share);
    }
    out
}

/// Draw weights inside a tier: 1/price²; when any endpoint is free, the free ones uniformly.
fn weights(eps: &[ModelEndpoint], group: &[usize]) -> Vec<f64> {
    let any_free = group.iter().any(|i| eps[*i].pricing.rank_price() == 0.0);
    group
        .iter()
        .map(|i| {
            let p = eps[*i].pricing.rank_price();
            if any_free {
                if p == 0.0 {
                    1.0
                } else {
                    0.0
                }
            } else {
                1.0 / (p * p)
            }
        })
        .collect()
}

/// Stickiness only pays where cached prompt tokens are cheaper.
fn has_cache_discount(e: &ModelEndpoint) -> bool {
    e.pricing.cache_read.is_some_and(|c| c < e.pricing.prompt)
}

/// Ascending sort key: price, or throughput / latency with unknown values last.
fn sort_key(e: &ModelEndpoint, sort: SortBy) -> f64 {
    match sort {
        SortBy::Price => e.pricing.rank_price(),
        SortBy::Throughput => e.throughput.map_or(f64::INFINITY, |t| -t),
        SortBy::Latency => e.latency_ms.unwrap_or(f64::INFINITY),
    }
}

fn sort_name(s: SortBy) -> &'static str {
    match s {
        SortBy::Price => "price",
        SortBy::Throughput => "throughput",
        SortBy::Latency => "latency",
    }
}

/// The plan: each model's list in request order, at most max(`max_attempts`, models) attempts, always
/// keeping room for the first candidate of every later model; no (model, endpoint) twice.
fn assemble(lists: Vec<Vec<Candidate>>, max_attempts: usize) -> Vec<Candidate> {
    let budget = max_attempts.max(lists.len());
    let mut plan: Vec<Candidate> = Vec::with_capacity(budget);
    for (i, list) in lists.iter().enumerate() {
        let later = lists[i + 1..].iter().filter(|l| !l.is_empty()).count();
        let room = budget.saturating_sub(plan.len() + later);
        let fresh: Vec<Candidate> = list.iter().filter(|c| !plan.contains(c)).copied().collect();
        plan.extend(fresh.into_iter().take(room.max(usize::from(!list.is_empty()))));
    }
    plan.truncate(budget);
    plan
}

fn nothing_fits(
    catalog: &Catalog,
    models: &[(usize, Option<Variant>)],
    excluded: &[(usize, usize, Excluded)],
    shortest_cooldown: Option<u64>,
) -> ApiError {
    if let Some(ms) = shortest_cooldown.filter(|_| excluded.iter().any(|x| x.2 == Excluded::Unhealthy)) {
        if excluded.iter().all(|x| x.2 == Excluded::Unhealthy) {
            return ApiError::RateLimited {
                message: "Every provider for this model is cooling down after rate limiting; retry later"
                    .into(),
                retry_after: ms.div_ceil(1000).max(1),
            };
        }
    }
    let several = models.len() > 1;
    let list: Vec<(String, String)> = excluded
        .iter()
        .map(|(m, e, r)| {
            let provider = &catalog.providers[catalog.models[*m].endpoints[*e].provider].name;
            let key =
                if several { format!("{}@{provider}", catalog.models[*m].id) } else { provider.clone() };
            (key, r.name().to_string())
        })
        .collect();
    // The most common reason (both data-policy reasons count as one) names the message; the metadata
    // lists every endpoint's.
    let class = |r: Excluded| if r == Excluded::DataZdr { Excluded::DataTraining } else { r };
    let mut counts: Vec<(Excluded, usize)> = Vec::new();
    for (_, _, r) in excluded {
        match counts.iter_mut().find(|(x, _)| *x == class(*r)) {
            Some(c) => c.1 += 1,
            None => counts.push((class(*r), 1)),
        }
    }
    let top = counts.iter().max_by_key(|(_, n)| *n).map_or(Excluded::AllowedProviders, |(r, _)| *r);
    let message = if top == Excluded::DataTraining {
        "No endpoints found matching your data policy".to_string()
    } else {
        format!("No endpoints found that {}", top.phrase())
    };
    ApiError::NoEndpoints { message, excluded_by: list }
}

fn finish_explain(
    catalog: &Catalog,
    explain: &mut String,
    plan: &[Candidate],
    excluded: &[(usize, usize, Excluded)],
    sticky: Option<&(String, Source)>,
) {
    if let Some((short, source)) = sticky {
        explain.push_str("; session=");
        explain.push_str(source.name());
        explain.push(':');
        explain.push_str(short);
    }
    explain.push_str("; plan=");
    for (k, c) in plan.iter().enumerate() {
        if k > 0 {
            explain.push(',');
        }
        explain.push_str(&catalog.models[c.model].endpoints[c.endpoint].plan_label);
    }
    if !excluded.is_empty() {
        explain.push_str("; excluded=");
        for (k, (m, e, r)) in excluded.iter().enumerate() {
            let sep = if k == 0 { "" } else { "," };
            let p = &catalog.providers[catalog.models[*m].endpoints[*e].provider].name;
            let _ = write!(explain, "{sep}{p}:{}", r.name());
        }
    }
}

/// Visible ASCII only (header-safe), at most `max` bytes.
fn ascii_safe(s: &str, max: usize) -> String {
    let mut out = String::new();
    push_ascii_safe(&mut out, s, max);
    out
}

/// Appends [`ascii_safe`]`(s, max)`.
fn push_ascii_safe(out: &mut String, s: &str, max: usize) {
    out.extend(s.chars().take(max).map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }));
}

#[cfg(test)]
mod tests;
