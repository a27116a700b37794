//! Transport security: every gRPC connection of a federation over TLS
//! (rustls with ring), mutual, with certificates from the federation's CA.
//!
//! A client certificate carries its holder's ed25519 *signing* key, so a
//! connection is bound to whoever signs on it: a node accepts an envelope
//! only when the connection's client certificate carries the key of the
//! envelope's signer (a hospital, a peer node, an admin, the operator). The
//! two uses of one key do not mix: TLS 1.3 signs its transcript under its own
//! context string, envelopes under `xclear/...` domains (`crypto`).
//!
//! A server presents a second certificate, of an ECDSA P-256 key, since
//! BoringSSL clients (Python's grpcio) and browsers do not verify Ed25519
//! servers. Clients check a node by the name it carries,
//! `<region>.node.xclear`, so a peer presenting another region's certificate
//! is refused by the handshake.
//!
//! `xclear tls` makes a development CA and certificates ([`DevCa`]); a real
//! federation's CA issues them the same way (the names below, the holder's
//! public key).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};
use x509_cert::der::{Decode, DecodePem};

/// The ASN.1 object identifier of Ed25519 keys (RFC 8410).
const ED25519_OID: &str = "1.3.101.112";
/// Longest a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Largest certificate file read.
const MAX_PEM_BYTES: u64 = 64 * 1024;

/// The name a node's certificate carries, which its peers and the operator
/// check when they connect.
pub fn node_name(region: &str) -> String {
    format!("{region}.node.xclear")
}

/// The operator's certificate name.
pub const OPERATOR_NAME: &str = "operator.xclear";

/// The name of a client's certificate (an institution's, an admin's): its
/// code or name (what binds it is the key it carries).
pub fn client_name(tag: &str) -> String {
    format!("{}.client.xclear", tag.to_ascii_lowercase())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("the certificate does not carry an ed25519 key")]
    NotEd25519,
    #[error(
        "the certificate carries key {cert}, not this key ({key}): issue it for this key (xclear tls issue --key ...)"
    )]
    WrongKey { cert: String, key: String },
    #[error("{0}")]
    Certificate(String),
}

/// Where a process's TLS material lives: the federation's CA certificate,
/// the process's own (client) certificate, whose key is its signing key, and
/// for a server its server certificate and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    /// (certificate, PKCS#8 key), PEM.
    pub server: Option<(PathBuf, PathBuf)>,
}

/// Whether a process speaks TLS, as its config says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSetting {
    Files(TlsFiles),
    /// `plaintext = true`: no encryption, no peer binding (warned in the log).
    Plaintext,
}

/// The `[tls]` table of a node's or the operator's config.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    #[serde(default)]
    ca: Option<PathBuf>,
    #[serde(default)]
    cert: Option<PathBuf>,
    #[serde(default)]
    server_cert: Option<PathBuf>,
    #[serde(default)]
    server_key: Option<PathBuf>,
    #[serde(default)]
    plaintext: bool,
}

impl RawTls {
    /// The setting a config's `[tls]` table (or its absence) gives; paths
    /// taken from `base`. Err: (key, reason).
    pub fn setting(raw: Option<&RawTls>, base: &Path) -> Result<TlsSetting, (String, String)> {
        let abs = |p: &PathBuf| if p.is_absolute() { p.clone() } else { base.join(p) };
        let Some(raw) = raw else {
            return Err((
                "tls".into(),
                "missing: give [tls] ca, cert, server_cert and server_key (the federation's CA, this \
                 process's certificates; xclear tls dev makes them), or [tls] plaintext = true to run without TLS"
                    .into(),
            ));
        };
        let given = [&raw.ca, &raw.cert, &raw.server_cert, &raw.server_key];
        if raw.plaintext {
            return match given.iter().any(|p| p.is_some()) {
                true => Err(("tls.plaintext".into(), "plaintext = true takes no certificates".into())),
                false => Ok(TlsSetting::Plaintext),
            };
        }
        match (&raw.ca, &raw.cert, &raw.server_cert, &raw.server_key) {
            (Some(ca), Some(cert), Some(sc), Some(sk)) => {
                Ok(TlsSetting::Files(TlsFiles { ca: abs(ca), cert: abs(cert), server: Some((abs(sc), abs(sk))) }))
            }
            _ => {
                let names = ["ca", "cert", "server_cert", "server_key"];
                let missing = names.iter().zip(given).find(|(_, p)| p.is_none()).map_or("ca", |(n, _)| *n);
                Err((format!("tls.{missing}"), "missing (or plaintext = true)".into()))
            }
        }
    }
}

