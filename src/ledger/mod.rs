//! The signed, append-only, hash-chained ledger every node keeps.
//!
//! - [`entry`]: the entry format; [`merkle`]: RFC 6962 tree and proofs;
//!   [`head`]: signed tree heads; [`seal`]: the signed head after a group
//!   commit — all pure.
//! - [`segment`]: the append-only segment file, the durability point.
//! - this module: [`Ledger`], which recovers from the segment on open, keeps
//!   the sled indexes caught up, and appends through one writer thread that
//!   group-commits (many appends, one seal, one write, one `fdatasync`).
//! - [`verify`] and [`export`]: checking a ledger at rest or an export.

pub mod checkpoint;
mod chunked;
mod digests;
pub mod entry;
pub mod export;
pub mod head;
pub mod merkle;
pub mod seal;
pub mod segment;
pub mod verify;
mod writer;

use std::fs::File;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::Digest;
use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;
use crate::storage::{KvStore, SledStore, StoreError, WriteBatch};
use chunked::Chunked;
pub use entry::{Body, Entry, EntryKind, FormatError};
pub use head::SignedTreeHead;
use merkle::{Frontier, Hash};
use seal::Record;
use segment::{Segment, SegmentError, TornTail};

/// Most appends waiting for the writer; further callers wait for room.
pub const QUEUE_CAPACITY: usize = 16_384;
/// Most entries in one group commit.
pub const MAX_BATCH_ENTRIES: usize = 8_192;
/// Entries indexed per store batch while catching up on open.
const CATCH_UP_BATCH: usize = 10_000;

pub const SEGMENT_FILE: &str = segment::FIRST_SEGMENT;
pub const INDEX_DIR: &str = "index";

/// Why an append or a read failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("idempotency key {key:?} is already used by entry {seq} with a different body")]
    IdempotencyConflict { key: String, seq: u64 },
    #[error("bad entry: {0}")]
    Format(#[from] FormatError),
    #[error("{0}")]
    Segment(#[from] SegmentError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("ledger I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("ledger is corrupt at entry {seq}: {reason}")]
    Corrupt { seq: u64, reason: String },
    #[error("the ledger's key does not match this segment's owner")]
    WrongKey,
    #[error("the ledger has stopped accepting appends after a storage failure; restart to recover")]
    Failed,
    #[error("the ledger is closed")]
    Closed,
}

/// The outcome of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    pub hash: Hash,
    pub timestamp_ms: i64,
    /// The key was already used with the identical body: this is that entry.
    pub existing: bool,
}

/// Index keys in the store.
pub(crate) mod keys {
    /// Entries indexed. Not the name the layout before buckets used: a
    /// binary of that layout finds no count and reindexes everything, never
    /// trusting rows it cannot read.
    pub(crate) const APPLIED: &[u8] = b"m/indexed";
    /// The rows' layout: an index written in another is rebuilt.
    pub(crate) const FORMAT: &[u8] = b"m/format";
    pub(crate) const INDEX_FORMAT: &[u8] = b"2";
    /// An index record as the writer and the replay produce it (idempotency
    /// key -> seq u64 || segment offset u64); [`super::apply_index`] files it
    /// in its key's bucket.
    pub(crate) const IDEM: &[u8] = b"k/";
    pub(crate) fn idem(key: &str) -> Vec<u8> {
        [IDEM, key.as_bytes()].concat()
    }
    /// Bits of a key's digest that name its bucket: sled keeps ~35 bytes of
    /// memory per row however small, so keys share rows, at most 2^20 of them.
    const BUCKET_BITS: u32 = 20;
    pub(crate) fn bucket(key: &[u8]) -> Vec<u8> {
        bucket_of(super::key_digest_bytes(key))
    }
    /// The bucket of the keys whose digest is `digest`.
    pub(crate) fn bucket_of(digest: u64) -> Vec<u8> {
        let b = (digest >> (64 - BUCKET_BITS)) as u32;
        [b"b/".as_slice(), &b.to_be_bytes()].concat()
    }
}

/// A bucket row's records (key length u16, key, seq u64, offset u64), each
/// as its key and where its (seq, offset) is; a last `None` for a row that
/// does not parse.
fn bucket_records(row: &[u8]) -> impl Iterator<Item = Option<(&[u8], usize)>> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        if i >= row.len() {
            return None;
        }
        let record = (|| {
            let len = usize::from(u16::from_be_bytes(row.get(i..i + 2)?.try_into().ok()?));
            row.get(i + 2 + len..i + 18 + len)?;
            Some((row.get(i + 2..i + 2 + len)?, i + 2 + len))
        })();
        i = record.map_or(row.len(), |(_, at)| at + 16);
        Some(record)
    })
}

/// Where `key`'s (seq, offset) is in a bucket row, if it is there; `None`
/// for a row that does not parse.
fn bucket_value_at(row: &[u8], key: &[u8]) -> Option<Option<usize>> {
    for record in bucket_records(row) {
        let (k, at) = record?;
        if k == key {
            return Some(Some(at));
        }
    }
    Some(None)
}

/// (seq, offset) of every record in a bucket row whose key has `digest`;
/// `None` for a row that does not parse.
fn bucket_find_digest(row: &[u8], digest: u64) -> Option<Vec<(u64, u64)>> {
    let mut found = Vec::new();
    for record in bucket_records(row) {
        let (k, at) = record?;
        if key_digest_bytes(k) == digest {
            found.push(read_index(row.get(at..at + 16)?)?);
        }
    }
    Some(found)
}

fn bucket_find(row: &[u8], key: &[u8]) -> Option<Option<(u64, u64)>> {
    match bucket_value_at(row, key)? {
        Some(at) => read_index(row.get(at..at + 16)?).map(Some),
        None => Some(None),
    }
}

/// Files a key's record in its bucket row (replacing one for the same key).
fn bucket_put(row: &mut Vec<u8>, key: &[u8], value: &[u8]) -> Option<()> {
    let value = value.get(..16)?;
    match bucket_value_at(row, key)? {
        Some(at) => row.get_mut(at..at + 16)?.copy_from_slice(value),
        None => {
            row.extend_from_slice(&u16::try_from(key.len()).ok()?.to_be_bytes());
            row.extend_from_slice(key);
            row.extend_from_slice(value);
        }
    }
    Some(())
}

