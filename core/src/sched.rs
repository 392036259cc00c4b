//! Parallel block scheduling with declared access sets, threadless: the host brings the threads.
//!
//! Each transaction declares the keys it reads and writes ([`AccessSet`], as in Sealevel).
//! [`Dag::build`] turns a block into a dependency graph in one pass over it, keeping per key
//! the last writer and the readers since: a transaction depends on the last earlier writer of
//! every key it touches, and a writer also on every reader since that writer. Executing each
//! transaction after its dependencies then gives the result of executing the block in order.
//!
//! [`Claims`] hands transactions to workers and takes completions back, in one of two
//! [strategies](Strategy) chosen from the graph: runs of consecutive transactions with done
//! bits where dependencies are mostly far apart, per-worker ready queues where they are near.
//! Neither has a barrier between "batches": a slow transaction holds back only its
//! dependants. The Sealevel view (maximal sets of mutually independent transactions, run batch
//! after batch) is [`Dag::batches`], for callers that want it and for comparison.
//!
//! [`simulate`] replays a block's dependencies and measured costs on any number of virtual
//! workers, to predict speedup beyond the machine's cores.
//!
//! Transactions that declare nothing run optimistically instead ([`optimistic`], Block-STM):
//! speculative execution against multi-version memory, validation by versions, re-execution.
//! [`Dag::build_partial`] makes such transactions barriers, for hosts that mix them into a
//! declared block.

use alloc::collections::{BinaryHeap, VecDeque};
use alloc::vec;
use alloc::vec::Vec;
use core::cmp::Reverse;

use core::hash::BuildHasher;

use crate::sync::{AtomicBool, AtomicU32, AtomicUsize, Mutex, Ordering, Padded};

pub mod optimistic;

/// Most keys a transaction may declare, reads and writes together ([`AccessSet::check`]).
pub const MAX_ACCESS_KEYS: usize = 1024;

/// Most bytes of keys a transaction may declare, reads and writes together
/// ([`AccessSet::check`]): room for three keys of the longest a contract may use (a 32-byte
/// namespace and [`MAX_KEY_BYTES`](crate::abi::MAX_KEY_BYTES)), or a thousand of 256 bytes.
pub const MAX_ACCESS_KEY_BYTES: usize = 256 << 10;

/// Sets of at most this many keys are scanned by [`AccessIndex`] rather than searched: fewer
/// comparisons than a search would make in the cache lines it touches, and no allocation.
const SCAN: usize = 8;

/// The keys a transaction reads and writes. A key both read and written need only be declared
/// as written. A host schedules only sets within the bounds [`AccessSet::check`] checks, and
/// checks accesses during execution through an [`AccessIndex`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessSet {
    /// Keys read.
    pub reads: Vec<Vec<u8>>,
    /// Keys written (and possibly read).
    pub writes: Vec<Vec<u8>>,
}

impl AccessSet {
    /// Whether `key` may be read. Scans the set: for lookups during execution, see
    /// [`AccessIndex`].
    pub fn may_read(&self, key: &[u8]) -> bool {
        self.reads.iter().chain(&self.writes).any(|k| k == key)
    }

    /// Whether `key` may be written. Scans the set, as [`AccessSet::may_read`].
    pub fn may_write(&self, key: &[u8]) -> bool {
        self.writes.iter().any(|k| k == key)
    }

    /// Whether two transactions conflict (one writes a key the other touches).
    pub fn conflicts(&self, other: &AccessSet) -> bool {
        self.writes.iter().any(|k| other.may_read(k))
            || other.writes.iter().any(|k| self.may_read(k))
    }

    /// Checks the set's bounds: at most [`MAX_ACCESS_KEYS`] keys and [`MAX_ACCESS_KEY_BYTES`]
    /// bytes of keys. Takes time in the number of keys only up to the bound.
    ///
    /// # Errors
    /// Which bound the set exceeds.
    pub fn check(&self) -> Result<(), AccessSetError> {
        let keys = self.reads.len().saturating_add(self.writes.len());
        if keys > MAX_ACCESS_KEYS {
            return Err(AccessSetError::TooManyKeys { keys });
        }
        let bytes = self.writes.iter().chain(&self.reads).map(Vec::len).sum();
        if bytes > MAX_ACCESS_KEY_BYTES {
            return Err(AccessSetError::TooManyKeyBytes { bytes });
        }
        Ok(())
    }

