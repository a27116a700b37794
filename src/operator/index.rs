//! The operator's index of its own ledger by month: which entries are the
//! month's statements, adjustments and answers. Built by one pass when the
//! operator opens and moved with every append, so a query reads only the
//! entries it needs instead of the whole ledger (which also holds every
//! report and page of lines received).

use std::collections::{BTreeMap, BTreeSet};

use crate::clearing::Month;
use crate::ledger::EntryKind;

/// A month's entries, each by its ledger key, in ledger order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MonthEntries {
    pub statements: Vec<String>,
    pub adjustments: Vec<String>,
    pub disputes: Vec<String>,
    /// Statement hash -> regions that confirmed it.
    pub confirmations: BTreeMap<String, BTreeSet<String>>,
}

/// The operator's ledger keys, `<what>:<month>:…`; [`MonthIndex::note`]
/// reads them back.
pub mod keys {
    use crate::clearing::Month;
    use crate::region::RegionCode;

    /// A node's report, by the size of the tree head it reported and a
    /// digest of its bytes (an empty node re-signs the same size).
    pub fn report(month: Month, region: RegionCode, head_size: u64, digest: &str) -> String {
        format!("report:{month}:{region}:{head_size}:{}", short(digest))
    }

    /// A page of one pair's lines as `region` reported it (`side`: `t` or `h`).
    pub fn lines(
        month: Month,
        region: RegionCode,
        counterpart: RegionCode,
        side: &str,
        from: u64,
        digest: &str,
    ) -> String {
        format!("lines:{month}:{region}:{counterpart}:{side}:{from}:{}", short(digest))
    }

    pub fn statement(month: Month, hash: &str) -> String {
        format!("statement:{month}:{}", short(hash))
    }

    /// A region's confirmation or dispute of the statement with this (full) hash.
    pub fn answer(month: Month, region: RegionCode, statement_hash: &str) -> String {
        format!("answer:{month}:{region}:{statement_hash}")
    }

    pub fn adjustment(month: Month, digest: &str) -> String {
        format!("adjustment:{month}:{}", short(digest))
    }

    fn short(hex: &str) -> &str {
        hex.get(..16).unwrap_or(hex)
    }
}

#[derive(Debug, Default)]
pub struct MonthIndex {
    months: BTreeMap<Month, MonthEntries>,
}

impl MonthIndex {
    /// Notes an entry on the ledger. Noting a key twice changes nothing, so
    /// an append that found its key already there (say, after an earlier
    /// attempt was cancelled before it was noted) can be noted again.
    pub fn note(&mut self, kind: EntryKind, key: &str) {
        let mut parts = key.split(':');
        let (Some(prefix), Some(month)) = (parts.next(), parts.next().and_then(Month::parse)) else { return };
        let entries = self.months.entry(month).or_default();
        let push = |list: &mut Vec<String>| {
            if !list.iter().any(|k| k == key) {
                list.push(key.to_string());
            }
        };
        match (kind, prefix) {
            (EntryKind::Statement, "statement") => push(&mut entries.statements),
            (EntryKind::Adjustment, "adjustment") => push(&mut entries.adjustments),
            (EntryKind::Dispute, "answer") => push(&mut entries.disputes),
            // answer:<month>:<region>:<statement hash>
            (EntryKind::Confirmation, "answer") => {
                if let (Some(region), Some(hash)) = (parts.next(), parts.next()) {
                    entries.confirmations.entry(hash.to_string()).or_default().insert(region.to_string());
                }
            }
            _ => {}
        }
    }

    /// The months with at least one statement.
    pub fn closed_months(&self) -> Vec<Month> {
        self.months.iter().filter(|(_, e)| !e.statements.is_empty()).map(|(m, _)| *m).collect()
    }

    pub fn month(&self, month: Month) -> MonthEntries {
        self.months.get(&month).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_builders_file_under_their_month_and_kind() {
        let mut ix = MonthIndex::default();
        let march = Month::parse("2026-03").expect("month");
        let r = |s: &str| crate::region::RegionCode::parse(s).expect("region");
        let hash = "ab".repeat(32);
        ix.note(EntryKind::Statement, &keys::statement(march, &hash));
        ix.note(EntryKind::Adjustment, &keys::adjustment(march, &hash));
        ix.note(EntryKind::Dispute, &keys::answer(march, r("611000"), &hash));
        ix.note(EntryKind::Confirmation, &keys::answer(march, r("110000"), &hash));
        ix.note(EntryKind::Report, &keys::report(march, r("110000"), 7, &hash));
        ix.note(EntryKind::Report, &keys::lines(march, r("110000"), r("611000"), "t", 0, &hash));
        let m = ix.month(march);
        assert_eq!(m.statements, [keys::statement(march, &hash)]);
        assert_eq!(m.adjustments.len(), 1);
        assert_eq!(m.disputes, [keys::answer(march, r("611000"), &hash)]);
        assert!(m.confirmations[&hash].contains("110000"));
    }

    #[test]
    fn keys_file_under_their_month_and_kind() {
        let mut ix = MonthIndex::default();
        let march = Month::parse("2026-03").expect("month");
        ix.note(EntryKind::Statement, "statement:2026-03:aaaa");
        ix.note(EntryKind::Statement, "statement:2026-03:bbbb");
        ix.note(EntryKind::Statement, "statement:2026-03:bbbb");
        ix.note(EntryKind::Dispute, "answer:2026-03:611000:bbbb");
        ix.note(EntryKind::Adjustment, "adjustment:2026-03:cccc");
        ix.note(EntryKind::Dispute, "answer:2026-03:611000:bbbb");
        ix.note(EntryKind::Confirmation, "answer:2026-03:110000:bbbb");
        ix.note(EntryKind::Confirmation, "answer:2026-04:110000:dddd");
        ix.note(EntryKind::Report, "report:2026-03:611000:12");
        ix.note(EntryKind::Report, "lines:2026-03:611000:110000:h:0:eeee");
        let m = ix.month(march);
        assert_eq!(m.statements, ["statement:2026-03:aaaa", "statement:2026-03:bbbb"]);
        assert_eq!(m.adjustments, ["adjustment:2026-03:cccc"]);
        assert_eq!(m.disputes, ["answer:2026-03:611000:bbbb"]);
        assert_eq!(m.confirmations.len(), 1);
        assert!(m.confirmations["bbbb"].contains("110000"));
        assert_eq!(ix.month(march.next()).confirmations["dddd"].len(), 1);
    }
}