/// Applies an index batch: each record into its key's bucket row (read,
/// added to, written back); other rows (the position) as they are, after the
/// buckets. One writer at a time (the replay, then the indexer). Bucket rows
/// are written one by one, not in one atomic batch (sled stops every reader
/// of every store in the process while a batch applies): filing a record
/// again in a bucket that holds it changes nothing, so a crash part-way
/// leaves the position behind and the replay files the same records again.
pub(crate) fn apply_index(kv: &dyn KvStore, batch: WriteBatch) -> Result<(), StoreError> {
    let mut buckets: std::collections::HashMap<Vec<u8>, Vec<u8>> = std::collections::HashMap::new();
    let mut out = WriteBatch::default();
    for (k, v) in batch.ops {
        match (k.strip_prefix(keys::IDEM), v) {
            (Some(key), Some(v)) => {
                let b = keys::bucket(key);
                let row = match buckets.entry(b) {
                    std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        let held = kv.get(e.key())?.unwrap_or_default();
                        e.insert(held)
                    }
                };
                bucket_put(row, key, &v).ok_or_else(|| StoreError(format!("bad index bucket for {key:?}")))?;
            }
            (_, v) => out.ops.push((k, v)),
        }
    }
    kv.put_each(&mut buckets.iter().map(|(b, row)| (b.as_slice(), Some(row.as_slice()))))?;
    kv.apply(out)
}

/// (seq, offset) of a key in the index store.
fn index_lookup(kv: &dyn KvStore, key: &str) -> Result<Option<(u64, u64)>, LedgerError> {
    let bad = || LedgerError::Corrupt { seq: 0, reason: format!("bad index record for {key:?}") };
    match kv.get(&keys::bucket(key.as_bytes()))? {
        Some(row) => bucket_find(&row, key.as_bytes()).ok_or_else(bad),
        None => Ok(None),
    }
}

/// (seq, offset) of the keys in the index store whose digest is `digest`.
fn index_lookup_digest(kv: &dyn KvStore, digest: u64) -> Result<Vec<(u64, u64)>, LedgerError> {
    let bad = || LedgerError::Corrupt { seq: 0, reason: format!("bad index bucket for digest {digest:016x}") };
    match kv.get(&keys::bucket_of(digest))? {
        Some(row) => bucket_find_digest(&row, digest).ok_or_else(bad),
        None => Ok(Vec::new()),
    }
}

/// Adds the index of one entry to a batch: one record per entry, so that the
/// index costs one store write per append.
pub(crate) fn index_entry(batch: &mut WriteBatch, seq: u64, offset: u64, key: &str) {
    let mut v = seq.to_be_bytes().to_vec();
    v.extend_from_slice(&offset.to_be_bytes());
    batch.put(keys::idem(key), v);
}

/// (seq, offset) of an index record.
pub(crate) fn read_index(v: &[u8]) -> Option<(u64, u64)> {
    Some((read_u64(v.get(..8))?, read_u64(v.get(8..16))?))
}

/// A 64-bit digest of an idempotency key, for the in-memory filter that lets
/// a new key skip the store lookup.
pub(crate) fn key_digest(key: &str) -> u64 {
    key_digest_bytes(key.as_bytes())
}

fn key_digest_bytes(key: &[u8]) -> u64 {
    let d = sha2::Sha256::digest(key);
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// Entry offsets [`Ledger::scan`] copies out of the tree state at a time.
const SCAN_OFFSETS: usize = 4_096;

/// The tree as of the last group commit.
pub(crate) struct TreeState {
    pub leaves: Chunked<Hash>,
    /// Segment offset of each entry, by seq.
    pub offsets: Chunked<u64>,
    /// Digests of every key in the ledger (collisions are resolved in the
    /// index). Not a hash set: it grows with every entry, and a hash set's
    /// growth rehashes all of it at once under the state's write lock, which
    /// every key lookup waits on.
    pub key_digests: digests::DigestSet,
    pub frontier: Frontier,
    pub last_hash: Hash,
    pub last_timestamp_ms: i64,
    pub head: SignedTreeHead,
}

/// The ledger's index store, closed and opened again by the indexer every
/// [`Options::index_reopen_every`] records: sled writes its page-table
/// snapshot only as it opens, and an open replays its log since then, so an
/// index never reopened would make a restart read every index write since
/// the last start.
pub(crate) struct IndexStore {
    path: PathBuf,
    kv: RwLock<Option<Arc<dyn KvStore>>>,
    pub reopen_every: u64,
    cache_bytes: u64,
    reopened: std::sync::atomic::AtomicU64,
}

impl IndexStore {
    fn kv(&self) -> Result<Arc<dyn KvStore>, StoreError> {
        let kv = self.kv.read().map_err(|_| StoreError("index lock".into()))?;
        kv.clone().ok_or_else(|| StoreError("the index could not be opened again".into()))
    }

    /// (seq, offset) of a key.
    pub(crate) fn locate(&self, key: &str) -> Result<Option<(u64, u64)>, LedgerError> {
        index_lookup(self.kv()?.as_ref(), key)
    }

    /// (seq, offset) of the keys whose digest is `digest`.
    pub(crate) fn locate_digest(&self, digest: u64) -> Result<Vec<(u64, u64)>, LedgerError> {
        index_lookup_digest(self.kv()?.as_ref(), digest)
    }

    pub(crate) fn apply(&self, batch: WriteBatch) -> Result<(), StoreError> {
        apply_index(self.kv()?.as_ref(), batch)
    }

    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        self.kv()?.flush()
    }

    /// Closes the store and opens it again (lookups wait meanwhile).
    pub(crate) fn reopen(&self) -> Result<(), StoreError> {
        let mut kv = self.kv.write().map_err(|_| StoreError("index lock".into()))?;
        if let Some(old) = kv.take() {
            old.flush()?;
        }
        let started = std::time::Instant::now();
        *kv = Some(Arc::new(SledStore::open_with_cache(&self.path, self.cache_bytes)?));
        self.reopened.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tracing::info!(seconds = started.elapsed().as_secs_f64(), "ledger index reopened");
        Ok(())
    }
}

