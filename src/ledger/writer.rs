//! The single writer: collects queued appends into a group, resolves
//! idempotency keys, assigns sequence numbers, timestamps and links, writes
//! the group with one `fdatasync`, indexes it in one atomic store batch,
//! signs a tree head, and only then answers every caller.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::entry::{self, Frame};
use super::head::SignedTreeHead;
use super::segment::{Segment, MAX_BATCH_BYTES};
use super::{
    index_entry, key_digest, keys, merkle, read_entry, read_index, Appended, LedgerError, Pending, Shared,
    MAX_BATCH_ENTRIES,
};
use crate::clock::Clock;
use crate::storage::WriteBatch;

pub(crate) fn spawn(
    segment: Segment,
    shared: Arc<Shared>,
    clock: Arc<dyn Clock>,
    rx: mpsc::Receiver<Pending>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("ledger-writer".into()).spawn(move || run(segment, shared, clock, rx))
}

fn run(mut segment: Segment, shared: Arc<Shared>, clock: Arc<dyn Clock>, mut rx: mpsc::Receiver<Pending>) {
    let mut failed = false;
    while let Some(first) = rx.blocking_recv() {
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
        if failed {
            for p in group {
                let _ = p.reply.send(Err(LedgerError::Failed));
            }
            continue;
        }
        if let Err(e) = commit(&mut segment, &shared, clock.as_ref(), group) {
            tracing::error!(error = %e, "ledger append failed; refusing further appends until restart");
            failed = true;
        }
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

fn commit(segment: &mut Segment, shared: &Shared, clock: &dyn Clock, group: Vec<Pending>) -> Result<(), LedgerError> {
    let (mut next_seq, mut prev_hash, mut last_ts) = {
        let s = shared.state.read().map_err(|_| LedgerError::Failed)?;
        (s.leaves.len() as u64, s.last_hash, s.last_timestamp_ms)
    };
    let mut accepted: Vec<Accepted> = Vec::with_capacity(group.len());
    // Keys accepted in this group: key -> (index in `accepted`, body bytes).
    let mut in_group: HashMap<String, (usize, Vec<u8>)> = HashMap::new();
    // Replies sent now (already durable) and after the sync.
    let mut now: Vec<Reply> = Vec::new();
    // (caller, index in `accepted`, whether it repeats an earlier key of the group)
    let mut later: Vec<(ReplyTo, usize, bool)> = Vec::new();
    for p in group {
        if let Some((i, body)) = in_group.get(&p.body.key) {
            if *body == p.body_bytes {
                later.push((p.reply, *i, true));
            } else {
                let seq = accepted[*i].seq;
                now.push((p.reply, Err(LedgerError::IdempotencyConflict { key: p.body.key, seq })));
            }
            continue;
        }
        let digest = key_digest(&p.body.key);
        let maybe_known = shared.state.read().map_err(|_| LedgerError::Failed)?.key_digests.contains(&digest);
        if !maybe_known {
            // Certainly new: no store lookup needed.
        } else if let Some(result) = existing(shared, &p)? {
            now.push((p.reply, result));
            continue;
        }
        let timestamp_ms = clock.now_ms().max(last_ts);
        let frame = Frame { seq: next_seq, timestamp_ms, prev_hash };
        let stored = entry::assemble(&frame, &p.body_bytes, &p.signature);
        let hash = entry::entry_hash(&stored);
        let leaf = merkle::leaf_hash(&stored);
        in_group.insert(p.body.key.clone(), (accepted.len(), p.body_bytes));
        later.push((p.reply, accepted.len(), false));
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
    let records: Vec<&[u8]> = accepted.iter().map(|a| a.stored.as_slice()).collect();
    let offsets = match segment.append_durable(&records) {
        Ok(o) => o,
        Err(e) => {
            for (reply, _, _) in later {
                let _ = reply.send(Err(LedgerError::Failed));
            }
            return Err(LedgerError::Io(e));
        }
    };
    // Durable from here on. Index, sign the new head, publish, answer.
    shared.commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut batch = WriteBatch::default();
    for (a, offset) in accepted.iter().zip(&offsets) {
        index_entry(&mut batch, a.seq, *offset, &a.key);
    }
    let head = {
        let mut s = shared.state.write().map_err(|_| LedgerError::Failed)?;
        for (a, offset) in accepted.iter().zip(&offsets) {
            s.leaves.push(a.leaf);
            s.offsets.push(*offset);
            s.key_digests.insert(key_digest(&a.key));
            s.frontier.push(a.leaf);
        }
        s.last_hash = prev_hash;
        s.last_timestamp_ms = last_ts;
        s.head = SignedTreeHead::sign(&shared.key, s.frontier.size(), s.frontier.root(), last_ts);
        s.head
    };
    batch.put(keys::APPLIED.to_vec(), next_seq.to_be_bytes().to_vec());
    batch.put(keys::HEAD.to_vec(), head.encode());
    let indexed = shared.store.apply(batch);
    for (reply, i, existing) in later {
        let a = &accepted[i];
        let result = match &indexed {
            Ok(()) => Ok(Appended { seq: a.seq, hash: a.hash, timestamp_ms: a.timestamp_ms, existing }),
            Err(_) => Err(LedgerError::Failed),
        };
        let _ = reply.send(result);
    }
    indexed.map_err(LedgerError::Store)
}

/// An append whose key is already durable: the same body gives back that
/// entry, a different body is refused.
fn existing(shared: &Shared, p: &Pending) -> Result<Option<Result<Appended, LedgerError>>, LedgerError> {
    let Some(v) = shared.store.get(&keys::idem(&p.body.key))? else {
        return Ok(None);
    };
    let (seq, offset) = read_index(&v).ok_or(LedgerError::Corrupt { seq: 0, reason: "bad index record".into() })?;
    let e = read_entry(&shared.reader, seq, offset)?;
    if e.body_bytes() == p.body_bytes.as_slice() {
        Ok(Some(Ok(Appended { seq, hash: e.hash(), timestamp_ms: e.frame.timestamp_ms, existing: true })))
    } else {
        Ok(Some(Err(LedgerError::IdempotencyConflict { key: p.body.key.clone(), seq })))
    }
}
