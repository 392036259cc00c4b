//! Contract workloads: deployments of the project's contracts, calls with a Zipf-skewed
//! frequency (few hot, many cold), and a chain state the calls' effects are applied to. Used by
//! `synor bench tiers` and the differential tests.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use synor_core::abi::{Blobs, CallContext, State};
use synor_core::digest::{CodeId, Digest};
use synor_core::gas::GasSchedule;
use synor_core::instrument::{self, InstrumentError, Instrumented, Limits};
use synor_core::tier::{Call, EngineError, Outcome, Tier};

use synor_core::block::{Address, Contracts};
use synor_core::sched::AccessSet;
use synor_host_std::block::{BlockState, Transaction};
use synor_host_std::tiered::TieredExecutor;

/// Gas of each workload call.
pub const CALL_GAS: u64 = 2_000_000_000;

/// A deployed contract.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// `token_v1#2`: the contract file and the deployment number.
    pub name: String,
    /// The contract's kind: `token`, `compute` or `registry`.
    pub kind: String,
    /// The instrumented module.
    pub module: Arc<Instrumented>,
}

/// Deploys `copies` of each contract in `files` (name, bytes): each copy gets its own code id
/// (a custom section naming the deployment), as clones of one contract do on a real chain.
///
/// # Errors
/// A contract is rejected by the instrumenter.
pub fn deploy(
    files: &[(String, Vec<u8>)],
    copies: usize,
) -> Result<Vec<Deployment>, InstrumentError> {
    let mut out = Vec::new();
    for copy in 0..copies {
        for (name, bytes) in files {
            let mut wasm = bytes.clone();
            // A custom section (id 0): name length, name, no payload.
            let section = format!("synor-deployment-{copy}");
            wasm.push(0);
            wasm.push(section.len() as u8 + 1);
            wasm.push(section.len() as u8);
            wasm.extend_from_slice(section.as_bytes());
            let module = instrument::instrument(&wasm, &GasSchedule::V1, &Limits::default())?;
            let stem = name.trim_end_matches(".wasm");
            out.push(Deployment {
                name: format!("{stem}#{copy}"),
                kind: stem.split('_').next().unwrap_or(stem).to_string(),
                module: Arc::new(module),
            });
        }
    }
    Ok(out)
}

impl Deployment {
    /// Where the deployment's state lives: its code id (each deployment has its own code).
    pub fn address(&self) -> Address {
        self.module.code_id
    }
}

/// The deployments by address, as block execution finds the contracts it calls.
pub fn contracts(deployments: &[Deployment]) -> Arc<dyn Contracts> {
    let map: HashMap<Address, Arc<Instrumented>> = deployments
        .iter()
        .map(|d| (d.address(), d.module.clone()))
        .collect();
    Arc::new(map)
}

/// One call of a workload.
#[derive(Debug, Clone)]
pub struct CallSpec {
    /// Index of the deployment called.
    pub contract: usize,
    /// The export.
    pub entry: &'static str,
    /// The calling account.
    pub caller: [u8; 32],
    /// The input.
    pub input: Vec<u8>,
}

/// Gas of each transaction of the node's workloads (the demonstration, `bench node`).
pub const TX_GAS: u64 = 50_000_000;

/// A transaction calling `entry` of `contract` as `caller` with `input`, declaring nothing.
pub fn call(contract: Address, entry: &str, caller: [u8; 32], input: Vec<u8>) -> Transaction {
    Transaction {
        contract,
        entry: entry.into(),
        caller,
        input,
        gas: TX_GAS,
        access: None,
    }
}

/// The input of the token contract's `transfer`: the recipient and the amount.
pub fn transfer_input(to: [u8; 32], amount: u64) -> Vec<u8> {
    let mut input = to.to_vec();
    input.extend_from_slice(&amount.to_le_bytes());
    input
}

/// The id of test account `n`.
pub fn account(n: u64) -> [u8; 32] {
    let mut a = [0u8; 32];
    a[..8].copy_from_slice(&n.to_le_bytes());
    a[31] = 0xac;
    a
}

/// A small deterministic generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A value in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }
}

