//! Each rule of REFERENCE_POLICIES.md §1–§3 on a hand-computed case.

use crate::common;

use serde_json::{json, Value};
use xclear::calc::{run_case, CalcOutcome};

enum Out {
    Settled(Value),
    Refused(String),
}

fn run(case: &Value) -> Out {
    match run_case(&common::rules(), &case.to_string()).expect("valid case") {
        CalcOutcome::Settled(j) => Out::Settled(serde_json::from_str(&j).expect("json")),
        CalcOutcome::Refused(j) => {
            let v: Value = serde_json::from_str(&j).expect("json");
            Out::Refused(v["refused"].as_str().expect("reason").to_string())
        }
    }
}

fn settled(case: &Value) -> Value {
    match run(case) {
        Out::Settled(v) => v,
        Out::Refused(r) => panic!("refused {r}: {case}"),
    }
}

fn refused(case: &Value) -> String {
    match run(case) {
        Out::Refused(r) => r,
        Out::Settled(v) => panic!("settled {v}"),
    }
}

fn case(person: Value, registration: Value, treatment: &str, level: u8, items: Value) -> Value {
    json!({
        "person": person,
        "registration": registration,
        "encounter": {"mdtrtarea_admvs": treatment, "hosp_lv": level, "setl_date": "2026-03-10", "items": items},
        "counters": {"hifp_paid": "0.00", "ci_base": "0.00", "ci_paid": "0.00", "maf_paid": "0.00"}
    })
}

fn person(region: &str, insutype: &str) -> Value {
    json!({"psn_no": "P1", "insuplc_admdvs": region, "insutype": insutype, "retired": false, "special_group": null})
}

fn xa(amount: &str) -> Value {
    json!([{"code": "XA001", "qty": "1", "price": amount}])
}

fn reg(kind: &str, target: &str) -> Value {
    json!({"kind": kind, "target_admdvs": target, "begndate": "2026-01-01", "enddate": null})
}

#[test]
fn corps_local_care_needs_no_registration_and_gets_no_reduction() {
    // 兵团第四师 resident in an 伊犁 county hospital, level 2: deductible 400, ratio 78%.
    let c = case(person("660400", "390"), Value::Null, "654002", 2, xa("10000.00"));
    let out = settled(&c);
    assert_eq!(out["route"], "corps_local");
    assert_eq!(out["pool_prop"], "0.78");
    assert_eq!(out["hifp_pay"], "7488.00");
    let with_temp_reg = case(person("660400", "390"), reg("other_temporary", "654000"), "654002", 2, xa("10000.00"));
    assert_eq!(settled(&with_temp_reg)["hifp_pay"], "7488.00", "no reduction on corps–local care");
    // The other way round too.
    let back = case(person("654000", "390"), Value::Null, "660400", 3, xa("10000.00"));
    assert_eq!(settled(&back)["route"], "corps_local");
}

#[test]
fn corps_local_partner_years_count_for_the_retiree_bonus() {
    // 伊犁 employee retiree, level 3 local care: deductible 1000, ratio 85% (+5 with ≥25 years).
    let mut p = person("654000", "310");
    p["retired"] = json!(true);
    p["contribution_years"] = json!({"654000": 15, "660400": 12});
    let out = settled(&case(p.clone(), Value::Null, "654002", 3, xa("20000.00")));
    assert_eq!(out["pool_prop"], "0.90");
    assert_eq!(out["hifp_pay"], "17100.00");
    assert_eq!(out["hifob_pay"], "0.00");
    // Years elsewhere do not count: 15 + (12 in 440600) < 25.
    p["contribution_years"] = json!({"654000": 15, "440600": 12});
    let out = settled(&case(p, Value::Null, "654002", 3, xa("20000.00")));
    assert_eq!(out["pool_prop"], "0.85");
    assert_eq!(out["hifp_pay"], "16150.00");
}

