//! The optimistic scheduler against sequential execution, with the small deterministic "VM" of
//! [`crate::fuzzing::vm`], whose read and write sets depend on the values it reads (so they
//! change between executions, as real contracts' do).

use super::*;
use crate::fuzzing::vm::{Committed, Program, assert_sequential, mix, run};
use alloc::vec;
use core::sync::atomic::AtomicU64;
use proptest::prelude::*;

fn random_block(seed: u64, n: usize, keys: u8) -> Vec<Program> {
    let mut s = seed;
    let mut next = move |m: u64| {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(s, 7) % m
    };
    (0..n)
        .map(|_| Program {
            reads: (0..next(4)).map(|_| next(u64::from(keys)) as u8).collect(),
            writes: (0..next(3)).map(|_| next(u64::from(keys)) as u8).collect(),
            extra: next(u64::from(keys)) as u8,
        })
        .collect()
}

/// Runs `block` optimistically on `threads` threads; some executions are slowed down at random
/// to shake the interleavings.
fn optimistic(
    block: &[Program],
    threads: usize,
    measured: bool,
    seed: u64,
) -> (Committed, Finished) {
    let mut stm: Optimistic<u8, u64> = Optimistic::new(block.len());
    stm.measure_depth(measured);
    let jitter = AtomicU64::new(seed);
    let committed = run(&stm, block, threads, || {
        let j = mix(jitter.fetch_add(1, Ordering::Relaxed), 3);
        for _ in 0..j % 2000 {
            core::hint::spin_loop();
        }
    });
    (committed, stm.finish())
}

/// Runs `block` on `threads` threads, measuring the depth of its read-from graph and not;
/// checks both against sequential execution and returns the measured run's statistics.
fn check(block: &[Program], threads: usize, seed: u64) -> Finished {
    let (committed, unmeasured) = optimistic(block, threads, false, seed);
    let what = alloc::format!("{threads} threads, unmeasured");
    assert_sequential(block, &committed, &unmeasured, false, &what);
    let (committed, done) = optimistic(block, threads, true, seed);
    let what = alloc::format!("{threads} threads");
    assert_sequential(block, &committed, &done, true, &what);
    done
}

#[test]
fn random_blocks_equal_sequential() {
    for seed in 0..40u64 {
        let keys = [1u8, 2, 4, 16, 200][seed as usize % 5];
        let block = random_block(seed, 150, keys);
        for threads in [1, 2, 3, 4] {
            check(&block, threads, seed);
        }
    }
}

#[test]
fn every_transaction_conflicts() {
    // One key, read and written by every transaction: a chain.
    let block: Vec<Program> = (0..200)
        .map(|_| Program {
            reads: vec![0],
            writes: vec![0],
            extra: 0,
        })
        .collect();
    for threads in [2, 4] {
        let done = check(&block, threads, 1);
        assert!(done.critical_path.is_some_and(|c| c > 100));
    }
}

#[test]
fn independent_transactions_execute_once_and_validate_once() {
    let block: Vec<Program> = (0..300u16)
        .map(|i| Program {
            reads: vec![(i % 250) as u8],
            writes: vec![(i % 250) as u8],
            extra: (i % 250) as u8,
        })
        .collect();
    let done = check(&block, 1, 0);
    assert_eq!(done.executions, 300);
    assert_eq!(done.validations, 300);
    // 50 keys are touched twice, 250 transactions apart.
    assert_eq!(done.critical_path, Some(2));
    // Unmeasured, one worker executes every transaction once every earlier one committed:
    // each commits at once, unvalidated.
    let (_, unmeasured) = optimistic(&block, 1, false, 0);
    assert_eq!((unmeasured.executions, unmeasured.validations), (300, 0));
}

#[test]
fn empty_block_is_done() {
    let mut stm: Optimistic<u8, u64> = Optimistic::new(0);
    let committed = run(&stm, &[], 1, || {});
    let done = stm.finish();
    assert!(committed.state.is_empty() && committed.outputs.is_empty());
    assert_eq!(done.critical_path, Some(0));
}

/// What the base state holds for every key in the tests below (no transaction commits there).
const BASE: u64 = 5;

#[test]
fn repeated_read_sees_the_first_value_or_stops() {
    let stm: Optimistic<u8, u64> = Optimistic::new(3);
    let mut r0 = stm.reads(0);
    assert_eq!(stm.read(&mut r0, &7, || BASE), Read::Value(BASE));
    let mut rec = [(); 3].map(|_| Recorded::default());
    stm.record(
        Version {
            tx: 0,
            incarnation: 0,
        },
        r0,
        vec![(7, 70)],
        0u64,
        &mut rec[0],
    );
    let mut r2 = stm.reads(2);
    assert_eq!(stm.read(&mut r2, &7, || BASE), Read::Value(70));
    let mut r1 = stm.reads(1);
    assert_eq!(stm.read(&mut r1, &7, || BASE), Read::Value(70));
    // Transaction 1 writes 7 now: transaction 2's execution, which saw 0's write, is void at
    // its next read of 7.
    stm.record(
        Version {
            tx: 1,
            incarnation: 0,
        },
        r1,
        vec![(7, 71)],
        0,
        &mut rec[1],
    );
    assert_eq!(stm.read(&mut r2, &7, || BASE), Read::Blocked);
    assert!(r2.is_blocked());
    stm.record(
        Version {
            tx: 2,
            incarnation: 0,
        },
        r2,
        Vec::new(),
        0,
        &mut rec[2],
    );
    assert!(
        !stm.validate(2, &rec[2]),
        "2 read 0's write, and 1 wrote the key since"
    );
    stm.convert_writes_to_estimates(1, &rec[1]);
    let mut again = stm.reads(2);
    assert_eq!(stm.read(&mut again, &7, || BASE), Read::Blocked);
    assert!(again.is_blocked());
}