    /// The key at `position`: writes first, then reads.
    fn key(&self, position: u32) -> Option<&[u8]> {
        let p = position as usize;
        match p.checked_sub(self.writes.len()) {
            None => self.writes.get(p),
            Some(r) => self.reads.get(r),
        }
        .map(Vec::as_slice)
    }
}

/// Why a transaction's [`AccessSet`] is refused: it is over a bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccessSetError {
    /// More than [`MAX_ACCESS_KEYS`] keys.
    TooManyKeys {
        /// Keys declared.
        keys: usize,
    },
    /// More than [`MAX_ACCESS_KEY_BYTES`] bytes of keys.
    TooManyKeyBytes {
        /// Bytes of keys declared.
        bytes: usize,
    },
}

impl AccessSetError {
    /// The stable name of the refusal, as a receipt reports it.
    pub fn name(&self) -> &'static str {
        "access_set_too_large"
    }
}

impl core::fmt::Display for AccessSetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let name = self.name();
        match self {
            AccessSetError::TooManyKeys { keys } => {
                write!(f, "{name}: {keys} keys declared, at most {MAX_ACCESS_KEYS}")
            }
            AccessSetError::TooManyKeyBytes { bytes } => write!(
                f,
                "{name}: {bytes} bytes of keys declared, at most {MAX_ACCESS_KEY_BYTES}"
            ),
        }
    }
}

impl core::error::Error for AccessSetError {}

/// Lookups in an [`AccessSet`] within its bounds in O(log n) comparisons of keys, where
/// [`AccessSet::may_read`] scans: what a host checks every storage access of a transaction
/// against. Made once per transaction ([`AccessIndex::new`]); holds positions in the set, not
/// keys, so it must be asked with the set it was made from (with another, its answers are
/// meaningless, though it never panics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessIndex {
    /// Positions of the keys (writes first, then reads; see [`AccessSet::key`]), ordered by
    /// key and, among equal keys, writes first. Empty for a set of at most [`SCAN`] keys,
    /// which lookups scan.
    sorted: Vec<u32>,
}

impl AccessIndex {
    /// The index of `set`, after checking its bounds ([`AccessSet::check`]).
    ///
    /// # Errors
    /// The set is over a bound.
    pub fn new(set: &AccessSet) -> Result<Self, AccessSetError> {
        set.check()?;
        let n = set.writes.len() + set.reads.len();
        if n <= SCAN {
            return Ok(Self::default());
        }
        // Fewer than MAX_ACCESS_KEYS positions: each fits a u32.
        let mut sorted: Vec<u32> = (0..n as u32).collect();
        let writes = set.writes.len() as u32;
        sorted
            .sort_unstable_by(|a, b| (set.key(*a), *a >= writes).cmp(&(set.key(*b), *b >= writes)));
        Ok(Self { sorted })
    }

    /// Whether `set` (the set the index was made from) lets `key` be read.
    pub fn may_read(&self, set: &AccessSet, key: &[u8]) -> bool {
        self.find(set, key, &mut 0).is_some()
    }

    /// Whether `set` (the set the index was made from) lets `key` be written.
    pub fn may_write(&self, set: &AccessSet, key: &[u8]) -> bool {
        self.find(set, key, &mut 0) == Some(true)
    }

    /// Whether `key` is declared (`Some`) and written (`Some(true)`), counting the keys
    /// compared in `probes`.
    fn find(&self, set: &AccessSet, key: &[u8], probes: &mut usize) -> Option<bool> {
        let equal = |k: &[u8], probes: &mut usize| {
            *probes += 1;
            k == key
        };
        if self.sorted.is_empty() {
            if set.writes.iter().any(|k| equal(k, probes)) {
                return Some(true);
            }
            return set.reads.iter().any(|k| equal(k, probes)).then_some(false);
        }
        // The first position whose key is not below `key`: a write of it, if there is one.
        let first = self.sorted.partition_point(|p| {
            *probes += 1;
            set.key(*p).is_some_and(|k| k < key)
        });
        let p = *self.sorted.get(first)?;
        equal(set.key(p)?, probes).then_some((p as usize) < set.writes.len())
    }
}

/// Per key, while building a [`Dag`]: the key, its last writer and the readers since (a
/// list in [`Builder::readers`], reused once a writer clears it).
struct KeyState<'a> {
    key: &'a [u8],
    writer: u32,
    readers: u32,
}

/// No transaction (a [`KeyState`] without a writer or without readers).
const NONE: u32 = u32::MAX;

/// The key table of a [`Dag`] being built.
struct Builder<'a> {
    hasher: hashbrown::DefaultHashBuilder,
    keys: hashbrown::HashTable<KeyState<'a>>,
    /// Reader lists; `free` are those a writer cleared.
    readers: Vec<Vec<u32>>,
    free: Vec<u32>,
}

