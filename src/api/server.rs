//! What every xclear gRPC server shares (nodes and the operator): accepted
//! sockets with `TCP_NODELAY` and keepalive, a per-connection concurrency
//! limit, a request timeout, health and reflection, and running in the
//! background until told to stop.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::transport::server::{Router, TcpIncoming};
use tonic::transport::Server;
use tonic_health::server::HealthReporter;

/// The encoded descriptor set of `proto/`, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("xclear_descriptor");
/// Concurrent requests on one connection (a hospital's connection included).
pub const MAX_CONCURRENT_PER_CONNECTION: usize = 256;
/// Idle time before TCP keepalive probes on accepted connections.
pub const KEEPALIVE: Duration = Duration::from_secs(60);

/// Accepted connections of a gRPC server: `TCP_NODELAY` set, so a small answer
/// leaves at once instead of waiting on the peer's delayed ACK (~40 ms on
/// Linux), and keepalive on, so a vanished peer's connection is dropped.
pub fn incoming(listener: tokio::net::TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true)).with_keepalive(Some(KEEPALIVE))
}

/// A server with the limits every xclear server has, serving health and
/// reflection (v1, and v1alpha for the clients that speak only it: grpcurl
/// before 1.8.8, Python's grpcio-reflection), listing exactly `services`
/// (full names, e.g. `xclear.v1.HospitalService`) besides those two; the
/// caller adds its services (and marks them serving).
/// Over TLS when `tls` is given: then every client presents a certificate
/// of the federation's CA.
pub fn router(
    timeout: Duration,
    services: &[&str],
    tls: Option<&crate::tls::Tls>,
) -> Result<(HealthReporter, Router<TooLargeLayer>), String> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let configure = || {
        let builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name(HEALTH_SERVICE)
            .with_service_name("grpc.reflection.v1.ServerReflection")
            .with_service_name("grpc.reflection.v1alpha.ServerReflection");
        services.iter().fold(builder, |b, s| b.with_service_name(*s))
    };
    let v1 = configure().build_v1().map_err(|e| e.to_string())?;
    let v1alpha = configure().build_v1alpha().map_err(|e| e.to_string())?;
    let mut server = Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls.server()).map_err(|e| format!("TLS: {e}"))?;
    }
    let router = server
        .concurrency_limit_per_connection(MAX_CONCURRENT_PER_CONNECTION)
        .timeout(timeout)
        .layer(tower::layer::util::Stack::new(
            tower::util::MapResponseLayer::new(too_large as TooLargeFn),
            tower::layer::util::Identity::new(),
        ))
        .add_service(health_service)
        .add_service(v1)
        .add_service(v1alpha);
    Ok((health, router))
}

type TooLargeFn = fn(http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body>;

/// The layer every server has: [`too_large`] on every answer.
pub type TooLargeLayer = tower::layer::util::Stack<
    tower::layer::util::Stack<tower::util::MapResponseLayer<TooLargeFn>, tower::layer::util::Identity>,
    tower::layer::util::Identity,
>;

/// A message over the size limit is refused by the transport before any
/// handler sees it, as OUT_OF_RANGE; it is answered RESOURCE_EXHAUSTED with
/// the reason `too_large`, as the error table says.
fn too_large(res: http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body> {
    let (mut parts, body) = res.into_parts();
    resource_exhausted(&mut parts.headers);
    // A streamed answer carries its status in the trailers.
    let body = http_body_util::BodyExt::map_frame(body, |mut frame| {
        if let Some(trailers) = frame.trailers_mut() {
            resource_exhausted(trailers);
        }
        frame
    });
    http::Response::from_parts(parts, tonic::body::Body::new(body))
}

/// Rewrites an OUT_OF_RANGE "message length too large" status in place.
fn resource_exhausted(headers: &mut http::HeaderMap) {
    let over = headers.get("grpc-status").is_some_and(|s| s == "11")
        && headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            // Percent-encoded on the wire (a space is %20).
            .is_some_and(|m| m.replace("%20", " ").contains("message length too large"));
    if over {
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
        headers.insert(crate::api::error::REASON_KEY, http::HeaderValue::from_static("too_large"));
    }
}

/// The standard health service's name.
pub const HEALTH_SERVICE: &str = "grpc.health.v1.Health";

/// Completes when its server is told to stop (the sender is used or dropped).
pub struct Stop(tokio::sync::oneshot::Receiver<()>);

impl Future for Stop {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

/// Runs `serve` in the background until the returned sender is used or
/// dropped; a server that stops on its own is logged as `what`.
pub fn spawn_until_stopped<F>(what: &'static str, serve: impl FnOnce(Stop) -> F) -> tokio::sync::oneshot::Sender<()>
where
    F: Future<Output = Result<(), String>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = serve(Stop(rx));
    tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "{what} stopped");
        }
    });
    tx
}
