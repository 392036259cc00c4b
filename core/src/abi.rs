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
//! | `storage_read` | `(key, key_len, dst, cap) -> i64` | value length, or -1 when absent; copies at most `cap` bytes | `storage_read` + `storage_read_word` per word of key and value |
//! | `storage_write` | `(key, key_len, value, value_len)` | sets the key | `storage_write_word` per word of value (at least one) |
//! | `storage_remove` | `(key, key_len)` | removes the key | `storage_remove` |
//! | `emit_event` | `(topic, topic_len, data, data_len)` | appends an event | `event` + `event_byte` per byte |
//! | `blob_store` | `(src, len, id_out)` | stores an immutable blob, writes its id | `blob_store` + `blob_byte` per byte |
//! | `blob_update` | `(previous, src, len, id_out)` | stores a new version of a blob | `blob_store` + `blob_byte` per byte that differs from `previous` ([`changed_bytes`]) |
//! | `blob_len` | `(id) -> i64` | blob length, or -1 when absent | `blob_read` |
//! | `blob_read` | `(id, offset, dst, len) -> i32` | copies blob bytes, returns how many | `blob_read` + `blob_read_word` per word |
//! | `abort` | `(message, len)` | traps with `aborted` and the message | — |
//!
//! Storage keys are namespaced by contract: the state sees `contract id ++ key`. Writes, events
//! and blobs are buffered and take effect only if the call returns without trapping.
//!
//! # Exports
//!
//! Entry points are exported functions; contracts take no parameters and read their input, but
//! modules that import nothing (compute programs) may take and return `i32`/`i64` values.
//! Exports named `__synor_*` are reserved for the instrumenter.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::digest::{CodeId, Digest};
use crate::gas::GasSchedule;
use crate::store::{ChunkConfig, Chunker};

/// The ABI version this module describes.
pub const ABI_VERSION: u32 = 1;

/// The import module every ABI import comes from.
pub const IMPORT_MODULE: &str = "synor";

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
    /// `(i32, i32, i32)`
    Args3,
    /// `(i32, i32, i32, i32)`
    Args4,
    /// `(i32, i32, i32, i32) -> i32`
    Args4I32,
    /// `(i32, i32, i32, i32) -> i64`
    Args4I64,
}

impl Shape {
    /// Parameters (each an `i32`).
    pub fn arity(self) -> usize {
        match self {
            Shape::Args0I32 => 0,
            Shape::Args1 | Shape::Args1I64 => 1,
            Shape::Args2 => 2,
            Shape::Args3 => 3,
            Shape::Args4 | Shape::Args4I32 | Shape::Args4I64 => 4,
        }
    }

    /// The result's type, if it has one.
    pub fn result(self) -> Option<Ty> {
        match self {
            Shape::Args0I32 | Shape::Args4I32 => Some(Ty::I32),
            Shape::Args1I64 | Shape::Args4I64 => Some(Ty::I64),
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
}

impl Import {
    /// Every import, in dispatch order.
    pub const ALL: [Import; 13] = [
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
        }
    }

    /// The import's signature ([`Shape`]): which typed host function serves it.
    pub fn shape(self) -> Shape {
        match self {
            Import::InputLen => Shape::Args0I32,
            Import::Caller => Shape::Args1,
            Import::BlobLen => Shape::Args1I64,
            Import::ReturnData | Import::StorageRemove | Import::Abort => Shape::Args2,
            Import::InputRead | Import::BlobStore => Shape::Args3,
            Import::StorageWrite | Import::EmitEvent | Import::BlobUpdate => Shape::Args4,
            Import::BlobRead => Shape::Args4I32,
            Import::StorageRead => Shape::Args4I64,
        }
    }

    /// Parameter types.
    pub fn params(self) -> &'static [Ty] {
        &[Ty::I32; 4][..self.shape().arity()]
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
    pub fn args(params: impl IntoIterator<Item = i32>) -> ([u64; 4], usize) {
        let mut args = [0u64; 4];
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
    /// The transaction touched a state key it did not declare (declared-access scheduling).
    UndeclaredAccess {
        /// The key (namespaced by contract).
        key: Vec<u8>,
        /// Whether it was a write.
        write: bool,
    },
    /// A host call was malformed (e.g. a bad length) or the host failed; the reason is kept.
    Host(String),
}

impl Trap {
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
            Trap::UndeclaredAccess { .. } => "undeclared_access",
            Trap::Host(_) => "host_error",
        }
    }
}

impl fmt::Display for Trap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trap::Aborted(m) | Trap::Host(m) => write!(f, "{}: {m}", self.name()),
            Trap::UndeclaredAccess { key, write } => {
                let hex: String = key.iter().map(|b| alloc::format!("{b:02x}")).collect();
                let what = if *write { "write" } else { "read" };
                write!(f, "undeclared_access: {what} of key {hex}")
            }
            _ => f.write_str(self.name()),
        }
    }
}

impl core::error::Error for Trap {}

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
}

/// Blobs (code-as-storage) as a call sees them.
pub trait Blobs {
    /// The bytes of blob `id`, if stored.
    ///
    /// # Errors
    /// The store failed.
    fn blob(&mut self, id: &CodeId) -> Result<Option<alloc::sync::Arc<[u8]>>, String>;
}

/// No state and no blobs: every read finds nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Empty;

impl State for Empty {
    fn read(&mut self, _key: &[u8]) -> Result<Option<Vec<u8>>, Trap> {
        Ok(None)
    }
}

