//! Block execution, declared and optimistic: parallel execution gives the state and receipts
//! of sequential execution in block order.

use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use proptest::prelude::*;

use synor_cli::workload::{self, Deployment, Rng, account, balance_key};
use synor_core::instrument::Limits;
use synor_core::sched::{AccessSet, MAX_ACCESS_KEYS};
use synor_core::tier::Tier;
use synor_host_std::block::{self, BlockExecutor, BlockState, Mode, Transaction};
use synor_host_std::tiered::{DEFAULT_CACHE_BYTES, Mode as TierMode, TieredExecutor};
use synor_host_wasmtime::engine::engines;

fn token() -> Vec<Deployment> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("contracts/wasm/token_v1.wasm");
    let wasm = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    workload::deploy(&[("token_v1.wasm".into(), wasm)], 1).unwrap()
}

fn executor() -> Arc<TieredExecutor> {
    // Hot from the first call: these tests are about scheduling, not tiers.
    Arc::new(TieredExecutor::new(
        engines(&Limits::default(), None).unwrap(),
        TierMode::Static(Tier::Hot),
        DEFAULT_CACHE_BYTES,
    ))
}

/// Runs `txs` from `genesis` in `mode`; returns receipts and final state.
fn run(
    exec: &Arc<TieredExecutor>,
    d: &[Deployment],
    genesis: &BlockState,
    txs: &[Transaction],
    mode: Mode,
) -> (Vec<block::Receipt>, synor_core::Digest, BlockState) {
    let state = Arc::new(BlockState::new(genesis.snapshot()));
    let txs: Arc<[Transaction]> = txs.to_vec().into();
    let receipts = block::execute_block(
        &BlockExecutor::new(),
        exec,
        &workload::contracts(d),
        &state,
        1,
        &txs,
        mode,
    )
    .unwrap()
    .receipts;
    let digest = state.digest();
    let state = Arc::into_inner(state).unwrap();
    (receipts, digest, state)
}

/// What a block's transaction becomes in [`random_blocks_equal_sequential_in_every_mode`].
#[derive(Debug, Clone, Copy)]
enum Twist {
    /// An ordinary transfer.
    None,
    /// More than any balance: aborts.
    Overdraw,
    /// More than half a balance: passes or aborts with the transfers before it (its write set
    /// changes between optimistic executions).
    Half,
    /// Declares only the sender's balance: fails with `undeclared_access` (unless it sends to
    /// itself, touching one key only).
    DeclaresTooLittle,
    /// Declares nothing: may touch anything (a barrier for declared scheduling).
    DeclaresNothing,
}

/// The token deployment and an executor, made once for every case of the property (each case
/// made its own: an instrumentation, a set of engines and a compile, 16 times over).
static TOKEN: LazyLock<(Vec<Deployment>, Arc<TieredExecutor>)> =
    LazyLock::new(|| (token(), executor()));

