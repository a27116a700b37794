//! Claims to one peer go in batches: one gRPC call carries whatever the
//! settlements of the moment have queued, so the per-call cost of HTTP/2
//! (headers, frames, a task and a wake-up on each side) is paid once per
//! batch, and the home node's appends of a batch land in one group commit.
//!
//! Nothing waits to fill a batch. A claim is sent at once while fewer than
//! [`BatchLimits::in_flight`] calls are outstanding; otherwise it queues, and
//! the next free call takes everything queued. Under light load a batch is
//! one claim; under heavy load batches grow on their own.

use std::future::Future;
use std::sync::Arc;

use prost::Message;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::TransportError;
use crate::proto::{ClaimAnswer, Signed};

/// Most claims in one batch; a peer refuses larger batches.
pub const MAX_CLAIMS_PER_BATCH: usize = 128;

/// How claims to one peer are batched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Batch calls outstanding at once.
    pub in_flight: usize,
    /// Most claims in one batch.
    pub claims: usize,
    /// Most encoded claim bytes in one batch (a larger claim goes alone).
    pub bytes: usize,
    /// Claims waiting for a call; past this, submitting waits.
    pub queue: usize,
}

/// Batch calls to one peer outstanding at once: four beat two on rate and p99
/// at the same CPU (docs/PERFORMANCE.md, "Batch calls in flight").
pub const BATCH_CALLS_IN_FLIGHT: usize = 4;

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            in_flight: BATCH_CALLS_IN_FLIGHT,
            claims: MAX_CLAIMS_PER_BATCH,
            bytes: super::grpc::MAX_MESSAGE_BYTES,
            queue: 4096,
        }
    }
}

type Answer = Result<Signed, TransportError>;

/// A claim waiting for its batch, and where its answer goes.
struct Queued {
    claim: Signed,
    bytes: usize,
    reply: oneshot::Sender<Answer>,
}

/// The queue of claims to one peer. Dropping it ends the task that sends.
pub struct ClaimBatcher {
    tx: mpsc::Sender<Queued>,
}

impl ClaimBatcher {
    /// Starts the sending task on the current runtime. `send` makes one
    /// batch call: one answer per claim, in order, or the call's error.
    pub fn spawn<F, Fut>(limits: BatchLimits, send: F) -> ClaimBatcher
    where
        F: Fn(Vec<Signed>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<Answer>, TransportError>> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(limits.queue.max(1));
        tokio::spawn(run(rx, limits, Arc::new(send)));
        ClaimBatcher { tx }
    }

    /// Queues a claim and waits for its answer.
    pub async fn submit(&self, claim: Signed) -> Answer {
        let (reply, answer) = oneshot::channel();
        let bytes = claim.encoded_len();
        self.tx
            .send(Queued { claim, bytes, reply })
            .await
            .map_err(|_| TransportError::Unreachable("the peer's claim queue has stopped".into()))?;
        answer.await.map_err(|_| TransportError::Unreachable("the batch call was dropped".into()))?
    }

    /// Whether the sending task is gone (its runtime shut down).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

async fn run<F, Fut>(mut rx: mpsc::Receiver<Queued>, limits: BatchLimits, send: Arc<F>)
where
    F: Fn(Vec<Signed>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<Answer>, TransportError>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.in_flight.max(1)));
    let mut carried: Option<Queued> = None;
    loop {
        let first = match carried.take() {
            Some(q) => q,
            None => match rx.recv().await {
                Some(q) => q,
                None => return,
            },
        };
        // Wait for a free call first: what queues meanwhile joins this batch.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while batch.len() < limits.claims.max(1) {
            match rx.try_recv() {
                Ok(q) if bytes + q.bytes > limits.bytes => {
                    carried = Some(q);
                    break;
                }
                Ok(q) => {
                    bytes += q.bytes;
                    batch.push(q);
                }
                Err(_) => break,
            }
        }
        let send = Arc::clone(&send);
        tokio::spawn(async move {
            let (claims, replies): (Vec<Signed>, Vec<oneshot::Sender<Answer>>) =
                batch.into_iter().map(|q| (q.claim, q.reply)).unzip();
            let n = claims.len();
            super::metrics::record_batch(n);
            let answers = match send(claims).await {
                Ok(answers) if answers.len() == n => answers,
                Ok(answers) => {
                    let e = TransportError::Unreachable(format!("the peer answered {} of {n} claims", answers.len()));
                    vec![Err(e); n]
                }
                Err(e) => vec![Err(e); n],
            };
            drop(slot);
            for (reply, answer) in replies.into_iter().zip(answers) {
                // The caller may have gone away; its settlement is re-driven.
                let _ = reply.send(answer);
            }
        });
    }
}

/// One answer of a batch as the caller sees it: the result, or the refusal
/// the single call would have carried in its status.
pub fn from_answer(a: ClaimAnswer) -> Answer {
    match a.result {
        Some(result) if a.reason.is_empty() => Ok(result),
        _ if a.reason.is_empty() => Err(TransportError::Unreachable("an answer without result or reason".into())),
        _ => Err(TransportError::Refused { reason: a.reason, message: a.message }),
    }
}

