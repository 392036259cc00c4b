//! The hot-state cache: committed contract state between a node's block state and redb.
//!
//! Reads of the committed state that miss the block's multi-version state come here before
//! they go to the store. [`StateCache`] holds recently read and recently written entries,
//! including *cached misses* ([`CachedEntry::Absent`]: the key is known not to exist, which
//! a block creating new keys asks about often).
//!
//! # Why S3-FIFO-class
//!
//! Contract state is read with skewed popularity (a few balances, pools and counters take
//! most reads) interleaved with scans: a range query or a one-off sweep touches a long run of
//! keys that will not be read again soon. An LRU promotes every scanned key to the head and
//! so flushes the popular set with each scan. [`quick_cache`] (a Clock-PRO variant close to
//! S3-FIFO) admits new keys into a small probationary queue, promotes only keys read again
//! while there, and remembers the hashes of recently evicted keys (a ghost list) so a key
//! that returns is admitted to the main queue directly: a scan passes through the small queue
//! and leaves the popular set alone. [`hit_rates`] replays one trace on this cache and on the
//! core's byte-bounded [`Lru`] with the same budget and weights, and [`zipf_trace`] makes
//! such traces.
//!
//! # Bounded by bytes
//!
//! Each entry weighs its key bytes, its value bytes and [`ENTRY_OVERHEAD`]; the sum of the
//! weights never exceeds the budget given to [`StateCache::new`]. An entry heavier than a
//! shard's share of the budget is not cached (and any older entry of its key is dropped).
//! Beyond the weights, the ghost list keeps at most one slot (about 80 bytes) for every two
//! entries of a typical 84-byte key and value that the budget holds.
//!
//! # Exact on commit
//!
//! [`StateCache::apply_commit`] writes every key of a block's state diff into the cache (the
//! new value, or a cached miss for a deletion), so the next block hits on what this one wrote
//! and no entry of a written key survives with its old value. Call it once the store's commit
//! is visible to readers. A load that was running while a commit (or an
//! [`invalidate`](StateCache::invalidate)) happened may have read the store before it; such a
//! load is returned to its caller but not cached, so the cache never holds a value older than
//! the last commit applied to it. Between the store's commit and `apply_commit`, cached keys
//! still answer with the previous state; reads that run concurrently with `apply_commit` may
//! see some keys of the diff applied and others not yet; reads that start after it see all.
//!
//! # Determinism
//!
//! What the cache returns is always the committed state, so hits and misses change nothing
//! but time. Which entries are evicted depends on the key hasher: [`StateCache::new`] keys it
//! at random (contract authors choose storage keys, so a predictable hash would let them
//! crowd one shard or one probe sequence); [`StateCache::with_seed`] fixes it for replays and
//! tests. The shard count is fixed rather than taken from the machine, so a seeded cache
//! evicts the same way everywhere.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::fmt;
use std::hash::{BuildHasher, DefaultHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use quick_cache::sync::{Cache, DefaultLifecycle};
use quick_cache::{OptionsBuilder, Weighter};
use synor_core::lru::Lru;

/// The version of a committed entry: block height, transaction index in the block, and
/// incarnation of that transaction.
///
/// The core's multi-version state defines the node's version type; this alias is the one
/// place to replace with it.
pub use synor_core::state::Version;

/// Bytes charged per entry on top of its key and value bytes.
///
/// Covers the entry's slot in the cache (the key's `Vec` header, 24 bytes; the
/// [`CachedEntry`], 32 bytes; `quick_cache`'s links and flags, 21 bytes) and the value's
/// `Arc` header (16 bytes), rounded up. A fixed number rather than one computed from the
/// target, so the same budget holds the same entries on every platform.
pub const ENTRY_OVERHEAD: u64 = 96;

/// Shards of the underlying cache, each locked on its own: workers of a block read in
/// parallel. The budget is split evenly among them.
const SHARDS: usize = 16;

/// Share of a shard's budget for its main queue; the rest is the probationary queue that new
/// keys enter while the main queue is full. `quick_cache`'s default, stated here so that an
/// upgrade of the crate does not move it.
const HOT_ALLOCATION: f64 = 0.97;

/// The weight of an entry with a key of `key_len` bytes and a value of `value_len` bytes (0
/// for a cached miss), as [`StateCache`] and the comparison LRU of [`hit_rates`] count it.
pub fn entry_weight(key_len: usize, value_len: usize) -> u64 {
    (key_len as u64)
        .saturating_add(value_len as u64)
        .saturating_add(ENTRY_OVERHEAD)
}

/// What the cache knows about one key of the committed state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CachedEntry {
    /// The key does not exist in the committed state (a cached miss).
    Absent,
    /// The key holds `value`, written at `version`.
    Present {
        /// The committed bytes.
        value: Arc<[u8]>,
        /// Who wrote them.
        version: Version,
    },
}

