//! Command-line plumbing shared by the subcommands.

pub(crate) mod audit_cmd;
pub(crate) mod bench_clearing;
pub(crate) mod bench_cmd;
pub(crate) mod bench_e2e;
mod bench_load;
mod bench_scale;
pub(crate) mod clearing_cmd;
pub(crate) mod connect;
pub(crate) mod demo_cmd;
pub(crate) mod ledger_cmd;
pub(crate) mod node_cmd;
mod person_file;
pub(crate) mod tls_cmd;

use std::process::ExitCode;

/// Exit codes: 2 bad input, 3 refused (calc), 1 anything that failed or is not sound.
pub(crate) const EXIT_FAILED: u8 = 1;
pub(crate) const EXIT_BAD_INPUT: u8 = 2;
pub(crate) const EXIT_REFUSED: u8 = 3;

/// Resolves on Ctrl-C (SIGINT) or SIGTERM (what service managers and
/// `kill` send): servers drain and stop the same way on either.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The exit code of a node's refusal of a hospital request: 2 when the
/// request itself is malformed, 3 when the node or the home region refused
/// it, 1 when it could not be answered (unreachable, internal).
pub(crate) fn exit_code_of(reason: &str) -> u8 {
    match reason {
        "bad_request" => EXIT_BAD_INPUT,
        "home_unreachable" | "region_unreachable" | "internal" | "bad_peer_answer" | "bad_region_answer"
        | "overloaded" | "unreachable" => EXIT_FAILED,
        _ => EXIT_REFUSED,
    }
}

/// A failed call's exit code and JSON error: the node's or operator's
/// reason when it answered, else the transport's failure (exit 1), with a
/// hint when the likely cause is the address's scheme.
pub(crate) fn call_failed(s: &tonic::Status) -> ExitCode {
    match xclear::api::error::reason_of(s) {
        Some(reason) => fail(exit_code_of(&reason), serde_json::json!({"error": reason, "message": s.message()})),
        None => {
            let hint = if s.message().contains("transport error") || s.code() == tonic::Code::Unknown {
                "; if the server speaks TLS, its address is https://"
            } else {
                ""
            };
            let message = format!("{:?}: {}{hint}", s.code(), s.message());
            fail(EXIT_FAILED, serde_json::json!({"error": "unreachable", "message": message}))
        }
    }
}

pub(crate) fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("{message}");
    ExitCode::from(code)
}
