//! Signed tree heads: the owner's signature over (size, root, time).

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};

use super::merkle::Hash;
use crate::crypto;

pub const HEAD_DOMAIN: &[u8] = b"xclear/ledger/tree-head/v1\0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedTreeHead {
    pub size: u64,
    pub root: Hash,
    pub timestamp_ms: i64,
    pub signature: [u8; 64],
}

/// `size u64 | timestamp_ms i64 | root [32]`, big-endian.
pub fn head_bytes(size: u64, timestamp_ms: i64, root: &Hash) -> [u8; 48] {
    let mut b = [0u8; 48];
    b[..8].copy_from_slice(&size.to_be_bytes());
    b[8..16].copy_from_slice(&timestamp_ms.to_be_bytes());
    b[16..].copy_from_slice(root);
    b
}

impl SignedTreeHead {
    pub fn sign(key: &SigningKey, size: u64, root: Hash, timestamp_ms: i64) -> SignedTreeHead {
        let sig = crypto::sign(key, HEAD_DOMAIN, &head_bytes(size, timestamp_ms, &root));
        SignedTreeHead { size, root, timestamp_ms, signature: sig.to_bytes() }
    }

    pub fn verify(&self, key: &VerifyingKey) -> bool {
        let sig = Signature::from_bytes(&self.signature);
        crypto::verify(key, HEAD_DOMAIN, &head_bytes(self.size, self.timestamp_ms, &self.root), &sig)
    }

    /// 48 head bytes followed by the 64-byte signature.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = head_bytes(self.size, self.timestamp_ms, &self.root).to_vec();
        b.extend_from_slice(&self.signature);
        b
    }

    pub fn decode(b: &[u8]) -> Option<SignedTreeHead> {
        if b.len() != 112 {
            return None;
        }
        Some(SignedTreeHead {
            size: u64::from_be_bytes(b[..8].try_into().ok()?),
            timestamp_ms: i64::from_be_bytes(b[8..16].try_into().ok()?),
            root: b[16..48].try_into().ok()?,
            signature: b[48..].try_into().ok()?,
        })
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "size": self.size,
            "root": hex::encode(self.root),
            "timestamp_ms": self.timestamp_ms,
            "signature": hex::encode(self.signature),
        })
    }

    /// The inverse of [`SignedTreeHead::to_json`]: exactly its four fields.
    pub fn from_json(v: &serde_json::Value) -> Option<SignedTreeHead> {
        if v.as_object()?.len() != 4 {
            return None;
        }
        Some(SignedTreeHead {
            size: v.get("size")?.as_u64()?,
            root: hex::decode(v.get("root")?.as_str()?).ok()?.try_into().ok()?,
            timestamp_ms: v.get("timestamp_ms")?.as_i64()?,
            signature: hex::decode(v.get("signature")?.as_str()?).ok()?.try_into().ok()?,
        })
    }
}
