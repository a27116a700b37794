//! The home node's derived state: insured persons, registrations, year-to-date
//! counters and committed settlements. Rebuilt from the ledger on start and
//! moved only together with a durable ledger entry.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::records::{
    AccountCreditEntry, HomeSettlementEntry, PersonRecord, QualificationEntry, QualificationRecord, RegistrationEntry,
};
use crate::ledger::{Entry, EntryKind};
use crate::money::Amount;
use crate::region::RegionCode;
use crate::rules::Insutype;
use crate::settlement::{ChronicQualification, CounterDelta, Counters, Person, Registration, RegistrationKind};

/// Most chronic-disease qualifications one person may hold.
pub const MAX_QUALIFICATIONS: usize = crate::calc::MAX_QUALIFICATIONS;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegState {
    pub reg_id: String,
    pub psn_no: String,
    pub registration: Registration,
    pub cancelled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementState {
    pub psn_no: String,
    pub year: i32,
    pub delta: CounterDelta,
    pub treatment: String,
    pub fixmedins_code: String,
    pub reversed: bool,
}

/// Ordered maps, not hash maps: these grow with every settlement, and a hash
/// map's rehash of the whole table, under the node's write lock, stalled
/// every settlement of the moment (docs/PERFORMANCE.md, "B-trees").
#[derive(Debug, Default)]
pub struct HomeState {
    pub persons: BTreeMap<String, Person>,
    pub registrations: BTreeMap<String, RegState>,
    pub by_person: BTreeMap<String, Vec<String>>,
    pub counters: BTreeMap<(String, i32), Counters>,
    pub settlements: BTreeMap<String, SettlementState>,
    /// setl_id -> ledger key of the committed settlement.
    pub settlement_keys: BTreeMap<String, String>,
    /// Employees' personal-account balances.
    pub balances: BTreeMap<String, Amount>,
    /// psn_no -> digest of the person record last applied (an import of
    /// that same record again changes nothing).
    pub records: BTreeMap<String, [u8; 32]>,
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
    let date = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
    Some(Registration {
        kind: RegistrationKind::parse(&e.kind)?,
        target_admdvs: Some(RegionCode::parse(&e.target_admdvs).ok()?),
        begndate: Some(date(&e.begndate)?),
        enddate: match &e.enddate {
            Some(d) => Some(date(d)?),
            None => None,
        },
    })
}

impl HomeState {
    /// Applies one ledger entry (home-side entries only; others are ignored).
    pub fn apply(&mut self, entry: &Entry) {
        let key = entry.body.key.as_str();
        let payload = entry.body.payload.as_slice();
        match entry.body.kind {
            EntryKind::PersonImport => {
                if let Ok(r) = serde_json::from_slice::<PersonRecord>(payload) {
                    if let Ok((p, balance)) = person_from_record(&r) {
                        self.apply_person(p, balance, record_digest(payload));
                    }
                }
            }
            EntryKind::ChronicQualification => {
                if let Ok(q) = serde_json::from_slice::<QualificationEntry>(payload) {
                    if let Ok(qualification) = qualification_from_record(&q.qualification) {
                        self.apply_qualification(&q.psn_no, qualification);
                    }
                }
            }
            EntryKind::AccountCredit => {
                if let Ok(c) = serde_json::from_slice::<AccountCreditEntry>(payload) {
                    self.apply_credit(&c.psn_no, c.amount);
                }
            }
            EntryKind::Registration | EntryKind::RegistrationChange | EntryKind::RegistrationCancel => {
                if let Ok(r) = serde_json::from_slice::<RegistrationEntry>(payload) {
                    self.apply_registration(&r);
                }
            }
            EntryKind::Settlement | EntryKind::Reversal if super::keys::is_claim(key) => {
                if let Ok(s) = serde_json::from_slice::<HomeSettlementEntry>(payload) {
                    self.apply_settlement(&s);
                    self.settlement_keys.insert(s.setl_id.clone(), key.to_string());
                }
            }
            _ => {}
        }
    }

    /// A person record: replaces the person's attributes. Qualifications
    /// the record names replace those held for the same diseases; others
    /// stay (they end by a qualification request). A stated balance opens a
    /// new person's account; an existing account moves only with credits
    /// and settlements, which an agency's figure could not know of.
    pub fn apply_person(&mut self, mut p: Person, balance: Option<Amount>, digest: [u8; 32]) {
        self.records.insert(p.psn_no.clone(), digest);
        match self.persons.get(&p.psn_no) {
            Some(held) => {
                let named: Vec<String> = p.chronic.iter().map(|q| q.dise_codg.clone()).collect();
                let kept = held.chronic.iter().filter(|q| !named.contains(&q.dise_codg)).cloned();
                let mut chronic: Vec<ChronicQualification> = kept.collect();
                chronic.append(&mut p.chronic);
                chronic.truncate(MAX_QUALIFICATIONS);
                p.chronic = chronic;
            }
            None => {
                if let Some(b) = balance {
                    self.balances.insert(p.psn_no.clone(), b);
                }
            }
        }
        self.persons.insert(p.psn_no.clone(), p);
    }

    /// The digest of the record last applied for a person.
    pub fn record_of(&self, psn_no: &str) -> Option<[u8; 32]> {
        self.records.get(psn_no).copied()
    }

    /// A disease's qualification replaces the one held for that disease.
    pub fn apply_qualification(&mut self, psn_no: &str, q: ChronicQualification) {
        if let Some(p) = self.persons.get_mut(psn_no) {
            p.chronic.retain(|c| c.dise_codg != q.dise_codg);
            p.chronic.push(q);
        }
    }

    pub fn apply_credit(&mut self, psn_no: &str, amount: Amount) {
        let b = self.balances.entry(psn_no.to_string()).or_insert(Amount::ZERO);
        *b = *b + amount;
    }

    pub fn balance(&self, psn_no: &str) -> Amount {
        self.balances.get(psn_no).copied().unwrap_or(Amount::ZERO)
    }

    pub fn apply_registration(&mut self, r: &RegistrationEntry) {
        let Some(registration) = registration_from_entry(r) else { return };
        let ids = self.by_person.entry(r.psn_no.clone()).or_default();
        if !ids.contains(&r.reg_id) {
            ids.push(r.reg_id.clone());
        }
        self.registrations.insert(
            r.reg_id.clone(),
            RegState { reg_id: r.reg_id.clone(), psn_no: r.psn_no.clone(), registration, cancelled: r.cancelled },
        );
    }

    pub fn apply_settlement(&mut self, s: &HomeSettlementEntry) {
        let counters = self.counters.entry((s.psn_no.clone(), s.year)).or_default();
        *counters = counters.plus(&s.delta);
        if s.delta.acct_pay != Amount::ZERO {
            let b = self.balances.entry(s.psn_no.clone()).or_insert(Amount::ZERO);
            *b = *b - s.delta.acct_pay;
        }
        match &s.reversed_setl_id {
            Some(original) => {
                if let Some(o) = self.settlements.get_mut(original) {
                    o.reversed = true;
                }
            }
            None => {
                self.settlements.insert(
                    s.setl_id.clone(),
                    SettlementState {
                        psn_no: s.psn_no.clone(),
                        year: s.year,
                        delta: s.delta.clone(),
                        treatment: s.treatment.clone(),
                        fixmedins_code: s.fixmedins_code.clone(),
                        reversed: false,
                    },
                );
            }
        }
    }

    pub fn counters(&self, psn_no: &str, year: i32) -> Counters {
        self.counters.get(&(psn_no.to_string(), year)).cloned().unwrap_or_default()
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
    ) -> Option<Registration> {
        let regs: Vec<&RegState> = self
            .by_person
            .get(psn_no)
            .map(|ids| ids.iter().filter_map(|id| self.registrations.get(id)).filter(|r| !r.cancelled).collect())
            .unwrap_or_default();
        if let Some(r) = regs.iter().find(|r| r.registration.covers_area(treatment) && r.registration.in_force_on(date))
        {
            return Some(r.registration.clone());
        }
        if emergency {
            return Some(Registration::emergency_unfiled());
        }
        regs.last().map(|r| r.registration.clone())
    }
}
