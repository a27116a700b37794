//! The `xclear` binary: parses arguments and calls into the library.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use xclear::calc::{run_case, CalcOutcome};
use xclear::rules::RuleBook;

/// mimalloc instead of the system allocator: a node allocates many small,
/// short-lived buffers per settlement (envelopes, protobuf, JSON records),
/// and glibc's malloc showed ~9% of CPU under the end-to-end bench.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;
use cli::{fail, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_REFUSED};

#[derive(Parser)]
#[command(name = "xclear", version, about = "Clearing house for out-of-region medical-insurance settlement")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compute one settlement offline from a JSON case (REFERENCE_POLICIES.md §5).
    Calc {
        /// The rules directory (policies/, catalogues/, corps_local.toml).
        #[arg(long, default_value = "clearing_rules")]
        rules: PathBuf,
        /// The case file; `-` reads standard input.
        #[arg(long)]
        case: String,
    },
    /// Load and validate a rules directory, listing what it holds.
    Rules {
        /// The rules directory (policies, catalogues, corps–local pairs).
        #[arg(long, default_value = "clearing_rules")]
        rules: PathBuf,
    },
    /// Generate an ed25519 key file (hex seed, mode 0600) and print its public key.
    Keygen {
        /// Where to write the new key (hex seed, mode 0600); refused if the file exists.
        #[arg(long, required_unless_present = "public", conflicts_with = "public")]
        out: Option<PathBuf>,
        /// Print the public half of an existing key file instead.
        #[arg(long, value_name = "KEYFILE")]
        public: Option<PathBuf>,
    },
    /// Run the national clearing operator (gRPC), from its TOML config.
    Operator {
        /// The operator's TOML config (see src/operator/config.rs).
        #[arg(long)]
        config: PathBuf,
    },
    /// Run a region's node (gRPC), from a TOML config.
    Node {
        /// The node's TOML config (see docs/USAGE.md).
        #[arg(long)]
        config: PathBuf,
        /// Log lines as text for a person (human) or one JSON object a line for a collector (json).
        #[arg(long, value_enum, default_value = "human")]
        log_format: cli::node_cmd::LogFormat,
    },
    /// A hospital's client: sign a bill and send it to the hospital's own node.
    Hospital {
        #[command(subcommand)]
        action: cli::node_cmd::HospitalAction,
        /// The node's URL, e.g. https://127.0.0.1:20011
        #[arg(long, global = true, default_value = "https://127.0.0.1:20011")]
        node: String,
        /// The hospital's key file.
        #[arg(long, global = true, default_value = "hospital.key")]
        key: PathBuf,
        #[command(flatten)]
        tls: cli::connect::TlsArgs,
        /// The bill (JSON: fixmedins_code, msgid, psn_no, insuplc_admdvs, setl_date, items, ...).
        #[arg(long, global = true, default_value = "bill.json")]
        bill: PathBuf,
    },
    /// Insured persons: `import` records, `qualify` chronic diseases, `credit` employees' accounts.
    Persons {
        #[command(subcommand)]
        command: PersonsCommand,
    },
    /// A stopped node's state store: brought up to its ledger (rebuilt if
    /// missing or another ledger's), then its position, rows and digest.
    State {
        /// The node's config (the node stopped).
        #[arg(long)]
        config: PathBuf,
    },
    /// Designated institutions (定点) of a node's region: suspend, revoke or restore one at run time.
    Institution {
        #[command(subcommand)]
        command: InstitutionCommand,
    },
    /// Registrations (备案): `apply` sends an agency's signed request to its node.
    Registration {
        #[command(subcommand)]
        command: RegistrationCommand,
    },
    /// Run the whole federation on this machine: nodes, hospitals, a month of traffic, clearing.
    Demo {
        /// Keep the data here (DIR/nodes/<region>/, DIR/statements/<YYYY-MM>.json|csv); default a fresh temp dir.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Seed of the synthetic traffic: the same seed gives the same figures.
        #[arg(long, default_value_t = 2026)]
        seed: u64,
        /// Insured persons created across the home regions.
        #[arg(long, default_value_t = 3000)]
        patients: usize,
        /// The month the traffic falls in, YYYY-MM.
        #[arg(long, default_value = "2026-03")]
        month: String,
        /// The rules directory (policies, catalogues, corps–local pairs).
        #[arg(long, default_value = "clearing_rules")]
        rules: PathBuf,
        /// Keep the federation running afterwards and serve the operator's console
        /// (prints `console: http://ADDR/ token TOKEN`) until Ctrl-C or SIGTERM.
        #[arg(long)]
        serve: bool,
        /// Where the console listens with --serve.
        #[arg(long, default_value = "127.0.0.1:20090")]
        console_listen: String,
    },
    /// The web console: make a viewer's token (and the line for the operator's config).
    Console {
        #[command(subcommand)]
        command: ConsoleCommand,
    },
    /// Monthly clearing, run by the national operator: close, statement, confirm, dispute, withdraw, adjust, advance.
    Clearing {
        #[command(subcommand)]
        command: cli::clearing_cmd::ClearingCommand,
    },
    /// Benchmarks: a table, then one `BENCH name=value` line per figure.
    Bench {
        #[command(subcommand)]
        command: cli::bench_cmd::BenchCommand,
    },
    /// TLS: a federation's CA and certificates carrying signing keys (ca, issue, dev).
    Tls {
        #[command(subcommand)]
        command: cli::tls_cmd::TlsCommand,
    },
    /// Audit samples (抽查复审): a month's sample at a node, reviewers' outcomes, the draw recomputed from an export.
    Audit {
        #[command(subcommand)]
        command: cli::audit_cmd::AuditCommand,
    },
    /// Ledger tools: verify, export, verify-export, head, prove.
    Ledger {
        #[command(subcommand)]
        command: cli::ledger_cmd::LedgerCommand,
    },
}

