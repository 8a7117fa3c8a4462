//! Per-key spending ledgers in the proxy's shared data (one value per client key: its token and dollar
//! windows, see `routing::budget`), changed with compare-and-swap so that a reservation made on one
//! worker is seen by every other before it admits anything.

use super::host::Host;
use super::rate_memory::{CAS_TRIES, CREATE_ONLY};
use super::shared_value::compare_and_swap;
use crate::catalog::KeyLimits;
use crate::routing::budget::{admit as decide, settle as replace, Charge, Ledger, Refusal, Spend, Verdict};

/// The shared-data key of a client key's ledger (key names are `[A-Za-z0-9._-]`).
pub fn key_of(name: &str) -> String {
    format!("llm_router.spend.{name}")
}

/// The ledger stored under `key`, if any.
pub fn read(host: &dyn Host, key: &str) -> Option<Ledger> {
    host.shared_data(key).0.as_deref().and_then(Ledger::decode)
}

/// Why a reservation was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReserved {
    /// It does not fit a limit.
    Refused(Refusal),
    /// The store refused the write, or every compare-and-swap lost: nothing was reserved, and the
    /// request must not go uncounted.
    Contended,
}

/// Reserves `reserved` against `limits` in the ledger under `key` at `now_ms`.
pub fn reserve(
    host: &mut dyn Host,
    key: &str,
    limits: &KeyLimits,
    reserved: Spend,
    now_ms: u64,
) -> Result<Charge, NotReserved> {
    let mut outcome = Err(NotReserved::Contended);
    let written = compare_and_swap(host, key, CAS_TRIES, Some(CREATE_ONLY), |bytes| {
        match decide(bytes.and_then(Ledger::decode).as_ref(), limits, reserved, now_ms) {
            Verdict::Admit { ledger, charge } => {
                outcome = Ok(charge);
                Some(ledger.encode())
            }
            Verdict::Refuse(r) => {
                outcome = Err(NotReserved::Refused(r));
                None
            }
        }
    });
    match written {
        Ok(_) => outcome,
        Err(_) => Err(NotReserved::Contended),
    }
}

/// Replaces `charge`'s reservation by what was spent (`actual`; nothing takes it back). Retries under
/// contention like admission; a write the store refuses outright leaves the reservation standing (the
/// budget then errs on the safe side).
pub fn settle(host: &mut dyn Host, key: &str, charge: &Charge, actual: Spend) {
    let _ = compare_and_swap(host, key, CAS_TRIES, Some(CREATE_ONLY), |bytes| {
        replace(bytes.and_then(Ledger::decode).as_ref(), charge, actual).map(|l| l.encode())
    });
}
