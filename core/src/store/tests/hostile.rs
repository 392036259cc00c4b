//! Hostile stores: records forged through the raw [`KvStore`] (zip bombs, reference cycles,
//! reference chains that fan out, counters at their limits, stale store metadata). Every read
//! of them ends in an error that says what is wrong, after work linear in what they hold, and
//! what was stored honestly before reads back unchanged. Also stores edited behind the store's
//! back, which `gc` repairs.

use core::cell::Cell;
use core::fmt;

use super::*;
use crate::store::codec::RAW_CONTENT_HEADER;

/// A backend that counts reads since the last [`CountingKv::reset`] and fails every read past
/// `LIMIT` of them, so that a read doing far more work than it should fails at once instead of
/// running for hours.
struct CountingKv {
    inner: MemKv,
    gets: Cell<u64>,
}

impl CountingKv {
    const LIMIT: u64 = 10_000;

    fn new(inner: MemKv) -> Self {
        Self {
            inner,
            gets: Cell::new(0),
        }
    }

    /// Reads since the last reset.
    fn gets(&self) -> u64 {
        self.gets.get()
    }

    fn reset(&self) {
        self.gets.set(0);
    }
}

#[derive(Debug)]
struct TooManyReads;

impl fmt::Display for TooManyReads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("too many backend reads")
    }
}

impl core::error::Error for TooManyReads {}

impl KvStore for CountingKv {
    type Error = TooManyReads;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, TooManyReads> {
        self.gets.set(self.gets.get() + 1);
        if self.gets.get() > Self::LIMIT {
            return Err(TooManyReads);
        }
        let Ok(v) = self.inner.get(key);
        Ok(v)
    }

    fn scan(&self, prefix: &[u8], visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), TooManyReads> {
        let Ok(()) = self.inner.scan(prefix, visit);
        Ok(())
    }

    fn apply(&mut self, batch: WriteBatch) -> Result<(), TooManyReads> {
        let Ok(()) = self.inner.apply(batch);
        Ok(())
    }
}

/// `n` zero bytes in RLE blocks: four bytes of frame per 128 KiB of output.
fn zeros_frame(declared: u64, n: usize) -> Vec<u8> {
    let blocks: Vec<(u8, usize, &[u8])> = (0..n.div_ceil(BLOCK))
        .map(|i| (1, BLOCK.min(n - i * BLOCK), &[0u8][..]))
        .collect();
    frame(declared, &blocks)
}

fn store_meta(kv: &MemKv) -> StoreMeta {
    let v = &kv.entries()[STORE_META_KEY];
    StoreMeta::decode(unseal(Object::StoreMeta, v).unwrap()).unwrap()
}

fn set_store_meta(kv: &mut MemKv, meta: &StoreMeta) {
    kv.entries_mut()
        .insert(STORE_META_KEY.to_vec(), seal(&[&meta.encode()]));
}

fn record(kv: &MemKv, id: &CodeId) -> (RecordMeta, Vec<u8>) {
    let v = &kv.entries()[&id_key(tag::RECORD, id)];
    let (meta, payload) = RecordMeta::decode(unseal(Object::Record(*id), v).unwrap()).unwrap();
    (meta, payload.to_vec())
}

/// Changes a record's metadata behind the store's back, sealed as the store would.
fn edit(kv: &mut MemKv, id: &CodeId, change: impl FnOnce(&mut RecordMeta)) {
    let (mut meta, payload) = record(kv, id);
    change(&mut meta);
    kv.entries_mut()
        .insert(id_key(tag::RECORD, id), seal(&[&meta.encode(&payload)]));
}

