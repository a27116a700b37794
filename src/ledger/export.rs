//! Export as JSON lines, and verification of an export with nothing but the
//! owner's public key.
//!
//! ```text
//! {"xclear_ledger_export":3,"public_key":"<hex>"}
//! {"seq":0,"timestamp_ms":..,"prev_hash":"<hex>","kind":"settlement","key":"..",
//!  "payload":"<text>" | "payload_hex":"<hex>","hash":"<hex>","entry":"<hex of the stored bytes>"}
//! ...                                    (the entries of one group commit)
//! {"seal":{"size":..,"root":"<hex>","timestamp_ms":..,"signature":"<hex>"}}
//! ...
//! ```
//! The `entry` field is authoritative; the other fields are a readable copy
//! that the verifier checks against it. The last seal's head is the
//! ledger's signed tree head.

use std::io::{BufRead, Write};
use std::path::Path;

use ed25519_dalek::VerifyingKey;
use serde_json::{json, Value};

use super::entry::Entry;
use super::head::SignedTreeHead;
use super::seal::{Record, Seal};
use super::segment::{self, SegmentError};
use super::verify::{ChainVerifier, VerifyFailure};
use super::SEGMENT_FILE;

/// The export format version (first line).
pub const EXPORT_FORMAT: u64 = 3;

/// Longest line accepted in an export (an entry of the largest size, hex-encoded twice).
pub const MAX_EXPORT_LINE: usize = 5 * 1024 * 1024;

pub fn entry_json(e: &Entry) -> Value {
    let mut v = json!({
        "seq": e.frame.seq,
        "timestamp_ms": e.frame.timestamp_ms,
        "prev_hash": hex::encode(e.frame.prev_hash),
        "kind": e.body.kind.name(),
        "key": e.body.key,
        "hash": hex::encode(e.hash()),
        "entry": hex::encode(&e.bytes),
    });
    match std::str::from_utf8(&e.body.payload) {
        Ok(text) => v["payload"] = json!(text),
        Err(_) => v["payload_hex"] = json!(hex::encode(&e.body.payload)),
    }
    v
}

