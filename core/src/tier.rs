//! Tiered execution: the engine boundary, and the policy that moves contracts between tiers.
//!
//! Three tiers run the same [instrumented](crate::instrument) module: **cold** (an interpreter,
//! nothing to compile), **warm** (a baseline compiler, fast to compile, slower code) and **hot**
//! (an optimising compiler). Gas, traps and results come from the instrumented module and from
//! [`CallContext`], never from the engine, so which tier runs a call is invisible to consensus.
//!
//! [`Tiering`] is the tier manager's state machine, threadless so that hosts choose how to
//! compile in the background:
//!
//! 1. [`Tiering::select`] gives the best compiled module held for a contract (the caller keeps
//!    its `Arc` for the whole call, so a module swapped or evicted meanwhile finishes the calls
//!    already running on it).
//! 2. After the call, [`Tiering::record`] counts the call and its gas; when a promotion pays,
//!    it returns the tier to compile, at most once at a time per contract.
//! 3. The host compiles on a background thread and hands the module to [`Tiering::install`].
//!
//! # Policy
//!
//! Promotion is a ski-rental decision: compile the next tier once the gas already spent in
//! lower tiers would have paid for the compilation. Compile time grows with the module's size,
//! execution time with gas, so a contract is promoted to tier *t* when its accumulated gas
//! reaches `gas_per_byte[t] × module bytes` (and it was called at least `min_calls[t]` times).
//! The defaults come from `synor bench tiers` on the project's contracts (see
//! [`TierPolicy::DEFAULT`]). Tiers only go up; a module evicted from the byte-bounded cache
//! must earn its promotion again from zero, so a contract cannot flap between tiers faster
//! than it pays back each compilation. Promotion goes one tier at a time: a contract past
//! both thresholds is compiled warm first, and served there while its hot compilation (ten
//! times longer) runs.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use hashbrown::HashMap;

use crate::abi::{CallContext, Trap};
use crate::cosmwasm::{CwContext, Entry};
use crate::digest::{CodeId, Digest};
use crate::instrument::{InstrumentError, Instrumented};
use crate::lru::Lru;

/// An execution tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tier {
    /// Interpreter (wasmi): no compilation.
    Cold = 0,
    /// Baseline compiler (wasmtime Winch).
    Warm = 1,
    /// Optimising compiler (wasmtime Cranelift).
    Hot = 2,
}

impl Tier {
    /// Every tier, lowest first.
    pub const ALL: [Tier; 3] = [Tier::Cold, Tier::Warm, Tier::Hot];

    /// `cold`, `warm` or `hot`.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Cold => "cold",
            Tier::Warm => "warm",
            Tier::Hot => "hot",
        }
    }

    /// The tier called `name`.
    pub fn by_name(name: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.name() == name)
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A WebAssembly value crossing the engine boundary. Floats are kept as bits, so that every
/// NaN payload compares exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Value {
    /// `i32`.
    I32(i32),
    /// `i64`.
    I64(i64),
    /// `f32`, as bits.
    F32(u32),
    /// `f64`, as bits.
    F64(u64),
}

impl Value {
    /// The value with a NaN replaced by the canonical NaN (what engines return to the host).
    pub fn canonical(self) -> Value {
        match self {
            Value::F32(b) if b & 0x7fff_ffff > 0x7f80_0000 => {
                Value::F32(crate::instrument::CANONICAL_NAN_F32)
            }
            Value::F64(b) if b & 0x7fff_ffff_ffff_ffff > 0x7ff0_0000_0000_0000 => {
                Value::F64(crate::instrument::CANONICAL_NAN_F64)
            }
            v => v,
        }
    }
}

/// Settles a call that started with `limit` and ended with `results` or `trap`: returns the
/// gas it used, given the gas left in `ctx`.
///
/// The instrumentation checks gas only where code can run again (see
/// [`crate::instrument`]), so a call can return, or trap, with the gas left negative: it ran
/// out of gas, and the outcome becomes an `out_of_gas` trap (no results), charged the limit.
/// A machine fault (raised by the engine between the instrumentation's accounting points,
/// where the gas left is not up to date) is charged the whole limit, so every tier charges
/// the same. Anything else is charged exactly.
pub fn settle(
    limit: u64,
    ctx: &mut CallContext,
    results: &mut Vec<Value>,
    trap: &mut Option<Trap>,
) -> u64 {
    let used = settle_gas(limit, &mut ctx.gas_left, trap);
    if trap.is_some() {
        results.clear();
    }
    used
}

