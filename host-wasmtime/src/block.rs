//! Block execution: transactions with declared access sets, run on the tiered engines by the
//! worker pool, with the result of sequential execution in block order.
//!
//! Each transaction sees the block state through its declared [`AccessSet`]: touching any other
//! key traps with `undeclared_access`, in parallel and in sequential execution alike. A
//! transaction's writes are applied when it succeeds, before its dependants start; a trapping
//! transaction's writes are discarded and the block goes on. Blobs stored during the block
//! become readable after it (every transaction reads the blobs of earlier blocks only), so that
//! blob reads never depend on the order of independent transactions.

use std::collections::BTreeMap;

use hashbrown::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use synor_core::abi::{Blobs, CallContext, Event, State, Trap};
use synor_core::digest::{CodeId, Digest};
use synor_core::sched::{AccessSet, Dag};
use synor_core::tier::{Call, EngineError};

use crate::tiered::TieredExecutor;
use crate::workload::{self, Deployment};

/// One transaction of a block.
#[derive(Debug, Clone)]
pub struct Transaction {
    /// Index of the deployment called.
    pub contract: usize,
    /// The export called.
    pub entry: String,
    /// The sender.
    pub caller: [u8; 32],
    /// The input.
    pub input: Vec<u8>,
    /// Gas limit.
    pub gas: u64,
    /// The state keys (namespaced by contract) it may read and write.
    pub access: AccessSet,
}

/// What a transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Gas used.
    pub gas_used: u64,
    /// Why it failed (stable name and message), if it did.
    pub trap: Option<String>,
    /// Return data (empty when it failed).
    pub return_data: Vec<u8>,
    /// Events (none when it failed).
    pub events: Vec<Event>,
}

/// How to execute a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One transaction after the other, in block order.
    Sequential,
    /// Declared access sets: the dependency graph drained by `threads` workers.
    Declared {
        /// Worker threads (the caller's included).
        threads: usize,
    },
}

/// Shards of the block state: independent transactions touch different locks (one shared
/// lock, whose cache line bounced between cores on every access, cost a third of the speedup).
const SHARDS: usize = 64;

