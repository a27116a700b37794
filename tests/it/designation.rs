//! Designation at run time and sanctions recognised across the corps–local
//! pair (issue 26): an admin suspends, revokes or restores an institution by
//! a signed request on the ledger; its requests are refused at once; a
//! revoked institution waits three years; the corps–local partner receives
//! the sanction, signed, and refuses the claims of that institution's care.

use std::sync::Arc;

use xclear::api::envelope::{open, seal, CLAIM_DOMAIN, CLAIM_RESULT_DOMAIN, DESIGNATION_DOMAIN};
use xclear::proto::{designation_request::Op, hospital_request::Action, BillItem, DesignationRequest};

use crate::common::fixtures::{
    admin_key, claim, federation, node_key, open_node, person, request, submit, Federation, YILI_HOSPITAL,
};

fn change(msgid: &str, op: Op, reason: &str) -> DesignationRequest {
    DesignationRequest {
        msgid: msgid.into(),
        fixmedins_code: YILI_HOSPITAL.into(),
        op: op as i32,
        reason: reason.into(),
    }
}

async fn designate(
    f: &Federation,
    req: &DesignationRequest,
) -> Result<xclear::proto::DesignationState, xclear::api::NodeError> {
    f.nodes["654000"].designate(seal(&admin_key(), DESIGNATION_DOMAIN, "agency", req)).await
}

fn items() -> Vec<BillItem> {
    vec![BillItem { code: "XA001".into(), qty: "1".into(), price: "1000.00".into() }]
}

/// A claim 654000's node sends 660400 for care at the 伊犁 hospital, as if
/// its own check had let it through.
async fn partner_claim(f: &Federation, msgid: &str) -> Result<xclear::proto::Signed, xclear::api::NodeError> {
    let c = xclear::proto::Claim {
        mdtrtarea_admvs: "654002".into(),
        fixmedins_code: YILI_HOSPITAL.into(),
        hosp_lv: 2,
        psn_no: "B0001".into(),
        insuplc_admdvs: "660400".into(),
        medfee_sumamt: "1000.00".into(),
        inscp_scp_amt: "1000.00".into(),
        ..claim(msgid)
    };
    f.nodes["660400"].handle_claim(seal(&node_key("654000"), CLAIM_DOMAIN, "654000", &c)).await
}

#[tokio::test]
async fn a_revoked_institution_is_refused_at_once_here_and_at_the_partner_and_waits_three_years() {
    let f = federation();
    f.nodes["660400"].import_persons(&[person("B0001", "660400", "390")]).await.expect("import");
    let settle = |msgid: &str| request(YILI_HOSPITAL, msgid, Action::Settle, "B0001", "660400", items());
    assert!(submit(&f.nodes["654000"], &settle("d1")).await.expect("settled").settled);
    // Committed at the partner before any sanction.
    let before = partner_claim(&f, "p0").await.expect("committed");
    let committed: xclear::proto::ClaimResult =
        open(&before, &node_key("660400").verifying_key(), CLAIM_RESULT_DOMAIN).expect("result");

    // Only an admin of the institution's node, with a reason.
    let forged = f.nodes["654000"].designate(seal(
        &node_key("110000"),
        DESIGNATION_DOMAIN,
        "agency",
        &change("x", Op::Revoke, "x"),
    ));
    assert_eq!(forged.await.expect_err("forged").reason(), "bad_signature");
    assert_eq!(designate(&f, &change("x", Op::Revoke, " ")).await.expect_err("no reason").reason(), "bad_request");
    let unknown = DesignationRequest { fixmedins_code: "H999".into(), ..change("x", Op::Revoke, "fraud") };
    assert_eq!(designate(&f, &unknown).await.expect_err("unknown").reason(), "unknown_hospital");

    // Revoked: refused from the moment the entry is durable.
    let revoked = designate(&f, &change("v1", Op::Revoke, "fraudulent bills")).await.expect("revoked");
    assert_eq!(revoked.status, "revoked");
    assert_eq!(xclear::time::shanghai_date(revoked.restorable_from_ms), "2029-03-10");
    let e = submit(&f.nodes["654000"], &settle("d2")).await.expect_err("revoked");
    assert_eq!(e.reason(), "hospital_not_designated");
    assert!(e.to_string().contains("revoked since 2026-03-10: fraudulent bills"), "{e}");
    // The same request again: the same answer, recorded once.
    let len = f.nodes["654000"].ledger().len();
    assert_eq!(designate(&f, &change("v1", Op::Revoke, "fraudulent bills")).await.expect("retry"), revoked);
    assert_eq!(f.nodes["654000"].ledger().len(), len);
    let reused = designate(&f, &change("v1", Op::Suspend, "other")).await.expect_err("reused");
    assert_eq!(reused.reason(), "msgid_reused");

    // The partner has it (delivered as it was made, in the background) and
    // refuses new claims of its care; what it committed before is answered as
    // before, and reversals still give the funds their money back.
    f.nodes["654000"].deliver_sanctions().await.expect("delivered");
    assert_eq!(f.nodes["654000"].undelivered_sanctions(), 0);
    let e = partner_claim(&f, "p1").await.expect_err("recognised sanction");
    assert_eq!(e.reason(), "hospital_not_designated");
    assert_eq!(partner_claim(&f, "p0").await.expect("the stored result"), before);
    let reversal = xclear::proto::Claim {
        action: Action::Reverse as i32,
        reversed_setl_id: committed.setl_id.clone(),
        mdtrtarea_admvs: "654002".into(),
        fixmedins_code: YILI_HOSPITAL.into(),
        psn_no: "B0001".into(),
        insuplc_admdvs: "660400".into(),
        ..claim("p0r")
    };
    f.nodes["660400"]
        .handle_claim(seal(&node_key("654000"), CLAIM_DOMAIN, "654000", &reversal))
        .await
        .expect("a reversal passes the partner's sanction");
    let undo = xclear::proto::HospitalRequest {
        reversed_msgid: "d1".into(),
        ..request(YILI_HOSPITAL, "d1r", Action::Reverse, "B0001", "660400", vec![])
    };
    assert!(submit(&f.nodes["654000"], &undo).await.expect("a revoked institution still reverses").settled);

    // Three years, less a day: not yet. On the day: restored, here and there.
    f.clock.set(revoked.restorable_from_ms - 86_400_000);
    let early = designate(&f, &change("r1", Op::Restore, "served")).await.expect_err("too early");
    assert_eq!(early.reason(), "holding_period");
    assert!(early.to_string().contains("2029-03-10"), "{early}");
    f.clock.set(revoked.restorable_from_ms);
    let restored = designate(&f, &change("r2", Op::Restore, "served")).await.expect("restored");
    assert_eq!(restored.status, "active");
    f.nodes["654000"].deliver_sanctions().await.expect("delivered");
    partner_claim(&f, "p2").await.expect("recognised again at the partner");
}

