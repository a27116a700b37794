//! Closing a month: reconcile, apply disputes and adjustments, net, check
//! advance funds, and produce a statement whose canonical JSON is the same,
//! byte for byte, whenever it is closed from the same inputs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::advance::{self, AdvanceStatus};
use super::lines::{Amounts, Channel, Line, Pair};
use super::month::Month;
use super::netting::{self, Adjustment, Bilateral, Position, Transfer};
use super::reconcile::{reconcile, PendingItem, PendingReason};
use crate::money::{Amount, Ratio};
use crate::region::RegionCode;

/// How a disputed line is paid, stated on every statement
/// (`docs/CLEARING.md`, "Disputes"): it leaves its month and is cleared as a
/// line, once, in the next month's close, unless disputed again there.
pub const DISPUTE_RULE: &str = "returned_as_line_next_month";

/// Cleared totals of one pair's lines of one month (the statement's own
/// month, or an earlier one for items carried in), with a commitment to
/// exactly which settlements they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairLine {
    pub home: RegionCode,
    pub treatment: RegionCode,
    pub channel: Channel,
    /// The month the lines belong to (their home commit's month).
    pub month: Month,
    pub count: u64,
    pub amounts: Amounts,
    /// RFC 6962 root over the sorted setl_ids cleared here (hex).
    pub ids_root: String,
}

/// A node's signed tree head as the statement commits to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadRef {
    pub size: u64,
    pub root: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    pub month: Month,
    /// 1 for a month's first statement, one more for each that differs
    /// from the one before: answers bind to one revision, even when a later
    /// revision comes back to an earlier one's lines (a dispute withdrawn).
    pub revision: u32,
    pub pairs: Vec<PairLine>,
    pub positions: BTreeMap<RegionCode, Position>,
    pub transfers: Vec<Transfer>,
    pub corps_local: Vec<Bilateral>,
    pub adjustments: Vec<Adjustment>,
    pub pending: Vec<PendingItem>,
    pub advance: Vec<AdvanceStatus>,
    pub node_heads: BTreeMap<RegionCode, HeadRef>,
    /// [`DISPUTE_RULE`].
    pub dispute_rule: String,
    /// Disputes and withdrawals filed for the month when it was closed: an
    /// answer that changes no line still gives a new revision to confirm.
    pub answers_applied: u32,
    /// What each region's node reported of its hospitals' claims as
    /// treatment region in the month (for the direct settlement rate).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub activity: BTreeMap<RegionCode, Activity>,
}

/// A treatment region's claims in a month: settled directly, and refused by
/// the home region's rules or for good.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    pub settled: u64,
    pub refused: u64,
}

impl Activity {
    /// settled ÷ (settled + refused), in percent to 0.1 (none: no claim).
    pub fn direct_rate_pct(&self) -> Option<rust_decimal::Decimal> {
        let all = self.settled + self.refused;
        (all > 0).then(|| {
            let mut pct = (rust_decimal::Decimal::from(self.settled) * rust_decimal::Decimal::ONE_HUNDRED
                / rust_decimal::Decimal::from(all))
            .round_dp_with_strategy(1, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
            pct.rescale(1);
            pct
        })
    }
}

/// A region's dispute of one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispute {
    pub region: RegionCode,
    pub setl_id: String,
    pub reason: String,
}

/// Everything a month is closed from.
#[derive(Debug, Clone, Default)]
pub struct ClosingInput {
    pub treatment_lines: Vec<Line>,
    pub home_lines: Vec<Line>,
    pub carried: Vec<PendingItem>,
    pub adjustments: Vec<Adjustment>,
    pub disputes: Vec<Dispute>,
    /// Advance-fund quota per home region.
    pub quotas: BTreeMap<RegionCode, Amount>,
    /// Uncleared payable per home region at closing time.
    pub usage: BTreeMap<RegionCode, Amount>,
    pub warning_pct: Option<u32>,
    pub node_heads: BTreeMap<RegionCode, HeadRef>,
    /// The ids root both sides reported for each pair cleared as one
    /// aggregate line.
    pub matched_roots: BTreeMap<Pair, String>,
    /// See [`Statement::answers_applied`].
    pub answers_applied: u32,
    /// See [`Statement::activity`].
    pub activity: BTreeMap<RegionCode, Activity>,
}

