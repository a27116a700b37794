//! Conversion between wire (prost) types and domain types, with validation,
//! in one place: domain code never sees prost types.

use chrono::NaiveDate;

use super::error::NodeError;
use crate::med_type::MedType;
use crate::money::{self, Amount};
use crate::proto;
use crate::region::RegionCode;
use crate::settlement::bill::{MAX_ITEMS_PER_BILL, MAX_PRICE, MAX_QTY, PRICE_SCALE, QTY_SCALE};
use crate::settlement::{BillItem, BillTotals, Figures};

pub const MAX_MSGID_LEN: usize = 64;
/// Longest code of a person (psn_no), a hospital or a catalogue item.
pub const MAX_CODE_LEN: usize = 64;

pub fn region(field: &str, text: &str) -> Result<RegionCode, NodeError> {
    RegionCode::parse(text).map_err(|e| NodeError::bad(field, e.to_string()))
}

pub fn date(field: &str, text: &str) -> Result<NaiveDate, NodeError> {
    let bad = || NodeError::bad(field, format!("{text:?} is not a date (YYYY-MM-DD)"));
    if text.len() != 10 {
        return Err(bad());
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| bad())
}

/// A settlement date: a date, and not after the node's own date (Asia/Shanghai)
/// by more than a day of clock difference. A bill is settled once it exists.
pub fn settlement_date(field: &str, text: &str, now_ms: i64) -> Result<NaiveDate, NodeError> {
    let d = date(field, text)?;
    let today = crate::time::shanghai_day(now_ms)
        .ok_or_else(|| NodeError::Internal(format!("clock {now_ms} is out of range")))?;
    let latest = today.succ_opt().unwrap_or(today);
    if d > latest {
        return Err(NodeError::bad(field, format!("{text} is in the future (today is {today})")));
    }
    Ok(d)
}

pub fn amount(field: &str, text: &str) -> Result<Amount, NodeError> {
    Amount::parse_non_negative(text).map_err(|e| NodeError::bad(field, e.to_string()))
}

pub fn msgid(field: &str, text: &str) -> Result<String, NodeError> {
    let ok = !text.is_empty() && text.len() <= MAX_MSGID_LEN && text.chars().all(|c| c.is_ascii_graphic() && c != ':');
    if ok {
        Ok(text.to_string())
    } else {
        Err(NodeError::bad(field, format!("must be 1–{MAX_MSGID_LEN} printable ASCII characters without ':'")))
    }
}

pub fn items(items: &[proto::BillItem]) -> Result<Vec<BillItem>, NodeError> {
    if items.is_empty() {
        return Err(NodeError::bad("items", "a bill needs at least one item"));
    }
    if items.len() > MAX_ITEMS_PER_BILL {
        return Err(NodeError::bad("items", format!("{} items, over the limit of {MAX_ITEMS_PER_BILL}", items.len())));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, it)| {
            let f = |name: &str| format!("items[{i}].{name}");
            if it.code.is_empty() || it.code.len() > MAX_CODE_LEN {
                return Err(NodeError::bad(f("code"), format!("item code must be 1–{MAX_CODE_LEN} characters")));
            }
            let qty = money::parse_bounded(&it.qty, QTY_SCALE).map_err(|e| NodeError::bad(f("qty"), e.to_string()))?;
            let price =
                money::parse_bounded(&it.price, PRICE_SCALE).map_err(|e| NodeError::bad(f("price"), e.to_string()))?;
            if qty > MAX_QTY || price > MAX_PRICE {
                return Err(NodeError::bad(f("qty"), "quantity or price over its limit"));
            }
            Ok(BillItem { code: it.code.clone(), qty, price })
        })
        .collect()
}

