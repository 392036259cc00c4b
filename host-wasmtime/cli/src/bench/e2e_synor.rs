//! The synor side of `synor bench e2e`: the workload of [`super::e2e`] through a whole node
//! (deployment, instantiation in a block, blocks of cw20 transfers executed and committed to
//! disk), as a chain runs it.

use std::time::Instant;

use synor_core::block::{Address, Mode, Transaction};
use synor_core::cosmwasm::tx::{CwChain, CwInput};
use synor_core::tier::Tier;
use synor_host_std::node::NodeConfig;

use super::e2e::{self, Transfer};

/// Gas of each transaction and query.
pub const GAS: u64 = 10_000_000_000;

/// What a run of the workload on a node measured.
#[derive(Debug, Clone)]
pub struct SynorRun {
    /// Milliseconds from the contract's bytes to its instantiation committed (deployment,
    /// instrumentation, the first call, and the block's commit).
    pub deploy_ms: f64,
    /// Milliseconds from then until the contract runs on the hot tier: balance queries,
    /// counted like any call, promote it, and it is compiled in the background (cosmwasm-vm
    /// compiles at deployment, within its `deploy_ms`).
    pub tier_up_ms: f64,
    /// Seconds of all the transfer blocks, each executed and committed (the last one synced).
    pub exec_seconds: f64,
    /// Transfers run.
    pub transfers: usize,
    /// Transfers that failed.
    pub failed: usize,
    /// Transactions per second of each block (execution and commit, as the node pipelines
    /// them).
    pub block_tps: Vec<f64>,
    /// Every account's balance after the run, queried from the contract.
    pub balances: Vec<u128>,
    /// Calls served by each tier (cold, warm, hot).
    pub tier_calls: [u64; 3],
}

impl SynorRun {
    /// Transfers per second over the run.
    pub fn tps(&self) -> f64 {
        self.transfers as f64 / self.exec_seconds.max(f64::MIN_POSITIVE)
    }
}

/// The chain the workload's contract sees: the same id and block times as the peer's.
fn chain() -> CwChain {
    CwChain {
        chain_id: e2e::CHAIN_ID.into(),
        genesis_time_ns: e2e::block_time_nanos(0),
        block_interval_ns: e2e::BLOCK_SECONDS * 1_000_000_000,
        ..CwChain::default()
    }
}

/// The transaction of transfer `t` on the token at `token`.
pub fn transfer(token: Address, t: &Transfer) -> Transaction {
    Transaction {
        contract: token,
        entry: "execute".into(),
        caller: e2e::account_seed(t.from),
        input: e2e::transfer_msg(t),
        gas: GAS,
        access: None,
    }
}

