//! Registrations (异地就医备案) on the home node, filed by the region's agency
//! in signed requests: create, change, cancel, query.

use sha2::{Digest, Sha256};
use std::sync::Arc;

use super::records::{to_payload, EnvelopeRecord, RegistrationEntry};
use super::state::{registration_from_entry, MAX_ACTIVE_REGISTRATIONS};
use super::{ledger_error, Node};
use crate::api::convert::{date, msgid, region};
use crate::api::envelope::{self, ADMIN_DOMAIN};
use crate::api::NodeError;
use crate::ledger::{EntryKind, LedgerError};
use crate::proto::{registration_request::Op, RegistrationRecord, RegistrationRequest, Signed};
use crate::settlement::RegistrationKind;

/// Longest validity a registration may declare, in days (an open end is allowed).
pub(super) const MAX_REGISTRATION_DAYS: i64 = 366 * 10;

impl Node {
    /// Applies a signed registration request from one of this node's admins
    /// (to completion, even if the caller goes away).
    pub async fn apply_registration(self: &Arc<Self>, env: Signed) -> Result<RegistrationRecord, NodeError> {
        let node = Arc::clone(self);
        super::run_to_completion("registration", async move { node.apply_registration_now(env).await }).await
    }

    /// Opens an envelope signed by one of this node's admins (`[[admins]]`).
    pub(super) fn open_as_admin<M: prost::Message + Default>(
        &self,
        env: &Signed,
        domain: &[u8],
    ) -> Result<M, NodeError> {
        if env.signature.is_empty() {
            return Err(NodeError::Unsigned);
        }
        let admin = self
            .config
            .admins
            .get(&env.signer)
            .ok_or_else(|| NodeError::NotAuthorised(format!("{:?} is not an admin of this node", env.signer)))?;
        envelope::open(env, admin, domain).map_err(|e| NodeError::BadSignature(format!("admin {}: {e}", env.signer)))
    }

    async fn apply_registration_now(&self, env: Signed) -> Result<RegistrationRecord, NodeError> {
        let req: RegistrationRequest = self.open_as_admin(&env, ADMIN_DOMAIN)?;
        msgid("msgid", &req.msgid)?;
        let key = super::keys::registration(&env.signer, &req.msgid);
        if let Some(e) = self.ledger.entry_by_key(&key).map_err(ledger_error)? {
            let stored: RegistrationEntry =
                serde_json::from_slice(&e.body.payload).map_err(|e| NodeError::Internal(e.to_string()))?;
            if stored.request.body != super::records::to_hex(&env.body) {
                return Err(NodeError::MsgidReused(req.msgid));
            }
            return Ok(record(&stored));
        }
        let _lock = self.person_lock(&req.psn_no).lock().await;
        if !self.home().has_person(&req.psn_no).map_err(super::state_error)? {
            return Err(NodeError::UnknownPerson(req.psn_no));
        }
        let op = Op::try_from(req.op).unwrap_or(Op::Unspecified);
        let (entry, kind) = match op {
            Op::Create => {
                // Bounded: the person's list of filings is kept whole in one row.
                let held = self.home().registrations(&req.psn_no).map_err(super::state_error)?;
                let active = held.iter().filter(|r| !r.cancelled).count();
                if active >= MAX_ACTIVE_REGISTRATIONS {
                    return Err(NodeError::bad(
                        "psn_no",
                        format!("{} already has {active} registrations not cancelled; cancel one first", req.psn_no),
                    ));
                }
                let reg_id = format!("B{}", &hex::encode(Sha256::digest(key.as_bytes()))[..16]);
                (self.validated(&req, &env, "create", reg_id, false)?, EntryKind::Registration)
            }
            Op::Change | Op::Cancel => {
                let current = self.home().registration(&req.reg_id).map_err(super::state_error)?;
                let current = current.ok_or_else(|| NodeError::UnknownRegistration(req.reg_id.clone()))?;
                if current.psn_no != req.psn_no {
                    return Err(NodeError::bad("psn_no", "the registration belongs to another person"));
                }
                if current.cancelled {
                    return Err(NodeError::bad("reg_id", "the registration is already cancelled"));
                }
                self.check_holding_period(&current.registration, &req)?;
                if op == Op::Cancel {
                    let mut e = self.validated_existing(&current, &req, &env)?;
                    e.op = "cancel".into();
                    e.cancelled = true;
                    (e, EntryKind::RegistrationCancel)
                } else {
                    (self.validated(&req, &env, "change", req.reg_id.clone(), false)?, EntryKind::RegistrationChange)
                }
            }
            Op::Unspecified => return Err(NodeError::bad("op", "unknown operation")),
        };
        match self.ledger.append(kind, &key, to_payload(&entry)).await {
            Ok(_) => {}
            Err(LedgerError::IdempotencyConflict { .. }) => return Err(NodeError::MsgidReused(req.msgid)),
            Err(e) => return Err(ledger_error(e)),
        }
        self.apply_home()?;
        Ok(record(&entry))
    }

