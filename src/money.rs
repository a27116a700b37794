//! Money: an amount in yuan with exactly two decimal places, on `rust_decimal`.
//!
//! Every fund component is rounded half-up to 0.01 once, at the end of its own
//! step ([`Amount::round_half_up`]); intermediate products stay exact `Decimal`s.
//! Ratios are a separate type so that an amount is never multiplied by an
//! unchecked number. No floating point anywhere.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, Neg, Sub};
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};

/// Largest amount any single input may carry (one hundred billion yuan). Inputs
/// are bounded so that no sum or product in the computation can overflow
/// `Decimal` (about 7.9e28); see [`MAX_INPUT_AMOUNT`] users.
pub const MAX_INPUT_AMOUNT: Decimal = rust_decimal_macros::dec!(100000000000);

/// Decimal places allowed on an amount.
pub const AMOUNT_SCALE: u32 = 2;

/// An amount of money in yuan, always held at exactly two decimal places.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Amount(Decimal);

/// Why a text is not a valid amount, quantity or price.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("not a decimal number: {0:?}")]
    NotANumber(String),
    #[error("must not be negative: {0}")]
    Negative(String),
    #[error("at most {max} decimal places allowed: {text}")]
    TooManyDecimals { text: String, max: u32 },
    #[error("too large: {0} (limit {MAX_INPUT_AMOUNT})")]
    TooLarge(String),
}

impl Amount {
    pub const ZERO: Amount = Amount(Decimal::ZERO);

    /// Rounds an exact value half-up (away from zero at the midpoint) to 0.01.
    pub fn round_half_up(exact: Decimal) -> Amount {
        let mut d = exact.round_dp_with_strategy(AMOUNT_SCALE, RoundingStrategy::MidpointAwayFromZero);
        d.rescale(AMOUNT_SCALE);
        Amount(d)
    }

    /// An amount from a value that is already exact to the cent. Panics on
    /// more than two decimals: that is a programming error, not bad input.
    pub fn from_cents_exact(d: Decimal) -> Amount {
        let rounded = Amount::round_half_up(d);
        assert_eq!(rounded.0, d, "amount {d} has more than two decimals");
        rounded
    }

    /// Whole yuan, for constants and tests.
    pub fn yuan(y: i64) -> Amount {
        Amount::round_half_up(Decimal::from(y))
    }

    /// Parses a non-negative decimal string with at most two decimals,
    /// bounded by [`MAX_INPUT_AMOUNT`].
    pub fn parse_non_negative(text: &str) -> Result<Amount, MoneyError> {
        parse_bounded(text, AMOUNT_SCALE).map(Amount::from_cents_exact)
    }

    pub fn as_decimal(self) -> Decimal {
        self.0
    }

    pub fn is_negative(self) -> bool {
        self.0.is_sign_negative() && !self.0.is_zero()
    }

    /// `max(self, 0)`.
    pub fn positive_part(self) -> Amount {
        if self.is_negative() {
            Amount::ZERO
        } else {
            self
        }
    }

    /// The exact (unrounded) product with a ratio.
    pub fn times(self, ratio: Ratio) -> Decimal {
        self.0 * ratio.0
    }
}

/// Parses a non-negative decimal string with at most `max_scale` decimals,
/// bounded by [`MAX_INPUT_AMOUNT`]. Used for amounts, quantities and prices.
pub fn parse_bounded(text: &str, max_scale: u32) -> Result<Decimal, MoneyError> {
    let trimmed = text.trim();
    let plain = !trimmed.is_empty()
        && trimmed.chars().all(|c| c.is_ascii_digit() || c == '.' || c == '-')
        && trimmed.chars().filter(|c| *c == '.').count() <= 1;
    if !plain {
        return Err(MoneyError::NotANumber(text.to_string()));
    }
    let d = Decimal::from_str(trimmed).map_err(|_| MoneyError::NotANumber(text.to_string()))?;
    if d.is_sign_negative() && !d.is_zero() {
        return Err(MoneyError::Negative(text.to_string()));
    }
    if d.scale() > max_scale && d.normalize().scale() > max_scale {
        return Err(MoneyError::TooManyDecimals { text: text.to_string(), max: max_scale });
    }
    if d > MAX_INPUT_AMOUNT {
        return Err(MoneyError::TooLarge(text.to_string()));
    }
    Ok(d.abs())
}

impl Add for Amount {
    type Output = Amount;
    fn add(self, rhs: Amount) -> Amount {
        // Inputs are bounded by MAX_INPUT_AMOUNT, so this cannot overflow;
        // the std operator panics if that assumption is ever broken.
        Amount(self.0 + rhs.0)
    }
}

impl Sub for Amount {
    type Output = Amount;
    fn sub(self, rhs: Amount) -> Amount {
        Amount(self.0 - rhs.0)
    }
}

impl Neg for Amount {
    type Output = Amount;
    fn neg(self) -> Amount {
        let mut d = -self.0;
        if d.is_zero() {
            d = Decimal::ZERO; // never print "-0.00"
            d.rescale(AMOUNT_SCALE);
        }
        Amount(d)
    }
}

