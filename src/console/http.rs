//! What every console's HTTP edge shares: who is asking (a bearer token or
//! a session cookie), the 401 answer (logged), the token-for-cookie login,
//! and plain status pages.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::Markup;

use super::auth::{Access, COOKIE, SESSION_MS};
use crate::clock::Clock;

/// The viewers a console admits, and its clock (for sessions).
pub struct Gate {
    pub access: Access,
    pub clock: Arc<dyn Clock>,
}

impl Gate {
    /// The viewer of a request: its bearer token's, or its session's.
    pub fn viewer(&self, headers: &HeaderMap) -> Option<String> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|t| self.access.viewer_of_token(t.trim()).map(str::to_string));
        if bearer.is_some() {
            return bearer;
        }
        let now = self.clock.now_ms();
        headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
            cookie::Cookie::split_parse(v)
                .filter_map(Result::ok)
                .find(|c| c.name() == COOKIE)
                .and_then(|c| self.access.viewer_of_session(c.value(), now))
        })
    }
}

/// A console's state: it has a gate.
pub trait Gated: Send + Sync + 'static {
    fn gate(&self) -> &Gate;
}

/// A page, not cached, not framed, running nothing and loading nothing
/// (its one style sheet is inline).
pub fn page(m: Markup) -> Response {
    let mut r = Html(m.into_string()).into_response();
    for (k, v) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ] {
        if let Ok(v) = v.parse() {
            r.headers_mut().insert(k, v);
        }
    }
    r
}

/// Where a login may go next: a path of this console, of plain characters
/// only (no scheme, host, backslash or control character sneaks through).
fn next_path(next: &str) -> &str {
    let plain = next.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b));
    if plain && next.starts_with('/') && !next.starts_with("//") {
        next
    } else {
        "/"
    }
}

pub fn status_page(code: StatusCode, text: &str) -> Response {
    let body = maud::html! {
        (maud::DOCTYPE)
        html lang="en" { head { meta charset="utf-8"; title { (code.as_u16()) } } body { p { (text) } } }
    };
    (code, Html(body.into_string())).into_response()
}

/// 401, logged.
pub fn refused(path: &str) -> Response {
    tracing::warn!(path, "console: a request without a valid token or session, refused");
    let mut r = status_page(StatusCode::UNAUTHORIZED, "Not authorised: a viewer's token is needed.");
    if let Ok(v) = "Bearer realm=\"xclear console\"".parse() {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

#[derive(serde::Deserialize)]
pub struct Login {
    token: String,
    #[serde(default)]
    next: String,
}

/// Exchanges a token for a session cookie, then goes to `next` (a path of
/// this console only).
pub async fn login<S: Gated>(State(ctx): State<Arc<S>>, Query(q): Query<Login>) -> Response {
    let gate = ctx.gate();
    let Some(name) = gate.access.viewer_of_token(&q.token).map(str::to_string) else {
        return refused("/login");
    };
    let id = hex::encode(rand::random::<[u8; 32]>());
    gate.access.open_session(id.clone(), &name, gate.clock.now_ms());
    tracing::info!(viewer = %name, "console: session opened");
    let next = next_path(&q.next);
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

/// Any other path: 401 unless a viewer asks, then 404.
pub async fn fallback<S: Gated>(State(ctx): State<Arc<S>>, headers: HeaderMap, uri: axum::http::Uri) -> Response {
    match ctx.gate().viewer(&headers) {
        None => refused(uri.path()),
        Some(_) => status_page(StatusCode::NOT_FOUND, "No such page."),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_login_goes_only_to_a_plain_path_here() {
        for (next, to) in [
            ("/month/2026-03", "/month/2026-03"),
            ("", "/"),
            ("//evil.example", "/"),
            ("/\\evil.example", "/"),
            ("/\t/evil.example", "/"),
            ("https://evil.example", "/"),
            ("/a?b=c", "/"),
            ("/x\r\nSet-Cookie: a=b", "/"),
        ] {
            assert_eq!(super::next_path(next), to, "{next:?}");
        }
    }
}
