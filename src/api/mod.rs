//! The edge between the wire and the domain: signed envelopes, conversions
//! with validation, and the one mapping from outcomes to gRPC statuses.

pub mod convert;
pub mod envelope;
pub mod error;

pub use error::NodeError;

/// Idle time before TCP keepalive probes on accepted connections.
pub const KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(60);

/// Accepted connections of a gRPC server: `TCP_NODELAY` set, so a small answer
/// leaves at once instead of waiting on the peer's delayed ACK (~40 ms on
/// Linux), and keepalive on, so a vanished peer's connection is dropped.
pub fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)).with_keepalive(Some(KEEPALIVE))
}
