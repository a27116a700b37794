//! The append-only segment file: the ledger's source of truth and its
//! durability point. An append is durable once `fdatasync` returns; many
//! entries share one write and one sync (group commit).
//!
//! ```text
//! file   = header | record* | zero*
//! header = "XCLEDGER" | format u32 (=3) | owner public key [32] | crc32 u32 (of the preceding 44 bytes)
//! record = len u32 | crc32 u32 (of the bytes) | stored entry or seal [len]
//! ```
//!
//! A ledger's records run through numbered segment files (`ledger.seg`, then
//! `ledger.seg.000001`, …), each with its header and at most
//! [`DEFAULT_MAX_SEGMENT_BYTES`] or so long: the writer starts the next file
//! after a group that took the current one past its bound (a group is never
//! split). An offset names a record in any of them: the file's number in its
//! top bits ([`global`]), its place in the file in the low [`LOCAL_BITS`].
//!
//! While the ledger is open, zeros are written ahead of the last record
//! ([`Segment::reserve_ahead`]): a group then overwrites blocks the file
//! already has, so its `fdatasync` writes the data alone, not the file's new
//! size as well (one device write fewer per group). A record never has
//! length 0, so the records end where zeros run to the end of the file. A
//! clean close cuts the zeros off.

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
/// Zeros written ahead of the last record: a quarter of the file, between
/// these bounds (small ledgers, as in tests, stay small).
pub const MIN_RESERVE_BYTES: u64 = 64 * 1024;
pub const MAX_RESERVE_BYTES: u64 = 1024 * 1024;
const PAGE: u64 = 4096;

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

/// Bits of an offset that are the place in its segment file (1 TiB).
pub const LOCAL_BITS: u32 = 40;
/// Where a segment file is closed and the next begun, by default.
pub const DEFAULT_MAX_SEGMENT_BYTES: u64 = 1 << 30;
/// The name of the first segment file; the next are `<it>.000001`, ….
pub const FIRST_SEGMENT: &str = "ledger.seg";

/// The offset of `local` in segment file `index`.
pub fn global(index: u32, local: u64) -> u64 {
    (u64::from(index) << LOCAL_BITS) | local
}

/// (segment file, place in it) of an offset.
pub fn split(offset: u64) -> (u32, u64) {
    ((offset >> LOCAL_BITS) as u32, offset & ((1 << LOCAL_BITS) - 1))
}

/// The path of segment file `index` in `dir`.
pub fn path_of(dir: &Path, index: u32) -> std::path::PathBuf {
    match index {
        0 => dir.join(FIRST_SEGMENT),
        i => dir.join(format!("{FIRST_SEGMENT}.{i:06}")),
    }
}

/// The segment files in `dir`, in order (numbered from 0 without a gap: a
/// file after a missing one is not read, and [`check_files`] says so).
pub fn paths(dir: &Path) -> Vec<std::path::PathBuf> {
    (0u32..).map(|i| path_of(dir, i)).take_while(|p| p.exists()).collect()
}

/// Refuses a directory whose segment files have a gap: one missing in the
/// middle would drop entries without a word.
pub fn check_files(dir: &Path) -> Result<(), SegmentError> {
    let n = paths(dir).len() as u32;
    let after = std::fs::read_dir(dir)?.filter_map(|e| e.ok()).find_map(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        let i: u32 = name.strip_prefix(FIRST_SEGMENT)?.strip_prefix('.')?.parse().ok()?;
        (i > n || (i == n && n > 0)).then_some(name)
    });
    match after {
        Some(name) => Err(SegmentError::Corrupt {
            offset: global(n, 0),
            reason: format!("segment file {name} follows a missing one"),
            tail: 0,
        }),
        None => Ok(()),
    }
}

