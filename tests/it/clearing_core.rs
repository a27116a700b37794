//! Monthly clearing over generated lines: positions sum to zero and equal an
//! independent computation; a dropped line is caught and carried; disputes
//! move exactly the disputed lines; the advance warning fires at the
//! threshold and not a cent before; statements are canonical.

use std::collections::BTreeMap;

use proptest::prelude::*;
use rust_decimal::Decimal;
use xclear::clearing::advance::{default_quota, status};
use xclear::clearing::statement::HeadRef;
use xclear::clearing::{close, Amounts, Channel, ClosingInput, Dispute, Line, Month, PendingReason};
use xclear::money::{Amount, Ratio};
use xclear::region::RegionCode;

const REGIONS: [&str; 7] = ["611000", "654000", "660400", "440600", "540000", "330100", "110000"];

fn code(s: &str) -> RegionCode {
    RegionCode::parse(s).expect("region")
}

fn corps_local(a: RegionCode, b: RegionCode) -> bool {
    let pair = [code("660400"), code("654000")];
    (a == pair[0] && b == pair[1]) || (a == pair[1] && b == pair[0])
}

fn march() -> Month {
    Month::parse("2026-03").expect("month")
}

fn line(i: usize, home: usize, treatment: usize, cents: i64) -> Line {
    let (h, t) = (code(REGIONS[home]), code(REGIONS[treatment]));
    let fund = Amount::round_half_up(Decimal::new(cents, 2));
    // Every third settlement also paid from a personal account; the medical
    // types take turns.
    let acct = if i.is_multiple_of(3) { Amount::round_half_up(Decimal::new(cents / 4, 2)) } else { Amount::ZERO };
    let med_type = xclear::med_type::MedType::ALL[i % xclear::med_type::MedType::ALL.len()];
    Line {
        setl_id: format!("S{i:06}"),
        home: h,
        treatment: t,
        channel: if corps_local(h, t) { Channel::CorpsLocal } else { Channel::National },
        month: march(),
        amounts: Amounts {
            medfee_sumamt: fund + acct,
            hifp_pay: fund,
            fund_pay_sumamt: fund,
            acct_pay: acct,
            by_type: xclear::clearing::TypeSplit::of(med_type.category(), fund + acct),
            ..Amounts::default()
        },
        med_type,
        count: 1,
    }
}

fn lines_strategy() -> impl Strategy<Value = Vec<Line>> {
    prop::collection::vec((0..7usize, 0..7usize, -500_000i64..5_000_000), 1..300)
        .prop_map(|v| {
            v.into_iter()
                .enumerate()
                .filter(|(_, (h, t, _))| h != t)
                .map(|(i, (h, t, c))| line(i, h, t, c))
                .collect::<Vec<_>>()
        })
        .prop_filter("a month with at least one line", |v| !v.is_empty())
}

