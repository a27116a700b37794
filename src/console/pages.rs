//! The console's pages, rendered from a statement and what the operator's
//! ledger says of it. Pure: the same inputs give the same bytes.

use std::collections::{BTreeMap, BTreeSet};

use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::charts::{self, Cell};
use crate::clearing::netting::{Adjustment, Direction};
use crate::clearing::{Dispute, Month, PendingReason, Statement};
use crate::money::Amount;
use crate::region::RegionCode;

/// The console's one style sheet, inline in every page.
const STYLE: &str = include_str!("console.css");

/// The share of cross-region visits settled directly the policy documents ask for.
pub const DIRECT_SETTLEMENT_TARGET_PCT: u32 = 70;

/// A closed month as the operator's ledger holds it.
#[derive(Debug, Clone)]
pub struct MonthStatus {
    pub statement: Statement,
    /// SHA-256 of the statement's bytes (hex).
    pub hash: String,
    pub is_final: bool,
    /// Regions that confirmed this revision.
    pub confirmed: BTreeSet<String>,
    /// Disputes filed and not withdrawn.
    pub disputes: Vec<Dispute>,
}

/// A page: the console's header (its navigation and month links) and body.
pub(super) fn frame(title: &str, nav: Markup, months: Markup, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "xclear console: " (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header { strong { "xclear clearing console" } nav { (nav) } (months) }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// Links to `months` under `base` (e.g. "/month/"), `current` marked.
pub(super) fn month_links(base: &str, months: &[Month], current: Option<Month>) -> Markup {
    html! {
        @if !months.is_empty() {
            div class="months" {
                "Months: "
                @for m in months {
                    a href={ (base) (m) } class=[(Some(*m) == current).then_some("current")] { (m) } " "
                }
            }
        }
    }
}

/// The operator's pages' frame, for `month` among the months closed.
fn layout(title: &str, month: Option<Month>, months: &[Month], body: Markup) -> Markup {
    let nav = html! {
        @if let Some(m) = month {
            a href={ "/month/" (m) } { "Month" }
            a href={ "/heatmap/" (m) } { "Heat map" }
            a href={ "/advance/" (m) } { "Advance funds" }
            a href={ "/reconciliation/" (m) } { "Reconciliation" }
        }
        a href="/trends" { "Trends" }
    };
    frame(title, nav, month_links("/month/", months, month), body)
}

/// A month with no statement on the operator's ledger.
pub fn no_statement(month: Month, months: &[Month]) -> Markup {
    layout(
        &format!("{month}"),
        None,
        months,
        html! {
            p class="empty" { "No statement for " (month) ": the month has not been closed." }
        },
    )
}

/// Every month closed, newest first (or a note that none is).
pub fn index(months: &[Month]) -> Markup {
    layout(
        "Months",
        None,
        months,
        html! {
            @if months.is_empty() {
                p class="empty" { "No month has been closed yet." }
            } @else {
                ul { @for m in months.iter().rev() { li { a href={ "/month/" (m) } { (m) } } } }
            }
        },
    )
}

fn state(s: &MonthStatus) -> &'static str {
    if s.is_final {
        "final"
    } else {
        "closed"
    }
}

/// The month: its state, who confirmed and disputed, positions as a table
/// and a chart, transfers and the corps–local channel.
pub fn month(s: &MonthStatus, months: &[Month]) -> Markup {
    let st = &s.statement;
    let regions: Vec<String> = st.node_heads.keys().map(|r| r.to_string()).collect();
    let rows: Vec<(String, Amount, Amount, Amount)> =
        st.positions.iter().map(|(r, p)| (r.to_string(), p.receivable, p.payable, p.net)).collect();
    let sum: Amount = st.positions.values().map(|p| p.net).sum();
    layout(
        &format!("Clearing statement {}", st.month),
        Some(st.month),
        months,
        html! {
            p class="state" {
                "State: " strong class={ "state-" (state(s)) } id="state" { (state(s)) }
                " · revision " (st.revision) " · statement sha256 " code { (s.hash.get(..16).unwrap_or(&s.hash)) "…" }
            }
            table class="small" {
                thead { tr { th { "region" } th { "answer" } } }
                tbody {
                    @for r in &regions {
                        @let disputed = s.disputes.iter().filter(|d| d.region.to_string() == *r).count();
                        tr {
                            td { (r) }
                            td {
                                @if s.confirmed.contains(r) { span class="ok" { "confirmed" } }
                                @else if disputed > 0 { span class="warn" { "disputed " (disputed) " line(s)" } }
                                @else { span class="muted" { "awaiting" } }
                            }
                        }
                    }
                }
            }
            h2 { "National channel: net positions" }
            div class="pair" {
            table id="positions" {
                thead { tr { th { "region" } th class="num" { "receivable" } th class="num" { "payable" } th class="num" { "net" } } }
                tbody {
                    @for (r, rec, pay, net) in &rows {
                        tr data-region=(r) {
                            td { (r) }
                            td class="num" { (rec) }
                            td class="num" { (pay) }
                            td class="num net" data-net=(net) { (net) }
                        }
                    }
                }
                tfoot { tr { td { "sum" } td {} td {} td class="num" id="net-sum" { (sum) } } }
            }
            (charts::positions(&rows))
            }
            h2 { "Transfers" }
            @if st.transfers.is_empty() { p class="muted" { "None." } }
            table {
                tbody {
                    @for t in &st.transfers {
                        tr {
                            td { (t.region) }
                            td { @match t.direction { Direction::PayIn => "pays in", Direction::PayOut => "is paid" } }
                            td class="num" { (t.amount) }
                        }
                    }
                }
            }
            h2 { "Corps–local channel (兵地融合, netted between the pair)" }
            @if st.corps_local.is_empty() { p class="muted" { "No corps–local care this month." } }
            table {
                tbody {
                    @for b in &st.corps_local {
                        tr { td { (b.a) " owes " (b.b) } td class="num" { (b.a_owes_b) } td { (b.lines) " lines" } }
                    }
                }
            }
        },
    )
}

/// Home × treatment: settlements and what the home owes, per pair.
pub fn heat_map(s: &MonthStatus, months: &[Month]) -> Markup {
    let st = &s.statement;
    let mut cells: BTreeMap<(RegionCode, RegionCode), (u64, Amount)> = BTreeMap::new();
    for p in &st.pairs {
        let c = cells.entry((p.home, p.treatment)).or_default();
        *c = (c.0 + p.count, c.1 + p.amounts.owed());
    }
    let homes: Vec<String> = cells.keys().map(|(h, _)| h.to_string()).collect::<BTreeSet<_>>().into_iter().collect();
    let treatments: Vec<String> =
        cells.keys().map(|(_, t)| t.to_string()).collect::<BTreeSet<_>>().into_iter().collect();
    let cells: Vec<Cell> = cells
        .into_iter()
        .map(|((h, t), (count, amount))| Cell { home: h.to_string(), treatment: t.to_string(), count, amount })
        .collect();
    layout(
        &format!("Heat map {}", st.month),
        Some(st.month),
        months,
        html! {
            p { "Rows: the patients' home regions; columns: where they were treated. Each cell: settlements cleared this month, and what the home region owes for them (funds and personal accounts)." }
            @if cells.is_empty() { p class="empty" { "No settlement cleared in " (st.month) "." } }
            @else { (charts::heat_map(&homes, &treatments, &cells)) }
        },
    )
}

/// Advance funds: quota, usage and threshold per home region, warnings marked.
pub fn advance(s: &MonthStatus, months: &[Month]) -> Markup {
    let st = &s.statement;
    layout(
        &format!("Advance funds {}", st.month),
        Some(st.month),
        months,
        html! {
            p { "Each home region's uncleared payable when the month was closed, against its advance-fund quota (预付金)." }
            @if st.advance.is_empty() { p class="empty" { "No quota applies to " (st.month) "." } }
            table id="advance" {
                thead { tr { th { "region" } th class="num" { "quota" } th class="num" { "usage" } th class="num" { "threshold" } th { "" } } }
                tbody {
                    @for a in &st.advance {
                        tr class=[a.warning.then_some("warning")] data-region=(a.region) {
                            td { (a.region) }
                            td class="num" { (a.quota) }
                            td class="num" { (a.usage) }
                            td class="num" { (a.threshold) }
                            td { @if a.warning { strong class="warn" { "warning" } } }
                        }
                    }
                }
            }
        },
    )
}

fn reason(r: PendingReason) -> &'static str {
    match r {
        PendingReason::MissingAtTreatment => "missing at the treatment region",
        PendingReason::MissingAtHome => "missing at the home region",
        PendingReason::AmountsDiffer => "amounts differ",
        PendingReason::Disputed => "disputed",
    }
}

