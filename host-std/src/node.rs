//! [`Node`]: one pipeline from deployment to a committed block, on a data directory.
//!
//! - [`Node::deploy`] validates and instruments a module, then stores it in the code store: its
//!   code id is the blake3 of its bytes, and bytes the instrumenter rejects are never stored.
//! - [`Node::instantiate`] gives a contract of that code an address of its own
//!   ([`contract_address`]); many contracts may share one code, each with its own state.
//!   Contracts instantiate contracts too (the `instantiate` import): those are committed with
//!   the block, callable by the transaction that made them at once and by anyone from the next
//!   block on.
//! - [`Node::execute_block`] executes transactions addressed to contracts (in the configured
//!   [`Mode`], always with the result of sequential execution) over the committed state, then
//!   commits, in one redb write transaction: the state diff (each value with the
//!   [`Version`](crate::block::Writer) that wrote it), the receipts, the blobs stored during the
//!   block (through the code store, as updates of their previous versions where given), the
//!   contracts instantiated in it, and the height. A crash leaves the previous block or the new one, never a mix.
//! - [`Node::query`] runs a call on the committed state and keeps nothing.
//!
//! The state, the code store and the node's records share one redb database
//! (`<dir>/store.redb`), committed durably (see [`crate::kv`]). Compiled artifacts go to
//! `<dir>/artifacts` when the engines are given an artifact cache (the wasmtime host does).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use redb::{
    Database, ReadOnlyTable, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition,
};
use synor_core::StoreError;
use synor_core::abi::{Event, NewContract};
use synor_core::block::{
    Address, Contracts, Mode, Receipt, Transaction, contract_address, receipts_digest, state_digest,
};
use synor_core::cosmwasm::tx::{CwChain, QueryOutcome};
use synor_core::digest::{CodeId, Digest};
use synor_core::gas::GasSchedule;
use synor_core::instrument::{self, InstrumentError, Instrumented, Limits};
use synor_core::state::{Direction, KeyValue, Range, Version, diff_digest, merge_next};
use synor_core::store::{CodeStore, StoreConfig};
use synor_core::tier::{Engine, EngineError, TierPolicy, TieringStats};

use crate::block::{self, Base, BlockExecutor, BlockState, Writer};
use crate::cache::{CacheStats, CachedEntry, StateCache};
use crate::kv::{self, RedbKv};
use crate::pool;
use crate::speculation::{Pool, PoolStats, Snapshot};
use crate::tiered::{self, TieredExecutor};
use crate::{STORE_FILE, ZstdCompressor};

/// Committed state: namespaced key → version (16 bytes) ++ value.
const STATE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("state");
/// Contracts: address → code id (32) ++ creator (32) ++ height (8, little-endian).
const CONTRACTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("contracts");
/// Deployed code: code id → nothing (the code store holds the bytes, beside blobs).
const CODES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("codes");
/// Receipts of each block, encoded ([`encode_receipts`]).
const RECEIPTS: TableDefinition<u64, &[u8]> = TableDefinition::new("receipts");
/// Each block's digests: receipts (32) ++ state diff (32).
const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
/// Counters: `height`, `nonce` (contracts instantiated).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Bytes of the version stored before each committed value.
const VERSION_BYTES: usize = 16;

/// A committed entry's stored form: its version (block, transaction, incarnation, little-endian)
/// and its value.
struct Stored;

impl Stored {
    fn encode(version: Version) -> [u8; VERSION_BYTES] {
        let mut out = [0u8; VERSION_BYTES];
        out[..8].copy_from_slice(&version.block.to_le_bytes());
        out[8..12].copy_from_slice(&version.tx.to_le_bytes());
        out[12..].copy_from_slice(&version.incarnation.to_le_bytes());
        out
    }

    /// The version and value of a stored entry.
    fn split(stored: &[u8]) -> Result<(Version, &[u8]), NodeError> {
        if stored.len() < VERSION_BYTES {
            return Err(NodeError::Corrupt(format!(
                "a state entry of {} bytes, shorter than its version",
                stored.len()
            )));
        }
        let (v, value) = stored.split_at(VERSION_BYTES);
        let word = |r: std::ops::Range<usize>| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&v[r]);
            u32::from_le_bytes(b)
        };
        let mut block = [0u8; 8];
        block.copy_from_slice(&v[..8]);
        Ok((
            Version {
                block: u64::from_le_bytes(block),
                tx: word(8..12),
                incarnation: word(12..16),
            },
            value,
        ))
    }
}

/// A committed key, its value and the version that wrote it.
pub type VersionedEntry = (Vec<u8>, Vec<u8>, Version);

/// How a node executes.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// How blocks are executed (every mode gives the same result).
    pub mode: Mode,
    /// When contracts are promoted to faster tiers.
    pub tier_policy: TierPolicy,
    /// Bytes of compiled code held in memory.
    pub code_cache_bytes: usize,
    /// What modules the instrumenter accepts.
    pub limits: Limits,
    /// The code store's configuration.
    pub store: StoreConfig,
    /// Bytes of committed state held in the hot-state cache.
    pub state_cache_bytes: u64,
    /// Commit each block on a thread of its own while the next one executes (see
    /// [`Node::execute_block`]).
    pub pipeline: bool,
    /// Bytes of pending transactions and their pre-executed results ([`Node::submit`]); 0
    /// turns speculation off.
    pub speculation_bytes: usize,
    /// The chain CosmWasm contracts see: chain id, address prefix, block times, gas.
    pub cosmwasm: CwChain,
}

impl Default for NodeConfig {
    /// Optimistic execution on every core, the default tier policy and limits.
    fn default() -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            mode: Mode::Optimistic { threads },
            tier_policy: TierPolicy::DEFAULT,
            code_cache_bytes: tiered::DEFAULT_CACHE_BYTES,
            limits: Limits::default(),
            store: StoreConfig::default(),
            state_cache_bytes: 64 << 20,
            pipeline: true,
            speculation_bytes: 64 << 20,
            cosmwasm: CwChain::default(),
        }
    }
}

