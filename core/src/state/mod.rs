//! Versioned, ordered state; the journaled overlay of one transaction; merged range scans that
//! record what they observed.
//!
//! A contract reads and writes byte keys in byte order. What it sees is its transaction's own
//! writes ([`Journal`]) over a *base state* ([`OrderedState`]): for a transaction of a block,
//! the state that the transactions before it leave (multi-version block state, hot cache,
//! persistent state behind it). Every entry of the base state carries the [`Version`] of the
//! execution that wrote it, so a read stays valid exactly as long as the versions it saw do:
//! optimistic execution and pre-execution check their reads by comparing versions, never
//! values.
//!
//! | piece | what it does |
//! |---|---|
//! | [`Version`], [`Entry`] | who wrote a value: block, transaction, incarnation |
//! | [`Range`], [`Direction`] | a scan's key range and order; [`Range::prefix`] |
//! | [`OrderedState`], [`MemState`] | the base state, stepwise: one [`OrderedState::next`] per step of a scan |
//! | [`Journal`], [`Checkpoint`] | a transaction's writes, with nested checkpoints (one per call frame) that revert or commit |
//! | [`Scan`], [`Cursor`] | base and journal merged in key order, one step at a time |
//! | [`ScanRecord`] | what a scan observed, and [`ScanRecord::still_valid`]: the same scan, re-run, sees the same versions and no new key |
//! | [`diff_digest`] | blake3 of a transaction's (or block's) state diff |
//!
//! # How the node uses it
//!
//! A transaction runs against a fresh [`Journal`]. Each call into a contract opens a
//! [`Checkpoint`]; a call that fails reverts to it, one that returns commits it into its
//! caller's. A contract's iterator is a [`Cursor`] that advances one `db_next` at a time,
//! taking the base state and the journal at each step, so the contract may write between
//! steps. Point reads of base entries and every scan's [`ScanRecord`] form the transaction's
//! read set. When the transaction ends, [`Journal::writes`] is its state diff, in key order:
//! applied to the block state under the transaction's [`Version`] ([`MemState::apply`] in
//! memory), and digested with [`diff_digest`]. Re-validation (Block-STM, or a pre-executed
//! transaction reused at block time) re-checks each record against the base state it would
//! now run on.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::ops::Bound;

use crate::digest::Digest;

mod journal;
mod scan;

pub use journal::{Checkpoint, CheckpointError, Journal, Lookup};
pub use scan::{Cursor, Scan, ScanRecord};

#[cfg(test)]
mod tests;

/// The execution that wrote a value: the transaction at index `tx` of block `block`, in its
/// `incarnation`-th execution (optimistic execution may run a transaction more than once).
///
/// Versions order by block, then transaction, then incarnation. A read is still valid when
/// the version it saw is still the version there: values are never compared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Height of the block.
    pub block: u64,
    /// Index of the transaction in its block.
    pub tx: u32,
    /// Which execution of the transaction (0 for the first).
    pub incarnation: u32,
}

/// A value in the base state and the [`Version`] that wrote it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Entry {
    /// The value's bytes.
    pub value: Vec<u8>,
    /// Who wrote it.
    pub version: Version,
}

/// The order in which a scan visits keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Increasing byte order.
    #[default]
    Ascending,
    /// Decreasing byte order.
    Descending,
}

/// The keys a scan visits, and in which order: keys between `start` and `end` (byte order,
/// whatever the direction), visited in `direction`.
///
/// A range whose start lies after its end holds no key; it is not an error.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Range {
    /// The least key, inclusive or exclusive, or none.
    pub start: Bound<Vec<u8>>,
    /// The greatest key, inclusive or exclusive, or none.
    pub end: Bound<Vec<u8>>,
    /// The order of the visit.
    pub direction: Direction,
}

impl Range {
    /// Every key, ascending.
    pub fn all() -> Self {
        Self::new(Bound::Unbounded, Bound::Unbounded)
    }

