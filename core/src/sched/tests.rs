use super::*;
use alloc::collections::BTreeMap;
use alloc::string::ToString;
use std::sync::Mutex;

fn set(reads: &[u8], writes: &[u8]) -> AccessSet {
    AccessSet {
        reads: reads.iter().map(|k| vec![*k]).collect(),
        writes: writes.iter().map(|k| vec![*k]).collect(),
    }
}

/// splitmix64.
fn rng(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn random_block(seed: u64, n: usize, keys: u64) -> Vec<AccessSet> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            let r = (rng(&mut s) % 4) as usize;
            let w = (rng(&mut s) % 3) as usize;
            AccessSet {
                reads: (0..r)
                    .map(|_| (rng(&mut s) % keys).to_le_bytes().to_vec())
                    .collect(),
                writes: (0..w)
                    .map(|_| (rng(&mut s) % keys).to_le_bytes().to_vec())
                    .collect(),
            }
        })
        .collect()
}

#[test]
fn edges_follow_conflicts() {
    let block = [
        set(&[1], &[]),    // 0 reads 1
        set(&[1], &[]),    // 1 reads 1: no edge to 0
        set(&[], &[1]),    // 2 writes 1: after both readers
        set(&[1], &[2]),   // 3 reads 1 (after 2), writes 2
        set(&[], &[2, 2]), // 4 writes 2 twice: after 3 once
        set(&[5], &[5]),   // 5 reads and writes 5: nothing before
        set(&[], &[]),     // 6 touches nothing
    ];
    let dag = Dag::build(&block);
    assert_eq!(dag.dependents(0), [2]);
    assert_eq!(dag.dependents(1), [2]);
    assert_eq!(dag.dependents(2), [3]);
    assert_eq!(dag.dependents(3), [4]);
    let none: &[u32] = &[];
    assert_eq!(
        (0..7).map(|t| dag.dependencies(t)).collect::<Vec<_>>(),
        [none, none, &[0, 1], &[2], &[3], none, none]
    );
    assert_eq!(dag.edges(), 4);
    assert_eq!(
        dag.batches(),
        vec![vec![0, 1, 5, 6], vec![2], vec![3], vec![4]]
    );
}

/// Whether `a` reaches `b` in the graph.
fn reaches(dag: &Dag, a: u32, b: u32) -> bool {
    let mut stack = vec![a];
    let mut seen = alloc::collections::BTreeSet::new();
    while let Some(x) = stack.pop() {
        if x == b {
            return true;
        }
        for d in dag.dependents(x) {
            if *d <= b && seen.insert(*d) {
                stack.push(*d);
            }
        }
    }
    false
}

#[test]
fn every_conflict_is_ordered_and_no_more() {
    for seed in 0..40 {
        let block = random_block(seed, 60, 1 + seed % 12);
        let dag = Dag::build(&block);
        for j in 0..block.len() {
            for i in 0..j {
                if block[i].conflicts(&block[j]) {
                    assert!(reaches(&dag, i as u32, j as u32), "seed {seed}: {i} -> {j}");
                }
            }
            // Direct edges only between conflicting transactions.
            for d in dag.dependents(j as u32) {
                assert!(block[j].conflicts(&block[*d as usize]));
            }
        }
        // Batches: no conflicts inside; together, every transaction once.
        let batches = dag.batches();
        let mut all: Vec<u32> = batches.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..block.len() as u32).collect::<Vec<_>>());
        for b in &batches {
            for (x, i) in b.iter().enumerate() {
                for j in &b[x + 1..] {
                    assert!(!block[*i as usize].conflicts(&block[*j as usize]));
                }
            }
        }
    }
}

/// A transaction of the test machine: reads its keys, writes a function of what it read and
/// of its index to each key it writes.
fn apply(tx: u32, set: &AccessSet, state: &mut dyn FnMut(&[u8], Option<u64>) -> u64) {
    let mut acc = u64::from(tx).wrapping_mul(0x9E37_79B9);
    for k in set.reads.iter().chain(&set.writes) {
        acc = acc.rotate_left(7) ^ state(k, None);
    }
    for k in &set.writes {
        state(k, Some(acc));
        acc = acc.wrapping_add(1);
    }
}

fn sequential(block: &[AccessSet]) -> BTreeMap<Vec<u8>, u64> {
    let mut state: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    for (i, set) in block.iter().enumerate() {
        apply(i as u32, set, &mut |k, w| match w {
            None => state.get(k).copied().unwrap_or(0),
            Some(v) => {
                state.insert(k.to_vec(), v);
                v
            }
        });
    }
    state
}