/// Checks that `url` suits `setting`: `https://` with TLS, `http://` without.
pub fn check_url(url: &str, setting: &TlsSetting) -> Result<(), String> {
    match setting {
        TlsSetting::Files(_) if !url.starts_with("https://") => {
            Err(format!("{url:?}: TLS is on ([tls] ca and cert), so the address is https://"))
        }
        TlsSetting::Plaintext if !url.starts_with("http://") => {
            Err(format!("{url:?}: [tls] plaintext = true, so the address is http://"))
        }
        _ => Ok(()),
    }
}

/// A process's TLS identity: the federation's CA and its own certificate and
/// key.
#[derive(Clone)]
pub struct Tls {
    ca: Certificate,
    identity: Identity,
    /// What a server presents (ECDSA); `None`: a client only.
    server: Option<Identity>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls { .. }")
    }
}

impl Tls {
    /// The identity of the holder of `key` from PEM text, checked: the
    /// certificate must carry `key`'s public half.
    pub fn from_pem(ca_pem: &str, cert_pem: &str, key: &SigningKey) -> Result<Tls, TlsError> {
        x509_cert::Certificate::from_pem(ca_pem.as_bytes())
            .map_err(|e| TlsError::Certificate(format!("the CA certificate: {e}")))?;
        let cert = x509_cert::Certificate::from_pem(cert_pem.as_bytes())
            .map_err(|e| TlsError::Certificate(format!("the certificate: {e}")))?;
        let carried = ed25519_key(&cert).ok_or(TlsError::NotEd25519)?;
        let own = key.verifying_key().to_bytes();
        if carried != own {
            return Err(TlsError::WrongKey { cert: hex::encode(carried), key: hex::encode(own) });
        }
        let key_pem = private_key_pem(key)?;
        Ok(Tls {
            ca: Certificate::from_pem(ca_pem),
            identity: Identity::from_pem(cert_pem, key_pem.as_bytes()),
            server: None,
        })
    }

    /// This identity, serving `cert_pem` (with its key `key_pem`) to clients.
    pub fn with_server(mut self, cert_pem: &str, key_pem: &str) -> Result<Tls, TlsError> {
        x509_cert::Certificate::from_pem(cert_pem.as_bytes())
            .map_err(|e| TlsError::Certificate(format!("the server certificate: {e}")))?;
        self.server = Some(Identity::from_pem(cert_pem, key_pem));
        Ok(self)
    }

    /// Reads `files` for the holder of `key`.
    pub fn load(files: &TlsFiles, key: &SigningKey) -> Result<Tls, TlsError> {
        let ca = read_pem(&files.ca)?;
        x509_cert::Certificate::from_pem(ca.as_bytes()).map_err(|e| TlsError::File {
            path: files.ca.display().to_string(),
            reason: format!("not a CA certificate (PEM): {e}"),
        })?;
        let cert = read_pem(&files.cert)?;
        fn at(path: &Path) -> impl Fn(TlsError) -> TlsError + '_ {
            move |e| match e {
                TlsError::File { .. } => e,
                e => TlsError::File { path: path.display().to_string(), reason: e.to_string() },
            }
        }
        let tls = Tls::from_pem(&ca, &cert, key).map_err(at(&files.cert))?;
        match &files.server {
            Some((cert, key)) => {
                if let Some(mode) = crate::crypto::readable_by_others(key) {
                    tracing::warn!(
                        path = %key.display(),
                        mode = format!("{mode:o}"),
                        "the server key is readable by others: chmod 600 {}",
                        key.display()
                    );
                }
                tls.with_server(&read_pem(cert)?, &read_pem(key)?).map_err(at(cert))
            }
            None => Ok(tls),
        }
    }

    /// A server's side: this identity, and every client must present a
    /// certificate of the federation's CA.
    pub fn server(&self) -> ServerTlsConfig {
        let identity = self.server.clone().unwrap_or_else(|| self.identity.clone());
        // A client that never finishes its handshake does not hold a task for ever.
        ServerTlsConfig::new().identity(identity).client_ca_root(self.ca.clone()).timeout(HANDSHAKE_TIMEOUT)
    }

    /// A client's side: the server must present a certificate of the CA
    /// for `server_name` (`None`: the URL's host); this identity is sent.
    pub fn client(&self, server_name: Option<&str>) -> ClientTlsConfig {
        let c = ClientTlsConfig::new().ca_certificate(self.ca.clone()).identity(self.identity.clone());
        match server_name {
            Some(name) => c.domain_name(name),
            None => c,
        }
    }
}