impl<'a> Builder<'a> {
    /// The state of `key`, whose hash is `hash`, in `keys` (hashed by `hasher`), added if new.
    fn entry<'t>(
        keys: &'t mut hashbrown::HashTable<KeyState<'a>>,
        hasher: &hashbrown::DefaultHashBuilder,
        key: &'a [u8],
        hash: u64,
    ) -> &'t mut KeyState<'a> {
        keys.entry(hash, |k| k.key == key, |k| hasher.hash_one(k.key))
            .or_insert(KeyState {
                key,
                writer: NONE,
                readers: NONE,
            })
            .into_mut()
    }

    /// Adds to `mine` the transactions before `i` that `set` conflicts with (per key: the last
    /// writer, and for a write the readers since), and records `i`'s accesses. `hashes` are
    /// the hashes of `set`'s writes, then of its reads.
    fn key_dependencies(
        &mut self,
        set: &'a AccessSet,
        hashes: &[u64],
        i: u32,
        mine: &mut Vec<u32>,
    ) {
        let (writes, reads) = hashes.split_at(set.writes.len());
        for (key, &hash) in set.writes.iter().zip(writes) {
            let k = Self::entry(&mut self.keys, &self.hasher, key, hash);
            if k.writer == i {
                continue; // declared twice
            }
            let (writer, readers) = (k.writer, core::mem::replace(&mut k.readers, NONE));
            k.writer = i;
            mine.extend((writer != NONE).then_some(writer));
            if readers != NONE {
                let list = &mut self.readers[readers as usize];
                mine.extend(list.iter().copied().filter(|r| *r != i));
                list.clear();
                self.free.push(readers);
            }
        }
        for (key, &hash) in set.reads.iter().zip(reads) {
            let k = Self::entry(&mut self.keys, &self.hasher, key, hash);
            if k.writer == i {
                continue; // also written: covered above
            }
            mine.extend((k.writer != NONE).then_some(k.writer));
            if k.readers == NONE {
                k.readers = match self.free.pop() {
                    Some(free) => free,
                    None => {
                        self.readers.push(Vec::new());
                        (self.readers.len() - 1) as u32
                    }
                };
            }
            let list = &mut self.readers[k.readers as usize];
            if list.last() != Some(&i) {
                list.push(i);
            }
        }
    }
}

/// The dependency graph of a block: for each transaction, the earlier transactions it must
/// follow, and the later ones that follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dag {
    /// Dependencies of transaction `i`: `dependencies[dep_offsets[i]..dep_offsets[i + 1]]`
    /// (ascending).
    dep_offsets: Vec<u32>,
    dependencies: Vec<u32>,
    /// Dependants of transaction `i`: `dependents[offsets[i]..offsets[i + 1]]` (ascending).
    offsets: Vec<u32>,
    dependents: Vec<u32>,
}

impl Dag {
    /// The graph of a block whose transactions access `sets`, in block order.
    ///
    /// # Panics
    /// More than `u32::MAX` transactions.
    pub fn build(sets: &[AccessSet]) -> Dag {
        Self::build_partial(sets.iter().map(Some))
    }

