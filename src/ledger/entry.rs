//! The ledger entry format (documented in `docs/LEDGER_FORMAT.md`).
//!
//! ```text
//! stored entry = frame || body                    (all integers big-endian)
//! frame  = version u8 (=2) | seq u64 | timestamp_ms i64 | prev_hash [32]
//! body   = kind u16 | key_len u16 | key (UTF-8) | payload_len u32 | payload
//! entry hash = SHA-256(stored entry); Merkle leaf = SHA-256(0x00 || stored entry)
//! ```
//!
//! Entries carry no signature of their own: the writer signs each group
//! commit once, over the group's exact stored bytes and the new tree head
//! (a [`super::seal::Seal`], stored after the group).

use sha2::{Digest, Sha256};

use super::merkle::Hash;

/// The entry format version, also the first byte of every entry record.
pub const FORMAT_VERSION: u8 = 2;
pub const FRAME_LEN: usize = 1 + 8 + 8 + 32;
/// Largest payload one entry may carry.
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// Longest idempotency key.
pub const MAX_KEY_BYTES: usize = 256;
/// Largest stored entry.
pub const MAX_ENTRY_BYTES: usize = FRAME_LEN + 2 + 2 + MAX_KEY_BYTES + 4 + MAX_PAYLOAD_BYTES;

/// What an entry records. Codes are stable: they are part of the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryKind {
    PersonImport,
    /// Insured persons loaded in bulk: a batch of person records.
    PersonBatch,
    Registration,
    RegistrationChange,
    RegistrationCancel,
    /// A chronic-disease qualification granted or ended by the home region.
    ChronicQualification,
    /// A credit to an employee's personal account (e.g. the monthly allocation).
    AccountCredit,
    /// An institution suspended, revoked or restored by an admin of its node.
    Designation,
    /// A corps–local partner's sanction of one of its institutions, applied here.
    PartnerSanction,
    /// A designation change delivered to a corps–local partner.
    SanctionDelivered,
    SettlementIntent,
    Settlement,
    Reversal,
    /// A settlement intent that ended without a settlement: the home node
    /// refused it for good (an unknown person, a second reversal, ...).
    SettlementEnded,
    Report,
    Statement,
    Confirmation,
    Dispute,
    Adjustment,
    /// A node's month report, signed as it sealed the month: nothing commits
    /// into a sealed month at that node.
    MonthSeal,
    /// A month's final statement, as the operator sent it to a node.
    FinalStatement,
    /// An institution's monthly statement, signed by its node: its holdback
    /// held and released, its deductions, what it is paid.
    HospitalStatement,
    /// One page of a month's audit sample, drawn at a node.
    AuditSample,
    /// A reviewer's outcome for one sampled settlement.
    AuditReview,
    /// Free-form records (tools, tests, benchmarks).
    Note,
}

impl EntryKind {
    pub const ALL: [EntryKind; 25] = [
        EntryKind::PersonImport,
        EntryKind::PersonBatch,
        EntryKind::Registration,
        EntryKind::RegistrationChange,
        EntryKind::RegistrationCancel,
        EntryKind::ChronicQualification,
        EntryKind::AccountCredit,
        EntryKind::Designation,
        EntryKind::PartnerSanction,
        EntryKind::SanctionDelivered,
        EntryKind::SettlementIntent,
        EntryKind::Settlement,
        EntryKind::Reversal,
        EntryKind::SettlementEnded,
        EntryKind::Report,
        EntryKind::Statement,
        EntryKind::Confirmation,
        EntryKind::Dispute,
        EntryKind::Adjustment,
        EntryKind::MonthSeal,
        EntryKind::FinalStatement,
        EntryKind::HospitalStatement,
        EntryKind::AuditSample,
        EntryKind::AuditReview,
        EntryKind::Note,
    ];

