use super::*;
use crate::testing::{FaultyKv, MemKv};
use crate::testing::{noise, text};

fn small_chunks() -> StoreConfig {
    StoreConfig {
        chunking: ChunkConfig::new(256, 1024, 4096).unwrap(),
        chunk_threshold: 16 * 1024,
        ..StoreConfig::default()
    }
}

/// A zstd frame as the store keeps it (without magic): a single-segment header declaring
/// `size` bytes, then `blocks` (each a block type, 0 raw or 1 RLE, its size and body).
pub(super) fn frame(size: u64, blocks: &[(u8, usize, &[u8])]) -> Vec<u8> {
    // Single segment, 8-byte content size, no checksum, no dictionary id.
    let mut f = vec![0xE0];
    f.extend_from_slice(&size.to_le_bytes());
    for (i, (kind, n, body)) in blocks.iter().enumerate() {
        let last = u32::from(i + 1 == blocks.len());
        let header = ((*n as u32) << 3) | (u32::from(*kind) << 1) | last;
        f.extend_from_slice(&header.to_le_bytes()[..3]);
        f.extend_from_slice(body);
    }
    f
}

pub(super) const BLOCK: usize = 128 * 1024;

/// `content` in raw blocks: the frame decodes to it against any reference.
pub(super) fn raw_frame(content: &[u8]) -> Vec<u8> {
    let blocks: Vec<(u8, usize, &[u8])> = if content.is_empty() {
        vec![(0, 0, &[][..])]
    } else {
        content.chunks(BLOCK).map(|c| (0, c.len(), c)).collect()
    };
    frame(content.len() as u64, &blocks)
}

/// A compressor that takes references, so that puts make delta records: given a reference, it
/// writes a self-contained ruzstd frame (which decodes the same against any reference); given
/// none, raw blocks, so that plans with references always win. It trains the raw-content
/// header (a valid, empty dictionary).
struct PrefersReferences;

impl Compressor for PrefersReferences {
    fn supports_references(&self) -> bool {
        true
    }

    fn compress(
        &self,
        input: &[u8],
        level: Level,
        reference: Reference<'_>,
    ) -> Result<Vec<u8>, crate::error::CompressError> {
        if reference.is_none() {
            return Ok(with_magic(&raw_frame(input)));
        }
        RuzstdCompressor.compress(input, level, Reference::default())
    }

    fn train_dictionary(&self, _: &[&[u8]], _: usize) -> Option<Vec<u8>> {
        Some(codec::RAW_CONTENT_HEADER.to_vec())
    }
}

fn open(config: StoreConfig) -> CodeStore<MemKv, RuzstdCompressor> {
    CodeStore::open(MemKv::default(), RuzstdCompressor, config).unwrap()
}

fn assert_sound<K: KvStore, C: Compressor>(store: &CodeStore<K, C>) {
    let report = store.verify(true).unwrap();
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
}

#[test]
fn put_get_round_trip_every_level() {
    for level in [Level::None, Level::Fast, Level::Balanced, Level::Maximum] {
        let mut store = open(StoreConfig {
            level,
            ..small_chunks()
        });
        let data = text(1, 100_000);
        let report = store.put(&data).unwrap();
        assert!(report.created);
        assert_eq!(report.id, Digest::of(&data));
        assert_eq!(store.get(&report.id).unwrap(), data);
        if level != Level::None {
            assert!(
                report.stored_bytes < data.len() as u64 / 2,
                "{level:?}: {report:?}"
            );
        }
        assert_sound(&store);
    }
}

#[test]
fn empty_and_tiny_records() {
    let mut store = open(StoreConfig::default());
    for data in [&b""[..], b"a", b"\0asm\x01\0\0\0"] {
        let id = store.put(data).unwrap().id;
        assert_eq!(store.get(&id).unwrap(), data);
    }
    assert_sound(&store);
}

