//! Hostile input, in one table: what a contract author, a transaction sender, a peer that
//! supplies code or records, or someone who can write the data directory can throw at a node,
//! and the error each gets. Every execution row runs on the cold, warm and hot tier, which
//! must agree exactly; every store row ends with the honest records still there, byte for
//! byte, and the store's counts exact. The rows are the threat model of `SECURITY.md`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use synor_cli::workload;
use synor_core::abi::{CallContext, Empty, Trap};
use synor_core::gas::GasSchedule;
use synor_core::instrument::{self, Instrumented, Limits};
use synor_core::sched::{AccessSet, MAX_ACCESS_KEYS};
use synor_core::tier::{Call, Outcome, Tier};
use synor_host_std::block::{self, BlockExecutor, BlockState, Mode, Transaction};
use synor_host_std::tiered::{DEFAULT_CACHE_BYTES, Mode as TierMode, TieredExecutor};
use synor_host_std::{ArtifactSecret, FsArtifactCache};
use synor_host_wasmtime::engine::{TrustedArtifacts, WasmtimeEngine, engines};

/// Gas for every execution row: far more than any of them may use.
const GAS: u64 = 100_000_000;

/// Runs `entry` of `wat` with `input` on every tier; they must agree; returns the outcome.
fn on_every_tier(wat: &str, entry: &str, input: &[u8]) -> Result<Outcome, String> {
    let wasm = wat::parse_str(wat).map_err(|e| e.to_string())?;
    let module = instrument::instrument(&wasm, &GasSchedule::V1, &Limits::default())
        .map_err(|e| format!("rejected: {e}"))?;
    let module = Arc::new(module);
    let mut first: Option<(Outcome, String)> = None;
    for engine in engines(&Limits::default(), None).unwrap().iter() {
        let compiled = engine.compile(&module).map_err(|e| e.to_string())?;
        let mut ctx = CallContext::new(
            module.code_id,
            [1; 32],
            input.to_vec(),
            GAS,
            Box::new(BTreeMap::<Vec<u8>, Vec<u8>>::new()),
            Box::new(Empty),
        );
        let outcome = compiled
            .call(&mut ctx, &Call::new(entry, &[]).hashing_memory())
            .map_err(|e| format!("{}: {e}", engine.tier()))?;
        let effects = format!(
            "{:?} {:?} {:?}",
            ctx.writes.writes().collect::<Vec<_>>(),
            ctx.events,
            ctx.new_blobs
        );
        match &first {
            None => first = Some((outcome, effects)),
            Some(f) => assert_eq!(f, &(outcome, effects), "cold and {} differ", engine.tier()),
        }
    }
    let (outcome, _) = first.unwrap();
    Ok(outcome)
}

/// The trap's name and whether the whole gas limit went, or the rejection.
fn trap(result: Result<Outcome, String>) -> String {
    match result {
        Ok(o) => format!(
            "{}{}",
            o.trap.as_ref().map_or("returned", Trap::name),
            if o.gas_used == GAS {
                ", whole limit"
            } else {
                ""
            }
        ),
        Err(e) => e,
    }
}

/// A contract that calls `import` from `synor` with `args` once its memory is `pages` pages.
fn calling(import: &str, params: &str, args: &str, pages: u32) -> String {
    format!(
        r#"(module (import "synor" "{import}" (func $f (param {params})))
            (memory (export "memory") {pages})
            (func (export "run") (call $f {args})))"#
    )
}

fn infinite_loop() -> String {
    trap(on_every_tier(
        r#"(module (func (export "run") (loop br 0)))"#,
        "run",
        &[],
    ))
}

fn deep_recursion() -> String {
    trap(on_every_tier(
        r#"(module (func $f (export "run") (local i64 i64 i64) call $f))"#,
        "run",
        &[],
    ))
}

fn memory_bomb() -> String {
    trap(on_every_tier(
        r#"(module (memory 1) (func (export "run") (drop (memory.grow (i32.const 65535)))))"#,
        "run",
        &[],
    ))
}

fn initial_memory_bomb() -> String {
    trap(on_every_tier(
        r#"(module (memory 65536) (func (export "run")))"#,
        "run",
        &[],
    ))
}

