//! Contract ABI v1: what a contract may import, what it exports, and what each import does and
//! costs. [`CallContext`] is the one implementation of these semantics; every tier's glue only
//! moves arguments between its engine and [`CallContext::dispatch`], so every tier behaves and
//! charges identically.
//!
//! # Imports (module `synor`)
//!
//! Pointers and lengths are `i32` offsets into the contract's exported `memory`. A pointer range
//! outside memory traps (`memory_out_of_bounds`). Ids (accounts, blobs) are 32 bytes.
//!
//! | import | signature | effect | gas (schedule v1, besides `host_call`) |
//! |---|---|---|---|
//! | `input_len` | `() -> i32` | length of the call's input | — |
//! | `input_read` | `(dst, offset, len)` | copies input bytes `offset..offset+len` | `copy_word` per word |
//! | `return_data` | `(src, len)` | sets the return data (the last call wins) | `copy_word` per word |
//! | `caller` | `(dst)` | writes the calling account's id | — |
//! | `storage_read` | `(key, key_len, dst, cap) -> i64` | value length, or -1 when absent; copies at most `cap` bytes | `storage_read` + `storage_key_word` per word of key + `storage_read_word` per word of value |
//! | `storage_write` | `(key, key_len, value, value_len)` | sets the key | `storage_write_word` per word of key and value together (at least one) |
//! | `storage_remove` | `(key, key_len)` | removes the key | `storage_remove` + `storage_key_word` per word of key |
//! | `emit_event` | `(topic, topic_len, data, data_len)` | appends an event | `event` + `event_byte` per byte |
//! | `blob_store` | `(src, len, id_out)` | stores an immutable blob, writes its id | `blob_store` + `blob_byte` per byte |
//! | `blob_update` | `(previous, src, len, id_out)` | stores a new version of a blob | `blob_store` + `blob_hash_word` per word of `previous` and of the new blob, charged before they are compared + `blob_byte` per byte that differs from `previous` ([`changed_bytes`]) |
//! | `blob_len` | `(id) -> i64` | blob length, or -1 when absent | `blob_read` |
//! | `blob_read` | `(id, offset, dst, len) -> i32` | copies blob bytes, returns how many | `blob_read` + `blob_read_word` per word copied |
//! | `storage_next` | `(prefix, prefix_len, after, after_len, out, cap) -> i64` | the first key with `prefix` after the key `after` (from the first when `after_len` is -1), ascending: writes `key_len` (u32 little-endian), the key and the value to `out` (at most `cap` bytes); returns their full length, or -1 when there is none | `storage_read` + `storage_key_word` per word of prefix and `after` + `storage_read_word` per word of key and value |
//! | `storage_prev` | as `storage_next` | the same, descending (from the last key when `after_len` is -1) | as `storage_next` |
//! | `call` | `(contract, entry, entry_len, input, input_len, gas) -> i64` | calls `entry` of the contract at address `contract` (32 bytes) with `input`, forwarding at most the `u64` at `gas` (little-endian); the callee sees this contract as its caller and this call's writes; returns the length of its return data, or -1 if it failed (its writes, events and blobs are then undone, this call goes on) | `contract_call` + `copy_word` per word of entry and input + the gas the callee used |
//! | `call_result` | `(dst, offset, len)` | copies bytes `offset..offset+len` of the last `call`'s return data | `copy_word` per word |
//! | `instantiate` | `(code, address_out) -> i32` | instantiates a new contract of the deployed code `code` (32 bytes), created by this contract, and writes its address (32 bytes); returns 0, or -1 if no code `code` is deployed. This transaction may call the new contract at once, anyone from the next block on; undone if this call fails | `contract_instantiate` |
//! | `abort` | `(message, len)` | traps with `aborted` and the message | — |
//!
//! A word is 32 bytes, a part of one counting as one. In schedule v1 a 32-byte key with a
//! 32-byte value costs 20,000 to write, as an Ethereum storage slot does, and every further word
//! of key or value 10,000: a 64 KiB key costs 2,047 words (20,470,000 gas) more than a 32-byte
//! key with the same value.
//!
//! Storage keys are at most [`MAX_KEY_BYTES`] (64 KiB), values at most [`MAX_VALUE_BYTES`]
//! (128 KiB, the limits of cosmwasm-vm), and blobs at most [`MAX_BLOB_BYTES`] (8 MiB): a longer
//! one traps with `too_large` before anything is copied or charged beyond `host_call`.
//!
//! Storage keys are namespaced by contract: the state sees `contract address ++ key`. Writes,
//! events and blobs are buffered and take effect only if the call returns without trapping.
//! A `call` runs in a nested checkpoint of the same buffer: the callee sees what its caller
//! wrote so far, and a callee that fails undoes only its own effects. Calls nest at most
//! [`MAX_CALL_DEPTH`] deep.
//!
//! # Exports
//!
//! Entry points are exported functions; contracts take no parameters and read their input, but
//! modules that import nothing (compute programs) may take and return `i32`/`i64` values.
//! Exports named `__synor_*` are reserved for the instrumenter.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use crate::digest::{CodeId, Digest};
use crate::gas::GasSchedule;
use crate::state::{Journal, KeyValue, Lookup, Range, merge_next};
use crate::store::{ChunkConfig, Chunker};

/// The ABI version this module describes.
pub const ABI_VERSION: u32 = 1;

/// The import module every ABI import comes from.
pub const IMPORT_MODULE: &str = "synor";

/// The longest storage key a contract may use, in bytes (before its contract's namespace):
/// 64 KiB, as in cosmwasm-vm.
pub const MAX_KEY_BYTES: u32 = 64 << 10;

/// The longest storage value a contract may write, in bytes: 128 KiB, as in cosmwasm-vm.
pub const MAX_VALUE_BYTES: u32 = 128 << 10;

/// The largest blob a contract may store, in bytes: 8 MiB, the largest module
/// [`Limits`](crate::instrument::Limits) accepts by default (a blob is code-as-storage).
pub const MAX_BLOB_BYTES: u32 = 8 << 20;

/// Bytes of a key that a [`Trap::UndeclaredAccess`] keeps (the contract's namespace and 64
/// bytes of key): enough to show most keys whole, and a bound on what a receipt carries.
pub const KEY_SHOWN_BYTES: usize = 96;

/// The longest entry name a `call` may name.
pub const MAX_ENTRY_BYTES: u32 = 1024;

/// The deepest nesting of contract-to-contract calls: a `call` from a contract already this
/// deep fails (returns -1) without running the callee.
pub const MAX_CALL_DEPTH: u32 = 8;

/// A value type in an import signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// 32-bit integer.
    I32,
    /// 64-bit integer.
    I64,
}

/// The signature of an import: how many `i32` parameters it takes (ABI v1 passes nothing
/// else) and what it returns. A host defines one typed host function per shape, so that a call
/// passes its arguments as they are instead of through a slice of dynamically typed values;
/// every import has one ([`Import::shape`]), so a host's `match` on it is exhaustive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `() -> i32`
    Args0I32,
    /// `(i32)`
    Args1,
    /// `(i32) -> i64`
    Args1I64,
    /// `(i32, i32)`
    Args2,
    /// `(i32, i32) -> i32`
    Args2I32,
    /// `(i32, i32, i32)`
    Args3,
    /// `(i32, i32, i32, i32)`
    Args4,
    /// `(i32, i32, i32, i32) -> i32`
    Args4I32,
    /// `(i32, i32, i32, i32) -> i64`
    Args4I64,
    /// `(i32, i32, i32, i32, i32, i32) -> i64`
    Args6I64,
}

impl Shape {
    /// Parameters (each an `i32`).
    pub fn arity(self) -> usize {
        match self {
            Shape::Args0I32 => 0,
            Shape::Args1 | Shape::Args1I64 => 1,
            Shape::Args2 | Shape::Args2I32 => 2,
            Shape::Args3 => 3,
            Shape::Args4 | Shape::Args4I32 | Shape::Args4I64 => 4,
            Shape::Args6I64 => 6,
        }
    }

