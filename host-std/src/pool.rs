//! Workers that drain the core schedulers: threads running [`Claims`] over a block's
//! dependency graph, or [`Optimistic::work`] over a block that declares nothing.
//!
//! The caller's thread is worker 0; the others are persistent (a rayon pool per thread count,
//! made on first use and kept by the [`Workers`] value that owns it), not spawned per block: a new thread maps its
//! stack and wasmtime's signal stack, and every such `mmap` takes the address-space lock that
//! the other worker's memory resets need; and wasmtime assigns each thread a home shard of its
//! instance allocator's decommit queue round-robin at first use, so threads spawned block
//! after block ended up sharing a shard with the caller's thread every other block,
//! serialising on its lock.

use core::hash::Hash;
use core::ops::Range;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use synor_core::sched::optimistic::{Executed, Optimistic, Version};
use synor_core::sched::{Claims, Dag, backoff};

/// Stack of each worker thread: wasm runs on it, and the compiling tiers allow up to 4 MiB of
/// wasm stack (see `synor_host_wasmtime::engine::STACK_NEEDED`).
pub const WORKER_STACK: usize = 8 << 20;

/// Average parallelism (transactions over the longest dependency chain) below which a block
/// runs sequentially, in declared and in optimistic mode. Measured on token transfers with 2
/// threads: at 10 accounts (parallelism about 2.3) a 1,000-transaction block ran at 0.7 to
/// 1.4 times sequential speed in declared mode (most transactions wait for one on the other
/// core, and every hand-off moves the state it wrote between caches) and Block-STM re-executed
/// 30 % of the transactions; at 100 accounts (about 14) both modes won. A block on one hot key
/// has parallelism 1.
pub const MIN_PARALLELISM: f64 = 3.0;

/// Whether `len` transactions whose longest dependency chain is `critical_path` long have
/// parallelism enough to be worth workers ([`MIN_PARALLELISM`]).
fn parallel_enough(len: usize, critical_path: usize) -> bool {
    len as f64 / critical_path.max(1) as f64 >= MIN_PARALLELISM
}

/// The persistent worker threads of a node or an executor: a pool per thread count, made on
/// first use and kept as long as this value (two nodes in one process share no threads).
#[derive(Debug, Default)]
pub struct Workers {
    pools: Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>,
}

impl Workers {
    /// No threads yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The persistent threads of a pool of `threads` (made on the first call for that count).
    ///
    /// # Panics
    /// The worker threads cannot be spawned.
    pub fn pool(&self, threads: usize) -> Arc<rayon::ThreadPool> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools
            .entry(threads)
            .or_insert_with(|| {
                Arc::new(
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .stack_size(WORKER_STACK)
                        .thread_name(move |i| format!("synor-{threads}-worker-{i}"))
                        .build()
                        .expect("spawn the worker threads"),
                )
            })
            .clone()
    }
}

/// Executes every transaction of `dag` with `execute`, each after its dependencies, on
/// `threads` threads: the caller's and `threads - 1` persistent ones ([`Workers`]). With one
/// thread, or when the graph leaves too little parallelism to pay for scheduling (fewer than
/// [`MIN_PARALLELISM`] transactions per step of its longest chain, e.g. a block on one hot
/// key), transactions run in block order on the caller's thread, with no scheduling at all.
/// Either way the caller's thread runs transactions: it needs as much stack as a worker
/// ([`WORKER_STACK`]; a process's main thread has it).
///
/// `execute` gets the worker's index (`0..threads`, 0 being the caller's thread) and the
/// transaction, and must make the transaction's effects visible to the transactions that
/// follow it before it returns. Per-worker state indexed by the worker keeps workers from
/// sharing cache lines (reference counts, buffers).
///
/// # Panics
/// The worker threads cannot be spawned, or `execute` panics (the panic is propagated after
/// the other workers have stopped).
pub fn run(workers: &Workers, dag: &Dag, threads: usize, execute: &(dyn Fn(usize, u32) + Sync)) {
    if threads <= 1 || !parallel_enough(dag.len(), dag.critical_path()) {
        (0..dag.len() as u32).for_each(|tx| execute(0, tx));
        return;
    }
    let claims = Claims::new(dag, threads);
    on_workers(workers, threads, &|w| {
        halt_on_panic(
            || claims.drain(w, |tx| execute(w, tx), std::thread::yield_now),
            || claims.halt(),
        )
    });
}