fn large_key() -> String {
    // A 120,000-byte key.
    let wat = calling(
        "storage_write",
        "i32 i32 i32 i32",
        "(i32.const 0) (i32.const 120000) (i32.const 0) (i32.const 4)",
        2,
    );
    trap(on_every_tier(&wat, "run", &[]))
}

fn large_value() -> String {
    let wat = calling(
        "storage_write",
        "i32 i32 i32 i32",
        "(i32.const 0) (i32.const 32) (i32.const 0) (i32.const 200000)",
        4,
    );
    trap(on_every_tier(&wat, "run", &[]))
}

fn large_blob() -> String {
    // 9 MiB, past the 8 MiB cap.
    let wat = calling(
        "blob_store",
        "i32 i32 i32",
        "(i32.const 0) (i32.const 9437184) (i32.const 0)",
        145,
    );
    trap(on_every_tier(&wat, "run", &[]))
}

fn pointer_out_of_memory() -> String {
    let wat = calling(
        "storage_write",
        "i32 i32 i32 i32",
        "(i32.const 65530) (i32.const 32) (i32.const 0) (i32.const 4)",
        1,
    );
    trap(on_every_tier(&wat, "run", &[]))
}

fn malformed_module() -> String {
    let e = instrument::instrument(
        b"\0asm\x01\0\0\0\x01\xff\xff",
        &GasSchedule::V1,
        &Limits::default(),
    );
    e.map(|_| "accepted".to_string())
        .unwrap_or_else(|e| format!("rejected: {e}"))
}

fn oversized_module() -> String {
    let mut wasm = b"\0asm\x01\0\0\0".to_vec();
    // A custom section of 9 MiB.
    let payload = 9 << 20;
    wasm.push(0);
    let mut n = payload + 2;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            wasm.push(byte);
            break;
        }
        wasm.push(byte | 0x80);
    }
    wasm.extend_from_slice(&[1, b'x']);
    wasm.resize(wasm.len() + payload, 0);
    instrument::instrument(&wasm, &GasSchedule::V1, &Limits::default())
        .map(|_| "accepted".to_string())
        .unwrap_or_else(|e| format!("rejected: {e}"))
}

