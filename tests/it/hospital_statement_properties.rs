//! Institutions' monthly statements over random years (issue 26): whatever
//! the settlements, reversals, deductions, credit ratings, holdback rules and
//! assessment scores, `payable + forfeited + outstanding = settled − deducted`
//! to the fen, and every fen held is released or forfeited exactly once.

use proptest::prelude::*;
use rust_decimal::Decimal;

use xclear::clearing::hospital::{
    hospital_statement, Deduction, HoldbackAccount, HoldbackPolicy, HospitalLine, HospitalMonth, Release,
};
use xclear::clearing::Month;
use xclear::med_type::MedType;
use xclear::money::{Amount, Ratio};
use xclear::region::RegionCode;

fn cents(c: i64) -> Amount {
    Amount::round_half_up(Decimal::new(c, 2))
}

/// (fund cents, account cents, reversal, home index, type index)
type RawLine = (i64, i64, bool, usize, usize);

fn month_strategy() -> impl Strategy<Value = (Vec<RawLine>, Vec<i64>, bool, u32)> {
    (
        prop::collection::vec((0i64..5_000_000, 0i64..50_000, any::<bool>(), 0usize..3, 0usize..8), 0..12),
        prop::collection::vec(0i64..200_000, 0..3),
        any::<bool>(),
        0u32..=100,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_fen_held_comes_back_once_and_the_year_adds_up(
        months in prop::collection::vec(month_strategy(), 1..26),
        rate_bp in 0u32..=500,
        annual in any::<bool>(),
    ) {
        let release = if annual { Release::Annual } else { Release::NextMonth };
        let policy = HoldbackPolicy::new(Decimal::new(i64::from(rate_bp), 2), release).expect("0–5%");
        let homes = ["611000", "654000", "440600"].map(|r| RegionCode::parse(r).expect("region"));
        let mut month = Month::parse("2026-01").expect("month");
        let mut before = HoldbackAccount::default();
        let (mut payable, mut forfeited, mut settled, mut deducted, mut held, mut released) =
            (Amount::ZERO, Amount::ZERO, Amount::ZERO, Amount::ZERO, Amount::ZERO, Amount::ZERO);
        let mut previous_held = Amount::ZERO;
        for (i, (raw, raw_deductions, credit_rated, score)) in months.iter().enumerate() {
            let lines: Vec<HospitalLine> = raw
                .iter()
                .enumerate()
                .map(|(j, (fund, acct, reversal, home, t))| {
                    let sign = if *reversal { -1 } else { 1 };
                    HospitalLine {
                        setl_id: format!("S{i}-{j}"),
                        home: homes[*home],
                        med_type: MedType::ALL[*t],
                        medfee_sumamt: cents(sign * (fund + acct + 1000)),
                        fund_pay: cents(sign * fund),
                        acct_pay: cents(sign * acct),
                    }
                })
                .collect();
            let deductions: Vec<Deduction> = raw_deductions
                .iter()
                .map(|c| Deduction { amount: cents(*c), reason: "audit".into(), setl_id: None })
                .collect();
            let m = HospitalMonth {
                month,
                region: homes[0],
                fixmedins_code: "H1",
                credit_rated: *credit_rated,
                lines: &lines,
                deductions: &deductions,
                before,
                assessment: Ratio::from_percent(Decimal::from(*score)),
            };
            let s = hospital_statement(&m, &policy);
            // The splits add up to the totals.
            let sum = |m: &mut dyn Iterator<Item = &xclear::clearing::hospital::Totals>| {
                m.fold((0i64, Amount::ZERO, Amount::ZERO), |(c, f, a), t| (c + t.count, f + t.fund_pay, a + t.acct_pay))
            };
            let totals = (s.totals.count, s.totals.fund_pay, s.totals.acct_pay);
            prop_assert_eq!(sum(&mut s.by_med_type.values()), totals);
            prop_assert_eq!(sum(&mut s.by_home.values()), totals);
            prop_assert_eq!(s.payable, s.settled - s.holdback + s.released - s.deductions);
            prop_assert!(!s.holdback.is_negative() && s.holdback <= s.totals.fund_pay.positive_part());
            match release {
                // Exactly what the month before held, once.
                Release::NextMonth => prop_assert_eq!(s.released, previous_held),
                Release::Annual if month.number() == 12 => prop_assert_eq!(s.after.outstanding, Amount::ZERO),
                Release::Annual => prop_assert_eq!(s.released + s.forfeited, Amount::ZERO),
            }
            previous_held = s.holdback;
            payable = payable + s.payable;
            forfeited = forfeited + s.forfeited;
            settled = settled + s.settled;
            deducted = deducted + s.deductions;
            held = held + s.holdback;
            released = released + s.released;
            before = s.after;
            month = month.next();
        }
        prop_assert_eq!(payable + forfeited + before.outstanding, settled - deducted);
        prop_assert_eq!(released + forfeited + before.outstanding, held);
    }
}
