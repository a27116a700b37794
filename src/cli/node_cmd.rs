//! `xclear node`, `xclear hospital …`, `xclear persons import`, `xclear registration apply`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Subcommand, ValueEnum};
use serde::Deserialize;
use serde_json::json;

use xclear::api::envelope::{seal, ADMIN_DOMAIN, HOSPITAL_DOMAIN, PERSONS_DOMAIN};
use xclear::api::error::reason_of;
use xclear::clock::SystemClock;
use xclear::crypto;
use xclear::node::grpc::{self, GrpcTransport};
use xclear::node::persons::{insured_person, MAX_PERSONS_PER_IMPORT};
use xclear::node::{metrics, Node, NodeConfig};
use xclear::proto::hospital_service_client::HospitalServiceClient;
use xclear::proto::registration_service_client::RegistrationServiceClient;
use xclear::proto::{
    hospital_request::Action, registration_request::Op, BillItem, HospitalRequest, HospitalResponse, PersonImport,
    RegistrationRequest,
};
use xclear::rules::RuleBook;

use super::connect::TlsArgs;
use super::{fail, EXIT_BAD_INPUT, EXIT_FAILED};
use xclear::tls::{Tls, TlsSetting};

/// How often a node re-drives intents that have no outcome yet.
const REDRIVE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Clone, Copy, ValueEnum, Default)]
pub(crate) enum LogFormat {
    #[default]
    Human,
    Json,
}

pub(crate) fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Colours only for a person at a terminal, not in a log file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Warnings and errors on standard error, for a command that is not a server.
pub(crate) fn init_client_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).try_init();
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| fail(EXIT_FAILED, e))
}

/// Runs a command's async work on a fresh runtime.
fn block_on(work: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match runtime() {
        Ok(rt) => rt.block_on(work),
        Err(c) => c,
    }
}

/// Loads what a node needs from its config: the node, and its TLS identity
/// unless the config says plaintext.
fn open_node(config: &Path) -> Result<(Arc<Node>, Option<Arc<Tls>>), ExitCode> {
    let cfg = NodeConfig::load(config).map_err(|e| fail(EXIT_BAD_INPUT, e))?;
    let key = signing_key(&cfg.key_file)?;
    let tls = load_tls(&cfg.tls, &key)?;
    let rules = RuleBook::load(&cfg.rules_dir).map_err(|e| fail(EXIT_BAD_INPUT, e))?;
    let endpoints = cfg.peers.values().map(|p| (p.region, p.endpoint.clone())).collect();
    let transport = Arc::new(GrpcTransport::new(endpoints, tls.clone()));
    let node = Node::open(cfg, key, Arc::new(rules), Arc::new(SystemClock), transport)
        .map(Arc::new)
        .map_err(|e| fail(EXIT_FAILED, e))?;
    Ok((node, tls))
}

/// The TLS identity a config names (`None`, warned, for plaintext).
pub(crate) fn load_tls(setting: &TlsSetting, key: &ed25519_dalek::SigningKey) -> Result<Option<Arc<Tls>>, ExitCode> {
    match setting {
        TlsSetting::Files(files) => {
            Tls::load(files, key).map(|t| Some(Arc::new(t))).map_err(|e| fail(EXIT_BAD_INPUT, e))
        }
        TlsSetting::Plaintext => {
            tracing::warn!("[tls] plaintext = true: connections are neither encrypted nor bound to their signers");
            Ok(None)
        }
    }
}

