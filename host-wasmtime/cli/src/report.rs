//! `--report DIR`: one self-contained HTML page of what a run measured, with charts.
//!
//! A [`Report`] is filled by the benchmarks and the demonstration with sections, each
//! optional: a section whose data the run did not measure is left out. The sections, in the
//! order the page shows them:
//!
//! | section | method | fed by |
//! |---|---|---|
//! | throughput per block | [`Report::throughput`] | the demonstration, `bench node` |
//! | tier promotions over time | [`Report::tiers`] | the demonstration, `bench tiers`, `bench node` |
//! | speedup against threads | [`Report::speedup`] | `bench sched` |
//! | store bytes against the zstd peers | [`Report::store`] | the demonstration, `bench store` |
//! | synor against cosmwasm-vm | [`Report::e2e`] | the end-to-end benchmark's JSON figures |
//!
//! [`Report::write`] writes `DIR/index.html`: inline SVG charts (drawn by `plotters`, text as
//! SVG `<text>`, so no font file is read), inline CSS, no script and nothing fetched from the
//! network; a chart's figures are also given as a table under it.
//!
//! # Examples
//!
//! ```no_run
//! # fn main() -> Result<(), synor_cli::report::Error> {
//! let figures = serde_json::json!({"tps_synor": 12000.0, "tps_cosmwasm_vm": 3000.0, "ratio": 4.0});
//! let mut report = synor_cli::report::Report::new("synor bench e2e");
//! report.e2e(&figures)?;
//! let page = report.write("synor-report".as_ref())?;
//! eprintln!("report: {}", page.display());
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

#[cfg(test)]
mod tests;

/// Errors of a report: a chart that could not be drawn, figures of the wrong shape, or the
/// page that could not be written.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The file a report is written to, in its directory.
pub const PAGE: &str = "index.html";

/// A section of the page, in the order the page shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Transactions per second of each block.
    Throughput,
    /// Which tier served calls, and promotions, over a run.
    Tiers,
    /// Parallel block execution over sequential, against threads, measured and simulated.
    Speedup,
    /// Code store bytes against the zstd peers.
    Store,
    /// synor against cosmwasm-vm on the same contracts and blocks.
    E2e,
}

impl Kind {
    /// The section's anchor in the page (`<section id=...>`).
    pub fn id(self) -> &'static str {
        match self {
            Kind::Throughput => "throughput",
            Kind::Tiers => "tiers",
            Kind::Speedup => "speedup",
            Kind::Store => "store",
            Kind::E2e => "e2e",
        }
    }

    /// The section's heading.
    pub fn heading(self) -> &'static str {
        match self {
            Kind::Throughput => "Throughput per block",
            Kind::Tiers => "Tier promotions over time",
            Kind::Speedup => "Speedup against threads",
            Kind::Store => "Store bytes against the zstd peers",
            Kind::E2e => "synor against cosmwasm-vm",
        }
    }
}

/// One line of the throughput chart: the transactions per second of each block, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// What ran the blocks (a node, a mode).
    pub name: String,
    /// The number (height) of the first block.
    pub first: u64,
    /// Transactions per second of block `first`, `first + 1`, ...
    pub values: Vec<f64>,
}

/// Calls served per tier in one window of a run, and the promotions so far.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TierPoint {
    /// Where the window ends: calls so far, or a block's number.
    pub at: f64,
    /// Calls the cold, warm and hot tier served in the window.
    pub calls: [u64; 3],
    /// Promotions requested since the run began, at the window's end.
    pub promotions: u64,
}

/// One run's tier timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct TierRun {
    /// What ran (an executor, a node).
    pub name: String,
    /// Its windows, in order.
    pub points: Vec<TierPoint>,
}

/// Bytes stored by synor and by its peers for the same corpus.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StoreBytes {
    /// What was stored.
    pub corpus: String,
    /// Files (or records) in it.
    pub files: u64,
    /// Their size uncompressed, when known.
    pub raw: Option<u64>,
    /// Every byte synor's store holds for them.
    pub synor: u64,
    /// Each peer's bytes, the reference of the ratios first (e.g. `zstd -19` per file).
    pub peers: Vec<(String, u64)>,
    /// Upgrades: what synor added for the new versions, against the peer's bytes for them.
    pub upgrades: Option<UpgradeBytes>,
}

/// Bytes of the new versions of upgraded contracts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UpgradeBytes {
    /// Upgrade pairs.
    pub pairs: u64,
    /// What synor's store added for the new versions.
    pub synor: u64,
    /// The peer's name (e.g. `zstd -19 --patch-from`).
    pub peer: String,
    /// The peer's bytes for the same new versions.
    pub peer_bytes: u64,
}

/// A run's report: facts of the machine and the run, and the sections measured.
#[derive(Debug, Clone)]
pub struct Report {
    title: String,
    facts: Vec<(String, String)>,
    sections: BTreeMap<Kind, Section>,
}

/// A section as the page shows it: a sentence, charts, tables.
#[derive(Debug, Clone, Default)]
struct Section {
    intro: String,
    charts: Vec<Chart>,
    tables: Vec<Table>,
}