/// `calls` calls over `deployments`, deployment *i* chosen with probability proportional to
/// `1 / (i + 1)^skew` (after a seeded shuffle, so hot contracts are of every kind). Each token
/// starts with `init`.
pub fn zipf(deployments: &[Deployment], calls: usize, skew: f64, seed: u64) -> Vec<CallSpec> {
    let mut rng = Rng::new(seed);
    let n = deployments.len();
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.range(0, i as u64 + 1) as usize);
    }
    let weights: Vec<f64> = (0..n).map(|r| 1.0 / ((r + 1) as f64).powf(skew)).collect();
    let total: f64 = weights.iter().sum();
    let mut started = vec![false; n];
    let mut out = Vec::with_capacity(calls);
    while out.len() < calls {
        let mut x = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
        let mut rank = n - 1;
        for (r, w) in weights.iter().enumerate() {
            if x < *w {
                rank = r;
                break;
            }
            x -= w;
        }
        let contract = order[rank];
        let kind = deployments[contract].kind.as_str();
        let has = |e: &str| deployments[contract].module.export(e).is_some();
        if kind == "token" && !started[contract] {
            out.push(CallSpec {
                contract,
                entry: "init",
                caller: account(0),
                input: 1_000_000_000u64.to_le_bytes().to_vec(),
            });
            started[contract] = true;
            continue;
        }
        out.push(match kind {
            "token" => {
                let from = rng.range(0, 8);
                let mut input = account(rng.range(0, 8)).to_vec();
                input.extend_from_slice(&rng.range(1, 1000).to_le_bytes());
                CallSpec {
                    contract,
                    entry: if rng.range(0, 8) == 0 {
                        "balance_of"
                    } else {
                        "transfer"
                    },
                    caller: account(if rng.range(0, 3) == 0 { 0 } else { from }),
                    input,
                }
            }
            "compute" => match rng.range(0, 3) {
                0 => {
                    let mut input = (rng.range(20, 400) as u32).to_le_bytes().to_vec();
                    input.extend_from_slice(&rng.next_u64().to_le_bytes());
                    CallSpec {
                        contract,
                        entry: "hash_chain",
                        caller: account(1),
                        input,
                    }
                }
                1 if has("fib") => CallSpec {
                    contract,
                    entry: "fib",
                    caller: account(1),
                    input: (rng.range(10, 90) as u32).to_le_bytes().to_vec(),
                },
                _ => {
                    let mut input = (rng.range(50, 1500) as u32).to_le_bytes().to_vec();
                    input.extend_from_slice(&rng.next_u64().to_le_bytes());
                    CallSpec {
                        contract,
                        entry: "sort",
                        caller: account(1),
                        input,
                    }
                }
            },
            _ => {
                let name = format!("doc{}", rng.range(0, 6));
                let mut input = vec![name.len() as u8];
                input.extend_from_slice(name.as_bytes());
                let entry = match rng.range(0, 6) {
                    0 => "register",
                    1 => "update",
                    2 => "size",
                    _ => "read",
                };
                match entry {
                    "register" | "update" => {
                        let len = rng.range(256, 8192) as usize;
                        let seed = rng.range(0, 4);
                        input.extend(
                            (0..len).map(|i| (i as u64 * 31 + seed * (i as u64 / 512)) as u8),
                        );
                    }
                    "read" => {
                        input.extend_from_slice(&(rng.range(0, 4096) as u32).to_le_bytes());
                        input.extend_from_slice(&(rng.range(1, 2048) as u32).to_le_bytes());
                    }
                    _ => {}
                }
                CallSpec {
                    contract,
                    entry,
                    caller: account(2),
                    input,
                }
            }
        });
    }
    out
}

/// Chain state shared with the calls (one thread).
#[derive(Debug, Default, Clone)]
pub struct Chain {
    state: Rc<RefCell<BTreeMap<Vec<u8>, Vec<u8>>>>,
    blobs: Rc<RefCell<BTreeMap<CodeId, Arc<[u8]>>>>,
}

struct StateView(Rc<RefCell<BTreeMap<Vec<u8>, Vec<u8>>>>);

impl State for StateView {
    fn read(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, synor_core::abi::Trap> {
        Ok(self.0.borrow().get(key).cloned())
    }

    fn next(
        &mut self,
        range: &synor_core::state::Range,
        after: Option<&[u8]>,
    ) -> Result<Option<synor_core::state::KeyValue>, synor_core::abi::Trap> {
        self.0.borrow_mut().next(range, after)
    }
}

struct BlobView(Rc<RefCell<BTreeMap<CodeId, Arc<[u8]>>>>);

impl Blobs for BlobView {
    fn blob(&mut self, id: &CodeId) -> Result<Option<Arc<[u8]>>, String> {
        Ok(self.0.borrow().get(id).cloned())
    }
}

/// Feeds key/value pairs (in key order) into `h`, each length-prefixed.
pub fn hash_state<'a>(
    h: &mut blake3::Hasher,
    entries: impl IntoIterator<Item = (&'a Vec<u8>, &'a Vec<u8>)>,
) {
    for (k, v) in entries {
        h.update(&(k.len() as u64).to_le_bytes());
        h.update(k);
        h.update(&(v.len() as u64).to_le_bytes());
        h.update(v);
    }
}

