//! The independent model: what the hospitals were told, and what every
//! ledger holds, read back entry by entry. After each step it checks the
//! invariants; a violation names what broke.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use sha2::{Digest, Sha256};

use super::world::{key, World};
use crate::api::envelope::{self, CLAIM_RESULT_DOMAIN};
use crate::ledger::EntryKind;
use crate::med_type::MedCategory;
use crate::money::Amount;
use crate::node::keys;
use crate::node::records::{HomeSettlementEntry, OutcomeEntry};
use crate::proto::{Claim, ClaimResult, HospitalResponse, SettlementFigures, Signed};
use crate::region::RegionCode;

/// What a hospital was answered for one msgid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Acked {
    pub setl_id: String,
    pub result: Signed,
    pub home: RegionCode,
    pub treatment: RegionCode,
    pub month: String,
    pub fund_pay: Amount,
    pub reversal: bool,
}

/// One settlement as the home ledger holds it.
struct HomeCommit {
    result: Signed,
    treatment: String,
    hospital: String,
    msgid: String,
}

#[derive(Default)]
struct Cursor {
    next_seq: u64,
    last_hash: [u8; 32],
    /// The model's own Merkle tree over every entry read.
    tree: crate::ledger::merkle::Frontier,
}

#[derive(Default)]
pub(super) struct Model {
    /// (hospital, msgid) → the answer the hospital holds.
    pub acked: BTreeMap<(String, String), Acked>,
    /// (hospital, msgid) → refusal code.
    pub refused: BTreeMap<(String, String), String>,
    cursors: BTreeMap<RegionCode, Cursor>,
    /// setl_id → the home node's committed result.
    home_commits: BTreeMap<String, HomeCommit>,
    /// (treatment region, hospital, msgid) seen in home commits.
    claims_committed: BTreeSet<(String, String, String)>,
    /// setl_id → the treatment node's recorded result.
    outcomes: BTreeMap<String, Signed>,
    /// (home, psn_no, year) → counters recomputed from the signed results:
    /// hifp_paid, ci_paid, maf_paid, op_paid.
    counters: BTreeMap<(RegionCode, String, i32), [Amount; 4]>,
    /// (home, psn_no) → account balance: the opening one less what the
    /// signed results paid from it (a reversal pays back).
    balances: BTreeMap<(RegionCode, String), Amount>,
    balances_touched: BTreeSet<(RegionCode, String)>,
    touched: BTreeSet<(RegionCode, String, i32)>,
}

fn amount(s: &str) -> Amount {
    rust_decimal::Decimal::from_str(s).map(Amount::round_half_up).unwrap_or(Amount::ZERO)
}

fn figures(r: &ClaimResult) -> SettlementFigures {
    r.figures.clone().unwrap_or_default()
}

impl Model {
    /// An employee's opening balance, as imported.
    pub(super) fn opening_balance(&mut self, home: RegionCode, psn_no: &str, balance: &str) {
        self.balances.insert((home, psn_no.to_string()), amount(balance));
        self.balances_touched.insert((home, psn_no.to_string()));
    }

    /// Records a hospital's answer; a second answer for the same msgid must
    /// be the first one again.
    pub(super) fn answer(&mut self, hospital: &str, msgid: &str, resp: &HospitalResponse) -> Result<(), String> {
        let k = (hospital.to_string(), msgid.to_string());
        let result = resp.home_result.clone().ok_or_else(|| format!("{hospital}/{msgid}: no signed home result"))?;
        let home = RegionCode::parse(&result.signer).map_err(|e| format!("{hospital}/{msgid}: signer {e}"))?;
        let r: ClaimResult = envelope::open(&result, &key(&home.to_string()).verifying_key(), CLAIM_RESULT_DOMAIN)
            .map_err(|e| format!("{hospital}/{msgid}: the home result does not verify: {e}"))?;
        if !resp.settled {
            if self.acked.contains_key(&k) {
                return Err(format!("{hospital}/{msgid} was settled, now refused"));
            }
            self.refused.insert(k, resp.refusal.clone());
            return Ok(());
        }
        let treatment = RegionCode::parse(&r.mdtrtarea_admvs).map_err(|e| e.to_string())?;
        let a = Acked {
            setl_id: r.setl_id.clone(),
            result,
            home,
            treatment,
            month: r.month.clone(),
            fund_pay: amount(&figures(&r).fund_pay_sumamt),
            reversal: r.setl_id.starts_with('R'),
        };
        match self.acked.get(&k) {
            Some(prev) if *prev != a => {
                Err(format!("{hospital}/{msgid}: answered {} then {}", prev.setl_id, a.setl_id))
            }
            Some(_) => Ok(()),
            None => {
                if self.refused.contains_key(&k) {
                    return Err(format!("{hospital}/{msgid} was refused, now settled"));
                }
                if self.acked.values().any(|o| o.setl_id == a.setl_id) {
                    return Err(format!("setl_id {} answered for two msgids", a.setl_id));
                }
                self.acked.insert(k, a);
                Ok(())
            }
        }
    }

