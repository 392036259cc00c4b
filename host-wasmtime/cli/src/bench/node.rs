//! `synor bench node`: blocks of token transfers among many accounts, with some compute, blob
//! and contract-to-contract transactions, through a [`Node`] (redb state, hot-state cache,
//! commit) against the same blocks executed in memory with no commit, in one run; the node's
//! restart, its hot-state cache against an LRU of the same budget on a Zipf trace, and the
//! cost of the transaction journal's checkpoints and reverts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use synor_core::block::{Address, Contracts, Mode, Receipt, Transaction};
use synor_core::gas::GasSchedule;
use synor_core::instrument::{self, Instrumented, Limits};
use synor_core::state::Journal;
use synor_core::tier::{Tier, TierPolicy};
use synor_host_std::block::{self, BlockExecutor, BlockState};
use synor_host_std::cache::{self, TRACE_KEY_LEN, TRACE_VALUE_LEN};
use synor_host_std::node::{BlockOutcome, Node, NodeConfig};
use synor_host_std::tiered::{DEFAULT_CACHE_BYTES, Mode as TierMode, TieredExecutor};
use synor_host_wasmtime::engine::engines;

use super::{median, pair, progress, quartiles};
use crate::corpus::CorpusFile;
use crate::report::{Series, TierPoint, TierRun};
use crate::workload::{Rng, account, call, transfer_input};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Tokens each account holds after genesis.
const FUNDING: u64 = 1_000_000;

/// Documents the registry holds (registered at genesis; blob writes update them).
const DOCUMENTS: u64 = 64;

/// Keys of the small and the large journal of the checkpoint measurement.
const JOURNAL_KEYS: [usize; 2] = [1_000, 1_000_000];

/// Options of the node benchmark.
#[derive(Debug, Clone)]
pub struct Options {
    /// Token accounts.
    pub accounts: u64,
    /// Token transfers per block.
    pub transfers: usize,
    /// Compute transactions (hash chains) per block.
    pub compute: usize,
    /// Registry documents updated per block (each a new blob, a delta of its previous version).
    pub blob_writes: usize,
    /// Registry documents read per block (from their blobs).
    pub blob_reads: usize,
    /// Contract-to-contract transactions per block: a `kv` contract calling the token (a
    /// transfer from the `kv` contract's own balance, or a balance query).
    pub calls: usize,
    /// `kv` contracts making those calls.
    pub kv_contracts: u64,
    /// Worker threads of optimistic execution, on both sides.
    pub threads: usize,
    /// Blocks run on both sides before timing, so that the contracts have been promoted.
    pub warmup: usize,
    /// Timed blocks.
    pub blocks: usize,
    /// Workload seed.
    pub seed: u64,
    /// Keys of the cache trace.
    pub trace_keys: usize,
    /// Reads of the cache trace.
    pub trace_reads: usize,
    /// Share of the cache trace's reads that belong to scans.
    pub trace_scan_fraction: f64,
    /// The caches' byte budget, in percent of the trace's key set.
    pub trace_budget_percent: u64,
    /// Timing samples of each checkpoint measurement (the median counts).
    pub journal_reps: usize,
    /// Changes reverted in each sample of the revert measurement.
    pub revert_changes: usize,
    /// Show progress on stderr.
    pub progress: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            accounts: 10_000,
            transfers: 10_000,
            compute: 50,
            blob_writes: 20,
            blob_reads: 80,
            calls: 100,
            kv_contracts: 16,
            threads: 2,
            warmup: 2,
            blocks: 6,
            seed: 11,
            trace_keys: 10_000,
            trace_reads: 200_000,
            trace_scan_fraction: 0.2,
            trace_budget_percent: 10,
            journal_reps: 101,
            revert_changes: 1_000,
            progress: true,
        }
    }
}

