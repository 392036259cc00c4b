//! Crash safety of the std host: writers are killed inside commits, at every backend operation
//! of a workload's store commits and at every step of its artifact writes, and again during
//! the recovery that follows; after each kill the store and the artifact cache must open, be
//! consistent, and hold exactly what was acknowledged.
//!
//! # Kill points
//!
//! A writer is this test binary run again as a child process (`crash_child`). It kills itself
//! with `SIGKILL` (no destructor runs, nothing is flushed) at a point chosen deterministically:
//!
//! - **Store commits.** The child's store runs on `synor_host_std::testing::CrashKv`: redb with
//!   the same durability settings as `RedbKv`, on a backend that counts the writes, length
//!   changes and syncs redb makes inside `KvStore::apply` and kills the process right after the
//!   chosen one. The workload (`WORKLOAD`) puts, upgrades, stores and updates blobs (chunked),
//!   adds pins, deletes (down to cascades), collects and trains dictionaries. A dry run
//!   snapshots the store after each operation and counts the backend operations of each; each
//!   child starts from the snapshot before the operation preceding the one to kill, runs and
//!   acknowledges that one, and dies in the next, right after its N-th backend operation, for
//!   every N, three times: leaving the file with everything written (a process crash), with
//!   only what was synced (a power loss), or with that and an arbitrary part of the unsynced
//!   writes, sector by sector (a power loss with the disk's cache partly flushed).
//! - **Artifact writes.** The child stores artifacts in an `FsArtifactCache` and kills itself
//!   at each step of one store: temporary file created, written, synced, renamed, directory
//!   synced.
//! - **Recovery.** After a crash in the middle of each operation, a child reopens the store,
//!   which recovers it, and dies right after the N-th backend operation of that open, for
//!   every N (under each loss in turn): a crash during recovery.
//!
//! # Checks after each kill
//!
//! The parent reopens with the ordinary file backend (`open_store`) and checks that the store
//! opens; `verify(true)` finds no problem (every reference, chunk and dictionary count
//! recounted, every live record decoded and checked against its digest); `gc` finds nothing
//! to collect; the pins of every record ever stored are exactly those of the operations
//! acknowledged, or of those and the one in flight (whole: never a mix, and a put's dictionary
//! training, a commit of its own, before its record); every live record reads back
//! byte-identical; every record whose last pin an acknowledged delete removed is gone. For
//! artifacts: a file under a final name loads and authenticates (and is the artifact stored
//! under that key), or is absent exactly when the kill came before the rename; a killed
//! store's temporary file is there only then, and the next store deletes it.
//!
//! # Durability
//!
//! `RedbKv` commits with `Durability::Immediate`, two-phase commit and quick repair (see
//! `host-std/src/kv.rs`). The power-loss kill points keep the acknowledged operations only
//! because every commit is synced before it returns; with non-durable commits, or with a disk
//! whose sync does not persist, they fail. Torn commits roll back whole under redb's one-phase
//! commit too (its checksums catch them), so this test cannot tell the two apart: two-phase
//! commit is there against data crafted to defeat those checksums. Artifact files are synced
//! before they are renamed, and the directory after; the power loss of a file system is not
//! simulated here (a lost artifact costs a compilation, and a damaged one fails
//! authentication).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use synor_core::digest::{CodeId, Digest};
use synor_core::host::Level;
use synor_core::store::{ChunkConfig, CodeStore, GcReport, StoreConfig};
use synor_core::tier::ArtifactCache;
use synor_core::{KvStore, StoreError};
use synor_host_std::artifact::CacheLimits;
use synor_host_std::testing::{Counts, CrashKv, Loss, Step, kill_this_process, store_with_steps};
use synor_host_std::{ArtifactSecret, FsArtifactCache, STORE_FILE, ZstdCompressor};
use synor_tests::{contract, next, upgrade};

/// The least number of kill points, and of them inside commits, for the test to pass.
const MIN_KILLS: usize = 200;

/// The workload, one letter per operation: `P` put new code, `A` put code already stored (a
/// pin more), `U` upgrade, `B` new blob, `b` blob update, `D` delete one pin, `G` gc, `T`
/// train a dictionary.
const WORKLOAD: &str = "PPUBPADUPbDGPUTADBPDUbDPAUDGBPUDDTPU";

