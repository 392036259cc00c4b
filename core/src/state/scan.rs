//! Scans of a journal over a base state, and their validation.

use alloc::vec::Vec;
use core::ops::Bound;

use super::{Direction, Entry, Journal, KeyValue, OrderedState, Range, Version};

/// What a scan observed: the base keys it returned with their versions, the journal's keys it
/// passed (which hide the base state's), and where it stopped.
///
/// The scanned part is the range up to and including the last key the scan passed, or the
/// whole range once the scan ran out. [`still_valid`](Self::still_valid) re-runs the scan over
/// that part of a base state and compares versions: a key of the part changed, removed or
/// inserted (a phantom) invalidates the record, unless the journal hid that key; a change
/// beyond the scanned part does not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanRecord {
    range: Range,
    /// Base entries returned, in scan order.
    reads: Vec<(Vec<u8>, Version)>,
    /// Journal keys passed (written or removed), in scan order.
    masked: Vec<Vec<u8>>,
    /// Which list holds the last key passed.
    last: Last,
    exhausted: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Last {
    Nothing,
    Read,
    Masked,
}

impl ScanRecord {
    fn new(range: Range) -> Self {
        Self {
            range,
            reads: Vec::new(),
            masked: Vec::new(),
            last: Last::Nothing,
            exhausted: false,
        }
    }

    /// The range scanned.
    pub fn range(&self) -> &Range {
        &self.range
    }

    /// The base keys returned and the versions they had, in scan order.
    pub fn reads(&self) -> impl ExactSizeIterator<Item = (&[u8], Version)> {
        self.reads.iter().map(|(k, v)| (k.as_slice(), *v))
    }

    /// The last key the scan passed (returned, or removed in the journal), if any.
    pub fn position(&self) -> Option<&[u8]> {
        match self.last {
            Last::Nothing => None,
            Last::Read => self.reads.last().map(|(k, _)| k.as_slice()),
            Last::Masked => self.masked.last().map(Vec::as_slice),
        }
    }

    /// Whether the scan ran to the end of its range.
    pub fn is_exhausted(&self) -> bool {
        self.exhausted
    }

    /// The part of the range the scan observed, or `None` if it observed nothing.
    fn scanned(&self) -> Option<Range> {
        if self.exhausted {
            return Some(self.range.clone());
        }
        let at = Bound::Included(self.position()?.to_vec());
        let mut part = self.range.clone();
        match part.direction {
            Direction::Ascending => part.end = at,
            Direction::Descending => part.start = at,
        }
        Some(part)
    }

    /// Whether the same scan over `base` would observe the same: the same base keys in the
    /// scanned part, apart from those the journal hid, each at the same [`Version`]. Values
    /// are not compared. Reads `base` one step per key of the scanned part, and nothing
    /// beyond it.
    ///
    /// # Errors
    /// When `base` cannot be read.
    pub fn still_valid<S: OrderedState + ?Sized>(&self, base: &S) -> Result<bool, S::Error> {
        let Some(part) = self.scanned() else {
            return Ok(true);
        };
        let (mut read, mut masked) = (0, 0);
        let mut after: Option<Vec<u8>> = None;
        while let Some((key, version)) = base.next_version(&part, after.as_deref())? {
            while self
                .masked
                .get(masked)
                .is_some_and(|m| part.precedes(m, &key))
            {
                masked += 1;
            }
            if self.masked.get(masked) == Some(&key) {
                masked += 1;
            } else {
                match self.reads.get(read) {
                    Some((k, v)) if *k == key && *v == version => read += 1,
                    _ => return Ok(false),
                }
            }
            after = Some(key);
        }
        Ok(read == self.reads.len())
    }
}

/// A scan's position, apart from the state it scans: [`next`](Self::next) takes the base
/// state and the journal at each step, so the journal may change between steps (a contract
/// writing while it iterates). Each step returns the first visible key strictly after the last
/// one, as base and journal are at that step: a journal write shadows the base entry at its
/// key, a journal removal hides it.
///
/// The cursor keeps one base entry of lookahead between steps: the base state must be the
/// same at every step (a transaction's view of it does not change while it runs).
#[derive(Clone, Debug)]
pub struct Cursor {
    record: ScanRecord,
    peek: Peek,
}

#[derive(Clone, Debug)]
enum Peek {
    /// Not read yet.
    Unknown,
    /// The base state's first entry after the position.
    Entry(Vec<u8>, Entry),
    /// The base state has no entry after the position.
    End,
}

impl Cursor {
    /// A cursor at the start of `range`.
    pub fn new(range: Range) -> Self {
        Self {
            record: ScanRecord::new(range),
            peek: Peek::Unknown,
        }
    }

