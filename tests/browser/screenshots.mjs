// Screenshots of every page at desktop and phone width, light and dark,
// into docs/screenshots/. Usage: node tests/browser/screenshots.mjs URL JOB_ID
// [MODEL_ID [ACCOUNT]] (a running network with a job in progress and a
// trained model makes the most telling images; the model's page and the
// account's profile are taken when named).
import { mkdirSync } from 'node:fs';
import { launch, openPage, until, text } from './lib.mjs';

const [base, job, model, account] = process.argv.slice(2);
const out = 'docs/screenshots';
mkdirSync(out, { recursive: true });
const browser = await launch();
const tab = await openPage(browser, base + '/', 'contribute', undefined, undefined, 2);
await tab.getByTestId('toggle').click();
await until('the tab to train', async () => (await text(tab, 'accepted')) !== '0', 120000);

const pages = [['contribute', '/'], ['jobs', '/jobs'], ['new-job', '/jobs/new'], ['job', `/jobs/${job}`], ['network', '/network'],
  ['models', '/models'], ['leaderboard', '/leaderboard']];
if (model) pages.push(['model', `/models/${model}`]);
if (account) pages.push(['account', `/accounts/${account}`]);
const sizes = [['desktop', { width: 1280, height: 900 }], ['phone', { width: 360, height: 780 }]];
for (const theme of ['light', 'dark']) {
  for (const [size, viewport] of sizes) {
    for (const [name, path] of pages) {
      const page = name === 'contribute' ? tab : await openPage(browser, base + path, name, viewport);
      if (name === 'contribute') await page.setViewportSize(viewport);
      await page.evaluate((t) => { localStorage.setItem('oblivion.theme', t); document.documentElement.dataset.theme = t; }, theme);
      await page.waitForTimeout(1200);
      await page.screenshot({ path: `${out}/${name}-${size}-${theme}.png`, fullPage: size === 'desktop' });
      if (name !== 'contribute') await page.context().close();
    }
  }
}
await browser.close();
console.log('screenshots written to', out);
