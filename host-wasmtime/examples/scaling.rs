//! Whether execution scales, piece by piece: token transfers among 10,000 accounts, 10,000 per
//! block, as sequential blocks, as two independent half-blocks on two threads with separate
//! states (the engine alone), as one block in declared and optimistic mode on two threads, and
//! as two streams of whole sequential blocks on two threads with no barrier between them (the
//! machine's ceiling for two threads in one process), and as `separate` streams: each thread
//! with an executor, engines and states of its own, timed from a common start over its own
//! blocks, so that its rate compares with `sequential` alone and with two processes running
//! `scaling sequential` at once (what threads of one process cost each other beyond what
//! two processes do: the kernel's and wasmtime's process-wide state), and `versus`: optimistic
//! against declared mode directly, in pairs of blocks whose order alternates (the median ratio
//! of their times, on 2 threads or `versus N`), steadier than throughputs measured apart
//! (rounds of 30 pairs agreed within 0.08 here).
//! Prints throughput and CPU time per transaction (from `/proc/self/stat`): a mode whose CPU
//! time per transaction exceeds the independent halves' spends it on coordination. States are
//! built before the clock starts.
//!
//! `cargo run --release -p synor-host-wasmtime --example scaling [MODE [THREADS]]`

use std::sync::Arc;
use std::time::Instant;

use synor_core::instrument::Limits;
use synor_core::tier::Tier;
use synor_host_std::pool::WORKER_STACK;
use synor_host_wasmtime::bench::paired;
use synor_host_wasmtime::block::{self, BlockState, Mode, Transaction};
use synor_host_wasmtime::engine::engines;
use synor_host_wasmtime::tiered::{DEFAULT_CACHE_BYTES, Mode as TierMode, TieredExecutor};
use synor_host_wasmtime::workload::Deployment;

/// The allocator of the `synor` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// CPU seconds used by the process so far (Linux), or 0.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let only = std::env::args().nth(1);
    // Threads of `versus`.
    let threads: usize = std::env::args()
        .nth(2)
        .map_or(2, |t| t.parse().expect("a thread count"));
    let (files, _) = synor_host_wasmtime::corpus::embedded();
    let token = files.iter().find(|f| f.name == "token_v1.wasm").unwrap();
    let (exec, d, genesis, txs) = workload(&token.bytes);
    let undeclared = block::undeclared(&txs);
    let all: Arc<[Transaction]> = txs.into();
    let half = all.len() / 2;
    let a: Arc<[Transaction]> = all[..half].to_vec().into();
    let b: Arc<[Transaction]> = all[half..].to_vec().into();
    let reps = 10;
    for round in 0..3 {
        for mode in [
            "sequential",
            "independent",
            "declared",
            "optimistic",
            "streams",
            "separate",
            "versus",
        ] {
            if only.as_ref().is_some_and(|m| m != mode) {
                continue;
            }
            if mode == "versus" {
                // Optimistic against declared, in pairs whose order alternates: the median
                // ratio of their times, robust to the shared machine's drift.
                let time = |m: Mode, txs: &Arc<[Transaction]>| {
                    let s = Arc::new(BlockState::new(genesis.snapshot()));
                    let t = Instant::now();
                    block::execute_block(&exec, &d, &s, txs, m).unwrap();
                    t.elapsed().as_secs_f64()
                };
                let (declared, optimistic) =
                    (Mode::Declared { threads }, Mode::Optimistic { threads });
                let (ratio, _, _) = paired(
                    3 * reps,
                    || Ok::<_, ()>(time(optimistic, &undeclared)),
                    || Ok(time(declared, &all)),
                )
                .unwrap();
                println!(
                    "round {round} {mode:>11}: optimistic takes {ratio:.3} of declared's time"
                );
                continue;
            }
            if mode == "separate" {
                let rates = separate(&token.bytes, reps);
                println!(
                    "round {round} {mode:>11}: {:>7.0} tps per thread ({})",
                    rates.iter().sum::<f64>() / rates.len() as f64,
                    rates.map(|r| format!("{r:.0}")).join(", ")
                );
                continue;
            }
            let states: Vec<_> = (0..2 * reps)
                .map(|_| Arc::new(BlockState::new(genesis.snapshot())))
                .collect();
            let (cpu, clock) = (cpu_seconds(), Instant::now());
            let run = |s: &Arc<BlockState>, txs: &Arc<[Transaction]>, mode: Mode| {
                block::execute_block(&exec, &d, s, txs, mode).unwrap();
            };
            let blocks = if mode == "streams" {
                // Two threads, each running whole blocks on states of its own, with no
                // barrier between them: what two processes would do, in one.
                on_two(&|w| {
                    (0..reps).for_each(|r| run(&states[2 * r + w], &all, Mode::Sequential))
                });
                2 * reps
            } else {
                for r in 0..reps {
                    match mode {
                        "sequential" => run(&states[r], &all, Mode::Sequential),
                        "declared" => run(&states[r], &all, Mode::Declared { threads: 2 }),
                        "optimistic" => {
                            run(&states[r], &undeclared, Mode::Optimistic { threads: 2 })
                        }
                        _ => {
                            on_two(&|w| {
                                let half = if w == 0 { &a } else { &b };
                                run(&states[2 * r + w], half, Mode::Sequential)
                            });
                        }
                    }
                }
                reps
            };
            let n = (blocks * all.len()) as f64;
            println!(
                "round {round} {mode:>11}: {:>7.0} tps, {:>5.2} us CPU per transaction",
                n / clock.elapsed().as_secs_f64(),
                (cpu_seconds() - cpu) * 1e6 / n
            );
        }
    }
}

