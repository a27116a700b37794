//! The treatment side: a hospital's signed request is checked (is it this
//! node's hospital, designated for this care), the bill is classified by this
//! region's catalogue, an intent is recorded, the home node is asked with a
//! signed claim, and its signed result is verified, recorded and answered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use sha2::{Digest, Sha256};

use super::config::InstitutionKind;
use super::metrics::Stage;
use super::records::{to_payload, EndedEntry, EnvelopeRecord, IntentEntry, OutcomeEntry};
use super::{ledger_error, Node, TransportError};
use crate::api::convert::{dise_codg, items, med_type, msgid, region, set_claim_totals, settlement_date};
use crate::api::envelope::{self, CLAIM_DOMAIN, CLAIM_RESULT_DOMAIN, HOSPITAL_DOMAIN};
use crate::api::NodeError;
use crate::ledger::{EntryKind, LedgerError};
use crate::med_type::{MedCategory, MedType};
use crate::proto::{hospital_request::Action, Claim, ClaimResult, HospitalRequest, HospitalResponse, Signed};
use crate::region::{route, RegionCode, Route};
use crate::settlement::classify;

/// Attempts at the home node within one hospital call, and the wait between.
const CLAIM_ATTEMPTS: u32 = 3;
pub(super) const CLAIM_BACKOFF: Duration = Duration::from_millis(100);

use super::keys::{intent as intent_key, outcome as outcome_key};

/// A request's medical type and disease, as the institution may send them:
/// a pharmacy only purchases (41), a hospital never does; 14 names its disease.
fn check_med_type(req: &HospitalRequest, kind: InstitutionKind) -> Result<(), NodeError> {
    if Action::try_from(req.action) == Ok(Action::Reverse) {
        return Ok(()); // a reversal is of the settlement it names, whatever its type
    }
    let t = med_type("med_type", &req.med_type)?;
    dise_codg("dise_codg", &req.dise_codg, t)?;
    if req.emergency && t.category() != MedCategory::Inpatient {
        // 13 is the emergency visit; the flag's filing waiver is for stays.
        return Err(NodeError::bad(
            "emergency",
            format!("only a stay (21–24) is flagged as an emergency; use med_type 13 for an emergency visit, not {t}"),
        ));
    }
    match (kind, t == MedType::Pharmacy) {
        (InstitutionKind::Pharmacy, true) | (InstitutionKind::Hospital, false) => Ok(()),
        (InstitutionKind::Pharmacy, false) => Err(NodeError::bad(
            "med_type",
            format!("{} is a pharmacy: it settles purchases (41) only, not {t}", req.fixmedins_code),
        )),
        (InstitutionKind::Hospital, true) => Err(NodeError::bad(
            "med_type",
            format!("41 is a purchase at a designated pharmacy; {} is a hospital", req.fixmedins_code),
        )),
    }
}

