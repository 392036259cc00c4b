//! CosmWasm transactions on a node: the chain's side of `instantiate`, `execute` and
//! `query`, as wasmd runs them, over any host ([`Chain`]).
//!
//! A transaction calls one entry point; what the contract returns (`Response`) may carry
//! messages, which run after it, depth first and in order: [`WasmMsg`]`::Execute` calls
//! another contract, [`BankMsg`]`::Send` moves native tokens. A message sent as a submessage
//! runs in a checkpoint of the transaction's writes: when it fails, its writes are reverted
//! and, if the contract asked (`reply_on` `error` or `always`), its `reply` entry point gets
//! the error; otherwise the failure ends the transaction. Anything that fails the
//! transaction reverts all of it: a failed transaction writes nothing, only its gas counts.
//!
//! Native balances live in the node's state, under [`BANK`] (see [`balance_key`]), and
//! change only through funds sent with calls, [`BankMsg`]`::Send`, and the bank's own
//! transactions (see [`bank_transaction`]).

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use super::types::{
    self, BankMsg, BankQuery, Binary, BlockInfo, Coin, ContractInfo, ContractResult, CosmosMsg,
    Env, MessageInfo, QuerierResult, QueryRequest, Reply, ReplyOn, Response, SubMsgResponse,
    SubMsgResult, SystemError, SystemResult, TransactionInfo, Uint128, WasmMsg, WasmQuery,
};
use super::{Api, Bech32Api, CwContext, CwGas, Entry, Querier};
use crate::abi::{self, Event, NewContract, State, Trap};
use crate::block::{Address, Receipt, Transaction, created_address};
use crate::digest::{CodeId, Digest};
use crate::gas::GasSchedule;
use crate::instrument::Instrumented;
use crate::state::Journal;
use crate::tier::{CwOutcome, EngineError};

/// Where native balances live: a namespace no contract address can take (addresses are
/// blake3 outputs).
pub const BANK: Address = Digest(*b"synor/bank/native-balances/v1\0\0\0");

/// Where the node keeps what CosmWasm keeps of each contract besides its code: its admin
/// ([`admin_key`]) and, once migrated, its code ([`code_key`]). A namespace no contract
/// address can take.
pub const WASM: Address = Digest(*b"synor/cosmwasm/contract-info/v1\0");

/// The state key of `contract`'s admin (its canonical address; absent: none).
pub fn admin_key(contract: &Address) -> Vec<u8> {
    abi::namespaced(&WASM, &[b"admin/".as_slice(), contract.as_bytes()].concat())
}

/// The state key of the code `contract` runs since a migration (absent: the code it was
/// instantiated with).
pub fn code_key(contract: &Address) -> Vec<u8> {
    abi::namespaced(&WASM, &[b"code/".as_slice(), contract.as_bytes()].concat())
}

/// Most messages deep a transaction may go (a message's messages, and so on).
pub const MAX_MESSAGE_DEPTH: u32 = 32;

/// Most queries deep a query may go (a query that queries, and so on).
pub const MAX_QUERY_DEPTH: u32 = 8;

/// Most coins one call or bank transaction may carry.
pub const MAX_COINS: usize = 64;

/// The chain a CosmWasm contract sees: its id, address format, block times and gas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CwChain {
    /// `env.block.chain_id`.
    pub chain_id: String,
    /// Addresses: accounts' 32-byte ids and contracts' addresses, in bech32 with this prefix.
    pub api: Bech32Api,
    /// `env.block.time` of height 0, in nanoseconds since the Unix epoch.
    pub genesis_time_ns: u64,
    /// Nanoseconds between two heights: blocks carry no time of their own, so that every
    /// node gives a contract the same one.
    pub block_interval_ns: u64,
    /// Costs of the imports.
    pub gas: CwGas,
}

impl Default for CwChain {
    /// Chain `synor`, prefix `cosmwasm` (as cosmwasm-vm's `MockApi`), genesis at
    /// 2023-11-14T22:13:20Z (1,700,000,000 s), five seconds a block, [`CwGas::V1`].
    fn default() -> Self {
        Self {
            chain_id: "synor".into(),
            api: Bech32Api::default(),
            genesis_time_ns: 1_700_000_000_000_000_000,
            block_interval_ns: 5_000_000_000,
            gas: CwGas::V1,
        }
    }
}

impl CwChain {
    /// The environment of a call of `contract` at `height`, in transaction `index` (none
    /// for a query).
    pub fn env(&self, contract: &Address, height: u64, index: Option<u32>) -> Env {
        let time = self
            .genesis_time_ns
            .saturating_add(height.saturating_mul(self.block_interval_ns));
        Env {
            block: BlockInfo {
                height,
                time: types::Timestamp(time),
                chain_id: self.chain_id.clone(),
            },
            transaction: index.map(|index| TransactionInfo { index, hash: None }),
            contract: ContractInfo {
                address: self.address(contract.as_bytes()),
            },
        }
    }

    /// The bech32 address of `canonical` (an account's id or a contract's address).
    pub fn address(&self, canonical: &[u8]) -> String {
        // 1 to 255 bytes always humanize.
        self.api.humanize(canonical).unwrap_or_default()
    }
}

/// What a CosmWasm transaction needs of the node: contracts, and engines to run them.
pub trait Chain {
    /// The module of the contract at `address`, if there is one.
    fn module(&self, address: &Address) -> Option<Arc<Instrumented>>;

