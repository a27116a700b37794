//! The home side of a settlement (参保地政策): by medical type, the basic fund
//! (per stay, outpatient pooling, or a chronic disease), critical illness and
//! medical assistance, then the employee's personal account, computed with
//! the home policy, the person's year-to-date counters and balance. Pure: the
//! same input always gives the same answer.

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::bill::BillTotals;
use super::counters::{ChronicDelta, CounterDelta, Counters};
use super::person::{HospitalLevel, Person, Registration, RegistrationKind};
use super::refusal::Refusal;
use crate::med_type::{MedCategory, MedType};
use crate::money::{Amount, Ratio};
use crate::region::{CorpsLocalPairs, RegionCode, Route};
use crate::rules::policy::{Band, CrossProvinceAssistance};
use crate::rules::{BenefitPolicy, CiFund, Insutype};

/// Everything the home node needs to compute a benefit.
#[derive(Debug, Clone, Copy)]
pub struct BenefitInput<'a> {
    pub policy: &'a BenefitPolicy,
    pub person: &'a Person,
    pub registration: Option<&'a Registration>,
    pub treatment: RegionCode,
    pub hosp_lv: HospitalLevel,
    pub setl_date: NaiveDate,
    pub totals: &'a BillTotals,
    pub counters: &'a Counters,
    pub pairs: &'a CorpsLocalPairs,
    pub med_type: MedType,
    /// The chronic disease treated (`med_type` 14).
    pub dise_codg: Option<&'a str>,
    /// The encounter asks the personal account to pay (`acct_used_flag`).
    pub acct_used: bool,
    /// The personal account's balance before this settlement.
    pub acct_balance: Amount,
}

/// The computed benefit of one encounter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Benefit {
    pub route: Route,
    pub med_type: MedType,
    /// The registration kind whose reduction (if any) was applied.
    pub applied_kind: Option<RegistrationKind>,
    pub act_pay_dedc: Amount,
    pub pool_prop: Ratio,
    pub hifp_pay: Amount,
    pub hifmi_pay: Amount,
    pub hifob_pay: Amount,
    pub maf_pay: Amount,
    pub fund_pay_sumamt: Amount,
    pub psn_part_amt: Amount,
    /// Paid from the personal account, out of `psn_part_amt`.
    pub acct_pay: Amount,
    /// `psn_part_amt − acct_pay`: what the person pays in cash.
    pub psn_cash_pay: Amount,
    /// The account balance after this settlement.
    pub balc: Amount,
    pub delta: CounterDelta,
    pub counters_after: Counters,
}

/// What the funds pay before the personal account is looked at.
struct Funds {
    act_pay_dedc: Amount,
    pool_prop: Ratio,
    hifp_pay: Amount,
    hifmi_pay: Amount,
    hifob_pay: Amount,
    maf_pay: Amount,
    delta: CounterDelta,
}

