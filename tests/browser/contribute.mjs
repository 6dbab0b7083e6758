// Opens the Contribute page of a running coordinator in headless Chromium,
// presses Start, and keeps the tab training until this process is killed.
// Usage: node tests/browser/contribute.mjs http://127.0.0.1:PORT
import { chromium } from 'playwright-core';

const url = process.argv[2];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage();
page.on('console', (m) => console.log('page:', m.text()));
page.on('pageerror', (e) => console.log('page error:', e.message));
await page.goto(url + '/');
await page.click('#toggle');
await page.waitForFunction(() => Number(document.getElementById('accepted').textContent) >= 1,
  null, { timeout: 300000 });
console.log('accepted', await page.textContent('#accepted'));
await new Promise(() => {});