    /// The next visible key and its value, or `None` at the end of the range.
    ///
    /// Reads at most one base entry per base key it returns or passes, and never one beyond
    /// the first base entry after the key it returns. Once it has returned `None`, it returns
    /// `None` without reading.
    ///
    /// # Errors
    /// When `base` cannot be read; the step may be retried.
    pub fn next<S: OrderedState + ?Sized>(
        &mut self,
        base: &S,
        journal: &Journal,
    ) -> Result<Option<KeyValue>, S::Error> {
        if self.record.exhausted {
            return Ok(None);
        }
        loop {
            if let Peek::Unknown = self.peek {
                let range = &self.record.range;
                self.peek = match base.next(range, self.record.position())? {
                    Some((key, entry)) => Peek::Entry(key, entry),
                    None => Peek::End,
                };
            }
            let range = &self.record.range;
            let over = journal.next(range, self.record.position());
            match (core::mem::replace(&mut self.peek, Peek::Unknown), over) {
                (Peek::Entry(key, entry), over)
                    if over.is_none_or(|(o, _)| range.precedes(&key, o)) =>
                {
                    self.record.reads.push((key.clone(), entry.version));
                    self.record.last = Last::Read;
                    return Ok(Some((key, entry.value)));
                }
                (peek, Some((key, value))) => {
                    // A base entry at the journal's key is hidden; one after it stays ahead.
                    self.peek = match peek {
                        Peek::Entry(b, _) if b.as_slice() == key => Peek::Unknown,
                        peek => peek,
                    };
                    self.record.masked.push(key.to_vec());
                    self.record.last = Last::Masked;
                    if let Some(value) = value {
                        return Ok(Some((key.to_vec(), value.to_vec())));
                    }
                }
                (_, None) => {
                    self.peek = Peek::End;
                    self.record.exhausted = true;
                    return Ok(None);
                }
            }
        }
    }

    /// What the cursor observed so far.
    pub fn record(&self) -> &ScanRecord {
        &self.record
    }

    /// What the cursor observed, for the read set.
    pub fn into_record(self) -> ScanRecord {
        self.record
    }
}

/// A [`Cursor`] bound to a base state and a journal for its lifetime.
///
/// # Examples
/// ```
/// use synor_core::state::{Journal, MemState, OrderedState, Range, Scan, Version};
///
/// let v = |tx| Version { block: 7, tx, incarnation: 0 };
/// let mut base = MemState::new();
/// base.insert(b"a/1".to_vec(), b"one".to_vec(), v(0));
/// base.insert(b"a/2".to_vec(), b"two".to_vec(), v(1));
/// base.insert(b"b/1".to_vec(), b"other".to_vec(), v(1));
/// let mut journal = Journal::new();
/// journal.remove(b"a/1");
/// journal.put(b"a/3", b"three".to_vec());
///
/// let mut scan = Scan::new(&base, &journal, Range::prefix(b"a/"));
/// assert_eq!(scan.next()?, Some((b"a/2".to_vec(), b"two".to_vec())));
/// let record = scan.record().clone();
/// assert!(record.still_valid(&base)?);
///
/// // Another transaction inserts a key the scan passed: a phantom.
/// let mut later = base.clone();
/// later.insert(b"a/0".to_vec(), b"zero".to_vec(), v(2));
/// assert!(!record.still_valid(&later)?);
/// // One beyond where the scan stopped changes nothing it observed.
/// let mut later = base.clone();
/// later.insert(b"a/4".to_vec(), b"four".to_vec(), v(2));
/// assert!(record.still_valid(&later)?);
/// # Ok::<(), core::convert::Infallible>(())
/// ```
pub struct Scan<'a, S: ?Sized> {
    base: &'a S,
    journal: &'a Journal,
    cursor: Cursor,
}

impl<'a, S: OrderedState + ?Sized> Scan<'a, S> {
    /// A scan of `range` over `journal` and `base`.
    pub fn new(base: &'a S, journal: &'a Journal, range: Range) -> Self {
        Self {
            base,
            journal,
            cursor: Cursor::new(range),
        }
    }

    /// The next visible key and its value, or `None` at the end of the range
    /// ([`Cursor::next`]).
    ///
    /// # Errors
    /// When the base state cannot be read.
    #[expect(
        clippy::should_implement_trait,
        reason = "fallible steps: `Result<Option<_>>` takes `?`, as a cursor's `db_next` does"
    )]
    pub fn next(&mut self) -> Result<Option<KeyValue>, S::Error> {
        self.cursor.next(self.base, self.journal)
    }

    /// What the scan observed so far.
    pub fn record(&self) -> &ScanRecord {
        self.cursor.record()
    }

    /// The scan's cursor, to continue apart from the borrows.
    pub fn into_cursor(self) -> Cursor {
        self.cursor
    }
}
