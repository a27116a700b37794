//! `xclear bench scale`: a region's population and year on one node (issue
//! 25). In this process: `--persons` insured persons imported as the offline
//! import loads them (chunks of 20,000 into batch entries), then
//! `--settlements` committed settlements written to the home node's ledger in
//! bulk (each a home settlement entry with its own signed result, appended
//! through the ledger's group commit and applied to the state store as a
//! node does). Then, in a fresh process: the node's restart time and resident
//! memory, and the end-to-end settlement rate (hospitals → treatment node →
//! this home node over gRPC) against an empty home node in the same run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use xclear::api::envelope::{seal, CLAIM_DOMAIN, CLAIM_RESULT_DOMAIN};
use xclear::clock::{Clock, SystemClock};
use xclear::federation::{LocalNetwork, NodePlan};
use xclear::ledger::EntryKind;
use xclear::money::Amount;
use xclear::node::records::{to_payload, EnvelopeRecord, HomeSettlementEntry};
use xclear::node::Node;
use xclear::proto::{Claim, ClaimResult, SettlementFigures};
use xclear::region::RegionCode;
use xclear::rules::RuleBook;
use xclear::settlement::CounterDelta;

use super::bench_cmd::Figure;
use super::bench_e2e::{bench_person, Pair, FEDERATION};
use super::bench_load::{drive, Traffic};

const HOME: &str = "611000";
/// Persons handed to the node at a time, as `xclear persons import` does.
const IMPORT_CHUNK: u64 = 20_000;
/// Settlement entries appended at once (the writer groups them).
const APPEND_WAVE: u64 = 4_096;
/// Hospitals settling at once in the end-to-end phases.
const HOSPITALS: usize = 64;
/// The longest the loaded phase waits for the restarted ledger's
/// background check before measuring beside it.
const CHECK_WAIT: std::time::Duration = std::time::Duration::from_secs(30 * 60);
/// The end-to-end rounds (each one phase against the loaded node, then one
/// against the empty node), by the msgid prefix that keeps them apart.
const ROUND_PHASES: [&str; 3] = ["s0", "s1", "s2"];
/// Registered persons the end-to-end phases settle for.
const E2E_PERSONS: usize = 2_000;

/// The home node whose data is in `dir`.
fn plan(dir: &Path) -> Result<NodePlan, String> {
    let region = RegionCode::parse(HOME).map_err(|e| e.to_string())?;
    Ok(NodePlan::new(FEDERATION, region, dir.to_path_buf(), PathBuf::from("clearing_rules")))
}

fn open(dir: &Path) -> Result<Node, String> {
    let plan = plan(dir)?;
    let rules = Arc::new(RuleBook::load(Path::new("clearing_rules")).map_err(|e| e.to_string())?);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Node::open(plan.config(), plan.node_key(), rules, clock, LocalNetwork::new()).map_err(|e| e.to_string())
}

fn status_mib(field: &str) -> f64 {
    super::bench_clearing::status_mib(field)
}

fn dir_mib(dir: &Path) -> f64 {
    fn bytes(dir: &Path) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
        entries
            .flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => bytes(&e.path()),
                _ => e.metadata().map(|m| m.len()).unwrap_or(0),
            })
            .sum()
    }
    bytes(dir) as f64 / (1024.0 * 1024.0)
}

