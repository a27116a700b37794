//! Generated federations, for the demo, the simulation, the benchmark and
//! the tests: one key scheme ([`key`]), one builder of node configs
//! ([`NodePlan`]), and the in-process network ([`LocalNetwork`]) that carries
//! both the nodes' claims and the operator's requests. It sits above both
//! [`crate::node`] and [`crate::operator`], which do not know each other.

mod network;

use std::path::PathBuf;

use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

pub use network::LocalNetwork;

use crate::node::config::{Hospital, InstitutionKind, NodeConfig, Peer};
use crate::region::RegionCode;
use crate::settlement::HospitalLevel;

/// The key of `tag` (a region code, an institution's code, an admin's name,
/// "operator") in the generated federation `federation`: SHA-256 of both.
/// Deterministic and public: never for a real node (`xclear keygen` is).
pub fn key(federation: &str, tag: &str) -> SigningKey {
    let seed: [u8; 32] = Sha256::digest(format!("xclear-federation/{federation}/{tag}").as_bytes()).into();
    SigningKey::from_bytes(&seed)
}

/// A designated institution of a generated node, open for out-of-region care.
#[derive(Debug, Clone)]
pub struct Institution {
    pub code: String,
    pub kind: InstitutionKind,
    pub level: HospitalLevel,
    pub designated: bool,
    pub cross_region: bool,
}

impl Institution {
    /// A hospital at `level` (0–3; a level outside is taken as 3).
    pub fn hospital(code: impl Into<String>, level: u8) -> Institution {
        Institution {
            code: code.into(),
            kind: InstitutionKind::Hospital,
            level: HospitalLevel::new(i64::from(level)).unwrap_or(HospitalLevel::TOP),
            designated: true,
            cross_region: true,
        }
    }

    /// A designated pharmacy (level 0).
    pub fn pharmacy(code: impl Into<String>) -> Institution {
        Institution {
            code: code.into(),
            kind: InstitutionKind::Pharmacy,
            level: HospitalLevel::TOWNSHIP,
            designated: true,
            cross_region: true,
        }
    }
}

/// One node of a generated federation: every key from [`key`] in the
/// federation's name, every peer reachable at its endpoint.
#[derive(Debug, Clone)]
pub struct NodePlan {
    pub federation: String,
    pub region: RegionCode,
    /// (region, endpoint) of every other node.
    pub peers: Vec<(RegionCode, String)>,
    pub institutions: Vec<Institution>,
    pub admins: Vec<String>,
    /// Whether the federation's operator (key "operator") may ask for reports.
    pub operator: bool,
    pub data_dir: PathBuf,
    pub rules_dir: PathBuf,
}

impl NodePlan {
    /// A node of `region` with one admin, `agency`, answering the operator,
    /// with no peers or institutions yet.
    pub fn new(federation: &str, region: RegionCode, data_dir: PathBuf, rules_dir: PathBuf) -> NodePlan {
        NodePlan {
            federation: federation.to_string(),
            region,
            peers: Vec::new(),
            institutions: Vec::new(),
            admins: vec!["agency".to_string()],
            operator: true,
            data_dir,
            rules_dir,
        }
    }

    pub fn with_peers(mut self, peers: impl IntoIterator<Item = (RegionCode, String)>) -> NodePlan {
        self.peers.extend(peers.into_iter().filter(|(r, _)| *r != self.region));
        self
    }

    pub fn with(mut self, institutions: impl IntoIterator<Item = Institution>) -> NodePlan {
        self.institutions.extend(institutions);
        self
    }

    /// The key of `tag` in this plan's federation.
    pub fn key(&self, tag: &str) -> SigningKey {
        key(&self.federation, tag)
    }

    /// The node's own signing key.
    pub fn node_key(&self) -> SigningKey {
        self.key(&self.region.to_string())
    }

    pub fn config(&self) -> NodeConfig {
        let public = |tag: &str| self.key(tag).verifying_key();
        NodeConfig {
            region: self.region,
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: self.data_dir.clone(),
            key_file: self.data_dir.join("generated.key"),
            rules_dir: self.rules_dir.clone(),
            metrics_listen: None,
            operator_key: self.operator.then(|| public("operator")),
            peers: self
                .peers
                .iter()
                .map(|(r, endpoint)| {
                    (*r, Peer { region: *r, endpoint: endpoint.clone(), public_key: public(&r.to_string()) })
                })
                .collect(),
            hospitals: self
                .institutions
                .iter()
                .map(|i| {
                    let h = Hospital {
                        code: i.code.clone(),
                        kind: i.kind,
                        level: i.level,
                        public_key: public(&i.code),
                        designated: i.designated,
                        cross_region: i.cross_region,
                    };
                    (i.code.clone(), h)
                })
                .collect(),
            admins: self.admins.iter().map(|a| (a.clone(), public(a))).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_per_federation_and_tag_and_configs_name_them() {
        assert_eq!(key("a", "611000").verifying_key(), key("a", "611000").verifying_key());
        assert_ne!(key("a", "611000").verifying_key(), key("b", "611000").verifying_key());
        assert_ne!(key("a", "611000").verifying_key(), key("a", "110000").verifying_key());
        let bj = RegionCode::parse("110000").expect("region");
        let sl = RegionCode::parse("611000").expect("region");
        let plan = NodePlan::new("t", bj, PathBuf::from("d"), PathBuf::from("r"))
            .with_peers([(sl, "http://x".to_string()), (bj, "http://self".to_string())])
            .with([Institution::hospital("H1", 2), Institution::pharmacy("P1")]);
        let c = plan.config();
        assert_eq!(c.peers.len(), 1, "a node is not its own peer");
        assert_eq!(c.peers[&sl].public_key, key("t", "611000").verifying_key());
        assert_eq!(c.hospitals["P1"].kind, InstitutionKind::Pharmacy);
        assert_eq!(c.hospitals["H1"].public_key, key("t", "H1").verifying_key());
        assert_eq!(c.operator_key, Some(key("t", "operator").verifying_key()));
        assert_eq!(c.admins["agency"], key("t", "agency").verifying_key());
    }
}
