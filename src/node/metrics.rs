//! Prometheus metrics: hospital calls by outcome and their latency, claims
//! sent to peers in batches, signatures made in batches, time spent in each
//! stage of a settlement, served as text on an HTTP port.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::Node;

/// Latency histogram bucket bounds, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0];
/// Distinct outcome labels kept (reasons are a closed set; this is a guard).
const MAX_LABELS: usize = 64;

#[derive(Default)]
struct Metrics {
    by_outcome: BTreeMap<String, u64>,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum_us: u64,
    /// Batch calls to peers, and the claims they carried.
    claim_batches: u64,
    claims_batched: u64,
    /// Signatures made over batches of claims or results, and the bodies.
    sign_batches: u64,
    bodies_signed: u64,
}

static METRICS: Mutex<Option<Metrics>> = Mutex::new(None);

pub fn record(outcome: &str, elapsed: Duration) {
    update(|m| {
        if m.by_outcome.len() < MAX_LABELS || m.by_outcome.contains_key(outcome) {
            *m.by_outcome.entry(outcome.to_string()).or_default() += 1;
        }
        let secs = elapsed.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                m.buckets[i] += 1;
            }
        }
        m.count += 1;
        m.sum_us += elapsed.as_micros() as u64;
    });
}

/// Applies `f` to the metrics (a poisoned lock drops the update).
fn update(f: impl FnOnce(&mut Metrics)) {
    if let Ok(mut guard) = METRICS.lock() {
        f(guard.get_or_insert_with(Metrics::default));
    }
}

/// Reads a pair of counters, (0, 0) before any was recorded.
fn totals(f: impl FnOnce(&Metrics) -> (u64, u64)) -> (u64, u64) {
    METRICS.lock().ok().and_then(|g| g.as_ref().map(f)).unwrap_or((0, 0))
}

/// One batch call of `claims` claims to a peer.
pub fn record_batch(claims: usize) {
    update(|m| {
        m.claim_batches += 1;
        m.claims_batched += claims as u64;
    });
}

/// Batch calls to peers so far, and the claims they carried.
pub fn batch_totals() -> (u64, u64) {
    totals(|m| (m.claim_batches, m.claims_batched))
}

/// One signature made for `bodies` claims or results.
pub fn record_signed_batch(bodies: usize) {
    update(|m| {
        m.sign_batches += 1;
        m.bodies_signed += bodies as u64;
    });
}

/// Signatures made by the batch signers so far, and the bodies they covered.
pub fn signed_batch_totals() -> (u64, u64) {
    totals(|m| (m.sign_batches, m.bodies_signed))
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

    /// The timings in Prometheus text format.
    fn render(&self, out: &mut String) {
        out.push_str("# TYPE xclear_stage_seconds summary\n");
        for stage in Stage::ALL {
            let (count, total) = self.totals(stage);
            let name = stage.name();
            out.push_str(&format!("xclear_stage_seconds_sum{{stage=\"{name}\"}} {}\n", total.as_secs_f64()));
            out.push_str(&format!("xclear_stage_seconds_count{{stage=\"{name}\"}} {count}\n"));
        }
    }
}

/// The metrics in Prometheus text format, plus the node's stage timings and
/// ledger size.
pub fn render(node: &Node) -> String {
    let mut out = String::new();
    out.push_str("# TYPE xclear_hospital_requests_total counter\n");
    let guard = METRICS.lock().ok();
    let m = guard.as_ref().and_then(|g| g.as_ref());
    if let Some(m) = m {
        for (k, v) in &m.by_outcome {
            out.push_str(&format!("xclear_hospital_requests_total{{outcome=\"{k}\"}} {v}\n"));
        }
        out.push_str("# TYPE xclear_hospital_request_seconds histogram\n");
        for (i, b) in BUCKETS.iter().enumerate() {
            out.push_str(&format!("xclear_hospital_request_seconds_bucket{{le=\"{b}\"}} {}\n", m.buckets[i]));
        }
        out.push_str(&format!("xclear_hospital_request_seconds_bucket{{le=\"+Inf\"}} {}\n", m.count));
        out.push_str(&format!("xclear_hospital_request_seconds_sum {}\n", m.sum_us as f64 / 1e6));
        out.push_str(&format!("xclear_hospital_request_seconds_count {}\n", m.count));
        out.push_str("# TYPE xclear_peer_claim_batches_total counter\n");
        out.push_str(&format!("xclear_peer_claim_batches_total {}\n", m.claim_batches));
        out.push_str("# TYPE xclear_peer_claims_batched_total counter\n");
        out.push_str(&format!("xclear_peer_claims_batched_total {}\n", m.claims_batched));
        out.push_str("# TYPE xclear_batch_signatures_total counter\n");
        out.push_str(&format!("xclear_batch_signatures_total {}\n", m.sign_batches));
        out.push_str("# TYPE xclear_batch_signed_bodies_total counter\n");
        out.push_str(&format!("xclear_batch_signed_bodies_total {}\n", m.bodies_signed));
    }
    node.stage_times().render(&mut out);
    out.push_str("# HELP xclear_pending_intents Settlements awaiting their home node's answer.\n");
    out.push_str("# TYPE xclear_pending_intents gauge\n");
    out.push_str(&format!("xclear_pending_intents {}\n", node.pending_intents()));
    out.push_str("# HELP xclear_oldest_pending_intent_seconds How long the oldest pending intent has waited.\n");
    out.push_str("# TYPE xclear_oldest_pending_intent_seconds gauge\n");
    out.push_str(&format!("xclear_oldest_pending_intent_seconds {}\n", node.oldest_pending_intent_ms() as f64 / 1e3));
    out.push_str("# TYPE xclear_ledger_entries gauge\n");
    out.push_str(&format!("xclear_ledger_entries {}\n", node.ledger().len()));
    out
}

/// A minimal HTTP/1.1 responder for `GET /metrics` (any path answers the same).
pub async fn serve(listener: TcpListener, node: Arc<Node>) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else { continue };
        let node = Arc::clone(&node);
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf)).await;
            let body = render(&node);
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}