impl CachedEntry {
    /// A present entry holding a copy of `value`.
    pub fn present(value: &[u8], version: Version) -> Self {
        Self::Present {
            value: Arc::from(value),
            version,
        }
    }

    /// The committed bytes, or `None` for a key that does not exist.
    pub fn value(&self) -> Option<&[u8]> {
        match self {
            Self::Absent => None,
            Self::Present { value, .. } => Some(value),
        }
    }

    /// The version of the committed bytes, or `None` for a key that does not exist.
    pub fn version(&self) -> Option<Version> {
        match self {
            Self::Absent => None,
            Self::Present { version, .. } => Some(*version),
        }
    }

    /// Bytes of the value (0 for a cached miss).
    fn value_len(&self) -> usize {
        self.value().map_or(0, <[u8]>::len)
    }
}

/// Weighs an entry as [`entry_weight`] does.
#[derive(Clone, Copy, Debug, Default)]
struct EntryWeighter;

impl Weighter<Vec<u8>, CachedEntry> for EntryWeighter {
    fn weight(&self, key: &Vec<u8>, entry: &CachedEntry) -> u64 {
        entry_weight(key.len(), entry.value_len())
    }
}

/// Hashes keys with SipHash-1-3 (std's `DefaultHasher`), keyed at random or by a fixed seed.
#[derive(Clone, Debug)]
enum KeyHasher {
    /// Std's per-instance random keys.
    Random(RandomState),
    /// Fixed keys, then the seed as a prefix of every key: replays evict the same way.
    Seeded(u64),
}

impl BuildHasher for KeyHasher {
    type Hasher = DefaultHasher;

    fn build_hasher(&self) -> DefaultHasher {
        match self {
            Self::Random(state) => state.build_hasher(),
            Self::Seeded(seed) => {
                let mut hasher = DefaultHasher::new();
                hasher.write_u64(*seed);
                hasher
            }
        }
    }
}

/// Counters of a [`StateCache`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache (a cached miss is a hit).
    pub hits: u64,
    /// Lookups the cache could not answer.
    pub misses: u64,
    /// Sum of the weights of the entries held, at most the budget.
    pub bytes: u64,
    /// Entries held.
    pub entries: usize,
}

/// A thread-safe, byte-bounded, scan-resistant cache of committed state (see the
/// [module docs](self)).
///
/// # Examples
///
/// ```
/// use synor_host_std::cache::{CachedEntry, StateCache, Version};
///
/// let cache = StateCache::new(1 << 20);
/// // A miss goes to the store (here: the key does not exist) and is cached as such.
/// let entry = cache.get_or_load(b"balance/alice", || Ok::<_, ()>(CachedEntry::Absent))?;
/// assert_eq!(entry, CachedEntry::Absent);
/// // The block that creates the key commits; the next block reads it from the cache.
/// let block_7 = Version {
///     block: 7,
///     ..Version::default()
/// };
/// cache.apply_commit([(&b"balance/alice"[..], Some(&b"\x2a"[..]))], block_7);
/// assert_eq!(cache.get(b"balance/alice").unwrap().value(), Some(&b"\x2a"[..]));
/// # Ok::<(), ()>(())
/// ```
pub struct StateCache {
    cache: Cache<Vec<u8>, CachedEntry, EntryWeighter, KeyHasher>,
    /// Counts commits and invalidations: a load that saw it change while it ran is not cached.
    generation: RwLock<u64>,
    /// Hits and misses, striped by key: one pair of counters written by every worker's every
    /// read was a cache line moving between the cores on each.
    counts: Box<[Stripe]>,
}

/// Hits and misses of some of the keys, on a cache line of its own.
#[derive(Default)]
#[repr(align(128))]
struct Stripe {
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Stripes of the hit and miss counters.
const STRIPES: usize = 16;

/// The stripe counting `key`: a cheap mix of its last bytes (keys of one contract share their
/// first 32).
fn stripe_of(key: &[u8]) -> usize {
    let tail = &key[key.len().saturating_sub(8)..];
    let word = tail.iter().fold(0u64, |w, b| (w << 8) | u64::from(*b));
    (word.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 60) as usize % STRIPES
}

impl StateCache {
    /// A cache whose entries weigh at most `budget_bytes` in all, with a randomly keyed hasher.
    pub fn new(budget_bytes: u64) -> Self {
        Self::with_hasher(budget_bytes, KeyHasher::Random(RandomState::new()))
    }

