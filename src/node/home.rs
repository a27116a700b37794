//! The home side: a treatment node's signed claim is checked (who signed it,
//! for which area, which person), computed with the home policy and the
//! person's counters, and — for a settlement or reversal — committed to the
//! ledger together with the counters, then answered with a signed result.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::Datelike;
use prost::Message;
use sha2::{Digest, Sha256};

use super::metrics::Stage;
use super::records::{to_payload, EnvelopeRecord, HomeSettlementEntry, PersonRecord};
use super::state::person_from_record;
use super::{ledger_error, state_error, Node};
use crate::api::convert::{claim_totals, date, dise_codg, figures_to_proto, med_type, msgid, region, settlement_date};
use crate::api::envelope::{self, CLAIM_DOMAIN, CLAIM_RESULT_DOMAIN};
use crate::api::NodeError;
use crate::clearing::Month;
use crate::ledger::{EntryKind, LedgerError};
use crate::proto::{hospital_request::Action, Claim, ClaimResult, Signed};
use crate::region::RegionCode;
use crate::settlement::{compute_benefit, BenefitInput, HospitalLevel, Refusal, Settlement};

use crate::time::month_of;

use super::keys::claim as claim_key;

impl Node {
    /// Handles a claim from a peer: returns the home node's signed result.
    pub async fn handle_claim(self: &Arc<Self>, env: Signed) -> Result<Signed, NodeError> {
        let signer = RegionCode::parse(&env.signer).map_err(|_| NodeError::UnknownPeer(env.signer.clone()))?;
        let peer = self.config.peers.get(&signer).ok_or_else(|| NodeError::UnknownPeer(signer.to_string()))?;
        let claim: Claim =
            envelope::open_with(&env, &peer.public_key, CLAIM_DOMAIN, Some(&self.verified)).map_err(|e| match e {
                envelope::EnvelopeError::Unsigned => NodeError::Unsigned,
                other => NodeError::BadSignature(format!("{signer}: {other}")),
            })?;
        let treatment = region("mdtrtarea_admvs", &claim.mdtrtarea_admvs)?;
        if !signer.covers(treatment) {
            return Err(NodeError::NotAuthorised(format!("region {signer} cannot claim for care in {treatment}")));
        }
        let home = region("insuplc_admdvs", &claim.insuplc_admdvs)?;
        if !self.region().covers(home) {
            return Err(NodeError::NotAuthorised(format!("{home} is not insured at this node ({})", self.region())));
        }
        msgid("msgid", &claim.msgid)?;
        // A floor past next month would park the settlement in a month far off.
        if let Some(floor) = Month::parse(&claim.month_floor) {
            let today = crate::time::month_at(self.clock.now_ms())
                .ok_or_else(|| NodeError::Internal("clock outside the calendar".into()))?;
            if floor > today.next() {
                return Err(NodeError::bad(
                    "month_floor",
                    format!("{floor} is past next month (this node's clock says {today})"),
                ));
            }
        }
        let key = claim_key(&signer.to_string(), &claim.fixmedins_code, &claim.msgid);
        let action = Action::try_from(claim.action).unwrap_or(Action::Unspecified);
        match action {
            Action::Settle | Action::Reverse => {
                // To completion: the person's lock, too, is held until the
                // counters and ids have moved with the commit.
                let node = Arc::clone(self);
                let started = Instant::now();
                // Asked before the commit's locks: a partner's answer can take seconds.
                let extra = if action == Action::Settle { self.partner_years(&claim).await } else { BTreeMap::new() };
                let committed = super::run_to_completion("claim commit", async move {
                    node.commit_claim(claim, env, key, signer, action, extra).await
                })
                .await;
                self.stages.record(Stage::HomeClaim, started);
                committed
            }
            Action::Presettle | Action::Eligibility => {
                self.check_partner_designated(signer, &claim.fixmedins_code)?;
                let extra = self.partner_years(&claim).await;
                let (result, _) = self.compute_claim(&claim, &env, treatment, &extra)?;
                self.sign_result(&result).await
            }
            Action::Unspecified => Err(NodeError::bad("action", "unknown action")),
        }
    }

