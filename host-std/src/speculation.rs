//! Speculation: pending transactions pre-executed between blocks, and their results reused by
//! the block that includes them while everything they read still has the version they saw.
//!
//! A node's pending pool ([`Pool`]) holds transactions in the order they were submitted, each
//! with its [`PreExecuted`] result once a background thread has computed it against the
//! committed state of one height (a snapshot: the node's cache updates never reach it). When a
//! block comes, the node asks the pool for each of the block's transactions; a result counts
//! only if every key it read still has the committed version it saw
//! ([`PreExecuted::still_committed`]), and the block's execution then uses it only if no
//! earlier transaction of the block wrote one of those keys (see
//! [`block::execute_block_reusing`]). Validity is a comparison of versions, never of values,
//! and results change only how long a block takes: never its receipts or state.
//!
//! A block never waits for pre-execution: it moves the pool's generation on, and the thread
//! stops after the transaction it is running (whose result it then drops). The pool holds at
//! most its byte budget of transactions and results: past it, the oldest go first.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use synor_core::block::{Contracts, Transaction};
use synor_core::digest::Digest;

use crate::block::{self, BlockState, PreExecuted, Reused};
use crate::tiered::TieredExecutor;

/// The identity of a transaction in the pool: the blake3 of every field.
pub fn transaction_id(tx: &Transaction) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(b"synor/transaction/v1");
    let mut field = |b: &[u8]| {
        h.update(&(b.len() as u64).to_le_bytes());
        h.update(b);
    };
    field(tx.contract.as_bytes());
    field(tx.entry.as_bytes());
    field(&tx.caller);
    field(&tx.input);
    field(&tx.gas.to_le_bytes());
    match &tx.access {
        None => field(&[0]),
        Some(set) => {
            field(&[1]);
            field(&(set.reads.len() as u64).to_le_bytes());
            set.reads.iter().for_each(|k| field(k));
            field(&(set.writes.len() as u64).to_le_bytes());
            set.writes.iter().for_each(|k| field(k));
        }
    }
    Digest(*h.finalize().as_bytes())
}

/// Results a transaction is pre-executed on top of at most: the same sender's latest pending
/// ones (a longer chain of one sender's transactions still runs, each on its last 16).
const MAX_PARENTS: usize = 16;

/// Bytes a pending transaction holds, for the pool's budget.
fn transaction_bytes(tx: &Transaction) -> usize {
    let access = tx.access.as_ref().map_or(0, |a| {
        (a.reads.iter().chain(&a.writes))
            .map(|k| 24 + k.len())
            .sum()
    });
    std::mem::size_of::<Transaction>() + 64 + tx.entry.len() + tx.input.len() + access
}

/// A pending transaction and, once computed, its pre-executed result.
struct Entry {
    tx: Arc<Transaction>,
    result: Option<Arc<PreExecuted>>,
    /// Whether the background thread has run it (a run may give no result that could stand).
    tried: bool,
    bytes: usize,
}

/// What the pool holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Pending transactions.
    pub pending: usize,
    /// Of them, with a pre-executed result.
    pub results: usize,
    /// Bytes held (transactions and results), at most the budget.
    pub bytes: usize,
    /// Bytes of the results alone.
    pub result_bytes: usize,
    /// Transactions dropped (the oldest first) to stay within the budget.
    pub dropped: u64,
}

/// The pending transactions, in submission order, with their results.
#[derive(Default)]
struct Entries {
    order: VecDeque<Digest>,
    by_id: HashMap<Digest, Entry>,
    bytes: usize,
    result_bytes: usize,
    dropped: u64,
    /// Transactions not run yet.
    untried: usize,
    /// The serial numbers of the results held.
    serials: std::collections::HashSet<u64>,
    /// The last serial number given.
    serial: u64,
    /// Whether results are to be checked against a new committed state.
    stale: bool,
    /// Whether the background thread is running.
    running: bool,
}

