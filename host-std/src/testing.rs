//! Fault injection for crash tests (feature `testing`): not part of the host's API.
//!
//! [`CrashKv`] is a [`RedbKv`] on a storage backend that counts the writes, length changes and
//! syncs redb makes inside [`KvStore::apply`], and kills the process (`SIGKILL`: no destructor,
//! no flush) right after the one chosen, so that the kill lands in the middle of a commit. What
//! then reaches the file is what a [`Loss`] leaves: everything written (a process crash), or
//! only what was synced, whole or with any part of the unsynced writes (a power loss).
//! [`store_with_steps`] reports each step of an artifact write, to kill the writer at each.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use redb::backends::FileBackend;
use redb::{BackendError, Database, StorageBackend};
use synor_core::Digest;
use synor_core::host::{KvStore, WriteBatch};

use crate::{FsArtifactCache, RedbKv};

pub use crate::artifact::steps::Step;

/// The granularity at which [`Loss::Torn`] keeps or loses unsynced writes.
pub const SECTOR: u64 = 512;

/// What of the file survives the kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// A process crash: every write made reaches the file (the operating system keeps it).
    Process,
    /// A power loss that keeps only what was synced.
    Unsynced,
    /// A power loss that keeps what was synced and, chosen by the seed, some of what was not:
    /// each length change and each [`SECTOR`]-aligned piece of each write since the last sync
    /// is kept or lost, independently, and those kept are applied in order.
    Torn(u64),
}

/// Backend operations made inside [`KvStore::apply`], by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Writes.
    pub writes: u64,
    /// Length changes.
    pub set_lens: u64,
    /// Syncs.
    pub syncs: u64,
}

/// An operation a power loss may lose.
#[derive(Debug)]
enum Unsynced {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

#[derive(Debug)]
struct State {
    loss: Loss,
    /// Inside [`KvStore::apply`]: operations count.
    armed: bool,
    counted: u64,
    kinds: Counts,
    /// Kill right after this counted operation.
    kill_at: Option<u64>,
    /// With a power loss to simulate: the file as the process sees it, while the file on disk
    /// holds only what was synced; and the operations since the last sync.
    live: Vec<u8>,
    unsynced: Vec<Unsynced>,
}

/// A redb backend over a file that counts operations and kills the process as planned.
#[derive(Debug)]
struct CrashBackend {
    file: FileBackend,
    state: Arc<Mutex<State>>,
}

impl CrashBackend {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts an operation just made, and kills the process if it is the one planned.
    fn count(&self, state: &mut State, kind: fn(&mut Counts) -> &mut u64) -> io::Result<()> {
        if !state.armed {
            return Ok(());
        }
        state.counted += 1;
        *kind(&mut state.kinds) += 1;
        if state.kill_at != Some(state.counted) {
            return Ok(());
        }
        if let Loss::Torn(seed) = state.loss {
            let mut rng = seed;
            for op in &state.unsynced {
                match op {
                    Unsynced::SetLen(len) => {
                        if coin(&mut rng) {
                            self.file.set_len(*len)?;
                        }
                    }
                    Unsynced::Write(offset, data) => {
                        let mut at = *offset;
                        let end = offset + data.len() as u64;
                        while at < end {
                            let next = ((at / SECTOR + 1) * SECTOR).min(end);
                            if coin(&mut rng) {
                                let from = (at - offset) as usize;
                                let to = (next - offset) as usize;
                                self.file.write(at, &data[from..to])?;
                            }
                            at = next;
                        }
                    }
                }
            }
        }
        kill_this_process()
    }
}

/// One pseudo-random bit (splitmix64).
fn coin(state: &mut u64) -> bool {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) & 1 == 1
}

impl StorageBackend for CrashBackend {
    fn len(&self) -> io::Result<u64> {
        let state = self.state();
        if state.loss == Loss::Process {
            return self.file.len();
        }
        Ok(state.live.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let state = self.state();
        if state.loss == Loss::Process {
            return self.file.read(offset, out);
        }
        let from = usize::try_from(offset).map_err(io::Error::other)?;
        let bytes = from
            .checked_add(out.len())
            .and_then(|to| state.live.get(from..to))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        out.copy_from_slice(bytes);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = self.state();
        if state.loss == Loss::Process {
            self.file.set_len(len)?;
        } else {
            state
                .live
                .resize(usize::try_from(len).map_err(io::Error::other)?, 0);
            state.unsynced.push(Unsynced::SetLen(len));
        }
        self.count(&mut state, |c| &mut c.set_lens)
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut state = self.state();
        for op in std::mem::take(&mut state.unsynced) {
            match op {
                Unsynced::SetLen(len) => self.file.set_len(len)?,
                Unsynced::Write(offset, data) => self.file.write(offset, &data)?,
            }
        }
        self.file.sync_data()?;
        self.count(&mut state, |c| &mut c.syncs)
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut state = self.state();
        if state.loss == Loss::Process {
            self.file.write(offset, data)?;
        } else {
            let from = usize::try_from(offset).map_err(io::Error::other)?;
            let to = from
                .checked_add(data.len())
                .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
            if to > state.live.len() {
                state.live.resize(to, 0);
            }
            state.live[from..to].copy_from_slice(data);
            state.unsynced.push(Unsynced::Write(offset, data.to_vec()));
        }
        self.count(&mut state, |c| &mut c.writes)
    }

    fn close(&self) -> io::Result<()> {
        // A clean close: what is not synced still reaches the operating system.
        let mut state = self.state();
        for op in std::mem::take(&mut state.unsynced) {
            match op {
                Unsynced::SetLen(len) => self.file.set_len(len)?,
                Unsynced::Write(offset, data) => self.file.write(offset, &data)?,
            }
        }
        self.file.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.file.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.query_lock_range(start, end)
    }
}

/// A [`RedbKv`] that kills the process inside a commit.
pub struct CrashKv {
    kv: RedbKv,
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for CrashKv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrashKv")
            .field("path", &self.kv.path())
            .field("counted", &self.counted())
            .finish_non_exhaustive()
    }
}