/// What the benchmark measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Transactions per block.
    pub block_size: usize,
    /// Timed blocks (each on both sides).
    pub blocks: usize,
    /// Untimed blocks before them, on both sides.
    pub warmup_blocks: usize,
    /// Worker threads of optimistic execution.
    pub threads: usize,
    /// Token accounts.
    pub accounts: u64,
    /// Node throughput: transactions per second of `Node::execute_block` (execution and
    /// commit), over the median block time.
    pub tx_per_s: f64,
    /// In-memory throughput: the same blocks executed on a block state in memory, no commit.
    pub in_memory_tx_per_s: f64,
    /// Node over in-memory throughput: the median over blocks of the in-memory time over the
    /// node's time for the same block, run next to each other (before or after, alternately).
    pub over_in_memory: f64,
    /// The lower quartile of those ratios.
    pub over_in_memory_q1: f64,
    /// The upper quartile of those ratios.
    pub over_in_memory_q3: f64,
    /// The same ratio with the node's execution time alone (`BlockOutcome::execute_time`):
    /// what the node would reach if committing took no time.
    pub execute_over_in_memory: f64,
    /// Median wall time of a node block, in milliseconds.
    pub block_ms_p50: f64,
    /// Median of the node's execution time per block (`BlockOutcome::execute_time`).
    pub execute_ms_p50: f64,
    /// Median of the node's commit time per block (`BlockOutcome::commit_time`).
    pub commit_ms_p50: f64,
    /// Median of the rest of a node block's wall time (updating the hot-state cache with the
    /// block's writes, handing the transactions over).
    pub other_ms_p50: f64,
    /// Median wall time of an in-memory block.
    pub in_memory_ms_p50: f64,
    /// Contract executions per transaction on the node (re-executions of optimistic
    /// execution included).
    pub executions_per_tx: f64,
    /// Failed transactions per timed block (the same on both sides when receipts agree).
    pub failed_per_block: f64,
    /// Every timed block gave the same receipts on the node and in memory.
    pub receipts_identical: bool,
    /// After genesis and after the last block, the in-memory state has the node's state
    /// digest.
    pub state_digest_equal: bool,
    /// The node reopened from its directory has the state digest it had before.
    pub restart_digest_equal: bool,
    /// Time to reopen the node, in milliseconds.
    pub restart_ms: f64,
    /// Every contract ran on the hot tier in the timed blocks, on both sides.
    pub all_hot: bool,
    /// Hit rate of the node's hot-state cache during the timed blocks.
    pub cache_hit_rate: f64,
    /// Hot-state cache lookups during the timed blocks.
    pub cache_lookups: u64,
    /// Hit rate of the hot-state cache replaying a Zipf(0.9) trace with scans and commits.
    pub cache_hit_rate_trace: f64,
    /// Hit rate of an LRU on the same trace with the same byte budget and entry weights.
    pub lru_hit_rate: f64,
    /// Keys, reads and byte budget of that trace.
    pub trace_keys: usize,
    /// Reads of the trace.
    pub trace_reads: u64,
    /// Budget of both caches, bytes.
    pub trace_budget_bytes: u64,
    /// Share of the trace's reads that belong to scans.
    pub trace_scan_fraction: f64,
    /// Median time of a checkpoint and its commit in a journal holding 10³ written keys, ns.
    pub checkpoint_ns_1k: f64,
    /// The same in a journal holding 10⁶ written keys.
    pub checkpoint_ns_1m: f64,
    /// Median time of a revert per change undone, in a journal holding 10⁶ written keys (half
    /// of the changes overwrite keys, half add new ones), ns.
    pub revert_ns_per_change: f64,
    /// The same in a journal holding 10³ written keys.
    pub revert_ns_per_change_1k: f64,
    /// Node throughput of each timed block (execution and commit), for `--report` (not in the
    /// JSON).
    #[serde(skip)]
    pub block_tx_per_s: Vec<f64>,
    /// In-memory throughput of each timed block, for `--report`.
    #[serde(skip)]
    pub in_memory_block_tx_per_s: Vec<f64>,
    /// Calls per tier and promotions of each block after genesis, warm-up blocks included:
    /// the node's and the in-memory executor's, for `--report`.
    #[serde(skip)]
    pub tiers_by_block: [Vec<TierPoint>; 2],
}

/// The contracts of the workload (the same addresses on both sides).
#[derive(Debug, Clone)]
pub(super) struct Deployed {
    pub(super) token: Address,
    pub(super) compute: Address,
    registry: Address,
    kv: Vec<Address>,
    /// Every contract's module, by address: what the in-memory side executes.
    modules: Arc<HashMap<Address, Arc<Instrumented>>>,
}

