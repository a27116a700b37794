//! The hostile-input catalogue. Each entry is a test; entries covered
//! elsewhere name where:
//!
//! | hostile input | where |
//! |---|---|
//! | unsigned / wrongly keyed hospital request | node_inprocess::security_unsigned_request, security_wrong_hospital_key |
//! | a hospital impersonating another, or of another region | node_inprocess::security_hospital_of_another_region, hostile::hospital_signing_as_another |
//! | a region signing for another region / area, a stranger | node_inprocess::security_forged_peer_claim |
//! | a region answering for another, a stale (reordered) answer | hostile::stale_or_foreign_home_answers_are_refused |
//! | replayed claims, changed replays | node_inprocess::security_replayed_claim_with_a_changed_amount, sim (replays) |
//! | replayed and changed registrations | hostile::replayed_registrations |
//! | report and line requests not from the operator | hostile::reports_only_for_the_operator |
//! | forged confirmations | node_process (confirm with another region's key) |
//! | tampered ledger files | ledger::a_flipped_byte_anywhere_in_an_exported_entry_is_named, hostile::a_node_will_not_open_a_tampered_ledger |
//! | oversized and truncated frames | node_grpc::settlement_over_grpc_with_health_and_reflection |
//! | dates and amounts at their extremes | hostile::extreme_dates_and_amounts |
//! | registrations for impossible areas | hostile::registrations_for_impossible_areas |
//! | arbitrary bytes into every decoder | fuzz::* |

use std::sync::Arc;

use xclear::api::envelope::{seal, ADMIN_DOMAIN, HOSPITAL_DOMAIN, OPERATOR_DOMAIN};
use xclear::clock::Clock;
use xclear::federation::LocalNetwork;
use xclear::node::{BoxFuture, Node, PeerTransport, TransportError};
use xclear::proto::{
    hospital_request::Action, registration_request::Op, BillItem, RegistrationRequest, ReportRequest, Signed,
};
use xclear::region::RegionCode;

use crate::common;
use crate::common::fixtures::{
    admin_key, config, example_items, hospital_key, node_key, nothing_recorded, open_via, person, register, request,
    secured, submit, BJ_HOSPITAL, T0,
};

#[tokio::test]
async fn hospital_signing_as_another() {
    let (f, before) = secured().await;
    // The Beijing hospital's own key, naming itself as signer, but the request claims another code.
    let req = request("H110105999", "h1", Action::Settle, "P0001", "611000", example_items());
    let env = seal(&hospital_key(BJ_HOSPITAL), HOSPITAL_DOMAIN, BJ_HOSPITAL, &req);
    let e = f.nodes["110000"].handle_hospital(env).await.expect_err("impersonation");
    assert_eq!(e.reason(), "not_authorised", "{e}");
    nothing_recorded(&f, before);
}

/// A home that answers with another claim's result (a reordered or
/// replayed answer), or a result signed by a region that is not the home.
struct Mischief {
    inner: Arc<LocalNetwork>,
    stale: std::sync::Mutex<Option<Signed>>,
    foreign: bool,
}

impl PeerTransport for Mischief {
    fn submit_claim(&self, to: RegionCode, claim: Signed) -> BoxFuture<'_, Result<Signed, TransportError>> {
        Box::pin(async move {
            let answer = self.inner.submit_claim(to, claim).await?;
            if self.foreign {
                let body = answer.body.clone();
                let sig = xclear::crypto::sign(&node_key("654000"), xclear::api::envelope::CLAIM_RESULT_DOMAIN, &body);
                return Ok(Signed { body, signature: sig.to_bytes().to_vec(), signer: answer.signer, batch: None });
            }
            let mut stale = self.stale.lock().map_err(|e| TransportError::Unreachable(e.to_string()))?;
            match stale.as_ref() {
                Some(old) => Ok(old.clone()),
                None => {
                    *stale = Some(answer.clone());
                    Ok(answer)
                }
            }
        })
    }

    fn contribution_years(
        &self,
        to: RegionCode,
        query: Signed,
    ) -> BoxFuture<'_, Result<std::collections::BTreeMap<String, u32>, TransportError>> {
        self.inner.contribution_years(to, query)
    }
}

async fn with_mischief(foreign: bool) -> (tempfile::TempDir, Arc<Node>, Arc<Node>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = LocalNetwork::new();
    let clock = Arc::new(xclear::clock::ManualClock::new(T0));
    let mischief = Arc::new(Mischief { inner: Arc::clone(&net), stale: Default::default(), foreign });
    let (home, bj) = (
        open_via("611000", dir.path(), &net, mischief.clone(), &clock, |n| n),
        open_via("110000", dir.path(), &net, mischief, &clock, |n| n),
    );
    home.import_persons(&[person("P0001", "611000", "390")]).await.expect("import");
    register(&home, "r1", "P0001", "long_term_resident", "110000").await.expect("register");
    (dir, home, bj)
}