impl Entries {
    fn remove(&mut self, id: &Digest) -> Option<Entry> {
        let entry = self.by_id.remove(id)?;
        self.bytes -= entry.bytes;
        self.untried -= usize::from(!entry.tried);
        if let Some(r) = &entry.result {
            self.result_bytes -= r.bytes();
            self.serials.remove(&r.serial());
        }
        Some(entry)
    }

    /// Sets the result of `id` (none: the transaction is to run again).
    fn set_result(&mut self, id: &Digest, result: Option<Arc<PreExecuted>>) {
        let Some(entry) = self.by_id.get_mut(id) else {
            return;
        };
        let old = entry.result.as_ref().map_or(0, |r| r.bytes());
        let new = result.as_ref().map_or(0, |r| r.bytes());
        let tried = result.is_some();
        self.untried = self.untried + usize::from(entry.tried) - usize::from(tried);
        entry.tried = tried;
        entry.bytes = entry.bytes - old + new;
        if let Some(r) = &entry.result {
            self.serials.remove(&r.serial());
        }
        if let Some(r) = &result {
            self.serials.insert(r.serial());
        }
        entry.result = result;
        self.bytes = self.bytes - old + new;
        self.result_bytes = self.result_bytes - old + new;
    }

    /// Marks `id` as run, with no result that could stand.
    fn tried(&mut self, id: &Digest) {
        if let Some(entry) = self.by_id.get_mut(id) {
            self.untried -= usize::from(!entry.tried);
            entry.tried = true;
        }
    }

    /// Marks every transaction without a result as not run.
    fn retry(&mut self) {
        for entry in self.by_id.values_mut() {
            if entry.result.is_none() && entry.tried {
                entry.tried = false;
                self.untried += 1;
            }
        }
    }

    /// Drops the oldest transactions until the pool is within `budget`.
    fn shrink(&mut self, budget: usize) {
        while self.bytes > budget {
            let Some(id) = self.order.pop_front() else {
                break;
            };
            if self.remove(&id).is_some() {
                self.dropped += 1;
            }
        }
    }

    /// The oldest transaction not run yet, with the results of the same sender's earlier
    /// pending transactions (oldest first), which it is to run on top of, and its place among
    /// the pending transactions.
    #[allow(clippy::type_complexity)]
    fn next_untried(&mut self) -> Option<(Digest, Arc<Transaction>, u32, Vec<Arc<PreExecuted>>)> {
        // Ids of transactions that left the pool stay in `order` until they reach its front.
        while self
            .order
            .front()
            .is_some_and(|id| !self.by_id.contains_key(id))
        {
            self.order.pop_front();
        }
        let at = (self.order.iter()).position(|id| self.by_id.get(id).is_some_and(|e| !e.tried))?;
        let id = self.order[at];
        let tx = self.by_id[&id].tx.clone();
        let mut parents: Vec<_> = (self.order.range(..at).rev())
            .filter_map(|id| self.by_id.get(id))
            .filter(|e| e.tx.caller == tx.caller)
            .filter_map(|e| e.result.clone())
            .take(MAX_PARENTS)
            .collect();
        parents.reverse();
        // Its place among the pending transactions: where a block taking them in order puts
        // it (a result that depends on its place stands only there).
        let rank = (self.order.range(..at))
            .filter(|id| self.by_id.contains_key(id))
            .count();
        Some((id, tx, u32::try_from(rank).unwrap_or(u32::MAX), parents))
    }

    /// Whether every parent of `result` is still the result of a pending transaction.
    fn parents_current(&self, result: &PreExecuted) -> bool {
        result.parents().iter().all(|p| self.serials.contains(p))
    }
}

/// What pre-execution runs against: the committed state of one height, and the contracts.
pub struct Snapshot {
    /// The committed state (a base without the node's cache), with no block's writes.
    pub state: Arc<BlockState>,
    /// The height of that state.
    pub height: u64,
    /// The contracts a pre-executed transaction may call.
    pub contracts: Arc<dyn Contracts>,
    /// The chain CosmWasm contracts see.
    pub cosmwasm: Arc<synor_core::cosmwasm::tx::CwChain>,
}