/// A document's name as the registry's input starts with it.
fn document(n: u64) -> Vec<u8> {
    let name = format!("doc{n}");
    let mut input = vec![name.len() as u8];
    input.extend_from_slice(name.as_bytes());
    input
}

/// `len` bytes of document data, compressible and varying with `seed` (as documents do).
fn document_data(len: usize, seed: u64) -> impl Iterator<Item = u8> {
    (0..len).map(move |i| (i as u64 * 31 + seed * (i as u64 / 512)) as u8)
}

/// Deploys and instantiates the contracts on `node`.
pub(super) fn deploy(
    node: &mut Node,
    files: &[CorpusFile],
    kv_contracts: u64,
) -> Result<Deployed, Error> {
    let file = |name: &str| -> Result<Vec<u8>, Error> {
        files
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.bytes.clone())
            .ok_or_else(|| format!("the contract {name} is not embedded").into())
    };
    let kv_wasm = wat::parse_str(crate::demo::KV_WAT)?;
    let mut modules = HashMap::new();
    let mut instantiate = |node: &mut Node, wasm: &[u8]| -> Result<Address, Error> {
        let code = node.deploy(wasm)?;
        let address = node.instantiate(&code, account(0))?;
        // As the node instruments it (its limits are the default ones).
        let module = instrument::instrument(wasm, &GasSchedule::V1, &Limits::default())?;
        modules.insert(address, Arc::new(module));
        Ok(address)
    };
    let token = instantiate(node, &file("token_v1.wasm")?)?;
    let compute = instantiate(node, &file("compute_v1.wasm")?)?;
    let registry = instantiate(node, &file("registry_v1.wasm")?)?;
    let kv = (0..kv_contracts.max(1))
        .map(|_| instantiate(node, &kv_wasm))
        .collect::<Result<_, _>>()?;
    Ok(Deployed {
        token,
        compute,
        registry,
        kv,
        modules: Arc::new(modules),
    })
}

/// The genesis blocks: the token's supply minted to account 0 and the documents registered,
/// then every account and every `kv` contract funded.
pub(super) fn genesis(d: &Deployed, accounts: u64) -> Vec<Vec<Transaction>> {
    let holders = accounts + d.kv.len() as u64 + 1;
    let mut first = vec![call(
        d.token,
        "init",
        account(0),
        (holders * FUNDING).to_le_bytes().to_vec(),
    )];
    first.extend((0..DOCUMENTS).map(|n| {
        let mut input = document(n);
        input.extend(document_data(2048, n));
        call(d.registry, "register", account(0), input)
    }));
    let to = |to: [u8; 32]| call(d.token, "transfer", account(0), transfer_input(to, FUNDING));
    let mut second: Vec<Transaction> = (1..=accounts).map(|n| to(account(n))).collect();
    second.extend(d.kv.iter().map(|kv| to(*kv.as_bytes())));
    vec![first, second]
}

