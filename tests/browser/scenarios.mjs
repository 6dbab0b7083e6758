// Browser end-to-end scenarios against a running coordinator that serves
// the web app. Usage: node tests/browser/scenarios.mjs URL SCENARIO
// Prints one line `RESULT {json}` on success; exits 1 with the reason.
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import {
  launch, openPage, startTab, text, number, until, getJson, check, signedInPage, postFrom, CREATOR,
  CONTRIBUTOR, signIn,
} from './lib.mjs';

const [base, scenario] = process.argv.slice(2);
const browsers = [];

const finished = (j) => ['completed', 'failed', 'cancelled'].includes(j.status);

/// Polls job `id` until it has ended; returns it.
const jobFinished = (id, timeoutMs, everyMs) => until(`job ${id} to finish`, async () => {
  const j = await getJson(base, `/api/jobs/${id}`);
  return finished(j) ? j : null;
}, timeoutMs, everyMs);

/// Two tabs (WebGPU and CPU-only) train the MNIST MLP example, submitted
/// through the form, to completion; the job page shows the curves and
/// serves every model format.
async function twoTabs() {
  const gpuBrowser = await launch({ webgpu: true });
  const cpuBrowser = await launch({ webgpu: false });
  browsers.push(gpuBrowser, cpuBrowser);
  // Left to choose, a tab whose only WebGPU adapter is SwiftShader's
  // software one trains on the CPU, and says why.
  const gpuTab = await startTab(gpuBrowser, base, 'gpu tab');
  await until('the software-adapter tab to report its device', async () => (await text(gpuTab, 'backend')) !== '—', 180000);
  check((await text(gpuTab, 'backend')) === 'CPU', `a tab with a software adapter starts on ${await text(gpuTab, 'backend')}`);
  const softwareReason = await text(gpuTab, 'cpu-reason');
  check(/software/.test(softwareReason), `the tab says why: ${softwareReason}`);
  // Asked for WebGPU, it trains there anyway.
  await gpuTab.getByTestId('toggle').click();
  await gpuTab.getByTestId('backend-choice').selectOption('webgpu');
  await gpuTab.getByTestId('toggle').click();
  await until('the WebGPU tab to report its device', async () => (await text(gpuTab, 'backend')) === 'WebGPU', 180000);
  const gpuBackend = await text(gpuTab, 'backend');
  check(gpuBackend === 'WebGPU', `the WebGPU tab trains on ${gpuBackend}: ${await text(gpuTab, 'device-detail')}`);
  const gpuDevice = await text(gpuTab, 'device-detail');

  // Sign in with the wallet and submit the example through the form.
  const creator = await signedInPage(cpuBrowser, base, '/jobs/new', 'creator', CREATOR);
  await creator.getByTestId('example').selectOption('mnist-mlp');
  check((await creator.getByTestId('field-name').inputValue()) === 'mnist-mlp', 'the example is loaded');
  await creator.getByTestId('submit').click();
  await creator.waitForURL(/\/jobs\/\d+$/, { timeout: 30000 });
  const id = Number(creator.url().split('/').pop());
  // SwiftShader trains a hundred times slower than the CPU: a CPU tab
  // beside it would take over its leases as backups, so it joins once the
  // WebGPU tab has had an update accepted.
  await until('the WebGPU tab\'s first accepted update', async () => (await number(gpuTab, 'accepted')) >= 1, 300000);
  const cpuTab = await startTab(cpuBrowser, base, 'cpu tab');
  await until('the CPU tab to report its device', async () => (await text(cpuTab, 'backend')) !== '—', 60000);
  const cpuBackend = await text(cpuTab, 'backend');
  check(cpuBackend === 'CPU', `the tab without WebGPU trains on ${cpuBackend}`);
  const cpuReason = await text(cpuTab, 'cpu-reason');
  const job = await jobFinished(id, 900000, 1000);
  check(job.status === 'completed', `job ${id} ended ${job.status}: ${job.error}`);

  const gpuAccepted = await number(gpuTab, 'accepted');
  const cpuAccepted = await number(cpuTab, 'accepted');
  check(gpuAccepted >= 1, 'the WebGPU tab had an update accepted');
  check(cpuAccepted >= 1, 'the CPU tab had an update accepted');

  // The job page, as its creator sees it once finished.
  await until('the job page to show every round', async () => {
    const rows = await creator.getByTestId('rounds').locator('tbody tr').count();
    return rows === job.history.length;
  }, 15000);
  const lossDots = await creator.getByTestId('chart-loss').locator('circle').count();
  const accuracyDots = await creator.getByTestId('chart-accuracy').locator('circle').count();
  check(accuracyDots === job.history.length, `accuracy curve has ${accuracyDots} points for ${job.history.length} rounds`);
  check(lossDots === 2 * job.history.length, `loss curves have ${lossDots} points`);
  const shown = await text(creator, 'accuracy');
  const last = job.history[job.history.length - 1].accuracy;
  check(Math.abs(parseFloat(shown) - last * 100) < 0.006, `the page shows accuracy ${shown}, the API says ${last}`);
  const downloads = {};
  for (const format of ['onnx', 'safetensors', 'burn']) {
    const [download] = await Promise.all([
      creator.waitForEvent('download'),
      creator.getByTestId(`download-${format}`).click(),
    ]);
    const bytes = readFileSync(await download.path());
    const direct = Buffer.from(await (await fetch(`${base}/api/jobs/${id}/model?format=${format}`)).arrayBuffer());
    // safetensors and burn metadata are maps written in no fixed order:
    // compare those by size.
    const same = format === 'onnx' ? bytes.equals(direct) : bytes.length === direct.length;
    check(bytes.length > 1000 && same, `${format} download (${bytes.length} bytes) matches the API's (${direct.length})`);
    downloads[format] = { file: download.suggestedFilename(), bytes: bytes.length };
  }
  const contributors = await creator.getByTestId('contributors').locator('tbody tr').count();
  return { job: id, rounds: job.history.length, accuracy: last, gpuAccepted, cpuAccepted, gpuDevice, cpuReason, softwareReason, contributors, downloads };
}