/// Writes a record of `content` whose zstd frame (`frame`) refers to the records numbered
/// `refs`, with number `seq` and `pins` pins, and with `dictionary`; counts nothing else.
fn forge(
    kv: &mut MemKv,
    content: &[u8],
    frame: Vec<u8>,
    seq: u64,
    refs: &[u64],
    pins: u32,
    dictionary: u32,
) -> CodeId {
    let id = Digest::of(content);
    let separate = frame.len() > INLINE_MAX;
    let meta = RecordMeta {
        seq,
        pins,
        dependents: 0,
        raw_len: content.len() as u64,
        encoding: Encoding::Zstd,
        blob: false,
        separate,
        dictionary,
        refs: refs.iter().copied().collect(),
        sketch: Sketch::of(content),
    };
    let entries = kv.entries_mut();
    if separate {
        entries.insert(id_key(tag::BODY, &id), seal(&[&frame]));
        entries.insert(id_key(tag::RECORD, &id), seal(&[&meta.encode(&[])]));
    } else {
        entries.insert(id_key(tag::RECORD, &id), seal(&[&meta.encode(&frame)]));
    }
    id
}

/// Forges a live delta record of `content` over the records `refs` (nearest first), with the
/// counts an honest put leaves: the next sequence number, one pin, one more dependent on each
/// reference.
fn forge_delta(kv: &mut MemKv, content: &[u8], refs: &[CodeId]) -> CodeId {
    let mut meta = store_meta(kv);
    let seqs: Vec<u64> = refs.iter().map(|r| record(kv, r).0.seq).collect();
    let id = forge(kv, content, raw_frame(content), meta.seq, &seqs, 1, 0);
    for r in refs {
        edit(kv, r, |m| m.dependents += 1);
    }
    meta.seq += 1;
    set_store_meta(kv, &meta);
    id
}

/// Honest records of every kind, stored through the store: contents by id.
fn honest(kv: MemKv) -> (MemKv, Vec<(CodeId, Vec<u8>)>) {
    let mut store = CodeStore::open(kv, RuzstdCompressor, small_chunks()).unwrap();
    let mut out = Vec::new();
    for bytes in [text(1, 3000), text(2, 40_000), Vec::new()] {
        out.push((store.put(&bytes).unwrap().id, bytes));
    }
    let blob = noise(3, 20_000);
    out.push((store.put_blob(&blob, None).unwrap().id, blob));
    (store.into_parts().0, out)
}

/// The honest records read back unchanged and `verify` finds nothing wrong with them.
fn assert_intact<K: KvStore, C: Compressor>(store: &CodeStore<K, C>, honest: &[(CodeId, Vec<u8>)]) {
    for (id, bytes) in honest {
        assert_eq!(&store.get(id).unwrap(), bytes);
    }
    let report = store.verify(true).unwrap();
    for (id, _) in honest {
        let name = format!("{}", Object::Record(*id));
        assert!(
            report.problems.iter().all(|p| !p.contains(&name)),
            "{name}: {:#?}",
            report.problems
        );
    }
}

/// Forged versions of a contract, each a delta over its two or three predecessors, read
/// through a cache too small to keep any of them: each is decoded once per read (without
/// memoization, a read of the top decodes the bottom about 1.8^40 times).
#[test]
fn forged_chain_fanning_out_decodes_each_record_once() {
    let (mut kv, honest) = honest(MemKv::default());
    let levels = 40;
    let mut versions: Vec<(CodeId, Vec<u8>)> = Vec::new();
    for i in 0..levels {
        let content = text(100 + i as u64, 2000);
        let refs: Vec<CodeId> = versions.iter().rev().take(3).map(|(id, _)| *id).collect();
        versions.push((forge_delta(&mut kv, &content, &refs), content));
    }
    let config = StoreConfig {
        cache_bytes: 0,
        ..small_chunks()
    };
    let store = CodeStore::open(CountingKv::new(kv.clone()), RuzstdCompressor, config).unwrap();
    let (top, bytes) = versions.last().unwrap();
    store.kv().reset();
    assert_eq!(&store.get(top).unwrap(), bytes);
    // One backend read per record: linear in the records, not exponential.
    assert_eq!(store.kv().gets(), levels as u64);
    for (id, bytes) in &versions {
        store.kv().reset();
        assert_eq!(&store.get(id).unwrap(), bytes);
    }
    store.kv().reset();
    assert_intact(&store, &honest);
    assert!(store.verify(true).unwrap().problems.is_empty());

    // A budget smaller than the read of the top: refused before anything is decoded, by name.
    let limit = 64 * 1024;
    let config = StoreConfig {
        cache_bytes: 0,
        max_read_bytes: limit,
        ..small_chunks()
    };
    let store = CodeStore::open(CountingKv::new(kv), RuzstdCompressor, config).unwrap();
    store.kv().reset();
    let e = store.get(top).unwrap_err();
    match e {
        StoreError::ReadBudget {
            at,
            needed,
            limit: l,
        } => assert!(at == *top && l == limit && needed > limit, "{e:?}"),
        _ => panic!("{e:?}"),
    }
    assert!(format!("{e}").contains("read budget of 65536 bytes"), "{e}");
    assert_eq!(store.kv().gets(), 0, "nothing read past the budget");
    // The bottom versions fit the budget and still read.
    assert_eq!(&store.get(&versions[2].0).unwrap(), &versions[2].1);
    assert_intact(&store, &honest);
}

