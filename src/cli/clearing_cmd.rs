//! `xclear clearing close|statement|confirm|dispute|adjust|advance`: the
//! national operator's month end. Each runs either against a running
//! `xclear operator` (`--operator URL`) or, with the server stopped, directly
//! on the operator's data (`--config FILE`).
//! `xclear operator --config FILE`: the operator's long-running server.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand, ValueEnum};
use ed25519_dalek::SigningKey;
use tonic::transport::Channel;

use xclear::api::convert::advance_line;
use xclear::api::envelope::{seal, ADJUSTMENT_DOMAIN, CLOSE_DOMAIN, CONFIRMATION_DOMAIN};
use xclear::clearing::{Month, Statement};
use xclear::clock::SystemClock;
use xclear::crypto;
use xclear::operator::client::NodeReports;
use xclear::operator::config::OperatorConfig;
use xclear::operator::grpc::MAX_STATEMENT_BYTES;
use xclear::operator::Operator;
use xclear::proto::operator_service_client::OperatorServiceClient;
use xclear::proto::{
    AdjustmentRequest, AdvanceLine, AdvanceRequest, CloseRequest, Confirmation, DisputedLine, Signed, StatementRequest,
};
use xclear::rules::RuleBook;

use super::{fail, EXIT_BAD_INPUT, EXIT_FAILED};

#[derive(Clone, Copy, ValueEnum, Default)]
pub(crate) enum Format {
    Json,
    Csv,
    #[default]
    Table,
}

/// Where the operator is: a running server, or its data on this machine.
#[derive(Args, Clone)]
pub(crate) struct Target {
    /// The operator's config: work on its data directly (the server must be stopped).
    #[arg(long, conflicts_with = "operator", required_unless_present = "operator")]
    config: Option<PathBuf>,
    /// A running `xclear operator`, e.g. http://127.0.0.1:20070
    #[arg(long)]
    operator: Option<String>,
    /// The operator's key file, to sign `close` and `adjust` sent to a running operator.
    #[arg(long)]
    operator_key: Option<PathBuf>,
    /// A region's node key file: signs a region's answer (confirm, dispute, withdraw); over TLS,
    /// any member's key (with its certificate) identifies the connection.
    #[arg(long)]
    key: Option<PathBuf>,
    #[command(flatten)]
    tls: super::connect::TlsArgs,
}

