//! The WebAssembly spec test suite through synor's validation and instrumentation, on every
//! tier.
//!
//! The core tests of the features synor accepts (WebAssembly/testsuite, vendored in
//! `tests/spec` with their license) run as a contract's calls would: each module is validated
//! and instrumented by the core, compiled by the cold, warm and hot engines, and every action
//! runs on all three. Every assertion must give the same outcome (results, trap, gas) on every
//! tier, and the suite's answer, except the deliberate deviations of [`Deviation`], each
//! counted and printed with its reason (`cargo test -p synor-tests --test spec -- --nocapture`).
//!
//! synor runs every call in a fresh instance, so an action runs after the module's earlier
//! actions that returned, replayed in the same instance ([`Call::after`]), where the module has
//! state that an action can change (a memory or a mutable global).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use synor_core::abi::{CallContext, Trap};
use synor_core::gas::GasSchedule;
use synor_core::instrument::Limits;
use synor_core::instrument::{self, CANONICAL_NAN_F32, CANONICAL_NAN_F64, InstrumentError};
use synor_core::tier::{Call, Compiled, Engine, Outcome, Value};
use synor_host_wasmtime::engine::engines;
use wast::core::{NanPattern, WastArgCore, WastRetCore};
use wast::parser::{self, ParseBuffer};
use wast::{Wast, WastArg, WastDirective, WastExecute, WastInvoke, WastRet};

/// Gas for every action: far more than any of the suite's needs.
const GAS: u64 = 1 << 40;

/// Where synor's answer differs from the suite's by design.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Deviation {
    /// The module imports something (the suite's `spectest` module, or other modules'
    /// exports): contracts import only synor's ABI, and only functions.
    Imports,
    /// The module has a start function: contracts initialise in an exported entry point.
    Start,
    /// The module uses a feature outside synor's deterministic set (reference types, several
    /// memories or tables, passive segments and `memory.init`, SIMD, 64-bit memories...).
    Features,
    /// The module exceeds one of synor's limits (initial memory pages, table size).
    Limits,
    /// An active segment outside its memory or table: the suite expects instantiation to
    /// trap; synor rejects the module when it is deployed.
    SegmentRejected,
    /// A NaN's sign or payload: synor makes only the canonical NaN observable (returned,
    /// stored, reinterpreted, or the sign operand of `copysign`), where the suite expects
    /// another NaN's bits.
    NanCanonical,
    /// `memory.grow` past synor's memory limit traps `memory_limit` (a deterministic bound on
    /// a call's memory) where the suite expects it to return -1.
    MemoryLimit,
    /// The host reads an exported global (`get`): contracts export only functions and memory
    /// to the host.
    GlobalGet,
    /// The module's table was changed by a later module linked to it (`register`), which synor
    /// rejected for its imports: contracts share nothing but the ABI.
    Linking,
}

impl Deviation {
    fn of(e: &InstrumentError) -> Self {
        match e {
            InstrumentError::Import { .. } => Deviation::Imports,
            InstrumentError::Unsupported(what) if what.contains("start") => Deviation::Start,
            InstrumentError::Limit { .. } => Deviation::Limits,
            InstrumentError::Segment { .. } => Deviation::SegmentRejected,
            _ => Deviation::Features,
        }
    }
}

/// A module of the script, and what synor made of it.
enum Module {
    Ready(Box<Instance>),
    Rejected(Deviation, String),
}

struct Instance {
    /// Cold, warm, hot.
    compiled: Vec<Arc<dyn Compiled>>,
    /// Whether an action can change what later actions see (a memory or a mutable global).
    stateful: bool,
    /// The actions that returned so far, replayed before each new one when `stateful`.
    actions: Vec<(String, Vec<Value>)>,
    /// Whether a module synor rejected imported from this one (so may have changed it).
    linked: bool,
}

#[derive(Default)]
struct Tally {
    /// Assertions (and actions) run on every tier.
    ran: usize,
    /// Of those and of module assertions, the ones with the suite's answer.
    passed: usize,
    /// Assertions about the text format (`module quote` that does not parse): not synor's.
    text: usize,
    deviations: BTreeMap<Deviation, usize>,
    failures: Vec<String>,
}