/// As [`run`], but with the graph built by `build` on a worker while the caller's thread
/// already executes the block in order; when the graph is ready, the transactions the caller
/// has not reached are drained in parallel (or, below [`MIN_PARALLELISM`], executed in order
/// by the caller). Building the graph reads every key of the block from memory: 2 to 3 ms for
/// 10,000 transfers, which with the graph built first was 5 % of the block, serial.
///
/// # Panics
/// The worker threads cannot be spawned, or `build` or `execute` panics (the panic is
/// propagated after the other workers have stopped).
pub fn run_building(
    workers: &Workers,
    len: usize,
    threads: usize,
    build: &(dyn Fn() -> Dag + Sync),
    execute: &(dyn Fn(usize, u32) + Sync),
) {
    if threads <= 1 || len < 2 {
        (0..len as u32).for_each(|tx| execute(0, tx));
        return;
    }
    // The graph and whether it is worth draining in parallel, once built.
    let graph: OnceLock<(Dag, bool)> = OnceLock::new();
    // How far the caller got in order when it saw the graph.
    let claims: OnceLock<Claims<'_>> = OnceLock::new();
    // Set when there is nothing left for the workers (the caller finished alone, or failed).
    let over = AtomicBool::new(false);
    on_workers(workers, threads, &|w| {
        if w == 0 {
            let caller = || {
                let mut next = 0;
                while next < len && graph.get().is_none() {
                    execute(0, next as u32);
                    next += 1;
                }
                match graph.get() {
                    Some((dag, true)) if next < len => {
                        let c = claims.get_or_init(|| Claims::after(dag, next, threads));
                        c.drain(0, |tx| execute(0, tx), std::thread::yield_now);
                    }
                    _ => {
                        over.store(true, Ordering::Release);
                        (next..len).for_each(|tx| execute(0, tx as u32));
                    }
                }
            };
            halt_on_panic(caller, || {
                over.store(true, Ordering::Release);
                if let Some(c) = claims.get() {
                    c.halt();
                }
            });
            return;
        }
        if w == 1 {
            let dag = build();
            let parallel = parallel_enough(dag.len(), dag.critical_path());
            let _ = graph.set((dag, parallel));
        }
        // Wait for the caller's verdict: claims to drain, or nothing to do.
        let mut spins = 0u32;
        let c = loop {
            if let Some(c) = claims.get() {
                break c;
            }
            if over.load(Ordering::Acquire) {
                return;
            }
            backoff(&mut spins, std::thread::yield_now);
        };
        halt_on_panic(
            || c.drain(w, |tx| execute(w, tx), std::thread::yield_now),
            || c.halt(),
        );
    });
}

/// Transactions per worker in the first window of an optimistic block, which measures how
/// parallel the block is (enough that a few conflicts do not make a block look serial).
pub const PROBE_PER_THREAD: usize = 32;

/// Blocks smaller than this run sequentially in optimistic mode: starting the workers costs
/// more than a few transactions' execution.
pub const MIN_OPTIMISTIC_BLOCK: usize = 16;

