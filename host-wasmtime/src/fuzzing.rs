//! Differential fuzzing of the tiers: the entry point of the `tiers` fuzz target, also run on
//! seeded inputs under `cargo test`.
//!
//! An input becomes a module: either one from wasm-smith, restricted to synor's deterministic
//! feature set and importing any of the ABI's functions, or one built from a template that
//! pushes a limit to its edge (a function's locals and operand height at the engines' limits,
//! recursion with large frames, segments at and past the end of their table or memory, memory
//! growth up to the limit, a trap in the middle of work). Every module the instrumenter
//! accepts must compile on every tier, and every call of every export, with arguments, input,
//! state and gas drawn from the input, must give the same outcome on cold, warm and hot:
//! results, trap, gas, memory hash, return data, storage writes, events and blobs. A
//! rejection is fine (it is deterministic); an engine error is a finding.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, OnceLock};

use arbitrary::{Result, Unstructured};
use synor_core::Digest;
use synor_core::abi::{CallContext, IMPORT_MODULE, Import, Ty};
use synor_core::gas::GasSchedule;
use synor_core::instrument::{self, ENGINE_MAX_LOCALS, Limits, ValueType};
use synor_core::tier::{Call, Engine, Value};

/// The engines of the three tiers, made once per process: creating wasmtime's pooled engines
/// for every input would cost more than running it.
fn engines() -> &'static [Arc<dyn Engine>; 3] {
    static ENGINES: OnceLock<[Arc<dyn Engine>; 3]> = OnceLock::new();
    ENGINES.get_or_init(|| crate::engine::engines(&Limits::default(), None).expect("engines"))
}

/// Runs the module `data` describes on every tier; panics when the tiers disagree or an
/// engine fails on a module the instrumenter accepted. Returns how many calls agreed, or
/// `None` when no module was accepted (the input made none, or the instrumenter rejected it).
pub fn tiers(data: &[u8]) -> Option<usize> {
    let mut u = Unstructured::new(data);
    let wasm = module(&mut u).ok()?;
    let limits = Limits::default();
    let module = instrument::instrument(&wasm, &GasSchedule::V1, &limits).ok()?;
    let module = Arc::new(module);
    let compiled: Vec<_> = engines()
        .iter()
        .map(|e| match e.compile(&module) {
            Ok(c) => c,
            Err(err) => panic!("{} rejected an accepted module: {err}", e.tier()),
        })
        .collect();
    let mut calls = 0;
    for export in module.exports.iter().take(8) {
        let Ok(call) = CallInput::arbitrary(&mut u, &export.params, module.instantiation_gas)
        else {
            break;
        };
        let mut first = None;
        for c in &compiled {
            let mut ctx = call.context(module.code_id);
            let outcome = match c.call(
                &mut ctx,
                &Call::new(&export.name, &call.args).hashing_memory(),
            ) {
                Ok(o) => o,
                Err(e) => panic!("{}: `{}` failed: {e}", c.tier(), export.name),
            };
            let seen = (
                outcome,
                ctx.return_data,
                ctx.writes.into_writes().collect::<Vec<_>>(),
                ctx.events,
                ctx.new_blobs,
            );
            match &first {
                None => first = Some(seen),
                Some(f) => assert_eq!(
                    f,
                    &seen,
                    "cold and {} differ on `{}`",
                    c.tier(),
                    export.name
                ),
            }
        }
        calls += 1;
    }
    Some(calls)
}

/// What one call takes from the input.
struct CallInput {
    args: Vec<Value>,
    input: Vec<u8>,
    state: BTreeMap<Vec<u8>, Vec<u8>>,
    gas: u64,
}

