//! # synor-host-std
//!
//! The std host of synor: what the `no_std` core needs from an operating system.
//!
//! | module | provides | core trait |
//! |---|---|---|
//! | [`artifact`] | [`FsArtifactCache`]: compiled artifacts in a directory, authenticated with their keys under a node-local [`ArtifactSecret`], compressed, bounded | [`synor_core::tier::ArtifactCache`] |
//! | [`block`] | block execution: sequential, by declared access sets, or optimistic (Block-STM), always equal to sequential | [`synor_core::block`] |
//! | [`tiered`] | [`tiered::TieredExecutor`]: the tier manager over the three engines, with background tier-up | [`synor_core::tier::Tiering`] |
//! | [`cache`] | [`StateCache`]: hot committed state in front of the store, byte-bounded and scan-resistant, exact on commit | |
//! | [`cold`] | [`WasmiEngine`]: the cold tier, wasmi with lazy compilation | [`synor_core::tier::Engine`] |
//! | [`pool`] | worker threads draining the core's block scheduler | [`synor_core::sched::Claims`] |
//! | [`node`] | [`Node`]: deployment, instantiation, blocks committed with their state, receipts and blobs, queries | [`synor_core::block`] |
//! | [`kv`] | [`RedbKv`]: a redb database, one atomic transaction per write batch | [`synor_core::KvStore`] |
//! | [`zstd`] | [`ZstdCompressor`]: libzstd at every level, with dictionaries and prefixes; dictionary training | [`synor_core::Compressor`] |
//!
//! # Features
//!
//! | feature | default | enables |
//! |---|---|---|
//! | `testing` | no | a hidden `testing` module: fault injection for crash tests (a redb backend that kills the process inside a commit, simulating process crashes and power losses; the steps of an artifact write). Not for production. |
//!
//! # Example
//!
//! ```
//! use synor_core::store::StoreConfig;
//!
//! let dir = tempfile::tempdir()?;
//! let mut store = synor_host_std::open_store(dir.path(), StoreConfig::default())?;
//! let id = store.put(b"\0asm\x01\0\0\0")?.id;
//! drop(store);
//! let store = synor_host_std::open_store(dir.path(), StoreConfig::default())?;
//! assert_eq!(store.get(&id)?, b"\0asm\x01\0\0\0");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod artifact;
pub mod block;
pub mod cache;
pub mod cold;
pub mod kv;
pub mod node;
pub mod pool;
pub mod speculation;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;
pub mod tiered;
pub mod zstd;

pub use artifact::{ArtifactSecret, FsArtifactCache};
pub use cache::StateCache;
pub use cold::WasmiEngine;
pub use kv::RedbKv;
pub use node::{BlockOutcome, Node, NodeConfig, NodeError};
pub use zstd::ZstdCompressor;

use std::path::Path;

use synor_core::StoreError;
use synor_core::store::{CodeStore, StoreConfig};

/// The file of the code store inside a data directory.
pub const STORE_FILE: &str = "store.redb";

/// A code store persisted in `dir` (created if missing) and compressed with libzstd.
///
/// # Errors
/// The directory or database cannot be created or opened, or the store in it is unreadable.
pub fn open_store(
    dir: &Path,
    config: StoreConfig,
) -> Result<CodeStore<RedbKv, ZstdCompressor>, StoreError> {
    std::fs::create_dir_all(dir).map_err(StoreError::backend)?;
    let kv = RedbKv::open(dir.join(STORE_FILE)).map_err(StoreError::backend)?;
    CodeStore::open(kv, ZstdCompressor::default(), config)
}