#[derive(Subcommand)]
pub(crate) enum ClearingCommand {
    /// Collect every node's signed report (sealing the month at each node), reconcile, net and sign the month's statement.
    /// Only a month that is over closes (its end in Asia/Shanghai plus the operator's grace), after the previous one is final.
    Close {
        #[command(flatten)]
        target: Target,
        /// YYYY-MM; default: the operator's next month due (the last closed month while it is not final, else the
        /// month after it; with nothing closed yet, the last month that is over).
        #[arg(long)]
        month: Option<String>,
    },
    /// Print a closed month's statement.
    Statement {
        #[command(flatten)]
        target: Target,
        /// The closed month, YYYY-MM.
        #[arg(long)]
        month: String,
        /// table (for a person), json (the signed bytes) or csv.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// A region confirms the month's statement (signed with its node key).
    Confirm {
        #[command(flatten)]
        by: Answering,
    },
    /// A region withdraws its dispute of lines of the month: the next close of the month clears them again.
    Withdraw {
        #[command(flatten)]
        by: Answering,
        /// setl_id of a line whose dispute is withdrawn (repeatable).
        #[arg(long = "line", required = true)]
        lines: Vec<String>,
    },
    /// A region disputes lines of the month's statement, with a reason.
    Dispute {
        #[command(flatten)]
        by: Answering,
        /// setl_id of a disputed line (repeatable).
        #[arg(long = "line", required = true)]
        lines: Vec<String>,
        /// Why, in a sentence; kept on the ledger with the answer.
        #[arg(long)]
        reason: String,
    },
    /// Record an operator adjustment (a deduction, 拒付, is negative), applied when the month is closed.
    Adjust {
        #[command(flatten)]
        target: Target,
        /// The month (still open) the adjustment enters, YYYY-MM.
        #[arg(long)]
        month: String,
        /// The home region, which owes (e.g. 611000).
        #[arg(long)]
        home: String,
        /// The treatment region, which is owed (e.g. 110000).
        #[arg(long)]
        treatment: String,
        /// Signed amount, e.g. "-1200.00" for a deduction.
        #[arg(long, allow_hyphen_values = true)]
        amount: String,
        /// Why, in a sentence; kept on the ledger with the answer.
        #[arg(long)]
        reason: String,
        /// The settlement it concerns (S...): a deduction on it is also taken
        /// from its institution's statement.
        #[arg(long = "setl-id", default_value = "")]
        setl_id: String,
    },
    /// Advance funds now: each home region's uncleared payable against its quota.
    Advance {
        #[command(flatten)]
        target: Target,
        /// The month so far, YYYY-MM (usage is its uncleared payable).
        #[arg(long)]
        month: String,
    },
}

/// A region answering the month's current statement.
#[derive(Args, Clone)]
pub(crate) struct Answering {
    #[command(flatten)]
    target: Target,
    /// The month whose current statement is answered, YYYY-MM.
    #[arg(long)]
    month: String,
    /// The answering region's code, e.g. 611000 (its node key, --key, signs the answer).
    #[arg(long)]
    region: String,
}

/// The operator, reached one way or the other.
#[allow(clippy::large_enum_variant)] // one per command run: boxing saves nothing
enum Via {
    Local(Box<OperatorConfig>, Operator),
    Remote(OperatorServiceClient<Channel>, Option<SigningKey>),
}

fn parse_month(month: &str) -> Result<Month, ExitCode> {
    Month::parse(month).ok_or_else(|| fail(EXIT_BAD_INPUT, format!("--month: {month:?} is not YYYY-MM")))
}

/// Whose key a command signs with, so whose certificate its connection carries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Signer {
    Operator,
    Region,
}

async fn via(t: &Target, signer: Signer) -> Result<Via, ExitCode> {
    match (&t.config, &t.operator) {
        (Some(config), _) => {
            let (cfg, op) = open_operator(config)?;
            Ok(Via::Local(Box::new(cfg), op))
        }
        (None, Some(url)) => {
            let load = |k: &PathBuf| crypto::load_signing_key(k).map_err(|e| fail(EXIT_BAD_INPUT, e));
            let operator_key = t.operator_key.as_ref().map(load).transpose()?;
            // The connection is the signer's; a read (statement, advance)
            // may go as either.
            let (file, key) = match (signer, &t.operator_key, &operator_key, &t.key) {
                (Signer::Operator, Some(f), Some(k), _) => (f.clone(), k.clone()),
                (Signer::Region, _, _, Some(f)) => (f.clone(), load(f)?),
                (_, _, _, Some(f)) => (f.clone(), load(f)?),
                (_, Some(f), Some(k), None) => (f.clone(), k.clone()),
                _ if url.starts_with("https://") => {
                    return Err(fail(
                        EXIT_BAD_INPUT,
                        format!("{url} is https: give --key or --operator-key (with its certificate)"),
                    ))
                }
                // Plaintext: no certificate to present.
                _ => (PathBuf::new(), SigningKey::from_bytes(&[0; 32])),
            };
            let channel = t.tls.channel(url, &file, &key).await?;
            let client = OperatorServiceClient::new(channel).max_decoding_message_size(MAX_STATEMENT_BYTES);
            Ok(Via::Remote(client, operator_key))
        }
        (None, None) => Err(fail(EXIT_BAD_INPUT, "give --config FILE or --operator URL")),
    }
}

/// The operator's refusal (exit 3; 2 for bad input), or the call's failure (exit 1).
fn status(s: tonic::Status) -> ExitCode {
    match xclear::api::error::reason_of(&s) {
        Some(reason) => fail(super::exit_code_of(&reason), format!("{reason}: {}", s.message())),
        None => super::call_failed(&s),
    }
}

