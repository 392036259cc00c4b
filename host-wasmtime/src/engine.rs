//! The warm and hot tiers: wasmtime with Winch (baseline) and Cranelift (optimising).
//!
//! Both engines take the instrumented module (so gas, stack depth and memory limits come from
//! the module, not from engine fuel), accept exactly the instrumenter's feature set, and can
//! keep compiled artifacts in an [`ArtifactCache`] keyed by everything that affects the
//! artifact.

use std::cell::Cell;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use synor_core::Digest;
use synor_core::abi::{CallContext, Import, Trap};
use synor_core::cosmwasm::{self, CwContext, CwImport, CwInstance, Entry, Guest, Step};
use synor_core::instrument::{self, INSTRUMENTER_VERSION, Instrumented, Limits};
use synor_core::tier::{
    self, ArtifactCache, Call, Compiled, CwOutcome, EngineError, Outcome, Tier, Value,
};
use synor_host_std::FsArtifactCache;
use thread_local::ThreadLocal;
use wasmtime::{Caller, Config, InstancePre, Linker, Module, OptLevel, Store, Strategy, Val};

/// Native stack wasm may use. The instrumented depth limit (16,384 units by default) needs
/// under 2 MiB on Winch, whose frames are the largest (see the `deep_recursion` tests), so the
/// engine's own limit never trips first.
pub const MAX_WASM_STACK: usize = 4 << 20;

/// Stack a call needs: the wasm stack plus room for the host. A call made with less left on
/// the calling thread's stack (a thread with tokio's 2 MiB default, say) runs on a fresh stack
/// of this size (see `with_stack`), so no call can overflow the native stack; threads that
/// make many calls should have it (the main thread has 8 MiB; the tier manager's threads are
/// created with it) to spare that allocation.
pub const STACK_NEEDED: usize = MAX_WASM_STACK + (2 << 20);

/// Runs `f` with at least [`STACK_NEEDED`] bytes of stack: on the calling thread's stack when
/// that much is left (a comparison of the stack pointer with the thread's bounds), otherwise
/// on a stack allocated for the call.
fn with_stack<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(STACK_NEEDED, STACK_NEEDED, f)
}

/// Instances (calls running at once) per engine lane.
pub const POOL_INSTANCES: u32 = 256;

/// Bytes of a pooled linear memory kept resident when it is reset (written pages are zeroed
/// in place up to this much, the rest goes back to the kernel), and the most memory a
/// finished call's instance may have for its store to be kept (see [`CALLS_PER_STORE`]).
const KEEP_RESIDENT: usize = 4 << 20;

/// What a wasmtime store holds during one call (the default between calls).
#[derive(Default)]
pub(crate) struct Host {
    ctx: CallContext,
    gas: Option<wasmtime::Global>,
    memory: Option<wasmtime::Memory>,
}

/// An engine failure before the call ran (see [`EngineError::Unavailable`]).
#[derive(Debug)]
struct Unavailable(String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unavailable {}

/// One wasmtime engine with its linker: the instances of a lane come from its own pool.
struct Lane {
    engine: wasmtime::Engine,
    linker: Linker<Host>,
    /// The CosmWasm imports.
    cw_linker: Linker<CwHost>,
}

/// Lanes per engine: one per core, at most [`MAX_LANES`]. Calls running at once on different
/// lanes share no instance pool, type registry or engine reference count: with one engine,
/// every call on two threads contended for the pool's slot allocator lock and bounced the
/// engine's shared counters between the cores.
fn lane_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_LANES))
}

/// Most lanes an engine has.
const MAX_LANES: usize = 16;

/// Whether a call is running on a lane, on cache lines of its own (each is written by the
/// core calling there).
#[repr(align(128))]
struct LaneBusy(AtomicBool);

/// How an engine's calls choose lanes (see [`LaneClaim`]), shared by the warm and the hot
/// engine of a [`WasmtimeEngine::pair`]: lane `i` of either counts as one, and a thread has
/// one home lane for both.
struct LaneState {
    /// Whether a call is running on lane `i`. Only a hint for choosing lanes, never a lock:
    /// every lane serves any thread correctly, so it is read and written with relaxed
    /// ordering.
    busy: [LaneBusy; MAX_LANES],
    /// Spreads first calls.
    next: AtomicUsize,
    /// Each calling thread's home lane, once it has called.
    home: ThreadLocal<Cell<Option<usize>>>,
}

impl LaneState {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            busy: [const { LaneBusy(AtomicBool::new(false)) }; MAX_LANES],
            next: AtomicUsize::new(0),
            home: ThreadLocal::new(),
        })
    }
}

/// The lane a call runs on, among `lanes`, held until dropped.
///
/// A thread calls through its home lane, unless a call is running there: then through the
/// first free lane after it, which becomes its home; when every lane is busy (more threads
/// calling at once than lanes), through its home lane, shared. Homes were once given
/// round-robin at each thread's first call and kept: two threads whose turns came an even
/// number of threads apart (a worker pool's thread and the caller's, after any other thread
/// had made a call) then shared a lane for good, and a two-thread block ran a fifth slower.
/// Now threads that call at the same time settle on different lanes after at most one shared
/// call, and a thread keeps its lane (and its pool's warm slots) while nobody else wants it.
struct LaneClaim<'a> {
    state: &'a LaneState,
    lane: usize,
    held: bool,
}

impl<'a> LaneClaim<'a> {
    fn new(state: &'a LaneState, lanes: usize) -> Self {
        let lanes = lanes.clamp(1, MAX_LANES);
        let home = state.home.get_or_default();
        let first = home
            .get()
            .unwrap_or_else(|| state.next.fetch_add(1, Ordering::Relaxed))
            % lanes;
        // Looked at before taken: a read of a busy lane's line does not take it from the core
        // running there.
        let busy = &state.busy;
        let free = |i: usize| {
            !busy[i].0.load(Ordering::Relaxed) && !busy[i].0.swap(true, Ordering::Relaxed)
        };
        let (lane, held) = match (0..lanes).map(|k| (first + k) % lanes).find(|i| free(*i)) {
            Some(lane) => (lane, true),
            None => (first, false),
        };
        home.set(Some(lane));
        Self { state, lane, held }
    }
}

impl Drop for LaneClaim<'_> {
    fn drop(&mut self) {
        if self.held {
            self.state.busy[self.lane].0.store(false, Ordering::Relaxed);
        }
    }
}

