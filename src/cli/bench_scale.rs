//! `xclear bench scale`: a region's population on one node (issue 25) — the
//! import rate of `--persons` insured persons in batches of 1,000 (as the
//! signed import takes them), then a restart: a fresh process opens the
//! node's data and reports how long until it is ready and its resident
//! memory then. This is the baseline the goals are measured against;
//! settlements at scale are not part of it yet.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use xclear::clock::{Clock, SystemClock};
use xclear::federation::{LocalNetwork, NodePlan};
use xclear::node::records::PersonRecord;
use xclear::node::Node;
use xclear::region::RegionCode;
use xclear::rules::RuleBook;

use super::bench_cmd::Figure;

const FEDERATION: &str = "bench-scale";
const REGION: &str = "611000";
const BATCH: usize = xclear::node::persons::MAX_PERSONS_PER_IMPORT;

fn plan(dir: &Path) -> Result<NodePlan, String> {
    let region = RegionCode::parse(REGION).map_err(|e| e.to_string())?;
    Ok(NodePlan::new(FEDERATION, region, dir.to_path_buf(), PathBuf::from("clearing_rules")))
}

fn open(dir: &Path) -> Result<Node, String> {
    let plan = plan(dir)?;
    let rules = Arc::new(RuleBook::load(Path::new("clearing_rules")).map_err(|e| e.to_string())?);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Node::open(plan.config(), plan.node_key(), rules, clock, LocalNetwork::new()).map_err(|e| e.to_string())
}

/// Resident memory of this process now (VmRSS), in MiB.
fn rss_mib() -> f64 {
    super::bench_clearing::status_mib("VmRSS:")
}

/// The restart half, in its own process: open the node's data, report.
pub(crate) fn restart(dir: &Path) -> Result<(), String> {
    let started = Instant::now();
    let node = open(dir)?;
    let seconds = started.elapsed().as_secs_f64();
    println!("restart_seconds={seconds:.3} rss_mib={:.1} entries={}", rss_mib(), node.ledger().len());
    Ok(())
}

pub(crate) fn run(persons: u64) -> Result<Vec<Figure>, String> {
    let tmp = std::env::temp_dir().join(format!("xclear-bench-scale-{}", std::process::id()));
    let dir = tmp.join(REGION);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    let result = rt.block_on(async {
        let node = open(&dir)?;
        let started = Instant::now();
        let mut done = 0u64;
        while done < persons {
            let n = (persons - done).min(BATCH as u64);
            let batch: Vec<PersonRecord> = (done..done + n)
                .map(|i| PersonRecord {
                    psn_no: format!("P{i:09}"),
                    insuplc_admdvs: REGION.into(),
                    insutype: if i % 3 == 0 { "310" } else { "390" }.into(),
                    retired: i % 5 == 0,
                    special_group: None,
                    contribution_years: BTreeMap::new(),
                    acct_balance: None,
                    chronic: Vec::new(),
                })
                .collect();
            node.import_persons(&batch).await.map_err(|e| e.to_string())?;
            done += n;
        }
        let import_s = started.elapsed().as_secs_f64();
        let entries = node.ledger().len();
        drop(node);
        Ok::<_, String>((import_s, entries))
    });
    drop(rt);
    let (import_s, entries) = result?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = std::process::Command::new(exe)
        .args(["bench", "scale-restart", "--dir"])
        .arg(&dir)
        .output()
        .map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&tmp);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!("the restart failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let field = |name: &str| -> f64 {
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let rate = persons as f64 / import_s.max(1e-9);
    Ok(vec![
        Figure {
            name: "scale_import_persons_per_s",
            value: rate,
            unit: "persons/s",
            note: format!("{persons} persons in batches of {BATCH}, {entries} ledger entries, {import_s:.1} s"),
        },
        Figure {
            name: "scale_restart_seconds",
            value: field("restart_seconds"),
            unit: "s",
            note: format!("a fresh process opens the node holding {persons} persons"),
        },
        Figure {
            name: "scale_rss_after_restart_mib",
            value: field("rss_mib"),
            unit: "MiB",
            note: "resident memory of that process, ready".into(),
        },
    ])
}
