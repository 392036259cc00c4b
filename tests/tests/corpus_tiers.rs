//! Contracts nobody on the team wrote, compiled by the field's own toolchains (CosmWasm, NEAR,
//! Soroban, ink!...: the shared corpus), give identical outcomes on every tier.
//!
//! A contract imports its own chain's host functions, which synor does not offer; to run its
//! code anyway, each imported function becomes a defined function that traps (and an imported
//! memory, table or global a defined one of the same type), without moving any index. Then
//! every exported function runs on cold, warm and hot with zero arguments and a budget that
//! stops the longer ones mid-way: results, trap, gas and memory must agree. Whatever the
//! instrumenter rejects (features outside synor's set, limits) is rejected identically for
//! every tier, before any engine sees it.

use std::collections::BTreeMap;
use std::sync::Arc;

use synor_core::abi::{CallContext, Empty};
use synor_core::gas::GasSchedule;
use synor_core::instrument::{self, Limits, ValueType};
use synor_core::tier::{Call, Value};
use synor_host_wasmtime::engine::engines;
use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasmparser::{Parser, Payload, TypeRef};

/// `wasm` without imports: imported functions trap, imported memories, tables and globals
/// are defined ones of the same type (globals zero); the start function is dropped. `None`
/// when it does not parse.
fn without_imports(wasm: &[u8]) -> Option<Vec<u8>> {
    use wasm_encoder::{
        CodeSection, Function, FunctionSection, GlobalSection, Instruction, MemorySection, Module,
        RawSection, TableSection,
    };
    let mut r = RoundtripReencoder;
    let (mut funcs, mut tables, mut memories, mut globals) = (vec![], vec![], vec![], vec![]);
    let mut sections: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut code = CodeSection::new();
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.ok()?;
        match &payload {
            Payload::ImportSection(reader) => {
                for import in reader.clone().into_imports() {
                    match import.ok()?.ty {
                        TypeRef::Func(t) => funcs.push(t),
                        TypeRef::Table(t) => tables.push(r.table_type(t).ok()?),
                        TypeRef::Memory(m) => memories.push(r.memory_type(m).ok()?),
                        TypeRef::Global(g) => globals.push(r.global_type(g).ok()?),
                        _ => return None,
                    }
                }
                continue;
            }
            Payload::FunctionSection(reader) => {
                let mut s = FunctionSection::new();
                for t in funcs
                    .iter()
                    .copied()
                    .chain(reader.clone().into_iter().flatten())
                {
                    s.function(t);
                }
                sections.push((3, encode(&s)));
                continue;
            }
            Payload::TableSection(reader) => {
                let mut s = TableSection::new();
                for t in &tables {
                    s.table(*t);
                }
                for t in reader.clone() {
                    s.table(r.table_type(t.ok()?.ty).ok()?);
                }
                tables.clear();
                sections.push((4, encode(&s)));
                continue;
            }
            Payload::MemorySection(reader) => {
                let mut s = MemorySection::new();
                for m in memories.iter().copied() {
                    s.memory(m);
                }
                for m in reader.clone() {
                    s.memory(r.memory_type(m.ok()?).ok()?);
                }
                memories.clear();
                sections.push((5, encode(&s)));
                continue;
            }
            Payload::GlobalSection(reader) => {
                let mut s = GlobalSection::new();
                for g in &globals {
                    s.global(*g, &zero(g.val_type)?);
                }
                for g in reader.clone() {
                    let g = g.ok()?;
                    s.global(r.global_type(g.ty).ok()?, &r.const_expr(g.init_expr).ok()?);
                }
                globals.clear();
                sections.push((6, encode(&s)));
                continue;
            }
            Payload::CodeSectionStart { .. } => {
                for _ in &funcs {
                    let mut f = Function::new([]);
                    f.instruction(&Instruction::Unreachable);
                    f.instruction(&Instruction::End);
                    code.function(&f);
                }
                continue;
            }
            Payload::CodeSectionEntry(body) => {
                let range = body.range();
                code.raw(&wasm[range.start as usize..range.end as usize]);
                continue;
            }
            Payload::StartSection { .. } | Payload::CustomSection(_) => continue,
            _ => {}
        }
        if let Some((id, range)) = payload.as_section()
            && id != 10
        {
            sections.push((id, wasm[range.start as usize..range.end as usize].to_vec()));
        }
    }
    // Imported kinds the module defines none of get sections of their own.
    let mut extra = Vec::new();
    if !tables.is_empty() {
        let mut s = TableSection::new();
        tables.iter().for_each(|t| {
            s.table(*t);
        });
        extra.push((4, encode(&s)));
    }
    if !memories.is_empty() {
        let mut s = MemorySection::new();
        memories.iter().for_each(|m| {
            s.memory(*m);
        });
        extra.push((5, encode(&s)));
    }
    if !globals.is_empty() {
        let mut s = GlobalSection::new();
        for g in &globals {
            s.global(*g, &zero(g.val_type)?);
        }
        extra.push((6, encode(&s)));
    }
    let has_functions = sections.iter().any(|(id, _)| *id == 3);
    if !has_functions && !funcs.is_empty() {
        let mut s = FunctionSection::new();
        funcs.iter().for_each(|t| {
            s.function(*t);
        });
        extra.push((3, encode(&s)));
    }
    if !code.is_empty() {
        extra.push((10, encode(&code)));
    }
    let mut all = sections;
    all.extend(extra);
    // Sections in the order the binary format requires (data count before code).
    let order = |id: u8| match id {
        12 => 9.5,
        10 => 10.0,
        11 => 11.0,
        id => f64::from(id),
    };
    all.sort_by(|a, b| order(a.0).total_cmp(&order(b.0)));
    let mut module = Module::new();
    for (id, data) in &all {
        module.section(&RawSection { id: *id, data });
    }
    Some(module.finish())
}

