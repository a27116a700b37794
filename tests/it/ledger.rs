//! The ledger: chain and tree over thousands of entries, idempotency, proofs,
//! group commit, tamper detection of exports and segments, torn tails.

use crate::common;

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use xclear::clock::{Clock, ManualClock};
use xclear::ledger::export::{export_dir, verify_export};
use xclear::ledger::verify::{verify_dir, VerifyFailure};
use xclear::ledger::{merkle, EntryKind, Ledger, LedgerError};

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(ManualClock::new(1_773_100_800_000))
}

fn open(dir: &Path) -> Ledger {
    Ledger::open(dir, key(), clock()).expect("open ledger")
}

fn payload(n: u64) -> Vec<u8> {
    format!("{{\"n\":{n}}}").into_bytes()
}

/// Appends `n` entries from 32 concurrent tasks.
fn fill(ledger: Arc<Ledger>, from: u64, n: u64) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().expect("runtime");
    rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..32u64 {
            let ledger = Arc::clone(&ledger);
            tasks.push(tokio::spawn(async move {
                let mut i = from + t;
                while i < from + n {
                    ledger.append(EntryKind::Note, &format!("k-{i}"), payload(i)).await.expect("append");
                    i += 32;
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
    });
}

/// A ledger of `n` entries from [`fill`], closed.
fn filled(n: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = Arc::new(open(dir.path()));
    fill(Arc::clone(&ledger), 0, n);
    drop(Arc::try_unwrap(ledger).ok().expect("one owner"));
    dir
}

/// How the background check of a checkpointed prefix ended, waiting up to
/// `seconds` for it.
fn checked(l: &Ledger, seconds: u64) -> xclear::ledger::checkpoint::PrefixCheck {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while l.prefix_check() == xclear::ledger::checkpoint::PrefixCheck::Running && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    l.prefix_check()
}

#[test]
fn thousands_of_entries_chain_and_tree_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = Arc::new(open(dir.path()));
    fill(Arc::clone(&ledger), 0, 5000);
    assert_eq!(ledger.len(), 5000);
    // Group commit: concurrent appends shared syncs.
    assert!(ledger.commits() < 2500, "{} commits for 5000 appends", ledger.commits());
    let head = ledger.head();
    assert_eq!(head.size, 5000);
    assert!(head.verify(&ledger.public_key()));
    for seq in [0u64, 1, 2499, 4999] {
        let e = ledger.entry(seq).expect("read").expect("present");
        assert_eq!(e.frame.seq, seq);
        assert_eq!(ledger.entry_by_key(&e.body.key).expect("read").expect("by key").frame.seq, seq);
        let (leaf, path) = ledger.inclusion_proof(seq, head.size).expect("proof");
        assert_eq!(leaf, merkle::leaf_hash(&e.bytes));
        assert!(merkle::verify_inclusion(&leaf, seq, head.size, &path, &head.root));
    }
    let old_root = ledger.root_at(1234).expect("root");
    let proof = ledger.consistency_proof(1234, 5000).expect("consistency");
    assert!(merkle::verify_consistency(1234, 5000, &old_root, &head.root, &proof));
    // Scans visit every entry in order, across the chunks of offsets they
    // copy (4,096 at a time), and stop where asked.
    let mut seen = Vec::new();
    ledger
        .for_each(0, |e| {
            seen.push(e.frame.seq);
            Ok(())
        })
        .expect("scan");
    assert_eq!(seen, (0..5000).collect::<Vec<u64>>());
    let mut seen = Vec::new();
    ledger
        .scan(4000, |e| {
            seen.push(e.frame.seq);
            Ok(if e.frame.seq == 4200 { std::ops::ControlFlow::Break(()) } else { std::ops::ControlFlow::Continue(()) })
        })
        .expect("scan");
    assert_eq!(seen, (4000..=4200).collect::<Vec<u64>>());
    for from in [5000, 10_000, u64::MAX] {
        ledger.for_each(from, |e| panic!("entry {} past the end", e.frame.seq)).expect("empty scan");
    }
    Arc::try_unwrap(ledger).ok().expect("sole owner").close().expect("close");
    let report = verify_dir(dir.path(), Some(&key().verifying_key())).expect("sound");
    assert_eq!(report.entries, 5000);
    assert_eq!(report.root, head.root);
    assert_eq!(report.head.expect("head").size, 5000);
    // Reopen: the same tree, and appends continue.
    let ledger = open(dir.path());
    assert_eq!(ledger.head().root, head.root);
    let a = ledger.append_blocking(EntryKind::Note, "after-reopen", payload(1)).expect("append");
    assert_eq!(a.seq, 5000);
}

#[test]
fn timestamps_never_go_backwards() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manual = Arc::new(ManualClock::new(2_000));
    let ledger = Ledger::open(dir.path(), key(), manual.clone()).expect("open");
    let a = ledger.append_blocking(EntryKind::Note, "a", payload(0)).expect("a");
    manual.set(1_000); // the clock steps back
    let b = ledger.append_blocking(EntryKind::Note, "b", payload(1)).expect("b");
    assert_eq!(a.timestamp_ms, 2_000);
    assert_eq!(b.timestamp_ms, 2_000);
}

