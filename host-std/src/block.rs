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
use std::ops::Bound;
use std::rc::Rc;

use core::hash::BuildHasher;

use hashbrown::HashMap;
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use smallvec::SmallVec;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};

use synor_core::abi::{Blobs, CallContext, Calls, NewBlob, State, SubCall, Trap};
pub use synor_core::block::{Address, Contracts, Declared, Mode, Receipt, Transaction};
use synor_core::cosmwasm::tx::{self as cw_tx, Chain as CwHostChain, CwChain};
use synor_core::cosmwasm::{CwContext, Entry as CwEntry};
use synor_core::digest::{CodeId, Digest};
use synor_core::instrument::Instrumented;
use synor_core::sched::optimistic::{
    Executed, Optimistic, Origin, Read, ReadSet, Version, Version as OptimisticVersion,
};
use synor_core::sched::{AccessSet, Dag};
use synor_core::state::{self, KeyValue, Range, merge_next};
use synor_core::tier::CwOutcome;
use synor_core::tier::{Call, EngineError};

use crate::pool;
use crate::tiered::{Session, TieredExecutor};

/// What executing a block did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    /// One receipt per transaction.
    pub receipts: Vec<Receipt>,
    /// Transactions whose result computed before the block stood ([`PreExecuted`]).
    pub reused: usize,
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

/// The transaction execution that wrote a value in the block: its index in the block and its
/// incarnation (executions before it). With the block's height, the value's [`Version`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Writer {
    /// Index in the block.
    pub tx: u32,
    /// Executions of the transaction before this one.
    pub incarnation: u32,
}

impl Writer {
    /// The version of a value this execution wrote in block `block`.
    pub fn version(self, block: u64) -> state::Version {
        state::Version {
            block,
            tx: self.tx,
            incarnation: self.incarnation,
        }
    }

    /// The first execution (incarnation 0) of the transaction at `tx` in the block: the one a
    /// pre-executed result stands for.
    pub fn first(tx: usize) -> Self {
        Writer {
            tx: tx as u32,
            incarnation: 0,
        }
    }

    /// Values a state was built with ([`BlockState::new`]), before any transaction.
    pub const GENESIS: Writer = Writer {
        tx: u32::MAX,
        incarnation: 0,
    };
}

/// A value held in the block state: the value (`None`: the block removed the key) and the
/// execution that wrote it.
#[derive(Debug)]
struct Slot {
    value: Option<StateValue>,
    writer: Writer,
}

/// A write to a block state: the key, its value (`None`: removed) and who wrote it.
type Write = (Vec<u8>, Option<Vec<u8>>, Writer);

/// What a step of a range scan found: the key, its value, and the execution of the block that
/// wrote it (`None`: the base's).
pub type Found = (Vec<u8>, Vec<u8>, Option<Writer>);

/// Parts of a block state's ordered index of keys.
const ORDERED: usize = 16;

/// A value on cache lines of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// One shard of the block state, on cache lines of its own (two shards' locks on one line
/// made independent transactions on different cores invalidate each other's line): keys and
/// values, probed with the hash that also chose the shard (a key is hashed once per access).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(RwLock<HashTable<(StateKey, Slot)>>);

/// The committed state below a block: what a key the block has not written holds. A node's
/// is its database (through its hot-state cache); a block state built from values alone has
/// none.
///
/// Reads are not allowed to fail as a contract sees it: a failure is a fault of the node. It
/// ends the call with a [`Trap::Host`] and is kept in the [`BlockState`] (see
/// [`BlockState::fault`]), so that the node discards the block instead of committing it.
pub trait Base: Send + Sync {
    /// The committed value of `key`.
    ///
    /// # Errors
    /// The backend failed (the message says how).
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String>;

    /// The committed value of `key` with the version that wrote it: what a transaction
    /// executed before its block ([`pre_execute`]) read, checked again when the block comes.
    ///
    /// # Errors
    /// As [`Base::get`].
    fn get_versioned(&self, key: &[u8]) -> Result<Option<(Vec<u8>, state::Version)>, String>;

    /// The version of `key`'s committed value (`None`: there is none).
    ///
    /// # Errors
    /// As [`Base::get`].
    fn version(&self, key: &[u8]) -> Result<Option<state::Version>, String> {
        Ok(self.get_versioned(key)?.map(|(_, v)| v))
    }

    /// The first committed key of `range` after `after` (from the range's start when `None`),
    /// in the range's direction, and its value.
    ///
    /// # Errors
    /// As [`Base::get`].
    fn next(&self, range: &Range, after: Option<&[u8]>) -> Result<Option<KeyValue>, String>;

    /// Blob `id`, stored by an earlier block.
    ///
    /// # Errors
    /// As [`Base::get`].
    fn blob(&self, id: &CodeId) -> Result<Option<Arc<[u8]>>, String>;
}

/// Key/value state shared by a block's transactions: the block's writes over the committed
/// state ([`Base`]), and the blobs of earlier blocks.
pub struct BlockState {
    shards: Vec<Shard>,
    /// Hashes keys, for their shard and within it.
    hasher: hashbrown::DefaultHashBuilder,
    /// Every key held, in order, in [`ORDERED`] parts chosen by the key's hash: what a range
    /// scan merges with the base's keys. Parts rather than one set: workers adding keys
    /// would all wait on one lock, where a scan (rare) asks every part. Built at the block's
    /// first scan ([`BlockState::index`]), and kept from then on: a block that scans nothing
    /// pays nothing for it.
    ordered: Vec<Padded<Mutex<BTreeMap<StateKey, ()>>>>,
    /// Keys new to the block go to `ordered` too (set when its building starts).
    indexing: AtomicBool,
    /// `ordered` holds every key (set when its building ends); scans may use it.
    indexed: AtomicBool,
    /// Held while `ordered` is built.
    building: Mutex<()>,
    base: Option<Arc<dyn Base>>,
    blobs: RwLock<HashMap<CodeId, Arc<[u8]>>>,
    /// The blobs of `blobs`, in the order blocks stored them.
    stored: Mutex<Vec<NewBlob>>,
    /// The first failure of the base, if any (a fault of the node: the block is void).
    fault: Mutex<Option<String>>,
}

