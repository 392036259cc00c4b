//! The code store: content-addressed contract bytecode and data blobs, compressed,
//! deduplicated and delta-encoded, over any [`KvStore`].
//!
//! # How a record is stored
//!
//! A record's identity is the blake3 digest of its original bytes ([`CodeId`]). On a put the
//! store plans several encodings and keeps the smallest:
//!
//! - **full**: one zstd frame, with the store's current trained dictionary when it has one;
//! - **delta**: one zstd frame whose window starts with the content of up to [`MAX_REFS`] other
//!   records, the previous version given to [`CodeStore::put_upgrade`] and the stored records
//!   most similar to the new one (by [`Sketch`]); the predecessor or the most similar record
//!   sits nearest to the new content, where matches are cheapest;
//! - **chunked**: content-defined chunks ([`Chunker`]) stored once and shared, with exact
//!   reference counts; considered for data blobs and large code.
//!
//! Every frame is decoded by the core's decoder (ruzstd) and checked against the original bytes
//! before anything is written, and every read checks the digest of what it returns: a damaged
//! store gives errors, never wrong bytes. Reference chains are bounded in depth and in the bytes
//! a read may have to decode ([`StoreConfig::max_depth`], [`StoreConfig::max_closure_bytes`],
//! [`StoreConfig::max_read_bytes`]): past the bound the store picks other references or a full
//! record.
//!
//! # Reading
//!
//! A read decodes each record it needs once, however many of the records above it refer to it
//! and whatever the cache keeps. Before decoding anything it counts, from the metadata alone,
//! what it would decode (each record's size, the reference content of its frame, and
//! [`READ_OVERHEAD`]); past [`StoreConfig::max_read_bytes`] it fails with
//! [`StoreError::ReadBudget`]. The count depends on the stored records only, not on what is
//! cached, so every node gives the same answer; a forged store costs a read at most the budget.
//!
//! # Counting references
//!
//! A record is *live* while it has pins (puts minus deletes) and *stored* while it is live or
//! another stored record refers to it. Chunks and dictionaries count the records that use them.
//! Every operation writes one atomic [`WriteBatch`], so the counts are exact after any crash, and
//! objects whose count falls to zero are removed in the same batch. [`CodeStore::verify`]
//! recounts everything from scratch; [`CodeStore::gc`] repairs a store edited behind its back:
//! it removes every record no live record reaches, with whatever only they held, and sets every
//! remaining count to what it finds. [`CodeStore::open`] raises the sequence counter and the
//! last dictionary version above every one stored, so that stale store metadata never hands
//! out a number in use.
//!
//! # Dictionaries
//!
//! When the live content has grown enough ([`DictionaryPolicy`]), the store trains a dictionary
//! from the contracts it already holds (never from the one being stored), keeps it under a new
//! version, and compresses new records with it. Dictionaries are stored, counted and collected
//! like everything else; their bytes count toward the store's size.

pub mod chunk;
pub mod codec;
pub mod format;
pub mod sketch;

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use alloc::{format, vec};

use hashbrown::{HashMap, HashSet};

use crate::digest::{ChunkId, CodeId, Digest};
use crate::error::{Corruption, Object, StoreError};
use crate::host::{Compressor, KvStore, Level, Reference, WriteBatch};
use crate::lru::Lru;
use crate::wire::{Problem, WireError};

pub use chunk::{ChunkConfig, Chunker, Chunks};
pub use codec::{RuzstdCompressor, decode_frame};
pub use format::{Encoding, FORMAT_VERSION, MAX_REFS, RecordMeta};
pub use sketch::{SIMILARITY_ONE, Sketch};

use format::{
    ChunkBody, INLINE_MAX, STORE_META_KEY, StoreMeta, decode_chunk_list, decode_count,
    encode_chunk_list, encode_count, id_key, key_id, key_version, seal, tag, unseal, version_key,
    with_magic, without_magic,
};

/// When the store trains a new dictionary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DictionaryPolicy {
    /// Train dictionaries at all (needs a compressor that takes references).
    pub enabled: bool,
    /// Largest dictionary, in bytes.
    pub size: usize,
    /// Live records needed before the first training.
    pub min_records: usize,
    /// Live raw bytes needed before the first training.
    pub min_bytes: u64,
    /// Retrain when the live raw bytes have grown by this many percent since the last training.
    pub growth_percent: u32,
    /// Most bytes of samples given to the trainer (newest records first).
    pub max_training_bytes: usize,
}

impl Default for DictionaryPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            size: 32 * 1024,
            min_records: 8,
            min_bytes: 512 * 1024,
            growth_percent: 300,
            max_training_bytes: 16 << 20,
        }
    }
}

/// Configuration of a [`CodeStore`]. Reads depend only on the bounds of what one read may decode
/// (`max_size`, `max_read_bytes`); everything else steers writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Compression effort for new records.
    pub level: Level,
    /// Largest record accepted, in bytes.
    pub max_size: usize,
    /// Chunk sizes.
    pub chunking: ChunkConfig,
    /// Code at least this large is also considered for chunking (blobs always are).
    pub chunk_threshold: usize,
    /// Most records a new record may refer to (at most [`MAX_REFS`]).
    pub max_refs: usize,
    /// Longest chain of references below a new record.
    pub max_depth: u32,
    /// Most bytes a read of a new record may have to decode, references included.
    pub max_closure_bytes: u64,
    /// Look for similar stored records to refer to, when no previous version is given.
    pub find_similar: bool,
    /// Least similarity (out of [`SIMILARITY_ONE`]) for a record to be tried as a reference.
    pub min_similarity: u32,
    /// Dictionary training.
    pub dictionary: DictionaryPolicy,
    /// Bytes of decoded content kept in memory for reads.
    pub cache_bytes: usize,
    /// Most bytes one read may decode. Each record the read decodes counts once, however many
    /// records refer to it: its size, the content of the records its frame is decoded against,
    /// and [`READ_OVERHEAD`]. A read past the budget fails with [`StoreError::ReadBudget`]
    /// before decoding anything; writes choose references that keep the new record within it.
    /// The default, 256 MiB, is four times the default `max_size`.
    pub max_read_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            level: Level::Balanced,
            max_size: 64 << 20,
            chunking: ChunkConfig::default(),
            chunk_threshold: 4 << 20,
            max_refs: MAX_REFS,
            max_depth: 32,
            max_closure_bytes: 32 << 20,
            find_similar: true,
            min_similarity: SIMILARITY_ONE / 16,
            dictionary: DictionaryPolicy::default(),
            cache_bytes: 64 << 20,
            max_read_bytes: 256 << 20,
        }
    }
}

/// How a record is stored, for statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// On its own (possibly with a dictionary).
    Full,
    /// Relative to other records.
    Delta,
    /// As shared chunks.
    Chunked,
}

impl RecordKind {
    fn of(meta: &RecordMeta) -> Self {
        match meta.encoding {
            Encoding::Chunked => RecordKind::Chunked,
            _ if !meta.refs.is_empty() => RecordKind::Delta,
            _ => RecordKind::Full,
        }
    }
}

/// What a put did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutReport {
    /// The record's identity.
    pub id: CodeId,
    /// Whether the record was new (otherwise only its pin count grew).
    pub created: bool,
    /// How it is stored.
    pub kind: RecordKind,
    /// Its size.
    pub raw_bytes: u64,
    /// Bytes this put added to the store (payload, metadata, new chunks, keys).
    pub stored_bytes: u64,
    /// The records it refers to.
    pub refs: Vec<CodeId>,
    /// The dictionary version it uses, if any.
    pub dictionary: Option<u32>,
    /// Length of its chain of references.
    pub depth: u32,
}

/// Statistics of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordStats {
    /// The record's identity.
    pub id: CodeId,
    /// How it is stored.
    pub kind: RecordKind,
    /// Whether it is a data blob.
    pub blob: bool,
    /// Its size.
    pub raw_bytes: u64,
    /// Bytes of its own payload and metadata, keys included.
    pub stored_bytes: u64,
    /// Pins (puts minus deletes).
    pub pins: u64,
    /// Records that refer to it.
    pub dependents: u64,
    /// The records it refers to.
    pub refs: Vec<CodeId>,
    /// Its dictionary version, if any.
    pub dictionary: Option<u32>,
    /// Length of its reference chain.
    pub depth: u32,
}

/// Counts and bytes of one kind of record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindStats {
    /// Records of this kind (live or kept as references).
    pub records: u64,
    /// Their original size.
    pub raw_bytes: u64,
    /// Their payload and metadata, keys included (chunks counted apart).
    pub stored_bytes: u64,
}

/// Statistics of the whole store. Every byte of the backend is counted in exactly one field
/// of `full`, `delta`, `chunked`, `chunk_bytes`, `dictionary_bytes` or `index_bytes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Live records.
    pub live_records: u64,
    /// Their original size.
    pub live_raw_bytes: u64,
    /// Records kept only because others refer to them.
    pub retained_records: u64,
    /// Full records.
    pub full: KindStats,
    /// Delta records.
    pub delta: KindStats,
    /// Chunked records (their chunk lists; chunks are in `chunk_bytes`).
    pub chunked: KindStats,
    /// Stored chunks.
    pub chunks: u64,
    /// Bytes of chunks and their counts.
    pub chunk_bytes: u64,
    /// Stored dictionaries.
    pub dictionaries: u64,
    /// Bytes of dictionaries and their counts.
    pub dictionary_bytes: u64,
    /// Bytes of the store's metadata.
    pub index_bytes: u64,
    /// Every byte of every key and value in the backend.
    pub total_bytes: u64,
}

/// What [`CodeStore::verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records checked.
    pub records: u64,
    /// Chunks checked.
    pub chunks: u64,
    /// Dictionaries checked.
    pub dictionaries: u64,
    /// Every inconsistency, in words. Empty for a sound store.
    pub problems: Vec<String>,
}

