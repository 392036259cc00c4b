//! Differential and behavioural tests of the three tiers and the tier manager.
//!
//! Every module runs on wasmi (cold), Winch (warm) and Cranelift (hot); results, return data,
//! gas, traps, storage writes, events and memory must be identical.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use synor_cli::workload::{self, Chain, Deployment};
use synor_core::abi::{CallContext, Empty};
use synor_core::gas::GasSchedule;
use synor_core::instrument::{self, InstrumentError, Instrumented, Limits};
use synor_core::tier::{Call, Compiled, Engine, EngineError, Outcome, Tier, TierPolicy, Value};
use synor_host_std::tiered::{DEFAULT_CACHE_BYTES, Mode, TieredExecutor};
use synor_host_std::{ArtifactSecret, FsArtifactCache};
use synor_host_wasmtime::engine::{TrustedArtifacts, WasmtimeEngine, engines};

fn contracts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("contracts/wasm")
}

fn read_dir(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "wasm"))
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

fn instrumented(wasm: &[u8]) -> Arc<Instrumented> {
    Arc::new(instrument::instrument(wasm, &GasSchedule::V1, &Limits::default()).unwrap())
}

fn wat(text: &str) -> Arc<Instrumented> {
    instrumented(&wat::parse_str(text).unwrap())
}

/// Compiles `module` on every tier.
fn compile_all(module: &Arc<Instrumented>) -> Vec<Arc<dyn Compiled>> {
    engines(&Limits::default(), None)
        .unwrap()
        .iter()
        .map(|e| e.compile(module).unwrap())
        .collect()
}

/// Calls `call` with `gas` on every tier; asserts that all agree; returns the outcome.
fn agree(module: &Arc<Instrumented>, call: &Call<'_>, gas: u64) -> Outcome {
    let mut first: Option<(Outcome, String)> = None;
    for compiled in compile_all(module) {
        let mut ctx = CallContext::new(
            module.code_id,
            [1; 32],
            Vec::new(),
            gas,
            Box::new(BTreeMap::<Vec<u8>, Vec<u8>>::new()),
            Box::new(Empty),
        );
        let outcome = compiled.call(&mut ctx, &call.hashing_memory()).unwrap();
        let effects = format!(
            "{:?} {:?} {:?}",
            ctx.return_data,
            ctx.writes.writes().collect::<Vec<_>>(),
            ctx.events
        );
        match &first {
            None => first = Some((outcome, effects)),
            Some((o, e)) => {
                assert_eq!(
                    (o, e),
                    (&outcome, &effects),
                    "cold vs {} differ on `{}`",
                    compiled.tier(),
                    call.entry
                );
            }
        }
    }
    first.unwrap().0
}

#[test]
fn project_contracts_agree_on_every_tier() {
    let files = read_dir(&contracts_dir());
    assert!(
        files.len() >= 6,
        "built contracts missing from {}",
        contracts_dir().display()
    );
    let deployments = workload::deploy(&files, 1).unwrap();
    let calls = workload::zipf(&deployments, 400, 0.6, 7);
    let mut runs = Vec::new();
    for tier in Tier::ALL {
        let exec = TieredExecutor::new(
            engines(&Limits::default(), None).unwrap(),
            Mode::Static(tier),
            DEFAULT_CACHE_BYTES,
        );
        let chain = Chain::default();
        let records: Vec<_> = calls
            .iter()
            .map(|c| {
                let (r, ran, _) = chain.execute(&exec, &deployments, c, true).unwrap();
                assert_eq!(ran, tier);
                r
            })
            .collect();
        runs.push((records, chain.digest()));
    }
    for (i, call) in calls.iter().enumerate() {
        let d = &deployments[call.contract].name;
        assert_eq!(
            runs[0].0[i], runs[1].0[i],
            "call {i} ({d}.{}) cold vs warm",
            call.entry
        );
        assert_eq!(
            runs[0].0[i], runs[2].0[i],
            "call {i} ({d}.{}) cold vs hot",
            call.entry
        );
    }
    assert_eq!(runs[0].1, runs[1].1);
    assert_eq!(runs[0].1, runs[2].1);
    // Not vacuous: most calls succeed, some trap (insufficient balance, unknown names), and
    // every contract kind was exercised.
    let ok = runs[0].0.iter().filter(|r| r.trap.is_none()).count();
    let aborted = runs[0]
        .0
        .iter()
        .filter(|r| r.trap == Some("aborted"))
        .count();
    assert!(
        ok > calls.len() / 2 && aborted > 0,
        "{ok} ok, {aborted} aborted"
    );
    for kind in ["token", "compute", "registry"] {
        assert!(calls.iter().any(|c| deployments[c.contract].kind == kind));
    }
}

fn programs(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    read_dir(dir)
}

/// Runs every program of `dir` on every tier; returns how many finished within the budget (the
/// others ran out of gas or trapped, identically on every tier).
fn programs_agree(dir: &std::path::Path) -> (usize, usize) {
    let files = programs(dir);
    assert!(!files.is_empty(), "no programs in {}", dir.display());
    let mut finished = 0;
    let count = files.len();
    for (name, wasm) in files {
        let module = instrumented(&wasm);
        // A budget that stops the longer programs mid-way: the trap, the gas and the memory at
        // that exact point must agree too.
        let args = synor_core::tier::program_args(&module, 100);
        let o = agree(&module, &Call::program(&args), 30_000_000);
        assert!(o.memory_hash.is_some(), "{name}");
        finished += usize::from(o.trap.is_none());
    }
    (finished, count)
}

#[test]
fn project_programs_agree_on_every_tier() {
    let (finished, count) = programs_agree(&contracts_dir().join("programs"));
    assert!(count >= 6, "{count} programs");
    // The kernels are sized for benchmarks: most stop at the budget.
    let _ = finished;
}

#[test]
fn corpus_programs_agree_on_every_tier() {
    let Some(corpus) = synor_tests::corpus_dir() else {
        return;
    };
    let (finished, count) = programs_agree(&corpus.join("programs"));
    assert_eq!(count, 14);
    assert!(
        finished >= 8,
        "only {finished} of {count} programs finished"
    );
}

