//! The tier manager: runs each call on the best module held for its contract, and compiles
//! promotions on a background thread.
//!
//! The policy and the byte-bounded module cache are core's [`Tiering`]; this module adds the
//! thread. Callers never wait for a tier-up: a call takes an `Arc` of the module it starts on
//! and finishes on it, whatever is swapped in or evicted meanwhile. On a contract's first call,
//! a hot or warm artifact left by an earlier run is loaded (no compilation); otherwise the
//! call runs cold at once.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use synor_core::Digest;
use synor_core::abi::CallContext;
use synor_core::cosmwasm::{CwContext, Entry as CwEntry};
use synor_core::digest::CodeId;
use synor_core::instrument::Instrumented;
use synor_core::tier::{
    Call, Compiled, CwOutcome, Engine, EngineError, Outcome, Tier, TierPolicy, Tiering,
    TieringStats,
};

/// Default budget of compiled code held in memory.
pub const DEFAULT_CACHE_BYTES: usize = 256 << 20;

struct Shared {
    tiering: Mutex<Tiering>,
    /// Modules the background thread really compiled (not loaded from an artifact cache):
    /// instrumented fingerprint and tier.
    compiled: Mutex<Vec<(Digest, Tier)>>,
    /// Modules installed so far: a [`Session`] that sees it change takes up the modules now
    /// held for its contracts (a read of a line that rarely changes, where asking the tier
    /// manager would take its lock).
    installs: AtomicU64,
    /// Background compilations queued or running.
    queued: Mutex<usize>,
    idle: Condvar,
}

impl Shared {
    fn tiering(&self) -> MutexGuard<'_, Tiering> {
        // A panic elsewhere never leaves the tiering state inconsistent: each method of
        // `Tiering` completes or does nothing, so a poisoned lock is still usable.
        self.tiering.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn install(&self, module: &Instrumented, compiled: Arc<dyn Compiled>) {
        self.tiering()
            .install(module.code_id, compiled, module.bytes.len());
        self.installs.fetch_add(1, Ordering::Release);
    }

    fn done(&self) {
        let mut q = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        *q = q.saturating_sub(1);
        self.idle.notify_all();
    }
}

/// How a [`TieredExecutor`] picks tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Start cold (or from a cached artifact) and promote by the policy in the background.
    Tiered(TierPolicy),
    /// Always this tier, compiled on first use (the single-tier baselines).
    Static(Tier),
}

/// Runs calls on tiered engines.
pub struct TieredExecutor {
    engines: [Arc<dyn Engine>; 3],
    mode: Mode,
    shared: Arc<Shared>,
    jobs: Option<Sender<(Arc<Instrumented>, Tier)>>,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TieredExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredExecutor")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl TieredExecutor {
    /// An executor over `engines` (cold, warm, hot) keeping at most `cache_bytes` of compiled
    /// code.
    pub fn new(engines: [Arc<dyn Engine>; 3], mode: Mode, cache_bytes: usize) -> Self {
        let policy = match mode {
            Mode::Tiered(p) => p,
            Mode::Static(_) => TierPolicy::NEVER,
        };
        let shared = Arc::new(Shared {
            tiering: Mutex::new(Tiering::new(policy, cache_bytes)),
            compiled: Mutex::new(Vec::new()),
            installs: AtomicU64::new(0),
            queued: Mutex::new(0),
            idle: Condvar::new(),
        });
        let (jobs, worker) = match mode {
            Mode::Tiered(_) => {
                let (tx, rx) = channel();
                let engines = engines.clone();
                let s = shared.clone();
                let worker = std::thread::Builder::new()
                    .name("synor-tier-up".into())
                    .spawn(move || compile_loop(&engines, &s, &rx))
                    .ok();
                (worker.is_some().then_some(tx), worker)
            }
            Mode::Static(_) => (None, None),
        };
        Self {
            engines,
            mode,
            shared,
            jobs,
            worker,
        }
    }

    /// The module a call of `module` would run on now, compiling or loading it if the contract
    /// has none.
    ///
    /// # Errors
    /// The engine failed to compile.
    pub fn module_for(&self, module: &Arc<Instrumented>) -> Result<Arc<dyn Compiled>, EngineError> {
        let id = module.code_id;
        if let Some(m) = self.shared.tiering().select(&id) {
            return Ok(m);
        }
        let compiled = match self.mode {
            Mode::Static(tier) => self.engines[tier as usize].compile(module)?,
            Mode::Tiered(_) => match self.engines[Tier::Hot as usize]
                .load_cached(module)
                .or_else(|| self.engines[Tier::Warm as usize].load_cached(module))
            {
                Some(m) => m,
                None => self.engines[Tier::Cold as usize].compile(module)?,
            },
        };
        self.shared.install(module, compiled.clone());
        Ok(compiled)
    }

