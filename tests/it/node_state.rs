//! The node's state store (issue 25): a function of its ledger. Deleted, it
//! is rebuilt the same; left behind, it catches up from the position it
//! records to the same state; from another ledger, it is rebuilt.

use std::path::Path;
use std::sync::Arc;

use xclear::clearing::Month;
use xclear::clock::{Clock, ManualClock};
use xclear::demo::{federation_name, run, DemoOptions};
use xclear::ledger::Ledger;
use xclear::node::state::HomeState;
use xclear::node::STATE_DIR;
use xclear::region::RegionCode;
use xclear::storage::{KvStore, SledStore};

use crate::common;

struct Opened {
    ledger: Ledger,
    home: HomeState,
    was_at: u64,
    rebuilt: bool,
}

fn open(dir: &Path, seed: u64, region: RegionCode) -> Opened {
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(0));
    let key = xclear::federation::key(&federation_name(seed), &region.to_string());
    let ledger = Ledger::open(dir, key, clock).expect("ledger");
    let kv: Arc<dyn KvStore> = Arc::new(SledStore::open(&dir.join(STATE_DIR)).expect("store"));
    let (home, opened) = HomeState::open(kv, &ledger, region).expect("state");
    Opened { ledger, home, was_at: opened.was_at, rebuilt: opened.rebuilt }
}

/// A demo month of `patients` with `seed`, its data kept in the directory.
fn demo(seed: u64, patients: usize) -> (tempfile::TempDir, xclear::demo::DemoReport) {
    let out = tempfile::tempdir().expect("tmp");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    let report = rt
        .block_on(run(DemoOptions {
            out: out.path().to_path_buf(),
            seed,
            patients,
            month: Month::parse("2026-03").expect("month"),
            rules_dir: common::rules_dir(),
            progress: false,
        }))
        .expect("demo");
    (out, report)
}

#[test]
fn the_state_store_is_rebuilt_caught_up_or_replaced_to_the_same_state() {
    let seed = 7;
    let (_out, report) = demo(seed, 120);
    let mut digests = std::collections::BTreeMap::new();
    for (region, dir) in &report.node_dirs {
        // As the demo left it: at the ledger's end, nothing to replay.
        let o = open(dir, seed, *region);
        let len = o.ledger.len();
        assert_eq!((o.was_at, o.rebuilt), (len, false), "{region}");
        assert_eq!(o.home.catch_up(&o.ledger).expect("nothing to do"), 0);
        let full = o.home.digest().expect("digest");
        drop(o);

        // Deleted: rebuilt from the ledger, the same rows.
        std::fs::remove_dir_all(dir.join(STATE_DIR)).expect("delete the store");
        let o = open(dir, seed, *region);
        assert_eq!(o.was_at, 0);
        assert_eq!(o.home.catch_up(&o.ledger).expect("rebuild"), len);
        assert_eq!(o.home.digest().expect("digest"), full, "{region}: rebuilt from the ledger");
        drop(o);

        // Behind: stopped half-way, it replays only the rest.
        std::fs::remove_dir_all(dir.join(STATE_DIR)).expect("delete the store");
        let o = open(dir, seed, *region);
        let half = len / 2;
        assert_eq!(o.home.catch_up_until(&o.ledger, half).expect("half"), half);
        drop(o);
        let o = open(dir, seed, *region);
        assert_eq!((o.was_at, o.rebuilt), (half, false));
        assert_eq!(o.home.catch_up(&o.ledger).expect("the rest"), len - half);
        assert_eq!(o.home.digest().expect("digest"), full, "{region}: caught up from half-way");
        digests.insert(*region, (len, full));
    }
    assert!(digests.values().filter(|(_, (rows, _))| *rows > 50).count() >= 5, "homes hold persons: {digests:?}");
    // Another node's store in this node's place: its position is not one of
    // this ledger's, so it is thrown away and rebuilt.
    let regions: Vec<RegionCode> = report.node_dirs.keys().copied().collect();
    let (a, b) = (regions[0], regions[1]);
    let (dir_a, dir_b) = (&report.node_dirs[&a], &report.node_dirs[&b]);
    std::fs::remove_dir_all(dir_a.join(STATE_DIR)).expect("delete");
    common::copy_dir(&dir_b.join(STATE_DIR), &dir_a.join(STATE_DIR));
    let o = open(dir_a, seed, a);
    assert!(o.rebuilt, "{a} holding {b}'s store");
    assert_eq!(o.home.catch_up(&o.ledger).expect("rebuild"), digests[&a].0);
    assert_eq!(o.home.digest().expect("digest"), digests[&a].1);
}

