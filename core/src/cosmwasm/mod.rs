//! CosmWasm compatibility, the engine-independent layer: what a host needs to run contracts
//! built with `cosmwasm-std` 1.x–3.x (`interface_version_8`) on any synor tier.
//!
//! | piece | what it does |
//! |---|---|
//! | [`check`] | static checks of an uploaded module, as cosmwasm-vm's `check_wasm` makes them; the contract's [`Interface`] (entry points, capabilities) |
//! | [`CwImport`] | the imports of module `env`, with the exact signatures cosmwasm-vm links |
//! | [`region`] | the contract's `Region {offset, capacity, length}` structs, read and written with every bound checked |
//! | [`CwContext`] | the semantics and gas of every import over a [`State`](crate::abi::State), with the call's writes journaled; [`Step`] and [`CwContext::finish`] for imports whose result the contract must `allocate` |
//! | [`Bech32Api`] | `addr_validate` / `addr_canonicalize` / `addr_humanize` as cosmwasm-vm's `MockApi` does them, with a configurable prefix |
//! | [`crypto`] | secp256k1, secp256r1 and ed25519 with cosmwasm-vm's return codes |
//! | [`types`] | the JSON of `Env`, `MessageInfo`, `Response`, `SubMsg`, `CosmosMsg`, `Reply`, `QueryRequest`, results; bounded parsing |
//! | [`call_entry`] | the sequence a host follows to call an entry point |
//!
//! # Calling a contract
//!
//! A host calls entry point `e` (`instantiate(env, info, msg)`, `execute(env, info, msg)`,
//! `query(env, msg)`, `migrate(env, msg)`, `sudo(env, msg)`, `reply(env, reply)`) with
//! [`call_entry`]: for each JSON argument it calls the contract's `allocate(len)`, writes the
//! bytes into the returned region ([`region::write`]), calls the export with the region
//! pointers, reads the returned region (at most [`MAX_RESULT_BYTES`]), and calls
//! `deallocate` on it; [`types::parse_response`] and [`types::parse_query_result`] then read
//! the result (at most [`MAX_RESULT_JSON_BYTES`]).
//!
//! # Imports
//!
//! Each import is one host function in module `env` (signatures: [`CwImport::params`],
//! [`CwImport::result`]). It passes its arguments to [`CwContext::dispatch`] with the
//! contract's memory. Most imports finish there ([`Step::Done`]); those that hand bytes back in
//! a region the contract owns (`db_read`, `db_next*`, `query_chain`, an address error,
//! `secp256*_recover_pubkey`) return [`Step::Allocate`]: the host calls the contract's
//! `allocate` export with [`Pending::len`] (letting it use gas from the same counter as
//! [`CwContext::gas_left`]), then [`CwContext::finish`] writes the bytes and gives the
//! import's result. A host that can lend its memory and its `allocate` as one object
//! implements [`Guest`] and calls [`CwContext::call`], which does both steps.
//!
//! # What differs from cosmwasm-vm
//!
//! - Gas is synor's: every import charges, before its work, [`CwGas`] figures in synor units
//!   (storage as [`GasSchedule`](crate::gas::GasSchedule) prices it, crypto at cosmwasm-vm's
//!   measured relative costs).
//! - `bls12_381_*` imports are linked (cosmwasm-std 2.1+ links them unconditionally) but trap
//!   with a message naming the import when called: BLS12-381 is not implemented here.
//! - `ed25519_batch_verify` verifies each signature alone (cosmwasm-vm batches them with a
//!   random linear combination): the same verdict under ZIP-215 rules, without randomness.
//! - An iterator sees the writes the call made after it was created (each step reads the
//!   merged view after the last key returned); cosmwasm-vm's `MockStorage` snapshots at
//!   `db_scan`, wasmd's store leaves it undefined.
//! - Writing or removing an empty key traps (wasmd's store refuses empty keys).
//! - A call opens at most [`MAX_ITERATORS`] iterators (cosmwasm-vm bounds them by gas only).
//! - `debug` messages are dropped unless [`CwContext::keep_debug`] is set, and then kept up to
//!   [`MAX_DEBUG_KEPT`] bytes; an `abort` message is kept up to [`MAX_ABORT_KEPT`] bytes.
//! - Only the `interface_version_8` imports and checks of cosmwasm-vm 3.0 are served; IBC
//!   entry points are listed ([`Interface::ibc`]) but not driven by this layer.

mod addr;
mod check;
mod context;
pub mod crypto;
pub mod region;
pub mod tx;
pub mod types;

#[cfg(test)]
mod tests;