    /// The module of deployed code `code`, if there is one.
    fn code(&self, code: &CodeId) -> Option<Arc<Instrumented>>;

    /// The deployed code numbered `number` (CosmWasm's `code_id`), if any.
    fn code_by_number(&self, number: u64) -> Option<CodeId> {
        let _ = number;
        None
    }

    /// Calls `entry` of `module` with `args` in `ctx` on an engine.
    ///
    /// # Errors
    /// A fault of the node ([`EngineError`]): the block is void.
    fn call(
        &mut self,
        module: &Arc<Instrumented>,
        ctx: &mut CwContext,
        entry: Entry,
        args: &[&[u8]],
    ) -> Result<CwOutcome, EngineError>;

    /// A chain to run queries on while a call is running (queries made through
    /// `query_chain`).
    fn fork(&self) -> Box<dyn Chain>;

    /// Another view of the same transaction's state, for such a query.
    fn state(&self) -> Box<dyn State>;
}

/// A call's addresses: the chain's, shared by every call instead of copied into each.
struct ChainApi(Arc<CwChain>);

impl Api for ChainApi {
    fn canonicalize(&self, human: &str) -> Result<Vec<u8>, String> {
        self.0.api.canonicalize(human)
    }

    fn humanize(&self, canonical: &[u8]) -> Result<String, String> {
        self.0.api.humanize(canonical)
    }
}

/// The context of a call of `contract` at `height` over `state` with `gas_left`: the
/// chain's gas and addresses, and a querier over a fork of `chain` (`depth` the call's
/// nesting in queries).
fn context(
    config: &Arc<CwChain>,
    chain: &dyn Chain,
    contract: &Address,
    gas_left: i64,
    state: Box<dyn State>,
    height: u64,
    depth: u32,
) -> CwContext {
    let mut ctx = CwContext::new(*contract, u64::try_from(gas_left).unwrap_or(0), state);
    ctx.gas = config.gas;
    ctx.api = Box::new(ChainApi(config.clone()));
    ctx.querier = Box::new(NodeQuerier {
        chain: chain.fork(),
        state: None,
        config: config.clone(),
        height,
        depth,
    });
    ctx
}

/// Why a call, a message or a transaction failed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    /// The contract returned an error, or a message could not be carried out: a message
    /// for the receipt (and for a `reply`).
    Error(String),
    /// A trap ended a call.
    Trap(Trap),
}

impl Failure {
    /// The receipt's text.
    fn receipt(&self) -> String {
        match self {
            Failure::Error(m) => format!("contract_error: {m}"),
            Failure::Trap(t) => t.to_string(),
        }
    }

    /// What a `reply` is told.
    fn reply(&self) -> String {
        match self {
            Failure::Error(m) => m.clone(),
            Failure::Trap(t) => t.to_string(),
        }
    }
}

/// A failure of the node, which voids the block, or of the transaction.
enum Stop {
    Fault(EngineError),
    Failed(Failure),
}

impl From<Failure> for Stop {
    fn from(f: Failure) -> Self {
        Stop::Failed(f)
    }
}

fn error(m: impl Into<String>) -> Stop {
    Stop::Failed(Failure::Error(m.into()))
}

/// What a transaction did, with its writes (empty when it failed).
#[derive(Debug)]
pub struct TxEffects {
    /// The receipt.
    pub receipt: Receipt,
    /// The writes, namespaced.
    pub writes: Journal,
}

/// What a query returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryOutcome {
    /// The contract's answer (JSON), or why there is none.
    pub result: Result<Vec<u8>, String>,
    /// Gas used.
    pub gas_used: u64,
}

/// The input of a CosmWasm transaction: the message, and native tokens sent with it.
///
/// Encoded as the message alone when no tokens are sent (and the message does not start with
/// a zero byte, as no JSON does); otherwise a zero byte, the number of coins (`u16`
/// little-endian), each coin as its denomination's length (`u8`), the denomination and its
/// amount (`u128` little-endian), then the message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CwInput {
    /// The message (JSON).
    pub msg: Vec<u8>,
    /// The tokens sent.
    pub funds: Vec<Coin>,
}

impl CwInput {
    /// `msg` with no tokens.
    pub fn new(msg: impl Into<Vec<u8>>) -> Self {
        Self {
            msg: msg.into(),
            funds: Vec::new(),
        }
    }

    /// The bytes of a transaction's input.
    ///
    /// # Errors
    /// More than [`MAX_COINS`] coins, or a denomination longer than 255 bytes.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        // A message that starts with a zero byte takes the long form even without tokens.
        if self.funds.is_empty() && self.msg.first() != Some(&0) {
            return Ok(self.msg.clone());
        }
        let mut out = vec![0u8];
        out.extend_from_slice(&coins_encoded(&self.funds)?);
        out.extend_from_slice(&self.msg);
        Ok(out)
    }

    /// The input `bytes` encode.
    ///
    /// # Errors
    /// What is wrong with them.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        match bytes.first() {
            Some(0) => {
                let (funds, rest) = coins_decoded(&bytes[1..])?;
                Ok(Self {
                    msg: rest.to_vec(),
                    funds,
                })
            }
            _ => Ok(Self::new(bytes)),
        }
    }
}

