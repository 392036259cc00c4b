//! Crash safety of a node's block commits: a node writing blocks is killed at every backend
//! operation of every block's commit, as a process crash and as power losses, and after each
//! kill the node must reopen at the last acknowledged block or at the one in flight, whole,
//! never a mix, and go on to the same results as a node that was never killed.
//!
//! # Kill points
//!
//! The workload deploys the token, the registry (whose `register` and `update` store blobs
//! that the block commits through the code store, an update as a delta of a blob of an earlier
//! block) and the key/value contract (`kv.wat`), instantiates them, and executes `BLOCKS`:
//! token transfers, key/value writes and removals, blob registrations and updates, and
//! key/value contracts instantiated by the key/value contract (committed with the block).
//!
//! A dry run executes each block on a node over `synor_host_std::testing::CrashDb` (redb on a
//! backend that counts the writes, length changes and syncs made while armed), reopened on the
//! previous block's snapshot (taken with the database closed), and records the reference after
//! each block: height, state digest, every committed key with its value and version, the
//! block's receipts and digests, the contracts, and the code store's records. It then counts the backend
//! operations of each block's commit as a child runs it (a block writes only in its commit).
//!
//! A writer is this test binary run again as a child process (`crash_node_child`). For block
//! `k`, it opens the node on `CrashDb` in a fresh directory holding the snapshot before block
//! `k - 1`, executes and acknowledges block `k - 1` (so that what must survive was acknowledged
//! by the process that dies; the first block starts from the setup's snapshot), and kills
//! itself (`SIGKILL`: no destructor, no flush) right after the N-th backend operation of block
//! `k`'s commit, for every N, three times: leaving the file with everything written (a process
//! crash), with only what was synced (a power loss), or with that and an arbitrary part of the
//! unsynced writes, sector by sector (a power loss with the disk's cache partly flushed).

//! # Checks after each kill
//!
//! The parent reopens the node normally (`synor_host_wasmtime::open_node`) and checks that it
//! is at height `k - 1` or `k`, and at that height: the state digest and every key, value and
//! version are the reference's, and so are the contracts; every block up to it has the reference's receipts and digests,
//! and none above it is recorded; the code store verifies deeply (every count recounted, every
//! record decoded against its digest) and holds exactly the reference's records. Then the node
//! executes the lost block if it was lost, and the next block, and both give the reference's
//! receipts, digests and state: recovery is complete.
//!
//! # Durability
//!
//! The node commits each block in one redb write transaction with `Durability::Immediate`,
//! two-phase commit and quick repair (`synor_host_std::kv::begin_write`; see
//! `host-std/src/kv.rs`). Commits are pipelined (a block's commit is written on a thread of its
//! own while the caller goes on), and a writer acknowledges a block once `Node::sync` has
//! returned. The kill points keep the acknowledged block only because its commit is synced
//! before `sync` returns (with non-durable commits a child's acknowledged block is lost); and the block is whole (state, versions, receipts, blobs, digests and
//! height together) only because they share that transaction: committing any of them apart
//! fails this test. Two-phase commit guards against torn commits crafted to pass redb's
//! checksums, which the torn kill points here cannot tell apart from one-phase commit.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use synor_core::block::{Address, Mode, Receipt, Transaction, contract_address};
use synor_core::digest::{CodeId, Digest};
use synor_core::state::{Range, Version};
use synor_core::tier::TierPolicy;
use synor_host_std::STORE_FILE;
use synor_host_std::node::{ContractInfo, Node, NodeConfig};
use synor_host_std::testing::{CrashDb, Loss};
use synor_tests::{account, contract, next, tx, upgrade};

/// The least number of kill points that must land inside block commits.
const MIN_KILLS: usize = 200;

/// Transactions in each block.
const BLOCKS: [usize; 5] = [18, 12, 24, 16, 28];

/// Accounts holding tokens (account 0 mints the supply).
const ACCOUNTS: u64 = 6;

/// Keys the key/value contract writes and removes.
const KV_KEYS: u64 = 24;

