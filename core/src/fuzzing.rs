//! Fuzzing entry points. Each cargo-fuzz target in `fuzz/` is one call to a function here, and
//! the unit tests run the same functions over seeded inputs, so that what the fuzzers check is
//! also checked by `cargo test`.
//!
//! Every entry point panics only when an invariant is broken: a panic is a bug.

use alloc::vec::Vec;

use crate::digest::Digest;
use crate::host::{Level, Reference};
use crate::store::codec::{RAW_CONTENT_HEADER, decode_frame};
use crate::store::format::{MAX_SEQ, SEAL_LEN, seal};
use crate::store::{ChunkConfig, Chunker, CodeStore, RuzstdCompressor, StoreConfig};
use crate::testing::MemKv;
use crate::wire::put_varint;

/// Reads little-endian integers from the front of fuzz input, then hands out the rest.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from(self.u8()) | (u16::from(self.u8()) << 8)
    }
    fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | (u32::from(self.u16()) << 16)
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
    fn rest(&mut self) -> &'a [u8] {
        self.take(self.0.len())
    }
}

/// A store of three records built from `body` (split at `split`): a contract, then two
/// upgrades of it, or (`mode & 0x20`) a blob and an update of the blob to its first three
/// quarters (the two share chunks); uncompressed when `mode & 0x10`. Chunks are small enough
/// (about 1 KiB) that blobs of a few kilobytes of incompressible bytes are chunked. Returns the
/// backend, the configuration and each record's id and bytes.
fn build_store(
    mode: u8,
    split: usize,
    body: &[u8],
) -> (MemKv, StoreConfig, Vec<(Digest, Vec<u8>)>) {
    let (a, b) = body.split_at(split.min(body.len()));
    let config = StoreConfig {
        level: if mode & 0x10 != 0 {
            Level::None
        } else {
            Level::Fast
        },
        chunking: ChunkConfig::new(256, 1024, 4096).expect("valid chunk bounds"),
        max_size: 1 << 20,
        max_read_bytes: 4 << 20,
        ..StoreConfig::default()
    };
    let Ok(mut store) = CodeStore::open(MemKv::default(), RuzstdCompressor, config.clone()) else {
        panic!("opening an empty store failed");
    };
    let mut originals: Vec<(Digest, Vec<u8>)> = Vec::new();
    let mut previous = None;
    let third = match mode & 0x20 {
        0 => &body[body.len() / 2..],
        _ => &b[..b.len() * 3 / 4],
    };
    for (i, piece) in [a, b, third].into_iter().enumerate() {
        let put = if i >= 1 && mode & 0x20 != 0 {
            store.put_blob(piece, previous.filter(|_| i == 2).as_ref())
        } else {
            match previous {
                Some(p) => store.put_upgrade(&p, piece),
                None => store.put(piece),
            }
        };
        let report = put.expect("putting into an in-memory store");
        previous = Some(report.id);
        originals.push((report.id, piece.to_vec()));
    }
    for (id, bytes) in &originals {
        assert_eq!(&store.get(id).expect("intact record"), bytes);
    }
    (store.into_parts().0, config, originals)
}

/// Record decoding: builds a store from the input, damages one stored value as the input says
/// (bit flip, truncation, extension, removal, replacement), reopens it and reads every record.
/// A read returns the original bytes or an error, never other bytes, and never panics.
pub fn record_decode(data: &[u8]) {
    let mut input = Input(data);
    let mode = input.u8();
    let target = input.u16() as usize;
    let position = input.u32() as usize;
    let bit = input.u8() % 8;
    let split = input.u16() as usize;
    let body = input.rest();
    let b = &body[split.min(body.len())..];
    let (mut kv, config, originals) = build_store(mode, split, body);
    let keys: Vec<Vec<u8>> = kv.entries().keys().cloned().collect();
    if !keys.is_empty() {
        let key = &keys[target % keys.len()];
        let entries = kv.entries_mut();
        match mode % 5 {
            0 => {
                if let Some(v) = entries.get_mut(key)
                    && !v.is_empty()
                {
                    let at = position % v.len();
                    v[at] ^= 1 << bit;
                }
            }
            1 => {
                if let Some(v) = entries.get_mut(key) {
                    let n = position % (v.len() + 1);
                    v.truncate(n);
                }
            }
            2 => {
                if let Some(v) = entries.get_mut(key) {
                    v.extend_from_slice(&data[..data.len().min(position % 64)]);
                }
            }
            3 => {
                entries.remove(key);
            }
            _ => {
                entries.insert(key.clone(), b.to_vec());
            }
        }
    }
    let Ok(store) = CodeStore::open(kv, RuzstdCompressor, config) else {
        return;
    };
    for (id, bytes) in &originals {
        if let Ok(got) = store.get(id) {
            assert_eq!(&got, bytes, "a damaged store returned wrong bytes");
        }
    }
    let _ = store.verify(true);
}

