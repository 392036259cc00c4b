//! The node end to end: deployment through the code store, contracts at addresses, blocks
//! committed with their state, receipts and blobs, queries, and restarts. Every mode gives the
//! same receipts and digests, with or without a restart between blocks.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use synor_core::block::{Address, Mode, Transaction};
use synor_core::sched::AccessSet;
use synor_core::tier::TierPolicy;
use synor_host_std::node::{Node, NodeConfig, NodeError};
use synor_host_wasmtime::open_node;
use synor_tests::{account, kv_set_input, tx};

fn contract(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("contracts/wasm")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn node(dir: &Path, mode: Mode) -> Node {
    node_with(dir, mode, true)
}

/// A node executing in `mode`, committing each block while the next executes (`pipeline`) or
/// before `execute_block` returns.
fn node_with(dir: &Path, mode: Mode, pipeline: bool) -> Node {
    open_node(
        dir,
        NodeConfig {
            mode,
            pipeline,
            ..NodeConfig::default()
        },
    )
    .unwrap()
}

fn transfer(token: Address, from: u64, to: u64, amount: u64) -> Transaction {
    let mut input = account(to).to_vec();
    input.extend_from_slice(&amount.to_le_bytes());
    tx(token, "transfer", account(from), input)
}

fn balance(node: &mut Node, token: Address, who: u64) -> u64 {
    let r = node
        .query(
            &token,
            "balance_of",
            account(9),
            account(who).to_vec(),
            10_000_000,
        )
        .unwrap();
    assert_eq!(r.trap, None);
    u64::from_le_bytes(r.return_data.try_into().unwrap())
}

#[test]
fn contracts_sharing_a_code_keep_their_own_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = node(dir.path(), Mode::Sequential);
    let code = node.deploy(&contract("token_v1.wasm")).unwrap();
    // The same bytes again: the same code, nothing new stored.
    assert_eq!(node.deploy(&contract("token_v1.wasm")).unwrap(), code);
    let a = node.instantiate(&code, account(0)).unwrap();
    let b = node.instantiate(&code, account(0)).unwrap();
    assert_ne!(a, b);
    let out = node
        .execute_block([
            tx(a, "init", account(1), 1000u64.to_le_bytes().to_vec()),
            tx(b, "init", account(2), 50u64.to_le_bytes().to_vec()),
            transfer(a, 1, 3, 300),
            transfer(b, 2, 3, 20),
        ])
        .unwrap();
    assert!(out.receipts.iter().all(|r| r.trap.is_none()), "{out:?}");
    assert_eq!(balance(&mut node, a, 3), 300);
    assert_eq!(balance(&mut node, b, 3), 20);
    assert_eq!(balance(&mut node, a, 1), 700);
    assert_eq!(balance(&mut node, b, 1), 0);
    // Queries keep nothing.
    let r = node
        .query(
            &a,
            "transfer",
            account(1),
            {
                let mut i = account(4).to_vec();
                i.extend_from_slice(&5u64.to_le_bytes());
                i
            },
            10_000_000,
        )
        .unwrap();
    assert_eq!(r.trap, None);
    assert_eq!(balance(&mut node, a, 4), 0);
    assert_eq!(node.height(), 1);
    let infos = node.contracts().unwrap();
    assert_eq!(infos.len(), 2);
    assert!(infos.iter().all(|c| c.code == code));
}

#[test]
fn bad_modules_are_not_stored_and_bad_transactions_get_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = node(dir.path(), Mode::Optimistic { threads: 2 });
    let err = node.deploy(b"not a module").unwrap_err();
    assert!(matches!(err, NodeError::Rejected(_)), "{err}");
    assert_eq!(node.with_store(|s| s.ids().len()), 0);
    let unknown = synor_core::Digest::of(b"nobody");
    assert!(matches!(
        node.instantiate(&unknown, account(0)),
        Err(NodeError::UnknownCode(_))
    ));
    let code = node.deploy(&contract("token_v1.wasm")).unwrap();
    let token = node.instantiate(&code, account(0)).unwrap();
    let out = node
        .execute_block([
            tx(unknown, "init", account(1), Vec::new()),
            tx(token, "no_such_entry", account(1), Vec::new()),
            tx(token, "init", account(1), 10u64.to_le_bytes().to_vec()),
        ])
        .unwrap();
    let traps: Vec<_> = out.receipts.iter().map(|r| r.trap.as_deref()).collect();
    assert!(
        traps[0].is_some_and(|t| t.starts_with("no_contract")),
        "{traps:?}"
    );
    assert!(
        traps[1].is_some_and(|t| t.starts_with("no_entry")),
        "{traps:?}"
    );
    assert_eq!(traps[2], None);
    assert_eq!(out.receipts[0].gas_used, 0);
    // The block and its receipts are committed and read back.
    let (receipts, receipts_digest, diff_digest) = node.block(1).unwrap().unwrap();
    assert_eq!(receipts, out.receipts);
    assert_eq!(
        (receipts_digest, diff_digest),
        (out.receipts_digest, out.diff_digest)
    );
    assert!(node.block(2).unwrap().is_none());
}

