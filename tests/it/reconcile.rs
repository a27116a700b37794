//! Reconciliation with an institution (issue 26, 对账): its totals for a
//! clearing month (3201) and its detail list (3202) against its node's
//! records; balanced totals answer balanced, each kind of difference is named.

use std::sync::Arc;

use xclear::api::envelope::{seal, RECONCILE_DOMAIN};
use xclear::proto::{
    hospital_request::Action, HospitalRequest, HospitalResponse, ReconcileAnswer, ReconcileDetail, ReconcileRequest,
    ReconcileTotals,
};

use crate::common::fixtures::{example_items, hospital_key, request, secured, submit, BJ_HOSPITAL};

fn detail(r: &HospitalResponse) -> ReconcileDetail {
    let f = r.figures.clone().expect("figures");
    ReconcileDetail {
        setl_id: r.setl_id.clone(),
        msgid: r.msgid.clone(),
        medfee_sumamt: f.medfee_sumamt,
        fund_pay_sumamt: f.fund_pay_sumamt,
        acct_pay: f.acct_pay,
    }
}

fn totals(details: &[ReconcileDetail]) -> ReconcileTotals {
    let sum = |f: fn(&ReconcileDetail) -> &String| -> String {
        details
            .iter()
            .map(|d| rust_decimal::Decimal::from_str_exact(f(d)).expect("decimal"))
            .sum::<rust_decimal::Decimal>()
            .round_dp(2)
            .to_string()
    };
    let fmt = |s: String| xclear::money::Amount::round_half_up(s.parse().expect("decimal")).to_string();
    ReconcileTotals {
        count: details.len() as u64,
        medfee_sumamt: fmt(sum(|d| &d.medfee_sumamt)),
        fund_pay_sumamt: fmt(sum(|d| &d.fund_pay_sumamt)),
        acct_pay: fmt(sum(|d| &d.acct_pay)),
    }
}

async fn ask(
    node: &Arc<xclear::node::Node>,
    code: &str,
    signer: &str,
    month: &str,
    details: Option<Vec<ReconcileDetail>>,
    t: ReconcileTotals,
) -> Result<ReconcileAnswer, xclear::api::NodeError> {
    let req = ReconcileRequest {
        fixmedins_code: code.into(),
        month: month.into(),
        totals: Some(t),
        with_details: details.is_some(),
        details: details.unwrap_or_default(),
    };
    let checked = node.reconcile_request(&seal(&hospital_key(signer), RECONCILE_DOMAIN, signer, &req))?;
    node.reconcile(&checked)
}

#[tokio::test]
async fn balanced_totals_answer_balanced_and_each_difference_is_named() {
    let (f, _) = secured().await;
    let bj = &f.nodes["110000"];
    let mut answers = Vec::new();
    for msgid in ["k1", "k2", "k3"] {
        let r = submit(bj, &request(BJ_HOSPITAL, msgid, Action::Settle, "P0001", "611000", example_items()))
            .await
            .expect("settled");
        assert!(r.settled, "{r:?}");
        answers.push(r);
    }
    let undo = HospitalRequest {
        reversed_msgid: "k2".into(),
        ..request(BJ_HOSPITAL, "k2r", Action::Reverse, "P0001", "611000", vec![])
    };
    let reversal = submit(bj, &undo).await.expect("reversed");
    assert!(reversal.settled, "{reversal:?}");
    answers.push(reversal);
    let month = answers[0].month.clone();
    let mine: Vec<ReconcileDetail> = answers.iter().map(detail).collect();

    // 3201: the institution's totals, as its own answers add up.
    let a = ask(bj, BJ_HOSPITAL, BJ_HOSPITAL, &month, None, totals(&mine)).await.expect("answered");
    assert!(a.balanced, "{a:?}");
    assert_eq!(a.node_totals, Some(totals(&mine)));
    // A month with nothing, stated as nothing: balanced too.
    let empty = ReconcileTotals {
        count: 0,
        medfee_sumamt: "0.00".into(),
        fund_pay_sumamt: "0.00".into(),
        acct_pay: "0.00".into(),
    };
    assert!(ask(bj, BJ_HOSPITAL, BJ_HOSPITAL, "2025-01", None, empty).await.expect("answered").balanced);

    // Totals that miss the last settlement: each differing total named.
    let short = totals(&mine[..2]);
    let a = ask(bj, BJ_HOSPITAL, BJ_HOSPITAL, &month, None, short.clone()).await.expect("answered");
    assert!(!a.balanced);
    let fields: Vec<&str> = a.differences.iter().filter(|d| d.kind == "total").map(|d| d.field.as_str()).collect();
    assert!(fields.contains(&"count") && fields.contains(&"fund_pay_sumamt"), "{a:?}");

    // 3202: one item missing at the institution, one the node never had, one amount differing.
    let mut theirs = mine.clone();
    let dropped = theirs.remove(2);
    theirs.push(ReconcileDetail { setl_id: "S110000ffffffffffffffff".into(), msgid: "k9".into(), ..mine[0].clone() });
    theirs[0].fund_pay_sumamt = "1.00".into();
    let a = ask(bj, BJ_HOSPITAL, BJ_HOSPITAL, &month, Some(theirs.clone()), totals(&theirs)).await.expect("answered");
    let kinds = |kind: &str| a.differences.iter().filter(|d| d.kind == kind).collect::<Vec<_>>();
    assert_eq!(kinds("missing_at_institution").len(), 1, "{a:?}");
    assert_eq!(kinds("missing_at_institution")[0].setl_id, dropped.setl_id);
    assert_eq!(kinds("missing_at_node")[0].msgid, "k9");
    let differs = kinds("amount_differs");
    assert_eq!((differs[0].setl_id.as_str(), differs[0].field.as_str()), (mine[0].setl_id.as_str(), "fund_pay_sumamt"));
    assert_eq!(differs[0].institution, "1.00");

    // Only the institution itself, for itself; nothing recorded by any of it.
    let len = bj.ledger().len();
    let other = ask(bj, BJ_HOSPITAL, "H110105999", &month, None, totals(&mine)).await.expect_err("another's");
    assert_eq!(other.reason(), "not_authorised");
    let forged = {
        let req = ReconcileRequest {
            fixmedins_code: BJ_HOSPITAL.into(),
            month: month.clone(),
            totals: Some(short),
            ..Default::default()
        };
        bj.reconcile_request(&seal(&hospital_key("H110105999"), RECONCILE_DOMAIN, BJ_HOSPITAL, &req))
    };
    assert_eq!(forged.expect_err("forged").reason(), "bad_signature");
    let bad = ReconcileTotals { medfee_sumamt: "lots".into(), ..totals(&mine) };
    assert_eq!(ask(bj, BJ_HOSPITAL, BJ_HOSPITAL, &month, None, bad).await.expect_err("bad").reason(), "bad_request");
    assert_eq!(bj.ledger().len(), len);
}