/// Held-out items, disputes and adjustments, with their reasons and months.
pub fn reconciliation(s: &MonthStatus, adjustments: &[Adjustment], months: &[Month]) -> Markup {
    let st = &s.statement;
    layout(
        &format!("Reconciliation {}", st.month),
        Some(st.month),
        months,
        html! {
            h2 { "Held out (pending), carried to the next month" }
            @if st.pending.is_empty() { p class="muted" { "Nothing held out." } }
            table id="pending" {
                tbody {
                    @for p in &st.pending {
                        tr {
                            td { code { (p.setl_id) } }
                            td { (p.pair.home) " → " (p.pair.treatment) }
                            td { (reason(p.reason)) }
                            td { "since " (p.since) }
                            td { (p.note) }
                        }
                    }
                }
            }
            h2 { "Disputes" }
            @if s.disputes.is_empty() { p class="muted" { "No dispute open." } }
            table {
                tbody {
                    @for d in &s.disputes {
                        tr { td { (d.region) } td { code { (d.setl_id) } } td { (d.reason) } }
                    }
                }
            }
            h2 { "Adjustments" }
            @if adjustments.is_empty() { p class="muted" { "No adjustment." } }
            table {
                tbody {
                    @for a in adjustments {
                        tr {
                            td { (a.home) " → " (a.treatment) }
                            td class="num" { (a.amount) }
                            td { (a.reason) }
                            td { @if let Some(id) = &a.setl_id { code { (id) } } }
                        }
                    }
                }
            }
        },
    )
}

