//! Shared pieces of synor's integration suites: hosts to run every suite against, generators of
//! contract-like content, and access to the shared corpus.

use std::path::PathBuf;

use synor_core::store::{CodeStore, RuzstdCompressor, StoreConfig};
use synor_core::testing::MemKv;
use synor_host_std::{RedbKv, ZstdCompressor};

/// A code store on some host, which can be closed and opened again.
pub trait StoreHost {
    /// The backend.
    type Kv: synor_core::KvStore;
    /// The compressor.
    type C: synor_core::Compressor;
    /// Opens a new, empty store.
    fn create(config: StoreConfig) -> Self;
    /// The open store.
    fn store(&mut self) -> &mut CodeStore<Self::Kv, Self::C>;
    /// Closes the store and opens it again from what the backend holds.
    fn reopen(&mut self);
}

/// The core alone: an in-memory map and ruzstd's encoder.
pub struct MemHost {
    store: Option<CodeStore<MemKv, RuzstdCompressor>>,
    config: StoreConfig,
}

impl StoreHost for MemHost {
    type Kv = MemKv;
    type C = RuzstdCompressor;
    fn create(config: StoreConfig) -> Self {
        let store = CodeStore::open(MemKv::default(), RuzstdCompressor, config.clone())
            .expect("open an in-memory store");
        Self {
            store: Some(store),
            config,
        }
    }
    fn store(&mut self) -> &mut CodeStore<MemKv, RuzstdCompressor> {
        self.store.as_mut().expect("open")
    }
    fn reopen(&mut self) {
        let (kv, c) = self.store.take().expect("open").into_parts();
        self.store = Some(CodeStore::open(kv, c, self.config.clone()).expect("reopen"));
    }
}

/// The std host: redb on disk and libzstd.
pub struct RedbHost {
    store: Option<CodeStore<RedbKv, ZstdCompressor>>,
    config: StoreConfig,
    dir: tempfile::TempDir,
}

impl RedbHost {
    /// The data directory.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl StoreHost for RedbHost {
    type Kv = RedbKv;
    type C = ZstdCompressor;
    fn create(config: StoreConfig) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = synor_host_std::open_store(dir.path(), config.clone()).expect("open store");
        Self {
            store: Some(store),
            config,
            dir,
        }
    }
    fn store(&mut self) -> &mut CodeStore<RedbKv, ZstdCompressor> {
        self.store.as_mut().expect("open")
    }
    fn reopen(&mut self) {
        drop(self.store.take());
        self.store =
            Some(synor_host_std::open_store(self.dir.path(), self.config.clone()).expect("reopen"));
    }
}

/// splitmix64: deterministic pseudo-random numbers for generated content.
pub fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Contract-like bytes: a wasm header, then phrases drawn from a shared vocabulary, so that
/// contents compress and resemble each other as compiled contracts do.
pub fn contract(seed: u64, len: usize) -> Vec<u8> {
    let mut vocab_state = 0x5EED;
    let vocabulary: Vec<u8> = (0..8192).map(|_| next(&mut vocab_state) as u8).collect();
    let mut s = seed;
    let mut out = b"\0asm\x01\0\0\0".to_vec();
    while out.len() < len {
        let r = next(&mut s);
        let at = (r % 8000) as usize;
        let n = 3 + ((r >> 20) % 48) as usize;
        out.extend_from_slice(&vocabulary[at..at + n]);
        if r >> 60 == 0 {
            out.push((r >> 40) as u8);
        }
    }
    out.truncate(len.max(8));
    out
}

/// A new version of `old`: a few insertions, deletions and replacements.
pub fn upgrade(old: &[u8], seed: u64) -> Vec<u8> {
    let mut s = seed;
    let mut out = old.to_vec();
    let edits = 1 + next(&mut s) % 6;
    for _ in 0..edits {
        let at = if out.is_empty() {
            0
        } else {
            (next(&mut s) as usize) % out.len()
        };
        let n = (next(&mut s) % 300) as usize;
        match next(&mut s) % 3 {
            0 => {
                let insert = contract(next(&mut s), n);
                out.splice(at..at, insert);
            }
            1 => {
                let end = (at + n).min(out.len());
                out.drain(at..end);
            }
            _ => {
                let end = (at + n).min(out.len());
                let replace = contract(next(&mut s), end - at);
                out.splice(at..end, replace);
            }
        }
    }
    out
}

/// The shared corpus, if present: `SYNOR_CORPUS`, or `../shared/corpus` beside the workspace.
///
/// When it is missing, says so on stderr (outside the test harness's capture, so that the
/// message is seen) and returns `None`; with `SYNOR_REQUIRE_CORPUS` set, fails instead.
pub fn corpus_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SYNOR_CORPUS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"),
        PathBuf::from,
    );
    if dir.join("PAIRS.tsv").is_file() {
        return Some(dir);
    }
    let message = format!(
        "CORPUS MISSING: {} not found: the corpus tests did not run (set SYNOR_CORPUS to a \
         corpus directory)\n",
        dir.display()
    );
    assert!(
        std::env::var_os("SYNOR_REQUIRE_CORPUS").is_none(),
        "{message}"
    );
    use std::io::Write;
    let _ = std::io::stderr().write_all(message.as_bytes());
    None
}

/// The id of test account `n`, as the project's benchmarks and workloads name accounts.
pub fn account(n: u64) -> [u8; 32] {
    let mut a = [0u8; 32];
    a[..8].copy_from_slice(&n.to_le_bytes());
    a[31] = 0xac;
    a
}

/// A transaction calling `entry` of `contract` as `caller` with `input`, with 200,000,000 gas,
/// declaring nothing.
pub fn tx(
    contract: synor_core::block::Address,
    entry: &str,
    caller: [u8; 32],
    input: Vec<u8>,
) -> synor_core::block::Transaction {
    synor_core::block::Transaction {
        contract,
        entry: entry.into(),
        caller,
        input,
        gas: 200_000_000,
        access: None,
    }
}

/// The input of the key/value test contract's writes (`tests/contracts/wat/kv.wat`: `set`,
/// `set_then_fail`, `set_and_scan`): the key's length, the key, the value.
pub fn kv_set_input(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut input = vec![key.len() as u8];
    input.extend_from_slice(key);
    input.extend_from_slice(value);
    input
}