#[test]
fn idempotency_returns_the_first_entry_or_refuses_a_changed_body() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = open(dir.path());
    let first = ledger.append_blocking(EntryKind::Settlement, "setl:H1:m1", b"body-1".to_vec()).expect("first");
    assert!(!first.existing);
    let again = ledger.append_blocking(EntryKind::Settlement, "setl:H1:m1", b"body-1".to_vec()).expect("again");
    assert!(again.existing);
    assert_eq!((again.seq, again.hash), (first.seq, first.hash));
    match ledger.append_blocking(EntryKind::Settlement, "setl:H1:m1", b"body-2".to_vec()) {
        Err(LedgerError::IdempotencyConflict { seq, .. }) => assert_eq!(seq, first.seq),
        other => panic!("expected a conflict, got {other:?}"),
    }
    // A different kind under the same key is a different body too.
    assert!(matches!(
        ledger.append_blocking(EntryKind::Reversal, "setl:H1:m1", b"body-1".to_vec()),
        Err(LedgerError::IdempotencyConflict { .. })
    ));
    assert_eq!(ledger.len(), 1);
    ledger.close().expect("close");
    // After a restart the key still answers with the first entry.
    let ledger = open(dir.path());
    let after = ledger.append_blocking(EntryKind::Settlement, "setl:H1:m1", b"body-1".to_vec()).expect("after");
    assert!(after.existing);
    assert_eq!(after.seq, first.seq);
}

#[test]
fn same_key_twice_in_one_group_is_appended_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = Arc::new(open(dir.path()));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().expect("runtime");
    let results = rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..200u64 {
            let ledger = Arc::clone(&ledger);
            tasks.push(tokio::spawn(async move {
                ledger.append(EntryKind::Note, &format!("dup-{}", i % 10), payload(i % 10)).await
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("task").expect("append"));
        }
        out
    });
    assert_eq!(ledger.len(), 10);
    assert_eq!(results.iter().filter(|a| !a.existing).count(), 10);
}

/// A conflicting append in the same group as the first one is answered only
/// once that first entry is durable, so its caller can read what stands.
#[test]
fn a_conflict_within_a_group_can_read_the_entry_that_stands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = Arc::new(open(dir.path()));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().expect("runtime");
    rt.block_on(async {
        for round in 0..50u64 {
            let mut tasks = Vec::new();
            for i in 0..8u64 {
                let ledger = Arc::clone(&ledger);
                tasks.push(tokio::spawn(async move {
                    let key = format!("race-{round}");
                    let r = ledger.append(EntryKind::Note, &key, payload(round * 100 + i)).await;
                    if matches!(r, Err(LedgerError::IdempotencyConflict { .. })) {
                        let stood = ledger.entry_by_key(&key).expect("read");
                        assert!(stood.is_some(), "conflict answered before {key} was readable");
                    }
                }));
            }
            for t in tasks {
                t.await.expect("task");
            }
        }
    });
    assert_eq!(ledger.len(), 50);
}

#[test]
fn limits_are_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = open(dir.path());
    assert!(matches!(ledger.append_blocking(EntryKind::Note, "", vec![]), Err(LedgerError::Format(_))));
    let long_key = "k".repeat(257);
    assert!(matches!(ledger.append_blocking(EntryKind::Note, &long_key, vec![]), Err(LedgerError::Format(_))));
    let big = vec![0u8; xclear::ledger::entry::MAX_PAYLOAD_BYTES + 1];
    assert!(matches!(ledger.append_blocking(EntryKind::Note, "big", big), Err(LedgerError::Format(_))));
    assert_eq!(ledger.len(), 0);
}

#[test]
fn wrong_key_cannot_open_anothers_ledger() {
    let dir = tempfile::tempdir().expect("tempdir");
    open(dir.path()).close().expect("close");
    let other = SigningKey::from_bytes(&[8u8; 32]);
    assert!(matches!(Ledger::open(dir.path(), other, clock()), Err(LedgerError::WrongKey)));
    assert!(verify_dir(dir.path(), Some(&SigningKey::from_bytes(&[8u8; 32]).verifying_key())).is_err());
}

/// A ledger of `entries` appended one at a time (one seal each), exported.
fn exported(entries: u64) -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = open(dir.path());
    for i in 0..entries {
        ledger.append_blocking(EntryKind::Note, &format!("e-{i}"), payload(i)).expect("append");
    }
    ledger.close().expect("close");
    export(dir)
}

/// A ledger of `entries` appended concurrently (groups of many), exported.
fn exported_in_groups(entries: u64) -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = Arc::new(open(dir.path()));
    fill(Arc::clone(&ledger), 0, entries);
    Arc::try_unwrap(ledger).ok().expect("sole owner").close().expect("close");
    export(dir)
}

fn export(dir: tempfile::TempDir) -> (tempfile::TempDir, Vec<u8>) {
    let mut out = Vec::new();
    export_dir(dir.path(), &mut out).expect("export");
    (dir, out)
}

fn check_export(bytes: &[u8]) -> Result<u64, VerifyFailure> {
    verify_export(&mut BufReader::new(bytes), &key().verifying_key()).map(|r| r.entries)
}

fn lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| l.to_vec()).collect()
}

