//! Naive doubly recursive Fibonacci: almost nothing but calls, compares and adds.
//!
//! State at `ptr`: `n` u32. The checksum is fib(n) modulo 2^32 (fib(0) = 0, fib(1) = 1).

use crate::{Global, state};

#[repr(C)]
struct State {
    n: u32,
}

static STATE: Global<State> = Global::new(State { n: 0 });

/// Two real calls per level. The sum is taken on the truncated results because LLVM turns
/// `fib(n - 1) + fib(n - 2)` returned directly into a loop around one call (accumulator
/// recursion elimination): an operand that is not the call itself prevents it.
#[inline(never)]
fn fib(n: u32) -> u64 {
    if n < 2 {
        return n as u64;
    }
    let sum = (fib(n - 1) as u32).wrapping_add(fib(n - 2) as u32);
    sum as u64
}

#[unsafe(no_mangle)]
pub extern "C" fn setup() -> i32 {
    let ptr = STATE.handle();
    // SAFETY: the handle of our own static; nothing else holds it.
    let s = unsafe { state::<State>(ptr) };
    s.n = 35;
    ptr
}

#[unsafe(no_mangle)]
pub extern "C" fn run(ptr: i32) -> i64 {
    // SAFETY: the caller passes the handle from `setup`.
    let s = unsafe { state::<State>(ptr) };
    fib(core::hint::black_box(s.n)) as i64
}

#[unsafe(no_mangle)]
pub extern "C" fn teardown(_ptr: i32) {}
