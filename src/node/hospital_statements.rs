//! Institutions' monthly statements (医疗机构月度结算单): once a month's
//! clearing statement is final, the treatment node states to each of its
//! hospitals and pharmacies what it pays them for that month — the
//! out-of-region settlements that cleared in it (the month's own lines less
//! those the statement held out, plus earlier months' lines it cleared), less
//! the quality holdback, plus holdback released, less the deductions (拒付)
//! the statement's adjustments make on their settlements — signed, on the
//! ledger, in month order. The figures come from [`crate::clearing::hospital`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};

use super::clearing_side::{line_of, Side};
use super::records::{to_payload, EnvelopeRecord};
use super::{ledger_error, Node};
use crate::api::envelope::{self, HOSPITAL_STATEMENT_DOMAIN, HOSPITAL_STATEMENT_REQUEST_DOMAIN};
use crate::api::NodeError;
use crate::clearing::hospital::{
    hospital_statement, Deduction, HoldbackAccount, HospitalLine, HospitalMonth, HospitalStatement,
};
use crate::clearing::{Month, Statement};
use crate::ledger::EntryKind;
use crate::proto::{HospitalStatementRequest, Signed};

/// An institution's statement as its node keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HospitalStatementEntry {
    /// Signed by the node ([`HOSPITAL_STATEMENT_DOMAIN`]); the body is the
    /// statement's JSON.
    pub statement: EnvelopeRecord,
    pub fixmedins_code: String,
    pub month: Month,
    /// The holdback account after this statement.
    pub after: HoldbackAccount,
}

/// What the node has stated: each institution's latest statement, and the
/// months whose final statement it holds. Bounded by the institutions and
/// the months run.
#[derive(Debug, Default)]
pub struct Issued {
    last: HashMap<String, (Month, HoldbackAccount)>,
    finals: BTreeSet<Month>,
}

impl Issued {
    /// Replays one ledger entry.
    pub fn note(&mut self, kind: EntryKind, key: &str, payload: &[u8]) {
        match kind {
            EntryKind::HospitalStatement => {
                if let Ok(e) = serde_json::from_slice::<HospitalStatementEntry>(payload) {
                    let last = self.last.entry(e.fixmedins_code).or_insert((e.month, e.after));
                    if last.0 <= e.month {
                        *last = (e.month, e.after);
                    }
                }
            }
            EntryKind::FinalStatement => {
                if let Some(m) = key.strip_prefix("final:").and_then(Month::parse) {
                    self.finals.insert(m);
                }
            }
            _ => {}
        }
    }

    /// The final months after `code`'s latest statement.
    fn due(&self, code: &str) -> impl Iterator<Item = Month> + '_ {
        let after = self.last.get(code).map(|(m, _)| *m);
        self.finals.iter().copied().filter(move |m| after.is_none_or(|a| *m > a))
    }

    pub fn months_with_finals(&self) -> Vec<Month> {
        self.finals.iter().copied().collect()
    }
}

/// Decodes a clearing statement the operator signed (its JSON body).
pub(super) fn parse_statement(signed: &Signed) -> Result<Statement, NodeError> {
    serde_json::from_slice(&signed.body).map_err(|e| NodeError::Internal(format!("a held final statement: {e}")))
}

impl Node {
    pub(super) fn read_issued<T>(&self, f: impl FnOnce(&Issued) -> T) -> Result<T, NodeError> {
        self.issued.read().map(|i| f(&i)).map_err(|_| NodeError::Internal("statements lock poisoned".into()))
    }

    /// What a final month starts: its audit sample and its institutions'
    /// statements (each idempotent; run when a final statement arrives and
    /// at start). Returns (statements issued, settlements drawn).
    pub async fn after_final(&self) -> Result<(usize, usize), NodeError> {
        // Independent: one failing does not hold up the other.
        let drawn = self.draw_audit_samples().await;
        let issued = self.issue_hospital_statements().await;
        Ok((issued?, drawn?))
    }

    /// Issues every statement due: for each final month in order, each
    /// institution's statement it does not yet have. Idempotent (each is
    /// keyed by institution and month); run when a final statement arrives
    /// and at start, so one interrupted by a crash is finished. Returns how
    /// many it issued.
    pub async fn issue_hospital_statements(&self) -> Result<usize, NodeError> {
        let _alone = self.statements_lock.lock().await;
        let mut issued = 0;
        let months: BTreeSet<Month> = self
            .read_issued(|i| self.config.hospitals.keys().flat_map(|code| i.due(code).collect::<Vec<_>>()).collect())?;
        for month in months {
            issued += self.issue_month(month).await?;
        }
        Ok(issued)
    }

