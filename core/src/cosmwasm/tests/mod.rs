//! Tests of the CosmWasm layer: regions, imports, addresses, signatures, JSON, module checks
//! (`units`), and real contracts run on wasmi (`contracts`).

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use super::region::{self, Region};
use super::{CwContext, Guest};
use crate::abi::Trap;
use crate::digest::Digest;

mod contracts;
mod imports;
mod units;

/// A contract's memory with a bump allocator that makes regions as cosmwasm-std's
/// `allocate` does (a buffer of the size asked for, then the 12-byte struct pointing at it).
pub(super) struct TestGuest {
    pub mem: Vec<u8>,
    heap: u32,
    /// Gas each `allocate` uses (as the contract's code would).
    pub alloc_gas: i64,
    pub allocations: u32,
}

impl TestGuest {
    pub fn new() -> Self {
        Self {
            mem: vec![0; 4 << 20],
            heap: 1024,
            alloc_gas: 7,
            allocations: 0,
        }
    }

    /// A new empty region of `capacity` bytes.
    pub fn alloc(&mut self, capacity: u32) -> u32 {
        let offset = self.heap;
        let ptr = offset + capacity;
        self.heap = ptr + 12;
        let r = Region {
            offset,
            capacity,
            length: 0,
        };
        self.mem[ptr as usize..ptr as usize + 12].copy_from_slice(&r.to_bytes());
        ptr
    }

    /// A region holding `data`.
    pub fn region(&mut self, data: &[u8]) -> u32 {
        let ptr = self.alloc(data.len() as u32);
        region::write(&mut self.mem, ptr, data).unwrap();
        ptr
    }

    /// The used bytes of the region at `ptr`.
    pub fn read(&self, ptr: u32) -> Vec<u8> {
        let mem: &dyn crate::abi::Memory = &self.mem;
        region::read(mem, ptr, u32::MAX, "test").unwrap().to_vec()
    }
}

impl Guest for TestGuest {
    fn memory(&mut self) -> &mut [u8] {
        &mut self.mem
    }

    fn allocate(&mut self, size: u32, gas_left: &mut i64) -> Result<u32, Trap> {
        *gas_left -= self.alloc_gas;
        if *gas_left < 0 {
            return Err(Trap::OutOfGas);
        }
        self.allocations += 1;
        Ok(self.alloc(size))
    }
}

/// The contract every test context runs as.
pub(super) const CONTRACT: Digest = Digest([7; 32]);

/// `key` in [`CONTRACT`]'s namespace.
pub(super) fn ns(key: &[u8]) -> Vec<u8> {
    let mut k = CONTRACT.as_bytes().to_vec();
    k.extend_from_slice(key);
    k
}

/// A context for [`CONTRACT`] with `gas` over `state`.
pub(super) fn context(gas: u64, state: BTreeMap<Vec<u8>, Vec<u8>>) -> CwContext {
    CwContext::new(CONTRACT, gas, Box::new(state))
}