/// Makes a [`Snapshot`] of the latest committed state; the node's part.
pub type Snapshots = dyn Fn() -> Result<Snapshot, String> + Send + Sync;

/// The pending pool and its background pre-execution. See the [module documentation](self).
pub struct Pool {
    entries: Mutex<Entries>,
    /// Moved on by every block: a result computed against an older generation is dropped.
    generation: AtomicU64,
    /// Signalled when the background thread stops.
    idle: Condvar,
    /// Set when the node closes: no more pre-execution.
    closed: AtomicBool,
    budget: usize,
    exec: Arc<TieredExecutor>,
    snapshots: Box<Snapshots>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("stats", &self.stats())
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool of at most `budget` bytes, pre-executing on `exec` against what `snapshots`
    /// gives. A budget of 0 keeps nothing (no speculation).
    pub fn new(budget: usize, exec: Arc<TieredExecutor>, snapshots: Box<Snapshots>) -> Self {
        Self {
            entries: Mutex::default(),
            generation: AtomicU64::new(0),
            idle: Condvar::new(),
            closed: AtomicBool::new(false),
            budget,
            exec,
            snapshots,
        }
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `tx` to the pool (once: a transaction already pending is not added again) and
    /// makes sure the background thread runs.
    pub fn submit(self: &Arc<Self>, tx: Transaction) {
        if self.budget == 0 {
            return;
        }
        let id = transaction_id(&tx);
        let mut entries = self.entries();
        if entries.by_id.contains_key(&id) {
            return;
        }
        let bytes = transaction_bytes(&tx);
        entries.order.push_back(id);
        entries.by_id.insert(
            id,
            Entry {
                tx: Arc::new(tx),
                result: None,
                tried: false,
                bytes,
            },
        );
        entries.bytes += bytes;
        entries.untried += 1;
        entries.shrink(self.budget);
        self.wake(entries);
    }

    /// Starts the background thread if it is not running and there is work.
    fn wake(self: &Arc<Self>, mut entries: MutexGuard<'_, Entries>) {
        if entries.running || (entries.untried == 0 && !entries.stale) {
            return;
        }
        entries.running = true;
        drop(entries);
        let pool = self.clone();
        let spawned = std::thread::Builder::new()
            .name("synor-speculation".into())
            .spawn(move || pool.run());
        if spawned.is_err() {
            // No thread: no speculation, which changes nothing but time.
            self.entries().running = false;
            self.idle.notify_all();
        }
    }

    /// The background thread: pre-executes untried transactions in submission order against
    /// the latest committed state until none is left.
    fn run(self: Arc<Self>) {
        'snapshot: loop {
            let generation = self.generation.load(Ordering::Acquire);
            self.entries().stale = false;
            let snapshot = match self.closed.load(Ordering::Acquire) {
                true => Err(String::new()),
                false => (self.snapshots)(),
            };
            let Ok(snapshot) = snapshot else {
                break;
            };
            if !self.refresh(&snapshot.state, generation) {
                continue;
            }
            loop {
                if self.generation.load(Ordering::Acquire) != generation {
                    continue 'snapshot;
                }
                let (id, tx, index, parents) = {
                    let mut entries = self.entries();
                    match entries.next_untried() {
                        Some(next) => next,
                        // Stopping under the same lock that `submit` checks `running` under.
                        None => {
                            entries.running = false;
                            drop(entries);
                            self.idle.notify_all();
                            return;
                        }
                    }
                };
                let result = block::pre_execute(
                    &self.exec,
                    &snapshot.contracts,
                    &snapshot.cosmwasm,
                    &snapshot.state,
                    (snapshot.height + 1, index),
                    Transaction::clone(&tx),
                    &parents,
                );
                let mut entries = self.entries();
                // A block came meanwhile: the result may already be stale, and the block may
                // have taken the transaction; run it again against the new state.
                if self.generation.load(Ordering::Acquire) != generation {
                    continue 'snapshot;
                }
                match result {
                    Ok(Some(mut result)) => {
                        entries.serial += 1;
                        result.serial = entries.serial;
                        entries.set_result(&id, Some(Arc::new(result)));
                        entries.shrink(self.budget);
                    }
                    // An engine failure leaves the transaction to its block.
                    _ => entries.tried(&id),
                }
            }
        }
        self.entries().running = false;
        self.idle.notify_all();
    }

