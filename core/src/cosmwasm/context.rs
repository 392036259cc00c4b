//! [`CwContext`]: the semantics and costs of every CosmWasm import, one implementation for
//! every tier, as [`CallContext`](crate::abi::CallContext) is for synor's own ABI.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::ops::Bound;

use super::region::{self, decode_sections, encode_sections};
use super::types::{QuerierResult, QueryRequest, SystemError, SystemResult};
use super::{
    Api, Bech32Api, CwImport, Entry, MAX_ABORT_BYTES, MAX_CANONICAL_ADDRESS_BYTES, MAX_DEBUG_BYTES,
    MAX_HUMAN_ADDRESS_BYTES, MAX_KEY_BYTES, MAX_QUERY_BYTES, MAX_RESULT_BYTES, MAX_VALUE_BYTES,
    crypto,
};
use crate::abi::{self, Empty, Memory, State, Trap, namespaced, next_through, read_through};
use crate::digest::CodeId;
use crate::gas::GasSchedule;
use crate::state::{Journal, KeyValue, Range};

/// The most iterators one call may open (`db_scan`): each holds up to three keys of at most
/// [`MAX_KEY_BYTES`], so this bounds their memory (cosmwasm-vm leaves the bound to gas).
pub const MAX_ITERATORS: usize = 256;

/// Bytes of `debug` messages a context keeps when [`CwContext::keep_debug`] is set; later
/// messages are counted, not kept.
pub const MAX_DEBUG_KEPT: usize = 64 << 10;

/// Bytes of an `abort` message kept in the trap.
pub const MAX_ABORT_KEPT: usize = 4096;

/// What the CosmWasm imports cost beyond what [`GasSchedule`] prices (calls, storage, copies,
/// all taken from `schedule`), in synor gas.
///
/// Crypto is priced at cosmwasm-vm's measured times (`GasConfig::default`, in µs), one synor
/// gas per nanosecond: so the ratios between signature schemes are cosmwasm-vm's, and a
/// secp256k1 verification costs as much as about 46 storage reads of schedule V1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CwGas {
    /// Calls, storage and copies.
    pub schedule: GasSchedule,
    /// `secp256k1_verify` (cosmwasm-vm: 96 µs).
    pub secp256k1_verify: u64,
    /// `secp256k1_recover_pubkey` (194 µs).
    pub secp256k1_recover_pubkey: u64,
    /// `secp256r1_verify` (279 µs).
    pub secp256r1_verify: u64,
    /// `secp256r1_recover_pubkey` (592 µs).
    pub secp256r1_recover_pubkey: u64,
    /// `ed25519_verify` (35 µs).
    pub ed25519_verify: u64,
    /// `ed25519_batch_verify`, per signature (each is verified alone here).
    pub ed25519_batch_signature: u64,
    /// `addr_validate`, `addr_canonicalize`, `addr_humanize` (a bech32 decode or encode),
    /// besides copying the input.
    pub address: u64,
    /// `query_chain`, besides copying the request and the response and what the host reports
    /// the query used.
    pub query: u64,
}

impl CwGas {
    /// The costs of version 1, over [`GasSchedule::V1`].
    pub const V1: CwGas = CwGas {
        schedule: GasSchedule::V1,
        secp256k1_verify: 96_000,
        secp256k1_recover_pubkey: 194_000,
        secp256r1_verify: 279_000,
        secp256r1_recover_pubkey: 592_000,
        ed25519_verify: 35_000,
        ed25519_batch_signature: 35_000,
        address: 1_000,
        query: 2_600,
    };
}

impl Default for CwGas {
    fn default() -> Self {
        Self::V1
    }
}

/// Answers `query_chain`: the host's part (other contracts, balances).
pub trait Querier {
    /// The answer to `request` (JSON of a cosmwasm-std `QueryRequest`, at most
    /// [`MAX_QUERY_BYTES`]) with at most `gas_limit` gas, and the gas it used (charged to the
    /// call). `pending` holds the writes the calling transaction made so far (namespaced), which
    /// a query of another contract sees as a chain's store would. The answer is what the contract receives: a request the chain cannot parse or
    /// serve is a [`SystemError`] in it, not a trap.
    ///
    /// # Errors
    /// A fault that must end the call (the host failed).
    fn query(
        &mut self,
        request: &[u8],
        gas_limit: u64,
        pending: &Journal,
    ) -> Result<(QuerierResult, u64), Trap>;
}