    /// Settles or reverses a claim under the person's lock, or answers it
    /// from the result already committed under its key.
    async fn commit_claim(
        &self,
        claim: Claim,
        env: Signed,
        key: String,
        signer: RegionCode,
        action: Action,
        partner_years: BTreeMap<RegionCode, u32>,
    ) -> Result<Signed, NodeError> {
        let _lock = self.person_lock(&claim.psn_no).lock().await;
        // Shared with other commits; a seal waits until this one is on the ledger.
        let _gate = self.seal_gate.read().await;
        if let Some(stored) = self.stored_result(&key, &env)? {
            return Ok(stored);
        }
        if action == Action::Settle {
            // A partner's sanction of the institution, recognised here: a
            // settlement not committed yet is refused for good (the treatment
            // node ends its intent); a reversal still gives the fund its money back.
            self.check_partner_designated(signer, &claim.fixmedins_code)?;
            self.settle_claim(&claim, &env, &key, signer, &partner_years).await
        } else {
            self.reverse_claim(&claim, &env, &key, signer).await
        }
    }

    /// The result already committed under this key, if the claim is the same.
    fn stored_result(&self, key: &str, env: &Signed) -> Result<Option<Signed>, NodeError> {
        let Some(entry) = self.ledger.entry_by_key(key).map_err(ledger_error)? else {
            return Ok(None);
        };
        let rec: HomeSettlementEntry = serde_json::from_slice(&entry.body.payload)
            .map_err(|e| NodeError::Internal(format!("stored claim: {e}")))?;
        if rec.claim.body != super::records::to_hex(&env.body) {
            return Err(NodeError::MsgidReused(key.to_string()));
        }
        rec.result.to_signed().map(Some).ok_or_else(|| NodeError::Internal("stored result".into()))
    }

    /// Signs a result, with the other results of the moment (one signature).
    async fn sign_result(&self, result: &ClaimResult) -> Result<Signed, NodeError> {
        let started = Instant::now();
        let signed = self.signer.sign(CLAIM_RESULT_DOMAIN, result.encode_to_vec()).await;
        self.stages.record(Stage::ResultSign, started);
        signed
    }

    /// The month a commit made now lands in: the clock's month in
    /// Asia/Shanghai, unless this node has sealed it already (its clock
    /// behind the operator's), then the first month after its seals; and
    /// never before the treatment node's floor.
    fn commit_month(&self, now_ms: i64, claim_floor: &str) -> String {
        let months = [Month::parse(&month_of(now_ms)), self.month_floor(), Month::parse(claim_floor)];
        months.into_iter().flatten().max().map(|m| m.to_string()).unwrap_or_default()
    }

    fn base_result(&self, claim: &Claim, env: &Signed, now_ms: i64) -> ClaimResult {
        ClaimResult {
            msgid: claim.msgid.clone(),
            fixmedins_code: claim.fixmedins_code.clone(),
            mdtrtarea_admvs: claim.mdtrtarea_admvs.clone(),
            insuplc_admdvs: claim.insuplc_admdvs.clone(),
            committed_at_ms: now_ms,
            month: self.commit_month(now_ms, &claim.month_floor),
            claim_hash: Sha256::digest(&env.body).to_vec(),
            ..ClaimResult::default()
        }
    }

