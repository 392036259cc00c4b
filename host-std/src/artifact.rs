//! [`FsArtifactCache`]: the core's [`ArtifactCache`] in a directory, one file per artifact,
//! each authenticated together with its key under a node-local secret.
//!
//! Compiled artifacts (1–20 MB of machine code for the engines' tiers) survive restarts so that
//! a node does not recompile every hot contract when it starts. Engines map a loaded artifact
//! as executable code, so a file the node did not write for that very key must never load:
//! otherwise whoever can write the directory runs native code in the node (renaming one
//! contract's artifact over another's is enough). Each file therefore carries a MAC, keyed
//! blake3 under a key derived from the node's [`ArtifactSecret`], over the artifact's key, the
//! file's header and its compressed content. A load checks the MAC (in constant time) before
//! it decompresses anything. A file that fails any check (changed, renamed from another key,
//! written under another node's secret, damaged, or of another format version) is deleted,
//! counted in [`FsArtifactCache::rejected`] and reported to the hook set with
//! [`FsArtifactCache::on_rejection`] (the CLI prints a warning); the engine then compiles
//! again. The directory itself need not be trusted; the secret must be: see
//! [`FsArtifactCache::open`], which is `unsafe` for that reason.
//!
//! Each artifact is one file named after its key, `<64 hex digits>.art`:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `SYNA` |
//! | 1 | format version, [`FORMAT_VERSION`] |
//! | 8 | uncompressed length, little-endian |
//! | 32 | MAC: keyed blake3 of the artifact key (32 bytes), the 13 bytes above and the frame |
//! | rest | one zstd frame (recording its content size) |
//!
//! A file is written under a temporary name in the same directory, synced, renamed over the
//! final name, and the directory synced, so that a reader (thread or process) sees a whole file
//! or none, whatever number of writers store the same key at once, and the new name survives a
//! power loss. A writer holds a lock on its temporary file until the rename; the next store
//! deletes temporary files nobody holds, left by writers that crashed.
//!
//! The directory is bounded by [`CacheLimits`], softly: after every store, the least recently
//! used artifacts (oldest modification time; a load refreshes it) are deleted until the
//! directory is within both limits again.

use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use synor_core::Digest;
use synor_core::tier::ArtifactCache;

/// The first bytes of every artifact file.
pub const MAGIC: [u8; 4] = *b"SYNA";

/// The version of the file format written; files of any other version are rejected. Version 1
/// files carried an unkeyed digest and are recompiled.
pub const FORMAT_VERSION: u8 = 2;

/// Bytes before the zstd frame: magic, version, length, MAC.
pub const HEADER_BYTES: usize = 4 + 1 + 8 + 32;

/// The header bytes before the MAC, all of which the MAC covers.
const FIELDS_BYTES: usize = 4 + 1 + 8;

/// The largest artifact stored or loaded, compressed or not (1 GiB). Larger artifacts are not
/// stored, and larger files or declared lengths are rejected without being read.
pub const MAX_ARTIFACT_BYTES: u64 = 1 << 30;

/// The blake3 key-derivation context of the MAC key: a secret given for other uses too
/// authenticates artifacts under a key of their own.
const MAC_CONTEXT: &str = "synor 2025-01 artifact cache MAC v2";

/// The suffix of artifact files.
const SUFFIX: &str = ".art";

/// The prefix of files being written.
const TEMP_PREFIX: &str = ".tmp-";

/// Age after which a temporary file is taken for a crashed writer's and deleted, on file systems
/// without locks (elsewhere an unlocked one is deleted at once).
const TEMP_EXPIRY: Duration = Duration::from_secs(60 * 60);

/// zstd level: artifacts are large and written once, read at every restart.
const ZSTD_LEVEL: i32 = 3;

/// The node-local secret under which a node authenticates its artifacts: 32 random bytes that
/// never leave the node. Only a key derived from it is kept, and neither is ever printed.
#[derive(Clone)]
pub struct ArtifactSecret {
    mac_key: [u8; 32],
}

impl fmt::Debug for ArtifactSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ArtifactSecret(..)")
    }
}

impl ArtifactSecret {
    /// Bytes of a secret (and of its file).
    pub const BYTES: usize = 32;

    /// The secret `bytes`, e.g. derived by the caller from a node key it already keeps. They
    /// must be secret and random: whoever knows them can make this node load native code.
    pub fn from_bytes(bytes: [u8; Self::BYTES]) -> Self {
        Self {
            mac_key: blake3::derive_key(MAC_CONTEXT, &bytes),
        }
    }

    /// A new random secret from the operating system's generator.
    ///
    /// # Errors
    /// The operating system has no random bytes to give.
    pub fn generate() -> io::Result<Self> {
        Ok(Self::from_bytes(random()?))
    }

    /// The secret in the file `path`, created with fresh random bytes if missing.
    ///
    /// A new file gets mode 0600 and is linked into place whole (written under a temporary
    /// name, synced, hard-linked to `path`, the directory synced), so that processes creating
    /// it at once all end up with the one that won. Missing directories are created with mode
    /// 0700. Keep the file outside the artifact directory, which need not be private: the
    /// secret must be.
    ///
    /// # Errors
    /// The file cannot be read or created (creating needs hard links in its directory); it is
    /// not a regular file or does not hold exactly [`BYTES`](Self::BYTES) bytes; or, on Unix,
    /// it is a symbolic link, is not owned by this process's effective user, or is readable or
    /// writable by group or others. Such a file is left alone: the error says what to fix.
    pub fn load_or_create(path: impl AsRef<Path>) -> io::Result<Self> {
        load_or_create_secret(path.as_ref(), &mut |_| {})
    }
}

pub(crate) mod steps {
    /// The steps of a durable file write, reported to tests in the order taken (crash tests
    /// kill the writer at each).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Step {
        /// A new, empty temporary file exists.
        Created,
        /// The bytes were written to it, not synced.
        Written,
        /// It was synced.
        SyncedFile,
        /// It got its final name (renamed or linked).
        Named,
        /// The directory was synced, so that the name survives a power loss.
        SyncedDir,
    }
}

use steps::Step;

