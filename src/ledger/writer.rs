//! The single writer: collects queued appends into a group, resolves
//! idempotency keys, assigns sequence numbers, timestamps and links, signs
//! the group once (a seal: the new tree head, whose root covers its bytes), writes
//! group and seal with one `fdatasync`, and only then answers every caller. The group's index records go, in one atomic batch, to an
//! indexer thread, so that the store's work overlaps the next group's sync;
//! until they are applied the keys are found in `Shared::unindexed`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::checkpoint::Checkpointer;
use super::entry::{self, Frame};
use super::head::SignedTreeHead;
use super::seal::Seal;
use super::segment::{Segment, MAX_BATCH_BYTES};
use super::{
    index_entry, key_digest, keys, merkle, read_entry, Appended, LedgerError, Pending, Shared, MAX_BATCH_ENTRIES,
};
use crate::clock::Clock;
use crate::storage::WriteBatch;

pub(crate) fn spawn(
    segment: Segment,
    shared: Arc<Shared>,
    clock: Arc<dyn Clock>,
    rx: mpsc::Receiver<Pending>,
    checkpointer: Checkpointer,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ledger-writer".into())
        .spawn(move || run(segment, shared, clock, rx, checkpointer))
}

/// Index batches waiting for the indexer; the writer waits when it is full.
const INDEX_QUEUE: usize = 64;

/// One group's index records and the keys they cover.
struct IndexJob {
    batch: WriteBatch,
    keys: Vec<String>,
}

fn run(
    mut segment: Segment,
    shared: Arc<Shared>,
    clock: Arc<dyn Clock>,
    mut rx: mpsc::Receiver<Pending>,
    mut checkpointer: Checkpointer,
) {
    let (index_tx, index_rx) = std::sync::mpsc::sync_channel::<IndexJob>(INDEX_QUEUE);
    let indexer_shared = Arc::clone(&shared);
    let indexer =
        std::thread::Builder::new().name("ledger-indexer".into()).spawn(move || index(indexer_shared, index_rx));
    let indexer = match indexer {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the ledger indexer");
            shared.failed.store(true, Ordering::SeqCst);
            while let Some(p) = rx.blocking_recv() {
                let _ = p.reply.send(Err(LedgerError::Failed));
            }
            return;
        }
    };
    let failed = write_loop(&mut segment, &shared, clock.as_ref(), &mut rx, &index_tx, &mut checkpointer);
    drop(index_tx);
    let _ = indexer.join();
    // Closed: a checkpoint of everything, so the next open reads nothing.
    if !failed {
        checkpoint(&mut checkpointer, &shared, &segment);
    }
    // Closed: the file keeps its records and sheds the zeros written ahead.
    if let Err(e) = segment.trim() {
        tracing::warn!(error = %e, "could not cut the space reserved ahead of the ledger's records");
    }
}

/// How long the indexer gathers groups before it applies them, and the most
/// index records it gathers: one store batch per interval instead of one per
/// group keeps the store's own log writes (each a `sync_file_range`) few
/// when groups are small. Until applied, keys are found in `unindexed`.
const INDEX_INTERVAL: Duration = Duration::from_millis(50);
const INDEX_MAX_OPS: usize = 16_384;

/// Applies index batches in order, gathering the groups of up to
/// `INDEX_INTERVAL` into one store batch.
fn index(shared: Arc<Shared>, rx: std::sync::mpsc::Receiver<IndexJob>) {
    let mut since_open = 0u64;
    while let Ok(first) = rx.recv() {
        let mut batch = first.batch;
        let mut keys = first.keys;
        let until = Instant::now() + INDEX_INTERVAL;
        while batch.ops.len() < INDEX_MAX_OPS {
            match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(more) => {
                    batch.ops.extend(more.batch.ops);
                    keys.extend(more.keys);
                }
                // The interval is over, or the writer stopped: apply what is here.
                Err(_) => break,
            }
        }
        let records = batch.ops.len() as u64;
        match shared.store.apply(batch) {
            Ok(()) => {
                if let Ok(mut u) = shared.unindexed.lock() {
                    for k in &keys {
                        u.remove(k);
                    }
                }
                since_open += records;
                if since_open >= shared.store.reopen_every {
                    since_open = 0;
                    if let Err(e) = shared.store.reopen() {
                        tracing::error!(error = %e, "ledger index cannot be opened again; refusing further appends until restart");
                        shared.failed.store(true, Ordering::SeqCst);
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "ledger index failed; refusing further appends until restart");
                shared.failed.store(true, Ordering::SeqCst);
                return;
            }
        }
    }
}