/// Block `index`: the transfers and the other transactions, in a random order.
///
/// A blob stored in a block is readable from the next block on: the block updates distinct
/// documents of its parity (an update of a document updated earlier in the same block, or a
/// read of it, would fail), and reads documents of the other parity, which the previous block
/// updated.
fn block(d: &Deployed, o: &Options, rng: &mut Rng, index: usize) -> Vec<Transaction> {
    #[derive(Clone, Copy)]
    enum Kind {
        Transfer,
        Compute,
        BlobWrite,
        BlobRead,
        Call,
    }
    let mut kinds: Vec<Kind> = [
        (Kind::Transfer, o.transfers),
        (Kind::Compute, o.compute),
        (Kind::BlobWrite, o.blob_writes),
        (Kind::BlobRead, o.blob_reads),
        (Kind::Call, o.calls),
    ]
    .into_iter()
    .flat_map(|(kind, n)| std::iter::repeat_n(kind, n))
    .collect();
    for i in (1..kinds.len()).rev() {
        kinds.swap(i, rng.range(0, i as u64 + 1) as usize);
    }
    let someone = |rng: &mut Rng| account(rng.range(1, o.accounts + 1));
    let parity = index as u64 % 2;
    let mut updated: Vec<u64> = (0..DOCUMENTS / 2).map(|n| 2 * n + parity).collect();
    for i in (1..updated.len()).rev() {
        updated.swap(i, rng.range(0, i as u64 + 1) as usize);
    }
    let mut updated = updated.into_iter();
    kinds
        .into_iter()
        .map(|kind| match kind {
            Kind::Transfer => {
                let (from, to) = (someone(rng), someone(rng));
                call(
                    d.token,
                    "transfer",
                    from,
                    transfer_input(to, rng.range(1, 1000)),
                )
            }
            Kind::Compute => {
                let mut input = (rng.range(50, 400) as u32).to_le_bytes().to_vec();
                input.extend_from_slice(&rng.next_u64().to_le_bytes());
                call(d.compute, "hash_chain", someone(rng), input)
            }
            Kind::BlobWrite => {
                // Distinct documents: `run` caps the writes at `DOCUMENTS / 2`.
                let mut input = document(updated.next().unwrap_or(parity));
                let len = rng.range(1024, 6144) as usize;
                input.extend(document_data(len, rng.range(0, 4)));
                call(d.registry, "update", someone(rng), input)
            }
            Kind::BlobRead => {
                let mut input = document(2 * rng.range(0, DOCUMENTS / 2) + 1 - parity);
                input.extend_from_slice(&(rng.range(0, 1024) as u32).to_le_bytes());
                input.extend_from_slice(&256u32.to_le_bytes());
                call(d.registry, "read", someone(rng), input)
            }
            Kind::Call => {
                // [callee 32][entry length u8][entry][the callee's input]
                let kv = d.kv[rng.range(0, d.kv.len() as u64) as usize];
                let (entry, inner) = if rng.range(0, 2) == 0 {
                    ("transfer", transfer_input(someone(rng), rng.range(1, 100)))
                } else {
                    ("balance_of", someone(rng).to_vec())
                };
                let mut input = d.token.as_bytes().to_vec();
                input.push(entry.len() as u8);
                input.extend_from_slice(entry.as_bytes());
                input.extend(inner);
                call(kv, "call", someone(rng), input)
            }
        })
        .collect()
}

/// The in-memory side: today's block execution on a block state in memory, no base and no
/// commit; blocks run one after the other on the same state (each sees the last one's writes
/// and blobs).
struct InMemory {
    blocks: BlockExecutor,
    exec: Arc<TieredExecutor>,
    contracts: Arc<dyn Contracts>,
    state: Arc<BlockState>,
    mode: Mode,
    /// The last block's height (the node's, block for block).
    height: std::sync::atomic::AtomicU64,
}

impl InMemory {
    /// Executes `txs`; returns the wall time and the receipts.
    fn execute(&self, txs: &Arc<[Transaction]>) -> Result<(Duration, Vec<Receipt>), Error> {
        let t = Instant::now();
        let height = 1 + (self.height).fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let done = block::execute_block(
            &self.blocks,
            &self.exec,
            &self.contracts,
            &self.state,
            height,
            txs,
            self.mode,
        )?;
        Ok((t.elapsed(), done.receipts))
    }
}

/// What the node's side of one block measured.
struct NodeBlock {
    wall: Duration,
    outcome: BlockOutcome,
}

fn run_node(node: &mut Node, txs: &Arc<[Transaction]>) -> Result<NodeBlock, Error> {
    let t = Instant::now();
    let outcome = node.execute_block(txs.clone())?;
    Ok(NodeBlock {
        wall: t.elapsed(),
        outcome,
    })
}

/// Whether every contract is on the hot tier of both executors.
fn all_hot(node: &Node, memory: &InMemory, d: &Deployed) -> bool {
    d.modules.values().all(|m| {
        node.executor().current_tier(m) == Some(Tier::Hot)
            && memory.exec.current_tier(m) == Some(Tier::Hot)
    })
}

