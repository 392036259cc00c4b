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
//! a read may have to decode ([`StoreConfig::max_depth`], [`StoreConfig::max_closure_bytes`]):
//! past the bound the store picks other references or a full record.
//!
//! # Counting references
//!
//! A record is *live* while it has pins (puts minus deletes) and *stored* while it is live or
//! another stored record refers to it. Chunks and dictionaries count the records that use them.
//! Every operation writes one atomic [`WriteBatch`], so the counts are exact after any crash, and
//! objects whose count falls to zero are removed in the same batch. [`CodeStore::verify`]
//! recounts everything from scratch; [`CodeStore::gc`] removes whatever nothing refers to.
//!
//! # Dictionaries
//!
//! When the live content has grown enough ([`DictionaryPolicy`]), the store trains a dictionary
//! from the contracts it already holds (never from the one being stored), keeps it under a new
//! version, and compresses new records with it. Dictionaries are stored, counted and collected
//! like everything else; their bytes count toward the store's size.

mod cache;
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

pub use cache::ContentCache;
pub use chunk::{ChunkConfig, Chunker, Chunks};
pub use codec::{RuzstdCompressor, decode_frame};
pub use format::{Encoding, FORMAT_VERSION, MAX_REFS, RecordMeta};
pub use sketch::{SIMILARITY_ONE, Sketch};

use format::{
    ChunkBody, STORE_META_KEY, StoreMeta, decode_chunk_list, decode_count, encode_chunk_list,
    encode_count, id_key, key_id, key_version, seal, tag, unseal, version_key,
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

/// Configuration of a [`CodeStore`]. Only writes depend on it: any configuration reads any store.
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
    /// The sealed payload value.
    value: Vec<u8>,
    dictionary: u32,
    refs: heapless::Vec<CodeId, MAX_REFS>,
    /// The reference content the frame was compressed against (for verification).
    prefix: Vec<u8>,
    /// Chunk list of a chunked record, and the sealed values of chunks not stored yet.
    chunks: Vec<(ChunkId, u32)>,
    new_chunks: Vec<(ChunkId, Vec<u8>)>,
}

impl Plan {
    fn cost(&self) -> u64 {
        // A new chunk also costs its two keys and its count.
        let chunks: usize = self.new_chunks.iter().map(|(_, v)| v.len() + 75).sum();
        (self.value.len() + chunks) as u64
    }
}

/// Pending changes to the record index, applied after a batch commits.
type Pending = HashMap<CodeId, Option<RecordMeta>>;

/// The content-addressed code store. See the [module documentation](self).
pub struct CodeStore<K: KvStore, C: Compressor> {
    kv: K,
    compressor: C,
    config: StoreConfig,
    chunker: Chunker,
    meta: StoreMeta,
    /// Metadata of every stored record.
    index: HashMap<CodeId, RecordMeta>,
    /// Records whose metadata could not be read at open.
    damaged: HashMap<CodeId, Corruption>,
    cache: spin::Mutex<ContentCache>,
    dictionaries: spin::Mutex<HashMap<u32, Arc<[u8]>>>,
}

/// Decoding stops past this many nested references, whatever the configuration that wrote them.
const DECODE_DEPTH_LIMIT: usize = 64;

fn backend<E: core::error::Error + Send + Sync + 'static>(e: E) -> StoreError {
    StoreError::backend(e)
}