/// A ledger of region 611000's with no node around it.
fn bare_ledger(dir: &Path) -> Ledger {
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(1_773_100_800_000));
    Ledger::open(dir, ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]), clock).expect("ledger")
}

fn yuan(s: &str) -> xclear::money::Amount {
    xclear::money::Amount::parse_non_negative(s).expect("amount")
}

/// An agency's credit to a person's account, as its ledger entry holds it.
fn credit_payload(psn_no: &str, amount: &str) -> Vec<u8> {
    let request = xclear::api::record::EnvelopeRecord {
        body: String::new(),
        signature: String::new(),
        signer: "agency".into(),
        batch: None,
    };
    let e = xclear::node::records::AccountCreditEntry {
        request,
        psn_no: psn_no.into(),
        amount: yuan(amount),
        reason: "t".into(),
    };
    serde_json::to_vec(&e).expect("json")
}

/// A store whose `clear` dies part-way (after what `state::clear` does first).
struct DiesClearing(SledStore);

impl KvStore for DiesClearing {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, xclear::storage::StoreError> {
        self.0.get(key)
    }
    fn apply(&self, batch: xclear::storage::WriteBatch) -> Result<(), xclear::storage::StoreError> {
        self.0.apply(batch)
    }
    fn put_each(
        &self,
        rows: &mut dyn Iterator<Item = xclear::storage::RowRef<'_>>,
    ) -> Result<(), xclear::storage::StoreError> {
        self.0.put_each(rows)
    }
    fn flush(&self) -> Result<(), xclear::storage::StoreError> {
        self.0.flush()
    }
    fn first_key(&self) -> Result<Option<Vec<u8>>, xclear::storage::StoreError> {
        self.0.first_key()
    }
    fn clear(&self) -> Result<(), xclear::storage::StoreError> {
        Err(xclear::storage::StoreError("killed while clearing".into()))
    }
    fn iter_from(
        &self,
        start: &[u8],
    ) -> Result<Box<dyn Iterator<Item = xclear::storage::KvResult> + '_>, xclear::storage::StoreError> {
        self.0.iter_from(start)
    }
}

#[test]
fn a_store_whose_clearing_died_part_way_is_rebuilt_not_trusted() {
    let seed = 9;
    let (_out, report) = demo(seed, 60);
    let (region, dir) = report.node_dirs.iter().find(|(r, _)| r.to_string() == "611000").expect("611000");
    let full = {
        let o = open(dir, seed, *region);
        o.home.digest().expect("digest")
    };
    {
        let kv = DiesClearing(SledStore::open(&dir.join(STATE_DIR)).expect("store"));
        assert!(xclear::node::state::clear(&kv).is_err(), "died");
    }
    // Its rows are all there but its position is gone: rebuilt, the same.
    let o = open(dir, seed, *region);
    assert!(o.rebuilt);
    o.home.catch_up(&o.ledger).expect("rebuild");
    assert_eq!(o.home.digest().expect("digest"), full);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_restated_in_later_chunks_ends_on_the_last_record() {
    use xclear::node::records::PersonRecord;
    let dir = tempfile::tempdir().expect("tmp");
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(1_773_100_800_000));
    let net = xclear::federation::LocalNetwork::new();
    let nodes = common::in_process_nodes(dir.path(), &["611000"], clock, &net);
    let node = &nodes["611000"];
    let person = |psn: &str, retired: bool| PersonRecord {
        psn_no: psn.into(),
        insuplc_admdvs: "611000".into(),
        insutype: "390".into(),
        retired,
        special_group: None,
        contribution_years: Default::default(),
        acct_balance: None,
        chronic: Vec::new(),
    };
    // A, then B, then A again, each in its own chunk among others: the
    // chunk before is being applied while the next is appended.
    let filler = |c: u32| (0..3_000).map(move |i| person(&format!("F{c}-{i}"), false));
    let chunks: Vec<Vec<PersonRecord>> = [true, false, true]
        .into_iter()
        .enumerate()
        .map(|(c, retired)| std::iter::once(person("P1", retired)).chain(filler(c as u32)).collect())
        .collect();
    for round in 0..2 {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let feed = chunks.clone();
        tokio::spawn(async move {
            for c in feed {
                let _ = tx.send(c).await;
            }
        });
        let (read, _) = node.load_persons(&mut rx, |_| {}).await.map_err(|(e, _)| e).expect("load");
        assert_eq!(read, 9_003);
        assert!(node.read_person("P1").expect("P1").retired, "round {round}: the last record stands");
    }
}

