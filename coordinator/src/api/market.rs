//! The model market: an owner's signed listing, the models on sale, and an
//! account's purchases, sales and shares.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use oblivion_protocol::market::{ListingRequest, ListingView, MarketAccount};

use super::read_body;
use crate::error::AppError;
use crate::service::{Coordinator, Viewer};

/// Most bytes of a listing request.
const MAX_LISTING_BYTES: usize = 4 * 1024;

/// `POST /api/models/{id}/listing` `{"price": "<wei>", "contributors_bps":
/// N}`: the coordinator's signature of the owner's terms, for the owner's
/// wallet to send to the escrow's `list`.
pub async fn offer(
    State(c): State<Arc<Coordinator>>,
    viewer: Viewer,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<ListingView>, AppError> {
    let owner = viewer.account()?;
    let id = super::models::parse_id(&id)?;
    let bytes = read_body(body, MAX_LISTING_BYTES, "the listing").await?;
    let terms: ListingRequest = serde_json::from_slice(&bytes)
        .map_err(|e| AppError::unprocessable(format!("the listing: {e}")))?;
    let model = c.models.owned(owner, id).await?;
    Ok(Json(c.market.offer(owner, &model, &terms).await?))
}

/// `GET /api/market`: every model on sale.
pub async fn listed(State(c): State<Arc<Coordinator>>) -> Result<Json<Vec<ListingView>>, AppError> {
    Ok(Json(c.market.listed().await?))
}

/// `GET /api/market/account`: the signed-in account's purchases, listings,
/// proceeds and shares of sales, with their proofs.
pub async fn account(
    State(c): State<Arc<Coordinator>>,
    viewer: Viewer,
) -> Result<Json<MarketAccount>, AppError> {
    let account = viewer.account()?;
    Ok(Json(c.market.account(account).await?))
}
