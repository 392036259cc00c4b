use super::*;
use crate::bench::sched;

fn cell(accounts: u64, block: usize, mode: &str, threads: usize, speedup: f64) -> sched::Cell {
    sched::Cell {
        accounts,
        block,
        mode: mode.into(),
        threads,
        tps: 50_000.0 * speedup,
        speedup,
        speedup_q1: speedup * 0.95,
        speedup_q3: speedup * 1.05,
        executions_per_tx: 1.1,
        validations_per_tx: 1.0,
        sched_ns_per_tx: 300.0,
        sim_speedup_32: if mode == "independent" { 32.0 } else { 14.0 },
        sim_speedup_64: if mode == "independent" { 64.0 } else { 20.0 },
    }
}

/// A `bench sched` report of made-up figures.
fn sched_report() -> sched::Report {
    let mut cells = Vec::new();
    for accounts in [2, 100, 10_000] {
        for block in [1_000, 10_000] {
            cells.push(cell(accounts, block, "sequential", 1, 1.0));
            let contention = if accounts == 2 { 0.4 } else { 1.0 };
            for threads in [1, 2] {
                cells.push(cell(
                    accounts,
                    block,
                    "declared",
                    threads,
                    0.9 * threads as f64 * contention,
                ));
                cells.push(cell(
                    accounts,
                    block,
                    "optimistic",
                    threads,
                    0.8 * threads as f64 * contention,
                ));
            }
            cells.push(cell(accounts, block, "independent", 2, 1.9));
        }
    }
    sched::Report { cells }
}

fn e2e_figures() -> serde_json::Value {
    serde_json::json!({
        "tps_synor": 21_500.0,
        "tps_synor_1t": 12_000.0,
        "tps_cosmwasm_vm": 3_100.0,
        "ratio": 6.94,
        "ratio_1t": 3.87,
        "deploy_ms": 14.2,
        "deploy_ms_cosmwasm_vm": 96.0,
        "blocks_synor": [20_000.0, 21_000.0, 22_500.0, 21_800.0],
        "blocks_cosmwasm_vm": [3_000.0, 3_200.0, 3_050.0, 3_100.0],
        "contracts": "cw20-base",
    })
}

/// A report with every section, of made-up figures.
fn full() -> Report {
    let mut r = Report::new("synor test report");
    r.fact("seed", 7);
    r.throughput(
        "made-up blocks",
        &[
            Series {
                name: "parallel node".into(),
                first: 3,
                values: vec![9_000.0, 11_000.0, 12_500.0, 12_000.0],
            },
            Series {
                name: "sequential node".into(),
                first: 3,
                values: vec![6_000.0, 6_400.0, 6_300.0, 6_500.0],
            },
        ],
    )
    .unwrap();
    let points = |hot_from: u64| {
        (1..=10)
            .map(|i| TierPoint {
                at: (i * 100) as f64,
                calls: if i < hot_from {
                    [80, 20, 0]
                } else {
                    [5, 10, 85]
                },
                promotions: i.min(6),
            })
            .collect::<Vec<_>>()
    };
    r.tiers(
        "made-up calls",
        "calls",
        &[
            TierRun {
                name: "tiered".into(),
                points: points(5),
            },
            TierRun {
                name: "after a restart".into(),
                points: points(2),
            },
        ],
    )
    .unwrap();
    r.speedup(&sched_report()).unwrap();
    r.store(&StoreBytes {
        corpus: "made-up corpus".into(),
        files: 240,
        raw: Some(38_863_515),
        synor: 5_220_000,
        peers: vec![
            ("zstd -19 per file".into(), 11_180_495),
            ("zstd CLI best".into(), 9_171_071),
            ("ruzstd Fastest".into(), 18_600_000),
        ],
        upgrades: Some(UpgradeBytes {
            pairs: 82,
            synor: 1_000_000,
            peer: "zstd -19 --patch-from".into(),
            peer_bytes: 1_420_000,
        }),
    })
    .unwrap();
    r.e2e(&e2e_figures()).unwrap();
    r
}

