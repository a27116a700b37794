//! The node's derived state: insured persons, registrations, year-to-date
//! counters, account balances and committed settlements (the home side);
//! each month's clearing totals and settlement ids, the intents awaiting
//! their home node, and where the rarer entries a node's open reads are. It
//! grows with the region's population and its year of settlements, so it
//! lives in a store (sled, whose cache is bounded), not in memory. It is a function of the ledger: entries are applied in
//! ledger order, each group in one atomic store batch with the position it
//! brings the store to, so a start replays only the entries after that
//! position, and a store that is missing or disagrees with the ledger is
//! rebuilt from it (the ledger stays the source of truth).

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::clearing_side::{self, Side};
use super::records::{
    AccountCreditEntry, HomeSettlementEntry, PersonRecord, QualificationEntry, QualificationRecord, RegistrationEntry,
};
use crate::clearing::statement::Activity;
use crate::clearing::{Amounts, Line, Month, PairSummary};
use crate::ledger::{Entry, EntryKind, Ledger, LedgerError};
use crate::money::Amount;
use crate::region::RegionCode;
use crate::rules::Insutype;
use crate::settlement::{ChronicQualification, Counters, Person, Registration, RegistrationKind};
use crate::storage::{KvStore, StoreError, WriteBatch};

/// Most chronic-disease qualifications one person may hold.
pub const MAX_QUALIFICATIONS: usize = crate::calc::MAX_QUALIFICATIONS;
/// Most registrations kept in one person's list (older cancelled ones beyond
/// it are dropped from the list; the ledger keeps them all).
pub const MAX_REGISTRATIONS_PER_PERSON: usize = 64;
/// Most registrations one person may have not cancelled (half the list, so
/// the list never drops one in force).
pub const MAX_ACTIVE_REGISTRATIONS: usize = MAX_REGISTRATIONS_PER_PERSON / 2;
/// Entries applied between two reopenings of the store ([`HomeState::reopen`]).
pub const REOPEN_EVERY: u64 = 1_000_000;
/// Opens a node's state store (again).
pub type Opener = Arc<dyn Fn() -> Result<Arc<dyn KvStore>, StoreError> + Send + Sync>;
/// Entries applied per store batch while catching up.
const CATCH_UP_ENTRIES: usize = 2_000;
/// Store writes gathered before a batch is applied while catching up: under
/// a person batch entry's, so each is a batch of its own and a bulk load's
/// batches commit while the next is built.
const CATCH_UP_OPS: usize = 2_000;
/// How often a long catch-up reports its progress.
const PROGRESS_EVERY: u64 = 250_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegState {
    pub reg_id: String,
    pub psn_no: String,
    pub registration: Registration,
    pub cancelled: bool,
}

/// Kinds only the home state reads (nothing else a node derives does).
pub fn is_home_only(kind: EntryKind) -> bool {
    matches!(
        kind,
        EntryKind::PersonImport
            | EntryKind::PersonBatch
            | EntryKind::Registration
            | EntryKind::RegistrationChange
            | EntryKind::RegistrationCancel
            | EntryKind::ChronicQualification
            | EntryKind::AccountCredit
    )
}

/// Kinds a node's open reads one by one (designations, sanctions,
/// statements, audit samples and reviews, seals): few, so the store keeps
/// where each is, and the open reads those entries rather than the ledger.
pub fn is_read_at_open(kind: EntryKind) -> bool {
    matches!(
        kind,
        EntryKind::Designation
            | EntryKind::PartnerSanction
            | EntryKind::SanctionDelivered
            | EntryKind::MonthSeal
            | EntryKind::FinalStatement
            | EntryKind::HospitalStatement
            | EntryKind::AuditSample
            | EntryKind::AuditReview
    )
}

/// The rows' layout: a store written in another is rebuilt.
const FORMAT: &[u8] = b"4";
/// Settlement ids per row of a month's pair (fewer rows: sled's memory is
/// per row; a longer block costs more bytes rewritten per line).
const LINE_BLOCK: u64 = 32;

/// A month's summaries per (side, counterpart).
pub type MonthSummaries = std::collections::BTreeMap<(Side, RegionCode), PairSummary>;

/// One side's running totals with one counterpart in a month.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairTotals {
    pub count: u64,
    pub amounts: Amounts,
    /// Settlement ids noted (in blocks of [`LINE_BLOCK`]).
    #[serde(default)]
    pub ids: u64,
}

/// Why the state could not be read or moved.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Ledger(#[from] LedgerError),
    #[error("node state: bad record under {key}: {why}")]
    Corrupt { key: String, why: String },
    #[error("node state stopped after a store failure; restart the node to rebuild it")]
    Failed,
}

/// Store keys, by what they hold.
mod keys {
    use super::{Month, RegionCode, Side};

    /// Entries applied (u64) and the hash of the last one applied.
    pub(super) const AT: &[u8] = b"m/at";
    /// The rows' layout ([`super::FORMAT`]).
    pub(super) const FORMAT: &[u8] = b"m/format";
    /// The first month after every month sealed.
    pub(super) const FLOOR: &[u8] = b"n/floor";