#[test]
fn floats_are_nan_canonical_on_every_tier() {
    let m = wat(r#"(module
        (func (export "f32") (result i32)
            f32.const 0 f32.const 0 f32.div     ;; a NaN whose sign and payload engines may differ on
            f32.const -nan:0x7fff00 f32.add
            i32.reinterpret_f32)
        (func (export "f64") (result i64)
            f64.const -nan:0xfffffffffffff f64.sqrt
            i64.reinterpret_f64)
        (memory (export "memory") 1)
        (func (export "stored") (result i64)
            (f64.store (i32.const 8) (f64.div (f64.const 0) (f64.const 0)))
            (f32.store (i32.const 16) (f32.sub (f32.const -nan:0x1234) (f32.const 1)))
            (i64.load (i32.const 8)))
        (func (export "returned") (result f64) (f64.mul (f64.const -nan:0x5) (f64.const 2)))
        (func (export "sign") (result f32) (f32.copysign (f32.const 1) (f32.const -nan))))"#);
    let o = agree(&m, &Call::new("f32", &[]), 10_000);
    assert_eq!(o.results, [Value::I32(0x7fc0_0000)]);
    let o = agree(&m, &Call::new("f64", &[]), 10_000);
    assert_eq!(o.results, [Value::I64(0x7ff8_0000_0000_0000)]);
    let o = agree(&m, &Call::new("stored", &[]), 10_000);
    assert_eq!(o.results, [Value::I64(0x7ff8_0000_0000_0000)]);
    let o = agree(&m, &Call::new("returned", &[]), 10_000);
    assert_eq!(o.results, [Value::F64(0x7ff8_0000_0000_0000)]);
    let o = agree(&m, &Call::new("sign", &[]), 10_000);
    assert_eq!(o.results, [Value::F32(1f32.to_bits())]);
}

#[test]
fn bulk_memory_gas_is_identical() {
    // Engine fuel disagrees on this (Winch 9, Cranelift 64,009, wasmi 1,327): gas must not.
    let m = wat(r#"(module (memory (export "memory") 2)
        (func (export "fill") (param i32)
            (memory.fill (i32.const 0) (i32.const 7) (local.get 0))
            (memory.copy (i32.const 65536) (i32.const 0) (local.get 0))))"#);
    let small = agree(&m, &Call::new("fill", &[Value::I32(8)]), 1_000_000);
    let big = agree(&m, &Call::new("fill", &[Value::I32(64_000)]), 1_000_000);
    assert!(small.trap.is_none() && big.trap.is_none());
    // Charged per 8 bytes moved, on both instructions.
    assert_eq!(big.gas_used - small.gas_used, 2 * (64_000 / 8 - 1));
    let oob = agree(&m, &Call::new("fill", &[Value::I32(200_000)]), 1_000_000);
    assert_eq!(oob.trap, Some(synor_core::abi::Trap::MemoryOutOfBounds));
    // A machine fault is charged the whole limit.
    assert_eq!(oob.gas_used, 1_000_000);
}

#[test]
fn infinite_loop_runs_out_of_gas_identically() {
    // The second loop's cycle charges only after its inner, empty loop: its header must still
    // be checked.
    let m = wat(r#"(module
        (func (export "spin") (loop br 0))
        (func (export "nested") (loop $outer (loop) (br $outer))))"#);
    for entry in ["spin", "nested"] {
        let o = agree(&m, &Call::new(entry, &[]), 1_000_000);
        assert_eq!(o.trap, Some(synor_core::abi::Trap::OutOfGas), "{entry}");
        assert_eq!(o.gas_used, 1_000_000);
    }
}

/// Gas is checked only at function entries and loop headers, yet the count is exact: a call
/// given one unit less than it uses runs out of gas, wherever its last charge falls (an
/// unchecked `if` arm, the stretch before a host call).
#[test]
fn lazily_checked_gas_is_exact() {
    let m = wat(r#"(module
        (import "synor" "input_len" (func $len (result i32)))
        (memory (export "memory") 1)
        (func (export "arms") (param i32) (result i32)
            (if (result i32) (local.get 0)
                (then (i32.add (local.get 0) (i32.const 1)))
                (else (i32.const 7))))
        (func (export "host") (param i32) (result i32)
            (if (local.get 0) (then (i32.store (i32.const 0) (local.get 0))))
            (call $len)))"#);
    for (entry, arg) in [("arms", 1), ("arms", 0), ("host", 5), ("host", 0)] {
        let args = [Value::I32(arg)];
        let call = Call::new(entry, &args);
        let full = agree(&m, &call, 1_000_000);
        assert!(full.trap.is_none(), "{entry}({arg}): {:?}", full.trap);
        let exact = agree(&m, &call, full.gas_used);
        assert_eq!((exact.trap, exact.gas_used), (None, full.gas_used));
        assert_eq!(exact.results, full.results);
        let short = agree(&m, &call, full.gas_used - 1);
        assert_eq!(
            short.trap,
            Some(synor_core::abi::Trap::OutOfGas),
            "{entry}({arg})"
        );
        assert!(short.results.is_empty());
        assert_eq!(short.gas_used, full.gas_used - 1);
    }
}

