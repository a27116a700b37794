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
use crate::rules::toml_format::is_dise_codg;
use crate::rules::{Insutype, RuleBook, SpecialGroup};
use crate::settlement::bill::{MAX_ITEMS_PER_BILL, MAX_PRICE, MAX_QTY, PRICE_SCALE, QTY_SCALE};
use crate::settlement::{
    settle, BillItem, ChronicQualification, Counters, Encounter, HospitalLevel, MedType, Person, Registration,
    RegistrationKind, SettleError, Settlement,
};

/// Largest case document accepted.
pub const MAX_CASE_BYTES: usize = 1024 * 1024;
/// Longest person number accepted.
pub const MAX_PSN_NO_LEN: usize = 64;
/// Most contribution years one region can record.
pub const MAX_CONTRIBUTION_YEARS: u32 = 100;
/// Most chronic-disease qualifications one person may hold.
pub const MAX_QUALIFICATIONS: usize = 32;

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
    #[serde(default)]
    acct_balance: Option<String>,
    #[serde(default)]
    chronic: Vec<QualificationJson>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QualificationJson {
    dise_codg: String,
    begndate: String,
    #[serde(default)]
    enddate: Option<String>,
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
    #[serde(default)]
    med_type: Option<String>,
    #[serde(default)]
    dise_codg: Option<String>,
    #[serde(default)]
    acct_used_flag: bool,
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
    #[serde(default)]
    op_dedc_used: Option<String>,
    #[serde(default)]
    op_paid: Option<String>,
    #[serde(default)]
    chronic_paid: BTreeMap<String, String>,
}

/// A parsed, validated case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub person: Person,
    pub registration: Option<Registration>,
    pub encounter: Encounter,
    pub counters: Counters,
    pub acct_balance: Amount,
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
    let acct_balance = match &raw.person.acct_balance {
        Some(b) => amount("person.acct_balance", b)?,
        None => Amount::ZERO,
    };
    Ok(Case {
        acct_balance,
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
        if self.chronic.len() > MAX_QUALIFICATIONS {
            return Err(bad(
                "person.chronic",
                format!("{} qualifications, over the limit of {MAX_QUALIFICATIONS}", self.chronic.len()),
            ));
        }
        let chronic = self
            .chronic
            .into_iter()
            .enumerate()
            .map(|(i, q)| q.validate(&format!("person.chronic[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Person {
            psn_no: self.psn_no,
            insuplc_admdvs: region("person.insuplc_admdvs", &self.insuplc_admdvs)?,
            insutype,
            retired: self.retired,
            special_group,
            contribution_years,
            chronic,
        })
    }
}

impl QualificationJson {
    fn validate(self, field: &str) -> Result<ChronicQualification, CaseError> {
        if !is_dise_codg(&self.dise_codg) {
            return Err(bad(format!("{field}.dise_codg"), format!("{:?} is not a disease code", self.dise_codg)));
        }
        let begndate = date(&format!("{field}.begndate"), &self.begndate)?;
        let enddate = self.enddate.as_deref().map(|d| date(&format!("{field}.enddate"), d)).transpose()?;
        if enddate.is_some_and(|e| e < begndate) {
            return Err(bad(format!("{field}.enddate"), format!("is before begndate {begndate}")));
        }
        Ok(ChronicQualification { dise_codg: self.dise_codg, begndate, enddate })
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
        let med_type = match self.med_type.as_deref() {
            None => MedType::DEFAULT,
            Some(code) => MedType::parse(code).ok_or_else(|| {
                bad("encounter.med_type", format!("{code:?} is not a med_type ({})", MedType::codes()))
            })?,
        };
        let dise_codg = match (med_type, self.dise_codg) {
            (_, Some(d)) if !is_dise_codg(&d) => {
                return Err(bad("encounter.dise_codg", format!("{d:?} is not a disease code")))
            }
            (MedType::ChronicOutpatient, None) => {
                return Err(bad("encounter.dise_codg", "required for med_type 14 (chronic or special disease)"))
            }
            (_, d) => d,
        };
        Ok(Encounter {
            mdtrtarea_admvs: region("encounter.mdtrtarea_admvs", &self.mdtrtarea_admvs)?,
            hosp_lv,
            setl_date: date("encounter.setl_date", &self.setl_date)?,
            items,
            med_type,
            dise_codg,
            acct_used: self.acct_used_flag,
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
        let optional = |field: &str, text: &Option<String>| match text {
            Some(t) => amount(field, t),
            None => Ok(Amount::ZERO),
        };
        let mut chronic_paid = BTreeMap::new();
        for (code, paid) in &self.chronic_paid {
            let field = format!("counters.chronic_paid.{code}");
            if !is_dise_codg(code) {
                return Err(bad(field, format!("{code:?} is not a disease code")));
            }
            chronic_paid.insert(code.clone(), amount(&field, paid)?);
        }
        Ok(Counters {
            hifp_paid: amount("counters.hifp_paid", &self.hifp_paid)?,
            ci_base: amount("counters.ci_base", &self.ci_base)?,
            ci_paid: amount("counters.ci_paid", &self.ci_paid)?,
            maf_paid: amount("counters.maf_paid", &self.maf_paid)?,
            op_dedc_used: optional("counters.op_dedc_used", &self.op_dedc_used)?,
            op_paid: optional("counters.op_paid", &self.op_paid)?,
            chronic_paid,
        })
    }
}

/// The output object, fields in the documented order.
#[derive(Debug, Serialize)]
struct Output<'a> {
    route: &'static str,
    med_type: &'static str,
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
    acct_pay: Amount,
    psn_cash_pay: Amount,
    balc: Amount,
    counters_after: &'a Counters,
}

/// Renders a settlement as the `calc` output object.
pub fn settlement_json(s: &Settlement) -> String {
    let f = s.figures();
    let out = Output {
        route: f.route.as_str(),
        med_type: f.med_type.code(),
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
        acct_pay: f.acct_pay,
        psn_cash_pay: f.psn_cash_pay,
        balc: f.balc,
        counters_after: &s.benefit.counters_after,
    };
    serde_json::to_string_pretty(&out).unwrap_or_default()
}

/// Runs one case text against the rules.
pub fn run_case(rules: &RuleBook, text: &str) -> Result<CalcOutcome, CaseError> {
    let case = parse_case(text)?;
    match settle(rules, &case.person, case.registration.as_ref(), &case.encounter, &case.counters, case.acct_balance) {
        Ok(s) => Ok(CalcOutcome::Settled(settlement_json(&s))),
        Err(SettleError::UnknownHomeRegion(e)) => Err(bad("person.insuplc_admdvs", e.to_string())),
        Err(SettleError::Refused(r)) => {
            let body = serde_json::json!({ "refused": r.code(), "message": r.to_string() });
            Ok(CalcOutcome::Refused(serde_json::to_string_pretty(&body).unwrap_or_default()))
        }
    }
}
