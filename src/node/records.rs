//! What nodes write on their ledgers (JSON payloads). Signed messages are kept
//! verbatim (hex of the exact bytes received) so any party can re-verify them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::api::record::{from_hex, to_hex, to_payload, BatchRecord, EnvelopeRecord};
use crate::proto::Signed;
use crate::rules::SpecialGroup;
use crate::settlement::CounterDelta;

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
    /// Employees: the account balance the agency's books hold (sets it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acct_balance: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chronic: Vec<QualificationRecord>,
}

/// A chronic-disease qualification as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualificationRecord {
    pub dise_codg: String,
    pub begndate: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enddate: Option<String>,
}

/// Insured persons loaded in bulk: each record applies as a person import
/// does, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonBatchEntry {
    pub records: Vec<PersonRecord>,
}

/// A qualification granted or ended at run time by an admin's signed request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QualificationEntry {
    pub request: EnvelopeRecord,
    pub psn_no: String,
    /// The person's qualification for the disease after the request.
    pub qualification: QualificationRecord,
}

/// A credit to an employee's personal account by an admin's signed request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountCreditEntry {
    pub request: EnvelopeRecord,
    pub psn_no: String,
    pub amount: crate::money::Amount,
    pub reason: String,
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
    /// The intent was a reversal's (not counted as a refused claim).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reversal: bool,
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