/// A section's contents (without its id and size).
fn encode(section: &impl wasm_encoder::Encode) -> Vec<u8> {
    let mut bytes = Vec::new();
    section.encode(&mut bytes);
    // Drop the size prefix: `RawSection` writes its own.
    let mut reader = wasmparser::BinaryReader::new(&bytes, 0);
    let size = reader.read_var_u32().unwrap() as usize;
    bytes[bytes.len() - size..].to_vec()
}

fn zero(t: wasm_encoder::ValType) -> Option<wasm_encoder::ConstExpr> {
    use wasm_encoder::{ConstExpr, ValType};
    Some(match t {
        ValType::I32 => ConstExpr::i32_const(0),
        ValType::I64 => ConstExpr::i64_const(0),
        ValType::F32 => ConstExpr::f32_const(0.0.into()),
        ValType::F64 => ConstExpr::f64_const(0.0.into()),
        _ => return None,
    })
}

/// What one share of the corpus gave: modules accepted, calls made, rejections by reason.
#[derive(Default)]
struct Tally {
    accepted: usize,
    calls: usize,
    rejected: BTreeMap<String, usize>,
}

/// Runs every export of every module of `files` on every tier.
fn run_all(
    files: &[std::path::PathBuf],
    engines: &[Arc<dyn synor_core::tier::Engine>; 3],
) -> Tally {
    let limits = Limits::default();
    let mut t = Tally::default();
    for path in files {
        let wasm = std::fs::read(path).unwrap();
        let Some(stubbed) = without_imports(&wasm) else {
            *t.rejected.entry("does not parse".into()).or_default() += 1;
            continue;
        };
        let module = match instrument::instrument(&stubbed, &GasSchedule::V1, &limits) {
            Ok(m) => Arc::new(m),
            Err(e) => {
                let why = e.to_string();
                let key = why.split(" at byte").next().unwrap_or(&why).to_string();
                *t.rejected.entry(key).or_default() += 1;
                continue;
            }
        };
        t.accepted += 1;
        let compiled: Vec<_> = engines
            .iter()
            .map(|e| e.compile(&module).unwrap())
            .collect();
        if module.cosmwasm.is_some() {
            t.calls += cosmwasm_entries_agree(path, &module, &compiled);
            continue;
        }
        for export in module.exports.iter().take(12) {
            let args: Vec<Value> = export
                .params
                .iter()
                .map(|t| match t {
                    ValueType::I32 => Value::I32(0),
                    ValueType::I64 => Value::I64(0),
                    ValueType::F32 => Value::F32(0),
                    ValueType::F64 => Value::F64(0),
                })
                .collect();
            let call = Call::new(&export.name, &args).hashing_memory();
            let mut first = None;
            for c in &compiled {
                let mut ctx = CallContext::new(
                    module.code_id,
                    [1; 32],
                    Vec::new(),
                    module.instantiation_gas + 2_000_000,
                    Box::new(BTreeMap::<Vec<u8>, Vec<u8>>::new()),
                    Box::new(Empty),
                );
                let outcome = c.call(&mut ctx, &call).unwrap_or_else(|e| {
                    panic!("{}: {} `{}`: {e}", path.display(), c.tier(), export.name)
                });
                match &first {
                    None => first = Some(outcome),
                    Some(f) => assert_eq!(
                        f,
                        &outcome,
                        "{}: cold and {} differ on `{}`",
                        path.display(),
                        c.tier(),
                        export.name
                    ),
                }
            }
            t.calls += 1;
        }
    }
    t
}

