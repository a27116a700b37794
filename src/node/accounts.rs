//! A person's chronic-disease qualifications (慢特病资格认定) and personal
//! account (职工个人账户) changed while the node runs, by an admin's signed
//! request on the ledger: a qualification granted or ended, an account
//! credited (e.g. the monthly allocation). Each request is applied once per
//! msgid, under the person's lock, in ledger order.

use std::sync::Arc;

use super::records::{to_hex, to_payload, AccountCreditEntry, EnvelopeRecord, QualificationEntry, QualificationRecord};
use super::state::qualification_from_record;
use super::{ledger_error, Node};
use crate::api::convert::{amount, date, dise_codg, msgid};
use crate::api::envelope::ADMIN_DOMAIN;
use crate::api::NodeError;
use crate::ledger::{EntryKind, LedgerError};
use crate::med_type::MedType;
use crate::money::Amount;
use crate::proto::{qualification_request::Op, AccountCreditRequest, PersonState, QualificationRequest, Signed};
use crate::rules::Insutype;
use crate::settlement::Person;

/// Largest single credit to a personal account, in yuan.
pub const MAX_ACCOUNT_CREDIT_YUAN: i64 = 1_000_000;
/// Longest reason a credit may carry.
pub const MAX_REASON_LEN: usize = 200;

/// The qualification held for the disease, ended on `enddate`: not before it
/// began, and not after the end it already has (an end never extends it).
fn ended(req: &QualificationRequest, person: &Person, code: String) -> Result<QualificationRecord, NodeError> {
    let held = person
        .chronic
        .iter()
        .find(|q| q.dise_codg == code)
        .ok_or_else(|| NodeError::bad("dise_codg", format!("{} holds no qualification for {code}", req.psn_no)))?;
    let last = date("enddate", &req.enddate)?;
    if let Some(held_end) = held.enddate.filter(|e| last > *e) {
        return Err(NodeError::bad(
            "enddate",
            format!("{last} is after the qualification's end {held_end}; grant anew to extend it"),
        ));
    }
    if last < held.begndate {
        return Err(NodeError::bad(
            "enddate",
            format!("{last} is before the qualification's begndate {}", held.begndate),
        ));
    }
    Ok(QualificationRecord {
        dise_codg: code,
        begndate: held.begndate.format("%Y-%m-%d").to_string(),
        enddate: Some(req.enddate.clone()),
    })
}

impl Node {
    /// Grants or ends a chronic-disease qualification (to completion).
    pub async fn qualify(self: &Arc<Self>, env: Signed) -> Result<PersonState, NodeError> {
        let node = Arc::clone(self);
        super::run_to_completion("qualification", async move { node.qualify_now(env).await }).await
    }

    /// Credits an employee's personal account (to completion).
    pub async fn credit_account(self: &Arc<Self>, env: Signed) -> Result<PersonState, NodeError> {
        let node = Arc::clone(self);
        super::run_to_completion("account credit", async move { node.credit_now(env).await }).await
    }

    async fn qualify_now(&self, env: Signed) -> Result<PersonState, NodeError> {
        let req: QualificationRequest = self.open_as_admin(&env, ADMIN_DOMAIN)?;
        msgid("msgid", &req.msgid)?;
        let code = dise_codg("dise_codg", &req.dise_codg, MedType::ChronicOutpatient)?.unwrap_or_default();
        let _lock = self.person_lock(&req.psn_no).lock().await;
        let person = self.read_person(&req.psn_no)?;
        let qualification = match Op::try_from(req.op).unwrap_or(Op::Unspecified) {
            Op::Grant => self.granted(&req, &person, code)?,
            Op::End => ended(&req, &person, code)?,
            Op::Unspecified => return Err(NodeError::bad("op", "unknown operation (GRANT or END)")),
        };
        let parsed = qualification_from_record(&qualification).map_err(|m| NodeError::bad("qualification", m))?;
        if !person.chronic.iter().any(|q| q.dise_codg == parsed.dise_codg)
            && person.chronic.len() >= super::state::MAX_QUALIFICATIONS
        {
            return Err(NodeError::bad("dise_codg", format!("{} already holds the most qualifications", req.psn_no)));
        }
        let entry =
            QualificationEntry { request: EnvelopeRecord::from(&env), psn_no: req.psn_no.clone(), qualification };
        let key = super::keys::qualification(&env.signer, &req.msgid);
        if self.append_once(EntryKind::ChronicQualification, &key, to_payload(&entry), &env, &req.msgid).await? {
            self.apply_home()?;
        }
        self.person_state(&req.psn_no)
    }

