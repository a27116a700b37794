//! A regional agency's console on its own node (HTTP, axum): its
//! settlements by month and counterpart, what awaits a home node, its
//! institutions' statements and its audit sample
//! ([`crate::console::agency`]), to the viewers its config names. GET only.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use super::clearing_side::Side;
use super::Node;
use crate::api::NodeError;
use crate::clearing::Month;
use crate::clock::Clock;
use crate::console::agency::{self, PairRow, Sample};
use crate::console::auth::Access;
use crate::console::http::{fallback, login, page, refused, status_page, Gate, Gated};

/// Pending intents the front page lists at most.
pub const MAX_WAITING_SHOWN: usize = 200;

struct Ctx {
    node: Arc<Node>,
    gate: Gate,
}

impl Gated for Ctx {
    fn gate(&self) -> &Gate {
        &self.gate
    }
}

type Shared = Arc<Ctx>;

fn internal(e: NodeError) -> Response {
    tracing::error!(error = %e, "console");
    status_page(StatusCode::INTERNAL_SERVER_ERROR, "The node's records could not be read; see its log.")
}

async fn index(State(ctx): State<Shared>, headers: HeaderMap) -> Response {
    if ctx.gate.viewer(&headers).is_none() {
        return refused("/");
    }
    let (waiting, total) = ctx.node.waiting(MAX_WAITING_SHOWN);
    page(agency::index(ctx.node.region(), &ctx.node.months_with_lines(), &waiting, total))
}

async fn month(State(ctx): State<Shared>, headers: HeaderMap, Path(month): Path<String>) -> Response {
    if ctx.gate.viewer(&headers).is_none() {
        return refused(&format!("/month/{month}"));
    }
    let Some(m) = Month::parse(&month) else {
        return status_page(StatusCode::BAD_REQUEST, "A month is written YYYY-MM.");
    };
    let node = Arc::clone(&ctx.node);
    // The sample and statements read the ledger: off the runtime's workers.
    let built = tokio::task::spawn_blocking(move || -> Result<_, NodeError> {
        let rows: Vec<PairRow> = node
            .month_totals(m)?
            .into_iter()
            .map(|((side, counterpart), s)| PairRow {
                as_treatment: side == Side::AsTreatment,
                counterpart,
                count: s.count,
                owed: s.amounts.owed(),
            })
            .collect();
        let mut statements = Vec::new();
        for code in node.config.hospitals.keys() {
            if let Some(signed) = node.hospital_statement(code, m)? {
                let s = super::hospital_statements::open_statement(&signed, &node.public_key())
                    .map_err(NodeError::Internal)?;
                statements.push(s);
            }
        }
        let sample = node.sample_view(m)?.map(|(population, items)| Sample { population, items });
        Ok(agency::month(node.region(), m, &node.months_with_lines(), &rows, &statements, sample.as_ref()))
    })
    .await;
    match built {
        Ok(Ok(markup)) => page(markup),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(NodeError::Internal(e.to_string())),
    }
}

/// The console's routes.
pub fn router(node: Arc<Node>, access: Access, clock: Arc<dyn Clock>) -> Router {
    let ctx = Arc::new(Ctx { node, gate: Gate { access, clock } });
    Router::new()
        .route("/", get(index))
        .route("/login", get(login::<Ctx>))
        .route("/month/{month}", get(month))
        .fallback(fallback::<Ctx>)
        .with_state(ctx)
}

/// Serves the console on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    access: Access,
    clock: Arc<dyn Clock>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    axum::serve(listener, router(node, access, clock)).with_graceful_shutdown(shutdown).await.map_err(|e| e.to_string())
}
