//! The journaled overlay of one transaction.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use super::{Range, first};
use crate::digest::Digest;

/// The writes of one transaction over its base state, with nested checkpoints.
///
/// The journal holds the transaction's current writes (a value, or a removal) by key, and an
/// undo log of what each write replaced, as revm's journal does. A [`Checkpoint`] marks the
/// log's length; [`revert`](Self::revert) undoes the log back to that mark and
/// [`commit`](Self::commit) forgets the mark, folding the checkpoint's writes into the
/// enclosing one. Costs:
///
/// - [`checkpoint`](Self::checkpoint) and [`commit`](Self::commit): O(1), whatever the size of
///   the state or the journal (a push and a pop of a mark).
/// - [`revert`](Self::revert): O(k log n) for k keys written since the checkpoint among n.
/// - A write logs what it replaces only the first time it touches a key within the innermost
///   checkpoint, and not at all while no checkpoint is open: a key written again and again in
///   one call frame takes one undo record, not one per write.
///
/// Checkpoints nest last-in first-out: only the innermost open one may be reverted or
/// committed. Anything else (an outer checkpoint while an inner one is open, or one already
/// reverted or committed) is refused with a [`CheckpointError`] and leaves the journal as it
/// was. Checkpoints are numbered per journal and never reused (not even across
/// [`clear`](Self::clear)); a checkpoint of another journal is a caller's mistake this cannot
/// always tell apart from one of its own.
///
/// # Examples
/// ```
/// use synor_core::state::{Journal, Lookup};
///
/// let mut journal = Journal::new();
/// journal.put(b"balance/alice", b"90".to_vec());
///
/// // A call that fails: its writes are undone.
/// let call = journal.checkpoint();
/// journal.put(b"balance/alice", b"0".to_vec());
/// journal.remove(b"balance/bob");
/// journal.revert(call)?;
/// assert_eq!(journal.get(b"balance/alice"), Lookup::Value(b"90"));
/// assert_eq!(journal.get(b"balance/bob"), Lookup::Untouched);
///
/// // A call that returns: its writes become the caller's.
/// let call = journal.checkpoint();
/// journal.put(b"balance/bob", b"10".to_vec());
/// let inner = journal.checkpoint();
/// journal.remove(b"balance/carol");
/// journal.commit(inner)?;
/// journal.commit(call)?;
/// assert!(journal.revert(call).is_err(), "already committed");
///
/// let diff: Vec<_> = journal.writes().collect();
/// assert_eq!(diff, [
///     (b"balance/alice".as_slice(), Some(b"90".as_slice())),
///     (b"balance/bob".as_slice(), Some(b"10".as_slice())),
///     (b"balance/carol".as_slice(), None),
/// ]);
/// # Ok::<(), synor_core::state::CheckpointError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Journal {
    writes: BTreeMap<Vec<u8>, Slot>,
    undo: Vec<Undo>,
    /// Open checkpoints, innermost last.
    open: Vec<Mark>,
    /// The last checkpoint number handed out (0: none; the frame outside every checkpoint).
    last_id: u64,
}

/// A key's current write, and the checkpoint within which it was last logged.
#[derive(Clone, Debug)]
struct Slot {
    value: Option<Vec<u8>>,
    frame: u64,
}

/// What a write replaced: the key's previous slot, or nothing (the key was untouched).
#[derive(Clone, Debug)]
struct Undo {
    key: Vec<u8>,
    prev: Option<Slot>,
}

#[derive(Clone, Copy, Debug)]
struct Mark {
    id: u64,
    undo_len: usize,
}

/// A point in a [`Journal`] to revert to or commit ([`Journal::checkpoint`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Checkpoint {
    id: u64,
}

/// What a [`Journal`] holds for a key ([`Journal::get`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lookup<'a> {
    /// The transaction has not written the key: read the base state.
    Untouched,
    /// The transaction wrote this value.
    Value(&'a [u8]),
    /// The transaction removed the key.
    Removed,
}

/// A checkpoint used out of order: the journal is left as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The checkpoint is not open: already reverted or committed, inside one that was, or of
    /// another journal.
    NotOpen,
    /// The checkpoint is open, but checkpoints opened after it still are: those close first.
    NotInnermost {
        /// How many checkpoints are open inside it.
        inner: usize,
    },
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointError::NotOpen => f.write_str("checkpoint is not open"),
            CheckpointError::NotInnermost { inner } => {
                write!(f, "checkpoint has {inner} open checkpoints inside it")
            }
        }
    }
}

impl core::error::Error for CheckpointError {}

