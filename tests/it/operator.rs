//! The clearing operator over a federation in one process: signed reports,
//! statements with node heads, confirmations, disputes, carried items.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;

use xclear::api::envelope::{
    open, peek, seal, ADMIN_DOMAIN, CLAIM_DOMAIN, CONFIRMATION_DOMAIN, HOSPITAL_DOMAIN, LINES_DOMAIN, OPERATOR_DOMAIN,
};
use xclear::clearing::{Amounts, Channel, Line, Month, PendingReason};
use xclear::clock::{Clock, ManualClock};
use xclear::federation::LocalNetwork;
use xclear::ledger::entry::MAX_PAYLOAD_BYTES;
use xclear::money::Amount;
use xclear::node::clearing_side::MAX_LINES_PER_PAGE;
use xclear::node::records::PersonRecord;
use xclear::node::records::{to_payload, EnvelopeRecord};
use xclear::node::Node;
use xclear::node::{BoxFuture, TransportError};
use xclear::operator::{Operator, ReportTransport};
use xclear::proto::{
    hospital_request::Action, registration_request::Op, BillItem, Claim, Confirmation, DisputedLine, HospitalRequest,
    LineList, LinesRequest, RegistrationRequest, ReportRequest, Signed,
};
use xclear::region::RegionCode;

const REGIONS: [&str; 4] = ["611000", "110000", "654000", "660400"];
const MARCH: i64 = 1_772_676_000_000;
/// 2026-04-01 01:00 Asia/Shanghai: March's end plus the operator's hour of grace.
const MARCH_CLOSABLE: i64 = 1_774_976_400_000;

fn code(s: &str) -> RegionCode {
    RegionCode::parse(s).expect("region")
}

use crate::common::key;

struct World {
    _dir: tempfile::TempDir,
    nodes: BTreeMap<&'static str, Arc<Node>>,
    operator: Operator,
    net: Arc<LocalNetwork>,
    /// The nodes' clock (the operator keeps its own, after March).
    clock: Arc<ManualClock>,
}

async fn world() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = LocalNetwork::new();
    let node_clock = Arc::new(ManualClock::new(MARCH));
    let clock: Arc<dyn Clock> = node_clock.clone();
    let nodes = common::in_process_nodes(dir.path(), &REGIONS, Arc::clone(&clock), &net);
    let operator = open_operator(&dir.path().join("operator"), net.clone());
    // Traffic: 商洛 patients in Beijing, corps–local care both ways.
    let persons = [("611000", "P1"), ("611000", "P2"), ("654000", "Y1"), ("660400", "B1")];
    for (r, p) in persons {
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
    let visits = [
        ("110000", "P1", "611000", "9000.00"),
        ("110000", "P2", "611000", "4000.00"),
        ("110000", "P1", "611000", "2500.00"),
        ("654000", "B1", "660400", "6000.00"),
        ("660400", "Y1", "654000", "3000.00"),
    ];
    for (i, (t, p, home, price)) in visits.iter().enumerate() {
        let req = HospitalRequest {
            fixmedins_code: format!("H{t}"),
            msgid: format!("v{i}"),
            action: Action::Settle as i32,
            psn_no: p.to_string(),
            insuplc_admdvs: home.to_string(),
            setl_date: "2026-03-05".into(),
            items: vec![BillItem { code: "XA001".into(), qty: "1".into(), price: price.to_string() }],
            ..Default::default()
        };
        let r = nodes[t]
            .handle_hospital(seal(&key(&req.fixmedins_code), HOSPITAL_DOMAIN, &req.fixmedins_code, &req))
            .await
            .expect("settle");
        assert!(r.settled, "{r:?}");
    }
    World { _dir: dir, nodes, operator, net, clock: node_clock }
}

/// An operator of the world's regions, on its own ledger in `dir`, its
/// clock at the moment March may close.
fn open_operator(dir: &std::path::Path, transport: Arc<dyn ReportTransport>) -> Operator {
    open_operator_at(dir, transport, Arc::new(ManualClock::new(MARCH_CLOSABLE)))
}

fn open_operator_at(dir: &std::path::Path, transport: Arc<dyn ReportTransport>, clock: Arc<ManualClock>) -> Operator {
    Operator::open(
        dir,
        key("operator"),
        clock,
        REGIONS.iter().map(|r| (code(r), key(r).verifying_key())).collect(),
        transport,
        common::rules().pairs().clone(),
        [(code("611000"), Amount::yuan(100_000))].into_iter().collect(),
    )
    .expect("operator")
}

/// An operator deduction (拒付) of `yuan` from what 611000 owes 110000.
fn deduction(yuan: i64, reason: &str) -> xclear::clearing::netting::Adjustment {
    xclear::clearing::netting::Adjustment {
        home: code("611000"),
        treatment: code("110000"),
        amount: -Amount::yuan(yuan),
        reason: reason.into(),
        setl_id: None,
    }
}

fn march() -> Month {
    Month::parse("2026-03").expect("month")
}

fn answer(region: &str, hash: &str, disputes: Vec<DisputedLine>) -> xclear::proto::Signed {
    answer_signed_by(region, region, hash, disputes)
}

/// An answer for `region`'s statement of March, signed with `signer`'s key.
fn answer_signed_by(signer: &str, region: &str, hash: &str, disputes: Vec<DisputedLine>) -> xclear::proto::Signed {
    let c = Confirmation {
        month: "2026-03".into(),
        region: region.into(),
        statement_hash: hash.into(),
        disputes,
        withdrawn: vec![],
    };
    seal(&key(signer), CONFIRMATION_DOMAIN, region, &c)
}