/// A chain with nothing to query: every request is answered with a [`SystemError`] naming
/// it (`unsupported_request` with its kind, or `invalid_request`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoChain;

impl Querier for NoChain {
    fn query(
        &mut self,
        request: &[u8],
        _gas_limit: u64,
        _pending: &Journal,
    ) -> Result<(QuerierResult, u64), Trap> {
        let error = match serde_json::from_slice::<QueryRequest>(request) {
            Ok(q) => SystemError::UnsupportedRequest {
                kind: q.unsupported().unwrap_or_else(|| kind_of(&q)),
            },
            Err(e) => SystemError::InvalidRequest {
                error: e.to_string(),
                request: super::types::Binary(request.to_vec()),
            },
        };
        Ok((SystemResult::Err(error), 0))
    }
}

/// A supported query's kind, for messages.
fn kind_of(q: &QueryRequest) -> String {
    use super::types::{BankQuery, WasmQuery};
    String::from(match q {
        QueryRequest::Bank(BankQuery::Balance { .. }) => "bank.balance",
        QueryRequest::Wasm(WasmQuery::Smart { .. }) => "wasm.smart",
        QueryRequest::Wasm(WasmQuery::Raw { .. }) => "wasm.raw",
        _ => "unsupported",
    })
}

/// What [`CwContext::dispatch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Step {
    /// The import is done; its result, if it has one.
    Done(Option<u64>),
    /// The import hands bytes back in a region the contract must allocate: the host calls
    /// the contract's `allocate` with [`Pending::len`], then [`CwContext::finish`].
    Allocate(Pending),
}

/// Bytes waiting for a region (see [`Step::Allocate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    data: Vec<u8>,
}

impl Pending {
    /// How many bytes the region must hold: the argument of `allocate`.
    pub fn len(&self) -> u32 {
        // At most MAX_RESULT_BYTES (checked when made).
        self.data.len() as u32
    }

    /// Whether there are no bytes (the region is still needed: e.g. an empty value).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }
}

/// One iterator of `db_scan`: its range (namespaced keys) and the last key it returned.
#[derive(Debug, Clone)]
struct Iter {
    range: Range,
    last: Option<Vec<u8>>,
    done: bool,
}

/// Memory and `allocate` together, for hosts that can lend both at once ([`CwContext::call`]).
pub trait Guest {
    /// The contract's whole memory, as it is now (`allocate` may have grown it).
    fn memory(&mut self) -> &mut [u8];

    /// Calls the contract's `allocate(size)` and returns the pointer to the region it made.
    /// Its code uses gas from `gas_left` (the host moves the value into the module's gas
    /// counter before the call and back after).
    ///
    /// # Errors
    /// The trap the call ended with.
    fn allocate(&mut self, size: u32, gas_left: &mut i64) -> Result<u32, Trap>;
}

/// A contract instance as [`call_entry`] drives it.
pub trait CwInstance: Guest {
    /// Calls export `name` with `args` (region pointers) and returns its result (a region
    /// pointer), using gas from `gas_left` as [`Guest::allocate`] does.
    ///
    /// # Errors
    /// The trap the call ended with.
    fn call_export(&mut self, name: &str, args: &[u32], gas_left: &mut i64) -> Result<u32, Trap>;

    /// Calls the contract's `deallocate(ptr)`.
    ///
    /// # Errors
    /// The trap the call ended with.
    fn deallocate(&mut self, ptr: u32, gas_left: &mut i64) -> Result<(), Trap>;
}