pub(crate) fn run_node(config: &Path, log_format: LogFormat) -> ExitCode {
    init_logs(log_format);
    let rt = match runtime() {
        Ok(r) => r,
        Err(c) => return c,
    };
    rt.block_on(async {
        let (node, tls) = match open_node(config) {
            Ok(n) => n,
            Err(c) => return c,
        };
        let listener = match tokio::net::TcpListener::bind(node.config.listen).await {
            Ok(l) => l,
            Err(e) => return fail(EXIT_FAILED, format!("{}: {e}", node.config.listen)),
        };
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        if let Some(m) = node.config.metrics_listen {
            match tokio::net::TcpListener::bind(m).await {
                Ok(l) => {
                    let n = Arc::clone(&node);
                    tracing::info!(metrics = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), "metrics");
                    tokio::spawn(metrics::serve(l, n));
                }
                Err(e) => return fail(EXIT_FAILED, format!("metrics {m}: {e}")),
            }
        }
        if let Some(console) = &node.config.console {
            match tokio::net::TcpListener::bind(console.listen).await {
                Ok(l) => {
                    tracing::info!(console = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), "console");
                    let access = xclear::console::auth::Access::new(console.viewers.clone());
                    let clock: Arc<dyn xclear::clock::Clock> = Arc::new(SystemClock);
                    tokio::spawn(xclear::node::console::serve(
                        l,
                        Arc::clone(&node),
                        access,
                        clock,
                        super::shutdown_signal(),
                    ));
                }
                Err(e) => return fail(EXIT_FAILED, format!("console {}: {e}", console.listen)),
            }
        }
        // Intents without an outcome are re-driven until their home answers
        // (or refuses them for good), each backing off while it fails.
        let redriver = Arc::clone(&node);
        tokio::spawn(async move {
            loop {
                match redriver.redrive_due_intents().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(completed = n, "re-driven intents completed"),
                    Err(e) => tracing::warn!(error = %e, "re-driving intents"),
                }
                tokio::time::sleep(REDRIVE_EVERY).await;
            }
        });
        // Designation changes a corps–local partner does not have yet, in a
        // loop of their own (an unreachable partner does not hold up intents).
        let deliverer = Arc::clone(&node);
        tokio::spawn(async move {
            loop {
                match deliverer.deliver_sanctions().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(delivered = n, "sanctions delivered to partners"),
                    Err(e) => tracing::warn!(error = %e, "delivering sanctions"),
                }
                tokio::time::sleep(REDRIVE_EVERY).await;
            }
        });
        // A final month's statements and sample a crash or a failure
        // interrupted, until done (nothing to do costs a lock and a lookup);
        // and the state store's position brought to the ledger's end (entries
        // that moved nothing of it), so a restart replays little.
        let finisher = Arc::clone(&node);
        tokio::spawn(async move {
            loop {
                if let Err(e) = finisher.after_final().await {
                    tracing::warn!(error = %e, "institutions' statements and audit samples");
                }
                let state = Arc::clone(&finisher);
                let maintained = tokio::task::spawn_blocking(move || state.maintain_state()).await;
                if let Ok(Err(e)) = maintained {
                    tracing::error!(error = %e, "node state");
                }
                tokio::time::sleep(REDRIVE_EVERY).await;
            }
        });
        tracing::info!(region = %node.region(), listen = %addr, entries = node.ledger().len(), "node started");
        // The first line on standard output names the bound address (port 0 picks one).
        println!("xclear node {} listening on {addr}", node.region());
        let shutdown = super::shutdown_signal();
        match grpc::serve(node, listener, tls, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(EXIT_FAILED, e),
        }
    })
}