#[test]
fn a_reopened_state_store_holds_the_same_state_and_reads_wait_for_it() {
    let seed = 11;
    let (_out, report) = demo(seed, 60);
    let (region, dir) = report.node_dirs.iter().next().expect("a node");
    let o = open(dir, seed, *region);
    let path = dir.join(STATE_DIR);
    let opener: xclear::node::state::Opener =
        Arc::new(move || Ok(Arc::new(SledStore::open(&path)?) as Arc<dyn KvStore>));
    let home = o.home.with_opener(opener, u64::MAX);
    let before = home.digest().expect("digest");
    let months = home.months_with_lines().expect("months");
    assert!(!months.is_empty());
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            for _ in 0..300 {
                assert_eq!(home.months_with_lines().expect("a read waits for the reopening"), months);
            }
        });
        for _ in 0..5 {
            home.reopen().expect("reopen");
        }
        reader.join().expect("reader");
    });
    assert_eq!(home.digest().expect("digest"), before);
    assert_eq!((home.at(), home.opened_at()), (o.ledger.len(), o.ledger.len()));
    assert!(!home.reopen_if_due().expect("not due"));
    drop(home);

    // Rebuilt from nothing, due every 10 entries applied since the last open.
    drop(o.ledger);
    std::fs::remove_dir_all(dir.join(STATE_DIR)).expect("state gone");
    let o = open(dir, seed, *region);
    let path = dir.join(STATE_DIR);
    let opener: xclear::node::state::Opener =
        Arc::new(move || Ok(Arc::new(SledStore::open(&path)?) as Arc<dyn KvStore>));
    let home = o.home.with_opener(opener, 10);
    assert_eq!(home.opened_at(), 0);
    home.catch_up_until(&o.ledger, 9).expect("nine");
    assert!(!home.reopen_if_due().expect("not yet"));
    home.catch_up(&o.ledger).expect("the rest");
    assert!(home.reopen_if_due().expect("due"));
    assert_eq!(home.opened_at(), o.ledger.len());
    assert_eq!(home.digest().expect("digest"), before);
}

/// The month report the store keeps (totals per pair, the ids in blocks)
/// is what a scan of the ledger's lines gives, pairs of more ids than a
/// block holds among them.
#[test]
fn the_month_report_is_the_ledger_lines_summarized() {
    use xclear::clearing::RunningPair;
    use xclear::node::clearing_side::{line_of, Side};
    let seed = 13;
    let (_out, report) = demo(seed, 600);
    let mut most_ids = 0;
    for (region, dir) in &report.node_dirs {
        let o = open(dir, seed, *region);
        let months = o.home.months_with_lines().expect("months");
        let mut scanned: std::collections::BTreeMap<(Month, Side, RegionCode), RunningPair> = Default::default();
        o.ledger
            .for_each(0, |e| {
                if let Some((side, line)) = line_of(e.body.kind, &e.body.key, &e.body.payload, *region) {
                    scanned.entry((line.month, side, side.counterpart(&line))).or_default().add(&line);
                }
                Ok(())
            })
            .expect("scan");
        for month in months {
            let (summaries, _) = o.home.month_report(&o.ledger, month).expect("report");
            let expected: std::collections::BTreeMap<(Side, RegionCode), xclear::clearing::PairSummary> = scanned
                .iter()
                .filter(|((m, _, _), _)| *m == month)
                .map(|((_, side, counterpart), running)| ((*side, *counterpart), running.summary()))
                .collect();
            assert_eq!(summaries, expected, "{region} {month}");
        }
        most_ids = most_ids.max(scanned.values().map(|r| r.ids.len()).max().unwrap_or(0));
    }
    assert!(most_ids > 64, "a pair spans blocks: at most {most_ids} ids");
}

