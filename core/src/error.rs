//! Errors: one enum per subsystem, each convertible into the umbrella [`Error`].

use alloc::boxed::Box;
use alloc::string::String;
use core::fmt;

use crate::digest::{ChunkId, CodeId};
use crate::wire::WireError;

/// A stored object, as named in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Object {
    /// The encoded body of a record.
    Record(CodeId),
    /// The metadata of a record (reference counts, references, sketch).
    RecordMeta(CodeId),
    /// A content-defined chunk.
    Chunk(ChunkId),
    /// The reference count of a chunk.
    ChunkCount(ChunkId),
    /// A trained compression dictionary, by version.
    Dictionary(u32),
    /// The reference count of a dictionary.
    DictionaryCount(u32),
    /// The store's own metadata.
    StoreMeta,
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Object::Record(id) => write!(f, "record {}", id.short()),
            Object::RecordMeta(id) => write!(f, "metadata of record {}", id.short()),
            Object::Chunk(id) => write!(f, "chunk {}", id.short()),
            Object::ChunkCount(id) => write!(f, "reference count of chunk {}", id.short()),
            Object::Dictionary(v) => write!(f, "dictionary v{v}"),
            Object::DictionaryCount(v) => write!(f, "reference count of dictionary v{v}"),
            Object::StoreMeta => f.write_str("store metadata"),
        }
    }
}

/// Why a stored object could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// Its encoding could not be read.
    Wire(WireError),
    /// Its integrity check failed: the stored bytes were altered.
    Checksum,
    /// Its zstd frame could not be decoded.
    Zstd(String),
    /// It decoded to a different size than it declares.
    Size {
        /// Size declared by the object.
        declared: u64,
        /// Size actually produced (or the size at which decoding stopped).
        actual: u64,
    },
    /// It decoded to content whose blake3 digest is not its identity.
    Digest {
        /// blake3 of what was decoded.
        actual: CodeId,
    },
    /// It declares a format version or kind this build does not know.
    Unsupported {
        /// What was found.
        found: u32,
    },
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::Wire(e) => write!(f, "malformed encoding: {e}"),
            Corruption::Checksum => f.write_str("integrity check failed (stored bytes altered)"),
            Corruption::Zstd(e) => write!(f, "zstd frame does not decode: {e}"),
            Corruption::Size { declared, actual } => {
                write!(f, "declares {declared} bytes but decodes to {actual}")
            }
            Corruption::Digest { actual } => {
                write!(f, "decodes to content with digest {}", actual.short())
            }
            Corruption::Unsupported { found } => write!(f, "unsupported format or kind {found}"),
        }
    }
}

impl From<WireError> for Corruption {
    fn from(e: WireError) -> Self {
        Corruption::Wire(e)
    }
}

/// A host compressor failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressError {
    /// What the compressor reported.
    pub message: String,
}

impl fmt::Display for CompressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "compression failed: {}", self.message)
    }
}

impl core::error::Error for CompressError {}

/// Errors of the code store.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// No live record has this id.
    NotFound(CodeId),
    /// The input is larger than the store accepts.
    TooLarge {
        /// Size of the input.
        size: u64,
        /// The configured limit.
        limit: u64,
    },
    /// A stored object is damaged; reads fail rather than return wrong bytes.
    Corrupt {
        /// The damaged object.
        object: Object,
        /// What is wrong with it.
        reason: Corruption,
    },
    /// A stored object refers to one that does not exist.
    Dangling {
        /// The object holding the reference.
        from: Object,
        /// The missing object.
        to: Object,
    },
    /// Following references from a record leads back to it.
    Cycle {
        /// A record on the cycle.
        at: CodeId,
    },
    /// Decoding a record needs more references than the configured bounds allow.
    TooDeep {
        /// The record whose decoding exceeded the bound.
        at: CodeId,
        /// The bound (depth of reference chains).
        limit: u32,
    },
    /// Reading a record would decode more bytes than the read budget allows
    /// ([`StoreConfig::max_read_bytes`](crate::store::StoreConfig::max_read_bytes)).
    ReadBudget {
        /// The record being read.
        at: CodeId,
        /// Bytes the read would decode, at least (counting stops past the budget).
        needed: u64,
        /// The budget.
        limit: u64,
    },
    /// The store was written by an incompatible version of synor.
    UnsupportedFormat {
        /// The format version found.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The host compressor failed.
    Compress(CompressError),
    /// The key/value backend failed.
    Backend(Box<dyn core::error::Error + Send + Sync>),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::NotFound(id) => write!(f, "no record {id}"),
            StoreError::TooLarge { size, limit } => {
                write!(
                    f,
                    "input of {size} bytes exceeds the limit of {limit} bytes"
                )
            }
            StoreError::Corrupt { object, reason } => write!(f, "{object} is corrupt: {reason}"),
            StoreError::Dangling { from, to } => write!(f, "{from} refers to missing {to}"),
            StoreError::Cycle { at } => {
                write!(f, "reference cycle through record {}", at.short())
            }
            StoreError::TooDeep { at, limit } => write!(
                f,
                "record {} needs references deeper than the limit of {limit}",
                at.short()
            ),
            StoreError::ReadBudget { at, needed, limit } => write!(
                f,
                "reading record {} would decode at least {needed} bytes, over the read budget \
                 of {limit} bytes",
                at.short()
            ),
            StoreError::UnsupportedFormat { found, supported } => write!(
                f,
                "store format version {found} is not supported (this build reads {supported})"
            ),
            StoreError::Compress(e) => write!(f, "{e}"),
            StoreError::Backend(e) => write!(f, "storage backend: {e}"),
        }
    }
}

impl core::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            StoreError::Backend(e) => Some(&**e),
            StoreError::Compress(e) => Some(e),
            _ => None,
        }
    }
}

impl From<CompressError> for StoreError {
    fn from(e: CompressError) -> Self {
        StoreError::Compress(e)
    }
}

impl StoreError {
    /// A corruption of `object`.
    pub fn corrupt(object: Object, reason: impl Into<Corruption>) -> Self {
        StoreError::Corrupt {
            object,
            reason: reason.into(),
        }
    }

    /// Wraps a backend error.
    pub fn backend(e: impl core::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Backend(Box::new(e))
    }
}

/// Every error synor reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// From the code store.
    Store(StoreError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Store(e) => write!(f, "code store: {e}"),
        }
    }
}

impl core::error::Error for Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Error::Store(e) => Some(e),
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store(e)
    }
}
