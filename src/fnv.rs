//! FNV-1a hashing for the small maps keyed by names of our own (catalog models and providers, stat
//! names): looked up several times per request, where SipHash (std's default, built against hash
//! flooding by untrusted keys) was a visible cost in wasm. A client can only make us look up names the
//! catalog defines or reject them, so flooding is not a concern here.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// The FNV-1a 64-bit hasher.
#[derive(Default)]
pub struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// A `HashMap` hashed with [`Fnv`].
pub type FnvMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn fnv_1a_known_values_and_maps_work() {
        let hash = |s: &str| {
            let mut h = Fnv::default();
            h.write(s.as_bytes());
            h.finish()
        };
        // Reference values of 64-bit FNV-1a.
        assert_eq!(hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash("foobar"), 0x8594_4171_f739_67e8);
        let mut m: FnvMap<String, u32> = FnvMap::default();
        m.insert("alpha".into(), 1);
        assert_eq!(m.get("alpha"), Some(&1));
        assert_eq!(m.get("beta"), None);
    }
}