/// Sequential execution and no promotion: no background compilation, one core per node.
fn config() -> NodeConfig {
    NodeConfig {
        mode: Mode::Sequential,
        tier_policy: TierPolicy::NEVER,
        ..NodeConfig::default()
    }
}

fn wasm(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("contracts/wasm")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn kv_wasm() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("contracts/wat/kv.wat");
    wat::parse_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The workload's contracts, by creation order (nonce): token, registry, key/value.
fn codes() -> [Vec<u8>; 3] {
    [wasm("token_v1.wasm"), wasm("registry_v1.wasm"), kv_wasm()]
}

/// The contracts' addresses, the same in every process.
struct Contracts {
    token: Address,
    registry: Address,
    kv: Address,
}

fn contracts() -> Contracts {
    let [token, registry, kv] = codes()
        .iter()
        .enumerate()
        .map(|(nonce, code)| contract_address(&CodeId::of(code), &account(0), nonce as u64))
        .collect::<Vec<_>>()
        .try_into()
        .expect("three contracts");
    Contracts {
        token,
        registry,
        kv,
    }
}

fn kv_key(k: u64) -> Vec<u8> {
    format!("key{k:02}").into_bytes()
}

/// The workload's blocks, the same in every process: every transaction succeeds, every block
/// after the first transfers tokens, writes keys, removes keys written by earlier blocks,
/// registers blobs, updates blobs registered by earlier blocks and instantiates contracts.
fn blocks() -> Vec<Vec<Transaction>> {
    let c = contracts();
    let mut s = 0x0B10_C4ED_u64;
    let mut balances = [0u64; ACCOUNTS as usize];
    let mut live_keys: Vec<u64> = Vec::new();
    // Blobs by name: registered by earlier blocks (updatable), and by the current one.
    let mut blobs: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut names = 0;
    let mut out = Vec::new();
    for (b, &size) in BLOCKS.iter().enumerate() {
        let mut txs = Vec::new();
        let mut new_blobs: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        let mut updated: Vec<u64> = Vec::new();
        let mut first_kinds = 0..7u64;
        if b == 0 {
            txs.push(tx(
                c.token,
                "init",
                account(0),
                1_000_000u64.to_le_bytes().into(),
            ));
            balances[0] = 1_000_000;
        }
        while txs.len() < size {
            let r = next(&mut s);
            // Each block tries every kind once first (some cannot run yet in the first).
            let kind = first_kinds.next().unwrap_or(r % 7);
            let named = |name: u64, data: &[u8]| {
                let mut input = format!("doc{name}").into_bytes();
                input.insert(0, input.len() as u8);
                input.extend_from_slice(data);
                input
            };
            match kind {
                0 | 1 => {
                    let from = (r >> 8) % ACCOUNTS;
                    let to = (r >> 16) % ACCOUNTS;
                    if balances[from as usize] == 0 {
                        continue;
                    }
                    let amount = 1 + (r >> 24) % balances[from as usize].div_ceil(2);
                    balances[from as usize] -= amount;
                    balances[to as usize] += amount;
                    let mut input = account(to).to_vec();
                    input.extend_from_slice(&amount.to_le_bytes());
                    txs.push(tx(c.token, "transfer", account(from), input));
                }
                2 => {
                    let k = (r >> 8) % KV_KEYS;
                    let mut input = kv_key(k);
                    input.insert(0, input.len() as u8);
                    let len = (r >> 16) % 200;
                    input.extend((0..len).map(|i| (i as u8) ^ (r >> 32) as u8));
                    if !live_keys.contains(&k) {
                        live_keys.push(k);
                    }
                    txs.push(tx(c.kv, "set", account(1), input));
                }
                3 => {
                    if live_keys.is_empty() {
                        continue;
                    }
                    let k = live_keys.remove((r >> 8) as usize % live_keys.len());
                    txs.push(tx(c.kv, "del", account(1), kv_key(k)));
                }
                6 => {
                    // A contract of the key/value code, made by the key/value contract, which
                    // writes a key in it at once.
                    let mut input = CodeId::of(&kv_wasm()).as_bytes().to_vec();
                    input.push(3);
                    input.extend_from_slice(b"set");
                    input.push(1);
                    input.extend_from_slice(b"k");
                    input.extend_from_slice(&r.to_le_bytes());
                    txs.push(tx(c.kv, "make", account(1), input));
                }
                4 => {
                    let data = contract(r, 1500 + ((r >> 32) % 5000) as usize);
                    txs.push(tx(c.registry, "register", account(2), named(names, &data)));
                    new_blobs.insert(names, data);
                    names += 1;
                }
                _ => {
                    // Blobs become readable from the block after the one that stored them,
                    // and each is updated at most once per block (its next version needs it).
                    let ready: Vec<u64> = blobs
                        .keys()
                        .filter(|n| !updated.contains(n))
                        .copied()
                        .collect();
                    if ready.is_empty() {
                        continue;
                    }
                    let name = ready[(r >> 8) as usize % ready.len()];
                    let data = upgrade(&blobs[&name], r);
                    txs.push(tx(c.registry, "update", account(2), named(name, &data)));
                    updated.push(name);
                    new_blobs.insert(name, data);
                }
            }
        }
        blobs.extend(new_blobs);
        out.push(txs);
    }
    out
}

/// Every committed key with its value and version.
type Entries = Vec<(Vec<u8>, Vec<u8>, Version)>;

/// A block's receipts, receipts digest and state diff digest.
type Block = (Vec<Receipt>, Digest, Digest);

/// The node after a block (or after setup, at height 0).
#[derive(Debug, Clone, PartialEq)]
struct Reference {
    digest: Digest,
    entries: Entries,
    contracts: Vec<ContractInfo>,
    ids: Vec<CodeId>,
}

impl Reference {
    fn of(node: &Node) -> Result<Self, String> {
        let every = Range::all();
        Ok(Self {
            digest: node
                .state_digest()
                .map_err(|e| format!("state digest: {e}"))?,
            entries: node
                .scan(&every, usize::MAX)
                .map_err(|e| format!("scan: {e}"))?,
            contracts: node.contracts().map_err(|e| format!("contracts: {e}"))?,
            ids: node.with_store(|s| s.ids()),
        })
    }
}

/// The dry run: the snapshot before each block, the backend operations of each block's commit,
/// and the reference after each height.
struct DryRun {
    snapshots: tempfile::TempDir,
    /// Backend operations of block `k`'s commit, at `k - 1`.
    ops: Vec<u64>,
    /// At each height from 0.
    references: Vec<Reference>,
    /// Block `k`'s record, at `k - 1`.
    blocks: Vec<Block>,
}

impl DryRun {
    fn new(blocks: &[Vec<Transaction>]) -> Self {
        let snapshots = tempfile::tempdir().expect("temporary directory");
        let work = tempfile::tempdir().expect("temporary directory");
        let mut node = synor_host_wasmtime::open_node(work.path(), config()).expect("open node");
        let c = contracts();
        for (code, address) in codes().iter().zip([c.token, c.registry, c.kv]) {
            let id = node.deploy(code).expect("deploy");
            let at = node.instantiate(&id, account(0)).expect("instantiate");
            assert_eq!(at, address, "the workload's addresses");
        }
        let mut references = vec![Reference::of(&node).expect("reference")];
        drop(node);
        // Each block on a node opened afresh on the previous one's snapshot, taken with the
        // database closed.
        let mut records = Vec::new();
        for (i, txs) in blocks.iter().enumerate() {
            let snapshot = snapshots.path().join(format!("{i}.redb"));
            std::fs::copy(work.path().join(STORE_FILE), &snapshot).expect("snapshot");
            let (mut node, _) = open_crash(work.path(), Loss::Process);
            let out = node
                .execute_block(txs.as_slice())
                .unwrap_or_else(|e| panic!("dry run, block {}: {e}", i + 1));
            assert_eq!(out.height, i as u64 + 1);
            for (t, r) in out.receipts.iter().enumerate() {
                assert_eq!(r.trap, None, "block {}, transaction {t}", i + 1);
            }
            let record = node.block(out.height).expect("block").expect("committed");
            assert_eq!(
                record,
                (out.receipts.clone(), out.receipts_digest, out.diff_digest)
            );
            records.push(record);
            references.push(Reference::of(&node).expect("reference"));
        }
        let mut dry = Self {
            snapshots,
            ops: Vec::new(),
            references,
            blocks: records,
        };
        // The backend operations of each block's commit, counted as a child runs it.
        for k in 1..=blocks.len() {
            let work = tempfile::tempdir().expect("temporary directory");
            dry.restore(first_block(k), work.path());
            let (mut node, crash) = writer(k, work.path(), blocks, Loss::Process);
            crash.arm(true);
            let out = node
                .execute_block(blocks[k - 1].as_slice())
                .and_then(|o| node.sync().map(|()| o));
            crash.arm(false);
            let out = out.unwrap_or_else(|e| panic!("dry run, block {k}: {e}"));
            assert_eq!(
                (out.receipts, out.receipts_digest, out.diff_digest),
                dry.blocks[k - 1],
                "block {k} executed again"
            );
            dry.ops.push(crash.counted());
        }
        // The workload does what it says: blobs are stored, keys removed.
        let ids = |h: usize| dry.references[h].ids.len();
        assert!(
            ids(BLOCKS.len()) >= ids(0) + 2 * BLOCKS.len(),
            "blobs stored"
        );
        let removed = blocks.iter().flatten().filter(|t| t.entry == "del").count();
        assert!(removed >= BLOCKS.len(), "keys removed");
        dry
    }

    /// The node before block `k`, copied into `dir`.
    fn restore(&self, k: usize, dir: &Path) {
        std::fs::copy(
            self.snapshots.path().join(format!("{}.redb", k - 1)),
            dir.join(STORE_FILE),
        )
        .expect("restore snapshot");
    }
}

/// The block a writer that dies in block `k` starts at: the one before (the first one for
/// the first), so that a power loss in block `k` must keep a block that the same process
/// acknowledged.
fn first_block(k: usize) -> usize {
    k.saturating_sub(1).max(1)
}

/// A writer before block `k`: the node in `dir` (holding the snapshot before block
/// [`first_block`]) on the crash backend, unarmed, having executed the blocks from there to
/// `k`.
fn writer(k: usize, dir: &Path, blocks: &[Vec<Transaction>], loss: Loss) -> (Node, CrashDb) {
    let (mut node, crash) = open_crash(dir, loss);
    for j in first_block(k)..k {
        node.execute_block(blocks[j - 1].as_slice())
            .and_then(|_| node.sync())
            .unwrap_or_else(|e| panic!("block {j}: {e}"));
    }
    (node, crash)
}

/// The node in `dir` on the crash backend, unarmed.
fn open_crash(dir: &Path, loss: Loss) -> (Node, CrashDb) {
    let (db, crash) = CrashDb::open(&dir.join(STORE_FILE), loss).expect("open crash database");
    let config = config();
    let engines = synor_host_wasmtime::node_engines(dir, &config, None).expect("engines");
    let node = Node::open_on(dir, db, config, engines).expect("open node");
    (node, crash)
}

fn env(name: &str) -> u64 {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} missing"))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number"))
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

