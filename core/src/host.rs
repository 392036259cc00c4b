//! Every boundary between the core and a host, as traits.
//!
//! The core owns no thread, file or clock: a host implements these traits and passes them in.
//! Each trait has an in-memory implementation in `synor_core::testing` (feature `testing`).
//!
//! | trait | what the host provides | std host |
//! |---|---|---|
//! | [`KvStore`] | ordered key/value storage with atomic write batches | redb |
//! | [`Compressor`] | zstd encoding at high levels, with dictionaries and prefixes; dictionary training | libzstd |
//!
//! # Implementing a host trait
//!
//! A key/value store over a `BTreeMap` (this is, in essence, `synor_core::testing::MemKv`):
//!
//! ```
//! use std::collections::BTreeMap;
//! use synor_core::host::{KvStore, WriteBatch};
//!
//! #[derive(Default)]
//! struct Map(BTreeMap<Vec<u8>, Vec<u8>>);
//!
//! impl KvStore for Map {
//!     type Error = core::convert::Infallible;
//!     fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error> {
//!         Ok(self.0.get(key).cloned())
//!     }
//!     fn scan(&self, prefix: &[u8], visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), Self::Error> {
//!         for (k, v) in self.0.range(prefix.to_vec()..).take_while(|(k, _)| k.starts_with(prefix)) {
//!             visit(k, v);
//!         }
//!         Ok(())
//!     }
//!     fn apply(&mut self, batch: WriteBatch) -> Result<(), Self::Error> {
//!         for (key, value) in batch.into_ops() {
//!             match value {
//!                 Some(v) => { self.0.insert(key, v); }
//!                 None => { self.0.remove(&key); }
//!             }
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let mut kv = Map::default();
//! let mut batch = WriteBatch::new();
//! batch.put(b"k".to_vec(), b"v".to_vec());
//! kv.apply(batch).unwrap();
//! assert_eq!(kv.get(b"k").unwrap(), Some(b"v".to_vec()));
//! ```

use alloc::vec::Vec;

use crate::error::CompressError;

/// A set of writes applied all at once or not at all.
///
/// Later operations on the same key replace earlier ones.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push((key, Some(value)));
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.ops.push((key, None));
    }

    /// The operations in order: `(key, Some(value))` sets, `(key, None)` removes.
    pub fn ops(&self) -> &[(Vec<u8>, Option<Vec<u8>>)] {
        &self.ops
    }

    /// Consumes the batch into its operations.
    pub fn into_ops(self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        self.ops
    }

    /// Whether the batch has no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// An ordered key/value store with atomic write batches.
///
/// The code store and the state persist through it. A crash during [`KvStore::apply`] must leave
/// either all of the batch or none of it.
pub trait KvStore {
    /// The backend's error.
    type Error: core::error::Error + Send + Sync + 'static;

    /// The value of `key`, if any.
    ///
    /// # Errors
    /// Backend failures.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error>;

    /// Calls `visit` with every key starting with `prefix` and its value, in key order.
    ///
    /// # Errors
    /// Backend failures.
    fn scan(&self, prefix: &[u8], visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), Self::Error>;

    /// Applies every operation of `batch` atomically.
    ///
    /// # Errors
    /// Backend failures; then none of the batch is applied.
    fn apply(&mut self, batch: WriteBatch) -> Result<(), Self::Error>;
}

impl<T: KvStore + ?Sized> KvStore for &mut T {
    type Error = T::Error;
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error> {
        (**self).get(key)
    }
    fn scan(&self, prefix: &[u8], visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), Self::Error> {
        (**self).scan(prefix, visit)
    }
    fn apply(&mut self, batch: WriteBatch) -> Result<(), Self::Error> {
        (**self).apply(batch)
    }
}

impl<T: KvStore + ?Sized> KvStore for alloc::boxed::Box<T> {
    type Error = T::Error;
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error> {
        (**self).get(key)
    }
    fn scan(&self, prefix: &[u8], visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), Self::Error> {
        (**self).scan(prefix, visit)
    }
    fn apply(&mut self, batch: WriteBatch) -> Result<(), Self::Error> {
        (**self).apply(batch)
    }
}

/// Compression effort, from none to the smallest output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Level {
    /// Store bytes as they are (chunk deduplication still applies).
    None,
    /// zstd level 1.
    Fast,
    /// zstd level 3: the default.
    #[default]
    Balanced,
    /// zstd level 19, and the store tries every reference candidate.
    Maximum,
}

impl Level {
    /// The zstd level this maps to (0 for [`Level::None`]).
    pub fn zstd_level(self) -> i32 {
        match self {
            Level::None => 0,
            Level::Fast => 1,
            Level::Balanced => 3,
            Level::Maximum => 19,
        }
    }
}

/// What a zstd frame may refer to besides its own bytes.
///
/// A frame compressed with a reference decodes only with the same reference: the store records
/// which dictionary version and which base records it used.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reference<'a> {
    /// A dictionary in the zstd dictionary format (magic `0xEC30A437`), if any.
    pub dictionary: Option<&'a [u8]>,
    /// Raw content placed after the dictionary content: previous versions or similar contracts.
    pub prefix: &'a [u8],
}

impl Reference<'_> {
    /// Whether the reference is empty.
    pub fn is_none(&self) -> bool {
        self.dictionary.is_none() && self.prefix.is_empty()
    }
}

/// A zstd encoder.
///
/// Whatever it writes must decode with the core's decoder (ruzstd); the store checks every record
/// before it commits it. The core ships [`crate::store::RuzstdCompressor`] (ruzstd's fastest
/// level, no references); hosts add libzstd for higher levels, references and training.
pub trait Compressor {
    /// Whether [`Compressor::compress`] accepts a non-empty [`Reference`].
    fn supports_references(&self) -> bool;

    /// Compresses `input` into one zstd frame, without checksum or dictionary id.
    ///
    /// With a dictionary and a prefix, the frame must be what libzstd produces when loading the
    /// dictionary bytes followed by the prefix bytes as one dictionary; with only a prefix, what
    /// it produces with `ZSTD_CCtx_refPrefix`. In both cases the window must cover the prefix
    /// and the input, so that every byte of the reference stays addressable.
    ///
    /// # Errors
    /// The encoder failed, or was given a reference it does not support.
    fn compress(
        &self,
        input: &[u8],
        level: Level,
        reference: Reference<'_>,
    ) -> Result<Vec<u8>, CompressError>;

    /// Trains a zstd dictionary of at most `max_size` bytes from `samples`.
    ///
    /// Returns `None` when this encoder cannot train or the samples are unsuitable.
    fn train_dictionary(&self, samples: &[&[u8]], max_size: usize) -> Option<Vec<u8>> {
        let _ = (samples, max_size);
        None
    }
}

impl<T: Compressor + ?Sized> Compressor for &T {
    fn supports_references(&self) -> bool {
        (**self).supports_references()
    }
    fn compress(
        &self,
        input: &[u8],
        level: Level,
        reference: Reference<'_>,
    ) -> Result<Vec<u8>, CompressError> {
        (**self).compress(input, level, reference)
    }
    fn train_dictionary(&self, samples: &[&[u8]], max_size: usize) -> Option<Vec<u8>> {
        (**self).train_dictionary(samples, max_size)
    }
}
