//! Validation and instrumentation: the module every tier runs.
//!
//! The core rewrites each contract once, before any engine sees it, so that gas, traps and
//! results are identical on every tier and tier promotion is invisible to consensus.
//!
//! # Deterministic feature set
//!
//! WebAssembly's "lime1" set ([`wasmparser::WasmFeatures::LIME1`]): 1.0 plus mutable globals,
//! multi-value, sign extension, saturating float-to-int, `memory.copy`/`memory.fill`, extended
//! constant expressions, and the overlong `call_indirect` encoding of current compilers. Threads,
//! SIMD, reference types, tail calls, exceptions, GC, multiple memories and 64-bit memories are
//! rejected: each is either nondeterministic or not supported identically by every tier.
//!
//! Floats are allowed and **NaN-canonicalised**: engines may differ only in the sign and
//! payload of a NaN, and those bits become observable only where a float is stored to memory,
//! reinterpreted as an integer, used as the sign of `copysign`, or returned to the host. At
//! each of those points the instrumenter inserts a check that replaces a NaN by the canonical
//! NaN (`0x7fc00000`, `0x7ff8000000000000`) — before a store, by a branch never taken for a
//! number (`x >= -inf` is false exactly for NaNs), so that the stored value does not wait for
//! the compare (the sign of `copysign` the same way); after a reinterpretation, by an integer
//! compare and select — and engines
//! canonicalise float results they return ([`crate::tier::Value::canonical`]). Everything
//! else a NaN can do (arithmetic, comparisons, conversions, which trap or saturate on any NaN)
//! does not depend on its bits, so every observable bit is the same on every tier, while
//! arithmetic runs unchecked. Modules without floats pay nothing.

//! # What is inserted
//!
//! Three globals are appended (so no existing index moves) and exported:
//! [`GAS_GLOBAL`] (`i64` gas left), [`DEPTH_GLOBAL`] (`i32` call depth in stack units) and
//! [`TRAP_GLOBAL`] (`i32` reason of the last trap the instrumentation raised). Then:
//!
//! - **Gas**: code is cut into segments at the points control can reach other than by falling
//!   through (function entry, loop headers, `if` and `else` arms, after every `end`); each
//!   segment's cost (per the [`GasSchedule`]) is charged when the segment starts. A function
//!   keeps the gas left in a local (a register on the compiling tiers) and writes it to the
//!   global before every call, return, `unreachable` and instrumentation trap, reading it back
//!   after calls, so host calls and engines see the exact count there. A machine fault
//!   (out-of-bounds access, division by zero, ...) happens between those points; a call that
//!   faults is charged its whole gas limit, on every tier ([`crate::tier::settle`]). Instructions
//!   whose cost depends on an operand (`memory.grow` per page, `memory.fill`/`copy` per 8 bytes)
//!   are charged again, dynamically, just before they run.
//!
//!   A **counted loop** (straight-line body, one local stepped by one towards a bound the loop
//!   does not change: binaryen's `memory.fill` lowering, many compiled `for` loops) is charged
//!   all its trips at once, with a check, when it starts, and nothing per trip (see
//!   `instrument/counted.rs`): the same total, taken before the first trip.
//!
//!   Only the charges where code can run again are **checked** (trap when the gas left is
//!   negative): a function's entry and loop headers, and the dynamic charges. The others only
//!   subtract, so between two checks a call runs at most one function's loop-free stretch past
//!   its gas (the field's engines do the same: wasmtime checks fuel at function entries and
//!   loop headers). The count stays exact: a host call with the gas left negative traps
//!   `out_of_gas` before it does anything ([`crate::abi::CallContext::dispatch`]), and a call
//!   that returns or traps with it negative ran out of gas ([`crate::tier::settle`]). A call
//!   that does not run out uses exactly the gas of every checked scheme, and every tier checks
//!   at the same points.
//! - **Stack**: every call adds the callee's frame weight (one unit plus one per four of its
//!   parameters, locals and maximum operand stack height) to the depth before the call and
//!   subtracts it after; past [`Limits::max_stack_units`] the call traps with `stack_overflow`
//!   on every tier, long before any engine's native stack is at risk. Calls of equal weight
//!   separated only by straight-line code share one addition, check and subtraction (every
//!   callee still sees the depth it would see alone).
//! - **Memory**: `memory.grow` past [`Limits::max_memory_pages`] traps with `memory_limit`.
//!
//! A trap raised by instrumentation stores its reason in [`TRAP_GLOBAL`] and executes
//! `unreachable`; engines read the global to name the trap.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasm_encoder::{
    ConstExpr, ExportKind, ExportSection, Function, GlobalSection, GlobalType, Instruction, Module,
    RawSection, ValType as EValType,
};
use wasmparser::{
    FuncValidatorAllocations, Operator, Parser, Payload, TypeRef, ValType, Validator, WasmFeatures,
};

use crate::abi::{IMPORT_MODULE, Import, Ty};
use crate::digest::{CodeId, Digest};
use crate::gas::GasSchedule;

/// Version of the instrumentation; part of every artifact cache key.
pub const INSTRUMENTER_VERSION: u32 = 6;

/// Bits of the canonical `f32` NaN, the only NaN a program can observe.
pub const CANONICAL_NAN_F32: u32 = 0x7fc0_0000;
/// Bits of the canonical `f64` NaN, the only NaN a program can observe.
pub const CANONICAL_NAN_F64: u64 = 0x7ff8_0000_0000_0000;

/// Export name of the gas counter.
pub const GAS_GLOBAL: &str = "__synor_gas";
/// Export name of the call-depth counter.
pub const DEPTH_GLOBAL: &str = "__synor_depth";
/// Export name of the trap reason.
pub const TRAP_GLOBAL: &str = "__synor_trap";

/// [`TRAP_GLOBAL`] value: out of gas.
pub const TRAP_OUT_OF_GAS: i32 = 1;
/// [`TRAP_GLOBAL`] value: call depth limit.
pub const TRAP_STACK_OVERFLOW: i32 = 2;
/// [`TRAP_GLOBAL`] value: memory limit.
pub const TRAP_MEMORY_LIMIT: i32 = 3;

/// The trap named by a value of [`TRAP_GLOBAL`], if it names one.
pub fn trap_reason(value: i32) -> Option<crate::abi::Trap> {
    use crate::abi::Trap;
    match value {
        TRAP_OUT_OF_GAS => Some(Trap::OutOfGas),
        TRAP_STACK_OVERFLOW => Some(Trap::StackOverflow),
        TRAP_MEMORY_LIMIT => Some(Trap::MemoryLimit),
        _ => None,
    }
}

/// Locals the instrumenter adds to every function (scratch values and the gas counter).
pub const SCRATCH_LOCALS: u32 = 5;