    fn validated(
        &self,
        req: &RegistrationRequest,
        env: &Signed,
        op: &str,
        reg_id: String,
        cancelled: bool,
    ) -> Result<RegistrationEntry, NodeError> {
        let kind = RegistrationKind::parse(&req.kind)
            .ok_or_else(|| NodeError::bad("kind", format!("{:?} is not a registration kind", req.kind)))?;
        let target = region("target_admdvs", &req.target_admdvs)?;
        // A target inside the home area is no trip at all; a province that
        // contains the home region is a valid intra-province target.
        if self.region().covers(target) {
            return Err(NodeError::bad(
                "target_admdvs",
                format!("{target} lies inside the home region {}", self.region()),
            ));
        }
        let beg = date("begndate", &req.begndate)?;
        let end = if req.enddate.is_empty() { None } else { Some(date("enddate", &req.enddate)?) };
        if let Some(end) = end {
            if end < beg {
                return Err(NodeError::bad("enddate", "before begndate"));
            }
            if (end - beg).num_days() > MAX_REGISTRATION_DAYS {
                return Err(NodeError::bad("enddate", format!("longer than {MAX_REGISTRATION_DAYS} days")));
            }
        }
        if !kind.is_long_term() && end.is_none() {
            return Err(NodeError::bad(
                "enddate",
                format!("a temporary {} registration needs an end date", kind.as_str()),
            ));
        }
        let entry = RegistrationEntry {
            request: EnvelopeRecord::from(env),
            op: op.to_string(),
            reg_id,
            psn_no: req.psn_no.clone(),
            kind: kind.as_str().to_string(),
            target_admdvs: target.to_string(),
            begndate: beg.to_string(),
            enddate: end.map(|d| d.to_string()),
            cancelled,
        };
        registration_from_entry(&entry).ok_or_else(|| NodeError::Internal("registration".into()))?;
        Ok(entry)
    }

    fn validated_existing(
        &self,
        current: &super::state::RegState,
        req: &RegistrationRequest,
        env: &Signed,
    ) -> Result<RegistrationEntry, NodeError> {
        let r = &current.registration;
        Ok(RegistrationEntry {
            request: EnvelopeRecord::from(env),
            op: String::new(),
            reg_id: current.reg_id.clone(),
            psn_no: req.psn_no.clone(),
            kind: r.kind.as_str().to_string(),
            target_admdvs: r.target_admdvs.map(|t| t.to_string()).unwrap_or_default(),
            begndate: r.begndate.map(|d| d.to_string()).unwrap_or_default(),
            enddate: r.enddate.map(|d| d.to_string()),
            cancelled: false,
        })
    }

