//! Block semantics: transactions addressed to contracts, receipts, the access checks every
//! scheduling mode applies, and the digests that every node computes alike.
//!
//! A host executes a block ([`Mode`]) however it likes (one thread, a dependency graph, or
//! optimistically); the receipts and the state it leaves are those of executing the
//! transactions one after the other in block order. These types are what it takes and gives.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::abi::{Event, NewContract, Trap};
use crate::digest::Digest;
use crate::instrument::Instrumented;
use crate::sched::{AccessIndex, AccessSet, AccessSetError};

/// A contract's address: where its state lives (its keys are namespaced by it). Assigned when
/// the contract is instantiated; many contracts may share one code.
pub type Address = Digest;

/// The address of the `nonce`-th contract instantiated from `code` by `creator`: the same on
/// every node, and never one of another instantiation.
pub fn contract_address(code: &Digest, creator: &[u8; 32], nonce: u64) -> Address {
    let mut h = blake3::Hasher::new();
    h.update(b"synor/contract-address/v1");
    h.update(code.as_bytes());
    h.update(creator);
    h.update(&nonce.to_le_bytes());
    Digest(*h.finalize().as_bytes())
}

/// The address of the `ordinal`-th contract that the contract `creator` instantiated (the
/// `instantiate` import) in the transaction at `position` (block height, index in the block),
/// of code `code`: the same on every node and in every scheduling mode, and never the address
/// of another instantiation (nor of one by [`contract_address`]).
pub fn created_address(
    code: &Digest,
    creator: &Address,
    position: (u64, u32),
    ordinal: u32,
) -> Address {
    let mut h = blake3::Hasher::new();
    h.update(b"synor/created-address/v1");
    h.update(code.as_bytes());
    h.update(creator.as_bytes());
    h.update(&position.0.to_le_bytes());
    h.update(&position.1.to_le_bytes());
    h.update(&ordinal.to_le_bytes());
    Digest(*h.finalize().as_bytes())
}

/// The contracts a block may call: the instrumented module at each address.
pub trait Contracts: Send + Sync {
    /// The module of the contract at `address`, if there is one.
    fn module(&self, address: &Address) -> Option<&Arc<Instrumented>>;

    /// The module of the deployed code `code`, if there is one: what a contract instantiated
    /// during the block runs (the transaction that instantiated it may call it at once). The
    /// default has none: contracts cannot instantiate contracts.
    fn code(&self, code: &Digest) -> Option<Arc<Instrumented>> {
        let _ = code;
        None
    }

    /// The deployed code numbered `number` (CosmWasm's `code_id`), if any. The default has
    /// none.
    fn code_by_number(&self, number: u64) -> Option<Digest> {
        let _ = number;
        None
    }
}

impl Contracts for BTreeMap<Address, Arc<Instrumented>> {
    fn module(&self, address: &Address) -> Option<&Arc<Instrumented>> {
        self.get(address)
    }
}

impl<S: core::hash::BuildHasher + Send + Sync> Contracts
    for hashbrown::HashMap<Address, Arc<Instrumented>, S>
{
    fn module(&self, address: &Address) -> Option<&Arc<Instrumented>> {
        self.get(address)
    }
}

#[cfg(feature = "std")]
impl<S: core::hash::BuildHasher + Send + Sync> Contracts
    for std::collections::HashMap<Address, Arc<Instrumented>, S>
{
    fn module(&self, address: &Address) -> Option<&Arc<Instrumented>> {
        self.get(address)
    }
}

/// One transaction of a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// The contract called.
    pub contract: Address,
    /// The export called.
    pub entry: String,
    /// The sender.
    pub caller: [u8; 32],
    /// The input.
    pub input: Vec<u8>,
    /// Gas limit.
    pub gas: u64,
    /// The state keys (namespaced by contract) it may read and write; `None` declares nothing
    /// (any key may be touched).
    pub access: Option<AccessSet>,
}

