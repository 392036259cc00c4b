//! The demonstration `synor` runs without arguments: a node in a temporary directory, the
//! project's contracts deployed through its code store, blocks of a mixed workload executed in
//! parallel and committed, the same blocks on a sequential node for comparison, a restart, and
//! a short summary.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use synor_core::block::{Address, Mode, Transaction};
use synor_core::digest::Digest;
use synor_host_std::node::{Node, NodeConfig};

use crate::bench::progress;
use crate::corpus::CorpusFile;
use crate::report::{Series, StoreBytes, TierPoint, TierRun};
use crate::workload::{Rng, account, call, transfer_input};

/// Error of the demonstration.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The shape of the demonstration.
#[derive(Debug, Clone)]
pub struct Options {
    /// Token accounts.
    pub accounts: u64,
    /// Blocks after the genesis blocks.
    pub blocks: usize,
    /// Transactions per block.
    pub block_size: usize,
    /// Worker threads of the parallel node.
    pub threads: usize,
    /// Workload seed.
    pub seed: u64,
    /// Show progress on stderr.
    pub progress: bool,
    /// Accounts holding the CosmWasm token (cw20-base).
    pub cw_accounts: usize,
    /// Blocks of cw20 transfers.
    pub cw_blocks: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            accounts: 2_000,
            blocks: 8,
            block_size: 4_000,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            seed: 7,
            progress: true,
            cw_accounts: 500,
            cw_blocks: 3,
        }
    }
}

/// The contracts of the workload on one node.
#[derive(Debug, Clone, Copy)]
pub struct Contracts {
    /// Two token contracts of one code.
    pub tokens: [Address; 2],
    /// A registry keeping its documents in blobs.
    pub registry: Address,
    /// A compute-heavy contract.
    pub compute: Address,
    /// Two key/value contracts: the first calls the second.
    pub kv: [Address; 2],
}

/// cw20-base 2.0.0, a CosmWasm token contract nobody on the team wrote (built from its
/// crates.io sources; see `tests/contracts/cosmwasm/README.md`).
pub const CW20_BASE: &[u8] =
    include_bytes!("../../../tests/contracts/cosmwasm/cw20-base-2.0.0.wasm");

/// The key/value contract of the project's tests (writes, range scans, calls to other
/// contracts), in WebAssembly's text format.
pub const KV_WAT: &str = include_str!("../../../tests/contracts/wat/kv.wat");

/// Deploys the workload's contracts on `node` and funds `accounts` accounts in both tokens
/// (two genesis blocks).
///
/// # Errors
/// A contract is missing from `files` or rejected, or the node fails.
pub fn setup(node: &mut Node, files: &[CorpusFile], accounts: u64) -> Result<Contracts, Error> {
    let file = |name: &str| -> Result<&[u8], Error> {
        files
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.bytes.as_slice())
            .ok_or_else(|| format!("the contract {name} is not embedded").into())
    };
    let token = node.deploy(file("token_v1.wasm")?)?;
    let registry = node.deploy(file("registry_v1.wasm")?)?;
    let compute = node.deploy(file("compute_v1.wasm")?)?;
    let kv = node.deploy(&wat::parse_str(KV_WAT)?)?;
    let c = Contracts {
        tokens: [
            node.instantiate(&token, account(0))?,
            node.instantiate(&token, account(0))?,
        ],
        registry: node.instantiate(&registry, account(0))?,
        compute: node.instantiate(&compute, account(0))?,
        kv: [
            node.instantiate(&kv, account(0))?,
            node.instantiate(&kv, account(0))?,
        ],
    };
    let supply = (accounts + 1) * 1_000_000;
    let init = |t| call(t, "init", account(0), supply.to_le_bytes().to_vec());
    check(&node.execute_block([init(c.tokens[0]), init(c.tokens[1])])?)?;
    let fund: Vec<Transaction> = (1..=accounts)
        .flat_map(|n| c.tokens.map(|t| transfer(t, 0, n, 1_000_000)))
        .collect();
    check(&node.execute_block(fund.as_slice())?)?;
    Ok(c)
}

fn check(outcome: &synor_host_std::BlockOutcome) -> Result<(), Error> {
    match outcome.receipts.iter().find_map(|r| r.trap.as_ref()) {
        Some(trap) => Err(format!("a genesis transaction failed: {trap}").into()),
        None => Ok(()),
    }
}

fn transfer(token: Address, from: u64, to: u64, amount: u64) -> Transaction {
    call(
        token,
        "transfer",
        account(from),
        transfer_input(account(to), amount),
    )
}