pub fn figures_to_proto(f: &Figures) -> proto::SettlementFigures {
    proto::SettlementFigures {
        route: f.route.as_str().to_string(),
        medfee_sumamt: f.medfee_sumamt.to_string(),
        fulamt_ownpay_amt: f.fulamt_ownpay_amt.to_string(),
        overlmt_selfpay: f.overlmt_selfpay.to_string(),
        preselfpay_amt: f.preselfpay_amt.to_string(),
        inscp_scp_amt: f.inscp_scp_amt.to_string(),
        act_pay_dedc: f.act_pay_dedc.to_string(),
        pool_prop: f.pool_prop.to_string(),
        hifp_pay: f.hifp_pay.to_string(),
        hifmi_pay: f.hifmi_pay.to_string(),
        hifob_pay: f.hifob_pay.to_string(),
        maf_pay: f.maf_pay.to_string(),
        fund_pay_sumamt: f.fund_pay_sumamt.to_string(),
        psn_part_amt: f.psn_part_amt.to_string(),
        med_type: f.med_type.code().to_string(),
        acct_pay: f.acct_pay.to_string(),
        psn_cash_pay: f.psn_cash_pay.to_string(),
        balc: f.balc.to_string(),
    }
}

/// A `med_type` field: empty means 21 (a stay); anything else must be a
/// national code.
pub fn med_type(field: &str, text: &str) -> Result<MedType, NodeError> {
    MedType::parse_or_default(text)
        .ok_or_else(|| NodeError::bad(field, format!("{text:?} is not a med_type ({})", MedType::codes())))
}

/// A `dise_codg` field: required for med_type 14, well formed when given.
pub fn dise_codg(field: &str, text: &str, med_type: MedType) -> Result<Option<String>, NodeError> {
    if text.is_empty() {
        if med_type == MedType::ChronicOutpatient {
            return Err(NodeError::bad(field, "required for med_type 14 (chronic or special disease)"));
        }
        return Ok(None);
    }
    if !crate::rules::toml_format::is_dise_codg(text) {
        return Err(NodeError::bad(field, format!("{text:?} is not a disease code (1–20 letters and digits)")));
    }
    Ok(Some(text.to_string()))
}

/// The bill totals a claim carries.
/// A claim's bill totals; the parts must add up to `medfee_sumamt`.
pub fn claim_totals(c: &proto::Claim) -> Result<BillTotals, NodeError> {
    let t = BillTotals {
        medfee_sumamt: amount("medfee_sumamt", &c.medfee_sumamt)?,
        fulamt_ownpay_amt: amount("fulamt_ownpay_amt", &c.fulamt_ownpay_amt)?,
        overlmt_selfpay: amount("overlmt_selfpay", &c.overlmt_selfpay)?,
        preselfpay_amt: amount("preselfpay_amt", &c.preselfpay_amt)?,
        inscp_scp_amt: amount("inscp_scp_amt", &c.inscp_scp_amt)?,
    };
    if !t.is_consistent() {
        return Err(NodeError::bad(
            "medfee_sumamt",
            "is not the sum of fulamt_ownpay_amt, overlmt_selfpay, preselfpay_amt and inscp_scp_amt",
        ));
    }
    Ok(t)
}

pub fn set_claim_totals(c: &mut proto::Claim, t: &BillTotals) {
    c.medfee_sumamt = t.medfee_sumamt.to_string();
    c.fulamt_ownpay_amt = t.fulamt_ownpay_amt.to_string();
    c.overlmt_selfpay = t.overlmt_selfpay.to_string();
    c.preselfpay_amt = t.preselfpay_amt.to_string();
    c.inscp_scp_amt = t.inscp_scp_amt.to_string();
}

pub fn line_to_proto(l: &crate::clearing::Line) -> proto::ClearingLine {
    proto::ClearingLine {
        setl_id: l.setl_id.clone(),
        home: l.home.to_string(),
        treatment: l.treatment.to_string(),
        corps_local: l.channel == crate::clearing::Channel::CorpsLocal,
        month: l.month.to_string(),
        medfee_sumamt: l.amounts.medfee_sumamt.to_string(),
        hifp_pay: l.amounts.hifp_pay.to_string(),
        hifmi_pay: l.amounts.hifmi_pay.to_string(),
        hifob_pay: l.amounts.hifob_pay.to_string(),
        maf_pay: l.amounts.maf_pay.to_string(),
        fund_pay_sumamt: l.amounts.fund_pay_sumamt.to_string(),
        med_type: l.med_type.code().to_string(),
        acct_pay: l.amounts.acct_pay.to_string(),
    }
}

