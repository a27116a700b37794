//! A regional agency's pages on its own node: its settlements by month and
//! counterpart, the settlements awaiting a home node, its institutions'
//! monthly statements and its audit sample. Pure; no person is shown
//! (settlement ids, institutions and msgids only).

use maud::{html, Markup};

use super::pages::{frame, month_links};
use crate::clearing::hospital::HospitalStatement;
use crate::clearing::Month;
use crate::money::Amount;
use crate::proto::AuditItem;
use crate::region::RegionCode;

/// One counterpart's settlements of a month, from one side.
#[derive(Debug, Clone)]
pub struct PairRow {
    pub as_treatment: bool,
    pub counterpart: RegionCode,
    pub count: u64,
    pub owed: Amount,
}

/// An intent awaiting its home node: institution, msgid, how long (ms).
pub type Waiting = (String, String, i64);

/// A month's audit sample: settlements of the month, and the drawn items.
pub struct Sample {
    pub population: u64,
    pub items: Vec<AuditItem>,
}

fn layout(region: RegionCode, title: &str, month: Option<Month>, months: &[Month], body: Markup) -> Markup {
    let nav = html! {
        a href="/" { "Region " (region) }
        @if let Some(m) = month { a href={ "/month/" (m) } { "Month " (m) } }
    };
    frame(title, nav, month_links("/month/", months, month), body)
}

/// The agency's front page: its months, and what awaits a home node.
pub fn index(region: RegionCode, months: &[Month], waiting: &[Waiting], waiting_total: usize) -> Markup {
    layout(
        region,
        &format!("Region {region}"),
        None,
        months,
        html! {
            @if months.is_empty() { p class="empty" { "No settlement recorded at this node yet." } }
            h2 { "Settlements awaiting their home node" }
            p id="pending-count" { (waiting_total) " pending" }
            @if !waiting.is_empty() {
                table id="pending" {
                    thead { tr { th { "institution" } th { "msgid" } th class="num" { "waiting" } } }
                    tbody {
                        @for (h, m, age) in waiting {
                            tr { td { (h) } td { code { (m) } } td class="num" { (age / 1000) " s" } }
                        }
                    }
                }
                @if waiting_total > waiting.len() { p class="muted" { "… the first " (waiting.len()) " shown." } }
            }
        },
    )
}

/// A month at the agency's node: settlements by counterpart, its
/// institutions' statements (once the month is final) and its audit sample.
pub fn month(
    region: RegionCode,
    month: Month,
    months: &[Month],
    rows: &[PairRow],
    statements: &[HospitalStatement],
    sample: Option<&Sample>,
) -> Markup {
    let side = |treatment: bool| -> Vec<&PairRow> { rows.iter().filter(|r| r.as_treatment == treatment).collect() };
    let table = |id: &str, rows: Vec<&PairRow>, other: &str| {
        html! {
            @if rows.is_empty() { p class="muted" { "None." } }
            @else {
                table id=(id) {
                    thead { tr { th { (other) } th class="num" { "settlements" } th class="num" { "owed" } } }
                    tbody {
                        @for r in &rows {
                            tr data-counterpart=(r.counterpart) { td { (r.counterpart) } td class="num" { (r.count) } td class="num" { (r.owed) } }
                        }
                    }
                }
            }
        }
    };
    layout(
        region,
        &format!("Region {region}, {month}"),
        Some(month),
        months,
        html! {
            h2 { "As treatment region: owed to " (region) }
            (table("as-treatment", side(true), "home region"))
            h2 { "As home region: owed by " (region) }
            (table("as-home", side(false), "treatment region"))
            h2 { "Institutions' statements" }
            @if statements.is_empty() { p class="muted" { "Issued once " (month) "'s clearing statement is final." } }
            @else {
                table id="statements" {
                    thead { tr { th { "institution" } th class="num" { "settled" } th class="num" { "held" } th class="num" { "released" } th class="num" { "deducted" } th class="num" { "payable" } } }
                    tbody {
                        @for s in statements {
                            tr data-code=(s.fixmedins_code) {
                                td { (s.fixmedins_code) } td class="num" { (s.settled) } td class="num" { (s.holdback) }
                                td class="num" { (s.released) } td class="num" { (s.deductions) } td class="num payable" { (s.payable) }
                            }
                        }
                    }
                }
            }
            h2 { "Audit sample (抽查复审)" }
            @match sample {
                None => p class="muted" { "Drawn once " (month) "'s clearing statement is final." },
                Some(s) => {
                    p id="sample-size" { (s.items.len()) " drawn of " (s.population) " settlements" }
                    table id="sample" {
                        thead { tr { th { "setl_id" } th { "institution" } th { "home" } th { "med_type" } th class="num" { "fund" } th class="num" { "account" } th { "outcome" } } }
                        tbody {
                            @for i in &s.items {
                                tr {
                                    td { code { (i.setl_id) } } td { (i.fixmedins_code) } td { (i.home) } td { (i.med_type) }
                                    td class="num" { (i.fund_pay_sumamt) } td class="num" { (i.acct_pay) }
                                    td { @if i.outcome.is_empty() { span class="muted" { "to review" } } @else { (i.outcome) " " (i.refused_amount) } }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}
