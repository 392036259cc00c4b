use super::*;
use alloc::string::ToString;

/// A schedule (version 1) with every figure `value`.
fn all(value: u64) -> GasSchedule {
    GasSchedule {
        version: 1,
        base: value,
        memory_access: value,
        divide: value,
        call: value,
        call_indirect: value,
        memory_grow_page: value,
        bulk_per_8_bytes: value,
        table_per_element: value,
        host_call: value,
        copy_word: value,
        storage_read: value,
        storage_read_word: value,
        storage_key_word: value,
        storage_write_word: value,
        storage_remove: value,
        event: value,
        event_byte: value,
        blob_store: value,
        blob_byte: value,
        blob_read: value,
        blob_read_word: value,
        blob_hash_word: value,
        contract_call: value,
        contract_instantiate: value,
    }
}

/// `s` with the field at `index` (in [`GasSchedule::fields`]' order) set to `value`.
fn with_field(s: GasSchedule, index: usize, value: u64) -> GasSchedule {
    let mut s = s;
    let field = match index {
        0 => &mut s.base,
        1 => &mut s.memory_access,
        2 => &mut s.divide,
        3 => &mut s.call,
        4 => &mut s.call_indirect,
        5 => &mut s.memory_grow_page,
        6 => &mut s.bulk_per_8_bytes,
        7 => &mut s.table_per_element,
        8 => &mut s.host_call,
        9 => &mut s.copy_word,
        10 => &mut s.storage_read,
        11 => &mut s.storage_read_word,
        12 => &mut s.storage_key_word,
        13 => &mut s.storage_write_word,
        14 => &mut s.storage_remove,
        15 => &mut s.event,
        16 => &mut s.event_byte,
        17 => &mut s.blob_store,
        18 => &mut s.blob_byte,
        19 => &mut s.blob_read,
        20 => &mut s.blob_read_word,
        21 => &mut s.blob_hash_word,
        22 => &mut s.contract_call,
        23 => &mut s.contract_instantiate,
        _ => unreachable!("24 fields"),
    };
    *field = value;
    s
}

#[test]
fn v1_is_within_the_bounds() {
    assert_eq!(GasSchedule::V1.validate(), Ok(()));
}

/// A schedule at every bound is accepted; one past a bound, in any field, is refused and the
/// error names that field.
#[test]
fn schedules_at_the_bounds_pass_and_past_them_fail() {
    assert_eq!(all(MAX_COST).validate(), Ok(()));
    let least = GasSchedule::V1.fields().map(|(_, _, min)| min);
    for (i, (name, _, min)) in GasSchedule::V1.fields().into_iter().enumerate() {
        let at_least = with_field(all(MAX_COST), i, min);
        assert_eq!(at_least.validate(), Ok(()), "{name} at {min}");
        let over = with_field(all(MAX_COST), i, MAX_COST + 1);
        let e = over.validate().unwrap_err();
        assert_eq!((e.field, e.value, e.max), (name, MAX_COST + 1, MAX_COST));
        assert!(e.to_string().contains(name), "{e}");
        if min > 0 {
            let e = with_field(all(MAX_COST), i, min - 1)
                .validate()
                .unwrap_err();
            assert_eq!((e.field, e.value, e.min), (name, min - 1, min));
        }
    }
    // The fixed parts of host calls may be free; nothing else may.
    assert_eq!(least.iter().filter(|m| **m == 0).count(), 8);
    assert!(all(0).validate().is_err());
}

/// The bound keeps every charge the instrumented code or a host call computes well inside an
/// `i64`: a figure times a `u32` count, and times the sum of two `u32` lengths.
#[test]
fn charges_at_the_bounds_fit_the_gas_counter() {
    let count = u64::from(u32::MAX);
    let one = MAX_COST.checked_mul(count).unwrap();
    assert!(one < 1 << 57);
    let two = GasSchedule::cost(MAX_COST, MAX_COST, 2 * count);
    assert!(two < 1 << 58);
    // `charge_dynamic` multiplies in i64.
    assert!(
        i64::try_from(MAX_COST)
            .unwrap()
            .checked_mul(count as i64)
            .is_some()
    );
    // Past the bounds, the host side saturates rather than wrapping.
    assert_eq!(GasSchedule::cost(1, u64::MAX, 2), u64::MAX);
    assert_eq!(GasSchedule::cost(u64::MAX, 1, 1), u64::MAX);
}

/// `instrument` accepts a schedule at the bounds and refuses one past them, saying which field.
#[test]
fn instrument_checks_the_schedule() {
    use crate::instrument::{InstrumentError, Limits, instrument};
    let wasm = wat::parse_str(
        r#"(module (memory 1)
            (func (export "run") (local i32)
                (drop (memory.grow (i32.const -1)))
                (memory.fill (i32.const 0) (i32.const 0) (i32.const -1))
                (loop (br_if 0 (local.tee 0 (i32.sub (local.get 0) (i32.const 1)))))))"#,
    )
    .unwrap();
    let limits = Limits::default();
    assert!(instrument(&wasm, &all(MAX_COST), &limits).is_ok());
    let past = GasSchedule {
        memory_grow_page: MAX_COST + 1,
        ..all(MAX_COST)
    };
    let e = instrument(&wasm, &past, &limits).unwrap_err();
    let expected = ScheduleError {
        field: "memory_grow_page",
        value: MAX_COST + 1,
        min: 1,
        max: MAX_COST,
    };
    assert_eq!(e, InstrumentError::Schedule(expected));
    assert!(e.to_string().contains("memory_grow_page"), "{e}");
}