/// Why a node operation failed. Nothing a transaction does is an error: its receipt says
/// what happened. Errors are about the node (its storage, its engines) or about what was
/// asked of it outside blocks.
#[derive(Debug)]
#[non_exhaustive]
pub enum NodeError {
    /// The database failed.
    Database(redb::Error),
    /// The code store failed.
    Store(StoreError),
    /// The module was rejected at deployment (it is not stored).
    Rejected(InstrumentError),
    /// A CosmWasm module (it exports an `interface_version_*` or an older marker) was
    /// rejected at deployment: what CosmWasm's check found (an interface version other than 8,
    /// an unknown import, ...).
    RejectedCosmWasm(String),
    /// No code with this id was deployed.
    UnknownCode(CodeId),
    /// No contract at this address.
    UnknownContract(Address),
    /// An engine failed (a fault of the node, not of a transaction).
    Engine(EngineError),
    /// The node's storage failed while a block executed: the block was discarded.
    Fault(String),
    /// Stored node data is damaged.
    Corrupt(String),
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::Database(e) => write!(f, "database: {e}"),
            NodeError::Store(e) => write!(f, "code store: {e}"),
            NodeError::Rejected(e) => write!(f, "module rejected: {e}"),
            NodeError::RejectedCosmWasm(e) => write!(f, "CosmWasm module rejected: {e}"),
            NodeError::UnknownCode(id) => write!(f, "no code {id} was deployed"),
            NodeError::UnknownContract(a) => write!(f, "no contract at {a}"),
            NodeError::Engine(e) => write!(f, "engine: {e}"),
            NodeError::Fault(e) => write!(f, "the node failed during the block: {e}"),
            NodeError::Corrupt(e) => write!(f, "damaged node data: {e}"),
        }
    }
}

impl std::error::Error for NodeError {}

impl<E: Into<redb::Error>> From<E> for NodeError {
    fn from(e: E) -> Self {
        NodeError::Database(e.into())
    }
}

/// What a committed block did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockOutcome {
    /// The block's height (the first block is 1).
    pub height: u64,
    /// One receipt per transaction.
    pub receipts: Vec<Receipt>,
    /// Digest of the receipts ([`receipts_digest`]): the same on every node and in every mode.
    pub receipts_digest: Digest,
    /// Digest of the state diff ([`diff_digest`]): the same on every node and in every mode.
    pub diff_digest: Digest,
    /// Contract executions (more than the transactions when optimistic execution re-ran some).
    pub executions: usize,
    /// Validations of optimistic executions.
    pub validations: usize,
    /// Keys the block wrote or removed.
    pub keys_written: usize,
    /// Blobs the block stored.
    pub blobs_stored: usize,
    /// Transactions whose pre-executed result stood for their execution ([`Node::submit`]).
    pub reused: usize,
    /// Time spent executing the block (wall clock; differs between runs).
    pub execute_time: std::time::Duration,
    /// Time spent committing it (wall clock; differs between runs).
    pub commit_time: std::time::Duration,
}

/// A contract instantiated on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContractInfo {
    /// Its address.
    pub address: Address,
    /// Its code.
    pub code: CodeId,
    /// Who instantiated it.
    pub creator: [u8; 32],
    /// The height it was instantiated at (after that block).
    pub height: u64,
}

impl ContractInfo {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(72);
        out.extend_from_slice(self.code.as_bytes());
        out.extend_from_slice(&self.creator);
        out.extend_from_slice(&self.height.to_le_bytes());
        out
    }

    fn decode(address: Address, bytes: &[u8]) -> Result<Self, NodeError> {
        if bytes.len() != 72 {
            return Err(NodeError::Corrupt(format!(
                "the record of contract {address} is {} bytes, not 72",
                bytes.len()
            )));
        }
        let mut code = [0u8; 32];
        code.copy_from_slice(&bytes[..32]);
        let mut creator = [0u8; 32];
        creator.copy_from_slice(&bytes[32..64]);
        let mut height = [0u8; 8];
        height.copy_from_slice(&bytes[64..]);
        Ok(Self {
            address,
            code: Digest(code),
            creator,
            height: u64::from_le_bytes(height),
        })
    }
}

type Store = CodeStore<RedbKv, ZstdCompressor>;

/// The modules a block may run: every contract's by address, every deployed code's by id
/// (contracts share them; a contract instantiated during a block runs its code's).
#[derive(Default, Clone)]
struct Loaded {
    contracts: HashMap<Address, Arc<Instrumented>>,
    codes: HashMap<CodeId, Arc<Instrumented>>,
    /// Deployed codes by number (CosmWasm's `code_id`: 1, 2, ... in deployment order).
    numbers: HashMap<u64, CodeId>,
    /// Whether every contract and code in the database is loaded.
    complete: bool,
}

impl Contracts for Loaded {
    fn module(&self, address: &Address) -> Option<&Arc<Instrumented>> {
        self.contracts.get(address)
    }

    fn code(&self, code: &Digest) -> Option<Arc<Instrumented>> {
        self.codes.get(code).cloned()
    }

    fn code_by_number(&self, number: u64) -> Option<Digest> {
        self.numbers.get(&number).copied()
    }
}

/// A node on a data directory. See the [module documentation](self).
pub struct Node {
    dir: PathBuf,
    db: Arc<Database>,
    store: Arc<RwLock<Store>>,
    exec: Arc<TieredExecutor>,
    blocks: BlockExecutor,
    /// Every contract's and every deployed code's module (loaded before the first block
    /// after opening).
    loaded: Arc<Loaded>,
    /// Hot committed state, in front of the state table.
    cache: Arc<StateCache>,
    /// The last block's state, kept for its allocations.
    spare: Option<BlockState>,
    /// The last block, while its commit may still be in flight.
    pending: Option<Arc<Pending>>,
    /// The pipelined commit.
    commits: Commits,
    /// Pending transactions, pre-executed between blocks.
    pool: Arc<Pool>,
    /// What pre-execution runs against: the latest block, and the contracts.
    tip: Arc<Mutex<Tip>>,
    height: u64,
    nonce: u64,
    config: NodeConfig,
}

impl Drop for Node {
    fn drop(&mut self) {
        // Pre-execution lets go of the database, and the block in flight is written, before
        // the node goes.
        self.pool.close();
        let _ = self.commits.wait();
    }
}