/// One generated transaction of [`random_blocks_equal_in_every_mode_and_across_restarts`].
#[derive(Debug, Clone)]
enum Op {
    Transfer {
        from: u64,
        to: u64,
        amount: u64,
        declared: bool,
    },
    Register {
        name: u8,
        len: u16,
        seed: u8,
    },
    Update {
        name: u8,
        len: u16,
        seed: u8,
    },
    Read {
        name: u8,
        at: u16,
    },
    Hash {
        rounds: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u64..6, 0u64..6, 1u64..400_000, any::<bool>())
            .prop_map(|(from, to, amount, declared)| Op::Transfer { from, to, amount, declared }),
        1 => (0u8..3, 1u16..3000, any::<u8>()).prop_map(|(name, len, seed)| Op::Register { name, len, seed }),
        1 => (0u8..3, 1u16..3000, any::<u8>()).prop_map(|(name, len, seed)| Op::Update { name, len, seed }),
        1 => (0u8..3, 0u16..3000).prop_map(|(name, at)| Op::Read { name, at }),
        1 => (1u16..200).prop_map(|rounds| Op::Hash { rounds }),
    ]
}

/// The contracts of one node, deployed and instantiated the same way on every node.
struct Deployed {
    token: Address,
    registry: Address,
    compute: Address,
}

fn deploy_all(node: &mut Node) -> Deployed {
    let mut make = |file: &str| {
        let code = node.deploy(&contract(file)).unwrap();
        node.instantiate(&code, account(0)).unwrap()
    };
    let d = Deployed {
        token: make("token_v1.wasm"),
        registry: make("registry_v1.wasm"),
        compute: make("compute_v1.wasm"),
    };
    let genesis = vec![tx(
        d.token,
        "init",
        account(0),
        1_000_000u64.to_le_bytes().to_vec(),
    )];
    let funded: Vec<_> = (1..6).map(|n| transfer(d.token, 0, n, 100_000)).collect();
    node.execute_block(genesis.as_slice()).unwrap();
    node.execute_block(funded.as_slice()).unwrap();
    d
}

fn to_tx(d: &Deployed, op: &Op) -> Transaction {
    let named = |name: u8, rest: &[u8]| {
        let mut input = vec![4, b'd', b'o', b'c', b'0' + name];
        input.extend_from_slice(rest);
        input
    };
    let data = |len: u16, seed: u8| -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i * 31 + seed as u32 * (i / 512)) as u8)
            .collect()
    };
    match *op {
        Op::Transfer {
            from,
            to,
            amount,
            declared,
        } => {
            let mut t = transfer(d.token, from, to, amount);
            if declared {
                let key = |n: u64| {
                    let mut k = d.token.as_bytes().to_vec();
                    k.extend_from_slice(b"bal:");
                    k.extend_from_slice(&account(n));
                    k
                };
                t.access = Some(AccessSet {
                    reads: Vec::new(),
                    writes: vec![key(from), key(to)],
                });
            }
            t
        }
        Op::Register { name, len, seed } => tx(
            d.registry,
            "register",
            account(1),
            named(name, &data(len, seed)),
        ),
        Op::Update { name, len, seed } => tx(
            d.registry,
            "update",
            account(1),
            named(name, &data(len, seed)),
        ),
        Op::Read { name, at } => {
            let mut rest = (at as u32).to_le_bytes().to_vec();
            rest.extend_from_slice(&64u32.to_le_bytes());
            tx(d.registry, "read", account(2), named(name, &rest))
        }
        Op::Hash { rounds } => {
            let mut input = (rounds as u32).to_le_bytes().to_vec();
            input.extend_from_slice(&7u64.to_le_bytes());
            tx(d.compute, "hash_chain", account(3), input)
        }
    }
}

/// What a run of blocks gave: per block, the receipts digest and the state diff digest; and
/// the final state digest.
type Run = (
    Vec<(synor_core::Digest, synor_core::Digest)>,
    synor_core::Digest,
);

fn run(blocks: &[Vec<Op>], mode: Mode, restart_after: Option<usize>) -> Run {
    run_with(blocks, mode, restart_after, true)
}