/// Reads the records of every segment file in `dir` from offset `start`
/// on, as [`scan_from`] reads one: a damaged record is a torn tail only in
/// the last file. Returns where the records end and any torn tail, as
/// offsets ([`global`]).
pub fn scan_dir(
    dir: &Path,
    start: u64,
    mut f: impl FnMut(Record) -> Result<(), SegmentError>,
) -> Result<(u64, Option<TornTail>), SegmentError> {
    check_files(dir)?;
    let files = paths(dir);
    let (first, local) = split(start);
    let mut end = (start, None);
    let mut owner = None;
    for (i, path) in files.iter().enumerate() {
        let i = i as u32;
        let mut file = File::open(path)?;
        // Every file is the same owner's.
        let key = read_header(&mut file)?;
        if *owner.get_or_insert(key) != key {
            return Err(SegmentError::BadHeader);
        }
        if i < first {
            continue;
        }
        let from = if i == first { local } else { HEADER_LEN };
        let (e, torn) = scan_from(&file, from, |mut r| {
            r.offset = global(i, r.offset);
            f(r)
        })?;
        let torn = torn.map(|t| TornTail { offset: global(i, t.offset), bytes: t.bytes });
        if torn.is_some() && (i as usize) + 1 < files.len() {
            let t = torn.map_or(0, |t| t.bytes);
            return Err(SegmentError::Corrupt {
                offset: global(i, e),
                reason: "a damaged record in a segment file that is not the last".into(),
                tail: t,
            });
        }
        end = (global(i, e), torn);
    }
    Ok(end)
}

/// Every segment file of a ledger, open to read; the writer adds each new
/// one before it writes into it.
pub struct SegmentFiles {
    files: std::sync::RwLock<Vec<std::sync::Arc<File>>>,
}

impl SegmentFiles {
    pub fn open(dir: &Path) -> std::io::Result<SegmentFiles> {
        let files = paths(dir).iter().map(|p| File::open(p).map(std::sync::Arc::new)).collect::<Result<_, _>>()?;
        Ok(SegmentFiles { files: std::sync::RwLock::new(files) })
    }

    /// Adds the next segment file (the writer has just begun it).
    pub fn push(&self, file: File) {
        if let Ok(mut f) = self.files.write() {
            f.push(std::sync::Arc::new(file));
        }
    }

    /// The file of segment `index`.
    pub fn file(&self, index: u32) -> std::io::Result<std::sync::Arc<File>> {
        let files = self.files.read().map_err(|_| std::io::Error::other("segment files lock"))?;
        files.get(index as usize).cloned().ok_or_else(|| std::io::Error::other(format!("no segment file {index}")))
    }

    /// Segment files open.
    pub fn count(&self) -> u32 {
        self.files.read().map(|f| f.len() as u32).unwrap_or(0)
    }

    /// Reads and checks the record at `offset`.
    pub fn read_record(&self, offset: u64) -> Result<Vec<u8>, SegmentError> {
        let (i, local) = split(offset);
        read_record_in(&*self.file(i)?, local, offset)
    }

    /// Reads `buf.len()` bytes at `offset`.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let (i, local) = split(offset);
        self.file(i)?.read_exact_at(buf, local)
    }
}

pub struct Segment {
    file: File,
    /// The directory of the segment files ([`Segment::open_dir`]), where the
    /// next one goes; `None`: one file, never rotated.
    dir: Option<std::path::PathBuf>,
    /// This file's number.
    index: u32,
    /// Past this length the next group goes to a new file.
    max_bytes: u64,
    /// Where the records end: the next group is written here.
    end: u64,
    /// The file's length: `end` plus the zeros written ahead (never less
    /// than `end`).
    allocated: u64,
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
/// invalid record: if only zeros follow it (space written ahead, see the
/// module doc) the records end there; otherwise, if what follows up to the
/// last non-zero byte can be one torn group commit it is reported as a
/// [`TornTail`], and else as corruption. A torn write is the last write, so
/// it is at most one group long and holds no complete seal with more bytes
/// after it (a seal followed by more data means a later group was written,
/// so the damage is not from a crash).
pub fn scan(
    file: &File,
    f: impl FnMut(Record) -> Result<(), SegmentError>,
) -> Result<(u64, Option<TornTail>), SegmentError> {
    scan_from(file, HEADER_LEN, f)
}

/// [`scan`] from the record at `start` (the end of a record read before).
pub fn scan_from(
    file: &File,
    start: u64,
    mut f: impl FnMut(Record) -> Result<(), SegmentError>,
) -> Result<(u64, Option<TornTail>), SegmentError> {
    let len = file.metadata()?.len();
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let start = start.max(HEADER_LEN);
    reader.seek(SeekFrom::Start(start))?;
    let mut offset = start;
    let mut rh = [0u8; RECORD_HEADER_LEN as usize];
    while offset < len {
        let bad = |reason: &str| {
            let written = written_end(file, offset, len)?;
            if written == offset {
                return Ok((offset, None));
            }
            let tail = written - offset;
            if tail <= MAX_TORN_TAIL_BYTES && !sealed_group_follows(file, offset, written)? {
                Ok((offset, Some(TornTail { offset, bytes: tail })))
            } else {
                Err(SegmentError::Corrupt { offset, reason: reason.to_string(), tail })
            }
        };
        if len - offset < RECORD_HEADER_LEN {
            return bad("truncated record header");
        }
        if let Err(e) = reader.read_exact(&mut rh) {
            return shrunk(e).and_then(|()| bad("the file got shorter while it was read"));
        }
        let n = u32::from_be_bytes([rh[0], rh[1], rh[2], rh[3]]) as u64;
        let crc = u32::from_be_bytes([rh[4], rh[5], rh[6], rh[7]]);
        if n == 0 || n > MAX_ENTRY_BYTES as u64 {
            return bad("impossible record length");
        }
        if len - offset - RECORD_HEADER_LEN < n {
            return bad("record runs past the end of the file");
        }
        let mut bytes = vec![0u8; n as usize];
        if let Err(e) = reader.read_exact(&mut bytes) {
            return shrunk(e).and_then(|()| bad("the file got shorter while it was read"));
        }
        if crc32fast::hash(&bytes) != crc {
            return bad("checksum mismatch");
        }
        f(Record { offset, bytes })?;
        offset += RECORD_HEADER_LEN + n;
    }
    Ok((offset, None))
}

/// `Ok` if `e` is a read that found the file shorter than when the scan
/// began: a running ledger's writer cuts the zeros written ahead when it
/// closes (see [`Segment::trim`]), and [`verify`](super::verify) may be
/// reading it. Any other error is returned.
fn shrunk(e: std::io::Error) -> Result<(), SegmentError> {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        Ok(())
    } else {
        Err(e.into())
    }
}