    pub fn code(self) -> u16 {
        match self {
            EntryKind::PersonImport => 1,
            EntryKind::PersonBatch => 2,
            EntryKind::Registration => 10,
            EntryKind::RegistrationChange => 11,
            EntryKind::RegistrationCancel => 12,
            EntryKind::ChronicQualification => 13,
            EntryKind::AccountCredit => 14,
            EntryKind::Designation => 15,
            EntryKind::PartnerSanction => 16,
            EntryKind::SanctionDelivered => 17,
            EntryKind::SettlementIntent => 20,
            EntryKind::Settlement => 21,
            EntryKind::Reversal => 22,
            EntryKind::SettlementEnded => 23,
            EntryKind::Report => 30,
            EntryKind::Statement => 31,
            EntryKind::Confirmation => 32,
            EntryKind::Dispute => 33,
            EntryKind::Adjustment => 34,
            EntryKind::MonthSeal => 35,
            EntryKind::FinalStatement => 36,
            EntryKind::HospitalStatement => 37,
            EntryKind::AuditSample => 38,
            EntryKind::AuditReview => 39,
            EntryKind::Note => 99,
        }
    }

    pub fn from_code(code: u16) -> Option<EntryKind> {
        EntryKind::ALL.into_iter().find(|k| k.code() == code)
    }

    pub fn name(self) -> &'static str {
        match self {
            EntryKind::PersonImport => "person_import",
            EntryKind::PersonBatch => "person_batch",
            EntryKind::Registration => "registration",
            EntryKind::RegistrationChange => "registration_change",
            EntryKind::RegistrationCancel => "registration_cancel",
            EntryKind::ChronicQualification => "chronic_qualification",
            EntryKind::AccountCredit => "account_credit",
            EntryKind::Designation => "designation",
            EntryKind::PartnerSanction => "partner_sanction",
            EntryKind::SanctionDelivered => "sanction_delivered",
            EntryKind::SettlementIntent => "settlement_intent",
            EntryKind::Settlement => "settlement",
            EntryKind::Reversal => "reversal",
            EntryKind::SettlementEnded => "settlement_ended",
            EntryKind::Report => "report",
            EntryKind::Statement => "statement",
            EntryKind::Confirmation => "confirmation",
            EntryKind::Dispute => "dispute",
            EntryKind::Adjustment => "adjustment",
            EntryKind::MonthSeal => "month_seal",
            EntryKind::FinalStatement => "final_statement",
            EntryKind::HospitalStatement => "hospital_statement",
            EntryKind::AuditSample => "audit_sample",
            EntryKind::AuditReview => "audit_review",
            EntryKind::Note => "note",
        }
    }
}

/// Why bytes are not a well-formed entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("entry is {0} bytes, shorter than the smallest entry")]
    TooShort(usize),
    #[error("unknown format version {0}")]
    Version(u8),
    #[error("unknown entry kind {0}")]
    Kind(u16),
    #[error("idempotency key must be 1–{MAX_KEY_BYTES} bytes of UTF-8")]
    Key,
    #[error("payload of {0} bytes is over the limit of {MAX_PAYLOAD_BYTES}")]
    PayloadTooLarge(usize),
    #[error("declared lengths do not match the entry's size")]
    Length,
}

/// What the caller appends: the part of an entry that is not the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    pub kind: EntryKind,
    pub key: String,
    pub payload: Vec<u8>,
}

impl Body {
    pub fn validate(&self) -> Result<(), FormatError> {
        if self.key.is_empty() || self.key.len() > MAX_KEY_BYTES {
            return Err(FormatError::Key);
        }
        if self.payload.len() > MAX_PAYLOAD_BYTES {
            return Err(FormatError::PayloadTooLarge(self.payload.len()));
        }
        Ok(())
    }

    /// The body's exact bytes. Call [`Body::validate`] first.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(8 + self.key.len() + self.payload.len());
        b.extend_from_slice(&self.kind.code().to_be_bytes());
        b.extend_from_slice(&(self.key.len() as u16).to_be_bytes());
        b.extend_from_slice(self.key.as_bytes());
        b.extend_from_slice(&(self.payload.len() as u32).to_be_bytes());
        b.extend_from_slice(&self.payload);
        b
    }
}

/// The frame the ledger's writer assigns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub seq: u64,
    pub timestamp_ms: i64,
    pub prev_hash: Hash,
}

