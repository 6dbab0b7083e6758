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

/// A page in a fresh context that logs its errors with a label.
export async function openPage(browser, url, label, viewport) {
  const context = await browser.newContext({ viewport: viewport ?? { width: 1280, height: 900 }, acceptDownloads: true });
  const page = await context.newPage();
  page.on('pageerror', (e) => console.log(`[${label}] page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') console.log(`[${label}] console: ${m.text()}`); });
  await page.goto(url);
  return page;
}

/// Opens the Contribute page and presses Start.
export async function startTab(browser, base, label) {
  const page = await openPage(browser, base + '/', label);
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
