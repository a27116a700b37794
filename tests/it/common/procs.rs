//! Real `xclear` processes for the tests: run the CLI, start and kill nodes.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub(crate) fn xclear(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xclear")).args(args).output().expect("run xclear")
}

/// `xclear ARGS` as a client of a TLS federation whose CA is `ca` (`XCLEAR_CA`).
pub(crate) fn xclear_tls(ca: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xclear")).env("XCLEAR_CA", ca).args(args).output().expect("run xclear")
}

impl TwoNodes {
    /// The TLS identity of the holder of `dir/<stem>.key`.
    pub(crate) fn tls(&self, stem: &str) -> std::sync::Arc<xclear::tls::Tls> {
        let d = self.dir.path();
        let key = xclear::crypto::load_signing_key(&d.join(format!("{stem}.key"))).expect("key");
        let files = xclear::tls::TlsFiles { ca: self.ca.clone(), cert: d.join(format!("{stem}.crt")), server: None };
        std::sync::Arc::new(xclear::tls::Tls::load(&files, &key).expect("identity"))
    }
}

/// How far ahead the operator's clock runs in the process tests: the month
/// the nodes settle in by the real clock is over for the operator (plus its
/// grace), so it may close. Debian's libfaketime (`faketime`, which `make
/// test-deps` installs) shifts that one process's wall clock; the nodes keep
/// real time, as a node behind the operator's clock would.
pub(crate) const OPERATOR_AHEAD: &str = "+40d";

fn operator_command() -> Command {
    let mut c = Command::new("faketime");
    c.args(["-f", OPERATOR_AHEAD, env!("CARGO_BIN_EXE_xclear")]).env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    c
}

/// `xclear ARGS` with the operator's clock ([`OPERATOR_AHEAD`]).
pub(crate) fn xclear_as_operator(args: &[&str]) -> Output {
    operator_command().args(args).output().expect("run xclear under faketime (apt-get install faketime)")
}

/// `xclear clearing confirm` of `month` by each (region, key file) in `dir`.
pub(crate) fn confirm_all(op_config: &str, month: &str, dir: &Path, regions: &[(&str, &str)]) {
    for (region, key) in regions {
        let c = xclear_as_operator(&[
            "clearing",
            "confirm",
            "--config",
            op_config,
            "--month",
            month,
            "--region",
            region,
            "--key",
            dir.join(key).to_str().expect("p"),
        ]);
        assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    }
}

