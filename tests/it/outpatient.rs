//! Outpatient, chronic-disease and pharmacy settlement and personal accounts
//! (REFERENCE_POLICIES.md §6): the worked examples F–K through the library,
//! `xclear calc` and a settlement between two nodes; the admin requests that
//! grant qualifications and credit accounts; reversals that give the account
//! back; and clearing that owes funds plus account.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};
use xclear::api::envelope::{seal, ADMIN_DOMAIN, HOSPITAL_DOMAIN};
use xclear::api::NodeError;
use xclear::calc::{run_case, CalcOutcome};
use xclear::clock::ManualClock;
use xclear::federation::LocalNetwork;
use xclear::node::records::QualificationRecord;
use xclear::node::Node;
use xclear::proto::{
    hospital_request::Action, qualification_request::Op as QualOp, registration_request::Op, AccountCreditRequest,
    BillItem, HospitalRequest, HospitalResponse, QualificationRequest, RegistrationRequest,
};

/// 2026-03-10 10:00 Asia/Shanghai.
const T0: i64 = 1_773_108_000_000;

use crate::common::fixtures::person;
use crate::common::key;

fn items(list: &[(&str, &str, &str)]) -> Value {
    Value::Array(list.iter().map(|(c, q, p)| json!({"code": c, "qty": q, "price": p})).collect())
}

/// A §6.5 case: treated in Beijing 110105 on 2026-03-10, counters zero,
/// registration `long_term_resident` for 110000 unless changed.
fn case(home: &str, insutype: &str, med_type: &str, level: i64, bill: &[(&str, &str, &str)]) -> Value {
    json!({
        "person": {"psn_no": "P1", "insuplc_admdvs": home, "insutype": insutype},
        "registration": {"kind": "long_term_resident", "target_admdvs": "110000", "begndate": "2026-01-01"},
        "encounter": {"mdtrtarea_admvs": "110105", "hosp_lv": level, "setl_date": "2026-03-10",
                      "med_type": med_type, "items": items(bill)},
        "counters": {"hifp_paid": "0.00", "ci_base": "0.00", "ci_paid": "0.00", "maf_paid": "0.00"}
    })
}

fn case_f() -> Value {
    case("611000", "390", "11", 2, &[("XA001", "1", "300.00"), ("XB001", "2", "100.00"), ("XC001", "1", "50.00")])
}

fn case_f2() -> Value {
    let mut c = case_f();
    c["counters"]["op_paid"] = json!("700.00");
    c
}

fn case_g() -> Value {
    let mut c = case("440600", "310", "11", 3, &[("XA001", "1", "1200.00"), ("XB002", "1", "900.00")]);
    c["person"]["retired"] = json!(true);
    c["person"]["contribution_years"] = json!({"440600": 25});
    c["person"]["acct_balance"] = json!("1000.00");
    c["registration"]["kind"] = json!("resettled_retiree");
    c["encounter"]["acct_used_flag"] = json!(true);
    c
}

fn case_h() -> Value {
    let mut c = case("654000", "390", "14", 3, &[("XA001", "1", "6000.00")]);
    c["person"]["special_group"] = json!("di_bao");
    c["person"]["chronic"] = json!([{"dise_codg": "M07800", "begndate": "2026-01-01"}]);
    c["encounter"]["dise_codg"] = json!("M07800");
    c
}

fn case_i() -> Value {
    let mut c = case("654000", "310", "41", 0, &[("XA002", "1", "180.00"), ("XB001", "1", "100.00")]);
    c["person"]["acct_balance"] = json!("500.00");
    c["encounter"]["acct_used_flag"] = json!(true);
    c
}

fn case_j() -> Value {
    let mut c = case("330100", "390", "13", 3, &[("XA001", "1", "1000.00")]);
    c["registration"] = Value::Null;
    c
}

fn case_k() -> Value {
    let mut c = case("654000", "390", "14", 3, &[("XA001", "1", "6000.00")]);
    c["encounter"]["dise_codg"] = json!("M07800");
    c
}

