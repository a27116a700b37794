//! Seals: the owner's signatures over one group commit, stored after the
//! group's entries in the same write (documented in `docs/LEDGER_FORMAT.md`).
//!
//! ```text
//! seal   = tag u8 (=3) | head bytes [48] | head signature [64] | group signature [64]
//! head signature  = Ed25519(owner, "xclear/ledger/tree-head/v1\0" || head bytes)
//! group signature = Ed25519(owner, "xclear/ledger/group/v1\0" || head bytes
//!                            || (len u32 || stored entry) for each entry of the group)
//! ```
//!
//! One seal signs every byte of its group, so the ledger pays two signatures
//! per group commit instead of one per entry. The head is the signed tree
//! head after the group: third parties check it alone; the group signature
//! binds the exact stored bytes. A group without its seal was never
//! acknowledged (the seal is written and synced with it).

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};

use super::entry::FormatError;
use super::head::{head_bytes, SignedTreeHead};
use crate::crypto;

pub const SEAL_TAG: u8 = 3;
pub const GROUP_DOMAIN: &[u8] = b"xclear/ledger/group/v1\0";
pub const SEAL_LEN: usize = 1 + 48 + 64 + 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seal {
    /// The tree head after the group: its size is the number of entries up
    /// to and including the group's last one.
    pub head: SignedTreeHead,
    pub group_signature: [u8; 64],
}

/// The bytes the group signature covers, without the domain prefix.
pub fn group_message<'a>(head: &SignedTreeHead, entries: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut m = Vec::with_capacity(GROUP_DOMAIN.len() + 48);
    m.extend_from_slice(GROUP_DOMAIN);
    m.extend_from_slice(&head_bytes(head.size, head.timestamp_ms, &head.root));
    for e in entries {
        m.extend_from_slice(&(e.len() as u32).to_be_bytes());
        m.extend_from_slice(e);
    }
    m
}

impl Seal {
    /// Signs the head and the group's exact stored bytes.
    pub fn sign(key: &SigningKey, head: SignedTreeHead, entries: &[&[u8]]) -> Seal {
        let message = group_message(&head, entries.iter().copied());
        let group_signature = crypto::sign(key, &[], &message).to_bytes();
        Seal { head, group_signature }
    }

    /// Checks both signatures one at a time (verifiers of many seals batch them).
    pub fn verify(&self, key: &VerifyingKey, entries: &[&[u8]]) -> bool {
        let message = group_message(&self.head, entries.iter().copied());
        self.head.verify(key) && crypto::verify(key, &[], &message, &Signature::from_bytes(&self.group_signature))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(SEAL_LEN);
        b.push(SEAL_TAG);
        b.extend_from_slice(&self.head.encode());
        b.extend_from_slice(&self.group_signature);
        b
    }

    pub fn decode(b: &[u8]) -> Result<Seal, FormatError> {
        if b.len() != SEAL_LEN {
            return Err(FormatError::Length);
        }
        if b[0] != SEAL_TAG {
            return Err(FormatError::Version(b[0]));
        }
        let head = SignedTreeHead::decode(&b[1..113]).ok_or(FormatError::Length)?;
        let group_signature = b[113..].try_into().map_err(|_| FormatError::Length)?;
        Ok(Seal { head, group_signature })
    }

    pub fn to_json(&self) -> serde_json::Value {
        let mut v = self.head.to_json();
        v["group_signature"] = serde_json::json!(hex::encode(self.group_signature));
        v
    }

    pub fn from_json(v: &serde_json::Value) -> Option<Seal> {
        let hex32 = |name: &str| hex::decode(v.get(name)?.as_str()?).ok()?.try_into().ok();
        let hex64 = |name: &str| -> Option<[u8; 64]> { hex::decode(v.get(name)?.as_str()?).ok()?.try_into().ok() };
        let head = SignedTreeHead {
            size: v.get("size")?.as_u64()?,
            root: hex32("root")?,
            timestamp_ms: v.get("timestamp_ms")?.as_i64()?,
            signature: hex64("signature")?,
        };
        Some(Seal { head, group_signature: hex64("group_signature")? })
    }
}

/// One record of the segment: an entry or the seal of the group before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Entry(super::entry::Entry),
    Seal(Seal),
}

impl Record {
    /// Decodes a record by its first byte: the entry version (2) or the seal tag (3).
    pub fn decode(bytes: Vec<u8>) -> Result<Record, FormatError> {
        match bytes.first() {
            Some(&SEAL_TAG) => Seal::decode(&bytes).map(Record::Seal),
            Some(_) => super::entry::Entry::decode(bytes).map(Record::Entry),
            None => Err(FormatError::TooShort(0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::merkle;

    #[test]
    fn seal_round_trips_and_binds_every_byte() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let entries: Vec<Vec<u8>> = vec![b"first".to_vec(), b"second".to_vec()];
        let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        let head = SignedTreeHead::sign(&key, 2, merkle::empty_root(), 5);
        let seal = Seal::sign(&key, head, &refs);
        assert!(seal.verify(&key.verifying_key(), &refs));
        assert_eq!(Seal::decode(&seal.encode()), Ok(seal));
        assert_eq!(Seal::from_json(&seal.to_json()), Some(seal));
        // Moving a byte between entries changes the message (lengths are signed).
        let moved: Vec<&[u8]> = vec![b"firsts", b"econd"];
        assert!(!seal.verify(&key.verifying_key(), &moved));
        let mut flipped = entries[1].clone();
        flipped[0] ^= 1;
        assert!(!seal.verify(&key.verifying_key(), &[refs[0], &flipped]));
        for cut in 0..SEAL_LEN {
            assert!(Seal::decode(&seal.encode()[..cut]).is_err());
        }
    }
}