impl TreeState {
    /// Lets go of the leaves and offsets of the entries before `n` (whole
    /// chunks), which the tree file holds.
    pub(crate) fn spill_before(&mut self, n: u64) {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        self.leaves.spill_before(n);
        self.offsets.spill_before(n);
    }
}

pub(crate) struct Shared {
    pub key: SigningKey,
    pub public: VerifyingKey,
    /// The index (key -> seq, offset), reopened now and then.
    pub store: IndexStore,
    /// Every segment file, to read entries from.
    pub segments: segment::SegmentFiles,
    /// The tree file, read for the leaves and offsets memory let go of.
    pub tree: File,
    pub state: RwLock<TreeState>,
    /// Group commits (write + fdatasync) since open.
    pub commits: std::sync::atomic::AtomicU64,
    /// Keys durable in the segment but not yet in the store: (seq, offset).
    pub unindexed: std::sync::Mutex<std::collections::HashMap<String, Unindexed>>,
    /// Set when the store failed: appends stop until a restart recovers.
    pub failed: std::sync::atomic::AtomicBool,
    /// The background check of the part of the segment a checkpoint let
    /// the open skip.
    pub prefix: std::sync::Mutex<checkpoint::PrefixCheck>,
    /// Set when the ledger closes: the background check stops.
    pub closing: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// The offsets of the entries in `range`; `None` past the end.
    pub(crate) fn offsets(&self, range: std::ops::Range<usize>) -> Result<Option<Vec<u64>>, LedgerError> {
        self.held(range, |s| &s.offsets, |(_, offset)| offset)
    }

    /// The leaf hashes of the entries in `range`; `None` past the end.
    pub(crate) fn leaves(&self, range: std::ops::Range<usize>) -> Result<Option<Vec<Hash>>, LedgerError> {
        self.held(range, |s| &s.leaves, |(leaf, _)| leaf)
    }

    /// Items of `range` from memory, and for those memory let go of, from
    /// the tree file (which holds them for good: it is only appended to).
    fn held<T: Copy>(
        &self,
        range: std::ops::Range<usize>,
        field: impl Fn(&TreeState) -> &Chunked<T>,
        from_file: impl Fn((Hash, u64)) -> T,
    ) -> Result<Option<Vec<T>>, LedgerError> {
        let (split, tail) = {
            let s = self.state.read().map_err(|_| LedgerError::Failed)?;
            let c = field(&s);
            if range.start > range.end || range.end > c.len() {
                return Ok(None);
            }
            let split = c.spilled().clamp(range.start, range.end);
            (split, c.to_vec(split..range.end))
        };
        let Some(tail) = tail else { return Ok(None) };
        if split == range.start {
            return Ok(Some(tail));
        }
        let mut out: Vec<T> =
            checkpoint::read_tree(&self.tree, range.start as u64..split as u64)?.into_iter().map(from_file).collect();
        out.extend(tail);
        Ok(Some(out))
    }

    /// (seq, offset) of a key, from the not-yet-indexed keys or the store.
    /// A key whose digest was never appended is absent without a lookup:
    /// most lookups are of new keys (a first msgid).
    pub(crate) fn locate_key(&self, key: &str) -> Result<Option<(u64, u64)>, LedgerError> {
        let digest = key_digest(key);
        if !self.may_hold(digest)? {
            return Ok(None);
        }
        let recent = self.unindexed.lock().map_err(|_| LedgerError::Failed)?.get(key).map(|u| (u.seq, u.offset));
        if recent.is_some() {
            return Ok(recent);
        }
        self.store.locate(key)
    }

    /// Whether a key of `digest` may have been appended (the in-memory
    /// filter: never a wrong no, sometimes a wrong yes).
    fn may_hold(&self, digest: u64) -> Result<bool, LedgerError> {
        Ok(self.state.read().map_err(|_| LedgerError::Failed)?.key_digests.contains(digest))
    }

    /// (seq, offset) of every entry whose key's digest is `digest`.
    pub(crate) fn locate_digest(&self, digest: u64) -> Result<Vec<(u64, u64)>, LedgerError> {
        if !self.may_hold(digest)? {
            return Ok(Vec::new());
        }
        let mut found: Vec<(u64, u64)> = {
            let recent = self.unindexed.lock().map_err(|_| LedgerError::Failed)?;
            recent.values().filter(|u| u.digest == digest).map(|u| (u.seq, u.offset)).collect()
        };
        found.extend(self.store.locate_digest(digest)?);
        found.sort_unstable();
        found.dedup();
        Ok(found)
    }
}

/// Where a key appended but not yet in the index store is, and its digest.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unindexed {
    seq: u64,
    offset: u64,
    digest: u64,
}

/// An entry read on open, kept once its group's seal is found.
struct Recovered {
    leaf: Hash,
    offset: u64,
    key: String,
    timestamp_ms: i64,
}

/// What the writer is asked to append.
pub(crate) struct Pending {
    pub body: Body,
    pub body_bytes: Vec<u8>,
    pub reply: oneshot::Sender<Result<Appended, LedgerError>>,
}

/// What opening found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    pub entries: u64,
    /// Entries the index had to catch up on.
    pub reindexed: u64,
    pub torn_tail: Option<TornTail>,
    /// The index could not be opened and was rebuilt from the log.
    pub index_rebuilt: bool,
    /// Entries taken from the tree checkpoint rather than read again.
    pub checkpointed: u64,
}

/// What opening hands on: the tree, and what the checkpointer goes on from.
struct Finished {
    state: TreeState,
    digests: Vec<u64>,
    tree_crc: crc32fast::Hasher,
}