/// The wasmtime configuration of the `tier` engine's lanes (warm or hot): `instances` pool
/// slots sized by `limits`, exactly the instrumenter's feature set. (Public for measurements
/// of wasmtime itself, e.g. `examples/instantiate.rs`.)
///
/// # Errors
/// `tier` is cold.
pub fn config(tier: Tier, limits: &Limits, instances: u32) -> Result<Config, EngineError> {
    let mut config = Config::new();
    let mut pool = wasmtime::PoolingAllocationConfig::default();
    pool.total_core_instances(instances)
        .total_memories(instances)
        .total_tables(instances)
        .max_memory_size(limits.max_memory_pages as usize * 65_536)
        .table_elements(limits.max_table_elements as usize)
        // vmctx: function references, globals and tables within the instrumenter's limits.
        .max_core_instance_size(16 << 20)
        // Reset only the pages a call dirtied, by memset (Linux 6.7+ PAGEMAP_SCAN), keeping
        // up to 4 MiB resident: nothing goes back to the kernel unless a call dirties more.
        // No batching of what does: every reset queues a decommit, empty when the scan
        // reached the end, and a slot waits in the queue until the batch is full, so with
        // batches of 64 calls cycled through dozens of pool slots (cold pages and page
        // tables) instead of reusing one; unbatched, an empty decommit is no system call and
        // the slot is free again at once (sequential blocks 2-3 % faster).
        .pagemap_scan(wasmtime::Enabled::Auto)
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(1 << 20)
        .decommit_batch_size(1);
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    // Hot tier: explicit bounds checks instead of guard pages. A pooled memory slot then
    // stays read-write once grown, where guard pages cost two `mprotect`s per call that
    // grows memory (shrinking the slot back, growing it again), each taking the
    // address-space lock and a TLB shootdown on every core: the difference between threads
    // scaling and threads slowing down. (Winch requires signal-based traps; contracts that
    // run often run hot.)
    if tier == Tier::Hot {
        config.signals_based_traps(false).memory_guard_size(0);
    }
    let strategy = match tier {
        Tier::Warm => Strategy::Winch,
        Tier::Hot => Strategy::Cranelift,
        Tier::Cold => return Err(EngineError::Engine("wasmtime serves warm and hot".into())),
    };
    config
        .strategy(strategy)
        .cranelift_opt_level(OptLevel::Speed)
        .async_stack_size(STACK_NEEDED)
        .max_wasm_stack(MAX_WASM_STACK)
        // Exactly the instrumenter's feature set (lime1).
        .wasm_bulk_memory(true)
        .wasm_multi_value(true)
        .wasm_extended_const(true)
        .wasm_simd(false)
        .wasm_relaxed_simd(false)
        .wasm_multi_memory(false)
        .wasm_tail_call(false)
        .wasm_wide_arithmetic(false)
        .wasm_custom_page_sizes(false)
        .wasm_backtrace_max_frames(None)
        .parallel_compilation(false);
    Ok(config)
}

/// An artifact cache the wasmtime engines load native code from.
///
/// Loading an artifact maps its bytes as executable code (wasmtime's `Module::deserialize`),
/// so a cache given to the engines must return, under each key, only bytes that an engine of
/// this node stored under it. An [`FsArtifactCache`] was opened under that promise (its
/// `open` is `unsafe` and states it), so [`TrustedArtifacts::fs`] is safe; any other cache is
/// trusted through the `unsafe` [`TrustedArtifacts::new`].
#[derive(Clone)]
pub struct TrustedArtifacts(Arc<dyn ArtifactCache>);

impl TrustedArtifacts {
    /// The engines' cache in `cache`.
    pub fn fs(cache: Arc<FsArtifactCache>) -> Self {
        Self(cache)
    }

    /// Trusts `cache` with the engines' native code.
    ///
    /// # Safety
    /// `cache.load(key)` returns only bytes an engine of this node gave to
    /// `cache.store(key, ..)`, byte for byte, whoever else can reach the storage behind it:
    /// the engines map them as executable code without any further check.
    pub unsafe fn new(cache: Arc<dyn ArtifactCache>) -> Self {
        Self(cache)
    }
}

impl std::fmt::Debug for TrustedArtifacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TrustedArtifacts(..)")
    }
}

/// A warm (Winch) or hot (Cranelift) engine.
pub struct WasmtimeEngine {
    tier: Tier,
    lanes: Vec<Lane>,
    cache: Option<TrustedArtifacts>,
    /// Digest of the engine's build and configuration, part of every artifact key.
    config_key: Digest,
    compilations: AtomicU64,
    instrumented: bool,
    /// Shared with the other engine of a [`pair`](Self::pair), and with every module.
    lane_state: Arc<LaneState>,
    /// This engine's kept stores, shared with every module it compiled.
    kept: Arc<KeptStores>,
    /// Its kept stores of CosmWasm calls.
    cw_kept: Arc<KeptStores<CwHost>>,
}

impl std::fmt::Debug for WasmtimeEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmtimeEngine")
            .field("tier", &self.tier)
            .finish_non_exhaustive()
    }
}

/// Feeds `Hash` output into blake3, to digest wasmtime's compatibility hash.
struct Blake3Hasher(blake3::Hasher);

