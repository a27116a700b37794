//! Settlement computation (就医地目录、参保地政策): the treatment side splits
//! the bill by its catalogue ([`bill`]), the home side computes the benefit
//! with its policy and the person's counters ([`benefit`]). [`settle`] runs
//! both, as `xclear calc` and the nodes do.

pub mod benefit;
pub mod bill;
pub mod counters;
pub mod person;
mod refusal;

use chrono::NaiveDate;

pub use benefit::{compute_benefit, Benefit, BenefitInput};
pub use bill::{classify, BillItem, BillTotals, ItemSplit};
pub use counters::{CounterDelta, Counters};
pub use person::{ChronicQualification, HospitalLevel, Person, Registration, RegistrationKind};
pub use refusal::Refusal;

pub use crate::med_type::{MedCategory, MedType};
use crate::money::{Amount, Ratio};
use crate::region::{RegionCode, Route};
use crate::rules::{PolicyLookupError, RuleBook};

/// One encounter as the hospital bills it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encounter {
    pub mdtrtarea_admvs: RegionCode,
    pub hosp_lv: HospitalLevel,
    pub setl_date: NaiveDate,
    pub items: Vec<BillItem>,
    pub med_type: MedType,
    /// The chronic disease treated (`med_type` 14).
    pub dise_codg: Option<String>,
    /// The personal account should pay what it may (`acct_used_flag`).
    pub acct_used: bool,
}

/// A complete settlement: the bill's split and the benefit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    pub totals: BillTotals,
    pub benefit: Benefit,
}

/// Why [`settle`] produced no settlement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettleError {
    /// The person's home region has no policy at all: bad input, not a refusal.
    #[error("{0}")]
    UnknownHomeRegion(PolicyLookupError),
    #[error("{0}")]
    Refused(Refusal),
}

/// Settles one encounter with both sides' rules (nothing is committed: the
/// caller decides what to do with the counters and the account balance).
pub fn settle(
    rules: &RuleBook,
    person: &Person,
    registration: Option<&Registration>,
    encounter: &Encounter,
    counters: &Counters,
    acct_balance: Amount,
) -> Result<Settlement, SettleError> {
    let catalogue = rules
        .catalogue_for(encounter.mdtrtarea_admvs, encounter.setl_date)
        .ok_or(SettleError::Refused(Refusal::CatalogueNotInForce))?;
    let (_, totals) = classify(catalogue, &encounter.items);
    let policy = match rules.policy_for(person.insuplc_admdvs, person.insutype, encounter.setl_date) {
        Ok(p) => p,
        Err(e @ PolicyLookupError::UnknownRegion { .. }) => return Err(SettleError::UnknownHomeRegion(e)),
        Err(PolicyLookupError::NotInForce { .. }) => return Err(SettleError::Refused(Refusal::PolicyNotInForce)),
    };
    let input = BenefitInput {
        policy,
        person,
        registration,
        treatment: encounter.mdtrtarea_admvs,
        hosp_lv: encounter.hosp_lv,
        setl_date: encounter.setl_date,
        totals: &totals,
        counters,
        pairs: rules.pairs(),
        med_type: encounter.med_type,
        dise_codg: encounter.dise_codg.as_deref(),
        acct_used: encounter.acct_used,
        acct_balance,
    };
    let benefit = compute_benefit(&input).map_err(SettleError::Refused)?;
    Ok(Settlement { totals, benefit })
}

/// The figures a settlement (or its reversal) reports, flat, in the national
/// platform's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figures {
    pub route: Route,
    pub med_type: MedType,
    pub medfee_sumamt: Amount,
    pub fulamt_ownpay_amt: Amount,
    pub overlmt_selfpay: Amount,
    pub preselfpay_amt: Amount,
    pub inscp_scp_amt: Amount,
    pub act_pay_dedc: Amount,
    pub pool_prop: Ratio,
    pub hifp_pay: Amount,
    pub hifmi_pay: Amount,
    pub hifob_pay: Amount,
    pub maf_pay: Amount,
    pub fund_pay_sumamt: Amount,
    pub psn_part_amt: Amount,
    pub acct_pay: Amount,
    pub psn_cash_pay: Amount,
    /// The account balance after the settlement (a stock, not a flow).
    pub balc: Amount,
}

impl Settlement {
    pub fn figures(&self) -> Figures {
        let (t, b) = (&self.totals, &self.benefit);
        Figures {
            route: b.route,
            med_type: b.med_type,
            medfee_sumamt: t.medfee_sumamt,
            fulamt_ownpay_amt: t.fulamt_ownpay_amt,
            overlmt_selfpay: t.overlmt_selfpay,
            preselfpay_amt: t.preselfpay_amt,
            inscp_scp_amt: t.inscp_scp_amt,
            act_pay_dedc: b.act_pay_dedc,
            pool_prop: b.pool_prop,
            hifp_pay: b.hifp_pay,
            hifmi_pay: b.hifmi_pay,
            hifob_pay: b.hifob_pay,
            maf_pay: b.maf_pay,
            fund_pay_sumamt: b.fund_pay_sumamt,
            psn_part_amt: b.psn_part_amt,
            acct_pay: b.acct_pay,
            psn_cash_pay: b.psn_cash_pay,
            balc: b.balc,
        }
    }
}

impl Figures {
    /// The exact negation of every flow, as a reversal (冲正) reports it;
    /// `balc`, a balance, is the caller's to set.
    pub fn negated(&self) -> Figures {
        Figures {
            route: self.route,
            med_type: self.med_type,
            medfee_sumamt: -self.medfee_sumamt,
            fulamt_ownpay_amt: -self.fulamt_ownpay_amt,
            overlmt_selfpay: -self.overlmt_selfpay,
            preselfpay_amt: -self.preselfpay_amt,
            inscp_scp_amt: -self.inscp_scp_amt,
            act_pay_dedc: -self.act_pay_dedc,
            pool_prop: self.pool_prop,
            hifp_pay: -self.hifp_pay,
            hifmi_pay: -self.hifmi_pay,
            hifob_pay: -self.hifob_pay,
            maf_pay: -self.maf_pay,
            fund_pay_sumamt: -self.fund_pay_sumamt,
            psn_part_amt: -self.psn_part_amt,
            acct_pay: -self.acct_pay,
            psn_cash_pay: -self.psn_cash_pay,
            balc: self.balc,
        }
    }

    /// Every flow, for invariant checks.
    pub fn amounts(&self) -> [Amount; 14] {
        [
            self.medfee_sumamt,
            self.fulamt_ownpay_amt,
            self.overlmt_selfpay,
            self.preselfpay_amt,
            self.inscp_scp_amt,
            self.act_pay_dedc,
            self.hifp_pay,
            self.hifmi_pay,
            self.hifob_pay,
            self.maf_pay,
            self.fund_pay_sumamt,
            self.psn_part_amt,
            self.acct_pay,
            self.psn_cash_pay,
        ]
    }
}
