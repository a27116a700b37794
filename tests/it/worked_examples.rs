//! The worked examples of REFERENCE_POLICIES.md §4, through the library and
//! through `xclear calc`.

use crate::common;

use serde_json::{json, Value};
use xclear::calc::{run_case, CalcOutcome};

/// (hifp, hifmi, maf, fund, psn) as strings.
type Expect = (&'static str, &'static str, &'static str, &'static str, &'static str);

fn case_b() -> Value {
    let mut c = common::example_case();
    c["registration"]["kind"] = json!("other_temporary");
    c
}

fn case_b2() -> Value {
    let mut c = common::example_case();
    c["registration"] = json!({"kind": "emergency"});
    c
}

fn case_c() -> Value {
    let mut c = common::example_case();
    c["person"]["special_group"] = json!("te_kun");
    c
}

fn case_d() -> Value {
    let mut c = common::example_case();
    c["encounter"]["items"] = json!([{"code": "XA001", "qty": "1", "price": "300000.00"}]);
    c
}

fn case_d2() -> Value {
    let mut c = case_d();
    c["counters"] =
        json!({"hifp_paid": "130000.00", "ci_base": "170000.00", "ci_paid": "117000.00", "maf_paid": "0.00"});
    c
}

fn case_e() -> Value {
    let mut c = common::example_case();
    c["registration"] = Value::Null;
    c
}

fn check(out: &Value, e: Expect) {
    assert_eq!(out["hifp_pay"], e.0, "hifp_pay in {out}");
    assert_eq!(out["hifmi_pay"], e.1, "hifmi_pay in {out}");
    assert_eq!(out["hifob_pay"], "0.00");
    assert_eq!(out["maf_pay"], e.2, "maf_pay in {out}");
    assert_eq!(out["fund_pay_sumamt"], e.3, "fund_pay_sumamt in {out}");
    assert_eq!(out["psn_part_amt"], e.4, "psn_part_amt in {out}");
    assert_eq!(out["route"], "cross_province");
}

fn via_library(case: &Value) -> Value {
    match run_case(&common::rules(), &case.to_string()).expect("valid case") {
        CalcOutcome::Settled(json) => serde_json::from_str(&json).expect("json"),
        CalcOutcome::Refused(json) => panic!("refused: {json}"),
    }
}

fn via_cli(case: &Value) -> Value {
    let out = common::run_calc_cli(&case.to_string());
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json on stdout")
}

fn both(case: Value, e: Expect) -> Value {
    let lib = via_library(&case);
    check(&lib, e);
    let cli = via_cli(&case);
    assert_eq!(lib, cli, "library and CLI disagree");
    lib
}

#[test]
fn example_a_long_term_resident() {
    let out = both(common::example_case(), ("31500.00", "2400.00", "0.00", "33900.00", "16100.00"));
    assert_eq!(out["medfee_sumamt"], "50000.00");
    assert_eq!(out["fulamt_ownpay_amt"], "3000.00");
    assert_eq!(out["overlmt_selfpay"], "500.00");
    assert_eq!(out["preselfpay_amt"], "1000.00");
    assert_eq!(out["inscp_scp_amt"], "45500.00");
    assert_eq!(out["act_pay_dedc"], "500.00");
    assert_eq!(out["pool_prop"], "0.70");
    assert_eq!(
        out["counters_after"],
        json!({"hifp_paid": "31500.00", "ci_base": "14000.00", "ci_paid": "2400.00", "maf_paid": "0.00",
               "op_dedc_used": "0.00", "op_paid": "0.00", "chronic_paid": {}})
    );
}

#[test]
fn example_b_other_temporary() {
    let out = both(case_b(), ("24750.00", "6450.00", "0.00", "31200.00", "18800.00"));
    assert_eq!(out["pool_prop"], "0.55");
}

#[test]
fn example_b2_emergency_without_filing() {
    let out = both(case_b2(), ("27000.00", "5100.00", "0.00", "32100.00", "17900.00"));
    assert_eq!(out["pool_prop"], "0.60");
}

#[test]
fn example_c_te_kun() {
    both(case_c(), ("31500.00", "5850.00", "5705.00", "43055.00", "6945.00"));
}

#[test]
fn example_d_large_bill() {
    let out = both(case_d(), ("130000.00", "117000.00", "0.00", "247000.00", "53000.00"));
    assert_eq!(
        out["counters_after"],
        json!({"hifp_paid": "130000.00", "ci_base": "170000.00", "ci_paid": "117000.00", "maf_paid": "0.00",
               "op_dedc_used": "0.00", "op_paid": "0.00", "chronic_paid": {}})
    );
}

#[test]
fn example_d2_caps_used() {
    both(case_d2(), ("0.00", "183000.00", "0.00", "183000.00", "117000.00"));
}

#[test]
fn example_d2_follows_from_d_counters() {
    let d = via_library(&case_d());
    let mut d2 = case_d();
    d2["counters"] = d["counters_after"].clone();
    assert_eq!(via_library(&d2), via_library(&case_d2()));
}

#[test]
fn example_e_refused_without_registration() {
    match run_case(&common::rules(), &case_e().to_string()).expect("valid case") {
        CalcOutcome::Refused(json) => {
            let v: Value = serde_json::from_str(&json).expect("json");
            assert_eq!(v["refused"], "registration_required");
            assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
        CalcOutcome::Settled(json) => panic!("settled without registration: {json}"),
    }
    let out = common::run_calc_cli(&case_e().to_string());
    assert_eq!(out.status.code(), Some(3));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["refused"], "registration_required");
}
