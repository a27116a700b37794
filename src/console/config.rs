//! The `[console]` table of a node's or the operator's config: where the
//! console listens and the viewers it admits (1–100, each a name and its
//! token's SHA-256). Off when the table is absent.

use serde::Deserialize;

use super::auth::Viewer;

/// Most viewers a console may name.
pub const MAX_VIEWERS: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsole {
    listen: String,
    #[serde(default)]
    viewers: Vec<RawViewer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawViewer {
    name: String,
    token_sha256: String,
}

/// The console's address and viewers.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    pub listen: std::net::SocketAddr,
    pub viewers: Vec<Viewer>,
}

impl RawConsole {
    /// Checked: the failing key (under `console.`) and why.
    pub fn check(&self) -> Result<ConsoleConfig, (String, String)> {
        let listen =
            self.listen.parse().map_err(|e: std::net::AddrParseError| ("console.listen".into(), e.to_string()))?;
        if self.viewers.is_empty() || self.viewers.len() > MAX_VIEWERS {
            return Err(("console.viewers".into(), format!("name 1–{MAX_VIEWERS} viewers: no one else may look")));
        }
        let mut viewers: Vec<Viewer> = Vec::new();
        for (i, v) in self.viewers.iter().enumerate() {
            let key = format!("console.viewers[{i}].token_sha256");
            let bytes = hex::decode(&v.token_sha256).map_err(|_| (key.clone(), "not hex".to_string()))?;
            let token_sha256: [u8; 32] = bytes
                .try_into()
                .map_err(|_| (key.clone(), "a SHA-256 is 64 hex digits (xclear console token)".to_string()))?;
            if v.name.trim().is_empty() || viewers.iter().any(|x| x.name == v.name) {
                return Err((format!("console.viewers[{i}].name"), "empty or listed twice".into()));
            }
            viewers.push(Viewer { name: v.name.clone(), token_sha256 });
        }
        Ok(ConsoleConfig { listen, viewers })
    }
}
