//! The frame around every page: navigation, theme, live connection state.

use leptos::prelude::*;
use leptos_router::components::{A, Route, Router, Routes};
use leptos_router::path;

use crate::account::{AccountButton, provide_account};
use crate::chain::{provide_chain, use_chain};
use crate::contribute::Contribute;
use crate::job::JobPage;
use crate::jobs::JobList;
use crate::leaderboard::LeaderboardPage;
use crate::live::{provide_live, use_live};
use crate::market::LibraryPage;
use crate::model::ModelPage;
use crate::models::ModelList;
use crate::network::NetworkPage;
use crate::new_job::NewJob;
use crate::profile::AccountPage;
use crate::rewards::RewardsPage;
use crate::settings::{load_setting, save_setting};

const THEME_KEY: &str = "oblivion.theme";

fn apply_theme(theme: &str) {
    if let Some(root) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.document_element())
    {
        let _ = root.set_attribute("data-theme", theme);
    }
}

fn prefers_dark() -> bool {
    web_sys::window()
        .and_then(|w| w.match_media("(prefers-color-scheme: dark)").ok().flatten())
        .is_some_and(|m| m.matches())
}

#[component]
fn ThemeToggle() -> impl IntoView {
    let initial = load_setting(THEME_KEY)
        .unwrap_or_else(|| if prefers_dark() { "dark" } else { "light" }.into());
    apply_theme(&initial);
    let theme = RwSignal::new(initial);
    let toggle = move |_| {
        let next = if theme.get_untracked() == "dark" {
            "light"
        } else {
            "dark"
        };
        apply_theme(next);
        save_setting(THEME_KEY, next);
        theme.set(next.to_string());
    };
    view! {
        <button class="icon-button" title="Switch light and dark" aria-label="Switch light and dark" on:click=toggle>
            {move || if theme.get() == "dark" { "☀" } else { "☾" }}
        </button>
    }
}

#[component]
fn LiveDot() -> impl IntoView {
    let live = use_live();
    view! {
        <span class="live" class:on=move || live.connected.get() title="Live updates from the coordinator">
            <span class="dot"></span>
            {move || if live.connected.get() { "live" } else { "offline" }}
        </span>
    }
}

/// The application.
#[component]
pub fn App() -> impl IntoView {
    provide_live();
    provide_account();
    provide_chain();
    let chain = use_chain();
    view! {
        <Router>
            <header class="topbar">
                <a class="brand" href="/">
                    <span class="logo">"◉"</span>
                    "Oblivion"
                </a>
                <nav>
                    <A href="/" exact=true>"Contribute"</A>
                    <A href="/jobs">"Jobs"</A>
                    <A href="/models">"Models"</A>
                    <A href="/leaderboard">"Leaderboard"</A>
                    <A href="/network">"Network"</A>
                    // Only where jobs are paid.
                    {move || chain.info.with(Option::is_some).then(|| view! { <A href="/rewards">"Rewards"</A> <A href="/library">"Library"</A> })}
                </nav>
                <div class="topbar-end">
                    <AccountButton/>
                    <LiveDot/>
                    <ThemeToggle/>
                </div>
            </header>
            <main class="page">
                <Routes fallback=|| view! { <section class="card"><h1>"Not found"</h1><p>"There is no such page."</p></section> }>
                    <Route path=path!("/") view=Contribute/>
                    <Route path=path!("/jobs") view=JobList/>
                    <Route path=path!("/jobs/new") view=NewJob/>
                    <Route path=path!("/jobs/:id") view=JobPage/>
                    <Route path=path!("/models") view=ModelList/>
                    <Route path=path!("/leaderboard") view=LeaderboardPage/>
                    <Route path=path!("/models/:id") view=ModelPage/>
                    <Route path=path!("/network") view=NetworkPage/>
                    <Route path=path!("/rewards") view=RewardsPage/>
                    <Route path=path!("/library") view=LibraryPage/>
                    <Route path=path!("/accounts/:address") view=AccountPage/>
                </Routes>
            </main>
        </Router>
    }
}