/// What a call did, in a form to compare across tiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Digest of results, return data, gas, trap, writes, events and blobs.
    pub digest: Digest,
    /// Gas used.
    pub gas_used: u64,
    /// The trap's stable name, if any.
    pub trap: Option<&'static str>,
}

impl Chain {
    /// Makes `spec` on `exec`; applies its effects if it succeeded. Returns what it did, the
    /// tier that ran it, and the time the call took (not counting applying its effects).
    ///
    /// # Errors
    /// The call could not be made (a workload bug).
    pub fn execute(
        &self,
        exec: &TieredExecutor,
        deployments: &[Deployment],
        spec: &CallSpec,
        hash_memory: bool,
    ) -> Result<(Record, Tier, Duration), EngineError> {
        let d = &deployments[spec.contract];
        let mut ctx = CallContext::new(
            d.module.code_id,
            spec.caller,
            spec.input.clone(),
            CALL_GAS,
            Box::new(StateView(self.state.clone())),
            Box::new(BlobView(self.blobs.clone())),
        );
        let mut call = Call::new(spec.entry, &[]);
        call.hash_memory = hash_memory;
        let start = Instant::now();
        let (outcome, tier) = exec.call(&d.module, &mut ctx, &call)?;
        let took = start.elapsed();
        let record = record(&outcome, &ctx);
        if outcome.trap.is_none() {
            let mut state = self.state.borrow_mut();
            for (k, v) in std::mem::take(&mut ctx.writes).into_writes() {
                match v {
                    Some(v) => state.insert(k, v),
                    None => state.remove(&k),
                };
            }
            let mut blobs = self.blobs.borrow_mut();
            for b in std::mem::take(&mut ctx.new_blobs) {
                blobs.insert(b.id, b.bytes);
            }
        }
        Ok((record, tier, took))
    }

    /// Digest of the whole state and every blob.
    pub fn digest(&self) -> Digest {
        let mut h = blake3::Hasher::new();
        hash_state(&mut h, self.state.borrow().iter());
        for (id, b) in self.blobs.borrow().iter() {
            h.update(id.as_bytes());
            h.update(&(b.len() as u64).to_le_bytes());
        }
        Digest(*h.finalize().as_bytes())
    }
}

/// The comparable record of a call.
pub fn record(outcome: &Outcome, ctx: &CallContext) -> Record {
    let mut h = blake3::Hasher::new();
    h.update(format!("{:?}", outcome.results).as_bytes());
    h.update(&outcome.gas_used.to_le_bytes());
    h.update(format!("{:?}", outcome.trap).as_bytes());
    if let Some(m) = outcome.memory_hash {
        h.update(m.as_bytes());
    }
    if outcome.trap.is_none() {
        h.update(&ctx.return_data);
        for (k, v) in ctx.writes.writes() {
            h.update(k);
            h.update(format!("{v:?}").as_bytes());
        }
        for e in &ctx.events {
            h.update(&e.topic);
            h.update(&e.data);
        }
        for b in &ctx.new_blobs {
            h.update(b.id.as_bytes());
        }
    }
    Record {
        digest: Digest(*h.finalize().as_bytes()),
        gas_used: outcome.gas_used,
        trap: outcome.trap.as_ref().map(|t| t.name()),
    }
}
/// Key of `account`'s balance in the token deployment `token` (as the contract namespaces it).
pub fn balance_key(token: &CodeId, account: &[u8; 32]) -> Vec<u8> {
    let mut k = token.as_bytes().to_vec();
    k.extend_from_slice(b"bal:");
    k.extend_from_slice(account);
    k
}

/// A transfer of `amount` from account `from` to account `to` (see [`account`]) in
/// the token deployment `token`, declaring the two balances it touches.
pub fn transfer(
    deployments: &[Deployment],
    token: usize,
    from: u64,
    to: u64,
    amount: u64,
) -> Transaction {
    let id = deployments[token].address();
    let (from, to) = (account(from), account(to));
    let mut input = to.to_vec();
    input.extend_from_slice(&amount.to_le_bytes());
    Transaction {
        contract: id,
        entry: "transfer".into(),
        caller: from,
        input,
        gas: 10_000_000,
        access: Some(AccessSet {
            reads: Vec::new(),
            writes: vec![balance_key(&id, &from), balance_key(&id, &to)],
        }),
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
    let id = deployments[token].address();
    let genesis = (0..accounts).map(|i| {
        (
            balance_key(&id, &account(i)),
            1_000_000u64.to_le_bytes().to_vec(),
        )
    });
    let mut rng = Rng::new(seed);
    let txs = (0..n)
        .map(|_| {
            let (from, to) = (rng.range(0, accounts), rng.range(0, accounts));
            transfer(deployments, token, from, to, rng.range(1, 100))
        })
        .collect();
    (BlockState::new(genesis), txs)
}
