//! A short demo: the federation on loopback gRPC closes a month whose
//! statement sums to zero, is confirmed by every region, and whose ledgers
//! verify; the same seed gives the same statement.

use crate::common;

use xclear::clearing::Month;
use xclear::demo::{run, DemoOptions};
use xclear::ledger::verify::verify_dir;
use xclear::money::Amount;

fn options(out: &std::path::Path, seed: u64) -> DemoOptions {
    DemoOptions {
        out: out.to_path_buf(),
        seed,
        patients: 120,
        month: Month::parse("2026-03").expect("month"),
        rules_dir: common::rules_dir(),
        progress: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_demo_closes_a_sound_month_and_repeats_with_the_same_seed() {
    let (a, b) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
    let first = run(options(a.path(), 11)).await.expect("demo");
    let s = &first.statement;
    assert_eq!(s.positions_sum(), Amount::ZERO);
    assert!(
        first.settled > 50 && first.refused > 0 && first.presettled > 0,
        "{} settled {} refused {} presettled",
        first.settled,
        first.refused,
        first.presettled
    );
    assert!(!s.corps_local.is_empty(), "corps–local care shows apart");
    // The country's mix: every medical type owed something, employees' accounts paid some.
    let all = s.pairs.iter().fold(xclear::clearing::Amounts::default(), |t, p| t.plus(&p.amounts));
    for c in xclear::med_type::MedCategory::ALL {
        assert!(all.by_type.get(c) > Amount::ZERO, "nothing owed for {c:?}: {:?}", all.by_type);
    }
    assert!(all.acct_pay > Amount::ZERO, "no account payments: {all:?}");
    assert_eq!(all.by_type.total(), all.fund_pay_sumamt + all.acct_pay);
    assert!(first.final_confirmed);
    assert_eq!(s.node_heads.len(), 7);
    for dir in first.node_dirs.values() {
        verify_dir(dir, None).expect("ledger verifies");
    }
    assert!(a.path().join("statements/2026-03.json").exists() && a.path().join("statements/2026-03.csv").exists());
    // Every institution's statement, written beside it, adds up to the fen;
    // a region's institutions are paid what the statement clears to it.
    assert_eq!(first.hospitals.len(), 14, "a hospital and a pharmacy in each of 7 regions");
    let mut settled_by_region = std::collections::BTreeMap::new();
    for h in &first.hospitals {
        let dir = a.path().join("hospitals").join(h.region.to_string()).join(&h.fixmedins_code);
        let text = std::fs::read_to_string(dir.join("2026-03.json")).expect("statement JSON");
        let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let f = |name: &str| -> rust_decimal::Decimal {
            v[name].as_str().unwrap_or_else(|| panic!("{name} is a decimal string: {text}")).parse().expect("decimal")
        };
        assert_eq!(f("payable"), f("settled") - f("holdback") + f("released") - f("deductions"), "{text}");
        assert!(std::fs::read_to_string(dir.join("2026-03.csv")).expect("CSV").contains("payment,payable,"));
        let e = settled_by_region.entry(h.region).or_insert(Amount::ZERO);
        *e = *e + h.settled;
    }
    assert!(s.pending.is_empty(), "{:?}", s.pending);
    for (region, settled) in &settled_by_region {
        let owed: Amount = s.pairs.iter().filter(|p| p.treatment == *region).map(|p| p.amounts.owed()).sum();
        assert_eq!(*settled, owed, "{region}'s institutions are paid what clears to it");
    }
    let yili: Vec<_> = first.hospitals.iter().filter(|h| h.region.to_string() == "654000").collect();
    assert!(yili.iter().any(|h| h.holdback > Amount::ZERO), "伊犁 holds 5%");
    assert!(first.samples.values().all(|(drawn, of)| *drawn as u64 * 20 >= *of), "at least 5% drawn");
    // The same seed: the same figures (ledger roots may differ with interleaving).
    let second = run(options(b.path(), 11)).await.expect("demo again");
    let t = &second.statement;
    assert_eq!(
        (&s.pairs, &s.positions, &s.transfers, &s.corps_local, &s.pending, &s.advance),
        (&t.pairs, &t.positions, &t.transfers, &t.corps_local, &t.pending, &t.advance)
    );
    assert_eq!((first.settled, first.refused, first.reversed), (second.settled, second.refused, second.reversed));
}

/// Into a log file (not a terminal) the demo's progress is one line per
/// phase, not hundreds of repaints.
#[test]
fn the_demo_writes_no_progress_bar_into_a_log_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xclear"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["demo", "--patients", "100", "--out", dir.path().join("demo").to_str().expect("path")])
        .output()
        .expect("run the demo");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains('\r'), "a bar was repainted into the log: {log:?}");
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.iter().any(|l| l.starts_with("registrations: ")), "{log}");
    assert!(lines.iter().any(|l| l.starts_with("hospital visits: ")), "{log}");
    assert!(lines.len() <= 4, "{log}");
}