/// [`settle`] for any context: `gas_left` is what the call left; sets `trap` to `out_of_gas`
/// when the call ran out, and returns the gas used.
pub fn settle_gas(limit: u64, gas_left: &mut i64, trap: &mut Option<Trap>) -> u64 {
    let fault = matches!(
        trap,
        Some(
            Trap::MemoryOutOfBounds
                | Trap::TableOutOfBounds
                | Trap::IndirectCallToNull
                | Trap::BadSignature
                | Trap::IntegerDivisionByZero
                | Trap::IntegerOverflow
                | Trap::BadConversionToInteger
        )
    );
    let out_of_gas = !fault && *gas_left < 0;
    if out_of_gas {
        *trap = Some(Trap::OutOfGas);
    }
    if fault || out_of_gas {
        *gas_left = 0;
        return limit;
    }
    crate::abi::gas_used(*gas_left, limit)
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Value::I32(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::F32(v) => write!(f, "{}", f32::from_bits(v)),
            Value::F64(v) => write!(f, "{}", f64::from_bits(v)),
        }
    }
}

/// One call: which export, with which arguments.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The exported function.
    pub entry: &'a str,
    /// Its arguments; their types must match the export's parameters.
    pub args: &'a [Value],
    /// Whether to hash linear memory after the call (for `synor run` and differential tests;
    /// it costs a pass over memory).
    pub hash_memory: bool,
    /// Run a compute program instead of `entry`: when the module exports `setup`, call
    /// `ptr = setup(args...)` (a program's `setup` may take a size), then `run(ptr)` and
    /// `teardown(ptr)`, all in one instance; otherwise just `run()`. The outcome is `run`'s,
    /// with the gas of all three.
    pub program: bool,
    /// How many times a program goes through `setup`, `run` and `teardown` in its instance (at
    /// least once; the outcome is the last `run`'s): benchmarks make a short program's call
    /// long enough to time without the instance's creation.
    pub runs: u32,
    /// Exports called first, in order, in the same instance, their results discarded (e.g. a
    /// test script's earlier actions, whose effects on memory and globals the entry sees). A
    /// trap in one of them ends the call.
    pub prelude: &'a [(&'a str, &'a [Value])],
}

impl<'a> Call<'a> {
    /// A call of `entry` with `args`.
    pub fn new(entry: &'a str, args: &'a [Value]) -> Self {
        Self {
            entry,
            args,
            hash_memory: false,
            program: false,
            runs: 1,
            prelude: &[],
        }
    }

    /// A compute program's `setup(args...)`, `run` and `teardown` (see [`Call::program`]).
    pub fn program(args: &'a [Value]) -> Self {
        Self {
            entry: "run",
            args,
            hash_memory: false,
            program: true,
            runs: 1,
            prelude: &[],
        }
    }

    /// The same call, calling the exports of `prelude` first (see [`Call::prelude`]).
    pub fn after(mut self, prelude: &'a [(&'a str, &'a [Value])]) -> Self {
        self.prelude = prelude;
        self
    }

    /// The same program call, going through the program `runs` times (at least once).
    pub fn repeated(mut self, runs: u32) -> Self {
        self.runs = runs;
        self
    }

    /// The same call, hashing memory afterwards.
    pub fn hashing_memory(mut self) -> Self {
        self.hash_memory = true;
        self
    }
}

impl Call<'_> {
    /// Makes the call's exports of `module` run, in one instance: `entry(args)`, or a compute
    /// program's `setup(args)`, `run(ptr)` and `teardown(ptr)` (see [`Call::program`]);
    /// `invoke` calls one export. Returns the results of
    /// `entry` (or `run`), canonical. Every engine runs calls through this, so that all agree
    /// on the steps.
    ///
    /// # Errors
    /// What `invoke` returns.
    pub fn steps<E>(
        &self,
        module: &Instrumented,
        mut invoke: impl FnMut(&str, &[Value]) -> Result<Vec<Value>, E>,
    ) -> Result<Vec<Value>, E> {
        for (entry, args) in self.prelude {
            invoke(entry, args)?;
        }
        let results = if !self.program {
            invoke(self.entry, self.args)?
        } else {
            let (setup, teardown) = (
                module.export("setup").is_some(),
                module.export("teardown").is_some(),
            );
            let mut results = Vec::new();
            for _ in 0..self.runs.max(1) {
                results = if setup {
                    let ptr = invoke("setup", self.args)?;
                    let results = invoke("run", &ptr)?;
                    if teardown {
                        invoke("teardown", &ptr)?;
                    }
                    results
                } else {
                    invoke("run", &[])?
                };
            }
            results
        };
        Ok(results.into_iter().map(Value::canonical).collect())
    }
}

