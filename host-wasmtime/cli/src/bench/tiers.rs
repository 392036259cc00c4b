//! `synor bench tiers`: tiered execution against each single tier, in one run.
//!
//! One Zipf-skewed workload over deployments of the project's contracts runs four times, each
//! from scratch (no compiled module, no artifact): wasmi only, Winch only, Cranelift only, and
//! tiered (with a fresh artifact cache). Every call's results, gas, trap and effects must agree
//! across the four runs. Then:
//!
//! - `tiered_over_oracle`: tiered total time over the best static choice of one tier per
//!   contract, chosen in hindsight from the single-tier runs (each contract's time includes
//!   its compilation), the median over five rounds of all four runs (the tiered run first in
//!   every other round);
//! - `tiered_over_best_single`: over the fastest single-tier run (the same way);
//! - `cold_first_call_over_wasmi`: the first call of each contract, tiered over wasmi only
//!   (the median of paired runs of fresh executors);
//! - `hot_over_cranelift`: steady-state time per call of the hottest contract;
//! - `metering_overhead`: instrumented over uninstrumented on Cranelift, geometric mean over
//!   compute programs;
//! - `restart_recompiles`: compilations when the workload runs again after a restart with the
//!   tiered run's artifact cache.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use synor_core::abi::CallContext;
use synor_core::gas::GasSchedule;
use synor_core::instrument::{self, Limits};
use synor_core::tier::{Call, Engine, Tier, TierPolicy};
use synor_host_std::{ArtifactSecret, FsArtifactCache};

use super::{median, paired, progress};
use crate::report::{TierPoint, TierRun};
use crate::workload::{self, Chain, Deployment, Record};
use synor_host_std::tiered::{DEFAULT_CACHE_BYTES, Mode, TieredExecutor};
use synor_host_wasmtime::engine::{TrustedArtifacts, WasmtimeEngine, engines};

/// Options of the tiers benchmark.
#[derive(Debug, Clone)]
pub struct Options {
    /// Calls in the workload.
    pub calls: usize,
    /// Deployments of each contract.
    pub copies: usize,
    /// Zipf exponent.
    pub skew: f64,
    /// Workload seed.
    pub seed: u64,
    /// Compute programs for `metering_overhead` (name, bytes).
    pub programs: Vec<(String, Vec<u8>)>,
    /// Pairs of instrumented and uninstrumented runs of each program (the median ratio
    /// counts).
    pub program_reps: usize,
    /// The size given to a program's `setup` when it takes one.
    pub program_size: i64,
    /// Show progress on stderr.
    pub progress: bool,
    /// The promotion policy of the tiered run.
    pub policy: TierPolicy,
}

/// Per-configuration totals.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// `wasmi`, `winch`, `cranelift` or `tiered`.
    pub config: String,
    /// Total time of every call, in seconds (compilation on the caller's thread included).
    pub total_secs: f64,
    /// Time of the first call of each contract, summed, in seconds.
    pub first_calls_secs: f64,
    /// Calls per tier (cold, warm, hot).
    pub calls_per_tier: [u64; 3],
    /// Real compilations per engine (cold, warm, hot).
    pub compilations: [u64; 3],
    /// The tiered runs' calls per tier and promotions over [`TIMELINE_WINDOWS`] windows of
    /// the workload, for `--report` (empty for the single-tier runs; not in the JSON).
    #[serde(skip)]
    pub timeline: Vec<TierPoint>,
}

/// Windows of a tiered run's workload in its timeline.
pub const TIMELINE_WINDOWS: usize = 40;

