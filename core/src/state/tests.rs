//! The journal against a stack of `BTreeMap` snapshots, merged scans against a scan of the
//! merged map, and scan records against recomputing which versions they depend on.

use super::*;
use alloc::collections::BTreeSet;
use alloc::vec;
use core::cell::Cell;
use core::ops::RangeBounds;
use proptest::prelude::*;

type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

fn ver(block: u64, tx: u32) -> Version {
    Version {
        block,
        tx,
        incarnation: 0,
    }
}

/// Bytes that meet the edge cases: 0x00 (successor keys), 0xff (prefix ends), 0xfe.
const ALPHABET: [u8; 4] = [0x00, 0x01, 0xfe, 0xff];

/// Every key of up to `len` bytes over [`ALPHABET`], the empty key included.
fn universe(len: usize) -> Vec<Vec<u8>> {
    let mut all = vec![Vec::new()];
    let mut last = vec![Vec::new()];
    for _ in 0..len {
        last = last
            .iter()
            .flat_map(|k: &Vec<u8>| {
                ALPHABET.iter().map(move |b| {
                    let mut k = k.clone();
                    k.push(*b);
                    k
                })
            })
            .collect();
        all.extend(last.iter().cloned());
    }
    all
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(&ALPHABET[..]), 0..4)
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..3)
}

fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        Just(Bound::Unbounded),
        key().prop_map(Bound::Included),
        key().prop_map(Bound::Excluded),
    ]
}

fn direction() -> impl Strategy<Value = Direction> {
    prop_oneof![Just(Direction::Ascending), Just(Direction::Descending)]
}

/// Ranges of random bounds (reversed ones included) and prefix ranges, in both directions.
fn range() -> impl Strategy<Value = Range> {
    let bounds = (bound(), bound()).prop_map(|(s, e)| Range::new(s, e));
    let prefix = key().prop_map(|p| Range::prefix(&p));
    (prop_oneof![bounds, prefix], direction()).prop_map(|(r, d)| r.with_direction(d))
}

/// A base state of random keys, each at its own version.
fn base() -> impl Strategy<Value = MemState> {
    prop::collection::vec((key(), value()), 0..24).prop_map(|entries| {
        let mut state = MemState::new();
        for (tx, (k, v)) in entries.into_iter().enumerate() {
            state.insert(k, v, ver(1, tx as u32));
        }
        state
    })
}

/// The range's membership test, by std's `RangeBounds` (independent of [`Range::contains`]).
fn in_range(range: &Range, key: &[u8]) -> bool {
    (range.start.as_ref(), range.end.as_ref()).contains(&key.to_vec())
}

/// What a scan of `range` must return: the base with `writes` applied, filtered and ordered.
fn model_scan(base: &MemState, writes: &Writes, range: &Range) -> Vec<KeyValue> {
    let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = base
        .iter()
        .map(|(k, e)| (k.to_vec(), e.value.clone()))
        .collect();
    for (k, v) in writes {
        match v {
            Some(v) => merged.insert(k.clone(), v.clone()),
            None => merged.remove(k),
        };
    }
    let mut out: Vec<_> = merged
        .into_iter()
        .filter(|(k, _)| in_range(range, k))
        .collect();
    if range.direction == Direction::Descending {
        out.reverse();
    }
    out
}

fn journal_writes(journal: &Journal) -> Writes {
    journal
        .writes()
        .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
        .collect()
}

fn scan_all<S: OrderedState<Error = core::convert::Infallible>>(
    base: &S,
    journal: &Journal,
    range: &Range,
) -> (Vec<KeyValue>, ScanRecord) {
    let mut scan = Scan::new(base, journal, range.clone());
    let mut out = Vec::new();
    while let Some(kv) = scan.next().unwrap_or_else(|e| match e {}) {
        out.push(kv);
    }
    (out, scan.into_cursor().into_record())
}

