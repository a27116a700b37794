//! Designation at run time (定点 suspended, revoked, restored) and the
//! mutual recognition of sanctions between corps–local partners (医保检查
//! 结果互认). An admin of an institution's node changes its designation by a
//! signed request on the ledger; the institution's requests are refused from
//! the moment that entry is durable. A revoked institution may be restored
//! three years after the revocation at the earliest. Each change is sent,
//! signed by the node, to its corps–local partners, which record it and
//! refuse the claims of that institution's care; a change not yet delivered
//! is sent again until the partner has it (`sanction_delivered` entries).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{Datelike, TimeZone};
use serde::{Deserialize, Serialize};

use super::records::{to_payload, EnvelopeRecord};
use super::{ledger_error, Node};
use crate::api::convert::msgid;
use crate::api::envelope::{self, DESIGNATION_DOMAIN, SANCTION_DOMAIN};
use crate::api::NodeError;
use crate::ledger::EntryKind;
use crate::proto::{designation_request::Op, DesignationRequest, DesignationState, SanctionNotice, Signed};
use crate::region::RegionCode;

/// Years a revoked institution waits before it may be designated again.
pub const REVOCATION_YEARS: i32 = 3;
/// Longest reason a designation change may carry.
pub const MAX_REASON_LEN: usize = 200;
/// Most institutions a partner may have sanctioned here at once.
pub const MAX_PARTNER_SANCTIONS: usize = 100_000;

/// An institution's designation status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Active,
    Suspended,
    Revoked,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Suspended => "suspended",
            Status::Revoked => "revoked",
        }
    }
}

/// An institution's designation as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Designation {
    pub status: Status,
    pub reason: String,
    pub since_ms: i64,
    /// Revoked: the earliest restoration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restorable_from_ms: Option<i64>,
}

/// What `op` makes of an institution's designation `current` (`None`:
/// designated, as its config says) at `now_ms`.
pub fn next(current: Option<&Designation>, op: Op, reason: &str, now_ms: i64) -> Result<Designation, NodeError> {
    let status = current.map_or(Status::Active, |d| d.status);
    let to = |status, restorable_from_ms| Designation {
        status,
        reason: reason.to_string(),
        since_ms: now_ms,
        restorable_from_ms,
    };
    match (op, status) {
        (Op::Suspend, Status::Active) => Ok(to(Status::Suspended, None)),
        (Op::Revoke, Status::Active | Status::Suspended) => Ok(to(Status::Revoked, Some(years_later(now_ms)?))),
        (Op::Restore, Status::Suspended) => Ok(to(Status::Active, None)),
        (Op::Restore, Status::Revoked) => {
            let from = current.and_then(|d| d.restorable_from_ms).unwrap_or(i64::MAX);
            if now_ms < from {
                return Err(NodeError::HoldingPeriod(format!(
                    "revoked on {}: it may be designated again from {} ({REVOCATION_YEARS} years)",
                    current.map_or_else(String::new, |d| crate::time::shanghai_date(d.since_ms)),
                    crate::time::shanghai_date(from)
                )));
            }
            Ok(to(Status::Active, None))
        }
        (Op::Unspecified, _) => Err(NodeError::bad("op", "unknown operation (SUSPEND, REVOKE or RESTORE)")),
        (op, status) => {
            Err(NodeError::bad("op", format!("the institution is {} already: {op:?} does not apply", status.name())))
        }
    }
}

/// The start (Asia/Shanghai) of the same day `REVOCATION_YEARS` years after `ms`
/// (29 February: 1 March).
fn years_later(ms: i64) -> Result<i64, NodeError> {
    let day = crate::time::shanghai_day(ms).ok_or_else(|| NodeError::Internal("clock outside the calendar".into()))?;
    let year = day.year() + REVOCATION_YEARS;
    let later = chrono::NaiveDate::from_ymd_opt(year, day.month(), day.day())
        .or_else(|| chrono::NaiveDate::from_ymd_opt(year, 3, 1))
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|d| crate::time::shanghai().from_local_datetime(&d).single())
        .ok_or_else(|| NodeError::Internal("date out of range".into()))?;
    Ok(later.timestamp_millis())
}