impl Hasher for Blake3Hasher {
    fn finish(&self) -> u64 {
        let mut out = [0u8; 8];
        out.copy_from_slice(&self.0.finalize().as_bytes()[..8]);
        u64::from_le_bytes(out)
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl WasmtimeEngine {
    /// The warm tier (Winch).
    ///
    /// # Errors
    /// wasmtime cannot create the engine (e.g. Winch does not support this CPU).
    pub fn winch(cache: Option<TrustedArtifacts>) -> Result<Self, EngineError> {
        Self::new(Tier::Warm, &Limits::default(), cache)
    }

    /// The hot tier (Cranelift, optimising for speed).
    ///
    /// # Errors
    /// wasmtime cannot create the engine.
    pub fn cranelift(cache: Option<TrustedArtifacts>) -> Result<Self, EngineError> {
        Self::new(Tier::Hot, &Limits::default(), cache)
    }

    /// The warm and the hot engine of one node, running modules instrumented with `limits`
    /// and sharing `cache` and their lanes: lane `i` of both counts as one when calls choose
    /// a lane, and a thread has one home lane for both (see [`new`](Self::new)). Engines
    /// built apart, or by another `pair`, share nothing: two nodes in one process neither
    /// see each other's calls as busy lanes nor drop each other's kept stores.
    ///
    /// # Errors
    /// wasmtime cannot create either engine (e.g. Winch does not support this CPU).
    pub fn pair(
        limits: &Limits,
        cache: Option<TrustedArtifacts>,
    ) -> Result<(Self, Self), EngineError> {
        let lane_state = LaneState::new();
        let warm = Self::build(
            Tier::Warm,
            limits,
            cache.clone(),
            POOL_INSTANCES,
            lane_state.clone(),
        )?;
        let hot = Self::build(Tier::Hot, limits, cache, POOL_INSTANCES, lane_state)?;
        Ok((warm, hot))
    }

    /// An engine for `tier` (warm or hot) running modules instrumented with `limits`.
    ///
    /// The engine has one wasmtime engine per core (a lane, see `lane_count`); a module is
    /// compiled once and its artifact loaded into every lane. Instances come from the calling
    /// thread's lane's pool ([`POOL_INSTANCES`] slots sized by `limits`), so that a call
    /// does not map and unmap its memory: per-call mmap/munmap serialises threads on the
    /// kernel's address-space lock and costs TLB shootdowns. When every slot is busy, a call
    /// fails with an [`EngineError`] (never a trap) and the tier manager runs it cold. The
    /// engine's lanes are its own; [`pair`](Self::pair) builds a warm and a hot engine that
    /// share them.
    ///
    /// # Errors
    /// wasmtime cannot create the engine, or `tier` is cold.
    pub fn new(
        tier: Tier,
        limits: &Limits,
        cache: Option<TrustedArtifacts>,
    ) -> Result<Self, EngineError> {
        Self::with_pool(tier, limits, cache, POOL_INSTANCES)
    }

    /// As [`new`](Self::new), with `instances` slots per lane instead of [`POOL_INSTANCES`]:
    /// at most that many calls run at once on a lane, and a call beyond them fails with
    /// [`EngineError::Unavailable`] (with 0, every call does).
    ///
    /// # Errors
    /// wasmtime cannot create the engine, or `tier` is cold.
    pub fn with_pool(
        tier: Tier,
        limits: &Limits,
        cache: Option<TrustedArtifacts>,
        instances: u32,
    ) -> Result<Self, EngineError> {
        Self::build(tier, limits, cache, instances, LaneState::new())
    }

    /// As [`with_pool`](Self::with_pool), choosing lanes with `lane_state`.
    fn build(
        tier: Tier,
        limits: &Limits,
        cache: Option<TrustedArtifacts>,
        instances: u32,
        lane_state: Arc<LaneState>,
    ) -> Result<Self, EngineError> {
        let config = config(tier, limits, instances)?;
        let lanes = (0..lane_count())
            .map(|_| {
                let engine = wasmtime::Engine::new(&config)
                    .map_err(|e| EngineError::Engine(format!("wasmtime ({tier}): {e}")))?;
                let mut linker = Linker::new(&engine);
                define_imports(&mut linker)?;
                let mut cw_linker = Linker::new(&engine);
                define_cw_imports(&mut cw_linker)?;
                Ok(Lane {
                    engine,
                    linker,
                    cw_linker,
                })
            })
            .collect::<Result<Vec<_>, EngineError>>()?;
        let mut key = Blake3Hasher(blake3::Hasher::new());
        key.write(b"synor wasmtime artifact v1");
        key.write(tier.name().as_bytes());
        key.write(&(MAX_WASM_STACK as u64).to_le_bytes());
        key.write(&INSTRUMENTER_VERSION.to_le_bytes());
        lanes[0]
            .engine
            .precompile_compatibility_hash()
            .hash(&mut key);
        let config_key = Digest(*key.0.finalize().as_bytes());
        Ok(Self {
            tier,
            lanes,
            cache,
            config_key,
            compilations: AtomicU64::new(0),
            instrumented: true,
            lane_state,
            kept: Arc::default(),
            cw_kept: Arc::default(),
        })
    }

    /// Runs modules as they are, without instrumentation: for measuring metering overhead
    /// only (no gas, no deterministic stack limit; a call's gas is reported as 0).
    pub fn uninstrumented(mut self) -> Self {
        self.instrumented = false;
        self
    }

    /// The artifact key of `module` on this engine: code, instrumentation, engine build and
    /// configuration.
    pub fn artifact_key(&self, module: &Instrumented) -> Digest {
        let mut h = blake3::Hasher::new();
        h.update(self.config_key.as_bytes());
        h.update(module.fingerprint.as_bytes());
        h.update(&INSTRUMENTER_VERSION.to_le_bytes());
        Digest(*h.finalize().as_bytes())
    }

    /// wasmtime's error `e`, naming this engine's tier.
    fn failed(&self, e: wasmtime::Error) -> EngineError {
        EngineError::Engine(format!("wasmtime ({}): {e:#}", self.tier))
    }

    /// The module compiled on the first lane, made available on every lane: the others
    /// deserialize its artifact (`serialized`, or serialized here when not given).
    fn finish(
        &self,
        compiled: Module,
        serialized: Option<&[u8]>,
        source: &Arc<Instrumented>,
    ) -> Result<Arc<dyn Compiled>, EngineError> {
        let failed = |e| self.failed(e);
        let range = compiled.image_range();
        let code_bytes = (range.end as usize).saturating_sub(range.start as usize);
        let mut modules = vec![compiled];
        if self.lanes.len() > 1 {
            let own;
            let bytes = match serialized {
                Some(b) => b,
                None => {
                    own = modules[0].serialize().map_err(failed)?;
                    &own[..]
                }
            };
            for lane in &self.lanes[1..] {
                // SAFETY: `Module::deserialize` requires bytes produced by `Module::serialize`
                // of a compatible engine, since it maps them as executable code. These bytes
                // were serialized by this process from a module of the first lane, whose
                // engine has the same configuration as every other lane's (they are built
                // from one `Config`), or are the artifact just loaded for the first lane,
                // which the cache vouches for (see `load_cached`).
                modules.push(unsafe { Module::deserialize(&lane.engine, bytes) }.map_err(failed)?);
            }
        }
        // A CosmWasm contract links the `env` imports, any other module synor's ABI.
        let (mut pres, mut cw_pres) = (Vec::new(), Vec::new());
        for (lane, m) in self.lanes.iter().zip(&modules) {
            match source.cosmwasm {
                Some(_) => cw_pres.push(lane.cw_linker.instantiate_pre(m).map_err(failed)?),
                None => pres.push(lane.linker.instantiate_pre(m).map_err(failed)?),
            }
        }
        Ok(Arc::new(WasmtimeModule {
            tier: self.tier,
            pres,
            cw_pres,
            code_bytes,
            source: source.clone(),
            instrumented: self.instrumented,
            lane_state: self.lane_state.clone(),
            kept: self.kept.clone(),
            cw_kept: self.cw_kept.clone(),
        }))
    }

    /// Compiles `wasm` as it is (for [`uninstrumented`](Self::uninstrumented) measurements).
    ///
    /// # Errors
    /// wasmtime rejects the module.
    pub fn compile_raw(
        &self,
        wasm: &[u8],
        source: &Arc<Instrumented>,
    ) -> Result<Arc<dyn Compiled>, EngineError> {
        let compiled = Module::new(&self.lanes[0].engine, wasm).map_err(|e| self.failed(e))?;
        self.finish(compiled, None, source)
    }
}

impl tier::Engine for WasmtimeEngine {
    fn tier(&self) -> Tier {
        self.tier
    }

    fn compile(&self, module: &Arc<Instrumented>) -> Result<Arc<dyn Compiled>, EngineError> {
        if let Some(m) = self.load_cached(module) {
            return Ok(m);
        }
        self.compilations.fetch_add(1, Ordering::Relaxed);
        let compiled =
            Module::new(&self.lanes[0].engine, &module.bytes).map_err(|e| self.failed(e))?;
        let serialized = if self.cache.is_some() || self.lanes.len() > 1 {
            compiled.serialize().ok()
        } else {
            None
        };
        if let (Some(TrustedArtifacts(cache)), Some(bytes)) = (&self.cache, &serialized) {
            cache.store(&self.artifact_key(module), bytes);
        }
        self.finish(compiled, serialized.as_deref(), module)
    }

    fn load_cached(&self, module: &Arc<Instrumented>) -> Option<Arc<dyn Compiled>> {
        let TrustedArtifacts(cache) = self.cache.as_ref()?;
        let bytes = cache.load(&self.artifact_key(module))?;
        // SAFETY: `Module::deserialize` requires bytes produced by `Module::serialize` of a
        // compatible engine, since it maps them as executable code. A `TrustedArtifacts`
        // returns only bytes that an engine of this node stored under this very key, i.e.
        // `compile`'s own serialized output: it wraps an `FsArtifactCache` (which
        // authenticates each file with its key under the node's secret; its `unsafe`
        // constructor is where a caller vouches for that secret) or a cache whose caller
        // vouched for it in `TrustedArtifacts::new`. The key covers the engine's
        // `precompile_compatibility_hash` and configuration, so that output came from an
        // engine compatible with this one; wasmtime also checks the header's version and
        // configuration and fails cleanly on a mismatch.
        let compiled = unsafe { Module::deserialize(&self.lanes[0].engine, &bytes) }.ok()?;
        self.finish(compiled, Some(&bytes), module).ok()
    }

    fn compilations(&self) -> u64 {
        self.compilations.load(Ordering::Relaxed)
    }
}

/// A module compiled by wasmtime, ready to instantiate on every lane of its engine.
pub struct WasmtimeModule {
    tier: Tier,
    /// One per lane (none for a CosmWasm contract).
    pres: Vec<InstancePre<Host>>,
    /// One per lane for a CosmWasm contract (else none).
    cw_pres: Vec<InstancePre<CwHost>>,
    code_bytes: usize,
    source: Arc<Instrumented>,
    instrumented: bool,
    /// Its engine's.
    lane_state: Arc<LaneState>,
    /// Its engine's.
    kept: Arc<KeptStores>,
    /// Its engine's.
    cw_kept: Arc<KeptStores<CwHost>>,
}

impl Compiled for WasmtimeModule {
    fn tier(&self) -> Tier {
        self.tier
    }

    fn code_bytes(&self) -> usize {
        self.code_bytes
    }

    fn call(&self, ctx: &mut CallContext, call: &Call<'_>) -> Result<Outcome, EngineError> {
        let limit = if self.instrumented {
            match tier::start(&self.source, ctx, call)? {
                tier::Start::Run { limit } => limit,
                tier::Start::Done(outcome) => return Ok(outcome),
            }
        } else {
            tier::check_call(&self.source, call)?;
            u64::try_from(ctx.gas_left).unwrap_or(0)
        };
        let host = Host {
            ctx: std::mem::take(ctx),
            ..Host::default()
        };
        let lane = LaneClaim::new(&self.lane_state, self.pres.len());
        let pre = &self.pres[lane.lane];
        let mut kept = self.kept.take(pre.module().engine(), host);
        let mut trap_global = None;
        let mut result = with_stack(|| self.run(pre, &mut kept.store, call, &mut trap_global));
        if kept.calls > 0 && unavailable(&result).is_some() {
            // The pool may be full of this thread's finished instances: free them and try
            // once more in a store of its own.
            let host = std::mem::take(kept.store.data_mut());
            kept = KeptStore::fresh(pre.module().engine(), host);
            result = with_stack(|| self.run(pre, &mut kept.store, call, &mut trap_global));
        }
        let store = &mut kept.store;
        if let Some(why) = unavailable(&result) {
            // Nothing ran: the context goes back as it came, instantiation not charged.
            *ctx = std::mem::take(&mut store.data_mut().ctx);
            ctx.gas_left = i64::try_from(limit).unwrap_or(i64::MAX);
            return Err(EngineError::Unavailable(why.to_owned()));
        }
        if let Some(g) = store.data().gas
            && let Val::I64(left) = g.get(&mut *store)
        {
            store.data_mut().ctx.gas_left = left;
        }
        let reason = match trap_global.map(|g: wasmtime::Global| g.get(&mut *store)) {
            Some(Val::I32(r)) => r,
            _ => 0,
        };
        let memory_hash = match (call.hash_memory, store.data().memory) {
            (true, Some(m)) => Some(Digest::of(m.data(&*store))),
            _ => None,
        };
        let mut returned = std::mem::take(&mut store.data_mut().ctx);
        self.kept.give_back(kept);
        let (mut results, mut trap) = match result.map_err(|e| trap_of(&e, reason, self.tier)) {
            Ok(values) => (values, None),
            Err(Ok(trap)) => (Vec::new(), Some(trap)),
            Err(Err(fault)) => {
                *ctx = returned;
                return Err(fault);
            }
        };
        let gas_used = if self.instrumented {
            tier::settle(limit, &mut returned, &mut results, &mut trap)
        } else {
            returned.gas_left = i64::try_from(limit).unwrap_or(i64::MAX);
            0
        };
        *ctx = returned;
        Ok(Outcome {
            results,
            trap,
            gas_used,
            memory_hash,
        })
    }

    fn call_cosmwasm(
        &self,
        ctx: &mut CwContext,
        entry: Entry,
        args: &[&[u8]],
    ) -> Result<CwOutcome, EngineError> {
        let limit = match tier::start_cosmwasm(&self.source, ctx, entry, args.len())? {
            Ok(limit) => limit,
            Err(outcome) => return Ok(outcome),
        };
        with_stack(|| self.run_cosmwasm(ctx, entry, args, limit))
    }
}

impl WasmtimeModule {
    /// [`Compiled::call_cosmwasm`] once started, with the stack a call needs.
    fn run_cosmwasm(
        &self,
        ctx: &mut CwContext,
        entry: Entry,
        args: &[&[u8]],
        limit: u64,
    ) -> Result<CwOutcome, EngineError> {
        let lane = LaneClaim::new(&self.lane_state, self.cw_pres.len());
        let pre = &self.cw_pres[lane.lane];
        let host = CwHost {
            ctx: std::mem::take(ctx),
            ..CwHost::default()
        };
        let mut kept = self.cw_kept.take(pre.module().engine(), host);
        let mut instance = pre.instantiate(&mut kept.store);
        if kept.calls > 0 && instance.is_err() {
            // The pool may be full of this thread's finished instances: free them and try
            // once more in a store of its own.
            let host = std::mem::take(kept.store.data_mut());
            kept = KeptStore::fresh(pre.module().engine(), host);
            instance = pre.instantiate(&mut kept.store);
        }
        let instance = match instance {
            Ok(instance) => instance,
            Err(e) => {
                *ctx = std::mem::take(&mut kept.store.data_mut().ctx);
                ctx.gas_left = i64::try_from(limit).unwrap_or(i64::MAX);
                if e.downcast_ref::<wasmtime::Trap>().is_some() {
                    return Err(self.fault(format!("instantiation trapped: {e:#}")));
                }
                // A full instance pool: nothing ran, the call can run on another tier.
                return Err(EngineError::Unavailable(format!("{e:#}")));
            }
        };
        let mut running = CwRunning {
            store: &mut kept.store,
            instance,
            source: &self.source,
            tier: self.tier,
            fault: None,
        };
        if let Err(e) = running.bind() {
            *ctx = std::mem::take(&mut kept.store.data_mut().ctx);
            return Err(e);
        }
        let mut gas_left = running.store.data().ctx.gas_left;
        let result = cosmwasm::call_entry(&mut running, entry, args, &mut gas_left);
        let fault = running.fault.take();
        *ctx = std::mem::take(&mut kept.store.data_mut().ctx);
        self.cw_kept.give_back(kept);
        if let Some(fault) = fault {
            return Err(fault);
        }
        ctx.gas_left = gas_left;
        Ok(tier::settle_cosmwasm(limit, ctx, result))
    }

    /// A fault of this module's engine.
    fn fault(&self, why: String) -> EngineError {
        EngineError::Engine(format!("wasmtime ({}): {why}", self.tier))
    }
}

/// What a wasmtime store holds during one CosmWasm call (the default between calls).
#[derive(Default)]
pub(crate) struct CwHost {
    ctx: CwContext,
    gas: Option<wasmtime::Global>,
    trap: Option<wasmtime::Global>,
    memory: Option<wasmtime::Memory>,
}

/// A CosmWasm instance as [`cosmwasm::call_entry`] drives it (see the cold tier's twin).
struct CwRunning<'s> {
    store: &'s mut Store<CwHost>,
    instance: wasmtime::Instance,
    /// The instrumenter's record of the exports (their result counts).
    source: &'s Instrumented,
    tier: Tier,
    fault: Option<EngineError>,
}

impl CwRunning<'_> {
    /// Finds the instrumenter's globals and the memory.
    fn bind(&mut self) -> Result<(), EngineError> {
        let gas = self
            .instance
            .get_global(&mut *self.store, instrument::GAS_GLOBAL);
        let trap = self
            .instance
            .get_global(&mut *self.store, instrument::TRAP_GLOBAL);
        let memory = self.instance.get_memory(&mut *self.store, "memory");
        if gas.is_none() || memory.is_none() {
            return Err(EngineError::Engine(format!(
                "wasmtime ({}): a CosmWasm contract without gas counter or memory",
                self.tier
            )));
        }
        let data = self.store.data_mut();
        (data.gas, data.trap, data.memory) = (gas, trap, memory);
        Ok(())
    }

