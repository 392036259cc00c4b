//! The store's persisted layout.
//!
//! | key | value (sealed) | mutable |
//! |---|---|---|
//! | `M` | [`StoreMeta`]: format version, insertion counter, current dictionary | yes |
//! | `R` + code id | a record's payload: raw bytes, one zstd frame, or a chunk list | no |
//! | `N` + code id | [`RecordMeta`]: counts, encoding, references, sketch | counts only |
//! | `C` + chunk id | [`ChunkBody`]: one chunk, raw or as a zstd frame | no |
//! | `K` + chunk id | reference count of the chunk | yes |
//! | `D` + version | a zstd dictionary | no |
//! | `E` + version | reference count of the dictionary | yes |
//!
//! Every value is *sealed*: the first eight bytes of the blake3 digest of the body precede it,
//! so that a damaged value is reported as such, by name, before anything is decoded from it.
//! Immutable payloads are kept apart from the counts that change, so that a new reference to a
//! large record rewrites only its small metadata.

use alloc::vec::Vec;

use crate::digest::{ChunkId, CodeId, Digest};
use crate::error::{Corruption, Object, StoreError};
use crate::wire::{Reader, WireError, put_varint};

use super::sketch::{ENCODED_LEN as SKETCH_LEN, Sketch};

/// The layout version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The most records one record may refer to.
pub const MAX_REFS: usize = 3;

/// Length of the integrity seal before every value.
pub const SEAL_LEN: usize = 8;

/// Key of the store's metadata.
pub const STORE_META_KEY: &[u8] = b"M";

/// One-byte key prefixes.
pub mod tag {
    /// Record payloads.
    pub const RECORD: u8 = b'R';
    /// Record metadata.
    pub const META: u8 = b'N';
    /// Chunk payloads.
    pub const CHUNK: u8 = b'C';
    /// Chunk reference counts.
    pub const CHUNK_COUNT: u8 = b'K';
    /// Dictionaries.
    pub const DICT: u8 = b'D';
    /// Dictionary reference counts.
    pub const DICT_COUNT: u8 = b'E';
}

/// `tag` followed by a digest.
pub fn id_key(tag: u8, id: &Digest) -> Vec<u8> {
    let mut k = Vec::with_capacity(33);
    k.push(tag);
    k.extend_from_slice(id.as_bytes());
    k
}

/// `tag` followed by a big-endian version (so that keys sort by version).
pub fn version_key(tag: u8, version: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(5);
    k.push(tag);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// Parses the digest of an `id_key`.
pub fn key_id(key: &[u8]) -> Option<Digest> {
    let bytes: [u8; 32] = key.get(1..)?.try_into().ok()?;
    Some(Digest(bytes))
}

/// Parses the version of a `version_key`.
pub fn key_version(key: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(key.get(1..)?.try_into().ok()?))
}

fn seal_of(body: &[u8]) -> [u8; SEAL_LEN] {
    let mut s = [0u8; SEAL_LEN];
    s.copy_from_slice(&blake3::hash(body).as_bytes()[..SEAL_LEN]);
    s
}

/// Prefixes `body` with its seal.
pub fn seal(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SEAL_LEN + body.len());
    out.extend_from_slice(&seal_of(body));
    out.extend_from_slice(body);
    out
}

/// Checks the seal of a stored value and returns its body.
///
/// # Errors
/// [`StoreError::Corrupt`] naming `object` when the value is too short or altered.
pub fn unseal(object: Object, value: &[u8]) -> Result<&[u8], StoreError> {
    if value.len() < SEAL_LEN {
        return Err(StoreError::corrupt(
            object,
            WireError {
                field: "seal",
                offset: 0,
                problem: crate::wire::Problem::Truncated,
            },
        ));
    }
    let (s, body) = value.split_at(SEAL_LEN);
    if s != seal_of(body) {
        return Err(StoreError::corrupt(object, Corruption::Checksum));
    }
    Ok(body)
}

/// How a record's payload holds its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// The bytes themselves.
    Raw,
    /// One zstd frame, possibly referring to a dictionary and to other records.
    Zstd,
    /// A list of chunks stored apart and shared between records.
    Chunked,
}

impl Encoding {
    fn code(self) -> u8 {
        match self {
            Encoding::Raw => 0,
            Encoding::Zstd => 1,
            Encoding::Chunked => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Encoding::Raw),
            1 => Some(Encoding::Zstd),
            2 => Some(Encoding::Chunked),
            _ => None,
        }
    }
}

