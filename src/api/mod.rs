//! The edge between the wire and the domain: signed envelopes, conversions
//! with validation, and the one mapping from outcomes to gRPC statuses.

pub mod batch_sig;
pub mod config_error;
pub mod convert;
pub mod envelope;
pub mod error;
pub mod record;
pub mod server;

pub use error::NodeError;
pub use server::incoming;
