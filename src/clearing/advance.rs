//! Advance funds (预付金): a quota per home region and a warning when its
//! uncleared payable reaches the threshold.

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::money::{Amount, Ratio};
use crate::region::RegionCode;

/// Default warning threshold: 90% of the quota.
pub const DEFAULT_WARNING_PCT: u32 = 90;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvanceStatus {
    pub region: RegionCode,
    pub quota: Amount,
    /// Uncleared payable: settled at other regions, not yet cleared.
    pub usage: Amount,
    pub threshold: Amount,
    pub warning: bool,
}

/// The default quota: twice the average monthly payable of the previous
/// quarter, and never below zero (a month whose deductions exceed what the
/// region owed has a negative payable; a negative quota means nothing).
pub fn default_quota(previous_quarter: &[Amount; 3]) -> Amount {
    let sum: Amount = previous_quarter.iter().copied().sum();
    Amount::round_half_up(sum.as_decimal() * Decimal::TWO / Decimal::from(3)).max(Amount::ZERO)
}

/// Each home region's quota: the operator's setting where there is one,
/// else [`default_quota`] over what the region owed (national payable) in
/// the three statements before the month; `previous` is those statements,
/// most recent first, `None` where a month was not closed (counted as 0).
/// Regions with no setting and no history get no quota.
pub fn quotas(
    configured: &BTreeMap<RegionCode, Amount>,
    previous: &[Option<&crate::clearing::Statement>; 3],
) -> BTreeMap<RegionCode, Amount> {
    let mut out = configured.clone();
    let regions: BTreeSet<RegionCode> = previous.iter().flatten().flat_map(|s| s.positions.keys().copied()).collect();
    for r in regions {
        if out.contains_key(&r) {
            continue;
        }
        let payable = previous.map(|s| s.and_then(|s| s.positions.get(&r)).map(|p| p.payable).unwrap_or(Amount::ZERO));
        out.insert(r, default_quota(&payable));
    }
    out
}

/// The status of one home region's advance fund; the warning fires when the
/// usage reaches the threshold, and not a cent before. A quota of zero (or
/// below, which [`quotas`] never gives) means none is set: no warning.
pub fn status(region: RegionCode, quota: Amount, usage: Amount, warning_ratio: Ratio) -> AdvanceStatus {
    let quota = quota.max(Amount::ZERO);
    let threshold = Amount::round_half_up(quota.times(warning_ratio));
    AdvanceStatus { region, quota, usage, threshold, warning: quota > Amount::ZERO && usage >= threshold }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clearing::netting::Position;
    use crate::clearing::{Month, Statement};

    fn amount(s: &str) -> Amount {
        Amount::parse_non_negative(s).expect("amount")
    }

    fn region(s: &str) -> RegionCode {
        RegionCode::parse(s).expect("region")
    }

    fn statement(payables: &[(&str, &str)]) -> Statement {
        Statement {
            month: Month::new(2026, 1).expect("month"),
            revision: 1,
            pairs: vec![],
            positions: payables
                .iter()
                .map(|(r, p)| (region(r), Position { payable: amount(p), ..Position::default() }))
                .collect(),
            transfers: vec![],
            corps_local: vec![],
            adjustments: vec![],
            pending: vec![],
            advance: vec![],
            node_heads: BTreeMap::new(),
            dispute_rule: String::new(),
            answers_applied: 0,
            activity: BTreeMap::new(),
        }
    }

    #[test]
    fn default_quota_is_twice_the_quarters_monthly_average_half_up() {
        // (100 + 200 + 0.01) / 3 * 2 = 200.00666… -> 200.01
        assert_eq!(default_quota(&[amount("100.00"), amount("200.00"), amount("0.01")]), amount("200.01"));
        assert_eq!(default_quota(&[Amount::ZERO; 3]), Amount::ZERO);
    }

    #[test]
    fn quotas_come_from_the_previous_statements_unless_set() {
        let m1 = statement(&[("611000", "3000.00"), ("654000", "90.00")]);
        let m2 = statement(&[("611000", "1500.00")]);
        let configured: BTreeMap<RegionCode, Amount> = [(region("654000"), amount("50000.00"))].into_iter().collect();
        // Two months closed, one missing (counted as nothing owed).
        let q = quotas(&configured, &[Some(&m1), None, Some(&m2)]);
        assert_eq!(q[&region("611000")], amount("3000.00")); // (3000 + 0 + 1500) / 3 * 2
        assert_eq!(q[&region("654000")], amount("50000.00")); // the operator's setting wins
        assert_eq!(q.len(), 2);
        // No history, no setting: no quota.
        assert!(quotas(&BTreeMap::new(), &[None, None, None]).is_empty());
    }

    #[test]
    fn a_deduction_never_makes_a_quota_negative_and_zero_warns_of_nothing() {
        // Issue 21: a month whose deduction (拒付) exceeded what the region
        // owed left a payable of -1,200.00 and a quota of -800.00, flagged.
        let mut m1 = statement(&[("611000", "0.00")]);
        m1.positions.get_mut(&region("611000")).expect("position").payable = -amount("1200.00");
        let q = quotas(&BTreeMap::new(), &[Some(&m1), None, None]);
        assert_eq!(q[&region("611000")], Amount::ZERO);
        let s =
            status(region("611000"), q[&region("611000")], Amount::ZERO, Ratio::from_percent(90.into()).expect("pct"));
        assert!(!s.warning, "a zero quota is no quota: {s:?}");
        assert_eq!(s.quota, Amount::ZERO);
        // Whatever a caller passes, a negative quota is read as none.
        let s = status(region("611000"), -amount("800.00"), Amount::ZERO, Ratio::ONE);
        assert_eq!((s.quota, s.warning), (Amount::ZERO, false));
    }
}
