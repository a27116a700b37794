//! Net positions: each region's receivable as treatment region minus its
//! payable as home region, over the cleared national lines (positions sum to
//! exactly zero); corps–local lines are netted bilaterally, apart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::lines::{Channel, Line};
use crate::money::Amount;
use crate::region::RegionCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Position {
    pub receivable: Amount,
    pub payable: Amount,
    pub net: Amount,
}

/// A corps–local pair's bilateral net for the month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bilateral {
    pub a: RegionCode,
    pub b: RegionCode,
    /// What `a` owes `b` (negative: `b` owes `a`).
    pub a_owes_b: Amount,
    pub lines: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The region pays into the clearing account.
    PayIn,
    /// The clearing account pays the region.
    PayOut,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub region: RegionCode,
    pub direction: Direction,
    pub amount: Amount,
}

/// An amount moved between a pair outside the lines: an operator deduction
/// (拒付) or a disputed line coming back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adjustment {
    pub home: RegionCode,
    pub treatment: RegionCode,
    /// Added to what the home region owes the treatment region (negative: a deduction).
    pub amount: Amount,
    pub reason: String,
    pub setl_id: Option<String>,
}

/// National positions (including adjustments between national pairs) and the
/// corps–local bilateral nets.
pub fn net(
    cleared: &[Line],
    adjustments: &[Adjustment],
    corps_local: impl Fn(RegionCode, RegionCode) -> bool,
) -> (BTreeMap<RegionCode, Position>, Vec<Bilateral>) {
    let mut positions: BTreeMap<RegionCode, Position> = BTreeMap::new();
    let mut bilateral: BTreeMap<(RegionCode, RegionCode), Bilateral> = BTreeMap::new();
    let mut owe = |home: RegionCode, treatment: RegionCode, amount: Amount, count: u64, channel: Channel| match channel
    {
        Channel::National => {
            let t = positions.entry(treatment).or_default();
            t.receivable = t.receivable + amount;
            let h = positions.entry(home).or_default();
            h.payable = h.payable + amount;
        }
        Channel::CorpsLocal => {
            let (a, b, sign) = if home < treatment { (home, treatment, amount) } else { (treatment, home, -amount) };
            let e = bilateral.entry((a, b)).or_insert(Bilateral { a, b, a_owes_b: Amount::ZERO, lines: 0 });
            e.a_owes_b = e.a_owes_b + sign;
            e.lines += count;
        }
    };
    for l in cleared {
        owe(l.home, l.treatment, l.amounts.owed(), l.count, l.channel);
    }
    for a in adjustments {
        let channel = if corps_local(a.home, a.treatment) { Channel::CorpsLocal } else { Channel::National };
        owe(a.home, a.treatment, a.amount, 1, channel);
    }
    for p in positions.values_mut() {
        p.net = p.receivable - p.payable;
    }
    (positions, bilateral.into_values().collect())
}

/// Debtors pay the clearing account, the clearing account pays creditors.
pub fn transfers(positions: &BTreeMap<RegionCode, Position>) -> Vec<Transfer> {
    positions
        .iter()
        .filter(|(_, p)| p.net != Amount::ZERO)
        .map(|(r, p)| {
            if p.net.is_negative() {
                Transfer { region: *r, direction: Direction::PayIn, amount: -p.net }
            } else {
                Transfer { region: *r, direction: Direction::PayOut, amount: p.net }
            }
        })
        .collect()
}
