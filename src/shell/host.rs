//! Small helpers over host calls shared by both roles.

use proxy_wasm::traits::Context;

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
