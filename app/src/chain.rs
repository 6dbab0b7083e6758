//! The chain this coordinator's paid jobs settle on (`GET /api/chain`,
//! asked once; absent when its jobs run unpaid), and the escrow
//! transactions the browser wallet sends: the wallet readied (its account,
//! its network), the balance checked, the transaction sent and followed
//! until mined, each step shown to the person.

use leptos::prelude::*;
use leptos::task::spawn_local;
use oblivion_chain::calls::{self, U256};
use oblivion_protocol::api::ChainInfo;
use oblivion_protocol::{JobId, Wei};

use crate::account::short;
use crate::api;
use crate::wallet::{self, Wallet, WalletError};

/// The chain, shared by every page.
#[derive(Clone, Copy)]
pub struct Chain {
    /// Where paid jobs settle; `None` while unknown and when the
    /// coordinator has no chain (then nothing is paid and the app shows no
    /// payment at all).
    pub info: RwSignal<Option<ChainInfo>>,
}

/// Asks the coordinator for its chain and shares the answer.
pub fn provide_chain() {
    let chain = Chain {
        info: RwSignal::new(None),
    };
    provide_context(chain);
    spawn_local(async move {
        // 404: no chain. Any other failure also leaves payments off.
        if let Ok(info) = api::get::<ChainInfo>("/api/chain").await {
            chain.info.set(Some(info));
        }
    });
}

/// The shared chain state.
pub fn use_chain() -> Chain {
    expect_context::<Chain>()
}

/// A chain's name, for messages.
pub fn chain_name(id: u64) -> String {
    let name = match id {
        1 => "Ethereum",
        10 => "OP Mainnet",
        8453 => "Base",
        42161 => "Arbitrum One",
        11155111 => "Sepolia",
        17000 => "Holesky",
        84532 => "Base Sepolia",
        31337 => "the local development chain",
        _ => return format!("chain {id}"),
    };
    format!("{name} ({id})")
}

/// Where an escrow transaction stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TxState {
    /// Nothing sent.
    #[default]
    Idle,
    /// Waiting for the wallet: its account, a network switch, or the
    /// person's confirmation.
    Wallet,
    /// The account holds less than the transaction sends.
    TooLittle {
        /// What it holds, wei.
        balance: U256,
        /// What is needed, wei.
        need: U256,
    },
    /// Sent, not yet mined.
    Pending(String),
    /// Mined and successful.
    Confirmed(String),
    /// Mined, but reverted.
    Reverted {
        /// The transaction.
        hash: String,
        /// Why, when the node says.
        reason: Option<String>,
    },
    /// The person declined in the wallet.
    Rejected,
    /// Anything else that stopped it, in words.
    Failed(String),
}

impl TxState {
    /// A stable name for the page (`data-state`).
    pub fn key(&self) -> &'static str {
        match self {
            TxState::Idle => "idle",
            TxState::Wallet => "wallet",
            TxState::TooLittle { .. } => "balance",
            TxState::Pending(_) => "pending",
            TxState::Confirmed(_) => "confirmed",
            TxState::Reverted { .. } => "reverted",
            TxState::Rejected => "rejected",
            TxState::Failed(_) => "failed",
        }
    }

    /// Whether a transaction is under way (buttons wait).
    pub fn busy(&self) -> bool {
        matches!(self, TxState::Wallet | TxState::Pending(_))
    }
}

/// What stopped a wallet request, as a state.
fn failed(wallet: &Wallet, e: &WalletError) -> TxState {
    if e.rejected() {
        return TxState::Rejected;
    }
    let reason = e
        .data
        .as_deref()
        .and_then(calls::explain_revert)
        .or_else(|| calls::explain_revert_in(&e.message));
    match reason {
        Some(reason) => TxState::Failed(format!("The escrow would refuse it: {reason}.")),
        None => {
            // Some nodes put raw revert bytes in the message.
            let message: String = e.message.chars().filter(|c| !c.is_control()).collect();
            TxState::Failed(format!("{}: {message}", wallet.name))
        }
    }
}