/// Prints a line to the parent, at once.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").expect("stdout");
    out.flush().expect("stdout");
}

/// The writer: run by `crash_leaves_whole_blocks` in a child process, does nothing otherwise.
/// On the snapshot before block `SYNOR_CRASH_BLOCK` in `SYNOR_CRASH_DIR`, executes that block
/// and kills itself right after the `SYNOR_CRASH_AT`-th backend operation of its commit,
/// leaving the file as `SYNOR_CRASH_LOSS` says. Prints `begin` before the block and `ack`
/// once it has returned.
#[test]
#[ignore = "child process of crash_leaves_whole_blocks"]
fn crash_node_child() {
    let Some(dir) = std::env::var_os("SYNOR_CRASH_NODE_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let (k, at) = (env("SYNOR_CRASH_BLOCK") as usize, env("SYNOR_CRASH_AT"));
    let loss = loss_of(&std::env::var("SYNOR_CRASH_LOSS").expect("loss"));
    let blocks = blocks();
    let (mut node, crash) = writer(k, &dir, &blocks, loss);
    if k > first_block(k) {
        say(&format!("ack {}", k - 1));
    }
    crash.arm(true);
    crash.kill_after(at);
    say(&format!("begin {k}"));
    // Commits are pipelined: the block is durable once `sync` returns.
    let out = node
        .execute_block(blocks[k - 1].as_slice())
        .and_then(|_| node.sync());
    crash.arm(false);
    out.unwrap_or_else(|e| panic!("block {k}: {e}"));
    // The parent reports a writer that finishes the block.
    say(&format!("ack {k}"));
}

/// One kill point: block `k`, killed right after the `at`-th backend operation of its commit.
#[derive(Debug, Clone, Copy)]
struct Point {
    k: usize,
    at: u64,
    loss: Loss,
}

/// Where a killed node reopened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reopened {
    /// At the last acknowledged block: the block in flight was lost.
    Before,
    /// With the block in flight committed.
    After,
}