/// The tree rebuilt from the segment on open: entries are kept once their
/// group's seal is read, and the index catches up on the ones it lacks.
struct Replay {
    store: Arc<dyn KvStore>,
    /// Entries the index already holds.
    applied: u64,
    leaves: Chunked<Hash>,
    offsets: Chunked<u64>,
    key_digests: digests::DigestSet,
    frontier: Frontier,
    last_hash: Hash,
    sealed_hash: Hash,
    last_seal: Option<SignedTreeHead>,
    /// Entries read since the last seal.
    group: Vec<Recovered>,
    batch: WriteBatch,
    reindexed: u64,
    /// Entries the tree checkpoint covers (read from it, not the segment).
    checkpointed: u64,
    /// Where reading the segment starts.
    start: u64,
    /// Key digests of the entries after the checkpoint, in order.
    digests: Vec<u64>,
    /// CRC of the checkpoint's tree records.
    tree_crc: crc32fast::Hasher,
}

impl Replay {
    fn new(store: Arc<dyn KvStore>) -> Result<Replay, LedgerError> {
        Ok(Replay {
            applied: read_u64(store.get(keys::APPLIED)?.as_deref()).unwrap_or(0),
            store,
            leaves: Chunked::new(),
            offsets: Chunked::new(),
            key_digests: digests::DigestSet::default(),
            frontier: Frontier::default(),
            last_hash: [0u8; 32],
            sealed_hash: [0u8; 32],
            last_seal: None,
            group: Vec::new(),
            batch: WriteBatch::default(),
            reindexed: 0,
            checkpointed: 0,
            start: 0,
            digests: Vec::new(),
            tree_crc: crc32fast::Hasher::new(),
        })
    }

    /// Starts from a tree checkpoint, if it can be used: the index must hold
    /// every entry it covers (those entries are not read again).
    fn resume(mut self, c: checkpoint::Loaded) -> Replay {
        if self.applied < c.entries {
            tracing::warn!(
                indexed = self.applied,
                checkpointed = c.entries,
                "the index is behind the ledger's checkpoint; reading the whole segment"
            );
            return self;
        }
        self.leaves = c.leaves;
        self.offsets = c.offsets;
        self.key_digests = c.key_digests;
        self.frontier = c.frontier;
        self.last_hash = c.last_hash;
        self.sealed_hash = c.last_hash;
        self.last_seal = Some(c.head);
        self.checkpointed = c.entries;
        self.start = c.end;
        self.tree_crc = c.tree_crc;
        self
    }

    /// One record of the segment: an entry joins the open group; a seal
    /// that fits the group keeps it.
    fn record(&mut self, rec: segment::Record) -> Result<(), SegmentError> {
        let seq = (self.leaves.len() + self.group.len()) as u64;
        let offset = rec.offset;
        let corrupt = |reason: String| SegmentError::Corrupt { offset, reason, tail: 0 };
        let hash = entry::entry_hash(&rec.bytes);
        let leaf = merkle::leaf_hash(&rec.bytes);
        match Record::decode(rec.bytes).map_err(|err| corrupt(format!("record after entry {seq}: {err}")))? {
            Record::Seal(seal) => self.seal(seal.head, seq).map_err(corrupt),
            Record::Entry(e) => {
                if e.frame.seq != seq || e.frame.prev_hash != self.last_hash {
                    return Err(corrupt(format!("entry {seq} is out of sequence or breaks the hash chain")));
                }
                self.group.push(Recovered { leaf, offset, key: e.body.key, timestamp_ms: e.frame.timestamp_ms });
                self.last_hash = hash;
                Ok(())
            }
        }
    }

    fn seal(&mut self, head: SignedTreeHead, seq: u64) -> Result<(), String> {
        let mut grown = self.frontier.clone();
        for g in &self.group {
            grown.push(g.leaf);
        }
        let Some(last) = self.group.last() else {
            return Err(format!("a seal after entry {seq} covers no entries"));
        };
        verify::seal_fits(&head, seq, &grown.root(), last.timestamp_ms)
            .map_err(|why| format!("the seal after entry {seq}: {why}"))?;
        for g in self.group.drain(..) {
            let n = self.leaves.len() as u64;
            if n >= self.applied {
                index_entry(&mut self.batch, n, g.offset, &g.key);
                self.reindexed += 1;
            }
            self.leaves.push(g.leaf);
            self.offsets.push(g.offset);
            let digest = key_digest(&g.key);
            self.key_digests.insert(digest);
            self.digests.push(digest);
        }
        if self.batch.len() >= CATCH_UP_BATCH {
            let mut b = std::mem::take(&mut self.batch);
            b.put(keys::APPLIED.to_vec(), seq.to_be_bytes().to_vec());
            // A rebuild cut short resumes, not starts again.
            b.put(keys::FORMAT.to_vec(), keys::INDEX_FORMAT.to_vec());
            apply_index(self.store.as_ref(), b).map_err(|e| e.to_string())?;
        }
        self.frontier = grown;
        self.sealed_hash = self.last_hash;
        self.last_seal = Some(head);
        Ok(())
    }

    /// A group without its seal: its sync never returned, so none of it was
    /// acknowledged. It is cut, with any torn bytes after it.
    fn cut_unsealed(&mut self, segment: &mut Segment, torn: Option<TornTail>) -> Result<Option<TornTail>, LedgerError> {
        let Some(first) = self.group.first() else { return Ok(torn) };
        let tail =
            TornTail::with_unsealed(first.offset, segment.end(), torn).map_err(|bytes| LedgerError::Corrupt {
                seq: self.leaves.len() as u64,
                reason: format!("{} entries ({bytes} bytes) at the end carry no seal", self.group.len()),
            })?;
        segment.cut(first.offset)?;
        Ok(Some(tail))
    }

