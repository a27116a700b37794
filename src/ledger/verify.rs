//! Re-checking a ledger: every record checksum, entry format, sequence number,
//! hash link and body signature, then the signed tree head against the root.
//! Signatures are verified in batches, in parallel.

use std::path::Path;

use ed25519_dalek::{Signature, VerifyingKey};

use super::entry::{self, Entry};
use super::head::SignedTreeHead;
use super::merkle::{self, Hash};
use super::segment::{self, SegmentError, TornTail};
use super::{keys, INDEX_DIR, SEGMENT_FILE};
use crate::crypto;
use crate::storage::{KvStore, SledStore};

/// Entries whose signatures are checked together (split across threads).
const SIGNATURE_CHUNK: usize = 16_384;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyFailure {
    #[error("entry {seq}: {reason}")]
    Entry { seq: u64, reason: String },
    #[error("tree head: {0}")]
    Head(String),
    #[error("{0}")]
    Other(String),
}

impl VerifyFailure {
    pub fn entry(seq: u64, reason: impl Into<String>) -> Self {
        VerifyFailure::Entry { seq, reason: reason.into() }
    }
}

/// Checks entries in order: format, sequence, links; body signatures in batches.
pub struct ChainVerifier {
    key: VerifyingKey,
    leaves: Vec<Hash>,
    last_hash: Hash,
    last_ts: i64,
    /// (seq, body bytes, signature) not yet checked.
    unchecked: Vec<(u64, Vec<u8>, Signature)>,
}

impl ChainVerifier {
    pub fn new(key: VerifyingKey) -> Self {
        ChainVerifier { key, leaves: Vec::new(), last_hash: [0; 32], last_ts: i64::MIN, unchecked: Vec::new() }
    }

    pub fn len(&self) -> u64 {
        self.leaves.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// Takes the next stored entry.
    pub fn push(&mut self, bytes: Vec<u8>) -> Result<Entry, VerifyFailure> {
        let seq = self.leaves.len() as u64;
        let leaf = merkle::leaf_hash(&bytes);
        let hash = entry::entry_hash(&bytes);
        let e = Entry::decode(bytes).map_err(|err| VerifyFailure::entry(seq, err.to_string()))?;
        if e.frame.seq != seq {
            return Err(VerifyFailure::entry(
                seq,
                format!("carries sequence number {} (reordered, dropped or duplicated entry)", e.frame.seq),
            ));
        }
        if e.frame.prev_hash != self.last_hash {
            return Err(VerifyFailure::entry(seq, "does not link to the previous entry's hash"));
        }
        if e.frame.timestamp_ms < self.last_ts {
            return Err(VerifyFailure::entry(seq, "timestamp goes backwards"));
        }
        self.unchecked.push((seq, e.body_bytes().to_vec(), Signature::from_bytes(&e.signature)));
        self.leaves.push(leaf);
        self.last_hash = hash;
        self.last_ts = e.frame.timestamp_ms;
        if self.unchecked.len() >= SIGNATURE_CHUNK {
            self.check_signatures()?;
        }
        Ok(e)
    }

    fn check_signatures(&mut self) -> Result<(), VerifyFailure> {
        let batch = std::mem::take(&mut self.unchecked);
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).max(1);
        let per = batch.len().div_ceil(threads).max(1);
        let key = self.key;
        let bad = std::thread::scope(|s| {
            let handles: Vec<_> = batch
                .chunks(per)
                .map(|part| {
                    s.spawn(move || {
                        let msgs: Vec<Vec<u8>> =
                            part.iter().map(|(_, body, _)| crypto::signed_message(entry::ENTRY_DOMAIN, body)).collect();
                        let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
                        let sigs: Vec<Signature> = part.iter().map(|(_, _, sig)| *sig).collect();
                        crypto::verify_many(&key, &refs, &sigs).err().map(|i| part[i].0)
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok().flatten()).min()
        });
        match bad {
            Some(seq) => Err(VerifyFailure::entry(seq, "bad signature")),
            None => Ok(()),
        }
    }

    /// Checks the remaining signatures and returns the leaf hashes.
    pub fn finish(mut self) -> Result<Vec<Hash>, VerifyFailure> {
        self.check_signatures()?;
        Ok(self.leaves)
    }
}

/// Checks a signed head against the leaves it claims to cover.
pub fn check_head(head: &SignedTreeHead, key: &VerifyingKey, leaves: &[Hash]) -> Result<(), VerifyFailure> {
    if !head.verify(key) {
        return Err(VerifyFailure::Head("bad signature".into()));
    }
    let size = usize::try_from(head.size).map_err(|_| VerifyFailure::Head("size".into()))?;
    if size > leaves.len() {
        return Err(VerifyFailure::Head(format!(
            "signed for {} entries but only {} are present (entries dropped from the end)",
            head.size,
            leaves.len()
        )));
    }
    if merkle::root(&leaves[..size]) != head.root {
        return Err(VerifyFailure::Head(format!("root does not match the first {} entries", head.size)));
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub public_key: VerifyingKey,
    pub entries: u64,
    pub root: Hash,
    pub head: Option<SignedTreeHead>,
    /// Why no head was checked, when none was.
    pub head_note: Option<String>,
    pub torn_tail: Option<TornTail>,
}

/// Verifies the ledger in `dir` without modifying its log. `expected` pins
/// the owner's key; without it the key in the segment header is used.
pub fn verify_dir(dir: &Path, expected: Option<&VerifyingKey>) -> Result<VerifyReport, VerifyFailure> {
    let path = dir.join(SEGMENT_FILE);
    let mut file = std::fs::File::open(&path).map_err(|e| VerifyFailure::Other(format!("{}: {e}", path.display())))?;
    let owner = segment::read_header(&mut file).map_err(|e| VerifyFailure::Other(e.to_string()))?;
    let key = crypto::parse_public_key(&hex::encode(owner)).map_err(|e| VerifyFailure::Other(e.to_string()))?;
    if expected.is_some_and(|k| *k != key) {
        return Err(VerifyFailure::Other("the segment belongs to a different key".into()));
    }
    let mut chain = ChainVerifier::new(key);
    let mut failure = None;
    let scanned = segment::scan(&file, |rec| {
        if let Err(f) = chain.push(rec.bytes) {
            failure = Some(f);
            return Err(SegmentError::Corrupt { offset: rec.offset, reason: "stop".into(), tail: 0 });
        }
        Ok(())
    });
    if let Some(f) = failure {
        return Err(f);
    }
    let (_, torn_tail) = scanned.map_err(|e| match e {
        SegmentError::Corrupt { offset, reason, .. } => {
            VerifyFailure::entry(chain.len(), format!("damaged record at byte {offset}: {reason}"))
        }
        other => VerifyFailure::Other(other.to_string()),
    })?;
    let entries = chain.len();
    let leaves = chain.finish()?;
    let (head, head_note) = match SledStore::open(&dir.join(INDEX_DIR)) {
        Ok(store) => match store.get(keys::HEAD) {
            Ok(Some(b)) => (SignedTreeHead::decode(&b), None),
            Ok(None) => (None, Some("no signed head stored".to_string())),
            Err(e) => (None, Some(e.to_string())),
        },
        Err(e) => (None, Some(format!("index unavailable ({e}); is the node running?"))),
    };
    if let Some(h) = &head {
        check_head(h, &key, &leaves)?;
    }
    Ok(VerifyReport { public_key: key, entries, root: merkle::root(&leaves), head, head_note, torn_tail })
}
