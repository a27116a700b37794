//! Inclusion and consistency proofs verify for many sizes and fail when any
//! byte of the proof, the leaf or the head changes.

use proptest::prelude::*;
use xclear::ledger::merkle::{self, Hash};

fn leaves(n: usize, salt: u64) -> Vec<Hash> {
    (0..n as u64).map(|i| merkle::leaf_hash(&[salt.to_be_bytes(), i.to_be_bytes()].concat())).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn inclusion_proofs(n in 1usize..600, idx in any::<prop::sample::Index>(), salt in any::<u64>(),
                        flip in any::<prop::sample::Index>(), bit in 0u8..8) {
        let d = leaves(n, salt);
        let i = idx.index(n);
        let root = merkle::root(&d);
        let proof = merkle::inclusion_proof(&d, i).expect("proof");
        prop_assert!(merkle::verify_inclusion(&d[i], i as u64, n as u64, &proof, &root));
        // Any flipped byte of the proof, the leaf or the root breaks it.
        let total = proof.len() * 32 + 64;
        let at = flip.index(total);
        let (mut p, mut leaf, mut r) = (proof.clone(), d[i], root);
        if at < proof.len() * 32 {
            p[at / 32][at % 32] ^= 1 << bit;
        } else if at < proof.len() * 32 + 32 {
            leaf[at - proof.len() * 32] ^= 1 << bit;
        } else {
            r[at - proof.len() * 32 - 32] ^= 1 << bit;
        }
        prop_assert!(!merkle::verify_inclusion(&leaf, i as u64, n as u64, &p, &r));
        // A wrong index fails. (A wrong size can share the tree's shape and so
        // accept the same path: the signed head binds size and root together.)
        if n > 1 {
            prop_assert!(!merkle::verify_inclusion(&d[i], ((i + 1) % n) as u64, n as u64, &proof, &root));
        }
        prop_assert!(!merkle::verify_inclusion(&d[i], i as u64, i as u64, &proof, &root));
    }

    #[test]
    fn consistency_proofs(n in 1usize..600, m_idx in any::<prop::sample::Index>(), salt in any::<u64>(),
                          flip in any::<prop::sample::Index>(), bit in 0u8..8) {
        let d = leaves(n, salt);
        let m = m_idx.index(n) + 1; // 1..=n
        let (old, new) = (merkle::root(&d[..m]), merkle::root(&d));
        let proof = merkle::consistency_proof(&d, m).expect("proof");
        prop_assert!(merkle::verify_consistency(m as u64, n as u64, &old, &new, &proof));
        if m < n {
            let total = proof.len() * 32 + 64;
            let at = flip.index(total);
            let (mut p, mut o, mut r) = (proof.clone(), old, new);
            if at < proof.len() * 32 {
                p[at / 32][at % 32] ^= 1 << bit;
            } else if at < proof.len() * 32 + 32 {
                o[at - proof.len() * 32] ^= 1 << bit;
            } else {
                r[at - proof.len() * 32 - 32] ^= 1 << bit;
            }
            prop_assert!(!merkle::verify_consistency(m as u64, n as u64, &o, &r, &p));
            // A history that changed an old leaf is not consistent.
            let mut forged = d.clone();
            forged[m - 1][0] ^= 1;
            let forged_new = merkle::root(&forged);
            prop_assert!(!merkle::verify_consistency(m as u64, n as u64, &old, &forged_new, &proof));
        }
    }

    #[test]
    fn frontier_matches_the_recursive_root(n in 0usize..1100, salt in any::<u64>()) {
        let d = leaves(n, salt);
        let mut f = merkle::Frontier::default();
        for l in &d {
            f.push(*l);
        }
        prop_assert_eq!(f.root(), merkle::root(&d));
    }
}
