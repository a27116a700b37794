//! A month of generated traffic on a federation of the reference regions plus
//! Beijing (in-process), closed from the nodes' own ledgers.

use crate::common;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use xclear::api::envelope::{seal, ADMIN_DOMAIN, HOSPITAL_DOMAIN};
use xclear::clearing::{close, ClosingInput, Line, Month, PendingReason};
use xclear::clock::ManualClock;
use xclear::federation::LocalNetwork;
use xclear::money::Amount;
use xclear::node::clearing_side::Side;
use xclear::node::records::PersonRecord;
use xclear::proto::{
    hospital_request::Action, registration_request::Op, BillItem, HospitalRequest, RegistrationRequest,
};
use xclear::region::RegionCode;

const REGIONS: [(&str, &str); 7] = [
    ("611000", "390"),
    ("654000", "390"),
    ("660400", "390"),
    ("440600", "310"),
    ("540000", "390"),
    ("330100", "390"),
    ("110000", ""),
];
/// 2026-03-05 10:00 and 2026-04-03 10:00, Asia/Shanghai.
const MARCH: i64 = 1_772_676_000_000;
const APRIL: i64 = 1_775_181_600_000;

fn code(s: &str) -> RegionCode {
    RegionCode::parse(s).expect("region")
}

use crate::common::key;

fn hospital_of(region: &str) -> String {
    format!("H{region}")
}