#[test]
fn parallel_drain_equals_sequential() {
    for seed in 0..30 {
        let keys = [1, 2, 5, 50, 1000][seed as usize % 5];
        let block = random_block(seed, 200, keys);
        let dag = Dag::build(&block);
        for (threads, strategy) in [1, 2, 3, 4]
            .into_iter()
            .flat_map(|t| [(t, Strategy::Runs), (t, Strategy::Ready)])
        {
            let claims = Claims::with(&dag, 0, threads, strategy);
            let state: Mutex<BTreeMap<Vec<u8>, u64>> = Mutex::new(BTreeMap::new());
            let order = Mutex::new(Vec::new());
            std::thread::scope(|s| {
                for worker in 0..threads {
                    let (claims, order, state, block) = (&claims, &order, &state, &block);
                    s.spawn(move || {
                        claims.drain(
                            worker,
                            |tx| {
                                order.lock().unwrap().push(tx);
                                apply(tx, &block[tx as usize], &mut |k, w| {
                                    let mut st = state.lock().unwrap();
                                    match w {
                                        None => st.get(k).copied().unwrap_or(0),
                                        Some(v) => {
                                            st.insert(k.to_vec(), v);
                                            v
                                        }
                                    }
                                });
                            },
                            std::thread::yield_now,
                        )
                    });
                }
            });
            let order = order.into_inner().unwrap();
            let what = alloc::format!("seed {seed}, {threads} threads, {strategy:?}");
            assert_eq!(order.len(), block.len(), "{what}");
            assert_eq!(state.into_inner().unwrap(), sequential(&block), "{what}");
        }
    }
}

#[test]
fn fully_conflicting_block_is_a_chain() {
    let block: Vec<AccessSet> = (0..50).map(|_| set(&[], &[7])).collect();
    let dag = Dag::build(&block);
    assert_eq!(dag.critical_path(), 50);
    let sim = simulate(&dag, &[10; 50], 8, 0);
    assert_eq!(sim.makespan, 500);
    assert!((sim.speedup - 1.0).abs() < 1e-9);
}

#[test]
fn simulation_of_independent_transactions_scales_with_workers() {
    let block: Vec<AccessSet> = (0..64u8).map(|k| set(&[], &[k])).collect();
    let dag = Dag::build(&block);
    assert_eq!(dag.edges(), 0);
    for workers in [1, 2, 8, 32, 64, 100] {
        let sim = simulate(&dag, &[100; 64], workers, 0);
        assert_eq!(sim.makespan, 100 * 64usize.div_ceil(workers.min(64)) as u64);
    }
    // A slow transaction holds back only itself: no barrier between "batches".
    let mut costs = [10u64; 64];
    costs[0] = 1000;
    let sim = simulate(&dag, &costs, 2, 0);
    assert_eq!(sim.makespan, 1000);
}

#[test]
fn simulation_follows_dependencies() {
    // 0 -> 2, 1 -> 2: 2 starts when both are done.
    let block = [set(&[], &[1]), set(&[], &[2]), set(&[1, 2], &[])];
    let dag = Dag::build(&block);
    let sim = simulate(&dag, &[5, 9, 3], 4, 1);
    assert_eq!(sim.makespan, 10 + 4);
    assert_eq!(sim.total, 17 + 3);
}

#[test]
fn undeclared_transactions_are_barriers() {
    let a = set(&[], &[1]);
    let b = set(&[2], &[]);
    let block = [Some(&a), Some(&b), None, None, Some(&b), Some(&a)];
    let dag = Dag::build_partial(block.into_iter());
    // 2 follows 0 and 1; 3 follows 2; 4 and 5 follow 3 and nothing else (their keys were
    // last touched before the barriers).
    assert_eq!(dag.dependents(0), [2]);
    assert_eq!(dag.dependents(1), [2]);
    assert_eq!(dag.dependents(2), [3]);
    assert_eq!(dag.dependents(3), [4, 5]);
    assert_eq!(dag.dependents(4), [] as [u32; 0]);
    assert_eq!(
        dag.batches(),
        vec![vec![0, 1], vec![2], vec![3], vec![4, 5]]
    );
    // A block of undeclared transactions is a chain.
    let dag = Dag::build_partial([None, None, None].into_iter());
    assert_eq!(dag.critical_path(), 3);
}

#[test]
fn claims_after_a_prefix_run_the_rest_once_after_its_dependencies() {
    for seed in 0..10u64 {
        let block = random_block(seed, 200, 8);
        let dag = Dag::build(&block);
        for (done, strategy) in [0, 1, 57, 199, 200]
            .into_iter()
            .flat_map(|d| [(d, Strategy::Runs), (d, Strategy::Ready)])
        {
            let claims = Claims::with(&dag, done, 1, strategy);
            let mut ran = [false; 200];
            ran[..done].iter_mut().for_each(|r| *r = true);
            claims.drain(
                0,
                |tx| {
                    assert!(!ran[tx as usize], "{tx} twice");
                    for before in 0..tx {
                        if dag.dependents(before).contains(&tx) {
                            assert!(ran[before as usize], "{before} before {tx}");
                        }
                    }
                    ran[tx as usize] = true;
                },
                || {},
            );
            assert!(
                ran.iter().all(|r| *r),
                "seed {seed}, {done} done, {strategy:?}"
            );
        }
    }
}

