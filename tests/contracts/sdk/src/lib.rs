//! The contract side of synor's ABI v1: safe wrappers over the imports of module `synor`.
//! The host side, and the exact semantics and gas of each import, are in `synor-core`'s `abi`.

#[link(wasm_import_module = "synor")]
unsafe extern "C" {
    fn input_len() -> i32;
    fn input_read(dst: *mut u8, offset: i32, len: i32);
    fn return_data(src: *const u8, len: i32);
    fn caller(dst: *mut u8);
    fn storage_read(key: *const u8, key_len: i32, dst: *mut u8, cap: i32) -> i64;
    fn storage_write(key: *const u8, key_len: i32, value: *const u8, value_len: i32);
    fn storage_remove(key: *const u8, key_len: i32);
    fn emit_event(topic: *const u8, topic_len: i32, data: *const u8, data_len: i32);
    fn blob_store(src: *const u8, len: i32, id_out: *mut u8);
    fn blob_update(previous: *const u8, src: *const u8, len: i32, id_out: *mut u8);
    fn blob_len(id: *const u8) -> i64;
    fn blob_read(id: *const u8, offset: i32, dst: *mut u8, len: i32) -> i32;
    fn abort(message: *const u8, len: i32) -> !;
}

/// A 32-byte account or blob identity.
pub type Id = [u8; 32];

// SAFETY (all wrappers below): every pointer passed is to a live Rust buffer of at least the
// length passed with it, and the host reads or writes only within those bounds.

/// The call's input.
pub fn input() -> Vec<u8> {
    let len = unsafe { input_len() } as usize;
    let mut buf = vec![0u8; len];
    unsafe { input_read(buf.as_mut_ptr(), 0, len as i32) };
    buf
}

/// Sets the call's return data.
pub fn ret(data: &[u8]) {
    unsafe { return_data(data.as_ptr(), data.len() as i32) }
}

/// The account that made the call.
pub fn sender() -> Id {
    let mut id = [0u8; 32];
    unsafe { caller(id.as_mut_ptr()) };
    id
}

/// The value of `key`, if any.
pub fn get(key: &[u8]) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 64];
    let len = unsafe { storage_read(key.as_ptr(), key.len() as i32, buf.as_mut_ptr(), 64) };
    if len < 0 {
        return None;
    }
    let len = len as usize;
    if len > buf.len() {
        buf.resize(len, 0);
        unsafe { storage_read(key.as_ptr(), key.len() as i32, buf.as_mut_ptr(), len as i32) };
    }
    buf.truncate(len);
    Some(buf)
}

/// Sets `key` to `value`.
pub fn set(key: &[u8], value: &[u8]) {
    unsafe { storage_write(key.as_ptr(), key.len() as i32, value.as_ptr(), value.len() as i32) }
}

/// Removes `key`.
pub fn remove(key: &[u8]) {
    unsafe { storage_remove(key.as_ptr(), key.len() as i32) }
}

/// Emits an event.
pub fn event(topic: &[u8], data: &[u8]) {
    unsafe { emit_event(topic.as_ptr(), topic.len() as i32, data.as_ptr(), data.len() as i32) }
}

/// Stores an immutable blob in the code store; returns its id.
pub fn store_blob(data: &[u8]) -> Id {
    let mut id = [0u8; 32];
    unsafe { blob_store(data.as_ptr(), data.len() as i32, id.as_mut_ptr()) };
    id
}

/// Stores a new version of blob `previous`, charged by the size of the change.
pub fn update_blob(previous: &Id, data: &[u8]) -> Id {
    let mut id = [0u8; 32];
    unsafe { blob_update(previous.as_ptr(), data.as_ptr(), data.len() as i32, id.as_mut_ptr()) };
    id
}

/// A blob's length, if it exists.
pub fn blob_size(id: &Id) -> Option<usize> {
    let n = unsafe { blob_len(id.as_ptr()) };
    (n >= 0).then_some(n as usize)
}

/// Reads `len` bytes of a blob from `offset`; returns how many were read.
pub fn read_blob(id: &Id, offset: usize, dst: &mut [u8]) -> usize {
    unsafe { blob_read(id.as_ptr(), offset as i32, dst.as_mut_ptr(), dst.len() as i32) as usize }
}

/// Aborts the call with a message; nothing it wrote is kept.
pub fn fail(message: &str) -> ! {
    unsafe { abort(message.as_ptr(), message.len() as i32) }
}

/// Reads a little-endian u64 at `at`, or fails.
pub fn u64_at(input: &[u8], at: usize) -> u64 {
    match input.get(at..at + 8) {
        Some(b) => u64::from_le_bytes(b.try_into().unwrap_or([0; 8])),
        None => fail("input too short"),
    }
}

/// Reads a 32-byte id at `at`, or fails.
pub fn id_at(input: &[u8], at: usize) -> Id {
    match input.get(at..at + 32) {
        Some(b) => b.try_into().unwrap_or([0; 32]),
        None => fail("input too short"),
    }
}