/// Opens the operator from its config (its ledger, the nodes' endpoints and keys).
pub(crate) fn open_operator(config: &Path) -> Result<(OperatorConfig, Operator), ExitCode> {
    open_operator_tls(config).map(|(cfg, op, _)| (cfg, op))
}

/// [`open_operator`], and its TLS identity (`None`: plaintext).
fn open_operator_tls(config: &Path) -> Result<(OperatorConfig, Operator, Option<Arc<xclear::tls::Tls>>), ExitCode> {
    let cfg = OperatorConfig::load(config).map_err(|e| fail(EXIT_BAD_INPUT, e))?;
    let key = crypto::load_signing_key(&cfg.key_file).map_err(|e| fail(EXIT_BAD_INPUT, e))?;
    let tls = super::node_cmd::load_tls(&cfg.tls, &key)?;
    let rules = RuleBook::load(&cfg.rules_dir).map_err(|e| fail(EXIT_BAD_INPUT, e))?;
    let endpoints = cfg.nodes.iter().map(|(r, (url, _))| (*r, url.clone())).collect();
    let keys = cfg.nodes.iter().map(|(r, (_, k))| (*r, *k)).collect();
    // Quotas not set in the config default to 2 × the average monthly payable
    // of the three statements before the month (`Operator::quotas_for`).
    let operator = Operator::open(
        &cfg.data_dir.join("ledger"),
        key,
        Arc::new(SystemClock),
        keys,
        Arc::new(NodeReports::new(endpoints, tls.clone())),
        rules.pairs().clone(),
        cfg.quotas.clone(),
    )
    .map_err(|e| fail(EXIT_FAILED, format!("{}: {e}", cfg.data_dir.display())))?
    .with_warning_pct(cfg.warning_pct)
    .with_close_grace(cfg.close_grace)
    .with_statement_files(cfg.data_dir.join("statements"));
    Ok((cfg, operator, tls))
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| fail(EXIT_FAILED, e))
}

pub(crate) fn run(cmd: ClearingCommand) -> ExitCode {
    let rt = match runtime() {
        Ok(r) => r,
        Err(c) => return c,
    };
    rt.block_on(async move {
        let result = match cmd {
            ClearingCommand::Close { target, month } => close(&target, month.as_deref()).await,
            ClearingCommand::Statement { target, month, format } => statement(&target, &month, format).await,
            ClearingCommand::Confirm { by } => answer(&by, Answer::Confirm).await,
            ClearingCommand::Dispute { by, lines, reason } => answer(&by, Answer::Dispute(lines, reason)).await,
            ClearingCommand::Withdraw { by, lines } => answer(&by, Answer::Withdraw(lines)).await,
            ClearingCommand::Advance { target, month } => advance(&target, &month).await,
            ClearingCommand::Adjust { target, month, home, treatment, amount, reason, setl_id } => {
                let req = AdjustmentRequest { month, home, treatment, amount, reason, setl_id };
                adjust(&target, req).await
            }
        };
        result.unwrap_or_else(|c| c)
    })
}

fn operator_key(key: Option<SigningKey>, what: &str) -> Result<SigningKey, ExitCode> {
    key.ok_or_else(|| fail(EXIT_BAD_INPUT, format!("{what} on a running operator needs --operator-key (it is signed)")))
}

/// A statement's canonical bytes, parsed.
fn parse_statement(signed: &Signed) -> Result<Statement, ExitCode> {
    serde_json::from_slice(&signed.body).map_err(|e| fail(EXIT_FAILED, format!("statement: {e}")))
}