/// [`ArtifactSecret::load_or_create`], reporting its durability steps to `step`.
fn load_or_create_secret(path: &Path, step: &mut dyn FnMut(Step)) -> io::Result<ArtifactSecret> {
    match read_secret(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        read => return read,
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a file name", path.display()),
        )
    })?;
    create_private_dir(dir)?;
    let secret = random()?;
    let temp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        hex(&random::<8>()?)
    ));
    write_new(&temp, &secret, step)?;
    // A hard link never replaces an existing file, unlike a rename: of processes creating the
    // secret at once, the first one's stays and the others read it.
    let linked = fs::hard_link(&temp, path);
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            step(Step::Named);
            sync_dir(dir)?;
            step(Step::SyncedDir);
            Ok(ArtifactSecret::from_bytes(secret))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_secret(path),
        Err(e) => Err(e),
    }
}

/// The secret in the existing file `path`, if the file is fit to hold one.
///
/// # Errors
/// See [`ArtifactSecret::load_or_create`].
fn read_secret(path: &Path) -> io::Result<ArtifactSecret> {
    let refuse = |kind, why: String| io::Error::new(kind, format!("{}: {why}", path.display()));
    // Not through a symbolic link, which could point at any file of this user's.
    let mut file = open_plain(path).map_err(|e| {
        if is_symlink(&e) {
            refuse(
                io::ErrorKind::InvalidInput,
                "the artifact secret is a symbolic link; refusing it".into(),
            )
        } else {
            e
        }
    })?;
    // The checks apply to the file opened, not to whatever the path names by now.
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(refuse(
            io::ErrorKind::InvalidInput,
            "the artifact secret is not a regular file".into(),
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        check_private(meta.mode(), meta.uid(), rustix::process::geteuid().as_raw())
            .map_err(|why| refuse(io::ErrorKind::PermissionDenied, why))?;
    }
    let mut bytes = Vec::with_capacity(ArtifactSecret::BYTES);
    Read::by_ref(&mut file)
        .take(ArtifactSecret::BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    let secret: [u8; ArtifactSecret::BYTES] = bytes.as_slice().try_into().map_err(|_| {
        refuse(
            io::ErrorKind::InvalidData,
            format!(
                "the artifact secret has {} bytes, not {}; delete it to make a new one",
                meta.len(),
                ArtifactSecret::BYTES
            ),
        )
    })?;
    Ok(ArtifactSecret::from_bytes(secret))
}

/// Opens `path` for reading, but not through a final symbolic link (an error that
/// [`is_symlink`] recognises) and without waiting for a writer if it is a FIFO: whoever can
/// write the directory can neither point the read at another file nor stall it. The caller
/// then checks that the file opened is a regular file.
fn open_plain(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use rustix::fs::OFlags;
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32);
    }
    options.open(path)
}

/// Whether `e` is [`open_plain`]'s refusal of a symbolic link.
fn is_symlink(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

/// Why a secret file of `mode`, owned by `owner`, must not be trusted by user `me`.
#[cfg(unix)]
fn check_private(mode: u32, owner: u32, me: u32) -> Result<(), String> {
    if owner != me {
        return Err(format!(
            "the artifact secret is owned by user {owner}, not by this process's user {me}; \
             another user could have chosen it"
        ));
    }
    if mode & 0o077 != 0 {
        return Err(format!(
            "the artifact secret has mode {:04o}: group or others may read or replace it; \
             delete it to make a new one (every artifact is then compiled again)",
            mode & 0o7777
        ));
    }
    Ok(())
}

/// `N` bytes from the operating system's random generator.
fn random<const N: usize>() -> io::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|e| io::Error::other(format!("no random bytes from the system: {e}")))?;
    Ok(bytes)
}

/// `bytes` in lowercase hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates `dir` and its missing parents, those created with mode 0700 on Unix. Existing
/// directories keep their modes.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Syncs the directory `dir`, so that the names just created or renamed in it survive a power
/// loss.
///
/// # Errors
/// The directory cannot be opened or synced.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    // Elsewhere a directory cannot be opened as a file; the rename is all there is.
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Why a load rejected (and deleted) an artifact file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// Not an artifact file: not a regular file (a symbolic link, a FIFO, a directory),
    /// shorter than a header, larger than [`MAX_ARTIFACT_BYTES`], or without the magic.
    Malformed,
    /// An artifact file of another format version (this one, a version 1 file of an older
    /// synor, is not authenticated).
    Version(u8),
    /// The MAC does not match: the file was changed, renamed from another key's, written under
    /// another node's secret, or damaged. It was not loaded.
    Unauthentic,
    /// Authentic but undecodable: its frame does not hold the declared length (a writer's
    /// bug, never an attack).
    Undecodable,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Malformed => {
                f.write_str("not an artifact file (not a regular file, or bad size or magic)")
            }
            Rejection::Version(v) => write!(
                f,
                "artifact file of format version {v}, not {FORMAT_VERSION}"
            ),
            Rejection::Unauthentic => f.write_str(
                "artifact file fails authentication (changed, moved from another key, written \
                 by another node, or damaged)",
            ),
            Rejection::Undecodable => {
                f.write_str("authentic artifact file whose content does not decode")
            }
        }
    }
}

/// A hook called with every rejected file and the reason.
type RejectionHook = Box<dyn Fn(&Path, Rejection) + Send + Sync>;

/// Soft bounds of an artifact directory, enforced after every store by deleting the least
/// recently used artifacts. Temporary files of writers in progress are not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Bytes of artifact files (as stored: compressed, with headers).
    pub max_bytes: u64,
    /// Number of artifact files.
    pub max_files: usize,
}

impl CacheLimits {
    /// 1 GiB in at most 10 000 files: at least fifty artifacts of the usual 1–20 MB, more
    /// as they compress.
    pub const DEFAULT: CacheLimits = CacheLimits {
        max_bytes: 1 << 30,
        max_files: 10_000,
    };
}

impl Default for CacheLimits {
    /// [`CacheLimits::DEFAULT`].
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Compiled artifacts in a directory: an [`ArtifactCache`] that survives restarts, is shared
/// safely by every thread and process using the same directory and secret, and loads only
/// artifacts stored under the same key and secret.
pub struct FsArtifactCache {
    dir: PathBuf,
    limits: CacheLimits,
    mac_key: [u8; 32],
    on_rejection: Option<RejectionHook>,
    hits: AtomicU64,
    misses: AtomicU64,
    rejected: AtomicU64,
    stores: AtomicU64,
}

impl fmt::Debug for FsArtifactCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FsArtifactCache")
            .field("dir", &self.dir)
            .field("limits", &self.limits)
            .field("hits", &self.hits)
            .field("misses", &self.misses)
            .field("rejected", &self.rejected)
            .field("stores", &self.stores)
            .finish_non_exhaustive()
    }
}

