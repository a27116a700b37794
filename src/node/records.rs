//! What nodes write on their ledgers (JSON payloads). Signed messages are kept
//! verbatim (hex of the exact bytes received) so any party can re-verify them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::proto::{BatchProof, Signed};
use crate::rules::SpecialGroup;
use crate::settlement::CounterDelta;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeRecord {
    pub body: String,
    pub signature: String,
    pub signer: String,
    /// The body's place in a signed batch, when one signature covers several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchRecord>,
}

/// [`BatchProof`] as recorded: the audit path in hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRecord {
    pub index: u32,
    pub size: u32,
    pub path: Vec<String>,
}

impl From<&Signed> for EnvelopeRecord {
    fn from(s: &Signed) -> Self {
        EnvelopeRecord {
            body: to_hex(&s.body),
            signature: to_hex(&s.signature),
            signer: s.signer.clone(),
            batch: s.batch.as_ref().map(|b| BatchRecord {
                index: b.index,
                size: b.size,
                path: b.path.iter().map(|h| to_hex(h)).collect(),
            }),
        }
    }
}

impl EnvelopeRecord {
    pub fn to_signed(&self) -> Option<Signed> {
        let batch = match &self.batch {
            None => None,
            Some(b) => Some(BatchProof {
                index: b.index,
                size: b.size,
                path: b.path.iter().map(|h| from_hex(h)).collect::<Option<_>>()?,
            }),
        };
        Some(Signed {
            body: from_hex(&self.body)?,
            signature: from_hex(&self.signature)?,
            signer: self.signer.clone(),
            batch,
        })
    }
}

/// Lower-case hex, the same text as `hex::encode`, written into one buffer
/// (`hex::encode` collects a char at a time: several times slower, and every
/// settlement record holds a few kilobytes of it).
pub fn to_hex(bytes: &[u8]) -> String {
    let mut buf = vec![0u8; bytes.len() * 2];
    match hex::encode_to_slice(bytes, &mut buf) {
        Ok(()) => String::from_utf8(buf).unwrap_or_else(|_| hex::encode(bytes)),
        Err(_) => hex::encode(bytes),
    }
}

/// The bytes of hex text (either case), as `hex::decode`, into one buffer.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let mut buf = vec![0u8; text.len() / 2];
    hex::decode_to_slice(text, &mut buf).ok()?;
    Some(buf)
}

/// An insured person as the home node holds them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonRecord {
    pub psn_no: String,
    pub insuplc_admdvs: String,
    pub insutype: String,
    #[serde(default)]
    pub retired: bool,
    #[serde(default)]
    pub special_group: Option<SpecialGroup>,
    #[serde(default)]
    pub contribution_years: BTreeMap<String, u32>,
}

/// A registration as filed, changed or cancelled (the record after the operation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationEntry {
    pub request: EnvelopeRecord,
    pub op: String,
    pub reg_id: String,
    pub psn_no: String,
    pub kind: String,
    pub target_admdvs: String,
    pub begndate: String,
    pub enddate: Option<String>,
    pub cancelled: bool,
}

/// An intent the home node refused for good (kind `settlement_ended`, under
/// the outcome's key): its reason and message, answered again on a retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndedEntry {
    pub intent_key: String,
    pub reason: String,
    pub message: String,
}

/// A settlement or reversal committed by the home node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HomeSettlementEntry {
    pub claim: EnvelopeRecord,
    pub result: EnvelopeRecord,
    pub setl_id: String,
    pub psn_no: String,
    pub year: i32,
    pub delta: CounterDelta,
    pub treatment: String,
    pub fixmedins_code: String,
    pub reversed_setl_id: Option<String>,
}

/// The treatment node's record that it is about to ask the home node. The
/// signed claim carries the hospital's signed request (`hospital_request`),
/// so it is not stored a second time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentEntry {
    pub claim: EnvelopeRecord,
    pub home: String,
}

impl IntentEntry {
    /// The hospital's signed request, from inside the claim.
    pub fn hospital_request(&self) -> Option<Signed> {
        let claim: crate::proto::Claim = crate::api::envelope::peek(&self.claim.to_signed()?).ok()?;
        claim.hospital_request
    }
}

/// The treatment node's record of the home node's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeEntry {
    pub intent_key: String,
    pub result: EnvelopeRecord,
}

pub fn to_payload<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn hex_is_the_hex_crates_text_both_ways(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let text = to_hex(&bytes);
            prop_assert_eq!(&text, &hex::encode(&bytes));
            prop_assert_eq!(from_hex(&text), Some(bytes.clone()));
            prop_assert_eq!(from_hex(&text.to_uppercase()), Some(bytes));
        }
    }

    #[test]
    fn odd_or_non_hex_text_is_not_bytes() {
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex("0g"), None);
        assert_eq!(from_hex(""), Some(Vec::new()));
    }
}