/// `coins` as a count and each coin (see [`CwInput`]).
fn coins_encoded(coins: &[Coin]) -> Result<Vec<u8>, String> {
    if coins.len() > MAX_COINS {
        return Err(format!(
            "{} coins, over the limit of {MAX_COINS}",
            coins.len()
        ));
    }
    let mut out = Vec::new();
    out.extend_from_slice(&(coins.len() as u16).to_le_bytes());
    for c in coins {
        let len = u8::try_from(c.denom.len())
            .map_err(|_| format!("denomination of {} bytes", c.denom.len()))?;
        out.push(len);
        out.extend_from_slice(c.denom.as_bytes());
        out.extend_from_slice(&c.amount.0.to_le_bytes());
    }
    Ok(out)
}

/// The coins at the start of `bytes`, and the rest.
fn coins_decoded(bytes: &[u8]) -> Result<(Vec<Coin>, &[u8]), String> {
    let short = || String::from("the input's coins are cut short");
    let (n, mut rest) = bytes.split_at_checked(2).ok_or_else(short)?;
    let n = u16::from_le_bytes([n[0], n[1]]) as usize;
    if n > MAX_COINS {
        return Err(format!("{n} coins, over the limit of {MAX_COINS}"));
    }
    let mut coins = Vec::with_capacity(n);
    for _ in 0..n {
        let (&len, r) = rest.split_first().ok_or_else(short)?;
        let (denom, r) = r.split_at_checked(len as usize).ok_or_else(short)?;
        let (amount, r) = r.split_at_checked(16).ok_or_else(short)?;
        let denom =
            core::str::from_utf8(denom).map_err(|_| String::from("a denomination is not UTF-8"))?;
        let mut a = [0u8; 16];
        a.copy_from_slice(amount);
        coins.push(Coin {
            denom: denom.into(),
            amount: Uint128(u128::from_le_bytes(a)),
        });
        rest = r;
    }
    Ok((coins, rest))
}

/// The state key of `account`'s balance of `denom`.
pub fn balance_key(denom: &str, account: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(32 + 2 + denom.len() + account.len());
    key.extend_from_slice(BANK.as_bytes());
    key.push(denom.len().min(255) as u8);
    key.extend_from_slice(denom.as_bytes());
    key.extend_from_slice(account);
    key
}

/// The balance a state value holds (`u128` little-endian; absent is zero).
///
/// # Errors
/// A value of another length: the state is damaged.
pub fn balance_value(value: Option<&[u8]>) -> Result<u128, String> {
    match value {
        None => Ok(0),
        Some(v) => <[u8; 16]>::try_from(v)
            .map(u128::from_le_bytes)
            .map_err(|_| format!("a balance of {} bytes", v.len())),
    }
}

/// A transaction of the bank (to [`BANK`]): `entry` `send` moves the input's coins from the
/// caller to the account its message names (`{"to": "<address>"}`); `genesis` (accepted
/// only in block 1) credits the input's coins to the accounts its message names
/// (`{"accounts": ["<address>", ...]}`), each the same coins.
pub fn bank_transaction(
    caller: [u8; 32],
    entry: &str,
    input: &CwInput,
    gas: u64,
) -> Result<Transaction, String> {
    Ok(Transaction {
        contract: BANK,
        entry: entry.into(),
        caller,
        input: input.encode()?,
        gas,
        access: None,
    })
}

/// Runs a CosmWasm transaction `tx` (at `position`: height, index) over `state`: `execute`
/// of the contract at `tx.contract`, `instantiate` of the code `tx.contract` names (a new
/// contract, at [`created_address`] with the caller as creator), or a bank transaction (to
/// [`BANK`]).
///
/// # Errors
/// A fault of the node: the block is void.
pub fn execute(
    chain: &mut dyn Chain,
    config: &Arc<CwChain>,
    state: Box<dyn State>,
    tx: &Transaction,
    position: (u64, u32),
) -> Result<TxEffects, EngineError> {
    let mut run = Run {
        chain,
        config,
        state: Some(state),
        writes: Journal::new(),
        gas_left: i64::try_from(tx.gas).unwrap_or(i64::MAX),
        position,
        events: Vec::new(),
        new_contracts: Vec::new(),
    };
    let result = run.transaction(tx);
    let gas_used = abi::gas_used(run.gas_left.max(0), tx.gas);
    match result {
        Ok(data) => Ok(TxEffects {
            receipt: Receipt {
                gas_used,
                trap: None,
                return_data: data.map_or_else(Vec::new, |d| d.0),
                events: run.events.iter().map(|(_, e)| e.clone()).collect(),
                created: run.new_contracts,
            },
            writes: run.writes,
        }),
        Err(Stop::Failed(f)) => Ok(TxEffects {
            receipt: Receipt {
                gas_used: match f {
                    Failure::Trap(Trap::OutOfGas) => tx.gas,
                    _ => gas_used,
                },
                trap: Some(f.receipt()),
                ..Receipt::default()
            },
            writes: Journal::new(),
        }),
        Err(Stop::Fault(e)) => Err(e),
    }
}