#[derive(Subcommand)]
enum PersonsCommand {
    /// Loads insured persons: into a stopped node's data (`--config`), or
    /// into a running node over gRPC, signed by an admin (`--node`).
    Import {
        /// The node's config; the node must be stopped.
        #[arg(long, conflicts_with = "node", required_unless_present = "node")]
        config: Option<PathBuf>,
        /// A running node's URL (sent in signed batches of at most 1,000).
        #[arg(long, requires_all = ["admin", "key"])]
        node: Option<String>,
        /// The admin's name, as in the node's config.
        #[arg(long)]
        admin: Option<String>,
        /// The admin's key file.
        #[arg(long)]
        key: Option<PathBuf>,
        #[command(flatten)]
        tls: cli::connect::TlsArgs,
        /// A JSON array of insured persons.
        #[arg(long)]
        file: PathBuf,
    },
    /// Grants (or with --end, ends) a person's chronic-disease qualification (慢特病资格认定) on a running node.
    Qualify {
        #[command(flatten)]
        admin: AdminTarget,
        /// Unique per admin: the same msgid again is applied once.
        #[arg(long)]
        msgid: String,
        /// The insured person.
        #[arg(long)]
        psn_no: String,
        /// The disease, as the home policy lists it, e.g. M03900.
        #[arg(long)]
        dise_codg: String,
        /// First day of the qualification (YYYY-MM-DD); not with --end.
        #[arg(long, required_unless_present = "end", conflicts_with = "end")]
        begndate: Option<String>,
        /// Last day (YYYY-MM-DD): the qualification's end, or with --end the day it ends.
        #[arg(long, required_if_eq("end", "true"))]
        enddate: Option<String>,
        /// End the qualification the person holds for the disease on --enddate.
        #[arg(long)]
        end: bool,
    },
    /// Credits an employee's personal account on a running node (e.g. the monthly allocation).
    Credit {
        #[command(flatten)]
        admin: AdminTarget,
        /// Unique per admin: the same msgid again is applied once.
        #[arg(long)]
        msgid: String,
        /// The insured person (an employee, 310).
        #[arg(long)]
        psn_no: String,
        /// Yuan, a decimal string such as 300.00.
        #[arg(long)]
        amount: String,
        /// Why, for the ledger (e.g. "2026-03 allocation").
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Subcommand)]
enum ConsoleCommand {
    /// A fresh viewer token, and its SHA-256 for `[[console.viewers]]` in operator.toml.
    Token {
        /// The viewer's name.
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum InstitutionCommand {
    /// Suspend an institution: its requests are refused until it is restored.
    Suspend {
        #[command(flatten)]
        change: DesignationChange,
    },
    /// Revoke an institution's designation: it may be restored three years later at the earliest.
    Revoke {
        #[command(flatten)]
        change: DesignationChange,
    },
    /// Restore a suspended institution (or a revoked one, three years on).
    Restore {
        #[command(flatten)]
        change: DesignationChange,
    },
}

/// One designation change, by an admin of the institution's node.
#[derive(clap::Args)]
struct DesignationChange {
    #[command(flatten)]
    admin: AdminTarget,
    /// Unique per admin: the same msgid again is applied once.
    #[arg(long)]
    msgid: String,
    /// The institution (fixmedins_code), as in the node's config.
    #[arg(long)]
    code: String,
    /// Why, for the ledger and the refusals its requests meet.
    #[arg(long)]
    reason: String,
}

use cli::connect::AdminTarget;

#[derive(Subcommand)]
enum RegistrationCommand {
    Apply {
        #[command(flatten)]
        admin: AdminTarget,
        /// The registration request (JSON: msgid, op, psn_no, kind, target_admdvs, begndate, ...).
        #[arg(long)]
        file: PathBuf,
    },
    /// A person's registrations at their home node, asked by one of its admins (a signed query).
    Query {
        #[command(flatten)]
        admin: AdminTarget,
        /// The person (psn_no).
        #[arg(long)]
        psn_no: String,
    },
}

fn main() -> ExitCode {
    // Before any thread starts: huge-page faults stalled settlements for
    // tens of milliseconds (src/memory.rs).
    if let Err(e) = xclear::memory::disable_transparent_huge_pages() {
        eprintln!("note: transparent huge pages stay as the system sets them ({e})");
    }
    let cli = Cli::parse();
    // Servers set up their own logs; every other command shows warnings
    // (a key file readable by others, for one) on standard error.
    if !matches!(cli.command, Command::Node { .. } | Command::Operator { .. }) {
        cli::node_cmd::init_client_logs();
    }
    match cli.command {
        Command::Calc { rules, case } => calc(&rules, &case),
        Command::Rules { rules } => check_rules(&rules),
        Command::Keygen { out, public } => match (out, public) {
            (_, Some(existing)) => match xclear::crypto::load_signing_key(&existing) {
                Ok(k) => {
                    println!("{}", hex::encode(k.verifying_key().as_bytes()));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(EXIT_BAD_INPUT, e),
            },
            (Some(out), None) => keygen(&out),
            (None, None) => fail(EXIT_BAD_INPUT, "give --out FILE, or --public KEYFILE"),
        },
        Command::Institution { command } => {
            use xclear::proto::{designation_request::Op, DesignationRequest};
            let (op, c) = match command {
                InstitutionCommand::Suspend { change } => (Op::Suspend, change),
                InstitutionCommand::Revoke { change } => (Op::Revoke, change),
                InstitutionCommand::Restore { change } => (Op::Restore, change),
            };
            let req = DesignationRequest { msgid: c.msgid, fixmedins_code: c.code, op: op as i32, reason: c.reason };
            cli::node_cmd::run_designation(&c.admin.node, &c.admin.key, &c.admin.tls, &c.admin.admin, req)
        }
        Command::Ledger { command } => cli::ledger_cmd::run(command),
        Command::Audit { command } => cli::audit_cmd::run(command),
        Command::Tls { command } => cli::tls_cmd::run(command),
        Command::Bench { command } => cli::bench_cmd::run(command),
        Command::Clearing { command } => cli::clearing_cmd::run(command),
        Command::Demo { out, seed, patients, month, rules, serve, console_listen } => {
            cli::demo_cmd::run(out, seed, patients, &month, rules, serve.then_some(console_listen))
        }
        Command::Console { command: ConsoleCommand::Token { name } } => {
            let token = hex::encode(rand::random::<[u8; 24]>());
            println!("token: {token}");
            println!(
                "[[console.viewers]]\nname = {name:?}\ntoken_sha256 = \"{}\"",
                xclear::console::auth::token_hash(&token)
            );
            ExitCode::SUCCESS
        }
        Command::Operator { config } => cli::clearing_cmd::run_operator(&config),
        Command::Node { config, log_format } => cli::node_cmd::run_node(&config, log_format),
        Command::Hospital {
            action: cli::node_cmd::HospitalAction::Reconcile { code, month, file },
            node,
            key,
            tls,
            ..
        } => cli::node_cmd::run_reconcile(&node, &key, &tls, &code, &month, &file),
        Command::Hospital {
            action: cli::node_cmd::HospitalAction::Statement { code, month, out },
            node,
            key,
            tls,
            ..
        } => cli::node_cmd::run_statement(&node, &key, &tls, &code, &month, out.as_deref()),
        Command::Hospital { action, node, key, tls, bill } => {
            cli::node_cmd::run_hospital(action, &node, &key, &tls, &bill)
        }
        Command::State { config } => cli::node_cmd::run_state(&config),
        Command::Persons { command: PersonsCommand::Import { config, node, admin, key, tls, file } } => {
            match (config, node, admin, key) {
                (Some(config), _, _, _) => cli::node_cmd::run_import(&config, &file),
                (None, Some(node), Some(admin), Some(key)) => {
                    cli::node_cmd::run_import_remote(&node, &admin, &key, &tls, &file)
                }
                // clap requires --config or --node with --admin and --key.
                _ => ExitCode::from(EXIT_BAD_INPUT),
            }
        }
        Command::Persons {
            command: PersonsCommand::Qualify { admin: a, msgid, psn_no, dise_codg, begndate, enddate, end },
        } => {
            use xclear::proto::{qualification_request::Op, QualificationRequest};
            let req = QualificationRequest {
                msgid,
                psn_no,
                op: if end { Op::End } else { Op::Grant } as i32,
                dise_codg,
                begndate: begndate.unwrap_or_default(),
                enddate: enddate.unwrap_or_default(),
            };
            cli::node_cmd::run_person_change(
                &a.node,
                &a.key,
                &a.tls,
                &a.admin,
                cli::node_cmd::PersonChange::Qualify(req),
            )
        }
        Command::Persons { command: PersonsCommand::Credit { admin: a, msgid, psn_no, amount, reason } } => {
            let req = xclear::proto::AccountCreditRequest { msgid, psn_no, amount, reason };
            cli::node_cmd::run_person_change(
                &a.node,
                &a.key,
                &a.tls,
                &a.admin,
                cli::node_cmd::PersonChange::Credit(req),
            )
        }
        Command::Registration { command: RegistrationCommand::Apply { admin: a, file } } => {
            cli::node_cmd::run_registration(&a.node, &a.key, &a.tls, &a.admin, &file)
        }
        Command::Registration { command: RegistrationCommand::Query { admin: a, psn_no } } => {
            cli::node_cmd::run_registration_query(&a.node, &a.key, &a.tls, &a.admin, &psn_no)
        }
    }
}

fn load_rules(dir: &std::path::Path) -> Result<RuleBook, ExitCode> {
    RuleBook::load(dir).map_err(|e| {
        eprint!("{e}");
        ExitCode::from(EXIT_BAD_INPUT)
    })
}

fn calc(rules_dir: &std::path::Path, case: &str) -> ExitCode {
    let rules = match load_rules(rules_dir) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let text = if case == "-" {
        let mut buf = String::new();
        let limit = xclear::calc::MAX_CASE_BYTES as u64 + 1;
        if let Err(e) = std::io::stdin().take(limit).read_to_string(&mut buf) {
            eprintln!("-: cannot read standard input: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
        buf
    } else {
        match std::fs::read_to_string(case) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{case}: cannot read: {e}");
                return ExitCode::from(EXIT_BAD_INPUT);
            }
        }
    };
    match run_case(&rules, &text) {
        Ok(CalcOutcome::Settled(json)) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Ok(CalcOutcome::Refused(json)) => {
            println!("{json}");
            ExitCode::from(EXIT_REFUSED)
        }
        Err(e) => {
            eprintln!("bad input: {e}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

fn check_rules(dir: &std::path::Path) -> ExitCode {
    let rules = match load_rules(dir) {
        Ok(r) => r,
        Err(code) => return code,
    };
    for p in rules.policies() {
        println!("policy {} {} {} effective {} ({})", p.region, p.insutype.code(), p.name, p.effective, p.source);
    }
    println!("corps-local pairs: {}", rules.pairs().iter().count());
    ExitCode::SUCCESS
}

fn keygen(out: &std::path::Path) -> ExitCode {
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    match xclear::crypto::write_signing_key(out, &key) {
        Ok(()) => {
            println!("{}", hex::encode(key.verifying_key().as_bytes()));
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_FAILED, e),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every flag of every command says what it is for (`--help`).
    #[test]
    fn every_flag_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id != "help" && id != "version" && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} --{}", arg.get_long().unwrap_or(id)));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "xclear", &mut missing);
        assert!(missing.is_empty(), "{} flags without help:\n{}", missing.len(), missing.join("\n"));
    }
}
