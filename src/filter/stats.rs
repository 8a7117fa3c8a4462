//! Envoy stats from a finished request's account: `observe::metrics` says which stats move by how much;
//! this defines each stat on first use in this VM, caches its id, and moves it.
//!
//! Envoy files a stat a wasm module defines as `wasmcustom.<name>`; `/stats/prometheus` shows it without
//! the namespace and without Envoy's `envoy_` prefix, labelled by the generated `stats_tags`. A stat
//! defined in several VMs (one per worker) is one Envoy stat: each VM's definition returns its own id for
//! the same counter or histogram.

use super::host::Host;
use crate::fnv::FnvMap;
use crate::observe::account::Account;
use crate::observe::metrics::{amounts, metrics, series_key, Kind};

/// How often counters reach Envoy: a request's increments are summed in the VM and flushed on the
/// downstream role's tick, which saves about ten host calls per request. Histograms are recorded at once.
pub const FLUSH_PERIOD_MS: u64 = 1000;

/// One VM's stats: the ids it defined and the counter increments not yet given to Envoy.
#[derive(Debug, Default)]
pub struct Stats {
    /// The id of every stat this VM has defined, by name.
    ids: FnvMap<String, u32>,
    /// The stats (id, kind) of each series key seen, in `metrics` order: a request of a known series moves
    /// them without building a name (the key count is bounded like the label values).
    series: FnvMap<String, Vec<(u32, Kind)>>,
    /// Counter increments not yet given to Envoy, by stat id.
    pending: FnvMap<u32, i64>,
}

impl Stats {
    /// Moves the stats of one finished request. The first request of a series (`series_key`) defines its
    /// stats and keeps their ids; later ones only add their amounts. A counter increment of 0 only defines
    /// the stat (so every series of the request's labels exists from its first request on). A stat is
    /// never worth failing a request for: a definition Envoy refuses is retried with the next request.
    pub fn record(&mut self, host: &mut dyn Host, account: &Account) {
        let key = series_key(account);
        if !self.series.contains_key(&key) {
            let Some(stats) = self.define(host, account) else {
                return;
            };
            self.series.insert(key.clone(), stats);
        }
        let Some(stats) = self.series.get(&key) else {
            return;
        };
        for ((id, kind), value) in stats.iter().zip(amounts(account)) {
            match kind {
                Kind::Counter => {
                    if let Ok(n) = i64::try_from(value) {
                        if n > 0 {
                            let pending = self.pending.entry(*id).or_insert(0);
                            *pending = pending.saturating_add(n);
                        }
                    }
                }
                Kind::Histogram => host.record_metric(*id, value),
            }
        }
    }

    /// Gives Envoy the counter increments gathered since the last flush.
    pub fn flush(&mut self, host: &mut dyn Host) {
        for (id, n) in self.pending.drain() {
            host.increment_metric(id, n);
        }
    }

    /// Defines (or finds) the stats of `account`'s series; `None` when Envoy refused one (then nothing is
    /// cached and the next request of the series tries again).
    fn define(&mut self, host: &mut dyn Host, account: &Account) -> Option<Vec<(u32, Kind)>> {
        let mut out = Vec::with_capacity(20);
        for m in metrics(account) {
            let id = match self.ids.get(&m.name) {
                Some(id) => *id,
                None => {
                    let id = host.define_metric(m.kind, &m.name)?;
                    self.ids.insert(m.name, id);
                    id
                }
            };
            out.push((id, m.kind));
        }
        Some(out)
    }
}
