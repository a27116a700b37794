//! The append-only segment file: the ledger's source of truth and its
//! durability point. An append is durable once `fdatasync` returns; many
//! entries share one write and one sync (group commit).
//!
//! ```text
//! file   = header | record*
//! header = "XCLEDGER" | format u32 (=3) | owner public key [32] | crc32 u32 (of the preceding 44 bytes)
//! record = len u32 | crc32 u32 (of the bytes) | stored entry or seal [len]
//! ```

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::entry::MAX_ENTRY_BYTES;
use super::seal::{Seal, SEAL_LEN, SEAL_TAG};

pub const MAGIC: &[u8; 8] = b"XCLEDGER";
pub const SEGMENT_FORMAT: u32 = 3;
pub const HEADER_LEN: u64 = 48;
pub const RECORD_HEADER_LEN: u64 = 8;
/// Most bytes one group commit writes; a torn write can only damage the last
/// batch, so an invalid tail longer than this is corruption, not a crash.
pub const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
pub const MAX_TORN_TAIL_BYTES: u64 = (MAX_BATCH_BYTES + MAX_ENTRY_BYTES) as u64 + RECORD_HEADER_LEN;

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("segment I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("not an xclear ledger segment (bad header)")]
    BadHeader,
    #[error("segment format {0} is not the format this xclear reads ({SEGMENT_FORMAT}); export it with the xclear that wrote it")]
    Format(u32),
    #[error("record at byte {offset} is damaged ({reason}) and {tail} bytes follow it: corruption, not a torn write")]
    Corrupt { offset: u64, reason: String, tail: u64 },
}

/// Where a torn tail was cut, if anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornTail {
    pub offset: u64,
    pub bytes: u64,
}

impl TornTail {
    /// The torn tail once a group without its seal, starting at `offset`,
    /// joins it: `end` is where the valid records end and `torn` is what
    /// [`scan`] found damaged after them. Longer than one group, it is not a
    /// torn write: `Err` with its length.
    pub fn with_unsealed(offset: u64, end: u64, torn: Option<TornTail>) -> Result<TornTail, u64> {
        let bytes = end - offset + torn.map_or(0, |t| t.bytes);
        if bytes > MAX_TORN_TAIL_BYTES {
            Err(bytes)
        } else {
            Ok(TornTail { offset, bytes })
        }
    }
}

pub struct Segment {
    file: File,
    end: u64,
}

fn header(public_key: &[u8; 32]) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN as usize);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&SEGMENT_FORMAT.to_be_bytes());
    h.extend_from_slice(public_key);
    let crc = crc32fast::hash(&h);
    h.extend_from_slice(&crc.to_be_bytes());
    h
}

/// Reads the owner's public key from a segment header.
pub fn read_header(file: &mut File) -> Result<[u8; 32], SegmentError> {
    let mut h = [0u8; HEADER_LEN as usize];
    file.seek(SeekFrom::Start(0))?;
    file.read_exact(&mut h).map_err(|_| SegmentError::BadHeader)?;
    let crc = u32::from_be_bytes(h[44..48].try_into().map_err(|_| SegmentError::BadHeader)?);
    if &h[..8] != MAGIC || crc32fast::hash(&h[..44]) != crc {
        return Err(SegmentError::BadHeader);
    }
    let format = u32::from_be_bytes(h[8..12].try_into().map_err(|_| SegmentError::BadHeader)?);
    if format != SEGMENT_FORMAT {
        return Err(SegmentError::Format(format));
    }
    h[12..44].try_into().map_err(|_| SegmentError::BadHeader)
}

/// One record as found by [`scan`].
pub struct Record {
    pub offset: u64,
    pub bytes: Vec<u8>,
}

/// Reads records in order, calling `f` for each valid one. Stops at the first
/// invalid record: if what follows can be one torn group commit it is
/// reported as a [`TornTail`], otherwise as corruption. A torn write is the
/// last write, so it is at most one group long and holds no complete seal
/// with more bytes after it (a seal followed by more data means a later
/// group was written, so the damage is not from a crash).
pub fn scan(
    file: &File,
    mut f: impl FnMut(Record) -> Result<(), SegmentError>,
) -> Result<(u64, Option<TornTail>), SegmentError> {
    let len = file.metadata()?.len();
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    reader.seek(SeekFrom::Start(HEADER_LEN))?;
    let mut offset = HEADER_LEN;
    let mut rh = [0u8; RECORD_HEADER_LEN as usize];
    while offset < len {
        let bad = |reason: &str| {
            let tail = len - offset;
            if tail <= MAX_TORN_TAIL_BYTES && !sealed_group_follows(file, offset, len)? {
                Ok((offset, Some(TornTail { offset, bytes: tail })))
            } else {
                Err(SegmentError::Corrupt { offset, reason: reason.to_string(), tail })
            }
        };
        if len - offset < RECORD_HEADER_LEN {
            return bad("truncated record header");
        }
        reader.read_exact(&mut rh)?;
        let n = u32::from_be_bytes([rh[0], rh[1], rh[2], rh[3]]) as u64;
        let crc = u32::from_be_bytes([rh[4], rh[5], rh[6], rh[7]]);
        if n == 0 || n > MAX_ENTRY_BYTES as u64 {
            return bad("impossible record length");
        }
        if len - offset - RECORD_HEADER_LEN < n {
            return bad("record runs past the end of the file");
        }
        let mut bytes = vec![0u8; n as usize];
        reader.read_exact(&mut bytes)?;
        if crc32fast::hash(&bytes) != crc {
            return bad("checksum mismatch");
        }
        f(Record { offset, bytes })?;
        offset += RECORD_HEADER_LEN + n;
    }
    Ok((offset, None))
}

