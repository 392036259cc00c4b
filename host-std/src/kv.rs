//! [`RedbKv`]: the core's [`KvStore`] on a redb database.
//!
//! # Durability
//!
//! Every [`WriteBatch`] is one redb write transaction, committed with
//! [`Durability::Immediate`], two-phase commit and quick repair:
//!
//! - **Immediate**: the commit is on disk (fsynced) when [`KvStore::apply`] returns, so an
//!   acknowledged write survives a process crash and a power loss. redb's non-durable commits
//!   would be lost by either.
//! - **Two-phase commit**: redb writes the new tree and its commit slot, fsyncs, and only then
//!   flips the byte that makes the slot primary, and fsyncs again. With the default one-phase
//!   commit, a commit torn by a power loss is detected by checksums alone, which redb's design
//!   documents as a non-cryptographic (XXH3) defence that a party choosing the written data
//!   could in principle defeat; contract bytecode is chosen by whoever deploys it, so the store
//!   does not rely on it. After a crash or power loss at any point, the database opens at the
//!   last commit that returned or at the one in flight, whole.
//! - **Quick repair**: each commit also saves the allocator state, so that reopening after a
//!   crash does not walk and checksum the whole database.
//!
//! These hold under redb's assumptions about the medium: fsync makes earlier writes durable,
//! and a write changes no byte outside its range. `tests/tests/crash.rs` kills a writer after
//! every write, length change and sync redb makes inside the commits of a workload, as a
//! process crash and as power losses (unsynced writes lost, or torn), and checks the store
//! after each kill.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, Durability, ReadableDatabase, TableDefinition, WriteTransaction};
use synor_core::host::{KvStore, WriteBatch};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("synor");

/// A key/value store in one redb table. Every [`WriteBatch`] is one redb write transaction,
/// committed durably (see the [module documentation](self)): after a crash or a power loss the
/// database holds all of a batch or none of it, and all of every batch applied before.
pub struct RedbKv {
    db: Arc<Database>,
    path: PathBuf,
    /// While deferring ([`RedbKv::defer`]): the batches applied since, not yet written; reads
    /// see them.
    deferred: Option<BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
}

impl RedbKv {
    /// Opens the database at `path`, creating it if missing.
    ///
    /// # Errors
    /// redb failures (I/O, a file that is not a redb database, a database open elsewhere).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, redb::Error> {
        let path = path.as_ref().to_path_buf();
        let db = Database::create(&path)?;
        Self::with_database(Arc::new(db), path)
    }

    /// The store in `db`, whose file is `path`, sharing the database with its other tables
    /// (a node's state); creates its table if missing.
    ///
    /// # Errors
    /// redb failures.
    pub fn with_database(db: Arc<Database>, path: PathBuf) -> Result<Self, redb::Error> {
        let kv = Self {
            db,
            path,
            deferred: None,
        };
        let txn = begin_write(&kv.db)?;
        txn.open_table(TABLE)?;
        txn.commit()?;
        Ok(kv)
    }

    /// From now on, batches are kept instead of written: reads see them, and
    /// [`RedbKv::take_deferred`] hands them over to be written in a transaction of the
    /// caller's, with its other tables (a node commits a block's blobs with its state).
    pub fn defer(&mut self) {
        self.deferred.get_or_insert_with(BTreeMap::new);
    }

    /// The operations deferred since [`RedbKv::defer`] (each key's last), in key order; batches
    /// are written again from now on.
    pub fn take_deferred(&mut self) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        self.deferred.take().unwrap_or_default()
    }

    /// Writes `ops` (as [`RedbKv::take_deferred`] gives them) to the store's table in `txn`.
    ///
    /// # Errors
    /// redb failures.
    pub fn write_in(
        txn: &WriteTransaction,
        ops: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    ) -> Result<(), redb::Error> {
        let mut table = txn.open_table(TABLE)?;
        for (key, value) in ops {
            match value {
                Some(v) => {
                    table.insert(&key[..], &v[..])?;
                }
                None => {
                    table.remove(&key[..])?;
                }
            }
        }
        Ok(())
    }

    /// The database.
    pub fn database(&self) -> &Arc<Database> {
        &self.db
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
        match Arc::get_mut(&mut self.db) {
            Some(db) => Ok(db.compact()?),
            // Shared with a node's tables: compacted when the node is closed.
            None => Ok(false),
        }
    }
}

