//! Table-driven CRC-32 (IEEE 802.3, reflected, polynomial 0xedb88320) over a buffer, `reps`
//! times, each pass continuing from the previous CRC: the checksum is `zlib.crc32(buf * reps)`.
//!
//! State at `ptr`: `len` u32 (at most 2^20), `reps` u32, `table`: 256 u32 (built by `setup`),
//! `buf`: 2^20 bytes (the little-endian bytes of successive xorshift64 outputs from the seed).

use crate::{Global, Rng, SEED, state};

const MAX: usize = 1 << 20;

#[repr(C)]
struct State {
    len: u32,
    reps: u32,
    table: [u32; 256],
    buf: [u8; MAX],
}

static STATE: Global<State> = Global::new(State {
    len: 0,
    reps: 0,
    table: [0; 256],
    buf: [0; MAX],
});

#[unsafe(no_mangle)]
pub extern "C" fn setup() -> i32 {
    let ptr = STATE.handle();
    // SAFETY: the handle of our own static; nothing else holds it.
    let s = unsafe { state::<State>(ptr) };
    for (i, t) in s.table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *t = c;
    }
    let mut rng = Rng(SEED);
    for chunk in s.buf.chunks_exact_mut(8) {
        chunk.copy_from_slice(&rng.next().to_le_bytes());
    }
    s.len = MAX as u32;
    s.reps = 20;
    ptr
}

#[unsafe(no_mangle)]
pub extern "C" fn run(ptr: i32) -> i64 {
    // SAFETY: the caller passes the handle from `setup`.
    let s = unsafe { state::<State>(ptr) };
    let (table, buf) = (&s.table, &s.buf[..(s.len as usize).min(MAX)]);
    let mut crc = 0u32;
    for _ in 0..s.reps {
        let mut c = !crc;
        for &byte in buf {
            c = table[((c ^ byte as u32) & 0xff) as usize] ^ (c >> 8);
        }
        crc = !c;
    }
    crc as i64
}

#[unsafe(no_mangle)]
pub extern "C" fn teardown(_ptr: i32) {}
