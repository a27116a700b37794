//! Matching the two sides of every pair: equal summaries clear at once; a
//! pair that differs is matched settlement by settlement, and whatever is on
//! one side only, or differs, is held out and carried to the next month.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::lines::{summarize, Line, Pair};
use super::month::Month;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingReason {
    /// The home region committed it; the treatment region did not report it.
    MissingAtTreatment,
    /// The treatment region reported it; the home region did not.
    MissingAtHome,
    /// Both reported it with different amounts.
    AmountsDiffer,
    /// A region disputed the line on the statement.
    Disputed,
}

/// A line held out of a month, with what each side said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingItem {
    pub setl_id: String,
    pub pair: Pair,
    pub reason: PendingReason,
    pub note: String,
    /// The month it was first held out.
    pub since: Month,
    pub treatment_line: Option<Line>,
    pub home_line: Option<Line>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciliation {
    pub cleared: Vec<Line>,
    pub pending: Vec<PendingItem>,
    /// Pairs whose summaries matched outright.
    pub matched_pairs: usize,
    /// Pairs that needed matching by id.
    pub examined_pairs: usize,
}

/// Reconciles what the treatment regions reported against what the home
/// regions reported (both may include lines of earlier months for items
/// carried in; `since` of those is kept from `carried`).
pub fn reconcile(month: Month, treatment_side: &[Line], home_side: &[Line], carried: &[PendingItem]) -> Reconciliation {
    let since: BTreeMap<&str, Month> = carried.iter().map(|p| (p.setl_id.as_str(), p.since)).collect();
    let t_sum = summarize(treatment_side);
    let h_sum = summarize(home_side);
    let mut by_pair_t: BTreeMap<Pair, Vec<&Line>> = BTreeMap::new();
    for l in treatment_side {
        by_pair_t.entry(l.pair()).or_default().push(l);
    }
    let mut by_pair_h: BTreeMap<Pair, Vec<&Line>> = BTreeMap::new();
    for l in home_side {
        by_pair_h.entry(l.pair()).or_default().push(l);
    }
    let pairs: BTreeSet<Pair> = t_sum.keys().chain(h_sum.keys()).copied().collect();
    let mut r = Reconciliation::default();
    for pair in pairs {
        if t_sum.contains_key(&pair) && t_sum.get(&pair) == h_sum.get(&pair) {
            r.matched_pairs += 1;
            r.cleared.extend(by_pair_h.get(&pair).into_iter().flatten().map(|l| (*l).clone()));
            continue;
        }
        r.examined_pairs += 1;
        let t: BTreeMap<&str, &Line> =
            by_pair_t.get(&pair).into_iter().flatten().map(|l| (l.setl_id.as_str(), *l)).collect();
        let h: BTreeMap<&str, &Line> =
            by_pair_h.get(&pair).into_iter().flatten().map(|l| (l.setl_id.as_str(), *l)).collect();
        let ids: BTreeSet<&str> = t.keys().chain(h.keys()).copied().collect();
        for id in ids {
            let (tl, hl) = (t.get(id).copied(), h.get(id).copied());
            let pending = |reason: PendingReason, note: &str| PendingItem {
                setl_id: id.to_string(),
                pair,
                reason,
                note: note.to_string(),
                since: since.get(id).copied().unwrap_or(month),
                treatment_line: tl.cloned(),
                home_line: hl.cloned(),
            };
            match (tl, hl) {
                (Some(a), Some(b)) if a.amounts == b.amounts && a.channel == b.channel => r.cleared.push(b.clone()),
                (Some(_), Some(_)) => {
                    r.pending.push(pending(PendingReason::AmountsDiffer, "the two sides report different amounts"))
                }
                (None, Some(_)) => {
                    r.pending.push(pending(PendingReason::MissingAtTreatment, "not in the treatment region's report"))
                }
                (Some(_), None) => {
                    r.pending.push(pending(PendingReason::MissingAtHome, "not in the home region's report"))
                }
                (None, None) => {}
            }
        }
    }
    r.cleared.sort_by(|a, b| a.setl_id.cmp(&b.setl_id));
    r
}
