//! Institutions' monthly statements, holdback and the audit sample over a
//! federation in one process (issue 26): two months with settlements, a
//! reversal, a disputed line, an audit refusal; the statements add up to the
//! fen against the settlements, the holdback comes back once, the refusal is
//! deducted once (and cleared between the regions once), the sample drawn
//! again from the exported ledger is the node's, and an institution reads
//! only its own statement.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;

use rust_decimal_macros::dec;
use xclear::api::envelope::HOSPITAL_STATEMENT_REQUEST_DOMAIN;
use xclear::api::envelope::{seal, ADMIN_DOMAIN, AUDIT_DOMAIN, CONFIRMATION_DOMAIN, HOSPITAL_DOMAIN};
use xclear::clearing::hospital::{HoldbackPolicy, HospitalStatement, Release};
use xclear::clearing::Month;
use xclear::clock::{Clock, ManualClock};
use xclear::federation::LocalNetwork;
use xclear::money::Amount;
use xclear::node::hospital_statements::open_statement;
use xclear::node::records::PersonRecord;
use xclear::node::Node;
use xclear::operator::Operator;
use xclear::proto::{
    hospital_request::Action, registration_request::Op, AuditReviewRequest, AuditSampleRequest, BillItem, Confirmation,
    DisputedLine, HospitalRequest, HospitalStatementRequest, RegistrationRequest, Signed,
};
use xclear::region::RegionCode;

use crate::common::key;

const REGIONS: [&str; 4] = ["611000", "110000", "654000", "660400"];
const MARCH: i64 = 1_772_676_000_000;
const MARCH_CLOSABLE: i64 = 1_774_976_400_000;
const BJ: &str = "H110000";
const BJ2: &str = "H110000-2";

fn code(s: &str) -> RegionCode {
    RegionCode::parse(s).expect("region")
}

fn march() -> Month {
    Month::parse("2026-03").expect("month")
}

struct World {
    _dir: tempfile::TempDir,
    nodes: BTreeMap<&'static str, Arc<Node>>,
    operator: Operator,
    node_clock: Arc<ManualClock>,
    op_clock: Arc<ManualClock>,
}

async fn settle(node: &Arc<Node>, hospital: &str, msgid: &str, psn: &str, home: &str, price: &str) -> String {
    let req = HospitalRequest {
        fixmedins_code: hospital.into(),
        msgid: msgid.into(),
        action: Action::Settle as i32,
        psn_no: psn.into(),
        insuplc_admdvs: home.into(),
        setl_date: "2026-03-05".into(),
        items: vec![BillItem { code: "XA001".into(), qty: "1".into(), price: price.into() }],
        ..Default::default()
    };
    let r = node.handle_hospital(seal(&key(hospital), HOSPITAL_DOMAIN, hospital, &req)).await.expect("settle");
    assert!(r.settled, "{r:?}");
    r.setl_id
}

/// Beijing's first hospital reverses its settlement `reversed` of `psn` by `msgid`.
async fn reverse(node: &Arc<Node>, msgid: &str, psn: &str, reversed: &str) {
    let req = HospitalRequest {
        fixmedins_code: BJ.into(),
        msgid: msgid.into(),
        action: Action::Reverse as i32,
        psn_no: psn.into(),
        insuplc_admdvs: "611000".into(),
        setl_date: "2026-03-06".into(),
        reversed_msgid: reversed.into(),
        ..Default::default()
    };
    let r = node.handle_hospital(seal(&key(BJ), HOSPITAL_DOMAIN, BJ, &req)).await.expect("reverse");
    assert!(r.settled, "{r:?}");
}