    /// Drops the results that the commits since they ran made stale (a key they read has
    /// another version in `state`, or a result they ran on top of is gone), so that they run
    /// again; one result at a time, never holding the pool while reading the state. False if
    /// a block came meanwhile.
    fn refresh(&self, state: &BlockState, generation: u64) -> bool {
        // In submission order: a parent is checked (and dropped) before the results computed
        // on top of it, which then go too.
        let held: Vec<(Digest, Arc<PreExecuted>)> = {
            let entries = self.entries();
            (entries.order.iter())
                .filter_map(|id| Some((*id, entries.by_id.get(id)?.result.clone()?)))
                .collect()
        };
        for (id, result) in held {
            if self.generation.load(Ordering::Acquire) != generation {
                return false;
            }
            let parents = self.entries().parents_current(&result);
            if !parents || !result.still_committed(state).unwrap_or(false) {
                self.entries().set_result(&id, None);
            }
        }
        true
    }

    /// Moves the generation on (a block is starting): the background thread stops after the
    /// transaction it is running, without being waited for.
    pub fn interrupt(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The result for each of `txs` that still stands against `state`'s committed state (every
    /// key it read has the version it saw) and whose parents are the results offered to
    /// transactions before it in `txs`; takes `txs` out of the pool.
    ///
    /// # Errors
    /// The committed state could not be read.
    pub fn take(
        &self,
        txs: &[Transaction],
        state: &BlockState,
    ) -> Result<Vec<Option<Reused>>, String> {
        let mut entries = self.entries();
        if entries.by_id.is_empty() {
            return Ok(Vec::new());
        }
        let taken: Vec<_> = (txs.iter())
            .map(|tx| entries.remove(&transaction_id(tx)).and_then(|e| e.result))
            .collect();
        let Entries { order, by_id, .. } = &mut *entries;
        order.retain(|id| by_id.contains_key(id));
        drop(entries);
        // Each offered result, by address, at its place in the block.
        let mut offered: HashMap<u64, usize> = HashMap::new();
        let mut out = Vec::with_capacity(txs.len());
        for (i, taken) in taken.into_iter().enumerate() {
            let reused = match taken {
                Some(r) if r.still_committed(state)? => {
                    let parents: Option<Vec<usize>> = (r.parents().iter())
                        .map(|p| offered.get(p).copied())
                        .collect();
                    parents.map(|parents| Reused { result: r, parents })
                }
                _ => None,
            };
            if let Some(r) = &reused {
                offered.insert(r.result.serial(), i);
            }
            out.push(reused);
        }
        Ok(out)
    }

    /// After a block: results against the state before it stay (their versions decide), and
    /// the transactions not run yet are run against the new state.
    pub fn resume(self: &Arc<Self>) {
        let mut entries = self.entries();
        // Results the block made stale are dropped when the thread starts on the new state,
        // and run again with those that gave none.
        entries.retry();
        entries.stale = entries.result_bytes > 0;
        self.wake(entries);
    }

    /// Stops pre-execution for good and waits for the background thread (it lets go of the
    /// node's database).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.interrupt();
        self.wait_idle();
    }

    /// Waits until the background thread has nothing left to run.
    pub fn wait_idle(&self) {
        let mut entries = self.entries();
        while entries.running {
            entries = self.idle.wait(entries).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// What the pool holds.
    pub fn stats(&self) -> PoolStats {
        let entries = self.entries();
        PoolStats {
            pending: entries.by_id.len(),
            results: entries
                .by_id
                .values()
                .filter(|e| e.result.is_some())
                .count(),
            bytes: entries.bytes,
            result_bytes: entries.result_bytes,
            dropped: entries.dropped,
        }
    }
}
