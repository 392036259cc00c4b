//! Optimistic parallel execution for transactions that declare nothing (Block-STM).
//!
//! Workers execute transactions speculatively against a multi-version memory
//! ([`Optimistic::read`]): a read of transaction `j` sees the latest write of a transaction
//! before `j`, or the base state when there is none. After executing, a transaction's writes
//! become versions of their keys, and its read set is kept. Validation re-reads the read set
//! and compares *versions* (writer and incarnation), never values. A transaction whose read
//! set is stale is aborted: its writes become *estimates*, and a later transaction that reads
//! an estimate stops and waits for that transaction's next execution instead of running on
//! values about to change. When no work is left and every transaction has a valid execution,
//! the last version of each key is the result of executing the block in order.
//!
//! The collaborative scheduler is the one of Block-STM (Gelashvili et al., 2022): an execution
//! index and a validation index, both only moved by atomics, per-transaction status and
//! dependency lists behind small locks, and a decrease counter for safe termination.
//!
//! # Fewer validations than Block-STM
//!
//! Block-STM revalidates every higher transaction whenever an execution writes a key its
//! previous execution did not: every first execution does, so each transaction is validated
//! about as many times as there are workers ahead of it (4–10 validations per execution were
//! reported at 32 threads). Here each key remembers the highest transaction that has read it,
//! and a new write triggers revalidation of higher transactions only if one of them has read
//! the key already; otherwise only the writer itself is validated. A reader that comes after
//! the write sees it, so nothing is missed: the read and the write are ordered by the key's
//! lock.

use alloc::borrow::ToOwned;
use alloc::vec::Vec;
use core::borrow::Borrow;
use core::hash::{BuildHasher, Hash};

use smallvec::SmallVec;

use super::backoff;
use crate::sync::{AtomicBool, AtomicUsize, Mutex, Ordering, Padded};

/// Hashing of keys: randomly seeded (keys come from contracts; a fixed hash would let them
/// pile into one shard), except under loom, whose models must replay identically.
#[cfg(not(loom))]
type Hasher = hashbrown::DefaultHashBuilder;
#[cfg(loom)]
type Hasher = core::hash::BuildHasherDefault<std::hash::DefaultHasher>;

type HashMap<K, V> = hashbrown::HashMap<K, V, Hasher>;

/// One shard of the multi-version memory (on a cache line of its own).
type Shard<K, V> = Padded<Mutex<Keys<K, V>>>;

/// The keys of one shard met in a window, each with its versions. A key keeps its place in
/// `entries` until the window ends, so a [`KeyId`] names it for good: read and write sets
/// hold ids, not copies of keys, and validation finds a key's versions without hashing or
/// comparing it again.
struct Keys<K, V> {
    /// Positions in `entries`, probed with the hash that also chose the shard (a key is hashed
    /// once per access by key; accesses by id are not hashed).
    index: hashbrown::HashTable<u32>,
    entries: Vec<(K, Versions<V>)>,
}

/// A key met in the window: its shard, and its place in that shard's entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct KeyId {
    shard: u32,
    entry: u32,
}

/// One execution of a transaction: its index in the block and how many times it was executed
/// before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    /// Index in the block.
    pub tx: u32,
    /// Executions before this one.
    pub incarnation: u32,
}

/// Where a read found its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// No earlier transaction of the block wrote the key: the base state.
    Base,
    /// An earlier transaction's execution wrote it.
    Written(Version),
}

/// What [`Optimistic::read`] gives an executing transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read<V> {
    /// An earlier transaction of the block wrote this value.
    Value(V),
    /// No earlier transaction wrote the key: read the base state.
    Base,
    /// An earlier transaction's write is about to change (it is being re-executed): stop
    /// executing and return the [`ReadSet`]; the transaction runs again when that write is
    /// known.
    Blocked,
}

/// The reads of one execution, kept for validation. Each key is read from the block once per
/// execution: a second read gives the first one's answer, so an execution always sees one
/// consistent value per key.
pub struct ReadSet<K, V> {
    tx: u32,
    /// Key, where its value came from, and the value if the block wrote it.
    seen: Vec<(KeyId, Origin, Option<V>)>,
    /// Positions in `seen` by key, once it is too long to search.
    index: HashMap<KeyId, usize>,
    blocked: Option<u32>,
    _keys: core::marker::PhantomData<fn() -> K>,
}