#[test]
fn pins_count_puts_and_deletes() {
    let mut store = open(StoreConfig::default());
    let data = text(2, 5000);
    let id = store.put(&data).unwrap().id;
    assert!(!store.put(&data).unwrap().created);
    store.delete(&id).unwrap();
    assert_eq!(store.get(&id).unwrap(), data);
    store.delete(&id).unwrap();
    assert!(matches!(store.get(&id), Err(StoreError::NotFound(_))));
    assert!(matches!(store.delete(&id), Err(StoreError::NotFound(_))));
    assert_eq!(
        store.stats().unwrap().total_bytes,
        store
            .kv()
            .entries()
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum::<u64>()
    );
    // Only the store's own metadata is left.
    assert_eq!(store.kv().entries().len(), 1);
}

#[test]
fn upgrade_of_missing_record_is_not_found() {
    let mut store = open(StoreConfig::default());
    let missing = Digest::of(b"missing");
    assert!(matches!(
        store.put_upgrade(&missing, b"new"),
        Err(StoreError::NotFound(id)) if id == missing
    ));
}

#[test]
fn too_large_is_refused() {
    let mut store = open(StoreConfig {
        max_size: 1000,
        ..StoreConfig::default()
    });
    assert!(matches!(
        store.put(&[0u8; 1001]),
        Err(StoreError::TooLarge {
            size: 1001,
            limit: 1000
        })
    ));
}

#[test]
fn blobs_share_chunks_with_exact_counts() {
    let mut store = open(small_chunks());
    let base = noise(3, 64 * 1024);
    let mut edited = base.clone();
    edited[30_000] ^= 1;
    let a = store.put_blob(&base, None).unwrap();
    assert_eq!(a.kind, RecordKind::Chunked);
    let b = store.put_blob(&edited, Some(&a.id)).unwrap();
    assert_eq!(b.kind, RecordKind::Chunked);
    // Random data does not compress: only the changed chunk is new.
    assert!(b.stored_bytes < 10_000, "{b:?}");
    assert_sound(&store);
    store.delete(&a.id).unwrap();
    assert_eq!(store.get(&b.id).unwrap(), edited);
    assert_sound(&store);
    store.delete(&b.id).unwrap();
    assert_sound(&store);
    assert_eq!(store.stats().unwrap().chunks, 0);
}

#[test]
fn reopen_gives_the_identical_store() {
    let mut store = open(small_chunks());
    let mut ids = Vec::new();
    for seed in 0..6 {
        ids.push(
            store
                .put(&text(seed, 20_000 + seed as usize * 3000))
                .unwrap()
                .id,
        );
    }
    ids.push(store.put_blob(&noise(99, 40_000), None).unwrap().id);
    let stats = store.stats().unwrap();
    let (kv, c) = store.into_parts();
    let before = kv.clone();
    let store = CodeStore::open(kv, c, small_chunks()).unwrap();
    assert_eq!(store.stats().unwrap(), stats);
    assert_eq!(store.kv(), &before);
    for id in &ids {
        assert_eq!(Digest::of(&store.get(id).unwrap()), *id);
    }
    assert_eq!(store.ids().len(), ids.len());
}

#[test]
fn same_input_same_bytes() {
    let build = || {
        let mut store = open(small_chunks());
        for seed in 0..4 {
            store.put(&text(seed, 30_000)).unwrap();
        }
        store.put_blob(&noise(5, 50_000), None).unwrap();
        store.into_parts().0
    };
    assert_eq!(build(), build());
}