/// An endpoint for `url`, over TLS when `tls` is given (then the URL must be
/// `https://`; plaintext takes `http://`).
pub fn endpoint(url: &str, tls: Option<&Tls>, server_name: Option<&str>) -> Result<Endpoint, String> {
    let https = url.starts_with("https://");
    let endpoint = Endpoint::from_shared(url.to_string()).map_err(|e| format!("{url}: {e}"))?;
    match tls {
        Some(tls) if https => endpoint.tls_config(tls.client(server_name)).map_err(|e| format!("{url}: {e}")),
        Some(_) => Err(format!("{url}: TLS is on, so the address is https://")),
        None if https => Err(format!("{url}: an https:// address needs the CA and a certificate (--ca)")),
        None => Ok(endpoint),
    }
}

/// The ed25519 key a DER certificate carries.
pub fn cert_key(der: &[u8]) -> Option<[u8; 32]> {
    ed25519_key(&x509_cert::Certificate::from_der(der).ok()?)
}

fn ed25519_key(cert: &x509_cert::Certificate) -> Option<[u8; 32]> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    if spki.algorithm.oid.to_string() != ED25519_OID {
        return None;
    }
    spki.subject_public_key.raw_bytes().try_into().ok()
}

/// The key of the connection's client certificate (`None`: no TLS).
pub fn peer_key<T>(req: &tonic::Request<T>) -> Option<[u8; 32]> {
    let certs = req.peer_certs()?;
    certs.first().and_then(|c| cert_key(c.as_ref()))
}

/// Whether a TLS connection may carry what `signer_key` signed: its client
/// certificate (`peer`, from [`peer_key`]) must carry that key.
pub fn bound(peer: Option<[u8; 32]>, signer_key: &VerifyingKey) -> bool {
    peer == Some(signer_key.to_bytes())
}

fn read_pem(path: &Path) -> Result<String, TlsError> {
    let file = |reason: String| TlsError::File { path: path.display().to_string(), reason };
    let size = std::fs::metadata(path).map_err(|e| file(e.to_string()))?.len();
    if size > MAX_PEM_BYTES {
        return Err(file(format!("{size} bytes, over the limit of {MAX_PEM_BYTES}")));
    }
    std::fs::read_to_string(path).map_err(|e| file(e.to_string()))
}

/// An ed25519 public key as a certificate's subject.
struct Subject([u8; 32]);

impl rcgen::PublicKeyData for Subject {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ED25519
    }
}

/// A certificate authority for a federation: a CA certificate and its key
/// (an ed25519 key like every other), issuing certificates for public keys.
pub struct DevCa {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    pem: String,
}

impl DevCa {
    /// A CA named after `federation`, whose key is `key`. The same key and
    /// name give the same CA certificate.
    pub fn new(federation: &str, key: &SigningKey) -> Result<DevCa, TlsError> {
        let cert_err = |e: rcgen::Error| TlsError::Certificate(e.to_string());
        let der = pkcs8_v1(key).to_pkcs8_der().map_err(|e| TlsError::Certificate(e.to_string()))?;
        let pkcs8 = rustls_pki_types::PrivatePkcs8KeyDer::from(der.as_bytes().to_vec());
        let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519).map_err(cert_err)?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, format!("xclear CA of {federation}"));
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial(key.public_key_raw(), &[])));
        let pem = params.self_signed(&key).map_err(cert_err)?.pem();
        Ok(DevCa { params, key, pem })
    }

    /// The CA that `xclear tls` made with `key`, from its certificate (the
    /// certificate must be the one [`DevCa::new`] makes from that key).
    pub fn load(cert_pem: &str, key: &SigningKey) -> Result<DevCa, TlsError> {
        let cert = x509_cert::Certificate::from_pem(cert_pem.as_bytes())
            .map_err(|e| TlsError::Certificate(format!("the CA certificate: {e}")))?;
        let subject = cert.tbs_certificate.subject.to_string();
        let federation = subject.strip_prefix("CN=xclear CA of ").ok_or_else(|| {
            TlsError::Certificate(format!("{subject:?} is not a CA that xclear tls made (CN=xclear CA of ...)"))
        })?;
        let ca = DevCa::new(federation, key)?;
        if ca.pem.trim() != cert_pem.trim() {
            return Err(TlsError::Certificate("the CA certificate was not made with this CA key".into()));
        }
        Ok(ca)
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.pem
    }

    /// A client certificate for `holder`'s signing key under `names`, PEM
    /// (servers present the ECDSA certificate of [`DevCa::issue_server`]).
    pub fn issue(&self, holder: &VerifyingKey, names: &[String]) -> Result<String, TlsError> {
        let subject = Subject(holder.to_bytes());
        Ok(self.leaf(names, rcgen::ExtendedKeyUsagePurpose::ClientAuth, &subject, holder.as_bytes())?.pem())
    }

    /// A server certificate under `names` for a fresh ECDSA P-256 key:
    /// (certificate, PKCS#8 key), PEM.
    pub fn issue_server(&self, names: &[String]) -> Result<(String, String), TlsError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| TlsError::Certificate(e.to_string()))?;
        let cert = self.leaf(names, rcgen::ExtendedKeyUsagePurpose::ServerAuth, &key, key.public_key_raw())?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A certificate of this CA for `subject` (whose raw public key is
    /// `raw_key`) under `names`, for `usage`; its serial number follows from
    /// the key and the names, so the same certificate is issued the same way.
    fn leaf(
        &self,
        names: &[String],
        usage: rcgen::ExtendedKeyUsagePurpose,
        subject: &impl rcgen::PublicKeyData,
        raw_key: &[u8],
    ) -> Result<rcgen::Certificate, TlsError> {
        let cert_err = |e: rcgen::Error| TlsError::Certificate(e.to_string());
        let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(cert_err)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, names.first().cloned().unwrap_or_default());
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial(raw_key, names)));
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        params.signed_by(subject, &issuer).map_err(cert_err)
    }

    /// The identity of the holder of `key` under `names`, issued now; a
    /// server (`serves`) also gets a server certificate under the names.
    pub fn identity(&self, key: &SigningKey, names: &[String], serves: bool) -> Result<Arc<Tls>, TlsError> {
        let cert = self.issue(&key.verifying_key(), names)?;
        let tls = Tls::from_pem(&self.pem, &cert, key)?;
        let tls = match serves {
            true => {
                let (cert, key) = self.issue_server(names)?;
                tls.with_server(&cert, &key)?
            }
            false => tls,
        };
        Ok(Arc::new(tls))
    }
}