/// Numbers that sit at the edges of what stored fields hold, for [`record_reseal`] to write
/// over a field.
const EDGES: [u64; 12] = [
    0,
    1,
    0x7f,
    0x80,
    u32::MAX as u64,
    u32::MAX as u64 + 1,
    1 << 40,
    MAX_SEQ,
    MAX_SEQ + 1,
    i64::MAX as u64,
    i64::MAX as u64 + 1,
    u64::MAX,
];

/// Damages the sealed value `value` as `how` says and seals it again: a flipped bit, a byte
/// set, a truncation, bytes appended or inserted, the body replaced by `other`, or the varint
/// at the position replaced by one of [`EDGES`] or a number from the input.
fn damage_and_reseal(value: &[u8], how: [u32; 3], other: &[u8]) -> Vec<u8> {
    let [mode, position, arg] = how;
    let mut body = value.get(SEAL_LEN..).unwrap_or_default().to_vec();
    let at = position as usize % (body.len() + 1);
    match mode % 7 {
        0 if at < body.len() => body[at] ^= 1 << (arg % 8),
        1 if at < body.len() => body[at] = arg as u8,
        2 => body.truncate(at),
        3 => body.extend_from_slice(&other[..other.len().min(arg as usize % 64)]),
        4 => body.insert(at, arg as u8),
        5 => body = other.to_vec(),
        6 => {
            // The varint starting at `at`: up to ten bytes, through the first without the
            // continuation bit.
            let len = body[at..]
                .iter()
                .take(10)
                .position(|b| b & 0x80 == 0)
                .map_or(body.len() - at, |i| i + 1);
            let number = match EDGES.get(arg as usize % 16) {
                Some(edge) => *edge,
                None => u64::from(arg),
            };
            let mut varint = Vec::new();
            put_varint(&mut varint, number);
            body.splice(at..at + len, varint);
        }
        _ => {}
    }
    seal(&[&body])
}

/// Damage that the seal does not catch: builds a store from the input as [`record_decode`]
/// does, damages one or two stored values (a flipped bit, a byte set, a truncation, bytes
/// appended or inserted, the body replaced, or a varint field overwritten with an edge number
/// such as `u64::MAX`) and seals them again, so that the metadata, count and chunk decoders
/// see the damage. Then reopens the store and uses all of it: reads, statistics, verification,
/// puts, deletes, `gc`, and a second reopen. Errors are expected; a panic, or a read returning
/// other bytes than those stored, is a bug. Reads run under a 4 MiB budget, so decoding stays
/// bounded.
///
/// The input's content is followed by up to 16 KiB of pseudo-random bytes, as many as it says,
/// so that short inputs also make stores with chunked blobs.
pub fn record_reseal(data: &[u8]) {
    let mut input = Input(data);
    let mode = input.u8();
    let mut damages = [(0usize, [0u32; 3]); 2];
    for d in &mut damages {
        *d = (
            input.u16() as usize,
            [u32::from(input.u8()), input.u32(), input.u32()],
        );
    }
    let split = input.u16() as usize;
    let grow = input.u8();
    let mut body = input.rest().to_vec();
    body.extend_from_slice(&crate::testing::noise(grow.into(), usize::from(grow) * 64));
    let other = &body[split.min(body.len())..];
    let (mut kv, config, originals) = build_store(mode, split, &body);
    for (target, how) in &damages[..1 + usize::from(mode & 0x40 != 0)] {
        damage(&mut kv, *target, *how, other);
    }
    use_damaged(kv, config, &originals, mode);
}

