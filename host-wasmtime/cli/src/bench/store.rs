//! `synor bench store`: ingest a corpus into a fresh store, restore it, and measure the same
//! corpus with the peers a user would otherwise pick: the zstd command line (`-19` per file,
//! `-19 --patch-from` the previous version for upgrades) and libzstd's decoder.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;
use synor_core::digest::CodeId;
use synor_core::host::Level;
use synor_core::store::{ChunkConfig, Chunker, StoreConfig};
use synor_host_std::open_store;
use zstd::zstd_safe::{CCtx, CParameter};

use super::{median, median_secs, progress};
use crate::corpus::{CorpusFile, Pairs, ingest_order, pair_count};

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// Compression level of the store.
    pub level: Level,
    /// Repetitions of every timed measurement (the median is reported).
    pub reps: usize,
    /// Show progress on stderr.
    pub progress: bool,
    /// Where to keep the store; a temporary directory when `None`.
    pub data: Option<PathBuf>,
    /// Store configuration (its `level` is replaced by [`Options::level`]).
    pub config: StoreConfig,
    /// Write one tab-separated line per file (name, size, kind, refs, stored, peers) here.
    pub files_out: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            level: Level::Maximum,
            reps: 3,
            progress: true,
            data: None,
            config: StoreConfig::default(),
            files_out: None,
        }
    }
}

/// The results. Field names are the benchmark's interface: kept stable, added to freely.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Where the corpus came from.
    pub corpus: String,
    /// Files ingested.
    pub files: u64,
    /// Their total size.
    pub raw_bytes: u64,
    /// Every byte the store holds for the corpus: records, chunks, dictionaries, index, keys.
    pub store_bytes: u64,
    /// libzstd level 19 as the CLI writes it (`zstd -19`), each file alone.
    pub zstd19_bytes: u64,
    /// Per file, the smaller of `zstd -19` and (for a pair's new file) `zstd -19 --patch-from`.
    pub cli_best_bytes: u64,
    /// ruzstd's encoder (its only level, `Fastest`), each file alone.
    pub ruzstd_bytes: u64,
    /// Upgrade pairs.
    pub pairs: u64,
    /// What the store added for the pairs' new files.
    pub delta_bytes: u64,
    /// `zstd -19 --patch-from` the old file, for the same new files.
    pub patch_from_bytes: u64,
    /// Files restored byte-identical.
    pub roundtrip_ok: u64,
    /// Restore throughput of the store (every file, from a freshly opened store), MB/s.
    pub decode_mb_s: f64,
    /// libzstd decompressing the `zstd -19` frames, MB/s.
    pub libzstd_decode_mb_s: f64,
    /// Content-defined chunking cut-point search, GB/s on one core.
    pub chunk_gb_s: f64,
    /// `store_bytes / zstd19_bytes`.
    pub store_over_zstd19: f64,
    /// `store_bytes / cli_best_bytes`.
    pub store_over_cli_best: f64,
    /// `delta_bytes / patch_from_bytes`.
    pub delta_over_patch_from: f64,
    /// `decode_mb_s / libzstd_decode_mb_s`.
    pub decode_over_libzstd: f64,
    /// The store's compression level.
    pub level: String,
    /// Records stored on their own.
    pub full_records: u64,
    /// Records stored relative to others.
    pub delta_records: u64,
    /// Records stored as chunks.
    pub chunked_records: u64,
    /// Dictionaries in the store at the end.
    pub dictionaries: u64,
    /// Their bytes (included in `store_bytes`).
    pub dictionary_bytes: u64,
    /// Index bytes: metadata, counts, keys (included in `store_bytes`).
    pub index_bytes: u64,
    /// Size of the database file after compaction (context: page-granular, not logical bytes).
    pub db_file_bytes: u64,
    /// Wall time of the ingest (context only).
    pub ingest_s: f64,
}

/// `zstd -<level> FILE`, as the zstd command line writes it: content size and checksum on.
pub fn zstd_cli(bytes: &[u8], level: i32) -> Vec<u8> {
    compress_like_cli(bytes, level, None)
}

