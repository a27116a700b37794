//! The gRPC edge: the node's services (hospital, peer, registration), gRPC
//! health and reflection, and the peer transport over gRPC. Thin: every call
//! goes straight to [`Node`], and errors map to statuses in `api::error`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::peer_batch::{self, BatchLimits, ClaimBatcher, MAX_CLAIMS_PER_BATCH};
use super::{BoxFuture, Node, PeerTransport, TransportError};
use crate::api::NodeError;
use crate::proto::audit_service_server::{AuditService, AuditServiceServer};
use crate::proto::hospital_service_server::{HospitalService, HospitalServiceServer};
use crate::proto::peer_service_client::PeerServiceClient;
use crate::proto::peer_service_server::{PeerService, PeerServiceServer};
use crate::proto::registration_service_server::{RegistrationService, RegistrationServiceServer};
use crate::proto::report_service_server::{ReportService, ReportServiceServer};
use crate::proto::{
    AuditItem, AuditSample, ClaimAnswers, ClaimBatch, ContributionYearsResponse, DesignationState,
    FinalStatementReceipt, HospitalResponse, PersonImportResult, PersonState, ReconcileAnswer, RegistrationList,
    RegistrationRecord, Signed,
};
use crate::region::RegionCode;
use crate::tls::Tls;
use crate::transport::{status_error as transport_error, Channels};

pub use crate::api::server::FILE_DESCRIPTOR_SET;
pub use crate::transport::{
    MAX_MESSAGE_BYTES, MAX_PEER_BATCH_BYTES, MAX_REPORT_BYTES, PEER_CALL_TIMEOUT, PEER_CONNECT_TIMEOUT, REQUEST_TIMEOUT,
};

/// How long the operator's final notice waits for the statements it starts.
const AFTER_FINAL_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Clone)]
struct Svc {
    node: Arc<Node>,
    /// Whether connections are TLS: then every envelope's signer must be
    /// the holder of the connection's client certificate.
    tls: bool,
}

/// Who may sign what a service takes.
#[derive(Debug, Clone, Copy)]
enum Caller {
    Institution,
    Peer,
    Admin,
    /// Registration queries: an admin, or a peer node for its hospital.
    AdminOrPeer,
    Operator,
}

impl Svc {
    /// Refuses an envelope carried by a connection whose certificate is not
    /// its signer's (the signer as configured for `caller`; a signer not
    /// configured is refused by the node itself, with its reason).
    fn bound<T>(&self, req: &Request<T>, env: &Signed, caller: Caller) -> Result<(), Status> {
        if !self.tls {
            return Ok(());
        }
        let config = &self.node.config;
        let peer = || RegionCode::parse(&env.signer).ok().and_then(|r| config.peers.get(&r)).map(|p| p.public_key);
        let key = match caller {
            Caller::Institution => config.hospitals.get(&env.signer).map(|h| h.public_key),
            Caller::Peer => peer(),
            Caller::Admin => config.admins.get(&env.signer).copied(),
            Caller::AdminOrPeer => config.admins.get(&env.signer).copied().or_else(peer),
            Caller::Operator => config.operator_key,
        };
        match key {
            Some(k) if !crate::tls::bound(crate::tls::peer_key(req), &k) => Err(NodeError::NotAuthorised(format!(
                "the request names {:?} as its signer, but the connection's certificate is not theirs",
                env.signer
            ))
            .into()),
            _ => Ok(()),
        }
    }

    /// The envelope of `req`, once [`Svc::bound`] to the connection.
    fn checked(&self, req: Request<Signed>, caller: Caller) -> Result<Signed, Status> {
        self.bound(&req, req.get_ref(), caller)?;
        Ok(req.into_inner())
    }
}