fn input(lines: &[Line]) -> ClosingInput {
    ClosingInput { treatment_lines: lines.to_vec(), home_lines: lines.to_vec(), ..ClosingInput::default() }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn positions_sum_to_zero_and_match_an_independent_sum(lines in lines_strategy()) {
        let s = close(march(), &input(&lines), corps_local);
        prop_assert_eq!(s.positions_sum(), Amount::ZERO);
        prop_assert!(s.pending.is_empty());
        // Independently: receivable as treatment minus payable as home, national lines only.
        let mut expect: BTreeMap<RegionCode, Amount> = BTreeMap::new();
        for l in lines.iter().filter(|l| l.channel == Channel::National) {
            // The home region owes what the funds and the person's account paid.
            let owed = l.amounts.fund_pay_sumamt + l.amounts.acct_pay;
            *expect.entry(l.treatment).or_default() = expect.get(&l.treatment).copied().unwrap_or_default() + owed;
            *expect.entry(l.home).or_default() = expect.get(&l.home).copied().unwrap_or_default() - owed;
        }
        for (r, p) in &s.positions {
            prop_assert_eq!(p.net, expect.get(r).copied().unwrap_or_default(), "region {}", r);
        }
        // Transfers balance: paid in = paid out.
        let (pay_in, pay_out): (Vec<_>, Vec<_>) = s.transfers.iter().partition(|t| t.direction == xclear::clearing::netting::Direction::PayIn);
        prop_assert_eq!(pay_in.iter().map(|t| t.amount).sum::<Amount>(), pay_out.iter().map(|t| t.amount).sum::<Amount>());
        // The corps–local channel holds exactly its lines.
        let corps: Amount = lines.iter().filter(|l| l.channel == Channel::CorpsLocal)
            .map(|l| l.amounts.fund_pay_sumamt + l.amounts.acct_pay)
            .zip(lines.iter().filter(|l| l.channel == Channel::CorpsLocal))
            .map(|(owed, l)| if l.home < l.treatment { owed } else { -owed }).sum();
        prop_assert_eq!(s.corps_local.iter().map(|b| b.a_owes_b).sum::<Amount>(), corps);
        // Each pair line's split by medical type adds up to what it owes, and
        // every category holds exactly its lines.
        for p in &s.pairs {
            prop_assert_eq!(p.amounts.by_type.total(), p.amounts.fund_pay_sumamt + p.amounts.acct_pay);
        }
        for c in xclear::med_type::MedCategory::ALL {
            let expect: Amount = lines.iter().filter(|l| l.med_type.category() == c).map(|l| l.amounts.fund_pay_sumamt + l.amounts.acct_pay).sum();
            prop_assert_eq!(s.pairs.iter().map(|p| p.amounts.by_type.get(c)).sum::<Amount>(), expect, "{:?}", c);
        }
    }

    #[test]
    fn statements_are_canonical(lines in lines_strategy()) {
        let a = close(march(), &input(&lines), corps_local);
        let mut shuffled = lines.clone();
        shuffled.reverse();
        let b = close(march(), &input(&shuffled), corps_local);
        prop_assert_eq!(a.canonical_json(), b.canonical_json());
        prop_assert_eq!(a.canonical_json(), close(march(), &input(&lines), corps_local).canonical_json());
    }

    #[test]
    fn a_dropped_line_is_caught_and_carried(lines in lines_strategy(), pick in any::<prop::sample::Index>()) {
        let dropped = pick.get(&lines).clone();
        let mut inp = input(&lines);
        inp.treatment_lines.retain(|l| l.setl_id != dropped.setl_id);
        let s = close(march(), &inp, corps_local);
        prop_assert_eq!(s.pending.len(), 1);
        prop_assert_eq!(&s.pending[0].setl_id, &dropped.setl_id);
        prop_assert_eq!(s.pending[0].reason, PendingReason::MissingAtTreatment);
        prop_assert_eq!(s.positions_sum(), Amount::ZERO);
        let cleared: u64 = s.pairs.iter().map(|p| p.count).sum();
        prop_assert_eq!(cleared as usize, lines.len() - 1);
        // Next month the treatment side reports it late: it clears, still counted from March.
        let april = march().next();
        let next = ClosingInput { treatment_lines: vec![dropped.clone()], home_lines: vec![dropped.clone()], carried: s.pending.clone(), ..ClosingInput::default() };
        let s2 = close(april, &next, corps_local);
        prop_assert!(s2.pending.is_empty());
        prop_assert_eq!(s2.pairs.iter().map(|p| p.count).sum::<u64>(), 1);
    }

    #[test]
    fn disputes_move_exactly_the_disputed_lines(lines in lines_strategy(), picks in prop::collection::vec(any::<prop::sample::Index>(), 1..4)) {
        let chosen: std::collections::BTreeSet<String> = picks.iter().map(|p| p.get(&lines).setl_id.clone()).collect();
        let mut inp = input(&lines);
        inp.disputes = chosen.iter().map(|id| Dispute { region: code("611000"), setl_id: id.clone(), reason: "audit".into() }).collect();
        let s = close(march(), &inp, corps_local);
        let pending: std::collections::BTreeSet<String> = s.pending.iter().map(|p| p.setl_id.clone()).collect();
        prop_assert_eq!(&pending, &chosen);
        prop_assert!(s.pending.iter().all(|p| p.reason == PendingReason::Disputed));
        prop_assert_eq!(s.pairs.iter().map(|p| p.count).sum::<u64>() as usize, lines.len() - chosen.len());
        // Next month they come back once, as lines of March (both sides
        // report them again), never also as adjustments.
        let again: Vec<Line> = lines.iter().filter(|l| chosen.contains(&l.setl_id)).cloned().collect();
        let next = ClosingInput { treatment_lines: again.clone(), home_lines: again.clone(), carried: s.pending.clone(), ..ClosingInput::default() };
        let s2 = close(march().next(), &next, corps_local);
        prop_assert!(s2.adjustments.is_empty());
        prop_assert!(s2.pending.is_empty());
        prop_assert!(s2.pairs.iter().all(|p| p.month == march()));
        prop_assert_eq!(s2.pairs.iter().map(|p| p.count).sum::<u64>() as usize, chosen.len());
        prop_assert_eq!(s2.positions_sum(), Amount::ZERO);
        let national = |ls: &[Line]| -> Amount { ls.iter().filter(|l| !corps_local(l.home, l.treatment)).map(|l| l.amounts.fund_pay_sumamt + l.amounts.acct_pay).sum() };
        let back: Amount = s2.positions.values().map(|p| p.receivable).sum();
        prop_assert_eq!(back, national(&again));
        // Carried with neither side's lines fetched: carried again, not dropped.
        let s3 = close(march().next(), &ClosingInput { carried: s.pending.clone(), ..ClosingInput::default() }, corps_local);
        let kept: std::collections::BTreeSet<String> = s3.pending.iter().map(|p| p.setl_id.clone()).collect();
        prop_assert_eq!(&kept, &chosen);
        prop_assert!(s3.pairs.is_empty());
    }
}

