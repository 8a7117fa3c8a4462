//! Ordering one model's surviving endpoints: an explicit `sort`, the request's `order`, or the default —
//! tiers (healthy, preferred features, preferred speed), a weighted rendezvous draw inside the best tier
//! for the first choice, then everything else cheapest first. Returns the order and how it was reached,
//! as data ([`Ordering`]); the explanation is rendered once, elsewhere.

use super::filters::supports;
use super::health::Status;
use super::preferences::{Preferences, SortBy};
use super::request_facts::Facts;
use super::session::{request_seed, uniform, SessionKey, Source};
use crate::catalog::policy::names_provider;
use crate::catalog::{Catalog, EndpointRef, ModelEndpoint, ProviderId};

/// Parameters whose support is preferred even without `require_parameters`.
const PREFERRED_FEATURES: &[&str] = &["tools", "tool_choice", "response_format"];

/// How one model's candidates were ordered.
#[derive(Debug, Clone, PartialEq)]
pub enum Ordering {
    /// By `provider.sort` or a variant (`:floor`, `:nitro`).
    Sorted(SortBy),
    /// By `provider.order`.
    Ordered,
    /// The default: a weighted draw picked the first; `sticky` when the session key drew it. `shares`
    /// are each drawn provider's chance (its weight over the tier's total), in catalog order.
    Weighted { sticky: bool, shares: Vec<(ProviderId, f64)> },
    /// No endpoint survived the filters.
    Empty,
}

/// One model's candidates, in attempt order, and how that order came about.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    /// The endpoints, first choice first.
    pub list: Vec<EndpointRef>,
    /// How.
    pub ordering: Ordering,
}

/// What makes draws repeatable: the session key (sticky draws) and the request's own entropy
/// (non-sticky draws, computed only when one is needed).
#[derive(Debug, Clone)]
pub struct Seeds<'a> {
    /// The session key and where it came from, when sessions are sticky.
    pub sticky: Option<(SessionKey, Source)>,
    /// The session key, sticky or not (mixed into the per-request seed).
    pub key: SessionKey,
    /// Header `x-request-id`.
    pub request_id: &'a [u8],
}

impl Seeds<'_> {
    fn request(&self) -> SessionKey {
        request_seed(self.request_id, &self.key)
    }
}

/// Everything an ordering depends on besides the survivors.
pub struct Ranking<'a> {
    pub catalog: &'a Catalog,
    pub prefs: &'a Preferences,
    pub facts: &'a Facts,
    pub seeds: &'a Seeds<'a>,
}

impl Ranking<'_> {
    /// Orders the surviving endpoints of one model (each with its provider's health), in catalog order.
    pub fn order(&self, survivors: &[(EndpointRef, Status)]) -> Ranked {
        let catalog = self.catalog;
        let price = |e: EndpointRef| catalog.endpoint(e).pricing.rank_price();
        let by_price = |a: &EndpointRef, b: &EndpointRef| price(*a).total_cmp(&price(*b)).then(a.cmp(b));
        let mut list: Vec<EndpointRef> = survivors.iter().map(|(e, _)| *e).collect();
        // A provider that failed moments ago goes last in every mode but an explicit `order`.
        let failed = |e: EndpointRef| survivors.iter().any(|(s, h)| *s == e && h.recently_failed);
        if let Some(sort) = self.prefs.sort {
            let key = |e: EndpointRef| sort_key(catalog.endpoint(e), sort);
            list.sort_by(|a, b| {
                failed(*a).cmp(&failed(*b)).then(key(*a).total_cmp(&key(*b))).then(by_price(a, b))
            });
            return Ranked { list, ordering: Ordering::Sorted(sort) };
        }
        if !self.prefs.order.is_empty() {
            let rank = |e: EndpointRef| {
                let p = catalog.provider_of(e);
                self.prefs.order.iter().position(|n| names_provider(n, p)).unwrap_or(usize::MAX)
            };
            list.sort_by(|a, b| rank(*a).cmp(&rank(*b)).then(by_price(a, b)));
            return Ranked { list, ordering: Ordering::Ordered };
        }
        let tiers: Vec<(EndpointRef, u8)> =
            survivors.iter().map(|(e, h)| (*e, self.tier(*e, h, survivors))).collect();
        let Some(best) = tiers.iter().map(|(_, t)| *t).min() else {
            return Ranked { list, ordering: Ordering::Empty };
        };
        let group: Vec<EndpointRef> = tiers.iter().filter(|(_, t)| *t == best).map(|(e, _)| *e).collect();
        let weights = weights(catalog, &group);
        let draw = |seed: &SessionKey| -> Option<EndpointRef> {
            group
                .iter()
                .zip(&weights)
                .filter(|(_, w)| **w > 0.0)
                .map(|(e, w)| (*e, -uniform(seed, &catalog.endpoint(*e).draw_key).ln() / w))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(e, _)| e)
        };
        let sticky_winner = self
            .seeds
            .sticky
            .as_ref()
            .and_then(|(key, _)| draw(key))
            .filter(|e| has_cache_discount(catalog.endpoint(*e)));
        let sticky = sticky_winner.is_some();
        let winner = sticky_winner.or_else(|| draw(&self.seeds.request()));
        let tier_of = |e: EndpointRef| tiers.iter().find(|(t, _)| *t == e).map_or(u8::MAX, |(_, t)| *t);
        list.sort_by(|a, b| {
            (Some(*b) == winner)
                .cmp(&(Some(*a) == winner))
                .then(tier_of(*a).cmp(&tier_of(*b)))
                .then(by_price(a, b))
        });
        let total: f64 = weights.iter().sum();
        let shares = group
            .iter()
            .zip(&weights)
            .map(|(e, w)| (catalog.endpoint(*e).provider, if total > 0.0 { w / total } else { 0.0 }))
            .collect();
        Ranked { list, ordering: Ordering::Weighted { sticky, shares } }
    }

    /// The default ordering's tier of an endpoint (lower is better): a recent failure, then missing a
    /// preferred feature others have, then missing the preferred speed.
    fn tier(&self, e: EndpointRef, health: &Status, survivors: &[(EndpointRef, Status)]) -> u8 {
        let catalog = self.catalog;
        let wanted = || self.facts.used.iter().filter(|u| PREFERRED_FEATURES.contains(u));
        let has_features = |e: EndpointRef| wanted().all(|u| supports(catalog.endpoint(e), u));
        let some_have_features = survivors.iter().any(|(s, _)| has_features(*s));
        let endpoint = catalog.endpoint(e);
        let prefs = self.prefs;
        let too_slow = prefs
            .preferred_min_throughput
            .is_some_and(|min| endpoint.throughput.is_none_or(|t| t < min))
            || prefs.preferred_max_latency_ms.is_some_and(|max| endpoint.latency_ms.is_none_or(|l| l > max));
        u8::from(health.recently_failed) << 2
            | u8::from(some_have_features && !has_features(e)) << 1
            | u8::from(too_slow)
    }
}

/// Draw weights inside a tier: 1/price²; when any endpoint is free, the free ones uniformly.
fn weights(catalog: &Catalog, group: &[EndpointRef]) -> Vec<f64> {
    let price = |e: &EndpointRef| catalog.endpoint(*e).pricing.rank_price();
    let any_free = group.iter().any(|e| price(e) == 0.0);
    group
        .iter()
        .map(|e| match (any_free, price(e)) {
            (true, 0.0) => 1.0,
            (true, _) => 0.0,
            (false, p) => 1.0 / (p * p),
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