/// Where the written bytes of `[from, len)` end: just after the last
/// non-zero byte, or `from` if all are zeros. Reads backwards from `len`,
/// or from the file's end if it got shorter (see [`shrunk`]).
fn written_end(file: &File, from: u64, len: u64) -> Result<u64, SegmentError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut end = len;
    while end > from {
        let start = end.saturating_sub(buf.len() as u64).max(from);
        let chunk = &mut buf[..(end - start) as usize];
        if let Err(e) = file.read_exact_at(chunk, start) {
            shrunk(e)?;
            let now = file.metadata()?.len();
            if now >= end {
                return Err(SegmentError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            end = now.max(from);
            continue;
        }
        if let Some(i) = chunk.iter().rposition(|b| *b != 0) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(from)
}

/// Whether a complete, well-formed seal record starts after `damaged` and
/// ends before `len`.
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
        Segment::open_from(path, public_key, HEADER_LEN, f)
    }

    /// [`Segment::open`], reading the records from `start` on (those before
    /// it were read before: see the tree checkpoint).
    pub fn open_from(
        path: &Path,
        public_key: &[u8; 32],
        start: u64,
        f: impl FnMut(Record) -> Result<(), SegmentError>,
    ) -> Result<(Segment, Option<TornTail>), SegmentError> {
        let (file, end, torn) = open_file(path, public_key, start, f)?;
        let allocated = file.metadata()?.len();
        Ok((Segment { file, dir: None, index: 0, max_bytes: u64::MAX, end, allocated }, torn))
    }

    /// Opens the ledger's segment files in `dir` for appending (creating the
    /// first), reading their records from offset `start` on ([`global`];
    /// those before it were read before: see the tree checkpoint) and
    /// cutting a torn tail in the last. `f` sees every valid record, its
    /// offset global; past `max_bytes` a file is closed for the next.
    pub fn open_dir(
        dir: &Path,
        public_key: &[u8; 32],
        start: u64,
        max_bytes: u64,
        mut f: impl FnMut(Record) -> Result<(), SegmentError>,
    ) -> Result<(Segment, Option<TornTail>), SegmentError> {
        check_files(dir)?;
        let last = paths(dir).len().saturating_sub(1) as u32;
        let (first, local) = split(start);
        for i in first..last {
            let mut file = File::open(path_of(dir, i))?;
            if &read_header(&mut file)? != public_key {
                return Err(SegmentError::BadHeader);
            }
            let from = if i == first { local } else { HEADER_LEN };
            let (e, torn) = scan_from(&file, from, |mut r| {
                r.offset = global(i, r.offset);
                f(r)
            })?;
            if let Some(t) = torn {
                return Err(SegmentError::Corrupt {
                    offset: global(i, e),
                    reason: "a damaged record in a segment file that is not the last".into(),
                    tail: t.bytes,
                });
            }
        }
        let from = if first == last { local } else { HEADER_LEN };
        if last > 0 {
            // Begun by a rotation that died before its header was synced:
            // it holds no record yet, and is begun again.
            let f = OpenOptions::new().write(true).open(path_of(dir, last))?;
            if f.metadata()?.len() < HEADER_LEN {
                f.set_len(0)?;
            }
        }
        let (file, end, torn) = open_file(&path_of(dir, last), public_key, from, |mut r| {
            r.offset = global(last, r.offset);
            f(r)
        })?;
        let torn = torn.map(|t| TornTail { offset: global(last, t.offset), bytes: t.bytes });
        let allocated = file.metadata()?.len();
        let segment = Segment { file, dir: Some(dir.to_path_buf()), index: last, max_bytes, end, allocated };
        Ok((segment, torn))
    }

    /// After a group: when this file is past its bound, closes it (its
    /// zeros cut, synced) and begins the next, returning it to read. Each
    /// file ends with a sealed group; a crash between the two leaves either
    /// the old file last, or a new one with its header alone.
    pub fn rotate_if_full(&mut self, public_key: &[u8; 32]) -> std::io::Result<Option<File>> {
        let Some(dir) = &self.dir else { return Ok(None) };
        if self.end < self.max_bytes {
            return Ok(None);
        }
        self.file.set_len(self.end)?;
        self.allocated = self.end;
        self.file.sync_all()?;
        let path = path_of(dir, self.index + 1);
        // No record is in it yet (this file is the one written to).
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
        file.write_all_at(&header(public_key), 0)?;
        file.sync_all()?;
        File::open(dir)?.sync_all()?;
        let reader = File::open(&path)?;
        self.file = file;
        self.index += 1;
        self.end = HEADER_LEN;
        self.allocated = HEADER_LEN;
        Ok(Some(reader))
    }
}

