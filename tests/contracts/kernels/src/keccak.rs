//! Keccak-f[1600] applied `perms` times to a state filled from the seed.
//!
//! State at `ptr`: `perms` u32, 4 bytes padding, `lanes`: 25 u64 (the input, from xorshift64 of
//! the seed), `out`: 25 u64 (the lanes after the last permutation, written by `run`). The
//! checksum folds the 25 output lanes in order.

use crate::{CHECK, Global, Rng, SEED, mix, state};

#[repr(C)]
struct State {
    perms: u32,
    _pad: u32,
    lanes: [u64; 25],
    out: [u64; 25],
}

static STATE: Global<State> = Global::new(State {
    perms: 0,
    _pad: 0,
    lanes: [0; 25],
    out: [0; 25],
});

const RC: [u64; 24] = [
    0x0000000000000001,
    0x0000000000008082,
    0x800000000000808a,
    0x8000000080008000,
    0x000000000000808b,
    0x0000000080000001,
    0x8000000080008081,
    0x8000000000008009,
    0x000000000000008a,
    0x0000000000000088,
    0x0000000080008009,
    0x000000008000000a,
    0x000000008000808b,
    0x800000000000008b,
    0x8000000000008089,
    0x8000000000008003,
    0x8000000000008002,
    0x8000000000000080,
    0x000000000000800a,
    0x800000008000000a,
    0x8000000080008081,
    0x8000000000008080,
    0x0000000080000001,
    0x8000000080008008,
];

/// Rotation of each lane visited along the rho-pi cycle, and the cycle itself.
const RHO: [u32; 24] = [
    1, 3, 6, 10, 15, 21, 28, 36, 45, 55, 2, 14, 27, 41, 56, 8, 25, 43, 62, 18, 39, 61, 20, 44,
];
const PI: [usize; 24] = [
    10, 7, 11, 17, 18, 3, 5, 16, 8, 21, 24, 4, 15, 23, 19, 13, 12, 2, 20, 14, 22, 9, 6, 1,
];

fn keccak_f(a: &mut [u64; 25]) {
    for rc in RC {
        // theta
        let mut c = [0u64; 5];
        for (x, cx) in c.iter_mut().enumerate() {
            *cx = a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20];
        }
        for x in 0..5 {
            let d = c[(x + 4) % 5] ^ c[(x + 1) % 5].rotate_left(1);
            for y in 0..5 {
                a[5 * y + x] ^= d;
            }
        }
        // rho and pi
        let mut last = a[1];
        for (&j, &r) in PI.iter().zip(&RHO) {
            let next = a[j];
            a[j] = last.rotate_left(r);
            last = next;
        }
        // chi
        for y in 0..5 {
            let row = [
                a[5 * y],
                a[5 * y + 1],
                a[5 * y + 2],
                a[5 * y + 3],
                a[5 * y + 4],
            ];
            for x in 0..5 {
                a[5 * y + x] = row[x] ^ (!row[(x + 1) % 5] & row[(x + 2) % 5]);
            }
        }
        // iota
        a[0] ^= rc;
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn setup() -> i32 {
    let ptr = STATE.handle();
    // SAFETY: the handle of our own static; nothing else holds it.
    let s = unsafe { state::<State>(ptr) };
    let mut rng = Rng(SEED);
    for lane in s.lanes.iter_mut() {
        *lane = rng.next();
    }
    s.perms = 60_000;
    ptr
}

#[unsafe(no_mangle)]
pub extern "C" fn run(ptr: i32) -> i64 {
    // SAFETY: the caller passes the handle from `setup`.
    let s = unsafe { state::<State>(ptr) };
    let mut a = s.lanes;
    for _ in 0..s.perms {
        keccak_f(&mut a);
    }
    s.out = a;
    a.iter().fold(CHECK, |h, &lane| mix(h, lane)) as i64
}

#[unsafe(no_mangle)]
pub extern "C" fn teardown(_ptr: i32) {}