/// Runs the benchmark on the embedded contracts `files`.
///
/// # Errors
/// A contract is missing or rejected, or the node or an engine fails.
pub fn run(files: &[CorpusFile], o: &Options) -> Result<Report, Error> {
    let threads = o.threads.max(1);
    if o.blob_writes as u64 > DOCUMENTS / 2 {
        return Err(format!("at most {} blob writes per block", DOCUMENTS / 2).into());
    }
    let mode = Mode::Optimistic { threads };
    let dir = tempfile::tempdir()?;
    let config = || NodeConfig {
        mode,
        ..NodeConfig::default()
    };
    let mut node = synor_host_wasmtime::open_node(dir.path(), config())?;
    let d = deploy(&mut node, files, o.kv_contracts)?;
    // Both sides tier up by the node's policy, from cold, on the same blocks.
    let memory = InMemory {
        blocks: BlockExecutor::new(),
        exec: Arc::new(TieredExecutor::new(
            engines(&Limits::default(), None)?,
            TierMode::Tiered(TierPolicy::DEFAULT),
            DEFAULT_CACHE_BYTES,
        )),
        contracts: d.modules.clone(),
        state: Arc::new(BlockState::new([])),
        mode,
        height: Default::default(),
    };
    let mut rng = Rng::new(o.seed);
    let setup = genesis(&d, o.accounts);
    let blocks: Vec<Arc<[Transaction]>> = (0..o.warmup + o.blocks)
        .map(|i| block(&d, o, &mut rng, i).into())
        .collect();
    let steps = setup.len() + blocks.len() + 4;
    let bar = progress(steps as u64, "node", o.progress);
    // Receipts are compared after every block; state digests (a full read of both states,
    // which would leave one of them in the processor's caches) after genesis and at the end.
    let mut receipts_identical = true;
    for txs in &setup {
        let out = node.execute_block(txs.as_slice())?;
        if let Some(trap) = out.receipts.iter().find_map(|r| r.trap.as_ref()) {
            return Err(format!("a genesis transaction failed: {trap}").into());
        }
        let (_, receipts) = memory.execute(&txs.clone().into())?;
        receipts_identical &= out.receipts == receipts;
        bar.inc(1);
    }
    let mut digests_equal = node.state_digest()? == memory.state.digest();
    let mut timed = Vec::new();
    let (mut hot, mut cache_before) = (false, node.cache_stats());
    // Tier counters after genesis, and of each block after it.
    let mut tiering_before = [node.tiering(), memory.exec.stats()];
    let promotions_before = tiering_before.map(|t| t.promotions);
    let mut tiers_by_block = [Vec::new(), Vec::new()];
    for (i, txs) in blocks.iter().enumerate() {
        if i == o.warmup {
            node.executor().wait_idle();
            memory.exec.wait_idle();
            hot = all_hot(&node, &memory, &d);
            cache_before = node.cache_stats();
        }
        let (n, (mem_time, receipts)) = pair(
            i % 2 == 0,
            || run_node(&mut node, txs),
            || memory.execute(txs),
        )?;
        receipts_identical &= n.outcome.receipts == receipts;
        if i >= o.warmup {
            timed.push((n, mem_time));
        }
        let tiering = [node.tiering(), memory.exec.stats()];
        for (side, points) in tiers_by_block.iter_mut().enumerate() {
            let (now, before) = (&tiering[side], &tiering_before[side]);
            points.push(TierPoint {
                at: (i + 1) as f64,
                calls: std::array::from_fn(|t| now.calls[t].saturating_sub(before.calls[t])),
                promotions: now.promotions.saturating_sub(promotions_before[side]),
            });
        }
        tiering_before = tiering;
        bar.inc(1);
    }
    // Promotions after the timed blocks began would have run them on slower tiers.
    hot &= all_hot(&node, &memory, &d);
    let cache_after = node.cache_stats();
    let digest = node.state_digest()?;
    digests_equal &= digest == memory.state.digest();
    drop(node);
    let t = Instant::now();
    let node = synor_host_wasmtime::open_node(dir.path(), config())?;
    let restart_ms = t.elapsed().as_secs_f64() * 1e3;
    let restart_digest_equal = node.state_digest()? == digest;
    drop(node);
    bar.inc(1);

    // The hot-state cache against an LRU of the same budget on the same trace.
    let trace = cache::zipf_trace(
        o.trace_keys,
        o.trace_reads,
        0.9,
        o.seed,
        o.trace_scan_fraction,
    );
    let key_set = o.trace_keys as u64 * cache::entry_weight(TRACE_KEY_LEN, TRACE_VALUE_LEN);
    let budget = key_set * o.trace_budget_percent / 100;
    let rates = cache::hit_rates(&trace, budget);
    drop(trace);
    bar.inc(1);

    let (checkpoint, revert) = journal_costs(o, &bar)?;
    bar.finish_and_clear();

    let size = blocks.first().map_or(0, |b| b.len());
    let ms = |f: &dyn Fn(&(NodeBlock, Duration)) -> Duration| {
        median(timed.iter().map(|b| f(b).as_secs_f64() * 1e3).collect())
    };
    let block_ms = ms(&|(n, _)| n.wall);
    let in_memory_ms = ms(&|(_, m)| *m);
    let ratios = quartiles(
        timed
            .iter()
            .map(|(n, m)| m.as_secs_f64() / n.wall.as_secs_f64().max(1e-12))
            .collect(),
    );
    let execute_ratio = median(
        timed
            .iter()
            .map(|(n, m)| m.as_secs_f64() / n.outcome.execute_time.as_secs_f64().max(1e-12))
            .collect(),
    );
    let executions: usize = timed.iter().map(|(n, _)| n.outcome.executions).sum();
    let failed: usize = timed
        .iter()
        .map(|(n, _)| {
            n.outcome
                .receipts
                .iter()
                .filter(|r| r.trap.is_some())
                .count()
        })
        .sum();
    let lookups = (cache_after.hits + cache_after.misses)
        .saturating_sub(cache_before.hits + cache_before.misses);
    let tps = |ms: f64| size as f64 / (ms / 1e3).max(1e-12);
    Ok(Report {
        block_size: size,
        blocks: timed.len(),
        warmup_blocks: o.warmup,
        threads,
        accounts: o.accounts,
        tx_per_s: tps(block_ms),
        in_memory_tx_per_s: tps(in_memory_ms),
        over_in_memory: ratios[1],
        over_in_memory_q1: ratios[0],
        over_in_memory_q3: ratios[2],
        execute_over_in_memory: execute_ratio,
        block_ms_p50: block_ms,
        execute_ms_p50: ms(&|(n, _)| n.outcome.execute_time),
        commit_ms_p50: ms(&|(n, _)| n.outcome.commit_time),
        other_ms_p50: ms(&|(n, _)| {
            n.wall
                .saturating_sub(n.outcome.execute_time + n.outcome.commit_time)
        }),
        in_memory_ms_p50: in_memory_ms,
        executions_per_tx: executions as f64 / (size * timed.len()).max(1) as f64,
        failed_per_block: failed as f64 / timed.len().max(1) as f64,
        receipts_identical,
        state_digest_equal: digests_equal,
        restart_digest_equal,
        restart_ms,
        all_hot: hot,
        cache_hit_rate: (cache_after.hits - cache_before.hits) as f64 / lookups.max(1) as f64,
        cache_lookups: lookups,
        cache_hit_rate_trace: rates.cache,
        lru_hit_rate: rates.lru,
        trace_keys: o.trace_keys,
        trace_reads: rates.reads,
        trace_budget_bytes: budget,
        trace_scan_fraction: o.trace_scan_fraction,
        checkpoint_ns_1k: checkpoint[0],
        checkpoint_ns_1m: checkpoint[1],
        revert_ns_per_change: revert[1],
        revert_ns_per_change_1k: revert[0],
        block_tx_per_s: timed
            .iter()
            .map(|(n, _)| size as f64 / n.wall.as_secs_f64().max(1e-12))
            .collect(),
        in_memory_block_tx_per_s: timed
            .iter()
            .map(|(_, m)| size as f64 / m.as_secs_f64().max(1e-12))
            .collect(),
        tiers_by_block,
    })
}