#[tonic::async_trait]
impl HospitalService for Svc {
    async fn submit(&self, req: Request<Signed>) -> Result<Response<HospitalResponse>, Status> {
        let started = std::time::Instant::now();
        let env = self.checked(req, Caller::Institution)?;
        let result = self.node.handle_hospital(env).await;
        let outcome = match &result {
            Ok(r) if r.settled => "settled",
            Ok(r) if !r.refusal.is_empty() => "refused",
            Ok(_) => "answered",
            Err(e) => e.reason(),
        };
        super::metrics::record(outcome, started.elapsed());
        result.map(Response::new).map_err(Status::from)
    }
    async fn reconcile(&self, req: Request<Signed>) -> Result<Response<ReconcileAnswer>, Status> {
        let env = self.checked(req, Caller::Institution)?;
        let checked = self.node.reconcile_request(&env).map_err(Status::from)?;
        // A month's part of the ledger is read: off the runtime's workers.
        let node = Arc::clone(&self.node);
        match tokio::task::spawn_blocking(move || node.reconcile(&checked)).await {
            Ok(answer) => answer.map(Response::new).map_err(Status::from),
            Err(e) => Err(Status::from(NodeError::Internal(format!("the reconciliation's task failed: {e}")))),
        }
    }

    async fn statement(&self, req: Request<Signed>) -> Result<Response<Signed>, Status> {
        let env = self.checked(req, Caller::Institution)?;
        self.node.handle_hospital_statement(&env).map(Response::new).map_err(Status::from)
    }
}

#[tonic::async_trait]
impl AuditService for Svc {
    async fn sample(&self, req: Request<Signed>) -> Result<Response<AuditSample>, Status> {
        let env = self.checked(req, Caller::Admin)?;
        self.node.audit_sample(&env).map(Response::new).map_err(Status::from)
    }

    async fn review(&self, req: Request<Signed>) -> Result<Response<AuditItem>, Status> {
        let env = self.checked(req, Caller::Admin)?;
        self.node.review(env).await.map(Response::new).map_err(Status::from)
    }
}

#[tonic::async_trait]
impl PeerService for Svc {
    async fn submit_claim(&self, req: Request<Signed>) -> Result<Response<Signed>, Status> {
        let env = self.checked(req, Caller::Peer)?;
        self.node.handle_claim(env).await.map(Response::new).map_err(Status::from)
    }

    async fn submit_claims(&self, req: Request<ClaimBatch>) -> Result<Response<ClaimAnswers>, Status> {
        for claim in &req.get_ref().claims {
            self.bound(&req, claim, Caller::Peer)?;
        }
        let claims = req.into_inner().claims;
        if claims.len() > MAX_CLAIMS_PER_BATCH {
            let e = NodeError::bad(
                "claims",
                format!("{} claims in one batch (at most {MAX_CLAIMS_PER_BATCH})", claims.len()),
            );
            return Err(e.into());
        }
        // Each claim in its own task, as if it had come alone: the batch's
        // appends reach the ledger together, and one group commits them.
        let tasks: Vec<_> = claims
            .into_iter()
            .map(|claim| {
                let node = Arc::clone(&self.node);
                tokio::spawn(async move { node.handle_claim(claim).await })
            })
            .collect();
        let mut answers = Vec::with_capacity(tasks.len());
        for task in tasks {
            let outcome = task.await.unwrap_or_else(|e| Err(NodeError::Internal(format!("claim task: {e}"))));
            answers.push(peer_batch::to_answer(outcome));
        }
        Ok(Response::new(ClaimAnswers { answers }))
    }

    async fn sanction(&self, req: Request<Signed>) -> Result<Response<DesignationState>, Status> {
        let env = self.checked(req, Caller::Peer)?;
        self.node.handle_sanction(env).await.map(Response::new).map_err(Status::from)
    }

    async fn contribution_years(&self, req: Request<Signed>) -> Result<Response<ContributionYearsResponse>, Status> {
        let env = self.checked(req, Caller::Peer)?;
        self.node
            .handle_contribution_years(env)
            .map(|years| Response::new(ContributionYearsResponse { years: years.into_iter().collect() }))
            .map_err(Status::from)
    }
}

#[tonic::async_trait]
impl RegistrationService for Svc {
    async fn apply(&self, req: Request<Signed>) -> Result<Response<RegistrationRecord>, Status> {
        let env = self.checked(req, Caller::Admin)?;
        self.node.apply_registration(env).await.map(Response::new).map_err(Status::from)
    }

    async fn import_persons(&self, req: Request<Signed>) -> Result<Response<PersonImportResult>, Status> {
        let env = self.checked(req, Caller::Admin)?;
        self.node.import_persons_signed(env).await.map(Response::new).map_err(Status::from)
    }

