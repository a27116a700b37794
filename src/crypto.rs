//! Keys and signatures (ed25519, strict verification), at one place.
//!
//! Every signed message is domain-separated: the signature covers a fixed
//! ASCII prefix naming what is signed, then the exact bytes. Every signature
//! is checked with `verify_strict`, one at a time (see [`verify_many`]).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

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
    let seed: [u8; 32] = bytes.try_into().map_err(|_| KeyError::Format { path: p.clone() })?;
    if let Some(mode) = readable_by_others(path) {
        // A warning, not a refusal: the published demo keys of examples/
        // arrive from git with the checkout's default mode.
        tracing::warn!(
            path = %p,
            mode = format!("{mode:o}"),
            "the key file is readable by others; anyone who can read it can sign as its owner: chmod 600 {p}"
        );
    }
    Ok(SigningKey::from_bytes(&seed))
}

/// The file's permission bits when its group or others may read it.
pub fn readable_by_others(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o044 != 0).then_some(mode)
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

#[cfg(test)]
mod key_file_tests {
    use super::*;

    #[test]
    fn a_key_file_others_can_read_is_noticed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.key");
        write_signing_key(&path, &SigningKey::from_bytes(&[9; 32])).expect("write");
        assert_eq!(readable_by_others(&path), None, "keygen writes 0600");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(readable_by_others(&path), Some(0o644));
        assert!(load_signing_key(&path).is_ok(), "warned about, still loaded");
    }
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

/// Signatures made and verified by this process so far (for the bench: the
/// cryptographic work a settlement actually needed).
static SIGNS: AtomicU64 = AtomicU64::new(0);
static VERIFIES: AtomicU64 = AtomicU64::new(0);

/// (signs, verifies) made by this process so far.
pub fn operations() -> (u64, u64) {
    (SIGNS.load(Ordering::Relaxed), VERIFIES.load(Ordering::Relaxed))
}

pub fn sign(key: &SigningKey, domain: &[u8], bytes: &[u8]) -> Signature {
    SIGNS.fetch_add(1, Ordering::Relaxed);
    key.sign(&signed_message(domain, bytes))
}

pub fn verify(key: &VerifyingKey, domain: &[u8], bytes: &[u8], sig: &Signature) -> bool {
    VERIFIES.fetch_add(1, Ordering::Relaxed);
    key.verify_strict(&signed_message(domain, bytes), sig).is_ok()
}

/// Verifies many (message, signature) pairs under one key, each with
/// `verify_strict`, and returns the index of the first bad pair, if any.
///
/// Not with `ed25519_dalek::verify_batch`, although it is about twice as fast:
/// its equation is random-weighted and cofactorless, so a signer who adds a
/// small-order point to `R` gets a signature that `verify_strict` refuses
/// accepted once in 8 messages, and can try messages until one is (the
/// weights are derived from the inputs). Every verifier of a ledger must
/// reach the same verdict on every signature, so every one is checked alone.
pub fn verify_many(key: &VerifyingKey, messages: &[&[u8]], sigs: &[Signature]) -> Result<(), usize> {
    assert_eq!(messages.len(), sigs.len(), "one signature per message");
    let bad = messages.iter().zip(sigs).position(|(m, sig)| {
        VERIFIES.fetch_add(1, Ordering::Relaxed);
        key.verify_strict(m, sig).is_err()
    });
    match bad {
        Some(bad) => Err(bad),
        None => Ok(()),
    }
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

    /// A signer's signature whose `R` carries a small-order part: refused by
    /// `verify_strict`, let through by the batch equation for some messages.
    #[test]
    fn a_signature_refused_by_verify_strict_is_refused_among_many_too() {
        use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
        use curve25519_dalek::scalar::Scalar;
        use sha2::{Digest, Sha512};

        let a = Scalar::from(1_234_567u64);
        let public = (a * ED25519_BASEPOINT_POINT).compress();
        let key = VerifyingKey::from_bytes(public.as_bytes()).expect("key");
        let r = Scalar::from(7_654_321u64);
        let big_r = (r * ED25519_BASEPOINT_POINT + EIGHT_TORSION[1]).compress();
        let forge = |msg: &[u8]| {
            let h = Sha512::new().chain_update(big_r.as_bytes()).chain_update(public.as_bytes()).chain_update(msg);
            let wide: [u8; 64] = h.finalize().as_slice().try_into().expect("64 bytes");
            let s = r + Scalar::from_bytes_mod_order_wide(&wide) * a;
            let mut bytes = [0u8; 64];
            bytes[..32].copy_from_slice(big_r.as_bytes());
            bytes[32..].copy_from_slice(s.as_bytes());
            Signature::from_bytes(&bytes)
        };
        // Try messages as such a signer would, until the batch equation passes.
        let (msg, sig) = (0u32..1024)
            .map(|n| n.to_be_bytes())
            .map(|msg| (msg, forge(&msg)))
            .find(|(msg, sig)| ed25519_dalek::verify_batch(&[msg.as_slice()], &[*sig], &[key]).is_ok())
            .expect("one in about 8 messages passes the batch equation");
        assert!(key.verify_strict(&msg, &sig).is_err());
        assert_eq!(verify_many(&key, &[msg.as_slice()], &[sig]), Err(0));
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
