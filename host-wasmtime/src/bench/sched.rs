//! `synor bench sched`: the Block-STM workload (peer-to-peer token transfers among N accounts)
//! through the real token contract on the tiered engine, sequential against parallel with
//! declared access sets, in one run.
//!
//! The optimistic (Block-STM) mode is not built yet; its cells are absent.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use synor_core::instrument::Limits;
use synor_core::sched::{AccessSet, Claims, Dag, simulate};
use synor_core::tier::Tier;

use super::{median, progress};
use crate::block::{self, BlockState, Mode, Transaction};
use crate::engine::engines;
use crate::tiered::{DEFAULT_CACHE_BYTES, Mode as TierMode, TieredExecutor};
use crate::workload;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Options of the scheduling benchmark.
#[derive(Debug, Clone)]
pub struct Options {
    /// Account counts.
    pub accounts: Vec<u64>,
    /// Block sizes.
    pub blocks: Vec<usize>,
    /// Thread counts for the parallel modes.
    pub threads: Vec<usize>,
    /// Repetitions of each cell (the median counts).
    pub reps: usize,
    /// Show progress on stderr.
    pub progress: bool,
}

/// One cell: a workload, a mode and a thread count.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// Accounts.
    pub accounts: u64,
    /// Transactions in the block.
    pub block: usize,
    /// `sequential` or `declared`.
    pub mode: String,
    /// Worker threads.
    pub threads: usize,
    /// Transactions per second.
    pub tps: f64,
    /// Over sequential, same workload, same run.
    pub speedup: f64,
    /// Contract executions per transaction (1 for declared access sets).
    pub executions_per_tx: f64,
    /// Validations per transaction (none for declared access sets).
    pub validations_per_tx: f64,
    /// Scheduler time per transaction, contract execution excluded: building the graph and
    /// draining it with transactions that do nothing, on this cell's threads.
    pub sched_ns_per_tx: f64,
    /// Predicted speedup on 32 workers (simulation of the measured per-transaction costs and
    /// the block's dependencies, with the measured scheduler time per transaction).
    pub sim_speedup_32: f64,
    /// The same on 64 workers.
    pub sim_speedup_64: f64,
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Every cell.
    pub cells: Vec<Cell>,
}

/// Scheduler-only time per transaction: graph construction and a drain of no-op transactions.
fn sched_ns(sets: &[AccessSet], threads: usize, reps: usize) -> f64 {
    let n = sets.len().max(1) as f64;
    median(
        (0..reps.max(1))
            .map(|_| {
                let t = Instant::now();
                let dag = Dag::build(sets);
                if threads > 1 {
                    let claims = Claims::new(&dag);
                    std::thread::scope(|s| {
                        for _ in 1..threads {
                            s.spawn(|| claims.drain(|_| {}, std::thread::yield_now));
                        }
                        claims.drain(|_| {}, std::thread::yield_now);
                    });
                }
                t.elapsed().as_nanos() as f64 / n
            })
            .collect(),
    )
}

/// Runs the benchmark on the token contract `token` (wasm bytes).
///
/// # Errors
/// The contract is rejected or a block fails to execute.
pub fn run(token: &[u8], options: &Options) -> Result<Report, Error> {
    let d = workload::deploy(&[("token_v1.wasm".into(), token.to_vec())], 1)?;
    // Contracts run hot (as a node's busiest contract would); scheduling is what is measured.
    let exec = TieredExecutor::new(
        engines(&Limits::default(), None)?,
        TierMode::Static(Tier::Hot),
        DEFAULT_CACHE_BYTES,
    );
    let mut cells = Vec::new();
    let total = options.accounts.len() * options.blocks.len();
    let bar = progress(total as u64, "sched", options.progress);
    for &accounts in &options.accounts {
        for &size in &options.blocks {
            let (genesis, txs) = block::transfers(&d, 0, accounts, size, accounts ^ size as u64);
            let txs: Arc<[Transaction]> = txs.into();
            let sets: Vec<AccessSet> = txs.iter().map(|t| t.access.clone()).collect();
            let dag = Dag::build(&sets);
            let execute = |mode: Mode| -> Result<(f64, Vec<block::Receipt>), Error> {
                let state = Arc::new(BlockState::new(genesis.snapshot()));
                let t = Instant::now();
                let receipts = block::execute_block(&exec, &d, &state, &txs, mode)?;
                Ok((t.elapsed().as_secs_f64(), receipts))
            };
            // Per-transaction costs for the simulation, from one sequential pass.
            let costs: Vec<u64> = {
                let state = Arc::new(BlockState::new(genesis.snapshot()));
                (0..txs.len())
                    .map(|i| {
                        let one: Arc<[Transaction]> = vec![txs[i].clone()].into();
                        let t = Instant::now();
                        let _ = block::execute_block(&exec, &d, &state, &one, Mode::Sequential);
                        t.elapsed().as_nanos() as u64
                    })
                    .collect()
            };
            let (_, reference) = execute(Mode::Sequential)?;
            let mut seq_times = Vec::new();
            let mut par_times: Vec<Vec<f64>> = vec![Vec::new(); options.threads.len()];
            for _ in 0..options.reps.max(1) {
                seq_times.push(execute(Mode::Sequential)?.0);
                for (i, threads) in options.threads.iter().enumerate() {
                    let (t, receipts) = execute(Mode::Declared { threads: *threads })?;
                    if receipts != reference {
                        return Err(format!(
                            "declared mode on {threads} threads differs from sequential ({accounts} accounts)"
                        )
                        .into());
                    }
                    par_times[i].push(t);
                }
            }
            let seq = median(seq_times);
            let sched_seq = sched_ns(&sets, 1, options.reps);
            let sim = |workers: usize, overhead: f64| {
                simulate(&dag, &costs, workers, overhead as u64).speedup
            };
            cells.push(Cell {
                accounts,
                block: size,
                mode: "sequential".into(),
                threads: 1,
                tps: size as f64 / seq,
                speedup: 1.0,
                executions_per_tx: 1.0,
                validations_per_tx: 0.0,
                sched_ns_per_tx: 0.0,
                sim_speedup_32: 1.0,
                sim_speedup_64: 1.0,
            });
            for (i, threads) in options.threads.iter().enumerate() {
                let t = median(par_times[i].clone());
                let sched = sched_ns(&sets, *threads, options.reps);
                cells.push(Cell {
                    accounts,
                    block: size,
                    mode: "declared".into(),
                    threads: *threads,
                    tps: size as f64 / t,
                    speedup: seq / t,
                    executions_per_tx: 1.0,
                    validations_per_tx: 0.0,
                    sched_ns_per_tx: sched,
                    sim_speedup_32: sim(32, sched_seq),
                    sim_speedup_64: sim(64, sched_seq),
                });
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(Report { cells })
}

/// A human-readable table.
pub fn table(r: &Report) -> String {
    let mut s = format!(
        "{:>8} {:>7} {:>11} {:>7} {:>10} {:>8} {:>10} {:>8} {:>8}\n",
        "accounts", "block", "mode", "threads", "tps", "speedup", "sched ns", "sim 32", "sim 64"
    );
    for c in &r.cells {
        s.push_str(&format!(
            "{:>8} {:>7} {:>11} {:>7} {:>10.0} {:>8.2} {:>10.0} {:>8.1} {:>8.1}\n",
            c.accounts,
            c.block,
            c.mode,
            c.threads,
            c.tps,
            c.speedup,
            c.sched_ns_per_tx,
            c.sim_speedup_32,
            c.sim_speedup_64
        ));
    }
    s
}
