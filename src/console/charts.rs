//! Charts as inline SVG, drawn by the server: horizontal bars for the
//! regions' positions, a grid for the heat map, bars for a trend. No script,
//! nothing fetched; each mark carries its figure as a data attribute.

use maud::{html, Markup};
use rust_decimal::prelude::ToPrimitive;

use crate::money::Amount;

const WIDTH: f64 = 560.0;
const LABEL: f64 = 64.0;
/// One bar's band; a region has three and a gap.
const ROW: f64 = 13.0;

/// An amount as a drawing coordinate (never as money).
pub(super) fn value(a: Amount) -> f64 {
    a.as_decimal().to_f64().unwrap_or(0.0)
}

/// Receivable, payable and net per region, bars from a shared zero line.
pub(super) fn positions(rows: &[(String, Amount, Amount, Amount)]) -> Markup {
    let max = rows.iter().flat_map(|(_, r, p, n)| [value(*r), value(*p), value(*n).abs()]).fold(1.0, f64::max);
    let half = (WIDTH - LABEL) / 2.0;
    let zero = LABEL + half;
    let scale = |v: f64| v / max * (half - 10.0);
    let band = ROW * 3.0 + 10.0;
    let height = band * rows.len() as f64 + 40.0;
    html! {
        svg class="chart" width=(WIDTH) height=(height) viewBox={ "0 0 " (WIDTH) " " (height) }
            role="img" aria-label="receivable, payable and net by region" {
            line x1=(zero) y1="0" x2=(zero) y2=(height - 20.0) stroke="#888" {}
            @for (i, (region, receivable, payable, net)) in rows.iter().enumerate() {
                @let y = i as f64 * band + 4.0;
                text x="4" y=(y + ROW * 2.0) class="label" { (region) }
                @for (j, (kind, v)) in [("receivable", value(*receivable)), ("payable", -value(*payable)), ("net", value(*net))].iter().enumerate() {
                    @let w = scale(v.abs());
                    @let x = if *v < 0.0 { zero - w } else { zero };
                    rect class={ "bar " (kind) } x=(x) y=(y + j as f64 * ROW) width=(w) height=(ROW - 2.0)
                        data-region=(region) data-kind=(kind) {
                        title { (region) " " (kind) " " (match j { 0 => receivable, 1 => payable, _ => net }) }
                    }
                }
            }
            @for (k, (kind, label)) in [("receivable", "receivable"), ("payable", "payable (drawn left)"), ("net", "net")].iter().enumerate() {
                rect class={ "bar " (kind) } x=(LABEL + k as f64 * 150.0) y=(height - 26.0) width="12" height="12" {}
                text x=(LABEL + k as f64 * 150.0 + 18.0) y=(height - 16.0) class="legend" { (label) }
            }
        }
    }
}

/// One cell of the heat map.
pub(super) struct Cell {
    pub home: String,
    pub treatment: String,
    pub count: u64,
    pub amount: Amount,
}

/// Home regions (rows) by treatment regions (columns), each cell shaded by
/// its amount.
pub(super) fn heat_map(homes: &[String], treatments: &[String], cells: &[Cell]) -> Markup {
    let max = cells.iter().map(|c| value(c.amount)).fold(1.0, f64::max);
    let (cw, ch, left, top) = (96.0, 40.0, 80.0, 30.0);
    let width = left + cw * treatments.len() as f64 + 10.0;
    let height = top + ch * homes.len() as f64 + 10.0;
    html! {
        svg class="chart heat" width=(width) height=(height) viewBox={ "0 0 " (width) " " (height) }
            role="img" aria-label="settlements by home and treatment region" {
            @for (j, t) in treatments.iter().enumerate() {
                text x=(left + cw * j as f64 + 8.0) y="20" class="label" { (t) }
            }
            @for (i, h) in homes.iter().enumerate() {
                text x="4" y=(top + ch * i as f64 + 25.0) class="label" { (h) }
                @for (j, t) in treatments.iter().enumerate() {
                    @let cell = cells.iter().find(|c| &c.home == h && &c.treatment == t);
                    @let share = cell.map_or(0.0, |c| value(c.amount) / max);
                    @let light = 96.0 - 56.0 * share;
                    rect x=(left + cw * j as f64) y=(top + ch * i as f64) width=(cw - 2.0) height=(ch - 2.0)
                        fill={ "hsl(210, 70%, " (format!("{light:.0}")) "%)" } class="cell"
                        data-home=(h) data-treatment=(t)
                        data-count=(cell.map_or(0, |c| c.count)) data-amount=(cell.map_or(Amount::ZERO, |c| c.amount)) {
                        title { (h) " → " (t) }
                    }
                    @if let Some(c) = cell {
                        text x=(left + cw * j as f64 + 6.0) y=(top + ch * i as f64 + 16.0)
                            class={ "cell-text" @if share > 0.5 { " dark" } } { (c.count) }
                        text x=(left + cw * j as f64 + 6.0) y=(top + ch * i as f64 + 32.0)
                            class={ "cell-text small" @if share > 0.5 { " dark" } } { (c.amount) }
                    }
                }
            }
        }
    }
}

/// A small bar chart of one series over months: (month, height, figure shown).
pub(super) fn trend(points: &[(String, f64, String)]) -> Markup {
    let max = points.iter().map(|(_, v, _)| v.abs()).fold(1.0, f64::max);
    let (bw, h) = (44.0, 60.0);
    let width = bw * points.len().max(1) as f64 + 4.0;
    html! {
        svg class="spark" width=(width) height=(h + 16.0) viewBox={ "0 0 " (width) " " (h + 16.0) } role="img" {
            @for (i, (month, v, shown)) in points.iter().enumerate() {
                @let bar = v.abs() / max * h;
                rect x=(i as f64 * bw + 2.0) y=(h - bar) width=(bw - 6.0) height=(bar) class="bar receivable"
                    data-month=(month) data-value=(shown) { title { (month) ": " (shown) } }
                text x=(i as f64 * bw + 2.0) y=(h + 12.0) class="tiny" { (month) }
            }
        }
    }
}

/// A rate in percent per month against a target line; a month below the
/// target is marked.
pub(super) fn rate(points: &[(String, Option<f64>, String)], target: f64) -> Markup {
    let (bw, h) = (52.0, 60.0);
    let width = bw * points.len().max(1) as f64 + 4.0;
    let y = |pct: f64| h - pct.clamp(0.0, 100.0) / 100.0 * (h - 14.0);
    html! {
        svg class="spark" width=(width) height=(h + 16.0) viewBox={ "0 0 " (width) " " (h + 16.0) } role="img" {
            @for (i, (month, v, shown)) in points.iter().enumerate() {
                @if let Some(v) = v {
                    @let below = *v < target;
                    rect x=(i as f64 * bw + 2.0) y=(y(*v)) width=(bw - 6.0) height=(h - y(*v))
                        class={ "bar " @if below { "payable" } @else { "net" } }
                        data-month=(month) data-rate=(shown) { title { (month) ": " (shown) } }
                }
                text x=(i as f64 * bw + 2.0) y="10" class="tiny" { (shown) }
                text x=(i as f64 * bw + 2.0) y=(h + 12.0) class="tiny" { (month) }
            }
            line x1="0" x2=(width) y1=(y(target)) y2=(y(target)) stroke="#b34700" stroke-dasharray="4 3" {}
        }
    }
}