/// What a transaction did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Receipt {
    /// Gas used.
    pub gas_used: u64,
    /// Why it failed (stable name and message), if it did.
    pub trap: Option<String>,
    /// Return data (empty when it failed).
    pub return_data: Vec<u8>,
    /// Events (none when it failed).
    pub events: Vec<Event>,
    /// Contracts it instantiated, in order (none when it failed): callable from the next block.
    pub created: Vec<NewContract>,
}

impl Receipt {
    /// The receipt of a transaction that was not run, for `why` (no gas used).
    pub fn refused(why: String) -> Self {
        Self {
            trap: Some(why),
            ..Self::default()
        }
    }
}

/// How to execute a block. Every mode gives the same receipts and state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One transaction after the other, in block order.
    Sequential,
    /// Declared access sets: the dependency graph drained by `threads` workers. A transaction
    /// that declares nothing is a barrier (it runs alone, after everything before it).
    Declared {
        /// Worker threads (the caller's included).
        threads: usize,
    },
    /// Optimistic (Block-STM): declarations are not needed for scheduling; transactions run
    /// speculatively and are validated and re-executed.
    Optimistic {
        /// Worker threads (the caller's included).
        threads: usize,
    },
}

impl Mode {
    /// Worker threads the mode uses (at least one).
    pub fn threads(self) -> usize {
        match self {
            Mode::Sequential => 1,
            Mode::Declared { threads } | Mode::Optimistic { threads } => threads.max(1),
        }
    }
}

/// A transaction's access set as a block's scheduling found it: what each access is checked
/// against, in every mode alike.
#[derive(Debug)]
pub enum Declared {
    /// It declares nothing: it may touch any key.
    Nothing,
    /// Its set, within its bounds, indexed for the checks of its accesses.
    Keys(AccessIndex),
    /// Its set is over a bound: the transaction is not run.
    Refused(AccessSetError),
}

impl Declared {
    /// Checks and indexes `access` (a transaction's declaration).
    pub fn of(access: Option<&AccessSet>) -> Self {
        match access.map(AccessIndex::new) {
            None => Declared::Nothing,
            Some(Ok(index)) => Declared::Keys(index),
            Some(Err(e)) => Declared::Refused(e),
        }
    }

    /// Whether the transaction declaring `set` (as this was made from) may touch `key`; the
    /// trap that ends it if not.
    ///
    /// # Errors
    /// [`Trap::UndeclaredAccess`].
    pub fn check(&self, set: Option<&AccessSet>, key: &[u8], write: bool) -> Result<(), Trap> {
        let allowed = match (self, set) {
            (Declared::Nothing, _) => true,
            (Declared::Keys(index), Some(set)) if write => index.may_write(set, key),
            (Declared::Keys(index), Some(set)) => index.may_read(set, key),
            // A refused transaction is never run.
            (Declared::Keys(_), None) | (Declared::Refused(_), _) => false,
        };
        if !allowed {
            return Err(Trap::undeclared_access(key, write));
        }
        Ok(())
    }

    /// Whether the transaction may scan a range of keys: only one that declares nothing (a
    /// range is not a finite set of keys to declare). The trap names the range's first key.
    ///
    /// # Errors
    /// [`Trap::UndeclaredAccess`].
    pub fn check_scan(&self, start: &[u8]) -> Result<(), Trap> {
        match self {
            Declared::Nothing => Ok(()),
            _ => Err(Trap::undeclared_access(start, false)),
        }
    }
}