/// The arguments of a compute program's `setup`: `size` when it takes one (as the corpus
/// programs do), nothing otherwise.
pub fn program_args(module: &Instrumented, size: i64) -> Vec<Value> {
    use crate::instrument::ValueType;
    match module.export("setup").map(|s| s.params.as_slice()) {
        Some([ValueType::I32]) => alloc::vec![Value::I32(size as i32)],
        Some([ValueType::I64]) => alloc::vec![Value::I64(size)],
        _ => Vec::new(),
    }
}

/// The steps of a compute program (see [`Call::program`]): whether it has `setup` (and
/// `teardown`), after checking that its exports follow the convention.
///
/// # Errors
/// `run` is missing, or an export has the wrong signature.
pub fn program_steps(module: &Instrumented) -> Result<bool, EngineError> {
    use crate::instrument::ValueType;
    let bad = |entry: &str, reason: &str| EngineError::Arguments {
        entry: entry.into(),
        reason: reason.into(),
    };
    let run = module
        .export("run")
        .ok_or_else(|| EngineError::NoSuchExport("run".into()))?;
    let Some(setup) = module.export("setup") else {
        if !run.params.is_empty() {
            return Err(bad(
                "run",
                "a program without `setup` has a `run` without parameters",
            ));
        }
        return Ok(false);
    };
    if setup.params.len() <= 1
        && setup
            .params
            .iter()
            .all(|p| matches!(p, ValueType::I32 | ValueType::I64))
        && setup.results == [ValueType::I32]
        && run.params == [ValueType::I32]
        && module
            .export("teardown")
            .is_none_or(|t| t.params == [ValueType::I32] && t.results.is_empty())
    {
        Ok(true)
    } else {
        Err(bad(
            "setup",
            "a program exports `setup([size: i32 or i64]) -> i32`, `run(i32)` and `teardown(i32)`",
        ))
    }
}

/// What a call did. Together with the effects buffered in the [`CallContext`], this is
/// identical on every tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The export's results (empty when it trapped).
    pub results: Vec<Value>,
    /// Why the call stopped early, if it did. The context's writes, events and blobs must then
    /// be discarded.
    pub trap: Option<Trap>,
    /// Gas used, out of the gas the context started with.
    pub gas_used: u64,
    /// blake3 of linear memory after the call, when asked for and the module has a memory.
    pub memory_hash: Option<Digest>,
}

/// Why a call could not be made at all (as opposed to a [`Trap`] during the call).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineError {
    /// The module was rejected by validation or instrumentation.
    Rejected(InstrumentError),
    /// The module exports no function of that name.
    NoSuchExport(String),
    /// The arguments do not match the export's parameters.
    Arguments {
        /// The export.
        entry: String,
        /// What is wrong.
        reason: String,
    },
    /// The engine lacks a resource right now (e.g. every pooled instance slot is busy); nothing
    /// ran, and the call can be made again, for instance on another tier.
    Unavailable(String),
    /// The engine failed to compile or instantiate a module the instrumenter accepted (a bug:
    /// the instrumenter's feature set and limits are meant to be within every engine's).
    Engine(String),
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Rejected(e) => write!(f, "module rejected: {e}"),
            EngineError::NoSuchExport(e) => write!(f, "the module exports no function `{e}`"),
            EngineError::Arguments { entry, reason } => {
                write!(f, "arguments of `{entry}`: {reason}")
            }
            EngineError::Unavailable(e) => write!(f, "engine unavailable: {e}"),
            EngineError::Engine(e) => write!(f, "engine failure: {e}"),
        }
    }
}

impl core::error::Error for EngineError {}

impl From<InstrumentError> for EngineError {
    fn from(e: InstrumentError) -> Self {
        EngineError::Rejected(e)
    }
}

/// Checks `call`'s arguments against the export's signature; every engine calls this first so
/// that a bad call gets the same error on every tier. A CosmWasm contract takes no such call
/// ([`Compiled::call_cosmwasm`] calls its entry points).
///
/// # Errors
/// No such export, or the arguments do not match.
pub fn check_call(module: &Instrumented, call: &Call<'_>) -> Result<(), EngineError> {
    if module.cosmwasm.is_some() {
        return Err(EngineError::NoSuchExport(alloc::format!(
            "{} (a CosmWasm contract is called through its entry points)",
            call.entry
        )));
    }
    let entry = if call.program {
        match program_steps(module)? {
            true => "setup",
            false => "run",
        }
    } else {
        call.entry
    };
    for (entry, args) in call.prelude {
        check_args(module, entry, args)?;
    }
    check_args(module, entry, call.args)
}