    /// A cache like [`new`](Self::new) whose hasher is keyed by `seed`: the same operations
    /// evict the same entries in every run. For replays and tests; a node uses `new`.
    pub fn with_seed(budget_bytes: u64, seed: u64) -> Self {
        Self::with_hasher(budget_bytes, KeyHasher::Seeded(seed))
    }

    fn with_hasher(budget_bytes: u64, hasher: KeyHasher) -> Self {
        // Each shard gets `capacity / shards` (rounded up) and `quick_cache` may halve the
        // shard count for small caches; a multiple of the (power-of-two) count divides evenly
        // for every count it can end up with, so the shards add up to at most the budget.
        let capacity = budget_bytes / SHARDS as u64 * SHARDS as u64;
        let typical = entry_weight(68, 16);
        let items = usize::try_from(capacity / typical)
            .unwrap_or(usize::MAX)
            .max(1);
        let options = OptionsBuilder::new()
            .shards(SHARDS)
            .hot_allocation(HOT_ALLOCATION)
            .estimated_items_capacity(items)
            .weight_capacity(capacity)
            .build()
            .expect("every option is set");
        let cache =
            Cache::with_options(options, EntryWeighter, hasher, DefaultLifecycle::default());
        debug_assert!(cache.capacity() <= budget_bytes);
        Self {
            cache,
            generation: RwLock::new(0),
            counts: (0..STRIPES).map(|_| Stripe::default()).collect(),
        }
    }

    /// The most the entries may weigh together: the budget, less at most a few bytes lost to
    /// splitting it evenly among the shards.
    pub fn capacity(&self) -> u64 {
        self.cache.capacity()
    }

    /// What the cache holds for `key`, or `None` if it does not know (then ask the store).
    /// Counts a hit or a miss.
    pub fn get(&self, key: &[u8]) -> Option<CachedEntry> {
        let entry = self.cache.get(key);
        self.count(key, entry.is_some());
        entry
    }

    /// What the cache holds for `key`; on a miss, the result of `load` (which reads the
    /// committed state from the store), cached unless a commit or an invalidation happened
    /// while it ran.
    ///
    /// # Errors
    /// The error of `load`; nothing is cached then.
    pub fn get_or_load<E>(
        &self,
        key: &[u8],
        load: impl FnOnce() -> Result<CachedEntry, E>,
    ) -> Result<CachedEntry, E> {
        if let Some(entry) = self.get(key) {
            return Ok(entry);
        }
        let before = *self
            .generation
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = load()?;
        // Commits take the lock for writing: holding it for reading, the generation cannot
        // move between the check and the insert.
        let generation = self
            .generation
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if *generation == before {
            self.cache.insert(key.to_vec(), entry.clone());
        }
        Ok(entry)
    }

    /// Caches `entry` for `key`, replacing what was cached. The caller vouches that `entry` is
    /// the committed state now (a value it read from the store with no commit in between).
    pub fn insert(&self, key: &[u8], entry: CachedEntry) {
        self.cache.insert(key.to_vec(), entry);
    }

    /// Applies a committed state diff: each key becomes its new value (`Some`) at `version` or
    /// a cached miss (`None`, deleted). Written keys are cached, not dropped, so the next block
    /// hits on them. Call it after the commit is visible in the store.
    pub fn apply_commit<'a>(
        &self,
        diff: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
        version: Version,
    ) {
        self.apply_versioned(diff.into_iter().map(|(k, v)| (k, v.map(|v| (v, version)))));
    }