/// Index in `lines` of each entry's line, by seq.
fn entry_lines(lines: &[Vec<u8>]) -> Vec<usize> {
    (0..lines.len()).filter(|i| lines[*i].starts_with(b"{\"entry\"") || lines[*i].starts_with(b"{\"seq\"")).collect()
}

fn seal_lines(lines: &[Vec<u8>]) -> usize {
    lines.iter().filter(|l| l.starts_with(b"{\"seal\"")).count()
}

fn join(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out
}

/// Flips bytes of entry lines (every byte of some, a sample of the others)
/// and checks that verification names the entry.
fn flips_are_named(export: &[u8], entries: usize) {
    assert_eq!(check_export(export), Ok(entries as u64));
    let original = lines(export);
    let at = entry_lines(&original);
    assert_eq!(at.len(), entries);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for seq in 0..entries {
        let line = &original[at[seq]];
        let positions: Vec<usize> = if seq % 8 == 0 {
            (0..line.len()).collect()
        } else {
            (0..40).map(|_| (next() as usize) % line.len()).collect()
        };
        for pos in positions {
            let mut tampered = original.clone();
            let old = tampered[at[seq]][pos];
            let mut new = (next() % 256) as u8;
            if new == old {
                new = old ^ 0x01;
            }
            tampered[at[seq]][pos] = new;
            match check_export(&join(&tampered)) {
                Err(VerifyFailure::Entry { seq: named, .. }) => {
                    assert_eq!(named, seq as u64, "byte {pos} of entry {seq}: {old:#x}->{new:#x}")
                }
                other => panic!("byte {pos} of entry {seq} ({old:#x}->{new:#x}): {other:?}"),
            }
        }
    }
}

#[test]
fn a_flipped_byte_anywhere_in_an_exported_entry_is_named() {
    let (_dir, export) = exported(24);
    assert_eq!(seal_lines(&lines(&export)), 24, "one seal per entry appended alone");
    flips_are_named(&export, 24);
}

#[test]
fn a_flipped_byte_in_an_entry_of_a_group_is_named() {
    let (_dir, export) = exported_in_groups(48);
    let seals = seal_lines(&lines(&export));
    assert!(seals < 48, "concurrent appends share seals: {seals} seals for 48 entries");
    flips_are_named(&export, 48);
}

#[test]
fn reordered_dropped_and_duplicated_entries_are_detected() {
    let (_dir, export) = exported(10);
    let original = lines(&export);
    let at = entry_lines(&original);
    let named = |l: &[Vec<u8>]| match check_export(&join(l)) {
        Err(VerifyFailure::Entry { seq, .. }) => seq,
        other => panic!("expected an entry failure, got {other:?}"),
    };
    let mut swapped = original.clone();
    swapped.swap(at[3], at[4]);
    assert_eq!(named(&swapped), 3);
    // A dropped group (entry 5 and its seal).
    let mut dropped = original.clone();
    dropped.drain(at[5]..at[5] + 2);
    assert_eq!(named(&dropped), 5);
    let mut duplicated = original.clone();
    duplicated.insert(at[2], original[at[2]].clone());
    assert_eq!(named(&duplicated), 3);
    // A dropped entry whose seal stays: the seal covers nothing.
    let mut unsealed = original.clone();
    unsealed.remove(at[5]);
    assert!(matches!(check_export(&join(&unsealed)), Err(VerifyFailure::Head(_))));
    // Dropping the last entry is caught by the seals.
    let mut last = original.clone();
    last.remove(at[9]);
    assert!(matches!(check_export(&join(&last)), Err(VerifyFailure::Head(_))));
    // So is a tampered or missing last seal.
    let mut no_head = original.clone();
    no_head.pop();
    assert!(matches!(check_export(&join(&no_head)), Err(VerifyFailure::Head(_))));
    let mut bad_head = original.clone();
    let h = bad_head.len() - 1;
    let pos = bad_head[h].len() - 5;
    bad_head[h][pos] = if bad_head[h][pos] == b'0' { b'1' } else { b'0' };
    assert!(matches!(check_export(&join(&bad_head)), Err(VerifyFailure::Head(_))));
    // A different key refuses the whole export.
    let other = SigningKey::from_bytes(&[9u8; 32]).verifying_key();
    assert!(verify_export(&mut BufReader::new(export.as_slice()), &other).is_err());
}

/// Every seal signature is checked: a seal changed at rest (with its record
/// checksum recomputed, as a forger would) fails verification.
#[test]
fn a_forged_seal_in_the_segment_is_caught() {
    let (dir, _) = exported(30);
    let path = dir.path().join(xclear::ledger::SEGMENT_FILE);
    let original = std::fs::read(&path).expect("read");
    // Records: entry, seal, entry, seal, ...; walk them to the 10th seal.
    let mut at = xclear::ledger::segment::HEADER_LEN as usize;
    let mut seals = 0;
    let seal_at = loop {
        let n = u32::from_be_bytes(original[at..at + 4].try_into().expect("len")) as usize;
        if original[at + 8] == xclear::ledger::seal::SEAL_TAG {
            seals += 1;
            if seals == 10 {
                break at;
            }
        }
        at += 8 + n;
    };
    // Seal record: len u32 | crc u32 | tag | size 8 | time 8 | root 32 | signature 64.
    for (what, offset) in [("tree head signature", 8 + 1 + 48 + 3), ("root does not match", 8 + 1 + 16 + 5)] {
        let mut bytes = original.clone();
        bytes[seal_at + offset] ^= 0x10;
        let n = xclear::ledger::seal::SEAL_LEN;
        let crc = crc32fast::hash(&bytes[seal_at + 8..seal_at + 8 + n]);
        bytes[seal_at + 4..seal_at + 8].copy_from_slice(&crc.to_be_bytes());
        std::fs::write(&path, &bytes).expect("write");
        match verify_dir(dir.path(), None) {
            Err(VerifyFailure::Head(m)) => {
                assert!(m.contains("9..=9") && m.contains(what), "{m}")
            }
            other => panic!("{what}: {other:?}"),
        }
    }
}

