//! Clearing benchmarks: a node's monthly report over 5,000,000 settlements
//! (from its running totals), and reconciling and netting 400 regions with
//! every pair. Each runs in its own process so its peak memory is its own.

use std::collections::BTreeMap;
use std::time::Instant;

use ed25519_dalek::SigningKey;
use rust_decimal::Decimal;

use xclear::clearing::{close, Amounts, Channel, ClosingInput, Line, Month, RunningPair};
use xclear::crypto;
use xclear::money::Amount;
use xclear::region::RegionCode;

use super::bench_cmd::Figure;

/// Peak resident memory of this process (VmHWM), in MiB.
pub(crate) fn peak_mib() -> f64 {
    status_mib("VmHWM:")
}

/// A memory figure of this process's /proc/self/status (e.g. "VmRSS:"), in MiB.
pub(crate) fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn month() -> Month {
    Month::parse("2026-03").unwrap_or_else(|| unreachable!("constant month"))
}

fn amounts(cents: i64) -> Amounts {
    let a = Amount::round_half_up(Decimal::new(cents, 2));
    Amounts { medfee_sumamt: a, hifp_pay: a, fund_pay_sumamt: a, ..Amounts::default() }
}

/// A node with `n` settlements in a month, spread over its counterparts, as
/// its running totals hold them; the report is their summaries, signed.
pub(crate) fn report(n: u64) -> Result<Vec<Figure>, String> {
    let own = RegionCode::parse("611000").map_err(|e| e.to_string())?;
    let counterparts: Vec<RegionCode> =
        ["110000", "440600", "654000", "660400", "540000", "330100", "120000", "310000"]
            .iter()
            .filter_map(|c| RegionCode::parse(c).ok())
            .collect();
    let mut totals: BTreeMap<(bool, RegionCode), RunningPair> = BTreeMap::new();
    let build = Instant::now();
    for i in 0..n {
        let c = counterparts[(i % counterparts.len() as u64) as usize];
        let as_home = i % 3 != 0;
        let (home, treatment) = if as_home { (own, c) } else { (c, own) };
        let line = Line {
            setl_id: format!("S611000{i:016x}"),
            home,
            treatment,
            channel: Channel::National,
            month: month(),
            med_type: xclear::med_type::MedType::DEFAULT,
            amounts: amounts(10_000 + (i % 90_000) as i64),
            count: 1,
        };
        totals.entry((as_home, c)).or_default().add(&line);
    }
    let build_secs = build.elapsed().as_secs_f64();
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let start = Instant::now();
    let summaries: Vec<_> = totals.iter().map(|(k, p)| (k.0, k.1.to_string(), p.summary())).collect();
    let body = serde_json::to_vec(&summaries).map_err(|e| e.to_string())?;
    let _signature = crypto::sign(&key, b"xclear/report/v1\0", &body);
    let secs = start.elapsed().as_secs_f64();
    Ok(vec![
        Figure {
            name: "clearing_report_5m_seconds",
            value: secs,
            unit: "s",
            note: format!("{n} settlements, {} pairs: sort ids, Merkle roots, sign (goal <= 10)", totals.len()),
        },
        Figure {
            name: "clearing_report_running_totals_build_seconds",
            value: build_secs,
            unit: "s",
            note: "filling the running totals (done as settlements commit)".into(),
        },
        Figure {
            name: "clearing_report_peak_mib",
            value: peak_mib(),
            unit: "MiB",
            note: "peak resident memory of this process".into(),
        },
    ])
}

/// 400 regions, every ordered pair settling with every other, both sides
/// reporting the same: reconcile, net, transfers, statement.
pub(crate) fn netting(regions: usize) -> Result<Vec<Figure>, String> {
    // Valid region codes: prefectures 01..13 of every province.
    let mut codes = Vec::new();
    for p in [
        11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52, 53, 54, 61, 62,
        63, 64, 65,
    ] {
        for c in 1..=13 {
            if let Ok(code) = RegionCode::parse(&format!("{p:02}{c:02}00")) {
                codes.push(code);
            }
        }
    }
    codes.truncate(regions);
    if codes.len() < regions {
        return Err(format!("only {} region codes", codes.len()));
    }
    let mut lines = Vec::with_capacity(regions * regions);
    for (i, h) in codes.iter().enumerate() {
        for (j, t) in codes.iter().enumerate() {
            if i != j {
                lines.push(Line {
                    setl_id: format!("P{h}{t}"),
                    home: *h,
                    treatment: *t,
                    channel: Channel::National,
                    month: month(),
                    amounts: amounts(((i * 7919 + j * 104_729) % 10_000_000) as i64),
                    med_type: xclear::med_type::MedType::DEFAULT,
                    count: 1,
                });
            }
        }
    }
    let input = ClosingInput { treatment_lines: lines.clone(), home_lines: lines, ..ClosingInput::default() };
    let start = Instant::now();
    let statement = close(month(), &input, |_, _| false);
    let secs = start.elapsed().as_secs_f64();
    if statement.positions_sum() != Amount::ZERO {
        return Err("positions do not sum to zero".into());
    }
    Ok(vec![
        Figure {
            name: "clearing_netting_400_seconds",
            value: secs,
            unit: "s",
            note: format!(
                "{regions} regions, {} pairs: reconcile, net, transfers, statement (goal <= 2)",
                statement.pairs.len()
            ),
        },
        Figure {
            name: "clearing_netting_peak_mib",
            value: peak_mib(),
            unit: "MiB",
            note: "peak resident memory of this process".into(),
        },
    ])
}
