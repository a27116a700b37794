//! Re-checking a ledger: every record checksum, entry format, sequence number
//! and hash link, and every seal: its tree head against the entries so far
//! and its signature. Signatures are gathered in chunks and each chunk's
//! are verified one by one (`verify_strict`), spread over the cores.

use std::path::Path;

use ed25519_dalek::{Signature, VerifyingKey};

use super::entry::Entry;
use super::head::{head_bytes, SignedTreeHead, HEAD_DOMAIN};
use super::merkle::{self, Frontier, Hash};
use super::seal::{Record, Seal};
use super::segment::{self, SegmentError, TornTail};
use super::SEGMENT_FILE;
use crate::crypto;

/// Signatures checked together (split across threads) …
const SIGNATURE_CHUNK: usize = 16_384;
/// … or fewer, once their messages hold this many bytes.
const SIGNATURE_CHUNK_BYTES: usize = 64 << 20;

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

/// A signature waiting for its chunk: the seal's entries, which one, the message.
struct Unchecked {
    first: u64,
    last: u64,
    what: &'static str,
    message: Vec<u8>,
    signature: Signature,
}

/// Whether a seal's head fits the `entries` before it (at least one since the
/// previous seal: the caller's check), whose recomputed root is `root` and
/// whose last timestamp is `last_ts`; why not. Its signature is checked apart.
pub(crate) fn seal_fits(head: &SignedTreeHead, entries: u64, root: &Hash, last_ts: i64) -> Result<(), String> {
    if head.size != entries {
        return Err(format!(
            "signed for {} entries but {entries} are present (entries dropped, added or moved)",
            head.size
        ));
    }
    if head.root != *root {
        return Err("root does not match the entries".into());
    }
    if head.timestamp_ms != last_ts {
        return Err("time is not the last entry's time".into());
    }
    Ok(())
}

/// Checks records in order: entries' format, sequence and links; each seal
/// against the tree so far; the seals' signatures in chunks.
pub struct ChainVerifier {
    key: VerifyingKey,
    leaves: Vec<Hash>,
    frontier: Frontier,
    last_hash: Hash,
    last_ts: i64,
    /// Entries since the last seal.
    unsealed: u64,
    head: Option<SignedTreeHead>,
    unchecked: Vec<Unchecked>,
    unchecked_bytes: usize,
}

impl ChainVerifier {
    pub fn new(key: VerifyingKey) -> Self {
        ChainVerifier {
            key,
            leaves: Vec::new(),
            frontier: Frontier::default(),
            last_hash: [0; 32],
            last_ts: i64::MIN,
            unsealed: 0,
            head: None,
            unchecked: Vec::new(),
            unchecked_bytes: 0,
        }
    }

