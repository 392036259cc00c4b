//! loom models of the claim/finish protocol: every interleaving (up to three preemptions) of
//! two workers runs each transaction exactly once, after all of its dependencies. (With three
//! workers, two of them spinning at once make interleavings longer than loom can follow; the
//! property tests run three and four.)

use super::*;
use loom::sync::Arc;
use loom::sync::atomic::AtomicU32;

fn set(reads: &[u8], writes: &[u8]) -> AccessSet {
    AccessSet {
        reads: reads.iter().map(|k| alloc::vec![*k]).collect(),
        writes: writes.iter().map(|k| alloc::vec![*k]).collect(),
    }
}

/// Runs `block` on `workers` loom threads, in both strategies; checks every transaction ran
/// once, after its dependencies finished.
fn model(block: alloc::vec::Vec<AccessSet>, workers: usize, preemptions: usize) {
    model_in(block.clone(), workers, preemptions, Strategy::Runs);
    model_in(block, workers, preemptions, Strategy::Ready);
}

/// [`model`] in `strategy`.
fn model_in(
    block: alloc::vec::Vec<AccessSet>,
    workers: usize,
    preemptions: usize,
    strategy: Strategy,
) {
    // `Claims` borrows its graph and loom threads need `'static`: one graph, leaked, serves
    // every explored interleaving.
    let dag: &'static Dag = alloc::boxed::Box::leak(alloc::boxed::Box::new(Dag::build(&block)));
    // Bounded preemption keeps the search small enough for CI; every bug loom has found in
    // practice needs at most two or three preemptions.
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(preemptions);
    builder.check(move || {
        let n = dag.len();
        // 0: not run; 1: running; 2: finished.
        let states: Arc<alloc::vec::Vec<AtomicU32>> =
            Arc::new((0..n).map(|_| AtomicU32::new(0)).collect());
        let claims = Arc::new(Claims::with(dag, 0, workers, strategy));
        let handles: alloc::vec::Vec<_> = (0..workers)
            .map(|worker| {
                let (states, claims) = (states.clone(), claims.clone());
                loom::thread::spawn(move || {
                    claims.drain(
                        worker,
                        |tx| {
                            for before in dag.dependencies(tx) {
                                assert_eq!(states[*before as usize].load(Ordering::Acquire), 2);
                            }
                            assert_eq!(
                                states[tx as usize].swap(1, Ordering::AcqRel),
                                0,
                                "ran twice"
                            );
                            states[tx as usize].store(2, Ordering::Release);
                        },
                        loom::thread::yield_now,
                    )
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        for s in states.iter() {
            assert_eq!(s.load(Ordering::Acquire), 2);
        }
    });
}

#[test]
fn loom_diamond_two_workers() {
    // 0 and 1 independent; 2 reads what both wrote; 3 writes what 2 read.
    model(
        alloc::vec![
            set(&[], &[1]),
            set(&[], &[2]),
            set(&[1, 2], &[]),
            set(&[], &[1])
        ],
        2,
        3,
    );
}

#[test]
fn loom_chain_and_independent_two_workers() {
    model(
        alloc::vec![set(&[], &[1]), set(&[1], &[1]), set(&[], &[9])],
        2,
        3,
    );
}

/// One transaction makes two ready at once, in its worker's queue: the other worker takes one.
#[test]
fn loom_fan_out_is_shared_two_workers() {
    model(
        alloc::vec![set(&[], &[1]), set(&[1], &[2]), set(&[1], &[3])],
        2,
        3,
    );
}

/// The optimistic scheduler and multi-version memory on `workers` loom threads: every
/// interleaving (up to two preemptions) ends with the state and outputs of sequential
/// execution. Transaction `i` reads `reads[i]` and writes their sum plus `i + 1` to
/// `writes[i]`; it also writes key 9 when what it read is odd (a write set that changes between
/// executions). `measured`: whether the block measures its depth, which sends every read
/// through the multi-version memory; unmeasured, an execution that begins with every earlier
/// transaction committed reads the base state directly and commits at once (the fast path of
/// hosts).
fn optimistic_model(
    reads: &'static [&'static [u8]],
    writes: &'static [u8],
    workers: usize,
    measured: bool,
) {
    use super::optimistic::{Executed, Optimistic};
    use alloc::collections::BTreeMap;
    use alloc::vec::Vec;

    fn run(
        tx: usize,
        reads: &[u8],
        write: u8,
        mut read: impl FnMut(u8) -> Option<u64>,
    ) -> Option<Vec<(u8, u64)>> {
        let mut sum = 0u64;
        for k in reads {
            sum += read(*k)?;
        }
        let mut out = alloc::vec![(write, sum + tx as u64 + 1)];
        if sum % 2 == 1 && write != 9 {
            out.push((9, sum));
        }
        Some(out)
    }
    let mut expected = BTreeMap::new();
    let mut outputs = Vec::new();
    for tx in 0..writes.len() {
        let w = run(tx, reads[tx], writes[tx], |k| {
            Some(*expected.get(&k).unwrap_or(&0))
        })
        .unwrap();
        outputs.push(w.len() as u64);
        expected.extend(w);
    }

    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(2);
    builder.check(move || {
        let mut stm: Optimistic<u8, u64> = Optimistic::new(writes.len());
        stm.measure_depth(measured);
        let stm = Arc::new(stm);
        // The host's base state, which commits write to, and the outputs in commit order.
        let committed = Arc::new(loom::sync::Mutex::new(
            crate::fuzzing::vm::Committed::default(),
        ));
        let handles: Vec<_> = (0..workers)
            .map(|worker| {
                let (stm, committed) = (stm.clone(), committed.clone());
                loom::thread::spawn(move || {
                    stm.work(
                        worker,
                        |v| {
                            let tx = v.tx as usize;
                            let mut set = stm.reads(v.tx);
                            let w = run(tx, reads[tx], writes[tx], |k| {
                                let base = || committed.lock().unwrap().base(k);
                                crate::fuzzing::vm::value(stm.read(&mut set, &k, base))
                            })
                            .unwrap_or_default();
                            let output = w.len() as u64;
                            Executed {
                                reads: set,
                                writes: w,
                                output,
                            }
                        },
                        |k, v| committed.lock().unwrap().write(*k, v),
                        |tx, o| committed.lock().unwrap().output(tx, o),
                        loom::thread::yield_now,
                    )
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        Arc::try_unwrap(stm).expect("workers joined").finish();
        let committed = committed.lock().unwrap();
        assert_eq!(committed.state, expected);
        assert_eq!(committed.outputs, outputs);
    });
}

#[test]
fn loom_optimistic_chain_two_workers() {
    // 0 writes 1; 1 reads 1 and writes 2; 2 reads 2 (and 1) and writes 1.
    for measured in [true, false] {
        optimistic_model(&[&[], &[1], &[1, 2]], &[1, 2, 1], 2, measured);
    }
}

#[test]
fn loom_optimistic_independent_and_dependent_two_workers() {
    for measured in [true, false] {
        optimistic_model(&[&[5], &[1], &[5]], &[5, 1, 2], 2, measured);
    }
}
