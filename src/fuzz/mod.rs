//! Fuzzing of every decoder that sees outside input, without nightly tools:
//! a seeded mutator (bit flips, splices, truncations, hostile tokens) over a
//! corpus of valid inputs per target, plus raw random bytes. A target must
//! answer every input with a value or a clear error: a panic or an input that
//! takes longer than [`HANG`] is a finding, returned with the input so it can
//! become a regression test. `xclear-testkit fuzz --target T --seconds N` runs one
//! target for a while; the test suite runs each for a bounded number of inputs.

mod mutate;
mod targets;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use targets::Target;

/// An input slower than this is reported as a hang.
pub const HANG: Duration = Duration::from_secs(10);

/// How long to run.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    Inputs(u64),
    Time(Duration),
}

#[derive(Debug, Clone, Default)]
pub struct FuzzReport {
    pub inputs: u64,
    /// Inputs answered with an error (the expected fate of most).
    pub refused: u64,
    /// Inputs accepted (decoded, applied or verified).
    pub accepted: u64,
    pub elapsed: Duration,
}

/// An input a target panicked on or hung with.
#[derive(Debug, Clone)]
pub struct Finding {
    pub target: Target,
    pub input: Vec<u8>,
    pub what: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} (input of {} bytes)", self.target.name(), self.what, self.input.len())
    }
}

/// Runs `target` for the budget from `seed`.
pub fn run(target: Target, budget: Budget, seed: u64) -> Result<FuzzReport, Finding> {
    let finding = |input: &[u8], what: String| Finding { target, input: input.to_vec(), what };
    let mut harness = targets::Harness::new(target).map_err(|e| finding(&[], format!("setup: {e}")))?;
    let corpus = harness.corpus();
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let mut report = FuzzReport::default();
    loop {
        match budget {
            Budget::Inputs(n) if report.inputs >= n => break,
            Budget::Time(d) if started.elapsed() >= d => break,
            _ => {}
        }
        let input = if corpus.is_empty() || rng.gen_ratio(1, 10) {
            let len = rng.gen_range(0..512);
            (0..len).map(|_| rng.gen()).collect()
        } else {
            let base = &corpus[rng.gen_range(0..corpus.len())];
            mutate::mutate(&mut rng, base, &corpus)
        };
        let t = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| harness.feed(&input, rng.gen())));
        let took = t.elapsed();
        match outcome {
            Ok(true) => report.accepted += 1,
            Ok(false) => report.refused += 1,
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                return Err(finding(&input, format!("panicked: {msg}")));
            }
        }
        if took > HANG {
            return Err(finding(&input, format!("took {took:?}")));
        }
        report.inputs += 1;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Feeds one input to a target every way in (to replay a finding); returns
/// how many of those ways accepted it.
pub fn replay(target: Target, input: &[u8]) -> Result<usize, String> {
    let mut harness = targets::Harness::new(target)?;
    let mut accepted = 0;
    for salt in 0..12 {
        match catch_unwind(AssertUnwindSafe(|| harness.feed(input, salt))) {
            Ok(true) => accepted += 1,
            Ok(false) => {}
            Err(_) => return Err(format!("{} panicked (way in {salt})", target.name())),
        }
    }
    Ok(accepted)
}
