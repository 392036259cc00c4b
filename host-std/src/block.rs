//! Block execution: transactions run on the tiered engines by the worker pool, sequentially,
//! by their declared access sets, or optimistically (Block-STM), always with the result of
//! sequential execution in block order.
//!
//! A transaction that declares an [`AccessSet`] sees the block state through it: touching any
//! other key traps with `undeclared_access`, in every mode alike. A set over its bounds
//! ([`AccessSet::check`]) is refused when the block is scheduled: the transaction is not run,
//! and its receipt says `access_set_too_large`. A transaction's writes take
//! effect when it succeeds; a trapping transaction's writes are discarded and the block goes
//! on. Blobs stored during the block
//! become readable after it (every transaction reads the blobs of earlier blocks only), so that
//! blob reads never depend on the order of independent transactions.

use std::borrow::Borrow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use core::hash::BuildHasher;

use hashbrown::HashMap;
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use smallvec::SmallVec;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use synor_core::abi::{Blobs, CallContext, State, Trap};
pub use synor_core::block::{Address, Contracts, Declared, Mode, Receipt, Transaction};
use synor_core::digest::{CodeId, Digest};
use synor_core::sched::optimistic::{Executed, Optimistic, Read, ReadSet, Version};
use synor_core::sched::{AccessSet, Dag};
use synor_core::tier::{Call, EngineError};

use crate::pool;
use crate::tiered::{Session, TieredExecutor};

/// What executing a block did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    /// One receipt per transaction.
    pub receipts: Vec<Receipt>,
    /// Contract executions (more than the transactions when optimistic execution re-ran some).
    pub executions: usize,
    /// Validations of optimistic executions.
    pub validations: usize,
}

/// Shards of the block state, each behind its own lock, chosen by a hash of the whole key:
/// transactions on different keys take different locks, so workers rarely meet on one (a
/// shared lock's cache line moves between cores on every access).
const SHARDS: usize = 256;

/// A key of the block state, held in its entry up to 72 bytes (a contract's namespace, a tag
/// and an account: a balance key is 68).
type StateKey = SmallVec<[u8; 72]>;

/// A value of the block state, held in its entry up to 32 bytes (a balance is 16).
///
/// With keys and values in their own heap allocations, a read or write of a key the block had
/// not touched yet found the table's entry, then the key's allocation to compare it, then the
/// value's: three cache misses where the entry alone is one or two (about 0.1 µs of each read
/// and write of a 10,000-account state, and no allocation to free from another worker's heap
/// when a value is replaced).
type StateValue = SmallVec<[u8; 32]>;

/// One shard of the block state, on cache lines of its own (two shards' locks on one line
/// made independent transactions on different cores invalidate each other's line): keys and
/// values, probed with the hash that also chose the shard (a key is hashed once per access).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(RwLock<HashTable<(StateKey, StateValue)>>);

/// Key/value state shared by a block's transactions, and the blobs of earlier blocks.
#[derive(Debug)]
pub struct BlockState {
    shards: Vec<Shard>,
    /// Hashes keys, for their shard and within it.
    hasher: hashbrown::DefaultHashBuilder,
    blobs: RwLock<HashMap<CodeId, Arc<[u8]>>>,
}

impl Default for BlockState {
    fn default() -> Self {
        Self::new([])
    }
}