/// The latest block as pre-execution sees it.
#[derive(Clone)]
struct Tip {
    height: u64,
    pending: Option<Arc<Pending>>,
    contracts: Arc<Loaded>,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("dir", &self.dir)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Opens the node in `dir` (created if missing), running contracts on `engines` (cold,
    /// warm, hot). The `synor-host-wasmtime` crate's `open_node` gives it wasmtime's engines
    /// with an artifact cache in `dir`.
    ///
    /// # Errors
    /// The directory or database cannot be created or opened, or what it holds is damaged.
    pub fn open(
        dir: &Path,
        config: NodeConfig,
        engines: [Arc<dyn Engine>; 3],
    ) -> Result<Self, NodeError> {
        std::fs::create_dir_all(dir).map_err(|e| NodeError::Fault(e.to_string()))?;
        let db = Database::create(dir.join(STORE_FILE))?;
        Self::open_on(dir, db, config, engines)
    }

    /// As [`Node::open`], on `db`, the database `<dir>/store.redb` opened by the caller (on a
    /// backend of its choice: fault injection in the crash tests).
    ///
    /// # Errors
    /// As [`Node::open`].
    pub fn open_on(
        dir: &Path,
        db: Database,
        config: NodeConfig,
        engines: [Arc<dyn Engine>; 3],
    ) -> Result<Self, NodeError> {
        let path = dir.join(STORE_FILE);
        let db = Arc::new(db);
        let kv = RedbKv::with_database(db.clone(), path).map_err(NodeError::Database)?;
        let store = CodeStore::open(kv, ZstdCompressor::default(), config.store.clone())
            .map_err(NodeError::Store)?;
        let txn = kv::begin_write(&db)?;
        txn.open_table(STATE)?;
        txn.open_table(CONTRACTS)?;
        txn.open_table(CODES)?;
        txn.open_table(RECEIPTS)?;
        txn.open_table(BLOCKS)?;
        txn.open_table(META)?;
        txn.commit()?;
        let (height, nonce) = {
            let read = db.begin_read()?;
            let meta = read.open_table(META)?;
            let get =
                |k: &str| -> Result<u64, NodeError> { Ok(meta.get(k)?.map_or(0, |v| v.value())) };
            (get("height")?, get("nonce")?)
        };
        let exec = Arc::new(TieredExecutor::new(
            engines,
            tiered::Mode::Tiered(config.tier_policy),
            config.code_cache_bytes,
        ));
        let store = Arc::new(RwLock::new(store));
        let tip = Arc::new(Mutex::new(Tip {
            height,
            pending: None,
            contracts: Arc::default(),
        }));
        let snapshots = {
            let (db, store, tip) = (db.clone(), store.clone(), tip.clone());
            let cosmwasm = Arc::new(config.cosmwasm.clone());
            move || -> Result<Snapshot, String> {
                let tip = tip.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let read = db.begin_read().map_err(|e| e.to_string())?;
                let base = Committed {
                    table: read.open_table(STATE).map_err(|e| e.to_string())?,
                    store: store.clone(),
                    cache: None,
                    pending: tip.pending,
                };
                Ok(Snapshot {
                    state: Arc::new(BlockState::over(Arc::new(base))),
                    height: tip.height,
                    contracts: tip.contracts,
                    cosmwasm: cosmwasm.clone(),
                })
            }
        };
        let pool = Arc::new(Pool::new(
            config.speculation_bytes,
            exec.clone(),
            Box::new(snapshots),
        ));
        Ok(Self {
            dir: dir.to_path_buf(),
            db,
            store,
            exec,
            blocks: BlockExecutor::with_cosmwasm(config.cosmwasm.clone()),
            loaded: Arc::default(),
            cache: Arc::new(StateCache::new(config.state_cache_bytes)),
            spare: None,
            pending: None,
            commits: Commits::default(),
            pool,
            tip,
            height,
            nonce,
            config,
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Height of the last committed block (0 before the first).
    pub fn height(&self) -> u64 {
        self.height
    }

    /// The configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Sets how blocks are executed from now on (every mode gives the same results).
    pub fn set_mode(&mut self, mode: Mode) {
        self.config.mode = mode;
    }

    /// The tier manager (tiers, promotions, compiled code held).
    pub fn executor(&self) -> &TieredExecutor {
        &self.exec
    }

    /// Counts of the tier manager.
    pub fn tiering(&self) -> TieringStats {
        self.exec.stats()
    }

    /// Counts of the hot-state cache.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    fn store_read(&self) -> std::sync::RwLockReadGuard<'_, Store> {
        self.store.read().unwrap_or_else(|e| e.into_inner())
    }

    fn store_write(&self) -> std::sync::RwLockWriteGuard<'_, Store> {
        self.store.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the code store (statistics, reads).
    pub fn with_store<R>(&self, f: impl FnOnce(&Store) -> R) -> R {
        // A failed commit leaves the store as it was: its failure is reported elsewhere.
        let _ = self.sync();
        f(&self.store_read())
    }

    /// Deploys `wasm`: validates and instruments it (a rejected module is not stored), then
    /// stores it durably in the code store. Returns its code id, the blake3 of `wasm`.
    /// Deploying bytes already deployed changes nothing and returns the same id.
    ///
    /// # Errors
    /// [`NodeError::Rejected`] with the instrumenter's reason; store failures.
    pub fn deploy(&mut self, wasm: &[u8]) -> Result<CodeId, NodeError> {
        self.sync()?;
        let id = CodeId::of(wasm);
        if self.deployed(&id)? {
            return Ok(id);
        }
        let module = instrument::instrument(wasm, &GasSchedule::V1, &self.config.limits).map_err(
            |e| match e {
                InstrumentError::CosmWasm(e) => NodeError::RejectedCosmWasm(e.to_string()),
                e => NodeError::Rejected(e),
            },
        )?;
        // The bytes first, then the record that they are code: a crash between leaves bytes
        // that a second deployment records.
        let stored = self.store_write().put(wasm).map_err(NodeError::Store)?;
        debug_assert_eq!(stored.id, id);
        let txn = kv::begin_write(&self.db)?;
        let number = {
            let mut codes = txn.open_table(CODES)?;
            let number = codes.len()? + 1;
            codes.insert(id.as_bytes().as_slice(), number.to_le_bytes().as_slice())?;
            number
        };
        txn.commit()?;
        let loaded = Arc::make_mut(&mut self.loaded);
        loaded.codes.insert(id, Arc::new(module));
        loaded.numbers.insert(number, id);
        self.publish_tip();
        Ok(id)
    }

    /// The number of deployed code `id` (CosmWasm's `code_id`, what `WasmMsg::Instantiate`
    /// names): 1, 2, ... in deployment order.
    ///
    /// # Errors
    /// Database failures.
    pub fn code_number(&self, id: &CodeId) -> Result<Option<u64>, NodeError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(CODES)?;
        Ok(table
            .get(id.as_bytes().as_slice())?
            .and_then(|v| <[u8; 8]>::try_from(v.value()).ok())
            .map(u64::from_le_bytes))
    }

    /// Whether code `id` is deployed.
    fn deployed(&self, id: &CodeId) -> Result<bool, NodeError> {
        if self.loaded.codes.contains_key(id) {
            return Ok(true);
        }
        let read = self.db.begin_read()?;
        Ok(read
            .open_table(CODES)?
            .get(id.as_bytes().as_slice())?
            .is_some())
    }

    /// Instantiates a contract of the deployed code `code`, created by `creator`: returns its
    /// address, where its state lives. Durable when it returns.
    ///
    /// # Errors
    /// [`NodeError::UnknownCode`]; database failures.
    pub fn instantiate(&mut self, code: &CodeId, creator: [u8; 32]) -> Result<Address, NodeError> {
        self.sync()?;
        self.module(code)?;
        let address = contract_address(code, &creator, self.nonce);
        let info = ContractInfo {
            address,
            code: *code,
            creator,
            height: self.height,
        };
        let txn = kv::begin_write(&self.db)?;
        txn.open_table(CONTRACTS)?
            .insert(address.as_bytes().as_slice(), info.encode().as_slice())?;
        txn.open_table(META)?.insert("nonce", self.nonce + 1)?;
        txn.commit()?;
        self.nonce += 1;
        let module = self.module(code)?;
        Arc::make_mut(&mut self.loaded)
            .contracts
            .insert(address, module);
        self.publish_tip();
        Ok(address)
    }

    /// The contract at `address`, if any.
    ///
    /// # Errors
    /// Database failures, a damaged record.
    pub fn contract(&self, address: &Address) -> Result<Option<ContractInfo>, NodeError> {
        self.sync()?;
        let read = self.db.begin_read()?;
        let table = read.open_table(CONTRACTS)?;
        let Some(v) = table.get(address.as_bytes().as_slice())? else {
            return Ok(None);
        };
        ContractInfo::decode(*address, v.value()).map(Some)
    }

    /// Every contract, by address.
    ///
    /// # Errors
    /// Database failures, a damaged record.
    pub fn contracts(&self) -> Result<Vec<ContractInfo>, NodeError> {
        self.sync()?;
        self.read_contracts()
    }

    /// Every contract committed so far (a block's commit in flight may add more).
    fn read_contracts(&self) -> Result<Vec<ContractInfo>, NodeError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(CONTRACTS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            let address: [u8; 32] = k.value().try_into().map_err(|_| {
                NodeError::Corrupt(format!("a contract address of {} bytes", k.value().len()))
            })?;
            out.push(ContractInfo::decode(Digest(address), v.value())?);
        }
        Ok(out)
    }

    /// The instrumented module of code `id`, instrumented once per node.
    fn module(&mut self, id: &CodeId) -> Result<Arc<Instrumented>, NodeError> {
        if let Some(m) = self.loaded.codes.get(id) {
            return Ok(m.clone());
        }
        let wasm = match self.store_read().get(id) {
            Ok(w) => w,
            Err(StoreError::NotFound(_)) => return Err(NodeError::UnknownCode(*id)),
            Err(e) => return Err(NodeError::Store(e)),
        };
        // Stored code passed the instrumenter when it was deployed; failing now means the
        // node's limits changed since.
        let module = instrument::instrument(&wasm, &GasSchedule::V1, &self.config.limits)
            .map_err(NodeError::Rejected)?;
        let module = Arc::new(module);
        Arc::make_mut(&mut self.loaded)
            .codes
            .insert(*id, module.clone());
        Ok(module)
    }

    /// Loads the module of every contract and deployed code not loaded yet (after opening:
    /// any contract may be called, and any code instantiated, by a transaction or by another
    /// contract). Waits for the commit in flight, whose contracts it reads.
    /// Returns whether it loaded any.
    fn load_contracts(&mut self) -> Result<bool, NodeError> {
        if self.loaded.complete {
            return Ok(false);
        }
        self.sync()?;
        let codes: Vec<(CodeId, Option<u64>)> = {
            let read = self.db.begin_read()?;
            let table = read.open_table(CODES)?;
            let mut ids = Vec::new();
            for entry in table.iter()? {
                let (key, value) = entry?;
                let id: [u8; 32] = key.value().try_into().map_err(|_| {
                    NodeError::Corrupt(format!("a code id of {} bytes", key.value().len()))
                })?;
                // Codes deployed before numbering have none.
                let number = <[u8; 8]>::try_from(value.value())
                    .ok()
                    .map(u64::from_le_bytes);
                ids.push((Digest(id), number));
            }
            ids
        };
        for (id, number) in codes {
            self.module(&id)?;
            if let Some(n) = number {
                Arc::make_mut(&mut self.loaded).numbers.insert(n, id);
            }
        }
        for info in self.read_contracts()? {
            if !self.loaded.contracts.contains_key(&info.address) {
                let module = self.module(&info.code)?;
                Arc::make_mut(&mut self.loaded)
                    .contracts
                    .insert(info.address, module);
            }
        }
        Arc::make_mut(&mut self.loaded).complete = true;
        Ok(true)
    }

    /// A block over the committed state.
    /// The state of the last block, emptied (its allocations) or a new one.
    fn block_state(&mut self) -> Result<BlockState, NodeError> {
        let read = self.db.begin_read()?;
        let base = Arc::new(Committed {
            table: read.open_table(STATE)?,
            store: self.store.clone(),
            cache: Some(self.cache.clone()),
            pending: self.pending.clone(),
        });
        Ok(match self.spare.take() {
            Some(mut state) => {
                state.reset(base);
                state
            }
            None => BlockState::over(base),
        })
    }

    /// Executes `txs` as block `height() + 1` and commits it (see the
    /// [module documentation](self)). Takes the transactions as an `Arc<[Transaction]>` (a
    /// `Vec` or an array moves into one; a slice is cloned): the workers share them.
    ///
    /// With [`NodeConfig::pipeline`] (the default), the commit is written on a thread of its
    /// own while the caller goes on: the next block executes meanwhile (reading this one's
    /// writes from memory), and waits for it before its own commit starts; every other
    /// operation of the node, and [`Node::sync`], waits for it first. Without, the block is
    /// durable when this returns.
    ///
    /// # Errors
    /// Faults of the node (its storage or engines), never of a transaction: then nothing of
    /// the block is committed and the node stays at the previous height. A pipelined commit
    /// that fails is reported by the next operation, and the node must then be opened again.
    pub fn execute_block(
        &mut self,
        txs: impl Into<Arc<[Transaction]>>,
    ) -> Result<BlockOutcome, NodeError> {
        self.commits.check()?;
        // Pre-execution stops after the transaction it is running; the block does not wait.
        self.pool.interrupt();
        let started = std::time::Instant::now();
        let (state, done) = self.run(txs.into(), self.config.mode, true)?;
        let height = self.height + 1;
        let created: Vec<ContractInfo> = (done.receipts.iter())
            .flat_map(|r| &r.created)
            .map(|c| ContractInfo {
                address: c.address,
                code: c.code,
                creator: *c.creator.as_bytes(),
                height,
            })
            .collect();
        let executed = std::time::Instant::now();
        // The receipts' digest and encoding on one thread; the diff, then its digest on another
        // thread while this one brings the cache up to date (before the next block reads, a
        // key cached before this block must hold its new value).
        let diff = state.diff();
        let ((receipts_digest, receipts_bytes), diff_digest) = std::thread::scope(|s| {
            let receipts = s.spawn(|| {
                (
                    receipts_digest(&done.receipts),
                    encode_receipts(&done.receipts),
                )
            });
            let digest = s.spawn(|| diff_digest(diff.iter().map(|(k, (v, _))| (k, v.as_ref()))));
            self.cache
                .apply_versioned(diff.iter().map(|(k, (v, writer))| {
                    let version = writer.version(height);
                    (k.as_slice(), v.as_deref().map(|v| (v, version)))
                }));
            (pool::joined(receipts), pool::joined(digest))
        });
        let diff = Arc::new(diff);
        let blobs = state.new_blobs();
        let mut outcome = BlockOutcome {
            height,
            receipts_digest,
            diff_digest,
            keys_written: diff.len(),
            blobs_stored: blobs.len(),
            receipts: done.receipts,
            reused: done.reused,
            executions: done.executions,
            validations: done.validations,
            execute_time: executed - started,
            commit_time: Default::default(),
        };
        // One commit at a time, in order.
        self.commits.wait()?;
        let job = CommitJob {
            db: self.db.clone(),
            store: self.store.clone(),
            store_config: self.config.store.clone(),
            path: self.dir.join(STORE_FILE),
            height,
            diff: diff.clone(),
            blobs: blobs.clone(),
            receipts: receipts_bytes,
            contracts: created.clone(),
            digests: [outcome.receipts_digest, outcome.diff_digest],
        };
        if self.config.pipeline {
            // The next block reads this one's writes from memory until the commit is done.
            self.pending = Some(Arc::new(Pending {
                height,
                diff: diff.clone(),
                blobs: blobs.iter().map(|b| (b.id, b.bytes.clone())).collect(),
            }));
            self.commits.start(job)?;
        } else {
            job.run()?;
        }
        outcome.commit_time = executed.elapsed();
        self.height = height;
        self.keep(state);
        for info in created {
            let module = self.module(&info.code)?;
            Arc::make_mut(&mut self.loaded)
                .contracts
                .insert(info.address, module);
        }
        self.publish_tip();
        self.pool.resume();
        Ok(outcome)
    }

    /// Tells pre-execution the latest block and contracts.
    fn publish_tip(&self) {
        *self.tip.lock().unwrap_or_else(|e| e.into_inner()) = Tip {
            height: self.height,
            pending: self.pending.clone(),
            contracts: self.loaded.clone(),
        };
    }

    /// Adds `tx` to the pending pool: between blocks, a background thread pre-executes
    /// pending transactions against the latest committed state, in the order they came, and a
    /// block that includes one uses its result if everything it read still has the version it
    /// saw and no earlier transaction of the block wrote it (see [`crate::speculation`]).
    /// Results change how long a block takes, never what it does. The pool holds at most
    /// [`NodeConfig::speculation_bytes`]: past it, the oldest transactions go first.
    pub fn submit(&self, tx: Transaction) {
        self.pool.submit(tx);
    }

    /// What the pending pool holds.
    pub fn pool(&self) -> PoolStats {
        self.pool.stats()
    }

    /// Waits until pre-execution has run every pending transaction it can.
    pub fn wait_speculation(&self) {
        self.pool.wait_idle();
    }

    /// Waits until every block executed so far is durable.
    ///
    /// # Errors
    /// A pipelined commit failed: the node must be opened again (it then holds every block
    /// before the one that failed).
    pub fn sync(&self) -> Result<(), NodeError> {
        self.commits.wait()
    }

    /// Keeps a block's state for the next block's allocations, without its snapshot of the
    /// committed state (an open read transaction keeps redb from reusing pages).
    fn keep(&mut self, state: Arc<BlockState>) {
        self.spare = Arc::into_inner(state).map(|mut s| {
            s.detach();
            s
        });
    }

    /// Calls `entry` of the contract at `contract` with `input` as `caller`, on the committed
    /// state, and keeps nothing of what it did: a read-only call.
    ///
    /// # Errors
    /// [`NodeError::UnknownContract`]; faults of the node.
    pub fn query(
        &mut self,
        contract: &Address,
        entry: &str,
        caller: [u8; 32],
        input: Vec<u8>,
        gas: u64,
    ) -> Result<Receipt, NodeError> {
        self.sync()?;
        self.load_contracts()?;
        if !self.loaded.contracts.contains_key(contract) {
            return Err(NodeError::UnknownContract(*contract));
        }
        let tx = Transaction {
            contract: *contract,
            entry: entry.into(),
            caller,
            input,
            gas,
            access: None,
        };
        let (state, done) = self.run(vec![tx].into(), Mode::Sequential, false)?;
        self.keep(state);
        Ok(done.receipts.into_iter().next().unwrap_or_default())
    }

    /// Calls `query` of the CosmWasm contract at `contract` with `msg` (JSON) on the committed
    /// state, with `gas` to spend: its answer (JSON), or the contract's error, and the gas
    /// used.
    ///
    /// # Errors
    /// [`NodeError::UnknownContract`]; faults of the node.
    pub fn query_cosmwasm(
        &mut self,
        contract: &Address,
        msg: &[u8],
        gas: u64,
    ) -> Result<QueryOutcome, NodeError> {
        self.sync()?;
        if self.load_contracts()? {
            self.publish_tip();
        }
        if !self.loaded.contracts.contains_key(contract) {
            return Err(NodeError::UnknownContract(*contract));
        }
        let state = Arc::new(self.block_state()?);
        let contracts = self.loaded.clone() as Arc<dyn Contracts>;
        let outcome = block::query_cosmwasm(
            &self.exec,
            &contracts,
            &Arc::new(self.config.cosmwasm.clone()),
            &state,
            self.height,
            contract,
            msg,
            gas,
        )
        .map_err(NodeError::Engine)?;
        if let Some(fault) = state.fault() {
            return Err(NodeError::Fault(fault));
        }
        self.keep(state);
        Ok(outcome)
    }

    /// Executes `txs` in `mode` over the committed state (every contract loaded first);
    /// returns the block's state and what execution gave.
    ///
    /// # Errors
    /// An engine or the storage failed: the block is void.
    fn run(
        &mut self,
        txs: Arc<[Transaction]>,
        mode: Mode,
        speculated: bool,
    ) -> Result<(Arc<BlockState>, block::Execution), NodeError> {
        if self.load_contracts()? {
            self.publish_tip();
        }
        let state = Arc::new(self.block_state()?);
        let reuse = match speculated {
            true => self.pool.take(&txs, &state).map_err(NodeError::Fault)?,
            false => Vec::new(),
        };
        let contracts = self.loaded.clone() as Arc<dyn Contracts>;
        let (blocks, exec, height) = (&self.blocks, &self.exec, self.height + 1);
        let done = block::execute_block_reusing(
            blocks, exec, &contracts, &state, height, &txs, mode, &reuse,
        )
        .map_err(NodeError::Engine)?;
        if let Some(fault) = state.fault() {
            return Err(NodeError::Fault(fault));
        }
        Ok((state, done))
    }

    /// The committed value of `key` (namespaced by contract address) and its version.
    ///
    /// # Errors
    /// Database failures, a damaged entry.
    pub fn get(&self, key: &[u8]) -> Result<Option<(Vec<u8>, Version)>, NodeError> {
        self.sync()?;
        let read = self.db.begin_read()?;
        let table = read.open_table(STATE)?;
        let Some(v) = table.get(key)? else {
            return Ok(None);
        };
        let (version, value) = Stored::split(v.value())?;
        Ok(Some((value.to_vec(), version)))
    }

    /// Committed keys of `range` in its direction, at most `limit`, with values and versions.
    ///
    /// # Errors
    /// Database failures, a damaged entry.
    pub fn scan(&self, range: &Range, limit: usize) -> Result<Vec<VersionedEntry>, NodeError> {
        self.sync()?;
        let read = self.db.begin_read()?;
        let table = read.open_table(STATE)?;
        entries(&table, range, None)?.take(limit).collect()
    }

    /// The digest of the whole committed state ([`state_digest`] of every key and value):
    /// the same on every node at the same height.
    ///
    /// # Errors
    /// Database failures, a damaged entry.
    pub fn state_digest(&self) -> Result<Digest, NodeError> {
        self.sync()?;
        let read = self.db.begin_read()?;
        let table = read.open_table(STATE)?;
        let mut entries = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            let (_, value) = Stored::split(v.value())?;
            entries.push((k.value().to_vec(), value.to_vec()));
        }
        Ok(state_digest(entries.iter().map(|(k, v)| (k, v))))
    }

