//! The health memory as the roles keep it: one record per provider in the proxy's shared data (every
//! worker sees it), read when the downstream role plans and updated with compare-and-swap by the logger
//! (failures) and the downstream role (a recovered provider's 2xx). What a record means is
//! `routing::health`'s business.

use super::host::Host;
use super::shared_value::compare_and_swap;
use crate::routing::health::{next, Outcome, Record};

/// Compare-and-swap attempts before giving up on one update: only concurrent updates of the same
/// provider on other workers collide, and losing one outcome under such contention is harmless.
const CAS_TRIES: usize = 8;

/// The record under `key`, if any (a cleared record is an empty value).
pub fn read(host: &dyn Host, key: &str) -> Option<Record> {
    host.shared_data(key).0.and_then(|b| Record::decode(&b))
}

/// Applies `outcome` to the record under `key` with compare-and-swap, so two workers updating the same
/// provider at once cannot overwrite each other. With no record and a success, one read and no write.
pub fn update(host: &mut dyn Host, key: &str, outcome: Outcome, now_ms: u64) {
    // A cleared record is an empty value: shared data has no delete, and the key set stays one per
    // provider. A key never written has no CAS; the first write to it is unconditional. Losing the
    // update under contention is harmless (see CAS_TRIES).
    let _ = compare_and_swap(host, key, CAS_TRIES, None, |bytes| {
        let change = next(bytes.and_then(Record::decode), outcome, now_ms)?;
        Some(change.map(|r| r.encode()).unwrap_or_default())
    });
}