/// The world, Beijing drawing `pct`% of its settlements for review.
async fn world_sampling(pct: u32) -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = LocalNetwork::new();
    let node_clock = Arc::new(ManualClock::new(MARCH));
    let clock: Arc<dyn Clock> = node_clock.clone();
    // Beijing holds 5% for a month; its second hospital is credit-rated.
    let nodes = common::in_process_nodes_with(dir.path(), &REGIONS, clock, &net, |c| {
        c.holdback = HoldbackPolicy::new(dec!(5), Release::NextMonth).expect("5%");
        if let Some(h) = c.hospitals.get_mut(BJ2) {
            h.credit_rated = true;
        }
        c.audit_sample = xclear::clearing::audit::SamplePolicy::new(pct).expect("share");
    });
    let op_clock = Arc::new(ManualClock::new(MARCH_CLOSABLE));
    let operator = Operator::open(
        &dir.path().join("operator"),
        key("operator"),
        op_clock.clone(),
        REGIONS.iter().map(|r| (code(r), key(r).verifying_key())).collect(),
        net.clone(),
        common::rules().pairs().clone(),
        BTreeMap::new(),
    )
    .expect("operator");
    for (r, p) in [("611000", "P1"), ("611000", "P2"), ("654000", "Y1")] {
        let rec = PersonRecord {
            psn_no: p.into(),
            insuplc_admdvs: r.into(),
            insutype: "390".into(),
            retired: false,
            special_group: None,
            contribution_years: BTreeMap::new(),
            acct_balance: None,
            chronic: Vec::new(),
        };
        nodes[r].import_persons(&[rec]).await.expect("import");
    }
    for p in ["P1", "P2"] {
        let req = RegistrationRequest {
            msgid: format!("r{p}"),
            op: Op::Create as i32,
            psn_no: p.into(),
            kind: "long_term_resident".into(),
            target_admdvs: "110000".into(),
            begndate: "2026-01-01".into(),
            ..Default::default()
        };
        nodes["611000"].apply_registration(seal(&key("agency"), ADMIN_DOMAIN, "agency", &req)).await.expect("register");
    }
    World { _dir: dir, nodes, operator, node_clock, op_clock }
}

async fn confirm_all(op: &Operator, month: Month, hash: &str) {
    for r in REGIONS {
        let c = Confirmation {
            month: month.to_string(),
            region: r.into(),
            statement_hash: hash.into(),
            ..Default::default()
        };
        op.answer(seal(&key(r), CONFIRMATION_DOMAIN, r, &c)).await.expect("confirm");
    }
}

/// `as_code` asks, signing with `signer`'s key, for `code`'s statement.
fn statement_request(signer: &str, code: &str, month: Month) -> Signed {
    let req = HospitalStatementRequest { fixmedins_code: code.into(), month: month.to_string() };
    seal(&key(signer), HOSPITAL_STATEMENT_REQUEST_DOMAIN, signer, &req)
}

fn statement(node: &Node, code: &str, month: Month) -> HospitalStatement {
    let signed = node.handle_hospital_statement(&statement_request(code, code, month)).expect("statement");
    open_statement(&signed, &key("110000").verifying_key()).expect("signed by Beijing's node")
}

fn review(msgid: &str, setl_id: &str, refused: bool, amount: &str, reason: &str) -> Signed {
    let req = AuditReviewRequest {
        msgid: msgid.into(),
        month: march().to_string(),
        setl_id: setl_id.into(),
        refused,
        amount: amount.into(),
        reason: reason.into(),
    };
    seal(&key("agency"), AUDIT_DOMAIN, "agency", &req)
}