/// `region` withdraws its dispute of `setl_id` on the statement `hash` of `month`.
fn withdrawal(region: &str, month: Month, hash: &str, setl_id: &str) -> xclear::proto::Signed {
    let c = Confirmation {
        month: month.to_string(),
        region: region.into(),
        statement_hash: hash.into(),
        disputes: vec![],
        withdrawn: vec![setl_id.into()],
    };
    seal(&key(region), CONFIRMATION_DOMAIN, region, &c)
}

/// Every region confirms the statement `hash` of `month`.
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

#[tokio::test]
async fn the_operator_closes_confirms_and_handles_disputes() {
    let w = world().await;
    let closed = w.operator.close(march()).await.expect("closed");
    let s = &closed.statement;
    assert_eq!(s.positions_sum(), Amount::ZERO);
    assert!(s.pending.is_empty());
    assert_eq!(s.node_heads.len(), 4, "the statement carries every node's head");
    // The head as the node sealed March: its seal (holding the report) follows it.
    assert_eq!(s.node_heads[&code("611000")].size + 1, w.nodes["611000"].ledger().head().size);
    assert_eq!(s.corps_local.len(), 1);
    assert_eq!(s.pairs.iter().map(|p| p.count).sum::<u64>(), 5);
    assert!(s.positions[&code("110000")].net > Amount::ZERO && s.positions[&code("611000")].net.is_negative());
    // The statement is signed over its canonical bytes, and closing again gives the same bytes.
    let again = w.operator.close(march()).await.expect("again");
    assert_eq!(again.signed.body, closed.signed.body);
    assert_eq!(again.hash, closed.hash);
    assert!(xclear::crypto::verify(
        &key("operator").verifying_key(),
        xclear::api::envelope::STATEMENT_DOMAIN,
        &closed.signed.body,
        &ed25519_dalek::Signature::from_bytes(&closed.signed.signature.clone().try_into().expect("64"))
    ));

    // Confirmations: final only when every region confirmed this statement.
    for r in ["110000", "654000", "660400"] {
        w.operator.answer(answer(r, &closed.hash, vec![])).await.expect("confirm");
        assert!(!w.operator.is_final(&closed).expect("status"));
    }
    // A region cannot answer for another.
    let forged = answer_signed_by("654000", "660400", &closed.hash, vec![]);
    assert_eq!(w.operator.answer(forged).await.expect_err("forged").reason(), "bad_signature");

    // 商洛 disputes one line instead of confirming: exactly that line leaves the month.
    let (_, home_lines) = w.nodes["611000"].month_lines(march()).expect("lines");
    let disputed = home_lines[0].setl_id.clone();
    w.operator
        .answer(answer(
            "611000",
            &closed.hash,
            vec![DisputedLine { setl_id: disputed.clone(), reason: "duplicate bill".into() }],
        ))
        .await
        .expect("dispute");
    // A region answers a statement once.
    assert_eq!(
        w.operator.answer(answer("611000", &closed.hash, vec![])).await.expect_err("twice").reason(),
        "bad_request"
    );
    assert!(!w.operator.is_final(&closed).expect("status"));
    let reclosed = w.operator.close(march()).await.expect("reclosed with the dispute");
    assert_eq!(reclosed.statement.pending.len(), 1);
    assert_eq!(reclosed.statement.pending[0].setl_id, disputed);
    assert_eq!(reclosed.statement.pending[0].reason, PendingReason::Disputed);
    assert_eq!(reclosed.statement.positions_sum(), Amount::ZERO);
    assert_eq!(reclosed.statement.pairs.iter().map(|p| p.count).sum::<u64>(), 4);
    assert_ne!(reclosed.hash, closed.hash);
    confirm_all(&w.operator, march(), &reclosed.hash).await;
    assert!(w.operator.is_final(&reclosed).expect("status"));
}

/// Issue 21, defect 1: a line disputed in March was credited twice in April
/// (once as an adjustment, once re-fetched as a line). It comes back once,
/// as a line of its own month, and nowhere else.
#[tokio::test]
async fn a_disputed_line_is_paid_once_the_next_month_as_a_line() {
    let w = world().await;
    let clock = Arc::new(ManualClock::new(MARCH_CLOSABLE));
    let op = open_operator_at(&w._dir.path().join("operator-disputes"), w.net.clone(), clock.clone());
    let march_s = op.close(march()).await.expect("closed");
    let (_, home_lines) = w.nodes["611000"].month_lines(march()).expect("lines");
    let line = home_lines.iter().find(|l| l.treatment == code("110000")).expect("a Beijing line").clone();
    let dispute = DisputedLine { setl_id: line.setl_id.clone(), reason: "duplicate bill".into() };
    op.answer(answer("611000", &march_s.hash, vec![dispute])).await.expect("dispute");
    let march_s = op.close(march()).await.expect("reclosed");
    confirm_all(&op, march(), &march_s.hash).await;
    let beijing = |s: &xclear::clearing::Statement| s.positions.get(&code("110000")).map(|p| p.receivable);
    let march_receivable = beijing(&march_s.statement).expect("Beijing in March");

    // April: no traffic of its own; the disputed line returns, exactly once.
    w.clock.set(MARCH_CLOSABLE + 20 * 86_400_000);
    clock.set(xclear::time::month_end_ms(march().next()) + 3_600_000);
    let april = op.close(march().next()).await.expect("april");
    let s = &april.statement;
    assert!(s.adjustments.is_empty(), "not also an adjustment: {:?}", s.adjustments);
    assert_eq!(s.dispute_rule, xclear::clearing::statement::DISPUTE_RULE);
    assert_eq!(beijing(s), Some(line.amounts.fund_pay_sumamt), "Beijing is paid the line once, not twice");
    assert_eq!(s.positions[&code("611000")].payable, line.amounts.fund_pay_sumamt);
    assert_eq!(s.pairs.len(), 1);
    assert_eq!((s.pairs[0].month, s.pairs[0].count), (march(), 1), "a line of March, cleared in April");
    assert_eq!(
        s.pairs[0].ids_root,
        hex::encode(xclear::clearing::lines::ids_root(std::slice::from_ref(&line.setl_id)))
    );
    assert!(s.pending.is_empty());
    assert_eq!(s.positions_sum(), Amount::ZERO);
    // Over both months Beijing is owed every March line once.
    let all: Amount =
        home_lines.iter().filter(|l| l.treatment == code("110000")).map(|l| l.amounts.fund_pay_sumamt).sum();
    assert_eq!(march_receivable + beijing(s).expect("april"), all);
}

