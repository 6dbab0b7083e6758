//! Paid jobs: where they settle, and what an account may claim.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use oblivion_protocol::api::{ChainInfo, RewardView};

use crate::error::AppError;
use crate::service::{Coordinator, Viewer};

/// `GET /api/chain`: the chain, escrow and signer paid jobs use (404 when
/// this coordinator's jobs run unpaid).
pub async fn chain(State(c): State<Arc<Coordinator>>) -> Result<Json<ChainInfo>, AppError> {
    Ok(Json(c.payments.chain_info()?))
}

/// `GET /api/rewards`: the signed-in account's payouts, with their proofs.
pub async fn rewards(
    State(c): State<Arc<Coordinator>>,
    viewer: Viewer,
) -> Result<Json<Vec<RewardView>>, AppError> {
    let account = viewer.account()?;
    Ok(Json(c.payments.rewards(account).await?))
}
