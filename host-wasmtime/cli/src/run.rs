//! `synor run`: one call of one module, on a chosen tier, printed so that tiers can be compared
//! byte for byte.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value as Json, json};
use synor_core::abi::{CallContext, Empty};
use synor_core::gas::GasSchedule;
use synor_core::instrument::{self, Instrumented, Limits, ValueType};
use synor_core::tier::{Call, EngineError, Outcome, Tier, Value};

use synor_host_std::tiered::{Mode, TieredExecutor};

/// Gas of a call when none is given: enough for seconds of work on the cold tier.
pub const DEFAULT_GAS: u64 = 10_000_000_000;

/// The account `synor run` calls as.
pub const CALLER: [u8; 32] = [0xca; 32];

/// What to run.
#[derive(Debug, Clone)]
pub struct RunRequest<'a> {
    /// The module.
    pub wasm: &'a [u8],
    /// The export to call.
    pub entry: &'a str,
    /// Its arguments, as text (integers for `i32`/`i64`, decimals for floats).
    pub args: &'a [String],
    /// The input the contract reads.
    pub input: Vec<u8>,
    /// Gas limit.
    pub gas: u64,
}

/// Parses `args` for the parameters of `entry`.
///
/// # Errors
/// Wrong count, or a value that does not parse as its parameter's type.
pub fn parse_args(
    module: &Instrumented,
    entry: &str,
    args: &[String],
) -> Result<Vec<Value>, EngineError> {
    let export = module
        .export(entry)
        .ok_or_else(|| EngineError::NoSuchExport(entry.into()))?;
    let bad = |reason: String| EngineError::Arguments {
        entry: entry.into(),
        reason,
    };
    if export.params.len() != args.len() {
        return Err(bad(format!(
            "{} parameters ({:?}), {} given",
            export.params.len(),
            export.params,
            args.len()
        )));
    }
    export
        .params
        .iter()
        .zip(args)
        .map(|(t, a)| {
            let err = || bad(format!("`{a}` is not a valid {t:?}"));
            // An integer of `bits` bits, signed or unsigned (`0xffffffff` is an i32 too).
            let int = |bits: u32| {
                parse_int(a)
                    .ok()
                    .filter(|v| *v >= -(1i128 << (bits - 1)) && *v < (1i128 << bits))
                    .ok_or_else(err)
            };
            Ok(match t {
                ValueType::I32 => Value::I32(int(32)? as i32),
                ValueType::I64 => Value::I64(int(64)? as i64),
                ValueType::F32 => Value::F32(a.parse::<f32>().map_err(|_| err())?.to_bits()),
                ValueType::F64 => Value::F64(a.parse::<f64>().map_err(|_| err())?.to_bits()),
            })
        })
        .collect()
}

fn parse_int(a: &str) -> Result<i128, ()> {
    let (neg, digits) = match a.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, a),
    };
    let v = match digits.strip_prefix("0x") {
        Some(hex) => i128::from_str_radix(hex, 16),
        None => digits.parse::<i128>(),
    }
    .map_err(|_| ())?;
    Ok(if neg { -v } else { v })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The JSON `synor run` prints for `outcome` and the effects left in `ctx`. It contains nothing
/// that depends on the tier.
pub fn report(outcome: &Outcome, ctx: &CallContext) -> Json {
    let results: Vec<Json> = outcome
        .results
        .iter()
        .map(|v| match v {
            Value::I32(v) => json!({"type": "i32", "value": v}),
            Value::I64(v) => json!({"type": "i64", "value": v}),
            Value::F32(v) => json!({"type": "f32", "bits": format!("{v:#010x}"), "value": f32::from_bits(*v).to_string()}),
            Value::F64(v) => json!({"type": "f64", "bits": format!("{v:#018x}"), "value": f64::from_bits(*v).to_string()}),
        })
        .collect();
    let ok = outcome.trap.is_none();
    // A failed call's writes, events and blobs are discarded: none are reported.
    let writes: Vec<Json> = ctx
        .writes
        .writes()
        .filter(|_| ok)
        .map(|(k, v)| json!({"key": hex(k), "value": v.map(hex)}))
        .collect();
    let events: Vec<Json> = ctx
        .events
        .iter()
        .filter(|_| ok)
        .map(|e| json!({"topic": hex(&e.topic), "data": hex(&e.data)}))
        .collect();
    let blobs: Vec<Json> = ctx
        .new_blobs
        .iter()
        .filter(|_| ok)
        .map(|b| json!(b.id.to_string()))
        .collect();
    json!({
        "results": results,
        "return_data": hex(&ctx.return_data),
        "gas_used": outcome.gas_used,
        "trap": outcome.trap.as_ref().map(|t| t.name()),
        "trap_message": outcome.trap.as_ref().map(|t| t.to_string()),
        "memory_hash": outcome.memory_hash.map(|d| d.to_string()),
        "storage_writes": writes,
        "events": events,
        "blobs": blobs,
    })
}