    /// The result's type, if it has one.
    pub fn result(self) -> Option<Ty> {
        match self {
            Shape::Args0I32 | Shape::Args2I32 | Shape::Args4I32 => Some(Ty::I32),
            Shape::Args1I64 | Shape::Args4I64 | Shape::Args6I64 => Some(Ty::I64),
            Shape::Args1 | Shape::Args2 | Shape::Args3 | Shape::Args4 => None,
        }
    }
}

/// Defines `$import` (an [`Import`]) in `$linker` as a typed host function: one that takes
/// its `i32` arguments and returns its result as they are, where a dynamically typed one
/// converted each to and from a slice of values on every call. The function calls
/// `$host_call(&mut caller, import, args)` (the caller is a `$caller`; `args` as
/// [`Import::args`] makes them) for what [`CallContext::dispatch`] returned, and returns it
/// as [`Import::raw_i32`] or [`Import::raw_i64`] types it; its error type is `$error`.
/// `$linker` is any linker with wasmtime's and wasmi's `func_wrap(module, name, function)`,
/// so every tier defines its imports through this one macro: the shapes, the arguments and
/// the conversions are written once. Evaluates to `func_wrap`'s result.
#[macro_export]
macro_rules! define_typed_import {
    ($linker:expr, $import:expr, $caller:ty, $error:ty, $host_call:expr) => {{
        use $crate::abi::{Import, Shape};
        let unit = |_: Option<u64>| ();
        let import: Import = $import;
        match import.shape() {
            Shape::Args0I32 => $crate::define_typed_import!(
                @wrap $linker, import, $caller, $error, $host_call, () -> i32, Import::raw_i32
            ),
            Shape::Args1 => $crate::define_typed_import!(
                @wrap $linker, import, $caller, $error, $host_call, (a) -> (), unit
            ),
            Shape::Args1I64 => $crate::define_typed_import!(
                @wrap $linker, import, $caller, $error, $host_call, (a) -> i64, Import::raw_i64
            ),
            Shape::Args2 => $crate::define_typed_import!(
                @wrap $linker, import, $caller, $error, $host_call, (a, b) -> (), unit
            ),
            Shape::Args2I32 => $crate::define_typed_import!(
                @wrap $linker, import, $caller, $error, $host_call, (a, b) -> i32, Import::raw_i32
            ),
            Shape::Args3 => $crate::define_typed_import!(
                @wrap $linker, import, $caller, $error, $host_call, (a, b, c) -> (), unit
            ),
            Shape::Args4 => $crate::define_typed_import!(
                @wrap $linker, import, $caller, $error, $host_call, (a, b, c, d) -> (), unit
            ),
            Shape::Args4I32 => $crate::define_typed_import!(
                @wrap $linker, import, $caller, $error, $host_call,
                (a, b, c, d) -> i32, Import::raw_i32
            ),
            Shape::Args4I64 => $crate::define_typed_import!(
                @wrap $linker, import, $caller, $error, $host_call,
                (a, b, c, d) -> i64, Import::raw_i64
            ),
            Shape::Args6I64 => $crate::define_typed_import!(
                @wrap $linker, import, $caller, $error, $host_call,
                (a, b, c, d, e, f) -> i64, Import::raw_i64
            ),
        }
    }};
    (@wrap $linker:expr, $import:ident, $caller:ty, $error:ty, $host_call:expr,
        ($($a:ident),*) -> $ret:ty, $convert:expr) => {
        $linker.func_wrap(
            $crate::abi::IMPORT_MODULE,
            $import.name(),
            move |mut caller: $caller, $($a: i32),*| -> Result<$ret, $error> {
                let (args, n) = Import::args([$($a),*]);
                let value = $host_call(&mut caller, $import, &args[..n])?;
                Ok($convert(value))
            },
        )
    };
}

/// One ABI import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum Import {
    InputLen,
    InputRead,
    ReturnData,
    Caller,
    StorageRead,
    StorageWrite,
    StorageRemove,
    EmitEvent,
    BlobStore,
    BlobUpdate,
    BlobLen,
    BlobRead,
    Abort,
    StorageNext,
    StoragePrev,
    Call,
    CallResult,
    Instantiate,
}

impl Import {
    /// Every import, in dispatch order.
    pub const ALL: [Import; 18] = [
        Import::InputLen,
        Import::InputRead,
        Import::ReturnData,
        Import::Caller,
        Import::StorageRead,
        Import::StorageWrite,
        Import::StorageRemove,
        Import::EmitEvent,
        Import::BlobStore,
        Import::BlobUpdate,
        Import::BlobLen,
        Import::BlobRead,
        Import::Abort,
        Import::StorageNext,
        Import::StoragePrev,
        Import::Call,
        Import::CallResult,
        Import::Instantiate,
    ];

    /// The import's name in module `synor`.
    pub fn name(self) -> &'static str {
        match self {
            Import::InputLen => "input_len",
            Import::InputRead => "input_read",
            Import::ReturnData => "return_data",
            Import::Caller => "caller",
            Import::StorageRead => "storage_read",
            Import::StorageWrite => "storage_write",
            Import::StorageRemove => "storage_remove",
            Import::EmitEvent => "emit_event",
            Import::BlobStore => "blob_store",
            Import::BlobUpdate => "blob_update",
            Import::BlobLen => "blob_len",
            Import::BlobRead => "blob_read",
            Import::Abort => "abort",
            Import::StorageNext => "storage_next",
            Import::StoragePrev => "storage_prev",
            Import::Call => "call",
            Import::CallResult => "call_result",
            Import::Instantiate => "instantiate",
        }
    }

    /// The import's signature ([`Shape`]): which typed host function serves it.
    pub fn shape(self) -> Shape {
        match self {
            Import::InputLen => Shape::Args0I32,
            Import::Caller => Shape::Args1,
            Import::BlobLen => Shape::Args1I64,
            Import::ReturnData | Import::StorageRemove | Import::Abort => Shape::Args2,
            Import::InputRead | Import::BlobStore | Import::CallResult => Shape::Args3,
            Import::StorageWrite | Import::EmitEvent | Import::BlobUpdate => Shape::Args4,
            Import::BlobRead => Shape::Args4I32,
            Import::Instantiate => Shape::Args2I32,
            Import::StorageRead => Shape::Args4I64,
            Import::StorageNext | Import::StoragePrev | Import::Call => Shape::Args6I64,
        }
    }

    /// Parameter types.
    pub fn params(self) -> &'static [Ty] {
        &[Ty::I32; 6][..self.shape().arity()]
    }

    /// Result types.
    pub fn results(self) -> &'static [Ty] {
        match self.shape().result() {
            Some(Ty::I32) => &[Ty::I32],
            Some(Ty::I64) => &[Ty::I64],
            None => &[],
        }
    }

    /// Host-call arguments (all `i32` in ABI v1) as [`CallContext::dispatch`] takes them.
    pub fn args(params: impl IntoIterator<Item = i32>) -> ([u64; 6], usize) {
        let mut args = [0u64; 6];
        let mut n = 0;
        for (a, p) in args.iter_mut().zip(params) {
            *a = u64::from(p as u32);
            n += 1;
        }
        (args, n)
    }

    /// The value [`CallContext::dispatch`] returned, typed as the import's result.
    pub fn result(self, raw: Option<u64>) -> Option<crate::tier::Value> {
        use crate::tier::Value;
        raw?;
        match self.shape().result()? {
            Ty::I32 => Some(Value::I32(Self::raw_i32(raw))),
            Ty::I64 => Some(Value::I64(Self::raw_i64(raw))),
        }
    }

    /// What [`CallContext::dispatch`] returned (`raw`) as the `i32` result of an import
    /// returning one: what a typed host function returns (0 for nothing, which no import
    /// with a result returns).
    pub fn raw_i32(raw: Option<u64>) -> i32 {
        raw.map_or(0, |v| v as i32)
    }

    /// As [`Import::raw_i32`], for an import returning `i64`.
    pub fn raw_i64(raw: Option<u64>) -> i64 {
        raw.map_or(0, |v| v as i64)
    }

    /// The import called `name`, if any.
    pub fn by_name(name: &str) -> Option<Import> {
        Import::ALL.into_iter().find(|i| i.name() == name)
    }
}