/// Runs the child for `point` in `dir`.
///
/// # Errors
/// The child failed, finished the block, or was not killed inside it.
fn run_child(point: &Point, dir: &Path) -> Result<(), String> {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args(["--ignored", "--exact", "crash_node_child", "--nocapture"])
        .env("SYNOR_CRASH_NODE_DIR", dir)
        .env("SYNOR_CRASH_BLOCK", point.k.to_string())
        .env("SYNOR_CRASH_AT", point.at.to_string())
        .env("SYNOR_CRASH_LOSS", loss_name(point.loss))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the writer");
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
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("ack ") || l.starts_with("begin "))
        .collect();
    if !killed {
        return Err(format!("the writer was not killed ({status}):\n{errors}"));
    }
    // Acknowledged the blocks before `k`, began `k` and died in it.
    let k = point.k;
    let mut expected: Vec<String> = (first_block(k)..k).map(|j| format!("ack {j}")).collect();
    expected.push(format!("begin {k}"));
    if lines != expected {
        return Err(format!(
            "the writer was not killed inside the block (said {lines:?}):\n{errors}"
        ));
    }
    Ok(())
}

/// Checks that `node` is at height `h` exactly as the reference.
fn check_height(node: &Node, h: usize, dry: &DryRun) -> Result<(), String> {
    if node.height() != h as u64 {
        return Err(format!("at height {}, expected {h}", node.height()));
    }
    let observed = Reference::of(node)?;
    let reference = &dry.references[h];
    if observed.digest != reference.digest {
        return Err(format!("height {h}: the state digest differs"));
    }
    if observed.entries != reference.entries {
        let differ = observed
            .entries
            .iter()
            .filter(|e| !reference.entries.contains(e))
            .count();
        return Err(format!(
            "height {h}: {} entries ({differ} not the reference's), expected {}",
            observed.entries.len(),
            reference.entries.len()
        ));
    }
    if observed.contracts != reference.contracts {
        return Err(format!(
            "height {h}: {} contracts, expected {}",
            observed.contracts.len(),
            reference.contracts.len()
        ));
    }
    for j in 1..=dry.blocks.len() {
        let record = node
            .block(j as u64)
            .map_err(|e| format!("block {j}: {e}"))?;
        let expected = (j <= h).then(|| &dry.blocks[j - 1]);
        if record.as_ref() != expected {
            return Err(format!(
                "height {h}: block {j} recorded {}, expected {}",
                record.is_some(),
                expected.is_some()
            ));
        }
    }
    let report = node
        .with_store(|s| s.verify(true))
        .map_err(|e| format!("verify: {e}"))?;
    if !report.problems.is_empty() {
        return Err(format!("height {h}: verify: {:?}", report.problems));
    }
    if observed.ids != reference.ids {
        return Err(format!(
            "height {h}: {} records in the code store, expected {}",
            observed.ids.len(),
            reference.ids.len()
        ));
    }
    Ok(())
}

