//! `xclear calc`: one settlement computed offline from a JSON case, with
//! exactly the logic the nodes use (REFERENCE_POLICIES.md §5).
//!
//! Three steps, as for every command: parse the case (naming the field of any
//! defect), apply [`crate::settlement::settle`], encode the answer.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::money::{self, Amount};
use crate::region::RegionCode;
use crate::rules::{Insutype, RuleBook, SpecialGroup};
use crate::settlement::bill::{MAX_ITEMS_PER_BILL, MAX_PRICE, MAX_QTY, PRICE_SCALE, QTY_SCALE};
use crate::settlement::{
    settle, BillItem, Counters, Encounter, HospitalLevel, Person, Registration, RegistrationKind, SettleError,
    Settlement,
};

/// Largest case document accepted.
pub const MAX_CASE_BYTES: usize = 1024 * 1024;
/// Longest person number accepted.
pub const MAX_PSN_NO_LEN: usize = 64;
/// Most contribution years one region can record.
pub const MAX_CONTRIBUTION_YEARS: u32 = 100;

/// Bad input: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct CaseError {
    pub field: String,
    pub message: String,
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> CaseError {
    CaseError { field: field.into(), message: message.into() }
}

/// The answer to a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalcOutcome {
    /// Exit 0: the settlement as JSON.
    Settled(String),
    /// Exit 3: `{"refused": reason, "message": ...}`.
    Refused(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseJson {
    person: PersonJson,
    registration: Option<RegistrationJson>,
    encounter: EncounterJson,
    #[serde(default)]
    counters: Option<CountersJson>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PersonJson {
    psn_no: String,
    insuplc_admdvs: String,
    insutype: String,
    #[serde(default)]
    retired: bool,
    #[serde(default)]
    special_group: Option<String>,
    #[serde(default)]
    contribution_years: BTreeMap<String, u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistrationJson {
    kind: String,
    #[serde(default)]
    target_admdvs: Option<String>,
    #[serde(default)]
    begndate: Option<String>,
    #[serde(default)]
    enddate: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EncounterJson {
    mdtrtarea_admvs: String,
    hosp_lv: i64,
    setl_date: String,
    items: Vec<ItemJson>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemJson {
    code: String,
    qty: String,
    price: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CountersJson {
    hifp_paid: String,
    ci_base: String,
    ci_paid: String,
    maf_paid: String,
}

/// A parsed, validated case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub person: Person,
    pub registration: Option<Registration>,
    pub encounter: Encounter,
    pub counters: Counters,
}

/// Parses a case document, naming the first bad field.
pub fn parse_case(text: &str) -> Result<Case, CaseError> {
    if text.len() > MAX_CASE_BYTES {
        return Err(bad("-", format!("case is {} bytes, over the limit of {MAX_CASE_BYTES}", text.len())));
    }
    let de = &mut serde_json::Deserializer::from_str(text);
    let raw: CaseJson = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        bad(if path == "." { "-".to_string() } else { path }, e.inner().to_string())
    })?;
    Ok(Case {
        person: raw.person.validate()?,
        registration: raw.registration.map(RegistrationJson::validate).transpose()?,
        encounter: raw.encounter.validate()?,
        counters: raw.counters.map(CountersJson::validate).transpose()?.unwrap_or_default(),
    })
}

fn region(field: &str, text: &str) -> Result<RegionCode, CaseError> {
    RegionCode::parse(text).map_err(|e| bad(field, e.to_string()))
}

fn date(field: &str, text: &str) -> Result<NaiveDate, CaseError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| bad(field, format!("{text:?} is not a date (YYYY-MM-DD)")))
}

fn amount(field: &str, text: &str) -> Result<Amount, CaseError> {
    Amount::parse_non_negative(text).map_err(|e| bad(field, e.to_string()))
}

impl PersonJson {
    fn validate(self) -> Result<Person, CaseError> {
        if self.psn_no.is_empty() || self.psn_no.len() > MAX_PSN_NO_LEN {
            return Err(bad("person.psn_no", format!("must be 1–{MAX_PSN_NO_LEN} characters")));
        }
        let insutype = Insutype::parse(&self.insutype).ok_or_else(|| {
            bad("person.insutype", format!("{:?} is not 390 (resident) or 310 (employee)", self.insutype))
        })?;
        let special_group = match self.special_group {
            None => None,
            Some(g) => Some(SpecialGroup::parse(&g).ok_or_else(|| {
                bad("person.special_group", format!("{g:?} is not one of {}", SpecialGroup::names()))
            })?),
        };
        let mut contribution_years = BTreeMap::new();
        for (code, years) in self.contribution_years {
            let field = format!("person.contribution_years.{code}");
            if years > MAX_CONTRIBUTION_YEARS {
                return Err(bad(field, format!("{years} years is more than {MAX_CONTRIBUTION_YEARS}")));
            }
            contribution_years.insert(region(&field, &code)?, years);
        }
        Ok(Person {
            psn_no: self.psn_no,
            insuplc_admdvs: region("person.insuplc_admdvs", &self.insuplc_admdvs)?,
            insutype,
            retired: self.retired,
            special_group,
            contribution_years,
        })
    }
}

impl RegistrationJson {
    fn validate(self) -> Result<Registration, CaseError> {
        let kind = RegistrationKind::parse(&self.kind)
            .ok_or_else(|| bad("registration.kind", format!("{:?} is not a registration kind", self.kind)))?;
        let target_admdvs =
            self.target_admdvs.as_deref().map(|t| region("registration.target_admdvs", t)).transpose()?;
        let begndate = self.begndate.as_deref().map(|d| date("registration.begndate", d)).transpose()?;
        let enddate = self.enddate.as_deref().map(|d| date("registration.enddate", d)).transpose()?;
        let filed = target_admdvs.is_some() || begndate.is_some() || enddate.is_some();
        if kind != RegistrationKind::Emergency || filed {
            if target_admdvs.is_none() {
                return Err(bad(
                    "registration.target_admdvs",
                    format!("required for a filed {} registration", kind.as_str()),
                ));
            }
            if begndate.is_none() {
                return Err(bad(
                    "registration.begndate",
                    format!("required for a filed {} registration", kind.as_str()),
                ));
            }
        }
        if let (Some(b), Some(e)) = (begndate, enddate) {
            if e < b {
                return Err(bad("registration.enddate", format!("{e} is before begndate {b}")));
            }
        }
        Ok(Registration { kind, target_admdvs, begndate, enddate })
    }
}

impl EncounterJson {
    fn validate(self) -> Result<Encounter, CaseError> {
        let hosp_lv = HospitalLevel::new(self.hosp_lv)
            .ok_or_else(|| bad("encounter.hosp_lv", format!("level {} is outside 0–3", self.hosp_lv)))?;
        if self.items.is_empty() {
            return Err(bad("encounter.items", "a bill needs at least one item"));
        }
        if self.items.len() > MAX_ITEMS_PER_BILL {
            return Err(bad(
                "encounter.items",
                format!("{} items, over the limit of {MAX_ITEMS_PER_BILL}", self.items.len()),
            ));
        }
        let items = self
            .items
            .into_iter()
            .enumerate()
            .map(|(i, item)| item.validate(&format!("encounter.items[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Encounter {
            mdtrtarea_admvs: region("encounter.mdtrtarea_admvs", &self.mdtrtarea_admvs)?,
            hosp_lv,
            setl_date: date("encounter.setl_date", &self.setl_date)?,
            items,
        })
    }
}

impl ItemJson {
    fn validate(self, field: &str) -> Result<BillItem, CaseError> {
        if self.code.is_empty() || self.code.len() > crate::rules::toml_format::MAX_ITEM_CODE_LEN {
            return Err(bad(format!("{field}.code"), "item code must be 1–64 characters"));
        }
        let qty = money::parse_bounded(&self.qty, QTY_SCALE).map_err(|e| bad(format!("{field}.qty"), e.to_string()))?;
        if qty > MAX_QTY {
            return Err(bad(format!("{field}.qty"), format!("{qty} is over the limit of {MAX_QTY}")));
        }
        let price =
            money::parse_bounded(&self.price, PRICE_SCALE).map_err(|e| bad(format!("{field}.price"), e.to_string()))?;
        if price > MAX_PRICE {
            return Err(bad(format!("{field}.price"), format!("{price} is over the limit of {MAX_PRICE}")));
        }
        Ok(BillItem { code: self.code, qty, price })
    }
}

impl CountersJson {
    fn validate(self) -> Result<Counters, CaseError> {
        Ok(Counters {
            hifp_paid: amount("counters.hifp_paid", &self.hifp_paid)?,
            ci_base: amount("counters.ci_base", &self.ci_base)?,
            ci_paid: amount("counters.ci_paid", &self.ci_paid)?,
            maf_paid: amount("counters.maf_paid", &self.maf_paid)?,
        })
    }
}

/// The output object, fields in the documented order.
#[derive(Debug, Serialize)]
struct Output<'a> {
    route: &'static str,
    medfee_sumamt: Amount,
    fulamt_ownpay_amt: Amount,
    overlmt_selfpay: Amount,
    preselfpay_amt: Amount,
    inscp_scp_amt: Amount,
    act_pay_dedc: Amount,
    pool_prop: String,
    hifp_pay: Amount,
    hifmi_pay: Amount,
    hifob_pay: Amount,
    maf_pay: Amount,
    fund_pay_sumamt: Amount,
    psn_part_amt: Amount,
    counters_after: &'a Counters,
}

/// Renders a settlement as the `calc` output object.
pub fn settlement_json(s: &Settlement) -> String {
    let f = s.figures();
    let out = Output {
        route: f.route.as_str(),
        medfee_sumamt: f.medfee_sumamt,
        fulamt_ownpay_amt: f.fulamt_ownpay_amt,
        overlmt_selfpay: f.overlmt_selfpay,
        preselfpay_amt: f.preselfpay_amt,
        inscp_scp_amt: f.inscp_scp_amt,
        act_pay_dedc: f.act_pay_dedc,
        pool_prop: f.pool_prop.to_string(),
        hifp_pay: f.hifp_pay,
        hifmi_pay: f.hifmi_pay,
        hifob_pay: f.hifob_pay,
        maf_pay: f.maf_pay,
        fund_pay_sumamt: f.fund_pay_sumamt,
        psn_part_amt: f.psn_part_amt,
        counters_after: &s.benefit.counters_after,
    };
    serde_json::to_string_pretty(&out).unwrap_or_default()
}

/// Runs one case text against the rules.
pub fn run_case(rules: &RuleBook, text: &str) -> Result<CalcOutcome, CaseError> {
    let case = parse_case(text)?;
    match settle(rules, &case.person, case.registration.as_ref(), &case.encounter, &case.counters) {
        Ok(s) => Ok(CalcOutcome::Settled(settlement_json(&s))),
        Err(SettleError::UnknownHomeRegion(e)) => Err(bad("person.insuplc_admdvs", e.to_string())),
        Err(SettleError::Refused(r)) => {
            let body = serde_json::json!({ "refused": r.code(), "message": r.to_string() });
            Ok(CalcOutcome::Refused(serde_json::to_string_pretty(&body).unwrap_or_default()))
        }
    }
}