    /// Keys in the committed state.
    ///
    /// # Errors
    /// Database failures.
    pub fn state_len(&self) -> Result<u64, NodeError> {
        self.sync()?;
        let read = self.db.begin_read()?;
        Ok(read.open_table(STATE)?.len()?)
    }

    /// The receipts and digests (receipts, state diff) of block `height`, if committed.
    ///
    /// # Errors
    /// Database failures, damaged records.
    pub fn block(&self, height: u64) -> Result<Option<(Vec<Receipt>, Digest, Digest)>, NodeError> {
        self.sync()?;
        let read = self.db.begin_read()?;
        let Some(r) = read.open_table(RECEIPTS)?.get(height)? else {
            return Ok(None);
        };
        let receipts = decode_receipts(r.value())?;
        let blocks = read.open_table(BLOCKS)?;
        let d = blocks
            .get(height)?
            .ok_or_else(|| NodeError::Corrupt(format!("block {height} has no digests")))?;
        let d = d.value();
        if d.len() != 64 {
            return Err(NodeError::Corrupt(format!("block {height}'s digests")));
        }
        let digest = |b: &[u8]| Digest(b.try_into().unwrap_or([0; 32]));
        Ok(Some((receipts, digest(&d[..32]), digest(&d[32..]))))
    }
}

