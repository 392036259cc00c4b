//! The cold tier: wasmi, an interpreter with lazy compilation, so a contract's first call pays
//! only for the functions it runs.
//!
//! Limits are set so that wasmi's own never trip before the instrumented ones: the instrumented
//! call depth (at most [`Limits::max_stack_units`] frames, each of at most four value slots per
//! unit) stays far below wasmi's recursion and value-stack limits, so a deep recursion traps
//! with the same `stack_overflow`, at the same gas, as on every other tier.

use std::sync::Arc;

use synor_core::Digest;
use synor_core::abi::{CallContext, Import, Trap};
use synor_core::cosmwasm::{self, CwContext, CwImport, CwInstance, Entry, Guest, Step};
use synor_core::instrument::{self, Instrumented, Limits};
use synor_core::tier::{self, Call, Compiled, CwOutcome, EngineError, Outcome, Tier, Value};
use wasmi::{Caller, Config, Linker, Module, Store, Val};

/// What a wasmi store holds during one call.
struct Host {
    ctx: CallContext,
    gas: Option<wasmi::Global>,
    trap: Option<wasmi::Global>,
    memory: Option<wasmi::Memory>,
}

/// A [`Trap`] raised by a host call, carried through wasmi.
#[derive(Debug)]
struct HostTrap(Trap);

impl std::fmt::Display for HostTrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl wasmi::errors::HostError for HostTrap {}

/// The cold-tier engine.
pub struct WasmiEngine {
    engine: wasmi::Engine,
    linker: Arc<Linker<Host>>,
    cw_linker: Arc<Linker<CwHost>>,
}

impl std::fmt::Debug for WasmiEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WasmiEngine")
    }
}

impl WasmiEngine {
    /// An engine for modules instrumented with `limits`.
    pub fn new(limits: &Limits) -> Self {
        let mut config = Config::default();
        config
            .compilation_mode(wasmi::CompilationMode::Lazy)
            // Features: exactly the instrumenter's (it validated already; wasmi must agree).
            .wasm_mutable_global(true)
            .wasm_sign_extension(true)
            .wasm_saturating_float_to_int(true)
            .wasm_multi_value(true)
            .wasm_bulk_memory(true)
            .wasm_extended_const(true)
            .wasm_multi_memory(false)
            .wasm_reference_types(false)
            .wasm_tail_call(false)
            .wasm_custom_page_sizes(false)
            .wasm_wide_arithmetic(false)
            .ignore_custom_sections(true)
            // Each frame weighs at least one stack unit and holds at most four slots per unit:
            // wasmi's limits sit well above what the instrumented depth limit allows.
            .set_max_recursion_depth(limits.max_stack_units as usize + 1024)
            .set_max_stack_height((limits.max_stack_units as usize * 4 + 65_536) * 16 * 4);
        let engine = wasmi::Engine::new(&config);
        let mut linker = Linker::new(&engine);
        define_imports(&mut linker);
        let mut cw_linker = Linker::new(&engine);
        define_cw_imports(&mut cw_linker);
        Self {
            engine,
            linker: Arc::new(linker),
            cw_linker: Arc::new(cw_linker),
        }
    }
}

impl Default for WasmiEngine {
    fn default() -> Self {
        Self::new(&Limits::default())
    }
}

impl tier::Engine for WasmiEngine {
    fn tier(&self) -> Tier {
        Tier::Cold
    }

    fn compile(&self, module: &Arc<Instrumented>) -> Result<Arc<dyn Compiled>, EngineError> {
        let compiled = Module::new(&self.engine, &module.bytes)
            .map_err(|e| EngineError::Engine(format!("wasmi: {e}")))?;
        Ok(Arc::new(WasmiModule {
            module: compiled,
            linker: self.linker.clone(),
            cw_linker: self.cw_linker.clone(),
            engine: self.engine.clone(),
            source: module.clone(),
        }))
    }

    fn compilations(&self) -> u64 {
        0
    }
}

/// A module ready for wasmi.
pub struct WasmiModule {
    module: Module,
    linker: Arc<Linker<Host>>,
    cw_linker: Arc<Linker<CwHost>>,
    engine: wasmi::Engine,
    source: Arc<Instrumented>,
}

