//! Sign-In with Ethereum and sessions: the handlers, and the [`Viewer`]
//! every handler can ask for.
//!
//! The session token travels only in an HTTP-only, `SameSite=Strict`
//! cookie: page scripts never read it, and other sites cannot send it. A
//! state-changing request that carries a session and an `Origin` header
//! naming another site is refused as well.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cookie::{Cookie, SameSite};
use oblivion_protocol::auth::{SESSION_COOKIE, SessionView, SignIn, SignInChallenge};

use super::read_body;
use crate::coordinator::{Coordinator, Viewer};
use crate::error::AppError;

/// Largest sign-in body, bytes.
const MAX_SIGN_IN_BYTES: usize = 16 * 1024;

/// The session token a request carries in its cookie, if any.
fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == SESSION_COOKIE)
        .map(|c| c.value().to_string())
}

fn host(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::HOST).and_then(|v| v.to_str().ok())
}

impl FromRequestParts<Arc<Coordinator>> for Viewer {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        c: &Arc<Coordinator>,
    ) -> Result<Viewer, AppError> {
        let Some(token) = session_token(&parts.headers) else {
            return Ok(Viewer(None));
        };
        // An unknown or expired session is an anonymous visitor.
        let Some(session) = c.session(&token).await? else {
            return Ok(Viewer(None));
        };
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe && let Some(origin) = parts.headers.get(header::ORIGIN) {
            let (_, authority) = c.origin(host(&parts.headers))?;
            let theirs = origin
                .to_str()
                .ok()
                .and_then(|o| o.split_once("://"))
                .map(|(_, a)| a);
            if theirs != Some(authority) {
                return Err(AppError::new(
                    StatusCode::FORBIDDEN,
                    format!("cross-site request refused: Origin {origin:?} is not {authority}"),
                ));
            }
        }
        Ok(Viewer(Some(session.address)))
    }
}

/// `POST /api/auth/nonce`: a single-use sign-in challenge.
pub async fn nonce(
    State(c): State<Arc<Coordinator>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<SignInChallenge>, AppError> {
    c.sign_ins_rate.check(client.ip())?;
    let origin = c.origin(host(&headers))?;
    Ok(Json(c.sign_in_challenge(origin).await?))
}

/// `POST /api/auth/login`: a signed challenge → the session, as a cookie.
pub async fn login(
    State(c): State<Arc<Coordinator>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    let bytes = read_body(body, MAX_SIGN_IN_BYTES, "the sign-in").await?;
    let answer: SignIn = serde_json::from_slice(&bytes).map_err(|e| {
        AppError::bad_request(format!(
            "the sign-in is not {{\"message\", \"signature\"}} JSON: {e}"
        ))
    })?;
    let (scheme, authority) = c.origin(host(&headers))?;
    let (view, token) = c.sign_in(&answer, authority).await?;
    let cookie = Cookie::build((SESSION_COOKIE, token))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(scheme == "https")
        .path("/")
        .max_age(cookie::time::Duration::seconds(
            c.config.session_ttl.as_secs() as i64,
        ))
        .build();
    set_cookie(Json(view).into_response(), &cookie)
}

fn set_cookie(mut response: Response, cookie: &Cookie) -> Result<Response, AppError> {
    let value = HeaderValue::from_str(&cookie.to_string())
        .map_err(|e| AppError::internal(format!("session cookie: {e}")))?;
    response.headers_mut().append(header::SET_COOKIE, value);
    Ok(response)
}

/// `GET /api/auth/session`: who is signed in (401 when nobody).
pub async fn session(
    State(c): State<Arc<Coordinator>>,
    headers: HeaderMap,
) -> Result<Json<SessionView>, AppError> {
    let token = session_token(&headers);
    let session = match token {
        Some(t) => c.session(&t).await?,
        None => None,
    };
    session
        .map(Json)
        .ok_or_else(|| AppError::new(StatusCode::UNAUTHORIZED, "not signed in"))
}

/// `POST /api/auth/logout`: ends the session and clears its cookie.
pub async fn logout(
    State(c): State<Arc<Coordinator>>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    if let Some(token) = session_token(&headers) {
        c.sign_out(&token).await?;
    }
    let mut cookie = Cookie::build((SESSION_COOKIE, ""))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .build();
    cookie.make_removal();
    set_cookie(StatusCode::NO_CONTENT.into_response(), &cookie)
}
