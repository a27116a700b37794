//! Every decoder that sees outside input, fuzzed for a bounded number of
//! inputs per target (`xclear fuzz --target T --seconds N` runs longer), and
//! the inputs that once broke something, replayed.

use xclear::fuzz::{replay, run, Budget, Target};

fn fuzz(target: Target, inputs: u64) {
    match run(target, Budget::Inputs(inputs), 20261122) {
        Ok(r) => {
            assert_eq!(r.inputs, inputs);
            // Not vacuous: some inputs get through to acceptance, most are refused.
            assert!(r.refused > 0, "{}: nothing refused", target.name());
        }
        Err(f) => panic!("{f}"),
    }
}

#[test]
fn fuzz_hospital_requests() {
    fuzz(Target::Hospital, 3000);
}

#[test]
fn fuzz_claims() {
    fuzz(Target::Claim, 3000);
}

#[test]
fn fuzz_peer_queries() {
    fuzz(Target::PeerQuery, 3000);
}

#[test]
fn fuzz_registrations() {
    fuzz(Target::Registration, 3000);
}

#[test]
fn fuzz_reports_lines_and_confirmations() {
    fuzz(Target::Report, 3000);
}

#[test]
fn fuzz_calc_cases() {
    fuzz(Target::Calc, 20_000);
}

#[test]
fn fuzz_rules_files() {
    fuzz(Target::Rules, 5000);
}

#[test]
fn fuzz_config_files() {
    fuzz(Target::Config, 20_000);
}

#[test]
fn fuzz_ledger_exports() {
    fuzz(Target::Export, 10_000);
}

/// Found by `xclear fuzz --target claim`: a signed claim whose bill parts do
/// not add up to its total made the home node's benefit computation panic
/// (fund above the bill). Such a claim is now refused as a bad request.
#[test]
fn regression_claim_whose_parts_exceed_the_total() {
    let input = include_bytes!("../fuzz_regressions/claim-fund-exceeds-bill.bin");
    let accepted = replay(Target::Claim, input).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(accepted, 0);
}
