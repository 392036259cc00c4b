//! loom models of the claim/finish protocol: every interleaving (up to three preemptions) of
//! two or three workers runs each transaction exactly once, after all of its dependencies.

use super::*;
use loom::sync::Arc;
use loom::sync::atomic::AtomicU32;

fn set(reads: &[u8], writes: &[u8]) -> AccessSet {
    AccessSet {
        reads: reads.iter().map(|k| alloc::vec![*k]).collect(),
        writes: writes.iter().map(|k| alloc::vec![*k]).collect(),
    }
}

/// Runs `block` on `workers` loom threads; checks every transaction ran once, after its
/// dependencies finished.
fn model(block: alloc::vec::Vec<AccessSet>, workers: usize) {
    // Bounded preemption keeps the search small enough for CI; every bug loom has found in
    // practice needs at most two or three preemptions.
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(move || {
        let dag = Arc::new(Dag::build(&block));
        let n = dag.len();
        // 0: not run; 1: running; 2: finished.
        let states: Arc<alloc::vec::Vec<AtomicU32>> =
            Arc::new((0..n).map(|_| AtomicU32::new(0)).collect());
        let claims = Arc::new(ClaimsOwned::new(dag.clone()));
        let handles: alloc::vec::Vec<_> = (0..workers)
            .map(|_| {
                let (dag, states, claims) = (dag.clone(), states.clone(), claims.clone());
                loom::thread::spawn(move || {
                    claims.get().drain(
                        |tx| {
                            // Every dependency has finished.
                            for before in 0..tx {
                                if dag.dependents(before).contains(&tx) {
                                    assert_eq!(states[before as usize].load(Ordering::Acquire), 2);
                                }
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

/// `Claims` borrows its DAG; loom threads need `'static`, so the model leaks one per run
/// (a few bytes per explored interleaving, in a test).
struct ClaimsOwned(&'static Claims<'static>);

impl ClaimsOwned {
    fn new(dag: Arc<Dag>) -> Self {
        let dag: &'static Dag = alloc::boxed::Box::leak(alloc::boxed::Box::new((*dag).clone()));
        ClaimsOwned(alloc::boxed::Box::leak(alloc::boxed::Box::new(
            Claims::new(dag),
        )))
    }
    fn get(&self) -> &Claims<'static> {
        self.0
    }
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
    );
}

#[test]
fn loom_chain_and_independent_three_workers() {
    model(
        alloc::vec![set(&[], &[1]), set(&[1], &[1]), set(&[], &[9])],
        3,
    );
}