/// A tab closed while training: its shard goes to another tab and the job
/// completes.
async function tabClosed() {
  const browser = await launch();
  browsers.push(browser);
  const first = await startTab(browser, base, 'first tab');
  await until('the first tab to connect', async () => (await text(first, 'status')) === 'waiting for work', 60000);
  // Shards long enough to be caught mid-way: the CNN, two big shards.
  const spec = {
    name: 'closed-tab', model: { kind: 'cnn', channels: [8, 16], kernel_size: 5, hidden: [] },
    dataset: { builtin: 'mnist' }, rounds: 2, shards_per_round: 2, local_epochs: 2, batch_size: 32,
    optimizer: { kind: 'adam', learning_rate: 0.003 }, seed: 3,
  };
  const creator = await signedInPage(browser, base, '/jobs', 'creator', CREATOR);
  const { body: { id } } = await postFrom(creator, '/api/jobs', JSON.stringify(spec));
  await until('the first tab to be mid-shard', async () => {
    const lease = await text(first, 'lease');
    const width = await first.locator('.progress .bar').first().evaluate((e) => parseFloat(e.style.width) || 0);
    return lease.startsWith(`job ${id}`) && width > 5 && width < 60;
  }, 120000, 50);
  const [, round, shard] = (await text(first, 'lease')).match(/round (\d+) · shard (\d+)/) ?? [];
  const before = await getJson(base, `/api/jobs/${id}`);
  const holder = before.shards[Number(shard)].worker_id;
  check(before.shards[Number(shard)].state === 'leased', 'the shard was leased when the tab closed');
  await first.context().close();
  const second = await startTab(browser, base, 'second tab');
  const reissued = await until('the shard to be re-issued', async () => {
    const j = await getJson(base, `/api/jobs/${id}`);
    if (j.round !== Number(round) || finished(j)) return 'round over';
    const s = j.shards[Number(shard)];
    return s.attempts >= 2 && s.worker_id !== null && s.worker_id !== holder ? s : null;
  }, 120000, 100);
  check(reissued !== 'round over', 'the closed tab\'s shard was seen re-issued to another worker');
  const job = await jobFinished(id, 300000, 500);
  check(job.status === 'completed', `job ended ${job.status}`);
  const accepted = await number(second, 'accepted');
  check(accepted >= 1, 'the second tab trained the rest');
  return { job: id, round: Number(round), shard: Number(shard), closedHolder: holder, reissuedTo: reissued.worker_id, attempts: reissued.attempts, accepted };
}

