//! The integration tests, in one binary (one link instead of one per file).
//! Each module is a former `tests/*.rs` file; `common` holds shared helpers.

mod audit_sample_properties;
mod batch_sig_properties;
mod bulk_import;
mod calc_bad_input;
mod clearing_core;
mod clearing_federation;
mod common;
mod console;
mod crash_federation;
mod demo;
mod designation;
mod docs_commands;
mod examples;
mod fuzz;
mod hospital_statement_properties;
mod hospital_statements;
mod hostile;
mod layers;
mod ledger;
mod ledger_crash;
mod merkle_properties;
mod node_grpc;
mod node_inprocess;
mod node_process;
mod node_state;
mod operator;
mod outpatient;
mod reconcile;
mod rules_validation;
mod settlement_properties;
mod settlement_rules;
mod sim;
mod worked_examples;
