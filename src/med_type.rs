//! The national platform's medical type (`med_type`) of a settlement, and the
//! four categories clearing reports by (REFERENCE_POLICIES.md §6).

use serde::{Deserialize, Serialize};

/// `med_type`: which rules compute the benefit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MedType {
    /// 11 普通门诊
    GeneralOutpatient,
    /// 13 急诊: with no registration in force for the area, an emergency filing.
    EmergencyOutpatient,
    /// 14 门诊慢特病
    ChronicOutpatient,
    /// 21 普通住院
    Inpatient,
    /// 22 外伤住院
    TraumaInpatient,
    /// 23 转外诊治住院
    ReferredInpatient,
    /// 24 急诊转住院
    EmergencyInpatient,
    /// 41 定点药店购药
    Pharmacy,
}

/// What clearing splits amounts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MedCategory {
    Outpatient,
    Chronic,
    Pharmacy,
    Inpatient,
}

impl MedType {
    pub const ALL: [MedType; 8] = [
        MedType::GeneralOutpatient,
        MedType::EmergencyOutpatient,
        MedType::ChronicOutpatient,
        MedType::Inpatient,
        MedType::TraumaInpatient,
        MedType::ReferredInpatient,
        MedType::EmergencyInpatient,
        MedType::Pharmacy,
    ];

    /// A stay unless said otherwise: what a request without `med_type` means.
    pub const DEFAULT: MedType = MedType::Inpatient;

    pub fn code(self) -> &'static str {
        match self {
            MedType::GeneralOutpatient => "11",
            MedType::EmergencyOutpatient => "13",
            MedType::ChronicOutpatient => "14",
            MedType::Inpatient => "21",
            MedType::TraumaInpatient => "22",
            MedType::ReferredInpatient => "23",
            MedType::EmergencyInpatient => "24",
            MedType::Pharmacy => "41",
        }
    }

    pub fn parse(code: &str) -> Option<MedType> {
        MedType::ALL.into_iter().find(|t| t.code() == code)
    }

    /// Empty text is the default (a stay); anything else must be a known code.
    pub fn parse_or_default(code: &str) -> Option<MedType> {
        if code.is_empty() {
            Some(MedType::DEFAULT)
        } else {
            MedType::parse(code)
        }
    }

    /// Every code, for messages: "11, 13, 14, 21, 22, 23, 24, 41".
    pub fn codes() -> String {
        MedType::ALL.map(MedType::code).join(", ")
    }

    pub fn category(self) -> MedCategory {
        match self {
            MedType::GeneralOutpatient | MedType::EmergencyOutpatient => MedCategory::Outpatient,
            MedType::ChronicOutpatient => MedCategory::Chronic,
            MedType::Pharmacy => MedCategory::Pharmacy,
            MedType::Inpatient
            | MedType::TraumaInpatient
            | MedType::ReferredInpatient
            | MedType::EmergencyInpatient => MedCategory::Inpatient,
        }
    }
}

impl MedCategory {
    pub const ALL: [MedCategory; 4] =
        [MedCategory::Outpatient, MedCategory::Chronic, MedCategory::Pharmacy, MedCategory::Inpatient];

    pub fn as_str(self) -> &'static str {
        match self {
            MedCategory::Outpatient => "outpatient",
            MedCategory::Chronic => "chronic",
            MedCategory::Pharmacy => "pharmacy",
            MedCategory::Inpatient => "inpatient",
        }
    }
}

impl std::fmt::Display for MedType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for MedType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for MedType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        MedType::parse(&code)
            .ok_or_else(|| serde::de::Error::custom(format!("{code:?} is not a med_type ({})", MedType::codes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_nothing_else_parses() {
        for t in MedType::ALL {
            assert_eq!(MedType::parse(t.code()), Some(t));
        }
        for bad in ["", "12", "21 ", "4", "410", "x"] {
            assert_eq!(MedType::parse(bad), None, "{bad:?}");
        }
        assert_eq!(MedType::parse_or_default(""), Some(MedType::Inpatient));
    }
}
