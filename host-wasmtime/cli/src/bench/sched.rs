//! `synor bench sched`: the Block-STM workload (peer-to-peer token transfers among N accounts)
//! through the real token contract on the tiered engine, in one run: sequential, parallel with
//! declared access sets, and optimistic (Block-STM) on the same transactions with their
//! declarations removed.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use serde::Serialize;
use synor_core::block::Contracts;
use synor_core::instrument::Limits;
use synor_core::sched::optimistic::{Executed, Optimistic, Read, Version};
use synor_core::sched::{AccessSet, Dag, simulate};
use synor_core::tier::Tier;
use synor_host_std::block::BlockExecutor;
use synor_host_std::pool::{self, Workers};

use super::{median, median_secs, pair, progress, quartiles};
use crate::workload;
use synor_host_std::block::{self, BlockState, Mode, Transaction};
use synor_host_std::tiered::{DEFAULT_CACHE_BYTES, Mode as TierMode, TieredExecutor};
use synor_host_wasmtime::engine::engines;

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
    /// `sequential`, `declared`, `optimistic`, or `independent` (the machine's reference for
    /// parallel work: one sequential copy of the block per thread, all at once, see
    /// `Run::Independent`).
    pub mode: String,
    /// Worker threads.
    pub threads: usize,
    /// Transactions per second.
    pub tps: f64,
    /// Over sequential, same workload, same run: the median over repetitions of a sequential
    /// run's time over this mode's run next to it (before or after it, alternately).
    pub speedup: f64,
    /// The lower quartile of those repetitions' ratios: with `speedup_q3`, how far one pair
    /// is from the next on this machine (a shared machine's spread shows here).
    pub speedup_q1: f64,
    /// The upper quartile of those repetitions' ratios.
    pub speedup_q3: f64,
    /// Contract executions per transaction (1 for declared access sets).
    pub executions_per_tx: f64,
    /// Validations per transaction (none for declared access sets).
    pub validations_per_tx: f64,
    /// Scheduler time per transaction, contract execution excluded, on this cell's threads:
    /// for declared access sets, building the graph and draining it with transactions that do
    /// nothing; for optimistic execution, the scheduler and multi-version memory with
    /// transactions that only read and write the keys the real ones touch.
    pub sched_ns_per_tx: f64,
    /// Predicted speedup on 32 workers: simulation of the measured per-transaction costs and
    /// the block's dependencies, with the mode's scheduler time per transaction (one thread's)
    /// and, for optimistic execution, each cost multiplied by the measured executions per
    /// transaction (re-executions are work too).
    pub sim_speedup_32: f64,
    /// The same on 64 workers.
    pub sim_speedup_64: f64,
}

/// What a cell runs besides the sequential reference.
#[derive(Debug, Clone, Copy)]
enum Run {
    /// The block in a parallel mode.
    Block(Mode),
    /// As many copies of the block as threads, each sequential on a thread and a state of its
    /// own, at once: parallel work with no coordination and nothing shared but the engine and
    /// the machine (two cores of a shared machine slow each other down through the memory
    /// system, the kernel and the host). A reference, not a bound: the copies hold a state
    /// and receipts each, twice what a parallel mode holds, and declared mode has read above
    /// them.
    Independent(usize),
}

/// What a cell's runs of one mode measured.
#[derive(Debug, Default)]
struct Tally {
    /// Each pair's sequential time over the mode's.
    ratios: Vec<f64>,
    /// The mode's times.
    times: Vec<f64>,
    /// Executions, summed over the runs.
    executions: usize,
    /// Validations, summed over the runs.
    validations: usize,
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Every cell.
    pub cells: Vec<Cell>,
}

/// Scheduler-only time per transaction in declared mode: graph construction and the worker
/// pool's drain of no-op transactions (or its sequential fallback, as a real block would).
pub fn declared_sched_ns(
    workers: &Workers,
    sets: &[AccessSet],
    threads: usize,
    reps: usize,
) -> f64 {
    let secs = median_secs(reps, || {
        let dag = Dag::build(sets);
        pool::run(workers, &dag, threads, &|_, _| {});
    });
    secs * 1e9 / sets.len().max(1) as f64
}