impl Node {
    /// Handles a hospital's signed request.
    pub async fn handle_hospital(self: &Arc<Self>, env: Signed) -> Result<HospitalResponse, NodeError> {
        let received = Instant::now();
        if env.signature.is_empty() {
            return Err(NodeError::Unsigned);
        }
        // The signer names the hospital; its key checks the exact bytes
        // before anything in them is decoded or believed.
        let hospital =
            self.config.hospitals.get(&env.signer).ok_or_else(|| NodeError::UnknownHospital(env.signer.clone()))?;
        let who = match hospital.kind {
            InstitutionKind::Hospital => "hospital",
            InstitutionKind::Pharmacy => "pharmacy",
        };
        let req: HospitalRequest =
            envelope::open(&env, &hospital.public_key, HOSPITAL_DOMAIN).map_err(|e| match e {
                envelope::EnvelopeError::BadSignature => NodeError::BadSignature(format!(
                    "{who} {} (signed with a key other than the one this node's config lists for it)",
                    hospital.code
                )),
                other => NodeError::BadSignature(format!("{who} {}: {other}", hospital.code)),
            })?;
        if req.fixmedins_code != hospital.code {
            return Err(NodeError::NotAuthorised(format!(
                "signed by {} for hospital {:?}",
                hospital.code, req.fixmedins_code
            )));
        }
        let _slot = self.enter_hospital(&hospital.code)?;
        msgid("msgid", &req.msgid)?;
        check_med_type(&req, hospital.kind)?;
        let home = region("insuplc_admdvs", &req.insuplc_admdvs)?;
        let care = route(home, self.region(), self.rules.pairs());
        if care == Route::Local {
            return Err(NodeError::bad(
                "insuplc_admdvs",
                "a local patient settles with the local system, not across regions",
            ));
        }
        if !hospital.designated || !(hospital.cross_region || care == Route::CorpsLocal) {
            return Err(NodeError::HospitalNotDesignated(hospital.code.clone()));
        }
        let peer = self.peer_for(home).ok_or_else(|| NodeError::UnknownPeer(home.to_string()))?.region;
        let action = Action::try_from(req.action).unwrap_or(Action::Unspecified);
        let hospital_code = hospital.code.clone();
        self.stages.record(Stage::Check, received);
        match action {
            Action::Eligibility | Action::Presettle => {
                self.check_designated(&hospital.code)?;
                let claim = self.build_claim(&req, &env, hospital.level, action)?;
                let claim_env = self.signer.sign(CLAIM_DOMAIN, claim.encode_to_vec()).await?;
                let result = self.ask_home(peer, &claim_env).await?;
                Ok(response(&req.msgid, &result.0, result.1))
            }
            Action::Settle | Action::Reverse => {
                // To completion: the pending intents and running totals move
                // with every durable append.
                let node = Arc::clone(self);
                let level = hospital.level;
                super::run_to_completion("settlement", async move {
                    node.settle_or_reverse(req, env, hospital_code, level, peer, action).await
                })
                .await
            }
            Action::Unspecified => Err(NodeError::bad("action", "unknown action")),
        }
    }

    fn build_claim(
        &self,
        req: &HospitalRequest,
        env: &Signed,
        level: crate::settlement::HospitalLevel,
        action: Action,
    ) -> Result<Claim, NodeError> {
        let setl_date = settlement_date("setl_date", &req.setl_date, self.clock.now_ms())?;
        let mut claim = Claim {
            mdtrtarea_admvs: self.region().to_string(),
            fixmedins_code: req.fixmedins_code.clone(),
            hosp_lv: level.index() as i32,
            msgid: req.msgid.clone(),
            action: action as i32,
            psn_no: req.psn_no.clone(),
            insuplc_admdvs: req.insuplc_admdvs.clone(),
            setl_date: req.setl_date.clone(),
            hospital_request: Some(env.clone()),
            emergency: req.emergency,
            month_floor: self.month_floor().map(|m| m.to_string()).unwrap_or_default(),
            med_type: med_type("med_type", &req.med_type)?.code().to_string(),
            dise_codg: req.dise_codg.clone(),
            acct_used_flag: req.acct_used_flag,
            ..Claim::default()
        };
        // Eligibility asks before there is a bill: with none, it is checked
        // on a bill of 0.00 (registration, person, policy; no amounts).
        let no_bill = action == Action::Eligibility && req.items.is_empty();
        if no_bill {
            set_claim_totals(&mut claim, &crate::settlement::BillTotals::default());
        } else if action != Action::Reverse {
            let bill = items(&req.items)?;
            let catalogue = self
                .rules
                .catalogue_for(self.region(), setl_date)
                .ok_or(NodeError::Refused(crate::settlement::Refusal::CatalogueNotInForce))?;
            let (_, totals) = classify(catalogue, &bill);
            if totals.medfee_sumamt == crate::money::Amount::ZERO {
                return Err(NodeError::bad("items", "the bill totals 0.00"));
            }
            set_claim_totals(&mut claim, &totals);
        }
        Ok(claim)
    }