#[test]
fn amounts_that_differ_are_held_out() {
    let lines: Vec<Line> = (0..10).map(|i| line(i, 0, 6, 10_000 + i as i64)).collect();
    let mut inp = input(&lines);
    inp.treatment_lines[3].amounts.fund_pay_sumamt = Amount::yuan(1);
    let s = close(march(), &inp, corps_local);
    assert_eq!(s.pending.len(), 1);
    assert_eq!(s.pending[0].reason, PendingReason::AmountsDiffer);
    assert_eq!(s.pending[0].setl_id, "S000003");
}

#[test]
fn the_advance_warning_fires_at_the_threshold_and_not_a_cent_before() {
    let r = code("611000");
    let ninety = Ratio::from_percent(Decimal::from(90)).expect("ratio");
    let quota = Amount::yuan(1000);
    assert!(!status(r, quota, Amount::parse_non_negative("899.99").expect("a"), ninety).warning);
    assert!(status(r, quota, Amount::parse_non_negative("900.00").expect("a"), ninety).warning);
    assert_eq!(default_quota(&[Amount::yuan(300), Amount::yuan(300), Amount::yuan(400)]).to_string(), "666.67");
    // Through a statement, with the default threshold.
    let inp = ClosingInput {
        quotas: [(r, quota)].into_iter().collect(),
        usage: [(r, Amount::parse_non_negative("900.00").expect("a"))].into_iter().collect(),
        ..ClosingInput::default()
    };
    let s = close(march(), &inp, corps_local);
    assert!(s.advance[0].warning);
    assert!(s.to_table().contains("Advance-fund warnings"));
}

#[test]
fn statement_carries_node_heads_and_renders() {
    let lines: Vec<Line> = vec![line(0, 0, 6, 100_000), line(1, 2, 1, 50_000), line(2, 1, 2, 20_000)];
    let mut inp = input(&lines);
    inp.node_heads.insert(code("611000"), HeadRef { size: 42, root: "ab".repeat(32) });
    let s = close(march(), &inp, corps_local);
    assert_eq!(s.node_heads[&code("611000")].size, 42);
    assert_eq!(s.corps_local.len(), 1);
    // 660400 owed 654000 500.00, 654000 owed 660400 200.00: 654000 < 660400, so a=654000 owes b -300.00.
    assert_eq!(s.corps_local[0].a_owes_b.to_string(), "-300.00");
    assert_eq!(s.positions.len(), 2, "only the national pair has positions");
    let csv = s.to_csv();
    assert!(csv.starts_with("section,region,counterpart,amount,detail\n"));
    assert!(csv.contains("corps_local,654000,660400,-300.00,2 lines"));
    let table = s.to_table();
    assert!(table.contains("660400 pays 654000 300.00"), "{table}");
}
