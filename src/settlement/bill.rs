//! The treatment side of a settlement: each bill item is split by the
//! treatment region's catalogue into the four parts the national platform
//! reports, which always sum to the item's amount.

use rust_decimal::Decimal;

use crate::money::{Amount, Ratio};
use crate::rules::{Catalogue, ItemClass};

/// Most items one bill may carry.
pub const MAX_ITEMS_PER_BILL: usize = 1_000;
/// Decimal places allowed on a quantity and on a unit price.
pub const QTY_SCALE: u32 = 4;
pub const PRICE_SCALE: u32 = 4;
/// Largest quantity on one line.
pub const MAX_QTY: Decimal = rust_decimal_macros::dec!(1000000);
/// Largest unit price on one line.
pub const MAX_PRICE: Decimal = rust_decimal_macros::dec!(100000000);

/// One line of a bill as the hospital sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillItem {
    pub code: String,
    pub qty: Decimal,
    pub price: Decimal,
}

/// How one item divides: `amount = fulamt_ownpay + overlmt_selfpay + preselfpay + inscp_scp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ItemSplit {
    pub amount: Amount,
    pub fulamt_ownpay_amt: Amount,
    pub overlmt_selfpay: Amount,
    pub preselfpay_amt: Amount,
    pub inscp_scp_amt: Amount,
}

/// The bill's totals, as the treatment node classifies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct BillTotals {
    pub medfee_sumamt: Amount,
    pub fulamt_ownpay_amt: Amount,
    pub overlmt_selfpay: Amount,
    pub preselfpay_amt: Amount,
    pub inscp_scp_amt: Amount,
}

impl BillTotals {
    fn add(&mut self, s: &ItemSplit) {
        self.medfee_sumamt = self.medfee_sumamt + s.amount;
        self.fulamt_ownpay_amt = self.fulamt_ownpay_amt + s.fulamt_ownpay_amt;
        self.overlmt_selfpay = self.overlmt_selfpay + s.overlmt_selfpay;
        self.preselfpay_amt = self.preselfpay_amt + s.preselfpay_amt;
        self.inscp_scp_amt = self.inscp_scp_amt + s.inscp_scp_amt;
    }

    /// Whether the parts are non-negative and add up to the total, as every
    /// classified bill's do (a claim from outside must be checked).
    pub fn is_consistent(&self) -> bool {
        let parts = [self.fulamt_ownpay_amt, self.overlmt_selfpay, self.preselfpay_amt, self.inscp_scp_amt];
        parts.iter().all(|p| !p.is_negative()) && parts.iter().copied().sum::<Amount>() == self.medfee_sumamt
    }

    /// The same totals negated, for a reversal.
    pub fn negated(&self) -> BillTotals {
        BillTotals {
            medfee_sumamt: -self.medfee_sumamt,
            fulamt_ownpay_amt: -self.fulamt_ownpay_amt,
            overlmt_selfpay: -self.overlmt_selfpay,
            preselfpay_amt: -self.preselfpay_amt,
            inscp_scp_amt: -self.inscp_scp_amt,
        }
    }
}

/// Splits one item: class C or an unknown code is self-paid in full; the part
/// of a unit price above the catalogue's cap is self-paid; a class-B item's
/// patient share comes off the in-cap part first; the rest is in scope.
pub fn split_item(catalogue: &Catalogue, item: &BillItem) -> ItemSplit {
    let amount = Amount::round_half_up(item.qty * item.price);
    let entry = match catalogue.item(&item.code) {
        Some(e) if e.class != ItemClass::C => e,
        _ => return ItemSplit { amount, fulamt_ownpay_amt: amount, ..ItemSplit::default() },
    };
    let overlmt_selfpay = match entry.price_cap {
        Some(cap) if item.price > cap.as_decimal() => Amount::round_half_up((item.price - cap.as_decimal()) * item.qty),
        _ => Amount::ZERO,
    };
    let in_cap = amount - overlmt_selfpay;
    let share = if entry.class == ItemClass::B { catalogue.b_selfpay_share } else { Ratio::ZERO };
    let preselfpay_amt = Amount::round_half_up(in_cap.times(share));
    ItemSplit {
        amount,
        fulamt_ownpay_amt: Amount::ZERO,
        overlmt_selfpay,
        preselfpay_amt,
        inscp_scp_amt: in_cap - preselfpay_amt,
    }
}

/// Splits every item and sums the parts.
pub fn classify(catalogue: &Catalogue, items: &[BillItem]) -> (Vec<ItemSplit>, BillTotals) {
    let splits: Vec<ItemSplit> = items.iter().map(|i| split_item(catalogue, i)).collect();
    let mut totals = BillTotals::default();
    for s in &splits {
        totals.add(s);
    }
    (splits, totals)
}
