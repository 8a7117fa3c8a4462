//! The proxy-wasm host functions the shell calls, called directly so that no status can panic.
//!
//! The SDK's `hostcalls` wrappers `panic!` on any status they did not expect (a body written where
//! Envoy has none, a header map read in the wrong phase, …), and a panic traps the VM: every later
//! request on that worker fails. Here every call returns a `Result` (or `None`) and the roles carry on.
//! Statuses are read as plain `u32` (an enum the host could overflow would be undefined behaviour).
//! Memory the host returns was allocated by the SDK's exported `proxy_on_memory_allocate` (a boxed
//! slice of exactly that size) and is freed as one here, as the SDK does.

use std::ptr::{null, null_mut};

/// A host call's status other than OK (proxy-wasm ABI 0.2.1 numbering).
pub type Status = u32;
const OK: Status = 0;
const NOT_FOUND: Status = 1;
/// A compare-and-swap write lost: the value changed since it was read.
pub const CAS_MISMATCH: Status = 8;

/// Header maps (ABI `MapType`).
pub const REQUEST_HEADERS: u32 = 0;
pub const RESPONSE_HEADERS: u32 = 2;
/// Buffers (ABI `BufferType`).
pub const REQUEST_BODY: u32 = 0;
pub const RESPONSE_BODY: u32 = 1;
pub const PLUGIN_CONFIGURATION: u32 = 7;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_get_header_map_pairs(map: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_set_header_map_pairs(map: u32, data: *const u8, size: usize) -> u32;
    fn proxy_get_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map: u32, key: *const u8, key_size: usize) -> u32;
    fn proxy_get_buffer_bytes(
        buffer: u32,
        start: usize,
        max: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer: u32,
        start: usize,
        size: usize,
        data: *const u8,
        data_size: usize,
    ) -> u32;
    fn proxy_send_local_response(
        status: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_get_property(path: *const u8, path_size: usize, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_set_property(path: *const u8, path_size: usize, value: *const u8, value_size: usize) -> u32;
    fn proxy_get_shared_data(
        key: *const u8,
        key_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
        cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_record_metric(id: u32, value: u64) -> u32;
}

fn check(status: u32) -> Result<(), Status> {
    if status == OK {
        Ok(())
    } else {
        Err(status)
    }
}

/// Takes ownership of bytes the host returned (see the module's note on memory).
///
/// # Safety
/// `data` is null or was allocated by the SDK's `proxy_on_memory_allocate` with exactly `size` bytes.
unsafe fn owned(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        return None;
    }
    // SAFETY: per the contract above, a boxed slice of `size` bytes: capacity == length == size.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// Reads a value the host returns through the out-pointers of `call`; `NOT_FOUND` is `None`.
fn returned(call: impl FnOnce(*mut *mut u8, *mut usize) -> u32) -> Result<Option<Vec<u8>>, Status> {
    let (mut data, mut size): (*mut u8, usize) = (null_mut(), 0);
    match call(&mut data, &mut size) {
        // SAFETY: on OK the host filled the pointers with memory from our allocator (or null).
        OK => Ok(unsafe { owned(data, size) }),
        NOT_FOUND => Ok(None),
        status => Err(status),
    }
}

/// The host's clock, nanoseconds since the Unix epoch.
pub fn now_ns() -> Option<u64> {
    let mut t = 0u64;
    // SAFETY: the host writes one u64 through the pointer.
    check(unsafe { proxy_get_current_time_nanoseconds(&mut t) }).ok().map(|_| t)
}

/// Every header of a map.
pub fn header_pairs(map: u32) -> Option<Vec<(String, Vec<u8>)>> {
    // SAFETY: the host writes a pointer and a size through the out-pointers.
    let bytes = returned(|d, s| unsafe { proxy_get_header_map_pairs(map, d, s) }).ok()??;
    deserialize_pairs(&bytes)
}

/// Replaces a whole header map.
pub fn set_header_pairs(map: u32, pairs: &[(&str, &[u8])]) -> Result<(), Status> {
    let bytes = serialize_pairs(pairs.iter().map(|(n, v)| (n.as_bytes(), *v)));
    // SAFETY: the pointer and size describe `bytes`, alive for the call.
    check(unsafe { proxy_set_header_map_pairs(map, bytes.as_ptr(), bytes.len()) })
}

/// One header's value (present but empty: an empty value).
pub fn header(map: u32, name: &str) -> Option<Vec<u8>> {
    let (mut data, mut size): (*mut u8, usize) = (null_mut(), 0);
    // SAFETY: the key pointer and size describe `name`; the host writes the out-pointers.
    match unsafe { proxy_get_header_map_value(map, name.as_ptr(), name.len(), &mut data, &mut size) } {
        // SAFETY: on OK the host filled the pointers with memory from our allocator (or null).
        OK => Some(unsafe { owned(data, size) }.unwrap_or_default()),
        _ => None,
    }
}

/// Sets (replaces) one header.
pub fn set_header(map: u32, name: &str, value: &[u8]) -> Result<(), Status> {
    // SAFETY: both pointers and sizes describe live slices.
    check(unsafe {
        proxy_replace_header_map_value(map, name.as_ptr(), name.len(), value.as_ptr(), value.len())
    })
}

/// Removes one header.
pub fn remove_header(map: u32, name: &str) -> Result<(), Status> {
    // SAFETY: the pointer and size describe `name`.
    check(unsafe { proxy_remove_header_map_value(map, name.as_ptr(), name.len()) })
}

/// Up to `max` bytes of a buffer from its start.
pub fn buffer(kind: u32, max: usize) -> Option<Vec<u8>> {
    buffer_from(kind, 0, max)
}

/// Up to `max` bytes of a buffer from offset `start`.
pub fn buffer_from(kind: u32, start: usize, max: usize) -> Option<Vec<u8>> {
    // SAFETY: the host writes a pointer and a size through the out-pointers.
    returned(|d, s| unsafe { proxy_get_buffer_bytes(kind, start, max, d, s) }).ok().flatten()
}

/// Replaces a buffer's first `replaced` bytes with `bytes`.
pub fn set_buffer(kind: u32, replaced: usize, bytes: &[u8]) -> Result<(), Status> {
    // SAFETY: the pointer and size describe `bytes`.
    check(unsafe { proxy_set_buffer_bytes(kind, 0, replaced, bytes.as_ptr(), bytes.len()) })
}

/// Sends a local reply.
pub fn send_reply(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Result<(), Status> {
    let headers = serialize_pairs(headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
    // SAFETY: every pointer and size describes a live slice (details: none).
    check(unsafe {
        proxy_send_local_response(
            u32::from(status),
            null(),
            0,
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    })
}

/// A property (a stream attribute or filter state) by its path.
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    let path = path.join("\0");
    // SAFETY: the path pointer and size describe `path`; the host writes the out-pointers.
    returned(|d, s| unsafe { proxy_get_property(path.as_ptr(), path.len(), d, s) }).ok().flatten()
}

/// Sets a property (filter state).
pub fn set_property(path: &str, value: &[u8]) -> Result<(), Status> {
    // SAFETY: both pointers and sizes describe live slices.
    check(unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) })
}

/// A shared-data value and its version (`None` when absent).
pub fn shared_data(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    let (mut data, mut size, mut cas): (*mut u8, usize, u32) = (null_mut(), 0, 0);
    // SAFETY: the key pointer and size describe `key`; the host writes the three out-pointers.
    match unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) } {
        // SAFETY: on OK the host filled the pointers with memory from our allocator (or null).
        OK => (unsafe { owned(data, size) }, (cas != 0).then_some(cas)),
        _ => (None, None),
    }
}