    /// The graph of a block in which some transactions declare nothing (`None`): such a
    /// transaction may touch any key, so it follows every transaction before it and precedes
    /// every transaction after it (a barrier).
    ///
    /// # Panics
    /// More than `u32::MAX` transactions.
    pub fn build_partial<'a>(sets: impl ExactSizeIterator<Item = Option<&'a AccessSet>>) -> Dag {
        let sets: Vec<Option<&AccessSet>> = sets.collect();
        let n = sets.len();
        assert!(u32::try_from(n).is_ok(), "block too large");
        let mut table = Builder {
            hasher: Default::default(),
            keys: hashbrown::HashTable::with_capacity(n),
            readers: Vec::new(),
            free: Vec::new(),
        };
        // Every key's hash first, in a loop whose iterations do not depend on each other: the
        // processor overlaps their cache misses (the keys are scattered over the block's
        // allocations), where the table's loop below would wait for each in turn.
        let hashes: Vec<u64> = sets
            .iter()
            .flatten()
            .flat_map(|s| s.writes.iter().chain(&s.reads))
            .map(|k| table.hasher.hash_one(k.as_slice()))
            .collect();
        let mut hashed = 0;
        let mut edges: Vec<(u32, u32)> = Vec::with_capacity(n);
        let mut dep_offsets = Vec::with_capacity(n + 1);
        dep_offsets.push(0u32);
        let mut mine: Vec<u32> = Vec::new();
        // The last barrier, and the transactions since it.
        let mut barrier: Option<u32> = None;
        let mut since: Vec<u32> = Vec::new();
        for (i, set) in sets.into_iter().enumerate() {
            let i = i as u32;
            mine.clear();
            match set {
                None => {
                    // After everything since the last barrier (or after that barrier).
                    if since.is_empty() {
                        mine.extend(barrier);
                    }
                    mine.append(&mut since);
                    barrier = Some(i);
                    table.keys.clear();
                    table.readers.clear();
                    table.free.clear();
                }
                Some(set) => {
                    mine.extend(barrier);
                    let keys = set.writes.len() + set.reads.len();
                    let hashes = &hashes[hashed..hashed + keys];
                    hashed += keys;
                    table.key_dependencies(set, hashes, i, &mut mine);
                    since.push(i);
                }
            }
            mine.sort_unstable();
            mine.dedup();
            edges.extend(mine.iter().map(|d| (*d, i)));
            dep_offsets.push(edges.len() as u32);
        }
        // Compressed rows of dependants, by counting: edges come in ascending dependant order,
        // so placing them in that order keeps every row ascending (no sort).
        let mut offsets = vec![0u32; n + 1];
        for (from, _) in &edges {
            offsets[*from as usize + 1] += 1;
        }
        for i in 0..n {
            offsets[i + 1] += offsets[i];
        }
        let mut next = offsets.clone();
        let mut dependents = vec![0u32; edges.len()];
        let mut dependencies = Vec::with_capacity(edges.len());
        for (from, to) in edges {
            let slot = &mut next[from as usize];
            dependents[*slot as usize] = to;
            *slot += 1;
            dependencies.push(from);
        }
        Dag {
            dep_offsets,
            dependencies,
            offsets,
            dependents,
        }
    }

    /// Transactions in the block.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Whether the block is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Edges in the graph.
    pub fn edges(&self) -> usize {
        self.dependents.len()
    }

    /// The transactions `tx` waits for, ascending.
    pub fn dependencies(&self, tx: u32) -> &[u32] {
        let (a, b) = (
            self.dep_offsets[tx as usize],
            self.dep_offsets[tx as usize + 1],
        );
        &self.dependencies[a as usize..b as usize]
    }

    /// The transactions that wait for `tx`, ascending.
    pub fn dependents(&self, tx: u32) -> &[u32] {
        let (a, b) = (self.offsets[tx as usize], self.offsets[tx as usize + 1]);
        &self.dependents[a as usize..b as usize]
    }

    /// Depth of every transaction in the graph (0 for those that depend on nothing).
    fn levels(&self) -> Vec<u32> {
        let mut level = vec![0u32; self.len()];
        for tx in 0..self.len() as u32 {
            let l = level[tx as usize] + 1;
            for d in self.dependents(tx) {
                let dl = &mut level[*d as usize];
                *dl = (*dl).max(l);
            }
        }
        level
    }

    /// The Sealevel view: transactions grouped by depth in the graph. Transactions of one batch
    /// never conflict, and running the batches in order, each in any order or in parallel,
    /// gives the block's sequential result.
    pub fn batches(&self) -> Vec<Vec<u32>> {
        let levels = self.levels();
        let depth = levels.iter().max().map_or(0, |l| *l as usize + 1);
        let mut batches: Vec<Vec<u32>> = vec![Vec::new(); depth];
        for (tx, l) in levels.into_iter().enumerate() {
            batches[l as usize].push(tx as u32);
        }
        batches
    }

    /// Length of the longest dependency chain (in transactions).
    pub fn critical_path(&self) -> usize {
        self.levels()
            .into_iter()
            .max()
            .map_or(0, |l| l as usize + 1)
    }
}

/// Transactions a worker claims at once in [`Strategy::Runs`], at most: one word of done
/// bits, which then only that worker writes.
const GROUP: usize = usize::BITS as usize;

/// Claimed transactions a worker holds at most in [`Strategy::Runs`] before it waits for one of
/// them instead of claiming more.
const HELD: usize = 2 * GROUP;

/// Transactions that depend on nothing a worker claims at once in [`Strategy::Ready`], at
/// most.
const ROOT_RUN: usize = 32;

/// Finished transactions a worker counts in [`Strategy::Ready`] before it reports them to the
/// shared count (a read-modify-write of a line every worker writes).
const REPORT: usize = 16;

