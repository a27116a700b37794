//! Prometheus metrics, through prometheus-client, served by axum on the
//! node's `metrics_listen`: hospital calls by outcome and their latency,
//! claims sent to peers in batches, signatures made in batches, time spent
//! in each stage of a settlement, pending intents and the ledger's size.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use super::Node;

/// Latency histogram bucket bounds, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: &'static str,
}

/// What every node of the process counts together (a node process has one
/// node; the demo and the benchmark have several, which share these).
struct Process {
    requests: Family<OutcomeLabel, Counter>,
    latency: Histogram,
    /// Batch calls to peers, and the claims they carried.
    claim_batches: Counter,
    claims_batched: Counter,
    /// Signatures made over batches of claims or results, and the bodies.
    sign_batches: Counter,
    bodies_signed: Counter,
}

fn process() -> &'static Process {
    static PROCESS: OnceLock<Process> = OnceLock::new();
    PROCESS.get_or_init(|| Process {
        requests: Family::default(),
        latency: Histogram::new(BUCKETS),
        claim_batches: Counter::default(),
        claims_batched: Counter::default(),
        sign_batches: Counter::default(),
        bodies_signed: Counter::default(),
    })
}

/// One hospital call answered as `outcome` (a reason from the closed set,
/// or settled, refused, answered) after `elapsed`.
pub fn record(outcome: &'static str, elapsed: Duration) {
    let p = process();
    p.requests.get_or_create(&OutcomeLabel { outcome }).inc();
    p.latency.observe(elapsed.as_secs_f64());
}

/// One batch call of `claims` claims to a peer.
pub fn record_batch(claims: usize) {
    let p = process();
    p.claim_batches.inc();
    p.claims_batched.inc_by(claims as u64);
}

/// Batch calls to peers so far, and the claims they carried.
pub fn batch_totals() -> (u64, u64) {
    let p = process();
    (p.claim_batches.get(), p.claims_batched.get())
}

/// One signature made for `bodies` claims or results.
pub fn record_signed_batch(bodies: usize) {
    let p = process();
    p.sign_batches.inc();
    p.bodies_signed.inc_by(bodies as u64);
}

/// Signatures made by the batch signers so far, and the bodies they covered.
pub fn signed_batch_totals() -> (u64, u64) {
    let p = process();
    (p.sign_batches.get(), p.bodies_signed.get())
}

/// A stage of a settlement or reversal, timed where it runs: where a
/// hospital's wait goes. What the home round trip holds beyond the home
/// node's own work is the claim's wait for a batch call and the call itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Treatment node: the hospital's request checked (signature, hospital,
    /// route), up to the settlement's own task.
    Check,
    /// Treatment node: waiting for the claim's (batch) signature.
    ClaimSign,
    /// Treatment node: the intent's durable append.
    IntentAppend,
    /// Treatment node: the claim sent to the home node and its result
    /// verified (includes all of the home node's work).
    HomeRoundTrip,
    /// Treatment node: the outcome's durable append.
    OutcomeAppend,
    /// Home node: one claim, from its task's start to its signed result (the
    /// person's lock, the computation, the result's signature, the append).
    HomeClaim,
    /// Home node: waiting for the result's (batch) signature.
    ResultSign,
    /// Home node: the settlement's durable append.
    HomeAppend,
}

impl Stage {
    pub const ALL: [Stage; 8] = [
        Stage::Check,
        Stage::ClaimSign,
        Stage::IntentAppend,
        Stage::HomeRoundTrip,
        Stage::OutcomeAppend,
        Stage::HomeClaim,
        Stage::ResultSign,
        Stage::HomeAppend,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Check => "check",
            Stage::ClaimSign => "claim_sign",
            Stage::IntentAppend => "intent_append",
            Stage::HomeRoundTrip => "home_round_trip",
            Stage::OutcomeAppend => "outcome_append",
            Stage::HomeClaim => "home_claim",
            Stage::ResultSign => "result_sign",
            Stage::HomeAppend => "home_append",
        }
    }
}