/// A drawn chart and its legend.
#[derive(Debug, Clone)]
struct Chart {
    caption: String,
    svg: String,
    legend: Vec<(String, RGBColor, bool)>,
}

/// A table of figures (cells are plain text; escaped when written).
#[derive(Debug, Clone, Default)]
struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Report {
    /// An empty report titled `title`, with this machine's facts (cores, build, system, load)
    /// and the command line.
    pub fn new(title: &str) -> Self {
        let mut facts = vec![
            ("written".to_string(), utc_now()),
            (
                "command".to_string(),
                std::env::args().collect::<Vec<_>>().join(" "),
            ),
            (
                "synor".to_string(),
                format!(
                    "{} ({} build)",
                    env!("CARGO_PKG_VERSION"),
                    if cfg!(debug_assertions) {
                        "debug"
                    } else {
                        "release"
                    }
                ),
            ),
            (
                "cores".to_string(),
                std::thread::available_parallelism()
                    .map_or_else(|_| "unknown".to_string(), |n| n.to_string()),
            ),
            (
                "system".to_string(),
                format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            ),
        ];
        if let Some(cpu) = cpu_model() {
            facts.push(("processor".to_string(), cpu));
        }
        if let Some(load) = load_average() {
            facts.push(("load average (1, 5, 15 min)".to_string(), load));
        }
        Self {
            title: title.to_string(),
            facts,
            sections: BTreeMap::new(),
        }
    }

    /// Adds a fact of the run (a corpus, a seed, a workload) to the page's list.
    pub fn fact(&mut self, name: &str, value: impl std::fmt::Display) {
        self.facts.push((name.to_string(), value.to_string()));
    }

    /// The sections the report has, in the page's order.
    pub fn kinds(&self) -> Vec<Kind> {
        self.sections.keys().copied().collect()
    }

    /// Whether the report has section `kind`.
    pub fn has(&self, kind: Kind) -> bool {
        self.sections.contains_key(&kind)
    }

    /// The throughput section: a line of transactions per second per block for each series
    /// (`context` says what the blocks were). Values that are not finite and positive are left
    /// out; with none left, so is the section. Replaces an earlier throughput section.
    ///
    /// # Errors
    /// A chart could not be drawn.
    pub fn throughput(&mut self, context: &str, series: &[Series]) -> Result<(), Error> {
        let series: Vec<(&str, Vec<(f64, f64)>)> = series
            .iter()
            .map(|s| {
                let points = s
                    .values
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| v.is_finite() && **v > 0.0)
                    .map(|(i, v)| ((s.first + i as u64) as f64, *v))
                    .collect();
                (s.name.as_str(), points)
            })
            .filter(|(_, p): &(_, Vec<_>)| !p.is_empty())
            .collect();
        if series.is_empty() {
            return Ok(());
        }
        let lines: Vec<Line> = series
            .iter()
            .enumerate()
            .map(|(i, (name, points))| Line::new(name, points.clone(), color(i)))
            .collect();
        let chart = line_chart(
            "transactions per second of each block",
            &Axes::new("block", "transactions per second").integer_x(),
            &lines,
        )?;
        let mut table = Table::new(&["series", "blocks", "median tx/s", "min tx/s", "max tx/s"]);
        for (name, points) in &series {
            let values: Vec<f64> = points.iter().map(|p| p.1).collect();
            let min = values.iter().copied().fold(f64::INFINITY, f64::min);
            let max = values.iter().copied().fold(0.0, f64::max);
            table.row(vec![
                name.to_string(),
                values.len().to_string(),
                count(crate::bench::median(values)),
                count(min),
                count(max),
            ]);
        }
        self.sections.insert(
            Kind::Throughput,
            Section {
                intro: context.to_string(),
                charts: vec![chart],
                tables: vec![table],
            },
        );
        Ok(())
    }

    /// The tiers section: for each run, the share of each window's calls that each tier
    /// served, and the promotions so far, against `x` (`"calls"` or `"block"`). Runs with no
    /// windows are left out; with none left, so is the section. Replaces an earlier tiers
    /// section.
    ///
    /// # Errors
    /// A chart could not be drawn.
    pub fn tiers(&mut self, context: &str, x: &str, runs: &[TierRun]) -> Result<(), Error> {
        let runs: Vec<&TierRun> = runs
            .iter()
            .filter(|r| r.points.iter().any(|p| p.at.is_finite()))
            .collect();
        if runs.is_empty() {
            return Ok(());
        }
        const TIERS: [&str; 3] = ["cold (wasmi)", "warm (Winch)", "hot (Cranelift)"];
        let tier_colors = [color(0), color(1), color(3)];
        let mut shares = Vec::new();
        let mut promotions = Vec::new();
        for (r, run) in runs.iter().enumerate() {
            let points: Vec<&TierPoint> = run.points.iter().filter(|p| p.at.is_finite()).collect();
            for (t, name) in TIERS.iter().enumerate() {
                let line: Vec<(f64, f64)> = points
                    .iter()
                    .filter_map(|p| {
                        let total = p.calls.iter().sum::<u64>();
                        (total > 0).then(|| (p.at, 100.0 * p.calls[t] as f64 / total as f64))
                    })
                    .collect();
                let name = if runs.len() > 1 {
                    format!("{name}, {}", run.name)
                } else {
                    (*name).to_string()
                };
                shares.push(Line::new(&name, line, tier_colors[t]).dashed(r > 0));
            }
            promotions.push(
                Line::new(
                    &run.name,
                    points.iter().map(|p| (p.at, p.promotions as f64)).collect(),
                    color(r + 4),
                )
                .dashed(r > 0),
            );
        }
        let mut charts = vec![line_chart(
            &format!("share of the calls each tier served, per window of {x}"),
            &Axes::new(x, "% of the window's calls").y_max(100.0),
            &shares,
        )?];
        charts.push(line_chart(
            "promotions requested so far",
            &Axes::new(x, "promotions"),
            &promotions,
        )?);
        let mut table = Table::new(&["run", "windows", "cold", "warm", "hot", "promotions"]);
        for run in &runs {
            let sum = |t: usize| run.points.iter().map(|p| p.calls[t]).sum::<u64>();
            table.row(vec![
                run.name.clone(),
                run.points.len().to_string(),
                sum(0).to_string(),
                sum(1).to_string(),
                sum(2).to_string(),
                run.points
                    .iter()
                    .map(|p| p.promotions)
                    .max()
                    .unwrap_or(0)
                    .to_string(),
            ]);
        }
        self.sections.insert(
            Kind::Tiers,
            Section {
                intro: context.to_string(),
                charts,
                tables: vec![table],
            },
        );
        Ok(())
    }

    /// The speedup section from `bench sched`'s cells: measured speedup over sequential
    /// against threads, and the simulated speedup on 32 and 64 workers, for the least
    /// contended workload (most accounts, largest block); measured speedup at the most threads
    /// against accounts; every cell as a table. Without cells, no section. Replaces an earlier
    /// speedup section.
    ///
    /// # Errors
    /// A chart could not be drawn.
    pub fn speedup(&mut self, sched: &crate::bench::sched::Report) -> Result<(), Error> {
        let cells: Vec<&crate::bench::sched::Cell> = sched
            .cells
            .iter()
            .filter(|c| c.speedup.is_finite() && c.speedup > 0.0)
            .collect();
        let Some(headline) = cells.iter().map(|c| (c.accounts, c.block)).max() else {
            return Ok(());
        };
        const MODES: [&str; 3] = ["declared", "optimistic", "independent"];
        let mut lines = Vec::new();
        for (m, mode) in MODES.iter().enumerate() {
            let of_mode: Vec<_> = cells
                .iter()
                .filter(|c| (c.accounts, c.block) == headline && c.mode == *mode)
                .collect();
            let mut measured: Vec<(f64, f64)> = of_mode
                .iter()
                .map(|c| ((c.threads.max(1) as f64).log2(), c.speedup.log2()))
                .collect();
            measured.sort_by(|a, b| a.0.total_cmp(&b.0));
            if measured.is_empty() {
                continue;
            }
            lines.push(Line::new(&format!("{mode}, measured"), measured, color(m)));
            // Independent copies' "simulation" is their count: a reference, not a prediction.
            if *mode != "independent"
                && let Some(c) = of_mode.iter().max_by_key(|c| c.threads)
            {
                let sim: Vec<(f64, f64)> = [(32.0, c.sim_speedup_32), (64.0, c.sim_speedup_64)]
                    .into_iter()
                    .filter(|(_, s)| s.is_finite() && *s > 0.0)
                    .map(|(t, s): (f64, f64)| (t.log2(), s.log2()))
                    .collect();
                if !sim.is_empty() {
                    lines
                        .push(Line::new(&format!("{mode}, simulated"), sim, color(m)).dashed(true));
                }
            }
        }
        lines.push(
            Line::new(
                "linear (threads = speedup)",
                vec![(0.0, 0.0), (6.0, 6.0)],
                RGBColor(150, 150, 150),
            )
            .dashed(true)
            .without_markers(),
        );
        let mut charts = vec![line_chart(
            &format!(
                "over sequential, {} accounts, blocks of {} transfers (log-log)",
                headline.0, headline.1
            ),
            &Axes::new(
                "threads (measured) / workers (simulated)",
                "speedup over sequential",
            )
            .log2_x()
            .log2_y(),
            &lines,
        )?];
        // Contention: speedup at the most threads measured, against accounts.
        let accounts: std::collections::BTreeSet<u64> = cells.iter().map(|c| c.accounts).collect();
        let most = cells
            .iter()
            .filter(|c| c.mode != "independent")
            .map(|c| c.threads)
            .max()
            .unwrap_or(1);
        if accounts.len() > 1 && most > 1 {
            let blocks: std::collections::BTreeSet<usize> = cells.iter().map(|c| c.block).collect();
            let mut lines = Vec::new();
            for (m, mode) in MODES[..2].iter().enumerate() {
                for (b, block) in blocks.iter().rev().enumerate() {
                    let points: Vec<(f64, f64)> = cells
                        .iter()
                        .filter(|c| c.mode == *mode && c.block == *block && c.threads == most)
                        .map(|c| ((c.accounts.max(1) as f64).log10(), c.speedup))
                        .collect();
                    if !points.is_empty() {
                        lines.push(
                            Line::new(&format!("{mode}, blocks of {block}"), points, color(m))
                                .dashed(b > 0),
                        );
                    }
                }
            }
            if !lines.is_empty() {
                charts.push(line_chart(
                    &format!("measured on {most} threads, against contention"),
                    &Axes::new(
                        "accounts (fewer: more conflicts)",
                        "speedup over sequential",
                    )
                    .log10_x(),
                    &lines,
                )?);
            }
        }
        let mut table = Table::new(&[
            "accounts",
            "block",
            "mode",
            "threads",
            "tx/s",
            "speedup",
            "pairs q1–q3",
            "executions/tx",
            "sim 32",
            "sim 64",
        ]);
        for c in &sched.cells {
            table.row(vec![
                c.accounts.to_string(),
                c.block.to_string(),
                c.mode.clone(),
                c.threads.to_string(),
                count(c.tps),
                format!("{:.2}", c.speedup),
                format!("{:.2}–{:.2}", c.speedup_q1, c.speedup_q3),
                format!("{:.2}", c.executions_per_tx),
                format!("{:.1}", c.sim_speedup_32),
                format!("{:.1}", c.sim_speedup_64),
            ]);
        }
        self.sections.insert(
            Kind::Speedup,
            Section {
                intro: "Parallel block execution over sequential on the same transactions, the \
                        median ratio of paired runs; simulated: the measured per-transaction \
                        costs and the block's dependencies scheduled on 32 and 64 workers. \
                        Independent copies (one sequential block per thread, sharing nothing) \
                        are the machine's own reference for parallel work."
                    .to_string(),
                charts,
                tables: vec![table],
            },
        );
        Ok(())
    }

    /// The store section: synor's bytes against each peer's for the same corpus (and for
    /// upgrades, when given). Replaces an earlier store section.
    ///
    /// # Errors
    /// A chart could not be drawn.
    pub fn store(&mut self, figures: &StoreBytes) -> Result<(), Error> {
        let reference = figures.peers.first().filter(|(_, b)| *b > 0);
        let ratio = |bytes: u64| {
            reference.map_or(String::new(), |(_, r)| {
                format!("{:.3}×", bytes as f64 / *r as f64)
            })
        };
        let mut bars = vec![Bar {
            label: "synor store".to_string(),
            value: figures.synor as f64,
            color: color(0),
            note: join(&[bytes(figures.synor as f64), ratio(figures.synor)]),
        }];
        for (i, (name, b)) in figures.peers.iter().enumerate() {
            bars.push(Bar {
                label: name.clone(),
                value: *b as f64,
                color: color(i + 1),
                note: join(&[bytes(*b as f64), ratio(*b)]),
            });
        }
        if let Some(raw) = figures.raw {
            bars.push(Bar {
                label: "uncompressed".to_string(),
                value: raw as f64,
                color: RGBColor(170, 170, 170),
                note: bytes(raw as f64),
            });
        }
        let mut charts = vec![bar_chart(
            &format!(
                "{} ({} files){}",
                figures.corpus,
                figures.files,
                reference.map_or(String::new(), |(name, _)| format!(", each against {name}"))
            ),
            "bytes",
            &bars,
        )?];
        let mut table = Table::new(&[
            "method",
            "bytes",
            &format!(
                "× {}",
                reference.map_or("the first peer", |(name, _)| name.as_str())
            ),
        ]);
        table.row(vec![
            "synor store".into(),
            grouped(figures.synor),
            ratio(figures.synor),
        ]);
        for (name, b) in &figures.peers {
            table.row(vec![name.clone(), grouped(*b), ratio(*b)]);
        }
        if let Some(raw) = figures.raw {
            table.row(vec!["uncompressed".into(), grouped(raw), String::new()]);
        }
        let mut tables = vec![table];
        if let Some(u) = &figures.upgrades {
            let of = |b: u64| {
                if u.peer_bytes > 0 {
                    format!("{:.3}×", b as f64 / u.peer_bytes as f64)
                } else {
                    String::new()
                }
            };
            charts.push(bar_chart(
                &format!(
                    "upgrades: the new versions of {} pairs, against {}",
                    u.pairs, u.peer
                ),
                "bytes",
                &[
                    Bar {
                        label: "synor store (deltas)".to_string(),
                        value: u.synor as f64,
                        color: color(0),
                        note: join(&[bytes(u.synor as f64), of(u.synor)]),
                    },
                    Bar {
                        label: u.peer.clone(),
                        value: u.peer_bytes as f64,
                        color: color(2),
                        note: bytes(u.peer_bytes as f64),
                    },
                ],
            )?);
            let mut t = Table::new(&["upgrades", "bytes", &format!("× {}", u.peer)]);
            t.row(vec![
                "synor store (deltas)".into(),
                grouped(u.synor),
                of(u.synor),
            ]);
            t.row(vec![u.peer.clone(), grouped(u.peer_bytes), String::new()]);
            tables.push(t);
        }
        self.sections.insert(
            Kind::Store,
            Section {
                intro: "Every byte synor's code store holds for the corpus (records, chunks, \
                        dictionaries, index), against what the zstd peers write for the same \
                        files."
                    .to_string(),
                charts,
                tables,
            },
        );
        Ok(())
    }

    /// The end-to-end section, from the end-to-end benchmark's JSON figures: `tps_synor` and
    /// `tps_cosmwasm_vm` (required), and when present `tps_synor_1t`, `ratio`, `ratio_1t`,
    /// `deploy_ms`, `deploy_ms_cosmwasm_vm`, and per-block throughput `blocks_synor` and
    /// `blocks_cosmwasm_vm` (arrays of transactions per second). Every other top-level number,
    /// string or boolean is listed in the section's table as given. Replaces an earlier
    /// end-to-end section.
    ///
    /// # Errors
    /// `figures` is not an object, a required figure is missing or not a number, an optional
    /// one is present but not a number (or an array of numbers), or a chart could not be drawn.
    pub fn e2e(&mut self, figures: &serde_json::Value) -> Result<(), Error> {
        let map = figures
            .as_object()
            .ok_or("e2e figures: not a JSON object")?;
        let number = |name: &str| -> Result<Option<f64>, Error> {
            match map.get(name) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(v) => match v.as_f64() {
                    Some(x) if x.is_finite() => Ok(Some(x)),
                    _ => Err(format!("e2e figures: `{name}` is not a number ({v})").into()),
                },
            }
        };
        let required = |name: &str| -> Result<f64, Error> {
            number(name)?.ok_or_else(|| format!("e2e figures: `{name}` is missing").into())
        };
        let series = |name: &str| -> Result<Option<Vec<f64>>, Error> {
            match map.get(name) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::Array(a)) => a
                    .iter()
                    .map(|v| {
                        v.as_f64().ok_or_else(|| {
                            format!("e2e figures: `{name}` holds {v}, not a number").into()
                        })
                    })
                    .collect::<Result<Vec<f64>, Error>>()
                    .map(Some),
                Some(v) => Err(format!("e2e figures: `{name}` is not an array ({v})").into()),
            }
        };
        let tps = required("tps_synor")?;
        let tps_peer = required("tps_cosmwasm_vm")?;
        let tps_1t = number("tps_synor_1t")?;
        for name in ["ratio", "ratio_1t"] {
            number(name)?;
        }
        let deploy = number("deploy_ms")?;
        let deploy_peer = number("deploy_ms_cosmwasm_vm")?;
        let blocks = series("blocks_synor")?;
        let blocks_peer = series("blocks_cosmwasm_vm")?;

        let of_peer = |x: f64| {
            if tps_peer > 0.0 {
                format!("{:.2}×", x / tps_peer)
            } else {
                String::new()
            }
        };
        let mut bars = vec![Bar {
            label: "synor".to_string(),
            value: tps,
            color: color(0),
            note: join(&[count(tps), of_peer(tps)]),
        }];
        if let Some(t) = tps_1t {
            bars.push(Bar {
                label: "synor, 1 thread".to_string(),
                value: t,
                color: RGBColor(120, 170, 215),
                note: join(&[count(t), of_peer(t)]),
            });
        }
        bars.push(Bar {
            label: "cosmwasm-vm".to_string(),
            value: tps_peer,
            color: color(1),
            note: count(tps_peer),
        });
        let mut charts = vec![bar_chart(
            "throughput on the same blocks (× cosmwasm-vm)",
            "transactions per second",
            &bars,
        )?];
        if let (Some(a), Some(b)) = (deploy, deploy_peer) {
            charts.push(bar_chart(
                "deploying the same contracts",
                "milliseconds",
                &[
                    Bar {
                        label: "synor".to_string(),
                        value: a,
                        color: color(0),
                        note: format!("{a:.1} ms"),
                    },
                    Bar {
                        label: "cosmwasm-vm".to_string(),
                        value: b,
                        color: color(1),
                        note: format!("{b:.1} ms"),
                    },
                ],
            )?);
        }
        let per_block: Vec<Line> = [
            ("synor", blocks, color(0)),
            ("cosmwasm-vm", blocks_peer, color(1)),
        ]
        .into_iter()
        .filter_map(|(name, values, c)| {
            let points: Vec<(f64, f64)> = values?
                .into_iter()
                .enumerate()
                .filter(|(_, v)| v.is_finite() && *v > 0.0)
                .map(|(i, v)| ((i + 1) as f64, v))
                .collect();
            (!points.is_empty()).then(|| Line::new(name, points, c))
        })
        .collect();
        if !per_block.is_empty() {
            charts.push(line_chart(
                "transactions per second of each block",
                &Axes::new("block", "transactions per second").integer_x(),
                &per_block,
            )?);
        }
        let mut table = Table::new(&["figure", "value"]);
        for (name, value) in map {
            let shown = match value {
                serde_json::Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), figure),
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Array(a) => format!("{} values (charted)", a.len()),
                _ => continue,
            };
            table.row(vec![name.clone(), shown]);
        }
        self.sections.insert(
            Kind::E2e,
            Section {
                intro: "The same contracts and blocks on synor and on cosmwasm-vm, in the same \
                        run."
                    .to_string(),
                charts,
                tables: vec![table],
            },
        );
        Ok(())
    }

    /// The page: one self-contained HTML document.
    pub fn to_html(&self) -> String {
        let mut h = String::with_capacity(64 * 1024);
        let _ = write!(
            h,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
            escape(&self.title),
            escape(&self.title)
        );
        h.push_str("<table class=\"facts\">\n");
        for (name, value) in &self.facts {
            let _ = writeln!(
                h,
                "<tr><th>{}</th><td>{}</td></tr>",
                escape(name),
                escape(value)
            );
        }
        h.push_str("</table>\n");
        if self.sections.is_empty() {
            h.push_str("<p class=\"none\">This run measured nothing that the report charts.</p>\n");
        } else {
            h.push_str("<nav><ul>\n");
            for kind in self.sections.keys() {
                let _ = writeln!(
                    h,
                    "<li><a href=\"#{}\">{}</a></li>",
                    kind.id(),
                    escape(kind.heading())
                );
            }
            h.push_str("</ul></nav>\n");
        }
        for (kind, section) in &self.sections {
            let _ = writeln!(
                h,
                "<section id=\"{}\">\n<h2>{}</h2>\n<p>{}</p>",
                kind.id(),
                escape(kind.heading()),
                escape(&section.intro)
            );
            for chart in &section.charts {
                let _ = write!(
                    h,
                    "<figure>\n<figcaption>{}</figcaption>\n{}",
                    escape(&chart.caption),
                    chart.svg
                );
                if !chart.legend.is_empty() {
                    h.push_str("<ul class=\"legend\">");
                    for (name, c, dashed) in &chart.legend {
                        let _ = write!(
                            h,
                            "<li><span class=\"key{}\" style=\"border-color: rgb({},{},{})\"></span>{}</li>",
                            if *dashed { " dashed" } else { "" },
                            c.0,
                            c.1,
                            c.2,
                            escape(name)
                        );
                    }
                    h.push_str("</ul>\n");
                }
                h.push_str("</figure>\n");
            }
            for table in &section.tables {
                table.html(&mut h);
            }
            h.push_str("</section>\n");
        }
        h.push_str(
            "<footer>Ratios are measured against peers in the same run on the same input; \
             absolute times are context only (a shared machine moves them).</footer>\n\
             </body>\n</html>\n",
        );
        h
    }

    /// Writes the page to `dir/index.html` (creating `dir`), atomically: into a temporary file
    /// in `dir`, renamed over the page. Returns the page's path.
    ///
    /// # Errors
    /// The directory cannot be created or written.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, Error> {
        let page = dir.join(PAGE);
        let fail = |e: std::io::Error| -> Error {
            format!("cannot write the report {}: {e}", page.display()).into()
        };
        std::fs::create_dir_all(dir).map_err(fail)?;
        let temp = dir.join(format!(".{PAGE}.{}.tmp", std::process::id()));
        let written = (|| {
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(self.to_html().as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temp, &page)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(fail(e));
        }
        Ok(page)
    }
}

