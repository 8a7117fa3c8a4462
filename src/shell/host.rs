//! Small helpers over host calls shared by the roles.

use crate::health::{next, Outcome, Record};
use proxy_wasm::traits::Context;
use proxy_wasm::types::Status;

/// Compare-and-swap attempts before giving up on one update: only concurrent updates of the same
/// provider on other workers collide, and losing one outcome under such contention is harmless.
const CAS_TRIES: usize = 8;

/// Applies `outcome` to the health record under `key` with compare-and-swap, so two workers updating the
/// same provider at once cannot overwrite each other. With no record and a success, one read and no write.
pub fn update_health<C: Context + ?Sized>(ctx: &C, key: &str, outcome: Outcome, now: u64) {
    for _ in 0..CAS_TRIES {
        let (bytes, cas) = ctx.get_shared_data(key);
        let prev = bytes.as_deref().and_then(Record::decode);
        let Some(change) = next(prev, outcome, now) else {
            return;
        };
        // A cleared record is an empty value: shared data has no delete, and the key set stays one per
        // provider. A key never written has no CAS; the first write to it is unconditional.
        let value = change.map(|r| r.encode()).unwrap_or_default();
        match ctx.set_shared_data(key, Some(&value), cas) {
            Err(Status::CasMismatch) => continue,
            _ => return,
        }
    }
}

/// A string property (`xds.cluster_name`, …), `None` when absent or not UTF-8.
pub fn string_property<C: Context + ?Sized>(ctx: &C, path: &[&str]) -> Option<String> {
    ctx.get_property(path.to_vec()).and_then(|b| String::from_utf8(b).ok())
}

/// An integer property: Envoy serialises integers as 8 little-endian bytes.
pub fn int_property<C: Context + ?Sized>(ctx: &C, path: &[&str]) -> Option<u64> {
    let b = ctx.get_property(path.to_vec())?;
    let bytes: [u8; 8] = b.as_slice().try_into().ok()?;
    u64::try_from(i64::from_le_bytes(bytes)).ok()
}