/// One compute program's metering overhead.
#[derive(Debug, Clone, Serialize)]
pub struct ProgramReport {
    /// File name.
    pub name: String,
    /// Times a timed call goes through the program (`setup`, `run`, `teardown`), so that it
    /// lasts at least [`PROGRAM_TARGET_SECS`] uninstrumented.
    pub runs: u32,
    /// Instrumented time of a timed call on Cranelift, seconds.
    pub instrumented_secs: f64,
    /// Uninstrumented time of a timed call on Cranelift, seconds.
    pub uninstrumented_secs: f64,
    /// Their ratio.
    pub overhead: f64,
    /// Gas the instrumented run used.
    pub gas_used: u64,
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Calls in the workload.
    pub calls: usize,
    /// Contracts deployed.
    pub contracts: usize,
    /// Whether every call of every measured round gave the same results, gas, trap and effects
    /// on every configuration, and the final states agree.
    pub gas_identical: bool,
    /// Calls that differed somewhere, summed over the measured rounds.
    pub mismatches: usize,
    /// Tiered total over the per-contract best static tier chosen in hindsight.
    pub tiered_over_oracle: f64,
    /// Tiered total over the fastest single tier.
    pub tiered_over_best_single: f64,
    /// First-call latency, tiered over wasmi only.
    pub cold_first_call_over_wasmi: f64,
    /// Steady-state time per call of the hottest contract, tiered over Cranelift only.
    pub hot_over_cranelift: f64,
    /// Instrumented over uninstrumented execution on Cranelift, geometric mean over programs.
    pub metering_overhead: f64,
    /// Compilations, after a restart with the tiered run's artifact cache, of modules compiled
    /// before the restart.
    pub restart_recompiles: u64,
    /// Compilations after the restart of modules never compiled before (promotions that the
    /// restart made possible sooner).
    pub restart_new_promotions: u64,
    /// The hottest contract (for `hot_over_cranelift`).
    pub hottest: String,
    /// Per configuration.
    pub runs: Vec<RunReport>,
    /// Per program.
    pub programs: Vec<ProgramReport>,
    /// Programs left out of `metering_overhead`, and why (e.g. they need input they were not
    /// given).
    pub skipped_programs: Vec<String>,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

struct RunResult {
    report: RunReport,
    records: Vec<Record>,
    /// Per contract: total time, and first-call time.
    per_contract: Vec<(Duration, Duration)>,
    state: synor_core::Digest,
}

fn run_config(
    config: &str,
    exec: &TieredExecutor,
    deployments: &[Deployment],
    calls: &[workload::CallSpec],
    show: bool,
) -> Result<RunResult, Error> {
    let bar = progress(calls.len() as u64, config, show);
    let chain = Chain::default();
    let mut records = Vec::with_capacity(calls.len());
    let mut per_contract = vec![(Duration::ZERO, Duration::ZERO); deployments.len()];
    let mut seen = vec![false; deployments.len()];
    let mut calls_per_tier = [0u64; 3];
    // Only the tiered runs' timelines say something (bookkeeping outside the timed calls).
    let timeline_window = (config == "tiered" || config == "restart")
        .then(|| calls.len().div_ceil(TIMELINE_WINDOWS).max(1));
    let mut timeline = Vec::new();
    let mut window = [0u64; 3];
    let promotions_before = exec.stats().promotions;
    for (i, spec) in calls.iter().enumerate() {
        let (record, tier, took) = chain.execute(exec, deployments, spec, false)?;
        calls_per_tier[tier as usize] += 1;
        if let Some(w) = timeline_window {
            window[tier as usize] += 1;
            if (i + 1) % w == 0 || i + 1 == calls.len() {
                timeline.push(TierPoint {
                    at: (i + 1) as f64,
                    calls: std::mem::take(&mut window),
                    promotions: exec.stats().promotions - promotions_before,
                });
            }
        }
        let c = &mut per_contract[spec.contract];
        c.0 += took;
        if !seen[spec.contract] {
            seen[spec.contract] = true;
            c.1 = took;
        }
        records.push(record);
        bar.inc(1);
    }
    bar.finish_and_clear();
    exec.wait_idle();
    let total: Duration = per_contract.iter().map(|c| c.0).sum();
    let first: Duration = per_contract.iter().map(|c| c.1).sum();
    Ok(RunResult {
        report: RunReport {
            config: config.into(),
            total_secs: total.as_secs_f64(),
            first_calls_secs: first.as_secs_f64(),
            calls_per_tier,
            compilations: exec.compilations(),
            timeline,
        },
        records,
        per_contract,
        state: chain.digest(),
    })
}

/// Time the calls `specs` take on `exec`, one after the other on a fresh chain (calls only,
/// not the bookkeeping around them).
fn calls_time<'a>(
    exec: &TieredExecutor,
    deployments: &[Deployment],
    specs: impl IntoIterator<Item = &'a workload::CallSpec>,
) -> Result<Duration, Error> {
    let chain = Chain::default();
    let mut t = Duration::ZERO;
    for spec in specs {
        t += chain.execute(exec, deployments, spec, false)?.2;
    }
    Ok(t)
}

