//! How a command reaches a node or the operator: `http://` in plaintext, or
//! `https://` with the federation's CA (`--ca`, or `XCLEAR_CA`) and the
//! certificate of the key the command signs with (`--cert`, by default the
//! key file with `.crt` for its extension), since a node accepts a signed
//! request only over a connection of its signer.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ed25519_dalek::SigningKey;
use tonic::transport::Channel;

use xclear::tls::{Tls, TlsFiles};

use super::{fail, EXIT_BAD_INPUT, EXIT_FAILED};

/// The TLS files of a client command.
#[derive(clap::Args, Clone, Debug, Default)]
pub(crate) struct TlsArgs {
    /// The federation's CA certificate, for https:// addresses.
    #[arg(long, env = "XCLEAR_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// The certificate of the signing key (default: the key file with .crt as its extension).
    #[arg(long, global = true)]
    pub cert: Option<PathBuf>,
    /// The name the server's certificate must carry, e.g. 110000.node.xclear or operator.xclear
    /// (default: the address's host, which every development certificate on 127.0.0.1 carries).
    #[arg(long, global = true)]
    pub server_name: Option<String>,
}

impl TlsArgs {
    /// The identity of `key` (read from `key_file`) for an https:// `url`;
    /// `None` for http://.
    pub(crate) fn identity(&self, url: &str, key_file: &Path, key: &SigningKey) -> Result<Option<Tls>, ExitCode> {
        if !url.starts_with("https://") {
            return Ok(None);
        }
        let ca = self.ca.clone().ok_or_else(|| {
            fail(
                EXIT_BAD_INPUT,
                format!("{url} is https: give the federation's CA certificate (--ca FILE or XCLEAR_CA)"),
            )
        })?;
        let cert = self.cert.clone().unwrap_or_else(|| key_file.with_extension("crt"));
        if !cert.exists() {
            return Err(fail(
                EXIT_BAD_INPUT,
                format!(
                    "{}: no client certificate for {} (give --cert FILE; xclear tls issue makes one)",
                    cert.display(),
                    key_file.display()
                ),
            ));
        }
        Tls::load(&TlsFiles { ca, cert, server: None }, key).map(Some).map_err(|e| fail(EXIT_BAD_INPUT, e))
    }

    /// A connected channel to `url`, as the holder of `key`.
    pub(crate) async fn channel(&self, url: &str, key_file: &Path, key: &SigningKey) -> Result<Channel, ExitCode> {
        let tls = self.identity(url, key_file, key)?;
        let endpoint = xclear::tls::endpoint(url, tls.as_ref(), self.server_name.as_deref())
            .map_err(|e| fail(EXIT_BAD_INPUT, e))?;
        endpoint.connect().await.map_err(|e| unreachable(url, e))
    }
}

/// A node or operator that could not be reached, with the transport's cause
/// (a refused certificate shows up here).
pub(crate) fn unreachable(url: &str, e: impl std::error::Error) -> ExitCode {
    let mut message = format!("{url}: {e}");
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        // Layers often repeat their cause's text.
        if !message.ends_with(&text) {
            message.push_str(&format!(": {text}"));
        }
        source = s.source();
    }
    if message.contains("UnknownIssuer") {
        message.push_str(" (the server's certificate is not from the CA given by --ca or XCLEAR_CA)");
    } else if message.contains("NotValidForName") || message.contains("not valid for name") {
        message.push_str(
            " (the server's certificate does not carry the name expected: the address's host, or --server-name)",
        );
    }
    fail(EXIT_FAILED, serde_json::json!({"error": "unreachable", "message": message}))
}

/// A running node and the admin of it who signs (registrations, persons,
/// designations, audit reviews).
#[derive(clap::Args, Clone)]
pub(crate) struct AdminTarget {
    /// The node's gRPC address (the admin's own node), e.g. https://127.0.0.1:20061
    #[arg(long)]
    pub node: String,
    /// The admin's key file.
    #[arg(long)]
    pub key: PathBuf,
    /// The admin's name, as in the node's config.
    #[arg(long)]
    pub admin: String,
    #[command(flatten)]
    pub tls: TlsArgs,
}