/// What a ledger credits to a person not yet imported is held for them,
/// but they are not a person until imported; the import's stated balance
/// then opens the account, a later one does not move it, and a rebuilt
/// store holds the same.
#[test]
fn a_credit_before_the_import_is_held_and_the_person_absent_until_imported() {
    use xclear::ledger::EntryKind;
    use xclear::node::records::PersonRecord;
    let dir = tempfile::tempdir().expect("tmp");
    let region = RegionCode::parse("611000").expect("region");
    let ledger = bare_ledger(dir.path());
    let credit = |n: u32, amount: &str| {
        ledger.append_blocking(EntryKind::AccountCredit, &format!("credit:{n}"), credit_payload("X1", amount))
    };
    let import = |n: u32, balance: &str| {
        let r = PersonRecord {
            psn_no: "X1".into(),
            insuplc_admdvs: "611000".into(),
            insutype: "310".into(),
            retired: false,
            special_group: None,
            contribution_years: Default::default(),
            acct_balance: Some(balance.into()),
            chronic: Vec::new(),
        };
        ledger.append_blocking(EntryKind::PersonImport, &format!("person:{n}"), serde_json::to_vec(&r).expect("json"))
    };
    let kv: Arc<dyn KvStore> = Arc::new(SledStore::open(&dir.path().join(STATE_DIR)).expect("store"));
    let (home, _) = HomeState::open(kv, &ledger, region).expect("state");

    credit(1, "20.00").expect("credit");
    home.catch_up(&ledger).expect("apply");
    assert!(!home.has_person("X1").expect("read"));
    assert!(home.person("X1").expect("read").is_none());
    assert!(home.record_of("X1").expect("read").is_none());
    assert_eq!(home.balance("X1").expect("read"), yuan("20.00"), "the credit is held");

    import(1, "100.00").expect("import");
    home.catch_up(&ledger).expect("apply");
    assert!(home.has_person("X1").expect("read"));
    assert!(home.record_of("X1").expect("read").is_some());
    assert_eq!(home.balance("X1").expect("read"), yuan("100.00"), "the first import's figure opens the account");

    credit(2, "5.00").expect("credit");
    import(2, "1.00").expect("re-import");
    home.catch_up(&ledger).expect("apply");
    assert_eq!(home.balance("X1").expect("read"), yuan("105.00"), "a later import does not move the balance");
    let (rows, digest) = home.digest().expect("digest");
    drop(home);

    std::fs::remove_dir_all(dir.path().join(STATE_DIR)).expect("delete the store");
    let kv: Arc<dyn KvStore> = Arc::new(SledStore::open(&dir.path().join(STATE_DIR)).expect("store"));
    let (home, _) = HomeState::open(kv, &ledger, region).expect("state");
    home.catch_up(&ledger).expect("rebuild");
    assert_eq!(home.digest().expect("digest"), (rows, digest));
    assert_eq!(home.balance("X1").expect("read"), yuan("105.00"));
}

/// A store whose row-by-row writes stop half-way on the calls numbered in
/// `stop_on` (what a crash in the middle of them leaves), and whose atomic
/// batches panic, unwritten, on those numbered in `panic_on`.
struct StopsHalfWay {
    inner: SledStore,
    calls: std::sync::atomic::AtomicU32,
    stop_on: &'static [u32],
    applies: std::sync::atomic::AtomicU32,
    panic_on: &'static [u32],
}

impl StopsHalfWay {
    fn new(inner: SledStore, stop_on: &'static [u32], panic_on: &'static [u32]) -> StopsHalfWay {
        let zero = || std::sync::atomic::AtomicU32::new(0);
        StopsHalfWay { inner, calls: zero(), stop_on, applies: zero(), panic_on }
    }
}