    async fn issue_month(&self, month: Month) -> Result<usize, NodeError> {
        let Some(signed) = self.final_statement(month)? else { return Ok(0) };
        let statement = parse_statement(&signed)?;
        let previous = match self.final_statement(month.previous())? {
            Some(s) => Some(parse_statement(&s)?),
            None => None,
        };
        let (mut lines, mut deductions) = self.cleared_for_institutions(&statement, previous.as_ref())?;
        let mut n = 0;
        for (code, institution) in &self.config.hospitals {
            let before = self.read_issued(|i| i.last.get(code).copied())?;
            if before.is_some_and(|(m, _)| m >= month) {
                continue;
            }
            let lines = lines.remove(code).unwrap_or_default();
            let deductions = deductions.remove(code).unwrap_or_default();
            let m = HospitalMonth {
                month,
                region: self.region(),
                fixmedins_code: code,
                credit_rated: institution.credit_rated,
                lines: &lines,
                deductions: &deductions,
                before: before.map(|(_, a)| a).unwrap_or_default(),
                assessment: institution.assessment,
            };
            let s = hospital_statement(&m, &self.config.holdback);
            let after = s.after;
            let body = serde_json::to_vec(&s).map_err(|e| NodeError::Internal(format!("statement JSON: {e}")))?;
            let signature = crate::crypto::sign(&self.key, HOSPITAL_STATEMENT_DOMAIN, &body).to_bytes().to_vec();
            let env = Signed { body, signature, signer: self.region().to_string(), batch: None };
            let entry = HospitalStatementEntry {
                statement: EnvelopeRecord::from(&env),
                fixmedins_code: code.clone(),
                month,
                after,
            };
            let key = super::keys::hospital_statement(code, month);
            let payload = to_payload(&entry);
            self.ledger.append(EntryKind::HospitalStatement, &key, payload.clone()).await.map_err(ledger_error)?;
            self.issued.write().map_err(|_| NodeError::Internal("statements lock poisoned".into()))?.note(
                EntryKind::HospitalStatement,
                &key,
                &payload,
            );
            n += 1;
        }
        tracing::info!(month = %month, statements = n, "institutions' statements issued");
        Ok(n)
    }

    /// The lines each institution's statement of `statement`'s month
    /// carries (this node's outcome lines that cleared in it), and the
    /// deductions its adjustments make on institutions' settlements.
    #[allow(clippy::type_complexity)]
    fn cleared_for_institutions(
        &self,
        statement: &Statement,
        previous: Option<&Statement>,
    ) -> Result<(HashMap<String, Vec<HospitalLine>>, HashMap<String, Vec<Deduction>>), NodeError> {
        let own = self.region();
        let month = statement.month;
        let held_out: HashSet<&str> =
            statement.pending.iter().filter(|p| p.pair.treatment == own).map(|p| p.setl_id.as_str()).collect();
        // Held out before and not now: cleared in this month, as lines of their own month.
        let carried: BTreeMap<&str, Month> = previous
            .map(|p| {
                p.pending
                    .iter()
                    .filter(|i| i.pair.treatment == own && !held_out.contains(i.setl_id.as_str()))
                    .map(|i| (i.setl_id.as_str(), i.since))
                    .collect()
            })
            .unwrap_or_default();
        // Every adjustment naming a settlement, each one deduction.
        let mut adjusted: HashMap<&str, Vec<&crate::clearing::netting::Adjustment>> = HashMap::new();
        for a in statement.adjustments.iter().filter(|a| a.treatment == own) {
            if let Some(id) = a.setl_id.as_deref() {
                adjusted.entry(id).or_default().push(a);
            }
        }
        let mut unmatched: HashSet<&str> = adjusted.keys().copied().collect();
        let first = self.first_line_index(month, carried.values().copied())?;
        // Adjusted settlements may be of any earlier month.
        let from = if adjusted.is_empty() { first } else { Some(0) };
        let mut lines: HashMap<String, Vec<HospitalLine>> = HashMap::new();
        let mut deductions: HashMap<String, Vec<Deduction>> = HashMap::new();
        let Some(from) = from else { return Ok((lines, deductions)) };
        self.ledger
            .scan(from, |e| {
                let Some((code, _)) = super::keys::outcome_parts(&e.body.key) else {
                    return Ok(ControlFlow::Continue(()));
                };
                let Some((Side::AsTreatment, line)) = line_of(e.body.kind, &e.body.key, &e.body.payload, own) else {
                    return Ok(ControlFlow::Continue(()));
                };
                let id = line.setl_id.as_str();
                if (line.month == month && !held_out.contains(id)) || carried.contains_key(id) {
                    lines.entry(code.to_string()).or_default().push(HospitalLine {
                        setl_id: line.setl_id.clone(),
                        home: line.home,
                        med_type: line.med_type,
                        medfee_sumamt: line.amounts.medfee_sumamt,
                        fund_pay: line.amounts.fund_pay_sumamt,
                        acct_pay: line.amounts.acct_pay,
                    });
                }
                for a in adjusted.get(id).into_iter().flatten() {
                    unmatched.remove(id);
                    deductions.entry(code.to_string()).or_default().push(Deduction {
                        amount: -a.amount,
                        reason: a.reason.clone(),
                        setl_id: Some(line.setl_id.clone()),
                    });
                }
                Ok(ControlFlow::Continue(()))
            })
            .map_err(ledger_error)?;
        // The regions settled these; no institution here is charged them.
        for id in unmatched {
            tracing::warn!(month = %month, setl_id = id, "an adjustment names a settlement no institution of this node made");
        }
        Ok((lines, deductions))
    }

