//! `xclear audit sample|review|recompute`: a month's audit sample (抽查复审)
//! at a node, a reviewer's outcome, and the same sample drawn again from an
//! exported ledger by anyone holding it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::json;

use xclear::api::envelope::{seal, AUDIT_DOMAIN};
use xclear::clearing::audit::SamplePolicy;
use xclear::clearing::Month;
use xclear::node::audit::DrawInputs;
use xclear::proto::audit_service_client::AuditServiceClient;
use xclear::proto::{AuditItem, AuditReviewRequest, AuditSampleRequest};
use xclear::region::RegionCode;

use super::connect::AdminTarget;
use super::{fail, EXIT_BAD_INPUT};

#[derive(Subcommand, Clone)]
pub(crate) enum AuditCommand {
    /// A month's sample at the node, with each item's outcome (JSON lines, one per item).
    Sample {
        #[command(flatten)]
        reviewer: AdminTarget,
        /// The month sampled, YYYY-MM (its clearing statement final).
        #[arg(long)]
        month: String,
        /// Pages of 1,000 items, from 0.
        #[arg(long, default_value_t = 0)]
        page: u32,
    },
    /// Record a reviewer's outcome for a sampled settlement: accepted, or refused with an amount (拒付).
    Review {
        #[command(flatten)]
        reviewer: AdminTarget,
        /// Unique per admin.
        #[arg(long)]
        msgid: String,
        /// The month sampled, YYYY-MM.
        #[arg(long)]
        month: String,
        /// The sampled settlement (S...).
        #[arg(long = "setl-id")]
        setl_id: String,
        /// Refuse this amount (yuan), deducted from the institution and the home region's debt.
        #[arg(long, conflicts_with = "accept")]
        refuse: Option<String>,
        /// Accept the settlement as billed.
        #[arg(long)]
        accept: bool,
        /// Why (required for a refusal).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Draw a month's sample again from a ledger export (`xclear ledger export`); prints the setl_ids in rank order.
    Recompute {
        /// The node's exported ledger (check it first with `xclear ledger verify-export`).
        #[arg(long)]
        export: PathBuf,
        /// The node's region.
        #[arg(long)]
        region: String,
        /// The month sampled, YYYY-MM.
        #[arg(long)]
        month: String,
        /// The node's audit_sample_pct (5–100).
        #[arg(long, default_value_t = 5)]
        pct: u32,
    },
}

fn item_json(i: &AuditItem) -> serde_json::Value {
    json!({"setl_id": i.setl_id, "fixmedins_code": i.fixmedins_code, "msgid": i.msgid, "home": i.home,
           "med_type": i.med_type, "medfee_sumamt": i.medfee_sumamt, "fund_pay_sumamt": i.fund_pay_sumamt,
           "acct_pay": i.acct_pay, "outcome": i.outcome, "refused_amount": i.refused_amount, "reason": i.reason,
           "clearing_month": i.clearing_month})
}

pub(crate) fn run(cmd: AuditCommand) -> ExitCode {
    match cmd {
        AuditCommand::Recompute { export, region, month, pct } => recompute(&export, &region, &month, pct),
        AuditCommand::Sample { reviewer, month, page } => {
            let req = AuditSampleRequest { month, page };
            call(
                &reviewer,
                |mut c, env| async move {
                    let s = c.sample(env).await?.into_inner();
                    println!(
                        "{}",
                        json!({"month": s.month, "seed": s.seed, "population": s.population, "drawn_on_page": s.items.len(),
                           "page": s.page, "pages": s.pages})
                    );
                    for i in &s.items {
                        println!("{}", item_json(i));
                    }
                    Ok(())
                },
                &req,
            )
        }
        AuditCommand::Review { reviewer, msgid, month, setl_id, refuse, accept, reason } => {
            if refuse.is_none() && !accept {
                return fail(EXIT_BAD_INPUT, "give --accept or --refuse AMOUNT");
            }
            let req = AuditReviewRequest {
                msgid,
                month,
                setl_id,
                refused: refuse.is_some(),
                amount: refuse.unwrap_or_default(),
                reason,
            };
            call(
                &reviewer,
                |mut c, env| async move {
                    let item = c.review(env).await?.into_inner();
                    println!("{}", item_json(&item));
                    Ok(())
                },
                &req,
            )
        }
    }
}

/// Signs `req` as the reviewer and runs `f` with a client of the node.
fn call<M, F, Fut>(r: &AdminTarget, f: F, req: &M) -> ExitCode
where
    M: prost::Message,
    F: FnOnce(AuditServiceClient<tonic::transport::Channel>, xclear::proto::Signed) -> Fut,
    Fut: std::future::Future<Output = Result<(), tonic::Status>>,
{
    let key = match xclear::crypto::load_signing_key(&r.key) {
        Ok(k) => k,
        Err(e) => return fail(EXIT_BAD_INPUT, e),
    };
    let env = seal(&key, AUDIT_DOMAIN, &r.admin, req);
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(super::EXIT_FAILED, e),
    };
    rt.block_on(async {
        let client = match r.tls.channel(&r.node, &r.key, &key).await {
            Ok(c) => AuditServiceClient::new(c),
            Err(c) => return c,
        };
        match f(client, env).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(s) => super::call_failed(&s),
        }
    })
}

fn recompute(export: &std::path::Path, region: &str, month: &str, pct: u32) -> ExitCode {
    let (region, month, policy) = match (RegionCode::parse(region), Month::parse(month), SamplePolicy::new(pct)) {
        (Ok(r), Some(m), Ok(p)) => (r, m, p),
        (Err(e), _, _) => return fail(EXIT_BAD_INPUT, format!("--region: {e}")),
        (_, None, _) => return fail(EXIT_BAD_INPUT, format!("--month: {month:?} is not YYYY-MM")),
        (_, _, Err(e)) => return fail(EXIT_BAD_INPUT, format!("--pct: {e}")),
    };
    let file = match std::fs::File::open(export) {
        Ok(f) => f,
        Err(e) => return fail(EXIT_BAD_INPUT, format!("{}: {e}", export.display())),
    };
    let mut inputs = DrawInputs::new(region, month);
    let read = xclear::ledger::export::read_entries(&mut std::io::BufReader::new(file), |e| {
        inputs.note(e.frame.seq, e.body.kind, &e.body.key, &e.body.payload)
    });
    if let Err(e) = read {
        return fail(EXIT_BAD_INPUT, format!("{}: {e}", export.display()));
    }
    match inputs.draw(policy) {
        Ok(d) => {
            println!(
                "{}",
                json!({"month": month.to_string(), "seed": hex::encode(d.seed), "population": d.population,
                                  "drawn": d.items.len()})
            );
            for i in &d.items {
                println!("{}", i.setl_id);
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_BAD_INPUT, format!("{}: {e}", export.display())),
    }
}