/// A write transaction with the durability settings of the module documentation.
///
/// # Errors
/// redb failures.
pub fn begin_write(db: &Database) -> Result<WriteTransaction, redb::Error> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    txn.set_two_phase_commit(true);
    txn.set_quick_repair(true);
    Ok(txn)
}

impl KvStore for RedbKv {
    type Error = redb::Error;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, redb::Error> {
        if let Some(v) = self.deferred.as_ref().and_then(|d| d.get(key)) {
            return Ok(v.clone());
        }
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TABLE)?;
        Ok(table.get(key)?.map(|v| v.value().to_vec()))
    }

    fn scan(&self, prefix: &[u8], visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), redb::Error> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TABLE)?;
        let Some(deferred) = &self.deferred else {
            for entry in table.range::<&[u8]>(prefix..)? {
                let (k, v) = entry?;
                if !k.value().starts_with(prefix) {
                    break;
                }
                visit(k.value(), v.value());
            }
            return Ok(());
        };
        // Deferred operations over the table's entries (a rare path: scans are for opening,
        // statistics and collection, not for puts).
        let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        for entry in table.range::<&[u8]>(prefix..)? {
            let (k, v) = entry?;
            if !k.value().starts_with(prefix) {
                break;
            }
            merged.insert(k.value().to_vec(), Some(v.value().to_vec()));
        }
        let pending = deferred.range(prefix.to_vec()..);
        for (k, v) in pending.take_while(|(k, _)| k.starts_with(prefix)) {
            merged.insert(k.clone(), v.clone());
        }
        for (k, v) in &merged {
            if let Some(v) = v {
                visit(k, v);
            }
        }
        Ok(())
    }

    fn apply(&mut self, batch: WriteBatch) -> Result<(), redb::Error> {
        if let Some(deferred) = &mut self.deferred {
            deferred.extend(batch.into_ops());
            return Ok(());
        }
        // In key order (stably: the last operation on a key still wins), so that the same
        // batch writes the same pages whatever order it was built in.
        let mut ops = batch.into_ops();
        ops.sort_by(|a, b| a.0.cmp(&b.0));
        let txn = begin_write(&self.db)?;
        {
            let mut table = txn.open_table(TABLE)?;
            for (key, value) in &ops {
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

    #[test]
    fn a_batch_writes_the_same_file_whatever_its_order() {
        let dir = tempfile::tempdir().unwrap();
        let ops: Vec<(Vec<u8>, Vec<u8>)> = (0..400u32)
            .map(|i| {
                let key = (i.wrapping_mul(2_654_435_761)).to_be_bytes().to_vec();
                (key, vec![i as u8; 100 + (i as usize * 37) % 900])
            })
            .collect();
        let file = |name: &str, ops: &mut dyn Iterator<Item = &(Vec<u8>, Vec<u8>)>| {
            let path = dir.path().join(name);
            let mut kv = RedbKv::open(&path).unwrap();
            let mut b = WriteBatch::new();
            // The last operation on a key wins, wherever the key sorts.
            b.delete(b"k".to_vec());
            for (key, value) in ops {
                b.put(key.clone(), value.clone());
            }
            b.put(b"k".to_vec(), b"v".to_vec());
            kv.apply(b).unwrap();
            assert_eq!(kv.get(b"k").unwrap(), Some(b"v".to_vec()));
            drop(kv);
            std::fs::read(path).unwrap()
        };
        let forward = file("forward.redb", &mut ops.iter());
        let backward = file("backward.redb", &mut ops.iter().rev());
        assert!(forward == backward, "the files differ");
    }
}