fn run_with(blocks: &[Vec<Op>], mode: Mode, restart_after: Option<usize>, pipeline: bool) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let mut n = node_with(dir.path(), mode, pipeline);
    let d = deploy_all(&mut n);
    let mut digests = Vec::new();
    for (i, ops) in blocks.iter().enumerate() {
        let txs: Vec<_> = ops.iter().map(|op| to_tx(&d, op)).collect();
        let out = n.execute_block(txs.as_slice()).unwrap();
        digests.push((out.receipts_digest, out.diff_digest));
        if restart_after == Some(i) {
            let height = n.height();
            drop(n);
            n = node_with(dir.path(), mode, pipeline);
            assert_eq!(n.height(), height);
        }
    }
    (digests, n.state_digest().unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// Random blocks of transfers (declared and not), blob registrations, updates and reads
    /// (blobs stored in one block and read in the next, across a restart), and compute:
    /// sequential, declared and optimistic nodes give the same receipts, state diffs and
    /// state, restarted in the middle or not, committing each block while the next executes or
    /// before going on.
    #[test]
    fn random_blocks_equal_in_every_mode_and_across_restarts(
        blocks in prop::collection::vec(prop::collection::vec(op(), 1..60), 1..4),
        restart in any::<prop::sample::Index>(),
        threads in 2usize..4,
    ) {
        let restart = restart.index(blocks.len());
        let reference = run_with(&blocks, Mode::Sequential, None, false);
        prop_assert_eq!(&run(&blocks, Mode::Sequential, None), &reference);
        for (mode, restart) in [
            (Mode::Sequential, Some(restart)),
            (Mode::Declared { threads }, Some(restart)),
            (Mode::Optimistic { threads }, None),
            (Mode::Optimistic { threads }, Some(restart)),
        ] {
            prop_assert_eq!(&run(&blocks, mode, restart), &reference, "{:?}", mode);
        }
    }
}

/// Blobs stored by a block are in the code store after it, as updates of their previous
/// versions, and read by the next block after a restart.
#[test]
fn blobs_are_committed_through_the_code_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = node(dir.path(), Mode::Optimistic { threads: 2 });
    let d = deploy_all(&mut n);
    let stored_before = n.with_store(|s| s.ids().len());
    let update = Op::Update {
        name: 1,
        len: 3000,
        seed: 2,
    };
    // A blob is readable from the block after the one that stored it: an update in the same
    // block finds nothing to update.
    let out = n
        .execute_block([
            to_tx(
                &d,
                &Op::Register {
                    name: 1,
                    len: 3000,
                    seed: 1,
                },
            ),
            to_tx(&d, &update),
        ])
        .unwrap();
    assert_eq!(out.receipts[0].trap, None);
    assert_eq!(
        out.receipts[1].trap.as_deref(),
        Some("host_error: blob_update of a missing blob")
    );
    assert_eq!(out.blobs_stored, 1);
    let out = n.execute_block([to_tx(&d, &update)]).unwrap();
    assert_eq!(out.receipts[0].trap, None);
    assert_eq!(out.blobs_stored, 1);
    // Stored as an update: the new version refers to the previous one.
    let updated = synor_core::Digest(out.receipts[0].return_data.clone().try_into().unwrap());
    let stats = n.with_store(|s| s.record_stats(&updated)).unwrap();
    assert!(stats.blob && !stats.refs.is_empty(), "{stats:?}");
    assert!(stats.stored_bytes < 1000, "{stats:?}");
    let ids = n.with_store(|s| s.ids());
    assert_eq!(ids.len(), stored_before + 2);
    drop(n);
    let mut n = node(dir.path(), Mode::Sequential);
    let out = n
        .execute_block([to_tx(&d, &Op::Read { name: 1, at: 100 })])
        .unwrap();
    assert_eq!(out.receipts[0].trap, None);
    assert_eq!(out.receipts[0].return_data.len(), 64);
    let stats = n.with_store(|s| s.stats()).unwrap();
    assert!(stats.live_records as usize == stored_before + 2);
}

/// The key/value test contract (`tests/contracts/wat/kv.wat`): writes, removals, scans and
/// calls to other contracts.
fn kv_wasm() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("contracts/wat/kv.wat");
    wat::parse_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn set(kv: Address, key: &[u8], value: &[u8]) -> Transaction {
    tx(kv, "set", account(1), kv_set_input(key, value))
}

fn kv_call(kv: Address, entry: &str, input: &[u8]) -> Transaction {
    tx(kv, entry, account(1), input.to_vec())
}

/// A `call` of `entry` of `target` with `input`, made by the contract `via`.
fn call_via(via: Address, target: Address, entry: &str, input: &[u8]) -> Transaction {
    kv_call(via, "call", &call_input(target, entry, input))
}

fn call_input(target: Address, entry: &str, input: &[u8]) -> Vec<u8> {
    let mut i = target.as_bytes().to_vec();
    i.push(entry.len() as u8);
    i.extend_from_slice(entry.as_bytes());
    i.extend_from_slice(input);
    i
}

/// The keys a `scan` returned.
fn keys(data: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some((&n, tail)) = rest.split_first() {
        out.push(String::from_utf8_lossy(&tail[..n as usize]).into_owned());
        rest = &tail[n as usize..];
    }
    out
}