/// A record's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMeta {
    /// Puts minus deletes: the record is visible while this is positive.
    pub pins: u32,
    /// Records that refer to this one: it stays stored while this is positive.
    pub dependents: u32,
    /// Insertion order.
    pub seq: u64,
    /// Size of the original bytes.
    pub raw_len: u64,
    /// How the payload holds them.
    pub encoding: Encoding,
    /// A data blob (code-as-storage) rather than contract code.
    pub blob: bool,
    /// Dictionary version the payload (or its chunks) was compressed with; 0 for none.
    pub dictionary: u32,
    /// Records whose content precedes this one's in the zstd window, farthest first.
    pub refs: heapless::Vec<CodeId, MAX_REFS>,
    /// Length of the longest chain of references below this record.
    pub depth: u8,
    /// Similarity sketch of the original bytes.
    pub sketch: Sketch,
    /// Size of the sealed payload value.
    pub stored: u64,
}

impl RecordMeta {
    /// Whether a user holds the record.
    pub fn is_live(&self) -> bool {
        self.pins > 0
    }

    /// Encodes the metadata (unsealed).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + SKETCH_LEN + 32 * self.refs.len());
        out.push(1);
        put_varint(&mut out, self.pins.into());
        put_varint(&mut out, self.dependents.into());
        put_varint(&mut out, self.seq);
        put_varint(&mut out, self.raw_len);
        out.push(self.encoding.code());
        out.push(u8::from(self.blob));
        put_varint(&mut out, self.dictionary.into());
        out.push(self.refs.len() as u8);
        for r in &self.refs {
            out.extend_from_slice(r.as_bytes());
        }
        out.push(self.depth);
        out.extend_from_slice(&self.sketch.encode());
        put_varint(&mut out, self.stored);
        out
    }

    /// Decodes [`RecordMeta::encode`]'s output.
    ///
    /// # Errors
    /// Names the field that is malformed.
    pub fn decode(body: &[u8]) -> Result<Self, Corruption> {
        let mut r = Reader::new(body);
        let version = r.u8("meta version")?;
        if version != 1 {
            return Err(Corruption::Unsupported {
                found: version.into(),
            });
        }
        let pins = r.varint_max("pins", u32::MAX.into())? as u32;
        let dependents = r.varint_max("dependents", u32::MAX.into())? as u32;
        let seq = r.varint("seq")?;
        let raw_len = r.varint("raw_len")?;
        let code = r.u8("encoding")?;
        let encoding = Encoding::from_code(code).ok_or(r.invalid("encoding", code.into()))?;
        let flags = r.u8("flags")?;
        if flags > 1 {
            return Err(r.invalid("flags", flags.into()).into());
        }
        let dictionary = r.varint_max("dictionary", u32::MAX.into())? as u32;
        let n = r.len("refs", MAX_REFS)?;
        let mut refs = heapless::Vec::new();
        for _ in 0..n {
            // `n <= MAX_REFS`, the capacity: the push cannot fail.
            let _ = refs.push(Digest(r.array("ref")?));
        }
        let depth = r.u8("depth")?;
        let sketch = Sketch::decode(&r.array("sketch")?);
        let stored = r.varint("stored")?;
        r.finish("meta")?;
        Ok(Self {
            pins,
            dependents,
            seq,
            raw_len,
            encoding,
            blob: flags == 1,
            dictionary,
            refs,
            depth,
            sketch,
            stored,
        })
    }
}

/// The store's own metadata.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoreMeta {
    /// Next insertion sequence number.
    pub seq: u64,
    /// Dictionary new records are compressed with; 0 for none.
    pub dictionary: u32,
    /// Last dictionary version ever assigned.
    pub last_dictionary: u32,
    /// Live raw bytes when the current dictionary was trained.
    pub trained_at: u64,
}