/// Opens one segment file for appending (writing its header if it has
/// none yet) and reads its records from `start` (a place in it), cutting a
/// torn tail. Returns the file and where its records end.
fn open_file(
    path: &Path,
    public_key: &[u8; 32],
    start: u64,
    f: impl FnMut(Record) -> Result<(), SegmentError>,
) -> Result<(File, u64, Option<TornTail>), SegmentError> {
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
    let (end, torn) = scan_from(&file, start, f)?;
    if torn.is_some() {
        file.set_len(end)?;
        file.sync_all()?;
    }
    Ok((file, end, torn))
}

impl Segment {
    /// Appends framed records in one write and makes them durable with one
    /// `fdatasync`. Returns each record's offset.
    pub fn append_durable(&mut self, entries: &[&[u8]]) -> std::io::Result<Vec<u64>> {
        let index = self.index;
        let total: usize = entries.iter().map(|e| e.len() + RECORD_HEADER_LEN as usize).sum();
        let mut buf = Vec::with_capacity(total);
        let mut offsets = Vec::with_capacity(entries.len());
        let mut at = self.end;
        for e in entries {
            offsets.push(global(index, at));
            buf.extend_from_slice(&(e.len() as u32).to_be_bytes());
            buf.extend_from_slice(&crc32fast::hash(e).to_be_bytes());
            buf.extend_from_slice(e);
            at += RECORD_HEADER_LEN + e.len() as u64;
        }
        self.file.write_all_at(&buf, self.end)?;
        self.file.sync_data()?;
        self.end = at;
        self.allocated = self.allocated.max(at);
        Ok(offsets)
    }

    /// Writes zeros ahead of the records when fewer than half of
    /// [`Segment::reserve_bytes`] are left. The next group's `fdatasync`
    /// makes them durable with the file's new size; the groups after that
    /// overwrite blocks the file has, and their syncs have no size to write.
    /// (No sync of its own: zeros, or no bytes at all, after the records
    /// read the same on open.) Returns whether it wrote. Call it between
    /// groups, not inside one.
    pub fn reserve_ahead(&mut self) -> std::io::Result<bool> {
        let want = self.reserve_bytes();
        if self.allocated >= self.end + want / 2 {
            return Ok(false);
        }
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        let target = (self.end + want).div_ceil(PAGE) * PAGE;
        let mut at = self.allocated;
        while at < target {
            let n = (target - at).min(ZEROS.len() as u64) as usize;
            self.file.write_all_at(&ZEROS[..n], at)?;
            at += n as u64;
        }
        self.allocated = target;
        Ok(true)
    }