/// Key/value state shared by a block's transactions, and the blobs of earlier blocks.
#[derive(Debug)]
pub struct BlockState {
    shards: Vec<RwLock<HashMap<Vec<u8>, Vec<u8>>>>,
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
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            blobs: RwLock::default(),
        };
        for (k, v) in values {
            state.put(k, Some(v));
        }
        state
    }

    fn shard(&self, key: &[u8]) -> &RwLock<HashMap<Vec<u8>, Vec<u8>>> {
        // FNV-1a of the key's tail (keys share their contract's prefix).
        let tail = &key[key.len().saturating_sub(16)..];
        let h = tail.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
        });
        &self.shards[(h % SHARDS as u64) as usize]
    }

    fn put(&self, key: Vec<u8>, value: Option<Vec<u8>>) {
        let mut shard = self.shard(&key).write().unwrap_or_else(|e| e.into_inner());
        match value {
            Some(v) => shard.insert(key, v),
            None => shard.remove(&key),
        };
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.shard(key)
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// Every key and value, ordered.
    pub fn snapshot(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let mut all = BTreeMap::new();
        for shard in &self.shards {
            let shard = shard.read().unwrap_or_else(|e| e.into_inner());
            all.extend(shard.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        all
    }

    /// Digest of every key and value, in key order.
    pub fn digest(&self) -> Digest {
        let mut h = blake3::Hasher::new();
        workload::hash_state(&mut h, &self.snapshot());
        Digest(*h.finalize().as_bytes())
    }
}

/// What a worker's views share. One per worker, so that the reference counts views touch
/// are the worker's own, not a cache line bouncing between cores.
struct Shared {
    state: Arc<BlockState>,
    txs: Arc<[Transaction]>,
}

/// A transaction's view: the block state, through its access set.
struct View {
    shared: Arc<Shared>,
    tx: usize,
}

impl State for View {
    fn read(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, Trap> {
        if !self.shared.txs[self.tx].access.may_read(key) {
            return Err(Trap::UndeclaredAccess {
                key: key.to_vec(),
                write: false,
            });
        }
        Ok(self.shared.state.get(key))
    }

    fn check_write(&mut self, key: &[u8]) -> Result<(), Trap> {
        if !self.shared.txs[self.tx].access.may_write(key) {
            return Err(Trap::UndeclaredAccess {
                key: key.to_vec(),
                write: true,
            });
        }
        Ok(())
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

fn execute_one(
    exec: &TieredExecutor,
    deployments: &[Deployment],
    shared: &Arc<Shared>,
    tx: usize,
    new_blobs: &mut Vec<(CodeId, Vec<u8>)>,
) -> Result<Receipt, EngineError> {
    let t = &shared.txs[tx];
    let state = &shared.state;
    let module = &deployments[t.contract].module;
    let view = || View {
        shared: shared.clone(),
        tx,
    };
    let mut ctx = CallContext::new(
        module.code_id,
        t.caller,
        t.input.clone(),
        t.gas,
        Box::new(view()),
        Box::new(view()),
    );
    let (outcome, _) = exec.call(module, &mut ctx, &Call::new(&t.entry, &[]))?;
    if let Some(trap) = outcome.trap {
        return Ok(Receipt {
            gas_used: outcome.gas_used,
            trap: Some(trap.to_string()),
            return_data: Vec::new(),
            events: Vec::new(),
        });
    }
    for (k, v) in std::mem::take(&mut ctx.writes) {
        state.put(k, v);
    }
    new_blobs.extend(ctx.new_blobs.drain(..).map(|b| (b.id, b.bytes)));
    Ok(Receipt {
        gas_used: outcome.gas_used,
        trap: None,
        return_data: std::mem::take(&mut ctx.return_data),
        events: std::mem::take(&mut ctx.events),
    })
}

/// Executes `txs` against `state` in `mode`; returns one receipt per transaction. The state
/// and receipts are those of sequential execution in block order, whatever the mode.
///
/// # Errors
/// A transaction could not be called at all (no such export: a malformed block); the state is
/// then partly updated and must be discarded.
pub fn execute_block(
    exec: &TieredExecutor,
    deployments: &[Deployment],
    state: &Arc<BlockState>,
    txs: &Arc<[Transaction]>,
    mode: Mode,
) -> Result<Vec<Receipt>, EngineError> {
    let blobs = std::sync::Mutex::new(Vec::new());
    let receipts: Vec<OnceLock<Result<Receipt, EngineError>>> =
        (0..txs.len()).map(|_| OnceLock::new()).collect();
    let workers = match mode {
        Mode::Sequential => 1,
        Mode::Declared { threads } => threads.max(1),
    };
    let shared: Vec<Arc<Shared>> = (0..workers)
        .map(|_| {
            Arc::new(Shared {
                state: state.clone(),
                txs: txs.clone(),
            })
        })
        .collect();
    let run = |worker: usize, tx: u32| {
        let mut mine = Vec::new();
        let r = execute_one(exec, deployments, &shared[worker], tx as usize, &mut mine);
        let _ = receipts[tx as usize].set(r);
        if !mine.is_empty() {
            blobs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((tx, mine));
        }
    };
    match mode {
        Mode::Sequential => (0..txs.len() as u32).for_each(|tx| run(0, tx)),
        Mode::Declared { threads } => {
            let sets: Vec<AccessSet> = txs.iter().map(|t| t.access.clone()).collect();
            let dag = Dag::build(&sets);
            synor_host_std::pool::run(&dag, threads, &run);
        }
    }
    // Blobs of the block, in block order, readable from the next block on.
    let mut stored = blobs.into_inner().unwrap_or_else(|e| e.into_inner());
    stored.sort_by_key(|(tx, _)| *tx);
    let mut all = state.blobs.write().unwrap_or_else(|e| e.into_inner());
    for (id, bytes) in stored.into_iter().flat_map(|(_, b)| b) {
        all.entry(id).or_insert_with(|| bytes.into());
    }
    receipts
        .into_iter()
        .map(|r| {
            r.into_inner()
                .unwrap_or_else(|| Err(EngineError::Engine("transaction not run".into())))
        })
        .collect()
}

/// Key of `account`'s balance in the token deployment `token` (as the contract namespaces it).
pub fn balance_key(token: &CodeId, account: &[u8; 32]) -> Vec<u8> {
    let mut k = token.as_bytes().to_vec();
    k.extend_from_slice(b"bal:");
    k.extend_from_slice(account);
    k
}

/// A transfer of `amount` from account `from` to account `to` (see [`workload::account`]) in
/// the token deployment `token`, declaring the two balances it touches.
pub fn transfer(
    deployments: &[Deployment],
    token: usize,
    from: u64,
    to: u64,
    amount: u64,
) -> Transaction {
    let id = deployments[token].module.code_id;
    let (from, to) = (workload::account(from), workload::account(to));
    let mut input = to.to_vec();
    input.extend_from_slice(&amount.to_le_bytes());
    Transaction {
        contract: token,
        entry: "transfer".into(),
        caller: from,
        input,
        gas: 10_000_000,
        access: AccessSet {
            reads: Vec::new(),
            writes: vec![balance_key(&id, &from), balance_key(&id, &to)],
        },
    }
}

/// The Block-STM workload: `n` peer-to-peer transfers among `accounts` accounts through the
/// token deployment `token`, and the genesis state funding every account.
pub fn transfers(
    deployments: &[Deployment],
    token: usize,
    accounts: u64,
    n: usize,
    seed: u64,
) -> (BlockState, Vec<Transaction>) {
    let id = deployments[token].module.code_id;
    let genesis = (0..accounts).map(|i| {
        (
            balance_key(&id, &workload::account(i)),
            1_000_000u64.to_le_bytes().to_vec(),
        )
    });
    let mut rng = workload::Rng::new(seed);
    let txs = (0..n)
        .map(|_| {
            let (from, to) = (rng.range(0, accounts), rng.range(0, accounts));
            transfer(deployments, token, from, to, rng.range(1, 100))
        })
        .collect();
    (BlockState::new(genesis), txs)
}
