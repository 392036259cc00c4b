//! The code store, on every host: a model-based test against a `BTreeMap`, round trips of
//! random bytes, and damage (bit flips, truncation) that must give errors, never wrong bytes.

use std::collections::BTreeMap;

use proptest::prelude::*;
use synor_core::StoreError;
use synor_core::digest::{CodeId, Digest};
use synor_core::host::{KvStore, Level};
use synor_core::store::{ChunkConfig, StoreConfig};
use synor_tests::{MemHost, RedbHost, StoreHost, contract, upgrade};

/// One step of the model-based test.
#[derive(Debug, Clone)]
enum Op {
    /// Put new contract-like content.
    Put { seed: u64, len: usize },
    /// Put content already stored (adds a pin).
    PutAgain { pick: usize },
    /// Put a new version of a live record.
    Upgrade { pick: usize, seed: u64 },
    /// Put a data blob, possibly as an update of a live one.
    Blob {
        pick: Option<usize>,
        seed: u64,
        len: usize,
    },
    /// Remove one pin of a live record.
    Delete { pick: usize },
    /// Close and open the store again.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<u64>(), 0usize..24_000).prop_map(|(seed, len)| Op::Put { seed, len }),
        1 => any::<usize>().prop_map(|pick| Op::PutAgain { pick }),
        4 => (any::<usize>(), any::<u64>()).prop_map(|(pick, seed)| Op::Upgrade { pick, seed }),
        2 => (proptest::option::of(any::<usize>()), any::<u64>(), 0usize..30_000)
            .prop_map(|(pick, seed, len)| Op::Blob { pick, seed, len }),
        3 => any::<usize>().prop_map(|pick| Op::Delete { pick }),
        1 => Just(Op::Reopen),
    ]
}

fn config(level: Level) -> StoreConfig {
    let mut c = StoreConfig {
        level,
        chunking: ChunkConfig::new(256, 1024, 4096).expect("valid bounds"),
        chunk_threshold: 16 * 1024,
        ..StoreConfig::default()
    };
    // Small stores: train dictionaries early so that they are exercised too.
    c.dictionary.min_records = 4;
    c.dictionary.min_bytes = 32 * 1024;
    c.dictionary.size = 4096;
    c
}

/// The model: every live record's bytes and pins.
type Model = BTreeMap<CodeId, (Vec<u8>, u32)>;

fn pick(model: &Model, pick: usize) -> Option<CodeId> {
    (!model.is_empty()).then(|| *model.keys().nth(pick % model.len()).expect("in range"))
}

fn check<H: StoreHost>(host: &mut H, model: &Model) {
    let store = host.store();
    let live: Vec<CodeId> = model.keys().copied().collect();
    assert_eq!(store.ids(), live);
    for (id, (bytes, _)) in model {
        assert_eq!(&store.get(id).expect("live record reads"), bytes);
    }
    let report = store.verify(false).expect("verify");
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert_eq!(
        store.stats().expect("stats").live_records,
        model.len() as u64
    );
}

fn run_model<H: StoreHost>(level: Level, ops: Vec<Op>) {
    let mut host = H::create(config(level));
    let mut model = Model::new();
    for op in ops {
        match op {
            Op::Put { seed, len } => {
                let bytes = contract(seed, len);
                let r = host.store().put(&bytes).expect("put");
                model.entry(r.id).or_insert((bytes, 0)).1 += 1;
            }
            Op::PutAgain { pick: p } => {
                if let Some(id) = pick(&model, p) {
                    let bytes = model[&id].0.clone();
                    let r = host.store().put(&bytes).expect("put again");
                    assert!(!r.created);
                    model.get_mut(&id).expect("picked").1 += 1;
                }
            }
            Op::Upgrade { pick: p, seed } => {
                if let Some(id) = pick(&model, p) {
                    let bytes = upgrade(&model[&id].0, seed);
                    let r = host.store().put_upgrade(&id, &bytes).expect("upgrade");
                    model.entry(r.id).or_insert((bytes, 0)).1 += 1;
                }
            }
            Op::Blob { pick: p, seed, len } => {
                let previous = p.and_then(|p| pick(&model, p));
                let bytes = match previous {
                    Some(id) => upgrade(&model[&id].0, seed),
                    None => contract(seed, len),
                };
                let r = host
                    .store()
                    .put_blob(&bytes, previous.as_ref())
                    .expect("put blob");
                model.entry(r.id).or_insert((bytes, 0)).1 += 1;
            }
            Op::Delete { pick: p } => {
                if let Some(id) = pick(&model, p) {
                    host.store().delete(&id).expect("delete");
                    let entry = model.get_mut(&id).expect("picked");
                    entry.1 -= 1;
                    if entry.1 == 0 {
                        model.remove(&id);
                        assert!(matches!(
                            host.store().get(&id),
                            Err(StoreError::NotFound(_))
                        ));
                    }
                }
            }
            Op::Reopen => host.reopen(),
        }
        check(&mut host, &model);
    }
    // Deleting everything leaves nothing but the store's own metadata and the current
    // dictionary.
    while let Some(id) = pick(&model, 0) {
        host.store().delete(&id).expect("delete");
        let entry = model.get_mut(&id).expect("picked");
        entry.1 -= 1;
        if entry.1 == 0 {
            model.remove(&id);
        }
    }
    host.reopen();
    check(&mut host, &model);
    let stats = host.store().stats().expect("stats");
    assert_eq!(stats.live_records + stats.retained_records, 0, "{stats:?}");
    assert_eq!(stats.chunks, 0, "{stats:?}");
    assert!(stats.dictionaries <= 1, "{stats:?}");
}

