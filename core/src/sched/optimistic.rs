//! Optimistic parallel execution for transactions that declare nothing (Block-STM).
//!
//! Workers execute transactions speculatively against a multi-version memory
//! ([`Optimistic::read`]): a read of transaction `j` sees the latest write of a transaction
//! before `j`, or the base state when there is none. After executing, a transaction's writes
//! become versions of their keys, and its read set is kept. Validation re-reads the read set
//! and compares *versions* (writer and incarnation), never values. A transaction whose read
//! set is stale runs again; while it does, its writes are *estimates*, and a later transaction
//! that reads an estimate stops and waits for the rerun to commit instead of running on values
//! about to change. When every transaction has committed, the last version of each key is the
//! result of executing the block in order.
//!
//! # Scheduling: runs, and commits in block order
//!
//! The multi-version memory, the versions, the estimates and the dependency handling are those
//! of Block-STM (Gelashvili et al., 2022). Its collaborative scheduler is not: there, every
//! worker takes every task from two shared indices (execution and validation), and each
//! transaction's status moves between workers behind a lock, which on two cores made a
//! transaction cost about ten cache misses on lines the other core had just written. Here:
//!
//! - **Execution index.** A worker claims a short run of consecutive transactions at once (one
//!   compare-and-swap per run) and executes the transactions it holds in block order.
//! - **Validation index.** A commit index: the transactions below it are final. A worker
//!   validates a transaction it executed once the commit index reaches it, when every
//!   transaction before it is final, and then moves the index past it. A stale transaction
//!   runs again right there, its writes estimates meanwhile; it reads only final values, so
//!   that execution is final too.
//!
//! A worker that commits a transaction hands its writes and output to the host at once (the
//! host applies the writes to its base state, on the thread that made them, and keeps the
//! output): the block's effect is applied as it commits, and nothing is left to gather at its
//! end. A committed version keeps its place in the memory, without its value: a later read
//! finds the version (for validation) and reads the value from the base state, where it now is.
//!
//! So each transaction is validated exactly once (no validation storms: Block-STM validated up
//! to 4–10 times per execution at 32 threads), a transaction's status and records never leave
//! the worker that holds it, and nothing is ever revalidated: a later transaction that read a
//! value that then changed fails its own validation when its turn comes. Workers run ahead of
//! the commit index by up to [`HELD`] transactions each, so one slow transaction holds back
//! only the commits behind it, not the executions.

use alloc::borrow::ToOwned;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::borrow::Borrow;
use core::hash::{BuildHasher, Hash};
use core::ops::{Deref, DerefMut};

use smallvec::SmallVec;

use super::backoff;
use crate::sync::{AtomicBool, AtomicU32, AtomicUsize, Mutex, Ordering, Padded};

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
    /// The block these keys are of ([`Optimistic::generation`]): a shard is emptied by the
    /// first access of a new block, not by [`Optimistic::reset`].
    generation: u64,
}

/// A key met in the window: its shard, and its place in that shard's entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct KeyId {
    shard: u32,
    entry: u32,
}

/// The position in `locked` (shards and their locks, [`Optimistic::lock_touched`]) of the
/// shard of key `id`.
fn locked_at<G>(locked: &[(u32, G)], id: KeyId) -> usize {
    let at = locked.iter().position(|(shard, _)| *shard == id.shard);
    at.expect("every shard read or written is locked")
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
    /// The key's value: the latest write of an earlier transaction of the block, or the base
    /// state's value.
    Value(V),
    /// An earlier transaction's write is about to change (it is being re-executed): stop
    /// executing and return the [`ReadSet`]; the transaction runs again when that write is
    /// known.
    Blocked,
}

/// The reads of one execution, kept for validation: where each key's value came from. An
/// execution sees one consistent value per key: a key read again gives the first read's value,
/// or, if what the first read found has changed since, stops the execution (it is void, and
/// runs again).
pub struct ReadSet {
    tx: u32,
    /// Key and where its value came from.
    seen: Vec<(KeyId, Origin)>,
    /// Positions in `seen` by key, once it is too long to search.
    index: HashMap<KeyId, usize>,
    blocked: Option<u32>,
    /// Every earlier transaction had committed when the execution began: its reads are final
    /// (the base state holds every earlier write and changes only after it commits), so they
    /// go to the base state and are not kept.
    settled: bool,
}

