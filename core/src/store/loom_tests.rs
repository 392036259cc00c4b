//! loom model of the store's shared caches (decoded records, dictionaries): threads reading
//! through one `&CodeStore` at once, with a cache small enough that each read evicts the other
//! thread's record, always get the right bytes.

use super::*;
use crate::testing::MemKv;
use loom::sync::Arc;

/// Runs `f` on a loom thread with room for compression and decoding (loom's own stacks are
/// too small for them).
fn big_stack<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> loom::thread::JoinHandle<T> {
    loom::thread::Builder::new()
        .stack_size(16 << 20)
        .spawn(f)
        .expect("spawn a loom thread")
}

#[test]
fn loom_concurrent_reads_through_a_small_cache() {
    let a: Vec<u8> = (0..600u32).map(|i| (i % 97) as u8).collect();
    let b: Vec<u8> = (0..600u32).map(|i| (i % 89) as u8 ^ 0x5a).collect();
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(2);
    builder.check(move || {
        let (ea, eb) = (a.clone(), b.clone());
        let (a, b) = (a.clone(), b.clone());
        let (store, ia, ib) = big_stack(move || {
            let config = StoreConfig {
                // Room for one decoded record: every read of the other one evicts it.
                cache_bytes: 700,
                ..StoreConfig::default()
            };
            let mut store = CodeStore::open(MemKv::default(), RuzstdCompressor, config).unwrap();
            let ia = store.put(&a).unwrap().id;
            let ib = store.put(&b).unwrap().id;
            (Arc::new(store), ia, ib)
        })
        .join()
        .unwrap();
        let readers: Vec<_> = [(ia, ib), (ib, ia)]
            .into_iter()
            .map(|(first, second)| {
                let store = store.clone();
                big_stack(move || {
                    let x = store.get(&first).unwrap();
                    let y = store.get(&second).unwrap();
                    (x, y)
                })
            })
            .collect();
        let results: Vec<_> = readers.into_iter().map(|r| r.join().unwrap()).collect();
        assert_eq!(results[0], (ea.clone(), eb.clone()));
        assert_eq!(results[1], (eb, ea));
    });
}
