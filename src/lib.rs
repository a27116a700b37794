//! xclear: a clearing house for out-of-region medical-insurance settlement.
//!
//! # Layout
//!
//! The core is pure and deterministic (no I/O, no clock, no randomness):
//! - [`money`]: amounts and ratios on `rust_decimal`, half-up rounding to 0.01.
//! - [`region`]: region codes (admdvs), areas, corps–local pairs, routes.
//! - [`rules`]: benefit policies, catalogues and pairs loaded from `clearing_rules/`.
//! - [`settlement`]: the settlement computation (bill split, basic fund,
//!   critical illness, assistance, counters, reversal).
//!
//! At the edges:
//! - [`calc`]: the `xclear calc` JSON interface.
//! - [`proto`]: generated gRPC types (never edited).

pub mod calc;
pub mod money;
pub mod region;
pub mod rules;
pub mod settlement;

/// Generated from `proto/xclear/v1/*.proto` by `build.rs`.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("xclear.v1");
}