impl FsArtifactCache {
    /// The cache in `dir`, created if missing (mode 0700 on Unix), bounded by `limits`, whose
    /// artifacts are authenticated under `secret`.
    ///
    /// The directory may be writable by others: a file there loads only if it was stored
    /// under the same key through a cache opened with the same secret.
    ///
    /// # Safety
    /// Engines map what [`load`](ArtifactCache::load) returns as executable code, so the
    /// caller guarantees, for as long as any cache opened with `secret` is used:
    /// - `secret` is known only to this node: nobody else can read it or choose it (e.g. it
    ///   comes from [`ArtifactSecret::load_or_create`] on a file only this node's user can
    ///   read and replace, or from [`ArtifactSecret::generate`]);
    /// - only engines [`store`](ArtifactCache::store) into such caches, each its own
    ///   compiled output under the key it derives for it. `store` is a safe method, so this
    ///   is a promise about how the whole program uses the cache.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub unsafe fn open(
        dir: impl Into<PathBuf>,
        secret: &ArtifactSecret,
        limits: CacheLimits,
    ) -> io::Result<Self> {
        let dir = dir.into();
        create_private_dir(&dir)?;
        Ok(Self {
            dir,
            limits,
            mac_key: secret.mac_key,
            on_rejection: None,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            stores: AtomicU64::new(0),
        })
    }

    /// Calls `hook` with the path and the reason of every file a load rejects (and deletes),
    /// e.g. to print a warning: a rejected file is recompiled, but an
    /// [unauthentic](Rejection::Unauthentic) one may mean someone tried to make the node run
    /// their code. The hook runs on the loading thread.
    #[must_use]
    pub fn on_rejection(mut self, hook: impl Fn(&Path, Rejection) + Send + Sync + 'static) -> Self {
        self.on_rejection = Some(Box::new(hook));
        self
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The limits.
    pub fn limits(&self) -> CacheLimits {
        self.limits
    }

    /// The file that holds the artifact of `key` (whether or not it exists).
    pub fn path_of(&self, key: &Digest) -> PathBuf {
        self.dir.join(format!("{key}{SUFFIX}"))
    }

    /// Loads that returned an artifact.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Loads that returned nothing (missing files and [rejected](Self::rejected) ones).
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// Files rejected and deleted by loads, for any [`Rejection`].
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Artifacts written completely.
    pub fn stores(&self) -> u64 {
        self.stores.load(Ordering::Relaxed)
    }

    /// Counts and reports the rejection of the file `path` (already deleted) for `why`.
    fn reject(&self, path: &Path, why: Rejection) -> Option<Vec<u8>> {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        self.misses.fetch_add(1, Ordering::Relaxed);
        if let Some(hook) = &self.on_rejection {
            hook(path, why);
        }
        None
    }

    /// [`ArtifactCache::store`], reporting its durability steps to `step`.
    pub(crate) fn store_with(&self, key: &Digest, artifact: &[u8], step: &mut dyn FnMut(Step)) {
        if artifact.len() as u64 > MAX_ARTIFACT_BYTES {
            return;
        }
        let Some(bytes) = encode(&self.mac_key, key, artifact) else {
            return;
        };
        let path = self.path_of(key);
        // A store cleaning up may take a temporary file for abandoned in the moment between its
        // creation and its locking: then the write starts again under another name.
        let mut attempts = 0;
        loop {
            let Ok(nonce) = random::<8>() else {
                return;
            };
            let temp = self.dir.join(format!(
                "{TEMP_PREFIX}{key}-{}-{}",
                std::process::id(),
                hex(&nonce),
            ));
            // The file stays open, and so locked, until it has its final name.
            let named = write_new(&temp, &bytes, step).and_then(|file| {
                fs::rename(&temp, &path)?;
                drop(file);
                Ok(())
            });
            match named {
                Ok(()) => break,
                Err(e) => {
                    let _ = fs::remove_file(&temp);
                    attempts += 1;
                    if e.kind() != io::ErrorKind::WouldBlock || attempts == 3 {
                        return;
                    }
                }
            }
        }
        step(Step::Named);
        // Without it the artifact may vanish at a power loss: that costs a compilation only.
        if sync_dir(&self.dir).is_ok() {
            step(Step::SyncedDir);
        }
        self.stores.fetch_add(1, Ordering::Relaxed);
        self.enforce_limits(&path);
    }

    /// Deletes least recently used artifacts until the directory is within the limits, and
    /// temporary files left by crashed writers. `just_stored` goes last.
    fn enforce_limits(&self, just_stored: &Path) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        let mut files = Vec::new();
        let mut total_bytes = 0u64;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            if name.starts_with(TEMP_PREFIX) {
                let expired = now
                    .duration_since(modified)
                    .is_ok_and(|age| age > TEMP_EXPIRY);
                remove_if_abandoned(&entry.path(), expired);
                continue;
            }
            if !is_artifact_name(name) {
                continue;
            }
            let path = entry.path();
            total_bytes = total_bytes.saturating_add(meta.len());
            files.push((path == just_stored, modified, meta.len(), path));
        }
        if total_bytes <= self.limits.max_bytes && files.len() <= self.limits.max_files {
            return;
        }
        // An artifact larger than the whole budget goes first, pushing out nothing else.
        if let Some(i) = files
            .iter()
            .position(|(current, _, len, _)| *current && *len > self.limits.max_bytes)
        {
            let (_, _, len, path) = files.swap_remove(i);
            let _ = fs::remove_file(&path);
            total_bytes = total_bytes.saturating_sub(len);
        }
        files.sort_unstable();
        let mut count = files.len();
        for (_, _, len, path) in files {
            if total_bytes <= self.limits.max_bytes && count <= self.limits.max_files {
                break;
            }
            // Another process may have deleted it already: it is gone either way.
            let _ = fs::remove_file(&path);
            total_bytes = total_bytes.saturating_sub(len);
            count -= 1;
        }
    }
}