#[tokio::test]
async fn stale_or_foreign_home_answers_are_refused() {
    // A stale answer: the second settlement gets the first one's result back.
    let (_dir, _home, bj) = with_mischief(false).await;
    let first = submit(&bj, &request(BJ_HOSPITAL, "a1", Action::Settle, "P0001", "611000", example_items())).await;
    assert!(first.expect("first").settled);
    let e = submit(&bj, &request(BJ_HOSPITAL, "a2", Action::Settle, "P0001", "611000", example_items()))
        .await
        .expect_err("stale answer");
    assert_eq!(e.reason(), "bad_peer_answer", "{e}");
    assert!(bj.ledger().entry_by_key("outcome:H110105001:a2").expect("read").is_none(), "nothing recorded for a2");
    // A result signed by another region's key.
    let (_dir, _home, bj) = with_mischief(true).await;
    let e = submit(&bj, &request(BJ_HOSPITAL, "b1", Action::Settle, "P0001", "611000", example_items()))
        .await
        .expect_err("foreign answer");
    assert_eq!(e.reason(), "bad_peer_answer", "{e}");
    assert!(bj.ledger().entry_by_key("outcome:H110105001:b1").expect("read").is_none());
}

#[tokio::test]
async fn replayed_registrations() {
    let (f, _) = secured().await;
    let home = &f.nodes["611000"];
    let req = RegistrationRequest {
        msgid: "r-replay".into(),
        op: Op::Create as i32,
        psn_no: "P0001".into(),
        kind: "long_term_resident".into(),
        target_admdvs: "330100".into(),
        begndate: "2026-02-01".into(),
        ..Default::default()
    };
    let env = seal(&admin_key(), ADMIN_DOMAIN, "agency", &req);
    let first = home.apply_registration(env.clone()).await.expect("filed");
    let len = home.ledger().len();
    assert_eq!(home.apply_registration(env).await.expect("replayed"), first);
    assert_eq!(home.ledger().len(), len, "a replay files nothing");
    let changed = RegistrationRequest { target_admdvs: "440600".into(), ..req };
    let e = home.apply_registration(seal(&admin_key(), ADMIN_DOMAIN, "agency", &changed)).await.expect_err("changed");
    assert_eq!(e.reason(), "msgid_reused");
    assert_eq!(home.ledger().len(), len);
}

#[tokio::test]
async fn reports_only_for_the_operator() {
    let (f, _) = secured().await;
    let home = &f.nodes["611000"];
    let req = ReportRequest { month: "2026-03".into(), seal: true };
    // Signed by a region's key (claiming to be the operator), and by a hospital.
    for env in [
        seal(&node_key("110000"), OPERATOR_DOMAIN, "operator", &req),
        seal(&hospital_key(BJ_HOSPITAL), OPERATOR_DOMAIN, "operator", &req),
    ] {
        let e = home.handle_report_request(env).await.expect_err("not the operator");
        assert!(matches!(e.reason(), "bad_signature" | "not_authorised"), "{e}");
    }
}

#[tokio::test]
async fn extreme_dates_and_amounts() {
    let (f, before) = secured().await;
    let bj = &f.nodes["110000"];
    let item = |qty: &str, price: &str| vec![BillItem { code: "XB001".into(), qty: qty.into(), price: price.into() }];
    let cases: Vec<(&str, &str, Vec<BillItem>)> = vec![
        ("setl_date", "9999-12-31", example_items()),
        ("setl_date", "0000-01-01", example_items()),
        ("setl_date", "2026-02-30", example_items()),
        ("setl_date", "2026-3-1", example_items()),
        ("setl_date", "", example_items()),
        ("price", "2026-03-10", item("1", "99999999999999999999999999")),
        ("price", "2026-03-10", item("1", "-1.00")),
        ("price", "2026-03-10", item("1", "1e5")),
        ("items", "2026-03-10", item("1", "0.001")),
        ("price", "2026-03-10", item("1", "NaN")),
        ("qty", "2026-03-10", item("79228162514264337593543950335", "1.00")),
        ("qty", "2026-03-10", item("-3", "1.00")),
        ("items", "2026-03-10", vec![]),
    ];
    for (i, (field, date, items)) in cases.into_iter().enumerate() {
        let mut req = request(BJ_HOSPITAL, &format!("x{i}"), Action::Settle, "P0001", "611000", items);
        req.setl_date = date.into();
        let e = submit(bj, &req).await.expect_err("extreme input");
        let text = e.to_string();
        // A bad field is named; a date before any catalogue is a business refusal.
        let refused = matches!(e, xclear::api::NodeError::Refused(_));
        assert!(e.reason() == "bad_request" || refused, "case {i} ({field}): {} {text}", e.reason());
        assert!(text.contains(field) || refused, "case {i}: the error names {field}: {text}");
    }
    nothing_recorded(&f, before);
}

