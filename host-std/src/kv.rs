//! [`RedbKv`]: the core's [`KvStore`] on a redb database.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, TableDefinition};
use synor_core::host::{KvStore, WriteBatch};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("synor");

/// A key/value store in one redb table. Every [`WriteBatch`] is one redb write transaction,
/// committed durably: after a crash the database holds all of a batch or none of it.
pub struct RedbKv {
    db: Database,
    path: PathBuf,
}

impl RedbKv {
    /// Opens the database at `path`, creating it if missing.
    ///
    /// # Errors
    /// redb failures (I/O, a file that is not a redb database, a database open elsewhere).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, redb::Error> {
        let path = path.as_ref().to_path_buf();
        let db = Database::create(&path)?;
        let txn = db.begin_write()?;
        txn.open_table(TABLE)?;
        txn.commit()?;
        Ok(Self { db, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the database file.
    ///
    /// # Errors
    /// The file cannot be inspected.
    pub fn file_bytes(&self) -> std::io::Result<u64> {
        Ok(std::fs::metadata(&self.path)?.len())
    }

    /// Compacts the database file (returns whether anything was reclaimed).
    ///
    /// # Errors
    /// redb failures.
    pub fn compact(&mut self) -> Result<bool, redb::Error> {
        Ok(self.db.compact()?)
    }
}

impl KvStore for RedbKv {
    type Error = redb::Error;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, redb::Error> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TABLE)?;
        Ok(table.get(key)?.map(|v| v.value().to_vec()))
    }

    fn scan(&self, prefix: &[u8], visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), redb::Error> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TABLE)?;
        for entry in table.range::<&[u8]>(prefix..)? {
            let (k, v) = entry?;
            if !k.value().starts_with(prefix) {
                break;
            }
            visit(k.value(), v.value());
        }
        Ok(())
    }

    fn apply(&mut self, batch: WriteBatch) -> Result<(), redb::Error> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(TABLE)?;
            for (key, value) in batch.ops() {
                match value {
                    Some(v) => {
                        table.insert(&key[..], &v[..])?;
                    }
                    None => {
                        table.remove(&key[..])?;
                    }
                }
            }
        }
        txn.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_apply_in_order_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.redb");
        {
            let mut kv = RedbKv::open(&path).unwrap();
            let mut b = WriteBatch::new();
            b.put(b"a1".to_vec(), b"x".to_vec());
            b.put(b"a2".to_vec(), b"y".to_vec());
            b.put(b"b1".to_vec(), b"z".to_vec());
            b.delete(b"a2".to_vec());
            b.put(b"a3".to_vec(), b"w".to_vec());
            kv.apply(b).unwrap();
        }
        let kv = RedbKv::open(&path).unwrap();
        let mut seen = Vec::new();
        kv.scan(b"a", &mut |k, v| seen.push((k.to_vec(), v.to_vec())))
            .unwrap();
        assert_eq!(
            seen,
            vec![
                (b"a1".to_vec(), b"x".to_vec()),
                (b"a3".to_vec(), b"w".to_vec())
            ]
        );
        assert_eq!(kv.get(b"b1").unwrap(), Some(b"z".to_vec()));
        assert_eq!(kv.get(b"a2").unwrap(), None);
        assert!(kv.file_bytes().unwrap() > 0);
    }
}