/// Executes a block of `len` transactions that declare nothing, in consecutive windows, each
/// either sequential (`sequential`, in block order on the caller's thread) or optimistic
/// (`optimistic` runs the window with [`Optimistic`] on the given number of threads and returns
/// its critical path). Each window starts from the state the previous one
/// left, so any split gives the block's result.
///
/// The first window ([`PROBE_PER_THREAD`] transactions per thread) runs through the
/// multi-version memory on the caller's thread alone, which costs little, never re-executes,
/// and measures the block's parallelism: transactions over the longest chain of reads from
/// earlier writes, a function of the block's contents, not of timing. If it is below
/// [`MIN_PARALLELISM`] (a block on a few hot keys), the rest runs sequentially, where
/// Block-STM would execute many transactions twice; otherwise the rest is one optimistic
/// window on every thread. (A parallel probe cost a block on two accounts 5 to 10 % of its
/// time in aborts and worker wake-ups.) With one thread, or fewer than
/// [`MIN_OPTIMISTIC_BLOCK`] transactions, the block runs sequentially.
pub fn windows(
    len: usize,
    threads: usize,
    sequential: &mut dyn FnMut(Range<usize>),
    optimistic: &mut dyn FnMut(Range<usize>, usize) -> usize,
) {
    if threads <= 1 || len < MIN_OPTIMISTIC_BLOCK {
        sequential(0..len);
        return;
    }
    let probe = (PROBE_PER_THREAD * threads).min(len);
    let critical_path = optimistic(0..probe, 1);
    if probe == len {
        return;
    }
    if parallel_enough(probe, critical_path) {
        optimistic(probe..len, threads);
    } else {
        sequential(probe..len);
    }
}

/// Drains `block` on `threads` threads (the caller's and `threads - 1` persistent ones,
/// [`Workers`]), each running [`Optimistic::work_validating`] with `execute`, `valid`,
/// `write` and `output` (which get the worker's index first, as in [`run`]): a worker applies the writes and keeps the
/// outputs of the transactions it commits, so the block's effect is applied in parallel, as it
/// commits.
///
/// # Panics
/// The worker threads cannot be spawned, or `execute`, `write` or `output` panics (the panic
/// is propagated).
pub fn drain_optimistic<K, V, O>(
    workers: &Workers,
    block: &Optimistic<K, V>,
    threads: usize,
    execute: &(dyn Fn(usize, Version) -> Executed<K, V, O> + Sync),
    valid: &(dyn Fn(usize, u32, &O) -> bool + Sync),
    write: &(dyn Fn(usize, &K, V) + Sync),
    output: &(dyn Fn(usize, u32, O) + Sync),
) where
    K: Hash + Eq + Clone + Send,
    V: Clone + Send,
    O: Send,
{
    on_workers(workers, threads, &|w| {
        halt_on_panic(
            || {
                block.work_validating(
                    w,
                    |v| execute(w, v),
                    |tx, o| valid(w, tx, o),
                    |k, v| write(w, k, v),
                    |tx, o| output(w, tx, o),
                    std::thread::yield_now,
                )
            },
            || block.halt(),
        );
    });
}

/// Runs `work` as workers `0..threads`: worker 0 on the caller's thread (whose caches hold
/// what the block's caller just touched, and which need not sleep and be woken), the others
/// on the persistent threads of [`Workers::pool`]`(threads - 1)`. Returns when all have returned
/// (a panic of any worker is propagated then).
pub fn on_workers(workers: &Workers, threads: usize, work: &(dyn Fn(usize) + Sync)) {
    if threads <= 1 {
        work(0);
        return;
    }
    workers.pool(threads - 1).in_place_scope(|s| {
        for w in 1..threads {
            s.spawn(move |_| work(w));
        }
        work(0);
    });
}

/// Runs a worker; if it panics, `halt` stops the other workers (which would otherwise wait
/// forever for transactions the panicking one held) before the panic goes on.
fn halt_on_panic(work: impl FnOnce(), halt: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
        halt();
        std::panic::resume_unwind(panic);
    }
}

