//! A person's year-to-date counters at home, and how a settlement moves them.

use crate::money::Amount;

/// Year-to-date figures of one person at the home region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    /// Basic fund paid this year.
    pub hifp_paid: Amount,
    /// Cumulative in-scope self-pay: the critical-illness base.
    pub ci_base: Amount,
    /// Critical illness paid this year (hifmi or hifob).
    pub ci_paid: Amount,
    /// Medical assistance paid this year.
    pub maf_paid: Amount,
}

/// How one settlement moves the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct CounterDelta {
    pub hifp_paid: Amount,
    pub ci_base: Amount,
    pub ci_paid: Amount,
    pub maf_paid: Amount,
}

impl Counters {
    pub fn plus(&self, d: &CounterDelta) -> Counters {
        Counters {
            hifp_paid: self.hifp_paid + d.hifp_paid,
            ci_base: self.ci_base + d.ci_base,
            ci_paid: self.ci_paid + d.ci_paid,
            maf_paid: self.maf_paid + d.maf_paid,
        }
    }

    /// Undoes a delta: what a reversal does.
    pub fn minus(&self, d: &CounterDelta) -> Counters {
        Counters {
            hifp_paid: self.hifp_paid - d.hifp_paid,
            ci_base: self.ci_base - d.ci_base,
            ci_paid: self.ci_paid - d.ci_paid,
            maf_paid: self.maf_paid - d.maf_paid,
        }
    }
}