/// Worker slots with a queue of their own, at most; workers beyond the expected number (or
/// this many) share them (still correct).
const QUEUES: usize = if cfg!(loom) { 4 } else { 64 };

/// Ordering of the values workers only look at to decide whether to look further (a queue's
/// length, the unfinished count, the next unclaimed run): they are never relied on to see
/// data, which the done bits, the queues' locks and the pending counts publish. loom explores
/// every stale value a relaxed load may return, which for a spinning worker has no end;
/// sequential consistency there keeps the models finite.
pub(crate) const ADVISORY: Ordering = if cfg!(loom) {
    Ordering::SeqCst
} else {
    Ordering::Relaxed
};

/// How [`Claims`] hands transactions to workers. Both run every transaction once, after its
/// dependencies, with no barrier between "batches"; [`Strategy::for_graph`] picks the cheaper
/// for a graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Workers claim runs of consecutive transactions (up to a word of bits, 64; one
    /// compare-and-swap of a shared index per run) and execute each transaction they hold once
    /// its dependencies have run, the lowest first; finishing one sets its bit in a word of done
    /// bits that, away from the block's end, only that worker writes. A worker whose held
    /// transactions all wait claims the next run (up to 128 held). Cheapest, and each
    /// worker walks the block in order (neighbouring transactions share cache lines of their
    /// data), but a worker finds nothing to run beyond what it holds: for graphs whose
    /// dependencies are mostly far apart.
    Runs,
    /// A worker keeps the transactions its completions make ready (the last of their
    /// dependencies) in a queue of its own, lowest first, claims runs of those that depend on
    /// nothing, and takes another worker's lowest when it has nothing else: no bound on how
    /// far ahead a ready transaction may be, for dense graphs. A transaction costs a
    /// `fetch_sub` per dependant (on counters that the finishers of its dependencies share),
    /// uncontended locks of its worker's queue and a share of a batched report of finished
    /// transactions.
    Ready,
}

impl Strategy {
    /// The strategy for `dag`'s transactions from `done` on, drained by about `workers`
    /// workers: [`Strategy::Runs`] when at most half of them depend on a transaction fewer
    /// than 64 × `workers` before them (about what the other workers' current runs
    /// hold), else [`Strategy::Ready`]. In blocks of 10,000 transfers, one in twenty does at
    /// 10,000 accounts and two in five at 1,000, where runs keep the workers at what
    /// independent copies of the block reach; at 100 accounts nearly every one does, and runs
    /// left workers waiting on each other's (1.26 times sequential speed on two threads, where
    /// ready queues reach 1.6).
    pub fn for_graph(dag: &Dag, done: usize, workers: usize) -> Self {
        let reach = (GROUP * workers.max(1)) as u32;
        let near = (done as u32..dag.len() as u32)
            .filter(|tx| {
                // Ascending: the last is the nearest.
                (dag.dependencies(*tx).last()).is_some_and(|d| tx - d < reach)
            })
            .count();
        if 2 * near <= dag.len() - done {
            Strategy::Runs
        } else {
            Strategy::Ready
        }
    }
}

/// A worker's ready transactions ([`Strategy::Ready`]), lowest first, and how many there are
/// (read without the lock by workers looking for something to take; exact under the lock).
#[derive(Debug, Default)]
struct Queue {
    ready: Mutex<BinaryHeap<Reverse<u32>>>,
    len: AtomicUsize,
}

impl Queue {
    /// The lowest ready transaction, if the queue looks non-empty: a look at its length first,
    /// since taking the lock of another worker's queue is a read-modify-write of a line that
    /// worker is using.
    fn take(&self) -> Option<u32> {
        if self.len.load(ADVISORY) == 0 {
            return None;
        }
        let mut ready = self.ready.lock();
        let tx = ready.pop()?.0;
        self.len.store(ready.len(), ADVISORY);
        Some(tx)
    }

    fn push(&self, txs: impl Iterator<Item = u32>) {
        let mut ready = self.ready.lock();
        ready.extend(txs.map(Reverse));
        self.len.store(ready.len(), ADVISORY);
    }
}

/// The state of [`Strategy::Runs`].
#[derive(Debug)]
struct Runs {
    /// Transactions below it ran before the protocol started.
    first: usize,
    /// Bit `tx % GROUP` of word `tx / GROUP`: transaction `tx` has run and its effects are
    /// visible (set with release ordering).
    done: Vec<Padded<AtomicUsize>>,
    /// The first transaction not yet claimed.
    next: Padded<AtomicUsize>,
}

