//! Workers that drain the core scheduler: std threads running [`Claims`] over a block's
//! dependency graph.

use synor_core::sched::{Claims, Dag};

/// Stack of each worker thread: wasm runs on it, and the compiling tiers allow up to 4 MiB of
/// wasm stack (see `synor_host_wasmtime::engine::STACK_NEEDED`).
pub const WORKER_STACK: usize = 8 << 20;

/// Average parallelism (transactions over the longest dependency chain) below which a block
/// runs sequentially: measured on token transfers, 2 threads lose to one below about 1.5 (the
/// waiting worker's spinning and the shared cache lines cost more than the overlap gains).
pub const MIN_PARALLELISM: f64 = 1.5;

/// Executes every transaction of `dag` with `execute`, each after its dependencies, on
/// `threads` threads (the caller's and `threads - 1` spawned ones). With one thread, or when
/// the graph leaves too little parallelism to pay for scheduling (fewer than
/// [`MIN_PARALLELISM`] transactions per step of its longest chain, e.g. a block on one hot
/// key), transactions run in block order on the caller's thread, with no scheduling at all.
///
/// `execute` gets the worker's index (`0..threads`; 0 is the caller's thread) and the
/// transaction, and must make the transaction's effects visible to the transactions that
/// follow it before it returns. Per-worker state indexed by the worker keeps workers from
/// sharing cache lines (reference counts, buffers).
///
/// # Panics
/// A worker thread cannot be spawned, or `execute` panics (the panic is propagated).
pub fn run(dag: &Dag, threads: usize, execute: &(dyn Fn(usize, u32) + Sync)) {
    let parallelism = dag.len() as f64 / dag.critical_path().max(1) as f64;
    if threads <= 1 || parallelism < MIN_PARALLELISM {
        (0..dag.len() as u32).for_each(|tx| execute(0, tx));
        return;
    }
    let claims = &Claims::new(dag);
    std::thread::scope(|s| {
        for i in 1..threads {
            std::thread::Builder::new()
                .name(format!("synor-worker-{i}"))
                .stack_size(WORKER_STACK)
                .spawn_scoped(s, move || {
                    claims.drain(|tx| execute(i, tx), std::thread::yield_now)
                })
                .expect("spawn a worker thread");
        }
        claims.drain(|tx| execute(0, tx), std::thread::yield_now);
    });
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
            run(&dag, threads, &|_, tx| {
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
}
