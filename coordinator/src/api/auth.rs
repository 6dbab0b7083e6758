//! Sign-In with Ethereum and sessions: the handlers, and the [`Viewer`]
//! every handler can ask for.
//!
//! The session token travels only in an HTTP-only, `SameSite=Strict`
//! cookie: page scripts never read it, and other sites cannot send it. A
//! state-changing request that carries a session and an `Origin` header
//! naming another site is refused as well.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cookie::{Cookie, SameSite};
use oblivion_protocol::auth::{
    SECURE_SESSION_COOKIE, SESSION_COOKIE, SessionView, SignIn, SignInChallenge,
};

use super::client::Client;
use super::read_body;
use crate::error::{AppError, Failure};
use crate::service::{Coordinator, Viewer};

/// Largest sign-in body, bytes.
const MAX_SIGN_IN_BYTES: usize = 16 * 1024;

/// Whether users reach this coordinator over HTTPS (its public URL says).
fn https(c: &Coordinator) -> bool {
    matches!(c.config.public_origin(), Some(("https", _)))
}

/// The session cookie's name: `__Host-` prefixed over HTTPS.
fn cookie_name(c: &Coordinator) -> &'static str {
    if https(c) {
        SECURE_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    }
}

/// The session token a request carries in its cookie, if any. Over HTTPS
/// only the `__Host-` cookie counts: a plain one may have been planted by
/// a sibling subdomain.
fn session_token(c: &Coordinator, headers: &HeaderMap) -> Option<String> {
    let name = cookie_name(c);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == name)
        .map(|cookie| cookie.value().to_string())
}

fn host(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::HOST).and_then(|v| v.to_str().ok())
}

/// Refuses a request whose `Origin` (when it has one: browsers always
/// send it on cross-origin requests and WebSocket upgrades) is not this
/// coordinator's own origin, scheme included. Sibling subdomains are
/// same-site, so `SameSite=Strict` alone would let their pages use a
/// victim's cookie.
pub(super) fn same_origin(c: &Coordinator, headers: &HeaderMap) -> Result<(), AppError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let (scheme, authority) = c.accounts.origin(host(headers))?;
    let ours = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .is_some_and(|(s, a)| s.eq_ignore_ascii_case(scheme) && a.eq_ignore_ascii_case(authority));
    if ours {
        Ok(())
    } else {
        Err(AppError::new(
            Failure::Forbidden,
            format!("cross-site request refused: Origin {origin:?} is not {scheme}://{authority}"),
        ))
    }
}

impl FromRequestParts<Arc<Coordinator>> for Viewer {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        c: &Arc<Coordinator>,
    ) -> Result<Viewer, AppError> {
        let Some(token) = session_token(c, &parts.headers) else {
            return Ok(Viewer(None));
        };
        // An unknown or expired session is an anonymous visitor.
        let Some(session) = c.accounts.session(&token).await? else {
            return Ok(Viewer(None));
        };
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe {
            same_origin(c, &parts.headers)?;
        }
        Ok(Viewer(Some(session.address)))
    }
}

/// `POST /api/auth/nonce`: a single-use sign-in challenge.
pub async fn nonce(
    State(c): State<Arc<Coordinator>>,
    Client(client): Client,
    headers: HeaderMap,
) -> Result<Json<SignInChallenge>, AppError> {
    c.limits.sign_ins.check(client)?;
    let origin = c.accounts.origin(host(&headers))?;
    Ok(Json(c.accounts.sign_in_challenge(origin).await?))
}

/// `POST /api/auth/login`: a signed challenge → the session, as a cookie.
pub async fn login(
    State(c): State<Arc<Coordinator>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    // Nor may another site sign a visitor in (to an account of its own).
    same_origin(&c, &headers)?;
    let bytes = read_body(body, MAX_SIGN_IN_BYTES, "the sign-in").await?;
    let answer: SignIn = serde_json::from_slice(&bytes).map_err(|e| {
        AppError::bad_request(format!(
            "the sign-in is not {{\"message\", \"signature\"}} JSON: {e}"
        ))
    })?;
    let (scheme, authority) = c.accounts.origin(host(&headers))?;
    let (view, token) = c.accounts.sign_in(&answer, authority).await?;
    let cookie = Cookie::build((cookie_name(&c), token))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(scheme == "https")
        .path("/")
        .max_age(cookie::time::Duration::seconds(
            c.config.sign_in.session_ttl.as_secs() as i64,
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
    let token = session_token(&c, &headers);
    let session = match token {
        Some(t) => c.accounts.session(&t).await?,
        None => None,
    };
    session
        .map(Json)
        .ok_or_else(|| AppError::new(Failure::NotSignedIn, "not signed in"))
}

/// `POST /api/auth/logout`: ends the session and clears its cookie.
pub async fn logout(
    State(c): State<Arc<Coordinator>>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    if let Some(token) = session_token(&c, &headers) {
        c.accounts.sign_out(&token).await?;
    }
    let mut cookie = Cookie::build((cookie_name(&c), ""))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(https(&c))
        .path("/")
        .build();
    cookie.make_removal();
    set_cookie(StatusCode::NO_CONTENT.into_response(), &cookie)
}
