//! Signing in to a coordinator over HTTP with a [`Key`], for native clients
//! (the CLI, the native worker, tests). The session comes back as an
//! HTTP-only cookie, kept by the caller's client: build it with a cookie
//! store (`reqwest::Client::builder().cookie_provider(jar)`).

use oblivion_protocol::api::ApiError;
use oblivion_protocol::auth::{SessionView, SignInChallenge};

use crate::key::{Key, sign_in};

/// Chain named in the message when the coordinator names none (it then
/// settles nowhere, and the field is informative only).
const DEFAULT_CHAIN_ID: u64 = 1;

/// Signs in to the coordinator at `base` as `key`; the session cookie lands
/// in `http`'s cookie store. The error is one readable line.
pub async fn sign_in_over_http(
    http: &reqwest::Client,
    base: &str,
    key: &Key,
) -> Result<SessionView, String> {
    let base = base.trim_end_matches('/');
    let unreachable = |e: reqwest::Error| format!("cannot reach the coordinator at {base}: {e}");
    let challenge: SignInChallenge = decode(
        http.post(format!("{base}/api/auth/nonce"))
            .send()
            .await
            .map_err(unreachable)?,
    )
    .await?;
    let answer = sign_in(&challenge, key, DEFAULT_CHAIN_ID).map_err(|e| e.to_string())?;
    decode(
        http.post(format!("{base}/api/auth/login"))
            .json(&answer)
            .send()
            .await
            .map_err(unreachable)?,
    )
    .await
    .map_err(|e| format!("sign-in as {} refused: {e}", key.address()))
}

/// One line for a coordinator's error answer: its status and message.
pub async fn error_line(r: reqwest::Response) -> String {
    let status = r.status();
    match r.json::<ApiError>().await {
        Ok(e) => format!("{status}: {}", e.error),
        Err(_) => format!("the coordinator answered {status}"),
    }
}

async fn decode<T: serde::de::DeserializeOwned>(r: reqwest::Response) -> Result<T, String> {
    if !r.status().is_success() {
        return Err(error_line(r).await);
    }
    r.json()
        .await
        .map_err(|e| format!("unexpected answer: {e}"))
}
