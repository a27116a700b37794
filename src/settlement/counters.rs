//! A person's year-to-date counters at home, and how a settlement moves them
//! (and the employee's personal account, which is not reset by the year).

use std::collections::BTreeMap;

use crate::money::Amount;

/// Year-to-date figures of one person at the home region.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    /// Basic fund paid this year for stays and chronic diseases.
    pub hifp_paid: Amount,
    /// Cumulative in-scope self-pay: the critical-illness base.
    pub ci_base: Amount,
    /// Critical illness paid this year (hifmi or hifob).
    pub ci_paid: Amount,
    /// Medical assistance paid this year.
    pub maf_paid: Amount,
    /// Annual outpatient deductible used (门诊起付线).
    #[serde(default)]
    pub op_dedc_used: Amount,
    /// Outpatient pooling paid this year.
    #[serde(default)]
    pub op_paid: Amount,
    /// Basic fund paid this year per chronic disease (`dise_codg`).
    #[serde(default)]
    pub chronic_paid: BTreeMap<String, Amount>,
}

/// What one settlement paid towards one chronic disease's annual cap.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChronicDelta {
    pub dise_codg: String,
    pub paid: Amount,
}

/// How one settlement moves the counters and the personal account. New
/// fields are left out of the JSON when zero, so a stay's record reads as before.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct CounterDelta {
    pub hifp_paid: Amount,
    pub ci_base: Amount,
    pub ci_paid: Amount,
    pub maf_paid: Amount,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub op_dedc_used: Amount,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub op_paid: Amount,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chronic: Option<ChronicDelta>,
    /// Paid from the personal account: the balance goes down by this much.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub acct_pay: Amount,
}

fn is_zero(a: &Amount) -> bool {
    *a == Amount::ZERO
}

impl Counters {
    pub fn plus(&self, d: &CounterDelta) -> Counters {
        let mut chronic_paid = self.chronic_paid.clone();
        if let Some(c) = &d.chronic {
            let paid = chronic_paid.entry(c.dise_codg.clone()).or_insert(Amount::ZERO);
            *paid = *paid + c.paid;
            if *paid == Amount::ZERO {
                chronic_paid.remove(&c.dise_codg);
            }
        }
        Counters {
            hifp_paid: self.hifp_paid + d.hifp_paid,
            ci_base: self.ci_base + d.ci_base,
            ci_paid: self.ci_paid + d.ci_paid,
            maf_paid: self.maf_paid + d.maf_paid,
            op_dedc_used: self.op_dedc_used + d.op_dedc_used,
            op_paid: self.op_paid + d.op_paid,
            chronic_paid,
        }
    }

    /// Undoes a delta: what a reversal does.
    pub fn minus(&self, d: &CounterDelta) -> Counters {
        self.plus(&d.negated())
    }

    /// Paid so far towards one disease's annual cap.
    pub fn chronic_paid_for(&self, dise_codg: &str) -> Amount {
        self.chronic_paid.get(dise_codg).copied().unwrap_or(Amount::ZERO)
    }
}

impl CounterDelta {
    /// The exact opposite movement: a reversal's.
    pub fn negated(&self) -> CounterDelta {
        CounterDelta {
            hifp_paid: -self.hifp_paid,
            ci_base: -self.ci_base,
            ci_paid: -self.ci_paid,
            maf_paid: -self.maf_paid,
            op_dedc_used: -self.op_dedc_used,
            op_paid: -self.op_paid,
            chronic: self.chronic.as_ref().map(|c| ChronicDelta { dise_codg: c.dise_codg.clone(), paid: -c.paid }),
            acct_pay: -self.acct_pay,
        }
    }
}