/// The artifact workload: the key of each store (a key stored again is overwritten whole).
const ARTIFACT_KEYS: [u64; 6] = [0, 1, 2, 1, 3, 4];

/// The steps of an artifact store, in order.
const STEPS: [Step; 5] = [
    Step::Created,
    Step::Written,
    Step::SyncedFile,
    Step::Named,
    Step::SyncedDir,
];

fn config() -> StoreConfig {
    let mut c = StoreConfig {
        level: Level::Balanced,
        chunking: ChunkConfig::new(256, 1024, 4096).expect("valid bounds"),
        chunk_threshold: 16 * 1024,
        ..StoreConfig::default()
    };
    // Small stores: train dictionaries early, so that their commits are killed too.
    c.dictionary.min_records = 4;
    c.dictionary.min_bytes = 24 * 1024;
    c.dictionary.size = 4096;
    c
}

/// One operation of the workload.
#[derive(Debug, Clone)]
enum Op {
    Put(Vec<u8>),
    Upgrade {
        previous: CodeId,
        bytes: Vec<u8>,
    },
    Blob {
        previous: Option<CodeId>,
        bytes: Vec<u8>,
    },
    Delete(CodeId),
    Gc,
    Train,
}

/// Pins of every record ever stored (zero once deleted).
type Pins = BTreeMap<CodeId, u64>;

/// The workload's operations, the same in every process.
fn workload() -> Vec<Op> {
    let mut s = 0x000C_8A54_u64;
    let mut pins = Pins::new();
    let mut bytes: BTreeMap<CodeId, Vec<u8>> = BTreeMap::new();
    let mut blobs: BTreeSet<CodeId> = BTreeSet::new();
    let mut ops = Vec::new();
    for letter in WORKLOAD.chars() {
        let live: Vec<CodeId> = pins
            .iter()
            .filter(|(_, p)| **p > 0)
            .map(|(id, _)| *id)
            .collect();
        let code: Vec<CodeId> = live
            .iter()
            .filter(|id| !blobs.contains(id))
            .copied()
            .collect();
        let live_blobs: Vec<CodeId> = live
            .iter()
            .filter(|id| blobs.contains(id))
            .copied()
            .collect();
        let r = next(&mut s);
        let pick = |ids: &[CodeId]| ids[r as usize % ids.len()];
        let op = match letter {
            'P' => Op::Put(contract(r, 1500 + (r >> 32) as usize % 7000)),
            'A' => Op::Put(bytes[&pick(&code)].clone()),
            'U' => {
                let previous = pick(&code);
                Op::Upgrade {
                    previous,
                    bytes: upgrade(&bytes[&previous], r),
                }
            }
            'B' => Op::Blob {
                previous: None,
                bytes: contract(r, 6000 + (r >> 32) as usize % 10_000),
            },
            'b' => {
                let previous = pick(&live_blobs);
                Op::Blob {
                    previous: Some(previous),
                    bytes: upgrade(&bytes[&previous], r),
                }
            }
            'D' => Op::Delete(pick(&live)),
            'G' => Op::Gc,
            'T' => Op::Train,
            _ => unreachable!("workload letter {letter}"),
        };
        if let Op::Blob { bytes: b, .. } = &op {
            blobs.insert(Digest::of(b));
        }
        if let Op::Put(b) | Op::Upgrade { bytes: b, .. } | Op::Blob { bytes: b, .. } = &op {
            bytes.insert(Digest::of(b), b.clone());
        }
        apply_model(&mut pins, &op);
        ops.push(op);
    }
    ops
}

/// What `op` does to the pins.
fn apply_model(pins: &mut Pins, op: &Op) {
    match op {
        Op::Put(b) | Op::Upgrade { bytes: b, .. } | Op::Blob { bytes: b, .. } => {
            *pins.entry(Digest::of(b)).or_default() += 1;
        }
        Op::Delete(id) => {
            let p = pins.get_mut(id).expect("deletes pick stored records");
            *p = p.checked_sub(1).expect("deletes pick live records");
        }
        Op::Gc | Op::Train => {}
    }
}