impl<K, V> core::fmt::Debug for ReadSet<K, V> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReadSet")
            .field("tx", &self.tx)
            .field("reads", &self.seen.len())
            .field("blocked", &self.blocked)
            .finish_non_exhaustive()
    }
}

/// Reads searched linearly (most transactions read a few keys).
const LINEAR: usize = 16;

impl<K, V> ReadSet<K, V> {
    fn new(tx: u32) -> Self {
        Self {
            tx,
            seen: Vec::new(),
            index: HashMap::default(),
            blocked: None,
            _keys: core::marker::PhantomData,
        }
    }

    fn find(&self, id: KeyId) -> Option<&(KeyId, Origin, Option<V>)> {
        if self.seen.len() <= LINEAR {
            self.seen.iter().find(|(k, ..)| *k == id)
        } else {
            self.index.get(&id).map(|i| &self.seen[*i])
        }
    }

    fn push(&mut self, id: KeyId, origin: Origin, value: Option<V>) {
        if self.seen.len() == LINEAR {
            let positions = self.seen.iter().enumerate().map(|(i, e)| (e.0, i));
            self.index.extend(positions);
        }
        if self.seen.len() >= LINEAR {
            self.index.insert(id, self.seen.len());
        }
        self.seen.push((id, origin, value));
    }

    /// The transaction executing.
    pub fn tx(&self) -> u32 {
        self.tx
    }

    /// Whether a read found an estimate (the execution is void).
    pub fn is_blocked(&self) -> bool {
        self.blocked.is_some()
    }

    /// Keys read.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether nothing was read.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// What one execution of a transaction produced, returned by the host's execute function.
#[derive(Debug)]
pub struct Executed<K, V, O> {
    /// Its reads (from [`Optimistic::reads`], filled by [`Optimistic::read`]).
    pub reads: ReadSet<K, V>,
    /// Its writes, each key once. Ignored when the reads were blocked.
    pub writes: Vec<(K, V)>,
    /// Whatever else the host keeps of it (a receipt); the last execution's is the result.
    /// Ignored when the reads were blocked.
    pub output: O,
}

/// The result of an optimistic block.
#[derive(Debug)]
pub struct Finished<K, V, O> {
    /// The last write of every key written (and not already taken by
    /// [`Optimistic::take_writes`]), in no particular order: the block's effect on the state.
    pub writes: Vec<(K, V)>,
    /// Each transaction's output, from its last (valid) execution; empty when they were taken
    /// by [`Optimistic::take_outputs`].
    pub outputs: Vec<O>,
    /// Executions, including those stopped by an estimate.
    pub executions: usize,
    /// Validations.
    pub validations: usize,
    /// The longest chain of transactions each reading what the one before wrote, in the final
    /// executions: the block's true dependency depth (`len / critical_path` is the
    /// parallelism it had). `None` when the outputs were taken by
    /// [`Optimistic::take_outputs`] (which clears the records it is computed from).
    pub critical_path: Option<usize>,
}

enum Slot<V> {
    Written { incarnation: u32, value: V },
    Estimate,
}

/// Versions of a key held in place (no allocation): in a block over many keys, most keys are
/// written by one or two transactions.
const INLINE_VERSIONS: usize = 2;

/// The versions of one key, by ascending transaction.
struct Versions<V> {
    slots: SmallVec<[(u32, Slot<V>); INLINE_VERSIONS]>,
    /// The highest transaction that has read the key.
    reader: Option<u32>,
}

impl<V> Versions<V> {
    /// Index of the slot of the highest transaction below `tx`, if any.
    fn below(&self, tx: u32) -> Option<usize> {
        self.slots.partition_point(|(t, _)| *t < tx).checked_sub(1)
    }

    /// What a read by `tx` finds: the version it reads from and its value (none for the
    /// base state), or the transaction whose estimate blocks it.
    fn origin(&self, tx: u32) -> Result<(Origin, Option<&V>), u32> {
        match self.below(tx).map(|i| &self.slots[i]) {
            None => Ok((Origin::Base, None)),
            Some((t, Slot::Written { incarnation, value })) => Ok((
                Origin::Written(Version {
                    tx: *t,
                    incarnation: *incarnation,
                }),
                Some(value),
            )),
            Some((t, Slot::Estimate)) => Err(*t),
        }
    }

