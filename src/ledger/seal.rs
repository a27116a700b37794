//! Seals: the owner's signed tree head after one group commit, stored after
//! the group's entries in the same write (documented in `docs/LEDGER_FORMAT.md`).
//!
//! ```text
//! seal   = tag u8 (=4) | head bytes [48] | head signature [64]
//! head signature = Ed25519(owner, "xclear/ledger/tree-head/v1\0" || head bytes)
//! ```
//!
//! One signature per group commit binds every byte of every entry: the head's
//! root is the Merkle root over all entries so far, each leaf the SHA-256 of
//! an entry's exact stored bytes, and a seal is only valid when that root is
//! recomputed from the entries before it. (Format 2 carried a second
//! signature over the group's bytes; it bound nothing the root does not, and
//! cost a signature and two SHA-512 passes over the group per commit.)

use ed25519_dalek::VerifyingKey;

use super::entry::FormatError;
use super::head::SignedTreeHead;

pub const SEAL_TAG: u8 = 4;
pub const SEAL_LEN: usize = 1 + 48 + 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seal {
    /// The tree head after the group: its size is the number of entries up
    /// to and including the group's last one.
    pub head: SignedTreeHead,
}

impl Seal {
    /// Checks the head signature (the root is checked against the entries
    /// by whoever holds them: [`super::verify::ChainVerifier`]).
    pub fn verify(&self, key: &VerifyingKey) -> bool {
        self.head.verify(key)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(SEAL_LEN);
        b.push(SEAL_TAG);
        b.extend_from_slice(&self.head.encode());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Seal, FormatError> {
        if b.len() != SEAL_LEN {
            return Err(FormatError::Length);
        }
        if b[0] != SEAL_TAG {
            return Err(FormatError::Version(b[0]));
        }
        let head = SignedTreeHead::decode(&b[1..]).ok_or(FormatError::Length)?;
        Ok(Seal { head })
    }

    pub fn to_json(&self) -> serde_json::Value {
        self.head.to_json()
    }

    pub fn from_json(v: &serde_json::Value) -> Option<Seal> {
        SignedTreeHead::from_json(v).map(|head| Seal { head })
    }
}

/// One record of the segment: an entry or the seal of the group before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Entry(super::entry::Entry),
    Seal(Seal),
}

impl Record {
    /// Decodes a record by its first byte: the entry version (2) or the seal tag (4).
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
    use ed25519_dalek::SigningKey;

    #[test]
    fn seal_round_trips_and_refuses_other_bytes() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let head = SignedTreeHead::sign(&key, 2, merkle::empty_root(), 5);
        let seal = Seal { head };
        assert!(seal.verify(&key.verifying_key()));
        assert!(!seal.verify(&SigningKey::from_bytes(&[4; 32]).verifying_key()));
        assert_eq!(Seal::decode(&seal.encode()), Ok(seal));
        assert_eq!(Seal::from_json(&seal.to_json()), Some(seal));
        let mut extra = seal.to_json();
        extra["group_signature"] = serde_json::json!("00");
        assert_eq!(Seal::from_json(&extra), None, "a format-2 seal is not read as format 4");
        for cut in 0..SEAL_LEN {
            assert!(Seal::decode(&seal.encode()[..cut]).is_err());
        }
        let mut old = seal.encode();
        old[0] = 3;
        assert_eq!(Seal::decode(&old), Err(FormatError::Version(3)));
    }
}
