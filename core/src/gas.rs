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
//! (RSTORE/RLOAD): a storage slot (a 32-byte key and a 32-byte value) is expensive to write
//! (20,000, 10,000 per word of key and value) and costly to read (2,100),
//! while a blob costs a fixed part plus 200 per byte to write (code deployment) and a small
//! fixed part plus 3 per word to read (code copying). Reading many words from one blob is thus
//! far cheaper than from storage; and a blob stored as an update of a previous blob pays per
//! byte only for what changed, which removes the original trick's weakness.
//!
//! # Bounds
//!
//! Every figure is at most [`MAX_COST`], and every cost of work that grows with the data (per
//! instruction, word, byte, page or element) at least 1 ([`GasSchedule::validate`], which
//! [`instrument`](crate::instrument::instrument) calls): no charge can wrap the gas counter,
//! and no loop, recursion or host call's data is free.

use core::fmt;

/// The largest figure of any field of a [`GasSchedule`].
///
/// A charge multiplies a figure by fewer than 2^33 units (a `u32` count of pages, bytes, words
/// or elements, the sum of two `u32` lengths, or a function body's instructions), so one charge
/// is below 2^57. The instrumented module's `i64` gas counter, at most 2^63 - 1, then never
/// wraps: it goes negative by at most a function's unchecked segments (below 2^57) before a
/// checked charge (below 2^62 + 2^57, counted loops' included) stops the call.
/// [`CallContext::dispatch`](crate::abi::CallContext::dispatch) saturates besides.
pub const MAX_COST: u64 = 1 << 24;

/// Why a [`GasSchedule`] was refused: one of its fields is outside its bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleError {
    /// The field, as named in [`GasSchedule`].
    pub field: &'static str,
    /// Its value.
    pub value: u64,
    /// The least value it may have.
    pub min: u64,
    /// The largest value it may have.
    pub max: u64,
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            field,
            value,
            min,
            max,
        } = self;
        write!(
            f,
            "gas schedule field `{field}` is {value}, outside {min}..={max}"
        )
    }
}

impl core::error::Error for ScheduleError {}

/// Costs of one schedule version. All figures are gas units, within the bounds that
/// [`GasSchedule::validate`] checks.
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
    /// Per 32-byte word of a value read from storage.
    pub storage_read_word: u64,
    /// Per 32-byte word of a key read or removed: copying, hashing, comparing and journaling
    /// it.
    pub storage_key_word: u64,
    /// Writing a storage key: per 32-byte word of the key and the value together (at least
    /// one), which are what is persisted.
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
    /// Per 32-byte word of the previous and the new blob of an update, both chunked and hashed
    /// to measure the change ([`changed_bytes`](crate::abi::changed_bytes)).
    pub blob_hash_word: u64,
    /// A call to another contract (`call`), besides what the callee itself uses: loading the
    /// callee and setting up its context.
    pub contract_call: u64,
    /// Instantiating a contract (`instantiate`): its record, committed with the block.
    pub contract_instantiate: u64,
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
        storage_key_word: 100,
        storage_write_word: 10_000,
        storage_remove: 5_000,
        event: 375,
        event_byte: 8,
        blob_store: 32_000,
        blob_byte: 200,
        blob_read: 700,
        blob_read_word: 3,
        blob_hash_word: 12,
        contract_call: 2_600,
        contract_instantiate: 32_000,
    };

    /// Words of 32 bytes needed for `bytes` bytes.
    pub fn words(bytes: u64) -> u64 {
        bytes.div_ceil(32)
    }

    /// Every figure (all fields but the version), by name, with the least value it may have: 1
    /// for the costs of work that grows with the data or repeats (per instruction, word, byte,
    /// page or element), 0 for the fixed parts of host calls.
    fn fields(&self) -> [(&'static str, u64, u64); 24] {
        // Destructured in full, so that a new field cannot be left out.
        let GasSchedule {
            version: _,
            base,
            memory_access,
            divide,
            call,
            call_indirect,
            memory_grow_page,
            bulk_per_8_bytes,
            table_per_element,
            host_call,
            copy_word,
            storage_read,
            storage_read_word,
            storage_key_word,
            storage_write_word,
            storage_remove,
            event,
            event_byte,
            blob_store,
            blob_byte,
            blob_read,
            blob_read_word,
            blob_hash_word,
            contract_call,
            contract_instantiate,
        } = *self;
        [
            ("base", base, 1),
            ("memory_access", memory_access, 1),
            ("divide", divide, 1),
            ("call", call, 1),
            ("call_indirect", call_indirect, 1),
            ("memory_grow_page", memory_grow_page, 1),
            ("bulk_per_8_bytes", bulk_per_8_bytes, 1),
            ("table_per_element", table_per_element, 1),
            ("host_call", host_call, 0),
            ("copy_word", copy_word, 1),
            ("storage_read", storage_read, 0),
            ("storage_read_word", storage_read_word, 1),
            ("storage_key_word", storage_key_word, 1),
            ("storage_write_word", storage_write_word, 1),
            ("storage_remove", storage_remove, 0),
            ("event", event, 0),
            ("event_byte", event_byte, 1),
            ("blob_store", blob_store, 0),
            ("blob_byte", blob_byte, 1),
            ("blob_read", blob_read, 0),
            ("blob_read_word", blob_read_word, 1),
            ("blob_hash_word", blob_hash_word, 1),
            ("contract_call", contract_call, 0),
            ("contract_instantiate", contract_instantiate, 0),
        ]
    }

    /// Checks the schedule's bounds: every figure at most [`MAX_COST`], so that no charge
    /// wraps, and every cost of work that grows with the data or repeats at least 1, so that no
    /// loop, recursion or host call's data runs for free.
    ///
    /// # Errors
    /// The first field outside its bounds.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        for (field, value, min) in self.fields() {
            if !(min..=MAX_COST).contains(&value) {
                return Err(ScheduleError {
                    field,
                    value,
                    min,
                    max: MAX_COST,
                });
            }
        }
        Ok(())
    }

    /// Feeds every figure of the schedule, version included, to `hasher`: what caches of
    /// instrumented modules key on, so that two schedules that share a version but not their
    /// costs never share an entry.
    pub fn digest_into(&self, hasher: &mut blake3::Hasher) {
        hasher.update(&self.version.to_le_bytes());
        for (_, value, _) in self.fields() {
            hasher.update(&value.to_le_bytes());
        }
    }

    /// `fixed` plus `per` for each of `units`, saturating: a charge too large for the gas
    /// counter is as good as infinite.
    pub fn cost(fixed: u64, per: u64, units: u64) -> u64 {
        fixed.saturating_add(per.saturating_mul(units))
    }
}

impl Default for GasSchedule {
    fn default() -> Self {
        Self::V1
    }
}

#[cfg(test)]
mod tests;