    /// Reads every ledger entry added since the last check, verifying each
    /// link and the signed head against its own tree, and records
    /// settlements from both sides.
    pub(super) fn scan(&mut self, world: &World) -> Result<(), String> {
        for (region, node) in &world.nodes {
            let ledger = node.ledger();
            let cur = self.cursors.entry(*region).or_default();
            if ledger.len() < cur.next_seq {
                return Err(format!("{region}: ledger shrank from {} to {} entries", cur.next_seq, ledger.len()));
            }
            let mut entries = Vec::new();
            ledger
                .for_each(cur.next_seq, |e| {
                    entries.push(e);
                    Ok(())
                })
                .map_err(|e| format!("{region}: read: {e}"))?;
            for e in entries {
                if e.frame.seq != cur.next_seq || e.frame.prev_hash != cur.last_hash {
                    return Err(format!("{region}: entry {} breaks the chain", e.frame.seq));
                }
                cur.tree.push(crate::ledger::merkle::leaf_hash(&e.bytes));
                cur.next_seq += 1;
                cur.last_hash = e.hash();
                let k = e.body.key.as_str();
                match e.body.kind {
                    EntryKind::Settlement | EntryKind::Reversal if keys::is_claim(k) => {
                        let rec: HomeSettlementEntry = serde_json::from_slice(&e.body.payload)
                            .map_err(|err| format!("{region}: entry {}: {err}", e.frame.seq))?;
                        let claim_env = rec.claim.to_signed().ok_or("stored claim")?;
                        let claim: Claim = envelope::peek(&claim_env).map_err(|err| err.to_string())?;
                        let id = (claim_env.signer.clone(), claim.fixmedins_code.clone(), claim.msgid.clone());
                        if !self.claims_committed.insert(id.clone()) {
                            return Err(format!("{region}: claim {id:?} applied twice"));
                        }
                        let result = rec.result.to_signed().ok_or("stored result")?;
                        let r: ClaimResult =
                            envelope::open(&result, &key(&region.to_string()).verifying_key(), CLAIM_RESULT_DOMAIN)
                                .map_err(|err| format!("{region}: stored result: {err}"))?;
                        let f = figures(&r);
                        let c =
                            self.counters.entry((*region, rec.psn_no.clone(), rec.year)).or_insert([Amount::ZERO; 4]);
                        // Outpatient pooling has its own counter (REFERENCE_POLICIES.md §6.1).
                        let outpatient = crate::med_type::MedType::parse_or_default(&f.med_type)
                            .is_some_and(|t| matches!(t.category(), MedCategory::Outpatient | MedCategory::Pharmacy));
                        c[if outpatient { 3 } else { 0 }] = c[if outpatient { 3 } else { 0 }] + amount(&f.hifp_pay);
                        c[1] = c[1] + amount(&f.hifmi_pay) + amount(&f.hifob_pay);
                        c[2] = c[2] + amount(&f.maf_pay);
                        let paid = amount(&f.acct_pay);
                        if paid != Amount::ZERO {
                            let b = self.balances.entry((*region, rec.psn_no.clone())).or_insert(Amount::ZERO);
                            *b = *b - paid;
                            if amount(&f.balc) != *b {
                                return Err(format!(
                                    "{region}: {} says balance {} after paying {paid}, the results leave {b}",
                                    rec.setl_id, f.balc
                                ));
                            }
                            self.balances_touched.insert((*region, rec.psn_no.clone()));
                        }
                        self.touched.insert((*region, rec.psn_no.clone(), rec.year));
                        let commit = HomeCommit { result, treatment: id.0, hospital: id.1, msgid: id.2 };
                        if self.home_commits.insert(rec.setl_id.clone(), commit).is_some() {
                            return Err(format!("{region}: setl_id {} committed twice", rec.setl_id));
                        }
                    }
                    EntryKind::Settlement | EntryKind::Reversal if keys::is_outcome(k) => {
                        let o: OutcomeEntry = serde_json::from_slice(&e.body.payload)
                            .map_err(|err| format!("{region}: entry {}: {err}", e.frame.seq))?;
                        let result = o.result.to_signed().ok_or("stored outcome")?;
                        let r: ClaimResult = envelope::peek(&result).map_err(|err| err.to_string())?;
                        if r.settled && self.outcomes.insert(r.setl_id.clone(), result).is_some() {
                            return Err(format!("{region}: outcome for {} recorded twice", r.setl_id));
                        }
                    }
                    _ => {}
                }
            }
            // The node's signed head covers exactly what was read.
            let head = ledger.head();
            if head.size == cur.next_seq && (head.root != cur.tree.root() || !head.verify(&ledger.public_key())) {
                return Err(format!("{region}: the signed head of {} entries does not match them", head.size));
            }
        }
        Ok(())
    }