impl StoreMeta {
    /// Encodes the metadata (unsealed).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24);
        put_varint(&mut out, FORMAT_VERSION.into());
        put_varint(&mut out, self.seq);
        put_varint(&mut out, self.dictionary.into());
        put_varint(&mut out, self.last_dictionary.into());
        put_varint(&mut out, self.trained_at);
        out
    }

    /// Decodes [`StoreMeta::encode`]'s output.
    ///
    /// # Errors
    /// [`StoreError::UnsupportedFormat`] for another layout version; corruption otherwise.
    pub fn decode(body: &[u8]) -> Result<Self, StoreError> {
        let corrupt = |e: WireError| StoreError::corrupt(Object::StoreMeta, e);
        let mut r = Reader::new(body);
        let version = r.varint("format version").map_err(corrupt)?;
        if version != u64::from(FORMAT_VERSION) {
            return Err(StoreError::UnsupportedFormat {
                found: version.min(u32::MAX.into()) as u32,
                supported: FORMAT_VERSION,
            });
        }
        let seq = r.varint("seq").map_err(corrupt)?;
        let dictionary = r
            .varint_max("dictionary", u32::MAX.into())
            .map_err(corrupt)? as u32;
        let last_dictionary = r
            .varint_max("last dictionary", u32::MAX.into())
            .map_err(corrupt)? as u32;
        let trained_at = r.varint("trained at").map_err(corrupt)?;
        r.finish("store meta").map_err(corrupt)?;
        Ok(Self {
            seq,
            dictionary,
            last_dictionary,
            trained_at,
        })
    }
}

/// A chunk's stored form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkBody<'a> {
    /// Raw or zstd.
    pub encoding: Encoding,
    /// Dictionary version of the frame; 0 for none.
    pub dictionary: u32,
    /// The chunk's size.
    pub raw_len: u64,
    /// The bytes or the frame.
    pub payload: &'a [u8],
}

impl<'a> ChunkBody<'a> {
    /// Encodes the chunk (unsealed).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + self.payload.len());
        out.push(self.encoding.code());
        put_varint(&mut out, self.dictionary.into());
        put_varint(&mut out, self.raw_len);
        out.extend_from_slice(self.payload);
        out
    }

    /// Decodes [`ChunkBody::encode`]'s output.
    ///
    /// # Errors
    /// Names the field that is malformed.
    pub fn decode(body: &'a [u8]) -> Result<Self, Corruption> {
        let mut r = Reader::new(body);
        let code = r.u8("chunk encoding")?;
        let encoding = match Encoding::from_code(code) {
            Some(e @ (Encoding::Raw | Encoding::Zstd)) => e,
            _ => return Err(r.invalid("chunk encoding", code.into()).into()),
        };
        let dictionary = r.varint_max("dictionary", u32::MAX.into())? as u32;
        let raw_len = r.varint("raw_len")?;
        let payload = r.rest();
        Ok(Self {
            encoding,
            dictionary,
            raw_len,
            payload,
        })
    }
}

/// Encodes a chunk list: the payload of a chunked record.
pub fn encode_chunk_list(chunks: &[(ChunkId, u32)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + chunks.len() * 35);
    put_varint(&mut out, chunks.len() as u64);
    for (id, len) in chunks {
        out.extend_from_slice(id.as_bytes());
        put_varint(&mut out, (*len).into());
    }
    out
}

/// Decodes a chunk list whose lengths must add up to `raw_len`, each at most `max_chunk`.
///
/// # Errors
/// Names the field that is malformed or the sum that does not match.
pub fn decode_chunk_list(
    payload: &[u8],
    raw_len: u64,
    max_chunk: u32,
) -> Result<Vec<(ChunkId, u32)>, Corruption> {
    let mut r = Reader::new(payload);
    // Each entry takes at least 33 bytes: the count cannot exceed what the payload holds.
    let n = r.len("chunk count", payload.len() / 33)?;
    let mut out = Vec::with_capacity(n);
    let mut total = 0u64;
    for _ in 0..n {
        let id = Digest(r.array("chunk id")?);
        let len = r.varint_max("chunk length", max_chunk.into())? as u32;
        if len == 0 {
            return Err(r.invalid("chunk length", 0).into());
        }
        total += u64::from(len);
        out.push((id, len));
    }
    r.finish("chunk list")?;
    if total != raw_len {
        return Err(Corruption::Size {
            declared: raw_len,
            actual: total,
        });
    }
    Ok(out)
}

/// Encodes a reference count (unsealed).
pub fn encode_count(count: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(4);
    put_varint(&mut out, count);
    out
}

/// Decodes a reference count.
///
/// # Errors
/// Malformed varint or trailing bytes.
pub fn decode_count(body: &[u8]) -> Result<u64, Corruption> {
    let mut r = Reader::new(body);
    let n = r.varint("count")?;
    r.finish("count")?;
    Ok(n)
}