/// A group written without its seal (the process died inside the write) was
/// never acknowledged: verify reports it as a torn tail, open cuts it.
#[test]
fn a_group_without_its_seal_is_cut_on_open() {
    // Two ledgers with the same key and clock write the same bytes: one of 19
    // entries, one of 20. The first gets the second's segment minus the last
    // seal, as if it had died writing its 20th entry's group.
    let (dir, _) = exported(19);
    let (longer, _) = exported(20);
    let path = dir.path().join(xclear::ledger::SEGMENT_FILE);
    let mut bytes = std::fs::read(longer.path().join(xclear::ledger::SEGMENT_FILE)).expect("read");
    bytes.truncate(bytes.len() - 8 - xclear::ledger::seal::SEAL_LEN);
    std::fs::write(&path, &bytes).expect("write");
    let report = verify_dir(dir.path(), None).expect("verify");
    assert_eq!(report.entries, 19);
    let torn = report.torn_tail.expect("reported");
    let ledger = open(dir.path());
    assert_eq!(ledger.len(), 19);
    assert_eq!(ledger.recovery().torn_tail, Some(torn));
    assert_eq!(std::fs::metadata(&path).expect("meta").len(), torn.offset);
    let a = ledger.append_blocking(EntryKind::Note, "e-19", payload(19)).expect("append again");
    assert_eq!((a.seq, a.existing), (19, false));
    ledger.close().expect("close");
    assert_eq!(verify_dir(dir.path(), None).expect("sound").entries, 20);
}

/// A torn write may persist the group's seal but not an entry before it (the
/// disk keeps pages out of order until the sync returns): still one torn
/// group, cut on open. The same damage with a later group after it is not.
#[test]
fn a_hole_in_the_last_group_is_a_torn_write_but_not_in_an_earlier_one() {
    let (dir, _) = exported(19);
    let (longer, _) = exported(20);
    let path = dir.path().join(xclear::ledger::SEGMENT_FILE);
    let full = std::fs::read(longer.path().join(xclear::ledger::SEGMENT_FILE)).expect("read");
    let last_group = std::fs::metadata(&path).expect("meta").len() as usize;
    let mut bytes = full.clone();
    bytes[last_group + 20] ^= 0xFF; // inside entry 19, before its seal
    std::fs::write(&path, &bytes).expect("write");
    let ledger = open(dir.path());
    assert_eq!(ledger.len(), 19);
    assert_eq!(ledger.recovery().torn_tail.map(|t| t.offset), Some(last_group as u64));
    ledger.close().expect("close");
    // Damage to entry 18 instead: entry 19's group follows it, sealed.
    let (dir, _) = exported(19);
    let mut bytes = full;
    let entry_18 = last_group - 8 - xclear::ledger::seal::SEAL_LEN - 60;
    bytes[entry_18] ^= 0xFF;
    std::fs::write(dir.path().join(xclear::ledger::SEGMENT_FILE), &bytes).expect("write");
    assert!(matches!(Ledger::open(dir.path(), key(), clock()), Err(LedgerError::Segment(_))));
    assert!(verify_dir(dir.path(), None).is_err());
}

/// The index remembers how many entries it was told were durable: a log cut
/// below that (a seal removed after it was acknowledged) stops the node.
#[test]
fn a_log_shorter_than_what_was_acknowledged_stops_the_node() {
    let (dir, _) = exported(20);
    let path = dir.path().join(xclear::ledger::SEGMENT_FILE);
    let len = std::fs::metadata(&path).expect("meta").len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).expect("open");
    f.set_len(len - 8 - xclear::ledger::seal::SEAL_LEN as u64).expect("cut the last seal");
    drop(f);
    match Ledger::open(dir.path(), key(), clock()) {
        Err(LedgerError::Corrupt { seq, .. }) => assert_eq!(seq, 19),
        other => panic!("expected the node to refuse, got {:?}", other.map(|l| l.len())),
    }
}

#[test]
fn a_damaged_segment_fails_verification() {
    let (dir, _) = exported(200);
    let path = dir.path().join(xclear::ledger::SEGMENT_FILE);
    let mut bytes = std::fs::read(&path).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&path, bytes).expect("write");
    assert!(verify_dir(dir.path(), None).is_err());
}