/// Adds what the benchmark measured to `out`: the throughput of each timed block on the node
/// and in memory, and both sides' tiers over every block after genesis.
///
/// # Errors
/// A chart could not be drawn.
pub fn report(r: &Report, out: &mut crate::report::Report) -> Result<(), Error> {
    out.fact(
        "workload",
        format!(
            "{} blocks of {} transactions ({} untimed first), {} accounts, {} threads",
            r.blocks, r.block_size, r.warmup_blocks, r.accounts, r.threads
        ),
    );
    out.throughput(
        &format!(
            "The same blocks on a node (redb state, hot-state cache, commit) and executed in \
             memory with no commit, optimistically on {} threads, each pair run next to each \
             other, after {} untimed blocks. Node over in memory: {:.2} (median of the blocks' \
             ratios).",
            r.threads, r.warmup_blocks, r.over_in_memory
        ),
        &[
            Series {
                name: "node (execution and commit)".to_string(),
                first: r.warmup_blocks as u64 + 1,
                values: r.block_tx_per_s.clone(),
            },
            Series {
                name: "in memory (no commit)".to_string(),
                first: r.warmup_blocks as u64 + 1,
                values: r.in_memory_block_tx_per_s.clone(),
            },
        ],
    )?;
    let [node, memory] = &r.tiers_by_block;
    out.tiers(
        &format!(
            "Calls each tier served in each block after genesis (the first {} untimed), on \
             the node and on the in-memory side, both tiering by the node's policy from cold.",
            r.warmup_blocks
        ),
        "block after genesis",
        &[
            TierRun {
                name: "node".to_string(),
                points: node.clone(),
            },
            TierRun {
                name: "in memory".to_string(),
                points: memory.clone(),
            },
        ],
    )
}