const MODES: [Mode; 4] = [
    Mode::Sequential,
    Mode::Declared { threads: 2 },
    Mode::Optimistic { threads: 2 },
    Mode::Optimistic { threads: 3 },
];

/// Range scans see the committed state, the earlier transactions of the block and the call's
/// own writes, skip removed keys, in both directions, alike in every mode; a transaction that
/// declares its keys may not scan.
#[test]
fn scans_merge_committed_state_the_block_and_the_call() {
    let mut reference = None;
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let mut n = node(dir.path(), mode);
        let code = n.deploy(&kv_wasm()).unwrap();
        let kv = n.instantiate(&code, account(0)).unwrap();
        let genesis: Vec<_> = ["a1", "a2", "a3", "b1"]
            .iter()
            .map(|k| set(kv, k.as_bytes(), b"v"))
            .collect();
        n.execute_block(genesis.as_slice()).unwrap();
        let mut declared = kv_call(kv, "scan", b"a");
        declared.access = Some(AccessSet {
            reads: vec![kv.as_bytes().to_vec()],
            writes: Vec::new(),
        });
        let out = n
            .execute_block([
                set(kv, b"a15", b"w"),
                kv_call(kv, "del", b"a2"),
                kv_call(kv, "scan", b"a"),
                kv_call(kv, "rscan", b"a"),
                set(kv, b"a0", b"x"),
                kv_call(kv, "set_and_scan", &[3, b'a', b'0', b'5', b'y']),
                kv_call(kv, "scan", b""),
                kv_call(kv, "scan", b"c"),
                declared,
            ])
            .unwrap();
        let r = &out.receipts;
        assert!(r[..8].iter().all(|r| r.trap.is_none()), "{mode:?}: {r:?}");
        assert_eq!(keys(&r[2].return_data), ["a1", "a15", "a3"], "{mode:?}");
        assert_eq!(keys(&r[3].return_data), ["a3", "a15", "a1"], "{mode:?}");
        assert_eq!(
            keys(&r[5].return_data),
            ["a0", "a05", "a1", "a15", "a3", "b1"],
            "{mode:?}"
        );
        assert_eq!(
            keys(&r[6].return_data),
            ["a0", "a05", "a1", "a15", "a3", "b1"]
        );
        assert!(keys(&r[7].return_data).is_empty());
        assert!(
            r[8].trap
                .as_deref()
                .is_some_and(|t| t.starts_with("undeclared_access")),
            "{mode:?}: {:?}",
            r[8]
        );
        let digests = (
            out.receipts_digest,
            out.diff_digest,
            n.state_digest().unwrap(),
        );
        assert_eq!(*reference.get_or_insert(digests), digests, "{mode:?}");
    }
}

/// A contract calls another: the callee writes in its own namespace and sees its caller as the
/// caller; a failed callee's writes are undone and the caller goes on; calls nest at most
/// `MAX_CALL_DEPTH` deep; a call to nothing fails.
#[test]
fn nested_calls_undo_only_their_own_effects() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = node(dir.path(), Mode::Optimistic { threads: 2 });
    let code = n.deploy(&kv_wasm()).unwrap();
    let a = n.instantiate(&code, account(0)).unwrap();
    let b = n.instantiate(&code, account(0)).unwrap();
    // Nine calls deep: A calls itself until the depth limit refuses.
    let mut deep = call_input(b, "scan", b"");
    for _ in 0..9 {
        deep = call_input(a, "call", &deep);
    }
    let out = n
        .execute_block([
            call_via(a, b, "set", &kv_set_input(b"x", b"1")),
            call_via(a, b, "set_then_fail", &kv_set_input(b"y", b"2")),
            call_via(a, synor_core::Digest::of(b"nobody"), "set", b""),
            call_via(a, b, "scan", b""),
            kv_call(a, "call", &deep),
        ])
        .unwrap();
    let result =
        |i: usize| i64::from_le_bytes(out.receipts[i].return_data[..8].try_into().unwrap());
    assert!(out.receipts.iter().all(|r| r.trap.is_none()), "{out:?}");
    assert_eq!(result(0), 0);
    assert_eq!(result(1), -1);
    assert_eq!(result(2), -1);
    assert_eq!(keys(&out.receipts[3].return_data[8..]), ["x"]);
    // Each level returns its callee's result and data: eight calls succeed below the
    // transaction's, the ninth is refused.
    let mut data = &out.receipts[4].return_data[..];
    let mut depth = 0;
    while i64::from_le_bytes(data[..8].try_into().unwrap()) >= 0 {
        depth += 1;
        data = &data[8..];
    }
    assert_eq!(depth, synor_core::abi::MAX_CALL_DEPTH);
    // B holds x, not y; A holds nothing.
    let key = |c: Address, k: &[u8]| {
        let mut full = c.as_bytes().to_vec();
        full.extend_from_slice(k);
        full
    };
    assert_eq!(
        n.get(&key(b, b"x")).unwrap().map(|(v, _)| v),
        Some(b"1".to_vec())
    );
    assert_eq!(n.get(&key(b, b"y")).unwrap(), None);
    assert_eq!(n.get(&key(a, b"x")).unwrap(), None);
    // A callee's gas is charged to its caller.
    assert!(out.receipts[0].gas_used > out.receipts[2].gas_used);
}

