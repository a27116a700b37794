//! Nodes served over gRPC on 127.0.0.1:0 in this process: a settlement over
//! the wire, reasons on statuses, health and reflection.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use tokio::net::TcpListener;
use xclear::api::envelope::{
    open, seal, ADMIN_DOMAIN, HOSPITAL_DOMAIN, LINES_DOMAIN, OPERATOR_DOMAIN, REGISTRATION_QUERY_DOMAIN,
};
use xclear::api::error::reason_of;
use xclear::clock::SystemClock;
use xclear::node::grpc::{spawn_serve, GrpcTransport};
use xclear::node::records::PersonRecord;
use xclear::node::Node;
use xclear::proto::hospital_service_client::HospitalServiceClient;
use xclear::proto::registration_service_client::RegistrationServiceClient;
use xclear::proto::report_service_client::ReportServiceClient;
use xclear::proto::{hospital_request::Action, BillItem, HospitalRequest, LineList, LinesRequest, RegistrationQuery};
use xclear::region::RegionCode;

/// The key of a numbered party of these tests, in the one scheme.
fn key(tag: u8) -> SigningKey {
    let name = match tag {
        11 => "611000",
        12 => "110000",
        21 => "H1",
        31 => "agency",
        41 => "operator",
        other => return common::key(&format!("stranger-{other}")),
    };
    common::key(name)
}

struct Running {
    _dir: tempfile::TempDir,
    urls: BTreeMap<&'static str, String>,
    ca: xclear::federation::FederationCa,
    home: Arc<Node>,
    treatment: Arc<Node>,
    stop: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Running {
    /// A channel to `region`'s node as `tag` (a region, an institution, an
    /// admin, "operator"): over TLS, carrying `tag`'s certificate.
    async fn channel(&self, region: &str, tag: &str) -> tonic::transport::Channel {
        let key = common::key(tag);
        let tls = if tag == "operator" { self.ca.operator(&key) } else { self.ca.client(&key, tag) }.expect("identity");
        xclear::tls::endpoint(&self.urls[region], Some(&tls), None).expect("endpoint").connect().await.expect("connect")
    }
}

async fn start() -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = xclear::federation::FederationCa::new(common::FEDERATION).expect("ca");
    let regions = [("611000", 11u8), ("110000", 12u8)];
    let mut listeners = BTreeMap::new();
    let mut urls = BTreeMap::new();
    for (r, _) in regions {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        urls.insert(r, format!("https://{}", l.local_addr().expect("addr")));
        listeners.insert(r, l);
    }
    let mut stop = Vec::new();
    let (mut home, mut treatment) = (None, None);
    let peers: Vec<_> = urls.iter().map(|(r, u)| (RegionCode::parse(r).expect("code"), u.clone())).collect();
    for (r, _) in regions {
        let mut plan = xclear::federation::NodePlan::new(
            common::FEDERATION,
            RegionCode::parse(r).expect("code"),
            dir.path().join(r),
            common::rules_dir(),
        )
        .with_peers(peers.clone());
        if r == "110000" {
            plan = plan.with([xclear::federation::Institution::hospital("H1", 3)]);
        }
        let cfg = plan.config();
        let endpoints = cfg.peers.values().map(|p| (p.region, p.endpoint.clone())).collect();
        let tls = ca.node(&plan.node_key(), plan.region).expect("node identity");
        let node = Arc::new(
            Node::open(
                cfg,
                plan.node_key(),
                Arc::new(common::rules()),
                Arc::new(SystemClock),
                Arc::new(GrpcTransport::new(endpoints, Some(Arc::clone(&tls)))),
            )
            .expect("open"),
        );
        if r == "611000" {
            home = Some(Arc::clone(&node));
        } else {
            treatment = Some(Arc::clone(&node));
        }
        let listener = listeners.remove(r).expect("listener");
        stop.push(spawn_serve(node, listener, Some(tls)));
    }
    Running { _dir: dir, urls, ca, home: home.expect("home"), treatment: treatment.expect("treatment"), stop }
}

