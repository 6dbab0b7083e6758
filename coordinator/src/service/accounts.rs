//! Accounts: sign-in challenges, sessions, and who may do what to a job.

use oblivion_protocol::Visibility;
use oblivion_protocol::auth::{SessionView, SignIn, SignInChallenge};
use rand::Rng;
use rand::distr::Alphanumeric;
use time::OffsetDateTime;

use std::sync::Arc;

use super::shared::{Parts, token_hash};
use crate::config::Config;
use crate::error::{AppError, Failure};
use crate::siwe::{self, Expected, rfc3339};
use oblivion_store::{Db, JobRow, now};

/// The line a wallet shows when asked to sign in.
const STATEMENT: &str = "Sign in to Oblivion with this account.";

/// Who is asking: a signed-in account, or an anonymous visitor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Viewer(pub Option<String>);

impl Viewer {
    /// The account, or 401.
    pub fn account(&self) -> Result<&str, AppError> {
        self.0.as_deref().ok_or_else(|| {
            AppError::new(
                Failure::NotSignedIn,
                "sign in first (POST /api/auth/nonce, then POST /api/auth/login)",
            )
        })
    }

    /// Whether this viewer owns `job`.
    pub fn owns(&self, job: &JobRow) -> bool {
        self.0.is_some() && self.0 == job.creator
    }

    /// Whether this viewer may read `job`'s spec, model and data.
    pub fn may_read(&self, job: &JobRow) -> bool {
        job.spec.visibility() == Visibility::Public || self.owns(job)
    }
}

/// Sign-in and sessions: who an account is. Uses no other service.
pub struct Accounts {
    config: Arc<Config>,
    db: Db,
    /// The chain sign-in messages must name: the one paid jobs settle on.
    chain_id: Option<u64>,
}

impl Accounts {
    /// The accounts service; sign-in names the chain paid jobs settle on,
    /// when there is one.
    pub(super) fn new(parts: &Parts) -> Accounts {
        Accounts {
            config: parts.config.clone(),
            db: parts.db.clone(),
            chain_id: parts.chain.as_ref().map(|c| c.config.chain_id),
        }
    }

    /// Forgets expired sign-in challenges and sessions.
    pub(super) async fn forget_expired(&self) {
        if let Err(e) = self.db.forget_expired_sign_ins(now()).await {
            tracing::warn!("forgetting expired sessions: {e}");
        }
    }

    /// The `(scheme, authority)` sign-in messages must name: the configured
    /// public URL's; else, over HTTP, the request's `Host` if it names an
    /// address this coordinator serves on (loopback, or its listening
    /// address). Any other `Host` is refused: a phishing site would send
    /// its own, and have a victim sign in for it.
    pub fn origin<'a>(&'a self, host: Option<&'a str>) -> Result<(&'a str, &'a str), AppError> {
        if let Some(origin) = self.config.public_origin() {
            return Ok(origin);
        }
        let host = host.ok_or_else(|| AppError::bad_request("the request has no Host header"))?;
        if !self.config.serves_at(host) {
            return Err(AppError::new(
                Failure::WrongHost,
                format!(
                    "Host {host:?} is not an address this coordinator serves at ({}, or \
                     loopback); an operator serving under a name sets --public-url",
                    self.config.listen
                ),
            ));
        }
        Ok(("http", host))
    }

    /// A new single-use sign-in challenge for `(scheme, authority)`.
    pub async fn sign_in_challenge(
        &self,
        (scheme, authority): (&str, &str),
    ) -> Result<SignInChallenge, AppError> {
        let nonce: String = rand::rng()
            .sample_iter(&Alphanumeric)
            .take(24)
            .map(char::from)
            .collect();
        let issued = OffsetDateTime::now_utc();
        let ttl = time::Duration::try_from(self.config.sign_in.sign_in_ttl)
            .map_err(|e| AppError::internal(e.to_string()))?;
        self.db
            .add_nonce(
                &nonce,
                now() + self.config.sign_in.sign_in_ttl.as_secs_f64(),
            )
            .await
            .map_err(AppError::db)?;
        Ok(SignInChallenge {
            domain: authority.to_string(),
            uri: format!("{scheme}://{authority}"),
            nonce,
            issued_at: rfc3339(issued),
            expiration_time: rfc3339(issued + ttl),
            statement: STATEMENT.to_string(),
            chain_id: self.chain_id,
        })
    }

    /// Checks a signed challenge and opens a session: its view and token.
    pub async fn sign_in(
        &self,
        answer: &SignIn,
        authority: &str,
    ) -> Result<(SessionView, String), AppError> {
        let unauthorized = |m: String| AppError::new(Failure::NotSignedIn, m);
        let expected = Expected {
            domain: authority,
            chain_id: self.chain_id,
            now: OffsetDateTime::now_utc(),
            max_validity: time::Duration::try_from(self.config.sign_in.sign_in_ttl)
                .map_err(|e| AppError::internal(e.to_string()))?
                + time::Duration::minutes(1),
        };
        let verified = siwe::verify(answer, &expected).map_err(unauthorized)?;
        let t = now();
        if !self
            .db
            .take_nonce(&verified.nonce, t)
            .await
            .map_err(AppError::db)?
        {
            return Err(unauthorized(
                "the sign-in nonce is unknown, expired or already used; ask for a new one".into(),
            ));
        }
        let token: String = rand::rng()
            .sample_iter(&Alphanumeric)
            .take(43)
            .map(char::from)
            .collect();
        let expires_at = t + self.config.sign_in.session_ttl.as_secs_f64();
        self.db
            .add_session(&token_hash(&token), &verified.address, t, expires_at)
            .await
            .map_err(AppError::db)?;
        tracing::info!(account = %verified.address, "signed in");
        Ok((
            SessionView {
                address: verified.address,
                expires_at: expires_at as i64,
            },
            token,
        ))
    }

    /// The session a token opens, if it is live.
    pub async fn session(&self, token: &str) -> Result<Option<SessionView>, AppError> {
        Ok(self
            .db
            .session(&token_hash(token), now())
            .await
            .map_err(AppError::db)?
            .map(|(address, expires_at)| SessionView {
                address,
                expires_at: expires_at as i64,
            }))
    }

    /// Ends the session a token opens.
    pub async fn sign_out(&self, token: &str) -> Result<(), AppError> {
        self.db
            .end_session(&token_hash(token))
            .await
            .map_err(AppError::db)
    }
}
