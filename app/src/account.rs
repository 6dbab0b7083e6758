//! The signed-in account: a wallet signs a Sign-In with Ethereum message,
//! the coordinator answers with a session (an HTTP-only cookie this page
//! never reads), and every page sees who is signed in.

use leptos::prelude::*;
use leptos::task::spawn_local;
use oblivion_protocol::auth::{SessionView, SignIn, SignInChallenge};

use crate::api;
use crate::wallet;

/// The account state shared by every page.
#[derive(Clone, Copy)]
pub struct Account {
    /// Who is signed in, once known.
    pub session: RwSignal<Option<SessionView>>,
    /// A sign-in in progress.
    pub busy: RwSignal<bool>,
    /// Why the last sign-in failed.
    pub error: RwSignal<Option<String>>,
}

impl Account {
    /// The signed-in address (lower-case hex), tracked.
    pub fn address(&self) -> Option<String> {
        self.session.with(|s| s.as_ref().map(|s| s.address.clone()))
    }

    /// The signed-in address, untracked (for event handlers and tasks).
    pub fn address_untracked(&self) -> Option<String> {
        self.session
            .try_with_untracked(|s| s.as_ref().map(|s| s.address.clone()))
            .flatten()
    }
}

/// Makes the account state available, and asks who is signed in.
pub fn provide_account() {
    wallet::discover();
    let account = Account {
        session: RwSignal::new(None),
        busy: RwSignal::new(false),
        error: RwSignal::new(None),
    };
    provide_context(account);
    spawn_local(async move {
        if let Ok(s) = api::get::<SessionView>("/api/auth/session").await {
            account.session.set(Some(s));
        }
    });
}

/// The account state.
pub fn use_account() -> Account {
    expect_context::<Account>()
}

/// Signs in with the browser's wallet.
pub async fn sign_in(account: Account) {
    account.busy.set(true);
    account.error.set(None);
    match try_sign_in().await {
        Ok(s) => account.session.set(Some(s)),
        Err(e) => account.error.set(Some(e)),
    }
    account.busy.set(false);
}

async fn try_sign_in() -> Result<SessionView, String> {
    let wallet = wallet::first().map_err(|e| e.message)?;
    let explain = |e: wallet::WalletError| format!("{}: {}", wallet.name, e.explain());
    let address = wallet.account().await.map_err(explain)?;
    let chain_id = wallet.chain_id().await.map_err(explain)?;
    let challenge: SignInChallenge = api::post_json("/api/auth/nonce", "")
        .await
        .map_err(|e| e.error)?;
    // EIP-4361 messages carry the checksummed form.
    let address = oblivion_chain::checksummed(&address)
        .ok_or_else(|| format!("{}: the wallet shared a malformed account", wallet.name))?;
    let message = challenge.message(&address, chain_id);
    let signature = wallet
        .personal_sign(&message, &address)
        .await
        .map_err(explain)?;
    let body = serde_json::to_string(&SignIn { message, signature }).map_err(|e| e.to_string())?;
    api::post_json("/api/auth/login", &body)
        .await
        .map_err(|e| e.error)
}

/// Signs out.
pub async fn sign_out(account: Account) {
    let _ = api::post_empty("/api/auth/logout").await;
    account.session.set(None);
}

/// A short form of an address: `0x1234…abcd`.
pub fn short(address: &str) -> String {
    if address.len() > 12 {
        format!("{}…{}", &address[..6], &address[address.len() - 4..])
    } else {
        address.to_string()
    }
}

/// The top bar's sign-in button, or the signed-in account.
#[component]
pub fn AccountButton() -> impl IntoView {
    let account = use_account();
    view! {
        {move || match account.address() {
            Some(address) => view! {
                <span class="account" data-testid="account" title=address.clone()>{short(&address)}</span>
                <button class="ghost small" data-testid="sign-out" on:click=move |_| spawn_local(sign_out(account))>"Sign out"</button>
            }.into_any(),
            None => view! {
                <button class="primary small" data-testid="sign-in" disabled=move || account.busy.get()
                    on:click=move |_| spawn_local(sign_in(account))>
                    {move || if account.busy.get() { "Check your wallet…" } else { "Sign in" }}
                </button>
            }.into_any(),
        }}
        {move || account.error.get().map(|e| view! { <span class="notice error small" role="alert" data-testid="sign-in-error">{e}</span> })}
    }
}