impl BlockState {
    /// State holding `values`.
    pub fn new(values: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Self {
        let state = Self {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            hasher: Default::default(),
            blobs: RwLock::default(),
        };
        state.put_many(values.into_iter().map(|(k, v)| (k, Some(v))));
        state
    }

    /// The hash of `key` and the index of its shard: a hash of the whole key (keys share their
    /// contract's prefix, and an account id may be mostly zeros, as the benchmark's are).
    fn locate(&self, key: &[u8]) -> (u64, usize) {
        let hash = self.hasher.hash_one(key);
        // Bits the shard's table does not use for its own buckets and tags.
        (hash, (hash >> 32) as usize % SHARDS)
    }

    /// The index of `key`'s shard.
    #[cfg(test)]
    fn shard_of(&self, key: &[u8]) -> usize {
        self.locate(key).1
    }

    /// Writes `key`.
    fn put<K: Borrow<[u8]>>(&self, key: K, value: Option<Vec<u8>>) {
        let (hash, index) = self.locate(key.borrow());
        let mut shard = self.shards[index]
            .0
            .write()
            .unwrap_or_else(|e| e.into_inner());
        self.apply(&mut shard, hash, key.borrow(), value);
    }

    /// Applies one write of `key`, whose hash is `hash`. A new value of a key already held is
    /// copied into the held value's place when it fits (a value beyond [`StateValue`]'s inline
    /// room, into its allocation, without holding more than twice what it needs): a held
    /// allocation was usually made by another worker, and freeing it here would hand it back
    /// to that worker's heap, a contended free per write; the written value, freed instead,
    /// was allocated by this thread.
    fn apply(
        &self,
        shard: &mut HashTable<(StateKey, StateValue)>,
        hash: u64,
        key: &[u8],
        value: Option<Vec<u8>>,
    ) {
        let eq = |(k, _): &(StateKey, StateValue)| k.as_slice() == key;
        let Some(v) = value else {
            if let Ok(held) = shard.find_entry(hash, eq) {
                held.remove();
            }
            return;
        };
        match shard.entry(hash, eq, |(k, _)| self.hasher.hash_one(k.as_slice())) {
            Entry::Occupied(mut held) => {
                let held = &mut held.get_mut().1;
                if v.len() <= held.capacity() && (!held.spilled() || held.capacity() <= 2 * v.len())
                {
                    held.clear();
                    held.extend_from_slice(&v);
                } else {
                    *held = StateValue::from_vec(v);
                }
            }
            Entry::Vacant(e) => {
                e.insert((StateKey::from_slice(key), StateValue::from_vec(v)));
            }
        }
    }

    /// Applies `writes` in order, taking each shard's lock once: an optimistic window's
    /// workers apply thousands of writes at once, and locking per write made them wait on
    /// each other's shard locks.
    fn put_many(&self, writes: impl IntoIterator<Item = Write>) {
        let mut by_shard: Vec<((u64, usize), Write)> =
            writes.into_iter().map(|w| (self.locate(&w.0), w)).collect();
        // Stable: a key written twice keeps its last value.
        by_shard.sort_by_key(|((_, shard), _)| *shard);
        let mut writes = by_shard.into_iter().peekable();
        while let Some(((hash, index), (key, value))) = writes.next() {
            let mut shard = self.shards[index]
                .0
                .write()
                .unwrap_or_else(|e| e.into_inner());
            self.apply(&mut shard, hash, &key, value);
            while let Some(((hash, _), (key, value))) = writes.next_if(|((_, i), _)| *i == index) {
                self.apply(&mut shard, hash, &key, value);
            }
        }
    }

    /// The value of `key`, passed to `f` under its shard's lock.
    fn with<R>(&self, key: &[u8], f: impl FnOnce(Option<&StateValue>) -> R) -> R {
        let (hash, index) = self.locate(key);
        let shard = self.shards[index]
            .0
            .read()
            .unwrap_or_else(|e| e.into_inner());
        f(shard
            .find(hash, |(k, _)| k.as_slice() == key)
            .map(|(_, v)| v))
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.with(key, |v| v.map(|v| v.to_vec()))
    }

    /// Every key and value, ordered.
    pub fn snapshot(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let mut all = BTreeMap::new();
        for shard in &self.shards {
            let shard = shard.0.read().unwrap_or_else(|e| e.into_inner());
            all.extend(shard.iter().map(|(k, v)| (k.to_vec(), v.to_vec())));
        }
        all
    }

    /// Digest of every key and value, in key order.
    pub fn digest(&self) -> Digest {
        synor_core::block::state_digest(self.snapshot().iter())
    }
}

/// A state write (`None` removes the key).
type Write = (Vec<u8>, Option<Vec<u8>>);

/// Blobs a transaction stored.
type NewBlobs = Vec<(CodeId, Arc<[u8]>)>;

/// A window of an optimistic block: keys and values (`None`: removed).
type Window = Optimistic<WindowKey, Option<Vec<u8>>>;

/// A key in an optimistic window's memory, held in its entry up to 72 bytes (a contract's
/// namespace, a tag and an account): no allocation per key met, none to free when the window
/// is reset for the next block (freeing them, half allocated by the other worker, took 0.5 ms
/// of each 10,000-transaction block before any worker could start), and finding a key compares
/// bytes in the entry's own cache lines.
type WindowKey = StateKey;

/// Windows kept at most (each holds the per-transaction state of the largest block it ran).
const MAX_SPARE_WINDOWS: usize = 4;

/// What block execution keeps between blocks: the worker threads and the optimistic windows
/// of earlier blocks (their allocations, see [`Optimistic::reset`]; one per block executed at
/// once, up to [`MAX_SPARE_WINDOWS`]). One per node or benchmark: two share nothing.
#[derive(Default)]
pub struct BlockExecutor {
    workers: pool::Workers,
    spare: Mutex<Vec<Window>>,
}

impl std::fmt::Debug for BlockExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockExecutor")
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

impl BlockExecutor {
    /// No threads or windows yet (made on first use).
    pub fn new() -> Self {
        Self::default()
    }

