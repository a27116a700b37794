//! A federation in one process (in-process transport): settlements end to end
//! agree with `xclear calc`, retries move counters once, reversals restore
//! them, refusals and forgeries record nothing, an unreachable home completes
//! on redrive.

use crate::common;
use crate::common::fixtures::*;

use std::collections::BTreeMap;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use xclear::api::envelope::{seal, ADMIN_DOMAIN, CLAIM_DOMAIN, HOSPITAL_DOMAIN};
use xclear::api::NodeError;
use xclear::clock::ManualClock;
use xclear::federation::LocalNetwork;
use xclear::node::Node;
use xclear::proto::{
    hospital_request::Action, registration_request::Op, BillItem, HospitalRequest, RegistrationRequest,
};
use xclear::region::RegionCode;

/// Polls `call` by hand until `ledger` has grown, then drops it before it
/// runs on: as when the caller times out or its connection closes while
/// the commit waits for its fdatasync.
async fn drop_once_durable<T>(ledger: &xclear::ledger::Ledger, call: impl std::future::Future<Output = T>) {
    drop_once_grown(ledger, 1, call).await
}

/// As [`drop_once_durable`], once `entries` of the call's entries are durable.
async fn drop_once_grown<T>(ledger: &xclear::ledger::Ledger, entries: u64, call: impl std::future::Future<Output = T>) {
    let len = ledger.len() + entries - 1;
    let mut call = std::pin::pin!(call);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    for _ in 0..5_000 {
        // Polled before the ledger is looked at: a call that has answered
        // must find its entries durable (the writer publishes them before it
        // answers). Looking first would race a commit landing in between.
        if call.as_mut().poll(&mut cx).is_ready() {
            // Rare: the commit and the answer both came within one wait, so
            // the call could not be dropped in between this time.
            assert!(ledger.len() > len, "the call answered before its entries were durable");
            return;
        }
        if ledger.len() > len {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    assert!(ledger.len() > len, "the call reached the ledger");
}

fn calc_example_a() -> serde_json::Value {
    match xclear::calc::run_case(&common::rules(), &common::example_case().to_string()).expect("case") {
        xclear::calc::CalcOutcome::Settled(j) => serde_json::from_str(&j).expect("json"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn worked_example_a_end_to_end_matches_calc_and_moves_counters_once() {
    let f = federation();
    shangluo_patient(&f).await;
    let (bj, home) = (&f.nodes["110000"], &f.nodes["611000"]);
    let req = request(BJ_HOSPITAL, "m1", Action::Settle, "P0001", "611000", example_items());
    let r = submit(bj, &req).await.expect("settled");
    assert!(r.settled, "{r:?}");
    assert_eq!(r.month, "2026-03");
    let figs = r.figures.clone().expect("figures");
    let calc = calc_example_a();
    for (name, value) in [
        ("route", &figs.route),
        ("medfee_sumamt", &figs.medfee_sumamt),
        ("inscp_scp_amt", &figs.inscp_scp_amt),
        ("hifp_pay", &figs.hifp_pay),
        ("hifmi_pay", &figs.hifmi_pay),
        ("maf_pay", &figs.maf_pay),
        ("fund_pay_sumamt", &figs.fund_pay_sumamt),
        ("psn_part_amt", &figs.psn_part_amt),
        ("pool_prop", &figs.pool_prop),
    ] {
        assert_eq!(calc[name], value.as_str(), "{name}");
    }
    let after = home.counters_of("P0001", 2026).expect("counters");
    assert_eq!(after.hifp_paid.to_string(), "31500.00");
    assert_eq!(after.ci_base.to_string(), "14000.00");

    // Retries with the same msgid return the first outcome and move nothing.
    let (bj_len, home_len) = (bj.ledger().len(), home.ledger().len());
    for i in 0..3 {
        // A retry is the same request, whenever it is sent.
        let mut retry = req.clone();
        retry.sent_at_ms = 1_000 + i;
        let again = submit(bj, &retry).await.expect("retry");
        assert_eq!(again.setl_id, r.setl_id);
        assert_eq!(again.figures, r.figures);
    }
    assert_eq!(home.counters_of("P0001", 2026).expect("counters"), after);
    assert_eq!((bj.ledger().len(), home.ledger().len()), (bj_len, home_len));

    // The same msgid with a different bill is refused.
    let mut changed = req.clone();
    changed.items[3].price = "35501.00".into();
    assert_eq!(submit(bj, &changed).await.expect_err("reused").reason(), "msgid_reused");

    // A reversal restores the counters; a second reversal is refused.
    let mut rev = request(BJ_HOSPITAL, "m2", Action::Reverse, "P0001", "611000", vec![]);
    rev.reversed_msgid = "m1".into();
    let reversed = submit(bj, &rev).await.expect("reversed");
    assert!(reversed.settled);
    assert_eq!(reversed.figures.expect("figures").hifp_pay, "-31500.00");
    assert_eq!(home.counters_of("P0001", 2026).expect("counters"), Default::default());
    let mut rev2 = rev.clone();
    rev2.msgid = "m3".into();
    assert_eq!(submit(bj, &rev2).await.expect_err("twice").reason(), "already_reversed");

    // Both ledgers hold the signed records and verify.
    for n in [bj, home] {
        let head = n.ledger().head();
        assert!(head.verify(&n.ledger().public_key()));
    }
    assert!(bj.ledger().entry_by_key("outcome:H110105001:m1").expect("read").is_some());
}

#[tokio::test]
async fn refusal_records_nothing_at_home() {
    let f = federation();
    let home = &f.nodes["611000"];
    home.import_persons(&[person("P0002", "611000", "390")]).await.expect("import");
    let before = home.ledger().len();
    let req = request(BJ_HOSPITAL, "e1", Action::Settle, "P0002", "611000", example_items());
    let r = submit(&f.nodes["110000"], &req).await.expect("answered");
    assert!(!r.settled);
    assert_eq!(r.refusal, "registration_required");
    assert_eq!(home.ledger().len(), before);
    assert_eq!(home.counters_of("P0002", 2026).expect("counters"), Default::default());
    // An emergency settles without a filing (60% at level 3).
    let mut em = request(BJ_HOSPITAL, "e2", Action::Settle, "P0002", "611000", example_items());
    em.emergency = true;
    let r = submit(&f.nodes["110000"], &em).await.expect("emergency");
    assert!(r.settled);
    assert_eq!(r.figures.expect("figures").hifp_pay, "27000.00");
}

#[tokio::test]
async fn presettlement_commits_nothing() {
    let f = federation();
    shangluo_patient(&f).await;
    let (bj, home) = (&f.nodes["110000"], &f.nodes["611000"]);
    let (bj_len, home_len) = (bj.ledger().len(), home.ledger().len());
    let r = submit(bj, &request(BJ_HOSPITAL, "p1", Action::Presettle, "P0001", "611000", example_items()))
        .await
        .expect("presettle");
    assert!(!r.settled);
    assert_eq!(r.figures.expect("figures").hifp_pay, "31500.00");
    let e = submit(bj, &request(BJ_HOSPITAL, "q1", Action::Eligibility, "P0001", "611000", example_items()))
        .await
        .expect("eligibility");
    assert!(e.eligible);
    // Eligibility needs no bill; a person without a registration for the area is not eligible.
    let e = submit(bj, &request(BJ_HOSPITAL, "q2", Action::Eligibility, "P0001", "611000", Vec::new()))
        .await
        .expect("eligibility without a bill");
    assert!(e.eligible && !e.settled, "{e:?}");
    assert_eq!((bj.ledger().len(), home.ledger().len()), (bj_len, home_len));
    home.import_persons(&[person("P0002", "611000", "390")]).await.expect("import");
    let home_len = home.ledger().len();
    let e = submit(bj, &request(BJ_HOSPITAL, "q3", Action::Eligibility, "P0002", "611000", Vec::new()))
        .await
        .expect("answered");
    assert!(!e.eligible && e.refusal == "registration_required", "{e:?}");
    assert_eq!((bj.ledger().len(), home.ledger().len()), (bj_len, home_len));
    assert_eq!(home.counters_of("P0001", 2026).expect("counters"), Default::default());
}

#[tokio::test]
async fn corps_local_care_needs_no_registration_and_accepts_the_partners_hospital() {
    let f = federation();
    f.nodes["660400"].import_persons(&[person("B0001", "660400", "390")]).await.expect("import");
    // The 伊犁 hospital is not open for cross-region settlement, but is recognised across the pair.
    let items = vec![BillItem { code: "XA001".into(), qty: "1".into(), price: "10000.00".into() }];
    let r = submit(&f.nodes["654000"], &request(YILI_HOSPITAL, "c1", Action::Settle, "B0001", "660400", items.clone()))
        .await
        .expect("settled");
    assert!(r.settled, "{r:?}");
    let figs = r.figures.expect("figures");
    assert_eq!(figs.route, "corps_local");
    assert_eq!(figs.hifp_pay, "7488.00");
    // Beyond the pair it is not designated for out-of-region care.
    f.nodes["611000"].import_persons(&[person("P0003", "611000", "390")]).await.expect("import");
    let e = submit(&f.nodes["654000"], &request(YILI_HOSPITAL, "c2", Action::Settle, "P0003", "611000", items))
        .await
        .expect_err("refused");
    assert_eq!(e.reason(), "hospital_not_designated");
}

#[tokio::test]
async fn unreachable_home_completes_on_redrive_exactly_once() {
    let f = federation();
    shangluo_patient(&f).await;
    let bj = &f.nodes["110000"];
    f.net.detach(code("611000"));
    let req = request(BJ_HOSPITAL, "u1", Action::Settle, "P0001", "611000", example_items());
    assert_eq!(submit(bj, &req).await.expect_err("unreachable").reason(), "home_unreachable");
    assert_eq!(bj.pending_intents(), 1);
    f.net.attach(&f.nodes["611000"]);
    assert_eq!(bj.redrive_intents().await.expect("redrive"), 1);
    assert_eq!(bj.pending_intents(), 0);
    assert_eq!(bj.redrive_intents().await.expect("nothing left"), 0);
    let r = submit(bj, &req).await.expect("answered from the record");
    assert!(r.settled);
    assert_eq!(f.nodes["611000"].counters_of("P0001", 2026).expect("c").hifp_paid.to_string(), "31500.00");
}

#[tokio::test]
async fn security_unsigned_request() {
    let (f, before) = secured().await;
    let req = request(BJ_HOSPITAL, "s1", Action::Settle, "P0001", "611000", example_items());
    let mut env = seal(&hospital_key(BJ_HOSPITAL), HOSPITAL_DOMAIN, BJ_HOSPITAL, &req);
    env.signature.clear();
    assert_eq!(f.nodes["110000"].handle_hospital(env).await.expect_err("unsigned").reason(), "unsigned");
    nothing_recorded(&f, before);
}

#[tokio::test]
async fn security_wrong_hospital_key() {
    let (f, before) = secured().await;
    let req = request(BJ_HOSPITAL, "s1", Action::Settle, "P0001", "611000", example_items());
    let forged = seal(&hospital_key("H000000000"), HOSPITAL_DOMAIN, BJ_HOSPITAL, &req);
    assert_eq!(f.nodes["110000"].handle_hospital(forged).await.expect_err("bad key").reason(), "bad_signature");
    nothing_recorded(&f, before);
}

#[tokio::test]
async fn security_hospital_of_another_region() {
    let (f, before) = secured().await;
    let other = request(YILI_HOSPITAL, "s2", Action::Settle, "P0001", "611000", example_items());
    assert_eq!(submit(&f.nodes["110000"], &other).await.expect_err("elsewhere").reason(), "unknown_hospital");
    nothing_recorded(&f, before);
}

#[tokio::test]
async fn security_undesignated_hospital() {
    let (f, before) = secured().await;
    let undesignated = request("H110105999", "s3", Action::Settle, "P0001", "611000", example_items());
    assert_eq!(
        submit(&f.nodes["110000"], &undesignated).await.expect_err("undesignated").reason(),
        "hospital_not_designated"
    );
    nothing_recorded(&f, before);
}

#[tokio::test]
async fn security_forged_peer_claim() {
    let (f, before) = secured().await;
    // Signed by a key that is not Beijing's, claiming to be Beijing.
    let forged = seal(&node_key("654000"), CLAIM_DOMAIN, "110000", &claim("f1"));
    assert_eq!(f.nodes["611000"].handle_claim(forged).await.expect_err("forged").reason(), "bad_signature");
    // A genuine region claiming for care in another region's area.
    let for_other = seal(&node_key("654000"), CLAIM_DOMAIN, "654000", &claim("f2"));
    assert_eq!(f.nodes["611000"].handle_claim(for_other).await.expect_err("other area").reason(), "not_authorised");
    // A signer that is no peer at all.
    let stranger = seal(&node_key("440600"), CLAIM_DOMAIN, "440600", &claim("f3"));
    assert_eq!(f.nodes["611000"].handle_claim(stranger).await.expect_err("stranger").reason(), "unknown_peer");
    nothing_recorded(&f, before);
}

#[tokio::test]
async fn security_replayed_claim_with_a_changed_amount() {
    let (f, _) = secured().await;
    let home = &f.nodes["611000"];
    let ok = seal(&node_key("110000"), CLAIM_DOMAIN, "110000", &claim("f4"));
    home.handle_claim(ok.clone()).await.expect("genuine claim");
    let (len, counters) = (home.ledger().len(), home.counters_of("P0001", 2026).expect("c"));
    // The exact replay is answered from the record; a changed amount is refused.
    home.handle_claim(ok).await.expect("replay");
    let mut changed = claim("f4");
    changed.inscp_scp_amt = "49000.00".into();
    let replay = seal(&node_key("110000"), CLAIM_DOMAIN, "110000", &changed);
    assert_eq!(home.handle_claim(replay).await.expect_err("replay").reason(), "msgid_reused");
    assert_eq!((home.ledger().len(), home.counters_of("P0001", 2026).expect("c")), (len, counters));
}

/// A reversal names the settlement by the id the home gave it, which carries
/// its ledger key's digest: an id of no settlement here (unknown, misspelt,
/// another region's, a reversal's) is `unknown_settlement` and records
/// nothing; the right one reverses it once.
#[tokio::test]
async fn a_reversal_finds_its_settlement_by_the_id_alone() {
    let (f, _) = secured().await;
    let home = &f.nodes["611000"];
    let settled =
        home.handle_claim(seal(&node_key("110000"), CLAIM_DOMAIN, "110000", &claim("f5"))).await.expect("settled");
    let settled: xclear::proto::ClaimResult = xclear::api::envelope::peek(&settled).expect("result");
    let id = settled.setl_id.clone();
    let reverse = |msgid: &str, setl_id: &str| {
        let c = xclear::proto::Claim {
            action: Action::Reverse as i32,
            reversed_setl_id: setl_id.to_string(),
            ..claim(msgid)
        };
        seal(&node_key("110000"), CLAIM_DOMAIN, "110000", &c)
    };
    let (len, counters) = (home.ledger().len(), home.counters_of("P0001", 2026).expect("c"));
    let unknown = [
        "S6110000123456789abcdef".to_string(),
        id.to_uppercase(),
        id.replacen("611000", "110000", 1),
        id[..id.len() - 1].to_string(),
        "R".to_string() + &id[1..],
    ];
    for (i, wrong) in unknown.iter().filter(|w| **w != id).enumerate() {
        let e = home.handle_claim(reverse(&format!("w{i}"), wrong)).await.expect_err("no such settlement");
        assert_eq!(e.reason(), "unknown_settlement", "{wrong}");
    }
    assert_eq!((home.ledger().len(), home.counters_of("P0001", 2026).expect("c")), (len, counters));
    let reversed = home.handle_claim(reverse("r1", &id)).await.expect("reversed");
    let reversed: xclear::proto::ClaimResult = xclear::api::envelope::peek(&reversed).expect("result");
    assert!(reversed.settled && reversed.setl_id.starts_with("R611000"), "{reversed:?}");
    assert_eq!(home.counters_of("P0001", 2026).expect("c"), Default::default());
    let again = home.handle_claim(reverse("r2", &id)).await.expect_err("once");
    assert_eq!(again.reason(), "already_reversed");
    let of_reversal = home.handle_claim(reverse("r3", &reversed.setl_id)).await.expect_err("a reversal's id");
    assert_eq!(of_reversal.reason(), "unknown_settlement");
}

/// A reversal already in the home's ledger but not yet applied to its state
/// (its apply failed after the append) still makes a second one
/// `already_reversed`: the check catches the state up first.
#[tokio::test]
async fn a_reversal_not_yet_applied_still_refuses_a_second() {
    use xclear::node::records::{to_payload, HomeSettlementEntry};
    let (f, _) = secured().await;
    let home = &f.nodes["611000"];
    home.handle_claim(seal(&node_key("110000"), CLAIM_DOMAIN, "110000", &claim("f6"))).await.expect("settled");
    let key = xclear::node::keys::claim("110000", BJ_HOSPITAL, "f6");
    let entry = home.ledger().entry_by_key(&key).expect("read").expect("the settlement");
    let original: HomeSettlementEntry = serde_json::from_slice(&entry.body.payload).expect("entry");
    let counters = home.counters_of("P0001", 2026).expect("c");
    // The reversal as the node writes it, appended without the state's apply.
    let r_key = xclear::node::keys::claim("110000", BJ_HOSPITAL, "r-direct");
    let reversal = HomeSettlementEntry {
        setl_id: xclear::node::keys::setl_id('R', "611000", &r_key, false),
        delta: original.delta.negated(),
        reversed_setl_id: Some(original.setl_id.clone()),
        ..original.clone()
    };
    home.ledger().append(xclear::ledger::EntryKind::Reversal, &r_key, to_payload(&reversal)).await.expect("append");
    assert_eq!(home.counters_of("P0001", 2026).expect("c"), counters, "not applied yet");
    let c = xclear::proto::Claim {
        action: Action::Reverse as i32,
        reversed_setl_id: original.setl_id.clone(),
        ..claim("r2")
    };
    let e = home.handle_claim(seal(&node_key("110000"), CLAIM_DOMAIN, "110000", &c)).await.expect_err("twice");
    assert_eq!(e.reason(), "already_reversed");
    assert_eq!(home.counters_of("P0001", 2026).expect("c"), Default::default(), "reversed once");
}

#[tokio::test]
async fn security_home_unreachable() {
    let (f, _) = secured().await;
    f.net.detach(code("611000"));
    let home_len = f.nodes["611000"].ledger().len();
    let req = request(BJ_HOSPITAL, "u9", Action::Settle, "P0001", "611000", example_items());
    assert_eq!(submit(&f.nodes["110000"], &req).await.expect_err("unreachable").reason(), "home_unreachable");
    // Only the treatment node's intent is recorded (so it can complete later); nothing at home.
    assert_eq!(f.nodes["611000"].ledger().len(), home_len);
    assert!(f.nodes["110000"].ledger().entry_by_key("intent:H110105001:u9").expect("read").is_some());
    assert!(f.nodes["110000"].ledger().entry_by_key("outcome:H110105001:u9").expect("read").is_none());
}

#[tokio::test]
async fn registrations_expired_or_elsewhere_are_refused() {
    let f = federation();
    let home = &f.nodes["611000"];
    home.import_persons(&[person("P0004", "611000", "390")]).await.expect("import");
    register(home, "r2", "P0004", "long_term_resident", "440000").await.expect("register");
    let bj = &f.nodes["110000"];
    let r = submit(bj, &request(BJ_HOSPITAL, "w1", Action::Settle, "P0004", "611000", example_items()))
        .await
        .expect("answer");
    assert_eq!(r.refusal, "registration_target_mismatch");
    let req = RegistrationRequest {
        msgid: "r3".into(),
        op: Op::Create as i32,
        psn_no: "P0004".into(),
        kind: "other_temporary".into(),
        target_admdvs: "110000".into(),
        begndate: "2026-01-01".into(),
        enddate: "2026-02-28".into(),
        ..Default::default()
    };
    home.apply_registration(seal(&admin_key(), ADMIN_DOMAIN, "agency", &req)).await.expect("filed");
    let r = submit(bj, &request(BJ_HOSPITAL, "w2", Action::Settle, "P0004", "611000", example_items()))
        .await
        .expect("answer");
    assert_eq!(r.refusal, "registration_not_in_force");
    assert_eq!(home.counters_of("P0004", 2026).expect("c"), Default::default());
    // Registrations are only filed by the node's admins, inside the rules.
    let stranger = seal(&SigningKey::from_bytes(&[6u8; 32]), ADMIN_DOMAIN, "agency", &req);
    assert_eq!(home.apply_registration(stranger).await.expect_err("forged").reason(), "bad_signature");
    let mut local = req.clone();
    local.msgid = "r4".into();
    local.target_admdvs = "611002".into();
    let e = home.apply_registration(seal(&admin_key(), ADMIN_DOMAIN, "agency", &local)).await.expect_err("local");
    assert_eq!(e.reason(), "bad_request");
    // The home province is a valid target for intra-province care.
    register(home, "r7", "P0004", "resident_worker", "610000").await.expect("province target");
    // A change before the holding period is refused.
    let reg_id = register(home, "r5", "P0004", "resettled_retiree", "330000").await.expect("filed");
    let cancel = RegistrationRequest {
        msgid: "r6".into(),
        op: Op::Cancel as i32,
        psn_no: "P0004".into(),
        reg_id,
        on_date: "2026-03-01".into(),
        ..Default::default()
    };
    let e = home.apply_registration(seal(&admin_key(), ADMIN_DOMAIN, "agency", &cancel)).await.expect_err("too soon");
    assert_eq!(e.reason(), "holding_period");
}

#[tokio::test]
async fn state_is_rebuilt_from_the_ledger_on_restart() {
    let f = federation();
    shangluo_patient(&f).await;
    let r = submit(&f.nodes["110000"], &request(BJ_HOSPITAL, "k1", Action::Settle, "P0001", "611000", example_items()))
        .await
        .expect("settled");
    assert!(r.settled);
    let dir = f._dir.path().to_path_buf();
    let before = f.nodes["611000"].counters_of("P0001", 2026).expect("c");
    let Federation { nodes, net, clock, _dir } = f;
    drop(nodes);
    let reopened = open_node("611000", &dir, &net, &clock);
    assert_eq!(reopened.counters_of("P0001", 2026).expect("c"), before);
    assert_eq!(reopened.registrations_of("P0001").expect("regs").len(), 1);
    drop(_dir);
}

/// Every worked example of REFERENCE_POLICIES.md §4, settled end to end,
/// gives the figures of `xclear calc`.
#[tokio::test]
async fn every_worked_example_end_to_end_equals_calc() {
    use serde_json::{json, Value};
    let f = federation();
    let (bj, home) = (&f.nodes["110000"], &f.nodes["611000"]);
    let mut te_kun = person("PC", "611000", "390");
    te_kun.special_group = Some(xclear::rules::SpecialGroup::TeKun);
    home.import_persons(&[
        person("PA", "611000", "390"),
        person("PB", "611000", "390"),
        person("PB2", "611000", "390"),
        te_kun,
        person("PD", "611000", "390"),
        person("PE", "611000", "390"),
    ])
    .await
    .expect("import");
    for p in ["PA", "PC", "PD"] {
        register(home, &format!("r-{p}"), p, "long_term_resident", "110000").await.expect("register");
    }
    let temp = RegistrationRequest {
        msgid: "r-PB".into(),
        op: Op::Create as i32,
        psn_no: "PB".into(),
        kind: "other_temporary".into(),
        target_admdvs: "110000".into(),
        begndate: "2026-01-01".into(),
        enddate: "2026-12-31".into(),
        ..Default::default()
    };
    home.apply_registration(seal(&admin_key(), ADMIN_DOMAIN, "agency", &temp)).await.expect("temporary");
    let big = vec![BillItem { code: "XA001".into(), qty: "1".into(), price: "300000.00".into() }];
    let calc = |case: Value| match xclear::calc::run_case(&common::rules(), &case.to_string()).expect("case") {
        xclear::calc::CalcOutcome::Settled(j) => serde_json::from_str::<Value>(&j).expect("json"),
        xclear::calc::CalcOutcome::Refused(j) => serde_json::from_str::<Value>(&j).expect("json"),
    };
    let base = common::example_case();
    let with = |path: &[&str], v: Value| {
        let mut c = base.clone();
        let mut slot = &mut c;
        for k in path {
            slot = &mut slot[*k];
        }
        *slot = v;
        c
    };
    let d_case = with(&["encounter", "items"], json!([{"code": "XA001", "qty": "1", "price": "300000.00"}]));
    let mut d2_case = d_case.clone();
    d2_case["counters"] =
        json!({"hifp_paid": "130000.00", "ci_base": "170000.00", "ci_paid": "117000.00", "maf_paid": "0.00"});
    let cases: Vec<(&str, &str, Vec<BillItem>, bool, Value)> = vec![
        ("A", "PA", example_items(), false, base.clone()),
        ("B", "PB", example_items(), false, with(&["registration", "kind"], json!("other_temporary"))),
        ("B2", "PB2", example_items(), true, with(&["registration"], json!({"kind": "emergency"}))),
        ("C", "PC", example_items(), false, with(&["person", "special_group"], json!("te_kun"))),
        ("D", "PD", big.clone(), false, d_case),
        ("D2", "PD", big, false, d2_case),
        ("E", "PE", example_items(), false, with(&["registration"], Value::Null)),
    ];
    for (name, psn, items, emergency, case) in cases {
        let mut req = request(BJ_HOSPITAL, &format!("we-{name}"), Action::Settle, psn, "611000", items);
        req.emergency = emergency;
        let r = submit(bj, &req).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = calc(case);
        if let Some(reason) = expected.get("refused") {
            assert!(!r.settled, "{name}");
            assert_eq!(r.refusal, reason.as_str().expect("reason"), "{name}");
            continue;
        }
        assert!(r.settled, "{name}: {r:?}");
        let f = r.figures.expect("figures");
        for (k, v) in [
            ("hifp_pay", &f.hifp_pay),
            ("hifmi_pay", &f.hifmi_pay),
            ("maf_pay", &f.maf_pay),
            ("fund_pay_sumamt", &f.fund_pay_sumamt),
            ("psn_part_amt", &f.psn_part_amt),
            ("pool_prop", &f.pool_prop),
        ] {
            assert_eq!(expected[k], v.as_str(), "{name} {k}");
        }
    }
    // Both ledgers hold the signed settlement: the treatment outcome carries the
    // home node's result, whose signature verifies with the home key.
    let outcome = bj.ledger().entry_by_key("outcome:H110105001:we-A").expect("read").expect("outcome");
    let rec: xclear::node::records::OutcomeEntry = serde_json::from_slice(&outcome.body.payload).expect("outcome");
    let result_env = rec.result.to_signed().expect("envelope");
    let result: xclear::proto::ClaimResult = xclear::api::envelope::open(
        &result_env,
        &node_key("611000").verifying_key(),
        xclear::api::envelope::CLAIM_RESULT_DOMAIN,
    )
    .expect("home signature");
    assert_eq!(result.msgid, "we-A");
    assert!(home.ledger().entry_by_key("claim:110000:H110105001:we-A").expect("read").is_some());
    let dirs: Vec<_> = [bj, home].iter().map(|n| n.ledger().dir().to_path_buf()).collect();
    let Federation { _dir, nodes, .. } = f;
    drop(nodes); // closes the ledgers
    for d in dirs {
        xclear::ledger::verify::verify_dir(&d, None).expect("ledger verifies");
    }
    drop(_dir);
}

/// 兵地融合: contribution years paid in the partner count for the retiree bonus;
/// the home node asks the partner for them.
#[tokio::test]
async fn corps_local_partner_years_are_fetched_for_the_retiree_bonus() {
    let f = federation();
    let mut retiree = person("R1", "654000", "310");
    retiree.retired = true;
    retiree.contribution_years = [("654000".to_string(), 15u32)].into_iter().collect();
    f.nodes["654000"].import_persons(&[retiree]).await.expect("import");
    let items = vec![BillItem { code: "XA001".into(), qty: "1".into(), price: "20000.00".into() }];
    // Without the partner's record: 15 years < 25, no bonus: (20000 - 1000) × 85%.
    let r =
        submit(&f.nodes["660400"], &request(CORPS_HOSPITAL, "y1", Action::Presettle, "R1", "654000", items.clone()))
            .await
            .expect("presettle");
    assert_eq!(r.figures.expect("figures").hifp_pay, "16150.00");
    // The partner knows 12 more years: 27 ≥ 25, +5 points.
    let mut there = person("R1", "660400", "310");
    there.contribution_years = [("660400".to_string(), 12u32)].into_iter().collect();
    f.nodes["660400"].import_persons(&[there]).await.expect("import at partner");
    let r = submit(&f.nodes["660400"], &request(CORPS_HOSPITAL, "y2", Action::Settle, "R1", "654000", items))
        .await
        .expect("settle");
    let figs = r.figures.expect("figures");
    assert_eq!(figs.route, "corps_local");
    assert_eq!(figs.pool_prop, "0.90");
    assert_eq!(figs.hifp_pay, "17100.00");
}

/// A network on which every claim takes a second (the clock moves).
struct Ticking {
    inner: Arc<LocalNetwork>,
    clock: Arc<ManualClock>,
}

impl xclear::node::PeerTransport for Ticking {
    fn submit_claim(
        &self,
        to: RegionCode,
        claim: xclear::proto::Signed,
    ) -> xclear::node::BoxFuture<'_, Result<xclear::proto::Signed, xclear::node::TransportError>> {
        self.clock.advance(1000);
        self.inner.submit_claim(to, claim)
    }

    fn contribution_years(
        &self,
        to: RegionCode,
        query: xclear::proto::Signed,
    ) -> xclear::node::BoxFuture<'_, Result<BTreeMap<String, u32>, xclear::node::TransportError>> {
        self.inner.contribution_years(to, query)
    }
}

/// Found by the simulation (seed 2): two copies of a request the home node
/// refuses, in flight at once, get refusals computed a second apart; the
/// second could not be recorded and the hospital was told `msgid_reused`.
/// Both copies now get the answer that was recorded first.
#[tokio::test(flavor = "current_thread")]
async fn concurrent_copies_of_a_refused_request_get_the_recorded_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = LocalNetwork::new();
    let clock = Arc::new(ManualClock::new(T0));
    let ticking = Arc::new(Ticking { inner: Arc::clone(&net), clock: Arc::clone(&clock) });
    let nodes: BTreeMap<_, _> = ["611000", "110000"]
        .into_iter()
        .map(|r| (r, open_via(r, dir.path(), &net, ticking.clone(), &clock, |n| n)))
        .collect();
    nodes["611000"].import_persons(&[person("P0009", "611000", "390")]).await.expect("import");
    let req = request(BJ_HOSPITAL, "dup-refused", Action::Settle, "P0009", "611000", example_items());
    let env = seal(&hospital_key(BJ_HOSPITAL), HOSPITAL_DOMAIN, BJ_HOSPITAL, &req);
    let bj = &nodes["110000"];
    let (a, b, c) =
        tokio::join!(bj.handle_hospital(env.clone()), bj.handle_hospital(env.clone()), bj.handle_hospital(env.clone()));
    let (a, b, c) = (a.expect("first copy"), b.expect("second copy"), c.expect("third copy"));
    assert_eq!(a.refusal, "registration_required");
    assert_eq!(a, b);
    assert_eq!(a, c);
    // And a later retry gets the same recorded answer.
    assert_eq!(bj.handle_hospital(env).await.expect("retry"), a);
}

/// A network that holds every claim until let through, counting arrivals.
struct Gated {
    inner: Arc<LocalNetwork>,
    gate: Arc<tokio::sync::Semaphore>,
    arrived: Arc<std::sync::atomic::AtomicUsize>,
}

impl xclear::node::PeerTransport for Gated {
    fn submit_claim(
        &self,
        to: RegionCode,
        claim: xclear::proto::Signed,
    ) -> xclear::node::BoxFuture<'_, Result<xclear::proto::Signed, xclear::node::TransportError>> {
        Box::pin(async move {
            self.arrived.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _pass =
                self.gate.acquire().await.map_err(|e| xclear::node::TransportError::Unreachable(e.to_string()))?;
            self.inner.submit_claim(to, claim).await
        })
    }

    fn contribution_years(
        &self,
        to: RegionCode,
        query: xclear::proto::Signed,
    ) -> xclear::node::BoxFuture<'_, Result<BTreeMap<String, u32>, xclear::node::TransportError>> {
        self.inner.contribution_years(to, query)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_requests_in_flight_per_hospital() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = LocalNetwork::new();
    let clock = Arc::new(ManualClock::new(T0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let arrived = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let gated = Arc::new(Gated { inner: Arc::clone(&net), gate: Arc::clone(&gate), arrived: Arc::clone(&arrived) });
    let limits = xclear::node::Limits { hospital_in_flight: 2, ..Default::default() };
    let nodes: BTreeMap<_, _> = ["611000", "110000"]
        .into_iter()
        .map(|r| (r, open_via(r, dir.path(), &net, gated.clone(), &clock, |n| n.with_limits(limits))))
        .collect();
    let home = Arc::clone(&nodes["611000"]);
    home.import_persons(&[person("P0001", "611000", "390")]).await.expect("import");
    register(&home, "r1", "P0001", "long_term_resident", "110000").await.expect("register");
    let bj = Arc::clone(&nodes["110000"]);
    let held: Vec<_> = ["q1", "q2"]
        .iter()
        .map(|m| {
            let bj = Arc::clone(&bj);
            let req = request(BJ_HOSPITAL, m, Action::Settle, "P0001", "611000", example_items());
            tokio::spawn(async move { submit(&bj, &req).await })
        })
        .collect();
    for _ in 0..2000 {
        if arrived.load(std::sync::atomic::Ordering::SeqCst) >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(arrived.load(std::sync::atomic::Ordering::SeqCst), 2, "two requests held at the gate");
    // A third from the same hospital is refused at once, clearly.
    let third = request(BJ_HOSPITAL, "q3", Action::Settle, "P0001", "611000", example_items());
    match submit(&bj, &third).await {
        Err(e @ NodeError::Overloaded(_)) => {
            assert_eq!(e.reason(), "overloaded");
            assert!(e.to_string().contains("in flight (limit 2)"), "{e}");
        }
        other => panic!("expected overloaded, got {other:?}"),
    }
    // Let them through: both settle, and the hospital's slots are free again.
    gate.add_permits(1000);
    for h in held {
        assert!(h.await.expect("task").expect("settled").settled);
    }
    assert!(submit(&bj, &third).await.expect("now accepted").settled);
}

/// 商洛 (home, P0001 registered in Beijing) and Beijing, in one process,
/// Beijing allowing `pending_intents` settlements to await their home.
async fn limited_pair(
    pending_intents: usize,
) -> (tempfile::TempDir, Arc<LocalNetwork>, Arc<ManualClock>, Arc<Node>, Arc<Node>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = LocalNetwork::new();
    let clock = Arc::new(ManualClock::new(T0));
    let limits = xclear::node::Limits { pending_intents, ..Default::default() };
    let tune = |n: Node| n.with_limits(limits).with_claim_backoff(std::time::Duration::ZERO);
    let nodes: BTreeMap<_, _> = ["611000", "110000"]
        .into_iter()
        .map(|r| (r, open_via(r, dir.path(), &net, net.clone(), &clock, tune)))
        .collect();
    let (home, bj) = (Arc::clone(&nodes["611000"]), Arc::clone(&nodes["110000"]));
    home.import_persons(&[person("P0001", "611000", "390")]).await.expect("import");
    register(&home, "r1", "P0001", "long_term_resident", "110000").await.expect("register");
    (dir, net, clock, home, bj)
}

#[tokio::test]
async fn limit_pending_intents_refuses_new_settlements_until_homes_answer() {
    let (_dir, net, _clock, home, bj) = limited_pair(2).await;
    net.detach(home.region());
    let req = |m: &str| request(BJ_HOSPITAL, m, Action::Settle, "P0001", "611000", example_items());
    for m in ["p1", "p2"] {
        assert!(matches!(submit(&bj, &req(m)).await, Err(NodeError::HomeUnreachable(_))));
    }
    assert_eq!(bj.pending_intents(), 2);
    match submit(&bj, &req("p3")).await {
        Err(e @ NodeError::Overloaded(_)) => assert!(e.to_string().contains("await their home nodes (limit 2)"), "{e}"),
        other => panic!("expected overloaded, got {other:?}"),
    }
    // A retry of a pending settlement is not new: it is still tried.
    assert!(matches!(submit(&bj, &req("p1")).await, Err(NodeError::HomeUnreachable(_))));
    // The home comes back; the intents complete; new settlements are taken again.
    net.attach(&home);
    assert_eq!(bj.redrive_intents().await.expect("redrive"), 2);
    assert_eq!(bj.pending_intents(), 0);
    assert!(submit(&bj, &req("p3")).await.expect("accepted").settled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_caller_goes_away_mid_commit_still_moves_the_home_state() {
    let (f, _) = secured().await;
    let home = &f.nodes["611000"];
    let ok = seal(&node_key("110000"), CLAIM_DOMAIN, "110000", &claim("gone"));
    drop_once_durable(home.ledger(), home.handle_claim(ok.clone())).await;
    // The retry is answered from the record...
    let result: xclear::proto::ClaimResult =
        xclear::api::envelope::peek(&home.handle_claim(ok).await.expect("retry")).expect("result");
    assert!(result.settled, "{result:?}");
    // ...and the state moved with the commit: the counters hold it, and it can be reversed.
    assert_ne!(home.counters_of("P0001", 2026).expect("c"), Default::default());
    let reversal = xclear::proto::Claim {
        action: Action::Reverse as i32,
        reversed_setl_id: result.setl_id.clone(),
        ..claim("gone-r")
    };
    let reversed = home
        .handle_claim(seal(&node_key("110000"), CLAIM_DOMAIN, "110000", &reversal))
        .await
        .expect("the settlement is known");
    let reversed: xclear::proto::ClaimResult = xclear::api::envelope::peek(&reversed).expect("result");
    assert!(reversed.settled, "{reversed:?}");
    assert_eq!(home.counters_of("P0001", 2026).expect("c"), Default::default(), "the reversal restored the counters");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_whose_caller_goes_away_mid_commit_still_takes_effect() {
    let f = federation();
    let home = &f.nodes["611000"];
    home.import_persons(&[person("P0001", "611000", "390")]).await.expect("import");
    let req = registration("gone", "P0001", "long_term_resident", "110000");
    drop_once_durable(home.ledger(), home.apply_registration(seal(&admin_key(), ADMIN_DOMAIN, "agency", &req))).await;
    // The commit ran on: give its task a moment to move the state, then look.
    for _ in 0..5_000 {
        if !home.registrations_of("P0001").expect("read").is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    assert_eq!(home.registrations_of("P0001").expect("read").len(), 1, "the registration is in force");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settlement_whose_hospital_goes_away_mid_commit_still_completes_at_the_treatment_node() {
    let f = federation();
    shangluo_patient(&f).await;
    let bj = &f.nodes["110000"];
    let req = request(BJ_HOSPITAL, "gone", Action::Settle, "P0001", "611000", example_items());
    // Dropped once the outcome (after the intent) is durable: the window
    // between the append and the pending intents and running totals.
    drop_once_grown(bj.ledger(), 2, submit(bj, &req)).await;
    for _ in 0..5_000 {
        if bj.pending_intents() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    assert_eq!(bj.pending_intents(), 0, "the intent has its outcome without a re-drive");
    // The retry is answered from the record, and the running totals hold it once.
    let r = submit(bj, &req).await.expect("retry");
    assert!(r.settled, "{r:?}");
    let month = xclear::clearing::Month::parse(&r.month).expect("month");
    let sums = bj.month_summaries(month).expect("summaries");
    let as_treatment = sums.get(&(xclear::node::clearing_side::Side::AsTreatment, code("611000"))).expect("pair");
    assert_eq!(as_treatment.count, 1);
}

/// Issue 21, defect 3: a request the home node refused for good (an unknown
/// person; a second reversal) left an intent re-driven every 5 s for ever,
/// counted against the pending-intent limit. Such a refusal ends the intent,
/// on the ledger, and the hospital asking again gets the same refusal
/// without the home node being asked.
#[tokio::test]
async fn a_request_the_home_refuses_for_good_ends_its_intent() {
    let f = federation();
    shangluo_patient(&f).await;
    let (bj, home) = (&f.nodes["110000"], &f.nodes["611000"]);
    let unknown = request(BJ_HOSPITAL, "nobody", Action::Settle, "P9999", "611000", example_items());
    let e = submit(bj, &unknown).await.expect_err("unknown");
    assert_eq!(e.reason(), "unknown_person");
    assert_eq!(e.to_string(), "person P9999 is not insured at this node", "the home's words, once");
    assert_eq!(bj.pending_intents(), 0, "the intent ended");
    let ended = bj.ledger().entry_by_key(&format!("outcome:{BJ_HOSPITAL}:nobody")).expect("read").expect("recorded");
    assert_eq!(ended.body.kind, xclear::ledger::EntryKind::SettlementEnded);
    let home_len = home.ledger().len();
    f.net.detach(code("611000"));
    assert_eq!(submit(bj, &unknown).await.expect_err("again").reason(), "unknown_person", "from the record");
    f.net.attach(home);
    assert_eq!(home.ledger().len(), home_len);

    // A second reversal of one settlement.
    let settled = submit(bj, &request(BJ_HOSPITAL, "s1", Action::Settle, "P0001", "611000", example_items()))
        .await
        .expect("settled");
    assert!(settled.settled);
    let reverse = |m: &str| HospitalRequest {
        reversed_msgid: "s1".into(),
        ..request(BJ_HOSPITAL, m, Action::Reverse, "P0001", "611000", vec![])
    };
    assert!(submit(bj, &reverse("r1")).await.expect("reversed").settled);
    assert_eq!(submit(bj, &reverse("r2")).await.expect_err("twice").reason(), "already_reversed");
    assert_eq!(bj.pending_intents(), 0);
    assert_eq!(bj.redrive_intents().await.expect("nothing to re-drive"), 0);
    // Restarted, the node still holds no open intent.
    drop(f.nodes);
    let bj = open_node("110000", f._dir.path(), &f.net, &f.clock);
    assert_eq!(bj.pending_intents(), 0);
}

/// The reversal of a settlement whose home entry cannot be read (its bytes
/// damaged on disk) is refused and changes nothing at the home; once the
/// bytes read again, the same request reverses it once.
#[tokio::test]
async fn a_reversal_whose_original_cannot_be_read_changes_nothing() {
    let f = federation();
    shangluo_patient(&f).await;
    let (bj, home) = (&f.nodes["110000"], &f.nodes["611000"]);
    let settled = submit(bj, &request(BJ_HOSPITAL, "s1", Action::Settle, "P0001", "611000", example_items()))
        .await
        .expect("settled");
    let segment = f._dir.path().join("611000").join(xclear::ledger::segment::FIRST_SEGMENT);
    let bytes = std::fs::read(&segment).expect("segment");
    let at = bytes.windows(settled.setl_id.len()).position(|w| w == settled.setl_id.as_bytes()).expect("the entry");
    let flip = |path: &std::path::Path| {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new().read(true).write(true).open(path).expect("open");
        let mut b = [0u8; 1];
        file.read_exact_at(&mut b, at as u64).expect("read");
        file.write_all_at(&[b[0] ^ 0x01], at as u64).expect("write");
        file.sync_all().expect("sync");
    };
    flip(&segment);
    let (len, counters) = (home.ledger().len(), home.counters_of("P0001", 2026).expect("c"));
    assert_ne!(counters, Default::default());
    let reverse = |m: &str| HospitalRequest {
        reversed_msgid: "s1".into(),
        ..request(BJ_HOSPITAL, m, Action::Reverse, "P0001", "611000", vec![])
    };
    let e = submit(bj, &reverse("r1")).await.expect_err("the original cannot be read");
    assert!(!matches!(e, NodeError::AlreadyReversed(_)), "{e}");
    assert_eq!(home.ledger().len(), len, "nothing recorded at the home");
    assert_eq!(home.counters_of("P0001", 2026).expect("c"), counters, "the counters stay");

    flip(&segment);
    bj.redrive_intents().await.expect("redrive");
    let reversed = submit(bj, &reverse("r1")).await.expect("reversed");
    assert!(reversed.settled, "{reversed:?}");
    assert_eq!(home.counters_of("P0001", 2026).expect("c"), Default::default(), "restored once");
    assert_eq!(submit(bj, &reverse("r2")).await.expect_err("twice").reason(), "already_reversed");
}

/// Refused requests do not count against the pending-intent limit, and a
/// failing re-drive backs off (5 s, then 10 s, ...) instead of hammering.
#[tokio::test]
async fn refusals_do_not_fill_the_intent_limit_and_redrives_back_off() {
    let (_dir, net, clock, home, bj) = limited_pair(1).await;
    for m in ["x1", "x2", "x3"] {
        let req = request(BJ_HOSPITAL, m, Action::Settle, "P9999", "611000", example_items());
        assert_eq!(submit(&bj, &req).await.expect_err("unknown").reason(), "unknown_person");
    }
    net.detach(home.region());
    let req = request(BJ_HOSPITAL, "p1", Action::Settle, "P0001", "611000", example_items());
    assert!(matches!(submit(&bj, &req).await, Err(NodeError::HomeUnreachable(_))), "not refused as overloaded");
    assert_eq!(bj.pending_intents(), 1);
    // The first due re-drive fails and backs off 5 s; before then nothing is tried.
    assert!(bj.redrive_due_intents().await.is_err());
    clock.advance(4_000);
    assert_eq!(bj.redrive_due_intents().await.expect("none due"), 0);
    assert_eq!(bj.oldest_pending_intent_ms(), 4_000);
    clock.advance(1_000);
    assert!(bj.redrive_due_intents().await.is_err(), "due after 5 s, and failing: now 10 s");
    net.attach(&home);
    clock.advance(9_000);
    assert_eq!(bj.redrive_due_intents().await.expect("not yet"), 0);
    clock.advance(1_000);
    assert_eq!(bj.redrive_due_intents().await.expect("due"), 1);
    assert_eq!((bj.pending_intents(), bj.oldest_pending_intent_ms()), (0, 0));
}
