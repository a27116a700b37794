//! `xclear tls …`: a federation's certificate authority and certificates
//! that carry their holders' signing keys (see `xclear::tls`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use ed25519_dalek::SigningKey;

use xclear::crypto;
use xclear::tls::DevCa;

use super::{fail, EXIT_BAD_INPUT, EXIT_FAILED};

#[derive(Subcommand)]
pub(crate) enum TlsCommand {
    /// Make a CA certificate for a federation, from a CA key (xclear keygen).
    Ca {
        /// The CA's key file.
        #[arg(long)]
        key: PathBuf,
        /// The federation's name, in the certificate (CN=xclear CA of NAME).
        #[arg(long)]
        name: String,
        /// Where to write the CA certificate (PEM).
        #[arg(long)]
        out: PathBuf,
    },
    /// Issue a certificate for a holder's public key, under DNS names or IP addresses.
    Issue {
        /// The CA certificate (from xclear tls ca).
        #[arg(long)]
        ca: PathBuf,
        /// The CA's key file.
        #[arg(long)]
        ca_key: PathBuf,
        /// The holder's public key (64 hex digits; the holder keeps its key file).
        #[arg(long)]
        public_key: String,
        /// A name the certificate carries (repeatable): REGION.node.xclear for a node,
        /// operator.xclear for the operator, an address such as 127.0.0.1 where it serves.
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        /// Where to write the certificate (PEM).
        #[arg(long)]
        out: PathBuf,
    },
    /// Issue a server certificate (a fresh ECDSA P-256 key, written beside it) for a node or the operator.
    Server {
        /// The CA certificate (from xclear tls ca).
        #[arg(long)]
        ca: PathBuf,
        /// The CA's key file.
        #[arg(long)]
        ca_key: PathBuf,
        /// A name the certificate carries (repeatable): REGION.node.xclear or operator.xclear, and
        /// the host names or addresses clients reach it by.
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        /// Where to write the certificate (PEM); the key goes to --key-out.
        #[arg(long)]
        out: PathBuf,
        /// Where to write the server's key (PKCS#8 PEM, mode 0600).
        #[arg(long)]
        key_out: PathBuf,
    },
    /// A development federation in one directory: for every KEY.key there, KEY.crt (carrying the key;
    /// nodes named by region, the operator as operator.xclear) and KEY.pem (the key as PKCS#8, for grpcurl
    /// and grpcio); for nodes and the operator also KEY.server.crt and KEY.server.pem (ECDSA, what they
    /// serve, also for 127.0.0.1 and localhost); all from DIR/ca.key and DIR/ca.crt, made if missing.
    Dev {
        /// The directory of key files.
        #[arg(long)]
        keys: PathBuf,
        /// The federation's name, for a new CA.
        #[arg(long, default_value = "development")]
        name: String,
    },
}

pub(crate) fn run(cmd: TlsCommand) -> ExitCode {
    let result = match cmd {
        TlsCommand::Ca { key, name, out } => ca(&key, &name, &out),
        TlsCommand::Issue { ca, ca_key, public_key, names, out } => issue(&ca, &ca_key, &public_key, &names, &out),
        TlsCommand::Server { ca, ca_key, names, out, key_out } => server(&ca, &ca_key, &names, &out, &key_out),
        TlsCommand::Dev { keys, name } => dev(&keys, &name),
    };
    result.unwrap_or_else(|c| c)
}

fn key(path: &Path) -> Result<SigningKey, ExitCode> {
    crypto::load_signing_key(path).map_err(|e| fail(EXIT_BAD_INPUT, e))
}

fn write(path: &Path, text: &str) -> Result<(), ExitCode> {
    std::fs::write(path, text).map_err(|e| fail(EXIT_FAILED, format!("{}: {e}", path.display())))
}

fn load_ca(cert: &Path, ca_key: &Path) -> Result<DevCa, ExitCode> {
    let pem = std::fs::read_to_string(cert).map_err(|e| fail(EXIT_BAD_INPUT, format!("{}: {e}", cert.display())))?;
    DevCa::load(&pem, &key(ca_key)?).map_err(|e| fail(EXIT_BAD_INPUT, format!("{}: {e}", cert.display())))
}