    /// Computes the benefit of a claim against the person's current counters.
    /// A refusal is an answer (`settled = false`), not an error. The result is
    /// returned unsigned: the caller completes it and signs it once.
    fn compute_claim(
        &self,
        claim: &Claim,
        env: &Signed,
        treatment: RegionCode,
        partner_years: &BTreeMap<RegionCode, u32>,
    ) -> Result<(ClaimResult, Option<(Settlement, i32)>), NodeError> {
        let now = self.clock.now_ms();
        let mut result = self.base_result(claim, env, now);
        let setl_date = settlement_date("setl_date", &claim.setl_date, now)?;
        let hosp_lv =
            HospitalLevel::new(i64::from(claim.hosp_lv)).ok_or_else(|| NodeError::bad("hosp_lv", "outside 0–3"))?;
        let totals = claim_totals(claim)?;
        let med_type = med_type("med_type", &claim.med_type)?;
        let dise_codg = dise_codg("dise_codg", &claim.dise_codg, med_type)?;
        // The flag's filing waiver is for stays; a 13 visit has its own rule.
        let emergency = claim.emergency && med_type.category() == crate::med_type::MedCategory::Inpatient;
        let h = self.home();
        let account = h.person_account(&claim.psn_no, setl_date.year()).map_err(state_error)?;
        let registration = h.registration_for(&claim.psn_no, treatment, setl_date, emergency).map_err(state_error)?;
        let (mut person, counters, balance) = account.ok_or_else(|| NodeError::UnknownPerson(claim.psn_no.clone()))?;
        for (region, years) in partner_years {
            let y = person.contribution_years.entry(*region).or_insert(0);
            *y = (*y).max(*years);
        }
        let computed = match self.rules.policy_for(person.insuplc_admdvs, person.insutype, setl_date) {
            Err(_) => Err(Refusal::PolicyNotInForce),
            Ok(policy) => compute_benefit(&BenefitInput {
                policy,
                person: &person,
                registration: registration.as_ref(),
                treatment,
                hosp_lv,
                setl_date,
                totals: &totals,
                counters: &counters,
                pairs: self.rules.pairs(),
                med_type,
                dise_codg: dise_codg.as_deref(),
                acct_used: claim.acct_used_flag,
                acct_balance: balance,
            }),
        };
        match computed {
            Ok(benefit) => {
                let s = Settlement { totals, benefit };
                result.settled = claim.action == Action::Settle as i32;
                result.eligible = true;
                result.figures = Some(figures_to_proto(&s.figures()));
                Ok((result, Some((s, setl_date.year()))))
            }
            Err(r) => {
                result.refusal = r.code().to_string();
                result.message = r.to_string();
                Ok((result, None))
            }
        }
    }

    async fn settle_claim(
        &self,
        claim: &Claim,
        env: &Signed,
        key: &str,
        treatment: RegionCode,
        partner_years: &BTreeMap<RegionCode, u32>,
    ) -> Result<Signed, NodeError> {
        let (mut result, computed) = self.compute_claim(claim, env, treatment, partner_years)?;
        let Some((settlement, year)) = computed else {
            return self.sign_result(&result).await; // refused: nothing recorded
        };
        let setl_id = self.new_setl_id('S', key)?;
        result.setl_id = setl_id.clone();
        let result_env = self.sign_result(&result).await?;
        let rec = HomeSettlementEntry {
            claim: EnvelopeRecord::from(env),
            result: EnvelopeRecord::from(&result_env),
            setl_id,
            psn_no: claim.psn_no.clone(),
            year,
            delta: settlement.benefit.delta.clone(),
            treatment: treatment.to_string(),
            fixmedins_code: claim.fixmedins_code.clone(),
            reversed_setl_id: None,
        };
        self.commit_home(EntryKind::Settlement, key, &rec).await?;
        Ok(result_env)
    }

    async fn reverse_claim(
        &self,
        claim: &Claim,
        env: &Signed,
        key: &str,
        treatment: RegionCode,
    ) -> Result<Signed, NodeError> {
        let original = claim.reversed_setl_id.clone();
        let original_rec = self.settlement(&original)?.ok_or_else(|| NodeError::UnknownSettlement(original.clone()))?;
        if original_rec.treatment != treatment.to_string()
            || original_rec.fixmedins_code != claim.fixmedins_code
            || original_rec.psn_no != claim.psn_no
        {
            return Err(NodeError::NotAuthorised(format!(
                "settlement {original} was not made by this hospital for this person"
            )));
        }
        if self.home().is_reversed(&self.ledger, &original).map_err(state_error)? {
            return Err(NodeError::AlreadyReversed(original));
        }
        let original_result: ClaimResult = original_rec
            .result
            .to_signed()
            .and_then(|s| envelope::peek(&s).ok())
            .ok_or_else(|| NodeError::Internal("stored result".into()))?;
        let now = self.clock.now_ms();
        let mut result = self.base_result(claim, env, now);
        result.settled = true;
        result.eligible = true;
        result.setl_id = self.new_setl_id('R', key)?;
        let negated = original_rec.delta.negated();
        // The account gets back what it paid: the balance after the reversal.
        let balc = self.home().balance(&claim.psn_no).map_err(state_error)? - negated.acct_pay;
        result.figures = original_result.figures.map(|f| negate_figures(f, balc));
        let result_env = self.sign_result(&result).await?;
        let rec = HomeSettlementEntry {
            claim: EnvelopeRecord::from(env),
            result: EnvelopeRecord::from(&result_env),
            setl_id: result.setl_id.clone(),
            psn_no: claim.psn_no.clone(),
            year: original_rec.year,
            delta: negated,
            treatment: treatment.to_string(),
            fixmedins_code: claim.fixmedins_code.clone(),
            reversed_setl_id: Some(original),
        };
        self.commit_home(EntryKind::Reversal, key, &rec).await?;
        Ok(result_env)
    }