    fn with(prefix: &[u8], id: &str) -> Vec<u8> {
        [prefix, id.as_bytes()].concat()
    }
    /// A person's row: their record, account balance and counters.
    pub(super) fn person(psn_no: &str) -> Vec<u8> {
        with(b"p/", psn_no)
    }
    /// A settlement that was reversed (a settlement is found by its id in
    /// the ledger's key index: the id carries its key's digest).
    pub(super) fn reversed(setl_id: &str) -> Vec<u8> {
        with(b"v/", setl_id)
    }
    pub(super) fn registration(reg_id: &str) -> Vec<u8> {
        with(b"r/", reg_id)
    }
    pub(super) fn person_registrations(psn_no: &str) -> Vec<u8> {
        with(b"q/", psn_no)
    }
    /// Month and pair fixed width ("YYYY-MM", a side letter, six digits):
    /// a month's rows, and a pair's, are one prefix each.
    pub(super) fn month_pairs(prefix: &[u8], month: Month) -> Vec<u8> {
        [prefix, month.to_string().as_bytes()].concat()
    }
    fn pair(prefix: &[u8], month: Month, side: Side, counterpart: RegionCode) -> Vec<u8> {
        let s = match side {
            Side::AsTreatment => b"t",
            Side::AsHome => b"h",
        };
        [month_pairs(prefix, month).as_slice(), s, counterpart.to_string().as_bytes()].concat()
    }
    pub(super) fn pair_totals(month: Month, side: Side, counterpart: RegionCode) -> Vec<u8> {
        pair(b"t/", month, side, counterpart)
    }
    pub(super) fn pair_ids(month: Month, side: Side, counterpart: RegionCode) -> Vec<u8> {
        pair(b"l/", month, side, counterpart)
    }
    /// A pair's settlement ids, [`super::LINE_BLOCK`] to a row, by the
    /// block's number.
    pub(super) fn line_block(month: Month, side: Side, counterpart: RegionCode, block: u64) -> Vec<u8> {
        [pair_ids(month, side, counterpart).as_slice(), &block.to_be_bytes()].concat()
    }
    /// (side, counterpart) of a pair row's key after its month's prefix.
    pub(super) fn parse_pair(rest: &[u8]) -> Option<(Side, RegionCode)> {
        let side = match rest.first()? {
            b't' => Side::AsTreatment,
            b'h' => Side::AsHome,
            _ => return None,
        };
        let code = std::str::from_utf8(rest.get(1..7)?).ok()?;
        Some((side, RegionCode::parse(code).ok()?))
    }
    pub(super) const FIRST_LINE: &[u8] = b"f/";
    pub(super) fn first_line(month: Month) -> Vec<u8> {
        month_pairs(FIRST_LINE, month)
    }
    pub(super) fn activity(month: Month) -> Vec<u8> {
        month_pairs(b"a/", month)
    }
    pub(super) const INTENT: &[u8] = b"i/";
    pub(super) fn intent(key: &str) -> Vec<u8> {
        with(INTENT, key)
    }
    pub(super) const READ_AT_OPEN: &[u8] = b"k/";
    pub(super) fn read_at_open(seq: u64) -> Vec<u8> {
        [READ_AT_OPEN, &seq.to_be_bytes()].concat()
    }
}

/// A person batch entry, its records as they are written in it.
#[derive(Deserialize)]
struct RawBatch<'a> {
    #[serde(borrow)]
    records: Vec<&'a serde_json::value::RawValue>,
}

/// A person as stored: the record last applied (with the qualifications
/// held, merged) and that record's digest, the account's balance and the
/// year-to-date counters, in one row (sled's memory is per row). A row
/// without a record holds what a ledger credited to a person not imported.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct PersonRow {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    digest: String,
    /// Kept as written: a settlement's update does not parse it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    record: Option<Box<serde_json::value::RawValue>>,
    #[serde(default, skip_serializing_if = "is_zero")]
    balance: Amount,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    counters: std::collections::BTreeMap<i32, Counters>,
}

impl PersonRow {
    fn record(&self, psn_no: &str) -> Result<Option<PersonRecord>, StateError> {
        let Some(raw) = &self.record else { return Ok(None) };
        let r = serde_json::from_str(raw.get())
            .map_err(|e| StateError::Corrupt { key: format!("p/{psn_no}"), why: e.to_string() })?;
        Ok(Some(r))
    }

    /// The person the record describes (none in a row without a record).
    fn person(&self, psn_no: &str) -> Result<Option<Person>, StateError> {
        let Some(record) = self.record(psn_no)? else { return Ok(None) };
        let (person, _) =
            person_from_record(&record).map_err(|why| StateError::Corrupt { key: format!("p/{psn_no}"), why })?;
        Ok(Some(person))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RegRow {
    psn_no: String,
    kind: String,
    target_admdvs: String,
    begndate: String,
    enddate: Option<String>,
    cancelled: bool,
}

fn is_zero(a: &Amount) -> bool {
    *a == Amount::ZERO
}

/// A record as a row holds it.
fn raw<T: Serialize>(psn_no: &str, v: &T) -> Result<Box<serde_json::value::RawValue>, StateError> {
    serde_json::value::to_raw_value(v)
        .map_err(|e| StateError::Corrupt { key: format!("p/{psn_no}"), why: e.to_string() })
}

fn decode<T: for<'de> Deserialize<'de>>(key: &[u8], bytes: &[u8]) -> Result<T, StateError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StateError::Corrupt { key: String::from_utf8_lossy(key).into_owned(), why: e.to_string() })
}

fn corrupt(prefix: &[u8], rest: &[u8], why: &str) -> StateError {
    StateError::Corrupt { key: String::from_utf8_lossy(&[prefix, rest].concat()).into_owned(), why: why.into() }
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// Reads of the store: straight, or through a batch being built (which
/// sees its own writes).
trait Rows {
    fn row(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;

    fn person_row(&self, psn_no: &str) -> Result<Option<PersonRow>, StateError> {
        let k = keys::person(psn_no);
        self.row(&k)?.map(|b| decode(&k, &b)).transpose()
    }

    fn balance(&self, psn_no: &str) -> Result<Amount, StateError> {
        Ok(self.person_row(psn_no)?.map_or(Amount::ZERO, |r| r.balance))
    }

    fn counters(&self, psn_no: &str, year: i32) -> Result<Counters, StateError> {
        Ok(self.person_row(psn_no)?.and_then(|mut r| r.counters.remove(&year)).unwrap_or_default())
    }

    fn reg_ids(&self, psn_no: &str) -> Result<Vec<String>, StateError> {
        let k = keys::person_registrations(psn_no);
        Ok(self.row(&k)?.map(|b| decode(&k, &b)).transpose()?.unwrap_or_default())
    }

    fn floor(&self) -> Result<Option<Month>, StateError> {
        let Some(v) = self.row(keys::FLOOR)? else { return Ok(None) };
        let m = std::str::from_utf8(&v).ok().and_then(Month::parse);
        m.map(Some).ok_or_else(|| StateError::Corrupt { key: "n/floor".into(), why: "not a month".into() })
    }

    fn activity(&self, month: Month) -> Result<Activity, StateError> {
        let k = keys::activity(month);
        Ok(self.row(&k)?.map(|b| decode(&k, &b)).transpose()?.unwrap_or_default())
    }

    fn registration(&self, reg_id: &str) -> Result<Option<RegState>, StateError> {
        let k = keys::registration(reg_id);
        let Some(row) = self.row(&k)?.map(|b| decode::<RegRow>(&k, &b)).transpose()? else { return Ok(None) };
        let registration =
            registration_of(&row.kind, &row.target_admdvs, &row.begndate, row.enddate.as_deref()).ok_or_else(|| {
                StateError::Corrupt { key: String::from_utf8_lossy(&k).into_owned(), why: "not a registration".into() }
            })?;
        Ok(Some(RegState { reg_id: reg_id.to_string(), psn_no: row.psn_no, registration, cancelled: row.cancelled }))
    }
}

struct Direct(Arc<dyn KvStore>);

impl Rows for Direct {
    fn row(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.0.get(key)?)
    }
}

/// A store batch being built from ledger entries: the rows written or
/// deleted (`None`), each once (the last write of a key is the one that counts).
struct Tx<'a> {
    kv: &'a dyn KvStore,
    /// The node's region: the side it sees a clearing line from.
    own: RegionCode,
    written: Written,
    /// The batch before this one while it is being committed: its rows are
    /// read from here, the store may hold only some of them yet.
    committing: Option<Arc<Written>>,
    /// Every entry applied is one whose rows come out the same applied again
    /// over any part of themselves: the batch may be written row by row.
    idempotent: bool,
}

