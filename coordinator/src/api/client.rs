//! The client a request comes from, as per-address limits count it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use crate::error::AppError;
use crate::limits::client_key;
use crate::service::Coordinator;

/// The client's address: the connection's, or the one a trusted proxy
/// names; an IPv6 address as its /64 (see [`client_key`]).
#[derive(Clone, Copy, Debug)]
pub struct Client(pub IpAddr);

impl FromRequestParts<Arc<Coordinator>> for Client {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        c: &Arc<Coordinator>,
    ) -> Result<Client, AppError> {
        let ConnectInfo(peer) = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .copied()
            .ok_or_else(|| AppError::internal("the connection's address is unknown"))?;
        // Several headers are one list, in order.
        let forwarded: Vec<&str> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let forwarded = (!forwarded.is_empty()).then(|| forwarded.join(","));
        Ok(Client(client_key(
            peer.ip(),
            forwarded.as_deref(),
            &c.config.quotas.trusted_proxies,
        )))
    }
}
