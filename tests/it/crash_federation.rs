//! Real node processes under load, killed with SIGKILL at random moments and
//! restarted (50 cycles): concurrent hospitals keep retrying each request
//! with its msgid until answered; then the month is closed. Counted from the
//! hospitals' acknowledged results against both ledgers: nothing lost,
//! nothing doubled, and the statement equals the receipts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use xclear::api::envelope::{peek, seal, HOSPITAL_DOMAIN};
use xclear::node::records::{HomeSettlementEntry, OutcomeEntry};
use xclear::proto::hospital_service_client::HospitalServiceClient;
use xclear::proto::{hospital_request::Action, BillItem, ClaimResult, HospitalRequest};

use crate::common::procs::{confirm_all, two_nodes, write, xclear, xclear_as_operator, xclear_tls, NodeProc, TwoNodes};

const CYCLES: usize = 50;
const HOSPITAL_TASKS: usize = 6;
const PERSONS: usize = 5;

/// What a hospital was told for one msgid.
#[derive(Debug, Clone)]
struct Receipt {
    setl_id: String,
    month: String,
    fund_pay: Decimal,
}

fn federation() -> TwoNodes {
    let fed = two_nodes(None, None);
    let d = fed.dir.path();
    let persons: Vec<serde_json::Value> = (0..PERSONS)
        .map(|i| serde_json::json!({"psn_no": format!("P{i:04}"), "insuplc_admdvs": "611000", "insutype": "390"}))
        .collect();
    write(&d.join("persons.json"), &serde_json::to_string(&persons).expect("json"));
    fed
}

