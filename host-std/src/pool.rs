//! Workers that drain the core scheduler: std threads running [`Claims`] over a block's
//! dependency graph.

use synor_core::sched::{Claims, Dag};

/// Stack of each worker thread: wasm runs on it, and the compiling tiers allow up to 4 MiB of
/// wasm stack (see `synor_host_wasmtime::engine::STACK_NEEDED`).
pub const WORKER_STACK: usize = 8 << 20;

/// Executes every transaction of `dag` with `execute`, each after its dependencies, on
/// `threads` threads (the caller's and `threads - 1` spawned ones). With one thread, or when
/// every transaction depends on the previous one, transactions run in block order on the
/// caller's thread, with no scheduling at all.
///
/// `execute` must make a transaction's effects visible to the transactions that follow it
/// before it returns.
///
/// # Panics
/// A worker thread cannot be spawned, or `execute` panics (the panic is propagated).
pub fn run(dag: &Dag, threads: usize, execute: &(dyn Fn(u32) + Sync)) {
    if threads <= 1 || dag.critical_path() == dag.len() {
        (0..dag.len() as u32).for_each(execute);
        return;
    }
    let claims = Claims::new(dag);
    std::thread::scope(|s| {
        for i in 1..threads {
            std::thread::Builder::new()
                .name(format!("synor-worker-{i}"))
                .stack_size(WORKER_STACK)
                .spawn_scoped(s, || claims.drain(execute, std::thread::yield_now))
                .expect("spawn a worker thread");
        }
        claims.drain(execute, std::thread::yield_now);
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
            run(&dag, threads, &|tx| {
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