/// The wallet, on the chain `chain` and (when `expect` is given) on that
/// account, switching networks if need be (the wallet asks the person);
/// the wallet and its account.
pub async fn ensure_ready(
    chain: &ChainInfo,
    expect: Option<&str>,
) -> Result<(Wallet, String), TxState> {
    let wallet = wallet::first().map_err(|e| TxState::Failed(e.message))?;
    let account = wallet.account().await.map_err(|e| failed(&wallet, &e))?;
    if let Some(expected) = expect
        && !account.eq_ignore_ascii_case(expected)
    {
        return Err(TxState::Failed(format!(
            "{} is on account {}, but you are signed in as {}: switch accounts in the wallet, then try again.",
            wallet.name,
            short(&account),
            short(expected)
        )));
    }
    let on = wallet.chain_id().await.map_err(|e| failed(&wallet, &e))?;
    if on != chain.chain_id {
        let want = chain_name(chain.chain_id);
        wallet
            .switch_chain(chain.chain_id)
            .await
            .map_err(|e| match e.rejected() {
                true => TxState::Failed(format!(
                    "Payments here are on {want}, and {} is on {}: switch networks to go on.",
                    wallet.name,
                    chain_name(on)
                )),
                false => {
                    TxState::Failed(format!("Switch {} to {want}: {}", wallet.name, e.message))
                }
            })?;
        let now = wallet.chain_id().await.map_err(|e| failed(&wallet, &e))?;
        if now != chain.chain_id {
            return Err(TxState::Failed(format!(
                "{} is still on {}, not {want}.",
                wallet.name,
                chain_name(now)
            )));
        }
    }
    Ok((wallet, account))
}

/// [`ensure_ready`], then checks the account holds at least `value` wei.
pub async fn prepare(
    chain: &ChainInfo,
    expect: Option<&str>,
    value: U256,
) -> Result<(Wallet, String), TxState> {
    let (wallet, account) = ensure_ready(chain, expect).await?;
    if !value.is_zero() {
        let balance = wallet
            .balance(&account)
            .await
            .map_err(|e| failed(&wallet, &e))?;
        if balance < value {
            return Err(TxState::TooLittle {
                balance,
                need: value,
            });
        }
    }
    Ok((wallet, account))
}

/// Sends `data` with `value` wei to the escrow from `from` and follows it
/// in `state` until mined; whether it succeeded.
pub async fn submit(
    chain: &ChainInfo,
    wallet: &Wallet,
    from: &str,
    data: &calls::Bytes,
    value: U256,
    state: RwSignal<TxState>,
) -> bool {
    state.set(TxState::Wallet);
    let data = data.to_string();
    let value = format!("{value:#x}");
    let hash = match wallet
        .send_transaction(from, &chain.escrow, &data, &value)
        .await
    {
        Ok(hash) => hash,
        Err(e) => {
            state.set(failed(wallet, &e));
            return false;
        }
    };
    state.set(TxState::Pending(hash.clone()));
    match wallet.receipt(&hash).await {
        Ok(r) if r.ok => {
            state.set(TxState::Confirmed(hash));
            true
        }
        Ok(r) => {
            // Replaying it where it was mined gives the revert reason.
            let block = r.block.map_or("latest".into(), |b| format!("{b:#x}"));
            let reason = match wallet
                .call(from, &chain.escrow, &data, &value, &block)
                .await
            {
                Err(e) => e
                    .data
                    .as_deref()
                    .and_then(calls::explain_revert)
                    .or_else(|| calls::explain_revert_in(&e.message)),
                Ok(_) => None,
            };
            state.set(TxState::Reverted { hash, reason });
            false
        }
        Err(e) => {
            state.set(failed(wallet, &e));
            false
        }
    }
}