/// Runs `query` of the contract at `contract` with `msg` over `state`, at `height`, with
/// `gas` to spend.
///
/// # Errors
/// A fault of the node.
pub fn query(
    chain: &mut dyn Chain,
    config: &Arc<CwChain>,
    state: Box<dyn State>,
    contract: &Address,
    msg: &[u8],
    gas: u64,
    height: u64,
) -> Result<QueryOutcome, EngineError> {
    let mut gas_left = i64::try_from(gas).unwrap_or(i64::MAX);
    let result = smart_query(
        chain,
        config,
        state,
        &Journal::new(),
        contract,
        msg,
        &mut gas_left,
        height,
        0,
    );
    let gas_used = abi::gas_used(gas_left.max(0), gas);
    match result {
        Ok(answer) => Ok(QueryOutcome {
            result: Ok(answer),
            gas_used,
        }),
        Err(Stop::Failed(f)) => Ok(QueryOutcome {
            result: Err(f.receipt()),
            gas_used,
        }),
        Err(Stop::Fault(e)) => Err(e),
    }
}

/// One read-only `query` call of `contract`, seeing `pending` over `state`.
#[allow(clippy::too_many_arguments)]
fn smart_query(
    chain: &mut dyn Chain,
    config: &Arc<CwChain>,
    state: Box<dyn State>,
    pending: &Journal,
    contract: &Address,
    msg: &[u8],
    gas_left: &mut i64,
    height: u64,
    depth: u32,
) -> Result<Vec<u8>, Stop> {
    let mut state = state;
    let migrated = abi::read_through(pending, &mut *state, &code_key(contract))
        .map_err(|t| Stop::Failed(Failure::Trap(t)))?;
    let module = match migrated {
        Some(code) => code_of(&code).and_then(|c| chain.code(&c)),
        None => chain.module(contract),
    }
    .ok_or_else(|| {
        error(format!(
            "no contract at {}",
            config.address(contract.as_bytes())
        ))
    })?;
    let env = to_json(&config.env(contract, height, None))?;
    let mut ctx = context(config, chain, contract, *gas_left, state, height, depth + 1);
    ctx.read_only = true;
    ctx.writes = pending.clone();
    let outcome = chain
        .call(&module, &mut ctx, Entry::Query, &[&env, msg])
        .map_err(Stop::Fault)?;
    *gas_left = ctx.gas_left;
    let json = outcome.result.map_err(Failure::Trap)?;
    match types::parse_query_result(&json) {
        Ok(ContractResult::Ok(data)) => Ok(data.0),
        Ok(ContractResult::Err(e)) => Err(error(e)),
        Err(e) => Err(error(e.to_string())),
    }
}

/// The code id a [`code_key`] value holds.
fn code_of(value: &[u8]) -> Option<CodeId> {
    <[u8; 32]>::try_from(value).ok().map(Digest)
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, Stop> {
    types::to_json(value).map_err(error)
}

/// Answers `query_chain` for a running call: other contracts' `query` and raw storage, and
/// native balances, as of the calling transaction's writes so far.
struct NodeQuerier {
    chain: Box<dyn Chain>,
    /// A view of the state, made at the first query that reads one.
    state: Option<Box<dyn State>>,
    config: Arc<CwChain>,
    height: u64,
    depth: u32,
}

impl Querier for NodeQuerier {
    fn query(
        &mut self,
        request: &[u8],
        gas_limit: u64,
        pending: &Journal,
    ) -> Result<(QuerierResult, u64), Trap> {
        let request: QueryRequest = match serde_json::from_slice(request) {
            Ok(r) => r,
            Err(e) => {
                let error = SystemError::InvalidRequest {
                    error: e.to_string(),
                    request: Binary(request.to_vec()),
                };
                return Ok((SystemResult::Err(error), 0));
            }
        };
        if let Some(kind) = request.unsupported() {
            return Ok((
                SystemResult::Err(SystemError::UnsupportedRequest { kind }),
                0,
            ));
        }
        let no_contract = |addr: &str| SystemError::NoSuchContract { addr: addr.into() };
        match request {
            QueryRequest::Bank(BankQuery::Balance { address, denom }) => {
                let Ok(account) = self.config.api.canonicalize(&address) else {
                    return Ok((
                        SystemResult::Ok(ContractResult::Err(format!("invalid address {address}"))),
                        0,
                    ));
                };
                let key = balance_key(&denom, &account);
                let state = &mut **self.state.get_or_insert_with(|| self.chain.state());
                let amount = balance_value(abi::read_through(pending, state, &key)?.as_deref())
                    .map_err(Trap::Host)?;
                /// cosmwasm-std's `BalanceResponse`.
                #[derive(serde::Serialize)]
                struct BalanceResponse {
                    amount: Coin,
                }
                let answer = BalanceResponse {
                    amount: Coin {
                        denom,
                        amount: Uint128(amount),
                    },
                };
                let answer = serde_json::to_vec(&answer)
                    .map_err(|e| Trap::Host(format!("cannot encode a balance: {e}")))?;
                let cost = self.config.gas.schedule.storage_read;
                Ok((SystemResult::Ok(ContractResult::Ok(Binary(answer))), cost))
            }
            QueryRequest::Wasm(WasmQuery::Raw { contract_addr, key }) => {
                let Some(contract) = self.contract(&contract_addr) else {
                    return Ok((SystemResult::Err(no_contract(&contract_addr)), 0));
                };
                let full = abi::namespaced(&contract, &key.0);
                let state = &mut **self.state.get_or_insert_with(|| self.chain.state());
                let value = abi::read_through(pending, state, &full)?.unwrap_or_default();
                let s = self.config.gas.schedule;
                let cost = GasSchedule::cost(
                    s.storage_read,
                    s.storage_read_word,
                    GasSchedule::words(value.len() as u64),
                );
                Ok((SystemResult::Ok(ContractResult::Ok(Binary(value))), cost))
            }
            QueryRequest::Wasm(WasmQuery::Smart { contract_addr, msg }) => {
                let Some(contract) = self.contract(&contract_addr) else {
                    return Ok((SystemResult::Err(no_contract(&contract_addr)), 0));
                };
                if self.depth > MAX_QUERY_DEPTH {
                    return Ok((
                        SystemResult::Ok(ContractResult::Err(format!(
                            "queries nested more than {MAX_QUERY_DEPTH} deep"
                        ))),
                        0,
                    ));
                }
                let state = self.state.take().unwrap_or_else(|| self.chain.state());
                let mut gas_left = i64::try_from(gas_limit).unwrap_or(i64::MAX);
                let result = smart_query(
                    &mut *self.chain,
                    &self.config,
                    state,
                    pending,
                    &contract,
                    &msg.0,
                    &mut gas_left,
                    self.height,
                    self.depth,
                );
                let used = abi::gas_used(gas_left.max(0), gas_limit);
                match result {
                    Ok(answer) => Ok((SystemResult::Ok(ContractResult::Ok(Binary(answer))), used)),
                    Err(Stop::Failed(Failure::Trap(Trap::OutOfGas))) => Err(Trap::OutOfGas),
                    Err(Stop::Failed(f)) => {
                        Ok((SystemResult::Ok(ContractResult::Err(f.reply())), used))
                    }
                    Err(Stop::Fault(e)) => Err(Trap::Host(format!("engine: {e}"))),
                }
            }
            _ => Ok((
                SystemResult::Err(SystemError::UnsupportedRequest {
                    kind: "unsupported".into(),
                }),
                0,
            )),
        }
    }
}

impl NodeQuerier {
    /// The address of a contract, if `human` names one.
    fn contract(&self, human: &str) -> Option<Address> {
        let bytes = self.config.api.canonicalize(human).ok()?;
        let address = Digest(<[u8; 32]>::try_from(bytes.as_slice()).ok()?);
        self.chain.module(&address).map(|_| address)
    }
}

/// One transaction's run: the state lent to each call, the writes so far, the gas left.
struct Run<'a> {
    chain: &'a mut dyn Chain,
    config: &'a Arc<CwChain>,
    state: Option<Box<dyn State>>,
    writes: Journal,
    gas_left: i64,
    position: (u64, u32),
    /// Events so far, each with the CosmWasm event it came from.
    events: Vec<(types::Event, Event)>,
    new_contracts: Vec<NewContract>,
}

