//! Region codes (医保区划 admdvs) and the area rules between them.
//!
//! A code is six digits `PPCCDD`: `PP0000` a province, `PPCC00` a prefecture,
//! `PPCCDD` a county. A province code covers its whole province, a prefecture
//! its counties, a county only itself.

use std::fmt;
use std::str::FromStr;

/// Provincial-level divisions on the national medical-insurance network, with
/// 66 for the Xinjiang Production and Construction Corps (XPCC, 兵团).
const PROVINCES: &[(u8, &str)] = &[
    (11, "北京"),
    (12, "天津"),
    (13, "河北"),
    (14, "山西"),
    (15, "内蒙古"),
    (21, "辽宁"),
    (22, "吉林"),
    (23, "黑龙江"),
    (31, "上海"),
    (32, "江苏"),
    (33, "浙江"),
    (34, "安徽"),
    (35, "福建"),
    (36, "江西"),
    (37, "山东"),
    (41, "河南"),
    (42, "湖北"),
    (43, "湖南"),
    (44, "广东"),
    (45, "广西"),
    (46, "海南"),
    (50, "重庆"),
    (51, "四川"),
    (52, "贵州"),
    (53, "云南"),
    (54, "西藏"),
    (61, "陕西"),
    (62, "甘肃"),
    (63, "青海"),
    (64, "宁夏"),
    (65, "新疆"),
    (66, "新疆生产建设兵团"),
];

/// A validated six-digit region code.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RegionCode(u32);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegionError {
    #[error("region code must be six digits, got {0:?}")]
    NotSixDigits(String),
    #[error("unknown province {province:02} in region code {code}")]
    UnknownProvince { code: String, province: u32 },
    #[error("region code {0} has a county part under no prefecture (PP00DD)")]
    CountyWithoutPrefecture(String),
}

/// The administrative level a code names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionLevel {
    Province,
    Prefecture,
    County,
}

impl RegionCode {
    pub fn parse(text: &str) -> Result<RegionCode, RegionError> {
        if text.len() != 6 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RegionError::NotSixDigits(text.to_string()));
        }
        let value: u32 = text.parse().map_err(|_| RegionError::NotSixDigits(text.to_string()))?;
        let province = value / 10_000;
        if !PROVINCES.iter().any(|(p, _)| u32::from(*p) == province) {
            return Err(RegionError::UnknownProvince { code: text.to_string(), province });
        }
        let prefecture = (value / 100) % 100;
        let county = value % 100;
        if prefecture == 0 && county != 0 {
            return Err(RegionError::CountyWithoutPrefecture(text.to_string()));
        }
        Ok(RegionCode(value))
    }

    pub fn level(self) -> RegionLevel {
        match ((self.0 / 100) % 100, self.0 % 100) {
            (0, _) => RegionLevel::Province,
            (_, 0) => RegionLevel::Prefecture,
            _ => RegionLevel::County,
        }
    }

    /// The two-digit province part.
    pub fn province_digits(self) -> u32 {
        self.0 / 10_000
    }

    /// The province code `PP0000` of this region.
    pub fn province(self) -> RegionCode {
        RegionCode(self.province_digits() * 10_000)
    }

    /// The prefecture code `PPCC00` of a county; a prefecture or province is itself.
    pub fn prefecture(self) -> RegionCode {
        match self.level() {
            RegionLevel::County => RegionCode(self.0 / 100 * 100),
            _ => self,
        }
    }

    /// Whether `other` lies inside this region's area.
    pub fn covers(self, other: RegionCode) -> bool {
        match self.level() {
            RegionLevel::Province => self.province_digits() == other.province_digits(),
            RegionLevel::Prefecture => self.0 / 100 == other.0 / 100,
            RegionLevel::County => self == other,
        }
    }

    /// Whether the two codes are in different provinces.
    pub fn is_cross_province(self, other: RegionCode) -> bool {
        self.province_digits() != other.province_digits()
    }

    /// Name of the province (for reports).
    pub fn province_name(self) -> &'static str {
        PROVINCES.iter().find(|(p, _)| u32::from(*p) == self.province_digits()).map(|(_, n)| *n).unwrap_or("?")
    }

    /// Every more general code that covers this one, most specific first
    /// (county, prefecture, province).
    pub fn lineage(self) -> impl Iterator<Item = RegionCode> {
        let mut codes = vec![self];
        if self.prefecture() != self {
            codes.push(self.prefecture());
        }
        if self.province() != self.prefecture() {
            codes.push(self.province());
        }
        codes.into_iter()
    }
}

impl FromStr for RegionCode {
    type Err = RegionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RegionCode::parse(s)
    }
}

impl fmt::Display for RegionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06}", self.0)
    }
}