/// Counted loops: ones whose trips are known at entry, charged once before the first trip.
/// Each `(loop, args)` runs twice: as written (charged once) and with its body in a `block`
/// (which costs nothing but hides the count, so charged per trip). Both must use the same gas
/// on every tier; given less, the counted loop runs out before its first store, the other after
/// some.
#[test]
fn counted_loops_charge_every_trip_at_entry() {
    // `$p` (memory address), `$i` (induction variable), `$e` (bound); the loop stores at `$i`.
    let loops = [
        // binaryen's `__memory_fill`: while `$i`, down by `i32.sub 1`, through `local.tee`.
        "(loop $l (if (local.get $i) (then {
            (i32.store8 (i32.add (local.get $p) (local.tee $i (i32.sub (local.get $i) (i32.const 1))))
                (i32.const 7)) } (br $l))))",
        // while `$i != $e`, up, `local.set`.
        "(loop $l (if (i32.ne (local.get $i) (local.get $e)) (then {
            (i32.store8 (i32.add (local.get $p) (local.get $i)) (i32.const 1))
            (local.set $i (i32.add (local.get $i) (i32.const 1))) } (br $l))))",
        // while `!($e == $i)`, down by `i32.add -1`.
        "(loop $l (if (i32.eqz (i32.eq (local.get $e) (local.get $i))) (then {
            (local.set $i (i32.add (local.get $i) (i32.const -1)))
            (i32.store8 (i32.add (local.get $p) (local.get $i)) (i32.const 2)) } (br $l))))",
        // do-while, up, the step in the test.
        "(loop $l {(i32.store8 (i32.add (local.get $p) (local.get $i)) (i32.const 3))}
            (br_if $l (i32.ne (local.tee $i (i32.add (local.get $i) (i32.const 1))) (local.get $e))))",
        // do-while, down by `i32.sub -1`... which is up; the test against a constant bound.
        "(loop $l {(i32.store8 (i32.add (local.get $p) (i32.and (local.get $i) (i32.const 255))) (i32.const 4))
            (local.set $i (i32.sub (local.get $i) (i32.const -1)))}
            (br_if $l (i32.eqz (i32.eq (local.get $i) (i32.const 300)))))",
    ];
    for (k, body) in loops.iter().enumerate() {
        let module = |hidden: bool| {
            let (open, close) = if hidden { ("(block", ")") } else { ("", "") };
            let body = body.replace('{', open).replace('}', close);
            wat(&format!(
                r#"(module (memory (export "memory") 1)
                    (func (export "f") (param $i i32) (param $e i32) (local $p i32)
                        (local.set $p (i32.const 4096))
                        {body}))"#
            ))
        };
        let (counted, hidden) = (module(false), module(true));
        assert_ne!(counted.bytes, hidden.bytes);
        // Memory as at entry: no store made.
        let zero = [Value::I32(0), Value::I32(0)];
        // (Gas for the instance alone: the call runs out at the function's entry.)
        let gas = counted.instantiation_gas;
        let untouched = agree(&counted, &Call::new("f", &zero).hashing_memory(), gas);
        let mut tripped = 0;
        // (start, bound): no trip or one, a few, some hundreds (wrapping below zero for the
        // loops counting down), and, for the do-while loops, 2^32 trips (`$i == $e` at entry).
        for (i, e) in [
            (0, 0),
            (1, 0),
            (0, 1),
            (5, 0),
            (0, 9),
            (9, 300),
            (300, 9),
            (-3, 297),
        ] {
            let args = [Value::I32(i), Value::I32(e)];
            let call = Call::new("f", &args).hashing_memory();
            let gas = 10_000;
            let (a, b) = (agree(&counted, &call, gas), agree(&hidden, &call, gas));
            assert_eq!(a.trap, b.trap, "loop {k} ({i}, {e})");
            assert_eq!(a.gas_used, b.gas_used, "loop {k} ({i}, {e})");
            if a.trap.is_some() {
                // Too many trips for the gas: the counted loop runs out before the first.
                assert_eq!(a.trap, Some(synor_core::abi::Trap::OutOfGas));
                assert_eq!(a.memory_hash, untouched.memory_hash);
                continue;
            }
            assert_eq!(a.memory_hash, b.memory_hash, "loop {k} ({i}, {e})");
            let exact = agree(&counted, &call, a.gas_used);
            assert_eq!((exact.trap, exact.memory_hash), (None, a.memory_hash));
            let short = (
                agree(&counted, &call, a.gas_used - 1),
                agree(&hidden, &call, a.gas_used - 1),
            );
            assert_eq!(short.0.trap, Some(synor_core::abi::Trap::OutOfGas));
            assert_eq!(short.1.trap, Some(synor_core::abi::Trap::OutOfGas));
            assert_eq!(short.0.gas_used, a.gas_used - 1);
            assert_eq!(short.1.gas_used, a.gas_used - 1);
            // Short of gas, the counted loop stops before its first trip, with memory as at
            // entry; the other stops after storing (if the loop made a trip at all).
            assert_eq!(
                short.0.memory_hash, untouched.memory_hash,
                "loop {k} ({i}, {e})"
            );
            let stored = a.memory_hash != untouched.memory_hash;
            assert_eq!(short.1.memory_hash != untouched.memory_hash, stored);
            tripped += usize::from(stored);
        }
        assert!(tripped >= 3, "loop {k}: {tripped} calls made trips");
    }
}

#[test]
fn deep_recursion_traps_identically() {
    // Recursion without a base case, with locals so that frames are large on every engine.
    let m = wat(r#"(module
        (memory (export "memory") 1)
        (func $down (export "down") (param i64) (result i64)
            (local i64 i64 i64 i64 i64 i64 i64 i64)
            local.get 0 i64.const 1 i64.add call $down))"#);
    let o = agree(&m, &Call::new("down", &[Value::I64(0)]), 100_000_000);
    assert_eq!(o.trap, Some(synor_core::abi::Trap::StackOverflow));
    // And with the smallest frames (the most frames the limit allows).
    let m = wat(r#"(module (func $f (export "f") call $f))"#);
    let o = agree(&m, &Call::new("f", &[]), 100_000_000);
    assert_eq!(o.trap, Some(synor_core::abi::Trap::StackOverflow));
}

/// A call from a thread with a small stack (tokio's default is 2 MiB; here 256 KiB) gets as
/// deep as from any other thread and traps `stack_overflow` identically, instead of
/// overflowing the native stack: the call runs on a stack of its own when the thread's is short.
#[test]
fn deep_recursion_on_a_small_thread_stack_traps_identically() {
    let m = wat(r#"(module (func $f (export "f") call $f)
        (func $g (export "g") (param i32) (result i32)
            (if (result i32) (local.get 0)
                (then (i32.add (i32.const 1) (call $g (i32.sub (local.get 0) (i32.const 1)))))
                (else (i32.const 0)))))"#);
    let expected = agree(&m, &Call::new("f", &[]), 100_000_000);
    assert_eq!(expected.trap, Some(synor_core::abi::Trap::StackOverflow));
    let fits = agree(&m, &Call::new("g", &[Value::I32(8_000)]), 100_000_000);
    assert_eq!(fits.results, [Value::I32(8_000)]);
    let compiled = compile_all(&m);
    std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || {
            for c in &compiled {
                for (call, want) in [
                    (Call::new("f", &[]), &expected),
                    (Call::new("g", &[Value::I32(8_000)]), &fits),
                ] {
                    let mut ctx = CallContext::with_gas(100_000_000);
                    assert_eq!(&c.call(&mut ctx, &call).unwrap(), want, "{}", c.tier());
                }
            }
        })
        .unwrap()
        .join()
        .unwrap();
}