/// A block's diff: each key written, its new value (`None`: removed) and the execution that
/// wrote it.
type Diff = BTreeMap<Vec<u8>, (Option<Vec<u8>>, Writer)>;

/// A block executed and being committed: what the next block reads above the state table
/// until the commit is done.
struct Pending {
    height: u64,
    diff: Arc<Diff>,
    blobs: HashMap<CodeId, Arc<[u8]>>,
}

impl Pending {
    /// The block's write of `key`, if it wrote it, and its version.
    fn get(&self, key: &[u8]) -> Option<(Option<&[u8]>, Version)> {
        let (value, writer) = self.diff.get(key)?;
        let version = writer.version(self.height);
        Some((value.as_deref(), version))
    }
}

/// The commit being written on its own thread, if any, and the failure of one, once seen.
#[derive(Default)]
struct Commits(std::sync::Mutex<CommitSlot>);

#[derive(Default)]
struct CommitSlot {
    in_flight: Option<std::thread::JoinHandle<Result<std::time::Duration, NodeError>>>,
    failed: Option<String>,
}

impl Commits {
    fn slot(&self) -> std::sync::MutexGuard<'_, CommitSlot> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The failure of an earlier commit, if one failed.
    fn check(&self) -> Result<(), NodeError> {
        match &self.slot().failed {
            Some(why) => Err(NodeError::Fault(format!(
                "a block's commit failed ({why}): open the node again"
            ))),
            None => Ok(()),
        }
    }