    /// A long-term registration may be changed or cancelled only after the home
    /// policy's minimum holding period.
    fn check_holding_period(
        &self,
        current: &crate::settlement::Registration,
        req: &RegistrationRequest,
    ) -> Result<(), NodeError> {
        let on = date("on_date", &req.on_date)?;
        let Some(beg) = current.begndate else { return Ok(()) };
        let person = self
            .home()
            .person(&req.psn_no)
            .map_err(super::state_error)?
            .ok_or_else(|| NodeError::UnknownPerson(req.psn_no.clone()))?;
        let policy = self
            .rules
            .policy_for(person.insuplc_admdvs, person.insutype, on)
            .map(|p| p.registration_min_holding_days)
            .unwrap_or(0);
        if current.kind.is_long_term() && (on - beg).num_days() < i64::from(policy) {
            return Err(NodeError::HoldingPeriod(format!(
                "a {} registration can be changed or cancelled {policy} days after {beg}, not on {on}",
                current.kind.as_str()
            )));
        }
        Ok(())
    }

    /// A person's registrations.
    /// A signed query of a person's registrations: by an admin of this node,
    /// or by a peer node for one of its hospitals (the person must be
    /// insured here). Anyone else, or an unsigned query, is refused before
    /// the body is decoded.
    pub fn query_registrations(&self, env: &Signed) -> Result<Vec<RegistrationRecord>, NodeError> {
        if env.signature.is_empty() {
            return Err(NodeError::Unsigned);
        }
        let q: crate::proto::RegistrationQuery = if let Some(admin) = self.config.admins.get(&env.signer) {
            envelope::open(env, admin, envelope::REGISTRATION_QUERY_DOMAIN)
                .map_err(|e| NodeError::BadSignature(format!("admin {}: {e}", env.signer)))?
        } else {
            let peer =
                crate::region::RegionCode::parse(&env.signer).ok().and_then(|r| self.config.peers.get(&r)).ok_or_else(
                    || NodeError::NotAuthorised(format!("{:?} may not query registrations here", env.signer)),
                )?;
            let q: crate::proto::RegistrationQuery =
                envelope::open(env, &peer.public_key, envelope::REGISTRATION_QUERY_DOMAIN)
                    .map_err(|e| NodeError::BadSignature(format!("{}: {e}", peer.region)))?;
            if q.fixmedins_code.is_empty() {
                return Err(NodeError::bad("fixmedins_code", "a peer node asks for one of its hospitals"));
            }
            q
        };
        if !self.home().has_person(&q.psn_no).map_err(super::state_error)? {
            return Err(NodeError::UnknownPerson(q.psn_no));
        }
        self.registrations_of(&q.psn_no)
    }

    pub fn registrations_of(&self, psn_no: &str) -> Result<Vec<RegistrationRecord>, NodeError> {
        let regs = self.home().registrations(psn_no).map_err(super::state_error)?;
        Ok(regs
            .into_iter()
            .map(|r| RegistrationRecord {
                kind: r.registration.kind.as_str().to_string(),
                target_admdvs: r.registration.target_admdvs.map(|t| t.to_string()).unwrap_or_default(),
                begndate: r.registration.begndate.map(|d| d.to_string()).unwrap_or_default(),
                enddate: r.registration.enddate.map(|d| d.to_string()).unwrap_or_default(),
                cancelled: r.cancelled,
                reg_id: r.reg_id,
                psn_no: r.psn_no,
            })
            .collect())
    }

    /// A person's year-to-date counters (for operators and tests).
    pub fn counters_of(&self, psn_no: &str, year: i32) -> Result<crate::settlement::Counters, NodeError> {
        self.home().counters(psn_no, year).map_err(super::state_error)
    }
}

fn record(e: &RegistrationEntry) -> RegistrationRecord {
    RegistrationRecord {
        reg_id: e.reg_id.clone(),
        psn_no: e.psn_no.clone(),
        kind: e.kind.clone(),
        target_admdvs: e.target_admdvs.clone(),
        begndate: e.begndate.clone(),
        enddate: e.enddate.clone().unwrap_or_default(),
        cancelled: e.cancelled,
    }
}