/// Damages the value of the `target`-th key (modulo their number) as [`damage_and_reseal`]
/// says.
fn damage(kv: &mut MemKv, target: usize, how: [u32; 3], other: &[u8]) {
    let keys: Vec<Vec<u8>> = kv.entries().keys().cloned().collect();
    let key = &keys[target % keys.len()];
    let value = damage_and_reseal(&kv.entries()[key], how, other);
    kv.entries_mut().insert(key.clone(), value);
}

/// [`record_reseal`]'s checks on a damaged store built by [`build_store`].
fn use_damaged(kv: MemKv, config: StoreConfig, originals: &[(Digest, Vec<u8>)], mode: u8) {
    let Ok(mut store) = CodeStore::open(kv, RuzstdCompressor, config.clone()) else {
        return;
    };
    let check = |store: &CodeStore<MemKv, RuzstdCompressor>| {
        for (id, bytes) in originals {
            if let Ok(got) = store.get(id) {
                assert_eq!(&got, bytes, "a damaged store returned wrong bytes");
            }
        }
        for id in store.ids() {
            if let Ok(got) = store.get(&id) {
                assert_eq!(Digest::of(&got), id, "a damaged store returned wrong bytes");
            }
            let _ = store.record_stats(&id);
        }
        let _ = store.stats();
        let _ = store.verify(true);
    };
    check(&store);
    // Writes over the damage: more pins, a new version, a new blob sharing chunks.
    for (id, bytes) in originals {
        let _ = store.put(bytes);
        let mut changed = bytes.clone();
        changed.push(mode);
        let _ = store.put_upgrade(id, &changed);
        let _ = store.put_blob(&changed, Some(id));
    }
    check(&store);
    for (id, _) in originals {
        let _ = store.delete(id);
    }
    let _ = store.gc();
    check(&store);
    for (id, _) in originals {
        let _ = store.delete(id);
        let _ = store.delete(id);
    }
    let _ = store.gc();
    let (kv, _) = store.into_parts();
    if let Ok(store) = CodeStore::open(kv, RuzstdCompressor, config) {
        check(&store);
    }
}

/// Delta application: decodes the input's frame against the input's reference (a raw prefix,
/// and optionally a dictionary). Never panics; success means exactly the declared size.
pub fn delta_apply(data: &[u8]) {
    let mut input = Input(data);
    let flags = input.u8();
    let declared = input.u16() as usize;
    let prefix_len = input.u16() as usize;
    let prefix = input.take(prefix_len);
    let frame = input.rest();
    let mut dictionary = Vec::new();
    let reference = if flags & 1 != 0 {
        dictionary.extend_from_slice(&RAW_CONTENT_HEADER);
        dictionary.extend_from_slice(&prefix[..prefix.len() / 2]);
        Reference {
            dictionary: Some(&dictionary),
            prefix: &prefix[prefix.len() / 2..],
        }
    } else {
        Reference {
            dictionary: None,
            prefix,
        }
    };
    if let Ok(out) = decode_frame(frame, reference, declared) {
        assert_eq!(out.len(), declared);
    }
}

/// Chunking: chunks concatenate to the input, respect the bounds, and cutting is content
/// defined (chunking the data after the first chunk gives the remaining chunks).
pub fn chunking(data: &[u8]) {
    let mut input = Input(data);
    let min = 64 + u32::from(input.u16() % 4096);
    let avg = min + u32::from(input.u16() % 8192);
    let max = avg + u32::from(input.u16() % 16384);
    let config = ChunkConfig::new(min, avg, max).expect("bounds built in order");
    let bytes = input.rest();
    let chunker = Chunker::new(config);
    let chunks: Vec<&[u8]> = chunker.chunks(bytes).collect();
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    assert_eq!(total, bytes.len());
    for (i, c) in chunks.iter().enumerate() {
        assert!(c.len() <= max as usize);
        assert!(c.len() >= min as usize || i + 1 == chunks.len());
    }
    if let Some(first) = chunks.first() {
        let rest: Vec<&[u8]> = chunker.chunks(&bytes[first.len()..]).collect();
        assert_eq!(&rest[..], &chunks[1..]);
    }
}