    /// Waits for the commit in flight.
    fn wait(&self) -> Result<(), NodeError> {
        let mut slot = self.slot();
        if let Some(handle) = slot.in_flight.take() {
            let result = handle
                .join()
                .unwrap_or_else(|_| Err(NodeError::Fault("the commit thread panicked".into())));
            if let Err(e) = result {
                slot.failed = Some(e.to_string());
            }
        }
        drop(slot);
        self.check()
    }

    /// Writes `job` on a thread of its own.
    fn start(&self, job: CommitJob) -> Result<(), NodeError> {
        let handle = std::thread::Builder::new()
            .name("synor-commit".into())
            .spawn(move || job.run())
            .map_err(|e| NodeError::Fault(format!("cannot start the commit thread: {e}")))?;
        self.slot().in_flight = Some(handle);
        Ok(())
    }
}

/// What committing a block writes, and where.
struct CommitJob {
    db: Arc<Database>,
    store: Arc<RwLock<Store>>,
    store_config: StoreConfig,
    path: PathBuf,
    height: u64,
    diff: Arc<Diff>,
    blobs: Vec<synor_core::abi::NewBlob>,
    receipts: Vec<u8>,
    contracts: Vec<ContractInfo>,
    digests: [Digest; 2],
}

impl CommitJob {
    /// Writes the block in one durable write transaction; returns how long it took. On
    /// failure the code store is opened again from the database (its index would hold blobs
    /// that were not written).
    fn run(self) -> Result<std::time::Duration, NodeError> {
        let started = std::time::Instant::now();
        if let Err(e) = self.write() {
            let kv = RedbKv::with_database(self.db.clone(), self.path.clone())?;
            let store = CodeStore::open(kv, ZstdCompressor::default(), self.store_config.clone())
                .map_err(NodeError::Store)?;
            *self.store.write().unwrap_or_else(|e| e.into_inner()) = store;
            return Err(e);
        }
        Ok(started.elapsed())
    }

