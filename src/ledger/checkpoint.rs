//! The tree checkpoint: what opening a ledger would rebuild by reading its
//! whole segment (every entry's leaf hash, offset and key digest, the
//! frontier, the last hash and seal), kept so that opening reads only the
//! records after it. Two files beside the segment:
//!
//! - `ledger.tree`: 48 bytes per entry, in order (leaf hash, segment offset,
//!   key digest), append-only, synced before the checkpoint that counts them;
//! - `ledger.ckpt`: the count of entries it covers, the segment offset after
//!   their last seal, the last entry's hash, the seal's signed head, the
//!   frontier and a CRC of the tree records it counts, with a CRC of its own;
//!   replaced atomically (write, sync, rename, sync).
//!
//! A checkpoint that is missing, damaged, not this segment's (the entry it
//! ends at hashes otherwise) or ahead of the index is ignored: the ledger is
//! read whole, as before, and a new checkpoint written from it. The entries it
//! covers are not re-hashed on open; `xclear ledger verify` checks them all.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::chunked::{Chunked, CHUNK};
use super::head::SignedTreeHead;
use super::merkle::{Frontier, Hash};
use super::segment::SegmentFiles;
use super::{read_entry, TreeState};

pub const TREE_FILE: &str = "ledger.tree";
pub const CHECKPOINT_FILE: &str = "ledger.ckpt";
const MAGIC: &[u8; 8] = b"XCKPT\x00\x00\x01";
const RECORD: u64 = 48;
/// A checkpoint is written after this many new entries …
pub const EVERY_ENTRIES: usize = 100_000;
/// … or this long after the last one, whichever is first.
pub const EVERY: Duration = Duration::from_secs(30);
/// The least time between two checkpoints of `EVERY_ENTRIES`.
const MIN_GAP: Duration = Duration::from_secs(1);
/// Records read from the tree file at a time on open.
const READ_RECORDS: u64 = 65_536;
/// Leaves the background check takes at a time.
pub(crate) const CHECK_BLOCK: usize = 65_536;

/// A checkpoint as read on open.
pub(crate) struct Loaded {
    pub entries: u64,
    /// Segment offset after the seal of the last entry covered.
    pub end: u64,
    pub last_hash: Hash,
    pub head: SignedTreeHead,
    pub frontier: Frontier,
    pub leaves: Chunked<Hash>,
    pub offsets: Chunked<u64>,
    pub key_digests: super::digests::DigestSet,
    /// CRC of the tree records read, to go on from.
    pub tree_crc: crc32fast::Hasher,
}

fn encode(
    entries: u64,
    end: u64,
    last_hash: &Hash,
    head: &SignedTreeHead,
    frontier: &Frontier,
    tree_crc: u32,
) -> Vec<u8> {
    let mut b = MAGIC.to_vec();
    b.extend_from_slice(&tree_crc.to_be_bytes());
    b.extend_from_slice(&entries.to_be_bytes());
    b.extend_from_slice(&end.to_be_bytes());
    b.extend_from_slice(last_hash);
    b.extend_from_slice(&head.encode());
    b.extend_from_slice(&frontier.encode());
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_be_bytes());
    b
}

/// Reads the checkpoint in `dir` and the tree it counts, checking it against
/// the segment (`segment`, opened for reading). `None`, said why in the log,
/// when there is none to use.
pub(crate) fn load(dir: &Path, segment: &SegmentFiles) -> Option<Loaded> {
    let bytes = std::fs::read(dir.join(CHECKPOINT_FILE)).ok()?;
    match load_checked(dir, segment, &bytes) {
        Ok(l) => Some(l),
        Err(why) => {
            tracing::warn!(why, "the ledger's checkpoint is not used; reading the whole segment");
            None
        }
    }
}