/// Most values the instrumentation pushes above a function's own operand stack.
const INSTRUMENTATION_HEIGHT: u64 = 16;

/// Most locals (parameters and the instrumenter's included) of a function the cold engine
/// accepts (wasmi's `LOCAL_VARIABLES_MAX`).
pub const ENGINE_MAX_LOCALS: u64 = 30_000;

/// Most value slots of one function's frame the cold engine accepts: wasmi addresses a frame's
/// slots with 16 bits and counts the locals twice (once as locals, once as the operand slots
/// reserved for them), so a frame needs `2 × locals + operand height` slots.
pub const ENGINE_MAX_FRAME_SLOTS: u64 = 65_535;

/// Largest body of an instrumented function, in bytes: wasmparser's limit, which every
/// engine's validator applies.
pub const ENGINE_MAX_FUNCTION_BYTES: u64 = 7_654_321;

/// The features every tier accepts identically.
pub const FEATURES: WasmFeatures = WasmFeatures::LIME1;

/// Resource limits checked at validation and enforced at run time.
///
/// The defaults sit inside every engine's own limits, so that no engine rejects or fails a
/// module the instrumenter accepted; whatever the configuration, [`instrument`] also enforces
/// the engines' fixed frame limits ([`ENGINE_MAX_LOCALS`], [`ENGINE_MAX_FRAME_SLOTS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Largest module accepted, in bytes.
    pub max_module_bytes: usize,
    /// Most 64 KiB pages of linear memory.
    pub max_memory_pages: u32,
    /// Most table elements.
    pub max_table_elements: u32,
    /// Most functions (imported and defined).
    pub max_functions: u32,
    /// Most locals in one function, its parameters included.
    pub max_locals: u32,
    /// Highest operand stack of one function (values on it at once).
    pub max_operand_height: u32,
    /// Most globals (defined and imported).
    pub max_globals: u32,
    /// Call depth limit, in frame weight units (see the module documentation).
    pub max_stack_units: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_module_bytes: 8 << 20,
            max_memory_pages: 1024,
            max_table_elements: 65_536,
            max_functions: 100_000,
            max_locals: 16_384,
            max_operand_height: 16_384,
            max_globals: 10_000,
            max_stack_units: 16_384,
        }
    }
}

/// Why a module was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InstrumentError {
    /// Not valid WebAssembly under the deterministic feature set.
    Invalid {
        /// The validator's message.
        message: String,
        /// Byte offset in the module.
        offset: usize,
    },
    /// A limit is exceeded.
    Limit {
        /// What is limited.
        what: &'static str,
        /// The module's value.
        value: u64,
        /// The limit.
        limit: u64,
    },
    /// An import that ABI v1 does not offer, or with the wrong signature.
    Import {
        /// The import's module.
        module: String,
        /// The import's name.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// An active segment does not fit in the memory or table it initialises: instantiating
    /// the module would trap.
    Segment {
        /// `data` or `element`.
        kind: &'static str,
        /// The segment's index in its section.
        index: usize,
        /// Where it ends (bytes or elements).
        end: u64,
        /// The initial size of its memory (bytes) or table (elements).
        size: u64,
    },
    /// An export uses a name reserved for the instrumenter.
    ReservedExport(String),
    /// A construct ABI v1 does not accept.
    Unsupported(&'static str),
    /// The gas schedule is outside its bounds ([`GasSchedule::validate`]).
    Schedule(crate::gas::ScheduleError),
    /// A CosmWasm contract (it has an `interface_version_*` export or an older marker) that
    /// CosmWasm's checks refuse: an old interface version, an unknown import, ...
    CosmWasm(crate::cosmwasm::CheckError),
}

impl fmt::Display for InstrumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstrumentError::Invalid { message, offset } => {
                write!(f, "invalid module at byte {offset}: {message}")
            }
            InstrumentError::Limit { what, value, limit } => {
                write!(f, "{what} is {value}, over the limit of {limit}")
            }
            InstrumentError::Import {
                module,
                name,
                reason,
            } => write!(f, "import {module}.{name}: {reason}"),
            InstrumentError::Segment {
                kind,
                index,
                end,
                size,
            } => write!(
                f,
                "{kind} segment {index} ends at {end}, beyond the initial size {size} of its \
                 {}: instantiation would trap",
                if *kind == "data" { "memory" } else { "table" }
            ),
            InstrumentError::ReservedExport(name) => {
                write!(f, "export `{name}` uses a name reserved for synor")
            }
            InstrumentError::Unsupported(what) => write!(f, "unsupported: {what}"),
            InstrumentError::Schedule(e) => e.fmt(f),
            InstrumentError::CosmWasm(e) => write!(f, "CosmWasm contract refused: {e}"),
        }
    }
}

impl core::error::Error for InstrumentError {}

fn invalid(e: wasmparser::BinaryReaderError) -> InstrumentError {
    InstrumentError::Invalid {
        message: e.message().to_string(),
        offset: e.offset() as usize,
    }
}

fn limit(what: &'static str, value: u64, limit: u64) -> Result<(), InstrumentError> {
    if value > limit {
        return Err(InstrumentError::Limit { what, value, limit });
    }
    Ok(())
}

/// A value type of an exported function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// `i32`.
    I32,
    /// `i64`.
    I64,
    /// `f32`.
    F32,
    /// `f64`.
    F64,
}

/// An exported function and its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedFunction {
    /// Export name.
    pub name: String,
    /// Parameter types.
    pub params: Vec<ValueType>,
    /// Result types.
    pub results: Vec<ValueType>,
}

/// A validated, instrumented module: what every engine compiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instrumented {
    /// Identity of the original module.
    pub code_id: CodeId,
    /// The instrumented module.
    pub bytes: Vec<u8>,
    /// blake3 of the instrumented module, every figure of the schedule, the run-time limits
    /// and the instrumenter version: what artifact caches key on.
    pub fingerprint: Digest,
    /// The exported functions.
    pub exports: Vec<ExportedFunction>,
    /// The ABI imports used, in import order (none for a CosmWasm contract).
    pub imports: Vec<Import>,
    /// A CosmWasm contract's interface (entry points, `env` imports, capabilities), as
    /// [`cosmwasm::check`](crate::cosmwasm::check) found it; `None` for synor's ABI.
    pub cosmwasm: Option<crate::cosmwasm::Interface>,
    /// Whether the module exports a linear memory named `memory`.
    pub exports_memory: bool,
    /// Gas every call pays before its instance is created, for the work instantiation does:
    /// initial memory pages (as `memory.grow` charges them), data segment bytes (as
    /// `memory.copy` charges them) and initial table elements.
    pub instantiation_gas: u64,
}

