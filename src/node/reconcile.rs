//! Reconciliation with an institution (对账), in the national platform's
//! style: the institution sends its totals for a clearing month (like 3201)
//! and, when they differ, its detail list (like 3202); the node answers
//! balanced or names each difference. Read-only: nothing is recorded.

use std::ops::ControlFlow;

use super::clearing_side::{line_of, Side};
use super::{ledger_error, Node};
use crate::api::envelope::{self, RECONCILE_DOMAIN};
use crate::api::NodeError;
use crate::clearing::hospital::{reconcile, Detail, Difference, ReconTotals};
use crate::clearing::Month;
use crate::money::Amount;
use crate::proto::{ReconcileAnswer, ReconcileDifference, ReconcileRequest, ReconcileTotals, Signed};

/// Most details one request may carry (a month of a busy institution goes
/// in several months' requests, or by totals alone).
pub const MAX_RECONCILE_DETAILS: usize = 5_000;

fn amount(field: &str, text: &str) -> Result<Amount, NodeError> {
    crate::api::convert::signed_amount(field, text)
}

fn totals_from(t: Option<&ReconcileTotals>) -> Result<ReconTotals, NodeError> {
    let t = t.ok_or_else(|| NodeError::bad("totals", "missing"))?;
    Ok(ReconTotals {
        count: t.count,
        medfee_sumamt: amount("totals.medfee_sumamt", &t.medfee_sumamt)?,
        fund_pay_sumamt: amount("totals.fund_pay_sumamt", &t.fund_pay_sumamt)?,
        acct_pay: amount("totals.acct_pay", &t.acct_pay)?,
    })
}

fn totals_to(t: &ReconTotals) -> ReconcileTotals {
    ReconcileTotals {
        count: t.count,
        medfee_sumamt: t.medfee_sumamt.to_string(),
        fund_pay_sumamt: t.fund_pay_sumamt.to_string(),
        acct_pay: t.acct_pay.to_string(),
    }
}

fn difference(d: Difference) -> ReconcileDifference {
    match d {
        Difference::Total { field, node, institution } => {
            ReconcileDifference { kind: "total".into(), field, node, institution, ..Default::default() }
        }
        Difference::MissingAtInstitution { setl_id, msgid } => {
            ReconcileDifference { kind: "missing_at_institution".into(), setl_id, msgid, ..Default::default() }
        }
        Difference::MissingAtNode { setl_id, msgid } => {
            ReconcileDifference { kind: "missing_at_node".into(), setl_id, msgid, ..Default::default() }
        }
        Difference::AmountDiffers { setl_id, field, node, institution } => ReconcileDifference {
            kind: "amount_differs".into(),
            setl_id,
            field,
            node,
            institution,
            ..Default::default()
        },
    }
}

impl Node {
    /// The institution's checked request: signed by it, for itself.
    pub fn reconcile_request(&self, env: &Signed) -> Result<ReconcileRequest, NodeError> {
        if env.signature.is_empty() {
            return Err(NodeError::Unsigned);
        }
        let hospital =
            self.config.hospitals.get(&env.signer).ok_or_else(|| NodeError::UnknownHospital(env.signer.clone()))?;
        let req: ReconcileRequest = envelope::open(env, &hospital.public_key, RECONCILE_DOMAIN)
            .map_err(|e| NodeError::BadSignature(format!("{}: {e}", hospital.code)))?;
        if req.fixmedins_code != hospital.code {
            return Err(NodeError::NotAuthorised(format!(
                "{} cannot reconcile for {:?}",
                hospital.code, req.fixmedins_code
            )));
        }
        if req.details.len() > MAX_RECONCILE_DETAILS {
            return Err(NodeError::bad(
                "details",
                format!("{} details (at most {MAX_RECONCILE_DETAILS}); send totals first", req.details.len()),
            ));
        }
        Month::parse(&req.month).ok_or_else(|| NodeError::bad("month", format!("{:?} is not YYYY-MM", req.month)))?;
        Ok(req)
    }

    /// The answer to a checked request. Reads the month's part of the ledger
    /// (the gRPC service runs it on a blocking thread).
    pub fn reconcile(&self, req: &ReconcileRequest) -> Result<ReconcileAnswer, NodeError> {
        let month = Month::parse(&req.month).ok_or_else(|| NodeError::bad("month", "not YYYY-MM"))?;
        let totals = totals_from(req.totals.as_ref())?;
        let details = match req.with_details {
            true => Some(
                req.details
                    .iter()
                    .enumerate()
                    .map(|(i, d)| {
                        Ok(Detail {
                            setl_id: d.setl_id.clone(),
                            msgid: d.msgid.clone(),
                            medfee_sumamt: amount(&format!("details[{i}].medfee_sumamt"), &d.medfee_sumamt)?,
                            fund_pay_sumamt: amount(&format!("details[{i}].fund_pay_sumamt"), &d.fund_pay_sumamt)?,
                            acct_pay: amount(&format!("details[{i}].acct_pay"), &d.acct_pay)?,
                        })
                    })
                    .collect::<Result<Vec<_>, NodeError>>()?,
            ),
            false => None,
        };
        let ours = self.institution_details(&req.fixmedins_code, month)?;
        let differences = reconcile(&ours, &totals, details.as_deref());
        Ok(ReconcileAnswer {
            balanced: differences.is_empty(),
            node_totals: Some(totals_to(&ReconTotals::of(&ours))),
            differences: differences.into_iter().map(difference).collect(),
        })
    }

    /// The institution's settlements and reversals cleared in `month`, as
    /// this (treatment) node recorded them, in ledger order.
    pub fn institution_details(&self, code: &str, month: Month) -> Result<Vec<Detail>, NodeError> {
        let first = self.first_line_index(month, [])?;
        let Some(first) = first else { return Ok(Vec::new()) };
        let own = self.region();
        let mut out = Vec::new();
        self.ledger
            .scan(first, |e| {
                let Some((hospital, msgid)) = super::keys::outcome_parts(&e.body.key) else {
                    return Ok(ControlFlow::Continue(()));
                };
                if hospital != code {
                    return Ok(ControlFlow::Continue(()));
                }
                if let Some((Side::AsTreatment, line)) = line_of(e.body.kind, &e.body.key, &e.body.payload, own) {
                    if line.month == month {
                        out.push(Detail {
                            setl_id: line.setl_id,
                            msgid: msgid.to_string(),
                            medfee_sumamt: line.amounts.medfee_sumamt,
                            fund_pay_sumamt: line.amounts.fund_pay_sumamt,
                            acct_pay: line.amounts.acct_pay,
                        });
                    }
                }
                Ok(ControlFlow::Continue(()))
            })
            .map_err(ledger_error)?;
        Ok(out)
    }
}