impl CallInput {
    fn arbitrary(
        u: &mut Unstructured<'_>,
        params: &[ValueType],
        instantiation: u64,
    ) -> Result<Self> {
        let args = params
            .iter()
            .map(|t| {
                Ok(match t {
                    ValueType::I32 => Value::I32(small_or_any(u)? as i32),
                    ValueType::I64 => Value::I64(small_or_any(u)?),
                    ValueType::F32 => Value::F32(u.arbitrary()?),
                    ValueType::F64 => Value::F64(u.arbitrary()?),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let input: Vec<u8> = u.arbitrary()?;
        let mut state = BTreeMap::new();
        for _ in 0..u.int_in_range(0..=3)? {
            state.insert(u.arbitrary::<Vec<u8>>()?, u.arbitrary::<Vec<u8>>()?);
        }
        // Around the instantiation's cost, small budgets that run out in the middle of work,
        // and enough for most modules to finish.
        let gas = match u.int_in_range(0..=3)? {
            0 => instantiation
                .saturating_add(u.int_in_range(0..=64)?)
                .saturating_sub(32),
            1 => instantiation + u.int_in_range(0..=20_000)?,
            2 => instantiation + u.int_in_range(0..=2_000_000)?,
            _ => instantiation + 5_000_000,
        };
        Ok(Self {
            args,
            input,
            state,
            gas,
        })
    }

    fn context(&self, contract: Digest) -> CallContext {
        CallContext::new(
            contract,
            [7; 32],
            self.input.clone(),
            self.gas,
            Box::new(self.state.clone()),
            Box::new(BTreeMap::<Digest, Arc<[u8]>>::new()),
        )
    }
}

/// A small integer (loop counts, depths, indices near zero) or any.
fn small_or_any(u: &mut Unstructured<'_>) -> Result<i64> {
    if u.arbitrary()? {
        u.int_in_range(-2..=300)
    } else {
        u.arbitrary()
    }
}

/// A module: from wasm-smith, or from an edge template.
fn module(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    // wasm-smith for two inputs in five; the edges share the rest.
    let text = match u.int_in_range(0..=19)? {
        0..=7 => return smith(u),
        8..=10 => frame(u)?,
        11..=12 => recursion(u)?,
        13..=15 => segments(u)?,
        16..=17 => memory(u)?,
        _ => trap_after_work(u)?,
    };
    wat::parse_str(&text).map_err(|e| {
        eprintln!("WAT {e}");
        arbitrary::Error::IncorrectFormat
    })
}

/// A module of wasm-smith's within the deterministic feature set, importing from the ABI.
fn smith(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    let config = wasm_smith::Config {
        available_imports: Some(abi_imports()),
        allow_start_export: false,
        export_everything: true,
        bulk_memory_enabled: false,
        multi_value_enabled: true,
        saturating_float_to_int_enabled: true,
        sign_extension_ops_enabled: true,
        extended_const_enabled: true,
        reference_types_enabled: false,
        simd_enabled: false,
        relaxed_simd_enabled: false,
        threads_enabled: false,
        tail_call_enabled: false,
        exceptions_enabled: false,
        gc_enabled: false,
        memory64_enabled: false,
        wide_arithmetic_enabled: false,
        custom_page_sizes_enabled: false,
        compact_imports_enabled: false,
        max_memories: 1,
        max_tables: 1,
        // Up to twice the memory limit, so that growth and initial sizes reach past it.
        max_memory32_bytes: 2 * 1024 * 65_536,
        max_table_elements: 70_000,
        max_funcs: u.int_in_range(1..=30)?,
        max_instructions: u.int_in_range(10..=2_000)?,
        max_nesting_depth: u.int_in_range(1..=20)?,
        max_data_segments: 8,
        max_element_segments: 8,
        // In bounds, out of bounds, anywhere: equally often.
        memory_offset_choices: wasm_smith::MemoryOffsetChoices(1, 1, 1),
        min_exports: 1,
        ..wasm_smith::Config::default()
    };
    Ok(wasm_smith::Module::new(config, u)?.to_bytes())
}

/// A module importing every function of the ABI, for wasm-smith to import from.
fn abi_imports() -> Vec<u8> {
    use wasm_encoder::{EntityType, ImportSection, Module, TypeSection, ValType};
    let (mut types, mut imports) = (TypeSection::new(), ImportSection::new());
    let val = |t: &Ty| match t {
        Ty::I32 => ValType::I32,
        Ty::I64 => ValType::I64,
    };
    for (i, import) in Import::ALL.iter().enumerate() {
        types.ty().function(
            import.params().iter().map(val),
            import.results().iter().map(val),
        );
        imports.import(IMPORT_MODULE, import.name(), EntityType::Function(i as u32));
    }
    let mut module = Module::new();
    module.section(&types).section(&imports);
    module.finish()
}

/// A count at, near or past `limit`, or small.
fn near(u: &mut Unstructured<'_>, limit: u64) -> Result<u64> {
    Ok(match u.int_in_range(0..=3)? {
        0 => u.int_in_range(0..=64)?,
        1 => limit.saturating_sub(u.int_in_range(0..=8)?),
        2 => limit + u.int_in_range(0..=8)?,
        _ => u.int_in_range(0..=limit + limit / 4)?,
    })
}

/// A function whose locals and operand height sit near the limits (the instrumenter's, or
/// the cold engine's fixed ones), called once and recursively.
fn frame(u: &mut Unstructured<'_>) -> Result<String> {
    let limits = Limits::default();
    let locals = near(u, u64::from(limits.max_locals)).map(|l| l.min(ENGINE_MAX_LOCALS + 8))?;
    let height = near(u, u64::from(limits.max_operand_height))?;
    let params = u.int_in_range(0..=8u64.min(locals))?;
    // `height` values (locals and constants), then added up to one.
    let mut body = String::new();
    for i in 0..height {
        if locals > 0 && i % 2 == 0 {
            writeln!(body, "local.get {}", i % locals).unwrap();
        } else {
            writeln!(body, "i64.const {i}").unwrap();
        }
    }
    body.push_str(&"i64.add\n".repeat(height.saturating_sub(1) as usize));
    let (params_decl, locals_decl) = (
        format!("(param{})", " i64".repeat(params as usize)),
        format!("(local{})", " i64".repeat((locals - params) as usize)),
    );
    let value = if height == 0 { "i64.const 3" } else { "" };
    let args = "(i64.const 1) ".repeat(params as usize);
    Ok(format!(
        r#"(module
            (func $f {params_decl} (result i64) {locals_decl} {body} {value})
            (func (export "once") (result i64) (call $f {args}))
            (func $r (export "recurse") (param i32) (result i64)
                (if (result i64) (local.get 0)
                    (then (i64.add (call $f {args}) (call $r (i32.sub (local.get 0) (i32.const 1)))))
                    (else (i64.const 0)))))"#
    ))
}

/// Recursion with a frame of drawn size, to a depth around where the instrumented limit trips.
fn recursion(u: &mut Unstructured<'_>) -> Result<String> {
    let locals = near(u, 512)?.min(4_096);
    let height = u.int_in_range(1..=64u64)?;
    let push = "(local.get 1) ".repeat(height as usize);
    let pop = "i64.add ".repeat(height as usize);
    Ok(format!(
        r#"(module
            (func $f (export "deep") (param i32) (param i64) (result i64) (local{})
                (if (result i64) (i32.eqz (local.get 0))
                    (then (local.get 1))
                    (else (call $f (i32.sub (local.get 0) (i32.const 1))
                        (i64.add (local.get 1) (i64.const 1))) {push} {pop}))))"#,
        " i64".repeat(locals as usize)
    ))
}

/// Data and element segments at, just inside and just past the end of their memory or table.
fn segments(u: &mut Unstructured<'_>) -> Result<String> {
    let pages = u.int_in_range(0..=3u32)?;
    let table = u.int_in_range(0..=70_000u32)?;
    let mut text = format!(
        r#"(module (memory (export "memory") {pages}) (table {table} funcref)
            (type $t (func (result i32)))
            (func $a (result i32) i32.const 11)
            (func (export "call") (param i32) (result i32) (call_indirect (type $t) (local.get 0)))
            (func (export "load") (param i32) (result i32) (i32.load8_u (local.get 0)))"#
    );
    for _ in 0..u.int_in_range(0..=3)? {
        let len = u.int_in_range(0..=3u32)?;
        let end = u64::from(pages) * 65_536;
        let offset = near(u, end)?.saturating_sub(u64::from(len)) as u32;
        write!(
            text,
            r#" (data (i32.const {offset}) "{}")"#,
            "x".repeat(len as usize)
        )
        .unwrap();
    }
    for _ in 0..u.int_in_range(0..=3)? {
        let len = u.int_in_range(0..=3u32)?;
        let offset = near(u, u64::from(table))?.saturating_sub(u64::from(len)) as u32;
        write!(
            text,
            " (elem (i32.const {offset}){})",
            " $a".repeat(len as usize)
        )
        .unwrap();
    }
    text.push(')');
    Ok(text)
}

/// Memory growth, fills and copies up to and past the memory limit.
fn memory(u: &mut Unstructured<'_>) -> Result<String> {
    let limit = u64::from(Limits::default().max_memory_pages);
    let initial = near(u, limit)?.min(limit + 2);
    let max = if u.arbitrary()? {
        format!(" {}", near(u, limit)?.max(initial))
    } else {
        String::new()
    };
    Ok(format!(
        r#"(module (memory (export "memory") {initial}{max})
            (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
            (func (export "grow_twice") (param i32) (result i32)
                (drop (memory.grow (local.get 0))) (memory.grow (local.get 0)))
            (func (export "fill") (param i32 i32) (memory.fill (local.get 0) (i32.const 7) (local.get 1)))
            (func (export "copy") (param i32 i32) (memory.copy (local.get 0) (i32.const 0) (local.get 1)))
            (func (export "size") (result i32) (memory.size)))"#
    ))
}

/// Storage writes, events and stores, then a trap drawn from the input after some of them:
/// whatever ran before the trap must be discarded identically.
fn trap_after_work(u: &mut Unstructured<'_>) -> Result<String> {
    let traps = [
        "unreachable",
        "(drop (i32.div_u (i32.const 1) (i32.const 0)))",
        "(drop (i32.load (i32.const 70000)))",
        "(drop (i32.trunc_f32_s (f32.const nan)))",
        "(call $w (i32.const 0) (i32.const 100000))",
        "(call $abort (i32.const 0) (i32.const 4))",
        "",
    ];
    let mut body = String::new();
    for _ in 0..u.int_in_range(1..=6)? {
        let step = match u.int_in_range(0..=3)? {
            0 => "(call $w (i32.const 0) (i32.const 4))",
            1 => "(call $e (i32.const 0) (i32.const 2) (i32.const 4) (i32.const 8))",
            2 => "(i64.store (i32.const 16) (i64.const -1))",
            _ => "(call $return (i32.const 0) (i32.const 8))",
        };
        body.push_str(step);
        body.push('\n');
    }
    body.push_str(traps[u.choose_index(traps.len())?]);
    Ok(format!(
        r#"(module
            (import "synor" "storage_write" (func $sw (param i32 i32 i32 i32)))
            (import "synor" "emit_event" (func $e (param i32 i32 i32 i32)))
            (import "synor" "return_data" (func $return (param i32 i32)))
            (import "synor" "abort" (func $abort (param i32 i32)))
            (memory (export "memory") 1)
            (data (i32.const 0) "key-value")
            (func $w (param i32 i32) (call $sw (local.get 0) (i32.const 3) (i32.const 4) (local.get 1)))
            (func (export "work") {body}))"#
    ))
}

#[cfg(test)]
mod tests {
    /// The entry point on seeded inputs: the same checks as the fuzz target, under
    /// `cargo test`; most inputs make a module that runs (a generator that made none would
    /// check nothing).
    #[test]
    fn tiers_agree_on_seeded_inputs() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let (mut modules, mut calls) = (0, 0);
        for len in (0..160).map(|i| 64 + i * 97) {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            if let Some(n) = super::tiers(&data) {
                modules += 1;
                calls += n;
            }
        }
        assert!(
            modules >= 100 && calls >= 200,
            "{modules} modules, {calls} calls"
        );
    }
}