#[derive(Subcommand, Clone)]
pub(crate) enum HospitalAction {
    /// Settle a bill (结算).
    Settle,
    /// Compute without committing anything (预结算).
    Presettle,
    /// Reverse a settlement (撤销): the bill file names `reversed_msgid`.
    Reverse,
    /// Ask whether the patient can settle directly here.
    Eligibility,
    /// Reconcile the institution's month with its node (对账): totals, and the detail list if given.
    Reconcile {
        /// The institution (fixmedins_code) whose key signs.
        #[arg(long)]
        code: String,
        /// The clearing month, YYYY-MM (each settlement's answer names it).
        #[arg(long)]
        month: String,
        /// The institution's records (JSON: totals {count, medfee_sumamt, fund_pay_sumamt, acct_pay}
        /// and, to compare item by item, details [{setl_id, msgid, medfee_sumamt, fund_pay_sumamt, acct_pay}]).
        #[arg(long)]
        file: std::path::PathBuf,
    },
    /// Fetch the institution's statement of a final month (医疗机构月度结算单): printed as JSON,
    /// and written as DIR/<YYYY-MM>.json and .csv with --out.
    Statement {
        /// The institution (fixmedins_code) whose key signs.
        #[arg(long)]
        code: String,
        /// The month, YYYY-MM.
        #[arg(long)]
        month: String,
        /// Where to write <YYYY-MM>.json and <YYYY-MM>.csv.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

/// The bill file a hospital client sends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BillFile {
    pub fixmedins_code: String,
    pub msgid: String,
    pub psn_no: String,
    pub insuplc_admdvs: String,
    pub setl_date: String,
    #[serde(default)]
    pub items: Vec<BillItemJson>,
    #[serde(default)]
    pub emergency: bool,
    #[serde(default)]
    pub reversed_msgid: String,
    /// 11, 13, 14, 21–24 or 41; absent means 21 (a stay).
    #[serde(default)]
    pub med_type: String,
    /// The chronic disease (for med_type 14).
    #[serde(default)]
    pub dise_codg: String,
    #[serde(default)]
    pub acct_used_flag: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BillItemJson {
    pub code: String,
    pub qty: String,
    pub price: String,
}

pub(crate) fn hospital_response_json(r: &HospitalResponse) -> serde_json::Value {
    let figures = r.figures.as_ref().map(|f| {
        json!({
            "route": f.route, "medfee_sumamt": f.medfee_sumamt, "fulamt_ownpay_amt": f.fulamt_ownpay_amt,
            "overlmt_selfpay": f.overlmt_selfpay, "preselfpay_amt": f.preselfpay_amt, "inscp_scp_amt": f.inscp_scp_amt,
            "act_pay_dedc": f.act_pay_dedc, "pool_prop": f.pool_prop, "hifp_pay": f.hifp_pay, "hifmi_pay": f.hifmi_pay,
            "hifob_pay": f.hifob_pay, "maf_pay": f.maf_pay, "fund_pay_sumamt": f.fund_pay_sumamt, "psn_part_amt": f.psn_part_amt,
            "med_type": f.med_type, "acct_pay": f.acct_pay, "psn_cash_pay": f.psn_cash_pay, "balc": f.balc,
        })
    });
    json!({
        "msgid": r.msgid, "settled": r.settled, "eligible": r.eligible, "setl_id": r.setl_id, "month": r.month,
        "refusal": r.refusal, "message": r.message, "figures": figures,
    })
}

/// Reads a JSON file into `T`, naming the file and the field of any defect.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ExitCode> {
    let text = std::fs::read_to_string(path).map_err(|e| fail(EXIT_BAD_INPUT, format!("{}: {e}", path.display())))?;
    let de = &mut serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(de)
        .map_err(|e| fail(EXIT_BAD_INPUT, format!("{}: {}: {}", path.display(), e.path(), e.inner())))
}

/// Loads a signing key file, or exits with a bad-input code.
fn signing_key(path: &Path) -> Result<ed25519_dalek::SigningKey, ExitCode> {
    crypto::load_signing_key(path).map_err(|e| fail(EXIT_BAD_INPUT, e))
}

pub(crate) fn run_hospital(
    action: HospitalAction,
    node: &str,
    key_file: &Path,
    tls: &TlsArgs,
    bill: &Path,
) -> ExitCode {
    let (key, b): (_, BillFile) = match (signing_key(key_file), read_json(bill)) {
        (Ok(k), Ok(b)) => (k, b),
        (Err(c), _) | (_, Err(c)) => return c,
    };
    let req = HospitalRequest {
        fixmedins_code: b.fixmedins_code.clone(),
        msgid: b.msgid,
        action: match action {
            HospitalAction::Settle => Action::Settle,
            HospitalAction::Presettle => Action::Presettle,
            HospitalAction::Reverse => Action::Reverse,
            HospitalAction::Eligibility => Action::Eligibility,
            HospitalAction::Reconcile { .. } | HospitalAction::Statement { .. } => Action::Unspecified,
        } as i32,
        psn_no: b.psn_no,
        insuplc_admdvs: b.insuplc_admdvs,
        setl_date: b.setl_date,
        items: b.items.into_iter().map(|i| BillItem { code: i.code, qty: i.qty, price: i.price }).collect(),
        reversed_msgid: b.reversed_msgid,
        sent_at_ms: chrono::Utc::now().timestamp_millis(),
        emergency: b.emergency,
        med_type: b.med_type,
        dise_codg: b.dise_codg,
        acct_used_flag: b.acct_used_flag,
    };
    let env = seal(&key, HOSPITAL_DOMAIN, &b.fixmedins_code, &req);
    block_on(async {
        let mut client = match tls.channel(node, key_file, &key).await {
            Ok(c) => HospitalServiceClient::new(c),
            Err(c) => return c,
        };
        match client.submit(env).await {
            Ok(r) => {
                let r = r.into_inner();
                println!("{}", serde_json::to_string_pretty(&hospital_response_json(&r)).unwrap_or_default());
                // Like calc: 0 settled (or answered), 3 refused by the rules.
                if r.refusal.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(super::EXIT_REFUSED)
                }
            }
            Err(s) => super::call_failed(&s),
        }
    })
}

