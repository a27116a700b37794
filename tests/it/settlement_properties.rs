//! Property tests over random bills, persons, registrations and counters,
//! against the reference rules.

use crate::common;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use chrono::{Duration, NaiveDate};
use proptest::prelude::*;
use rust_decimal::Decimal;

use xclear::money::Amount;
use xclear::region::RegionCode;
use xclear::rules::{Insutype, RuleBook, SpecialGroup};
use xclear::settlement::{
    classify, settle, BillItem, ChronicQualification, Counters, Encounter, HospitalLevel, MedCategory, MedType, Person,
    Refusal, Registration, RegistrationKind, SettleError,
};

fn book() -> &'static RuleBook {
    static BOOK: OnceLock<RuleBook> = OnceLock::new();
    BOOK.get_or_init(common::rules)
}

fn code(s: &str) -> RegionCode {
    RegionCode::parse(s).expect("region")
}

const HOMES: &[(&str, Insutype)] = &[
    ("611000", Insutype::Resident),
    ("611002", Insutype::Resident),
    ("654000", Insutype::Resident),
    ("654002", Insutype::Employee),
    ("660400", Insutype::Resident),
    ("440600", Insutype::Employee),
    ("540000", Insutype::Resident),
    ("540102", Insutype::Resident),
    ("330100", Insutype::Resident),
];
const TREATMENTS: &[&str] = &[
    "110105", "110000", "440604", "654002", "654000", "660400", "660402", "540102", "611002", "611000", "330106",
    "330200", "610100", "120101", "650100",
];
const TARGETS: &[&str] =
    &["110000", "110105", "440000", "654000", "660400", "540000", "611000", "330100", "330000", "610000", "650000"];
const CODES: &[&str] = &["XA001", "XA002", "XB001", "XB002", "XC001", "FW001", "FW002", "ZZ999"];
/// The five listed diseases and one no policy lists.
const DISEASES: &[&str] = &["M03900", "M01600", "M00500", "M07800", "M08300", "M99999"];

fn money(max_cents: i64) -> impl Strategy<Value = Amount> {
    (0..=max_cents).prop_map(|c| Amount::round_half_up(Decimal::new(c, 2)))
}

fn item() -> impl Strategy<Value = BillItem> {
    (0..CODES.len(), 1i64..=100_000, 0u32..=2, 1i64..=50_000_000, prop::bool::ANY).prop_map(
        |(c, qty, qty_scale, price, four_dp)| BillItem {
            code: CODES[c].to_string(),
            qty: Decimal::new(qty, qty_scale),
            price: if four_dp { Decimal::new(price, 4) } else { Decimal::new(price, 2) },
        },
    )
}

fn person() -> impl Strategy<Value = Person> {
    let group = prop::option::of(prop::sample::select(SpecialGroup::ALL.to_vec()));
    let years = prop::collection::btree_map(
        prop::sample::select(vec!["654000", "660400", "440600", "611000"]),
        0u32..=40,
        0..3,
    );
    let start = NaiveDate::from_ymd_opt(2025, 10, 1).expect("date");
    let qualifications = prop::collection::btree_map(
        prop::sample::select(DISEASES.to_vec()),
        (0i64..500, prop::option::of(0i64..500)),
        0..3,
    )
    .prop_map(move |m| {
        m.into_iter()
            .map(|(d, (beg, len))| ChronicQualification {
                dise_codg: d.to_string(),
                begndate: start + Duration::days(beg),
                enddate: len.map(|l| start + Duration::days(beg + l)),
            })
            .collect::<Vec<_>>()
    });
    (0..HOMES.len(), any::<bool>(), group, years, qualifications).prop_map(
        |(h, retired, special_group, years, chronic)| Person {
            psn_no: "P".into(),
            insuplc_admdvs: code(HOMES[h].0),
            insutype: HOMES[h].1,
            retired,
            special_group,
            contribution_years: years.into_iter().map(|(r, y)| (code(r), y)).collect::<BTreeMap<_, _>>(),
            chronic,
        },
    )
}

fn setl_date() -> impl Strategy<Value = NaiveDate> {
    (0i64..365).prop_map(|d| NaiveDate::from_ymd_opt(2026, 1, 1).expect("date") + Duration::days(d))
}