/// Checks that `module` exports `entry` taking `args`.
fn check_args(module: &Instrumented, entry: &str, args: &[Value]) -> Result<(), EngineError> {
    use crate::instrument::ValueType;
    let export = module
        .export(entry)
        .ok_or_else(|| EngineError::NoSuchExport(entry.into()))?;
    let matches = export.params.len() == args.len()
        && export.params.iter().zip(args).all(|(t, v)| {
            matches!(
                (t, v),
                (ValueType::I32, Value::I32(_))
                    | (ValueType::I64, Value::I64(_))
                    | (ValueType::F32, Value::F32(_))
                    | (ValueType::F64, Value::F64(_))
            )
        });
    if !matches {
        return Err(EngineError::Arguments {
            entry: entry.into(),
            reason: alloc::format!("expected {:?}, got {args:?}", export.params),
        });
    }
    Ok(())
}

/// How a call begins, once [`start`] has checked it and charged its instantiation.
#[derive(Debug)]
pub enum Start {
    /// Create the instance and run; `limit` is the gas the call started with (for
    /// [`settle`]).
    Run {
        /// The gas the call started with, instantiation included.
        limit: u64,
    },
    /// The gas did not cover instantiation: this is the call's outcome (`out_of_gas`, charged
    /// the whole limit), and no instance is created.
    Done(Outcome),
}

/// Begins a call of `module`: checks it ([`check_call`]) and charges the module's
/// [instantiation](Instrumented::instantiation_gas) to `ctx`. Every engine calls this before
/// it creates an instance, so that every tier charges instantiation alike.
///
/// # Errors
/// What [`check_call`] returns.
pub fn start(
    module: &Instrumented,
    ctx: &mut CallContext,
    call: &Call<'_>,
) -> Result<Start, EngineError> {
    check_call(module, call)?;
    Ok(charge_instantiation(module, &mut ctx.gas_left))
}

/// Charges `module`'s instantiation to `gas_left`: the call runs with `limit`, or is over
/// (`out_of_gas`, charged the whole limit) before any instance is made.
fn charge_instantiation(module: &Instrumented, gas_left: &mut i64) -> Start {
    let limit = u64::try_from(*gas_left).unwrap_or(0);
    let Some(left) = limit.checked_sub(module.instantiation_gas) else {
        *gas_left = 0;
        return Start::Done(Outcome {
            results: Vec::new(),
            trap: Some(Trap::OutOfGas),
            gas_used: limit,
            memory_hash: None,
        });
    };
    *gas_left = i64::try_from(left).unwrap_or(i64::MAX);
    Start::Run { limit }
}

/// What a call of a CosmWasm entry point did ([`Compiled::call_cosmwasm`]); with the writes
/// journaled in the [`CwContext`], identical on every tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CwOutcome {
    /// The JSON the entry point returned (a `ContractResult`), or why the call stopped.
    pub result: Result<Vec<u8>, Trap>,
    /// Gas used, out of the gas the context started with.
    pub gas_used: u64,
}

/// Begins a call of CosmWasm entry point `entry` of `module` with `args` arguments: checks
/// that the module is a CosmWasm contract exporting it with that many parameters, and
/// charges the instantiation to `ctx` as [`start`] does. Every engine calls this first.
///
/// # Errors
/// Not a CosmWasm contract, no such entry point, or another number of arguments.
pub fn start_cosmwasm(
    module: &Instrumented,
    ctx: &mut CwContext,
    entry: Entry,
    args: usize,
) -> Result<Result<u64, CwOutcome>, EngineError> {
    let Some(interface) = &module.cosmwasm else {
        return Err(EngineError::NoSuchExport(alloc::format!(
            "{} (not a CosmWasm contract)",
            entry.name()
        )));
    };
    match interface.params(entry) {
        None => return Err(EngineError::NoSuchExport(entry.name().into())),
        Some(n) if n != args => {
            return Err(EngineError::Arguments {
                entry: entry.name().into(),
                reason: alloc::format!("expected {n} regions, got {args}"),
            });
        }
        Some(_) => {}
    }
    Ok(match charge_instantiation(module, &mut ctx.gas_left) {
        Start::Run { limit } => Ok(limit),
        Start::Done(outcome) => Err(CwOutcome {
            result: Err(Trap::OutOfGas),
            gas_used: outcome.gas_used,
        }),
    })
}