#[test]
fn a_torn_tail_is_cut_on_open_and_appends_continue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = open(dir.path());
    for i in 0..50 {
        ledger.append_blocking(EntryKind::Note, &format!("t-{i}"), payload(i)).expect("append");
    }
    ledger.close().expect("close");
    let path = dir.path().join(xclear::ledger::SEGMENT_FILE);
    let good_len = std::fs::metadata(&path).expect("meta").len();
    // A half-written record: a length and checksum, then only part of the entry.
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).expect("open");
    f.write_all(&300u32.to_be_bytes()).expect("w");
    f.write_all(&[0xAB; 4]).expect("w");
    f.write_all(&[0x01; 100]).expect("w");
    drop(f);
    let report = verify_dir(dir.path(), None).expect("verify reads past a torn tail");
    assert_eq!(report.entries, 50);
    assert!(report.torn_tail.is_some());
    let ledger = open(dir.path());
    let rec = ledger.recovery();
    assert_eq!(rec.entries, 50);
    assert_eq!(rec.torn_tail.map(|t| t.offset), Some(good_len));
    assert_eq!(std::fs::metadata(&path).expect("meta").len(), good_len);
    let a = ledger.append_blocking(EntryKind::Note, "t-next", payload(99)).expect("append");
    assert_eq!(a.seq, 50);
    ledger.close().expect("close");
    assert_eq!(verify_dir(dir.path(), None).expect("sound").entries, 51);
}

#[test]
fn a_lost_index_is_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = open(dir.path());
    for i in 0..300 {
        ledger.append_blocking(EntryKind::Note, &format!("r-{i}"), payload(i)).expect("append");
    }
    let root = ledger.head().root;
    ledger.close().expect("close");
    std::fs::remove_dir_all(dir.path().join(xclear::ledger::INDEX_DIR)).expect("rm index");
    let ledger = open(dir.path());
    assert_eq!(ledger.recovery().reindexed, 300);
    assert_eq!(ledger.head().root, root);
    let e = ledger.entry_by_key("r-123").expect("read").expect("indexed again");
    assert_eq!(e.frame.seq, 123);
    // Idempotency survives the rebuild.
    assert!(ledger.append_blocking(EntryKind::Note, "r-5", payload(5)).expect("again").existing);
}

#[test]
fn keys_are_found_while_the_index_gathers_and_a_clean_close_leaves_none_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = open(dir.path());
    // One group per append: the indexer gathers many groups into one store batch.
    for i in 0..300 {
        ledger.append_blocking(EntryKind::Note, &format!("g-{i}"), payload(i)).expect("append");
        let e = ledger.entry_by_key(&format!("g-{i}")).expect("read").expect("found before it is indexed");
        assert_eq!(e.frame.seq, i);
        assert!(ledger.append_blocking(EntryKind::Note, &format!("g-{i}"), payload(i)).expect("again").existing);
    }
    ledger.close().expect("close");
    let ledger = open(dir.path());
    assert!(!ledger.recovery().index_rebuilt, "reopening waits for the closed store's lock");
    assert_eq!(ledger.recovery().reindexed, 0, "closing applied every gathered index record");
    assert_eq!(ledger.entry_by_key("g-299").expect("read").expect("indexed").frame.seq, 299);
}

#[test]
fn a_ledger_open_elsewhere_is_refused_and_its_index_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = open(dir.path());
    first.append_blocking(EntryKind::Note, "x", payload(1)).expect("append");
    let second = Ledger::open(dir.path(), key(), clock());
    let err = second.err().expect("the index is locked by the open ledger").to_string();
    assert!(err.contains("locked"), "{err}");
    let entries: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!entries.iter().any(|n| n.contains("broken")), "the live index was not moved aside: {entries:?}");
    assert_eq!(first.entry_by_key("x").expect("read").expect("still there").frame.seq, 0);
}

/// What a ledger shows of its tree: size, root, a proof, the next append.
fn tree_view(l: &Ledger) -> (u64, merkle::Hash, Option<(merkle::Hash, Vec<merkle::Hash>)>) {
    let head = l.head();
    (head.size, head.root, l.inclusion_proof(head.size / 3, head.size))
}