/// The form shows the coordinator's message for an invalid spec.
async function invalidSpec() {
  const browser = await launch();
  browsers.push(browser);
  const page = await signedInPage(browser, base, '/jobs/new', 'form', CREATOR);
  await page.getByTestId('field-rounds').fill('0');
  await page.getByTestId('submit').click();
  await page.getByTestId('form-error').waitFor({ timeout: 10000 });
  const zero = await text(page, 'form-error');
  const { body: direct } = await postFrom(page, '/api/jobs', await page.getByTestId('spec-json').textContent());
  check(zero.includes(direct.error), `the form shows "${zero}", the API says "${direct.error}"`);
  check(zero.startsWith('rounds'), `the error names the field: ${zero}`);
  const invalid = await page.locator('label.field.invalid input[name="rounds"]').count();
  check(invalid === 1, 'the rounds field is marked invalid');
  await page.getByTestId('field-rounds').fill('three');
  await page.getByTestId('submit').click();
  await until('the type error', async () => (await text(page, 'form-error')) !== zero, 10000);
  const typed = await text(page, 'form-error');
  check(/rounds/.test(typed), `the type error names the field: ${typed}`);
  check(page.url().endsWith('/jobs/new'), 'the form stays open');
  // A privacy budget no noise can meet is refused, naming its field.
  await page.getByTestId('field-rounds').fill('3');
  await page.getByTestId('field-replication.fraction').fill('0.1');
  await page.getByTestId('field-privacy.target_epsilon').fill('1e-9');
  const spec = JSON.parse(await page.getByTestId('spec-json').textContent());
  check(spec.replication?.fraction === 0.1 && spec.privacy?.target_epsilon === 1e-9 && spec.privacy?.clip_norm === 1,
    `the trust fields go into the spec: ${JSON.stringify(spec)}`);
  await page.getByTestId('submit').click();
  await until('the privacy error', async () => (await text(page, 'form-error')).startsWith('privacy.target_epsilon'), 10000);
  const privacy = await text(page, 'form-error');
  const marked = await page.locator('label.field.invalid input[name="privacy.target_epsilon"]').count();
  check(marked === 1, 'the privacy budget field is marked invalid');
  const jobs = await getJson(base, '/api/jobs');
  check(jobs.length === 0, 'nothing was submitted');
  return { zero, typed, privacy };
}

/// Waits for `line` on standard input (the test driving this script).
function stdinLine(line) {
  return new Promise((resolve) => {
    let seen = '';
    process.stdin.on('data', (chunk) => {
      seen += chunk;
      if (seen.split('\n').includes(line)) resolve();
    });
  });
}

/// The coordinator restarts under a contributing tab: the tab reconnects
/// by itself and trains a job submitted afterwards.
async function reconnect() {
  const browser = await launch();
  browsers.push(browser);
  const tab = await startTab(browser, base, 'tab');
  await until('the tab to connect', async () => (await text(tab, 'status')) === 'waiting for work', 60000);
  const connections = () => tab.getByTestId('log').locator('li', { hasText: 'connected as worker' }).count();
  check((await connections()) === 1, 'one connection before the restart');
  console.log('READY');
  await stdinLine('RESTARTED');
  await until('the tab to reconnect', async () => (await connections()) >= 2, 60000);
  const spec = JSON.parse(readFileSync('examples/jobs/iris-mlp.json', 'utf8'));
  const creator = await signedInPage(browser, base, '/jobs', 'creator', CREATOR);
  const { body: { id } } = await postFrom(creator, '/api/jobs', JSON.stringify(spec));
  const job = await jobFinished(id, 120000, 250);
  check(job.status === 'completed', `job ended ${job.status}`);
  const accepted = await number(tab, 'accepted');
  check(accepted >= 1, 'the reconnected tab trained the new job');
  return { job: id, accepted, log: await text(tab, 'log') };
}

