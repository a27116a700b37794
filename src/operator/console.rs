//! The operator's console over HTTP (axum): the pages of
//! [`crate::console::pages`] from the operator's ledger, to viewers named in
//! the config only. Read-only: every route is a GET that changes nothing
//! (a login only opens a session). Anything unauthenticated gets 401, logged.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::Markup;
use tokio::net::TcpListener;

use super::{Operator, OperatorError};
use crate::clearing::Month;
use crate::clock::Clock;
use crate::console::auth::Access;
use crate::console::http::{fallback, login, page, refused, status_page, Gate, Gated};
use crate::console::pages::{self, MonthStatus};

/// Months the trends page shows at most (the latest).
pub const MAX_TREND_MONTHS: usize = 24;

struct Ctx {
    operator: Arc<Operator>,
    gate: Gate,
}

impl Gated for Ctx {
    fn gate(&self) -> &Gate {
        &self.gate
    }
}

type Shared = Arc<Ctx>;

fn internal(e: OperatorError) -> Response {
    tracing::error!(error = %e, "console");
    status_page(StatusCode::INTERNAL_SERVER_ERROR, "The operator's ledger could not be read; see its log.")
}

/// Every month with a statement.
fn months(ctx: &Ctx) -> Result<Vec<Month>, OperatorError> {
    ctx.operator.closed_months()
}

/// A closed month's status, or `None` when it has no statement.
fn status(ctx: &Ctx, month: Month) -> Result<Option<MonthStatus>, OperatorError> {
    let Some(closed) = ctx.operator.statement_of(month)? else { return Ok(None) };
    let confirmed = ctx.operator.confirmed_by(&closed)?;
    let is_final = ctx.operator.is_final(&closed)?;
    let disputes = ctx.operator.disputes_of(month)?;
    Ok(Some(MonthStatus { statement: closed.statement, hash: closed.hash, is_final, confirmed, disputes }))
}

/// Builds a page from the operator's ledger off the runtime's workers (the
/// operator's gRPC shares them).
async fn off_runtime(ctx: &Shared, build: impl FnOnce(&Ctx) -> Response + Send + 'static) -> Response {
    let ctx = Arc::clone(ctx);
    match tokio::task::spawn_blocking(move || build(&ctx)).await {
        Ok(r) => r,
        Err(e) => internal(OperatorError::Internal(format!("the page's task failed: {e}"))),
    }
}

/// Renders a month's page, or says plainly that the month has no statement.
fn month_page(ctx: &Ctx, month: &str, render: impl FnOnce(&MonthStatus, &[Month]) -> Markup) -> Response {
    let Some(month) = Month::parse(month) else {
        return status_page(StatusCode::BAD_REQUEST, "A month is written YYYY-MM.");
    };
    let all = match months(ctx) {
        Ok(all) => all,
        Err(e) => return internal(e),
    };
    match status(ctx, month) {
        Ok(Some(s)) => page(render(&s, &all)),
        Ok(None) => (StatusCode::NOT_FOUND, Html(pages::no_statement(month, &all).into_string())).into_response(),
        Err(e) => internal(e),
    }
}

async fn index(State(ctx): State<Shared>, headers: HeaderMap) -> Response {
    if ctx.gate.viewer(&headers).is_none() {
        return refused("/");
    }
    off_runtime(&ctx, |ctx| match months(ctx) {
        Ok(all) => page(pages::index(&all)),
        Err(e) => internal(e),
    })
    .await
}

async fn month_route(
    State(ctx): State<Shared>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Path((what, month)): Path<(String, String)>,
) -> Response {
    if ctx.gate.viewer(&headers).is_none() {
        return refused(uri.path());
    }
    off_runtime(&ctx, move |ctx| match what.as_str() {
        "month" => month_page(ctx, &month, pages::month),
        "heatmap" => month_page(ctx, &month, pages::heat_map),
        "advance" => month_page(ctx, &month, pages::advance),
        "reconciliation" => month_page(ctx, &month, |s, all| pages::reconciliation(s, &s.statement.adjustments, all)),
        _ => status_page(StatusCode::NOT_FOUND, "No such page."),
    })
    .await
}

async fn trends(State(ctx): State<Shared>, headers: HeaderMap) -> Response {
    if ctx.gate.viewer(&headers).is_none() {
        return refused("/trends");
    }
    off_runtime(&ctx, |ctx| {
        let all = match months(ctx) {
            Ok(all) => all,
            Err(e) => return internal(e),
        };
        let mut statements = Vec::new();
        for m in all.iter().rev().take(MAX_TREND_MONTHS).rev() {
            match ctx.operator.statement_of(*m) {
                Ok(Some(c)) => statements.push((*m, c.statement)),
                Ok(None) => {}
                Err(e) => return internal(e),
            }
        }
        page(pages::trends(&statements, &all))
    })
    .await
}

/// The console's routes.
pub fn router(operator: Arc<Operator>, access: Access, clock: Arc<dyn Clock>) -> Router {
    let ctx = Arc::new(Ctx { operator, gate: Gate { access, clock } });
    Router::new()
        .route("/", get(index))
        .route("/login", get(login::<Ctx>))
        .route("/trends", get(trends))
        .route("/{what}/{month}", get(month_route))
        .fallback(fallback::<Ctx>)
        .with_state(ctx)
}

/// Serves the console on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    operator: Arc<Operator>,
    access: Access,
    clock: Arc<dyn Clock>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    axum::serve(listener, router(operator, access, clock))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| e.to_string())
}
