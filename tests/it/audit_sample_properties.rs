//! The audit sample (issue 26): whatever the month's settlements, the draw
//! takes at least the policy's share, only settlements of the month, each
//! once, the same whatever order they are listed in, and the same for anyone
//! who recomputes it from the same statement and month report.

use proptest::prelude::*;

use xclear::clearing::audit::{sample, seed, SamplePolicy};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn the_draw_is_a_fixed_share_of_the_month_recomputable_by_anyone(
        ids in prop::collection::vec("S[0-9a-f]{8}", 0..300),
        pct in 5u32..=100,
        statement in prop::collection::vec(any::<u8>(), 32),
        report in prop::collection::vec(any::<u8>(), 0..200),
        rotate in 0usize..300,
    ) {
        let policy = SamplePolicy::new(pct).expect("policy");
        let s = seed(&statement, &report);
        let drawn = sample(&s, &ids, policy);
        let mut distinct = ids.clone();
        distinct.sort();
        distinct.dedup();
        // The share, rounded up; only ids of the month; each once.
        prop_assert_eq!(drawn.len(), policy.size(distinct.len()));
        prop_assert!(drawn.len() * 100 >= distinct.len() * pct as usize);
        prop_assert!(drawn.iter().all(|d| distinct.contains(d)));
        let mut once = drawn.clone();
        once.sort();
        once.dedup();
        prop_assert_eq!(once.len(), drawn.len());
        // Recomputed from the same inputs in another order: the same draw.
        let mut shuffled = ids.clone();
        if !shuffled.is_empty() {
            let k = rotate % shuffled.len();
            shuffled.rotate_left(k);
        }
        prop_assert_eq!(sample(&seed(&statement, &report), &shuffled, policy), drawn.clone());
        // Another month report: another seed.
        let mut other = report.clone();
        other.push(1);
        prop_assert_ne!(seed(&statement, &other), s);
    }
}
