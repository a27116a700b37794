//! One signature over a batch of bodies: the signer signs the RFC 9162
//! Merkle root of the bodies (under its own domain, with the batch's size),
//! and each body travels with its inclusion proof ([`BatchProof`]). A
//! receiver recomputes the root from the body and the proof and checks the
//! one signature with `verify_strict`, as for a single message; roots it has
//! already verified it may remember ([`VerifiedRoots`]), so a batch costs one
//! sign and, at each receiver, one verify.
//!
//! Each body keeps everything a single signature gives it: anyone holding the
//! envelope can verify it alone, years later, with the signer's public key.
//! A batch of one is an ordinary signature, without a proof.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::crypto;
use crate::ledger::merkle::{self, Hash};
use crate::proto::{BatchProof, Signed};

/// The domain of a batch signature; the inner domain follows it in the
/// signed message. Every domain ends in NUL, so none is a prefix of another.
pub const BATCH_DOMAIN: &[u8] = b"xclear/batch/v1\0";

/// Most bodies under one signature (a proof of at most 8 hashes).
pub const MAX_BATCH: usize = 256;

/// The message a batch signature covers: `domain || size || root`.
fn root_message(domain: &[u8], size: u32, root: &Hash) -> Vec<u8> {
    let mut m = Vec::with_capacity(domain.len() + 4 + root.len());
    m.extend_from_slice(domain);
    m.extend_from_slice(&size.to_be_bytes());
    m.extend_from_slice(root);
    m
}

/// Signs `bodies` with one signature per [`MAX_BATCH`] of them; a single
/// body is signed as an ordinary envelope. The envelopes come back in order.
pub fn sign_batch(key: &SigningKey, domain: &[u8], signer: &str, bodies: Vec<Vec<u8>>) -> Vec<Signed> {
    let mut out = Vec::with_capacity(bodies.len());
    let mut rest = bodies;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(MAX_BATCH));
        out.extend(sign_chunk(key, domain, signer, rest));
        rest = tail;
    }
    out
}

fn sign_chunk(key: &SigningKey, domain: &[u8], signer: &str, bodies: Vec<Vec<u8>>) -> Vec<Signed> {
    if bodies.len() == 1 {
        return bodies
            .into_iter()
            .map(|body| {
                let signature = crypto::sign(key, domain, &body).to_bytes().to_vec();
                Signed { body, signature, signer: signer.to_string(), batch: None }
            })
            .collect();
    }
    let leaves: Vec<Hash> = bodies.iter().map(|b| merkle::leaf_hash(b)).collect();
    let size = leaves.len() as u32;
    let (root, paths) = merkle::root_and_proofs(&leaves);
    let signature = crypto::sign(key, BATCH_DOMAIN, &root_message(domain, size, &root)).to_bytes().to_vec();
    bodies
        .into_iter()
        .zip(paths)
        .enumerate()
        .map(|(i, (body, path))| Signed {
            body,
            signature: signature.clone(),
            signer: signer.to_string(),
            batch: Some(BatchProof { index: i as u32, size, path: path.iter().map(|h| h.to_vec()).collect() }),
        })
        .collect()
}

/// The message a batch envelope's signature must cover under `domain`, from
/// its body and proof; `None` if the proof is malformed or leads nowhere.
pub fn signed_root_message(body: &[u8], proof: &BatchProof, domain: &[u8]) -> Option<Vec<u8>> {
    let size = proof.size as usize;
    // A tree of MAX_BATCH leaves is 8 levels deep.
    if !(2..=MAX_BATCH).contains(&size) || proof.index >= proof.size || proof.path.len() > 8 {
        return None;
    }
    let path: Vec<Hash> = proof.path.iter().map(|h| <Hash>::try_from(h.as_slice()).ok()).collect::<Option<_>>()?;
    let root = merkle::root_from_inclusion(&merkle::leaf_hash(body), u64::from(proof.index), size as u64, &path)?;
    Some(root_message(domain, proof.size, &root))
}

/// Batch roots whose signatures have verified, remembered so the other
/// bodies of a batch cost a proof check, not a verify. Bounded: the oldest
/// are forgotten first. A hit stands for the exact key, message and
/// signature that verified; nothing that failed is ever remembered.
pub struct VerifiedRoots {
    seen: Mutex<(HashSet<Hash>, VecDeque<Hash>)>,
    capacity: usize,
    hits: AtomicU64,
}

impl Default for VerifiedRoots {
    fn default() -> Self {
        VerifiedRoots::with_capacity(4096)
    }
}

impl VerifiedRoots {
    pub fn with_capacity(capacity: usize) -> VerifiedRoots {
        VerifiedRoots {
            seen: Mutex::new((HashSet::new(), VecDeque::new())),
            capacity: capacity.max(1),
            hits: AtomicU64::new(0),
        }
    }

    /// `verify_strict` of a batch signature over `message`, or the memory of
    /// having done so.
    pub fn verify(&self, key: &VerifyingKey, message: &[u8], sig: &Signature) -> bool {
        let mut h = Sha256::new();
        h.update(key.as_bytes());
        h.update(sig.to_bytes());
        h.update(message);
        let id: Hash = h.finalize().into();
        if self.seen.lock().is_ok_and(|s| s.0.contains(&id)) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        if !crypto::verify(key, BATCH_DOMAIN, message, sig) {
            return false;
        }
        if let Ok(mut s) = self.seen.lock() {
            let (set, order) = &mut *s;
            if set.insert(id) {
                order.push_back(id);
            }
            while order.len() > self.capacity {
                if let Some(old) = order.pop_front() {
                    set.remove(&old);
                }
            }
        }
        true
    }

