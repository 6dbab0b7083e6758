//! "Verify" on a model's page: the tab fetches the model's weights as the
//! network stores them, checks they are the bytes their sha256 names,
//! recomputes their keccak256, and compares it with the model hash the
//! escrow recorded when the model's job was settled, read from the chain
//! through the visitor's own wallet (or, without one, as the coordinator
//! reports it), and with the hash its listing sells.

use leptos::prelude::*;
use leptos::task::spawn_local;
use oblivion_chain::verify;
use oblivion_protocol::BlobId;
use oblivion_protocol::api::ModelView;

use crate::api;
use crate::chain::use_chain;
use crate::wallet;

/// What one check found.
#[derive(Clone, PartialEq)]
struct Finding {
    /// `match`, `mismatch` or `none`.
    state: &'static str,
    /// In words.
    text: String,
}

fn compare(what: &str, recomputed: &str, recorded: &str) -> Finding {
    if recomputed.eq_ignore_ascii_case(recorded) {
        Finding {
            state: "match",
            text: format!("{what}: {recorded} — the same."),
        }
    } else {
        Finding {
            state: "mismatch",
            text: format!("{what}: {recorded} — NOT the hash of these weights."),
        }
    }
}

/// The model hash the escrow recorded for the job with key `key`, read
/// through the browser's wallet; `None` without a wallet, an answer, or a
/// settlement.
async fn settled_on_chain(escrow: &str, key: &str) -> Option<String> {
    let wallet = wallet::first().ok()?;
    let data = verify::settled_query(key).ok()?.to_string();
    let zero = "0x0000000000000000000000000000000000000000";
    let answer = wallet
        .call(zero, escrow, &data, "0x0", "latest")
        .await
        .ok()?;
    verify::settled_model_hash(&answer.as_string()?)
}

/// All the checks, each a finding.
async fn run(model: ModelView, escrow: Option<String>) -> Vec<Finding> {
    let mut out = Vec::new();
    let bytes = match api::get_bytes(&format!("/api/artifacts/{}", model.weights_sha256)).await {
        Ok(b) => b,
        Err(e) => {
            out.push(Finding {
                state: "mismatch",
                text: format!("The weights could not be fetched: {}", e.error),
            });
            return out;
        }
    };
    if BlobId::of(&bytes) != model.weights_sha256 {
        out.push(Finding {
            state: "mismatch",
            text: "The weights fetched are not the bytes their sha256 names.".into(),
        });
        return out;
    }
    let hash = verify::weights_hash(&bytes);
    out.push(Finding {
        state: "match",
        text: format!(
            "{} bytes of weights, sha256 {} as named; their keccak256 is {hash}.",
            bytes.len(),
            model.weights_sha256
        ),
    });
    match model.settlement.clone() {
        Some(p) => {
            let on_chain = match &escrow {
                Some(escrow) => settled_on_chain(escrow, &p.job_key).await,
                None => None,
            };
            match (on_chain, p.model_hash) {
                (Some(recorded), _) => out.push(compare(
                    "Settled on chain (read through your wallet)",
                    &hash,
                    &recorded,
                )),
                (None, Some(signed)) => out.push(compare(
                    "Settled, as the coordinator reports it (connect a wallet to read the chain yourself)",
                    &hash,
                    &signed,
                )),
                (None, None) => out.push(Finding {
                    state: "none",
                    text: "Its job is not settled yet: no hash on chain to compare.".into(),
                }),
            }
        }
        None => out.push(Finding {
            state: "none",
            text: "Not a paid job's model: no settlement records its hash on chain.".into(),
        }),
    }
    if let Some(l) = &model.listing {
        out.push(compare("Sold by its listing", &hash, &l.model_hash));
    }
    out
}

/// The Verify card.
#[component]
pub fn VerifyCard(model: ModelView) -> impl IntoView {
    let chain = use_chain();
    let findings = RwSignal::new(None::<Vec<Finding>>);
    let busy = RwSignal::new(false);
    let check = move |_| {
        let model = model.clone();
        let escrow = chain.info.get_untracked().map(|c| c.escrow);
        busy.set(true);
        spawn_local(async move {
            findings.set(Some(run(model, escrow).await));
            busy.set(false);
        });
    };
    view! {
        <section class="card" data-testid="verify">
            <h2>"Verify"</h2>
            <p class="muted small">"Recompute this model's hash from its weights in this tab, and compare it with the hash the escrow recorded when its job was paid for."</p>
            <button data-testid="verify-run" disabled=move || busy.get() on:click=check>"Verify"</button>
            {move || findings.get().map(|list| view! {
                <ul class="findings">
                    {list.into_iter().map(|f| view! {
                        <li class=format!("finding {}", f.state) data-testid="verify-finding" data-state=f.state>{f.text}</li>
                    }).collect::<Vec<_>>()}
                </ul>
            })}
        </section>
    }
}
