//! Bulk loading a region's persons (issue 25): `xclear persons import`
//! streams the file into batch entries. Killed part-way, and killed again
//! while a deleted state store is rebuilt, the import run again loads
//! exactly what was missing: every person once, no record twice.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::procs::{two_nodes, xclear};

const PERSONS: usize = 120_000;

fn write_persons(path: &Path) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    f.write_all(b"[").expect("write");
    for i in 0..PERSONS {
        let sep = if i == 0 { "" } else { "," };
        let employee = i % 3 == 0;
        let balance = if employee { r#", "acct_balance": "800.00""# } else { "" };
        write!(
            f,
            r#"{sep}{{"psn_no": "P{i:08}", "insuplc_admdvs": "611000", "insutype": "{}", "retired": {}{balance}}}"#,
            if employee { "310" } else { "390" },
            i % 5 == 0
        )
        .expect("write");
    }
    f.write_all(b"]").expect("write");
}

fn import(cfg: &Path, file: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_xclear"))
        .args(["persons", "import", "--config", cfg.to_str().expect("p"), "--file", file.to_str().expect("p")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// Kills `child` once `grown` says so (or it ends first); true if killed.
fn kill_when(mut child: Child, grown: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if child.try_wait().expect("wait").is_some() {
            return false;
        }
        if grown() {
            child.kill().expect("kill");
            child.wait().expect("reap");
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("the import neither grew nor ended");
}

fn added(out: &std::process::Output) -> u64 {
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    text.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{text}"))
}

/// Every person record in the ledger's batch entries, by person.
fn records_in_ledger(data: &Path) -> std::collections::BTreeMap<String, usize> {
    let mut export = Vec::new();
    xclear::ledger::export::export_dir(data, &mut export).expect("export");
    let mut seen = std::collections::BTreeMap::new();
    xclear::ledger::export::read_entries(&mut export.as_slice(), |e| {
        if e.body.kind == xclear::ledger::EntryKind::PersonBatch {
            let b: xclear::node::records::PersonBatchEntry = serde_json::from_slice(&e.body.payload).expect("batch");
            for r in b.records {
                *seen.entry(r.psn_no).or_insert(0) += 1;
            }
        }
    })
    .expect("read");
    seen
}

fn state(cfg: &Path) -> serde_json::Value {
    let out = xclear(&["state", "--config", cfg.to_str().expect("p")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("state JSON")
}

#[test]
fn an_import_killed_part_way_or_while_its_state_is_rebuilt_loads_everyone_once() {
    let nodes = two_nodes(None, None);
    let d = nodes.dir.path();
    let file = d.join("population.json");
    write_persons(&file);
    let data = d.join("data/611000");
    let segment = data.join(xclear::ledger::SEGMENT_FILE);

    // Killed once part of the file is in the ledger.
    let killed = kill_when(import(&nodes.home_cfg, &file), || {
        std::fs::metadata(&segment).map(|m| m.len() > 3_000_000).unwrap_or(false)
    });
    assert!(killed, "the import ended before it could be killed: make the file larger");
    let before = records_in_ledger(&data);
    assert!(!before.is_empty() && before.len() < PERSONS, "{} of {PERSONS} in before the kill", before.len());

    // Run again whole: only the rest is added.
    let again = import(&nodes.home_cfg, &file).wait_with_output().expect("import");
    assert_eq!(added(&again) as usize, PERSONS - before.len());
    let after = records_in_ledger(&data);
    assert_eq!(after.len(), PERSONS, "everyone in");
    assert!(after.values().all(|n| *n == 1), "a record appended twice");
    let held = state(&nodes.home_cfg);
    assert_eq!(held["state_position"], held["ledger_entries"]);

    // The state store deleted, and the rebuild killed part-way: the next
    // start finishes it, to the same rows.
    std::fs::remove_dir_all(data.join(xclear::node::STATE_DIR)).expect("delete the state");
    let state_dir = data.join(xclear::node::STATE_DIR);
    let rebuilding = Command::new(env!("CARGO_BIN_EXE_xclear"))
        .args(["state", "--config", nodes.home_cfg.to_str().expect("p")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    assert!(kill_when(rebuilding, || dir_bytes(&state_dir) > 2_000_000), "the rebuild ended before it was killed");
    let rebuilt = state(&nodes.home_cfg);
    assert_eq!(rebuilt["state_digest"], held["state_digest"]);
    assert_eq!(rebuilt["state_rows"], held["state_rows"]);

    // And the file once more: nothing added, nothing appended.
    let len = rebuilt["ledger_entries"].clone();
    let third = import(&nodes.home_cfg, &file).wait_with_output().expect("import");
    assert_eq!(added(&third), 0);
    assert_eq!(state(&nodes.home_cfg)["ledger_entries"], len);
}