    /// The invariants, over everything scanned so far.
    pub(super) fn check(&mut self, world: &World) -> Result<(), String> {
        self.scan(world)?;
        // No acknowledged settlement lost, on either side, and both hold what the hospital holds.
        for ((h, m), a) in &self.acked {
            let home =
                self.home_commits.get(&a.setl_id).ok_or_else(|| format!("{h}/{m}: {} lost at home", a.setl_id))?;
            if home.result != a.result {
                return Err(format!("{h}/{m}: home ledger holds another result for {}", a.setl_id));
            }
            if self.outcomes.get(&a.setl_id) != Some(&a.result) {
                return Err(format!("{h}/{m}: treatment ledger lacks the result for {}", a.setl_id));
            }
        }
        // Both sides agree: every treatment outcome is the home node's commit.
        for (id, result) in &self.outcomes {
            match self.home_commits.get(id) {
                Some(c) if c.result == *result => {}
                _ => return Err(format!("treatment outcome {id} does not match the home ledger")),
            }
        }
        // A home commit without an outcome must still be an open intent at the treatment node.
        for (id, c) in &self.home_commits {
            if self.outcomes.contains_key(id) {
                continue;
            }
            let t = RegionCode::parse(&c.treatment).map_err(|e| e.to_string())?;
            let node = world.node(t)?;
            let intent = keys::intent(&c.hospital, &c.msgid);
            let open = node.ledger().entry_by_key(&intent).map_err(|e| e.to_string())?.is_some();
            if !open {
                return Err(format!("home commit {id} has no intent at {t}"));
            }
        }
        // Counters on each home node equal the sum of its committed results.
        for (region, psn, year) in std::mem::take(&mut self.touched) {
            let want = self.counters.get(&(region, psn.clone(), year)).copied().unwrap_or([Amount::ZERO; 4]);
            let have = world.node(region)?.counters_of(&psn, year).map_err(|e| e.to_string())?;
            let have = [have.hifp_paid, have.ci_paid, have.maf_paid, have.op_paid];
            if have != want {
                return Err(format!("{region}: counters of {psn}/{year} are {have:?}, the results sum to {want:?}"));
            }
        }
        // Each account holds its opening balance less what the results paid
        // from it, and is never overdrawn.
        for (region, psn) in std::mem::take(&mut self.balances_touched) {
            let want = self.balances.get(&(region, psn.clone())).copied().unwrap_or(Amount::ZERO);
            let have = world.node(region)?.person_state(&psn).map_err(|e| e.to_string())?.acct_balance;
            if amount(&have) != want || want.is_negative() {
                return Err(format!("{region}: account of {psn} holds {have}, the results leave {want}"));
            }
        }
        Ok(())
    }

    /// Once everything is settled: every home commit has its outcome.
    pub(super) fn check_quiet(&self) -> Result<(), String> {
        match self.home_commits.keys().find(|id| !self.outcomes.contains_key(*id)) {
            Some(id) => Err(format!("after quiescence {id} is committed at home but not at treatment")),
            None => Ok(()),
        }
    }

    /// Every settlement and reversal committed at a home node, as its
    /// clearing line (from the home node's signed result), by setl_id.
    pub(super) fn home_lines(&self) -> BTreeMap<String, crate::clearing::Line> {
        self.home_commits
            .iter()
            .filter_map(|(id, c)| {
                let r: ClaimResult = envelope::peek(&c.result).ok()?;
                let home = RegionCode::parse(&c.result.signer).ok()?;
                let treatment = RegionCode::parse(&c.treatment).ok()?;
                Some((id.clone(), crate::node::clearing_side::line_from(&r, home, treatment)?))
            })
            .collect()
    }

    /// How many settlements and reversals the home ledgers committed.
    pub(super) fn home_commit_count(&self) -> usize {
        self.home_commits.len()
    }

    /// Home commits whose month is later than their home clock's month
    /// (that month was sealed when they committed).
    pub(super) fn late_commits(&self) -> u64 {
        let late = |c: &HomeCommit| {
            envelope::peek::<ClaimResult>(&c.result).is_ok_and(|r| r.month > crate::time::month_of(r.committed_at_ms))
        };
        self.home_commits.values().filter(|c| late(c)).count() as u64
    }

    /// A digest of every answer the hospitals hold (equal runs, equal digests).
    pub(super) fn digest(&self) -> String {
        let mut h = Sha256::new();
        for ((hosp, msgid), a) in &self.acked {
            h.update(format!("{hosp}/{msgid}={}|", a.setl_id));
            h.update(&a.result.body);
        }
        for ((hosp, msgid), r) in &self.refused {
            h.update(format!("{hosp}/{msgid}!{r}|"));
        }
        hex::encode(&h.finalize()[..16])
    }
}