fn registration(date: NaiveDate) -> impl Strategy<Value = Option<Registration>> {
    let filed = (
        prop::sample::select(RegistrationKind::ALL.to_vec()),
        0..TARGETS.len(),
        -400i64..30,
        prop::option::of(-30i64..400),
    )
        .prop_map(move |(kind, t, beg, end)| Registration {
            kind,
            target_admdvs: Some(code(TARGETS[t])),
            begndate: Some(date + Duration::days(beg)),
            enddate: end.map(|e| date + Duration::days(e)).map(|e| e.max(date + Duration::days(beg))),
        });
    prop_oneof![Just(None), Just(Some(Registration::emergency_unfiled())), filed.prop_map(Some)]
}

fn counters() -> impl Strategy<Value = Counters> {
    // A disease's counter is absent or above zero: a reversal that brings
    // one back to zero removes it, so a zero entry would not round-trip.
    let chronic = prop::collection::btree_map(
        prop::sample::select(DISEASES.to_vec()),
        (1i64..=20_000_000).prop_map(|c| Amount::round_half_up(Decimal::new(c, 2))),
        0..3,
    );
    (
        (money(50_000_000), money(50_000_000), money(50_000_000), money(10_000_000)),
        (money(150_000), money(600_000), chronic),
    )
        .prop_map(|((a, b, c, d), (op_dedc_used, op_paid, chronic))| Counters {
            hifp_paid: a,
            ci_base: b,
            ci_paid: c,
            maf_paid: d,
            op_dedc_used,
            op_paid,
            chronic_paid: chronic.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        })
}