/// Calls every CosmWasm entry point of `module` (its imports stubbed) with an empty message
/// on every tier, in turn, over one state: each call's result, gas and writes must be the
/// same on every tier. Returns the calls made.
fn cosmwasm_entries_agree(
    path: &std::path::Path,
    module: &synor_core::instrument::Instrumented,
    compiled: &[Arc<dyn synor_core::tier::Compiled>],
) -> usize {
    use synor_core::cosmwasm::tx::CwChain;
    use synor_core::cosmwasm::{CwContext, Entry};
    let chain = CwChain::default();
    let me = synor_core::digest::Digest([7; 32]);
    let env = serde_json::to_vec(&chain.env(&me, 5, Some(0))).unwrap();
    let info = format!(r#"{{"sender":"{}","funds":[]}}"#, chain.address(&[1; 32])).into_bytes();
    let reply = br#"{"id":1,"payload":"","gas_used":0,"result":{"error":"x"}}"#.to_vec();
    let Some(interface) = &module.cosmwasm else {
        return 0;
    };
    let mut state: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut calls = 0;
    let migrate_info = format!(
        r#"{{"sender":"{}","old_migrate_version":null}}"#,
        chain.address(&[1; 32])
    )
    .into_bytes();
    for (entry, params) in &interface.entries {
        let args: Vec<&[u8]> = match (entry, params) {
            (Entry::Instantiate | Entry::Execute, _) => vec![&env, &info, b"{}"],
            (Entry::Reply, _) => vec![&env, &reply],
            // cosmwasm-std 2.2's `migrate` with its `MigrateInfo`.
            (Entry::Migrate, 3) => vec![&env, b"{}", &migrate_info],
            _ => vec![&env, b"{}"],
        };
        let mut first = None;
        for c in compiled {
            let mut ctx = CwContext::new(me, 50_000_000, Box::new(state.clone()));
            ctx.read_only = *entry == Entry::Query;
            let outcome = c
                .call_cosmwasm(&mut ctx, *entry, &args)
                .unwrap_or_else(|e| {
                    panic!("{}: {} `{}`: {e}", path.display(), c.tier(), entry.name())
                });
            let writes: Vec<_> = std::mem::take(&mut ctx.writes).into_writes().collect();
            match &first {
                None => first = Some((outcome, writes)),
                Some(f) => assert_eq!(
                    f,
                    &(outcome, writes),
                    "{}: cold and {} differ on `{}`",
                    path.display(),
                    c.tier(),
                    entry.name()
                ),
            }
        }
        if let Some((outcome, writes)) = first
            && outcome.result.is_ok()
        {
            for (k, v) in writes {
                match v {
                    Some(v) => state.insert(k, v),
                    None => state.remove(&k),
                };
            }
        }
        calls += 1;
    }
    calls
}

#[test]
fn corpus_contracts_agree_on_every_tier() {
    let Some(corpus) = synor_tests::corpus_dir() else {
        return;
    };
    let engines = engines(&Limits::default(), None).unwrap();
    let mut files: Vec<_> = walk(&corpus);
    files.sort();
    // Two threads: compiling 254 contracts twice each is most of the time.
    let (a, b) = files.split_at(files.len() / 2);
    let [x, y] = std::thread::scope(|s| {
        [a, b]
            .map(|share| s.spawn(|| run_all(share, &engines)))
            .map(|h| h.join().unwrap())
    });
    let (accepted, calls) = (x.accepted + y.accepted, x.calls + y.calls);
    let mut rejected = x.rejected;
    for (k, n) in y.rejected {
        *rejected.entry(k).or_default() += n;
    }
    println!(
        "{accepted} of {} corpus modules accepted, {calls} calls agree; rejected: {rejected:?}",
        files.len()
    );
    assert!(
        accepted >= 200 && calls >= 1_000,
        "{accepted} accepted, {calls} calls; rejected: {rejected:?}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "wasm") {
            out.push(path);
        }
    }
    out
}
