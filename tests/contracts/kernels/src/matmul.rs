//! f64 matrix multiply `c = a × b` (row-major, i-k-j order), `reps` times.
//!
//! State at `ptr`: `n` u32 (at most 512), `reps` u32, then `a`, `b`, `c`: 512² f64 each, used as
//! n × n matrices with row stride n. `setup` fills `a` then `b` (all 512² entries each) with
//! values in [-1, 1) from xorshift64: `(r >> 11) * 2^-52 - 1`. Each repetition folds the bits of
//! every entry of `c`, row by row, into the checksum. Only `+` and `×` on finite values, so the
//! result is exact IEEE 754 and the same on every conforming engine.

use crate::{CHECK, Global, Rng, SEED, mix, state};

const MAX: usize = 512;

#[repr(C)]
struct State {
    n: u32,
    reps: u32,
    a: [f64; MAX * MAX],
    b: [f64; MAX * MAX],
    c: [f64; MAX * MAX],
}

static STATE: Global<State> = Global::new(State {
    n: 0,
    reps: 0,
    a: [0.0; MAX * MAX],
    b: [0.0; MAX * MAX],
    c: [0.0; MAX * MAX],
});

fn unit(r: u64) -> f64 {
    (r >> 11) as f64 * (1.0 / (1u64 << 52) as f64) - 1.0
}

#[unsafe(no_mangle)]
pub extern "C" fn setup() -> i32 {
    let ptr = STATE.handle();
    // SAFETY: the handle of our own static; nothing else holds it.
    let s = unsafe { state::<State>(ptr) };
    let mut rng = Rng(SEED);
    for x in s.a.iter_mut().chain(s.b.iter_mut()) {
        *x = unit(rng.next());
    }
    s.n = 480;
    s.reps = 1;
    ptr
}

#[unsafe(no_mangle)]
pub extern "C" fn run(ptr: i32) -> i64 {
    // SAFETY: the caller passes the handle from `setup`.
    let s = unsafe { state::<State>(ptr) };
    let n = (s.n as usize).clamp(1, MAX);
    let (a, b, c) = (&s.a[..n * n], &s.b[..n * n], &mut s.c[..n * n]);
    let mut h = CHECK;
    for _ in 0..s.reps {
        for (c_row, a_row) in c.chunks_exact_mut(n).zip(a.chunks_exact(n)) {
            // Row i of c starts as a[i][0] × row 0 of b rather than zeros: a zeroing pass would
            // compile to a `memset`, which in Rust's prebuilt `core` uses bulk-memory.
            for (cij, &b0j) in c_row.iter_mut().zip(&b[..n]) {
                *cij = a_row[0] * b0j;
            }
            for (&aik, b_row) in a_row.iter().zip(b.chunks_exact(n)).skip(1) {
                for (cij, &bkj) in c_row.iter_mut().zip(b_row) {
                    *cij += aik * bkj;
                }
            }
        }
        for &x in c.iter() {
            h = mix(h, x.to_bits());
        }
    }
    h as i64
}

#[unsafe(no_mangle)]
pub extern "C" fn teardown(_ptr: i32) {}