/// Settlement `i` of the bulk load: a claim of 110000's hospital for person
/// `i mod persons`, and the home node's signed result.
fn bulk_settlement(
    i: u64,
    persons: u64,
    claim_env: &EnvelopeRecord,
    key: &ed25519_dalek::SigningKey,
) -> (String, Vec<u8>) {
    let psn_no = format!("P{}", i % persons.max(1));
    let msgid = format!("bulk-{i}");
    let ikey = xclear::node::keys::claim("110000", "HB", &msgid);
    let setl_id = xclear::node::keys::setl_id('S', HOME, &ikey, false);
    let fund = Amount::yuan(120);
    let result = ClaimResult {
        msgid: msgid.clone(),
        settled: true,
        eligible: true,
        setl_id: setl_id.clone(),
        fixmedins_code: "HB".into(),
        mdtrtarea_admvs: "110000".into(),
        insuplc_admdvs: HOME.into(),
        month: "2026-03".into(),
        figures: Some(SettlementFigures {
            route: "cross_province".into(),
            med_type: "11".into(),
            medfee_sumamt: "200.00".into(),
            hifp_pay: fund.to_string(),
            hifmi_pay: "0.00".into(),
            hifob_pay: "0.00".into(),
            maf_pay: "0.00".into(),
            fund_pay_sumamt: fund.to_string(),
            acct_pay: "0.00".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let result_env = seal(key, CLAIM_RESULT_DOMAIN, HOME, &result);
    let rec = HomeSettlementEntry {
        claim: claim_env.clone(),
        result: EnvelopeRecord::from(&result_env),
        setl_id,
        psn_no,
        year: 2026,
        delta: CounterDelta { op_paid: fund, ..Default::default() },
        treatment: "110000".into(),
        fixmedins_code: "HB".into(),
        reversed_setl_id: None,
    };
    (ikey, to_payload(&rec))
}

/// The restart half, in its own process: open the node's data and report;
/// then settle end to end against it and against an empty home node.
pub(crate) fn restart(dir: &Path, seconds: u64) -> Result<(), String> {
    let started = Instant::now();
    let node = open(&dir.join(HOME))?;
    let restart_s = started.elapsed().as_secs_f64();
    let rss = status_mib("VmRSS:");
    let recovery = node.ledger().recovery();
    println!(
        "restart_seconds={restart_s:.3} rss_mib={rss:.1} entries={} checkpointed={} ledger_read={}",
        node.ledger().len(),
        recovery.checkpointed,
        node.ledger().len() - recovery.checkpointed,
    );
    drop(node);
    // The ledger's share of that: opened alone.
    let key = plan(&dir.join(HOME))?.node_key();
    let started = Instant::now();
    let ledger =
        xclear::ledger::Ledger::open(&dir.join(HOME), key, Arc::new(SystemClock)).map_err(|e| e.to_string())?;
    println!("ledger_open_seconds={:.3}", started.elapsed().as_secs_f64());
    drop(ledger);
    if seconds == 0 {
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    let rules = Arc::new(RuleBook::load(Path::new("clearing_rules")).map_err(|e| e.to_string())?);
    let empty = dir.join("empty");
    rt.block_on(async {
        let opened = Instant::now();
        let loaded = Pair::start(dir, HOSPITALS, &rules, true).await?;
        loaded.insure(E2E_PERSONS).await?;
        // A restarted node reads its segment back against its checkpoint in
        // the background (yielding to traffic); the phases measure the node
        // once that is done.
        {
            use xclear::ledger::checkpoint::PrefixCheck;
            let home = &loaded.nodes[HOME];
            loop {
                match home.ledger().prefix_check() {
                    PrefixCheck::Running if opened.elapsed() < CHECK_WAIT => {
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await
                    }
                    PrefixCheck::Running => {
                        eprintln!("bench scale: the background check is still running; measuring beside it");
                        break;
                    }
                    PrefixCheck::Failed(why) => return Err(format!("the restarted ledger failed its check: {why}")),
                    PrefixCheck::NotNeeded | PrefixCheck::Passed => break,
                }
            }
        }
        println!("check_seconds={:.3}", opened.elapsed().as_secs_f64());
        let empty = Pair::start(empty.as_path(), HOSPITALS, &rules, true).await?;
        empty.insure(E2E_PERSONS).await?;
        // Alternated, so that a machine whose speed drifts during the run
        // (a shared host) moves both sides alike; the median round of each.
        let (mut on_loaded, mut on_empty) = (Vec::new(), Vec::new());
        for phase in ROUND_PHASES {
            for (pair, rates) in [(&loaded, &mut on_loaded), (&empty, &mut on_empty)] {
                let latencies = drive(&pair.target, HOSPITALS, seconds, E2E_PERSONS, phase, Traffic::Inpatient).await?;
                rates.push(latencies.len() as f64 / seconds as f64);
            }
        }
        println!("rss_under_load_mib={:.1}", status_mib("VmHWM:"));
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let rounds = |v: &[f64]| v.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join("/");
        let (loaded_rounds, empty_rounds) = (rounds(&on_loaded), rounds(&on_empty));
        println!(
            "loaded_rounds={loaded_rounds} empty_rounds={empty_rounds} loaded_per_s={:.1} empty_per_s={:.1}",
            median(on_loaded),
            median(on_empty)
        );
        let _ = loaded.stop();
        let _ = empty.stop();
        Ok::<_, String>(())
    })
}

pub(crate) fn run(persons: u64, settlements: u64, seconds: u64, keep: Option<PathBuf>) -> Result<Vec<Figure>, String> {
    let tmp =
        keep.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("xclear-bench-scale-{}", std::process::id())));
    let dir = tmp.join(HOME);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let result = bulk_load(&dir, persons, settlements);
    let measured = result.and_then(|loaded| {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let out = std::process::Command::new(exe)
            .args(["bench", "scale-restart", "--seconds", &seconds.to_string(), "--dir"])
            .arg(&tmp)
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err("the restart process failed".to_string());
        }
        Ok((loaded, String::from_utf8_lossy(&out.stdout).into_owned()))
    });
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    let (loaded, text) = measured?;
    let text_field = |name: &str| -> String {
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .unwrap_or("?")
            .to_string()
    };
    let field = |name: &str| -> f64 { text_field(name).parse().unwrap_or(f64::NAN) };
    let (loaded_rate, empty_rate) = (field("loaded_per_s"), field("empty_per_s"));
    Ok(vec![
        Figure {
            name: "scale_import_persons_per_s",
            value: persons as f64 / loaded.import_s.max(1e-9),
            unit: "persons/s",
            note: format!(
                "{persons} persons in chunks of {IMPORT_CHUNK} (batch entries of up to {}), {:.1} s (goal 100000)",
                xclear::node::home::PERSON_BATCH_RECORDS,
                loaded.import_s
            ),
        },
        Figure {
            name: "scale_bulk_settlements_per_s",
            value: settlements as f64 / loaded.settle_s.max(1e-9),
            unit: "settle/s",
            note: format!(
                "{settlements} settlements written in bulk (each result signed), {:.1} s; data {:.0} MiB on disk, ledger {} entries",
                loaded.settle_s, loaded.disk_mib, loaded.entries
            ),
        },
        Figure {
            name: "scale_restart_seconds",
            value: field("restart_seconds"),
            unit: "s",
            note: "a fresh process opens the node (goal < 5)".into(),
        },
        Figure {
            name: "scale_restart_ledger_seconds",
            value: field("ledger_open_seconds"),
            unit: "s",
            note: "of a restart, the ledger alone (from its tree checkpoint), opened again after the node; the rest is opening the state store (sled replays its log since its last open) and reading the intents and the few entries the store names".into(),
        },
        Figure {
            name: "scale_restart_check_seconds",
            value: field("check_seconds"),
            unit: "s",
            note: "from the node's open until it had read its segment back against its checkpoint in the background, pausing while the phase's set-up committed entries (the end-to-end phase against the loaded node starts then; under steady traffic the check reads at most 256 records per 50 ms)".into(),
        },
        Figure {
            name: "scale_rss_after_restart_mib",
            value: field("rss_mib"),
            unit: "MiB",
            note: "resident memory of that process, ready (goal < 1024)".into(),
        },
        Figure {
            name: "scale_rss_under_load_mib",
            value: field("rss_under_load_mib"),
            unit: "MiB",
            note: format!(
                "peak resident memory (VmHWM) of that process after its rounds of settlements, with the loaded node, the empty one, their treatment nodes and {HOSPITALS} hospitals in it (goal < 2048)"
            ),
        },
        Figure {
            name: "scale_e2e_vs_empty_pct",
            value: 100.0 * loaded_rate / empty_rate,
            unit: "%",
            note: format!(
                "end to end over TLS, {HOSPITALS} hospitals, {} rounds of {seconds} s against each node in turn, the median round of each: {loaded_rate:.0}/s against the loaded home node ({}), {empty_rate:.0}/s against an empty one ({}) (goal ≥ 80)",
                ROUND_PHASES.len(),
                text_field("loaded_rounds"),
                text_field("empty_rounds")
            ),
        },
    ])
}

struct Loaded {
    import_s: f64,
    settle_s: f64,
    disk_mib: f64,
    entries: u64,
}

fn bulk_load(dir: &Path, persons: u64, settlements: u64) -> Result<Loaded, String> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let node = Arc::new(open(dir)?);
        let started = Instant::now();
        // Generated beside the load, as `xclear persons import` parses its file.
        let (tx, mut rx) = tokio::sync::mpsc::channel(2);
        let generator = tokio::task::spawn_blocking(move || {
            let mut done = 0u64;
            while done < persons {
                let n = (persons - done).min(IMPORT_CHUNK);
                if tx.blocking_send((done..done + n).map(bench_person).collect::<Vec<_>>()).is_err() {
                    break;
                }
                done += n;
            }
        });
        node.load_persons(&mut rx, |done| {
            if done % 1_000_000 < IMPORT_CHUNK {
                eprintln!(
                    "bench scale: {done} persons imported, {:.0}/s",
                    done as f64 / started.elapsed().as_secs_f64()
                );
            }
        })
        .await
        .map_err(|(e, _)| e.to_string())?;
        generator.await.map_err(|e| e.to_string())?;
        let import_s = started.elapsed().as_secs_f64();

        let treatment_key = xclear::federation::key(FEDERATION, "110000");
        let home_key = xclear::federation::key(FEDERATION, HOME);
        let claim = Claim { msgid: "bulk".into(), insuplc_admdvs: HOME.into(), ..Default::default() };
        let claim_env = EnvelopeRecord::from(&seal(&treatment_key, CLAIM_DOMAIN, "110000", &claim));
        let started = Instant::now();
        let mut i = 0u64;
        while i < settlements {
            let wave = (settlements - i).min(APPEND_WAVE);
            let mut tasks = tokio::task::JoinSet::new();
            for j in i..i + wave {
                let (key, payload) = bulk_settlement(j, persons, &claim_env, &home_key);
                let node = Arc::clone(&node);
                tasks.spawn(async move { node.ledger().append(EntryKind::Settlement, &key, payload).await });
            }
            while let Some(r) = tasks.join_next().await {
                r.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
            }
            node.maintain_state().map_err(|e| e.to_string())?;
            i += wave;
            if i % 1_000_000 < APPEND_WAVE {
                eprintln!("bench scale: {i} settlements written, {:.0}/s", i as f64 / started.elapsed().as_secs_f64());
            }
        }
        let settle_s = started.elapsed().as_secs_f64();
        let entries = node.ledger().len();
        drop(node);
        Ok(Loaded { import_s, settle_s, disk_mib: dir_mib(dir), entries })
    })
}
