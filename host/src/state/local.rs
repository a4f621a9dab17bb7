//! The local store: a redb database per instance holding every store's entries and, in the same
//! file, the changelog offset each (changelog topic, partition) reflects.
//!
//! Why redb: pure Rust (no C++ build, unlike RocksDB), ACID with a stable file format (unlike
//! sled), one writer (all txform needs: the pipeline thread), and a write transaction is atomic, so
//! entries and their checkpoint never disagree. Commits use `Durability::Eventual` (no fsync): the
//! changelog is the durable copy; after a crash the file is consistent as of an older commit and
//! restore replays what it missed from that older checkpoint.

use std::path::{Path, PathBuf};

use redb::{Database, Durability, TableDefinition};

/// Entries: (changelog topic, partition, key) → value. The changelog topic names the store.
const ENTRIES: TableDefinition<(&str, i32, &[u8]), &[u8]> = TableDefinition::new("entries");
/// (changelog topic, partition) → the next changelog offset to restore from.
const CHECKPOINTS: TableDefinition<(&str, i32), i64> = TableDefinition::new("checkpoints");

/// A failure of the local store, naming its file.
#[derive(Debug, thiserror::Error)]
#[error("local state store {}: {source}", path.display())]
pub struct LocalError {
    path: PathBuf,
    #[source]
    source: Box<redb::Error>,
}

/// One change to apply: `value` `None` deletes the key.
pub struct Change<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
}

pub struct LocalStore {
    path: PathBuf,
    db: Database,
}

impl LocalStore {
    /// Opens (or creates) `dir/state.redb`. A file that cannot be opened (corrupt, or not a redb
    /// file) is deleted and created afresh: the changelogs rebuild it. Returns whether it was.
    pub fn open(dir: &Path) -> Result<(LocalStore, bool), LocalError> {
        let path = dir.join("state.redb");
        let failed = |source: redb::Error| LocalError {
            path: path.clone(),
            source: Box::new(source),
        };
        std::fs::create_dir_all(dir).map_err(|e| failed(redb::StorageError::from(e).into()))?;
        let (db, wiped) = match Database::create(&path) {
            Ok(db) => (db, false),
            Err(error) => {
                log::warn!(
                    "local state store {} cannot be opened ({error}); deleting it to rebuild it from the changelogs",
                    path.display()
                );
                std::fs::remove_file(&path)
                    .map_err(|e| failed(redb::StorageError::from(e).into()))?;
                (Database::create(&path).map_err(|e| failed(e.into()))?, true)
            }
        };
        let store = LocalStore { path, db };
        // Both tables exist from here on, so reads never meet a missing table.
        store.write(|_, _| Ok(()))?;
        Ok((store, wiped))
    }

    fn error(&self, source: impl Into<redb::Error>) -> LocalError {
        LocalError {
            path: self.path.clone(),
            source: Box::new(source.into()),
        }
    }

    /// The committed value of `key`.
    pub fn get(
        &self,
        topic: &str,
        partition: i32,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, LocalError> {
        let read = self.db.begin_read().map_err(|e| self.error(e))?;
        let entries = read.open_table(ENTRIES).map_err(|e| self.error(e))?;
        let value = entries
            .get((topic, partition, key))
            .map_err(|e| self.error(e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// The next changelog offset to restore `topic`/`partition` from (0 when never restored).
    pub fn checkpoint(&self, topic: &str, partition: i32) -> Result<i64, LocalError> {
        let read = self.db.begin_read().map_err(|e| self.error(e))?;
        let checkpoints = read.open_table(CHECKPOINTS).map_err(|e| self.error(e))?;
        let offset = checkpoints
            .get((topic, partition))
            .map_err(|e| self.error(e))?;
        Ok(offset.map_or(0, |o| o.value()))
    }

    /// Applies `changes` and sets `checkpoints` ((topic, partition, next offset)) in one write
    /// transaction: the store never reflects part of a transaction.
    pub fn apply<'a>(
        &self,
        changes: impl IntoIterator<Item = Change<'a>>,
        checkpoints: &[(&str, i32, i64)],
    ) -> Result<(), LocalError> {
        self.write(|entries, marks| {
            for change in changes {
                let key = (change.topic, change.partition, change.key);
                match change.value {
                    Some(value) => entries.insert(key, value).map(drop)?,
                    None => entries.remove(key).map(drop)?,
                }
            }
            for &(topic, partition, next) in checkpoints {
                marks.insert((topic, partition), next)?;
            }
            Ok(())
        })
    }

    /// Deletes every entry of `topic`/`partition` and its checkpoint (a stale store, rebuilt from
    /// the changelog's start).
    pub fn wipe(&self, topic: &str, partition: i32) -> Result<(), LocalError> {
        self.write(|entries, marks| {
            let empty: &[u8] = &[];
            entries.retain_in(
                (topic, partition, empty)..(topic, partition + 1, empty),
                |_, _| false,
            )?;
            marks.remove((topic, partition))?;
            Ok(())
        })
    }

    fn write(
        &self,
        f: impl FnOnce(
            &mut redb::Table<'_, (&str, i32, &[u8]), &[u8]>,
            &mut redb::Table<'_, (&str, i32), i64>,
        ) -> Result<(), redb::StorageError>,
    ) -> Result<(), LocalError> {
        let mut write = self.db.begin_write().map_err(|e| self.error(e))?;
        write.set_durability(Durability::Eventual);
        {
            let mut entries = write.open_table(ENTRIES).map_err(|e| self.error(e))?;
            let mut marks = write.open_table(CHECKPOINTS).map_err(|e| self.error(e))?;
            f(&mut entries, &mut marks).map_err(|e| self.error(e))?;
        }
        write.commit().map_err(|e| self.error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("txform-local-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn changes_and_checkpoints_commit_together_and_survive_reopening() {
        let dir = temp_dir("apply");
        let (store, wiped) = LocalStore::open(&dir).unwrap();
        assert!(!wiped);
        let change = |key: &'static [u8], value: Option<&'static [u8]>| Change {
            topic: "c",
            partition: 1,
            key,
            value,
        };
        store
            .apply(
                [change(b"a", Some(b"1")), change(b"b", Some(b"2"))],
                &[("c", 1, 7)],
            )
            .unwrap();
        store.apply([change(b"a", None)], &[("c", 1, 9)]).unwrap();
        drop(store);
        let (store, _) = LocalStore::open(&dir).unwrap();
        assert_eq!(store.get("c", 1, b"a").unwrap(), None);
        assert_eq!(store.get("c", 1, b"b").unwrap(), Some(b"2".to_vec()));
        assert_eq!(store.get("c", 0, b"b").unwrap(), None);
        assert_eq!(store.checkpoint("c", 1).unwrap(), 9);
        assert_eq!(store.checkpoint("c", 0).unwrap(), 0);
        store.wipe("c", 1).unwrap();
        assert_eq!(store.get("c", 1, b"b").unwrap(), None);
        assert_eq!(store.checkpoint("c", 1).unwrap(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_corrupt_file_is_rebuilt() {
        let dir = temp_dir("corrupt");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("state.redb"), b"not a database").unwrap();
        let (store, wiped) = LocalStore::open(&dir).unwrap();
        assert!(wiped);
        assert_eq!(store.checkpoint("c", 0).unwrap(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