/// Two threads, each deploying the token in an executor of its own and running `reps`
/// sequential blocks on states of its own after a block to warm up, from a common start: each
/// thread's transactions per second over its own time.
fn separate(token: &[u8], reps: usize) -> [f64; 2] {
    let start = std::sync::Barrier::new(2);
    on_two(&|_| {
        let (exec, d, genesis, txs) = workload(token);
        let txs: Arc<[Transaction]> = txs.into();
        let states: Vec<_> = (0..=reps)
            .map(|_| Arc::new(BlockState::new(genesis.snapshot())))
            .collect();
        let run = |s| block::execute_block(&exec, &d, s, &txs, Mode::Sequential).unwrap();
        run(&states[reps]);
        start.wait();
        let clock = Instant::now();
        states[..reps].iter().for_each(|s| {
            run(s);
        });
        (reps * txs.len()) as f64 / clock.elapsed().as_secs_f64()
    })
}

/// The hot tier's executor, the token `token` deployed there, and the benchmark's block:
/// transfers among 10,000 accounts, 10,000 of them, from their genesis state.
fn workload(
    token: &[u8],
) -> (
    TieredExecutor,
    Vec<Deployment>,
    BlockState,
    Vec<Transaction>,
) {
    let d = synor_host_wasmtime::workload::deploy(&[("t".into(), token.to_vec())], 1).unwrap();
    let exec = TieredExecutor::new(
        engines(&Limits::default(), None).unwrap(),
        TierMode::Static(Tier::Hot),
        DEFAULT_CACHE_BYTES,
    );
    let (genesis, txs) = block::transfers(&d, 0, 10_000, 10_000, 1);
    (exec, d, genesis, txs)
}

/// Runs `work(0)` and `work(1)` on two threads with a worker's stack, at once; returns what
/// they returned.
fn on_two<R: Send>(work: &(dyn Fn(usize) -> R + Sync)) -> [R; 2] {
    std::thread::scope(|s| {
        let threads = [0, 1].map(|w| {
            std::thread::Builder::new()
                .stack_size(WORKER_STACK)
                .spawn_scoped(s, move || work(w))
                .expect("spawn a thread")
        });
        threads.map(|t| t.join().expect("a thread of two"))
    })
}
