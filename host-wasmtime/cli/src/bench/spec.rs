//! `synor bench spec`: block latency with speculation against without, on two nodes in one
//! run. Blocks of token transfers and compute-heavy calls (SHA-256 hash chains) arrive after a
//! share of their transactions was submitted and pre-executed (0, 50, 90, 100 %), of which a
//! share is invalidated by earlier transactions of the block (0, 10, 50 %: a transfer to the
//! sender of a pre-executed transfer, placed before it). Block latency is from arrival to the
//! block being durable (no pipelining), on the same thread count on both nodes.

use std::time::{Duration, Instant};

use serde::Serialize;
use synor_core::block::{Mode, Transaction};
use synor_core::tier::TierPolicy;
use synor_host_std::node::{Node, NodeConfig};

use super::node::{Deployed, deploy, genesis};
use super::{median, pair, progress};
use crate::corpus::CorpusFile;
use crate::workload::{Rng, account, call, transfer_input};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Shares of a block pre-executed before it arrives.
const PRE: [f64; 4] = [0.0, 0.5, 0.9, 1.0];

/// Shares of the pre-executed transactions invalidated by earlier transactions of the block.
const INVALIDATED: [f64; 3] = [0.0, 0.1, 0.5];

/// Options of the speculation benchmark.
#[derive(Debug, Clone)]
pub struct Options {
    /// Token transfers per block (between distinct accounts: the block's own transactions do
    /// not conflict, so that invalidation is what the grid sets).
    pub transfers: usize,
    /// Compute-heavy calls per block.
    pub compute: usize,
    /// SHA-256 rounds of each compute call (drawn between half and all of it).
    pub rounds: u32,
    /// Blocks per cell of the grid.
    pub blocks: usize,
    /// Worker threads, on both nodes.
    pub threads: usize,
    /// Workload seed.
    pub seed: u64,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            transfers: 1_000,
            compute: 500,
            rounds: 400,
            blocks: 10,
            threads: 2,
            seed: 7,
            progress: true,
        }
    }
}

/// One cell of the grid.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// Share of the block pre-executed.
    pub pre: f64,
    /// Share of those invalidated by earlier transactions of the block.
    pub invalidated: f64,
    /// Median over the cell's blocks of each block's latency without speculation / with.
    pub speedup: f64,
    /// Median block latency with speculation, ms.
    pub latency_ms: f64,
    /// Median block latency without, ms.
    pub latency_ms_without: f64,
    /// Transactions per block whose pre-executed result stood.
    pub reused_per_block: f64,
}

/// What `synor bench spec --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Transactions per block before invalidating ones are added.
    pub block_size: usize,
    /// Blocks per cell.
    pub blocks_per_cell: usize,
    /// Worker threads.
    pub threads: usize,
    /// Every cell.
    pub cells: Vec<Cell>,
    /// Speedup with 90 % pre-executed, none invalidated.
    pub speedup_pre90: f64,
    /// Speedup with everything pre-executed and half of it invalidated.
    pub speedup_pre100_inv50: f64,
    /// The least speedup of the grid.
    pub min_speedup: f64,
    /// The least and the greatest speedup of the cells with nothing pre-executed, where both
    /// nodes do the same work: the run's own noise, the reference for `min_speedup`.
    pub same_work_speedups: [f64; 2],
    /// Validating and applying a reused result, per transaction (everything pre-executed and
    /// valid: the execution phase of the block, which takes the results and checks them, over
    /// its transactions), ns.
    pub reuse_ns_per_tx: f64,
    /// Executing a transaction in the same blocks without speculation (the execution phase
    /// over the transactions), ns.
    pub exec_ns_per_tx: f64,
    /// Bytes a pre-executed result holds, per transaction.
    pub preexec_bytes_per_tx: f64,
    /// Every block gave the same receipts and state diff on both nodes.
    pub results_identical: bool,
}

/// A node on a temporary directory, optimistic on `threads`, committing before
/// `execute_block` returns, speculating or not.
fn open(dir: &std::path::Path, threads: usize, speculate: bool) -> Result<Node, Error> {
    let config = NodeConfig {
        mode: Mode::Optimistic { threads },
        pipeline: false,
        tier_policy: TierPolicy::DEFAULT,
        speculation_bytes: if speculate { 256 << 20 } else { 0 },
        ..NodeConfig::default()
    };
    Ok(synor_host_wasmtime::open_node(dir, config)?)
}

/// A block: its transactions, and which of them are submitted before it arrives.
struct Block {
    txs: Vec<Transaction>,
    submitted: Vec<Transaction>,
}