    /// How many bytes of zeros [`Segment::reserve_ahead`] keeps ahead.
    pub fn reserve_bytes(&self) -> u64 {
        (self.end / 4).clamp(MIN_RESERVE_BYTES, MAX_RESERVE_BYTES)
    }

    /// Cuts the zeros written ahead, leaving the file as long as its records
    /// (on a clean close). Not synced: a crash may bring the zeros back,
    /// which open reads the same.
    pub fn trim(&mut self) -> std::io::Result<()> {
        if self.allocated > self.end {
            self.file.set_len(self.end)?;
            self.allocated = self.end;
        }
        Ok(())
    }

    /// Where the records end: where the next group is written ([`global`]).
    pub fn end(&self) -> u64 {
        global(self.index, self.end)
    }

    /// The file's length: the records and the zeros written ahead.
    pub fn allocated(&self) -> u64 {
        self.allocated
    }

    /// Cuts the file at `offset` (a group written without its seal, never
    /// acknowledged) and makes the cut durable.
    pub fn cut(&mut self, offset: u64) -> std::io::Result<()> {
        let (index, offset) = split(offset);
        if index != self.index {
            return Err(std::io::Error::other(format!("a cut in segment file {index}, not the last ({})", self.index)));
        }
        self.file.set_len(offset)?;
        self.file.sync_all()?;
        self.end = offset;
        self.allocated = offset;
        Ok(())
    }

    /// Reads the stored entry of the record at `offset` (in this file).
    pub fn read(&self, offset: u64) -> Result<Vec<u8>, SegmentError> {
        read_record_in(&self.file, split(offset).1, offset)
    }
}

/// Reads and checks one record of a single segment file.
pub fn read_record(file: &File, offset: u64) -> Result<Vec<u8>, SegmentError> {
    read_record_in(file, offset, offset)
}