    /// Entries taken so far, sealed or not.
    pub fn len(&self) -> u64 {
        self.leaves.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// Entries after the last seal.
    pub fn unsealed(&self) -> u64 {
        self.unsealed
    }

    /// Takes the next stored entry.
    pub fn push_entry(&mut self, bytes: Vec<u8>) -> Result<Entry, VerifyFailure> {
        let seq = self.leaves.len() as u64;
        let leaf = merkle::leaf_hash(&bytes);
        let hash = super::entry::entry_hash(&bytes);
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
        self.unsealed += 1;
        self.leaves.push(leaf);
        self.frontier.push(leaf);
        self.last_hash = hash;
        self.last_ts = e.frame.timestamp_ms;
        Ok(e)
    }

    /// Takes the seal of the entries since the previous one.
    pub fn push_seal(&mut self, seal: Seal) -> Result<(), VerifyFailure> {
        let n = self.len();
        if self.unsealed == 0 {
            return Err(VerifyFailure::Head(format!("a seal after entry {n} covers no entries")));
        }
        let (first, last) = (n - self.unsealed, n - 1);
        seal_fits(&seal.head, n, &self.frontier.root(), self.last_ts)
            .map_err(|why| VerifyFailure::Head(format!("seal of entries {first}..={last}: {why}")))?;
        // The root was recomputed from the entries' bytes above: the head
        // signature is the only one a seal carries.
        let h = &seal.head;
        let head_message = crypto::signed_message(HEAD_DOMAIN, &head_bytes(h.size, h.timestamp_ms, &h.root));
        self.unsealed = 0;
        self.unchecked_bytes += head_message.len();
        self.unchecked.push(Unchecked {
            first,
            last,
            what: "tree head",
            message: head_message,
            signature: Signature::from_bytes(&h.signature),
        });
        self.head = Some(seal.head);
        if self.unchecked.len() >= SIGNATURE_CHUNK || self.unchecked_bytes >= SIGNATURE_CHUNK_BYTES {
            self.check_signatures()?;
        }
        Ok(())
    }

    fn check_signatures(&mut self) -> Result<(), VerifyFailure> {
        let batch = std::mem::take(&mut self.unchecked);
        self.unchecked_bytes = 0;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).max(1);
        let per = batch.len().div_ceil(threads).max(1);
        let key = self.key;
        let bad = std::thread::scope(|s| {
            let handles: Vec<_> = batch
                .chunks(per)
                .map(|part| {
                    s.spawn(move || {
                        let refs: Vec<&[u8]> = part.iter().map(|u| u.message.as_slice()).collect();
                        let sigs: Vec<Signature> = part.iter().map(|u| u.signature).collect();
                        crypto::verify_many(&key, &refs, &sigs).err().map(|i| &part[i])
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok().flatten()).min_by_key(|u| u.first)
        });
        match bad {
            Some(u) => {
                Err(VerifyFailure::Head(format!("seal of entries {}..={}: bad {} signature", u.first, u.last, u.what)))
            }
            None => Ok(()),
        }
    }

    /// Checks the remaining signatures; returns the sealed entries' leaf
    /// hashes and the last seal's head. Unsealed entries at the end are left
    /// out (see [`ChainVerifier::unsealed`]).
    pub fn finish(mut self) -> Result<(Vec<Hash>, Option<SignedTreeHead>), VerifyFailure> {
        self.check_signatures()?;
        let sealed = self.leaves.len() - self.unsealed as usize;
        self.leaves.truncate(sealed);
        Ok((self.leaves, self.head))
    }
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

/// Verifies the ledger in `dir` without modifying its log (a running node's
/// too). `expected` pins the owner's key; without it the key in the segment
/// header is used. Entries after the last seal are a group whose sync never
/// returned: they are reported with the torn tail, not counted.
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
    let mut unsealed_from = None;
    let scanned = segment::scan_dir(dir, segment::HEADER_LEN, |rec| {
        let offset = rec.offset;
        let pushed = match Record::decode(rec.bytes) {
            Ok(Record::Entry(e)) => {
                unsealed_from = unsealed_from.or(Some(offset));
                chain.push_entry(e.bytes).map(|_| ())
            }
            Ok(Record::Seal(seal)) => {
                unsealed_from = None;
                chain.push_seal(seal)
            }
            Err(err) => Err(VerifyFailure::entry(chain.len(), err.to_string())),
        };
        pushed.map_err(|f| {
            failure = Some(f);
            SegmentError::Corrupt { offset, reason: "stop".into(), tail: 0 }
        })
    });
    if let Some(f) = failure {
        return Err(f);
    }
    let (end, torn_tail) = scanned.map_err(|e| match e {
        SegmentError::Corrupt { offset, reason, .. } => {
            VerifyFailure::entry(chain.len(), format!("damaged record at byte {offset}: {reason}"))
        }
        other => VerifyFailure::Other(other.to_string()),
    })?;
    let torn_tail = match unsealed_from {
        Some(offset) => Some(TornTail::with_unsealed(offset, end, torn_tail).map_err(|bytes| {
            VerifyFailure::entry(
                chain.len() - chain.unsealed(),
                format!("{} entries ({bytes} bytes) at the end carry no seal", chain.unsealed()),
            )
        })?),
        None => torn_tail,
    };
    let (leaves, head) = chain.finish()?;
    let head_note = head.is_none().then(|| "the ledger is empty: nothing is sealed yet".to_string());
    Ok(VerifyReport {
        public_key: key,
        entries: leaves.len() as u64,
        root: merkle::root(&leaves),
        head,
        head_note,
        torn_tail,
    })
}