impl<K: KvStore, C: Compressor> CodeStore<K, C> {
    /// Opens the store kept in `kv`, creating it if `kv` is empty.
    ///
    /// # Errors
    /// Backend failures, an unsupported layout version, or damaged store metadata. Damaged
    /// record metadata does not fail the open: reads of those records fail instead.
    pub fn open(mut kv: K, compressor: C, config: StoreConfig) -> Result<Self, StoreError> {
        let mut index = HashMap::new();
        let mut damaged = HashMap::new();
        kv.scan(&[tag::META], &mut |key, value| {
            let Some(id) = key_id(key) else { return };
            let meta = unseal(Object::RecordMeta(id), value).and_then(|body| {
                RecordMeta::decode(body).map_err(|e| StoreError::corrupt(Object::RecordMeta(id), e))
            });
            match meta {
                Ok(m) => {
                    index.insert(id, m);
                }
                Err(StoreError::Corrupt { reason, .. }) => {
                    damaged.insert(id, reason);
                }
                Err(_) => {}
            }
        })
        .map_err(backend)?;
        let meta = match kv.get(STORE_META_KEY).map_err(backend)? {
            Some(v) => StoreMeta::decode(unseal(Object::StoreMeta, &v)?)?,
            None => {
                // A new store, or one whose metadata was lost: never reuse a sequence number
                // or a dictionary version that is already in use.
                let mut m = StoreMeta {
                    seq: index
                        .values()
                        .map(|m: &RecordMeta| m.seq + 1)
                        .max()
                        .unwrap_or(0),
                    ..StoreMeta::default()
                };
                kv.scan(&[tag::DICT], &mut |key, _| {
                    if let Some(v) = key_version(key) {
                        m.last_dictionary = m.last_dictionary.max(v);
                    }
                })
                .map_err(backend)?;
                let mut batch = WriteBatch::new();
                batch.put(STORE_META_KEY.to_vec(), seal(&m.encode()));
                kv.apply(batch).map_err(backend)?;
                m
            }
        };
        let chunker = Chunker::new(config.chunking);
        let cache = spin::Mutex::new(ContentCache::new(config.cache_bytes));
        Ok(Self {
            kv,
            compressor,
            config,
            chunker,
            meta,
            index,
            damaged,
            cache,
            dictionaries: spin::Mutex::new(HashMap::new()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Changes the configuration for later writes.
    pub fn set_config(&mut self, config: StoreConfig) {
        self.chunker = Chunker::new(config.chunking);
        self.config = config;
    }

    /// The backend.
    pub fn kv(&self) -> &K {
        &self.kv
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
        self.index.get(id).is_some_and(RecordMeta::is_live)
    }

    /// The live records, sorted by id.
    pub fn ids(&self) -> Vec<CodeId> {
        let mut ids: Vec<CodeId> = self
            .index
            .iter()
            .filter(|(_, m)| m.is_live())
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Stores contract code. Storing bytes already stored adds a pin.
    ///
    /// # Errors
    /// [`StoreError::TooLarge`], compressor and backend failures, or corruption found in the
    /// records chosen as references.
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
            return Err(StoreError::corrupt(Object::RecordMeta(id), reason.clone()));
        }
        if let Some(existing) = self.index.get(&id) {
            let mut meta = existing.clone();
            meta.pins = meta.pins.checked_add(1).ok_or(StoreError::TooLarge {
                size: u64::from(meta.pins) + 1,
                limit: u32::MAX.into(),
            })?;
            let mut batch = WriteBatch::new();
            batch.put(id_key(tag::META, &id), seal(&meta.encode()));
            self.kv.apply(batch).map_err(backend)?;
            let report = self.report(&id, &meta, false, 0);
            self.index.insert(id, meta);
            return Ok(report);
        }
        self.maybe_train_dictionary()?;
        let sketch = Sketch::of(bytes);
        let plan = self.plan(bytes, previous, blob, &sketch)?;
        self.verify_plan(&id, bytes, &plan)?;
        self.commit_new(id, bytes.len() as u64, blob, sketch, plan)
    }

    fn report(&self, id: &CodeId, meta: &RecordMeta, created: bool, added: u64) -> PutReport {
        PutReport {
            id: *id,
            created,
            kind: RecordKind::of(meta),
            raw_bytes: meta.raw_len,
            stored_bytes: added,
            refs: meta.refs.to_vec(),
            dictionary: (meta.dictionary != 0).then_some(meta.dictionary),
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
        let raw = Plan {
            encoding: Encoding::Raw,
            value: seal(bytes),
            dictionary: 0,
            refs: heapless::Vec::new(),
            prefix: Vec::new(),
            chunks: Vec::new(),
            new_chunks: Vec::new(),
        };
        let mut best = raw;
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
                let bases = self.reference_candidates(previous, sketch);
                let sets: Vec<&[CodeId]> = match level {
                    Level::Maximum => (1..=bases.len()).map(|k| &bases[..k]).collect(),
                    _ if bases.is_empty() => Vec::new(),
                    _ => vec![&bases[..]],
                };
                for set in sets {
                    consider(&mut best, self.frame_plan(bytes, dictionary.as_ref(), set)?);
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

    /// One zstd frame, with an optional dictionary and the content of `bases` (nearest first)
    /// as prefix.
    fn frame_plan(
        &self,
        bytes: &[u8],
        dictionary: Option<&(u32, Arc<[u8]>)>,
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
        let frame = self
            .compressor
            .compress(bytes, self.config.level, reference)?;
        let mut refs = heapless::Vec::new();
        for b in bases {
            // `bases.len() <= MAX_REFS`, the capacity.
            let _ = refs.push(*b);
        }
        Ok(Plan {
            encoding: Encoding::Zstd,
            value: seal(&frame),
            dictionary: dictionary.map_or(0, |(v, _)| *v),
            refs,
            prefix,
            chunks: Vec::new(),
            new_chunks: Vec::new(),
        })
    }

    /// Content-defined chunks, compressed one by one; chunks already stored cost nothing.
    fn chunk_plan(
        &self,
        bytes: &[u8],
        dictionary: Option<&(u32, Arc<[u8]>)>,
    ) -> Result<Plan, StoreError> {
        let mut chunks = Vec::new();
        let mut new_chunks: Vec<(ChunkId, Vec<u8>)> = Vec::new();
        let mut seen = HashSet::new();
        for piece in self.chunker.chunks(bytes) {
            let cid = Digest::of(piece);
            chunks.push((cid, piece.len() as u32));
            if !seen.insert(cid)
                || self
                    .kv
                    .get(&id_key(tag::CHUNK_COUNT, &cid))
                    .map_err(backend)?
                    .is_some()
            {
                continue;
            }
            let mut body = ChunkBody {
                encoding: Encoding::Raw,
                dictionary: 0,
                raw_len: piece.len() as u64,
                payload: piece,
            }
            .encode();
            if self.config.level != Level::None {
                let reference = Reference {
                    dictionary: dictionary.map(|(_, d)| &d[..]),
                    prefix: &[],
                };
                let reference = match self.compressor.supports_references() {
                    true => reference,
                    false => Reference::default(),
                };
                let frame = self
                    .compressor
                    .compress(piece, self.config.level, reference)?;
                if frame.len() < piece.len() {
                    body = ChunkBody {
                        encoding: Encoding::Zstd,
                        dictionary: match reference.dictionary {
                            Some(_) => dictionary.map_or(0, |(v, _)| *v),
                            None => 0,
                        },
                        raw_len: piece.len() as u64,
                        payload: &frame,
                    }
                    .encode();
                }
            }
            new_chunks.push((cid, seal(&body)));
        }
        Ok(Plan {
            encoding: Encoding::Chunked,
            value: seal(&encode_chunk_list(&chunks)),
            dictionary: 0,
            refs: heapless::Vec::new(),
            prefix: Vec::new(),
            chunks,
            new_chunks,
        })
    }

    /// Records to try as references, best first: the previous version, then the most similar
    /// stored records; each within the depth and decode bounds together with those before it.
    fn reference_candidates(&self, previous: Option<CodeId>, sketch: &Sketch) -> Vec<CodeId> {
        let mut ranked: Vec<CodeId> = previous.into_iter().collect();
        if self.config.find_similar {
            let mut scored: Vec<(u32, u64, CodeId)> = self
                .index
                .iter()
                .filter(|(id, _)| Some(**id) != previous)
                .map(|(id, m)| (m.sketch.similarity(sketch), m.seq, *id))
                .filter(|(s, _, _)| *s >= self.config.min_similarity)
                .collect();
            scored.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
            ranked.extend(scored.iter().take(4 * MAX_REFS).map(|(_, _, id)| *id));
        }
        let max_refs = self.config.max_refs.min(MAX_REFS);
        let mut accepted = Vec::new();
        let mut closure = HashSet::new();
        let mut closure_bytes = 0u64;
        for candidate in ranked {
            if accepted.len() == max_refs {
                break;
            }
            let Some(meta) = self.index.get(&candidate) else {
                continue;
            };
            if u32::from(meta.depth) + 1 > self.config.max_depth {
                continue;
            }
            let mut added = HashSet::new();
            let mut added_bytes = 0u64;
            let mut stack = vec![candidate];
            while let Some(x) = stack.pop() {
                if closure.contains(&x) || !added.insert(x) {
                    continue;
                }
                if let Some(m) = self.index.get(&x) {
                    added_bytes += m.raw_len;
                    stack.extend(m.refs.iter().copied());
                }
            }
            if closure_bytes + added_bytes > self.config.max_closure_bytes {
                continue;
            }
            closure_bytes += added_bytes;
            closure.extend(added);
            accepted.push(candidate);
        }
        accepted
    }

    /// Decodes a planned record with the core's decoder and checks it against the original.
    fn verify_plan(&self, id: &CodeId, bytes: &[u8], plan: &Plan) -> Result<(), StoreError> {
        let object = Object::Record(*id);
        let payload = unseal(object, &plan.value)?;
        match plan.encoding {
            Encoding::Raw => {}
            Encoding::Zstd => {
                let dictionary = self.dictionary_bytes_opt(plan.dictionary)?;
                let reference = Reference {
                    dictionary: dictionary.as_deref(),
                    prefix: &plan.prefix,
                };
                let decoded = decode_frame(payload, reference, bytes.len())
                    .map_err(|e| StoreError::corrupt(object, e))?;
                if decoded != bytes {
                    return Err(StoreError::corrupt(
                        object,
                        Corruption::Digest {
                            actual: Digest::of(&decoded),
                        },
                    ));
                }
            }
            Encoding::Chunked => {
                let mut at = 0usize;
                let new: HashMap<ChunkId, &Vec<u8>> =
                    plan.new_chunks.iter().map(|(c, v)| (*c, v)).collect();
                for (cid, len) in &plan.chunks {
                    let piece = &bytes[at..at + *len as usize];
                    at += *len as usize;
                    if let Some(value) = new.get(cid) {
                        let decoded = self.decode_chunk(cid, value, *len)?;
                        if decoded != piece {
                            return Err(StoreError::corrupt(
                                Object::Chunk(*cid),
                                Corruption::Digest {
                                    actual: Digest::of(&decoded),
                                },
                            ));
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
        let depth = plan
            .refs
            .iter()
            .filter_map(|r| self.index.get(r))
            .map(|m| m.depth.saturating_add(1))
            .max()
            .unwrap_or(0);
        let meta = RecordMeta {
            pins: 1,
            dependents: 0,
            seq: self.meta.seq,
            raw_len,
            encoding: plan.encoding,
            blob,
            dictionary: plan.dictionary,
            refs: plan.refs.clone(),
            depth,
            sketch,
            stored: plan.value.len() as u64,
        };
        let mut batch = WriteBatch::new();
        let mut pending = Pending::new();
        let meta_value = seal(&meta.encode());
        let added = plan.cost() + meta_value.len() as u64 + 66;
        batch.put(id_key(tag::RECORD, &id), plan.value);
        batch.put(id_key(tag::META, &id), meta_value);
        for r in &plan.refs {
            let mut m = self.index.get(r).cloned().ok_or(StoreError::NotFound(*r))?;
            m.dependents += 1;
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
        for (cid, value) in plan.new_chunks {
            if let Ok(body) = unseal(Object::Chunk(cid), &value)
                && let Ok(chunk) = ChunkBody::decode(body)
                && chunk.dictionary != 0
            {
                *dict_deltas.entry(chunk.dictionary).or_default() += 1;
            }
            batch.put(id_key(tag::CHUNK, &cid), value);
        }
        self.apply_chunk_deltas(&chunk_deltas, &mut batch)?;
        self.apply_dict_deltas(&dict_deltas, &mut batch)?;
        let mut store_meta = self.meta.clone();
        store_meta.seq += 1;
        batch.put(STORE_META_KEY.to_vec(), seal(&store_meta.encode()));
        pending.insert(id, Some(meta.clone()));
        self.commit(batch, pending, store_meta)?;
        Ok(self.report(&id, &meta, true, added))
    }

    /// Writes `batch` (plus the metadata in `pending`) and, once it is durable, updates the
    /// in-memory index.
    fn commit(
        &mut self,
        mut batch: WriteBatch,
        pending: Pending,
        store_meta: StoreMeta,
    ) -> Result<(), StoreError> {
        for (id, meta) in &pending {
            match meta {
                Some(m) => batch.put(id_key(tag::META, id), seal(&m.encode())),
                None => batch.delete(id_key(tag::META, id)),
            }
        }
        self.kv.apply(batch).map_err(backend)?;
        for (id, meta) in pending {
            match meta {
                Some(m) => self.index.insert(id, m),
                None => self.index.remove(&id),
            };
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

    fn apply_chunk_deltas(
        &self,
        deltas: &BTreeMap<ChunkId, i64>,
        batch: &mut WriteBatch,
    ) -> Result<(), StoreError> {
        for (cid, delta) in deltas {
            let key = id_key(tag::CHUNK_COUNT, cid);
            let object = Object::ChunkCount(*cid);
            let count = self.read_count(&key, object)?.unwrap_or(0) as i64 + delta;
            if count < 0 {
                return Err(StoreError::corrupt(
                    object,
                    Corruption::Size {
                        declared: (count - delta) as u64,
                        actual: delta.unsigned_abs(),
                    },
                ));
            }
            if count == 0 {
                batch.delete(key);
                batch.delete(id_key(tag::CHUNK, cid));
            } else {
                batch.put(key, seal(&encode_count(count as u64)));
            }
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
            let count = current as i64 + delta;
            if count < 0 {
                return Err(StoreError::corrupt(
                    object,
                    Corruption::Size {
                        declared: current,
                        actual: delta.unsigned_abs(),
                    },
                ));
            }
            if count == 0 && *version != self.meta.dictionary {
                batch.delete(key);
                batch.delete(version_key(tag::DICT, *version));
            } else {
                batch.put(key, seal(&encode_count(count as u64)));
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
            Some(m) if m.is_live() => m.clone(),
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
                batch.delete(id_key(tag::RECORD, &x));
                pending.insert(x, None);
                if m.dictionary != 0 {
                    *dict_deltas.entry(m.dictionary).or_default() -= 1;
                }
                if m.encoding == Encoding::Chunked {
                    for (cid, _) in self.chunk_list(&x, &m)? {
                        *chunk_deltas.entry(cid).or_default() -= 1;
                    }
                }
                for r in &m.refs {
                    let mut rm = match pending.get(r) {
                        Some(Some(p)) => p.clone(),
                        Some(None) => continue,
                        None => self.index.get(r).cloned().ok_or(StoreError::Dangling {
                            from: Object::RecordMeta(x),
                            to: Object::RecordMeta(*r),
                        })?,
                    };
                    rm.dependents = rm.dependents.checked_sub(1).ok_or(StoreError::corrupt(
                        Object::RecordMeta(*r),
                        Corruption::Size {
                            declared: 0,
                            actual: 1,
                        },
                    ))?;
                    if rm.pins == 0 && rm.dependents == 0 {
                        pending.remove(r);
                        doomed.push((*r, rm));
                    } else {
                        pending.insert(*r, Some(rm));
                    }
                }
            }
            // Chunks lose their count from the chunk lists, which are read before deletion.
            for (cid, delta) in self.chunk_dict_deltas(&chunk_deltas)? {
                *dict_deltas.entry(cid).or_default() += delta;
            }
            self.apply_chunk_deltas(&chunk_deltas, &mut batch)?;
            self.apply_dict_deltas(&dict_deltas, &mut batch)?;
        }
        let store_meta = self.meta.clone();
        self.commit(batch, pending, store_meta)
    }

    /// Dictionary count changes caused by chunks that `chunk_deltas` removes entirely.
    fn chunk_dict_deltas(
        &self,
        chunk_deltas: &BTreeMap<ChunkId, i64>,
    ) -> Result<BTreeMap<u32, i64>, StoreError> {
        let mut out = BTreeMap::new();
        for (cid, delta) in chunk_deltas {
            let object = Object::ChunkCount(*cid);
            let count = self
                .read_count(&id_key(tag::CHUNK_COUNT, cid), object)?
                .unwrap_or(0) as i64;
            if count + delta == 0 {
                let value = self
                    .kv
                    .get(&id_key(tag::CHUNK, cid))
                    .map_err(backend)?
                    .ok_or(StoreError::Dangling {
                        from: object,
                        to: Object::Chunk(*cid),
                    })?;
                let body = unseal(Object::Chunk(*cid), &value)?;
                let chunk = ChunkBody::decode(body)
                    .map_err(|e| StoreError::corrupt(Object::Chunk(*cid), e))?;
                if chunk.dictionary != 0 {
                    *out.entry(chunk.dictionary).or_default() -= 1;
                }
            }
        }
        Ok(out)
    }

    fn meta_of(&self, id: &CodeId) -> Result<&RecordMeta, StoreError> {
        if let Some(reason) = self.damaged.get(id) {
            return Err(StoreError::corrupt(Object::RecordMeta(*id), reason.clone()));
        }
        self.index.get(id).ok_or(StoreError::NotFound(*id))
    }

    fn chunk_list(
        &self,
        id: &CodeId,
        meta: &RecordMeta,
    ) -> Result<Vec<(ChunkId, u32)>, StoreError> {
        let object = Object::Record(*id);
        let value = self
            .kv
            .get(&id_key(tag::RECORD, id))
            .map_err(backend)?
            .ok_or(StoreError::Dangling {
                from: Object::RecordMeta(*id),
                to: object,
            })?;
        decode_chunk_list(unseal(object, &value)?, meta.raw_len, ChunkConfig::MAX_SIZE)
            .map_err(|e| StoreError::corrupt(object, e))
    }

    /// The bytes of the live record `id`, checked against its digest.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when `id` is not live; [`StoreError::Corrupt`],
    /// [`StoreError::Dangling`], [`StoreError::Cycle`] or [`StoreError::TooDeep`] when the
    /// record or anything it refers to is damaged; backend failures.
    pub fn get(&self, id: &CodeId) -> Result<Vec<u8>, StoreError> {
        Ok(self.get_shared(id)?.to_vec())
    }

    /// As [`CodeStore::get`], sharing the decoded bytes with the store's cache.
    ///
    /// # Errors
    /// As [`CodeStore::get`].
    pub fn get_shared(&self, id: &CodeId) -> Result<Arc<[u8]>, StoreError> {
        if !self.meta_of(id)?.is_live() {
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
    fn content(&self, id: &CodeId) -> Result<Arc<[u8]>, StoreError> {
        let mut stack = Vec::new();
        self.materialize(id, &mut stack)
    }

    fn materialize(&self, id: &CodeId, stack: &mut Vec<CodeId>) -> Result<Arc<[u8]>, StoreError> {
        if let Some(content) = self.cache.lock().get(id) {
            return Ok(content);
        }
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
            Ok(m) => m,
            Err(StoreError::NotFound(_)) if !stack.is_empty() => {
                return Err(StoreError::Dangling {
                    from: Object::RecordMeta(*stack.last().unwrap_or(id)),
                    to: Object::RecordMeta(*id),
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
        let value = self
            .kv
            .get(&id_key(tag::RECORD, id))
            .map_err(backend)?
            .ok_or(StoreError::Dangling {
                from: Object::RecordMeta(*id),
                to: object,
            })?;
        let payload = unseal(object, &value)?;
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
                payload.to_vec()
            }
            Encoding::Zstd => {
                stack.push(*id);
                let mut prefix = Vec::new();
                for r in meta.refs.iter().rev() {
                    prefix.extend_from_slice(&self.materialize(r, stack)?);
                }
                stack.pop();
                let dictionary = self.dictionary_bytes_opt(meta.dictionary)?;
                let reference = Reference {
                    dictionary: dictionary.as_deref(),
                    prefix: &prefix,
                };
                decode_frame(payload, reference, raw_len)
                    .map_err(|e| StoreError::corrupt(object, e))?
            }
            Encoding::Chunked => {
                let list = decode_chunk_list(payload, meta.raw_len, ChunkConfig::MAX_SIZE)
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
                    out.extend_from_slice(&self.decode_chunk(&cid, &value, len)?);
                }
                out
            }
        };
        let actual = Digest::of(&content);
        if actual != *id {
            return Err(StoreError::corrupt(object, Corruption::Digest { actual }));
        }
        let content: Arc<[u8]> = content.into();
        self.cache.lock().insert(*id, content.clone());
        Ok(content)
    }

    /// Decodes a sealed chunk value of `len` bytes and checks its digest.
    fn decode_chunk(&self, cid: &ChunkId, value: &[u8], len: u32) -> Result<Vec<u8>, StoreError> {
        let object = Object::Chunk(*cid);
        let chunk = ChunkBody::decode(unseal(object, value)?)
            .map_err(|e| StoreError::corrupt(object, e))?;
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
                decode_frame(chunk.payload, reference, len as usize)
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

    fn dictionary_for_writes(&self) -> Result<Option<(u32, Arc<[u8]>)>, StoreError> {
        match self.meta.dictionary {
            0 => Ok(None),
            v => Ok(Some((v, self.dictionary_bytes(v)?))),
        }
    }

    fn live_totals(&self) -> (usize, u64) {
        self.index
            .values()
            .filter(|m| m.is_live())
            .fold((0, 0), |(n, b), m| (n + 1, b + m.raw_len))
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
            .filter(|(_, m)| m.is_live())
            .map(|(id, m)| (m.seq, *id))
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
        let sample_refs: Vec<&[u8]> = samples.iter().map(|s| &s[..]).collect();
        let trained = self.compressor.train_dictionary(&sample_refs, policy.size);
        let mut batch = WriteBatch::new();
        let version = match trained {
            None => None,
            Some(dict) => {
                codec::check_dictionary(&dict).map_err(|e| {
                    StoreError::Compress(crate::error::CompressError {
                        message: format!("trained dictionary is unreadable: {e}"),
                    })
                })?;
                let version = self.meta.last_dictionary + 1;
                let old = self.meta.dictionary;
                if old != 0 {
                    let key = version_key(tag::DICT_COUNT, old);
                    if self.read_count(&key, Object::DictionaryCount(old))? == Some(0) {
                        batch.delete(key);
                        batch.delete(version_key(tag::DICT, old));
                    }
                }
                batch.put(version_key(tag::DICT, version), seal(&dict));
                batch.put(
                    version_key(tag::DICT_COUNT, version),
                    seal(&encode_count(0)),
                );
                store_meta.dictionary = version;
                store_meta.last_dictionary = version;
                Some(version)
            }
        };
        batch.put(STORE_META_KEY.to_vec(), seal(&store_meta.encode()));
        self.commit(batch, Pending::new(), store_meta)?;
        Ok(version)
    }

    /// Statistics of the live record `id`.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when `id` is not stored.
    pub fn record_stats(&self, id: &CodeId) -> Result<RecordStats, StoreError> {
        let meta = self.meta_of(id)?;
        let meta_len = seal(&meta.encode()).len() as u64;
        Ok(RecordStats {
            id: *id,
            kind: RecordKind::of(meta),
            blob: meta.blob,
            raw_bytes: meta.raw_len,
            stored_bytes: meta.stored + meta_len + 66,
            pins: meta.pins.into(),
            dependents: meta.dependents.into(),
            refs: meta.refs.to_vec(),
            dictionary: (meta.dictionary != 0).then_some(meta.dictionary),
            depth: meta.depth.into(),
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
                    Some(tag::RECORD | tag::META) => match key_id(key) {
                        Some(id) => *sizes.entry(id).or_default() += n,
                        None => s.index_bytes += n,
                    },
                    Some(tag::CHUNK) => {
                        s.chunks += 1;
                        s.chunk_bytes += n;
                    }
                    Some(tag::CHUNK_COUNT) => s.chunk_bytes += n,
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
            let Some(meta) = self.index.get(&id) else {
                s.index_bytes += n;
                continue;
            };
            if meta.is_live() {
                s.live_records += 1;
                s.live_raw_bytes += meta.raw_len;
            } else {
                s.retained_records += 1;
            }
            let kind = match RecordKind::of(meta) {
                RecordKind::Full => &mut s.full,
                RecordKind::Delta => &mut s.delta,
                RecordKind::Chunked => &mut s.chunked,
            };
            kind.records += 1;
            kind.raw_bytes += meta.raw_len;
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
        let truth = self.recount()?;
        let mut report = VerifyReport {
            records: self.index.len() as u64,
            chunks: truth.chunk_values.len() as u64,
            dictionaries: truth.dict_values.len() as u64,
            problems: truth.problems,
        };
        let problems = &mut report.problems;
        for (id, reason) in &self.damaged {
            problems.push(format!("{}: {reason}", Object::RecordMeta(*id)));
        }
        let mut ids: Vec<&CodeId> = self.index.keys().collect();
        ids.sort_unstable();
        for id in ids {
            let meta = &self.index[id];
            let want = truth.dependents.get(id).copied().unwrap_or(0);
            if u64::from(meta.dependents) != want {
                problems.push(format!(
                    "{} counts {} dependents, {want} found",
                    Object::RecordMeta(*id),
                    meta.dependents
                ));
            }
            if meta.pins == 0 && meta.dependents == 0 {
                problems.push(format!("{} is held by nothing", Object::Record(*id)));
            }
            for r in &meta.refs {
                if !self.index.contains_key(r) {
                    problems.push(format!(
                        "{} refers to missing record {}",
                        Object::Record(*id),
                        r.short()
                    ));
                }
            }
            match self.kv.get(&id_key(tag::RECORD, id)).map_err(backend)? {
                None => problems.push(format!("{} is missing", Object::Record(*id))),
                Some(v) => {
                    if let Err(e) = unseal(Object::Record(*id), &v) {
                        problems.push(format!("{e}"));
                    }
                }
            }
            if deep
                && meta.is_live()
                && let Err(e) = self.get_shared(id)
            {
                problems.push(format!("{e}"));
            }
        }
        for (cid, (count, _)) in &truth.chunk_values {
            let want = truth.chunk_uses.get(cid).copied().unwrap_or(0);
            if *count != Some(want) {
                problems.push(format!(
                    "{} is {count:?}, {want} uses found",
                    Object::ChunkCount(*cid)
                ));
            }
        }
        for cid in truth.chunk_uses.keys() {
            if !truth.chunk_values.contains_key(cid) {
                problems.push(format!("{} is missing", Object::Chunk(*cid)));
            }
        }
        for (v, (count, _)) in &truth.dict_values {
            let want = truth.dict_uses.get(v).copied().unwrap_or(0);
            if *count != Some(want) {
                problems.push(format!(
                    "{} is {count:?}, {want} uses found",
                    Object::DictionaryCount(*v)
                ));
            }
        }
        for v in truth.dict_uses.keys() {
            if !truth.dict_values.contains_key(v) {
                problems.push(format!("{} is missing", Object::Dictionary(*v)));
            }
        }
        Ok(report)
    }

    /// Removes every object nothing refers to: records neither live nor referred to, chunks no
    /// record lists, dictionaries no record or chunk uses (except the current one). With exact
    /// counting there is nothing to collect; this repairs stores damaged or edited outside the
    /// store, in one atomic batch.
    ///
    /// # Errors
    /// Backend failures.
    pub fn gc(&mut self) -> Result<GcReport, StoreError> {
        let truth = self.recount()?;
        let mut report = GcReport::default();
        let mut batch = WriteBatch::new();
        let mut pending = Pending::new();
        for (id, meta) in &self.index {
            if !meta.is_live() && truth.dependents.get(id).copied().unwrap_or(0) == 0 {
                report.records += 1;
                report.bytes += meta.stored + 66;
                batch.delete(id_key(tag::RECORD, id));
                pending.insert(*id, None);
            }
        }
        for (cid, (_, bytes)) in &truth.chunk_values {
            if !truth.chunk_uses.contains_key(cid) {
                report.chunks += 1;
                report.bytes += bytes;
                batch.delete(id_key(tag::CHUNK, cid));
                batch.delete(id_key(tag::CHUNK_COUNT, cid));
            }
        }
        for (v, (_, bytes)) in &truth.dict_values {
            if !truth.dict_uses.contains_key(v) && *v != self.meta.dictionary {
                report.dictionaries += 1;
                report.bytes += bytes;
                batch.delete(version_key(tag::DICT, *v));
                batch.delete(version_key(tag::DICT_COUNT, *v));
            }
        }
        let store_meta = self.meta.clone();
        self.commit(batch, pending, store_meta)?;
        Ok(report)
    }

    /// Counts every reference from the records' metadata and chunk lists.
    fn recount(&self) -> Result<Recount, StoreError> {
        let mut t = Recount::default();
        for (id, meta) in &self.index {
            for r in &meta.refs {
                *t.dependents.entry(*r).or_default() += 1;
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
        let mut chunk_counts: HashMap<ChunkId, Option<u64>> = HashMap::new();
        let mut chunk_bytes: Vec<(ChunkId, u64, Option<Vec<u8>>)> = Vec::new();
        self.kv
            .scan(&[tag::CHUNK], &mut |key, value| {
                if let Some(cid) = key_id(key) {
                    chunk_bytes.push((cid, (key.len() + value.len()) as u64, Some(value.to_vec())));
                }
            })
            .map_err(backend)?;
        let mut count_problems = Vec::new();
        self.kv
            .scan(&[tag::CHUNK_COUNT], &mut |key, value| {
                if let Some(cid) = key_id(key) {
                    let count = unseal(Object::ChunkCount(cid), value)
                        .ok()
                        .and_then(|b| decode_count(b).ok());
                    if count.is_none() {
                        count_problems.push(format!("{} is damaged", Object::ChunkCount(cid)));
                    }
                    chunk_counts.insert(cid, count);
                }
            })
            .map_err(backend)?;
        t.problems.extend(count_problems);
        for (cid, bytes, value) in chunk_bytes {
            let count = chunk_counts.remove(&cid).flatten();
            if let Some(value) = value {
                match unseal(Object::Chunk(cid), &value).and_then(|b| {
                    ChunkBody::decode(b).map_err(|e| StoreError::corrupt(Object::Chunk(cid), e))
                }) {
                    Ok(chunk) => {
                        if chunk.dictionary != 0 {
                            *t.dict_uses.entry(chunk.dictionary).or_default() += 1;
                        }
                    }
                    Err(e) => t.problems.push(format!("{e}")),
                }
            }
            t.chunk_values.insert(cid, (count, bytes + 41));
        }
        for cid in chunk_counts.keys() {
            t.problems
                .push(format!("{} has a count but no chunk", Object::Chunk(*cid)));
        }
        let mut dict_problems = Vec::new();
        let mut dicts: Vec<(u32, u64)> = Vec::new();
        self.kv
            .scan(&[tag::DICT], &mut |key, value| {
                if let Some(v) = key_version(key) {
                    dicts.push((v, (key.len() + value.len()) as u64));
                    if let Err(e) = unseal(Object::Dictionary(v), value).and_then(|b| {
                        codec::check_dictionary(b)
                            .map_err(|e| StoreError::corrupt(Object::Dictionary(v), e))
                    }) {
                        dict_problems.push(format!("{e}"));
                    }
                }
            })
            .map_err(backend)?;
        t.problems.extend(dict_problems);
        for (v, bytes) in dicts {
            let count =
                self.read_count(&version_key(tag::DICT_COUNT, v), Object::DictionaryCount(v));
            let count = match count {
                Ok(c) => c,
                Err(e) => {
                    t.problems.push(format!("{e}"));
                    None
                }
            };
            t.dict_values.insert(v, (count, bytes));
        }
        Ok(t)
    }
}

/// Reference counts recomputed from scratch.
#[derive(Default)]
struct Recount {
    dependents: HashMap<CodeId, u64>,
    chunk_uses: HashMap<ChunkId, u64>,
    dict_uses: HashMap<u32, u64>,
    /// Stored chunks: their count (if readable) and bytes.
    chunk_values: HashMap<ChunkId, (Option<u64>, u64)>,
    /// Stored dictionaries: their count (if readable) and bytes.
    dict_values: HashMap<u32, (Option<u64>, u64)>,
    problems: Vec<String>,
}

#[cfg(test)]
mod tests;