/// Writes the sealed entries of the ledger in `dir` as JSON lines, each
/// group followed by its seal; returns the number of entries. A group
/// without its seal (never acknowledged) is left out.
pub fn export_dir(dir: &Path, out: &mut dyn Write) -> Result<u64, String> {
    let path = dir.join(SEGMENT_FILE);
    let mut file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let owner = segment::read_header(&mut file).map_err(|e| e.to_string())?;
    writeln!(out, "{}", json!({"xclear_ledger_export": EXPORT_FORMAT, "public_key": hex::encode(owner)}))
        .map_err(|e| e.to_string())?;
    let mut n = 0u64;
    let mut group: Vec<String> = Vec::new();
    segment::scan_dir(dir, segment::HEADER_LEN, |rec| {
        let offset = rec.offset;
        match Record::decode(rec.bytes) {
            Ok(Record::Entry(e)) => group.push(entry_json(&e).to_string()),
            Ok(Record::Seal(seal)) => {
                n += group.len() as u64;
                for line in group.drain(..) {
                    writeln!(out, "{line}")?;
                }
                writeln!(out, "{}", json!({"seal": seal.to_json()}))?;
            }
            Err(err) => return Err(SegmentError::Corrupt { offset, reason: err.to_string(), tail: 0 }),
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    Ok(n)
}

/// Every entry of an export, decoded from its authoritative `entry` bytes
/// (checked by [`verify_export`], not here).
pub fn read_entries(input: &mut dyn BufRead, mut f: impl FnMut(Entry)) -> Result<u64, String> {
    let mut n = 0;
    for (i, line) in input.lines().enumerate() {
        let line = line.map_err(|e| format!("line {}: {e}", i + 1))?;
        if line.len() > MAX_EXPORT_LINE {
            return Err(format!("line {}: longer than {MAX_EXPORT_LINE} bytes", i + 1));
        }
        let v: Value = serde_json::from_str(&line).map_err(|e| format!("line {}: {e}", i + 1))?;
        let Some(hex_entry) = v.get("entry").and_then(Value::as_str) else { continue };
        let bytes = hex::decode(hex_entry).map_err(|e| format!("line {}: entry: {e}", i + 1))?;
        f(Entry::decode(bytes).map_err(|e| format!("line {}: entry: {e}", i + 1))?);
        n += 1;
    }
    Ok(n)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportReport {
    pub entries: u64,
    pub head: SignedTreeHead,
}

fn field<'a>(v: &'a Value, name: &str, seq: u64) -> Result<&'a Value, VerifyFailure> {
    v.get(name).ok_or_else(|| VerifyFailure::entry(seq, format!("missing field {name}")))
}

/// Checks that the readable fields say what the stored bytes say.
fn check_fields(v: &Value, e: &Entry, seq: u64) -> Result<(), VerifyFailure> {
    let expected = entry_json(e);
    let obj = v.as_object().ok_or_else(|| VerifyFailure::entry(seq, "not an object"))?;
    for (name, value) in obj {
        match expected.get(name) {
            Some(x) if x == value => {}
            Some(_) => return Err(VerifyFailure::entry(seq, format!("field {name} does not match the stored entry"))),
            None => return Err(VerifyFailure::entry(seq, format!("unexpected field {name}"))),
        }
    }
    if obj.len() != expected.as_object().map_or(0, |o| o.len()) {
        return Err(VerifyFailure::entry(seq, "fields missing"));
    }
    Ok(())
}

/// Verifies an export against the owner's key: every entry's bytes, fields,
/// sequence and link, and every seal: its head against the entries so far and
/// its signature. Every entry must be sealed; the last seal is the head.
pub fn verify_export(input: &mut dyn BufRead, key: &VerifyingKey) -> Result<ExportReport, VerifyFailure> {
    // Lines are read as bytes: a damaged byte may not be UTF-8, and must
    // still be reported against its entry.
    let mut lines = input.split(b'\n');
    let first = lines
        .next()
        .ok_or_else(|| VerifyFailure::Other("empty export".into()))?
        .map_err(|e| VerifyFailure::Other(e.to_string()))?;
    let header: Value = serde_json::from_slice(&first).map_err(|e| VerifyFailure::Other(format!("line 1: {e}")))?;
    match header.get("xclear_ledger_export").and_then(Value::as_u64) {
        Some(EXPORT_FORMAT) => {}
        Some(other) => {
            return Err(VerifyFailure::Other(format!(
                "line 1: export format {other}; this xclear reads format {EXPORT_FORMAT}"
            )))
        }
        None => return Err(VerifyFailure::Other("line 1: not an xclear ledger export".into())),
    }
    if header.get("public_key").and_then(Value::as_str) != Some(&hex::encode(key.as_bytes())) {
        return Err(VerifyFailure::Other("line 1: the export names a different public key".into()));
    }
    let mut chain = ChainVerifier::new(*key);
    for (i, line) in lines.enumerate() {
        let seq = chain.len();
        let line = line.map_err(|e| VerifyFailure::Other(format!("line {}: {e}", i + 2)))?;
        if line.is_empty() {
            continue;
        }
        if line.len() > MAX_EXPORT_LINE {
            return Err(VerifyFailure::entry(seq, "line too long"));
        }
        let v: Value = serde_json::from_slice(&line)
            .map_err(|e| VerifyFailure::entry(seq, format!("line {} is not valid JSON: {e}", i + 2)))?;
        if let Some(s) = v.get("seal") {
            if v.as_object().map_or(0, |o| o.len()) != 1 {
                return Err(VerifyFailure::Head(format!("line {}: unexpected fields beside the seal", i + 2)));
            }
            let seal =
                Seal::from_json(s).ok_or_else(|| VerifyFailure::Head(format!("line {}: malformed seal", i + 2)))?;
            chain.push_seal(seal)?;
            continue;
        }
        let bytes = field(&v, "entry", seq)?
            .as_str()
            .and_then(|h| hex::decode(h).ok())
            .ok_or_else(|| VerifyFailure::entry(seq, "entry is not hex"))?;
        let e = chain.push_entry(bytes)?;
        check_fields(&v, &e, seq)?;
    }
    if chain.unsealed() > 0 {
        return Err(VerifyFailure::Head(format!(
            "entries from {} on are not covered by a seal (a seal is missing)",
            chain.len() - chain.unsealed()
        )));
    }
    let entries = chain.len();
    let (_, head) = chain.finish()?;
    let head = head.ok_or_else(|| VerifyFailure::Head("the export has no seal".into()))?;
    Ok(ExportReport { entries, head })
}
