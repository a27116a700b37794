//! The whole federation in one process: an in-process transport that
//! carries both the nodes' claims and the operator's requests. A region that
//! is not registered (or was taken down) is unreachable.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, Weak};

use crate::node::Node;
use crate::proto::Signed;
use crate::region::RegionCode;
use crate::transport::{BoxFuture, PeerTransport, TransportError};

#[derive(Default)]
pub struct LocalNetwork {
    nodes: RwLock<HashMap<RegionCode, Weak<Node>>>,
}

impl LocalNetwork {
    pub fn new() -> Arc<LocalNetwork> {
        Arc::new(LocalNetwork::default())
    }

    pub fn attach(&self, node: &Arc<Node>) {
        if let Ok(mut n) = self.nodes.write() {
            n.insert(node.region(), Arc::downgrade(node));
        }
    }

    pub fn detach(&self, region: RegionCode) {
        if let Ok(mut n) = self.nodes.write() {
            n.remove(&region);
        }
    }

    fn node(&self, region: RegionCode) -> Result<Arc<Node>, TransportError> {
        self.nodes
            .read()
            .ok()
            .and_then(|n| n.get(&region).and_then(Weak::upgrade))
            .ok_or_else(|| TransportError::Unreachable(format!("no node for {region}")))
    }
}

impl PeerTransport for LocalNetwork {
    fn submit_claim(&self, to: RegionCode, claim: Signed) -> BoxFuture<'_, Result<Signed, TransportError>> {
        Box::pin(async move {
            let node = self.node(to)?;
            node.handle_claim(claim).await.map_err(refused)
        })
    }

    fn contribution_years(
        &self,
        to: RegionCode,
        query: Signed,
    ) -> BoxFuture<'_, Result<BTreeMap<String, u32>, TransportError>> {
        Box::pin(async move {
            let node = self.node(to)?;
            node.handle_contribution_years(query).map_err(refused)
        })
    }

    fn sanction(&self, to: RegionCode, notice: Signed) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move { self.node(to)?.handle_sanction(notice).await.map(|_| ()).map_err(refused) })
    }
}

impl crate::operator::ReportTransport for LocalNetwork {
    fn month_report(&self, to: RegionCode, req: Signed) -> BoxFuture<'_, Result<Signed, TransportError>> {
        Box::pin(async move { self.node(to)?.handle_report_request(req).await.map_err(refused) })
    }

    fn lines(&self, to: RegionCode, req: Signed) -> BoxFuture<'_, Result<Signed, TransportError>> {
        Box::pin(async move { self.node(to)?.handle_lines_request(req).map_err(refused) })
    }

    fn final_statement(&self, to: RegionCode, notice: Signed) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            let node = self.node(to)?;
            node.handle_final_statement(notice).await.map_err(refused)?;
            // In process, in the caller's time: the statements are there when it returns.
            if let Err(e) = node.after_final().await {
                tracing::warn!(error = %e, "institutions' statements and audit sample");
            }
            Ok(())
        })
    }
}

/// A node's error, as a peer would have received it over gRPC.
fn refused(e: crate::api::NodeError) -> TransportError {
    TransportError::Refused { reason: e.reason().to_string(), message: e.to_string() }
}
