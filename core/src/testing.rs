//! In-memory implementations of the host traits, for tests, fuzzing and examples.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use crate::host::{KvStore, WriteBatch};

/// A [`KvStore`] over a `BTreeMap`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MemKv {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl MemKv {
    /// Every key and value.
    pub fn entries(&self) -> &BTreeMap<Vec<u8>, Vec<u8>> {
        &self.map
    }

    /// Mutable access to the entries, to damage a store on purpose.
    pub fn entries_mut(&mut self) -> &mut BTreeMap<Vec<u8>, Vec<u8>> {
        &mut self.map
    }
}

/// The in-memory store never fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Never {}

impl fmt::Display for Never {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {}
    }
}

impl core::error::Error for Never {}

impl KvStore for MemKv {
    type Error = Never;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Never> {
        Ok(self.map.get(key).cloned())
    }

    fn scan(&self, prefix: &[u8], visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), Never> {
        for (k, v) in self.map.range(prefix.to_vec()..) {
            if !k.starts_with(prefix) {
                break;
            }
            visit(k, v);
        }
        Ok(())
    }

    fn apply(&mut self, batch: WriteBatch) -> Result<(), Never> {
        for (key, value) in batch.into_ops() {
            match value {
                Some(v) => self.map.insert(key, v),
                None => self.map.remove(&key),
            };
        }
        Ok(())
    }
}

/// A write that [`FaultyKv`] refused, as a crash would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InjectedFault {
    /// Which `apply` call failed (counting from 0).
    pub write: u64,
}

impl fmt::Display for InjectedFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "injected fault at write {}", self.write)
    }
}

impl core::error::Error for InjectedFault {}

/// Wraps a [`MemKv`] and fails one chosen write, without applying any of it: what a crash
/// during that write leaves behind with an atomic backend.
#[derive(Debug, Clone, Default)]
pub struct FaultyKv {
    /// The wrapped store.
    pub inner: MemKv,
    /// The write (counting from 0) that fails; `None` for none.
    pub fail_at: Option<u64>,
    /// Writes attempted so far.
    pub writes: u64,
}

impl KvStore for FaultyKv {
    type Error = InjectedFault;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, InjectedFault> {
        Ok(self.inner.map.get(key).cloned())
    }

    fn scan(
        &self,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), InjectedFault> {
        let Ok(()) = self.inner.scan(prefix, visit);
        Ok(())
    }

    fn apply(&mut self, batch: WriteBatch) -> Result<(), InjectedFault> {
        let write = self.writes;
        self.writes += 1;
        if self.fail_at == Some(write) {
            return Err(InjectedFault { write });
        }
        let Ok(()) = self.inner.apply(batch);
        Ok(())
    }
}

/// Deterministic pseudo-random bytes (splitmix64), for tests.
pub fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) as u8
        })
        .collect()
}

/// Deterministic compressible bytes, for tests: phrases drawn from a fixed vocabulary, so that
/// different seeds resemble each other as compiled code does.
pub fn text(seed: u64, n: usize) -> Vec<u8> {
    let words = noise(0x5EED, 4096);
    let mut out = Vec::with_capacity(n);
    let mut s = seed;
    while out.len() < n {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let at = (s >> 40) as usize % 4000;
        let len = 4 + (s >> 20) as usize % 60;
        out.extend_from_slice(&words[at..at + len]);
    }
    out.truncate(n);
    out
}
