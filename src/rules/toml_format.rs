//! The on-disk TOML format of `clearing_rules/` (documented in
//! `clearing_rules/README.md`) and its conversion into validated domain types.
//!
//! Numbers that are money or ratios may be written as TOML integers (`70`) or
//! decimal strings (`"87.5"`); TOML floats are refused, because they are binary
//! floating point.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Deserialize;

use super::catalogue::{Catalogue, CatalogueItem, CatalogueScope, ItemClass};
use super::error::Checker;
use super::policy::*;
use crate::med_type::MedType;
use crate::money::{Amount, Ratio};
use crate::region::{CorpsLocalPair, RegionCode};

/// National ceilings on temporary-trip reductions, in percentage points.
pub const MAX_REDUCTION_PP_REFERRAL: u32 = 10;
pub const MAX_REDUCTION_PP_EMERGENCY: u32 = 10;
pub const MAX_REDUCTION_PP_OTHER_TEMPORARY: u32 = 20;

/// A decimal written as a TOML integer or a decimal string.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Num(pub Decimal);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Num;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an integer or a decimal string such as \"87.5\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Num, E> {
                Ok(Num(Decimal::from(v)))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Num, E> {
                Ok(Num(Decimal::from(v)))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Num, E> {
                Err(E::custom(format!("{v} is a float; write fractional values as decimal strings, e.g. \"{v}\"")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Num, E> {
                let plain = !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.' || c == '-');
                match Decimal::from_str(v) {
                    Ok(d) if plain => Ok(Num(d)),
                    _ => Err(E::custom(format!("{v:?} is not a decimal number"))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    pub region: String,
    pub name: String,
    pub insutype: String,
    pub effective: String,
    pub basic: BasicSection,
    pub critical_illness: CiSection,
    pub assistance: AssistanceSection,
    pub reductions: ReductionsSection,
    #[serde(default)]
    pub registration: Option<RegistrationSection>,
    pub outpatient: OutpatientSection,
    #[serde(default)]
    pub chronic: Vec<ChronicEntry>,
    #[serde(default)]
    pub account: Option<AccountSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutpatientSection {
    pub annual_deductible: Num,
    pub ratio_pct: Vec<Num>,
    pub annual_cap: Num,
    #[serde(default)]
    pub pharmacy_pooled: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChronicEntry {
    pub dise_codg: String,
    pub name: String,
    pub ratio_pct: Num,
    pub annual_cap: Num,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSection {
    /// The medical types the personal account may pay for across regions.
    pub med_types: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationSection {
    /// Days a long-term registration must be held before a change or cancel.
    #[serde(default)]
    pub min_holding_days: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicSection {
    pub deductible: Vec<Num>,
    pub ratio_pct: Vec<Num>,
    pub annual_cap: Num,
    #[serde(default)]
    pub retiree_bonus_pp: Option<Num>,
    #[serde(default)]
    pub retiree_min_contribution_years: Option<u32>,
    #[serde(default)]
    pub special_groups: Option<SpecialBasicSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecialBasicSection {
    pub bonus_pp: Num,
    #[serde(default)]
    pub cap_lifted: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CiSection {
    pub fund: String,
    pub threshold: Num,
    pub annual_cap: Num,
    pub bands: Vec<BandEntry>,
    #[serde(default)]
    pub special_groups: Option<SpecialCiSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BandEntry {
    pub from: Num,
    #[serde(default)]
    pub to: Option<Num>,
    pub ratio_pct: Num,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecialCiSection {
    pub threshold_factor: Num,
    pub bonus_pp: Num,
    #[serde(default)]
    pub cap_lifted: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssistanceSection {
    pub annual_limit: Num,
    pub cross_province: String,
    #[serde(default)]
    pub ratio_pct: BTreeMap<String, Num>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReductionsSection {
    pub referral: ReductionEntry,
    pub emergency: ReductionEntry,
    pub other_temporary: ReductionEntry,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReductionEntry {
    #[serde(default)]
    pub pp: Option<Num>,
    #[serde(default)]
    pub factor: Option<Num>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogueFile {
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub national_base: bool,
    pub name: String,
    pub effective: String,
    pub b_selfpay_share_pct: Num,
    pub items: Vec<ItemEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemEntry {
    pub code: String,
    pub name: String,
    pub class: String,
    #[serde(default)]
    pub price_cap: Option<Num>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairsFile {
    #[serde(default)]
    pub pairs: Vec<PairEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairEntry {
    pub corps: String,
    pub local: String,
    #[serde(default)]
    pub name: String,
}

// ---- conversion with validation -------------------------------------------

fn region(c: &mut Checker, key: &str, text: &str) -> Option<RegionCode> {
    RegionCode::parse(text).map_err(|e| c.fail(key, e.to_string())).ok()
}

fn date(c: &mut Checker, key: &str, text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| c.fail(key, format!("{text:?} is not a date (YYYY-MM-DD)")))
        .ok()
}

fn amount(c: &mut Checker, key: &str, n: Num) -> Option<Amount> {
    if n.0.is_sign_negative() && !n.0.is_zero() {
        c.fail(key, format!("must not be negative, got {}", n.0));
        return None;
    }
    Amount::parse_non_negative(&n.0.to_string()).map_err(|e| c.fail(key, e.to_string())).ok()
}

fn percent(c: &mut Checker, key: &str, n: Num) -> Option<Ratio> {
    let r = Ratio::from_percent(n.0);
    if r.is_none() {
        c.fail(key, format!("ratio {}% is outside 0–100%", n.0));
    }
    r
}

fn points(c: &mut Checker, key: &str, n: Num) -> Option<Decimal> {
    if n.0 < Decimal::ZERO || n.0 > Decimal::ONE_HUNDRED {
        c.fail(key, format!("{} percentage points is outside 0–100", n.0));
        return None;
    }
    Some(n.0)
}

fn per_level<T>(
    c: &mut Checker,
    key: &str,
    values: &[Num],
    f: impl Fn(&mut Checker, &str, Num) -> Option<T>,
) -> Option<[T; 4]> {
    if values.len() != 4 {
        c.fail(key, format!("needs exactly 4 values (hospital levels 0–3), got {}", values.len()));
        return None;
    }
    let parsed: Vec<T> = values.iter().enumerate().filter_map(|(i, v)| f(c, &format!("{key}[{i}]"), *v)).collect();
    parsed.try_into().ok()
}

impl PolicyFile {
    pub(crate) fn into_policy(self, c: &mut Checker) -> Option<BenefitPolicy> {
        let region = region(c, "region", &self.region);
        let insutype = Insutype::parse(&self.insutype);
        if insutype.is_none() {
            c.fail("insutype", format!("{:?} is not an insurance type (390 resident, 310 employee)", self.insutype));
        }
        let effective = date(c, "effective", &self.effective);
        let deductible = per_level(c, "basic.deductible", &self.basic.deductible, amount);
        let ratio = per_level(c, "basic.ratio_pct", &self.basic.ratio_pct, percent);
        let basic_cap = amount(c, "basic.annual_cap", self.basic.annual_cap);
        let retiree_bonus_pp = match self.basic.retiree_bonus_pp {
            Some(n) => points(c, "basic.retiree_bonus_pp", n),
            None => Some(Decimal::ZERO),
        };
        let special_basic = match self.basic.special_groups {
            Some(s) => points(c, "basic.special_groups.bonus_pp", s.bonus_pp)
                .map(|bonus_pp| Some(SpecialBasic { bonus_pp, cap_lifted: s.cap_lifted })),
            None => Some(None),
        };
        let critical_illness = self.critical_illness.convert(c);
        let assistance = self.assistance.convert(c);
        let reductions = self.reductions.convert(c);
        let outpatient = self.outpatient.convert(c);
        let chronic = convert_chronic(c, self.chronic);
        let account = match self.account {
            Some(a) => a.convert(c).map(Some),
            None => Some(None),
        };
        let policy = BenefitPolicy {
            region: region?,
            name: self.name,
            insutype: insutype?,
            effective: effective?,
            deductible: deductible?,
            ratio: ratio?,
            basic_cap: basic_cap?,
            retiree_bonus_pp: retiree_bonus_pp?,
            retiree_min_years: self.basic.retiree_min_contribution_years,
            special_basic: special_basic?,
            critical_illness: critical_illness?,
            assistance: assistance?,
            reductions: reductions?,
            registration_min_holding_days: self.registration.map_or(0, |r| r.min_holding_days),
            outpatient: outpatient?,
            chronic: chronic?,
            account: account?,
            source: c.file.to_string(),
        };
        check_reduction_ceilings(c, &policy);
        Some(policy)
    }
}

/// A reduction may take at most the national ceiling off any ratio the policy
/// can produce; for a factor that is checked at the policy's highest ratio.
fn check_reduction_ceilings(c: &mut Checker, p: &BenefitPolicy) {
    let top = p.max_ratio();
    let kinds = [
        ("reductions.referral", p.reductions.referral, MAX_REDUCTION_PP_REFERRAL),
        ("reductions.emergency", p.reductions.emergency, MAX_REDUCTION_PP_EMERGENCY),
        ("reductions.other_temporary", p.reductions.other_temporary, MAX_REDUCTION_PP_OTHER_TEMPORARY),
    ];
    for (key, reduction, ceiling) in kinds {
        let off = match reduction {
            Reduction::Points(pp) => pp,
            Reduction::Factor(_) => reduction.points_off(top),
        };
        if off > Decimal::from(ceiling) {
            c.fail(
                key,
                format!("reduces the ratio by {} points, above the national ceiling of {ceiling}", off.normalize()),
            );
        }
    }
}

impl CiSection {
    fn convert(self, c: &mut Checker) -> Option<CriticalIllness> {
        let fund = match self.fund.as_str() {
            "hifmi" => Some(CiFund::Hifmi),
            "hifob" => Some(CiFund::Hifob),
            other => {
                c.fail("critical_illness.fund", format!("{other:?} is not a critical-illness fund (hifmi or hifob)"));
                None
            }
        };
        let threshold = amount(c, "critical_illness.threshold", self.threshold);
        let annual_cap = amount(c, "critical_illness.annual_cap", self.annual_cap);
        let bands = convert_bands(c, &self.bands, threshold);
        let special = match self.special_groups {
            Some(s) => {
                let factor = Ratio::from_fraction(s.threshold_factor.0);
                if factor.is_none() {
                    c.fail(
                        "critical_illness.special_groups.threshold_factor",
                        format!("{} is outside 0–1", s.threshold_factor.0),
                    );
                }
                let bonus = points(c, "critical_illness.special_groups.bonus_pp", s.bonus_pp);
                Some(Some(SpecialCi { threshold_factor: factor?, bonus_pp: bonus?, cap_lifted: s.cap_lifted }))
            }
            None => Some(None),
        };
        Some(CriticalIllness {
            fund: fund?,
            threshold: threshold?,
            bands: bands?,
            annual_cap: annual_cap?,
            special: special?,
        })
    }
}

/// Bands must start at the threshold, follow each other without gap or
/// overlap, and only the last may be open-ended.
fn convert_bands(c: &mut Checker, entries: &[BandEntry], threshold: Option<Amount>) -> Option<Vec<Band>> {
    if entries.is_empty() {
        c.fail("critical_illness.bands", "at least one band is needed");
        return None;
    }
    let mut bands = Vec::with_capacity(entries.len());
    let mut ok = true;
    for (i, e) in entries.iter().enumerate() {
        let key = format!("critical_illness.bands[{i}]");
        let from = amount(c, &format!("{key}.from"), e.from);
        let to = e.to.map(|t| amount(c, &format!("{key}.to"), t));
        let ratio = percent(c, &format!("{key}.ratio_pct"), e.ratio_pct);
        match (from, to, ratio) {
            (Some(from), None, Some(ratio)) => bands.push(Band { from, to: None, ratio }),
            (Some(from), Some(Some(to)), Some(ratio)) => bands.push(Band { from, to: Some(to), ratio }),
            _ => ok = false,
        }
    }
    if !ok {
        return None;
    }
    if let (Some(t), Some(first)) = (threshold, bands.first()) {
        if first.from != t {
            c.fail(
                "critical_illness.bands[0].from",
                format!("first band starts at {} but the threshold is {t}", first.from),
            );
            ok = false;
        }
    }
    for (i, b) in bands.iter().enumerate() {
        let key = format!("critical_illness.bands[{i}]");
        match b.to {
            Some(to) if to <= b.from => {
                c.fail(format!("{key}.to"), format!("band ends at {to}, not after its start {}", b.from));
                ok = false;
            }
            None if i + 1 < bands.len() => {
                c.fail(format!("{key}.to"), "only the last band may be open-ended");
                ok = false;
            }
            _ => {}
        }
        if let (Some(prev_to), true) = (i.checked_sub(1).and_then(|p| bands[p].to), i > 0) {
            if b.from > prev_to {
                c.fail(
                    format!("{key}.from"),
                    format!("gap: previous band ends at {prev_to}, this one starts at {}", b.from),
                );
                ok = false;
            } else if b.from < prev_to {
                c.fail(
                    format!("{key}.from"),
                    format!("overlap: previous band ends at {prev_to}, this one starts at {}", b.from),
                );
                ok = false;
            }
        }
    }
    ok.then_some(bands)
}

impl AssistanceSection {
    fn convert(self, c: &mut Checker) -> Option<Assistance> {
        let annual_limit = amount(c, "assistance.annual_limit", self.annual_limit);
        let cross_province = match self.cross_province.as_str() {
            "always" => Some(CrossProvinceAssistance::Always),
            "referred_or_emergency" => Some(CrossProvinceAssistance::ReferredOrEmergency),
            other => {
                c.fail("assistance.cross_province", format!("{other:?} is not one of always, referred_or_emergency"));
                None
            }
        };
        let mut ratios = BTreeMap::new();
        let mut ok = true;
        for (name, n) in &self.ratio_pct {
            let key = format!("assistance.ratio_pct.{name}");
            match (SpecialGroup::parse(name), percent(c, &key, *n)) {
                (Some(g), Some(r)) => {
                    ratios.insert(g, r);
                }
                (None, _) => {
                    c.fail(key, format!("unknown special group {name:?} ({})", SpecialGroup::names()));
                    ok = false;
                }
                _ => ok = false,
            }
        }
        let ratios = ok.then_some(ratios);
        Some(Assistance { ratios: ratios?, annual_limit: annual_limit?, cross_province: cross_province? })
    }
}

impl OutpatientSection {
    fn convert(self, c: &mut Checker) -> Option<OutpatientPolicy> {
        let annual_deductible = amount(c, "outpatient.annual_deductible", self.annual_deductible);
        let ratio = per_level(c, "outpatient.ratio_pct", &self.ratio_pct, percent);
        let annual_cap = amount(c, "outpatient.annual_cap", self.annual_cap);
        Some(OutpatientPolicy {
            annual_deductible: annual_deductible?,
            ratio: ratio?,
            annual_cap: annual_cap?,
            pharmacy_pooled: self.pharmacy_pooled,
        })
    }
}

/// Longest disease code accepted (the national list's codes are six characters).
pub const MAX_DISE_CODG_LEN: usize = 20;

/// Whether a text is a well-formed disease code: 1–20 ASCII letters and digits.
pub fn is_dise_codg(text: &str) -> bool {
    !text.is_empty() && text.len() <= MAX_DISE_CODG_LEN && text.chars().all(|ch| ch.is_ascii_alphanumeric())
}

/// Each disease once, with a well-formed code, a ratio within 0–100% and a
/// non-negative cap.
fn convert_chronic(c: &mut Checker, entries: Vec<ChronicEntry>) -> Option<BTreeMap<String, ChronicDisease>> {
    let mut diseases = BTreeMap::new();
    let mut ok = true;
    for (i, e) in entries.into_iter().enumerate() {
        let key = format!("chronic[{i}]");
        if !is_dise_codg(&e.dise_codg) {
            c.fail(
                format!("{key}.dise_codg"),
                format!("{:?} is not a disease code (1–{MAX_DISE_CODG_LEN} letters and digits)", e.dise_codg),
            );
            ok = false;
        } else if diseases.contains_key(&e.dise_codg) {
            c.fail(format!("{key}.dise_codg"), format!("disease {} is listed twice", e.dise_codg));
            ok = false;
        }
        let ratio = percent(c, &format!("{key}.ratio_pct"), e.ratio_pct);
        let annual_cap = amount(c, &format!("{key}.annual_cap"), e.annual_cap);
        match (ratio, annual_cap) {
            (Some(ratio), Some(annual_cap)) if ok => {
                diseases.insert(e.dise_codg, ChronicDisease { name: e.name, ratio, annual_cap });
            }
            _ => ok = false,
        }
    }
    ok.then_some(diseases)
}

impl AccountSection {
    fn convert(self, c: &mut Checker) -> Option<AccountRule> {
        let mut med_types = Vec::with_capacity(self.med_types.len());
        let mut ok = true;
        for (i, code) in self.med_types.iter().enumerate() {
            let key = format!("account.med_types[{i}]");
            match MedType::parse(code) {
                Some(t) if med_types.contains(&t) => {
                    c.fail(key, format!("med_type {code} is listed twice"));
                    ok = false;
                }
                Some(t) => med_types.push(t),
                None => {
                    c.fail(key, format!("{code:?} is not a med_type ({})", MedType::codes()));
                    ok = false;
                }
            }
        }
        ok.then_some(AccountRule { med_types })
    }
}

impl ReductionsSection {
    fn convert(self, c: &mut Checker) -> Option<Reductions> {
        let referral = self.referral.convert(c, "reductions.referral");
        let emergency = self.emergency.convert(c, "reductions.emergency");
        let other_temporary = self.other_temporary.convert(c, "reductions.other_temporary");
        Some(Reductions { referral: referral?, emergency: emergency?, other_temporary: other_temporary? })
    }
}

impl ReductionEntry {
    fn convert(&self, c: &mut Checker, key: &str) -> Option<Reduction> {
        match (self.pp, self.factor) {
            (Some(pp), None) => points(c, &format!("{key}.pp"), pp).map(Reduction::Points),
            (None, Some(f)) => match Ratio::from_fraction(f.0) {
                Some(r) => Some(Reduction::Factor(r)),
                None => {
                    c.fail(format!("{key}.factor"), format!("{} is outside 0–1", f.0));
                    None
                }
            },
            _ => {
                c.fail(key, "give exactly one of pp (points off) or factor (multiplier)");
                None
            }
        }
    }
}

impl CatalogueFile {
    pub(crate) fn into_catalogue(self, c: &mut Checker) -> Option<Catalogue> {
        let scope = match (&self.region, self.national_base) {
            (Some(r), false) => region(c, "region", r).map(CatalogueScope::Region),
            (None, true) => Some(CatalogueScope::National),
            _ => {
                c.fail("region", "give either region = \"PPCCDD\" or national_base = true");
                None
            }
        };
        let effective = date(c, "effective", &self.effective);
        let share = percent(c, "b_selfpay_share_pct", self.b_selfpay_share_pct);
        let mut items = BTreeMap::new();
        let mut ok = true;
        for (i, e) in self.items.into_iter().enumerate() {
            let key = format!("items[{i}]");
            let class = match e.class.as_str() {
                "A" => Some(ItemClass::A),
                "B" => Some(ItemClass::B),
                "C" => Some(ItemClass::C),
                other => {
                    c.fail(format!("{key}.class"), format!("{other:?} is not a catalogue class (A, B, C)"));
                    None
                }
            };
            let cap = match e.price_cap {
                Some(n) => amount(c, &format!("{key}.price_cap"), n).map(Some),
                None => Some(None),
            };
            if e.code.is_empty() || e.code.len() > MAX_ITEM_CODE_LEN {
                c.fail(format!("{key}.code"), format!("item code must be 1–{MAX_ITEM_CODE_LEN} characters"));
                ok = false;
            }
            if items.contains_key(&e.code) {
                c.fail(format!("{key}.code"), format!("item {:?} is listed twice", e.code));
                ok = false;
            }
            match (class, cap) {
                (Some(class), Some(price_cap)) => {
                    items.insert(e.code.clone(), CatalogueItem { code: e.code, name: e.name, class, price_cap });
                }
                _ => ok = false,
            }
        }
        let items = ok.then_some(items);
        Some(Catalogue {
            scope: scope?,
            name: self.name,
            effective: effective?,
            b_selfpay_share: share?,
            items: items?,
            source: c.file.to_string(),
        })
    }
}

/// Longest catalogue item code accepted.
pub const MAX_ITEM_CODE_LEN: usize = 64;

impl PairsFile {
    pub(crate) fn into_pairs(self, c: &mut Checker) -> Option<Vec<CorpsLocalPair>> {
        let mut pairs = Vec::new();
        let mut ok = true;
        for (i, p) in self.pairs.iter().enumerate() {
            let corps = region(c, &format!("pairs[{i}].corps"), &p.corps);
            let local = region(c, &format!("pairs[{i}].local"), &p.local);
            match (corps, local) {
                (Some(corps), Some(local)) => {
                    if corps.province_digits() != 66 || corps.level() != crate::region::RegionLevel::Prefecture {
                        c.fail(format!("pairs[{i}].corps"), format!("{corps} is not an XPCC division (66CC00)"));
                        ok = false;
                    }
                    if local.province_digits() != 65 || local.level() != crate::region::RegionLevel::Prefecture {
                        c.fail(format!("pairs[{i}].local"), format!("{local} is not a Xinjiang prefecture (65CC00)"));
                        ok = false;
                    }
                    pairs.push(CorpsLocalPair { corps, local });
                }
                _ => ok = false,
            }
        }
        ok.then_some(pairs)
    }
}