#[tokio::test]
async fn statements_add_up_holdback_returns_once_and_a_refusal_is_deducted_once() {
    // 40%: two of March's five, so at least one is not the disputed line
    // (which cannot be refused), whatever the draw.
    let w = world_sampling(40).await;
    let bj = &w.nodes["110000"];
    // March at Beijing: three bills at its first hospital, one at its
    // second, one settled and reversed; corps–local care beside.
    let disputed = settle(bj, BJ, "v0", "P1", "611000", "9000.00").await;
    settle(bj, BJ, "v1", "P2", "611000", "4000.00").await;
    settle(bj, BJ, "v2", "P1", "611000", "2500.00").await;
    settle(bj, BJ2, "v3", "P2", "611000", "3000.00").await;
    settle(bj, BJ, "v4", "P1", "611000", "1000.00").await;
    reverse(bj, "v5", "P1", "v4").await;
    settle(&w.nodes["660400"], "H660400", "c1", "Y1", "654000", "3000.00").await;

    // Closed; 商洛 disputes one of Beijing's lines; closed again, final.
    let first = w.operator.close(march()).await.expect("closed");
    let d = DisputedLine { setl_id: disputed.clone(), reason: "duplicate bill".into() };
    let c = Confirmation {
        month: march().to_string(),
        region: "611000".into(),
        statement_hash: first.hash.clone(),
        disputes: vec![d],
        withdrawn: vec![],
    };
    w.operator.answer(seal(&key("611000"), CONFIRMATION_DOMAIN, "611000", &c)).await.expect("dispute");
    let march_s = w.operator.close(march()).await.expect("reclosed");
    assert!(march_s.statement.pending.iter().any(|p| p.setl_id == disputed));
    assert!(bj.handle_hospital_statement(&statement_request(BJ, BJ, march())).is_err(), "not final yet");
    confirm_all(&w.operator, march(), &march_s.hash).await;

    // Beijing's statements of March: the disputed line is not in them.
    let m1 = statement(bj, BJ, march());
    let details = bj.institution_details(BJ, march()).expect("details");
    let cleared: Vec<_> = details.iter().filter(|d| d.setl_id != disputed).collect();
    let settled: Amount = cleared.iter().map(|d| d.fund_pay_sumamt + d.acct_pay).sum();
    assert_eq!(m1.settled, settled);
    assert_eq!(m1.totals.count, 2, "v1, v2; v4 and its reversal cancel");
    let fund: Amount = cleared.iter().map(|d| d.fund_pay_sumamt).sum();
    assert_eq!(m1.holdback, Amount::round_half_up(fund.as_decimal() * dec!(0.05)));
    assert_eq!((m1.released, m1.deductions), (Amount::ZERO, Amount::ZERO));
    assert_eq!(m1.payable, m1.settled - m1.holdback);
    let m1b = statement(bj, BJ2, march());
    assert_eq!(m1b.holdback_rate, "0.025", "credit-rated: halved");
    assert!(m1b.holdback > Amount::ZERO);
    // Only its own: another institution's key, or its own key for another's code.
    let e = bj.handle_hospital_statement(&statement_request(BJ2, BJ, march())).expect_err("another's");
    assert_eq!(e.reason(), "not_authorised");
    let forged = Signed { signer: BJ.into(), ..statement_request(BJ2, BJ, march()) };
    assert_eq!(bj.handle_hospital_statement(&forged).expect_err("forged").reason(), "bad_signature");
    let e = bj.handle_hospital_statement(&statement_request(BJ, BJ, march().next())).expect_err("not issued");
    assert_eq!(e.reason(), "no_statement");

    // The audit sample: 40% of Beijing's five March settlements is two.
    let page = bj
        .audit_sample(&seal(
            &key("agency"),
            AUDIT_DOMAIN,
            "agency",
            &AuditSampleRequest { month: march().to_string(), page: 0 },
        ))
        .expect("sample");
    assert_eq!((page.population, page.items.len(), page.pages), (5, 2, 1));
    let sampled = page.items.iter().find(|i| i.setl_id != disputed).expect("a cleared line sampled").clone();
    // The same draw from the exported ledger, by anyone holding it.
    let mut export = Vec::new();
    xclear::ledger::export::export_dir(bj.ledger().dir(), &mut export).expect("export");
    let mut inputs = xclear::node::audit::DrawInputs::new(code("110000"), march());
    xclear::ledger::export::read_entries(&mut export.as_slice(), |e| {
        inputs.note(e.frame.seq, e.body.kind, &e.body.key, &e.body.payload)
    })
    .expect("read");
    let again = inputs.draw(xclear::clearing::audit::SamplePolicy::new(40).expect("40%")).expect("draw");
    assert_eq!(again, bj.audit_draw(march()).expect("node's draw"));
    assert_eq!(hex::encode(again.seed), page.seed);
    let drawn: Vec<&str> = again.items.iter().map(|i| i.setl_id.as_str()).collect();
    assert_eq!(drawn, page.items.iter().map(|i| i.setl_id.as_str()).collect::<Vec<_>>());

    // Reviews: only a sampled settlement, at most what was paid, once.
    let paid = Amount::parse_non_negative(&sampled.fund_pay_sumamt).expect("amount")
        + Amount::parse_non_negative(&sampled.acct_pay).expect("amount");
    let other = details.iter().find(|d| page.items.iter().all(|i| i.setl_id != d.setl_id)).expect("not sampled");
    let e = bj.review(review("a0", &other.setl_id, true, "1.00", "x")).await.expect_err("not sampled");
    assert_eq!(e.reason(), "not_in_sample");
    let too_much = (paid + Amount::yuan(1)).to_string();
    let e = bj.review(review("a1", &sampled.setl_id, true, &too_much, "x")).await.expect_err("more than paid");
    assert_eq!(e.reason(), "bad_request");
    let e = bj.review(review("a2", &sampled.setl_id, true, "100.00", "")).await.expect_err("no reason");
    assert_eq!(e.reason(), "bad_request");
    let refusal = review("a3", &sampled.setl_id, true, "100.00", "unbundled charges");
    let item = bj.review(refusal.clone()).await.expect("refused");
    assert_eq!((item.outcome.as_str(), item.clearing_month.as_str()), ("refused", "2026-04"));
    assert_eq!(bj.review(refusal).await.expect("the same again"), item);
    let e = bj.review(review("a4", &sampled.setl_id, false, "", "")).await.expect_err("reviewed");
    assert_eq!(e.reason(), "already_reviewed");

    // April: one more bill; the disputed line returns, the refusal clears.
    w.node_clock.set(MARCH_CLOSABLE + 10 * 86_400_000);
    settle(bj, BJ, "v6", "P1", "611000", "500.00").await;
    w.op_clock.set(xclear::time::month_end_ms(march().next()) + 3_600_000);
    let april_s = w.operator.close(march().next()).await.expect("april");
    let adj: Vec<_> = april_s.statement.adjustments.iter().filter(|a| a.setl_id.is_some()).collect();
    assert_eq!(adj.len(), 1, "{:?}", april_s.statement.adjustments);
    assert_eq!(
        (adj[0].home, adj[0].treatment, adj[0].amount, adj[0].setl_id.as_deref()),
        (code("611000"), code("110000"), -Amount::yuan(100), Some(sampled.setl_id.as_str()))
    );
    assert_eq!(april_s.statement.positions_sum(), Amount::ZERO);
    confirm_all(&w.operator, march().next(), &april_s.hash).await;
    let m2 = statement(bj, BJ, march().next());
    let m2b = statement(bj, BJ2, march().next());
    assert_eq!(m2.released, m1.holdback, "March's holdback, once");
    assert_eq!(m2b.released, m1b.holdback);
    let sampled_at = sampled.fixmedins_code.as_str();
    for (s, c) in [(&m2, BJ), (&m2b, BJ2)] {
        let expected = if c == sampled_at { Amount::yuan(100) } else { Amount::ZERO };
        assert_eq!(s.deductions, expected, "{c}: the refusal is deducted once, from its institution");
    }
    assert!(m2.totals.count >= 2, "the returned line and April's bill");

    // Over the two months, to the fen: payable + still held = settled − deducted.
    for (c, a, b) in [(BJ, &m1, &m2), (BJ2, &m1b, &m2b)] {
        let all: Amount = [march(), march().next()]
            .iter()
            .flat_map(|m| bj.institution_details(c, *m).expect("details"))
            .map(|d| d.fund_pay_sumamt + d.acct_pay)
            .sum();
        assert_eq!(a.payable + b.payable + b.after.outstanding, all - b.deductions, "{c}");
    }
    // Nothing issued twice: asked again, nothing new.
    let len = bj.ledger().len();
    assert_eq!(bj.after_final().await.expect("again"), (0, 0));
    assert_eq!(bj.ledger().len(), len);
}

