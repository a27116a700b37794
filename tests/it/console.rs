//! The operator's console in a real browser (issue 27): a demo federation's
//! month, each page opened by headless Chromium (Debian's), its figures
//! checked against the statement, a screenshot taken, and no console
//! message allowed; tokens checked; a month with no statement says so.
//! `XCLEAR_UPDATE_SCREENSHOTS=1` also writes the README's screenshots into
//! `docs/console/`.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use scraper::{Html, Selector};
use xclear::clearing::Month;
use xclear::demo::{run_and_keep, DemoOptions};
use xclear::money::Amount;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// Chromium opens `url`, for the DOM (`--dump-dom`) or a screenshot; its
/// stderr must hold no console message (a script error, a failed load).
fn chromium(url: &str, action: &[&str], dir: &Path) -> String {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,1100",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .args(action)
        .arg(url)
        .current_dir(dir)
        .output()
        .expect("chromium (make test-deps installs Debian's)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium {url}: {err}");
    let console: Vec<&str> = err.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "{url}: console messages {console:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn curl(url: &str, headers: &[&str]) -> (u16, String) {
    let mut c = Command::new("curl");
    c.args(["-s", "-o", "-", "-w", "\n%{http_code}", url]);
    for h in headers {
        c.args(["-H", h]);
    }
    let out = c.output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn select<'a>(doc: &'a Html, css: &str) -> Vec<scraper::ElementRef<'a>> {
    doc.select(&Selector::parse(css).expect("selector")).collect()
}