#[test]
fn prefix_ranges_hold_exactly_the_keys_with_the_prefix() {
    let keys = universe(4);
    for prefix in universe(2) {
        let range = Range::prefix(&prefix);
        for k in &keys {
            assert_eq!(
                range.contains(k),
                k.starts_with(&prefix),
                "prefix {prefix:?}, key {k:?}"
            );
            assert_eq!(in_range(&range, k), k.starts_with(&prefix));
        }
    }
    assert_eq!(Range::prefix(b"").end, Bound::Unbounded);
    assert_eq!(Range::prefix(b"\xff").end, Bound::Unbounded);
    assert_eq!(Range::prefix(b"\x01\xff").end, Bound::Excluded(vec![2]));
    assert_eq!(
        Range::prefix(b"\xfe\xff\xff").end,
        Bound::Excluded(vec![0xff])
    );
}

#[test]
fn remaining_bounds_hold_the_keys_after_the_position() {
    let keys = universe(3);
    let bounds: Vec<Bound<Vec<u8>>> = core::iter::once(Bound::Unbounded)
        .chain(universe(2).into_iter().map(Bound::Included))
        .chain(universe(2).into_iter().map(Bound::Excluded))
        .collect();
    let afters: Vec<Option<Vec<u8>>> = core::iter::once(None)
        .chain(universe(2).into_iter().map(Some))
        .collect();
    for start in &bounds {
        for end in &bounds {
            for d in [Direction::Ascending, Direction::Descending] {
                let range = Range::new(start.clone(), end.clone()).with_direction(d);
                for after in &afters {
                    let rest = range.remaining(after.as_deref());
                    for k in &keys {
                        let expect = in_range(&range, k)
                            && after.as_ref().is_none_or(|a| range.precedes(a, k));
                        let got = rest.is_some_and(|b| b.contains(k.as_slice()));
                        assert_eq!(got, expect, "{range:?} after {after:?}: key {k:?}");
                    }
                    if let Some((s, e)) = rest {
                        // Never a reversed range (BTreeMap::range would panic).
                        let empty = BTreeMap::<Vec<u8>, ()>::new();
                        let _ = empty.range::<[u8], _>((s, e)).count();
                    }
                }
            }
        }
    }
}

#[test]
fn contains_agrees_with_std() {
    let keys = universe(3);
    for (s, e) in [
        (Bound::Included(vec![1]), Bound::Excluded(vec![1, 0])),
        (Bound::Excluded(vec![]), Bound::Included(vec![0xff])),
        (Bound::Unbounded, Bound::Excluded(vec![])),
        (Bound::Excluded(vec![0xff]), Bound::Unbounded),
    ] {
        let range = Range::new(s, e);
        for k in &keys {
            assert_eq!(range.contains(k), in_range(&range, k), "{range:?} {k:?}");
        }
    }
}

/// What the journal test does, step by step.
#[derive(Clone, Debug)]
enum Op {
    Put(Vec<u8>, Vec<u8>),
    Remove(Vec<u8>),
    Checkpoint,
    RevertInnermost,
    CommitInnermost,
    /// Reverts any checkpoint ever handed out (by index): misuse unless it is the innermost.
    RevertAny(usize),
    CommitAny(usize),
    Get(Vec<u8>),
    Scan(Range, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (key(), value()).prop_map(|(k, v)| Op::Put(k, v)),
        3 => key().prop_map(Op::Remove),
        4 => Just(Op::Checkpoint),
        2 => Just(Op::RevertInnermost),
        2 => Just(Op::CommitInnermost),
        1 => any::<usize>().prop_map(Op::RevertAny),
        1 => any::<usize>().prop_map(Op::CommitAny),
        2 => key().prop_map(Op::Get),
        2 => (range(), 0usize..8).prop_map(|(r, n)| Op::Scan(r, n)),
    ]
}

/// The journal as a stack of snapshots: a checkpoint copies the writes, a revert restores
/// the copy, a commit drops it.
#[derive(Default)]
struct Model {
    writes: Writes,
    /// Open checkpoints: index in `issued`, and the writes when opened.
    open: Vec<(usize, Writes)>,
}

