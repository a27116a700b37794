//! Derived state on sled, behind a small trait. This is the only file that
//! imports sled.
//!
//! sled is not the durability point (its `flush()` is not an fsync on Linux):
//! the ledger's segment file is. Everything here is derived from the log and
//! brought up to date from it on start; a store that is behind is caught up, a
//! store that cannot be opened or disagrees with the log is rebuilt.
//!
//! One sled tree, keys prefixed by what they index, so one batch is atomic.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
#[error("index store: {0}")]
pub struct StoreError(pub String);

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError(e.to_string())
    }
}

/// Writes applied together, atomically.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    pub(crate) ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl WriteBatch {
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push((key, Some(value)));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.ops.push((key, None));
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

impl FromIterator<(Vec<u8>, Option<Vec<u8>>)> for WriteBatch {
    /// Writes (`None`: a deletion), in order.
    fn from_iter<I: IntoIterator<Item = (Vec<u8>, Option<Vec<u8>>)>>(ops: I) -> WriteBatch {
        WriteBatch { ops: ops.into_iter().collect() }
    }
}

/// A key-value store with atomic batches.
pub trait KvStore: Send + Sync {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    fn apply(&self, batch: WriteBatch) -> Result<(), StoreError>;
    /// Writes each row on its own, in order. sled applies a batch with every
    /// reader and writer of every store in the process stopped; rows written
    /// one by one go beside them. A crash may keep any prefix of the rows.
    fn put_each(&self, rows: &mut dyn Iterator<Item = RowRef<'_>>) -> Result<(), StoreError>;
    /// Asks the store to write out what it holds (not a durability point).
    fn flush(&self) -> Result<(), StoreError>;
    /// The smallest key held, if any.
    fn first_key(&self) -> Result<Option<Vec<u8>>, StoreError>;
    /// Removes everything.
    fn clear(&self) -> Result<(), StoreError>;
    /// Every (key, value) from `start` on, in key order.
    fn iter_from(&self, start: &[u8]) -> Result<Box<dyn Iterator<Item = KvResult> + '_>, StoreError>;
}

/// A row to write: its key and its value (`None`: removed).
pub type RowRef<'a> = (&'a [u8], Option<&'a [u8]>);

/// One (key, value) of a scan.
pub type KvResult = Result<(Vec<u8>, Vec<u8>), StoreError>;

/// sled's page cache, by default: what the store keeps in memory is bounded
/// by it, whatever the store holds.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

pub struct SledStore {
    db: sled::Db,
}

/// How long opening waits for sled's file lock: a store closed a moment ago
/// in this process holds it until sled's background threads have exited.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

impl StoreError {
    /// The store is locked: still held by a store closed a moment ago, or
    /// open in another process. sled says so only in its message; the test
    /// `a_ledger_open_elsewhere_is_refused_and_its_index_left_alone` fails if
    /// a sled upgrade changes it.
    pub fn is_locked(&self) -> bool {
        self.0.contains("could not acquire lock")
    }
}

impl SledStore {
    /// Opens the store, waiting up to [`LOCK_WAIT`] for its lock.
    pub fn open(path: &Path) -> Result<SledStore, StoreError> {
        SledStore::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// Opens the store with a page cache of at most `cache_bytes`.
    pub fn open_with_cache(path: &Path, cache_bytes: u64) -> Result<SledStore, StoreError> {
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            match sled::Config::new().path(path).cache_capacity(cache_bytes).open() {
                Ok(db) => return Ok(SledStore { db }),
                Err(e) => {
                    let e = StoreError::from(e);
                    if !e.is_locked() || std::time::Instant::now() >= deadline {
                        return Err(e);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        }
    }

    /// Measures sled's raw rate of `insert` + `flush()` pairs for `seconds`,
    /// for the benchmark table (what sled alone calls durable).
    pub fn raw_flush_rate(path: &Path, seconds: f64) -> Result<(u64, f64), StoreError> {
        let db = sled::Config::new().path(path).open()?;
        let start = std::time::Instant::now();
        let mut n = 0u64;
        while start.elapsed().as_secs_f64() < seconds {
            db.insert(n.to_be_bytes(), &[0u8; 64][..])?;
            db.flush()?;
            n += 1;
        }
        Ok((n, start.elapsed().as_secs_f64()))
    }
}

impl KvStore for SledStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(key)?.map(|v| v.to_vec()))
    }

    fn apply(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut b = sled::Batch::default();
        for (k, v) in batch.ops {
            match v {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        Ok(self.db.apply_batch(b)?)
    }

    fn put_each(&self, rows: &mut dyn Iterator<Item = RowRef<'_>>) -> Result<(), StoreError> {
        for (k, v) in rows {
            match v {
                Some(v) => self.db.insert(k, v)?,
                None => self.db.remove(k)?,
            };
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    fn first_key(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.first()?.map(|(k, _)| k.to_vec()))
    }

    fn clear(&self) -> Result<(), StoreError> {
        Ok(self.db.clear()?)
    }

    fn iter_from(&self, start: &[u8]) -> Result<Box<dyn Iterator<Item = KvResult> + '_>, StoreError> {
        Ok(Box::new(
            self.db.range(start.to_vec()..).map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(StoreError::from)),
        ))
    }
}
