//! The peer of `synor bench e2e`: the [`e2e`](super::e2e) workload on cosmwasm-vm 3 (crates.io,
//! wasmer singlepass), the engine wasmd runs, run as a chain runs it: one module cache, an
//! instance per call from its in-memory module cache, one thread.
//!
//! Built only with the `peer-cosmwasm` feature of `synor-cli` (wasmer is a large build):
//!
//! ```sh
//! cargo build --release -p synor-cli --features peer-cosmwasm
//! cargo test --release -p synor-cli --features peer-cosmwasm --lib peer_cosmwasm
//! ```
//!
//! The backend is cosmwasm-vm's own in-memory one (`MockApi` with the prefix `cosmwasm`,
//! `MockStorage`, an empty `MockQuerier`): the engine's cost without a chain's database. A
//! failing call's writes are not rolled back (`MockStorage` has no transactions); cw20-base's
//! `transfer` fails before it writes.

use std::time::Instant;

use cosmwasm_std::{
    Addr, Binary, BlockInfo, Checksum, ContractInfo, ContractResult, Empty, Env, MessageInfo,
    Timestamp, TransactionInfo,
};
use cosmwasm_vm::testing::{MockApi, MockQuerier, MockStorage};
use cosmwasm_vm::{
    Backend, BackendApi, Cache, CacheOptions, Instance, InstanceOptions, Size, VmResult,
    call_execute, call_instantiate, call_query, capabilities_from_csv,
};

use super::e2e::{self, Transfer};

/// Gas limit of every call, in CosmWasm gas: far above what a cw20 call uses (wasmd's
/// default block of 3·10⁷ SDK gas is about 4·10¹² CosmWasm gas), so that no call runs out.
pub const GAS_LIMIT: u64 = 10_000_000_000_000;

/// The capabilities the cache offers: those of wasmvm 3 (wasmd 0.60 and later), which
/// include cw20-base's `iterator`.
pub const CAPABILITIES: &str = "iterator,staking,stargate,cosmwasm_1_1,cosmwasm_1_2,\
    cosmwasm_1_3,cosmwasm_1_4,cosmwasm_2_0,cosmwasm_2_1,cosmwasm_2_2,cosmwasm_3_0";

/// Size of the in-memory module cache, MiB (wasmd's default `memory_cache_size`).
pub const MEMORY_CACHE_MIB: usize = 100;

/// Memory limit of one instance, MiB (wasmd's `ContractMemoryLimit`).
pub const INSTANCE_MEMORY_MIB: usize = 32;

/// What a run of the workload on cosmwasm-vm measured and left.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerRun {
    /// From the contract's bytes in to the first call done (`store_code` with checks, which
    /// compiles and persists; the first `get_instance`, which loads the module from the file
    /// system cache into the memory cache; `instantiate`), ms.
    pub deploy_ms: f64,
    /// All transfer blocks: per transfer `get_instance` (from the memory cache), `execute`,
    /// `recycle`, s.
    pub exec_seconds: f64,
    /// Transfers run.
    pub transfers: usize,
    /// Transfers that failed (the VM's error or the contract's).
    pub failed: usize,
    /// Why the first failed transfer failed.
    pub first_failure: Option<String>,
    /// Each account's balance after the run, by `balance` queries to the contract.
    pub balances: Vec<u128>,
}

impl PeerRun {
    /// Transfers per second over the transfer blocks.
    pub fn tps(&self) -> f64 {
        self.transfers as f64 / self.exec_seconds
    }
}

type PeerBackend = Backend<MockApi, MockStorage, MockQuerier>;
type PeerCache = Cache<MockApi, MockStorage, MockQuerier>;
type PeerInstance = Instance<MockApi, MockStorage, MockQuerier>;

/// Runs `blocks` of transfers among [`e2e::ACCOUNTS`] accounts on cosmwasm-vm, after
/// deploying `wasm` (cw20-base) and instantiating it with [`e2e::instantiate_msg`]; then
/// queries every account's balance.
///
/// # Errors
/// See [`run_with`].
pub fn run(wasm: &[u8], blocks: &[Vec<Transfer>]) -> Result<PeerRun, String> {
    run_with(wasm, e2e::ACCOUNTS, blocks)
}