    /// Calls export `name` with `args`, its gas taken from and given back to `gas_left`.
    fn invoke(
        &mut self,
        name: &str,
        args: &[u32],
        gas_left: &mut i64,
    ) -> Result<Option<u32>, Trap> {
        let Some(func) = self.instance.get_func(&mut *self.store, name) else {
            return Err(Trap::Host(format!(
                "the contract exports no function {name}"
            )));
        };
        let gas = self.store.data().gas;
        set_gas(&mut *self.store, gas, *gas_left);
        let args: Vec<Val> = args.iter().map(|a| Val::I32(*a as i32)).collect();
        // The result count from the instrumenter's record, not `func.ty` (see `run`).
        let arity = self.source.export(name).map_or_else(
            || func.ty(&*self.store).results().len(),
            |e| e.results.len(),
        );
        let mut out = vec![Val::I32(0); arity];
        let result = func.call(&mut *self.store, &args, &mut out);
        *gas_left = get_gas(&mut *self.store, gas).unwrap_or(*gas_left);
        match result {
            Ok(()) => Ok(out.first().and_then(Val::i32).map(|v| v as u32)),
            Err(e) => {
                let reason = match self.store.data().trap.map(|g| g.get(&mut *self.store)) {
                    Some(Val::I32(r)) => r,
                    _ => 0,
                };
                match trap_of(&e, reason, self.tier) {
                    Ok(trap) => Err(trap),
                    Err(fault) => {
                        self.fault = Some(fault);
                        Err(Trap::Host("engine failure".into()))
                    }
                }
            }
        }
    }
}

