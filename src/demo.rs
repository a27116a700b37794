//! `xclear demo`: the whole system on this machine. A federation of every
//! reference region plus Beijing and the operator, each node a real gRPC
//! server on loopback with its own ledger; synthetic insured persons,
//! registrations of every kind, chronic-disease qualifications and employees'
//! accounts, a month of traffic from concurrent hospitals and pharmacies in
//! about the country's mix (mostly outpatient and pharmacy visits, some
//! chronic-disease care, fewer stays; settlements, pre-settlements, reversals,
//! emergencies without a filing, refusals, corps–local care), then the month
//! is closed and confirmed.
//!
//! Each person's encounters run in order on one hospital worker, so the
//! figures — and so the statement's pairs, positions and transfers — depend
//! only on the seed. The nodes' ledger roots in the statement do not: which
//! hospital reaches a node first varies from run to run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::federation::{FederationCa, Institution, NodePlan};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;

use crate::api::envelope::{seal, ADMIN_DOMAIN, CONFIRMATION_DOMAIN, HOSPITAL_DOMAIN};
use crate::clearing::{Month, Statement};
use crate::clock::{Clock, ManualClock};

use crate::node::grpc::{spawn_serve, GrpcTransport};
use crate::node::records::{PersonRecord, QualificationRecord};
use crate::node::Node;
use crate::operator::Operator;
use crate::proto::hospital_service_client::HospitalServiceClient;
use crate::proto::{
    hospital_request::Action, registration_request::Op, BillItem, Confirmation, HospitalRequest, RegistrationRequest,
};
use crate::region::RegionCode;
use crate::rules::{RuleBook, SpecialGroup};
use crate::settlement::{MedCategory, MedType, RegistrationKind};

/// Home regions of the reference policies, with their insurance types.
const HOMES: &[(&str, &[&str])] = &[
    ("611000", &["390"]),
    ("654000", &["390", "310"]),
    ("660400", &["390"]),
    ("440600", &["310"]),
    ("540000", &["390"]),
    ("330100", &["390"]),
];
/// Beijing: a treatment region only.
const BEIJING: &str = "110000";
/// Concurrent hospital workers.
const WORKERS: usize = 32;
/// Most patients a demo takes.
pub const MAX_PATIENTS: usize = 100_000;

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub out: PathBuf,
    pub seed: u64,
    pub patients: usize,
    pub month: Month,
    pub rules_dir: PathBuf,
    pub progress: bool,
}

#[derive(Debug, Clone)]
pub struct DemoReport {
    pub statement: Statement,
    pub statement_hash: String,
    pub settled: u64,
    pub refused: u64,
    pub presettled: u64,
    pub reversed: u64,
    pub registrations: u64,
    pub elapsed: Duration,
    pub node_dirs: BTreeMap<RegionCode, PathBuf>,
    pub final_confirmed: bool,
    /// Each institution's statement of the month, as its node issued it.
    pub hospitals: Vec<crate::clearing::hospital::HospitalStatement>,
    /// Per region: (settlements drawn for review, settlements of the month).
    pub samples: BTreeMap<RegionCode, (usize, u64)>,
}

/// A region's designated pharmacy in the demo.
fn pharmacy_code(region: &str) -> String {
    format!("P{region}01")
}

/// A region's hospital in the demo.
fn hospital_code(region: &str) -> String {
    format!("H{region}01")
}

fn code(s: &str) -> Result<RegionCode, String> {
    RegionCode::parse(s).map_err(|e| e.to_string())
}