/// [`run`] with `accounts` accounts: `blocks` must name accounts below `accounts` only.
///
/// # Errors
/// A transfer names an account outside `0..accounts`; an address is refused by `MockApi`;
/// the cache cannot be made; `wasm` is refused by `store_code`; instantiation fails; an
/// instance cannot be made or gives its storage back; a balance query fails or answers
/// something else than a balance. A failing transfer is counted, not an error.
pub fn run_with(wasm: &[u8], accounts: usize, blocks: &[Vec<Transfer>]) -> Result<PeerRun, String> {
    let addrs: Vec<String> = (0..accounts).map(e2e::account).collect();
    let api = MockApi::default();
    for addr in &addrs {
        api.addr_validate(addr)
            .0
            .map_err(|e| format!("MockApi refuses the workload's address {addr}: {e}"))?;
    }
    // Everything a chain would have decoded before executing: messages, senders, environments.
    let contract = Addr::unchecked(e2e::contract_address());
    let init_env = env(&contract, e2e::INSTANTIATE_HEIGHT, Some(0));
    let init_info = info(&addrs, 0).map_err(|e| format!("instantiate is sent by {e}"))?;
    let init_msg = e2e::instantiate_msg(accounts);
    let mut calls = Vec::with_capacity(blocks.len());
    for (b, block) in blocks.iter().enumerate() {
        let height = e2e::transfer_height(b);
        let mut txs = Vec::with_capacity(block.len());
        for (index, t) in block.iter().enumerate() {
            if t.to >= accounts {
                return Err(format!(
                    "transfer {index} of block {b} pays account {}, outside 0..{accounts}",
                    t.to
                ));
            }
            let index = u32::try_from(index).map_err(|_| format!("block {b} is too long"))?;
            txs.push((
                env(&contract, height, Some(index)),
                info(&addrs, t.from)
                    .map_err(|e| format!("transfer {index} of block {b} is sent by {e}"))?,
                e2e::transfer_msg(t),
            ));
        }
        calls.push(txs);
    }
    let last_height = e2e::transfer_height(blocks.len().saturating_sub(1));
    let query_env = env(&contract, last_height, None);

    let dir = tempfile::tempdir().map_err(|e| format!("cannot make the cache's directory: {e}"))?;
    let options = CacheOptions::new(
        dir.path(),
        capabilities_from_csv(CAPABILITIES),
        Size::mebi(MEMORY_CACHE_MIB),
        Size::mebi(INSTANCE_MEMORY_MIB),
    );
    // SAFETY: `Cache::new` is unsafe because it trusts the compiled modules it finds in its
    // file system cache. Its directory was just created empty by `tempdir`, is private to this
    // process, and only this cache writes into it, so every module it loads is one it compiled
    // itself in this run.
    let cache: PeerCache = unsafe { Cache::new(options) }
        .map_err(|e| format!("cosmwasm-vm cache in {}: {e}", dir.path().display()))?;
    let mut backend = Some(Backend {
        api,
        storage: MockStorage::new(),
        querier: MockQuerier::new(&[]),
    });

    let start = Instant::now();
    let checksum = cache
        .store_code(wasm, true, true)
        .map_err(|e| format!("cosmwasm-vm store_code: {e}"))?;
    match with_instance(&cache, &checksum, &mut backend, |instance| {
        call_instantiate::<_, _, _, Empty>(instance, &init_env, &init_info, &init_msg)
    })? {
        Ok(ContractResult::Ok(_)) => {}
        Ok(ContractResult::Err(e)) => return Err(format!("cw20-base instantiate: {e}")),
        Err(e) => return Err(format!("cosmwasm-vm instantiate: {e}")),
    }
    let deploy_ms = start.elapsed().as_secs_f64() * 1e3;

    let (mut transfers, mut failed, mut first_failure) = (0, 0, None);
    let start = Instant::now();
    for (b, txs) in calls.iter().enumerate() {
        for (index, (env, info, msg)) in txs.iter().enumerate() {
            let outcome = with_instance(&cache, &checksum, &mut backend, |instance| {
                call_execute::<_, _, _, Empty>(instance, env, info, msg)
            })?;
            transfers += 1;
            let why = match outcome {
                Ok(ContractResult::Ok(_)) => continue,
                Ok(ContractResult::Err(e)) => format!("cw20-base: {e}"),
                Err(e) => format!("cosmwasm-vm: {e}"),
            };
            failed += 1;
            first_failure.get_or_insert_with(|| format!("transfer {index} of block {b}: {why}"));
        }
    }
    let exec_seconds = start.elapsed().as_secs_f64();

    let balances = (0..accounts)
        .map(|i| {
            let query = e2e::balance_query(i);
            let answer = with_instance(&cache, &checksum, &mut backend, |instance| {
                call_query(instance, &query_env, &query)
            })?;
            match answer {
                Ok(ContractResult::Ok(answer)) => e2e::parse_balance(&answer),
                Ok(ContractResult::Err(e)) => Err(format!("cw20-base balance of account {i}: {e}")),
                Err(e) => Err(format!("cosmwasm-vm balance of account {i}: {e}")),
            }
        })
        .collect::<Result<Vec<u128>, String>>()?;

    Ok(PeerRun {
        deploy_ms,
        exec_seconds,
        transfers,
        failed,
        first_failure,
        balances,
    })
}

