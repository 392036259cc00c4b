//! # synor-core
//!
//! The `no_std` core of synor: formats, algorithms and policies that make WebAssembly
//! smart-contract execution compact, fast and deterministic. It owns no thread, file or clock;
//! hosts pass what it needs into each call through the traits of [`host`].
//!
//! | layer | module | what it does |
//! |---|---|---|
//! | code store | [`store`] | content-addressed bytecode and data blobs: zstd with trained dictionaries, content-defined chunking, upgrade deltas, bounded decoding |
//! | blocks | [`block`] | transactions addressed to contracts, receipts, access checks, digests |
//! | contract ABI | [`abi`], [`gas`] | imports, their semantics and costs: one implementation for every tier |
//! | CosmWasm | [`cosmwasm`] | CosmWasm contracts (`interface_version_8`): module checks, the `env` imports' semantics and costs, regions, the JSON of calls and results |
//! | instrumentation | [`instrument`] | validation under a deterministic feature set; gas, stack-depth and memory limits injected into the module |
//! | tiers | [`tier`] | the [`tier::Engine`] boundary and the promotion policy ([`tier::Tiering`]) |
//! | scheduling | [`sched`] | access sets, the dependency DAG of a block, the lock-free claim/finish protocol, Sealevel batches, simulation; optimistic (Block-STM) execution with multi-version memory in [`sched::optimistic`] |
//! | state | [`state`] | versioned ordered state, a transaction's journaled overlay with nested checkpoints, merged range scans with read records that validate by versions, state-diff digests |
//! | caches | [`lru`] | byte-bounded LRU for decoded code and compiled modules |
//! | host boundary | [`host`] | [`KvStore`], [`Compressor`] |
//! | identity | [`digest`] | blake3 [`CodeId`]s |
//! | encoding | [`wire`] | varints and checked readers shared by every format |
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "testing")] {
//! use synor_core::store::{CodeStore, RuzstdCompressor, StoreConfig};
//! use synor_core::testing::MemKv;
//!
//! let mut store = CodeStore::open(MemKv::default(), RuzstdCompressor, StoreConfig::default())?;
//! let v1 = store.put(b"\0asm\x01\0\0\0 contract version one")?.id;
//! let v2 = store.put_upgrade(&v1, b"\0asm\x01\0\0\0 contract version two")?.id;
//! assert_eq!(store.get(&v2)?, b"\0asm\x01\0\0\0 contract version two");
//! store.delete(&v1)?;
//! assert!(!store.contains(&v1));
//! # }
//! # Ok::<(), synor_core::Error>(())
//! ```
//!
//! # Cargo features
//!
//! | feature | default | enables |
//! |---|---|---|
//! | `std` | yes | std in dependencies (runtime SIMD detection for blake3) |
//! | `testing` | no | `testing`: in-memory implementations of every host trait |

#![no_std]
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    clippy::std_instead_of_core,
    clippy::alloc_instead_of_core
)]

extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

pub mod abi;
pub mod block;
pub mod cosmwasm;
pub mod digest;
pub mod error;
pub mod gas;
pub mod host;
pub mod instrument;
pub mod lru;
pub mod sched;
pub mod state;
pub mod store;
mod sync;
pub mod tier;
pub mod wire;

#[cfg(any(feature = "testing", test))]
pub mod testing;

#[cfg(any(feature = "testing", test))]
#[doc(hidden)]
pub mod fuzzing;

pub use digest::{ChunkId, CodeId, Digest};
pub use error::{Error, StoreError};
pub use host::{Compressor, KvStore, Level, Reference, WriteBatch};
pub use store::{CodeStore, StoreConfig};