/// The state of [`Strategy::Ready`].
#[derive(Debug)]
struct Ready {
    /// Per transaction: dependencies not yet finished.
    pending: Vec<AtomicU32>,
    /// Transactions ready from the start, ascending; `next_root` is the first not claimed.
    roots: Vec<u32>,
    next_root: Padded<AtomicUsize>,
    /// Per worker slot: the ready transactions it made ready or claimed.
    queues: Vec<Padded<Queue>>,
    /// Transactions not yet finished, as far as workers have reported (each reports its
    /// finished ones in batches of `REPORT`, and all of them before it looks for work
    /// elsewhere or waits).
    unfinished: Padded<AtomicUsize>,
}

#[derive(Debug)]
enum Protocol {
    Runs(Runs),
    Ready(Ready),
}

/// The claim/finish protocol over a [`Dag`], shared by the workers of one block, in one of two
/// [strategies](Strategy).
///
/// It never waits forever. With runs, the lowest transaction not yet run has all of its
/// dependencies run (they are lower), so whoever holds it runs it at its next look, and if
/// nobody holds it, every claimed transaction has run and a worker claims it. With ready
/// queues, every ready transaction is in the queue of a worker that will take it (or run by
/// one), and the last dependency to finish makes each other transaction ready. Towards the
/// block's end runs get shorter (a quarter of each worker's share of what is left), so workers
/// finish together. The shared indices, the halt flag, each word of done bits and each queue
/// have cache lines of their own. (A single shared ready queue, before, made every claim and
/// every completion a read-modify-write of lines the other worker had just written: five cache
/// misses per transaction.)
#[derive(Debug)]
pub struct Claims<'d> {
    dag: &'d Dag,
    /// Workers expected (sizes the runs near the block's end).
    workers: usize,
    halted: Padded<AtomicBool>,
    protocol: Protocol,
}

impl<'d> Claims<'d> {
    /// The protocol's state for `dag`, to be drained by about `workers` workers, in the
    /// [strategy](Strategy::for_graph) for its graph.
    pub fn new(dag: &'d Dag, workers: usize) -> Self {
        Self::after(dag, 0, workers)
    }

    /// The protocol's state for `dag` when its first `done` transactions have already run, in
    /// block order (a host that starts executing before the graph is built): the rest, to be
    /// drained by about `workers` workers, in the [strategy](Strategy::for_graph) for them.
    ///
    /// # Panics
    /// `done` is more than the block's length.
    pub fn after(dag: &'d Dag, done: usize, workers: usize) -> Self {
        Self::with(dag, done, workers, Strategy::for_graph(dag, done, workers))
    }

    /// As [`Claims::after`], in `strategy`.
    ///
    /// # Panics
    /// `done` is more than the block's length.
    pub fn with(dag: &'d Dag, done: usize, workers: usize, strategy: Strategy) -> Self {
        let n = dag.len();
        assert!(done <= n, "more transactions done than in the block");
        let workers = workers.max(1);
        let protocol = match strategy {
            Strategy::Runs => Protocol::Runs(Runs {
                first: done,
                done: (0..n.div_ceil(GROUP))
                    .map(|_| Padded(AtomicUsize::new(0)))
                    .collect(),
                next: Padded(AtomicUsize::new(done)),
            }),
            Strategy::Ready => {
                let mut pending: Vec<u32> = (0..n as u32)
                    .map(|tx| dag.dependencies(tx).len() as u32)
                    .collect();
                for tx in 0..done as u32 {
                    for d in dag.dependents(tx) {
                        pending[*d as usize] -= 1;
                    }
                }
                let roots = (done as u32..n as u32)
                    .filter(|tx| pending[*tx as usize] == 0)
                    .collect();
                Protocol::Ready(Ready {
                    pending: pending.into_iter().map(AtomicU32::new).collect(),
                    roots,
                    next_root: Padded(AtomicUsize::new(0)),
                    queues: (0..workers.min(QUEUES))
                        .map(|_| Padded(Queue::default()))
                        .collect(),
                    unfinished: Padded(AtomicUsize::new(n - done)),
                })
            }
        };
        Self {
            dag,
            workers,
            halted: Padded(AtomicBool::new(false)),
            protocol,
        }
    }

    /// The strategy in use.
    pub fn strategy(&self) -> Strategy {
        match self.protocol {
            Protocol::Runs(_) => Strategy::Runs,
            Protocol::Ready(_) => Strategy::Ready,
        }
    }

