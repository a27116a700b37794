//! Separate `xclear node` processes on 127.0.0.1: registration and settlement
//! through the CLI agree with `xclear calc`; a Python grpcio client settles;
//! a treatment node killed with an in-flight intent completes it on restart,
//! with nothing lost or doubled.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::procs::{free_port, two_nodes, write, xclear, xclear_as_operator, xclear_tls, NodeProc};

struct Setup {
    dir: tempfile::TempDir,
    ca: PathBuf,
    home_cfg: PathBuf,
    bj_cfg: PathBuf,
    home_url: String,
    bj_url: String,
    bj_port: u16,
    metrics_port: u16,
}

fn setup() -> Setup {
    let metrics_port = free_port();
    let nodes = two_nodes(Some(metrics_port), Some("50000.00"));
    let d = nodes.dir.path();
    write(&d.join("persons.json"), r#"[{"psn_no": "P0001", "insuplc_admdvs": "611000", "insutype": "390"}]"#);
    write(
        &d.join("reg.json"),
        r#"{"msgid": "r1", "op": "create", "psn_no": "P0001", "kind": "long_term_resident", "target_admdvs": "110000", "begndate": "2026-01-01"}"#,
    );
    let bill = |msgid: &str| {
        format!(
            r#"{{"fixmedins_code": "H1", "msgid": "{msgid}", "psn_no": "P0001", "insuplc_admdvs": "611000", "setl_date": "2026-03-10",
               "items": [{{"code": "XC001", "qty": "1", "price": "3000.00"}}, {{"code": "FW001", "qty": "10", "price": "150.00"}},
                         {{"code": "XB001", "qty": "1", "price": "10000.00"}}, {{"code": "XA001", "qty": "1", "price": "35500.00"}}]}}"#
        )
    };
    write(&d.join("bill1.json"), &bill("m1"));
    write(&d.join("bill2.json"), &bill("m2"));
    Setup {
        ca: nodes.ca,
        home_url: nodes.home_url,
        bj_url: nodes.bj_url,
        bj_port: nodes.bj_port,
        metrics_port,
        home_cfg: nodes.home_cfg,
        bj_cfg: nodes.bj_cfg,
        dir: nodes.dir,
    }
}

fn settle(s: &Setup, bill: &str) -> Output {
    let d = s.dir.path();
    xclear_tls(
        &s.ca,
        &[
            "hospital",
            "settle",
            "--node",
            &s.bj_url,
            "--key",
            d.join("h1.key").to_str().expect("p"),
            "--bill",
            d.join(bill).to_str().expect("p"),
        ],
    )
}

/// `xclear persons import` of persons.json into the (stopped) home node.
fn import_persons(s: &Setup) {
    let d = s.dir.path();
    let import = xclear(&[
        "persons",
        "import",
        "--config",
        s.home_cfg.to_str().expect("p"),
        "--file",
        d.join("persons.json").to_str().expect("p"),
    ]);
    assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));
}

/// `xclear registration apply` of `file`, signed by the home node's admin.
fn register(s: &Setup, file: &str) -> Output {
    let d = s.dir.path();
    xclear_tls(
        &s.ca,
        &[
            "registration",
            "apply",
            "--node",
            &s.home_url,
            "--key",
            d.join("admin.key").to_str().expect("p"),
            "--admin",
            "agency",
            "--file",
            d.join(file).to_str().expect("p"),
        ],
    )
}