/// A designation change of this node's institution, on its ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesignationEntry {
    pub request: EnvelopeRecord,
    pub fixmedins_code: String,
    pub designation: Designation,
}

/// A corps–local partner's designation change, as recorded here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerSanctionEntry {
    pub notice: EnvelopeRecord,
    pub region: String,
    pub fixmedins_code: String,
    pub designation: Designation,
}

/// A designation change delivered to a partner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveredEntry {
    pub designation_key: String,
    pub partner: String,
}

/// The designations the node holds: its own institutions' (absent:
/// designated as configured), its partners' sanctions, and the changes not
/// yet delivered to a partner. Bounded by the config's institutions, by
/// `MAX_PARTNER_SANCTIONS`, and by the changes made.
#[derive(Debug, Default)]
pub struct Designations {
    own: HashMap<String, Designation>,
    partners: HashMap<(RegionCode, String), Designation>,
    /// (partner, designation key) -> the notice to send.
    undelivered: BTreeMap<(RegionCode, String), SanctionNotice>,
}

impl Designations {
    /// Replays one ledger entry of the node of `region`, whose corps–local
    /// partners are `partners`.
    pub fn note(&mut self, kind: EntryKind, key: &str, payload: &[u8], region: RegionCode, partners: &[RegionCode]) {
        match kind {
            EntryKind::Designation => {
                if let Ok(d) = serde_json::from_slice::<DesignationEntry>(payload) {
                    if let Some(request) = d.request.to_signed() {
                        let notice = SanctionNotice {
                            region: region.to_string(),
                            request: Some(request),
                            recorded_ms: d.designation.since_ms,
                        };
                        for p in partners {
                            self.undelivered.insert((*p, key.to_string()), notice.clone());
                        }
                    }
                    self.own.insert(d.fixmedins_code, d.designation);
                }
            }
            EntryKind::PartnerSanction => {
                if let Ok(s) = serde_json::from_slice::<PartnerSanctionEntry>(payload) {
                    if let Ok(r) = RegionCode::parse(&s.region) {
                        // Notices may arrive out of order: the latest change stands.
                        let held = self.partners.entry((r, s.fixmedins_code)).or_insert_with(|| s.designation.clone());
                        if held.since_ms <= s.designation.since_ms {
                            *held = s.designation;
                        }
                    }
                }
            }
            EntryKind::SanctionDelivered => {
                if let Ok(d) = serde_json::from_slice::<DeliveredEntry>(payload) {
                    if let Ok(p) = RegionCode::parse(&d.partner) {
                        self.undelivered.remove(&(p, d.designation_key));
                    }
                }
            }
            _ => {}
        }
    }

    /// The sanction in force on this node's institution `code`, if any.
    pub fn own_sanction(&self, code: &str) -> Option<&Designation> {
        self.own.get(code).filter(|d| d.status != Status::Active)
    }

    /// The sanction partner `region` recorded on its institution `code`.
    pub fn partner_sanction(&self, region: RegionCode, code: &str) -> Option<&Designation> {
        self.partners.get(&(region, code.to_string())).filter(|d| d.status != Status::Active)
    }
}

fn state(code: &str, region: RegionCode, d: Option<&Designation>) -> DesignationState {
    DesignationState {
        fixmedins_code: code.to_string(),
        region: region.to_string(),
        status: d.map_or(Status::Active, |d| d.status).name().to_string(),
        reason: d.map(|d| d.reason.clone()).unwrap_or_default(),
        since_ms: d.map_or(0, |d| d.since_ms),
        restorable_from_ms: d.and_then(|d| d.restorable_from_ms).unwrap_or(0),
    }
}

/// Why a sanctioned institution is refused.
pub fn refusal(code: &str, d: &Designation) -> NodeError {
    NodeError::HospitalNotDesignated(format!(
        "{code} ({} since {}: {})",
        d.status.name(),
        crate::time::shanghai_date(d.since_ms),
        d.reason
    ))
}