    /// Calls `call.entry` of `module` with `ctx`; returns the outcome and the tier that ran it.
    ///
    /// # Errors
    /// See [`Compiled::call`].
    pub fn call(
        &self,
        module: &Arc<Instrumented>,
        ctx: &mut CallContext,
        call: &Call<'_>,
    ) -> Result<(Outcome, Tier), EngineError> {
        // A session of one call: counted when it is dropped, right after the call.
        self.session().call(module, ctx, call)
    }

    /// A session for a run of calls on one thread (a worker's part of a block), which counts
    /// them in batches.
    pub fn session(&self) -> Session<'_> {
        Session {
            exec: self,
            held: HashMap::new(),
            installs: self.shared.installs.load(Ordering::Acquire),
        }
    }

    /// Counts `calls` calls of `module` served by `tier` with `gas` in all, and queues the
    /// promotion that makes due.
    fn count(&self, module: &Arc<Instrumented>, tier: Tier, calls: u64, gas: u64) {
        let promote = self
            .shared
            .tiering()
            .record_calls(&module.code_id, tier, calls, gas);
        if let (Some(target), Some(jobs)) = (promote, &self.jobs) {
            *self.shared.queued.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            if jobs.send((module.clone(), target)).is_err() {
                self.shared.done();
                self.shared.tiering().failed(&module.code_id, target);
            }
        }
    }

    /// Waits until no background compilation is queued or running (benches and tests).
    pub fn wait_idle(&self) {
        let mut q = self.shared.queued.lock().unwrap_or_else(|e| e.into_inner());
        while *q > 0 {
            q = self.shared.idle.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The tier a call of contract `module` would run on now, if it has a module.
    pub fn current_tier(&self, module: &Instrumented) -> Option<Tier> {
        self.shared.tiering().current(&module.code_id)
    }

    /// The tier a call of code `id` would run on now, if it has a module.
    pub fn tier_of(&self, id: &CodeId) -> Option<Tier> {
        self.shared.tiering().current(id)
    }

    /// Counts of the tier manager.
    pub fn stats(&self) -> TieringStats {
        self.shared.tiering().stats()
    }

    /// Bytes of compiled code held.
    pub fn cached_bytes(&self) -> usize {
        self.shared.tiering().cached_bytes()
    }

    /// The modules promotions really compiled (rather than loaded from the artifact cache), in
    /// order: instrumented fingerprint and tier.
    pub fn compiled_in_background(&self) -> Vec<(Digest, Tier)> {
        self.shared
            .compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Real compilations per engine (cold, warm, hot), excluding artifacts loaded from a cache.
    pub fn compilations(&self) -> [u64; 3] {
        [0, 1, 2].map(|i| self.engines[i].compilations())
    }
}

/// Calls of one contract a [`Session`] counts before reporting them to the tier manager.
pub const SESSION_BATCH: u64 = 32;

/// Calls made on one thread through a [`TieredExecutor`] ([`TieredExecutor::session`]), such
/// as a worker's part of a block.
///
/// A session holds the module each contract it called runs on (taking up the manager's choice
/// again whenever a module was installed since: promotions take effect at the next call), and
/// counts calls per contract in batches of [`SESSION_BATCH`] (and when dropped): parallel
/// workers then meet on the shared tier manager about once per batch instead of twice per
/// call (its lock was a cache line bouncing between cores on every transaction). The tier
/// only decides speed, never a result, so counting a batch at once changes only when a
/// promotion starts.
pub struct Session<'a> {
    exec: &'a TieredExecutor,
    held: HashMap<CodeId, Held>,
    /// The executor's install count when the held modules were last chosen.
    installs: u64,
}

/// A contract's module and the calls on it not yet counted.
struct Held {
    module: Arc<Instrumented>,
    compiled: Arc<dyn Compiled>,
    /// The cold module calls fall back to, compiled at the first fallback.
    cold: Option<Arc<dyn Compiled>>,
    calls: u64,
    gas: u64,
}

impl Held {
    /// Runs `call` on the held module, or cold when its engine cannot take the call now (e.g.
    /// its instance pool is full), which gives the same result. Returns the outcome and the
    /// tier that ran it.
    fn run<O>(
        &mut self,
        exec: &TieredExecutor,
        mut call: impl FnMut(&dyn Compiled) -> Result<O, EngineError>,
    ) -> Result<(O, Tier), EngineError> {
        match call(&*self.compiled) {
            Err(EngineError::Unavailable(_)) if self.compiled.tier() != Tier::Cold => {
                let cold = match &self.cold {
                    Some(cold) => cold,
                    None => self
                        .cold
                        .insert(exec.engines[Tier::Cold as usize].compile(&self.module)?),
                };
                Ok((call(&**cold)?, Tier::Cold))
            }
            other => Ok((other?, self.compiled.tier())),
        }
    }

    /// Hands the calls counted since the last report to the tier manager, as calls of the
    /// held module's tier.
    fn report(&mut self, exec: &TieredExecutor) {
        if self.calls > 0 {
            exec.count(&self.module, self.compiled.tier(), self.calls, self.gas);
            self.calls = 0;
            self.gas = 0;
        }
    }
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("contracts", &self.held.len())
            .finish_non_exhaustive()
    }
}