/// The input of `make`: instantiate `code`, then call `entry` with `input` on the new contract.
fn make_input(code: &synor_core::Digest, entry: &str, input: &[u8]) -> Vec<u8> {
    call_input(*code, entry, input)
}

/// Contracts instantiate contracts inside a block: the transaction calls its new contract at
/// once, everyone else from the next block on; a failed transaction or a failed nested call
/// instantiates nothing; new contracts are committed with the block and survive a restart;
/// every mode gives the same receipts and addresses.
#[test]
fn contracts_instantiate_contracts_in_blocks() {
    let mut reference = None;
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let mut n = node(dir.path(), mode);
        let code = n.deploy(&kv_wasm()).unwrap();
        let a = n.instantiate(&code, account(0)).unwrap();
        let b = n.instantiate(&code, account(0)).unwrap();
        let made = make_input(&code, "set", &kv_set_input(b"x", b"1"));
        // The address `make` will give (transaction 0 of block 1, a's first).
        let c = synor_core::block::created_address(&code, &a, (1, 0), 0);
        let out = n
            .execute_block([
                kv_call(a, "make", &made),
                kv_call(c, "scan", b""),
                kv_call(a, "make_then_fail", &made),
                call_via(b, a, "make_then_fail", &made),
                kv_call(
                    a,
                    "make",
                    &make_input(&synor_core::Digest::of(b"none"), "", b""),
                ),
                kv_call(a, "make", &make_input(&code, "", b"")),
            ])
            .unwrap();
        let r = &out.receipts;
        assert_eq!(r[0].trap, None, "{mode:?}");
        assert_eq!(r[0].return_data[..32], *c.as_bytes());
        // The new contract's `set` ran: result 0, nothing returned.
        assert_eq!(r[0].return_data[32..], 0i64.to_le_bytes());
        assert_eq!(r[0].created.len(), 1);
        assert_eq!((r[0].created[0].address, r[0].created[0].code), (c, code));
        assert_eq!(r[0].created[0].creator, a);
        assert!(
            r[1].trap.as_deref().unwrap().starts_with("no_contract"),
            "{:?}",
            r[1]
        );
        assert!(r[2].trap.is_some() && r[2].created.is_empty());
        assert_eq!(r[3].trap, None);
        assert_eq!(r[3].return_data[..8], (-1i64).to_le_bytes());
        assert!(r[3].created.is_empty());
        assert!(
            r[4].trap.as_deref().unwrap().contains("no such code"),
            "{:?}",
            r[4]
        );
        assert_eq!(r[5].created.len(), 1);
        let d = r[5].created[0].address;
        assert_ne!(d, c);
        let info = n.contract(&c).unwrap().unwrap();
        assert_eq!(
            (info.code, info.creator, info.height),
            (code, *a.as_bytes(), 1)
        );
        // From the next block on, anyone calls it; its state is its own.
        let scan = n.execute_block([kv_call(c, "scan", b"")]).unwrap();
        assert_eq!(keys(&scan.receipts[0].return_data), ["x"]);
        drop(n);
        let mut n = node(dir.path(), mode);
        assert_eq!(n.contracts().unwrap().len(), 4);
        let after = n
            .execute_block([
                kv_call(d, "set", &kv_set_input(b"y", b"2")),
                kv_call(c, "scan", b""),
            ])
            .unwrap();
        assert!(after.receipts.iter().all(|r| r.trap.is_none()), "{after:?}");
        assert_eq!(keys(&after.receipts[1].return_data), ["x"]);
        let digests = (out.receipts_digest, out.diff_digest, after.receipts_digest);
        match &reference {
            None => reference = Some(digests),
            Some(r) => assert_eq!(r, &digests, "{mode:?}"),
        }
    }
}

/// One transaction of [`random_scans_and_calls_equal_sequential_in_every_mode`].
#[derive(Debug, Clone)]
enum KvOp {
    Set(u8, u8),
    Del(u8),
    Scan(u8, bool),
    SetAndScan(u8),
    Call(u8, u8),
    CallFailing(u8),
    Make(u8),
    MakeFailing(u8),
}

