//! The node's ledger keys, `<what>:…`: each built here and read back here,
//! so what a key names and how it is spelt live in one place (the operator's
//! are in `operator::index::keys`). A key names the fact an entry records,
//! which is what makes appends idempotent.

use crate::clearing::Month;

/// A home node's commit of a claim: the claiming region, its hospital and
/// the hospital's msgid.
pub fn claim(treatment: &str, hospital: &str, msgid: &str) -> String {
    format!("{CLAIM}{treatment}:{hospital}:{msgid}")
}

/// The id a home node gives what it commits under a claim `key`: `S` (a
/// settlement) or `R` (a reversal), its region, and the first 64 bits of the
/// key's SHA-256 in hex, which is the digest the ledger's key index files
/// the entry under: the id finds its entry with no table of its own. When
/// the ledger holds another key with that digest already (`digest_taken`;
/// about 3 in a million at 10 million claims), the first 128 bits, so no two
/// commits share an id.
pub fn setl_id(prefix: char, region: &str, key: &str, digest_taken: bool) -> String {
    use sha2::Digest;
    let hex = hex::encode(sha2::Sha256::digest(key.as_bytes()));
    format!("{prefix}{region}{}", &hex[..if digest_taken { 32 } else { 16 }])
}

/// [`setl_id`] for a new claim `key`, given the keys of the entries the
/// ledger holds under its digest: the long form if one of them is another
/// key. (Two such keys committed at the same moment could both miss the
/// other; at 2^-64 a pair, not guarded against.)
pub fn new_setl_id<'a>(
    prefix: char,
    region: &str,
    key: &str,
    sharing_digest: impl IntoIterator<Item = &'a str>,
) -> String {
    let taken = sharing_digest.into_iter().any(|k| k != key);
    setl_id(prefix, region, key, taken)
}

/// The key digest a settlement id of `region` carries ([`setl_id`]).
pub fn setl_id_digest(region: &str, setl_id: &str) -> Option<u64> {
    let hex = setl_id.strip_prefix('S')?.strip_prefix(region)?;
    let lower = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if !matches!(hex.len(), 16 | 32) || !hex.bytes().all(lower) {
        return None;
    }
    u64::from_str_radix(&hex[..16], 16).ok()
}

/// A treatment node's intent to settle a hospital's msgid.
pub fn intent(hospital: &str, msgid: &str) -> String {
    format!("{INTENT}{hospital}:{msgid}")
}

/// The answer a treatment node recorded for a hospital's msgid (a result, or
/// the refusal that ended the intent).
pub fn outcome(hospital: &str, msgid: &str) -> String {
    format!("{OUTCOME}{hospital}:{msgid}")
}

/// The outcome key that answers an intent key.
pub fn outcome_of_intent(intent_key: &str) -> Option<String> {
    intent_key.strip_prefix(INTENT).map(|rest| format!("{OUTCOME}{rest}"))
}

/// The intent key an outcome key answers.
pub fn intent_of_outcome(outcome_key: &str) -> Option<String> {
    outcome_key.strip_prefix(OUTCOME).map(|rest| format!("{INTENT}{rest}"))
}

/// (hospital, msgid) of an outcome key.
pub fn outcome_parts(key: &str) -> Option<(&str, &str)> {
    key.strip_prefix(OUTCOME)?.split_once(':')
}

/// (hospital, msgid) of an intent key.
pub fn parse_intent(key: &str) -> Option<(&str, &str)> {
    key.strip_prefix(INTENT)?.split_once(':')
}

/// An insured person's record, by a digest of its content and of the record
/// it replaces (`None`: the person's first), so the same import twice is one
/// entry and a record restated after another is a new one.
pub fn person(psn_no: &str, digest_hex: &str, replaces_hex: Option<&str>) -> String {
    let short = |h: &str| h.get(..16).unwrap_or(h).to_string();
    format!("person:{psn_no}:{}:{}", short(digest_hex), replaces_hex.map_or_else(|| "new".to_string(), short))
}

/// A batch of person records, by a digest of each record and the record it
/// replaces.
pub fn person_batch(digest_hex: &str) -> String {
    format!("persons:{}", digest_hex.get(..32).unwrap_or(digest_hex))
}

/// A registration request of an admin, by its msgid.
pub fn registration(admin: &str, msgid: &str) -> String {
    format!("reg:{admin}:{msgid}")
}

/// A chronic-disease qualification request of an admin, by its msgid.
pub fn qualification(admin: &str, msgid: &str) -> String {
    format!("qual:{admin}:{msgid}")
}