/// A line disputed again stays out; a dispute withdrawn before the month is
/// final returns the line to it, once.
#[tokio::test]
async fn a_withdrawn_dispute_returns_the_line_once_and_a_final_month_is_not_disputed() {
    let w = world().await;
    let first = w.operator.close(march()).await.expect("closed");
    let (_, home_lines) = w.nodes["611000"].month_lines(march()).expect("lines");
    let id = home_lines[0].setl_id.clone();
    let dispute = DisputedLine { setl_id: id.clone(), reason: "duplicate bill".into() };
    w.operator.answer(answer("611000", &first.hash, vec![dispute.clone()])).await.expect("dispute");
    let out = w.operator.close(march()).await.expect("reclosed");
    assert!(out.statement.pending.iter().any(|p| p.setl_id == id));
    w.operator.answer(withdrawal("611000", march(), &out.hash, &id)).await.expect("withdraw");
    let back = w.operator.close(march()).await.expect("reclosed");
    assert!(back.statement.pending.is_empty(), "{:?}", back.statement.pending);
    let as_first = xclear::clearing::Statement {
        revision: first.statement.revision,
        answers_applied: first.statement.answers_applied,
        ..back.statement.clone()
    };
    assert_eq!(back.statement.answers_applied, 2, "the dispute and its withdrawal");
    assert_eq!(as_first, first.statement, "the lines as before the dispute");
    assert_eq!((first.statement.revision, out.statement.revision, back.statement.revision), (1, 2, 3));
    // Disputed again on the same statement: out again.
    w.operator.answer(answer("611000", &back.hash, vec![dispute.clone()])).await.expect("dispute again");
    let again = w.operator.close(march()).await.expect("reclosed");
    assert_eq!(again.statement.pending.len(), 1);
    // A line that is no settlement id is refused; a well-formed id of no
    // line of the month changes nothing, but gives a revision to confirm.
    let malformed = DisputedLine { setl_id: String::new(), reason: "typo".into() };
    let e = w.operator.answer(answer("654000", &again.hash, vec![malformed])).await.expect_err("no id");
    assert_eq!(e.reason(), "bad_request", "{e}");
    let nothing = DisputedLine { setl_id: "S654000ffffffffffffffff".into(), reason: "typo".into() };
    w.operator.answer(answer("654000", &again.hash, vec![nothing])).await.expect("dispute of no line");
    let again = w.operator.close(march()).await.expect("reclosed");
    assert_eq!(again.statement.pending.len(), 1, "nothing else moved");
    confirm_all(&w.operator, march(), &again.hash).await;
    // Final: no more disputes of March, and no re-close.
    let late = w.operator.answer(answer("654000", &again.hash, vec![dispute])).await.expect_err("final");
    assert_eq!(late.reason(), "month_final", "{late}");
    let reclose = w.operator.close(march()).await.expect_err("final");
    assert_eq!(reclose.reason(), "month_final", "{reclose}");
    assert_eq!(reclose.code(), tonic::Code::FailedPrecondition);
}

/// Issue 21, defect 2: a month closed before it was over (even in the
/// future), and a settlement committed into a month after its statement was
/// final appeared in no statement. The operator closes only months that are
/// over; a node's report seals its month, and a home node whose clock is
/// still in that month commits into the next one, which is cleared.
#[tokio::test]
async fn only_a_month_that_is_over_closes_and_a_late_commit_lands_in_the_next_month() {
    let w = world().await;
    let clock = Arc::new(ManualClock::new(1_774_971_000_000)); // 2026-03-31 23:30 Asia/Shanghai
    let op = open_operator_at(&w._dir.path().join("operator-early"), w.net.clone(), clock.clone());
    for (at, month) in [(1_774_971_000_000, march()), (1_774_974_600_000, march()), (MARCH_CLOSABLE, march().next())] {
        clock.set(at);
        let e = op.close(month).await.expect_err("not over");
        assert_eq!(e.reason(), "month_not_over", "{month} at {at}: {e}");
        assert!(e.to_string().contains("Asia/Shanghai"), "{e}");
    }
    let future = op.close(Month::parse("2027-01").expect("month")).await.expect_err("the future");
    assert_eq!(future.reason(), "month_not_over");
    assert!(op.statement_of(march()).expect("read").is_none(), "nothing was closed");

    // The hour of grace has passed by the operator's clock; 商洛's clock
    // still says 23:50 on March 31.
    clock.set(MARCH_CLOSABLE);
    w.clock.set(1_774_972_200_000);
    let s = op.close(march()).await.expect("closed");
    confirm_all(&op, march(), &s.hash).await;
    assert!(op.is_final(&s).expect("final"));
    assert!(w.nodes["611000"].sealed_months().contains(&march()));
    let settle = |msgid: &str| HospitalRequest {
        fixmedins_code: "H110000".into(),
        msgid: msgid.into(),
        action: Action::Settle as i32,
        psn_no: "P1".into(),
        insuplc_admdvs: "611000".into(),
        setl_date: "2026-03-31".into(),
        items: vec![BillItem { code: "XA001".into(), qty: "1".into(), price: "700.00".into() }],
        ..Default::default()
    };
    let req = settle("late");
    let r = w.nodes["110000"]
        .handle_hospital(seal(&key("H110000"), HOSPITAL_DOMAIN, "H110000", &req))
        .await
        .expect("settled");
    assert!(r.settled, "{r:?}");
    assert_eq!(r.month, "2026-04", "sealed March is not committed into");
    // March's report is the sealed one: the same bytes however often asked.
    let again = op.close(march()).await.expect_err("final");
    assert_eq!(again.reason(), "month_final");
    // April clears it.
    w.clock.set(MARCH_CLOSABLE + 20 * 86_400_000);
    clock.set(xclear::time::month_end_ms(march().next()) + 3_600_000);
    let april = op.close(march().next()).await.expect("april");
    let fund = Amount::parse_non_negative(&r.figures.expect("figures").fund_pay_sumamt).expect("amount");
    assert_eq!(april.statement.positions[&code("110000")].receivable, fund);
    assert_eq!(april.statement.pairs.iter().map(|p| p.count).sum::<u64>(), 1);
}