/// Ends a CosmWasm call that started with `limit` ([`start_cosmwasm`]) and gave `result`:
/// settles its gas as [`settle`] does.
pub fn settle_cosmwasm(
    limit: u64,
    ctx: &mut CwContext,
    result: Result<Vec<u8>, Trap>,
) -> CwOutcome {
    let mut trap = result.as_ref().err().cloned();
    let gas_used = settle_gas(limit, &mut ctx.gas_left, &mut trap);
    CwOutcome {
        result: match trap {
            Some(t) => Err(t),
            None => result,
        },
        gas_used,
    }
}

/// A module compiled by one engine, ready to call any number of times from any thread.
pub trait Compiled: Send + Sync {
    /// The tier that compiled it.
    fn tier(&self) -> Tier;

    /// Bytes of compiled code (or, for an interpreter, of its internal code), which the tier
    /// manager's cache is bounded by.
    fn code_bytes(&self) -> usize;

    /// Calls `call.entry` in a fresh instance with `ctx`: gas comes from and goes back to
    /// `ctx.gas_left`, and host calls go through [`CallContext::dispatch`].
    ///
    /// # Errors
    /// The call could not be made (no such export, wrong arguments); traps are not errors but
    /// part of the [`Outcome`].
    fn call(&self, ctx: &mut CallContext, call: &Call<'_>) -> Result<Outcome, EngineError>;

    /// Calls CosmWasm entry point `entry` of a CosmWasm contract in a fresh instance, with
    /// `args` (the JSON arguments, each placed in a region the contract allocates:
    /// [`cosmwasm::call_entry`](crate::cosmwasm::call_entry)), its `env` imports served by
    /// [`CwContext::dispatch`] and `allocate`: gas comes from and goes back to
    /// `ctx.gas_left`.
    ///
    /// # Errors
    /// The call could not be made ([`start_cosmwasm`]); traps are part of the outcome.
    fn call_cosmwasm(
        &self,
        ctx: &mut CwContext,
        entry: Entry,
        args: &[&[u8]],
    ) -> Result<CwOutcome, EngineError>;
}

/// An engine that compiles instrumented modules for one tier.
pub trait Engine: Send + Sync {
    /// Its tier.
    fn tier(&self) -> Tier;

    /// Compiles `module` (or loads it from an artifact cache the engine was given).
    ///
    /// # Errors
    /// The engine cannot compile a module the instrumenter accepted (a bug).
    fn compile(&self, module: &Arc<Instrumented>) -> Result<Arc<dyn Compiled>, EngineError>;

    /// Loads `module` from the engine's artifact cache, if it is there, without compiling.
    fn load_cached(&self, module: &Arc<Instrumented>) -> Option<Arc<dyn Compiled>> {
        let _ = module;
        None
    }

    /// How many times this engine really compiled (as opposed to loading an artifact).
    fn compilations(&self) -> u64;
}

/// Compiled artifacts kept across restarts, keyed by a digest of everything that affects the
/// artifact (code, engine build and configuration, instrumenter version).
///
/// # Trust
/// Engines that compile to native code map what `load` returns as executable code, so this
/// trait is where the node decides what machine code it runs. `load(key)` must return exactly
/// the bytes an engine of this node gave to `store` under that same `key`, or nothing,
/// whoever else can write where the implementation keeps them: integrity alone is not enough
/// (a whole artifact of another key, or of another party, is intact too). A cache in a file
/// system therefore authenticates each artifact together with its key under a secret only the
/// node holds (the std host's `FsArtifactCache`, whose constructor is `unsafe` and states
/// what it relies on). Only engines `store`, each its own compiled output.
///
/// Failures are never errors: a missing, bad or unauthentic artifact means "compile".
pub trait ArtifactCache: Send + Sync {
    /// The artifact an engine stored under `key`, if present, intact and authentic.
    fn load(&self, key: &Digest) -> Option<Vec<u8>>;
    /// Stores `artifact`, an engine's own compiled output, under `key` (atomically: a reader
    /// sees all of it or nothing).
    fn store(&self, key: &Digest, artifact: &[u8]);
}

/// When to promote a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierPolicy {
    /// For warm and hot: gas spent (in lower tiers) per byte of instrumented module before
    /// compiling that tier.
    pub gas_per_byte: [u64; 2],
    /// For warm and hot: calls before compiling that tier.
    pub min_calls: [u64; 2],
}