/// Instrumentation of untrusted bytecode: never panics; what it accepts is valid under the
/// deterministic feature set, and instrumenting is deterministic.
pub fn instrument(data: &[u8]) {
    use crate::gas::GasSchedule;
    use crate::instrument::{FEATURES, Limits, instrument};
    let limits = Limits::default();
    if let Ok(m) = instrument(data, &GasSchedule::V1, &limits) {
        wasmparser::Validator::new_with_features(FEATURES)
            .validate_all(&m.bytes)
            .expect("instrumented output is valid");
        assert_eq!(instrument(data, &GasSchedule::V1, &limits).ok(), Some(m));
    }
}

/// A tiny deterministic "VM" whose transactions read and write `u8` keys holding `u64` values,
/// with read and write sets that depend on the values read (so that they change between
/// optimistic executions, as real contracts' do). Shared by the optimistic scheduler's tests
/// and its fuzz target.
pub(crate) mod vm {
    use alloc::collections::BTreeMap;
    use alloc::vec::Vec;

    use crate::sched::optimistic::{Executed, Finished, Optimistic, Read, Version};

    /// A transaction: reads `reads` in order, then writes a function of what it read to each
    /// of `writes`; a read of an odd value makes it also read `extra`, and some values make it
    /// skip its last write (or, if it had none, write `extra`).
    #[derive(Debug, Clone)]
    pub(crate) struct Program {
        pub(crate) reads: Vec<u8>,
        pub(crate) writes: Vec<u8>,
        pub(crate) extra: u8,
    }