    async fn settle_or_reverse(
        &self,
        req: HospitalRequest,
        env: Signed,
        hospital: String,
        level: crate::settlement::HospitalLevel,
        home: RegionCode,
        action: Action,
    ) -> Result<HospitalResponse, NodeError> {
        let ikey = intent_key(&hospital, &req.msgid);
        // An answered msgid gets its first answer back.
        if let Some(done) = self.stored_outcome(&hospital, &req.msgid, &env)? {
            return Ok(done);
        }
        let claim_env = match self.intent(&ikey)? {
            Some(intent) => claim_of(intent, &req.msgid, &env)?,
            None => {
                // Suspended or revoked at run time: nothing new from the
                // moment that entry is durable (answers given stay given, what
                // was accepted before completes, and a reversal still gives
                // the fund its money back).
                if action != Action::Reverse {
                    self.check_designated(&hospital)?;
                }
                let pending = self.pending_intents();
                if pending >= self.limits.pending_intents {
                    return Err(NodeError::Overloaded(format!(
                        "{pending} settlements await their home nodes (limit {}); retry later",
                        self.limits.pending_intents
                    )));
                }
                let mut claim = self.build_claim(&req, &env, level, action)?;
                if action == Action::Reverse {
                    claim.reversed_setl_id = self.settled_id(&hospital, &req.reversed_msgid)?;
                }
                let started = Instant::now();
                let claim_env = self.signer.sign(CLAIM_DOMAIN, claim.encode_to_vec()).await?;
                self.stages.record(Stage::ClaimSign, started);
                let intent = IntentEntry { claim: EnvelopeRecord::from(&claim_env), home: home.to_string() };
                let started = Instant::now();
                let appended = self.ledger.append(EntryKind::SettlementIntent, &ikey, to_payload(&intent)).await;
                self.stages.record(Stage::IntentAppend, started);
                match appended {
                    Ok(_) => {
                        if let Ok(mut p) = self.pending_intents.lock() {
                            p.insert(ikey.clone(), self.clock.now_ms());
                        }
                        claim_env
                    }
                    // A copy of this request recorded its intent first: its
                    // claim (signed in another batch, or with this one under
                    // another proof) is the claim.
                    Err(LedgerError::IdempotencyConflict { .. }) => {
                        let intent = self
                            .intent(&ikey)?
                            .ok_or_else(|| NodeError::Internal(format!("intent {ikey} vanished")))?;
                        claim_of(intent, &req.msgid, &env)?
                    }
                    Err(e) => return Err(ledger_error(e)),
                }
            }
        };
        let started = Instant::now();
        let asked = self.ask_home(home, &claim_env).await;
        self.stages.record(Stage::HomeRoundTrip, started);
        let (result_env, result) = match asked {
            Ok(answer) => answer,
            Err(e) if ends_intent(&e) => {
                let reversal = req.action == Action::Reverse as i32;
                let refusal = self.end_intent(&ikey, &hospital, &req.msgid, reversal, e).await;
                // Another attempt may have recorded a result first: it stands.
                return self.stored_outcome(&hospital, &req.msgid, &env)?.ok_or(refusal);
            }
            Err(e) => return Err(e),
        };
        // The recorded answer is the answer: a concurrent retry may have
        // recorded a refusal computed a moment earlier.
        let (recorded, result) = self.record_outcome(&ikey, &hospital, &req.msgid, action, result_env, result).await?;
        Ok(response(&req.msgid, &recorded, result))
    }

    /// The intent recorded under `ikey`, if any.
    fn intent(&self, ikey: &str) -> Result<Option<IntentEntry>, NodeError> {
        let Some(entry) = self.ledger.entry_by_key(ikey).map_err(ledger_error)? else {
            return Ok(None);
        };
        serde_json::from_slice(&entry.body.payload).map(Some).map_err(|e| NodeError::Internal(e.to_string()))
    }

    /// The setl_id of this hospital's settled msgid (for a reversal).
    fn settled_id(&self, hospital: &str, msgid: &str) -> Result<String, NodeError> {
        let entry = self.ledger.entry_by_key(&outcome_key(hospital, msgid)).map_err(ledger_error)?;
        let outcome: OutcomeEntry = entry
            .and_then(|e| serde_json::from_slice(&e.body.payload).ok())
            .ok_or_else(|| NodeError::UnknownSettlement(msgid.to_string()))?;
        let result: ClaimResult = outcome
            .result
            .to_signed()
            .and_then(|s| envelope::peek(&s).ok())
            .ok_or_else(|| NodeError::Internal("stored outcome".into()))?;
        if !result.settled || result.setl_id.is_empty() {
            return Err(NodeError::UnknownSettlement(msgid.to_string()));
        }
        Ok(result.setl_id)
    }