/// A progress bar on standard error (indicatif draws it only on a
/// terminal); hidden when progress is off.
fn progress_bar(enabled: bool, label: &str, total: u64) -> indicatif::ProgressBar {
    if !enabled {
        return indicatif::ProgressBar::hidden();
    }
    let style = indicatif::ProgressStyle::with_template("{prefix:<15} [{bar:30}] {pos}/{len}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("#>.");
    indicatif::ProgressBar::new(total).with_style(style).with_prefix(label.to_string())
}

/// Ends a bar; where none was drawn (a log file), one line says the count.
fn finish(bar: &indicatif::ProgressBar, enabled: bool, label: &str) {
    bar.finish();
    if enabled && bar.is_hidden() {
        eprintln!("{label}: {}/{}", bar.position(), bar.length().unwrap_or_default());
    }
}

/// One planned visit to a hospital or pharmacy.
#[derive(Debug, Clone)]
struct Visit {
    treatment: &'static str,
    psn_no: String,
    home: String,
    day: u32,
    items: Vec<BillItem>,
    emergency: bool,
    presettle_first: bool,
    reverse_after: bool,
    med_type: MedType,
    dise_codg: String,
    acct_used: bool,
}

/// A planned insured person: who, and what the visits may draw on.
#[derive(Debug, Clone)]
struct Patient {
    home: String,
    psn_no: String,
    employee: bool,
    /// A chronic disease the person is qualified for.
    disease: Option<&'static str>,
}

/// The diseases every reference policy lists (REFERENCE_POLICIES.md §6.2).
const DISEASES: [&str; 5] = ["M03900", "M01600", "M00500", "M07800", "M08300"];

/// The medical type of a visit, in about the country's proportions (most
/// visits outpatient or at a pharmacy, some chronic, fewer stays).
fn med_type(rng: &mut StdRng, qualified: bool) -> MedType {
    match rng.gen_range(0..100) {
        0..=47 => MedType::GeneralOutpatient,
        48..=52 => MedType::EmergencyOutpatient,
        53..=62 if qualified => MedType::ChronicOutpatient,
        53..=62 => MedType::GeneralOutpatient,
        63..=86 => MedType::Pharmacy,
        87..=93 => MedType::Inpatient,
        94..=95 => MedType::TraumaInpatient,
        96..=97 => MedType::ReferredInpatient,
        _ => MedType::EmergencyInpatient,
    }
}

/// A bill of the size its medical type brings.
fn bill(rng: &mut StdRng, t: MedType) -> Vec<BillItem> {
    let item = |code: &str, qty: String, price: String| BillItem { code: code.into(), qty, price };
    let price = |rng: &mut StdRng, lo: u32, hi: u32| format!("{}.{:02}", rng.gen_range(lo..hi), rng.gen_range(0..100));
    match t.category() {
        MedCategory::Pharmacy => {
            let mut items = vec![item("XA002", rng.gen_range(1..4).to_string(), price(rng, 10, 120))];
            if rng.gen_bool(0.5) {
                items.push(item("XB001", "1".into(), price(rng, 20, 200)));
            }
            items
        }
        MedCategory::Outpatient => {
            let mut items = vec![item("XA001", "1".into(), price(rng, 40, 600))];
            for code in ["XB001", "XC001"] {
                if rng.gen_bool(0.4) {
                    items.push(item(code, rng.gen_range(1..3).to_string(), price(rng, 10, 150)));
                }
            }
            items
        }
        MedCategory::Chronic => vec![item("XA001", "1".into(), price(rng, 300, 8_000))],
        MedCategory::Inpatient => {
            let mut items = vec![item("XA001", "1".into(), price(rng, 200, 40_000))];
            for code in ["XB001", "XC001", "FW001"] {
                if rng.gen_bool(0.5) {
                    items.push(item(code, rng.gen_range(1..6).to_string(), format!("{}.00", rng.gen_range(20..400))));
                }
            }
            items
        }
    }
}

fn plan(rng: &mut StdRng, persons: &[Patient]) -> Vec<Vec<Visit>> {
    let regions: Vec<&'static str> = HOMES.iter().map(|(r, _)| *r).chain([BEIJING]).collect();
    persons
        .iter()
        .map(|p| {
            let (home, psn) = (&p.home, &p.psn_no);
            let n = rng.gen_range(1..=3);
            (0..n)
                .filter_map(|_| {
                    let treatment = match (home.as_str(), rng.gen_range(0..10)) {
                        ("660400", 0..=4) => "654000",
                        ("654000", 0..=4) => "660400",
                        (_, 0..=5) => BEIJING,
                        _ => regions[rng.gen_range(0..regions.len())],
                    };
                    if treatment == home {
                        return None;
                    }
                    let med_type = med_type(rng, p.disease.is_some());
                    let items = bill(rng, med_type);
                    Some(Visit {
                        treatment,
                        psn_no: psn.clone(),
                        home: home.clone(),
                        day: rng.gen_range(1..=28),
                        items,
                        emergency: med_type.category() == MedCategory::Inpatient && rng.gen_bool(0.08),
                        presettle_first: rng.gen_bool(0.2),
                        reverse_after: rng.gen_bool(0.05),
                        med_type,
                        dise_codg: p.disease.filter(|_| med_type == MedType::ChronicOutpatient).unwrap_or("").into(),
                        acct_used: p.employee && rng.gen_bool(0.8),
                    })
                })
                .collect()
        })
        .collect()
}

/// Drops `node`, closing its ledger, once no one else holds it (its server
/// task ends shortly after being told to stop); `Err` after 10 s.
async fn close_when_released(mut node: Arc<Node>) -> Result<(), ()> {
    for _ in 0..10_000 {
        match Arc::try_unwrap(node) {
            Ok(n) => {
                drop(n);
                return Ok(());
            }
            Err(shared) => node = shared,
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    Err(())
}

/// The demo's generated federation: its keys, in [`crate::federation::key`]'s scheme.
pub fn federation_name(seed: u64) -> String {
    format!("demo-{seed}")
}

/// The regions' nodes, serving gRPC on loopback.
struct Nodes {
    nodes: BTreeMap<&'static str, Arc<Node>>,
    urls: BTreeMap<&'static str, String>,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    dirs: BTreeMap<RegionCode, PathBuf>,
}

/// Runs the demo and returns what happened.
pub async fn run(opts: DemoOptions) -> Result<DemoReport, String> {
    let (report, running) = run_and_keep(opts).await?;
    running.stop().await?;
    Ok(report)
}

/// The federation and the operator of a demo, still running.
pub struct Running {
    nodes: BTreeMap<&'static str, Arc<Node>>,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    operator: Arc<Operator>,
}

impl Running {
    /// The node of `region`, still serving.
    pub fn node(&self, region: &str) -> Option<Arc<Node>> {
        self.nodes.get(region).cloned()
    }

    /// Serves the operator's console on `listener` to one viewer, whose
    /// fresh token is returned, until `shutdown`; then stops everything.
    pub async fn serve_console(
        self,
        listener: TcpListener,
        token: &str,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), String> {
        let digest: [u8; 32] =
            sha2::Digest::finalize(sha2::Digest::chain_update(sha2::Sha256::default(), token)).into();
        let access = crate::console::auth::Access::new(vec![crate::console::auth::Viewer {
            name: "demo".into(),
            token_sha256: digest,
        }]);
        // Sessions expire by the wall clock, not the demo's (it stands still).
        let clock: Arc<dyn Clock> = Arc::new(crate::clock::SystemClock);
        let served =
            crate::operator::console::serve(listener, Arc::clone(&self.operator), access, clock, shutdown).await;
        let stopped = self.stop().await;
        served.and(stopped)
    }

    /// Stops every node and closes its ledger.
    pub async fn stop(self) -> Result<(), String> {
        for s in self.stops {
            let _ = s.send(());
        }
        drop(self.operator);
        // The data directories are read (verified) as soon as this returns:
        // every ledger closes first, once its server has let go of its node.
        for (region, node) in self.nodes {
            close_when_released(node)
                .await
                .map_err(|()| format!("node {region} still in use after its server stopped"))?;
        }
        Ok(())
    }
}

/// Runs the demo and keeps its federation and operator running.
pub async fn run_and_keep(opts: DemoOptions) -> Result<(DemoReport, Running), String> {
    if opts.patients == 0 || opts.patients > MAX_PATIENTS {
        return Err(format!("--patients must be 1–{MAX_PATIENTS}"));
    }
    let started = Instant::now();
    let rules = Arc::new(RuleBook::load(&opts.rules_dir).map_err(|e| e.to_string())?);
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let federation = federation_name(opts.seed);
    // Mid-month, 10:00 Asia/Shanghai: every commit falls in the chosen month.
    let mid =
        chrono::NaiveDate::parse_from_str(&format!("{}-15", opts.month), "%Y-%m-%d").map_err(|e| e.to_string())?;
    let clock =
        Arc::new(ManualClock::new(mid.and_hms_opt(2, 0, 0).map(|t| t.and_utc().timestamp_millis()).unwrap_or(0)));
    // Every connection over TLS, with certificates of the federation's CA.
    let ca = FederationCa::new(&federation)?;
    let nodes = start_nodes(&opts, &federation, &ca, &rules, &clock).await?;
    let (persons, registrations) = insure(&opts, &federation, &mut rng, &nodes.nodes).await?;
    let counters = visit(&opts, &federation, &ca, &mut rng, &persons, &nodes.urls).await?;
    let (operator, closed, final_confirmed) = month_end(&opts, &federation, &ca, &rules, &clock, &nodes.urls).await?;
    let (hospitals, samples) = hospital_statements(&opts, &nodes.nodes).await?;
    let Nodes { nodes, stops, dirs, .. } = nodes;
    let report = DemoReport {
        statement: closed.statement,
        statement_hash: closed.hash,
        settled: counters[0],
        refused: counters[1],
        presettled: counters[2],
        reversed: counters[3],
        registrations,
        elapsed: started.elapsed(),
        node_dirs: dirs,
        final_confirmed,
        hospitals,
        samples,
    };
    Ok((report, Running { nodes, stops, operator }))
}

/// Each node's institutions' statements of the month (issued by the nodes
/// when the statement became final), written as
/// `hospitals/<region>/<code>/<YYYY-MM>.json` and `.csv`, and each node's
/// audit sample size.
#[allow(clippy::type_complexity)]
async fn hospital_statements(
    opts: &DemoOptions,
    nodes: &BTreeMap<&'static str, Arc<Node>>,
) -> Result<(Vec<crate::clearing::hospital::HospitalStatement>, BTreeMap<RegionCode, (usize, u64)>), String> {
    let mut statements = Vec::new();
    let mut samples = BTreeMap::new();
    for (r, node) in nodes {
        // Issued as the final notice arrived; finished here if still going.
        node.after_final().await.map_err(|e| format!("{r}: {e}"))?;
        for code in node.config.hospitals.keys() {
            let Some(signed) = node.hospital_statement(code, opts.month).map_err(|e| e.to_string())? else {
                return Err(format!("{r}: no statement of {} for {code}", opts.month));
            };
            let s = crate::node::hospital_statements::open_statement(&signed, &node.public_key())?;
            let dir = opts.out.join("hospitals").join(r).join(code);
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let json = serde_json::to_string_pretty(&s).map_err(|e| e.to_string())?;
            let file = dir.join(format!("{}.json", opts.month));
            std::fs::write(&file, format!("{json}\n")).map_err(|e| format!("{}: {e}", file.display()))?;
            let file = dir.join(format!("{}.csv", opts.month));
            std::fs::write(&file, crate::node::hospital_statements::statement_csv(&s))
                .map_err(|e| format!("{}: {e}", file.display()))?;
            statements.push(s);
        }
        let draw = node.audit_draw(opts.month).map_err(|e| e.to_string())?;
        samples.insert(node.region(), (draw.items.len(), draw.population));
    }
    Ok((statements, samples))
}

fn regions() -> Vec<&'static str> {
    HOMES.iter().map(|(r, _)| *r).chain([BEIJING]).collect()
}

/// Every region's node, a real gRPC server on loopback, with a hospital and a
/// pharmacy.
async fn start_nodes(
    opts: &DemoOptions,
    federation: &str,
    ca: &FederationCa,
    rules: &Arc<RuleBook>,
    clock: &Arc<ManualClock>,
) -> Result<Nodes, String> {
    let mut listeners = BTreeMap::new();
    let mut urls = BTreeMap::new();
    for r in regions() {
        let l = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
        urls.insert(r, format!("https://{}", l.local_addr().map_err(|e| e.to_string())?));
        listeners.insert(r, l);
    }
    let mut peers = Vec::new();
    for (r, url) in &urls {
        peers.push((code(r)?, url.clone()));
    }
    let (mut nodes, mut stops, mut dirs) = (BTreeMap::new(), Vec::new(), BTreeMap::new());
    for r in regions() {
        let dir = opts.out.join("nodes").join(r);
        dirs.insert(code(r)?, dir.clone());
        let level = if r == BEIJING { 3 } else { 2 };
        let plan = NodePlan::new(federation, code(r)?, dir, opts.rules_dir.clone())
            .with_peers(peers.clone())
            .with([Institution::hospital(hospital_code(r), level), Institution::pharmacy(pharmacy_code(r))]);
        let mut cfg = plan.config();
        // 伊犁 holds 5% of its institutions' fund payments for a month (its
        // example config); the others hold nothing.
        if r == "654000" {
            cfg.holdback = crate::clearing::hospital::HoldbackPolicy::new(
                rust_decimal::Decimal::from(5),
                crate::clearing::hospital::Release::NextMonth,
            )?;
        }
        let endpoints = cfg.peers.values().map(|p| (p.region, p.endpoint.clone())).collect();
        let c: Arc<dyn Clock> = clock.clone();
        let tls = ca.node(&plan.node_key(), plan.region)?;
        let transport = Arc::new(GrpcTransport::new(endpoints, Some(Arc::clone(&tls))));
        let node = Arc::new(
            Node::open(cfg, plan.node_key(), Arc::clone(rules), c, transport).map_err(|e| format!("{r}: {e}"))?,
        );
        let listener = listeners.remove(r).ok_or("listener")?;
        stops.push(spawn_serve(Arc::clone(&node), listener, Some(tls)));
        nodes.insert(r, node);
    }
    Ok(Nodes { nodes, urls, stops, dirs })
}

/// Insured persons and their registrations, at their home nodes.
async fn insure(
    opts: &DemoOptions,
    federation: &str,
    rng: &mut StdRng,
    nodes: &BTreeMap<&'static str, Arc<Node>>,
) -> Result<(Vec<Patient>, u64), String> {
    let admin = crate::federation::key(federation, "agency");
    let mut persons: Vec<Patient> = Vec::with_capacity(opts.patients);
    let mut by_home: BTreeMap<&str, Vec<PersonRecord>> = BTreeMap::new();
    for i in 0..opts.patients {
        let (home, types) = HOMES[i % HOMES.len()];
        let insutype = types[rng.gen_range(0..types.len())];
        let special_group = match rng.gen_range(0..100) {
            0..=1 => Some(SpecialGroup::TeKun),
            2..=3 => Some(SpecialGroup::DiBao),
            4 => Some(SpecialGroup::FanPin),
            5 => Some(SpecialGroup::LowIncome),
            _ => None,
        };
        let retired = insutype == "310" && rng.gen_bool(0.3);
        let mut contribution_years = BTreeMap::new();
        if retired {
            contribution_years.insert(home.to_string(), rng.gen_range(10..30));
        }
        let psn_no = format!("{home}{i:07}");
        let employee = insutype == "310";
        let disease = rng.gen_bool(0.12).then(|| DISEASES[rng.gen_range(0..DISEASES.len())]);
        let chronic = disease
            .map(|d| QualificationRecord {
                dise_codg: d.to_string(),
                begndate: format!("{}-01", opts.month.previous()),
                enddate: None,
            })
            .into_iter()
            .collect();
        let acct_balance = employee.then(|| format!("{}.00", rng.gen_range(100..3_000)));
        persons.push(Patient { home: home.to_string(), psn_no: psn_no.clone(), employee, disease });
        by_home.entry(home).or_default().push(PersonRecord {
            psn_no,
            insuplc_admdvs: home.to_string(),
            insutype: insutype.to_string(),
            retired,
            special_group,
            contribution_years,
            acct_balance,
            chronic,
        });
    }
    for (home, recs) in &by_home {
        nodes[home].import_persons(recs).await.map_err(|e| e.to_string())?;
    }
    let targets = ["110000", "440000", "330000", "540000", "610000", "650000", "660000"];
    let mut registrations = 0u64;
    let bar = progress_bar(opts.progress, "registrations", persons.len() as u64);
    for (n, Patient { home, psn_no: psn, .. }) in persons.iter().enumerate() {
        bar.set_position(n as u64 + 1);
        if !rng.gen_bool(0.8) {
            continue;
        }
        let kind = RegistrationKind::ALL[rng.gen_range(0..RegistrationKind::ALL.len())];
        let target = if rng.gen_bool(0.8) { BEIJING } else { targets[rng.gen_range(0..targets.len())] };
        let home_code = code(home)?;
        if home_code.covers(code(target)?) {
            continue;
        }
        let req = RegistrationRequest {
            msgid: format!("demo-reg-{n}"),
            op: Op::Create as i32,
            psn_no: psn.clone(),
            kind: kind.as_str().to_string(),
            target_admdvs: target.to_string(),
            begndate: format!("{}-01", opts.month.previous()),
            enddate: if kind.is_long_term() { String::new() } else { format!("{}-28", opts.month.next()) },
            ..Default::default()
        };
        nodes[home.as_str()]
            .apply_registration(seal(&admin, ADMIN_DOMAIN, "agency", &req))
            .await
            .map_err(|e| e.to_string())?;
        registrations += 1;
    }
    finish(&bar, opts.progress, "registrations");

    Ok((persons, registrations))
}

/// A month of traffic: each person's visits in order on one worker; workers
/// run at once. Returns settled, refused, presettled, reversed, visits.
async fn visit(
    opts: &DemoOptions,
    federation: &str,
    ca: &FederationCa,
    rng: &mut StdRng,
    persons: &[Patient],
    urls: &BTreeMap<&'static str, String>,
) -> Result<[u64; 5], String> {
    let visits = plan(rng, persons);
    let total: u64 = visits.iter().map(|v| v.len() as u64).sum();
    let mut lanes: Vec<Vec<Visit>> = vec![Vec::new(); WORKERS];
    for (i, v) in visits.into_iter().enumerate() {
        lanes[i % WORKERS].extend(v);
    }
    // A channel per institution: its connection carries its own certificate.
    let mut channels = BTreeMap::new();
    for r in regions() {
        for inst in [hospital_code(r), pharmacy_code(r)] {
            let tls = ca.client(&crate::federation::key(federation, &inst), &inst)?;
            let channel = crate::tls::endpoint(&urls[r], Some(&tls), None)?.connect_lazy();
            channels.insert(inst, channel);
        }
    }
    let counters = Arc::new(Counters::default());
    let desk = Arc::new(Desk {
        federation: federation.to_string(),
        channels,
        month: opts.month,
        counters: Arc::clone(&counters),
        bar: progress_bar(opts.progress, "hospital visits", total),
    });
    let mut tasks = Vec::new();
    for (w, lane) in lanes.into_iter().enumerate() {
        let desk = Arc::clone(&desk);
        tasks.push(tokio::spawn(async move { desk.work(w, lane).await }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    finish(&desk.bar, opts.progress, "hospital visits");
    Ok(counters.0.each_ref().map(|c| c.load(Ordering::Relaxed)))
}

/// The hospital or pharmacy of a visit.
fn institution_of(v: &Visit) -> String {
    if v.med_type == MedType::Pharmacy {
        pharmacy_code(v.treatment)
    } else {
        hospital_code(v.treatment)
    }
}

/// Settled, refused, presettled, reversed, visits.
#[derive(Default)]
struct Counters([AtomicU64; 5]);

/// What every hospital worker of the demo shares.
struct Desk {
    federation: String,
    /// Each institution's channel to its node.
    channels: BTreeMap<String, tonic::transport::Channel>,
    month: Month,
    counters: Arc<Counters>,
    bar: indicatif::ProgressBar,
}

impl Desk {
    /// One worker's visits, in order, each sent by its hospital or pharmacy.
    async fn work(&self, w: usize, lane: Vec<Visit>) -> Result<(), String> {
        for (i, v) in lane.into_iter().enumerate() {
            let channel = self.channels.get(&institution_of(&v)).ok_or("no channel for the visit's institution")?;
            self.one(HospitalServiceClient::new(channel.clone()), &format!("d{w}x{i}"), &v).await;
            self.counters.0[4].fetch_add(1, Ordering::Relaxed);
            self.bar.inc(1);
        }
        Ok(())
    }

    /// A visit: perhaps a pre-settlement first, the settlement, perhaps its reversal.
    async fn one(&self, client: HospitalServiceClient<tonic::transport::Channel>, msgid: &str, v: &Visit) {
        let code = institution_of(v);
        let key = crate::federation::key(&self.federation, &code);
        let base = HospitalRequest {
            fixmedins_code: code.clone(),
            psn_no: v.psn_no.clone(),
            insuplc_admdvs: v.home.clone(),
            setl_date: format!("{}-{:02}", self.month, v.day),
            items: v.items.clone(),
            emergency: v.emergency,
            med_type: v.med_type.code().to_string(),
            dise_codg: v.dise_codg.clone(),
            acct_used_flag: v.acct_used,
            ..Default::default()
        };
        let send = |action: Action, msgid: String, reversed: String| {
            let req = HospitalRequest { msgid, action: action as i32, reversed_msgid: reversed, ..base.clone() };
            let mut c = client.clone();
            let env = seal(&key, HOSPITAL_DOMAIN, &code, &req);
            async move { c.submit(env).await.map(|r| r.into_inner()) }
        };
        let count = |i: usize| self.counters.0[i].fetch_add(1, Ordering::Relaxed);
        if v.presettle_first && send(Action::Presettle, format!("{msgid}p"), String::new()).await.is_ok() {
            count(2);
        }
        match send(Action::Settle, msgid.to_string(), String::new()).await {
            Ok(r) if r.settled => {
                count(0);
                if v.reverse_after
                    && send(Action::Reverse, format!("{msgid}r"), msgid.to_string()).await.is_ok_and(|r| r.settled)
                {
                    count(3);
                }
            }
            _ => {
                count(1);
            }
        }
    }
}

/// Month end: the operator closes, every region confirms. Returns the
/// operator, the statement and whether it is final.
async fn month_end(
    opts: &DemoOptions,
    federation: &str,
    ca: &FederationCa,
    rules: &RuleBook,
    clock: &Arc<ManualClock>,
    urls: &BTreeMap<&'static str, String>,
) -> Result<(Arc<Operator>, crate::operator::Closed, bool), String> {
    let key = |tag: &str| crate::federation::key(federation, tag);
    let regions = regions();
    let operator = Operator::open(
        &opts.out.join("operator"),
        key("operator"),
        clock.clone(),
        regions.iter().map(|r| Ok((code(r)?, key(r).verifying_key()))).collect::<Result<_, String>>()?,
        Arc::new(crate::operator::client::NodeReports::new(
            regions.iter().map(|r| Ok((code(r)?, urls[r].clone()))).collect::<Result<_, String>>()?,
            Some(ca.operator(&key("operator"))?),
        )),
        rules.pairs().clone(),
        // Quotas near a month of a region's payable (about 1,000 yuan a patient
        // in this mostly outpatient traffic), so some regions cross the warning threshold.
        HOMES
            .iter()
            .enumerate()
            .map(|(i, (r, _))| {
                Ok((
                    code(r)?,
                    crate::money::Amount::yuan(((opts.patients / HOMES.len()) as i64) * (800 + 200 * i as i64)),
                ))
            })
            .collect::<Result<_, String>>()?,
    )
    .map_err(|e| e.to_string())?;
    // Past the month's end and the operator's grace: the month may close.
    clock.set(crate::time::month_end_ms(opts.month) + crate::operator::DEFAULT_CLOSE_GRACE.as_millis() as i64);
    let closed = operator.close(opts.month).await.map_err(|e| e.to_string())?;
    for r in &regions {
        let c = Confirmation {
            month: opts.month.to_string(),
            region: r.to_string(),
            statement_hash: closed.hash.clone(),
            disputes: vec![],
            withdrawn: vec![],
        };
        operator.answer(seal(&key(r), CONFIRMATION_DOMAIN, r, &c)).await.map_err(|e| e.to_string())?;
    }
    let final_confirmed = operator.is_final(&closed).map_err(|e| e.to_string())?;
    crate::operator::files::write_statement(&opts.out.join("statements"), &closed)?;
    Ok((Arc::new(operator), closed, final_confirmed))
}