impl TierPolicy {
    /// Defaults measured with `synor bench tiers` on this project's contracts: Winch compiles
    /// at roughly 10–15 ns per module byte and Cranelift at 60–120 ns, while wasmi runs about
    /// 3–6x slower than Winch and Winch about 1.5–2x slower than Cranelift, at a few ns per
    /// gas. Breaking even on warm thus takes a few gas per byte and on hot a few tens; the
    /// defaults lean late for hot (a background compile still uses a core).
    pub const DEFAULT: TierPolicy = TierPolicy {
        gas_per_byte: [4, 40],
        min_calls: [2, 4],
    };

    /// Never promote (a single-tier configuration).
    pub const NEVER: TierPolicy = TierPolicy {
        gas_per_byte: [u64::MAX, u64::MAX],
        min_calls: [u64::MAX, u64::MAX],
    };

    fn target(&self, calls: u64, gas: u64, module_bytes: u64) -> Tier {
        let meets = |i: usize| {
            calls >= self.min_calls[i] && gas >= self.gas_per_byte[i].saturating_mul(module_bytes)
        };
        if meets(1) {
            Tier::Hot
        } else if meets(0) {
            Tier::Warm
        } else {
            Tier::Cold
        }
    }
}

impl Default for TierPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Per-contract counters.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    /// Calls since the contract's best module was last lost (or ever).
    calls: u64,
    /// Gas over those calls.
    gas: u64,
    /// Size of the instrumented module.
    module_bytes: u64,
    /// Tier being compiled in the background.
    pending: Option<Tier>,
    /// Highest tier installed.
    installed: Option<Tier>,
}

/// What [`Tiering`] counted, for benches and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TieringStats {
    /// Promotions requested.
    pub promotions: u64,
    /// Modules evicted from the cache.
    pub evictions: u64,
    /// Calls served per tier.
    pub calls: [u64; 3],
}

/// The tier manager's state: counters per contract and a byte-bounded LRU of compiled modules.
pub struct Tiering {
    policy: TierPolicy,
    counters: HashMap<CodeId, Counters>,
    modules: Lru<(CodeId, Tier), Arc<dyn Compiled>>,
    stats: TieringStats,
}

impl Tiering {
    /// A manager with `policy`, keeping at most `cache_bytes` of compiled code.
    pub fn new(policy: TierPolicy, cache_bytes: usize) -> Self {
        Self {
            policy,
            counters: HashMap::new(),
            modules: Lru::new(cache_bytes),
            stats: TieringStats::default(),
        }
    }

    /// The policy.
    pub fn policy(&self) -> TierPolicy {
        self.policy
    }

    /// Counts so far.
    pub fn stats(&self) -> TieringStats {
        self.stats
    }

    /// Bytes of compiled code held.
    pub fn cached_bytes(&self) -> usize {
        self.modules.used()
    }

    /// The best module held for `id` (marked as recently used), or `None` when the contract has
    /// no module in the cache and the caller must compile the cold tier.
    pub fn select(&mut self, id: &CodeId) -> Option<Arc<dyn Compiled>> {
        for tier in [Tier::Hot, Tier::Warm, Tier::Cold] {
            if let Some(m) = self.modules.get(&(*id, tier)) {
                return Some(m);
            }
        }
        None
    }

    /// The tier of the module [`Tiering::select`] would give, without marking it used.
    pub fn current(&self, id: &CodeId) -> Option<Tier> {
        [Tier::Hot, Tier::Warm, Tier::Cold]
            .into_iter()
            .find(|t| self.modules.peek(&(*id, *t)).is_some())
    }

    /// Whether a compilation of `id` is in flight.
    pub fn pending(&self, id: &CodeId) -> Option<Tier> {
        self.counters.get(id).and_then(|c| c.pending)
    }

    /// Installs `module` for contract `id`, evicting least recently used modules beyond the
    /// byte budget. Lower-tier modules of the same contract are dropped: nothing selects them
    /// any more.
    pub fn install(&mut self, id: CodeId, module: Arc<dyn Compiled>, module_bytes: usize) {
        let tier = module.tier();
        let c = self.counters.entry(id).or_default();
        c.module_bytes = module_bytes as u64;
        if c.pending == Some(tier) {
            c.pending = None;
        }
        c.installed = Some(c.installed.map_or(tier, |t| t.max(tier)));
        for lower in Tier::ALL.into_iter().filter(|t| *t < tier) {
            self.modules.remove(&(id, lower));
        }
        let bytes = module.code_bytes();
        for ((evicted, _), _) in self.modules.insert((id, tier), module, bytes) {
            self.stats.evictions += 1;
            self.lost(&evicted);
        }
    }