    /// As [`apply_commit`](Self::apply_commit), each value with the version that wrote it.
    pub fn apply_versioned<'a>(
        &self,
        diff: impl IntoIterator<Item = (&'a [u8], Option<(&'a [u8], Version)>)>,
    ) {
        let mut generation = self
            .generation
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        *generation = generation.wrapping_add(1);
        for (key, value) in diff {
            let entry = value.map_or(CachedEntry::Absent, |(v, version)| {
                CachedEntry::present(v, version)
            });
            self.cache.insert(key.to_vec(), entry);
        }
    }

    /// Forgets `key` (for a change to the store that did not come through
    /// [`apply_commit`](Self::apply_commit)); loads running meanwhile are not cached.
    pub fn invalidate(&self, key: &[u8]) {
        let mut generation = self
            .generation
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        *generation = generation.wrapping_add(1);
        self.cache.remove(key);
    }

    /// Hits, misses, bytes and entries held.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self
                .counts
                .iter()
                .map(|s| s.hits.load(Ordering::Relaxed))
                .sum(),
            misses: self
                .counts
                .iter()
                .map(|s| s.misses.load(Ordering::Relaxed))
                .sum(),
            bytes: self.cache.weight(),
            entries: self.cache.len(),
        }
    }

    fn count(&self, key: &[u8], hit: bool) {
        let stripe = &self.counts[stripe_of(key)];
        let counter = if hit { &stripe.hits } else { &stripe.misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for StateCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateCache")
            .field("capacity", &self.capacity())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// One step of a state-access trace, for [`hit_rates`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceOp {
    /// Entries already in the store when the trace starts (written without passing through
    /// the caches, as a restarted node finds them).
    Existing(Vec<(Vec<u8>, Vec<u8>)>),
    /// A read of the committed state.
    Read(Vec<u8>),
    /// A block's commit: each key becomes its value (`Some`) or is deleted (`None`).
    Commit(Vec<(Vec<u8>, Option<Vec<u8>>)>),
}

/// Hit rates of one trace replayed on a [`StateCache`] and on the core's [`Lru`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HitRates {
    /// Hits over reads of the [`StateCache`].
    pub cache: f64,
    /// Hits over reads of the LRU.
    pub lru: f64,
    /// Reads in the trace.
    pub reads: u64,
}

/// Replays `trace` on a [`StateCache`] (seeded: the result is deterministic) and on a
/// [`Lru`], each bounded by `budget` bytes with [`entry_weight`]s. Misses load from the true
/// state that the trace's commits build; commits update both caches with every written key.
pub fn hit_rates(trace: &[TraceOp], budget: u64) -> HitRates {
    let cache = StateCache::with_seed(budget, 0);
    let mut lru: Lru<Vec<u8>, CachedEntry> =
        Lru::new(usize::try_from(budget).unwrap_or(usize::MAX));
    let mut store: HashMap<&[u8], &[u8]> = HashMap::new();
    let (mut reads, mut lru_hits, mut block) = (0u64, 0u64, 0u64);
    for op in trace {
        match op {
            TraceOp::Existing(entries) => {
                store.extend(entries.iter().map(|(k, v)| (k.as_slice(), v.as_slice())));
            }
            TraceOp::Read(key) => {
                reads += 1;
                // The store version of the entries a replay loads; a real store has its own.
                let load = || match store.get(key.as_slice()) {
                    Some(value) => CachedEntry::present(value, Version::default()),
                    None => CachedEntry::Absent,
                };
                let Ok(_) = cache.get_or_load(key, || Ok::<_, Infallible>(load()));
                if lru.get(key).is_some() {
                    lru_hits += 1;
                } else {
                    let entry = load();
                    let weight = entry_weight(key.len(), entry.value_len());
                    lru.insert(key.clone(), entry, weight as usize);
                }
            }
            TraceOp::Commit(diff) => {
                block += 1;
                let version = Version {
                    block,
                    ..Version::default()
                };
                for (key, value) in diff {
                    match value {
                        Some(value) => store.insert(key.as_slice(), value.as_slice()),
                        None => store.remove(key.as_slice()),
                    };
                    let entry = value
                        .as_deref()
                        .map_or(CachedEntry::Absent, |v| CachedEntry::present(v, version));
                    let weight = entry_weight(key.len(), entry.value_len());
                    lru.insert(key.clone(), entry, weight as usize);
                }
                cache.apply_commit(
                    diff.iter().map(|(k, v)| (k.as_slice(), v.as_deref())),
                    version,
                );
            }
        }
    }
    let stats = cache.stats();
    let rate = |hits: u64| {
        if reads == 0 {
            0.0
        } else {
            hits as f64 / reads as f64
        }
    };
    HitRates {
        cache: rate(stats.hits),
        lru: rate(lru_hits),
        reads,
    }
}

/// Bytes of a key in [`zipf_trace`]: a 4-byte table tag, a 32-byte contract address and a
/// 32-byte account, as a token balance is stored.
pub const TRACE_KEY_LEN: usize = 68;
/// Bytes of a value in [`zipf_trace`]: a 128-bit balance.
pub const TRACE_VALUE_LEN: usize = 16;
/// Keys outside the popular set that scans run over, per popular key.
const COLD_PER_KEY: u64 = 4;
/// Reads per block; each block ends with a commit.
const BLOCK_READS: usize = 1000;
/// Writes in each block's commit.
const BLOCK_WRITES: usize = 100;