/// `zstd -<level> --patch-from=OLD NEW`, as the zstd command line (1.5.x `fileio.c`,
/// `FIO_adjustParamsForPatchFromMode`) does it: the old file as a raw-content prefix
/// (`ZSTD_CCtx_refPrefix`), a window of `highbit(size) + 1` over the new file's size, and
/// long-distance matching when that window exceeds the level's hash chain reach (its cycle log:
/// 23 at level 19 for inputs and references over 256 KiB; the smaller tables never trigger it,
/// their windows being capped by the same size).
pub fn zstd_cli_patch_from(old: &[u8], new: &[u8], level: i32) -> Vec<u8> {
    compress_like_cli(new, level, Some(old))
}

fn compress_like_cli(bytes: &[u8], level: i32, patch_from: Option<&[u8]>) -> Vec<u8> {
    let mut cctx = CCtx::create();
    let set = |cctx: &mut CCtx<'_>, p| {
        cctx.set_parameter(p).expect("valid zstd parameter");
    };
    set(&mut cctx, CParameter::CompressionLevel(level));
    set(&mut cctx, CParameter::ChecksumFlag(true));
    set(&mut cctx, CParameter::ContentSizeFlag(true));
    if let Some(old) = patch_from {
        let highbit = 63 - (bytes.len().max(1) as u64).leading_zeros();
        let window_log = (highbit + 1).clamp(10, 30);
        set(&mut cctx, CParameter::WindowLog(window_log));
        if window_log > 23 {
            set(&mut cctx, CParameter::EnableLongDistanceMatching(true));
        }
        cctx.ref_prefix(old).expect("prefix accepted");
    }
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(bytes.len()));
    cctx.compress2(&mut out, bytes).expect("libzstd compresses");
    out
}

/// Peer figures, computed on a thread of their own while the store ingests.
struct Peers {
    zstd19: Vec<Vec<u8>>,
    patch_from: Vec<Option<usize>>,
    ruzstd_bytes: u64,
}

fn peers(files: &[CorpusFile], pairs: &Pairs) -> Peers {
    let by_name: std::collections::HashMap<&str, &CorpusFile> =
        files.iter().map(|f| (f.name.as_str(), f)).collect();
    let zstd19 = files.iter().map(|f| zstd_cli(&f.bytes, 19)).collect();
    // A file upgrading several older ones gets the best of its --patch-from options.
    let patch_from = files
        .iter()
        .map(|f| {
            pairs
                .get(&f.name)?
                .iter()
                .filter_map(|old| by_name.get(old.as_str()))
                .map(|old| zstd_cli_patch_from(&old.bytes, &f.bytes, 19).len())
                .min()
        })
        .collect();
    let ruzstd_bytes = files
        .iter()
        .map(|f| {
            ruzstd::encoding::compress_to_vec(
                &f.bytes[..],
                ruzstd::encoding::CompressionLevel::Fastest,
            )
            .len() as u64
        })
        .sum();
    Peers {
        zstd19,
        patch_from,
        ruzstd_bytes,
    }
}

/// Errors of the benchmark.
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;