/// Computes the benefit, or refuses with a reason.
pub fn compute_benefit(input: &BenefitInput) -> Result<Benefit, Refusal> {
    let route = crate::region::route(input.person.insuplc_admdvs, input.treatment, input.pairs);
    let unfiled = Registration::emergency_unfiled();
    let registration = match input.registration {
        Some(r) if r.kind == RegistrationKind::Emergency || r.governs(input.treatment, input.setl_date) => Some(r),
        // An emergency visit without a registration for the area is an emergency filing (§6).
        _ if input.med_type == MedType::EmergencyOutpatient => Some(&unfiled),
        other => other,
    };
    let applied_kind = check_registration(route, registration, input.treatment, input.setl_date)?;
    let funds = match input.med_type.category() {
        MedCategory::Inpatient => stay(input, route, applied_kind),
        MedCategory::Outpatient => outpatient(input, applied_kind, input.hosp_lv),
        MedCategory::Pharmacy if input.policy.outpatient.pharmacy_pooled => {
            outpatient(input, applied_kind, HospitalLevel::TOWNSHIP)
        }
        MedCategory::Pharmacy => Funds {
            act_pay_dedc: Amount::ZERO,
            pool_prop: Ratio::ZERO,
            hifp_pay: Amount::ZERO,
            hifmi_pay: Amount::ZERO,
            hifob_pay: Amount::ZERO,
            maf_pay: Amount::ZERO,
            delta: CounterDelta::default(),
        },
        MedCategory::Chronic => chronic(input, route, applied_kind)?,
    };
    let totals = input.totals;
    let fund_pay_sumamt = funds.hifp_pay + funds.hifmi_pay + funds.hifob_pay + funds.maf_pay;
    let psn_part_amt = totals.medfee_sumamt - fund_pay_sumamt;
    let balance = input.acct_balance.positive_part();
    let account_pays =
        input.acct_used && input.person.insutype == Insutype::Employee && input.policy.account_pays(input.med_type);
    let acct_pay = if account_pays {
        balance.min((psn_part_amt - totals.fulamt_ownpay_amt - totals.overlmt_selfpay).positive_part())
    } else {
        Amount::ZERO
    };
    let delta = CounterDelta { acct_pay, ..funds.delta };
    let benefit = Benefit {
        route,
        med_type: input.med_type,
        applied_kind,
        act_pay_dedc: funds.act_pay_dedc,
        pool_prop: funds.pool_prop,
        hifp_pay: funds.hifp_pay,
        hifmi_pay: funds.hifmi_pay,
        hifob_pay: funds.hifob_pay,
        maf_pay: funds.maf_pay,
        fund_pay_sumamt,
        psn_part_amt,
        acct_pay,
        psn_cash_pay: psn_part_amt - acct_pay,
        balc: balance - acct_pay,
        counters_after: input.counters.plus(&delta),
        delta,
    };
    // The bounds above make these hold for every input; a failure is a bug.
    assert!(!benefit.psn_part_amt.is_negative(), "fund pays more than the bill: {benefit:?}");
    assert!(!benefit.psn_cash_pay.is_negative() && !benefit.balc.is_negative(), "account overdrawn: {benefit:?}");
    Ok(benefit)
}

/// A stay (sections 1–4): basic fund per admission, then critical illness and
/// assistance.
fn stay(input: &BenefitInput, route: Route, applied_kind: Option<RegistrationKind>) -> Funds {
    let policy = input.policy;
    let totals = input.totals;
    let counters = input.counters;
    let tilted = tilted(input.person);
    let pool_prop = adjusted_ratio(input, policy.ratio[input.hosp_lv.index()], applied_kind, tilted);
    let deductible = policy.deductible[input.hosp_lv.index()];
    let act_pay_dedc = deductible.min(totals.inscp_scp_amt);
    let hifp_raw = Amount::round_half_up((totals.inscp_scp_amt - act_pay_dedc).times(pool_prop));
    let hifp_pay = within_basic_cap(policy, tilted, counters, hifp_raw);
    let mut funds = beyond_basic(input, route, applied_kind, act_pay_dedc, pool_prop, hifp_pay);
    funds.delta.hifp_paid = hifp_pay;
    funds
}

/// Outpatient pooling (§6.1): the year's deductible, the level ratio, the
/// annual outpatient cap; no critical illness or assistance.
fn outpatient(input: &BenefitInput, applied_kind: Option<RegistrationKind>, level: HospitalLevel) -> Funds {
    let op = &input.policy.outpatient;
    let counters = input.counters;
    let inscp = input.totals.inscp_scp_amt;
    let left = (op.annual_deductible - counters.op_dedc_used).positive_part();
    let act_pay_dedc = left.min(inscp);
    let pool_prop = adjusted_ratio(input, op.ratio[level.index()], applied_kind, false);
    let hifp_raw = Amount::round_half_up((inscp - act_pay_dedc).times(pool_prop));
    let hifp_pay = hifp_raw.min((op.annual_cap - counters.op_paid).positive_part());
    Funds {
        act_pay_dedc,
        pool_prop,
        hifp_pay,
        hifmi_pay: Amount::ZERO,
        hifob_pay: Amount::ZERO,
        maf_pay: Amount::ZERO,
        delta: CounterDelta { op_dedc_used: act_pay_dedc, op_paid: hifp_pay, ..CounterDelta::default() },
    }
}

