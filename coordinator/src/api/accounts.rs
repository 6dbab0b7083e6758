//! Account profiles.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use oblivion_protocol::auth::normalize_address;
use oblivion_protocol::profile::AccountProfile;

use crate::error::AppError;
use crate::service::{Coordinator, ModelOrder, Viewer};

/// `GET /api/accounts/{address}`: the jobs it created and the models it
/// owns that the viewer may see, its standing as a contributor, and its
/// escrow transactions.
pub async fn profile(
    State(c): State<Arc<Coordinator>>,
    viewer: Viewer,
    Path(address): Path<String>,
) -> Result<Json<AccountProfile>, AppError> {
    let address = normalize_address(&address)
        .ok_or_else(|| AppError::bad_request(format!("{address:?} is not an account address")))?;
    let mine = |owner: &Option<String>| owner.as_deref() == Some(address.as_str());
    let jobs = c
        .jobs
        .jobs(&viewer)
        .await?
        .into_iter()
        .filter(|j| mine(&j.owner))
        .collect();
    let models = c
        .models
        .list(&viewer, None, ModelOrder::Newest)
        .await?
        .into_iter()
        .filter(|m| mine(&m.owner))
        .collect();
    Ok(Json(AccountProfile {
        standing: c.leaderboards.standing_of(&address).await?,
        history: c.payments.history(&address).await?,
        address,
        jobs,
        models,
    }))
}
