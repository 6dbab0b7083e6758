//! The browser wallet: found through EIP-6963 (each wallet announces itself
//! on `window`), falling back to the legacy `window.ethereum`, and driven
//! through its EIP-1193 `request({method, params})`.
//!
//! No crate does this: it is a few `js_sys::Reflect` calls.

use std::cell::RefCell;

use js_sys::{Array, Object, Promise, Reflect};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// EIP-1193: the user rejected the request.
pub const USER_REJECTED: i64 = 4001;

/// A wallet the page can use.
#[derive(Clone, Debug)]
pub struct Wallet {
    /// Its name, as it announced it.
    pub name: String,
    /// Its EIP-6963 uuid (empty for `window.ethereum`).
    uuid: String,
    provider: JsValue,
}

/// What a wallet answered instead of a result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalletError {
    /// The EIP-1193 error code, when it gave one.
    pub code: Option<i64>,
    /// Its message.
    pub message: String,
}

impl WalletError {
    fn new(message: impl Into<String>) -> WalletError {
        WalletError {
            code: None,
            message: message.into(),
        }
    }

    /// Whether the user said no.
    pub fn rejected(&self) -> bool {
        self.code == Some(USER_REJECTED)
    }

    /// A line for the page.
    pub fn explain(&self) -> String {
        if self.rejected() {
            "You rejected the request in your wallet.".into()
        } else {
            format!("The wallet refused: {}", self.message)
        }
    }
}

thread_local! {
    static ANNOUNCED: RefCell<Vec<Wallet>> = const { RefCell::new(Vec::new()) };
}

fn get(target: &JsValue, key: &str) -> JsValue {
    Reflect::get(target, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// Starts listening for wallets and asks them to announce themselves
/// (EIP-6963). Call once, early.
pub fn discover() {
    let Some(window) = web_sys::window() else {
        return;
    };
    let on_announce = Closure::<dyn FnMut(web_sys::Event)>::new(|event: web_sys::Event| {
        let detail = get(&event, "detail");
        let info = get(&detail, "info");
        let provider = get(&detail, "provider");
        if provider.is_undefined() || provider.is_null() {
            return;
        }
        let wallet = Wallet {
            name: get(&info, "name")
                .as_string()
                .unwrap_or_else(|| "Wallet".into()),
            uuid: get(&info, "uuid").as_string().unwrap_or_default(),
            provider,
        };
        ANNOUNCED.with(|list| {
            let mut list = list.borrow_mut();
            if !list.iter().any(|w| w.uuid == wallet.uuid) {
                list.push(wallet);
            }
        });
    });
    let _ = window.add_event_listener_with_callback(
        "eip6963:announceProvider",
        on_announce.as_ref().unchecked_ref(),
    );
    // Lives as long as the page.
    on_announce.forget();
    if let Ok(request) = web_sys::Event::new("eip6963:requestProvider") {
        let _ = window.dispatch_event(&request);
    }
}

/// The wallets found: those announced, else `window.ethereum`.
pub fn wallets() -> Vec<Wallet> {
    let announced = ANNOUNCED.with(|list| list.borrow().clone());
    if !announced.is_empty() {
        return announced;
    }
    let legacy = web_sys::window()
        .map(|w| get(&w, "ethereum"))
        .filter(|p| p.is_object());
    legacy
        .map(|provider| Wallet {
            name: "Browser wallet".into(),
            uuid: String::new(),
            provider,
        })
        .into_iter()
        .collect()
}

/// The first wallet found, or an error that says to install one.
pub fn first() -> Result<Wallet, WalletError> {
    wallets().into_iter().next().ok_or_else(|| {
        WalletError::new("No wallet found in this browser. Install an Ethereum wallet extension.")
    })
}

impl Wallet {
    /// EIP-1193 `request({method, params})`.
    pub async fn request(&self, method: &str, params: &Array) -> Result<JsValue, WalletError> {
        let args = Object::new();
        let _ = Reflect::set(&args, &"method".into(), &method.into());
        let _ = Reflect::set(&args, &"params".into(), params);
        let request = get(&self.provider, "request");
        let request: js_sys::Function = request
            .dyn_into()
            .map_err(|_| WalletError::new("the wallet has no EIP-1193 request method"))?;
        let promise: Promise = request
            .call1(&self.provider, &args)
            .map_err(error_of)?
            .dyn_into()
            .map_err(|_| WalletError::new("the wallet answered without a promise"))?;
        JsFuture::from(promise).await.map_err(error_of)
    }

    /// Asks for the accounts (the wallet may ask the user); the first one.
    pub async fn account(&self) -> Result<String, WalletError> {
        let accounts = self.request("eth_requestAccounts", &Array::new()).await?;
        Array::from(&accounts)
            .get(0)
            .as_string()
            .ok_or_else(|| WalletError::new("the wallet shared no account"))
    }

    /// The chain the wallet is on.
    pub async fn chain_id(&self) -> Result<u64, WalletError> {
        let id = self.request("eth_chainId", &Array::new()).await?;
        id.as_string()
            .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
            .ok_or_else(|| WalletError::new("the wallet answered a malformed chain id"))
    }

    /// EIP-191 `personal_sign` of `message` by `account`.
    pub async fn personal_sign(&self, message: &str, account: &str) -> Result<String, WalletError> {
        let hex: String = message.bytes().map(|b| format!("{b:02x}")).collect();
        let params = Array::of2(&format!("0x{hex}").into(), &account.into());
        self.request("personal_sign", &params)
            .await?
            .as_string()
            .ok_or_else(|| WalletError::new("the wallet answered a malformed signature"))
    }
}

fn error_of(e: JsValue) -> WalletError {
    WalletError {
        code: get(&e, "code").as_f64().map(|c| c as i64),
        message: get(&e, "message")
            .as_string()
            .or_else(|| e.as_string())
            .unwrap_or_else(|| "unknown error".into()),
    }
}
