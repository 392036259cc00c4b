//! Counted loops: loops whose number of trips is known when they are entered, so that their
//! whole cost is charged once, before the first trip, instead of at every trip.
//!
//! A byte loop such as binaryen's `__memory_fill` (what `wasm-opt
//! --llvm-memory-copy-fill-lowering` puts in place of `memory.fill` for chains that accept only
//! WebAssembly 1.0) runs a dozen instructions per trip; a checked charge at its header adds a
//! quarter to them. Its trip count is a local's value at entry, so the charge can be taken
//! once, exactly.
//!
//! # Which loops
//!
//! Loops with no result whose body is straight-line code (no branch other than the loop's own,
//! no call, no instruction charged by its operand) and which count one local, the **induction
//! variable** `v`, by one per trip towards a **bound** `e` (a local the loop never writes, or a
//! constant), leaving when `v == e`:
//!
//! - *while*: `loop (if C (then S br 1))`, with `C` testing `v != e` (`local.get v` alone
//!   tests `v != 0`) before `S` steps `v`: trips = `(e - v) * step` (mod 2^32);
//! - *do-while*: `loop (S br_if 0 (C))`, with `C` testing `v != e` after `S` stepped `v`:
//!   trips = `((e - v - step) * step mod 2^32) + 1`.
//!
//! `v` is written exactly once per trip, by `v = v + 1` or `v = v - 1` (`local.get v`,
//! `i32.const ±1`, `i32.add`/`i32.sub`, `local.set v`/`local.tee v`). Arithmetic wraps, so `v`
//! reaches `e` after exactly that many trips whatever the values (a count of 2^32 - 1 is
//! possible, and charged).
//!
//! # What changes
//!
//! Nothing for a call that does not run out of gas: it is charged the same total, the sum of
//! the loop's segments over all its trips. A call whose loop costs more than the gas left runs
//! out of gas when the loop starts, where a charge per trip would have run some trips first;
//! both are `out_of_gas` with the whole limit used (or, if a trip would have faulted first, a
//! machine fault with the whole limit used: the gas used is the same either way), and every
//! tier runs the same instrumented code, so every tier traps at the same point.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use wasmparser::{BlockType, Operator};

/// The largest cost of one trip (all segments of the body) a counted loop may have: trips are
/// fewer than 2^32, so the whole charge stays below 2^62 and fits the gas counter's `i64`.
const MAX_TRIP_COST: u64 = 1 << 30;

/// What a counted loop's bound is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Bound {
    /// A local the loop never writes.
    Local(u32),
    /// A constant.
    Const(i32),
}

/// A loop whose whole cost is charged when it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Counted {
    /// The induction variable.
    pub var: u32,
    /// The value the induction variable leaves the loop at.
    pub bound: Bound,
    /// Whether the induction variable counts up (else down), by one.
    pub up: bool,
    /// Whether the exit test comes before the body (while) or after it (do-while).
    pub test_first: bool,
    /// Gas of one trip.
    pub per_trip: u64,
    /// Gas charged once more: the while form's last, failing test; the do-while form's first
    /// trip (its count is one plus `(e - v - step) * step`).
    pub once: u64,
    /// Segment starts (indices into the body's operators) whose charges this replaces.
    pub prepaid: [usize; 2],
}

/// One operand of the exit test.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Operand {
    Local(u32),
    Const(i32),
    /// `local.get v; i32.const ±1; i32.add|sub; local.tee v`: the stepped variable.
    Stepped(u32),
}