impl ArtifactCache for FsArtifactCache {
    fn load(&self, key: &Digest) -> Option<Vec<u8>> {
        let path = self.path_of(key);
        let loaded = open_plain(&path).and_then(|mut file| {
            let artifact = read_checked(&mut file, &self.mac_key, key)?;
            if artifact.is_ok() {
                // Marks the artifact recently used; failing to only makes it evicted sooner.
                let _ = file.set_modified(SystemTime::now());
            } else {
                remove_if_same(&path, &file);
            }
            Ok(artifact)
        });
        match loaded {
            Ok(Ok(artifact)) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(artifact)
            }
            Ok(Err(why)) => self.reject(&path, why),
            Err(e) if is_symlink(&e) => {
                // The link, not what it points at.
                let _ = fs::remove_file(&path);
                self.reject(&path, Rejection::Malformed)
            }
            // Missing or unreadable: nothing to say about the file itself.
            Err(_) => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    fn store(&self, key: &Digest, artifact: &[u8]) {
        self.store_with(key, artifact, &mut |_| {});
    }
}

/// Reads the artifact file of `key` open in `file`, authenticated under `mac_key`.
///
/// # Errors
/// The file cannot be read.
fn read_checked(
    file: &mut File,
    mac_key: &[u8; 32],
    key: &Digest,
) -> io::Result<Result<Vec<u8>, Rejection>> {
    let bound = MAX_ARTIFACT_BYTES + HEADER_BYTES as u64;
    let meta = file.metadata()?;
    let declared = meta.len();
    if !meta.is_file() || declared > bound {
        return Ok(Err(Rejection::Malformed));
    }
    let mut bytes = Vec::with_capacity(declared as usize);
    Read::by_ref(file).take(bound + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > bound {
        return Ok(Err(Rejection::Malformed));
    }
    Ok(decode(mac_key, key, &bytes))
}

/// Writes `bytes` to the new file `path` (mode 0600 on Unix), durably, reporting the steps to
/// `step`. Returns the file, locked (where the file system has locks) for as long as it is
/// open.
///
/// # Errors
/// `path` exists or cannot be written, or another process locked it first (a store cleaning
/// up, which then deletes it).
fn write_new(path: &Path, bytes: &[u8], step: &mut dyn FnMut(Step)) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    let taken = || {
        io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "{}: taken for abandoned before it was locked",
                path.display()
            ),
        )
    };
    match file.try_lock() {
        // Without locks, temporary files are removed only once they have expired.
        Ok(()) | Err(TryLockError::Error(_)) => {}
        Err(TryLockError::WouldBlock) => return Err(taken()),
    }
    // A store cleaning up may have locked and deleted it before this process locked it.
    if !names_file(path, &file) {
        return Err(taken());
    }
    step(Step::Created);
    file.write_all(bytes)?;
    step(Step::Written);
    file.sync_all()?;
    step(Step::SyncedFile);
    Ok(file)
}

/// Deletes the temporary file `path` if its writer is gone: nobody holds its lock (a writer
/// holds it until the file has its final name, and a crashed writer's lock went with its
/// process), or, where the file system has no locks, the file has `expired`.
fn remove_if_abandoned(path: &Path, expired: bool) {
    let Ok(file) = open_plain(path) else {
        return;
    };
    let abandoned = match file.try_lock() {
        Ok(()) => true,
        Err(TryLockError::WouldBlock) => false,
        Err(TryLockError::Error(_)) => expired,
    };
    if abandoned {
        remove_if_same(path, &file);
    }
}