/// The deepest recursion that fits is the same whether two calls share one depth bracket
/// (equal weights, straight-line code between them) or each has its own (a block boundary
/// between them), on every tier.
#[test]
fn shared_depth_brackets_allow_the_same_recursion() {
    let module = |between: &str| {
        wat(&format!(
            r#"(module
            (func $f (export "f") (param i32) (result i32)
                (if (result i32) (i32.eqz (local.get 0))
                    (then (i32.const 0))
                    (else
                        (call $f (i32.sub (local.get 0) (i32.const 1)))
                        {between}
                        (call $f (select
                            (i32.sub (local.get 0) (i32.const 1))
                            (i32.const 2)
                            (i32.lt_u (local.get 0) (i32.const 3))))
                        i32.add))))"#
        ))
    };
    let (shared, separate) = (module("nop"), module("(block)"));
    // The second call recurses too (up to two more levels), so the depth it starts from
    // matters.
    // Every tier agrees on each module; find where recursion starts to overflow.
    let overflows = |m: &Arc<Instrumented>, n: i32| {
        agree(m, &Call::new("f", &[Value::I32(n)]), 1_000_000_000).trap
            == Some(synor_core::abi::Trap::StackOverflow)
    };
    let (mut lo, mut hi) = (0, 1 << 16);
    assert!(!overflows(&separate, lo) && overflows(&separate, hi));
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if overflows(&separate, mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    assert!(
        !overflows(&shared, lo),
        "deepest recursion with separate brackets: {lo}"
    );
    assert!(overflows(&shared, hi));
}

#[test]
fn memory_growth_past_the_limit_traps_identically() {
    let m = wat(r#"(module (memory (export "memory") 1)
        (func (export "grow") (result i32) (i32.const 100) memory.grow drop (i32.const 2000) memory.grow))"#);
    let o = agree(&m, &Call::new("grow", &[]), 1_000_000_000);
    assert_eq!(o.trap, Some(synor_core::abi::Trap::MemoryLimit));
}

#[test]
fn engine_traps_have_stable_names() {
    let m = wat(r#"(module (memory (export "memory") 1)
        (func (export "div") (param i32) (result i32) i32.const 1 local.get 0 i32.div_u)
        (func (export "oob") (result i32) i32.const 70000 i32.load)
        (func (export "unreachable") unreachable))"#);
    use synor_core::abi::Trap;
    let o = agree(&m, &Call::new("div", &[Value::I32(0)]), 10_000);
    assert_eq!(o.trap, Some(Trap::IntegerDivisionByZero));
    let o = agree(&m, &Call::new("oob", &[]), 10_000);
    assert_eq!(o.trap, Some(Trap::MemoryOutOfBounds));
    let o = agree(&m, &Call::new("unreachable", &[]), 10_000);
    assert_eq!(o.trap, Some(Trap::Unreachable));
}

#[test]
fn malformed_and_oversized_modules_are_rejected_clearly() {
    let e = instrument::instrument(b"\0asm\x01\0\0\0\x01", &GasSchedule::V1, &Limits::default())
        .unwrap_err();
    assert!(matches!(e, InstrumentError::Invalid { .. }), "{e}");
    let big = vec![0u8; Limits::default().max_module_bytes + 1];
    let e = instrument::instrument(&big, &GasSchedule::V1, &Limits::default()).unwrap_err();
    assert!(e.to_string().contains("module size"), "{e}");
    let e = instrument::instrument(
        &wat::parse_str(r#"(module (import "env" "f" (func)))"#).unwrap(),
        &GasSchedule::V1,
        &Limits::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("env.f"), "{e}");
    let e = instrument::instrument(
        &wat::parse_str(r#"(module (memory 5000))"#).unwrap(),
        &GasSchedule::V1,
        &Limits::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("memory"), "{e}");
}

/// A function with `locals` `i64` locals that pushes `height` values and drops them, and
/// returns the sum of the first and last local it pushed.
fn frame_module(locals: usize, height: usize) -> Vec<u8> {
    let mut body = String::new();
    for i in 0..height {
        body.push_str(&format!("local.get {}\n", i % locals.max(1)));
    }
    body.push_str(&"drop\n".repeat(height.saturating_sub(2)));
    body.push_str("i64.add");
    wat::parse_str(format!(
        r#"(module (func (export "run") (result i64) (local {})
            (local.set 0 (i64.const 7)) {body}))"#,
        "i64 ".repeat(locals)
    ))
    .unwrap()
}

/// The cold engine (wasmi) has fixed limits per function that the compiling tiers do not:
/// 30,000 locals, and 65,535 value slots per frame counting the locals twice. A frame past
/// them once ran on warm and hot but failed on cold with wasmi's own error; now the
/// instrumenter rejects what any engine would, and whatever it accepts runs on every tier.
#[test]
fn frames_at_the_limits_run_on_every_tier_and_past_them_are_rejected() {
    let limits = Limits::default();
    let (locals, height) = (
        limits.max_locals as usize,
        limits.max_operand_height as usize,
    );
    let m = instrumented(&frame_module(locals, height));
    let o = agree(&m, &Call::new("run", &[]), 10_000_000);
    assert_eq!((o.results, o.trap), (vec![Value::I64(7)], None));

    // The reported divergence: 70,000 pushes in one function.
    let mut pushes = "i32.const 1\n".repeat(70_000);
    pushes.push_str(&"drop\n".repeat(70_000));
    let deep = wat::parse_str(format!(
        r#"(module (func (export "run") (result i64) {pushes} i64.const 4))"#
    ))
    .unwrap();
    for (what, wasm) in [
        ("operand stack height", deep),
        ("operand stack height", frame_module(2, height + 1)),
        ("locals in a function", frame_module(locals + 1, 4)),
        ("locals in a function", frame_module(49_000, 17_000)),
    ] {
        let e = instrument::instrument(&wasm, &GasSchedule::V1, &limits).unwrap_err();
        assert!(e.to_string().contains(what), "{e}");
    }
    // Limits configured past the engines' are still held to the engines' fixed ones.
    let loose = Limits {
        max_locals: 100_000,
        max_operand_height: 100_000,
        ..limits
    };
    for wasm in [frame_module(29_996, 4), frame_module(20_000, 25_600)] {
        let e = instrument::instrument(&wasm, &GasSchedule::V1, &loose).unwrap_err();
        assert!(e.to_string().contains("engine limit"), "{e}");
    }
    let m = Arc::new(
        instrument::instrument(&frame_module(20_000, 25_509), &GasSchedule::V1, &loose).unwrap(),
    );
    let o = agree(&m, &Call::new("run", &[]), 10_000_000);
    assert_eq!(o.results, [Value::I64(7)]);
}