impl Model {
    /// What closing the `i`-th checkpoint issued must answer.
    fn close(&mut self, i: usize, revert: bool) -> Result<(), CheckpointError> {
        match self.open.iter().rposition(|(j, _)| *j == i) {
            None => Err(CheckpointError::NotOpen),
            Some(at) if at + 1 < self.open.len() => Err(CheckpointError::NotInnermost {
                inner: self.open.len() - at - 1,
            }),
            Some(_) => {
                let (_, before) = self.open.pop().unwrap();
                if revert {
                    self.writes = before;
                }
                Ok(())
            }
        }
    }
}

fn run_journal(base: &MemState, ops: &[Op]) {
    let mut journal = Journal::new();
    let mut model = Model::default();
    let mut issued: Vec<Checkpoint> = Vec::new();
    let mut writes_made = 0;
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Put(k, v) => {
                journal.put(k, v.clone());
                model.writes.insert(k.clone(), Some(v.clone()));
                writes_made += 1;
            }
            Op::Remove(k) => {
                journal.remove(k);
                model.writes.insert(k.clone(), None);
                writes_made += 1;
            }
            Op::Checkpoint => {
                model.open.push((issued.len(), model.writes.clone()));
                issued.push(journal.checkpoint());
            }
            Op::RevertInnermost | Op::CommitInnermost => {
                if let Some(&(i, _)) = model.open.last() {
                    let revert = matches!(op, Op::RevertInnermost);
                    let got = if revert {
                        journal.revert(issued[i])
                    } else {
                        journal.commit(issued[i])
                    };
                    assert_eq!(got, model.close(i, revert), "step {step}: {op:?}");
                }
            }
            Op::RevertAny(i) | Op::CommitAny(i) => {
                if !issued.is_empty() {
                    let i = i % issued.len();
                    let revert = matches!(op, Op::RevertAny(_));
                    let got = if revert {
                        journal.revert(issued[i])
                    } else {
                        journal.commit(issued[i])
                    };
                    assert_eq!(got, model.close(i, revert), "step {step}: {op:?}");
                }
            }
            Op::Get(k) => {
                let expect = match model.writes.get(k) {
                    None => Lookup::Untouched,
                    Some(None) => Lookup::Removed,
                    Some(Some(v)) => Lookup::Value(v),
                };
                assert_eq!(journal.get(k), expect, "step {step}: {op:?}");
            }
            Op::Scan(range, n) => {
                let (got, _) = scan_all(base, &journal, range);
                assert_eq!(
                    got,
                    model_scan(base, &model.writes, range),
                    "step {step}: {op:?}"
                );
                // A partial scan returns the first n of them.
                let mut scan = Scan::new(base, &journal, range.clone());
                for expect in got.iter().take(*n) {
                    assert_eq!(scan.next().unwrap().as_ref(), Some(expect));
                }
            }
        }
        assert_eq!(
            journal_writes(&journal),
            model.writes,
            "step {step}: {op:?}"
        );
        assert_eq!(journal.len(), model.writes.len());
        assert_eq!(journal.depth(), model.open.len());
        assert!(journal.undo_len() <= writes_made);
    }
    // Reverting every open checkpoint, innermost first, gives the writes made outside them.
    let outside = model.open.first().map(|(_, w)| w.clone());
    while let Some(&(i, _)) = model.open.last() {
        journal.revert(issued[i]).unwrap();
        model.close(i, true).unwrap();
    }
    if let Some(outside) = outside {
        assert_eq!(journal_writes(&journal), outside);
    }
    // The diff and its digest do not depend on how it was reached.
    let mut direct = Journal::new();
    for (k, v) in journal.writes() {
        match v {
            Some(v) => direct.put(k, v.to_vec()),
            None => direct.remove(k),
        }
    }
    assert_eq!(direct.digest(), journal.digest());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random writes, checkpoints, reverts, commits (in order and out of it), reads and scans.
    #[test]
    fn journal_equals_snapshot_model(
        base in base(),
        ops in prop::collection::vec(op(), 0..200),
    ) {
        run_journal(&base, &ops);
    }

    /// Mostly checkpoints and writes: nesting dozens deep, then unwinding.
    #[test]
    fn deeply_nested_journal_equals_snapshot_model(
        base in base(),
        ops in prop::collection::vec(prop_oneof![
            4 => Just(Op::Checkpoint),
            4 => (key(), value()).prop_map(|(k, v)| Op::Put(k, v)),
            2 => key().prop_map(Op::Remove),
            1 => Just(Op::RevertInnermost),
            1 => Just(Op::CommitInnermost),
            1 => (range(), 0usize..4).prop_map(|(r, n)| Op::Scan(r, n)),
        ], 0..400),
    ) {
        run_journal(&base, &ops);
    }

    /// Merged scans over random bases, writes and ranges equal a scan of the merged map.
    #[test]
    fn merged_scan_equals_model(
        base in base(),
        writes in prop::collection::vec((key(), prop::option::of(value())), 0..16),
        range in range(),
    ) {
        let mut journal = Journal::new();
        for (k, v) in &writes {
            match v {
                Some(v) => journal.put(k, v.clone()),
                None => journal.remove(k),
            }
        }
        let (got, record) = scan_all(&base, &journal, &range);
        prop_assert_eq!(&got, &model_scan(&base, &journal_writes(&journal), &range));
        prop_assert!(record.is_exhausted());
        prop_assert!(record.still_valid(&base).unwrap());
        // Each base key returned is recorded with its version, in scan order.
        let expect: Vec<_> = got
            .iter()
            .filter(|(k, _)| journal.get(k) == Lookup::Untouched)
            .map(|(k, _)| (k.clone(), base.version(k).unwrap().unwrap()))
            .collect();
        let reads: Vec<_> = record.reads().map(|(k, v)| (k.to_vec(), v)).collect();
        prop_assert_eq!(reads, expect);
    }

    /// A cursor with writes, removals and reverts between its steps: each step returns the
    /// first visible key after the last one, as the journal is at that step.
    #[test]
    fn cursor_sees_writes_between_steps(
        base in base(),
        range in range(),
        ops in prop::collection::vec(prop_oneof![
            3 => Just(None),
            2 => (key(), prop::option::of(value())).prop_map(Some),
        ], 0..60),
        revert_at in 0usize..60,
    ) {
        let mut journal = Journal::new();
        let mut cursor = Cursor::new(range.clone());
        let cp = journal.checkpoint();
        let mut last: Option<Vec<u8>> = None;
        let mut done = false;
        for (i, op) in ops.iter().enumerate() {
            if i == revert_at {
                journal.revert(cp).unwrap();
            }
            match op {
                Some((k, Some(v))) => journal.put(k, v.clone()),
                Some((k, None)) => journal.remove(k),
                None => {
                    let expect = if done {
                        None
                    } else {
                        model_scan(&base, &journal_writes(&journal), &range)
                            .into_iter()
                            .find(|(k, _)| last.as_ref().is_none_or(|l| range.precedes(l, k)))
                    };
                    let got = cursor.next(&base, &journal).unwrap();
                    prop_assert_eq!(&got, &expect, "step {}", i);
                    match got {
                        Some((k, _)) => last = Some(k),
                        None => done = true,
                    }
                }
            }
        }
    }

    /// A record is valid against a changed base exactly when every key of the scanned part
    /// that the journal does not hide has the version it had.
    #[test]
    fn record_validity_equals_recomputation(
        base in base(),
        writes in prop::collection::vec((key(), prop::option::of(value())), 0..8),
        range in range(),
        steps in 0usize..12,
        changes in prop::collection::vec((key(), prop::option::of(value())), 1..4),
    ) {
        let mut journal = Journal::new();
        for (k, v) in &writes {
            match v {
                Some(v) => journal.put(k, v.clone()),
                None => journal.remove(k),
            }
        }
        let visible = model_scan(&base, &journal_writes(&journal), &range);
        let mut scan = Scan::new(&base, &journal, range.clone());
        for _ in 0..steps {
            scan.next().unwrap();
        }
        let record = scan.record().clone();
        prop_assert!(record.still_valid(&base).unwrap());
        // The scanned part: nothing, up to the last key returned, or all of the range.
        let scanned = |k: &[u8]| -> bool {
            if steps > visible.len() {
                return in_range(&range, k);
            }
            let Some(last) = steps.checked_sub(1).map(|i| visible[i].0.as_slice()) else {
                return false;
            };
            in_range(&range, k) && !range.precedes(last, k)
        };
        let mut later = base.clone();
        for (i, (k, v)) in changes.iter().enumerate() {
            match v {
                Some(v) => { later.insert(k.clone(), v.clone(), ver(2, i as u32)); }
                None => { later.remove(k); }
            }
        }
        let keys: BTreeSet<Vec<u8>> = base.iter().chain(later.iter()).map(|(k, _)| k.to_vec()).collect();
        let expect = keys.iter().all(|k| {
            !scanned(k)
                || journal.get(k) != Lookup::Untouched
                || base.version(k).unwrap() == later.version(k).unwrap()
        });
        prop_assert_eq!(record.still_valid(&later).unwrap(), expect);
    }

    /// Distinct diffs have distinct digests.
    #[test]
    fn distinct_diffs_have_distinct_digests(
        a in prop::collection::btree_map(key(), prop::option::of(value()), 0..4),
        b in prop::collection::btree_map(key(), prop::option::of(value()), 0..4),
    ) {
        let digest = |m: &Writes| diff_digest(m.iter().map(|(k, v)| (k, v.as_ref())));
        prop_assert_eq!(a == b, digest(&a) == digest(&b));
    }
}