/// A paid job, all in the browser: the creator signs in and funds the job
/// from the form, a signed-in Contribute tab trains it, the creator settles
/// from the job page and the contributor claims from the Rewards page.
async function paid() {
  const browser = await launch();
  browsers.push(browser);
  const tab = await openPage(browser, base + '/', 'contributor', undefined, CONTRIBUTOR);
  await signIn(tab);
  await tab.getByTestId('toggle').click();
  await until('the tab to connect', async () => (await text(tab, 'status')) === 'waiting for work', 60000);

  const creator = await signedInPage(browser, base, '/jobs/new', 'creator', CREATOR);
  await creator.getByTestId('example').selectOption('iris-mlp');
  await creator.getByTestId('field-rounds').fill('3');
  await creator.getByTestId('field-reward.amount').fill('0.5');
  // One tab trains it all: no second worker to check its shards.
  await creator.getByTestId('field-replication.fraction').fill('0');
  await creator.getByTestId('submit').click();
  // The form funds the job from the wallet, then opens its page.
  await creator.waitForURL(/\/jobs\/\d+$/, { timeout: 60000 });
  const id = Number(creator.url().split('/').pop());
  const job = await jobFinished(id, 300000, 500);
  check(job.status === 'completed', `job ${id} ended ${job.status}: ${job.error}`);
  check(job.payment && job.payment.deposit === '500000000000000000', `deposit ${JSON.stringify(job.payment)}`);

  // Settle from the job page once the coordinator has signed.
  await creator.getByTestId('settle').waitFor({ timeout: 60000 });
  await creator.getByTestId('settle').click();
  await until('the settlement to be seen', async () =>
    (await creator.getByTestId('payment-state').getAttribute('data-state')) === 'settled', 60000);

  // Claim from the Rewards page.
  await tab.goto(base + '/rewards');
  await tab.getByTestId(`claim-${id}`).waitFor({ timeout: 60000 });
  const claimable = await text(tab, 'rewards-claimable');
  await tab.getByTestId(`claim-${id}`).click();
  await until('the claim to be seen', async () =>
    (await tab.getByTestId(`reward-status-${id}`).getAttribute('data-state')) === 'claimed', 60000);
  return { job: id, jobKey: job.payment.job_key, claimable };
}

/// Opens the Contribute page in a fresh context whose every outgoing
/// request body and WebSocket frame (the page's and its worker's) is
/// recorded into `sent`.
async function recordedTab(browser, label, sent) {
  const context = await browser.newContext();
  // One worker a tab: its one hello is checked.
  await context.addInitScript(() => localStorage.setItem('oblivion.pool', '1'));
  const page = await context.newPage();
  page.on('pageerror', (e) => console.log(`[${label}] page error: ${e.message}`));
  const record = (kind, url, body) => sent.push({ tab: label, kind, url, body });
  context.on('request', (r) => record(`${r.method()} request`, r.url(), r.postDataBuffer() ?? Buffer.alloc(0)));
  page.on('websocket', (ws) => ws.on('framesent', (f) => record('frame', ws.url(), Buffer.from(f.payload))));
  page.on('worker', (w) => console.log(`[${label}] worker ${w.url()}`));
  await page.goto(base + '/');
  return page;
}

/// Everything a recorded body says, as text: itself, and gunzipped when
/// it is gzip (updates are).
function readable(body) {
  const texts = [body.toString('latin1')];
  if (body[0] === 0x1f && body[1] === 0x8b) {
    try { texts.push(gunzipSync(body).toString('latin1')); } catch { /* not gzip after all */ }
  }
  return texts;
}

