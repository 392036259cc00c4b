//! The shared corpus of real contracts through the std host: every file restored byte-identical,
//! upgrades stored as deltas smaller than their zstd -19 frames, and a store that verifies.
//!
//! Needs `../shared/corpus` (or `SYNOR_CORPUS`); says so on stderr when it is missing.

use std::collections::HashMap;

use synor_core::digest::Digest;
use synor_core::host::Level;
use synor_core::store::{RecordKind, StoreConfig};
use synor_tests::corpus_dir;

#[test]
fn corpus_round_trips_through_the_std_host() {
    let Some(dir) = corpus_dir() else { return };
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read corpus") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "wasm") {
                let name = path
                    .strip_prefix(&dir)
                    .expect("inside")
                    .to_string_lossy()
                    .into_owned();
                files.push((name, std::fs::read(&path).expect("read file")));
            }
        }
    }
    files.sort();
    assert!(
        files.len() >= 200,
        "only {} files in {}",
        files.len(),
        dir.display()
    );
    let pairs: Vec<(String, String)> = std::fs::read_to_string(dir.join("PAIRS.tsv"))
        .expect("pairs")
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 3).then(|| (f[1].to_string(), f[2].to_string()))
        })
        .collect();
    // A third of the corpus keeps the test fast at the balanced level: every pair whose files
    // both fall in it, and every file of it.
    let chosen: Vec<&(String, Vec<u8>)> = files.iter().step_by(3).collect();
    let bytes: HashMap<&str, &[u8]> = chosen.iter().map(|(n, b)| (n.as_str(), &b[..])).collect();
    let tmp = tempfile::tempdir().expect("temporary directory");
    let config = StoreConfig {
        level: Level::Balanced,
        ..StoreConfig::default()
    };
    let mut store = synor_host_std::open_store(tmp.path(), config.clone()).expect("open");
    let mut ids = HashMap::new();
    for (name, b) in &chosen {
        ids.insert(name.as_str(), store.put(b).expect("put").id);
    }
    let mut deltas = 0;
    let mut upgrades = Vec::new();
    for (old, new) in &pairs {
        let (Some(old_id), Some(new_bytes)) = (ids.get(old.as_str()), bytes.get(new.as_str()))
        else {
            continue;
        };
        // Put the new version again as an upgrade of the old one: it is already stored, so
        // store a fresh copy by appending a custom section-like tail that makes it new.
        let mut upgraded = new_bytes.to_vec();
        upgraded.extend_from_slice(b"\0\x05synor");
        let r = store.put_upgrade(old_id, &upgraded).expect("upgrade");
        if r.kind == RecordKind::Delta {
            deltas += 1;
            let z19 = zstd_19_len(&upgraded);
            assert!(
                r.stored_bytes < z19 as u64,
                "{new}: {} >= {z19}",
                r.stored_bytes
            );
        }
        upgrades.push((r.id, upgraded));
    }
    assert!(deltas > 0);
    drop(store);
    let store = synor_host_std::open_store(tmp.path(), config).expect("reopen");
    let restored = chosen
        .iter()
        .map(|(name, b)| (name.as_str(), ids[name.as_str()], &b[..]))
        .chain(upgrades.iter().map(|(id, b)| ("an upgrade", *id, &b[..])));
    for (name, id, b) in restored {
        let got = store.get(&id).expect("get");
        assert!(
            got == b,
            "{name}: restored {} bytes, digest {}",
            got.len(),
            Digest::of(&got)
        );
    }
    let report = store.verify(true).expect("verify");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

fn zstd_19_len(bytes: &[u8]) -> usize {
    // The store's own compressor at the maximum level without references: what a file alone
    // costs, the bar a delta must clear.
    use synor_core::host::{Compressor, Reference};
    synor_host_std::ZstdCompressor::default()
        .compress(bytes, Level::Maximum, Reference::default())
        .expect("compress")
        .len()
}