    /// Signatures found already verified (no verify made).
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// How many roots are remembered.
    pub fn len(&self) -> usize {
        self.seen.lock().map_or(0, |s| s.1.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::envelope::{open, open_with, EnvelopeError, CLAIM_DOMAIN, CLAIM_RESULT_DOMAIN};
    use crate::proto::ContributionYearsRequest;
    use prost::Message;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[5; 32])
    }

    fn bodies(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| ContributionYearsRequest { psn_no: format!("P{i}") }.encode_to_vec()).collect()
    }

    fn opens(env: &Signed, domain: &[u8]) -> Result<ContributionYearsRequest, EnvelopeError> {
        open(env, &key().verifying_key(), domain)
    }

    #[test]
    fn every_body_of_a_batch_opens_alone_under_one_signature() {
        for n in [2, 3, 5, 8, 13, MAX_BATCH] {
            let signed = sign_batch(&key(), CLAIM_DOMAIN, "110000", bodies(n));
            assert_eq!(signed.len(), n);
            for (i, env) in signed.iter().enumerate() {
                assert_eq!(opens(env, CLAIM_DOMAIN).map(|r| r.psn_no), Ok(format!("P{i}")), "{i} of {n}");
                assert_eq!(env.signature, signed[0].signature);
                assert!(env.batch.as_ref().is_some_and(|b| b.index == i as u32 && b.size == n as u32));
            }
        }
    }

    #[test]
    fn more_than_a_batch_is_signed_in_several_and_one_body_alone() {
        let signed = sign_batch(&key(), CLAIM_DOMAIN, "110000", bodies(MAX_BATCH + 1));
        assert!(signed.iter().all(|e| opens(e, CLAIM_DOMAIN).is_ok()));
        assert_eq!(signed[MAX_BATCH].batch, None, "the one left over is signed alone");
        let one = sign_batch(&key(), CLAIM_DOMAIN, "110000", bodies(1));
        assert_eq!(one[0].batch, None);
        assert_eq!(one[0].signature, crypto::sign(&key(), CLAIM_DOMAIN, &one[0].body).to_bytes().to_vec());
    }

    #[test]
    fn a_changed_body_proof_domain_or_signature_does_not_open() {
        let signed = sign_batch(&key(), CLAIM_DOMAIN, "110000", bodies(6));
        let good = signed[3].clone();
        let bad = |f: &dyn Fn(&mut Signed)| {
            let mut e = good.clone();
            f(&mut e);
            opens(&e, CLAIM_DOMAIN)
        };
        let refused = Err(EnvelopeError::BadSignature);
        assert_eq!(bad(&|e| e.body = signed[4].body.clone()), refused, "another body with this proof");
        assert_eq!(bad(&|e| e.body.push(0)), refused);
        assert_eq!(bad(&|e| e.batch.as_mut().expect("proof").index = 2), refused);
        assert_eq!(bad(&|e| e.batch.as_mut().expect("proof").size = 7), refused);
        assert_eq!(bad(&|e| e.batch.as_mut().expect("proof").size = 1), refused);
        assert_eq!(bad(&|e| e.batch.as_mut().expect("proof").index = 6), refused);
        assert_eq!(bad(&|e| e.batch.as_mut().expect("proof").path[0][0] ^= 1), refused);
        assert_eq!(bad(&|e| e.batch.as_mut().expect("proof").path.pop().map(drop).unwrap_or(())), refused);
        assert_eq!(bad(&|e| e.batch.as_mut().expect("proof").path.push(vec![0; 32])), refused);
        assert_eq!(bad(&|e| e.batch.as_mut().expect("proof").path[0].push(0)), refused);
        assert_eq!(bad(&|e| e.batch = None), refused, "a batch signature is not a signature of the body");
        assert_eq!(bad(&|e| e.signature[10] ^= 1), refused);
        assert_eq!(opens(&good, CLAIM_RESULT_DOMAIN), refused, "a claim batch is not a result batch");
        let stranger = SigningKey::from_bytes(&[6; 32]);
        assert_eq!(open::<ContributionYearsRequest>(&good, &stranger.verifying_key(), CLAIM_DOMAIN), refused);
    }

    #[test]
    fn a_verified_root_is_remembered_and_a_failed_one_never_is() {
        let roots = VerifiedRoots::with_capacity(2);
        let vk = key().verifying_key();
        let signed = sign_batch(&key(), CLAIM_DOMAIN, "110000", bodies(4));
        let mut forged = signed[1].clone();
        forged.signature[0] ^= 1;
        for _ in 0..2 {
            assert!(open_with::<ContributionYearsRequest>(&forged, &vk, CLAIM_DOMAIN, Some(&roots)).is_err());
        }
        assert!(roots.is_empty(), "a signature that failed was remembered");
        for env in &signed {
            assert!(open_with::<ContributionYearsRequest>(env, &vk, CLAIM_DOMAIN, Some(&roots)).is_ok());
        }
        assert_eq!((roots.len(), roots.hits()), (1, 3), "one verify for the batch, then three proofs");
        // A remembered root does not open a body outside its batch.
        let mut outsider = signed[2].clone();
        outsider.body = bodies(5)[4].clone();
        assert!(open_with::<ContributionYearsRequest>(&outsider, &vk, CLAIM_DOMAIN, Some(&roots)).is_err());
        // The oldest is forgotten past the capacity.
        for n in [2, 3] {
            let other = sign_batch(&key(), CLAIM_RESULT_DOMAIN, "110000", bodies(n));
            assert!(open_with::<ContributionYearsRequest>(&other[0], &vk, CLAIM_RESULT_DOMAIN, Some(&roots)).is_ok());
        }
        assert_eq!(roots.len(), 2);
    }
}