/// A signed amount (reversal lines are negative).
pub fn signed_amount(field: &str, text: &str) -> Result<Amount, NodeError> {
    let negative = text.starts_with('-');
    let a = amount(field, text.trim_start_matches('-'))?;
    Ok(if negative { -a } else { a })
}

/// The amounts of a result's figures (negative for a reversal), with its
/// medical type.
pub fn figures_amounts(f: &proto::SettlementFigures) -> Result<(crate::clearing::Amounts, MedType), NodeError> {
    let med_type = med_type("figures.med_type", &f.med_type)?;
    let texts = [&f.medfee_sumamt, &f.hifp_pay, &f.hifmi_pay, &f.hifob_pay, &f.maf_pay, &f.fund_pay_sumamt];
    Ok((amounts_of(texts, &f.acct_pay, med_type)?, med_type))
}

/// An optional signed amount: empty is 0.00 (a record made before the field existed).
fn optional_amount(field: &str, text: &str) -> Result<Amount, NodeError> {
    if text.is_empty() {
        Ok(Amount::ZERO)
    } else {
        signed_amount(field, text)
    }
}

/// The six fund amounts of one settlement, in [`crate::clearing::Amounts`]'
/// order, and its account payment, each signed (a reversal's are negative);
/// an error names the field. What is owed is all in its medical type.
fn amounts_of(texts: [&String; 6], acct_pay: &str, med_type: MedType) -> Result<crate::clearing::Amounts, NodeError> {
    let mut a = fund_amounts(texts)?;
    a.acct_pay = optional_amount("acct_pay", acct_pay)?;
    a.by_type = crate::clearing::TypeSplit::of(med_type.category(), a.owed());
    Ok(a)
}

/// The six fund amounts alone (no account payment, no split yet).
fn fund_amounts(texts: [&String; 6]) -> Result<crate::clearing::Amounts, NodeError> {
    const FIELDS: [&str; 6] = ["medfee_sumamt", "hifp_pay", "hifmi_pay", "hifob_pay", "maf_pay", "fund_pay_sumamt"];
    let mut a = [Amount::ZERO; 6];
    for (i, text) in texts.iter().enumerate() {
        a[i] = signed_amount(FIELDS[i], text)?;
    }
    Ok(crate::clearing::Amounts {
        medfee_sumamt: a[0],
        hifp_pay: a[1],
        hifmi_pay: a[2],
        hifob_pay: a[3],
        maf_pay: a[4],
        fund_pay_sumamt: a[5],
        acct_pay: Amount::ZERO,
        by_type: crate::clearing::TypeSplit::default(),
    })
}

/// The clearing line of a home node's signed result between `home` and
/// `treatment`: `None` when it did not settle; an error naming the field when
/// it settled but its month, route or amounts are not well formed. A
/// treatment node checks a result with this before recording it, so a
/// recorded result always has its line.
pub fn line_of_result(
    r: &proto::ClaimResult,
    home: RegionCode,
    treatment: RegionCode,
) -> Result<Option<crate::clearing::Line>, NodeError> {
    use crate::clearing::{Channel, Line, Month};
    if !r.settled {
        return Ok(None);
    }
    if r.setl_id.is_empty() {
        return Err(NodeError::bad("setl_id", "a settled result without a setl_id"));
    }
    let f = r.figures.as_ref().ok_or_else(|| NodeError::bad("figures", "a settled result without figures"))?;
    let route = crate::region::Route::parse(&f.route)
        .ok_or_else(|| NodeError::bad("figures.route", format!("{:?} is not a route", f.route)))?;
    let (amounts, med_type) = figures_amounts(f)?;
    Ok(Some(Line {
        setl_id: r.setl_id.clone(),
        home,
        treatment,
        channel: if route == crate::region::Route::CorpsLocal { Channel::CorpsLocal } else { Channel::National },
        month: Month::parse(&r.month)
            .ok_or_else(|| NodeError::bad("month", format!("{:?} is not YYYY-MM", r.month)))?,
        amounts,
        med_type,
        count: 1,
    }))
}

