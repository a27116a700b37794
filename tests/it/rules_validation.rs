//! A rules directory with a defect is refused with the file, the key and the
//! reason: one test per defect.

use crate::common;

use std::path::Path;

use xclear::rules::{RuleBook, RuleIssue};

const SHANGLUO: &str = "policies/611000-390-2026.toml";
const FOSHAN: &str = "policies/440600-310-2026.toml";

/// The reference rules with `from` replaced by `to` in one file.
fn rules_with(file: &str, from: &str, to: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    common::copy_dir(&common::rules_dir(), dir.path());
    let path = dir.path().join(file);
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.contains(from), "{file} does not contain {from:?}");
    std::fs::write(&path, text.replacen(from, to, 1)).expect("write");
    dir
}

fn issues(dir: &Path) -> Vec<RuleIssue> {
    RuleBook::load(dir).expect_err("defective rules must be refused").issues
}

fn assert_issue(dir: &tempfile::TempDir, file: &str, key: &str, reason: &str) {
    let found = issues(dir.path());
    assert!(
        found.iter().any(|i| i.file.ends_with(file) && i.key == key && i.reason.contains(reason)),
        "expected {file}: {key}: …{reason}…, got {found:#?}"
    );
}

#[test]
fn reference_rules_load() {
    let book = common::rules();
    assert_eq!(book.policies().count(), 7);
}

#[test]
fn ratio_above_100_percent() {
    let d = rules_with(SHANGLUO, "ratio_pct = [85, 80, 75, 70]", "ratio_pct = [85, 80, 175, 70]");
    assert_issue(&d, SHANGLUO, "basic.ratio_pct[2]", "outside 0–100%");
}

#[test]
fn negative_ratio() {
    let d = rules_with(SHANGLUO, "te_kun = 70", "te_kun = -5");
    assert_issue(&d, SHANGLUO, "assistance.ratio_pct.te_kun", "outside 0–100%");
}

#[test]
fn band_ratio_outside_range() {
    let d =
        rules_with(SHANGLUO, "{ from = \"100000.00\", ratio_pct = 80 }", "{ from = \"100000.00\", ratio_pct = 180 }");
    assert_issue(&d, SHANGLUO, "critical_illness.bands[2].ratio_pct", "outside 0–100%");
}

#[test]
fn bands_overlap() {
    let d =
        rules_with(SHANGLUO, "{ from = \"30000.00\", to = \"100000.00\"", "{ from = \"25000.00\", to = \"100000.00\"");
    assert_issue(&d, SHANGLUO, "critical_illness.bands[1].from", "overlap");
}

#[test]
fn bands_leave_a_gap() {
    let d =
        rules_with(SHANGLUO, "{ from = \"100000.00\", ratio_pct = 80 }", "{ from = \"120000.00\", ratio_pct = 80 }");
    assert_issue(&d, SHANGLUO, "critical_illness.bands[2].from", "gap");
}

#[test]
fn first_band_not_at_threshold() {
    let d = rules_with(SHANGLUO, "threshold = \"10000.00\"", "threshold = \"8000.00\"");
    assert_issue(&d, SHANGLUO, "critical_illness.bands[0].from", "threshold");
}

#[test]
fn open_band_not_last() {
    let d = rules_with(
        SHANGLUO,
        "{ from = \"10000.00\", to = \"30000.00\", ratio_pct = 60 }",
        "{ from = \"10000.00\", ratio_pct = 60 }",
    );
    assert_issue(&d, SHANGLUO, "critical_illness.bands[0].to", "only the last band");
}

#[test]
fn referral_reduction_above_ceiling() {
    let d = rules_with(SHANGLUO, "referral = { pp = 10 }", "referral = { pp = 12 }");
    assert_issue(&d, SHANGLUO, "reductions.referral", "national ceiling of 10");
}

#[test]
fn emergency_reduction_above_ceiling() {
    let d = rules_with(SHANGLUO, "emergency = { pp = 10 }", "emergency = { pp = 11 }");
    assert_issue(&d, SHANGLUO, "reductions.emergency", "national ceiling of 10");
}