/// Closes `month`.
pub fn close(month: Month, input: &ClosingInput, corps_local: impl Fn(RegionCode, RegionCode) -> bool) -> Statement {
    // Every carried item is re-examined as a line, disputed ones included
    // ([`DISPUTE_RULE`]): it clears here unless disputed again.
    let mut rec = reconcile(month, &input.treatment_lines, &input.home_lines, &input.carried);
    let since: BTreeMap<&str, Month> = input.carried.iter().map(|p| (p.setl_id.as_str(), p.since)).collect();
    // A carried item neither side reported again is carried again, never dropped.
    let seen: std::collections::BTreeSet<&str> =
        rec.cleared.iter().map(|l| l.setl_id.as_str()).chain(rec.pending.iter().map(|p| p.setl_id.as_str())).collect();
    let unseen: Vec<PendingItem> =
        input.carried.iter().filter(|p| !seen.contains(p.setl_id.as_str())).cloned().collect();
    rec.pending.extend(unseen);
    // Disputed lines leave the month.
    let disputed: BTreeMap<&str, &Dispute> = input.disputes.iter().map(|d| (d.setl_id.as_str(), d)).collect();
    let (kept, out): (Vec<Line>, Vec<Line>) =
        rec.cleared.into_iter().partition(|l| !disputed.contains_key(l.setl_id.as_str()));
    rec.cleared = kept;
    for line in out {
        let d = disputed[line.setl_id.as_str()];
        rec.pending.push(PendingItem {
            setl_id: line.setl_id.clone(),
            pair: line.pair(),
            reason: PendingReason::Disputed,
            note: format!("{}: {}", d.region, d.reason),
            since: since.get(line.setl_id.as_str()).copied().unwrap_or(month),
            treatment_line: Some(line.clone()),
            home_line: Some(line),
        });
    }
    rec.pending.sort_by(|a, b| a.setl_id.cmp(&b.setl_id));
    let mut adjustments = input.adjustments.clone();
    adjustments.sort_by(|a, b| {
        (a.home, a.treatment, &a.setl_id, &a.reason).cmp(&(b.home, b.treatment, &b.setl_id, &b.reason))
    });
    let pairs = pair_lines(&rec.cleared, &input.matched_roots);
    let (positions, corps) = netting::net(&rec.cleared, &adjustments, &corps_local);
    let transfers = netting::transfers(&positions);
    let pct = input.warning_pct.unwrap_or(advance::DEFAULT_WARNING_PCT);
    let ratio = Ratio::from_percent(pct.into()).unwrap_or(Ratio::ONE);
    let advance = input
        .quotas
        .iter()
        .map(|(r, q)| advance::status(*r, *q, input.usage.get(r).copied().unwrap_or_default(), ratio))
        .collect();
    Statement {
        month,
        revision: 1,
        pairs,
        positions,
        transfers,
        corps_local: corps,
        adjustments,
        pending: rec.pending,
        advance,
        node_heads: input.node_heads.clone(),
        dispute_rule: DISPUTE_RULE.to_string(),
        answers_applied: input.answers_applied,
        activity: input.activity.clone(),
    }
}

/// Cleared lines by (pair, channel, month), each with the root over its ids;
/// a pair cleared as one aggregate takes the root both sides reported.
fn pair_lines(cleared: &[Line], matched_roots: &BTreeMap<Pair, String>) -> Vec<PairLine> {
    type Group = (u64, Amounts, Vec<String>, Option<String>);
    let mut groups: BTreeMap<(Pair, Channel, Month), Group> = BTreeMap::new();
    for l in cleared {
        let g = groups.entry((l.pair(), l.channel, l.month)).or_default();
        g.0 += l.count;
        g.1 = g.1.plus(&l.amounts);
        if l.count == 1 && !l.setl_id.starts_with(AGGREGATE_PREFIX) {
            g.2.push(l.setl_id.clone());
        } else if let Some(root) = matched_roots.get(&l.pair()) {
            g.3 = Some(root.clone());
        }
    }
    groups
        .into_iter()
        .map(|((p, channel, month), (count, amounts, ids, aggregate))| PairLine {
            home: p.home,
            treatment: p.treatment,
            channel,
            month,
            count,
            amounts,
            ids_root: aggregate.unwrap_or_else(|| hex::encode(super::lines::ids_root(&ids))),
        })
        .collect()
}