fn set_gas(mut store: impl wasmtime::AsContextMut, gas: Option<wasmtime::Global>, left: i64) {
    if let Some(g) = gas {
        // The gas counter is a mutable i64 global of the instrumenter's: this cannot fail.
        let _ = g.set(&mut store, Val::I64(left));
    }
}

fn get_gas(mut store: impl wasmtime::AsContextMut, gas: Option<wasmtime::Global>) -> Option<i64> {
    match gas?.get(&mut store) {
        Val::I64(left) => Some(left),
        _ => None,
    }
}

impl Guest for CwRunning<'_> {
    fn memory(&mut self) -> &mut [u8] {
        match self.store.data().memory {
            Some(m) => m.data_mut(&mut *self.store),
            None => &mut [],
        }
    }

    fn allocate(&mut self, size: u32, gas_left: &mut i64) -> Result<u32, Trap> {
        self.invoke("allocate", &[size], gas_left)?
            .ok_or_else(|| Trap::Host("allocate returned nothing".into()))
    }
}

impl CwInstance for CwRunning<'_> {
    fn call_export(&mut self, name: &str, args: &[u32], gas_left: &mut i64) -> Result<u32, Trap> {
        self.invoke(name, args, gas_left)?
            .ok_or_else(|| Trap::Host(format!("{name} returned nothing")))
    }

    fn deallocate(&mut self, ptr: u32, gas_left: &mut i64) -> Result<(), Trap> {
        self.invoke("deallocate", &[ptr], gas_left).map(|_| ())
    }
}

/// Performs CosmWasm import `import` for a wasmtime host function: [`CwContext::dispatch`],
/// then, if it asks, the contract's `allocate` and [`CwContext::finish`], with the gas moved
/// between the module's counter and the context around each step.
fn cw_host_call(
    caller: &mut Caller<'_, CwHost>,
    import: CwImport,
    args: &[u64],
) -> wasmtime::Result<Option<u64>> {
    let (gas, memory) = (caller.data().gas, caller.data().memory);
    if let Some(left) = get_gas(&mut *caller, gas) {
        caller.data_mut().ctx.gas_left = left;
    }
    let Some(memory) = memory else {
        return Err(wasmtime::Error::new(Trap::Host("no memory".into())));
    };
    let step = {
        let (bytes, host) = memory.data_and_store_mut(&mut *caller);
        let mut view: &mut [u8] = bytes;
        host.ctx.dispatch(import, args, &mut view)
    };
    let result = match step {
        Ok(Step::Done(result)) => Ok(result),
        Ok(Step::Allocate(pending)) => {
            let left = caller.data().ctx.gas_left;
            set_gas(&mut *caller, gas, left);
            let allocate = caller
                .get_export("allocate")
                .and_then(wasmtime::Extern::into_func)
                .ok_or_else(|| wasmtime::Error::new(Trap::Host("no allocate".into())))?;
            let mut out = [Val::I32(0)];
            // A trap in `allocate` is the contract's: it ends the call as it is.
            allocate.call(&mut *caller, &[Val::I32(pending.len() as i32)], &mut out)?;
            if let Some(left) = get_gas(&mut *caller, gas) {
                caller.data_mut().ctx.gas_left = left;
            }
            let ptr = out[0].i32().unwrap_or(0) as u32;
            let (bytes, host) = memory.data_and_store_mut(&mut *caller);
            let mut view: &mut [u8] = bytes;
            host.ctx.finish(pending, ptr, &mut view)
        }
        Err(t) => Err(t),
    };
    let left = caller.data().ctx.gas_left;
    set_gas(&mut *caller, gas, left);
    result.map_err(wasmtime::Error::new)
}