#[test]
fn other_temporary_reduction_above_ceiling() {
    let d = rules_with(SHANGLUO, "other_temporary = { pp = 15 }", "other_temporary = { pp = 25 }");
    assert_issue(&d, SHANGLUO, "reductions.other_temporary", "national ceiling of 20");
}

#[test]
fn multiplicative_reduction_above_ceiling() {
    // 佛山's top ratio is 95% + 3 retiree points = 98%; ×0.7 takes 29.4 points off.
    let d = rules_with(FOSHAN, "other_temporary = { factor = \"0.8\" }", "other_temporary = { factor = \"0.7\" }");
    assert_issue(&d, FOSHAN, "reductions.other_temporary", "national ceiling of 20");
}

#[test]
fn unknown_special_group() {
    let d = rules_with(SHANGLUO, "low_income = 60", "veterans = 60");
    assert_issue(&d, SHANGLUO, "assistance.ratio_pct.veterans", "unknown special group");
}

#[test]
fn two_policies_with_the_same_effective_date() {
    let d = rules_with(SHANGLUO, "name = \"商洛市\"", "name = \"商洛市\"");
    let text = std::fs::read_to_string(d.path().join(SHANGLUO)).expect("read");
    std::fs::write(d.path().join("policies/611000-390-2026-copy.toml"), text).expect("write");
    assert_issue(&d, "611000-390-2026.toml", "effective", "already has a policy effective 2026-01-01");
}

#[test]
fn a_new_year_beside_the_old_is_accepted_and_chosen_by_date() {
    let d = rules_with(SHANGLUO, "name = \"商洛市\"", "name = \"商洛市\"");
    let text = std::fs::read_to_string(d.path().join(SHANGLUO)).expect("read");
    let next = text
        .replace("effective = \"2026-01-01\"", "effective = \"2027-01-01\"")
        .replace("ratio_pct = [85, 80, 75, 70]", "ratio_pct = [86, 81, 76, 71]");
    std::fs::write(d.path().join("policies/611000-390-2027.toml"), next).expect("write");
    let book = RuleBook::load(d.path()).expect("loads");
    let region = xclear::region::RegionCode::parse("611000").expect("code");
    let date = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
    let p2026 = book.policy_for(region, xclear::rules::Insutype::Resident, date("2026-12-31")).expect("2026");
    let p2027 = book.policy_for(region, xclear::rules::Insutype::Resident, date("2027-01-01")).expect("2027");
    assert_eq!(p2026.effective, date("2026-01-01"));
    assert_eq!(p2027.effective, date("2027-01-01"));
    assert!(book.policy_for(region, xclear::rules::Insutype::Resident, date("2025-12-31")).is_err());
}

#[test]
fn float_is_refused_with_advice() {
    let d = rules_with(SHANGLUO, "annual_cap = \"130000.00\"", "annual_cap = 130000.5");
    assert_issue(&d, SHANGLUO, "basic.annual_cap", "decimal strings");
}

#[test]
fn unknown_key_is_refused() {
    let d = rules_with(SHANGLUO, "annual_cap = \"130000.00\"", "annual_cap = \"130000.00\"\nanual_cap = 1");
    assert_issue(&d, SHANGLUO, "basic.anual_cap", "unknown field");
}

#[test]
fn wrong_number_of_levels() {
    let d = rules_with(SHANGLUO, "ratio_pct = [85, 80, 75, 70]", "ratio_pct = [85, 80, 75]");
    assert_issue(&d, SHANGLUO, "basic.ratio_pct", "exactly 4");
}

#[test]
fn bad_region_and_date() {
    let d = rules_with(SHANGLUO, "region = \"611000\"", "region = \"991000\"");
    assert_issue(&d, SHANGLUO, "region", "unknown province");
    let d = rules_with(SHANGLUO, "effective = \"2026-01-01\"", "effective = \"2026-02-30\"");
    assert_issue(&d, SHANGLUO, "effective", "not a date");
}

#[test]
fn invalid_toml() {
    let d = rules_with(SHANGLUO, "[basic]", "[basic");
    assert_issue(&d, SHANGLUO, "-", "not valid TOML");
}