/// Under load the writer holds a group open this long after its first
/// append, so more appends share its seal and `fdatasync`; only after a group
/// of at least `HOLD_AFTER_GROUP_OF`, so a lone caller never waits (the
/// measurements: docs/PERFORMANCE.md, "Group hold").
const GROUP_HOLD: Duration = Duration::from_millis(1);
const HOLD_AFTER_GROUP_OF: usize = 4;

fn write_loop(
    segment: &mut Segment,
    shared: &Shared,
    clock: &dyn Clock,
    rx: &mut mpsc::Receiver<Pending>,
    index_tx: &std::sync::mpsc::SyncSender<IndexJob>,
    checkpointer: &mut Checkpointer,
) -> bool {
    let mut failed = false;
    let mut reserving = true;
    let mut last_len = 0usize;
    while let Some(first) = rx.blocking_recv() {
        if last_len >= HOLD_AFTER_GROUP_OF {
            std::thread::sleep(GROUP_HOLD);
        }
        let mut group = vec![first];
        let mut bytes = group[0].body_bytes.len();
        while group.len() < MAX_BATCH_ENTRIES && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.body_bytes.len();
                    group.push(p);
                }
                Err(_) => break,
            }
        }
        last_len = group.len();
        if failed || shared.failed.load(Ordering::SeqCst) {
            for p in group {
                let _ = p.reply.send(Err(LedgerError::Failed));
            }
            continue;
        }
        if let Err(e) = commit(segment, shared, clock, group, index_tx, checkpointer) {
            tracing::error!(error = %e, "ledger append failed; refusing further appends until restart");
            failed = true;
            continue;
        }
        if checkpointer.due() {
            checkpoint(checkpointer, shared, segment);
        }
        // Between groups: a full segment file is closed and the next begun,
        // readable before anything is written to it.
        match segment.rotate_if_full(shared.public.as_bytes()) {
            Ok(Some(next)) => shared.segments.push(next),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot begin the next segment file; the current one grows on"),
        }
        // Between groups, with every caller of this one answered: space for
        // the next groups (see `Segment::reserve_ahead`). Without it appends
        // still work, each sync writing the file's size too.
        if reserving {
            if let Err(e) = segment.reserve_ahead() {
                tracing::warn!(error = %e, "cannot write space ahead of the ledger's records; appends go on without it");
                reserving = false;
            }
        }
    }
    failed
}

/// Writes a tree checkpoint (a failure is logged: the next open reads more).
/// Memory then lets go of the leaves and offsets the tree file holds.
fn checkpoint(checkpointer: &mut Checkpointer, shared: &Shared, segment: &Segment) {
    {
        let Ok(state) = shared.state.read() else { return };
        if let Err(e) = checkpointer.write(&state, segment.end()) {
            tracing::warn!(error = %e, "cannot write the ledger's checkpoint; the next open reads the segment further");
            return;
        }
    }
    if let Ok(mut state) = shared.state.write() {
        state.spill_before(checkpointer.on_disk());
    }
}

/// An accepted append waiting for the group's sync.
struct Accepted {
    stored: Vec<u8>,
    hash: merkle::Hash,
    leaf: merkle::Hash,
    seq: u64,
    timestamp_ms: i64,
    key: String,
}

type ReplyTo = tokio::sync::oneshot::Sender<Result<Appended, LedgerError>>;
type Reply = (ReplyTo, Result<Appended, LedgerError>);

