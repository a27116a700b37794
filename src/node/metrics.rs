//! Prometheus metrics: hospital calls by outcome and their latency, claims
//! sent to peers in batches, signatures made in batches, served as text on an HTTP port.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

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

/// The metrics in Prometheus text format, plus the ledger size.
pub fn render(ledger_entries: u64) -> String {
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
    out.push_str("# TYPE xclear_ledger_entries gauge\n");
    out.push_str(&format!("xclear_ledger_entries {ledger_entries}\n"));
    out
}

/// A minimal HTTP/1.1 responder for `GET /metrics` (any path answers the same).
pub async fn serve(listener: TcpListener, ledger_entries: impl Fn() -> u64 + Send + Sync + 'static) {
    let entries = std::sync::Arc::new(ledger_entries);
    loop {
        let Ok((mut sock, _)) = listener.accept().await else { continue };
        let entries = entries.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf)).await;
            let body = render(entries());
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}