    /// The tree state, once the index holds every entry, and the key digests
    /// of the entries after the checkpoint.
    fn finish(mut self, key: &SigningKey, clock: &dyn Clock) -> Result<Finished, LedgerError> {
        let len = self.leaves.len() as u64;
        if self.applied > len {
            return Err(LedgerError::Corrupt {
                seq: len,
                reason: format!("the index acknowledges {} entries but the log holds {len}", self.applied),
            });
        }
        let last_timestamp_ms = self.last_seal.map_or(i64::MIN, |h| h.timestamp_ms);
        let head = match self.last_seal {
            Some(h) => h,
            None => SignedTreeHead::sign(key, 0, self.frontier.root(), clock.now_ms()),
        };
        self.batch.put(keys::APPLIED.to_vec(), len.to_be_bytes().to_vec());
        self.batch.put(keys::FORMAT.to_vec(), keys::INDEX_FORMAT.to_vec());
        apply_index(self.store.as_ref(), self.batch)?;
        self.store.flush()?;
        let state = TreeState {
            leaves: self.leaves,
            offsets: self.offsets,
            key_digests: self.key_digests,
            frontier: self.frontier,
            last_hash: self.sealed_hash,
            last_timestamp_ms,
            head,
        };
        Ok(Finished { state, digests: self.digests, tree_crc: self.tree_crc })
    }
}

/// How a ledger is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Past this length a segment file is closed and the next begun.
    pub max_segment_bytes: u64,
    /// Index records applied between two reopenings of the index store.
    pub index_reopen_every: u64,
    /// The index store's page cache: its memory, and how much of a large
    /// index a write or lookup finds without reading the disk.
    pub index_cache_bytes: u64,
}

/// Index records applied between two reopenings of the index, by default.
pub const INDEX_REOPEN_EVERY: u64 = 1_000_000;

impl Default for Options {
    fn default() -> Self {
        Options {
            max_segment_bytes: segment::DEFAULT_MAX_SEGMENT_BYTES,
            index_reopen_every: INDEX_REOPEN_EVERY,
            index_cache_bytes: crate::storage::DEFAULT_CACHE_BYTES,
        }
    }
}

pub struct Ledger {
    tx: Option<mpsc::Sender<Pending>>,
    shared: Arc<Shared>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// The background check of the checkpointed part of the segment.
    checker: Option<std::thread::JoinHandle<()>>,
    recovery: Recovery,
    dir: PathBuf,
}

impl Ledger {
    /// Opens the ledger in `dir` (creating it), recovering from the segment.
    pub fn open(dir: &Path, key: SigningKey, clock: Arc<dyn Clock>) -> Result<Ledger, LedgerError> {
        Ledger::open_with(dir, key, clock, Options::default())
    }

    /// [`Ledger::open`] with `options`.
    pub fn open_with(
        dir: &Path,
        key: SigningKey,
        clock: Arc<dyn Clock>,
        options: Options,
    ) -> Result<Ledger, LedgerError> {
        std::fs::create_dir_all(dir)?;
        let public = key.verifying_key();
        let (store, index_rebuilt) = open_index(&dir.join(INDEX_DIR), options.index_cache_bytes)?;
        let mut replay = Replay::new(Arc::clone(&store))?;
        if let Some(loaded) = segment::SegmentFiles::open(dir).ok().and_then(|f| checkpoint::load(dir, &f)) {
            replay = replay.resume(loaded);
        }
        let (mut segment, torn_tail) =
            Segment::open_dir(dir, public.as_bytes(), replay.start, options.max_segment_bytes, |rec| {
                replay.record(rec)
            })
            .map_err(|e| match e {
                SegmentError::BadHeader => LedgerError::WrongKey,
                other => LedgerError::Segment(other),
            })?;
        let torn_tail = replay.cut_unsealed(&mut segment, torn_tail)?;
        let reindexed = replay.reindexed;
        let checkpointed = replay.checkpointed;
        let checkpoint_end = replay.start;
        let Finished { mut state, digests, tree_crc } = replay.finish(&key, clock.as_ref())?;
        let len = state.leaves.len() as u64;
        let mut checkpointer = checkpoint::Checkpointer::new(dir, checkpointed, digests, tree_crc)?;
        // A long read (no checkpoint, or an old one) is checkpointed here,
        // not by the writer, whose appends it would hold up.
        if len - checkpointed >= checkpoint::EVERY_ENTRIES as u64 {
            match checkpointer.write(&state, segment.end()) {
                Ok(()) => state.spill_before(checkpointer.on_disk()),
                Err(e) => tracing::warn!(
                    error = %e,
                    "cannot write the ledger's checkpoint; the next open reads the segment further"
                ),
            }
        }
        let segments = segment::SegmentFiles::open(dir)?;
        let tree = File::open(dir.join(checkpoint::TREE_FILE))?;
        let shared = Arc::new(Shared {
            key,
            public,
            store: IndexStore {
                path: dir.join(INDEX_DIR),
                kv: RwLock::new(Some(store)),
                reopen_every: options.index_reopen_every.max(1),
                cache_bytes: options.index_cache_bytes,
                reopened: std::sync::atomic::AtomicU64::new(0),
            },
            segments,
            tree,
            state: RwLock::new(state),
            commits: std::sync::atomic::AtomicU64::new(0),
            unindexed: std::sync::Mutex::new(std::collections::HashMap::new()),
            failed: std::sync::atomic::AtomicBool::new(false),
            prefix: std::sync::Mutex::new(if checkpointed > 0 {
                checkpoint::PrefixCheck::Running
            } else {
                checkpoint::PrefixCheck::NotNeeded
            }),
            closing: std::sync::atomic::AtomicBool::new(false),
        });
        let checker = if checkpointed > 0 {
            Some(spawn_prefix_check(Arc::clone(&shared), checkpoint_end, checkpointed)?)
        } else {
            None
        };
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let writer = writer::spawn(segment, Arc::clone(&shared), clock, rx, checkpointer)?;
        Ok(Ledger {
            tx: Some(tx),
            shared,
            writer: Some(writer),
            checker,
            recovery: Recovery { entries: len, reindexed, torn_tail, index_rebuilt, checkpointed },
            dir: dir.to_path_buf(),
        })
    }

    pub fn recovery(&self) -> Recovery {
        self.recovery
    }