/// A deterministic trace (the same arguments give the same trace) of `len` reads and the
/// commits of their blocks, over token-balance-like entries ([`TRACE_KEY_LEN`]-byte keys,
/// [`TRACE_VALUE_LEN`]-byte values).
///
/// - `keys` popular keys are read with Zipf(`s`) popularity (a rank is drawn with
///   probability proportional to `1 / rank^s`; ranks are shuffled over the keys).
/// - About `scan_fraction` of the reads belong to scans: runs of consecutive keys (in key
///   order) from a cold region of `4 * keys` other keys, each run `keys / 10` to `keys / 2`
///   keys long, as a range query or a one-off sweep reads.
/// - Every 1000 reads a block commits 100 writes drawn with the same popularity: mostly
///   updates, some deletions, and some new keys, which the block first reads (a miss that
///   finds nothing; these reads count towards `len`).
///
/// All popular and cold keys exist at the start ([`TraceOp::Existing`], the first op).
pub fn zipf_trace(keys: usize, len: usize, s: f64, seed: u64, scan_fraction: f64) -> Vec<TraceOp> {
    let mut tg = TraceGen::new(keys, len, s, seed);
    let scan_fraction = if scan_fraction.is_finite() {
        scan_fraction.clamp(0.0, 0.99)
    } else {
        0.0
    };
    let popular = tg.popular.len() as u64;
    let (shortest, longest) = ((popular / 10).max(1), (popular / 2).max(1));
    let mean_scan = (shortest + longest) as f64 / 2.0;
    // A scan starts before a read with this probability: then scans are `scan_fraction` of
    // the reads on average.
    let start_scan = scan_fraction / ((1.0 - scan_fraction) * mean_scan);
    let cold_start = popular;
    let cold = popular * COLD_PER_KEY;
    let mut ops = vec![TraceOp::Existing(
        (0..cold_start + cold)
            .map(|i| (trace_key(i), trace_value(i, 0)))
            .collect(),
    )];
    while tg.reads < len {
        if tg.rng.unit() < start_scan {
            let run = shortest + tg.rng.below(longest - shortest + 1);
            let first = cold_start + tg.rng.below(cold - run + 1);
            for index in first..first + run {
                if tg.reads == len {
                    break;
                }
                tg.read(&mut ops, index);
            }
        } else {
            let index = tg.zipf();
            tg.read(&mut ops, index);
        }
    }
    tg.commit(&mut ops);
    ops
}

/// State of [`zipf_trace`] between reads.
struct TraceGen {
    rng: XorShift,
    /// Key index of each popularity rank.
    popular: Vec<u64>,
    /// Cumulative Zipf probabilities of the ranks, the last one 1.
    cdf: Vec<f64>,
    /// Index of the next new key.
    next_new: u64,
    /// Reads made so far, and how many to make.
    reads: usize,
    len: usize,
    block_reads: usize,
    block: u64,
}

impl TraceGen {
    fn new(keys: usize, len: usize, s: f64, seed: u64) -> Self {
        let keys = keys.max(1);
        let mut rng = XorShift::new(seed);
        let mut popular: Vec<u64> = (0..keys as u64).collect();
        for i in (1..popular.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            popular.swap(i, j);
        }
        let mut cdf: Vec<f64> = (1..=keys)
            .scan(0.0, |sum, rank| {
                *sum += (rank as f64).powf(-s);
                Some(*sum)
            })
            .collect();
        let total = cdf[keys - 1];
        cdf.iter_mut().for_each(|p| *p /= total);
        Self {
            rng,
            next_new: keys as u64 * (1 + COLD_PER_KEY),
            popular,
            cdf,
            reads: 0,
            len,
            block_reads: 0,
            block: 0,
        }
    }

    /// The key index of a rank drawn with Zipf popularity.
    fn zipf(&mut self) -> u64 {
        let u = self.rng.unit();
        let rank = self.cdf.partition_point(|&p| p <= u);
        self.popular[rank.min(self.popular.len() - 1)]
    }

    fn read(&mut self, ops: &mut Vec<TraceOp>, index: u64) {
        ops.push(TraceOp::Read(trace_key(index)));
        self.reads += 1;
        self.block_reads += 1;
        if self.block_reads == BLOCK_READS {
            self.commit(ops);
        }
    }