/// An active segment outside its table or memory once trapped on warm and hot
/// (`table_out_of_bounds`) and failed on cold with wasmi's own text; such a module is now
/// rejected at deployment, and one that ends exactly at the edge runs on every tier.
#[test]
fn segments_outside_their_table_or_memory_are_rejected() {
    let module = |segment: &str| {
        wat::parse_str(format!(
            r#"(module (table 2 funcref) (memory (export "memory") 1) {segment}
                (func $f (result i64) i64.const 5)
                (type $t (func (result i64)))
                (func (export "run") (param i32) (result i64) (call_indirect (type $t) (local.get 0))))"#
        ))
        .unwrap()
    };
    for (segment, what) in [
        ("(elem (i32.const 5) $f)", "element segment 0 ends at 6"),
        ("(elem (i32.const 1) $f $f)", "element segment 0 ends at 3"),
        (
            "(elem (i32.const -1) $f)",
            "element segment 0 ends at 4294967296",
        ),
        (
            "(elem (i32.add (i32.const 1) (i32.const 1)) $f)",
            "element segment 0 ends at 3",
        ),
        (
            "(data (i32.const 65535) \"ab\")",
            "data segment 0 ends at 65537",
        ),
        (
            "(data (i32.const 0) \"a\") (data (i32.const 65536) \"b\")",
            "data segment 1 ends at 65537",
        ),
    ] {
        let e = instrument::instrument(&module(segment), &GasSchedule::V1, &Limits::default())
            .unwrap_err();
        assert!(e.to_string().contains(what), "{segment}: {e}");
    }
    let m = instrumented(&module(
        r#"(elem (i32.sub (i32.const 3) (i32.const 2)) $f) (data (i32.const 65534) "ab") (data (i32.const 65536) "")"#,
    ));
    let o = agree(&m, &Call::new("run", &[Value::I32(1)]), 100_000);
    assert_eq!(o.results, [Value::I64(5)]);
    let o = agree(&m, &Call::new("run", &[Value::I32(0)]), 100_000);
    assert_eq!(o.trap, Some(synor_core::abi::Trap::IndirectCallToNull));
    let o = agree(&m, &Call::new("run", &[Value::I32(2)]), 100_000);
    assert_eq!(o.trap, Some(synor_core::abi::Trap::TableOutOfBounds));
}

/// An engine failure that no accepted module can cause is a fault of the node, an error to
/// the host, never a receipt's trap: here wasmi's recursion limit, set below the depth the
/// module was instrumented for.
#[test]
fn an_engine_limit_reached_first_is_an_error_not_a_trap() {
    let m = wat(r#"(module (func $f (export "f") (param i32) (result i32)
        (if (result i32) (local.get 0)
            (then (call $f (i32.sub (local.get 0) (i32.const 1))))
            (else (i32.const 0)))))"#);
    let narrow = Limits {
        max_stack_units: 16,
        ..Limits::default()
    };
    let cold = synor_host_std::WasmiEngine::new(&narrow)
        .compile(&m)
        .unwrap();
    let mut ctx = CallContext::with_gas(1 << 30);
    let args = [Value::I32(5_000)];
    match cold.call(&mut ctx, &Call::new("f", &args)) {
        Err(EngineError::Engine(e)) => assert!(e.starts_with("wasmi"), "{e}"),
        other => panic!("wasmi's own limit gave {other:?}"),
    }
    // Within the engine's limit, the same call returns.
    let args = [Value::I32(100)];
    let o = cold.call(&mut ctx, &Call::new("f", &args)).unwrap();
    assert_eq!(o.results, [Value::I32(0)]);
}

/// Instantiation is charged before the instance is made, identically on every tier: initial
/// pages as `memory.grow` charges them, data bytes as `memory.copy` does, table elements.
#[test]
fn instantiation_is_charged_on_every_tier() {
    let m = wat(r#"(module (memory (export "memory") 3) (table 100 funcref)
        (data (i32.const 0) "0123456789abcdef0")
        (func (export "f") (result i32) i32.const 1))"#);
    let s = GasSchedule::V1;
    let expected = 3 * s.memory_grow_page + 3 * s.bulk_per_8_bytes + 100 * s.table_per_element;
    assert_eq!(m.instantiation_gas, expected);
    let o = agree(&m, &Call::new("f", &[]), 1_000_000);
    assert_eq!(o.results, [Value::I32(1)]);
    assert!(o.gas_used > expected, "{} <= {expected}", o.gas_used);
    let short = agree(&m, &Call::new("f", &[]).hashing_memory(), expected - 1);
    assert_eq!(
        (short.trap, short.gas_used, short.memory_hash),
        (Some(synor_core::abi::Trap::OutOfGas), expected - 1, None)
    );
    let exact = agree(&m, &Call::new("f", &[]), expected);
    assert_eq!(
        (exact.trap, exact.gas_used),
        (Some(synor_core::abi::Trap::OutOfGas), expected)
    );
}

// Modules from wasm-smith and at the engines' limits, on every tier: the `tiers` fuzz target's
// entry point, `synor_host_wasmtime::fuzzing::tiers`, run on seeded inputs by its own tests.

fn counting_module() -> Arc<Instrumented> {
    wat(r#"(module (memory (export "memory") 1)
        (func (export "work") (param i32) (result i32) (local i32)
            loop
                local.get 1 local.get 0 i32.add local.set 1
                local.get 0 i32.const 1 i32.sub local.tee 0
                br_if 0
            end
            local.get 1))"#)
}

/// A tiered executor that promotes the counting module's `work(1000)` (about 8,000 gas; the
/// module is a few hundred bytes) to warm after two calls and to hot after a few more.
fn promoting_executor() -> TieredExecutor {
    let policy = TierPolicy {
        gas_per_byte: [10, 100],
        min_calls: [2, 3],
    };
    TieredExecutor::new(
        engines(&Limits::default(), None).unwrap(),
        Mode::Tiered(policy),
        DEFAULT_CACHE_BYTES,
    )
}

