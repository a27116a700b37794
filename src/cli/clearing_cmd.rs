//! `xclear clearing close|statement|confirm|dispute|advance`: the national
//! operator's month end, run against the nodes over gRPC.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Subcommand, ValueEnum};

use xclear::api::envelope::{seal, CONFIRMATION_DOMAIN};
use xclear::clearing::{Month, Statement};
use xclear::clock::SystemClock;
use xclear::crypto;
use xclear::node::grpc::GrpcTransport;
use xclear::operator::config::OperatorConfig;
use xclear::operator::Operator;
use xclear::proto::{Confirmation, DisputedLine};
use xclear::rules::RuleBook;

use super::{fail, EXIT_BAD_INPUT, EXIT_FAILED};

#[derive(Clone, Copy, ValueEnum, Default)]
pub enum Format {
    Json,
    Csv,
    #[default]
    Table,
}

#[derive(Subcommand)]
pub enum ClearingCommand {
    /// Collect every node's signed report, reconcile, net and sign the month's statement.
    Close {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        month: String,
    },
    /// Print a closed month's statement.
    Statement {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        month: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// A region confirms the month's statement (signed with its node key).
    Confirm {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        month: String,
        #[arg(long)]
        region: String,
        #[arg(long)]
        key: PathBuf,
    },
    /// A region disputes lines of the month's statement, with a reason.
    Dispute {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        month: String,
        #[arg(long)]
        region: String,
        #[arg(long)]
        key: PathBuf,
        /// setl_id of a disputed line (repeatable).
        #[arg(long = "line", required = true)]
        lines: Vec<String>,
        #[arg(long)]
        reason: String,
    },
    /// Record an operator adjustment (a deduction, 拒付, is negative), applied when the month is closed.
    Adjust {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        month: String,
        #[arg(long)]
        home: String,
        #[arg(long)]
        treatment: String,
        /// Signed amount, e.g. "-1200.00" for a deduction.
        #[arg(long, allow_hyphen_values = true)]
        amount: String,
        #[arg(long)]
        reason: String,
    },
    /// Advance funds now: each home region's uncleared payable against its quota.
    Advance {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        month: String,
    },
}

fn statement_path(cfg: &OperatorConfig, month: Month, ext: &str) -> PathBuf {
    cfg.data_dir.join("statements").join(format!("{month}.{ext}"))
}

fn load(config: &Path, month: &str) -> Result<(OperatorConfig, Month, Operator), ExitCode> {
    let cfg = OperatorConfig::load(config).map_err(|e| fail(EXIT_BAD_INPUT, e))?;
    let month =
        Month::parse(month).ok_or_else(|| fail(EXIT_BAD_INPUT, format!("--month: {month:?} is not YYYY-MM")))?;
    let key = crypto::load_signing_key(&cfg.key_file).map_err(|e| fail(EXIT_BAD_INPUT, e))?;
    let rules = RuleBook::load(&cfg.rules_dir).map_err(|e| fail(EXIT_BAD_INPUT, e))?;
    let endpoints = cfg.nodes.iter().map(|(r, (url, _))| (*r, url.clone())).collect();
    let keys = cfg.nodes.iter().map(|(r, (_, k))| (*r, *k)).collect();
    // Quotas not set in the config default to 2 × the average monthly payable
    // of the three statements before this month.
    let earlier = [month.previous(), month.previous().previous(), month.previous().previous().previous()]
        .map(|m| read_statement_quietly(&cfg, m));
    let quotas = xclear::clearing::advance::quotas(&cfg.quotas, &earlier.each_ref().map(Option::as_ref));
    let operator = Operator::open(
        &cfg.data_dir.join("ledger"),
        key,
        Arc::new(SystemClock),
        keys,
        Arc::new(GrpcTransport::new(endpoints)),
        rules.pairs().clone(),
        quotas,
    )
    .map_err(|e| fail(EXIT_FAILED, e))?
    .with_warning_pct(cfg.warning_pct);
    Ok((cfg, month, operator))
}

fn read_statement(cfg: &OperatorConfig, month: Month) -> Result<(Statement, Vec<u8>), ExitCode> {
    let path = statement_path(cfg, month, "json");
    let bytes = std::fs::read(&path)
        .map_err(|e| fail(EXIT_BAD_INPUT, format!("{}: {e} (close the month first)", path.display())))?;
    let s = serde_json::from_slice(&bytes).map_err(|e| fail(EXIT_FAILED, format!("{}: {e}", path.display())))?;
    Ok((s, bytes))
}

/// A month's statement if it was closed (and is readable), else nothing.
fn read_statement_quietly(cfg: &OperatorConfig, month: Month) -> Option<Statement> {
    let bytes = std::fs::read(statement_path(cfg, month, "json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| fail(EXIT_FAILED, e))
}

pub fn run(cmd: ClearingCommand) -> ExitCode {
    let rt = match runtime() {
        Ok(r) => r,
        Err(c) => return c,
    };
    rt.block_on(async move {
        let result = match cmd {
            ClearingCommand::Close { config, month } => close(&config, &month).await,
            ClearingCommand::Statement { config, month, format } => statement(&config, &month, format),
            ClearingCommand::Confirm { config, month, region, key } => {
                answer(&config, &month, &region, &key, vec![], "").await
            }
            ClearingCommand::Dispute { config, month, region, key, lines, reason } => {
                answer(&config, &month, &region, &key, lines, &reason).await
            }
            ClearingCommand::Advance { config, month } => advance(&config, &month).await,
            ClearingCommand::Adjust { config, month, home, treatment, amount, reason } => {
                adjust(&config, &month, &home, &treatment, &amount, &reason).await
            }
        };
        result.unwrap_or_else(|c| c)
    })
}

async fn close(config: &Path, month: &str) -> Result<ExitCode, ExitCode> {
    let (cfg, month, op) = load(config, month)?;
    let carried = match read_statement(&cfg, month.previous()) {
        Ok((s, _)) => s.pending,
        Err(_) => Vec::new(),
    };
    let disputes = op.disputes_of(month).map_err(|e| fail(EXIT_FAILED, e))?;
    let closed = op.close_month(month, &disputes, &carried).await.map_err(|e| fail(EXIT_FAILED, e))?;
    let dir = cfg.data_dir.join("statements");
    std::fs::create_dir_all(&dir).map_err(|e| fail(EXIT_FAILED, format!("{}: {e}", dir.display())))?;
    std::fs::write(statement_path(&cfg, month, "json"), &closed.signed.body).map_err(|e| fail(EXIT_FAILED, e))?;
    std::fs::write(statement_path(&cfg, month, "csv"), closed.statement.to_csv()).map_err(|e| fail(EXIT_FAILED, e))?;
    print!("{}", closed.statement.to_table());
    println!(
        "\nstatement {month} sha256 {} ({} disputes applied, {} items carried in)",
        closed.hash,
        disputes.len(),
        carried.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn statement(config: &Path, month: &str, format: Format) -> Result<ExitCode, ExitCode> {
    let cfg = OperatorConfig::load(config).map_err(|e| fail(EXIT_BAD_INPUT, e))?;
    let month =
        Month::parse(month).ok_or_else(|| fail(EXIT_BAD_INPUT, format!("--month: {month:?} is not YYYY-MM")))?;
    let (s, bytes) = read_statement(&cfg, month)?;
    match format {
        Format::Json => println!("{}", String::from_utf8_lossy(&bytes)),
        Format::Csv => print!("{}", s.to_csv()),
        Format::Table => print!("{}", s.to_table()),
    }
    Ok(ExitCode::SUCCESS)
}

async fn answer(
    config: &Path,
    month: &str,
    region: &str,
    key: &Path,
    lines: Vec<String>,
    reason: &str,
) -> Result<ExitCode, ExitCode> {
    let (cfg, month, op) = load(config, month)?;
    let (_, bytes) = read_statement(&cfg, month)?;
    let hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    let key = crypto::load_signing_key(key).map_err(|e| fail(EXIT_BAD_INPUT, e))?;
    let c = Confirmation {
        month: month.to_string(),
        region: region.to_string(),
        statement_hash: hash.clone(),
        disputes: lines.into_iter().map(|setl_id| DisputedLine { setl_id, reason: reason.to_string() }).collect(),
    };
    let env = seal(&key, CONFIRMATION_DOMAIN, region, &c);
    op.answer(env).await.map_err(|e| fail(EXIT_FAILED, format!("{}: {e}", e.reason())))?;
    println!("{} {} statement {month} ({hash})", region, if c.disputes.is_empty() { "confirmed" } else { "disputed" });
    Ok(ExitCode::SUCCESS)
}

async fn advance(config: &Path, month: &str) -> Result<ExitCode, ExitCode> {
    let (cfg, month, op) = load(config, month)?;
    let statuses = op.advance(month, cfg.warning_pct).await.map_err(|e| fail(EXIT_FAILED, e))?;
    println!("{:<8} {:>16} {:>16} {:>16}  warning", "region", "quota", "usage", "threshold");
    for s in statuses {
        println!(
            "{:<8} {:>16} {:>16} {:>16}  {}",
            s.region.to_string(),
            s.quota.to_string(),
            s.usage.to_string(),
            s.threshold.to_string(),
            if s.warning { "YES" } else { "no" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn adjust(
    config: &Path,
    month: &str,
    home: &str,
    treatment: &str,
    amount: &str,
    reason: &str,
) -> Result<ExitCode, ExitCode> {
    let (_, month, op) = load(config, month)?;
    let region = |f: &str, v: &str| xclear::api::convert::region(f, v).map_err(|e| fail(EXIT_BAD_INPUT, e));
    let amount = xclear::api::convert::signed_amount("amount", amount).map_err(|e| fail(EXIT_BAD_INPUT, e))?;
    let a = xclear::clearing::netting::Adjustment {
        home: region("home", home)?,
        treatment: region("treatment", treatment)?,
        amount,
        reason: reason.to_string(),
        setl_id: None,
    };
    op.adjust(month, a).await.map_err(|e| fail(EXIT_FAILED, e))?;
    println!("adjustment recorded for {month}: {home} -> {treatment} {amount} ({reason})");
    Ok(ExitCode::SUCCESS)
}