    /// Times the index store was closed and opened again since open.
    pub fn index_reopened(&self) -> u64 {
        self.shared.store.reopened.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The background check of what the open took from the checkpoint. On a
    /// disagreement the ledger refuses appends (as after a storage failure).
    pub fn prefix_check(&self) -> checkpoint::PrefixCheck {
        self.shared.prefix.lock().map(|p| p.clone()).unwrap_or(checkpoint::PrefixCheck::Running)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn public_key(&self) -> VerifyingKey {
        self.shared.public
    }

    /// Checks and encodes the body in the caller's thread.
    fn prepare(
        &self,
        kind: EntryKind,
        key: &str,
        payload: Vec<u8>,
    ) -> Result<(Pending, oneshot::Receiver<Result<Appended, LedgerError>>), LedgerError> {
        let body = Body { kind, key: key.to_string(), payload };
        body.validate()?;
        let body_bytes = body.encode();
        let (reply, rx) = oneshot::channel();
        Ok((Pending { body, body_bytes, reply }, rx))
    }

    /// Appends an entry; returns once it is durable. Appending an existing
    /// key with the identical body returns that entry (`existing`); with a
    /// different body it is refused.
    pub async fn append(&self, kind: EntryKind, key: &str, payload: Vec<u8>) -> Result<Appended, LedgerError> {
        let (pending, rx) = self.prepare(kind, key, payload)?;
        let tx = self.tx.as_ref().ok_or(LedgerError::Closed)?;
        tx.send(pending).await.map_err(|_| LedgerError::Closed)?;
        rx.await.map_err(|_| LedgerError::Failed)?
    }

    /// [`Ledger::append`] for callers outside an async runtime.
    pub fn append_blocking(&self, kind: EntryKind, key: &str, payload: Vec<u8>) -> Result<Appended, LedgerError> {
        let (pending, rx) = self.prepare(kind, key, payload)?;
        let tx = self.tx.as_ref().ok_or(LedgerError::Closed)?;
        tx.blocking_send(pending).map_err(|_| LedgerError::Closed)?;
        rx.blocking_recv().map_err(|_| LedgerError::Failed)?
    }

    /// Number of durable entries.
    pub fn len(&self) -> u64 {
        self.read_state(|s| s.leaves.len() as u64)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries whose leaf and offset memory let go of (the tree file holds
    /// them): all but the tail since the last checkpoint, in whole chunks.
    pub fn spilled(&self) -> u64 {
        self.read_state(|s| s.leaves.spilled().min(s.offsets.spilled()) as u64)
    }

    fn read_state<T>(&self, f: impl FnOnce(&TreeState) -> T) -> T {
        match self.shared.state.read() {
            Ok(s) => f(&s),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    /// Group commits (one write and one `fdatasync` each) since open.
    pub fn commits(&self) -> u64 {
        self.shared.commits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The latest signed tree head (one is signed at every group commit).
    pub fn head(&self) -> SignedTreeHead {
        self.read_state(|s| s.head)
    }

    pub fn entry(&self, seq: u64) -> Result<Option<Entry>, LedgerError> {
        let Ok(i) = usize::try_from(seq) else { return Ok(None) };
        let offset = match self.read_state(|s| s.offsets.get(i)) {
            Some(o) => o,
            None => match self.shared.offsets(i..i + 1)?.and_then(|o| o.first().copied()) {
                Some(o) => o,
                None => return Ok(None),
            },
        };
        read_entry(&self.shared.segments, seq, offset).map(Some)
    }

    pub fn entry_by_key(&self, key: &str) -> Result<Option<Entry>, LedgerError> {
        match self.shared.locate_key(key)? {
            Some((seq, offset)) => read_entry(&self.shared.segments, seq, offset).map(Some),
            None => Ok(None),
        }
    }

    /// The entries whose key's digest (the first 64 bits of its SHA-256,
    /// big-endian) is `digest`: an id derived from a key finds its entry
    /// through the key index, with no table of its own. Most often one;
    /// keys that share a digest are each returned.
    pub fn entries_by_digest(&self, digest: u64) -> Result<Vec<Entry>, LedgerError> {
        let found = self.shared.locate_digest(digest)?;
        found.into_iter().map(|(seq, offset)| read_entry(&self.shared.segments, seq, offset)).collect()
    }

    /// Calls `f` with every entry from `from` on, in order (for rebuilding
    /// derived state on start).
    pub fn for_each(&self, from: u64, mut f: impl FnMut(Entry) -> Result<(), LedgerError>) -> Result<(), LedgerError> {
        self.scan(from, |e| f(e).map(|()| ControlFlow::Continue(())))
    }

    /// Like [`Ledger::for_each`], but `f` may stop the scan early. Visits the
    /// entries durable when it starts, taking their offsets
    /// [`SCAN_OFFSETS`] at a time: a scan that stops after a page of
    /// lines copies a little of the ledger's tail, not all of it.
    pub fn scan(
        &self,
        from: u64,
        mut f: impl FnMut(Entry) -> Result<ControlFlow<()>, LedgerError>,
    ) -> Result<(), LedgerError> {
        self.scan_offsets(from, |seq, offset| f(read_entry(&self.shared.segments, seq, offset)?))
    }

    /// Calls `f` with (seq, segment offset) of every entry durable now from
    /// `from` on, copying the offsets [`SCAN_OFFSETS`] at a time.
    fn scan_offsets(
        &self,
        from: u64,
        mut f: impl FnMut(u64, u64) -> Result<ControlFlow<()>, LedgerError>,
    ) -> Result<(), LedgerError> {
        let end = self.read_state(|s| s.offsets.len());
        let mut at = usize::try_from(from).unwrap_or(usize::MAX);
        while at < end {
            let until = at.saturating_add(SCAN_OFFSETS).min(end);
            let offsets = self.shared.offsets(at..until)?.ok_or(LedgerError::Corrupt {
                seq: at as u64,
                reason: "the ledger's offsets end before its length".into(),
            })?;
            for (i, offset) in offsets.into_iter().enumerate() {
                if f((at + i) as u64, offset)?.is_break() {
                    return Ok(());
                }
            }
            at = until;
        }
        Ok(())
    }

    /// [`Ledger::for_each`] over the entries whose kind `wanted` accepts: the
    /// others' kinds are read (two bytes each) but not their records, so
    /// skipping a bulk load's entries costs nothing of their size.
    pub fn for_each_of(
        &self,
        from: u64,
        wanted: impl Fn(EntryKind) -> bool,
        mut f: impl FnMut(Entry) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError> {
        self.scan_offsets(from, |seq, offset| {
            let mut code = [0u8; 2];
            self.shared
                .segments
                .read_exact_at(&mut code, offset + segment::RECORD_HEADER_LEN + entry::FRAME_LEN as u64)?;
            let kind = EntryKind::from_code(u16::from_be_bytes(code))
                .ok_or(LedgerError::Corrupt { seq, reason: format!("unknown kind {code:?}") })?;
            if wanted(kind) {
                f(read_entry(&self.shared.segments, seq, offset)?)?;
            }
            Ok(ControlFlow::Continue(()))
        })
    }

    /// Leaf hash of `seq` and its audit path in the tree of `size` entries.
    pub fn inclusion_proof(&self, seq: u64, size: u64) -> Option<(Hash, Vec<Hash>)> {
        let leaves = self.leaves(size)?;
        let i = usize::try_from(seq).ok()?;
        let proof = merkle::inclusion_proof(&leaves, i)?;
        Some((leaves[i], proof))
    }

    /// Proof that the tree of `old` entries is a prefix of the tree of `new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Option<Vec<Hash>> {
        merkle::consistency_proof(&self.leaves(new)?, usize::try_from(old).ok()?)
    }

    /// Root of the first `size` entries.
    pub fn root_at(&self, size: u64) -> Option<Hash> {
        self.leaves(size).map(|l| merkle::root(&l))
    }

    /// The first `size` leaf hashes, copied out so that hashing them holds
    /// no lock the writer needs.
    fn leaves(&self, size: u64) -> Option<Vec<Hash>> {
        let size = usize::try_from(size).ok()?;
        self.shared.leaves(0..size).ok().flatten()
    }

    /// Stops the writer after the queued appends and flushes the index.
    pub fn close(mut self) -> Result<(), LedgerError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), LedgerError> {
        self.shared.closing.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(c) = self.checker.take() {
            let _ = c.join();
        }
        self.tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        self.shared.store.flush()?;
        Ok(())
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Records the background check reads between two looks at the ledger's
/// traffic, and how long it pauses when groups were committed meanwhile.
const CHECK_YIELD_RECORDS: u64 = 256;
const CHECK_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// Reads the checkpointed part of the segment again, beside the running
/// ledger; a segment that disagrees stops the appends.
fn spawn_prefix_check(shared: Arc<Shared>, end: u64, entries: u64) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("ledger-check".into()).spawn(move || {
        // The leaves checkpointed, a block at a time from wherever they are.
        let mut block: (u64, Vec<Hash>) = (0, Vec::new());
        let leaf_of = |seq: u64| {
            if seq < block.0 || seq >= block.0 + block.1.len() as u64 {
                let from = usize::try_from(seq).ok()?;
                let until = (from + checkpoint::CHECK_BLOCK).min(usize::try_from(entries).ok()?);
                block = (seq, shared.leaves(from..until).ok()??);
            }
            block.1.get(usize::try_from(seq - block.0).ok()?).copied()
        };
        let closing = || shared.closing.load(std::sync::atomic::Ordering::SeqCst);
        // The check yields to traffic: while groups are being committed it
        // pauses after every few records, so a restarted node serves at its
        // full rate while it reads the segment back.
        let (mut records, mut commits) = (0u64, shared.commits.load(std::sync::atomic::Ordering::SeqCst));
        let pause_or_stop = || {
            records += 1;
            if records % CHECK_YIELD_RECORDS == 0 {
                let now = shared.commits.load(std::sync::atomic::Ordering::SeqCst);
                if now != commits {
                    commits = now;
                    std::thread::sleep(CHECK_PAUSE);
                }
            }
            closing()
        };
        let found = checkpoint::check_prefix(&shared.segments, end, entries, &shared.public, leaf_of, pause_or_stop);
        let outcome = match found {
            Ok(()) if closing() => checkpoint::PrefixCheck::Running,
            Ok(()) => checkpoint::PrefixCheck::Passed,
            Err(why) => {
                tracing::error!(why, "the ledger's segment is not what its checkpoint says; refusing appends");
                shared.failed.store(true, std::sync::atomic::Ordering::SeqCst);
                checkpoint::PrefixCheck::Failed(why)
            }
        };
        if let Ok(mut p) = shared.prefix.lock() {
            *p = outcome;
        }
    })
}

/// Reads and decodes the entry at `offset`, which must be entry `seq`.
pub(crate) fn read_entry(segments: &segment::SegmentFiles, seq: u64, offset: u64) -> Result<Entry, LedgerError> {
    let bytes = segments.read_record(offset)?;
    let e = Entry::decode(bytes).map_err(|err| LedgerError::Corrupt { seq, reason: err.to_string() })?;
    if e.frame.seq != seq {
        return Err(LedgerError::Corrupt { seq, reason: format!("index points at entry {}", e.frame.seq) });
    }
    Ok(e)
}

pub(crate) fn read_u64(b: Option<&[u8]>) -> Option<u64> {
    b.and_then(|b| b.get(..8)).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes)
}

/// Opens the index store; one that cannot be opened, or is in another
/// layout, is set aside or emptied to be rebuilt from the log (`true`).
fn open_index(path: &Path, cache_bytes: u64) -> Result<(Arc<dyn KvStore>, bool), LedgerError> {
    let (store, rebuilt) = open_store(path, cache_bytes)?;
    let fits = match store.get(keys::FORMAT)? {
        Some(f) => f == keys::INDEX_FORMAT,
        None => store.first_key()?.is_none(),
    };
    if fits {
        return Ok((store, rebuilt));
    }
    tracing::warn!(path = %path.display(), "the index is in another layout; rebuilding it from the log");
    drop(store);
    std::fs::remove_dir_all(path)?;
    Ok((Arc::new(SledStore::open_with_cache(path, cache_bytes)?), true))
}

/// Opens a store; one that cannot be opened is set aside and begun again
/// (`true`): what it held is derived, rebuilt from the log. A locked one is
/// not: another process may be using this ledger.
pub(crate) fn open_store(path: &Path, cache_bytes: u64) -> Result<(Arc<dyn KvStore>, bool), LedgerError> {
    match SledStore::open_with_cache(path, cache_bytes) {
        Ok(s) => Ok((Arc::new(s), false)),
        Err(e) if e.is_locked() => Err(LedgerError::Store(StoreError(format!(
            "{} is locked; is another process using this ledger? ({})",
            path.display(),
            e.0
        )))),
        Err(e) => {
            tracing::warn!(error = %e, path = %path.display(), "index cannot be opened; rebuilding it from the log");
            let aside = path.with_extension(format!("broken-{}", std::process::id()));
            std::fs::rename(path, &aside)?;
            Ok((Arc::new(SledStore::open_with_cache(path, cache_bytes)?), true))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SledStore;

    /// Keys that share a bucket row, found by trying.
    fn colliding(n: usize) -> Vec<String> {
        let first = "key-0".to_string();
        let bucket = keys::bucket(first.as_bytes());
        let mut out = vec![first];
        let mut i = 1u64;
        while out.len() < n {
            let k = format!("key-{i}");
            if keys::bucket(k.as_bytes()) == bucket {
                out.push(k);
            }
            i += 1;
        }
        out
    }

    #[test]
    fn keys_sharing_a_bucket_are_each_found_and_replaced_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv = SledStore::open(dir.path()).expect("store");
        let keys = colliding(3);
        let mut b = WriteBatch::default();
        index_entry(&mut b, 0, 100, &keys[0]);
        index_entry(&mut b, 1, 200, &keys[1]);
        apply_index(&kv, b).expect("first batch");
        // A later batch adds to the row the store holds; one key is written
        // again (a reindex after a crash) and keeps one record.
        let mut b = WriteBatch::default();
        index_entry(&mut b, 2, 300, &keys[2]);
        index_entry(&mut b, 1, 250, &keys[1]);
        b.put(keys::APPLIED.to_vec(), 3u64.to_be_bytes().to_vec());
        apply_index(&kv, b).expect("second batch");
        assert_eq!(index_lookup(&kv, &keys[0]).expect("read"), Some((0, 100)));
        assert_eq!(index_lookup(&kv, &keys[1]).expect("read"), Some((1, 250)));
        assert_eq!(index_lookup(&kv, &keys[2]).expect("read"), Some((2, 300)));
        assert_eq!(index_lookup(&kv, "key-absent").expect("read"), None);
        let row = kv.get(&keys::bucket(keys[0].as_bytes())).expect("read").expect("row");
        assert_eq!(row.len(), keys.iter().map(|k| 18 + k.len()).sum::<usize>(), "one record a key");
        assert_eq!(read_u64(kv.get(keys::APPLIED).expect("read").as_deref()), Some(3), "other rows as they are");
        // A damaged row is an error, not a miss.
        let mut b = WriteBatch::default();
        b.put(keys::bucket(keys[0].as_bytes()), vec![0, 40, 1, 2]);
        kv.apply(b).expect("damage");
        assert!(index_lookup(&kv, &keys[0]).is_err());
    }

    /// A store whose row-by-row writes keep every other row and fail, as a
    /// crash part-way through them would.
    struct StopsHalfWay(SledStore);

    impl KvStore for StopsHalfWay {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.0.get(key)
        }
        fn apply(&self, batch: WriteBatch) -> Result<(), StoreError> {
            self.0.apply(batch)
        }
        fn put_each(&self, rows: &mut dyn Iterator<Item = crate::storage::RowRef<'_>>) -> Result<(), StoreError> {
            self.0.put_each(&mut rows.step_by(2))?;
            Err(StoreError("stopped half-way".into()))
        }
        fn flush(&self) -> Result<(), StoreError> {
            self.0.flush()
        }
        fn first_key(&self) -> Result<Option<Vec<u8>>, StoreError> {
            self.0.first_key()
        }
        fn clear(&self) -> Result<(), StoreError> {
            self.0.clear()
        }
        fn iter_from(
            &self,
            start: &[u8],
        ) -> Result<Box<dyn Iterator<Item = crate::storage::KvResult> + '_>, StoreError> {
            self.0.iter_from(start)
        }
    }

    #[test]
    fn an_index_batch_stopped_part_way_is_filed_again_to_the_same_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let batch = || {
            let mut b = WriteBatch::default();
            for i in 0..200u64 {
                index_entry(&mut b, i, 1000 + i, &format!("key-{i}"));
            }
            b.put(keys::APPLIED.to_vec(), 200u64.to_be_bytes().to_vec());
            b
        };
        let stops = StopsHalfWay(SledStore::open(dir.path()).expect("store"));
        assert!(apply_index(&stops, batch()).is_err());
        let kv = stops.0;
        assert_eq!(kv.get(keys::APPLIED).expect("read"), None, "the position is not moved");
        let filed = (0..200u64).filter(|i| index_lookup(&kv, &format!("key-{i}")).expect("read").is_some()).count();
        assert!(filed > 0 && filed < 200, "{filed} filed before the stop");
        apply_index(&kv, batch()).expect("again");
        let mut bytes = 0;
        for i in 0..200u64 {
            let key = format!("key-{i}");
            assert_eq!(index_lookup(&kv, &key).expect("read"), Some((i, 1000 + i)));
            bytes += 18 + key.len();
        }
        let rows: usize = kv
            .iter_from(b"b/")
            .expect("scan")
            .map(|r| r.expect("row"))
            .take_while(|(k, _)| k.starts_with(b"b/"))
            .map(|(_, v)| v.len())
            .sum();
        assert_eq!(rows, bytes, "one record a key");
        assert_eq!(read_u64(kv.get(keys::APPLIED).expect("read").as_deref()), Some(200));
    }
}