    fn stored_outcome(&self, hospital: &str, msgid: &str, env: &Signed) -> Result<Option<HospitalResponse>, NodeError> {
        let Some(entry) = self.ledger.entry_by_key(&outcome_key(hospital, msgid)).map_err(ledger_error)? else {
            return Ok(None);
        };
        let intent = self.ledger.entry_by_key(&intent_key(hospital, msgid)).map_err(ledger_error)?;
        let same = intent
            .and_then(|e| serde_json::from_slice::<IntentEntry>(&e.body.payload).ok())
            .is_some_and(|i| same_request(i.hospital_request().as_ref(), env));
        if !same {
            return Err(NodeError::MsgidReused(msgid.to_string()));
        }
        if entry.body.kind == EntryKind::SettlementEnded {
            let ended: EndedEntry =
                serde_json::from_slice(&entry.body.payload).map_err(|e| NodeError::Internal(e.to_string()))?;
            return Err(peer_refusal(&ended.reason, ended.message));
        }
        let outcome: OutcomeEntry =
            serde_json::from_slice(&entry.body.payload).map_err(|e| NodeError::Internal(e.to_string()))?;
        let result_env = outcome.result.to_signed().ok_or_else(|| NodeError::Internal("stored outcome".into()))?;
        let result: ClaimResult = envelope::peek(&result_env).map_err(|e| NodeError::Internal(e.to_string()))?;
        Ok(Some(response(msgid, &result_env, result)))
    }

    /// Records the home node's answer and returns the recorded one, signed
    /// and decoded: this one, or another attempt's recorded before it.
    async fn record_outcome(
        &self,
        ikey: &str,
        hospital: &str,
        msgid: &str,
        action: Action,
        result_env: Signed,
        result: ClaimResult,
    ) -> Result<(Signed, ClaimResult), NodeError> {
        let outcome = OutcomeEntry { intent_key: ikey.to_string(), result: EnvelopeRecord::from(&result_env) };
        let kind = if action == Action::Reverse { EntryKind::Reversal } else { EntryKind::Settlement };
        let key = outcome_key(hospital, msgid);
        let started = Instant::now();
        let appended = self.ledger.append(kind, &key, to_payload(&outcome)).await;
        self.stages.record(Stage::OutcomeAppend, started);
        let recorded = match appended {
            // Its clearing line and any refusal count are the state store's,
            // read from the ledger.
            Ok(_) => (result_env, result),
            // Another attempt recorded its answer first (a refusal carries
            // its computation time, so two differ): that one stands.
            Err(LedgerError::IdempotencyConflict { .. }) => {
                let entry = self
                    .ledger
                    .entry_by_key(&key)
                    .map_err(ledger_error)?
                    .ok_or_else(|| NodeError::Internal(format!("outcome {key} vanished")))?;
                if entry.body.kind == EntryKind::SettlementEnded {
                    self.forget_intent(ikey);
                    let ended: EndedEntry =
                        serde_json::from_slice(&entry.body.payload).map_err(|e| NodeError::Internal(e.to_string()))?;
                    return Err(peer_refusal(&ended.reason, ended.message));
                }
                let first: OutcomeEntry =
                    serde_json::from_slice(&entry.body.payload).map_err(|e| NodeError::Internal(e.to_string()))?;
                let first = first.result.to_signed().ok_or_else(|| NodeError::Internal("stored outcome".into()))?;
                let result = envelope::peek(&first).map_err(|e| NodeError::Internal(e.to_string()))?;
                (first, result)
            }
            Err(e) => return Err(ledger_error(e)),
        };
        self.forget_intent(ikey);
        Ok(recorded)
    }