impl Session<'_> {
    /// As [`TieredExecutor::call`].
    ///
    /// # Errors
    /// See [`Compiled::call`].
    pub fn call(
        &mut self,
        module: &Arc<Instrumented>,
        ctx: &mut CallContext,
        call: &Call<'_>,
    ) -> Result<(Outcome, Tier), EngineError> {
        self.serve(module, |o: &Outcome| o.gas_used, |m| m.call(ctx, call))
    }

    /// Calls CosmWasm entry point `entry` of `module` with `args` on the best tier held, as
    /// [`call`](Self::call) does an export ([`Compiled::call_cosmwasm`]).
    ///
    /// # Errors
    /// See [`Compiled::call_cosmwasm`].
    pub fn call_cosmwasm(
        &mut self,
        module: &Arc<Instrumented>,
        ctx: &mut CwContext,
        entry: CwEntry,
        args: &[&[u8]],
    ) -> Result<(CwOutcome, Tier), EngineError> {
        self.serve(
            module,
            |o: &CwOutcome| o.gas_used,
            |m| m.call_cosmwasm(ctx, entry, args),
        )
    }

    /// Runs `call` on the module held for `module` (chosen anew when the tier manager
    /// installed something since), and counts it with the gas `gas` reads off its outcome.
    fn serve<O>(
        &mut self,
        module: &Arc<Instrumented>,
        gas: impl Fn(&O) -> u64,
        call: impl FnMut(&dyn Compiled) -> Result<O, EngineError>,
    ) -> Result<(O, Tier), EngineError> {
        let installs = self.exec.shared.installs.load(Ordering::Acquire);
        if installs != self.installs {
            self.installs = installs;
            // The manager's choice for every held contract under one lock; the counts go to
            // the manager (the same lock) once it is released.
            let changed: Vec<(CodeId, Arc<dyn Compiled>)> = {
                let mut tiering = self.exec.shared.tiering();
                self.held
                    .iter()
                    .filter_map(|(id, held)| {
                        let now = tiering.select(id)?;
                        (!Arc::ptr_eq(&now, &held.compiled)).then_some((*id, now))
                    })
                    .collect()
            };
            for (id, now) in changed {
                if let Some(held) = self.held.get_mut(&id) {
                    // The calls so far were served by the module held until now.
                    held.report(self.exec);
                    held.compiled = now;
                }
            }
        }
        let held = match self.held.entry(module.code_id) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(Held {
                module: module.clone(),
                compiled: self.exec.module_for(module)?,
                cold: None,
                calls: 0,
                gas: 0,
            }),
        };
        let (outcome, tier) = held.run(self.exec, call)?;
        let used = gas(&outcome);
        if tier == held.compiled.tier() {
            held.calls += 1;
            held.gas = held.gas.saturating_add(used);
            if held.calls >= SESSION_BATCH {
                held.report(self.exec);
            }
        } else {
            // Ran cold in place of the held module: counted at once, as itself.
            self.exec.count(module, tier, 1, used);
        }
        Ok((outcome, tier))
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        for held in self.held.values_mut() {
            held.report(self.exec);
        }
    }
}

impl Drop for TieredExecutor {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

fn compile_loop(
    engines: &[Arc<dyn Engine>; 3],
    shared: &Shared,
    jobs: &Receiver<(Arc<Instrumented>, Tier)>,
) {
    while let Ok((module, tier)) = jobs.recv() {
        let engine = &engines[tier as usize];
        let before = engine.compilations();
        let result = engine.compile(&module);
        if engine.compilations() > before {
            shared
                .compiled
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((module.fingerprint, tier));
        }
        match result {
            Ok(compiled) => shared.install(&module, compiled),
            Err(_) => shared.tiering().failed(&module.code_id, tier),
        }
        shared.done();
    }
}