fn amount(s: &str) -> Amount {
    Amount::round_half_up(rust_decimal::Decimal::from_str(s).expect("amount"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_of_traffic_closes_to_zero_and_matches_the_hospitals_receipts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = LocalNetwork::new();
    let clock = Arc::new(ManualClock::new(MARCH));
    let regions: Vec<&'static str> = REGIONS.iter().map(|(r, _)| *r).collect();
    let nodes = common::in_process_nodes(dir.path(), &regions, clock.clone(), &net);
    let rules = common::rules();
    // Insured persons in every home region; half with a long-term registration in Beijing.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut persons: Vec<(&str, String)> = Vec::new();
    for (r, insutype) in REGIONS.iter().filter(|(_, t)| !t.is_empty()) {
        let recs: Vec<PersonRecord> = (0..12)
            .map(|i| PersonRecord {
                psn_no: format!("{r}-{i}"),
                insuplc_admdvs: r.to_string(),
                insutype: insutype.to_string(),
                retired: false,
                special_group: None,
                contribution_years: BTreeMap::new(),
                acct_balance: None,
                chronic: Vec::new(),
            })
            .collect();
        nodes[r].import_persons(&recs).await.expect("import");
        for p in &recs {
            persons.push((r, p.psn_no.clone()));
            if rng.gen_bool(0.5) {
                let req = RegistrationRequest {
                    msgid: format!("reg-{}", p.psn_no),
                    op: Op::Create as i32,
                    psn_no: p.psn_no.clone(),
                    kind: "long_term_resident".into(),
                    target_admdvs: "110000".into(),
                    begndate: "2026-01-01".into(),
                    ..Default::default()
                };
                nodes[r]
                    .apply_registration(seal(&key("agency"), ADMIN_DOMAIN, "agency", &req))
                    .await
                    .expect("register");
            }
        }
    }
    // Traffic: (home, treatment, month) -> fund paid, from the hospitals' receipts.
    let mut receipts: BTreeMap<(String, String, String), Amount> = BTreeMap::new();
    let mut settled_march: Vec<(String, String, String)> = Vec::new(); // (treatment, hospital msgid, home)
    let mut refusals = 0;
    for i in 0..240 {
        if i == 160 {
            clock.set(APRIL);
        }
        let (home, psn) = persons[rng.gen_range(0..persons.len())].clone();
        // Beijing most of the time, the corps–local partner or another region otherwise.
        let treatment = match (home, rng.gen_range(0..10)) {
            ("660400", 0..=3) => "654000",
            ("654000", 0..=3) => "660400",
            (_, 0..=5) => "110000",
            _ => REGIONS[rng.gen_range(0..REGIONS.len())].0,
        };
        if treatment == home {
            continue;
        }
        let items = vec![
            BillItem {
                code: "XA001".into(),
                qty: "1".into(),
                price: format!("{}.{:02}", rng.gen_range(100..20000), rng.gen_range(0..100)),
            },
            BillItem { code: "XB001".into(), qty: rng.gen_range(1..4).to_string(), price: "120.50".into() },
        ];
        let req = HospitalRequest {
            fixmedins_code: hospital_of(treatment),
            msgid: format!("m{i}"),
            action: Action::Settle as i32,
            psn_no: psn.clone(),
            insuplc_admdvs: home.to_string(),
            setl_date: if i < 160 { "2026-03-05".into() } else { "2026-04-03".into() },
            items,
            emergency: rng.gen_bool(0.2),
            ..Default::default()
        };
        let env = seal(&key(&req.fixmedins_code), HOSPITAL_DOMAIN, &req.fixmedins_code, &req);
        let r = nodes[treatment].handle_hospital(env).await.expect("answered");
        if !r.settled {
            refusals += 1;
            continue;
        }
        let fund = amount(&r.figures.expect("figures").fund_pay_sumamt);
        *receipts.entry((home.to_string(), treatment.to_string(), r.month.clone())).or_default() =
            receipts.get(&(home.to_string(), treatment.to_string(), r.month.clone())).copied().unwrap_or_default()
                + fund;
        if r.month == "2026-03" {
            settled_march.push((treatment.to_string(), format!("m{i}"), home.to_string()));
        }
    }
    // Reversals in April of March settlements: negative lines in April.
    for (n, (treatment, msgid, home)) in settled_march.iter().take(5).enumerate() {
        let req = HospitalRequest {
            fixmedins_code: hospital_of(treatment),
            msgid: format!("rev{n}"),
            action: Action::Reverse as i32,
            insuplc_admdvs: home.clone(),
            reversed_msgid: msgid.clone(),
            psn_no: String::new(),
            ..Default::default()
        };
        // The reversal names the same person as the settlement.
        let original = nodes[treatment.as_str()]
            .ledger()
            .entry_by_key(&format!("intent:{}:{msgid}", hospital_of(treatment)))
            .expect("read")
            .expect("intent");
        let intent: xclear::node::records::IntentEntry =
            serde_json::from_slice(&original.body.payload).expect("intent");
        let hreq: HospitalRequest = xclear::api::envelope::peek(&intent.hospital_request().expect("env")).expect("req");
        let req = HospitalRequest { psn_no: hreq.psn_no, setl_date: "2026-04-03".into(), ..req };
        let env = seal(&key(&req.fixmedins_code), HOSPITAL_DOMAIN, &req.fixmedins_code, &req);
        let r = nodes[treatment.as_str()].handle_hospital(env).await.expect("reversed");
        assert!(r.settled, "{r:?}");
        let fund = amount(&r.figures.expect("figures").fund_pay_sumamt);
        let k = (home.clone(), treatment.clone(), r.month.clone());
        *receipts.entry(k.clone()).or_default() = receipts.get(&k).copied().unwrap_or_default() + fund;
    }
    assert!(refusals > 0 && receipts.len() > 10, "traffic too thin: {refusals} refusals, {} pairs", receipts.len());

    let operator = xclear::operator::Operator::open(
        &dir.path().join("operator"),
        key("operator"),
        clock.clone(),
        REGIONS.iter().map(|(r, _)| (code(r), key(r).verifying_key())).collect(),
        net.clone(),
        rules.pairs().clone(),
        BTreeMap::new(),
    )
    .expect("operator");
    // After April and the operator's grace: both months may close, in order.
    clock.set(xclear::time::month_end_ms(Month::parse("2026-04").expect("month")) + 3_600_000);
    for month in ["2026-03", "2026-04"] {
        let m = Month::parse(month).expect("month");
        let (mut t_lines, mut h_lines): (Vec<Line>, Vec<Line>) = (Vec::new(), Vec::new());
        for node in nodes.values() {
            let (t, h) = node.month_lines(m).expect("lines");
            // Running totals agree with a scan of the ledger.
            let sums = node.month_summaries(m).expect("summaries");
            for (side, lines) in [(Side::AsTreatment, &t), (Side::AsHome, &h)] {
                let scanned = xclear::clearing::lines::summarize(lines);
                for (pair, summary) in scanned {
                    let counterpart = if side == Side::AsTreatment { pair.home } else { pair.treatment };
                    assert_eq!(
                        sums.get(&(side, counterpart)),
                        Some(&summary),
                        "{} {month} {side:?} {counterpart}",
                        node.region()
                    );
                }
            }
            t_lines.extend(t);
            h_lines.extend(h);
        }
        let pairs = rules.pairs().clone();
        let s = close(
            m,
            &ClosingInput { treatment_lines: t_lines.clone(), home_lines: h_lines.clone(), ..ClosingInput::default() },
            |a, b| pairs.are_partners(a, b),
        );
        assert!(s.pending.is_empty(), "{month}: {:?}", s.pending);
        assert_eq!(s.positions_sum(), Amount::ZERO);
        // Each region's net equals the hospitals' receipts, computed apart from the ledgers.
        let mut expect: BTreeMap<RegionCode, Amount> = BTreeMap::new();
        for ((home, treatment, rm), fund) in &receipts {
            if rm != month || pairs.are_partners(code(home), code(treatment)) {
                continue;
            }
            *expect.entry(code(treatment)).or_default() =
                expect.get(&code(treatment)).copied().unwrap_or_default() + *fund;
            *expect.entry(code(home)).or_default() = expect.get(&code(home)).copied().unwrap_or_default() - *fund;
        }
        for (r, p) in &s.positions {
            assert_eq!(p.net, expect.get(r).copied().unwrap_or_default(), "{month} {r}");
        }
        // The operator, from the nodes' signed reports, reaches the same positions.
        let closed = operator.close(m).await.expect("operator closes");
        for (r, _) in REGIONS.iter() {
            let c = xclear::proto::Confirmation {
                month: month.into(),
                region: r.to_string(),
                statement_hash: closed.hash.clone(),
                ..Default::default()
            };
            operator.answer(seal(&key(r), xclear::api::envelope::CONFIRMATION_DOMAIN, r, &c)).await.expect("confirm");
        }
        assert_eq!(closed.statement.positions, s.positions, "{month}");
        assert_eq!(closed.statement.corps_local, s.corps_local, "{month}");
        assert_eq!(closed.statement.node_heads.len(), REGIONS.len());
        if month == "2026-04" {
            assert!(
                h_lines.iter().any(|l| l.amounts.fund_pay_sumamt.is_negative()),
                "April holds the reversals as negative lines"
            );
        }
        assert!(!s.corps_local.is_empty(), "{month}: corps–local care is shown apart");
        // The statement is the same, byte for byte, when closed again.
        let again = close(
            m,
            &ClosingInput { treatment_lines: t_lines.clone(), home_lines: h_lines.clone(), ..ClosingInput::default() },
            |a, b| pairs.are_partners(a, b),
        );
        assert_eq!(s.canonical_json(), again.canonical_json());
        // A line dropped from a treatment report is caught and carried.
        if month == "2026-03" {
            let dropped = t_lines.remove(0);
            let s = close(
                m,
                &ClosingInput { treatment_lines: t_lines, home_lines: h_lines, ..ClosingInput::default() },
                |a, b| pairs.are_partners(a, b),
            );
            assert_eq!(s.pending.len(), 1);
            assert_eq!(s.pending[0].setl_id, dropped.setl_id);
            assert_eq!(s.pending[0].reason, PendingReason::MissingAtTreatment);
        }
    }
}