/// A personal-account credit of an admin, by its msgid.
pub fn account_credit(admin: &str, msgid: &str) -> String {
    format!("acct:{admin}:{msgid}")
}

/// A designation change of an admin, by its msgid.
pub fn designation(admin: &str, msgid: &str) -> String {
    format!("desig:{admin}:{msgid}")
}

/// A partner's designation change (its key there), recorded here.
pub fn partner_sanction(partner: &str, designation_key: &str) -> String {
    format!("psanction:{partner}:{designation_key}")
}

/// A designation change (its key) delivered to a partner.
pub fn sanction_delivered(partner: &str, designation_key: &str) -> String {
    format!("delivered:{partner}:{designation_key}")
}

/// A month's final statement, as the operator sent it.
pub fn final_statement(month: Month) -> String {
    format!("final:{month}")
}

/// An institution's statement of a month.
pub fn hospital_statement(code: &str, month: Month) -> String {
    format!("hstmt:{code}:{month}")
}

/// A page of a month's audit sample.
pub fn audit_sample(month: Month, page: usize) -> String {
    format!("{AUDIT_SAMPLE}{month}:{page:05}")
}

/// A reviewer's outcome for a sampled settlement (one per settlement).
pub fn audit_review(month: Month, setl_id: &str) -> String {
    format!("review:{month}:{setl_id}")
}

/// A month's seal.
pub fn seal(month: Month) -> String {
    format!("{SEAL}{month}")
}

/// The month a seal key seals.
pub fn sealed_month(key: &str) -> Option<Month> {
    key.strip_prefix(SEAL).and_then(Month::parse)
}

pub fn is_claim(key: &str) -> bool {
    key.starts_with(CLAIM)
}

pub fn is_outcome(key: &str) -> bool {
    key.starts_with(OUTCOME)
}

const CLAIM: &str = "claim:";
const INTENT: &str = "intent:";
const OUTCOME: &str = "outcome:";
const SEAL: &str = "seal:";
const AUDIT_SAMPLE: &str = "sample:";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_back() {
        let i = intent("H1", "m1");
        assert_eq!(parse_intent(&i), Some(("H1", "m1")));
        assert_eq!(outcome_of_intent(&i), Some(outcome("H1", "m1")));
        assert_eq!(intent_of_outcome(&outcome("H1", "m1")), Some(i));
        assert!(is_claim(&claim("110000", "H1", "m1")) && !is_claim(&outcome("H1", "m1")));
        assert!(is_outcome(&outcome("H1", "m1")));
        let march = Month::parse("2026-03").expect("month");
        assert_eq!(sealed_month(&seal(march)), Some(march));
        assert_eq!(person("P1", "0123456789abcdef0123", None), "person:P1:0123456789abcdef:new");
        assert_eq!(
            person("P1", "0123456789abcdef0123", Some("fedcba98765432100")),
            "person:P1:0123456789abcdef:fedcba9876543210"
        );
        assert_eq!(registration("agency", "r1"), "reg:agency:r1");
    }

    #[test]
    fn a_settlement_id_carries_its_keys_index_digest() {
        let key = claim("110000", "H1", "m1");
        let id = setl_id('S', "611000", &key, false);
        assert_eq!(id.len(), 1 + 6 + 16);
        assert_eq!(setl_id_digest("611000", &id), Some(crate::ledger::key_digest(&key)));
        assert_eq!(
            setl_id_digest("611000", &setl_id('S', "611000", "another", false)),
            Some(crate::ledger::key_digest("another"))
        );
        // Its digest taken by another key: longer, the same digest, another id.
        let long = setl_id('S', "611000", &key, true);
        assert_eq!(long.len(), 1 + 6 + 32);
        assert!(long.starts_with(&id) && long != id);
        assert_eq!(setl_id_digest("611000", &long), Some(crate::ledger::key_digest(&key)));
        assert_eq!(new_setl_id('S', "611000", &key, []), id, "a key no entry holds");
        assert_eq!(new_setl_id('S', "611000", &key, [key.as_str()]), id, "the key's own entry");
        assert_eq!(new_setl_id('S', "611000", &key, [key.as_str(), "other"]), long, "another key's entry");
        let hex = &id[7..];
        for other in [
            setl_id('R', "611000", &key, false),
            setl_id('S', "110000", &key, false),
            format!("S611000{}", hex.to_uppercase()),
            format!("S611000{}", &hex[..15]),
            format!("S611000{hex}0"),
            format!("S611000{}g", &hex[..15]),
            format!("{long}0"),
            long[..long.len() - 1].to_string(),
            String::new(),
        ] {
            assert_eq!(setl_id_digest("611000", &other), None, "{other}");
        }
    }
}
