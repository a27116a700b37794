//! A home region's benefit policy (参保地政策), validated and ready to apply.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use crate::med_type::MedType;
use crate::money::{Amount, Ratio};
use crate::region::RegionCode;

/// Insurance type (险种): 390 urban-rural residents, 310 employees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Insutype {
    Resident,
    Employee,
}

impl Insutype {
    pub fn parse(code: &str) -> Option<Insutype> {
        match code {
            "390" => Some(Insutype::Resident),
            "310" => Some(Insutype::Employee),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Insutype::Resident => "390",
            Insutype::Employee => "310",
        }
    }
}

/// Special groups with tilted benefits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpecialGroup {
    /// 特困
    TeKun,
    /// 低保
    DiBao,
    /// 返贫致贫
    FanPin,
    /// 低保边缘: assistance only, no basic or critical-illness tilt.
    LowIncome,
}

impl SpecialGroup {
    pub const ALL: [SpecialGroup; 4] =
        [SpecialGroup::TeKun, SpecialGroup::DiBao, SpecialGroup::FanPin, SpecialGroup::LowIncome];

    pub fn parse(name: &str) -> Option<SpecialGroup> {
        SpecialGroup::ALL.into_iter().find(|g| g.as_str() == name)
    }

    /// Every group's name, for messages: "te_kun, di_bao, fan_pin, low_income".
    pub fn names() -> String {
        SpecialGroup::ALL.map(SpecialGroup::as_str).join(", ")
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SpecialGroup::TeKun => "te_kun",
            SpecialGroup::DiBao => "di_bao",
            SpecialGroup::FanPin => "fan_pin",
            SpecialGroup::LowIncome => "low_income",
        }
    }

    /// Whether the basic-fund and critical-illness tilts apply.
    pub fn gets_tilts(self) -> bool {
        !matches!(self, SpecialGroup::LowIncome)
    }
}

/// Which fund pays critical-illness benefits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CiFund {
    /// 大病保险 (residents)
    Hifmi,
    /// 职工大额 (employees)
    Hifob,
}

/// How a temporary registration kind reduces the basic ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduction {
    /// Minus percentage points.
    Points(Decimal),
    /// Multiplied by a factor in 0–1.
    Factor(Ratio),
}

impl Reduction {
    pub const NONE: Reduction = Reduction::Points(Decimal::ZERO);

    pub fn apply(self, ratio: Ratio) -> Ratio {
        match self {
            Reduction::Points(pp) => ratio.minus_points(pp),
            Reduction::Factor(f) => ratio.scaled_by(f),
        }
    }

    /// The percentage points this reduction takes off the given ratio.
    pub fn points_off(self, ratio: Ratio) -> Decimal {
        (ratio.as_decimal() - self.apply(ratio).as_decimal()) * Decimal::ONE_HUNDRED
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reductions {
    pub referral: Reduction,
    pub emergency: Reduction,
    pub other_temporary: Reduction,
}

/// Basic-fund tilt for special groups (te_kun, di_bao, fan_pin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialBasic {
    pub bonus_pp: Decimal,
    pub cap_lifted: bool,
}

/// One band of critical-illness payment over the year's cumulative in-scope
/// self-pay: `[from, to)` paid at `ratio`; `to = None` is open-ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Band {
    pub from: Amount,
    pub to: Option<Amount>,
    pub ratio: Ratio,
}

/// Critical-illness tilt for special groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialCi {
    pub threshold_factor: Ratio,
    pub bonus_pp: Decimal,
    pub cap_lifted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriticalIllness {
    pub fund: CiFund,
    pub threshold: Amount,
    /// Contiguous, starting at `threshold`.
    pub bands: Vec<Band>,
    pub annual_cap: Amount,
    pub special: Option<SpecialCi>,
}

/// Where medical assistance applies to cross-province care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrossProvinceAssistance {
    Always,
    ReferredOrEmergency,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assistance {
    /// A group without an entry gets no assistance.
    pub ratios: BTreeMap<SpecialGroup, Ratio>,
    pub annual_limit: Amount,
    pub cross_province: CrossProvinceAssistance,
}

/// Outpatient pooling (门诊统筹, §6.1), counted per calendar year.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutpatientPolicy {
    /// Per year, not per visit.
    pub annual_deductible: Amount,
    /// By hospital level 0–3; a pooled pharmacy purchase uses level 0.
    pub ratio: [Ratio; 4],
    pub annual_cap: Amount,
    /// Whether purchases at designated pharmacies (`med_type` 41) are pooled.
    pub pharmacy_pooled: bool,
}

/// One chronic or special outpatient disease (门诊慢特病, §6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChronicDisease {
    pub name: String,
    pub ratio: Ratio,
    pub annual_cap: Amount,
}

/// Personal-account payment across regions (§6.3): for which medical types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRule {
    pub med_types: Vec<MedType>,
}

/// A benefit policy of one home region and insurance type, from its
/// effective date until the next version's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenefitPolicy {
    pub region: RegionCode,
    pub name: String,
    pub insutype: Insutype,
    pub effective: NaiveDate,
    /// Per admission, by hospital level 0–3.
    pub deductible: [Amount; 4],
    /// By hospital level 0–3.
    pub ratio: [Ratio; 4],
    pub basic_cap: Amount,
    pub retiree_bonus_pp: Decimal,
    /// Recognised contribution years a retiree needs for the bonus.
    pub retiree_min_years: Option<u32>,
    pub special_basic: Option<SpecialBasic>,
    pub critical_illness: CriticalIllness,
    pub assistance: Assistance,
    pub reductions: Reductions,
    /// Days a long-term registration must be held before it may be changed or cancelled.
    pub registration_min_holding_days: u32,
    pub outpatient: OutpatientPolicy,
    /// By `dise_codg`.
    pub chronic: BTreeMap<String, ChronicDisease>,
    /// `None`: the account does not pay for care outside the region.
    pub account: Option<AccountRule>,
    /// The rules file this came from, for messages.
    pub source: String,
}

impl BenefitPolicy {
    /// Whether the personal account may pay for this medical type across regions.
    pub fn account_pays(&self, med_type: MedType) -> bool {
        self.account.as_ref().is_some_and(|a| a.med_types.contains(&med_type))
    }

    /// The highest basic ratio this policy can produce before any reduction.
    pub fn max_ratio(&self) -> Ratio {
        let special = self.special_basic.as_ref().map_or(Decimal::ZERO, |s| s.bonus_pp);
        self.ratio
            .iter()
            .map(|r| r.plus_points(self.retiree_bonus_pp).plus_points(special))
            .max()
            .unwrap_or(Ratio::ZERO)
    }
}