/// The base of the record tests: keys 1..=5 (one byte), each at its own version.
fn five() -> MemState {
    let mut s = MemState::new();
    for k in 1..=5u8 {
        s.insert(vec![k], vec![k * 10], ver(1, u32::from(k)));
    }
    s
}

/// Scans `range` over `five()` (with key 3 removed and key 4 shadowed in the journal) for
/// `steps` steps; the record, and the keys returned.
fn record_of(range: Range, steps: usize) -> (ScanRecord, Vec<Vec<u8>>) {
    let base = five();
    let mut journal = Journal::new();
    journal.remove(&[3]);
    journal.put(&[4], vec![44]);
    let mut scan = Scan::new(&base, &journal, range);
    let mut keys = Vec::new();
    for _ in 0..steps {
        if let Some((k, _)) = scan.next().unwrap() {
            keys.push(k);
        }
    }
    (scan.record().clone(), keys)
}

fn changed(f: impl FnOnce(&mut MemState)) -> MemState {
    let mut s = five();
    f(&mut s);
    s
}

#[test]
fn record_sees_phantoms_removals_and_updates_in_the_scanned_part() {
    let later = ver(2, 0);
    // Ascending, two steps: returns 1 and 2; scanned part is ..=2.
    let (rec, keys) = record_of(Range::all(), 2);
    assert_eq!(keys, [vec![1], vec![2]]);
    assert!(rec.still_valid(&five()).unwrap());
    let phantom = changed(|s| {
        s.insert(vec![1, 0], vec![], later);
    });
    assert!(
        !rec.still_valid(&phantom).unwrap(),
        "insert between 1 and 2"
    );
    let phantom = changed(|s| {
        s.insert(vec![], vec![], later);
    });
    assert!(
        !rec.still_valid(&phantom).unwrap(),
        "insert of the empty key"
    );
    assert!(!rec.still_valid(&changed(|s| drop(s.remove(&[2])))).unwrap());
    let update = changed(|s| {
        s.insert(vec![1], vec![10], later);
    });
    assert!(
        !rec.still_valid(&update).unwrap(),
        "same value, new version"
    );
    // Beyond the stop: valid.
    let beyond = changed(|s| {
        s.insert(vec![2, 0], vec![], later);
        s.insert(vec![5], vec![], later);
        s.remove(&[4]);
    });
    assert!(rec.still_valid(&beyond).unwrap());

    // Three steps pass the removed 3 and the shadowed 4: the base at those keys is hidden.
    let (rec, keys) = record_of(Range::all(), 3);
    assert_eq!(keys, [vec![1], vec![2], vec![4]]);
    let hidden = changed(|s| {
        s.remove(&[3]);
        s.insert(vec![4], vec![], later);
    });
    assert!(rec.still_valid(&hidden).unwrap());
    assert!(!rec.still_valid(&changed(|s| drop(s.remove(&[1])))).unwrap());
    let phantom = changed(|s| {
        s.insert(vec![3, 0], vec![], later);
    });
    assert!(
        !rec.still_valid(&phantom).unwrap(),
        "insert between 3 and 4"
    );
    assert!(rec.still_valid(&changed(|s| drop(s.remove(&[5])))).unwrap());

    // Run to the end: every key of the range counts, past the last one too.
    let (rec, keys) = record_of(Range::all(), 9);
    assert_eq!(keys.len(), 4);
    assert!(rec.is_exhausted());
    let phantom = changed(|s| {
        s.insert(vec![9], vec![], later);
    });
    assert!(
        !rec.still_valid(&phantom).unwrap(),
        "insert after the last key"
    );

    // Nothing scanned: nothing to invalidate.
    let (rec, _) = record_of(Range::all(), 0);
    assert!(rec.still_valid(&MemState::new()).unwrap());
}