    /// The qualification a grant gives: a disease the home policy lists, in
    /// force from `begndate` (to `enddate`, if given).
    fn granted(
        &self,
        req: &QualificationRequest,
        person: &Person,
        code: String,
    ) -> Result<QualificationRecord, NodeError> {
        let begndate = date("begndate", &req.begndate)?;
        // Only a disease the home policy lists can be settled as one.
        let listed = self
            .rules
            .policy_for(person.insuplc_admdvs, person.insutype, begndate)
            .map(|p| p.chronic.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        if !listed.contains(&code) {
            return Err(NodeError::bad(
                "dise_codg",
                format!(
                    "{code} is not a chronic disease of the home policy in force on {begndate} ({})",
                    listed.join(", ")
                ),
            ));
        }
        let enddate = if req.enddate.is_empty() { None } else { Some(date("enddate", &req.enddate)?) };
        if enddate.is_some_and(|e| e < begndate) {
            return Err(NodeError::bad("enddate", format!("{} is before begndate {begndate}", req.enddate)));
        }
        Ok(QualificationRecord {
            dise_codg: code,
            begndate: req.begndate.clone(),
            enddate: enddate.map(|_| req.enddate.clone()),
        })
    }

    async fn credit_now(&self, env: Signed) -> Result<PersonState, NodeError> {
        let req: AccountCreditRequest = self.open_as_admin(&env, ADMIN_DOMAIN)?;
        msgid("msgid", &req.msgid)?;
        let credit = amount("amount", &req.amount)?;
        let max = Amount::yuan(MAX_ACCOUNT_CREDIT_YUAN);
        if credit == Amount::ZERO || credit > max {
            return Err(NodeError::bad("amount", format!("a credit is more than 0.00 and at most {max}")));
        }
        if req.reason.chars().count() > MAX_REASON_LEN {
            return Err(NodeError::bad("reason", format!("longer than {MAX_REASON_LEN} characters")));
        }
        let _lock = self.person_lock(&req.psn_no).lock().await;
        let person = self.read_person(&req.psn_no)?;
        if person.insutype != Insutype::Employee {
            return Err(NodeError::bad(
                "psn_no",
                format!("{} is insured as a resident (390); only employees (310) have personal accounts", req.psn_no),
            ));
        }
        let entry = AccountCreditEntry {
            request: EnvelopeRecord::from(&env),
            psn_no: req.psn_no.clone(),
            amount: credit,
            reason: req.reason.clone(),
        };
        let key = super::keys::account_credit(&env.signer, &req.msgid);
        if self.append_once(EntryKind::AccountCredit, &key, to_payload(&entry), &env, &req.msgid).await? {
            self.apply_home()?;
        }
        self.person_state(&req.psn_no)
    }

    /// Appends an admin request's entry; `false` when this very request was
    /// applied before (a retry), an error when its msgid carried another.
    async fn append_once(
        &self,
        kind: EntryKind,
        key: &str,
        payload: Vec<u8>,
        env: &Signed,
        msgid: &str,
    ) -> Result<bool, NodeError> {
        if let Some(stored) = self.ledger.entry_by_key(key).map_err(ledger_error)? {
            let same = serde_json::from_slice::<serde_json::Value>(&stored.body.payload)
                .ok()
                .and_then(|v| v.pointer("/request/body").and_then(|b| b.as_str()).map(|b| b == to_hex(&env.body)));
            return if same == Some(true) { Ok(false) } else { Err(NodeError::MsgidReused(msgid.to_string())) };
        }
        match self.ledger.append(kind, key, payload).await {
            Ok(a) => Ok(!a.existing),
            Err(LedgerError::IdempotencyConflict { .. }) => Err(NodeError::MsgidReused(msgid.to_string())),
            Err(e) => Err(ledger_error(e)),
        }
    }

    /// An insured person as the node holds them now.
    pub fn read_person(&self, psn_no: &str) -> Result<Person, NodeError> {
        self.home()
            .person(psn_no)
            .map_err(super::state_error)?
            .ok_or_else(|| NodeError::UnknownPerson(psn_no.to_string()))
    }

    /// A person's qualifications and balance, as the node holds them now.
    pub fn person_state(&self, psn_no: &str) -> Result<PersonState, NodeError> {
        let person = self.home().person(psn_no).map_err(super::state_error)?;
        let balance = self.home().balance(psn_no).map_err(super::state_error)?;
        let person = person.ok_or_else(|| NodeError::UnknownPerson(psn_no.to_string()))?;
        Ok(PersonState {
            psn_no: psn_no.to_string(),
            acct_balance: balance.to_string(),
            chronic: person
                .chronic
                .iter()
                .map(|q| crate::proto::ChronicQualificationRecord {
                    dise_codg: q.dise_codg.clone(),
                    begndate: q.begndate.format("%Y-%m-%d").to_string(),
                    enddate: q.enddate.map(|e| e.format("%Y-%m-%d").to_string()).unwrap_or_default(),
                })
                .collect(),
        })
    }
}
