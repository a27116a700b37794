//! A designated institution's monthly statement (医疗机构月度结算单), pure:
//! what its own region pays it for the month's out-of-region settlements
//! that cleared, less the quality holdback (质量保证金) on the fund payment,
//! plus holdback released, less deductions (拒付). The holdback is held one
//! month and released with the next statement, or kept until the annual
//! clearing and released then, scaled by the institution's assessment score;
//! what the score does not release is forfeited. Over any run of months,
//! `payable + forfeited + outstanding = settled − deducted`, to the fen, and
//! every fen held is released or forfeited once.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::Month;
use crate::med_type::{MedCategory, MedType};
use crate::money::{Amount, Ratio};
use crate::region::RegionCode;

/// The highest holdback rate the national rules allow (5% of the fund payment).
pub const MAX_HOLDBACK_PCT: u32 = 5;

/// When held money comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Release {
    /// With the next month's statement (伊犁: held one month).
    NextMonth,
    /// With December's statement, scaled by the year's assessment score.
    Annual,
}

/// A region's holdback rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldbackPolicy {
    rate: Ratio,
    release: Release,
}

impl HoldbackPolicy {
    /// No holdback (a region's default until its config sets one).
    pub const NONE: HoldbackPolicy = HoldbackPolicy { rate: Ratio::ZERO, release: Release::NextMonth };

    /// `rate_pct` of the fund payment, 0–5%.
    pub fn new(rate_pct: Decimal, release: Release) -> Result<HoldbackPolicy, String> {
        if rate_pct > Decimal::from(MAX_HOLDBACK_PCT) {
            return Err(format!("{rate_pct}% is over the {MAX_HOLDBACK_PCT}% the national rules allow"));
        }
        let rate = Ratio::from_percent(rate_pct).ok_or_else(|| format!("{rate_pct}% is not a rate"))?;
        Ok(HoldbackPolicy { rate, release })
    }

    /// The rate for an institution: halved for one with a good credit rating.
    pub fn rate_for(&self, credit_rated: bool) -> Ratio {
        match credit_rated {
            true => Ratio::from_fraction(self.rate.as_decimal() / Decimal::TWO).unwrap_or(Ratio::ZERO),
            false => self.rate,
        }
    }

    pub fn release(&self) -> Release {
        self.release
    }
}

/// One settlement (or reversal, with negative amounts) of the institution
/// that cleared in the month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HospitalLine {
    pub setl_id: String,
    pub home: RegionCode,
    pub med_type: MedType,
    pub medfee_sumamt: Amount,
    pub fund_pay: Amount,
    pub acct_pay: Amount,
}

/// A deduction (拒付) from the institution's payment: an audit's refusal or
/// an operator's adjustment that concerns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deduction {
    pub amount: Amount,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setl_id: Option<String>,
}

/// Holdback held and not yet released or forfeited, as of a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HoldbackAccount {
    /// Everything held and not yet released or forfeited.
    pub outstanding: Amount,
    /// What the last statement held (released by the next under `NextMonth`).
    pub last_held: Amount,
}

/// Counts and sums of lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Totals {
    pub count: i64,
    pub medfee_sumamt: Amount,
    pub fund_pay: Amount,
    pub acct_pay: Amount,
}

impl Totals {
    fn add(&mut self, l: &HospitalLine) {
        // A reversal takes its settlement out of the count.
        self.count += if l.fund_pay.is_negative() || l.medfee_sumamt.is_negative() { -1 } else { 1 };
        self.medfee_sumamt = self.medfee_sumamt + l.medfee_sumamt;
        self.fund_pay = self.fund_pay + l.fund_pay;
        self.acct_pay = self.acct_pay + l.acct_pay;
    }
}