    /// A contract lost its module: it restarts counting from zero, so that it must earn its
    /// promotion again (no flapping). A contract left with no module at all forgets its
    /// counters (they would start from zero anyway), so counters are kept only for contracts
    /// with a module in the byte-bounded cache, or a compilation in flight.
    fn lost(&mut self, id: &CodeId) {
        let still = self.current(id);
        if still.is_none() && self.counters.get(id).is_some_and(|c| c.pending.is_none()) {
            self.counters.remove(id);
            return;
        }
        if let Some(c) = self.counters.get_mut(id) {
            c.installed = still;
            c.calls = 0;
            c.gas = 0;
        }
    }

    /// Contracts with counters (bounded by the modules held and compilations in flight).
    pub fn tracked(&self) -> usize {
        self.counters.len()
    }

    /// A background compilation of `id` at `tier` failed: forget it, and never retry that tier
    /// for this contract (the same input would fail the same way).
    pub fn failed(&mut self, id: &CodeId, tier: Tier) {
        if let Some(c) = self.counters.get_mut(id) {
            if c.pending == Some(tier) {
                c.pending = None;
            }
            c.calls = 0;
            c.gas = 0;
            c.installed = Some(c.installed.map_or(tier, |t| t.max(tier)));
        }
    }

    /// Counts a call of `id` served by `tier` that used `gas`; returns the tier to compile in
    /// the background, if a promotion is due now. The caller must compile it and
    /// [`install`](Self::install) it (or report [`failed`](Self::failed)).
    pub fn record(&mut self, id: &CodeId, tier: Tier, gas: u64) -> Option<Tier> {
        self.record_calls(id, tier, 1, gas)
    }

