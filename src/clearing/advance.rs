//! Advance funds (预付金): a quota per home region and a warning when its
//! uncleared payable reaches the threshold.

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

/// The default quota: twice the average monthly payable of the previous quarter.
pub fn default_quota(previous_quarter: &[Amount; 3]) -> Amount {
    let sum: Amount = previous_quarter.iter().copied().sum();
    Amount::round_half_up(sum.as_decimal() * Decimal::TWO / Decimal::from(3))
}

/// The status of one home region's advance fund; the warning fires when the
/// usage reaches the threshold, and not a cent before.
pub fn status(region: RegionCode, quota: Amount, usage: Amount, warning_ratio: Ratio) -> AdvanceStatus {
    let threshold = Amount::round_half_up(quota.times(warning_ratio));
    AdvanceStatus { region, quota, usage, threshold, warning: usage >= threshold && quota != Amount::ZERO }
}
