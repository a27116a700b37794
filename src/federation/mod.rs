//! Generated federations, for the demo, the simulation, the benchmark and
//! the tests: one key scheme ([`key`]), one builder of node configs
//! ([`NodePlan`]), and the in-process network ([`LocalNetwork`]) that carries
//! both the nodes' claims and the operator's requests. It sits above both
//! [`crate::node`] and [`crate::operator`], which do not know each other.

mod network;

use std::path::PathBuf;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

pub use network::LocalNetwork;

use crate::node::config::{Hospital, InstitutionKind, NodeConfig, Peer};
use crate::region::RegionCode;
use crate::settlement::HospitalLevel;
use crate::tls::{self, DevCa, Tls, TlsFiles, TlsSetting};

/// The key of `tag` (a region code, an institution's code, an admin's name,
/// "operator") in the generated federation `federation`: SHA-256 of both.
/// Deterministic and public: never for a real node (`xclear keygen` is).
pub fn key(federation: &str, tag: &str) -> SigningKey {
    let seed: [u8; 32] = Sha256::digest(format!("xclear-federation/{federation}/{tag}").as_bytes()).into();
    SigningKey::from_bytes(&seed)
}

/// The generated federation's certificate authority (its key is [`key`]'s
/// "ca"), issuing the TLS identities of its nodes, operator and clients.
pub struct FederationCa {
    ca: DevCa,
}

impl FederationCa {
    pub fn new(federation: &str) -> Result<FederationCa, String> {
        let ca = DevCa::new(federation, &key(federation, "ca")).map_err(|e| e.to_string())?;
        Ok(FederationCa { ca })
    }

    pub fn cert_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    pub fn dev_ca(&self) -> &DevCa {
        &self.ca
    }

    /// A node's identity: its region's name, and loopback's, as servers on
    /// 127.0.0.1 are reached by address.
    pub fn node(&self, key: &SigningKey, region: RegionCode) -> Result<Arc<Tls>, String> {
        let names = [tls::node_name(&region.to_string()), "127.0.0.1".to_string(), "localhost".to_string()];
        self.ca.identity(key, &names, true).map_err(|e| e.to_string())
    }

    /// The operator's identity (it serves on loopback too).
    pub fn operator(&self, key: &SigningKey) -> Result<Arc<Tls>, String> {
        let names = [tls::OPERATOR_NAME.to_string(), "127.0.0.1".to_string(), "localhost".to_string()];
        self.ca.identity(key, &names, true).map_err(|e| e.to_string())
    }

    /// A client's identity: an institution's or an admin's, by its code or
    /// name.
    pub fn client(&self, key: &SigningKey, tag: &str) -> Result<Arc<Tls>, String> {
        self.ca.identity(key, &[tls::client_name(tag)], false).map_err(|e| e.to_string())
    }
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
    /// Whether its connections are TLS (the default), with certificates of
    /// the federation's [`FederationCa`]; `false`: plaintext, `http://`.
    pub tls: bool,
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
            tls: true,
        }
    }

    /// Plaintext connections (`http://` endpoints), for comparisons.
    pub fn plaintext(mut self) -> NodePlan {
        self.tls = false;
        self
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
            store_cache_bytes: crate::node::config::DEFAULT_STORE_CACHE_MIB * 1024 * 1024,
            // Where `xclear tls` would write them; in process, the identity
            // comes from `FederationCa::node` instead.
            holdback: crate::clearing::hospital::HoldbackPolicy::NONE,
            audit_sample: crate::clearing::audit::SamplePolicy::minimum(),
            tls: if self.tls {
                TlsSetting::Files(TlsFiles {
                    ca: self.data_dir.join("ca.crt"),
                    cert: self.data_dir.join("node.crt"),
                    server: Some((self.data_dir.join("node.server.crt"), self.data_dir.join("node.server.pem"))),
                })
            } else {
                TlsSetting::Plaintext
            },
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
                        credit_rated: false,
                        assessment: None,
                    };
                    (i.code.clone(), h)
                })
                .collect(),
            admins: self.admins.iter().map(|a| (a.clone(), public(a))).collect(),
            console: None,
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