    async fn qualify(&self, req: Request<Signed>) -> Result<Response<PersonState>, Status> {
        let env = self.checked(req, Caller::Admin)?;
        self.node.qualify(env).await.map(Response::new).map_err(Status::from)
    }

    async fn credit_account(&self, req: Request<Signed>) -> Result<Response<PersonState>, Status> {
        let env = self.checked(req, Caller::Admin)?;
        self.node.credit_account(env).await.map(Response::new).map_err(Status::from)
    }

    async fn designate(&self, req: Request<Signed>) -> Result<Response<DesignationState>, Status> {
        let env = self.checked(req, Caller::Admin)?;
        self.node.designate(env).await.map(Response::new).map_err(Status::from)
    }

    async fn query(&self, req: Request<Signed>) -> Result<Response<RegistrationList>, Status> {
        let env = self.checked(req, Caller::AdminOrPeer)?;
        self.node
            .query_registrations(&env)
            .map(|registrations| Response::new(RegistrationList { registrations }))
            .map_err(Status::from)
    }
}

#[tonic::async_trait]
impl ReportService for Svc {
    async fn month_report(&self, req: Request<Signed>) -> Result<Response<Signed>, Status> {
        let env = self.checked(req, Caller::Operator)?;
        self.node.handle_report_request(env).await.map(Response::new).map_err(Status::from)
    }

    async fn final_statement(&self, req: Request<Signed>) -> Result<Response<FinalStatementReceipt>, Status> {
        let env = self.checked(req, Caller::Operator)?;
        let receipt = self.node.handle_final_statement(env).await.map_err(Status::from)?;
        // The month's statements and sample (ledger scans): the operator
        // waits for them a few seconds at most, then they go on in the
        // background (and the node's loop finishes them if they fail).
        let node = Arc::clone(&self.node);
        let work = tokio::spawn(async move {
            if let Err(e) = node.after_final().await {
                tracing::warn!(error = %e, "institutions' statements and audit sample");
            }
        });
        let _ = tokio::time::timeout(AFTER_FINAL_WAIT, work).await;
        Ok(Response::new(receipt))
    }

    async fn lines(&self, req: Request<Signed>) -> Result<Response<Signed>, Status> {
        // Checked here, so only the operator's requests reach a blocking thread.
        let env = self.checked(req, Caller::Operator)?;
        let lines = self.node.lines_request(&env).map_err(Status::from)?;
        let node = Arc::clone(&self.node);
        match tokio::task::spawn_blocking(move || node.lines_page(&lines)).await {
            Ok(page) => page.map(Response::new).map_err(Status::from),
            Err(e) => Err(Status::from(NodeError::Internal(format!("the lines page's task failed: {e}")))),
        }
    }
}

