//! The model market in the app: a model's listing on its page (its owner
//! signs terms with the coordinator and lists them from the wallet; anyone
//! else buys at the listed price), and the Library page (models bought,
//! listings, proceeds to withdraw, shares of sales to claim). Every escrow
//! transaction goes through the wallet with the states of the payment flow
//! (`chain::TxStatus`), and each page follows the coordinator until it has
//! seen the transaction on chain.

use leptos::prelude::*;
use leptos::task::spawn_local;
use oblivion_chain::calls::{self, U256};
use oblivion_protocol::ModelId;
use oblivion_protocol::Visibility;
use oblivion_protocol::api::ModelView;
use oblivion_protocol::market::{
    ListingState, ListingView, MAX_CONTRIBUTORS_BPS, MarketAccount, ShareView,
};

use crate::account::{short, use_account};
use crate::api;
use crate::chain::{self, TxState, TxStatus, use_chain};

/// After a transaction, how often and how many times the page asks the
/// coordinator again until it has seen it on chain.
const FOLLOW_MS: i32 = 1_500;
const FOLLOW_TRIES: u32 = 60;

/// [`chain::follow`] at this page's pace.
async fn follow<F: std::future::Future<Output = bool>>(seen: impl Fn() -> F) -> bool {
    chain::follow(FOLLOW_MS, FOLLOW_TRIES, seen).await
}

/// A listing's state, in words.
fn state_words(state: ListingState) -> &'static str {
    match state {
        ListingState::Offered => "signed, waiting for your wallet's listing on chain",
        ListingState::Listed => "on sale",
        ListingState::Delisted => "taken off sale",
    }
}

/// The model's listing on its page: on sale (buy it, or see it is yours),
/// and for its owner the terms to sell it at. `reload` asks for the model
/// again (its listing, and whether the viewer may read it now).
#[component]
pub fn ListingCard(model: ModelView, reload: Callback<()>) -> impl IntoView {
    let account = use_account();
    let chain = use_chain();
    let tx = RwSignal::new(TxState::Idle);
    let error = RwSignal::new(None::<String>);
    let id = model.id;
    let listing = model.listing.clone();
    let owner = model.owner.clone();
    let is_owner = Memo::new(move |_| {
        account
            .address()
            .is_some_and(|a| owner.as_deref().is_some_and(|o| o.eq_ignore_ascii_case(&a)))
    });
    let readable = model.readable;
    let private = model.visibility == Visibility::Private;
    let on_sale = listing
        .as_ref()
        .filter(|l| l.state == ListingState::Listed)
        .cloned();

    let buy = {
        let listing = on_sale.clone();
        move |_| {
            let (Some(info), Some(l), Some(me)) = (
                chain.info.get_untracked(),
                listing.clone(),
                account.address_untracked(),
            ) else {
                return;
            };
            let price = l.listed_price.clone().unwrap_or(l.price.clone());
            let data = match calls::purchase(&l.key) {
                Ok(d) => d,
                Err(e) => return tx.set(TxState::Failed(format!("A malformed listing: {e}"))),
            };
            spawn_local(async move {
                // The purchase is the signed-in account's: it is the one
                // that may then read the model.
                if !chain::send(&info, Some(&me), &data, calls::u256(&price), tx).await {
                    return;
                }
                follow(|| async {
                    api::get::<ModelView>(&format!("/api/models/{id}"))
                        .await
                        .is_ok_and(|m| m.readable)
                })
                .await;
                reload.run(());
            });
        }
    };

    view! {
        {move || {
            let l = on_sale.clone()?;
            let price = chain::eth(l.listed_price.as_ref().unwrap_or(&l.price));
            let part = format!("{}%", f64::from(l.listed_bps.unwrap_or(l.contributors_bps)) / 100.0);
            let mine = is_owner.get();
            Some(view! {
                <section class="card listing" data-testid="listing" data-state=l.state.as_str()>
                    <h2>"For sale"</h2>
                    <dl class="stats">
                        <div><dt>"Price"</dt><dd data-testid="listing-price">{price.clone()}</dd></div>
                        <div><dt>"To its contributors"</dt><dd>{format!("{part} of each sale, by verified work ({} shares)", l.shares.len())}</dd></div>
                        <div><dt>"Sales"</dt><dd data-testid="listing-sales">{l.sales}</dd></div>
                    </dl>
                    <p class="muted small mono">{format!("sells the weights with keccak256 {}", l.model_hash)}</p>
                    {if mine {
                        view! { <p class="muted" data-testid="listing-yours">"Your listing: its proceeds are on the Library page."</p> }.into_any()
                    } else if readable {
                        view! { <p class="notice ok" data-testid="bought">"In your library: download it and run it below."</p> }.into_any()
                    } else if account.address().is_none() {
                        view! { <p class="muted" data-testid="buy-sign-in">"Sign in with your wallet to buy it."</p> }.into_any()
                    } else {
                        view! {
                            <button class="primary" data-testid="buy" disabled=move || tx.get().busy() on:click=buy.clone()>{format!("Buy for {price}")}</button>
                        }.into_any()
                    }}
                    <TxStatus state=tx/>
                </section>
            })
        }}
        {move || (is_owner.get() && private && chain.info.with(Option::is_some)).then(|| view! {
            <SellForm id=id listing=listing.clone() reload=reload/>
        })}
        {move || error.get().map(|e| view! { <div class="notice error">{e}</div> })}
    }
}