/// Federated mode in the browser: two tabs each pick a local file (iris
/// rows only they hold), the creator submits a federated job through the
/// form with only validation data, and the tabs train it to its target.
/// Every request and WebSocket frame the tabs send is recorded: none holds
/// a row of their files.
async function federated() {
  const dir = process.env.FEDERATED_DIR;
  const files = { validation: `${dir}/validation.csv`, alice: `${dir}/alice.csv`, bob: `${dir}/bob.csv` };
  const rows = (f) => readFileSync(f, 'utf8').trim().split('\n').slice(1);
  const browser = await launch();
  browsers.push(browser);
  const sent = [];
  const tabs = {};
  for (const name of ['alice', 'bob']) {
    const tab = await recordedTab(browser, name, sent);
    // This job spends up to ε = 360 of each contributor's data: over the
    // default limit of 10 a job, which these contributors raise.
    for (const [field, value] of [['privacy-job-epsilon', '400'], ['privacy-total-epsilon', '1000']]) {
      await tab.getByTestId(field).fill(value);
      await tab.getByTestId(field).blur();
    }
    await tab.getByTestId('local-data').setInputFiles(files[name]);
    await tab.getByTestId('toggle').click();
    await until(`${name}'s tab to read its file`, async () => (await tab.getByTestId('local-summary').count()) > 0, 60000);
    check((await text(tab, 'local-summary')).startsWith(`${rows(files[name]).length} samples of shape [4]`),
      `${name}'s tab describes its file: ${await text(tab, 'local-summary')}`);
    await until(`${name}'s tab to connect`, async () => (await text(tab, 'status')) === 'waiting for work', 60000);
    tabs[name] = tab;
  }

  // The creator uploads only validation data, through the form.
  const creator = await signedInPage(browser, base, '/jobs/new', 'creator', CREATOR);
  await creator.getByTestId('example').selectOption('iris-mlp');
  await creator.getByTestId('field-placement').selectOption('federated');
  await creator.getByTestId('federated-note').waitFor({ timeout: 10000 });
  await creator.getByTestId('field-source').selectOption('csv');
  await creator.getByTestId('upload-csv').setInputFiles(files.validation);
  await until('the validation upload', async () => /sha256/.test(await text(creator, 'upload-note')), 30000);
  await creator.getByTestId('field-name').fill('iris-federated');
  await creator.getByTestId('field-rounds').fill('40');
  await creator.getByTestId('field-target_accuracy').fill('0.9');
  await creator.getByTestId('field-privacy.target_epsilon').fill('360');
  // A quorum that never comes due here (both tabs finish every round well
  // within ten minutes): the form carries it into the spec.
  await creator.getByTestId('field-quorum.share').fill('0.5');
  await creator.getByTestId('field-quorum.after_secs').fill('600');
  const spec = JSON.parse(await creator.getByTestId('spec-json').textContent());
  check(spec.dataset.federated?.validation?.csv && spec.privacy?.target_epsilon === 360
    && spec.quorum?.share === 0.5 && spec.quorum?.after_secs === 600,
    `the form builds a federated spec: ${JSON.stringify(spec)}`);
  await creator.getByTestId('submit').click();
  await creator.waitForURL(/\/jobs\/\d+$/, { timeout: 30000 });
  const id = Number(creator.url().split('/').pop());
  const job = await jobFinished(id, 600000, 500);
  check(job.status === 'completed', `job ${id} ended ${job.status}: ${job.error}`);
  const accuracy = job.history[job.history.length - 1].accuracy;
  check(accuracy >= 0.9, `the federated job reached ${accuracy}`);

  // Each tab kept what its data spent on the job, in its storage, and
  // shows it; it priced the job as the coordinator does (2C).
  for (const name of ['alice', 'bob']) {
    const kept = JSON.parse(await tabs[name].evaluate(() => localStorage.getItem('oblivion.privacy')));
    const mine = kept.ledger.spends.filter((s) => s.job === id);
    check(mine.length === 1 && mine[0].rounds >= 1, `${name} kept its spend on job ${id}: ${JSON.stringify(kept.ledger)}`);
    check(kept.limits.job_epsilon === 400, `${name} kept its limit: ${JSON.stringify(kept.limits)}`);
    await until(`${name}'s tab to show what it spent`, async () =>
      /job \d+: \d+ updates? · ε = \d/.test(await text(tabs[name], 'privacy-spends'))
      && (await text(tabs[name], 'privacy-spent')) !== 'ε = 0.00', 15000);
  }

  // The job page says how many contributed, and the ε spent.
  await until('the job page to show the contributors', async () =>
    (await creator.getByTestId('federated-contributors').count()) > 0
    && (await text(creator, 'federated-contributors')) === '2 contributors', 15000);
  const spent = job.history[job.history.length - 1].epsilon;
  await until(`the job page to show ε = ${spent.toFixed(2)}, as the API does`, async () =>
    (await text(creator, 'epsilon')) === `ε = ${spent.toFixed(2)}`, 15000);

  // The tabs' traffic: the recording saw their updates and their hellos
  // (so it records what the workers send), and no row of their files.
  const report = {};
  for (const name of ['alice', 'bob']) {
    const mine = sent.filter((s) => s.tab === name);
    const updates = mine.filter((s) => /\/api\/leases\/\d+\/update$/.test(s.url));
    const hellos = mine.filter((s) => s.kind === 'frame' && s.body.toString().includes('"type":"hello"'));
    const accepted = await number(tabs[name], 'accepted');
    check(updates.length >= accepted && accepted >= 1, `${name}: ${updates.length} update posts recorded, ${accepted} accepted`);
    check(hellos.length >= 1 && hellos.every((h) => h.body.toString().includes('"local_data":{"shape":[4]')),
      `${name}: its hello offers its data's shape (${hellos.length} recorded)`);
    check(!mine.some((s) => /\/api\/datasets/.test(s.url)), `${name}: nothing was uploaded`);
    const secrets = rows(files[name]).flatMap((r) => [r, r.split(',').slice(0, 4).join(',')]);
    const whole = readFileSync(files[name]);
    for (const s of mine) {
      for (const t of readable(s.body)) {
        check(!t.includes(whole.toString('latin1')), `${name}: its file was sent to ${s.url}`);
        const leaked = secrets.find((row) => t.includes(row));
        check(!leaked, `${name}: row ${leaked} was sent (${s.kind} ${s.url})`);
      }
    }
    report[name] = {
      accepted, requests: mine.filter((s) => s.kind !== 'frame').length, frames: mine.length - mine.filter((s) => s.kind !== 'frame').length,
      bytesSent: mine.reduce((n, s) => n + s.body.length, 0), fileBytes: whole.length,
    };
  }
  return { job: id, rounds: job.history.length, accuracy, epsilon: spent, tabs: report };
}