/// A chronic or special disease (§6.2): a qualification in force, the
/// disease's ratio and cap (and the basic cap), then critical illness and
/// assistance as for a stay.
fn chronic(input: &BenefitInput, route: Route, applied_kind: Option<RegistrationKind>) -> Result<Funds, Refusal> {
    let policy = input.policy;
    let code = input.dise_codg.ok_or(Refusal::ChronicNotQualified)?;
    let disease = policy.chronic.get(code).ok_or(Refusal::ChronicNotQualified)?;
    let qualified = input.person.chronic.iter().any(|q| q.dise_codg == code && q.in_force_on(input.setl_date));
    if !qualified {
        return Err(Refusal::ChronicNotQualified);
    }
    let counters = input.counters;
    let tilted = tilted(input.person);
    let pool_prop = adjusted_ratio(input, disease.ratio, applied_kind, tilted);
    let hifp_raw = Amount::round_half_up(input.totals.inscp_scp_amt.times(pool_prop));
    let disease_left = (disease.annual_cap - counters.chronic_paid_for(code)).positive_part();
    let hifp_pay = within_basic_cap(policy, tilted, counters, hifp_raw.min(disease_left));
    let mut funds = beyond_basic(input, route, applied_kind, Amount::ZERO, pool_prop, hifp_pay);
    funds.delta.hifp_paid = hifp_pay;
    funds.delta.chronic = Some(ChronicDelta { dise_codg: code.to_string(), paid: hifp_pay });
    Ok(funds)
}

fn tilted(person: &Person) -> bool {
    person.special_group.is_some_and(|g| g.gets_tilts())
}

/// The basic annual cap, unless a special group lifts it.
fn within_basic_cap(policy: &BenefitPolicy, tilted: bool, counters: &Counters, raw: Amount) -> Amount {
    let cap_lifted = tilted && policy.special_basic.as_ref().is_some_and(|s| s.cap_lifted);
    if cap_lifted {
        raw
    } else {
        raw.min((policy.basic_cap - counters.hifp_paid).positive_part())
    }
}

/// Critical illness and medical assistance on what the basic fund left of
/// the in-scope amount, with the counters they move.
fn beyond_basic(
    input: &BenefitInput,
    route: Route,
    applied_kind: Option<RegistrationKind>,
    act_pay_dedc: Amount,
    pool_prop: Ratio,
    hifp_pay: Amount,
) -> Funds {
    let policy = input.policy;
    let inscp_selfpay = input.totals.inscp_scp_amt - hifp_pay;
    let ci_pay = critical_illness(policy, tilted(input.person), input.counters, inscp_selfpay);
    let (hifmi_pay, hifob_pay) = match policy.critical_illness.fund {
        CiFund::Hifmi => (ci_pay, Amount::ZERO),
        CiFund::Hifob => (Amount::ZERO, ci_pay),
    };
    let maf_pay = assistance(input, route, applied_kind, inscp_selfpay - ci_pay);
    Funds {
        act_pay_dedc,
        pool_prop,
        hifp_pay,
        hifmi_pay,
        hifob_pay,
        maf_pay,
        delta: CounterDelta { ci_base: inscp_selfpay, ci_paid: ci_pay, maf_paid: maf_pay, ..CounterDelta::default() },
    }
}