#[test]
fn separate_processes_settle_and_recover_in_flight_intents() {
    let s = setup();
    let d = s.dir.path();
    import_persons(&s);
    let home = NodeProc::start(&s.home_cfg);
    let bj = NodeProc::start(&s.bj_cfg);

    let reg = register(&s, "reg.json");
    assert!(reg.status.success(), "{}", String::from_utf8_lossy(&reg.stderr));

    // The worked example through the hospital client equals calc.
    let out = settle(&s, "bill1.json");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(r["settled"], true, "{r}");
    let calc = match xclear::calc::run_case(&common::rules(), &common::example_case().to_string()).expect("case") {
        xclear::calc::CalcOutcome::Settled(j) => serde_json::from_str::<serde_json::Value>(&j).expect("json"),
        other => panic!("{other:?}"),
    };
    for k in ["route", "medfee_sumamt", "hifp_pay", "hifmi_pay", "maf_pay", "fund_pay_sumamt", "psn_part_amt"] {
        assert_eq!(r["figures"][k], calc[k], "{k}");
    }

    // A client nobody here wrote: Python grpcio with stubs generated from proto/.
    let proto = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("proto");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/settle.py");
    let py = Command::new("python3")
        .arg(&script)
        .arg(&proto)
        .arg(format!("127.0.0.1:{}", s.bj_port))
        .arg(d.join("h1.key"))
        .args(["H1", "py1"])
        .args([&s.ca, &d.join("h1.crt"), &d.join("h1.pem")])
        .output()
        .expect("python3");
    assert!(
        py.status.success(),
        "python interop failed (needs `pip install -r tests/interop/requirements.txt`, which `make test` does): {}",
        String::from_utf8_lossy(&py.stderr)
    );
    let pr: serde_json::Value = serde_json::from_slice(&py.stdout).expect("python json");
    assert_eq!(pr["settled"], true, "{pr}");
    assert_eq!(pr["hifp_pay"], "700.00");
    // A reflection client that speaks only v1alpha (grpcio-reflection) lists
    // what the node serves.
    let reflect = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/reflect.py");
    let py = Command::new("python3")
        .arg(&reflect)
        .arg(format!("127.0.0.1:{}", s.bj_port))
        .args([&s.ca, &d.join("h1.crt"), &d.join("h1.pem")])
        .output()
        .expect("python3");
    assert!(py.status.success(), "reflection v1alpha failed: {}", String::from_utf8_lossy(&py.stderr));
    let services: Vec<String> = serde_json::from_slice(&py.stdout).expect("python json");
    for s in
        ["xclear.v1.HospitalService", "xclear.v1.PeerService", "xclear.v1.RegistrationService", "grpc.health.v1.Health"]
    {
        assert!(services.iter().any(|n| n == s), "{s} missing from {services:?}");
    }
    assert!(!services.iter().any(|n| n.contains("OperatorService")), "{services:?}");

    // Prometheus metrics: requests by outcome, latency histogram, ledger size, batches.
    let metrics = {
        use std::io::{Read, Write};
        let mut sock = std::net::TcpStream::connect(("127.0.0.1", s.metrics_port)).expect("metrics port");
        sock.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").expect("write");
        let mut text = String::new();
        sock.read_to_string(&mut text).expect("read");
        text
    };
    assert!(metrics.contains("xclear_hospital_requests_total{outcome=\"settled\"} 2"), "{metrics}");
    assert!(metrics.contains("xclear_hospital_request_seconds_count 2"), "{metrics}");
    assert!(metrics.contains("xclear_ledger_entries 4"), "{metrics}");
    // One after the other, each claim went to the home node in its own batch.
    assert!(metrics.contains("xclear_peer_claim_batches_total 2"), "{metrics}");
    assert!(metrics.contains("xclear_peer_claims_batched_total 2"), "{metrics}");
    // The standard tool agrees: every family with HELP and TYPE, names and
    // types as Prometheus wants them (promtool, from Debian's prometheus,
    // which `make test-deps` installs).
    let body = metrics.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (apt-get install prometheus; make test-deps does)");
    std::io::Write::write_all(&mut promtool.stdin.take().expect("stdin"), body.as_bytes()).expect("write");
    let checked = promtool.wait_with_output().expect("promtool");
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}\n{body}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // Home down: the settlement is refused as unreachable, its intent stays.
    home.kill();
    let out = settle(&s, "bill2.json");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("home_unreachable"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The treatment node dies too; both come back; the intent completes on start.
    bj.kill();
    let home = NodeProc::start(&s.home_cfg);
    let bj = NodeProc::start(&s.bj_cfg);
    assert!(
        bj.wait_for_log("re-driven intents completed", Duration::from_secs(30)),
        "the in-flight intent was not re-driven"
    );
    // The hospital's retry gets the completed settlement.
    let out = settle(&s, "bill2.json");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r2: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(r2["settled"], true);

    // Month end: the operator closes the month from both nodes' signed reports.
    let month = r2["month"].as_str().expect("month").to_string();
    let op = d.join("operator.toml");
    let op = op.to_str().expect("p");
    // By the real clock the month is not over: refused. The operator's
    // clock runs ahead (`OPERATOR_AHEAD`): closed.
    let early = xclear(&["clearing", "close", "--config", op, "--month", &month]);
    assert!(
        String::from_utf8_lossy(&early.stderr).contains("is not over"),
        "{}",
        String::from_utf8_lossy(&early.stderr)
    );
    assert!(!early.status.success());
    let closed = xclear_as_operator(&["clearing", "close", "--config", op, "--month", &month]);
    assert!(closed.status.success(), "{}", String::from_utf8_lossy(&closed.stderr));
    let table = String::from_utf8_lossy(&closed.stdout).to_string();
    assert!(table.contains("611000") && table.contains("110000") && table.contains("sum"), "{table}");
    let json = xclear(&["clearing", "statement", "--config", op, "--month", &month, "--format", "json"]);
    let statement: serde_json::Value = serde_json::from_slice(&json.stdout).expect("statement json");
    let net = |r: &str| {
        rust_decimal::Decimal::from_str_exact(statement["positions"][r]["net"].as_str().expect("net")).expect("decimal")
    };
    assert!(net("110000") > rust_decimal::Decimal::ZERO);
    assert_eq!(net("110000") + net("611000"), rust_decimal::Decimal::ZERO);
    assert!(statement["pending"].as_array().expect("pending").is_empty());
    let csv = xclear(&["clearing", "statement", "--config", op, "--month", &month, "--format", "csv"]);
    assert!(String::from_utf8_lossy(&csv.stdout).starts_with("section,region,counterpart,amount,detail"));
    // Beside the operator's ledger, the same statement as files.
    let statements = d.join("operator").join("statements");
    let file = |ext: &str| std::fs::read(statements.join(format!("{month}.{ext}"))).expect("statement file");
    assert_eq!([file("json"), b"\n".to_vec()].concat(), json.stdout);
    assert_eq!(file("csv"), csv.stdout);
    let adv = xclear(&["clearing", "advance", "--config", op, "--month", &month]);
    assert!(adv.status.success(), "{}", String::from_utf8_lossy(&adv.stderr));
    assert!(String::from_utf8_lossy(&adv.stdout).contains("611000"));

    // The same operator as a long-running server: the same statement, closing
    // again gives the same bytes, and only the operator's key may close.
    let server = NodeProc::start_operator(Path::new(op));
    let url = format!("https://{}", server.addr);
    let region_key = d.join("611000.key");
    let region_key = region_key.to_str().expect("p");
    let remote = xclear_tls(
        &s.ca,
        &["clearing", "statement", "--operator", &url, "--key", region_key, "--month", &month, "--format", "json"],
    );
    assert!(remote.status.success(), "{}", String::from_utf8_lossy(&remote.stderr));
    assert_eq!(remote.stdout, json.stdout, "the server serves the statement closed locally");
    let operator_key = d.join("operator.key");
    let operator_key = operator_key.to_str().expect("p");
    std::fs::remove_dir_all(&statements).expect("remove the statement files");
    let again = xclear_tls(
        &s.ca,
        &["clearing", "close", "--operator", &url, "--operator-key", operator_key, "--month", &month],
    );
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(String::from_utf8_lossy(&again.stdout), String::from_utf8_lossy(&closed.stdout));
    // Closed through the server, the statement files are written there too.
    assert_eq!([file("json"), b"\n".to_vec()].concat(), json.stdout);
    assert_eq!(file("csv"), csv.stdout);
    let not_operator =
        xclear_tls(&s.ca, &["clearing", "close", "--operator", &url, "--operator-key", region_key, "--month", &month]);
    assert!(!not_operator.status.success());
    assert!(String::from_utf8_lossy(&not_operator.stderr).contains("not_authorised"));
    let unsigned = xclear_tls(&s.ca, &["clearing", "close", "--operator", &url, "--month", &month]);
    assert!(!unsigned.status.success(), "close without --operator-key");
    let adv = xclear_tls(&s.ca, &["clearing", "advance", "--operator", &url, "--key", region_key, "--month", &month]);
    assert!(adv.status.success(), "{}", String::from_utf8_lossy(&adv.stderr));
    assert!(String::from_utf8_lossy(&adv.stdout).contains("611000"));
    let confirm = |region: &str, key: &str| {
        xclear_tls(
            &s.ca,
            &[
                "clearing",
                "confirm",
                "--operator",
                &url,
                "--month",
                &month,
                "--region",
                region,
                "--key",
                d.join(key).to_str().expect("p"),
            ],
        )
    };
    // A key that is not the region's own is refused.
    assert!(!confirm("611000", "110000.key").status.success());
    let c = confirm("611000", "611000.key");
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    assert!(!String::from_utf8_lossy(&c.stdout).contains("final"));
    let c = confirm("110000", "110000.key");
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    assert!(String::from_utf8_lossy(&c.stdout).contains("final"), "both regions have confirmed");
    // Final: the month is not closed again.
    let final_close = xclear_tls(
        &s.ca,
        &["clearing", "close", "--operator", &url, "--operator-key", operator_key, "--month", &month],
    );
    assert!(
        String::from_utf8_lossy(&final_close.stderr).contains("month_final"),
        "{}",
        String::from_utf8_lossy(&final_close.stderr)
    );
    let not_closed =
        xclear_tls(&s.ca, &["clearing", "statement", "--operator", &url, "--key", region_key, "--month", "2031-01"]);
    assert!(String::from_utf8_lossy(&not_closed.stderr).contains("not_closed"));
    server.kill();
    home.kill();
    bj.kill();

    // Nothing lost, nothing doubled: three settlements at home, each once, and both ledgers verify.
    for data in ["data/611000", "data/110000"] {
        let v = xclear(&["ledger", "verify", "--db", d.join(data).to_str().expect("p")]);
        assert!(v.status.success(), "{data}: {}", String::from_utf8_lossy(&v.stderr));
    }
    let export = xclear(&["ledger", "export", "--db", d.join("data/611000").to_str().expect("p")]);
    assert!(export.status.success());
    let settlements: Vec<String> = String::from_utf8_lossy(&export.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "settlement")
        .filter_map(|v| v["key"].as_str().map(str::to_string))
        .collect();
    assert_eq!(settlements, vec!["claim:110000:H1:m1", "claim:110000:H1:py1", "claim:110000:H1:m2"]);
}