impl fmt::Debug for RegionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl serde::Serialize for RegionCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for RegionCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        RegionCode::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// How the treatment region stands to the patient's home region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    Local,
    IntraProvince,
    CrossProvince,
    CorpsLocal,
}

impl Route {
    /// Whether care on this route settles only with a valid registration.
    pub fn needs_registration(self) -> bool {
        matches!(self, Route::IntraProvince | Route::CrossProvince)
    }

    pub fn parse(s: &str) -> Option<Route> {
        [Route::Local, Route::IntraProvince, Route::CrossProvince, Route::CorpsLocal]
            .into_iter()
            .find(|r| r.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Route::Local => "local",
            Route::IntraProvince => "intra_province",
            Route::CrossProvince => "cross_province",
            Route::CorpsLocal => "corps_local",
        }
    }
}

/// One configured corps–local pair (兵地医保融合): an XPCC division and the
/// Xinjiang prefecture it sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorpsLocalPair {
    pub corps: RegionCode,
    pub local: RegionCode,
}

/// The configured corps–local pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorpsLocalPairs(Vec<CorpsLocalPair>);

impl CorpsLocalPairs {
    pub fn new(pairs: Vec<CorpsLocalPair>) -> Self {
        CorpsLocalPairs(pairs)
    }

    pub fn iter(&self) -> impl Iterator<Item = &CorpsLocalPair> {
        self.0.iter()
    }

    /// Whether `a` and `b` sit on the two sides of one pair (a county counts
    /// as its prefecture).
    pub fn are_partners(&self, a: RegionCode, b: RegionCode) -> bool {
        let (a, b) = (a.prefecture(), b.prefecture());
        self.0.iter().any(|p| (p.corps == a && p.local == b) || (p.corps == b && p.local == a))
    }

    /// The pair both regions belong to, if they are partners.
    pub fn pair_of(&self, a: RegionCode, b: RegionCode) -> Option<CorpsLocalPair> {
        let (pa, pb) = (a.prefecture(), b.prefecture());
        self.0.iter().copied().find(|p| (p.corps == pa && p.local == pb) || (p.corps == pb && p.local == pa))
    }
}

/// The route of care in `treatment` for a person insured in `home`.
pub fn route(home: RegionCode, treatment: RegionCode, pairs: &CorpsLocalPairs) -> Route {
    if home.covers(treatment) {
        Route::Local
    } else if pairs.are_partners(home, treatment) {
        Route::CorpsLocal
    } else if home.is_cross_province(treatment) {
        Route::CrossProvince
    } else {
        Route::IntraProvince
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> RegionCode {
        RegionCode::parse(s).unwrap()
    }

    fn ili_pair() -> CorpsLocalPairs {
        CorpsLocalPairs::new(vec![CorpsLocalPair { corps: r("660400"), local: r("654000") }])
    }

    #[test]
    fn parses_and_rejects() {
        assert_eq!(r("110105").to_string(), "110105");
        assert!(matches!(RegionCode::parse("11010"), Err(RegionError::NotSixDigits(_))));
        assert!(matches!(RegionCode::parse("11010a"), Err(RegionError::NotSixDigits(_))));
        assert!(matches!(RegionCode::parse("990000"), Err(RegionError::UnknownProvince { .. })));
        assert!(matches!(RegionCode::parse("110005"), Err(RegionError::CountyWithoutPrefecture(_))));
    }

    #[test]
    fn levels_and_coverage() {
        assert_eq!(r("110000").level(), RegionLevel::Province);
        assert_eq!(r("611000").level(), RegionLevel::Prefecture);
        assert_eq!(r("110105").level(), RegionLevel::County);
        assert!(r("110000").covers(r("110105")));
        assert!(r("611000").covers(r("611002")));
        assert!(!r("611000").covers(r("610100")));
        assert!(!r("611002").covers(r("611000")));
        assert_eq!(r("110105").lineage().collect::<Vec<_>>(), vec![r("110105"), r("110100"), r("110000")]);
        assert_eq!(r("540000").lineage().collect::<Vec<_>>(), vec![r("540000")]);
    }

    #[test]
    fn routes() {
        let pairs = ili_pair();
        assert_eq!(route(r("611000"), r("611002"), &pairs), Route::Local);
        assert_eq!(route(r("611000"), r("610100"), &pairs), Route::IntraProvince);
        assert_eq!(route(r("611000"), r("110105"), &pairs), Route::CrossProvince);
        assert_eq!(route(r("660400"), r("654000"), &pairs), Route::CorpsLocal);
        assert_eq!(route(r("654000"), r("660402"), &pairs), Route::CorpsLocal);
        assert_eq!(route(r("654000"), r("660400"), &CorpsLocalPairs::default()), Route::CrossProvince);
        assert_eq!(route(r("654000"), r("650100"), &pairs), Route::IntraProvince);
    }
}
