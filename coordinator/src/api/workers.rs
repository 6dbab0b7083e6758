//! The worker WebSocket, update uploads, and the worker list.

use oblivion_protocol::LeaseId;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use oblivion_protocol::api::WorkerView;
use oblivion_protocol::wire::{
    CoordinatorMessage, DeviceInfo, PROTOCOL_VERSION, UpdateReceipt, WORKER_TOKEN_HEADER,
    WorkerMessage,
};
use tokio::sync::mpsc;

use super::client::Client;
use super::read_body_within;
use crate::error::{AppError, Failure};
use crate::service::{Coordinator, Viewer};

/// Largest control message from a worker, bytes.
const MAX_CONTROL_MESSAGE: usize = 64 * 1024;
/// Read and write buffer of a worker connection, bytes.
const CONNECTION_BUFFER: usize = 8 * 1024;
/// Largest benchmark score taken from a worker's hello (samples/s).
const MAX_BENCHMARK: f64 = 1e9;
/// Time a new connection has to say Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET /api/workers`.
pub async fn list(State(c): State<Arc<Coordinator>>) -> Json<Vec<WorkerView>> {
    Json(c.dispatch.workers())
}

/// `POST /api/leases/{id}/update`: gzip(safetensors) of the update.
pub async fn update(
    State(c): State<Arc<Coordinator>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<UpdateReceipt>, AppError> {
    let lease: LeaseId = id
        .parse()
        .map_err(|_| AppError::bad_request(format!("{id:?} is not a lease id")))?;
    let token = headers
        .get(WORKER_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            AppError::new(
                Failure::NotSignedIn,
                format!("missing {WORKER_TOKEN_HEADER} header"),
            )
        })?
        .to_string();
    // Only the lease's holder may send a body: checked before it takes the
    // lease's one upload slot and before a byte is read, so that nobody
    // else can hold the slot (lease ids are public).
    let held = c.rounds.update_context(&token, lease).await?;
    let _slot = c.rounds.upload_slot(lease)?;
    let bytes = match read_body_within(
        body,
        c.config.uploads.max_update_bytes,
        c.config.uploads.upload_deadline,
        "the update",
    )
    .await
    {
        Ok(bytes) => bytes,
        Err(e) if e.kind == Failure::TooSlow => {
            // The holder stalled its own shard: the lease ends, and the
            // stall is on its record.
            c.dispatch
                .fault_lease(lease, held.lease.worker, "the update upload was too slow")
                .await;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    Ok(Json(c.rounds.submit_update(held, bytes.to_vec()).await?))
}

/// `GET /api/workers/connect`: upgrades to the worker protocol (429 when
/// the address holds too many worker connections already). A worker that
/// connects signed in is paid to its account: the sign-in proved it.
pub async fn connect(
    State(c): State<Arc<Coordinator>>,
    Client(client): Client,
    headers: HeaderMap,
    viewer: Viewer,
    ws: WebSocketUpgrade,
) -> Result<Response, AppError> {
    // A page elsewhere must not open a worker in a visitor's name (with
    // their cookie) and have it quarantined; native workers send no Origin.
    super::auth::same_origin(&c, &headers)?;
    let permit = c.limits.worker_connections.acquire(client)?;
    Ok(ws
        .max_message_size(MAX_CONTROL_MESSAGE)
        // Control messages are small; the default 128 KiB buffers would
        // cost gigabytes across ten thousand connections.
        .read_buffer_size(CONNECTION_BUFFER)
        .write_buffer_size(CONNECTION_BUFFER)
        .on_upgrade(move |socket| async move {
            session(c, socket, viewer.0).await;
            drop(permit);
        }))
}

async fn send(socket: &mut WebSocket, msg: &CoordinatorMessage) -> bool {
    match serde_json::to_string(msg) {
        Ok(text) => socket.send(Message::Text(text.into())).await.is_ok(),
        Err(_) => false,
    }
}

async fn refuse(mut socket: WebSocket, message: String) {
    let _ = send(&mut socket, &CoordinatorMessage::Error { message }).await;
    let _ = socket.send(Message::Close(None)).await;
}

fn parse(msg: &Message) -> Option<Result<WorkerMessage, String>> {
    match msg {
        Message::Text(t) => Some(serde_json::from_str(t).map_err(|e| e.to_string())),
        Message::Binary(_) => Some(Err("binary frames are not part of the protocol".into())),
        _ => None,
    }
}

async fn session(c: Arc<Coordinator>, mut socket: WebSocket, account: Option<String>) {
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, socket.recv()).await {
        Ok(Some(Ok(msg))) => parse(&msg),
        _ => return,
    };
    let Some(Ok(WorkerMessage::Hello {
        protocol,
        name,
        client,
        device,
        benchmark,
        payout_address,
        max_leases,
        local_data,
    })) = hello
    else {
        return refuse(socket, "the first message must be a hello".into()).await;
    };
    if protocol != PROTOCOL_VERSION {
        return refuse(
            socket,
            format!(
                "protocol {protocol} is not supported; this coordinator speaks {PROTOCOL_VERSION}"
            ),
        )
        .await;
    }
    let mut view = WorkerView::connected(
        name.chars().take(64).collect(),
        client,
        // Self-described, so bounded: it is shown to every visitor.
        DeviceInfo {
            backend: device.backend.chars().take(16).collect(),
            name: device.name.chars().take(128).collect(),
            detail: device.detail.chars().take(512).collect(),
        },
        if benchmark.is_finite() {
            benchmark.clamp(0.0, MAX_BENCHMARK)
        } else {
            0.0
        },
    );
    if let Some(Err(e)) = local_data.as_ref().map(crate::federated::check_offer) {
        return refuse(socket, e).await;
    }
    view.local_data = local_data;
    // Paid only to an address the worker proved by signing in as it.
    let claimed = payout_address
        .as_deref()
        .map(|a| oblivion_protocol::auth::normalize_address(a).ok_or_else(|| a.to_string()));
    let payout_address = match (claimed, account) {
        (None, account) => account,
        (Some(Ok(claimed)), Some(account)) if claimed == account => Some(account),
        (Some(Ok(claimed)), _) => {
            return refuse(
                socket,
                format!(
                    "payout address {claimed} is not proven: connect signed in as that account \
                     (oblivion-worker --key, or sign in on the web app)"
                ),
            )
            .await;
        }
        (Some(Err(raw)), _) => {
            return refuse(socket, format!("payout address {raw:?} is not an address")).await;
        }
    };
    // What the worker asked for, at least one; the coordinator's cap applies too.
    let max_leases = max_leases.unwrap_or(u32::MAX).max(1);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (id, token) = match c
        .dispatch
        .connect_worker(view, payout_address, max_leases, tx)
        .await
    {
        Ok(v) => v,
        Err(e) => return refuse(socket, e.message).await,
    };
    let welcome = CoordinatorMessage::Welcome {
        worker_id: id,
        token,
        heartbeat_secs: c.config.leases.heartbeat.as_secs(),
        lease_cap: c.config.leases.lease_cap.min(max_leases),
    };
    if send(&mut socket, &welcome).await {
        c.dispatch.worker_ready().await;
        loop {
            tokio::select! {
                out = rx.recv() => match out {
                    Some(msg) => if !send(&mut socket, &msg).await { break },
                    None => break,
                },
                incoming = socket.recv() => {
                    let Some(Ok(msg)) = incoming else { break };
                    if matches!(msg, Message::Close(_)) {
                        break;
                    }
                    match parse(&msg) {
                        Some(Ok(WorkerMessage::Heartbeat { leases })) => c.dispatch.heartbeat(id, &leases),
                        Some(Ok(WorkerMessage::ReturnLease { lease_id, reason, decline_job })) => {
                            c.dispatch.return_lease(id, lease_id, &reason, decline_job).await
                        }
                        Some(Ok(WorkerMessage::Drain)) => c.dispatch.drain(id),
                        Some(Ok(WorkerMessage::Hello { .. })) => {
                            let _ = send(&mut socket, &CoordinatorMessage::Error {
                                message: "already introduced".into(),
                            }).await;
                        }
                        Some(Err(e)) => {
                            let _ = send(&mut socket, &CoordinatorMessage::Error {
                                message: format!("malformed message: {e}"),
                            }).await;
                        }
                        None => {}
                    }
                }
            }
        }
    }
    c.dispatch.disconnect_worker(id).await;
}