#[test]
fn catalogue_defects() {
    let d = rules_with("catalogues/110000.toml", "class = \"C\"", "class = \"D\"");
    assert_issue(&d, "catalogues/110000.toml", "items[4].class", "not a catalogue class");
    let d = rules_with("catalogues/110000.toml", "b_selfpay_share_pct = 10", "b_selfpay_share_pct = 110");
    assert_issue(&d, "catalogues/110000.toml", "b_selfpay_share_pct", "outside 0–100%");
    let d = rules_with("catalogues/110000.toml", "code = \"XA002\"", "code = \"XA001\"");
    assert_issue(&d, "catalogues/110000.toml", "items[1].code", "listed twice");
}

#[test]
fn corps_local_pair_must_be_division_and_prefecture() {
    let d = rules_with("corps_local.toml", "corps = \"660400\"", "corps = \"650100\"");
    assert_issue(&d, "corps_local.toml", "pairs[0].corps", "not an XPCC division");
}

#[test]
fn every_defect_is_reported_not_just_the_first() {
    let d = rules_with(SHANGLUO, "referral = { pp = 10 }", "referral = { pp = 12 }");
    let path = d.path().join(FOSHAN);
    let text = std::fs::read_to_string(&path)
        .expect("read")
        .replace("ratio_pct = [95, 92, 90, 87]", "ratio_pct = [195, 92, 90, 87]");
    std::fs::write(path, text).expect("write");
    let found = issues(d.path());
    assert!(found.len() >= 2, "{found:#?}");
}

#[test]
fn cli_reports_file_key_reason() {
    let d = rules_with(SHANGLUO, "ratio_pct = [85, 80, 75, 70]", "ratio_pct = [85, 80, 175, 70]");
    let out = common::run_calc_cli_with_rules(&common::example_case().to_string(), d.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("611000-390-2026.toml: basic.ratio_pct[2]: ratio 175% is outside 0–100%"), "{err}");
}

#[test]
fn outpatient_ratio_outside_range() {
    let d = rules_with(SHANGLUO, "ratio_pct = [60, 55, 50, 50]", "ratio_pct = [60, 55, 150, 50]");
    assert_issue(&d, SHANGLUO, "outpatient.ratio_pct[2]", "outside 0–100%");
}

#[test]
fn negative_outpatient_cap() {
    let d = rules_with(SHANGLUO, "annual_cap = \"800.00\"", "annual_cap = \"-800.00\"");
    assert_issue(&d, SHANGLUO, "outpatient.annual_cap", "negative");
}

#[test]
fn chronic_ratio_outside_range() {
    let d =
        rules_with(SHANGLUO, "ratio_pct = 85\nannual_cap = \"80000.00\"", "ratio_pct = 185\nannual_cap = \"80000.00\"");
    assert_issue(&d, SHANGLUO, "chronic[3].ratio_pct", "outside 0–100%");
}

#[test]
fn negative_chronic_cap() {
    let d = rules_with(SHANGLUO, "annual_cap = \"3000.00\"", "annual_cap = \"-3000.00\"");
    assert_issue(&d, SHANGLUO, "chronic[0].annual_cap", "negative");
}

#[test]
fn disease_listed_twice() {
    let d = rules_with(SHANGLUO, "dise_codg = \"M01600\"", "dise_codg = \"M03900\"");
    assert_issue(&d, SHANGLUO, "chronic[1].dise_codg", "listed twice");
}

#[test]
fn malformed_disease_code() {
    let d = rules_with(SHANGLUO, "dise_codg = \"M01600\"", "dise_codg = \"M01-600\"");
    assert_issue(&d, SHANGLUO, "chronic[1].dise_codg", "not a disease code");
}

#[test]
fn unknown_med_type_in_the_account_rule() {
    let d = rules_with(FOSHAN, "med_types = [\"11\", \"13\"", "med_types = [\"11\", \"12\"");
    assert_issue(&d, FOSHAN, "account.med_types[1]", "not a med_type");
}

#[test]
fn policy_without_outpatient_section() {
    let d = rules_with(SHANGLUO, "[outpatient]", "[outpatient_pooling]");
    let found = issues(d.path());
    assert!(found.iter().any(|i| i.file.ends_with(SHANGLUO) && i.reason.contains("outpatient")), "{found:#?}");
}