/// Feeds `bytes` into `h`, length first: concatenations of fields stay unambiguous.
fn field(h: &mut blake3::Hasher, bytes: &[u8]) {
    h.update(&(bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// The digest of a whole state: its keys and values, in key order.
pub fn state_digest<'a>(entries: impl IntoIterator<Item = (&'a Vec<u8>, &'a Vec<u8>)>) -> Digest {
    let mut h = blake3::Hasher::new();
    for (k, v) in entries {
        field(&mut h, k);
        field(&mut h, v);
    }
    Digest(*h.finalize().as_bytes())
}

/// The digest of a block's receipts, in order: every node and every mode computes the same.
pub fn receipts_digest(receipts: &[Receipt]) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(b"synor/receipts/v1");
    h.update(&(receipts.len() as u64).to_le_bytes());
    for r in receipts {
        h.update(&r.gas_used.to_le_bytes());
        match &r.trap {
            None => {
                h.update(&[0]);
            }
            Some(t) => {
                h.update(&[1]);
                field(&mut h, t.as_bytes());
            }
        }
        field(&mut h, &r.return_data);
        h.update(&(r.events.len() as u64).to_le_bytes());
        for e in &r.events {
            field(&mut h, &e.topic);
            field(&mut h, &e.data);
        }
        h.update(&(r.created.len() as u64).to_le_bytes());
        for c in &r.created {
            h.update(c.address.as_bytes());
            h.update(c.code.as_bytes());
            h.update(c.creator.as_bytes());
        }
    }
    Digest(*h.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    #[test]
    fn addresses_differ_by_code_creator_and_nonce() {
        let code = Digest::of(b"code");
        let a = contract_address(&code, &[1; 32], 0);
        assert_ne!(a, contract_address(&code, &[1; 32], 1));
        assert_ne!(a, contract_address(&code, &[2; 32], 0));
        assert_ne!(a, contract_address(&Digest::of(b"other"), &[1; 32], 0));
        assert_eq!(a, contract_address(&code, &[1; 32], 0));
        let creator = Digest::of(b"creator");
        let b = created_address(&code, &creator, (1, 2), 0);
        for other in [
            created_address(&code, &creator, (1, 2), 1),
            created_address(&code, &creator, (1, 3), 0),
            created_address(&code, &creator, (2, 2), 0),
            created_address(&code, &Digest::of(b"other"), (1, 2), 0),
            created_address(&Digest::of(b"other"), &creator, (1, 2), 0),
        ] {
            assert_ne!(b, other);
        }
        assert_eq!(b, created_address(&code, &creator, (1, 2), 0));
    }

    #[test]
    fn receipts_digest_tells_fields_apart() {
        let base = Receipt {
            gas_used: 5,
            trap: None,
            return_data: b"ab".to_vec(),
            events: vec![Event {
                topic: b"t".to_vec(),
                data: b"d".to_vec(),
            }],
            created: Vec::new(),
        };
        let d = receipts_digest(core::slice::from_ref(&base));
        let mut moved = base.clone();
        moved.events[0] = Event {
            topic: b"td".to_vec(),
            data: Vec::new(),
        };
        let mut trapped = base.clone();
        trapped.trap = Some(String::new());
        let mut gas = base.clone();
        gas.gas_used = 6;
        let mut created = base.clone();
        created.created.push(NewContract {
            address: Digest::of(b"a"),
            code: Digest::of(b"c"),
            creator: Digest::of(b"k"),
        });
        for other in [moved, trapped, gas, created] {
            assert_ne!(d, receipts_digest(&[other]));
        }
        assert_ne!(d, receipts_digest(&[base.clone(), base.clone()]));
        assert_eq!(d, receipts_digest(&[base]));
        assert_eq!(Receipt::refused("x".to_string()).trap.as_deref(), Some("x"));
    }

    #[test]
    fn declared_checks_keys_and_scans() {
        let set = AccessSet {
            reads: vec![b"r".to_vec()],
            writes: vec![b"w".to_vec()],
        };
        let d = Declared::of(Some(&set));
        assert!(d.check(Some(&set), b"r", false).is_ok());
        assert!(d.check(Some(&set), b"r", true).is_err());
        assert!(d.check(Some(&set), b"w", true).is_ok());
        assert!(d.check(Some(&set), b"x", false).is_err());
        assert!(d.check_scan(b"r").is_err());
        let nothing = Declared::of(None);
        assert!(nothing.check(None, b"x", true).is_ok());
        assert!(nothing.check_scan(b"").is_ok());
    }
}
