//! Scheduler-only cost per transaction (no contract): declared and optimistic, 1 and 2 threads.
//! `cargo run --release -p synor-host-wasmtime --example sched_only [optimistic|declared] [threads]`
use synor_core::sched::AccessSet;
use synor_host_wasmtime::bench::sched::{declared_sched_ns, optimistic_sched_ns};

/// The allocator of the `synor` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let key = |i: u64| {
        let mut k = vec![7u8; 60];
        k.extend_from_slice(&i.to_le_bytes());
        k
    };
    let mut x = 12345u64;
    let mut rnd = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let sets: Vec<AccessSet> = (0..10_000)
        .map(|_| AccessSet {
            reads: vec![],
            writes: vec![key(rnd(10_000)), key(rnd(10_000))],
        })
        .collect();
    for _ in 0..5 {
        for (mode, threads) in [
            ("declared", 1),
            ("declared", 2),
            ("optimistic", 1),
            ("optimistic", 2),
        ] {
            if args.get(1).is_some_and(|m| m != mode)
                || args.get(2).is_some_and(|t| t.parse() != Ok(threads))
            {
                continue;
            }
            let ns = if mode == "declared" {
                declared_sched_ns(&sets, threads, 21)
            } else {
                optimistic_sched_ns(&sets, threads, 21)
            };
            print!("{mode} {threads}: {ns:6.0}   ");
        }
        println!();
    }
}