/// A tab opened on a running job: the time from opening Contribute to its
/// first shard trained, and the bytes it fetched (the app's and worker's
/// files apart from the job's data); first cold (a fresh browser), then
/// warm (a second tab of the same browser, whose cache holds the files).
/// The browser has no WebGPU: its tab loads the worker's CPU build.
async function firstShard() {
  const browser = await launch();
  browsers.push(browser);
  const context = await browser.newContext();
  const measure = async (label) => {
    const sizes = [];
    const onFinished = (r) => sizes.push(r.sizes()
      .then((s) => ({ url: r.url(), bytes: s.responseBodySize + s.responseHeadersSize }))
      .catch(() => ({ url: r.url(), bytes: 0 })));
    context.on('requestfinished', onFinished);
    const page = await context.newPage();
    page.on('pageerror', (e) => console.log(`[${label}] page error: ${e.message}`));
    const started = Date.now();
    await page.goto(base + '/');
    await page.getByTestId('toggle').click();
    await until(`the ${label} tab's first shard`, async () => (await number(page, 'shards-done')) >= 1, 180000, 50);
    const ms = Date.now() - started;
    context.off('requestfinished', onFinished);
    const done = await Promise.all(sizes);
    const bytes = done.reduce((n, s) => n + s.bytes, 0);
    const code = done.filter((s) => !new URL(s.url).pathname.startsWith('/api/')).reduce((n, s) => n + s.bytes, 0);
    // Which wasm modules it fetched, with their bytes on the wire.
    const wasm = done.filter((s) => s.url.endsWith('.wasm') && s.bytes > 0)
      .map((s) => ({ path: new URL(s.url).pathname, bytes: s.bytes }));
    await page.getByTestId('toggle').click();
    return { ms, bytes, code, wasm };
  };
  const cold = await measure('cold');
  const warm = await measure('warm');
  return { cold, warm };
}