fn kv_op() -> impl Strategy<Value = KvOp> {
    prop_oneof![
        6 => (0u8..40, any::<u8>()).prop_map(|(k, v)| KvOp::Set(k, v)),
        2 => (0u8..40).prop_map(KvOp::Del),
        2 => (0u8..4, any::<bool>()).prop_map(|(p, down)| KvOp::Scan(p, down)),
        1 => (0u8..40).prop_map(KvOp::SetAndScan),
        1 => (0u8..40, any::<u8>()).prop_map(|(k, v)| KvOp::Call(k, v)),
        1 => (0u8..40).prop_map(KvOp::CallFailing),
        1 => (0u8..40).prop_map(KvOp::Make),
        1 => (0u8..40).prop_map(KvOp::MakeFailing),
    ]
}

fn kv_key(k: u8) -> Vec<u8> {
    vec![b'k', b'0' + k / 10, b'0' + k % 10]
}

fn kv_tx(code: &synor_core::Digest, a: Address, b: Address, op: &KvOp) -> Transaction {
    let set_input = |k: u8, v: u8| kv_set_input(&kv_key(k), &[v]);
    let make = |k: u8| make_input(code, "set_and_scan", &set_input(k, 2));
    match *op {
        KvOp::Set(k, v) => kv_call(a, "set", &set_input(k, v)),
        KvOp::Del(k) => kv_call(a, "del", &kv_key(k)),
        KvOp::Scan(p, down) => kv_call(a, if down { "rscan" } else { "scan" }, &[b'k', b'0' + p]),
        KvOp::SetAndScan(k) => kv_call(a, "set_and_scan", &set_input(k, 1)),
        KvOp::Call(k, v) => call_via(b, a, "set", &set_input(k, v)),
        KvOp::CallFailing(k) => call_via(b, a, "set_then_fail", &set_input(k, 9)),
        KvOp::Make(k) => call_via(b, a, "make", &make(k)),
        KvOp::MakeFailing(k) => call_via(b, a, "make_then_fail", &make(k)),
    }
}