/// Months close in order, each after the previous one is final.
#[tokio::test]
async fn a_month_waits_for_the_previous_one_to_be_final() {
    let w = world().await;
    let clock = Arc::new(ManualClock::new(xclear::time::month_end_ms(march().next()) + 3_600_000));
    w.clock.set(MARCH_CLOSABLE + 20 * 86_400_000);
    let op = open_operator_at(&w._dir.path().join("operator-order"), w.net.clone(), clock);
    assert_eq!(op.next_month_due().expect("due"), march().next(), "nothing closed: the last month over");
    let s = op.close(march()).await.expect("march");
    assert_eq!(op.next_month_due().expect("due"), march(), "march until it is final");
    let e = op.close(march().next()).await.expect_err("march is not final");
    assert_eq!(e.reason(), "month_out_of_order");
    assert!(e.to_string().contains("awaits"), "{e}");
    confirm_all(&op, march(), &s.hash).await;
    assert_eq!(op.next_month_due().expect("due"), march().next());
    op.close(march().next()).await.expect("april, after march is final");
    // A month before a closed one is not closed afterwards: what it held
    // out would be carried into a month already cleared.
    let february = march().previous();
    let e = op.close(february).await.expect_err("before a closed month");
    assert_eq!(e.reason(), "month_out_of_order", "{e}");
    assert!(op.statement_of(february).expect("read").is_none());
}

/// The home region commits a claim whose outcome the treatment side never
/// recorded, so the (611000, 110000) pair differs and is matched line by line.
async fn lose_an_outcome(w: &World) {
    let claim = Claim {
        mdtrtarea_admvs: "110105".into(),
        fixmedins_code: "H110000".into(),
        hosp_lv: 3,
        msgid: "lost".into(),
        action: Action::Settle as i32,
        psn_no: "P2".into(),
        insuplc_admdvs: "611000".into(),
        setl_date: "2026-03-05".into(),
        medfee_sumamt: "1000.00".into(),
        fulamt_ownpay_amt: "0.00".into(),
        overlmt_selfpay: "0.00".into(),
        preselfpay_amt: "0.00".into(),
        inscp_scp_amt: "1000.00".into(),
        ..Default::default()
    };
    w.nodes["611000"]
        .handle_claim(seal(&key("110000"), CLAIM_DOMAIN, "110000", &claim))
        .await
        .expect("committed at home");
}

#[tokio::test]
async fn a_line_missing_at_the_treatment_side_is_held_out_and_carried() {
    let w = world().await;
    lose_an_outcome(&w).await;
    let closed = w.operator.close(march()).await.expect("closed");
    assert_eq!(closed.statement.pending.len(), 1);
    assert_eq!(closed.statement.pending[0].reason, PendingReason::MissingAtTreatment);
    assert_eq!(closed.statement.positions_sum(), Amount::ZERO);
    // Only the unmatched pair was examined line by line; the others cleared on their summaries.
    assert_eq!(closed.statement.pairs.iter().map(|p| p.count).sum::<u64>(), 5);
}

#[tokio::test]
async fn a_pair_s_lines_come_in_pages_that_join_to_the_whole() {
    let w = world().await;
    lose_an_outcome(&w).await;
    let node = &w.nodes["611000"];
    let (_, all_home) = node.month_lines(march()).expect("lines");
    let want: Vec<_> = all_home.iter().filter(|l| l.treatment == code("110000")).cloned().collect();
    assert_eq!(want.len(), 4);
    // Pages of two lines, each signed by the node and naming the request it answers.
    let mut got = Vec::new();
    let mut from_index = 0;
    let mut pages = 0;
    loop {
        let req = LinesRequest {
            month: "2026-03".into(),
            counterpart: "110000".into(),
            as_treatment: false,
            from_index,
            limit: 2,
        };
        let env = node.handle_lines_request(seal(&key("operator"), OPERATOR_DOMAIN, "operator", &req)).expect("page");
        let page: LineList = open(&env, &key("611000").verifying_key(), LINES_DOMAIN).expect("signed by the node");
        assert_eq!((page.from_index, page.counterpart.as_str(), page.as_treatment), (from_index, "110000", false));
        assert!(page.lines.len() <= 2);
        got.extend(page.lines.iter().map(|l| xclear::api::convert::line_from_proto(l).expect("line")));
        pages += 1;
        if !page.more {
            break;
        }
        assert!(page.next_index > from_index, "each page moves forward");
        from_index = page.next_index;
    }
    assert_eq!(pages, 2, "four lines in pages of two: no empty third page");
    assert_eq!(got, want);
    // Past the end: an empty last page.
    let req = LinesRequest {
        month: "2026-03".into(),
        counterpart: "110000".into(),
        as_treatment: false,
        from_index: node.ledger().head().size + 10,
        limit: 0,
    };
    let env = node.handle_lines_request(seal(&key("operator"), OPERATOR_DOMAIN, "operator", &req)).expect("page");
    let page: LineList = open(&env, &key("611000").verifying_key(), LINES_DOMAIN).expect("signed");
    assert!(page.lines.is_empty() && !page.more);

    // The operator closing with pages of one line issues the very statement
    // it issues with whole pages.
    let whole = w.operator.close(march()).await.expect("closed");
    let dir = tempfile::tempdir().expect("tempdir");
    let paged = open_operator(dir.path(), w.net.clone()).with_lines_page(1);
    let by_ones = paged.close(march()).await.expect("closed in pages");
    assert_eq!(by_ones.signed.body, whole.signed.body);
    assert_eq!(by_ones.statement.pending.len(), 1);
    // Every page the operator received is on its ledger: four lines of the
    // home side and three of the treatment side, one page each.
    let mut pages = BTreeMap::<String, usize>::new();
    paged
        .ledger()
        .for_each(0, |e| {
            if let Some(rest) = e.body.key.strip_prefix("lines:2026-03:") {
                *pages.entry(rest.split(':').take(3).collect::<Vec<_>>().join(":")).or_default() += 1;
            }
            Ok(())
        })
        .expect("ledger");
    let want: BTreeMap<String, usize> =
        [("110000:611000:t".to_string(), 3), ("611000:110000:h".to_string(), 4)].into_iter().collect();
    assert_eq!(pages, want);
}

