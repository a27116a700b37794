//! Institutions' money in the simulation: after each final statement the
//! treatment nodes' reviewers refuse part of a sampled settlement now and
//! then (拒付), and the invariants are checked across months, restarts and
//! disputes: **each refusal is cleared between the regions exactly once, in
//! the month it chose**; **a region's institutions' statements of a month
//! state exactly what that month's final statement clears to the region**
//! (settled) and deduct exactly its refusals; **over the run each
//! institution's `payable + held still outstanding = settled − deducted`**, to
//! the fen.

use std::collections::BTreeMap;

use rand::Rng;

use super::world::key;
use super::Sim;
use crate::api::envelope::{seal, AUDIT_DOMAIN};
use crate::clearing::hospital::HospitalStatement;
use crate::clearing::{Line, Month, Statement};
use crate::money::Amount;
use crate::proto::{AuditReviewRequest, AuditSampleRequest};
use crate::region::RegionCode;

/// A refusal a reviewer recorded, not yet seen cleared.
#[derive(Debug, Clone)]
pub(super) struct Refusal {
    pub home: RegionCode,
    pub treatment: RegionCode,
    pub amount: Amount,
    pub clearing_month: Month,
}

/// What a final month's statements at each treatment region must state:
/// (settled, deducted).
pub(super) type Expected = BTreeMap<RegionCode, (Amount, Amount)>;

#[derive(Debug, Default)]
pub(super) struct Books {
    /// setl_id -> its refusal, until a statement clears it.
    pub refusals: BTreeMap<String, Refusal>,
    /// Refusals cleared.
    pub refusals_cleared: u64,
    /// Final months whose institutions' statements are still to check.
    pub due: BTreeMap<Month, Expected>,
    /// Institutions' statements checked.
    pub statements_checked: u64,
    /// Refusals tried on settlements reversed or held out, and refused.
    pub not_refusable: u64,
    /// The operator's adjustments naming a settlement, by the month they enter:
    /// setl_id -> (treatment, amount).
    pub operator_adjusted: BTreeMap<Month, BTreeMap<String, (RegionCode, Amount)>>,
}

impl Sim {
    /// The adjustments `s` must carry beyond the operator's own: the
    /// refusals that chose its month.
    pub(super) fn refusals_clearing_in(&self, month: Month) -> Vec<crate::clearing::netting::Adjustment> {
        self.books
            .refusals
            .iter()
            .filter(|(_, r)| r.clearing_month == month)
            .map(|(id, r)| crate::clearing::netting::Adjustment {
                home: r.home,
                treatment: r.treatment,
                amount: -r.amount,
                reason: String::new(),
                setl_id: Some(id.clone()),
            })
            .collect()
    }

    /// Files the refusals a final statement clears (each once, in its own
    /// month) and what its institutions' statements must say.
    pub(super) fn record_final_refusals(
        &mut self,
        s: &Statement,
        cleared: &BTreeMap<String, Line>,
    ) -> Result<(), String> {
        let mut expected = Expected::new();
        for l in cleared.values() {
            let e = expected.entry(l.treatment).or_default();
            e.0 = e.0 + l.amounts.owed();
        }
        let mut by_operator = self.books.operator_adjusted.remove(&s.month).unwrap_or_default();
        for a in s.adjustments.iter().filter(|a| a.setl_id.is_some()) {
            let id = a.setl_id.clone().unwrap_or_default();
            if let Some((treatment, amount)) = by_operator.remove(&id) {
                if (a.treatment, a.amount) != (treatment, amount) {
                    return Err(format!("{}: the operator's adjustment of {id} cleared as {a:?}", s.month));
                }
                let e = expected.entry(treatment).or_default();
                e.1 = e.1 - amount;
                continue;
            }
            let r =
                self.books.refusals.remove(&id).ok_or_else(|| {
                    format!("{}: an adjustment of {id} no reviewer refused (or cleared twice)", s.month)
                })?;
            if r.clearing_month != s.month || a.amount != -r.amount || (a.home, a.treatment) != (r.home, r.treatment) {
                return Err(format!("{}: the refusal of {id} cleared as {a:?}, recorded as {r:?}", s.month));
            }
            self.books.refusals_cleared += 1;
            let e = expected.entry(r.treatment).or_default();
            e.1 = e.1 + r.amount;
        }
        if let Some(id) = by_operator.keys().next() {
            return Err(format!("{}: the operator's adjustment of {id} is not in the statement", s.month));
        }
        if let Some((id, r)) = self.books.refusals.iter().find(|(_, r)| r.clearing_month <= s.month) {
            return Err(format!(
                "{}: the refusal of {id} ({}) is not in its month's statement",
                s.month, r.clearing_month
            ));
        }
        self.books.due.insert(s.month, expected);
        Ok(())
    }

