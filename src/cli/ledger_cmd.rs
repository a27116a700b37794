//! `xclear ledger …`: verify, export, verify-export, head, prove, and the
//! load generator used by the crash test and the benchmark.

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;
use serde_json::json;

use xclear::clock::SystemClock;
use xclear::crypto;
use xclear::ledger::export::{export_dir, verify_export};
use xclear::ledger::verify::verify_dir;
use xclear::ledger::{merkle, EntryKind, Ledger};

use super::{fail, EXIT_BAD_INPUT, EXIT_FAILED};

#[derive(Subcommand)]
pub(crate) enum LedgerCommand {
    /// Re-check every checksum, hash, link and seal (root and tree head signature).
    Verify {
        /// The ledger's data directory (a node's data_dir).
        #[arg(long)]
        db: PathBuf,
        /// Pin the owner's public key (hex); default: the key in the segment header.
        #[arg(long)]
        key: Option<String>,
    },
    /// Write the ledger as JSON lines (one entry each) with its signed tree head.
    Export {
        /// The ledger's data directory (a node's data_dir).
        #[arg(long)]
        db: PathBuf,
        /// Output file; default standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify an export with nothing but the owner's public key.
    VerifyExport {
        /// The JSON-lines export to check.
        file: PathBuf,
        /// The ledger owner's public key (hex): the seals must verify with it.
        #[arg(long)]
        key: String,
    },
    /// Print the latest signed tree head.
    Head {
        /// The ledger's data directory (a node's data_dir).
        #[arg(long)]
        db: PathBuf,
    },
    /// Print an inclusion proof of entry SEQ (and a consistency proof from --from).
    Prove {
        /// The ledger's data directory (a node's data_dir).
        #[arg(long)]
        db: PathBuf,
        /// The entry's index, from 0.
        #[arg(long)]
        seq: u64,
        /// Also prove that the tree of this many entries is a prefix of the current one.
        #[arg(long)]
        from: Option<u64>,
        /// The node's key file (opening the ledger for proofs needs its owner).
        #[arg(long)]
        key: PathBuf,
    },
    /// Append entries under concurrent load, printing `ack SEQ KEY` for each
    /// durable one (used by the crash test and the benchmark).
    #[command(hide = true)]
    Load {
        /// The ledger's data directory (a node's data_dir).
        #[arg(long)]
        db: PathBuf,
        /// The key file that seals the appended entries.
        #[arg(long)]
        key: PathBuf,
        /// Keys are PREFIX-N for N from --start.
        #[arg(long, default_value = "load")]
        prefix: String,
        /// First N of the keys written.
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// How many entries to append.
        #[arg(long, default_value_t = 1_000_000)]
        count: u64,
        /// Appends in flight at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
}

pub(crate) fn run(cmd: LedgerCommand) -> ExitCode {
    match cmd {
        LedgerCommand::Verify { db, key } => verify(&db, key.as_deref()),
        LedgerCommand::Export { db, out } => export(&db, out.as_deref()),
        LedgerCommand::VerifyExport { file, key } => verify_export_cmd(&file, &key),
        LedgerCommand::Head { db } => head(&db),
        LedgerCommand::Prove { db, seq, from, key } => prove(&db, seq, from, &key),
        LedgerCommand::Load { db, key, prefix, start, count, concurrency } => {
            load(&db, &key, &prefix, start, count, concurrency)
        }
    }
}

fn verify(db: &Path, key: Option<&str>) -> ExitCode {
    let pinned = match key.map(crypto::parse_public_key).transpose() {
        Ok(k) => k,
        Err(e) => return fail(EXIT_BAD_INPUT, e),
    };
    match verify_dir(db, pinned.as_ref()) {
        Ok(r) => {
            println!("ledger {}: sound", db.display());
            println!("  owner key   {}", hex::encode(r.public_key.as_bytes()));
            println!("  entries     {}", r.entries);
            println!("  root        {}", hex::encode(r.root));
            match (&r.head, &r.head_note) {
                (Some(h), _) => {
                    println!("  signed head size {} root {} (signature valid)", h.size, hex::encode(h.root))
                }
                (None, Some(note)) => println!("  signed head not checked: {note}"),
                (None, None) => {}
            }
            if let Some(t) = r.torn_tail {
                println!(
                    "  torn tail   {} bytes at byte {} (after the last seal: a group a running node is \
                     still writing, or an unacknowledged write, cut on next open)",
                    t.bytes, t.offset
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_FAILED, format!("ledger {}: NOT sound: {e}", db.display())),
    }
}

fn export(db: &Path, out: Option<&Path>) -> ExitCode {
    let result = match out {
        Some(path) => std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display())).and_then(|f| {
            let mut w = std::io::BufWriter::new(f);
            let n = export_dir(db, &mut w)?;
            w.flush().map_err(|e| e.to_string())?;
            Ok(n)
        }),
        None => {
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::new(stdout.lock());
            export_dir(db, &mut w).and_then(|n| w.flush().map(|_| n).map_err(|e| e.to_string()))
        }
    };
    match result {
        Ok(n) => {
            eprintln!("exported {n} entries");
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_FAILED, e),
    }
}

fn verify_export_cmd(file: &Path, key: &str) -> ExitCode {
    let key = match crypto::parse_public_key(key) {
        Ok(k) => k,
        Err(e) => return fail(EXIT_BAD_INPUT, e),
    };
    let f = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(e) => return fail(EXIT_BAD_INPUT, format!("{}: {e}", file.display())),
    };
    match verify_export(&mut BufReader::new(f), &key) {
        Ok(r) => {
            println!(
                "export {}: sound, {} entries, signed head size {} root {}",
                file.display(),
                r.entries,
                r.head.size,
                hex::encode(r.head.root)
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_FAILED, format!("export {}: NOT sound: {e}", file.display())),
    }
}

fn head(db: &Path) -> ExitCode {
    match verify_dir(db, None) {
        Ok(r) => match r.head {
            Some(h) => {
                let mut v = h.to_json();
                v["public_key"] = json!(hex::encode(r.public_key.as_bytes()));
                v["entries"] = json!(r.entries);
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                ExitCode::SUCCESS
            }
            None => fail(EXIT_FAILED, format!("no signed head: {}", r.head_note.unwrap_or_default())),
        },
        Err(e) => fail(EXIT_FAILED, e),
    }
}

fn prove(db: &Path, seq: u64, from: Option<u64>, key_file: &Path) -> ExitCode {
    let key = match crypto::load_signing_key(key_file) {
        Ok(k) => k,
        Err(e) => return fail(EXIT_BAD_INPUT, e),
    };
    let ledger = match Ledger::open(db, key, Arc::new(SystemClock)) {
        Ok(l) => l,
        Err(e) => return fail(EXIT_FAILED, e),
    };
    let head = ledger.head();
    let Some((leaf, path)) = ledger.inclusion_proof(seq, head.size) else {
        return fail(EXIT_BAD_INPUT, format!("no entry {seq} in a ledger of {} entries", head.size));
    };
    debug_assert!(merkle::verify_inclusion(&leaf, seq, head.size, &path, &head.root));
    let mut v = json!({
        "tree_head": head.to_json(),
        "inclusion": {"seq": seq, "leaf_hash": hex::encode(leaf), "path": path.iter().map(hex::encode).collect::<Vec<_>>()},
    });
    if let Some(old) = from {
        match (ledger.consistency_proof(old, head.size), ledger.root_at(old)) {
            (Some(p), Some(old_root)) => {
                v["consistency"] = json!({"from_size": old, "from_root": hex::encode(old_root), "to_size": head.size,
                                           "path": p.iter().map(hex::encode).collect::<Vec<_>>()});
            }
            _ => return fail(EXIT_BAD_INPUT, format!("--from {old} is larger than the ledger")),
        }
    }
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    ExitCode::SUCCESS
}

fn load(db: &Path, key_file: &Path, prefix: &str, start: u64, count: u64, concurrency: usize) -> ExitCode {
    let key = match crypto::load_signing_key(key_file) {
        Ok(k) => k,
        Err(e) => return fail(EXIT_BAD_INPUT, e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return fail(EXIT_FAILED, e),
    };
    runtime.block_on(async move {
        let ledger = match Ledger::open(db, key, Arc::new(SystemClock)) {
            Ok(l) => Arc::new(l),
            Err(e) => return fail(EXIT_FAILED, e),
        };
        let next = Arc::new(std::sync::atomic::AtomicU64::new(start));
        let end = start.saturating_add(count);
        let (ack_tx, mut ack_rx) = tokio::sync::mpsc::channel::<String>(4096);
        let mut tasks = Vec::new();
        for _ in 0..concurrency.max(1) {
            let (ledger, next, ack_tx, prefix) =
                (Arc::clone(&ledger), Arc::clone(&next), ack_tx.clone(), prefix.to_string());
            tasks.push(tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= end {
                        break;
                    }
                    let key = format!("{prefix}-{n}");
                    let payload = format!("{{\"n\":{n},\"note\":\"load\"}}").into_bytes();
                    match ledger.append(EntryKind::Note, &key, payload).await {
                        Ok(a) => {
                            if ack_tx.send(format!("ack {} {key}", a.seq)).await.is_err() {
                                break;
                            }
                        }
                        Err(e) => {
                            eprintln!("append {key}: {e}");
                            break;
                        }
                    }
                }
            }));
        }
        drop(ack_tx);
        let printer = tokio::task::spawn_blocking(move || {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            while let Some(line) = ack_rx.blocking_recv() {
                // One write per line, unbuffered: a line on stdout is an acknowledgement.
                if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
                    break;
                }
            }
        });
        for t in tasks {
            let _ = t.await;
        }
        let _ = printer.await;
        ExitCode::SUCCESS
    })
}