#[test]
fn a_checkpoint_opens_without_reading_the_segment_and_a_bad_one_is_ignored() {
    use xclear::ledger::checkpoint::{CHECKPOINT_FILE, TREE_FILE};
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = Arc::new(open(dir.path()));
    fill(Arc::clone(&ledger), 0, 3_000);
    let whole = tree_view(&ledger);
    drop(Arc::try_unwrap(ledger).ok().expect("one owner"));

    // Closed cleanly: a checkpoint of everything; opening reads no entry.
    let l = open(dir.path());
    assert_eq!(l.recovery().checkpointed, 3_000);
    assert_eq!(tree_view(&l), whole);
    // What it skipped is read again beside it, and agrees.
    assert_eq!(checked(&l, 20), xclear::ledger::checkpoint::PrefixCheck::Passed);
    // Appends go on from it: the chain and the tree verify whole.
    let l = Arc::new(l);
    fill(Arc::clone(&l), 3_000, 500);
    assert_eq!(l.entry_by_key("k-10").expect("read").expect("found").body.payload, payload(10));
    assert!(l.append_blocking(EntryKind::Note, "k-10", payload(10)).expect("again").existing);
    let grown = tree_view(&l);
    drop(Arc::try_unwrap(l).ok().expect("one owner"));
    assert_eq!(verify_dir(dir.path(), Some(&key().verifying_key())).expect("verifies").entries, 3_500);

    // Damaged, missing its tree, or another ledger's: ignored, the segment
    // read whole, the same tree.
    let damage = |f: &dyn Fn(&Path)| {
        f(dir.path());
        let l = open(dir.path());
        assert_eq!(l.recovery().checkpointed, 0);
        assert_eq!(tree_view(&l), grown);
        drop(l); // writes a good checkpoint again
        assert_eq!(open(dir.path()).recovery().checkpointed, 3_500);
    };
    damage(&|d| {
        let p = d.join(CHECKPOINT_FILE);
        let mut b = std::fs::read(&p).expect("read");
        b[20] ^= 1;
        std::fs::write(&p, b).expect("write");
    });
    damage(&|d| std::fs::write(d.join(TREE_FILE), b"").expect("truncate"));
    damage(&|d| {
        let p = d.join(TREE_FILE);
        let mut b = std::fs::read(&p).expect("read");
        b[48 * 1_000 + 40] ^= 1; // a key digest, which no root covers
        std::fs::write(&p, b).expect("write");
    });
    let other = tempfile::tempdir().expect("tempdir");
    let l = open(other.path());
    for i in 0..200u64 {
        l.append_blocking(EntryKind::Note, &format!("other-{i}"), payload(i)).expect("append");
    }
    drop(l);
    damage(&|d| {
        for f in [CHECKPOINT_FILE, TREE_FILE] {
            std::fs::copy(other.path().join(f), d.join(f)).expect("copy");
        }
    });

    // A torn tail after the checkpoint is cut as ever.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(xclear::ledger::SEGMENT_FILE))
            .expect("segment");
        f.write_all(&[0, 0, 1, 0, 9, 9, 9, 9, 1, 2, 3]).expect("garbage");
    }
    let l = open(dir.path());
    assert!(l.recovery().torn_tail.is_some());
    assert_eq!(l.recovery().checkpointed, 3_500);
    assert_eq!(tree_view(&l), grown);
}

#[test]
fn a_long_read_is_checkpointed_at_the_open_not_by_the_writer() {
    use xclear::ledger::checkpoint::{CHECKPOINT_FILE, EVERY_ENTRIES};
    let dir = filled(EVERY_ENTRIES as u64);
    std::fs::remove_file(dir.path().join(CHECKPOINT_FILE)).expect("no checkpoint");
    let l = open(dir.path());
    assert_eq!(l.recovery().checkpointed, 0, "read whole");
    // Written before the open returned, with no append since.
    assert!(dir.path().join(CHECKPOINT_FILE).exists());
    assert_tree_reads_whole(&l, "opened by reading the segment");
    drop(l);
    let l = open(dir.path());
    assert_eq!(l.recovery().checkpointed, EVERY_ENTRIES as u64);
    assert_tree_reads_whole(&l, "opened from the checkpoint");
    // The background check reads the checkpointed leaves from the tree file.
    assert_eq!(checked(&l, 60), xclear::ledger::checkpoint::PrefixCheck::Passed);
}

/// Memory has let go of the leaves and offsets of the checkpointed entries,
/// and the ledger still reads each entry, scans them in order, and proves
/// against its signed head from the tree file.
fn assert_tree_reads_whole(l: &Ledger, how: &str) {
    let n = l.len();
    assert!(l.spilled() >= n / 2, "{how}: {} of {n} entries' leaves let go of", l.spilled());
    let head = l.head();
    assert_eq!(l.root_at(n), Some(head.root), "{how}");
    for seq in [0, 1, l.spilled() - 1, l.spilled(), n - 1] {
        let by_seq = l.entry(seq).expect("read").expect("there");
        let by_key = l.entry_by_key(&by_seq.body.key).expect("read").expect("indexed");
        assert_eq!((by_seq.frame.seq, by_seq.hash()), (seq, by_key.hash()), "{how}: entry {seq}");
        let (leaf, path) = l.inclusion_proof(seq, n).expect("proof");
        assert_eq!(leaf, merkle::leaf_hash(&by_seq.bytes), "{how}: leaf {seq}");
        assert_eq!(merkle::root_from_inclusion(&leaf, seq, n, &path), Some(head.root), "{how}: proof of {seq}");
    }
    let mut next = 0u64;
    l.for_each(0, |e| {
        assert_eq!(e.frame.seq, next, "{how}");
        next += 1;
        Ok(())
    })
    .expect("scan");
    assert_eq!(next, n, "{how}");
}

fn open_small(dir: &Path) -> Ledger {
    let options = xclear::ledger::Options { max_segment_bytes: 64 * 1024, ..Default::default() };
    Ledger::open_with(dir, key(), clock(), options).expect("open ledger")
}

fn segment_files(dir: &Path) -> usize {
    xclear::ledger::segment::paths(dir).len()
}