    /// The months whose final statement this node holds.
    pub fn final_months(&self) -> Vec<Month> {
        self.read_issued(|i| i.months_with_finals()).unwrap_or_default()
    }

    /// An institution's statement of a month, as its node signed it.
    pub fn hospital_statement(&self, code: &str, month: Month) -> Result<Option<Signed>, NodeError> {
        let Some(e) = self.ledger.entry_by_key(&super::keys::hospital_statement(code, month)).map_err(ledger_error)?
        else {
            return Ok(None);
        };
        let entry: HospitalStatementEntry = serde_json::from_slice(&e.body.payload)
            .map_err(|e| NodeError::Internal(format!("statement entry: {e}")))?;
        entry.statement.to_signed().map(Some).ok_or_else(|| NodeError::Internal("statement entry: unreadable".into()))
    }

    /// An institution's signed request for its own statement of a month.
    pub fn handle_hospital_statement(&self, env: &Signed) -> Result<Signed, NodeError> {
        if env.signature.is_empty() {
            return Err(NodeError::Unsigned);
        }
        let institution =
            self.config.hospitals.get(&env.signer).ok_or_else(|| NodeError::UnknownHospital(env.signer.clone()))?;
        let req: HospitalStatementRequest =
            envelope::open(env, &institution.public_key, HOSPITAL_STATEMENT_REQUEST_DOMAIN)
                .map_err(|e| NodeError::BadSignature(format!("{}: {e}", institution.code)))?;
        if req.fixmedins_code != institution.code {
            return Err(NodeError::NotAuthorised(format!(
                "{} cannot read the statement of {:?}",
                institution.code, req.fixmedins_code
            )));
        }
        let month = Month::parse(&req.month)
            .ok_or_else(|| NodeError::bad("month", format!("{:?} is not YYYY-MM", req.month)))?;
        self.hospital_statement(&institution.code, month)?.ok_or_else(|| {
            NodeError::NoStatement(format!(
                "{} has no statement of {month} yet: it is issued once {month}'s clearing statement is final",
                institution.code
            ))
        })
    }
}

/// Reads a statement a node signed, checking its signature.
pub fn open_statement(signed: &Signed, node_key: &ed25519_dalek::VerifyingKey) -> Result<HospitalStatement, String> {
    envelope::verify(signed, node_key, HOSPITAL_STATEMENT_DOMAIN).map_err(|e| format!("the node's signature: {e}"))?;
    serde_json::from_slice(&signed.body).map_err(|e| format!("not a statement: {e}"))
}

/// A statement as CSV: one row per breakdown (totals, by medical type, by
/// home region), then the payment's lines.
pub fn statement_csv(s: &HospitalStatement) -> String {
    use crate::clearing::hospital::Totals;
    let mut out = String::from("section,key,count,medfee_sumamt,fund_pay,acct_pay\n");
    let row = |out: &mut String, section: &str, key: &str, t: &Totals| {
        out.push_str(&format!("{section},{key},{},{},{},{}\n", t.count, t.medfee_sumamt, t.fund_pay, t.acct_pay));
    };
    row(&mut out, "total", &s.fixmedins_code, &s.totals);
    for (k, t) in &s.by_med_type {
        row(&mut out, "med_type", k.as_str(), t);
    }
    for (k, t) in &s.by_home {
        row(&mut out, "home", &k.to_string(), t);
    }
    for (k, v) in [
        ("settled", s.settled),
        ("holdback", s.holdback),
        ("released", s.released),
        ("forfeited", s.forfeited),
        ("deductions", s.deductions),
        ("payable", s.payable),
        ("holdback_outstanding", s.after.outstanding),
    ] {
        out.push_str(&format!("payment,{k},,,{v},\n"));
    }
    out
}