impl core::fmt::Debug for ReadSet {
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

impl ReadSet {
    /// The reads of an execution of `tx`, whose index (if it needs one) hashes with `hasher`:
    /// a copy of the memory's. A new random state per execution (`HashMap::default()`) read
    /// and wrote the hasher crate's global seed state, a cache line that moved between the
    /// cores with every execution; without `std`, that crate has no per-thread state.
    fn new(tx: u32, settled: bool, hasher: Hasher) -> Self {
        Self {
            tx,
            seen: Vec::new(),
            index: HashMap::with_hasher(hasher),
            blocked: None,
            settled,
        }
    }

    fn find(&self, id: KeyId) -> Option<Origin> {
        if self.seen.len() <= LINEAR {
            self.seen.iter().find(|(k, _)| *k == id).map(|(_, o)| *o)
        } else {
            self.index.get(&id).map(|i| self.seen[*i].1)
        }
    }

    fn push(&mut self, id: KeyId, origin: Origin) {
        if self.seen.len() == LINEAR {
            let positions = self.seen.iter().enumerate().map(|(i, e)| (e.0, i));
            self.index.extend(positions);
        }
        if self.seen.len() >= LINEAR {
            self.index.insert(id, self.seen.len());
        }
        self.seen.push((id, origin));
    }

    /// The transaction executing.
    pub fn tx(&self) -> u32 {
        self.tx
    }

    /// Whether a read found an estimate, or a changed value (the execution is void).
    pub fn is_blocked(&self) -> bool {
        self.blocked.is_some()
    }

    /// Keys read (none for a settled execution, whose reads are not kept).
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
    pub reads: ReadSet,
    /// Its writes, each key once. Ignored when the reads were blocked.
    pub writes: Vec<(K, V)>,
    /// Whatever else the host keeps of it (a receipt); the last execution's is the result.
    /// Ignored when the reads were blocked.
    pub output: O,
}

/// The result of an optimistic block (its writes and outputs went to the host as each
/// transaction committed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// Executions, including those stopped by an estimate.
    pub executions: usize,
    /// Validations.
    pub validations: usize,
    /// The longest chain of transactions each reading what the one before wrote, in the final
    /// executions: the block's true dependency depth (`len / critical_path` is the
    /// parallelism it had). `None` unless [measured](Optimistic::measure_depth).
    pub critical_path: Option<usize>,
}

enum Slot<V> {
    Written {
        incarnation: u32,
        value: V,
    },
    Estimate,
    /// Written by a committed execution, whose value the host's base state now holds.
    Committed {
        incarnation: u32,
    },
}

/// Versions of a key held in place (no allocation): in a block over many keys, most keys are
/// written by one or two transactions.
const INLINE_VERSIONS: usize = 2;

/// The versions of one key, by ascending transaction.
struct Versions<V> {
    slots: SmallVec<[(u32, Slot<V>); INLINE_VERSIONS]>,
}

impl<V> Versions<V> {
    /// Index of the slot of the highest transaction below `tx`, if any.
    fn below(&self, tx: u32) -> Option<usize> {
        self.slots.partition_point(|(t, _)| *t < tx).checked_sub(1)
    }

    /// What a read by `tx` finds: the version it reads from and its value (none when the base
    /// state holds it), or the transaction whose estimate blocks it.
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
            Some((t, Slot::Committed { incarnation })) => Ok((
                Origin::Written(Version {
                    tx: *t,
                    incarnation: *incarnation,
                }),
                None,
            )),
            Some((t, Slot::Estimate)) => Err(*t),
        }
    }

    /// Whether a read by `tx` still finds the version `origin` it found.
    fn still(&self, tx: u32, origin: Origin) -> bool {
        self.origin(tx).map(|(now, _)| now) == Ok(origin)
    }

    /// Index of the slot of `tx` itself, or where it would go.
    fn slot(&self, tx: u32) -> Result<usize, usize> {
        self.slots.binary_search_by_key(&tx, |(t, _)| *t)
    }
}

/// Longest run of transactions a worker claims at once. Short: a transaction reading a key
/// that an earlier transaction of another worker's current run has not written yet must run
/// again, and a run's transactions are executed one after the other (with 10,000 accounts and
/// runs of 4, about one transfer in a thousand).
const RUN: usize = 4;

/// Transactions a worker holds at most (claimed, not yet committed): how far it runs ahead of
/// the commit index while the transaction there is another worker's.
pub const HELD: usize = 64;