/// [`prepare`] and [`submit`] in one, each step shown in `state`.
pub async fn send(
    chain: &ChainInfo,
    expect: Option<&str>,
    data: &calls::Bytes,
    value: U256,
    state: RwSignal<TxState>,
) -> bool {
    state.set(TxState::Wallet);
    match prepare(chain, expect, value).await {
        Ok((wallet, from)) => submit(chain, &wallet, &from, data, value, state).await,
        Err(s) => {
            state.set(s);
            false
        }
    }
}

/// After a transaction, asks again for what `seen` waits for (the
/// coordinator has read the transaction on chain) every `every_ms`, at most
/// `tries` times; whether it came.
pub async fn follow<F: std::future::Future<Output = bool>>(
    every_ms: i32,
    tries: u32,
    seen: impl Fn() -> F,
) -> bool {
    for _ in 0..tries {
        if seen().await {
            return true;
        }
        crate::wallet::sleep(every_ms).await;
    }
    false
}

/// Seconds since the Unix epoch, by this computer's clock.
pub fn now_secs() -> u64 {
    (js_sys::Date::now() / 1000.0) as u64
}

/// Calldata of `fund` for job `job_id` whose spec hashes to `spec_hash`,
/// settled within `deadline_hours` from now.
pub fn fund_call(
    chain: &ChainInfo,
    job_id: JobId,
    spec_hash: &str,
    deadline_hours: u32,
) -> Result<calls::Bytes, String> {
    let deadline = now_secs() + u64::from(deadline_hours) * 3600;
    calls::fund(job_id, &chain.signer, spec_hash, deadline)
        .map_err(|e| format!("Cannot fund this job: {e}"))
}

/// An amount as ETH, for the page: `1.5 ETH`.
pub fn eth(wei: &Wei) -> String {
    format!("{} ETH", calls::format_ether(calls::u256(wei)))
}

/// A Unix time as `2025-01-31 14:05 UTC`.
pub fn utc(secs: i64) -> String {
    let iso: String = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(secs as f64 * 1000.0))
        .to_iso_string()
        .into();
    match iso.get(..16) {
        Some(minutes) => format!("{} UTC", minutes.replace('T', " ")),
        None => iso,
    }
}

/// Where a transaction stands, in words (`data-testid="tx-status"`, its
/// state in `data-state`); nothing while idle.
#[component]
pub fn TxStatus(state: RwSignal<TxState>) -> impl IntoView {
    move || {
        let s = state.get();
        let key = s.key();
        let (class, body) = match s {
            TxState::Idle => return None,
            TxState::Wallet => (
                "notice",
                view! { "Waiting for your wallet: check it, and confirm there." }.into_any(),
            ),
            TxState::TooLittle { balance, need } => (
                "notice error",
                format!(
                    "Too little balance: this needs {} ETH (plus gas) and the account holds {} ETH.",
                    calls::format_ether(need),
                    calls::format_ether(balance)
                )
                .into_any(),
            ),
            TxState::Pending(hash) => (
                "notice",
                view! { "Transaction pending: " <code class="mono" data-testid="tx-hash">{hash}</code> }
                    .into_any(),
            ),
            TxState::Confirmed(hash) => (
                "notice ok",
                view! { "Transaction confirmed: " <code class="mono" data-testid="tx-hash">{hash}</code> }
                    .into_any(),
            ),
            TxState::Reverted { hash, reason } => (
                "notice error",
                view! {
                    "The transaction failed on chain"
                    {reason.map(|r| format!(": {r}"))}
                    ". " <code class="mono" data-testid="tx-hash">{hash}</code>
                }
                .into_any(),
            ),
            TxState::Rejected => (
                "notice error",
                "You rejected the request in your wallet: nothing was sent.".into_any(),
            ),
            TxState::Failed(message) => ("notice error", message.into_any()),
        };
        let role = if class.contains("error") {
            "alert"
        } else {
            "status"
        };
        Some(view! {
            <div class=format!("tx {class}") role=role data-testid="tx-status" data-state=key>{body}</div>
        })
    }
}
