//! The federation simulation: a few seeds in the suite (CI runs hundreds via
//! `make sim`), replay determinism, and the seeds that found bugs.

use std::sync::Arc;

use xclear::sim::{run, SimOptions, SimReport};

use crate::common;

async fn sim(seed: u64, steps: u64) -> SimReport {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = SimOptions { seed, steps, rates: Default::default() };
    match run(&opts, dir.path(), Arc::new(common::rules())).await {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_seed_replays_to_the_same_answers() {
    let a = sim(11, 250).await;
    let b = sim(11, 250).await;
    assert_eq!(a.digest, b.digest);
    assert_eq!(a.faults, b.faults);
    assert_eq!((a.settled, a.reversed, a.refused), (b.settled, b.reversed, b.refused));
    let c = sim(12, 250).await;
    assert_ne!(a.digest, c.digest, "different seeds must drive different traffic");
}

#[tokio::test(flavor = "current_thread")]
async fn runs_inject_every_kind_of_fault_and_still_hold_the_invariants() {
    let mut faults = xclear::sim::Faults::default();
    let (mut settled, mut reversed, mut refused, mut months) = (0, 0, 0, 0);
    for seed in 100..106 {
        let r = sim(seed, 300).await;
        faults.add(&r.faults);
        settled += r.settled;
        reversed += r.reversed;
        refused += r.refused;
        months += r.months_closed;
    }
    // Not vacuous: traffic of every kind, faults of every kind, month ends crossed.
    assert!(settled > 100 && reversed > 20 && refused > 20, "{settled} {reversed} {refused}");
    assert!(months >= 6, "{months} months closed");
    for (name, n) in [
        ("dropped requests", faults.dropped_requests),
        ("dropped replies", faults.dropped_replies),
        ("duplicates", faults.duplicated),
        ("replays", faults.replayed),
        ("delays", faults.delayed),
        ("partitions", faults.partitions),
        ("crashes", faults.crashes),
        ("torn tails", faults.torn_tails),
        ("lost indexes", faults.lost_indexes),
    ] {
        assert!(n > 0, "no {name} injected: {faults}");
    }
}