/// The page's checks that do not need a browser: every SVG closed, nothing fetched, no script.
fn check_self_contained(html: &str) {
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.trim_end().ends_with("</html>"));
    assert_eq!(html.matches("<svg").count(), html.matches("</svg>").count());
    for tag in ["section", "table", "figure", "ul", "p"] {
        assert_eq!(
            html.matches(&format!("<{tag}>")).count() + html.matches(&format!("<{tag} ")).count(),
            html.matches(&format!("</{tag}>")).count(),
            "<{tag}> opened and closed as often"
        );
    }
    let without_namespace = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    assert!(!without_namespace.contains("http://"), "nothing fetched");
    assert!(!without_namespace.contains("https://"), "nothing fetched");
    assert!(!html.contains("<script"));
    assert!(!html.contains("<link"));
    assert!(!html.contains("<img"));
}

#[test]
fn a_full_report_has_every_section_and_is_self_contained() {
    let r = full();
    assert_eq!(
        r.kinds(),
        [
            Kind::Throughput,
            Kind::Tiers,
            Kind::Speedup,
            Kind::Store,
            Kind::E2e
        ]
    );
    let html = r.to_html();
    check_self_contained(&html);
    for kind in r.kinds() {
        assert!(html.contains(&format!("<section id=\"{}\">", kind.id())));
    }
    // Charts: 1 throughput, 2 tiers, 2 speedup, 2 store, 3 e2e.
    assert_eq!(html.matches("<svg").count(), 10);
    // Lines were drawn, and bars.
    assert!(html.contains("<polyline"));
    assert!(html.contains("<rect"));
    assert!(html.contains("cores"));
    assert!(html.contains("synor store"));
    assert!(html.contains("cw20-base"));
    // For a person to look at every section (docs/check-report.sh renders it).
    if let Some(dir) = std::env::var_os("SYNOR_REPORT_SAMPLE") {
        r.write(dir.as_ref()).unwrap();
    }
}

#[test]
fn sections_not_measured_are_left_out() {
    let mut r = Report::new("only the store");
    r.store(&StoreBytes {
        corpus: "c".into(),
        files: 2,
        synor: 100,
        peers: vec![("zstd -19".into(), 180)],
        ..Default::default()
    })
    .unwrap();
    // Nothing measured: no section.
    r.throughput(
        "none",
        &[Series {
            name: "empty".into(),
            first: 1,
            values: vec![],
        }],
    )
    .unwrap();
    r.tiers("none", "calls", &[]).unwrap();
    r.speedup(&sched::Report { cells: vec![] }).unwrap();
    assert_eq!(r.kinds(), [Kind::Store]);
    let html = r.to_html();
    check_self_contained(&html);
    assert!(html.contains("<section id=\"store\">"));
    for absent in ["throughput", "tiers", "speedup", "e2e"] {
        assert!(!html.contains(&format!("id=\"{absent}\"")), "{absent}");
        assert!(!html.contains(&format!("href=\"#{absent}\"")), "{absent}");
    }

    let empty = Report::new("nothing").to_html();
    check_self_contained(&empty);
    assert!(!empty.contains("<section"));
}