fn engine_limit_module() -> String {
    let mut body = "i32.const 1\n".repeat(70_000);
    body.push_str(&"drop\n".repeat(70_000));
    trap(on_every_tier(
        &format!(r#"(module (func (export "run") {body}))"#),
        "run",
        &[],
    ))
}

fn segment_out_of_bounds() -> String {
    trap(on_every_tier(
        r#"(module (table 1 funcref) (func $f) (elem (i32.const 5) $f) (func (export "run")))"#,
        "run",
        &[],
    ))
}

/// Two contracts' artifacts swapped, or one with a byte flipped, in the artifact directory:
/// each contract recompiles and returns its own result.
fn artifacts(tamper: impl Fn(&std::path::Path, &std::path::Path)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let secret = ArtifactSecret::generate().unwrap();
    let open = || {
        // SAFETY: the secret was generated by this test and stays in it; only the engines
        // store into the cache, their own compiled output.
        let fs = unsafe { FsArtifactCache::open(dir.path(), &secret, Default::default()) };
        Arc::new(fs.unwrap())
    };
    let module = |value: i32| {
        let wat = format!(r#"(module (func (export "run") (result i32) i32.const {value}))"#);
        let wasm = wat::parse_str(&wat).unwrap();
        Arc::new(instrument::instrument(&wasm, &GasSchedule::V1, &Limits::default()).unwrap())
    };
    let (a, b) = (module(1007), module(7000));
    let cache = open();
    let hot = WasmtimeEngine::cranelift(Some(TrustedArtifacts::fs(cache.clone()))).unwrap();
    use synor_core::tier::Engine;
    hot.compile(&a).unwrap();
    hot.compile(&b).unwrap();
    tamper(
        &cache.path_of(&hot.artifact_key(&a)),
        &cache.path_of(&hot.artifact_key(&b)),
    );
    // A restarted node.
    let cache = open();
    let hot = WasmtimeEngine::cranelift(Some(TrustedArtifacts::fs(cache.clone()))).unwrap();
    let run = |m: &Arc<Instrumented>| {
        let loaded = hot.load_cached(m).is_some();
        let compiled = hot.compile(m).unwrap();
        let mut ctx = CallContext::with_gas(1_000_000);
        let o = compiled.call(&mut ctx, &Call::new("run", &[])).unwrap();
        (loaded, o.results)
    };
    let (ra, rb) = (run(&a), run(&b));
    format!(
        "loaded {}/{}, results {:?} {:?}, {} rejected",
        ra.0,
        rb.0,
        ra.1,
        rb.1,
        cache.rejected()
    )
}

fn swapped_artifacts() -> String {
    artifacts(|a, b| {
        let tmp = a.with_extension("tmp");
        std::fs::rename(a, &tmp).unwrap();
        std::fs::rename(b, a).unwrap();
        std::fs::rename(&tmp, b).unwrap();
    })
}

fn tampered_artifact() -> String {
    artifacts(|a, _| {
        let mut bytes = std::fs::read(a).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        std::fs::write(a, bytes).unwrap();
    })
}

fn oversized_access_set() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("contracts/wasm/token_v1.wasm");
    let deployments =
        workload::deploy(&[("token".into(), std::fs::read(path).unwrap())], 1).unwrap();
    let exec = Arc::new(TieredExecutor::new(
        engines(&Limits::default(), None).unwrap(),
        TierMode::Static(Tier::Cold),
        DEFAULT_CACHE_BYTES,
    ));
    let (genesis, mut txs) = workload::transfers(&deployments, 0, 10, 3, 1);
    let access = txs[1].access.get_or_insert_with(AccessSet::default);
    access
        .reads
        .extend((0..=MAX_ACCESS_KEYS as u64).map(|i| i.to_le_bytes().to_vec()));
    let state = Arc::new(BlockState::new(genesis.snapshot()));
    let txs: Arc<[Transaction]> = txs.into();
    let receipts = block::execute_block(
        &BlockExecutor::new(),
        &exec,
        &workload::contracts(&deployments),
        &state,
        1,
        &txs,
        Mode::Sequential,
    )
    .unwrap()
    .receipts;
    format!(
        "{}, gas {}; the others: {:?}",
        receipts[1].trap.as_deref().unwrap_or("ran"),
        receipts[1].gas_used,
        [&receipts[0].trap, &receipts[2].trap]
    )
}

#[test]
fn hostile_input_gets_its_error_on_every_tier() {
    type Row = (&'static str, fn() -> String, &'static str);
    let rows: [Row; 15] = [
        ("infinite loop", infinite_loop, "out_of_gas, whole limit"),
        ("deep recursion", deep_recursion, "stack_overflow"),
        ("memory bomb: memory.grow", memory_bomb, "memory_limit"),
        (
            "memory bomb: initial pages",
            initial_memory_bomb,
            "rejected: initial memory pages is 65536, over the limit of 1024",
        ),
        ("large key", large_key, "too_large"),
        ("large value", large_value, "too_large"),
        ("large blob", large_blob, "too_large"),
        (
            "pointer outside memory",
            pointer_out_of_memory,
            "memory_out_of_bounds, whole limit",
        ),
        (
            "malformed module",
            malformed_module,
            "rejected: invalid module at byte",
        ),
        (
            "oversized module",
            oversized_module,
            "rejected: module size is",
        ),
        (
            "frame past an engine's limits",
            engine_limit_module,
            "rejected: operand stack height in a function is 70000",
        ),
        (
            "segment outside its table",
            segment_out_of_bounds,
            "rejected: element segment 0 ends at 6",
        ),
        (
            "swapped artifacts",
            swapped_artifacts,
            "loaded false/false, results [I32(1007)] [I32(7000)], 2 rejected",
        ),
        (
            "tampered artifact",
            tampered_artifact,
            "loaded false/true, results [I32(1007)] [I32(7000)], 1 rejected",
        ),
        (
            "oversized access set",
            oversized_access_set,
            "access_set_too_large: 1027 keys declared, at most 1024, gas 0; the others: [None, None]",
        ),
    ];
    let mut wrong = Vec::new();
    for (name, row, expected) in rows {
        let got = row();
        println!("{name:<32} {got}");
        if !got.starts_with(expected) {
            wrong.push(format!("{name}: got `{got}`, expected `{expected}`"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