/// Defines every CosmWasm import of module `env`.
fn define_cw_imports(linker: &mut Linker<CwHost>) -> Result<(), EngineError> {
    let ty = |t: &synor_core::abi::Ty| match t {
        synor_core::abi::Ty::I32 => wasmtime::ValType::I32,
        synor_core::abi::Ty::I64 => wasmtime::ValType::I64,
    };
    for import in CwImport::ALL {
        let params: Vec<_> = import.params().iter().map(ty).collect();
        let results: Vec<_> = import.results().iter().map(ty).collect();
        let func_ty = wasmtime::FuncType::new(linker.engine(), params, results);
        linker
            .func_new(
                cosmwasm::IMPORT_MODULE,
                import.name(),
                func_ty,
                move |mut caller, params, results| {
                    let mut args = [0u64; 4];
                    for (a, v) in args.iter_mut().zip(params) {
                        *a = u64::from(v.i32().unwrap_or(0) as u32);
                    }
                    let value = cw_host_call(&mut caller, import, &args[..params.len()])?;
                    if let (Some(slot), Some(v)) = (results.first_mut(), value) {
                        *slot = match import.result() {
                            Some(synor_core::abi::Ty::I64) => Val::I64(v as i64),
                            _ => Val::I32(v as u32 as i32),
                        };
                    }
                    Ok(())
                },
            )
            .map_err(|e| EngineError::Engine(format!("linker: {e:#}")))?;
    }
    Ok(())
}

/// Why the engine could not take a call (a full instance pool), if that is what `result` is.
fn unavailable<T>(result: &wasmtime::Result<T>) -> Option<&str> {
    let e = result.as_ref().err()?;
    e.downcast_ref::<Unavailable>().map(|u| u.0.as_str())
}

/// Calls a store serves (each in a fresh instance of its own) before it is dropped.
///
/// Creating and dropping a store per call cost about 0.5 µs of a call's 1.3 µs on a module
/// without memory, and with two threads calling at once another 0.1-0.2 µs, most of it
/// wasmtime's process-wide store-id counter, one cache line every store creation takes from
/// the other core. Dropping a store resets the memories of all its instances at once, so the
/// kernel's shared address-space lock and pagemap file are taken in bursts by one core rather
/// than alternately by both (on a 17-page memory, the two-thread cost over one thread went from
/// 0.4-0.7 µs per call to 0.06-0.25 µs; `examples/instantiate.rs`). Each call still runs in a
/// new instance with fresh memory, globals and tables from the pool: an instance of an earlier
/// call is never called again and only waits for the store's drop to give its slot back, so a
/// thread holds at most this many minus one finished instances of a lane's pool. A call whose
/// memory grew past [`KEEP_RESIDENT`] drops its store at once: a thread then holds at most
/// that much memory per finished instance, not the memory limit (64 MiB by default) eight
/// times over.
const CALLS_PER_STORE: u32 = 8;

/// What a kept store holds: a call's host state, whose default holds nothing of any call.
trait StoreData: Default + 'static {
    /// The memory of the instance the last call ran in.
    fn memory(&self) -> Option<wasmtime::Memory>;
}

impl StoreData for Host {
    fn memory(&self) -> Option<wasmtime::Memory> {
        self.memory
    }
}

impl StoreData for CwHost {
    fn memory(&self) -> Option<wasmtime::Memory> {
        self.memory
    }
}

/// A store, and the calls it has served.
struct KeptStore<T: 'static = Host> {
    store: Store<T>,
    calls: u32,
}

impl<T: StoreData> KeptStore<T> {
    /// A store of its own, holding `host`.
    fn fresh(engine: &wasmtime::Engine, host: T) -> Self {
        Self {
            store: Store::new(engine, host),
            calls: 0,
        }
    }
}

/// A kept store between calls, holding no call's context: made only by [`Parked::new`], which
/// replaces the store's data with its default.
struct Parked<T: 'static = Host>(KeptStore<T>);

// SAFETY: `Store<T>` is `Send` when `T` is (see `_SEND` below). `Host` is not `Send` only
// because its context's `state` and `blobs` are boxed trait objects and its `calls` an `Arc`
// of one; every other field of a `CallContext` is of a `Send` type (`_SEND`). A `Parked`
// store's `Host` is `Host::default()` (`Parked::new`), whose `state` and `blobs` are `Empty`,
// a unit struct that is `Send`, and whose `calls` is `None`; nothing can reach the store
// until `KeptStores::take` takes it out of the `Parked` again. So
// moving a `Parked` to another thread (the engine dropped there, or a later thread given the
// same `ThreadLocal` slot after this one exited) moves only values of `Send` types.
unsafe impl Send for Parked<Host> {}

// SAFETY: as for `Parked<Host>`: `CwHost` is not `Send` only because its context's `state`,
// `api` and `querier` are boxed trait objects. A `Parked` store's `CwHost` is
// `CwHost::default()` (`Parked::new`): its context is `CwContext::default()`, whose `state`
// is `Empty`, `api` a `Bech32Api` (a `String`) and `querier` `NoChain` (a unit struct), all
// `Send` (`_SEND`); its other fields are a digest, gas figures and counts, a `Journal`,
// `String`s and an empty list of iterators (ranges and keys: byte vectors), and its handles
// `None`. So moving a `Parked<CwHost>` moves only values of `Send` types.
unsafe impl Send for Parked<CwHost> {}

/// What `Parked`'s `Send` rests on, checked when this crate builds.
const _SEND: () = {
    const fn send<T: Send>() {}
    send::<Store<()>>();
    send::<Option<wasmtime::Global>>();
    send::<Option<wasmtime::Memory>>();
    send::<synor_core::abi::Empty>();
    send::<synor_core::abi::Event>();
    send::<synor_core::abi::NewBlob>();
    send::<synor_core::gas::GasSchedule>();
    send::<synor_core::state::Journal>();
    send::<std::collections::BTreeMap<Digest, usize>>();
    send::<synor_core::cosmwasm::Bech32Api>();
    send::<synor_core::cosmwasm::NoChain>();
    send::<synor_core::cosmwasm::CwGas>();
    send::<String>();
};

impl<T: StoreData> Parked<T> {
    fn new(mut kept: KeptStore<T>) -> Self {
        // Nothing of the call stays behind: its context (views of the block state) and the
        // handles of its instance are dropped.
        *kept.store.data_mut() = T::default();
        Self(kept)
    }
}

/// Each calling thread's store for one engine, between its calls.
///
/// Kept per engine, not per thread alone: two engines of a tier (two nodes in one process)
/// called in turn by one thread each keep their own. A store kept by a thread that has exited
/// is dropped with the engine, or taken over by the next thread given the same slot.
struct KeptStores<T: 'static = Host>(ThreadLocal<Cell<Option<Parked<T>>>>)
where
    Parked<T>: Send;

impl<T: 'static> Default for KeptStores<T>
where
    Parked<T>: Send,
{
    fn default() -> Self {
        Self(ThreadLocal::new())
    }
}