/// `xclear state --config`: opens a stopped node (its state store caught
/// up, or rebuilt, from its ledger) and prints where the store stands.
pub(crate) fn run_state(config: &Path) -> ExitCode {
    let rt = match runtime() {
        Ok(r) => r,
        Err(c) => return c,
    };
    rt.block_on(async {
        let started = std::time::Instant::now();
        let (node, _) = match open_node(config) {
            Ok(n) => n,
            Err(c) => return c,
        };
        let opened_s = started.elapsed().as_secs_f64();
        match node.state_digest() {
            Ok((rows, digest)) => {
                let out = json!({"region": node.region().to_string(), "ledger_entries": node.ledger().len(),
                                 "state_position": node.state_position(), "state_rows": rows,
                                 "state_digest": hex::encode(digest), "open_seconds": opened_s});
                println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Err(e) => fail(EXIT_FAILED, e),
        }
    })
}

/// Records handed to the node at a time by an offline import.
const IMPORT_CHUNK: usize = 20_000;

/// Loads insured persons from a JSON array into a (stopped) node's ledger,
/// streaming the file: a chunk is parsed while the one before it is
/// appended. Stopped part-way (a bad record, a crash), the file can be
/// loaded again whole: records the node holds already add nothing.
pub(crate) fn run_import(config: &Path, file: &Path) -> ExitCode {
    let rt = match runtime() {
        Ok(r) => r,
        Err(c) => return c,
    };
    rt.block_on(async {
        let (node, _) = match open_node(config) {
            Ok(n) => n,
            Err(c) => return c,
        };
        let bar = import_progress();
        let (mut rx, reader) = super::person_file::spawn(file, IMPORT_CHUNK);
        let loaded = node.load_persons(&mut rx, |n| bar.set_position(n)).await;
        drop(rx);
        let read = reader.await;
        bar.finish_and_clear();
        let (sent, added) = match loaded {
            Ok(done) => done,
            Err((e, sent)) => {
                let f = json!({"error": e.reason(), "message": e.to_string(), "persons_loaded_before": sent});
                return fail(EXIT_BAD_INPUT, f);
            }
        };
        match read {
            Ok(Ok(n)) => {
                println!("{added} persons added ({n} in the file)");
                ExitCode::SUCCESS
            }
            Ok(Err(e)) => {
                fail(EXIT_BAD_INPUT, json!({"error": "bad_input", "message": e, "persons_loaded_before": sent}))
            }
            Err(e) => fail(EXIT_FAILED, e.to_string()),
        }
    })
}

/// A count of the persons loaded, on a terminal only.
fn import_progress() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {human_pos} persons loaded ({per_sec}, {elapsed})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// `xclear persons import --node`: the file's persons to a running node, in
/// signed batches, streaming the file.
pub(crate) fn run_import_remote(node: &str, admin: &str, key_file: &Path, tls: &TlsArgs, file: &Path) -> ExitCode {
    let key = match signing_key(key_file) {
        Ok(k) => k,
        Err(c) => return c,
    };
    block_on(async {
        let mut client = match tls.channel(node, key_file, &key).await {
            Ok(c) => RegistrationServiceClient::new(c),
            Err(c) => return c,
        };
        let (mut rx, reader) = super::person_file::spawn(file, MAX_PERSONS_PER_IMPORT);
        let (mut received, mut added) = (0u64, 0u64);
        while let Some(chunk) = rx.recv().await {
            let batch = PersonImport { persons: chunk.iter().map(insured_person).collect() };
            match client.import_persons(seal(&key, PERSONS_DOMAIN, admin, &batch)).await {
                Ok(r) => {
                    let r = r.into_inner();
                    received += u64::from(r.received);
                    added += u64::from(r.added);
                }
                // Batches before this one are in; the file can be sent again
                // whole (a record already held is not added twice).
                Err(s) => {
                    return fail(
                        EXIT_FAILED,
                        json!({"error": reason_of(&s).unwrap_or_else(|| format!("{:?}", s.code())),
                               "message": s.message(), "persons_sent_before": received}),
                    )
                }
            }
        }
        drop(rx);
        match reader.await {
            Ok(Ok(_)) => {
                println!("{added} persons added ({received} in the file)");
                ExitCode::SUCCESS
            }
            Ok(Err(e)) => {
                fail(EXIT_BAD_INPUT, json!({"error": "bad_input", "message": e, "persons_sent_before": received}))
            }
            Err(e) => fail(EXIT_FAILED, e.to_string()),
        }
    })
}

/// The registration request file an agency sends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegistrationFile {
    pub msgid: String,
    pub op: String,
    pub psn_no: String,
    #[serde(default)]
    pub reg_id: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub target_admdvs: String,
    #[serde(default)]
    pub begndate: String,
    #[serde(default)]
    pub enddate: String,
    #[serde(default)]
    pub on_date: String,
}