/// The result of the scoped thread `t`; its panic, if it panicked, goes on in the caller.
pub(crate) fn joined<T>(t: std::thread::ScopedJoinHandle<'_, T>) -> T {
    t.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use synor_core::sched::AccessSet;

    #[test]
    fn every_transaction_runs_once_after_its_dependencies() {
        let block: Vec<AccessSet> = (0..500u32)
            .map(|i| AccessSet {
                reads: vec![(i % 7).to_le_bytes().to_vec()],
                writes: vec![(i % 13).to_le_bytes().to_vec()],
            })
            .collect();
        let dag = Dag::build(&block);
        for threads in [1, 2, 4] {
            let done = Mutex::new(vec![false; block.len()]);
            run(&Workers::new(), &dag, threads, &|_, tx| {
                let mut d = done.lock().unwrap();
                for before in 0..tx {
                    if dag.dependents(before).contains(&tx) {
                        assert!(d[before as usize], "{before} before {tx}");
                    }
                }
                assert!(!d[tx as usize]);
                d[tx as usize] = true;
            });
            assert!(done.into_inner().unwrap().iter().all(|d| *d));
        }
    }

    /// Built while the caller runs the block in order: whenever the graph arrives, every
    /// transaction still runs once, after its dependencies (a slow build, a fast one, a block
    /// the caller finishes alone, a block too serial for workers).
    #[test]
    fn building_while_running_runs_every_transaction_once_after_its_dependencies() {
        for (keys, delay_us) in [(50u32, 0u64), (50, 300), (50, 100_000), (1, 200)] {
            let block: Vec<AccessSet> = (0..400u32)
                .map(|i| AccessSet {
                    reads: vec![(i % 7).to_le_bytes().to_vec()],
                    writes: vec![(i % keys).to_le_bytes().to_vec()],
                })
                .collect();
            let dag = Dag::build(&block);
            for threads in [2, 3] {
                let done = Mutex::new(vec![false; block.len()]);
                let build = || {
                    std::thread::sleep(std::time::Duration::from_micros(delay_us));
                    Dag::build(&block)
                };
                run_building(&Workers::new(), block.len(), threads, &build, &|_, tx| {
                    let mut d = done.lock().unwrap();
                    for before in 0..tx {
                        if dag.dependents(before).contains(&tx) {
                            assert!(d[before as usize], "{before} before {tx}");
                        }
                    }
                    assert!(!d[tx as usize], "{tx} twice");
                    d[tx as usize] = true;
                });
                assert!(done.into_inner().unwrap().iter().all(|d| *d));
            }
        }
    }

    /// A worker whose transaction panics stops the others: the panic reaches the caller rather
    /// than leaving the other worker waiting for a transaction that will never finish.
    #[test]
    fn a_panicking_transaction_stops_every_worker() {
        // 50 chains of 4: parallel enough to run on the workers; a panic in the middle of a
        // chain leaves the rest of it never ready.
        let wide: Vec<AccessSet> = (0..200u32)
            .map(|i| AccessSet {
                reads: Vec::new(),
                writes: vec![(i % 50).to_le_bytes().to_vec()],
            })
            .collect();
        let dag = Dag::build(&wide);
        let r = std::panic::catch_unwind(|| {
            run(&Workers::new(), &dag, 2, &|_, tx| {
                assert!(tx != 60, "transaction 60 fails")
            })
        });
        assert!(r.is_err());
        for at in [3u32, 150] {
            let r = std::panic::catch_unwind(|| {
                run_building(&Workers::new(), 200, 2, &|| Dag::build(&wide), &|_, tx| {
                    assert!(tx != at, "transaction {at} fails")
                })
            });
            assert!(r.is_err());
        }
        let stm: Optimistic<u8, u8> = Optimistic::new(300);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            drain_optimistic(
                &Workers::new(),
                &stm,
                2,
                &|_, v| {
                    assert!(v.tx != 60, "transaction 60 fails");
                    Executed {
                        reads: stm.reads(v.tx),
                        writes: vec![(v.tx as u8 % 7, 1)],
                        output: (),
                    }
                },
                &|_, _, _| true,
                &|_, _, _| {},
                &|_, _, _| {},
            )
        }));
        assert!(r.is_err());
    }
}