impl CrashKv {
    /// Opens the database at `path` (created if missing), with the durability settings of
    /// [`RedbKv`], on a backend that counts operations inside commits and leaves the file as
    /// `loss` says when it kills the process. It kills nothing until
    /// [`kill_after`](Self::kill_after).
    ///
    /// # Errors
    /// The file cannot be opened or read; redb failures.
    pub fn open(path: &Path, loss: Loss) -> Result<Self, redb::Error> {
        Self::open_with(path, loss, None)
    }

    /// As [`open`](Self::open), but the open's own backend operations count too (a reopen
    /// after a crash repairs the database and marks it open, and the store's table is
    /// committed), and the process is killed right after the `at`-th of them: a crash during
    /// recovery.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_killing_at(path: &Path, loss: Loss, at: u64) -> Result<Self, redb::Error> {
        Self::open_with(path, loss, Some(at))
    }

    fn open_with(path: &Path, loss: Loss, kill_at: Option<u64>) -> Result<Self, redb::Error> {
        let (db, state) = crash_database(path, loss, kill_at)?;
        let kv = Self {
            kv: RedbKv::with_database(std::sync::Arc::new(db), path.to_path_buf())?,
            state,
        };
        kv.arm(false);
        Ok(kv)
    }

    /// Backend writes, length changes and syncs made inside [`KvStore::apply`] (and in the
    /// open, if [`open_killing_at`](Self::open_killing_at)) so far.
    pub fn counted(&self) -> u64 {
        self.state().counted
    }

    /// The operations [`counted`](Self::counted), by kind.
    pub fn counts(&self) -> Counts {
        self.state().kinds
    }

    /// Kills the process right after `n` more backend writes, length changes or syncs inside
    /// [`KvStore::apply`] (the `n`-th from now, counting from one).
    pub fn kill_after(&self, n: u64) {
        let mut state = self.state();
        state.kill_at = Some(state.counted + n);
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn arm(&self, armed: bool) {
        self.state().armed = armed;
    }
}

/// A database at `path` on the crash backend, and the backend's state (armed when `kill_at`
/// is given).
fn crash_database(
    path: &Path,
    loss: Loss,
    kill_at: Option<u64>,
) -> Result<(Database, Arc<Mutex<State>>), redb::Error> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let live = match loss {
        Loss::Process => Vec::new(),
        _ => read_all(&file)?,
    };
    let state = Arc::new(Mutex::new(State {
        loss,
        armed: kill_at.is_some(),
        counted: 0,
        kinds: Counts::default(),
        kill_at,
        live,
        unsynced: Vec::new(),
    }));
    let backend = CrashBackend {
        file: FileBackend::new(file)?,
        state: state.clone(),
    };
    let db = Database::builder().create_with_backend(backend)?;
    Ok((db, state))
}

/// The control of a database on the crash backend, for writers other than [`CrashKv`] (a
/// node, whose block commits are write transactions of its own): it counts the backend's
/// writes, length changes and syncs while armed, and kills the process after the chosen one.
pub struct CrashDb {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for CrashDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrashDb").finish_non_exhaustive()
    }
}

impl CrashDb {
    /// Opens the database at `path` (created if missing) on the crash backend, leaving the
    /// file as `loss` says when it kills the process; unarmed.
    ///
    /// # Errors
    /// The file cannot be opened or read; redb failures.
    pub fn open(path: &Path, loss: Loss) -> Result<(Database, Self), redb::Error> {
        let (db, state) = crash_database(path, loss, None)?;
        let control = Self { state };
        control.arm(false);
        Ok((db, control))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts backend operations from now on (or stops counting).
    pub fn arm(&self, armed: bool) {
        self.state().armed = armed;
    }

    /// Operations counted so far.
    pub fn counted(&self) -> u64 {
        self.state().counted
    }

    /// Kills the process right after `n` more counted operations.
    pub fn kill_after(&self, n: u64) {
        let mut state = self.state();
        state.kill_at = Some(state.counted + n);
    }
}

fn read_all(file: &File) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    let mut file = file;
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

impl KvStore for CrashKv {
    type Error = redb::Error;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, redb::Error> {
        self.kv.get(key)
    }

    fn scan(&self, prefix: &[u8], visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), redb::Error> {
        self.kv.scan(prefix, visit)
    }

    fn apply(&mut self, batch: WriteBatch) -> Result<(), redb::Error> {
        self.arm(true);
        let applied = self.kv.apply(batch);
        self.arm(false);
        applied
    }
}

/// [`ArtifactCache::store`](synor_core::tier::ArtifactCache::store), reporting each step of the
/// write to `step` in the order taken.
pub fn store_with_steps(
    cache: &FsArtifactCache,
    key: &Digest,
    artifact: &[u8],
    step: &mut dyn FnMut(Step),
) {
    cache.store_with(key, artifact, step);
}

/// Kills this process at once, as a crash would: no destructor runs, no buffer is flushed
/// (`SIGKILL` on Unix, an abort elsewhere).
pub fn kill_this_process() -> ! {
    #[cfg(unix)]
    {
        use rustix::process::{Signal, getpid, kill_process};
        let _ = kill_process(getpid(), Signal::KILL);
    }
    std::process::abort()
}
