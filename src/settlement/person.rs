//! The insured person and their registration (异地就医备案), as the home
//! region holds them.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use crate::region::{CorpsLocalPairs, RegionCode};
use crate::rules::{Insutype, SpecialGroup};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub psn_no: String,
    pub insuplc_admdvs: RegionCode,
    pub insutype: Insutype,
    pub retired: bool,
    pub special_group: Option<SpecialGroup>,
    /// Contribution years by the region where they were paid.
    pub contribution_years: BTreeMap<RegionCode, u32>,
    /// Chronic-disease qualifications (慢特病资格认定) the home region granted.
    pub chronic: Vec<ChronicQualification>,
}

impl Person {
    /// Years recognised by a home region: those paid inside its area, plus
    /// those paid in a corps–local partner (缴费年限互认).
    pub fn recognised_years(&self, home: RegionCode, pairs: &CorpsLocalPairs) -> u32 {
        self.contribution_years
            .iter()
            .filter(|(r, _)| home.covers(**r) || pairs.are_partners(home, **r))
            .map(|(_, y)| *y)
            .fold(0u32, u32::saturating_add)
    }
}

/// Registration kinds: three long-term, three temporary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationKind {
    /// 异地安置退休
    ResettledRetiree,
    /// 异地长期居住
    LongTermResident,
    /// 常驻异地工作
    ResidentWorker,
    /// 异地转诊
    Referral,
    /// 急诊抢救: deemed registered even without a filing.
    Emergency,
    /// 其他临时外出
    OtherTemporary,
}

impl RegistrationKind {
    pub const ALL: [RegistrationKind; 6] = [
        RegistrationKind::ResettledRetiree,
        RegistrationKind::LongTermResident,
        RegistrationKind::ResidentWorker,
        RegistrationKind::Referral,
        RegistrationKind::Emergency,
        RegistrationKind::OtherTemporary,
    ];

    pub fn is_long_term(self) -> bool {
        matches!(
            self,
            RegistrationKind::ResettledRetiree | RegistrationKind::LongTermResident | RegistrationKind::ResidentWorker
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationKind::ResettledRetiree => "resettled_retiree",
            RegistrationKind::LongTermResident => "long_term_resident",
            RegistrationKind::ResidentWorker => "resident_worker",
            RegistrationKind::Referral => "referral",
            RegistrationKind::Emergency => "emergency",
            RegistrationKind::OtherTemporary => "other_temporary",
        }
    }

    pub fn parse(s: &str) -> Option<RegistrationKind> {
        RegistrationKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A registration as filed. Only an emergency may lack a target and dates
/// (an emergency without a filing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub kind: RegistrationKind,
    pub target_admdvs: Option<RegionCode>,
    pub begndate: Option<NaiveDate>,
    /// `None`: open-ended.
    pub enddate: Option<NaiveDate>,
}

impl Registration {
    /// An emergency without a filing.
    pub fn emergency_unfiled() -> Registration {
        Registration { kind: RegistrationKind::Emergency, target_admdvs: None, begndate: None, enddate: None }
    }

    pub fn covers_area(&self, treatment: RegionCode) -> bool {
        self.target_admdvs.is_some_and(|t| t.covers(treatment))
    }

    pub fn in_force_on(&self, date: NaiveDate) -> bool {
        self.begndate.is_some_and(|b| b <= date) && self.enddate.is_none_or(|e| date <= e)
    }

    /// In force on `date` for care in `treatment`.
    pub fn governs(&self, treatment: RegionCode, date: NaiveDate) -> bool {
        self.covers_area(treatment) && self.in_force_on(date)
    }
}

/// A chronic-disease qualification (慢特病资格认定) the home region granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChronicQualification {
    pub dise_codg: String,
    pub begndate: NaiveDate,
    /// `None`: open-ended.
    pub enddate: Option<NaiveDate>,
}

impl ChronicQualification {
    pub fn in_force_on(&self, date: NaiveDate) -> bool {
        self.begndate <= date && self.enddate.is_none_or(|e| date <= e)
    }
}

/// Hospital level 0 (township health centre) to 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HospitalLevel(u8);

impl HospitalLevel {
    /// Level 0: township health centres, and pharmacies.
    pub const TOWNSHIP: HospitalLevel = HospitalLevel(0);
    /// Level 3, the highest.
    pub const TOP: HospitalLevel = HospitalLevel(3);

    pub fn new(level: i64) -> Option<HospitalLevel> {
        u8::try_from(level).ok().filter(|l| *l <= 3).map(HospitalLevel)
    }

    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}