fn commit(
    segment: &mut Segment,
    shared: &Shared,
    clock: &dyn Clock,
    group: Vec<Pending>,
    index_tx: &std::sync::mpsc::SyncSender<IndexJob>,
    checkpointer: &mut Checkpointer,
) -> Result<(), LedgerError> {
    let (mut next_seq, mut prev_hash, mut last_ts) = {
        let s = shared.state.read().map_err(|_| LedgerError::Failed)?;
        (s.leaves.len() as u64, s.last_hash, s.last_timestamp_ms)
    };
    let mut accepted: Vec<Accepted> = Vec::with_capacity(group.len());
    // Keys accepted in this group: key -> (index in `accepted`, body bytes).
    let mut in_group: HashMap<String, (usize, Vec<u8>)> = HashMap::new();
    // Replies sent now (already durable) and after the sync.
    let mut now: Vec<Reply> = Vec::new();
    // (caller, index in `accepted`, how it relates to that entry), answered
    // once the entry is durable: a caller told of an earlier entry can read it.
    let mut later: Vec<(ReplyTo, usize, InGroup)> = Vec::new();
    for p in group {
        if let Some((i, body)) = in_group.get(&p.body.key) {
            let how = if *body == p.body_bytes { InGroup::Repeat } else { InGroup::Conflict(p.body.key) };
            later.push((p.reply, *i, how));
            continue;
        }
        // A certainly new key costs no store lookup (see `locate_key`).
        if let Some(result) = existing(shared, &p)? {
            now.push((p.reply, result));
            continue;
        }
        let timestamp_ms = clock.now_ms().max(last_ts);
        let frame = Frame { seq: next_seq, timestamp_ms, prev_hash };
        let stored = entry::assemble(&frame, &p.body_bytes);
        let hash = entry::entry_hash(&stored);
        let leaf = merkle::leaf_hash(&stored);
        in_group.insert(p.body.key.clone(), (accepted.len(), p.body_bytes));
        later.push((p.reply, accepted.len(), InGroup::New));
        accepted.push(Accepted { stored, hash, leaf, seq: next_seq, timestamp_ms, key: p.body.key });
        next_seq += 1;
        prev_hash = hash;
        last_ts = timestamp_ms;
    }
    for (reply, result) in now {
        let _ = reply.send(result);
    }
    if accepted.is_empty() {
        return Ok(());
    }
    let mut frontier = shared.state.read().map_err(|_| LedgerError::Failed)?.frontier.clone();
    for a in &accepted {
        frontier.push(a.leaf);
    }
    let head = SignedTreeHead::sign(&shared.key, frontier.size(), frontier.root(), last_ts);
    let mut records: Vec<&[u8]> = accepted.iter().map(|a| a.stored.as_slice()).collect();
    let seal = Seal { head }.encode();
    records.push(&seal);
    let offsets = match segment.append_durable(&records) {
        Ok(o) => o,
        Err(e) => {
            for (reply, _, _) in later {
                let _ = reply.send(Err(LedgerError::Failed));
            }
            return Err(LedgerError::Io(e));
        }
    };
    // Durable from here on: publish the keys and the new head, queue the
    // index batch, answer.
    shared.commits.fetch_add(1, Ordering::Relaxed);
    let mut batch = WriteBatch::default();
    let digests: Vec<u64> = accepted.iter().map(|a| key_digest(&a.key)).collect();
    {
        let mut u = shared.unindexed.lock().map_err(|_| LedgerError::Failed)?;
        for ((a, offset), digest) in accepted.iter().zip(&offsets).zip(&digests) {
            index_entry(&mut batch, a.seq, *offset, &a.key);
            u.insert(a.key.clone(), super::Unindexed { seq: a.seq, offset: *offset, digest: *digest });
        }
    }
    {
        let mut s = shared.state.write().map_err(|_| LedgerError::Failed)?;
        for ((a, offset), digest) in accepted.iter().zip(&offsets).zip(&digests) {
            s.leaves.push(a.leaf);
            s.offsets.push(*offset);
            s.key_digests.insert(*digest);
            checkpointer.note(*digest);
        }
        s.frontier = frontier;
        s.last_hash = prev_hash;
        s.last_timestamp_ms = last_ts;
        s.head = head;
    }
    batch.put(keys::APPLIED.to_vec(), next_seq.to_be_bytes().to_vec());
    let keys = accepted.iter().map(|a| a.key.clone()).collect();
    let queued = index_tx.send(IndexJob { batch, keys });
    for (reply, i, how) in later {
        let a = &accepted[i];
        let answer = match how {
            InGroup::Conflict(key) => Err(LedgerError::IdempotencyConflict { key, seq: a.seq }),
            InGroup::New | InGroup::Repeat => Ok(Appended {
                seq: a.seq,
                hash: a.hash,
                timestamp_ms: a.timestamp_ms,
                existing: how == InGroup::Repeat,
            }),
        };
        let _ = reply.send(answer);
    }
    queued.map_err(|_| LedgerError::Failed)
}

/// How an append relates to the group's entry for its key.
#[derive(Debug, PartialEq, Eq)]
enum InGroup {
    New,
    /// The same key and body as an earlier append of the group.
    Repeat,
    /// The same key with another body.
    Conflict(String),
}

/// An append whose key is already durable: the same body gives back that
/// entry, a different body is refused.
fn existing(shared: &Shared, p: &Pending) -> Result<Option<Result<Appended, LedgerError>>, LedgerError> {
    let Some((seq, offset)) = shared.locate_key(&p.body.key)? else {
        return Ok(None);
    };
    let e = read_entry(&shared.segments, seq, offset)?;
    if e.body_bytes() == p.body_bytes.as_slice() {
        Ok(Some(Ok(Appended { seq, hash: e.hash(), timestamp_ms: e.frame.timestamp_ms, existing: true })))
    } else {
        Ok(Some(Err(LedgerError::IdempotencyConflict { key: p.body.key.clone(), seq })))
    }
}