impl Blobs for Empty {
    fn blob(&mut self, _id: &CodeId) -> Result<Option<alloc::sync::Arc<[u8]>>, String> {
        Ok(None)
    }
}

/// State held in a map (tests, `synor run`).
impl State for BTreeMap<Vec<u8>, Vec<u8>> {
    fn read(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, Trap> {
        Ok(self.get(key).cloned())
    }
}

impl Blobs for BTreeMap<CodeId, Vec<u8>> {
    fn blob(&mut self, id: &CodeId) -> Result<Option<alloc::sync::Arc<[u8]>>, String> {
        Ok(self.get(id).map(|b| b[..].into()))
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
    /// Its bytes.
    pub bytes: Vec<u8>,
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

/// Everything a call may ask of the node, with the gas it costs: the one implementation of ABI
/// v1 that every tier uses.
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
    /// Writes so far (`None` removes), applied by the caller only if the call succeeds.
    pub writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Blobs stored so far.
    pub new_blobs: Vec<NewBlob>,
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
            writes: BTreeMap::new(),
            new_blobs: Vec::new(),
        }
    }

    /// Gas used out of `limit`, the gas the call started with.
    pub fn gas_used(&self, limit: u64) -> u64 {
        limit.saturating_sub(u64::try_from(self.gas_left).unwrap_or(0))
    }

    fn charge(&mut self, gas: u64) -> Result<(), Trap> {
        let gas = i64::try_from(gas).unwrap_or(i64::MAX);
        self.gas_left = self.gas_left.saturating_sub(gas);
        if self.gas_left < 0 {
            return Err(Trap::OutOfGas);
        }
        Ok(())
    }

    fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(32 + key.len());
        k.extend_from_slice(self.contract.as_bytes());
        k.extend_from_slice(key);
        k
    }

    fn read_state(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, Trap> {
        let full = self.key(key);
        if let Some(v) = self.writes.get(&full) {
            return Ok(v.clone());
        }
        self.state.read(&full)
    }

    fn blob(&mut self, id: &CodeId) -> Result<Option<alloc::sync::Arc<[u8]>>, Trap> {
        if let Some(b) = self.new_blobs.iter().find(|b| b.id == *id) {
            return Ok(Some(b.bytes[..].into()));
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
        let words = |n: u32| GasSchedule::words(n.into());
        match import {
            Import::InputLen => Ok(Some(self.input.len() as u64)),
            Import::InputRead => {
                let (dst, offset, len) = (arg(0), arg(1), arg(2));
                self.charge(s.copy_word * words(len))?;
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
                self.charge(s.copy_word * words(len))?;
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
                self.charge(s.storage_read + s.storage_read_word * words(key_len))?;
                let k = read(mem, key, key_len)?.to_vec();
                match self.read_state(&k)? {
                    None => Ok(Some(u64::MAX)),
                    Some(v) => {
                        self.charge(s.storage_read_word * GasSchedule::words(v.len() as u64))?;
                        let n = v.len().min(cap as usize);
                        write(mem, dst, &v[..n])?;
                        Ok(Some(v.len() as u64))
                    }
                }
            }
            Import::StorageWrite => {
                let (key, key_len, value, value_len) = (arg(0), arg(1), arg(2), arg(3));
                self.charge(s.storage_write_word * words(value_len).max(1))?;
                let k = self.key(read(mem, key, key_len)?);
                let v = read(mem, value, value_len)?.to_vec();
                self.state.check_write(&k)?;
                self.writes.insert(k, Some(v));
                Ok(None)
            }
            Import::StorageRemove => {
                let (key, key_len) = (arg(0), arg(1));
                self.charge(s.storage_remove)?;
                let k = self.key(read(mem, key, key_len)?);
                self.state.check_write(&k)?;
                self.writes.insert(k, None);
                Ok(None)
            }
            Import::EmitEvent => {
                let (topic, topic_len, data, data_len) = (arg(0), arg(1), arg(2), arg(3));
                self.charge(s.event + s.event_byte * (u64::from(topic_len) + u64::from(data_len)))?;
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
                    _ => (Some(Self::id_at(mem, arg(0))?), arg(1), arg(2), arg(3)),
                };
                self.charge(s.blob_store)?;
                let bytes = read(mem, src, len)?.to_vec();
                let charged = match previous {
                    None => bytes.len() as u64,
                    Some(p) => {
                        let old = self
                            .blob(&p)?
                            .ok_or_else(|| Trap::Host("blob_update of a missing blob".into()))?;
                        changed_bytes(&old, &bytes)
                    }
                };
                self.charge(s.blob_byte * charged)?;
                let id = Digest::of(&bytes);
                write(mem, out, id.as_bytes())?;
                if !self.new_blobs.iter().any(|b| b.id == id) {
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
                self.charge(s.blob_read + s.blob_read_word * words(len))?;
                let id = Self::id_at(mem, id)?;
                let blob = self
                    .blob(&id)?
                    .ok_or_else(|| Trap::Host("blob_read of a missing blob".into()))?;
                let start = (offset as usize).min(blob.len());
                let end = start.saturating_add(len as usize).min(blob.len());
                write(mem, dst, &blob[start..end])?;
                Ok(Some((end - start) as u64))
            }
            Import::Abort => {
                let message = read(mem, arg(0), arg(1).min(1024))?;
                Err(Trap::Aborted(String::from_utf8_lossy(message).into_owned()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