/// The pins after the first `done` operations.
fn model(ops: &[Op], done: usize) -> Pins {
    let mut pins = Pins::new();
    for op in &ops[..done] {
        apply_model(&mut pins, op);
    }
    pins
}

fn run<K: KvStore>(store: &mut CodeStore<K, ZstdCompressor>, op: &Op) -> Result<(), StoreError> {
    match op {
        Op::Put(b) => store.put(b).map(drop),
        Op::Upgrade { previous, bytes } => store.put_upgrade(previous, bytes).map(drop),
        Op::Blob { previous, bytes } => store.put_blob(bytes, previous.as_ref()).map(drop),
        Op::Delete(id) => store.delete(id),
        Op::Gc => store.gc().map(drop),
        Op::Train => store.train_dictionary().map(drop),
    }
}

/// Every record's bytes, by id.
fn contents(ops: &[Op]) -> BTreeMap<CodeId, Vec<u8>> {
    ops.iter()
        .filter_map(|op| match op {
            Op::Put(b) | Op::Upgrade { bytes: b, .. } | Op::Blob { bytes: b, .. } => {
                Some((Digest::of(b), b.clone()))
            }
            _ => None,
        })
        .collect()
}

/// The key and the content of the `n`-th artifact: compressible like machine code.
fn artifact(n: u64) -> (Digest, Vec<u8>) {
    let key = Digest::of(format!("crash test artifact {n}").as_bytes());
    let mut s = n;
    let len = 20_000 + (next(&mut s) % 40_000) as usize;
    (key, contract(n ^ 0xA57, len))
}

fn open_cache(dir: &Path) -> FsArtifactCache {
    let secret = ArtifactSecret::from_bytes([0x5A; ArtifactSecret::BYTES]);
    // SAFETY: the secret authenticates the artifacts of this test's own directories only, and
    // only this test stores into them, each artifact under its own key.
    unsafe { FsArtifactCache::open(dir, &secret, CacheLimits::default()) }.expect("open cache")
}

/// The names of the temporary files in `dir`.
fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("list artifacts")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect()
}

/// Prints a line to the parent, at once.
fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").expect("stdout");
    out.flush().expect("stdout");
}

fn env(name: &str) -> u64 {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} missing"))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number"))
}

/// The writer: run by `crash_leaves_consistent_stores_and_caches` in a child process, does
/// nothing otherwise. Prints `begin N` before the workload's N-th operation (or store) and
/// `ack N` once it has returned, and kills itself as `SYNOR_CRASH_*` say.
#[test]
#[ignore = "child process of crash_leaves_consistent_stores_and_caches"]
fn crash_child() {
    let (Ok(kind), Some(dir)) = (
        std::env::var("SYNOR_CRASH_CHILD"),
        std::env::var_os("SYNOR_CRASH_DIR"),
    ) else {
        return;
    };
    let dir = PathBuf::from(dir);
    if kind == "artifact" {
        let (last, step) = (env("SYNOR_CRASH_STORE"), env("SYNOR_CRASH_STEP"));
        let cache = open_cache(&dir);
        for (i, n) in ARTIFACT_KEYS.iter().enumerate().take(last as usize + 1) {
            let (key, bytes) = artifact(*n);
            say(format_args!("begin {i}"));
            store_with_steps(&cache, &key, &bytes, &mut |s| {
                if i as u64 == last && s == STEPS[step as usize] {
                    kill_this_process();
                }
            });
            say(format_args!("ack {i}"));
        }
        return;
    }
    let loss = loss_of(&std::env::var("SYNOR_CRASH_LOSS").expect("loss"));
    if kind == "reopen" {
        let kv = CrashKv::open_killing_at(&dir.join(STORE_FILE), loss, env("SYNOR_CRASH_AT"))
            .expect("reopen");
        let store = CodeStore::open(kv, ZstdCompressor::default(), config()).expect("reopen");
        // The backend operations of the reopen, read as the first "begun".
        say(format_args!("begin {}", store.kv().counted()));
        return;
    }
    let (first, target, at) = (
        env("SYNOR_CRASH_FIRST") as usize,
        env("SYNOR_CRASH_OP") as usize,
        env("SYNOR_CRASH_AT"),
    );
    let ops = workload();
    let kv = CrashKv::open(&dir.join(STORE_FILE), loss).expect("open");
    let mut store = CodeStore::open(kv, ZstdCompressor::default(), config()).expect("open store");
    for (i, op) in ops.iter().enumerate().skip(first) {
        if i == target {
            store.kv().kill_after(at);
        }
        say(format_args!("begin {i}"));
        run(&mut store, op).unwrap_or_else(|e| panic!("operation {i}: {e}"));
        say(format_args!("ack {i}"));
    }
}