fn load_checked(dir: &Path, segment: &SegmentFiles, b: &[u8]) -> Result<Loaded, String> {
    let (body, crc) = b.split_at_checked(b.len().saturating_sub(4)).ok_or("too short")?;
    if crc32fast::hash(body).to_be_bytes() != crc || !body.starts_with(MAGIC) {
        return Err("bad checksum or magic".into());
    }
    let tree_crc = body.get(8..12).and_then(|s| s.try_into().ok()).map(u32::from_be_bytes).ok_or("short")?;
    let body = &body[12..];
    let u64_at = |at: usize| body.get(at..at + 8).and_then(|s| s.try_into().ok()).map(u64::from_be_bytes);
    let entries = u64_at(0).ok_or("short")?;
    let end = u64_at(8).ok_or("short")?;
    let last_hash: Hash = body.get(16..48).and_then(|s| s.try_into().ok()).ok_or("short")?;
    let head = body.get(48..160).and_then(SignedTreeHead::decode).ok_or("bad head")?;
    let (frontier, rest) = Frontier::decode(body.get(160..).ok_or("short")?).ok_or("bad frontier")?;
    if !rest.is_empty() || entries == 0 || frontier.size() != entries || head.size != entries {
        return Err("sizes disagree".into());
    }
    if frontier.root() != head.root {
        return Err("the frontier's root is not the head's".into());
    }
    let (end_file, end_at) = super::segment::split(end);
    let end_len = segment.file(end_file).and_then(|f| f.metadata()).map_err(|e| e.to_string())?.len();
    if end_len < end_at {
        return Err("the segment is shorter than the checkpoint".into());
    }
    let tree = File::open(dir.join(TREE_FILE)).map_err(|e| e.to_string())?;
    if tree.metadata().map_err(|e| e.to_string())?.len() < entries * RECORD {
        return Err("the tree file is shorter than the checkpoint".into());
    }
    // Memory holds the leaves and offsets of the last, partial chunk; those
    // before it are read from the tree file when asked for.
    let held_from = usize::try_from(entries).map_err(|_| "too many entries")? / CHUNK * CHUNK;
    let (mut leaves, mut offsets) = (Chunked::spilled_to(held_from), Chunked::spilled_to(held_from));
    let mut digests = Vec::new();
    let mut crc = crc32fast::Hasher::new();
    let mut buf = Vec::new();
    let (mut at, mut last_offset) = (0u64, 0u64);
    while at < entries {
        let n = (entries - at).min(READ_RECORDS);
        buf.resize((n * RECORD) as usize, 0);
        tree.read_exact_at(&mut buf, at * RECORD).map_err(|e| e.to_string())?;
        crc.update(&buf);
        for (i, r) in buf.chunks_exact(RECORD as usize).enumerate() {
            let (leaf, offset, digest) = record(r).ok_or("record")?;
            if at as usize + i >= held_from {
                leaves.push(leaf);
                offsets.push(offset);
            }
            last_offset = offset;
            digests.push(digest);
        }
        at += n;
    }
    if crc.clone().finalize() != tree_crc {
        return Err("the tree file's records are not the ones checkpointed".into());
    }
    // The segment is the one checkpointed: its entry at the edge hashes so.
    let last = read_entry(segment, entries - 1, last_offset).map_err(|e| e.to_string())?;
    if last.hash() != last_hash {
        return Err("the segment's entry at the checkpoint hashes otherwise".into());
    }
    digests.sort_unstable();
    Ok(Loaded {
        entries,
        end,
        last_hash,
        head,
        frontier,
        leaves,
        offsets,
        key_digests: digests.into_iter().collect(),
        tree_crc: crc,
    })
}

/// (leaf, offset, key digest) of a tree record.
fn record(r: &[u8]) -> Option<(Hash, u64, u64)> {
    let leaf: Hash = r.get(..32)?.try_into().ok()?;
    let offset = u64::from_be_bytes(r.get(32..40)?.try_into().ok()?);
    let digest = u64::from_be_bytes(r.get(40..48)?.try_into().ok()?);
    Some((leaf, offset, digest))
}

/// (leaf, offset) of the entries in `range` from the tree file, which must
/// hold them (a checkpoint counts them).
pub(crate) fn read_tree(tree: &File, range: std::ops::Range<u64>) -> std::io::Result<Vec<(Hash, u64)>> {
    let n = range.end.saturating_sub(range.start);
    let mut buf = vec![0u8; (n * RECORD) as usize];
    tree.read_exact_at(&mut buf, range.start * RECORD)?;
    buf.chunks_exact(RECORD as usize)
        .map(|r| record(r).map(|(leaf, offset, _)| (leaf, offset)))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| std::io::Error::other("short tree record"))
}

/// What reading the checkpointed part of the segment again found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrefixCheck {
    /// Nothing was taken from a checkpoint: the open read everything.
    NotNeeded,
    Running,
    Passed,
    Failed(String),
}

