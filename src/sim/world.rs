//! The simulated federation: four home regions (one of them the XPCC 4th
//! division, corps–local partner of 伊犁), Beijing as a treatment-only
//! region, their hospitals, the operator — all in one process over the
//! simulated network, each node with its own ledger on disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;

use super::network::SimNetwork;
use super::Crash;
use crate::clearing::hospital::{HoldbackPolicy, Release};
use crate::clock::{Clock, ManualClock};
use crate::federation::{Institution, NodePlan};
use crate::ledger::{INDEX_DIR, SEGMENT_FILE};
use crate::node::STATE_DIR;
use crate::node::{Node, NodeConfig};
use crate::operator::Operator;
use crate::region::RegionCode;
use crate::rules::RuleBook;

/// (region, insutype of its insured persons; empty: no insured persons here).
pub(crate) const REGIONS: [(&str, &str); 5] =
    [("611000", "390"), ("654000", "390"), ("660400", "390"), ("440600", "310"), ("110000", "")];
/// Hospitals: (code, region).
pub(crate) const HOSPITALS: [(&str, &str); 5] = [
    ("H110000A", "110000"),
    ("H110000B", "110000"),
    ("H654000", "654000"),
    ("H660400", "660400"),
    ("H440600", "440600"),
];
/// Designated pharmacies (level 0, purchases only): (code, region).
pub(crate) const PHARMACIES: [(&str, &str); 2] = [("P110000", "110000"), ("P654000", "654000")];
pub(crate) const AGENCY: &str = "agency";

/// The simulation's generated federation (its keys: [`crate::federation::key`]).
const FEDERATION: &str = "sim";

/// The simulation's key of a name.
pub(crate) fn key(name: &str) -> SigningKey {
    crate::federation::key(FEDERATION, name)
}

pub(crate) fn code(s: &str) -> RegionCode {
    RegionCode::parse(s).unwrap_or_else(|e| panic!("simulation region {s}: {e}"))
}

pub(crate) struct World {
    pub dir: PathBuf,
    pub clock: Arc<ManualClock>,
    pub rules: Arc<RuleBook>,
    pub net: Arc<SimNetwork>,
    pub nodes: BTreeMap<RegionCode, Arc<Node>>,
    configs: BTreeMap<RegionCode, NodeConfig>,
    /// How far each node's clock is behind the operator's (ms, ≤ 0).
    pub skews: BTreeMap<RegionCode, i64>,
    pub operator: Operator,
}

fn config(dir: &Path, region: &str, rules_dir: &Path) -> NodeConfig {
    let hospitals = HOSPITALS.iter().filter(|(_, r)| *r == region).map(|(h, _)| Institution::hospital(*h, 3));
    let pharmacies = PHARMACIES.iter().filter(|(_, r)| *r == region).map(|(p, _)| Institution::pharmacy(*p));
    let mut c = NodePlan::new(FEDERATION, code(region), dir.join("nodes").join(region), rules_dir.to_path_buf())
        .with_peers(REGIONS.iter().map(|(p, _)| (code(p), "sim".to_string())))
        .with(hospitals.chain(pharmacies))
        .config();
    // Every region holds 5% of its institutions' fund payments for a month.
    if let Ok(h) = HoldbackPolicy::new(rust_decimal::Decimal::from(5), Release::NextMonth) {
        c.holdback = h;
    }
    c
}

impl World {
    pub(crate) fn build(
        dir: &Path,
        rules: Arc<RuleBook>,
        clock: Arc<ManualClock>,
        net: Arc<SimNetwork>,
        skews: BTreeMap<RegionCode, i64>,
    ) -> Result<World, String> {
        let rules_dir = dir.join("rules-unused");
        let mut nodes = BTreeMap::new();
        let mut configs = BTreeMap::new();
        for (r, _) in REGIONS {
            let cfg = config(dir, r, &rules_dir);
            let skew = skews.get(&code(r)).copied().unwrap_or(0);
            let node = open_node(cfg.clone(), &rules, &clock, skew, &net)?;
            net.attach(&node);
            nodes.insert(code(r), node);
            configs.insert(code(r), cfg);
        }
        let node_keys = REGIONS.iter().map(|(r, _)| (code(r), key(r).verifying_key())).collect();
        let c: Arc<dyn Clock> = clock.clone();
        let operator = Operator::open(
            &dir.join("operator"),
            key("operator"),
            c,
            node_keys,
            net.clone(),
            rules.pairs().clone(),
            BTreeMap::new(),
        )
        .map_err(|e| format!("operator: {e}"))?;
        Ok(World { dir: dir.to_path_buf(), clock, rules, net, nodes, configs, skews, operator })
    }

    pub(crate) fn node(&self, region: RegionCode) -> Result<&Arc<Node>, String> {
        self.nodes.get(&region).ok_or_else(|| format!("no node {region}"))
    }