/// Scheduler-only time per transaction in optimistic mode: the Block-STM scheduler and
/// multi-version memory, with transactions that read and write their keys and nothing else.
/// The state is reset between repetitions, keeping its allocations, as block execution does.
pub fn optimistic_sched_ns(
    workers: &Workers,
    sets: &[AccessSet],
    threads: usize,
    reps: usize,
) -> f64 {
    let mut stm: Optimistic<Vec<u8>, Option<Vec<u8>>> = Optimistic::new(0);
    let secs = median_secs(reps, || {
        stm.reset(sets.len());
        // As a block's parallel window (only the one-thread probe measures).
        stm.measure_depth(threads == 1);
        let shared = &stm;
        let execute = |_: usize, v: Version| {
            let mut reads = shared.reads(v.tx);
            let mut writes = Vec::new();
            for key in &sets[v.tx as usize].writes {
                if shared.read(&mut reads, key, || None) == Read::Blocked {
                    break;
                }
                writes.push((key.clone(), Some(vec![0; 8])));
            }
            Executed {
                reads,
                writes,
                output: (),
            }
        };
        // Committed writes and outputs are handed over (a block applies and keeps them).
        let write = |_: usize, key: &Vec<u8>, value| {
            std::hint::black_box((key, value));
        };
        let output = |_: usize, tx: u32, output| {
            std::hint::black_box((tx, output));
        };
        pool::drain_optimistic(
            workers,
            shared,
            threads,
            &execute,
            &|_, _, _| true,
            &write,
            &output,
        );
        std::hint::black_box(stm.finish());
    });
    secs * 1e9 / sets.len().max(1) as f64
}