/// If `ops[end - 4..end]` is the step `v = v ± 1` ending in `local.set v` or `local.tee v`,
/// returns `(v, up)`.
fn step(ops: &[Operator<'_>], end: usize) -> Option<(u32, bool)> {
    let [get, constant, arith, write] = ops.get(end.checked_sub(4)?..end)? else {
        return None;
    };
    let v = match write {
        Operator::LocalSet { local_index } | Operator::LocalTee { local_index } => *local_index,
        _ => return None,
    };
    if *get != (Operator::LocalGet { local_index: v }) {
        return None;
    }
    let Operator::I32Const { value } = constant else {
        return None;
    };
    match (arith, value) {
        (Operator::I32Add, 1) | (Operator::I32Sub, -1) => Some((v, true)),
        (Operator::I32Add, -1) | (Operator::I32Sub, 1) => Some((v, false)),
        _ => None,
    }
}

/// Parses the operand that ends just before `end`, returning it and where it starts.
fn operand(ops: &[Operator<'_>], end: usize) -> Option<(Operand, usize)> {
    match ops.get(end.checked_sub(1)?)? {
        Operator::LocalGet { local_index } => Some((Operand::Local(*local_index), end - 1)),
        Operator::I32Const { value } => Some((Operand::Const(*value), end - 1)),
        Operator::LocalTee { .. } => {
            let (v, _) = step(ops, end)?;
            Some((Operand::Stepped(v), end - 4))
        }
        _ => None,
    }
}

/// Parses an exit test `x != y` (`i32.ne`, or `i32.eq` then `i32.eqz`) ending just before
/// `end`, returning its operands and where it starts.
fn test(ops: &[Operator<'_>], end: usize) -> Option<(Operand, Operand, usize)> {
    let compare = match ops.get(end.checked_sub(1)?)? {
        Operator::I32Ne => end - 1,
        Operator::I32Eqz if end >= 2 && ops[end - 2] == Operator::I32Eq => end - 2,
        _ => return None,
    };
    let (b, start) = operand(ops, compare)?;
    let (a, start) = operand(ops, start)?;
    Some((a, b, start))
}

/// Whether `op` may be in a counted loop's body: it neither transfers control nor calls, and
/// its cost does not depend on an operand.
fn plain(op: &Operator<'_>) -> bool {
    super::straight_line(op) && super::operand_charge(op).is_none()
}

/// Finds the induction variable among a test's operands, given the loop's code
/// `ops[from..to]` (the test included): the operand the loop writes, exactly once and by a
/// step; the other operand is the bound, which the loop must not write.
fn induction(
    ops: &[Operator<'_>],
    (from, to): (usize, usize),
    a: Operand,
    b: Operand,
) -> Option<(u32, Bound, bool)> {
    // Where the loop writes an operand's local: none for a constant.
    let writes = |o: Operand| -> Vec<usize> {
        let (Operand::Local(local) | Operand::Stepped(local)) = o else {
            return Vec::new();
        };
        (from..to)
            .filter(|&i| {
                matches!(ops[i], Operator::LocalSet { local_index } | Operator::LocalTee { local_index }
                    if local_index == local)
            })
            .collect()
    };
    let (at_a, at_b) = (writes(a), writes(b));
    let ((v, at), other, at_other) = match (a, b) {
        (Operand::Local(v) | Operand::Stepped(v), _) if !at_a.is_empty() => ((v, at_a), b, at_b),
        (_, Operand::Local(v) | Operand::Stepped(v)) if !at_b.is_empty() => ((v, at_b), a, at_a),
        _ => return None,
    };
    let bound = match other {
        Operand::Const(c) => Bound::Const(c),
        Operand::Local(l) if l != v && at_other.is_empty() => Bound::Local(l),
        _ => return None,
    };
    let [at] = at[..] else {
        return None;
    };
    let (_, up) = step(ops, at + 1)?;
    Some((v, bound, up))
}

/// The counted loops among a function's operators, by the index of their `loop`, given the
/// segment costs by start.
pub(super) fn find(ops: &[Operator<'_>], costs: &BTreeMap<usize, u64>) -> BTreeMap<usize, Counted> {
    (0..ops.len())
        .filter_map(|i| recognise(ops, i, costs).map(|c| (i, c)))
        .collect()
}

/// Recognises a counted loop at `ops[i]`, given the segment costs by start.
fn recognise(ops: &[Operator<'_>], i: usize, costs: &BTreeMap<usize, u64>) -> Option<Counted> {
    if ops[i]
        != (Operator::Loop {
            blockty: BlockType::Empty,
        })
    {
        return None;
    }
    let body = i + 1;
    // The straight-line run after the loop header, and what ends it.
    let stop = body + ops[body..].iter().position(|op| !plain(op))?;
    let cost = |at: usize| costs.get(&at).copied().unwrap_or(0);
    let counted = match &ops[stop] {
        // do-while: `loop S (C) br_if 0 end`.
        Operator::BrIf { relative_depth: 0 } if ops.get(stop + 1) == Some(&Operator::End) => {
            let (a, b, _) = test(ops, stop)?;
            let (var, bound, up) = induction(ops, (body, stop), a, b)?;
            Counted {
                var,
                bound,
                up,
                test_first: false,
                per_trip: cost(body),
                once: cost(body),
                prepaid: [body, body],
            }
        }
        // while: `loop (C) if S br 1 end end`.
        Operator::If {
            blockty: BlockType::Empty,
        } => {
            let (a, b, start) = match test(ops, stop) {
                Some(t) => t,
                None => match ops[stop - 1] {
                    Operator::LocalGet { local_index } => {
                        (Operand::Local(local_index), Operand::Const(0), stop - 1)
                    }
                    _ => return None,
                },
            };
            if start != body || matches!(a, Operand::Stepped(_)) || matches!(b, Operand::Stepped(_))
            {
                return None;
            }
            let arm = stop + 1;
            let br = arm + ops[arm..].iter().position(|op| !plain(op))?;
            if ops[br] != (Operator::Br { relative_depth: 1 })
                || !matches!(
                    ops.get(br + 1..br + 3),
                    Some([Operator::End, Operator::End])
                )
            {
                return None;
            }
            let (var, bound, up) = induction(ops, (body, br), a, b)?;
            let (test, trip) = (cost(body), cost(arm));
            Counted {
                var,
                bound,
                up,
                test_first: true,
                per_trip: test.checked_add(trip)?,
                once: test,
                prepaid: [body, arm],
            }
        }
        _ => return None,
    };
    (counted.per_trip <= MAX_TRIP_COST && counted.once <= MAX_TRIP_COST).then_some(counted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gas::GasSchedule;

    /// The counted loops of the only function of a module with `locals` (all `i32`) and
    /// `body`.
    fn counted(locals: &str, body: &str) -> Vec<Counted> {
        let text = alloc::format!("(module (memory 1) (func $g) (func (local {locals}) {body}))");
        let wasm = wat::parse_str(text).expect("valid wat");
        let mut bodies = Vec::new();
        for payload in wasmparser::Parser::new(0).parse_all(&wasm) {
            if let wasmparser::Payload::CodeSectionEntry(b) = payload.unwrap() {
                bodies.push(b);
            }
        }
        let ops: Vec<_> = bodies[1]
            .get_operators_reader()
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        find(&ops, &super::super::segments(&ops, &GasSchedule::V1))
            .into_values()
            .collect()
    }

    const FILL: &str = "(loop $l (if (local.get 0) (then
        (i32.store8 (local.tee 0 (i32.sub (local.get 0) (i32.const 1))) (i32.const 7))
        (br $l))))";

    #[test]
    fn a_fill_loop_is_counted_exactly() {
        let [c] = counted("i32", FILL)[..] else {
            panic!("not counted")
        };
        // Test: `local.get`, `if`; trip: `local.get`, `i32.const`, `i32.sub`, `local.tee`,
        // `i32.const`, `i32.store8` (memory), `br`.
        let s = GasSchedule::V1;
        assert_eq!(c.once, 2 * s.base);
        assert_eq!(c.per_trip, 2 * s.base + 6 * s.base + s.memory_access);
        assert_eq!(
            (c.var, c.bound, c.up, c.test_first),
            (0, Bound::Const(0), false, true)
        );
    }

    #[test]
    fn loops_whose_count_is_unknown_are_not_counted() {
        let do_while = |step: &str, test: &str| {
            alloc::format!(
                "(loop $l (i32.store8 (local.get 0) (i32.const 1)) {step} (br_if $l {test}))"
            )
        };
        let up = "(local.set 0 (i32.add (local.get 0) (i32.const 1)))";
        let ne = "(i32.ne (local.get 0) (local.get 1))";
        // The template is counted...
        assert_eq!(counted("i32 i32", &do_while(up, ne)).len(), 1);
        for (what, body) in [
            (
                "step of two",
                do_while("(local.set 0 (i32.add (local.get 0) (i32.const 2)))", ne),
            ),
            ("written twice", do_while(&alloc::format!("{up} {up}"), ne)),
            (
                "bound written",
                do_while(&alloc::format!("{up} (local.set 1 (i32.const 0))"), ne),
            ),
            ("a call", do_while(&alloc::format!("{up} (call $g)"), ne)),
            (
                "a branch",
                do_while(&alloc::format!("{up} (block (br 0))"), ne),
            ),
            (
                "`<` test",
                do_while(up, "(i32.lt_u (local.get 0) (local.get 1))"),
            ),
            (
                "bound is the variable",
                do_while(up, "(i32.ne (local.get 0) (local.get 0))"),
            ),
            (
                "old against new",
                do_while(
                    "",
                    "(i32.ne (local.get 0)
                (local.tee 0 (i32.add (local.get 0) (i32.const 1))))",
                ),
            ),
            (
                "a grow",
                do_while(
                    &alloc::format!("{up} (drop (memory.grow (i32.const 0)))"),
                    ne,
                ),
            ),
            (
                "a result",
                "(drop (loop $l (result i32) (local.set 0 (i32.add (local.get 0)
                (i32.const 1))) (br_if $l (i32.ne (local.get 0) (local.get 1))) (i32.const 0)))"
                    .into(),
            ),
            (
                "while with an else",
                "(loop $l (if (local.get 0) (then (local.set 0 (i32.sub
                (local.get 0) (i32.const 1))) (br $l)) (else nop)))"
                    .into(),
            ),
            (
                "while without its branch back",
                "(loop $l (if (local.get 0) (then (local.set 0
                (i32.sub (local.get 0) (i32.const 1))))))"
                    .into(),
            ),
        ] {
            assert_eq!(counted("i32 i32", &body), [], "{what}");
        }
    }
}
