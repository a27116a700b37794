//! Bad input to `xclear calc` gets exit 2 and a message naming the field,
//! never a panic.

use crate::common;

use serde_json::{json, Value};

/// Runs the CLI and returns the error text, asserting exit 2 and no panic.
fn rejected(stdin: &str) -> String {
    let out = common::run_calc_cli(stdin);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert_eq!(
        out.status.code(),
        Some(2),
        "expected exit 2, stdout {} stderr {stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty(), "nothing on stdout for bad input");
    stderr
}

fn with(path: &[&str], value: Value) -> String {
    let mut c = common::example_case();
    let mut slot = &mut c;
    for key in path {
        slot = match key.parse::<usize>() {
            Ok(i) => &mut slot[i],
            Err(_) => &mut slot[*key],
        };
    }
    *slot = value;
    c.to_string()
}

fn assert_names(stderr: &str, field: &str) {
    assert!(stderr.contains(field), "error should name {field}: {stderr}");
}

#[test]
fn malformed_json() {
    let e = rejected("{\"person\": ");
    assert!(e.contains("EOF") || e.contains("line"), "{e}");
    rejected("");
    rejected("not json at all");
}

#[test]
fn unknown_region_codes() {
    assert_names(&rejected(&with(&["person", "insuplc_admdvs"], json!("990000"))), "person.insuplc_admdvs");
    assert_names(&rejected(&with(&["person", "insuplc_admdvs"], json!("61100"))), "person.insuplc_admdvs");
    // A valid code with no policy anywhere in its lineage is also unknown here.
    assert_names(&rejected(&with(&["person", "insuplc_admdvs"], json!("120000"))), "person.insuplc_admdvs");
    assert_names(&rejected(&with(&["encounter", "mdtrtarea_admvs"], json!("991000"))), "encounter.mdtrtarea_admvs");
    assert_names(&rejected(&with(&["registration", "target_admdvs"], json!("abc"))), "registration.target_admdvs");
}

#[test]
fn unknown_fields() {
    assert_names(&rejected(&with(&["encounter", "items", "0", "discount"], json!("1"))), "encounter.items[0]");
    assert_names(&rejected(&with(&["person", "nickname"], json!("x"))), "person");
}

#[test]
fn negative_and_non_numeric_amounts() {
    let e = rejected(&with(&["encounter", "items", "1", "price"], json!("-150.00")));
    assert_names(&e, "encounter.items[1].price");
    assert!(e.contains("negative"), "{e}");
    assert_names(&rejected(&with(&["encounter", "items", "0", "qty"], json!("one"))), "encounter.items[0].qty");
    assert_names(&rejected(&with(&["encounter", "items", "0", "qty"], json!(1))), "encounter.items[0].qty");
    assert_names(&rejected(&with(&["counters", "ci_base"], json!("-1.00"))), "counters.ci_base");
    assert_names(&rejected(&with(&["counters", "hifp_paid"], json!("1.001"))), "counters.hifp_paid");
    assert_names(&rejected(&with(&["encounter", "items", "0", "price"], json!("1e9"))), "encounter.items[0].price");
    assert_names(&rejected(&with(&["encounter", "items", "0", "price"], json!("NaN"))), "encounter.items[0].price");
}

#[test]
fn amounts_beyond_limits() {
    assert_names(
        &rejected(&with(&["encounter", "items", "0", "price"], json!("999999999999999"))),
        "encounter.items[0].price",
    );
    assert_names(&rejected(&with(&["encounter", "items", "0", "qty"], json!("10000000"))), "encounter.items[0].qty");
    let many: Vec<Value> = (0..1001).map(|_| json!({"code": "XA001", "qty": "1", "price": "1"})).collect();
    assert_names(&rejected(&with(&["encounter", "items"], json!(many))), "encounter.items");
    assert_names(&rejected(&with(&["encounter", "items"], json!([]))), "encounter.items");
}

#[test]
fn level_outside_range() {
    let e = rejected(&with(&["encounter", "hosp_lv"], json!(4)));
    assert_names(&e, "encounter.hosp_lv");
    assert!(e.contains("0–3"), "{e}");
    assert_names(&rejected(&with(&["encounter", "hosp_lv"], json!(-1))), "encounter.hosp_lv");
    assert_names(&rejected(&with(&["encounter", "hosp_lv"], json!("3"))), "encounter.hosp_lv");
}

#[test]
fn bad_dates() {
    assert_names(&rejected(&with(&["encounter", "setl_date"], json!("2026-02-30"))), "encounter.setl_date");
    assert_names(&rejected(&with(&["encounter", "setl_date"], json!("10/03/2026"))), "encounter.setl_date");
    assert_names(&rejected(&with(&["registration", "begndate"], json!("2026-13-01"))), "registration.begndate");
    assert_names(&rejected(&with(&["registration", "enddate"], json!("2025-12-31"))), "registration.enddate");
}

#[test]
fn bad_enumerations() {
    assert_names(&rejected(&with(&["person", "insutype"], json!("999"))), "person.insutype");
    assert_names(&rejected(&with(&["person", "special_group"], json!("veteran"))), "person.special_group");
    assert_names(&rejected(&with(&["registration", "kind"], json!("holiday"))), "registration.kind");
    // A filed, non-emergency registration needs its target and start date.
    assert_names(&rejected(&with(&["registration"], json!({"kind": "referral"}))), "registration.target_admdvs");
}

#[test]
fn missing_case_file_is_bad_input() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xclear"))
        .args(["calc", "--rules"])
        .arg(common::rules_dir())
        .args(["--case", "/nonexistent/case.json"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}