pub use addr::{Api, Bech32Api};
pub use check::{CheckError, CheckLimits, Entry, Interface, check, check_with};
pub use context::{
    CwContext, CwGas, CwInstance, Guest, MAX_ABORT_KEPT, MAX_DEBUG_KEPT, MAX_ITERATORS, NoChain,
    Pending, Querier, Step, call_entry,
};

use crate::abi::Ty;

/// The import module of every CosmWasm import.
pub const IMPORT_MODULE: &str = "env";

/// The one interface version accepted: contracts built with cosmwasm-std 1.0 or later.
pub const INTERFACE_VERSION: &str = "interface_version_8";

/// The longest storage key a contract may pass (`db_*`): 64 KiB, as cosmwasm-vm.
pub const MAX_KEY_BYTES: u32 = 64 << 10;
/// The longest storage value a contract may write: 128 KiB, as cosmwasm-vm.
pub const MAX_VALUE_BYTES: u32 = 128 << 10;
/// The longest `query_chain` request: 64 KiB, as cosmwasm-vm.
pub const MAX_QUERY_BYTES: u32 = 64 << 10;
/// The longest `debug` message: 2 MiB, as cosmwasm-vm.
pub const MAX_DEBUG_BYTES: u32 = 2 << 20;
/// The longest `abort` message: 2 MiB, as cosmwasm-vm.
pub const MAX_ABORT_BYTES: u32 = 2 << 20;
/// The longest human-readable address input: 256 bytes, as cosmwasm-vm.
pub const MAX_HUMAN_ADDRESS_BYTES: u32 = 256;
/// The longest canonical address input: 64 bytes, as cosmwasm-vm.
pub const MAX_CANONICAL_ADDRESS_BYTES: u32 = 64;
/// The longest region an entry point may return: 64 MiB, as cosmwasm-vm.
pub const MAX_RESULT_BYTES: u32 = 64 << 20;
/// The longest result JSON that is parsed: 256 KiB, as cosmwasm-vm.
pub const MAX_RESULT_JSON_BYTES: usize = 256 << 10;

/// Whether `wasm` is a CosmWasm contract, and if so its interface: `Ok(None)` for a module
/// with no CosmWasm marker export (`interface_version_*` or an older `cosmwasm_vm_version_*`)
/// or one no parser accepts (the instrumenter then says what is wrong), `Ok(Some(..))` for a
/// contract that passes [`check`].
///
/// # Errors
/// A module with a marker that [`check`] refuses: an older interface version (named), an
/// unknown import (named), a broken limit.
pub fn detect(wasm: &[u8]) -> Result<Option<Interface>, CheckError> {
    // Only a module that carries a marker is CosmWasm's to judge: `check` applies its
    // rules (one memory, ...) before it looks at the marker.
    if !has_marker(wasm) {
        return Ok(None);
    }
    check(wasm).map(Some)
}

/// Whether `wasm` parses far enough to show a CosmWasm marker export.
fn has_marker(wasm: &[u8]) -> bool {
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        let Ok(payload) = payload else { return false };
        if let wasmparser::Payload::ExportSection(reader) = payload {
            return reader.into_iter().flatten().any(|e| {
                e.name.starts_with("interface_version_")
                    || e.name.starts_with("cosmwasm_vm_version_")
            });
        }
    }
    false
}

/// One import of module `env` that cosmwasm-vm 2.x/3.x provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum CwImport {
    DbRead,
    DbWrite,
    DbRemove,
    DbScan,
    DbNext,
    DbNextKey,
    DbNextValue,
    AddrValidate,
    AddrCanonicalize,
    AddrHumanize,
    Secp256k1Verify,
    Secp256k1RecoverPubkey,
    Secp256r1Verify,
    Secp256r1RecoverPubkey,
    Ed25519Verify,
    Ed25519BatchVerify,
    Bls12381AggregateG1,
    Bls12381AggregateG2,
    Bls12381PairingEquality,
    Bls12381HashToG1,
    Bls12381HashToG2,
    Debug,
    Abort,
    QueryChain,
}