/// The owner's terms: a price and the contributors' part; the coordinator
/// signs them, the wallet lists them.
#[component]
fn SellForm(id: ModelId, listing: Option<ListingView>, reload: Callback<()>) -> impl IntoView {
    let chain = use_chain();
    let account = use_account();
    let tx = RwSignal::new(TxState::Idle);
    let error = RwSignal::new(None::<String>);
    let price = RwSignal::new(
        listing
            .as_ref()
            .map(|l| calls::format_ether(calls::u256(&l.price)))
            .unwrap_or_else(|| "0.1".into()),
    );
    let part = RwSignal::new(
        listing
            .as_ref()
            .map(|l| format!("{}", f64::from(l.contributors_bps) / 100.0))
            .unwrap_or_else(|| "20".into()),
    );
    let state = listing.as_ref().map(|l| l.state);
    let key = listing.as_ref().map(|l| l.key.clone());
    let list = move |_| {
        let (Some(info), Some(me)) = (chain.info.get_untracked(), account.address_untracked())
        else {
            return;
        };
        let wei = match calls::parse_ether(&price.get_untracked()) {
            Ok(w) if !w.is_zero() => w,
            _ => {
                return error.set(Some(
                    "Price: an amount of ETH above zero, such as 0.25.".into(),
                ));
            }
        };
        let bps = match part.get_untracked().trim().parse::<f64>() {
            Ok(p) if (0.0..=f64::from(MAX_CONTRIBUTORS_BPS) / 100.0).contains(&p) => {
                (p * 100.0).round() as u16
            }
            _ => {
                return error.set(Some(format!(
                    "Contributors' part: a percentage from 0 to {}.",
                    MAX_CONTRIBUTORS_BPS / 100
                )));
            }
        };
        error.set(None);
        let body =
            serde_json::json!({"price": wei.to_string(), "contributors_bps": bps}).to_string();
        spawn_local(async move {
            let signed =
                match api::post_json::<ListingView>(&format!("/api/models/{id}/listing"), &body)
                    .await
                {
                    Ok(l) => l,
                    Err(e) => return error.set(Some(e.error)),
                };
            let data = match calls::list(&signed) {
                Ok(d) => d,
                Err(e) => {
                    return error.set(Some(format!("The coordinator's listing is malformed: {e}")));
                }
            };
            if !chain::send(&info, Some(&me), &data, U256::ZERO, tx).await {
                return;
            }
            let want = signed.nonce;
            follow(|| async {
                api::get::<ModelView>(&format!("/api/models/{id}"))
                    .await
                    .ok()
                    .and_then(|m| m.listing)
                    .is_some_and(|l| l.state == ListingState::Listed && l.nonce >= want)
            })
            .await;
            reload.run(());
        });
    };
    let delist = move |_| {
        let (Some(info), Some(me), Some(key)) = (
            chain.info.get_untracked(),
            account.address_untracked(),
            key.clone(),
        ) else {
            return;
        };
        let Ok(data) = calls::delist(&key) else {
            return;
        };
        spawn_local(async move {
            if !chain::send(&info, Some(&me), &data, U256::ZERO, tx).await {
                return;
            }
            follow(|| async {
                api::get::<ModelView>(&format!("/api/models/{id}"))
                    .await
                    .ok()
                    .and_then(|m| m.listing)
                    .is_some_and(|l| l.state == ListingState::Delisted)
            })
            .await;
            reload.run(());
        });
    };
    view! {
        <section class="card" data-testid="sell">
            <h2>{if state == Some(ListingState::Listed) { "Change the terms" } else { "Sell this model" }}</h2>
            <p class="muted small">{format!(
                "Buyers pay the price to the escrow and may then download and run the model. A part of each sale, at most {}%, goes to the contributors who trained it, in proportion to their verified work; they claim it whenever they like. The rest is yours to withdraw.",
                MAX_CONTRIBUTORS_BPS / 100
            )}</p>
            {state.map(|s| view! { <p class="muted" data-testid="listing-state" data-state=s.as_str()>{format!("Listing: {}", state_words(s))}</p> })}
            <div class="toolbar">
                <label>"Price (ETH) " <input data-testid="sell-price" prop:value=move || price.get() on:input=move |ev| price.set(event_target_value(&ev))/></label>
                <label>"Contributors' part (%) " <input data-testid="sell-part" type="number" min="0" max=MAX_CONTRIBUTORS_BPS / 100 prop:value=move || part.get() on:input=move |ev| part.set(event_target_value(&ev))/></label>
                <button class="primary" data-testid="list-model" disabled=move || tx.get().busy() on:click=list>
                    {if state == Some(ListingState::Listed) { "Update the listing" } else { "List for sale" }}
                </button>
                {(state == Some(ListingState::Listed)).then(|| view! {
                    <button data-testid="delist" disabled=move || tx.get().busy() on:click=delist.clone()>"Take off sale"</button>
                })}
            </div>
            <TxStatus state=tx/>
            {move || error.get().map(|e| view! { <p class="error" data-testid="sell-error">{e}</p> })}
        </section>
    }
}