    /// The keys between `start` and `end`, ascending.
    pub fn new(start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> Self {
        Self {
            start,
            end,
            direction: Direction::Ascending,
        }
    }

    /// Every key that starts with `prefix`, ascending.
    ///
    /// The exclusive end is the least key greater than every key with the prefix: the prefix
    /// without its trailing `0xff` bytes, last byte incremented. A prefix of only `0xff` bytes
    /// (or the empty prefix) has no such key: the range is then unbounded above.
    ///
    /// # Examples
    /// ```
    /// use core::ops::Bound;
    /// use synor_core::state::Range;
    ///
    /// assert_eq!(Range::prefix(b"a\xff").end, Bound::Excluded(b"b".to_vec()));
    /// assert_eq!(Range::prefix(b"\xff\xff").end, Bound::Unbounded);
    /// assert!(Range::prefix(b"a\xff").contains(b"a\xff\xff\x00"));
    /// assert!(!Range::prefix(b"a\xff").contains(b"b"));
    /// ```
    pub fn prefix(prefix: &[u8]) -> Self {
        let mut end = prefix.to_vec();
        while end.last() == Some(&0xff) {
            end.pop();
        }
        let end = match end.last_mut() {
            Some(last) => {
                *last += 1;
                Bound::Excluded(end)
            }
            None => Bound::Unbounded,
        };
        Self::new(Bound::Included(prefix.to_vec()), end)
    }

    /// The same keys, visited in `direction`.
    #[must_use]
    pub fn with_direction(mut self, direction: Direction) -> Self {
        self.direction = direction;
        self
    }

    /// The same keys, in decreasing order.
    #[must_use]
    pub fn descending(self) -> Self {
        self.with_direction(Direction::Descending)
    }

    /// Whether `key` lies in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        let above_start = match &self.start {
            Bound::Included(s) => key >= s.as_slice(),
            Bound::Excluded(s) => key > s.as_slice(),
            Bound::Unbounded => true,
        };
        let below_end = match &self.end {
            Bound::Included(e) => key <= e.as_slice(),
            Bound::Excluded(e) => key < e.as_slice(),
            Bound::Unbounded => true,
        };
        above_start && below_end
    }

    /// Whether `a` is visited before `b`.
    pub fn precedes(&self, a: &[u8], b: &[u8]) -> bool {
        match self.direction {
            Direction::Ascending => a < b,
            Direction::Descending => a > b,
        }
    }

    /// The bounds, in byte order, of the part of the range still to visit after `after` (the
    /// whole range for `None`): the keys of the range strictly after `after` in the range's
    /// direction.
    ///
    /// Returns `None` when no key can lie within (start after end, or at the same key with
    /// either side exclusive). Bounds it returns are safe for `BTreeMap::range` (which panics
    /// on a reversed range) and for stores with the same rule; an implementation of
    /// [`OrderedState::next`] takes the first key within them (ascending) or the last
    /// (descending).
    pub fn remaining<'a>(&'a self, after: Option<&'a [u8]>) -> Option<Bounds<'a>> {
        let mut start = as_slice(&self.start);
        let mut end = as_slice(&self.end);
        if let Some(after) = after {
            match self.direction {
                Direction::Ascending => start = start_after(start, after),
                Direction::Descending => end = end_before(end, after),
            }
        }
        let nonempty = match (start, end) {
            (Bound::Unbounded, _) | (_, Bound::Unbounded) => true,
            (Bound::Included(s), Bound::Included(e)) => s <= e,
            (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) => {
                s < e
            }
        };
        nonempty.then_some((start, end))
    }

    /// The first entry of `map` in the range after `after` (from the range's start for
    /// `None`), in the range's direction.
    pub fn first_in<'m, K, V>(
        &self,
        map: &'m BTreeMap<K, V>,
        after: Option<&[u8]>,
    ) -> Option<(&'m K, &'m V)>
    where
        K: core::borrow::Borrow<[u8]> + Ord,
    {
        let mut within = map.range::<[u8], _>(self.remaining(after)?);
        match self.direction {
            Direction::Ascending => within.next(),
            Direction::Descending => within.next_back(),
        }
    }
}

/// A key range in byte order, borrowed ([`Range::remaining`]).
pub type Bounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// A key and its value, as a scan returns them.
pub type KeyValue = (Vec<u8>, Vec<u8>);

impl Default for Range {
    fn default() -> Self {
        Self::all()
    }
}

