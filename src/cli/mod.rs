//! Command-line plumbing shared by the subcommands.

pub mod bench_clearing;
pub mod bench_cmd;
pub mod bench_e2e;
mod bench_load;
pub mod clearing_cmd;
pub mod demo_cmd;
pub mod ledger_cmd;
pub mod node_cmd;

use std::process::ExitCode;

/// Exit codes: 2 bad input, 3 refused (calc), 1 anything that failed or is not sound.
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_BAD_INPUT: u8 = 2;
pub const EXIT_REFUSED: u8 = 3;

pub fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("{message}");
    ExitCode::from(code)
}
