//! Quicksort (median of three, Hoare partition, insertion sort below 17) of a pseudo-random u32
//! array, `reps` times.
//!
//! State at `ptr`: `len` u32 (at most 2^18), `reps` u32, `src`: 2^18 u32 (the high halves of
//! xorshift64 outputs from the seed), `work`: 2^18 u32. Repetition `r` sorts
//! `work[i] = src[i] ^ (r × 0x9e3779b9)` for `i < len` and folds
//! `fold(acc, v) = acc × 31 + v` (wrapping u64, from 0) over the sorted array into the checksum.

use crate::{CHECK, Global, Rng, SEED, mix, state};

const MAX: usize = 1 << 18;

#[repr(C)]
struct State {
    len: u32,
    reps: u32,
    src: [u32; MAX],
    work: [u32; MAX],
}

static STATE: Global<State> = Global::new(State {
    len: 0,
    reps: 0,
    src: [0; MAX],
    work: [0; MAX],
});

fn insertion_sort(v: &mut [u32]) {
    for i in 1..v.len() {
        let x = v[i];
        let mut j = i;
        while j > 0 && v[j - 1] > x {
            v[j] = v[j - 1];
            j -= 1;
        }
        v[j] = x;
    }
}

fn quicksort(mut v: &mut [u32]) {
    loop {
        let n = v.len();
        if n <= 16 {
            insertion_sort(v);
            return;
        }
        let mid = n / 2;
        if v[mid] < v[0] {
            v.swap(mid, 0);
        }
        if v[n - 1] < v[0] {
            v.swap(n - 1, 0);
        }
        if v[n - 1] < v[mid] {
            v.swap(n - 1, mid);
        }
        let pivot = v[mid];
        let (mut i, mut j) = (0, n - 1);
        loop {
            while v[i] < pivot {
                i += 1;
            }
            while v[j] > pivot {
                j -= 1;
            }
            if i >= j {
                break;
            }
            v.swap(i, j);
            i += 1;
            j -= 1;
        }
        // Recurse into the smaller side, loop on the larger: the stack stays O(log n).
        let (lo, hi) = core::mem::take(&mut v).split_at_mut(j + 1);
        if lo.len() < hi.len() {
            quicksort(lo);
            v = hi;
        } else {
            quicksort(hi);
            v = lo;
        }
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn setup() -> i32 {
    let ptr = STATE.handle();
    // SAFETY: the handle of our own static; nothing else holds it.
    let s = unsafe { state::<State>(ptr) };
    let mut rng = Rng(SEED);
    for x in s.src.iter_mut() {
        *x = (rng.next() >> 32) as u32;
    }
    s.len = 200_000;
    s.reps = 4;
    ptr
}

#[unsafe(no_mangle)]
pub extern "C" fn run(ptr: i32) -> i64 {
    // SAFETY: the caller passes the handle from `setup`.
    let s = unsafe { state::<State>(ptr) };
    let len = (s.len as usize).min(MAX);
    let (src, work) = (&s.src[..len], &mut s.work[..len]);
    let mut h = CHECK;
    for r in 0..s.reps {
        let key = r.wrapping_mul(0x9e37_79b9);
        for (w, &x) in work.iter_mut().zip(src) {
            *w = x ^ key;
        }
        quicksort(work);
        let acc = work
            .iter()
            .fold(0u64, |acc, &v| acc.wrapping_mul(31).wrapping_add(v as u64));
        h = mix(h, acc);
    }
    h as i64
}

#[unsafe(no_mangle)]
pub extern "C" fn teardown(_ptr: i32) {}
