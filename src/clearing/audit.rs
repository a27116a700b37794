//! A month's audit sample (抽查复审), pure: every settlement passes the
//! rule-based first review (初审100%); at least 5% of a node's settlements as
//! treatment region are drawn for a second review. The draw is verifiable:
//! its seed is SHA-256 of the month's final statement hash and the node's
//! signed month report, each settlement id is ranked by SHA-256(seed || id),
//! and the lowest ranks are taken, so anyone holding the ledger and the
//! statement draws the same sample, and no one could choose it beforehand.

use sha2::{Digest, Sha256};

use crate::money::Ratio;

/// The least share of settlements re-reviewed (智能监控: 抽查复审不低于5%).
pub const MIN_SAMPLE_PCT: u32 = 5;

/// The share of a month's settlements drawn for review.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SamplePolicy(Ratio);

impl SamplePolicy {
    /// The least share allowed (5%).
    pub fn minimum() -> SamplePolicy {
        SamplePolicy(Ratio::from_fraction(rust_decimal::Decimal::new(5, 2)).unwrap_or(Ratio::ONE))
    }

    /// `pct` percent, from 5 to 100.
    pub fn new(pct: u32) -> Result<SamplePolicy, String> {
        if !(MIN_SAMPLE_PCT..=100).contains(&pct) {
            return Err(format!("{pct}% is outside {MIN_SAMPLE_PCT}–100%"));
        }
        Ratio::from_percent(pct.into()).map(SamplePolicy).ok_or_else(|| format!("{pct}% is not a share"))
    }

    /// How many of `n` settlements are drawn: the share rounded up (one at
    /// least, when there is any).
    pub fn size(&self, n: usize) -> usize {
        let exact = self.0.as_decimal() * rust_decimal::Decimal::from(n as u64);
        let up = exact.ceil();
        usize::try_from(u64::try_from(up).unwrap_or(n as u64)).unwrap_or(n).min(n)
    }
}

/// The seed of a month's draw at a node: its final statement's hash and the
/// node's month report (the signed bytes), neither known before the month
/// closed.
pub fn seed(statement_hash: &[u8], month_report: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"xclear/audit-sample/v1\0");
    h.update(statement_hash);
    h.update(Sha256::digest(month_report));
    h.finalize().into()
}

/// The settlement ids drawn from `ids` (each counted once, in any order),
/// lowest rank first.
pub fn sample(seed: &[u8; 32], ids: &[String], policy: SamplePolicy) -> Vec<String> {
    let mut ranked: Vec<([u8; 32], &String)> = ids
        .iter()
        .map(|id| {
            let mut h = Sha256::new();
            h.update(seed);
            h.update(id.as_bytes());
            (h.finalize().into(), id)
        })
        .collect();
    ranked.sort();
    ranked.dedup_by(|a, b| a.1 == b.1);
    let n = policy.size(ranked.len());
    ranked.into_iter().take(n).map(|(_, id)| id.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_least_five_percent_rounded_up() {
        let p = SamplePolicy::new(5).expect("policy");
        assert_eq!((p.size(0), p.size(1), p.size(20), p.size(21), p.size(1000)), (0, 1, 1, 2, 50));
        assert!(SamplePolicy::new(4).is_err() && SamplePolicy::new(101).is_err());
        assert_eq!(SamplePolicy::new(100).expect("all").size(7), 7);
        assert_eq!(SamplePolicy::minimum(), p);
    }
}