/// A block of the cell (`pre`, `invalidated`): transfers between distinct accounts and
/// compute calls, in a random order, then the invalidating transfers in front.
fn block(d: &Deployed, o: &Options, rng: &mut Rng, pre: f64, invalidated: f64) -> Block {
    let accounts = 3 * o.transfers as u64;
    let mut people: Vec<u64> = (1..=accounts).collect();
    for i in (1..people.len()).rev() {
        people.swap(i, rng.range(0, i as u64 + 1) as usize);
    }
    let mut txs: Vec<(bool, Transaction)> = (0..o.transfers)
        .map(|i| {
            let (from, to) = (people[2 * i], people[2 * i + 1]);
            let input = transfer_input(account(to), rng.range(1, 100));
            (true, call(d.token, "transfer", account(from), input))
        })
        .collect();
    txs.extend((0..o.compute).map(|_| {
        let rounds = rng.range(u64::from(o.rounds / 2), u64::from(o.rounds) + 1) as u32;
        let mut input = rounds.to_le_bytes().to_vec();
        input.extend_from_slice(&rng.next_u64().to_le_bytes());
        (false, call(d.compute, "hash_chain", account(0), input))
    }));
    for i in (1..txs.len()).rev() {
        txs.swap(i, rng.range(0, i as u64 + 1) as usize);
    }
    let submitted_count = (pre * txs.len() as f64).round() as usize;
    // The first ones in block order are pre-executed; of their transfers, the first
    // `invalidated` share get a transfer to their sender in front of the block, from an
    // account of the third that no transaction of the block uses.
    let submitted: Vec<Transaction> = txs[..submitted_count].iter().map(|t| t.1.clone()).collect();
    let target = (invalidated * submitted_count as f64).round() as usize;
    let mut spare = people[2 * o.transfers..].iter();
    let front: Vec<Transaction> = (txs[..submitted_count].iter())
        .filter(|(transfer, _)| *transfer)
        .take(target)
        .filter_map(|(_, t)| {
            let from = spare.next()?;
            Some(call(
                d.token,
                "transfer",
                account(*from),
                transfer_input(t.caller, 1),
            ))
        })
        .collect();
    let mut all = front;
    all.extend(txs.into_iter().map(|t| t.1));
    Block {
        txs: all,
        submitted,
    }
}

/// One block on one node: submits what is to be pre-executed and waits for it, then times the
/// block from arrival to durable.
struct Timed {
    latency: Duration,
    execute: Duration,
    reused: usize,
    digests: [synor_core::Digest; 2],
    result_bytes: Option<f64>,
}

fn run_block(node: &mut Node, b: &Block, speculate: bool) -> Result<Timed, Error> {
    let mut result_bytes = None;
    if speculate {
        for t in &b.submitted {
            node.submit(t.clone());
        }
        node.wait_speculation();
        let pool = node.pool();
        if pool.results > 0 {
            result_bytes = Some(pool.result_bytes as f64 / pool.results as f64);
        }
    }
    // Promotions triggered by pre-execution are done before the block arrives, on both nodes.
    node.executor().wait_idle();
    let t = Instant::now();
    let out = node.execute_block(b.txs.as_slice())?;
    let latency = t.elapsed();
    if let Some(trap) = out.receipts.iter().find_map(|r| r.trap.as_ref()) {
        return Err(format!("a transaction failed: {trap}").into());
    }
    Ok(Timed {
        latency,
        execute: out.execute_time,
        reused: out.reused,
        digests: [out.receipts_digest, out.diff_digest],
        result_bytes,
    })
}