#[test]
fn hot_contracts_are_promoted_in_the_background() {
    let m = counting_module();
    let exec = promoting_executor();
    let call = |n: i32| {
        let args = [Value::I32(n)];
        let mut ctx = CallContext::with_gas(1 << 40);
        exec.call(&m, &mut ctx, &Call::new("work", &args)).unwrap()
    };
    let (o, tier) = call(1000);
    assert_eq!(tier, Tier::Cold);
    let reference = o.results.clone();
    let mut seen = vec![tier];
    for _ in 0..20 {
        exec.wait_idle();
        let (o, tier) = call(1000);
        assert_eq!(o.results, reference);
        seen.push(tier);
    }
    // The count starts cold, reaches warm, then hot, and never goes back.
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert!(seen.contains(&Tier::Warm), "{seen:?}");
    assert_eq!(*seen.last().unwrap(), Tier::Hot, "{seen:?}");
    assert_eq!(exec.stats().promotions, 2);
}

#[test]
fn sessions_count_in_batches_and_take_up_promotions() {
    let m = counting_module();
    let exec = promoting_executor();
    let batch = synor_host_std::tiered::SESSION_BATCH;
    let args = [Value::I32(1000)];
    let mut session = exec.session();
    let mut tiers = Vec::new();
    let mut reference = None;
    for _ in 0..3 * batch {
        let mut ctx = CallContext::with_gas(1 << 40);
        let (o, tier) = session
            .call(&m, &mut ctx, &Call::new("work", &args))
            .unwrap();
        assert_eq!(
            *reference.get_or_insert_with(|| o.results.clone()),
            o.results
        );
        tiers.push(tier);
        // Counted once per batch: the manager sees nothing of a batch in progress.
        let counted: u64 = exec.stats().calls.iter().sum();
        assert_eq!(counted, tiers.len() as u64 / batch * batch);
        exec.wait_idle();
    }
    // The first batch runs cold; its count makes a promotion due, and the call after the
    // compilation finished runs on the new module. Tiers never go back.
    let batch = batch as usize;
    assert!(tiers[..batch].iter().all(|t| *t == Tier::Cold), "{tiers:?}");
    assert!(tiers[batch] > Tier::Cold, "{tiers:?}");
    assert_eq!(*tiers.last().unwrap(), Tier::Hot, "{tiers:?}");
    assert!(tiers.windows(2).all(|w| w[0] <= w[1]), "{tiers:?}");
    // A session's calls not yet counted are counted when it is dropped.
    let mut ctx = CallContext::with_gas(1 << 40);
    session
        .call(&m, &mut ctx, &Call::new("work", &args))
        .unwrap();
    drop(session);
    let calls = exec.stats().calls;
    assert_eq!(calls[0], batch as u64);
    assert_eq!(calls.iter().sum::<u64>(), 3 * batch as u64 + 1);
}

#[test]
fn a_session_counts_its_calls_on_the_tier_that_served_them() {
    let m = counting_module();
    let exec = promoting_executor();
    let args = [Value::I32(1000)];
    let work = Call::new("work", &args);
    let mut session = exec.session();
    let (_, tier) = session
        .call(&m, &mut CallContext::with_gas(1 << 40), &work)
        .unwrap();
    assert_eq!(tier, Tier::Cold);
    // Other callers get the contract promoted while the session's cold call is not counted.
    while exec.current_tier(&m) == Some(Tier::Cold) {
        exec.call(&m, &mut CallContext::with_gas(1 << 40), &work)
            .unwrap();
        exec.wait_idle();
    }
    let before = exec.stats().calls;
    let (_, tier) = session
        .call(&m, &mut CallContext::with_gas(1 << 40), &work)
        .unwrap();
    assert!(tier > Tier::Cold);
    drop(session);
    let after = exec.stats().calls;
    assert_eq!(after[0], before[0] + 1, "{before:?} -> {after:?}");
    assert_eq!(after[tier as usize], before[tier as usize] + 1);
}

#[test]
fn compiled_modules_are_evicted_by_bytes() {
    let a = counting_module();
    let b = wat(r#"(module (func (export "work") (param i32) (result i32) local.get 0))"#);
    let probe = engines(&Limits::default(), None).unwrap()[2]
        .compile(&a)
        .unwrap();
    // Room for one hot module, not two.
    let budget = probe.code_bytes() * 3 / 2;
    let exec = TieredExecutor::new(
        engines(&Limits::default(), None).unwrap(),
        Mode::Static(Tier::Hot),
        budget,
    );
    let call = |m: &Arc<Instrumented>| {
        let mut ctx = CallContext::with_gas(1 << 30);
        exec.call(m, &mut ctx, &Call::new("work", &[Value::I32(3)]))
            .unwrap()
    };
    call(&a);
    assert_eq!(exec.current_tier(&a), Some(Tier::Hot));
    call(&b);
    assert_eq!(exec.current_tier(&b), Some(Tier::Hot));
    assert_eq!(exec.current_tier(&a), None, "a was the least recently used");
    assert!(exec.cached_bytes() <= budget);
    assert_eq!(exec.stats().evictions, 1);
    // a comes back (compiled again) and pushes b out.
    call(&a);
    assert_eq!(exec.current_tier(&b), None);
    assert_eq!(exec.compilations()[2], 3);
}

#[test]
fn calls_in_flight_finish_on_their_module() {
    let m = counting_module();
    let exec = Arc::new(TieredExecutor::new(
        engines(&Limits::default(), None).unwrap(),
        Mode::Tiered(TierPolicy {
            gas_per_byte: [0, 0],
            min_calls: [1, 2],
        }),
        DEFAULT_CACHE_BYTES,
    ));
    let run = |exec: &TieredExecutor, n: i32| {
        let args = [Value::I32(n)];
        let mut ctx = CallContext::with_gas(1 << 40);
        exec.call(&m, &mut ctx, &Call::new("work", &args)).unwrap()
    };
    let (reference, _) = run(&exec, 3_000_000);
    // Long calls on other threads while promotions swap modules underneath them.
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let exec = exec.clone();
                std::thread::Builder::new()
                    .stack_size(synor_host_wasmtime::engine::STACK_NEEDED)
                    .spawn_scoped(s, move || run(&exec, 3_000_000))
                    .unwrap()
            })
            .collect();
        for _ in 0..20 {
            let (o, _) = run(&exec, 10);
            assert!(o.trap.is_none());
        }
        for h in handles {
            let (o, _) = h.join().unwrap();
            assert_eq!(o, reference);
        }
    });
    exec.wait_idle();
    assert_eq!(run(&exec, 3_000_000), (reference, Tier::Hot));
}

