//! The ledger: chain and tree over thousands of entries, idempotency, proofs,
//! group commit, tamper detection of exports and segments, torn tails.

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
        assert!(ledger.verify_entry_signature(&e));
        assert_eq!(ledger.entry_by_key(&e.body.key).expect("read").expect("by key").frame.seq, seq);
        let (leaf, path) = ledger.inclusion_proof(seq, head.size).expect("proof");
        assert_eq!(leaf, merkle::leaf_hash(&e.bytes));
        assert!(merkle::verify_inclusion(&leaf, seq, head.size, &path, &head.root));
    }
    let old_root = ledger.root_at(1234).expect("root");
    let proof = ledger.consistency_proof(1234, 5000).expect("consistency");
    assert!(merkle::verify_consistency(1234, 5000, &old_root, &head.root, &proof));
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

fn exported(entries: u64) -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = open(dir.path());
    for i in 0..entries {
        ledger.append_blocking(EntryKind::Note, &format!("e-{i}"), payload(i)).expect("append");
    }
    ledger.close().expect("close");
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

fn join(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out
}

#[test]
fn a_flipped_byte_anywhere_in_an_exported_entry_is_named() {
    let (_dir, export) = exported(24);
    assert_eq!(check_export(&export), Ok(24));
    let original = lines(&export);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for seq in 0..24usize {
        let line = &original[seq + 1];
        // Every byte of a few lines, a sample of the others.
        let positions: Vec<usize> = if seq % 8 == 0 {
            (0..line.len()).collect()
        } else {
            (0..40).map(|_| (next() as usize) % line.len()).collect()
        };
        for pos in positions {
            let mut tampered = original.clone();
            let old = tampered[seq + 1][pos];
            let mut new = (next() % 256) as u8;
            if new == old {
                new = old ^ 0x01;
            }
            tampered[seq + 1][pos] = new;
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
fn reordered_dropped_and_duplicated_entries_are_detected() {
    let (_dir, export) = exported(10);
    let original = lines(&export);
    let named = |l: &[Vec<u8>]| match check_export(&join(l)) {
        Err(VerifyFailure::Entry { seq, .. }) => seq,
        other => panic!("expected an entry failure, got {other:?}"),
    };
    let mut swapped = original.clone();
    swapped.swap(4, 5); // entries 3 and 4
    assert_eq!(named(&swapped), 3);
    let mut dropped = original.clone();
    dropped.remove(6); // entry 5
    assert_eq!(named(&dropped), 5);
    let mut duplicated = original.clone();
    duplicated.insert(3, original[3].clone()); // entry 2 twice
    assert_eq!(named(&duplicated), 3);
    // Dropping the last entry is caught by the signed head.
    let mut last = original.clone();
    last.remove(10);
    assert!(matches!(check_export(&join(&last)), Err(VerifyFailure::Head(_))));
    // So is a tampered or missing head.
    let mut no_head = original.clone();
    no_head.pop();
    assert!(matches!(check_export(&join(&no_head)), Err(VerifyFailure::Head(_))));
    let mut bad_head = original.clone();
    let h = bad_head.len() - 1;
    let pos = bad_head[h].len() - 5;
    bad_head[h][pos] = if bad_head[h][pos] == b'0' { b'1' } else { b'0' };
    assert!(check_export(&join(&bad_head)).is_err());
    // A different key refuses the whole export.
    let other = SigningKey::from_bytes(&[9u8; 32]).verifying_key();
    assert!(verify_export(&mut BufReader::new(export.as_slice()), &other).is_err());
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
