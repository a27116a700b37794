//! Every `sh` block of README.md and examples/README.md runs as written, in
//! order, as one script (a copy of the repository's examples/,
//! clearing_rules/, tests/interop/ and tests/cases/, `xclear` on the PATH), so the documented commands cannot
//! rot. Conventions the documents follow: a command whose trailing comment
//! is `# refused: REASON` must fail, saying REASON (the documents themselves
//! wait for the servers they start); blocks fenced `shell` are shown, not run
//! (the Makefile's targets, which CI runs, and tools this machine cannot
//! install).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The `sh` blocks of a Markdown text, in order.
fn sh_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// The script that runs `blocks` as written, but that `# refused: REASON`
/// lines must fail saying REASON.
fn script(blocks: &[String]) -> String {
    let mut out = String::from("set -eo pipefail\n");
    for block in blocks {
        let mut pending = String::new();
        for line in block.lines() {
            // A continued command is one command.
            if let Some(head) = line.strip_suffix('\\') {
                pending.push_str(head);
                continue;
            }
            let line = std::mem::take(&mut pending) + line;
            let code = line.split(" #").next().unwrap_or_default().trim_end();
            if let Some((_, reason)) = line.split_once("# refused: ") {
                let reason = reason.trim();
                out.push_str(&format!(
                    "if out=$({code} 2>&1); then echo 'expected a refusal: {code}' >&2; exit 1; fi\n\
                     echo \"$out\"\n\
                     case \"$out\" in *\"{reason}\"*) ;; *) echo 'expected {reason}: {code}' >&2; exit 1;; esac\n"
                ));
            } else {
                out.push_str(&line);
                out.push('\n');
            }
        }
    }
    out
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `doc`'s blocks in `dir` (relative to a fresh copy of the repository's
/// examples/ and clearing_rules/); kills whatever they left running.
/// Returns the script's standard output.
fn run_document(doc: &str, dir: &str) -> String {
    let text = std::fs::read_to_string(repo().join(doc)).expect("document");
    let blocks = sh_blocks(&text);
    assert!(!blocks.is_empty(), "{doc} has no sh blocks");
    let root = tempfile::tempdir().expect("tempdir");
    crate::common::copy_dir(&repo().join("examples"), &root.path().join("examples"));
    crate::common::copy_dir(&repo().join("clearing_rules"), &root.path().join("clearing_rules"));
    crate::common::copy_dir(&repo().join("tests/interop"), &root.path().join("tests/interop"));
    crate::common::copy_dir(&repo().join("tests/cases"), &root.path().join("tests/cases"));
    let bin = Path::new(env!("CARGO_BIN_EXE_xclear")).parent().expect("bin dir");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let script = script(&blocks);
    // From a file: a `pkill -f` of the documents must not match the script's own command line.
    let file = root.path().join("documented-commands.sh");
    std::fs::write(&file, &script).expect("script");
    // To files, not pipes: a chatty step cannot block on a full pipe.
    let (stdout, stderr) = (root.path().join("stdout"), root.path().join("stderr"));
    let mut child = {
        use std::os::unix::process::CommandExt;
        Command::new("bash")
            .arg(&file)
            .current_dir(root.path().join(dir))
            .env("PATH", path)
            .env("RUST_LOG", "warn")
            .stdout(std::fs::File::create(&stdout).expect("stdout"))
            .stderr(std::fs::File::create(&stderr).expect("stderr"))
            .process_group(0)
            .spawn()
            .expect("bash")
    };
    let pgid = child.id();
    let deadline = Instant::now() + Duration::from_secs(300);
    while child.try_wait().expect("wait").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    // Whatever the script left running (a failed step leaves servers up).
    let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pgid}")]).status();
    let status = child.wait().expect("wait");
    let (out, err) =
        (std::fs::read_to_string(&stdout).unwrap_or_default(), std::fs::read_to_string(&stderr).unwrap_or_default());
    assert!(
        status.success(),
        "{doc}: a documented command failed ({status:?})\n--- script\n{script}\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    out
}

#[test]
fn the_scripts_conventions() {
    let blocks = sh_blocks(
        "text\n```sh\nfor r in a b; do\n  x $r &\ndone\ny   # refused: no_way\nz \\\n  --flag\n```\n```shell\nnot run\n```\n",
    );
    assert_eq!(blocks.len(), 1);
    let s = script(&blocks);
    assert!(s.contains("done\ny") || s.contains("done\nif"), "{s}");
    assert!(s.contains("if out=$(y 2>&1); then"), "{s}");
    assert!(s.contains("*\"no_way\"*"), "{s}");
    assert!(s.contains("z   --flag\n"), "{s}");
    assert!(!s.contains("not run"), "{s}");
}

/// The example federation's walkthrough: seven nodes, the operator, a month end.
#[test]
fn every_command_of_the_examples_readme_runs() {
    let out = run_document("examples/README.md", "examples");
    for step in [
        "\"hifp_pay\": \"31500.00\"",
        "\"hifp_pay\": \"600.00\"",
        "Clearing statement",
        "disputed lines of statement",
        "every region has confirmed: the statement is final",
        "\"payable\":",
        "\"outcome\":\"accepted\"",
        "the same sample",
        "id=\"state\">final",
        "401",
    ] {
        assert!(out.contains(step), "the walkthrough did not reach {step}:\n{out}");
    }
}

/// The README's own commands (from the repository's root).
#[test]
fn every_command_of_the_readme_runs() {
    let out = run_document("README.md", ".");
    assert!(out.contains("\"hifp_pay\": \"31500.00\""), "worked example A:\n{out}");
}