/// Runs the benchmark.
///
/// # Errors
/// A node failed, or a transaction of the workload did.
pub fn run(files: &[CorpusFile], o: &Options) -> Result<Report, Error> {
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    let mut with = open(dirs[0].path(), o.threads, true)?;
    let mut without = open(dirs[1].path(), o.threads, false)?;
    let accounts = 3 * o.transfers as u64;
    let d = deploy(&mut with, files, 1)?;
    deploy(&mut without, files, 1)?;
    for txs in genesis(&d, accounts) {
        with.execute_block(txs.as_slice())?;
        without.execute_block(txs)?;
    }
    let mut rng = Rng::new(o.seed);
    let bar = progress(
        ((PRE.len() * INVALIDATED.len() + 1) * o.blocks) as u64,
        "spec",
        o.progress,
    );
    // Warm-up: the contracts promoted on both nodes.
    for _ in 0..o.blocks {
        let b = block(&d, o, &mut rng, 0.0, 0.0);
        run_block(&mut with, &b, false)?;
        run_block(&mut without, &b, false)?;
        bar.inc(1);
    }
    let mut cells = Vec::new();
    let mut identical = true;
    let (mut reuse_ns, mut exec_ns, mut bytes) = (Vec::new(), Vec::new(), Vec::new());
    for (i, &pre) in PRE.iter().enumerate() {
        for &invalidated in &INVALIDATED {
            let mut timed = Vec::new();
            for rep in 0..o.blocks {
                let b = block(&d, o, &mut rng, pre, invalidated);
                let (s, n) = pair(
                    (i + rep) % 2 == 0,
                    || run_block(&mut with, &b, true),
                    || run_block(&mut without, &b, false),
                )?;
                identical &= s.digests == n.digests;
                let per_tx = |t: Duration| t.as_secs_f64() * 1e9 / b.txs.len() as f64;
                if pre == 1.0 && invalidated == 0.0 {
                    reuse_ns.push(per_tx(s.execute));
                    exec_ns.push(per_tx(n.execute));
                }
                bytes.extend(s.result_bytes);
                timed.push((s, n));
                bar.inc(1);
            }
            let ms = |f: &dyn Fn(&(Timed, Timed)) -> Duration| {
                median(timed.iter().map(|t| f(t).as_secs_f64() * 1e3).collect())
            };
            let (latency_ms, latency_ms_without) = (ms(&|t| t.0.latency), ms(&|t| t.1.latency));
            // Each block's pair ran back to back: the median of their ratios leaves out what
            // the machine did to both (its disk's syncs above all).
            let ratios = (timed.iter())
                .map(|(s, n)| n.latency.as_secs_f64() / s.latency.as_secs_f64().max(1e-12))
                .collect();
            cells.push(Cell {
                pre,
                invalidated,
                speedup: median(ratios),
                latency_ms,
                latency_ms_without,
                reused_per_block: timed.iter().map(|t| t.0.reused as f64).sum::<f64>()
                    / timed.len().max(1) as f64,
            });
        }
    }
    bar.finish_and_clear();
    let speedup = |pre: f64, inv: f64| {
        (cells.iter())
            .find(|c| c.pre == pre && c.invalidated == inv)
            .map_or(0.0, |c| c.speedup)
    };
    Ok(Report {
        block_size: o.transfers + o.compute,
        blocks_per_cell: o.blocks,
        threads: o.threads,
        speedup_pre90: speedup(0.9, 0.0),
        speedup_pre100_inv50: speedup(1.0, 0.5),
        min_speedup: cells
            .iter()
            .map(|c| c.speedup)
            .fold(f64::INFINITY, f64::min),
        same_work_speedups: {
            let same = || cells.iter().filter(|c| c.pre == 0.0).map(|c| c.speedup);
            [
                same().fold(f64::INFINITY, f64::min),
                same().fold(0.0, f64::max),
            ]
        },
        reuse_ns_per_tx: median(reuse_ns),
        exec_ns_per_tx: median(exec_ns),
        preexec_bytes_per_tx: median(bytes),
        results_identical: identical,
        cells,
    })
}

/// The report as a table.
pub fn table(r: &Report) -> String {
    let mut out = format!(
        "synor bench spec: blocks of {} transactions ({} per cell), optimistic on {} threads; \
         latency from arrival to durable\n\n  pre-executed  invalidated  speedup  with ms  \
         without ms  reused/block\n",
        r.block_size, r.blocks_per_cell, r.threads
    );
    for c in &r.cells {
        out.push_str(&format!(
            "  {:>11.0}%  {:>10.0}%  {:>7.2}  {:>7.1}  {:>10.1}  {:>12.0}\n",
            c.pre * 100.0,
            c.invalidated * 100.0,
            c.speedup,
            c.latency_ms,
            c.latency_ms_without,
            c.reused_per_block
        ));
    }
    out.push_str(&format!(
        "\n  speedup at 90 % pre-executed {:.2}, at 100 % with half invalidated {:.2}, least {:.2} \
         (the same work on both nodes: {:.2}-{:.2})\
         \n  reusing a result {:.0} ns per transaction, executing one {:.0} ns ({:.2}x)\
         \n  a pre-executed result holds {:.0} bytes; results identical: {}\n",
        r.speedup_pre90,
        r.speedup_pre100_inv50,
        r.min_speedup,
        r.same_work_speedups[0],
        r.same_work_speedups[1],
        r.reuse_ns_per_tx,
        r.exec_ns_per_tx,
        r.reuse_ns_per_tx / r.exec_ns_per_tx.max(1e-9),
        r.preexec_bytes_per_tx,
        if r.results_identical { "yes" } else { "NO" }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::{Options, run};

    /// A small grid: both nodes give the same receipts and state diffs for every block, every
    /// pre-executed result stands when nothing invalidates it, and the invalidated ones do not.
    #[test]
    fn speculation_changes_only_time_on_a_small_grid() {
        let (files, _) = crate::corpus::embedded();
        let options = Options {
            transfers: 30,
            compute: 10,
            rounds: 8,
            blocks: 1,
            progress: false,
            ..Options::default()
        };
        let r = run(&files, &options).unwrap();
        assert!(r.results_identical);
        assert_eq!(r.cells.len(), 12);
        for c in &r.cells {
            let submitted = (c.pre * 40.0).round();
            // Transfers among the submitted ones are invalidated, never compute calls.
            let invalidated = (c.invalidated * submitted).round();
            assert!(c.reused_per_block <= submitted, "{c:?}");
            assert!(c.reused_per_block >= submitted - invalidated, "{c:?}");
        }
        assert!(r.preexec_bytes_per_tx > 0.0);
    }
}
