//! [`FsArtifactCache`]: the core's [`ArtifactCache`] in a directory, one file per artifact.
//!
//! Compiled artifacts (1–20 MB of machine code for the engines' tiers) survive restarts so that
//! a node does not recompile every hot contract when it starts. Each artifact is one file named
//! after its key, `<64 hex digits>.art`:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `SYNA` |
//! | 1 | format version, [`FORMAT_VERSION`] |
//! | 32 | blake3 of the uncompressed artifact |
//! | 8 | uncompressed length, little-endian |
//! | rest | one zstd frame (recording its content size) |
//!
//! A file is written under a temporary name in the same directory, synced, then renamed over
//! the final name, so that a reader (thread or process) sees a whole file or none, whatever
//! number of writers store the same key at once. A load checks everything (magic, version,
//! lengths, the frame, the digest) before returning, and deletes a file that fails: a bad file
//! only costs a compilation.
//!
//! The directory is bounded by [`CacheLimits`], softly: after every store, the least recently
//! used artifacts (oldest modification time; a load refreshes it) are deleted until the
//! directory is within both limits again.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use synor_core::Digest;
use synor_core::tier::ArtifactCache;

/// The first bytes of every artifact file.
pub const MAGIC: [u8; 4] = *b"SYNA";

/// The version of the file format written; files of any other version are rejected.
pub const FORMAT_VERSION: u8 = 1;

/// Bytes before the zstd frame: magic, version, digest, length.
pub const HEADER_BYTES: usize = 4 + 1 + 32 + 8;

/// The largest artifact stored or loaded, compressed or not (1 GiB). Larger artifacts are not
/// stored, and larger files or declared lengths are rejected without being read.
pub const MAX_ARTIFACT_BYTES: u64 = 1 << 30;

/// The suffix of artifact files.
const SUFFIX: &str = ".art";

/// The prefix of files being written.
const TEMP_PREFIX: &str = ".tmp-";

/// Age after which a temporary file is taken for a crashed writer's and deleted.
const TEMP_EXPIRY: Duration = Duration::from_secs(60 * 60);

/// zstd level: artifacts are large and written once, read at every restart.
const ZSTD_LEVEL: i32 = 3;

/// Distinguishes the temporary files of one process's writers.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

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

/// Compiled artifacts in a directory: an [`ArtifactCache`] that survives restarts and is shared
/// safely by every thread and process using the same directory.
#[derive(Debug)]
pub struct FsArtifactCache {
    dir: PathBuf,
    limits: CacheLimits,
    hits: AtomicU64,
    misses: AtomicU64,
    rejected: AtomicU64,
    stores: AtomicU64,
}

impl FsArtifactCache {
    /// The cache in `dir`, created if missing, bounded by `limits`.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn open(dir: impl Into<PathBuf>, limits: CacheLimits) -> io::Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            limits,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            stores: AtomicU64::new(0),
        })
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

    /// Files found bad (truncated, corrupt, of another format version) and deleted by loads.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Artifacts written completely.
    pub fn stores(&self) -> u64 {
        self.stores.load(Ordering::Relaxed)
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
                if now
                    .duration_since(modified)
                    .is_ok_and(|age| age > TEMP_EXPIRY)
                {
                    let _ = fs::remove_file(entry.path());
                }
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
        let loaded = File::open(&path).and_then(|mut file| {
            let artifact = read_checked(&mut file)?;
            if artifact.is_some() {
                // Marks the artifact recently used; failing to only makes it evicted sooner.
                let _ = file.set_modified(SystemTime::now());
            } else {
                remove_if_same(&path, &file);
            }
            Ok(artifact)
        });
        match loaded {
            Ok(Some(artifact)) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(artifact)
            }
            Ok(None) => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
            // Missing or unreadable: nothing to say about the file itself.
            Err(_) => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    fn store(&self, key: &Digest, artifact: &[u8]) {
        if artifact.len() as u64 > MAX_ARTIFACT_BYTES {
            return;
        }
        let Some(bytes) = encode(artifact) else {
            return;
        };
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let temp = self.dir.join(format!(
            "{TEMP_PREFIX}{key}-{}-{}-{nanos}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed),
        ));
        let path = self.path_of(key);
        if write_new(&temp, &bytes)
            .and_then(|()| fs::rename(&temp, &path))
            .is_err()
        {
            let _ = fs::remove_file(&temp);
            return;
        }
        self.stores.fetch_add(1, Ordering::Relaxed);
        self.enforce_limits(&path);
    }
}