#[test]
fn segments_rotate_and_the_ledger_reads_verifies_exports_and_proves_across_them() {
    use xclear::ledger::checkpoint::CHECKPOINT_FILE;
    use xclear::ledger::segment::path_of;
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = Arc::new(open_small(dir.path()));
    fill(Arc::clone(&ledger), 0, 6_000);
    let whole = tree_view(&ledger);
    let files = segment_files(dir.path());
    assert!(files >= 4, "6,000 entries in files of 64 KiB: {files} files");
    for i in [0u64, 1, 2_999, 5_999] {
        let e = ledger.entry_by_key(&format!("k-{i}")).expect("read").expect("there");
        assert_eq!(ledger.entry(e.frame.seq).expect("read").expect("by seq").hash(), e.hash());
    }
    let (leaf, path) = ledger.inclusion_proof(3, 6_000).expect("proof in the first file");
    assert_eq!(merkle::root_from_inclusion(&leaf, 3, 6_000, &path), Some(ledger.head().root));
    drop(Arc::try_unwrap(ledger).ok().expect("one owner"));
    for i in 0..files as u32 - 1 {
        let len = std::fs::metadata(path_of(dir.path(), i)).expect("file").len();
        assert!(len <= 64 * 1024 + 9 * 1024 * 1024, "file {i}: {len} bytes");
    }

    // Verify and export read every file in order.
    let report = verify_dir(dir.path(), Some(&key().verifying_key())).expect("verifies");
    assert_eq!((report.entries, report.root), (6_000, whole.1));
    let mut out = Vec::new();
    assert_eq!(export_dir(dir.path(), &mut out).expect("export"), 6_000);
    let exported = verify_export(&mut BufReader::new(out.as_slice()), &key().verifying_key()).expect("export verifies");
    assert_eq!(exported.entries, 6_000);

    // Reopened from the checkpoint, and read whole without it: the same
    // tree, the background check across the files passes, appends go on.
    let l = open_small(dir.path());
    assert_eq!(l.recovery().checkpointed, 6_000);
    assert_eq!(tree_view(&l), whole);
    assert_eq!(checked(&l, 30), xclear::ledger::checkpoint::PrefixCheck::Passed);
    drop(l);
    std::fs::remove_file(dir.path().join(CHECKPOINT_FILE)).expect("no checkpoint");
    let l = Arc::new(open_small(dir.path()));
    assert_eq!((l.recovery().checkpointed, tree_view(&l)), (0, whole.clone()));
    fill(Arc::clone(&l), 6_000, 2_000);
    let grown = tree_view(&l);
    drop(Arc::try_unwrap(l).ok().expect("one owner"));
    assert!(segment_files(dir.path()) > files);
    assert_eq!(verify_dir(dir.path(), None).expect("verifies").entries, 8_000);

    // A torn tail in the last file is cut as ever.
    let last = path_of(dir.path(), segment_files(dir.path()) as u32 - 1);
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&last).expect("last file");
        f.write_all(&[0, 0, 1, 0, 9, 9, 9, 9, 1, 2, 3]).expect("garbage");
    }
    let l = open_small(dir.path());
    assert!(l.recovery().torn_tail.is_some());
    assert_eq!(tree_view(&l), grown);
    drop(l);

    // A new file begun by a rotation that died before its header: begun again.
    let next = path_of(dir.path(), segment_files(dir.path()) as u32);
    std::fs::write(&next, b"XCLED").expect("half a header");
    let l = open_small(dir.path());
    assert_eq!(tree_view(&l), grown);
    drop(l);

    // Damage in a file that is not the last is corruption, not a torn write;
    // a file missing in the middle is refused, not skipped.
    let broken = tempfile::tempdir().expect("tempdir");
    for p in xclear::ledger::segment::paths(dir.path()) {
        std::fs::copy(&p, broken.path().join(p.file_name().expect("name"))).expect("copy");
    }
    let first = path_of(broken.path(), 0);
    let mut bytes = std::fs::read(&first).expect("read");
    let at = bytes.len() - 200;
    bytes[at] ^= 0xff;
    std::fs::write(&first, &bytes).expect("write");
    let opened = Ledger::open_with(
        broken.path(),
        key(),
        clock(),
        xclear::ledger::Options { max_segment_bytes: 64 * 1024, ..Default::default() },
    );
    assert!(opened.is_err(), "damage in the first of several files is refused");
    assert!(verify_dir(broken.path(), None).is_err());
    let gap = tempfile::tempdir().expect("tempdir");
    for p in xclear::ledger::segment::paths(dir.path()).iter().filter(|p| !p.ends_with("ledger.seg.000001")) {
        std::fs::copy(p, gap.path().join(p.file_name().expect("name"))).expect("copy");
    }
    let refused = Ledger::open_with(
        gap.path(),
        key(),
        clock(),
        xclear::ledger::Options { max_segment_bytes: 64 * 1024, ..Default::default() },
    );
    assert!(refused.is_err(), "a missing segment file is refused");
    assert!(verify_dir(gap.path(), None).is_err());
}

