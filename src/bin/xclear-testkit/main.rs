//! `xclear-testkit`: the project's own tools for finding bugs, kept out of
//! the binary an agency deploys. `sim` runs the seeded federation
//! simulation; `fuzz` feeds mutated input to every decoder of outside input.
//! `make sim` and `make fuzz` call it.

mod fuzz_cmd;
mod sim_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

const EXIT_FAILED: u8 = 1;
const EXIT_BAD_INPUT: u8 = 2;

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("{message}");
    ExitCode::from(code)
}

#[derive(Parser)]
#[command(name = "xclear-testkit", version, about = "The xclear simulation and fuzzer")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The seeded federation simulation (faults, crashes, month ends) checked step by step.
    Sim {
        /// First seed; a failing run prints the seed that replays it.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// How many seeds, from --seed on.
        #[arg(long, default_value_t = 1)]
        seeds: u64,
        #[arg(long, default_value_t = 300)]
        steps: u64,
        #[arg(long, default_value = "clearing_rules")]
        rules: PathBuf,
        /// Keep each run's data in DIR/seed-N instead of a temp dir.
        #[arg(long)]
        keep: Option<PathBuf>,
    },
    /// Fuzz the decoders of outside input for a while (a finding is saved for replay).
    Fuzz {
        /// A target (hospital, claim, peer-query, registration, report, calc, rules, config, export) or `all`.
        #[arg(long, default_value = "all")]
        target: String,
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value = "fuzz-findings")]
        findings: PathBuf,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Fuzz { target, seconds, seed, findings } => fuzz_cmd::run_fuzz(&target, seconds, seed, findings),
        Command::Sim { seed, seeds, steps, rules, keep } => sim_cmd::run_sim(seed, seeds, steps, rules, keep),
    }
}