/// Validates and instruments `request.wasm`, calls it once on `tier` (`None`: the tier manager
/// decides), and returns the report and the tier that ran it.
///
/// # Errors
/// The module is rejected, the export or arguments are wrong, or an engine failed.
pub fn run(
    request: &RunRequest<'_>,
    tier: Option<Tier>,
    engines: [Arc<dyn synor_core::tier::Engine>; 3],
) -> Result<(Json, Tier), EngineError> {
    let module = Arc::new(instrument::instrument(
        request.wasm,
        &GasSchedule::V1,
        &Limits::default(),
    )?);
    let args = parse_args(&module, request.entry, request.args)?;
    let mode = match tier {
        Some(t) => Mode::Static(t),
        None => Mode::Tiered(Default::default()),
    };
    let executor = TieredExecutor::new(engines, mode, synor_host_std::tiered::DEFAULT_CACHE_BYTES);
    let state: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut ctx = CallContext::new(
        module.code_id,
        CALLER,
        request.input.clone(),
        request.gas,
        Box::new(state),
        Box::new(Empty),
    );
    let call = Call::new(request.entry, &args).hashing_memory();
    let (outcome, ran) = executor.call(&module, &mut ctx, &call)?;
    Ok((report(&outcome, &ctx), ran))
}

#[cfg(test)]
mod tests {
    use super::*;
    use synor_core::instrument::Limits;

    fn run_on(
        wasm: &[u8],
        entry: &str,
        args: &[&str],
        input: &[u8],
        tier: Tier,
    ) -> Result<String, String> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let request = RunRequest {
            wasm,
            entry,
            args: &args,
            input: input.to_vec(),
            gas: 50_000_000,
        };
        let engines = synor_host_wasmtime::engine::engines(&Limits::default(), None)
            .map_err(|e| e.to_string())?;
        run(&request, Some(tier), engines)
            .map(|(json, ran)| {
                assert_eq!(ran, tier);
                json.to_string()
            })
            .map_err(|e| e.to_string())
    }

    /// The same file and entry print the same JSON on every tier, and a rejected module or a
    /// bad call gets the same error on every tier.
    #[test]
    fn every_tier_prints_the_same() {
        let (files, _) = crate::corpus::embedded();
        let compute = files
            .iter()
            .find(|f| f.name == "compute_v2.wasm")
            .expect("embedded");
        let mut input = 300u32.to_le_bytes().to_vec();
        input.extend_from_slice(b"seed");
        let programs = crate::corpus::embedded_programs();
        let fib = programs
            .iter()
            .find(|f| f.name == "fib.wasm")
            .expect("embedded");
        // (module, entry, arguments, input)
        type Case<'a> = (&'a [u8], &'a str, Vec<&'a str>, &'a [u8]);
        let cases: Vec<Case<'_>> = vec![
            (&compute.bytes, "hash_chain", vec![], &input),
            (&compute.bytes, "fib", vec![], &input),
            (&compute.bytes, "sort", vec![], b"\x01"),
            (&compute.bytes, "missing", vec![], b""),
            (&compute.bytes, "fib", vec!["1"], b""),
            (&fib.bytes, "setup", vec![], b""),
            (b"\0asm\x01\0\0\0\x05\x03\x01\x00\x01", "x", vec![], b""),
            (b"not wasm", "x", vec![], b""),
        ];
        for (wasm, entry, args, input) in cases {
            let cold = run_on(wasm, entry, &args, input, Tier::Cold);
            for tier in [Tier::Warm, Tier::Hot] {
                assert_eq!(
                    run_on(wasm, entry, &args, input, tier),
                    cold,
                    "{entry} on {tier}"
                );
            }
        }
    }

    #[test]
    fn arguments_parse_by_type() {
        let m = instrument::instrument(
            &wat::parse_str(r#"(module (func (export "f") (param i32 i64 f32 f64)))"#).unwrap(),
            &GasSchedule::V1,
            &Limits::default(),
        )
        .unwrap();
        let args: Vec<String> = ["-1", "0xff", "1.5", "-2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            parse_args(&m, "f", &args).unwrap(),
            [
                Value::I32(-1),
                Value::I64(255),
                Value::F32(1.5f32.to_bits()),
                Value::F64((-2f64).to_bits())
            ]
        );
        assert!(parse_args(&m, "f", &args[..2]).is_err());
        let bad: Vec<String> = ["x", "1", "1", "1"].iter().map(|s| s.to_string()).collect();
        assert!(
            parse_args(&m, "f", &bad)
                .unwrap_err()
                .to_string()
                .contains("`x`")
        );
        // u32 range for i32 parameters.
        let big: Vec<String> = ["4294967295", "1", "1", "1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(parse_args(&m, "f", &big).unwrap()[0], Value::I32(-1));
    }
}