/// Records forged into reference cycles (two records referring to each other, one referring
/// to itself, one above a cycle) and a chain deeper than any read follows.
#[test]
fn forged_cycles_and_deep_chains_are_errors() {
    let (mut kv, honest) = honest(MemKv::default());
    let mut meta = store_meta(&kv);
    let s = meta.seq;
    let (a, b, c) = (text(50, 900), text(51, 900), text(52, 900));
    let ida = forge(&mut kv, &a, raw_frame(&a), s, &[s + 1], 1, 0);
    let idb = forge(&mut kv, &b, raw_frame(&b), s + 1, &[s], 1, 0);
    let idc = forge(&mut kv, &c, raw_frame(&c), s + 2, &[s + 2], 1, 0);
    let d = text(53, 900);
    let idd = forge(&mut kv, &d, raw_frame(&d), s + 3, &[s + 2, s], 1, 0);
    // 80 versions, each over the previous one.
    let mut deep = Vec::new();
    for i in 0..80u64 {
        let content = text(200 + i, 300);
        let refs: Vec<u64> = if i == 0 { vec![] } else { vec![s + 4 + i - 1] };
        deep.push(forge(
            &mut kv,
            &content,
            raw_frame(&content),
            s + 4 + i,
            &refs,
            1,
            0,
        ));
    }
    meta.seq = s + 84;
    set_store_meta(&mut kv, &meta);
    let store = CodeStore::open(kv, RuzstdCompressor, small_chunks()).unwrap();
    for id in [ida, idb, idc, idd] {
        match store.get(&id) {
            Err(StoreError::Cycle { .. }) => {}
            other => panic!("{:?}", other.map(|b| b.len())),
        }
    }
    match store.get(deep.last().unwrap()) {
        Err(StoreError::TooDeep { limit: 64, .. }) => {}
        other => panic!("{:?}", other.map(|b| b.len())),
    }
    assert_eq!(Digest::of(&store.get(&deep[10]).unwrap()), deep[10]);
    assert_intact(&store, &honest);
    // The store stays usable: new records go in and old ones stay.
    let mut store = store;
    let new = text(60, 5000);
    let id = store.put(&new).unwrap().id;
    assert_eq!(store.get(&id).unwrap(), new);
    assert_intact(&store, &honest);
}