/// Calls `entry` with `args` (the JSON of env, then info for `instantiate` and `execute`,
/// then the message) as cosmwasm-vm does: each argument goes into a region from the
/// contract's `allocate`, the export runs, its result region (at most [`MAX_RESULT_BYTES`])
/// is copied out and given back with `deallocate`. The contract frees the arguments itself.
///
/// # Errors
/// A trap of the contract, a region that is not one, or an allocation of 0.
pub fn call_entry(
    instance: &mut dyn CwInstance,
    entry: Entry,
    args: &[&[u8]],
    gas_left: &mut i64,
) -> Result<Vec<u8>, Trap> {
    let mut pointers = Vec::with_capacity(args.len());
    for arg in args {
        let len = u32::try_from(arg.len())
            .map_err(|_| Trap::Host(format!("{} argument too long", entry.name())))?;
        let ptr = instance.allocate(len, gas_left)?;
        if ptr == 0 {
            return Err(Trap::Host("allocate returned a zero pointer".into()));
        }
        let mut mem: &mut [u8] = instance.memory();
        region::write(&mut mem, ptr, arg)?;
        pointers.push(ptr);
    }
    let result = instance.call_export(entry.name(), &pointers, gas_left)?;
    let data = {
        let mem: &mut [u8] = instance.memory();
        let mem: &dyn Memory = &mem;
        region::read(mem, result, MAX_RESULT_BYTES, "entry point result")?.to_vec()
    };
    instance.deallocate(result, gas_left)?;
    Ok(data)
}

/// Everything a CosmWasm contract may ask of the node during one call, with the gas it
/// costs. Keys are namespaced as synor's ABI does it: the state sees `contract ++ key`.
pub struct CwContext {
    /// The contract whose storage the call sees (its 32-byte id; the host maps addresses to
    /// ids, so that no contract's keys are a prefix of another's).
    pub contract: CodeId,
    /// Costs.
    pub gas: CwGas,
    /// Gas left; engines copy it from and back to the module's gas counter around each
    /// import, and around `allocate` within one.
    pub gas_left: i64,
    /// The state below this call.
    pub state: Box<dyn State>,
    /// Writes so far (namespaced), applied by the host only if the call succeeds.
    pub writes: Journal,
    /// Whether writes are refused (a `query`): `db_write` and `db_remove` trap.
    pub read_only: bool,
    /// Addresses.
    pub api: Box<dyn Api>,
    /// Queries.
    pub querier: Box<dyn Querier>,
    /// Whether `debug` messages are kept in [`CwContext::debug_log`] (else dropped).
    pub keep_debug: bool,
    /// The `debug` messages kept (at most [`MAX_DEBUG_KEPT`] bytes in all).
    pub debug_log: Vec<String>,
    /// The `debug` messages seen, kept or not.
    pub debug_count: u64,
    iterators: Vec<Iter>,
}

impl Default for CwContext {
    /// A context with no gas over no state ([`Empty`]): what a host may keep in an engine's
    /// store between calls.
    fn default() -> Self {
        Self::new(crate::digest::Digest([0; 32]), 0, Box::new(Empty))
    }
}

impl CwContext {
    /// A context for one call of `contract` with `gas` to spend over `state`; addresses are
    /// bech32 with prefix `cosmwasm` and nothing can be queried ([`NoChain`]) until the host
    /// sets `api` and `querier`.
    pub fn new(contract: CodeId, gas: u64, state: Box<dyn State>) -> Self {
        Self {
            contract,
            gas: CwGas::V1,
            gas_left: i64::try_from(gas).unwrap_or(i64::MAX),
            state,
            writes: Journal::new(),
            read_only: false,
            api: Box::new(Bech32Api::default()),
            querier: Box::new(NoChain),
            keep_debug: false,
            debug_log: Vec::new(),
            debug_count: 0,
            iterators: Vec::new(),
        }
    }

    /// Gas used out of `limit`, the gas the call started with.
    pub fn gas_used(&self, limit: u64) -> u64 {
        abi::gas_used(self.gas_left, limit)
    }

    /// Takes the state back (e.g. to commit `writes` to it), leaving [`Empty`].
    pub fn take_state(&mut self) -> Box<dyn State> {
        core::mem::replace(&mut self.state, Box::new(Empty))
    }

    fn charge(&mut self, gas: u64) -> Result<(), Trap> {
        abi::charge(&mut self.gas_left, gas)
    }

    /// `copy_word` per 32-byte word of `bytes`.
    fn charge_copy(&mut self, bytes: u64) -> Result<(), Trap> {
        let s = self.gas.schedule;
        self.charge(GasSchedule::cost(0, s.copy_word, GasSchedule::words(bytes)))
    }

    /// `key` in the contract's namespace.
    fn key(&self, key: &[u8]) -> Vec<u8> {
        namespaced(&self.contract, key)
    }

    /// The value of `full` (a namespaced key): as this call wrote it, else from the state.
    fn read_state(&mut self, full: &[u8]) -> Result<Option<Vec<u8>>, Trap> {
        read_through(&self.writes, &mut *self.state, full)
    }

