// Screenshots of the market's pages, desktop and phone, light and dark, into
// docs/screenshots/: a private model on sale as a second account sees it
// (the listing, its price and the Buy button), then that account's Library
// once it has bought the model from the page with its wallet.
// Usage: ANVIL_URL=RPC node tests/browser/market-screenshots.mjs URL MODEL_ID [BUYER]
// against a network with a chain (`cargo xtask dev`), the model listed by
// its owner (`model list-for-sale`) and not yet bought by the buyer, which
// buys it here: BUYER, or anvil's fifth account (none of the dev network's
// workers).
import { mkdirSync } from 'node:fs';
import { launch, signedInPage, until } from './lib.mjs';

const [base, model, buyer = '0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65'] = process.argv.slice(2);
if (!base || !model || !process.env.ANVIL_URL) {
  console.error('usage: ANVIL_URL=RPC node tests/browser/market-screenshots.mjs URL MODEL_ID [BUYER]');
  process.exit(2);
}
const out = 'docs/screenshots';
mkdirSync(out, { recursive: true });
const sizes = [['desktop', { width: 1280, height: 900 }], ['phone', { width: 360, height: 780 }]];
const browser = await launch();

// Every size and theme of one page, signed in as the buyer; `ready` waits
// for what the image must show.
async function shoot(name, path, ready) {
  const page = await signedInPage(browser, base, path, name, buyer);
  for (const theme of ['light', 'dark']) {
    for (const [size, viewport] of sizes) {
      await page.setViewportSize(viewport);
      await page.evaluate((t) => { localStorage.setItem('oblivion.theme', t); document.documentElement.dataset.theme = t; }, theme);
      await ready(page);
      await page.waitForTimeout(1200);
      await page.screenshot({ path: `${out}/${name}-${size}-${theme}.png`, fullPage: size === 'desktop' });
    }
  }
  return page;
}

const onSale = await shoot('listing', `/models/${model}`,
  (page) => page.getByTestId('buy').waitFor({ timeout: 60000 }));
await onSale.getByTestId('buy').click();
await until('the purchase to be seen', async () =>
  (await onSale.getByTestId('bought').count()) > 0, 180000, 500);
await onSale.context().close();
await shoot('library', '/library',
  (page) => page.getByTestId(`library-model-${model}`).waitFor({ timeout: 60000 }));
await browser.close();
console.log('screenshots written to', out);