impl Compiled for WasmiModule {
    fn tier(&self) -> Tier {
        Tier::Cold
    }

    fn code_bytes(&self) -> usize {
        // wasmi translates lazily; its internal code is a few times the wasm.
        self.source.bytes.len() * 3
    }

    fn call(&self, ctx: &mut CallContext, call: &Call<'_>) -> Result<Outcome, EngineError> {
        let limit = match tier::start(&self.source, ctx, call)? {
            tier::Start::Run { limit } => limit,
            tier::Start::Done(outcome) => return Ok(outcome),
        };
        let host = Host {
            ctx: std::mem::take(ctx),
            gas: None,
            trap: None,
            memory: None,
        };
        let mut store = Store::new(&self.engine, host);
        let result = self.run(&mut store, call);
        let reason = match store.data().trap.map(|g| g.get(&store)) {
            Some(Val::I32(r)) => r,
            _ => 0,
        };
        let Host {
            ctx: mut returned,
            gas,
            trap: _,
            memory,
        } = store.data_mut().take();
        if let Some(g) = gas
            && let Val::I64(left) = g.get(&store)
        {
            returned.gas_left = left;
        }
        let memory_hash = match (call.hash_memory, memory) {
            (true, Some(m)) => Some(Digest::of(m.data(&store))),
            _ => None,
        };
        let (mut results, mut trap) = match result.map_err(|e| trap_of(&e, reason)) {
            Ok(values) => (values, None),
            Err(Ok(trap)) => (Vec::new(), Some(trap)),
            Err(Err(fault)) => {
                *ctx = returned;
                return Err(fault);
            }
        };
        let gas_used = tier::settle(limit, &mut returned, &mut results, &mut trap);
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
        let host = CwHost {
            ctx: std::mem::take(ctx),
            gas: None,
            trap: None,
            memory: None,
        };
        let mut store = Store::new(&self.engine, host);
        let result = match self
            .cw_linker
            .instantiate_and_start(&mut store, &self.module)
        {
            Ok(instance) => {
                let mut running = CwRunning {
                    store: &mut store,
                    instance,
                    fault: None,
                };
                running.bind()?;
                let mut gas_left = running.store.data().ctx.gas_left;
                let result = cosmwasm::call_entry(&mut running, entry, args, &mut gas_left);
                if let Some(fault) = running.fault.take() {
                    *ctx = std::mem::take(&mut store.data_mut().ctx);
                    return Err(fault);
                }
                store.data_mut().ctx.gas_left = gas_left;
                result
            }
            Err(e) => {
                *ctx = std::mem::take(&mut store.data_mut().ctx);
                return Err(EngineError::Engine(format!("wasmi: {e}")));
            }
        };
        *ctx = std::mem::take(&mut store.data_mut().ctx);
        Ok(tier::settle_cosmwasm(limit, ctx, result))
    }
}

/// What a wasmi store holds during one CosmWasm call.
struct CwHost {
    ctx: CwContext,
    gas: Option<wasmi::Global>,
    trap: Option<wasmi::Global>,
    memory: Option<wasmi::Memory>,
}

/// A CosmWasm instance as [`cosmwasm::call_entry`] drives it. Gas moves between the caller's
/// count and the module's counter around each export call; a failure of wasmi itself is kept
/// in `fault` (the node's fault, never a trap).
struct CwRunning<'s> {
    store: &'s mut Store<CwHost>,
    instance: wasmi::Instance,
    fault: Option<EngineError>,
}