impl<T: StoreData> KeptStores<T>
where
    Parked<T>: Send,
{
    /// The calling thread's kept store if it belongs to `engine` (the call's lane), holding
    /// `host`; otherwise a new one (a store of another lane is dropped here).
    fn take(&self, engine: &wasmtime::Engine, host: T) -> KeptStore<T> {
        match self.0.get().and_then(Cell::take) {
            Some(Parked(mut kept)) if wasmtime::Engine::same(kept.store.engine(), engine) => {
                *kept.store.data_mut() = host;
                kept
            }
            _ => KeptStore::fresh(engine, host),
        }
    }

    /// Keeps `kept` for the calling thread's next call, unless it has served
    /// [`CALLS_PER_STORE`] calls or the last call's memory grew past [`KEEP_RESIDENT`] (then
    /// it is dropped, and its instances go back to the pool).
    fn give_back(&self, mut kept: KeptStore<T>) {
        kept.calls += 1;
        let memory = kept
            .store
            .data()
            .memory()
            .map_or(0, |m| m.data_size(&kept.store));
        if kept.calls < CALLS_PER_STORE && memory <= KEEP_RESIDENT {
            self.0.get_or_default().set(Some(Parked::new(kept)));
        }
    }
}

impl WasmtimeModule {
    fn run(
        &self,
        pre: &InstancePre<Host>,
        store: &mut Store<Host>,
        call: &Call<'_>,
        trap_global: &mut Option<wasmtime::Global>,
    ) -> wasmtime::Result<Vec<Value>> {
        let instance = pre.instantiate(&mut *store).map_err(|e| {
            // The instrumenter rejects modules whose instantiation would trap, so a trap here
            // is a fault of the node (never a receipt's trap: it carries no `Trap` any more);
            // any other failure is a full instance pool, and the call can run elsewhere.
            if e.downcast_ref::<wasmtime::Trap>().is_some() {
                wasmtime::Error::msg(format!("instantiation trapped: {e:#}"))
            } else {
                wasmtime::Error::new(Unavailable(format!("{e:#}")))
            }
        })?;
        if self.instrumented {
            let gas = instance
                .get_global(&mut *store, instrument::GAS_GLOBAL)
                .ok_or_else(|| wasmtime::Error::msg("instrumented module without a gas counter"))?;
            let left = store.data().ctx.gas_left;
            gas.set(&mut *store, Val::I64(left))?;
            store.data_mut().gas = Some(gas);
            *trap_global = instance.get_global(&mut *store, instrument::TRAP_GLOBAL);
        }
        store.data_mut().memory = instance.get_memory(&mut *store, "memory");
        call.steps(&self.source, |name, args| {
            let func = instance
                .get_func(&mut *store, name)
                .ok_or_else(|| wasmtime::Error::msg("no such export"))?;
            let args: Vec<Val> = args.iter().map(|v| to_val(*v)).collect();
            // The result count from the instrumenter's record of the export, not `func.ty`:
            // building a `FuncType` takes and drops a reference on the engine's shared type
            // registry entry, a cache line that bounced between the cores of parallel calls.
            let arity = self
                .source
                .export(name)
                .map_or_else(|| func.ty(&*store).results().len(), |e| e.results.len());
            let mut results = vec![Val::I32(0); arity];
            func.call(&mut *store, &args, &mut results)?;
            Ok(results.into_iter().map(from_val).collect())
        })
    }
}

fn to_val(v: Value) -> Val {
    match v {
        Value::I32(v) => Val::I32(v),
        Value::I64(v) => Val::I64(v),
        Value::F32(v) => Val::F32(v),
        Value::F64(v) => Val::F64(v),
    }
}

fn from_val(v: Val) -> Value {
    match v {
        Val::I64(v) => Value::I64(v),
        Val::F32(v) => Value::F32(v),
        Val::F64(v) => Value::F64(v),
        Val::I32(v) => Value::I32(v),
        // The feature set has no other value types.
        _ => Value::I32(0),
    }
}

/// The stable trap for a wasmtime error; the instrumentation's `reason` wins over
/// `unreachable`.
///
/// # Errors
/// wasmtime failed in a way no module the instrumenter accepts can cause (its native stack
/// limit before the instrumented one, a failed instantiation): a fault of the node, never a
/// trap, so that wasmtime's own text never reaches a receipt.
fn trap_of(e: &wasmtime::Error, reason: i32, tier: Tier) -> Result<Trap, EngineError> {
    use wasmtime::Trap as W;
    if let Some(t) = e.downcast_ref::<Trap>() {
        return Ok(t.clone());
    }
    let fault = || EngineError::Engine(format!("wasmtime ({tier}): {e:#}"));
    Ok(match e.downcast_ref::<W>().ok_or_else(fault)? {
        W::UnreachableCodeReached => instrument::trap_reason(reason).unwrap_or(Trap::Unreachable),
        W::MemoryOutOfBounds | W::HeapMisaligned => Trap::MemoryOutOfBounds,
        W::TableOutOfBounds => Trap::TableOutOfBounds,
        W::IndirectCallToNull => Trap::IndirectCallToNull,
        W::IntegerDivisionByZero => Trap::IntegerDivisionByZero,
        W::IntegerOverflow => Trap::IntegerOverflow,
        W::BadConversionToInteger => Trap::BadConversionToInteger,
        W::BadSignature => Trap::BadSignature,
        _ => return Err(fault()),
    })
}

/// Performs `import` for a wasmtime host function.
fn host_call(
    caller: &mut Caller<'_, Host>,
    import: Import,
    args: &[u64],
) -> wasmtime::Result<Option<u64>> {
    let gas = caller.data().gas;
    if let Some(g) = gas
        && let Val::I64(left) = g.get(&mut *caller)
    {
        caller.data_mut().ctx.gas_left = left;
    }
    let result = match caller.data().memory {
        Some(m) => {
            let (bytes, host) = m.data_and_store_mut(&mut *caller);
            let mut view: &mut [u8] = bytes;
            host.ctx.dispatch(import, args, &mut view)
        }
        None => {
            let mut none: Vec<u8> = Vec::new();
            caller.data_mut().ctx.dispatch(import, args, &mut none)
        }
    };
    let left = caller.data().ctx.gas_left;
    if let Some(g) = gas {
        g.set(&mut *caller, Val::I64(left))?;
    }
    result.map_err(wasmtime::Error::new)
}

/// Defines every ABI import as a typed host function: wasmtime passes typed arguments
/// straight through, where a dynamically typed one (`func_new`) converted every argument and
/// result to and from a `Val` slice on each call (3-4 % of a token transfer).
fn define_imports(linker: &mut Linker<Host>) -> Result<(), EngineError> {
    for import in Import::ALL {
        let defined = synor_core::define_typed_import!(
            linker,
            import,
            Caller<'_, Host>,
            wasmtime::Error,
            host_call
        );
        defined.map_err(|e| EngineError::Engine(format!("linker: {e:#}")))?;
    }
    Ok(())
}