/// What [`CodeStore::gc`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Records removed.
    pub records: u64,
    /// Chunks removed.
    pub chunks: u64,
    /// Dictionaries removed.
    pub dictionaries: u64,
    /// Bytes freed (keys and values).
    pub bytes: u64,
}

/// An encoding planned for a new record.
struct Plan {
    encoding: Encoding,
    /// The payload: raw bytes, a zstd frame without magic, or a chunk list.
    payload: Vec<u8>,
    dictionary: u32,
    /// Records referred to, nearest first in the window.
    refs: heapless::Vec<CodeId, MAX_REFS>,
    /// The reference content the frame was compressed against (for verification).
    prefix: Vec<u8>,
    /// Chunk list of a chunked record, and the chunks not stored yet.
    chunks: Vec<(ChunkId, u32)>,
    new_chunks: Vec<NewChunk>,
}

/// A chunk a plan adds to the store.
struct NewChunk {
    id: ChunkId,
    encoding: Encoding,
    dictionary: u32,
    raw_len: u64,
    payload: Vec<u8>,
}

impl NewChunk {
    fn body(&self, count: u64) -> Vec<u8> {
        ChunkBody {
            count,
            encoding: self.encoding,
            dictionary: self.dictionary,
            raw_len: self.raw_len,
            payload: &self.payload,
        }
        .encode()
    }
}

impl Plan {
    /// Bytes the plan adds to the store, near enough to compare plans: the payload, a varint
    /// per reference, and each new chunk with its key, seal and header.
    fn cost(&self) -> u64 {
        let chunks: usize = self
            .new_chunks
            .iter()
            .map(|c| c.payload.len() + 33 + format::SEAL_LEN + 6)
            .sum();
        (self.payload.len() + 3 * self.refs.len() + chunks) as u64
    }
}

/// A stored record in memory: its metadata and what is derived from it.
#[derive(Debug, Clone)]
struct Entry {
    meta: RecordMeta,
    /// Length of the longest chain of references below the record.
    depth: u32,
}

/// A dictionary and its version.
type VersionedDictionary = (u32, Arc<[u8]>);

/// Pending changes to record metadata, written with a batch and applied to the index after it
/// commits. `None` removes the record.
type Pending = HashMap<CodeId, Option<RecordMeta>>;

/// The content-addressed code store. See the [module documentation](self).
pub struct CodeStore<K: KvStore, C: Compressor> {
    kv: K,
    compressor: C,
    config: StoreConfig,
    chunker: Chunker,
    meta: StoreMeta,
    /// Every stored record.
    index: HashMap<CodeId, Entry>,
    /// Sequence number to record.
    by_seq: HashMap<u64, CodeId>,
    /// Records whose metadata could not be read at open.
    damaged: HashMap<CodeId, Corruption>,
    cache: crate::sync::Mutex<Lru<CodeId, Arc<[u8]>>>,
    dictionaries: crate::sync::Mutex<HashMap<u32, Arc<[u8]>>>,
}

/// Records considered as references for one put (the predecessor and the most similar).
const POOL: usize = 12;

/// Records considered as references for a small input, all of them tried alone.
const POOL_SMALL: usize = 32;

/// Best-ranked references whose combinations are tried.
const COMBINE: usize = 6;

/// A put of a small input may process (compress, or index as reference) at least this many
/// bytes while searching references...
const SEARCH_FLOOR: usize = 4 << 20;

/// ... or this many times its input, whichever is more.
const SEARCH_FACTOR: usize = 32;

/// Inputs up to this size get the wide reference search.
const EXHAUSTIVE_BELOW: usize = 64 * 1024;

/// The `k`-element subsets of `0..n`, each ascending, in lexicographic order.
fn combinations(n: usize, k: usize) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut combo: Vec<usize> = (0..k).collect();
    if k == 0 || k > n {
        return out;
    }
    loop {
        out.push(combo.clone());
        // Advance the rightmost index that can move.
        let Some(i) = (0..k).rev().find(|&i| combo[i] < n - k + i) else {
            return out;
        };
        combo[i] += 1;
        for j in i + 1..k {
            combo[j] = combo[j - 1] + 1;
        }
    }
}

/// Dictionary training samples when whole contracts are too few for the trainer:
/// content-defined pieces of them.
const TRAINING_PIECES: ChunkConfig = ChunkConfig {
    min: 4 * 1024,
    avg: 16 * 1024,
    max: 64 * 1024,
};

/// Decoding stops past this many nested references, whatever the configuration that wrote them.
const DECODE_DEPTH_LIMIT: usize = 64;

/// What each record a read decodes costs toward [`StoreConfig::max_read_bytes`] besides its
/// content: fetching, unsealing and checking it. It bounds the records one read may touch.
pub const READ_OVERHEAD: u64 = 1024;

/// Depth given to records whose references cannot be followed: never chosen as references.
const UNUSABLE_DEPTH: u32 = u32::MAX / 2;

fn backend<E: core::error::Error + Send + Sync + 'static>(e: E) -> StoreError {
    StoreError::backend(e)
}

/// A stored number too large to go on from (only edited values get there), as corruption of
/// `object`.
/// The body of chunk `cid` in its stored `value`.
fn chunk_body<'a>(cid: &ChunkId, value: &'a [u8]) -> Result<ChunkBody<'a>, StoreError> {
    let object = Object::Chunk(*cid);
    ChunkBody::decode(unseal(object, value)?).map_err(|e| StoreError::corrupt(object, e))
}

fn too_large(object: Object, field: &'static str, value: u64, limit: u64) -> StoreError {
    StoreError::corrupt(
        object,
        WireError {
            field,
            offset: 0,
            problem: Problem::TooLarge { value, limit },
        },
    )
}

/// Depth of every record: the longest chain of references below it. Records on a cycle or
/// above a missing reference get [`UNUSABLE_DEPTH`].
fn compute_depths(
    metas: &HashMap<CodeId, RecordMeta>,
    by_seq: &HashMap<u64, CodeId>,
) -> HashMap<CodeId, u32> {
    let mut depth: HashMap<CodeId, u32> = HashMap::new();
    let mut on_path: HashSet<CodeId> = HashSet::new();
    let mut ids: Vec<&CodeId> = metas.keys().collect();
    ids.sort_unstable();
    for start in ids {
        let mut stack = vec![(*start, 0usize)];
        while let Some((id, next)) = stack.pop() {
            if next == 0 {
                if depth.contains_key(&id) {
                    continue;
                }
                on_path.insert(id);
            }
            let refs = &metas[&id].refs;
            if let Some(seq) = refs.get(next) {
                stack.push((id, next + 1));
                match by_seq.get(seq) {
                    Some(r) if on_path.contains(r) => {
                        depth.insert(*r, UNUSABLE_DEPTH);
                    }
                    Some(r) if !depth.contains_key(r) => stack.push((*r, 0)),
                    _ => {}
                }
                continue;
            }
            let d = refs
                .iter()
                .map(|s| {
                    by_seq
                        .get(s)
                        .and_then(|r| depth.get(r))
                        .map_or(UNUSABLE_DEPTH, |d| d.saturating_add(1).min(UNUSABLE_DEPTH))
                })
                .max()
                .unwrap_or(0);
            on_path.remove(&id);
            depth.insert(id, d);
        }
    }
    depth
}