#[test]
fn descending_record_sees_its_scanned_part() {
    let later = ver(2, 0);
    // Descending from 5: returns 5 and 4 (the journal's); scanned part is 4..
    let (rec, keys) = record_of(Range::all().descending(), 2);
    assert_eq!(keys, [vec![5], vec![4]]);
    assert!(!rec.still_valid(&changed(|s| drop(s.remove(&[5])))).unwrap());
    let phantom = changed(|s| {
        s.insert(vec![4, 0], vec![], later);
    });
    assert!(!rec.still_valid(&phantom).unwrap());
    let below = changed(|s| {
        s.insert(vec![3, 0xff], vec![], later);
        s.remove(&[1]);
        s.insert(vec![4], vec![], later);
    });
    assert!(rec.still_valid(&below).unwrap());
    // Outside the range, above and below: valid.
    let (rec, keys) = record_of(Range::prefix(&[2]).descending(), 9);
    assert_eq!(keys, [vec![2]]);
    let outside = changed(|s| {
        s.insert(vec![3], vec![], later);
        s.insert(vec![1, 0xff], vec![], later);
    });
    assert!(rec.still_valid(&outside).unwrap());
    let inside = changed(|s| {
        s.insert(vec![2, 0xff, 0xff], vec![], later);
    });
    assert!(!rec.still_valid(&inside).unwrap());
}

