//! The operator's console over HTTP (axum): the pages of
//! [`crate::console::pages`] from the operator's ledger, to viewers named in
//! the config only. Read-only: every route is a GET that changes nothing
//! (a login only opens a session). Anything unauthenticated gets 401, logged.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use maud::Markup;
use tokio::net::TcpListener;

use super::{Operator, OperatorError};
use crate::clearing::Month;
use crate::clock::Clock;
use crate::console::auth::{Access, COOKIE, SESSION_MS};
use crate::console::pages::{self, MonthStatus};

/// Months the trends page shows at most (the latest).
pub const MAX_TREND_MONTHS: usize = 24;

struct Ctx {
    operator: Arc<Operator>,
    access: Access,
    clock: Arc<dyn Clock>,
}

type Shared = Arc<Ctx>;

fn page(m: Markup) -> Response {
    Html(m.into_string()).into_response()
}

fn status_page(code: StatusCode, text: &str) -> Response {
    let body = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{code}</title></head>\
         <body><p>{}</p></body></html>",
        maud::html! { (text) }.into_string()
    );
    (code, Html(body)).into_response()
}

/// The viewer of a request: its bearer token's, or its session's.
fn viewer(ctx: &Ctx, headers: &HeaderMap) -> Option<String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| ctx.access.viewer_of_token(t.trim()).map(str::to_string));
    if bearer.is_some() {
        return bearer;
    }
    let now = ctx.clock.now_ms();
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
        cookie::Cookie::split_parse(v)
            .filter_map(Result::ok)
            .find(|c| c.name() == COOKIE)
            .and_then(|c| ctx.access.viewer_of_session(c.value(), now))
    })
}

fn refused(path: &str) -> Response {
    tracing::warn!(path, "console: a request without a valid token or session, refused");
    let mut r = status_page(StatusCode::UNAUTHORIZED, "Not authorised: a viewer's token is needed.");
    if let Ok(v) = "Bearer realm=\"xclear console\"".parse() {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

fn internal(e: OperatorError) -> Response {
    tracing::error!(error = %e, "console");
    status_page(StatusCode::INTERNAL_SERVER_ERROR, "The operator's ledger could not be read; see its log.")
}

/// Every month with a statement (none, if the index cannot be read: the
/// page itself then says what failed).
fn months(ctx: &Ctx) -> Vec<Month> {
    ctx.operator.closed_months().unwrap_or_default()
}

/// A closed month's status, or `None` when it has no statement.
fn status(ctx: &Ctx, month: Month) -> Result<Option<MonthStatus>, OperatorError> {
    let Some(closed) = ctx.operator.statement_of(month)? else { return Ok(None) };
    let confirmed = ctx.operator.confirmed_by(&closed)?;
    let is_final = ctx.operator.is_final(&closed)?;
    let disputes = ctx.operator.disputes_of(month)?;
    Ok(Some(MonthStatus { statement: closed.statement, hash: closed.hash, is_final, confirmed, disputes }))
}

#[derive(serde::Deserialize)]
struct Login {
    token: String,
    #[serde(default)]
    next: String,
}

/// Exchanges a token for a session cookie, then goes to `next` (a path of
/// this console only).
async fn login(State(ctx): State<Shared>, Query(q): Query<Login>) -> Response {
    let Some(name) = ctx.access.viewer_of_token(&q.token).map(str::to_string) else {
        return refused("/login");
    };
    let id = hex::encode(rand::random::<[u8; 32]>());
    ctx.access.open_session(id.clone(), &name, ctx.clock.now_ms());
    tracing::info!(viewer = %name, "console: session opened");
    let next = if q.next.starts_with('/') && !q.next.starts_with("//") { q.next.as_str() } else { "/" };
    let cookie = cookie::Cookie::build((COOKIE, id))
        .path("/")
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
        .max_age(cookie::time::Duration::milliseconds(SESSION_MS))
        .build();
    let mut r = Redirect::to(next).into_response();
    if let Ok(v) = cookie.to_string().parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// Renders a month's page, or says plainly that the month has no statement.
fn month_page(ctx: &Ctx, month: &str, render: impl FnOnce(&MonthStatus, &[Month]) -> Markup) -> Response {
    let Some(month) = Month::parse(month) else {
        return status_page(StatusCode::BAD_REQUEST, "A month is written YYYY-MM.");
    };
    let all = months(ctx);
    match status(ctx, month) {
        Ok(Some(s)) => page(render(&s, &all)),
        Ok(None) => (StatusCode::NOT_FOUND, Html(pages::no_statement(month, &all).into_string())).into_response(),
        Err(e) => internal(e),
    }
}

async fn route(
    State(ctx): State<Shared>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    path: Option<Path<(String, String)>>,
) -> Response {
    if viewer(&ctx, &headers).is_none() {
        return refused(uri.path());
    }
    let Some(Path((what, month))) = path else {
        return page(pages::index(&months(&ctx)));
    };
    match what.as_str() {
        "month" => month_page(&ctx, &month, pages::month),
        "heatmap" => month_page(&ctx, &month, pages::heat_map),
        "advance" => month_page(&ctx, &month, pages::advance),
        "reconciliation" => month_page(&ctx, &month, |s, all| pages::reconciliation(s, &s.statement.adjustments, all)),
        _ => status_page(StatusCode::NOT_FOUND, "No such page."),
    }
}

async fn trends(State(ctx): State<Shared>, headers: HeaderMap) -> Response {
    if viewer(&ctx, &headers).is_none() {
        return refused("/trends");
    }
    let all = months(&ctx);
    let mut statements = Vec::new();
    for m in all.iter().rev().take(MAX_TREND_MONTHS).rev() {
        match ctx.operator.statement_of(*m) {
            Ok(Some(c)) => statements.push((*m, c.statement)),
            Ok(None) => {}
            Err(e) => return internal(e),
        }
    }
    page(pages::trends(&statements, &all))
}

async fn index(state: State<Shared>, headers: HeaderMap, uri: axum::http::Uri) -> Response {
    route(state, headers, uri, None).await
}

async fn month_route(
    state: State<Shared>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    path: Path<(String, String)>,
) -> Response {
    route(state, headers, uri, Some(path)).await
}

/// The console's routes.
pub fn router(operator: Arc<Operator>, access: Access, clock: Arc<dyn Clock>) -> Router {
    let ctx = Arc::new(Ctx { operator, access, clock });
    Router::new()
        .route("/", get(index))
        .route("/login", get(login))
        .route("/trends", get(trends))
        .route("/{what}/{month}", get(month_route))
        .fallback(|State(ctx): State<Shared>, headers: HeaderMap, uri: axum::http::Uri| async move {
            match viewer(&ctx, &headers) {
                None => refused(uri.path()),
                Some(_) => status_page(StatusCode::NOT_FOUND, "No such page."),
            }
        })
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