/// Assembles the stored bytes from a frame and an encoded body.
pub fn assemble(frame: &Frame, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(FRAME_LEN + body.len());
    b.push(FORMAT_VERSION);
    b.extend_from_slice(&frame.seq.to_be_bytes());
    b.extend_from_slice(&frame.timestamp_ms.to_be_bytes());
    b.extend_from_slice(&frame.prev_hash);
    b.extend_from_slice(body);
    b
}

pub fn entry_hash(stored: &[u8]) -> Hash {
    Sha256::digest(stored).into()
}

/// A decoded entry, holding its exact stored bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub frame: Frame,
    pub body: Body,
    pub bytes: Vec<u8>,
}

impl Entry {
    /// Decodes stored bytes, refusing anything not exactly of the format.
    pub fn decode(bytes: Vec<u8>) -> Result<Entry, FormatError> {
        let min = FRAME_LEN + 2 + 2 + 4;
        if bytes.len() < min {
            return Err(FormatError::TooShort(bytes.len()));
        }
        if bytes[0] != FORMAT_VERSION {
            return Err(FormatError::Version(bytes[0]));
        }
        let u16_at = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
        let seq = u64::from_be_bytes(bytes[1..9].try_into().map_err(|_| FormatError::Length)?);
        let timestamp_ms = i64::from_be_bytes(bytes[9..17].try_into().map_err(|_| FormatError::Length)?);
        let prev_hash: Hash = bytes[17..49].try_into().map_err(|_| FormatError::Length)?;
        let code = u16_at(FRAME_LEN);
        let kind = EntryKind::from_code(code).ok_or(FormatError::Kind(code))?;
        let key_len = usize::from(u16_at(FRAME_LEN + 2));
        if key_len == 0 || key_len > MAX_KEY_BYTES {
            return Err(FormatError::Key);
        }
        let key_start = FRAME_LEN + 4;
        let len_at = key_start + key_len;
        if bytes.len() < len_at + 4 {
            return Err(FormatError::Length);
        }
        let payload_len =
            u32::from_be_bytes(bytes[len_at..len_at + 4].try_into().map_err(|_| FormatError::Length)?) as usize;
        if payload_len > MAX_PAYLOAD_BYTES {
            return Err(FormatError::PayloadTooLarge(payload_len));
        }
        let payload_start = len_at + 4;
        if bytes.len() != payload_start + payload_len {
            return Err(FormatError::Length);
        }
        let key = std::str::from_utf8(&bytes[key_start..len_at]).map_err(|_| FormatError::Key)?.to_string();
        let payload = bytes[payload_start..].to_vec();
        Ok(Entry { frame: Frame { seq, timestamp_ms, prev_hash }, body: Body { kind, key, payload }, bytes })
    }

    /// The exact body bytes (a slice of the stored bytes).
    pub fn body_bytes(&self) -> &[u8] {
        &self.bytes[FRAME_LEN..]
    }

    pub fn hash(&self) -> Hash {
        entry_hash(&self.bytes)
    }

    pub fn seq(&self) -> u64 {
        self.frame.seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let body = Body { kind: EntryKind::Settlement, key: "setl:1".into(), payload: b"{}".to_vec() };
        body.validate().unwrap();
        let frame = Frame { seq: 7, timestamp_ms: 1_773_100_800_000, prev_hash: [9; 32] };
        let bytes = assemble(&frame, &body.encode());
        let e = Entry::decode(bytes.clone()).unwrap();
        assert_eq!(e.frame, frame);
        assert_eq!(e.body, body);
        assert_eq!(e.body_bytes(), body.encode().as_slice());
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Entry::decode(longer), Err(FormatError::Length));
        let mut bad_kind = bytes.clone();
        bad_kind[FRAME_LEN + 1] = 0xEE;
        assert!(matches!(Entry::decode(bad_kind), Err(FormatError::Kind(_))));
        assert!(matches!(Entry::decode(bytes[..40].to_vec()), Err(FormatError::TooShort(40))));
        for cut in 0..bytes.len() {
            assert!(Entry::decode(bytes[..cut].to_vec()).is_err());
        }
    }

    #[test]
    fn kinds_round_trip() {
        for k in EntryKind::ALL {
            assert_eq!(EntryKind::from_code(k.code()), Some(k));
        }
    }
}