/// What goes into one month's statement of one institution.
#[derive(Debug, Clone)]
pub struct HospitalMonth<'a> {
    pub month: Month,
    /// The institution's (treatment) region.
    pub region: RegionCode,
    pub fixmedins_code: &'a str,
    pub credit_rated: bool,
    pub lines: &'a [HospitalLine],
    pub deductions: &'a [Deduction],
    /// The holdback account after the previous statement.
    pub before: HoldbackAccount,
    /// The year's assessment score (0–100%), for December under `Annual`;
    /// `None` there releases everything.
    pub assessment: Option<Ratio>,
}

/// The statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HospitalStatement {
    pub month: Month,
    pub region: RegionCode,
    pub fixmedins_code: String,
    pub totals: Totals,
    pub by_med_type: BTreeMap<MedCategory, Totals>,
    pub by_home: BTreeMap<RegionCode, Totals>,
    /// Fund plus account payments of the month's lines.
    pub settled: Amount,
    /// The rate applied, as a fraction ("0.05").
    pub holdback_rate: String,
    /// Held back this month (质量保证金).
    pub holdback: Amount,
    /// Holdback of earlier months (and, at the annual release, this one) paid now.
    pub released: Amount,
    /// Holdback the assessment did not release.
    pub forfeited: Amount,
    /// The sum of `deduction_items` (拒付).
    pub deductions: Amount,
    pub deduction_items: Vec<Deduction>,
    /// settled − holdback + released − deductions (negative: the institution owes).
    pub payable: Amount,
    /// The holdback account after this statement.
    pub after: HoldbackAccount,
}

/// One institution's statement for one month.
pub fn hospital_statement(m: &HospitalMonth<'_>, policy: &HoldbackPolicy) -> HospitalStatement {
    let mut totals = Totals::default();
    let mut by_med_type: BTreeMap<MedCategory, Totals> = BTreeMap::new();
    let mut by_home: BTreeMap<RegionCode, Totals> = BTreeMap::new();
    for l in m.lines {
        totals.add(l);
        by_med_type.entry(l.med_type.category()).or_default().add(l);
        by_home.entry(l.home).or_default().add(l);
    }
    let settled = totals.fund_pay + totals.acct_pay;
    let rate = policy.rate_for(m.credit_rated);
    // Held on the fund payment only (the account is the person's money), once
    // rounded; a month of net reversals holds nothing.
    let held = Amount::round_half_up(totals.fund_pay.positive_part().times(rate));
    let deducted: Amount = m.deductions.iter().map(|d| d.amount).sum();
    let (released, forfeited, outstanding) = match policy.release {
        // Everything held before: last month's holdback (and, if the rule
        // was annual until now, the year's so far).
        Release::NextMonth => (m.before.outstanding, Amount::ZERO, held),
        Release::Annual if m.month.number() == 12 => {
            let due = m.before.outstanding + held;
            let score = m.assessment.unwrap_or(Ratio::ONE);
            let released = Amount::round_half_up(due.times(score));
            (released, due - released, Amount::ZERO)
        }
        Release::Annual => (Amount::ZERO, Amount::ZERO, m.before.outstanding + held),
    };
    HospitalStatement {
        month: m.month,
        region: m.region,
        fixmedins_code: m.fixmedins_code.to_string(),
        totals,
        by_med_type,
        by_home,
        settled,
        holdback_rate: rate.to_string(),
        holdback: held,
        released,
        forfeited,
        deductions: deducted,
        deduction_items: m.deductions.to_vec(),
        payable: settled - held + released - deducted,
        after: HoldbackAccount { outstanding, last_held: held },
    }
}

/// One settlement or reversal as an institution and its node each record it
/// (the national platform's 3202 detail: `setl_id`, `msgid`, amounts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detail {
    pub setl_id: String,
    pub msgid: String,
    pub medfee_sumamt: Amount,
    pub fund_pay_sumamt: Amount,
    pub acct_pay: Amount,
}

/// A period's totals (the 3201 check): items, and their sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReconTotals {
    pub count: u64,
    pub medfee_sumamt: Amount,
    pub fund_pay_sumamt: Amount,
    pub acct_pay: Amount,
}