/// `xclear persons import --node`: an agency's admin enrols a person in a
/// running node from a file; the person can then register. Sent again, the
/// file adds nobody; signed with a key that is not the admin's, it is refused.
#[test]
fn the_persons_command_loads_a_running_node() {
    let s = setup();
    let d = s.dir.path();
    let home = NodeProc::start(&s.home_cfg);
    write(&d.join("new.json"), r#"[{"psn_no": "P0002", "insuplc_admdvs": "611000", "insutype": "310"}]"#);
    write(
        &d.join("reg2.json"),
        r#"{"msgid": "r2", "op": "create", "psn_no": "P0002", "kind": "long_term_resident", "target_admdvs": "110000", "begndate": "2026-01-01"}"#,
    );
    let import = |key: &str| {
        xclear_tls(
            &s.ca,
            &[
                "persons",
                "import",
                "--node",
                &s.home_url,
                "--admin",
                "agency",
                "--key",
                d.join(key).to_str().expect("p"),
                "--file",
                d.join("new.json").to_str().expect("p"),
            ],
        )
    };
    let before = register(&s, "reg2.json");
    assert!(!before.status.success());
    assert!(
        String::from_utf8_lossy(&before.stderr).contains("unknown_person"),
        "{}",
        String::from_utf8_lossy(&before.stderr)
    );

    // Signed by the hospital as "agency", over the hospital's own connection.
    let forged = import("h1.key");
    assert_eq!(forged.status.code(), Some(1), "{}", String::from_utf8_lossy(&forged.stderr));
    assert!(
        String::from_utf8_lossy(&forged.stderr).contains("not_authorised"),
        "{}",
        String::from_utf8_lossy(&forged.stderr)
    );

    let first = import("admin.key");
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert_eq!(String::from_utf8_lossy(&first.stdout).trim(), "1 persons added (1 in the file)");
    let again = import("admin.key");
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), "0 persons added (1 in the file)");

    let after = register(&s, "reg2.json");
    assert!(after.status.success(), "{}", String::from_utf8_lossy(&after.stderr));
    home.kill();
}

