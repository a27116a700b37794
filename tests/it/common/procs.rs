//! Real `xclear` processes for the tests: run the CLI, start and kill nodes.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn xclear(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xclear")).args(args).output().expect("run xclear")
}

pub fn keygen(path: &Path) -> String {
    let out = xclear(&["keygen", "--out", path.to_str().expect("path")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

pub struct NodeProc {
    child: Child,
    stderr_lines: mpsc::Receiver<String>,
}

impl NodeProc {
    pub fn start(config: &Path) -> NodeProc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_xclear"))
            .args(["node", "--config", config.to_str().expect("path")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
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
        let stderr = child.stderr.take().expect("stderr");
        let (etx, erx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = etx.send(line);
            }
        });
        NodeProc { child, stderr_lines: erx }
    }

    /// Waits until a log line contains `text`.
    pub fn wait_for_log(&self, text: &str, timeout: Duration) -> bool {
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

    pub fn kill(mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

pub fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
}