impl KvStore for StopsHalfWay {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, xclear::storage::StoreError> {
        self.inner.get(key)
    }
    fn apply(&self, batch: xclear::storage::WriteBatch) -> Result<(), xclear::storage::StoreError> {
        let call = self.applies.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        assert!(!self.panic_on.contains(&call), "store batch {call} panics");
        self.inner.apply(batch)
    }
    fn put_each(
        &self,
        rows: &mut dyn Iterator<Item = xclear::storage::RowRef<'_>>,
    ) -> Result<(), xclear::storage::StoreError> {
        let call = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if !self.stop_on.contains(&call) {
            return self.inner.put_each(rows);
        }
        self.inner.put_each(&mut rows.step_by(2))?;
        Err(xclear::storage::StoreError("killed half-way".into()))
    }
    fn flush(&self) -> Result<(), xclear::storage::StoreError> {
        self.inner.flush()
    }
    fn first_key(&self) -> Result<Option<Vec<u8>>, xclear::storage::StoreError> {
        self.inner.first_key()
    }
    fn clear(&self) -> Result<(), xclear::storage::StoreError> {
        self.inner.clear()
    }
    fn iter_from(
        &self,
        start: &[u8],
    ) -> Result<Box<dyn Iterator<Item = xclear::storage::KvResult> + '_>, xclear::storage::StoreError> {
        self.inner.iter_from(start)
    }
}

/// A long catch-up commits each batch on a second thread while it builds
/// the next, and writes batches of person records row by row. Person
/// batches alternate with account credits that read the rows the batch
/// before wrote (while it may still be being committed): applied in one
/// catch-up, one entry at a time, or after row-by-row writes that stopped
/// half-way, the state is the same, and the balances are the sums.
#[test]
fn a_long_catch_up_reaches_the_state_applied_one_entry_at_a_time() {
    use xclear::ledger::EntryKind;
    use xclear::node::records::{PersonBatchEntry, PersonRecord, QualificationRecord};
    const PERSONS: usize = 2_500;
    const ROUNDS: usize = 6;
    const CREDITED: usize = 40;
    let dir = tempfile::tempdir().expect("tmp");
    let region = RegionCode::parse("611000").expect("region");
    let ledger = bare_ledger(dir.path());
    for round in 0..ROUNDS {
        // Everyone restated twice a round, with a disease of the round added:
        // the first batch after the credits, the second a batch of its own.
        for (n, shift) in [(0, 0), (1, 2)] {
            let records = (0..PERSONS)
                .map(|i| PersonRecord {
                    psn_no: format!("P{i}"),
                    insuplc_admdvs: "611000".into(),
                    insutype: "310".into(),
                    retired: round % 2 == 1,
                    special_group: None,
                    contribution_years: Default::default(),
                    acct_balance: Some("100.00".into()),
                    chronic: vec![QualificationRecord {
                        dise_codg: format!("D{}", (i + round + shift) % 4),
                        begndate: format!("2026-0{}-01", round + 1),
                        enddate: None,
                    }],
                })
                .collect();
            let batch = serde_json::to_vec(&PersonBatchEntry { records }).expect("json");
            ledger.append_blocking(EntryKind::PersonBatch, &format!("persons:{round}:{n}"), batch).expect("append");
        }
        for c in 0..CREDITED {
            let (key, payload) = (format!("credit:{round}:{c}"), credit_payload(&format!("P{}", c * 7), "2.50"));
            ledger.append_blocking(EntryKind::AccountCredit, &key, payload).expect("append");
        }
    }
    let len = ledger.len();
    let fresh = |name: &str, stop_on: &'static [u32], panic_on: &'static [u32]| -> HomeState {
        let inner = SledStore::open(&dir.path().join(name)).expect("store");
        let kv: Arc<dyn KvStore> = Arc::new(StopsHalfWay::new(inner, stop_on, panic_on));
        HomeState::open(kv, &ledger, region).expect("state").0
    };

    let one_by_one = fresh("one", &[], &[]);
    for until in 1..=len {
        assert_eq!(one_by_one.catch_up_until(&ledger, until).expect("one entry"), 1);
    }
    let expected = one_by_one.digest().expect("digest");
    let credited = yuan("115.00"); // 100.00 imported, 2.50 credited in each of the 6 rounds
    assert_eq!(one_by_one.balance("P0").expect("read"), credited);
    assert_eq!(one_by_one.balance("P1").expect("read"), yuan("100.00"));

    let at_once = fresh("once", &[], &[]);
    assert_eq!(at_once.catch_up(&ledger).expect("catch up"), len);
    assert_eq!(at_once.digest().expect("digest"), expected, "one catch-up");
    assert_eq!(at_once.balance("P0").expect("read"), credited);

    // Stopped half-way through writing rows twice (the first batch, then
    // the first batch of its own after credits): each catch-up fails and the
    // next starts again from the position the store holds.
    let stopped = fresh("stopped", &[1, 4], &[]);
    assert!(stopped.catch_up(&ledger).is_err());
    assert!(stopped.catch_up(&ledger).is_err());
    assert!(stopped.at() < len);
    stopped.catch_up(&ledger).expect("catch up");
    assert_eq!(stopped.digest().expect("digest"), expected, "after writes stopped half-way");
    assert_eq!(stopped.balance("P0").expect("read"), credited);

    // The commit thread panics on its fifth batch (the first four, credits
    // among them, written): the next catch-up goes on after them.
    let panicked = fresh("panicked", &[], &[5]);
    assert!(panicked.catch_up(&ledger).is_err());
    assert!(panicked.at() > 0 && panicked.at() < len, "{} of {len}", panicked.at());
    panicked.catch_up(&ledger).expect("catch up");
    assert_eq!(panicked.digest().expect("digest"), expected, "after the commit thread panicked");
    assert_eq!(panicked.balance("P0").expect("read"), credited);
}