/// The case through the library and through `xclear calc`, which must agree.
fn calc(case: &Value) -> (Value, i32) {
    let (lib, code) = match run_case(&common::rules(), &case.to_string()).expect("valid case") {
        CalcOutcome::Settled(j) => (serde_json::from_str::<Value>(&j).expect("json"), 0),
        CalcOutcome::Refused(j) => (serde_json::from_str::<Value>(&j).expect("json"), 3),
    };
    let out = common::run_calc_cli(&case.to_string());
    assert_eq!(out.status.code(), Some(code), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let cli: Value = serde_json::from_slice(&out.stdout).expect("json on stdout");
    assert_eq!(lib, cli, "library and CLI disagree");
    (lib, code)
}

fn expect(out: &Value, fields: &[(&str, &str)]) {
    for (k, v) in fields {
        assert_eq!(out[*k], json!(v), "{k} in {out}");
    }
}

#[test]
fn example_f_general_outpatient() {
    let (out, _) = calc(&case_f());
    expect(
        &out,
        &[
            ("med_type", "11"),
            ("inscp_scp_amt", "480.00"),
            ("preselfpay_amt", "20.00"),
            ("pool_prop", "0.50"),
            ("hifp_pay", "240.00"),
            ("hifmi_pay", "0.00"),
            ("maf_pay", "0.00"),
            ("psn_part_amt", "310.00"),
            ("acct_pay", "0.00"),
            ("psn_cash_pay", "310.00"),
        ],
    );
    assert_eq!(out["counters_after"]["op_paid"], "240.00");
    assert_eq!(out["counters_after"]["hifp_paid"], "0.00", "outpatient pooling leaves the stays' counter");
    assert_eq!(out["counters_after"]["ci_base"], "0.00");
}

#[test]
fn example_f2_outpatient_cap() {
    let (out, _) = calc(&case_f2());
    expect(&out, &[("hifp_pay", "100.00")]);
    assert_eq!(out["counters_after"]["op_paid"], "800.00");
}

#[test]
fn example_g_employee_account() {
    let (out, _) = calc(&case_g());
    expect(
        &out,
        &[
            ("overlmt_selfpay", "100.00"),
            ("preselfpay_amt", "80.00"),
            ("inscp_scp_amt", "1920.00"),
            ("act_pay_dedc", "500.00"),
            ("pool_prop", "0.63"),
            ("hifp_pay", "894.60"),
            ("psn_part_amt", "1205.40"),
            ("acct_pay", "1000.00"),
            ("psn_cash_pay", "205.40"),
            ("balc", "0.00"),
        ],
    );
    assert_eq!(out["counters_after"]["op_dedc_used"], "500.00");
}

#[test]
fn example_h_chronic_disease_with_assistance() {
    let (out, _) = calc(&case_h());
    expect(
        &out,
        &[
            ("med_type", "14"),
            ("pool_prop", "0.90"),
            ("hifp_pay", "5400.00"),
            ("hifmi_pay", "0.00"),
            ("maf_pay", "420.00"),
            ("psn_part_amt", "180.00"),
        ],
    );
    assert_eq!(out["counters_after"]["chronic_paid"], json!({"M07800": "5400.00"}));
    assert_eq!(out["counters_after"]["hifp_paid"], "5400.00");
    assert_eq!(out["counters_after"]["ci_base"], "600.00");
}

#[test]
fn example_i_pharmacy_from_the_account() {
    let (out, _) = calc(&case_i());
    expect(
        &out,
        &[
            ("med_type", "41"),
            ("fund_pay_sumamt", "0.00"),
            ("pool_prop", "0.00"),
            ("acct_pay", "280.00"),
            ("psn_cash_pay", "0.00"),
            ("balc", "220.00"),
        ],
    );
}

#[test]
fn example_j_emergency_outpatient_without_registration() {
    let (out, _) = calc(&case_j());
    expect(&out, &[("act_pay_dedc", "300.00"), ("pool_prop", "0.35"), ("hifp_pay", "245.00")]);
    assert_eq!(out["counters_after"]["op_dedc_used"], "300.00");
}

#[test]
fn example_k_chronic_without_qualification_is_refused() {
    let (out, code) = calc(&case_k());
    assert_eq!(code, 3);
    assert_eq!(out["refused"], "chronic_not_qualified");
}

#[test]
fn bad_input_names_the_field() {
    let cases = [
        (json!({"med_type": "12"}), "encounter.med_type"),
        (json!({"med_type": "14"}), "encounter.dise_codg"),
        (json!({"med_type": "14", "dise_codg": "M0-78"}), "encounter.dise_codg"),
    ];
    for (patch, field) in cases {
        let mut c = case_f();
        for (k, v) in patch.as_object().expect("object") {
            c["encounter"][k] = v.clone();
        }
        let out = common::run_calc_cli(&c.to_string());
        assert_eq!(out.status.code(), Some(2), "{patch}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(field),
            "{patch}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut c = case_h();
    c["person"]["chronic"] = json!([{"dise_codg": "M07800", "begndate": "2026-13-01"}]);
    let out = common::run_calc_cli(&c.to_string());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("person.chronic[0].begndate"));
    let mut c = case_g();
    c["person"]["acct_balance"] = json!("-1.00");
    assert_eq!(common::run_calc_cli(&c.to_string()).status.code(), Some(2));
}

// ---- two nodes ----

struct Fed {
    _dir: tempfile::TempDir,
    nodes: BTreeMap<&'static str, Arc<Node>>,
}

const REGIONS: [&str; 5] = ["110000", "611000", "440600", "654000", "330100"];

fn federation() -> Fed {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = LocalNetwork::new();
    let clock = Arc::new(ManualClock::new(T0));
    let nodes = common::in_process_nodes(dir.path(), &REGIONS, clock, &net);
    Fed { _dir: dir, nodes }
}

async fn register(node: &Arc<Node>, psn: &str, kind: &str) {
    let req = RegistrationRequest {
        msgid: format!("reg-{psn}"),
        op: Op::Create as i32,
        psn_no: psn.into(),
        kind: kind.into(),
        target_admdvs: "110000".into(),
        begndate: "2026-01-01".into(),
        ..Default::default()
    };
    node.apply_registration(seal(&key("agency"), ADMIN_DOMAIN, "agency", &req)).await.expect("register");
}

fn bill(list: &[(&str, &str, &str)]) -> Vec<BillItem> {
    list.iter().map(|(c, q, p)| BillItem { code: c.to_string(), qty: q.to_string(), price: p.to_string() }).collect()
}

async fn visit(
    f: &Fed,
    institution: &str,
    msgid: &str,
    (psn, home): (&str, &str),
    med_type: &str,
    list: &[(&str, &str, &str)],
    edit: impl FnOnce(&mut HospitalRequest),
) -> Result<HospitalResponse, NodeError> {
    let mut req = HospitalRequest {
        fixmedins_code: institution.into(),
        msgid: msgid.into(),
        action: Action::Settle as i32,
        psn_no: psn.into(),
        insuplc_admdvs: home.into(),
        setl_date: "2026-03-10".into(),
        items: bill(list),
        med_type: med_type.into(),
        ..Default::default()
    };
    edit(&mut req);
    f.nodes["110000"].handle_hospital(seal(&key(institution), HOSPITAL_DOMAIN, institution, &req)).await
}

/// The hospital's figures agree with `xclear calc` on every field calc prints.
fn same_as_calc(r: &HospitalResponse, calc: &Value) {
    assert!(r.settled, "{r:?}");
    let f = r.figures.as_ref().expect("figures");
    let wire = json!({
        "route": f.route, "med_type": f.med_type, "medfee_sumamt": f.medfee_sumamt,
        "fulamt_ownpay_amt": f.fulamt_ownpay_amt, "overlmt_selfpay": f.overlmt_selfpay,
        "preselfpay_amt": f.preselfpay_amt, "inscp_scp_amt": f.inscp_scp_amt, "act_pay_dedc": f.act_pay_dedc,
        "pool_prop": f.pool_prop, "hifp_pay": f.hifp_pay, "hifmi_pay": f.hifmi_pay, "hifob_pay": f.hifob_pay,
        "maf_pay": f.maf_pay, "fund_pay_sumamt": f.fund_pay_sumamt, "psn_part_amt": f.psn_part_amt,
        "acct_pay": f.acct_pay, "psn_cash_pay": f.psn_cash_pay, "balc": f.balc,
    });
    for (k, v) in wire.as_object().expect("object") {
        assert_eq!(&calc[k], v, "{k}: calc {} node {}", calc[k], v);
    }
}

#[tokio::test]
async fn examples_f_to_k_settle_between_two_nodes_as_calc_computes() {
    let f = federation();
    let n = |r: &str| Arc::clone(&f.nodes[r]);
    n("611000").import_persons(&[person("F1", "611000", "390")]).await.expect("import");
    register(&n("611000"), "F1", "long_term_resident").await;
    let mut g = person("G1", "440600", "310");
    g.retired = true;
    g.contribution_years = [("440600".to_string(), 25)].into_iter().collect();
    g.acct_balance = Some("1000.00".into());
    n("440600").import_persons(&[g]).await.expect("import");
    register(&n("440600"), "G1", "resettled_retiree").await;
    let mut h = person("H1", "654000", "390");
    h.special_group = Some(xclear::rules::SpecialGroup::DiBao);
    h.chronic = vec![QualificationRecord { dise_codg: "M07800".into(), begndate: "2026-01-01".into(), enddate: None }];
    let mut i = person("I1", "654000", "310");
    i.acct_balance = Some("500.00".into());
    n("654000").import_persons(&[h, i, person("K1", "654000", "390")]).await.expect("import");
    for p in ["H1", "I1", "K1"] {
        register(&n("654000"), p, "long_term_resident").await;
    }
    n("330100").import_persons(&[person("J1", "330100", "390")]).await.expect("import");

    let (bj2, bj3, pharmacy) = ("H110000-2", "H110000", "P110000");
    let f_bill = [("XA001", "1", "300.00"), ("XB001", "2", "100.00"), ("XC001", "1", "50.00")];
    same_as_calc(&visit(&f, bj2, "f", ("F1", "611000"), "11", &f_bill, |_| {}).await.expect("F"), &calc(&case_f()).0);
    let g_bill = [("XA001", "1", "1200.00"), ("XB002", "1", "900.00")];
    let acct = |r: &mut HospitalRequest| r.acct_used_flag = true;
    let g_answer = visit(&f, bj3, "g", ("G1", "440600"), "11", &g_bill, acct).await.expect("G");
    same_as_calc(&g_answer, &calc(&case_g()).0);
    let h_bill = [("XA001", "1", "6000.00")];
    let chronic = |r: &mut HospitalRequest| r.dise_codg = "M07800".into();
    same_as_calc(&visit(&f, bj3, "h", ("H1", "654000"), "14", &h_bill, chronic).await.expect("H"), &calc(&case_h()).0);
    let i_bill = [("XA002", "1", "180.00"), ("XB001", "1", "100.00")];
    same_as_calc(
        &visit(&f, pharmacy, "i", ("I1", "654000"), "41", &i_bill, acct).await.expect("I"),
        &calc(&case_i()).0,
    );
    let j_bill = [("XA001", "1", "1000.00")];
    same_as_calc(&visit(&f, bj3, "j", ("J1", "330100"), "13", &j_bill, |_| {}).await.expect("J"), &calc(&case_j()).0);
    let k = visit(&f, bj3, "k", ("K1", "654000"), "14", &h_bill, chronic).await.expect("K answered");
    assert!(!k.settled && k.refusal == "chronic_not_qualified", "{k:?}");

    // The account moved once: a retry answers the same, the balance stays.
    let again = visit(&f, bj3, "g", ("G1", "440600"), "11", &g_bill, acct).await.expect("G again");
    assert_eq!((again.setl_id, again.figures), (g_answer.setl_id, g_answer.figures));
    assert_eq!(n("440600").person_state("G1").expect("state").acct_balance, "0.00");
    assert_eq!(n("654000").person_state("I1").expect("state").acct_balance, "220.00");
}

#[tokio::test]
async fn a_reversal_gives_the_account_and_the_counters_back_exactly_once() {
    let f = federation();
    let home = Arc::clone(&f.nodes["440600"]);
    let mut g = person("G1", "440600", "310");
    g.acct_balance = Some("1000.00".into());
    home.import_persons(&[g]).await.expect("import");
    register(&home, "G1", "long_term_resident").await;
    let acct = |r: &mut HospitalRequest| r.acct_used_flag = true;
    let list = [("XA001", "1", "1200.00")];
    let s = visit(&f, "H110000", "s1", ("G1", "440600"), "11", &list, acct).await.expect("settle");
    assert!(s.settled);
    let paid = s.figures.as_ref().expect("figures").acct_pay.clone();
    assert_ne!(paid, "0.00");
    let after = home.person_state("G1").expect("state").acct_balance;
    let reverse = |r: &mut HospitalRequest| {
        r.action = Action::Reverse as i32;
        r.reversed_msgid = "s1".into();
        r.items.clear();
    };
    let r = visit(&f, "H110000", "r1", ("G1", "440600"), "11", &list, reverse).await.expect("reverse");
    assert!(r.settled, "{r:?}");
    let rf = r.figures.as_ref().expect("figures");
    assert_eq!(rf.acct_pay, format!("-{paid}"));
    assert_eq!(rf.balc, "1000.00");
    assert_eq!(home.person_state("G1").expect("state").acct_balance, "1000.00");
    assert_ne!(after, "1000.00");
    // A retried reversal does not give it back twice; a second reversal is refused.
    visit(&f, "H110000", "r1", ("G1", "440600"), "11", &list, reverse).await.expect("retry");
    assert_eq!(home.person_state("G1").expect("state").acct_balance, "1000.00");
    let twice = visit(&f, "H110000", "r2", ("G1", "440600"), "11", &list, reverse).await;
    assert!(matches!(&twice, Err(NodeError::HomeRefused("already_reversed", _))), "{twice:?}");
    assert_eq!(home.person_state("G1").expect("state").acct_balance, "1000.00");
    // Another visit can spend the balance again: it was given back.
    let again = visit(&f, "H110000", "s2", ("G1", "440600"), "11", &list, acct).await.expect("settle");
    assert_eq!(again.figures.as_ref().expect("figures").acct_pay, paid);
}

#[tokio::test]
async fn qualifications_and_credits_by_signed_admin_requests() {
    let f = federation();
    let home = Arc::clone(&f.nodes["654000"]);
    home.import_persons(&[person("E1", "654000", "310"), person("R1", "654000", "390")]).await.expect("import");
    register(&home, "E1", "long_term_resident").await;
    let credit = |msgid: &str, psn: &str, amount: &str| {
        let req = AccountCreditRequest {
            msgid: msgid.into(),
            psn_no: psn.into(),
            amount: amount.into(),
            reason: "monthly".into(),
        };
        seal(&key("agency"), ADMIN_DOMAIN, "agency", &req)
    };
    assert_eq!(home.credit_account(credit("c1", "E1", "300.00")).await.expect("credit").acct_balance, "300.00");
    // The same request again is applied once.
    assert_eq!(home.credit_account(credit("c1", "E1", "300.00")).await.expect("again").acct_balance, "300.00");
    // The msgid with another body is refused.
    assert!(matches!(home.credit_account(credit("c1", "E1", "301.00")).await, Err(NodeError::MsgidReused(_))));
    // A resident has no account; a credit must be positive.
    match home.credit_account(credit("c2", "R1", "10.00")).await {
        Err(NodeError::BadRequest { field, .. }) => assert_eq!(field, "psn_no"),
        other => panic!("{other:?}"),
    }
    match home.credit_account(credit("c3", "E1", "0.00")).await {
        Err(NodeError::BadRequest { field, .. }) => assert_eq!(field, "amount"),
        other => panic!("{other:?}"),
    }
    // Someone who is not an admin cannot credit.
    let forged = seal(
        &key("mallory"),
        ADMIN_DOMAIN,
        "agency",
        &AccountCreditRequest { msgid: "c4".into(), psn_no: "E1".into(), amount: "1.00".into(), reason: String::new() },
    );
    assert!(home.credit_account(forged).await.is_err());

    let qualify = |msgid: &str, op: QualOp, beg: &str, end: &str| {
        let req = QualificationRequest {
            msgid: msgid.into(),
            psn_no: "E1".into(),
            op: op as i32,
            dise_codg: "M03900".into(),
            begndate: beg.into(),
            enddate: end.into(),
        };
        seal(&key("agency"), ADMIN_DOMAIN, "agency", &req)
    };
    match home.qualify(qualify("q0", QualOp::Grant, "2026-02-30", "")).await {
        Err(NodeError::BadRequest { field, .. }) => assert_eq!(field, "begndate"),
        other => panic!("{other:?}"),
    }
    let bill = [("XA001", "1", "400.00")];
    let chronic = |r: &mut HospitalRequest| r.dise_codg = "M03900".into();
    let before = visit(&f, "H110000", "v0", ("E1", "654000"), "14", &bill, chronic).await.expect("answered");
    assert_eq!(before.refusal, "chronic_not_qualified");
    let state = home.qualify(qualify("q1", QualOp::Grant, "2026-01-01", "")).await.expect("grant");
    assert_eq!(state.chronic.len(), 1);
    let during = visit(&f, "H110000", "v1", ("E1", "654000"), "14", &bill, chronic).await.expect("answered");
    assert!(during.settled, "{during:?}");
    home.qualify(qualify("q2", QualOp::End, "", "2026-03-09")).await.expect("end");
    let after = visit(&f, "H110000", "v2", ("E1", "654000"), "14", &bill, chronic).await.expect("answered");
    assert_eq!(after.refusal, "chronic_not_qualified");
}

#[tokio::test]
async fn a_pharmacy_only_sells_and_a_hospital_never_does() {
    let f = federation();
    f.nodes["611000"].import_persons(&[person("F1", "611000", "390")]).await.expect("import");
    register(&f.nodes["611000"], "F1", "long_term_resident").await;
    let list = [("XA002", "1", "50.00")];
    for (institution, med_type) in [("P110000", "11"), ("P110000", ""), ("H110000", "41")] {
        match visit(&f, institution, "m", ("F1", "611000"), med_type, &list, |_| {}).await {
            Err(NodeError::BadRequest { field, .. }) => assert_eq!(field, "med_type", "{institution} {med_type}"),
            other => panic!("{institution} {med_type}: {other:?}"),
        }
    }
    match visit(&f, "H110000", "m", ("F1", "611000"), "99", &list, |_| {}).await {
        Err(NodeError::BadRequest { field, .. }) => assert_eq!(field, "med_type"),
        other => panic!("{other:?}"),
    }
    match visit(&f, "H110000", "m", ("F1", "611000"), "14", &list, |_| {}).await {
        Err(NodeError::BadRequest { field, .. }) => assert_eq!(field, "dise_codg"),
        other => panic!("{other:?}"),
    }
    let ok = visit(&f, "P110000", "m2", ("F1", "611000"), "41", &list, |_| {}).await.expect("pharmacy");
    assert!(ok.settled && ok.figures.as_ref().is_some_and(|f| f.fund_pay_sumamt == "0.00"), "{ok:?}");
}

fn credit_env(msgid: &str, psn: &str, amount: &str) -> xclear::proto::Signed {
    let req =
        AccountCreditRequest { msgid: msgid.into(), psn_no: psn.into(), amount: amount.into(), reason: String::new() };
    seal(&key("agency"), ADMIN_DOMAIN, "agency", &req)
}

fn qualify_env(msgid: &str, psn: &str, op: QualOp, dise: &str, beg: &str, end: &str) -> xclear::proto::Signed {
    let req = QualificationRequest {
        msgid: msgid.into(),
        psn_no: psn.into(),
        op: op as i32,
        dise_codg: dise.into(),
        begndate: beg.into(),
        enddate: end.into(),
    };
    seal(&key("agency"), ADMIN_DOMAIN, "agency", &req)
}

/// A person record opens an account's balance; it does not reset one that
/// settlements and credits have moved since, nor drop qualifications
/// granted at run time; restating an earlier record applies it again.
#[tokio::test]
async fn a_person_import_opens_a_balance_but_never_resets_it() {
    let f = federation();
    let home = Arc::clone(&f.nodes["440600"]);
    let mut a = person("G1", "440600", "310");
    a.acct_balance = Some("1000.00".into());
    assert_eq!(home.import_persons(std::slice::from_ref(&a)).await.expect("import"), 1);
    register(&home, "G1", "long_term_resident").await;
    let acct = |r: &mut HospitalRequest| r.acct_used_flag = true;
    let s = visit(&f, "H110000", "s1", ("G1", "440600"), "11", &[("XA001", "1", "1200.00")], acct).await.expect("s");
    let paid = s.figures.as_ref().expect("figures").acct_pay.clone();
    let left = home.person_state("G1").expect("state").acct_balance;
    assert_ne!(left, "1000.00", "paid {paid}");
    home.qualify(qualify_env("q1", "G1", QualOp::Grant, "M01600", "2026-01-01", "")).await.expect("grant");
    // The same record again, and a changed one still stating the opening balance.
    assert_eq!(home.import_persons(std::slice::from_ref(&a)).await.expect("again"), 0);
    let mut b = a.clone();
    b.retired = true;
    assert_eq!(home.import_persons(std::slice::from_ref(&b)).await.expect("changed"), 1);
    let state = home.person_state("G1").expect("state");
    assert_eq!(state.acct_balance, left, "an import moved a balance in use");
    assert_eq!(state.chronic.len(), 1, "an import dropped a qualification granted at run time");
    // A, B, then A again: A holds.
    assert_eq!(home.import_persons(std::slice::from_ref(&a)).await.expect("restated"), 1);
    assert!(!home.read_person("G1").expect("person").retired);
    // A record naming a disease replaces that qualification only.
    let mut c = a.clone();
    c.chronic = vec![QualificationRecord { dise_codg: "M03900".into(), begndate: "2026-02-01".into(), enddate: None }];
    home.import_persons(std::slice::from_ref(&c)).await.expect("with a qualification");
    let codes: Vec<String> = home.person_state("G1").expect("state").chronic.into_iter().map(|q| q.dise_codg).collect();
    assert_eq!(codes, ["M01600", "M03900"]);
}

#[tokio::test]
async fn the_emergency_flag_is_for_stays_only() {
    let f = federation();
    f.nodes["611000"].import_persons(&[person("F1", "611000", "390")]).await.expect("import");
    let list = [("XA002", "1", "50.00")];
    let flag = |r: &mut HospitalRequest| r.emergency = true;
    for (institution, med_type) in [("P110000", "41"), ("H110000", "11"), ("H110000", "13")] {
        match visit(&f, institution, "m", ("F1", "611000"), med_type, &list, flag).await {
            Err(NodeError::BadRequest { field, .. }) => assert_eq!(field, "emergency", "{med_type}"),
            other => panic!("{med_type}: {other:?}"),
        }
    }
    // A stay flagged as an emergency settles without a filing, as before.
    let stay = visit(&f, "H110000", "m2", ("F1", "611000"), "21", &[("XA001", "1", "900.00")], flag).await;
    assert!(stay.expect("stay").settled);
}

#[tokio::test]
async fn ending_a_qualification_cannot_extend_it() {
    let f = federation();
    let home = Arc::clone(&f.nodes["654000"]);
    home.import_persons(&[person("E1", "654000", "310")]).await.expect("import");
    // A disease the home policy does not list cannot be granted.
    match home.qualify(qualify_env("q0", "E1", QualOp::Grant, "M99999", "2026-01-01", "")).await {
        Err(NodeError::BadRequest { field, message }) => {
            assert_eq!(field, "dise_codg");
            assert!(message.contains("M03900"), "lists what is listed: {message}");
        }
        other => panic!("{other:?}"),
    }
    home.qualify(qualify_env("q1", "E1", QualOp::Grant, "M03900", "2026-01-01", "2026-06-30")).await.expect("grant");
    match home.qualify(qualify_env("q2", "E1", QualOp::End, "M03900", "", "2026-12-31")).await {
        Err(NodeError::BadRequest { field, .. }) => assert_eq!(field, "enddate"),
        other => panic!("{other:?}"),
    }
    let state = home.qualify(qualify_env("q3", "E1", QualOp::End, "M03900", "", "2026-03-31")).await.expect("end");
    assert_eq!(state.chronic[0].enddate, "2026-03-31");
    match home.qualify(qualify_env("q4", "E1", QualOp::End, "M01600", "", "2026-03-31")).await {
        Err(NodeError::BadRequest { field, .. }) => assert_eq!(field, "dise_codg"),
        other => panic!("{other:?}"),
    }
}

/// Balances, qualifications and every new counter after settlements,
/// reversals, credits and grants are what a restart rebuilds from the ledger.
#[tokio::test]
async fn a_restart_rebuilds_balances_qualifications_and_counters() {
    let f = federation();
    let home = Arc::clone(&f.nodes["440600"]);
    let mut g = person("G1", "440600", "310");
    g.acct_balance = Some("600.00".into());
    home.import_persons(&[g]).await.expect("import");
    register(&home, "G1", "long_term_resident").await;
    home.credit_account(credit_env("c1", "G1", "250.00")).await.expect("credit");
    home.qualify(qualify_env("q1", "G1", QualOp::Grant, "M01600", "2026-01-01", "")).await.expect("grant");
    let acct = |r: &mut HospitalRequest| r.acct_used_flag = true;
    let chronic = |r: &mut HospitalRequest| {
        r.acct_used_flag = true;
        r.dise_codg = "M01600".into();
    };
    let bill = [("XA001", "1", "700.00")];
    for (institution, msgid, med_type, edit) in [
        ("H110000", "a", "11", acct as fn(&mut HospitalRequest)),
        ("H110000", "b", "14", chronic),
        ("P110000", "c", "41", acct),
    ] {
        let list: &[(&str, &str, &str)] = if med_type == "41" { &[("XA002", "2", "30.00")] } else { &bill };
        let r = visit(&f, institution, msgid, ("G1", "440600"), med_type, list, edit).await.expect("answered");
        assert!(r.settled, "{med_type}: {r:?}");
    }
    let reverse = |r: &mut HospitalRequest| {
        r.action = Action::Reverse as i32;
        r.reversed_msgid = "a".into();
        r.items.clear();
    };
    assert!(visit(&f, "H110000", "ra", ("G1", "440600"), "11", &bill, reverse).await.expect("reversal").settled);
    let counters = home.counters_of("G1", 2026).expect("counters");
    assert!(
        counters.op_paid > xclear::money::Amount::ZERO && counters.chronic_paid.contains_key("M01600"),
        "{counters:?}"
    );
    let state = home.person_state("G1").expect("state");
    let dir = f._dir.path().to_path_buf();
    drop(home);
    drop(f.nodes);
    let net = LocalNetwork::new();
    let reopened = common::in_process_nodes(&dir, &["440600"], Arc::new(ManualClock::new(T0)), &net);
    assert_eq!(reopened["440600"].counters_of("G1", 2026).expect("counters"), counters);
    assert_eq!(reopened["440600"].person_state("G1").expect("state"), state);
}

#[test]
fn a_report_sealed_before_medical_types_clears_as_stays() {
    use xclear::proto::PairReport;
    let legacy = PairReport {
        counterpart: "110000".into(),
        as_treatment: false,
        count: 2,
        medfee_sumamt: "900.00".into(),
        hifp_pay: "500.00".into(),
        hifmi_pay: "0.00".into(),
        hifob_pay: "0.00".into(),
        maf_pay: "0.00".into(),
        fund_pay_sumamt: "500.00".into(),
        ids_root: "00".repeat(32),
        ..Default::default()
    };
    let (_, _, s) = xclear::api::convert::pair_report_from_proto(&legacy).expect("a legacy report reads");
    assert_eq!(s.amounts.by_type.inpatient, s.amounts.owed());
    // A new report whose split does not add up is refused.
    let bad = PairReport { acct_pay: "0.00".into(), outpatient: "100.00".into(), ..legacy };
    assert!(xclear::api::convert::pair_report_from_proto(&bad).is_err());
}