    /// Counts `calls` calls of `id` served by `tier` that used `gas` in all, as
    /// [`record`](Self::record) does one (a host that batches its counting, so that parallel
    /// callers do not meet on the manager for every call).
    pub fn record_calls(&mut self, id: &CodeId, tier: Tier, calls: u64, gas: u64) -> Option<Tier> {
        self.stats.calls[tier as usize] += calls;
        let c = self.counters.get_mut(id)?;
        c.calls = c.calls.saturating_add(calls);
        c.gas = c.gas.saturating_add(gas);
        if c.pending.is_some() {
            return None;
        }
        let have = c.installed.unwrap_or(Tier::Cold).max(tier);
        // One tier at a time: a large contract past both thresholds runs on the warm tier
        // (compiled in a tenth of the time) while the hot tier compiles, not cold.
        let next = match have {
            Tier::Cold => Tier::Warm,
            _ => Tier::Hot,
        };
        let target = self.policy.target(c.calls, c.gas, c.module_bytes).min(next);
        if target <= have {
            return None;
        }
        c.pending = Some(target);
        self.stats.promotions += 1;
        Some(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(Tier, usize);
    impl Compiled for Fake {
        fn tier(&self) -> Tier {
            self.0
        }
        fn code_bytes(&self) -> usize {
            self.1
        }
        fn call(&self, _: &mut CallContext, _: &Call<'_>) -> Result<Outcome, EngineError> {
            unreachable!("the policy never calls modules")
        }
        fn call_cosmwasm(
            &self,
            _: &mut CwContext,
            _: Entry,
            _: &[&[u8]],
        ) -> Result<CwOutcome, EngineError> {
            unreachable!("the policy never calls modules")
        }
    }

    fn id(n: u8) -> CodeId {
        Digest([n; 32])
    }

    /// A manager whose contracts of 1,000 bytes go warm after 2 calls and 10,000 gas, hot
    /// after 3 calls and 100,000 gas; contract 1 is installed cold.
    fn promoting() -> Tiering {
        let policy = TierPolicy {
            gas_per_byte: [10, 100],
            min_calls: [2, 3],
        };
        let mut t = Tiering::new(policy, 1 << 20);
        t.install(id(1), Arc::new(Fake(Tier::Cold, 100)), 1000);
        t
    }

    #[test]
    fn promotes_by_gas_per_byte_once_at_a_time() {
        let mut t = promoting();
        // 10 gas/byte * 1000 bytes = 10_000 gas and 2 calls for warm.
        assert_eq!(t.record(&id(1), Tier::Cold, 9_000), None);
        assert_eq!(t.record(&id(1), Tier::Cold, 2_000), Some(Tier::Warm));
        // In flight: no second request, whatever the gas.
        assert_eq!(t.record(&id(1), Tier::Cold, 1_000_000), None);
        assert_eq!(t.pending(&id(1)), Some(Tier::Warm));
        t.install(id(1), Arc::new(Fake(Tier::Warm, 200)), 1000);
        assert_eq!(t.current(&id(1)), Some(Tier::Warm));
        // Already past the hot threshold (100 * 1000) with 3 calls.
        assert_eq!(t.record(&id(1), Tier::Warm, 1), Some(Tier::Hot));
        t.install(id(1), Arc::new(Fake(Tier::Hot, 150)), 1000);
        assert_eq!(t.select(&id(1)).unwrap().tier(), Tier::Hot);
        // The lower tiers are gone; nothing is left to promote to.
        assert_eq!(t.cached_bytes(), 150);
        assert_eq!(t.record(&id(1), Tier::Hot, u64::MAX), None);
        assert_eq!(t.stats().promotions, 2);
    }

    #[test]
    fn promotes_one_tier_at_a_time() {
        let mut t = promoting();
        // Past both thresholds at once: warm first, hot once warm is installed.
        assert_eq!(
            t.record_calls(&id(1), Tier::Cold, 10, 1 << 30),
            Some(Tier::Warm)
        );
        t.install(id(1), Arc::new(Fake(Tier::Warm, 200)), 1000);
        assert_eq!(t.record(&id(1), Tier::Warm, 1), Some(Tier::Hot));
    }

    #[test]
    fn eviction_by_bytes_restarts_the_count() {
        let policy = TierPolicy {
            gas_per_byte: [1, 1000],
            min_calls: [1, 1],
        };
        let mut t = Tiering::new(policy, 1000);
        t.install(id(1), Arc::new(Fake(Tier::Warm, 600)), 10);
        t.install(id(2), Arc::new(Fake(Tier::Warm, 300)), 10);
        assert!(t.select(&id(1)).is_some()); // 2 is now the least recently used
        t.install(id(3), Arc::new(Fake(Tier::Warm, 300)), 10);
        assert!(t.current(&id(2)).is_none());
        assert_eq!(t.cached_bytes(), 900);
        assert_eq!(t.stats().evictions, 1);
        // Contract 2 has no module left: its counters are gone too.
        assert_eq!(t.tracked(), 2);
        // Contract 2 starts again from cold and must earn warm again.
        t.install(id(2), Arc::new(Fake(Tier::Cold, 10)), 10);
        assert_eq!(t.record(&id(2), Tier::Cold, 5), None);
        assert_eq!(t.record(&id(2), Tier::Cold, 5), Some(Tier::Warm));
    }

    #[test]
    fn batched_counts_promote_like_single_ones() {
        let mut t = promoting();
        // Short of warm (10,000 gas) in one batch, then over it.
        assert_eq!(t.record_calls(&id(1), Tier::Cold, 5, 9_999), None);
        assert_eq!(t.record_calls(&id(1), Tier::Cold, 1, 1), Some(Tier::Warm));
        assert_eq!(t.stats().calls, [6, 0, 0]);
        // Gas enough for hot but calls only for warm, then the one call more hot needs.
        t.install(id(2), Arc::new(Fake(Tier::Cold, 100)), 1000);
        assert_eq!(
            t.record_calls(&id(2), Tier::Cold, 2, 200_000),
            Some(Tier::Warm)
        );
        t.install(id(2), Arc::new(Fake(Tier::Warm, 100)), 1000);
        assert_eq!(t.record_calls(&id(2), Tier::Warm, 1, 0), Some(Tier::Hot));
    }

    #[test]
    fn failed_compilation_is_not_retried() {
        let mut t = Tiering::new(
            TierPolicy {
                gas_per_byte: [0, 1_000_000],
                min_calls: [1, 1],
            },
            1 << 20,
        );
        t.install(id(1), Arc::new(Fake(Tier::Cold, 1)), 10);
        assert_eq!(t.record(&id(1), Tier::Cold, 1), Some(Tier::Warm));
        t.failed(&id(1), Tier::Warm);
        assert_eq!(t.record(&id(1), Tier::Cold, 1), None);
    }
}