impl CwRunning<'_> {
    /// Finds the instrumenter's globals and the memory.
    fn bind(&mut self) -> Result<(), EngineError> {
        let get = |name| self.instance.get_global(&*self.store, name);
        let (gas, trap) = (get(instrument::GAS_GLOBAL), get(instrument::TRAP_GLOBAL));
        let memory = self.instance.get_memory(&*self.store, "memory");
        if gas.is_none() || memory.is_none() {
            return Err(EngineError::Engine(
                "wasmi: a CosmWasm contract without gas counter or memory".into(),
            ));
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
        let Some(func) = self.instance.get_func(&*self.store, name) else {
            return Err(Trap::Host(format!(
                "the contract exports no function {name}"
            )));
        };
        let gas = self.store.data().gas;
        set_gas(&mut *self.store, gas, *gas_left);
        let args: Vec<Val> = args.iter().map(|a| Val::I32(*a as i32)).collect();
        let mut out: Vec<Val> = func
            .ty(&*self.store)
            .results()
            .iter()
            .map(|t| Val::default_for_ty(*t))
            .collect();
        let result = func.call(&mut *self.store, &args, &mut out);
        *gas_left = get_gas(&*self.store, gas).unwrap_or(*gas_left);
        match result {
            Ok(()) => Ok(out.first().and_then(Val::i32).map(|v| v as u32)),
            Err(e) => {
                let reason = match self.store.data().trap.map(|g| g.get(&*self.store)) {
                    Some(Val::I32(r)) => r,
                    _ => 0,
                };
                match trap_of(&e, reason) {
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

fn set_gas<T>(store: impl wasmi::AsContextMut<Data = T>, gas: Option<wasmi::Global>, left: i64) {
    let mut store = store;
    if let Some(g) = gas {
        // The gas counter is a mutable i64 global of the instrumenter's: this cannot fail.
        let _ = g.set(&mut store, Val::I64(left));
    }
}

fn get_gas<T>(store: impl wasmi::AsContext<Data = T>, gas: Option<wasmi::Global>) -> Option<i64> {
    match gas?.get(&store) {
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

/// Performs CosmWasm import `import` for a wasmi host function: [`CwContext::dispatch`],
/// then, if it asks, the contract's `allocate` and [`CwContext::finish`], with the gas
/// moved between the module's counter and the context around each step.
fn cw_host_call(
    caller: &mut Caller<'_, CwHost>,
    import: CwImport,
    args: &[u64],
) -> Result<Option<u64>, wasmi::Error> {
    let (gas, memory) = (caller.data().gas, caller.data().memory);
    if let Some(left) = get_gas(&*caller, gas) {
        caller.data_mut().ctx.gas_left = left;
    }
    let Some(memory) = memory else {
        return Err(wasmi::Error::host(HostTrap(Trap::Host("no memory".into()))));
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
                .and_then(wasmi::Extern::into_func)
                .ok_or_else(|| wasmi::Error::host(HostTrap(Trap::Host("no allocate".into()))))?;
            let mut out = [Val::I32(0)];
            // A trap in `allocate` is the contract's: it ends the call as it is.
            allocate.call(&mut *caller, &[Val::I32(pending.len() as i32)], &mut out)?;
            if let Some(left) = get_gas(&*caller, gas) {
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
    result.map_err(|t| wasmi::Error::host(HostTrap(t)))
}

/// Defines every CosmWasm import of module `env`.
fn define_cw_imports(linker: &mut Linker<CwHost>) {
    let ty = |t: &synor_core::abi::Ty| match t {
        synor_core::abi::Ty::I32 => wasmi::ValType::I32,
        synor_core::abi::Ty::I64 => wasmi::ValType::I64,
    };
    for import in CwImport::ALL {
        let params: Vec<_> = import.params().iter().map(ty).collect();
        let results: Vec<_> = import.results().iter().map(ty).collect();
        let defined = linker.func_new(
            cosmwasm::IMPORT_MODULE,
            import.name(),
            wasmi::FuncType::new(params, results),
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
        );
        // Names are unique in the import table.
        let _ = defined;
    }
}

impl Host {
    fn take(&mut self) -> Host {
        Host {
            ctx: std::mem::take(&mut self.ctx),
            gas: self.gas.take(),
            trap: self.trap.take(),
            memory: self.memory.take(),
        }
    }
}

impl WasmiModule {
    fn run(&self, store: &mut Store<Host>, call: &Call<'_>) -> Result<Vec<Value>, wasmi::Error> {
        let instance = self
            .linker
            .instantiate_and_start(&mut *store, &self.module)?;
        let gas = instance
            .get_global(&*store, instrument::GAS_GLOBAL)
            .ok_or_else(|| wasmi::Error::new("instrumented module without a gas counter"))?;
        let left = store.data().ctx.gas_left;
        gas.set(&mut *store, Val::I64(left))
            .map_err(|e| wasmi::Error::new(e.to_string()))?;
        store.data_mut().gas = Some(gas);
        store.data_mut().trap = instance.get_global(&*store, instrument::TRAP_GLOBAL);
        store.data_mut().memory = instance.get_memory(&*store, "memory");
        call.steps(&self.source, |name, args| {
            let func = instance
                .get_func(&*store, name)
                .ok_or_else(|| wasmi::Error::new("no such export"))?;
            let args: Vec<Val> = args.iter().map(|v| to_val(*v)).collect();
            let ty = func.ty(&*store);
            let mut results: Vec<Val> = ty
                .results()
                .iter()
                .map(|t| Val::default_for_ty(*t))
                .collect();
            func.call(&mut *store, &args, &mut results)?;
            Ok(results.into_iter().map(from_val).collect())
        })
    }
}

fn to_val(v: Value) -> Val {
    match v {
        Value::I32(v) => Val::I32(v),
        Value::I64(v) => Val::I64(v),
        Value::F32(v) => Val::F32(wasmi::F32::from_bits(v)),
        Value::F64(v) => Val::F64(wasmi::F64::from_bits(v)),
    }
}

fn from_val(v: Val) -> Value {
    match v {
        Val::I64(v) => Value::I64(v),
        Val::F32(v) => Value::F32(v.to_bits()),
        Val::F64(v) => Value::F64(v.to_bits()),
        Val::I32(v) => Value::I32(v),
        // The feature set has no other value types.
        other => Value::I32(other.i32().unwrap_or(0)),
    }
}

/// The stable trap for a wasmi error; the instrumentation's `reason` wins over `unreachable`.
///
/// # Errors
/// wasmi failed in a way no module the instrumenter accepts can cause (its own stack limit
/// before the instrumented one, a failed instantiation): a fault of the node, never a trap,
/// so that wasmi's own text never reaches a receipt.
fn trap_of(e: &wasmi::Error, reason: i32) -> Result<Trap, EngineError> {
    use wasmi::TrapCode as C;
    if let Some(HostTrap(t)) = e.downcast_ref::<HostTrap>() {
        return Ok(t.clone());
    }
    let fault = || EngineError::Engine(format!("wasmi: {e}"));
    Ok(match e.as_trap_code().ok_or_else(fault)? {
        C::UnreachableCodeReached => instrument::trap_reason(reason).unwrap_or(Trap::Unreachable),
        C::MemoryOutOfBounds => Trap::MemoryOutOfBounds,
        C::TableOutOfBounds => Trap::TableOutOfBounds,
        C::IndirectCallToNull => Trap::IndirectCallToNull,
        C::IntegerDivisionByZero => Trap::IntegerDivisionByZero,
        C::IntegerOverflow => Trap::IntegerOverflow,
        C::BadConversionToInteger => Trap::BadConversionToInteger,
        C::BadSignature => Trap::BadSignature,
        _ => return Err(fault()),
    })
}

/// Performs `import` for a wasmi host function.
fn host_call(
    caller: &mut Caller<'_, Host>,
    import: Import,
    args: &[u64],
) -> Result<Option<u64>, wasmi::Error> {
    let gas = caller.data().gas;
    let memory = caller.data().memory;
    if let Some(g) = gas
        && let Val::I64(left) = g.get(&*caller)
    {
        caller.data_mut().ctx.gas_left = left;
    }
    let result = match memory {
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
        g.set(&mut *caller, Val::I64(left))
            .map_err(|e| wasmi::Error::new(e.to_string()))?;
    }
    result.map_err(|t| wasmi::Error::host(HostTrap(t)))
}

/// Defines every ABI import as a typed wasmi host function, as the wasmtime tiers do.
fn define_imports(linker: &mut Linker<Host>) {
    for import in Import::ALL {
        let defined = synor_core::define_typed_import!(
            linker,
            import,
            Caller<'_, Host>,
            wasmi::Error,
            host_call
        );
        // Names are unique in the ABI table (checked by core's tests).
        let _ = defined;
    }
}
