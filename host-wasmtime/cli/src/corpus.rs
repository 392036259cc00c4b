//! Contract sets for benchmarks: every `.wasm` file under a directory, upgrade pairs from a
//! `PAIRS.tsv`-style file, and the order in which to ingest them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// One contract binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorpusFile {
    /// Path relative to the corpus root, with `/` separators.
    pub name: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// A corpus could not be read.
#[derive(Debug)]
pub enum CorpusError {
    /// A file or directory could not be read.
    Io(PathBuf, std::io::Error),
    /// The pairs file is malformed.
    Pairs {
        /// The pairs file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The corpus holds no `.wasm` file.
    Empty(PathBuf),
}

impl fmt::Display for CorpusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorpusError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            CorpusError::Pairs {
                file,
                line,
                message,
            } => write!(f, "{}:{line}: {message}", file.display()),
            CorpusError::Empty(p) => write!(f, "{}: no .wasm file found", p.display()),
        }
    }
}

impl std::error::Error for CorpusError {}

/// Every `.wasm` file under `root` (recursively), sorted by relative path.
///
/// # Errors
/// I/O failures, or no `.wasm` file at all.
pub fn load_dir(root: &Path) -> Result<Vec<CorpusFile>, CorpusError> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| CorpusError::Io(dir.clone(), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| CorpusError::Io(dir.clone(), e))?;
            let path = entry.path();
            // Follows symbolic links, so a corpus may be assembled from links.
            let kind = std::fs::metadata(&path).map_err(|e| CorpusError::Io(path.clone(), e))?;
            if kind.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "wasm") {
                let bytes = std::fs::read(&path).map_err(|e| CorpusError::Io(path.clone(), e))?;
                let name = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push(CorpusFile { name, bytes });
            }
        }
    }
    if out.is_empty() {
        return Err(CorpusError::Empty(root.to_path_buf()));
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Upgrade pairs: each new file's name and the names of its previous versions, in the order the
/// pairs file lists them (a file may upgrade more than one older file, e.g. a build of the
/// same history and a differently named build).
pub type Pairs = BTreeMap<String, Vec<String>>;

/// How many pairs `pairs` holds.
pub fn pair_count(pairs: &Pairs) -> usize {
    pairs.values().map(Vec::len).sum()
}

/// Reads a pairs file: tab-separated `kind old new` lines (a header line starting with `kind`
/// and blank lines are skipped), paths relative to the corpus root.
///
/// # Errors
/// I/O failures; a line without three fields; a name not in `files`; a pair listed twice.
pub fn load_pairs(path: &Path, files: &[CorpusFile]) -> Result<Pairs, CorpusError> {
    let text = std::fs::read_to_string(path).map_err(|e| CorpusError::Io(path.into(), e))?;
    let names: HashSet<&str> = files.iter().map(|f| f.name.as_str()).collect();
    let mut pairs = Pairs::new();
    for (i, line) in text.lines().enumerate() {
        let err = |message: String| CorpusError::Pairs {
            file: path.into(),
            line: i + 1,
            message,
        };
        if line.trim().is_empty() || (i == 0 && line.starts_with("kind")) {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let [_, old, new] = fields[..] else {
            return Err(err(format!(
                "expected 3 tab-separated fields (kind, old, new), found {}",
                fields.len()
            )));
        };
        for name in [old, new] {
            if !names.contains(name) {
                return Err(err(format!("{name} is not a .wasm file of the corpus")));
            }
        }
        if old == new {
            return Err(err(format!("{old} is paired with itself")));
        }
        let olds = pairs.entry(new.to_string()).or_default();
        if olds.iter().any(|o| o == old) {
            return Err(err(format!("{old} -> {new} is listed twice")));
        }
        olds.push(old.to_string());
    }
    Ok(pairs)
}

/// The order in which to ingest `files`: by name, except that every old file of a pair comes
/// before its new one (pairs that form a cycle are ingested by name). Returns indices into
/// `files`.
pub fn ingest_order(files: &[CorpusFile], pairs: &Pairs) -> Vec<usize> {
    let index: HashMap<&str, usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name.as_str(), i))
        .collect();
    // 0: not visited, 1: being visited, 2: ingested.
    let mut state = vec![0u8; files.len()];
    let mut order = Vec::with_capacity(files.len());
    for start in 0..files.len() {
        // Depth-first over predecessors; a file is ingested after all of them.
        let mut stack = vec![(start, 0usize)];
        while let Some((at, next)) = stack.pop() {
            if next == 0 {
                if state[at] != 0 {
                    continue;
                }
                state[at] = 1;
            }
            let olds = pairs.get(&files[at].name).map_or(&[][..], Vec::as_slice);
            match olds.get(next).and_then(|o| index.get(o.as_str())) {
                Some(&old) => {
                    stack.push((at, next + 1));
                    if state[old] == 0 {
                        stack.push((old, 0));
                    }
                }
                None if next < olds.len() => stack.push((at, next + 1)),
                None => {
                    state[at] = 2;
                    order.push(at);
                }
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str) -> CorpusFile {
        CorpusFile {
            name: name.into(),
            bytes: name.as_bytes().to_vec(),
        }
    }

    #[test]
    fn old_files_come_before_new_ones() {
        let files = vec![file("a"), file("b"), file("c"), file("d")];
        let mut pairs = Pairs::new();
        pairs.insert("a".into(), vec!["c".into(), "b".into()]);
        pairs.insert("c".into(), vec!["d".into()]);
        let order: Vec<&str> = ingest_order(&files, &pairs)
            .into_iter()
            .map(|i| files[i].name.as_str())
            .collect();
        assert_eq!(order, ["d", "c", "b", "a"]);
        // A cycle does not hang and still ingests everything once.
        pairs.insert("d".into(), vec!["a".into()]);
        let mut order = ingest_order(&files, &pairs);
        order.sort();
        assert_eq!(order, [0, 1, 2, 3]);
    }

    #[test]
    fn pairs_file_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pairs.tsv");
        std::fs::write(&path, "kind\told\tnew\nhistory\ta\tzzz\n").unwrap();
        let e = load_pairs(&path, &[file("a")]).unwrap_err().to_string();
        assert!(e.contains(":2:") && e.contains("zzz"), "{e}");
        std::fs::write(&path, "history\ta\n").unwrap();
        assert!(load_pairs(&path, &[file("a")]).is_err());
    }
}

mod generated {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// The contracts embedded in the program (`tests/contracts/wasm`) and their upgrade pairs.
pub fn embedded() -> (Vec<CorpusFile>, Pairs) {
    let files: Vec<CorpusFile> = generated::FILES
        .iter()
        .map(|(name, bytes)| CorpusFile {
            name: (*name).to_string(),
            bytes: bytes.to_vec(),
        })
        .collect();
    let mut pairs = Pairs::new();
    for line in generated::PAIRS
        .lines()
        .skip_while(|l| l.starts_with("kind"))
    {
        if let [_, old, new] = line.split('\t').collect::<Vec<_>>()[..] {
            pairs
                .entry(new.to_string())
                .or_default()
                .push(old.to_string());
        }
    }
    (files, pairs)
}

/// The compute programs embedded in the program (`tests/contracts/wasm/programs`): import-free
/// kernels exporting `setup`, `run` and `teardown`.
pub fn embedded_programs() -> Vec<CorpusFile> {
    generated::PROGRAMS
        .iter()
        .map(|(name, bytes)| CorpusFile {
            name: (*name).to_string(),
            bytes: bytes.to_vec(),
        })
        .collect()
}