/// What the home region has not paid cannot be refused: a settlement its
/// reversal refunded, one the final statement holds out.
#[tokio::test]
async fn a_reversed_or_held_out_settlement_is_not_refused() {
    let w = world_sampling(100).await;
    let bj = &w.nodes["110000"];
    let held = settle(bj, BJ, "v0", "P1", "611000", "9000.00").await;
    let paid = settle(bj, BJ, "v1", "P2", "611000", "4000.00").await;
    let reversed = settle(bj, BJ, "v2", "P1", "611000", "1000.00").await;
    reverse(bj, "v3", "P1", "v2").await;
    let first = w.operator.close(march()).await.expect("closed");
    let c = Confirmation {
        month: march().to_string(),
        region: "611000".into(),
        statement_hash: first.hash.clone(),
        disputes: vec![DisputedLine { setl_id: held.clone(), reason: "not our patient".into() }],
        withdrawn: vec![],
    };
    w.operator.answer(seal(&key("611000"), CONFIRMATION_DOMAIN, "611000", &c)).await.expect("dispute");
    let s = w.operator.close(march()).await.expect("reclosed");
    confirm_all(&w.operator, march(), &s.hash).await;
    for (id, why) in [(&held, "held out"), (&reversed, "reversed")] {
        let e = bj.review(review(&format!("x{id}"), id, true, "1.00", "x")).await.expect_err(why);
        assert_eq!(e.reason(), "bad_request", "{why}");
        assert!(e.to_string().contains(why), "{e}");
        // Accepting it is fine.
        bj.review(review(&format!("y{id}"), id, false, "", "")).await.expect("accepted");
    }
    let item = bj.review(review("z", &paid, true, "1.00", "x")).await.expect("a paid settlement");
    assert_eq!(item.outcome, "refused");
}