    /// Now and then a treatment node's reviewer refuses part of the first
    /// settlement of its sample of `month` (once its sample is drawn).
    pub(super) async fn review_some(&mut self, month: Month) -> Result<(), String> {
        for region in self.world.nodes.keys().copied().collect::<Vec<_>>() {
            if !self.rng.gen_bool(0.3) {
                continue;
            }
            let node = self.world.node(region)?.clone();
            let ask = AuditSampleRequest { month: month.to_string(), page: 0 };
            let Ok(page) = node.audit_sample(&seal(&key("agency"), AUDIT_DOMAIN, "agency", &ask)) else {
                continue; // not drawn yet: the final notice has not reached it
            };
            let Some(item) = page.items.into_iter().find(|i| i.outcome.is_empty()) else { continue };
            let paid = Amount::parse_non_negative(&item.fund_pay_sumamt).map_err(|e| e.to_string())?
                + Amount::parse_non_negative(&item.acct_pay).map_err(|e| e.to_string())?;
            if paid == Amount::ZERO {
                continue;
            }
            let cents = i64::try_from((paid.as_decimal() * rust_decimal::Decimal::ONE_HUNDRED).trunc().mantissa())
                .unwrap_or(1)
                .max(1);
            let amount = Amount::round_half_up(rust_decimal::Decimal::new(self.rng.gen_range(1..=cents), 2));
            let req = AuditReviewRequest {
                msgid: format!("audit-{month}-{}", item.setl_id),
                month: month.to_string(),
                setl_id: item.setl_id.clone(),
                refused: true,
                amount: amount.to_string(),
                reason: "charges not supported by the record".into(),
            };
            let answer = match node.review(seal(&key("agency"), AUDIT_DOMAIN, "agency", &req)).await {
                Ok(a) => a,
                // Not paid by the home region: not refusable, rightly.
                Err(e)
                    if e.reason() == "bad_request"
                        && (e.to_string().contains("reversed") || e.to_string().contains("held out")) =>
                {
                    self.books.not_refusable += 1;
                    continue;
                }
                Err(e) => return Err(format!("{region} reviewing {}: {e}", item.setl_id)),
            };
            let clearing_month = Month::parse(&answer.clearing_month).ok_or("clearing month")?;
            if clearing_month <= month {
                return Err(format!("{region}: a refusal of {month}'s sample clears in {clearing_month}"));
            }
            let home = RegionCode::parse(&item.home).map_err(|e| e.to_string())?;
            self.books.refusals.insert(item.setl_id, Refusal { home, treatment: region, amount, clearing_month });
        }
        Ok(())
    }