/// Executes block `k` on `node` and checks it gives the reference.
fn execute(node: &mut Node, k: usize, txs: &[Transaction], dry: &DryRun) -> Result<(), String> {
    let out = node
        .execute_block(txs)
        .map_err(|e| format!("block {k} after the kill: {e}"))?;
    let (receipts, receipts_digest, diff_digest) = &dry.blocks[k - 1];
    if (&out.receipts, &out.receipts_digest, &out.diff_digest)
        != (receipts, receipts_digest, diff_digest)
    {
        return Err(format!(
            "block {k} after the kill differs from the reference"
        ));
    }
    check_height(node, k, dry)
}

/// Runs one kill point and checks the node it leaves.
fn check(point: &Point, blocks: &[Vec<Transaction>], dry: &DryRun) -> Result<Reopened, String> {
    let dir = tempfile::tempdir().expect("temporary directory");
    dry.restore(first_block(point.k), dir.path());
    run_child(point, dir.path())?;
    let mut node = synor_host_wasmtime::open_node(dir.path(), config())
        .map_err(|e| format!("reopen after the kill: {e}"))?;
    let k = point.k;
    let reopened = match node.height() {
        h if h + 1 == k as u64 => Reopened::Before,
        h if h == k as u64 => Reopened::After,
        h => return Err(format!("reopened at height {h}, block {k} was in flight")),
    };
    let h = node.height() as usize;
    check_height(&node, h, dry)?;
    if reopened == Reopened::Before {
        execute(&mut node, k, &blocks[k - 1], dry)?;
    }
    if let Some(txs) = blocks.get(k) {
        execute(&mut node, k + 1, txs, dry)?;
    }
    Ok(reopened)
}

