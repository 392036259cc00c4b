//! The store's persisted layout.
//!
//! | key | value (sealed) |
//! |---|---|
//! | `M` | [`StoreMeta`]: format version, insertion counter, current dictionary |
//! | `R` + code id | [`RecordMeta`], then the payload when it is at most [`INLINE_MAX`] bytes |
//! | `B` + code id | the payload of a larger record |
//! | `C` + chunk id | the chunk's reference count, then [`ChunkBody`] |
//! | `D` + version | a zstd dictionary |
//! | `E` + version | the dictionary's reference count |
//!
//! Every value is *sealed*: the first four bytes of the blake3 digest of the body precede it,
//! so that a damaged value is reported as such, by name, before anything is decoded from it.
//!
//! A record's metadata and small payload share one value, so that a small contract costs one
//! key; a change of its counts rewrites at most [`INLINE_MAX`] bytes. Larger payloads live
//! apart and are never rewritten. Records refer to each other by insertion sequence number
//! (a varint of two or three bytes, at most [`MAX_SEQ`]) rather than by digest.
//!
//! The seal catches accidental damage, not edits: a value can be changed and sealed again. So
//! every number read from a value is bounded or used with checked arithmetic.
//!
//! A payload holding a zstd frame omits the frame's four-byte magic number; the decoder puts it
//! back.

use alloc::vec::Vec;

use crate::digest::{ChunkId, Digest};
use crate::error::{Corruption, Object, StoreError};
use crate::wire::{Problem, Reader, WireError, put_varint};

use super::sketch::{self, Sketch};

/// The layout version this build writes and reads.
pub const FORMAT_VERSION: u32 = 2;

/// The most records one record may refer to.
pub const MAX_REFS: usize = 3;

/// The largest sequence number a record may have or refer to. Sequence numbers count puts, so
/// no store reaches it; the bound keeps the counter's increments from overflowing on stored
/// values that were edited.
pub const MAX_SEQ: u64 = (1 << 62) - 1;

/// Length of the integrity seal before every value.
pub const SEAL_LEN: usize = 4;

/// Payloads up to this size are kept in the record's own value.
pub const INLINE_MAX: usize = 16 * 1024;

/// Key of the store's metadata.
pub const STORE_META_KEY: &[u8] = b"M";

/// The zstd frame magic number, which stored frames omit.
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// One-byte key prefixes.
pub mod tag {
    /// Records: metadata and small payloads.
    pub const RECORD: u8 = b'R';
    /// Payloads of large records.
    pub const BODY: u8 = b'B';
    /// Chunks with their counts.
    pub const CHUNK: u8 = b'C';
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

/// Seals the concatenation of `parts`.
pub fn seal(parts: &[&[u8]]) -> Vec<u8> {
    let len = parts.iter().map(|p| p.len()).sum::<usize>();
    let mut out = Vec::with_capacity(SEAL_LEN + len);
    out.extend_from_slice(&[0; SEAL_LEN]);
    for p in parts {
        out.extend_from_slice(p);
    }
    let s = seal_of(&out[SEAL_LEN..]);
    out[..SEAL_LEN].copy_from_slice(&s);
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
                problem: Problem::Truncated,
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
    /// One zstd frame (without magic), possibly referring to a dictionary and other records.
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

const FLAG_BLOB: u8 = 1 << 2;
const FLAG_SEPARATE: u8 = 1 << 3;
const FLAGS_KNOWN: u8 = 0b11 | FLAG_BLOB | FLAG_SEPARATE;

/// A record's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMeta {
    /// Insertion sequence number: the record's short name for references.
    pub seq: u64,
    /// Puts minus deletes: the record is visible while this is positive.
    pub pins: u32,
    /// Records that refer to this one: it stays stored while this is positive.
    pub dependents: u32,
    /// Size of the original bytes.
    pub raw_len: u64,
    /// How the payload holds them.
    pub encoding: Encoding,
    /// A data blob (code-as-storage) rather than contract code.
    pub blob: bool,
    /// Whether the payload is in its own value (`B` + id) rather than after the metadata.
    pub separate: bool,
    /// Dictionary version of the payload's frame; 0 for none.
    pub dictionary: u32,
    /// Sequence numbers of the records whose content precedes this one's in the zstd window,
    /// nearest first.
    pub refs: heapless::Vec<u64, MAX_REFS>,
    /// Similarity sketch of the original bytes.
    pub sketch: Sketch,
}

impl RecordMeta {
    /// Whether a user holds the record.
    pub fn is_live(&self) -> bool {
        self.pins > 0
    }

