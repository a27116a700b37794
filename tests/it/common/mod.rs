//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub(crate) mod fixtures;
pub(crate) mod procs;

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::{json, Value};

pub(crate) fn rules_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clearing_rules")
}

pub(crate) fn rules() -> xclear::rules::RuleBook {
    xclear::rules::RuleBook::load(&rules_dir()).expect("reference rules load")
}

/// The public worked-example bill (REFERENCE_POLICIES.md §4), 商洛 resident in Beijing.
pub(crate) fn example_case() -> Value {
    json!({
        "person": {"psn_no": "P0001", "insuplc_admdvs": "611000", "insutype": "390",
                   "retired": false, "special_group": null,
                   "contribution_years": {"611000": 12}},
        "registration": {"kind": "long_term_resident", "target_admdvs": "110000",
                         "begndate": "2026-01-01", "enddate": null},
        "encounter": {"mdtrtarea_admvs": "110105", "hosp_lv": 3, "setl_date": "2026-03-10",
                      "items": [{"code": "XC001", "qty": "1", "price": "3000.00"},
                                {"code": "FW001", "qty": "10", "price": "150.00"},
                                {"code": "XB001", "qty": "1", "price": "10000.00"},
                                {"code": "XA001", "qty": "1", "price": "35500.00"}]},
        "counters": {"hifp_paid": "0.00", "ci_base": "0.00", "ci_paid": "0.00", "maf_paid": "0.00"}
    })
}

/// Runs `xclear calc --case -` with the given standard input.
pub(crate) fn run_calc_cli(stdin: &str) -> Output {
    run_calc_cli_with_rules(stdin, &rules_dir())
}

pub(crate) fn run_calc_cli_with_rules(stdin: &str, rules: &std::path::Path) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_xclear"))
        .args(["calc", "--rules"])
        .arg(rules)
        .args(["--case", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn xclear");
    // A child that refuses its rules exits before reading: a broken pipe then is expected.
    match child.stdin.take().expect("stdin").write_all(stdin.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("write stdin: {e}"),
        _ => {}
    }
    child.wait_with_output().expect("xclear output")
}

pub(crate) fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// The tests' generated federation: every key from [`key`].
pub(crate) const FEDERATION: &str = "test";

/// The tests' key of a tag (a region, an institution's code, "agency",
/// "operator"), in the one scheme of generated federations.
pub(crate) fn key(tag: &str) -> ed25519_dalek::SigningKey {
    xclear::federation::key(FEDERATION, tag)
}

/// Nodes of `regions` in one process over `net`, each with its ledger under
/// `dir/<region>`, the others as peers, designated cross-region institutions
/// (hospitals `H<region>` at level 3 and `H<region>-2` at level 2, pharmacy
/// `P<region>`), an `agency` admin and the operator.
pub(crate) fn in_process_nodes(
    dir: &std::path::Path,
    regions: &[&'static str],
    clock: std::sync::Arc<dyn xclear::clock::Clock>,
    net: &std::sync::Arc<xclear::federation::LocalNetwork>,
) -> std::collections::BTreeMap<&'static str, std::sync::Arc<xclear::node::Node>> {
    in_process_nodes_with(dir, regions, clock, net, |_| {})
}

/// [`in_process_nodes`], each node's config changed by `tweak` first.
pub(crate) fn in_process_nodes_with(
    dir: &std::path::Path,
    regions: &[&'static str],
    clock: std::sync::Arc<dyn xclear::clock::Clock>,
    net: &std::sync::Arc<xclear::federation::LocalNetwork>,
    tweak: impl Fn(&mut xclear::node::NodeConfig),
) -> std::collections::BTreeMap<&'static str, std::sync::Arc<xclear::node::Node>> {
    use xclear::federation::{Institution, NodePlan};
    let code = |s: &str| xclear::region::RegionCode::parse(s).expect("region");
    let rules = std::sync::Arc::new(rules());
    let peers: Vec<_> = regions.iter().map(|p| (code(p), "in-process".to_string())).collect();
    let mut nodes = std::collections::BTreeMap::new();
    for &r in regions {
        let plan = NodePlan::new(FEDERATION, code(r), dir.join(r), rules_dir()).with_peers(peers.clone()).with([
            Institution::hospital(format!("H{r}"), 3),
            Institution::hospital(format!("H{r}-2"), 2),
            Institution::pharmacy(format!("P{r}")),
        ]);
        let mut config = plan.config();
        tweak(&mut config);
        let node = xclear::node::Node::open(
            config,
            plan.node_key(),
            std::sync::Arc::clone(&rules),
            clock.clone(),
            net.clone(),
        );
        let node = std::sync::Arc::new(node.expect("open"));
        net.attach(&node);
        nodes.insert(r, node);
    }
    nodes
}
