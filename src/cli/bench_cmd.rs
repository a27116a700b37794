//! `xclear bench`: throughput figures, printed as a table and, last, one
//! `BENCH name=value` line per figure. Goals live here, never in tests.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Subcommand;
use ed25519_dalek::SigningKey;

use xclear::clock::SystemClock;
use xclear::ledger::verify::verify_dir;
use xclear::ledger::{EntryKind, Ledger};
use xclear::storage::SledStore;

use super::{fail, EXIT_FAILED};

#[derive(Subcommand, Clone)]
pub(crate) enum BenchCommand {
    /// A region's population and year on one node: import rate, bulk settlements, a restart's time and memory, end to end against it.
    Scale {
        /// Insured persons imported.
        #[arg(long, default_value_t = 200_000)]
        persons: u64,
        /// Committed settlements written to the home node's ledger in bulk.
        #[arg(long, default_value_t = 200_000)]
        settlements: u64,
        /// Length of each end-to-end phase (against the loaded node, then an empty one), in seconds.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Keep the data in this directory (to open it again with `scale-restart --dir`), not in a temporary one.
        #[arg(long, hide = true)]
        keep: Option<std::path::PathBuf>,
    },
    /// The restart half of `scale`, in its own process (run by `scale`).
    #[command(hide = true)]
    ScaleRestart {
        /// The directory holding the node's data directory.
        #[arg(long)]
        dir: std::path::PathBuf,
        /// Length of each end-to-end phase (0: none).
        #[arg(long, default_value_t = 0)]
        seconds: u64,
    },
    /// End to end: hospitals -> treatment node -> home node over gRPC, both ledgers durable.
    E2e {
        /// Length of the main phase, in seconds.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Simulated hospitals settling at once.
        #[arg(long, default_value_t = 128)]
        hospitals: usize,
        /// Insured persons loaded at the home nodes.
        #[arg(long, default_value_t = 2000)]
        persons: usize,
        /// Settlements per second offered in the paced (open-loop) phase.
        #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        rate: u32,
    },
    /// Clearing: a node's signed report over many settlements of one month.
    ClearingReport {
        /// Settlements in the month reported.
        #[arg(long, default_value_t = 5_000_000)]
        settlements: u64,
    },
    /// Clearing: reconcile and net many regions, every pair.
    ClearingNetting {
        /// Regions netted, every pair of them with traffic.
        #[arg(long, default_value_t = 400)]
        regions: usize,
    },
    /// Ledger: durable appends/s (group commit and one at a time), verify entries/s, sled's raw flush rate.
    Ledger {
        /// Entries appended in the group-commit run.
        #[arg(long, default_value_t = 200_000)]
        entries: u64,
        /// Concurrent appenders.
        #[arg(long, default_value_t = 256)]
        concurrency: u64,
    },
}

/// One printed figure.
pub(crate) struct Figure {
    pub name: &'static str,
    pub value: f64,
    pub unit: &'static str,
    pub note: String,
}

pub(crate) fn run(cmd: BenchCommand) -> ExitCode {
    let figures = match cmd {
        BenchCommand::Scale { persons, settlements, seconds, keep } => {
            super::bench_scale::run(persons, settlements, seconds, keep)
        }
        BenchCommand::ScaleRestart { dir, seconds } => {
            return match super::bench_scale::restart(&dir, seconds) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(EXIT_FAILED, e),
            }
        }
        BenchCommand::Ledger { entries, concurrency } => ledger(entries, concurrency),
        BenchCommand::E2e { seconds, hospitals, persons, rate } => {
            super::bench_e2e::run(seconds, hospitals, persons, rate)
        }
        BenchCommand::ClearingReport { settlements } => super::bench_clearing::report(settlements),
        BenchCommand::ClearingNetting { regions } => super::bench_clearing::netting(regions),
    };
    match figures {
        Ok(figs) => {
            print_table(&figs);
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_FAILED, e),
    }
}

fn print_table(figs: &[Figure]) {
    println!("{:<44} {:>14}  {:<10} note", "figure", "value", "unit");
    for f in figs {
        println!("{:<44} {:>14.2}  {:<10} {}", f.name, f.value, f.unit, f.note);
    }
    for f in figs {
        println!("BENCH {}={:.2}", f.name, f.value);
    }
}

