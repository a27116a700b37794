//! Batch signatures: for any batch, every body opens alone with the signer's
//! key, and any flipped bit of a body, the signature or the proof (its
//! index, its size, any hash of its path) is refused.

use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use xclear::api::batch_sig::{sign_batch, VerifiedRoots};
use xclear::api::envelope::{open_with, EnvelopeError, CLAIM_DOMAIN};
use xclear::proto::{ContributionYearsRequest, Signed};

fn opens(env: &Signed, roots: Option<&VerifiedRoots>) -> Result<ContributionYearsRequest, EnvelopeError> {
    open_with(env, &SigningKey::from_bytes(&[8; 32]).verifying_key(), CLAIM_DOMAIN, roots)
}

/// Flips bit `bit` of the `at`-th byte of the envelope's signed parts: body,
/// signature, then index and size (4 bytes each, big-endian), then the path.
fn flip(env: &mut Signed, at: usize, bit: u8) {
    let mask = 1u8 << bit;
    let mut at = at;
    if at < env.body.len() {
        env.body[at] ^= mask;
        return;
    }
    at -= env.body.len();
    if at < 64 {
        env.signature[at] ^= mask;
        return;
    }
    at -= 64;
    let Some(proof) = env.batch.as_mut() else { return };
    if at < 8 {
        let field = if at < 4 { &mut proof.index } else { &mut proof.size };
        *field ^= u32::from(mask) << (8 * (3 - at % 4));
        return;
    }
    at -= 8;
    proof.path[at / 32][at % 32] ^= mask;
}

fn width(env: &Signed) -> usize {
    env.body.len() + 64 + env.batch.as_ref().map_or(0, |p| 8 + 32 * p.path.len())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn every_body_opens_alone_and_any_flipped_bit_is_refused(
        names in prop::collection::vec("[A-Z0-9]{1,24}", 1..48),
        pick in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        use prost::Message;
        let bodies: Vec<Vec<u8>> =
            names.iter().map(|n| ContributionYearsRequest { psn_no: n.clone() }.encode_to_vec()).collect();
        let key = SigningKey::from_bytes(&[8; 32]);
        let signed = sign_batch(&key, CLAIM_DOMAIN, "110000", bodies);
        prop_assert_eq!(signed.len(), names.len());
        let roots = VerifiedRoots::default();
        for (env, name) in signed.iter().zip(&names) {
            prop_assert_eq!(&opens(env, Some(&roots)).expect("opens").psn_no, name);
            prop_assert_eq!(&opens(env, None).expect("opens alone").psn_no, name);
        }
        prop_assert_eq!(signed.iter().all(|e| e.batch.is_some()), names.len() > 1);
        let mut bad = signed[pick.index(signed.len())].clone();
        let at = at.index(width(&bad));
        flip(&mut bad, at, bit);
        // With or without the memory of the batch's signature.
        prop_assert!(opens(&bad, Some(&roots)).is_err(), "flipped byte {} bit {} opened", at, bit);
        prop_assert!(opens(&bad, None).is_err());
    }
}