async fn close(target: &Target, month: Option<&str>) -> Result<ExitCode, ExitCode> {
    let named = month.map(parse_month).transpose()?;
    let failed = |e: xclear::operator::OperatorError| fail(EXIT_FAILED, format!("{}: {e}", e.reason()));
    let signed = match via(target, Signer::Operator).await? {
        Via::Local(_, op) => {
            let month = match named {
                Some(m) => m,
                None => op.next_month_due().map_err(failed)?,
            };
            op.close(month).await.map_err(failed)?.signed
        }
        Via::Remote(mut client, key) => {
            let key = operator_key(key, "close")?;
            // No month named: the operator picks its next month due.
            let month = named.map(|m| m.to_string()).unwrap_or_default();
            let req = seal(&key, CLOSE_DOMAIN, "operator", &CloseRequest { month });
            client.close(req).await.map_err(status)?.into_inner()
        }
    };
    let s = parse_statement(&signed)?;
    let month = s.month;
    print!("{}", s.to_table());
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&signed.body));
    println!("\nstatement {month} sha256 {hash} ({} items carried to the next month)", s.pending.len());
    Ok(ExitCode::SUCCESS)
}

/// The month's signed statement, from the server or the local ledger.
async fn fetch_statement(via: &mut Via, month: Month) -> Result<Signed, ExitCode> {
    match via {
        Via::Local(_, op) => match op.statement_of(month).map_err(|e| fail(EXIT_FAILED, e))? {
            Some(c) => Ok(c.signed),
            None => Err(fail(EXIT_BAD_INPUT, format!("{month} is not closed (close the month first)"))),
        },
        Via::Remote(client, _) => {
            let req = StatementRequest { month: month.to_string() };
            Ok(client.statement(req).await.map_err(status)?.into_inner())
        }
    }
}

async fn statement(target: &Target, month: &str, format: Format) -> Result<ExitCode, ExitCode> {
    let month = parse_month(month)?;
    let signed = fetch_statement(&mut via(target, Signer::Region).await?, month).await?;
    let s = parse_statement(&signed)?;
    match format {
        Format::Json => println!("{}", String::from_utf8_lossy(&signed.body)),
        Format::Csv => print!("{}", s.to_csv()),
        Format::Table => print!("{}", s.to_table()),
    }
    Ok(ExitCode::SUCCESS)
}

/// What a region says of a statement.
enum Answer {
    Confirm,
    /// setl_ids and the reason.
    Dispute(Vec<String>, String),
    /// setl_ids whose earlier dispute is withdrawn.
    Withdraw(Vec<String>),
}

async fn answer(by: &Answering, what: Answer) -> Result<ExitCode, ExitCode> {
    let (target, month, region) = (&by.target, by.month.as_str(), by.region.as_str());
    let month = parse_month(month)?;
    let key = target
        .key
        .as_ref()
        .ok_or_else(|| fail(EXIT_BAD_INPUT, format!("--key: {region}'s node key signs the answer")))?;
    let key = crypto::load_signing_key(key).map_err(|e| fail(EXIT_BAD_INPUT, e))?;
    let mut via = via(target, Signer::Region).await?;
    let signed = fetch_statement(&mut via, month).await?;
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&signed.body));
    let (verb, disputes, withdrawn) = match what {
        Answer::Confirm => ("confirmed", vec![], vec![]),
        Answer::Dispute(lines, reason) => (
            "disputed lines of",
            lines.into_iter().map(|setl_id| DisputedLine { setl_id, reason: reason.clone() }).collect(),
            vec![],
        ),
        Answer::Withdraw(lines) => ("withdrew disputes of", vec![], lines),
    };
    let c = Confirmation {
        month: month.to_string(),
        region: region.to_string(),
        statement_hash: hash.clone(),
        disputes,
        withdrawn,
    };
    let env = seal(&key, CONFIRMATION_DOMAIN, region, &c);
    let is_final = match via {
        Via::Local(_, op) => {
            op.answer(env).await.map_err(|e| fail(EXIT_FAILED, format!("{}: {e}", e.reason())))?;
            let closed = op.statement_of(month).map_err(|e| fail(EXIT_FAILED, e))?;
            closed.map(|c| op.is_final(&c)).transpose().map_err(|e| fail(EXIT_FAILED, e))?.unwrap_or(false)
        }
        Via::Remote(mut client, _) => client.answer(env).await.map_err(status)?.into_inner().r#final,
    };
    let fin = if is_final {
        "; every region has confirmed: the statement is final".to_string()
    } else if c.disputes.is_empty() && c.withdrawn.is_empty() {
        String::new()
    } else {
        format!("; close {month} again to apply it")
    };
    println!("{region} {verb} statement {month} ({hash}){fin}");
    Ok(ExitCode::SUCCESS)
}