/// Which registration kind governs the settlement. Local and corps–local care
/// need none and get no reduction; elsewhere a registration in force for the
/// treatment area is needed, except for an emergency, which is deemed registered.
pub fn check_registration(
    route: Route,
    registration: Option<&Registration>,
    treatment: RegionCode,
    date: NaiveDate,
) -> Result<Option<RegistrationKind>, Refusal> {
    if !route.needs_registration() {
        return Ok(None);
    }
    let reg = registration.ok_or(Refusal::RegistrationRequired)?;
    if reg.kind == RegistrationKind::Emergency {
        return Ok(Some(RegistrationKind::Emergency));
    }
    if !reg.covers_area(treatment) {
        return Err(Refusal::RegistrationTargetMismatch);
    }
    if !reg.in_force_on(date) {
        return Err(Refusal::RegistrationNotInForce);
    }
    Ok(Some(reg.kind))
}

/// A base ratio (by level, or the disease's), plus the retiree bonus (when
/// the recognised contribution years reach the minimum), plus the
/// special-group bonus where it applies, then the registration kind's reduction.
fn adjusted_ratio(input: &BenefitInput, base: Ratio, kind: Option<RegistrationKind>, tilted: bool) -> Ratio {
    let policy = input.policy;
    let mut ratio = base;
    if input.person.retired && !policy.retiree_bonus_pp.is_zero() {
        let years = input.person.recognised_years(policy.region, input.pairs);
        if policy.retiree_min_years.is_none_or(|min| years >= min) {
            ratio = ratio.plus_points(policy.retiree_bonus_pp);
        }
    }
    if let (true, Some(s)) = (tilted, &policy.special_basic) {
        ratio = ratio.plus_points(s.bonus_pp);
    }
    let reduction = match kind {
        Some(RegistrationKind::Referral) => Some(policy.reductions.referral),
        Some(RegistrationKind::Emergency) => Some(policy.reductions.emergency),
        Some(RegistrationKind::OtherTemporary) => Some(policy.reductions.other_temporary),
        _ => None,
    };
    reduction.map_or(ratio, |r| r.apply(ratio))
}

/// Pays the bands that `[ci_base, ci_base + selfpay)` crosses; for special
/// groups the first band starts at the lowered threshold and every band gets
/// the bonus. Rounded once after the slices are summed, then capped.
fn critical_illness(policy: &BenefitPolicy, tilted: bool, counters: &Counters, selfpay: Amount) -> Amount {
    let ci = &policy.critical_illness;
    let special = ci.special.as_ref().filter(|_| tilted);
    let lo = counters.ci_base.as_decimal();
    let hi = lo + selfpay.as_decimal();
    let mut exact = Decimal::ZERO;
    for (i, band) in ci.bands.iter().enumerate() {
        let Band { from, to, ratio } = *band;
        let (from, ratio) = match special {
            Some(s) => {
                let from = if i == 0 { Amount::round_half_up(ci.threshold.times(s.threshold_factor)) } else { from };
                (from, ratio.plus_points(s.bonus_pp))
            }
            None => (from, ratio),
        };
        let start = lo.max(from.as_decimal());
        let end = to.map_or(hi, |t| hi.min(t.as_decimal()));
        if end > start {
            exact += (end - start) * ratio.as_decimal();
        }
    }
    let raw = Amount::round_half_up(exact);
    if special.is_some_and(|s| s.cap_lifted) {
        raw
    } else {
        raw.min((ci.annual_cap - counters.ci_paid).positive_part())
    }
}

/// A share of what remains after critical illness, for the groups the policy
/// names, up to the annual limit; some policies pay it across provinces only
/// for referred or emergency care.
fn assistance(input: &BenefitInput, route: Route, kind: Option<RegistrationKind>, remaining: Amount) -> Amount {
    let a = &input.policy.assistance;
    let Some(ratio) = input.person.special_group.and_then(|g| a.ratios.get(&g)) else {
        return Amount::ZERO;
    };
    let restricted = route == Route::CrossProvince
        && a.cross_province == CrossProvinceAssistance::ReferredOrEmergency
        && !matches!(kind, Some(RegistrationKind::Referral | RegistrationKind::Emergency));
    if restricted {
        return Amount::ZERO;
    }
    let raw = Amount::round_half_up(remaining.positive_part().times(*ratio));
    raw.min((a.annual_limit - input.counters.maf_paid).positive_part())
}