pub(crate) fn run_registration(node: &str, key_file: &Path, tls: &TlsArgs, admin: &str, file: &Path) -> ExitCode {
    let (key, r): (_, RegistrationFile) = match (signing_key(key_file), read_json(file)) {
        (Ok(k), Ok(r)) => (k, r),
        (Err(c), _) | (_, Err(c)) => return c,
    };
    let op = match r.op.as_str() {
        "create" => Op::Create,
        "change" => Op::Change,
        "cancel" => Op::Cancel,
        other => return fail(EXIT_BAD_INPUT, format!("op: {other:?} is not create, change or cancel")),
    };
    let req = RegistrationRequest {
        msgid: r.msgid,
        op: op as i32,
        psn_no: r.psn_no,
        reg_id: r.reg_id,
        kind: r.kind,
        target_admdvs: r.target_admdvs,
        begndate: r.begndate,
        enddate: r.enddate,
        on_date: r.on_date,
    };
    let env = seal(&key, ADMIN_DOMAIN, admin, &req);
    block_on(async {
        let mut client = match tls.channel(node, key_file, &key).await {
            Ok(c) => RegistrationServiceClient::new(c),
            Err(c) => return c,
        };
        match client.apply(env).await {
            Ok(r) => {
                println!("{}", registration_json(&r.into_inner()));
                ExitCode::SUCCESS
            }
            Err(s) => super::call_failed(&s),
        }
    })
}

/// A signed change to one person at their home node.
pub(crate) enum PersonChange {
    Qualify(xclear::proto::QualificationRequest),
    Credit(xclear::proto::AccountCreditRequest),
}

/// `xclear persons qualify|credit`: prints the person's qualifications and
/// balance after the change.
pub(crate) fn run_person_change(
    node: &str,
    key_file: &Path,
    tls: &TlsArgs,
    admin: &str,
    change: PersonChange,
) -> ExitCode {
    let key = match signing_key(key_file) {
        Ok(k) => k,
        Err(c) => return c,
    };
    block_on(async {
        let mut client = match tls.channel(node, key_file, &key).await {
            Ok(c) => RegistrationServiceClient::new(c),
            Err(c) => return c,
        };
        let answer = match change {
            PersonChange::Qualify(req) => client.qualify(seal(&key, ADMIN_DOMAIN, admin, &req)).await,
            PersonChange::Credit(req) => client.credit_account(seal(&key, ADMIN_DOMAIN, admin, &req)).await,
        };
        match answer {
            Ok(p) => {
                let p = p.into_inner();
                let chronic: Vec<serde_json::Value> = p
                    .chronic
                    .iter()
                    .map(|q| json!({"dise_codg": q.dise_codg, "begndate": q.begndate, "enddate": q.enddate}))
                    .collect();
                println!("{}", json!({"psn_no": p.psn_no, "acct_balance": p.acct_balance, "chronic": chronic}));
                ExitCode::SUCCESS
            }
            Err(s) => super::call_failed(&s),
        }
    })
}