impl Tally {
    fn deviate(&mut self, d: Deviation) {
        *self.deviations.entry(d).or_default() += 1;
    }
}

struct Runner {
    engines: [Arc<dyn Engine>; 3],
    limits: Limits,
}

impl Runner {
    fn new() -> Self {
        let limits = Limits::default();
        Self {
            engines: engines(&limits, None).unwrap(),
            limits,
        }
    }

    /// Validates, instruments and compiles `wasm` on every tier.
    fn load(&self, wasm: &[u8]) -> Result<Module, String> {
        let module = match instrument::instrument(wasm, &GasSchedule::V1, &self.limits) {
            Ok(m) => Arc::new(m),
            Err(e) => return Ok(Module::Rejected(Deviation::of(&e), e.to_string())),
        };
        let compiled = self
            .engines
            .iter()
            .map(|e| e.compile(&module))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("an engine rejected an instrumented module: {e}"))?;
        Ok(Module::Ready(Box::new(Instance {
            stateful: stateful(wasm),
            compiled,
            actions: Vec::new(),
            linked: false,
        })))
    }
}

/// The modules `wasm` imports from.
fn import_modules(wasm: &[u8]) -> Vec<String> {
    use wasmparser::{Parser, Payload};
    let mut names = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        if let Ok(Payload::ImportSection(r)) = payload {
            for import in r.into_imports().flatten() {
                names.push(import.module.to_string());
            }
        }
    }
    names
}

/// Whether a module has state that outlives an action: a memory or a mutable global.
fn stateful(wasm: &[u8]) -> bool {
    use wasmparser::{Parser, Payload};
    Parser::new(0).parse_all(wasm).any(|p| match p {
        Ok(Payload::MemorySection(r)) => r.count() > 0,
        Ok(Payload::GlobalSection(r)) => r.into_iter().any(|g| g.is_ok_and(|g| g.ty.mutable)),
        _ => false,
    })
}