/// The setl_id of a pair cleared as one aggregate line: `pair:HOME:TREATMENT`.
pub const AGGREGATE_PREFIX: &str = "pair:";

impl Statement {
    /// The canonical bytes: compact JSON, fields in declaration order, maps sorted.
    pub fn canonical_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Sum of all national positions (always zero).
    pub fn positions_sum(&self) -> Amount {
        self.positions.values().map(|p| p.net).sum()
    }

    pub fn to_csv(&self) -> String {
        let q = |s: &str| {
            if s.contains([',', '"', '\n']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_string()
            }
        };
        let mut out = String::from("section,region,counterpart,amount,detail\n");
        for (r, p) in &self.positions {
            out.push_str(&format!("position,{r},,{},receivable {} payable {}\n", p.net, p.receivable, p.payable));
        }
        for l in &self.pairs {
            let a = &l.amounts;
            out.push_str(&format!(
                "pair,{},{},{},{} {} count {} fund_pay_sumamt {} acct_pay {} outpatient {} chronic {} pharmacy {} inpatient {}\n",
                l.home,
                l.treatment,
                a.owed(),
                l.month,
                match l.channel {
                    Channel::National => "national",
                    Channel::CorpsLocal => "corps_local",
                },
                l.count,
                a.fund_pay_sumamt,
                a.acct_pay,
                a.by_type.outpatient,
                a.by_type.chronic,
                a.by_type.pharmacy,
                a.by_type.inpatient,
            ));
        }
        for t in &self.transfers {
            let d = match t.direction {
                netting::Direction::PayIn => "pay_in",
                netting::Direction::PayOut => "pay_out",
            };
            out.push_str(&format!("transfer,{},,{},{d}\n", t.region, t.amount));
        }
        for b in &self.corps_local {
            out.push_str(&format!("corps_local,{},{},{},{} lines\n", b.a, b.b, b.a_owes_b, b.lines));
        }
        for a in &self.adjustments {
            out.push_str(&format!("adjustment,{},{},{},{}\n", a.home, a.treatment, a.amount, q(&a.reason)));
        }
        for p in &self.pending {
            // The amount the home side holds (else the treatment side's).
            let amount = p.home_line.as_ref().or(p.treatment_line.as_ref()).map(|l| l.amounts.owed());
            out.push_str(&format!(
                "pending,{},{},{},{}\n",
                p.pair.home,
                p.pair.treatment,
                amount.map(|a| a.to_string()).unwrap_or_default(),
                q(&format!("{} {:?}: {}", p.setl_id, p.reason, p.note))
            ));
        }
        for a in &self.advance {
            out.push_str(&format!(
                "advance,{},,{},quota {} threshold {}{}\n",
                a.region,
                a.usage,
                a.quota,
                a.threshold,
                if a.warning { " WARNING" } else { "" }
            ));
        }
        out
    }

