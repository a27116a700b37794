//! `xclear demo`: prints what the federation did and the month's statement.

use std::path::PathBuf;
use std::process::ExitCode;

use xclear::clearing::Month;
use xclear::demo::{run_and_keep, DemoOptions};
use xclear::ledger::verify::verify_dir;

use super::{fail, EXIT_BAD_INPUT, EXIT_FAILED};

pub(crate) fn run(
    out: Option<PathBuf>,
    seed: u64,
    patients: usize,
    month: &str,
    rules: PathBuf,
    console: Option<String>,
) -> ExitCode {
    let Some(month) = Month::parse(month) else {
        return fail(EXIT_BAD_INPUT, format!("--month: {month:?} is not YYYY-MM"));
    };
    let (out, _keep) = match out {
        Some(dir) => (dir, None),
        None => match tempfile_dir() {
            Ok(d) => (d.clone(), Some(d)),
            Err(e) => return fail(EXIT_FAILED, e),
        },
    };
    if out.join("nodes").exists() {
        return fail(EXIT_BAD_INPUT, format!("{} already holds a demo; choose a fresh --out", out.display()));
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return fail(EXIT_FAILED, e),
    };
    println!(
        "xclear demo: 6 reference regions + Beijing + the operator, {patients} insured persons, month {month} \
         (--month), seed {seed} (--seed)"
    );
    let console = match console.map(|c| c.parse::<std::net::SocketAddr>()) {
        None => None,
        Some(Ok(a)) => Some(a),
        Some(Err(e)) => return fail(EXIT_BAD_INPUT, format!("--console-listen: {e}")),
    };
    let (report, running) = match rt.block_on(run_and_keep(DemoOptions {
        out: out.clone(),
        seed,
        patients,
        month,
        rules_dir: rules,
        progress: true,
    })) {
        Ok(r) => r,
        Err(e) => return fail(EXIT_FAILED, format!("demo failed: {e}")),
    };
    let serving = match console {
        Some(addr) => match rt.block_on(tokio::net::TcpListener::bind(addr)) {
            Ok(l) => Some((l, running)),
            Err(e) => {
                let _ = rt.block_on(running.stop());
                return fail(EXIT_FAILED, format!("--console-listen {addr}: {e}"));
            }
        },
        None => {
            if let Err(e) = rt.block_on(running.stop()) {
                return fail(EXIT_FAILED, format!("demo failed: {e}"));
            }
            None
        }
    };
    println!();
    print!("{}", report.statement.to_table());
    println!();
    println!(
        "settlements {}  refusals {}  pre-settlements {}  reversals {}  registrations filed {}",
        report.settled, report.refused, report.presettled, report.reversed, report.registrations
    );
    println!(
        "(refusals on purpose: the traffic includes patients without a registration, bills a hospital may not \
         settle and other cases the rules refuse)"
    );
    println!("statement sha256 {}  confirmed by every region: {}", report.statement_hash, report.final_confirmed);
    println!();
    print!("{}", hospitals_table(&report));

    println!(
        "time {:.1} s; data kept in {} (ledgers, statements/, hospitals/; remove with rm -r)",
        report.elapsed.as_secs_f64(),
        out.display()
    );
    let verify = |report: &xclear::demo::DemoReport| -> bool {
        let mut sound = true;
        for (region, dir) in &report.node_dirs {
            match verify_dir(dir, None) {
                Ok(v) => println!("ledger {region}: {} entries, verified", v.entries),
                Err(e) => {
                    sound = false;
                    println!("ledger {region}: NOT sound: {e}");
                }
            }
        }
        sound && report.statement.positions_sum() == xclear::money::Amount::ZERO
    };
    let Some((listener, running)) = serving else {
        if !verify(&report) {
            return ExitCode::from(EXIT_FAILED);
        }
        println!("(make demo-console, or xclear demo --serve: the same month in a browser)");
        return ExitCode::SUCCESS;
    };
    // Served: the ledgers are verified once the nodes have stopped.
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let token = hex::encode(rand::random::<[u8; 24]>());
    println!("console: http://{addr}/ token {token}");
    println!("(open http://{addr}/login?token={token} in a browser; Ctrl-C stops the federation)");
    if let Err(e) = rt.block_on(running.serve_console(listener, &token, super::shutdown_signal())) {
        return fail(EXIT_FAILED, e);
    }
    if verify(&report) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

/// Each region's institutions' statements, summed: what their region pays them.
fn hospitals_table(report: &xclear::demo::DemoReport) -> String {
    use std::collections::BTreeMap;
    use xclear::money::Amount;
    let mut by_region: BTreeMap<_, (usize, Amount, Amount, Amount, Amount, Amount)> = BTreeMap::new();
    for s in &report.hospitals {
        let e = by_region.entry(s.region).or_default();
        *e = (e.0 + 1, e.1 + s.settled, e.2 + s.holdback, e.3 + s.released, e.4 + s.deductions, e.5 + s.payable);
    }
    let mut out =
        String::from("Institutions' statements (what each region pays its hospitals and pharmacies for the month):\n");
    out.push_str(&format!(
        "{:<8} {:>5} {:>14} {:>12} {:>12} {:>12} {:>14} {:>14}\n",
        "region", "inst.", "settled", "held", "released", "deducted", "payable", "audit sample"
    ));
    for (region, (n, settled, held, released, deducted, payable)) in &by_region {
        let (drawn, of) = report.samples.get(region).copied().unwrap_or_default();
        out.push_str(&format!(
            "{:<8} {:>5} {:>14} {:>12} {:>12} {:>12} {:>14} {:>14}\n",
            region.to_string(),
            n,
            settled.to_string(),
            held.to_string(),
            released.to_string(),
            deducted.to_string(),
            payable.to_string(),
            format!("{drawn} of {of}")
        ));
    }
    out.push_str(
        "(654000 holds 5% of the fund payment for a month; each statement is in hospitals/<region>/<code>/)\n",
    );
    out
}

fn tempfile_dir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("xclear-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}
