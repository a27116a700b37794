//! The operator's gRPC edge (`xclear operator --config FILE`): closing a
//! month and recording adjustments (both signed by the operator's own key),
//! regions' confirmations and disputes (signed by their node keys), and the
//! read-only statement and advance-fund queries. Thin: every call goes to
//! [`Operator`]; errors map to statuses in `api::error`.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use super::Operator;
use super::OperatorError;
use crate::api::convert::advance_line;
use crate::api::envelope::{self, CLOSE_DOMAIN};
use crate::clearing::Month;
use crate::proto::operator_service_server::{OperatorService, OperatorServiceServer};
use crate::proto::{
    AdjustmentReceipt, AdvanceReport, AdvanceRequest, AnswerReceipt, CloseRequest, Signed, StatementRequest,
};
use crate::region::RegionCode;
use crate::transport::{MAX_MESSAGE_BYTES, REQUEST_TIMEOUT};

/// Largest statement the operator sends (it lists every differing line).
pub const MAX_STATEMENT_BYTES: usize = 64 * 1024 * 1024;
/// Closing a month asks every node for its report and lines.
pub const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

struct Svc {
    operator: Arc<Operator>,
    warning_pct: u32,
    /// Whether connections are TLS: then a signed request's signer must be
    /// the holder of the connection's client certificate.
    tls: bool,
}

/// Who may sign what the operator takes.
#[derive(Debug, Clone, Copy)]
enum Signer {
    /// Close and Adjust: the operator's own key.
    Operator,
    /// Answer: the region the envelope's signer names, by its node key.
    Region,
}

impl Svc {
    fn refuse(&self, why: String) -> Status {
        OperatorError::NotAuthorised(why).into()
    }

    /// The envelope of `req`, refused over TLS when the connection's
    /// certificate does not carry the key `signer` requires (a signer that
    /// names no configured key is refused too).
    fn checked(&self, req: Request<Signed>, signer: Signer) -> Result<Signed, Status> {
        if self.tls {
            let env = req.get_ref();
            let key = match signer {
                Signer::Operator => Some(self.operator.key.verifying_key()),
                Signer::Region => RegionCode::parse(&env.signer).ok().and_then(|r| self.operator.node_key(r)),
            };
            let bound = key.is_some_and(|k| crate::tls::bound(crate::tls::peer_key(&req), &k));
            if !bound {
                return Err(self.refuse(format!(
                    "the request names {:?} as its signer, but the connection's certificate does not carry the key it needs",
                    env.signer
                )));
            }
        }
        Ok(req.into_inner())
    }

    /// Over TLS, reads (statements, advance funds) are for the operator and
    /// the regions' nodes only, not for every holder of a certificate.
    fn reader<T>(&self, req: &Request<T>) -> Result<(), Status> {
        if !self.tls {
            return Ok(());
        }
        let peer = crate::tls::peer_key(req);
        let own = self.operator.key.verifying_key();
        let allowed = peer.is_some_and(|p| p == own.to_bytes() || self.operator.is_node_key(&p));
        if allowed {
            Ok(())
        } else {
            Err(self.refuse("statements and advance funds are for the operator and the regions' nodes".into()))
        }
    }
}

fn month(text: &str) -> Result<Month, OperatorError> {
    Month::parse(text).ok_or_else(|| OperatorError::bad("month", format!("{text:?} is not YYYY-MM")))
}

impl Svc {
    async fn close(&self, env: Signed) -> Result<Signed, OperatorError> {
        let key = self.operator.key.verifying_key();
        let req: CloseRequest = envelope::open(&env, &key, CLOSE_DOMAIN)
            .map_err(|e| OperatorError::NotAuthorised(format!("only the operator closes a month: {e}")))?;
        // No month named: the operator's own next month due, by its clock.
        let month = if req.month.is_empty() { self.operator.next_month_due()? } else { month(&req.month)? };
        Ok(self.operator.close(month).await?.signed)
    }