/// A block of `size` transactions: 91 % token transfers between random accounts, 3 % compute
/// (hash chains), 3 % registry documents written (new versions of a few documents, stored as
/// blobs) and read, 3 % contract-to-contract calls (one key/value contract writing into the
/// other) and range scans.
pub fn block(c: &Contracts, rng: &mut Rng, accounts: u64, size: usize) -> Vec<Transaction> {
    (0..size)
        .map(|_| match rng.range(0, 100) {
            91..94 => {
                let key = format!("k{:03}", rng.range(0, 500));
                // A scan of a hundred keys is a hundred steps, each validated again when the
                // block runs optimistically: one in sixteen of these calls.
                if rng.range(0, 16) == 0 {
                    return call(c.kv[1], "scan", account(3), b"k0".to_vec());
                }
                let mut input = c.kv[1].as_bytes().to_vec();
                input.push(3);
                input.extend_from_slice(b"set");
                input.push(key.len() as u8);
                input.extend_from_slice(key.as_bytes());
                input.extend_from_slice(&rng.next_u64().to_le_bytes());
                call(c.kv[0], "call", account(3), input)
            }
            0..91 => {
                let token = c.tokens[rng.range(0, 2) as usize];
                let from = rng.range(1, accounts + 1);
                let to = rng.range(1, accounts + 1);
                transfer(token, from, to, rng.range(1, 1000))
            }
            94..97 => {
                let mut input = (rng.range(50, 400) as u32).to_le_bytes().to_vec();
                input.extend_from_slice(&rng.next_u64().to_le_bytes());
                call(
                    c.compute,
                    "hash_chain",
                    account(rng.range(1, accounts + 1)),
                    input,
                )
            }
            n => {
                let name = format!("doc{}", rng.range(0, 8));
                let mut input = vec![name.len() as u8];
                input.extend_from_slice(name.as_bytes());
                let (entry, rest): (&str, Vec<u8>) = if n == 97 {
                    let seed = rng.range(0, 4);
                    let len = rng.range(1024, 6144) as usize;
                    let data = (0..len).map(|i| (i as u64 * 31 + seed * (i as u64 / 512)) as u8);
                    // Registered the first time, a new version after (a failed registration of
                    // a name already taken is a receipt like any other).
                    (
                        if rng.range(0, 4) == 0 {
                            "register"
                        } else {
                            "update"
                        },
                        data.collect(),
                    )
                } else {
                    let mut at = (rng.range(0, 1024) as u32).to_le_bytes().to_vec();
                    at.extend_from_slice(&256u32.to_le_bytes());
                    ("read", at)
                };
                input.extend_from_slice(&rest);
                call(c.registry, entry, account(2), input)
            }
        })
        .collect()
}

/// What the demonstration measured.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Transactions executed and committed per node.
    pub transactions: usize,
    /// Blocks after genesis.
    pub blocks: usize,
    /// Threads of the parallel node.
    pub threads: usize,
    /// Throughput of the parallel node (optimistic mode), commit included.
    pub tx_per_s: f64,
    /// Throughput of the same blocks on a sequential node.
    pub tx_per_s_sequential: f64,
    /// Parallel over sequential.
    pub speedup: f64,
    /// Transactions that failed (and wrote nothing), the same on both nodes.
    pub failed: usize,
    /// Calls served by the cold, warm and hot tiers on the parallel node.
    pub tier_calls: [u64; 3],
    /// Promotions to a faster tier.
    pub promotions: u64,
    /// Hit rate of the hot-state cache.
    pub cache_hit_rate: f64,
    /// Code and blobs in the code store, bytes as stored.
    pub store_bytes: u64,
    /// The same records, each compressed alone by zstd -19.
    pub zstd19_bytes: u64,
    /// Records in the store.
    pub store_records: usize,
    /// State digest before the restart.
    pub digest: String,
    /// State digest after reopening the node from its directory.
    pub digest_after_restart: String,
    /// Both nodes committed the same receipts and state diffs, block by block (the cw20
    /// blocks included).
    pub nodes_agree: bool,
    /// The CosmWasm blocks.
    pub cosmwasm: CwSummary,
    /// Throughput of each block on the parallel node, for the report (not in the JSON).
    #[serde(skip)]
    pub block_tx_per_s: Vec<f64>,
    /// Throughput of each block on the sequential node, for the report.
    #[serde(skip)]
    pub block_tx_per_s_sequential: Vec<f64>,
    /// Calls per tier and promotions of the genesis blocks (heights 1 and 2, together), then of
    /// each block by height, on the parallel and the sequential node, for the report.
    #[serde(skip)]
    pub tiers_by_block: [Vec<TierPoint>; 2],
}