#[tokio::test]
async fn a_sanction_the_partner_missed_is_delivered_later_and_survives_restarts() {
    let mut f = federation();
    // The partner is down when the institution is suspended.
    f.net.detach(xclear::region::RegionCode::parse("660400").expect("code"));
    let s = designate(&f, &change("s1", Op::Suspend, "inspection")).await.expect("suspended");
    assert_eq!(s.status, "suspended");
    tokio::task::yield_now().await;
    assert_eq!(f.nodes["654000"].deliver_sanctions().await.expect("tried"), 0);

    // Both restart: the suspension and what is undelivered come back from the ledgers.
    let dir = f._dir.path().to_path_buf();
    f.nodes.clear();
    let yili = open_node("654000", &dir, &f.net, &f.clock);
    let corps = open_node("660400", &dir, &f.net, &f.clock);
    assert_eq!(yili.designation_state(YILI_HOSPITAL).expect("state").status, "suspended");
    assert_eq!(yili.undelivered_sanctions(), 1);
    f.nodes.insert("654000", Arc::clone(&yili));
    f.nodes.insert("660400", Arc::clone(&corps));
    corps.import_persons(&[person("B0001", "660400", "390")]).await.expect("import");
    partner_claim(&f, "q1").await.expect("not known at the partner yet");

    assert_eq!(yili.deliver_sanctions().await.expect("delivered"), 1);
    assert_eq!(yili.undelivered_sanctions(), 0);
    assert_eq!(partner_claim(&f, "q2").await.expect_err("now known").reason(), "hospital_not_designated");
    // Delivered twice (a lost acknowledgement): recorded once at the partner.
    let len = corps.ledger().len();
    assert_eq!(yili.deliver_sanctions().await.expect("nothing due"), 0);
    assert_eq!(corps.ledger().len(), len);

    // The partner keeps it across its own restart; a reversal still passes.
    drop(corps);
    f.nodes.remove("660400");
    let corps = open_node("660400", &dir, &f.net, &f.clock);
    f.nodes.insert("660400", corps);
    assert_eq!(partner_claim(&f, "q3").await.expect_err("kept").reason(), "hospital_not_designated");
    // Suspended, then restored: the institution settles again.
    designate(&f, &change("s2", Op::Restore, "inspection passed")).await.expect("restored");
    f.nodes["654000"].deliver_sanctions().await.expect("delivered");
    assert_eq!(f.nodes["654000"].undelivered_sanctions(), 0);
    partner_claim(&f, "q4").await.expect("restored at the partner");
    let r = submit(&f.nodes["654000"], &request(YILI_HOSPITAL, "d3", Action::Settle, "B0001", "660400", items()))
        .await
        .expect("settles again");
    assert!(r.settled, "{r:?}");
}

/// Only a corps–local partner's node may notify a sanction, for its own institutions.
#[tokio::test]
async fn a_sanction_from_anyone_but_the_partner_is_refused() {
    use xclear::api::envelope::SANCTION_DOMAIN;
    use xclear::proto::SanctionNotice;
    let f = federation();
    let request = seal(&admin_key(), DESIGNATION_DOMAIN, "agency", &change("z1", Op::Revoke, "x"));
    let notice =
        |region: &str| SanctionNotice { region: region.into(), request: Some(request.clone()), recorded_ms: 0 };
    // Beijing is no partner of the 4th division.
    let e = f.nodes["660400"]
        .handle_sanction(seal(&node_key("110000"), SANCTION_DOMAIN, "110000", &notice("110000")))
        .await;
    assert_eq!(e.expect_err("not a partner").reason(), "not_authorised");
    // The partner, for another region.
    let e = f.nodes["660400"]
        .handle_sanction(seal(&node_key("654000"), SANCTION_DOMAIN, "654000", &notice("110000")))
        .await;
    assert_eq!(e.expect_err("another region").reason(), "not_authorised");
    // Signed by another key.
    let e = f.nodes["660400"]
        .handle_sanction(seal(&node_key("110000"), SANCTION_DOMAIN, "654000", &notice("654000")))
        .await;
    assert_eq!(e.expect_err("forged").reason(), "bad_signature");
    assert_eq!(f.nodes["660400"].ledger().len(), 0);
}
