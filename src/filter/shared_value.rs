//! One value of the proxy's shared data changed with compare-and-swap: read it, compute the next value,
//! write it only if no other worker wrote in between, else read again. The health memory and the
//! request windows both change their values this way.

use super::host::{Host, SharedDataError};

/// Changes the value under `key`: `next` gets the stored bytes (none if the key is missing) and returns
/// what to write, or nothing (no write). A missing key is written with `missing_cas` (`None`:
/// unconditionally). Tries `tries` times; `Ok(true)` once written, `Ok(false)` when `next` wanted no
/// write, the write's error when it failed or every try lost to another worker.
pub fn compare_and_swap(
    host: &mut dyn Host,
    key: &str,
    tries: usize,
    missing_cas: Option<u32>,
    mut next: impl FnMut(Option<&[u8]>) -> Option<Vec<u8>>,
) -> Result<bool, SharedDataError> {
    let mut lost = SharedDataError::CasMismatch;
    for _ in 0..tries {
        let (bytes, cas) = host.shared_data(key);
        let Some(value) = next(bytes.as_deref()) else {
            return Ok(false);
        };
        match host.set_shared_data(key, &value, cas.or(missing_cas)) {
            Ok(()) => return Ok(true),
            Err(SharedDataError::CasMismatch) => lost = SharedDataError::CasMismatch,
            Err(e) => return Err(e),
        }
    }
    Err(lost)
}