/// A record of 12 MiB of zeros in a frame of a few kilobytes: readable within the default
/// budget, refused by a smaller one before anything is decoded; lying about its size, stopped
/// at the size it declares.
#[test]
fn zip_bomb_records_are_bounded() {
    let (mut kv, honest) = honest(MemKv::default());
    let n = 12 << 20;
    let zeros = vec![0u8; n];
    let mut meta = store_meta(&kv);
    let frame = zeros_frame(n as u64, n);
    assert!(frame.len() < 1024);
    let bomb = forge(&mut kv, &zeros, frame, meta.seq, &[], 1, 0);
    // The same frame under a record that declares 1000 bytes, and one that declares 2^40.
    let small = b"small".repeat(200);
    let liar = forge(
        &mut kv,
        &small,
        zeros_frame(1000, n),
        meta.seq + 1,
        &[],
        1,
        0,
    );
    // Large enough that its sketch has the same size as one of 2^40 bytes.
    let huge = forge(
        &mut kv,
        &text(90, 20_000),
        zeros_frame(1 << 40, n),
        meta.seq + 2,
        &[],
        1,
        0,
    );
    edit(&mut kv, &huge, |m| m.raw_len = 1 << 40);
    meta.seq += 3;
    set_store_meta(&mut kv, &meta);

    let store = CodeStore::open(kv.clone(), RuzstdCompressor, StoreConfig::default()).unwrap();
    assert_eq!(store.get(&bomb).unwrap().len(), n);
    match store.get(&liar) {
        // ruzstd refuses the first block, larger than the declared size.
        Err(StoreError::Corrupt { object, .. }) => assert_eq!(object, Object::Record(liar)),
        other => panic!("{:?}", other.map(|b| b.len())),
    }
    match store.get(&huge) {
        Err(StoreError::ReadBudget { needed, .. }) => assert!(needed >= 1 << 40),
        other => panic!("{:?}", other.map(|b| b.len())),
    }
    assert_intact(&store, &honest);

    let limit = 8 << 20;
    let config = StoreConfig {
        max_read_bytes: limit,
        ..StoreConfig::default()
    };
    let store = CodeStore::open(CountingKv::new(kv), RuzstdCompressor, config).unwrap();
    store.kv().reset();
    match store.get(&bomb) {
        Err(StoreError::ReadBudget { at, limit: l, .. }) => assert_eq!((at, l), (bomb, limit)),
        other => panic!("{:?}", other.map(|b| b.len())),
    }
    assert_eq!(store.kv().gets(), 0, "nothing read past the budget");
    store.kv().reset();
    assert_intact(&store, &honest);
}