/// `xclear registration query`: a person's registrations, one JSON object a line.
pub(crate) fn run_registration_query(
    node: &str,
    key_file: &Path,
    tls: &TlsArgs,
    admin: &str,
    psn_no: &str,
) -> ExitCode {
    let key = match signing_key(key_file) {
        Ok(k) => k,
        Err(c) => return c,
    };
    let query = xclear::proto::RegistrationQuery { psn_no: psn_no.to_string(), fixmedins_code: String::new() };
    let env = seal(&key, xclear::api::envelope::REGISTRATION_QUERY_DOMAIN, admin, &query);
    block_on(async {
        let mut client = match tls.channel(node, key_file, &key).await {
            Ok(c) => RegistrationServiceClient::new(c),
            Err(c) => return c,
        };
        match client.query(env).await {
            Ok(list) => {
                for r in list.into_inner().registrations {
                    println!("{}", registration_json(&r));
                }
                ExitCode::SUCCESS
            }
            Err(s) => super::call_failed(&s),
        }
    })
}

fn registration_json(r: &xclear::proto::RegistrationRecord) -> serde_json::Value {
    json!({"reg_id": r.reg_id, "psn_no": r.psn_no, "kind": r.kind, "target_admdvs": r.target_admdvs,
           "begndate": r.begndate, "enddate": r.enddate, "cancelled": r.cancelled})
}

/// `xclear institution suspend|revoke|restore`: an admin changes one of
/// its region's institutions' designation on the running node; prints the
/// institution's designation after it.
pub(crate) fn run_designation(
    node: &str,
    key_file: &Path,
    tls: &TlsArgs,
    admin: &str,
    req: xclear::proto::DesignationRequest,
) -> ExitCode {
    let key = match signing_key(key_file) {
        Ok(k) => k,
        Err(c) => return c,
    };
    block_on(async {
        let mut client = match tls.channel(node, key_file, &key).await {
            Ok(c) => RegistrationServiceClient::new(c),
            Err(c) => return c,
        };
        match client.designate(seal(&key, xclear::api::envelope::DESIGNATION_DOMAIN, admin, &req)).await {
            Ok(s) => {
                let s = s.into_inner();
                let at = |ms: i64| if ms == 0 { String::new() } else { xclear::time::shanghai_date(ms) };
                println!(
                    "{}",
                    json!({"fixmedins_code": s.fixmedins_code, "region": s.region, "status": s.status,
                           "reason": s.reason, "since": at(s.since_ms), "restorable_from": at(s.restorable_from_ms)})
                );
                ExitCode::SUCCESS
            }
            Err(s) => super::call_failed(&s),
        }
    })
}