impl<K: KvStore, C: Compressor> CodeStore<K, C> {
    /// Opens the store kept in `kv`, creating it if `kv` is empty.
    ///
    /// The counters the store hands out (sequence numbers, dictionary versions) are raised
    /// above every one a stored object has or refers to, whatever the store metadata says, so
    /// that a stale or lost metadata value never reuses them; a raised value is written back.
    ///
    /// # Errors
    /// Backend failures, an unsupported layout version, or damaged store metadata. Damaged
    /// record metadata does not fail the open: reads of those records fail instead.
    pub fn open(mut kv: K, compressor: C, config: StoreConfig) -> Result<Self, StoreError> {
        let mut metas = HashMap::new();
        let mut damaged = HashMap::new();
        kv.scan(&[tag::RECORD], &mut |key, value| {
            let Some(id) = key_id(key) else { return };
            let object = Object::Record(id);
            let meta = unseal(object, value).and_then(|body| {
                RecordMeta::decode(body)
                    .map(|(m, _)| m)
                    .map_err(|e| StoreError::corrupt(object, e))
            });
            match meta {
                Ok(m) => {
                    metas.insert(id, m);
                }
                Err(StoreError::Corrupt { reason, .. }) => {
                    damaged.insert(id, reason);
                }
                Err(_) => {}
            }
        })
        .map_err(backend)?;
        // Every number in use, duplicates and dangling references included (decoding bounds
        // them by `MAX_SEQ`: one more cannot overflow).
        let next_seq = metas
            .values()
            .flat_map(|m| m.refs.iter().chain([&m.seq]))
            .max()
            .map_or(0, |s| s + 1);
        let mut last_dictionary = metas.values().map(|m| m.dictionary).max().unwrap_or(0);
        for t in [tag::DICT, tag::DICT_COUNT] {
            kv.scan(&[t], &mut |key, _| {
                if let Some(v) = key_version(key) {
                    last_dictionary = last_dictionary.max(v);
                }
            })
            .map_err(backend)?;
        }
        let mut by_seq = HashMap::new();
        for (id, m) in &metas {
            if let Some(other) = by_seq.insert(m.seq, *id) {
                // Two records claim one sequence number: neither can be referred to safely.
                damaged.insert(other, Corruption::Unsupported { found: 0 });
                damaged.insert(*id, Corruption::Unsupported { found: 0 });
            }
        }
        for id in damaged.keys() {
            if let Some(m) = metas.remove(id) {
                by_seq.remove(&m.seq);
            }
        }
        let depths = compute_depths(&metas, &by_seq);
        let index: HashMap<CodeId, Entry> = metas
            .into_iter()
            .map(|(id, meta)| {
                let depth = depths.get(&id).copied().unwrap_or(UNUSABLE_DEPTH);
                (id, Entry { meta, depth })
            })
            .collect();
        let stored = match kv.get(STORE_META_KEY).map_err(backend)? {
            Some(v) => Some(StoreMeta::decode(unseal(Object::StoreMeta, &v)?)?),
            // A new store, or one whose metadata was lost.
            None => None,
        };
        let mut meta = stored.clone().unwrap_or_default();
        meta.seq = meta.seq.max(next_seq);
        meta.last_dictionary = meta
            .last_dictionary
            .max(last_dictionary)
            .max(meta.dictionary);
        if stored.as_ref() != Some(&meta) {
            let mut batch = WriteBatch::new();
            batch.put(STORE_META_KEY.to_vec(), seal(&[&meta.encode()]));
            kv.apply(batch).map_err(backend)?;
        }
        let chunker = Chunker::new(config.chunking);
        let cache = crate::sync::Mutex::new(Lru::new(config.cache_bytes));
        Ok(Self {
            kv,
            compressor,
            config,
            chunker,
            meta,
            index,
            by_seq,
            damaged,
            cache,
            dictionaries: crate::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Changes the configuration for later writes and reads.
    pub fn set_config(&mut self, config: StoreConfig) {
        self.chunker = Chunker::new(config.chunking);
        if (config.max_size, config.max_read_bytes, config.cache_bytes)
            != (
                self.config.max_size,
                self.config.max_read_bytes,
                self.config.cache_bytes,
            )
        {
            // Cached contents passed the old read bounds: a read must not succeed from the
            // cache where a cold read would fail.
            *self.cache.lock() = Lru::new(config.cache_bytes);
        }
        self.config = config;
    }

    /// The backend.
    pub fn kv(&self) -> &K {
        &self.kv
    }

    /// The key/value store, writable: for a host that collects the store's write batches into
    /// a transaction of its own (a node commits a block's blobs with its state). Writing to it
    /// directly bypasses the store's index; if the host's transaction fails, the store must be
    /// opened again.
    pub fn kv_mut(&mut self) -> &mut K {
        &mut self.kv
    }

    /// Closes the store and returns its backend and compressor.
    pub fn into_parts(self) -> (K, C) {
        (self.kv, self.compressor)
    }

    /// The dictionary version new records use, if any.
    pub fn current_dictionary(&self) -> Option<u32> {
        (self.meta.dictionary != 0).then_some(self.meta.dictionary)
    }

    /// Whether `id` is live.
    pub fn contains(&self, id: &CodeId) -> bool {
        self.index.get(id).is_some_and(|e| e.meta.is_live())
    }

    /// The live records, sorted by id.
    pub fn ids(&self) -> Vec<CodeId> {
        let mut ids: Vec<CodeId> = self
            .index
            .iter()
            .filter(|(_, e)| e.meta.is_live())
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    fn ref_id(&self, from: &CodeId, seq: u64) -> Result<CodeId, StoreError> {
        self.by_seq.get(&seq).copied().ok_or(StoreError::Dangling {
            from: Object::Record(*from),
            to: Object::StoreMeta,
        })
    }

    /// Stores contract code. Storing bytes already stored adds a pin.
    ///
    /// # Errors
    /// [`StoreError::TooLarge`]; [`StoreError::ReadBudget`] for a new record that could not be
    /// read back within [`StoreConfig::max_read_bytes`]; compressor and backend failures, or
    /// corruption found in the records chosen as references.
    pub fn put(&mut self, bytes: &[u8]) -> Result<PutReport, StoreError> {
        self.put_with(bytes, None, false)
    }

    /// Stores a new version of the live record `previous`, as a delta against it when that is
    /// smallest and the chain of references stays within bounds.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when `previous` is not live; otherwise as [`CodeStore::put`].
    pub fn put_upgrade(
        &mut self,
        previous: &CodeId,
        bytes: &[u8],
    ) -> Result<PutReport, StoreError> {
        self.put_with(bytes, Some(*previous), false)
    }

    /// Stores a data blob (code-as-storage), optionally as an update of the live blob
    /// `previous`. Blobs are always considered for chunking.
    ///
    /// # Errors
    /// As [`CodeStore::put_upgrade`].
    pub fn put_blob(
        &mut self,
        bytes: &[u8],
        previous: Option<&CodeId>,
    ) -> Result<PutReport, StoreError> {
        self.put_with(bytes, previous.copied(), true)
    }

    fn put_with(
        &mut self,
        bytes: &[u8],
        previous: Option<CodeId>,
        blob: bool,
    ) -> Result<PutReport, StoreError> {
        if bytes.len() > self.config.max_size {
            return Err(StoreError::TooLarge {
                size: bytes.len() as u64,
                limit: self.config.max_size as u64,
            });
        }
        if let Some(p) = previous
            && !self.contains(&p)
        {
            return Err(StoreError::NotFound(p));
        }
        let id = Digest::of(bytes);
        if let Some(reason) = self.damaged.get(&id) {
            return Err(StoreError::corrupt(Object::Record(id), reason.clone()));
        }
        if let Some(existing) = self.index.get(&id) {
            let mut meta = existing.meta.clone();
            meta.pins = meta.pins.checked_add(1).ok_or(StoreError::TooLarge {
                size: u64::from(meta.pins) + 1,
                limit: u32::MAX.into(),
            })?;
            let report = self.report(&id, &meta, existing.depth, false, 0);
            let mut pending = Pending::new();
            pending.insert(id, Some(meta));
            self.commit(WriteBatch::new(), pending, None, self.meta.clone())?;
            return Ok(report);
        }
        let needed = READ_OVERHEAD.saturating_add(bytes.len() as u64);
        if needed > self.config.max_read_bytes {
            // Stored, a new record could not be read back under this configuration.
            return Err(StoreError::ReadBudget {
                at: id,
                needed,
                limit: self.config.max_read_bytes,
            });
        }
        self.maybe_train_dictionary()?;
        let sketch = Sketch::of(bytes);
        let plan = self.plan(bytes, previous, blob, &sketch)?;
        self.verify_plan(&id, bytes, &plan)?;
        self.commit_new(id, bytes.len() as u64, blob, sketch, plan)
    }

    fn report(
        &self,
        id: &CodeId,
        meta: &RecordMeta,
        depth: u32,
        created: bool,
        added: u64,
    ) -> PutReport {
        PutReport {
            id: *id,
            created,
            kind: RecordKind::of(meta),
            raw_bytes: meta.raw_len,
            stored_bytes: added,
            refs: meta
                .refs
                .iter()
                .filter_map(|s| self.by_seq.get(s).copied())
                .collect(),
            dictionary: (meta.dictionary != 0).then_some(meta.dictionary),
            depth,
        }
    }

    /// Chooses the smallest encoding of `bytes`.
    fn plan(
        &self,
        bytes: &[u8],
        previous: Option<CodeId>,
        blob: bool,
        sketch: &Sketch,
    ) -> Result<Plan, StoreError> {
        let level = self.config.level;
        let mut best = Plan {
            encoding: Encoding::Raw,
            payload: bytes.to_vec(),
            dictionary: 0,
            refs: heapless::Vec::new(),
            prefix: Vec::new(),
            chunks: Vec::new(),
            new_chunks: Vec::new(),
        };
        let consider = |best: &mut Plan, plan: Plan| {
            if plan.cost() < best.cost() {
                *best = plan;
            }
        };
        let dictionary = match self.compressor.supports_references() && level != Level::None {
            true => self.dictionary_for_writes()?,
            false => None,
        };
        if level != Level::None {
            consider(&mut best, self.frame_plan(bytes, None, &[])?);
            if let Some(d) = &dictionary {
                consider(&mut best, self.frame_plan(bytes, Some(d), &[])?);
            }
            if self.compressor.supports_references() {
                let pool = self.reference_pool(previous, sketch, bytes.len() as u64);
                for set in self.reference_sets(bytes, dictionary.as_ref(), &pool, &mut best)? {
                    consider(
                        &mut best,
                        self.frame_plan(bytes, dictionary.as_ref(), &set)?,
                    );
                }
            }
        }
        let chunkable = if blob {
            bytes.len() >= 2 * self.config.chunking.min as usize
        } else {
            bytes.len() >= self.config.chunk_threshold
        };
        if chunkable {
            let chunked = self.chunk_plan(bytes, dictionary.as_ref())?;
            // A blob's chunks are what its later versions and other blobs share: blobs take
            // them unless they cost more than an eighth over the best single encoding.
            let allowance = if blob { best.cost() / 8 } else { 0 };
            if chunked.cost() <= best.cost() + allowance {
                best = chunked;
            }
        }
        Ok(best)
    }

    fn compress(
        &self,
        bytes: &[u8],
        reference: Reference<'_>,
        object: Object,
    ) -> Result<Vec<u8>, StoreError> {
        let frame = self
            .compressor
            .compress(bytes, self.config.level, reference)?;
        without_magic(frame).map_err(|e| StoreError::corrupt(object, e))
    }

    /// One zstd frame at the configured level, with an optional dictionary and the content of
    /// `bases` (nearest first) as prefix.
    fn frame_plan(
        &self,
        bytes: &[u8],
        dictionary: Option<&VersionedDictionary>,
        bases: &[CodeId],
    ) -> Result<Plan, StoreError> {
        let mut prefix = Vec::new();
        for base in bases.iter().rev() {
            prefix.extend_from_slice(&self.content(base)?);
        }
        let reference = Reference {
            dictionary: dictionary.map(|(_, d)| &d[..]),
            prefix: &prefix,
        };
        let payload = self.compress(bytes, reference, Object::Record(Digest::of(bytes)))?;
        Ok(Plan {
            encoding: Encoding::Zstd,
            payload,
            dictionary: dictionary.map_or(0, |(v, _)| *v),
            refs: bases.iter().copied().collect(),
            prefix,
            chunks: Vec::new(),
            new_chunks: Vec::new(),
        })
    }

    /// Content-defined chunks, compressed one by one; chunks already stored cost nothing.
    fn chunk_plan(
        &self,
        bytes: &[u8],
        dictionary: Option<&VersionedDictionary>,
    ) -> Result<Plan, StoreError> {
        let mut chunks = Vec::new();
        let mut new_chunks = Vec::new();
        let mut seen = HashSet::new();
        for piece in self.chunker.chunks(bytes) {
            let cid = Digest::of(piece);
            chunks.push((cid, piece.len() as u32));
            if !seen.insert(cid)
                || self
                    .kv
                    .get(&id_key(tag::CHUNK, &cid))
                    .map_err(backend)?
                    .is_some()
            {
                continue;
            }
            let mut chunk = NewChunk {
                id: cid,
                encoding: Encoding::Raw,
                dictionary: 0,
                raw_len: piece.len() as u64,
                payload: piece.to_vec(),
            };
            if self.config.level != Level::None {
                let usable = dictionary.filter(|_| self.compressor.supports_references());
                let reference = Reference {
                    dictionary: usable.map(|(_, d)| &d[..]),
                    prefix: &[],
                };
                let frame = self.compress(piece, reference, Object::Chunk(cid))?;
                if frame.len() < piece.len() {
                    chunk.encoding = Encoding::Zstd;
                    chunk.dictionary = usable.map_or(0, |(v, _)| *v);
                    chunk.payload = frame;
                }
            }
            new_chunks.push(chunk);
        }
        Ok(Plan {
            encoding: Encoding::Chunked,
            payload: encode_chunk_list(&chunks),
            dictionary: 0,
            refs: heapless::Vec::new(),
            prefix: Vec::new(),
            chunks,
            new_chunks,
        })
    }

    /// Records that may serve as references, best guess first: the previous version, then the
    /// stored records estimated to share the most bytes with the input; each shallow enough to
    /// stay within the depth bound.
    ///
    /// With Jaccard similarity `J` between two feature sets, the shared part is about
    /// `J / (1 + J)` of their combined size: ranking by it rather than by `J` alone prefers a
    /// large, moderately similar record over a small one whose few sketch bins happen to agree.
    fn reference_pool(&self, previous: Option<CodeId>, sketch: &Sketch, len: u64) -> Vec<CodeId> {
        let mut pool: Vec<CodeId> = previous.into_iter().collect();
        if self.config.find_similar {
            let one = u64::from(SIMILARITY_ONE);
            let mut scored: Vec<(u64, u64, CodeId)> = self
                .index
                .iter()
                .filter(|(id, _)| Some(**id) != previous)
                .filter_map(|(id, e)| {
                    let sim = e.meta.sketch.similarity(sketch);
                    // Small inputs try every pool member cheaply: no threshold for them.
                    let wanted = sim >= self.config.min_similarity
                        || (len as usize <= EXHAUSTIVE_BELOW && sim > 0);
                    wanted.then(|| {
                        let sim = u64::from(sim);
                        let shared = (sim.saturating_mul(len.saturating_add(e.meta.raw_len))
                            / (one + sim))
                            .min(len.min(e.meta.raw_len));
                        (shared, e.meta.seq, *id)
                    })
                })
                .collect();
            scored.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
            pool.extend(scored.iter().map(|(_, _, id)| *id));
        }
        let small = len as usize <= EXHAUSTIVE_BELOW;
        if small && pool.len() < POOL_SMALL {
            // Small contracts built with the same toolchain share runtime code that their
            // sketches, dominated by their own code, do not reveal: fill the pool with other
            // small records, newest first, and let trial compression judge.
            let mut others: Vec<(u64, CodeId)> = self
                .index
                .iter()
                .filter(|(id, e)| e.meta.raw_len as usize <= EXHAUSTIVE_BELOW && !pool.contains(id))
                .map(|(id, e)| (e.meta.seq, *id))
                .collect();
            others.sort_unstable_by(|a, b| b.cmp(a));
            pool.extend(others.into_iter().map(|(_, id)| id).take(POOL_SMALL));
        }
        pool.retain(|id| {
            self.index
                .get(id)
                .is_some_and(|e| e.depth.saturating_add(1) <= self.config.max_depth)
        });
        pool.truncate(if small { POOL_SMALL } else { POOL });
        pool
    }

    /// Whether a record of `len` bytes referring to `set` stays within the decode bounds: the
    /// content of everything it refers to, references of references included, at most
    /// `max_closure_bytes`, and its read within `max_read_bytes`.
    fn within_bounds(&self, set: &[CodeId], len: usize) -> bool {
        let mut seen = HashSet::new();
        let mut bytes = 0u64;
        let mut stack: Vec<CodeId> = set.to_vec();
        while let Some(x) = stack.pop() {
            if !seen.insert(x) {
                continue;
            }
            if let Some(e) = self.index.get(&x) {
                bytes = bytes.saturating_add(e.meta.raw_len);
                if bytes > self.config.max_closure_bytes {
                    return false;
                }
                stack.extend(e.meta.refs.iter().filter_map(|s| self.by_seq.get(s)));
            }
        }
        let limit = self.config.max_read_bytes;
        let own = self.refs_bytes(set.iter().copied());
        let read = READ_OVERHEAD
            .saturating_add(len as u64)
            .saturating_add(own)
            .saturating_add(self.read_cost(set, limit));
        read <= limit
    }

    /// The content size of the stored records `refs`.
    fn refs_bytes(&self, refs: impl Iterator<Item = CodeId>) -> u64 {
        refs.filter_map(|r| self.index.get(&r))
            .fold(0, |n, e| n.saturating_add(e.meta.raw_len))
    }

    /// What reading `roots` decodes, by [`StoreConfig::max_read_bytes`]'s measure: for each
    /// distinct record decoded, its size, the content its frame is decoded against and
    /// [`READ_OVERHEAD`]. Counting follows the references reads follow, from the metadata
    /// alone, and stops once past `limit`. Records not in the index count nothing: reading
    /// them fails before decoding.
    fn read_cost(&self, roots: &[CodeId], limit: u64) -> u64 {
        let mut seen = HashSet::new();
        let mut stack: Vec<CodeId> = roots.to_vec();
        let mut cost = 0u64;
        while let Some(x) = stack.pop() {
            if cost > limit {
                break;
            }
            if !seen.insert(x) {
                continue;
            }
            let Some(e) = self.index.get(&x) else {
                continue;
            };
            cost = cost
                .saturating_add(READ_OVERHEAD)
                .saturating_add(e.meta.raw_len);
            if e.meta.encoding == Encoding::Zstd {
                let refs = e
                    .meta
                    .refs
                    .iter()
                    .filter_map(|s| self.by_seq.get(s).copied());
                cost = cost.saturating_add(self.refs_bytes(refs.clone()));
                stack.extend(refs);
            }
        }
        cost
    }

    /// Sets of references to try, nearest first within each set.
    ///
    /// Below [`Level::Maximum`], one set: the first records of the pool that fit the bounds
    /// together. At [`Level::Maximum`], the nested prefixes of the pool (previous version, then
    /// most similar). Inputs up to [`EXHAUSTIVE_BELOW`] bytes, where trials are cheap and where
    /// references matter most (a tiny upgrade is mostly references), get a wider search: the
    /// pool is ranked by the size of the input compressed against each record alone (those
    /// trials are candidate plans too), then every combination of the best-ranked records is
    /// tried, nearest prefixes of the ranking first, while the search budget
    /// ([`SEARCH_FLOOR`], [`SEARCH_FACTOR`]) lasts.
    fn reference_sets(
        &self,
        bytes: &[u8],
        dictionary: Option<&VersionedDictionary>,
        pool: &[CodeId],
        best: &mut Plan,
    ) -> Result<Vec<Vec<CodeId>>, StoreError> {
        let max_refs = self.config.max_refs.min(MAX_REFS);
        let mut nested: Vec<CodeId> = Vec::new();
        let mut sets = Vec::new();
        for id in pool {
            if nested.len() == max_refs {
                break;
            }
            nested.push(*id);
            if self.within_bounds(&nested, bytes.len()) {
                sets.push(nested.clone());
            } else {
                nested.pop();
            }
        }
        if self.config.level != Level::Maximum {
            return Ok(sets.pop().into_iter().collect());
        }
        if bytes.len() > EXHAUSTIVE_BELOW {
            return Ok(sets);
        }
        // A trial costs about the bytes it compresses plus the reference bytes it indexes.
        let len = bytes.len().max(1);
        let cost = |set: &[CodeId]| -> usize {
            let refs = usize::try_from(self.refs_bytes(set.iter().copied())).unwrap_or(usize::MAX);
            len.saturating_add(refs)
        };
        let mut budget = SEARCH_FLOOR.max(SEARCH_FACTOR * len);
        let mut ranked: Vec<(u64, usize)> = Vec::new();
        for (i, base) in pool.iter().enumerate() {
            let c = cost(&[*base]);
            if budget < c || !self.within_bounds(&[*base], bytes.len()) {
                continue;
            }
            budget -= c;
            let plan = self.frame_plan(bytes, dictionary, &[*base])?;
            ranked.push((plan.cost(), i));
            if plan.cost() < best.cost() {
                *best = plan;
            }
        }
        ranked.sort_unstable();
        let top: Vec<CodeId> = ranked.iter().take(COMBINE).map(|(_, i)| pool[*i]).collect();
        let mut combos: Vec<Vec<usize>> = (2..=max_refs.min(top.len()))
            .map(|k| (0..k).collect())
            .collect();
        for k in 2..=max_refs.min(top.len()) {
            combos.extend(
                combinations(top.len(), k)
                    .into_iter()
                    .filter(|c| c.iter().enumerate().any(|(i, &x)| i != x)),
            );
        }
        let mut out = Vec::new();
        for combo in combos {
            let set: Vec<CodeId> = combo.iter().map(|&i| top[i]).collect();
            let c = cost(&set);
            if budget >= c && self.within_bounds(&set, bytes.len()) {
                budget -= c;
                out.push(set);
            }
        }
        Ok(out)
    }

    /// Decodes a planned record with the core's decoder and checks it against the original.
    fn verify_plan(&self, id: &CodeId, bytes: &[u8], plan: &Plan) -> Result<(), StoreError> {
        let object = Object::Record(*id);
        let mismatch = |object, decoded: &[u8]| {
            StoreError::corrupt(
                object,
                Corruption::Digest {
                    actual: Digest::of(decoded),
                },
            )
        };
        match plan.encoding {
            Encoding::Raw => {}
            Encoding::Zstd => {
                let dictionary = self.dictionary_bytes_opt(plan.dictionary)?;
                let reference = Reference {
                    dictionary: dictionary.as_deref(),
                    prefix: &plan.prefix,
                };
                let decoded = decode_frame(&with_magic(&plan.payload), reference, bytes.len())
                    .map_err(|e| StoreError::corrupt(object, e))?;
                if decoded != bytes {
                    return Err(mismatch(object, &decoded));
                }
            }
            Encoding::Chunked => {
                let new: HashMap<ChunkId, &NewChunk> =
                    plan.new_chunks.iter().map(|c| (c.id, c)).collect();
                let mut at = 0usize;
                for (cid, len) in &plan.chunks {
                    let piece = &bytes[at..at + *len as usize];
                    at += *len as usize;
                    if let Some(chunk) = new.get(cid) {
                        let decoded = self.decode_chunk(cid, &chunk.body(1), *len)?;
                        if decoded != piece {
                            return Err(mismatch(Object::Chunk(*cid), &decoded));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn commit_new(
        &mut self,
        id: CodeId,
        raw_len: u64,
        blob: bool,
        sketch: Sketch,
        plan: Plan,
    ) -> Result<PutReport, StoreError> {
        let separate = plan.payload.len() > INLINE_MAX;
        if self.meta.seq > format::MAX_SEQ {
            // Only edited metadata gets here: no store makes 2^62 records.
            return Err(too_large(
                Object::StoreMeta,
                "seq",
                self.meta.seq,
                format::MAX_SEQ,
            ));
        }
        let meta = RecordMeta {
            seq: self.meta.seq,
            pins: 1,
            dependents: 0,
            raw_len,
            encoding: plan.encoding,
            blob,
            separate,
            dictionary: plan.dictionary,
            refs: plan
                .refs
                .iter()
                .map(|r| {
                    self.index
                        .get(r)
                        .map(|e| e.meta.seq)
                        .ok_or(StoreError::NotFound(*r))
                })
                .collect::<Result<_, _>>()?,
            sketch,
        };
        let mut batch = WriteBatch::new();
        let mut pending = Pending::new();
        let mut added = (33 + format::SEAL_LEN + meta.encode(&[]).len()) as u64;
        if separate {
            added += (33 + format::SEAL_LEN + plan.payload.len()) as u64;
            batch.put(id_key(tag::BODY, &id), seal(&[&plan.payload]));
        } else {
            added += plan.payload.len() as u64;
        }
        for r in &plan.refs {
            let mut m = self
                .index
                .get(r)
                .ok_or(StoreError::NotFound(*r))?
                .meta
                .clone();
            m.dependents = m.dependents.checked_add(1).ok_or(StoreError::TooLarge {
                size: u64::from(m.dependents) + 1,
                limit: u32::MAX.into(),
            })?;
            pending.insert(*r, Some(m));
        }
        let mut dict_deltas = BTreeMap::new();
        if plan.dictionary != 0 {
            dict_deltas.insert(plan.dictionary, 1i64);
        }
        let mut chunk_deltas: BTreeMap<ChunkId, i64> = BTreeMap::new();
        for (cid, _) in &plan.chunks {
            *chunk_deltas.entry(*cid).or_default() += 1;
        }
        let new_chunks: HashMap<ChunkId, NewChunk> = plan
            .new_chunks
            .into_iter()
            .map(|c| {
                if c.dictionary != 0 {
                    *dict_deltas.entry(c.dictionary).or_default() += 1;
                }
                added += (33 + format::SEAL_LEN + c.body(1).len()) as u64;
                (c.id, c)
            })
            .collect();
        self.apply_chunk_deltas(&chunk_deltas, &new_chunks, &mut batch)?;
        self.apply_dict_deltas(&dict_deltas, &mut batch)?;
        let mut store_meta = self.meta.clone();
        // At most `MAX_SEQ` (checked above): no overflow.
        store_meta.seq += 1;
        pending.insert(id, Some(meta.clone()));
        let payload = if separate { Vec::new() } else { plan.payload };
        self.commit(batch, pending, Some((id, payload)), store_meta)?;
        let depth = self.index.get(&id).map_or(0, |e| e.depth);
        Ok(self.report(&id, &meta, depth, true, added))
    }

    /// The inline payload of a stored record (empty when it is separate).
    fn inline_payload(&self, id: &CodeId) -> Result<Vec<u8>, StoreError> {
        let object = Object::Record(*id);
        let value = self
            .kv
            .get(&id_key(tag::RECORD, id))
            .map_err(backend)?
            .ok_or(StoreError::NotFound(*id))?;
        let (_, payload) = RecordMeta::decode(unseal(object, &value)?)
            .map_err(|e| StoreError::corrupt(object, e))?;
        Ok(payload.to_vec())
    }

    /// Writes `batch`, the records' metadata in `pending` (with `new`'s inline payload for the
    /// record being created, the stored one for others) and the store metadata; once the batch
    /// is durable, updates the in-memory index.
    fn commit(
        &mut self,
        mut batch: WriteBatch,
        pending: Pending,
        new: Option<(CodeId, Vec<u8>)>,
        store_meta: StoreMeta,
    ) -> Result<(), StoreError> {
        for (id, meta) in &pending {
            match meta {
                Some(m) => {
                    let payload = match &new {
                        Some((new_id, payload)) if new_id == id => payload.clone(),
                        _ if m.separate => Vec::new(),
                        _ => self.inline_payload(id)?,
                    };
                    batch.put(id_key(tag::RECORD, id), seal(&[&m.encode(&payload)]));
                }
                None => {
                    batch.delete(id_key(tag::RECORD, id));
                    if self.index.get(id).is_some_and(|e| e.meta.separate) {
                        batch.delete(id_key(tag::BODY, id));
                    }
                }
            }
        }
        if store_meta != self.meta {
            batch.put(STORE_META_KEY.to_vec(), seal(&[&store_meta.encode()]));
        }
        self.kv.apply(batch).map_err(backend)?;
        for (id, meta) in pending {
            match meta {
                Some(m) => {
                    let depth = match self.index.get(&id) {
                        Some(e) => e.depth,
                        None => m
                            .refs
                            .iter()
                            .map(|s| {
                                self.by_seq
                                    .get(s)
                                    .and_then(|r| self.index.get(r))
                                    .map_or(UNUSABLE_DEPTH, |e| e.depth.saturating_add(1))
                            })
                            .max()
                            .unwrap_or(0),
                    };
                    self.by_seq.insert(m.seq, id);
                    self.index.insert(id, Entry { meta: m, depth });
                }
                None => {
                    if let Some(e) = self.index.remove(&id) {
                        self.by_seq.remove(&e.meta.seq);
                    }
                }
            }
        }
        self.meta = store_meta;
        Ok(())
    }

    fn read_count(&self, key: &[u8], object: Object) -> Result<Option<u64>, StoreError> {
        match self.kv.get(key).map_err(backend)? {
            None => Ok(None),
            Some(v) => Ok(Some(
                decode_count(unseal(object, &v)?).map_err(|e| StoreError::corrupt(object, e))?,
            )),
        }
    }

    /// `count + delta`, or an error naming `object` when that is negative or overflows.
    /// The stored value of chunk `cid`, which the store's records say exists (decoded by
    /// [`chunk_body`]).
    fn stored_chunk(&self, cid: &ChunkId) -> Result<Vec<u8>, StoreError> {
        self.kv
            .get(&id_key(tag::CHUNK, cid))
            .map_err(backend)?
            .ok_or(StoreError::Dangling {
                from: Object::StoreMeta,
                to: Object::Chunk(*cid),
            })
    }

    fn add_count(object: Object, count: u64, delta: i64) -> Result<u64, StoreError> {
        count.checked_add_signed(delta).ok_or_else(|| {
            if delta < 0 {
                StoreError::corrupt(
                    object,
                    Corruption::Size {
                        declared: count,
                        actual: delta.unsigned_abs(),
                    },
                )
            } else {
                too_large(object, "count", count, u64::MAX - delta.unsigned_abs())
            }
        })
    }

    /// Adds `deltas` to chunk counts: new chunks are written with their count, chunks whose
    /// count reaches zero are removed.
    fn apply_chunk_deltas(
        &self,
        deltas: &BTreeMap<ChunkId, i64>,
        new_chunks: &HashMap<ChunkId, NewChunk>,
        batch: &mut WriteBatch,
    ) -> Result<(), StoreError> {
        for (cid, delta) in deltas {
            let key = id_key(tag::CHUNK, cid);
            let object = Object::Chunk(*cid);
            let body = match new_chunks.get(cid) {
                Some(chunk) => chunk.body(delta.unsigned_abs()),
                None => {
                    let value = self.stored_chunk(cid)?;
                    let mut chunk = chunk_body(cid, &value)?;
                    let count = Self::add_count(object, chunk.count, *delta)?;
                    if count == 0 {
                        batch.delete(key);
                        continue;
                    }
                    chunk.count = count;
                    chunk.encode()
                }
            };
            batch.put(key, seal(&[&body]));
        }
        Ok(())
    }

    fn apply_dict_deltas(
        &self,
        deltas: &BTreeMap<u32, i64>,
        batch: &mut WriteBatch,
    ) -> Result<(), StoreError> {
        for (version, delta) in deltas {
            let key = version_key(tag::DICT_COUNT, *version);
            let object = Object::DictionaryCount(*version);
            let Some(current) = self.read_count(&key, object)? else {
                return Err(StoreError::Dangling {
                    from: Object::StoreMeta,
                    to: Object::Dictionary(*version),
                });
            };
            let count = Self::add_count(object, current, *delta)?;
            if count == 0 && *version != self.meta.dictionary {
                batch.delete(key);
                batch.delete(version_key(tag::DICT, *version));
            } else {
                batch.put(key, seal(&[&encode_count(count)]));
            }
        }
        Ok(())
    }

    /// Removes one pin from a live record; the record goes when nothing else holds it, and with
    /// it whatever only it held (references, chunks, dictionaries), in one atomic batch.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when `id` is not live; backend failures; inconsistent counts.
    pub fn delete(&mut self, id: &CodeId) -> Result<(), StoreError> {
        let mut meta = match self.index.get(id) {
            Some(e) if e.meta.is_live() => e.meta.clone(),
            _ => return Err(StoreError::NotFound(*id)),
        };
        meta.pins -= 1;
        let mut pending = Pending::new();
        let mut batch = WriteBatch::new();
        if meta.pins > 0 || meta.dependents > 0 {
            pending.insert(*id, Some(meta));
        } else {
            let mut dict_deltas: BTreeMap<u32, i64> = BTreeMap::new();
            let mut chunk_deltas: BTreeMap<ChunkId, i64> = BTreeMap::new();
            let mut doomed = vec![(*id, meta)];
            while let Some((x, m)) = doomed.pop() {
                pending.insert(x, None);
                if m.dictionary != 0 {
                    *dict_deltas.entry(m.dictionary).or_default() -= 1;
                }
                if m.encoding == Encoding::Chunked {
                    for (cid, _) in self.chunk_list(&x, &m)? {
                        *chunk_deltas.entry(cid).or_default() -= 1;
                    }
                }
                for seq in &m.refs {
                    let r = self.ref_id(&x, *seq)?;
                    let mut rm = match pending.get(&r) {
                        Some(Some(p)) => p.clone(),
                        Some(None) => continue,
                        None => self.index[&r].meta.clone(),
                    };
                    rm.dependents = rm.dependents.checked_sub(1).ok_or(StoreError::corrupt(
                        Object::Record(r),
                        Corruption::Size {
                            declared: 0,
                            actual: 1,
                        },
                    ))?;
                    if rm.pins == 0 && rm.dependents == 0 {
                        pending.remove(&r);
                        doomed.push((r, rm));
                    } else {
                        pending.insert(r, Some(rm));
                    }
                }
            }
            // Chunks that go entirely release their dictionaries.
            for (version, delta) in self.chunk_dict_deltas(&chunk_deltas)? {
                *dict_deltas.entry(version).or_default() += delta;
            }
            self.apply_chunk_deltas(&chunk_deltas, &HashMap::new(), &mut batch)?;
            self.apply_dict_deltas(&dict_deltas, &mut batch)?;
        }
        self.commit(batch, pending, None, self.meta.clone())
    }

    /// Dictionary count changes caused by chunks that `chunk_deltas` removes entirely.
    fn chunk_dict_deltas(
        &self,
        chunk_deltas: &BTreeMap<ChunkId, i64>,
    ) -> Result<BTreeMap<u32, i64>, StoreError> {
        let mut out = BTreeMap::new();
        for (cid, delta) in chunk_deltas {
            let value = self.stored_chunk(cid)?;
            let chunk = chunk_body(cid, &value)?;
            if chunk.count.checked_add_signed(*delta) == Some(0) && chunk.dictionary != 0 {
                *out.entry(chunk.dictionary).or_default() -= 1;
            }
        }
        Ok(out)
    }

    fn meta_of(&self, id: &CodeId) -> Result<&Entry, StoreError> {
        if let Some(reason) = self.damaged.get(id) {
            return Err(StoreError::corrupt(Object::Record(*id), reason.clone()));
        }
        self.index.get(id).ok_or(StoreError::NotFound(*id))
    }

    /// The payload of a stored record, from its own value or its separate body.
    fn payload(&self, id: &CodeId, meta: &RecordMeta) -> Result<Vec<u8>, StoreError> {
        if !meta.separate {
            return self.inline_payload(id);
        }
        let object = Object::Record(*id);
        let value = self
            .kv
            .get(&id_key(tag::BODY, id))
            .map_err(backend)?
            .ok_or(StoreError::Dangling {
                from: object,
                to: object,
            })?;
        Ok(unseal(object, &value)?.to_vec())
    }

    fn chunk_list(
        &self,
        id: &CodeId,
        meta: &RecordMeta,
    ) -> Result<Vec<(ChunkId, u32)>, StoreError> {
        decode_chunk_list(
            &self.payload(id, meta)?,
            meta.raw_len,
            ChunkConfig::MAX_SIZE,
        )
        .map_err(|e| StoreError::corrupt(Object::Record(*id), e))
    }

    /// The bytes of the live record `id`, checked against its digest.
    ///
    /// A read decodes each record it needs at most once, and no more than
    /// [`StoreConfig::max_read_bytes`] in all.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when `id` is not live; [`StoreError::Corrupt`],
    /// [`StoreError::Dangling`], [`StoreError::Cycle`] or [`StoreError::TooDeep`] when the
    /// record or anything it refers to is damaged; [`StoreError::ReadBudget`] when the read
    /// would decode more than the budget; [`StoreError::TooLarge`] when a record it needs is
    /// larger than `max_size`; backend failures.
    pub fn get(&self, id: &CodeId) -> Result<Vec<u8>, StoreError> {
        Ok(self.get_shared(id)?.to_vec())
    }

    /// As [`CodeStore::get`], sharing the decoded bytes with the store's cache.
    ///
    /// # Errors
    /// As [`CodeStore::get`].
    pub fn get_shared(&self, id: &CodeId) -> Result<Arc<[u8]>, StoreError> {
        if !self.meta_of(id)?.meta.is_live() {
            return Err(StoreError::NotFound(*id));
        }
        let content = self.content(id)?;
        let actual = Digest::of(&content);
        if actual != *id {
            return Err(StoreError::corrupt(
                Object::Record(*id),
                Corruption::Digest { actual },
            ));
        }
        Ok(content)
    }

    /// The content of a stored record (live or not), decoded and checked, through the cache.
    ///
    /// What the read would decode is counted from the metadata first, as if nothing were
    /// cached, so that whether a read fits the budget depends on the store alone. A cached
    /// record passed that count when it was decoded (its references are part of what was
    /// counted), and [`CodeStore::set_config`] empties the cache when the bounds change.
    fn content(&self, id: &CodeId) -> Result<Arc<[u8]>, StoreError> {
        if let Some(content) = self.cache.lock().get(id) {
            return Ok(content);
        }
        let limit = self.config.max_read_bytes;
        let needed = self.read_cost(&[*id], limit);
        if needed > limit {
            return Err(StoreError::ReadBudget {
                at: *id,
                needed,
                limit,
            });
        }
        let mut read = Read::default();
        self.materialize(id, &mut read)
    }

    fn materialize(&self, id: &CodeId, read: &mut Read) -> Result<Arc<[u8]>, StoreError> {
        if let Some(content) = read.decoded.get(id) {
            return Ok(content.clone());
        }
        if let Some(content) = self.cache.lock().get(id) {
            read.decoded.insert(*id, content.clone());
            return Ok(content);
        }
        let stack = &mut read.stack;
        if stack.contains(id) {
            return Err(StoreError::Cycle { at: *id });
        }
        if stack.len() >= DECODE_DEPTH_LIMIT {
            return Err(StoreError::TooDeep {
                at: *id,
                limit: DECODE_DEPTH_LIMIT as u32,
            });
        }
        let meta = match self.meta_of(id) {
            Ok(e) => &e.meta,
            Err(StoreError::NotFound(_)) if !stack.is_empty() => {
                return Err(StoreError::Dangling {
                    from: Object::Record(*stack.last().unwrap_or(id)),
                    to: Object::Record(*id),
                });
            }
            Err(e) => return Err(e),
        };
        if meta.raw_len > self.config.max_size as u64 {
            return Err(StoreError::TooLarge {
                size: meta.raw_len,
                limit: self.config.max_size as u64,
            });
        }
        let raw_len = meta.raw_len as usize;
        let object = Object::Record(*id);
        let payload = self.payload(id, meta)?;
        let content: Vec<u8> = match meta.encoding {
            Encoding::Raw => {
                if payload.len() != raw_len {
                    return Err(StoreError::corrupt(
                        object,
                        Corruption::Size {
                            declared: meta.raw_len,
                            actual: payload.len() as u64,
                        },
                    ));
                }
                payload
            }
            Encoding::Zstd => {
                read.stack.push(*id);
                let mut prefix = Vec::new();
                for seq in meta.refs.iter().rev() {
                    let r = self.ref_id(id, *seq)?;
                    prefix.extend_from_slice(&self.materialize(&r, read)?);
                }
                read.stack.pop();
                let dictionary = self.dictionary_bytes_opt(meta.dictionary)?;
                let reference = Reference {
                    dictionary: dictionary.as_deref(),
                    prefix: &prefix,
                };
                decode_frame(&with_magic(&payload), reference, raw_len)
                    .map_err(|e| StoreError::corrupt(object, e))?
            }
            Encoding::Chunked => {
                let list = decode_chunk_list(&payload, meta.raw_len, ChunkConfig::MAX_SIZE)
                    .map_err(|e| StoreError::corrupt(object, e))?;
                let mut out = Vec::with_capacity(raw_len);
                for (cid, len) in list {
                    let value = self
                        .kv
                        .get(&id_key(tag::CHUNK, &cid))
                        .map_err(backend)?
                        .ok_or(StoreError::Dangling {
                            from: object,
                            to: Object::Chunk(cid),
                        })?;
                    out.extend_from_slice(&self.decode_chunk(
                        &cid,
                        unseal(Object::Chunk(cid), &value)?,
                        len,
                    )?);
                }
                out
            }
        };
        let actual = Digest::of(&content);
        if actual != *id {
            return Err(StoreError::corrupt(object, Corruption::Digest { actual }));
        }
        let content: Arc<[u8]> = content.into();
        let n = content.len();
        self.cache.lock().insert(*id, content.clone(), n);
        read.decoded.insert(*id, content.clone());
        Ok(content)
    }

    /// Decodes an (unsealed) chunk body of `len` bytes and checks its digest.
    fn decode_chunk(&self, cid: &ChunkId, body: &[u8], len: u32) -> Result<Vec<u8>, StoreError> {
        let object = Object::Chunk(*cid);
        let chunk = ChunkBody::decode(body).map_err(|e| StoreError::corrupt(object, e))?;
        if chunk.raw_len != u64::from(len) {
            return Err(StoreError::corrupt(
                object,
                Corruption::Size {
                    declared: u64::from(len),
                    actual: chunk.raw_len,
                },
            ));
        }
        let bytes = match chunk.encoding {
            Encoding::Zstd => {
                let dictionary = self.dictionary_bytes_opt(chunk.dictionary)?;
                let reference = Reference {
                    dictionary: dictionary.as_deref(),
                    prefix: &[],
                };
                decode_frame(&with_magic(chunk.payload), reference, len as usize)
                    .map_err(|e| StoreError::corrupt(object, e))?
            }
            _ => chunk.payload.to_vec(),
        };
        let actual = Digest::of(&bytes);
        if actual != *cid {
            return Err(StoreError::corrupt(object, Corruption::Digest { actual }));
        }
        Ok(bytes)
    }

    fn dictionary_bytes_opt(&self, version: u32) -> Result<Option<Arc<[u8]>>, StoreError> {
        match version {
            0 => Ok(None),
            v => self.dictionary_bytes(v).map(Some),
        }
    }

    /// The bytes of dictionary `version`, checked.
    fn dictionary_bytes(&self, version: u32) -> Result<Arc<[u8]>, StoreError> {
        if let Some(d) = self.dictionaries.lock().get(&version) {
            return Ok(d.clone());
        }
        let object = Object::Dictionary(version);
        let value = self
            .kv
            .get(&version_key(tag::DICT, version))
            .map_err(backend)?
            .ok_or(StoreError::Dangling {
                from: Object::StoreMeta,
                to: object,
            })?;
        let bytes = unseal(object, &value)?;
        codec::check_dictionary(bytes).map_err(|e| StoreError::corrupt(object, e))?;
        let bytes: Arc<[u8]> = bytes.into();
        self.dictionaries.lock().insert(version, bytes.clone());
        Ok(bytes)
    }

    fn dictionary_for_writes(&self) -> Result<Option<VersionedDictionary>, StoreError> {
        match self.meta.dictionary {
            0 => Ok(None),
            v => Ok(Some((v, self.dictionary_bytes(v)?))),
        }
    }

    fn live_totals(&self) -> (usize, u64) {
        self.index
            .values()
            .filter(|e| e.meta.is_live())
            .fold((0, 0), |(n, b), e| {
                (n + 1, b.saturating_add(e.meta.raw_len))
            })
    }

    fn maybe_train_dictionary(&mut self) -> Result<(), StoreError> {
        let policy = self.config.dictionary;
        if !policy.enabled
            || self.config.level == Level::None
            || !self.compressor.supports_references()
        {
            return Ok(());
        }
        let (records, bytes) = self.live_totals();
        let grown = bytes
            > self
                .meta
                .trained_at
                .saturating_mul(100 + u64::from(policy.growth_percent))
                / 100;
        if records >= policy.min_records && bytes >= policy.min_bytes && grown {
            self.train_dictionary()?;
        }
        Ok(())
    }

    /// Trains a dictionary from the live records (newest first, up to the policy's sample
    /// budget) and makes it the one new records use.
    ///
    /// Returns the new version, or `None` when the compressor cannot train on these samples.
    ///
    /// # Errors
    /// Reading the samples or writing the dictionary failed; the compressor produced a
    /// dictionary the core cannot read.
    pub fn train_dictionary(&mut self) -> Result<Option<u32>, StoreError> {
        let policy = self.config.dictionary;
        let mut live: Vec<(u64, CodeId)> = self
            .index
            .iter()
            .filter(|(_, e)| e.meta.is_live())
            .map(|(id, e)| (e.meta.seq, *id))
            .collect();
        live.sort_unstable_by(|a, b| b.cmp(a));
        let mut samples = Vec::new();
        let mut total = 0usize;
        for (_, id) in live {
            if total >= policy.max_training_bytes {
                break;
            }
            let content = self.content(&id)?;
            total += content.len();
            samples.push(content);
        }
        let (_, live_bytes) = self.live_totals();
        let mut store_meta = self.meta.clone();
        store_meta.trained_at = live_bytes;
        // The trainer wants many samples of a few kilobytes: content-defined chunks of the
        // contracts, the same however the contracts are ordered.
        let whole: Vec<&[u8]> = samples.iter().map(|s| &s[..]).collect();
        let trained = self
            .compressor
            .train_dictionary(&whole, policy.size)
            .or_else(|| {
                // Too few contracts for the trainer: offer it content-defined pieces instead.
                let pieces = Chunker::new(TRAINING_PIECES);
                let pieces: Vec<&[u8]> = samples.iter().flat_map(|s| pieces.chunks(s)).collect();
                self.compressor.train_dictionary(&pieces, policy.size)
            });
        let mut batch = WriteBatch::new();
        let version = match trained {
            None => None,
            Some(dict) => {
                codec::check_dictionary(&dict).map_err(|e| {
                    StoreError::Compress(crate::error::CompressError {
                        message: format!("trained dictionary is unreadable: {e}"),
                    })
                })?;
                let version = self.meta.last_dictionary.checked_add(1).ok_or_else(|| {
                    let max = u64::from(u32::MAX);
                    too_large(Object::StoreMeta, "last dictionary", max, max - 1)
                })?;
                let old = self.meta.dictionary;
                if old != 0 {
                    let key = version_key(tag::DICT_COUNT, old);
                    if self.read_count(&key, Object::DictionaryCount(old))? == Some(0) {
                        batch.delete(key);
                        batch.delete(version_key(tag::DICT, old));
                    }
                }
                batch.put(version_key(tag::DICT, version), seal(&[&dict]));
                batch.put(
                    version_key(tag::DICT_COUNT, version),
                    seal(&[&encode_count(0)]),
                );
                store_meta.dictionary = version;
                store_meta.last_dictionary = version;
                Some(version)
            }
        };
        self.commit(batch, Pending::new(), None, store_meta)?;
        Ok(version)
    }

    /// Statistics of the stored record `id`.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when `id` is not stored; backend failures.
    pub fn record_stats(&self, id: &CodeId) -> Result<RecordStats, StoreError> {
        let entry = self.meta_of(id)?;
        let meta = &entry.meta;
        let mut stored = 0u64;
        for tag in [tag::RECORD, tag::BODY] {
            if let Some(v) = self.kv.get(&id_key(tag, id)).map_err(backend)? {
                stored += 33 + v.len() as u64;
            }
        }
        Ok(RecordStats {
            id: *id,
            kind: RecordKind::of(meta),
            blob: meta.blob,
            raw_bytes: meta.raw_len,
            stored_bytes: stored,
            pins: meta.pins.into(),
            dependents: meta.dependents.into(),
            refs: meta
                .refs
                .iter()
                .filter_map(|s| self.by_seq.get(s).copied())
                .collect(),
            dictionary: (meta.dictionary != 0).then_some(meta.dictionary),
            depth: entry.depth,
        })
    }

    /// Statistics of the whole store, from one scan of the backend.
    ///
    /// # Errors
    /// Backend failures.
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let mut s = StoreStats::default();
        let mut sizes: HashMap<CodeId, u64> = HashMap::new();
        self.kv
            .scan(&[], &mut |key, value| {
                let n = (key.len() + value.len()) as u64;
                s.total_bytes += n;
                match key.first().copied() {
                    Some(tag::RECORD | tag::BODY) => match key_id(key) {
                        Some(id) => *sizes.entry(id).or_default() += n,
                        None => s.index_bytes += n,
                    },
                    Some(tag::CHUNK) => {
                        s.chunks += 1;
                        s.chunk_bytes += n;
                    }
                    Some(tag::DICT) => {
                        s.dictionaries += 1;
                        s.dictionary_bytes += n;
                    }
                    Some(tag::DICT_COUNT) => s.dictionary_bytes += n,
                    _ => s.index_bytes += n,
                }
            })
            .map_err(backend)?;
        for (id, n) in sizes {
            let Some(entry) = self.index.get(&id) else {
                s.index_bytes += n;
                continue;
            };
            let meta = &entry.meta;
            if meta.is_live() {
                s.live_records += 1;
                s.live_raw_bytes = s.live_raw_bytes.saturating_add(meta.raw_len);
            } else {
                s.retained_records += 1;
            }
            let kind = match RecordKind::of(meta) {
                RecordKind::Full => &mut s.full,
                RecordKind::Delta => &mut s.delta,
                RecordKind::Chunked => &mut s.chunked,
            };
            kind.records += 1;
            kind.raw_bytes = kind.raw_bytes.saturating_add(meta.raw_len);
            kind.stored_bytes += n;
        }
        Ok(s)
    }

    /// Recounts every reference from scratch and checks every stored object's integrity; with
    /// `deep`, also decodes every live record and checks its digest.
    ///
    /// # Errors
    /// Backend failures. Inconsistencies are reported in [`VerifyReport::problems`].
    pub fn verify(&self, deep: bool) -> Result<VerifyReport, StoreError> {
        let truth = self.recount(None)?;
        let mut report = VerifyReport {
            records: self.index.len() as u64,
            chunks: truth.chunks.len() as u64,
            dictionaries: truth.dicts.len() as u64,
            problems: truth.problems,
        };
        let problems = &mut report.problems;
        for (id, reason) in &self.damaged {
            problems.push(format!("{}: {reason}", Object::Record(*id)));
        }
        let mut ids: Vec<&CodeId> = self.index.keys().collect();
        ids.sort_unstable();
        for id in ids {
            let meta = &self.index[id].meta;
            let want = truth.dependents.get(id).copied().unwrap_or(0);
            if u64::from(meta.dependents) != want {
                problems.push(format!(
                    "{} counts {} dependents, {want} found",
                    Object::Record(*id),
                    meta.dependents
                ));
            }
            if meta.pins == 0 && meta.dependents == 0 {
                problems.push(format!("{} is held by nothing", Object::Record(*id)));
            }
            for seq in &meta.refs {
                if !self.by_seq.contains_key(seq) {
                    problems.push(format!(
                        "{} refers to missing record #{seq}",
                        Object::Record(*id)
                    ));
                }
            }
            if let Err(e) = self.payload(id, meta) {
                problems.push(format!("{e}"));
            }
            if deep
                && meta.is_live()
                && let Err(e) = self.get_shared(id)
            {
                problems.push(format!("{e}"));
            }
        }
        for (cid, chunk) in &truth.chunks {
            let want = truth.chunk_uses.get(cid).copied().unwrap_or(0);
            if chunk.count != want {
                problems.push(format!(
                    "{} counts {} uses, {want} found",
                    Object::Chunk(*cid),
                    chunk.count
                ));
            }
        }
        for cid in truth.chunk_uses.keys() {
            if !truth.chunks.contains_key(cid) {
                problems.push(format!("{} is missing", Object::Chunk(*cid)));
            }
        }
        for (v, (count, _)) in &truth.dicts {
            let want = truth.dict_uses.get(v).copied().unwrap_or(0);
            if *count != Some(want) {
                problems.push(format!(
                    "{} is {count:?}, {want} uses found",
                    Object::DictionaryCount(*v)
                ));
            }
        }
        for v in truth.dict_uses.keys() {
            if !truth.dicts.contains_key(v) {
                problems.push(format!("{} is missing", Object::Dictionary(*v)));
            }
        }
        Ok(report)
    }

    /// Removes every object nothing refers to and sets every count to what is found: records
    /// go unless they are live or a record that stays refers to them (transitively: a chain
    /// held only by dead records goes whole), chunks go when no remaining record lists them,
    /// dictionaries when no remaining record or chunk uses them (except the current one); the
    /// counts of what remains are rewritten to their uses. With exact counting there is nothing
    /// to do; this repairs stores damaged or edited outside the store, in one atomic batch,
    /// after which [`CodeStore::verify`] finds no count to correct.
    ///
    /// Records whose metadata cannot be read are left alone, and what they refer to is not
    /// known: it stays only if something else holds it.
    ///
    /// # Errors
    /// Backend failures.
    pub fn gc(&mut self) -> Result<GcReport, StoreError> {
        let mut keep: HashSet<CodeId> = HashSet::new();
        let mut stack: Vec<CodeId> = self
            .index
            .iter()
            .filter(|(_, e)| e.meta.is_live())
            .map(|(id, _)| *id)
            .collect();
        while let Some(x) = stack.pop() {
            if keep.insert(x) {
                let refs = &self.index[&x].meta.refs;
                stack.extend(refs.iter().filter_map(|s| self.by_seq.get(s)));
            }
        }
        let truth = self.recount(Some(&keep))?;
        let mut report = GcReport::default();
        let mut batch = WriteBatch::new();
        let mut pending = Pending::new();
        for (id, entry) in &self.index {
            if !keep.contains(id) {
                report.records += 1;
                for tag in [tag::RECORD, tag::BODY] {
                    if let Some(v) = self.kv.get(&id_key(tag, id)).map_err(backend)? {
                        report.bytes += 33 + v.len() as u64;
                    }
                }
                pending.insert(*id, None);
                continue;
            }
            let uses = truth.dependents.get(id).copied().unwrap_or(0);
            let uses = u32::try_from(uses).unwrap_or(u32::MAX);
            if entry.meta.dependents != uses {
                let mut meta = entry.meta.clone();
                meta.dependents = uses;
                pending.insert(*id, Some(meta));
            }
        }
        for (cid, stored) in &truth.chunks {
            let uses = truth.chunk_uses.get(cid).copied().unwrap_or(0);
            let key = id_key(tag::CHUNK, cid);
            if uses == 0 {
                report.chunks += 1;
                report.bytes += stored.bytes;
                batch.delete(key);
            } else if stored.count != uses {
                let value = self.stored_chunk(cid)?;
                let mut chunk = chunk_body(cid, &value)?;
                chunk.count = uses;
                batch.put(key, seal(&[&chunk.encode()]));
            }
        }
        for (v, (count, bytes)) in &truth.dicts {
            let uses = truth.dict_uses.get(v).copied().unwrap_or(0);
            if uses == 0 && *v != self.meta.dictionary {
                report.dictionaries += 1;
                report.bytes += bytes;
                batch.delete(version_key(tag::DICT, *v));
                batch.delete(version_key(tag::DICT_COUNT, *v));
            } else if *count != Some(uses) {
                batch.put(
                    version_key(tag::DICT_COUNT, *v),
                    seal(&[&encode_count(uses)]),
                );
            }
        }
        self.commit(batch, pending, None, self.meta.clone())?;
        Ok(report)
    }

    /// Counts every reference from the records' metadata and chunk lists: of every record, or
    /// only of the records in `keep` (and then the dictionaries only of the chunks they list).
    fn recount(&self, keep: Option<&HashSet<CodeId>>) -> Result<Recount, StoreError> {
        let mut t = Recount::default();
        for (id, entry) in &self.index {
            if keep.is_some_and(|k| !k.contains(id)) {
                continue;
            }
            let meta = &entry.meta;
            for seq in &meta.refs {
                if let Some(r) = self.by_seq.get(seq) {
                    *t.dependents.entry(*r).or_default() += 1;
                }
            }
            if meta.dictionary != 0 {
                *t.dict_uses.entry(meta.dictionary).or_default() += 1;
            }
            if meta.encoding == Encoding::Chunked {
                match self.chunk_list(id, meta) {
                    Ok(list) => {
                        for (cid, _) in list {
                            *t.chunk_uses.entry(cid).or_default() += 1;
                        }
                    }
                    Err(e) => t.problems.push(format!("{e}")),
                }
            }
        }
        let mut problems = Vec::new();
        let mut chunks = HashMap::new();
        self.kv
            .scan(&[tag::CHUNK], &mut |key, value| {
                let Some(cid) = key_id(key) else { return };
                let object = Object::Chunk(cid);
                match unseal(object, value)
                    .and_then(|b| ChunkBody::decode(b).map_err(|e| StoreError::corrupt(object, e)))
                {
                    Ok(chunk) => {
                        let stored = StoredChunk {
                            count: chunk.count,
                            bytes: (key.len() + value.len()) as u64,
                            dictionary: chunk.dictionary,
                        };
                        chunks.insert(cid, stored);
                    }
                    Err(e) => problems.push(format!("{e}")),
                }
            })
            .map_err(backend)?;
        for (cid, chunk) in &chunks {
            let used = keep.is_none() || t.chunk_uses.contains_key(cid);
            if chunk.dictionary != 0 && used {
                *t.dict_uses.entry(chunk.dictionary).or_default() += 1;
            }
        }
        t.chunks = chunks;
        let mut dicts: Vec<(u32, u64)> = Vec::new();
        self.kv
            .scan(&[tag::DICT], &mut |key, value| {
                let Some(v) = key_version(key) else { return };
                dicts.push((v, (key.len() + value.len()) as u64));
                if let Err(e) = unseal(Object::Dictionary(v), value).and_then(|b| {
                    codec::check_dictionary(b)
                        .map_err(|e| StoreError::corrupt(Object::Dictionary(v), e))
                }) {
                    problems.push(format!("{e}"));
                }
            })
            .map_err(backend)?;
        t.problems.extend(problems);
        for (v, bytes) in dicts {
            let count = match self
                .read_count(&version_key(tag::DICT_COUNT, v), Object::DictionaryCount(v))
            {
                Ok(c) => c,
                Err(e) => {
                    t.problems.push(format!("{e}"));
                    None
                }
            };
            t.dicts.insert(v, (count, bytes));
        }
        Ok(t)
    }
}

/// A stored chunk as [`CodeStore::recount`] found it.
struct StoredChunk {
    /// Its recorded count.
    count: u64,
    /// Bytes of its key and value.
    bytes: u64,
    /// Its dictionary version; 0 for none.
    dictionary: u32,
}

/// The state of one read: the records being decoded (innermost last), and every record decoded
/// so far, so that a record many others refer to is decoded once.
#[derive(Default)]
struct Read {
    stack: Vec<CodeId>,
    decoded: HashMap<CodeId, Arc<[u8]>>,
}

/// Reference counts recomputed from scratch.
#[derive(Default)]
struct Recount {
    dependents: HashMap<CodeId, u64>,
    chunk_uses: HashMap<ChunkId, u64>,
    dict_uses: HashMap<u32, u64>,
    /// Stored chunks.
    chunks: HashMap<ChunkId, StoredChunk>,
    /// Stored dictionaries: their count (if readable) and bytes.
    dicts: HashMap<u32, (Option<u64>, u64)>,
    problems: Vec<String>,
}

#[cfg(test)]
mod tests;

#[cfg(all(test, loom))]
mod loom_tests;