    pub(crate) fn mix(a: u64, b: u64) -> u64 {
        (a ^ b.rotate_left(17))
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29)
    }

    /// Runs `p` as transaction `tx` with `read` giving a key's value (0 when never written);
    /// returns its writes (each key once), or `None` when a read was blocked.
    pub(crate) fn interpret(
        tx: u32,
        p: &Program,
        mut read: impl FnMut(u8) -> Option<u64>,
    ) -> Option<Vec<(u8, u64)>> {
        let mut acc = u64::from(tx);
        let mut keys = p.reads.clone();
        let mut i = 0;
        while i < keys.len() {
            let v = read(keys[i])?;
            acc = mix(acc, v);
            if v % 2 == 1 && !keys.contains(&p.extra) {
                keys.push(p.extra);
            }
            i += 1;
        }
        let mut writes: Vec<(u8, u64)> = p
            .writes
            .iter()
            .enumerate()
            .map(|(i, k)| (*k, mix(acc, i as u64)))
            .collect();
        if acc % 3 == 0 && writes.pop().is_none() {
            writes.push((p.extra, acc));
        }
        let mut unique: BTreeMap<u8, u64> = BTreeMap::new();
        unique.extend(writes);
        Some(unique.into_iter().collect())
    }

    /// What a transaction's writes hash to: its output.
    pub(crate) fn output(writes: &[(u8, u64)]) -> u64 {
        writes.iter().fold(0, |a, (_, v)| mix(a, *v))
    }

    /// The block's final state, outputs and the depth of its read-from graph, executed in
    /// order.
    pub(crate) fn sequential(block: &[Program]) -> (BTreeMap<u8, u64>, Vec<u64>, usize) {
        let mut state = BTreeMap::new();
        let mut outputs = Vec::new();
        // Per key: depth of its last writer.
        let mut writer: BTreeMap<u8, usize> = BTreeMap::new();
        let mut deepest = 0;
        for (tx, p) in block.iter().enumerate() {
            let mut depth = 1;
            let writes = interpret(tx as u32, p, |k| {
                depth = depth.max(writer.get(&k).map_or(1, |d| d + 1));
                Some(*state.get(&k).unwrap_or(&0))
            })
            .expect("sequential reads never block");
            outputs.push(output(&writes));
            for (k, _) in &writes {
                writer.insert(*k, depth);
            }
            deepest = deepest.max(depth);
            state.extend(writes);
        }
        (state, outputs, deepest)
    }

    /// What an optimistic block committed, in commit order: the writes applied to its base
    /// state (every key 0 before the block), and each transaction's output.
    #[derive(Debug, Default)]
    pub(crate) struct Committed {
        pub(crate) state: BTreeMap<u8, u64>,
        pub(crate) outputs: Vec<u64>,
    }

    impl Committed {
        /// A committed write.
        pub(crate) fn write(&mut self, key: u8, value: u64) {
            self.state.insert(key, value);
        }

        /// A committed output: commits come in block order.
        pub(crate) fn output(&mut self, tx: u32, output: u64) {
            assert_eq!(tx as usize, self.outputs.len(), "commits in block order");
            self.outputs.push(output);
        }

        /// The base state's value of `key`.
        pub(crate) fn base(&self, key: u8) -> u64 {
            self.state.get(&key).copied().unwrap_or(0)
        }
    }

    /// Asserts that `committed` and `done`, the result of running `block` optimistically
    /// (`what` says how), have sequential execution's final state, outputs and (if `measured`)
    /// critical path, every transaction having run.
    pub(crate) fn assert_sequential(
        block: &[Program],
        committed: &Committed,
        done: &Finished,
        measured: bool,
        what: &str,
    ) {
        let (state, outputs, depth) = sequential(block);
        assert_eq!(committed.state, state, "{what}");
        assert_eq!(committed.outputs, outputs, "{what}");
        assert_eq!(done.critical_path, measured.then_some(depth), "{what}");
        assert!(done.executions >= block.len(), "{what}");
    }

    /// What a program reads through the multi-version memory: a value, or nothing when the
    /// read is blocked.
    pub(crate) fn value(read: Read<u64>) -> Option<u64> {
        match read {
            Read::Value(v) => Some(v),
            Read::Blocked => None,
        }
    }

    /// Drains `stm` with `block` on `threads` scoped threads, calling `before` ahead of every
    /// execution (tests slow some down there, to shake the interleavings); returns what the
    /// block committed.
    #[cfg(feature = "std")]
    pub(crate) fn run(
        stm: &Optimistic<u8, u64>,
        block: &[Program],
        threads: usize,
        before: impl Fn() + Sync,
    ) -> Committed {
        let committed = std::sync::Mutex::new(Committed::default());
        let base = |k| committed.lock().unwrap().base(k);
        std::thread::scope(|s| {
            for worker in 0..threads {
                let (before, committed) = (&before, &committed);
                s.spawn(move || {
                    stm.work(
                        worker,
                        |v| {
                            before();
                            execute(stm, &block[v.tx as usize], v, base)
                        },
                        |k, v| committed.lock().unwrap().write(*k, v),
                        |tx, o| committed.lock().unwrap().output(tx, o),
                        std::thread::yield_now,
                    )
                });
            }
        });
        committed.into_inner().unwrap()
    }

    /// Executes `p` as transaction `version.tx` through `block`'s memory, over the base state
    /// `base`.
    pub(crate) fn execute(
        block: &Optimistic<u8, u64>,
        p: &Program,
        version: Version,
        base: impl Fn(u8) -> u64,
    ) -> Executed<u8, u64, u64> {
        let mut reads = block.reads(version.tx);
        let writes = interpret(version.tx, p, |k| {
            value(block.read(&mut reads, &k, || base(k)))
        })
        .unwrap_or_default();
        let output = output(&writes);
        Executed {
            reads,
            writes,
            output,
        }
    }
}

/// Optimistic execution: a block of up to 48 small programs over 1 to 16 keys decoded from the
/// input runs on 2 and 3 threads with the optimistic scheduler, measuring the depth of its
/// read-from graph or not; the final state, every output and the critical path equal
/// sequential execution's, and every transaction ran.
#[cfg(feature = "std")]
pub fn optimistic(data: &[u8]) {
    use crate::sched::optimistic::Optimistic;
    use vm::Program;

    let mut input = Input(data);
    let keys = 1 + input.u8() % 16;
    let n = (input.u8() % 49) as usize;
    let key = |b: u8| b % keys;
    let block: Vec<Program> = (0..n)
        .map(|_| {
            let shape = input.u8();
            Program {
                reads: (0..shape % 4).map(|_| key(input.u8())).collect(),
                writes: (0..(shape >> 2) % 3).map(|_| key(input.u8())).collect(),
                extra: key(input.u8()),
            }
        })
        .collect();
    for (threads, measured) in [(2, true), (2, false), (3, false)] {
        let mut stm: Optimistic<u8, u64> = Optimistic::new(block.len());
        stm.measure_depth(measured);
        let committed = vm::run(&stm, &block, threads, || {});
        let done = stm.finish();
        let what = alloc::format!("{threads} threads, depth measured: {measured}");
        vm::assert_sequential(&block, &committed, &done, measured, &what);
    }
}