/// Whether a complete, well-formed seal record starts after `damaged` and
/// ends before the end of the file.
fn sealed_group_follows(file: &File, damaged: u64, len: u64) -> Result<bool, SegmentError> {
    let mut tail = vec![0u8; (len - damaged) as usize];
    file.read_exact_at(&mut tail, damaged)?;
    let record = RECORD_HEADER_LEN as usize + SEAL_LEN;
    // A seal record ending at the very end may be the torn group's own seal.
    let found = (1..tail.len().saturating_sub(record)).any(|i| {
        let r = &tail[i..i + record];
        r[..4] == (SEAL_LEN as u32).to_be_bytes()
            && r[8] == SEAL_TAG
            && r[4..8] == crc32fast::hash(&r[8..]).to_be_bytes()
            && Seal::decode(&r[8..]).is_ok()
    });
    Ok(found)
}

impl Segment {
    /// Opens (or creates, with the owner's key in the header) a segment for
    /// appending, cutting a torn tail. `f` sees every valid record.
    pub fn open(
        path: &Path,
        public_key: &[u8; 32],
        f: impl FnMut(Record) -> Result<(), SegmentError>,
    ) -> Result<(Segment, Option<TornTail>), SegmentError> {
        let fresh = !path.exists();
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        if fresh || file.metadata()?.len() == 0 {
            file.write_all_at(&header(public_key), 0)?;
            file.sync_all()?;
            if let Some(dir) = path.parent() {
                File::open(dir)?.sync_all()?;
            }
        }
        if &read_header(&mut file)? != public_key {
            return Err(SegmentError::BadHeader);
        }
        let (end, torn) = scan(&file, f)?;
        if torn.is_some() {
            file.set_len(end)?;
            file.sync_all()?;
        }
        Ok((Segment { file, end }, torn))
    }

    /// Appends framed records in one write and makes them durable with one
    /// `fdatasync`. Returns each record's offset.
    pub fn append_durable(&mut self, entries: &[&[u8]]) -> std::io::Result<Vec<u64>> {
        let total: usize = entries.iter().map(|e| e.len() + RECORD_HEADER_LEN as usize).sum();
        let mut buf = Vec::with_capacity(total);
        let mut offsets = Vec::with_capacity(entries.len());
        let mut at = self.end;
        for e in entries {
            offsets.push(at);
            buf.extend_from_slice(&(e.len() as u32).to_be_bytes());
            buf.extend_from_slice(&crc32fast::hash(e).to_be_bytes());
            buf.extend_from_slice(e);
            at += RECORD_HEADER_LEN + e.len() as u64;
        }
        self.file.write_all_at(&buf, self.end)?;
        self.file.sync_data()?;
        self.end = at;
        Ok(offsets)
    }

    /// Length of the file: where the next group is written.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Cuts the file at `offset` (a group written without its seal, never
    /// acknowledged) and makes the cut durable.
    pub fn cut(&mut self, offset: u64) -> std::io::Result<()> {
        self.file.set_len(offset)?;
        self.file.sync_all()?;
        self.end = offset;
        Ok(())
    }

    /// Reads the stored entry of the record at `offset`.
    pub fn read(&self, offset: u64) -> Result<Vec<u8>, SegmentError> {
        read_record(&self.file, offset)
    }

    pub fn try_clone_file(&self) -> std::io::Result<File> {
        self.file.try_clone()
    }
}

/// Reads and checks one record.
pub fn read_record(file: &File, offset: u64) -> Result<Vec<u8>, SegmentError> {
    let mut rh = [0u8; RECORD_HEADER_LEN as usize];
    file.read_exact_at(&mut rh, offset)?;
    let n = u32::from_be_bytes([rh[0], rh[1], rh[2], rh[3]]) as usize;
    let crc = u32::from_be_bytes([rh[4], rh[5], rh[6], rh[7]]);
    if n == 0 || n > MAX_ENTRY_BYTES {
        return Err(SegmentError::Corrupt { offset, reason: "impossible record length".into(), tail: 0 });
    }
    let mut bytes = vec![0u8; n];
    file.read_exact_at(&mut bytes, offset + RECORD_HEADER_LEN)?;
    if crc32fast::hash(&bytes) != crc {
        return Err(SegmentError::Corrupt { offset, reason: "checksum mismatch".into(), tail: 0 });
    }
    Ok(bytes)
}
