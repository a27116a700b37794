//! A signed envelope as a ledger records it (JSON, the exact bytes in hex),
//! so any party can verify it again from the ledger alone.

use serde::{Deserialize, Serialize};

use crate::proto::{BatchProof, Signed};

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

/// The JSON payload of a ledger entry.
pub fn to_payload<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}
