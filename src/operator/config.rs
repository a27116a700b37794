//! The operator's TOML configuration.
//!
//! ```toml
//! data_dir = "operator-data"          # its ledger, and statements/ (files of each closed month)
//! listen = "127.0.0.1:20070"          # `xclear operator` serves here (default)
//! key_file = "keys/operator.key"
//! rules_dir = "../clearing_rules"     # for the corps–local pairs
//! warning_pct = 90                    # advance-fund warning threshold (default 90)
//! close_grace_minutes = 60            # a month closes this long after its end (default 60)
//!
//! [tls]                               # as a node's: ca and cert (for key_file), or plaintext = true
//! ca = "keys/ca.crt"
//! cert = "keys/operator.crt"
//! server_cert = "keys/operator.server.crt"
//! server_key = "keys/operator.server.pem"
//!
//! [[nodes]]                           # every region's node
//! region = "611000"
//! endpoint = "https://127.0.0.1:20061"
//! public_key = "<64 hex>"
//!
//! [[quotas]]                          # advance-fund quota per home region (optional)
//! region = "611000"
//! amount = "1000000.00"
//!
//! [console]                           # the web console (off without this table)
//! listen = "127.0.0.1:20080"
//! [[console.viewers]]                 # who may look: a name and the SHA-256 of its token
//! name = "ops"
//! token_sha256 = "<64 hex>"           # `xclear console token --name ops` makes one
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use serde::Deserialize;

use crate::api::config_error::{ConfigError, MAX_CONFIG_BYTES};
use crate::crypto;
use crate::money::Amount;
use crate::region::RegionCode;

/// The longest grace after a month's end a config may set.
pub const MAX_CLOSE_GRACE_MINUTES: u64 = 10 * 24 * 60;

/// Where `xclear operator` listens unless the config says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:20070";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    data_dir: PathBuf,
    key_file: PathBuf,
    rules_dir: PathBuf,
    #[serde(default)]
    listen: Option<String>,
    #[serde(default)]
    warning_pct: Option<u32>,
    #[serde(default)]
    close_grace_minutes: Option<u64>,
    #[serde(default)]
    tls: Option<crate::tls::RawTls>,
    #[serde(default)]
    nodes: Vec<RawNode>,
    #[serde(default)]
    quotas: Vec<RawQuota>,
    #[serde(default)]
    console: Option<crate::console::config::RawConsole>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    region: String,
    endpoint: String,
    public_key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuota {
    region: String,
    amount: String,
}

#[derive(Debug, Clone)]
pub struct OperatorConfig {
    pub data_dir: PathBuf,
    pub key_file: PathBuf,
    pub rules_dir: PathBuf,
    pub listen: std::net::SocketAddr,
    pub warning_pct: u32,
    /// How long after a month's end (Asia/Shanghai) it may be closed.
    pub close_grace: std::time::Duration,
    pub tls: crate::tls::TlsSetting,
    pub nodes: BTreeMap<RegionCode, (String, VerifyingKey)>,
    pub quotas: BTreeMap<RegionCode, Amount>,
    /// The web console: where it listens and who may look (off when absent).
    pub console: Option<ConsoleConfig>,
}

pub use crate::console::config::ConsoleConfig;

impl OperatorConfig {
    pub fn load(path: &Path) -> Result<OperatorConfig, ConfigError> {
        let file = path.display().to_string();
        let err = |key: &str, reason: String| ConfigError { file: file.clone(), key: key.to_string(), reason };
        let size = std::fs::metadata(path).map_err(|e| err("-", e.to_string()))?.len();
        if size > MAX_CONFIG_BYTES {
            return Err(err("-", format!("{size} bytes, over the limit of {}", MAX_CONFIG_BYTES)));
        }
        let text = std::fs::read_to_string(path).map_err(|e| err("-", e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        OperatorConfig::parse(&text, &file, base)
    }

    /// Parses a config text; relative paths are taken from `base`.
    pub fn parse(text: &str, file: &str, base: &Path) -> Result<OperatorConfig, ConfigError> {
        let err = |key: &str, reason: String| ConfigError { file: file.to_string(), key: key.to_string(), reason };
        let de = toml::Deserializer::parse(text).map_err(|e| err("-", crate::rules::toml_syntax(text, &e)))?;
        let raw: Raw = serde_path_to_error::deserialize(de)
            .map_err(|e| err(&e.path().to_string(), e.inner().message().to_string()))?;
        let abs = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let listen = raw
            .listen
            .as_deref()
            .unwrap_or(DEFAULT_LISTEN)
            .parse()
            .map_err(|e: std::net::AddrParseError| err("listen", e.to_string()))?;
        let warning_pct = raw.warning_pct.unwrap_or(crate::clearing::advance::DEFAULT_WARNING_PCT);
        if warning_pct > 100 {
            return Err(err("warning_pct", format!("{warning_pct}% is over 100%")));
        }
        let close_grace = match raw.close_grace_minutes {
            None => crate::operator::DEFAULT_CLOSE_GRACE,
            Some(m) if m <= MAX_CLOSE_GRACE_MINUTES => std::time::Duration::from_secs(m * 60),
            Some(m) => {
                return Err(err(
                    "close_grace_minutes",
                    format!("{m} is over {MAX_CLOSE_GRACE_MINUTES} (10 days): months would wait too long to close"),
                ))
            }
        };
        let tls = crate::tls::RawTls::setting(raw.tls.as_ref(), base).map_err(|(key, reason)| err(&key, reason))?;
        let mut nodes = BTreeMap::new();
        for (i, n) in raw.nodes.iter().enumerate() {
            let r = RegionCode::parse(&n.region).map_err(|e| err(&format!("nodes[{i}].region"), e.to_string()))?;
            crate::tls::check_url(&n.endpoint, &tls).map_err(|e| err(&format!("nodes[{i}].endpoint"), e))?;
            let k = crypto::parse_public_key(&n.public_key)
                .map_err(|e| err(&format!("nodes[{i}].public_key"), e.to_string()))?;
            if nodes.insert(r, (n.endpoint.clone(), k)).is_some() {
                return Err(err(&format!("nodes[{i}].region"), format!("{r} is listed twice")));
            }
        }
        let mut quotas = BTreeMap::new();
        for (i, q) in raw.quotas.iter().enumerate() {
            let r = RegionCode::parse(&q.region).map_err(|e| err(&format!("quotas[{i}].region"), e.to_string()))?;
            let a = Amount::parse_non_negative(&q.amount)
                .map_err(|e| err(&format!("quotas[{i}].amount"), e.to_string()))?;
            quotas.insert(r, a);
        }
        let console = match &raw.console {
            None => None,
            Some(c) => Some(c.check().map_err(|(key, reason)| err(&key, reason))?),
        };
        Ok(OperatorConfig {
            console,
            data_dir: abs(raw.data_dir),
            key_file: abs(raw.key_file),
            rules_dir: abs(raw.rules_dir),
            listen,
            warning_pct,
            close_grace,
            tls,
            nodes,
            quotas,
        })
    }
}