impl CwImport {
    /// Every import.
    pub const ALL: [CwImport; 24] = [
        CwImport::DbRead,
        CwImport::DbWrite,
        CwImport::DbRemove,
        CwImport::DbScan,
        CwImport::DbNext,
        CwImport::DbNextKey,
        CwImport::DbNextValue,
        CwImport::AddrValidate,
        CwImport::AddrCanonicalize,
        CwImport::AddrHumanize,
        CwImport::Secp256k1Verify,
        CwImport::Secp256k1RecoverPubkey,
        CwImport::Secp256r1Verify,
        CwImport::Secp256r1RecoverPubkey,
        CwImport::Ed25519Verify,
        CwImport::Ed25519BatchVerify,
        CwImport::Bls12381AggregateG1,
        CwImport::Bls12381AggregateG2,
        CwImport::Bls12381PairingEquality,
        CwImport::Bls12381HashToG1,
        CwImport::Bls12381HashToG2,
        CwImport::Debug,
        CwImport::Abort,
        CwImport::QueryChain,
    ];

    /// The import's name in module `env`.
    pub fn name(self) -> &'static str {
        match self {
            CwImport::DbRead => "db_read",
            CwImport::DbWrite => "db_write",
            CwImport::DbRemove => "db_remove",
            CwImport::DbScan => "db_scan",
            CwImport::DbNext => "db_next",
            CwImport::DbNextKey => "db_next_key",
            CwImport::DbNextValue => "db_next_value",
            CwImport::AddrValidate => "addr_validate",
            CwImport::AddrCanonicalize => "addr_canonicalize",
            CwImport::AddrHumanize => "addr_humanize",
            CwImport::Secp256k1Verify => "secp256k1_verify",
            CwImport::Secp256k1RecoverPubkey => "secp256k1_recover_pubkey",
            CwImport::Secp256r1Verify => "secp256r1_verify",
            CwImport::Secp256r1RecoverPubkey => "secp256r1_recover_pubkey",
            CwImport::Ed25519Verify => "ed25519_verify",
            CwImport::Ed25519BatchVerify => "ed25519_batch_verify",
            CwImport::Bls12381AggregateG1 => "bls12_381_aggregate_g1",
            CwImport::Bls12381AggregateG2 => "bls12_381_aggregate_g2",
            CwImport::Bls12381PairingEquality => "bls12_381_pairing_equality",
            CwImport::Bls12381HashToG1 => "bls12_381_hash_to_g1",
            CwImport::Bls12381HashToG2 => "bls12_381_hash_to_g2",
            CwImport::Debug => "debug",
            CwImport::Abort => "abort",
            CwImport::QueryChain => "query_chain",
        }
    }

    /// The import called `name` in module `env`, if any.
    pub fn by_name(name: &str) -> Option<CwImport> {
        CwImport::ALL.into_iter().find(|i| i.name() == name)
    }

    /// How many parameters it takes; every one is an `i32` (a region pointer, an iterator
    /// id, an order, a recovery parameter or a hash function, `u32` in cosmwasm-vm).
    pub fn arity(self) -> usize {
        match self {
            CwImport::DbRead
            | CwImport::DbRemove
            | CwImport::DbNext
            | CwImport::DbNextKey
            | CwImport::DbNextValue
            | CwImport::AddrValidate
            | CwImport::Debug
            | CwImport::Abort
            | CwImport::QueryChain => 1,
            CwImport::DbWrite
            | CwImport::AddrCanonicalize
            | CwImport::AddrHumanize
            | CwImport::Bls12381AggregateG1
            | CwImport::Bls12381AggregateG2 => 2,
            CwImport::DbScan
            | CwImport::Secp256k1Verify
            | CwImport::Secp256k1RecoverPubkey
            | CwImport::Secp256r1Verify
            | CwImport::Secp256r1RecoverPubkey
            | CwImport::Ed25519Verify
            | CwImport::Ed25519BatchVerify => 3,
            CwImport::Bls12381PairingEquality
            | CwImport::Bls12381HashToG1
            | CwImport::Bls12381HashToG2 => 4,
        }
    }

    /// Parameter types.
    pub fn params(self) -> &'static [Ty] {
        &[Ty::I32; 4][..self.arity()]
    }

    /// The result's type, if any: `i64` for the recoveries (error code in the high half,
    /// region pointer in the low half), nothing for `db_write`, `db_remove`, `debug` and
    /// `abort`, `i32` for the others.
    pub fn result(self) -> Option<Ty> {
        match self {
            CwImport::DbWrite | CwImport::DbRemove | CwImport::Debug | CwImport::Abort => None,
            CwImport::Secp256k1RecoverPubkey | CwImport::Secp256r1RecoverPubkey => Some(Ty::I64),
            _ => Some(Ty::I32),
        }
    }

    /// Result types (none or one).
    pub fn results(self) -> &'static [Ty] {
        match self.result() {
            Some(Ty::I32) => &[Ty::I32],
            Some(Ty::I64) => &[Ty::I64],
            None => &[],
        }
    }
}
