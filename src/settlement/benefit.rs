//! The home side of a settlement (参保地政策): basic fund, critical illness and
//! medical assistance, computed with the home policy and the person's
//! year-to-date counters. Pure: the same input always gives the same answer.

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::bill::BillTotals;
use super::counters::{CounterDelta, Counters};
use super::person::{HospitalLevel, Person, Registration, RegistrationKind};
use super::refusal::Refusal;
use crate::money::{Amount, Ratio};
use crate::region::{CorpsLocalPairs, RegionCode, Route};
use crate::rules::policy::{Band, CrossProvinceAssistance};
use crate::rules::{BenefitPolicy, CiFund};

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
}

/// The computed benefit of one encounter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Benefit {
    pub route: Route,
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
    pub delta: CounterDelta,
    pub counters_after: Counters,
}

/// Computes the benefit, or refuses with a reason.
pub fn compute_benefit(input: &BenefitInput) -> Result<Benefit, Refusal> {
    let route = crate::region::route(input.person.insuplc_admdvs, input.treatment, input.pairs);
    let applied_kind = check_registration(route, input.registration, input.treatment, input.setl_date)?;
    let policy = input.policy;
    let person = input.person;
    let totals = input.totals;
    let counters = input.counters;
    let tilted = person.special_group.is_some_and(|g| g.gets_tilts());

    // 1. Basic fund.
    let pool_prop = basic_ratio(input, applied_kind, tilted);
    let deductible = policy.deductible[input.hosp_lv.index()];
    let act_pay_dedc = deductible.min(totals.inscp_scp_amt);
    let hifp_raw = Amount::round_half_up((totals.inscp_scp_amt - act_pay_dedc).times(pool_prop));
    let cap_lifted = tilted && policy.special_basic.as_ref().is_some_and(|s| s.cap_lifted);
    let hifp_pay =
        if cap_lifted { hifp_raw } else { hifp_raw.min((policy.basic_cap - counters.hifp_paid).positive_part()) };

    // 2. Critical illness over this encounter's slice of the cumulative base.
    let inscp_selfpay = totals.inscp_scp_amt - hifp_pay;
    let ci_pay = critical_illness(policy, tilted, counters, inscp_selfpay);
    let (hifmi_pay, hifob_pay) = match policy.critical_illness.fund {
        CiFund::Hifmi => (ci_pay, Amount::ZERO),
        CiFund::Hifob => (Amount::ZERO, ci_pay),
    };

    // 3. Medical assistance.
    let maf_pay = assistance(input, route, applied_kind, inscp_selfpay - ci_pay);

    let fund_pay_sumamt = hifp_pay + hifmi_pay + hifob_pay + maf_pay;
    let delta = CounterDelta { hifp_paid: hifp_pay, ci_base: inscp_selfpay, ci_paid: ci_pay, maf_paid: maf_pay };
    let benefit = Benefit {
        route,
        applied_kind,
        act_pay_dedc,
        pool_prop,
        hifp_pay,
        hifmi_pay,
        hifob_pay,
        maf_pay,
        fund_pay_sumamt,
        psn_part_amt: totals.medfee_sumamt - fund_pay_sumamt,
        delta,
        counters_after: counters.plus(&delta),
    };
    // The bounds above make these hold for every input; a failure is a bug.
    assert!(!benefit.psn_part_amt.is_negative(), "fund pays more than the bill: {benefit:?}");
    Ok(benefit)
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

/// Level ratio, plus the retiree bonus (when the recognised contribution years
/// reach the minimum), plus the special-group bonus, then the registration
/// kind's reduction.
fn basic_ratio(input: &BenefitInput, kind: Option<RegistrationKind>, tilted: bool) -> Ratio {
    let policy = input.policy;
    let mut ratio = policy.ratio[input.hosp_lv.index()];
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