impl Journal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: &[u8], value: Vec<u8>) {
        self.set(key, Some(value));
    }

    /// Removes `key`: reads see no value, whatever the base state holds.
    pub fn remove(&mut self, key: &[u8]) {
        self.set(key, None);
    }

    fn set(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        let frame = self.frame();
        let logging = !self.open.is_empty();
        match self.writes.get_mut(key) {
            // Logged within this checkpoint already, or no checkpoint to revert to.
            Some(slot) if slot.frame == frame || !logging => {
                *slot = Slot { value, frame };
            }
            Some(slot) => {
                let prev = core::mem::replace(slot, Slot { value, frame });
                self.undo.push(Undo {
                    key: key.to_vec(),
                    prev: Some(prev),
                });
            }
            None => {
                self.writes.insert(key.to_vec(), Slot { value, frame });
                if logging {
                    self.undo.push(Undo {
                        key: key.to_vec(),
                        prev: None,
                    });
                }
            }
        }
    }

    /// The innermost open checkpoint's number (0 when none is open).
    fn frame(&self) -> u64 {
        self.open.last().map_or(0, |m| m.id)
    }

    /// What the transaction holds for `key`.
    pub fn get(&self, key: &[u8]) -> Lookup<'_> {
        match self.writes.get(key) {
            None => Lookup::Untouched,
            Some(Slot { value: None, .. }) => Lookup::Removed,
            Some(Slot { value: Some(v), .. }) => Lookup::Value(v),
        }
    }

    /// Opens a checkpoint inside the open ones. O(1).
    pub fn checkpoint(&mut self) -> Checkpoint {
        self.last_id += 1;
        self.open.push(Mark {
            id: self.last_id,
            undo_len: self.undo.len(),
        });
        Checkpoint { id: self.last_id }
    }

    /// Undoes every write made since `cp` was opened and closes it.
    ///
    /// # Errors
    /// When `cp` is not the innermost open checkpoint; the journal is then unchanged.
    pub fn revert(&mut self, cp: Checkpoint) -> Result<(), CheckpointError> {
        let mark = self.close(cp)?;
        while self.undo.len() > mark.undo_len {
            let Some(Undo { key, prev }) = self.undo.pop() else {
                break;
            };
            match prev {
                None => {
                    self.writes.remove(&key);
                }
                Some(slot) => {
                    self.writes.insert(key, slot);
                }
            }
        }
        Ok(())
    }

    /// Closes `cp`, keeping its writes: they now belong to the enclosing checkpoint (and are
    /// undone if that one is reverted). O(1).
    ///
    /// # Errors
    /// When `cp` is not the innermost open checkpoint; the journal is then unchanged.
    pub fn commit(&mut self, cp: Checkpoint) -> Result<(), CheckpointError> {
        self.close(cp).map(|_| ())
    }

    fn close(&mut self, cp: Checkpoint) -> Result<Mark, CheckpointError> {
        match self.open.iter().rposition(|m| m.id == cp.id) {
            Some(at) if at + 1 == self.open.len() => {
                self.open.pop().ok_or(CheckpointError::NotOpen)
            }
            Some(at) => Err(CheckpointError::NotInnermost {
                inner: self.open.len() - at - 1,
            }),
            None => Err(CheckpointError::NotOpen),
        }
    }

    /// The number of open checkpoints.
    pub fn depth(&self) -> usize {
        self.open.len()
    }

    /// The number of keys written or removed.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// Whether no key was written or removed.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// The number of undo records held: what reverting every open checkpoint would undo, plus
    /// records of committed outermost checkpoints, kept until [`clear`](Self::clear).
    pub fn undo_len(&self) -> usize {
        self.undo.len()
    }

    /// The transaction's state diff: every key written or removed, in key order, with its
    /// value (`None`: removed).
    pub fn writes(&self) -> impl DoubleEndedIterator<Item = (&[u8], Option<&[u8]>)> {
        self.writes
            .iter()
            .map(|(k, s)| (k.as_slice(), s.value.as_deref()))
    }

    /// [`writes`](Self::writes), by value.
    pub fn into_writes(self) -> impl DoubleEndedIterator<Item = (Vec<u8>, Option<Vec<u8>>)> {
        self.writes.into_iter().map(|(k, s)| (k, s.value))
    }

    /// The [`diff_digest`](super::diff_digest) of [`writes`](Self::writes).
    pub fn digest(&self) -> Digest {
        super::diff_digest(self.writes())
    }

    /// The first write in `range` strictly after `after` (from the range's start for `None`)
    /// in the range's direction, with its value (`None`: removed).
    pub fn next<'a>(
        &'a self,
        range: &Range,
        after: Option<&[u8]>,
    ) -> Option<(&'a [u8], Option<&'a [u8]>)> {
        first(&self.writes, range, after).map(|(k, s)| (k.as_slice(), s.value.as_deref()))
    }

    /// Forgets every write and checkpoint, keeping the allocations; checkpoints handed out
    /// before stay invalid.
    pub fn clear(&mut self) {
        self.writes.clear();
        self.undo.clear();
        self.open.clear();
    }
}