fn reason(text: &str) -> Result<(), NodeError> {
    if text.trim().is_empty() || text.chars().count() > MAX_REASON_LEN {
        return Err(NodeError::bad("reason", format!("must be 1–{MAX_REASON_LEN} characters")));
    }
    Ok(())
}

impl Node {
    /// This node's corps–local partners among its peers.
    pub(super) fn partners(&self) -> Vec<RegionCode> {
        let pairs = self.rules.pairs();
        self.config.peers.keys().copied().filter(|p| pairs.are_partners(self.region(), *p)).collect()
    }

    /// Suspends, revokes or restores one of this node's institutions, by an
    /// admin's signed request (to completion); then tells the partners.
    pub async fn designate(self: &Arc<Self>, env: Signed) -> Result<DesignationState, NodeError> {
        let node = Arc::clone(self);
        let state = super::run_to_completion("designation", async move { node.designate_now(env).await }).await?;
        // Delivered now, in the background (the admin does not wait on a
        // partner), or later by the re-drive loop.
        let node = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = node.deliver_sanctions().await {
                tracing::warn!(error = %e, "delivering sanctions");
            }
        });
        Ok(state)
    }

    async fn designate_now(&self, env: Signed) -> Result<DesignationState, NodeError> {
        let req: DesignationRequest = self.open_as_admin(&env, DESIGNATION_DOMAIN)?;
        msgid("msgid", &req.msgid)?;
        let code = req.fixmedins_code.clone();
        if !self.config.hospitals.contains_key(&code) {
            return Err(NodeError::UnknownHospital(code));
        }
        let key = super::keys::designation(&env.signer, &req.msgid);
        let _alone = self.designation_lock.lock().await;
        if let Some(stored) = self.ledger.entry_by_key(&key).map_err(ledger_error)? {
            let stored: DesignationEntry =
                serde_json::from_slice(&stored.body.payload).map_err(|e| NodeError::Internal(e.to_string()))?;
            if stored.request.body != super::records::to_hex(&env.body) {
                return Err(NodeError::MsgidReused(req.msgid));
            }
            return self.designation_state(&code);
        }
        reason(&req.reason)?;
        let op = Op::try_from(req.op).unwrap_or(Op::Unspecified);
        let current = self.read_designations(|d| d.own.get(&code).cloned())?;
        // Each change of an institution later than the last, even if the
        // clock stepped back: partners keep the latest by this time.
        let now = self.clock.now_ms().max(current.as_ref().map_or(i64::MIN, |d| d.since_ms + 1));
        let designation = next(current.as_ref(), op, &req.reason, now)?;
        let entry = DesignationEntry { request: EnvelopeRecord::from(&env), fixmedins_code: code.clone(), designation };
        let payload = to_payload(&entry);
        self.ledger.append(EntryKind::Designation, &key, payload.clone()).await.map_err(ledger_error)?;
        // Durable: from here on the institution's requests meet the change.
        let partners = self.partners();
        self.write_designations(|d| d.note(EntryKind::Designation, &key, &payload, self.region(), &partners))?;
        self.designation_state(&code)
    }

    /// An institution's designation now.
    pub fn designation_state(&self, code: &str) -> Result<DesignationState, NodeError> {
        self.read_designations(|d| state(code, self.region(), d.own.get(code)))
    }

    /// Refuses a request of this node's institution `code` while it is
    /// suspended or revoked.
    pub(super) fn check_designated(&self, code: &str) -> Result<(), NodeError> {
        match self.read_designations(|d| d.own_sanction(code).cloned())? {
            Some(d) => Err(refusal(code, &d)),
            None => Ok(()),
        }
    }

    /// Refuses a claim for care at a partner's institution it has sanctioned.
    pub(super) fn check_partner_designated(&self, treatment: RegionCode, code: &str) -> Result<(), NodeError> {
        match self.read_designations(|d| d.partner_sanction(treatment, code).cloned())? {
            Some(d) => Err(refusal(code, &d)),
            None => Ok(()),
        }
    }

    /// A partner's signed notice of a sanction on one of its institutions:
    /// recorded once, then applied to the claims of that institution's care.
    pub async fn handle_sanction(self: &Arc<Self>, env: Signed) -> Result<DesignationState, NodeError> {
        let node = Arc::clone(self);
        super::run_to_completion("partner sanction", async move { node.handle_sanction_now(env).await }).await
    }

    async fn handle_sanction_now(&self, env: Signed) -> Result<DesignationState, NodeError> {
        let signer = RegionCode::parse(&env.signer).map_err(|_| NodeError::UnknownPeer(env.signer.clone()))?;
        let peer = self.config.peers.get(&signer).ok_or_else(|| NodeError::UnknownPeer(signer.to_string()))?;
        let notice: SanctionNotice = envelope::open(&env, &peer.public_key, SANCTION_DOMAIN)
            .map_err(|e| NodeError::BadSignature(format!("{signer}: {e}")))?;
        if !self.rules.pairs().are_partners(signer, self.region()) {
            return Err(NodeError::NotAuthorised(format!(
                "{signer} is not a corps–local partner of {}",
                self.region()
            )));
        }
        if notice.region != signer.to_string() {
            return Err(NodeError::NotAuthorised(format!("{signer} cannot notify for {:?}", notice.region)));
        }
        let request = notice.request.clone().ok_or_else(|| NodeError::bad("request", "missing"))?;
        // The partner's node vouches for its admin's request (whose key only it holds).
        let req: DesignationRequest = envelope::peek(&request).map_err(|e| NodeError::bad("request", e.to_string()))?;
        msgid("msgid", &req.msgid)?;
        let max = crate::api::convert::MAX_CODE_LEN;
        if req.fixmedins_code.is_empty() || req.fixmedins_code.len() > max || request.signer.len() > max {
            return Err(NodeError::bad("fixmedins_code", format!("must be 1–{max} characters")));
        }
        let origin = super::keys::designation(&request.signer, &req.msgid);
        let key = super::keys::partner_sanction(&signer.to_string(), &origin);
        let _alone = self.designation_lock.lock().await;
        if self.ledger.entry_by_key(&key).map_err(ledger_error)?.is_none() {
            let fresh = self.read_designations(|d| !d.partners.contains_key(&(signer, req.fixmedins_code.clone())))?;
            if fresh && self.read_designations(|d| d.partners.len())? >= MAX_PARTNER_SANCTIONS {
                return Err(NodeError::bad(
                    "request",
                    format!("{MAX_PARTNER_SANCTIONS} partner sanctions held already"),
                ));
            }
            // As the partner decided it (its transitions, its three-year rule).
            let status = match Op::try_from(req.op).unwrap_or(Op::Unspecified) {
                Op::Suspend => Status::Suspended,
                Op::Revoke => Status::Revoked,
                Op::Restore => Status::Active,
                Op::Unspecified => return Err(NodeError::bad("op", "unknown operation")),
            };
            reason(&req.reason)?;
            let designation = Designation {
                status,
                reason: req.reason.clone(),
                since_ms: notice.recorded_ms,
                restorable_from_ms: None,
            };
            let entry = PartnerSanctionEntry {
                notice: EnvelopeRecord::from(&env),
                region: signer.to_string(),
                fixmedins_code: req.fixmedins_code.clone(),
                designation,
            };
            let payload = to_payload(&entry);
            self.ledger.append(EntryKind::PartnerSanction, &key, payload.clone()).await.map_err(ledger_error)?;
            let partners = self.partners();
            self.write_designations(|d| d.note(EntryKind::PartnerSanction, &key, &payload, self.region(), &partners))?;
        }
        self.read_designations(|d| {
            state(&req.fixmedins_code, signer, d.partners.get(&(signer, req.fixmedins_code.clone())))
        })
    }

    /// Sends every designation change a partner does not have yet; returns
    /// how many were delivered.
    pub async fn deliver_sanctions(&self) -> Result<usize, NodeError> {
        let mut due: Vec<((RegionCode, String), SanctionNotice)> =
            self.read_designations(|d| d.undelivered.iter().map(|(k, v)| (k.clone(), v.clone())).collect())?;
        // In the order they were made (a partner keeps the latest anyway).
        due.sort_by_key(|(_, n)| n.recorded_ms);
        let mut delivered = 0;
        let mut unreachable = std::collections::BTreeSet::new();
        for ((partner, key), notice) in due {
            // A partner that failed this round is tried again next round.
            if unreachable.contains(&partner) {
                continue;
            }
            let env = envelope::seal(&self.key, SANCTION_DOMAIN, &self.region().to_string(), &notice);
            match self.transport.sanction(partner, env).await {
                Ok(()) => {
                    let entry = DeliveredEntry { designation_key: key.clone(), partner: partner.to_string() };
                    let k = super::keys::sanction_delivered(&partner.to_string(), &key);
                    let payload = to_payload(&entry);
                    self.ledger
                        .append(EntryKind::SanctionDelivered, &k, payload.clone())
                        .await
                        .map_err(ledger_error)?;
                    let partners = self.partners();
                    self.write_designations(|d| {
                        d.note(EntryKind::SanctionDelivered, &k, &payload, self.region(), &partners)
                    })?;
                    delivered += 1;
                }
                Err(e) => {
                    tracing::warn!(partner = %partner, key = %key, error = %e, "sanction not delivered yet");
                    unreachable.insert(partner);
                }
            }
        }
        Ok(delivered)
    }

    /// Designation changes not yet delivered to a partner.
    pub fn undelivered_sanctions(&self) -> usize {
        self.read_designations(|d| d.undelivered.len()).unwrap_or(0)
    }

    fn read_designations<T>(&self, f: impl FnOnce(&Designations) -> T) -> Result<T, NodeError> {
        self.designations.read().map(|d| f(&d)).map_err(|_| NodeError::Internal("designations lock".into()))
    }

    fn write_designations<T>(&self, f: impl FnOnce(&mut Designations) -> T) -> Result<T, NodeError> {
        self.designations.write().map(|mut d| f(&mut d)).map_err(|_| NodeError::Internal("designations lock".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn transitions_and_the_three_year_wait() {
        let now = 1_795_000_000_000; // 2026-11-18
        let suspended = next(None, Op::Suspend, "audit", now).expect("suspend");
        assert_eq!(suspended.status, Status::Suspended);
        assert!(next(Some(&suspended), Op::Suspend, "again", now).is_err());
        assert_eq!(next(Some(&suspended), Op::Restore, "fixed", now + DAY).expect("restore").status, Status::Active);
        let revoked = next(Some(&suspended), Op::Revoke, "fraud", now).expect("revoke");
        let from = revoked.restorable_from_ms.expect("restorable from");
        assert_eq!(crate::time::shanghai_date(from), "2029-11-18");
        let early = next(Some(&revoked), Op::Restore, "please", from - 1).expect_err("too early");
        assert_eq!(early.reason(), "holding_period");
        assert!(early.to_string().contains("2029-11-18"), "{early}");
        assert_eq!(next(Some(&revoked), Op::Restore, "served", from).expect("restored").status, Status::Active);
        assert!(next(Some(&revoked), Op::Suspend, "x", now).is_err());
        assert!(next(None, Op::Restore, "x", now).is_err(), "an active institution is not restored");
        assert!(next(None, Op::Unspecified, "x", now).is_err());
        // 29 February: three years on, the day after 28 February.
        let leap = crate::time::shanghai().with_ymd_and_hms(2028, 2, 29, 10, 0, 0).single().expect("date");
        let r = next(None, Op::Revoke, "x", leap.timestamp_millis()).expect("revoke");
        assert_eq!(crate::time::shanghai_date(r.restorable_from_ms.expect("from")), "2031-03-01");
    }
}
