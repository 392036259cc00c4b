//! The node end to end: deployment through the code store, contracts at addresses, blocks
//! committed with their state, receipts and blobs, queries, and restarts. Every mode gives the
//! same receipts and digests, with or without a restart between blocks.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use synor_core::block::{Address, Mode, Transaction};
use synor_core::sched::AccessSet;
use synor_host_std::node::{Node, NodeConfig, NodeError};
use synor_host_wasmtime::open_node;

fn contract(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("contracts/wasm")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn account(n: u64) -> [u8; 32] {
    let mut a = [0u8; 32];
    a[..8].copy_from_slice(&n.to_le_bytes());
    a[31] = 0xac;
    a
}

fn node(dir: &Path, mode: Mode) -> Node {
    open_node(
        dir,
        NodeConfig {
            mode,
            ..NodeConfig::default()
        },
    )
    .unwrap()
}

fn tx(contract: Address, entry: &str, caller: [u8; 32], input: Vec<u8>) -> Transaction {
    Transaction {
        contract,
        entry: entry.into(),
        caller,
        input,
        gas: 200_000_000,
        access: None,
    }
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
        .execute_block(&[
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
        .execute_block(&[
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
    node.execute_block(&genesis).unwrap();
    node.execute_block(&funded).unwrap();
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
    let dir = tempfile::tempdir().unwrap();
    let mut n = node(dir.path(), mode);
    let d = deploy_all(&mut n);
    let mut digests = Vec::new();
    for (i, ops) in blocks.iter().enumerate() {
        let txs: Vec<_> = ops.iter().map(|op| to_tx(&d, op)).collect();
        let out = n.execute_block(&txs).unwrap();
        digests.push((out.receipts_digest, out.diff_digest));
        if restart_after == Some(i) {
            let height = n.height();
            drop(n);
            n = node(dir.path(), mode);
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
    /// state, restarted in the middle or not.
    #[test]
    fn random_blocks_equal_in_every_mode_and_across_restarts(
        blocks in prop::collection::vec(prop::collection::vec(op(), 1..60), 1..4),
        restart in any::<prop::sample::Index>(),
        threads in 2usize..4,
    ) {
        let restart = restart.index(blocks.len());
        let reference = run(&blocks, Mode::Sequential, None);
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
    // A blob is readable from the block after the one that stored it: an update in the same
    // block finds nothing to update.
    let out = n
        .execute_block(&[
            to_tx(
                &d,
                &Op::Register {
                    name: 1,
                    len: 3000,
                    seed: 1,
                },
            ),
            to_tx(
                &d,
                &Op::Update {
                    name: 1,
                    len: 3000,
                    seed: 2,
                },
            ),
        ])
        .unwrap();
    assert_eq!(out.receipts[0].trap, None);
    assert_eq!(
        out.receipts[1].trap.as_deref(),
        Some("host_error: blob_update of a missing blob")
    );
    assert_eq!(out.blobs_stored, 1);
    let out = n
        .execute_block(&[to_tx(
            &d,
            &Op::Update {
                name: 1,
                len: 3000,
                seed: 2,
            },
        )])
        .unwrap();
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
        .execute_block(&[to_tx(&d, &Op::Read { name: 1, at: 100 })])
        .unwrap();
    assert_eq!(out.receipts[0].trap, None);
    assert_eq!(out.receipts[0].return_data.len(), 64);
    let stats = n.with_store(|s| s.stats()).unwrap();
    assert!(stats.live_records as usize == stored_before + 2);
}