    /// Ends the block: its writes, and the reads of the keys it creates.
    fn commit(&mut self, ops: &mut Vec<TraceOp>) {
        if self.block_reads == 0 {
            return;
        }
        self.block_reads = 0;
        self.block += 1;
        let mut diff = BTreeMap::new();
        for _ in 0..BLOCK_WRITES {
            let kind = self.rng.below(64);
            let (index, value) = if kind == 0 {
                (self.zipf(), None)
            } else if kind < 4 {
                let index = self.next_new;
                self.next_new += 1;
                if self.reads < self.len {
                    ops.push(TraceOp::Read(trace_key(index)));
                    self.reads += 1;
                }
                (index, Some(trace_value(index, self.block)))
            } else {
                let index = self.zipf();
                (index, Some(trace_value(index, self.block)))
            };
            diff.insert(trace_key(index), value);
        }
        ops.push(TraceOp::Commit(diff.into_iter().collect()));
    }
}

/// The key of index `index`: keys sort by index (the account's leading bytes are the index).
fn trace_key(index: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(TRACE_KEY_LEN);
    key.extend_from_slice(b"bal\0");
    key.extend_from_slice(&[0x5a; 32]);
    key.extend_from_slice(&index.to_be_bytes());
    let mut x = index;
    for _ in 0..3 {
        x = splitmix64(x);
        key.extend_from_slice(&x.to_le_bytes());
    }
    key
}