async fn load(account: RwSignal<Option<MarketAccount>>, error: RwSignal<Option<String>>) {
    match api::get::<MarketAccount>("/api/market/account").await {
        Ok(a) => {
            account.set(Some(a));
            error.set(None);
        }
        Err(e) => error.set(Some(e.error)),
    }
}

/// The Library page: the signed-in account's side of the market.
#[component]
pub fn LibraryPage() -> impl IntoView {
    let account = use_account();
    let chain = use_chain();
    let market = RwSignal::new(None::<MarketAccount>);
    let error = RwSignal::new(None::<String>);
    let tx = RwSignal::new(TxState::Idle);
    Effect::new(move |_| {
        if account.address().is_some() {
            spawn_local(load(market, error));
        } else {
            market.set(None);
        }
    });
    let withdraw = move |_| {
        let (Some(info), Some(me)) = (chain.info.get_untracked(), account.address_untracked())
        else {
            return;
        };
        spawn_local(async move {
            if !chain::send(&info, Some(&me), &calls::withdraw(), U256::ZERO, tx).await {
                return;
            }
            follow(|| async {
                load(market, error).await;
                market.with_untracked(|m| m.as_ref().is_none_or(|m| m.proceeds.is_zero()))
            })
            .await;
        });
    };
    let claim = move |share: ShareView| {
        let Some(info) = chain.info.get_untracked() else {
            return;
        };
        let Ok(data) = calls::claim_share(&share) else {
            return tx.set(TxState::Failed(
                "The coordinator's proof is malformed.".into(),
            ));
        };
        spawn_local(async move {
            // Anyone may send it; the escrow pays the share's account.
            if !chain::send(&info, None, &data, U256::ZERO, tx).await {
                return;
            }
            follow(|| async {
                load(market, error).await;
                market.with_untracked(|m| {
                    m.as_ref().is_none_or(|m| {
                        m.shares
                            .iter()
                            .any(|s| s.listing == share.listing && s.claimable.is_zero())
                    })
                })
            })
            .await;
        });
    };
    view! {
        <section class="card hero">
            <div>
                <h1>"Library"</h1>
                <p class="muted">"The models you bought, the models you sell, and your shares of the sales of models you helped train. Purchases, withdrawals and claims go through your wallet to the escrow."</p>
            </div>
        </section>
        {move || error.get().map(|e| view! { <div class="notice error">{e}</div> })}
        <TxStatus state=tx/>
        {move || {
            if account.address().is_none() {
                return view! { <section class="card"><p class="muted" data-testid="library-sign-in">"Sign in with your wallet to see your library."</p></section> }.into_any();
            }
            let Some(m) = market.get() else {
                return view! { <section class="card"><p class="muted">"Loading…"</p></section> }.into_any();
            };
            let busy = move || tx.get().busy();
            let proceeds = calls::u256(&m.proceeds);
            view! {
                <section class="card">
                    <h2>"Bought"</h2>
                    {m.purchases.is_empty().then(|| view! { <p class="muted" data-testid="library-empty">"Nothing yet: models on sale show a Buy button on their page."</p> })}
                    {(!m.purchases.is_empty()).then(|| view! {
                    <div class="table-wrap"><table class="table" data-testid="library">
                        <thead><tr><th>"Model"</th><th>"Paid"</th><th>"Transaction"</th></tr></thead>
                        <tbody>{m.purchases.iter().map(|p| view! {
                            <tr data-testid=format!("library-model-{}", p.model_id)>
                                <td><a href=format!("/models/{}", p.model_id)>{format!("#{} {}", p.model_id, p.model_name)}</a></td>
                                <td>{chain::eth(&p.price)}</td>
                                <td class="mono" title=p.tx.clone()>{short(&p.tx)}</td>
                            </tr>
                        }).collect::<Vec<_>>()}</tbody>
                    </table></div>
                    })}
                </section>
                <section class="card">
                    <h2>"Selling"</h2>
                    <p>"Proceeds to withdraw: " <strong data-testid="proceeds">{format!("{} ETH", calls::format_ether(proceeds))}</strong>
                        {(!proceeds.is_zero()).then(|| view! { " " <button class="primary small" data-testid="withdraw" disabled=busy on:click=withdraw>"Withdraw"</button> })}
                    </p>
                    {m.listings.is_empty().then(|| view! { <p class="muted">"None: a private model you own can be listed from its page."</p> })}
                    {(!m.listings.is_empty()).then(|| view! {
                    <div class="table-wrap"><table class="table" data-testid="listings">
                        <thead><tr><th>"Model"</th><th>"Listing"</th><th>"Price"</th><th>"Sales"</th><th>"To contributors"</th></tr></thead>
                        <tbody>{m.listings.iter().map(|l| view! {
                            <tr>
                                <td><a href=format!("/models/{}", l.model_id)>{format!("#{} {}", l.model_id, l.model_name)}</a></td>
                                <td>{state_words(l.state)}</td>
                                <td>{chain::eth(l.listed_price.as_ref().unwrap_or(&l.price))}</td>
                                <td>{l.sales}</td>
                                <td>{chain::eth(&l.pool)}</td>
                            </tr>
                        }).collect::<Vec<_>>()}</tbody>
                    </table></div>
                    })}
                </section>
                <section class="card">
                    <h2>"Your shares of sales"</h2>
                    <p class="muted small">"Each sale of a model you helped train pays its contributors a part, by verified work. A claim pays what the sales so far owe you; later sales add to it."</p>
                    {m.shares.is_empty().then(|| view! { <p class="muted">"None yet."</p> })}
                    {(!m.shares.is_empty()).then(|| view! {
                    <div class="table-wrap"><table class="table" data-testid="shares">
                        <thead><tr><th>"Model"</th><th>"Share"</th><th>"Paid"</th><th>"Claimable"</th><th></th></tr></thead>
                        <tbody>{m.shares.iter().map(|s| {
                            let share = s.clone();
                            let claimable = !s.claimable.is_zero();
                            view! {
                                <tr data-testid=format!("share-{}", s.model_id)>
                                    <td><a href=format!("/models/{}", s.model_id)>{format!("#{} {}", s.model_id, s.model_name)}</a></td>
                                    <td>{format!("{:.2}%", s.leaf.weight as f64 / 10_000.0)}</td>
                                    <td>{chain::eth(&s.paid)}</td>
                                    <td data-testid=format!("share-claimable-{}", s.model_id)>{chain::eth(&s.claimable)}</td>
                                    <td>{claimable.then(|| view! { <button class="primary small" data-testid=format!("claim-share-{}", s.model_id) disabled=busy on:click=move |_| claim(share.clone())>"Claim"</button> })}</td>
                                </tr>
                            }
                        }).collect::<Vec<_>>()}</tbody>
                    </table></div>
                    })}
                </section>
            }.into_any()
        }}
    }
}