fn as_slice(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(k) => Bound::Included(k),
        Bound::Excluded(k) => Bound::Excluded(k),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The tighter of a lower bound and "strictly after `after`" (ascending).
fn start_after<'a>(start: Bound<&'a [u8]>, after: &'a [u8]) -> Bound<&'a [u8]> {
    match start {
        Bound::Included(s) | Bound::Excluded(s) if s > after => start,
        _ => Bound::Excluded(after),
    }
}

/// The tighter of an upper bound and "strictly before `after`" (descending).
fn end_before<'a>(end: Bound<&'a [u8]>, after: &'a [u8]) -> Bound<&'a [u8]> {
    match end {
        Bound::Included(e) | Bound::Excluded(e) if e < after => end,
        _ => Bound::Excluded(after),
    }
}

/// Committed state as a scan reads it: byte keys in order, each value with its [`Version`].
///
/// Scans are stepwise, one [`next`](Self::next) per step, so that a cursor advanced by a
/// contract holds no borrow of the state between steps and never reads more than it returns
/// (plus one entry of lookahead).
///
/// # Examples
/// A read-only view of a map (this is, in essence, [`MemState`]):
/// ```
/// use std::collections::BTreeMap;
/// use synor_core::state::{Entry, OrderedState, Range, Direction, Version};
///
/// struct View(BTreeMap<Vec<u8>, Entry>);
///
/// impl OrderedState for View {
///     type Error = core::convert::Infallible;
///     fn get(&self, key: &[u8]) -> Result<Option<Entry>, Self::Error> {
///         Ok(self.0.get(key).cloned())
///     }
///     fn next(&self, range: &Range, after: Option<&[u8]>)
///         -> Result<Option<(Vec<u8>, Entry)>, Self::Error>
///     {
///         let Some(bounds) = range.remaining(after) else { return Ok(None) };
///         let mut within = self.0.range::<[u8], _>(bounds);
///         let found = match range.direction {
///             Direction::Ascending => within.next(),
///             Direction::Descending => within.next_back(),
///         };
///         Ok(found.map(|(k, e)| (k.clone(), e.clone())))
///     }
/// }
///
/// let v = Version { block: 1, tx: 0, incarnation: 0 };
/// let entry = |value: &[u8]| Entry { value: value.to_vec(), version: v };
/// let view = View(BTreeMap::from([(b"a".to_vec(), entry(b"1")), (b"b".to_vec(), entry(b"2"))]));
/// let down = Range::all().descending();
/// assert_eq!(view.next(&down, None).unwrap().unwrap().0, b"b");
/// assert_eq!(view.next(&down, Some(b"b")).unwrap().unwrap().0, b"a");
/// assert_eq!(view.next(&down, Some(b"a")).unwrap(), None);
/// assert_eq!(view.version(b"a").unwrap(), Some(v));
/// ```
pub trait OrderedState {
    /// What a failed read reports.
    type Error: core::error::Error + Send + Sync + 'static;

    /// The entry at `key`, if any.
    ///
    /// # Errors
    /// When the state cannot be read.
    fn get(&self, key: &[u8]) -> Result<Option<Entry>, Self::Error>;

    /// The first entry of `range`, in its direction, strictly after `after` (from the range's
    /// start for `None`). [`Range::remaining`] gives the bounds to look within.
    ///
    /// # Errors
    /// When the state cannot be read.
    fn next(
        &self,
        range: &Range,
        after: Option<&[u8]>,
    ) -> Result<Option<(Vec<u8>, Entry)>, Self::Error>;

    /// The version at `key`, if any. Validation reads only versions: a state that can read a
    /// version without its value overrides this.
    ///
    /// # Errors
    /// When the state cannot be read.
    fn version(&self, key: &[u8]) -> Result<Option<Version>, Self::Error> {
        Ok(self.get(key)?.map(|e| e.version))
    }

    /// [`next`](Self::next) without the value, for validation.
    ///
    /// # Errors
    /// When the state cannot be read.
    fn next_version(
        &self,
        range: &Range,
        after: Option<&[u8]>,
    ) -> Result<Option<(Vec<u8>, Version)>, Self::Error> {
        Ok(self.next(range, after)?.map(|(k, e)| (k, e.version)))
    }
}

macro_rules! forward {
    ($($ty:ty),*) => {$(
        impl<T: OrderedState + ?Sized> OrderedState for $ty {
            type Error = T::Error;
            fn get(&self, key: &[u8]) -> Result<Option<Entry>, Self::Error> {
                (**self).get(key)
            }
            fn next(
                &self,
                range: &Range,
                after: Option<&[u8]>,
            ) -> Result<Option<(Vec<u8>, Entry)>, Self::Error> {
                (**self).next(range, after)
            }
            fn version(&self, key: &[u8]) -> Result<Option<Version>, Self::Error> {
                (**self).version(key)
            }
            fn next_version(
                &self,
                range: &Range,
                after: Option<&[u8]>,
            ) -> Result<Option<(Vec<u8>, Version)>, Self::Error> {
                (**self).next_version(range, after)
            }
        }
    )*};
}

forward!(&T, &mut T, Box<T>);

/// An in-memory [`OrderedState`] over a `BTreeMap`: the state of the in-memory host, and the
/// model in tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemState {
    map: BTreeMap<Vec<u8>, Entry>,
}

