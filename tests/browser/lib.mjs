// Shared helpers of the browser tests: headless Chromium, with or without
// WebGPU (SwiftShader), driven by playwright-core.
import { chromium } from 'playwright-core';

const BASE_ARGS = ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];

/// A browser; `webgpu` exposes SwiftShader's software WebGPU adapter.
export async function launch({ webgpu = false } = {}) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: webgpu ? [...BASE_ARGS, '--enable-unsafe-webgpu'] : BASE_ARGS,
  });
}

/// anvil's first two development accounts: the job creator and a contributor.
export const CREATOR = '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266';
export const CONTRIBUTOR = '0x70997970C51812dc3A010C7d01b50e0d17dc79C8';

/// Gives every page of `context` a browser wallet sharing `account`: an
/// EIP-1193 provider whose requests go to the anvil node at `rpc` (its
/// unlocked accounts sign), announced through EIP-6963 as real wallets are.
export async function injectWallet(context, rpc, account) {
  await context.addInitScript(({ rpc, account }) => {
    let id = 0;
    const call = async (method, params) => {
      const r = await fetch(rpc, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ jsonrpc: '2.0', id: ++id, method, params }),
      });
      const body = await r.json();
      if (body.error) {
        const e = new Error(body.error.message);
        e.code = body.error.code;
        throw e;
      }
      return body.result;
    };
    const provider = {
      request: async ({ method, params = [] }) => {
        switch (method) {
          case 'eth_requestAccounts':
          case 'eth_accounts':
            return [account];
          case 'eth_sendTransaction':
            return call(method, [{ from: account, ...params[0] }]);
          default:
            return call(method, params);
        }
      },
      on() {},
      removeListener() {},
    };
    const info = {
      uuid: '6f1c1a52-0b11-4d00-9000-0000000000a1', name: 'Test Wallet', rdns: 'org.oblivion.test-wallet',
      icon: 'data:image/svg+xml,%3Csvg xmlns=%22http://www.w3.org/2000/svg%22/%3E',
    };
    const announce = () => window.dispatchEvent(new CustomEvent('eip6963:announceProvider', {
      detail: Object.freeze({ info, provider }),
    }));
    window.addEventListener('eip6963:requestProvider', announce);
    announce();
  }, { rpc, account });
}

/// A page in a fresh context that logs its errors with a label; with
/// `account`, the context has a wallet for it (see `injectWallet`). Its
/// Contribute page starts `pool` workers (one unless asked: the scenarios
/// count one worker a tab).
export async function openPage(browser, url, label, viewport, account, pool = 1) {
  const context = await browser.newContext({ viewport: viewport ?? { width: 1280, height: 900 }, acceptDownloads: true });
  await context.addInitScript((n) => {
    if (!localStorage.getItem('oblivion.pool')) localStorage.setItem('oblivion.pool', String(n));
  }, pool);
  if (account) await injectWallet(context, process.env.ANVIL_URL, account);
  const page = await context.newPage();
  page.on('pageerror', (e) => console.log(`[${label}] page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') console.log(`[${label}] console: ${m.text()}`); });
  await page.goto(url);
  return page;
}

/// Signs in with the page's wallet through the top bar; returns the
/// address shown.
export async function signIn(page) {
  await page.getByTestId('sign-in').click();
  await page.getByTestId('account').waitFor({ timeout: 30000 });
  return page.getByTestId('account').getAttribute('title');
}

/// A page of the app at `path`, signed in as `account`.
export async function signedInPage(browser, base, path, label, account) {
  const page = await openPage(browser, base + path, label, undefined, account);
  await signIn(page);
  return page;
}

/// POSTs from inside `page` (with its session): `{status, body}`.
export async function postFrom(page, path, body) {
  return page.evaluate(async ({ path, body }) => {
    const r = await fetch(path, { method: 'POST', body });
    return { status: r.status, body: await r.json().catch(() => null) };
  }, { path, body });
}

/// Opens the Contribute page and presses Start, with `pool` workers.
export async function startTab(browser, base, label, pool = 1) {
  const page = await openPage(browser, base + '/', label, undefined, undefined, pool);
  await page.getByTestId('toggle').click();
  return page;
}

export const text = async (page, id) => (await page.getByTestId(id).first().textContent()).trim();
export const number = async (page, id) => Number((await text(page, id)).replace(/[^0-9.]/g, ''));

/// Polls `check` until it returns something truthy.
export async function until(what, check, timeoutMs, everyMs = 250) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export async function getJson(base, path) {
  const r = await fetch(base + path);
  if (!r.ok) throw new Error(`GET ${path}: ${r.status}`);
  return r.json();
}

export function check(condition, message) {
  if (!condition) throw new Error(message);
}