impl Instrumented {
    /// The exported function `name`.
    pub fn export(&self, name: &str) -> Option<&ExportedFunction> {
        self.exports.iter().find(|e| e.name == name)
    }
}

fn value_type(t: ValType) -> ValueType {
    match t {
        ValType::I64 => ValueType::I64,
        ValType::F32 => ValueType::F32,
        ValType::F64 => ValueType::F64,
        // The feature set admits no other types; i32 covers the rest.
        _ => ValueType::I32,
    }
}

/// Module facts gathered before the code is rewritten.
#[derive(Default)]
struct Info {
    /// Function types: (params, results).
    types: Vec<(Vec<ValType>, Vec<ValType>)>,
    /// Type index of every function, imports first.
    func_types: Vec<u32>,
    imported_funcs: u32,
    imported_globals: u32,
    defined_globals: u32,
    imports: Vec<Import>,
    exports_memory: bool,
    exports: Vec<(String, u32)>,
    /// Frame weight of every function (imports weigh one).
    weights: Vec<u32>,
    /// Largest weight of each type's functions, for indirect calls.
    type_weights: Vec<u32>,
    /// Initial pages of linear memory.
    memory_pages: u64,
    /// Initial table elements.
    table_elements: u64,
    /// Bytes of data segments.
    data_bytes: u64,
    /// Values of the defined `i32` globals whose initialiser is constant.
    global_values: Vec<Option<i32>>,
}

/// Checks a function's frame against the engines' fixed limits (see [`ENGINE_MAX_LOCALS`]),
/// counting the locals and operand values the instrumentation adds.
fn engine_frame(locals: u64, height: u64) -> Result<(), InstrumentError> {
    let locals = locals + u64::from(SCRATCH_LOCALS);
    limit(
        "locals in a function (engine limit)",
        locals,
        ENGINE_MAX_LOCALS,
    )?;
    limit(
        "value slots of a function's frame (engine limit)",
        2 * locals + height + INSTRUMENTATION_HEIGHT,
        ENGINE_MAX_FRAME_SLOTS,
    )
}

/// The value of an `i32` constant expression (extended-const arithmetic, wrapping, and
/// `global.get` of constant globals), or `None` when it is not one.
fn const_i32(expr: &wasmparser::ConstExpr<'_>, globals: &[Option<i32>]) -> Option<i32> {
    let mut stack: Vec<i32> = Vec::new();
    for op in expr.get_operators_reader() {
        match op.ok()? {
            Operator::I32Const { value } => stack.push(value),
            Operator::GlobalGet { global_index } => {
                stack.push((*globals.get(global_index as usize)?)?);
            }
            op @ (Operator::I32Add | Operator::I32Sub | Operator::I32Mul) => {
                let (b, a) = (stack.pop()?, stack.pop()?);
                stack.push(match op {
                    Operator::I32Add => a.wrapping_add(b),
                    Operator::I32Sub => a.wrapping_sub(b),
                    _ => a.wrapping_mul(b),
                });
            }
            Operator::End => break,
            _ => return None,
        }
    }
    match stack[..] {
        [value] => Some(value),
        _ => None,
    }
}

/// Checks that active segment `index` (`kind` "data" or "element") of `len` items at `offset`
/// fits in `size` (bytes of memory, elements of the table): a module whose instantiation would
/// trap is rejected instead, so that no engine ever fails to instantiate it.
fn segment_fits(
    kind: &'static str,
    index: usize,
    offset: &wasmparser::ConstExpr<'_>,
    len: u64,
    size: u64,
    info: &Info,
) -> Result<(), InstrumentError> {
    let Some(start) = const_i32(offset, &info.global_values) else {
        return Err(InstrumentError::Unsupported(
            "a segment offset that is not a constant expression",
        ));
    };
    let end = u64::from(start as u32) + len;
    if end > size {
        return Err(InstrumentError::Segment {
            kind,
            index,
            end,
            size,
        });
    }
    Ok(())
}

/// Validates `wasm` under the deterministic feature set and `limits`, and instruments it.
///
/// # Errors
/// The module is invalid, uses an unsupported feature or import, or exceeds a limit; the error
/// says which and where. Or `schedule` is outside its bounds ([`GasSchedule::validate`]), which
/// would let charges wrap.
pub fn instrument(
    wasm: &[u8],
    schedule: &GasSchedule,
    limits: &Limits,
) -> Result<Instrumented, InstrumentError> {
    schedule.validate().map_err(InstrumentError::Schedule)?;
    limit(
        "module size",
        wasm.len() as u64,
        limits.max_module_bytes as u64,
    )?;
    let cosmwasm = crate::cosmwasm::detect(wasm).map_err(InstrumentError::CosmWasm)?;
    let info = analyse(wasm, limits, cosmwasm.is_some())?;
    let bytes = rewrite(wasm, &info, schedule, limits)?;
    // The output must be valid too: a check against instrumenter bugs, not user input.
    Validator::new_with_features(FEATURES)
        .validate_all(&bytes)
        .map_err(invalid)?;
    let mut fingerprint = blake3::Hasher::new();
    fingerprint.update(&bytes);
    fingerprint.update(&INSTRUMENTER_VERSION.to_le_bytes());
    schedule.digest_into(&mut fingerprint);
    fingerprint.update(&limits.max_memory_pages.to_le_bytes());
    fingerprint.update(&limits.max_stack_units.to_le_bytes());
    let exports = info
        .exports
        .iter()
        .map(|(name, func)| {
            let (params, results) = &info.types[info.func_types[*func as usize] as usize];
            ExportedFunction {
                name: name.clone(),
                params: params.iter().copied().map(value_type).collect(),
                results: results.iter().copied().map(value_type).collect(),
            }
        })
        .collect();
    let instantiation_gas = info
        .memory_pages
        .saturating_mul(schedule.memory_grow_page)
        .saturating_add(
            info.data_bytes
                .div_ceil(8)
                .saturating_mul(schedule.bulk_per_8_bytes),
        )
        .saturating_add(
            info.table_elements
                .saturating_mul(schedule.table_per_element),
        );
    Ok(Instrumented {
        code_id: Digest::of(wasm),
        instantiation_gas,
        bytes,
        fingerprint: Digest(*fingerprint.finalize().as_bytes()),
        exports,
        imports: info.imports,
        cosmwasm,
        exports_memory: info.exports_memory,
    })
}