/// The engines of all three tiers, sharing one artifact cache; the warm and the hot engine
/// are a [`WasmtimeEngine::pair`].
pub fn engines(
    limits: &Limits,
    cache: Option<TrustedArtifacts>,
) -> Result<[Arc<dyn tier::Engine>; 3], EngineError> {
    let (warm, hot) = WasmtimeEngine::pair(limits, cache)?;
    Ok([
        Arc::new(synor_host_std::WasmiEngine::new(limits)),
        Arc::new(warm),
        Arc::new(hot),
    ])
}

#[cfg(test)]
mod tests {
    use super::{
        CALLS_PER_STORE, KEEP_RESIDENT, KeptStores, LaneClaim, LaneState, MAX_LANES, WasmtimeEngine,
    };
    use std::sync::{Arc, Barrier};
    use synor_core::abi::CallContext;
    use synor_core::gas::GasSchedule;
    use synor_core::instrument::{self, Instrumented, Limits};
    use synor_core::tier::{Call, Compiled, Engine, Tier, Value};

    /// Calls the calling thread's kept store has served, if it keeps one.
    fn kept_calls(kept: &KeptStores) -> Option<u32> {
        let cell = kept.0.get()?;
        let parked = cell.take();
        let calls = parked.as_ref().map(|p| p.0.calls);
        cell.set(parked);
        calls
    }

    fn module(wat: &str) -> Arc<Instrumented> {
        let bytes = wat::parse_str(wat).unwrap();
        let limits = Limits::default();
        Arc::new(instrument::instrument(&bytes, &GasSchedule::V1, &limits).unwrap())
    }

    fn call_one(compiled: &Arc<dyn Compiled>) {
        let mut ctx = CallContext::with_gas(1 << 20);
        let o = compiled.call(&mut ctx, &Call::new("one", &[])).unwrap();
        assert_eq!(o.results, [Value::I32(1)]);
    }

    const ONE: &str = r#"(module (func (export "one") (result i32) (i32.const 1)))"#;

    /// Threads calling at the same time get different lanes even when they have the same
    /// home, and a thread keeps the lane it moved to.
    #[test]
    fn threads_calling_at_once_take_different_lanes() {
        let (held, taken) = (Barrier::new(2), Barrier::new(2));
        let home = MAX_LANES - 1;
        let state = LaneState::new();
        let lanes = std::thread::scope(|s| {
            let first = s.spawn(|| {
                state.home.get_or_default().set(Some(home));
                let claim = LaneClaim::new(&state, MAX_LANES);
                held.wait();
                taken.wait();
                claim.lane
            });
            let second = s.spawn(|| {
                state.home.get_or_default().set(Some(home));
                held.wait();
                let claim = LaneClaim::new(&state, MAX_LANES);
                let lane = claim.lane;
                drop(claim);
                let again = LaneClaim::new(&state, MAX_LANES).lane;
                taken.wait();
                (lane, again)
            });
            (first.join().unwrap(), second.join().unwrap())
        });
        let (first, (second, again)) = lanes;
        assert_ne!(first, second, "two calls at once on one lane");
        assert_eq!(second, again, "the thread's next call moved lanes");
    }

    /// The warm and hot engine of a pair choose lanes together; two pairs (two nodes in one
    /// process) do not see each other's calls, nor drop each other's kept stores when one
    /// thread calls on both in turn.
    #[test]
    fn two_pairs_share_no_lanes_and_no_kept_stores() {
        let limits = Limits::default();
        let pairs = [(); 2].map(|()| WasmtimeEngine::pair(&limits, None).unwrap());
        let [(warm_a, hot_a), (warm_b, _)] = &pairs;
        std::thread::scope(|s| {
            s.spawn(|| {
                for state in [&warm_a.lane_state, &warm_b.lane_state] {
                    state.home.get_or_default().set(Some(0));
                }
                let a = LaneClaim::new(&warm_a.lane_state, MAX_LANES);
                assert_eq!(a.lane, 0);
                let same_pair = LaneClaim::new(&hot_a.lane_state, MAX_LANES);
                assert_ne!(
                    same_pair.lane, 0,
                    "the pair's hot engine took its warm call's lane"
                );
                let other_pair = LaneClaim::new(&warm_b.lane_state, MAX_LANES);
                assert_eq!(
                    other_pair.lane, 0,
                    "another pair's call took a free lane as busy"
                );
            });
        });
        let module = module(ONE);
        let engines = pairs.iter().flat_map(|(warm, hot)| [warm, hot]);
        let compiled: Vec<_> = engines
            .clone()
            .map(|e| e.compile(&module).unwrap())
            .collect();
        std::thread::scope(|s| {
            s.spawn(|| {
                for calls in 1..CALLS_PER_STORE {
                    for (engine, compiled) in engines.clone().zip(&compiled) {
                        call_one(compiled);
                        assert_eq!(kept_calls(&engine.kept), Some(calls), "{:?}", engine.tier);
                    }
                }
            });
        });
    }

    /// Dropping an engine and its modules drops the stores every thread kept for it, also
    /// those of threads that have exited.
    #[test]
    fn dropping_an_engine_drops_its_kept_stores() {
        let hot = WasmtimeEngine::new(Tier::Hot, &Limits::default(), None).unwrap();
        let compiled = hot.compile(&module(ONE)).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                call_one(&compiled);
                assert_eq!(kept_calls(&hot.kept), Some(1));
            });
        });
        call_one(&compiled);
        let kept = Arc::downgrade(&hot.kept);
        drop(compiled);
        assert!(kept.upgrade().is_some(), "the engine holds its kept stores");
        drop(hot);
        assert!(
            kept.upgrade().is_none(),
            "kept stores outlived their engine"
        );
    }

    /// A thread keeps its store between calls, up to [`CALLS_PER_STORE`] calls, but not after
    /// a call whose memory grew past [`KEEP_RESIDENT`]: its pages would stay resident until
    /// the store's last call.
    #[test]
    fn a_store_is_kept_between_calls_unless_its_memory_grew_large() {
        let module = module(
            r#"(module (memory (export "memory") 1)
            (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))"#,
        );
        let engine = WasmtimeEngine::new(Tier::Hot, &Limits::default(), None).unwrap();
        let compiled = engine.compile(&module).unwrap();
        let kept = || kept_calls(&engine.kept);
        std::thread::scope(|s| {
            s.spawn(|| {
                let grow = |pages: i32| {
                    let mut ctx = CallContext::with_gas(1 << 30);
                    let args = [Value::I32(pages)];
                    let o = compiled.call(&mut ctx, &Call::new("grow", &args)).unwrap();
                    assert_eq!(o.results, [Value::I32(1)], "grown from one page");
                };
                for calls in 1..CALLS_PER_STORE {
                    grow(1);
                    assert_eq!(kept(), Some(calls));
                }
                // The store's last call: dropped.
                grow(1);
                assert_eq!(kept(), None);
                grow(1);
                assert_eq!(kept(), Some(1));
                // Past the resident limit: dropped at once.
                grow((KEEP_RESIDENT / 65_536) as i32);
                assert_eq!(kept(), None);
            });
        });
    }
}