    pub(crate) fn data_dir(&self, region: RegionCode) -> PathBuf {
        self.dir.join("nodes").join(region.to_string())
    }

    /// Stops a node: off the network, and dropped once its last handle is
    /// (its ledger closed as a process exit leaves it: every acknowledged
    /// entry on disk).
    async fn stop(&mut self, region: RegionCode) -> Result<(), String> {
        self.net.detach(region);
        let mut node = Some(self.nodes.remove(&region).ok_or_else(|| format!("no node {region}"))?);
        // Wait out any straggling task that still holds it.
        for _ in 0..1000 {
            match node.take().map(Arc::try_unwrap) {
                Some(Ok(n)) => {
                    drop(n);
                    return Ok(());
                }
                Some(Err(still)) => {
                    node = Some(still);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                None => break,
            }
        }
        Err(format!("node {region} is still in use and cannot be stopped"))
    }

    /// Verifies a stopped node's ledger on disk.
    fn verify_stopped(&self, region: RegionCode) -> Result<u64, String> {
        crate::ledger::verify::verify_dir(&self.data_dir(region), Some(&key(&region.to_string()).verifying_key()))
            .map(|r| r.entries)
            .map_err(|e| format!("ledger of {region} does not verify: {e}"))
    }

    /// Stops a node, damages what a crash may damage, checks the ledger on
    /// disk, and opens it again.
    pub(crate) async fn crash(&mut self, region: RegionCode, how: Crash, garbage: &[u8]) -> Result<(), String> {
        self.stop(region).await?;
        let dir = self.data_dir(region);
        match how {
            Crash::Clean => {}
            Crash::TornTail => {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(dir.join(SEGMENT_FILE))
                    .map_err(|e| format!("{region}: {e}"))?;
                f.write_all(garbage).map_err(|e| format!("{region}: {e}"))?;
            }
            Crash::LostIndex => {
                std::fs::remove_dir_all(dir.join(INDEX_DIR)).map_err(|e| format!("{region}: {e}"))?;
            }
            Crash::LostState => {
                std::fs::remove_dir_all(dir.join(STATE_DIR)).map_err(|e| format!("{region}: {e}"))?;
            }
            Crash::StaleState => {
                let earlier = dir.join(STALE_STATE_DIR);
                if earlier.exists() {
                    std::fs::remove_dir_all(dir.join(STATE_DIR)).map_err(|e| format!("{region}: {e}"))?;
                    std::fs::rename(&earlier, dir.join(STATE_DIR)).map_err(|e| format!("{region}: {e}"))?;
                }
            }
        }
        // The state as this stop leaves it, for a later stale-state crash.
        if how != Crash::StaleState {
            copy_dir(&dir.join(STATE_DIR), &dir.join(STALE_STATE_DIR)).map_err(|e| format!("{region}: {e}"))?;
        }
        self.verify_stopped(region)?;
        let cfg = self.configs.get(&region).cloned().ok_or_else(|| format!("no config {region}"))?;
        let skew = self.skews.get(&region).copied().unwrap_or(0);
        let node = open_node(cfg, &self.rules, &self.clock, skew, &self.net)?;
        self.net.attach(&node);
        self.nodes.insert(region, node);
        Ok(())
    }

    /// Stops every node and the operator, and verifies every ledger on disk.
    pub(crate) async fn shut_down_and_verify(mut self) -> Result<u64, String> {
        let regions: Vec<RegionCode> = self.nodes.keys().copied().collect();
        let mut entries = 0;
        for r in regions {
            self.stop(r).await?;
            entries += self.verify_stopped(r)?;
        }
        let op_dir = self.dir.join("operator");
        drop(self.operator);
        let report = crate::ledger::verify::verify_dir(&op_dir, Some(&key("operator").verifying_key()))
            .map_err(|e| format!("operator ledger: {e}"))?;
        Ok(entries + report.entries)
    }
}

/// A copy of a node's state store as an earlier stop left it.
const STALE_STATE_DIR: &str = "state.earlier";

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    if !from.exists() {
        return Ok(());
    }
    if to.exists() {
        std::fs::remove_dir_all(to)?;
    }
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()))?;
        } else {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

fn open_node(
    cfg: NodeConfig,
    rules: &Arc<RuleBook>,
    clock: &Arc<ManualClock>,
    skew_ms: i64,
    net: &Arc<SimNetwork>,
) -> Result<Arc<Node>, String> {
    let region = cfg.region;
    let base: Arc<dyn Clock> = clock.clone();
    let c: Arc<dyn Clock> = Arc::new(crate::clock::OffsetClock::new(base, skew_ms));
    let node = Node::open(cfg, key(&region.to_string()), Arc::clone(rules), c, net.clone())
        .map_err(|e| format!("open {region}: {e}"))?
        .with_claim_backoff(Duration::ZERO);
    Ok(Arc::new(node))
}