/// What the CosmWasm blocks of the demonstration measured: cw20-base instantiated in a block
/// with its accounts, then blocks of cw20 transfers, on both nodes.
#[derive(Debug, Clone, Serialize)]
pub struct CwSummary {
    /// Transfers executed and committed per node.
    pub transfers: usize,
    /// Throughput of the parallel node, commit included.
    pub tx_per_s: f64,
    /// Throughput of the sequential node.
    pub tx_per_s_sequential: f64,
    /// Transfers that failed.
    pub failed: usize,
    /// Every account's balance, queried from the contract, is what cw20's semantics give.
    pub balances_match: bool,
    /// Calls of the token served by the cold, warm and hot tiers on the parallel node.
    pub tier_calls: [u64; 3],
    /// Throughput of each cw20 block on the parallel node, for the report.
    #[serde(skip)]
    pub block_tx_per_s: Vec<f64>,
    /// The height of the first cw20 block.
    #[serde(skip)]
    pub first_height: u64,
}

/// What running the blocks on one node gave.
struct Driven {
    /// Time spent in `execute_block` (execution and commit).
    took: Duration,
    /// Each block's transactions per second.
    tx_per_s: Vec<f64>,
    /// Calls per tier and the promotions so far: of the genesis blocks together, then of each
    /// block, by height.
    tiers: Vec<TierPoint>,
    /// Each block's receipts and state diff digests.
    digests: Vec<(Digest, Digest)>,
    /// Transactions that failed.
    failed: usize,
}

/// Runs the blocks on `node`.
fn drive(
    node: &mut Node,
    blocks: &[Vec<Transaction>],
    bar: &indicatif::ProgressBar,
) -> Result<Driven, Error> {
    let mut took = Duration::ZERO;

    let mut digests = Vec::new();
    let mut failed = 0;
    let mut tx_per_s = Vec::new();
    // The genesis blocks (heights 1 and 2) as one window: the node starts cold.
    let mut before = node.tiering();
    let mut tiers = vec![TierPoint {
        at: 2.0,
        calls: before.calls,
        promotions: before.promotions,
    }];
    for (i, txs) in blocks.iter().enumerate() {
        let t = Instant::now();
        let out = node.execute_block(txs.as_slice())?;
        let block = t.elapsed();
        took += block;
        tx_per_s.push(txs.len() as f64 / block.as_secs_f64().max(1e-9));
        let now = node.tiering();
        tiers.push(TierPoint {
            at: (i + 3) as f64,
            calls: std::array::from_fn(|t| now.calls[t].saturating_sub(before.calls[t])),
            promotions: now.promotions,
        });
        before = now;

        failed += out.receipts.iter().filter(|r| r.trap.is_some()).count();
        digests.push((out.receipts_digest, out.diff_digest));
        bar.inc(1);
    }
    Ok(Driven {
        took,
        tx_per_s,
        tiers,
        digests,
        failed,
    })
}