/// A stable name for why a call stopped early; identical on every tier.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Trap {
    /// The gas limit was reached.
    OutOfGas,
    /// The deterministic call-depth limit was reached.
    StackOverflow,
    /// `memory.grow` past the memory limit.
    MemoryLimit,
    /// The module executed `unreachable`.
    Unreachable,
    /// A load, store or host call touched memory outside linear memory.
    MemoryOutOfBounds,
    /// An indirect call or table access outside the table.
    TableOutOfBounds,
    /// An indirect call to an empty table slot.
    IndirectCallToNull,
    /// An indirect call to a function of another type.
    BadSignature,
    /// Integer division or remainder by zero.
    IntegerDivisionByZero,
    /// Integer overflow (division of the minimum by -1, float-to-int out of range).
    IntegerOverflow,
    /// Float-to-int conversion of NaN.
    BadConversionToInteger,
    /// The contract called `abort`.
    Aborted(String),
    /// The transaction touched a state key it did not declare (declared-access scheduling);
    /// made by [`Trap::undeclared_access`].
    UndeclaredAccess(Box<UndeclaredKey>),
    /// A host call's storage key, value or blob is longer than the ABI allows.
    TooLarge {
        /// What: `"storage key"`, `"storage value"` or `"blob"`.
        what: &'static str,
        /// Its length in bytes.
        len: u32,
        /// The most allowed.
        max: u32,
    },
    /// A host call was malformed (e.g. a bad length) or the host failed; the reason is kept.
    Host(String),
}

impl Trap {
    /// [`Trap::UndeclaredAccess`] of `key` (namespaced by contract), keeping its first
    /// [`KEY_SHOWN_BYTES`], its length and its digest.
    pub fn undeclared_access(key: &[u8], write: bool) -> Trap {
        Trap::UndeclaredAccess(Box::new(UndeclaredKey {
            prefix: key[..key.len().min(KEY_SHOWN_BYTES)].to_vec(),
            len: key.len() as u64,
            digest: Digest::of(key),
            write,
        }))
    }

    /// [`Trap::TooLarge`] unless `len` is at most `max`.
    fn check_len(what: &'static str, len: u32, max: u32) -> Result<(), Trap> {
        if len > max {
            return Err(Trap::TooLarge { what, len, max });
        }
        Ok(())
    }

    /// The stable name printed by `synor run` and compared across tiers.
    pub fn name(&self) -> &'static str {
        match self {
            Trap::OutOfGas => "out_of_gas",
            Trap::StackOverflow => "stack_overflow",
            Trap::MemoryLimit => "memory_limit",
            Trap::Unreachable => "unreachable",
            Trap::MemoryOutOfBounds => "memory_out_of_bounds",
            Trap::TableOutOfBounds => "table_out_of_bounds",
            Trap::IndirectCallToNull => "indirect_call_to_null",
            Trap::BadSignature => "bad_signature",
            Trap::IntegerDivisionByZero => "integer_division_by_zero",
            Trap::IntegerOverflow => "integer_overflow",
            Trap::BadConversionToInteger => "bad_conversion_to_integer",
            Trap::Aborted(_) => "aborted",
            Trap::UndeclaredAccess(_) => "undeclared_access",
            Trap::TooLarge { .. } => "too_large",
            Trap::Host(_) => "host_error",
        }
    }
}

impl fmt::Display for Trap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trap::Aborted(m) | Trap::Host(m) => write!(f, "{}: {m}", self.name()),
            Trap::UndeclaredAccess(key) => write!(f, "{}: {key}", self.name()),
            Trap::TooLarge { what, len, max } => write!(
                f,
                "{}: {what} of {len} bytes, over the limit of {max}",
                self.name()
            ),
            _ => f.write_str(self.name()),
        }
    }
}

impl core::error::Error for Trap {}

/// The key of a [`Trap::UndeclaredAccess`], of bounded size however long the key: its first
/// bytes, its length and its digest. Displays as `write of key <hex>` (or `read`); a key
/// longer than [`KEY_SHOWN_BYTES`] shows those bytes, then its length and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndeclaredKey {
    /// The key's first bytes (namespaced by contract), at most [`KEY_SHOWN_BYTES`].
    pub prefix: Vec<u8>,
    /// The whole key's length in bytes.
    pub len: u64,
    /// blake3 of the whole key.
    pub digest: Digest,
    /// Whether it was a write.
    pub write: bool,
}

impl fmt::Display for UndeclaredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.write { "write" } else { "read" })?;
        f.write_str(" of key ")?;
        for b in &self.prefix {
            write!(f, "{b:02x}")?;
        }
        if self.len > self.prefix.len() as u64 {
            write!(f, "... ({} bytes, blake3 {})", self.len, self.digest)?;
        }
        Ok(())
    }
}

/// Linear memory, as an engine exposes it to host calls.
pub trait Memory {
    /// The whole memory.
    fn bytes(&self) -> &[u8];
    /// The whole memory, writable.
    fn bytes_mut(&mut self) -> &mut [u8];
}

impl Memory for &mut [u8] {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
}

impl Memory for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
}

fn range(len: usize, ptr: u32, n: u32) -> Result<core::ops::Range<usize>, Trap> {
    let start = ptr as usize;
    let end = start
        .checked_add(n as usize)
        .ok_or(Trap::MemoryOutOfBounds)?;
    if end > len {
        return Err(Trap::MemoryOutOfBounds);
    }
    Ok(start..end)
}

fn read(mem: &dyn Memory, ptr: u32, n: u32) -> Result<&[u8], Trap> {
    let bytes = mem.bytes();
    Ok(&bytes[range(bytes.len(), ptr, n)?])
}

fn write(mem: &mut dyn Memory, ptr: u32, data: &[u8]) -> Result<(), Trap> {
    let bytes = mem.bytes_mut();
    let r = range(bytes.len(), ptr, data.len() as u32)?;
    bytes[r].copy_from_slice(data);
    Ok(())
}

/// Key/value state as a call sees it (keys already namespaced by contract).
pub trait State {
    /// The value of `key`.
    ///
    /// # Errors
    /// The trap that ends the call: [`Trap::UndeclaredAccess`] when the transaction did not
    /// declare `key`, [`Trap::Host`] when the host failed.
    fn read(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, Trap>;

    /// Whether the host allows writing `key` (checked when the contract writes; the write itself
    /// is applied only if the call succeeds).
    ///
    /// # Errors
    /// The trap that ends the call (see [`State::read`]).
    fn check_write(&mut self, key: &[u8]) -> Result<(), Trap> {
        let _ = key;
        Ok(())
    }

    /// The first key of `range` after `after` (from the range's start when `None`), in the
    /// range's direction, with its value: what a contract's range scan reads, one step.
    ///
    /// # Errors
    /// The trap that ends the call (see [`State::read`]; a transaction that declared its keys
    /// may not scan).
    fn next(&mut self, range: &Range, after: Option<&[u8]>) -> Result<Option<KeyValue>, Trap>;
}

/// Runs contract-to-contract calls (`call`) for a [`CallContext`]: the host's part, which
/// finds the callee's module and runs it on a tier.
pub trait Calls {
    /// Calls `entry` of the contract at `ctx.contract` with `ctx` (prepared by the caller:
    /// input, gas, and the caller's state and buffered effects, which the callee extends).
    /// Returns the outcome; a callee that does not exist, or does not export `entry`, failed.
    ///
    /// # Errors
    /// A fault of the host (an engine failed): the whole transaction ends with it, and the
    /// host must not commit the block.
    fn call(&self, ctx: &mut CallContext, entry: &str) -> Result<SubCall, Trap>;

    /// Whether code `code` is deployed: what `instantiate` may instantiate.
    fn has_code(&self, code: &CodeId) -> bool;
}

/// A contract a call instantiated (`instantiate`), to be committed with the block if the
/// transaction succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewContract {
    /// Its address ([`created_address`](crate::block::created_address)).
    pub address: CodeId,
    /// Its code.
    pub code: CodeId,
    /// The contract that instantiated it.
    pub creator: CodeId,
}