fn bill(msgid: &str) -> HospitalRequest {
    let items =
        [("XC001", "1", "3000.00"), ("FW001", "10", "150.00"), ("XB001", "1", "10000.00"), ("XA001", "1", "35500.00")]
            .iter()
            .map(|(c, q, p)| BillItem { code: c.to_string(), qty: q.to_string(), price: p.to_string() })
            .collect();
    HospitalRequest {
        fixmedins_code: "H1".into(),
        msgid: msgid.into(),
        action: Action::Settle as i32,
        psn_no: "P0001".into(),
        insuplc_admdvs: "611000".into(),
        setl_date: "2026-03-10".into(),
        items,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlement_over_grpc_with_health_and_reflection() {
    let run = start().await;
    // The agency files the registration over gRPC.
    insured_and_registered(&run).await;
    let mut reg = RegistrationServiceClient::new(run.channel("611000", "agency").await);
    let query =
        |fixmedins_code: &str| RegistrationQuery { psn_no: "P0001".into(), fixmedins_code: fixmedins_code.into() };
    let by_admin = seal(&key(31), REGISTRATION_QUERY_DOMAIN, "agency", &query(""));
    let list = reg.query(by_admin).await.expect("query").into_inner();
    assert_eq!(list.registrations.len(), 1);
    // A peer node asks for its hospital; the hospital itself, anyone
    // unsigned, or a peer's key under the admin's name is refused.
    let mut as_peer = RegistrationServiceClient::new(run.channel("611000", "110000").await);
    let by_peer = seal(&key(12), REGISTRATION_QUERY_DOMAIN, "110000", &query("H1"));
    assert_eq!(as_peer.query(by_peer).await.expect("peer").into_inner().registrations.len(), 1);
    let s = reg.query(seal(&key(12), REGISTRATION_QUERY_DOMAIN, "110000", &query("H1"))).await.expect_err("bound");
    assert_eq!(reason_of(&s).as_deref(), Some("not_authorised"), "the agency's connection carries a peer's query");
    let refusals = [
        (seal(&key(21), REGISTRATION_QUERY_DOMAIN, "H1", &query("H1")), "not_authorised"),
        (
            xclear::proto::Signed {
                signature: vec![],
                ..seal(&key(31), REGISTRATION_QUERY_DOMAIN, "agency", &query(""))
            },
            "unsigned",
        ),
        (seal(&key(12), REGISTRATION_QUERY_DOMAIN, "agency", &query("")), "bad_signature"),
    ];
    for (env, reason) in refusals {
        let s = reg.query(env).await.expect_err(reason);
        assert_eq!(xclear::api::error::reason_of(&s).as_deref(), Some(reason), "{s:?}");
    }
    let s =
        as_peer.query(seal(&key(12), REGISTRATION_QUERY_DOMAIN, "110000", &query(""))).await.expect_err("no hospital");
    assert_eq!(reason_of(&s).as_deref(), Some("bad_request"), "{s:?}");

    // The hospital settles at its own node; the figures are the worked example's.
    let mut hosp = HospitalServiceClient::new(run.channel("110000", "H1").await);
    let env = seal(&key(21), HOSPITAL_DOMAIN, "H1", &bill("g1"));
    let r = hosp.submit(env.clone()).await.expect("settled").into_inner();
    assert!(r.settled, "{r:?}");
    let f = r.figures.expect("figures");
    assert_eq!(
        (f.hifp_pay.as_str(), f.hifmi_pay.as_str(), f.psn_part_amt.as_str()),
        ("31500.00", "2400.00", "16100.00")
    );
    // Retry: the same answer; the counters moved once.
    let again = hosp.submit(env).await.expect("retry").into_inner();
    assert_eq!(again.setl_id, r.setl_id);
    assert_eq!(run.home.counters_of("P0001", 2026).expect("c").hifp_paid.to_string(), "31500.00");

    // Errors carry a gRPC code and a machine-readable reason.
    let forged = seal(&key(99), HOSPITAL_DOMAIN, "H1", &bill("g2"));
    let status = hosp.submit(forged).await.expect_err("forged");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert_eq!(reason_of(&status).as_deref(), Some("bad_signature"));
    let mut oversized = bill("g3");
    oversized.items =
        (0..1001).map(|_| BillItem { code: "XA001".into(), qty: "1".into(), price: "1.00".into() }).collect();
    let status = hosp.submit(seal(&key(21), HOSPITAL_DOMAIN, "H1", &oversized)).await.expect_err("too many items");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    // An oversized frame is refused by the transport's limit, a truncated
    // body as unreadable; the node keeps serving.
    let huge = xclear::proto::Signed {
        body: vec![7u8; 2 * 1024 * 1024],
        signature: vec![0; 64],
        signer: "H1".into(),
        batch: None,
    };
    let status = hosp.submit(huge).await.expect_err("oversized frame");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert_eq!(reason_of(&status).as_deref(), Some("too_large"));
    assert!(status.message().contains("too large"), "{status:?}");
    let mut cut = seal(&key(21), HOSPITAL_DOMAIN, "H1", &bill("g4"));
    cut.body.truncate(cut.body.len() / 2);
    let status = hosp.submit(cut).await.expect_err("truncated body");
    assert!(matches!(status.code(), tonic::Code::InvalidArgument | tonic::Code::Unauthenticated), "{status:?}");
    let ok = hosp.submit(seal(&key(21), HOSPITAL_DOMAIN, "H1", &bill("g5"))).await.expect("still serving");
    assert!(ok.into_inner().settled);

    // Health checking.
    let channel = run.channel("110000", "H1").await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let h = health
        .check(tonic_health::pb::HealthCheckRequest { service: "xclear.v1.HospitalService".into() })
        .await
        .expect("health")
        .into_inner();
    assert_eq!(h.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    // Reflection, v1 and v1alpha, lists exactly the services this node serves.
    let mut served = vec![
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "xclear.v1.AuditService",
        "xclear.v1.HospitalService",
        "xclear.v1.PeerService",
        "xclear.v1.RegistrationService",
        "xclear.v1.ReportService",
    ];
    served.sort();
    assert_eq!(reflection_v1(channel.clone()).await, served);
    assert_eq!(reflection_v1alpha(channel).await, served);
    for s in run.stop {
        let _ = s.send(());
    }
}

#[tokio::test]
async fn servers_accept_connections_with_nodelay_and_keepalive() {
    use tokio_stream::StreamExt;
    // Without TCP_NODELAY a small answer waits on the peer's delayed ACK
    // (~40 ms on Linux): that was most of a settlement's latency.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut incoming = xclear::api::incoming(listener);
    let _client = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let accepted = incoming.next().await.expect("a connection").expect("accepted");
    assert!(accepted.nodelay().expect("nodelay"), "TCP_NODELAY on accepted connections");
    let keepalive = socket2::SockRef::from(&accepted).keepalive().expect("keepalive");
    assert!(keepalive, "keepalive on accepted connections");
}

/// Imports P0001 at the home node and files a long-term-resident
/// registration for Beijing over gRPC.
/// Each node times the stages of a settlement it takes part in, and only
/// those: the treatment node its five, the home node its three, once each per
/// settlement; a stage that holds another lasts at least as long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_times_its_stages_of_a_settlement() {
    use xclear::node::metrics::{render, Stage};
    let run = start().await;
    insured_and_registered(&run).await;
    let mut hosp = HospitalServiceClient::new(run.channel("110000", "H1").await);
    for i in 0..3 {
        let env = seal(&key(21), HOSPITAL_DOMAIN, "H1", &bill(&format!("t{i}")));
        assert!(hosp.submit(env).await.expect("answered").into_inner().settled);
    }
    let treatment_stages =
        [Stage::Check, Stage::ClaimSign, Stage::IntentAppend, Stage::HomeRoundTrip, Stage::OutcomeAppend];
    for stage in Stage::ALL {
        let (at_treatment, at_home) = (run.treatment.stage_times().totals(stage), run.home.stage_times().totals(stage));
        let (timed, untouched) =
            if treatment_stages.contains(&stage) { (at_treatment, at_home) } else { (at_home, at_treatment) };
        assert_eq!(timed.0, 3, "{stage:?} runs once per settlement");
        assert!(!timed.1.is_zero(), "{stage:?} took some time");
        assert_eq!(untouched, (0, std::time::Duration::ZERO), "{stage:?} belongs to the other node");
    }
    let total = |n: &Node, s| n.stage_times().totals(s).1;
    assert!(total(&run.treatment, Stage::HomeRoundTrip) >= total(&run.home, Stage::HomeClaim));
    assert!(
        total(&run.home, Stage::HomeClaim) >= total(&run.home, Stage::HomeAppend) + total(&run.home, Stage::ResultSign)
    );
    let text = render(&run.treatment);
    assert!(text.contains("xclear_stage_runs_total{stage=\"intent_append\"} 3\n"), "{text}");
    assert!(text.contains("xclear_stage_runs_total{stage=\"home_append\"} 0\n"), "{text}");
    // Every family has its HELP and TYPE, in both formats.
    for format in [text.clone(), xclear::node::metrics::classic(&text)] {
        let families: Vec<&str> = format.lines().filter_map(|l| l.strip_prefix("# TYPE ")).collect();
        assert!(families.len() >= 10, "{format}");
        for f in families {
            let name = f.split(' ').next().expect("name");
            assert!(format.contains(&format!("# HELP {name} ")), "{name} has no HELP");
        }
    }
    for s in run.stop {
        let _ = s.send(());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_reads_a_pairs_lines_over_grpc_and_no_one_else_does() {
    let run = start().await;
    insured_and_registered(&run).await;
    let mut hosp = HospitalServiceClient::new(run.channel("110000", "H1").await);
    for msgid in ["l1", "l2", "l3"] {
        let r = hosp.submit(seal(&key(21), HOSPITAL_DOMAIN, "H1", &bill(msgid))).await.expect("settled").into_inner();
        assert!(r.settled, "{r:?}");
    }
    // Lines are cleared in the month they were committed (this node's clock).
    let month = xclear::time::month_of(xclear::clock::Clock::now_ms(&SystemClock));
    let req = LinesRequest { month, counterpart: "110000".into(), as_treatment: false, from_index: 0, limit: 2 };
    let mut reports = ReportServiceClient::new(run.channel("611000", "operator").await);
    // The page served over gRPC (read on a blocking thread) is the page the
    // node makes in process, byte for byte: two of the three lines, and more.
    let asked = seal(&key(41), OPERATOR_DOMAIN, "operator", &req);
    let served = reports.lines(asked.clone()).await.expect("page").into_inner();
    assert_eq!(served, run.home.handle_lines_request(asked).expect("page in process"));
    let page: LineList = open(&served, &key(11).verifying_key(), LINES_DOMAIN).expect("signed by the home node");
    assert_eq!((page.lines.len(), page.more), (2, true));
    assert!(page.lines.iter().all(|l| l.treatment == "110000" && l.home == "611000"), "{:?}", page.lines);
    // Anyone else is refused before the ledger is read.
    for stranger in
        [seal(&key(21), OPERATOR_DOMAIN, "operator", &req), seal(&key(41), HOSPITAL_DOMAIN, "operator", &req)]
    {
        let status = reports.lines(stranger).await.expect_err("not the operator");
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert_eq!(reason_of(&status).as_deref(), Some("bad_signature"));
    }
    for s in run.stop {
        let _ = s.send(());
    }
}

async fn insured_and_registered(run: &Running) {
    let person = PersonRecord {
        psn_no: "P0001".into(),
        insuplc_admdvs: "611000".into(),
        insutype: "390".into(),
        retired: false,
        special_group: None,
        contribution_years: BTreeMap::new(),
        acct_balance: None,
        chronic: Vec::new(),
    };
    run.home.import_persons(&[person]).await.expect("import");
    let mut reg = RegistrationServiceClient::new(run.channel("611000", "agency").await);
    let req = crate::common::fixtures::registration("r1", "P0001", "long_term_resident", "110000");
    reg.apply(seal(&key(31), ADMIN_DOMAIN, "agency", &req)).await.expect("registered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_claims_is_answered_claim_by_claim_in_order() {
    use xclear::api::envelope::{open, CLAIM_DOMAIN, CLAIM_RESULT_DOMAIN};
    use xclear::node::peer_batch::MAX_CLAIMS_PER_BATCH;
    use xclear::proto::peer_service_client::PeerServiceClient;
    use xclear::proto::{ClaimBatch, ClaimResult};

    let run = start().await;
    insured_and_registered(&run).await;
    let claim = crate::common::fixtures::claim;
    let genuine = seal(&key(12), CLAIM_DOMAIN, "110000", &claim("b1"));
    let forged = seal(&key(99), CLAIM_DOMAIN, "110000", &claim("b2"));
    let unknown =
        seal(&key(12), CLAIM_DOMAIN, "110000", &xclear::proto::Claim { psn_no: "P9999".into(), ..claim("b3") });
    let mut peer = PeerServiceClient::new(run.channel("611000", "110000").await);
    let batch = ClaimBatch { claims: vec![genuine.clone(), forged, unknown, genuine.clone()] };
    let answers = peer.submit_claims(batch).await.expect("batch").into_inner().answers;
    assert_eq!(answers.len(), 4);

    // The genuine claim: a result signed by the home node, for that claim.
    let signed = answers[0].result.clone().expect("a result");
    let result: ClaimResult = open(&signed, &key(11).verifying_key(), CLAIM_RESULT_DOMAIN).expect("signed by 611000");
    assert!(result.settled, "{result:?}");
    assert_eq!(result.msgid, "b1");
    // Each bad claim is refused with the reason a single call would carry.
    assert_eq!((answers[1].result.is_none(), answers[1].reason.as_str()), (true, "bad_signature"));
    assert_eq!((answers[2].result.is_none(), answers[2].reason.as_str()), (true, "unknown_person"));
    // The same claim twice in one batch settles once: the second gets the first's result.
    assert_eq!(answers[3].result.as_ref(), Some(&signed));
    let hifp = result.figures.expect("figures").hifp_pay;
    assert_eq!(run.home.counters_of("P0001", 2026).expect("counters").hifp_paid.to_string(), hifp);

    // More claims than a batch may hold: refused whole, nothing recorded.
    let len = run.home.ledger().len();
    let claims = (0..=MAX_CLAIMS_PER_BATCH).map(|i| seal(&key(12), CLAIM_DOMAIN, "110000", &claim(&format!("o{i}"))));
    let status = peer.submit_claims(ClaimBatch { claims: claims.collect() }).await.expect_err("too many");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(reason_of(&status).as_deref(), Some("bad_request"));
    assert_eq!(run.home.ledger().len(), len);
    for s in run.stop {
        let _ = s.send(());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_settlements_sharing_batches_each_get_their_own_answer() {
    let run = start().await;
    insured_and_registered(&run).await;
    let channel = run.channel("110000", "H1").await;
    use xclear::api::envelope::{open, CLAIM_DOMAIN, CLAIM_RESULT_DOMAIN};
    use xclear::node::records::HomeSettlementEntry;
    use xclear::proto::{Claim, ClaimResult};
    let small = |msgid: String| HospitalRequest {
        items: vec![BillItem { code: "XA001".into(), qty: "1".into(), price: "100.00".into() }],
        ..bill(&msgid)
    };
    let calls: Vec<_> = (0..48)
        .map(|i| {
            let mut hosp = HospitalServiceClient::new(channel.clone());
            let env = seal(&key(21), HOSPITAL_DOMAIN, "H1", &small(format!("c{i}")));
            tokio::spawn(async move { hosp.submit(env).await.map(|r| r.into_inner()) })
        })
        .collect();
    // Every answer is its own request's (the treatment node checks each
    // result's claim hash, so a crossed answer would be an error here).
    let mut settled = Vec::new();
    for (i, call) in calls.into_iter().enumerate() {
        let r = call.await.expect("task").expect("answered");
        assert_eq!(r.msgid, format!("c{i}"));
        assert!(r.settled, "{r:?}");
        settled.push(r.setl_id);
    }
    settled.sort();
    settled.dedup();
    assert_eq!(settled.len(), 48, "settlement ids are distinct");
    // The claims of the moment were signed together, and every claim and
    // result the home node recorded opens alone, proof and all.
    let (mut claims, mut batched) = (0, 0);
    run.home
        .ledger()
        .for_each(0, |e| {
            if !e.body.key.starts_with("claim:") {
                return Ok(());
            }
            let rec: HomeSettlementEntry = serde_json::from_slice(&e.body.payload).expect("home record");
            let claim = rec.claim.to_signed().expect("claim envelope");
            let result = rec.result.to_signed().expect("result envelope");
            open::<Claim>(&claim, &key(12).verifying_key(), CLAIM_DOMAIN).expect("the claim opens alone");
            open::<ClaimResult>(&result, &key(11).verifying_key(), CLAIM_RESULT_DOMAIN).expect("the result opens");
            claims += 1;
            batched += usize::from(claim.batch.is_some());
            Ok(())
        })
        .expect("scan");
    assert_eq!(claims, 48);
    assert!(batched > 0, "48 concurrent settlements, and every claim signed alone");
    for s in run.stop {
        let _ = s.send(());
    }
}

/// A peer from before batches: `SubmitClaims` is unimplemented, and
/// `SubmitClaim` echoes the claim back (counting the calls).
struct PeerWithoutBatches(Arc<std::sync::atomic::AtomicUsize>);

#[tonic::async_trait]
impl xclear::proto::peer_service_server::PeerService for PeerWithoutBatches {
    async fn submit_claim(
        &self,
        req: tonic::Request<xclear::proto::Signed>,
    ) -> Result<tonic::Response<xclear::proto::Signed>, tonic::Status> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(tonic::Response::new(req.into_inner()))
    }

    async fn submit_claims(
        &self,
        _: tonic::Request<xclear::proto::ClaimBatch>,
    ) -> Result<tonic::Response<xclear::proto::ClaimAnswers>, tonic::Status> {
        Err(tonic::Status::unimplemented("xclear.v1.PeerService/SubmitClaims"))
    }

    async fn contribution_years(
        &self,
        _: tonic::Request<xclear::proto::Signed>,
    ) -> Result<tonic::Response<xclear::proto::ContributionYearsResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("xclear.v1.PeerService/ContributionYears"))
    }

    async fn sanction(
        &self,
        _: tonic::Request<xclear::proto::Signed>,
    ) -> Result<tonic::Response<xclear::proto::DesignationState>, tonic::Status> {
        Err(tonic::Status::unimplemented("xclear.v1.PeerService/Sanction"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_batches_gets_claims_one_by_one_after_its_first_refusal() {
    use xclear::node::PeerTransport;
    use xclear::proto::peer_service_server::PeerServiceServer;

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let singles = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(PeerServiceServer::new(PeerWithoutBatches(Arc::clone(&singles))))
            .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            }),
    );
    let old = RegionCode::parse("611000").expect("code");
    let transport = GrpcTransport::new([(old, url)].into_iter().collect(), None);
    let claim =
        |n: u8| xclear::proto::Signed { body: vec![n], signature: vec![0; 64], signer: "110000".into(), batch: None };

    // The first claim goes in a batch, which the old peer does not know: the
    // settlement sees the peer as unreachable for this attempt and retries.
    let first = transport.submit_claim(old, claim(1)).await.expect_err("batch unimplemented");
    assert!(first.to_string().contains("takes no batches"), "{first}");
    assert_eq!(singles.load(std::sync::atomic::Ordering::SeqCst), 0);
    // From then on each claim is its own call.
    assert_eq!(transport.submit_claim(old, claim(1)).await, Ok(claim(1)));
    assert_eq!(transport.submit_claim(old, claim(2)).await, Ok(claim(2)));
    assert_eq!(singles.load(std::sync::atomic::Ordering::SeqCst), 2);
    let _ = stop.send(());
    let _ = server.await;
}

/// The agency loads persons into a running home node, signed by an admin:
/// a person unknown a moment ago can be registered and settle; a forged, a
/// foreign, an oversized or a bad batch changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_loads_persons_into_a_running_node() {
    use xclear::api::envelope::PERSONS_DOMAIN;
    use xclear::node::persons::{insured_person, MAX_PERSONS_PER_IMPORT};
    use xclear::proto::{InsuredPerson, PersonImport};

    let run = start().await;
    let mut reg = RegistrationServiceClient::new(run.channel("611000", "agency").await);
    let person = |psn_no: &str| PersonRecord {
        psn_no: psn_no.into(),
        insuplc_admdvs: "611000".into(),
        insutype: "390".into(),
        retired: false,
        special_group: None,
        contribution_years: BTreeMap::new(),
        acct_balance: None,
        chronic: Vec::new(),
    };
    let batch = |records: &[PersonRecord]| PersonImport { persons: records.iter().map(insured_person).collect() };
    let registration = crate::common::fixtures::registration("r2", "P0002", "long_term_resident", "110000");

    // Unknown before the import.
    let s = reg.apply(seal(&key(31), ADMIN_DOMAIN, "agency", &registration)).await.expect_err("unknown");
    assert_eq!(reason_of(&s).as_deref(), Some("unknown_person"));

    // Refused, and nothing kept: a forged signature, a signer who is no admin,
    // the registration domain, too many persons, one bad record among good ones.
    let good = batch(&[person("P0002")]);
    let too_many = batch(&vec![person("P0002"); MAX_PERSONS_PER_IMPORT + 1]);
    let mut bad = batch(&[person("P0003")]);
    bad.persons.push(InsuredPerson { special_group: "rich".into(), ..insured_person(&person("P0004")) });
    let refused = [
        (seal(&key(99), PERSONS_DOMAIN, "agency", &good), "bad_signature"),
        (seal(&key(31), PERSONS_DOMAIN, "mallory", &good), "not_authorised"),
        (seal(&key(31), ADMIN_DOMAIN, "agency", &good), "bad_signature"),
        (seal(&key(31), PERSONS_DOMAIN, "agency", &too_many), "bad_request"),
        (seal(&key(31), PERSONS_DOMAIN, "agency", &bad), "bad_request"),
    ];
    for (env, reason) in refused {
        let s = reg.import_persons(env).await.expect_err("refused");
        assert_eq!(reason_of(&s).as_deref(), Some(reason), "{s:?}");
    }
    let s = reg.apply(seal(&key(31), ADMIN_DOMAIN, "agency", &registration)).await.expect_err("still unknown");
    assert_eq!(reason_of(&s).as_deref(), Some("unknown_person"));

    // The genuine import; again, it adds nothing. P0003 was not kept from
    // the bad batch: it is added now.
    let r = reg.import_persons(seal(&key(31), PERSONS_DOMAIN, "agency", &good)).await.expect("import").into_inner();
    assert_eq!((r.received, r.added), (1, 1));
    let r = reg.import_persons(seal(&key(31), PERSONS_DOMAIN, "agency", &good)).await.expect("again").into_inner();
    assert_eq!((r.received, r.added), (1, 0));
    let p3 = batch(&[person("P0003")]);
    let r = reg.import_persons(seal(&key(31), PERSONS_DOMAIN, "agency", &p3)).await.expect("P0003").into_inner();
    assert_eq!(r.added, 1);

    // The new person registers and settles without a restart.
    reg.apply(seal(&key(31), ADMIN_DOMAIN, "agency", &registration)).await.expect("registered");
    let mut hosp = HospitalServiceClient::new(run.channel("110000", "H1").await);
    let req = HospitalRequest { psn_no: "P0002".into(), ..bill("n1") };
    let r = hosp.submit(seal(&key(21), HOSPITAL_DOMAIN, "H1", &req)).await.expect("answered").into_inner();
    assert!(r.settled, "{r:?}");
    for s in run.stop {
        let _ = s.send(());
    }
}

/// Qualify and CreditAccount over gRPC: an admin's signed requests change
/// the person at the home node; bad input is INVALID_ARGUMENT naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qualifications_and_account_credits_over_grpc() {
    use xclear::proto::{qualification_request::Op as QualOp, AccountCreditRequest, QualificationRequest};
    let run = start().await;
    let employee = PersonRecord {
        psn_no: "E0001".into(),
        insuplc_admdvs: "611000".into(),
        insutype: "310".into(),
        retired: false,
        special_group: None,
        contribution_years: BTreeMap::new(),
        acct_balance: Some("10.00".into()),
        chronic: Vec::new(),
    };
    insured_and_registered(&run).await;
    run.home.import_persons(&[employee]).await.expect("import");
    let mut reg = RegistrationServiceClient::new(run.channel("611000", "agency").await);
    let credit = AccountCreditRequest {
        msgid: "c1".into(),
        psn_no: "E0001".into(),
        amount: "90.50".into(),
        reason: "allocation".into(),
    };
    let state = reg.credit_account(seal(&key(31), ADMIN_DOMAIN, "agency", &credit)).await.expect("credit").into_inner();
    assert_eq!(state.acct_balance, "100.50");
    let resident = AccountCreditRequest { msgid: "c2".into(), psn_no: "P0001".into(), ..credit.clone() };
    let status = reg.credit_account(seal(&key(31), ADMIN_DOMAIN, "agency", &resident)).await.expect_err("a resident");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("psn_no"), "{}", status.message());
    let grant = QualificationRequest {
        msgid: "q1".into(),
        psn_no: "P0001".into(),
        op: QualOp::Grant as i32,
        dise_codg: "M01600".into(),
        begndate: "2026-01-01".into(),
        enddate: String::new(),
    };
    let state = reg.qualify(seal(&key(31), ADMIN_DOMAIN, "agency", &grant)).await.expect("grant").into_inner();
    assert_eq!(state.chronic.len(), 1);
    assert_eq!(state.chronic[0].dise_codg, "M01600");
    let bad = QualificationRequest { msgid: "q2".into(), begndate: "2026-1-1".into(), ..grant.clone() };
    let status = reg.qualify(seal(&key(31), ADMIN_DOMAIN, "agency", &bad)).await.expect_err("bad date");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("begndate"), "{}", status.message());
    let stranger = reg.qualify(seal(&key(99), ADMIN_DOMAIN, "agency", &grant)).await.expect_err("not an admin's key");
    assert_eq!(stranger.code(), tonic::Code::Unauthenticated);
    for s in run.stop {
        let _ = s.send(());
    }
}

/// The services a server lists through one version of gRPC reflection, sorted.
macro_rules! list_services {
    ($($version:ident)::+, $channel:expr) => {{
        use tonic_reflection::pb::$($version)::+::{
            server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
            server_reflection_response::MessageResponse, ServerReflectionRequest,
        };
        let mut refl = ServerReflectionClient::new($channel);
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream =
            refl.server_reflection_info(tokio_stream::iter(vec![req])).await.expect("reflection").into_inner();
        let msg = stream.message().await.expect("message").expect("some");
        let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
            panic!("unexpected reflection answer")
        };
        let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        names.sort();
        names
    }};
}