impl ReconTotals {
    pub fn of(details: &[Detail]) -> ReconTotals {
        details.iter().fold(ReconTotals::default(), |t, d| ReconTotals {
            count: t.count + 1,
            medfee_sumamt: t.medfee_sumamt + d.medfee_sumamt,
            fund_pay_sumamt: t.fund_pay_sumamt + d.fund_pay_sumamt,
            acct_pay: t.acct_pay + d.acct_pay,
        })
    }
}

/// What differs between an institution's records and its node's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Difference {
    /// A total differs (`field`: count, medfee_sumamt, fund_pay_sumamt, acct_pay).
    Total { field: String, node: String, institution: String },
    /// The node holds an item the institution did not list.
    MissingAtInstitution { setl_id: String, msgid: String },
    /// The institution lists an item the node does not hold.
    MissingAtNode { setl_id: String, msgid: String },
    /// Both hold the item; `field` differs.
    AmountDiffers { setl_id: String, field: String, node: String, institution: String },
}

/// Compares an institution's totals (and, if it sent them, its details)
/// with its node's details for the same period: empty when they balance.
/// Without details, only the totals are compared (the node then asks for
/// the detail list); with them, every item is matched by `setl_id`.
pub fn reconcile(node: &[Detail], totals: &ReconTotals, details: Option<&[Detail]>) -> Vec<Difference> {
    let mut out = Vec::new();
    let mine = ReconTotals::of(node);
    let total = |field: &str, a: String, b: String, out: &mut Vec<Difference>| {
        if a != b {
            out.push(Difference::Total { field: field.into(), node: a, institution: b });
        }
    };
    total("count", mine.count.to_string(), totals.count.to_string(), &mut out);
    total("medfee_sumamt", mine.medfee_sumamt.to_string(), totals.medfee_sumamt.to_string(), &mut out);
    total("fund_pay_sumamt", mine.fund_pay_sumamt.to_string(), totals.fund_pay_sumamt.to_string(), &mut out);
    total("acct_pay", mine.acct_pay.to_string(), totals.acct_pay.to_string(), &mut out);
    let Some(theirs) = details else { return out };
    let at_node: BTreeMap<&str, &Detail> = node.iter().map(|d| (d.setl_id.as_str(), d)).collect();
    let at_institution: BTreeMap<&str, &Detail> = theirs.iter().map(|d| (d.setl_id.as_str(), d)).collect();
    for (id, d) in &at_node {
        match at_institution.get(id) {
            None => out.push(Difference::MissingAtInstitution { setl_id: d.setl_id.clone(), msgid: d.msgid.clone() }),
            Some(t) => {
                for (field, a, b) in [
                    ("msgid", d.msgid.clone(), t.msgid.clone()),
                    ("medfee_sumamt", d.medfee_sumamt.to_string(), t.medfee_sumamt.to_string()),
                    ("fund_pay_sumamt", d.fund_pay_sumamt.to_string(), t.fund_pay_sumamt.to_string()),
                    ("acct_pay", d.acct_pay.to_string(), t.acct_pay.to_string()),
                ] {
                    if a != b {
                        out.push(Difference::AmountDiffers {
                            setl_id: d.setl_id.clone(),
                            field: field.into(),
                            node: a,
                            institution: b,
                        });
                    }
                }
            }
        }
    }
    for (id, t) in &at_institution {
        if !at_node.contains_key(id) {
            out.push(Difference::MissingAtNode { setl_id: t.setl_id.clone(), msgid: t.msgid.clone() });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn line(id: &str, home: &str, med_type: MedType, fund: &str, acct: &str) -> HospitalLine {
        let a = |s: &str| Amount::round_half_up(s.parse::<Decimal>().expect("decimal"));
        HospitalLine {
            setl_id: id.into(),
            home: RegionCode::parse(home).expect("region"),
            med_type,
            medfee_sumamt: a(fund) + a(acct),
            fund_pay: a(fund),
            acct_pay: a(acct),
        }
    }

    #[test]
    fn five_percent_held_one_month_halved_for_the_credit_rated() {
        let policy = HoldbackPolicy::new(dec!(5), Release::NextMonth).expect("policy");
        assert!(HoldbackPolicy::new(dec!(5.01), Release::NextMonth).is_err());
        let march = Month::parse("2026-03").expect("month");
        let lines = [
            line("S1", "611000", MedType::Inpatient, "31500.00", "0.00"),
            line("S2", "654000", MedType::Pharmacy, "0.00", "90.00"),
            line("S3", "611000", MedType::GeneralOutpatient, "240.01", "0.00"),
        ];
        let deductions = [Deduction { amount: Amount::yuan(100), reason: "audit".into(), setl_id: Some("S1".into()) }];
        let m = HospitalMonth {
            month: march,
            region: RegionCode::parse("110000").expect("region"),
            fixmedins_code: "H1",
            credit_rated: false,
            lines: &lines,
            deductions: &deductions,
            before: HoldbackAccount { outstanding: Amount::yuan(50), last_held: Amount::yuan(50) },
            assessment: None,
        };
        let s = hospital_statement(&m, &policy);
        assert_eq!(s.settled.to_string(), "31830.01");
        // 5% of the fund's 31740.01 = 1587.0005, half up.
        assert_eq!(s.holdback.to_string(), "1587.00");
        assert_eq!((s.released, s.deductions), (Amount::yuan(50), Amount::yuan(100)));
        assert_eq!(s.payable.to_string(), "30193.01");
        assert_eq!(s.after, HoldbackAccount { outstanding: s.holdback, last_held: s.holdback });
        assert_eq!(s.by_med_type[&MedCategory::Pharmacy].acct_pay.to_string(), "90.00");
        assert_eq!(s.by_home.len(), 2);
        let rated = hospital_statement(&HospitalMonth { credit_rated: true, ..m }, &policy);
        assert_eq!((rated.holdback_rate.as_str(), rated.holdback.to_string().as_str()), ("0.025", "793.50"));
    }

    fn detail(id: &str, fund: i64) -> Detail {
        Detail {
            setl_id: id.into(),
            msgid: format!("m{id}"),
            medfee_sumamt: Amount::yuan(fund + 10),
            fund_pay_sumamt: Amount::yuan(fund),
            acct_pay: Amount::ZERO,
        }
    }

    #[test]
    fn reconciliation_names_each_kind_of_difference() {
        let node = [detail("S1", 100), detail("S2", 200), detail("S3", 300)];
        let totals = ReconTotals::of(&node);
        assert!(reconcile(&node, &totals, None).is_empty(), "balanced totals");
        assert!(reconcile(&node, &totals, Some(&node)).is_empty(), "balanced details");
        // Totals off by one item: each differing total is named.
        let short = ReconTotals::of(&node[..2]);
        let d = reconcile(&node, &short, None);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(
            matches!(&d[0], Difference::Total { field, node, institution } if field == "count" && node == "3" && institution == "2")
        );
        // Details: S3 missing at the institution, S4 missing at the node, S2's fund differs.
        let theirs = [detail("S1", 100), detail("S2", 201), detail("S4", 400)];
        let d = reconcile(&node, &ReconTotals::of(&theirs), Some(&theirs));
        assert!(d.contains(&Difference::MissingAtInstitution { setl_id: "S3".into(), msgid: "mS3".into() }), "{d:?}");
        assert!(d.contains(&Difference::MissingAtNode { setl_id: "S4".into(), msgid: "mS4".into() }), "{d:?}");
        assert!(d.iter().any(|x| matches!(x, Difference::AmountDiffers { setl_id, field, .. } if setl_id == "S2" && field == "fund_pay_sumamt")), "{d:?}");
    }
}