/// What a nested call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubCall {
    /// Gas the callee used.
    pub gas_used: u64,
    /// Whether it failed (its effects are then undone).
    pub failed: bool,
}

/// Blobs (code-as-storage) as a call sees them.
pub trait Blobs {
    /// The bytes of blob `id`, if stored. `blob_len` and `blob_read` pay a fixed part for this
    /// whatever the blob's size: an implementation hands out bytes it holds (a clone of an
    /// `Arc`), not a copy or a fresh decoding per call.
    ///
    /// # Errors
    /// The store failed.
    fn blob(&mut self, id: &CodeId) -> Result<Option<Arc<[u8]>>, String>;
}

/// No state and no blobs: every read finds nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Empty;

impl State for Empty {
    fn read(&mut self, _key: &[u8]) -> Result<Option<Vec<u8>>, Trap> {
        Ok(None)
    }

    fn next(&mut self, _: &Range, _: Option<&[u8]>) -> Result<Option<KeyValue>, Trap> {
        Ok(None)
    }
}

impl Blobs for Empty {
    fn blob(&mut self, _id: &CodeId) -> Result<Option<Arc<[u8]>>, String> {
        Ok(None)
    }
}

/// State held in a map (tests, `synor run`).
impl State for BTreeMap<Vec<u8>, Vec<u8>> {
    fn read(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, Trap> {
        Ok(self.get(key).cloned())
    }

    fn next(&mut self, range: &Range, after: Option<&[u8]>) -> Result<Option<KeyValue>, Trap> {
        Ok(range
            .first_in(self, after)
            .map(|(k, v)| (k.clone(), v.clone())))
    }
}

/// Blobs held in a map (tests, tools).
impl Blobs for BTreeMap<CodeId, Arc<[u8]>> {
    fn blob(&mut self, id: &CodeId) -> Result<Option<Arc<[u8]>>, String> {
        Ok(self.get(id).cloned())
    }
}

/// An event a call emitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its topic.
    pub topic: Vec<u8>,
    /// Its data.
    pub data: Vec<u8>,
}

/// A blob a call stored, to be written to the code store if the call succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBlob {
    /// Its id (blake3 of its bytes).
    pub id: CodeId,
    /// The blob it updates, if any.
    pub previous: Option<CodeId>,
    /// Its bytes, shared: the call reads them (`blob_len`, `blob_read`) without copying.
    pub bytes: Arc<[u8]>,
}

/// Chunks used to measure how much of a blob update changed: small, so that the charge follows
/// the change closely, and fixed, so that every node charges the same.
const CHANGE_CHUNKS: ChunkConfig = ChunkConfig {
    min: 64,
    avg: 256,
    max: 1024,
};

/// Bytes of `new` not found in `previous`, measured with content-defined chunks: the size of
/// the change an update is charged for. Depends on the two blobs only (never on what a node's
/// store happens to hold), so every node charges the same.
pub fn changed_bytes(previous: &[u8], new: &[u8]) -> u64 {
    let chunker = Chunker::new(CHANGE_CHUNKS);
    let old: hashbrown::HashSet<Digest> = chunker.chunks(previous).map(Digest::of).collect();
    chunker
        .chunks(new)
        .filter(|c| !old.contains(&Digest::of(c)))
        .map(|c| c.len() as u64)
        .sum()
}

/// Gas used out of `limit` (what a call started with) when `gas_left` is left.
pub(crate) fn gas_used(gas_left: i64, limit: u64) -> u64 {
    limit.saturating_sub(u64::try_from(gas_left).unwrap_or(0))
}

/// Takes `gas` from `gas_left` (saturating); out of gas when that goes below zero.
pub(crate) fn charge(gas_left: &mut i64, gas: u64) -> Result<(), Trap> {
    let gas = i64::try_from(gas).unwrap_or(i64::MAX);
    *gas_left = gas_left.saturating_sub(gas);
    if *gas_left < 0 {
        return Err(Trap::OutOfGas);
    }
    Ok(())
}

/// `key` in the namespace of `contract`: the key the state sees.
pub(crate) fn namespaced(contract: &CodeId, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(32 + key.len());
    k.extend_from_slice(contract.as_bytes());
    k.extend_from_slice(key);
    k
}

/// The value of `full` (a namespaced key) as a call sees it: as the call wrote it (`writes`),
/// else from `state`.
pub(crate) fn read_through(
    writes: &Journal,
    state: &mut dyn State,
    full: &[u8],
) -> Result<Option<Vec<u8>>, Trap> {
    match writes.get(full) {
        Lookup::Value(v) => Ok(Some(v.to_vec())),
        Lookup::Removed => Ok(None),
        Lookup::Untouched => state.read(full),
    }
}

/// The first key of `range` after `after` visible to a call: its own writes over the state's
/// keys, its removals hiding them.
pub(crate) fn next_through(
    writes: &Journal,
    state: &mut dyn State,
    range: &Range,
    after: Option<&[u8]>,
) -> Result<Option<KeyValue>, Trap> {
    let own = |after: Option<&[u8]>| {
        let written = writes.next(range, after);
        Ok(written.map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec))))
    };
    merge_next(range, after, own, |after| state.next(range, after))
}

/// Everything a call may ask of the node, with the gas it costs: the one implementation of ABI
/// v1 that every tier uses.
///
/// Its default holds nothing of any call: no state, blobs or `calls` (a host may keep an
/// engine's store holding a default context between calls, on any thread; a new field whose
/// type is not `Send` must be empty in the default, and the wasmtime host checks the others).
pub struct CallContext {
    /// The contract whose storage the call sees.
    pub contract: CodeId,
    /// The calling account.
    pub caller: [u8; 32],
    /// The input.
    pub input: Vec<u8>,
    /// Costs.
    pub schedule: GasSchedule,
    /// Gas left; engines copy it from and back to the module's gas counter around each host call.
    pub gas_left: i64,
    /// The state.
    pub state: Box<dyn State>,
    /// The blobs.
    pub blobs: Box<dyn Blobs>,
    /// Return data set so far.
    pub return_data: Vec<u8>,
    /// Events emitted so far.
    pub events: Vec<Event>,
    /// Writes so far, applied by the caller only if the call succeeds; each `call` runs in a
    /// checkpoint of it.
    pub writes: Journal,
    /// Blobs stored so far, each once.
    pub new_blobs: Vec<NewBlob>,
    /// Where each of `new_blobs` is, by id (rebuilt if the host changed `new_blobs`).
    new_blob_index: BTreeMap<CodeId, usize>,
    /// Runs `call`s; without it, every `call` fails.
    pub calls: Option<Arc<dyn Calls>>,
    /// Nesting of this call: 0 for a transaction's, one more for each `call` below it.
    pub depth: u32,
    /// The last `call`'s return data.
    pub call_result: Vec<u8>,
    /// Contracts instantiated so far.
    pub new_contracts: Vec<NewContract>,
    /// The block height and the transaction's index in it: what the addresses of new
    /// contracts are made of, besides their code and creator.
    pub position: (u64, u32),
}

impl Default for CallContext {
    /// A context with no input, no gas, and no state or blobs.
    fn default() -> Self {
        Self::new(
            Digest([0; 32]),
            [0; 32],
            Vec::new(),
            0,
            Box::new(Empty),
            Box::new(Empty),
        )
    }
}

impl CallContext {
    /// A context with `gas` to spend and nothing else: no input, state or blobs (compute
    /// programs, tests).
    pub fn with_gas(gas: u64) -> Self {
        Self {
            gas_left: i64::try_from(gas).unwrap_or(i64::MAX),
            ..Self::default()
        }
    }

    /// A context for one call of `contract` by `caller` with `input` and `gas` to spend.
    pub fn new(
        contract: CodeId,
        caller: [u8; 32],
        input: Vec<u8>,
        gas: u64,
        state: Box<dyn State>,
        blobs: Box<dyn Blobs>,
    ) -> Self {
        Self {
            contract,
            caller,
            input,
            schedule: GasSchedule::V1,
            gas_left: i64::try_from(gas).unwrap_or(i64::MAX),
            state,
            blobs,
            return_data: Vec::new(),
            events: Vec::new(),
            writes: Journal::new(),
            new_blobs: Vec::new(),
            new_blob_index: BTreeMap::new(),
            calls: None,
            depth: 0,
            call_result: Vec::new(),
            new_contracts: Vec::new(),
            position: (0, 0),
        }
    }