    /// The worker threads.
    pub fn workers(&self) -> &pool::Workers {
        &self.workers
    }
}

/// The reads of one optimistic execution, shared by its view and the worker that returns them.
type SpeculativeReads = Rc<RefCell<ReadSet>>;

/// What a worker's views share. One per worker, on cache lines of its own, so that the
/// reference counts views touch are the worker's own, not a cache line bouncing between cores.
#[repr(align(128))]
struct Shared {
    state: Arc<BlockState>,
    txs: Arc<[Transaction]>,
    /// Per transaction, its access set as scheduling found it.
    declared: Arc<[Declared]>,
    /// The optimistic window being executed.
    window: Option<Arc<Window>>,
}

/// A transaction's view: the block state, through its access set, and for an optimistic
/// execution through the window's multi-version memory.
struct View {
    shared: Arc<Shared>,
    tx: usize,
    speculative: Option<SpeculativeReads>,
}

impl View {
    fn check(&self, key: &[u8], write: bool) -> Result<(), Trap> {
        self.shared.declared[self.tx].check(self.shared.txs[self.tx].access.as_ref(), key, write)
    }
}

impl State for View {
    fn read(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, Trap> {
        self.check(key, false)?;
        let (Some(reads), Some(window)) = (&self.speculative, &self.shared.window) else {
            return Ok(self.shared.state.get(key));
        };
        match window.read(&mut reads.borrow_mut(), key, || self.shared.state.get(key)) {
            Read::Value(v) => Ok(v),
            // The execution is void: the worker sees the blocked read set and drops it.
            Read::Blocked => Err(Trap::Host(
                "read a value an earlier transaction is re-executing".into(),
            )),
        }
    }

    fn check_write(&mut self, key: &[u8]) -> Result<(), Trap> {
        self.check(key, true)
    }
}

impl Blobs for View {
    fn blob(&mut self, id: &CodeId) -> Result<Option<Arc<[u8]>>, String> {
        Ok(self
            .shared
            .state
            .blobs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned())
    }
}

/// What one execution of a transaction did: its receipt, and unless it failed its writes
/// and blobs (not yet applied).
struct Effects {
    receipt: Receipt,
    /// The call's writes, each key once, in key order (as the ABI journals them).
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    blobs: NewBlobs,
}

/// Where a transaction's receipt is kept, on cache lines of its own: neighbouring transactions
/// finish on different workers, and receipts sharing a line made each one a cache miss.
#[derive(Default)]
#[repr(align(128))]
struct ReceiptSlot(OnceLock<Result<Receipt, EngineError>>);

/// A worker's [`Session`], on cache lines of its own (only its worker locks it).
#[repr(align(128))]
struct WorkerSession<'a>(Mutex<Session<'a>>);

impl<'a> WorkerSession<'a> {
    fn get(&self) -> std::sync::MutexGuard<'_, Session<'a>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn execute_one(
    session: &mut Session<'_>,
    contracts: &dyn Contracts,
    shared: &Arc<Shared>,
    tx: usize,
    speculative: Option<&SpeculativeReads>,
) -> Result<Effects, EngineError> {
    let t = &shared.txs[tx];
    let refused = |why: String| Effects {
        receipt: Receipt::refused(why),
        writes: BTreeMap::new(),
        blobs: Vec::new(),
    };
    if let Declared::Refused(e) = &shared.declared[tx] {
        return Ok(refused(e.to_string()));
    }
    let Some(module) = contracts.module(&t.contract) else {
        return Ok(refused(format!(
            "no_contract: no contract at {}",
            t.contract
        )));
    };
    if module.export(&t.entry).is_none() {
        return Ok(refused(format!(
            "no_entry: the contract at {} exports no function {:?}",
            t.contract, t.entry
        )));
    }
    // The blobs' view reads the block state directly: only the state's view needs the reads.
    let view = |speculative: Option<&SpeculativeReads>| View {
        shared: shared.clone(),
        tx,
        speculative: speculative.cloned(),
    };
    let mut ctx = CallContext::new(
        t.contract,
        t.caller,
        t.input.clone(),
        t.gas,
        Box::new(view(speculative)),
        Box::new(view(None)),
    );
    let (outcome, _) = session.call(module, &mut ctx, &Call::new(&t.entry, &[]))?;
    if outcome.trap.is_some() {
        // A failed call returns nothing and its effects are discarded.
        ctx.return_data.clear();
        ctx.events.clear();
        ctx.writes.clear();
        ctx.new_blobs.clear();
    }
    Ok(Effects {
        receipt: Receipt {
            gas_used: outcome.gas_used,
            trap: outcome.trap.map(|t| t.to_string()),
            return_data: std::mem::take(&mut ctx.return_data),
            events: std::mem::take(&mut ctx.events),
        },
        writes: std::mem::take(&mut ctx.writes),
        blobs: ctx.new_blobs.drain(..).map(|b| (b.id, b.bytes)).collect(),
    })
}

/// Executes `txs` against `state` in `mode`; returns one receipt per transaction. The state
/// and receipts are those of sequential execution in block order, whatever the mode. A
/// transaction whose access set is over its bounds is not run: its receipt says why
/// ([`AccessSetError`](synor_core::sched::AccessSetError)), with no gas used; so is one
/// calling an address with no contract or an entry its contract does not export.
///
/// # Errors
/// An engine failed (a fault of the node, never of the block: see
/// [`EngineError`]); the state is then partly updated and must be discarded. A block of 2^32 transactions or more is refused
/// before anything runs.
pub fn execute_block(
    blocks: &BlockExecutor,
    exec: &TieredExecutor,
    contracts: &dyn Contracts,
    state: &Arc<BlockState>,
    txs: &Arc<[Transaction]>,
    mode: Mode,
) -> Result<Execution, EngineError> {
    if u32::try_from(txs.len()).is_err() {
        return Err(EngineError::Engine(format!(
            "a block of {} transactions: at most 2^32 - 1",
            txs.len()
        )));
    }
    let blobs: Mutex<Vec<(usize, NewBlobs)>> = Mutex::new(Vec::new());
    let receipts: Vec<ReceiptSlot> = (0..txs.len()).map(|_| ReceiptSlot::default()).collect();
    let keep = |tx: usize, receipt: Result<Receipt, EngineError>, new: NewBlobs| {
        let _ = receipts[tx].0.set(receipt);
        if !new.is_empty() {
            blobs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((tx, new));
        }
    };
    let threads = mode.threads();
    // Every access set checked and indexed once, before anything is scheduled.
    let declared: Arc<[Declared]> = txs
        .iter()
        .map(|t| Declared::of(t.access.as_ref()))
        .collect();
    let shared = |window: Option<Arc<Window>>| -> Vec<Arc<Shared>> {
        (0..threads)
            .map(|_| {
                Arc::new(Shared {
                    state: state.clone(),
                    txs: txs.clone(),
                    declared: declared.clone(),
                    window: window.clone(),
                })
            })
            .collect()
    };
    let direct = shared(None);
    let sessions: Vec<WorkerSession<'_>> = (0..threads)
        .map(|_| WorkerSession(Mutex::new(exec.session())))
        .collect();
    // Executes `tx` and applies its writes at once (sequential and declared modes).
    let apply = |worker: usize, tx: u32| {
        let tx = tx as usize;
        let effects = execute_one(
            &mut sessions[worker].get(),
            contracts,
            &direct[worker],
            tx,
            None,
        );
        match effects {
            Ok(e) => {
                for (k, v) in e.writes {
                    state.put(k, v);
                }
                keep(tx, Ok(e.receipt), e.blobs);
            }
            Err(e) => keep(tx, Err(e), Vec::new()),
        }
    };
    // Every transaction runs once, plus the optimistic windows' re-executions.
    let (mut executions, mut validations) = (txs.len(), 0);
    match mode {
        Mode::Sequential => (0..txs.len() as u32).for_each(|tx| apply(0, tx)),
        Mode::Declared { .. } => {
            // A refused transaction touches nothing.
            let nothing = AccessSet::default();
            let sets = declared.iter().zip(txs.iter()).map(|(d, t)| match d {
                Declared::Nothing => None,
                Declared::Keys(_) => t.access.as_ref(),
                Declared::Refused(_) => Some(&nothing),
            });
            let build = || Dag::build_partial(sets.clone());
            pool::run_building(&blocks.workers, txs.len(), threads, &build, &apply);
        }
        Mode::Optimistic { .. } => {
            let mut sequential =
                |range: std::ops::Range<usize>| range.for_each(|tx| apply(0, tx as u32));
            let mut optimistic = |range: std::ops::Range<usize>, threads: usize| -> usize {
                // The spare whose last block was nearest this one's size: a window empties
                // what the last block left as it goes, so the one-thread probe must not take
                // the window of a whole block.
                let mut window = {
                    let mut spare = blocks.spare.lock().unwrap_or_else(|e| e.into_inner());
                    let nearest =
                        (0..spare.len()).min_by_key(|i| spare[*i].len().abs_diff(range.len()));
                    nearest.map_or_else(|| Window::new(0), |i| spare.swap_remove(i))
                };
                window.reset(range.len());
                // The one-thread probe measures the block's parallelism; other windows let
                // executions that begin with every earlier transaction committed read the
                // state directly and commit at once.
                window.measure_depth(threads == 1);
                let window = Arc::new(window);
                let views = shared(Some(window.clone()));
                let execute = |worker: usize, v: Version| -> Executed<_, _, _> {
                    let reads = Rc::new(RefCell::new(window.reads(v.tx)));
                    let tx = range.start + v.tx as usize;
                    let effects = execute_one(
                        &mut sessions[worker].get(),
                        contracts,
                        &views[worker],
                        tx,
                        Some(&reads),
                    );
                    let reads = Rc::into_inner(reads)
                        .expect("the call's views are dropped")
                        .into_inner();
                    let (writes, output) = match effects {
                        Ok(e) => {
                            let writes = e.writes.into_iter();
                            let writes = writes.map(|(k, v)| (WindowKey::from_slice(&k), v));
                            (writes.collect(), (Ok(e.receipt), e.blobs))
                        }
                        Err(e) => (Vec::new(), (Err(e), Vec::new())),
                    };
                    Executed {
                        reads,
                        writes,
                        output,
                    }
                };
                // A worker committing a transaction applies its writes to the block state (on
                // the thread that made them) and keeps its receipt.
                let write = |_: usize, key: &WindowKey, value| state.put(key.as_slice(), value);
                let output = |_: usize, tx: u32, (receipt, new)| {
                    keep(range.start + tx as usize, receipt, new)
                };
                pool::drain_optimistic(
                    &blocks.workers,
                    &window,
                    threads,
                    &execute,
                    &write,
                    &output,
                );
                drop(views);
                let mut window = Arc::into_inner(window).expect("the workers are joined");
                let done = window.finish();
                let mut spare = blocks.spare.lock().unwrap_or_else(|e| e.into_inner());
                if spare.len() < MAX_SPARE_WINDOWS {
                    spare.push(window);
                }
                drop(spare);
                executions += done.executions - range.len();
                validations += done.validations;
                // Unmeasured, only a parallel window: its critical path is not asked for.
                done.critical_path.unwrap_or(range.len())
            };
            pool::windows(txs.len(), threads, &mut sequential, &mut optimistic);
        }
    }
    // Blobs of the block, in block order, readable from the next block on.
    let mut stored = blobs.into_inner().unwrap_or_else(|e| e.into_inner());
    stored.sort_by_key(|(tx, _)| *tx);
    let mut all = state.blobs.write().unwrap_or_else(|e| e.into_inner());
    for (id, bytes) in stored.into_iter().flat_map(|(_, b)| b) {
        all.entry(id).or_insert(bytes);
    }
    let receipts = receipts
        .into_iter()
        .map(|r| {
            r.0.into_inner()
                .unwrap_or_else(|| Err(EngineError::Engine("transaction not run".into())))
        })
        .collect::<Result<_, _>>()?;
    Ok(Execution {
        receipts,
        executions,
        validations,
    })
}

/// The same transactions declaring nothing (for optimistic execution).
pub fn undeclared(txs: &[Transaction]) -> Arc<[Transaction]> {
    txs.iter()
        .map(|t| Transaction {
            access: None,
            ..t.clone()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{BlockState, SHARDS};
    use synor_core::digest::CodeId;

    /// A token balance key: the contract's namespace, a tag and an account whose id is
    /// mostly zeros, as the benchmark's are.
    fn balance_key(token: &CodeId, n: u64) -> Vec<u8> {
        let mut k = token.as_bytes().to_vec();
        k.extend_from_slice(b"bal:");
        let mut account = [0u8; 32];
        account[..8].copy_from_slice(&n.to_le_bytes());
        account[31] = 0xac;
        k.extend_from_slice(&account);
        k
    }

    /// Balance keys share their contract's prefix and, for the benchmark's accounts, end in
    /// zeros: they must still spread over the shards (when the shard came from the key's last
    /// 16 bytes, every benchmark balance was in one shard, behind one lock).
    #[test]
    fn keys_that_differ_in_few_bytes_spread_over_the_shards() {
        let state = BlockState::default();
        let token = CodeId::of(b"token");
        let mut used = vec![0u32; SHARDS];
        for n in 0..SHARDS as u64 * 16 {
            used[state.shard_of(&balance_key(&token, n))] += 1;
        }
        let busiest = used.iter().max().copied().unwrap_or(0);
        let empty = used.iter().filter(|u| **u == 0).count();
        assert!(
            busiest <= 48 && empty == 0,
            "{busiest} of {} keys in one shard, {empty} shards empty",
            SHARDS * 16
        );
    }

    #[test]
    fn writes_replace_values_of_any_length_and_removals_remove() {
        let state = BlockState::new([(b"a".to_vec(), vec![1; 16]), (b"b".to_vec(), vec![2; 4])]);
        // Same length, shorter, longer (beyond the held capacity), empty.
        state.put(b"a".to_vec(), Some(vec![3; 16]));
        assert_eq!(state.get(b"a"), Some(vec![3; 16]));
        state.put(b"a".to_vec(), Some(vec![4; 9]));
        assert_eq!(state.get(b"a"), Some(vec![4; 9]));
        state.put(b"a".to_vec(), Some(vec![5; 40]));
        assert_eq!(state.get(b"a"), Some(vec![5; 40]));
        state.put(b"a".to_vec(), Some(Vec::new()));
        assert_eq!(state.get(b"a"), Some(Vec::new()));
        // A held value much larger than the new one is not kept around.
        state.put(b"b".to_vec(), Some(vec![6; 4096]));
        state.put(b"b".to_vec(), Some(vec![7; 2]));
        assert_eq!(state.get(b"b"), Some(vec![7; 2]));
        let held = state.with(b"b", |v| v.map_or(0, |v| v.capacity()));
        assert!(held < 4096, "a 2-byte value holds {held} bytes");
        // Removal, and a new key.
        state.put(b"b".to_vec(), None);
        assert_eq!(state.get(b"b"), None);
        state.put(b"c".to_vec(), Some(vec![8]));
        assert_eq!(state.get(b"c"), Some(vec![8]));
        // Many writes at once: the last write of a key wins.
        state.put_many([
            (b"c".to_vec(), Some(vec![9])),
            (b"d".to_vec(), Some(vec![10])),
            (b"c".to_vec(), None),
            (b"d".to_vec(), Some(vec![11, 12])),
        ]);
        assert_eq!(state.get(b"c"), None);
        assert_eq!(state.get(b"d"), Some(vec![11, 12]));
        let all = state.snapshot();
        assert_eq!(all.keys().collect::<Vec<_>>(), [b"a", b"d"]);
    }
}