/// Writes a shared-data value if its version is still `cas` (`None`: unconditionally).
pub fn set_shared_data(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
    // SAFETY: both pointers and sizes describe live slices.
    check(unsafe {
        proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas.unwrap_or(0))
    })
}

/// Defines a stat (ABI `MetricType`: 0 counter, 2 histogram).
pub fn define_metric(kind: u32, name: &str) -> Option<u32> {
    let mut id = 0u32;
    // SAFETY: the name pointer and size describe `name`; the host writes one u32.
    check(unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) }).ok().map(|_| id)
}

/// Adds to a counter.
pub fn increment_metric(id: u32, by: i64) -> Result<(), Status> {
    // SAFETY: plain values.
    check(unsafe { proxy_increment_metric(id, by) })
}

/// Records a histogram sample.
pub fn record_metric(id: u32, value: u64) -> Result<(), Status> {
    // SAFETY: plain values.
    check(unsafe { proxy_record_metric(id, value) })
}

/// The ABI's map encoding: the pair count, each pair's key and value sizes (u32 little-endian), then
/// each key and value followed by a NUL.
fn serialize_pairs<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone) -> Vec<u8> {
    let count = pairs.clone().count();
    let mut out =
        Vec::with_capacity(4 + count * 8 + pairs.clone().map(|(k, v)| k.len() + v.len() + 2).sum::<usize>());
    out.extend_from_slice(&(count as u32).to_le_bytes());
    for (k, v) in pairs.clone() {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// Reads [`serialize_pairs`]' encoding; `None` if it is malformed (never an out-of-bounds read).
fn deserialize_pairs(bytes: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let u32_at = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    };
    let count = u32_at(0)?;
    let mut sizes = Vec::with_capacity(count.min(1024));
    let mut at = 4usize;
    for _ in 0..count {
        sizes.push((u32_at(at)?, u32_at(at.checked_add(4)?)?));
        at = at.checked_add(8)?;
    }
    let mut out = Vec::with_capacity(sizes.len());
    for (k, v) in sizes {
        let key = bytes.get(at..at.checked_add(k)?)?;
        at = at.checked_add(k)?.checked_add(1)?;
        let value = bytes.get(at..at.checked_add(v)?)?;
        at = at.checked_add(v)?.checked_add(1)?;
        out.push((String::from_utf8_lossy(key).into_owned(), value.to_vec()));
    }
    Some(out)
}