/// One node's stage timings: per stage, how many times it ran and the
/// nanoseconds it took in all (relaxed atomics; a reader may see a count
/// one ahead of its time, never a torn value).
#[derive(Default)]
pub struct StageTimes([[AtomicU64; 2]; Stage::ALL.len()]);

impl StageTimes {
    /// Records one run of `stage` that began at `started`.
    pub fn record(&self, stage: Stage, started: Instant) {
        let s = &self.0[stage as usize];
        s[0].fetch_add(1, Ordering::Relaxed);
        s[1].fetch_add(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// How many times `stage` ran so far, and the time it took in all.
    pub fn totals(&self, stage: Stage) -> (u64, Duration) {
        let s = &self.0[stage as usize];
        (s[0].load(Ordering::Relaxed), Duration::from_nanos(s[1].load(Ordering::Relaxed)))
    }
}

/// The metrics in the OpenMetrics text format (what Prometheus scrapes),
/// every family with its HELP and TYPE.
pub fn render(node: &Node) -> String {
    let p = process();
    let mut r = Registry::default();
    r.register("xclear_hospital_requests", "Hospital calls answered, by outcome", p.requests.clone());
    r.register("xclear_hospital_request_seconds", "Hospital calls' latency at the node", p.latency.clone());
    r.register("xclear_peer_claim_batches", "Batch calls of claims to peer nodes", p.claim_batches.clone());
    r.register("xclear_peer_claims_batched", "Claims sent to peer nodes in batch calls", p.claims_batched.clone());
    r.register("xclear_batch_signatures", "Signatures made over batches of claims or results", p.sign_batches.clone());
    r.register("xclear_batch_signed_bodies", "Claims or results covered by batch signatures", p.bodies_signed.clone());
    let (runs, seconds) =
        (Family::<StageLabel, Counter>::default(), Family::<StageLabel, Counter<f64, AtomicU64>>::default());
    for stage in Stage::ALL {
        let (n, total) = node.stage_times().totals(stage);
        let label = StageLabel { stage: stage.name() };
        runs.get_or_create(&label).inc_by(n);
        seconds.get_or_create(&label).inc_by(total.as_secs_f64());
    }
    r.register("xclear_stage_runs", "Runs of each stage of a settlement at this node", runs);
    r.register("xclear_stage_seconds", "Time spent in each stage of a settlement at this node", seconds);
    let gauge = |v: i64| {
        let g = Gauge::<i64>::default();
        g.set(v);
        g
    };
    r.register(
        "xclear_pending_intents",
        "Settlements awaiting their home node's answer",
        gauge(i64::try_from(node.pending_intents()).unwrap_or(i64::MAX)),
    );
    let oldest = Gauge::<f64, AtomicU64>::default();
    oldest.set(node.oldest_pending_intent_ms() as f64 / 1e3);
    r.register("xclear_oldest_pending_intent_seconds", "How long the oldest pending intent has waited", oldest);
    r.register(
        "xclear_ledger_entries",
        "Entries on the node's ledger",
        gauge(i64::try_from(node.ledger().len()).unwrap_or(i64::MAX)),
    );
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &r);
    out
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// OpenMetrics text as the classic Prometheus text format (0.0.4), for
/// scrapers and tools that read only that (promtool check metrics): a
/// counter's family takes its samples' `_total` name, and `# EOF` goes.
pub fn classic(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> =
        openmetrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines().filter(|l| *l != "# EOF" && !l.starts_with("# UNIT ")) {
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// Serves `GET /metrics` on `listener` until the process ends: OpenMetrics
/// to a scraper that asks for it (Accept), else the classic text format.
pub async fn serve(listener: TcpListener, node: Arc<Node>) {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: http::HeaderMap| {
            let node = Arc::clone(&node);
            async move {
                let text = render(&node);
                let wants_openmetrics = headers
                    .get(http::header::ACCEPT)
                    .and_then(|a| a.to_str().ok())
                    .is_some_and(|a| a.contains("application/openmetrics-text"));
                if wants_openmetrics {
                    ([(http::header::CONTENT_TYPE, OPENMETRICS)], text)
                } else {
                    ([(http::header::CONTENT_TYPE, CLASSIC)], classic(&text))
                }
            }
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "metrics server stopped");
    }
}
