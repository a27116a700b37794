//! xclear: a clearing house for out-of-region medical-insurance settlement.
//!
//! # Layout
//!
//! The core is pure and deterministic (no I/O, no clock, no randomness):
//! - [`money`]: amounts and ratios on `rust_decimal`, half-up rounding to 0.01.
//! - [`region`]: region codes (admdvs), areas, corps–local pairs, routes.
//! - [`med_type`]: the national medical types (`med_type`) and clearing's categories.
//! - [`rules`]: benefit policies, catalogues and pairs loaded from `clearing_rules/`.
//! - [`settlement`]: the settlement computation (bill split, basic fund,
//!   critical illness, assistance, counters, reversal).
//!
//! - [`clearing`]: monthly reconciliation, netting, advance funds, statements.
//! - [`ledger`]: entry format, Merkle tree and proofs (pure), and the durable
//!   ledger itself (segment file + group commit, indexes in [`storage`]).
//!
//! At the edges:
//! - [`operator`]: the national clearing operator (reports, statements, confirmations).
//! - [`demo`]: the whole federation on loopback (`xclear demo`).
//! - [`node`]: a region's node (home and treatment sides) over its ledger;
//!   [`api`]: signed envelopes, wire conversions, errors -> gRPC status.
//! - [`calc`]: the `xclear calc` JSON interface.
//! - [`clock`]: time as an argument; [`time`]: Asia/Shanghai days and months; [`crypto`]: keys and signatures;
//!   [`memory`]: the process's memory settings (no transparent huge pages).
//! - [`tls`]: TLS on every connection, certificates bound to signing keys, a development CA.
//! - [`storage`]: sled behind a small trait (the only place that imports sled).
//! - [`proto`]: generated gRPC types (never edited).

pub mod api;
pub mod calc;
pub mod clearing;
pub mod clock;
pub mod console;
pub mod crypto;
pub mod demo;
pub mod federation;
#[cfg(feature = "testkit")]
pub mod fuzz;
pub mod ledger;
pub mod med_type;
pub mod memory;
pub mod money;
pub mod node;
pub mod operator;
pub mod region;
pub mod rules;
pub mod settlement;
#[cfg(feature = "testkit")]
pub mod sim;
pub mod storage;
pub mod time;
pub mod tls;
pub mod transport;

/// Generated from `proto/xclear/v1/*.proto` by `build.rs`.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("xclear.v1");
}