    /// The id of what is committed under a new claim `key`
    /// ([`super::keys::setl_id`]): the long form when an entry of another key
    /// shares the key's digest, so a reversal by id names one settlement and
    /// a month's ids count each once.
    fn new_setl_id(&self, prefix: char, key: &str) -> Result<String, NodeError> {
        let sharing = self.ledger.entries_by_digest(crate::ledger::key_digest(key)).map_err(ledger_error)?;
        let keys = sharing.iter().map(|e| e.body.key.as_str());
        Ok(super::keys::new_setl_id(prefix, &self.region().to_string(), key, keys))
    }

    /// A settlement this node committed, found by the key digest its id
    /// carries ([`super::keys::setl_id`]).
    fn settlement(&self, setl_id: &str) -> Result<Option<HomeSettlementEntry>, NodeError> {
        let Some(digest) = super::keys::setl_id_digest(&self.region().to_string(), setl_id) else {
            return Ok(None);
        };
        for e in self.ledger.entries_by_digest(digest).map_err(ledger_error)? {
            if e.body.kind != EntryKind::Settlement || !super::keys::is_claim(&e.body.key) {
                continue;
            }
            let rec: HomeSettlementEntry = serde_json::from_slice(&e.body.payload)
                .map_err(|err| NodeError::Internal(format!("settlement entry {}: {err}", e.body.key)))?;
            if rec.setl_id == setl_id {
                return Ok(Some(rec));
            }
        }
        Ok(None)
    }

    /// Appends a home entry and moves the derived state with it (the caller
    /// holds the person's lock, so nobody computes on stale counters).
    async fn commit_home(&self, kind: EntryKind, key: &str, rec: &HomeSettlementEntry) -> Result<(), NodeError> {
        let payload = to_payload(rec);
        let started = Instant::now();
        let appended = self.ledger.append(kind, key, payload).await;
        self.stages.record(Stage::HomeAppend, started);
        match appended {
            Ok(a) if a.existing => Ok(()),
            Ok(_) => self.apply_home(),
            Err(LedgerError::IdempotencyConflict { .. }) => Err(NodeError::MsgidReused(key.to_string())),
            Err(e) => Err(ledger_error(e)),
        }
    }