async fn advance(target: &Target, month: &str) -> Result<ExitCode, ExitCode> {
    let month = parse_month(month)?;
    let lines: Vec<AdvanceLine> = match via(target, Signer::Region).await? {
        Via::Local(cfg, op) => op
            .advance(month, cfg.warning_pct)
            .await
            .map_err(|e| fail(EXIT_FAILED, e))?
            .into_iter()
            .map(|s| advance_line(&s))
            .collect(),
        Via::Remote(mut client, _) => {
            client.advance(AdvanceRequest { month: month.to_string() }).await.map_err(status)?.into_inner().lines
        }
    };
    println!("{:<8} {:>16} {:>16} {:>16}  warning", "region", "quota", "usage", "threshold");
    for s in lines {
        println!(
            "{:<8} {:>16} {:>16} {:>16}  {}",
            s.region,
            s.quota,
            s.usage,
            s.threshold,
            if s.warning { "YES" } else { "no" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn adjust(target: &Target, req: AdjustmentRequest) -> Result<ExitCode, ExitCode> {
    parse_month(&req.month)?;
    let key = match via(target, Signer::Operator).await? {
        Via::Local(cfg, op) => {
            let key = crypto::load_signing_key(&cfg.key_file).map_err(|e| fail(EXIT_BAD_INPUT, e))?;
            op.record_adjustment(seal(&key, ADJUSTMENT_DOMAIN, "operator", &req))
                .await
                .map_err(|e| fail(EXIT_FAILED, format!("{}: {e}", e.reason())))?
        }
        Via::Remote(mut client, key) => {
            let key = operator_key(key, "adjust")?;
            let env = seal(&key, ADJUSTMENT_DOMAIN, "operator", &req);
            client.adjust(env).await.map_err(status)?.into_inner().key
        }
    };
    println!(
        "adjustment recorded for {}: {} -> {} {} ({}) as {key}",
        req.month, req.home, req.treatment, req.amount, req.reason
    );
    Ok(ExitCode::SUCCESS)
}

/// `xclear operator --config FILE`: serves the operator until Ctrl-C.
pub(crate) fn run_operator(config: &Path) -> ExitCode {
    let rt = match runtime() {
        Ok(r) => r,
        Err(c) => return c,
    };
    rt.block_on(async {
        let (cfg, op, tls) = match open_operator_tls(config) {
            Ok(x) => x,
            Err(c) => return c,
        };
        let listener = match tokio::net::TcpListener::bind(cfg.listen).await {
            Ok(l) => l,
            Err(e) => return fail(EXIT_FAILED, format!("{}: {e}", cfg.listen)),
        };
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        // The first line on standard output names the bound address (port 0 picks one).
        println!("xclear operator listening on {addr}");
        let op = Arc::new(op);
        if let Some(console) = &cfg.console {
            let l = match tokio::net::TcpListener::bind(console.listen).await {
                Ok(l) => l,
                Err(e) => return fail(EXIT_FAILED, format!("console {}: {e}", console.listen)),
            };
            tracing::info!(console = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), viewers = console.viewers.len(), "console");
            let access = xclear::console::auth::Access::new(console.viewers.clone());
            let clock: Arc<dyn xclear::clock::Clock> = Arc::new(xclear::clock::SystemClock);
            tokio::spawn(xclear::operator::console::serve(l, Arc::clone(&op), access, clock, super::shutdown_signal()));
        }
        let shutdown = super::shutdown_signal();
        match xclear::operator::grpc::serve(op, cfg.warning_pct, listener, tls, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(EXIT_FAILED, e),
        }
    })
}
