//! Sieve of Eratosthenes on a byte array, `reps` times with a slightly different limit each time.
//!
//! State at `ptr`: `limit` u32 (at most 2^21), `reps` u32, `seed` u64, then the flags.
//! Each repetition sieves below `limit - r % 1024` (r from xorshift64 of `seed`) and folds the
//! number of primes and their sum into the checksum.
//!
//! Repetition `i` marks composites with the stamp `i % 255 + 1` and counts as prime whatever does
//! not carry it, so no pass clears the array (a clear would compile to a `memset`, and the
//! `memset` in Rust's prebuilt `core` uses the bulk-memory `memory.fill`). Only composites are
//! ever marked, so stale stamps from earlier repetitions or runs never change a result.

use crate::{CHECK, Global, Rng, SEED, mix, state};

const MAX: usize = 1 << 21;

#[repr(C)]
struct State {
    limit: u32,
    reps: u32,
    seed: u64,
    flags: [u8; MAX],
}

static STATE: Global<State> = Global::new(State {
    limit: 0,
    reps: 0,
    seed: 0,
    flags: [0; MAX],
});

#[unsafe(no_mangle)]
pub extern "C" fn setup() -> i32 {
    let ptr = STATE.handle();
    // SAFETY: the handle of our own static; nothing else holds it.
    let s = unsafe { state::<State>(ptr) };
    s.limit = 1_000_000;
    s.reps = 20;
    s.seed = SEED;
    ptr
}

#[unsafe(no_mangle)]
pub extern "C" fn run(ptr: i32) -> i64 {
    // SAFETY: the caller passes the handle from `setup`.
    let s = unsafe { state::<State>(ptr) };
    let mut rng = Rng(s.seed);
    let limit = (s.limit as usize).min(MAX);
    let mut h = CHECK;
    for rep in 0..s.reps {
        let stamp = (rep % 255) as u8 + 1;
        let n = limit.saturating_sub((rng.next() % 1024) as usize);
        let flags = &mut s.flags[..n];
        let mut i = 2;
        while i * i < n {
            if flags[i] != stamp {
                let mut j = i * i;
                while j < n {
                    flags[j] = stamp;
                    j += i;
                }
            }
            i += 1;
        }
        let (mut count, mut sum) = (0u64, 0u64);
        for (k, &f) in flags.iter().enumerate().skip(2) {
            if f != stamp {
                count += 1;
                sum += k as u64;
            }
        }
        h = mix(mix(h, count), sum);
    }
    h as i64
}

#[unsafe(no_mangle)]
pub extern "C" fn teardown(_ptr: i32) {}