    /// The first key of `range` after `after` visible to this call: its own writes over the
    /// state's keys, its removals hiding them.
    fn next_visible(
        &mut self,
        range: &Range,
        after: Option<&[u8]>,
    ) -> Result<Option<KeyValue>, Trap> {
        next_through(&self.writes, &mut *self.state, range, after)
    }

    /// Gas used out of `limit`, the gas the call started with.
    pub fn gas_used(&self, limit: u64) -> u64 {
        gas_used(self.gas_left, limit)
    }

    fn charge(&mut self, gas: u64) -> Result<(), Trap> {
        charge(&mut self.gas_left, gas)
    }

    /// `key` in the contract's namespace.
    fn key(&self, key: &[u8]) -> Vec<u8> {
        namespaced(&self.contract, key)
    }

    /// The value of `full` (a namespaced key): as this call wrote it, else from the state.
    fn read_state(&mut self, full: &[u8]) -> Result<Option<Vec<u8>>, Trap> {
        read_through(&self.writes, &mut *self.state, full)
    }

    /// Where the new blob `id` is in `new_blobs`, if this call stored it.
    fn new_blob(&mut self, id: &CodeId) -> Option<usize> {
        if self.new_blob_index.len() != self.new_blobs.len() {
            // The host changed `new_blobs` (it takes them after a call).
            self.new_blob_index = (self.new_blobs.iter().enumerate())
                .map(|(i, b)| (b.id, i))
                .collect();
        }
        let i = *self.new_blob_index.get(id)?;
        (self.new_blobs.get(i)?.id == *id).then_some(i)
    }

    /// Blob `id`, stored by this call or before it; never a copy of a blob this call stored.
    fn blob(&mut self, id: &CodeId) -> Result<Option<Arc<[u8]>>, Trap> {
        if let Some(i) = self.new_blob(id) {
            return Ok(Some(self.new_blobs[i].bytes.clone()));
        }
        self.blobs.blob(id).map_err(Trap::Host)
    }

    fn id_at(mem: &dyn Memory, ptr: u32) -> Result<CodeId, Trap> {
        let bytes = read(mem, ptr, 32)?;
        let mut id = [0u8; 32];
        id.copy_from_slice(bytes);
        Ok(Digest(id))
    }

    /// Performs `import` with `args` (each an `i32` or `i64` as `u64`) against `mem`; returns
    /// the import's result, if it has one.
    ///
    /// # Errors
    /// The trap that ends the call.
    pub fn dispatch(
        &mut self,
        import: Import,
        args: &[u64],
        mem: &mut dyn Memory,
    ) -> Result<Option<u64>, Trap> {
        let s = self.schedule;
        let arg = |i: usize| args.get(i).copied().unwrap_or(0) as u32;
        self.charge(s.host_call)?;
        // Every charge is made before the work it pays for, and saturates (a schedule may be
        // set without validation; see `GasSchedule::validate`).
        let words = |n: u32| GasSchedule::words(n.into());
        let cost = GasSchedule::cost;
        match import {
            Import::InputLen => Ok(Some(self.input.len() as u64)),
            Import::InputRead => {
                let (dst, offset, len) = (arg(0), arg(1), arg(2));
                self.charge(cost(0, s.copy_word, words(len)))?;
                let data =
                    self.input
                        .get(range(self.input.len(), offset, len).map_err(|_| {
                            Trap::Host("input_read beyond the end of the input".into())
                        })?)
                        .unwrap_or_default();
                write(mem, dst, data)?;
                Ok(None)
            }
            Import::ReturnData => {
                let (src, len) = (arg(0), arg(1));
                self.charge(cost(0, s.copy_word, words(len)))?;
                self.return_data = read(mem, src, len)?.to_vec();
                Ok(None)
            }
            Import::Caller => {
                let caller = self.caller;
                write(mem, arg(0), &caller)?;
                Ok(None)
            }
            Import::StorageRead => {
                let (key, key_len, dst, cap) = (arg(0), arg(1), arg(2), arg(3));
                Trap::check_len("storage key", key_len, MAX_KEY_BYTES)?;
                self.charge(cost(s.storage_read, s.storage_key_word, words(key_len)))?;
                let k = self.key(read(mem, key, key_len)?);
                match self.read_state(&k)? {
                    None => Ok(Some(u64::MAX)),
                    Some(v) => {
                        let value_words = GasSchedule::words(v.len() as u64);
                        self.charge(cost(0, s.storage_read_word, value_words))?;
                        let n = v.len().min(cap as usize);
                        write(mem, dst, &v[..n])?;
                        Ok(Some(v.len() as u64))
                    }
                }
            }
            Import::StorageWrite => {
                let (key, key_len, value, value_len) = (arg(0), arg(1), arg(2), arg(3));
                Trap::check_len("storage key", key_len, MAX_KEY_BYTES)?;
                Trap::check_len("storage value", value_len, MAX_VALUE_BYTES)?;
                let persisted = GasSchedule::words(u64::from(key_len) + u64::from(value_len));
                self.charge(cost(0, s.storage_write_word, persisted.max(1)))?;
                let k = self.key(read(mem, key, key_len)?);
                let v = read(mem, value, value_len)?.to_vec();
                self.state.check_write(&k)?;
                self.writes.put(&k, v);
                Ok(None)
            }
            Import::StorageRemove => {
                let (key, key_len) = (arg(0), arg(1));
                Trap::check_len("storage key", key_len, MAX_KEY_BYTES)?;
                self.charge(cost(s.storage_remove, s.storage_key_word, words(key_len)))?;
                let k = self.key(read(mem, key, key_len)?);
                self.state.check_write(&k)?;
                self.writes.remove(&k);
                Ok(None)
            }
            Import::EmitEvent => {
                let (topic, topic_len, data, data_len) = (arg(0), arg(1), arg(2), arg(3));
                let bytes = u64::from(topic_len) + u64::from(data_len);
                self.charge(cost(s.event, s.event_byte, bytes))?;
                let event = Event {
                    topic: read(mem, topic, topic_len)?.to_vec(),
                    data: read(mem, data, data_len)?.to_vec(),
                };
                self.events.push(event);
                Ok(None)
            }
            Import::BlobStore | Import::BlobUpdate => {
                let (previous, src, len, out) = match import {
                    Import::BlobStore => (None, arg(0), arg(1), arg(2)),
                    _ => (Some(arg(0)), arg(1), arg(2), arg(3)),
                };
                Trap::check_len("blob", len, MAX_BLOB_BYTES)?;
                let previous = previous.map(|p| Self::id_at(mem, p)).transpose()?;
                let bytes = match previous {
                    None => {
                        self.charge(cost(s.blob_store, s.blob_byte, len.into()))?;
                        read(mem, src, len)?
                    }
                    Some(p) => {
                        self.charge(s.blob_store)?;
                        let old = self
                            .blob(&p)?
                            .ok_or_else(|| Trap::Host("blob_update of a missing blob".into()))?;
                        // Measuring the change chunks and hashes both blobs: paid before.
                        let hashed = GasSchedule::words(old.len() as u64) + words(len);
                        self.charge(cost(0, s.blob_hash_word, hashed))?;
                        let bytes = read(mem, src, len)?;
                        self.charge(cost(0, s.blob_byte, changed_bytes(&old, bytes)))?;
                        bytes
                    }
                };
                let id = Digest::of(bytes);
                let new = self.new_blob(&id).is_none().then(|| Arc::from(bytes));
                write(mem, out, id.as_bytes())?;
                if let Some(bytes) = new {
                    self.new_blob_index.insert(id, self.new_blobs.len());
                    self.new_blobs.push(NewBlob {
                        id,
                        previous,
                        bytes,
                    });
                }
                Ok(None)
            }
            Import::BlobLen => {
                self.charge(s.blob_read)?;
                let id = Self::id_at(mem, arg(0))?;
                Ok(Some(self.blob(&id)?.map_or(u64::MAX, |b| b.len() as u64)))
            }
            Import::BlobRead => {
                let (id, offset, dst, len) = (arg(0), arg(1), arg(2), arg(3));
                self.charge(s.blob_read)?;
                let id = Self::id_at(mem, id)?;
                let blob = self
                    .blob(&id)?
                    .ok_or_else(|| Trap::Host("blob_read of a missing blob".into()))?;
                let start = (offset as usize).min(blob.len());
                let end = start.saturating_add(len as usize).min(blob.len());
                self.charge(cost(
                    0,
                    s.blob_read_word,
                    GasSchedule::words((end - start) as u64),
                ))?;
                write(mem, dst, &blob[start..end])?;
                Ok(Some((end - start) as u64))
            }
            Import::Abort => {
                let message = read(mem, arg(0), arg(1).min(1024))?;
                Err(Trap::Aborted(String::from_utf8_lossy(message).into_owned()))
            }
            Import::StorageNext | Import::StoragePrev => {
                let (prefix, prefix_len, after, after_len, out, cap) =
                    (arg(0), arg(1), arg(2), arg(3), arg(4), arg(5));
                let after_len = (after_len != u32::MAX).then_some(after_len);
                Trap::check_len("storage key", prefix_len, MAX_KEY_BYTES)?;
                if let Some(n) = after_len {
                    Trap::check_len("storage key", n, MAX_KEY_BYTES)?;
                }
                let key_bytes = u64::from(prefix_len) + u64::from(after_len.unwrap_or(0));
                let key_words = GasSchedule::words(key_bytes);
                self.charge(cost(s.storage_read, s.storage_key_word, key_words))?;
                let mut range = Range::prefix(&self.key(read(mem, prefix, prefix_len)?));
                if import == Import::StoragePrev {
                    range = range.descending();
                }
                let after = match after_len {
                    Some(n) => Some(self.key(read(mem, after, n)?)),
                    None => None,
                };
                let Some((key, value)) = self.next_visible(&range, after.as_deref())? else {
                    return Ok(Some(u64::MAX));
                };
                // The key as the contract names it, without its namespace.
                let key = &key[self.contract.as_bytes().len()..];
                let found = (key.len() + value.len()) as u64;
                self.charge(cost(0, s.storage_read_word, GasSchedule::words(found)))?;
                let mut entry = Vec::with_capacity(4 + found as usize);
                entry.extend_from_slice(&(key.len() as u32).to_le_bytes());
                entry.extend_from_slice(key);
                entry.extend_from_slice(&value);
                write(mem, out, &entry[..entry.len().min(cap as usize)])?;
                Ok(Some(entry.len() as u64))
            }
            Import::Call => self.call(args, mem),
            Import::Instantiate => {
                let (code, out) = (arg(0), arg(1));
                self.charge(s.contract_instantiate)?;
                let code = Self::id_at(mem, code)?;
                let deployed = self.calls.as_ref().is_some_and(|c| c.has_code(&code));
                if !deployed {
                    return Ok(Some(u64::MAX));
                }
                let ordinal = self.new_contracts.len() as u32;
                let address =
                    crate::block::created_address(&code, &self.contract, self.position, ordinal);
                write(mem, out, address.as_bytes())?;
                self.new_contracts.push(NewContract {
                    address,
                    code,
                    creator: self.contract,
                });
                Ok(Some(0))
            }
            Import::CallResult => {
                let (dst, offset, len) = (arg(0), arg(1), arg(2));
                self.charge(cost(0, s.copy_word, words(len)))?;
                let r = range(self.call_result.len(), offset, len).map_err(|_| {
                    Trap::Host("call_result beyond the end of the return data".into())
                })?;
                let data = self.call_result.get(r).unwrap_or_default().to_vec();
                write(mem, dst, &data)?;
                Ok(None)
            }
        }
    }