fn run_kv(blocks: &[Vec<KvOp>], mode: Mode) -> Vec<(synor_core::Digest, synor_core::Digest)> {
    let dir = tempfile::tempdir().unwrap();
    let mut n = node(dir.path(), mode);
    let code = n.deploy(&kv_wasm()).unwrap();
    let a = n.instantiate(&code, account(0)).unwrap();
    let b = n.instantiate(&code, account(0)).unwrap();
    blocks
        .iter()
        .map(|ops| {
            let txs: Vec<_> = ops.iter().map(|op| kv_tx(&code, a, b, op)).collect();
            let out = n.execute_block(txs.as_slice()).unwrap();
            (out.receipts_digest, out.diff_digest)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Random blocks of writes, removals, scans (over ranges earlier transactions insert into
    /// and remove from), nested calls and failing nested calls, contracts instantiating
    /// contracts (and failing after): every mode gives the
    /// sequential receipts and state diffs. Blocks are long enough for optimistic windows on
    /// every thread.
    #[test]
    fn random_scans_and_calls_equal_sequential_in_every_mode(
        blocks in prop::collection::vec(prop::collection::vec(kv_op(), 100..250), 1..3),
    ) {
        let reference = run_kv(&blocks, Mode::Sequential);
        for mode in &MODES[1..] {
            prop_assert_eq!(&run_kv(&blocks, *mode), &reference, "{:?}", mode);
        }
    }
}

/// Speculation: results pre-executed between blocks stand for their executions only while
/// what they read is unchanged. A result invalidated by an earlier transaction of the block,
/// or by a block committed after it ran, is not used; the receipts and state are those of a
/// node that pre-executed nothing.
#[test]
fn speculation_reuses_what_still_stands() {
    let run = |speculate: bool| {
        let dir = tempfile::tempdir().unwrap();
        let mut n = node(dir.path(), Mode::Optimistic { threads: 2 });
        let code = n.deploy(&kv_wasm()).unwrap();
        let a = n.instantiate(&code, account(0)).unwrap();
        n.execute_block([set(a, b"k1", b"1"), set(a, b"k2", b"2")])
            .unwrap();
        let later = [
            kv_call(a, "scan", b"k"),
            set(a, b"k3", b"3"),
            kv_call(a, "scan", b"z"),
            set(a, b"k4", b"4"),
        ];
        if speculate {
            for t in &later {
                n.submit(t.clone());
            }
            n.wait_speculation();
            assert_eq!(n.pool().results, 4, "{:?}", n.pool());
        }
        // A block between pre-execution and the block: it writes z, into the range the second
        // scan read.
        let between = n.execute_block([set(a, b"z", b"0")]).unwrap();
        assert_eq!(between.reused, 0);
        if speculate {
            n.wait_speculation();
        }
        // k0 inserted into the range the first scan read: it runs again; the two writes stand;
        // the second scan was pre-executed again after the block between, and stands.
        let mut block = vec![set(a, b"k0", b"0")];
        block.extend(later);
        let out = n.execute_block(block).unwrap();
        assert_eq!(keys(&out.receipts[1].return_data), ["k0", "k1", "k2"]);
        assert_eq!(keys(&out.receipts[3].return_data), ["z"]);
        let all = n.execute_block([kv_call(a, "scan", b"")]).unwrap();
        (
            out.reused,
            out.receipts_digest,
            out.diff_digest,
            all.receipts,
        )
    };
    let (none, receipts, diff, state) = run(false);
    assert_eq!(none, 0);
    let (reused, spec_receipts, spec_diff, spec_state) = run(true);
    assert_eq!(
        reused, 3,
        "the writes of k3 and k4 and the second scan, pre-executed again"
    );
    assert_eq!((spec_receipts, spec_diff), (receipts, diff));
    assert_eq!(spec_state, state);
}

/// One block of [`speculation_never_changes_results`]: its transactions, which of them were
/// submitted (pre-executed) before it, and whether a block of other transactions was committed
/// between the pre-execution and it.
#[derive(Debug, Clone)]
struct SpecBlock {
    ops: Vec<(SpecOp, bool)>,
    between: Option<Vec<SpecOp>>,
}

/// A transaction of [`speculation_never_changes_results`]: the key/value contract's, or a
/// token transfer among four senders (a sender's later transfers read the balance its earlier
/// ones wrote: they are pre-executed on top of them).
#[derive(Debug, Clone)]
enum SpecOp {
    Kv(KvOp),
    Transfer(u8, u8, u16),
}

fn spec_op() -> impl Strategy<Value = SpecOp> {
    prop_oneof![
        3 => kv_op().prop_map(SpecOp::Kv),
        2 => (1u8..5, 1u8..5, 0u16..400).prop_map(|(f, t, a)| SpecOp::Transfer(f, t, a)),
    ]
}

fn spec_block() -> impl Strategy<Value = SpecBlock> {
    (
        prop::collection::vec((spec_op(), any::<bool>()), 20..120),
        prop::option::of(prop::collection::vec(spec_op(), 1..20)),
    )
        .prop_map(|(ops, between)| SpecBlock { ops, between })
}

/// Promotes every contract to the hot tier at once (compiled in the background: blocks run
/// on a mix of tiers meanwhile).
const EAGER: TierPolicy = TierPolicy {
    gas_per_byte: [0, 0],
    min_calls: [0, 1],
};

/// Runs `blocks` on a new node in `mode` with `tier_policy`, submitting the transactions
/// marked for pre-execution when `speculate`; returns each block's digests and the final
/// state's, and how many results were reused.
fn run_spec(
    blocks: &[SpecBlock],
    mode: Mode,
    tier_policy: TierPolicy,
    speculate: bool,
) -> (Vec<[synor_core::Digest; 2]>, usize) {
    let dir = tempfile::tempdir().unwrap();
    let config = NodeConfig {
        mode,
        tier_policy,
        ..NodeConfig::default()
    };
    let mut n = open_node(dir.path(), config).unwrap();
    let code = n.deploy(&kv_wasm()).unwrap();
    let a = n.instantiate(&code, account(0)).unwrap();
    let b = n.instantiate(&code, account(0)).unwrap();
    let token_code = n.deploy(&contract("token_v1.wasm")).unwrap();
    let token = n.instantiate(&token_code, account(0)).unwrap();
    let mut genesis = vec![tx(
        token,
        "init",
        account(1),
        4_000u64.to_le_bytes().to_vec(),
    )];
    genesis.extend((2..5).map(|to| transfer(token, 1, to, 1_000)));
    n.execute_block(genesis).unwrap();
    let to_tx = |op: &SpecOp| match op {
        SpecOp::Kv(op) => kv_tx(&code, a, b, op),
        SpecOp::Transfer(from, to, amount) => {
            transfer(token, u64::from(*from), u64::from(*to), u64::from(*amount))
        }
    };
    let mut digests = Vec::new();
    let mut reused = 0;
    for block in blocks {
        let txs: Vec<_> = block.ops.iter().map(|(op, _)| to_tx(op)).collect();
        if speculate {
            for (t, (_, submitted)) in txs.iter().zip(&block.ops) {
                if *submitted {
                    n.submit(t.clone());
                }
            }
            n.wait_speculation();
        }
        if let Some(between) = &block.between {
            let txs: Vec<_> = between.iter().map(to_tx).collect();
            let out = n.execute_block(txs).unwrap();
            digests.push([out.receipts_digest, out.diff_digest]);
        }
        let out = n.execute_block(txs).unwrap();
        reused += out.reused;
        digests.push([out.receipts_digest, out.diff_digest]);
    }
    digests.push([n.state_digest().unwrap(); 2]);
    (digests, reused)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]

    /// Random blocks with random pre-executed subsets, invalidated by earlier transactions of
    /// the block (writes, removals, keys inserted into scanned ranges, transfers touching a
    /// sender's balance, a sender's earlier transfer left out of the pre-executed ones) and by
    /// blocks committed between pre-execution and the block, in every mode: the receipts (gas
    /// and failed overdrafts included), state diffs and final state are those of a node that
    /// pre-executed nothing, running on the cold tier alone, while the speculating one runs on
    /// the cold tier, promotes by the default policy, or promotes at once.
    #[test]
    fn speculation_never_changes_results(
        blocks in prop::collection::vec(spec_block(), 1..4),
        mode in prop::sample::select(MODES.to_vec()),
        policy in prop::sample::select(vec![TierPolicy::NEVER, TierPolicy::DEFAULT, EAGER]),
    ) {
        let (reference, _) = run_spec(&blocks, Mode::Sequential, TierPolicy::NEVER, false);
        let (speculated, reused) = run_spec(&blocks, mode, policy, true);
        prop_assert_eq!(&speculated, &reference, "{:?}, {:?}, {} reused", mode, policy, reused);
    }
}

/// A flood of pending transactions: the pool stays within its byte budget, dropping the oldest,
/// and what it keeps still runs correctly.
#[test]
fn the_pool_stays_within_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let budget = 64 << 10;
    let mut n = open_node(
        dir.path(),
        NodeConfig {
            speculation_bytes: budget,
            ..NodeConfig::default()
        },
    )
    .unwrap();
    let code = n.deploy(&kv_wasm()).unwrap();
    let a = n.instantiate(&code, account(0)).unwrap();
    n.execute_block([set(a, b"k", b"v")]).unwrap();
    // From distinct senders: each pre-executed on the committed state alone.
    let flood: Vec<_> = (0..5_000u64)
        .map(|i| {
            let input = kv_set_input(format!("key{i}").as_bytes(), &[7; 40]);
            tx(a, "set", account(100 + i), input)
        })
        .collect();
    for (i, t) in flood.iter().enumerate() {
        n.submit(t.clone());
        if i % 500 == 0 {
            let stats = n.pool();
            assert!(stats.bytes <= budget, "{stats:?}");
        }
    }
    n.wait_speculation();
    let stats = n.pool();
    assert!(stats.bytes <= budget, "{stats:?}");
    assert!(
        stats.dropped > 0 && stats.pending < flood.len(),
        "{stats:?}"
    );
    assert!(stats.results > 0, "{stats:?}");
    // The newest transactions are the ones kept: a block of them reuses their results.
    let kept = flood[flood.len() - stats.results.min(50)..].to_vec();
    let out = n.execute_block(kept.clone()).unwrap();
    assert_eq!(out.reused, kept.len());
    assert!(out.receipts.iter().all(|r| r.trap.is_none()));
}

/// A sender's pending transactions are pre-executed each on top of the ones before it: a
/// block that includes them in that order reuses all of them; one that leaves out a
/// transaction in the middle reuses none of those after it; the receipts and state are those
/// of a node that pre-executed nothing.
#[test]
fn a_senders_transactions_are_pre_executed_on_top_of_each_other() {
    let run = |mode: Mode, speculate: bool| {
        let dir = tempfile::tempdir().unwrap();
        let mut n = node(dir.path(), mode);
        let code = n.deploy(&contract("token_v1.wasm")).unwrap();
        let token = n.instantiate(&code, account(0)).unwrap();
        n.execute_block([tx(
            token,
            "init",
            account(1),
            1_000u64.to_le_bytes().to_vec(),
        )])
        .unwrap();
        let chain: Vec<_> = (2..8).map(|to| transfer(token, 1, to, 100)).collect();
        let mut reused = Vec::new();
        let mut digests = Vec::new();
        // All six in order, then the first three with the second left out.
        for block in [
            chain[..3].to_vec(),
            vec![chain[3].clone(), chain[5].clone()],
        ] {
            if speculate {
                let submitted = if block.len() == 3 {
                    &chain[..3]
                } else {
                    &chain[3..]
                };
                for t in submitted {
                    n.submit(t.clone());
                }
                n.wait_speculation();
            }
            let out = n.execute_block(block).unwrap();
            assert!(out.receipts.iter().all(|r| r.trap.is_none()), "{out:?}");
            reused.push(out.reused);
            digests.push((out.receipts_digest, out.diff_digest));
        }
        (reused, digests, balance(&mut n, token, 1))
    };
    for mode in MODES {
        let (none, reference, left) = run(mode, false);
        assert_eq!(none, [0, 0]);
        assert_eq!(left, 1_000 - 500);
        let (reused, digests, left) = run(mode, true);
        // The first block reuses its three; in the second, the transfer after the one left
        // out read a balance that one wrote first.
        assert_eq!(reused, [3, 1], "{mode:?}");
        assert_eq!((digests, left), (reference, 500), "{mode:?}");
    }
}