prop_compose! {
    fn scenario()(date in setl_date())(
        date in Just(date),
        person in person(),
        registration in registration(date),
        treatment in 0..TREATMENTS.len(),
        level in 0i64..=3,
        items in prop::collection::vec(item(), 1..12),
        counters in counters(),
        med_type in prop::sample::select(MedType::ALL.to_vec()),
        disease in 0..DISEASES.len(),
        acct_used in any::<bool>(),
        balance in money(1_000_000),
    ) -> (Person, Option<Registration>, Encounter, Counters, Amount) {
        let encounter = Encounter {
            mdtrtarea_admvs: code(TREATMENTS[treatment]),
            hosp_lv: HospitalLevel::new(if med_type == MedType::Pharmacy { 0 } else { level }).expect("level"),
            setl_date: date,
            items,
            med_type,
            dise_codg: (med_type == MedType::ChronicOutpatient).then(|| DISEASES[disease].to_string()),
            acct_used,
        };
        (person, registration, encounter, counters, balance)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn settlement_invariants((person, registration, encounter, counters, balance) in scenario()) {
        let result = settle(book(), &person, registration.as_ref(), &encounter, &counters, balance);
        // Computing twice gives the same answer.
        prop_assert_eq!(&result, &settle(book(), &person, registration.as_ref(), &encounter, &counters, balance));
        let policy = book().policy_for(person.insuplc_admdvs, person.insutype, encounter.setl_date).expect("policy");
        let s = match result {
            Ok(s) => s,
            Err(SettleError::Refused(Refusal::ChronicNotQualified)) => {
                prop_assert_eq!(encounter.med_type, MedType::ChronicOutpatient);
                let code = encounter.dise_codg.as_deref().expect("14 has a disease");
                let qualified = person.chronic.iter().any(|q| q.dise_codg == code && q.in_force_on(encounter.setl_date));
                prop_assert!(!qualified || !policy.chronic.contains_key(code), "qualified for a listed {} yet refused", code);
                return Ok(());
            }
            Err(SettleError::Refused(_)) => {
                prop_assert!(encounter.med_type != MedType::EmergencyOutpatient, "an emergency visit refused for its registration");
                let route = xclear::region::route(person.insuplc_admdvs, encounter.mdtrtarea_admvs, book().pairs());
                prop_assert!(route.needs_registration(), "refused on a {:?} route", route);
                prop_assert!(registration.as_ref().is_none_or(|r| r.kind != RegistrationKind::Emergency));
                return Ok(());
            }
            Err(e) => return Err(TestCaseError::fail(format!("unexpected {e}"))),
        };
        let f = s.figures();
        for a in f.amounts() {
            prop_assert!(!a.is_negative(), "negative component in {:?}", f);
        }
        prop_assert_eq!(f.fulamt_ownpay_amt + f.overlmt_selfpay + f.preselfpay_amt + f.inscp_scp_amt, f.medfee_sumamt);
        prop_assert_eq!(f.hifp_pay + f.hifmi_pay + f.hifob_pay + f.maf_pay, f.fund_pay_sumamt);
        prop_assert_eq!(f.fund_pay_sumamt + f.psn_part_amt, f.medfee_sumamt);
        prop_assert!(f.psn_part_amt >= f.fulamt_ownpay_amt + f.overlmt_selfpay + f.preselfpay_amt);
        prop_assert!(f.act_pay_dedc <= f.inscp_scp_amt);
        prop_assert_eq!(f.med_type, encounter.med_type);
        // The personal account: pays part of the person's share, never more
        // than the balance, and only for employees who ask.
        prop_assert_eq!(f.acct_pay + f.psn_cash_pay, f.psn_part_amt);
        prop_assert_eq!(f.balc + f.acct_pay, balance);
        prop_assert!(f.acct_pay <= f.psn_part_amt - f.fulamt_ownpay_amt - f.overlmt_selfpay);
        if person.insutype == Insutype::Resident || !encounter.acct_used {
            prop_assert_eq!(f.acct_pay, Amount::ZERO);
        }

        // The reversal is the exact negation and restores the counters.
        let r = f.negated();
        for (a, b) in f.amounts().iter().zip(r.amounts().iter()) {
            prop_assert_eq!(*a + *b, Amount::ZERO);
        }
        let b = &s.benefit;
        prop_assert_eq!(&b.counters_after.minus(&b.delta), &counters);
        prop_assert_eq!(b.delta.acct_pay, f.acct_pay);
        prop_assert_eq!(b.delta.negated().negated(), b.delta.clone());
        let op = &policy.outpatient;
        match encounter.med_type.category() {
            MedCategory::Outpatient | MedCategory::Pharmacy => {
                // Outpatient pooling: its own counters and cap; nothing else moves.
                prop_assert_eq!(f.hifmi_pay + f.hifob_pay + f.maf_pay, Amount::ZERO);
                prop_assert_eq!(b.delta.op_paid, f.hifp_pay);
                prop_assert_eq!(b.delta.op_dedc_used, f.act_pay_dedc);
                prop_assert_eq!((b.delta.hifp_paid, b.delta.ci_base, b.delta.chronic.clone()), (Amount::ZERO, Amount::ZERO, None));
                prop_assert!(b.counters_after.op_paid <= op.annual_cap.max(counters.op_paid));
                prop_assert!(b.counters_after.op_dedc_used <= op.annual_deductible.max(counters.op_dedc_used));
                if encounter.med_type == MedType::Pharmacy && !op.pharmacy_pooled {
                    prop_assert_eq!(f.fund_pay_sumamt, Amount::ZERO);
                    prop_assert_eq!(&b.counters_after, &counters);
                }
            }
            MedCategory::Chronic => {
                let code = encounter.dise_codg.clone().expect("disease");
                prop_assert_eq!(b.delta.chronic.clone().map(|c| (c.dise_codg, c.paid)), Some((code.clone(), f.hifp_pay)));
                prop_assert_eq!(b.delta.hifp_paid, f.hifp_pay);
                prop_assert_eq!(f.act_pay_dedc, Amount::ZERO);
                let cap = policy.chronic[&code].annual_cap;
                prop_assert!(b.counters_after.chronic_paid_for(&code) <= cap.max(counters.chronic_paid_for(&code)));
                prop_assert_eq!((b.delta.op_paid, b.delta.op_dedc_used), (Amount::ZERO, Amount::ZERO));
            }
            MedCategory::Inpatient => {
                prop_assert_eq!(b.delta.hifp_paid, f.hifp_pay);
                prop_assert_eq!((b.delta.op_paid, b.delta.chronic.clone()), (Amount::ZERO, None));
            }
        }
        prop_assert_eq!(b.delta.ci_paid, f.hifmi_pay + f.hifob_pay);
        prop_assert_eq!(b.delta.maf_paid, f.maf_pay);

        // Caps are never exceeded by this settlement's counters (unless lifted
        // for a special group by the policy).
        let tilted = person.special_group.is_some_and(|g| g.gets_tilts());
        let basic_lifted = tilted && policy.special_basic.as_ref().is_some_and(|x| x.cap_lifted);
        let ci_lifted = tilted && policy.critical_illness.special.as_ref().is_some_and(|x| x.cap_lifted);
        if !basic_lifted {
            prop_assert!(b.counters_after.hifp_paid <= policy.basic_cap.max(counters.hifp_paid));
        }
        if !ci_lifted {
            prop_assert!(b.counters_after.ci_paid <= policy.critical_illness.annual_cap.max(counters.ci_paid));
        }
        prop_assert!(b.counters_after.maf_paid <= policy.assistance.annual_limit.max(counters.maf_paid));
    }

    #[test]
    fn item_parts_sum_to_the_item(items in prop::collection::vec(item(), 1..20), t in 0..TREATMENTS.len()) {
        let date = NaiveDate::from_ymd_opt(2026, 6, 1).expect("date");
        let catalogue = book().catalogue_for(code(TREATMENTS[t]), date).expect("catalogue");
        let (splits, totals) = classify(catalogue, &items);
        for s in &splits {
            for part in [s.fulamt_ownpay_amt, s.overlmt_selfpay, s.preselfpay_amt, s.inscp_scp_amt] {
                prop_assert!(!part.is_negative());
            }
            prop_assert_eq!(s.fulamt_ownpay_amt + s.overlmt_selfpay + s.preselfpay_amt + s.inscp_scp_amt, s.amount);
        }
        prop_assert_eq!(splits.iter().map(|s| s.amount).sum::<Amount>(), totals.medfee_sumamt);
        // Item order does not matter.
        let mut reversed = items.clone();
        reversed.reverse();
        prop_assert_eq!(classify(catalogue, &reversed).1, totals);
    }

    #[test]
    fn calc_parser_never_panics(text in ".{0,300}") {
        let _ = xclear::calc::parse_case(&text);
    }

    #[test]
    fn calc_parser_survives_mutated_cases(pos in 0usize..2000, byte in any::<u8>()) {
        let mut bytes = common::example_case().to_string().into_bytes();
        let i = pos % bytes.len();
        bytes[i] = byte;
        if let Ok(text) = String::from_utf8(bytes) {
            let _ = xclear::calc::run_case(book(), &text);
        }
    }
}

/// Guards the properties above against vacuity: most generated scenarios must
/// settle, and every refusal reason and route must occur.
#[test]
fn generated_scenarios_cover_settlements_and_refusals() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRng, TestRunner};
    let mut runner =
        TestRunner::new_with_rng(Config::default(), TestRng::deterministic_rng(Config::default().rng_algorithm));
    let strategy = scenario();
    let (mut settled, mut refused, mut from_account) = (0, 0, 0);
    let mut routes = std::collections::BTreeSet::new();
    let mut categories = std::collections::BTreeSet::new();
    let mut reasons = std::collections::BTreeSet::new();
    for _ in 0..4000 {
        let (person, registration, encounter, counters, balance) =
            strategy.new_tree(&mut runner).expect("tree").current();
        match settle(book(), &person, registration.as_ref(), &encounter, &counters, balance) {
            Ok(s) => {
                settled += 1;
                routes.insert(s.benefit.route);
                if s.benefit.fund_pay_sumamt > Amount::ZERO {
                    categories.insert(encounter.med_type.category());
                }
                from_account += usize::from(s.benefit.acct_pay > Amount::ZERO);
            }
            Err(SettleError::Refused(r)) => {
                refused += 1;
                reasons.insert(r.code());
            }
            Err(e) => panic!("{e}"),
        }
    }
    eprintln!("settled {settled} refused {refused} from the account {from_account}");
    assert!(settled > 1600, "only {settled} of 4000 settled");
    assert!(refused > 200, "only {refused} of 4000 refused");
    assert_eq!(routes.len(), 4, "routes seen: {routes:?}");
    assert_eq!(categories.len(), 4, "medical types with a fund payment: {categories:?}");
    assert!(reasons.contains("chronic_not_qualified") && reasons.contains("registration_required"), "{reasons:?}");
    assert!(from_account > 100, "only {from_account} paid from an account");
}
