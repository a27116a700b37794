//! Dependencies point one way: core ← api ← node / operator ← the federation,
//! demo, simulation and fuzzing (the binary's `cli` uses the library from
//! outside). A module may use its own layer and the layers below; `node` and
//! `operator` do not use each other. The check reads every `crate::…` path in
//! `src/`.

use std::collections::BTreeSet;
use std::path::Path;

/// The layer of each top-level module of the library.
fn layer(module: &str) -> Option<u8> {
    Some(match module {
        "money" | "med_type" | "region" | "rules" | "settlement" | "clearing" | "ledger" | "storage" | "clock"
        | "crypto" | "time" | "proto" | "calc" | "memory" => 0,
        "api" | "transport" | "tls" | "console" => 1,
        "node" | "operator" => 2,
        "federation" | "demo" | "sim" | "fuzz" => 3,
        _ => return None,
    })
}

/// The top-level module a file of `src/` belongs to (`None`: the crate root
/// or a binary, which may use anything).
fn module_of(rel: &str) -> Option<&str> {
    let first = rel.split('/').next()?;
    let m = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(m, "lib" | "main" | "cli" | "bin")).then_some(m)
}

/// The top-level modules a file names through `crate::…`, including the
/// first name of each `crate::{a, b::c}` group.
fn uses(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for part in group[..end].split(',') {
                    let name: String = part.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                    if !name.is_empty() {
                        out.insert(name);
                    }
                }
            } else {
                let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
    }
    out
}

/// Every use that points up (or across, between `node` and `operator`), as
/// `file: module -> module`.
fn back_edges<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<String> {
    let mut bad = Vec::new();
    for (rel, text) in files {
        let Some(from) = module_of(rel) else { continue };
        let Some(from_layer) = layer(from) else {
            bad.push(format!("{rel}: module {from} has no layer (add it to tests/it/layers.rs)"));
            continue;
        };
        for to in uses(text) {
            let Some(to_layer) = layer(&to) else { continue };
            let across = from != to && from_layer == 2 && to_layer == 2;
            if to_layer > from_layer || across {
                bad.push(format!("{rel}: {from} -> {to}"));
            }
        }
    }
    bad
}

fn sources(dir: &Path, base: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, base, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(base).expect("under src").to_string_lossy().replace('\\', "/");
            out.push((rel, std::fs::read_to_string(&path).expect("read")));
        }
    }
}

#[test]
fn dependencies_point_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &src, &mut files);
    assert!(files.len() > 50, "read {} files", files.len());
    let bad = back_edges(files.iter().map(|(p, t)| (p.as_str(), t.as_str())));
    assert!(bad.is_empty(), "uses against the layers:\n{}", bad.join("\n"));
}

#[test]
fn the_check_catches_the_back_edges_there_were() {
    // Each of these was in the code before the layers were drawn.
    let before = [
        ("api/convert.rs", "let today = crate::node::home::shanghai_day(now_ms)"),
        ("operator/mod.rs", "use crate::node::{BoxFuture, TransportError};"),
        ("node/grpc.rs", "impl crate::operator::ReportTransport for GrpcTransport {"),
        ("clearing/statement.rs", "use crate::{api::NodeError, money::Amount};"),
    ];
    let bad = back_edges(before);
    assert_eq!(
        bad,
        [
            "api/convert.rs: api -> node",
            "operator/mod.rs: operator -> node",
            "node/grpc.rs: node -> operator",
            "clearing/statement.rs: clearing -> api",
        ]
    );
    // Down and within a layer is fine; comments are not code.
    let fine = [
        ("node/home.rs", "use crate::api::NodeError; use crate::transport::BoxFuture; use super::records;"),
        ("sim/world.rs", "use crate::{node::Node, operator::Operator};"),
        ("clearing/lines.rs", "// see crate::node::clearing_side\nuse crate::ledger::merkle;"),
    ];
    assert!(back_edges(fine).is_empty(), "{:?}", back_edges(fine));
}