/// Workers with slots of their own for the runs they claimed; workers beyond this many share
/// them (still correct).
const WORKER_SLOTS: usize = if cfg!(loom) { 4 } else { 64 };

/// Shards of the multi-version memory (each a lock and a map on its own cache line).
const SHARDS: usize = if cfg!(loom) { 2 } else { 64 };

/// What the last execution of a transaction read and wrote, and its output, until it
/// commits: kept by the worker holding the transaction, in its own memory (a per-transaction
/// state shared by the workers was a cache miss per transaction, its line last written by
/// whichever worker had that transaction's index in the previous block).
struct Recorded<O> {
    /// Ascending.
    written: Vec<KeyId>,
    /// An allocation for the next execution's `written`.
    spare_written: Vec<KeyId>,
    read: Vec<(KeyId, Origin)>,
    output: Option<O>,
}

impl<O> Recorded<O> {
    /// Nothing recorded, the allocations kept.
    fn cleared(mut self) -> Self {
        self.written.clear();
        self.read.clear();
        self.output = None;
        self
    }
}

impl<O> Default for Recorded<O> {
    fn default() -> Self {
        Self {
            written: Vec::new(),
            spare_written: Vec::new(),
            read: Vec::new(),
            output: None,
        }
    }
}

/// Where a held transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// To execute.
    Pending,
    /// Its execution read an estimate of this transaction: to execute again once that one has
    /// committed.
    Blocked(u32),
    /// Executed, waiting for the commit index.
    Executed,
}

/// A transaction a worker holds, with its incarnation (executions recorded before) and what
/// its last execution recorded.
struct Held<O> {
    tx: u32,
    incarnation: u32,
    stage: Stage,
    recorded: Recorded<O>,
}

/// The shared state of one optimistic block: scheduler and multi-version memory. Workers run
/// [`Optimistic::work`] on it concurrently; the host's execute function reads through
/// [`Optimistic::read`].
pub struct Optimistic<K, V> {
    len: usize,
    // Scheduler.
    /// The first transaction not yet claimed.
    next: Padded<AtomicUsize>,
    /// Every transaction below it has committed: its last execution is final.
    committed: Padded<AtomicUsize>,
    /// One more than the highest worker number that has called [`Optimistic::work`] (sizes the
    /// runs near the block's end).
    workers: Padded<AtomicUsize>,
    done_marker: Padded<AtomicBool>,
    halted: AtomicBool,
    /// Per transaction, once committed: its depth in the graph of what read from whom (1 for
    /// a transaction that read no write of the block). Neighbours share lines: they mostly
    /// commit on the same worker.
    depth: Vec<AtomicU32>,
    /// The block being executed, counting resets (see [`Keys::generation`]).
    generation: u64,
    /// Whether the depth of the read-from graph is measured (see
    /// [`Optimistic::measure_depth`]).
    measured: bool,
    // Memory.
    hasher: Hasher,
    shards: Vec<Shard<K, V>>,
    // Statistics.
    executions: Padded<AtomicUsize>,
    validations: Padded<AtomicUsize>,
}