/// The services a server lists through reflection v1, sorted.
pub(crate) async fn reflection_v1(channel: tonic::transport::Channel) -> Vec<String> {
    list_services!(v1, channel)
}

/// The same through reflection v1alpha (what grpcurl before 1.8.8 and
/// grpcio-reflection speak).
pub(crate) async fn reflection_v1alpha(channel: tonic::transport::Channel) -> Vec<String> {
    list_services!(v1alpha, channel)
}

/// Over TLS a node takes connections only from holders of its federation's
/// certificates, and an envelope only over its signer's own connection; a
/// node reaches a peer only if the peer's certificate names that region.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_binds_every_connection_to_its_federation_and_its_signer() {
    use xclear::federation::FederationCa;
    use xclear::node::PeerTransport;
    use xclear::tls::Tls;

    let run = start().await;
    insured_and_registered(&run).await;
    let (bj, sl) = (RegionCode::parse("110000").expect("code"), RegionCode::parse("611000").expect("code"));
    let env = seal(&key(21), HOSPITAL_DOMAIN, "H1", &bill("s1"));
    let refused = |what: &str, r: Result<tonic::Response<xclear::proto::HospitalResponse>, tonic::Status>| {
        let s = r.expect_err(what);
        assert!(reason_of(&s).is_none(), "{what}: refused by the transport, not the node: {s:?}");
    };

    // Plaintext to a TLS node: no answer.
    let plain = run.urls["110000"].replacen("https://", "http://", 1);
    let channel = tonic::transport::Endpoint::from_shared(plain).expect("url").connect_lazy();
    refused("plaintext", HospitalServiceClient::new(channel).submit(env.clone()).await);

    // A certificate of another CA, even for H1's own key: the handshake fails.
    let other = FederationCa::new("another federation").expect("ca");
    let foreign = other.dev_ca().issue(&key(21).verifying_key(), &["h1.client.xclear".into()]).expect("issue");
    let tls = Tls::from_pem(run.ca.cert_pem(), &foreign, &key(21)).expect("identity");
    let channel = xclear::tls::endpoint(&run.urls["110000"], Some(&tls), None).expect("endpoint").connect_lazy();
    refused("another CA's certificate", HospitalServiceClient::new(channel).submit(env.clone()).await);

    // No client certificate at all.
    let anonymous = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(run.ca.cert_pem()));
    let channel = tonic::transport::Endpoint::from_shared(run.urls["110000"].clone())
        .expect("url")
        .tls_config(anonymous)
        .expect("tls")
        .connect_lazy();
    refused("no certificate", HospitalServiceClient::new(channel).submit(env.clone()).await);

    // A certificate of the federation, but not the signer's: H1's bill over
    // the agency's connection, 110000's claims over 654000's node certificate.
    let mut as_agency = HospitalServiceClient::new(run.channel("110000", "agency").await);
    let s = as_agency.submit(env.clone()).await.expect_err("not H1's connection");
    assert_eq!(reason_of(&s).as_deref(), Some("not_authorised"), "{s:?}");
    let xj = RegionCode::parse("654000").expect("code");
    let tls = run.ca.node(&common::key("654000"), xj).expect("identity");
    let channel = xclear::tls::endpoint(&run.urls["611000"], Some(&tls), None).expect("endpoint").connect_lazy();
    let claim = seal(&key(12), xclear::api::envelope::CLAIM_DOMAIN, "110000", &crate::common::fixtures::claim("c9"));
    let mut peer = xclear::proto::peer_service_client::PeerServiceClient::new(channel);
    let s = peer.submit_claim(claim).await.expect_err("654000's certificate carries 110000's claim");
    assert_eq!(reason_of(&s).as_deref(), Some("not_authorised"), "{s:?}");
    assert_eq!(run.home.counters_of("P0001", 2026).expect("counters").hifp_paid.to_string(), "0.00");

    // Its own connection settles.
    let mut hosp = HospitalServiceClient::new(run.channel("110000", "H1").await);
    assert!(hosp.submit(env).await.expect("settled").into_inner().settled);

    // 110000 asks "611000" at the address where 110000 itself serves: the
    // certificate there names 110000, so the handshake fails.
    let query = seal(
        &key(12),
        xclear::api::envelope::PEER_QUERY_DOMAIN,
        "110000",
        &xclear::proto::ContributionYearsRequest { psn_no: "P0001".into() },
    );
    let own = run.ca.node(&key(12), bj).expect("identity");
    let misdirected =
        GrpcTransport::new([(sl, run.urls["110000"].clone())].into_iter().collect(), Some(Arc::clone(&own)));
    let e = misdirected.contribution_years(sl, query.clone()).await.expect_err("another region's certificate");
    assert!(matches!(e, xclear::transport::TransportError::Unreachable(_)), "{e:?}");
    // At 611000's own address the connection is made, and 611000 decides
    // (110000 is not its corps–local partner).
    let right = GrpcTransport::new([(sl, run.urls["611000"].clone())].into_iter().collect(), Some(own));
    let e = right.contribution_years(sl, query).await.expect_err("not partners");
    assert!(
        matches!(e, xclear::transport::TransportError::Refused { ref reason, .. } if reason == "not_authorised"),
        "{e:?}"
    );
    for s in run.stop {
        let _ = s.send(());
    }
}