/// Per region over the months closed: settlements cleared as treatment
/// region and the fund it paid as home region.
pub fn trends(statements: &[(Month, Statement)], months: &[Month]) -> Markup {
    let mut regions: BTreeSet<RegionCode> = BTreeSet::new();
    for (_, s) in statements {
        regions.extend(s.node_heads.keys().copied());
    }
    let settled = |r: RegionCode| -> Vec<(String, f64, String)> {
        statements
            .iter()
            .map(|(m, s)| {
                let n: u64 = s.pairs.iter().filter(|p| p.treatment == r).map(|p| p.count).sum();
                (m.to_string(), n as f64, n.to_string())
            })
            .collect()
    };
    let paid = |r: RegionCode| -> Vec<(String, f64, String)> {
        statements
            .iter()
            .map(|(m, s)| {
                let a: Amount = s.pairs.iter().filter(|p| p.home == r).map(|p| p.amounts.fund_pay_sumamt).sum();
                (m.to_string(), charts::value(a), a.to_string())
            })
            .collect()
    };
    let rates = |r: RegionCode| -> Vec<(String, Option<f64>, String)> {
        statements
            .iter()
            .map(|(m, s)| {
                let pct = s.activity.get(&r).and_then(|a| a.direct_rate_pct());
                let shown = pct.map_or_else(|| "no claims".to_string(), |p| format!("{p}%"));
                (m.to_string(), pct.and_then(|p| rust_decimal::prelude::ToPrimitive::to_f64(&p)), shown)
            })
            .collect()
    };
    layout(
        "Trends",
        statements.last().map(|(m, _)| *m),
        months,
        html! {
            p { "Direct settlement rate: of the claims a region's hospitals sent home for out-of-region patients, the share settled on the spot rather than refused by the home region, as each node reports it with its month." }
            @if statements.is_empty() { p class="empty" { "No month has been closed yet." } }
            @for r in &regions {
                section class="trend" data-region=(r) {
                    h2 { (r) }
                    div class="pair" {
                        div { p { "Settlements cleared as treatment region" } (charts::trend(&settled(*r))) }
                        div { p { "Fund paid as home region (yuan)" } (charts::trend(&paid(*r))) }
                        div {
                            p { "Direct settlement rate (target " (DIRECT_SETTLEMENT_TARGET_PCT) "%)" }
                            (charts::rate(&rates(*r), f64::from(DIRECT_SETTLEMENT_TARGET_PCT)))
                        }
                    }
                }
            }
        },
    )
}