    /// Encodes the metadata followed by `payload` (empty for a separate payload), unsealed.
    pub fn encode(&self, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + sketch::BINS + payload.len());
        let mut flags = self.encoding.code();
        if self.blob {
            flags |= FLAG_BLOB;
        }
        if self.separate {
            flags |= FLAG_SEPARATE;
        }
        out.push(flags);
        put_varint(&mut out, self.seq);
        put_varint(&mut out, self.pins.into());
        put_varint(&mut out, self.dependents.into());
        put_varint(&mut out, self.raw_len);
        put_varint(&mut out, self.dictionary.into());
        out.push(self.refs.len() as u8);
        for r in &self.refs {
            put_varint(&mut out, *r);
        }
        self.sketch.encode(&mut out);
        out.extend_from_slice(payload);
        out
    }

    /// Decodes [`RecordMeta::encode`]'s output into the metadata and the inline payload.
    ///
    /// # Errors
    /// Names the field that is malformed.
    pub fn decode(body: &[u8]) -> Result<(Self, &[u8]), Corruption> {
        let mut r = Reader::new(body);
        let flags = r.u8("flags")?;
        if flags & !FLAGS_KNOWN != 0 {
            return Err(r.invalid("flags", flags.into()).into());
        }
        let encoding = Encoding::from_code(flags & 0b11)
            .ok_or(r.invalid("encoding", (flags & 0b11).into()))?;
        let seq = r.varint_max("seq", MAX_SEQ)?;
        let pins = r.varint_max("pins", u32::MAX.into())? as u32;
        let dependents = r.varint_max("dependents", u32::MAX.into())? as u32;
        let raw_len = r.varint("raw_len")?;
        let dictionary = r.varint_max("dictionary", u32::MAX.into())? as u32;
        let n = r.len("refs", MAX_REFS)?;
        let mut refs = heapless::Vec::new();
        for _ in 0..n {
            // `n <= MAX_REFS`, the capacity: the push cannot fail.
            let _ = refs.push(r.varint_max("ref", MAX_SEQ)?);
        }
        let at = r.offset();
        let sketch = Sketch::decode(r.take("sketch", sketch::encoded_len(raw_len))?, raw_len)
            .ok_or(Corruption::Wire(WireError {
                field: "sketch",
                offset: at,
                problem: Problem::Truncated,
            }))?;
        let separate = flags & FLAG_SEPARATE != 0;
        let payload = r.rest();
        if separate && !payload.is_empty() {
            return Err(Corruption::Wire(WireError {
                field: "payload",
                offset: body.len() - payload.len(),
                problem: Problem::Trailing {
                    bytes: payload.len(),
                },
            }));
        }
        Ok((
            Self {
                seq,
                pins,
                dependents,
                raw_len,
                encoding,
                blob: flags & FLAG_BLOB != 0,
                separate,
                dictionary,
                refs,
                sketch,
            },
            payload,
        ))
    }
}

/// The store's own metadata.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoreMeta {
    /// Next insertion sequence number (at most [`MAX_SEQ`] + 1). On open it is raised above
    /// every number a stored record has or refers to.
    pub seq: u64,
    /// Dictionary new records are compressed with; 0 for none.
    pub dictionary: u32,
    /// Last dictionary version ever assigned. On open it is raised to every version stored or
    /// used by a record.
    pub last_dictionary: u32,
    /// Live raw bytes when a dictionary was last trained.
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
        // The next number to hand out: one past the largest a record may have.
        let seq = r.varint_max("seq", MAX_SEQ + 1).map_err(corrupt)?;
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
    /// Records listing the chunk (each listing counts).
    pub count: u64,
    /// Raw or zstd.
    pub encoding: Encoding,
    /// Dictionary version of the frame; 0 for none.
    pub dictionary: u32,
    /// The chunk's size.
    pub raw_len: u64,
    /// The bytes or the frame (without magic).
    pub payload: &'a [u8],
}