    /// Index of the slot of `tx` itself, or where it would go.
    fn slot(&self, tx: u32) -> Result<usize, usize> {
        self.slots.binary_search_by_key(&tx, |(t, _)| *t)
    }
}

/// Transaction status, as in Block-STM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    ReadyToExecute,
    Executing,
    Executed,
    Aborting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Task {
    Execute(Version),
    Validate(Version),
}

/// Per-worker task counters; workers beyond this many share them (still correct, just
/// contended).
const ACTIVE_SLOTS: usize = if cfg!(loom) { 4 } else { 64 };

/// Shards of the multi-version memory (each a lock and a map on its own cache line).
const SHARDS: usize = if cfg!(loom) { 2 } else { 64 };

/// The state of one transaction.
struct TxState<O> {
    /// Incarnation and status (Block-STM's `txn_status`).
    status: Mutex<(u32, Status)>,
    /// Transactions waiting for its next execution (Block-STM's `txn_dependency`).
    dependencies: Mutex<Vec<u32>>,
    /// What its last execution wrote and read.
    recorded: Mutex<Recorded>,
    /// Its last execution's output.
    output: Mutex<Option<O>>,
}

impl<O> TxState<O> {
    fn new() -> Self {
        Self {
            status: Mutex::new((0, Status::ReadyToExecute)),
            dependencies: Mutex::new(Vec::new()),
            recorded: Mutex::new(Recorded::default()),
            output: Mutex::new(None),
        }
    }