    fn write(&self) -> Result<(), NodeError> {
        // The blobs go through the code store, deferred: its writes join this transaction.
        let store_ops = {
            let mut store = self.store.write().unwrap_or_else(|e| e.into_inner());
            store.kv_mut().defer();
            let mut put = || -> Result<(), StoreError> {
                for blob in &self.blobs {
                    if store.contains(&blob.id) {
                        continue;
                    }
                    let previous = blob.previous.filter(|p| store.contains(p));
                    store.put_blob(&blob.bytes, previous.as_ref())?;
                }
                Ok(())
            };
            let stored = put();
            let ops = store.kv_mut().take_deferred();
            stored.map_err(NodeError::Store)?;
            ops
        };
        let txn = kv::begin_write(&self.db)?;
        RedbKv::write_in(&txn, &store_ops)?;
        {
            let mut table = txn.open_table(STATE)?;
            let mut entry = Vec::new();
            for (key, (value, writer)) in self.diff.iter() {
                match value {
                    Some(v) => {
                        let version = writer.version(self.height);
                        entry.clear();
                        entry.extend_from_slice(&Stored::encode(version));
                        entry.extend_from_slice(v);
                        table.insert(key.as_slice(), entry.as_slice())?;
                    }
                    None => {
                        table.remove(key.as_slice())?;
                    }
                }
            }
        }
        if !self.contracts.is_empty() {
            let mut table = txn.open_table(CONTRACTS)?;
            for info in &self.contracts {
                table.insert(info.address.as_bytes().as_slice(), info.encode().as_slice())?;
            }
        }
        txn.open_table(RECEIPTS)?
            .insert(self.height, self.receipts.as_slice())?;
        let mut digests = self.digests[0].as_bytes().to_vec();
        digests.extend_from_slice(self.digests[1].as_bytes());
        txn.open_table(BLOCKS)?
            .insert(self.height, digests.as_slice())?;
        txn.open_table(META)?.insert("height", self.height)?;
        txn.commit()?;
        Ok(())
    }
}

/// The committed entries of `range` after `after`, in the range's direction.
fn entries<'t>(
    table: &'t ReadOnlyTable<&'static [u8], &'static [u8]>,
    range: &Range,
    after: Option<&[u8]>,
) -> Result<Box<dyn Iterator<Item = Result<VersionedEntry, NodeError>> + 't>, NodeError> {
    let Some(bounds) = range.remaining(after) else {
        return Ok(Box::new(std::iter::empty()));
    };
    let within = table.range::<&[u8]>(bounds)?;
    let within: Box<dyn Iterator<Item = _>> = match range.direction {
        Direction::Ascending => Box::new(within),
        Direction::Descending => Box::new(within.rev()),
    };
    Ok(Box::new(within.map(|entry| {
        let (k, v) = entry?;
        let (version, value) = Stored::split(v.value())?;
        Ok((k.value().to_vec(), value.to_vec(), version))
    })))
}

/// The committed state a block reads: a snapshot of the state table (a redb read transaction)
/// and the code store, for blobs.
struct Committed {
    table: ReadOnlyTable<&'static [u8], &'static [u8]>,
    store: Arc<RwLock<Store>>,
    /// The hot-state cache; none for a snapshot of one height (pre-execution), which the
    /// node's updates of the cache must not reach.
    cache: Option<Arc<StateCache>>,
    /// The block before, if its commit is still being written: it shadows the table.
    pending: Option<Arc<Pending>>,
}

impl Committed {
    /// The committed entry of `key`, through the cache if there is one.
    fn entry(&self, key: &[u8]) -> Result<CachedEntry, String> {
        let load = || {
            if let Some((value, version)) = self.pending.as_ref().and_then(|p| p.get(key)) {
                return Ok(value.map_or(CachedEntry::Absent, |v| CachedEntry::present(v, version)));
            }
            let Some(v) = self.table.get(key).map_err(|e| e.to_string())? else {
                return Ok(CachedEntry::Absent);
            };
            let (version, value) = Stored::split(v.value()).map_err(|e| e.to_string())?;
            Ok::<_, String>(CachedEntry::present(value, version))
        };
        // The cache holds the pending block's writes (the node applies them before the next
        // block starts): the pending block is asked only when the cache does not know a key.
        match &self.cache {
            Some(cache) => cache.get_or_load(key, load),
            None => load(),
        }
    }
}

