//! The node's TOML configuration, validated on load.
//!
//! ```toml
//! region = "611000"                   # the region this node serves
//! listen = "127.0.0.1:20061"
//! data_dir = "data/611000"            # ledger and indexes
//! key_file = "keys/611000.key"        # this node's ed25519 key (xclear keygen)
//! rules_dir = "clearing_rules"
//! metrics_listen = "127.0.0.1:9161"   # optional Prometheus endpoint
//! operator_key = "<64 hex>"           # the clearing operator (may ask for reports)
//! store_cache_mib = 1024              # memory for the ledger index's and state store's caches (default 1024)
//!
//! [tls]                               # every connection over TLS (xclear tls makes these)
//! ca = "keys/ca.crt"                  # the federation's CA
//! cert = "keys/611000.crt"            # this node's certificate: carries key_file's key
//! server_cert = "keys/611000.server.crt"  # what it serves (ECDSA P-256, for every client)
//! server_key = "keys/611000.server.pem"
//! # plaintext = true                  # instead of ca and cert: no TLS (warned in the log)
//!
//! [hospital_payment]                  # what the region pays its institutions each month
//! holdback_pct = "5"                  # quality holdback (质量保证金), 0–5% of the fund payment (default 0)
//! holdback_release = "next_month"     # or "annual": released at the annual clearing by assessment
//! audit_sample_pct = 5                # settlements drawn for a second review each month, 5–100 (default 5)
//!
//! [[peers]]                           # other regions' nodes
//! region = "110000"
//! endpoint = "https://127.0.0.1:20011"
//! public_key = "<64 hex>"
//!
//! [[hospitals]]                       # this region's hospitals
//! code = "H110105001"
//! level = 3
//! public_key = "<64 hex>"
//! designated = true                   # 定点
//! cross_region = true                 # open for out-of-region direct settlement
//! credit_rated = false                # a good credit rating halves its holdback
//! assessment_pct = 90                 # the year's assessment: share of the holdback released annually
//!
//! [console]                           # the agency's web console (off without this table)
//! listen = "127.0.0.1:21111"
//! [[console.viewers]]                 # `xclear console token --name NAME` prints one
//! name = "agency"
//! token_sha256 = "<64 hex>"
//!
//! [[pharmacies]]                      # designated pharmacies (定点药店): level 0, med_type 41 only
//! code = "P110105001"
//! public_key = "<64 hex>"
//!
//! [[admins]]                          # who may file registrations here
//! name = "agency"
//! public_key = "<64 hex>"
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use serde::Deserialize;

use crate::clearing::audit::{SamplePolicy, MIN_SAMPLE_PCT};
use crate::clearing::hospital::{HoldbackPolicy, Release};
use crate::crypto;
use crate::region::RegionCode;
use crate::settlement::HospitalLevel;
use crate::tls::{RawTls, TlsSetting};

/// Most peers, hospitals and admins one config may list.
pub const MAX_CONFIG_ENTRIES: usize = 100_000;

