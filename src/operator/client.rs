//! The operator's gRPC client of the nodes' `ReportService`.

use std::collections::BTreeMap;

use tonic::transport::Channel;
use tonic::Response;

use super::ReportTransport;
use crate::proto::report_service_client::ReportServiceClient;
use crate::proto::Signed;
use crate::region::RegionCode;
use crate::transport::{status_error, BoxFuture, Channels, TransportError, MAX_REPORT_BYTES};

/// Reaches every node's report service, one lazily connected channel each.
pub struct NodeReports {
    channels: Channels,
}

impl NodeReports {
    /// Over TLS when `tls` is given (the operator's own identity).
    pub fn new(endpoints: BTreeMap<RegionCode, String>, tls: Option<std::sync::Arc<crate::tls::Tls>>) -> NodeReports {
        NodeReports { channels: Channels::new(endpoints, tls) }
    }

    fn client(&self, to: RegionCode) -> Result<ReportServiceClient<Channel>, TransportError> {
        self.channels.get(to).map(|c| ReportServiceClient::new(c).max_decoding_message_size(MAX_REPORT_BYTES))
    }
}

impl ReportTransport for NodeReports {
    fn month_report(&self, to: RegionCode, req: Signed) -> BoxFuture<'_, Result<Signed, TransportError>> {
        Box::pin(async move {
            let mut c = self.client(to)?;
            c.month_report(req).await.map(Response::into_inner).map_err(status_error)
        })
    }

    fn lines(&self, to: RegionCode, req: Signed) -> BoxFuture<'_, Result<Signed, TransportError>> {
        Box::pin(async move {
            let mut c = self.client(to)?;
            c.lines(req).await.map(Response::into_inner).map_err(status_error)
        })
    }

    fn final_statement(&self, to: RegionCode, notice: Signed) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            let mut c = self.client(to)?;
            c.final_statement(notice).await.map(|_| ()).map_err(status_error)
        })
    }
}