impl<K, V> core::fmt::Debug for Optimistic<K, V> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Optimistic")
            .field("len", &self.len)
            .field("next", &self.next.load(Ordering::Relaxed))
            .field("committed", &self.committed.load(Ordering::Relaxed))
            .field("done", &self.done_marker.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<K, V> Optimistic<K, V>
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
            next: Padded(AtomicUsize::new(0)),
            committed: Padded(AtomicUsize::new(0)),
            workers: Padded(AtomicUsize::new(0)),
            done_marker: Padded(AtomicBool::new(len == 0)),
            halted: AtomicBool::new(false),
            depth: (0..len).map(|_| AtomicU32::new(0)).collect(),
            measured: true,
            generation: 0,
            hasher: Hasher::default(),
            shards: (0..SHARDS)
                // Room for a key per transaction from the start: a block writes about that many,
                // and growing every shard's table from empty rehashed each one several times.
                .map(|_| {
                    Padded(Mutex::new(Keys {
                        index: hashbrown::HashTable::with_capacity(len / SHARDS),
                        entries: Vec::with_capacity(len / SHARDS),
                        generation: 0,
                    }))
                })
                .collect(),
            executions: Padded(AtomicUsize::new(0)),
            validations: Padded(AtomicUsize::new(0)),
        }
    }

    /// Makes this the state of a new block of `len` transactions, none executed, keeping the
    /// allocations of the previous blocks (memory tables and per-transaction depths): a host
    /// running block after block allocates them once (for 10,000 transactions, allocating
    /// took 1 to 1.5 ms, on one thread, before any worker could start). Whatever a halted block
    /// left is discarded.
    ///
    /// # Panics
    /// More than `u32::MAX` transactions.
    pub fn reset(&mut self, len: usize) {
        assert!(u32::try_from(len).is_ok(), "block too large");
        for counter in [
            &self.next,
            &self.committed,
            &self.workers,
            &self.executions,
            &self.validations,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
        self.done_marker.store(len == 0, Ordering::Relaxed);
        self.halted.store(false, Ordering::Relaxed);
        self.len = len;
        if self.depth.len() < len {
            self.depth.resize_with(len, || AtomicU32::new(0));
        }
        // Each shard is emptied by its first access in the new block, by whichever worker makes
        // it: emptying all of them here, touching every entry of the last block (lines the
        // workers last wrote), took 0.3 to 0.5 ms of a 10,000-transaction block before any
        // worker could start.
        self.generation += 1;
    }

    /// Whether blocks measure the depth of their read-from graph ([`Finished::critical_path`];
    /// on from [`new`](Optimistic::new)). Measuring needs every read's writer, so every
    /// read goes through the multi-version memory; unmeasured, an execution that begins when
    /// every earlier transaction has committed reads the base state directly and commits at
    /// once, unvalidated (its reads are final).
    pub fn measure_depth(&mut self, on: bool) {
        self.measured = on;
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
    pub fn reads(&self, tx: u32) -> ReadSet {
        // Acquire: every earlier transaction's writes are in the base state.
        let settled = !self.measured && self.committed.load(Ordering::Acquire) == tx as usize;
        ReadSet::new(tx, settled, self.hasher.clone())
    }

    /// Reads `key` for the execution whose reads are `reads`: the latest value written by an
    /// earlier transaction, or when there is none (or it has committed) the base state's
    /// (`base`, called without any lock held), or [`Read::Blocked`] if that write is an
    /// estimate, or if it changed since this execution first read the key (the execution must
    /// stop).
    pub fn read<Q>(&self, reads: &mut ReadSet, key: &Q, base: impl FnOnce() -> V) -> Read<V>
    where
        K: Borrow<Q> + From<Q::Owned>,
        Q: Hash + Eq + ?Sized + ToOwned,
    {
        if reads.settled {
            return Read::Value(base());
        }
        let tx = reads.tx;
        let (id, found) = self.with_versions(key, |id, versions| {
            let found = versions
                .origin(tx)
                .map(|(origin, value)| (origin, value.cloned()));
            (id, found)
        });
        let (origin, value) = match found {
            Ok(found) => found,
            Err(blocking) => {
                reads.blocked = Some(blocking);
                return Read::Blocked;
            }
        };
        match reads.find(id) {
            None => reads.push(id, origin),
            // The same version: the same value (a version's value never changes; a base value
            // changes only when a version below is committed, which changes the origin).
            Some(first) if first == origin => {}
            // Changed since the first read: void; it runs again once the transaction whose
            // write it read is final.
            Some(first) => {
                let writer = match (first, origin) {
                    (Origin::Written(v), _) | (_, Origin::Written(v)) => v.tx,
                    (Origin::Base, Origin::Base) => unreachable!("the origins differ"),
                };
                reads.blocked = Some(writer);
                return Read::Blocked;
            }
        }
        // A base value read now may be newer than `origin` (a commit in between): the
        // execution then fails validation.
        Read::Value(value.unwrap_or_else(base))
    }

    /// Records that the execution whose reads are `reads` found `key` where `origin` says (the
    /// base state, or a write of an earlier transaction's execution), without reading it: for
    /// a result computed before the block (speculation), whose reads came from the committed
    /// state or from transactions pre-executed before it. False if a read of `key` now finds
    /// another origin, or an estimate: the result cannot stand, and the transaction must
    /// execute (with a new read set). A result whose every read is recorded is validated like
    /// any execution.
    pub fn read_as<Q>(&self, reads: &mut ReadSet, key: &Q, origin: Origin) -> bool
    where
        K: Borrow<Q> + From<Q::Owned>,
        Q: Hash + Eq + ?Sized + ToOwned,
    {
        // Committed versions keep their place in the memory: even a settled execution finds an
        // earlier transaction's write here.
        let tx = reads.tx;
        let (id, found) = self.with_versions(key, |id, versions| {
            (id, versions.origin(tx).map(|(o, _)| o))
        });
        if found != Ok(origin) {
            return false;
        }
        if !reads.settled && reads.find(id).is_none() {
            reads.push(id, origin);
        }
        true
    }

    /// Runs `f` on the id and versions of `key`, under its shard's lock (creating them if
    /// needed).
    fn with_versions<Q, R>(&self, key: &Q, f: impl FnOnce(KeyId, &mut Versions<V>) -> R) -> R
    where
        K: Borrow<Q> + From<Q::Owned>,
        Q: Hash + Eq + ?Sized + ToOwned,
    {
        self.lookup(key, true, |found| {
            let Some((id, versions)) = found else {
                unreachable!("created when missing");
            };
            f(id, versions)
        })
    }

    /// Runs `f` on the id and versions of `key` under its shard's lock, or on `None` if no
    /// transaction of the block has read or written it yet (and `create` is false; otherwise
    /// they are created).
    fn lookup<Q, R>(
        &self,
        key: &Q,
        create: bool,
        f: impl FnOnce(Option<(KeyId, &mut Versions<V>)>) -> R,
    ) -> R
    where
        K: Borrow<Q> + From<Q::Owned>,
        Q: Hash + Eq + ?Sized + ToOwned,
    {
        let hash = self.hasher.hash_one(key);
        // Bits the table does not use for its own buckets and tags.
        let shard = ((hash >> 32) as usize % SHARDS) as u32;
        let mut keys = self.shards[shard as usize].lock();
        if keys.generation != self.generation {
            keys.index.clear();
            keys.entries.clear();
            keys.generation = self.generation;
        }
        let Keys { index, entries, .. } = &mut *keys;
        let entry = match index.find(hash, |i| entries[*i as usize].0.borrow() == key) {
            Some(i) => *i,
            None if !create => return f(None),
            None => {
                // At most one entry per transaction's access, and a block has under 2^32
                // transactions; a shard past 2^32 keys would have exhausted memory first.
                let i = u32::try_from(entries.len()).expect("fewer than 2^32 keys per shard");
                entries.push((
                    K::from(key.to_owned()),
                    Versions {
                        slots: SmallVec::new(),
                    },
                ));
                index.insert_unique(hash, i, |i| self.hasher.hash_one(&entries[*i as usize].0));
                i
            }
        };
        f(Some((
            KeyId { shard, entry },
            &mut entries[entry as usize].1,
        )))
    }

    /// Runs `f` on the versions of key `id`, under its shard's lock.
    fn at<R>(&self, id: KeyId, f: impl FnOnce(&mut Versions<V>) -> R) -> R {
        f(&mut self.shards[id.shard as usize].lock().entries[id.entry as usize].1)
    }

    /// Whether the scheduler has finished: every transaction has committed (or the block was
    /// [halted](Optimistic::halt)).
    pub fn done(&self) -> bool {
        self.done_marker.load(Ordering::Acquire)
    }

    /// Stops every worker in [`Optimistic::work`] at its next step (a worker's execute
    /// failed: the others must not wait for it). The block's result is then incomplete and
    /// [`Optimistic::finish`] panics.
    pub fn halt(&self) {
        self.halted.store(true, Ordering::Release);
        self.done_marker.store(true, Ordering::Release);
    }

    /// Whether the block was [halted](Optimistic::halt).
    pub fn halted(&self) -> bool {
        self.halted.load(Ordering::Acquire)
    }

    /// Worker `worker` (each worker running at once a different number, counting from 0):
    /// claims runs of transactions, executes them and commits them, until every transaction of
    /// the block has committed. `execute` runs one execution of a transaction (it may run on
    /// several workers at once, for different transactions) reading through
    /// [`Optimistic::read`] with the read set from [`Optimistic::reads`]. As the worker commits
    /// a transaction, it passes each of its final writes to `write` (which must apply it to the
    /// base state that [`Optimistic::read`]'s `base` reads: reads of the key then find it
    /// there) and its output to `output`, with its index; commits come in block order, from
    /// whichever worker executed the transaction. While it has nothing to do the worker spins,
    /// calling `idle` every 64 spins (a host yields the thread there).
    ///
    /// It never waits forever: the transaction at the commit index has every transaction
    /// before it final, so whoever holds it can execute (or re-execute) and commit it, and if
    /// nobody holds it, everything claimed before it has committed and a worker claims it.
    pub fn work<O>(
        &self,
        worker: usize,
        execute: impl FnMut(Version) -> Executed<K, V, O>,
        write: impl FnMut(&K, V),
        output: impl FnMut(u32, O),
        idle: impl FnMut(),
    ) {
        self.work_validating(worker, execute, |_, _| true, write, output, idle);
    }

    /// As [`Optimistic::work`], with reads the memory does not see validated by the host:
    /// when transaction `tx` comes to validation (every transaction before it committed, and
    /// the base state holding all their writes), `valid(tx, &output)` says whether what its
    /// execution read beyond its keys (range scans, validated by re-running them) is still
    /// what it would read now; if not, the transaction runs again, as when a read's version
    /// changed. Executions whose reads were settled are not asked: they read final state.
    pub fn work_validating<O>(
        &self,
        worker: usize,
        mut execute: impl FnMut(Version) -> Executed<K, V, O>,
        mut valid: impl FnMut(u32, &O) -> bool,
        mut write: impl FnMut(&K, V),
        mut output: impl FnMut(u32, O),
        mut idle: impl FnMut(),
    ) {
        let slot = worker % WORKER_SLOTS;
        self.workers.fetch_max(slot + 1, Ordering::Relaxed);
        // Claimed and not yet committed, ascending.
        let mut held: VecDeque<Held<O>> = VecDeque::with_capacity(HELD);
        // Records of committed transactions, cleared, for the next ones (their allocations).
        let mut spare: Vec<Recorded<O>> = Vec::with_capacity(HELD);
        let mut spins = 0u32;
        // Counted here and added once: a shared counter would be a contended
        // read-modify-write per execution.
        let (mut executions, mut validations) = (0, 0);
        while !self.halted.load(Ordering::Relaxed) {
            // Acquire: the final versions of every transaction below it are visible.
            let committed = self.committed.load(Ordering::Acquire);
            if let Some(front) = held.front_mut()
                && front.stage == Stage::Executed
                && front.tx as usize == committed
            {
                validations += 1;
                let holds = front
                    .recorded
                    .output
                    .as_ref()
                    .is_none_or(|o| valid(front.tx, o));
                if holds
                    && self.validate_and_commit(
                        front.tx,
                        &mut front.recorded,
                        &mut write,
                        &mut output,
                    )
                {
                    if let Some(done) = held.pop_front() {
                        spare.push(done.recorded.cleared());
                    }
                } else {
                    // Runs again next, reading only final values; readers of its writes wait
                    // for that execution meanwhile.
                    self.convert_writes_to_estimates(front.tx, &front.recorded);
                    front.incarnation += 1;
                    front.stage = Stage::Pending;
                }
                spins = 0;
                continue;
            }
            let runnable = |h: &&mut Held<O>| match h.stage {
                Stage::Pending => true,
                Stage::Blocked(on) => (on as usize) < committed,
                Stage::Executed => false,
            };
            if let Some(h) = held.iter_mut().find(runnable) {
                executions += 1;
                if self.execute(h, &mut execute, &mut write, &mut output) {
                    // Committed at once: it was at the commit index, so first in `held`.
                    if let Some(done) = held.pop_front() {
                        spare.push(done.recorded.cleared());
                    }
                }
                spins = 0;
                continue;
            }
            if held.len() + RUN <= HELD
                && let Some(run) = super::claim_run(
                    &self.next,
                    self.len,
                    self.workers.load(Ordering::Relaxed),
                    |_| RUN,
                )
            {
                held.extend(run.map(|tx| Held {
                    tx,
                    incarnation: 0,
                    stage: Stage::Pending,
                    recorded: spare.pop().unwrap_or_default(),
                }));
                continue;
            }
            if held.is_empty() && self.done() {
                break;
            }
            backoff(&mut spins, &mut idle);
        }
        self.executions.fetch_add(executions, Ordering::Relaxed);
        self.validations.fetch_add(validations, Ordering::Relaxed);
    }

    /// Executes `held` (its incarnation) and records its writes, reads and output, unless a
    /// read was blocked: then it waits for the blocking transaction to commit. An execution
    /// whose reads were settled commits at once (`true`).
    fn execute<O>(
        &self,
        held: &mut Held<O>,
        execute: &mut impl FnMut(Version) -> Executed<K, V, O>,
        write: &mut impl FnMut(&K, V),
        output: &mut impl FnMut(u32, O),
    ) -> bool {
        let version = Version {
            tx: held.tx,
            incarnation: held.incarnation,
        };
        let Executed {
            reads,
            writes,
            output: out,
        } = execute(version);
        debug_assert_eq!(reads.tx, version.tx, "read set of another transaction");
        if reads.settled {
            self.commit_settled(version, writes, out, &mut held.recorded, write, output);
            return true;
        }
        held.stage = match reads.blocked {
            Some(blocking) => Stage::Blocked(blocking),
            None => {
                self.record(version, reads, writes, out, &mut held.recorded);
                Stage::Executed
            }
        };
        false
    }

    /// Commits `version`, executed when every earlier transaction had committed: its writes
    /// go to `write`, its output to `output`. A written key that a later transaction has read
    /// (or written) already gets a committed version, so that the reader fails validation; a
    /// key no transaction has met yet gets none: whoever reads it later finds the value in the
    /// base state (written under the key's shard lock, which a reader takes before it looks).
    fn commit_settled<O>(
        &self,
        version: Version,
        writes: Vec<(K, V)>,
        out: O,
        recorded: &mut Recorded<O>,
        write: &mut impl FnMut(&K, V),
        output: &mut impl FnMut(u32, O),
    ) {
        let tx = version.tx;
        // Estimates of an earlier execution, if it failed validation.
        let previous = core::mem::take(&mut recorded.written);
        let mut written = Vec::new();
        for (key, value) in writes {
            self.lookup(&key, false, |found| {
                if let Some((id, versions)) = found {
                    if !previous.is_empty() {
                        written.push(id);
                    }
                    let slot = Slot::Committed {
                        incarnation: version.incarnation,
                    };
                    match versions.slot(tx) {
                        Ok(i) => versions.slots[i].1 = slot,
                        Err(i) => versions.slots.insert(i, (tx, slot)),
                    }
                }
                // Under the key's lock: a read that finds the version committed, or the key
                // new to the block, finds the value in the base state.
                write(&key, value);
            });
        }
        self.remove_unrepeated(tx, &previous, &mut written);
        output(tx, out);
        self.advance(tx);
    }

    /// Validates `tx`'s last execution, every earlier transaction having committed, and if its
    /// reads still find the versions they found, commits it: hands its writes to `write` and
    /// its output to `output`, and moves the commit index past it (`true`). The shards of
    /// every key it read or wrote are locked once, together (in ascending order: no other
    /// path holds two), for both: a transfer reads the keys it writes.
    fn validate_and_commit<O>(
        &self,
        tx: u32,
        recorded: &mut Recorded<O>,
        write: &mut impl FnMut(&K, V),
        output: &mut impl FnMut(u32, O),
    ) -> bool {
        let mut locked = self.lock_touched(recorded);
        if !Self::reads_hold(tx, recorded, &locked) {
            return false;
        }
        if self.measured {
            // Every transaction it read from has committed, its depth known.
            let depth = recorded
                .read
                .iter()
                .filter_map(|(_, origin)| match origin {
                    Origin::Written(v) => Some(self.depth[v.tx as usize].load(Ordering::Relaxed)),
                    Origin::Base => None,
                })
                .max()
                .unwrap_or(0)
                + 1;
            self.depth[tx as usize].store(depth, Ordering::Relaxed);
        }
        for id in &recorded.written {
            let i = locked_at(&locked, *id);
            let (key, versions) = &mut locked[i].1.entries[id.entry as usize];
            let Ok(i) = versions.slot(tx) else {
                unreachable!("a recorded write has its version");
            };
            let slot = &mut versions.slots[i].1;
            if let Slot::Written { incarnation, .. } = *slot {
                let Slot::Written { value, .. } =
                    core::mem::replace(slot, Slot::Committed { incarnation })
                else {
                    unreachable!("matched above");
                };
                // Under the key's lock: a read that finds the version committed finds the value
                // in the base state.
                write(key, value);
            }
        }
        drop(locked);
        let out = recorded
            .output
            .take()
            .expect("an executed transaction has its output");
        output(tx, out);
        self.advance(tx);
        true
    }

    /// Moves the commit index past `tx`, just committed.
    fn advance(&self, tx: u32) {
        let next = tx as usize + 1;
        // Release: the versions `tx` wrote, and its writes to the base state, are visible to
        // whoever sees it committed.
        self.committed.store(next, Ordering::Release);
        if next == self.len {
            self.done_marker.store(true, Ordering::Release);
        }
    }

    // ---- multi-version memory ----

    /// Makes `writes` the versions of `version`, removes the previous execution's writes it
    /// did not repeat, and keeps `reads` and `output`.
    fn record<O>(
        &self,
        version: Version,
        reads: ReadSet,
        writes: Vec<(K, V)>,
        output: O,
        recorded: &mut Recorded<O>,
    ) {
        let tx = version.tx;
        // This execution's writes go where the previous one's were listed (its allocation),
        // those moved out to be compared.
        let previous = core::mem::take(&mut recorded.written);
        let mut written = core::mem::take(&mut recorded.spare_written);
        written.clear();
        for (key, value) in writes {
            let slot = Slot::Written {
                incarnation: version.incarnation,
                value,
            };
            self.with_versions(&key, |id, versions| {
                written.push(id);
                match versions.slot(tx) {
                    Ok(i) => versions.slots[i].1 = slot,
                    Err(i) => versions.slots.insert(i, (tx, slot)),
                }
            });
        }
        self.remove_unrepeated(tx, &previous, &mut written);
        recorded.written = written;
        recorded.spare_written = previous;
        recorded.read.clear();
        recorded.read.extend(reads.seen);
        recorded.output = Some(output);
    }

    /// Removes the versions of `tx` at `previous` (its previous execution's writes) that are
    /// not in `written` (this execution's); sorts `written`.
    fn remove_unrepeated(&self, tx: u32, previous: &[KeyId], written: &mut [KeyId]) {
        written.sort_unstable();
        for &id in previous {
            if written.binary_search(&id).is_ok() {
                continue;
            }
            self.at(id, |versions| {
                if let Ok(i) = versions.slot(tx) {
                    versions.slots.remove(i);
                }
            });
        }
    }

    /// The shards of every key `recorded` read or wrote, each locked once, in ascending order
    /// (no other path holds two).
    fn lock_touched<O>(
        &self,
        recorded: &Recorded<O>,
    ) -> SmallVec<[(u32, impl DerefMut<Target = Keys<K, V>> + '_); 8]> {
        let mut shards: SmallVec<[u32; 8]> = (recorded.read.iter().map(|(id, _)| id.shard))
            .chain(recorded.written.iter().map(|id| id.shard))
            .collect();
        shards.sort_unstable();
        shards.dedup();
        shards
            .into_iter()
            .map(|shard| (shard, self.shards[shard as usize].lock()))
            .collect()
    }

    /// Whether every read of `tx`'s last execution still finds the version it found, the
    /// shards it touched `locked` ([`Optimistic::lock_touched`]).
    fn reads_hold<O>(
        tx: u32,
        recorded: &Recorded<O>,
        locked: &[(u32, impl Deref<Target = Keys<K, V>>)],
    ) -> bool {
        recorded.read.iter().all(|(id, origin)| {
            let keys = &locked[locked_at(locked, *id)].1;
            keys.entries[id.entry as usize].1.still(tx, *origin)
        })
    }

    /// Whether every read of `tx`'s last execution would still find the same version: the
    /// check of [`Optimistic::validate_and_commit`], without the commit (for the unit tests,
    /// which loom builds leave out).
    #[cfg(all(test, not(loom)))]
    fn validate<O>(&self, tx: u32, recorded: &Recorded<O>) -> bool {
        Self::reads_hold(tx, recorded, &self.lock_touched(recorded))
    }

    /// Turns the versions `tx`'s last execution wrote into estimates (it runs again).
    fn convert_writes_to_estimates<O>(&self, tx: u32, recorded: &Recorded<O>) {
        for id in &recorded.written {
            self.at(*id, |versions| {
                if let Ok(i) = versions.slot(tx) {
                    versions.slots[i].1 = Slot::Estimate;
                }
            });
        }
    }

    /// The block's statistics, once [`Optimistic::done`] (its writes and outputs went to the
    /// workers' `write` and `output` as it committed). The state can then be
    /// [reset](Optimistic::reset) for another block.
    ///
    /// # Panics
    /// The block is not done, or was halted.
    pub fn finish(&mut self) -> Finished {
        assert!(
            self.done() && !self.halted(),
            "optimistic block finished before it was done"
        );
        Finished {
            critical_path: self.measured.then(|| {
                self.depth[..self.len]
                    .iter()
                    .map(|d| d.load(Ordering::Relaxed) as usize)
                    .max()
                    .unwrap_or(0)
            }),
            executions: self.executions.load(Ordering::Relaxed),
            validations: self.validations.load(Ordering::Relaxed),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