#[tokio::test]
async fn registrations_for_impossible_areas() {
    let (f, _) = secured().await;
    let home = &f.nodes["611000"];
    let len = home.ledger().len();
    let cases = [
        ("target_admdvs", "999999", ""),
        ("target_admdvs", "000000", ""),
        ("target_admdvs", "11010", ""),
        ("target_admdvs", "110001", ""),
        ("target_admdvs", "611000", ""),
        ("target_admdvs", "611002", ""),
        ("enddate", "110000", "2025-01-01"),
        ("enddate", "110000", "2099-01-01"),
    ];
    for (i, (field, target, end)) in cases.into_iter().enumerate() {
        let req = RegistrationRequest {
            msgid: format!("imp{i}"),
            op: Op::Create as i32,
            psn_no: "P0001".into(),
            kind: "long_term_resident".into(),
            target_admdvs: target.into(),
            begndate: "2026-01-01".into(),
            enddate: end.into(),
            ..Default::default()
        };
        let e =
            home.apply_registration(seal(&admin_key(), ADMIN_DOMAIN, "agency", &req)).await.expect_err("impossible");
        assert_eq!(e.reason(), "bad_request", "case {i}: {e}");
        assert!(e.to_string().contains(field), "case {i}: names {field}: {e}");
    }
    assert_eq!(home.ledger().len(), len, "nothing filed");
}

#[tokio::test]
async fn a_node_will_not_write_to_a_tampered_ledger() {
    use xclear::ledger::checkpoint::PrefixCheck;
    use xclear::ledger::EntryKind;
    let (f, _) = secured().await;
    let dir = f.nodes["611000"].config.data_dir.clone();
    let rules = Arc::new(common::rules());
    drop(f.nodes);
    let seg = dir.join(xclear::ledger::SEGMENT_FILE);
    let mut bytes = std::fs::read(&seg).expect("segment");
    // Flip a byte inside the first entry (after the 48-byte header and 8-byte record header).
    bytes[48 + 8 + 20] ^= 0x01;
    std::fs::write(&seg, &bytes).expect("tamper");
    let clock: Arc<dyn Clock> = Arc::new(xclear::clock::ManualClock::new(T0));
    let cfg = config("611000", dir.parent().expect("parent"));
    // The ledger's checkpoint (written at the clean stop) lets the open skip
    // that entry; the check of the skipped part, run beside the open node,
    // finds it and stops every append.
    let node = Node::open(cfg.clone(), node_key("611000"), Arc::clone(&rules), clock.clone(), LocalNetwork::new())
        .expect("opens from its checkpoint");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let found = loop {
        match node.ledger().prefix_check() {
            PrefixCheck::Running if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await
            }
            other => break other,
        }
    };
    assert!(matches!(found, PrefixCheck::Failed(ref why) if why.contains("entry 0")), "{found:?}");
    let e = node.ledger().append(EntryKind::Note, "after", b"x".to_vec()).await.expect_err("appends stop");
    assert!(e.to_string().contains("stopped accepting appends"), "{e}");
    drop(node);
    // Without the checkpoint, the open itself reads the entry and refuses.
    std::fs::remove_file(dir.join(xclear::ledger::checkpoint::CHECKPOINT_FILE)).expect("no checkpoint");
    match Node::open(cfg, node_key("611000"), rules, clock, LocalNetwork::new()) {
        Ok(_) => panic!("a tampered ledger opened"),
        Err(e) => assert!(e.to_string().contains("corrupt") || e.to_string().contains("damaged"), "{e}"),
    }
}

/// A body that is not even a message, under a signature that does not
/// verify, is refused as a bad signature: the signer's key is checked over
/// the exact bytes first, and nothing in them is decoded before that.
#[tokio::test]
async fn garbage_under_a_bad_signature_is_refused_before_it_is_decoded() {
    let (f, _) = secured().await;
    let bj = &f.nodes["110000"];
    let garbage = xclear::proto::Signed {
        body: vec![0xff; 40],
        signature: vec![7; 64],
        signer: BJ_HOSPITAL.to_string(),
        batch: None,
    };
    let e = bj.handle_hospital(garbage.clone()).await.expect_err("refused");
    assert_eq!(e.reason(), "bad_signature", "{e}");
    assert!(!e.to_string().contains("invalid") && !e.to_string().contains("wire type"), "no decoder detail: {e}");
    let home = &f.nodes["611000"];
    let e = home.query_registrations(&garbage).expect_err("refused");
    assert_eq!(e.reason(), "not_authorised", "a hospital may not query: {e}");
    let as_admin = xclear::proto::Signed { signer: "agency".into(), ..garbage };
    assert_eq!(home.query_registrations(&as_admin).expect_err("refused").reason(), "bad_signature");
}