/// Reads and checks the record at `local` in `file` (`offset` names it in
/// errors).
fn read_record_in(file: &File, local: u64, offset: u64) -> Result<Vec<u8>, SegmentError> {
    let mut rh = [0u8; RECORD_HEADER_LEN as usize];
    file.read_exact_at(&mut rh, local)?;
    let n = u32::from_be_bytes([rh[0], rh[1], rh[2], rh[3]]) as usize;
    let crc = u32::from_be_bytes([rh[4], rh[5], rh[6], rh[7]]);
    if n == 0 || n > MAX_ENTRY_BYTES {
        return Err(SegmentError::Corrupt { offset, reason: "impossible record length".into(), tail: 0 });
    }
    let mut bytes = vec![0u8; n];
    file.read_exact_at(&mut bytes, local + RECORD_HEADER_LEN)?;
    if crc32fast::hash(&bytes) != crc {
        return Err(SegmentError::Corrupt { offset, reason: "checksum mismatch".into(), tail: 0 });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::head::SignedTreeHead;
    use ed25519_dalek::SigningKey;

    const OWNER: [u8; 32] = [9; 32];

    fn open(path: &Path) -> (Segment, Vec<Vec<u8>>, Option<TornTail>) {
        let mut seen = Vec::new();
        let (segment, torn) = Segment::open(path, &OWNER, |r| {
            seen.push(r.bytes);
            Ok(())
        })
        .expect("open");
        (segment, seen, torn)
    }

    fn len(path: &Path) -> u64 {
        std::fs::metadata(path).expect("meta").len()
    }

    /// A segment at `path` in a new directory, holding one record, with
    /// zeros written ahead of it.
    fn reserved(record: &[u8]) -> (tempfile::TempDir, std::path::PathBuf, Segment) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("segment");
        let (mut s, _, _) = open(&path);
        s.append_durable(&[record]).expect("append");
        assert!(s.reserve_ahead().expect("reserve"));
        (dir, path, s)
    }

    /// A scan that began before a closing writer cut its reserve asks
    /// about bytes the file no longer has: they hold nothing written.
    #[test]
    fn bytes_cut_off_since_the_scan_began_count_as_unwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("file");
        let mut bytes = vec![0u8; 200 * 1024];
        bytes[70_000] = 1;
        std::fs::write(&path, &bytes).expect("write");
        let file = File::open(&path).expect("open");
        assert_eq!(written_end(&file, 10, 1 << 20).expect("read"), 70_001);
        assert_eq!(written_end(&file, 70_001, 1 << 20).expect("read"), 70_001);
        assert_eq!(written_end(&file, 300_000, 1 << 20).expect("read"), 300_000);
    }

    fn seal() -> Vec<u8> {
        let key = SigningKey::from_bytes(&[5; 32]);
        Seal { head: SignedTreeHead::sign(&key, 1, [1; 32], 7) }.encode()
    }

    /// Dropping a segment without `trim` is a crash: the zeros written
    /// ahead stay, and the records end where they begin.
    #[test]
    fn records_end_where_the_zeros_written_ahead_begin() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("segment");
        let (mut s, _, _) = open(&path);
        // The last record ends in zero bytes: they are its own, not the reserve's.
        let records: [&[u8]; 2] = [b"first", &[7, 0, 0, 0]];
        s.append_durable(&records).expect("append");
        let end = s.end();
        assert!(s.reserve_ahead().expect("reserve"));
        assert!(!s.reserve_ahead().expect("reserve"), "enough is reserved already");
        assert_eq!(s.allocated(), len(&path));
        assert!(len(&path) >= end + MIN_RESERVE_BYTES);
        s.append_durable(&[b"third"]).expect("append into the reserve");
        let (end, allocated) = (s.end(), s.allocated());
        assert_eq!(len(&path), allocated, "the append did not grow the file");
        drop(s);
        let (s, seen, torn) = open(&path);
        assert_eq!(seen, vec![b"first".to_vec(), vec![7, 0, 0, 0], b"third".to_vec()]);
        assert_eq!(torn, None);
        assert_eq!((s.end(), s.allocated()), (end, allocated));
    }

    #[test]
    fn a_clean_close_cuts_the_reserve() {
        let (_dir, path, mut s) = reserved(b"one");
        s.trim().expect("trim");
        assert_eq!(len(&path), s.end());
        assert_eq!(s.end(), HEADER_LEN + RECORD_HEADER_LEN + 3);
    }

    #[test]
    fn the_reserve_grows_with_the_file_within_its_bounds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut s, _, _) = open(&dir.path().join("segment"));
        assert_eq!(s.reserve_bytes(), MIN_RESERVE_BYTES);
        let big = vec![1u8; 1 << 20];
        let records: Vec<&[u8]> = (0..3).map(|_| big.as_slice()).collect();
        s.append_durable(&records).expect("append");
        assert_eq!(s.reserve_bytes(), s.end() / 4);
        for _ in 0..2 {
            s.append_durable(&records).expect("append");
        }
        assert_eq!(s.reserve_bytes(), MAX_RESERVE_BYTES);
    }

    /// A group torn inside the reserve: its bytes up to the last non-zero
    /// one are the torn tail, cut on open; the zeros after it do not count.
    #[test]
    fn a_group_torn_inside_the_reserve_is_cut() {
        let (_dir, path, s) = reserved(b"kept");
        let end = s.end();
        drop(s);
        // A record header and part of its bytes reached the disk, then zeros.
        let file = OpenOptions::new().write(true).open(&path).expect("open");
        let mut torn = 300u32.to_be_bytes().to_vec();
        torn.extend_from_slice(&[0xAB; 4]);
        torn.extend_from_slice(&[1; 100]);
        file.write_all_at(&torn, end).expect("write");
        // The disk kept a later page of the group but not an earlier one.
        file.write_all_at(&[2; 10], end + 5000).expect("write");
        drop(file);
        let (s, seen, cut) = open(&path);
        assert_eq!(seen, vec![b"kept".to_vec()]);
        assert_eq!(cut, Some(TornTail { offset: end, bytes: 5010 }));
        assert_eq!((s.end(), s.allocated(), len(&path)), (end, end, end));
    }

    /// Damage followed by zeros is still corruption when a sealed group
    /// follows it: zeros end the records only where nothing but zeros follow.
    #[test]
    fn damage_with_a_sealed_group_after_it_is_corruption_even_in_the_reserve() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("segment");
        let (mut s, _, _) = open(&path);
        let seal = seal();
        let damaged = s.end();
        s.append_durable(&[b"a", seal.as_slice()]).expect("append");
        s.append_durable(&[b"b", seal.as_slice()]).expect("append");
        s.reserve_ahead().expect("reserve");
        drop(s);
        let file = OpenOptions::new().write(true).open(&path).expect("open");
        file.write_all_at(&[0; 4], damaged).expect("zero a record's length");
        drop(file);
        let r = Segment::open(&path, &OWNER, |_| Ok(()));
        assert!(matches!(r, Err(SegmentError::Corrupt { offset, .. }) if offset == damaged));
    }
}