/// One side's summary of a pair, as a node reports it.
pub fn pair_report(as_treatment: bool, counterpart: RegionCode, s: &crate::clearing::PairSummary) -> proto::PairReport {
    proto::PairReport {
        counterpart: counterpart.to_string(),
        as_treatment,
        count: s.count,
        medfee_sumamt: s.amounts.medfee_sumamt.to_string(),
        hifp_pay: s.amounts.hifp_pay.to_string(),
        hifmi_pay: s.amounts.hifmi_pay.to_string(),
        hifob_pay: s.amounts.hifob_pay.to_string(),
        maf_pay: s.amounts.maf_pay.to_string(),
        fund_pay_sumamt: s.amounts.fund_pay_sumamt.to_string(),
        ids_root: hex::encode(s.ids_root),
        acct_pay: s.amounts.acct_pay.to_string(),
        outpatient: s.amounts.by_type.outpatient.to_string(),
        chronic: s.amounts.by_type.chronic.to_string(),
        pharmacy: s.amounts.by_type.pharmacy.to_string(),
        inpatient: s.amounts.by_type.inpatient.to_string(),
    }
}

/// A pair as a node reported it: the counterpart, whether the node was the
/// treatment side, and its summary.
pub fn pair_report_from_proto(
    p: &proto::PairReport,
) -> Result<(RegionCode, bool, crate::clearing::PairSummary), NodeError> {
    let root: [u8; 32] = hex::decode(&p.ids_root)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| NodeError::bad("ids_root", "not a 32-byte hex hash"))?;
    let texts = [&p.medfee_sumamt, &p.hifp_pay, &p.hifmi_pay, &p.hifob_pay, &p.maf_pay, &p.fund_pay_sumamt];
    let mut amounts = fund_amounts(texts)?;
    amounts.acct_pay = optional_amount("acct_pay", &p.acct_pay)?;
    let legacy = [&p.acct_pay, &p.outpatient, &p.chronic, &p.pharmacy, &p.inpatient].iter().all(|t| t.is_empty());
    amounts.by_type = if legacy {
        // A report sealed before medical types existed: every settlement was a stay.
        crate::clearing::TypeSplit::of(crate::med_type::MedCategory::Inpatient, amounts.owed())
    } else {
        crate::clearing::TypeSplit {
            outpatient: optional_amount("outpatient", &p.outpatient)?,
            chronic: optional_amount("chronic", &p.chronic)?,
            pharmacy: optional_amount("pharmacy", &p.pharmacy)?,
            inpatient: optional_amount("inpatient", &p.inpatient)?,
        }
    };
    if amounts.by_type.total() != amounts.owed() {
        return Err(NodeError::bad(
            "inpatient",
            "the split by medical type does not add up to fund_pay_sumamt + acct_pay",
        ));
    }
    let summary = crate::clearing::PairSummary { count: p.count, amounts, ids_root: root };
    Ok((region("counterpart", &p.counterpart)?, p.as_treatment, summary))
}

/// One home region's advance-fund status, as the operator answers it.
pub fn advance_line(s: &crate::clearing::advance::AdvanceStatus) -> proto::AdvanceLine {
    proto::AdvanceLine {
        region: s.region.to_string(),
        quota: s.quota.to_string(),
        usage: s.usage.to_string(),
        threshold: s.threshold.to_string(),
        warning: s.warning,
    }
}

pub fn line_from_proto(l: &proto::ClearingLine) -> Result<crate::clearing::Line, NodeError> {
    use crate::clearing::{Channel, Line, Month};
    let med_type = med_type("med_type", &l.med_type)?;
    let texts = [&l.medfee_sumamt, &l.hifp_pay, &l.hifmi_pay, &l.hifob_pay, &l.maf_pay, &l.fund_pay_sumamt];
    Ok(Line {
        setl_id: l.setl_id.clone(),
        home: region("home", &l.home)?,
        treatment: region("treatment", &l.treatment)?,
        channel: if l.corps_local { Channel::CorpsLocal } else { Channel::National },
        month: Month::parse(&l.month).ok_or_else(|| NodeError::bad("month", "not YYYY-MM"))?,
        amounts: amounts_of(texts, &l.acct_pay, med_type)?,
        med_type,
        count: 1,
    })
}