/// The artifact cache of the data directory `data`, laid out as the CLI lays it out: artifacts
/// in `artifacts/`, the node's secret in `artifacts.key`.
fn artifact_cache(data: &std::path::Path) -> Arc<FsArtifactCache> {
    let secret = ArtifactSecret::load_or_create(data.join("artifacts.key")).unwrap();
    // SAFETY: the secret was made by this test with mode 0600 and stays in it; only engines
    // store into the cache, their own compiled output.
    Arc::new(
        unsafe { FsArtifactCache::open(data.join("artifacts"), &secret, Default::default()) }
            .unwrap(),
    )
}

fn artifact_files(dir: &std::path::Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "art"))
        .collect()
}

#[test]
fn restart_runs_hot_from_the_artifact_cache() {
    let dir = tempfile::tempdir().unwrap();
    let m = counting_module();
    // Each opening reads the secret back from its file, as a restarted node does.
    let open = || TrustedArtifacts::fs(artifact_cache(dir.path()));
    let policy = TierPolicy {
        gas_per_byte: [0, 0],
        min_calls: [1, 2],
    };
    let call = |exec: &TieredExecutor| {
        let mut ctx = CallContext::with_gas(1 << 30);
        exec.call(&m, &mut ctx, &Call::new("work", &[Value::I32(100)]))
            .unwrap()
    };
    {
        let exec = TieredExecutor::new(
            engines(&Limits::default(), Some(open())).unwrap(),
            Mode::Tiered(policy),
            DEFAULT_CACHE_BYTES,
        );
        for _ in 0..4 {
            call(&exec);
            exec.wait_idle();
        }
        assert_eq!(exec.current_tier(&m), Some(Tier::Hot));
        assert_eq!(exec.compilations(), [0, 1, 1]);
    }
    assert_eq!(artifact_files(&dir.path().join("artifacts")).len(), 2);
    let exec = TieredExecutor::new(
        engines(&Limits::default(), Some(open())).unwrap(),
        Mode::Tiered(policy),
        DEFAULT_CACHE_BYTES,
    );
    let (_, tier) = call(&exec);
    assert_eq!(tier, Tier::Hot, "the first call after a restart runs hot");
    assert_eq!(exec.compilations(), [0, 0, 0]);
}

#[test]
fn bad_artifacts_are_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let m = counting_module();
    let cache = TrustedArtifacts::fs(artifact_cache(dir.path()));
    let hot =
        || synor_host_wasmtime::engine::WasmtimeEngine::cranelift(Some(cache.clone())).unwrap();
    let check = |compiled: Arc<dyn Compiled>| {
        let mut ctx = CallContext::with_gas(1 << 30);
        let o = compiled
            .call(&mut ctx, &Call::new("work", &[Value::I32(4)]))
            .unwrap();
        assert_eq!(o.results, [Value::I32(10)]);
    };
    let e = hot();
    check(e.compile(&m).unwrap());
    assert_eq!(e.compilations(), 1);
    let file = artifact_files(&dir.path().join("artifacts"))
        .pop()
        .expect("artifact written");
    let good = std::fs::read(&file).unwrap();
    let damages: Vec<(&str, Vec<u8>)> = vec![
        ("corrupt", {
            let mut b = good.clone();
            let i = b.len() / 2;
            b[i] ^= 0x40;
            b
        }),
        ("truncated", good[..good.len() * 2 / 3].to_vec()),
        ("foreign version", {
            let mut b = good.clone();
            b[4] = b[4].wrapping_add(1);
            b
        }),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in damages {
        std::fs::write(&file, &bytes).unwrap();
        let e = hot();
        assert!(e.load_cached(&m).is_none(), "{what} artifact loaded");
        check(e.compile(&m).unwrap());
        assert_eq!(e.compilations(), 1, "{what} artifact was not recompiled");
        // The recompiled artifact replaced the bad one.
        let e = hot();
        check(e.compile(&m).unwrap());
        assert_eq!(e.compilations(), 0, "after {what}");
    }
}

/// Renaming one contract's artifact over another's must not make the node run the other's
/// code: each artifact is bound to its key, so both are rejected and recompiled.
#[test]
fn swapped_artifacts_are_recompiled_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let module = |op: &str| {
        wat(&format!(
            r#"(module (memory (export "memory") 1)
                (func (export "work") (param i32) (result i32)
                    local.get 0 i32.const 1000 {op}))"#
        ))
    };
    let (a, b) = (module("i32.add"), module("i32.mul"));
    let run = |e: &WasmtimeEngine, m: &Arc<Instrumented>| {
        let mut ctx = CallContext::with_gas(1 << 20);
        let o = e
            .compile(m)
            .unwrap()
            .call(&mut ctx, &Call::new("work", &[Value::I32(7)]))
            .unwrap();
        o.results
    };
    let cache = artifact_cache(dir.path());
    let trusted = TrustedArtifacts::fs(cache.clone());
    let hot = || WasmtimeEngine::cranelift(Some(trusted.clone())).unwrap();
    let first = hot();
    assert_eq!(run(&first, &a), [Value::I32(1007)]);
    assert_eq!(run(&first, &b), [Value::I32(7000)]);
    assert_eq!(first.compilations(), 2);
    let path_a = cache.path_of(&first.artifact_key(&a));
    let path_b = cache.path_of(&first.artifact_key(&b));
    let swap = dir.path().join("swap");
    std::fs::rename(&path_a, &swap).unwrap();
    std::fs::rename(&path_b, &path_a).unwrap();
    std::fs::rename(&swap, &path_b).unwrap();
    // A restarted node: each contract runs its own code, compiled again.
    let restarted = hot();
    assert!(restarted.load_cached(&a).is_none(), "B's code loaded for A");
    assert_eq!(run(&restarted, &a), [Value::I32(1007)]);
    assert_eq!(run(&restarted, &b), [Value::I32(7000)]);
    assert_eq!(restarted.compilations(), 2);
    assert_eq!(cache.rejected(), 2);
    // The recompiled artifacts load again.
    let again = hot();
    assert_eq!(run(&again, &a), [Value::I32(1007)]);
    assert_eq!(run(&again, &b), [Value::I32(7000)]);
    assert_eq!(again.compilations(), 0);
}