#[test]
fn the_index_is_reopened_as_it_grows_and_keeps_every_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = xclear::ledger::Options { index_reopen_every: 500, ..Default::default() };
    let ledger = Arc::new(Ledger::open_with(dir.path(), key(), clock(), options).expect("open"));
    fill(Arc::clone(&ledger), 0, 5_000);
    let reopened = ledger.index_reopened();
    assert!(reopened >= 2, "5,000 index records, reopened every 500 (whole batches): {reopened} times");
    for i in (0..5_000u64).step_by(37) {
        let e = ledger.entry_by_key(&format!("k-{i}")).expect("read").expect("indexed");
        assert_eq!(e.body.payload, payload(i));
    }
    assert!(ledger.append_blocking(EntryKind::Note, "k-10", payload(10)).expect("again").existing);
    drop(Arc::try_unwrap(ledger).ok().expect("one owner"));
    let l = open(dir.path());
    assert!(!l.recovery().index_rebuilt);
    assert_eq!(l.entry_by_key("k-4999").expect("read").expect("indexed").body.payload, payload(4_999));
}

#[test]
fn an_index_in_another_layout_is_rebuilt_from_the_log() {
    use xclear::storage::{KvStore, WriteBatch};
    let dir = filled(300);
    {
        // The layout before keys shared bucket rows: a row per key, no format.
        let store = xclear::storage::SledStore::open(&dir.path().join(xclear::ledger::INDEX_DIR)).expect("index");
        let mut b = WriteBatch::default();
        b.delete(b"m/format".to_vec());
        b.put(b"k/k-1".to_vec(), [1u64.to_be_bytes(), 0u64.to_be_bytes()].concat());
        store.apply(b).expect("old rows");
        store.flush().expect("flush");
    }
    let l = open(dir.path());
    assert!(l.recovery().index_rebuilt, "an index of another layout is not trusted");
    for i in [0u64, 1, 150, 299] {
        assert_eq!(l.entry_by_key(&format!("k-{i}")).expect("read").expect("indexed").body.payload, payload(i));
    }
    assert!(l.entry_by_key("k-300").expect("read").is_none());
    drop(l);
    assert!(!open(dir.path()).recovery().index_rebuilt, "rebuilt once, then trusted");
}

/// An index left behind its log (a rebuild or a run cut short by a crash,
/// whose last applied batch names how far it got) goes on from there: only
/// the entries after it are indexed again, and every key is found once.
#[test]
fn an_index_cut_short_goes_on_from_where_it_stopped() {
    let dir = filled(100);
    let index = dir.path().join(xclear::ledger::INDEX_DIR);
    let aside = dir.path().join("index-at-100");
    common::copy_dir(&index, &aside);
    let l = Arc::new(open(dir.path()));
    fill(Arc::clone(&l), 100, 200);
    drop(Arc::try_unwrap(l).ok().expect("one owner"));
    std::fs::remove_dir_all(&index).expect("rm index");
    std::fs::rename(&aside, &index).expect("the index as it stood at 100");
    let l = open(dir.path());
    assert!(!l.recovery().index_rebuilt, "an index behind is caught up, not rebuilt");
    assert_eq!(l.recovery().reindexed, 200);
    for i in [0u64, 99, 100, 299] {
        assert_eq!(l.entry_by_key(&format!("k-{i}")).expect("read").expect("indexed").body.payload, payload(i));
        assert!(l.append_blocking(EntryKind::Note, &format!("k-{i}"), payload(i)).expect("again").existing);
    }
    assert_eq!(l.len(), 300, "nothing appended twice");
}

/// An entry is found by its key's digest (the first 64 bits of the key's
/// SHA-256) as soon as it is appended, once indexed, and after a reopen;
/// a digest no key has finds nothing.
#[test]
fn entries_are_found_by_their_keys_digest() {
    use sha2::Digest;
    let digest = |key: &str| {
        let d = sha2::Sha256::digest(key.as_bytes());
        u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
    };
    let dir = filled(300);
    let l = open(dir.path());
    l.append_blocking(EntryKind::Note, "fresh", payload(1_000)).expect("append");
    for (key, p) in [("k-0", 0u64), ("k-150", 150), ("k-299", 299), ("fresh", 1_000)] {
        let found = l.entries_by_digest(digest(key)).expect("read");
        assert_eq!(found.len(), 1, "{key}");
        assert_eq!((found[0].body.key.as_str(), &found[0].body.payload), (key, &payload(p)));
    }
    assert!(l.entries_by_digest(digest("k-300")).expect("read").is_empty());
    assert!(l.entries_by_digest(digest("k-0") ^ 1).expect("read").is_empty());
    drop(l);
    let l = open(dir.path());
    assert_eq!(l.entries_by_digest(digest("fresh")).expect("read").len(), 1, "indexed and reopened");
}

/// The background check of a checkpointed prefix yields to appends but still
/// ends while they go on without a break.
#[test]
fn the_prefix_check_ends_under_continuous_appends() {
    let dir = filled(3_000);
    let l = Arc::new(open(dir.path()));
    assert_eq!(l.recovery().checkpointed, 3_000);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let appender = {
        let (l, stop) = (Arc::clone(&l), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut i = 3_000u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                l.append_blocking(EntryKind::Note, &format!("k-{i}"), payload(i)).expect("append");
                i += 1;
            }
            i - 3_000
        })
    };
    let outcome = checked(&l, 60);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let appended = appender.join().expect("appender");
    assert_eq!(outcome, xclear::ledger::checkpoint::PrefixCheck::Passed);
    assert!(appended > 0, "appends went on during the check");
}
