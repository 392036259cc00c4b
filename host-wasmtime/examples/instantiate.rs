//! What one wasmtime call costs on one thread and on two threads of one process: an instance
//! from the pool (the hot tier's configuration) in a store, one call, and a new store every
//! `N` calls (the hot tier keeps a store for `CALLS_PER_STORE` calls, see `engine.rs`; it
//! used to make one per call). Each thread has an engine of its own,
//! so the two threads share nothing of ours, only wasmtime's process-wide state and the
//! kernel's (the address space, `/proc/self/pagemap`). Run two one-thread copies at once to
//! compare with two processes.
//!
//! `cargo run --release -p synor-host-wasmtime --example instantiate [mem|nomem] [1|2|alt] [N]`
//! (`alt`, the default: one thread and two threads alternately, paired medians; `N` calls in
//! each store before it is dropped, 1 by default, as a store per call.)

use std::time::Instant;

use synor_core::instrument::Limits;
use synor_core::tier::Tier;
use synor_host_wasmtime::engine::config;
use wasmtime::{Engine, InstancePre, Linker, Module, Store};

/// An engine configured as a hot-tier lane (64 pool slots).
fn engine() -> Engine {
    let config = config(Tier::Hot, &Limits::default(), 64).expect("the hot tier's configuration");
    Engine::new(&config).expect("engine")
}

/// A 17-page memory (a Rust contract's: 16 pages of stack and data) of which a call writes
/// three pages, or no memory at all.
fn wat(memory: bool) -> &'static str {
    if memory {
        r#"(module (memory 17)
            (func (export "run") (result i32)
              (i32.store (i32.const 16) (i32.const 1))
              (i32.store (i32.const 524288) (i32.const 2))
              (i32.store (i32.const 1048000) (i32.const 3))
              (i32.const 7)))"#
    } else {
        r#"(module (func (export "run") (result i32) (i32.const 7)))"#
    }
}

fn prepare(memory: bool) -> InstancePre<()> {
    let engine = engine();
    let bytes = wat::parse_str(wat(memory)).expect("wat");
    let module = Module::new(&engine, bytes).expect("module");
    Linker::new(&engine).instantiate_pre(&module).expect("pre")
}

/// Nanoseconds per call over `calls` calls, `per` calls in each store.
fn calls(pre: &InstancePre<()>, calls: usize, per: usize) -> f64 {
    let t = Instant::now();
    let mut store = Store::new(pre.module().engine(), ());
    for c in 1..=calls {
        if c % per == 0 {
            store = Store::new(pre.module().engine(), ());
        }
        let instance = pre.instantiate(&mut store).expect("instantiate");
        let run = instance
            .get_typed_func::<(), i32>(&mut store, "run")
            .expect("run");
        assert_eq!(run.call(&mut store, ()).expect("call"), 7);
    }
    t.elapsed().as_nanos() as f64 / calls as f64
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let memory = std::env::args().nth(1).as_deref() != Some("nomem");
    let how = std::env::args().nth(2).unwrap_or_else(|| "alt".into());
    let per: usize = std::env::args()
        .nth(3)
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let pres = [prepare(memory), prepare(memory)];
    let n = 100_000;
    let one = || calls(&pres[0], n, per);
    // Each thread's own time per call, averaged.
    let two = || {
        std::thread::scope(|s| {
            let hs: Vec<_> = pres.iter().map(|p| s.spawn(|| calls(p, n, per))).collect();
            hs.into_iter()
                .map(|h| h.join().expect("thread"))
                .sum::<f64>()
                / 2.0
        })
    };
    // Warm both engines' pools.
    std::thread::scope(|s| {
        pres.iter().for_each(|p| {
            s.spawn(|| calls(p, 1000, per));
        })
    });
    match how.as_str() {
        "1" => (0..5).for_each(|_| println!("one thread: {:.0} ns per call", one())),
        "2" => (0..5).for_each(|_| println!("two threads: {:.0} ns per call", two())),
        _ => {
            let (mut ones, mut twos, mut penalty) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..15 {
                let (a, b) = (one(), two());
                ones.push(a);
                twos.push(b);
                penalty.push(b - a);
            }
            println!(
                "memory {memory}, {per} calls per store: one thread {:.0} ns per call, two threads {:.0} ns per call \
                 each, paired difference {:.0} ns (median of 15)",
                median(ones),
                median(twos),
                median(penalty)
            );
        }
    }
}