impl MemState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`, written by `version`; returns the entry it replaces.
    pub fn insert(&mut self, key: Vec<u8>, value: Vec<u8>, version: Version) -> Option<Entry> {
        self.map.insert(key, Entry { value, version })
    }

    /// Removes `key`; returns its entry.
    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        self.map.remove(key)
    }

    /// Folds a state diff in, every value written by `version`: `(key, Some(value))` sets,
    /// `(key, None)` removes. [`Journal::writes`] gives a transaction's diff.
    pub fn apply<K, V>(&mut self, diff: impl IntoIterator<Item = (K, Option<V>)>, version: Version)
    where
        K: Into<Vec<u8>> + AsRef<[u8]>,
        V: Into<Vec<u8>>,
    {
        for (key, value) in diff {
            match value {
                Some(value) => {
                    self.insert(key.into(), value.into(), version);
                }
                None => {
                    self.remove(key.as_ref());
                }
            }
        }
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&[u8], &Entry)> {
        self.map.iter().map(|(k, e)| (k.as_slice(), e))
    }
}

impl OrderedState for MemState {
    type Error = core::convert::Infallible;

    fn get(&self, key: &[u8]) -> Result<Option<Entry>, Self::Error> {
        Ok(self.map.get(key).cloned())
    }

    fn next(
        &self,
        range: &Range,
        after: Option<&[u8]>,
    ) -> Result<Option<(Vec<u8>, Entry)>, Self::Error> {
        Ok(first(&self.map, range, after).map(|(k, e)| (k.clone(), e.clone())))
    }

    fn version(&self, key: &[u8]) -> Result<Option<Version>, Self::Error> {
        Ok(self.map.get(key).map(|e| e.version))
    }

    fn next_version(
        &self,
        range: &Range,
        after: Option<&[u8]>,
    ) -> Result<Option<(Vec<u8>, Version)>, Self::Error> {
        Ok(first(&self.map, range, after).map(|(k, e)| (k.clone(), e.version)))
    }
}

/// The first entry of `map` in `range` strictly after `after`, in the range's direction.
fn first<'m, V>(
    map: &'m BTreeMap<Vec<u8>, V>,
    range: &Range,
    after: Option<&[u8]>,
) -> Option<(&'m Vec<u8>, &'m V)> {
    range.first_in(map, after)
}

/// One step of a scan over writes laid over a state: the first key of `range` after `after`
/// (from the range's start for `None`) that `own` wrote or `below` holds, in the range's
/// direction. `own(after)` gives the first write after a key (`None` value: removed), `below`
/// the first key of the state; a write shadows the state's entry at its key, a removal hides
/// it. Each turn past a removal asks both again: at most as many turns as removals passed.
///
/// # Errors
/// The first error of `own` or `below`.
pub fn merge_next<V, E>(
    range: &Range,
    after: Option<&[u8]>,
    mut own: impl FnMut(Option<&[u8]>) -> Result<Option<(Vec<u8>, Option<V>)>, E>,
    mut below: impl FnMut(Option<&[u8]>) -> Result<Option<(Vec<u8>, V)>, E>,
) -> Result<Option<(Vec<u8>, V)>, E> {
    let mut after: Option<Vec<u8>> = after.map(<[u8]>::to_vec);
    loop {
        let written = own(after.as_deref())?;
        let held = below(after.as_deref())?;
        let Some((key, value)) = written else {
            return Ok(held);
        };
        if let Some(held) = held
            && range.precedes(&held.0, &key)
        {
            return Ok(Some(held));
        }
        match value {
            Some(value) => return Ok(Some((key, value))),
            None => after = Some(key),
        }
    }
}

/// The blake3 digest of a state diff, entry by entry as given: [`Journal::writes`] gives them
/// in key order, which makes the digest a function of the diff alone.
///
/// Each entry is encoded self-delimiting: the key's length (8 bytes, little-endian) and bytes,
/// then `0` for a removal, or `1`, the value's length and bytes. So no two diffs share an
/// encoding, and removing a key differs from setting it to the empty value. The hash runs in
/// blake3's key-derivation mode under a context string of its own.
///
/// # Examples
/// ```
/// use synor_core::state::diff_digest;
///
/// let removed = diff_digest([(b"k".as_slice(), None::<&[u8]>)]);
/// let emptied = diff_digest([(b"k".as_slice(), Some(b"".as_slice()))]);
/// assert_ne!(removed, emptied);
/// ```
pub fn diff_digest<K, V>(writes: impl IntoIterator<Item = (K, Option<V>)>) -> Digest
where
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let mut hasher = blake3::Hasher::new_derive_key("synor state diff v1");
    for (key, value) in writes {
        let key = key.as_ref();
        hasher.update(&(key.len() as u64).to_le_bytes());
        hasher.update(key);
        match value {
            None => {
                hasher.update(&[0]);
            }
            Some(value) => {
                let value = value.as_ref();
                hasher.update(&[1]);
                hasher.update(&(value.len() as u64).to_le_bytes());
                hasher.update(value);
            }
        }
    }
    Digest(*hasher.finalize().as_bytes())
}