#[test]
fn journal_misuse_is_refused_and_changes_nothing() {
    let mut j = Journal::new();
    j.put(b"a", vec![1]);
    let outer = j.checkpoint();
    j.put(b"a", vec![2]);
    let inner = j.checkpoint();
    j.remove(b"a");
    let before = journal_writes(&j);
    assert_eq!(
        j.revert(outer),
        Err(CheckpointError::NotInnermost { inner: 1 })
    );
    assert_eq!(
        j.commit(outer),
        Err(CheckpointError::NotInnermost { inner: 1 })
    );
    assert_eq!(journal_writes(&j), before);
    j.commit(inner).unwrap();
    assert_eq!(j.revert(inner), Err(CheckpointError::NotOpen));
    assert_eq!(j.commit(inner), Err(CheckpointError::NotOpen));
    j.revert(outer).unwrap();
    assert_eq!(j.get(b"a"), Lookup::Value(&[1]));
    assert_eq!(j.revert(outer), Err(CheckpointError::NotOpen));
    assert_eq!(
        j.revert(inner),
        Err(CheckpointError::NotOpen),
        "inside a reverted one"
    );
    assert_eq!(
        journal_writes(&j),
        Writes::from([(b"a".to_vec(), Some(vec![1]))])
    );
    // Cleared, the journal hands out fresh checkpoints; old ones stay closed.
    let stale = j.checkpoint();
    j.clear();
    let fresh = j.checkpoint();
    assert_ne!(stale, fresh);
    assert_eq!(j.revert(stale), Err(CheckpointError::NotOpen));
    j.revert(fresh).unwrap();
    assert!(j.is_empty());
}