#[test]
fn a_full_page_of_the_longest_lines_fits_on_the_operator_s_ledger() {
    let most = -Amount::round_half_up(xclear::money::MAX_INPUT_AMOUNT);
    let line = Line {
        setl_id: format!("S611000{}", "f".repeat(16)),
        home: code("611000"),
        treatment: code("110000"),
        channel: Channel::National,
        month: march(),
        amounts: Amounts {
            medfee_sumamt: most,
            hifp_pay: most,
            hifmi_pay: most,
            hifob_pay: most,
            maf_pay: most,
            fund_pay_sumamt: most,
            acct_pay: most,
            by_type: xclear::clearing::TypeSplit { outpatient: most, chronic: most, pharmacy: most, inpatient: most },
        },
        med_type: xclear::med_type::MedType::DEFAULT,
        count: 1,
    };
    let page = LineList {
        region: "611000".into(),
        month: "2026-03".into(),
        lines: vec![xclear::api::convert::line_to_proto(&line); MAX_LINES_PER_PAGE],
        counterpart: "110000".into(),
        as_treatment: false,
        from_index: u64::MAX,
        more: true,
        next_index: u64::MAX,
    };
    let env = seal(&key("611000"), LINES_DOMAIN, "611000", &page);
    let payload = to_payload(&EnvelopeRecord::from(&env));
    assert!(payload.len() <= MAX_PAYLOAD_BYTES, "{} bytes", payload.len());
    assert!(env.body.len() * 2 > MAX_PAYLOAD_BYTES / 2, "the page size is not far below what fits");
}

#[tokio::test]
async fn a_reopened_operator_finds_its_statements_answers_and_adjustments() {
    let w = world().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let op = open_operator(dir.path(), w.net.clone());
    let first = op.close(march()).await.expect("closed");
    let (_, home_lines) = w.nodes["611000"].month_lines(march()).expect("lines");
    let disputed = DisputedLine { setl_id: home_lines[0].setl_id.clone(), reason: "duplicate bill".into() };
    op.answer(answer("611000", &first.hash, vec![disputed])).await.expect("dispute");
    let deduction = deduction(100, "audit refusal");
    op.adjust(march(), deduction.clone()).await.expect("adjust");
    let second = op.close(march()).await.expect("closed with the dispute and the deduction");
    assert_ne!(second.hash, first.hash);
    for r in REGIONS {
        op.answer(answer(r, &second.hash, vec![])).await.expect("confirm");
    }
    assert!(op.is_final(&second).expect("final"));
    drop(op);

    // Reopened from its ledger alone: the same latest statement, finality,
    // disputes and adjustments.
    let op = open_operator(dir.path(), w.net.clone());
    let latest = op.statement_of(march()).expect("read").expect("a statement");
    assert_eq!(latest.hash, second.hash);
    assert_eq!(latest.signed.body, second.signed.body);
    assert!(op.is_final(&latest).expect("final"));
    assert!(!op.is_final(&first).expect("the first was never confirmed by all"));
    let disputes = op.disputes_of(march()).expect("disputes");
    assert_eq!(disputes.len(), 1);
    assert_eq!(disputes[0].setl_id, home_lines[0].setl_id);
    assert_eq!(op.adjustments_of(march()).expect("adjustments"), vec![deduction]);
    assert!(op.statement_of(march().next()).expect("read").is_none());
    // Final, so not closed again, however reopened.
    assert_eq!(op.close(march()).await.expect_err("final").reason(), "month_final");
}

/// A node that answers every request for lines with the first page.
struct FirstPageOnly(Arc<LocalNetwork>);

impl ReportTransport for FirstPageOnly {
    fn month_report(&self, to: RegionCode, req: Signed) -> BoxFuture<'_, Result<Signed, TransportError>> {
        self.0.month_report(to, req)
    }

    fn lines(&self, to: RegionCode, req: Signed) -> BoxFuture<'_, Result<Signed, TransportError>> {
        let mut r: LinesRequest = peek(&req).expect("a lines request");
        r.from_index = 0;
        self.0.lines(to, seal(&key("operator"), OPERATOR_DOMAIN, "operator", &r))
    }

    fn final_statement(&self, to: RegionCode, notice: Signed) -> BoxFuture<'_, Result<(), TransportError>> {
        self.0.final_statement(to, notice)
    }
}