/// Serves the node on `listener` until `shutdown` completes, over TLS when
/// `tls` is given.
pub async fn serve(
    node: Arc<Node>,
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    use tonic::server::NamedService;
    let services = [
        <HospitalServiceServer<Svc> as NamedService>::NAME,
        <PeerServiceServer<Svc> as NamedService>::NAME,
        <RegistrationServiceServer<Svc> as NamedService>::NAME,
        <ReportServiceServer<Svc> as NamedService>::NAME,
        <AuditServiceServer<Svc> as NamedService>::NAME,
    ];
    let (health, router) = crate::api::server::router(REQUEST_TIMEOUT, &services, tls.as_deref())?;
    health.set_serving::<HospitalServiceServer<Svc>>().await;
    health.set_serving::<PeerServiceServer<Svc>>().await;
    health.set_serving::<RegistrationServiceServer<Svc>>().await;
    health.set_serving::<ReportServiceServer<Svc>>().await;
    health.set_serving::<AuditServiceServer<Svc>>().await;
    let svc = Svc { node, tls: tls.is_some() };
    router
        .add_service(
            HospitalServiceServer::new(svc.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            PeerServiceServer::new(svc.clone())
                .max_decoding_message_size(MAX_PEER_BATCH_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            ReportServiceServer::new(svc.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_REPORT_BYTES),
        )
        .add_service(
            AuditServiceServer::new(svc.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            RegistrationServiceServer::new(svc)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(crate::api::incoming(listener), shutdown)
        .await
        .map_err(|e| e.to_string())
}

/// Serves `node` on `listener` in the background until the returned sender
/// is used or dropped.
pub fn spawn_serve(node: Arc<Node>, listener: TcpListener, tls: Option<Arc<Tls>>) -> tokio::sync::oneshot::Sender<()> {
    crate::api::server::spawn_until_stopped("node server", |stop| serve(node, listener, tls, stop))
}

/// Reaches peers over gRPC (over TLS when given): one lazily connected channel per peer, and
/// claims to each peer batched (see [`super::peer_batch`]).
pub struct GrpcTransport {
    channels: Channels,
    batchers: Mutex<HashMap<RegionCode, Arc<ClaimBatcher>>>,
    batch_limits: BatchLimits,
    /// Peers that answered a batch as unimplemented: sent one claim a call.
    single_only: Arc<Mutex<HashSet<RegionCode>>>,
}

impl GrpcTransport {
    pub fn new(endpoints: BTreeMap<RegionCode, String>, tls: Option<Arc<Tls>>) -> GrpcTransport {
        GrpcTransport {
            channels: Channels::new(endpoints, tls),
            batchers: Mutex::new(HashMap::new()),
            batch_limits: BatchLimits::default(),
            single_only: Arc::default(),
        }
    }

    /// The claim queue to a peer, started on the caller's runtime the first
    /// time (and again if that runtime has gone).
    fn batcher(&self, to: RegionCode) -> Result<Arc<ClaimBatcher>, TransportError> {
        let mut batchers = self
            .batchers
            .lock()
            .map_err(|_| TransportError::Internal("a thread panicked holding the claim batchers".into()))?;
        if let Some(b) = batchers.get(&to).filter(|b| !b.is_closed()) {
            return Ok(Arc::clone(b));
        }
        let client = self.client(to)?;
        let single_only = Arc::clone(&self.single_only);
        let batcher = Arc::new(ClaimBatcher::spawn(self.batch_limits, move |claims| {
            let mut c = client.clone();
            let single_only = Arc::clone(&single_only);
            async move {
                match c.submit_claims(ClaimBatch { claims }).await {
                    Ok(answers) => Ok(answers.into_inner().answers.into_iter().map(peer_batch::from_answer).collect()),
                    // A node from before batches: this batch's claims are
                    // retried by their settlements, one call each from now on.
                    Err(s) if s.code() == tonic::Code::Unimplemented => {
                        if let Ok(mut peers) = single_only.lock() {
                            peers.insert(to);
                        }
                        Err(TransportError::Unreachable(format!("{to} takes no batches; claims go one by one")))
                    }
                    Err(s) => Err(transport_error(s)),
                }
            }
        }));
        batchers.insert(to, Arc::clone(&batcher));
        Ok(batcher)
    }

    /// Whether `to` has not answered a batch as unimplemented (an older node).
    fn takes_batches(&self, to: RegionCode) -> bool {
        self.single_only.lock().map(|peers| !peers.contains(&to)).unwrap_or(true)
    }

    fn channel(&self, to: RegionCode) -> Result<Channel, TransportError> {
        self.channels.get(to)
    }

    fn client(&self, to: RegionCode) -> Result<PeerServiceClient<Channel>, TransportError> {
        self.channel(to).map(client)
    }
}

fn client(c: Channel) -> PeerServiceClient<Channel> {
    PeerServiceClient::new(c)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_PEER_BATCH_BYTES)
}

impl PeerTransport for GrpcTransport {
    fn submit_claim(&self, to: RegionCode, claim: Signed) -> BoxFuture<'_, Result<Signed, TransportError>> {
        Box::pin(async move {
            if self.takes_batches(to) {
                return self.batcher(to)?.submit(claim).await;
            }
            let mut c = self.client(to)?;
            c.submit_claim(claim).await.map(Response::into_inner).map_err(transport_error)
        })
    }

    fn contribution_years(
        &self,
        to: RegionCode,
        query: Signed,
    ) -> BoxFuture<'_, Result<BTreeMap<String, u32>, TransportError>> {
        Box::pin(async move {
            let mut c = self.client(to)?;
            c.contribution_years(query)
                .await
                .map(|r| r.into_inner().years.into_iter().collect())
                .map_err(transport_error)
        })
    }

    fn sanction(&self, to: RegionCode, notice: Signed) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            let mut c = self.client(to)?;
            c.sanction(notice).await.map(|_| ()).map_err(transport_error)
        })
    }
}