/// A batch's rows: each key's last write, `None` a deletion.
type Written = HashMap<Vec<u8>, Option<Vec<u8>>>;

impl Rows for Tx<'_> {
    fn row(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let before = || self.committing.as_deref().and_then(|c| c.get(key));
        match self.written.get(key).or_else(before) {
            Some(v) => Ok(v.clone()),
            None => Ok(self.kv.get(key)?),
        }
    }
}

impl<'a> Tx<'a> {
    fn new(kv: &'a dyn KvStore, own: RegionCode) -> Tx<'a> {
        Tx { kv, own, written: HashMap::new(), committing: None, idempotent: true }
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.written.insert(key, Some(value));
    }

    fn delete(&mut self, key: Vec<u8>) {
        self.written.insert(key, None);
    }

    /// Applies one ledger entry: what the node's clearing and open read of
    /// it, and the home side's state.
    fn apply(&mut self, entry: &Entry) -> Result<(), StateError> {
        // A person's record replaces the one held and merges qualifications
        // by disease, last write winning: applied again over rows that hold
        // it (or a later record of the same batch), the rows end the same
        // (unless the merge cuts qualifications: `apply_person`).
        self.idempotent &= matches!(entry.body.kind, EntryKind::PersonImport | EntryKind::PersonBatch);
        self.apply_node(entry)?;
        let key = entry.body.key.as_str();
        let payload = entry.body.payload.as_slice();
        match entry.body.kind {
            EntryKind::PersonImport => {
                if let Ok(r) = serde_json::from_slice::<PersonRecord>(payload) {
                    if let Ok((_, balance)) = person_from_record(&r) {
                        self.apply_person(&r, balance, record_digest(payload))?;
                    }
                }
            }
            EntryKind::PersonBatch => {
                // Each record's digest is of its bytes as the batch holds them
                // (compact JSON, as `to_payload` writes a record alone).
                if let Ok(b) = serde_json::from_slice::<RawBatch>(payload) {
                    for raw in b.records {
                        let Ok(r) = serde_json::from_str::<PersonRecord>(raw.get()) else { continue };
                        if let Ok((_, balance)) = person_from_record(&r) {
                            self.apply_person(&r, balance, record_digest(raw.get().as_bytes()))?;
                        }
                    }
                }
            }
            EntryKind::ChronicQualification => {
                if let Ok(q) = serde_json::from_slice::<QualificationEntry>(payload) {
                    if qualification_from_record(&q.qualification).is_ok() {
                        self.apply_qualification(&q.psn_no, &q.qualification)?;
                    }
                }
            }
            EntryKind::AccountCredit => {
                if let Ok(c) = serde_json::from_slice::<AccountCreditEntry>(payload) {
                    let mut row = self.person_row(&c.psn_no)?.unwrap_or_default();
                    row.balance = row.balance + c.amount;
                    self.put(keys::person(&c.psn_no), encode(&row));
                }
            }
            EntryKind::Registration | EntryKind::RegistrationChange | EntryKind::RegistrationCancel => {
                if let Ok(r) = serde_json::from_slice::<RegistrationEntry>(payload) {
                    self.apply_registration(&r)?;
                }
            }
            EntryKind::Settlement | EntryKind::Reversal if super::keys::is_claim(key) => {
                if let Ok(s) = serde_json::from_slice::<HomeSettlementEntry>(payload) {
                    self.apply_settlement(&s)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// An entry's clearing line (totals, id, the month's first line), the
    /// month floor a seal moves, a refusal counted, an intent awaiting its
    /// home node or answered, and where an entry the open reads is.
    fn apply_node(&mut self, e: &Entry) -> Result<(), StateError> {
        let (kind, key, payload) = (e.body.kind, e.body.key.as_str(), e.body.payload.as_slice());
        if let Some((side, line)) = clearing_side::line_of(kind, key, payload, self.own) {
            self.note_line(e.frame.seq, side, &line)?;
        }
        match kind {
            EntryKind::SettlementIntent => self.put(keys::intent(key), e.frame.timestamp_ms.to_be_bytes().to_vec()),
            EntryKind::MonthSeal => {
                if let Some(m) = super::keys::sealed_month(key) {
                    let floor = self.floor()?.map_or(m.next(), |f| f.max(m.next()));
                    self.put(keys::FLOOR.to_vec(), floor.to_string().into_bytes());
                }
            }
            _ => {}
        }
        if let Some(intent) = super::keys::intent_of_outcome(key) {
            self.delete(keys::intent(&intent));
        }
        if clearing_side::is_refusal(kind, key, payload) {
            if let Some(m) = Month::parse(&crate::time::month_of(e.frame.timestamp_ms)) {
                let m = self.reported_in(m)?;
                let mut a = self.activity(m)?;
                a.refused += 1;
                self.put(keys::activity(m), encode(&a));
            }
        }
        if is_read_at_open(kind) {
            self.put(keys::read_at_open(e.frame.seq), Vec::new());
        }
        Ok(())
    }

    /// Adds a line recorded at ledger index `seq` (applied in ledger order:
    /// a month's first line is its least index).
    fn note_line(&mut self, seq: u64, side: Side, line: &Line) -> Result<(), StateError> {
        let counterpart = side.counterpart(line);
        let first = keys::first_line(line.month);
        if self.row(&first)?.is_none() {
            self.put(first, seq.to_be_bytes().to_vec());
        }
        let k = keys::pair_totals(line.month, side, counterpart);
        let mut t: PairTotals = self.row(&k)?.map(|b| decode(&k, &b)).transpose()?.unwrap_or_default();
        t.count += line.count;
        t.amounts = t.amounts.plus(&line.amounts);
        let block = keys::line_block(line.month, side, counterpart, t.ids / LINE_BLOCK);
        t.ids += 1;
        self.put(k, encode(&t));
        let mut ids: Vec<String> = self.row(&block)?.map(|b| decode(&block, &b)).transpose()?.unwrap_or_default();
        ids.push(line.setl_id.clone());
        self.put(block, encode(&ids));
        // The hospitals' settlements here (S…), not their reversals (R…).
        if side == Side::AsTreatment && line.setl_id.starts_with('S') {
            let m = self.reported_in(line.month)?;
            let mut a = self.activity(m)?;
            a.settled += 1;
            self.put(keys::activity(m), encode(&a));
        }
        Ok(())
    }

    /// The month a count made now for `month` is reported in: a sealed
    /// month's report is signed, so its late counts go to the first one open.
    fn reported_in(&self, month: Month) -> Result<Month, StateError> {
        Ok(self.floor()?.map_or(month, |f| f.max(month)))
    }

    /// A person record: replaces the person's attributes. Qualifications
    /// the record names replace those held for the same diseases; others
    /// stay (they end by a qualification request). A stated balance opens a
    /// new person's account; an existing account moves only with credits
    /// and settlements, which an agency's figure could not know of.
    fn apply_person(&mut self, r: &PersonRecord, balance: Option<Amount>, digest: [u8; 32]) -> Result<(), StateError> {
        let mut record = r.clone();
        record.acct_balance = None;
        let mut row = self.person_row(&r.psn_no)?.unwrap_or_default();
        match row.record(&r.psn_no)? {
            Some(held) => {
                let named: Vec<&str> = r.chronic.iter().map(|q| q.dise_codg.as_str()).collect();
                let mut chronic: Vec<QualificationRecord> =
                    held.chronic.into_iter().filter(|q| !named.contains(&q.dise_codg.as_str())).collect();
                chronic.extend(r.chronic.iter().cloned());
                // Which qualifications a cut keeps depends on what the row
                // held: applied again over a later record's row, it would
                // keep others. Such a group goes in one atomic batch.
                if chronic.len() > MAX_QUALIFICATIONS {
                    self.idempotent = false;
                }
                chronic.truncate(MAX_QUALIFICATIONS);
                record.chronic = chronic;
            }
            None => {
                if let Some(b) = balance {
                    row.balance = b;
                }
            }
        }
        row.digest = hex::encode(digest);
        row.record = Some(raw(&r.psn_no, &record)?);
        self.put(keys::person(&r.psn_no), encode(&row));
        Ok(())
    }

    /// A disease's qualification replaces the one held for that disease.
    fn apply_qualification(&mut self, psn_no: &str, q: &QualificationRecord) -> Result<(), StateError> {
        let Some(mut row) = self.person_row(psn_no)? else { return Ok(()) };
        if let Some(mut record) = row.record(psn_no)? {
            record.chronic.retain(|c| c.dise_codg != q.dise_codg);
            record.chronic.push(q.clone());
            row.record = Some(raw(psn_no, &record)?);
            self.put(keys::person(psn_no), encode(&row));
        }
        Ok(())
    }

    fn apply_registration(&mut self, r: &RegistrationEntry) -> Result<(), StateError> {
        if registration_from_entry(r).is_none() {
            return Ok(());
        }
        let mut ids = self.reg_ids(&r.psn_no)?;
        if !ids.contains(&r.reg_id) {
            ids.push(r.reg_id.clone());
            if ids.len() > MAX_REGISTRATIONS_PER_PERSON {
                // Bounded: drop the oldest cancelled one (the ledger keeps it).
                let mut oldest_cancelled = None;
                for (i, id) in ids.iter().enumerate() {
                    if self.registration(id)?.is_some_and(|s| s.cancelled) {
                        oldest_cancelled = Some(i);
                        break;
                    }
                }
                // A person's filings are refused past the limit; an older
                // ledger may hold more: its oldest then goes from the list.
                ids.remove(oldest_cancelled.unwrap_or(0));
            }
            self.put(keys::person_registrations(&r.psn_no), encode(&ids));
        }
        let row = RegRow {
            psn_no: r.psn_no.clone(),
            kind: r.kind.clone(),
            target_admdvs: r.target_admdvs.clone(),
            begndate: r.begndate.clone(),
            enddate: r.enddate.clone(),
            cancelled: r.cancelled,
        };
        self.put(keys::registration(&r.reg_id), encode(&row));
        Ok(())
    }

    fn apply_settlement(&mut self, s: &HomeSettlementEntry) -> Result<(), StateError> {
        let mut row = self.person_row(&s.psn_no)?.unwrap_or_default();
        let counters = row.counters.remove(&s.year).unwrap_or_default().plus(&s.delta);
        row.counters.insert(s.year, counters);
        if s.delta.acct_pay != Amount::ZERO {
            row.balance = row.balance - s.delta.acct_pay;
        }
        self.put(keys::person(&s.psn_no), encode(&row));
        if let Some(original) = &s.reversed_setl_id {
            self.put(keys::reversed(original), Vec::new());
        }
        Ok(())
    }

    /// Applies the batch with the position it brings the store to.
    fn commit(self, at: u64, last_hash: [u8; 32]) -> Result<(), StateError> {
        let rows = if self.idempotent {
            StoreRows::OneByOne(Arc::new(self.written))
        } else {
            StoreRows::Atomic(self.written.into_iter().collect())
        };
        StoreBatch::new(rows, at, last_hash).write(self.kv)
    }
}

/// A batch's rows as the store writes them.
enum StoreRows {
    /// Rows that may be written one by one ([`Tx::idempotent`]), shared
    /// with the batch built next, which reads them until they are written.
    OneByOne(Arc<Written>),
    /// Rows written in one atomic batch with their position.
    Atomic(WriteBatch),
}

impl StoreRows {
    /// The rows of a batch the next one reads while they are written.
    fn shared(written: &Arc<Written>, idempotent: bool) -> StoreRows {
        if idempotent {
            return StoreRows::OneByOne(Arc::clone(written));
        }
        StoreRows::Atomic(written.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}

/// A batch's rows and the position they bring the store to.
struct StoreBatch {
    rows: StoreRows,
    /// Entries applied once the batch is written.
    at: u64,
    position: WriteBatch,
}

impl StoreBatch {
    fn new(rows: StoreRows, at: u64, last_hash: [u8; 32]) -> StoreBatch {
        let mut position = WriteBatch::default();
        position.put(keys::FORMAT.to_vec(), FORMAT.to_vec());
        position.put(keys::AT.to_vec(), [at.to_be_bytes().as_slice(), &last_hash].concat());
        StoreBatch { rows, at, position }
    }

    /// The rows and the position in one atomic batch; rows that may be
    /// written one by one go first, the position after them (a crash in
    /// between keeps the old position, and the entries are applied again).
    fn write(self, kv: &dyn KvStore) -> Result<(), StateError> {
        match self.rows {
            StoreRows::OneByOne(rows) => {
                kv.put_each(&mut rows.iter().map(|(k, v)| (k.as_slice(), v.as_deref())))?;
                Ok(kv.apply(self.position)?)
            }
            StoreRows::Atomic(mut rows) => {
                rows.ops.extend(self.position.ops);
                Ok(kv.apply(rows)?)
            }
        }
    }
}

/// The thread committing a catch-up's batches in order, and the handoff to
/// it (a rendezvous: a batch is taken once the one before it is committed).
struct Committer<'scope> {
    batches: std::sync::mpsc::SyncSender<StoreBatch>,
    /// The failure that stopped it, if one did.
    thread: std::thread::ScopedJoinHandle<'scope, Option<StateError>>,
}

impl<'scope> Committer<'scope> {
    /// Starts the thread; it stores each position it has written in `committed`.
    fn start<'env>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        kv: &'env dyn KvStore,
        committed: &'env std::sync::atomic::AtomicU64,
        progress: impl Fn(u64) + Send + 'env,
    ) -> Result<Committer<'scope>, StateError> {
        let (batches, taken) = std::sync::mpsc::sync_channel::<StoreBatch>(0);
        let thread = std::thread::Builder::new()
            .name("state-commit".into())
            .spawn_scoped(scope, move || {
                for batch in taken {
                    let at = batch.at;
                    if let Err(e) = batch.write(kv) {
                        return Some(e);
                    }
                    committed.store(at, Ordering::SeqCst);
                    progress(at);
                }
                None
            })
            .map_err(|e| StateError::Store(StoreError(format!("starting the state's commit thread: {e}"))))?;
        Ok(Committer { batches, thread })
    }
}

/// Empties a store: its position first, in a batch of its own, so a crash
/// part-way through leaves a store that is rebuilt, never one that trusts a
/// position whose rows are gone.
pub fn clear(kv: &dyn KvStore) -> Result<(), StoreError> {
    let mut b = WriteBatch::default();
    b.delete(keys::AT.to_vec());
    kv.apply(b)?;
    kv.flush()?;
    kv.clear()
}

/// The home state in its store, and the ledger position it is at.
pub struct HomeState {
    /// The store; `None` only when a reopening failed.
    kv: std::sync::RwLock<Option<Arc<dyn KvStore>>>,
    /// Opens the store again ([`HomeState::reopen`]); `None`: never reopened.
    opener: Option<Opener>,
    /// The position the store was last opened at.
    opened_at: std::sync::atomic::AtomicU64,
    /// Entries applied between two reopenings.
    reopen_every: u64,
    /// The node's region.
    own: RegionCode,
    /// Entries applied; held while applying, so entries go in one at a time.
    at: Mutex<u64>,
    /// Set when a batch failed: the store may be behind the ledger, and
    /// answering from it could pay on stale counters.
    failed: AtomicBool,
}

/// What opening found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// Entries the store was at.
    pub was_at: u64,
    /// Entries replayed to catch up.
    pub replayed: u64,
    /// The store did not match the ledger and was rebuilt from it.
    pub rebuilt: bool,
}

impl HomeState {
    /// Opens the state in `kv` for `ledger`: at the position it records,
    /// or empty when that position is not one of this ledger's (a store of
    /// another ledger, or ahead of it), to be rebuilt. [`HomeState::catch_up`]
    /// then brings it to the ledger's end.
    pub fn open(kv: Arc<dyn KvStore>, ledger: &Ledger, own: RegionCode) -> Result<(HomeState, Opened), StateError> {
        let recorded = kv.get(keys::AT)?;
        let format_fits = kv.get(keys::FORMAT)?.is_none_or(|f| f == FORMAT);
        let (at, hash) = match recorded.as_deref() {
            None => (0, None),
            Some(v) if v.len() == 40 => {
                let at = crate::ledger::read_u64(Some(v)).unwrap_or(0);
                let mut h = [0u8; 32];
                h.copy_from_slice(&v[8..40]);
                (at, Some(h))
            }
            Some(_) => (u64::MAX, None),
        };
        let fits = format_fits
            && match (at, hash) {
                (0, None) => kv.first_key()?.is_none(),
                (u64::MAX, _) | (_, None) => false,
                (0, Some(_)) => true,
                (at, Some(h)) => ledger.entry(at - 1)?.is_some_and(|e| e.hash() == h),
            };
        if !fits {
            tracing::warn!(
                was_at = at,
                ledger_entries = ledger.len(),
                "the node state does not match the ledger; rebuilding it from the ledger"
            );
            clear(kv.as_ref())?;
        }
        let start = if fits { at } else { 0 };
        let state = HomeState {
            kv: std::sync::RwLock::new(Some(kv)),
            opener: None,
            opened_at: std::sync::atomic::AtomicU64::new(start),
            reopen_every: REOPEN_EVERY,
            own,
            at: Mutex::new(start),
            failed: AtomicBool::new(false),
        };
        Ok((state, Opened { was_at: at, replayed: 0, rebuilt: !fits }))
    }

    /// Lets [`HomeState::reopen`] open the store again with `opener`, due
    /// every `every` entries applied ([`REOPEN_EVERY`] by default).
    pub fn with_opener(mut self, opener: Opener, every: u64) -> HomeState {
        self.opener = Some(opener);
        self.reopen_every = every.max(1);
        self
    }

    /// The position the store was last opened (or reopened) at.
    pub fn opened_at(&self) -> u64 {
        self.opened_at.load(Ordering::SeqCst)
    }

    fn kv(&self) -> Result<Arc<dyn KvStore>, StateError> {
        let kv = self.kv.read().map_err(|_| StateError::Failed)?;
        kv.clone().ok_or(StateError::Failed)
    }

    /// Reopens the store once its due count of entries were applied since
    /// it was last opened; returns whether it did.
    pub fn reopen_if_due(&self) -> Result<bool, StateError> {
        let since = self.at().saturating_sub(self.opened_at());
        if self.opener.is_none() || since < self.reopen_every {
            return Ok(false);
        }
        self.reopen()?;
        Ok(true)
    }

    /// Closes the store and opens it again. sled writes the snapshot of its
    /// page table only as it opens, and an open replays its log since that
    /// snapshot: without this, a restart after a year's run reads a year of
    /// writes. Reads and catch-ups wait meanwhile (about a second a million
    /// entries applied since the last open). A store that cannot be opened
    /// again refuses reads until the node restarts.
    pub fn reopen(&self) -> Result<(), StateError> {
        let Some(opener) = &self.opener else { return Ok(()) };
        let at = self.at.lock().map_err(|_| StateError::Failed)?;
        let mut kv = self.kv.write().map_err(|_| StateError::Failed)?;
        if let Some(old) = kv.take() {
            old.flush()?;
        }
        let started = std::time::Instant::now();
        match opener() {
            Ok(store) => {
                *kv = Some(store);
                self.opened_at.store(*at, Ordering::SeqCst);
                tracing::info!(at = *at, seconds = started.elapsed().as_secs_f64(), "node state store reopened");
                Ok(())
            }
            Err(e) => {
                self.failed.store(true, Ordering::SeqCst);
                Err(e.into())
            }
        }
    }

    /// Entries applied.
    pub fn at(&self) -> u64 {
        self.at.lock().map(|a| *a).unwrap_or(0)
    }

    /// Lets go of a failure once a catch-up has gone through (a batch's
    /// position is written with it or after it, so a retry starts where the
    /// store is, or re-applies rows that come out the same).
    fn recovered(&self) {
        self.failed.store(false, Ordering::SeqCst);
    }

    /// Applies the ledger's entries after the store's position, in order,
    /// in batches each followed by its position; returns how many were applied.
    pub fn catch_up(&self, ledger: &Ledger) -> Result<u64, StateError> {
        self.catch_up_until(ledger, u64::MAX)
    }

    /// [`HomeState::catch_up`], up to entry `until` at most.
    pub fn catch_up_until(&self, ledger: &Ledger, until: u64) -> Result<u64, StateError> {
        let mut at = self.at.lock().map_err(|_| StateError::Failed)?;
        self.catch_up_locked(&mut at, ledger, until)
    }

    /// Catches up, then reads with the position held: what `read` sees is
    /// the state of one ledger position, none of it moved meanwhile.
    fn read_caught_up<T>(
        &self,
        ledger: &Ledger,
        read: impl FnOnce(&Direct) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        let mut at = self.at.lock().map_err(|_| StateError::Failed)?;
        self.catch_up_locked(&mut at, ledger, u64::MAX)?;
        read(&self.rows()?)
    }

    /// Applies entries `*at..until` in batches. A catch-up of more than one
    /// batch commits each on a second thread while the next is built (the
    /// store's writes are most of a bulk load's time): the batch being built
    /// reads the one being committed through `committing`, and the handoff
    /// waits for the commit before, so at most one batch is in flight.
    fn catch_up_locked(&self, at: &mut u64, ledger: &Ledger, until: u64) -> Result<u64, StateError> {
        let (from, end) = (*at, ledger.len().min(until));
        if from >= end {
            return Ok(0);
        }
        let long = end - from > PROGRESS_EVERY;
        if long {
            tracing::info!(from, to = end, "bringing the node state up to the ledger");
        }
        let started = std::time::Instant::now();
        let progress = move |done: u64| {
            if long && (done - from) % PROGRESS_EVERY < CATCH_UP_ENTRIES as u64 {
                tracing::info!(
                    applied = done - from,
                    of = end - from,
                    per_s = ((done - from) as f64 / started.elapsed().as_secs_f64().max(1e-9)) as u64,
                    "node state"
                );
            }
        };
        let own = self.own;
        let store = self.kv()?;
        let kv = store.as_ref();
        // What the committer has written, kept here so a panic on its
        // thread does not lose it (a retry must not apply those entries again).
        let committed = std::sync::atomic::AtomicU64::new(from);
        let (scanned, failure) = std::thread::scope(|scope| {
            let mut tx = Tx::new(kv, own);
            let mut in_tx = 0usize;
            let mut failure: Option<StateError> = None;
            let mut committer: Option<Committer<'_>> = None;
            let scanned = ledger.scan(from, |e| {
                let seq = e.seq();
                if seq >= end {
                    return Ok(ControlFlow::Break(()));
                }
                if let Err(err) = tx.apply(&e) {
                    failure = Some(err);
                    return Ok(ControlFlow::Break(()));
                }
                in_tx += 1;
                if !(in_tx >= CATCH_UP_ENTRIES || tx.written.len() >= CATCH_UP_OPS || seq + 1 == end) {
                    return Ok(ControlFlow::Continue(()));
                }
                in_tx = 0;
                let done = std::mem::replace(&mut tx, Tx::new(kv, own));
                if committer.is_none() && seq + 1 == end {
                    // One batch in all: committed here, no thread.
                    if let Err(err) = done.commit(seq + 1, e.hash()) {
                        failure = Some(err);
                        return Ok(ControlFlow::Break(()));
                    }
                    *at = seq + 1;
                    progress(*at);
                    return Ok(ControlFlow::Continue(()));
                }
                if committer.is_none() {
                    match Committer::start(scope, kv, &committed, progress) {
                        Ok(c) => committer = Some(c),
                        Err(err) => {
                            failure = Some(err);
                            return Ok(ControlFlow::Break(()));
                        }
                    }
                }
                let written = Arc::new(done.written);
                let batch = StoreBatch::new(StoreRows::shared(&written, done.idempotent), seq + 1, e.hash());
                tx.committing = Some(written);
                let sent = committer.as_ref().is_some_and(|c| c.batches.send(batch).is_ok());
                // Not taken: the committer stopped on a failure it returns.
                Ok(if sent { ControlFlow::Continue(()) } else { ControlFlow::Break(()) })
            });
            if let Some(c) = committer {
                drop(c.batches);
                let stopped = c.thread.join().unwrap_or(Some(StateError::Failed));
                *at = (*at).max(committed.load(Ordering::SeqCst));
                failure = failure.or(stopped);
            }
            (scanned, failure)
        });
        let err = match (scanned, failure) {
            (Err(e), _) => Some(StateError::from(e)),
            (Ok(()), Some(e)) => Some(e),
            (Ok(()), None) => None,
        };
        let err = err.or_else(|| {
            (*at != end).then(|| StateError::Corrupt {
                key: "m/at".into(),
                why: format!("the ledger ended at entry {} of {end} while the state caught up", *at),
            })
        });
        if let Some(e) = err {
            // Reads refuse until a catch-up goes through: answering from a
            // store behind the ledger could pay on stale counters.
            self.failed.store(true, Ordering::SeqCst);
            return Err(e);
        }
        self.recovered();
        Ok(*at - from)
    }

    fn rows(&self) -> Result<Direct, StateError> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(StateError::Failed);
        }
        Ok(Direct(self.kv()?))
    }

    pub fn person(&self, psn_no: &str) -> Result<Option<Person>, StateError> {
        let Some(row) = self.rows()?.person_row(psn_no)? else { return Ok(None) };
        row.person(psn_no)
    }

    /// A person with their counters of `year` and their balance, from one
    /// read of their row.
    pub fn person_account(&self, psn_no: &str, year: i32) -> Result<Option<(Person, Counters, Amount)>, StateError> {
        let Some(mut row) = self.rows()?.person_row(psn_no)? else { return Ok(None) };
        let Some(person) = row.person(psn_no)? else { return Ok(None) };
        Ok(Some((person, row.counters.remove(&year).unwrap_or_default(), row.balance)))
    }

    pub fn has_person(&self, psn_no: &str) -> Result<bool, StateError> {
        Ok(self.rows()?.person_row(psn_no)?.is_some_and(|r| r.record.is_some()))
    }

    /// The digest of the record last applied for a person.
    pub fn record_of(&self, psn_no: &str) -> Result<Option<[u8; 32]>, StateError> {
        let Some(row) = self.rows()?.person_row(psn_no)? else { return Ok(None) };
        if row.record.is_none() {
            return Ok(None);
        }
        let mut d = [0u8; 32];
        hex::decode_to_slice(&row.digest, &mut d)
            .map_err(|e| StateError::Corrupt { key: format!("p/{psn_no}"), why: e.to_string() })?;
        Ok(Some(d))
    }

    pub fn balance(&self, psn_no: &str) -> Result<Amount, StateError> {
        self.rows()?.balance(psn_no)
    }

    pub fn counters(&self, psn_no: &str, year: i32) -> Result<Counters, StateError> {
        self.rows()?.counters(psn_no, year)
    }

    /// Whether a settlement was reversed, with every entry of `ledger`
    /// applied first: a reversal appended but not yet applied (its apply
    /// failed) still counts.
    pub fn is_reversed(&self, ledger: &Ledger, setl_id: &str) -> Result<bool, StateError> {
        self.read_caught_up(ledger, |rows| Ok(rows.row(&keys::reversed(setl_id))?.is_some()))
    }

    pub fn registration(&self, reg_id: &str) -> Result<Option<RegState>, StateError> {
        self.rows()?.registration(reg_id)
    }

    /// A person's registrations, in the order they were filed.
    pub fn registrations(&self, psn_no: &str) -> Result<Vec<RegState>, StateError> {
        let rows = self.rows()?;
        let mut out = Vec::new();
        for id in rows.reg_ids(psn_no)? {
            if let Some(r) = rows.registration(&id)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// The registration that governs care in `treatment` on `date`: one in
    /// force covering the area; else, for an emergency, the unfiled emergency;
    /// else the latest filed one (so the refusal names what is wrong with it).
    pub fn registration_for(
        &self,
        psn_no: &str,
        treatment: RegionCode,
        date: NaiveDate,
        emergency: bool,
    ) -> Result<Option<Registration>, StateError> {
        let regs: Vec<RegState> = self.registrations(psn_no)?.into_iter().filter(|r| !r.cancelled).collect();
        if let Some(r) = regs.iter().find(|r| r.registration.covers_area(treatment) && r.registration.in_force_on(date))
        {
            return Ok(Some(r.registration.clone()));
        }
        if emergency {
            return Ok(Some(Registration::emergency_unfiled()));
        }
        Ok(regs.last().map(|r| r.registration.clone()))
    }

    /// Calls `f` with each row under `prefix`, in key order (the key after
    /// the prefix).
    fn each_under(
        &self,
        prefix: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        let store = self.rows()?.0;
        for kv in store.iter_from(prefix)? {
            let (k, v) = kv?;
            let Some(rest) = k.strip_prefix(prefix) else { break };
            f(rest, &v)?;
        }
        Ok(())
    }

    /// The months with a clearing line here, either side, as applied.
    pub fn months_with_lines(&self) -> Result<Vec<Month>, StateError> {
        let mut months = Vec::new();
        self.each_under(keys::FIRST_LINE, |rest, _| {
            let m = std::str::from_utf8(rest).ok().and_then(Month::parse);
            months.push(m.ok_or_else(|| corrupt(keys::FIRST_LINE, rest, "not a month"))?);
            Ok(())
        })?;
        Ok(months)
    }

    /// The ledger index of `month`'s first clearing line, as applied.
    pub fn first_line(&self, month: Month) -> Result<Option<u64>, StateError> {
        let k = keys::first_line(month);
        let v = self.rows()?.row(&k)?;
        v.map(|v| crate::ledger::read_u64(Some(&v)).ok_or_else(|| corrupt(&k, b"", "not an index"))).transpose()
    }

    /// `month`'s totals per (side, counterpart), as applied.
    pub fn month_totals(
        &self,
        month: Month,
    ) -> Result<std::collections::BTreeMap<(Side, RegionCode), PairTotals>, StateError> {
        let prefix = keys::month_pairs(b"t/", month);
        let mut out = std::collections::BTreeMap::new();
        self.each_under(&prefix, |rest, v| {
            let pair = keys::parse_pair(rest).ok_or_else(|| corrupt(&prefix, rest, "not a pair"))?;
            out.insert(pair, decode::<PairTotals>(&[prefix.as_slice(), rest].concat(), v)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// `month`'s summaries per (side, counterpart): totals and the root
    /// over the sorted settlement ids, and its activity as treatment region,
    /// all of one ledger position, caught up to the ledger's end.
    pub fn month_report(&self, ledger: &Ledger, month: Month) -> Result<(MonthSummaries, Activity), StateError> {
        self.read_caught_up(ledger, |rows| {
            let mut out = std::collections::BTreeMap::new();
            for ((side, counterpart), t) in self.month_totals(month)? {
                // The root is over the ids sorted, each once (a month's pair
                // holds them in blocks, in the order they were noted).
                let mut ids: Vec<String> = Vec::new();
                let prefix = keys::pair_ids(month, side, counterpart);
                self.each_under(&prefix, |rest, v| {
                    ids.extend(decode::<Vec<String>>(&[prefix.as_slice(), rest].concat(), v)?);
                    Ok(())
                })?;
                ids.sort_unstable();
                ids.dedup();
                let mut root = crate::ledger::merkle::Frontier::default();
                for id in &ids {
                    root.push(crate::ledger::merkle::leaf_hash(id.as_bytes()));
                }
                let summary = PairSummary { count: t.count, amounts: t.amounts, ids_root: root.root() };
                out.insert((side, counterpart), summary);
            }
            Ok((out, rows.activity(month)?))
        })
    }

    /// The intents awaiting their home node (key, when recorded), as applied.
    pub fn pending_intents(&self) -> Result<std::collections::BTreeMap<String, i64>, StateError> {
        let mut out = std::collections::BTreeMap::new();
        self.each_under(keys::INTENT, |rest, v| {
            let key = String::from_utf8(rest.to_vec()).map_err(|_| corrupt(keys::INTENT, rest, "not UTF-8"))?;
            let ms = v.try_into().map(i64::from_be_bytes).map_err(|_| corrupt(keys::INTENT, rest, "not a time"))?;
            out.insert(key, ms);
            Ok(())
        })?;
        Ok(out)
    }

    /// The ledger indexes of the entries a node's open reads
    /// ([`is_read_at_open`]), in ledger order, as applied.
    pub fn read_at_open(&self) -> Result<Vec<u64>, StateError> {
        let mut out = Vec::new();
        self.each_under(keys::READ_AT_OPEN, |rest, _| {
            out.push(
                crate::ledger::read_u64(Some(rest)).ok_or_else(|| corrupt(keys::READ_AT_OPEN, rest, "not an index"))?,
            );
            Ok(())
        })?;
        Ok(out)
    }

    /// Every row of the state (not its position), in key order, and a
    /// SHA-256 over them: two stores holding the same state agree.
    pub fn digest(&self) -> Result<(u64, [u8; 32]), StateError> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        let mut rows = 0u64;
        let store = self.kv()?;
        for kv in store.iter_from(b"")? {
            let (k, v) = kv?;
            if k.starts_with(b"m/") {
                continue;
            }
            h.update((k.len() as u64).to_be_bytes());
            h.update(&k);
            h.update((v.len() as u64).to_be_bytes());
            h.update(&v);
            rows += 1;
        }
        Ok((rows, h.finalize().into()))
    }

    /// Asks the store to write out what it holds (not a durability point:
    /// the ledger is).
    pub fn flush(&self) -> Result<(), StateError> {
        Ok(self.kv()?.flush()?)
    }
}

/// Converts a person record, validating it: the person, and the account
/// balance it sets (if it states one).
pub fn person_from_record(r: &PersonRecord) -> Result<(Person, Option<Amount>), String> {
    use crate::api::convert::MAX_CODE_LEN;
    if r.psn_no.is_empty() || r.psn_no.len() > MAX_CODE_LEN {
        return Err(format!("psn_no must be 1–{MAX_CODE_LEN} characters"));
    }
    let insuplc_admdvs = RegionCode::parse(&r.insuplc_admdvs).map_err(|e| format!("insuplc_admdvs: {e}"))?;
    let insutype =
        Insutype::parse(&r.insutype).ok_or_else(|| format!("insutype: {:?} is not 390 or 310", r.insutype))?;
    let mut contribution_years = std::collections::BTreeMap::new();
    for (code, years) in &r.contribution_years {
        let c = RegionCode::parse(code).map_err(|e| format!("contribution_years.{code}: {e}"))?;
        if *years > 100 {
            return Err(format!("contribution_years.{code}: {years} is more than 100"));
        }
        contribution_years.insert(c, *years);
    }
    let acct_balance = match &r.acct_balance {
        None => None,
        Some(_) if insutype != Insutype::Employee => {
            return Err("acct_balance: only employees (310) have personal accounts".to_string())
        }
        Some(b) => Some(Amount::parse_non_negative(b).map_err(|e| format!("acct_balance: {e}"))?),
    };
    if r.chronic.len() > MAX_QUALIFICATIONS {
        return Err(format!("chronic: {} qualifications, over the limit of {MAX_QUALIFICATIONS}", r.chronic.len()));
    }
    let mut chronic: Vec<ChronicQualification> = Vec::with_capacity(r.chronic.len());
    for (i, q) in r.chronic.iter().enumerate() {
        let q = qualification_from_record(q).map_err(|m| format!("chronic[{i}].{m}"))?;
        if chronic.iter().any(|c| c.dise_codg == q.dise_codg) {
            return Err(format!("chronic[{i}].dise_codg: {} is listed twice", q.dise_codg));
        }
        chronic.push(q);
    }
    let person = Person {
        psn_no: r.psn_no.clone(),
        insuplc_admdvs,
        insutype,
        retired: r.retired,
        special_group: r.special_group,
        contribution_years,
        chronic,
    };
    Ok((person, acct_balance))
}

/// The digest a person record's payload is known by.
pub fn record_digest(payload: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(payload).into()
}

/// Converts a qualification record; an error starts with the field's name.
pub fn qualification_from_record(q: &QualificationRecord) -> Result<ChronicQualification, String> {
    if !crate::rules::toml_format::is_dise_codg(&q.dise_codg) {
        return Err(format!("dise_codg: {:?} is not a disease code (1–20 letters and digits)", q.dise_codg));
    }
    let date = |field: &str, s: &str| {
        crate::api::convert::date(field, s).map_err(|_| format!("{field}: {s:?} is not a date (YYYY-MM-DD)"))
    };
    let begndate = date("begndate", &q.begndate)?;
    let enddate = q.enddate.as_deref().map(|e| date("enddate", e)).transpose()?;
    if enddate.is_some_and(|e| e < begndate) {
        return Err(format!("enddate: before begndate {begndate}"));
    }
    Ok(ChronicQualification { dise_codg: q.dise_codg.clone(), begndate, enddate })
}

pub fn registration_from_entry(e: &RegistrationEntry) -> Option<Registration> {
    registration_of(&e.kind, &e.target_admdvs, &e.begndate, e.enddate.as_deref())
}

fn registration_of(kind: &str, target: &str, begndate: &str, enddate: Option<&str>) -> Option<Registration> {
    let date = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
    Some(Registration {
        kind: RegistrationKind::parse(kind)?,
        target_admdvs: Some(RegionCode::parse(target).ok()?),
        begndate: Some(date(begndate)?),
        enddate: match enddate {
            Some(d) => Some(date(d)?),
            None => None,
        },
    })
}