impl std::fmt::Debug for BlockState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockState")
            .field("base", &self.base.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for BlockState {
    fn default() -> Self {
        Self::new([])
    }
}

impl BlockState {
    /// State holding `values`, with nothing below them.
    pub fn new(values: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Self {
        let state = Self::empty(None);
        state.put_many(
            values
                .into_iter()
                .map(|(k, v)| (k, Some(v), Writer::GENESIS)),
        );
        state
    }

    /// An empty block over the committed state `base`.
    pub fn over(base: Arc<dyn Base>) -> Self {
        Self::empty(Some(base))
    }

    /// Empties the state for a new block over `base`, keeping its allocations (a block's
    /// state grows to every key it touches, and growing it again block after block cost a
    /// tenth of the block).
    pub fn reset(&mut self, base: Arc<dyn Base>) {
        for shard in &mut self.shards {
            shard.0.get_mut().unwrap_or_else(|e| e.into_inner()).clear();
        }
        for part in &mut self.ordered {
            part.0.get_mut().unwrap_or_else(|e| e.into_inner()).clear();
        }
        *self.indexing.get_mut() = false;
        *self.indexed.get_mut() = false;
        self.base = Some(base);
        self.blobs
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.stored
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        *self.fault.get_mut().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Drops the base (and whatever snapshot of the committed state it holds), keeping the
    /// allocations for [`BlockState::reset`].
    pub fn detach(&mut self) {
        self.base = None;
    }

    /// Builds the ordered index of the block's keys, if not built yet. Keys that writers add
    /// meanwhile are indexed by them: a writer looks at `indexing` under its shard's lock,
    /// which the builder takes after setting it, so every key is either already in its shard
    /// when the builder copies the shard, or indexed by its writer.
    fn index(&self) {
        if self.indexed.load(Ordering::Acquire) {
            return;
        }
        let _building = self.building.lock().unwrap_or_else(|e| e.into_inner());
        if self.indexed.load(Ordering::Acquire) {
            return;
        }
        self.indexing.store(true, Ordering::SeqCst);
        for shard in &self.shards {
            let shard = shard.0.read().unwrap_or_else(|e| e.into_inner());
            for (key, _) in shard.iter() {
                let (hash, _) = self.locate(key);
                self.part(hash).insert(key.clone(), ());
            }
        }
        self.indexed.store(true, Ordering::Release);
    }

    /// The part of the ordered index holding keys whose hash is `hash`.
    fn part(&self, hash: u64) -> MutexGuard<'_, BTreeMap<StateKey, ()>> {
        self.ordered[(hash >> 16) as usize % ORDERED]
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn empty(base: Option<Arc<dyn Base>>) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            hasher: Default::default(),
            ordered: (0..ORDERED).map(|_| Padded::default()).collect(),
            indexing: AtomicBool::new(false),
            indexed: AtomicBool::new(false),
            building: Mutex::new(()),
            base,
            blobs: RwLock::default(),
            stored: Mutex::default(),
            fault: Mutex::default(),
        }
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
    fn put<K: Borrow<[u8]>>(&self, key: K, value: Option<Vec<u8>>, writer: Writer) {
        let (hash, index) = self.locate(key.borrow());
        let mut shard = self.shards[index]
            .0
            .write()
            .unwrap_or_else(|e| e.into_inner());
        self.apply(&mut shard, hash, key.borrow(), value, writer);
    }

    /// Applies one write of `key`, whose hash is `hash`. A new value of a key already held is
    /// copied into the held value's place when it fits (a value beyond [`StateValue`]'s inline
    /// room, into its allocation, without holding more than twice what it needs): a held
    /// allocation was usually made by another worker, and freeing it here would hand it back
    /// to that worker's heap, a contended free per write; the written value, freed instead,
    /// was allocated by this thread. A removal is kept as a removal (the base may hold the
    /// key).
    fn apply(
        &self,
        shard: &mut HashTable<(StateKey, Slot)>,
        hash: u64,
        key: &[u8],
        value: Option<Vec<u8>>,
        writer: Writer,
    ) {
        let eq = |(k, _): &(StateKey, Slot)| k.as_slice() == key;
        match shard.entry(hash, eq, |(k, _)| self.hasher.hash_one(k.as_slice())) {
            Entry::Occupied(mut held) => {
                let slot = &mut held.get_mut().1;
                slot.writer = writer;
                match (value, &mut slot.value) {
                    (None, held) => *held = None,
                    (Some(v), Some(held))
                        if v.len() <= held.capacity()
                            && (!held.spilled() || held.capacity() <= 2 * v.len()) =>
                    {
                        held.clear();
                        held.extend_from_slice(&v);
                    }
                    (Some(v), held) => *held = Some(StateValue::from_vec(v)),
                }
            }
            Entry::Vacant(e) => {
                let key = StateKey::from_slice(key);
                if self.indexing.load(Ordering::SeqCst) {
                    self.part(hash).insert(key.clone(), ());
                }
                e.insert((
                    key,
                    Slot {
                        value: value.map(StateValue::from_vec),
                        writer,
                    },
                ));
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
        while let Some(((hash, index), (key, value, writer))) = writes.next() {
            let mut shard = self.shards[index]
                .0
                .write()
                .unwrap_or_else(|e| e.into_inner());
            self.apply(&mut shard, hash, &key, value, writer);
            while let Some(((hash, _), (key, value, writer))) =
                writes.next_if(|((_, i), _)| *i == index)
            {
                self.apply(&mut shard, hash, &key, value, writer);
            }
        }
    }

    /// The slot of `key` the block holds, passed to `f` under its shard's lock.
    fn with<R>(&self, key: &[u8], f: impl FnOnce(Option<&Slot>) -> R) -> R {
        let (hash, index) = self.locate(key);
        let shard = self.shards[index]
            .0
            .read()
            .unwrap_or_else(|e| e.into_inner());
        f(shard
            .find(hash, |(k, _)| k.as_slice() == key)
            .map(|(_, v)| v))
    }

    /// Keeps the first fault of the base; the error a call gets for it.
    fn failed(&self, why: String) -> Trap {
        let mut fault = self.fault.lock().unwrap_or_else(|e| e.into_inner());
        fault.get_or_insert_with(|| why.clone());
        Trap::Host(format!("the node failed to read its state: {why}"))
    }

    /// The first failure of the base met while executing the block, if any: a fault of the
    /// node, after which the block's receipts and writes must be discarded.
    pub fn fault(&self) -> Option<String> {
        self.fault.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The value of `key`: the block's write, else the base's.
    ///
    /// # Errors
    /// The base failed (see [`BlockState::fault`]).
    pub fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Trap> {
        match self.with(key, |s| s.map(|s| s.value.as_ref().map(|v| v.to_vec()))) {
            Some(held) => Ok(held),
            None => match &self.base {
                None => Ok(None),
                Some(base) => base.get(key).map_err(|e| self.failed(e)),
            },
        }
    }

    /// The value of `key` (`None` also when the base failed; see [`BlockState::fault`]).
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.read(key).ok().flatten()
    }

    /// Whether a transaction of the blocks executed on this state wrote or removed `key`.
    pub fn written(&self, key: &[u8]) -> bool {
        self.with(key, |s| s.is_some())
    }

    /// The execution that last wrote or removed `key` on this state, if one did.
    pub fn writer_of(&self, key: &[u8]) -> Option<Writer> {
        self.with(key, |s| s.map(|s| s.writer))
    }

    /// A state over the same base, with none of this one's writes or blobs.
    pub fn fork(&self) -> Self {
        Self::empty(self.base.clone())
    }

    /// The value of `key` as a pre-execution records it: written on this state (by the
    /// execution `Err(writer)`), or committed (`Ok(version)`, `None`: absent).
    #[allow(clippy::type_complexity)]
    fn read_recorded(
        &self,
        key: &[u8],
    ) -> Result<(Option<Vec<u8>>, Result<Option<state::Version>, Writer>), Trap> {
        let held = self.with(key, |s| {
            s.map(|s| (s.value.as_ref().map(|v| v.to_vec()), s.writer))
        });
        if let Some((value, writer)) = held {
            return Ok((value, Err(writer)));
        }
        let Some(base) = &self.base else {
            return Ok((None, Ok(None)));
        };
        let found = base.get_versioned(key).map_err(|e| self.failed(e))?;
        let version = found.as_ref().map(|(_, v)| *v);
        Ok((found.map(|(v, _)| v), Ok(version)))
    }

    /// Whether `key` still has the committed version `version` (`None`: absent).
    ///
    /// # Errors
    /// The base failed.
    pub fn committed_version_is(
        &self,
        key: &[u8],
        version: Option<state::Version>,
    ) -> Result<bool, String> {
        match &self.base {
            Some(base) => Ok(base.version(key)? == version),
            None => Ok(version.is_none()),
        }
    }

    /// The first key of `range` after `after` (from its start when `None`), in its direction,
    /// with its value, and the execution of this block that wrote it (`None`: the base's):
    /// the block's writes merged with the base's keys, removals hiding them.
    ///
    /// # Errors
    /// The base failed (see [`BlockState::fault`]).
    pub fn next(&self, range: &Range, after: Option<&[u8]>) -> Result<Option<Found>, Trap> {
        self.index();
        // The block's first key after `after` (a removal: `None`) over the base's.
        let own = |after: Option<&[u8]>| {
            let held = (self.ordered.iter())
                .filter_map(|part| {
                    let part = part.0.lock().unwrap_or_else(|e| e.into_inner());
                    range.first_in(&part, after).map(|(k, ())| k.to_vec())
                })
                .reduce(|a, b| if range.precedes(&b, &a) { b } else { a });
            Ok(held.map(|key| {
                let slot = self.with(&key, |s| {
                    s.and_then(|s| Some((s.value.as_ref()?.to_vec(), Some(s.writer))))
                });
                (key, slot)
            }))
        };
        let below = |after: Option<&[u8]>| match &self.base {
            None => Ok(None),
            Some(base) => Ok(base
                .next(range, after)
                .map_err(|e| self.failed(e))?
                .map(|(k, v)| (k, (v, None)))),
        };
        let found = merge_next(range, after, own, below)?;
        Ok(found.map(|(k, (v, writer))| (k, v, writer)))
    }

    /// Every key and value the block holds, ordered (with no base: the whole state).
    pub fn snapshot(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.collect(|s| Some(s.value.as_ref()?.to_vec()))
    }

    /// The block's writes, ordered: each key's last value (`None`: removed) and the execution
    /// that wrote it.
    pub fn diff(&self) -> BTreeMap<Vec<u8>, (Option<Vec<u8>>, Writer)> {
        self.collect(|s| Some((s.value.as_ref().map(|v| v.to_vec()), s.writer)))
    }

    /// What `f` makes of each slot the block holds, by key (a slot it makes nothing of is
    /// left out).
    /// Half of the shards on a second thread, then one sort and a bulk build of the map: a
    /// block's diff is built while the next block waits for it, and inserting its keys one by
    /// one into the map cost twice as much.
    fn collect<T: Send>(&self, f: impl Fn(&Slot) -> Option<T> + Sync) -> BTreeMap<Vec<u8>, T> {
        let part = |shards: &[Shard]| {
            let mut part = Vec::new();
            for shard in shards {
                let shard = shard.0.read().unwrap_or_else(|e| e.into_inner());
                part.extend(shard.iter().filter_map(|(k, s)| Some((k.to_vec(), f(s)?))));
            }
            part
        };
        let (first, second) = self.shards.split_at(self.shards.len() / 2);
        let mut all = std::thread::scope(|s| {
            let other = s.spawn(|| part(second));
            let mut all = part(first);
            all.extend(pool::joined(other));
            all
        });
        // Keys are unique across shards.
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        all.into_iter().collect()
    }

    /// Digest of every key and value the block holds, in key order (with no base: of the whole
    /// state).
    pub fn digest(&self) -> Digest {
        synor_core::block::state_digest(self.snapshot().iter())
    }

    /// The blobs stored by the blocks executed on this state, each once, in block order (with
    /// the blob each updates, if any).
    pub fn new_blobs(&self) -> Vec<NewBlob> {
        self.stored
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Blob `id`: stored by an earlier block executed on this state, else the base's.
    fn blob(&self, id: &CodeId) -> Result<Option<Arc<[u8]>>, String> {
        let held = self
            .blobs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned();
        match (held, &self.base) {
            (Some(b), _) => Ok(Some(b)),
            (None, None) => Ok(None),
            (None, Some(base)) => base.blob(id).inspect_err(|e| {
                self.failed(e.clone());
            }),
        }
    }
}

/// Blobs a transaction stored.
type NewBlobs = Vec<NewBlob>;

/// A window of an optimistic block: keys, and values (`None`: removed) with the execution
/// that wrote them.
type Window = Optimistic<WindowKey, (Option<Vec<u8>>, Writer)>;

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
/// once, up to four). One per node or benchmark: two share nothing.
#[derive(Default)]
pub struct BlockExecutor {
    workers: pool::Workers,
    spare: Mutex<Vec<Window>>,
    /// The chain CosmWasm contracts see.
    cosmwasm: Arc<CwChain>,
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

    /// An executor whose CosmWasm contracts see `chain` (chain id, address prefix, block
    /// times, gas).
    pub fn with_cosmwasm(chain: CwChain) -> Self {
        Self {
            cosmwasm: Arc::new(chain),
            ..Self::default()
        }
    }

    /// The worker threads.
    pub fn workers(&self) -> &pool::Workers {
        &self.workers
    }

    /// The chain CosmWasm contracts see.
    pub fn cosmwasm(&self) -> &CwChain {
        &self.cosmwasm
    }
}

/// The reads of one optimistic execution, shared by its view and the worker that returns them.
type SpeculativeReads = Rc<RefCell<ReadSet>>;

/// What a worker's views share. One per worker, on cache lines of its own, so that the
/// reference counts views touch are the worker's own, not a cache line bouncing between cores.
#[repr(align(128))]
struct Shared {
    state: Arc<BlockState>,
    /// The block's height.
    height: u64,
    /// The block position of `txs[0]` (a pre-execution's guess; 0 in a block).
    first: u32,
    txs: Arc<[Transaction]>,
    /// Per transaction, its access set as scheduling found it.
    declared: Arc<[Declared]>,
    /// The optimistic window being executed.
    window: Option<Arc<Window>>,
    /// Runs the contract-to-contract calls of this worker's transactions.
    calls: Arc<Nested>,
}

/// Contract-to-contract calls of a block's transactions: on the block's executor, in the
/// caller's state and effects (which the callee's context carries).
struct Nested {
    exec: Arc<TieredExecutor>,
    contracts: Arc<dyn Contracts>,
    state: Arc<BlockState>,
    /// The chain CosmWasm contracts see.
    cosmwasm: Arc<CwChain>,
    /// A call found no contract at its address since this was last cleared (a pre-executed
    /// result that did cannot stand: the contract may exist when its block comes).
    missed: AtomicBool,
}

impl Calls for Nested {
    fn call(&self, ctx: &mut CallContext, entry: &str) -> Result<SubCall, Trap> {
        let failed = SubCall {
            gas_used: 0,
            failed: true,
        };
        // A contract of the block's state, else one this transaction instantiated.
        let created = || {
            let new = ctx
                .new_contracts
                .iter()
                .find(|c| c.address == ctx.contract)?;
            self.contracts.code(&new.code)
        };
        let module = match self.contracts.module(&ctx.contract) {
            Some(m) => m.clone(),
            None => match created() {
                Some(m) => m,
                None => {
                    self.missed.store(true, Ordering::Relaxed);
                    return Ok(failed);
                }
            },
        };
        let module = &module;
        if !callable(module, entry) {
            return Ok(failed);
        }
        match self
            .exec
            .session()
            .call(module, ctx, &Call::new(entry, &[]))
        {
            Ok((outcome, _)) => Ok(SubCall {
                gas_used: outcome.gas_used,
                failed: outcome.trap.is_some(),
            }),
            // A fault of the node: the block is void.
            Err(e) => Err(self.state.failed(format!("engine: {e}"))),
        }
    }

    fn has_code(&self, code: &CodeId) -> bool {
        self.contracts.code(code).is_some()
    }
}

/// Whether `entry` is an export of `module` a transaction or a contract may call: one that
/// takes no parameters (contracts read their input), of a contract of synor's ABI (a
/// CosmWasm contract is called through its entry points, with messages).
fn callable(module: &Instrumented, entry: &str) -> bool {
    module.cosmwasm.is_none() && module.export(entry).is_some_and(|e| e.params.is_empty())
}

/// One step of a range scan by an optimistic execution, kept to be validated: where it
/// started, and the key it found with the execution of this block that wrote it (`None`: the
/// committed state's).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ScanStep {
    range: Range,
    after: Option<Vec<u8>>,
    found: Option<(Vec<u8>, Option<Writer>)>,
}

impl ScanStep {
    /// Whether the step finds the same key, written by the same execution, in `state` now.
    fn holds(&self, state: &BlockState) -> bool {
        match state.next(&self.range, self.after.as_deref()) {
            Ok(found) => found.map(|(k, _, w)| (k, w)) == self.found,
            // A failure of the base voids the block anyway.
            Err(_) => true,
        }
    }
}

/// The scan steps of one optimistic execution, shared by its view and its worker.
type Scans = Rc<RefCell<Vec<ScanStep>>>;

/// A transaction's view: the block state, through its access set, and for an optimistic
/// execution through the window's multi-version memory.
struct View {
    shared: Arc<Shared>,
    tx: usize,
    speculative: Option<SpeculativeReads>,
    /// An optimistic execution's scan steps.
    scans: Option<Scans>,
    /// A pre-execution's reads, with their committed versions.
    recording: Option<Recording>,
}

/// What a pre-execution read: every key, and every key a scan found, with the committed
/// version it had (`None`: absent); and whether it touched what versions cannot vouch for
/// (a missing blob, which a later block may store).
#[derive(Default)]
struct Recorded {
    reads: Vec<(Vec<u8>, Option<state::Version>)>,
    /// Keys read from the transactions it was pre-executed on top of: the key, and which of
    /// them wrote it.
    chained: Vec<(Vec<u8>, u32)>,
    unrepeatable: bool,
}

/// A pre-execution's record, shared by its views and the function that keeps it.
type Recording = Rc<RefCell<Recorded>>;

impl View {
    fn check(&self, key: &[u8], write: bool) -> Result<(), Trap> {
        self.shared.declared[self.tx].check(self.shared.txs[self.tx].access.as_ref(), key, write)
    }
}

impl State for View {
    fn read(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, Trap> {
        self.check(key, false)?;
        if let Some(recording) = &self.recording {
            let (value, source) = self.shared.state.read_recorded(key)?;
            let mut recorded = recording.borrow_mut();
            match source {
                Ok(version) => recorded.reads.push((key.to_vec(), version)),
                Err(writer) => recorded.chained.push((key.to_vec(), writer.tx)),
            }
            return Ok(value);
        }
        let (Some(reads), Some(window)) = (&self.speculative, &self.shared.window) else {
            return self.shared.state.read(key);
        };
        // A failure of the base reads as nothing here, and voids the block.
        let base = || (self.shared.state.get(key), Writer::GENESIS);
        match window.read(&mut reads.borrow_mut(), key, base) {
            Read::Value((v, _)) => Ok(v),
            // The execution is void: the worker sees the blocked read set and drops it.
            Read::Blocked => Err(Trap::Host(
                "read a value an earlier transaction is re-executing".into(),
            )),
        }
    }

    fn check_write(&mut self, key: &[u8]) -> Result<(), Trap> {
        self.check(key, true)
    }

    fn next(&mut self, range: &Range, after: Option<&[u8]>) -> Result<Option<KeyValue>, Trap> {
        let start = match &range.start {
            Bound::Included(k) | Bound::Excluded(k) => k.as_slice(),
            Bound::Unbounded => &[],
        };
        self.shared.declared[self.tx].check_scan(start)?;
        // Scans read the block's committed writes, not the window's: an optimistic execution
        // keeps each step, and runs again if a step finds something else at its validation.
        let found = self.shared.state.next(range, after)?;
        if let (Some(recording), Some((key, value, writer))) = (&self.recording, &found) {
            // The found key's version, read apart from the scan: the value must agree, or a
            // commit came between them and the record could vouch for a value not seen. A key
            // that an earlier pending transaction wrote is not vouched for by a scan step.
            let (now, source) = self.shared.state.read_recorded(key)?;
            let mut recorded = recording.borrow_mut();
            match source {
                Ok(version) if writer.is_none() && now.as_ref() == Some(value) => {
                    recorded.reads.push((key.clone(), version));
                }
                _ => recorded.unrepeatable = true,
            }
        }
        if let Some(scans) = &self.scans {
            scans.borrow_mut().push(ScanStep {
                range: range.clone(),
                after: after.map(<[u8]>::to_vec),
                found: found.as_ref().map(|(k, _, w)| (k.clone(), *w)),
            });
        }
        Ok(found.map(|(k, v, _)| (k, v)))
    }
}

impl Blobs for View {
    fn blob(&mut self, id: &CodeId) -> Result<Option<Arc<[u8]>>, String> {
        let blob = self.shared.state.blob(id)?;
        if let (Some(recording), None) = (&self.recording, &blob) {
            recording.borrow_mut().unrepeatable = true;
        }
        Ok(blob)
    }
}

/// What one execution of a transaction did: its receipt, and unless it failed its writes
/// and blobs (not yet applied).
struct Effects {
    receipt: Receipt,
    /// The call's writes, each key once, in key order (as the ABI journals them).
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    blobs: NewBlobs,
    /// An optimistic execution's scan steps.
    scans: Vec<ScanStep>,
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
    recording: Option<&Recording>,
) -> Result<Effects, EngineError> {
    let t = &shared.txs[tx];
    let refused = |why: String| Effects {
        receipt: Receipt::refused(why),
        writes: BTreeMap::new(),
        blobs: Vec::new(),
        scans: Vec::new(),
    };
    if let Declared::Refused(e) = &shared.declared[tx] {
        return Ok(refused(e.to_string()));
    }
    let module = contracts.module(&t.contract);
    if is_cosmwasm(contracts, t, module) {
        return execute_cosmwasm(session, shared, tx, speculative, recording);
    }
    let Some(module) = module else {
        return Ok(refused(format!(
            "no_contract: no contract at {}",
            t.contract
        )));
    };
    if !callable(module, &t.entry) {
        return Ok(refused(format!(
            "no_entry: the contract at {} exports no function {:?} without parameters",
            t.contract, t.entry
        )));
    }
    let scans: Option<Scans> = (speculative.is_some() || recording.is_some()).then(Rc::default);
    // The blobs' view reads the block state directly: only the state's view needs the reads.
    let view = |speculative: Option<&SpeculativeReads>, scans: Option<Scans>| View {
        shared: shared.clone(),
        tx,
        speculative: speculative.cloned(),
        scans,
        recording: recording.cloned(),
    };
    let mut ctx = CallContext::new(
        t.contract,
        t.caller,
        t.input.clone(),
        t.gas,
        Box::new(view(speculative, scans.clone())),
        Box::new(view(None, None)),
    );
    ctx.calls = Some(shared.calls.clone() as Arc<dyn Calls>);
    ctx.position = (shared.height, tx as u32);
    let (outcome, _) = session.call(module, &mut ctx, &Call::new(&t.entry, &[]))?;
    if outcome.trap.is_some() {
        // A failed call returns nothing and its effects are discarded.
        ctx.return_data.clear();
        ctx.events.clear();
        ctx.writes.clear();
        ctx.new_blobs.clear();
        ctx.new_contracts.clear();
    }
    Ok(Effects {
        receipt: Receipt {
            gas_used: outcome.gas_used,
            trap: outcome.trap.map(|t| t.to_string()),
            return_data: std::mem::take(&mut ctx.return_data),
            events: std::mem::take(&mut ctx.events),
            created: std::mem::take(&mut ctx.new_contracts),
        },
        writes: std::mem::take(&mut ctx.writes).into_writes().collect(),
        blobs: std::mem::take(&mut ctx.new_blobs),
        scans: {
            drop(ctx);
            scans.map_or_else(Vec::new, |s| s.take())
        },
    })
}

/// Calls `query` of the CosmWasm contract at `contract` with `msg` over `state` (which it
/// does not change), at `height`, with `gas` to spend ([`cw_tx::query`]).
///
/// # Errors
/// An engine failed.
#[allow(clippy::too_many_arguments)]
pub fn query_cosmwasm(
    exec: &Arc<TieredExecutor>,
    contracts: &Arc<dyn Contracts>,
    cosmwasm: &Arc<CwChain>,
    state: &Arc<BlockState>,
    height: u64,
    contract: &Address,
    msg: &[u8],
    gas: u64,
) -> Result<cw_tx::QueryOutcome, EngineError> {
    let txs: Arc<[Transaction]> = Arc::from([Transaction {
        contract: *contract,
        entry: "query".into(),
        caller: [0; 32],
        input: Vec::new(),
        gas,
        access: None,
    }]);
    let shared = Arc::new(Shared {
        state: state.clone(),
        height,
        first: 0,
        declared: txs
            .iter()
            .map(|t| Declared::of(t.access.as_ref()))
            .collect(),
        txs,
        window: None,
        calls: Arc::new(Nested {
            exec: exec.clone(),
            contracts: contracts.clone(),
            state: state.clone(),
            cosmwasm: cosmwasm.clone(),
            missed: AtomicBool::new(false),
        }),
    });
    let views = {
        let shared = shared.clone();
        Rc::new(move || -> Box<dyn State> {
            Box::new(View {
                shared: shared.clone(),
                tx: 0,
                speculative: None,
                scans: None,
                recording: None,
            })
        }) as Views
    };
    let mut chain = BlockChain {
        nested: shared.calls.clone(),
        views: views.clone(),
    };
    cw_tx::query(&mut chain, cosmwasm, views(), contract, msg, gas, height)
}

/// Whether `t` is a CosmWasm transaction: to the bank, to a CosmWasm contract, or
/// `instantiate` of CosmWasm code.
/// `module` is the contract's at `t.contract`, if any.
fn is_cosmwasm(
    contracts: &dyn Contracts,
    t: &Transaction,
    module: Option<&Arc<Instrumented>>,
) -> bool {
    if t.contract == cw_tx::BANK {
        return true;
    }
    match module {
        Some(m) => m.cosmwasm.is_some(),
        None => {
            t.entry == "instantiate"
                && contracts
                    .code(&t.contract)
                    .is_some_and(|m| m.cosmwasm.is_some())
        }
    }
}

/// Executes CosmWasm transaction `tx` of the block ([`cw_tx::execute`]) through the same
/// views of the block state as any transaction.
fn execute_cosmwasm(
    session: &mut Session<'_>,
    shared: &Arc<Shared>,
    tx: usize,
    speculative: Option<&SpeculativeReads>,
    recording: Option<&Recording>,
) -> Result<Effects, EngineError> {
    let scans: Option<Scans> = (speculative.is_some() || recording.is_some()).then(Rc::default);
    let views = {
        let (shared, speculative, scans, recording) = (
            shared.clone(),
            speculative.cloned(),
            scans.clone(),
            recording.cloned(),
        );
        Rc::new(move || -> Box<dyn State> {
            Box::new(View {
                shared: shared.clone(),
                tx,
                speculative: speculative.clone(),
                scans: scans.clone(),
                recording: recording.clone(),
            })
        }) as Views
    };
    let forked = BlockChain {
        nested: shared.calls.clone(),
        views: views.clone(),
    };
    let mut chain = WorkerChain { session, forked };
    let t = &shared.txs[tx];
    let done = cw_tx::execute(
        &mut chain,
        &shared.calls.cosmwasm,
        views(),
        t,
        (shared.height, shared.first + tx as u32),
    )?;
    Ok(Effects {
        receipt: done.receipt,
        writes: done.writes.into_writes().collect(),
        blobs: Vec::new(),
        scans: scans.map_or_else(Vec::new, |s| s.take()),
    })
}

/// Makes views of one transaction's state.
type Views = Rc<dyn Fn() -> Box<dyn State>>;

/// The block as a CosmWasm transaction's queries see it: each call in a session of its own.
#[derive(Clone)]
struct BlockChain {
    nested: Arc<Nested>,
    views: Views,
}

impl CwHostChain for BlockChain {
    fn module(&self, address: &Address) -> Option<Arc<Instrumented>> {
        let found = self.nested.contracts.module(address).cloned();
        if found.is_none() {
            self.nested.missed.store(true, Ordering::Relaxed);
        }
        found
    }

    fn code(&self, code: &CodeId) -> Option<Arc<Instrumented>> {
        self.nested.contracts.code(code)
    }

    fn code_by_number(&self, number: u64) -> Option<CodeId> {
        self.nested.contracts.code_by_number(number)
    }

    fn call(
        &mut self,
        module: &Arc<Instrumented>,
        ctx: &mut CwContext,
        entry: CwEntry,
        args: &[&[u8]],
    ) -> Result<CwOutcome, EngineError> {
        let mut session = self.nested.exec.session();
        Ok(session.call_cosmwasm(module, ctx, entry, args)?.0)
    }

    fn fork(&self) -> Box<dyn CwHostChain> {
        Box::new(self.clone())
    }

    fn state(&self) -> Box<dyn State> {
        (self.views)()
    }
}

/// The block as a CosmWasm transaction sees it: calls in the worker's session.
struct WorkerChain<'s, 'a> {
    session: &'s mut Session<'a>,
    forked: BlockChain,
}

impl CwHostChain for WorkerChain<'_, '_> {
    fn module(&self, address: &Address) -> Option<Arc<Instrumented>> {
        self.forked.module(address)
    }

    fn code(&self, code: &CodeId) -> Option<Arc<Instrumented>> {
        self.forked.code(code)
    }

    fn code_by_number(&self, number: u64) -> Option<CodeId> {
        self.forked.code_by_number(number)
    }

    fn call(
        &mut self,
        module: &Arc<Instrumented>,
        ctx: &mut CwContext,
        entry: CwEntry,
        args: &[&[u8]],
    ) -> Result<CwOutcome, EngineError> {
        Ok(self.session.call_cosmwasm(module, ctx, entry, args)?.0)
    }

    fn fork(&self) -> Box<dyn CwHostChain> {
        self.forked.fork()
    }

    fn state(&self) -> Box<dyn State> {
        self.forked.state()
    }
}

/// A transaction executed before its block (speculation) on the committed state: its receipt,
/// writes, blobs and scan steps, and every key it read (or found by a scan) with the committed
/// version it had. It stands for an execution in a block while each of those keys still has
/// that version and no earlier transaction of the block wrote one of them; otherwise the
/// transaction executes. Validity is a comparison of versions, never of values.
#[derive(Debug, Clone)]
pub struct PreExecuted {
    receipt: Receipt,
    writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    blobs: NewBlobs,
    scans: Vec<ScanStep>,
    reads: Vec<(Vec<u8>, Option<state::Version>)>,
    /// Keys read from the results it was pre-executed on top of (`parents`), and which of
    /// them wrote each.
    chained: Vec<(Vec<u8>, u32)>,
    /// The serial numbers of the results it was pre-executed on top of (the same sender's
    /// earlier pending transactions), oldest first.
    parents: Vec<u64>,
    /// A number that tells this result apart from every other of its pool (set by the pool).
    pub(crate) serial: u64,
    /// The block position (height, index) it was pre-executed for, when its outcome depends
    /// on it (a CosmWasm transaction: its contracts see both).
    position: Option<(u64, u32)>,
}

/// A pre-executed result offered to a block ([`execute_block_reusing`]) for one of its
/// transactions, with the block positions of the transactions whose results it was
/// pre-executed on top of (each before it).
#[derive(Debug, Clone)]
pub struct Reused {
    /// The result.
    pub result: Arc<PreExecuted>,
    /// Per parent of the result ([`PreExecuted::parents`]), its transaction's place in the
    /// block.
    pub parents: Vec<usize>,
}

impl PreExecuted {
    /// The receipt it would give.
    pub fn receipt(&self) -> &Receipt {
        &self.receipt
    }

    /// Bytes it holds (keys, values, receipt, blobs, scan steps), for a memory bound.
    pub fn bytes(&self) -> usize {
        let pairs = |v: &[(Vec<u8>, Option<Vec<u8>>)]| {
            v.iter()
                .map(|(k, v)| 48 + k.len() + v.as_ref().map_or(0, Vec::len))
                .sum::<usize>()
        };
        let receipt = 64
            + self.receipt.return_data.len()
            + self.receipt.trap.as_ref().map_or(0, String::len)
            + (self.receipt.events.iter())
                .map(|e| 48 + e.topic.len() + e.data.len())
                .sum::<usize>();
        let scans = (self.scans.iter())
            .map(|s| {
                96 + s.after.as_ref().map_or(0, Vec::len)
                    + s.found.as_ref().map_or(0, |f| f.0.len())
            })
            .sum::<usize>();
        std::mem::size_of::<Self>()
            + receipt
            + pairs(&self.writes)
            + self.reads.iter().map(|(k, _)| 48 + k.len()).sum::<usize>()
            + self
                .chained
                .iter()
                .map(|(k, _)| 32 + k.len())
                .sum::<usize>()
            + 8 * self.parents.len()
            + self.blobs.iter().map(|b| 96 + b.bytes.len()).sum::<usize>()
            + scans
    }

    /// Whether every key it read still has the committed version it saw in `state`'s base,
    /// and its scans find what they found (the commits since it ran changed none of it);
    /// `state` holds no block's writes yet.
    ///
    /// # Errors
    /// The base failed.
    pub fn still_committed(&self, state: &BlockState) -> Result<bool, String> {
        for (key, version) in &self.reads {
            if !state.committed_version_is(key, *version)? {
                return Ok(false);
            }
        }
        Ok(self.scans.iter().all(|s| s.holds(state)))
    }

    /// The serial numbers of the results it was pre-executed on top of (the same sender's
    /// earlier pending transactions), oldest first: it stands only in a block that reuses each
    /// of them.
    pub fn parents(&self) -> &[u64] {
        &self.parents
    }

    /// Its serial number in its pool.
    pub fn serial(&self) -> u64 {
        self.serial
    }
}

impl Reused {
    /// Whether it stands in `state` as it is now (sequential and declared modes: the writes of
    /// every earlier transaction of the block and none of a later one it conflicts with): no
    /// key it read from the committed state was written in the block, each key it read from a
    /// parent was last written by that parent's reused result (`used`), and its scans find
    /// what they found.
    fn stands(&self, state: &BlockState, used: &[AtomicBool]) -> bool {
        let r = &self.result;
        r.reads.iter().all(|(k, _)| !state.written(k))
            && r.chained.iter().all(|(k, p)| {
                let j = self.parents[*p as usize];
                state.writer_of(k) == Some(Writer::first(j)) && used[j].load(Ordering::Acquire)
            })
            && r.scans.iter().all(|s| s.holds(state))
    }
}

/// Executes `tx` on `state` (the committed state, through a base, with no block's writes) and
/// on top of the writes of `parents` (results of the same sender's earlier transactions,
/// oldest first) as the transaction at (`height`, `index`) of a block would, keeping what
/// [`PreExecuted`] needs to stand for it later, and applying nothing. `None` when the result could not stand for an
/// execution in a block: the transaction was not run (refused), instantiated contracts (their
/// addresses depend on its place in its block), or met what versions cannot vouch for (a
/// missing blob or contract, which a later block may create).
///
/// # Errors
/// An engine failed.
pub fn pre_execute(
    exec: &Arc<TieredExecutor>,
    contracts: &Arc<dyn Contracts>,
    cosmwasm: &Arc<CwChain>,
    state: &Arc<BlockState>,
    (height, index): (u64, u32),
    tx: Transaction,
    parents: &[Arc<PreExecuted>],
) -> Result<Option<PreExecuted>, EngineError> {
    // On top of the parents' writes: a state of its own, over the same committed state.
    let state = &match parents.is_empty() {
        true => state.clone(),
        false => {
            let own = state.fork();
            for (p, parent) in parents.iter().enumerate() {
                let writer = Writer::first(p);
                for (k, v) in &parent.writes {
                    own.put(k.as_slice(), v.clone(), writer);
                }
            }
            Arc::new(own)
        }
    };
    let position =
        is_cosmwasm(&**contracts, &tx, contracts.module(&tx.contract)).then_some((height, index));
    let txs: Arc<[Transaction]> = Arc::from([tx]);
    let declared: Arc<[Declared]> = txs
        .iter()
        .map(|t| Declared::of(t.access.as_ref()))
        .collect();
    let nested = Arc::new(Nested {
        exec: exec.clone(),
        contracts: contracts.clone(),
        state: state.clone(),
        cosmwasm: cosmwasm.clone(),
        missed: AtomicBool::new(false),
    });
    let shared = Arc::new(Shared {
        state: state.clone(),
        height,
        first: index,
        txs,
        declared,
        window: None,
        calls: nested.clone(),
    });
    let recording = Recording::default();
    let mut session = exec.session();
    let effects = execute_one(
        &mut session,
        &**contracts,
        &shared,
        0,
        None,
        Some(&recording),
    )?;
    let recorded = Rc::into_inner(recording)
        .map(RefCell::into_inner)
        .unwrap_or_default();
    let ran = effects.receipt.gas_used > 0
        || recorded.reads.len() + recorded.chained.len() + effects.writes.len() > 0;
    if !ran
        || recorded.unrepeatable
        || nested.missed.load(Ordering::Relaxed)
        || !effects.receipt.created.is_empty()
        || state.fault().is_some()
    {
        return Ok(None);
    }
    Ok(Some(PreExecuted {
        receipt: effects.receipt,
        writes: effects.writes.into_iter().collect(),
        blobs: effects.blobs,
        scans: effects.scans,
        reads: recorded.reads,
        chained: recorded.chained,
        parents: parents.iter().map(|p| p.serial).collect(),
        serial: 0,
        position,
    }))
}

/// Executes `txs` as the block at `height` against `state` in `mode`; returns one receipt per
/// transaction. The state and receipts are those of sequential execution in block order, whatever the mode. A
/// transaction whose access set is over its bounds is not run: its receipt says why
/// ([`AccessSetError`](synor_core::sched::AccessSetError)), with no gas used; so is one
/// calling an address with no contract or an entry its contract does not export.
///
/// # Errors
/// An engine failed (a fault of the node, never of the block: see
/// [`EngineError`]); the state is then partly updated and must be discarded. A block of 2^32
/// transactions or more is refused before anything runs.
pub fn execute_block(
    blocks: &BlockExecutor,
    exec: &Arc<TieredExecutor>,
    contracts: &Arc<dyn Contracts>,
    state: &Arc<BlockState>,
    height: u64,
    txs: &Arc<[Transaction]>,
    mode: Mode,
) -> Result<Execution, EngineError> {
    execute_block_reusing(blocks, exec, contracts, state, height, txs, mode, &[])
}

/// As [`execute_block`], with results computed before the block (`reuse[i]` for transaction
/// `i`, whose every read from the committed state must still have the version it saw:
/// [`PreExecuted::still_committed`]). A result stands for the transaction's execution if no
/// earlier transaction of the block wrote what it read from the committed state, and what it
/// read from its parents' results was last written by those results, reused in this block;
/// otherwise the transaction executes.
/// In the optimistic mode a result is the transaction's first incarnation, validated like any
/// other; in the declared mode it takes its place in the dependency graph. The receipts and
/// state are the same as without them.
///
/// # Errors
/// As [`execute_block`].
#[allow(clippy::too_many_arguments)]
pub fn execute_block_reusing(
    blocks: &BlockExecutor,
    exec: &Arc<TieredExecutor>,
    contracts: &Arc<dyn Contracts>,
    state: &Arc<BlockState>,
    height: u64,
    txs: &Arc<[Transaction]>,
    mode: Mode,
    reuse: &[Option<Reused>],
) -> Result<Execution, EngineError> {
    let reused = AtomicUsize::new(0);
    // A result that depends on its block position (a CosmWasm call's environment carries it)
    // stands only at the position it was pre-executed for.
    let pre = |tx: usize| {
        reuse
            .get(tx)
            .and_then(Option::as_ref)
            .filter(|r| r.result.position.is_none_or(|at| at == (height, tx as u32)))
    };
    // Per transaction, whether its execution is its reused result (set before its writes are
    // visible to any other transaction).
    let used: Vec<AtomicBool> = (0..reuse.len()).map(|_| AtomicBool::new(false)).collect();
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
                    height,
                    first: 0,
                    txs: txs.clone(),
                    declared: declared.clone(),
                    window: window.clone(),
                    calls: Arc::new(Nested {
                        exec: exec.clone(),
                        contracts: contracts.clone(),
                        state: state.clone(),
                        cosmwasm: blocks.cosmwasm.clone(),
                        missed: AtomicBool::new(false),
                    }),
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
        let writer = Writer::first(tx);
        if let Some(reuse) = pre(tx).filter(|p| p.stands(state, &used)) {
            let pre = &reuse.result;
            used[tx].store(true, Ordering::Release);
            for (k, v) in &pre.writes {
                state.put(k.as_slice(), v.clone(), writer);
            }
            keep(tx, Ok(pre.receipt.clone()), pre.blobs.clone());
            reused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let effects = execute_one(
            &mut sessions[worker].get(),
            &**contracts,
            &direct[worker],
            tx,
            None,
            None,
        );
        match effects {
            Ok(e) => {
                for (k, v) in e.writes {
                    state.put(k, v, writer);
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
                    let tx = range.start + v.tx as usize;
                    // A result computed before the block is the first incarnation, if no
                    // earlier transaction wrote what it read (in this window, or in an earlier
                    // one: those writes are in the block state); validated like any other.
                    if let Some(reuse) = pre(tx).filter(|_| v.incarnation == 0) {
                        let pre = &reuse.result;
                        let mut reads = window.reads(v.tx);
                        let mut base = |k: &[u8]| {
                            !state.written(k) && window.read_as(&mut reads, k, Origin::Base)
                        };
                        let committed = pre.reads.iter().all(|(k, _)| base(k));
                        // A parent's write: its reused result, the last write before this
                        // transaction, in this window or (in the block state) an earlier one.
                        let mut from_parent = |k: &[u8], j: usize| {
                            if !used[j].load(Ordering::Acquire) {
                                return false;
                            }
                            let local = j.checked_sub(range.start).map(|j| OptimisticVersion {
                                tx: j as u32,
                                incarnation: 0,
                            });
                            match local {
                                Some(v) => window.read_as(&mut reads, k, Origin::Written(v)),
                                None => {
                                    state.writer_of(k) == Some(Writer::first(j))
                                        && window.read_as(&mut reads, k, Origin::Base)
                                }
                            }
                        };
                        let chained = committed
                            && (pre.chained.iter())
                                .all(|(k, p)| from_parent(k, reuse.parents[*p as usize]));
                        // A result taken when every earlier transaction had committed is not
                        // validated again: its scans are checked here.
                        if chained && pre.scans.iter().all(|s| s.holds(state)) {
                            used[tx].store(true, Ordering::Release);
                            reused.fetch_add(1, Ordering::Relaxed);
                            let writer = Writer::first(tx);
                            let writes = (pre.writes.iter())
                                .map(|(k, v)| (WindowKey::from_slice(k), (v.clone(), writer)));
                            let output = (
                                Ok(pre.receipt.clone()),
                                pre.blobs.clone(),
                                pre.scans.clone(),
                            );
                            return Executed {
                                reads,
                                writes: writes.collect(),
                                output,
                            };
                        }
                    }
                    let reads = Rc::new(RefCell::new(window.reads(v.tx)));
                    let effects = execute_one(
                        &mut sessions[worker].get(),
                        &**contracts,
                        &views[worker],
                        tx,
                        Some(&reads),
                        None,
                    );
                    let reads = Rc::into_inner(reads)
                        .expect("the call's views are dropped")
                        .into_inner();
                    let (writes, output) = match effects {
                        Ok(e) => {
                            let writer = Writer {
                                tx: tx as u32,
                                incarnation: v.incarnation,
                            };
                            let writes = e.writes.into_iter();
                            let writes =
                                writes.map(|(k, v)| (WindowKey::from_slice(&k), (v, writer)));
                            (writes.collect(), (Ok(e.receipt), e.blobs, e.scans))
                        }
                        Err(e) => (Vec::new(), (Err(e), Vec::new(), Vec::new())),
                    };
                    Executed {
                        reads,
                        writes,
                        output,
                    }
                };
                // A worker committing a transaction applies its writes to the block state (on
                // the thread that made them) and keeps its receipt.
                let write = |_: usize, key: &WindowKey, (value, writer)| {
                    state.put(key.as_slice(), value, writer)
                };
                let output = |_: usize, tx: u32, (receipt, new, _)| {
                    keep(range.start + tx as usize, receipt, new)
                };
                // Every transaction before it committed: its scans must find what they found.
                let valid = |_: usize, _: u32, (_, _, scans): &(_, _, Vec<ScanStep>)| {
                    scans.iter().all(|s| s.holds(state))
                };
                pool::drain_optimistic(
                    &blocks.workers,
                    &window,
                    threads,
                    &execute,
                    &valid,
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
    let mut kept = state.stored.lock().unwrap_or_else(|e| e.into_inner());
    for blob in stored.into_iter().flat_map(|(_, b)| b) {
        if let hashbrown::hash_map::Entry::Vacant(e) = all.entry(blob.id) {
            e.insert(blob.bytes.clone());
            kept.push(blob);
        }
    }
    drop((all, kept));
    let receipts = receipts
        .into_iter()
        .map(|r| {
            r.0.into_inner()
                .unwrap_or_else(|| Err(EngineError::Engine("transaction not run".into())))
        })
        .collect::<Result<_, _>>()?;
    let reused = reused.into_inner();
    Ok(Execution {
        receipts,
        reused,
        executions: executions - reused,
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
    use super::{BlockState, SHARDS, Writer};
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
        state.put(b"a".to_vec(), Some(vec![3; 16]), Writer::GENESIS);
        assert_eq!(state.get(b"a"), Some(vec![3; 16]));
        state.put(b"a".to_vec(), Some(vec![4; 9]), Writer::GENESIS);
        assert_eq!(state.get(b"a"), Some(vec![4; 9]));
        state.put(b"a".to_vec(), Some(vec![5; 40]), Writer::GENESIS);
        assert_eq!(state.get(b"a"), Some(vec![5; 40]));
        state.put(b"a".to_vec(), Some(Vec::new()), Writer::GENESIS);
        assert_eq!(state.get(b"a"), Some(Vec::new()));
        // A held value much larger than the new one is not kept around.
        state.put(b"b".to_vec(), Some(vec![6; 4096]), Writer::GENESIS);
        state.put(b"b".to_vec(), Some(vec![7; 2]), Writer::GENESIS);
        assert_eq!(state.get(b"b"), Some(vec![7; 2]));
        let held = state.with(b"b", |s| {
            s.and_then(|s| s.value.as_ref()).map_or(0, |v| v.capacity())
        });
        assert!(held < 4096, "a 2-byte value holds {held} bytes");
        // Removal, and a new key.
        state.put(b"b".to_vec(), None, Writer::GENESIS);
        assert_eq!(state.get(b"b"), None);
        state.put(b"c".to_vec(), Some(vec![8]), Writer::GENESIS);
        assert_eq!(state.get(b"c"), Some(vec![8]));
        // Many writes at once: the last write of a key wins.
        state.put_many([
            (b"c".to_vec(), Some(vec![9]), Writer::GENESIS),
            (b"d".to_vec(), Some(vec![10]), Writer::GENESIS),
            (b"c".to_vec(), None, Writer::GENESIS),
            (b"d".to_vec(), Some(vec![11, 12]), Writer::GENESIS),
        ]);
        assert_eq!(state.get(b"c"), None);
        assert_eq!(state.get(b"d"), Some(vec![11, 12]));
        let all = state.snapshot();
        assert_eq!(all.keys().collect::<Vec<_>>(), [b"a", b"d"]);
    }
}