pub(crate) fn keygen(path: &Path) -> String {
    let out = xclear(&["keygen", "--out", path.to_str().expect("path")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

pub(crate) struct NodeProc {
    child: Child,
    stderr_lines: mpsc::Receiver<String>,
    /// The address the server printed it listens on.
    pub addr: String,
}

impl NodeProc {
    pub(crate) fn start(config: &Path) -> NodeProc {
        NodeProc::spawn("node", config)
    }

    /// `xclear operator --config FILE`, its clock [`OPERATOR_AHEAD`].
    pub(crate) fn start_operator(config: &Path) -> NodeProc {
        NodeProc::spawn_with(operator_command(), "operator", config)
    }

    fn spawn(command: &str, config: &Path) -> NodeProc {
        NodeProc::spawn_with(Command::new(env!("CARGO_BIN_EXE_xclear")), command, config)
    }

    fn spawn_with(mut cmd: Command, command: &str, config: &Path) -> NodeProc {
        use std::os::unix::process::CommandExt;
        // Its own process group: stopping it stops faketime's child too.
        let mut child = cmd
            .args([command, "--config", config.to_str().expect("path")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn node");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).expect("node did not start");
        assert!(line.contains("listening on"), "{line}");
        let addr = line.rsplit(' ').next().unwrap_or_default().to_string();
        let stderr = child.stderr.take().expect("stderr");
        let (etx, erx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = etx.send(line);
            }
        });
        NodeProc { child, stderr_lines: erx, addr }
    }

    /// Waits until a log line contains `text`.
    pub(crate) fn wait_for_log(&self, text: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    pub(crate) fn kill(mut self) {
        self.stop();
    }

    /// Sends SIGTERM and waits (at most `timeout`) for the process to exit;
    /// its exit status, if it did.
    pub(crate) fn terminate(mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
        assert!(sent.success());
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn stop(&mut self) {
        // SIGKILL to the whole group (under faketime the server is its child).
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test that fails part way leaves no node running behind it.
impl Drop for NodeProc {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
}

/// A home node (611000, agency admin) and a treatment node (110000, hospital
/// `H1`) to run as separate processes: keys, node configs and an operator
/// config over both, in a fresh directory.
pub(crate) struct TwoNodes {
    pub dir: tempfile::TempDir,
    /// The CA certificate (`xclear tls dev` in `dir`; every key there has its `.crt`).
    pub ca: std::path::PathBuf,
    pub home_cfg: std::path::PathBuf,
    pub bj_cfg: std::path::PathBuf,
    pub home_url: String,
    pub bj_url: String,
    pub bj_port: u16,
}

/// `metrics_port`: Beijing serves metrics there; `quota`: the operator's
/// advance-fund quota for 611000.
pub(crate) fn two_nodes(metrics_port: Option<u16>, quota: Option<&str>) -> TwoNodes {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let home_pub = keygen(&d.join("611000.key"));
    let bj_pub = keygen(&d.join("110000.key"));
    let h1_pub = keygen(&d.join("h1.key"));
    let admin_pub = keygen(&d.join("admin.key"));
    let operator_pub = keygen(&d.join("operator.key"));
    // A development CA and a certificate for every key: TLS everywhere.
    let tls = xclear(&["tls", "dev", "--keys", d.to_str().expect("dir"), "--name", "process tests"]);
    assert!(tls.status.success(), "{}", String::from_utf8_lossy(&tls.stderr));
    let (home_port, bj_port) = (free_port(), free_port());
    let rules = super::rules_dir();
    let rules = rules.to_str().expect("rules");
    let home_cfg = d.join("home.toml");
    write(
        &home_cfg,
        &format!(
            "region = \"611000\"\nlisten = \"127.0.0.1:{home_port}\"\ndata_dir = \"data/611000\"\nkey_file = \"611000.key\"\nrules_dir = \"{rules}\"\noperator_key = \"{operator_pub}\"\n\
             [tls]\nca = \"ca.crt\"\ncert = \"611000.crt\"\nserver_cert = \"611000.server.crt\"\nserver_key = \"611000.server.pem\"\n\
             [[peers]]\nregion = \"110000\"\nendpoint = \"https://127.0.0.1:{bj_port}\"\npublic_key = \"{bj_pub}\"\n\
             [[admins]]\nname = \"agency\"\npublic_key = \"{admin_pub}\"\n"
        ),
    );
    let metrics = metrics_port.map(|p| format!("metrics_listen = \"127.0.0.1:{p}\"\n")).unwrap_or_default();
    let bj_cfg = d.join("bj.toml");
    write(
        &bj_cfg,
        &format!(
            "region = \"110000\"\nlisten = \"127.0.0.1:{bj_port}\"\ndata_dir = \"data/110000\"\nkey_file = \"110000.key\"\nrules_dir = \"{rules}\"\n{metrics}operator_key = \"{operator_pub}\"\n\
             [tls]\nca = \"ca.crt\"\ncert = \"110000.crt\"\nserver_cert = \"110000.server.crt\"\nserver_key = \"110000.server.pem\"\n\
             [[peers]]\nregion = \"611000\"\nendpoint = \"https://127.0.0.1:{home_port}\"\npublic_key = \"{home_pub}\"\n\
             [[hospitals]]\ncode = \"H1\"\nlevel = 3\npublic_key = \"{h1_pub}\"\n"
        ),
    );
    let quotas = quota.map(|q| format!("[[quotas]]\nregion = \"611000\"\namount = \"{q}\"\n")).unwrap_or_default();
    write(
        &d.join("operator.toml"),
        &format!(
            "data_dir = \"operator\"\nkey_file = \"operator.key\"\nrules_dir = \"{rules}\"\nlisten = \"127.0.0.1:0\"\n\
             [tls]\nca = \"ca.crt\"\ncert = \"operator.crt\"\nserver_cert = \"operator.server.crt\"\nserver_key = \"operator.server.pem\"\n\
             [[nodes]]\nregion = \"611000\"\nendpoint = \"https://127.0.0.1:{home_port}\"\npublic_key = \"{home_pub}\"\n\
             [[nodes]]\nregion = \"110000\"\nendpoint = \"https://127.0.0.1:{bj_port}\"\npublic_key = \"{bj_pub}\"\n{quotas}"
        ),
    );
    TwoNodes {
        ca: d.join("ca.crt"),
        home_url: format!("https://127.0.0.1:{home_port}"),
        bj_url: format!("https://127.0.0.1:{bj_port}"),
        bj_port,
        home_cfg,
        bj_cfg,
        dir,
    }
}