    /// Now and then the operator deducts part of a settlement `month`
    /// cleared, naming it, in the next month (still open).
    pub(super) async fn adjust_some(&mut self, month: Month) -> Result<(), String> {
        if !self.rng.gen_bool(0.2) {
            return Ok(());
        }
        let lines = self.model.home_lines();
        let candidates: Vec<&Line> = lines
            .values()
            .filter(|l| self.cleared.get(&l.setl_id) == Some(&month) && l.amounts.owed() > Amount::ZERO)
            .collect();
        if candidates.is_empty() {
            return Ok(());
        }
        let line = candidates[self.rng.gen_range(0..candidates.len())].clone();
        let amount = -Amount::round_half_up(rust_decimal::Decimal::new(self.rng.gen_range(1..=100), 2));
        let adjustment = crate::clearing::netting::Adjustment {
            home: line.home,
            treatment: line.treatment,
            amount,
            reason: "overbilled, found in a later inspection".into(),
            setl_id: Some(line.setl_id.clone()),
        };
        let into = month.next();
        self.world.operator.adjust(into, adjustment).await.map_err(|e| format!("adjusting {}: {e}", line.setl_id))?;
        self.books.operator_adjusted.entry(into).or_default().insert(line.setl_id, (line.treatment, amount));
        Ok(())
    }

    /// Checks every due month whose statements the nodes have issued (all
    /// of them when `all`: the nodes are asked to finish first).
    pub(super) async fn check_institution_statements(&mut self, all: bool) -> Result<(), String> {
        if all {
            for node in self.world.nodes.values() {
                node.after_final().await.map_err(|e| format!("{}: statements: {e}", node.region()))?;
            }
        }
        let due: Vec<Month> = self.books.due.keys().copied().collect();
        for month in due {
            let mut issued = true;
            let mut got = Expected::new();
            for (region, node) in &self.world.nodes {
                for code in node.config.hospitals.keys() {
                    match node.hospital_statement(code, month).map_err(|e| e.to_string())? {
                        None => issued = false,
                        Some(signed) => {
                            let s = crate::node::hospital_statements::open_statement(&signed, &node.public_key())?;
                            let e = got.entry(*region).or_default();
                            *e = (e.0 + s.settled, e.1 + s.deductions);
                        }
                    }
                }
            }
            if !issued {
                if all {
                    return Err(format!("{month}: institutions' statements missing after every node finished"));
                }
                continue;
            }
            let expected = self.books.due.remove(&month).unwrap_or_default();
            let nonzero = |m: &Expected| -> Expected {
                m.iter().filter(|(_, v)| **v != (Amount::ZERO, Amount::ZERO)).map(|(k, v)| (*k, *v)).collect()
            };
            if nonzero(&got) != nonzero(&expected) {
                return Err(format!(
                    "{month}: institutions' statements (settled, deducted) {:?}, the final statement clears {:?}",
                    nonzero(&got),
                    nonzero(&expected)
                ));
            }
            self.books.statements_checked += 1;
        }
        if all {
            self.check_institution_years()?;
        }
        Ok(())
    }

    /// Over every month each institution was stated: payable plus what is
    /// still held equals settled less deducted.
    fn check_institution_years(&self) -> Result<(), String> {
        for node in self.world.nodes.values() {
            for code in node.config.hospitals.keys() {
                let (mut payable, mut settled, mut deducted, mut forfeited) =
                    (Amount::ZERO, Amount::ZERO, Amount::ZERO, Amount::ZERO);
                let mut last: Option<HospitalStatement> = None;
                let mut month = Month::parse("2000-01").ok_or("month")?;
                for m in node.final_months() {
                    let Some(signed) = node.hospital_statement(code, m).map_err(|e| e.to_string())? else {
                        return Err(format!("{code}: no statement of {m}"));
                    };
                    let s = crate::node::hospital_statements::open_statement(&signed, &node.public_key())?;
                    if m <= month {
                        return Err(format!("{code}: statements out of order"));
                    }
                    month = m;
                    payable = payable + s.payable;
                    settled = settled + s.settled;
                    deducted = deducted + s.deductions;
                    forfeited = forfeited + s.forfeited;
                    last = Some(s);
                }
                let outstanding = last.map_or(Amount::ZERO, |s| s.after.outstanding);
                if payable + forfeited + outstanding != settled - deducted {
                    return Err(format!(
                        "{code}: paid {payable} + forfeited {forfeited} + held {outstanding} ≠ settled {settled} − deducted {deducted}"
                    ));
                }
            }
        }
        Ok(())
    }
}