/// A person named again with a new disease while holding the most
/// qualifications they may: the merge cuts the newest, and which ones it
/// keeps depends on what the row held, so applying the group again over its
/// own rows would keep others. Such a group is one atomic batch: a store
/// stopped part-way through row-by-row writes ends as one that was not.
#[test]
fn a_group_that_cuts_qualifications_is_never_left_half_written() {
    use xclear::ledger::EntryKind;
    use xclear::node::records::{PersonBatchEntry, PersonRecord, QualificationRecord};
    use xclear::node::state::MAX_QUALIFICATIONS;
    let dir = tempfile::tempdir().expect("tmp");
    let region = RegionCode::parse("611000").expect("region");
    let ledger = bare_ledger(dir.path());
    let q = |code: &str| QualificationRecord { dise_codg: code.into(), begndate: "2026-01-01".into(), enddate: None };
    let person = |chronic: Vec<QualificationRecord>| PersonRecord {
        psn_no: "X1".into(),
        insuplc_admdvs: "611000".into(),
        insutype: "390".into(),
        retired: false,
        special_group: None,
        contribution_years: Default::default(),
        acct_balance: None,
        chronic,
    };
    let others: Vec<String> = (1..=MAX_QUALIFICATIONS - 2).map(|i| format!("P{i}")).collect();
    let mut full = vec![q("B"), q("A")];
    full.extend(others.iter().map(|c| q(c)));
    let records = vec![person(full), person(vec![q("C"), q("B")])];
    let payload = serde_json::to_vec(&PersonBatchEntry { records }).expect("json");
    ledger.append_blocking(EntryKind::PersonBatch, "persons:cut", payload).expect("append");
    let fresh = |name: &str, stop_on: &'static [u32]| -> HomeState {
        let inner = SledStore::open(&dir.path().join(name)).expect("store");
        let kv: Arc<dyn KvStore> = Arc::new(StopsHalfWay::new(inner, stop_on, &[]));
        HomeState::open(kv, &ledger, region).expect("state").0
    };

    let whole = fresh("whole", &[]);
    whole.catch_up(&ledger).expect("apply");
    let held: Vec<String> =
        whole.person("X1").expect("read").expect("X1").chronic.into_iter().map(|c| c.dise_codg).collect();
    let mut expected = vec!["A".to_string()];
    expected.extend(others.iter().cloned());
    expected.push("C".into());
    assert_eq!(held, expected, "B named again is cut, as the newest");

    let stopped = fresh("stopped", &[1]);
    let _ = stopped.catch_up(&ledger);
    stopped.catch_up(&ledger).expect("apply");
    assert_eq!(stopped.digest().expect("digest"), whole.digest().expect("digest"));
}