/// CosmWasm's untrusted JSON and inputs: a transaction's input ([`CwInput`]), an entry
/// point's result (`ContractResult<Response>` with its messages and submessages), a query's
/// result, a contract's query request and a `reply` argument, each parsed from the input with
/// its bounds. Each parse gives a value or an error, never a panic; an input that decodes
/// encodes back to the same value, and a response re-serialized parses to itself.
///
/// [`CwInput`]: crate::cosmwasm::tx::CwInput
pub fn cosmwasm_messages(data: &[u8]) {
    use crate::cosmwasm::tx::CwInput;
    use crate::cosmwasm::types::{self, ContractResult, QueryRequest, Reply};
    let mut input = Input(data);
    let which = input.u8();
    let rest = input.rest();
    match which % 5 {
        0 => {
            if let Ok(decoded) = CwInput::decode(rest) {
                let again = decoded.encode().expect("a decoded input encodes");
                assert_eq!(CwInput::decode(&again), Ok(decoded));
            }
        }
        1 => {
            if let Ok(ContractResult::Ok(response)) = types::parse_response(rest) {
                // Supported messages serialize, and read back the same.
                if response
                    .messages
                    .iter()
                    .all(|m| m.msg.unsupported().is_none())
                {
                    let json = types::to_json(&ContractResult::Ok(response.clone()))
                        .expect("a supported response serializes");
                    assert_eq!(
                        types::parse_response(&json),
                        Ok(ContractResult::Ok(response))
                    );
                }
            }
        }
        2 => {
            let _ = types::parse_query_result(rest);
        }
        3 => {
            if let Ok(q) = types::parse_bounded::<QueryRequest>(rest) {
                let _ = q.unsupported();
            }
        }
        _ => {
            if let Ok(reply) = types::parse_bounded::<Reply>(rest) {
                let json = types::to_json(&reply).expect("a reply serializes");
                assert_eq!(types::parse_bounded::<Reply>(&json), Ok(reply));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// splitmix64: a deterministic source of seeded inputs.
    fn rng(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Inputs of every size up to `max`, some random, some repetitive (compressible).
    fn inputs(seed: u64, count: usize, max: usize) -> Vec<Vec<u8>> {
        let mut s = seed;
        (0..count)
            .map(|i| {
                let len = (rng(&mut s) as usize) % max;
                let period = 1 + (rng(&mut s) as usize) % 64;
                (0..len)
                    .map(|j| {
                        if i % 2 == 0 {
                            rng(&mut s) as u8
                        } else {
                            (j % period) as u8 ^ rng(&mut s).is_multiple_of(4) as u8
                        }
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn record_decode_on_seeded_inputs() {
        for data in inputs(1, 300, 6000) {
            record_decode(&data);
        }
    }

    #[test]
    fn record_reseal_on_seeded_inputs() {
        for data in inputs(6, 300, 3000) {
            record_reseal(&data);
        }
    }

    /// Every edge number written over every field in the first bytes of every stored value
    /// (where the counts, sizes and sequence numbers are), of a store holding a contract, a
    /// chunked blob and its update (sharing chunks).
    #[test]
    fn record_reseal_at_every_field_edge() {
        // A compressible contract, then incompressible bytes for the blobs to chunk.
        let mut body: Vec<u8> = (0..1000).map(|i| (i % 61) as u8).collect();
        body.extend_from_slice(&crate::testing::noise(7, 11_000));
        let mode = 0x20;
        let (kv, config, originals) = build_store(mode, 1000, &body);
        // Every value but the chunks, of which one held once and one held twice.
        let mut counts = Vec::new();
        let targets = kv.entries().iter().enumerate().filter(|(_, (k, v))| {
            let count = v[SEAL_LEN];
            let first = k[0] != crate::store::format::tag::CHUNK || !counts.contains(&count);
            counts.push(count);
            first
        });
        let targets: Vec<usize> = targets.map(|(i, _)| i).collect();
        assert_eq!(
            targets.len(),
            6,
            "a store of three records, M and two chunks: {counts:?}"
        );
        for &target in &targets {
            for position in 0..8 {
                for edge in 0..EDGES.len() as u32 {
                    let mut damaged = kv.clone();
                    damage(&mut damaged, target, [6, position, edge], &[]);
                    use_damaged(damaged, config.clone(), &originals, mode);
                }
            }
        }
    }

    #[test]
    fn delta_apply_on_seeded_inputs() {
        for data in inputs(2, 500, 4000) {
            delta_apply(&data);
        }
        // Valid frames, then every truncation and a bit flip at every position of one of them.
        let content: Vec<u8> = (0..3000u32)
            .map(|i| (i % 251) as u8 ^ (i / 700) as u8)
            .collect();
        let frame = ruzstd::encoding::compress_to_vec(
            &content[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let mut data = vec![0u8];
        data.extend_from_slice(&(content.len() as u16).to_le_bytes());
        data.extend_from_slice(&0u16.to_le_bytes());
        let header = data.len();
        data.extend_from_slice(&frame);
        delta_apply(&data);
        for cut in header..data.len() {
            delta_apply(&data[..cut]);
        }
        for at in header..data.len() {
            for bit in [0, 3, 7] {
                let mut d = data.clone();
                d[at] ^= 1 << bit;
                delta_apply(&d);
            }
        }
    }

    #[test]
    fn chunking_on_seeded_inputs() {
        for data in inputs(3, 200, 100_000) {
            chunking(&data);
        }
    }

    #[test]
    fn optimistic_on_seeded_inputs() {
        for data in inputs(5, 200, 200) {
            optimistic(&data);
        }
    }

    #[test]
    fn instrument_on_seeded_inputs() {
        // Random bytes behind a valid header, and valid modules with bytes flipped.
        let valid = wat::parse_str(
            r#"(module (memory (export "memory") 1)
                (func (export "f") (param i32) (result i32)
                    loop local.get 0 i32.const 1 i32.sub local.tee 0 br_if 0 end
                    local.get 0 f32.convert_i32_s f32.const 2 f32.div i32.trunc_sat_f32_s))"#,
        )
        .unwrap();
        instrument(&valid);
        for (n, data) in inputs(4, 300, 600).into_iter().enumerate() {
            let mut module = b"\0asm\x01\0\0\0".to_vec();
            module.extend_from_slice(&data);
            instrument(&module);
            let mut flipped = valid.clone();
            let at = n % flipped.len();
            flipped[at] ^= data.first().copied().unwrap_or(1) | 1;
            instrument(&flipped);
        }
    }

    #[test]
    fn cosmwasm_messages_on_seeded_inputs() {
        let samples: [&[u8]; 6] = [
            b"\x01{\"ok\":{\"messages\":[{\"id\":1,\"msg\":{\"bank\":{\"send\":{\"to_address\":\"a\",\"amount\":[{\"denom\":\"x\",\"amount\":\"5\"}]}}},\"gas_limit\":null,\"reply_on\":\"always\"}],\"attributes\":[],\"events\":[],\"data\":null}}",
            b"\x01{\"error\":\"no\"}",
            b"\x00\x00\x01\x00\x05earth\x07\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00{}",
            b"\x03{\"wasm\":{\"smart\":{\"contract_addr\":\"c\",\"msg\":\"e30=\"}}}",
            b"\x04{\"id\":3,\"payload\":\"\",\"gas_used\":7,\"result\":{\"error\":\"x\"}}",
            b"\x02{\"ok\":\"e30=\"}",
        ];
        for sample in samples {
            cosmwasm_messages(sample);
            for cut in 0..sample.len() {
                cosmwasm_messages(&sample[..cut]);
            }
        }
        for data in inputs(6, 100, 300) {
            cosmwasm_messages(&data);
        }
    }
}