impl Sum for Amount {
    fn sum<I: Iterator<Item = Amount>>(iter: I) -> Amount {
        iter.fold(Amount::ZERO, |a, b| a + b)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2}", self.0)
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "¥{self}")
    }
}

impl serde::Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Amount {
    /// Signed, two decimals at most: used for stored records (reversals are negative).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let value = Decimal::from_str(&text).map_err(serde::de::Error::custom)?;
        if value.normalize().scale() > AMOUNT_SCALE {
            return Err(serde::de::Error::custom(format!("more than two decimals: {text}")));
        }
        Ok(Amount::round_half_up(value))
    }
}

/// A ratio between 0 and 1 inclusive (a percentage divided by 100).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Ratio(Decimal);

impl Ratio {
    pub const ZERO: Ratio = Ratio(Decimal::ZERO);
    pub const ONE: Ratio = Ratio(Decimal::ONE);

    /// A ratio from percentage points, e.g. `70` → 0.70. `None` outside 0–100.
    pub fn from_percent(pct: Decimal) -> Option<Ratio> {
        if pct < Decimal::ZERO || pct > Decimal::ONE_HUNDRED {
            return None;
        }
        Some(Ratio((pct / Decimal::ONE_HUNDRED).normalize()))
    }

    /// A ratio from a fraction, e.g. `0.8`. `None` outside 0–1.
    pub fn from_fraction(f: Decimal) -> Option<Ratio> {
        (Decimal::ZERO..=Decimal::ONE).contains(&f).then(|| Ratio(f.normalize()))
    }

    pub fn as_decimal(self) -> Decimal {
        self.0
    }

    /// Adds percentage points, never above 100%.
    pub fn plus_points(self, pp: Decimal) -> Ratio {
        Ratio((self.0 + pp / Decimal::ONE_HUNDRED).min(Decimal::ONE).max(Decimal::ZERO))
    }

    /// Removes percentage points, never below 0%.
    pub fn minus_points(self, pp: Decimal) -> Ratio {
        Ratio((self.0 - pp / Decimal::ONE_HUNDRED).max(Decimal::ZERO).min(Decimal::ONE))
    }

    /// Multiplies by a factor in 0–1.
    pub fn scaled_by(self, factor: Ratio) -> Ratio {
        Ratio((self.0 * factor.0).normalize())
    }
}

impl fmt::Display for Ratio {
    /// At least two decimals ("0.70", "0.736").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0.normalize();
        if d.scale() < 2 {
            write!(f, "{d:.2}")
        } else {
            write!(f, "{d}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn rounds_half_up_at_the_cent() {
        assert_eq!(Amount::round_half_up(dec!(1.005)).to_string(), "1.01");
        assert_eq!(Amount::round_half_up(dec!(1.0049)).to_string(), "1.00");
        assert_eq!(Amount::round_half_up(dec!(2)).to_string(), "2.00");
        assert_eq!(Amount::round_half_up(dec!(-1.005)).to_string(), "-1.01");
    }

    #[test]
    fn parses_strictly() {
        assert_eq!(Amount::parse_non_negative("12.5").unwrap().to_string(), "12.50");
        assert!(matches!(Amount::parse_non_negative("-1"), Err(MoneyError::Negative(_))));
        assert!(matches!(Amount::parse_non_negative("abc"), Err(MoneyError::NotANumber(_))));
        assert!(matches!(Amount::parse_non_negative("1e5"), Err(MoneyError::NotANumber(_))));
        assert!(matches!(Amount::parse_non_negative(""), Err(MoneyError::NotANumber(_))));
        assert!(matches!(Amount::parse_non_negative("1.234"), Err(MoneyError::TooManyDecimals { .. })));
        assert!(Amount::parse_non_negative("1.230").is_ok());
        assert!(matches!(Amount::parse_non_negative("100000000001"), Err(MoneyError::TooLarge(_))));
        assert_eq!(MAX_INPUT_AMOUNT, dec!(100000000000));
    }

    #[test]
    fn negation_never_prints_minus_zero() {
        assert_eq!((-Amount::ZERO).to_string(), "0.00");
        assert_eq!((-Amount::yuan(3)).to_string(), "-3.00");
    }

    #[test]
    fn ratios_clamp() {
        let r = Ratio::from_percent(dec!(98)).unwrap();
        assert_eq!(r.plus_points(dec!(5)), Ratio::ONE);
        assert_eq!(Ratio::from_percent(dec!(5)).unwrap().minus_points(dec!(10)), Ratio::ZERO);
        assert!(Ratio::from_percent(dec!(101)).is_none());
        assert_eq!(Ratio::from_percent(dec!(70)).unwrap().to_string(), "0.70");
        let f = Ratio::from_fraction(dec!(0.8)).unwrap();
        assert_eq!(Ratio::from_percent(dec!(92)).unwrap().scaled_by(f).to_string(), "0.736");
    }
}