/// `xclear hospital statement`: the institution's statement of a month.
pub(crate) fn run_statement(
    node: &str,
    key_file: &Path,
    tls: &TlsArgs,
    code: &str,
    month: &str,
    out: Option<&Path>,
) -> ExitCode {
    use xclear::node::hospital_statements::statement_csv;
    let key = match signing_key(key_file) {
        Ok(k) => k,
        Err(c) => return c,
    };
    let req = xclear::proto::HospitalStatementRequest { fixmedins_code: code.to_string(), month: month.to_string() };
    let env = seal(&key, xclear::api::envelope::HOSPITAL_STATEMENT_REQUEST_DOMAIN, code, &req);
    block_on(async {
        let mut client = match tls.channel(node, key_file, &key).await {
            Ok(c) => HospitalServiceClient::new(c),
            Err(c) => return c,
        };
        let signed = match client.statement(env).await {
            Ok(s) => s.into_inner(),
            Err(s) => return super::call_failed(&s),
        };
        let statement: xclear::clearing::hospital::HospitalStatement = match serde_json::from_slice(&signed.body) {
            Ok(s) => s,
            Err(e) => return fail(EXIT_FAILED, format!("the node's statement is unreadable: {e}")),
        };
        let pretty = serde_json::to_string_pretty(&statement).unwrap_or_default();
        println!("{pretty}");
        if let Some(dir) = out {
            let write = std::fs::create_dir_all(dir)
                .and_then(|()| std::fs::write(dir.join(format!("{month}.json")), format!("{pretty}\n")))
                .and_then(|()| std::fs::write(dir.join(format!("{month}.csv")), statement_csv(&statement)));
            if let Err(e) = write {
                return fail(EXIT_FAILED, format!("{}: {e}", dir.display()));
            }
        }
        ExitCode::SUCCESS
    })
}

/// The institution's records for `xclear hospital reconcile`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReconcileFile {
    pub totals: ReconcileTotalsJson,
    #[serde(default)]
    pub details: Option<Vec<ReconcileDetailJson>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReconcileTotalsJson {
    pub count: u64,
    pub medfee_sumamt: String,
    pub fund_pay_sumamt: String,
    pub acct_pay: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReconcileDetailJson {
    pub setl_id: String,
    pub msgid: String,
    pub medfee_sumamt: String,
    pub fund_pay_sumamt: String,
    pub acct_pay: String,
}

/// `xclear hospital reconcile`: the node's answer as JSON; exit 0 balanced,
/// 3 when anything differs.
pub(crate) fn run_reconcile(
    node: &str,
    key_file: &Path,
    tls: &TlsArgs,
    code: &str,
    month: &str,
    file: &Path,
) -> ExitCode {
    use xclear::proto::{ReconcileDetail, ReconcileRequest, ReconcileTotals};
    let (key, f): (_, ReconcileFile) = match (signing_key(key_file), read_json(file)) {
        (Ok(k), Ok(f)) => (k, f),
        (Err(c), _) | (_, Err(c)) => return c,
    };
    let req = ReconcileRequest {
        fixmedins_code: code.to_string(),
        month: month.to_string(),
        totals: Some(ReconcileTotals {
            count: f.totals.count,
            medfee_sumamt: f.totals.medfee_sumamt,
            fund_pay_sumamt: f.totals.fund_pay_sumamt,
            acct_pay: f.totals.acct_pay,
        }),
        with_details: f.details.is_some(),
        details: f
            .details
            .unwrap_or_default()
            .into_iter()
            .map(|d| ReconcileDetail {
                setl_id: d.setl_id,
                msgid: d.msgid,
                medfee_sumamt: d.medfee_sumamt,
                fund_pay_sumamt: d.fund_pay_sumamt,
                acct_pay: d.acct_pay,
            })
            .collect(),
    };
    let env = seal(&key, xclear::api::envelope::RECONCILE_DOMAIN, code, &req);
    block_on(async {
        let mut client = match tls.channel(node, key_file, &key).await {
            Ok(c) => HospitalServiceClient::new(c),
            Err(c) => return c,
        };
        match client.reconcile(env).await {
            Ok(a) => {
                let a = a.into_inner();
                let t = a.node_totals.unwrap_or_default();
                let differences: Vec<serde_json::Value> = a
                    .differences
                    .iter()
                    .map(|d| {
                        json!({"kind": d.kind, "setl_id": d.setl_id, "msgid": d.msgid, "field": d.field,
                               "node": d.node, "institution": d.institution})
                    })
                    .collect();
                let out = json!({
                    "balanced": a.balanced,
                    "node_totals": {"count": t.count, "medfee_sumamt": t.medfee_sumamt,
                                    "fund_pay_sumamt": t.fund_pay_sumamt, "acct_pay": t.acct_pay},
                    "differences": differences,
                });
                println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
                if a.balanced {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(super::EXIT_REFUSED)
                }
            }
            Err(s) => super::call_failed(&s),
        }
    })
}