    /// Stops every worker in [`Claims::drain`] at its next claim or spin (a worker's execute
    /// failed: the others must not wait for transactions that will never be ready).
    pub fn halt(&self) {
        self.halted.store(true, Ordering::Release);
    }

    /// Runs the whole protocol on the calling thread as worker `worker` (each worker running at
    /// once a different number, counting from 0) with `execute`, until every transaction has
    /// run or [`Claims::halt`]. While nothing is ready, the worker spins, calling `idle` every
    /// 64 spins (a host yields the thread there, so that a waiting worker never starves a
    /// running one on a busy machine).
    pub fn drain(&self, worker: usize, execute: impl FnMut(u32), idle: impl FnMut()) {
        match &self.protocol {
            Protocol::Runs(runs) => self.drain_runs(runs, execute, idle),
            Protocol::Ready(ready) => self.drain_ready(ready, worker, execute, idle),
        }
    }

    fn drain_runs(&self, runs: &Runs, mut execute: impl FnMut(u32), mut idle: impl FnMut()) {
        let has_run = |tx: u32| {
            let tx = tx as usize;
            // Acquire: the effects of `tx`, published by the release below, are visible.
            tx < runs.first
                || runs.done[tx / GROUP].load(Ordering::Acquire) & (1 << (tx % GROUP)) != 0
        };
        let is_ready = |tx: &u32| self.dag.dependencies(*tx).iter().all(|d| has_run(*d));
        // Claimed and not yet run, ascending.
        let mut held: VecDeque<u32> = VecDeque::with_capacity(HELD);
        let mut spins = 0u32;
        while !self.halted.load(Ordering::Acquire) {
            if let Some(i) = held.iter().position(is_ready) {
                if let Some(tx) = held.remove(i) {
                    execute(tx);
                    let tx = tx as usize;
                    runs.done[tx / GROUP].fetch_or(1 << (tx % GROUP), Ordering::Release);
                }
                spins = 0;
                continue;
            }
            if held.len() + GROUP <= HELD
                && let Some(run) = claim_run(&runs.next, self.dag.len(), self.workers, |start| {
                    GROUP - start % GROUP
                })
            {
                held.extend(run);
                continue;
            }
            if held.is_empty() {
                return;
            }
            backoff(&mut spins, &mut idle);
        }
    }

    fn drain_ready(
        &self,
        ready: &Ready,
        worker: usize,
        mut execute: impl FnMut(u32),
        mut idle: impl FnMut(),
    ) {
        // Workers beyond the expected number share the expected ones' slots.
        let w = worker % ready.queues.len();
        let (mut spins, mut roots_left, mut finished) = (0u32, true, 0);
        // Reports `count` more finished transactions; whether every one has finished.
        let report = |count: usize| {
            if count > 0 {
                return ready.unfinished.fetch_sub(count, Ordering::AcqRel) == count;
            }
            ready.unfinished.load(ADVISORY) == 0
        };
        while !self.halted.load(Ordering::Acquire) {
            match self.next_ready(ready, w, &mut roots_left) {
                Some(tx) => {
                    execute(tx);
                    let mut made_ready = self.dag.dependents(tx).iter().filter(|d| {
                        // AcqRel: the last finisher of `d`'s dependencies sees every earlier
                        // finisher's writes, and publishes them with the queue's lock.
                        ready.pending[**d as usize].fetch_sub(1, Ordering::AcqRel) == 1
                    });
                    if let Some(first) = made_ready.next() {
                        let txs = core::iter::once(first).chain(made_ready).copied();
                        ready.queues[w].push(txs);
                    }
                    finished += 1;
                    if finished == REPORT {
                        report(core::mem::take(&mut finished));
                    }
                    spins = 0;
                }
                None if report(core::mem::take(&mut finished)) => return,
                None => backoff(&mut spins, &mut idle),
            }
        }
    }

    /// The next transaction for worker slot `w` ([`Strategy::Ready`]): its own lowest ready
    /// one, else (unless `roots_left` is false, which it becomes once none are) a run of
    /// roots, the rest of it queued, else another worker's lowest ready one.
    fn next_ready(&self, ready: &Ready, w: usize, roots_left: &mut bool) -> Option<u32> {
        let own = &ready.queues[w];
        if let Some(tx) = own.take() {
            return Some(tx);
        }
        if *roots_left {
            let run = claim_run(&ready.next_root, ready.roots.len(), self.workers, |_| {
                ROOT_RUN
            });
            match run {
                Some(run) => {
                    let mut run = ready.roots[run.start as usize..run.end as usize].iter();
                    let first = run.next().copied();
                    own.push(run.copied());
                    return first;
                }
                None => *roots_left = false,
            }
        }
        let slots = ready.queues.len();
        (1..slots).find_map(|i| ready.queues[(w + i) % slots].take())
    }
}