/// A claim's outcome at the home node as one answer of a batch.
pub fn to_answer(outcome: Result<Signed, crate::api::NodeError>) -> ClaimAnswer {
    match outcome {
        Ok(result) => ClaimAnswer { result: Some(result), ..ClaimAnswer::default() },
        Err(e) => ClaimAnswer { result: None, reason: e.reason().to_string(), message: e.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::api::NodeError;

    fn claim(n: u8) -> Signed {
        Signed { body: vec![n], signature: vec![0; 64], signer: "110000".into(), batch: None }
    }

    /// A stand-in peer: echoes each claim back as its "result" once
    /// `release` lets the call through, and records each batch's size.
    #[derive(Clone)]
    struct Gate {
        sizes: Arc<Mutex<Vec<usize>>>,
        release: Arc<Semaphore>,
    }

    impl Gate {
        fn new() -> Gate {
            Gate { sizes: Arc::default(), release: Arc::new(Semaphore::new(0)) }
        }

        fn send(&self) -> impl Fn(Vec<Signed>) -> BoxAnswers + Send + Sync + 'static {
            let gate = self.clone();
            move |claims: Vec<Signed>| -> BoxAnswers {
                gate.sizes.lock().expect("sizes").push(claims.len());
                let release = Arc::clone(&gate.release);
                Box::pin(async move {
                    release.acquire().await.expect("gate").forget();
                    Ok(claims.into_iter().map(Ok).collect())
                })
            }
        }

        fn sizes(&self) -> Vec<usize> {
            self.sizes.lock().expect("sizes").clone()
        }
    }

    type BoxAnswers = super::super::BoxFuture<'static, Result<Vec<Answer>, TransportError>>;

    #[tokio::test]
    async fn claims_queued_behind_a_busy_call_go_together_and_each_gets_its_own_answer() {
        let gate = Gate::new();
        let limits = BatchLimits { in_flight: 1, ..BatchLimits::default() };
        let batcher = Arc::new(ClaimBatcher::spawn(limits, gate.send()));
        let first = tokio::spawn({
            let b = Arc::clone(&batcher);
            async move { b.submit(claim(0)).await }
        });
        while gate.sizes().is_empty() {
            tokio::task::yield_now().await;
        }
        let rest: Vec<_> = (1..10)
            .map(|n| {
                let b = Arc::clone(&batcher);
                tokio::spawn(async move { b.submit(claim(n)).await })
            })
            .collect();
        // Let the nine queue behind the first call, then let both calls through.
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        gate.release.add_permits(2);
        assert_eq!(first.await.expect("task"), Ok(claim(0)));
        for (n, t) in (1..10).zip(rest) {
            assert_eq!(t.await.expect("task"), Ok(claim(n)), "claim {n} got another claim's answer");
        }
        assert_eq!(gate.sizes(), vec![1, 9]);
    }

    #[tokio::test]
    async fn a_batch_stops_at_its_byte_limit_and_the_next_claim_starts_the_next() {
        let gate = Gate::new();
        let one = claim(0).encoded_len();
        let limits = BatchLimits { in_flight: 1, bytes: 3 * one, ..BatchLimits::default() };
        let batcher = Arc::new(ClaimBatcher::spawn(limits, gate.send()));
        let tasks: Vec<_> = (0..7)
            .map(|n| {
                let b = Arc::clone(&batcher);
                tokio::spawn(async move { b.submit(claim(n)).await })
            })
            .collect();
        gate.release.add_permits(10);
        for (n, t) in (0..7).zip(tasks) {
            assert_eq!(t.await.expect("task"), Ok(claim(n)));
        }
        let sizes = gate.sizes();
        assert_eq!(sizes.iter().sum::<usize>(), 7);
        assert!(sizes.iter().all(|s| *s <= 3), "batches over the byte limit: {sizes:?}");
    }

    #[tokio::test]
    async fn a_failed_call_fails_each_of_its_claims_and_a_short_answer_is_not_matched_up() {
        let failing = ClaimBatcher::spawn(BatchLimits::default(), |_claims: Vec<Signed>| async {
            Err(TransportError::Unreachable("connection refused".into()))
        });
        assert_eq!(failing.submit(claim(1)).await, Err(TransportError::Unreachable("connection refused".into())));
        let short = ClaimBatcher::spawn(BatchLimits::default(), |claims: Vec<Signed>| async move {
            Ok(claims.into_iter().skip(1).map(Ok).collect())
        });
        assert!(matches!(short.submit(claim(1)).await, Err(TransportError::Unreachable(m)) if m.contains("0 of 1")));
    }

    #[test]
    fn an_answer_round_trips_a_result_and_a_refusal_with_its_reason() {
        assert_eq!(from_answer(to_answer(Ok(claim(4)))), Ok(claim(4)));
        let e = NodeError::UnknownPerson("P9".into());
        assert_eq!(
            from_answer(to_answer(Err(e.clone()))),
            Err(TransportError::Refused { reason: "unknown_person".into(), message: e.to_string() })
        );
        assert!(matches!(from_answer(ClaimAnswer::default()), Err(TransportError::Unreachable(_))));
    }
}