fn twist() -> impl Strategy<Value = Twist> {
    prop_oneof![
        8 => Just(Twist::None),
        1 => Just(Twist::Overdraw),
        1 => Just(Twist::Half),
        1 => Just(Twist::DeclaresTooLittle),
        1 => Just(Twist::DeclaresNothing),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Random transfer blocks (random accounts, so random keys and contention, from one hot
    /// pair to a thousand accounts), each transaction twisted at random (some transfers too
    /// large, some that pass or fail with the ones before them, some declaring too little,
    /// some declaring nothing), on random thread counts: every mode gives the sequential
    /// receipts and state.
    #[test]
    fn random_blocks_equal_sequential_in_every_mode(
        seed in any::<u64>(),
        accounts in prop::sample::select(&[2u64, 3, 10, 100, 1000][..]),
        twists in prop_oneof![
            prop::collection::vec(twist(), 1..40),
            prop::collection::vec(twist(), 300..700),
        ],
        threads in 2usize..5,
    ) {
        let (d, exec) = &*TOKEN;
        let id = d[0].module.code_id;
        let (genesis, mut txs) = workload::transfers(d, 0, accounts, twists.len(), seed);
        for (t, twist) in txs.iter_mut().zip(&twists) {
            let n = t.input.len();
            match twist {
                Twist::None => {}
                Twist::Overdraw => t.input[n - 8..].copy_from_slice(&u64::MAX.to_le_bytes()),
                Twist::Half => t.input[n - 8..].copy_from_slice(&600_000u64.to_le_bytes()),
                Twist::DeclaresTooLittle => {
                    t.access = Some(AccessSet {
                        reads: Vec::new(),
                        writes: vec![balance_key(&id, &t.caller)],
                    });
                }
                Twist::DeclaresNothing => t.access = None,
            }
        }
        let (seq, seq_state, _) = run(exec, d, &genesis, &txs, Mode::Sequential);
        let count = |what: &str| {
            seq.iter()
                .filter(|r| r.trap.as_deref().is_some_and(|t| t.starts_with(what)))
                .count()
        };
        let twisted = |which: fn(&Twist) -> bool| twists.iter().filter(|t| which(t)).count();
        // The twists do what they should: nothing fails that was not twisted to, and on a
        // large block (where each twist is all but certain to be drawn) each kind of failure
        // happens.
        let undeclared = twisted(|t| matches!(t, Twist::DeclaresTooLittle));
        let may_abort = twisted(|t| matches!(t, Twist::Overdraw | Twist::Half));
        prop_assert!(count("undeclared_access") <= undeclared);
        prop_assert!(count("aborted") <= may_abort);
        if twists.len() >= 300 {
            prop_assert!(count("aborted") > 0 && count("undeclared_access") > 0);
        }
        for mode in [Mode::Declared { threads }, Mode::Optimistic { threads }] {
            let (par, par_state, _) = run(exec, d, &genesis, &txs, mode);
            prop_assert_eq!(&par, &seq, "receipts, {:?}", mode);
            prop_assert_eq!(&par_state, &seq_state, "state, {:?}", mode);
        }
    }
}

#[test]
fn failed_transaction_writes_nothing_and_the_block_goes_on() {
    let d = token();
    let exec = executor();
    let id = d[0].module.code_id;
    let (genesis, _) = workload::transfers(&d, 0, 3, 0, 0);
    let transfer = |from, to, amount| workload::transfer(&d, 0, from, to, amount);
    let txs = [
        transfer(0, 1, 10),
        transfer(1, 2, 5_000_000),
        transfer(1, 2, 7),
    ];
    for mode in [
        Mode::Sequential,
        Mode::Declared { threads: 2 },
        Mode::Optimistic { threads: 2 },
    ] {
        let (receipts, _, state) = run(&exec, &d, &genesis, &txs, mode);
        assert!(receipts[0].trap.is_none());
        assert!(
            receipts[1].trap.as_deref().unwrap().starts_with("aborted"),
            "{receipts:?}"
        );
        assert!(receipts[1].events.is_empty() && receipts[1].gas_used > 0);
        assert!(receipts[2].trap.is_none());
        let balance = |a: u64| {
            u64::from_le_bytes(
                state.get(&balance_key(&id, &account(a))).unwrap()[..8]
                    .try_into()
                    .unwrap(),
            )
        };
        assert_eq!(
            (balance(0), balance(1), balance(2)),
            (999_990, 1_000_003, 1_000_007)
        );
    }
}

#[test]
fn fully_conflicting_block_equals_sequential() {
    let d = token();
    let exec = executor();
    // Two accounts: every transfer conflicts with every other.
    let (genesis, txs) = workload::transfers(&d, 0, 2, 200, 5);
    let (seq, seq_state, _) = run(&exec, &d, &genesis, &txs, Mode::Sequential);
    for mode in [
        Mode::Declared { threads: 2 },
        Mode::Optimistic { threads: 2 },
    ] {
        let (par, par_state, _) = run(&exec, &d, &genesis, &txs, mode);
        assert_eq!((&par, &par_state), (&seq, &seq_state), "{mode:?}");
    }
}

/// Optimistic execution of a block that declares nothing: every transaction runs at least
/// once, the conflicting ones more, and a block of independent transfers is validated at most
/// once per transaction (no validation storm; an execution that began with every earlier
/// transaction committed is not validated at all, except in the probe window, which measures).
#[test]
fn optimistic_counts_executions_and_validations() {
    let d = token();
    let exec = executor();
    let undeclared = |txs: Vec<Transaction>| block::undeclared(&txs);
    // Independent transfers: 400 disjoint pairs of accounts.
    let txs = undeclared(
        (0..400)
            .map(|i| workload::transfer(&d, 0, 2 * i, 2 * i + 1, 5))
            .collect(),
    );
    let (genesis, _) = workload::transfers(&d, 0, 800, 0, 0);
    let state = Arc::new(BlockState::new(genesis.snapshot()));
    let out = block::execute_block(
        &BlockExecutor::new(),
        &exec,
        &workload::contracts(&d),
        &state,
        1,
        &txs,
        Mode::Optimistic { threads: 2 },
    )
    .unwrap();
    assert!(out.receipts.iter().all(|r| r.trap.is_none()));
    assert_eq!(out.executions, 400);
    let probe = 2 * synor_host_std::pool::PROBE_PER_THREAD;
    assert!(
        out.validations >= probe && out.validations <= 400,
        "{} validations",
        out.validations
    );
    // Two accounts: the probe finds no parallelism and the rest runs in order.
    let (genesis, txs) = workload::transfers(&d, 0, 2, 1000, 3);
    let state = Arc::new(BlockState::new(genesis.snapshot()));
    let out = block::execute_block(
        &BlockExecutor::new(),
        &exec,
        &workload::contracts(&d),
        &state,
        1,
        &undeclared(txs),
        Mode::Optimistic { threads: 2 },
    )
    .unwrap();
    let probe = synor_host_std::pool::PROBE_PER_THREAD * 2;
    assert!(out.executions >= 1000 && out.executions <= 1000 + 2 * probe);
    assert!(
        out.validations <= 3 * probe,
        "{} validations",
        out.validations
    );
}

/// Blocks of a contract that keeps its data in blobs (code-as-storage): registrations (some of
/// a name taken earlier in the block, which fail), then in the next block updates (delta
/// blobs of the previous block's data), reads and sizes, some declaring nothing. Every mode
/// gives the sequential receipts (blob ids included) and state, block after block.
#[test]
fn blob_contract_blocks_equal_sequential_in_every_mode() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("contracts/wasm");
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    let d = workload::deploy(&[("registry_v1.wasm".into(), read("registry_v1.wasm"))], 1).unwrap();
    let exec = executor();
    let id = d[0].module.code_id;
    let name_key = |name: &[u8]| {
        let mut k = id.as_bytes().to_vec();
        k.extend_from_slice(b"name:");
        k.extend_from_slice(name);
        k
    };
    let mut rng = Rng::new(7);
    let mut tx = |entry: &str, name: &[u8], rest: &[u8], write: bool| {
        let mut input = vec![name.len() as u8];
        input.extend_from_slice(name);
        input.extend_from_slice(rest);
        let key = name_key(name);
        Transaction {
            contract: d[0].address(),
            entry: entry.into(),
            caller: account(rng.range(0, 5)),
            input,
            gas: 200_000_000,
            access: (rng.range(0, 6) != 0).then(|| AccessSet {
                reads: if write { Vec::new() } else { vec![key.clone()] },
                writes: if write { vec![key] } else { Vec::new() },
            }),
        }
    };
    let data =
        |rng: &mut Rng, n: usize| -> Vec<u8> { (0..n).map(|_| rng.range(0, 7) as u8).collect() };
    let mut data_rng = Rng::new(8);
    let block1: Vec<Transaction> = (0..200)
        .map(|i| {
            let name = format!("n{}", (i * 37) % 140);
            let bytes = data(&mut data_rng, 300 + i * 13);
            tx("register", name.as_bytes(), &bytes, true)
        })
        .collect();
    let block2: Vec<Transaction> = (0..200u32)
        .map(|i| {
            let name = format!("n{}", (i * 53) % 160);
            match i % 3 {
                0 => {
                    let bytes = data(&mut data_rng, 500);
                    tx("update", name.as_bytes(), &bytes, true)
                }
                1 => {
                    let mut at = 5u32.to_le_bytes().to_vec();
                    at.extend_from_slice(&64u32.to_le_bytes());
                    tx("read", name.as_bytes(), &at, false)
                }
                _ => tx("size", name.as_bytes(), &[], false),
            }
        })
        .collect();
    let blocks: Vec<Arc<[Transaction]>> = vec![block1.into(), block2.into()];
    let run_all = |mode: Mode| {
        let state = Arc::new(BlockState::default());
        let receipts: Vec<Vec<block::Receipt>> = blocks
            .iter()
            .map(|txs| {
                block::execute_block(
                    &BlockExecutor::new(),
                    &exec,
                    &workload::contracts(&d),
                    &state,
                    1,
                    txs,
                    mode,
                )
                .unwrap()
                .receipts
            })
            .collect();
        (receipts, state.digest())
    };
    let (seq, seq_state) = run_all(Mode::Sequential);
    // The blocks do what they should: registrations that pass and fail, updates and reads.
    let failed = |b: usize| seq[b].iter().filter(|r| r.trap.is_some()).count();
    assert!(
        failed(0) > 0 && failed(0) < 200,
        "block 1: {} failed",
        failed(0)
    );
    assert!(failed(1) < 200, "block 2: everything failed");
    assert!(
        seq[1]
            .iter()
            .any(|r| r.trap.is_none() && r.return_data.len() == 64)
    );
    // Updates (every third transaction) return the new version's 32-byte id.
    assert!(
        seq[1]
            .iter()
            .step_by(3)
            .any(|r| r.trap.is_none() && r.return_data.len() == 32)
    );
    for mode in [
        Mode::Declared { threads: 2 },
        Mode::Optimistic { threads: 2 },
        Mode::Optimistic { threads: 3 },
    ] {
        let (par, par_state) = run_all(mode);
        assert_eq!(par, seq, "{mode:?}");
        assert_eq!(par_state, seq_state, "{mode:?}");
    }
}

/// A transaction declaring more keys than the bound is refused when the block is scheduled, in
/// every mode alike: it is not run (no gas used, its transfer does not happen) and its receipt
/// says why; the transactions around it run.
#[test]
fn transactions_over_the_access_bounds_are_refused() {
    let (d, exec) = &*TOKEN;
    let (genesis, mut txs) = workload::transfers(d, 0, 10, 6, 1);
    let filler = (0..MAX_ACCESS_KEYS as u64).map(|i| i.to_le_bytes().to_vec());
    txs[2].access.as_mut().unwrap().reads.extend(filler);
    let (seq, seq_state, _) = run(exec, d, &genesis, &txs, Mode::Sequential);
    assert_eq!(seq[2].gas_used, 0);
    assert_eq!(
        seq[2].trap.as_deref(),
        Some("access_set_too_large: 1026 keys declared, at most 1024")
    );
    for (i, r) in seq.iter().enumerate() {
        assert!(i == 2 || r.trap.is_none() && r.gas_used > 0, "{i}: {r:?}");
    }
    let mut without = txs.clone();
    without.remove(2);
    let (_, without_state, _) = run(exec, d, &genesis, &without, Mode::Sequential);
    assert_eq!(seq_state, without_state);
    for mode in [
        Mode::Declared { threads: 2 },
        Mode::Optimistic { threads: 2 },
    ] {
        let (par, par_state, _) = run(exec, d, &genesis, &txs, mode);
        assert_eq!(par, seq, "{mode:?}");
        assert_eq!(par_state, seq_state, "{mode:?}");
    }
}