    pub fn to_table(&self) -> String {
        let mut out = format!(
            "Clearing statement {}\n\nNational channel: receivable as treatment region, payable as home region\n\
             {:<8} {:>16} {:>16} {:>16}\n",
            self.month, "region", "receivable", "payable", "net"
        );
        for (r, p) in &self.positions {
            out.push_str(&format!(
                "{:<8} {:>16} {:>16} {:>16}\n",
                r.to_string(),
                p.receivable.to_string(),
                p.payable.to_string(),
                p.net.to_string()
            ));
        }
        out.push_str(&format!("{:<8} {:>16} {:>16} {:>16}\n", "sum", "", "", self.positions_sum().to_string()));
        let all = self.pairs.iter().fold(Amounts::default(), |t, l| t.plus(&l.amounts));
        let corps_local: Amount =
            self.pairs.iter().filter(|l| l.channel == Channel::CorpsLocal).map(|l| l.amounts.owed()).sum();
        out.push_str(&format!(
            "\nOwed in all {} (national {} + corps–local {}, both ways)\n  = funds {} + personal accounts {}\n  \
             outpatient {}  chronic {}  pharmacy {}  inpatient {}\n",
            all.owed(),
            all.owed() - corps_local,
            corps_local,
            all.fund_pay_sumamt,
            all.acct_pay,
            all.by_type.outpatient,
            all.by_type.chronic,
            all.by_type.pharmacy,
            all.by_type.inpatient
        ));
        if !self.corps_local.is_empty() {
            out.push_str("\nCorps–local channel (netted between the pair, apart from the national channel)\n");
            for b in &self.corps_local {
                let (payer, payee, amt) =
                    if b.a_owes_b.is_negative() { (b.b, b.a, -b.a_owes_b) } else { (b.a, b.b, b.a_owes_b) };
                out.push_str(&format!("  {payer} pays {payee} {amt} ({} lines)\n", b.lines));
            }
        }
        let warnings: Vec<&AdvanceStatus> = self.advance.iter().filter(|a| a.warning).collect();
        if !warnings.is_empty() {
            out.push_str("\nAdvance-fund warnings (uncleared payable, both channels, against the quota)\n");
            for a in warnings {
                out.push_str(&format!(
                    "  {} uses {} of quota {} (threshold {})\n",
                    a.region, a.usage, a.quota, a.threshold
                ));
            }
        }
        if !self.pending.is_empty() {
            let n = self.pending.len();
            let lines = if n == 1 { "line" } else { "lines" };
            out.push_str(&format!("\n{n} {lines} held out and carried to {}\n", self.month.next()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_direct_settlement_rate_rounds_to_a_tenth_of_a_percent() {
        let rate = |settled, refused| Activity { settled, refused }.direct_rate_pct().map(|d| d.to_string());
        assert_eq!(rate(0, 0), None);
        assert_eq!(rate(2, 1).as_deref(), Some("66.7"));
        assert_eq!(rate(7, 3).as_deref(), Some("70.0"));
        assert_eq!(rate(1, 0).as_deref(), Some("100.0"));
    }

    fn line(id: &str, fund: &str) -> Line {
        let amount = Amount::parse_non_negative(fund).expect("amount");
        Line {
            setl_id: id.into(),
            home: RegionCode::parse("611000").expect("region"),
            treatment: RegionCode::parse("110000").expect("region"),
            channel: Channel::National,
            month: Month::parse("2026-03").expect("month"),
            amounts: Amounts {
                fund_pay_sumamt: amount,
                medfee_sumamt: amount,
                by_type: crate::clearing::TypeSplit::of(crate::med_type::MedCategory::Inpatient, amount),
                ..Amounts::default()
            },
            med_type: crate::med_type::MedType::DEFAULT,
            count: 1,
        }
    }

    #[test]
    fn every_csv_column_holds_what_its_header_says() {
        let input = ClosingInput {
            treatment_lines: vec![line("S1", "100.00")],
            home_lines: vec![line("S1", "100.00"), line("S2", "250.50")],
            quotas: [(RegionCode::parse("611000").expect("region"), Amount::yuan(1000))].into_iter().collect(),
            ..ClosingInput::default()
        };
        let s = close(Month::parse("2026-03").expect("month"), &input, |_, _| false);
        assert_eq!(s.pending.len(), 1, "S2 is missing at the treatment side");
        let csv = s.to_csv();
        let mut rows = csv.lines();
        assert_eq!(rows.next(), Some("section,region,counterpart,amount,detail"));
        for row in rows {
            let cols: Vec<&str> = row.splitn(5, ',').collect();
            assert_eq!(cols.len(), 5, "{row}");
            assert!(RegionCode::parse(cols[1]).is_ok(), "region column: {row}");
            assert!(cols[2].is_empty() || RegionCode::parse(cols[2]).is_ok(), "counterpart column: {row}");
            assert!(cols[3].parse::<rust_decimal::Decimal>().is_ok(), "amount column: {row}");
        }
        assert!(csv.contains("pending,611000,110000,250.50,S2 MissingAtTreatment"), "{csv}");
        assert!(
            csv.contains("pair,611000,110000,100.00,2026-03 national count 1 fund_pay_sumamt 100.00 acct_pay 0.00"),
            "{csv}"
        );
        assert!(s.to_table().contains("inpatient 100.00"), "{}", s.to_table());
    }
}