    /// The first key of `range` after `after` visible to this call: its own writes over the
    /// state's keys, its removals hiding them.
    fn next_visible(
        &mut self,
        range: &Range,
        after: Option<&[u8]>,
    ) -> Result<Option<KeyValue>, Trap> {
        next_through(&self.writes, &mut *self.state, range, after)
    }

    /// Bytes for a region the contract allocates, with the copy into it paid now.
    fn give(&mut self, data: Vec<u8>) -> Result<Step, Trap> {
        if data.len() > MAX_RESULT_BYTES as usize {
            return Err(Trap::TooLarge {
                what: "import result",
                len: u32::try_from(data.len()).unwrap_or(u32::MAX),
                max: MAX_RESULT_BYTES,
            });
        }
        self.charge_copy(data.len() as u64)?;
        Ok(Step::Allocate(Pending { data }))
    }

    /// Writes `pending` into the region at `ptr` that the contract's `allocate` returned,
    /// and gives the import's result (the region's pointer). Its cost was charged by
    /// [`CwContext::dispatch`].
    ///
    /// # Errors
    /// A zero pointer, or a region that is not one or is too small.
    pub fn finish(
        &mut self,
        pending: Pending,
        ptr: u32,
        mem: &mut dyn Memory,
    ) -> Result<Option<u64>, Trap> {
        if ptr == 0 {
            return Err(Trap::Host("allocate returned a zero pointer".into()));
        }
        region::write(mem, ptr, &pending.data)?;
        Ok(Some(u64::from(ptr)))
    }

    /// Both steps of an import with a [`Guest`]: [`CwContext::dispatch`], then, if it asks,
    /// `allocate` and [`CwContext::finish`].
    ///
    /// # Errors
    /// The trap that ends the call.
    pub fn call(
        &mut self,
        import: CwImport,
        args: &[u64],
        guest: &mut dyn Guest,
    ) -> Result<Option<u64>, Trap> {
        let step = {
            let mut mem: &mut [u8] = guest.memory();
            self.dispatch(import, args, &mut mem)?
        };
        match step {
            Step::Done(result) => Ok(result),
            Step::Allocate(pending) => {
                let ptr = guest.allocate(pending.len(), &mut self.gas_left)?;
                let mut mem: &mut [u8] = guest.memory();
                self.finish(pending, ptr, &mut mem)
            }
        }
    }