/// An execution reading more keys than its read set searches linearly: the set's index finds
/// each key again (a repeated read gives the first answer, or stops the execution when a write
/// changed it since), and validation checks every read.
#[test]
fn many_reads_are_indexed_and_validated() {
    let v = |tx| Version { tx, incarnation: 0 };
    let stm: Optimistic<u8, u64> = Optimistic::new(3);
    let mut rec = [(); 3].map(|_| Recorded::default());
    let evens = (0..40u8).step_by(2).map(|k| (k, u64::from(k) * 10));
    stm.record(v(0), stm.reads(0), evens.collect(), 0u64, &mut rec[0]);
    let mut r2 = stm.reads(2);
    for k in 0..40u8 {
        let first = if k % 2 == 0 {
            Read::Value(u64::from(k) * 10)
        } else {
            Read::Value(BASE)
        };
        assert_eq!(stm.read(&mut r2, &k, || BASE), first, "key {k}");
    }
    assert_eq!(r2.len(), 40);
    // Repeated reads of unchanged keys, from 0's write and from the base state.
    assert_eq!(stm.read(&mut r2, &10, || BASE), Read::Value(100));
    assert_eq!(stm.read(&mut r2, &39, || BASE), Read::Value(BASE));
    assert_eq!(r2.len(), 40, "repeated reads are not kept again");
    // Transaction 1 writes a key 2 read from the base state and one 2 read from 0's write.
    stm.record(v(1), stm.reads(1), vec![(33, 1), (10, 2)], 0, &mut rec[1]);
    assert_eq!(stm.read(&mut r2, &39, || BASE), Read::Value(BASE));
    assert_eq!(stm.read(&mut r2, &33, || BASE), Read::Blocked);
    stm.record(v(2), r2, Vec::new(), 0, &mut rec[2]);
    assert!(
        !stm.validate(2, &rec[2]),
        "the reads of 10 and 33 are stale"
    );
    // Executed again after 1, 2 reads 1's values and validates.
    let mut again = stm.reads(2);
    for k in 0..40u8 {
        let _ = stm.read(&mut again, &k, || BASE);
    }
    assert_eq!(stm.read(&mut again, &33, || BASE), Read::Value(1));
    stm.record(
        Version {
            tx: 2,
            incarnation: 1,
        },
        again,
        Vec::new(),
        0,
        &mut rec[2],
    );
    assert!(stm.validate(2, &rec[2]));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random blocks, random contention, random thread counts.
    #[test]
    fn optimistic_equals_sequential(
        seed in any::<u64>(),
        n in 0usize..120,
        keys in 1u8..40,
        threads in 1usize..5,
    ) {
        let block = random_block(seed, n, keys);
        check(&block, threads, seed);
    }
}

/// One state serves block after block: each, after `reset`, gives its own sequential result,
/// whatever the previous block left (different sizes, keys and contention).
#[test]
fn reset_state_serves_the_next_block() {
    let mut stm: Optimistic<u8, u64> = Optimistic::new(0);
    for (seed, n, keys) in [
        (1u64, 120, 4u8),
        (2, 30, 200),
        (3, 200, 1),
        (4, 0, 3),
        (5, 90, 16),
    ] {
        let block = random_block(seed, n, keys);
        stm.reset(block.len());
        // Measured or not, block after block.
        let measured = seed % 2 == 1;
        stm.measure_depth(measured);
        let committed = run(&stm, &block, 3, || {});
        let done = stm.finish();
        let what = alloc::format!("seed {seed}");
        assert_sequential(&block, &committed, &done, measured, &what);
    }
}

/// A block stopped half-way (a worker's execution failed) leaves its transactions' states
/// mid-block: the next block, larger or smaller, still starts from ready states and gives its
/// sequential result.
#[test]
fn a_halted_block_leaves_nothing_for_the_next() {
    let mut stm: Optimistic<u8, u64> = Optimistic::new(0);
    for (n, next) in [(120, 60), (60, 150)] {
        let block = random_block(7, n, 8);
        stm.reset(block.len());
        let executed = AtomicU64::new(0);
        std::thread::scope(|s| {
            for worker in 0..2 {
                let (stm, block, executed) = (&stm, &block, &executed);
                s.spawn(move || {
                    stm.work(
                        worker,
                        |v| {
                            if executed.fetch_add(1, Ordering::Relaxed) == n as u64 / 2 {
                                stm.halt();
                            }
                            crate::fuzzing::vm::execute(stm, &block[v.tx as usize], v, |_| 0)
                        },
                        |_, _| {},
                        |_, _| {},
                        std::thread::yield_now,
                    )
                });
            }
        });
        assert!(stm.halted());
        let block = random_block(8, next, 8);
        stm.reset(block.len());
        let committed = run(&stm, &block, 2, || {});
        assert_sequential(
            &block,
            &committed,
            &stm.finish(),
            true,
            &alloc::format!("{n} then {next}"),
        );
    }
}