/// Runs one sequential copy of the block `txs` per state in `states`, all at once, on the
/// threads the parallel modes run on (the caller's and the worker pool's persistent ones:
/// threads spawned per run paid their creation, and wasmtime's first-call set-up on each, in
/// the time of every run); returns the wall time over the number of copies (the time per
/// block) and every copy's outcome.
fn copies_at_once(
    blocks: &BlockExecutor,
    exec: &Arc<TieredExecutor>,
    d: &Arc<dyn Contracts>,
    txs: &Arc<[Transaction]>,
    states: Vec<Arc<BlockState>>,
) -> Result<(f64, Vec<block::Execution>), Error> {
    let copies = states.len().max(1);
    // One slot per copy, set by the worker that ran it (as block execution keeps receipts).
    let outcomes: Vec<OnceLock<Result<block::Execution, _>>> =
        states.iter().map(|_| OnceLock::new()).collect();
    let t = Instant::now();
    pool::on_workers(blocks.workers(), states.len(), &|w| {
        if let Some(state) = states.get(w) {
            let _ = outcomes[w].set(block::execute_block(
                blocks,
                exec,
                d,
                state,
                1,
                txs,
                Mode::Sequential,
            ));
        }
    });
    let t = t.elapsed().as_secs_f64() / copies as f64;
    let outcomes = outcomes
        .into_iter()
        .map(|o| o.into_inner().expect("every copy ran"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((t, outcomes))
}

/// Runs the benchmark on the token contract `token` (wasm bytes).
///
/// # Errors
/// The contract is rejected or a block fails to execute.
pub fn run(token: &[u8], options: &Options) -> Result<Report, Error> {
    let d = workload::deploy(&[("token_v1.wasm".into(), token.to_vec())], 1)?;
    // Contracts run hot (as a node's busiest contract would); scheduling is what is measured.
    let exec = Arc::new(TieredExecutor::new(
        engines(&Limits::default(), None)?,
        TierMode::Static(Tier::Hot),
        DEFAULT_CACHE_BYTES,
    ));
    let contracts = workload::contracts(&d);
    let blocks = BlockExecutor::new();
    let mut cells = Vec::new();
    let total = options.accounts.len() * options.blocks.len();
    let bar = progress(total as u64, "sched", options.progress);
    for &accounts in &options.accounts {
        for &size in &options.blocks {
            let (genesis, txs) = workload::transfers(&d, 0, accounts, size, accounts ^ size as u64);
            let sets: Vec<AccessSet> = txs.iter().filter_map(|t| t.access.clone()).collect();
            // The same transactions declaring nothing, for optimistic execution.
            let undeclared = block::undeclared(&txs);
            let txs: Arc<[Transaction]> = txs.into();
            let dag = Dag::build(&sets);
            // States are built before the clock starts, a mode's all at once: building one
            // right before its run left it in the building core's cache, a head start for
            // sequential execution on that core that parallel workers elsewhere do not get.
            let fresh = || Arc::new(BlockState::new(genesis.snapshot()));
            let execute_on =
                |state: Arc<BlockState>, mode: Mode| -> Result<(f64, block::Execution), Error> {
                    let txs = match mode {
                        Mode::Optimistic { .. } => &undeclared,
                        _ => &txs,
                    };
                    let t = Instant::now();
                    let outcome =
                        block::execute_block(&blocks, &exec, &contracts, &state, 1, txs, mode)?;
                    Ok((t.elapsed().as_secs_f64(), outcome))
                };
            let execute = |mode: Mode| execute_on(fresh(), mode);
            // The reference result; also compiles the contract before anything is timed.
            let (_, reference) = execute(Mode::Sequential)?;
            // Per-transaction costs for the simulation: the median of three sequential passes
            // (one pass let a single stalled transaction stand for the block's critical path).
            let passes: Vec<Vec<u64>> = (0..3)
                .map(|_| {
                    let state = fresh();
                    (0..txs.len())
                        .map(|i| {
                            let one: Arc<[Transaction]> = vec![txs[i].clone()].into();
                            let t = Instant::now();
                            let _ = block::execute_block(
                                &blocks,
                                &exec,
                                &contracts,
                                &state,
                                1,
                                &one,
                                Mode::Sequential,
                            );
                            t.elapsed().as_nanos() as u64
                        })
                        .collect()
                })
                .collect();
            let costs: Vec<u64> = (0..txs.len())
                .map(|i| median(passes.iter().map(|p| p[i] as f64).collect()) as u64)
                .collect();
            let modes: Vec<Run> = options
                .threads
                .iter()
                .flat_map(|&t| {
                    [
                        Some(Run::Block(Mode::Declared { threads: t })),
                        Some(Run::Block(Mode::Optimistic { threads: t })),
                        (t > 1).then_some(Run::Independent(t)),
                    ]
                })
                .flatten()
                .collect();
            let copies = |mode: Run| match mode {
                Run::Independent(t) => t,
                Run::Block(_) => 1,
            };
            // One run of `mode`: checks its result; its time, executions and validations (per
            // block: a copy's mean).
            let run_mode = |mode: Run,
                            states: Vec<Arc<BlockState>>|
             -> Result<(f64, usize, usize), Error> {
                let (t, outcomes) = match mode {
                    Run::Block(m) => {
                        let state = states.into_iter().next().expect("a state per run");
                        let (t, outcome) = execute_on(state, m)?;
                        (t, vec![outcome])
                    }
                    Run::Independent(_) => {
                        copies_at_once(&blocks, &exec, &contracts, &txs, states)?
                    }
                };
                for outcome in &outcomes {
                    if outcome.receipts != reference.receipts {
                        return Err(format!(
                            "{mode:?} differs from sequential ({accounts} accounts, {size} transactions)"
                        )
                        .into());
                    }
                }
                let per_block = |f: fn(&block::Execution) -> usize| {
                    outcomes.iter().map(f).sum::<usize>() / outcomes.len()
                };
                Ok((t, per_block(|o| o.executions), per_block(|o| o.validations)))
            };
            // Each run of a mode is paired with a sequential run next to it (first or second,
            // alternating), so that a pair shares the shared machine's moment: a speedup is the
            // median ratio within pairs. And the modes take turns, a pair each per round, so
            // that each mode's pairs spread over the whole cell: the shared machine's slow
            // spells (from one block to a few seconds long; a spell on the core a sequential
            // run does not use slows only its partner) fall on every mode alike, not on
            // whichever mode was running then.
            let reps = options.reps.max(1);
            let mut seq_times = Vec::new();
            let mut tallies: Vec<Tally> = modes.iter().map(|_| Tally::default()).collect();
            for rep in 0..reps {
                // The round's states, built before its clocks start.
                let mut states: Vec<Vec<Arc<BlockState>>> = modes
                    .iter()
                    .map(|&mode| (0..copies(mode)).map(|_| fresh()).collect())
                    .collect();
                let mut for_seq: Vec<_> = modes.iter().map(|_| fresh()).collect();
                for (m, &mode) in modes.iter().enumerate() {
                    let tally = &mut tallies[m];
                    let (x, (y, executions, validations)) = pair(
                        (rep + m) % 2 == 0,
                        || {
                            Ok(execute_on(
                                for_seq.pop().expect("a state per run"),
                                Mode::Sequential,
                            )?
                            .0)
                        },
                        || run_mode(mode, std::mem::take(&mut states[m])),
                    )?;
                    seq_times.push(x);
                    tally.ratios.push(x / y);
                    tally.times.push(y);
                    tally.executions += executions;
                    tally.validations += validations;
                }
            }
            let seq = median(seq_times);
            let per_tx = |count: usize| count as f64 / (reps * size.max(1)) as f64;
            let sched_one = [
                declared_sched_ns(blocks.workers(), &sets, 1, options.reps),
                optimistic_sched_ns(blocks.workers(), &sets, 1, options.reps),
            ];
            let sim = |workers: usize, optimistic: bool, executions_per_tx: f64| {
                let overhead = sched_one[usize::from(optimistic)] as u64;
                let inflated: Vec<u64> = costs
                    .iter()
                    .map(|c| (*c as f64 * executions_per_tx) as u64)
                    .collect();
                let makespan = simulate(&dag, &inflated, workers, overhead).makespan;
                let sequential = costs.iter().sum::<u64>() + overhead * size as u64;
                sequential as f64 / makespan.max(1) as f64
            };
            cells.push(Cell {
                accounts,
                block: size,
                mode: "sequential".into(),
                threads: 1,
                tps: size as f64 / seq,
                speedup: 1.0,
                speedup_q1: 1.0,
                speedup_q3: 1.0,
                executions_per_tx: 1.0,
                validations_per_tx: 0.0,
                sched_ns_per_tx: 0.0,
                sim_speedup_32: 1.0,
                sim_speedup_64: 1.0,
            });
            for (mode, tally) in modes.iter().zip(tallies) {
                let [q1, speedup, q3] = quartiles(tally.ratios);
                let executions_per_tx = per_tx(tally.executions);
                let (name, threads, sched_ns_per_tx, sim_speedup_32, sim_speedup_64) = match *mode {
                    // Copies share no state: on W workers, W copies run at once.
                    Run::Independent(threads) => ("independent", threads, 0.0, 32.0, 64.0),
                    Run::Block(m) => {
                        let (name, threads, optimistic) = match m {
                            Mode::Declared { threads } => ("declared", threads, false),
                            Mode::Optimistic { threads } => ("optimistic", threads, true),
                            Mode::Sequential => unreachable!("sequential is the reference"),
                        };
                        let sched = if threads == 1 {
                            sched_one[usize::from(optimistic)]
                        } else if optimistic {
                            optimistic_sched_ns(blocks.workers(), &sets, threads, options.reps)
                        } else {
                            declared_sched_ns(blocks.workers(), &sets, threads, options.reps)
                        };
                        (
                            name,
                            threads,
                            sched,
                            sim(32, optimistic, executions_per_tx),
                            sim(64, optimistic, executions_per_tx),
                        )
                    }
                };
                cells.push(Cell {
                    accounts,
                    block: size,
                    mode: name.into(),
                    threads,
                    tps: size as f64 / median(tally.times),
                    speedup,
                    speedup_q1: q1,
                    speedup_q3: q3,
                    executions_per_tx,
                    validations_per_tx: per_tx(tally.validations),
                    sched_ns_per_tx,
                    sim_speedup_32,
                    sim_speedup_64,
                });
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(Report { cells })
}

/// Adds what the benchmark measured to `out`: speedup against threads, measured and
/// simulated.
///
/// # Errors
/// A chart could not be drawn.
pub fn report(r: &Report, out: &mut crate::report::Report) -> Result<(), Error> {
    out.speedup(r)
}

/// A human-readable table.
pub fn table(r: &Report) -> String {
    let mut s = format!(
        "{:>8} {:>7} {:>11} {:>7} {:>10} {:>8} {:>10} {:>6} {:>6} {:>10} {:>8} {:>8}\n",
        "accounts",
        "block",
        "mode",
        "threads",
        "tps",
        "speedup",
        "pairs q1-q3",
        "exec",
        "valid",
        "sched ns",
        "sim 32",
        "sim 64"
    );
    for c in &r.cells {
        s.push_str(&format!(
            "{:>8} {:>7} {:>11} {:>7} {:>10.0} {:>8.2} {:>10} {:>6.2} {:>6.2} {:>10.0} {:>8.1} {:>8.1}\n",
            c.accounts,
            c.block,
            c.mode,
            c.threads,
            c.tps,
            c.speedup,
            format!("{:.2}-{:.2}", c.speedup_q1, c.speedup_q3),
            c.executions_per_tx,
            c.validations_per_tx,
            c.sched_ns_per_tx,
            c.sim_speedup_32,
            c.sim_speedup_64
        ));
    }
    s
}