/// Reads the segment's records before `end` (the part a checkpoint let the
/// open skip) and checks them against the tree in memory: each record's
/// CRC and format, the chain, each entry's leaf hash, each seal's signature.
/// Run in the background after the open; returns the first disagreement.
pub(crate) fn check_prefix(
    segments: &SegmentFiles,
    end: u64,
    entries: u64,
    public: &ed25519_dalek::VerifyingKey,
    mut leaf_of: impl FnMut(u64) -> Option<Hash>,
    mut stop: impl FnMut() -> bool,
) -> Result<(), String> {
    use super::seal::Record;
    use super::segment::{global, split, HEADER_LEN};
    let (last_file, _) = split(end);
    let mut offset = HEADER_LEN;
    let (mut seq, mut prev) = (0u64, [0u8; 32]);
    while offset < end {
        if stop() {
            return Ok(());
        }
        // A file before the last ends where its records do: the next begins.
        let (file, at) = split(offset);
        if file < last_file {
            let len = segments.file(file).and_then(|f| f.metadata()).map_err(|e| e.to_string())?.len();
            if at >= len {
                offset = global(file + 1, HEADER_LEN);
                continue;
            }
        }
        let bytes = segments.read_record(offset).map_err(|e| format!("entry {seq} at byte {offset}: {e}"))?;
        let len = bytes.len() as u64;
        match Record::decode(bytes) {
            Ok(Record::Entry(e)) => {
                if e.frame.seq != seq || e.frame.prev_hash != prev {
                    return Err(format!("entry {seq} is out of sequence or breaks the hash chain"));
                }
                if leaf_of(seq) != Some(super::merkle::leaf_hash(&e.bytes)) {
                    return Err(format!("entry {seq} is not the entry checkpointed"));
                }
                prev = e.hash();
                seq += 1;
            }
            Ok(Record::Seal(s)) => {
                if !s.head.verify(public) || s.head.size != seq {
                    return Err(format!("the seal after entry {seq} does not verify"));
                }
            }
            Err(e) => return Err(format!("entry {seq}: {e}")),
        }
        offset += super::segment::RECORD_HEADER_LEN + len;
    }
    if seq != entries {
        return Err(format!("{seq} entries before the checkpoint's end, which counts {entries}"));
    }
    Ok(())
}

/// Writes checkpoints from the ledger's writer thread.
pub(crate) struct Checkpointer {
    dir: PathBuf,
    tree: File,
    /// Entries whose records are in the tree file (and a checkpoint counts).
    on_disk: u64,
    /// Key digests of the entries after `on_disk`, in order.
    digests: Vec<u64>,
    /// CRC of the `on_disk` records.
    crc: crc32fast::Hasher,
    last: Instant,
}

impl Checkpointer {
    /// `on_disk` entries are counted by the checkpoint in force (0: none);
    /// `digests` are the key digests of the entries after them.
    pub(crate) fn new(
        dir: &Path,
        on_disk: u64,
        digests: Vec<u64>,
        crc: crc32fast::Hasher,
    ) -> std::io::Result<Checkpointer> {
        let tree = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(dir.join(TREE_FILE))?;
        if on_disk == 0 {
            // No checkpoint in force: an old one must not count this file.
            match std::fs::remove_file(dir.join(CHECKPOINT_FILE)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(Checkpointer { dir: dir.to_path_buf(), tree, on_disk, digests, crc, last: Instant::now() })
    }

    /// Entries the tree file holds and a checkpoint counts.
    pub(crate) fn on_disk(&self) -> u64 {
        self.on_disk
    }

    pub(crate) fn note(&mut self, digest: u64) {
        self.digests.push(digest);
    }

    pub(crate) fn due(&self) -> bool {
        let since = self.last.elapsed();
        (self.digests.len() >= EVERY_ENTRIES && since >= MIN_GAP) || (!self.digests.is_empty() && since >= EVERY)
    }

    /// Writes the records of the entries since the last checkpoint, syncs
    /// them, then replaces the checkpoint. `end` is the segment's end, just
    /// after the last group of `state`.
    pub(crate) fn write(&mut self, state: &TreeState, end: u64) -> std::io::Result<()> {
        // Tried now, whatever comes of it: a failing disk is not retried
        // after every group.
        self.last = Instant::now();
        let entries = self.on_disk + self.digests.len() as u64;
        if entries == self.on_disk || state.leaves.len() as u64 != entries {
            return Ok(());
        }
        let range = self.on_disk as usize..entries as usize;
        let (Some(leaves), Some(offsets)) = (state.leaves.to_vec(range.clone()), state.offsets.to_vec(range)) else {
            return Ok(());
        };
        let mut buf = Vec::with_capacity(leaves.len() * RECORD as usize);
        for ((leaf, offset), digest) in leaves.iter().zip(&offsets).zip(&self.digests) {
            buf.extend_from_slice(leaf);
            buf.extend_from_slice(&offset.to_be_bytes());
            buf.extend_from_slice(&digest.to_be_bytes());
        }
        let mut crc = self.crc.clone();
        crc.update(&buf);
        self.tree.set_len(self.on_disk * RECORD)?;
        self.tree.write_all_at(&buf, self.on_disk * RECORD)?;
        self.tree.sync_data()?;
        let tmp = self.dir.join(format!("{CHECKPOINT_FILE}.tmp"));
        let mut f = File::create(&tmp)?;
        f.write_all(&encode(entries, end, &state.last_hash, &state.head, &state.frontier, crc.clone().finalize()))?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.dir.join(CHECKPOINT_FILE))?;
        File::open(&self.dir)?.sync_all()?;
        self.on_disk = entries;
        self.crc = crc;
        self.digests.clear();
        self.last = Instant::now();
        Ok(())
    }
}
