//! The shipped example configs load, name existing keys, and agree with each
//! other on every peer's public key.

use std::path::PathBuf;

use xclear::node::NodeConfig;

#[test]
fn example_configs_are_consistent() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut configs = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("examples") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            configs.push(NodeConfig::load(&path).unwrap_or_else(|e| panic!("{e}")));
        }
    }
    assert_eq!(configs.len(), 7);
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
    }
}