/// A 68-byte key, as a token balance's (contract address, tag, account).
fn journal_key(i: u64) -> Vec<u8> {
    let mut k = vec![0x5a; 32];
    k.extend_from_slice(b"bal:");
    k.extend_from_slice(&account(i));
    k
}

/// Checkpoint-and-commit and revert-per-change times, in ns, in journals holding each of
/// [`JOURNAL_KEYS`] written keys; samples of the two journals alternate.
fn journal_costs(o: &Options, bar: &indicatif::ProgressBar) -> Result<([f64; 2], [f64; 2]), Error> {
    const BATCH: u32 = 10_000;
    let mut journals = JOURNAL_KEYS.map(|n| {
        let mut j = Journal::new();
        for i in 0..n as u64 {
            j.put(&journal_key(i), i.to_le_bytes().to_vec());
        }
        j
    });
    let mut checkpoint = [Vec::new(), Vec::new()];
    for _ in 0..o.journal_reps.max(1) {
        for (j, samples) in journals.iter_mut().zip(&mut checkpoint) {
            let t = Instant::now();
            for _ in 0..BATCH {
                let j = std::hint::black_box(&mut *j);
                let cp = j.checkpoint();
                j.commit(cp)?;
            }
            samples.push(t.elapsed().as_nanos() as f64 / f64::from(BATCH));
        }
    }
    bar.inc(1);
    let changes = o.revert_changes.max(2);
    let mut rng = Rng::new(o.seed ^ 0x006a_6f75_726e_616c);
    let mut revert = [Vec::new(), Vec::new()];
    for _ in 0..o.journal_reps.max(1) {
        for ((j, samples), n) in journals.iter_mut().zip(&mut revert).zip(JOURNAL_KEYS) {
            let cp = j.checkpoint();
            for c in 0..changes {
                // Half overwrite keys the journal holds, half write new ones.
                let i = if c % 2 == 0 {
                    rng.range(0, n as u64)
                } else {
                    n as u64 + rng.range(0, n as u64)
                };
                j.put(&journal_key(i), vec![0xee; 8]);
            }
            let t = Instant::now();
            j.revert(cp)?;
            samples.push(t.elapsed().as_nanos() as f64 / changes as f64);
            if j.len() != n {
                return Err("a revert left the journal with another size".into());
            }
        }
    }
    bar.inc(1);
    Ok((checkpoint.map(median), revert.map(median)))
}

