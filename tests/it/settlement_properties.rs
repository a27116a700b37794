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
    classify, settle, BillItem, Counters, Encounter, HospitalLevel, Person, Registration, RegistrationKind, SettleError,
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
    (0..HOMES.len(), any::<bool>(), group, years).prop_map(|(h, retired, special_group, years)| Person {
        psn_no: "P".into(),
        insuplc_admdvs: code(HOMES[h].0),
        insutype: HOMES[h].1,
        retired,
        special_group,
        contribution_years: years.into_iter().map(|(r, y)| (code(r), y)).collect::<BTreeMap<_, _>>(),
    })
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
    (money(50_000_000), money(50_000_000), money(50_000_000), money(10_000_000)).prop_map(|(a, b, c, d)| Counters {
        hifp_paid: a,
        ci_base: b,
        ci_paid: c,
        maf_paid: d,
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
    ) -> (Person, Option<Registration>, Encounter, Counters) {
        let encounter = Encounter {
            mdtrtarea_admvs: code(TREATMENTS[treatment]),
            hosp_lv: HospitalLevel::new(level).expect("level"),
            setl_date: date,
            items,
        };
        (person, registration, encounter, counters)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn settlement_invariants((person, registration, encounter, counters) in scenario()) {
        let result = settle(book(), &person, registration.as_ref(), &encounter, &counters);
        // Computing twice gives the same answer.
        prop_assert_eq!(&result, &settle(book(), &person, registration.as_ref(), &encounter, &counters));
        let s = match result {
            Ok(s) => s,
            Err(SettleError::Refused(_)) => {
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

        // The reversal is the exact negation and restores the counters.
        let r = f.negated();
        for (a, b) in f.amounts().iter().zip(r.amounts().iter()) {
            prop_assert_eq!(*a + *b, Amount::ZERO);
        }
        let b = &s.benefit;
        prop_assert_eq!(b.counters_after.minus(&b.delta), counters);
        prop_assert_eq!(b.delta.hifp_paid, f.hifp_pay);
        prop_assert_eq!(b.delta.ci_paid, f.hifmi_pay + f.hifob_pay);
        prop_assert_eq!(b.delta.maf_paid, f.maf_pay);

        // Caps are never exceeded by this settlement's counters (unless lifted
        // for a special group by the policy).
        let policy = book().policy_for(person.insuplc_admdvs, person.insutype, encounter.setl_date).expect("policy");
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
    let (mut settled, mut refused) = (0, 0);
    let mut routes = std::collections::BTreeSet::new();
    for _ in 0..2000 {
        let (person, registration, encounter, counters) = strategy.new_tree(&mut runner).expect("tree").current();
        match settle(book(), &person, registration.as_ref(), &encounter, &counters) {
            Ok(s) => {
                settled += 1;
                routes.insert(s.benefit.route);
            }
            Err(_) => refused += 1,
        }
    }
    eprintln!("settled {settled} refused {refused}");
    assert!(settled > 800, "only {settled} of 2000 settled");
    assert!(refused > 100, "only {refused} of 2000 refused");
    assert_eq!(routes.len(), 4, "routes seen: {routes:?}");
}