    /// `call`: runs a contract in a nested checkpoint of this call's effects.
    fn call(&mut self, args: &[u64], mem: &mut dyn Memory) -> Result<Option<u64>, Trap> {
        let s = self.schedule;
        let arg = |i: usize| args.get(i).copied().unwrap_or(0) as u32;
        let (target, entry, entry_len, input, input_len, gas) =
            (arg(0), arg(1), arg(2), arg(3), arg(4), arg(5));
        Trap::check_len("entry name", entry_len, MAX_ENTRY_BYTES)?;
        Trap::check_len("call input", input_len, MAX_VALUE_BYTES)?;
        let copied = GasSchedule::words(u64::from(entry_len) + u64::from(input_len));
        self.charge(GasSchedule::cost(s.contract_call, s.copy_word, copied))?;
        let target = Self::id_at(mem, target)?;
        let entry = String::from(
            core::str::from_utf8(read(mem, entry, entry_len)?)
                .map_err(|_| Trap::Host("call: the entry name is not UTF-8".into()))?,
        );
        let input = read(mem, input, input_len)?.to_vec();
        let mut limit = [0u8; 8];
        limit.copy_from_slice(read(mem, gas, 8)?);
        self.call_result.clear();
        let Some(calls) = self.calls.clone() else {
            return Ok(Some(u64::MAX));
        };
        if self.depth >= MAX_CALL_DEPTH {
            return Ok(Some(u64::MAX));
        }
        let forwarded = u64::from_le_bytes(limit).min(u64::try_from(self.gas_left).unwrap_or(0));
        // The callee takes this call's state and effects, and gives them back.
        let mut child = CallContext::new(
            target,
            *self.contract.as_bytes(),
            input,
            forwarded,
            core::mem::replace(&mut self.state, Box::new(Empty)),
            core::mem::replace(&mut self.blobs, Box::new(Empty)),
        );
        child.schedule = self.schedule;
        child.depth = self.depth + 1;
        child.calls = Some(calls.clone());
        child.writes = core::mem::take(&mut self.writes);
        let checkpoint = child.writes.checkpoint();
        child.events = core::mem::take(&mut self.events);
        child.new_blobs = core::mem::take(&mut self.new_blobs);
        child.new_contracts = core::mem::take(&mut self.new_contracts);
        child.position = self.position;
        let mark = (
            child.events.len(),
            child.new_blobs.len(),
            child.new_contracts.len(),
        );
        let result = calls.call(&mut child, &entry);
        self.state = core::mem::replace(&mut child.state, Box::new(Empty));
        self.blobs = core::mem::replace(&mut child.blobs, Box::new(Empty));
        self.writes = core::mem::take(&mut child.writes);
        self.events = core::mem::take(&mut child.events);
        self.new_blobs = core::mem::take(&mut child.new_blobs);
        self.new_contracts = core::mem::take(&mut child.new_contracts);
        // Rebuilt at the next lookup.
        self.new_blob_index.clear();
        let sub = result?;
        // The callee's checkpoint is the innermost open one: it closes.
        let closed = if sub.failed {
            self.writes.revert(checkpoint)
        } else {
            self.writes.commit(checkpoint)
        };
        closed.map_err(|e| Trap::Host(alloc::format!("call: {e}")))?;
        self.charge(sub.gas_used.min(forwarded))?;
        if sub.failed {
            self.events.truncate(mark.0);
            self.new_blobs.truncate(mark.1);
            self.new_contracts.truncate(mark.2);
            return Ok(Some(u64::MAX));
        }
        self.call_result = core::mem::take(&mut child.return_data);
        Ok(Some(self.call_result.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    #[test]
    fn changed_bytes_follow_the_change() {
        let old = crate::testing::noise(1, 50_000);
        assert_eq!(changed_bytes(&old, &old), 0);
        let mut new = old.clone();
        new[25_000] ^= 1;
        let changed = changed_bytes(&old, &new);
        assert!(changed > 0 && changed <= 2048, "{changed}");
        assert_eq!(changed_bytes(&[], &new), new.len() as u64);
    }

    #[test]
    fn dispatch_charges_and_buffers() {
        let state: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let contract = Digest([7; 32]);
        let mut ctx = CallContext::new(
            contract,
            [1; 32],
            b"hi".to_vec(),
            1_000_000,
            Box::new(state),
            Box::new(Empty),
        );
        let mut mem = vec![0u8; 256];
        mem[..3].copy_from_slice(b"key");
        mem[10..15].copy_from_slice(b"value");
        ctx.dispatch(Import::StorageWrite, &[0, 3, 10, 5], &mut mem)
            .unwrap();
        let r = ctx
            .dispatch(Import::StorageRead, &[0, 3, 100, 64], &mut mem)
            .unwrap();
        assert_eq!(r, Some(5));
        assert_eq!(&mem[100..105], b"value");
        assert_eq!(ctx.writes.len(), 1);
        assert_eq!(
            ctx.dispatch(Import::StorageRead, &[0, 2, 100, 64], &mut mem)
                .unwrap(),
            Some(u64::MAX)
        );
        assert!(matches!(
            ctx.dispatch(Import::InputRead, &[255, 0, 2], &mut mem),
            Err(Trap::MemoryOutOfBounds)
        ));
        ctx.gas_left = 10;
        assert_eq!(
            ctx.dispatch(Import::StorageWrite, &[0, 3, 10, 5], &mut mem),
            Err(Trap::OutOfGas)
        );
    }

    /// A context with `gas` over an empty state, as contract `[7; 32]`.
    fn context(gas: u64) -> CallContext {
        let state: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        CallContext::new(
            Digest([7; 32]),
            [1; 32],
            Vec::new(),
            gas,
            Box::new(state),
            Box::new(Empty),
        )
    }

    /// Gas `import` with `args` used, and its result.
    fn used(
        ctx: &mut CallContext,
        import: Import,
        args: &[u64],
        mem: &mut Vec<u8>,
    ) -> (u64, Result<Option<u64>, Trap>) {
        let before = ctx.gas_left;
        let r = ctx.dispatch(import, args, mem);
        ((before - ctx.gas_left) as u64, r)
    }

    const KEY: u32 = MAX_KEY_BYTES;

    /// Keys and values over their caps trap with `too_large` on read, write and remove,
    /// before memory is read (the 120,000-byte key lies past the end of a small memory, and
    /// still traps `too_large`, not `memory_out_of_bounds`) and with nothing charged but the
    /// call; keys and values at the caps are accepted.
    #[test]
    fn keys_and_values_over_the_caps_are_refused_before_any_copy() {
        let s = GasSchedule::V1;
        let mut small = vec![0u8; 256];
        let mut ctx = context(u64::MAX);
        let too_long = |what, len, max| Err(Trap::TooLarge { what, len, max });
        for (import, args) in [
            (Import::StorageRead, [0, 120_000, 0, 0]),
            (Import::StorageWrite, [0, 120_000, 0, 1]),
            (Import::StorageRemove, [0, 120_000, 0, 0]),
        ] {
            let (gas, r) = used(&mut ctx, import, &args, &mut small);
            assert_eq!(r, too_long("storage key", 120_000, KEY), "{import:?}");
            assert_eq!(gas, s.host_call, "{import:?}");
        }
        let (gas, r) = used(
            &mut ctx,
            Import::StorageWrite,
            &[0, 1, 0, u64::from(MAX_VALUE_BYTES) + 1],
            &mut small,
        );
        assert_eq!(
            r,
            too_long("storage value", MAX_VALUE_BYTES + 1, MAX_VALUE_BYTES)
        );
        assert_eq!(gas, s.host_call);
        assert_eq!(
            Trap::TooLarge {
                what: "storage key",
                len: 120_000,
                max: KEY
            }
            .to_string(),
            "too_large: storage key of 120000 bytes, over the limit of 65536"
        );
        // At the caps.
        let mut big = vec![1u8; (KEY + MAX_VALUE_BYTES) as usize];
        let (key, value) = (u64::from(KEY), u64::from(MAX_VALUE_BYTES));
        let write = [0, key, key, value];
        assert_eq!(
            ctx.dispatch(Import::StorageWrite, &write, &mut big),
            Ok(None)
        );
        let read = [0, key, 0, 0];
        assert_eq!(
            ctx.dispatch(Import::StorageRead, &read, &mut big),
            Ok(Some(value))
        );
        assert_eq!(
            ctx.dispatch(Import::StorageRemove, &read[..2], &mut big),
            Ok(None)
        );
    }

    /// A 64 KiB key costs 2,047 words more than a 32-byte key: at the write rate on a write
    /// (it is persisted), at the key rate on a read and a removal.
    #[test]
    fn storage_calls_charge_every_word_of_the_key() {
        let s = GasSchedule::V1;
        let mut mem = vec![3u8; KEY as usize + 64];
        let mut ctx = context(u64::MAX);
        let value = u64::from(KEY);
        let gas = |ctx: &mut CallContext, mem: &mut Vec<u8>, import, key_len: u64| {
            let args = match import {
                Import::StorageWrite => [0, key_len, value, 5],
                _ => [0, key_len, value, 64],
            };
            let (gas, r) = used(ctx, import, &args, mem);
            r.unwrap();
            gas
        };
        let long = u64::from(KEY);
        let write = (gas(&mut ctx, &mut mem, Import::StorageWrite, long))
            - gas(&mut ctx, &mut mem, Import::StorageWrite, 32);
        assert_eq!(write, 2047 * s.storage_write_word);
        // Both keys hold a 5-byte value now.
        let read = gas(&mut ctx, &mut mem, Import::StorageRead, long)
            - gas(&mut ctx, &mut mem, Import::StorageRead, 32);
        assert_eq!(read, 2047 * s.storage_key_word);
        let remove = gas(&mut ctx, &mut mem, Import::StorageRemove, long)
            - gas(&mut ctx, &mut mem, Import::StorageRemove, 32);
        assert_eq!(remove, 2047 * s.storage_key_word);
        // The documented figures: a 32-byte key with a 32-byte value costs 20,000.
        assert_eq!(write, 20_470_000);
        let (slot, r) = used(&mut ctx, Import::StorageWrite, &[0, 32, 0, 32], &mut mem);
        assert_eq!((slot - s.host_call, r), (20_000, Ok(None)));
    }

    /// The undeclared-access trap of a 100 KiB key keeps and prints a bounded part of it, with
    /// its length and digest; a short key is printed whole. The trap stays small.
    #[test]
    fn undeclared_access_is_bounded_whatever_the_key() {
        let key = crate::testing::noise(3, 100 << 10);
        let trap = Trap::undeclared_access(&key, true);
        let Trap::UndeclaredAccess(k) = &trap else {
            panic!("{trap:?}")
        };
        assert_eq!(k.prefix, key[..KEY_SHOWN_BYTES]);
        assert_eq!(
            (k.len, k.digest, k.write),
            (100 << 10, Digest::of(&key), true)
        );
        let message = trap.to_string();
        assert!(message.len() < 400, "{} bytes", message.len());
        assert!(
            message.starts_with("undeclared_access: write of key "),
            "{message}"
        );
        assert!(message.contains("102400 bytes"), "{message}");
        assert!(message.contains(&Digest::of(&key).to_string()), "{message}");
        let short = Trap::undeclared_access(b"\x01\xab", false).to_string();
        assert_eq!(short, "undeclared_access: read of key 01ab");
        assert!(core::mem::size_of::<Trap>() <= 32);
    }

    /// Blobs a call stored are read without copying them: `blob_len` and `blob_read` see the
    /// very bytes `new_blobs` holds.
    #[test]
    fn new_blobs_are_shared_not_copied() {
        let mut mem = crate::testing::noise(4, (1 << 20) + 64);
        let mut ctx = context(u64::MAX);
        let n = 1u64 << 20;
        ctx.dispatch(Import::BlobStore, &[64, n, 0], &mut mem)
            .unwrap();
        let id = Digest::of(&mem[64..]);
        assert_eq!(&mem[..32], id.as_bytes());
        let held = ctx.new_blobs[0].bytes.clone();
        let seen = ctx.blob(&id).unwrap().unwrap();
        assert!(Arc::ptr_eq(&held, &seen), "a copy of the new blob");
        drop(seen);
        let (gas, len) = used(&mut ctx, Import::BlobLen, &[0], &mut mem);
        assert_eq!(len, Ok(Some(n)));
        assert_eq!(gas, GasSchedule::V1.host_call + GasSchedule::V1.blob_read);
        assert_eq!(Arc::strong_count(&held), 2);
        // Stored twice, kept once; found again after the host took them.
        ctx.dispatch(Import::BlobStore, &[64, n, 0], &mut mem)
            .unwrap();
        assert_eq!(ctx.new_blobs.len(), 1);
        ctx.new_blobs.clear();
        assert_eq!(
            ctx.dispatch(Import::BlobLen, &[0], &mut mem),
            Ok(Some(u64::MAX))
        );
        ctx.dispatch(Import::BlobStore, &[64, 10, 0], &mut mem)
            .unwrap();
        assert_eq!(ctx.dispatch(Import::BlobLen, &[0], &mut mem), Ok(Some(10)));
        // Blobs stored before the call, held in a map, are shared too.
        let stored: BTreeMap<CodeId, Arc<[u8]>> = [(id, held.clone())].into();
        ctx.blobs = Box::new(stored);
        assert!(Arc::ptr_eq(&held, &ctx.blob(&id).unwrap().unwrap()));
    }

    /// `blob_read` charges the words it copies, not the words asked for.
    #[test]
    fn blob_reads_charge_the_bytes_copied() {
        let s = GasSchedule::V1;
        let mut mem = crate::testing::noise(5, 2 << 20);
        let mut ctx = context(u64::MAX);
        ctx.dispatch(Import::BlobStore, &[64, 100, 0], &mut mem)
            .unwrap();
        let fixed = s.host_call + s.blob_read;
        // 100 bytes copied of the 1 MiB asked for: 4 words.
        let (gas, r) = used(&mut ctx, Import::BlobRead, &[0, 0, 4096, 1 << 20], &mut mem);
        assert_eq!(r, Ok(Some(100)));
        assert_eq!(gas, fixed + 4 * s.blob_read_word);
        // Past the end: nothing copied, nothing charged beyond the call.
        let (gas, r) = used(
            &mut ctx,
            Import::BlobRead,
            &[0, 200, 4096, 1 << 20],
            &mut mem,
        );
        assert_eq!((gas, r), (fixed, Ok(Some(0))));
    }

    /// `blob_update` of two 4 MiB blobs pays for hashing 8 MiB before it compares them: with
    /// one gas too little it traps `out_of_gas` at that charge (the gas left is -1, where
    /// a charge after the comparison would have taken the changed bytes' cost as well), and
    /// an update that changes nothing still pays it.
    #[test]
    fn blob_updates_pay_for_hashing_both_blobs_first() {
        let s = GasSchedule::V1;
        let size = 4u64 << 20;
        let mut mem = crate::testing::noise(6, 2 * size as usize + 64);
        let hashing = s.host_call + s.blob_store + s.blob_hash_word * 2 * (size / 32);
        for changes in [true, false] {
            let mut ctx = context(u64::MAX);
            // The previous blob's id at 0, the new blob's bytes different or the same.
            ctx.dispatch(Import::BlobStore, &[64, size, 0], &mut mem)
                .unwrap();
            let update = [0, if changes { 64 + size } else { 64 }, size, 32];
            ctx.gas_left = hashing as i64 - 1;
            let r = ctx.dispatch(Import::BlobUpdate, &update, &mut mem);
            assert_eq!(
                (r, ctx.gas_left),
                (Err(Trap::OutOfGas), -1),
                "changes: {changes}"
            );
            assert_eq!(ctx.new_blobs.len(), 1);
            if !changes {
                // The same bytes again: no byte changed, the hashing is all it costs.
                ctx.gas_left = hashing as i64;
                let r = ctx.dispatch(Import::BlobUpdate, &update, &mut mem);
                assert_eq!((r, ctx.gas_left), (Ok(None), 0));
            }
        }
    }

    /// A blob over the cap traps `too_large` before memory is read.
    #[test]
    fn blobs_over_the_cap_are_refused() {
        let mut mem = vec![0u8; 256];
        let mut ctx = context(u64::MAX);
        let over = MAX_BLOB_BYTES + 1;
        let too_large = Err(Trap::TooLarge {
            what: "blob",
            len: over,
            max: MAX_BLOB_BYTES,
        });
        let r = ctx.dispatch(Import::BlobStore, &[0, over.into(), 0], &mut mem);
        assert_eq!(r, too_large);
        // The previous blob's id, past the end of memory, is not read either.
        let r = ctx.dispatch(Import::BlobUpdate, &[1024, 0, over.into(), 0], &mut mem);
        assert_eq!(r, too_large);
    }

    /// A schedule set without validation, far past its bounds, makes charges saturate to
    /// `out_of_gas` rather than wrap (or overflow).
    #[test]
    fn charges_saturate_under_any_schedule() {
        let mut mem = vec![0u8; 256];
        let huge = GasSchedule {
            copy_word: u64::MAX,
            storage_key_word: u64::MAX,
            storage_write_word: u64::MAX,
            event: u64::MAX,
            event_byte: u64::MAX,
            blob_byte: u64::MAX,
            ..GasSchedule::V1
        };
        for (import, args) in [
            (Import::InputRead, [0u64, 0, 64, 0]),
            (Import::ReturnData, [0, 64, 0, 0]),
            (Import::StorageRead, [0, 64, 0, 0]),
            (Import::StorageWrite, [0, 64, 0, 64]),
            (Import::StorageRemove, [0, 64, 0, 0]),
            (Import::EmitEvent, [0, u32::MAX.into(), 0, u32::MAX.into()]),
            (Import::BlobStore, [0, 64, 0, 0]),
        ] {
            let mut ctx = context(u64::MAX);
            ctx.schedule = huge;
            let args = &args[..import.shape().arity()];
            assert_eq!(
                ctx.dispatch(import, args, &mut mem),
                Err(Trap::OutOfGas),
                "{import:?}"
            );
        }
    }

    #[test]
    fn import_table_is_consistent() {
        for i in Import::ALL {
            assert_eq!(Import::by_name(i.name()), Some(i));
        }
    }

    /// The signatures of the module documentation's table (what contracts are compiled
    /// against), against the shapes hosts define their functions from.
    #[test]
    fn shapes_are_the_documented_signatures() {
        use Ty::{I32, I64};
        let documented: [(&str, usize, Option<Ty>); 13] = [
            ("input_len", 0, Some(I32)),
            ("input_read", 3, None),
            ("return_data", 2, None),
            ("caller", 1, None),
            ("storage_read", 4, Some(I64)),
            ("storage_write", 4, None),
            ("storage_remove", 2, None),
            ("emit_event", 4, None),
            ("blob_store", 3, None),
            ("blob_update", 4, None),
            ("blob_len", 1, Some(I64)),
            ("blob_read", 4, Some(I32)),
            ("abort", 2, None),
        ];
        for (name, arity, result) in documented {
            let import = Import::by_name(name).expect("a documented import");
            let shape = import.shape();
            assert_eq!((shape.arity(), shape.result()), (arity, result), "{name}");
            assert_eq!(import.params(), &[I32; 4][..arity], "{name}");
            assert_eq!(import.results(), result.as_slice(), "{name}");
        }
    }

    #[test]
    fn results_keep_their_sign() {
        use crate::tier::Value;
        // -1 (absent) as dispatch returns it: the low bits of the two's complement.
        let absent = Some(-1i64 as u64);
        assert_eq!(Import::raw_i64(absent), -1);
        assert_eq!(Import::StorageRead.result(absent), Some(Value::I64(-1)));
        let short = Some(u64::from(-5i32 as u32));
        assert_eq!(Import::raw_i32(short), -5);
        assert_eq!(Import::BlobRead.result(short), Some(Value::I32(-5)));
        assert_eq!(Import::InputLen.result(None), None);
        assert_eq!(Import::Caller.result(Some(7)), None);
        assert_eq!(Import::raw_i32(None), 0);
    }
}
