//! `xclear-testkit sim`: the seeded federation simulation, over one or many seeds.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use xclear::rules::RuleBook;
use xclear::sim::{run, ClearingCounts, Faults, SimOptions};

use crate::{fail, EXIT_BAD_INPUT, EXIT_FAILED};

/// Runs seeds `seed .. seed + seeds`, each for `steps` steps, one after the
/// other on a single-threaded runtime (so a seed replays exactly).
pub(crate) fn run_sim(seed: u64, seeds: u64, steps: u64, rules: PathBuf, keep: Option<PathBuf>) -> ExitCode {
    let rules = match RuleBook::load(&rules) {
        Ok(r) => Arc::new(r),
        Err(e) => return fail(EXIT_BAD_INPUT, e),
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return fail(EXIT_FAILED, e),
    };
    let started = Instant::now();
    let mut faults = Faults::default();
    let mut clearing = ClearingCounts::default();
    let (mut settled, mut reversed, mut refused, mut closed, mut entries) = (0, 0, 0, 0, 0);
    for s in seed..seed.saturating_add(seeds.max(1)) {
        let tmp = match &keep {
            Some(dir) => Ok((dir.join(format!("seed-{s}")), None)),
            None => xclear::sim::scratch_dir().map(|d| (d.path().to_path_buf(), Some(d))),
        };
        let (dir, _guard) = match tmp {
            Ok(t) => t,
            Err(e) => return fail(EXIT_FAILED, e),
        };
        let opts = SimOptions { seed: s, steps, rates: Default::default() };
        match rt.block_on(run(&opts, &dir, Arc::clone(&rules))) {
            Ok(r) => {
                if seeds <= 1 {
                    println!(
                        "seed {} steps {}: settled {} reversed {} refused {} hospital retries {} months closed {} ledger entries {} digest {}",
                        r.seed, r.steps, r.settled, r.reversed, r.refused, r.hospital_retries, r.months_closed, r.ledger_entries, r.digest
                    );
                    println!("faults: {}", r.faults);
                    println!("clearing: {}", r.clearing);
                }
                faults.add(&r.faults);
                clearing.add(&r.clearing);
                settled += r.settled;
                reversed += r.reversed;
                refused += r.refused;
                closed += r.months_closed;
                entries += r.ledger_entries;
            }
            Err(e) => return fail(EXIT_FAILED, e),
        }
    }
    println!(
        "sim: {} seeds ({seed}..{}) x {steps} steps passed in {:.1} s: settled {settled} reversed {reversed} refused {refused} months closed {closed} ledger entries verified {entries} {clearing}",
        seeds.max(1),
        seed + seeds.max(1) - 1,
        started.elapsed().as_secs_f64()
    );
    println!("faults injected: {} ({faults})", faults.total());
    ExitCode::SUCCESS
}