    /// Ends an intent the home node refused for good: the refusal is
    /// recorded under the outcome's key, so the intent is no longer
    /// re-driven and the hospital asking again gets the same refusal.
    /// Returns the refusal to answer with.
    async fn end_intent(
        &self,
        ikey: &str,
        hospital: &str,
        msgid: &str,
        reversal: bool,
        refusal: NodeError,
    ) -> NodeError {
        let ended = EndedEntry {
            intent_key: ikey.to_string(),
            reason: refusal.reason().to_string(),
            message: refusal.to_string(),
            reversal,
        };
        let key = outcome_key(hospital, msgid);
        match self.ledger.append(EntryKind::SettlementEnded, &key, to_payload(&ended)).await {
            Ok(_) => {
                self.forget_intent(ikey);
                tracing::info!(intent = ikey, reason = refusal.reason(), "intent ended: refused by the home node");
                refusal
            }
            // Another attempt recorded its end (or an outcome) first: that one stands.
            Err(LedgerError::IdempotencyConflict { .. }) => {
                self.forget_intent(ikey);
                match self.recorded_end(&key) {
                    Ok(Some(first)) => first,
                    Ok(None) => refusal,
                    Err(e) => e,
                }
            }
            Err(e) => ledger_error(e),
        }
    }

    /// The refusal recorded under an outcome key, if an intent ended there.
    fn recorded_end(&self, key: &str) -> Result<Option<NodeError>, NodeError> {
        let Some(entry) = self.ledger.entry_by_key(key).map_err(ledger_error)? else { return Ok(None) };
        if entry.body.kind != EntryKind::SettlementEnded {
            return Ok(None);
        }
        let ended: EndedEntry =
            serde_json::from_slice(&entry.body.payload).map_err(|e| NodeError::Internal(e.to_string()))?;
        Ok(Some(peer_refusal(&ended.reason, ended.message)))
    }

    fn forget_intent(&self, ikey: &str) {
        if let Ok(mut p) = self.pending_intents.lock() {
            p.remove(ikey);
        }
        if let Ok(mut b) = self.redrive_backoff.lock() {
            b.remove(ikey);
        }
    }

    /// Sends a claim to the home node (a few attempts), verifies the signed
    /// result: signed by that region, for this claim.
    async fn ask_home(&self, home: RegionCode, claim_env: &Signed) -> Result<(Signed, ClaimResult), NodeError> {
        let peer = self.config.peers.get(&home).ok_or_else(|| NodeError::UnknownPeer(home.to_string()))?;
        let mut last = String::new();
        for attempt in 0..CLAIM_ATTEMPTS {
            if attempt > 0 && !self.claim_backoff.is_zero() {
                tokio::time::sleep(self.claim_backoff * attempt).await;
            }
            match self.transport.submit_claim(home, claim_env.clone()).await {
                Ok(result_env) => {
                    let result: ClaimResult =
                        envelope::open_with(&result_env, &peer.public_key, CLAIM_RESULT_DOMAIN, Some(&self.verified))
                            .map_err(|e| NodeError::BadPeerAnswer(home.to_string(), e.to_string()))?;
                    if result.claim_hash != Sha256::digest(&claim_env.body).to_vec() {
                        return Err(NodeError::BadPeerAnswer(
                            home.to_string(),
                            "the result is for another claim".into(),
                        ));
                    }
                    check_month(&result, claim_env, self.month_floor())
                        .map_err(|m| NodeError::BadPeerAnswer(home.to_string(), m))?;
                    check_figures(&result, claim_env).map_err(|m| NodeError::BadPeerAnswer(home.to_string(), m))?;
                    // A settled result must clear: its month, route and amounts well formed.
                    crate::api::convert::line_of_result(&result, home, self.region())
                        .map_err(|e| NodeError::BadPeerAnswer(home.to_string(), e.to_string()))?;
                    return Ok((result_env, result));
                }
                Err(TransportError::Unreachable(e)) => last = e,
                Err(TransportError::Refused { reason, message }) => return Err(peer_refusal(&reason, message)),
                Err(TransportError::Internal(m)) => return Err(NodeError::Internal(m)),
            }
        }
        tracing::warn!(home = %home, error = %last, "home node unreachable");
        Err(NodeError::HomeUnreachable(home.to_string()))
    }

    /// Re-drives every intent without an outcome (on start, and in the
    /// simulation). Returns how many completed or ended.
    pub async fn redrive_intents(&self) -> Result<usize, NodeError> {
        self.redrive_where(i64::MAX).await
    }

    /// Re-drives the intents whose backoff has run out (the server's
    /// periodic round): at most [`REDRIVE_BATCH`] a round, each failed
    /// attempt doubling that intent's wait up to [`REDRIVE_MAX_WAIT`].
    pub async fn redrive_due_intents(&self) -> Result<usize, NodeError> {
        self.redrive_where(self.clock.now_ms()).await
    }

