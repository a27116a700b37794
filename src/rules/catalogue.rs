//! A treatment region's catalogue (就医地目录): how each item is classed.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use crate::money::{Amount, Ratio};
use crate::region::RegionCode;

/// Catalogue class: A fully in scope, B patient pays a share first, C self-paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ItemClass {
    A,
    B,
    C,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueItem {
    pub code: String,
    pub name: String,
    pub class: ItemClass,
    /// Unit price above which the excess is self-paid (超限价自付).
    pub price_cap: Option<Amount>,
}

/// Which area a catalogue serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CatalogueScope {
    /// The national base catalogue, for regions with none of their own.
    National,
    Region(RegionCode),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalogue {
    pub scope: CatalogueScope,
    pub name: String,
    pub effective: NaiveDate,
    /// Share of a class-B item's in-cap amount the patient pays first (乙类先行自付).
    pub b_selfpay_share: Ratio,
    pub items: BTreeMap<String, CatalogueItem>,
    pub source: String,
}

impl Catalogue {
    pub fn item(&self, code: &str) -> Option<&CatalogueItem> {
        self.items.get(code)
    }
}
