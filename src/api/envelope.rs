//! Signed envelopes: the signature covers a domain string and the exact
//! body bytes that were sent; receivers verify those bytes and keep them.

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use prost::Message;

use super::batch_sig::{self, VerifiedRoots};
use crate::crypto;
use crate::proto::Signed;

/// Domains: what a signature is for.
pub const HOSPITAL_DOMAIN: &[u8] = b"xclear/hospital/v1\0";
pub const CLAIM_DOMAIN: &[u8] = b"xclear/claim/v1\0";
pub const CLAIM_RESULT_DOMAIN: &[u8] = b"xclear/claim-result/v1\0";
pub const ADMIN_DOMAIN: &[u8] = b"xclear/admin/v1\0";
pub const PERSONS_DOMAIN: &[u8] = b"xclear/persons/v1\0";
pub const PEER_QUERY_DOMAIN: &[u8] = b"xclear/peer-query/v1\0";
pub const REGISTRATION_QUERY_DOMAIN: &[u8] = b"xclear/registration-query/v1\0";
pub const OPERATOR_DOMAIN: &[u8] = b"xclear/operator/v1\0";
pub const REPORT_DOMAIN: &[u8] = b"xclear/report/v1\0";
pub const LINES_DOMAIN: &[u8] = b"xclear/lines/v1\0";
pub const STATEMENT_DOMAIN: &[u8] = b"xclear/statement/v1\0";
pub const CONFIRMATION_DOMAIN: &[u8] = b"xclear/confirmation/v1\0";
pub const ADJUSTMENT_DOMAIN: &[u8] = b"xclear/adjustment/v1\0";
pub const CLOSE_DOMAIN: &[u8] = b"xclear/close-request/v1\0";
pub const SANCTION_DOMAIN: &[u8] = b"xclear/sanction/v1\0";
pub const DESIGNATION_DOMAIN: &[u8] = b"xclear/designation/v1\0";
pub const RECONCILE_DOMAIN: &[u8] = b"xclear/reconcile/v1\0";
pub const FINAL_DOMAIN: &[u8] = b"xclear/final-statement/v1\0";
pub const HOSPITAL_STATEMENT_DOMAIN: &[u8] = b"xclear/hospital-statement/v1\0";
pub const HOSPITAL_STATEMENT_REQUEST_DOMAIN: &[u8] = b"xclear/hospital-statement-request/v1\0";
pub const AUDIT_DOMAIN: &[u8] = b"xclear/audit/v1\0";

/// Largest envelope body accepted (a bill of the maximum item count fits).
pub const MAX_BODY_BYTES: usize = 512 * 1024;

/// Encodes `msg` and signs the bytes.
pub fn seal<M: Message>(key: &SigningKey, domain: &[u8], signer: &str, msg: &M) -> Signed {
    let body = msg.encode_to_vec();
    let signature = crypto::sign(key, domain, &body).to_bytes().to_vec();
    Signed { body, signature, signer: signer.to_string(), batch: None }
}

/// Why an envelope was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the envelope is not signed")]
    Unsigned,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the body is {0} bytes, over the limit")]
    TooLarge(usize),
    #[error("the body is not a valid message: {0}")]
    Malformed(String),
}

/// Verifies the envelope's signature over its exact body bytes (alone, or
/// as one of a signed batch), then decodes.
pub fn open<M: Message + Default>(env: &Signed, key: &VerifyingKey, domain: &[u8]) -> Result<M, EnvelopeError> {
    open_with(env, key, domain, None)
}

/// [`open`], remembering verified batch signatures in `roots` so the rest of
/// a batch costs a proof check each.
pub fn open_with<M: Message + Default>(
    env: &Signed,
    key: &VerifyingKey,
    domain: &[u8],
    roots: Option<&VerifiedRoots>,
) -> Result<M, EnvelopeError> {
    verify_with(env, key, domain, roots)?;
    M::decode(env.body.as_slice()).map_err(|e| EnvelopeError::Malformed(e.to_string()))
}

/// Checks the envelope's signature over its exact body bytes without
/// decoding them: for a body already decoded with [`peek`] to find its
/// signer's key.
pub fn verify(env: &Signed, key: &VerifyingKey, domain: &[u8]) -> Result<(), EnvelopeError> {
    verify_with(env, key, domain, None)
}

fn verify_with(
    env: &Signed,
    key: &VerifyingKey,
    domain: &[u8],
    roots: Option<&VerifiedRoots>,
) -> Result<(), EnvelopeError> {
    if env.signature.is_empty() {
        return Err(EnvelopeError::Unsigned);
    }
    if env.body.len() > MAX_BODY_BYTES {
        return Err(EnvelopeError::TooLarge(env.body.len()));
    }
    let sig: [u8; 64] = env.signature.as_slice().try_into().map_err(|_| EnvelopeError::BadSignature)?;
    let sig = Signature::from_bytes(&sig);
    let verified = match &env.batch {
        None => crypto::verify(key, domain, &env.body, &sig),
        Some(proof) => batch_sig::signed_root_message(&env.body, proof, domain).is_some_and(|message| match roots {
            Some(roots) => roots.verify(key, &message, &sig),
            None => crypto::verify(key, batch_sig::BATCH_DOMAIN, &message, &sig),
        }),
    };
    if verified {
        Ok(())
    } else {
        Err(EnvelopeError::BadSignature)
    }
}

/// Decodes without checking the signature (only to learn who claims to have
/// signed it, before looking up their key).
pub fn peek<M: Message + Default>(env: &Signed) -> Result<M, EnvelopeError> {
    if env.body.len() > MAX_BODY_BYTES {
        return Err(EnvelopeError::TooLarge(env.body.len()));
    }
    M::decode(env.body.as_slice()).map_err(|e| EnvelopeError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ContributionYearsRequest;

    #[test]
    fn seal_and_open() {
        let k = SigningKey::from_bytes(&[3; 32]);
        let msg = ContributionYearsRequest { psn_no: "P1".into() };
        let env = seal(&k, PEER_QUERY_DOMAIN, "654000", &msg);
        assert_eq!(open::<ContributionYearsRequest>(&env, &k.verifying_key(), PEER_QUERY_DOMAIN), Ok(msg));
        assert_eq!(
            open::<ContributionYearsRequest>(&env, &k.verifying_key(), CLAIM_DOMAIN),
            Err(EnvelopeError::BadSignature)
        );
        let mut tampered = env.clone();
        tampered.body[2] ^= 1;
        assert_eq!(
            open::<ContributionYearsRequest>(&tampered, &k.verifying_key(), PEER_QUERY_DOMAIN),
            Err(EnvelopeError::BadSignature)
        );
        assert_eq!(verify(&env, &k.verifying_key(), PEER_QUERY_DOMAIN), Ok(()));
        assert_eq!(verify(&tampered, &k.verifying_key(), PEER_QUERY_DOMAIN), Err(EnvelopeError::BadSignature));
        assert_eq!(verify(&env, &k.verifying_key(), CLAIM_DOMAIN), Err(EnvelopeError::BadSignature));
        let unsigned = Signed { signature: vec![], ..env };
        assert_eq!(
            open::<ContributionYearsRequest>(&unsigned, &k.verifying_key(), PEER_QUERY_DOMAIN),
            Err(EnvelopeError::Unsigned)
        );
    }
}