/// Claims from `next` (the first transaction not yet claimed, of `len`) the next run of
/// consecutive transactions: at most `longest(start)` long, and near the block's end a quarter
/// of each of `workers` workers' share of what is left (at least one), so that workers finish
/// together. `None` once every transaction is claimed.
pub(crate) fn claim_run(
    next: &AtomicUsize,
    len: usize,
    workers: usize,
    longest: impl Fn(usize) -> usize,
) -> Option<core::ops::Range<u32>> {
    let mut start = next.load(ADVISORY);
    loop {
        if start >= len {
            return None;
        }
        let run = longest(start).min(((len - start) / (4 * workers.max(1))).max(1));
        match next.compare_exchange(start, start + run, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return Some(start as u32..(start + run) as u32),
            Err(now) => start = now,
        }
    }
}

/// Predicted execution of a block on `workers` virtual workers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Simulation {
    /// Time to execute the block, in the unit of the costs.
    pub makespan: u64,
    /// Sum of all costs: the sequential time.
    pub total: u64,
    /// `total / makespan`.
    pub speedup: f64,
}

/// Replays `dag` with per-transaction `costs` (any unit, e.g. measured nanoseconds) on
/// `workers` workers plus a fixed `overhead` per transaction (the scheduler's own cost),
/// scheduled greedily (what [`Claims`] approximates, each worker first taking what its own
/// completions made ready): transactions start in the order they become ready, each on the
/// first free worker. Deterministic: ties break by transaction index.
///
/// # Panics
/// `costs` has a different length than the block, or `workers` is 0.
pub fn simulate(dag: &Dag, costs: &[u64], workers: usize, overhead: u64) -> Simulation {
    assert_eq!(costs.len(), dag.len(), "one cost per transaction");
    assert!(workers > 0, "at least one worker");
    let n = dag.len();
    let mut pending: Vec<u32> = (0..n as u32)
        .map(|tx| dag.dependencies(tx).len() as u32)
        .collect();
    // Ready transactions by (time ready, index); running ones by (finish time, index).
    let mut ready: BinaryHeap<Reverse<(u64, u32)>> = BinaryHeap::new();
    let mut running: BinaryHeap<Reverse<(u64, u32)>> = BinaryHeap::new();
    for tx in 0..n as u32 {
        if pending[tx as usize] == 0 {
            ready.push(Reverse((0, tx)));
        }
    }
    let (mut now, mut free, mut makespan) = (0u64, workers, 0u64);
    let mut done = 0usize;
    while done < n {
        // Start what can start now.
        while free > 0 {
            match ready.peek() {
                Some(Reverse((t, _))) if *t <= now => {
                    let Some(Reverse((_, tx))) = ready.pop() else {
                        break;
                    };
                    let end = now + costs[tx as usize] + overhead;
                    running.push(Reverse((end, tx)));
                    free -= 1;
                }
                _ => break,
            }
        }
        // Advance to the next finish (or the next readiness, when workers are free).
        let Some(Reverse((end, tx))) = running.pop() else {
            // Nothing running: the next ready transaction starts when it is ready.
            match ready.peek() {
                Some(Reverse((t, _))) => {
                    now = now.max(*t);
                    continue;
                }
                None => break, // unreachable for a DAG built by `Dag::build`
            }
        };
        now = end;
        makespan = makespan.max(end);
        free += 1;
        done += 1;
        for d in dag.dependents(tx) {
            pending[*d as usize] -= 1;
            if pending[*d as usize] == 0 {
                ready.push(Reverse((now, *d)));
            }
        }
    }
    let total: u64 = costs.iter().sum::<u64>() + overhead * n as u64;
    Simulation {
        makespan,
        total,
        speedup: if makespan == 0 {
            1.0
        } else {
            total as f64 / makespan as f64
        },
    }
}

/// One step of a worker waiting for work: a spin-loop hint, and every 64th step (every step
/// under loom) `idle` instead (a host yields the thread there, so that a waiting worker never
/// starves a running one on a busy machine). `spins` counts the steps.
pub fn backoff(spins: &mut u32, idle: impl FnOnce()) {
    *spins = spins.wrapping_add(1);
    if cfg!(loom) || spins.is_multiple_of(64) {
        idle();
    } else {
        core::hint::spin_loop();
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_tests;