#[test]
fn artifacts_of_another_engine_configuration_are_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let m = counting_module();
    let cache = TrustedArtifacts::fs(artifact_cache(dir.path()));
    let hot = synor_host_wasmtime::engine::WasmtimeEngine::cranelift(Some(cache.clone())).unwrap();
    let warm = synor_host_wasmtime::engine::WasmtimeEngine::winch(Some(cache)).unwrap();
    assert_ne!(hot.artifact_key(&m), warm.artifact_key(&m));
    hot.compile(&m).unwrap();
    assert!(warm.load_cached(&m).is_none());
}

#[test]
fn deployments_have_distinct_ids() {
    let files = read_dir(&contracts_dir());
    let d: Vec<Deployment> = workload::deploy(&files, 2).unwrap();
    let ids: std::collections::BTreeSet<_> = d.iter().map(|d| d.module.code_id).collect();
    assert_eq!(ids.len(), d.len());
}

#[test]
fn calls_a_full_instance_pool_cannot_take_run_cold_with_the_same_result() {
    let m = counting_module();
    let limits = Limits::default();
    // Engines whose pools have no slot: every warm or hot call finds the pool full.
    let full = |tier| Arc::new(WasmtimeEngine::with_pool(tier, &limits, None, 0).unwrap());
    let (warm, hot) = (full(Tier::Warm), full(Tier::Hot));
    let args = [Value::I32(1000)];
    let call = Call::new("work", &args);
    for engine in [&warm, &hot] {
        let compiled = engine.compile(&m).unwrap();
        let mut ctx = CallContext::with_gas(1 << 40);
        match compiled.call(&mut ctx, &call) {
            Err(EngineError::Unavailable(why)) => assert!(why.contains("limit"), "{why}"),
            other => panic!(
                "{}: a call with no instance slot gave {other:?}",
                engine.tier()
            ),
        }
        // The context comes back untouched: the fallback starts from it.
        assert_eq!(ctx.gas_left, 1 << 40);
    }
    let reference = {
        let mut ctx = CallContext::with_gas(1 << 40);
        let exec = TieredExecutor::new(
            engines(&limits, None).unwrap(),
            Mode::Static(Tier::Hot),
            DEFAULT_CACHE_BYTES,
        );
        let (o, tier) = exec.call(&m, &mut ctx, &call).unwrap();
        assert_eq!(tier, Tier::Hot);
        (o, ctx.gas_left)
    };
    for tier in [Tier::Warm, Tier::Hot] {
        let cold = Arc::new(synor_host_std::WasmiEngine::new(&limits));
        let exec = TieredExecutor::new(
            [cold, warm.clone(), hot.clone()],
            Mode::Static(tier),
            DEFAULT_CACHE_BYTES,
        );
        let mut session = exec.session();
        for _ in 0..3 {
            let mut ctx = CallContext::with_gas(1 << 40);
            let (o, ran) = session.call(&m, &mut ctx, &call).unwrap();
            assert_eq!(ran, Tier::Cold, "{tier} with a full pool");
            assert_eq!((o, ctx.gas_left), reference, "{tier} falling back to cold");
        }
    }
}

/// A module whose every call finds memory and a mutable global as instantiation leaves them,
/// or says what it found instead: `bump` returns the sum of the marks the calls before it left
/// behind (0 in a fresh instance) after leaving its own, `trap` leaves them and then traps.
fn marking_module() -> Arc<Instrumented> {
    wat(r#"(module (memory (export "memory") 1 4)
        (global $g (mut i32) (i32.const 0))
        (func $mark (result i32) (local i32)
            ;; what earlier calls left: a word of memory, the global, pages grown
            (i32.load (i32.const 64))
            global.get $g i32.add
            memory.size i32.const 1 i32.sub i32.add
            local.set 0
            (i32.store (i32.const 64) (i32.const 7))
            (global.set $g (i32.const 11))
            (drop (memory.grow (i32.const 1)))
            local.get 0)
        (func (export "bump") (result i32) call $mark)
        (func (export "trap") (result i32) (drop (call $mark)) unreachable))"#)
}

/// Calls on one thread follow each other in one wasmtime store (see `CALLS_PER_STORE`), each
/// in an instance of its own: none sees what an earlier call left in memory or globals, or
/// how far it grew memory, whether that call returned or trapped, across several stores'
/// worth of calls, on both wasmtime tiers and for the cold tier alike. (The instrumenter's
/// feature set has no instructions that change a table.)
#[test]
fn calls_in_one_thread_each_start_from_a_fresh_instance() {
    let m = marking_module();
    for compiled in compile_all(&m) {
        let mut gas = None;
        for i in 0..40 {
            let entry = if i % 3 == 2 { "trap" } else { "bump" };
            let mut ctx = CallContext::with_gas(1 << 30);
            let o = compiled.call(&mut ctx, &Call::new(entry, &[])).unwrap();
            let tier = compiled.tier();
            if entry == "trap" {
                assert!(o.trap.is_some(), "{tier}: call {i} did not trap");
                continue;
            }
            assert_eq!(o.trap, None, "{tier}: call {i}");
            assert_eq!(
                o.results,
                [Value::I32(0)],
                "{tier}: call {i} saw an earlier one"
            );
            assert_eq!(
                *gas.get_or_insert(o.gas_used),
                o.gas_used,
                "{tier}: call {i}'s gas"
            );
        }
    }
}

/// An engine whose pool has one slot per lane serves every call of a thread: the instance of
/// a finished call that the thread's store still holds is given back when the next call needs
/// its slot, instead of that call finding the pool full.
#[test]
fn a_pool_of_one_slot_serves_every_call_of_a_thread() {
    let m = marking_module();
    let limits = Limits::default();
    for tier in [Tier::Warm, Tier::Hot] {
        let engine = WasmtimeEngine::with_pool(tier, &limits, None, 1).unwrap();
        let compiled = engine.compile(&m).unwrap();
        for i in 0..20 {
            let mut ctx = CallContext::with_gas(1 << 30);
            match compiled.call(&mut ctx, &Call::new("bump", &[])) {
                Ok(o) => assert_eq!(o.results, [Value::I32(0)], "{tier}: call {i}"),
                Err(e) => panic!("{tier}: call {i} on a pool of one slot: {e:?}"),
            }
        }
    }
}