    /// Contribution years the corps–local partner holds for a retiree whose
    /// bonus depends on them (缴费年限互认); empty when they are not needed or
    /// the partner cannot be asked (the bonus then rests on the home record).
    async fn partner_years(&self, claim: &Claim) -> BTreeMap<RegionCode, u32> {
        let Ok(setl_date) = date("setl_date", &claim.setl_date) else { return BTreeMap::new() };
        let Ok(Some(person)) = self.home().person(&claim.psn_no) else {
            return BTreeMap::new();
        };
        let Ok(policy) = self.rules.policy_for(person.insuplc_admdvs, person.insutype, setl_date) else {
            return BTreeMap::new();
        };
        let needed = person.retired
            && !policy.retiree_bonus_pp.is_zero()
            && policy
                .retiree_min_years
                .is_some_and(|min| person.recognised_years(policy.region, self.rules.pairs()) < min);
        if !needed {
            return BTreeMap::new();
        }
        let mut years = BTreeMap::new();
        let partners: Vec<RegionCode> = self
            .rules
            .pairs()
            .iter()
            .filter_map(|p| {
                if p.corps == self.region().prefecture() {
                    Some(p.local)
                } else if p.local == self.region().prefecture() {
                    Some(p.corps)
                } else {
                    None
                }
            })
            .collect();
        for partner in partners {
            let Some(peer) = self.peer_for(partner) else { continue };
            let query = envelope::seal(
                &self.key,
                envelope::PEER_QUERY_DOMAIN,
                &self.region().to_string(),
                &crate::proto::ContributionYearsRequest { psn_no: claim.psn_no.clone() },
            );
            match self.transport.contribution_years(peer.region, query).await {
                Ok(found) => {
                    for (r, y) in found {
                        // Only years paid inside the partner's own area count as the partner's.
                        if let Ok(code) = RegionCode::parse(&r) {
                            if partner.covers(code) {
                                years.insert(code, y);
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(partner = %partner, error = %e, "contribution years unavailable"),
            }
        }
        years
    }

    /// Loads insured persons (idempotent: a record the node holds already
    /// changes nothing). Every record is checked before any is appended: a
    /// bad one refuses the whole call. The records go to the ledger as
    /// [`EntryKind::PersonBatch`] entries of up to [`PERSON_BATCH_RECORDS`],
    /// each keyed by what it changes, so an import run again after a crash
    /// adds only what the first run did not.
    pub async fn import_persons(&self, records: &[PersonRecord]) -> Result<usize, NodeError> {
        // The persons' locks, in stripe order: a record lands between a
        // claim's reading of the person and its commit, never inside it.
        let mut stripes: Vec<usize> = records.iter().map(|r| self.person_stripe(&r.psn_no)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for i in stripes {
            guards.push(self.person_locks[i].lock().await);
        }
        let (added, _) = self.append_persons(records, &BTreeMap::new()).await?;
        self.apply_home()?;
        Ok(added)
    }

    /// [`Node::import_persons`] without the persons' locks and without
    /// bringing the state up to the ledger: a bulk load into a stopped node
    /// applies one chunk while it appends the next. `pending` holds the
    /// digests the chunk before this one appended (not applied yet: they are
    /// what its persons hold). Returns the records that changed something and
    /// the digests this chunk leaves each of its persons with.
    pub async fn append_persons(
        &self,
        records: &[PersonRecord],
        pending: &BTreeMap<String, [u8; 32]>,
    ) -> Result<(usize, BTreeMap<String, [u8; 32]>), NodeError> {
        for (i, r) in records.iter().enumerate() {
            let (p, _) = person_from_record(r).map_err(|m| NodeError::bad(format!("persons[{i}]"), m))?;
            if !self.region().covers(p.insuplc_admdvs) {
                return Err(NodeError::bad(
                    format!("persons[{i}].insuplc_admdvs"),
                    format!("not in this node's region {}", self.region()),
                ));
            }
        }
        // What each record replaces: the one held, or one earlier in this call.
        let mut latest: BTreeMap<&str, [u8; 32]> = BTreeMap::new();
        let mut changes: Vec<PersonChange> = Vec::new();
        for r in records {
            let payload = to_payload(r);
            let digest = super::state::record_digest(&payload);
            let held = match latest.get(r.psn_no.as_str()).or_else(|| pending.get(&r.psn_no)) {
                Some(d) => Some(*d),
                None => self.home().record_of(&r.psn_no).map_err(state_error)?,
            };
            if held == Some(digest) {
                continue; // the record held already: nothing changes
            }
            latest.insert(&r.psn_no, digest);
            changes.push(PersonChange { record: r, payload, digest, held });
        }
        let mut added = 0;
        let mut at = 0;
        while at < changes.len() {
            let mut bytes = 0;
            let mut end = at;
            while end < changes.len()
                && end - at < PERSON_BATCH_RECORDS
                && bytes + changes[end].payload.len() < PERSON_BATCH_BYTES
            {
                bytes += changes[end].payload.len() + 1;
                end += 1;
            }
            let chunk = &changes[at..end.max(at + 1)];
            // Keyed by each record and the one it replaces: a retry is the
            // same entry; restating an earlier record (A, B, then A) is new.
            let mut h = Sha256::new();
            for c in chunk {
                h.update((c.record.psn_no.len() as u32).to_be_bytes());
                h.update(c.record.psn_no.as_bytes());
                h.update(c.digest);
                h.update(c.held.unwrap_or([0u8; 32]));
            }
            let key = super::keys::person_batch(&hex::encode(h.finalize()));
            let payload = person_batch_payload(chunk.iter().map(|c| c.payload.as_slice()));
            let a = self.ledger.append(EntryKind::PersonBatch, &key, payload).await.map_err(ledger_error)?;
            if !a.existing {
                added += chunk.len();
            }
            at += chunk.len();
        }
        let left = latest.into_iter().map(|(p, d)| (p.to_string(), d)).collect();
        Ok((added, left))
    }
}

/// A [`PersonBatchEntry`](super::records::PersonBatchEntry)'s payload from
/// its records' payloads: the bytes serde writes for the entry, without
/// writing each record again.
pub(crate) fn person_batch_payload<'a>(records: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = b"{\"records\":[".to_vec();
    for (i, r) in records.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(r);
    }
    out.extend_from_slice(b"]}");
    out
}

/// A person record that changes what the node holds.
struct PersonChange<'a> {
    record: &'a PersonRecord,
    payload: Vec<u8>,
    digest: [u8; 32],
    /// The digest of the record it replaces (`None`: a new person).
    held: Option<[u8; 32]>,
}

/// Most person records in one ledger entry.
pub const PERSON_BATCH_RECORDS: usize = 4_000;
/// Most bytes of person records in one ledger entry (under the entry limit).
const PERSON_BATCH_BYTES: usize = crate::ledger::entry::MAX_PAYLOAD_BYTES - 64 * 1024;

/// A reversal's figures: every flow negated, the same route and medical
/// type, and the account balance after the reversal.
fn negate_figures(f: crate::proto::SettlementFigures, balc: crate::money::Amount) -> crate::proto::SettlementFigures {
    let neg = |s: String| {
        use std::str::FromStr;
        match rust_decimal::Decimal::from_str(&s) {
            Ok(d) => (-crate::money::Amount::round_half_up(d)).to_string(),
            Err(_) => s,
        }
    };
    crate::proto::SettlementFigures {
        route: f.route,
        medfee_sumamt: neg(f.medfee_sumamt),
        fulamt_ownpay_amt: neg(f.fulamt_ownpay_amt),
        overlmt_selfpay: neg(f.overlmt_selfpay),
        preselfpay_amt: neg(f.preselfpay_amt),
        inscp_scp_amt: neg(f.inscp_scp_amt),
        act_pay_dedc: neg(f.act_pay_dedc),
        pool_prop: f.pool_prop,
        hifp_pay: neg(f.hifp_pay),
        hifmi_pay: neg(f.hifmi_pay),
        hifob_pay: neg(f.hifob_pay),
        maf_pay: neg(f.maf_pay),
        fund_pay_sumamt: neg(f.fund_pay_sumamt),
        psn_part_amt: neg(f.psn_part_amt),
        med_type: f.med_type,
        acct_pay: neg(f.acct_pay),
        psn_cash_pay: neg(f.psn_cash_pay),
        balc: balc.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_payload_is_what_serde_writes_for_the_entry() {
        let records: Vec<PersonRecord> = (0..3)
            .map(|i| PersonRecord {
                psn_no: format!("P\"{i}\u{4e2d}"),
                insuplc_admdvs: "611000".into(),
                insutype: "310".into(),
                retired: i == 1,
                special_group: None,
                contribution_years: [("654000".to_string(), 3)].into_iter().collect(),
                acct_balance: (i == 2).then(|| "12.50".to_string()),
                chronic: Vec::new(),
            })
            .collect();
        let payloads: Vec<Vec<u8>> = records.iter().map(to_payload).collect();
        let entry = super::super::records::PersonBatchEntry { records };
        assert_eq!(person_batch_payload(payloads.iter().map(|p| p.as_slice())), to_payload(&entry));
    }
}