/// The nodes hold each month's final statement (the start of their
/// institutions' statements and audit samples): sent as the last region
/// confirms, and again before the next month closes; kept once; only the
/// operator's, for the month it names.
#[tokio::test]
async fn every_node_holds_the_final_statement_once() {
    use xclear::api::envelope::{FINAL_DOMAIN, STATEMENT_DOMAIN};
    use xclear::proto::FinalNotice;
    let w = world().await;
    let closed = w.operator.close(march()).await.expect("closed");
    for r in REGIONS {
        assert!(w.nodes[r].final_statement(march()).expect("read").is_none(), "not final yet");
    }
    confirm_all(&w.operator, march(), &closed.hash).await;
    for r in REGIONS {
        let held = w.nodes[r].final_statement(march()).expect("read").expect("held");
        assert_eq!(held, closed.signed, "{r} holds the final statement");
    }
    // Sent again (the next close does): acknowledged, kept once.
    let len = w.nodes["611000"].ledger().len();
    let notice = FinalNotice { month: march().to_string(), statement: Some(closed.signed.clone()) };
    let again = seal(&key("operator"), FINAL_DOMAIN, "operator", &notice);
    w.nodes["611000"].handle_final_statement(again).await.expect("the same statement");
    assert_eq!(w.nodes["611000"].ledger().len(), len);
    // Another statement for the month, a region's key, a notice for another month: refused.
    let other = seal(&key("operator"), STATEMENT_DOMAIN, "operator", &FinalNotice::default());
    let different = FinalNotice { statement: Some(other), ..notice.clone() };
    let e =
        w.nodes["611000"].handle_final_statement(seal(&key("operator"), FINAL_DOMAIN, "operator", &different)).await;
    assert_eq!(e.expect_err("not a statement").reason(), "bad_request");
    let e = w.nodes["611000"].handle_final_statement(seal(&key("611000"), FINAL_DOMAIN, "operator", &notice)).await;
    assert_eq!(e.expect_err("a region's key").reason(), "bad_signature");
    let april = FinalNotice { month: march().next().to_string(), ..notice };
    let e = w.nodes["611000"].handle_final_statement(seal(&key("operator"), FINAL_DOMAIN, "operator", &april)).await;
    assert_eq!(e.expect_err("another month").reason(), "bad_request");
    assert_eq!(w.nodes["611000"].ledger().len(), len);
}

#[tokio::test]
async fn a_page_answering_another_request_is_refused_not_looped_on() {
    let w = world().await;
    lose_an_outcome(&w).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let op = open_operator(dir.path(), Arc::new(FirstPageOnly(w.net.clone()))).with_lines_page(1);
    let e = op.close(march()).await.expect_err("a replayed page");
    assert_eq!(e.reason(), "bad_region_answer", "{e}");
    assert!(e.to_string().contains("another request"), "{e}");
}

#[tokio::test]
async fn only_the_operator_may_ask_for_reports() {
    let w = world().await;
    let req = ReportRequest { month: "2026-03".into(), seal: true };
    let forged = seal(&key("110000"), OPERATOR_DOMAIN, "operator", &req);
    assert_eq!(
        w.nodes["611000"].handle_report_request(forged).await.expect_err("not the operator").reason(),
        "bad_signature"
    );
    assert!(w.nodes["611000"].sealed_months().is_empty(), "a forged request seals nothing");
    let genuine = seal(&key("operator"), OPERATOR_DOMAIN, "operator", &req);
    let sealed = w.nodes["611000"].handle_report_request(genuine.clone()).await.expect("sealed");
    assert_eq!(w.nodes["611000"].sealed_months(), vec![march()]);
    // A sealed month's report is the one signed at the seal.
    assert_eq!(w.nodes["611000"].handle_report_request(genuine).await.expect("again"), sealed);
    // A month that has not begun at the node is not sealed.
    let may = ReportRequest { month: "2026-05".into(), seal: true };
    let e = w.nodes["611000"]
        .handle_report_request(seal(&key("operator"), OPERATOR_DOMAIN, "operator", &may))
        .await
        .expect_err("not begun");
    assert_eq!(e.reason(), "bad_request", "{e}");
}

#[tokio::test]
async fn an_operator_deduction_enters_the_statement_with_its_reason() {
    let w = world().await;
    let before = w.operator.close(march()).await.expect("closed");
    let deduction = deduction(1200, "audit refusal: item not covered");
    w.operator.adjust(march(), deduction).await.expect("recorded");
    let after = w.operator.close(march()).await.expect("closed again");
    assert_eq!(after.statement.adjustments.len(), 1);
    assert_eq!(after.statement.adjustments[0].reason, "audit refusal: item not covered");
    let net = |s: &xclear::clearing::Statement, r: &str| s.positions[&code(r)].net;
    assert_eq!(net(&after.statement, "110000"), net(&before.statement, "110000") - Amount::yuan(1200));
    assert_eq!(after.statement.positions_sum(), Amount::ZERO);
    // Without a reason, or for a region not in the federation, it is refused.
    let no_reason = xclear::clearing::netting::Adjustment {
        home: code("611000"),
        treatment: code("110000"),
        amount: Amount::yuan(1),
        reason: " ".into(),
        setl_id: None,
    };
    assert_eq!(w.operator.adjust(march(), no_reason).await.expect_err("reason").reason(), "bad_request");
}