#[test]
fn repeated_writes_in_one_frame_take_one_undo_record() {
    let mut j = Journal::new();
    for i in 0..1000u32 {
        j.put(b"counter", i.to_le_bytes().to_vec());
    }
    assert_eq!(j.undo_len(), 0, "no checkpoint: nothing to undo");
    let cp = j.checkpoint();
    for i in 0..1000u32 {
        j.put(b"counter", (i + 1000).to_le_bytes().to_vec());
    }
    let inner = j.checkpoint();
    j.remove(b"counter");
    j.put(b"counter", vec![]);
    j.commit(inner).unwrap();
    assert_eq!(j.undo_len(), 2);
    j.revert(cp).unwrap();
    assert_eq!(j.get(b"counter"), Lookup::Value(&999u32.to_le_bytes()));
}

#[test]
fn ten_thousand_nested_checkpoints_unwind() {
    let mut j = Journal::new();
    let mut cps = Vec::new();
    for i in 0..10_000u32 {
        cps.push(j.checkpoint());
        j.put(&(i % 100).to_be_bytes(), i.to_le_bytes().to_vec());
    }
    assert_eq!(j.depth(), 10_000);
    // Commit the inner half into the middle one, then revert that: the state at 5 000.
    for cp in cps.drain(5_001..).rev() {
        j.commit(cp).unwrap();
    }
    j.revert(cps.pop().unwrap()).unwrap();
    for k in 0..100u32 {
        let last = (0..5_000u32).rev().find(|i| i % 100 == k).unwrap();
        assert_eq!(j.get(&k.to_be_bytes()), Lookup::Value(&last.to_le_bytes()));
    }
    while let Some(cp) = cps.pop() {
        j.revert(cp).unwrap();
    }
    assert!(j.is_empty() && j.depth() == 0 && j.undo_len() == 0);
}

/// A base that fails every `every`-th read.
struct Flaky<'a> {
    inner: &'a MemState,
    calls: Cell<u32>,
    every: u32,
}

#[derive(Debug)]
struct Failed;

impl core::fmt::Display for Failed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("read failed")
    }
}

impl core::error::Error for Failed {}

impl Flaky<'_> {
    fn tick(&self) -> Result<(), Failed> {
        self.calls.set(self.calls.get() + 1);
        if self.calls.get().is_multiple_of(self.every) {
            return Err(Failed);
        }
        Ok(())
    }
}

impl OrderedState for Flaky<'_> {
    type Error = Failed;
    fn get(&self, key: &[u8]) -> Result<Option<Entry>, Failed> {
        self.tick()?;
        Ok(self.inner.get(key).unwrap_or_else(|e| match e {}))
    }
    fn next(
        &self,
        range: &Range,
        after: Option<&[u8]>,
    ) -> Result<Option<(Vec<u8>, Entry)>, Failed> {
        self.tick()?;
        Ok(self.inner.next(range, after).unwrap_or_else(|e| match e {}))
    }
}