impl Base for Committed {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        Ok(self.entry(key)?.value().map(<[u8]>::to_vec))
    }

    fn get_versioned(&self, key: &[u8]) -> Result<Option<(Vec<u8>, Version)>, String> {
        let entry = self.entry(key)?;
        Ok(entry
            .value()
            .zip(entry.version())
            .map(|(v, version)| (v.to_vec(), version)))
    }

    fn version(&self, key: &[u8]) -> Result<Option<Version>, String> {
        Ok(self.entry(key)?.version())
    }

    fn next(&self, range: &Range, after: Option<&[u8]>) -> Result<Option<KeyValue>, String> {
        let below = |after: Option<&[u8]>| self.table_next(range, after);
        let Some(pending) = &self.pending else {
            return below(after);
        };
        // The pending block's writes over the table's keys, its removals hiding them.
        let own = |after: Option<&[u8]>| {
            let written = range.first_in(&pending.diff, after);
            Ok(written.map(|(k, (v, _))| (k.clone(), v.clone())))
        };
        merge_next(range, after, own, below)
    }

    fn blob(&self, id: &CodeId) -> Result<Option<Arc<[u8]>>, String> {
        if let Some(b) = self.pending.as_ref().and_then(|p| p.blobs.get(id)) {
            return Ok(Some(b.clone()));
        }
        let store = self.store.read().unwrap_or_else(|e| e.into_inner());
        match store.get_shared(id) {
            Ok(b) => Ok(Some(b)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl Committed {
    /// The table's first key of `range` after `after`, with its value.
    fn table_next(&self, range: &Range, after: Option<&[u8]>) -> Result<Option<KeyValue>, String> {
        let first = entries(&self.table, range, after)
            .and_then(|mut e| e.next().transpose())
            .map_err(|e| e.to_string())?;
        Ok(first.map(|(k, v, _)| (k, v)))
    }
}

/// Encodes receipts: for each, gas (8), trap (flag, length-prefixed text), return data,
/// events (count, then topic and data) and contracts created (count, then address, code and
/// creator, 32 bytes each), every length and count 4 bytes little-endian.
fn encode_receipts(receipts: &[Receipt]) -> Vec<u8> {
    let mut out = Vec::new();
    let bytes = |out: &mut Vec<u8>, b: &[u8]| {
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(b);
    };
    out.extend_from_slice(&(receipts.len() as u32).to_le_bytes());
    for r in receipts {
        out.extend_from_slice(&r.gas_used.to_le_bytes());
        match &r.trap {
            None => out.push(0),
            Some(t) => {
                out.push(1);
                bytes(&mut out, t.as_bytes());
            }
        }
        bytes(&mut out, &r.return_data);
        out.extend_from_slice(&(r.events.len() as u32).to_le_bytes());
        for e in &r.events {
            bytes(&mut out, &e.topic);
            bytes(&mut out, &e.data);
        }
        out.extend_from_slice(&(r.created.len() as u32).to_le_bytes());
        for c in &r.created {
            for id in [c.address, c.code, c.creator] {
                out.extend_from_slice(id.as_bytes());
            }
        }
    }
    out
}

/// Decodes [`encode_receipts`]'s output; damaged bytes are an error, never a panic.
fn decode_receipts(mut input: &[u8]) -> Result<Vec<Receipt>, NodeError> {
    let damaged = || NodeError::Corrupt("stored receipts end early".into());
    fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = input.split_at_checked(n)?;
        *input = rest;
        Some(head)
    }
    let u32_of = |input: &mut &[u8]| -> Result<usize, NodeError> {
        let b = take(input, 4).ok_or_else(damaged)?;
        Ok(u32::from_le_bytes(b.try_into().map_err(|_| damaged())?) as usize)
    };
    let bytes_of = |input: &mut &[u8]| -> Result<Vec<u8>, NodeError> {
        let n = u32_of(input)?;
        Ok(take(input, n).ok_or_else(damaged)?.to_vec())
    };
    let count = u32_of(&mut input)?;
    // Each receipt takes at least 21 bytes: a damaged count cannot make this allocate.
    let mut out = Vec::with_capacity(count.min(input.len() / 21));
    for _ in 0..count {
        let gas = take(&mut input, 8).ok_or_else(damaged)?;
        let gas_used = u64::from_le_bytes(gas.try_into().map_err(|_| damaged())?);
        let trap = match take(&mut input, 1).ok_or_else(damaged)?[0] {
            0 => None,
            _ => Some(String::from_utf8_lossy(&bytes_of(&mut input)?).into_owned()),
        };
        let return_data = bytes_of(&mut input)?;
        let events = u32_of(&mut input)?;
        let mut list = Vec::with_capacity(events.min(input.len() / 8));
        for _ in 0..events {
            list.push(Event {
                topic: bytes_of(&mut input)?,
                data: bytes_of(&mut input)?,
            });
        }
        let created = u32_of(&mut input)?;
        let mut contracts = Vec::with_capacity(created.min(input.len() / 96));
        for _ in 0..created {
            let mut id = || -> Result<Digest, NodeError> {
                let b = take(&mut input, 32).ok_or_else(damaged)?;
                Ok(Digest(b.try_into().map_err(|_| damaged())?))
            };
            contracts.push(NewContract {
                address: id()?,
                code: id()?,
                creator: id()?,
            });
        }
        out.push(Receipt {
            gas_used,
            trap,
            return_data,
            events: list,
            created: contracts,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_encode_and_damaged_ones_are_refused() {
        let receipts = vec![
            Receipt {
                gas_used: 7,
                trap: Some("aborted: no".into()),
                return_data: Vec::new(),
                events: Vec::new(),
                created: Vec::new(),
            },
            Receipt {
                gas_used: 9,
                trap: None,
                return_data: b"ok".to_vec(),
                events: vec![Event {
                    topic: b"t".to_vec(),
                    data: b"data".to_vec(),
                }],
                created: vec![NewContract {
                    address: Digest::of(b"a"),
                    code: Digest::of(b"c"),
                    creator: Digest::of(b"k"),
                }],
            },
        ];
        let bytes = encode_receipts(&receipts);
        assert_eq!(decode_receipts(&bytes).unwrap(), receipts);
        for cut in 0..bytes.len() {
            assert!(decode_receipts(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge = bytes.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_receipts(&huge).is_err());
    }

    #[test]
    fn versions_round_trip_and_short_entries_are_refused() {
        let v = Version {
            block: 3,
            tx: 9,
            incarnation: 1,
        };
        let mut stored = Stored::encode(v).to_vec();
        stored.extend_from_slice(b"value");
        let (back, value) = Stored::split(&stored).unwrap();
        assert_eq!((back, value), (v, &b"value"[..]));
        assert!(Stored::split(&stored[..15]).is_err());
    }
}