/// Issue 24's process behaviour: SIGTERM stops a node as cleanly as Ctrl-C
/// (exit 0, its ledger verifies); the hospital client exits like calc (0
/// settled, 3 refused, 2 bad input); keygen prints an existing key's public
/// half.
#[test]
fn sigterm_exit_codes_and_the_public_half_of_a_key() {
    let s = setup();
    let d = s.dir.path();
    import_persons(&s);
    let home = NodeProc::start(&s.home_cfg);
    let bj = NodeProc::start(&s.bj_cfg);
    // Not registered in Beijing: refused by the rules, exit 3.
    let refused = settle(&s, "bill1.json");
    assert_eq!(refused.status.code(), Some(3), "{}", String::from_utf8_lossy(&refused.stdout));
    // A bill that totals nothing is bad input, exit 2.
    write(
        &d.join("zero.json"),
        r#"{"fixmedins_code": "H1", "msgid": "z1", "psn_no": "P0001", "insuplc_admdvs": "611000", "setl_date": "2026-03-10",
            "items": [{"code": "XA001", "qty": "1", "price": "0.00"}]}"#,
    );
    let bad = settle(&s, "zero.json");
    assert_eq!(bad.status.code(), Some(2), "{}", String::from_utf8_lossy(&bad.stderr));
    let reg = register(&s, "reg.json");
    assert!(reg.status.success(), "{}", String::from_utf8_lossy(&reg.stderr));
    assert_eq!(settle(&s, "bill2.json").status.code(), Some(0));

    for (name, node) in [("home", home), ("treatment", bj)] {
        let status = node.terminate(Duration::from_secs(20)).unwrap_or_else(|| panic!("{name} ignored SIGTERM"));
        assert!(status.success(), "{name} exited {status:?} on SIGTERM");
    }
    for data in ["data/611000", "data/110000"] {
        let v = xclear(&["ledger", "verify", "--db", d.join(data).to_str().expect("p")]);
        assert!(v.status.success(), "{data}: {}", String::from_utf8_lossy(&v.stderr));
    }

    let public = xclear(&["keygen", "--out", d.join("fresh.key").to_str().expect("p")]);
    let again = xclear(&["keygen", "--public", d.join("fresh.key").to_str().expect("p")]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(again.stdout, public.stdout, "the same public half");
}