/// A positive 16-byte serial number from the holder's key and names, so the
/// same certificate is issued the same way.
fn serial(key: &[u8], names: &[String]) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(key);
    for n in names {
        h.update(n.as_bytes());
        h.update([0]);
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize()[..16]);
    out[0] &= 0x7f;
    out[0] |= 0x01;
    out
}

/// The public key as PEM (SubjectPublicKeyInfo), for tools that want one.
pub fn public_key_pem(key: &VerifyingKey) -> Result<String, TlsError> {
    key.to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| TlsError::Certificate(e.to_string()))
}

/// The key as PKCS#8 v1 (RFC 8410, without the public key): what BoringSSL
/// (Python's grpcio) takes; rustls and ring take it too.
fn pkcs8_v1(key: &SigningKey) -> ed25519_dalek::pkcs8::KeypairBytes {
    ed25519_dalek::pkcs8::KeypairBytes { secret_key: key.to_bytes(), public_key: None }
}

/// The private key as PKCS#8 PEM, for tools that take the key apart from
/// the certificate (grpcurl's `-key`, Python's grpcio).
pub fn private_key_pem(key: &SigningKey) -> Result<String, TlsError> {
    pkcs8_v1(key)
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map(|p| p.to_string())
        .map_err(|e| TlsError::Certificate(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_carries_its_holders_key() {
        let ca = DevCa::new("t", &SigningKey::from_bytes(&[1; 32])).expect("ca");
        let holder = SigningKey::from_bytes(&[2; 32]);
        let pem = ca.issue(&holder.verifying_key(), &[node_name("110000"), "127.0.0.1".into()]).expect("issue");
        assert!(Tls::from_pem(ca.cert_pem(), &pem, &holder).is_ok());
        let other = SigningKey::from_bytes(&[3; 32]);
        assert!(matches!(Tls::from_pem(ca.cert_pem(), &pem, &other), Err(TlsError::WrongKey { .. })));
        let der = x509_cert::Certificate::from_pem(pem.as_bytes()).expect("pem");
        assert_eq!(ed25519_key(&der), Some(holder.verifying_key().to_bytes()));
        // Issued the same way twice: the same certificate.
        assert_eq!(ca.issue(&holder.verifying_key(), &[node_name("110000"), "127.0.0.1".into()]).expect("again"), pem);
        assert!(bound(Some(holder.verifying_key().to_bytes()), &holder.verifying_key()));
        assert!(!bound(Some(holder.verifying_key().to_bytes()), &other.verifying_key()));
        assert!(!bound(None, &holder.verifying_key()), "no certificate binds nothing");
    }
}