/// Runs the benchmark on `files` with upgrade `pairs`.
///
/// # Errors
/// The store cannot be created or fails.
pub fn run(
    corpus: &str,
    files: &[CorpusFile],
    pairs: &Pairs,
    options: &Options,
) -> Result<Report, BenchError> {
    let temp;
    let dir = match &options.data {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let config = StoreConfig {
        level: options.level,
        ..options.config.clone()
    };
    let order = ingest_order(files, pairs);
    let raw_bytes: u64 = files.iter().map(|f| f.bytes.len() as u64).sum();

    let (peers, ingest) = std::thread::scope(|scope| {
        let peers = scope.spawn(|| peers(files, pairs));
        let ingest = (|| -> Result<_, BenchError> {
            let mut store = open_store(&dir, config.clone())?;
            let bar = progress(files.len() as u64, "ingest", options.progress);
            let started = Instant::now();
            let mut ids: Vec<Option<CodeId>> = vec![None; files.len()];
            let mut delta_bytes = 0u64;
            let mut lines = Vec::new();
            let index: std::collections::HashMap<&str, usize> = files
                .iter()
                .enumerate()
                .map(|(i, f)| (f.name.as_str(), i))
                .collect();
            for &i in &order {
                let file = &files[i];
                // The first listed previous version; the store finds the others by similarity.
                let previous = pairs
                    .get(&file.name)
                    .and_then(|olds| olds.first())
                    .and_then(|old| ids[index[old.as_str()]]);
                let report = match previous {
                    Some(p) => store.put_upgrade(&p, &file.bytes)?,
                    None => store.put(&file.bytes)?,
                };
                if pairs.contains_key(&file.name) {
                    delta_bytes += report.stored_bytes;
                }
                lines.push((i, report.clone()));
                ids[i] = Some(report.id);
                bar.inc(1);
            }
            bar.finish_and_clear();
            let ingest_s = started.elapsed().as_secs_f64();
            let stats = store.stats()?;
            let dictionaries = stats.dictionaries;
            drop(store);
            Ok((ids, delta_bytes, stats, dictionaries, ingest_s, lines))
        })();
        (peers.join().expect("peer thread"), ingest)
    });
    let (ids, delta_bytes, stats, dictionaries, ingest_s, lines) = ingest?;
    if let Some(path) = &options.files_out {
        let mut out =
            String::from("file\tbytes\tkind\trefs\tdictionary\tstored\tzstd19\tpatch_from\n");
        for (i, r) in lines {
            out.push_str(&format!(
                "{}\t{}\t{:?}\t{}\t{}\t{}\t{}\t{}\n",
                files[i].name,
                r.raw_bytes,
                r.kind,
                r.refs.len(),
                r.dictionary.unwrap_or(0),
                r.stored_bytes,
                peers.zstd19[i].len(),
                peers.patch_from[i].map_or(String::new(), |p| p.to_string()),
            ));
        }
        std::fs::write(path, out)?;
    }
    let ids: Vec<CodeId> = ids
        .into_iter()
        .map(|i| i.expect("every file ingested"))
        .collect();

    // Restore every file from a freshly opened store (cold cache), several times; only the
    // reads are timed.
    let bar = progress(options.reps as u64, "restore", options.progress);
    let mut roundtrip_ok = 0u64;
    let mut times = Vec::with_capacity(options.reps);
    for _ in 0..options.reps {
        let store = open_store(&dir, config.clone())?;
        let started = Instant::now();
        let ok = files
            .iter()
            .zip(&ids)
            .filter(|(file, id)| store.get(id).is_ok_and(|b| b == file.bytes))
            .count();
        times.push(started.elapsed().as_secs_f64());
        roundtrip_ok = ok as u64;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let restore_s = median(times);

    let libzstd_s = median_secs(options.reps, || {
        for (frame, file) in peers.zstd19.iter().zip(files) {
            let out = zstd::bulk::decompress(frame, file.bytes.len()).expect("libzstd decodes");
            assert_eq!(out.len(), file.bytes.len());
        }
    });

    let chunk_gb_s = chunk_speed(files, options.reps);

    let mut db = synor_host_std::RedbKv::open(dir.join(synor_host_std::STORE_FILE))?;
    db.compact()?;
    let db_file_bytes = db.file_bytes()?;

    let zstd19_bytes: u64 = peers.zstd19.iter().map(|f| f.len() as u64).sum();
    let mut cli_best_bytes = 0u64;
    let mut patch_from_bytes = 0u64;
    for (z, p) in peers.zstd19.iter().zip(&peers.patch_from) {
        cli_best_bytes += p.map_or(z.len(), |p| p.min(z.len())) as u64;
        patch_from_bytes += p.unwrap_or(0) as u64;
    }
    let store_bytes = stats.total_bytes;
    let decode_mb_s = raw_bytes as f64 / restore_s / 1e6;
    let libzstd_decode_mb_s = raw_bytes as f64 / libzstd_s / 1e6;
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    Ok(Report {
        corpus: corpus.to_string(),
        files: files.len() as u64,
        raw_bytes,
        store_bytes,
        zstd19_bytes,
        cli_best_bytes,
        ruzstd_bytes: peers.ruzstd_bytes,
        pairs: pair_count(pairs) as u64,
        delta_bytes,
        patch_from_bytes,
        roundtrip_ok,
        decode_mb_s,
        libzstd_decode_mb_s,
        chunk_gb_s,
        store_over_zstd19: ratio(store_bytes as f64, zstd19_bytes as f64),
        store_over_cli_best: ratio(store_bytes as f64, cli_best_bytes as f64),
        delta_over_patch_from: ratio(delta_bytes as f64, patch_from_bytes as f64),
        decode_over_libzstd: ratio(decode_mb_s, libzstd_decode_mb_s),
        level: format!("{:?}", options.level),
        full_records: stats.full.records,
        delta_records: stats.delta.records,
        chunked_records: stats.chunked.records,
        dictionaries,
        dictionary_bytes: stats.dictionary_bytes,
        index_bytes: stats.index_bytes,
        db_file_bytes,
        ingest_s,
    })
}

/// Cut-point search speed over the corpus, GB/s: the median of `reps` passes, each over enough
/// copies of the corpus to take a measurable time.
fn chunk_speed(files: &[CorpusFile], reps: usize) -> f64 {
    let chunker = Chunker::new(ChunkConfig::default());
    let total: usize = files.iter().map(|f| f.bytes.len()).sum();
    let passes = (256_000_000 / total.max(1)).max(1);
    let mut cuts = 0usize;
    let secs = median_secs(reps.max(3), || {
        for _ in 0..passes {
            for f in files {
                cuts += chunker.chunks(std::hint::black_box(&f.bytes)).count();
            }
        }
    });
    std::hint::black_box(cuts);
    (total * passes) as f64 / secs / 1e9
}

/// Adds what the benchmark measured to `out`: store bytes against the zstd peers.
///
/// # Errors
/// A chart could not be drawn.
pub fn report(r: &Report, out: &mut crate::report::Report) -> Result<(), BenchError> {
    out.fact("corpus", &r.corpus);
    out.fact("store level", &r.level);
    out.store(&crate::report::StoreBytes {
        corpus: r.corpus.clone(),
        files: r.files,
        raw: Some(r.raw_bytes),
        synor: r.store_bytes,
        peers: vec![
            ("zstd -19 per file".to_string(), r.zstd19_bytes),
            (
                "zstd CLI best (-19, --patch-from for upgrades)".to_string(),
                r.cli_best_bytes,
            ),
            ("ruzstd Fastest per file".to_string(), r.ruzstd_bytes),
        ],
        upgrades: (r.pairs > 0).then(|| crate::report::UpgradeBytes {
            pairs: r.pairs,
            synor: r.delta_bytes,
            peer: "zstd -19 --patch-from".to_string(),
            peer_bytes: r.patch_from_bytes,
        }),
    })
}

/// The report as a table for people.
pub fn table(r: &Report) -> String {
    let mut out = String::new();
    let mut row = |name: &str, value: String| {
        out.push_str(&format!("{name:<28} {value}\n"));
    };
    row("corpus", r.corpus.clone());
    row("files / pairs", format!("{} / {}", r.files, r.pairs));
    row("raw bytes", r.raw_bytes.to_string());
    row(
        "synor store",
        format!(
            "{} ({:.3} of zstd -19, {:.3} of CLI best)",
            r.store_bytes, r.store_over_zstd19, r.store_over_cli_best
        ),
    );
    row("zstd -19 per file", r.zstd19_bytes.to_string());
    row("zstd CLI best", r.cli_best_bytes.to_string());
    row("ruzstd Fastest per file", r.ruzstd_bytes.to_string());
    row(
        "upgrades: synor",
        format!(
            "{} ({:.3} of --patch-from)",
            r.delta_bytes, r.delta_over_patch_from
        ),
    );
    row(
        "upgrades: zstd --patch-from",
        r.patch_from_bytes.to_string(),
    );
    row(
        "round trip",
        format!("{} of {} files", r.roundtrip_ok, r.files),
    );
    row(
        "decode MB/s",
        format!(
            "{:.0} (libzstd {:.0}: {:.2}x)",
            r.decode_mb_s, r.libzstd_decode_mb_s, r.decode_over_libzstd
        ),
    );
    row("chunking GB/s", format!("{:.2}", r.chunk_gb_s));
    row(
        "records full/delta/chunked",
        format!(
            "{}/{}/{}",
            r.full_records, r.delta_records, r.chunked_records
        ),
    );
    row(
        "dictionaries",
        format!("{} ({} bytes)", r.dictionaries, r.dictionary_bytes),
    );
    row("index bytes", r.index_bytes.to_string());
    row("db file (compacted)", r.db_file_bytes.to_string());
    row("ingest s", format!("{:.1}", r.ingest_s));
    out
}
