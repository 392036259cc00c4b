//! The gas schedule: what every instruction and every host call costs.
//!
//! Gas comes from instrumentation of the module itself (see [`crate::instrument`]), never from
//! an engine's fuel: engines disagree on fuel (a 64 KB `memory.fill` costs 9 fuel on Winch,
//! 64,009 on Cranelift, 1,327 on wasmi), while the instrumented module charges the same on every
//! tier. The schedule is versioned; its version is part of the instrumenter's cache keys.
//!
//! # Economics of storage and blobs (code-as-storage)
//!
//! Host calls follow the costs that made Ethereum contracts keep read-mostly data in code
//! (RSTORE/RLOAD): a storage word is expensive to write (20,000) and costly to read (2,100),
//! while a blob costs a fixed part plus 200 per byte to write (code deployment) and a small
//! fixed part plus 3 per word to read (code copying). Reading many words from one blob is thus
//! far cheaper than from storage; and a blob stored as an update of a previous blob pays per
//! byte only for what changed, which removes the original trick's weakness.

/// Costs of one schedule version. All figures are gas units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GasSchedule {
    /// Schedule version; part of every cache key.
    pub version: u32,
    /// Most instructions.
    pub base: u64,
    /// Loads and stores.
    pub memory_access: u64,
    /// Integer division and remainder, float division and square root.
    pub divide: u64,
    /// A direct call (besides the callee's own instructions).
    pub call: u64,
    /// An indirect call.
    pub call_indirect: u64,
    /// Per page added by `memory.grow`.
    pub memory_grow_page: u64,
    /// Per 8 bytes moved by `memory.fill`, `memory.copy`, `memory.init`.
    pub bulk_per_8_bytes: u64,
    /// Per element moved by table bulk instructions.
    pub table_per_element: u64,
    /// Any host call, besides its own costs below.
    pub host_call: u64,
    /// Per 32-byte word copied between the host and linear memory (input, return data).
    pub copy_word: u64,
    /// Reading a storage key.
    pub storage_read: u64,
    /// Per 32-byte word of a key or value read from storage.
    pub storage_read_word: u64,
    /// Writing a storage key: per 32-byte word of the value (at least one).
    pub storage_write_word: u64,
    /// Removing a storage key.
    pub storage_remove: u64,
    /// Emitting an event.
    pub event: u64,
    /// Per byte of an event's topic and data.
    pub event_byte: u64,
    /// Storing a blob, or an update of one.
    pub blob_store: u64,
    /// Per byte of a new blob, or per byte of an update that differs from the previous blob.
    pub blob_byte: u64,
    /// Asking a blob's length, or reading from it.
    pub blob_read: u64,
    /// Per 32-byte word read from a blob.
    pub blob_read_word: u64,
}

impl GasSchedule {
    /// Schedule version 1.
    pub const V1: GasSchedule = GasSchedule {
        version: 1,
        base: 1,
        memory_access: 2,
        divide: 4,
        call: 4,
        call_indirect: 8,
        memory_grow_page: 1_000,
        bulk_per_8_bytes: 1,
        table_per_element: 2,
        host_call: 20,
        copy_word: 3,
        storage_read: 2_100,
        storage_read_word: 3,
        storage_write_word: 20_000,
        storage_remove: 5_000,
        event: 375,
        event_byte: 8,
        blob_store: 32_000,
        blob_byte: 200,
        blob_read: 700,
        blob_read_word: 3,
    };

    /// Words of 32 bytes needed for `bytes` bytes.
    pub fn words(bytes: u64) -> u64 {
        bytes.div_ceil(32)
    }
}

impl Default for GasSchedule {
    fn default() -> Self {
        Self::V1
    }
}
