//! Provider selection: from the requested models and preferences to the ordered plan of attempts, with
//! the reason every endpoint was left out and how the order was reached.
//!
//! Per model: filter ([`filters`]: policy, price, parameters, context, health) → order ([`ranking`]: an
//! explicit sort, `order`, or the default weighted draw) → the plan is the models' lists in request order,
//! keeping at least the first candidate of each model. Time and the health memory come in as inputs.

pub mod api_check;
pub mod budget;
pub mod calendar;
pub mod explain;
pub mod filters;
pub mod fleet;
pub mod health;
pub mod key_api;
pub mod plan;
pub mod preferences;
pub mod ranking;
pub mod rate_limit;
pub mod request_facts;
pub mod session;

use crate::catalog::{Catalog, EndpointRef, KeyId, ModelId, ProviderId, MAX_MODELS};
use crate::wire::chat_request::ChatRequest;
use crate::wire::error::ApiError;
use api_check::ApiVerdicts;
use explain::{push_ascii_safe, Explanation};
use filters::{exclusion, Excluded};
use health::Status;
use preferences::{split_variant, with_floor, Preferences, Variant};
use ranking::{Ranking, Seeds};
use request_facts::Facts;
use session::session_key;

/// Everything besides the catalog that a decision depends on.
pub struct Inputs<'a> {
    /// The parsed body.
    pub request: &'a ChatRequest<'a>,
    /// The authenticated client key (`None` with `auth: none`).
    pub caller: Option<KeyId>,
    /// Header `x-session-id`.
    pub session_header: Option<&'a [u8]>,
    /// Header `x-request-id`: entropy for draws that are not sticky.
    pub request_id: Option<&'a [u8]>,
    /// The health memory: what it says of a provider now.
    pub health: &'a dyn Fn(ProviderId) -> Status,
}

/// The decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Attempts in order.
    pub plan: Vec<EndpointRef>,
    /// How it was reached (rendered once, for the account and `x-llm-route`).
    pub explanation: Explanation,
    /// The sticky session key's short hash (never the key), when sessions are sticky.
    pub session: Option<String>,
}

/// Decides the plan of a request.
pub fn route(catalog: &Catalog, inp: &Inputs<'_>) -> Result<Route, ApiError> {
    let models = requested_models(catalog, inp.request)?;
    let mut prefs = Preferences::parse(inp.request.get("provider"))?;
    if let Some(key) = inp.caller {
        prefs = with_floor(prefs, &catalog.key(key).policy);
    }
    let facts = Facts::of(inp.request)?;
    let key_name = inp.caller.map_or("", |k| catalog.key(k).name.as_str());
    let (key, source) = session_key(inp.request, inp.session_header, key_name)?;
    let seeds = Seeds {
        sticky: catalog.routing.sticky_sessions.then_some((key, source)),
        key,
        request_id: inp.request_id.unwrap_or_default(),
    };
    let mut lists = Vec::with_capacity(models.len());
    let mut orderings = Vec::with_capacity(models.len());
    let mut excluded: Vec<(EndpointRef, Excluded)> = Vec::new();
    let mut shortest_cooldown: Option<u64> = None;
    let mut apis = ApiVerdicts::new(inp.request);
    for (model, variant) in &models {
        let prefs = match variant {
            Some(v) => prefs.clone().with_variant(*v)?,
            None => prefs.clone(),
        };
        let mut survivors = Vec::new();
        for e in catalog.endpoints_of(*model) {
            let h = (inp.health)(catalog.endpoint(e).provider);
            let reason = exclusion(catalog, e, &prefs, &facts)
                .or_else(|| apis.refuses(catalog, e).then_some(Excluded::UnsupportedByApi))
                .or_else(|| {
                    h.cooldown_remaining_ms.map(|ms| {
                        shortest_cooldown = Some(shortest_cooldown.map_or(ms, |s| s.min(ms)));
                        Excluded::Unhealthy
                    })
                });
            match reason {
                Some(r) => excluded.push((e, r)),
                None => survivors.push((e, h)),
            }
        }
        let ranked = Ranking { catalog, prefs: &prefs, facts: &facts, seeds: &seeds }.order(&survivors);
        lists.push(ranked.list);
        orderings.push((*model, ranked.ordering));
    }
    let plan = assemble(lists, catalog.routing.max_attempts as usize);
    if plan.is_empty() {
        // The request itself is what no API left could take: its 400 says what to change.
        if let Some(refusal) = apis.first_refusal() {
            return Err(refusal);
        }
        return Err(nothing_fits(catalog, &models, &excluded, shortest_cooldown));
    }
    let session = seeds.sticky.map(|(key, source)| (key.short(), source));
    let short = session.as_ref().map(|(short, _)| short.clone());
    let explanation = Explanation { models: orderings, session, plan: plan.clone(), excluded };
    Ok(Route { plan, explanation, session: short })
}