#[test]
fn e2e_takes_the_benchmarks_figures_and_refuses_the_wrong_shape() {
    let mut r = Report::new("e2e");
    // The required figures alone are enough.
    r.e2e(&serde_json::json!({"tps_synor": 10.0, "tps_cosmwasm_vm": 5}))
        .unwrap();
    assert!(r.has(Kind::E2e));
    let html = r.to_html();
    check_self_contained(&html);
    assert_eq!(html.matches("<svg").count(), 1);

    for (bad, says) in [
        (serde_json::json!([1, 2]), "not a JSON object"),
        (
            serde_json::json!({"tps_synor": 1.0}),
            "`tps_cosmwasm_vm` is missing",
        ),
        (
            serde_json::json!({"tps_synor": "fast", "tps_cosmwasm_vm": 1.0}),
            "`tps_synor` is not a number",
        ),
        (
            serde_json::json!({"tps_synor": 1.0, "tps_cosmwasm_vm": 1.0, "deploy_ms": true}),
            "`deploy_ms` is not a number",
        ),
        (
            serde_json::json!({"tps_synor": 1.0, "tps_cosmwasm_vm": 1.0, "blocks_synor": 3}),
            "`blocks_synor` is not an array",
        ),
        (
            serde_json::json!({"tps_synor": 1.0, "tps_cosmwasm_vm": 1.0, "blocks_synor": [1, "x"]}),
            "`blocks_synor` holds",
        ),
    ] {
        let e = Report::new("e2e").e2e(&bad).unwrap_err().to_string();
        assert!(e.contains(says), "{e}");
    }
}

#[test]
fn bad_numbers_do_not_break_the_charts() {
    let mut r = Report::new("odd <figures> & \"names\"");
    r.throughput(
        "<script>alert(1)</script>",
        &[Series {
            name: "<b>node</b>".into(),
            first: 1,
            values: vec![f64::NAN, f64::INFINITY, -1.0, 0.0, 5.0],
        }],
    )
    .unwrap();
    // One point, equal values, zero calls, zero bytes.
    r.tiers(
        "x",
        "block",
        &[TierRun {
            name: "one".into(),
            points: vec![TierPoint {
                at: 1.0,
                calls: [0, 0, 0],
                promotions: 0,
            }],
        }],
    )
    .unwrap();
    r.store(&StoreBytes {
        corpus: "empty".into(),
        peers: vec![("zstd -19".into(), 0)],
        ..Default::default()
    })
    .unwrap();
    r.speedup(&sched::Report {
        cells: vec![
            cell(2, 10, "declared", 2, f64::NAN),
            cell(2, 10, "optimistic", 1, 1.0),
        ],
    })
    .unwrap();
    r.e2e(&serde_json::json!({"tps_synor": 0.0, "tps_cosmwasm_vm": 0.0, "blocks_synor": []}))
        .unwrap();
    let html = r.to_html();
    check_self_contained(&html);
    assert!(!html.contains("<script>"));
    assert!(!html.contains("<b>node"));
    assert!(html.contains("&lt;b&gt;node&lt;/b&gt;"));
}

#[test]
fn write_puts_the_page_in_place_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nested").join("report");
    let page = full().write(&out).unwrap();
    assert_eq!(page, out.join(PAGE));
    let html = std::fs::read_to_string(&page).unwrap();
    check_self_contained(&html);
    let names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [PAGE]);
    // Written again over the first.
    Report::new("second").write(&out).unwrap();
    assert!(std::fs::read_to_string(&page).unwrap().contains("second"));

    // A directory that is a file: an error, not a panic.
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let e = full().write(&file).unwrap_err().to_string();
    assert!(e.contains("cannot write the report"), "{e}");
}

#[test]
fn utc_dates_are_civil_dates() {
    let now = utc_now();
    assert!(
        now.ends_with(" UTC") && now.len() == "2026-12-07 14:03 UTC".len(),
        "{now}"
    );
}

#[test]
fn figures_read_as_people_write_them() {
    assert_eq!(count(10_000.0), "10 k");
    assert_eq!(count(12_345.0), "12.3 k");
    assert_eq!(count(500_000.0), "500 k");
    assert_eq!(count(1_500_000.0), "1.5 M");
    assert_eq!(count(640.0), "640");
    assert_eq!(count(0.5), "0.50");
    assert_eq!(count(f64::NAN), "–");
    assert_eq!(grouped(38_863_515), "38,863,515");
    assert_eq!(grouped(999), "999");
    assert_eq!(grouped(1_000), "1,000");
    assert_eq!(figure(3100.0), "3,100");
    assert_eq!(figure(6.94), "6.940");
    assert_eq!(figure(21_500.25), "21,500");
}