/// The report as a few lines for a terminal.
pub fn table(r: &Report) -> String {
    let yes = |b: bool| if b { "yes" } else { "NO" };
    format!(
        "synor bench node: {} timed blocks of {} transactions ({} accounts), optimistic on {} \
         threads, after {} warm-up blocks\n\
         \n  node (redb, commit)          {:>10.0} tx/s   block {:.1} ms: execute {:.1}, commit \
         {:.1}, other {:.1}\
         \n  in memory, no commit         {:>10.0} tx/s   block {:.1} ms\
         \n  node / in memory             {:>10.3}        (blocks q1-q3 {:.3}-{:.3}; execution \
         alone {:.3})\
         \n  executions per tx            {:>10.3}        failed per block {:.1}\
         \n  receipts identical           {:>10}        state digests equal {}, all contracts \
         hot {}\
         \n  restart digest equal         {:>10}        reopened in {:.1} ms\
         \n  hot-state cache (node)       {:>9.1} %        {} lookups in the timed blocks\
         \n  Zipf(0.9) trace, same budget     cache {:.1} % vs LRU {:.1} %   ({} keys, {} reads, \
         {} bytes, {:.0} % scans)\
         \n  checkpoint + commit          {:>8.1} ns (10^3 keys)   {:.1} ns (10^6 keys)\
         \n  revert per change            {:>8.1} ns (10^6 keys)   {:.1} ns (10^3 keys)\n",
        r.blocks,
        r.block_size,
        r.accounts,
        r.threads,
        r.warmup_blocks,
        r.tx_per_s,
        r.block_ms_p50,
        r.execute_ms_p50,
        r.commit_ms_p50,
        r.other_ms_p50,
        r.in_memory_tx_per_s,
        r.in_memory_ms_p50,
        r.over_in_memory,
        r.over_in_memory_q1,
        r.over_in_memory_q3,
        r.execute_over_in_memory,
        r.executions_per_tx,
        r.failed_per_block,
        yes(r.receipts_identical),
        yes(r.state_digest_equal),
        yes(r.all_hot),
        yes(r.restart_digest_equal),
        r.restart_ms,
        100.0 * r.cache_hit_rate,
        r.cache_lookups,
        100.0 * r.cache_hit_rate_trace,
        100.0 * r.lru_hit_rate,
        r.trace_keys,
        r.trace_reads,
        r.trace_budget_bytes,
        100.0 * r.trace_scan_fraction,
        r.checkpoint_ns_1k,
        r.checkpoint_ns_1m,
        r.revert_ns_per_change,
        r.revert_ns_per_change_1k,
    )
}

#[cfg(test)]
mod tests {
    use super::{Options, run};

    /// A small run: the node and the in-memory execution agree on every receipt and on the
    /// state, every transaction of the mix succeeds, and the node reopens with its state.
    #[test]
    fn node_and_in_memory_agree_on_a_small_mix() {
        let (files, _) = crate::corpus::embedded();
        let options = Options {
            accounts: 40,
            transfers: 120,
            compute: 4,
            blob_writes: 4,
            blob_reads: 6,
            calls: 10,
            kv_contracts: 2,
            warmup: 1,
            blocks: 2,
            trace_keys: 100,
            trace_reads: 2_000,
            journal_reps: 1,
            revert_changes: 10,
            progress: false,
            ..Options::default()
        };
        let r = run(&files, &options).unwrap();
        assert_eq!((r.block_size, r.blocks), (144, 2));
        assert!(r.receipts_identical);
        assert!(r.state_digest_equal);
        assert!(r.restart_digest_equal);
        assert_eq!(r.failed_per_block, 0.0);
        assert!(r.executions_per_tx >= 1.0);
        assert!(r.cache_lookups > 0);
        // What --report charts: each timed block, each block after genesis.
        assert_eq!(r.block_tx_per_s.len(), 2);
        assert_eq!(r.in_memory_block_tx_per_s.len(), 2);
        for side in &r.tiers_by_block {
            assert_eq!(side.len(), options.warmup + options.blocks);
            let calls: u64 = side.iter().flat_map(|p| p.calls).sum();
            assert!(calls >= (144 * side.len()) as u64, "{side:?}");
        }
        let mut out = crate::report::Report::new("bench node");
        super::report(&r, &mut out).unwrap();
        use crate::report::Kind;
        assert_eq!(out.kinds(), [Kind::Throughput, Kind::Tiers]);
    }
}
