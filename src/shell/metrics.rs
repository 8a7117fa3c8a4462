//! Envoy stats from a finished request's account: the brain ([`crate::metrics`]) says which stats move by
//! how much; this defines each stat on first use in this VM, caches its id, and moves it.
//!
//! Envoy files a stat a wasm module defines as `wasmcustom.<name>`; `/stats/prometheus` shows it without
//! the namespace and without Envoy's `envoy_` prefix, labelled by the generated `stats_tags`. A stat
//! defined in several VMs (one per worker) is one Envoy stat: each VM's definition returns its own id
//! for the same counter or histogram.

use crate::accounting::Account;
use crate::fnv::FnvMap;
use crate::metrics::{amounts, metrics, series_key, Kind};
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use std::cell::RefCell;

/// How often counters reach Envoy: a request's increments are summed in the VM and flushed on the
/// downstream role's tick, which saves about ten host calls per request. Histograms are recorded at once.
pub const FLUSH_PERIOD_MS: u64 = 1000;

thread_local! {
    /// The id of every stat this VM has defined, by name.
    static IDS: RefCell<FnvMap<String, u32>> = RefCell::new(FnvMap::default());
    /// The stats (id, kind) of each series key seen, in `metrics` order: a request of a known series moves
    /// them without building a name (the key count is bounded like the label values).
    static SERIES: RefCell<FnvMap<String, Vec<(u32, Kind)>>> = RefCell::new(FnvMap::default());
    /// Counter increments not yet given to Envoy, by stat id.
    static PENDING: RefCell<FnvMap<u32, i64>> = RefCell::new(FnvMap::default());
}

/// Gives Envoy the counter increments gathered since the last flush.
pub fn flush() {
    PENDING.with(|p| {
        for (id, n) in p.borrow_mut().drain() {
            let _ = hostcalls::increment_metric(id, n);
        }
    });
}

/// Moves the stats of one finished request. The first request of a series (`series_key`) defines its
/// stats and keeps their ids; later ones only add their amounts. A counter increment of 0 only defines
/// the stat (so every series of the request's labels exists from its first request on).
///
/// Envoy answers `define_metric` with an error only for an unknown metric type or an unreadable name,
/// neither of which can happen here, so the SDK's panic on that path is unreachable; failed increments
/// and records are ignored (a stat is never worth failing a request for).
pub fn record(account: &Account) {
    SERIES.with(|series| {
        let mut series = series.borrow_mut();
        let key = series_key(account);
        if !series.contains_key(&key) {
            let Some(stats) = define(account) else {
                return;
            };
            series.insert(key.clone(), stats);
        }
        let Some(stats) = series.get(&key) else {
            return;
        };
        for ((id, kind), value) in stats.iter().zip(amounts(account)) {
            match kind {
                Kind::Counter => {
                    if let Ok(n) = i64::try_from(value) {
                        if n > 0 {
                            PENDING.with(|p| *p.borrow_mut().entry(*id).or_insert(0) += n);
                        }
                    }
                }
                Kind::Histogram => {
                    let _ = hostcalls::record_metric(*id, value);
                }
            }
        }
    });
}

/// Defines (or finds) the stats of `account`'s series; `None` when Envoy refused one (then nothing is
/// cached and the next request of the series tries again).
fn define(account: &Account) -> Option<Vec<(u32, Kind)>> {
    IDS.with(|ids| {
        let mut ids = ids.borrow_mut();
        let mut out = Vec::with_capacity(20);
        for m in metrics(account) {
            let id = match ids.get(&m.name) {
                Some(id) => *id,
                None => {
                    let kind = match m.kind {
                        Kind::Counter => MetricType::Counter,
                        Kind::Histogram => MetricType::Histogram,
                    };
                    let id = hostcalls::define_metric(kind, &m.name).ok()?;
                    ids.insert(m.name, id);
                    id
                }
            };
            out.push((id, m.kind));
        }
        Some(out)
    })
}