/// A tab with a pool of workers, one per core as the browser reports
/// them: each pool worker takes leases of its own, and the page sums them.
async function pool() {
  const browser = await launch();
  browsers.push(browser);
  const probe = await openPage(browser, base + '/', 'probe');
  const cores = await probe.evaluate(() => navigator.hardwareConcurrency);
  await probe.context().close();
  const size = Math.max(2, Math.min(cores, 4));
  const tab = await startTab(browser, base, 'pool tab', size);
  const options = await tab.getByTestId('pool-size').locator('option').count();
  check(options >= Math.min(cores, 16), `the page offers 1 to ${cores} workers (${options} options)`);
  await until('every pool worker to connect', async () => {
    const lines = await tab.getByTestId('pool').locator('li').allTextContents();
    return lines.length === size && lines.every((l) => /waiting for work|training/.test(l));
  }, 180000);
  const spec = JSON.parse(readFileSync('examples/jobs/mnist-mlp.json', 'utf8'));
  const creator = await signedInPage(browser, base, '/jobs', 'creator', CREATOR);
  const { body: { id } } = await postFrom(creator, '/api/jobs', JSON.stringify(spec));
  const job = await jobFinished(id, 600000, 500);
  check(job.status === 'completed', `job ${id} ended ${job.status}: ${job.error}`);
  const perWorker = [];
  for (let i = 1; i <= size; i++) {
    const line = await text(tab, `pool-worker-${i}`);
    perWorker.push(Number((line.match(/(\d+) accepted/) ?? [])[1] ?? 0));
  }
  check(perWorker.every((n) => n >= 1), `every pool worker had updates accepted: ${perWorker}`);
  const accepted = await number(tab, 'accepted');
  check(accepted === perWorker.reduce((a, b) => a + b, 0), `the page sums its workers: ${accepted} of ${perWorker}`);
  return { job: id, cores, size, perWorker, accepted, name: await tab.evaluate(() => localStorage.getItem('oblivion.name')) };
}

/// A tab contributes to an inference job: it trains the iris example,
/// then runs the model over the rows the job held out.
async function inference() {
  const browser = await launch();
  browsers.push(browser);
  const tab = await startTab(browser, base, 'tab');
  await until('the tab to connect', async () => (await text(tab, 'status')) === 'waiting for work', 60000);
  const creator = await signedInPage(browser, base, '/jobs', 'creator', CREATOR);
  const spec = JSON.parse(readFileSync('examples/jobs/iris-mlp.json', 'utf8'));
  const { body: { id } } = await postFrom(creator, '/api/jobs', JSON.stringify(spec));
  const trained = await jobFinished(id, 120000, 250);
  check(trained.status === 'completed', `job ${id} ended ${trained.status}`);
  const before = await number(tab, 'accepted');
  const run = { task: 'inference', name: 'iris rows', model: { job: id }, inputs: { held_out_by: id }, shards: 2 };
  const { body: { id: runId } } = await postFrom(creator, '/api/jobs', JSON.stringify(run));
  const done = await jobFinished(runId, 120000, 250);
  check(done.status === 'completed', `inference job ${runId} ended ${done.status}: ${done.error}`);
  const accepted = await number(tab, 'accepted');
  check(accepted >= before + 2, `the tab ran both shards: ${before} then ${accepted} accepted`);
  return { job: id, run: runId, accepted };
}

/// Draws a vertical stroke, the shape of a one, on the canvas.
async function drawOne(page) {
  const canvas = page.getByTestId('digit-canvas');
  const box = await canvas.boundingBox();
  const at = (x, y) => [box.x + (x * box.width) / 280, box.y + (y * box.height) / 280];
  await page.mouse.move(...at(140, 50));
  await page.mouse.down();
  for (let y = 50; y <= 230; y += 6) await page.mouse.move(...at(140, y));
  await page.mouse.up();
}