fn analyse(wasm: &[u8], limits: &Limits, cosmwasm: bool) -> Result<Info, InstrumentError> {
    let mut info = Info::default();
    let mut validator = Validator::new_with_features(FEATURES);
    let mut allocs = FuncValidatorAllocations::default();
    let mut defined = 0u32;
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(invalid)?;
        let valid = validator.payload(&payload).map_err(invalid)?;
        match &payload {
            Payload::TypeSection(reader) => {
                for group in reader.clone() {
                    for sub in group.map_err(invalid)?.into_types() {
                        let f = sub.unwrap_func();
                        info.types.push((f.params().to_vec(), f.results().to_vec()));
                    }
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.clone().into_imports() {
                    let import = import.map_err(invalid)?;
                    let err = |reason| InstrumentError::Import {
                        module: import.module.to_string(),
                        name: import.name.to_string(),
                        reason,
                    };
                    let TypeRef::Func(ty) = import.ty else {
                        return Err(err("only functions may be imported"));
                    };
                    if cosmwasm {
                        // `cosmwasm::check` accepted it: an `env` import of [`CwImport`]
                        // with its exact signature.
                        info.func_types.push(ty);
                        info.imported_funcs += 1;
                        continue;
                    }
                    if import.module != IMPORT_MODULE {
                        return Err(err("unknown import module (ABI v1 offers `synor`)"));
                    }
                    let abi = Import::by_name(import.name).ok_or(err("not in ABI v1"))?;
                    let (params, results) = &info.types[ty as usize];
                    let want = |t: &[Ty]| -> Vec<ValType> {
                        t.iter()
                            .map(|t| match t {
                                Ty::I32 => ValType::I32,
                                Ty::I64 => ValType::I64,
                            })
                            .collect()
                    };
                    if *params != want(abi.params()) || *results != want(abi.results()) {
                        return Err(err("signature differs from ABI v1"));
                    }
                    info.imports.push(abi);
                    info.func_types.push(ty);
                    info.imported_funcs += 1;
                }
            }
            Payload::FunctionSection(reader) => {
                for ty in reader.clone() {
                    info.func_types.push(ty.map_err(invalid)?);
                }
                limit(
                    "function count",
                    info.func_types.len() as u64,
                    limits.max_functions.into(),
                )?;
            }
            Payload::TableSection(reader) => {
                for table in reader.clone() {
                    let table = table.map_err(invalid)?;
                    limit(
                        "table size",
                        table.ty.initial,
                        limits.max_table_elements.into(),
                    )?;
                    info.table_elements = info.table_elements.saturating_add(table.ty.initial);
                }
            }
            Payload::MemorySection(reader) => {
                for memory in reader.clone() {
                    let memory = memory.map_err(invalid)?;
                    limit(
                        "initial memory pages",
                        memory.initial,
                        limits.max_memory_pages.into(),
                    )?;
                    info.memory_pages = info.memory_pages.saturating_add(memory.initial);
                }
            }
            Payload::GlobalSection(reader) => {
                info.defined_globals = reader.count();
                for global in reader.clone() {
                    let global = global.map_err(invalid)?;
                    let value = match global.ty.content_type {
                        ValType::I32 => const_i32(&global.init_expr, &info.global_values),
                        _ => None,
                    };
                    info.global_values.push(value);
                }
                limit(
                    "global count",
                    u64::from(reader.count()),
                    limits.max_globals.into(),
                )?;
            }
            Payload::StartSection { .. } => {
                return Err(InstrumentError::Unsupported(
                    "a start function (ABI v1 contracts initialise in an exported entry point)",
                ));
            }
            Payload::ExportSection(reader) => {
                for export in reader.clone() {
                    let export = export.map_err(invalid)?;
                    if export.name.starts_with("__synor") {
                        return Err(InstrumentError::ReservedExport(export.name.to_string()));
                    }
                    match export.kind {
                        wasmparser::ExternalKind::Func => {
                            info.exports.push((export.name.to_string(), export.index))
                        }
                        wasmparser::ExternalKind::Memory if export.name == "memory" => {
                            info.exports_memory = true
                        }
                        _ => {}
                    }
                }
            }
            Payload::DataSection(reader) => {
                for (i, data) in reader.clone().into_iter().enumerate() {
                    let data = data.map_err(invalid)?;
                    let len = data.data.len() as u64;
                    info.data_bytes = info.data_bytes.saturating_add(len);
                    if let wasmparser::DataKind::Active { offset_expr, .. } = data.kind {
                        let memory = info.memory_pages.saturating_mul(65_536);
                        segment_fits("data", i, &offset_expr, len, memory, &info)?;
                    }
                }
            }
            Payload::ElementSection(reader) => {
                for (i, element) in reader.clone().into_iter().enumerate() {
                    let element = element.map_err(invalid)?;
                    let len = u64::from(match &element.items {
                        wasmparser::ElementItems::Functions(r) => r.count(),
                        wasmparser::ElementItems::Expressions(_, r) => r.count(),
                    });
                    if let wasmparser::ElementKind::Active { offset_expr, .. } = element.kind {
                        segment_fits("element", i, &offset_expr, len, info.table_elements, &info)?;
                    }
                }
            }
            Payload::CodeSectionEntry(body) => {
                let wasmparser::ValidPayload::Func(func, _) = valid else {
                    continue;
                };
                let mut v = func.into_validator(core::mem::take(&mut allocs));
                let ty = info.func_types[(info.imported_funcs + defined) as usize];
                let params = info.types[ty as usize].0.len() as u64;
                // Parameters are locals too, for every engine.
                let mut locals = params;
                let mut reader = body.get_locals_reader().map_err(invalid)?;
                for _ in 0..reader.get_count() {
                    let offset = reader.original_position();
                    let (count, ty) = reader.read().map_err(invalid)?;
                    locals += u64::from(count);
                    limit("locals in a function", locals, limits.max_locals.into())?;
                    v.define_locals(offset, count, ty).map_err(invalid)?;
                }
                let mut ops = body.get_operators_reader().map_err(invalid)?;
                let mut max_height = 0u32;
                while !ops.eof() {
                    let (op, offset) = ops.read_with_offset().map_err(invalid)?;
                    v.op(offset, &op).map_err(invalid)?;
                    max_height = max_height.max(v.operand_stack_height());
                }
                ops.finish().map_err(invalid)?;
                limit(
                    "operand stack height in a function",
                    max_height.into(),
                    limits.max_operand_height.into(),
                )?;
                allocs = v.into_allocations();
                engine_frame(locals, max_height.into())?;
                let slots = locals + u64::from(max_height);
                info.weights
                    .push(1 + slots.div_ceil(4).min(u64::from(u32::MAX / 2)) as u32);
                defined += 1;
            }
            _ => {}
        }
    }
    // Imports weigh one unit: host calls do not recurse into wasm.
    let mut weights = alloc::vec![1u32; info.imported_funcs as usize];
    weights.append(&mut info.weights);
    info.weights = weights;
    info.type_weights = alloc::vec![1u32; info.types.len()];
    for (f, ty) in info.func_types.iter().enumerate() {
        let w = &mut info.type_weights[*ty as usize];
        *w = (*w).max(info.weights[f]);
    }
    Ok(info)
}