/// One kill point.
#[derive(Debug, Clone)]
enum Point {
    /// Run from operation `first`, and kill at the `at`-th counted backend operation of
    /// operation `op`.
    Store {
        first: usize,
        op: usize,
        at: u64,
        loss: Loss,
    },
    /// Store the artifacts up to the `store`-th, and kill it at step `step`.
    Artifact { store: usize, step: usize },
    /// After the store kill point `crash`, reopen the store (recovering it) and kill that at
    /// its `at`-th backend operation.
    Reopen {
        crash: Box<Point>,
        at: u64,
        loss: Loss,
    },
}

/// What the parent learnt from a kill point.
struct Outcome {
    killed: bool,
    /// The kill came inside the operation (or artifact store) aimed at, where only commits
    /// count backend operations.
    inside: bool,
}

/// The dry run: the snapshot of the store after each operation, the dictionary current after
/// each, and the backend operations each counts when a child runs it.
struct DryRun {
    snapshots: tempfile::TempDir,
    dictionaries: Vec<Option<u32>>,
    counts: Vec<u64>,
    /// All counted operations, by kind.
    kinds: Counts,
}

impl DryRun {
    fn new(ops: &[Op]) -> Self {
        let snapshots = tempfile::tempdir().expect("temporary directory");
        let work = tempfile::tempdir().expect("temporary directory");
        let path = work.path().join(STORE_FILE);
        let open = |path: &Path| {
            let kv = CrashKv::open(path, Loss::Process).expect("open");
            CodeStore::open(kv, ZstdCompressor::default(), config()).expect("open store")
        };
        let mut dictionaries = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let mut store = open(&path);
            run(&mut store, op).unwrap_or_else(|e| panic!("dry run, operation {i}: {e}"));
            dictionaries.push(store.current_dictionary());
            drop(store);
            std::fs::copy(&path, snapshots.path().join(format!("{i}.redb"))).expect("snapshot");
        }
        let mut dry = Self {
            snapshots,
            dictionaries,
            counts: Vec::new(),
            kinds: Counts::default(),
        };
        // As a child runs it: from the snapshot before the operation preceding it, that one
        // first, then it.
        for (i, op) in ops.iter().enumerate() {
            let work = tempfile::tempdir().expect("temporary directory");
            let first = i.saturating_sub(1);
            dry.restore(first, work.path());
            let mut store = open(&work.path().join(STORE_FILE));
            for (j, op) in ops.iter().enumerate().take(i).skip(first) {
                run(&mut store, op).unwrap_or_else(|e| panic!("dry run, operation {j}: {e}"));
            }
            let (before, kinds) = (store.kv().counted(), store.kv().counts());
            run(&mut store, op).unwrap_or_else(|e| panic!("dry run, operation {i}: {e}"));
            dry.counts.push(store.kv().counted() - before);
            let after = store.kv().counts();
            dry.kinds.writes += after.writes - kinds.writes;
            dry.kinds.set_lens += after.set_lens - kinds.set_lens;
            dry.kinds.syncs += after.syncs - kinds.syncs;
        }
        dry
    }

    /// The store after the first `done` operations, copied into `dir`.
    fn restore(&self, done: usize, dir: &Path) {
        if done > 0 {
            std::fs::copy(
                self.snapshots.path().join(format!("{}.redb", done - 1)),
                dir.join(STORE_FILE),
            )
            .expect("restore snapshot");
        }
    }

    /// The dictionary current after the first `done` operations.
    fn dictionary(&self, done: usize) -> Option<u32> {
        done.checked_sub(1).and_then(|i| self.dictionaries[i])
    }
}