/// The node's two sled stores' page caches together, by default (MiB): at
/// ten million persons and settlements a smaller cache reads the disk for
/// most settlements' index and state rows (docs/PERFORMANCE.md).
pub const DEFAULT_STORE_CACHE_MIB: u64 = 1024;
/// The bounds of `store_cache_mib`.
pub const STORE_CACHE_MIB: std::ops::RangeInclusive<u64> = 16..=65_536;
pub use crate::api::config_error::{ConfigError, MAX_CONFIG_BYTES};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    region: String,
    listen: String,
    data_dir: PathBuf,
    key_file: PathBuf,
    rules_dir: PathBuf,
    #[serde(default)]
    metrics_listen: Option<String>,
    /// The national clearing operator's public key: only it may ask for reports.
    #[serde(default)]
    operator_key: Option<String>,
    #[serde(default)]
    store_cache_mib: Option<u64>,
    #[serde(default)]
    tls: Option<crate::tls::RawTls>,
    #[serde(default)]
    hospital_payment: Option<RawPayment>,
    #[serde(default)]
    peers: Vec<RawPeer>,
    #[serde(default)]
    hospitals: Vec<RawHospital>,
    #[serde(default)]
    pharmacies: Vec<RawPharmacy>,
    #[serde(default)]
    admins: Vec<RawAdmin>,
    #[serde(default)]
    console: Option<crate::console::config::RawConsole>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPayment {
    #[serde(default)]
    holdback_pct: Option<String>,
    #[serde(default)]
    holdback_release: Option<String>,
    #[serde(default)]
    audit_sample_pct: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPharmacy {
    code: String,
    public_key: String,
    #[serde(default = "yes")]
    designated: bool,
    #[serde(default = "yes")]
    cross_region: bool,
    #[serde(default)]
    credit_rated: bool,
    #[serde(default)]
    assessment_pct: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    region: String,
    endpoint: String,
    public_key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHospital {
    code: String,
    level: i64,
    public_key: String,
    #[serde(default = "yes")]
    designated: bool,
    #[serde(default = "yes")]
    cross_region: bool,
    #[serde(default)]
    credit_rated: bool,
    #[serde(default)]
    assessment_pct: Option<u32>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    name: String,
    public_key: String,
}

#[derive(Debug, Clone)]
pub struct Peer {
    pub region: RegionCode,
    pub endpoint: String,
    pub public_key: VerifyingKey,
}

/// What kind of designated institution (定点医药机构) settles at the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstitutionKind {
    Hospital,
    /// 定点药店: level 0, purchases (`med_type` 41) only.
    Pharmacy,
}

/// A hospital or pharmacy of this region (both settle through the node).
#[derive(Debug, Clone)]
pub struct Hospital {
    pub code: String,
    pub kind: InstitutionKind,
    pub level: HospitalLevel,
    pub public_key: VerifyingKey,
    pub designated: bool,
    pub cross_region: bool,
    /// A good credit rating: its holdback is halved.
    pub credit_rated: bool,
    /// The year's assessment score, 0–100%: how much of the year's holdback
    /// the annual clearing releases (absent: all of it).
    pub assessment: Option<crate::money::Ratio>,
}

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub region: RegionCode,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub key_file: PathBuf,
    pub rules_dir: PathBuf,
    pub metrics_listen: Option<SocketAddr>,
    pub operator_key: Option<VerifyingKey>,
    /// The ledger index's and the state store's page caches together.
    pub store_cache_bytes: u64,
    pub tls: TlsSetting,
    /// The quality holdback on institutions' monthly payments.
    pub holdback: HoldbackPolicy,
    /// The share of each month's settlements drawn for a second review.
    pub audit_sample: SamplePolicy,
    pub peers: BTreeMap<RegionCode, Peer>,
    pub hospitals: BTreeMap<String, Hospital>,
    pub admins: BTreeMap<String, VerifyingKey>,
    /// The agency's web console (off when absent).
    pub console: Option<crate::console::config::ConsoleConfig>,
}

impl NodeConfig {
    /// Loads a config file; relative paths are taken from the file's directory.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let file = path.display().to_string();
        let err = |key: &str, reason: String| ConfigError { file: file.clone(), key: key.to_string(), reason };
        let size = std::fs::metadata(path).map_err(|e| err("-", e.to_string()))?.len();
        if size > MAX_CONFIG_BYTES {
            return Err(err("-", format!("{size} bytes, over the limit of {MAX_CONFIG_BYTES}")));
        }
        let text = std::fs::read_to_string(path).map_err(|e| err("-", e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        NodeConfig::parse(&text, &file, base)
    }

    pub fn parse(text: &str, file: &str, base: &Path) -> Result<NodeConfig, ConfigError> {
        let err = |key: &str, reason: String| ConfigError { file: file.to_string(), key: key.to_string(), reason };
        let de = toml::Deserializer::parse(text).map_err(|e| err("-", crate::rules::toml_syntax(text, &e)))?;
        let raw: RawConfig = serde_path_to_error::deserialize(de)
            .map_err(|e| err(&e.path().to_string(), e.inner().message().to_string()))?;
        let region = RegionCode::parse(&raw.region).map_err(|e| err("region", e.to_string()))?;
        let listen = raw.listen.parse().map_err(|_| err("listen", format!("{:?} is not host:port", raw.listen)))?;
        let metrics_listen = raw
            .metrics_listen
            .as_deref()
            .map(|m| m.parse().map_err(|_| err("metrics_listen", format!("{m:?} is not host:port"))))
            .transpose()?;
        if raw.peers.len() + raw.hospitals.len() + raw.pharmacies.len() + raw.admins.len() > MAX_CONFIG_ENTRIES {
            return Err(err("-", format!("more than {MAX_CONFIG_ENTRIES} peers, hospitals, pharmacies and admins")));
        }
        let c = Checker { file };
        let operator_key = raw.operator_key.as_deref().map(|k| c.key("operator_key", k)).transpose()?;
        let cache_mib = raw.store_cache_mib.unwrap_or(DEFAULT_STORE_CACHE_MIB);
        if !STORE_CACHE_MIB.contains(&cache_mib) {
            return Err(c.err(
                "store_cache_mib",
                format!("{cache_mib} is outside {}..={}", STORE_CACHE_MIB.start(), STORE_CACHE_MIB.end()),
            ));
        }
        let tls = RawTls::setting(raw.tls.as_ref(), base).map_err(|(key, reason)| err(&key, reason))?;
        let peers = c.peers(&raw.peers, region, &tls)?;
        let (holdback, audit_sample) = c.payment(raw.hospital_payment.as_ref())?;
        let hospitals = c.institutions(&raw.hospitals, &raw.pharmacies)?;
        let mut admins = BTreeMap::new();
        for (i, a) in raw.admins.iter().enumerate() {
            let k = c.key(&format!("admins[{i}].public_key"), &a.public_key)?;
            if admins.insert(a.name.clone(), k).is_some() {
                return Err(c.err(&format!("admins[{i}].name"), format!("admin {} is listed twice", a.name)));
            }
        }
        let console = match &raw.console {
            None => None,
            Some(con) => Some(con.check().map_err(|(key, reason)| c.err(&key, reason))?),
        };
        let abs = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        Ok(NodeConfig {
            console,
            region,
            listen,
            data_dir: abs(raw.data_dir),
            key_file: abs(raw.key_file),
            rules_dir: abs(raw.rules_dir),
            metrics_listen,
            operator_key,
            store_cache_bytes: cache_mib * 1024 * 1024,
            tls,
            holdback,
            audit_sample,
            peers,
            hospitals,
            admins,
        })
    }
}

/// Names the file and the key of every defect it finds.
struct Checker<'a> {
    file: &'a str,
}