    /// Back to "ready to execute, never executed", keeping the allocations; returns the last
    /// execution's output.
    fn take(&self) -> Option<O> {
        *self.status.lock() = (0, Status::ReadyToExecute);
        self.dependencies.lock().clear();
        self.recorded.lock().clear();
        self.output.lock().take()
    }
}

/// Per transaction: what its last execution wrote (ascending) and read.
#[derive(Default)]
struct Recorded {
    written: Vec<KeyId>,
    read: Vec<(KeyId, Origin)>,
}

impl Recorded {
    /// Nothing recorded, the allocations kept.
    fn clear(&mut self) {
        self.written.clear();
        self.read.clear();
    }
}

/// The shared state of one optimistic block: scheduler and multi-version memory. Workers run
/// [`Optimistic::work`] on it concurrently; the host's execute function reads through
/// [`Optimistic::read`].
pub struct Optimistic<K, V, O> {
    len: usize,
    // Scheduler.
    execution_idx: Padded<AtomicUsize>,
    validation_idx: Padded<AtomicUsize>,
    decrease_cnt: Padded<AtomicUsize>,
    /// Tasks in progress, per worker (Block-STM's `num_active_tasks`, split so that a worker
    /// counts its own tasks on a line of its own: the single counter took four contended
    /// read-modify-writes per transaction). A worker's tasks only ever pass to its own next
    /// task, and a worker with none starts one only from an index below the block's length,
    /// which only a counted decrease makes possible: so `check_done` may read the
    /// counters one after another.
    active: Vec<Padded<AtomicUsize>>,
    /// One more than the highest worker number that has called [`Optimistic::work`]: the
    /// counters `check_done` reads (a worker not yet counted here has no task either).
    workers: Padded<AtomicUsize>,
    done_marker: Padded<AtomicBool>,
    halted: AtomicBool,
    /// Parts whose outputs [`Optimistic::take_outputs`] took, and into how many parts.
    parts_taken: Padded<AtomicUsize>,
    parts: AtomicUsize,
    /// Per transaction, each on cache lines of its own (neighbouring transactions run on
    /// different workers; sharing lines made every status change a cache miss on the other).
    /// The first `len` are the block's; the others are kept, ready, for larger blocks.
    txs: Vec<Padded<TxState<O>>>,
    /// Whether every transaction state is ready for a new block (the last block's were reset
    /// when it finished).
    fresh: bool,
    // Memory.
    hasher: Hasher,
    shards: Vec<Shard<K, V>>,
    // Statistics.
    executions: Padded<AtomicUsize>,
    validations: Padded<AtomicUsize>,
}

impl<K, V, O> core::fmt::Debug for Optimistic<K, V, O> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Optimistic")
            .field("len", &self.len)
            .field("execution_idx", &self.execution_idx.load(Ordering::Relaxed))
            .field(
                "validation_idx",
                &self.validation_idx.load(Ordering::Relaxed),
            )
            .field("done", &self.done_marker.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

// Every scheduler access is sequentially consistent: Block-STM's correctness argument assumes
// it, and on the machines that run nodes the cost is in the read-modify-writes, which are
// full barriers anyway.
const SC: Ordering = Ordering::SeqCst;

impl<K, V, O> Optimistic<K, V, O>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    /// The state of a block of `len` transactions, none executed.
    ///
    /// # Panics
    /// More than `u32::MAX` transactions.
    pub fn new(len: usize) -> Self {
        assert!(u32::try_from(len).is_ok(), "block too large");
        Self {
            len,
            execution_idx: Padded(AtomicUsize::new(0)),
            validation_idx: Padded(AtomicUsize::new(0)),
            decrease_cnt: Padded(AtomicUsize::new(0)),
            active: (0..ACTIVE_SLOTS)
                .map(|_| Padded(AtomicUsize::new(0)))
                .collect(),
            workers: Padded(AtomicUsize::new(0)),
            done_marker: Padded(AtomicBool::new(len == 0)),
            halted: AtomicBool::new(false),
            parts_taken: Padded(AtomicUsize::new(0)),
            parts: AtomicUsize::new(0),
            txs: (0..len).map(|_| Padded(TxState::new())).collect(),
            fresh: true,
            hasher: Hasher::default(),
            shards: (0..SHARDS)
                // Room for a key per transaction from the start: a block writes about that many,
                // and growing every shard's table from empty rehashed each one several times.
                .map(|_| {
                    Padded(Mutex::new(Keys {
                        index: hashbrown::HashTable::with_capacity(len / SHARDS),
                        entries: Vec::with_capacity(len / SHARDS),
                    }))
                })
                .collect(),
            executions: Padded(AtomicUsize::new(0)),
            validations: Padded(AtomicUsize::new(0)),
        }
    }

    /// Makes this the state of a new block of `len` transactions, none executed, keeping the
    /// allocations of the previous blocks (per-transaction state, memory tables): a host running
    /// block after block allocates and zeroes them once (for 10,000 transactions, allocating
    /// took 1 to 1.5 ms, on one thread, before any worker could start). A smaller block keeps
    /// the states of a larger one's further transactions (a host alternating a small probe
    /// window and a large one reallocated them every block). Transaction states are reset here
    /// only if the previous block did not finish (a finished block's were reset as it finished,
    /// by the workers in parallel when they took the outputs).
    ///
    /// # Panics
    /// More than `u32::MAX` transactions.
    pub fn reset(&mut self, len: usize) {
        assert!(u32::try_from(len).is_ok(), "block too large");
        for counter in [
            &self.execution_idx,
            &self.validation_idx,
            &self.decrease_cnt,
            &self.executions,
            &self.validations,
            &self.workers,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
        for counter in &self.active {
            counter.store(0, Ordering::Relaxed);
        }
        self.parts_taken.store(0, Ordering::Relaxed);
        self.parts.store(0, Ordering::Relaxed);
        self.done_marker.store(len == 0, Ordering::Relaxed);
        self.halted.store(false, Ordering::Relaxed);
        if !self.fresh {
            // States beyond the previous block's were ready already.
            for tx in self.txs() {
                tx.take();
            }
        }
        self.len = len;
        if self.txs.len() < len {
            self.txs.resize_with(len, || Padded(TxState::new()));
        }
        self.fresh = false;
        for shard in &self.shards {
            let mut keys = shard.lock();
            keys.index.clear();
            keys.entries.clear();
        }
    }

    /// The states of the block's transactions.
    fn txs(&self) -> &[Padded<TxState<O>>] {
        &self.txs[..self.len]
    }

    /// Transactions in the block.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the block is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// An empty read set for an execution of `tx`.
    pub fn reads(&self, tx: u32) -> ReadSet<K, V> {
        ReadSet::new(tx)
    }

    /// Reads `key` for the execution whose reads are `reads`: the latest value written by an
    /// earlier transaction, [`Read::Base`] if none wrote it, [`Read::Blocked`] if that write is
    /// an estimate (the execution must stop).
    pub fn read<Q>(&self, reads: &mut ReadSet<K, V>, key: &Q) -> Read<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized + ToOwned<Owned = K>,
    {
        let tx = reads.tx;
        let found = self.with_versions(key, |id, versions| {
            // A read set's value is there exactly when an earlier transaction wrote it.
            if let Some((_, _, value)) = reads.find(id) {
                return Ok((id, None, value.clone()));
            }
            versions.reader = versions.reader.max(Some(tx));
            versions
                .origin(tx)
                .map(|(origin, value)| (id, Some(origin), value.cloned()))
        });
        match found {
            // Read before by this execution: the same answer.
            Ok((_, None, value)) => value.map_or(Read::Base, Read::Value),
            Ok((id, Some(origin), value)) => {
                let read = value.clone().map_or(Read::Base, Read::Value);
                reads.push(id, origin, value);
                read
            }
            Err(blocking) => {
                reads.blocked = Some(blocking);
                Read::Blocked
            }
        }
    }

    /// Runs `f` on the id and versions of `key`, under its shard's lock (creating them if
    /// needed).
    fn with_versions<Q, R>(&self, key: &Q, f: impl FnOnce(KeyId, &mut Versions<V>) -> R) -> R
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized + ToOwned<Owned = K>,
    {
        let hash = self.hasher.hash_one(key);
        // Bits the table does not use for its own buckets and tags.
        let shard = ((hash >> 32) as usize % SHARDS) as u32;
        let mut keys = self.shards[shard as usize].lock();
        let Keys { index, entries } = &mut *keys;
        let entry = match index.find(hash, |i| entries[*i as usize].0.borrow() == key) {
            Some(i) => *i,
            None => {
                // At most one entry per transaction's access, and a block has under 2^32
                // transactions; a shard past 2^32 keys would have exhausted memory first.
                let i = u32::try_from(entries.len()).expect("fewer than 2^32 keys per shard");
                entries.push((
                    key.to_owned(),
                    Versions {
                        slots: SmallVec::new(),
                        reader: None,
                    },
                ));
                index.insert_unique(hash, i, |i| self.hasher.hash_one(&entries[*i as usize].0));
                i
            }
        };
        f(KeyId { shard, entry }, &mut entries[entry as usize].1)
    }

    /// Runs `f` on the versions of key `id`, under its shard's lock.
    fn at<R>(&self, id: KeyId, f: impl FnOnce(&mut Versions<V>) -> R) -> R {
        f(&mut self.shards[id.shard as usize].lock().entries[id.entry as usize].1)
    }

    /// Whether the scheduler has finished: every transaction has a valid execution (or the
    /// block was [halted](Optimistic::halt)).
    pub fn done(&self) -> bool {
        self.done_marker.load(SC)
    }

    /// Stops every worker in [`Optimistic::work`] at its next task (a worker's execute
    /// failed: the others must not wait for it). The block's result is then incomplete and
    /// [`Optimistic::finish`] panics.
    pub fn halt(&self) {
        self.halted.store(true, SC);
        self.done_marker.store(true, SC);
    }

    /// Whether the block was [halted](Optimistic::halt).
    pub fn halted(&self) -> bool {
        self.halted.load(SC)
    }

    /// Worker `worker` (each worker running at once a different number, counting from 0): takes
    /// execution and validation tasks until the block is done. `execute` runs
    /// one execution of a transaction (it may run on several workers at once, for different
    /// transactions) reading through [`Optimistic::read`] with the read set from
    /// [`Optimistic::reads`]. While no task is available the worker spins, calling `idle`
    /// every 64 spins (a host yields the thread there).
    pub fn work(
        &self,
        worker: usize,
        mut execute: impl FnMut(Version) -> Executed<K, V, O>,
        mut idle: impl FnMut(),
    ) {
        let w = worker % ACTIVE_SLOTS;
        self.workers.fetch_max(w + 1, SC);
        let mut task: Option<Task> = None;
        let mut spins = 0u32;
        // Counted here and added once: a shared counter would be a contended
        // read-modify-write per task.
        let (mut executions, mut validations) = (0, 0);
        while !self.halted.load(Ordering::Relaxed) {
            task = match task {
                Some(Task::Execute(v)) => self.try_execute(v, &mut execute, w, &mut executions),
                Some(Task::Validate(v)) => {
                    validations += 1;
                    self.needs_reexecution(v, w)
                }
                None => {
                    if self.done() {
                        break;
                    }
                    let next = self.next_task(w);
                    if next.is_none() {
                        backoff(&mut spins, &mut idle);
                    }
                    next
                }
            };
        }
        self.executions.fetch_add(executions, Ordering::Relaxed);
        self.validations.fetch_add(validations, Ordering::Relaxed);
    }

    fn try_execute(
        &self,
        version: Version,
        execute: &mut impl FnMut(Version) -> Executed<K, V, O>,
        w: usize,
        executions: &mut usize,
    ) -> Option<Task> {
        loop {
            *executions += 1;
            let Executed {
                reads,
                writes,
                output,
            } = execute(version);
            debug_assert_eq!(reads.tx, version.tx, "read set of another transaction");
            if let Some(blocking) = reads.blocked {
                if self.add_dependency(version.tx, blocking, w) {
                    return None;
                }
                continue; // the blocking transaction has executed since: run again
            }
            let revalidate = self.record(version, reads, writes);
            *self.txs()[version.tx as usize].output.lock() = Some(output);
            return self.finish_execution(version, revalidate, w);
        }
    }

    fn needs_reexecution(&self, version: Version, w: usize) -> Option<Task> {
        let aborted = !self.validate(version.tx) && self.try_validation_abort(version);
        if aborted {
            self.convert_writes_to_estimates(version.tx);
        }
        self.finish_validation(version.tx, aborted, w)
    }

    // ---- multi-version memory ----

    /// Makes `writes` the versions of `version`, removes the previous execution's writes it
    /// did not repeat, and keeps `reads`. Returns whether some higher transaction has read a
    /// key that this execution writes and the previous one did not (those must be validated
    /// again).
    fn record(&self, version: Version, reads: ReadSet<K, V>, writes: Vec<(K, V)>) -> bool {
        let tx = version.tx;
        // Held throughout: the only other user at once is a stale validation, which reads.
        let mut recorded = self.txs()[tx as usize].recorded.lock();
        let previous = core::mem::take(&mut recorded.written);
        let mut revalidate = false;
        let mut written = Vec::with_capacity(writes.len());
        for (key, value) in writes {
            let slot = Slot::Written {
                incarnation: version.incarnation,
                value,
            };
            revalidate |= self.with_versions(&key, |id, versions| {
                written.push(id);
                match versions.slot(tx) {
                    Ok(i) => versions.slots[i].1 = slot,
                    Err(i) => versions.slots.insert(i, (tx, slot)),
                }
                let new = previous.binary_search(&id).is_err();
                new && versions.reader.is_some_and(|r| r > tx)
            });
        }
        written.sort_unstable();
        for id in previous {
            if written.binary_search(&id).is_ok() {
                continue;
            }
            self.at(id, |versions| {
                if let Ok(i) = versions.slot(tx) {
                    versions.slots.remove(i);
                }
            });
        }
        recorded.written = written;
        recorded.read.clear();
        let read = reads.seen.into_iter().map(|(id, origin, _)| (id, origin));
        recorded.read.extend(read);
        revalidate
    }

    /// Whether every read of `tx`'s last execution would still find the same version.
    fn validate(&self, tx: u32) -> bool {
        let recorded = self.txs()[tx as usize].recorded.lock();
        recorded.read.iter().all(|(id, origin)| {
            let now = self.at(*id, |versions| {
                versions.origin(tx).map(|(origin, _)| origin)
            });
            now == Ok(*origin)
        })
    }

    fn convert_writes_to_estimates(&self, tx: u32) {
        let recorded = self.txs()[tx as usize].recorded.lock();
        for id in &recorded.written {
            self.at(*id, |versions| {
                if let Ok(i) = versions.slot(tx) {
                    versions.slots[i].1 = Slot::Estimate;
                }
            });
        }
    }

    // ---- scheduler (Block-STM, Algorithm 4 and 5) ----

    fn decrease_execution_idx(&self, target: usize) {
        self.execution_idx.fetch_min(target, SC);
        self.decrease_cnt.fetch_add(1, SC);
    }

    fn decrease_validation_idx(&self, target: usize) {
        self.validation_idx.fetch_min(target, SC);
        self.decrease_cnt.fetch_add(1, SC);
    }

    fn check_done(&self) {
        let observed = self.decrease_cnt.load(SC);
        if self
            .execution_idx
            .load(SC)
            .min(self.validation_idx.load(SC))
            >= self.len
            && self.active[..self.workers.load(SC).min(ACTIVE_SLOTS)]
                .iter()
                .all(|a| a.load(SC) == 0)
            && observed == self.decrease_cnt.load(SC)
        {
            self.done_marker.store(true, SC);
        }
    }

    /// Claims `tx` for execution if it is ready to execute.
    fn try_incarnate(&self, tx: usize) -> Option<Version> {
        let mut status = self.txs().get(tx)?.status.lock();
        (status.1 == Status::ReadyToExecute).then(|| {
            status.1 = Status::Executing;
            Version {
                tx: tx as u32,
                incarnation: status.0,
            }
        })
    }

    /// The validated version of `tx` if its last execution finished.
    fn executed(&self, tx: usize) -> Option<Version> {
        let (incarnation, status) = *self.txs().get(tx)?.status.lock();
        (status == Status::Executed).then_some(Version {
            tx: tx as u32,
            incarnation,
        })
    }

    /// Takes the next index of `index` (the execution or the validation index) for worker
    /// `w`, counted as a task while `claim` decides whether that transaction has one.
    fn next_version(
        &self,
        index: &AtomicUsize,
        w: usize,
        claim: impl FnOnce(usize) -> Option<Version>,
    ) -> Option<Version> {
        if index.load(SC) >= self.len {
            self.check_done();
            return None;
        }
        self.active[w].fetch_add(1, SC);
        let version = claim(index.fetch_add(1, SC));
        if version.is_none() {
            self.active[w].fetch_sub(1, SC);
        }
        version
    }

    fn next_task(&self, w: usize) -> Option<Task> {
        if self.validation_idx.load(SC) < self.execution_idx.load(SC) {
            self.next_version(&self.validation_idx, w, |tx| self.executed(tx))
                .map(Task::Validate)
        } else {
            self.next_version(&self.execution_idx, w, |tx| self.try_incarnate(tx))
                .map(Task::Execute)
        }
    }

    /// `tx` read an estimate of `blocking`: it waits for `blocking`'s next execution (`true`),
    /// or runs again at once if that has finished meanwhile (`false`).
    fn add_dependency(&self, tx: u32, blocking: u32, w: usize) -> bool {
        {
            let mut waiting = self.txs()[blocking as usize].dependencies.lock();
            if self.txs()[blocking as usize].status.lock().1 == Status::Executed {
                return false;
            }
            self.txs()[tx as usize].status.lock().1 = Status::Aborting;
            waiting.push(tx);
        }
        self.active[w].fetch_sub(1, SC);
        true
    }

    fn set_ready_status(&self, tx: u32) {
        let mut status = self.txs()[tx as usize].status.lock();
        *status = (status.0 + 1, Status::ReadyToExecute);
    }

    fn finish_execution(&self, version: Version, revalidate: bool, w: usize) -> Option<Task> {
        let tx = version.tx;
        {
            let mut status = self.txs()[tx as usize].status.lock();
            debug_assert_eq!(*status, (version.incarnation, Status::Executing));
            status.1 = Status::Executed;
        }
        let waiting = core::mem::take(&mut *self.txs()[tx as usize].dependencies.lock());
        if let Some(first) = waiting.iter().min() {
            for d in &waiting {
                self.set_ready_status(*d);
            }
            self.decrease_execution_idx(*first as usize);
        }
        if self.validation_idx.load(SC) > tx as usize {
            if revalidate {
                self.decrease_validation_idx(tx as usize);
            } else {
                return Some(Task::Validate(version));
            }
        }
        self.active[w].fetch_sub(1, SC);
        None
    }

    fn try_validation_abort(&self, version: Version) -> bool {
        let mut status = self.txs()[version.tx as usize].status.lock();
        if *status == (version.incarnation, Status::Executed) {
            status.1 = Status::Aborting;
            true
        } else {
            false
        }
    }

    fn finish_validation(&self, tx: u32, aborted: bool, w: usize) -> Option<Task> {
        if aborted {
            self.set_ready_status(tx);
            self.decrease_validation_idx(tx as usize + 1);
            if self.execution_idx.load(SC) > tx as usize
                && let Some(version) = self.try_incarnate(tx as usize)
            {
                return Some(Task::Execute(version));
            }
        }
        self.active[w].fetch_sub(1, SC);
        None
    }

    /// Takes the block's final writes (the last version of each key) held in part `part` of
    /// `parts` of the memory, once [`Optimistic::done`]: workers call it with their index to
    /// apply the block's effect in parallel. Each key is in exactly one part; the order within
    /// a part is unspecified.
    ///
    /// # Panics
    /// The block is not done.
    pub fn take_writes(&self, part: usize, parts: usize) -> Vec<(K, V)> {
        assert!(
            self.done() && !self.halted.load(SC),
            "optimistic block read before it was done"
        );
        let mut writes = Vec::new();
        for shard in self.shards.iter().skip(part).step_by(parts.max(1)) {
            let mut keys = shard.lock();
            keys.index.clear();
            writes.extend(keys.entries.drain(..).filter_map(|(key, versions)| {
                match versions.slots.into_iter().next_back() {
                    Some((_, Slot::Written { value, .. })) => Some((key, value)),
                    Some((_, Slot::Estimate)) => unreachable!("estimate left in a done block"),
                    None => None,
                }
            }));
        }
        writes
    }

    /// Takes the outputs of transactions `part`, `part + parts`, ..., once
    /// [`Optimistic::done`], passing each to `output` with the transaction's index, and makes
    /// their states ready for the next block (keeping the allocations): workers call it with
    /// their index, in parallel, so that neither handing out the block's outputs nor resetting
    /// its transaction states is serial work. When every part has been taken,
    /// [`Optimistic::finish`] gives no outputs and no [`Finished::critical_path`] (its records
    /// are cleared).
    ///
    /// # Panics
    /// The block is not done, or was halted, or this part was taken before.
    pub fn take_outputs(&self, part: usize, parts: usize, mut output: impl FnMut(usize, O)) {
        assert!(
            self.done() && !self.halted.load(SC),
            "optimistic block's outputs taken before it was done"
        );
        let parts = parts.max(1);
        self.parts.store(parts, SC);
        for (tx, state) in self.txs().iter().enumerate().skip(part).step_by(parts) {
            output(tx, state.take().expect("every transaction executed once"));
        }
        self.parts_taken.fetch_add(1, SC);
    }

    /// The block's result, once [`Optimistic::done`]: what [`Optimistic::take_writes`] and
    /// [`Optimistic::take_outputs`] left. The state can then be [reset](Optimistic::reset)
    /// for another block.
    ///
    /// # Panics
    /// The block is not done, or was halted, or the outputs of some parts but not all were
    /// taken.
    pub fn finish(&mut self) -> Finished<K, V, O> {
        let writes = self.take_writes(0, 1);
        let parts_taken = self.parts_taken.load(SC);
        assert!(
            parts_taken == 0 || parts_taken == self.parts.load(SC),
            "the outputs of {parts_taken} of {} parts taken",
            self.parts.load(SC)
        );
        let taken = parts_taken > 0;
        // Depth of each transaction in the graph of what it read from whom.
        let mut depth = Vec::new();
        let mut outputs = Vec::new();
        if !taken {
            depth.reserve(self.len);
            outputs.reserve(self.len);
            for tx in self.txs() {
                let d = tx
                    .recorded
                    .lock()
                    .read
                    .iter()
                    .filter_map(|(_, origin)| match origin {
                        Origin::Written(v) => depth.get(v.tx as usize).copied(),
                        Origin::Base => None,
                    })
                    .max()
                    .unwrap_or(0)
                    + 1;
                depth.push(d);
                outputs.push(tx.take().expect("every transaction executed once"));
            }
        }
        self.fresh = true;
        Finished {
            writes,
            outputs,
            critical_path: (!taken).then(|| depth.into_iter().max().unwrap_or(0)),
            executions: self.executions.load(Ordering::Relaxed),
            validations: self.validations.load(Ordering::Relaxed),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