/// Steady-state time per call of `specs` on executor `a` over executor `b`: batches alternate
/// between the two (in alternating order) so that drift on a shared machine hits both alike;
/// the median of `reps` pairs' ratios.
fn steady(
    a: &TieredExecutor,
    b: &TieredExecutor,
    deployments: &[Deployment],
    specs: &[workload::CallSpec],
    reps: usize,
) -> Result<f64, Error> {
    let batch = |exec: &TieredExecutor| -> Result<f64, Error> {
        Ok(calls_time(exec, deployments, specs)?.as_secs_f64() / specs.len().max(1) as f64)
    };
    Ok(paired(reps, || batch(a), || batch(b))?.0)
}

/// First-call latency, tiered over wasmi only: the median over `reps` pairs (in alternating
/// order) of the ratio of two fresh executors' time for the first call of every contract, in
/// the workload's order (a single sample per contract is mostly scheduling noise: one call's
/// 0.4 ms is 2 ms when the machine is busy). Each tiered executor has a fresh, empty artifact
/// cache, so its first calls take the cold path.
fn first_call_ratio(
    deployments: &[Deployment],
    calls: &[workload::CallSpec],
    policy: TierPolicy,
    reps: usize,
) -> Result<f64, Error> {
    let limits = Limits::default();
    let mut seen = vec![false; deployments.len()];
    let firsts: Vec<&workload::CallSpec> = calls
        .iter()
        .filter(|c| !std::mem::replace(&mut seen[c.contract], true))
        .collect();
    let first_calls = |tiered: bool| -> Result<f64, Error> {
        let dir = tempfile::tempdir()?;
        let exec = if tiered {
            let secret = ArtifactSecret::generate()?;
            // SAFETY: the secret was just generated and never leaves this process; only the
            // engines store into the cache, their own compiled output.
            let cache = TrustedArtifacts::fs(Arc::new(unsafe {
                FsArtifactCache::open(dir.path(), &secret, Default::default())
            }?));
            TieredExecutor::new(
                engines(&limits, Some(cache))?,
                Mode::Tiered(policy),
                DEFAULT_CACHE_BYTES,
            )
        } else {
            TieredExecutor::new(
                engines(&limits, None)?,
                Mode::Static(Tier::Cold),
                DEFAULT_CACHE_BYTES,
            )
        };
        Ok(calls_time(&exec, deployments, firsts.iter().copied())?.as_secs_f64())
    };
    Ok(paired(reps, || first_calls(true), || first_calls(false))?.0)
}

/// The shortest timed call of a compute program, uninstrumented: shorter programs are timed
/// over repeated runs.
pub const PROGRAM_TARGET_SECS: f64 = 0.02;