impl Checker<'_> {
    fn err(&self, key: &str, reason: String) -> ConfigError {
        ConfigError { file: self.file.to_string(), key: key.to_string(), reason }
    }

    fn key(&self, key: &str, text: &str) -> Result<VerifyingKey, ConfigError> {
        crypto::parse_public_key(text).map_err(|e| self.err(key, e.to_string()))
    }

    /// The holdback and the audit sample (defaults: no holdback, 5%).
    fn payment(&self, raw: Option<&RawPayment>) -> Result<(HoldbackPolicy, SamplePolicy), ConfigError> {
        let pct = match raw.and_then(|r| r.holdback_pct.as_deref()) {
            None => rust_decimal::Decimal::ZERO,
            Some(t) => crate::money::parse_bounded(t, 2)
                .map_err(|e| self.err("hospital_payment.holdback_pct", e.to_string()))?,
        };
        let release = match raw.and_then(|r| r.holdback_release.as_deref()) {
            None | Some("next_month") => Release::NextMonth,
            Some("annual") => Release::Annual,
            Some(other) => {
                return Err(
                    self.err("hospital_payment.holdback_release", format!("{other:?} is not next_month or annual"))
                )
            }
        };
        let holdback = HoldbackPolicy::new(pct, release).map_err(|e| self.err("hospital_payment.holdback_pct", e))?;
        let sample = SamplePolicy::new(raw.and_then(|r| r.audit_sample_pct).unwrap_or(MIN_SAMPLE_PCT))
            .map_err(|e| self.err("hospital_payment.audit_sample_pct", e))?;
        Ok((holdback, sample))
    }

    fn code(&self, key: &str, code: &str) -> Result<(), ConfigError> {
        let max = crate::api::convert::MAX_CODE_LEN;
        if code.is_empty() || code.len() > max {
            return Err(self.err(key, format!("must be 1–{max} characters")));
        }
        Ok(())
    }

    fn peers(
        &self,
        raw: &[RawPeer],
        own: RegionCode,
        tls: &TlsSetting,
    ) -> Result<BTreeMap<RegionCode, Peer>, ConfigError> {
        let mut peers = BTreeMap::new();
        for (i, p) in raw.iter().enumerate() {
            let r = RegionCode::parse(&p.region).map_err(|e| self.err(&format!("peers[{i}].region"), e.to_string()))?;
            if r == own {
                return Err(self.err(&format!("peers[{i}].region"), "a node is not its own peer".into()));
            }
            if !(p.endpoint.starts_with("http://") || p.endpoint.starts_with("https://")) {
                return Err(
                    self.err(&format!("peers[{i}].endpoint"), format!("{:?} is not an http(s) URL", p.endpoint))
                );
            }
            crate::tls::check_url(&p.endpoint, tls).map_err(|e| self.err(&format!("peers[{i}].endpoint"), e))?;
            let public_key = self.key(&format!("peers[{i}].public_key"), &p.public_key)?;
            if peers.insert(r, Peer { region: r, endpoint: p.endpoint.clone(), public_key }).is_some() {
                return Err(self.err(&format!("peers[{i}].region"), format!("region {r} is listed twice")));
            }
        }
        Ok(peers)
    }

    /// An assessment score of 0–100%.
    fn assessment(&self, key: &str, pct: Option<u32>) -> Result<Option<crate::money::Ratio>, ConfigError> {
        let Some(pct) = pct else { return Ok(None) };
        if pct > 100 {
            return Err(self.err(key, format!("{pct}% is outside 0–100%")));
        }
        crate::money::Ratio::from_percent(pct.into()).map(Some).ok_or_else(|| self.err(key, "not a score".into()))
    }

    /// Hospitals and pharmacies, by code (one code names one institution).
    fn institutions(
        &self,
        hospitals: &[RawHospital],
        pharmacies: &[RawPharmacy],
    ) -> Result<BTreeMap<String, Hospital>, ConfigError> {
        let mut all = BTreeMap::new();
        for (i, h) in hospitals.iter().enumerate() {
            self.code(&format!("hospitals[{i}].code"), &h.code)?;
            let level = HospitalLevel::new(h.level).ok_or_else(|| {
                self.err(&format!("hospitals[{i}].level"), format!("level {} is outside 0–3", h.level))
            })?;
            let hospital = Hospital {
                code: h.code.clone(),
                kind: InstitutionKind::Hospital,
                level,
                public_key: self.key(&format!("hospitals[{i}].public_key"), &h.public_key)?,
                designated: h.designated,
                cross_region: h.cross_region,
                credit_rated: h.credit_rated,
                assessment: self.assessment(&format!("hospitals[{i}].assessment_pct"), h.assessment_pct)?,
            };
            if all.insert(h.code.clone(), hospital).is_some() {
                return Err(self.err(&format!("hospitals[{i}].code"), format!("hospital {} is listed twice", h.code)));
            }
        }
        for (i, p) in pharmacies.iter().enumerate() {
            self.code(&format!("pharmacies[{i}].code"), &p.code)?;
            let pharmacy = Hospital {
                code: p.code.clone(),
                kind: InstitutionKind::Pharmacy,
                level: HospitalLevel::TOWNSHIP,
                public_key: self.key(&format!("pharmacies[{i}].public_key"), &p.public_key)?,
                designated: p.designated,
                cross_region: p.cross_region,
                credit_rated: p.credit_rated,
                assessment: self.assessment(&format!("pharmacies[{i}].assessment_pct"), p.assessment_pct)?,
            };
            if all.insert(p.code.clone(), pharmacy).is_some() {
                return Err(self.err(
                    &format!("pharmacies[{i}].code"),
                    format!("{} is listed twice among hospitals and pharmacies", p.code),
                ));
            }
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TLS: &str = "ca = \"ca.crt\"\ncert = \"n.crt\"\nserver_cert = \"s.crt\"\nserver_key = \"s.key\"";
    const KEY: &str = "707ed55e6f04d08b7b0562d86455262847d1bc00e9b7120c798fb8e6a48bb44f";

    fn base() -> String {
        format!(
            "region = \"611000\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"d\"\nkey_file = \"k\"\nrules_dir = \"r\"\n\
             [tls]\nplaintext = true\n\
             [[peers]]\nregion = \"110000\"\nendpoint = \"http://127.0.0.1:1\"\npublic_key = \"{KEY}\"\n\
             [[hospitals]]\ncode = \"H1\"\nlevel = 3\npublic_key = \"{KEY}\"\n"
        )
    }

    #[test]
    fn parses_and_resolves_paths() {
        let c = NodeConfig::parse(&base(), "n.toml", Path::new("/etc/xclear")).unwrap();
        assert_eq!(c.region.to_string(), "611000");
        assert_eq!(c.data_dir, PathBuf::from("/etc/xclear/d"));
        assert!(c.hospitals["H1"].designated && c.hospitals["H1"].cross_region);
        assert_eq!(c.peers.len(), 1);
        assert_eq!(c.store_cache_bytes, DEFAULT_STORE_CACHE_MIB << 20);
        let small = base().replace("rules_dir = \"r\"\n", "rules_dir = \"r\"\nstore_cache_mib = 64\n");
        assert_eq!(NodeConfig::parse(&small, "n.toml", Path::new(".")).unwrap().store_cache_bytes, 64 << 20);
        assert_eq!(c.holdback.rate_for(false), crate::money::Ratio::ZERO, "no holdback unless configured");
        let paying = base().replace(
            "[[peers]]",
            "[hospital_payment]\nholdback_pct = \"5\"\nholdback_release = \"annual\"\naudit_sample_pct = 10\n[[peers]]",
        ) + "credit_rated = true\nassessment_pct = 90\n";
        let c = NodeConfig::parse(&paying, "n.toml", Path::new(".")).unwrap();
        assert_eq!(
            (c.holdback.rate_for(false).to_string(), c.holdback.release()),
            ("0.05".to_string(), Release::Annual)
        );
        assert_eq!(c.audit_sample.size(100), 10);
        assert!(c.hospitals["H1"].credit_rated);
        assert_eq!(c.hospitals["H1"].assessment.map(|r| r.to_string()), Some("0.90".to_string()));
        let with_pharmacy = base() + &format!("[[pharmacies]]\ncode = \"P1\"\npublic_key = \"{KEY}\"\n");
        let c = NodeConfig::parse(&with_pharmacy, "n.toml", Path::new(".")).unwrap();
        assert_eq!(
            (c.hospitals["P1"].kind, c.hospitals["P1"].level),
            (InstitutionKind::Pharmacy, HospitalLevel::TOWNSHIP)
        );
    }

    #[test]
    fn refuses_defects_naming_the_key() {
        let cases = [
            (base().replace("611000", "991000"), "region"),
            (base().replace("level = 3", "level = 5"), "hospitals[0].level"),
            (base().replace("http://127.0.0.1:1", "ftp://x"), "peers[0].endpoint"),
            (
                base().replace(&format!("public_key = \"{KEY}\"\n[[hospitals]]"), "public_key = \"zz\"\n[[hospitals]]"),
                "peers[0].public_key",
            ),
            (base().replace("listen = \"127.0.0.1:0\"", "listen = \"nowhere\""), "listen"),
            (base() + "colour = 1\n", "hospitals[0].colour"),
            (base().replace("\"110000\"", "\"611000\""), "peers[0].region"),
            (base().replace("[tls]\nplaintext = true\n", ""), "tls"),
            (base().replace("plaintext = true", TLS), "peers[0].endpoint"),
            (base().replace("plaintext = true", "ca = \"ca.crt\""), "tls.cert"),
            (base().replace("plaintext = true", "ca = \"ca.crt\"\ncert = \"n.crt\""), "tls.server_cert"),
            (base().replace("plaintext = true", "plaintext = true\nca = \"ca.crt\""), "tls.plaintext"),
            (base().replace("http://127.0.0.1:1", "https://127.0.0.1:1"), "peers[0].endpoint"),
            (
                base().replace("[[peers]]", "[hospital_payment]\nholdback_pct = \"5.5\"\n[[peers]]"),
                "hospital_payment.holdback_pct",
            ),
            (
                base().replace("[[peers]]", "[hospital_payment]\nholdback_pct = \"-1\"\n[[peers]]"),
                "hospital_payment.holdback_pct",
            ),
            (
                base().replace("[[peers]]", "[hospital_payment]\nholdback_release = \"never\"\n[[peers]]"),
                "hospital_payment.holdback_release",
            ),
            (
                base().replace("[[peers]]", "[hospital_payment]\naudit_sample_pct = 4\n[[peers]]"),
                "hospital_payment.audit_sample_pct",
            ),
            (base() + &format!("[[pharmacies]]\ncode = \"H1\"\npublic_key = \"{KEY}\"\n"), "pharmacies[0].code"),
            (base() + "assessment_pct = 101\n", "hospitals[0].assessment_pct"),
            (base().replace("rules_dir = \"r\"\n", "rules_dir = \"r\"\nstore_cache_mib = 8\n"), "store_cache_mib"),
            (base().replace("rules_dir = \"r\"\n", "rules_dir = \"r\"\nstore_cache_mib = -1\n"), "store_cache_mib"),
        ];
        for (text, key) in cases {
            let e = NodeConfig::parse(&text, "n.toml", Path::new(".")).unwrap_err();
            assert_eq!(e.key, key, "{e}");
        }
    }
}