/// Runs the demonstration in `dir` (two data directories inside it).
///
/// # Errors
/// The node fails, or a contract is missing.
pub fn run(dir: &Path, files: &[CorpusFile], options: &Options) -> Result<Summary, Error> {
    let threads = options.threads.max(2);
    let parallel = dir.join("parallel");
    let config = |mode| NodeConfig {
        mode,
        ..NodeConfig::default()
    };
    let mut node = synor_host_wasmtime::open_node(&parallel, config(Mode::Optimistic { threads }))?;
    let mut seq =
        synor_host_wasmtime::open_node(&dir.join("sequential"), config(Mode::Sequential))?;
    let c = setup(&mut node, files, options.accounts)?;
    let c_seq = setup(&mut seq, files, options.accounts)?;
    let mut rng = Rng::new(options.seed);
    let blocks: Vec<Vec<Transaction>> = (0..options.blocks)
        .map(|_| block(&c, &mut rng, options.accounts, options.block_size))
        .collect();
    // The sequential node's contracts have the same addresses (same codes, creators, order).
    debug_assert_eq!(c.tokens, c_seq.tokens);
    let bar = progress(
        2 * (blocks.len() + options.cw_blocks) as u64,
        "blocks",
        options.progress,
    );
    let par = drive(&mut node, &blocks, &bar)?;
    let seq_run = drive(&mut seq, &blocks, &bar)?;
    let cw = cosmwasm(&mut node, options)?;
    let cw_seq = cosmwasm(&mut seq, options)?;
    let before = node.tiering().calls;
    let par_cw = drive(&mut node, &cw.blocks, &bar)?;
    let after = node.tiering().calls;
    let seq_cw = drive(&mut seq, &cw_seq.blocks, &bar)?;
    let seq = seq_run;
    bar.finish_and_clear();
    let balances_match = cw.token == cw_seq.token && balances_match(&mut node, &cw)?;
    let cw_transfers = cw.transfers.len();
    let cosmwasm = CwSummary {
        transfers: cw_transfers,
        tx_per_s: cw_transfers as f64 / par_cw.took.as_secs_f64().max(1e-9),
        tx_per_s_sequential: cw_transfers as f64 / seq_cw.took.as_secs_f64().max(1e-9),
        failed: par_cw.failed,
        balances_match,
        tier_calls: [0, 1, 2].map(|t| after[t] - before[t]),
        first_height: node.height() + 1 - cw.blocks.len() as u64,
        block_tx_per_s: par_cw.tx_per_s.clone(),
    };
    let transactions = blocks.iter().map(Vec::len).sum::<usize>();
    let tiering = node.tiering();
    let cache = node.cache_stats();
    let (store_bytes, zstd19_bytes, store_records) = node.with_store(|s| {
        let stats = s.stats()?;
        let mut zstd = 0u64;
        let ids = s.ids();
        for id in &ids {
            let bytes = s.get(id)?;
            zstd += zstd::bulk::compress(&bytes, 19).map_or(bytes.len(), |c| c.len()) as u64;
        }
        Ok::<_, Error>((stats.total_bytes, zstd, ids.len()))
    })?;
    let digest = node.state_digest()?;
    drop(node);
    let node = synor_host_wasmtime::open_node(&parallel, config(Mode::Optimistic { threads }))?;
    let digest_after_restart = node.state_digest()?;
    let tps = |t: Duration| transactions as f64 / t.as_secs_f64().max(1e-9);
    Ok(Summary {
        transactions,
        blocks: blocks.len(),
        threads,
        tx_per_s: tps(par.took),
        tx_per_s_sequential: tps(seq.took),
        speedup: seq.took.as_secs_f64() / par.took.as_secs_f64().max(1e-9),
        failed: par.failed,
        tier_calls: tiering.calls,
        promotions: tiering.promotions,
        cache_hit_rate: cache.hits as f64 / (cache.hits + cache.misses).max(1) as f64,
        store_bytes,
        zstd19_bytes,
        store_records,
        digest: digest.to_string(),
        digest_after_restart: digest_after_restart.to_string(),
        nodes_agree: par.digests == seq.digests && par_cw.digests == seq_cw.digests,
        cosmwasm,
        block_tx_per_s: par.tx_per_s,
        block_tx_per_s_sequential: seq.tx_per_s,
        tiers_by_block: [par.tiers, seq.tiers],
    })
}

/// Adds what the demonstration measured to `out`: each block's throughput on both nodes, the
/// tiers that served their calls, and the code store against zstd -19.
///
/// # Errors
/// A chart could not be drawn.
pub fn report(s: &Summary, out: &mut crate::report::Report) -> Result<(), Error> {
    out.fact(
        "workload",
        format!(
            "{} blocks of {} transactions: token transfers, compute, documents kept as blobs, \
             contracts calling contracts",
            s.blocks,
            s.transactions / s.blocks.max(1)
        ),
    );
    out.throughput(
        &format!(
            "The same blocks on a parallel node (optimistic, {} threads) and on a sequential \
             node, execution and commit (redb) included; {:.2}× overall. Both nodes committed \
             the same receipts and state diffs: {}. Heights 1 and 2 are the genesis blocks; \
             from height {}, blocks of cw20-base transfers (a CosmWasm contract).",
            s.threads,
            s.speedup,
            if s.nodes_agree { "yes" } else { "NO" },
            s.cosmwasm.first_height,
        ),
        &[
            Series {
                name: format!("parallel node ({} threads)", s.threads),
                first: 3,
                values: s.block_tx_per_s.clone(),
            },
            Series {
                name: "sequential node".to_string(),
                first: 3,
                values: s.block_tx_per_s_sequential.clone(),
            },
            Series {
                name: format!("cw20-base transfers, parallel node ({} threads)", s.threads),
                first: s.cosmwasm.first_height,
                values: s.cosmwasm.block_tx_per_s.clone(),
            },
        ],
    )?;
    let [par, seq] = &s.tiers_by_block;
    out.tiers(
        "Calls each tier served in each block, each node tiering its contracts from cold by \
         use (promotions compile on a background thread while blocks run); heights 1 and 2 \
         are the genesis blocks, counted together.",
        "block",
        &[
            TierRun {
                name: "parallel node".to_string(),
                points: par.clone(),
            },
            TierRun {
                name: "sequential node".to_string(),
                points: seq.clone(),
            },
        ],
    )?;
    out.store(&StoreBytes {
        corpus: "the demonstration's code and blobs".to_string(),
        files: s.store_records as u64,
        raw: None,
        synor: s.store_bytes,
        peers: vec![("zstd -19, each record alone".to_string(), s.zstd19_bytes)],
        upgrades: None,
    })
}