/// Runs `blocks` of transfers on a new node in a temporary directory, executing optimistically
/// on `threads` workers (one: sequentially), after instantiating `wasm` (cw20-base) with
/// `accounts` accounts.
///
/// # Errors
/// What failed, in a line.
pub fn run(
    wasm: &[u8],
    accounts: usize,
    blocks: &[Vec<Transfer>],
    threads: usize,
) -> Result<SynorRun, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let mode = match threads {
        0 | 1 => Mode::Sequential,
        threads => Mode::Optimistic { threads },
    };
    let config = NodeConfig {
        mode,
        cosmwasm: chain(),
        ..NodeConfig::default()
    };
    let mut node =
        synor_host_wasmtime::open_node(dir.path(), config).map_err(|e| format!("node: {e}"))?;
    let start = Instant::now();
    let code = node.deploy(wasm).map_err(|e| format!("deploy: {e}"))?;
    let init = Transaction {
        contract: code,
        entry: "instantiate".into(),
        caller: e2e::account_seed(0),
        input: CwInput::new(e2e::instantiate_msg(accounts)).encode()?,
        gas: GAS,
        access: None,
    };
    let out = node
        .execute_block([init])
        .map_err(|e| format!("instantiate: {e}"))?;
    node.sync().map_err(|e| format!("instantiate: {e}"))?;
    let deploy_ms = start.elapsed().as_secs_f64() * 1e3;
    let receipt = &out.receipts[0];
    if let Some(trap) = &receipt.trap {
        return Err(format!("instantiate failed: {trap}"));
    }
    let token = receipt
        .created
        .first()
        .ok_or("instantiate made no contract")?
        .address;
    // Up the tiers before the measured blocks, as a chain's steady state has it: balance
    // queries count as calls, and their promotions compile in the background.
    let start = Instant::now();
    for round in 0.. {
        if node.executor().tier_of(&code) == Some(Tier::Hot) {
            break;
        }
        if round == 50 {
            return Err(
                "the contract did not reach the hot tier after 50 rounds of queries".into(),
            );
        }
        for i in 0..accounts.min(100) {
            node.query_cosmwasm(&token, &e2e::balance_query(i), GAS)
                .map_err(|e| format!("balance query: {e}"))?;
        }
        node.executor().wait_idle();
    }
    let tier_up_ms = start.elapsed().as_secs_f64() * 1e3;
    let txs: Vec<Vec<Transaction>> = blocks
        .iter()
        .map(|b| b.iter().map(|t| transfer(token, t)).collect())
        .collect();
    let before = node.tiering().calls;
    let (mut failed, mut transfers, mut block_tps) = (0, 0, Vec::new());
    let start = Instant::now();
    for block in txs {
        let n = block.len();
        let t = Instant::now();
        let out = node
            .execute_block(block)
            .map_err(|e| format!("block: {e}"))?;
        block_tps.push(n as f64 / t.elapsed().as_secs_f64().max(f64::MIN_POSITIVE));
        failed += out.receipts.iter().filter(|r| r.trap.is_some()).count();
        transfers += n;
    }
    node.sync().map_err(|e| format!("commit: {e}"))?;
    let exec_seconds = start.elapsed().as_secs_f64();
    let after = node.tiering().calls;
    let tier_calls = [0, 1, 2].map(|t| after[t] - before[t]);
    let balances = (0..accounts)
        .map(|i| {
            let out = node
                .query_cosmwasm(&token, &e2e::balance_query(i), GAS)
                .map_err(|e| format!("balance query: {e}"))?;
            let answer = out.result.map_err(|e| format!("balance query: {e}"))?;
            e2e::parse_balance(&answer)
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(SynorRun {
        deploy_ms,
        tier_up_ms,
        exec_seconds,
        transfers,
        failed,
        block_tps,
        balances,
        tier_calls,
    })
}

/// `synor bench e2e`: the workload through a node on two threads and on one, and through
/// cosmwasm-vm when this build has it (the `peer-cosmwasm` feature), in the same run; the
/// figures as JSON (see the fields' names), with `balances_identical` comparing every
/// account's balance between synor and cosmwasm-vm.
///
/// # Errors
/// A run failed; the message says which.
pub fn compare(
    wasm: &[u8],
    blocks: &[Vec<Transfer>],
    progress: bool,
) -> Result<serde_json::Value, String> {
    let say = |what: &str| {
        if progress {
            eprintln!("synor bench e2e: {what}");
        }
    };
    let expected = e2e::expected_balances(e2e::ACCOUNTS, blocks.iter().flatten());
    say("synor, 2 threads");
    let two = run(wasm, e2e::ACCOUNTS, blocks, 2)?;
    say("synor, 1 thread");
    let one = run(wasm, e2e::ACCOUNTS, blocks, 1)?;
    let peer = peer(wasm, blocks, &say)?;
    let mut v = serde_json::json!({
        "accounts": e2e::ACCOUNTS,
        "transfers": two.transfers,
        "blocks": blocks.len(),
        "tps_synor": two.tps(),
        "tps_synor_1t": one.tps(),
        "deploy_ms": two.deploy_ms,
        "tier_up_ms": two.tier_up_ms,
        "failed_synor": two.failed + one.failed,
        "synor_balances_as_cw20_says": two.balances == expected && one.balances == expected,
        "tier_calls_synor": two.tier_calls,
        "blocks_synor": two.block_tps,
        "blocks_synor_1t": one.block_tps,
    });
    match peer {
        Some(p) => {
            v["tps_cosmwasm_vm"] = p.tps.into();
            v["ratio"] = (two.tps() / p.tps).into();
            v["ratio_1t"] = (one.tps() / p.tps).into();
            v["balances_identical"] =
                (p.balances == two.balances && p.balances == one.balances).into();
            v["deploy_ms_cosmwasm_vm"] = p.deploy_ms.into();
            v["failed_cosmwasm_vm"] = p.failed.into();
        }
        None => {
            v["cosmwasm_vm"] =
                "not in this build: cargo run --release --features peer-cosmwasm -- bench e2e"
                    .into();
        }
    }
    Ok(v)
}

/// What the peer measured, reduced to what [`compare`] reports.
struct Peer {
    tps: f64,
    deploy_ms: f64,
    failed: usize,
    balances: Vec<u128>,
}

#[cfg(feature = "peer-cosmwasm")]
fn peer(wasm: &[u8], blocks: &[Vec<Transfer>], say: &dyn Fn(&str)) -> Result<Option<Peer>, String> {
    say("cosmwasm-vm, 1 thread");
    let p = super::peer_cosmwasm::run(wasm, blocks)?;
    Ok(Some(Peer {
        tps: p.tps(),
        deploy_ms: p.deploy_ms,
        failed: p.failed,
        balances: p.balances,
    }))
}

#[cfg(not(feature = "peer-cosmwasm"))]
fn peer(_: &[u8], _: &[Vec<Transfer>], _: &dyn Fn(&str)) -> Result<Option<Peer>, String> {
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small run leaves the balances the model computes, every transfer succeeding.
    #[test]
    fn a_small_run_leaves_the_expected_balances() {
        let wasm = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../")
                .join(e2e::CW20_BASE),
        )
        .unwrap();
        let blocks = e2e::blocks(&e2e::transfers(120, 20, 5), 40);
        let expected = e2e::expected_balances(20, blocks.iter().flatten());
        for threads in [1, 2] {
            let run = run(&wasm, 20, &blocks, threads).unwrap();
            assert_eq!((run.transfers, run.failed), (120, 0));
            assert_eq!(run.balances, expected);
            assert_eq!(run.block_tps.len(), 3);
        }
    }
}