/// The store kill points: every backend operation of every operation's commits, under each
/// kind of loss.
fn store_points(dry: &DryRun) -> Vec<Point> {
    let mut points = Vec::new();
    for (op, count) in dry.counts.iter().enumerate() {
        for at in 1..=*count {
            for loss in [
                Loss::Process,
                Loss::Unsynced,
                Loss::Torn(((op as u64) << 32) | at),
            ] {
                points.push(Point::Store {
                    first: op.saturating_sub(1),
                    op,
                    at,
                    loss,
                });
            }
        }
    }
    points
}

fn loss_name(loss: Loss) -> String {
    match loss {
        Loss::Process => "process".into(),
        Loss::Unsynced => "unsynced".into(),
        Loss::Torn(seed) => format!("torn:{seed}"),
    }
}

fn loss_of(name: &str) -> Loss {
    match name {
        "process" => Loss::Process,
        "unsynced" => Loss::Unsynced,
        torn => Loss::Torn(torn.trim_start_matches("torn:").parse().expect("seed")),
    }
}

/// The reopen kill points: after a crash in the middle of every operation (torn), the
/// recovering reopen killed at every one of its backend operations, under each loss in turn.
/// A first reopen of each crash, not killed, counts them.
fn reopen_points(dry: &DryRun) -> Vec<Point> {
    let mut points = Vec::new();
    for (op, count) in dry.counts.iter().enumerate() {
        let crash = Point::Store {
            first: op.saturating_sub(1),
            op,
            at: count.div_ceil(2),
            loss: Loss::Torn(op as u64),
        };
        // Without a crash there is nothing to recover (the count of kills says so).
        let dir = tempfile::tempdir().expect("temporary directory");
        if *count == 0 || !crash_store(&crash, dir.path(), dry).is_ok_and(|c| c.killed) {
            continue;
        }
        let measure = Point::Reopen {
            crash: Box::new(crash.clone()),
            at: u64::MAX,
            loss: Loss::Process,
        };
        let reopen = match run_child(&measure, dir.path()) {
            Ok((false, opened, _)) => opened.first().map_or(0, |n| *n as u64),
            // Checked by the store kill points.
            _ => continue,
        };
        for at in 1..=reopen {
            let loss = match at % 3 {
                0 => Loss::Process,
                1 => Loss::Unsynced,
                _ => Loss::Torn(((op as u64) << 32) | at),
            };
            points.push(Point::Reopen {
                crash: Box::new(crash.clone()),
                at,
                loss,
            });
        }
    }
    points
}

/// Runs the child for `point` in `dir`; returns whether it was killed (rather than finishing)
/// and the operations it began and acknowledged.
///
/// # Errors
/// The child failed (other than by being killed).
fn run_child(point: &Point, dir: &Path) -> Result<(bool, Vec<usize>, Vec<usize>), String> {
    let exe = std::env::current_exe().expect("test binary");
    let mut command = Command::new(exe);
    command
        .args(["--ignored", "--exact", "crash_child", "--nocapture"])
        .env("SYNOR_CRASH_DIR", dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match point {
        Point::Store {
            first,
            op,
            at,
            loss,
        } => {
            command
                .env("SYNOR_CRASH_CHILD", "store")
                .env("SYNOR_CRASH_FIRST", first.to_string())
                .env("SYNOR_CRASH_OP", op.to_string())
                .env("SYNOR_CRASH_AT", at.to_string())
                .env("SYNOR_CRASH_LOSS", loss_name(*loss));
        }
        Point::Artifact { store, step } => {
            command
                .env("SYNOR_CRASH_CHILD", "artifact")
                .env("SYNOR_CRASH_STORE", store.to_string())
                .env("SYNOR_CRASH_STEP", step.to_string());
        }
        Point::Reopen { at, loss, .. } => {
            command
                .env("SYNOR_CRASH_CHILD", "reopen")
                .env("SYNOR_CRASH_AT", at.to_string())
                .env("SYNOR_CRASH_LOSS", loss_name(*loss));
        }
    }
    let mut child = command.spawn().expect("spawn the writer");
    let mut stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut stdout)
        .expect("read the writer's output");
    let status = child.wait().expect("reap the writer");
    let errors = errors.join().expect("stderr reader");
    let killed = {
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            status.signal() == Some(9)
        }
        #[cfg(not(unix))]
        {
            !status.success()
        }
    };
    if !killed && !status.success() {
        return Err(format!("the writer failed ({status}):\n{errors}"));
    }
    let (mut begun, mut acked) = (Vec::new(), Vec::new());
    for line in stdout.lines() {
        let (list, n) = match line.split_once(' ') {
            Some(("begin", n)) => (&mut begun, n),
            Some(("ack", n)) => (&mut acked, n),
            _ => continue,
        };
        list.push(n.parse().expect("operation number"));
    }
    Ok((killed, begun, acked))
}

