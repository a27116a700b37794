//! `xclear-testkit fuzz`: runs fuzz targets for a while; a finding is saved for replay.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use xclear::fuzz::{run, Budget, Target};

use crate::{fail, EXIT_BAD_INPUT, EXIT_FAILED};

pub(crate) fn run_fuzz(target: &str, seconds: u64, seed: u64, findings: PathBuf) -> ExitCode {
    let targets: Vec<Target> = if target == "all" {
        Target::ALL.to_vec()
    } else {
        match Target::parse(target) {
            Some(t) => vec![t],
            None => {
                let names: Vec<&str> = Target::ALL.iter().map(|t| t.name()).collect();
                return fail(EXIT_BAD_INPUT, format!("--target: {target:?} is not one of all, {}", names.join(", ")));
            }
        }
    };
    for t in targets {
        match run(t, Budget::Time(Duration::from_secs(seconds)), seed) {
            Ok(r) => println!(
                "fuzz {}: {} inputs in {:.0} s, none panicked or hung ({} accepted, {} refused with an error), seed {seed}",
                t.name(),
                r.inputs,
                r.elapsed.as_secs_f64(),
                r.accepted,
                r.refused
            ),
            Err(f) => {
                let _ = std::fs::create_dir_all(&findings);
                let file = findings.join(format!("{}-seed{seed}.bin", t.name()));
                let saved = std::fs::write(&file, &f.input).map(|_| file.display().to_string());
                return fail(EXIT_FAILED, format!("FINDING {f}; input saved to {saved:?}"));
            }
        }
    }
    ExitCode::SUCCESS
}
