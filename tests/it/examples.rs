//! The shipped example configs load, name existing keys, and agree with each
//! other on every peer's public key, and with the operator's config on every
//! node's key, endpoint and the operator's own key.

use std::path::PathBuf;

use xclear::node::NodeConfig;
use xclear::operator::config::OperatorConfig;

#[test]
fn example_configs_are_consistent() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut configs = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("examples") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") && path.file_stem().is_some_and(|s| s != "operator") {
            configs.push(NodeConfig::load(&path).unwrap_or_else(|e| panic!("{e}")));
        }
    }
    assert_eq!(configs.len(), 7);
    let operator = OperatorConfig::load(&dir.join("operator.toml")).unwrap_or_else(|e| panic!("{e}"));
    let operator_key = xclear::crypto::load_signing_key(&operator.key_file).expect("operator key").verifying_key();
    assert_eq!(operator.nodes.len(), configs.len(), "the operator reaches every node");
    for c in &configs {
        let key = xclear::crypto::load_signing_key(&c.key_file).expect("key file");
        xclear::rules::RuleBook::load(&c.rules_dir).expect("rules");
        for other in configs.iter().filter(|o| o.region != c.region) {
            let peer =
                other.peers.get(&c.region).unwrap_or_else(|| panic!("{} does not list {}", other.region, c.region));
            assert_eq!(peer.public_key, key.verifying_key(), "{} has a stale key for {}", other.region, c.region);
        }
        for h in c.hospitals.values() {
            let hk = xclear::crypto::load_signing_key(&dir.join("keys").join(format!("{}.key", h.code)))
                .expect("hospital key");
            assert_eq!(hk.verifying_key(), h.public_key);
        }
        assert_eq!(c.operator_key, Some(operator_key), "{} answers the example operator", c.region);
        let (endpoint, node_key) = &operator.nodes[&c.region];
        assert_eq!(*node_key, key.verifying_key(), "the operator has a stale key for {}", c.region);
        assert_eq!(*endpoint, format!("https://{}", c.listen), "the operator's endpoint of {}", c.region);
        // Over TLS, with a certificate of the example CA carrying the node's key.
        let xclear::tls::TlsSetting::Files(files) = &c.tls else { panic!("{} is plaintext", c.region) };
        xclear::tls::Tls::load(files, &key).unwrap_or_else(|e| panic!("{}: {e}", c.region));
    }
    let xclear::tls::TlsSetting::Files(files) = &operator.tls else { panic!("the operator is plaintext") };
    let operator_key = xclear::crypto::load_signing_key(&operator.key_file).expect("operator key");
    xclear::tls::Tls::load(files, &operator_key).expect("the operator's certificate");
    // Every key of keys/ has its certificate and its PKCS#8 form, made by
    // `xclear tls dev --keys keys` from the example CA.
    let ca = xclear::crypto::load_signing_key(&dir.join("keys/ca.key")).expect("ca key");
    let ca_pem = std::fs::read_to_string(dir.join("keys/ca.crt")).expect("ca.crt");
    let ca = xclear::tls::DevCa::load(&ca_pem, &ca).expect("the example CA");
    for entry in std::fs::read_dir(dir.join("keys")).expect("keys") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "key") && path.file_stem().is_some_and(|s| s != "ca") {
            let key = xclear::crypto::load_signing_key(&path).expect("key");
            let cert = std::fs::read_to_string(path.with_extension("crt")).expect("certificate");
            xclear::tls::Tls::from_pem(ca.cert_pem(), &cert, &key)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let pem = std::fs::read_to_string(path.with_extension("pem")).expect("PKCS#8 key");
            assert_eq!(pem, xclear::tls::private_key_pem(&key).expect("pem"), "{}", path.display());
        }
    }
}
