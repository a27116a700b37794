//! The node's signatures on claims and results, made in batches: whatever
//! settlements ask to sign at the same moment share one signature over the
//! Merkle root of their bodies (see [`crate::api::batch_sig`]), as appends of
//! the same moment share one group commit.
//!
//! Nothing waits to fill a batch. The signing task takes the first request,
//! lets the tasks that are ready run once (those about to sign queue behind
//! it), then signs everything queued. Alone, a request is signed at once as
//! an ordinary envelope.

use std::sync::Mutex;

use ed25519_dalek::SigningKey;
use tokio::sync::{mpsc, oneshot};

use crate::api::batch_sig::{sign_batch, MAX_BATCH};
use crate::api::NodeError;
use crate::proto::Signed;

/// Requests waiting for the signing task; past this, asking waits.
const QUEUE: usize = 4096;

struct Request {
    domain: &'static [u8],
    body: Vec<u8>,
    reply: oneshot::Sender<Signed>,
}

/// Signs bodies for one signer, batching what arrives together.
pub struct BatchSigner {
    key: SigningKey,
    signer: String,
    tx: Mutex<Option<mpsc::Sender<Request>>>,
}

impl BatchSigner {
    pub fn new(key: SigningKey, signer: String) -> BatchSigner {
        BatchSigner { key, signer, tx: Mutex::new(None) }
    }

    /// Signs `body` under `domain`, alone or with others of the moment.
    pub async fn sign(&self, domain: &'static [u8], body: Vec<u8>) -> Result<Signed, NodeError> {
        let tx = self.sender()?;
        let (reply, answer) = oneshot::channel();
        tx.send(Request { domain, body, reply })
            .await
            .map_err(|_| NodeError::Internal("the signing task has stopped".into()))?;
        answer.await.map_err(|_| NodeError::Internal("the signing task dropped a request".into()))
    }

    /// The queue to the signing task, started on the caller's runtime the
    /// first time (and again if that runtime has gone).
    fn sender(&self) -> Result<mpsc::Sender<Request>, NodeError> {
        let mut tx = self.tx.lock().map_err(|_| NodeError::Internal("signer lock".into()))?;
        if let Some(t) = tx.as_ref().filter(|t| !t.is_closed()) {
            return Ok(t.clone());
        }
        let (t, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(self.key.clone(), self.signer.clone(), rx));
        *tx = Some(t.clone());
        Ok(t)
    }
}

async fn run(key: SigningKey, signer: String, mut rx: mpsc::Receiver<Request>) {
    while let Some(first) = rx.recv().await {
        // The tasks ready now run before this one: those about to sign
        // queue their bodies and share this signature.
        tokio::task::yield_now().await;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        super::metrics::record_signed_batch(batch.len());
        // One signature per domain among them (claims and results differ).
        while let Some(domain) = batch.first().map(|r| r.domain) {
            let (same, rest): (Vec<Request>, Vec<Request>) = batch.into_iter().partition(|r| r.domain == domain);
            batch = rest;
            let (bodies, replies): (Vec<Vec<u8>>, Vec<oneshot::Sender<Signed>>) =
                same.into_iter().map(|r| (r.body, r.reply)).unzip();
            for (reply, signed) in replies.into_iter().zip(sign_batch(&key, domain, &signer, bodies)) {
                // The asker may have gone away; nothing is lost with it.
                let _ = reply.send(signed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::api::envelope::{open, CLAIM_DOMAIN, CLAIM_RESULT_DOMAIN};
    use crate::proto::ContributionYearsRequest;
    use prost::Message;

    fn body(n: usize) -> Vec<u8> {
        ContributionYearsRequest { psn_no: format!("P{n}") }.encode_to_vec()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn bodies_asked_together_share_a_signature_and_each_opens_alone() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let signer = Arc::new(BatchSigner::new(key.clone(), "611000".into()));
        let tasks: Vec<_> = (0..10)
            .map(|n| {
                let s = Arc::clone(&signer);
                let domain = if n % 3 == 0 { CLAIM_RESULT_DOMAIN } else { CLAIM_DOMAIN };
                tokio::spawn(async move { (domain, n, s.sign(domain, body(n)).await) })
            })
            .collect();
        let mut signatures = std::collections::BTreeSet::new();
        for t in tasks {
            let (domain, n, signed) = t.await.expect("task");
            let signed = signed.expect("signed");
            assert_eq!(signed.body, body(n));
            assert!(signed.batch.is_some(), "body {n} was signed alone");
            let opened: ContributionYearsRequest = open(&signed, &key.verifying_key(), domain).expect("opens alone");
            assert_eq!(opened.psn_no, format!("P{n}"));
            let other = if domain == CLAIM_DOMAIN { CLAIM_RESULT_DOMAIN } else { CLAIM_DOMAIN };
            assert!(open::<ContributionYearsRequest>(&signed, &key.verifying_key(), other).is_err());
            signatures.insert(signed.signature);
        }
        // One signature for the claims, one for the results.
        assert_eq!(signatures.len(), 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_body_alone_gets_an_ordinary_signature() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let signer = BatchSigner::new(key.clone(), "611000".into());
        let signed = signer.sign(CLAIM_DOMAIN, body(1)).await.expect("signed");
        assert_eq!(signed.batch, None);
        assert_eq!(
            signed,
            crate::api::envelope::seal(&key, CLAIM_DOMAIN, "611000", &ContributionYearsRequest { psn_no: "P1".into() })
        );
    }
}