/// The environment of a call at `height` in the transaction at `index` (none for a query).
fn env(contract: &Addr, height: u64, index: Option<u32>) -> Env {
    Env {
        block: BlockInfo {
            height,
            time: Timestamp::from_nanos(e2e::block_time_nanos(height)),
            chain_id: e2e::CHAIN_ID.into(),
        },
        transaction: index.map(|index| {
            TransactionInfo::new(index, Binary::from(e2e::tx_hash(height, index).to_vec()))
        }),
        contract: ContractInfo {
            address: contract.clone(),
        },
    }
}

/// A call sent by account `from`, with no funds.
///
/// # Errors
/// `from` is not an account of `addrs`.
fn info(addrs: &[String], from: usize) -> Result<MessageInfo, String> {
    let sender = addrs
        .get(from)
        .ok_or_else(|| format!("account {from}, outside 0..{}", addrs.len()))?;
    Ok(MessageInfo {
        sender: Addr::unchecked(sender),
        funds: Vec::new(),
    })
}

/// One call as a chain makes it: an instance of `checksum` from the cache on the chain's
/// `backend`, `call` on it, and the backend taken back.
///
/// # Errors
/// The backend was lost by an earlier failure; no instance can be made (the backend is then
/// lost: an instance takes it); the instance does not give the backend back. `call`'s own
/// error is returned inside the `Ok`.
fn with_instance<T>(
    cache: &PeerCache,
    checksum: &Checksum,
    backend: &mut Option<PeerBackend>,
    call: impl FnOnce(&mut PeerInstance) -> VmResult<T>,
) -> Result<VmResult<T>, String> {
    let taken = backend
        .take()
        .ok_or("the chain's storage was lost by an earlier failure")?;
    let options = InstanceOptions {
        gas_limit: GAS_LIMIT,
    };
    let mut instance = cache
        .get_instance(checksum, taken, options)
        .map_err(|e| format!("cosmwasm-vm get_instance: {e}"))?;
    let result = call(&mut instance);
    *backend = Some(
        instance
            .recycle()
            .ok_or("cosmwasm-vm instance did not give its storage back")?,
    );
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cw20_base() -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(e2e::CW20_BASE);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn workload_accounts_are_mock_api_addresses() {
        let api = MockApi::default();
        for i in [0, 1, 999] {
            assert_eq!(e2e::account(i), api.addr_make(&format!("account{i}")));
        }
        assert_eq!(e2e::contract_address(), api.addr_make("cw20-base"));
    }

    #[test]
    fn two_blocks_leave_the_model_balances_and_failures_are_counted() {
        let accounts = 50;
        let mut blocks = e2e::blocks(&e2e::transfers(200, accounts, e2e::SEED), 100);
        // A transfer of more than the sender holds fails in cw20-base and in the model.
        blocks[1].push(Transfer {
            from: 3,
            to: 4,
            amount: 10 * e2e::INITIAL_BALANCE,
        });
        let run = run_with(&cw20_base(), accounts, &blocks).unwrap();
        assert_eq!(run.transfers, 201);
        assert_eq!(run.failed, 1, "{:?}", run.first_failure);
        let why = run.first_failure.as_deref().unwrap_or_default();
        assert!(
            why.starts_with("transfer 100 of block 1: cw20-base:"),
            "{why}"
        );
        assert_eq!(
            run.balances,
            e2e::expected_balances(accounts, blocks.iter().flatten())
        );
        assert!(run.deploy_ms > 0.0 && run.exec_seconds > 0.0);
    }

    #[test]
    fn bad_input_is_an_error_that_says_what_failed() {
        let e = run_with(b"\0asm\x01\0\0\0", 2, &[]).unwrap_err();
        assert!(e.starts_with("cosmwasm-vm store_code:"), "{e}");
        let outside = [vec![Transfer {
            from: 0,
            to: 5,
            amount: 1,
        }]];
        let e = run_with(&cw20_base(), 2, &outside).unwrap_err();
        assert!(e.contains("outside 0..2"), "{e}");
        let outside = [vec![Transfer {
            from: 5,
            to: 0,
            amount: 1,
        }]];
        let e = run_with(&cw20_base(), 2, &outside).unwrap_err();
        assert!(e.contains("sent by account 5"), "{e}");
    }
}
