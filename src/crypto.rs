//! Keys and signatures (ed25519, strict verification), at one place.
//!
//! Every signed message is domain-separated: the signature covers a fixed
//! ASCII prefix naming what is signed, then the exact bytes. Batch
//! verification keeps the semantics of `verify_strict`: weak keys and
//! small-order or non-canonical `R` are refused before the batch equation.

use std::path::Path;

use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

/// Signature checks are batched in groups of this many.
pub const VERIFY_BATCH: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: cannot read key file: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}: a key file holds 64 hex digits (the 32-byte ed25519 seed)")]
    Format { path: String },
    #[error("not a public key: {0}")]
    PublicKey(String),
    #[error("{path}: cannot write key file: {reason}")]
    Write { path: String, reason: String },
}

/// Loads a signing key from a file of 64 hex digits.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| KeyError::Read { path: p.clone(), reason: e.to_string() })?;
    let bytes = hex::decode(text.trim()).map_err(|_| KeyError::Format { path: p.clone() })?;
    let seed: [u8; 32] = bytes.try_into().map_err(|_| KeyError::Format { path: p })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Writes a signing key (owner-readable only) and returns it.
pub fn write_signing_key(path: &Path, key: &SigningKey) -> Result<(), KeyError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let p = path.display().to_string();
    let fail = |e: std::io::Error| KeyError::Write { path: p.clone(), reason: e.to_string() };
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(fail)?;
    f.write_all(hex::encode(key.to_bytes()).as_bytes()).map_err(fail)?;
    f.write_all(b"\n").map_err(fail)?;
    f.sync_all().map_err(fail)
}

/// Parses a public key from 64 hex digits, refusing weak (small-order) keys.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, KeyError> {
    let bytes = hex::decode(text.trim()).map_err(|_| KeyError::PublicKey(text.to_string()))?;
    let arr: [u8; 32] = bytes.try_into().map_err(|_| KeyError::PublicKey(text.to_string()))?;
    let key = VerifyingKey::from_bytes(&arr).map_err(|_| KeyError::PublicKey(text.to_string()))?;
    if key.is_weak() {
        return Err(KeyError::PublicKey(format!("{text} is a weak (small-order) key")));
    }
    Ok(key)
}

/// The exact message signed for `bytes` under `domain`.
pub fn signed_message(domain: &[u8], bytes: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(domain.len() + bytes.len());
    m.extend_from_slice(domain);
    m.extend_from_slice(bytes);
    m
}

pub fn sign(key: &SigningKey, domain: &[u8], bytes: &[u8]) -> Signature {
    key.sign(&signed_message(domain, bytes))
}

pub fn verify(key: &VerifyingKey, domain: &[u8], bytes: &[u8], sig: &Signature) -> bool {
    key.verify_strict(&signed_message(domain, bytes), sig).is_ok()
}

/// `R` of a signature must be a canonical encoding of a point that is not of
/// small order: the extra checks `verify_strict` makes over the batch equation.
fn strict_r(sig: &Signature) -> bool {
    let r = CompressedEdwardsY(sig.r_bytes().to_owned());
    match r.decompress() {
        Some(point) => !point.is_small_order() && point.compress() == r,
        None => false,
    }
}

/// Verifies many (message, signature) pairs under one key, in batches.
/// Returns the index of the first bad pair, if any.
pub fn verify_many(key: &VerifyingKey, messages: &[&[u8]], sigs: &[Signature]) -> Result<(), usize> {
    assert_eq!(messages.len(), sigs.len(), "one signature per message");
    if key.is_weak() {
        return if messages.is_empty() { Ok(()) } else { Err(0) };
    }
    for start in (0..messages.len()).step_by(VERIFY_BATCH) {
        let end = (start + VERIFY_BATCH).min(messages.len());
        let (m, s) = (&messages[start..end], &sigs[start..end]);
        if let Some(i) = s.iter().position(|sig| !strict_r(sig)) {
            return Err(start + i);
        }
        let keys = vec![*key; m.len()];
        if ed25519_dalek::verify_batch(m, s, &keys).is_err() {
            // Find the culprit one by one.
            let bad = (0..m.len()).find(|&i| key.verify_strict(m[i], &s[i]).is_err()).unwrap_or(0);
            return Err(start + bad);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    #[test]
    fn domain_separation() {
        let k = key(1);
        let sig = sign(&k, b"a\0", b"bytes");
        assert!(verify(&k.verifying_key(), b"a\0", b"bytes", &sig));
        assert!(!verify(&k.verifying_key(), b"b\0", b"bytes", &sig));
    }

    #[test]
    fn batch_finds_the_bad_one() {
        let k = key(2);
        let msgs: Vec<Vec<u8>> = (0..150u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let mut sigs: Vec<Signature> = msgs.iter().map(|m| k.sign(m)).collect();
        let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
        assert_eq!(verify_many(&k.verifying_key(), &refs, &sigs), Ok(()));
        sigs[97] = k.sign(b"other");
        assert_eq!(verify_many(&k.verifying_key(), &refs, &sigs), Err(97));
        assert_eq!(verify_many(&key(3).verifying_key(), &refs, &sigs), Err(0));
    }

    #[test]
    fn weak_public_key_is_refused() {
        // The identity point (small order).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(parse_public_key(&hex::encode(identity)).is_err());
        assert!(parse_public_key("zz").is_err());
        assert!(parse_public_key(&hex::encode(key(4).verifying_key().to_bytes())).is_ok());
    }
}