/// Where a section goes in the module, to insert new ones in order.
fn rank(id: u8) -> u8 {
    match id {
        1..=5 => id,
        13 => 6,
        6 => 7,
        7 => 8,
        8 => 9,
        9 => 10,
        12 => 11,
        10 => 12,
        11 => 13,
        _ => 0,
    }
}

const GLOBAL_RANK: u8 = 7;
const EXPORT_RANK: u8 = 8;

fn rewrite(
    wasm: &[u8],
    info: &Info,
    schedule: &GasSchedule,
    limits: &Limits,
) -> Result<Vec<u8>, InstrumentError> {
    let gas = info.imported_globals + info.defined_globals;
    let globals = Globals {
        gas,
        depth: gas + 1,
        trap: gas + 2,
    };
    let mut module = Module::new();
    let mut globals_done = false;
    let mut exports_done = false;
    let mut code = wasm_encoder::CodeSection::new();
    let mut func_index = info.imported_funcs;
    let emit_globals = |module: &mut Module, existing: Option<wasmparser::GlobalSectionReader>| {
        let mut section = GlobalSection::new();
        if let Some(reader) = existing {
            for g in reader {
                let g = g.map_err(invalid)?;
                let ty = RoundtripReencoder
                    .global_type(g.ty)
                    .map_err(|e| reencode_error(&e))?;
                let init = RoundtripReencoder
                    .const_expr(g.init_expr)
                    .map_err(|e| reencode_error(&e))?;
                section.global(ty, &init);
            }
        }
        let mutable = |val_type| GlobalType {
            val_type,
            mutable: true,
            shared: false,
        };
        section.global(mutable(EValType::I64), &ConstExpr::i64_const(0));
        section.global(mutable(EValType::I32), &ConstExpr::i32_const(0));
        section.global(mutable(EValType::I32), &ConstExpr::i32_const(0));
        module.section(&section);
        Ok::<(), InstrumentError>(())
    };
    let emit_exports = |module: &mut Module, existing: Option<wasmparser::ExportSectionReader>| {
        let mut section = ExportSection::new();
        if let Some(reader) = existing {
            for e in reader {
                let e = e.map_err(invalid)?;
                let kind = RoundtripReencoder
                    .export_kind(e.kind)
                    .map_err(|e| reencode_error(&e))?;
                section.export(e.name, kind, e.index);
            }
        }
        section.export(GAS_GLOBAL, ExportKind::Global, globals.gas);
        section.export(DEPTH_GLOBAL, ExportKind::Global, globals.depth);
        section.export(TRAP_GLOBAL, ExportKind::Global, globals.trap);
        module.section(&section);
        Ok::<(), InstrumentError>(())
    };
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(invalid)?;
        let Some((id, range)) = payload.as_section() else {
            if let Payload::CodeSectionEntry(body) = payload {
                let f = rewrite_body(&body, func_index, info, &globals, schedule, limits)?;
                limit(
                    "bytes of an instrumented function (engine limit)",
                    f.byte_len() as u64,
                    ENGINE_MAX_FUNCTION_BYTES,
                )?;
                code.function(&f);
                func_index += 1;
                if func_index as usize == info.func_types.len() {
                    module.section(&code);
                }
            }
            continue;
        };
        let r = rank(id);
        if r > GLOBAL_RANK && !globals_done {
            emit_globals(&mut module, None)?;
            globals_done = true;
        }
        if r > EXPORT_RANK && !exports_done {
            emit_exports(&mut module, None)?;
            exports_done = true;
        }
        match payload {
            Payload::GlobalSection(reader) => {
                emit_globals(&mut module, Some(reader))?;
                globals_done = true;
            }
            Payload::ExportSection(reader) => {
                if !globals_done {
                    emit_globals(&mut module, None)?;
                    globals_done = true;
                }
                emit_exports(&mut module, Some(reader))?;
                exports_done = true;
            }
            Payload::CodeSectionStart { .. } => {}
            Payload::CustomSection(_) => {}
            _ => {
                module.section(&RawSection {
                    id,
                    data: &wasm[range.start as usize..range.end as usize],
                });
            }
        }
    }
    if !globals_done {
        emit_globals(&mut module, None)?;
    }
    if !exports_done {
        emit_exports(&mut module, None)?;
    }
    Ok(module.finish())
}

fn reencode_error<E: fmt::Debug>(e: &E) -> InstrumentError {
    InstrumentError::Invalid {
        message: format!("cannot re-encode: {e:?}"),
        offset: 0,
    }
}

/// Indices of the inserted globals.
struct Globals {
    gas: u32,
    depth: u32,
    trap: u32,
}

/// Indices of the scratch locals added to every function.
struct Scratch {
    i64: u32,
    i32: u32,
    f32: u32,
    f64: u32,
    /// The function's gas counter.
    gas: u32,
    /// Whether the function keeps gas in [`Scratch::gas`] (functions with loops) or charges the
    /// global directly (straight-line functions, where calls outnumber charges).
    local_gas: bool,
}

fn op_cost(op: &Operator<'_>, s: &GasSchedule) -> u64 {
    use Operator as O;
    match op {
        O::I32Load { .. }
        | O::I64Load { .. }
        | O::F32Load { .. }
        | O::F64Load { .. }
        | O::I32Load8S { .. }
        | O::I32Load8U { .. }
        | O::I32Load16S { .. }
        | O::I32Load16U { .. }
        | O::I64Load8S { .. }
        | O::I64Load8U { .. }
        | O::I64Load16S { .. }
        | O::I64Load16U { .. }
        | O::I64Load32S { .. }
        | O::I64Load32U { .. }
        | O::I32Store { .. }
        | O::I64Store { .. }
        | O::F32Store { .. }
        | O::F64Store { .. }
        | O::I32Store8 { .. }
        | O::I32Store16 { .. }
        | O::I64Store8 { .. }
        | O::I64Store16 { .. }
        | O::I64Store32 { .. } => s.memory_access,
        O::I32DivS
        | O::I32DivU
        | O::I32RemS
        | O::I32RemU
        | O::I64DivS
        | O::I64DivU
        | O::I64RemS
        | O::I64RemU
        | O::F32Div
        | O::F64Div
        | O::F32Sqrt
        | O::F64Sqrt => s.divide,
        O::Call { .. } => s.call,
        O::CallIndirect { .. } => s.call_indirect,
        // Structure costs nothing by itself: what runs inside is charged.
        O::Block { .. } | O::Loop { .. } | O::End | O::Else | O::Nop => 0,
        _ => s.base,
    }
}