#[test]
fn multiplicative_reduction_for_other_temporary() {
    // 佛山 employee in Beijing level 3 under other_temporary: 87% × 0.8 = 69.6%.
    let mut c = common::example_case();
    c["person"] = person("440600", "310");
    c["registration"]["kind"] = json!("other_temporary");
    let out = settled(&c);
    assert_eq!(out["pool_prop"], "0.696");
    assert_eq!(out["hifp_pay"], "30972.00"); // (45500 − 1000) × 0.696
    assert_eq!(out["hifmi_pay"], "0.00", "employees get hifob, not hifmi");
    // self-pay 14528 → (14528 − 15000)⁺ = 0
    assert_eq!(out["hifob_pay"], "0.00");
}

#[test]
fn employee_critical_illness_is_hifob() {
    let mut c = common::example_case();
    c["person"] = person("440600", "310");
    c["encounter"]["items"] = xa("100000.00");
    let out = settled(&c);
    // hifp (100000 − 1000) × 87% = 86130; self-pay 13870 < 15000 threshold
    assert_eq!(out["hifp_pay"], "86130.00");
    c["counters"]["ci_base"] = json!("10000.00");
    let out = settled(&c);
    // base 10000 → 23870: (23870 − 15000) × 80% = 7096
    assert_eq!(out["hifob_pay"], "7096.00");
    assert_eq!(out["hifmi_pay"], "0.00");
}

#[test]
fn referral_reduces_by_its_points() {
    let mut c = common::example_case();
    c["registration"]["kind"] = json!("referral");
    let out = settled(&c);
    assert_eq!(out["pool_prop"], "0.60");
    assert_eq!(out["hifp_pay"], "27000.00");
}

#[test]
fn hangzhou_assistance_across_provinces_only_when_referred_or_emergency() {
    let mut c = common::example_case();
    c["person"] = person("330100", "390");
    c["person"]["special_group"] = json!("di_bao");
    let long_term = settled(&c);
    assert_eq!(long_term["maf_pay"], "0.00");
    c["registration"]["kind"] = json!("referral");
    let referred = settled(&c);
    assert_ne!(referred["maf_pay"], "0.00");
    // Inside Zhejiang the restriction does not apply.
    c["registration"] = reg("long_term_resident", "330000");
    c["encounter"]["mdtrtarea_admvs"] = json!("330200");
    let intra = settled(&c);
    assert_eq!(intra["route"], "intra_province");
    assert_ne!(intra["maf_pay"], "0.00");
}

#[test]
fn special_group_lifts_the_basic_cap_where_the_policy_says() {
    // 伊犁 resident with the basic cap used; level 3 local: deductible 800, ratio 65%.
    let mut c = case(person("654000", "390"), Value::Null, "654002", 3, xa("10800.00"));
    c["counters"]["hifp_paid"] = json!("150000.00");
    assert_eq!(settled(&c)["hifp_pay"], "0.00");
    c["person"]["special_group"] = json!("di_bao");
    let out = settled(&c);
    assert_eq!(out["pool_prop"], "0.70");
    assert_eq!(out["hifp_pay"], "7000.00");
    // 低保边缘 gets no basic tilt.
    c["person"]["special_group"] = json!("low_income");
    assert_eq!(settled(&c)["hifp_pay"], "0.00");
}

#[test]
fn low_income_gets_assistance_only() {
    let mut c = common::example_case();
    c["person"]["special_group"] = json!("low_income");
    let out = settled(&c);
    assert_eq!(out["hifp_pay"], "31500.00");
    assert_eq!(out["hifmi_pay"], "2400.00");
    assert_eq!(out["maf_pay"], "6960.00"); // (14000 − 2400) × 60%
}

#[test]
fn assistance_limited_by_its_annual_limit() {
    let mut c = common::example_case();
    c["person"]["special_group"] = json!("te_kun");
    c["counters"]["maf_paid"] = json!("58000.00");
    assert_eq!(settled(&c)["maf_pay"], "2000.00");
}

#[test]
fn registration_must_cover_the_area_and_date() {
    let mut c = common::example_case();
    c["registration"]["target_admdvs"] = json!("440000");
    assert_eq!(refused(&c), "registration_target_mismatch");
    let mut c = common::example_case();
    c["registration"]["enddate"] = json!("2026-03-09");
    assert_eq!(refused(&c), "registration_not_in_force");
    let mut c = common::example_case();
    c["registration"]["begndate"] = json!("2026-03-11");
    assert_eq!(refused(&c), "registration_not_in_force");
    // The validity dates are inclusive.
    let mut c = common::example_case();
    c["registration"]["begndate"] = json!("2026-03-10");
    c["registration"]["enddate"] = json!("2026-03-10");
    settled(&c);
    // A county target covers only itself.
    let mut c = common::example_case();
    c["registration"]["target_admdvs"] = json!("110106");
    assert_eq!(refused(&c), "registration_target_mismatch");
}