impl Run<'_> {
    fn transaction(&mut self, tx: &Transaction) -> Result<Option<Binary>, Stop> {
        let input = CwInput::decode(&tx.input).map_err(error)?;
        let sender = tx.caller.to_vec();
        if tx.contract == BANK {
            return self.bank(&sender, &tx.entry, &input).map(|()| None);
        }
        match tx.entry.as_str() {
            "execute" => self.execute(&sender, tx.contract, &input.msg, &input.funds, 0),
            "instantiate" => {
                let code = tx.contract;
                let address =
                    self.instantiate(&sender, Digest(tx.caller), code, &input, None, 0)?;
                Ok(Some(Binary(address.as_bytes().to_vec())))
            }
            other => Err(error(format!(
                "a CosmWasm transaction calls `execute` of a contract or `instantiate` of a code, not `{other}`"
            ))),
        }
    }

    /// A bank transaction.
    fn bank(&mut self, sender: &[u8], entry: &str, input: &CwInput) -> Result<(), Stop> {
        #[derive(serde::Deserialize)]
        struct Send {
            to: String,
        }
        #[derive(serde::Deserialize)]
        struct Genesis {
            accounts: Vec<String>,
        }
        match entry {
            "send" => {
                let to: Send =
                    types::parse_bounded(&input.msg).map_err(|e| error(e.to_string()))?;
                let to = self.canonical(&to.to)?;
                self.transfer(sender, &to, &input.funds)
            }
            "genesis" if self.position.0 == 1 => {
                let g: Genesis =
                    types::parse_bounded(&input.msg).map_err(|e| error(e.to_string()))?;
                for account in &g.accounts {
                    let account = self.canonical(account)?;
                    for coin in &input.funds {
                        self.add(&coin.denom, &account, coin.amount.0)?;
                    }
                }
                Ok(())
            }
            "genesis" => Err(error("bank genesis is accepted only in block 1")),
            other => Err(error(format!(
                "the bank takes `send` or `genesis`, not `{other}`"
            ))),
        }
    }

    /// The canonical form of a human address, or the contract's error.
    fn canonical(&self, human: &str) -> Result<Vec<u8>, Stop> {
        self.config.api.canonicalize(human).map_err(error)
    }

    fn charge(&mut self, gas: u64) -> Result<(), Stop> {
        abi::charge(&mut self.gas_left, gas).map_err(|t| Stop::Failed(Failure::Trap(t)))
    }

    /// The value of `key` as the transaction sees it.
    fn read(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, Stop> {
        let state = self.state.as_deref_mut().ok_or_else(|| error("no state"))?;
        abi::read_through(&self.writes, state, key).map_err(|t| Stop::Failed(Failure::Trap(t)))
    }

    /// Fails unless `sender` is the admin of `contract`.
    fn admin(&mut self, sender: &Address, contract: &Address) -> Result<(), Stop> {
        match self.read(&admin_key(contract))? {
            Some(admin) if admin == sender.as_bytes() => Ok(()),
            _ => Err(error(format!(
                "unauthorized: {} is not the admin of {}",
                self.config.address(sender.as_bytes()),
                self.config.address(contract.as_bytes())
            ))),
        }
    }

    fn balance(&mut self, denom: &str, account: &[u8]) -> Result<u128, Stop> {
        let key = balance_key(denom, account);
        let state = self.state.as_deref_mut().ok_or_else(|| error("no state"))?;
        let value = abi::read_through(&self.writes, state, &key)
            .map_err(|t| Stop::Failed(Failure::Trap(t)))?;
        balance_value(value.as_deref()).map_err(|e| Stop::Fault(EngineError::Engine(e)))
    }

    fn set_balance(&mut self, denom: &str, account: &[u8], amount: u128) {
        let key = balance_key(denom, account);
        match amount {
            0 => self.writes.remove(&key),
            n => self.writes.put(&key, n.to_le_bytes().to_vec()),
        }
    }

    /// Credits `amount` of `denom` to `account`.
    fn add(&mut self, denom: &str, account: &[u8], amount: u128) -> Result<(), Stop> {
        let s = self.config.gas.schedule;
        self.charge(
            s.storage_read
                .saturating_add(s.storage_write_word.saturating_mul(2)),
        )?;
        let now = self.balance(denom, account)?;
        let then = now
            .checked_add(amount)
            .ok_or_else(|| error(format!("balance overflow in {denom}")))?;
        self.set_balance(denom, account, then);
        Ok(())
    }

    /// Moves `coins` from `from` to `to`.
    fn transfer(&mut self, from: &[u8], to: &[u8], coins: &[Coin]) -> Result<(), Stop> {
        if coins.len() > MAX_COINS {
            return Err(error(format!(
                "{} coins, over the limit of {MAX_COINS}",
                coins.len()
            )));
        }
        for coin in coins {
            let s = self.config.gas.schedule;
            self.charge(
                s.storage_read
                    .saturating_add(s.storage_write_word.saturating_mul(2)),
            )?;
            let have = self.balance(&coin.denom, from)?;
            let Some(left) = have.checked_sub(coin.amount.0) else {
                return Err(error(format!(
                    "insufficient funds: {have}{denom} is smaller than {want}{denom}",
                    denom = coin.denom,
                    want = coin.amount.0
                )));
            };
            self.set_balance(&coin.denom, from, left);
            self.add(&coin.denom, to, coin.amount.0)?;
        }
        Ok(())
    }

    /// The module at `address`: a contract of the state, or one this transaction made.
    fn module(&mut self, address: &Address) -> Result<Arc<Instrumented>, Stop> {
        if let Some(code) = self.read(&code_key(address))? {
            let code = code_of(&code)
                .ok_or_else(|| Stop::Fault(EngineError::Engine("a damaged code key".into())))?;
            return self
                .chain
                .code(&code)
                .ok_or_else(|| error(format!("no code {code}")));
        }
        if let Some(m) = self.chain.module(address) {
            return Ok(m);
        }
        self.new_contracts
            .iter()
            .find(|c| c.address == *address)
            .and_then(|c| self.chain.code(&c.code))
            .ok_or_else(|| {
                error(format!(
                    "no contract at {}",
                    self.config.address(address.as_bytes())
                ))
            })
    }

    /// Calls `entry` of the contract at `contract` with `args`; its writes are kept only if
    /// it succeeds.
    fn call(&mut self, contract: &Address, entry: Entry, args: &[&[u8]]) -> Result<Response, Stop> {
        let module = self.module(contract)?;
        if module.cosmwasm.as_ref().is_none_or(|i| !i.has(entry)) {
            return Err(error(format!(
                "the contract at {} has no entry point {}",
                self.config.address(contract.as_bytes()),
                entry.name()
            )));
        }
        let state = self.state.take().ok_or_else(|| error("no state"))?;
        let mut ctx = context(
            self.config,
            &*self.chain,
            contract,
            self.gas_left,
            state,
            self.position.0,
            1,
        );
        let checkpoint = self.writes.checkpoint();
        ctx.writes = core::mem::take(&mut self.writes);
        let outcome = self.chain.call(&module, &mut ctx, entry, args);
        self.state = Some(ctx.take_state());
        self.writes = core::mem::take(&mut ctx.writes);
        self.gas_left = ctx.gas_left;
        let outcome = outcome.map_err(Stop::Fault)?;
        let result = match outcome.result {
            Ok(json) => match types::parse_response(&json) {
                Ok(ContractResult::Ok(response)) => Ok(response),
                Ok(ContractResult::Err(e)) => Err(error(e)),
                Err(e) => Err(error(e.to_string())),
            },
            Err(t) => Err(Stop::Failed(Failure::Trap(t))),
        };
        match result {
            Ok(_) => self.writes.commit(checkpoint),
            Err(_) => self.writes.revert(checkpoint),
        }
        .map_err(|e| Stop::Fault(EngineError::Engine(format!("journal: {e:?}"))))?;
        result
    }

    /// `execute` of `contract` by `sender` with `msg` and `funds`, then its messages;
    /// returns its data.
    fn execute(
        &mut self,
        sender: &[u8],
        contract: Address,
        msg: &[u8],
        funds: &[Coin],
        depth: u32,
    ) -> Result<Option<Binary>, Stop> {
        self.transfer(sender, contract.as_bytes(), funds)?;
        let env = to_json(
            &self
                .config
                .env(&contract, self.position.0, Some(self.position.1)),
        )?;
        let info = to_json(&MessageInfo {
            sender: self.config.address(sender),
            funds: funds.to_vec(),
        })?;
        let response = self.call(&contract, Entry::Execute, &[&env, &info, msg])?;
        self.respond(contract, response, depth)
    }

    /// A new contract of `code` made by `creator` (`sender`'s address), its `instantiate`
    /// called with `input`, then its messages; returns its address.
    fn instantiate(
        &mut self,
        sender: &[u8],
        creator: Address,
        code: CodeId,
        input: &CwInput,
        admin: Option<Vec<u8>>,
        depth: u32,
    ) -> Result<Address, Stop> {
        let module = self
            .chain
            .code(&code)
            .ok_or_else(|| error(format!("no code {code}")))?;
        if module.cosmwasm.is_none() {
            return Err(error(format!("code {code} is not a CosmWasm contract")));
        }
        let ordinal = self.new_contracts.len() as u32;
        let address = created_address(&code, &creator, self.position, ordinal);
        self.new_contracts.push(NewContract {
            address,
            code,
            creator,
        });
        let made = self.new_contracts.len();
        if let Some(admin) = admin {
            self.writes.put(&admin_key(&address), admin);
        }
        let result = (|| {
            self.transfer(sender, address.as_bytes(), &input.funds)?;
            let env = to_json(
                &self
                    .config
                    .env(&address, self.position.0, Some(self.position.1)),
            )?;
            let info = to_json(&MessageInfo {
                sender: self.config.address(sender),
                funds: input.funds.clone(),
            })?;
            let response = self.call(&address, Entry::Instantiate, &[&env, &info, &input.msg])?;
            self.respond(address, response, depth)
        })();
        if result.is_err() {
            self.new_contracts.truncate(made - 1);
        }
        result.map(|_| address)
    }

    /// Records `response`'s events and runs its messages as `contract`; returns its data
    /// (a `reply` may replace it).
    fn respond(
        &mut self,
        contract: Address,
        response: Response,
        depth: u32,
    ) -> Result<Option<Binary>, Stop> {
        let address = self.config.address(contract.as_bytes());
        let mut attributes = vec![types::Attribute {
            key: "_contract_address".into(),
            value: address.clone(),
        }];
        if !response.attributes.is_empty() {
            attributes.extend(response.attributes);
            self.event("wasm".into(), attributes.clone());
        }
        for e in response.events {
            let mut a = attributes[..1].to_vec();
            a.extend(e.attributes);
            self.event(format!("wasm-{}", e.ty), a);
        }
        let mut data = response.data;
        for sub in response.messages {
            if depth >= MAX_MESSAGE_DEPTH {
                return Err(error(format!(
                    "messages nested more than {MAX_MESSAGE_DEPTH} deep"
                )));
            }
            let checkpoint = self.writes.checkpoint();
            let (events, made) = (self.events.len(), self.new_contracts.len());
            let before = self.gas_left;
            // A submessage's gas limit caps what it may use of what is left.
            if let Some(limit) = sub.gas_limit {
                self.gas_left = self.gas_left.min(i64::try_from(limit).unwrap_or(i64::MAX));
            }
            let cap = self.gas_left;
            let result = self.message(contract, &sub.msg, depth + 1);
            let used = cap.saturating_sub(self.gas_left.max(0));
            self.gas_left = before.saturating_sub(used);
            let journal = |r: Result<(), _>| {
                r.map_err(|e| Stop::Fault(EngineError::Engine(format!("journal: {e:?}"))))
            };
            let reply = match result {
                Ok(sub_data) => {
                    journal(self.writes.commit(checkpoint))?;
                    if !matches!(sub.reply_on, ReplyOn::Success | ReplyOn::Always) {
                        continue;
                    }
                    SubMsgResult::Ok(SubMsgResponse {
                        events: self.events[events..]
                            .iter()
                            .map(|(e, _)| e.clone())
                            .collect(),
                        data: sub_data,
                        msg_responses: Vec::new(),
                    })
                }
                Err(Stop::Failed(f)) => {
                    journal(self.writes.revert(checkpoint))?;
                    self.events.truncate(events);
                    self.new_contracts.truncate(made);
                    // Out of gas of the whole transaction is not the submessage's to catch.
                    let caught = matches!(sub.reply_on, ReplyOn::Error | ReplyOn::Always)
                        && (sub.gas_limit.is_some() || f != Failure::Trap(Trap::OutOfGas));
                    if !caught {
                        return Err(Stop::Failed(f));
                    }
                    SubMsgResult::Err(f.reply())
                }
                Err(fault) => return Err(fault),
            };
            let reply = to_json(&Reply {
                id: sub.id,
                payload: sub.payload,
                gas_used: u64::try_from(used).unwrap_or(0),
                result: reply,
            })?;
            let env = to_json(
                &self
                    .config
                    .env(&contract, self.position.0, Some(self.position.1)),
            )?;
            let response = self.call(&contract, Entry::Reply, &[&env, &reply])?;
            if let Some(d) = self.respond(contract, response, depth + 1)? {
                data = Some(d);
            }
        }
        Ok(data)
    }

    /// Records an event of `contract`.
    fn event(&mut self, ty: String, attributes: Vec<types::Attribute>) {
        let data = serde_json::to_vec(&attributes).unwrap_or_default();
        let event = Event {
            topic: ty.clone().into_bytes(),
            data,
        };
        self.events.push((types::Event { ty, attributes }, event));
    }

    /// Runs message `msg` sent by `contract`; returns its data.
    fn message(
        &mut self,
        contract: Address,
        msg: &CosmosMsg,
        depth: u32,
    ) -> Result<Option<Binary>, Stop> {
        if let Some(kind) = msg.unsupported() {
            return Err(error(format!("unsupported message: {kind}")));
        }
        match msg {
            CosmosMsg::Bank(BankMsg::Send { to_address, amount }) => {
                let to = self.canonical(to_address)?;
                self.transfer(contract.as_bytes(), &to, amount)?;
                Ok(None)
            }
            CosmosMsg::Wasm(WasmMsg::Execute {
                contract_addr,
                msg,
                funds,
            }) => {
                let target = self.contract_address(contract_addr)?;
                self.execute(contract.as_bytes(), target, &msg.0, funds, depth)
            }
            CosmosMsg::Wasm(WasmMsg::Instantiate {
                admin,
                code_id,
                msg,
                funds,
                ..
            }) => {
                let admin = admin.as_deref().map(|a| self.canonical(a)).transpose()?;
                let code = self
                    .chain
                    .code_by_number(*code_id)
                    .ok_or_else(|| error(format!("no code with id {code_id}")))?;
                let input = CwInput {
                    msg: msg.0.clone(),
                    funds: funds.clone(),
                };
                let address =
                    self.instantiate(contract.as_bytes(), contract, code, &input, admin, depth)?;
                // The data cosmwasm-std's `parse_instantiate_response_data` reads: field 1,
                // the address (protobuf).
                let human = self.config.address(address.as_bytes());
                let mut data = vec![0x0a];
                let mut len = human.len();
                while len >= 0x80 {
                    data.push((len as u8) | 0x80);
                    len >>= 7;
                }
                data.push(len as u8);
                data.extend_from_slice(human.as_bytes());
                Ok(Some(Binary(data)))
            }
            CosmosMsg::Wasm(WasmMsg::Migrate {
                contract_addr,
                new_code_id,
                msg,
            }) => {
                let target = self.contract_address(contract_addr)?;
                let old = self.module(&target)?;
                self.admin(&contract, &target)?;
                let code = self
                    .chain
                    .code_by_number(*new_code_id)
                    .ok_or_else(|| error(format!("no code with id {new_code_id}")))?;
                let new = self
                    .chain
                    .code(&code)
                    .filter(|m| m.cosmwasm.as_ref().is_some_and(|i| i.has(Entry::Migrate)))
                    .ok_or_else(|| {
                        error(format!(
                            "code {new_code_id} is not a CosmWasm contract with `migrate`"
                        ))
                    })?;
                self.writes
                    .put(&code_key(&target), code.as_bytes().to_vec());
                let env = to_json(&self.config.env(
                    &target,
                    self.position.0,
                    Some(self.position.1),
                ))?;
                let info = to_json(&serde_json::json!({
                    "sender": self.config.address(contract.as_bytes()),
                    "old_migrate_version": old.cosmwasm.as_ref().and_then(|i| i.migrate_version),
                }))?;
                let three = new.cosmwasm.as_ref().and_then(|i| i.params(Entry::Migrate)) == Some(3);
                let args: &[&[u8]] = match three {
                    true => &[&env, &msg.0, &info],
                    false => &[&env, &msg.0],
                };
                let response = self.call(&target, Entry::Migrate, args)?;
                self.respond(target, response, depth)
            }
            CosmosMsg::Wasm(WasmMsg::UpdateAdmin {
                contract_addr,
                admin,
            }) => {
                let target = self.contract_address(contract_addr)?;
                self.module(&target)?;
                self.admin(&contract, &target)?;
                let admin = self.canonical(admin)?;
                self.writes.put(&admin_key(&target), admin);
                Ok(None)
            }
            CosmosMsg::Wasm(WasmMsg::ClearAdmin { contract_addr }) => {
                let target = self.contract_address(contract_addr)?;
                self.module(&target)?;
                self.admin(&contract, &target)?;
                self.writes.remove(&admin_key(&target));
                Ok(None)
            }
            CosmosMsg::Wasm(other) => Err(error(format!(
                "unsupported message: wasm.{}",
                wasm_kind(other)
            ))),
            _ => Err(error("unsupported message")),
        }
    }

    /// The address `human` names (whether a contract is there is for the call to find).
    fn contract_address(&self, human: &str) -> Result<Address, Stop> {
        let bytes = self.canonical(human)?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map(Digest)
            .map_err(|_| error(format!("no contract at {human}")))
    }
}

/// A wasm message's kind, for errors.
fn wasm_kind(msg: &WasmMsg) -> &'static str {
    match msg {
        WasmMsg::Execute { .. } => "execute",
        WasmMsg::Instantiate { .. } => "instantiate",
        WasmMsg::Instantiate2 { .. } => "instantiate2",
        WasmMsg::Migrate { .. } => "migrate",
        WasmMsg::UpdateAdmin { .. } => "update_admin",
        WasmMsg::ClearAdmin { .. } => "clear_admin",
        WasmMsg::Unsupported(_) => "unsupported",
    }
}