/// Where a float's bits become observable, so that a NaN must be canonical there.
enum Observe {
    /// `f32.store` / `f64.store`: the value is canonicalised before.
    Store(u8, wasmparser::MemArg),
    /// `i32.reinterpret_f32` / `i64.reinterpret_f64`: the integer is canonicalised after.
    Reinterpret(u8),
    /// `copysign`: the sign operand (on top) is canonicalised before.
    SignOperand(u8),
}

fn observe(op: &Operator<'_>) -> Option<Observe> {
    use Operator as O;
    match op {
        O::F32Store { memarg } => Some(Observe::Store(32, *memarg)),
        O::F64Store { memarg } => Some(Observe::Store(64, *memarg)),
        O::I32ReinterpretF32 => Some(Observe::Reinterpret(32)),
        O::I64ReinterpretF64 => Some(Observe::Reinterpret(64)),
        O::F32Copysign => Some(Observe::SignOperand(32)),
        O::F64Copysign => Some(Observe::SignOperand(64)),
        _ => None,
    }
}

/// Emits code that stores `reason` in the trap global and traps, after saving the gas left.
fn trap(f: &mut Function, g: &Globals, s: &Scratch, reason: i32) {
    flush(f, g, s);
    f.instruction(&Instruction::I32Const(reason));
    f.instruction(&Instruction::GlobalSet(g.trap));
    f.instruction(&Instruction::Unreachable);
}

/// Copies the function's gas counter to the global (before calls, returns and traps).
fn flush(f: &mut Function, g: &Globals, s: &Scratch) {
    if s.local_gas {
        f.instruction(&Instruction::LocalGet(s.gas));
        f.instruction(&Instruction::GlobalSet(g.gas));
    }
}

/// Copies the global gas counter to the function's (at entry and after calls).
fn reload(f: &mut Function, g: &Globals, s: &Scratch) {
    if s.local_gas {
        f.instruction(&Instruction::GlobalGet(g.gas));
        f.instruction(&Instruction::LocalSet(s.gas));
    }
}

/// Pushes the gas left.
fn gas_get(f: &mut Function, g: &Globals, s: &Scratch) {
    f.instruction(&if s.local_gas {
        Instruction::LocalGet(s.gas)
    } else {
        Instruction::GlobalGet(g.gas)
    });
}

/// Emits a charge of `cost` gas, trapping when the gas left is negative if `check`.
fn charge_static(f: &mut Function, g: &Globals, s: &Scratch, cost: u64, check: bool) {
    if !s.local_gas {
        f.instruction(&Instruction::GlobalGet(g.gas));
        f.instruction(&Instruction::I64Const(cost as i64));
        if check {
            charge_tail(f, g, s);
        } else {
            f.instruction(&Instruction::I64Sub);
            f.instruction(&Instruction::GlobalSet(g.gas));
        }
        return;
    }
    let subtract = |f: &mut Function| {
        f.instruction(&Instruction::LocalGet(s.gas));
        f.instruction(&Instruction::I64Const(cost as i64));
        f.instruction(&Instruction::I64Sub);
        f.instruction(&Instruction::LocalSet(s.gas));
    };
    if check {
        // Compare before subtracting (`gas < cost`, the same condition as `gas - cost < 0`
        // where no subtraction overflows): a compiler emits one fused compare-and-branch and
        // one subtraction, where testing the difference computes it twice.
        f.instruction(&Instruction::LocalGet(s.gas));
        f.instruction(&Instruction::I64Const(cost as i64));
        f.instruction(&Instruction::I64LtS);
        f.instruction(&Instruction::If(wasm_encoder::BlockType::Empty));
        subtract(f);
        trap(f, g, s, TRAP_OUT_OF_GAS);
        f.instruction(&Instruction::End);
    }
    subtract(f);
}

/// With the gas left and a cost on the stack: subtracts, traps when negative.
fn charge_tail(f: &mut Function, g: &Globals, s: &Scratch) {
    f.instruction(&Instruction::I64Sub);
    f.instruction(&Instruction::LocalTee(s.gas));
    if !s.local_gas {
        f.instruction(&Instruction::GlobalSet(g.gas));
        f.instruction(&Instruction::LocalGet(s.gas));
    }
    f.instruction(&Instruction::I64Const(0));
    f.instruction(&Instruction::I64LtS);
    f.instruction(&Instruction::If(wasm_encoder::BlockType::Empty));
    trap(f, g, s, TRAP_OUT_OF_GAS);
    f.instruction(&Instruction::End);
}

/// Charges a counted loop's every trip, trapping when the gas left is short.
fn charge_counted(f: &mut Function, g: &Globals, s: &Scratch, c: &counted::Counted) {
    gas_get(f, g, s);
    let bound = match c.bound {
        counted::Bound::Local(l) => Instruction::LocalGet(l),
        counted::Bound::Const(k) => Instruction::I32Const(k),
    };
    let var = Instruction::LocalGet(c.var);
    // Trips (less the first, for a do-while) = (e - v) counting up, (v - e) counting down.
    let (x, y) = if c.up { (bound, var) } else { (var, bound) };
    f.instruction(&x);
    f.instruction(&y);
    f.instruction(&Instruction::I32Sub);
    if !c.test_first {
        f.instruction(&Instruction::I32Const(1));
        f.instruction(&Instruction::I32Sub);
    }
    f.instruction(&Instruction::I64ExtendI32U);
    f.instruction(&Instruction::I64Const(c.per_trip as i64));
    f.instruction(&Instruction::I64Mul);
    f.instruction(&Instruction::I64Const(c.once as i64));
    f.instruction(&Instruction::I64Add);
    charge_tail(f, g, s);
}

/// With an `i32` count on the stack: charges `per` gas per unit of `count >> shift`, leaving
/// the count on the stack.
fn charge_dynamic(f: &mut Function, g: &Globals, s: &Scratch, per: u64, shift: i64) {
    f.instruction(&Instruction::LocalSet(s.i32));
    gas_get(f, g, s);
    f.instruction(&Instruction::LocalGet(s.i32));
    f.instruction(&Instruction::I64ExtendI32U);
    if shift > 0 {
        f.instruction(&Instruction::I64Const(shift));
        f.instruction(&Instruction::I64ShrU);
    }
    f.instruction(&Instruction::I64Const(per as i64));
    f.instruction(&Instruction::I64Mul);
    charge_tail(f, g, s);
    f.instruction(&Instruction::LocalGet(s.i32));
}