/// `model` then `models`, each resolved to (model, variant), without duplicates.
fn requested_models(
    catalog: &Catalog,
    req: &ChatRequest<'_>,
) -> Result<Vec<(ModelId, Option<Variant>)>, ApiError> {
    let names = req.model.iter().chain(req.models.iter());
    let mut out: Vec<(ModelId, Option<Variant>)> = Vec::new();
    for name in names {
        let resolved = match catalog.model_named(name) {
            Some(m) => (m, None),
            None => {
                let (base, variant) = split_variant(name);
                let m = catalog.model_named(base).filter(|_| variant.is_some()).ok_or_else(|| {
                    let mut shown = String::new();
                    push_ascii_safe(&mut shown, name, 200);
                    ApiError::ModelNotFound(format!("Model \"{shown}\" is not available"))
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

/// The plan: each model's list in request order, at most max(`max_attempts`, models) attempts, always
/// keeping room for the first candidate of every later model; no endpoint twice.
fn assemble(lists: Vec<Vec<EndpointRef>>, max_attempts: usize) -> Vec<EndpointRef> {
    let budget = max_attempts.max(lists.len());
    let mut plan: Vec<EndpointRef> = Vec::with_capacity(budget);
    for (i, list) in lists.iter().enumerate() {
        let later = lists.iter().skip(i + 1).filter(|l| !l.is_empty()).count();
        let room = budget.saturating_sub(plan.len() + later);
        let fresh: Vec<EndpointRef> = list.iter().filter(|c| !plan.contains(c)).copied().collect();
        // `room` is at least 1 here for a non-empty list: the earlier lists left one place per later one.
        plan.extend(fresh.into_iter().take(room));
    }
    plan.truncate(budget);
    plan
}

/// The error when no endpoint is left: 429 when every one is cooling down, else OpenRouter's 404 naming
/// the most common reason and listing every endpoint's.
fn nothing_fits(
    catalog: &Catalog,
    models: &[(ModelId, Option<Variant>)],
    excluded: &[(EndpointRef, Excluded)],
    shortest_cooldown: Option<u64>,
) -> ApiError {
    if let Some(ms) = shortest_cooldown.filter(|_| excluded.iter().any(|x| x.1 == Excluded::Unhealthy)) {
        if excluded.iter().all(|x| x.1 == Excluded::Unhealthy) {
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
        .map(|(e, r)| {
            let provider = &catalog.provider_of(*e).name;
            let key =
                if several { format!("{}@{provider}", catalog.model(e.model).id) } else { provider.clone() };
            (key, r.name().to_string())
        })
        .collect();
    // The most common reason (both data-policy reasons count as one) names the message; the metadata
    // lists every endpoint's.
    let class = |r: Excluded| if r == Excluded::DataZdr { Excluded::DataTraining } else { r };
    let mut counts: Vec<(Excluded, usize)> = Vec::new();
    for (_, r) in excluded {
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

#[cfg(test)]
mod tests;
