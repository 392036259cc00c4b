//! A registry that keeps its data in blobs (code-as-storage): names map to blob ids in storage,
//! the data itself lives in the code store, read cheaply and updated as deltas.
//!
//! | entry | input | returns |
//! |---|---|---|
//! | `register` | name length u8, name, data | 32-byte blob id |
//! | `update` | name length u8, name, data | 32-byte id of the new version |
//! | `read` | name length u8, name, offset u32, length u32 | the bytes |
//! | `size` | name length u8, name | u64 |
//! | `checksum` (v2) | name length u8, name | u64: FNV-1a of the whole blob, read word by word |

use synor_sdk::*;

fn split(input: &[u8]) -> (&[u8], &[u8]) {
    let Some((&n, rest)) = input.split_first() else {
        fail("missing name")
    };
    if rest.len() < n as usize {
        fail("name too short");
    }
    rest.split_at(n as usize)
}

fn key(name: &[u8]) -> Vec<u8> {
    let mut k = b"name:".to_vec();
    k.extend_from_slice(name);
    k
}

fn lookup(name: &[u8]) -> Id {
    match get(&key(name)) {
        Some(v) => id_at(&v, 0),
        None => fail("unknown name"),
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn register() {
    let input = input();
    let (name, data) = split(&input);
    if get(&key(name)).is_some() {
        fail("name taken");
    }
    let id = store_blob(data);
    set(&key(name), &id);
    event(b"Registered", name);
    ret(&id);
}

#[unsafe(no_mangle)]
pub extern "C" fn update() {
    let input = input();
    let (name, data) = split(&input);
    let id = update_blob(&lookup(name), data);
    set(&key(name), &id);
    event(b"Updated", name);
    ret(&id);
}

#[unsafe(no_mangle)]
pub extern "C" fn read() {
    let input = input();
    let (name, rest) = split(&input);
    let id = lookup(name);
    let field = |at: usize| match rest.get(at..at + 4) {
        Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize,
        None => fail("input too short"),
    };
    let mut out = vec![0u8; field(4).min(1 << 20)];
    let n = read_blob(&id, field(0), &mut out);
    out.truncate(n);
    ret(&out);
}

#[unsafe(no_mangle)]
pub extern "C" fn size() {
    let input = input();
    let (name, _) = split(&input);
    let n = blob_size(&lookup(name)).unwrap_or_else(|| fail("blob missing"));
    ret(&(n as u64).to_le_bytes());
}

#[cfg(feature = "v2")]
#[unsafe(no_mangle)]
pub extern "C" fn checksum() {
    let input = input();
    let (name, _) = split(&input);
    let id = lookup(name);
    let len = blob_size(&id).unwrap_or_else(|| fail("blob missing"));
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut buf = [0u8; 256];
    let mut at = 0;
    while at < len {
        let n = read_blob(&id, at, &mut buf);
        for b in &buf[..n] {
            hash = (hash ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
        at += n.max(1);
    }
    ret(&hash.to_le_bytes());
}