/// A payload of the size of a settlement record (~400 bytes of JSON).
fn payload(i: u64) -> Vec<u8> {
    format!(
        "{{\"setl_id\":\"S{i:012}\",\"psn_no\":\"P{:08}\",\"insuplc_admdvs\":\"611000\",\"mdtrtarea_admvs\":\"110105\",\
\"medfee_sumamt\":\"50000.00\",\"fulamt_ownpay_amt\":\"3000.00\",\"overlmt_selfpay\":\"500.00\",\"preselfpay_amt\":\"1000.00\",\
\"inscp_scp_amt\":\"45500.00\",\"hifp_pay\":\"31500.00\",\"hifmi_pay\":\"2400.00\",\"hifob_pay\":\"0.00\",\"maf_pay\":\"0.00\",\
\"fund_pay_sumamt\":\"33900.00\",\"psn_part_amt\":\"16100.00\",\"month\":\"2026-03\"}}",
        i % 100_000
    )
    .into_bytes()
}

fn ledger(entries: u64, concurrency: u64) -> Result<Vec<Figure>, String> {
    let tmp = tempfile_dir()?;
    let key = SigningKey::from_bytes(&[42u8; 32]);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;

    // 1. Group commit under concurrent appenders.
    let db = tmp.join("group");
    let ledger = Arc::new(Ledger::open(&db, key.clone(), Arc::new(SystemClock)).map_err(|e| e.to_string())?);
    let start = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..concurrency {
            let ledger = Arc::clone(&ledger);
            tasks.push(tokio::spawn(async move {
                let mut i = t;
                while i < entries {
                    if let Err(e) = ledger.append(EntryKind::Note, &format!("bench-{i}"), payload(i)).await {
                        return Err(e.to_string());
                    }
                    i += concurrency;
                }
                Ok(())
            }));
        }
        for t in tasks {
            t.await.map_err(|e| e.to_string())??;
        }
        Ok::<(), String>(())
    })?;
    let group_secs = start.elapsed().as_secs_f64();
    let commits = ledger.commits();
    Arc::try_unwrap(ledger).map_err(|_| "ledger still shared".to_string())?.close().map_err(|e| e.to_string())?;

    // 2. Verification of everything just written.
    let start = Instant::now();
    let report = verify_dir(&db, Some(&key.verifying_key())).map_err(|e| e.to_string())?;
    let verify_secs = start.elapsed().as_secs_f64();

    // 3. One append at a time: each pays its own fdatasync.
    let single_db = tmp.join("single");
    let single = Ledger::open(&single_db, key, Arc::new(SystemClock)).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut singles = 0u64;
    while start.elapsed().as_secs_f64() < 2.0 {
        single
            .append_blocking(EntryKind::Note, &format!("single-{singles}"), payload(singles))
            .map_err(|e| e.to_string())?;
        singles += 1;
    }
    let single_secs = start.elapsed().as_secs_f64();
    single.close().map_err(|e| e.to_string())?;

    // 4. sled alone: insert + flush(), which is not an fsync on Linux.
    let (sled_n, sled_secs) = SledStore::raw_flush_rate(&tmp.join("sled"), 2.0).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&tmp);

    let group_rate = entries as f64 / group_secs;
    Ok(vec![
        Figure {
            name: "ledger_durable_appends_per_s",
            value: group_rate,
            unit: "appends/s",
            note: format!("{entries} appends, {concurrency} concurrent, {commits} group commits (goal 50000)"),
        },
        Figure {
            name: "ledger_avg_group_size",
            value: entries as f64 / commits.max(1) as f64,
            unit: "entries",
            note: "appends per fdatasync".into(),
        },
        Figure {
            name: "ledger_single_appends_per_s",
            value: singles as f64 / single_secs,
            unit: "appends/s",
            note: "one at a time, one fdatasync each".into(),
        },
        Figure {
            name: "ledger_verify_entries_per_s",
            value: report.entries as f64 / verify_secs,
            unit: "entries/s",
            note: format!(
                "{} entries: checksums, links, seals (each signature checked alone, strictly) (goal 40000)",
                report.entries
            ),
        },
        Figure {
            name: "sled_raw_flush_per_s",
            value: sled_n as f64 / sled_secs,
            unit: "flushes/s",
            note: "sled insert + flush(); not a durability point".into(),
        },
        Figure {
            name: "group_commit_vs_sled_flush_ratio",
            value: group_rate / (sled_n as f64 / sled_secs),
            unit: "x",
            note: "same run".into(),
        },
    ])
}

fn tempfile_dir() -> Result<std::path::PathBuf, String> {
    let base = std::env::var_os("XCLEAR_BENCH_DIR").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("xclear-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}