impl<'a> ChunkBody<'a> {
    /// Encodes the chunk (unsealed).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.payload.len());
        put_varint(&mut out, self.count);
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
        let count = r.varint("chunk count")?;
        let code = r.u8("chunk encoding")?;
        let encoding = match Encoding::from_code(code) {
            Some(e @ (Encoding::Raw | Encoding::Zstd)) => e,
            _ => return Err(r.invalid("chunk encoding", code.into()).into()),
        };
        let dictionary = r.varint_max("dictionary", u32::MAX.into())? as u32;
        let raw_len = r.varint("raw_len")?;
        let payload = r.rest();
        Ok(Self {
            count,
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
        total = total.saturating_add(u64::from(len));
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

/// Puts the zstd magic number back in front of a stored frame.
pub fn with_magic(frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + frame.len());
    out.extend_from_slice(&ZSTD_MAGIC);
    out.extend_from_slice(frame);
    out
}

/// Removes the zstd magic number from a frame a compressor wrote.
///
/// # Errors
/// The frame does not start with the magic number.
pub fn without_magic(mut frame: Vec<u8>) -> Result<Vec<u8>, Corruption> {
    if frame.get(..4) != Some(&ZSTD_MAGIC[..]) {
        return Err(Corruption::Zstd(
            "compressor output is not a zstd frame".into(),
        ));
    }
    frame.drain(..4);
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn meta(refs: &[u64], separate: bool) -> RecordMeta {
        RecordMeta {
            seq: 300,
            pins: 2,
            dependents: 70_000,
            raw_len: 123_456,
            encoding: Encoding::Zstd,
            blob: true,
            separate,
            dictionary: 3,
            refs: refs.iter().copied().collect(),
            sketch: Sketch::of(
                &(0..123_456u32)
                    .map(|i| (i * 7 % 251) as u8)
                    .collect::<Vec<u8>>(),
            ),
        }
    }

    #[test]
    fn record_meta_round_trip() {
        let m = meta(&[1, 200, 70_000], false);
        let enc = m.encode(b"payload");
        assert_eq!(RecordMeta::decode(&enc).unwrap(), (m, &b"payload"[..]));
        let m = meta(&[], true);
        let enc = m.encode(&[]);
        assert_eq!(RecordMeta::decode(&enc).unwrap(), (m.clone(), &[][..]));
        let mut bad = m.encode(&[]);
        bad.push(1);
        assert!(RecordMeta::decode(&bad).is_err());
        let mut bad = m.encode(&[]);
        bad[0] |= 0x80;
        assert!(RecordMeta::decode(&bad).is_err());
    }

    #[test]
    fn every_truncation_of_a_meta_is_an_error() {
        let enc = meta(&[5, 6], true).encode(&[]);
        for cut in 0..enc.len() {
            assert!(RecordMeta::decode(&enc[..cut]).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn seal_detects_changes() {
        let v = seal(&[b"ab", b"cd"]);
        assert_eq!(unseal(Object::StoreMeta, &v).unwrap(), b"abcd");
        let mut w = v.clone();
        w[SEAL_LEN + 1] ^= 1;
        assert!(unseal(Object::StoreMeta, &w).is_err());
        assert!(unseal(Object::StoreMeta, &v[..SEAL_LEN - 1]).is_err());
    }

    #[test]
    fn magic_round_trip() {
        let frame = vec![0x28, 0xB5, 0x2F, 0xFD, 1, 2];
        let stripped = without_magic(frame.clone()).unwrap();
        assert_eq!(stripped, [1, 2]);
        assert_eq!(with_magic(&stripped), frame);
        assert!(without_magic(vec![1, 2, 3, 4]).is_err());
    }
}