/// Reads the artifact file open in `file`: `Ok(None)` when it is bad.
///
/// # Errors
/// The file cannot be read.
fn read_checked(file: &mut File) -> io::Result<Option<Vec<u8>>> {
    let bound = MAX_ARTIFACT_BYTES + HEADER_BYTES as u64;
    let declared = file.metadata()?.len();
    if declared > bound {
        return Ok(None);
    }
    let mut bytes = Vec::with_capacity(declared as usize);
    Read::by_ref(file).take(bound + 1).read_to_end(&mut bytes)?;
    Ok(decode(&bytes))
}

/// Writes `bytes` to the new file `path`, durably.
///
/// # Errors
/// `path` exists or cannot be written.
fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Whether `name` is `<64 hex digits>.art`.
fn is_artifact_name(name: &str) -> bool {
    name.strip_suffix(SUFFIX)
        .is_some_and(|stem| stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The file contents for `artifact`.
fn encode(artifact: &[u8]) -> Option<Vec<u8>> {
    // The bulk compressor records the content size in the frame header, which `decode` checks
    // before allocating anything.
    let frame = zstd::bulk::compress(artifact, ZSTD_LEVEL).ok()?;
    let mut bytes = Vec::with_capacity(HEADER_BYTES + frame.len());
    bytes.extend_from_slice(&MAGIC);
    bytes.push(FORMAT_VERSION);
    bytes.extend_from_slice(blake3::hash(artifact).as_bytes());
    bytes.extend_from_slice(&(artifact.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&frame);
    Some(bytes)
}

/// The artifact in the file contents `bytes`, if they are intact.
fn decode(bytes: &[u8]) -> Option<Vec<u8>> {
    let (header, frame) = bytes.split_at_checked(HEADER_BYTES)?;
    let (magic, rest) = header.split_at(4);
    let (version, rest) = rest.split_at(1);
    let (digest, length) = rest.split_at(32);
    if magic != MAGIC || version[0] != FORMAT_VERSION {
        return None;
    }
    let length = u64::from_le_bytes(length.try_into().ok()?);
    if length > MAX_ARTIFACT_BYTES {
        return None;
    }
    // The frame must record the same size, so that a corrupt header allocates nothing.
    if zstd::zstd_safe::get_frame_content_size(frame).ok()? != Some(length) {
        return None;
    }
    let length = usize::try_from(length).ok()?;
    let artifact = zstd::bulk::decompress(frame, length).ok()?;
    if artifact.len() != length || blake3::hash(&artifact).as_bytes() != digest {
        return None;
    }
    Some(artifact)
}

/// Deletes `path` if it still is `file` (and not an intact artifact renamed over it since).
fn remove_if_same(path: &Path, file: &File) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let (Ok(opened), Ok(current)) = (file.metadata(), fs::metadata(path)) else {
            return;
        };
        if (opened.dev(), opened.ino()) != (current.dev(), current.ino()) {
            return;
        }
    }
    #[cfg(not(unix))]
    let _ = file;
    let _ = fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

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

    fn open(dir: &Path) -> FsArtifactCache {
        FsArtifactCache::open(dir, CacheLimits::default()).unwrap()
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
        // Another instance (a restart) reads it.
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

    /// Writes `mutate(file)` over the artifact file of `k`, and checks that a load rejects and
    /// deletes it, and that the key can be stored and loaded again.
    fn assert_rejected(cache: &FsArtifactCache, k: &Digest, mutate: impl FnOnce(&mut Vec<u8>)) {
        let art = artifact(3, 200_000);
        cache.store(k, &art);
        let path = cache.path_of(k);
        let mut bytes = fs::read(&path).unwrap();
        mutate(&mut bytes);
        fs::write(&path, &bytes).unwrap();
        let rejected = cache.rejected();
        assert_eq!(cache.load(k), None);
        assert_eq!(cache.rejected(), rejected + 1);
        assert!(!path.exists(), "the bad file is deleted");
        assert_eq!(cache.load(k), None, "then it is missing");
        assert_eq!(cache.rejected(), rejected + 1);
        cache.store(k, &art);
        assert_eq!(cache.load(k).as_deref(), Some(&art[..]));
    }

    #[test]
    fn corrupt_byte_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let cache = open(dir.path());
        assert_rejected(&cache, &key(1), |b| {
            let middle = b.len() / 2;
            b[middle] ^= 0x40;
        });
        // In the digest or the length of the header.
        assert_rejected(&cache, &key(1), |b| b[10] ^= 1);
        assert_rejected(&cache, &key(1), |b| b[HEADER_BYTES - 8] ^= 1);
        assert_rejected(&cache, &key(1), |b| b[HEADER_BYTES - 1] = 0xff);
        // Trailing garbage after the frame.
        assert_rejected(&cache, &key(1), |b| b.extend_from_slice(b"junk"));
    }

    #[test]
    fn intact_frame_with_the_wrong_digest_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let cache = open(dir.path());
        assert_rejected(&cache, &key(1), |b| {
            // The frame and length of another artifact of the same length.
            let other = encode(&artifact(4, 200_000)).unwrap();
            b.truncate(5 + 32);
            b.extend_from_slice(&other[5 + 32..]);
        });
    }

    #[test]
    fn truncated_files_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let cache = open(dir.path());
        let full = encode(&artifact(3, 200_000)).unwrap().len();
        for cut in [
            0,
            1,
            4,
            5,
            36,
            37,
            44,
            45,
            46,
            60,
            full / 3,
            full / 2,
            full - 1,
        ] {
            assert_rejected(&cache, &key(1), |b| b.truncate(cut));
        }
    }

    #[test]
    fn foreign_version_and_magic_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let cache = open(dir.path());
        assert_rejected(&cache, &key(1), |b| b[4] = FORMAT_VERSION + 1);
        assert_rejected(&cache, &key(1), |b| b[4] = 0);
        assert_rejected(&cache, &key(1), |b| b[0] = b'X');
        assert_rejected(&cache, &key(1), |b| b[..4].copy_from_slice(b"\0asm"));
    }

    #[test]
    fn evicts_least_recently_used_beyond_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let limits = CacheLimits {
            max_bytes: u64::MAX,
            max_files: 3,
        };
        let cache = FsArtifactCache::open(dir.path(), limits).unwrap();
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
        let cache = FsArtifactCache::open(dir.path(), limits).unwrap();
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
    fn temporary_files_are_not_counted_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let limits = CacheLimits {
            max_bytes: u64::MAX,
            max_files: 1,
        };
        let cache = FsArtifactCache::open(dir.path(), limits).unwrap();
        let fresh = dir.path().join(format!("{TEMP_PREFIX}fresh"));
        let stale = dir.path().join(format!("{TEMP_PREFIX}stale"));
        let other = dir.path().join("README");
        for path in [&fresh, &stale, &other] {
            fs::write(path, b"partial").unwrap();
        }
        set_age(&stale, 2 * 60 * 60);
        cache.store(&key(1), &artifact(1, 1000));
        assert!(fresh.exists(), "a writer may still be at it");
        assert!(!stale.exists(), "a crashed writer's");
        assert!(other.exists(), "not the cache's");
        assert_eq!(cache.load(&key(1)), Some(artifact(1, 1000)));
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