/// The operator's instant advance-fund query (not only at month end): the
/// warning fires when the uncleared payable reaches the threshold, and not
/// a cent before.
#[tokio::test]
async fn the_advance_warning_fires_through_the_operator_at_the_threshold_and_not_a_cent_before() {
    let w = world().await;
    let status = w.operator.advance(march(), 100).await.expect("advance");
    let home = status.iter().find(|s| s.region == code("611000")).expect("611000 has a quota");
    let usage = home.usage;
    assert!(usage > Amount::ZERO, "the March settlements count as uncleared payable");
    assert!(!home.warning, "far below the 100,000 quota");
    let cent = Amount::parse_non_negative("0.01").expect("cent");
    let with_quota = |quota: Amount| {
        Operator::open(
            &w._dir.path().join(format!("operator-{quota}")),
            key("operator"),
            Arc::new(ManualClock::new(MARCH)),
            REGIONS.iter().map(|r| (code(r), key(r).verifying_key())).collect(),
            w.net.clone(),
            common::rules().pairs().clone(),
            [(code("611000"), quota)].into_iter().collect(),
        )
        .expect("operator")
    };
    // Threshold at 100% of the quota: a quota one cent above the usage does not warn; equal to it does.
    let above = with_quota(usage + cent).advance(march(), 100).await.expect("advance");
    assert!(!above[0].warning, "{above:?}");
    let at = with_quota(usage).advance(march(), 100).await.expect("advance");
    assert!(at[0].warning, "{at:?}");
}

/// `xclear operator`'s service, in process: only the operator's key closes a
/// month or adjusts one; regions answer with their own keys; the statement
/// is served as closed; and quotas not configured default to 2 × the average
/// monthly payable of the three statements before the month, read from the
/// operator's own ledger.
#[tokio::test]
async fn the_operator_server_closes_answers_and_defaults_quotas_from_its_statements() {
    use tonic::Code;
    use xclear::api::envelope::{ADJUSTMENT_DOMAIN, CLOSE_DOMAIN};
    use xclear::proto::operator_service_client::OperatorServiceClient;
    use xclear::proto::{AdjustmentRequest, AdvanceRequest, CloseRequest, StatementRequest};

    let w = world().await;
    let statements = w._dir.path().join("operator-statements");
    let op = Arc::new(
        Operator::open(
            &w._dir.path().join("operator-server"),
            key("operator"),
            Arc::new(ManualClock::new(MARCH_CLOSABLE)),
            REGIONS.iter().map(|r| (code(r), key(r).verifying_key())).collect(),
            w.net.clone(),
            common::rules().pairs().clone(),
            BTreeMap::new(),
        )
        .expect("operator")
        .with_statement_files(statements.clone()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = xclear::operator::grpc::spawn_serve(Arc::clone(&op), 90, listener, None);
    let mut client = OperatorServiceClient::connect(format!("http://{addr}")).await.expect("connect");
    let month = |m: &str| AdvanceRequest { month: m.into() };

    // Reflection (v1 and v1alpha) lists what the operator serves, and no node service.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let served = [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "xclear.v1.OperatorService",
    ];
    assert_eq!(crate::node_grpc::reflection_v1(channel.clone()).await, served);
    assert_eq!(crate::node_grpc::reflection_v1alpha(channel).await, served);

    // Nothing configured, nothing closed: no quotas yet, no statement.
    assert!(client.advance(month("2026-04")).await.expect("advance").into_inner().lines.is_empty());
    let missing = client.statement(StatementRequest { month: "2026-03".into() }).await.expect_err("not closed");
    assert_eq!(missing.code(), Code::NotFound);

    // Only the operator's key closes a month or records an adjustment.
    let close = CloseRequest { month: "2026-03".into() };
    let by_region = client.close(seal(&key("611000"), CLOSE_DOMAIN, "operator", &close)).await.expect_err("region");
    assert_eq!(by_region.code(), Code::PermissionDenied);
    let adjustment = AdjustmentRequest {
        month: "2026-03".into(),
        home: "611000".into(),
        treatment: "110000".into(),
        amount: "-100.00".into(),
        reason: "audit refusal".into(),
        setl_id: String::new(),
    };
    let forged = client.adjust(seal(&key("110000"), ADJUSTMENT_DOMAIN, "operator", &adjustment)).await;
    assert_eq!(forged.expect_err("region").code(), Code::PermissionDenied);
    client.adjust(seal(&key("operator"), ADJUSTMENT_DOMAIN, "operator", &adjustment)).await.expect("adjust");
    let signed =
        client.close(seal(&key("operator"), CLOSE_DOMAIN, "operator", &close)).await.expect("close").into_inner();
    let statement: xclear::clearing::Statement = serde_json::from_slice(&signed.body).expect("statement");
    assert_eq!(statement.positions_sum(), Amount::ZERO);
    assert_eq!(statement.adjustments.len(), 1, "the adjustment entered the statement");
    let served = client.statement(StatementRequest { month: "2026-03".into() }).await.expect("statement");
    assert_eq!(served.into_inner().body, signed.body);
    // Closed over gRPC, the statement is also written beside the ledger.
    assert_eq!(std::fs::read(statements.join("2026-03.json")).expect("json file"), signed.body);
    assert_eq!(std::fs::read_to_string(statements.join("2026-03.csv")).expect("csv file"), statement.to_csv());

    // April's quotas come from March's statement: 2 × (payable + 0 + 0) / 3, half up.
    let payable = statement.positions[&code("611000")].payable;
    assert!(payable > Amount::ZERO);
    let expected =
        Amount::round_half_up(payable.as_decimal() * rust_decimal::Decimal::TWO / rust_decimal::Decimal::from(3));
    let april = client.advance(month("2026-04")).await.expect("advance").into_inner();
    let line = april.lines.iter().find(|l| l.region == "611000").expect("611000 has a default quota");
    assert_eq!(line.quota, expected.to_string());
    assert_eq!((line.usage.as_str(), line.warning), ("0.00", false));
    // March itself had no statements before it: no default quota.
    assert!(client.advance(month("2026-03")).await.expect("advance").into_inner().lines.is_empty());

    // Answers: a region cannot answer for another; a stale hash is refused;
    // the statement is final when the last region confirms.
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&signed.body));
    let forged = answer_signed_by("654000", "660400", &hash, vec![]);
    assert_eq!(client.answer(forged).await.expect_err("forged").code(), Code::Unauthenticated);
    let stale = client.answer(answer("611000", &"0".repeat(64), vec![])).await.expect_err("stale");
    assert_eq!(stale.code(), Code::InvalidArgument);
    for (i, r) in REGIONS.iter().enumerate() {
        let receipt = client.answer(answer(r, &hash, vec![])).await.expect("confirm").into_inner();
        assert_eq!(receipt.r#final, i == REGIONS.len() - 1, "{r}: {receipt:?}");
    }
    let _ = stop.send(());
}