    fn statement(&self, req: StatementRequest) -> Result<Signed, OperatorError> {
        let m = month(&req.month)?;
        match self.operator.statement_of(m)? {
            Some(closed) => Ok(closed.signed),
            None => Err(OperatorError::NotClosed(m.to_string())),
        }
    }

    async fn answer(&self, env: Signed) -> Result<AnswerReceipt, OperatorError> {
        let c = self.operator.answer(env).await?;
        let closed = self.operator.statement_of(month(&c.month)?)?;
        let is_final = match &closed {
            Some(closed) if closed.hash == c.statement_hash => self.operator.is_final(closed)?,
            _ => false,
        };
        Ok(AnswerReceipt {
            disputed: !c.disputes.is_empty(),
            month: c.month,
            region: c.region,
            statement_hash: c.statement_hash,
            r#final: is_final,
        })
    }

    async fn advance(&self, req: AdvanceRequest) -> Result<AdvanceReport, OperatorError> {
        let m = month(&req.month)?;
        let lines = self.operator.advance(m, self.warning_pct).await?.into_iter().map(|s| advance_line(&s)).collect();
        Ok(AdvanceReport { month: m.to_string(), lines })
    }
}

#[tonic::async_trait]
impl OperatorService for Arc<Svc> {
    async fn close(&self, req: Request<Signed>) -> Result<Response<Signed>, Status> {
        let env = self.checked(req, Signer::Operator)?;
        Svc::close(self, env).await.map(Response::new).map_err(Status::from)
    }

    async fn statement(&self, req: Request<StatementRequest>) -> Result<Response<Signed>, Status> {
        self.reader(&req)?;
        Svc::statement(self, req.into_inner()).map(Response::new).map_err(Status::from)
    }

    async fn answer(&self, req: Request<Signed>) -> Result<Response<AnswerReceipt>, Status> {
        let env = self.checked(req, Signer::Region)?;
        Svc::answer(self, env).await.map(Response::new).map_err(Status::from)
    }

    async fn adjust(&self, req: Request<Signed>) -> Result<Response<AdjustmentReceipt>, Status> {
        let env = self.checked(req, Signer::Operator)?;
        self.operator
            .record_adjustment(env)
            .await
            .map(|key| Response::new(AdjustmentReceipt { key }))
            .map_err(Status::from)
    }

    async fn advance(&self, req: Request<AdvanceRequest>) -> Result<Response<AdvanceReport>, Status> {
        self.reader(&req)?;
        Svc::advance(self, req.into_inner()).await.map(Response::new).map_err(Status::from)
    }
}

/// Serves the operator on `listener` until `shutdown` completes, over TLS
/// when `tls` is given.
pub async fn serve(
    operator: Arc<Operator>,
    warning_pct: u32,
    listener: TcpListener,
    tls: Option<Arc<crate::tls::Tls>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    use tonic::server::NamedService;
    let services = [<OperatorServiceServer<Arc<Svc>> as NamedService>::NAME];
    let (health, router) = crate::api::server::router(CLOSE_TIMEOUT.max(REQUEST_TIMEOUT), &services, tls.as_deref())?;
    health.set_serving::<OperatorServiceServer<Arc<Svc>>>().await;
    let svc = Arc::new(Svc { operator, warning_pct, tls: tls.is_some() });
    router
        .add_service(
            OperatorServiceServer::new(svc)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_STATEMENT_BYTES),
        )
        .serve_with_incoming_shutdown(crate::api::incoming(listener), shutdown)
        .await
        .map_err(|e| e.to_string())
}

/// Serves `operator` on `listener` in the background until the returned
/// sender is used or dropped.
pub fn spawn_serve(
    operator: Arc<Operator>,
    warning_pct: u32,
    listener: TcpListener,
    tls: Option<Arc<crate::tls::Tls>>,
) -> tokio::sync::oneshot::Sender<()> {
    crate::api::server::spawn_until_stopped("operator server", |stop| serve(operator, warning_pct, listener, tls, stop))
}