#[test]
fn emergency_settles_even_with_a_filing_elsewhere() {
    let mut c = common::example_case();
    c["registration"] = reg("emergency", "440000");
    assert_eq!(settled(&c)["pool_prop"], "0.60");
}

#[test]
fn intra_province_care_needs_a_registration() {
    // 商洛 resident in 西安 (610100): intra-province, national base catalogue.
    let c = case(person("611000", "390"), Value::Null, "610100", 2, xa("10000.00"));
    assert_eq!(refused(&c), "registration_required");
    let c = case(person("611000", "390"), reg("resident_worker", "610000"), "610100", 2, xa("10000.00"));
    let out = settled(&c);
    assert_eq!(out["route"], "intra_province");
    assert_eq!(out["hifp_pay"], "7200.00"); // (10000 − 400) × 75%
}

#[test]
fn local_care_ignores_registration() {
    let c = case(person("611000", "390"), Value::Null, "611002", 1, xa("1300.00"));
    let out = settled(&c);
    assert_eq!(out["route"], "local");
    assert_eq!(out["hifp_pay"], "800.00"); // (1300 − 300) × 80%
}

#[test]
fn nothing_in_force_before_the_effective_dates() {
    let mut c = common::example_case();
    c["encounter"]["setl_date"] = json!("2025-12-31");
    c["registration"]["begndate"] = json!("2025-01-01");
    // The treatment side answers first: its catalogue is not in force yet.
    assert_eq!(refused(&c), "catalogue_not_in_force");
    // With a catalogue in force, the home policy is the one missing.
    let dir = tempfile::tempdir().expect("tempdir");
    common::copy_dir(&common::rules_dir(), dir.path());
    let cat = dir.path().join("catalogues/110000.toml");
    let text = std::fs::read_to_string(&cat).expect("read").replace("2026-01-01", "2025-01-01");
    std::fs::write(&cat, text).expect("write");
    let rules = xclear::rules::RuleBook::load(dir.path()).expect("load");
    match run_case(&rules, &c.to_string()).expect("valid case") {
        CalcOutcome::Refused(j) => assert!(j.contains("policy_not_in_force"), "{j}"),
        CalcOutcome::Settled(j) => panic!("settled {j}"),
    }
}

#[test]
fn deductible_above_the_in_scope_amount() {
    let c = case(person("611000", "390"), Value::Null, "611002", 3, xa("320.00"));
    let out = settled(&c);
    assert_eq!(out["act_pay_dedc"], "320.00");
    assert_eq!(out["hifp_pay"], "0.00");
    assert_eq!(out["psn_part_amt"], "320.00");
}

#[test]
fn item_split_rounds_each_part_half_up() {
    // Hangzhou B share 15%; XB002 capped at 800: qty 3 × 800.005 → amount 2400.02 (2400.015 half-up),
    // over cap 0.015 → 0.02, in cap 2400.00, B share 360.00, in scope 2040.00.
    let c = case(
        person("611000", "390"),
        reg("long_term_resident", "330100"),
        "330106",
        3,
        json!([{"code": "XB002", "qty": "3", "price": "800.005"}]),
    );
    let out = settled(&c);
    assert_eq!(out["medfee_sumamt"], "2400.02");
    assert_eq!(out["overlmt_selfpay"], "0.02");
    assert_eq!(out["preselfpay_amt"], "360.00");
    assert_eq!(out["inscp_scp_amt"], "2040.00");
}

#[test]
fn unknown_item_code_is_self_paid() {
    let c = case(
        person("611000", "390"),
        Value::Null,
        "611002",
        1,
        json!([{"code": "ZZ999", "qty": "2", "price": "10.00"}]),
    );
    let out = settled(&c);
    assert_eq!(out["fulamt_ownpay_amt"], "20.00");
    assert_eq!(out["inscp_scp_amt"], "0.00");
}