/// Every single-bit flip in every stored value: reads fail or return the right bytes.
#[test]
fn bit_flips_never_yield_wrong_bytes() {
    let mut store = open(small_chunks());
    let a = text(1, 3000);
    let b = noise(2, 20_000);
    let ida = store.put(&a).unwrap().id;
    let idb = store.put_blob(&b, None).unwrap().id;
    let (kv, _) = store.into_parts();
    let keys: Vec<Vec<u8>> = kv.entries().keys().cloned().collect();
    let mut detected = 0;
    for key in keys {
        let len = kv.entries()[&key].len();
        for at in (0..len).step_by(1 + len / 40) {
            let mut damaged = kv.clone();
            damaged.entries_mut().get_mut(&key).unwrap()[at] ^= 0x10;
            let Ok(store) = CodeStore::open(damaged, RuzstdCompressor, small_chunks()) else {
                detected += 1;
                continue;
            };
            for (id, bytes) in [(ida, &a), (idb, &b)] {
                match store.get(&id) {
                    Ok(got) => assert_eq!(&got, bytes),
                    Err(e) => {
                        detected += 1;
                        // The message names the damaged object.
                        let msg = alloc::format!("{e}");
                        assert!(!msg.is_empty());
                    }
                }
            }
        }
    }
    assert!(detected > 0);
}

#[test]
fn truncations_never_yield_wrong_bytes() {
    let mut store = open(small_chunks());
    let a = text(4, 30_000);
    let id = store.put(&a).unwrap().id;
    let (kv, _) = store.into_parts();
    let key = format::id_key(tag::RECORD, &id);
    let len = kv.entries()[&key].len();
    for cut in 0..len {
        let mut damaged = kv.clone();
        damaged.entries_mut().get_mut(&key).unwrap().truncate(cut);
        let store = CodeStore::open(damaged, RuzstdCompressor, small_chunks()).unwrap();
        match store.get(&id) {
            Err(StoreError::Corrupt { object, .. }) => assert_eq!(object, Object::Record(id)),
            other => panic!("cut {cut}: {other:?}"),
        }
    }
}

#[test]
fn missing_objects_are_named() {
    let mut store = open(small_chunks());
    let data = noise(5, 20_000);
    let id = store.put_blob(&data, None).unwrap().id;
    let (mut kv, _) = store.into_parts();
    let chunk_key = kv
        .entries()
        .keys()
        .find(|k| k[0] == tag::CHUNK)
        .unwrap()
        .clone();
    kv.entries_mut().remove(&chunk_key);
    let store = CodeStore::open(kv, RuzstdCompressor, small_chunks()).unwrap();
    match store.get(&id) {
        Err(StoreError::Dangling {
            to: Object::Chunk(c),
            ..
        }) => {
            assert_eq!(c.as_bytes()[..], chunk_key[1..]);
        }
        other => panic!("{other:?}"),
    }
    let report = store.verify(false).unwrap();
    assert!(
        report.problems.iter().any(|p| p.contains("is missing")),
        "{report:?}"
    );
}

/// A write that fails (as a crash would) leaves the previous, consistent store.
#[test]
fn failed_writes_leave_a_consistent_store() {
    let ops = |store: &mut CodeStore<FaultyKv, RuzstdCompressor>| -> Result<(), StoreError> {
        let a = store.put(&text(1, 20_000))?.id;
        let b = store.put_blob(&noise(2, 30_000), None)?.id;
        store.put(&text(1, 20_000))?;
        let c = store.put_blob(&noise(2, 31_000), Some(&b))?.id;
        store.delete(&a)?;
        store.delete(&b)?;
        store.delete(&a)?;
        store.delete(&c)?;
        Ok(())
    };
    for fail_at in 0..12 {
        let kv = FaultyKv {
            fail_at: Some(fail_at),
            ..FaultyKv::default()
        };
        let mut store =
            CodeStore::open(kv, RuzstdCompressor, small_chunks()).unwrap_or_else(|_| {
                CodeStore::open(FaultyKv::default(), RuzstdCompressor, small_chunks()).unwrap()
            });
        let acknowledged_before = store.ids();
        let _ = ops(&mut store);
        let (kv, _) = store.into_parts();
        let reopened = CodeStore::open(kv.inner, RuzstdCompressor, small_chunks()).unwrap();
        assert_sound(&reopened);
        for id in reopened.ids() {
            assert_eq!(Digest::of(&reopened.get(&id).unwrap()), id);
        }
        let _ = acknowledged_before;
    }
}