fn amount(text: &str) -> Amount {
    Amount::round_half_up(text.trim().parse().expect("an amount"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_in_a_browser_shows_the_statement() {
    let dir = tempfile::tempdir().expect("tmp");
    let month = Month::parse("2026-03").expect("month");
    let opts = DemoOptions {
        out: dir.path().join("demo"),
        seed: 11,
        patients: 150,
        month,
        rules_dir: common::rules_dir(),
        progress: false,
    };
    let (report, running) = run_and_keep(opts).await.expect("demo");
    // Beijing's agency console on its node, beside the operator's.
    let beijing = running.node("110000").expect("Beijing");
    let agency_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let agency_addr = agency_listener.local_addr().expect("addr");
    let (agency_stop, agency_stopped) = tokio::sync::oneshot::channel::<()>();
    let access = xclear::console::auth::Access::new(vec![xclear::console::auth::Viewer::with_token("agency", TOKEN)]);
    let agency = tokio::spawn(xclear::node::console::serve(
        agency_listener,
        std::sync::Arc::clone(&beijing),
        access,
        std::sync::Arc::new(xclear::clock::SystemClock),
        async move {
            let _ = agency_stopped.await;
        },
    ));
    drop(beijing);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        running
            .serve_console(listener, TOKEN, async move {
                let _ = stopped.await;
            })
            .await
    });
    let base = format!("http://{addr}");
    let s = report.statement.clone();

    // Access: nothing without a viewer's token.
    let checks = tokio::task::spawn_blocking({
        let base = base.clone();
        move || {
            assert_eq!(curl(&format!("{base}/month/2026-03"), &[]).0, 401, "no token");
            assert_eq!(curl(&format!("{base}/month/2026-03"), &["Authorization: Bearer wrong"]).0, 401);
            assert_eq!(curl(&format!("{base}/login?token=wrong&next=/"), &[]).0, 401);
            assert_eq!(curl(&format!("{base}/nowhere"), &[]).0, 401, "unknown paths too");
            let bearer = format!("Authorization: Bearer {TOKEN}");
            let (code, body) = curl(&format!("{base}/month/2026-03"), &[&bearer]);
            assert_eq!(code, 200, "{body}");
            // A month with no statement says so plainly.
            let (code, body) = curl(&format!("{base}/month/2026-04"), &[&bearer]);
            assert_eq!(code, 404);
            assert!(body.contains("No statement for 2026-04"), "{body}");
            // Read-only: nothing but GET.
            let out = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H", &bearer])
                .arg(format!("{base}/month/2026-03"))
                .output()
                .expect("curl");
            assert_eq!(String::from_utf8_lossy(&out.stdout), "405");
        }
    });
    checks.await.expect("access checks");

    // Every page in Chromium, logged in by the token exchange.
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target").join("console-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshots dir");
    let pages = ["/month/2026-03", "/heatmap/2026-03", "/advance/2026-03", "/reconciliation/2026-03", "/trends", "/"];
    let profile = dir.path().to_path_buf();
    let doms = tokio::task::spawn_blocking({
        let base = base.clone();
        let shots = shots.clone();
        move || {
            let mut doms = BTreeMap::new();
            for p in pages {
                let url = format!("{base}/login?token={TOKEN}&next={p}");
                let name = if p == "/" { "index".to_string() } else { p.trim_start_matches('/').replace('/', "-") };
                let file = shots.join(format!("{name}.png"));
                chromium(&url, &[&format!("--screenshot={}", file.display())], &profile);
                assert!(std::fs::metadata(&file).map(|m| m.len() > 10_000).unwrap_or(false), "{name}: screenshot");
                doms.insert(p, chromium(&url, &["--dump-dom"], &profile));
            }
            doms
        }
    })
    .await
    .expect("chromium");

    // Month: the positions shown are the statement's and sum to zero.
    let doc = Html::parse_document(&doms["/month/2026-03"]);
    let nets = select(&doc, "#positions td.net");
    assert_eq!(nets.len(), s.positions.len());
    let shown: Amount = nets.iter().map(|td| amount(td.value().attr("data-net").expect("data-net"))).sum();
    assert_eq!(shown, Amount::ZERO, "net positions on the page sum to zero");
    for row in select(&doc, "#positions tbody tr") {
        let region = row.value().attr("data-region").expect("region");
        let td = Selector::parse("td.net").expect("selector");
        let net = row.select(&td).next().expect("a net cell").text().collect::<String>();
        let expected = s.positions.iter().find(|(r, _)| r.to_string() == region).expect("a region").1.net;
        assert_eq!(amount(&net), expected, "{region}");
    }
    assert_eq!(select(&doc, "#net-sum")[0].text().collect::<String>(), "0.00");
    assert_eq!(select(&doc, "#state")[0].text().collect::<String>(), "final");
    assert!(!select(&doc, "svg.chart rect.bar").is_empty(), "the bar chart");

    // Heat map: each cell is the statement's pair, count and amount.
    let doc = Html::parse_document(&doms["/heatmap/2026-03"]);
    let mut pairs: BTreeMap<(String, String), (u64, Amount)> = BTreeMap::new();
    for p in &s.pairs {
        let e = pairs.entry((p.home.to_string(), p.treatment.to_string())).or_default();
        *e = (e.0 + p.count, e.1 + p.amounts.owed());
    }
    let mut seen = 0;
    for cell in select(&doc, "rect.cell") {
        let v = cell.value();
        let key = (v.attr("data-home").expect("home").to_string(), v.attr("data-treatment").expect("t").to_string());
        let count: u64 = v.attr("data-count").expect("count").parse().expect("count");
        let amt = amount(v.attr("data-amount").expect("amount"));
        match pairs.get(&key) {
            Some(expected) => {
                assert_eq!((count, amt), *expected, "{key:?}");
                seen += 1;
            }
            None => assert_eq!((count, amt), (0, Amount::ZERO), "{key:?} has no pair"),
        }
    }
    assert_eq!(seen, pairs.len(), "every pair of the statement has its cell");

    // Advance funds: the warnings are marked.
    let doc = Html::parse_document(&doms["/advance/2026-03"]);
    let warned = select(&doc, "#advance tr.warning").len();
    assert_eq!(warned, s.advance.iter().filter(|a| a.warning).count());
    // Trends: each region's direct settlement rate, as its node reported it.
    let doc = Html::parse_document(&doms["/trends"]);
    assert!(s.activity.values().any(|a| a.refused > 0), "the demo's home regions refuse some: {:?}", s.activity);
    for (r, a) in &s.activity {
        let rates = select(&doc, &format!("section[data-region=\"{r}\"] rect[data-rate]"));
        let expected = format!("{}%", a.direct_rate_pct().expect("claims"));
        assert_eq!(rates.len(), 1, "{r}");
        assert_eq!(rates[0].value().attr("data-rate"), Some(expected.as_str()), "{r}");
    }
    assert!(doms["/trends"].contains("Settlements cleared as treatment region"));
    assert!(doms["/"].contains("/month/2026-03"));
    // No page shows a person's identity (the demo's persons are D…).
    for (p, dom) in &doms {
        assert!(!dom.contains("psn_no") && !dom.contains("\"D0"), "{p} shows a person");
    }

    // The agency's pages on Beijing's node: its month by counterpart, its
    // institutions' statements and its audit sample, as the demo reports them.
    let agency_base = format!("http://{agency_addr}");
    let (agency_index, agency_month) = tokio::task::spawn_blocking({
        let shots = shots.clone();
        let profile = dir.path().join("agency");
        move || {
            std::fs::create_dir_all(&profile).expect("profile");
            assert_eq!(curl(&format!("{agency_base}/month/2026-03"), &[]).0, 401, "no token");
            let url = |p: &str| format!("{agency_base}/login?token={TOKEN}&next={p}");
            let file = shots.join("agency-110000-2026-03.png");
            chromium(&url("/month/2026-03"), &[&format!("--screenshot={}", file.display())], &profile);
            (
                chromium(&url("/"), &["--dump-dom"], &profile),
                chromium(&url("/month/2026-03"), &["--dump-dom"], &profile),
            )
        }
    })
    .await
    .expect("agency pages");
    assert!(agency_index.contains("/month/2026-03") && agency_index.contains("0 pending"), "{agency_index}");
    let doc = Html::parse_document(&agency_month);
    let beijing = xclear::region::RegionCode::parse("110000").expect("region");
    let counts: u64 = select(&doc, "#as-treatment tbody tr td.num:nth-child(2)")
        .iter()
        .map(|td| td.text().collect::<String>().parse::<u64>().expect("count"))
        .sum();
    let cleared: u64 = s.pairs.iter().filter(|p| p.treatment == beijing).map(|p| p.count).sum();
    assert_eq!(counts, cleared, "Beijing's settlements as treatment region");
    let payable: Amount =
        select(&doc, "#statements td.payable").iter().map(|td| amount(&td.text().collect::<String>())).sum();
    let reported: Amount = report.hospitals.iter().filter(|h| h.region == beijing).map(|h| h.payable).sum();
    assert_eq!(payable, reported, "Beijing's institutions' statements");
    let (drawn, of) = report.samples[&beijing];
    assert_eq!(
        select(&doc, "#sample-size")[0].text().collect::<String>(),
        format!("{drawn} drawn of {of} settlements")
    );
    let _ = agency_stop.send(());
    agency.await.expect("agency task").expect("stopped");

    if std::env::var_os("XCLEAR_UPDATE_SCREENSHOTS").is_some() {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs").join("console");
        std::fs::create_dir_all(&docs).expect("docs/console");
        for name in ["month-2026-03", "heatmap-2026-03"] {
            std::fs::copy(shots.join(format!("{name}.png")), docs.join(format!("{name}.png"))).expect("copy");
        }
    }
    let _ = stop.send(());
    server.await.expect("server task").expect("stopped cleanly");
}
