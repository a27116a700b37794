//! How nodes and the operator reach each other: the transport traits and
//! errors, the limits every message lives within, and the gRPC channels to
//! other regions' nodes. Pure of what is sent: [`crate::node`] and
//! [`crate::operator`] both sit on it.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::Channel;
use tonic::Status;

use crate::api::error::reason_of;
use crate::proto::Signed;
use crate::region::RegionCode;
use crate::tls::Tls;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a peer could not be asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The peer answered with an error.
    #[error("{reason}: {message}")]
    Refused { reason: String, message: String },
    /// This process cannot send at all (a thread panicked holding its state).
    #[error("internal: {0}")]
    Internal(String),
}

/// How a node reaches its peers.
pub trait PeerTransport: Send + Sync {
    fn submit_claim(&self, to: RegionCode, claim: Signed) -> BoxFuture<'_, Result<Signed, TransportError>>;
    fn contribution_years(
        &self,
        to: RegionCode,
        query: Signed,
    ) -> BoxFuture<'_, Result<std::collections::BTreeMap<String, u32>, TransportError>>;
    /// Delivers a signed sanction notice to a corps–local partner. A
    /// transport that does not carry them leaves it undelivered (retried).
    fn sanction(&self, to: RegionCode, notice: Signed) -> BoxFuture<'_, Result<(), TransportError>> {
        let _ = notice;
        Box::pin(async move { Err(TransportError::Unreachable(format!("no sanction channel to {to}"))) })
    }
}

/// Largest message a node accepts or sends.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Largest batch of claims a node accepts or sends: its claims fill at most
/// `MAX_MESSAGE_BYTES` (see `BatchLimits::bytes`), or it is one claim.
pub const MAX_PEER_BATCH_BYTES: usize = 2 * MAX_MESSAGE_BYTES;
/// Largest report or page of lines a node sends the operator (a report of
/// 400 counterparts on both sides is ~0.3 MiB; a page of
/// `MAX_LINES_PER_PAGE` lines under 2 MiB).
pub const MAX_REPORT_BYTES: usize = 16 * 1024 * 1024;
/// A call that takes longer than this is cancelled.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Peer calls: connect and per-call timeouts.
pub const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
pub const PEER_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A status from another node: transport trouble is "unreachable", anything
/// the node decided is a refusal with its reason.
pub fn status_error(s: Status) -> TransportError {
    match reason_of(&s) {
        Some(reason) => TransportError::Refused { reason, message: s.message().to_string() },
        None => TransportError::Unreachable(format!("{:?}: {}", s.code(), s.message())),
    }
}

/// One lazily connected channel per region, to the endpoints given; over
/// TLS when `tls` is given, each node checked by its certificate's name
/// (`tls::node_name`), so another region's certificate does not pass.
pub struct Channels {
    endpoints: BTreeMap<RegionCode, String>,
    tls: Option<Arc<Tls>>,
    open: Mutex<HashMap<RegionCode, Channel>>,
}

impl Channels {
    pub fn new(endpoints: BTreeMap<RegionCode, String>, tls: Option<Arc<Tls>>) -> Channels {
        Channels { endpoints, tls, open: Mutex::new(HashMap::new()) }
    }

    /// The channel to `to`'s node (not connected until first used).
    pub fn get(&self, to: RegionCode) -> Result<Channel, TransportError> {
        let mut open = self
            .open
            .lock()
            .map_err(|_| TransportError::Internal("a thread panicked holding the open channels".into()))?;
        if let Some(c) = open.get(&to) {
            return Ok(c.clone());
        }
        let url =
            self.endpoints.get(&to).ok_or_else(|| TransportError::Unreachable(format!("no endpoint for {to}")))?;
        let name = crate::tls::node_name(&to.to_string());
        let channel = crate::tls::endpoint(url, self.tls.as_deref(), Some(&name))
            .map_err(TransportError::Unreachable)?
            .connect_timeout(PEER_CONNECT_TIMEOUT)
            .timeout(PEER_CALL_TIMEOUT)
            .tcp_nodelay(true)
            .connect_lazy();
        open.insert(to, channel.clone());
        Ok(channel)
    }
}