/// What a store writer had done when it died.
struct Crashed {
    killed: bool,
    /// Operations acknowledged (from the first).
    done: usize,
    /// The next operation had begun.
    in_flight: bool,
}

/// Runs one store kill point in `dir`.
fn crash_store(point: &Point, dir: &Path, dry: &DryRun) -> Result<Crashed, String> {
    let Point::Store { first, .. } = point else {
        unreachable!()
    };
    dry.restore(*first, dir);
    let (killed, begun, acked) = run_child(point, dir)?;
    // Operations run in order from `first`: those acknowledged are done, and the next one is
    // in flight if it began.
    let done = first + acked.len();
    if acked.iter().copied().ne(*first..done) {
        return Err(format!("acknowledged out of order: {acked:?}"));
    }
    Ok(Crashed {
        killed,
        done,
        in_flight: killed && begun.last() == Some(&done),
    })
}

/// Runs one store kill point and checks the store it leaves.
fn check_store(point: &Point, ops: &[Op], dry: &DryRun) -> Result<Outcome, String> {
    let Point::Store { op: target, .. } = point else {
        unreachable!()
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let crashed = crash_store(point, dir.path(), dry)?;
    check_dir(dir.path(), &crashed, ops, dry)?;
    Ok(Outcome {
        killed: crashed.killed,
        inside: crashed.in_flight && crashed.done == *target,
    })
}

/// Runs one store kill point, then a reopen killed as `point` says, and checks the store they
/// leave.
fn check_reopen(point: &Point, ops: &[Op], dry: &DryRun) -> Result<Outcome, String> {
    let Point::Reopen { crash, .. } = point else {
        unreachable!()
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let crashed = crash_store(crash, dir.path(), dry)?;
    if !crashed.killed {
        return Err("the writer was not killed".into());
    }
    let (killed, _, _) = run_child(point, dir.path())?;
    check_dir(dir.path(), &crashed, ops, dry)?;
    Ok(Outcome {
        killed,
        inside: false,
    })
}

/// Checks the store in `dir`, left by a writer that `crashed`.
fn check_dir(dir: &Path, crashed: &Crashed, ops: &[Op], dry: &DryRun) -> Result<(), String> {
    let Crashed {
        done, in_flight, ..
    } = *crashed;
    let store = synor_host_std::open_store(dir, config())
        .map_err(|e| format!("reopen after the kill: {e}"))?;
    let report = store.verify(true).map_err(|e| format!("verify: {e}"))?;
    if !report.problems.is_empty() {
        return Err(format!("verify: {:?}", report.problems));
    }
    let before = model(ops, done);
    let after = if in_flight {
        model(ops, done + 1)
    } else {
        before.clone()
    };
    let all = contents(ops);
    let observed: Pins = all
        .keys()
        .map(|id| match store.record_stats(id) {
            Ok(s) => Ok((*id, s.pins)),
            Err(StoreError::NotFound(_)) => Ok((*id, 0)),
            Err(e) => Err(format!("stats of {id}: {e}")),
        })
        .collect::<Result<_, _>>()?;
    let pins_of = |m: &Pins| -> Pins {
        all.keys()
            .map(|id| (*id, m.get(id).copied().unwrap_or(0)))
            .collect()
    };
    let (before, after) = (pins_of(&before), pins_of(&after));
    let committed = if observed == after {
        true
    } else if observed == before {
        false
    } else {
        let diff: Vec<String> = all
            .keys()
            .filter(|id| observed[id] != before[id])
            .map(|id| {
                format!(
                    "{id}: {} pins, {} acknowledged, {} with the operation in flight",
                    observed[id], before[id], after[id]
                )
            })
            .collect();
        return Err(format!("pins match no acknowledged state: {diff:?}"));
    };
    // A put that trains a dictionary commits it first, so the dictionary may be there
    // without the record, not the other way round.
    let dictionary = store.current_dictionary();
    let allowed = if committed && before != after {
        vec![dry.dictionary(done + 1)]
    } else if in_flight {
        vec![dry.dictionary(done), dry.dictionary(done + 1)]
    } else {
        vec![dry.dictionary(done)]
    };
    if !allowed.contains(&dictionary) {
        return Err(format!(
            "current dictionary {dictionary:?}, expected one of {allowed:?}"
        ));
    }
    let live: Vec<CodeId> = observed
        .iter()
        .filter(|(_, p)| **p > 0)
        .map(|(id, _)| *id)
        .collect();
    if store.ids() != live {
        return Err(format!("live records {:?}, expected {live:?}", store.ids()));
    }
    for (id, pins) in &observed {
        match store.get(id) {
            Ok(b) if *pins > 0 && b == all[id] => {}
            Err(StoreError::NotFound(_)) if *pins == 0 => {}
            Ok(_) if *pins == 0 => return Err(format!("deleted {id} still reads")),
            Ok(_) => return Err(format!("{id} reads other bytes")),
            Err(e) => return Err(format!("read {id} ({pins} pins): {e}")),
        }
    }
    let mut store = store;
    let gc = store.gc().map_err(|e| format!("gc: {e}"))?;
    if gc != GcReport::default() {
        return Err(format!("gc collected what counting missed: {gc:?}"));
    }
    Ok(())
}

/// Runs one artifact kill point and checks the cache it leaves.
fn check_artifact(point: &Point) -> Result<Outcome, String> {
    let Point::Artifact { store: last, step } = point else {
        unreachable!()
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let (killed, begun, acked) = run_child(point, dir.path())?;
    if !killed || acked.len() != *last || begun.last() != Some(last) {
        return Err(format!(
            "the writer was not killed in store {last} (killed {killed}, acknowledged {acked:?})"
        ));
    }
    let named = STEPS[*step] == Step::Named || STEPS[*step] == Step::SyncedDir;
    let cache = open_cache(dir.path());
    // Every key stored before the kill loads; the key being stored has a file exactly when the
    // kill came after the rename (or it was stored before); no other key has a file.
    let in_flight = ARTIFACT_KEYS[*last];
    let check = |cache: &FsArtifactCache| -> Result<(), String> {
        let mut finals = 0;
        for n in ARTIFACT_KEYS.iter().collect::<BTreeSet<_>>() {
            let (key, bytes) = artifact(*n);
            let stored = ARTIFACT_KEYS[..*last].contains(n);
            let expected = stored || (*n == in_flight && named);
            let exists = cache.path_of(&key).exists();
            if exists != expected {
                return Err(format!(
                    "artifact {n}: file there {exists}, expected {expected}"
                ));
            }
            if exists && cache.load(&key) != Some(bytes) {
                return Err(format!("artifact {n}: its file does not load its artifact"));
            }
            finals += usize::from(exists);
        }
        let files = std::fs::read_dir(dir.path())
            .expect("list artifacts")
            .count();
        if files != finals + temp_files(dir.path()).len() {
            return Err(format!("{files} files, {finals} artifacts expected"));
        }
        Ok(())
    };
    check(&cache)?;
    let temps = temp_files(dir.path());
    if temps.len() != usize::from(!named) {
        return Err(format!("temporary files after the kill: {temps:?}"));
    }
    // The next store deletes the killed writer's temporary file.
    let (key, bytes) = artifact(99);
    cache.store(&key, &bytes);
    let temps = temp_files(dir.path());
    if !temps.is_empty() {
        return Err(format!("the next store left temporary files: {temps:?}"));
    }
    if cache.load(&key) != Some(bytes) {
        return Err("the next store does not load".into());
    }
    std::fs::remove_file(cache.path_of(&key)).expect("remove the next store's artifact");
    check(&cache)?;
    if cache.rejected() != 0 {
        return Err(format!("{} files rejected", cache.rejected()));
    }
    Ok(Outcome {
        killed,
        inside: true,
    })
}

#[test]
fn crash_leaves_consistent_stores_and_caches() {
    let ops = workload();
    let dry = DryRun::new(&ops);
    let mut points = store_points(&dry);
    let store_points = points.len();
    points.extend(reopen_points(&dry));
    let reopen_points = points.len() - store_points;
    for store in 0..ARTIFACT_KEYS.len() {
        for step in 0..STEPS.len() {
            points.push(Point::Artifact { store, step });
        }
    }
    let next_point = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Result<Outcome, String>)>> = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next_point.fetch_add(1, Ordering::Relaxed);
                    let Some(point) = points.get(i) else { break };
                    // A panic (in the store or redb) fails this kill point, named.
                    let result = std::panic::catch_unwind(AssertUnwindSafe(|| match point {
                        Point::Store { .. } => check_store(point, &ops, &dry),
                        Point::Artifact { .. } => check_artifact(point),
                        Point::Reopen { .. } => check_reopen(point, &ops, &dry),
                    }))
                    .unwrap_or_else(|panic| {
                        let message = panic
                            .downcast_ref::<String>()
                            .map(String::as_str)
                            .or_else(|| panic.downcast_ref::<&str>().copied())
                            .unwrap_or("?");
                        Err(format!("panicked: {message}"))
                    });
                    results.lock().expect("results").push((i, result));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("results");
    results.sort_by_key(|(i, _)| *i);
    let failures: Vec<String> = results
        .iter()
        .filter_map(|(i, r)| r.as_ref().err().map(|e| format!("{:?}: {e}", points[*i])))
        .collect();
    let outcomes: Vec<(usize, &Outcome)> = results
        .iter()
        .filter_map(|(i, r)| r.as_ref().ok().map(|o| (*i, o)))
        .collect();
    let count = |kind: fn(&Point) -> bool, what: fn(&Outcome) -> bool| {
        outcomes
            .iter()
            .filter(|(i, o)| kind(&points[*i]) && what(o))
            .count()
    };
    let is_store = |p: &Point| matches!(p, Point::Store { .. });
    let is_reopen = |p: &Point| matches!(p, Point::Reopen { .. });
    let is_artifact = |p: &Point| matches!(p, Point::Artifact { .. });
    let killed = count(|_| true, |o| o.killed);
    let inside = count(|_| true, |o| o.inside);
    let store_losses = [
        count(
            |p| {
                matches!(
                    p,
                    Point::Store {
                        loss: Loss::Process,
                        ..
                    }
                )
            },
            |o| o.inside,
        ),
        count(
            |p| {
                matches!(
                    p,
                    Point::Store {
                        loss: Loss::Unsynced,
                        ..
                    }
                )
            },
            |o| o.inside,
        ),
        count(
            |p| {
                matches!(
                    p,
                    Point::Store {
                        loss: Loss::Torn(_),
                        ..
                    }
                )
            },
            |o| o.inside,
        ),
    ];
    eprintln!(
        "crash: {} operations, {} backend operations in their commits ({} writes, {} length \
         changes, {} syncs). {} kill points, {} killed the writer, {} inside a commit: store \
         commits {} of {} (process crash {}, power loss of the unsynced writes {}, unsynced \
         writes torn {}); artifact writes {} of {}; and, outside the store's commits, in the \
         open that recovers from a crash, {} of {}",
        ops.len(),
        dry.counts.iter().sum::<u64>(),
        dry.kinds.writes,
        dry.kinds.set_lens,
        dry.kinds.syncs,
        results.len(),
        killed,
        inside,
        count(is_store, |o| o.inside),
        store_points,
        store_losses[0],
        store_losses[1],
        store_losses[2],
        count(is_artifact, |o| o.inside),
        points.len() - store_points - reopen_points,
        count(is_reopen, |o| o.killed),
        reopen_points,
    );
    assert!(
        failures.is_empty(),
        "{} of {} kill points failed:\n{}",
        failures.len(),
        points.len(),
        failures.join("\n")
    );
    assert!(
        killed >= MIN_KILLS,
        "only {killed} kill points killed the writer"
    );
    assert!(
        inside >= MIN_KILLS,
        "only {inside} kill points landed inside a commit"
    );
}
