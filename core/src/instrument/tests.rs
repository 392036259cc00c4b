use super::*;

fn wasm(text: &str) -> Vec<u8> {
    wat::parse_str(text).expect("valid wat")
}

fn run(text: &str) -> Result<Instrumented, InstrumentError> {
    instrument(&wasm(text), &GasSchedule::V1, &Limits::default())
}

#[test]
fn instrumented_module_is_valid_and_exports_counters() {
    let m = run(r#"(module
        (import "synor" "input_len" (func $len (result i32)))
        (memory (export "memory") 1)
        (global $g (mut i32) (i32.const 5))
        (func $f (param i32) (result i32) local.get 0 i32.const 1 i32.add)
        (func (export "run") (result i32)
            (local i32)
            loop
                local.get 0 call $f local.set 0
                local.get 0 i32.const 10 i32.lt_u br_if 0
            end
            local.get 0 i32.const 2 memory.grow drop call $len i32.add))"#)
    .unwrap();
    assert_eq!(m.imports, [Import::InputLen]);
    assert!(m.exports_memory);
    let run = m.export("run").unwrap();
    assert_eq!(run.results, [ValueType::I32]);
    let mut names = Vec::new();
    for payload in Parser::new(0).parse_all(&m.bytes) {
        if let Payload::ExportSection(r) = payload.unwrap() {
            for e in r {
                names.push(e.unwrap().name.to_string());
            }
        }
    }
    for n in [GAS_GLOBAL, DEPTH_GLOBAL, TRAP_GLOBAL, "run", "memory"] {
        assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
    }
}

#[test]
fn modules_without_globals_or_exports_get_them() {
    let m = run("(module (func nop))").unwrap();
    Validator::new_with_features(FEATURES)
        .validate_all(&m.bytes)
        .unwrap();
    let m =
        run("(module (func (export \"f\") (result f32) f32.const 1 f32.const 0 f32.div))").unwrap();
    assert_eq!(m.exports.len(), 1);
}

#[test]
fn same_input_same_output() {
    let text =
        "(module (func (export \"f\") (param i64) (result i64) local.get 0 i64.const 3 i64.mul))";
    assert_eq!(run(text).unwrap(), run(text).unwrap());
}

#[test]
fn nondeterministic_features_are_rejected() {
    for text in [
        "(module (func (result v128) v128.const i32x4 0 0 0 0))",
        "(module (memory 1 1 shared))",
        "(module (func (param i32) local.get 0 return_call 0))",
        "(module (table 1 externref))",
    ] {
        assert!(
            matches!(run(text), Err(InstrumentError::Invalid { .. })),
            "{text}"
        );
    }
}

#[test]
fn imports_must_be_abi_v1() {
    let e = run(r#"(module (import "env" "f" (func)))"#).unwrap_err();
    assert!(matches!(e, InstrumentError::Import { .. }), "{e}");
    let e = run(r#"(module (import "synor" "nope" (func)))"#).unwrap_err();
    assert!(e.to_string().contains("not in ABI v1"), "{e}");
    let e = run(r#"(module (import "synor" "input_len" (func (result i64))))"#).unwrap_err();
    assert!(e.to_string().contains("signature"), "{e}");
    let e = run(r#"(module (import "synor" "m" (memory 1)))"#).unwrap_err();
    assert!(e.to_string().contains("only functions"), "{e}");
}

#[test]
fn limits_and_reserved_names() {
    let e = run("(module (memory 2000))").unwrap_err();
    assert!(
        matches!(
            e,
            InstrumentError::Limit {
                what: "initial memory pages",
                ..
            }
        ),
        "{e}"
    );
    let e = run("(module (func (export \"__synor_gas\")))").unwrap_err();
    assert!(matches!(e, InstrumentError::ReservedExport(_)));
    let tiny = Limits {
        max_module_bytes: 10,
        ..Limits::default()
    };
    assert!(instrument(&wasm("(module (func))"), &GasSchedule::V1, &tiny).is_err());
    assert!(matches!(
        instrument(b"\0asm\x01\0\0\0\x01", &GasSchedule::V1, &Limits::default()),
        Err(InstrumentError::Invalid { .. })
    ));
}

#[test]
fn start_functions_are_rejected() {
    let e = run("(module (func $s) (start $s))").unwrap_err();
    assert!(matches!(e, InstrumentError::Unsupported(_)), "{e}");
}

/// Two schedules that share a version but not their costs give the same instrumented module
/// where no cost enters the code, but never the same fingerprint: caches keyed on it cannot
/// hand one schedule's artifact to the other.
#[test]
fn the_fingerprint_covers_every_figure_of_the_schedule() {
    let text = "(module (memory 1) (func (export \"f\") (drop (memory.grow (i32.const 1)))))";
    let base = run(text).unwrap();
    let costlier = GasSchedule {
        blob_hash_word: GasSchedule::V1.blob_hash_word + 1,
        ..GasSchedule::V1
    };
    let other = instrument(&wasm(text), &costlier, &Limits::default()).unwrap();
    assert_eq!(other.bytes, base.bytes);
    assert_ne!(other.fingerprint, base.fingerprint);
}
