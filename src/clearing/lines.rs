//! Settlement lines as clearing sees them, and what each side reports.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::month::Month;
use crate::ledger::merkle::{self, Hash};
use crate::med_type::{MedCategory, MedType};
use crate::money::Amount;
use crate::region::RegionCode;

/// The amounts of a line (negative for a reversal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Amounts {
    pub medfee_sumamt: Amount,
    pub hifp_pay: Amount,
    pub hifmi_pay: Amount,
    pub hifob_pay: Amount,
    pub maf_pay: Amount,
    /// What the funds paid.
    pub fund_pay_sumamt: Amount,
    /// What the person's account paid: the home region owes it too.
    #[serde(default)]
    pub acct_pay: Amount,
    /// What is owed ([`Amounts::owed`]), split by medical type.
    #[serde(default)]
    pub by_type: TypeSplit,
}

/// Amounts owed by medical type (REFERENCE_POLICIES.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TypeSplit {
    pub outpatient: Amount,
    pub chronic: Amount,
    pub pharmacy: Amount,
    pub inpatient: Amount,
}

impl TypeSplit {
    /// `owed` all in one category.
    pub fn of(category: MedCategory, owed: Amount) -> TypeSplit {
        let mut t = TypeSplit::default();
        *t.get_mut(category) = owed;
        t
    }

    pub fn get(&self, category: MedCategory) -> Amount {
        match category {
            MedCategory::Outpatient => self.outpatient,
            MedCategory::Chronic => self.chronic,
            MedCategory::Pharmacy => self.pharmacy,
            MedCategory::Inpatient => self.inpatient,
        }
    }

    fn get_mut(&mut self, category: MedCategory) -> &mut Amount {
        match category {
            MedCategory::Outpatient => &mut self.outpatient,
            MedCategory::Chronic => &mut self.chronic,
            MedCategory::Pharmacy => &mut self.pharmacy,
            MedCategory::Inpatient => &mut self.inpatient,
        }
    }

    pub fn plus(&self, o: &TypeSplit) -> TypeSplit {
        TypeSplit {
            outpatient: self.outpatient + o.outpatient,
            chronic: self.chronic + o.chronic,
            pharmacy: self.pharmacy + o.pharmacy,
            inpatient: self.inpatient + o.inpatient,
        }
    }

    pub fn total(&self) -> Amount {
        self.outpatient + self.chronic + self.pharmacy + self.inpatient
    }
}

impl Amounts {
    pub fn plus(&self, o: &Amounts) -> Amounts {
        Amounts {
            medfee_sumamt: self.medfee_sumamt + o.medfee_sumamt,
            hifp_pay: self.hifp_pay + o.hifp_pay,
            hifmi_pay: self.hifmi_pay + o.hifmi_pay,
            hifob_pay: self.hifob_pay + o.hifob_pay,
            maf_pay: self.maf_pay + o.maf_pay,
            fund_pay_sumamt: self.fund_pay_sumamt + o.fund_pay_sumamt,
            acct_pay: self.acct_pay + o.acct_pay,
            by_type: self.by_type.plus(&o.by_type),
        }
    }

    /// What the home region owes the treatment region: funds and account.
    pub fn owed(&self) -> Amount {
        self.fund_pay_sumamt + self.acct_pay
    }
}

/// Which clearing channel a line belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    National,
    /// Care across a corps–local pair: netted bilaterally between the two funds.
    CorpsLocal,
}

/// One settlement or reversal, as one side recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub setl_id: String,
    pub home: RegionCode,
    pub treatment: RegionCode,
    pub channel: Channel,
    pub month: Month,
    pub amounts: Amounts,
    /// The settlement's medical type (an aggregate line: its pair's first).
    #[serde(default = "stay")]
    pub med_type: MedType,
    /// Settlements this line stands for: 1, or a matched pair's count when
    /// the operator clears the pair as one aggregate line.
    #[serde(default = "one")]
    pub count: u64,
}

fn one() -> u64 {
    1
}

fn stay() -> MedType {
    MedType::DEFAULT
}

/// A (home, treatment) pair of regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Pair {
    pub home: RegionCode,
    pub treatment: RegionCode,
}

impl Line {
    pub fn pair(&self) -> Pair {
        Pair { home: self.home, treatment: self.treatment }
    }
}

/// One side's summary of a pair for a month: count, sums, and a commitment to
/// the settlement ids (RFC 6962 root over the sorted ids).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairSummary {
    pub count: u64,
    pub amounts: Amounts,
    #[serde(with = "hex_hash")]
    pub ids_root: Hash,
}

/// Running totals of one pair, kept as settlements commit, so a month's
/// report costs nothing to build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunningPair {
    pub count: u64,
    pub amounts: Amounts,
    pub ids: Vec<String>,
}

impl RunningPair {
    pub fn add(&mut self, line: &Line) {
        self.count += line.count;
        self.amounts = self.amounts.plus(&line.amounts);
        self.ids.push(line.setl_id.clone());
    }

    pub fn summary(&self) -> PairSummary {
        PairSummary { count: self.count, amounts: self.amounts, ids_root: ids_root(&self.ids) }
    }
}

/// Root over the settlement ids in sorted order.
pub fn ids_root(ids: &[String]) -> Hash {
    let mut sorted: Vec<&String> = ids.iter().collect();
    sorted.sort();
    let leaves: Vec<Hash> = sorted.iter().map(|id| merkle::leaf_hash(id.as_bytes())).collect();
    merkle::root(&leaves)
}

/// Summaries of lines by pair.
pub fn summarize(lines: &[Line]) -> BTreeMap<Pair, PairSummary> {
    let mut running: BTreeMap<Pair, RunningPair> = BTreeMap::new();
    for l in lines {
        running.entry(l.pair()).or_default().add(l);
    }
    running.into_iter().map(|(p, r)| (p, r.summary())).collect()
}

pub(crate) mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(h))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(&s)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| serde::de::Error::custom("not a 32-byte hex hash"))
    }
}