/// The value of key `index` as written in block `block`.
fn trace_value(index: u64, block: u64) -> Vec<u8> {
    let a = splitmix64(index ^ block.rotate_left(32));
    let b = splitmix64(a);
    let mut value = Vec::with_capacity(TRACE_VALUE_LEN);
    value.extend_from_slice(&a.to_le_bytes());
    value.extend_from_slice(&b.to_le_bytes());
    value
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// xorshift64*: small, fast, deterministic; seeded through splitmix64 so that seed 0 works.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        Self(splitmix64(seed) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[0, n)` (`n` > 0), by multiply-shift.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    /// A version from its parts.
    fn version(block: u64, tx: u32, incarnation: u32) -> Version {
        Version {
            block,
            tx,
            incarnation,
        }
    }

    use super::*;

    use proptest::prelude::*;

    fn present(value: &[u8]) -> CachedEntry {
        CachedEntry::present(
            value,
            Version {
                block: 1,
                tx: 0,
                incarnation: 0,
            },
        )
    }

    #[test]
    fn cached_misses_and_values_are_served_without_loading() {
        let cache = StateCache::with_seed(1 << 16, 1);
        let loaded = cache.get_or_load(b"new", || Ok::<_, ()>(CachedEntry::Absent));
        assert_eq!(loaded, Ok(CachedEntry::Absent));
        let again = cache.get_or_load(b"new", || Err("the store was asked again"));
        assert_eq!(again, Ok(CachedEntry::Absent));
        cache.insert(b"old", present(b"v"));
        assert_eq!(cache.get(b"old"), Some(present(b"v")));
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.entries), (2, 1, 2));
        assert_eq!(
            stats.bytes,
            entry_weight(3, 0) + entry_weight(3, 1),
            "weights are key + value + overhead"
        );
    }

    #[test]
    fn a_failed_load_caches_nothing() {
        let cache = StateCache::with_seed(1 << 16, 1);
        assert_eq!(cache.get_or_load(b"k", || Err(7)), Err(7));
        assert_eq!(cache.get(b"k"), None);
        assert_eq!(cache.stats().entries, 0);
    }

    #[test]
    fn a_commit_updates_written_keys_so_the_next_block_hits() {
        let cache = StateCache::with_seed(1 << 16, 1);
        cache.insert(b"a", present(b"1"));
        cache.insert(b"b", present(b"2"));
        cache.apply_commit(
            [
                (&b"a"[..], Some(&b"10"[..])),
                (b"b", None),
                (b"c", Some(b"3")),
            ],
            version(2, 5, 1),
        );
        assert_eq!(
            cache.get(b"a"),
            Some(CachedEntry::present(b"10", version(2, 5, 1)))
        );
        assert_eq!(cache.get(b"b"), Some(CachedEntry::Absent));
        assert_eq!(
            cache.get(b"c").and_then(|e| e.version()),
            Some(version(2, 5, 1))
        );
        cache.invalidate(b"a");
        assert_eq!(cache.get(b"a"), None);
    }

    /// A load that read the store before a commit must not put its old value in the cache:
    /// the commit runs inside the loader, as it would on another thread between the store read
    /// and the insert.
    #[test]
    fn a_load_overtaken_by_a_commit_is_not_cached() {
        let cache = StateCache::with_seed(1 << 16, 1);
        let loaded = cache.get_or_load(b"k", || {
            let read_from_store = present(b"old");
            cache.apply_commit(
                [(&b"k"[..], Some(&b"new"[..]))],
                Version {
                    block: 2,
                    tx: 0,
                    incarnation: 0,
                },
            );
            Ok::<_, ()>(read_from_store)
        });
        assert_eq!(loaded, Ok(present(b"old")), "the caller gets what it read");
        assert_eq!(
            cache.get(b"k").and_then(|e| e.value().map(<[u8]>::to_vec)),
            Some(b"new".to_vec())
        );
        let loaded = cache.get_or_load(b"j", || {
            cache.invalidate(b"j");
            Ok::<_, ()>(present(b"stale"))
        });
        assert_eq!(loaded, Ok(present(b"stale")));
        assert_eq!(cache.get(b"j"), None);
    }

    #[test]
    fn weight_stays_within_budget_and_huge_values_are_not_cached() {
        let budget = 10_000;
        let cache = StateCache::with_seed(budget, 3);
        assert!(cache.capacity() <= budget && cache.capacity() > budget - SHARDS as u64);
        for i in 0u32..1000 {
            cache.insert(&i.to_le_bytes(), present(&[7; 16]));
            assert!(cache.stats().bytes <= budget);
        }
        assert!(cache.stats().entries > 0);
        // A key cached small, then committed with a value larger than the whole budget: its
        // old entry must go, and the huge one must not be cached.
        cache.insert(b"huge", present(b"small"));
        let huge = vec![1u8; budget as usize + 1];
        cache.apply_commit(
            [(&b"huge"[..], Some(huge.as_slice()))],
            Version {
                block: 2,
                tx: 0,
                incarnation: 0,
            },
        );
        assert_eq!(cache.get(b"huge"), None);
        assert!(cache.stats().bytes <= budget);
        let loaded = cache.get_or_load(b"huge", || Ok::<_, ()>(present(&huge)));
        assert_eq!(loaded.map(|e| e.value_len()), Ok(huge.len()));
        assert_eq!(cache.get(b"huge"), None);
        assert!(cache.stats().bytes <= budget);
        let empty = StateCache::with_seed(0, 3);
        empty.insert(b"k", CachedEntry::Absent);
        assert_eq!((empty.get(b"k"), empty.stats().bytes), (None, 0));
    }

    #[test]
    fn readers_and_a_committer_on_threads_end_on_the_committed_state() {
        let cache = StateCache::new(4_000);
        let store = RwLock::new(BTreeMap::<u8, u64>::new());
        let load = |k: u8| {
            let store = store.read().unwrap();
            Ok::<_, ()>(store.get(&k).map_or(CachedEntry::Absent, |v| {
                CachedEntry::present(&v.to_le_bytes(), version(*v, 0, 0))
            }))
        };
        std::thread::scope(|scope| {
            for t in 0..3u8 {
                let (cache, load) = (&cache, &load);
                scope.spawn(move || {
                    for i in 0..5_000u32 {
                        let k = (i as u8).wrapping_mul(t + 1) % 32;
                        cache.get_or_load(&[k], || load(k)).unwrap();
                    }
                });
            }
            for block in 1..=200u64 {
                let keys: Vec<u8> = (0..4).map(|i| ((block * 7 + i * 13) % 32) as u8).collect();
                let mut s = store.write().unwrap();
                for &k in &keys {
                    s.insert(k, block);
                }
                drop(s);
                let values = block.to_le_bytes();
                let diff: Vec<[u8; 1]> = keys.iter().map(|&k| [k]).collect();
                cache.apply_commit(
                    diff.iter().map(|k| (&k[..], Some(&values[..]))),
                    version(block, 0, 0),
                );
            }
        });
        for k in 0..32u8 {
            if let Some(entry) = cache.get(&[k]) {
                assert_eq!(Ok(entry), load(k), "key {k}");
            }
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Read(u8),
        Peek(u8),
        Commit(Vec<(u8, Option<usize>)>),
        Invalidate(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        let value_len = prop_oneof![8 => 0usize..64, 1 => 500usize..3_000];
        prop_oneof![
            4 => (0u8..24).prop_map(Op::Read),
            2 => (0u8..24).prop_map(Op::Peek),
            2 => prop::collection::vec((0u8..24, prop::option::of(value_len)), 0..6)
                .prop_map(Op::Commit),
            1 => (0u8..24).prop_map(Op::Invalidate),
        ]
    }

    proptest! {
        /// The cache against a `BTreeMap` of the true state: whatever it answers is the
        /// committed value, and it never weighs more than its budget.
        #[test]
        fn never_stale_and_within_budget(
            budget in prop_oneof![0u64..200, 200u64..4_000],
            seed in any::<u64>(),
            ops in prop::collection::vec(op(), 1..200),
        ) {
            let cache = StateCache::with_seed(budget, seed);
            let mut model: BTreeMap<Vec<u8>, (Vec<u8>, Version)> = BTreeMap::new();
            let key = |k: u8| vec![k; 1 + usize::from(k % 5) * 20];
            let truth = |model: &BTreeMap<Vec<u8>, (Vec<u8>, Version)>, k: &[u8]| {
                model.get(k).map_or(CachedEntry::Absent, |(v, ver)| CachedEntry::present(v, *ver))
            };
            for (block, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Read(k) => {
                        let k = key(k);
                        let got = cache.get_or_load(&k, || Ok::<_, ()>(truth(&model, &k)));
                        prop_assert_eq!(got, Ok(truth(&model, &k)));
                    }
                    Op::Peek(k) => {
                        let k = key(k);
                        if let Some(got) = cache.get(&k) {
                            prop_assert_eq!(got, truth(&model, &k));
                        }
                    }
                    Op::Commit(writes) => {
                        let version = version(block as u64, 0, 0);
                        let diff: Vec<(Vec<u8>, Option<Vec<u8>>)> = writes
                            .into_iter()
                            .map(|(k, len)| (key(k), len.map(|n| vec![k ^ (block as u8); n])))
                            .collect();
                        for (k, v) in &diff {
                            match v {
                                Some(v) => model.insert(k.clone(), (v.clone(), version)),
                                None => model.remove(k),
                            };
                        }
                        cache.apply_commit(
                            diff.iter().map(|(k, v)| (k.as_slice(), v.as_deref())),
                            version,
                        );
                    }
                    Op::Invalidate(k) => cache.invalidate(&key(k)),
                }
                prop_assert!(cache.stats().bytes <= budget);
            }
        }
    }

    #[test]
    fn zipf_traces_are_deterministic_and_mix_scans_and_writes() {
        let a = zipf_trace(1_000, 20_000, 0.9, 5, 0.2);
        assert_eq!(a, zipf_trace(1_000, 20_000, 0.9, 5, 0.2));
        assert_ne!(a, zipf_trace(1_000, 20_000, 0.9, 6, 0.2));
        let TraceOp::Existing(existing) = &a[0] else {
            panic!("the trace starts with the existing state")
        };
        assert_eq!(existing.len(), 5_000);
        let reads: Vec<&[u8]> = a
            .iter()
            .filter_map(|op| match op {
                TraceOp::Read(k) => Some(k.as_slice()),
                _ => None,
            })
            .collect();
        assert_eq!(reads.len(), 20_000);
        assert!(reads.iter().all(|k| k.len() == TRACE_KEY_LEN));
        let index = |k: &[u8]| u64::from_be_bytes(k[36..44].try_into().unwrap());
        let scanned = reads
            .iter()
            .filter(|k| (1_000..5_000).contains(&index(k)))
            .count();
        let share = scanned as f64 / reads.len() as f64;
        assert!((0.1..0.3).contains(&share), "scan share {share}");
        let commits = a
            .iter()
            .filter(|op| matches!(op, TraceOp::Commit(_)))
            .count();
        assert_eq!(commits, 20, "one commit per 1000 reads");
        // Zipf: the most popular key takes far more than its uniform share of the other reads.
        let mut counts: HashMap<u64, usize> = HashMap::new();
        for k in &reads {
            *counts.entry(index(k)).or_default() += 1;
        }
        let top = counts.values().max().copied().unwrap_or(0);
        assert!(
            top > 20 * (reads.len() - scanned) / 1_000,
            "top key read {top} times"
        );
    }

    /// The claim of the module: on Zipf(0.9) reads with scans and writes, with a budget of
    /// about a tenth of the key set, the scan-resistant cache hits more often than an LRU of
    /// the same byte budget.
    #[test]
    fn scan_resistant_cache_beats_lru_on_zipf_with_scans() {
        let keys = 10_000;
        let trace = zipf_trace(keys, 200_000, 0.9, 42, 0.2);
        let key_set = keys as u64 * entry_weight(TRACE_KEY_LEN, TRACE_VALUE_LEN);
        for percent in [5, 10, 25] {
            let rates = hit_rates(&trace, key_set * percent / 100);
            println!(
                "budget {percent:>2} % of the key set: cache {:.1} %, lru {:.1} % ({} reads)",
                rates.cache * 100.0,
                rates.lru * 100.0,
                rates.reads
            );
            assert!(
                rates.cache > rates.lru,
                "budget {percent} %: cache {} <= lru {}",
                rates.cache,
                rates.lru
            );
        }
    }
}