/// Runs where dependencies are far apart, ready queues where they are near.
#[test]
fn the_strategy_follows_how_near_dependencies_are() {
    // Every transaction writes its own key, and every third also the key of the one 100 before.
    let far: Vec<AccessSet> = (0..2000u32)
        .map(|i| {
            let mut writes = vec![i.to_le_bytes().to_vec()];
            if i % 3 == 0 && i >= 100 {
                writes.push((i - 100).to_le_bytes().to_vec());
            }
            AccessSet {
                reads: Vec::new(),
                writes,
            }
        })
        .collect();
    let dag = Dag::build(&far);
    assert_eq!(Strategy::for_graph(&dag, 0, 2), Strategy::Runs);
    // On few keys, nearly every transaction waits for one just before it.
    let near = random_block(3, 2000, 20);
    let dag = Dag::build(&near);
    assert_eq!(Strategy::for_graph(&dag, 0, 2), Strategy::Ready);
    assert_eq!(Claims::new(&dag, 2).strategy(), Strategy::Ready);
}

/// `count` keys of `n` bytes: eight random bytes (from `seed`), zero-padded to `n`.
fn keys(count: usize, n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut s = seed;
    (0..count)
        .map(|_| {
            let mut k = rng(&mut s).to_le_bytes().to_vec();
            k.resize(n, 0);
            k
        })
        .collect()
}

/// Sets at the bounds pass; one key or one byte past them fails, saying which.
#[test]
fn access_sets_over_the_bounds_are_refused() {
    let at = AccessSet {
        reads: keys(MAX_ACCESS_KEYS / 2, 8, 1),
        writes: keys(MAX_ACCESS_KEYS / 2, 8, 2),
    };
    assert_eq!(at.check(), Ok(()));
    let mut over = at.clone();
    over.reads.push(vec![0]);
    let e = AccessIndex::new(&over).unwrap_err();
    assert_eq!(
        e,
        AccessSetError::TooManyKeys {
            keys: MAX_ACCESS_KEYS + 1
        }
    );
    assert_eq!(
        e.to_string(),
        "access_set_too_large: 1025 keys declared, at most 1024"
    );
    let big = MAX_ACCESS_KEY_BYTES / 4;
    let mut bytes = AccessSet {
        reads: keys(2, big, 3),
        writes: keys(2, big, 4),
    };
    assert_eq!(bytes.check(), Ok(()));
    bytes.writes[0].push(0);
    assert_eq!(
        bytes.check(),
        Err(AccessSetError::TooManyKeyBytes {
            bytes: MAX_ACCESS_KEY_BYTES + 1
        })
    );
    assert_eq!(e.name(), "access_set_too_large");
}

/// An index answers as the set's own scans do, for sets small (scanned) and large (searched),
/// with keys declared twice, read and written, prefixes of each other, and absent.
#[test]
fn access_index_answers_as_the_set() {
    let mut s = 7u64;
    for n in [0, 1, 3, SCAN, SCAN + 1, 40, 300] {
        for _ in 0..8 {
            // Keys of 0 to 3 bytes over a small alphabet: many repeats and prefixes.
            let key = |s: &mut u64| {
                let len = (rng(s) % 4) as usize;
                (0..len).map(|_| (rng(s) % 3) as u8).collect::<Vec<u8>>()
            };
            let writes = (rng(&mut s) % (n as u64 + 1)) as usize;
            let set = AccessSet {
                writes: (0..writes).map(|_| key(&mut s)).collect(),
                reads: (writes..n).map(|_| key(&mut s)).collect(),
            };
            let index = AccessIndex::new(&set).unwrap();
            for _ in 0..64 {
                let k = key(&mut s);
                assert_eq!(index.may_read(&set, &k), set.may_read(&k), "{set:?} {k:?}");
                assert_eq!(
                    index.may_write(&set, &k),
                    set.may_write(&k),
                    "{set:?} {k:?}"
                );
            }
        }
    }
}

/// A lookup in a set of the most keys compares a logarithmic number of them, not all.
#[test]
fn access_index_lookups_are_logarithmic() {
    let set = AccessSet {
        reads: keys(MAX_ACCESS_KEYS / 2, 32, 5),
        writes: keys(MAX_ACCESS_KEYS / 2, 32, 6),
    };
    let index = AccessIndex::new(&set).unwrap();
    let absent = vec![0xff; 32];
    for key in set.reads.iter().chain(&set.writes).chain([&absent]) {
        let mut probes = 0;
        let found = index.find(&set, key, &mut probes);
        assert_eq!(found.is_some(), set.may_read(key));
        assert!(probes <= 12, "{probes} keys compared");
    }
}