/// Whether `name` is `<64 hex digits>.art`.
fn is_artifact_name(name: &str) -> bool {
    name.strip_suffix(SUFFIX)
        .is_some_and(|stem| stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The MAC of a file of `key`: its header `fields` (magic, version, length) and `frame`.
fn mac(mac_key: &[u8; 32], key: &Digest, fields: &[u8], frame: &[u8]) -> blake3::Hash {
    let mut h = blake3::Hasher::new_keyed(mac_key);
    h.update(key.as_bytes());
    h.update(fields);
    h.update(frame);
    h.finalize()
}

/// The file contents for `artifact` under `key`.
fn encode(mac_key: &[u8; 32], key: &Digest, artifact: &[u8]) -> Option<Vec<u8>> {
    // The bulk compressor records the content size in the frame header, which `decode` checks
    // before allocating anything.
    let frame = zstd::bulk::compress(artifact, ZSTD_LEVEL).ok()?;
    let mut bytes = Vec::with_capacity(HEADER_BYTES + frame.len());
    bytes.extend_from_slice(&MAGIC);
    bytes.push(FORMAT_VERSION);
    bytes.extend_from_slice(&(artifact.len() as u64).to_le_bytes());
    let mac = mac(mac_key, key, &bytes, &frame);
    bytes.extend_from_slice(mac.as_bytes());
    bytes.extend_from_slice(&frame);
    Some(bytes)
}

/// The artifact of `key` in the file contents `bytes`, if they are authentic and intact.
fn decode(mac_key: &[u8; 32], key: &Digest, bytes: &[u8]) -> Result<Vec<u8>, Rejection> {
    let (header, frame) = bytes
        .split_at_checked(HEADER_BYTES)
        .ok_or(Rejection::Malformed)?;
    let (fields, stored_mac) = header.split_at(FIELDS_BYTES);
    let (magic, rest) = fields.split_at(4);
    let (version, length) = rest.split_at(1);
    if magic != MAGIC {
        return Err(Rejection::Malformed);
    }
    if version[0] != FORMAT_VERSION {
        return Err(Rejection::Version(version[0]));
    }
    let stored_mac: [u8; 32] = stored_mac.try_into().map_err(|_| Rejection::Malformed)?;
    // `Hash` equality takes the same time wherever the MACs differ.
    if mac(mac_key, key, fields, frame) != blake3::Hash::from_bytes(stored_mac) {
        return Err(Rejection::Unauthentic);
    }
    // Authentic from here on: what follows only guards against a writer's bug.
    let length = u64::from_le_bytes(length.try_into().map_err(|_| Rejection::Malformed)?);
    if length > MAX_ARTIFACT_BYTES
        || zstd::zstd_safe::get_frame_content_size(frame).ok() != Some(Some(length))
    {
        return Err(Rejection::Undecodable);
    }
    let length = usize::try_from(length).map_err(|_| Rejection::Undecodable)?;
    let artifact = zstd::bulk::decompress(frame, length).map_err(|_| Rejection::Undecodable)?;
    if artifact.len() != length {
        return Err(Rejection::Undecodable);
    }
    Ok(artifact)
}

/// Deletes `path` if it still is `file` (and not an intact artifact renamed over it since).
fn remove_if_same(path: &Path, file: &File) {
    if names_file(path, file) {
        let _ = fs::remove_file(path);
    }
}

/// Whether `path` names the open `file` (always, where that cannot be told).
fn names_file(path: &Path, file: &File) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let (Ok(opened), Ok(current)) = (file.metadata(), fs::symlink_metadata(path)) else {
            return false;
        };
        (opened.dev(), opened.ino()) == (current.dev(), current.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = (path, file);
        true
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, Barrier, Mutex};

    use super::*;

    /// `len` bytes from `seed`: runs of repeated and random bytes, compressible like code.
    fn artifact(seed: u64, len: usize) -> Vec<u8> {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let r = next();
            let run = (r >> 8) as usize % 64 + 1;
            if r & 1 == 0 {
                out.extend(std::iter::repeat_n((r >> 16) as u8, run));
            } else {
                out.extend((0..run).map(|_| next() as u8));
            }
        }
        out.truncate(len);
        out
    }

    /// `len` incompressible bytes.
    fn random(seed: u64, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let mut counter = 0u64;
        while out.len() < len {
            let mut input = seed.to_le_bytes().to_vec();
            input.extend_from_slice(&counter.to_le_bytes());
            out.extend_from_slice(blake3::hash(&input).as_bytes());
            counter += 1;
        }
        out.truncate(len);
        out
    }

    fn key(n: u64) -> Digest {
        Digest::of(&n.to_le_bytes())
    }

    /// The secret of node `n`.
    fn secret(n: u8) -> ArtifactSecret {
        ArtifactSecret::from_bytes([n; 32])
    }

    fn set_age(path: &Path, seconds_ago: u64) {
        let file = OpenOptions::new().write(true).open(path).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(seconds_ago))
            .unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[cfg(unix)]
    fn chmod(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn open_with(dir: &Path, secret: &ArtifactSecret, limits: CacheLimits) -> FsArtifactCache {
        // SAFETY: these caches hold test bytes that nothing maps as code.
        unsafe { FsArtifactCache::open(dir, secret, limits) }.unwrap()
    }

    fn open(dir: &Path) -> FsArtifactCache {
        open_with(dir, &secret(1), CacheLimits::default())
    }

    /// The rejections a cache reported to its hook.
    type Reports = Arc<Mutex<Vec<(PathBuf, Rejection)>>>;

    /// A cache of node `node` in `dir` and the rejections it reports.
    fn watched(dir: &Path, node: u8) -> (FsArtifactCache, Reports) {
        let reports = Reports::default();
        let sink = reports.clone();
        let cache = open_with(dir, &secret(node), CacheLimits::default())
            .on_rejection(move |path, why| sink.lock().unwrap().push((path.to_owned(), why)));
        (cache, reports)
    }

    #[test]
    fn large_artifact_round_trips_compressed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = open(&dir.path().join("nested/artifacts"));
        let art = artifact(1, 8 << 20);
        cache.store(&key(1), &art);
        assert_eq!(cache.stores(), 1);
        let on_disk = fs::metadata(cache.path_of(&key(1))).unwrap().len();
        assert!(on_disk < art.len() as u64, "{on_disk} bytes on disk");
        // Another instance with the same secret (a restart) reads it.
        let reopened = open(cache.dir());
        assert_eq!(reopened.load(&key(1)).as_deref(), Some(&art[..]));
        assert_eq!(
            (reopened.hits(), reopened.misses(), reopened.rejected()),
            (1, 0, 0)
        );
        // Only the artifact is left: no temporary file.
        assert_eq!(names(cache.dir()), vec![format!("{}.art", key(1))]);
        // Empty artifacts are artifacts too.
        cache.store(&key(2), &[]);
        assert_eq!(cache.load(&key(2)), Some(Vec::new()));
    }

    #[test]
    fn missing_key_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let cache = open(dir.path());
        assert_eq!(cache.load(&key(7)), None);
        assert_eq!((cache.hits(), cache.misses(), cache.rejected()), (0, 1, 0));
    }

    #[test]
    fn store_replaces_the_artifact_of_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let cache = open(dir.path());
        cache.store(&key(1), &artifact(1, 1000));
        cache.store(&key(1), &artifact(2, 2000));
        assert_eq!(cache.load(&key(1)), Some(artifact(2, 2000)));
        assert_eq!(names(dir.path()).len(), 1);
    }

    /// Writes `mutate(file)` over the artifact file of `k`, and checks that a load rejects it
    /// for `why`, reports and deletes it, and that the key can be stored and loaded again.
    fn assert_rejected(
        (cache, reports): &(FsArtifactCache, Reports),
        k: &Digest,
        why: Rejection,
        mutate: impl FnOnce(&mut Vec<u8>),
    ) {
        let art = artifact(3, 200_000);
        cache.store(k, &art);
        let path = cache.path_of(k);
        let mut bytes = fs::read(&path).unwrap();
        mutate(&mut bytes);
        fs::write(&path, &bytes).unwrap();
        let rejected = cache.rejected();
        assert_eq!(cache.load(k), None);
        assert_eq!(cache.rejected(), rejected + 1);
        assert_eq!(reports.lock().unwrap().pop(), Some((path.clone(), why)));
        assert!(!path.exists(), "the bad file is deleted");
        assert_eq!(cache.load(k), None, "then it is missing");
        assert_eq!(cache.rejected(), rejected + 1);
        assert!(reports.lock().unwrap().is_empty());
        cache.store(k, &art);
        assert_eq!(cache.load(k).as_deref(), Some(&art[..]));
    }

    #[test]
    fn swapped_artifacts_load_for_neither_key() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, reports) = watched(dir.path(), 1);
        let (a, b) = (artifact(10, 50_000), artifact(11, 60_000));
        cache.store(&key(1), &a);
        cache.store(&key(2), &b);
        let (path_a, path_b) = (cache.path_of(&key(1)), cache.path_of(&key(2)));
        let swap = dir.path().join("swap");
        fs::rename(&path_a, &swap).unwrap();
        fs::rename(&path_b, &path_a).unwrap();
        fs::rename(&swap, &path_b).unwrap();
        // Each file is whole and was written by this node, but for the other key.
        assert_eq!(cache.load(&key(1)), None);
        assert_eq!(cache.load(&key(2)), None);
        assert_eq!(
            *reports.lock().unwrap(),
            vec![
                (path_a.clone(), Rejection::Unauthentic),
                (path_b.clone(), Rejection::Unauthentic)
            ]
        );
        assert!(!path_a.exists() && !path_b.exists());
        // Recompiled and stored again, each loads for its own key.
        cache.store(&key(1), &a);
        cache.store(&key(2), &b);
        assert_eq!(cache.load(&key(1)), Some(a));
        assert_eq!(cache.load(&key(2)), Some(b));
    }

    #[test]
    fn every_flipped_bit_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, reports) = watched(dir.path(), 1);
        let k = key(1);
        cache.store(&k, &artifact(5, 2000));
        let path = cache.path_of(&k);
        let good = fs::read(&path).unwrap();
        // Every byte of the header, the MAC and the frame, each bit in turn over the bytes.
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 1 << (i % 8);
            fs::write(&path, &bad).unwrap();
            assert_eq!(cache.load(&k), None, "byte {i} of {}", good.len());
            let (_, why) = reports.lock().unwrap().pop().unwrap();
            let expected = match i {
                0..4 => Rejection::Malformed,
                4 => Rejection::Version(FORMAT_VERSION ^ (1 << 4)),
                _ => Rejection::Unauthentic,
            };
            assert_eq!(why, expected, "byte {i}");
        }
        assert_eq!(cache.rejected(), good.len() as u64);
        assert_eq!(cache.hits(), 0);
    }

    #[test]
    fn artifact_of_another_secret_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let (ours, reports) = watched(dir.path(), 1);
        let theirs = open_with(dir.path(), &secret(2), CacheLimits::default());
        let art = artifact(6, 100_000);
        theirs.store(&key(1), &art);
        assert_eq!(theirs.load(&key(1)).as_deref(), Some(&art[..]));
        assert_eq!(ours.load(&key(1)), None);
        assert_eq!(
            reports.lock().unwrap().pop(),
            Some((ours.path_of(&key(1)), Rejection::Unauthentic))
        );
        // A secret given for other uses too authenticates under a key of its own: the MAC
        // is not keyed with the secret itself.
        ours.store(&key(2), &art);
        let bytes = fs::read(ours.path_of(&key(2))).unwrap();
        let (fields, rest) = bytes.split_at(FIELDS_BYTES);
        let (stored_mac, frame) = rest.split_at(32);
        assert_ne!(mac(&[1; 32], &key(2), fields, frame).as_bytes(), stored_mac);
        assert_eq!(
            mac(&secret(1).mac_key, &key(2), fields, frame).as_bytes(),
            stored_mac
        );
    }

    #[test]
    fn another_artifacts_frame_under_this_header_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let watched = watched(dir.path(), 1);
        let other = encode(&secret(1).mac_key, &key(1), &artifact(4, 200_000)).unwrap();
        assert_rejected(&watched, &key(1), Rejection::Unauthentic, |b| {
            // The frame of another artifact of the same length, stored under the same key.
            b.truncate(HEADER_BYTES);
            b.extend_from_slice(&other[HEADER_BYTES..]);
        });
        // Trailing bytes after the frame.
        assert_rejected(&watched, &key(1), Rejection::Unauthentic, |b| {
            b.extend_from_slice(b"junk")
        });
    }

    #[test]
    fn truncated_files_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let watched = watched(dir.path(), 1);
        let full = encode(&secret(1).mac_key, &key(1), &artifact(3, 200_000))
            .unwrap()
            .len();
        for cut in [0, 1, 4, 5, 12, 13, 44] {
            assert_rejected(&watched, &key(1), Rejection::Malformed, |b| b.truncate(cut));
        }
        for cut in [45, 46, 60, full / 3, full / 2, full - 1] {
            assert_rejected(&watched, &key(1), Rejection::Unauthentic, |b| {
                b.truncate(cut)
            });
        }
    }

    #[test]
    fn other_versions_and_magic_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let watched = watched(dir.path(), 1);
        let next = FORMAT_VERSION + 1;
        assert_rejected(&watched, &key(1), Rejection::Version(next), |b| b[4] = next);
        assert_rejected(&watched, &key(1), Rejection::Version(0), |b| b[4] = 0);
        assert_rejected(&watched, &key(1), Rejection::Malformed, |b| b[0] = b'X');
        assert_rejected(&watched, &key(1), Rejection::Malformed, |b| {
            b[..4].copy_from_slice(b"\0asm")
        });
        // A whole, intact file of format version 1: magic, version, blake3 of the artifact,
        // length, frame. Anyone could write one.
        assert_rejected(&watched, &key(1), Rejection::Version(1), |b| {
            let art = artifact(9, 200_000);
            b.clear();
            b.extend_from_slice(&MAGIC);
            b.push(1);
            b.extend_from_slice(blake3::hash(&art).as_bytes());
            b.extend_from_slice(&(art.len() as u64).to_le_bytes());
            b.extend_from_slice(&zstd::bulk::compress(&art, ZSTD_LEVEL).unwrap());
        });
    }

    /// Makes a FIFO at `path`, which blocks a reader that opens it plainly until a writer
    /// comes.
    #[cfg(unix)]
    fn mkfifo(path: &Path) {
        use rustix::fs::{CWD, FileType, Mode, mknodat};
        mknodat(CWD, path, FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn links_and_special_files_are_rejected_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, reports) = watched(dir.path(), 1);
        let k = key(1);
        let path = cache.path_of(&k);
        // A link to this very key's authentic artifact, kept elsewhere.
        let art = artifact(1, 10_000);
        cache.store(&k, &art);
        let elsewhere = dir.path().join("elsewhere");
        fs::rename(&path, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        assert_eq!(cache.load(&k), None);
        assert!(fs::symlink_metadata(&path).is_err(), "the link is deleted");
        assert!(elsewhere.exists(), "not what it points at");
        // A FIFO would stall a plain read until someone writes to it.
        mkfifo(&path);
        assert_eq!(cache.load(&k), None);
        assert!(fs::symlink_metadata(&path).is_err(), "the FIFO is deleted");
        // A directory is not deleted, but not an artifact either.
        fs::create_dir(&path).unwrap();
        assert_eq!(cache.load(&k), None);
        assert_eq!(
            *reports.lock().unwrap(),
            [
                (path.clone(), Rejection::Malformed),
                (path.clone(), Rejection::Malformed),
                (path.clone(), Rejection::Malformed)
            ]
        );
        fs::remove_dir(&path).unwrap();
        cache.store(&k, &art);
        assert_eq!(cache.load(&k), Some(art));
    }

    #[test]
    fn a_store_syncs_the_file_then_names_it_then_syncs_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let cache = open(dir.path());
        let mut steps = Vec::new();
        cache.store_with(&key(1), &artifact(1, 1000), &mut |s| steps.push(s));
        assert_eq!(
            steps,
            [
                Step::Created,
                Step::Written,
                Step::SyncedFile,
                Step::Named,
                Step::SyncedDir
            ]
        );
        assert_eq!(cache.load(&key(1)), Some(artifact(1, 1000)));
    }

    #[test]
    fn secret_file_is_created_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/node/artifacts.key");
        let mut steps = Vec::new();
        let first = load_or_create_secret(&path, &mut |s| steps.push(s)).unwrap();
        assert_eq!(
            steps,
            [
                Step::Created,
                Step::Written,
                Step::SyncedFile,
                Step::Named,
                Step::SyncedDir
            ]
        );
        assert_eq!(fs::metadata(&path).unwrap().len(), 32);
        #[cfg(unix)]
        {
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(&dir.path().join("data")), 0o700);
            assert_eq!(mode(&dir.path().join("data/node")), 0o700);
        }
        // Only the secret: no temporary file left.
        assert_eq!(names(&dir.path().join("data/node")), ["artifacts.key"]);
        assert_eq!(format!("{first:?}"), "ArtifactSecret(..)");
        // Read back (a restart): the same secret, and nothing written.
        steps.clear();
        let second = load_or_create_secret(&path, &mut |s| steps.push(s)).unwrap();
        assert_eq!(steps, []);
        assert_eq!(first.mac_key, second.mac_key);
        // The MAC key is derived from the file's bytes, and differs from them.
        let bytes: [u8; 32] = fs::read(&path).unwrap().try_into().unwrap();
        assert_eq!(ArtifactSecret::from_bytes(bytes).mac_key, first.mac_key);
        assert_ne!(bytes, first.mac_key);
        // Artifacts stored under one load under the other.
        let artifacts = dir.path().join("data/artifacts");
        let before = open_with(&artifacts, &first, CacheLimits::default());
        #[cfg(unix)]
        assert_eq!(mode(&artifacts), 0o700);
        before.store(&key(1), &artifact(1, 1000));
        let after = open_with(&artifacts, &second, CacheLimits::default());
        assert_eq!(after.load(&key(1)), Some(artifact(1, 1000)));
        // Another node's file holds other random bytes.
        let other = ArtifactSecret::load_or_create(dir.path().join("other.key")).unwrap();
        assert_ne!(other.mac_key, first.mac_key);
        assert_ne!(
            ArtifactSecret::generate().unwrap().mac_key,
            ArtifactSecret::generate().unwrap().mac_key
        );
    }

    #[test]
    fn processes_creating_the_secret_at_once_all_get_the_same() {
        const CREATORS: usize = 8;
        for round in 0..4 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("artifacts.key");
            let start = Barrier::new(CREATORS);
            let keys: Vec<[u8; 32]> = std::thread::scope(|s| {
                let creators: Vec<_> = (0..CREATORS)
                    .map(|_| {
                        s.spawn(|| {
                            start.wait();
                            ArtifactSecret::load_or_create(&path).unwrap().mac_key
                        })
                    })
                    .collect();
                creators.into_iter().map(|c| c.join().unwrap()).collect()
            });
            assert!(keys.iter().all(|k| *k == keys[0]), "round {round}");
            assert_eq!(names(dir.path()), ["artifacts.key"]);
        }
    }

    #[cfg(unix)]
    #[test]
    fn secret_readable_or_writable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("artifacts.key");
        ArtifactSecret::load_or_create(&path).unwrap();
        let bytes = fs::read(&path).unwrap();
        for bad in [0o644, 0o640, 0o604, 0o620, 0o602, 0o660, 0o700 | 0o044] {
            chmod(&path, bad);
            let e = ArtifactSecret::load_or_create(&path).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{bad:o}");
            let message = e.to_string();
            assert!(message.contains(&format!("mode {bad:04o}")), "{message}");
            assert!(message.contains("artifacts.key"), "{message}");
            // Left alone, not replaced.
            assert_eq!(fs::read(&path).unwrap(), bytes);
            assert_eq!(mode(&path), bad);
        }
        // Owner-only modes are fine.
        for good in [0o600, 0o400] {
            chmod(&path, good);
            ArtifactSecret::load_or_create(&path).unwrap();
        }
    }

    #[cfg(unix)]
    #[test]
    fn secret_of_another_user_is_refused() {
        assert_eq!(check_private(0o600, 1000, 1000), Ok(()));
        assert_eq!(check_private(0o400, 0, 0), Ok(()));
        let e = check_private(0o600, 1001, 1000).unwrap_err();
        assert!(e.contains("owned by user 1001"), "{e}");
        assert!(check_private(0o600, 0, 1000).is_err());
        assert!(check_private(0o600, 1000, 0).is_err());
        assert!(check_private(0o640, 1000, 1000).is_err());
    }

    #[test]
    fn secret_of_the_wrong_length_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("artifacts.key");
        for len in [0, 1, 31, 33, 64, 4096] {
            write_new(&path, &vec![7; len], &mut |_| {}).unwrap();
            let e = ArtifactSecret::load_or_create(&path).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{len}");
            assert!(
                e.to_string().contains(&format!("has {len} bytes, not 32")),
                "{e}"
            );
            assert_eq!(fs::read(&path).unwrap(), vec![7; len], "left alone");
            fs::remove_file(&path).unwrap();
        }
    }

    #[cfg(unix)]
    #[test]
    fn symlinked_or_special_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        // A private 32-byte file of this user's that someone else may know or choose.
        let target = dir.path().join("known");
        write_new(&target, &[9; 32], &mut |_| {}).unwrap();
        let path = dir.path().join("artifacts.key");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let e = ArtifactSecret::load_or_create(&path).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        // Nor is a directory or a FIFO (which would stall a plain read).
        let sub = dir.path().join("sub.key");
        fs::create_dir(&sub).unwrap();
        chmod(&sub, 0o700);
        let e = ArtifactSecret::load_or_create(&sub).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let fifo = dir.path().join("fifo.key");
        mkfifo(&fifo);
        let e = ArtifactSecret::load_or_create(&fifo).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }

    #[test]
    fn evicts_least_recently_used_beyond_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let limits = CacheLimits {
            max_bytes: u64::MAX,
            max_files: 3,
        };
        let cache = open_with(dir.path(), &secret(1), limits);
        for n in 1..=3 {
            cache.store(&key(n), &artifact(n, 10_000));
        }
        set_age(&cache.path_of(&key(1)), 300);
        set_age(&cache.path_of(&key(2)), 100);
        set_age(&cache.path_of(&key(3)), 200);
        cache.store(&key(4), &artifact(4, 10_000));
        assert!(!cache.path_of(&key(1)).exists(), "the oldest goes");
        for n in 2..=4 {
            assert!(cache.path_of(&key(n)).exists());
        }
        // A load refreshes: key 3, older than key 2, now outlives it.
        assert!(cache.load(&key(3)).is_some());
        cache.store(&key(5), &artifact(5, 10_000));
        assert!(!cache.path_of(&key(2)).exists());
        for n in 3..=5 {
            assert_eq!(cache.load(&key(n)), Some(artifact(n, 10_000)));
        }
    }

    #[test]
    fn evicts_least_recently_used_beyond_max_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let len = 100_000;
        let limits = CacheLimits {
            // Room for three incompressible artifacts, not four.
            max_bytes: 350_000,
            max_files: usize::MAX,
        };
        let cache = open_with(dir.path(), &secret(1), limits);
        for n in 1..=3 {
            cache.store(&key(n), &random(n, len));
            set_age(&cache.path_of(&key(n)), 1000 - n * 100);
        }
        // Key 2 is the oldest now.
        set_age(&cache.path_of(&key(2)), 5000);
        cache.store(&key(4), &random(4, len));
        let left: Vec<u64> = (1..=4)
            .filter(|n| cache.path_of(&key(*n)).exists())
            .collect();
        assert_eq!(left, vec![1, 3, 4]);
        // An artifact beyond the whole budget is not kept, and pushes nothing else out first.
        cache.store(&key(5), &random(5, 400_000));
        let left: Vec<u64> = (1..=5)
            .filter(|n| cache.path_of(&key(*n)).exists())
            .collect();
        assert_eq!(left, vec![1, 3, 4]);
    }

    #[test]
    fn temporary_files_of_writers_gone_are_deleted_by_the_next_store() {
        let dir = tempfile::tempdir().unwrap();
        let limits = CacheLimits {
            max_bytes: u64::MAX,
            max_files: 1,
        };
        let cache = open_with(dir.path(), &secret(1), limits);
        let temp = |name: &str| dir.path().join(format!("{TEMP_PREFIX}{name}"));
        let (writing, crashed, stale) = (temp("writing"), temp("crashed"), temp("stale"));
        let other = dir.path().join("README");
        for path in [&writing, &crashed, &stale, &other] {
            fs::write(path, b"partial").unwrap();
        }
        set_age(&stale, 2 * 60 * 60);
        // A writer at work holds the lock on its file; a crashed writer's lock is gone.
        let writer = File::open(&writing).unwrap();
        writer.try_lock().unwrap();
        cache.store(&key(1), &artifact(1, 1000));
        assert!(writing.exists(), "its writer is still at it");
        assert!(!crashed.exists(), "a crashed writer's");
        assert!(!stale.exists(), "a crashed writer's");
        assert!(other.exists(), "not the cache's");
        // Temporary files are not counted against the limit of one file.
        assert_eq!(cache.load(&key(1)), Some(artifact(1, 1000)));
        drop(writer);
        cache.store(&key(1), &artifact(1, 1000));
        let mut left = vec![format!("{}.art", key(1)), "README".to_string()];
        left.sort();
        assert_eq!(names(dir.path()), left);
    }

    #[test]
    fn concurrent_writers_never_expose_partial_files() {
        const WRITERS: u64 = 4;
        const ROUNDS: u64 = 8;
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(open(dir.path()));
        let k = key(42);
        let artifact_of = |w: u64, r: u64| artifact(w * 1000 + r, 300_000 + (w * 7 + r) as usize);
        let expected: Arc<HashMap<[u8; 32], Vec<u8>>> = Arc::new(
            (0..WRITERS)
                .flat_map(|w| (0..ROUNDS).map(move |r| (w, r)))
                .chain([(WRITERS, 0)])
                .map(|(w, r)| {
                    let a = artifact_of(w, r);
                    (*blake3::hash(&a).as_bytes(), a)
                })
                .collect(),
        );
        cache.store(&k, &artifact_of(WRITERS, 0));
        let done = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (cache, expected, done) = (cache.clone(), expected.clone(), done.clone());
                std::thread::spawn(move || {
                    let mut loads = 0u32;
                    while !done.load(Ordering::Relaxed) || loads < 10 {
                        let loaded = cache.load(&k).expect("a whole artifact is always there");
                        let digest = blake3::hash(&loaded);
                        assert_eq!(expected.get(digest.as_bytes()), Some(&loaded));
                        loads += 1;
                    }
                })
            })
            .collect();
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let cache = cache.clone();
                std::thread::spawn(move || {
                    for r in 0..ROUNDS {
                        cache.store(&k, &artifact_of(w, r));
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().unwrap();
        }
        assert_eq!(cache.stores(), WRITERS * ROUNDS + 1);
        assert_eq!(cache.rejected(), 0);
        assert_eq!(cache.misses(), 0);
        assert_eq!(names(dir.path()), vec![format!("{k}.art")]);
    }
}