impl Instance {
    /// Runs `name(args)` on every tier after the earlier actions; all tiers must agree.
    fn run(&self, name: &str, args: &[Value]) -> Result<Outcome, String> {
        let prelude: Vec<(&str, &[Value])> = if self.stateful {
            self.actions
                .iter()
                .map(|(n, a)| (n.as_str(), a.as_slice()))
                .collect()
        } else {
            Vec::new()
        };
        let call = Call::new(name, args).after(&prelude);
        let mut first: Option<Outcome> = None;
        for compiled in &self.compiled {
            let mut ctx = CallContext::with_gas(GAS);
            let outcome = compiled
                .call(&mut ctx, &call)
                .map_err(|e| format!("{}: `{name}`: {e}", compiled.tier()))?;
            match &first {
                None => first = Some(outcome),
                Some(o) if *o != outcome => {
                    return Err(format!(
                        "tiers differ on `{name}`: cold {o:?}, {} {outcome:?}",
                        compiled.tier()
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(first.unwrap())
    }
}

fn arg(a: &WastArg<'_>) -> Option<Value> {
    match a {
        WastArg::Core(WastArgCore::I32(v)) => Some(Value::I32(*v)),
        WastArg::Core(WastArgCore::I64(v)) => Some(Value::I64(*v)),
        WastArg::Core(WastArgCore::F32(v)) => Some(Value::F32(v.bits)),
        WastArg::Core(WastArgCore::F64(v)) => Some(Value::F64(v.bits)),
        _ => None,
    }
}

fn nan32(bits: u32) -> bool {
    bits & 0x7fff_ffff > 0x7f80_0000
}

fn nan64(bits: u64) -> bool {
    bits & 0x7fff_ffff_ffff_ffff > 0x7ff0_0000_0000_0000
}

/// Whether `got` is what `want` expects.
fn expected(want: &WastRetCore<'_>, got: &Value) -> bool {
    match (want, got) {
        (WastRetCore::I32(w), Value::I32(g)) => w == g,
        (WastRetCore::I64(w), Value::I64(g)) => w == g,
        (WastRetCore::F32(NanPattern::CanonicalNan), Value::F32(g)) => {
            g & 0x7fff_ffff == CANONICAL_NAN_F32
        }
        (WastRetCore::F32(NanPattern::ArithmeticNan), Value::F32(g)) => {
            g & CANONICAL_NAN_F32 == CANONICAL_NAN_F32
        }
        (WastRetCore::F32(NanPattern::Value(w)), Value::F32(g)) => w.bits == *g,
        (WastRetCore::F64(NanPattern::CanonicalNan), Value::F64(g)) => {
            g & 0x7fff_ffff_ffff_ffff == CANONICAL_NAN_F64
        }
        (WastRetCore::F64(NanPattern::ArithmeticNan), Value::F64(g)) => {
            g & CANONICAL_NAN_F64 == CANONICAL_NAN_F64
        }
        (WastRetCore::F64(NanPattern::Value(w)), Value::F64(g)) => w.bits == *g,
        (WastRetCore::Either(options), g) => options.iter().any(|o| expected(o, g)),
        _ => false,
    }
}

/// Whether a result that is not what the suite expects differs only as NaN canonicalisation
/// makes it differ: the canonical NaN (as a float, or its bits as an integer) where the
/// suite expects another NaN, or the opposite sign where an argument is a NaN (the sign
/// operand of `copysign`).
fn nan_deviation(want: &WastRetCore<'_>, got: &Value, args: &[Value]) -> Option<Deviation> {
    let nan_arg = args.iter().any(|a| match a {
        Value::F32(b) => nan32(*b),
        Value::F64(b) => nan64(*b),
        _ => false,
    });
    let canonical = match (want, got) {
        (WastRetCore::F32(NanPattern::Value(w)), Value::F32(g)) => {
            (nan32(w.bits) && *g == CANONICAL_NAN_F32) || (nan_arg && w.bits ^ g == 1 << 31)
        }
        (WastRetCore::F64(NanPattern::Value(w)), Value::F64(g)) => {
            (nan64(w.bits) && *g == CANONICAL_NAN_F64) || (nan_arg && w.bits ^ g == 1 << 63)
        }
        (WastRetCore::I32(w), Value::I32(g)) => nan32(*w as u32) && *g as u32 == CANONICAL_NAN_F32,
        (WastRetCore::I64(w), Value::I64(g)) => nan64(*w as u64) && *g as u64 == CANONICAL_NAN_F64,
        _ => false,
    };
    canonical.then_some(Deviation::NanCanonical)
}

/// The trap the suite's message names.
fn trap_named(message: &str) -> Option<Trap> {
    const NAMES: [(&str, Trap); 10] = [
        ("integer divide by zero", Trap::IntegerDivisionByZero),
        ("integer overflow", Trap::IntegerOverflow),
        (
            "invalid conversion to integer",
            Trap::BadConversionToInteger,
        ),
        ("out of bounds memory access", Trap::MemoryOutOfBounds),
        ("undefined element", Trap::TableOutOfBounds),
        ("out of bounds table access", Trap::TableOutOfBounds),
        ("uninitialized element", Trap::IndirectCallToNull),
        ("indirect call type mismatch", Trap::BadSignature),
        ("unreachable", Trap::Unreachable),
        ("call stack exhausted", Trap::StackOverflow),
    ];
    NAMES
        .into_iter()
        .find(|(m, _)| message.starts_with(m))
        .map(|(_, t)| t)
}

/// Runs one `.wast` script.
fn script(runner: &Runner, path: &Path, tally: &mut Tally) {
    let text = std::fs::read_to_string(path).unwrap();
    let file = path.file_name().unwrap().to_string_lossy().into_owned();
    // The suite's `names.wast` exports names with bidirectional-text characters on purpose.
    let mut lexer = wast::lexer::Lexer::new(&text);
    lexer.allow_confusing_unicode(true);
    let buf = ParseBuffer::new_with_lexer(lexer).unwrap();
    let wast: Wast<'_> = parser::parse(&buf).unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut modules: Vec<Module> = Vec::new();
    let mut named: HashMap<String, usize> = HashMap::new();
    let mut registered: HashMap<String, usize> = HashMap::new();
    for directive in wast.directives {
        let (line, _) = directive.span().linecol_in(&text);
        let at = format!("{file}:{}", line + 1);
        let fail = |tally: &mut Tally, why: String| tally.failures.push(format!("{at}: {why}"));
        match directive {
            WastDirective::Module(mut quote) | WastDirective::ModuleDefinition(mut quote) => {
                let name = quote.name().map(|n| n.name().to_string());
                let wasm = quote.encode().unwrap_or_else(|e| panic!("{at}: {e}"));
                match runner.load(&wasm) {
                    Ok(m) => {
                        if let Module::Rejected(d, why) = &m {
                            if std::env::var_os("SPEC_VERBOSE").is_some() {
                                println!("{at}: rejected ({d:?}): {why}");
                            }
                            for name in import_modules(&wasm) {
                                if let Some(&i) = registered.get(&name)
                                    && let Module::Ready(linked) = &mut modules[i]
                                {
                                    linked.linked = true;
                                }
                            }
                        }
                        if let Some(name) = name {
                            named.insert(name, modules.len());
                        }
                        modules.push(m);
                    }
                    Err(e) => fail(tally, e),
                }
            }
            WastDirective::AssertInvalid { mut module, .. }
            | WastDirective::AssertMalformed { mut module, .. } => match module.encode() {
                // The text does not parse: the text format's business, not synor's.
                Err(_) => tally.text += 1,
                Ok(wasm) => match instrument::instrument(&wasm, &GasSchedule::V1, &runner.limits) {
                    Ok(_) => fail(
                        tally,
                        "synor accepted an invalid or malformed module".into(),
                    ),
                    Err(_) => tally.passed += 1,
                },
            },
            WastDirective::AssertUnlinkable { mut module, .. } => {
                let wasm = module.encode().unwrap();
                match instrument::instrument(&wasm, &GasSchedule::V1, &runner.limits) {
                    Ok(_) => fail(tally, "synor accepted an unlinkable module".into()),
                    Err(_) => tally.passed += 1,
                }
            }
            WastDirective::AssertTrap {
                exec: WastExecute::Wat(mut module),
                ..
            } => {
                let wasm = module.encode().unwrap();
                match instrument::instrument(&wasm, &GasSchedule::V1, &runner.limits) {
                    Ok(_) => fail(
                        tally,
                        "synor accepted a module whose instantiation traps".into(),
                    ),
                    Err(e) => tally.deviate(Deviation::of(&e)),
                }
            }
            WastDirective::Register { name, module, .. } => {
                let index = module.map_or(modules.len() - 1, |id| named[id.name()]);
                registered.insert(name.to_string(), index);
            }
            WastDirective::AssertReturn {
                exec: WastExecute::Get { .. },
                ..
            }
            | WastDirective::AssertTrap {
                exec: WastExecute::Get { .. },
                ..
            } => tally.deviate(Deviation::GlobalGet),
            WastDirective::Invoke(invoke) => {
                action(&mut modules, &named, &invoke, tally, &at, |_, _| Ok(None));
            }
            WastDirective::AssertReturn {
                exec: WastExecute::Invoke(invoke),
                results,
                ..
            } => action(&mut modules, &named, &invoke, tally, &at, |o, args| {
                if o.trap == Some(Trap::MemoryLimit) {
                    return Ok(Some(Deviation::MemoryLimit));
                }
                if let Some(t) = &o.trap {
                    return Err(format!("trapped {t}, expected {results:?}"));
                }
                let wrong = || format!("returned {:?}, expected {results:?}", o.results);
                if o.results.len() != results.len() {
                    return Err(wrong());
                }
                let mut deviation = None;
                for (want, got) in results.iter().zip(&o.results) {
                    let WastRet::Core(want) = want else {
                        return Err(wrong());
                    };
                    if !expected(want, got) {
                        deviation = Some(nan_deviation(want, got, args).ok_or_else(wrong)?);
                    }
                }
                Ok(deviation)
            }),
            WastDirective::AssertTrap {
                exec: WastExecute::Invoke(invoke),
                message,
                ..
            }
            | WastDirective::AssertExhaustion {
                call: invoke,
                message,
                ..
            } => action(&mut modules, &named, &invoke, tally, &at, |o, _| {
                let want =
                    trap_named(message).ok_or_else(|| format!("no trap is named `{message}`"))?;
                if o.trap.as_ref() != Some(&want) {
                    return Err(format!("gave {o:?}, expected the trap `{message}`"));
                }
                Ok(None)
            }),
            other => fail(tally, format!("unexpected directive {other:?}")),
        }
    }
}

/// Runs `invoke` on its module (the last one, or the named one) and checks its outcome with
/// `check` (given the arguments), which returns the deviation it found, if any; an action that
/// returned joins the module's earlier actions.
fn action(
    modules: &mut [Module],
    named: &HashMap<String, usize>,
    invoke: &WastInvoke<'_>,
    tally: &mut Tally,
    at: &str,
    check: impl FnOnce(&Outcome, &[Value]) -> Result<Option<Deviation>, String>,
) {
    let index = match invoke.module {
        Some(id) => named[id.name()],
        None => modules.len() - 1,
    };
    let instance = match &mut modules[index] {
        Module::Rejected(d, _) => {
            tally.deviate(*d);
            return;
        }
        Module::Ready(i) => i,
    };
    let args: Option<Vec<Value>> = invoke.args.iter().map(arg).collect();
    let Some(args) = args else {
        tally
            .failures
            .push(format!("{at}: an argument outside the feature set"));
        return;
    };
    let outcome = match instance.run(invoke.name, &args) {
        Ok(o) => o,
        Err(e) => {
            tally.failures.push(format!("{at}: {e}"));
            return;
        }
    };
    tally.ran += 1;
    match check(&outcome, &args) {
        Ok(None) => tally.passed += 1,
        Ok(Some(d)) => tally.deviate(d),
        // A module linked to a rejected one may have been changed by it.
        Err(_) if instance.linked => tally.deviate(Deviation::Linking),
        Err(e) => tally.failures.push(format!("{at}: `{}`: {e}", invoke.name)),
    }
    if outcome.trap.is_none() {
        instance.actions.push((invoke.name.to_string(), args));
    }
}

/// The scripts: the suite's current core tests, and `2020/` the versions of a few from before
/// reference types and several memories entered them (most of their modules use one).
fn suite() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("spec");
    let mut files = Vec::new();
    for dir in [dir.clone(), dir.join("2020")] {
        files.extend(
            std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "wast")),
        );
    }
    files.sort();
    files
}

#[test]
fn the_spec_suite_passes_on_every_tier() {
    let runner = Runner::new();
    let mut total = Tally::default();
    println!(
        "{:<28} {:>6} {:>6} {:>6}  deviations",
        "file", "ran", "passed", "text"
    );
    for path in suite() {
        let mut tally = Tally::default();
        script(&runner, &path, &mut tally);
        println!(
            "{:<28} {:>6} {:>6} {:>6}  {:?}",
            path.strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")).join("spec"))
                .unwrap()
                .display(),
            tally.ran,
            tally.passed,
            tally.text,
            tally.deviations
        );
        total.ran += tally.ran;
        total.passed += tally.passed;
        total.text += tally.text;
        for (d, n) in tally.deviations {
            *total.deviations.entry(d).or_default() += n;
        }
        total.failures.extend(tally.failures);
    }
    println!(
        "total: {} actions ran on every tier, {} assertions passed, {} about the text format",
        total.ran, total.passed, total.text
    );
    for (d, n) in &total.deviations {
        println!("deviation {d:?}: {n}");
    }
    assert!(
        total.failures.is_empty(),
        "{} failures:\n{}",
        total.failures.len(),
        total.failures.join("\n")
    );
    // The suite really ran: a broken harness that skipped everything cannot pass.
    assert!(total.ran > 20_000, "only {} actions ran", total.ran);
}