/// Adds `weight` to the call depth, trapping past the limit.
fn depth_enter(f: &mut Function, g: &Globals, s: &Scratch, weight: u32, limit: u32) {
    f.instruction(&Instruction::GlobalGet(g.depth));
    f.instruction(&Instruction::I32Const(weight as i32));
    f.instruction(&Instruction::I32Add);
    f.instruction(&Instruction::LocalTee(s.i32));
    f.instruction(&Instruction::GlobalSet(g.depth));
    f.instruction(&Instruction::LocalGet(s.i32));
    f.instruction(&Instruction::I32Const(limit as i32));
    f.instruction(&Instruction::I32GtU);
    f.instruction(&Instruction::If(wasm_encoder::BlockType::Empty));
    trap(f, g, s, TRAP_STACK_OVERFLOW);
    f.instruction(&Instruction::End);
}

/// A charge that depends on an instruction's operand, made when it runs (on top of its static
/// cost).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OperandCharge {
    /// `memory.grow`: per page requested.
    Grow,
    /// `memory.fill`, `memory.copy`: per 8 bytes.
    Bulk,
}

/// The operand-dependent charge of `op`, if it has one: the one list of such instructions, for
/// the rewrite that charges them and for counted loops, whose bodies must not contain them.
fn operand_charge(op: &Operator<'_>) -> Option<OperandCharge> {
    match op {
        Operator::MemoryGrow { .. } => Some(OperandCharge::Grow),
        Operator::MemoryFill { .. } | Operator::MemoryCopy { .. } => Some(OperandCharge::Bulk),
        _ => None,
    }
}

/// Whether `op` neither transfers control nor calls: the depth may stay raised over it.
fn straight_line(op: &Operator<'_>) -> bool {
    !matches!(
        op,
        Operator::Block { .. }
            | Operator::Loop { .. }
            | Operator::If { .. }
            | Operator::Else
            | Operator::End
            | Operator::Br { .. }
            | Operator::BrIf { .. }
            | Operator::BrTable { .. }
            | Operator::Return
            | Operator::Unreachable
            | Operator::Call { .. }
            | Operator::CallIndirect { .. }
            | Operator::ReturnCall { .. }
            | Operator::ReturnCallIndirect { .. }
    )
}

fn depth_leave(f: &mut Function, g: &Globals, weight: u32) {
    f.instruction(&Instruction::GlobalGet(g.depth));
    f.instruction(&Instruction::I32Const(weight as i32));
    f.instruction(&Instruction::I32Sub);
    f.instruction(&Instruction::GlobalSet(g.depth));
}