/// Every single-bit flip and truncation of every stored value: each read returns the original
/// bytes or an error, and every error names an object.
fn damage_never_yields_wrong_bytes<H: StoreHost>(level: Level) {
    let mut host = H::create(config(level));
    let mut originals: Vec<(CodeId, Vec<u8>)> = Vec::new();
    for i in 0..6u64 {
        let (id, bytes) = match originals.last() {
            Some((p, old)) if i % 3 != 0 => {
                let b = upgrade(old, i);
                (host.store().put_upgrade(p, &b).expect("upgrade").id, b)
            }
            _ => {
                let b = contract(i, 9000 + 3000 * i as usize);
                (host.store().put(&b).expect("put").id, b)
            }
        };
        originals.push((id, bytes));
    }
    let blob = contract(77, 20_000);
    originals.push((host.store().put_blob(&blob, None).expect("blob").id, blob));
    let mut entries: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    host.store()
        .kv()
        .scan(&[], &mut |k, v| entries.push((k.to_vec(), v.to_vec())))
        .expect("scan");
    let mut errors = 0;
    for (key, value) in &entries {
        let positions: Vec<usize> = (0..value.len()).step_by(1 + value.len() / 24).collect();
        let damaged_values = positions
            .iter()
            .map(|&at| {
                let mut v = value.clone();
                v[at] ^= 1 << (at % 8);
                v
            })
            .chain([value[..value.len() / 2].to_vec(), Vec::new()]);
        for damaged in damaged_values {
            let mut kv = synor_core::testing::MemKv::default();
            let mut batch = synor_core::host::WriteBatch::new();
            for (k, v) in &entries {
                batch.put(
                    k.clone(),
                    if k == key { damaged.clone() } else { v.clone() },
                );
            }
            let Ok(()) = kv.apply(batch);
            let Ok(store) = synor_core::store::CodeStore::open(
                kv,
                synor_core::store::RuzstdCompressor,
                config(level),
            ) else {
                errors += 1;
                continue;
            };
            for (id, bytes) in &originals {
                match store.get(id) {
                    Ok(got) => assert_eq!(&got, bytes, "a damaged store returned wrong bytes"),
                    Err(e) => {
                        errors += 1;
                        assert!(!e.to_string().is_empty());
                    }
                }
            }
        }
    }
    assert!(errors > 0);
}

macro_rules! store_suite {
    ($host:ident, $module:ident, $cases:expr) => {
        mod $module {
            use super::*;

            proptest! {
                #![proptest_config(ProptestConfig { cases: $cases, ..ProptestConfig::default() })]

                #[test]
                fn model_balanced(ops in proptest::collection::vec(op(), 1..24)) {
                    run_model::<$host>(Level::Balanced, ops);
                }

                #[test]
                fn random_bytes_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..70_000)) {
                    let mut host = $host::create(config(Level::Balanced));
                    let id = host.store().put(&bytes).expect("put").id;
                    prop_assert_eq!(id, Digest::of(&bytes));
                    host.reopen();
                    prop_assert_eq!(host.store().get(&id).expect("get"), bytes);
                }
            }

            #[test]
            fn model_maximum() {
                let ops = (0..14u64)
                    .map(|i| match i % 7 {
                        0 | 3 => Op::Put { seed: i, len: 6000 + 1000 * i as usize },
                        1 | 4 | 5 => Op::Upgrade { pick: i as usize, seed: i },
                        2 => Op::Blob { pick: None, seed: i, len: 20_000 },
                        _ => Op::Delete { pick: 1 },
                    })
                    .chain([Op::Reopen, Op::Delete { pick: 0 }, Op::Reopen])
                    .collect();
                run_model::<$host>(Level::Maximum, ops);
            }

            #[test]
            fn damage_never_yields_wrong_bytes() {
                super::damage_never_yields_wrong_bytes::<$host>(Level::Maximum);
            }
        }
    };
}

store_suite!(MemHost, mem, 24);
store_suite!(RedbHost, redb, 8);

/// The redb host with libzstd really stores upgrades as deltas and trains dictionaries.
#[test]
fn redb_host_uses_deltas_and_dictionaries() {
    let mut host = RedbHost::create(config(Level::Maximum));
    let mut previous = host.store().put(&contract(1, 30_000)).expect("put");
    let mut bytes = contract(1, 30_000);
    for i in 0..8 {
        bytes = upgrade(&bytes, i);
        let r = host
            .store()
            .put_upgrade(&previous.id, &bytes)
            .expect("upgrade");
        assert_eq!(r.kind, synor_core::store::RecordKind::Delta, "{r:?}");
        assert!(r.stored_bytes < 4000, "{r:?}");
        previous = r;
    }
    for i in 10..20 {
        host.store().put(&contract(i, 20_000)).expect("put");
    }
    assert!(host.store().current_dictionary().is_some());
    host.reopen();
    let report = host.store().verify(true).expect("verify");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(host.store().get(&previous.id).expect("get"), bytes);
}

/// A file that is not a redb database is an error, never a panic.
#[test]
fn garbage_database_file_is_an_error() {
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::write(
        dir.path().join(synor_host_std::STORE_FILE),
        b"not a database at all",
    )
    .expect("write");
    assert!(synor_host_std::open_store(dir.path(), StoreConfig::default()).is_err());
}