fn metering(options: &Options, skipped: &mut Vec<String>) -> Result<Vec<ProgramReport>, Error> {
    let instrumented = WasmtimeEngine::cranelift(None)?;
    let raw = WasmtimeEngine::cranelift(None)?.uninstrumented();
    let limits = Limits::default();
    let mut out = Vec::new();
    let bar = progress(options.programs.len() as u64, "metering", options.progress);
    for (name, wasm) in &options.programs {
        let module = Arc::new(
            instrument::instrument(wasm, &GasSchedule::V1, &limits)
                .map_err(|e| format!("{name}: {e}"))?,
        );
        let a = instrumented.compile(&module)?;
        let b = raw.compile_raw(wasm, &module)?;
        let args = synor_core::tier::program_args(&module, options.program_size);
        let once =
            |m: &Arc<dyn synor_core::tier::Compiled>, runs: u32| -> Result<(f64, u64), String> {
                let mut ctx = CallContext::with_gas(u64::MAX);
                let t = std::time::Instant::now();
                let o = m
                    .call(&mut ctx, &Call::program(&args).repeated(runs))
                    .map_err(|e| e.to_string())?;
                let secs = t.elapsed().as_secs_f64();
                match o.trap {
                    Some(trap) => Err(trap.to_string()),
                    None => Ok((secs, o.gas_used)),
                }
            };
        let gas = match once(&a, 1) {
            Ok((_, gas)) => gas,
            Err(e) => {
                skipped.push(format!("{name}: {e}"));
                bar.inc(1);
                continue;
            }
        };
        // A timed call lasts at least PROGRAM_TARGET_SECS: a program that runs for tens of
        // microseconds is otherwise timed mostly as its instance's set-up and the clock's noise.
        let single = once(&b, 1)?.0;
        let runs = (PROGRAM_TARGET_SECS / single.max(1e-7))
            .ceil()
            .clamp(1.0, 10_000.0) as u32;
        // Pairs of runs, in alternating order; the median of the pairs' ratios is robust to a
        // shared machine's drift and bursts, which hit both runs of a pair alike.
        let (overhead, ti, tu) = paired(
            options.program_reps,
            || once(&a, runs).map(|r| r.0),
            || once(&b, runs).map(|r| r.0),
        )?;
        out.push(ProgramReport {
            name: name.clone(),
            runs,
            instrumented_secs: ti,
            uninstrumented_secs: tu,
            overhead,
            gas_used: gas,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(out)
}

/// Rounds of the whole workload whose ratios count (after one that warms the process).
const MEASURED_ROUNDS: usize = 5;

/// Runs the benchmark on `files` (contracts: name, bytes).
///
/// # Errors
/// A contract or program is rejected, an engine fails, or the cache directory cannot be made.
pub fn run(files: &[(String, Vec<u8>)], options: &Options) -> Result<Report, Error> {
    let limits = Limits::default();
    let deployments = workload::deploy(files, options.copies)?;
    let calls = workload::zipf(&deployments, options.calls, options.skew, options.seed);
    let show = options.progress;

    let mut runs = Vec::new();
    // A first round warms the process (allocator, page cache, engines' lazily built state) so
    // that no configuration pays for running first; then five measured rounds, each running
    // every configuration from scratch. Ratios are the medians over the measured rounds; the
    // last round's executors go on to the steady-state and restart measurements.
    let mut measured = None;
    let (mut over_oracle, mut over_best) = (Vec::new(), Vec::new());
    let mut mismatches = 0;
    let mut states_agree = true;
    for round in 0..1 + MEASURED_ROUNDS {
        let show = show && round == MEASURED_ROUNDS;
        let run_statics = || -> Result<Vec<_>, Error> {
            let mut statics = Vec::new();
            for (config, tier) in [
                ("wasmi", Tier::Cold),
                ("winch", Tier::Warm),
                ("cranelift", Tier::Hot),
            ] {
                let exec = TieredExecutor::new(
                    engines(&limits, None)?,
                    Mode::Static(tier),
                    DEFAULT_CACHE_BYTES,
                );
                let r = run_config(config, &exec, &deployments, &calls, show)?;
                statics.push((r, exec));
            }
            Ok(statics)
        };
        let dir = tempfile::tempdir()?;
        let secret = ArtifactSecret::generate()?;
        // SAFETY: the secret was just generated and never leaves this process; only the
        // engines store into the cache, their own compiled output.
        let cache = TrustedArtifacts::fs(Arc::new(unsafe {
            FsArtifactCache::open(dir.path(), &secret, Default::default())
        }?));
        let tiered_exec = TieredExecutor::new(
            engines(&limits, Some(cache.clone()))?,
            Mode::Tiered(options.policy),
            DEFAULT_CACHE_BYTES,
        );
        // The tiered configuration runs last in even rounds and first in odd ones, so that a
        // machine's drift over a round does not always fall on the same side of the ratio.
        let (statics, tiered) = if round % 2 == 0 {
            let statics = run_statics()?;
            let tiered = run_config("tiered", &tiered_exec, &deployments, &calls, show)?;
            (statics, tiered)
        } else {
            let tiered = run_config("tiered", &tiered_exec, &deployments, &calls, show)?;
            (run_statics()?, tiered)
        };
        if round > 0 {
            // Agreement: every call, every configuration, and the final states.
            for (i, rec) in tiered.records.iter().enumerate() {
                if statics.iter().any(|(s, _)| s.records[i] != *rec) {
                    mismatches += 1;
                }
            }
            states_agree &= statics.iter().all(|(s, _)| s.state == tiered.state);
            // Hindsight oracle: per contract, the best of the three static tiers.
            let oracle: f64 = (0..deployments.len())
                .map(|c| {
                    statics
                        .iter()
                        .map(|(s, _)| s.per_contract[c].0.as_secs_f64())
                        .fold(f64::INFINITY, f64::min)
                })
                .sum();
            let best_single = statics
                .iter()
                .map(|(s, _)| s.report.total_secs)
                .fold(f64::INFINITY, f64::min);
            over_oracle.push(tiered.report.total_secs / oracle);
            over_best.push(tiered.report.total_secs / best_single);
        }
        measured = Some((statics, dir, cache, tiered_exec, tiered));
    }
    let Some((statics, _dir, cache, tiered_exec, tiered)) = measured else {
        unreachable!("the rounds ran")
    };
    let gas_identical = mismatches == 0 && states_agree;

    // Steady state of the hottest contract, tiered (now hot) against Cranelift only.
    let mut counts = vec![0usize; deployments.len()];
    for c in &calls {
        counts[c.contract] += 1;
    }
    let hottest = (0..deployments.len())
        .max_by_key(|c| counts[*c])
        .unwrap_or(0);
    let hot_specs: Vec<_> = calls
        .iter()
        .filter(|c| c.contract == hottest)
        .take(200)
        .cloned()
        .collect();
    let hot_over_cranelift = steady(&tiered_exec, &statics[2].1, &deployments, &hot_specs, 11)?;

    // Restart: new engines and executor over the same artifact cache.
    let compiled_before = tiered_exec.compiled_in_background();
    drop(tiered_exec);
    let restarted = TieredExecutor::new(
        engines(&limits, Some(cache))?,
        Mode::Tiered(options.policy),
        DEFAULT_CACHE_BYTES,
    );
    let again = run_config("restart", &restarted, &deployments, &calls, show)?;
    // A compilation after the restart of a module compiled before it is a recompile; one of a
    // module never compiled before is a new promotion (a contract that starts warm from its
    // artifact can reach hot sooner than it did while waiting for its warm compile).
    let before: std::collections::HashSet<_> = compiled_before.into_iter().collect();
    let after = restarted.compiled_in_background();
    let restart_recompiles = after.iter().filter(|m| before.contains(m)).count() as u64;
    let restart_new_promotions = after.len() as u64 - restart_recompiles;

    let cold_first_call_over_wasmi =
        first_call_ratio(&deployments, &calls, options.policy, options.program_reps)?;
    let mut skipped = Vec::new();
    let programs = metering(options, &mut skipped)?;
    let metering_overhead = if programs.is_empty() {
        f64::NAN
    } else {
        (programs.iter().map(|p| p.overhead.ln()).sum::<f64>() / programs.len() as f64).exp()
    };

    runs.extend(statics.iter().map(|(s, _)| s.report.clone()));
    runs.push(tiered.report.clone());
    runs.push(again.report.clone());
    Ok(Report {
        calls: calls.len(),
        contracts: deployments.len(),
        gas_identical,
        mismatches,
        tiered_over_oracle: median(over_oracle),
        tiered_over_best_single: median(over_best),
        cold_first_call_over_wasmi,
        hot_over_cranelift,
        metering_overhead,
        restart_recompiles,
        restart_new_promotions,
        hottest: deployments[hottest].name.clone(),
        runs,
        programs,
        skipped_programs: skipped,
    })
}

/// Adds what the benchmark measured to `out`: the tiered run's (and the restarted one's) tier
/// timeline.
///
/// # Errors
/// A chart could not be drawn.
pub fn report(r: &Report, out: &mut crate::report::Report) -> Result<(), Error> {
    let runs: Vec<TierRun> = r
        .runs
        .iter()
        .filter(|run| !run.timeline.is_empty())
        .map(|run| TierRun {
            name: match run.config.as_str() {
                "restart" => "tiered, after a restart (artifact cache)".to_string(),
                other => other.to_string(),
            },
            points: run.timeline.clone(),
        })
        .collect();
    out.tiers(
        &format!(
            "{} Zipf-skewed calls over {} contracts, tiered from cold (wasmi) through warm \
             (Winch) to hot (Cranelift) by use, promotions compiled on a background thread; \
             then the same workload after a restart, with the artifact cache. Tiered over the \
             best static tier per contract in hindsight: {:.2}; gas identical on every tier: {}.",
            r.calls, r.contracts, r.tiered_over_oracle, r.gas_identical
        ),
        "calls",
        &runs,
    )
}

/// A human-readable summary.
pub fn table(r: &Report) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "{} calls over {} contracts; gas identical on every tier: {} ({} mismatches)\n\n",
        r.calls, r.contracts, r.gas_identical, r.mismatches
    ));
    s.push_str(&format!(
        "{:<10} {:>10} {:>12} {:>22} {:>16}\n",
        "config", "total s", "first s", "calls cold/warm/hot", "compilations"
    ));
    for run in &r.runs {
        s.push_str(&format!(
            "{:<10} {:>10.4} {:>12.5} {:>22} {:>16}\n",
            run.config,
            run.total_secs,
            run.first_calls_secs,
            format!(
                "{}/{}/{}",
                run.calls_per_tier[0], run.calls_per_tier[1], run.calls_per_tier[2]
            ),
            format!(
                "{}/{}/{}",
                run.compilations[0], run.compilations[1], run.compilations[2]
            ),
        ));
    }
    s.push_str("\nprogram      runs  instrumented s  uninstrumented s  overhead\n");
    for p in &r.programs {
        s.push_str(&format!(
            "{:<12} {:>4} {:>14.4} {:>17.4} {:>9.3}\n",
            p.name, p.runs, p.instrumented_secs, p.uninstrumented_secs, p.overhead
        ));
    }
    for p in &r.skipped_programs {
        s.push_str(&format!("skipped: {p}\n"));
    }
    s.push_str(&format!(
        "\ntiered_over_oracle         {:.3}\ntiered_over_best_single    {:.3}\n\
         cold_first_call_over_wasmi {:.3}\nhot_over_cranelift         {:.3} ({})\n\
         metering_overhead          {:.3}\nrestart_recompiles         {} ({} new promotions)\n",
        r.tiered_over_oracle,
        r.tiered_over_best_single,
        r.cold_first_call_over_wasmi,
        r.hot_over_cranelift,
        r.hottest,
        r.metering_overhead,
        r.restart_recompiles,
        r.restart_new_promotions
    ));
    s
}