    /// Reads the region at `ptr` (at most `max` bytes), paying `copy_word` per word before
    /// borrowing it.
    fn input<'m>(
        &mut self,
        mem: &'m dyn Memory,
        ptr: u32,
        max: u32,
        what: &'static str,
    ) -> Result<&'m [u8], Trap> {
        let n = region::len(mem.bytes(), ptr, max, what)?;
        self.charge_copy(n.into())?;
        region::read(mem, ptr, max, what)
    }

    /// Performs `import` with `args` (each an `i32` as `u64`) against `mem`, charging before
    /// each part of the work; returns its result, or the bytes to place in a region the
    /// contract allocates ([`Step::Allocate`]).
    ///
    /// # Errors
    /// The trap that ends the call.
    pub fn dispatch(
        &mut self,
        import: CwImport,
        args: &[u64],
        mem: &mut dyn Memory,
    ) -> Result<Step, Trap> {
        let arg = |i: usize| args.get(i).copied().unwrap_or(0) as u32;
        let s = self.gas.schedule;
        let words = |n: usize| GasSchedule::words(n as u64);
        self.charge(s.host_call)?;
        match import {
            CwImport::DbRead => {
                let n = region::len(mem.bytes(), arg(0), MAX_KEY_BYTES, "storage key")?;
                self.charge(GasSchedule::cost(
                    s.storage_read,
                    s.storage_key_word,
                    words(n as usize),
                ))?;
                let key = self.key(region::read(mem, arg(0), MAX_KEY_BYTES, "storage key")?);
                match self.read_state(&key)? {
                    None => Ok(Step::Done(Some(0))),
                    Some(value) => {
                        self.charge(GasSchedule::cost(
                            0,
                            s.storage_read_word,
                            words(value.len()),
                        ))?;
                        self.give(value)
                    }
                }
            }
            CwImport::DbWrite | CwImport::DbRemove => {
                if self.read_only {
                    return Err(Trap::Host(
                        "write access denied: storage is read-only in this call".into(),
                    ));
                }
                let key_len = region::len(mem.bytes(), arg(0), MAX_KEY_BYTES, "storage key")?;
                if key_len == 0 {
                    return Err(Trap::Host("storage key is empty".into()));
                }
                let cost = if import == CwImport::DbWrite {
                    let value_len =
                        region::len(mem.bytes(), arg(1), MAX_VALUE_BYTES, "storage value")?;
                    let persisted = words(key_len as usize + value_len as usize);
                    GasSchedule::cost(0, s.storage_write_word, persisted.max(1))
                } else {
                    GasSchedule::cost(
                        s.storage_remove,
                        s.storage_key_word,
                        words(key_len as usize),
                    )
                };
                self.charge(cost)?;
                let key = self.key(region::read(mem, arg(0), MAX_KEY_BYTES, "storage key")?);
                self.state.check_write(&key)?;
                if import == CwImport::DbWrite {
                    let value = region::read(mem, arg(1), MAX_VALUE_BYTES, "storage value")?;
                    self.writes.put(&key, value.to_vec());
                } else {
                    self.writes.remove(&key);
                }
                Ok(Step::Done(None))
            }
            CwImport::DbScan => self.scan(mem, arg(0), arg(1), args.get(2).copied().unwrap_or(0)),
            CwImport::DbNext | CwImport::DbNextKey | CwImport::DbNextValue => {
                self.charge(s.storage_read)?;
                let id = arg(0);
                let Some(found) = self.step(id)? else {
                    return match import {
                        // cosmwasm-std reads an empty key as the end.
                        CwImport::DbNext => self.give(encode_sections(&[&[], &[]])),
                        _ => Ok(Step::Done(Some(0))),
                    };
                };
                let (key, value) = found;
                // The key as the contract names it, without its namespace (a state that
                // returned a key outside the range it was asked for is a host fault).
                let Some(key) = key.get(self.contract.as_bytes().len()..) else {
                    return Err(Trap::Host(
                        "the state returned a key outside the scan".into(),
                    ));
                };
                let data = match import {
                    CwImport::DbNext => encode_sections(&[key, &value]),
                    CwImport::DbNextKey => key.to_vec(),
                    _ => value,
                };
                self.charge(GasSchedule::cost(0, s.storage_read_word, words(data.len())))?;
                self.give(data)
            }
            CwImport::AddrValidate | CwImport::AddrCanonicalize => {
                let human = self.input(mem, arg(0), MAX_HUMAN_ADDRESS_BYTES, "human address")?;
                if human.is_empty() {
                    return self.give(b"Input is empty".to_vec());
                }
                let Ok(human) = core::str::from_utf8(human) else {
                    return self.give(b"Input is not valid UTF-8".to_vec());
                };
                self.charge(self.gas.address)?;
                let result = if import == CwImport::AddrValidate {
                    self.api.validate(human).map(|()| None)
                } else {
                    self.api.canonicalize(human).map(Some)
                };
                match result {
                    Ok(None) => Ok(Step::Done(Some(0))),
                    Ok(Some(canonical)) => self.place(mem, arg(1), &canonical),
                    Err(message) => self.give(message.into_bytes()),
                }
            }
            CwImport::AddrHumanize => {
                let canonical = self.input(
                    mem,
                    arg(0),
                    MAX_CANONICAL_ADDRESS_BYTES,
                    "canonical address",
                )?;
                self.charge(self.gas.address)?;
                match self.api.humanize(canonical) {
                    Ok(human) => self.place(mem, arg(1), human.as_bytes()),
                    Err(message) => self.give(message.into_bytes()),
                }
            }
            CwImport::Secp256k1Verify | CwImport::Secp256r1Verify => {
                let hash = self.input(mem, arg(0), crypto::MESSAGE_HASH_MAX_LEN, "message hash")?;
                let sig = self.input(mem, arg(1), crypto::ECDSA_SIGNATURE_LEN, "signature")?;
                let key = self.input(mem, arg(2), crypto::ECDSA_PUBKEY_MAX_LEN, "public key")?;
                let code = if import == CwImport::Secp256k1Verify {
                    self.charge(self.gas.secp256k1_verify)?;
                    crypto::secp256k1_verify(hash, sig, key)
                } else {
                    self.charge(self.gas.secp256r1_verify)?;
                    crypto::secp256r1_verify(hash, sig, key)
                };
                Ok(Step::Done(Some(code.into())))
            }
            CwImport::Secp256k1RecoverPubkey | CwImport::Secp256r1RecoverPubkey => {
                let hash = self.input(mem, arg(0), crypto::MESSAGE_HASH_MAX_LEN, "message hash")?;
                let sig = self.input(mem, arg(1), crypto::ECDSA_SIGNATURE_LEN, "signature")?;
                let param = arg(2);
                // cosmwasm-vm answers a parameter beyond a byte before paying for recovery.
                if param > 255 {
                    return Ok(Step::Done(Some(
                        u64::from(crypto::INVALID_RECOVERY_PARAM) << 32,
                    )));
                }
                let result = if import == CwImport::Secp256k1RecoverPubkey {
                    self.charge(self.gas.secp256k1_recover_pubkey)?;
                    crypto::secp256k1_recover_pubkey(hash, sig, param)
                } else {
                    self.charge(self.gas.secp256r1_recover_pubkey)?;
                    crypto::secp256r1_recover_pubkey(hash, sig, param)
                };
                match result {
                    Ok(key) => self.give(key),
                    Err(code) => Ok(Step::Done(Some(u64::from(code) << 32))),
                }
            }
            CwImport::Ed25519Verify => {
                let msg = self.input(
                    mem,
                    arg(0),
                    crypto::MAX_ED25519_MESSAGE_LEN,
                    "ed25519 message",
                )?;
                let sig = self.input(mem, arg(1), crypto::EDDSA_SIGNATURE_LEN, "signature")?;
                let key = self.input(mem, arg(2), crypto::EDDSA_PUBKEY_LEN, "public key")?;
                self.charge(self.gas.ed25519_verify)?;
                Ok(Step::Done(Some(
                    crypto::ed25519_verify(msg, sig, key).into(),
                )))
            }
            CwImport::Ed25519BatchVerify => self.batch_verify(mem, arg(0), arg(1), arg(2)),
            CwImport::Bls12381AggregateG1
            | CwImport::Bls12381AggregateG2
            | CwImport::Bls12381PairingEquality
            | CwImport::Bls12381HashToG1
            | CwImport::Bls12381HashToG2 => Err(Trap::Host(format!(
                "{}: BLS12-381 is not supported by this host",
                import.name()
            ))),
            CwImport::Debug => {
                let message = self.input(mem, arg(0), MAX_DEBUG_BYTES, "debug message")?;
                self.debug_count += 1;
                let kept: usize = self.debug_log.iter().map(String::len).sum();
                if self.keep_debug && kept + message.len() <= MAX_DEBUG_KEPT {
                    self.debug_log
                        .push(String::from_utf8_lossy(message).into_owned());
                }
                Ok(Step::Done(None))
            }
            CwImport::Abort => {
                let message = self.input(mem, arg(0), MAX_ABORT_BYTES, "abort message")?;
                let shown = &message[..message.len().min(MAX_ABORT_KEPT)];
                let mut text = String::from_utf8_lossy(shown).into_owned();
                if shown.len() < message.len() {
                    text.push_str(&format!("... ({} bytes)", message.len()));
                }
                Err(Trap::Aborted(text))
            }
            CwImport::QueryChain => {
                let request = self.input(mem, arg(0), MAX_QUERY_BYTES, "query request")?;
                self.charge(self.gas.query)?;
                let limit = u64::try_from(self.gas_left).unwrap_or(0);
                let (answer, used) = self.querier.query(request, limit, &self.writes)?;
                self.charge(used.min(limit))?;
                if used > limit {
                    return Err(Trap::OutOfGas);
                }
                let json = serde_json::to_vec(&answer).map_err(|e| {
                    Trap::Host(format!("query_chain: cannot encode the answer: {e}"))
                })?;
                self.give(json)
            }
        }
    }

    /// Writes `data` into the contract's region at `ptr` (`addr_canonicalize`,
    /// `addr_humanize`), paying the copy first; the import returns 0.
    fn place(&mut self, mem: &mut dyn Memory, ptr: u32, data: &[u8]) -> Result<Step, Trap> {
        self.charge_copy(data.len() as u64)?;
        region::write(mem, ptr, data)?;
        Ok(Step::Done(Some(0)))
    }

    /// `db_scan(start, end, order)`: a new iterator over the contract's keys from `start`
    /// (inclusive; 0: the first) to `end` (exclusive; 0: past the last), ascending (order 1)
    /// or descending (2). Returns its id, from 1.
    fn scan(&mut self, mem: &dyn Memory, start: u32, end: u32, order: u64) -> Result<Step, Trap> {
        let s = self.gas.schedule;
        let what = "storage key";
        let len = |ptr: u32| match ptr {
            0 => Ok(0),
            p => region::len(mem.bytes(), p, MAX_KEY_BYTES, what),
        };
        let key_bytes = u64::from(len(start)?) + u64::from(len(end)?);
        self.charge(GasSchedule::cost(
            s.storage_read,
            s.storage_key_word,
            GasSchedule::words(key_bytes),
        ))?;
        // The order is an i32 in cosmwasm-std: 1 ascending, 2 descending.
        let descending = match order as u32 as i32 {
            1 => false,
            2 => true,
            other => {
                return Err(Trap::Host(format!(
                    "db_scan: invalid iteration order {other} (1 ascending, 2 descending)"
                )));
            }
        };
        if self.iterators.len() >= MAX_ITERATORS {
            return Err(Trap::Host(format!(
                "db_scan: more than {MAX_ITERATORS} iterators in one call"
            )));
        }
        let namespace = Range::prefix(self.contract.as_bytes());
        let start = match region::read_optional(mem, start, MAX_KEY_BYTES, what)? {
            Some(k) => Bound::Included(self.key(k)),
            None => namespace.start,
        };
        let end = match region::read_optional(mem, end, MAX_KEY_BYTES, what)? {
            Some(k) => Bound::Excluded(self.key(k)),
            None => namespace.end,
        };
        let mut range = Range::new(start, end);
        if descending {
            range = range.descending();
        }
        self.iterators.push(Iter {
            range,
            last: None,
            done: false,
        });
        Ok(Step::Done(Some(self.iterators.len() as u64)))
    }

    /// The next entry of iterator `id` (namespaced key, value), or `None` at its end.
    fn step(&mut self, id: u32) -> Result<Option<KeyValue>, Trap> {
        let index = (id as usize).wrapping_sub(1);
        let Some(iter) = self.iterators.get(index) else {
            return Err(Trap::Host(format!("iterator {id} does not exist")));
        };
        if iter.done {
            return Ok(None);
        }
        let (range, last) = (iter.range.clone(), iter.last.clone());
        let next = self.next_visible(&range, last.as_deref())?;
        let iter = &mut self.iterators[index];
        match &next {
            Some((key, _)) => iter.last = Some(key.clone()),
            None => iter.done = true,
        }
        Ok(next)
    }

    /// `ed25519_batch_verify(messages, signatures, public_keys)`, each a list of sections.
    fn batch_verify(
        &mut self,
        mem: &dyn Memory,
        messages: u32,
        signatures: u32,
        keys: u32,
    ) -> Result<Step, Trap> {
        let batch = crypto::MAX_ED25519_BATCH;
        let bound = |item: u32| item.saturating_add(4).saturating_mul(batch);
        let messages = self.input(
            mem,
            messages,
            bound(crypto::MAX_ED25519_MESSAGE_LEN),
            "ed25519 messages",
        )?;
        let signatures = self.input(
            mem,
            signatures,
            bound(crypto::EDDSA_SIGNATURE_LEN),
            "ed25519 signatures",
        )?;
        let keys = self.input(
            mem,
            keys,
            bound(crypto::EDDSA_PUBKEY_LEN),
            "ed25519 public keys",
        )?;
        // Counted before anything is allocated, and paid per signature before verifying.
        let malformed = || Trap::Host("ed25519_batch_verify: malformed sections".into());
        let count = region::count_sections(signatures).ok_or_else(malformed)?;
        self.charge(GasSchedule::cost(
            0,
            self.gas.ed25519_batch_signature,
            count as u64,
        ))?;
        let messages = decode_sections(messages).ok_or_else(malformed)?;
        let signatures = decode_sections(signatures).ok_or_else(malformed)?;
        let keys = decode_sections(keys).ok_or_else(malformed)?;
        let code = crypto::ed25519_batch_verify(&messages, &signatures, &keys);
        Ok(Step::Done(Some(code.into())))
    }
}