#[test]
fn crash_leaves_whole_blocks() {
    let blocks = blocks();
    let dry = DryRun::new(&blocks);
    let mut points = Vec::new();
    for (i, &ops) in dry.ops.iter().enumerate() {
        let k = i + 1;
        for at in 1..=ops {
            for loss in [
                Loss::Process,
                Loss::Unsynced,
                Loss::Torn(((k as u64) << 32) | at),
            ] {
                points.push(Point { k, at, loss });
            }
        }
    }
    let next_point = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Result<Reopened, String>)>> = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next_point.fetch_add(1, Ordering::Relaxed);
                    let Some(point) = points.get(i) else { break };
                    // A panic (in the node or redb) fails this kill point, named.
                    let result =
                        std::panic::catch_unwind(AssertUnwindSafe(|| check(point, &blocks, &dry)))
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
    let reopened = |at: Reopened| {
        results
            .iter()
            .filter(|(_, r)| r.as_ref().is_ok_and(|r| *r == at))
            .count()
    };
    let (before, after) = (reopened(Reopened::Before), reopened(Reopened::After));
    eprintln!(
        "crash_node: {} blocks of {} transactions, {} backend operations in their commits \
         (per block {:?}); {} kill points, {} killed inside a block commit: the node reopened \
         at the last acknowledged block {before} times, with the block in flight {after} times",
        blocks.len(),
        blocks.iter().map(Vec::len).sum::<usize>(),
        dry.ops.iter().sum::<u64>(),
        dry.ops,
        points.len(),
        before + after,
    );
    assert!(
        failures.is_empty(),
        "{} of {} kill points failed:\n{}",
        failures.len(),
        points.len(),
        failures.join("\n")
    );
    assert!(
        before + after >= MIN_KILLS,
        "only {} kill points landed inside block commits",
        before + after
    );
}