fn ca(key_file: &Path, name: &str, out: &Path) -> Result<ExitCode, ExitCode> {
    let ca = DevCa::new(name, &key(key_file)?).map_err(|e| fail(EXIT_FAILED, e))?;
    write(out, ca.cert_pem())?;
    println!("{}", out.display());
    Ok(ExitCode::SUCCESS)
}

fn issue(cert: &Path, ca_key: &Path, public_key: &str, names: &[String], out: &Path) -> Result<ExitCode, ExitCode> {
    let ca = load_ca(cert, ca_key)?;
    let holder =
        crypto::parse_public_key(public_key).map_err(|e| fail(EXIT_BAD_INPUT, format!("--public-key: {e}")))?;
    let pem = ca.issue(&holder, names).map_err(|e| fail(EXIT_BAD_INPUT, e))?;
    write(out, &pem)?;
    println!("{}", out.display());
    Ok(ExitCode::SUCCESS)
}

fn server(cert: &Path, ca_key: &Path, names: &[String], out: &Path, key_out: &Path) -> Result<ExitCode, ExitCode> {
    let ca = load_ca(cert, ca_key)?;
    let (pem, key) = ca.issue_server(names).map_err(|e| fail(EXIT_BAD_INPUT, e))?;
    write_private(key_out, &key)?;
    write(out, &pem)?;
    println!("{}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// Whether the holder of a development key serves (a node, by its region
/// code, or the operator).
fn serves(stem: &str) -> bool {
    (stem.len() == 6 && stem.bytes().all(|b| b.is_ascii_digit())) || stem == "operator"
}

/// The names of a development certificate, by its key file's name.
fn dev_names(stem: &str) -> Vec<String> {
    let local = ["127.0.0.1".to_string(), "localhost".to_string()];
    if stem.len() == 6 && stem.bytes().all(|b| b.is_ascii_digit()) {
        std::iter::once(xclear::tls::node_name(stem)).chain(local).collect()
    } else if stem == "operator" {
        std::iter::once(xclear::tls::OPERATOR_NAME.to_string()).chain(local).collect()
    } else {
        vec![xclear::tls::client_name(stem)]
    }
}

fn dev(dir: &Path, name: &str) -> Result<ExitCode, ExitCode> {
    let ca_key_file = dir.join("ca.key");
    let ca_cert = dir.join("ca.crt");
    if !ca_key_file.exists() {
        let k = SigningKey::generate(&mut rand::rngs::OsRng);
        crypto::write_signing_key(&ca_key_file, &k).map_err(|e| fail(EXIT_FAILED, e))?;
    }
    let ca = if ca_cert.exists() {
        load_ca(&ca_cert, &ca_key_file)?
    } else {
        let ca = DevCa::new(name, &key(&ca_key_file)?).map_err(|e| fail(EXIT_FAILED, e))?;
        write(&ca_cert, ca.cert_pem())?;
        ca
    };
    let mut keys: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| fail(EXIT_BAD_INPUT, format!("{}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "key") && p.file_stem().is_some_and(|s| s != "ca"))
        .collect();
    keys.sort();
    for path in &keys {
        let stem = path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
        let k = key(path)?;
        let cert = ca.issue(&k.verifying_key(), &dev_names(&stem)).map_err(|e| fail(EXIT_FAILED, e))?;
        write(&path.with_extension("crt"), &cert)?;
        let pem = xclear::tls::private_key_pem(&k).map_err(|e| fail(EXIT_FAILED, e))?;
        write_private(&path.with_extension("pem"), &pem)?;
        if serves(&stem) {
            let (cert, key) = ca.issue_server(&dev_names(&stem)).map_err(|e| fail(EXIT_FAILED, e))?;
            write(&path.with_extension("server.crt"), &cert)?;
            write_private(&path.with_extension("server.pem"), &key)?;
        }
    }
    println!("{} certificates under {} ({})", keys.len(), ca_cert.display(), dir.display());
    Ok(ExitCode::SUCCESS)
}

/// A private key's file, readable by its owner only.
fn write_private(path: &Path, text: &str) -> Result<(), ExitCode> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let failed = |e: std::io::Error| fail(EXIT_FAILED, format!("{}: {e}", path.display()));
    let mut f =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).map_err(failed)?;
    f.write_all(text.as_bytes()).map_err(failed)
}