/// The statement files are a copy: when they cannot be written the close is
/// reported as failed, yet the month is closed on the ledger, and closing it
/// again once the files can be written writes the same statement.
#[tokio::test]
async fn statement_files_that_cannot_be_written_are_reported_and_written_on_the_next_close() {
    let w = world().await;
    let blocked = w._dir.path().join("not-a-directory");
    std::fs::write(&blocked, b"a file where the statements would go").expect("write");
    let open = |files: std::path::PathBuf| {
        open_operator(&w._dir.path().join("operator-files"), w.net.clone()).with_statement_files(files)
    };
    let op = open(blocked.clone());
    let e = op.close(march()).await.expect_err("the files cannot be written");
    assert!(e.to_string().contains("2026-03 is closed, but its statement files were not written"), "{e}");
    let on_ledger = op.statement_of(march()).expect("read").expect("the month is closed on the ledger");
    drop(op);

    let dir = w._dir.path().join("statements-again");
    let op = open(dir.clone());
    let again = op.close(march()).await.expect("closed again");
    assert_eq!(again.signed.body, on_ledger.signed.body, "the same statement");
    assert_eq!(std::fs::read(dir.join("2026-03.json")).expect("json file"), on_ledger.signed.body);
}

/// The first close cannot skip a month with settlements (a node refuses to
/// seal past it), and an adjustment of a final month is refused rather than
/// recorded where no statement would carry it.
#[tokio::test]
async fn no_month_is_skipped_and_no_adjustment_is_lost() {
    let w = world().await;
    let clock = Arc::new(ManualClock::new(xclear::time::month_end_ms(march().next()) + 3_600_000));
    w.clock.set(MARCH_CLOSABLE + 20 * 86_400_000);
    let op = open_operator_at(&w._dir.path().join("operator-skip"), w.net.clone(), clock);
    let e = op.close(march().next()).await.expect_err("march has settlements");
    assert_eq!(e.reason(), "region_refused", "{e}");
    assert!(e.to_string().contains("close 2026-03 before 2026-04"), "{e}");
    let s = op.close(march()).await.expect("march first");
    confirm_all(&op, march(), &s.hash).await;
    let deduction = deduction(100, "audit refusal");
    let e = op.adjust(march(), deduction.clone()).await.expect_err("march is final");
    assert_eq!(e.reason(), "month_final", "{e}");
    assert!(e.to_string().contains("2026-04"), "names the month to use: {e}");
    op.adjust(march().next(), deduction).await.expect("april is open");
    op.close(march().next()).await.expect("april, with march sealed everywhere");
}

/// Over TLS the operator binds each signed request to its connection by the
/// key the request needs (whatever the envelope's `signer` says), and serves
/// statements and advance funds to the operator and the regions' nodes only.
#[tokio::test]
async fn the_operator_over_tls_binds_requests_to_the_keys_they_need() {
    use tonic::Code;
    use xclear::api::envelope::CLOSE_DOMAIN;
    use xclear::proto::operator_service_client::OperatorServiceClient;
    use xclear::proto::{AdvanceRequest, CloseRequest, StatementRequest};

    let w = world().await;
    let op = Arc::new(open_operator(&w._dir.path().join("operator-tls"), w.net.clone()));
    let ca = xclear::federation::FederationCa::new(common::FEDERATION).expect("ca");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("https://{}", listener.local_addr().expect("addr"));
    let stop = xclear::operator::grpc::spawn_serve(
        Arc::clone(&op),
        90,
        listener,
        Some(ca.operator(&key("operator")).expect("identity")),
    );
    let connect = |tls: Arc<xclear::tls::Tls>| {
        let url = url.clone();
        async move {
            let channel =
                xclear::tls::endpoint(&url, Some(&tls), None).expect("endpoint").connect().await.expect("connect");
            OperatorServiceClient::new(channel)
        }
    };
    let mut hospital = connect(ca.client(&key("H110000"), "H110000").expect("identity")).await;
    let mut region = connect(ca.node(&key("611000"), code("611000")).expect("identity")).await;
    let mut operator = connect(ca.operator(&key("operator")).expect("identity")).await;

    // The operator's own close, replayed by a hospital under a signer that
    // names no key: refused, not closed.
    let close = seal(&key("operator"), CLOSE_DOMAIN, "999999", &CloseRequest { month: "2026-03".into() });
    let s = hospital.close(close.clone()).await.expect_err("not the operator's connection");
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    let s = region.close(close.clone()).await.expect_err("a region's connection");
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    assert!(op.statement_of(march()).expect("read").is_none(), "nothing closed");
    // Reads: not for institutions; for the regions' nodes and the operator.
    let month = || StatementRequest { month: "2026-03".into() };
    assert_eq!(hospital.statement(month()).await.expect_err("a hospital").code(), Code::PermissionDenied);
    let advance = || AdvanceRequest { month: "2026-03".into() };
    assert_eq!(hospital.advance(advance()).await.expect_err("a hospital").code(), Code::PermissionDenied);
    assert_eq!(region.statement(month()).await.expect_err("not closed yet").code(), Code::NotFound);
    // Over the operator's own connection the close goes through.
    operator.close(close).await.expect("closed");
    region.statement(month()).await.expect("a region reads the statement");
    region.advance(advance()).await.expect("and the advance funds");
    let _ = stop.send(());
}