/// Counters at their limits: a record numbered past `MAX_SEQ` is reported damaged; one at it
/// leaves no number to hand out, so puts fail with an error instead of overflowing; pins and
/// dependents at `u32::MAX` refuse one more, and so does the last dictionary version.
#[test]
fn forged_counters_at_their_limits_are_errors() {
    let (mut kv, honest) = honest(MemKv::default());
    let over = text(70, 500);
    let at = text(71, 500);
    let idover = forge(&mut kv, &over, raw_frame(&over), 0, &[], 1, 0);
    edit_raw_seq(&mut kv, &idover, u64::MAX);
    let idat = forge(&mut kv, &at, raw_frame(&at), format::MAX_SEQ, &[], 1, 0);
    let store = CodeStore::open(kv.clone(), RuzstdCompressor, small_chunks()).unwrap();
    assert!(matches!(
        store.get(&idover),
        Err(StoreError::Corrupt { object, .. }) if object == Object::Record(idover)
    ));
    assert_eq!(store.get(&idat).unwrap(), at);
    assert_eq!(store_meta(store.kv()).seq, format::MAX_SEQ + 1);
    let mut store = store;
    match store.put(&text(72, 500)) {
        Err(StoreError::Corrupt {
            object: Object::StoreMeta,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // A known record still takes one more pin.
    assert!(!store.put(&honest[0].1).unwrap().created);
    assert_intact(&store, &honest);

    // Pins and dependents at u32::MAX, the last dictionary version at u32::MAX.
    let (mut kv, honest) = self::honest(MemKv::default());
    let (id, bytes) = &honest[0];
    edit(&mut kv, id, |m| m.pins = u32::MAX);
    let mut store = CodeStore::open(kv, RuzstdCompressor, small_chunks()).unwrap();
    assert!(matches!(store.put(bytes), Err(StoreError::TooLarge { .. })));
    let (mut kv, _) = store.into_parts();
    edit(&mut kv, id, |m| m.dependents = u32::MAX);
    let mut meta = store_meta(&kv);
    meta.last_dictionary = u32::MAX;
    set_store_meta(&mut kv, &meta);
    let mut store = CodeStore::open(kv, PrefersReferences, small_chunks()).unwrap();
    match store.put_upgrade(id, &text(73, 3000)) {
        Err(StoreError::TooLarge { size, limit }) => {
            assert_eq!((size, limit), (u64::from(u32::MAX) + 1, u32::MAX.into()));
        }
        other => panic!("{other:?}"),
    }
    match store.train_dictionary() {
        Err(StoreError::Corrupt {
            object: Object::StoreMeta,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // The forged count is what `verify` reports, and what `gc` corrects.
    assert_eq!(store.verify(false).unwrap().problems.len(), 1);
    store.gc().unwrap();
    assert_intact(&store, &honest);
}

/// Rewrites a record's sequence number with any value, the varint written by hand (the
/// encoder would refuse nothing, but this keeps the test independent of it).
fn edit_raw_seq(kv: &mut MemKv, id: &CodeId, seq: u64) {
    let (meta, payload) = record(kv, id);
    let encoded = meta.encode(&payload);
    // flags, then the sequence number (one byte for the small numbers forged here).
    assert!(meta.seq < 0x80);
    let mut body = vec![encoded[0]];
    crate::wire::put_varint(&mut body, seq);
    body.extend_from_slice(&encoded[2..]);
    kv.entries_mut()
        .insert(id_key(tag::RECORD, id), seal(&[&body]));
}

/// Store metadata overwritten with an older value (as a restored backup of it would be): the
/// store still never reuses a sequence number or a dictionary version.
#[test]
fn stale_store_metadata_never_reuses_numbers() {
    let mut store = open(small_chunks());
    // The metadata of the empty store: the next number is 0.
    let stale = store.kv().entries()[STORE_META_KEY].clone();
    let a = text(80, 4000);
    let ida = store.put(&a).unwrap().id;
    let (mut kv, c) = store.into_parts();
    let (kv2, honest) = honest(kv);
    kv = kv2;
    let x = text(81, 4000);
    let idx = forge_delta(&mut kv, &x, &[ida]);
    // A dictionary stored under version 1 (the raw-content header is a valid dictionary).
    kv.entries_mut()
        .insert(version_key(tag::DICT, 1), seal(&[&RAW_CONTENT_HEADER]));
    kv.entries_mut()
        .insert(version_key(tag::DICT_COUNT, 1), seal(&[&encode_count(0)]));
    kv.entries_mut().insert(STORE_META_KEY.to_vec(), stale);
    assert_eq!(store_meta(&kv).seq, 0);

    let mut store = CodeStore::open(kv, c, small_chunks()).unwrap();
    let written = store_meta(store.kv());
    assert_eq!(written.seq, 6, "{written:?}");
    assert_eq!(written.last_dictionary, 1);
    let mut new = Vec::new();
    for seed in 82..86 {
        let bytes = text(seed, 3000);
        new.push((store.put(&bytes).unwrap().id, bytes));
    }
    assert_eq!(store.record_stats(&idx).unwrap().refs, [ida]);
    let (kv, c) = store.into_parts();
    let store = CodeStore::open(kv, c, small_chunks()).unwrap();
    assert_eq!(store.record_stats(&idx).unwrap().refs, [ida]);
    assert_eq!(store.get(&idx).unwrap(), x);
    assert_eq!(store.get(&ida).unwrap(), a);
    assert_intact(&store, &honest);
    assert_intact(&store, &new);
    assert!(store.verify(true).unwrap().problems.is_empty());
}

/// Records released behind the store's back (pins set to 0): a delta chain held only by its
/// own dead top, a blob sharing chunks with a live one, a record sharing a dictionary with a
/// live one. One `gc` removes all of them and leaves every remaining count exact.
#[test]
fn gc_removes_dead_chains_and_leaves_exact_counts() {
    let mut store = open(small_chunks());
    let a = text(90, 5000);
    let ida = store.put(&a).unwrap().id;
    let base = noise(91, 64 * 1024);
    let mut edited = base.clone();
    edited[30_000] ^= 1;
    let idbase = store.put_blob(&base, None).unwrap().id;
    let idedited = store.put_blob(&edited, Some(&idbase)).unwrap().id;
    let (mut kv, c) = store.into_parts();
    let idb = forge_delta(&mut kv, &text(92, 5000), &[ida]);
    let idc = forge_delta(&mut kv, &text(93, 5000), &[idb]);
    // Two records using dictionary v1 (the raw-content header is a valid dictionary).
    kv.entries_mut()
        .insert(version_key(tag::DICT, 1), seal(&[&RAW_CONTENT_HEADER]));
    kv.entries_mut()
        .insert(version_key(tag::DICT_COUNT, 1), seal(&[&encode_count(2)]));
    let mut meta = store_meta(&kv);
    let (y, z) = (text(94, 3000), text(95, 3000));
    let idy = forge(&mut kv, &y, raw_frame(&y), meta.seq, &[], 1, 1);
    let idz = forge(&mut kv, &z, raw_frame(&z), meta.seq + 1, &[], 1, 1);
    meta.seq += 2;
    meta.last_dictionary = 1;
    set_store_meta(&mut kv, &meta);
    let store = CodeStore::open(kv, c, small_chunks()).unwrap();
    assert_sound(&store);

    let (mut kv, c) = store.into_parts();
    for id in [idc, idb, idedited, idz] {
        edit(&mut kv, &id, |m| m.pins = 0);
    }
    let mut store = CodeStore::open(kv, c, small_chunks()).unwrap();
    assert!(!store.verify(false).unwrap().problems.is_empty());
    let before = store.stats().unwrap().total_bytes;
    let report = store.gc().unwrap();
    assert_eq!(report.records, 4, "{report:?}");
    assert_eq!(report.dictionaries, 0, "{report:?}");
    assert_sound(&store);
    assert_eq!(before - store.stats().unwrap().total_bytes, report.bytes);
    assert_eq!(store.ids().len(), 3);
    assert_eq!(store.get(&ida).unwrap(), a);
    assert_eq!(store.get(&idbase).unwrap(), base);
    assert_eq!(store.get(&idy).unwrap(), y);
    assert_eq!(store.record_stats(&ida).unwrap().dependents, 0);
    // Nothing left to collect.
    assert_eq!(store.gc().unwrap(), GcReport::default());
}

/// Chunk counts forged to the edges of `u64`: adding a use to one at the top is an error (not
/// a wrap to zero that would drop the chunk), and releasing a use of one past `i64::MAX`
/// computes without overflow; `gc` then sets both to their uses.
#[test]
fn forged_chunk_counts_at_the_edges() {
    let mut store = open(small_chunks());
    let base = noise(20, 30_000);
    let idbase = store.put_blob(&base, None).unwrap().id;
    let (mut kv, c) = store.into_parts();
    let chunks: Vec<Vec<u8>> = kv
        .entries()
        .keys()
        .filter(|k| k[0] == tag::CHUNK)
        .cloned()
        .collect();
    assert!(chunks.len() >= 4);
    let set_count = |kv: &mut MemKv, key: &[u8], count: u64| {
        let object = Object::Chunk(key_id(key).unwrap());
        let value = kv.entries()[key].clone();
        let mut chunk = ChunkBody::decode(unseal(object, &value).unwrap()).unwrap();
        chunk.count = count;
        kv.entries_mut()
            .insert(key.to_vec(), seal(&[&chunk.encode()]));
    };
    for key in &chunks {
        set_count(&mut kv, key, u64::MAX);
    }
    let mut store = CodeStore::open(kv, c, small_chunks()).unwrap();
    let mut edited = base.clone();
    edited[25_000] ^= 1;
    match store.put_blob(&edited, Some(&idbase)) {
        Err(StoreError::Corrupt {
            object: Object::Chunk(_),
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(store.get(&idbase).unwrap(), base);

    let (mut kv, c) = store.into_parts();
    for key in &chunks {
        set_count(&mut kv, key, 1 << 63);
    }
    let mut store = CodeStore::open(kv, c, small_chunks()).unwrap();
    let other = store.put(&text(21, 2000)).unwrap().id;
    store.delete(&idbase).unwrap();
    assert!(!store.verify(false).unwrap().problems.is_empty());
    store.gc().unwrap();
    assert_sound(&store);
    assert_eq!(store.stats().unwrap().chunks, 0);
    assert_eq!(store.ids(), [other]);
}
