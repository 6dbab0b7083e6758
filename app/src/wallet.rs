//! The browser wallet: found through EIP-6963 (each wallet announces itself
//! on `window`), falling back to the legacy `window.ethereum`, and driven
//! through its EIP-1193 `request({method, params})`.
//!
//! No crate does this: it is a few `js_sys::Reflect` calls. Transactions go
//! the same way, as plain EIP-1193 requests (`eth_sendTransaction`, then
//! `eth_getTransactionReceipt` until mined): alloy's provider would need an
//! EIP-1193 transport, which no maintained crate offers, to make the same
//! four requests; the calldata comes from `oblivion_chain::calls`.

use std::cell::RefCell;

use js_sys::{Array, Object, Promise, Reflect};
use oblivion_chain::calls::U256;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// EIP-1193: the user rejected the request.
pub const USER_REJECTED: i64 = 4001;

/// `wallet_switchEthereumChain`: the wallet does not know the chain.
pub const UNKNOWN_CHAIN: i64 = 4902;

/// How often a pending transaction's receipt is asked for.
const RECEIPT_POLL_MS: i32 = 1_000;

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
    /// Revert data (`0x` hex) when a call or transaction reverted and the
    /// wallet passed the node's data on.
    pub data: Option<String>,
}

impl WalletError {
    fn new(message: impl Into<String>) -> WalletError {
        WalletError {
            code: None,
            message: message.into(),
            data: None,
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

    /// `eth_sendTransaction` from `from` to `to` with calldata `data` and
    /// `value` (both `0x` hex); the transaction's hash once the wallet sent
    /// it (the user confirms in the wallet first).
    pub async fn send_transaction(
        &self,
        from: &str,
        to: &str,
        data: &str,
        value: &str,
    ) -> Result<String, WalletError> {
        let tx = transaction(from, to, data, value);
        self.request("eth_sendTransaction", &Array::of1(&tx))
            .await?
            .as_string()
            .ok_or_else(|| WalletError::new("the wallet answered a malformed transaction hash"))
    }

    /// Waits until transaction `hash` is mined (asking for its receipt every
    /// second).
    pub async fn receipt(&self, hash: &str) -> Result<Receipt, WalletError> {
        loop {
            let receipt = self
                .request("eth_getTransactionReceipt", &Array::of1(&hash.into()))
                .await?;
            if receipt.is_object() {
                let quantity = |key: &str| {
                    get(&receipt, key)
                        .as_string()
                        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
                };
                return Ok(Receipt {
                    ok: quantity("status") == Some(1),
                    block: quantity("blockNumber"),
                });
            }
            sleep(RECEIPT_POLL_MS).await;
        }
    }

    /// `eth_call` of `data` to `to` from `from` with `value` at `block`
    /// (`0x` hex number, or `latest`): what a transaction would return.
    pub async fn call(
        &self,
        from: &str,
        to: &str,
        data: &str,
        value: &str,
        block: &str,
    ) -> Result<JsValue, WalletError> {
        let tx = transaction(from, to, data, value);
        self.request("eth_call", &Array::of2(&tx, &block.into()))
            .await
    }

    /// The balance of `address`, wei.
    pub async fn balance(&self, address: &str) -> Result<U256, WalletError> {
        let params = Array::of2(&address.into(), &"latest".into());
        self.request("eth_getBalance", &params)
            .await?
            .as_string()
            .and_then(|s| U256::from_str_radix(s.trim_start_matches("0x"), 16).ok())
            .ok_or_else(|| WalletError::new("the wallet answered a malformed balance"))
    }

    /// Asks the wallet to switch to chain `chain_id` (the user confirms).
    pub async fn switch_chain(&self, chain_id: u64) -> Result<(), WalletError> {
        let param = Object::new();
        let _ = Reflect::set(&param, &"chainId".into(), &format!("{chain_id:#x}").into());
        match self
            .request("wallet_switchEthereumChain", &Array::of1(&param))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code == Some(UNKNOWN_CHAIN) => Err(WalletError {
                message: format!(
                    "the wallet does not know chain {chain_id}: add it to the wallet (its network settings), then try again"
                ),
                ..e
            }),
            Err(e) => Err(e),
        }
    }
}

/// A transaction object for `eth_sendTransaction` and `eth_call`.
fn transaction(from: &str, to: &str, data: &str, value: &str) -> Object {
    let tx = Object::new();
    for (key, v) in [("from", from), ("to", to), ("data", data), ("value", value)] {
        let _ = Reflect::set(&tx, &key.into(), &v.into());
    }
    tx
}

/// A mined transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// It succeeded (status 1); `false`: it reverted.
    pub ok: bool,
    /// The block it is in.
    pub block: Option<u64>,
}

/// Resolves after `ms` milliseconds.
pub async fn sleep(ms: i32) {
    let promise = Promise::new(&mut |resolve, _| {
        if let Some(window) = web_sys::window() {
            let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    });
    let _ = JsFuture::from(promise).await;
}

fn error_of(e: JsValue) -> WalletError {
    WalletError {
        code: get(&e, "code").as_f64().map(|c| c as i64),
        message: get(&e, "message")
            .as_string()
            .or_else(|| e.as_string())
            .unwrap_or_else(|| "unknown error".into()),
        data: revert_data(&e),
    }
}

/// Revert data wherever wallets put it: `data`, `data.data`,
/// `data.originalError.data`, `error.data`.
fn revert_data(e: &JsValue) -> Option<String> {
    let data = get(e, "data");
    [
        data.clone(),
        get(&data, "data"),
        get(&get(&data, "originalError"), "data"),
        get(&get(e, "error"), "data"),
    ]
    .iter()
    .filter_map(JsValue::as_string)
    .find(|s| s.starts_with("0x") && s.len() >= 10)
}