fn register_everyone(fed: &TwoNodes) {
    let d = fed.dir.path();
    for i in 0..PERSONS {
        let file = d.join(format!("reg{i}.json"));
        write(
            &file,
            &format!(
                r#"{{"msgid": "r{i}", "op": "create", "psn_no": "P{i:04}", "kind": "long_term_resident", "target_admdvs": "110000", "begndate": "2026-01-01"}}"#
            ),
        );
        let key = d.join("admin.key");
        let out = xclear_tls(
            &fed.ca,
            &[
                "registration",
                "apply",
                "--node",
                &fed.home_url,
                "--key",
                key.to_str().expect("p"),
                "--admin",
                "agency",
                "--file",
                file.to_str().expect("p"),
            ],
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// One simulated hospital desk: sends requests one after another, each
/// retried with its msgid until the node answers.
async fn desk(
    task: usize,
    url: String,
    key: ed25519_dalek::SigningKey,
    tls: Arc<xclear::tls::Tls>,
    stop: Arc<AtomicBool>,
    receipts: Arc<Mutex<BTreeMap<String, Receipt>>>,
) -> Result<usize, String> {
    let channel = xclear::tls::endpoint(&url, Some(&tls), None)?.timeout(Duration::from_secs(10)).connect_lazy();
    let mut client = HospitalServiceClient::new(channel);
    let mut rng = rand::rngs::StdRng::seed_from_u64(task as u64);
    let mut settled_here: Vec<String> = Vec::new();
    let mut sent = 0;
    let today = chrono::Utc::now().with_timezone(&xclear::time::shanghai()).format("%Y-%m-%d").to_string();
    while !stop.load(Ordering::SeqCst) {
        sent += 1;
        let msgid = format!("c{task}-{sent}");
        let reverse = !settled_here.is_empty() && rng.gen_bool(0.1);
        let req = if reverse {
            let original = settled_here.swap_remove(rng.gen_range(0..settled_here.len()));
            HospitalRequest {
                fixmedins_code: "H1".into(),
                msgid: msgid.clone(),
                action: Action::Reverse as i32,
                psn_no: format!("P{:04}", task % PERSONS),
                insuplc_admdvs: "611000".into(),
                setl_date: today.clone(),
                reversed_msgid: original,
                ..HospitalRequest::default()
            }
        } else {
            HospitalRequest {
                fixmedins_code: "H1".into(),
                msgid: msgid.clone(),
                action: Action::Settle as i32,
                psn_no: format!("P{:04}", task % PERSONS),
                insuplc_admdvs: "611000".into(),
                setl_date: today.clone(),
                items: vec![BillItem {
                    code: "XB001".into(),
                    qty: "1".into(),
                    price: format!("{}.{:02}", rng.gen_range(50..3000), rng.gen_range(0..100)),
                }],
                ..HospitalRequest::default()
            }
        };
        let env = seal(&key, HOSPITAL_DOMAIN, "H1", &req);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match client.submit(env.clone()).await {
                Ok(resp) => {
                    let r = resp.into_inner();
                    if !r.settled {
                        return Err(format!("{msgid} refused: {} {}", r.refusal, r.message));
                    }
                    let f = r.figures.unwrap_or_default();
                    let fund_pay = Decimal::from_str(&f.fund_pay_sumamt).map_err(|e| e.to_string())?;
                    let receipt = Receipt { setl_id: r.setl_id, month: r.month, fund_pay };
                    receipts.lock().map_err(|e| e.to_string())?.insert(msgid.clone(), receipt);
                    if !reverse {
                        settled_here.push(msgid.clone());
                    }
                    break;
                }
                // The node is down, restarting, or cannot reach the home node yet: ask again.
                Err(s)
                    if matches!(
                        s.code(),
                        tonic::Code::Unavailable
                            | tonic::Code::DeadlineExceeded
                            | tonic::Code::Unknown
                            | tonic::Code::Cancelled
                    ) => {}
                Err(s) => return Err(format!("{msgid}: {} {}", s.code(), s.message())),
            }
            if Instant::now() > deadline {
                return Err(format!("{msgid}: no answer within 120 s"));
            }
            tokio::time::sleep(Duration::from_millis(rng.gen_range(20..80))).await;
        }
    }
    Ok(sent)
}

fn export(dir: &Path) -> Vec<serde_json::Value> {
    let out = xclear(&["ledger", "export", "--db", dir.to_str().expect("p")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

#[test]
fn nodes_killed_under_load_lose_and_double_nothing() {
    let fed = federation();
    let d = fed.dir.path();
    let import = xclear(&[
        "persons",
        "import",
        "--config",
        fed.home_cfg.to_str().expect("p"),
        "--file",
        d.join("persons.json").to_str().expect("p"),
    ]);
    assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));
    let mut home = Some(NodeProc::start(&fed.home_cfg));
    let mut bj = Some(NodeProc::start(&fed.bj_cfg));
    register_everyone(&fed);

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let stop = Arc::new(AtomicBool::new(false));
    let receipts: Arc<Mutex<BTreeMap<String, Receipt>>> = Arc::default();
    let key = xclear::crypto::load_signing_key(&d.join("h1.key")).expect("hospital key");
    let desks: Vec<_> = (0..HOSPITAL_TASKS)
        .map(|t| {
            rt.spawn(desk(t, fed.bj_url.clone(), key.clone(), fed.tls("h1"), Arc::clone(&stop), Arc::clone(&receipts)))
        })
        .collect();

    let mut rng = rand::rngs::StdRng::seed_from_u64(20261122);
    let (mut home_kills, mut bj_kills) = (0, 0);
    for _ in 0..CYCLES {
        std::thread::sleep(Duration::from_millis(rng.gen_range(100..700)));
        let victim = rng.gen_range(0..3);
        if victim != 1 {
            home.take().expect("home").kill();
            home_kills += 1;
        }
        if victim != 0 {
            bj.take().expect("bj").kill();
            bj_kills += 1;
        }
        if home.is_none() {
            home = Some(NodeProc::start(&fed.home_cfg));
        }
        if bj.is_none() {
            bj = Some(NodeProc::start(&fed.bj_cfg));
        }
    }
    stop.store(true, Ordering::SeqCst);
    let mut sent = 0;
    for h in desks {
        sent += rt.block_on(h).expect("desk task").unwrap_or_else(|e| panic!("a desk failed: {e}"));
    }
    let receipts = receipts.lock().expect("receipts").clone();
    assert!(receipts.len() > 50, "too little load to mean anything: {} acknowledged", receipts.len());

    // Month end from the live nodes.
    let months: BTreeSet<String> = receipts.values().map(|r| r.month.clone()).collect();
    let op = d.join("operator.toml");
    let op = op.to_str().expect("p");
    for month in &months {
        // Months close in order, each once it is over (the operator's clock
        // runs ahead) and after the one before is final.
        let early = xclear(&["clearing", "close", "--config", op, "--month", month]);
        assert!(!early.status.success(), "{month} closed by the real clock, before it was over");
        assert!(
            String::from_utf8_lossy(&early.stderr).contains("month_not_over")
                || String::from_utf8_lossy(&early.stderr).contains("is not over"),
            "{}",
            String::from_utf8_lossy(&early.stderr)
        );
        let closed = xclear_as_operator(&["clearing", "close", "--config", op, "--month", month]);
        assert!(closed.status.success(), "{}", String::from_utf8_lossy(&closed.stderr));
        let json = xclear(&["clearing", "statement", "--config", op, "--month", month, "--format", "json"]);
        let s: serde_json::Value = serde_json::from_slice(&json.stdout).expect("statement");
        assert!(s["pending"].as_array().expect("pending").is_empty(), "{}", s["pending"]);
        let net = Decimal::from_str(s["positions"]["110000"]["net"].as_str().expect("net")).expect("net");
        let receipted: Decimal = receipts.values().filter(|r| &r.month == month).map(|r| r.fund_pay).sum();
        assert_eq!(net, receipted, "{month}: statement against the hospitals' receipts");
        confirm_all(op, month, d, &[("611000", "611000.key"), ("110000", "110000.key")]);
    }
    home.take().expect("home").kill();
    bj.take().expect("bj").kill();

    // Both ledgers verify; count from the hospitals' receipts.
    for data in ["data/611000", "data/110000"] {
        let v = xclear(&["ledger", "verify", "--db", d.join(data).to_str().expect("p")]);
        assert!(v.status.success(), "{data}: {}", String::from_utf8_lossy(&v.stderr));
    }
    let mut at_home: BTreeMap<String, usize> = BTreeMap::new();
    let mut home_claims: BTreeMap<String, usize> = BTreeMap::new();
    for e in export(&d.join("data/611000")) {
        if e["kind"] == "settlement" || e["kind"] == "reversal" {
            let rec: HomeSettlementEntry =
                serde_json::from_str(e["payload"].as_str().expect("payload")).expect("entry");
            *at_home.entry(rec.setl_id).or_default() += 1;
            *home_claims.entry(e["key"].as_str().expect("key").to_string()).or_default() += 1;
        }
    }
    let mut at_treatment: BTreeMap<String, usize> = BTreeMap::new();
    for e in export(&d.join("data/110000")) {
        if e["kind"] == "settlement" || e["kind"] == "reversal" {
            let o: OutcomeEntry = serde_json::from_str(e["payload"].as_str().expect("payload")).expect("outcome");
            let r: ClaimResult = peek(&o.result.to_signed().expect("signed")).expect("result");
            *at_treatment.entry(r.setl_id).or_default() += 1;
        }
    }
    let lost = receipts
        .values()
        .filter(|r| !at_home.contains_key(&r.setl_id) || !at_treatment.contains_key(&r.setl_id))
        .count();
    let distinct: BTreeSet<&String> = receipts.values().map(|r| &r.setl_id).collect();
    let duplicated =
        at_home.values().chain(at_treatment.values()).chain(home_claims.values()).filter(|n| **n > 1).count()
            + (receipts.len() - distinct.len());
    println!(
        "crash test: cycles={CYCLES} kills home={home_kills} treatment={bj_kills} requests={sent} acknowledged={} lost={lost} duplicated={duplicated}",
        receipts.len()
    );
    assert_eq!((lost, duplicated), (0, 0));
    assert_eq!(at_home.len(), receipts.len(), "every settlement committed at home reached its hospital");
}