/// Whether keeping gas in a local pays: it saves a global load and store per charged segment
/// and costs both around every call, so it pays when segments inside loops (the code that
/// runs most) outnumber calls inside loops.
fn local_gas_pays(ops: &[Operator<'_>]) -> bool {
    let (mut loops, mut open) = (0u32, Vec::new());
    let (mut charges, mut calls) = (0u32, 0u32);
    for op in ops {
        match op {
            Operator::Loop { .. } => {
                open.push(true);
                loops += 1;
                charges += 1;
            }
            Operator::Block { .. } => open.push(false),
            Operator::If { .. } => {
                open.push(false);
                charges += u32::from(loops > 0);
            }
            Operator::Else => charges += u32::from(loops > 0),
            Operator::End => {
                if open.pop() == Some(true) {
                    loops -= 1;
                }
                charges += u32::from(loops > 0);
            }
            Operator::Call { .. } | Operator::CallIndirect { .. } => calls += u32::from(loops > 0),
            _ => {}
        }
    }
    charges > calls
}

/// Segment costs by where each segment starts (an index into `ops`): at 0 and after every
/// loop, if, else and end.
fn segments(ops: &[Operator<'_>], schedule: &GasSchedule) -> BTreeMap<usize, u64> {
    let mut starts = BTreeMap::new();
    let mut start = 0usize;
    let mut cost = 0u64;
    for (i, op) in ops.iter().enumerate() {
        cost += op_cost(op, schedule);
        if matches!(
            op,
            Operator::Loop { .. } | Operator::If { .. } | Operator::Else | Operator::End
        ) {
            starts.insert(start, cost);
            start = i + 1;
            cost = 0;
        }
    }
    starts.insert(start, cost);
    starts
}

fn rewrite_body(
    body: &wasmparser::FunctionBody<'_>,
    func_index: u32,
    info: &Info,
    g: &Globals,
    schedule: &GasSchedule,
    limits: &Limits,
) -> Result<Function, InstrumentError> {
    let ty = info.func_types[func_index as usize];
    let params = info.types[ty as usize].0.len() as u32;
    let mut locals: Vec<(u32, EValType)> = Vec::new();
    let mut count = params;
    for local in body.get_locals_reader().map_err(invalid)? {
        let (n, t) = local.map_err(invalid)?;
        locals.push((
            n,
            RoundtripReencoder
                .val_type(t)
                .map_err(|e| reencode_error(&e))?,
        ));
        count += n;
    }
    let s = Scratch {
        i64: count,
        i32: count + 1,
        f32: count + 2,
        f64: count + 3,
        gas: count + 4,
        local_gas: false,
    };
    locals.extend([
        (1, EValType::I64),
        (1, EValType::I32),
        (1, EValType::F32),
        (1, EValType::F64),
        (1, EValType::I64),
    ]);
    let mut ops = Vec::new();
    for op in body.get_operators_reader().map_err(invalid)? {
        ops.push(op.map_err(invalid)?);
    }
    let s = Scratch {
        local_gas: local_gas_pays(&ops),
        ..s
    };
    let mut starts = segments(&ops, schedule);
    // Loops charged once, before their first trip, by their trip count: the segments they
    // pay for are charged (and checked) nowhere else.
    let counted = counted::find(&ops, &starts);
    for c in counted.values() {
        for p in c.prepaid {
            starts.remove(&p);
        }
    }
    let mut f = Function::new(locals);
    // In a function with loops, gas lives in a local while the function runs (a register,
    // where the global would be a load and a store per segment); the global is brought up to
    // date before every call, return and trap, and read back after every call. A function
    // without loops charges few segments per call, so it charges the global directly.
    reload(&mut f, g, &s);
    // Open blocks: a branch to depth `nesting` leaves the function.
    let mut nesting = 0u32;
    // Weight still added to the depth after a call: calls of the same weight in one
    // straight-line stretch (fib's `f(n - 1) + f(n - 2)`) share one enter, check and leave.
    // The callees see the same depth either way; the depth is left raised only over
    // instructions that cannot branch or return.
    let mut raised: Option<u32> = None;
    // Whether the segment starting here is checked: where code can run again without passing
    // another check (the function's entry, loop headers).
    let mut header = true;
    for (i, op) in ops.into_iter().enumerate() {
        let check = core::mem::replace(&mut header, matches!(op, Operator::Loop { .. }));
        let weight = match &op {
            Operator::Call { function_index } => Some(info.weights[*function_index as usize]),
            Operator::CallIndirect { type_index, .. } => {
                Some(info.type_weights[*type_index as usize])
            }
            _ => None,
        };
        if let Some(r) = raised
            && (weight.is_some_and(|w| w != r) || weight.is_none() && !straight_line(&op))
        {
            depth_leave(&mut f, g, r);
            raised = None;
        }
        // A segment's charge goes before its first instruction (for a segment opened by a
        // structured instruction, right after that instruction).
        // Every cycle passes a loop header, so a check there even of nothing bounds how far
        // a loop runs past its gas (`loop (loop) br 0` charges only after the inner loop).
        if let Some(&c) = starts.get(&i)
            && (c > 0 || check)
        {
            charge_static(&mut f, g, &s, c, check);
        }
        if let Some(c) = counted.get(&i) {
            charge_counted(&mut f, g, &s, c);
        }
        match &op {
            Operator::Block { .. } | Operator::Loop { .. } | Operator::If { .. } => nesting += 1,
            Operator::End if nesting == 0 => flush(&mut f, g, &s),
            Operator::End => nesting -= 1,
            Operator::Return | Operator::Unreachable => flush(&mut f, g, &s),
            Operator::Br { relative_depth } | Operator::BrIf { relative_depth }
                if *relative_depth == nesting =>
            {
                flush(&mut f, g, &s)
            }
            Operator::BrTable { targets } => {
                let leaves = targets.default() == nesting
                    || targets.targets().any(|t| t.is_ok_and(|t| t == nesting));
                if leaves {
                    flush(&mut f, g, &s);
                }
            }
            Operator::Call { .. } | Operator::CallIndirect { .. } => {
                let w = weight.unwrap_or(1);
                flush(&mut f, g, &s);
                if raised.is_none() {
                    depth_enter(&mut f, g, &s, w, limits.max_stack_units);
                    raised = Some(w);
                }
                emit(&mut f, op)?;
                reload(&mut f, g, &s);
                continue;
            }
            _ => {}
        }
        match operand_charge(&op) {
            Some(OperandCharge::Grow) => {
                charge_dynamic(&mut f, g, &s, schedule.memory_grow_page, 0);
                // Pages after growth, in 64 bits so that no request wraps around.
                f.instruction(&Instruction::I64ExtendI32U);
                f.instruction(&Instruction::MemorySize(0));
                f.instruction(&Instruction::I64ExtendI32U);
                f.instruction(&Instruction::I64Add);
                f.instruction(&Instruction::I64Const(limits.max_memory_pages.into()));
                f.instruction(&Instruction::I64GtU);
                f.instruction(&Instruction::If(wasm_encoder::BlockType::Empty));
                trap(&mut f, g, &s, TRAP_MEMORY_LIMIT);
                f.instruction(&Instruction::End);
                f.instruction(&Instruction::LocalGet(s.i32));
            }
            Some(OperandCharge::Bulk) => {
                charge_dynamic(&mut f, g, &s, schedule.bulk_per_8_bytes, 3);
            }
            None => {}
        }
        match observe(&op) {
            None => emit(&mut f, op)?,
            Some(Observe::Store(width, memarg)) => {
                let memarg = RoundtripReencoder
                    .mem_arg(memarg)
                    .map_err(|e| reencode_error(&e))?;
                canonicalize(&mut f, &s, width);
                f.instruction(&if width == 32 {
                    Instruction::F32Store(memarg)
                } else {
                    Instruction::F64Store(memarg)
                });
            }
            Some(Observe::Reinterpret(width)) => {
                emit(&mut f, op)?;
                canonicalize_bits(&mut f, &s, width);
            }
            Some(Observe::SignOperand(width)) => {
                canonicalize(&mut f, &s, width);
                emit(&mut f, op)?;
            }
        }
    }
    Ok(f)
}

fn emit(f: &mut Function, op: Operator<'_>) -> Result<(), InstrumentError> {
    let ins = RoundtripReencoder
        .instruction(op)
        .map_err(|e| reencode_error(&e))?;
    f.instruction(&ins);
    Ok(())
}

/// Replaces the float on the stack by the canonical NaN when it is a NaN. A number skips the
/// replacement by a branch (`x >= -inf`: one compare and one jump on x86), so what uses the
/// value (a store) does not wait for the compare as it would through a `select`.
fn canonicalize(f: &mut Function, s: &Scratch, width: u8) {
    let (local, compare, canonical) = if width == 32 {
        (
            s.f32,
            [
                Instruction::F32Const(f32::NEG_INFINITY.into()),
                Instruction::F32Ge,
            ],
            Instruction::F32Const(f32::from_bits(CANONICAL_NAN_F32).into()),
        )
    } else {
        (
            s.f64,
            [
                Instruction::F64Const(f64::NEG_INFINITY.into()),
                Instruction::F64Ge,
            ],
            Instruction::F64Const(f64::from_bits(CANONICAL_NAN_F64).into()),
        )
    };
    f.instruction(&Instruction::LocalSet(local));
    f.instruction(&Instruction::Block(wasm_encoder::BlockType::Empty));
    f.instruction(&Instruction::LocalGet(local));
    for ins in &compare {
        f.instruction(ins);
    }
    f.instruction(&Instruction::BrIf(0));
    f.instruction(&canonical);
    f.instruction(&Instruction::LocalSet(local));
    f.instruction(&Instruction::End);
    f.instruction(&Instruction::LocalGet(local));
}

/// Replaces the float bits (as an integer) on the stack by the canonical NaN's when they are a
/// NaN's: integer compare and select.
fn canonicalize_bits(f: &mut Function, s: &Scratch, width: u8) {
    if width == 32 {
        f.instruction(&Instruction::LocalSet(s.i32));
        f.instruction(&Instruction::I32Const(CANONICAL_NAN_F32 as i32));
        f.instruction(&Instruction::LocalGet(s.i32));
        f.instruction(&Instruction::LocalGet(s.i32));
        f.instruction(&Instruction::I32Const(0x7fff_ffff));
        f.instruction(&Instruction::I32And);
        f.instruction(&Instruction::I32Const(0x7f80_0000));
        f.instruction(&Instruction::I32GtU);
    } else {
        f.instruction(&Instruction::LocalSet(s.i64));
        f.instruction(&Instruction::I64Const(CANONICAL_NAN_F64 as i64));
        f.instruction(&Instruction::LocalGet(s.i64));
        f.instruction(&Instruction::LocalGet(s.i64));
        f.instruction(&Instruction::I64Const(0x7fff_ffff_ffff_ffff));
        f.instruction(&Instruction::I64And);
        f.instruction(&Instruction::I64Const(0x7ff0_0000_0000_0000));
        f.instruction(&Instruction::I64GtU);
    }
    f.instruction(&Instruction::Select);
}

mod counted;
#[cfg(test)]
mod tests;