#[test]
fn failed_steps_retry_to_the_same_scan() {
    let mut base = MemState::new();
    for k in 0..40u8 {
        base.insert(vec![k], vec![k], ver(1, u32::from(k)));
    }
    let mut journal = Journal::new();
    for k in (0..50u8).step_by(3) {
        if k % 2 == 0 {
            journal.remove(&[k]);
        } else {
            journal.put(&[k], vec![k, k]);
        }
    }
    for range in [Range::all(), Range::all().descending()] {
        let expect = model_scan(&base, &journal_writes(&journal), &range);
        let (plain, plain_record) = scan_all(&base, &journal, &range);
        assert_eq!(plain, expect);
        for every in [2, 3, 5] {
            let flaky = Flaky {
                inner: &base,
                calls: Cell::new(0),
                every,
            };
            let mut cursor = Cursor::new(range.clone());
            let mut got = Vec::new();
            let mut failures = 0;
            loop {
                match cursor.next(&flaky, &journal) {
                    Ok(Some(kv)) => got.push(kv),
                    Ok(None) => break,
                    Err(Failed) => failures += 1,
                }
            }
            assert!(failures > 0);
            assert_eq!(got, expect, "every {every}");
            assert_eq!(cursor.record().reads().len(), plain_record.reads().len());
            // Validation propagates the error.
            let flaky = Flaky {
                inner: &base,
                calls: Cell::new(0),
                every: 4,
            };
            assert!(cursor.record().still_valid(&flaky).is_err());
        }
    }
}

#[test]
fn diff_encoding_is_unambiguous() {
    let d = |entries: &[(&[u8], Option<&[u8]>)]| diff_digest(entries.iter().copied());
    let all = [
        d(&[]),
        d(&[(b"", None)]),
        d(&[(b"", Some(b""))]),
        d(&[(b"k", None)]),
        d(&[(b"k", Some(b""))]),
        d(&[(b"ab", Some(b"c"))]),
        d(&[(b"a", Some(b"bc"))]),
        d(&[(b"a", Some(b"")), (b"b", None)]),
        d(&[(b"a", None), (b"b", Some(b""))]),
        d(&[(b"a", None), (b"b", None)]),
    ];
    for (i, x) in all.iter().enumerate() {
        for y in &all[i + 1..] {
            assert_ne!(x, y);
        }
    }
    // The encoding as documented, hashed by blake3 directly: it is part of the format.
    let mut encoding = Vec::new();
    encoding.extend(1u64.to_le_bytes());
    encoding.push(b'k');
    encoding.push(1);
    encoding.extend(1u64.to_le_bytes());
    encoding.push(b'v');
    encoding.extend(1u64.to_le_bytes());
    encoding.push(b'r');
    encoding.push(0);
    assert_eq!(
        d(&[(b"k", Some(b"v")), (b"r", None)]).0,
        blake3::derive_key("synor state diff v1", &encoding)
    );
}

#[test]
fn versions_order_by_block_then_transaction_then_incarnation() {
    let v = |block, tx, incarnation| Version {
        block,
        tx,
        incarnation,
    };
    let mut all = vec![v(1, 0, 0), v(0, 9, 9), v(0, 1, 7), v(0, 1, 2), v(1, 0, 1)];
    all.sort();
    assert_eq!(
        all,
        [v(0, 1, 2), v(0, 1, 7), v(0, 9, 9), v(1, 0, 0), v(1, 0, 1)]
    );
}

#[test]
fn applied_diffs_make_the_state_the_model_expects() {
    let mut state = five();
    let mut j = Journal::new();
    j.put(&[1], vec![11]);
    j.remove(&[2]);
    j.put(&[9], vec![]);
    let v = ver(2, 7);
    state.apply(j.writes(), v);
    let expect = model_scan(&five(), &journal_writes(&j), &Range::all());
    let (got, _) = scan_all(&state, &Journal::new(), &Range::all());
    assert_eq!(got, expect);
    assert_eq!(state.version(&[1]).unwrap(), Some(v));
    assert_eq!(state.version(&[3]).unwrap(), Some(ver(1, 3)));
    assert_eq!(state.version(&[2]).unwrap(), None);
}
