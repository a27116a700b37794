//! What a config file (a node's, the operator's) can be wrong about.

/// Largest config file read.
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// A config file refused: which file, which key (`-` for the whole file), why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {key}: {reason}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub reason: String,
}
