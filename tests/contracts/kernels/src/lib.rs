//! Import-free compute kernels: the benchmark programs the project ships (`wasm/programs/`), for
//! measuring metering overhead and for differential tests across tiers.
//!
//! Each build enables one kernel (a cargo feature) and exports, like the corpus programs:
//!
//! | export | signature | does |
//! |---|---|---|
//! | `setup` | `() -> i32` | fills the kernel's static state from a fixed seed; returns its address |
//! | `run` | `(ptr: i32) -> i64` | the work, on the state at `ptr`; returns a checksum |
//! | `teardown` | `(ptr: i32)` | nothing (the state is static) |
//! | `memory` | | linear memory |
//!
//! `run` reads everything from the state (never from constants), so nothing folds away, and it
//! does not change its inputs: every call on the same state returns the same checksum. The state
//! starts with the kernel's parameters as little-endian `u32`s at `ptr`, `ptr + 4`, … (see each
//! module), which a host may rewrite between `setup` and `run` for a smaller or larger run.
#![cfg_attr(target_arch = "wasm32", no_std)]
#![allow(dead_code)]

use core::cell::UnsafeCell;

#[cfg(feature = "crc32")]
mod crc32;
#[cfg(feature = "fib")]
mod fib;
#[cfg(feature = "keccak")]
mod keccak;
#[cfg(feature = "matmul")]
mod matmul;
#[cfg(feature = "quicksort")]
mod quicksort;
#[cfg(feature = "sieve")]
mod sieve;

#[cfg(target_arch = "wasm32")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}

/// A kernel's state in a static: zero-initialised (so it takes no data segment), filled by `setup`.
struct Global<T>(UnsafeCell<T>);

// SAFETY: wasm32 modules run single-threaded; the state is only reached through `state`.
unsafe impl<T> Sync for Global<T> {}

impl<T> Global<T> {
    const fn new(value: T) -> Self {
        Self(UnsafeCell::new(value))
    }

    /// The state's address in linear memory, as handed to the host.
    fn handle(&'static self) -> i32 {
        self.0.get() as usize as i32
    }
}

/// The state at a handle from `setup`.
///
/// # Safety
/// `ptr` must be the handle `setup` returned, and no other reference to the state may be live.
unsafe fn state<'a, T>(ptr: i32) -> &'a mut T {
    unsafe { &mut *(ptr as u32 as usize as *mut T) }
}

/// The fixed seed every kernel's `setup` starts from.
const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// xorshift64 (13, 7, 17).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// The checksum's starting value (the FNV-1a 64-bit offset basis).
const CHECK: u64 = 0xcbf2_9ce4_8422_2325;

/// Folds one 64-bit word into a checksum (FNV-1a style, a word at a time).
fn mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(0x0000_0100_0000_01b3)
}