/// A visitor draws a digit in a model's sandbox (model 1, trained before
/// the scenario) and the page shows the predicted class, computed in the
/// tab: the weights are fetched once, a second drawing asks the network
/// nothing.
async function sandbox() {
  const browser = await launch();
  browsers.push(browser);
  const page = await openPage(browser, base + '/models/1', 'visitor');
  const requests = [];
  page.context().on('request', (r) => requests.push(new URL(r.url()).pathname));
  await page.getByTestId('digit-canvas').waitFor({ timeout: 60000 });
  await drawOne(page);
  const predicted = await until('a prediction', async () => {
    const shown = await page.getByTestId('predicted').count();
    return shown ? text(page, 'predicted') : null;
  }, 120000, 200);
  const probabilities = await page.locator('[data-testid=probabilities] .bar-row')
    .evaluateAll((rows) => rows.map((r) => Number(r.dataset.probability)));
  // The 28x28 input as the page computed it: the mean of each 10x10 block.
  const pixels = await page.getByTestId('digit-canvas')
    .evaluate((c) => Array.from(c.getContext('2d').getImageData(0, 0, 280, 280).data));
  const input = [];
  for (let y = 0; y < 28; y++) {
    for (let x = 0; x < 28; x++) {
      let sum = 0;
      for (let dy = 0; dy < 10; dy++) for (let dx = 0; dx < 10; dx++) sum += pixels[((y * 10 + dy) * 280 + x * 10 + dx) * 4];
      input.push(sum / 100 / 255);
    }
  }
  // Drawn again: answered without the network.
  const before = requests.length;
  await page.getByTestId('clear-canvas').click();
  await drawOne(page);
  await until('a second prediction', async () => (await text(page, 'sandbox-status')) === '', 60000, 100);
  const later = requests.slice(before).filter((p) => p.startsWith('/api/') && p !== '/api/events');
  check(later.length === 0, `a second drawing asked the network: ${later}`);
  const weightFetches = requests.filter((p) => p === '/api/models/1/weights').length;
  check(weightFetches === 1, `the weights were fetched ${weightFetches} times`);
  return { predicted: Number(predicted), probabilities, input };
}

/// The market in the app (model 1, private, trained before the scenario
/// by its owner's workers): its owner lists it from the model page with
/// its wallet; a second account buys it from the same page and may then
/// download it; the purchase is in its library.
async function market() {
  const browser = await launch();
  browsers.push(browser);
  const owner = await signedInPage(browser, base, '/models/1', 'owner', CREATOR);
  await owner.getByTestId('sell').waitFor({ timeout: 60000 });
  await owner.getByTestId('sell-price').fill('0.25');
  await owner.getByTestId('sell-part').fill('30');
  await owner.getByTestId('list-model').click();
  await until('the listing to be seen', async () =>
    (await owner.getByTestId('listing').count()) > 0, 120000, 500);

  const buyer = await signedInPage(browser, base, '/models/1', 'buyer', CONTRIBUTOR);
  await buyer.getByTestId('buy').waitFor({ timeout: 60000 });
  const before = await buyer.evaluate(async () => (await fetch('/api/models/1/weights?format=safetensors')).status);
  check(before === 403, `the weights before buying: ${before}`);
  const price = await text(buyer, 'listing-price');
  await buyer.getByTestId('buy').click();
  const tx = await until('the purchase to be mined', async () =>
    (await buyer.getByTestId('tx-status').getAttribute('data-state').catch(() => null)) === 'confirmed'
      ? buyer.getByTestId('tx-hash').textContent() : null, 60000, 100);
  await until('the purchase to be seen', async () =>
    (await buyer.getByTestId('bought').count()) > 0, 120000, 500);
  await buyer.getByTestId('model-safetensors').waitFor({ timeout: 30000 });
  const after = await buyer.evaluate(async () => {
    const r = await fetch('/api/models/1/weights?format=safetensors');
    return { status: r.status, bytes: (await r.arrayBuffer()).byteLength };
  });
  check(after.status === 200 && after.bytes > 0, `the weights after buying: ${JSON.stringify(after)}`);
  await buyer.goto(base + '/library');
  await buyer.getByTestId('library-model-1').waitFor({ timeout: 30000 });
  return { price, tx, bytes: after.bytes };
}

const scenarios = {
  pool, inference, sandbox, market,
  'two-tabs': twoTabs, 'first-shard': firstShard, 'tab-closed': tabClosed, 'invalid-spec': invalidSpec, reconnect, paid, federated,
};
try {
  const run = scenarios[scenario];
  if (!run) throw new Error(`unknown scenario ${scenario}; one of ${Object.keys(scenarios).join(', ')}`);
  const result = await run();
  console.log('RESULT ' + JSON.stringify(result));
  for (const b of browsers) await b.close();
  process.exit(0);
} catch (e) {
  console.log(`FAILED ${scenario}: ${e.message}`);
  for (const b of browsers) await b.close().catch(() => {});
  process.exit(1);
}