    async fn redrive_where(&self, now_ms: i64) -> Result<usize, NodeError> {
        let due: Vec<String> = {
            let pending = self.pending_intents.lock().map_err(|_| NodeError::Internal("intents lock".into()))?;
            let backoff = self.redrive_backoff.lock().map_err(|_| NodeError::Internal("backoff lock".into()))?;
            pending
                .keys()
                .filter(|k| now_ms == i64::MAX || backoff.get(*k).is_none_or(|(_, at)| *at <= now_ms))
                .take(REDRIVE_BATCH)
                .cloned()
                .collect()
        };
        let mut done = 0;
        let mut failed = None;
        // One unreachable home must not hold up the others: its intents wait
        // for the next round once it failed to answer in this one.
        let mut unreachable: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        for ikey in due {
            let intent = match self.intent(&ikey) {
                Ok(Some(intent)) => intent,
                Ok(None) | Err(_) => {
                    self.back_off(&ikey);
                    failed = Some(NodeError::Internal(format!("intent {ikey} unreadable")));
                    continue;
                }
            };
            let home = intent.home.clone();
            if unreachable.contains(&home) {
                self.back_off(&ikey);
                continue;
            }
            match self.redrive(&ikey, intent).await {
                Ok(()) => done += 1,
                Err(e) if ends_intent(&e) => done += 1,
                Err(e) => {
                    if matches!(e, NodeError::HomeUnreachable(_)) {
                        unreachable.insert(home);
                    }
                    self.back_off(&ikey);
                    failed = Some(e);
                }
            }
        }
        match failed {
            Some(e) if done == 0 => Err(e),
            _ => Ok(done),
        }
    }

    fn back_off(&self, ikey: &str) {
        let now = self.clock.now_ms();
        if let Ok(mut b) = self.redrive_backoff.lock() {
            let (attempts, at) = b.entry(ikey.to_string()).or_insert((0, now));
            *attempts = attempts.saturating_add(1);
            let wait = REDRIVE_FIRST_WAIT.saturating_mul(1 << (*attempts - 1).min(16)).min(REDRIVE_MAX_WAIT);
            *at = now.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
        }
    }

    async fn redrive(&self, ikey: &str, intent: IntentEntry) -> Result<(), NodeError> {
        let (hospital, msgid) =
            super::keys::parse_intent(ikey).ok_or_else(|| NodeError::Internal(format!("bad intent key {ikey}")))?;
        let home = region("home", &intent.home)?;
        let claim_env = intent.claim.to_signed().ok_or_else(|| NodeError::Internal("stored claim".into()))?;
        let claim: Claim = envelope::peek(&claim_env).map_err(|err| NodeError::Internal(err.to_string()))?;
        let action = Action::try_from(claim.action).unwrap_or(Action::Settle);
        let (result_env, result) = match self.ask_home(home, &claim_env).await {
            Ok(answer) => answer,
            Err(e) if ends_intent(&e) => {
                return Err(self.end_intent(ikey, hospital, msgid, action == Action::Reverse, e).await)
            }
            Err(e) => return Err(e),
        };
        self.record_outcome(ikey, hospital, msgid, action, result_env, result).await.map(|_| ())
    }
}

/// Intents re-driven in one round, at most.
pub(super) const REDRIVE_BATCH: usize = 1_000;
/// The wait after an intent's first failed re-drive, doubled after each.
pub(super) const REDRIVE_FIRST_WAIT: Duration = Duration::from_secs(5);
/// The longest wait between two re-drives of one intent.
pub(super) const REDRIVE_MAX_WAIT: Duration = Duration::from_secs(600);

/// Whether the home node's answer ends the intent: it refused the claim
/// itself (who, what, for whom), and asking again would be refused again.
/// Transport failures, overload and faults of the home node are retried.
/// Only the refusals a home node gives after looking for the claim's stored
/// result can end an intent: one it committed is answered from its record
/// first. A refusal of this node itself (its key, its config) may pass once
/// the config is mended, so it is retried like a transport failure.
fn ends_intent(e: &NodeError) -> bool {
    matches!(e, NodeError::HomeRefused(..))
}