/// cw20-base on a node: its address, and the transfers of the demonstration.
struct Cw20 {
    token: Address,
    transfers: Vec<crate::bench::e2e::Transfer>,
    blocks: Vec<Vec<Transaction>>,
    accounts: usize,
}

/// Deploys cw20-base on `node` and instantiates it in a block with `options.cw_accounts`
/// accounts, and makes the blocks of transfers to run.
fn cosmwasm(node: &mut Node, options: &Options) -> Result<Cw20, Error> {
    use crate::bench::{e2e, e2e_synor, e2e_synor::GAS};
    let code = node.deploy(CW20_BASE)?;
    let init = Transaction {
        contract: code,
        entry: "instantiate".into(),
        caller: e2e::account_seed(0),
        input: e2e::instantiate_msg(options.cw_accounts),
        gas: GAS,
        access: None,
    };
    let out = node.execute_block([init])?;
    check(&out)?;
    let token = out.receipts[0].created[0].address;
    let per_block = (options.block_size / 4).max(1);
    let transfers = e2e::transfers(
        options.cw_blocks * per_block,
        options.cw_accounts,
        options.seed,
    );
    let blocks = e2e::blocks(&transfers, per_block)
        .iter()
        .map(|b| b.iter().map(|t| e2e_synor::transfer(token, t)).collect())
        .collect();
    Ok(Cw20 {
        token,
        transfers,
        blocks,
        accounts: options.cw_accounts,
    })
}

/// Whether every account's balance, queried from the contract, is what the transfers leave.
fn balances_match(node: &mut Node, cw: &Cw20) -> Result<bool, Error> {
    use crate::bench::{e2e, e2e_synor::GAS};
    let expected = e2e::expected_balances(cw.accounts, &cw.transfers);
    for (i, want) in expected.iter().enumerate() {
        let out = node.query_cosmwasm(&cw.token, &e2e::balance_query(i), GAS)?;
        let answer = out
            .result
            .map_err(|e| format!("a cw20 balance query failed: {e}"))?;
        if e2e::parse_balance(&answer)? != *want {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The summary as a few lines for a terminal.
pub fn text(s: &Summary) -> String {
    let kib = |b: u64| b as f64 / 1024.0;
    format!(
        "synor: a node ran {} blocks of {} transactions (token transfers on two contracts \
         sharing one code, compute, documents kept as blobs, contracts calling contracts)\n\
         \n  parallel node (optimistic, {} threads)  {:>9.0} tx/s, execution and commit\
         \n  sequential node                         {:>9.0} tx/s\
         \n  speedup                                 {:>9.2}x   (both nodes committed the same \
         receipts and state diffs: {})\
         \n  failed transactions                     {:>9}   (overdrafts, names taken: \
         receipts, nothing written)\
         \n  calls per tier                          cold {} / warm {} / hot {}, {} promotions\
         \n  CosmWasm (cw20-base, not ours)          {:>9.0} tx/s on {} transfers ({:.0} tx/s \
         sequential); balances as cw20 says: {}\
         \n  hot-state cache hit rate                {:>9.1} %\
         \n  code store                              {} records in {:.0} KiB; zstd -19 alone: \
         {:.0} KiB (the store is {:.2}x its size)\
         \n  state digest                            {}\
         \n  after restart                           {} ({})\n",
        s.blocks,
        s.transactions / s.blocks.max(1),
        s.threads,
        s.tx_per_s,
        s.tx_per_s_sequential,
        s.speedup,
        if s.nodes_agree { "yes" } else { "NO" },
        s.failed,
        s.tier_calls[0],
        s.tier_calls[1],
        s.tier_calls[2],
        s.promotions,
        s.cosmwasm.tx_per_s,
        s.cosmwasm.transfers,
        s.cosmwasm.tx_per_s_sequential,
        if s.cosmwasm.balances_match {
            "yes"
        } else {
            "NO"
        },
        100.0 * s.cache_hit_rate,
        s.store_records,
        kib(s.store_bytes),
        kib(s.zstd19_bytes),
        s.store_bytes as f64 / s.zstd19_bytes.max(1) as f64,
        s.digest,
        s.digest_after_restart,
        if s.digest == s.digest_after_restart {
            "equal"
        } else {
            "DIFFERENT"
        },
    )
}