#[test]
fn gc_removes_orphans_left_by_outside_edits() {
    let mut store = open(small_chunks());
    let id = store.put_blob(&noise(6, 20_000), None).unwrap().id;
    let (mut kv, c) = store.into_parts();
    // Remove the record behind the store's back: its chunks become orphans.
    kv.entries_mut().remove(&format::id_key(tag::RECORD, &id));
    let mut store = CodeStore::open(kv, c, small_chunks()).unwrap();
    assert!(!store.verify(false).unwrap().problems.is_empty());
    let report = store.gc().unwrap();
    assert!(report.chunks > 0);
    assert_sound(&store);
    assert_eq!(store.kv().entries().len(), 1);
}

#[test]
fn lost_store_metadata_never_reuses_versions() {
    let mut store = open(StoreConfig::default());
    let id = store.put(&text(7, 10_000)).unwrap().id;
    let (mut kv, c) = store.into_parts();
    kv.entries_mut().remove(format::STORE_META_KEY);
    let mut store = CodeStore::open(kv, c, StoreConfig::default()).unwrap();
    let id2 = store.put(&text(8, 10_000)).unwrap().id;
    assert_ne!(store.index[&id].meta.seq, store.index[&id2].meta.seq);
}

#[test]
fn combinations_are_lexicographic_subsets() {
    assert_eq!(
        combinations(4, 2),
        vec![
            vec![0, 1],
            vec![0, 2],
            vec![0, 3],
            vec![1, 2],
            vec![1, 3],
            vec![2, 3]
        ]
    );
    assert_eq!(combinations(6, 3).len(), 20);
    assert!(combinations(2, 3).is_empty());
    assert!(combinations(3, 0).is_empty());
}

/// Writes choose references so that every record reads back within the read budget of the
/// configuration that wrote it, and refuse a record too large to read back at all.
#[test]
fn writes_keep_every_read_within_the_budget() {
    let config = StoreConfig {
        level: Level::Fast,
        max_read_bytes: 48 * 1024,
        ..small_chunks()
    };
    let mut store = CodeStore::open(MemKv::default(), PrefersReferences, config.clone()).unwrap();
    let mut versions: Vec<(CodeId, Vec<u8>)> = Vec::new();
    let mut deltas = 0;
    for seed in 0..12 {
        let bytes = text(seed, 4000);
        let report = match versions.last() {
            Some((previous, _)) => store.put_upgrade(previous, &bytes),
            None => store.put(&bytes),
        }
        .unwrap();
        deltas += usize::from(!report.refs.is_empty());
        versions.push((report.id, bytes));
    }
    assert!(deltas >= 6, "{deltas} deltas");
    let (kv, c) = store.into_parts();
    let mut store = CodeStore::open(kv, c, config.clone()).unwrap();
    for (id, bytes) in &versions {
        assert_eq!(&store.get(id).unwrap(), bytes);
    }
    match store.put(&noise(1, 48 * 1024)) {
        Err(StoreError::ReadBudget { needed, limit, .. }) => {
            assert_eq!(limit, 48 * 1024);
            assert_eq!(needed, 48 * 1024 + READ_OVERHEAD);
        }
        other => panic!("{other:?}"),
    }
    assert_sound(&store);
    // A record already stored only gains a pin, whatever the budget; reads past it fail.
    store.set_config(StoreConfig {
        max_read_bytes: 1024,
        ..config
    });
    assert!(!store.put(&versions[0].1).unwrap().created);
    assert!(matches!(
        store.get(&versions[0].0),
        Err(StoreError::ReadBudget { limit: 1024, .. })
    ));
}

mod hostile;