const CSS: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;\
max-width:1000px;margin:24px auto;padding:0 16px;color:#222;line-height:1.4}\
h1{font-size:1.6em;margin-bottom:.4em}h2{font-size:1.3em;margin-top:1.6em;\
border-bottom:1px solid #ddd;padding-bottom:.2em}\
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.9em}\
th,td{padding:3px 10px;border-bottom:1px solid #eee;text-align:left}\
td.num{text-align:right;font-variant-numeric:tabular-nums}\
thead th{border-bottom:2px solid #ccc}\
table.facts th{color:#555;font-weight:normal}\
nav ul{padding-left:1.2em}\
figure{margin:1em 0}figcaption{font-weight:600;margin-bottom:.3em}\
svg{max-width:100%;height:auto;display:block}\
ul.legend{list-style:none;padding:0;margin:.3em 0 0;display:flex;flex-wrap:wrap;gap:4px 18px;\
font-size:.9em}\
.key{display:inline-block;width:26px;height:0;border-top:3px solid;vertical-align:middle;\
margin-right:6px}.key.dashed{border-top-style:dashed}\
p.none{color:#a00}footer{margin-top:2em;color:#666;font-size:.85em}";

impl Table {
    fn new(head: &[&str]) -> Self {
        Self {
            head: head.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn html(&self, h: &mut String) {
        h.push_str("<table>\n<thead><tr>");
        for c in &self.head {
            let _ = write!(h, "<th>{}</th>", escape(c));
        }
        h.push_str("</tr></thead>\n<tbody>\n");
        for row in &self.rows {
            h.push_str("<tr>");
            for c in row {
                let numeric = c.starts_with(|ch: char| ch.is_ascii_digit() || ch == '-')
                    && c.chars().nth(1).is_none_or(|ch| ch != ' ');
                let _ = write!(
                    h,
                    "<td{}>{}</td>",
                    if numeric { " class=\"num\"" } else { "" },
                    escape(c)
                );
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</tbody>\n</table>\n");
    }
}

/// `s` with `&`, `<`, `>` and quotes escaped for HTML text and attributes.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The chart palette (colour-blind-safe-ish, distinct in print).
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

const WIDTH: u32 = 900;
const HEIGHT: u32 = 380;
const FONT: &str = "sans-serif";

/// A line of a line chart.
#[derive(Debug, Clone)]
struct Line {
    name: String,
    points: Vec<(f64, f64)>,
    color: RGBColor,
    dashed: bool,
    markers: bool,
}

impl Line {
    fn new(name: &str, points: Vec<(f64, f64)>, color: RGBColor) -> Self {
        Self {
            name: name.to_string(),
            points: points
                .into_iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect(),
            color,
            dashed: false,
            markers: true,
        }
    }

    fn dashed(mut self, dashed: bool) -> Self {
        self.dashed = dashed;
        self
    }

    fn without_markers(mut self) -> Self {
        self.markers = false;
        self
    }
}

/// How a chart's axes are scaled and labelled.
#[derive(Debug, Clone)]
struct Axes {
    x: String,
    y: String,
    /// x values are log2 of the quantity (labels 1, 2, 4, ...).
    x_log2: bool,
    /// x values are log10 of the quantity (labels 1, 10, 100, ...).
    x_log10: bool,
    /// y values are log2 of the quantity.
    y_log2: bool,
    /// x values are whole numbers (blocks).
    x_integer: bool,
    /// A fixed top of the y axis.
    y_max: Option<f64>,
}

impl Axes {
    fn new(x: &str, y: &str) -> Self {
        Self {
            x: x.to_string(),
            y: y.to_string(),
            x_log2: false,
            x_log10: false,
            y_log2: false,
            x_integer: false,
            y_max: None,
        }
    }

    fn log2_x(mut self) -> Self {
        self.x_log2 = true;
        self
    }

    fn log10_x(mut self) -> Self {
        self.x_log10 = true;
        self
    }

    fn log2_y(mut self) -> Self {
        self.y_log2 = true;
        self
    }

    fn integer_x(mut self) -> Self {
        self.x_integer = true;
        self
    }

    fn y_max(mut self, max: f64) -> Self {
        self.y_max = Some(max);
        self
    }
}

fn chart_error(e: impl std::fmt::Display) -> Error {
    format!("cannot draw a chart: {e}").into()
}

/// The range `lo..hi` of `values`, widened when empty or a single value.
fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() || !hi.is_finite() {
        (0.0, 1.0)
    } else if hi - lo < 1e-9 {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    }
}

fn line_chart(caption: &str, axes: &Axes, lines: &[Line]) -> Result<Chart, Error> {
    let xs = || lines.iter().flat_map(|l| l.points.iter().map(|p| p.0));
    let ys = || lines.iter().flat_map(|l| l.points.iter().map(|p| p.1));
    let (mut x0, mut x1) = span(xs());
    // Whole steps: powers on log axes, blocks.
    if axes.x_log2 || axes.x_log10 || axes.x_integer {
        (x0, x1) = (x0.floor(), x1.ceil().max(x0.floor() + 1.0));
    }
    let (y0, y1) = if axes.y_log2 {
        let (lo, hi) = span(ys());
        (lo.floor().min(0.0), hi.ceil().max(lo.floor() + 1.0))
    } else {
        let (_, hi) = span(ys());
        let top = axes.y_max.unwrap_or(hi.max(0.0) * 1.08);
        (0.0, if top > 0.0 { top } else { 1.0 })
    };
    // Labels: whole steps on log axes and for blocks.
    let x_labels = if axes.x_log2 || axes.x_log10 || axes.x_integer {
        ((x1 - x0).round() as usize + 1).clamp(2, 16)
    } else {
        10
    };
    let y_labels = if axes.y_log2 {
        ((y1 - y0).round() as usize + 1).clamp(2, 16)
    } else {
        8
    };
    let x_format = |x: &f64| -> String {
        if axes.x_log2 {
            count(2f64.powf(*x))
        } else if axes.x_log10 {
            count(10f64.powf(*x))
        } else if axes.x_integer {
            if (x - x.round()).abs() < 1e-6 {
                format!("{}", x.round())
            } else {
                String::new()
            }
        } else {
            count(*x)
        }
    };
    let y_format = |y: &f64| -> String {
        if axes.y_log2 {
            let v = 2f64.powf(*y);
            if v < 1.0 { format!("{v:.2}") } else { count(v) }
        } else {
            count(*y)
        }
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(14)
            .margin_right(28)
            .x_label_area_size(52)
            .y_label_area_size(84)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(chart_error)?;
        chart
            .configure_mesh()
            .x_desc(axes.x.as_str())
            .y_desc(axes.y.as_str())
            .x_labels(x_labels)
            .y_labels(y_labels)
            .x_label_formatter(&x_format)
            .y_label_formatter(&y_format)
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 16))
            .bold_line_style(RGBColor(225, 225, 225))
            .light_line_style(RGBColor(245, 245, 245))
            .draw()
            .map_err(chart_error)?;
        for line in lines {
            let style = line.color.stroke_width(2);
            if line.dashed {
                chart
                    .draw_series(DashedLineSeries::new(line.points.clone(), 7, 5, style))
                    .map_err(chart_error)?;
            } else {
                chart
                    .draw_series(LineSeries::new(line.points.clone(), style))
                    .map_err(chart_error)?;
            }
            // Markers show where the measurements are, until they crowd the line.
            if line.markers && line.points.len() <= 24 {
                chart
                    .draw_series(
                        line.points
                            .iter()
                            .map(|p| Circle::new(*p, 3, line.color.filled())),
                    )
                    .map_err(chart_error)?;
            }
        }
        root.present().map_err(chart_error)?;
    }
    Ok(Chart {
        caption: caption.to_string(),
        svg,
        legend: lines
            .iter()
            .map(|l| (l.name.clone(), l.color, l.dashed))
            .collect(),
    })
}

/// A bar of a bar chart.
#[derive(Debug, Clone)]
struct Bar {
    label: String,
    value: f64,
    color: RGBColor,
    /// Written after the bar's end.
    note: String,
}

/// Horizontal bars, the first at the top, each labelled on the left and noted at its end.
fn bar_chart(caption: &str, x_desc: &str, bars: &[Bar]) -> Result<Chart, Error> {
    let bars: Vec<&Bar> = bars
        .iter()
        .filter(|b| b.value.is_finite() && b.value >= 0.0)
        .collect();
    let n = bars.len().max(1) as i32;
    let max = bars.iter().map(|b| b.value).fold(0.0, f64::max);
    // Room after the longest bar for its note.
    let top = if max > 0.0 { max * 1.3 } else { 1.0 };
    let longest = bars
        .iter()
        .map(|b| b.label.chars().count())
        .max()
        .unwrap_or(4);
    let label_area = (longest as u32 * 8 + 24).clamp(90, 320);
    let height = (60 * n as u32 + 70).max(150);
    let name_of = |v: &SegmentValue<i32>| -> String {
        match v {
            SegmentValue::CenterOf(i) => bars
                .get((n - 1 - *i) as usize)
                .map_or(String::new(), |b| b.label.clone()),
            _ => String::new(),
        }
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(14)
            .margin_right(28)
            .x_label_area_size(48)
            .y_label_area_size(label_area)
            .build_cartesian_2d(0.0..top, (0..(n - 1).max(1)).into_segmented())
            .map_err(chart_error)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_desc(x_desc)
            .x_labels(8)
            .y_labels(n as usize)
            .x_label_formatter(&|x: &f64| count(*x))
            .y_label_formatter(&name_of)
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 16))
            .bold_line_style(RGBColor(225, 225, 225))
            .light_line_style(RGBColor(245, 245, 245))
            .draw()
            .map_err(chart_error)?;
        let note_style =
            TextStyle::from((FONT, 15).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        for (k, bar) in bars.iter().enumerate() {
            let i = n - 1 - k as i32;
            let lo = SegmentValue::Exact(i);
            let hi = SegmentValue::Exact(i + 1);
            let mut rect = Rectangle::new([(0.0, lo), (bar.value, hi)], bar.color.filled());
            rect.set_margin(9, 9, 0, 0);
            chart
                .draw_series(std::iter::once(rect))
                .map_err(chart_error)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    bar.note.clone(),
                    (bar.value + top * 0.01, SegmentValue::CenterOf(i)),
                    note_style.clone(),
                )))
                .map_err(chart_error)?;
        }
        root.present().map_err(chart_error)?;
    }
    Ok(Chart {
        caption: caption.to_string(),
        svg,
        legend: Vec::new(),
    })
}

/// A count or rate for people: `12 k`, `12.3 k`, `1.23 M`, `640`, `0.5`.
fn count(x: f64) -> String {
    let a = x.abs();
    let scaled = |v: f64, digits: usize, unit: &str| {
        let text = format!("{v:.digits$}");
        let text = if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.')
        } else {
            &text
        };
        format!("{text} {unit}")
    };
    if !x.is_finite() {
        "–".to_string()
    } else if a >= 1e9 {
        scaled(x / 1e9, 2, "G")
    } else if a >= 1e6 {
        scaled(x / 1e6, 2, "M")
    } else if a >= 1e4 {
        scaled(x / 1e3, 1, "k")
    } else if a >= 100.0 || (x - x.round()).abs() < 1e-9 {
        format!("{x:.0}")
    } else if a >= 1.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// A whole number with its thousands apart: `38,863,515`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A figure of a table: whole numbers grouped, fractions to three places (or whole when
/// large).
fn figure(x: f64) -> String {
    if !x.is_finite() {
        "–".to_string()
    } else if x.fract() == 0.0 && x.abs() < 1e15 {
        let s = grouped(x.abs() as u64);
        if x < 0.0 { format!("-{s}") } else { s }
    } else if x.abs() >= 1000.0 {
        figure(x.round())
    } else {
        format!("{x:.3}")
    }
}

/// The non-empty parts, apart.
fn join(parts: &[String]) -> String {
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join(" · ")
}

/// Bytes for people: `11.18 MB`, `740 kB`.
fn bytes(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} MB", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} kB", x / 1e3)
    } else {
        format!("{x:.0} B")
    }
}

/// The date and time now, UTC (`2026-12-07 14:03 UTC`).
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year}-{month:02}-{day:02} {:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60
    )
}

/// The processor's model name, where the system says it (Linux).
fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// The system's load averages, where the system says them (Linux).
fn load_average() -> Option<String> {
    let load = std::fs::read_to_string("/proc/loadavg").ok()?;
    let parts: Vec<&str> = load.split_whitespace().take(3).collect();
    (parts.len() == 3).then(|| parts.join(", "))
}