/// A home result must not fall in a month this node had sealed when it
/// claimed (the claim's floor): that month is cleared already.
/// `floor_now` is this node's floor at the answer: floors only grow, so a
/// result at or past it needs no look at the claim's (a decode per settlement).
fn check_month(
    result: &ClaimResult,
    claim_env: &Signed,
    floor_now: Option<crate::clearing::Month>,
) -> Result<(), String> {
    let month = crate::clearing::Month::parse(&result.month);
    if !result.settled || floor_now.is_none_or(|f| month.is_some_and(|m| m >= f)) {
        return Ok(());
    }
    let claim: Claim = envelope::peek(claim_env).map_err(|e| format!("own claim: {e}"))?;
    let Some(floor) = crate::clearing::Month::parse(&claim.month_floor) else { return Ok(()) };
    match month {
        Some(m) if m >= floor => Ok(()),
        _ => Err(format!(
            "the result is for {:?}, a month this node had sealed (it claimed from {floor} on)",
            result.month
        )),
    }
}

/// A settled result's figures are of the claim's medical type (a reversal
/// names none: it is of its settlement's), and the person's share is split
/// exactly between the account and cash; what clearing splits by type rests
/// on both.
fn check_figures(result: &ClaimResult, claim_env: &Signed) -> Result<(), String> {
    let Some(f) = result.figures.as_ref().filter(|_| result.settled) else { return Ok(()) };
    let claim: Claim = envelope::peek(claim_env).map_err(|e| format!("own claim: {e}"))?;
    let amount =
        |field: &str, text: &str| crate::api::convert::signed_amount(field, text).map_err(|e| format!("figures: {e}"));
    if Action::try_from(claim.action) == Ok(Action::Settle) && f.med_type != claim.med_type {
        return Err(format!("the result is for med_type {:?}, the claim for {:?}", f.med_type, claim.med_type));
    }
    let (acct, cash, part) = (
        amount("acct_pay", &f.acct_pay)?,
        amount("psn_cash_pay", &f.psn_cash_pay)?,
        amount("psn_part_amt", &f.psn_part_amt)?,
    );
    if acct + cash != part {
        return Err(format!("acct_pay {acct} + psn_cash_pay {cash} is not psn_part_amt {part}"));
    }
    Ok(())
}

/// The claim recorded with `intent`, if that intent is for the same request
/// as `env`.
fn claim_of(intent: IntentEntry, msgid: &str, env: &Signed) -> Result<Signed, NodeError> {
    if !same_request(intent.hospital_request().as_ref(), env) {
        return Err(NodeError::MsgidReused(msgid.to_string()));
    }
    intent.claim.to_signed().ok_or_else(|| NodeError::Internal("stored claim".into()))
}

/// Whether a retried request asks for the same thing as the recorded one: the
/// same content, whenever it was sent (`sent_at_ms` may differ on a retry).
fn same_request(recorded: Option<&Signed>, env: &Signed) -> bool {
    let decode = |s: &Signed| {
        envelope::peek::<HospitalRequest>(s).ok().map(|mut r| {
            r.sent_at_ms = 0;
            r
        })
    };
    match (recorded.and_then(decode), decode(env)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// A home node's refusal, passed on with its reason and message as they are
/// (a reason not among the refusals it may give is an invalid answer).
fn peer_refusal(reason: &str, message: String) -> NodeError {
    const PASSED_ON: [&str; 6] = [
        "unknown_person",
        "already_reversed",
        "unknown_settlement",
        "msgid_reused",
        "bad_request",
        "hospital_not_designated",
    ];
    match PASSED_ON.iter().find(|r| **r == reason) {
        Some(r) => NodeError::HomeRefused(r, message),
        None => NodeError::BadPeerAnswer(String::new(), format!("{reason}: {message}")),
    }
}

fn response(msgid: &str, result_env: &Signed, r: ClaimResult) -> HospitalResponse {
    HospitalResponse {
        msgid: msgid.to_string(),
        settled: r.settled,
        setl_id: r.setl_id,
        figures: r.figures,
        refusal: r.refusal,
        message: r.message,
        month: r.month,
        home_result: Some(result_env.clone()),
        eligible: r.eligible,
    }
}
