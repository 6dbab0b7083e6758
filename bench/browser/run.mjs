// In-tab benchmark driver: TensorFlow.js against our engine, both in a
// dedicated Web Worker of headless Chromium, same models, same data,
// training (samples/s) or, with --task infer, inference (rows/s).
//
// Usage: node bench/browser/run.mjs [--task train|infer] [--repeats N] [--quick]
//                                   [--only tfjs|ours]
//                                   [--models mlp,cnn,iris] [--json FILE]
//                                   [--timeout SECONDS] [--isolated]
//                                   [--warmup N] [--steps N] [--ours-worker PATH]
//                                   [--pool N] [--backends cpu,wasm,webgpu]
//                                   [--ours-dist DIR] [--batch N]
//
// Serves the repository root over HTTP (so /node_modules/..., /bench/browser/...
// and /dist/... are reachable), opens bench/browser/bench.html and runs every
// configuration --repeats times, each run in a fresh Worker; prints a markdown
// table of median samples/s (rows/s for inference). Our rows use /bench/browser/ours-worker.js (or
// the --ours-worker path from the repository root): a module worker speaking
// the protocol described in tfjs-worker.js, with backends 'cpu' and 'webgpu',
// over the browser worker built into dist/ (`cargo xtask web`).
// --isolated serves COOP/COEP headers (cross-origin isolation); --warmup and
// --steps override the per-row step counts (see stepCounts) for every row.
// --pool N adds rows for a pool of N workers training at once, as the
// Contribute page runs one per core: ours on the CPU, and tfjs wasm alike;
// a pool's figure is all its workers' timed samples over the span of their
// timed steps (see runPool in bench.html). --backends keeps only the rows
// of those backends (ours has cpu and webgpu). --ours-dist takes our worker
// from another build than /dist (a path from the repository root), such as
// the kernel comparison's (see README.md beside this file). --task infer
// times forward passes of 256 rows, each batch's probabilities read back
// as a worker answers an inference lease; its default models are cnn, mlp
// and iris (an MLP 4-16-3), as `cargo xtask inference-bench` has them.
// --batch overrides the batch size (64 training, 256 inference).
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const TFJS_WORKER = '/bench/browser/tfjs-worker.js';
const DEFAULT_OURS_WORKER = '/bench/browser/ours-worker.js';

function usage(message) {
  if (message) console.error(message);
  console.error('usage: node bench/browser/run.mjs [--task train|infer] [--repeats N] [--quick] [--only tfjs|ours]'
    + ' [--models mlp,cnn,iris] [--json FILE] [--timeout SECONDS] [--isolated] [--warmup N] [--steps N] [--ours-worker PATH]'
    + ' [--pool N] [--backends cpu,wasm,webgpu] [--ours-dist DIR] [--batch N]');
  process.exit(2);
}

function parseArgs(argv) {
  const opts = {
    task: 'train', repeats: 3, quick: false, only: null, models: null, json: null,
    timeoutS: null, isolated: false, warmup: null, steps: null, oursWorker: DEFAULT_OURS_WORKER,
    pool: 0, backends: ['cpu', 'wasm', 'webgpu'], oursDist: '/dist', batch: null,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--task') {
      opts.task = value();
      if (!['train', 'infer'].includes(opts.task)) usage('--task takes train or infer');
    } else if (a === '--repeats') {
      opts.repeats = Number(value());
      if (!Number.isInteger(opts.repeats) || opts.repeats < 1) usage('--repeats must be >= 1');
    } else if (a === '--batch') {
      opts.batch = Number(value());
      if (!Number.isInteger(opts.batch) || opts.batch < 1) usage('--batch must be >= 1');
    } else if (a === '--pool') {
      opts.pool = Number(value());
      if (!Number.isInteger(opts.pool) || opts.pool < 2) usage('--pool must be >= 2');
    } else if (a === '--backends') {
      opts.backends = value().split(',').filter(Boolean);
      for (const b of opts.backends) if (!['cpu', 'wasm', 'webgpu'].includes(b)) usage(`unknown backend ${b}`);
    } else if (a === '--quick') opts.quick = true;
    else if (a === '--only') {
      opts.only = value();
      if (!['tfjs', 'ours'].includes(opts.only)) usage('--only takes tfjs or ours');
    } else if (a === '--models') {
      opts.models = value().split(',').filter(Boolean);
      for (const m of opts.models) if (!['mlp', 'cnn', 'iris'].includes(m)) usage(`unknown model ${m}`);
    } else if (a === '--json') opts.json = value();
    else if (a === '--timeout') {
      opts.timeoutS = Number(value());
      if (!(opts.timeoutS > 0)) usage('--timeout must be > 0');
    } else if (a === '--isolated') opts.isolated = true;
    else if (a === '--ours-worker') {
      opts.oursWorker = value();
      if (!opts.oursWorker.startsWith('/')) usage('--ours-worker takes a path from the repository root, like /dist/bench-worker.js');
    }
    else if (a === '--ours-dist') {
      opts.oursDist = value().replace(/\/+$/, '');
      if (!opts.oursDist.startsWith('/')) usage('--ours-dist takes a path from the repository root, like /dist-bench/ndarray');
    }
    else if (a === '--warmup' || a === '--steps') {
      const n = Number(value());
      if (!Number.isInteger(n) || n < (a === '--steps' ? 1 : 0)) usage(`bad ${a}`);
      opts[a.slice(2)] = n;
    }
    else if (a === '--help' || a === '-h') usage();
    else usage(`unknown argument ${a}`);
  }
  opts.models ??= opts.task === 'infer' ? ['cnn', 'mlp', 'iris'] : ['mlp', 'cnn'];
  return opts;
}

// Warmup/timed steps per row. WebGPU runs on SwiftShader (software) here,
// hence the far smaller counts; tfjs's plain-JS cpu backend trains the cnn at
// a few dozen samples/s and only serves as a reference, so it gets fewer too.
// Inference counts batches of 256 rows: more of them for the small models,
// whose batches take well under a millisecond.
function stepCounts(framework, model, backend, opts) {
  const gpu = backend === 'webgpu';
  const cnn = model === 'cnn';
  let c;
  if (opts.task === 'infer') {
    if (opts.quick) c = gpu ? { warmup: 1, steps: 2 } : { warmup: 2, steps: cnn ? 4 : 20 };
    else if (gpu) c = { warmup: 2, steps: cnn ? 4 : 10 };
    else if (framework === 'tfjs' && backend === 'cpu' && cnn) c = { warmup: 1, steps: 4 };
    else c = { warmup: 5, steps: cnn ? 20 : model === 'mlp' ? 100 : 200 };
  } else if (opts.quick) {
    if (gpu) c = { warmup: 1, steps: 2 };
    else c = model === 'mlp' ? { warmup: 3, steps: 20 } : { warmup: 2, steps: 5 };
  } else if (gpu) c = { warmup: 3, steps: model === 'mlp' ? 10 : 5 };
  else if (framework === 'tfjs' && backend === 'cpu' && model === 'cnn') c = { warmup: 3, steps: 15 };
  else c = { warmup: 20, steps: model === 'mlp' ? 200 : 50 };
  return { warmup: opts.warmup ?? c.warmup, steps: opts.steps ?? c.steps };
}

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

// Static file server rooted at the repository; resolves to {server, origin}.
function serve(root, isolated) {
  const server = http.createServer((req, res) => {
    const headers = { 'Cache-Control': 'no-store' };
    if (isolated) {
      headers['Cross-Origin-Opener-Policy'] = 'same-origin';
      headers['Cross-Origin-Embedder-Policy'] = 'require-corp';
      headers['Cross-Origin-Resource-Policy'] = 'same-origin';
    }
    const fail = (code, text) => {
      res.writeHead(code, { ...headers, 'Content-Type': 'text/plain; charset=utf-8' });
      res.end(text);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return fail(405, 'method not allowed');
    let rel;
    try {
      rel = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    } catch {
      return fail(400, 'bad path');
    }
    const file = path.resolve(root, '.' + rel);
    if (file !== root && !file.startsWith(root + path.sep)) return fail(403, 'outside the root');
    fs.stat(file, (err, st) => {
      if (err || !st.isFile()) return fail(404, 'not found');
      res.writeHead(200, {
        ...headers,
        'Content-Type': MIME[path.extname(file).toLowerCase()] ?? 'application/octet-stream',
        'Content-Length': st.size,
      });
      if (req.method === 'HEAD') return res.end();
      fs.createReadStream(file).pipe(res);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      resolve({ server, origin: `http://127.0.0.1:${server.address().port}` });
    });
  });
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function fmt(x) {
  if (x == null || !Number.isFinite(x)) return '—';
  return x >= 100 ? Math.round(x).toLocaleString('en-US') : x.toPrecision(3);
}

function fmtRatio(x) {
  return x == null || !Number.isFinite(x) ? '—' : `${x.toFixed(2)}x`;
}

const opts = parseArgs(process.argv.slice(2));
// The worker script learns which build to load from its URL's query: the
// one with WebGPU where the directory has it, else the CPU build.
const oursModule = ['oblivion-worker-wasm', 'oblivion-worker-cpu']
  .find((m) => fs.existsSync(path.join(ROOT, opts.oursDist, `${m}_loader.js`)));
const OURS_WORKER = `${opts.oursWorker}?dist=${encodeURIComponent(opts.oursDist)}&module=${oursModule}`;
const oursBuilt = fs.existsSync(path.join(ROOT, opts.oursWorker)) && oursModule !== undefined;
const notes = [];

const configs = [];
for (const model of opts.models) {
  if (opts.only !== 'ours') {
    for (const backend of ['cpu', 'wasm', 'webgpu']) {
      configs.push({ model, framework: 'tfjs', backend, worker: TFJS_WORKER, module: false, pool: 1 });
    }
    if (opts.pool) {
      configs.push({ model, framework: 'tfjs', backend: 'wasm', worker: TFJS_WORKER, module: false, pool: opts.pool });
    }
  }
  if (opts.only !== 'tfjs' && oursBuilt) {
    for (const backend of ['cpu', 'webgpu']) {
      configs.push({ model, framework: 'ours', backend, worker: OURS_WORKER, module: true, pool: 1 });
    }
    if (opts.pool) {
      configs.push({ model, framework: 'ours', backend: 'cpu', worker: OURS_WORKER, module: true, pool: opts.pool });
    }
  }
}
if (opts.only !== 'tfjs' && !oursBuilt) {
  notes.push(`ours rows skipped: ${opts.oursWorker} or ${opts.oursDist}/ not found (build the browser side first)`);
}
configs.splice(0, configs.length, ...configs.filter((c) => opts.backends.includes(c.backend)));
if (configs.length === 0) {
  for (const n of notes) console.log(`Note: ${n}`);
  console.error('nothing to run');
  process.exit(1);
}

const unit = opts.task === 'infer' ? 'rows/s' : 'samples/s';
const { server, origin } = await serve(ROOT, opts.isolated);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--enable-unsafe-webgpu'],
});

const browserVersion = browser.version();
const results = [];
try {
  const page = await browser.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') console.error(`page ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => console.error(`page error: ${e.message}`));
  await page.goto(`${origin}/bench/browser/bench.html`);

  for (const c of configs) {
    const { warmup, steps } = stepCounts(c.framework, c.model, c.backend, opts);
    const defaultTimeoutS = c.backend === 'webgpu' ? 600 : 300;
    const timeout_ms = Math.round((opts.timeoutS ?? (opts.quick ? 120 : defaultTimeoutS)) * 1000);
    const batch = opts.batch ?? (opts.task === 'infer' ? 256 : 64);
    const config = { task: opts.task, model: c.model, backend: c.backend, batch, warmup, steps, timeout_ms };
    const row = { ...c, config, runs: [], actual_backend: null, median: null, error: null };
    for (let r = 0; r < opts.repeats && !row.error; r++) {
      const label = `${c.model} ${c.framework} ${c.backend}${c.pool > 1 ? ` pool ${c.pool}` : ''}`
        + ` run ${r + 1}/${opts.repeats}`;
      const t0 = Date.now();
      try {
        const reply = await page.evaluate(
          ([url, cfg, isModule, n]) => window.runPool(url, cfg, isModule, n),
          [c.worker, config, c.module, c.pool]);
        if (!reply || reply.ok !== true) {
          throw new Error(reply && reply.error ? reply.error : `bad reply ${JSON.stringify(reply)}`);
        }
        if (!(reply.samples_per_second > 0)) throw new Error(`bad samples_per_second in ${JSON.stringify(reply)}`);
        row.runs.push(reply.samples_per_second);
        row.actual_backend = reply.backend;
        console.error(`${label}: ${fmt(reply.samples_per_second)} ${unit}`
          + ` (backend ${reply.backend}, ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
      } catch (e) {
        row.error = String(e && e.message !== undefined ? e.message : e).split('\n')[0];
        console.error(`${label}: FAILED: ${row.error}`);
      }
    }
    if (!row.error) row.median = median(row.runs);
    results.push(row);
  }
} finally {
  await browser.close();
  server.close();
}

const find = (model, framework, backend, pool = 1) => results.find((r) => r.model === model
  && r.framework === framework && r.backend === backend && r.pool === pool);
const ratio = (a, b) => (a && b && a.median && b.median ? a.median / b.median : null);

console.log(`| model | framework, backend | ${unit} (median of ${opts.repeats}) | vs tfjs wasm |`);
console.log('| --- | --- | ---: | ---: |');
for (const r of results) {
  const value = r.error ? `failed: ${r.error.replace(/\|/g, '\\|')}` : fmt(r.median);
  const actual = r.actual_backend && r.actual_backend !== r.backend ? ` (ran on ${r.actual_backend})` : '';
  const pooled = r.pool > 1 ? `, pool of ${r.pool}` : '';
  const base = find(r.model, 'tfjs', 'wasm');
  console.log(`| ${r.model} | ${r.framework} ${r.backend}${pooled}${actual} | ${value} | ${fmtRatio(ratio(r, base))} |`);
}
console.log('');

const ratios = {};
for (const model of opts.models) {
  const cpu = ratio(find(model, 'ours', 'cpu'), find(model, 'tfjs', 'wasm'));
  const gpu = ratio(find(model, 'ours', 'webgpu'), find(model, 'tfjs', 'webgpu'));
  ratios[model] = { ours_cpu_over_tfjs_wasm: cpu, ours_webgpu_over_tfjs_webgpu: gpu };
  if (find(model, 'ours', 'cpu') || find(model, 'ours', 'webgpu')) {
    console.log(`${model}: ours cpu / tfjs wasm = ${fmtRatio(cpu)};`
      + ` ours webgpu / tfjs webgpu = ${fmtRatio(gpu)}`);
  }
  if (opts.pool) {
    const ours = find(model, 'ours', 'cpu', opts.pool);
    const pool = ratio(ours, find(model, 'tfjs', 'wasm'));
    const alike = ratio(ours, find(model, 'tfjs', 'wasm', opts.pool));
    const scaling = ratio(ours, find(model, 'ours', 'cpu'));
    Object.assign(ratios[model], {
      ours_pool_over_tfjs_wasm: pool, ours_pool_over_tfjs_wasm_pool: alike, ours_pool_over_ours_cpu: scaling,
    });
    console.log(`${model}: ours cpu pool of ${opts.pool} / tfjs wasm = ${fmtRatio(pool)};`
      + ` / tfjs wasm pool of ${opts.pool} = ${fmtRatio(alike)}; / ours cpu = ${fmtRatio(scaling)}`);
  }
}
if (opts.task === 'train' && find('cnn', 'tfjs', 'wasm')) {
  notes.push('tfjs-backend-wasm 4.22 has no Conv2DBackpropFilter kernel; tfjs-worker.js supplies it'
    + ' from the wasm backend\'s own Conv3DBackpropFilterV2 (depth 1), so tfjs wasm can train the cnn');
}
for (const n of notes) console.log(`Note: ${n}`);
const batch = opts.batch ?? (opts.task === 'infer' ? 256 : 64);
const work = opts.task === 'infer'
  ? `inference in batches of ${batch} rows, each read back` : `batch ${batch}, Adam 1e-3`;
console.log(`Note: webgpu is SwiftShader (software) here; ${work},`
  + ` ${opts.quick ? 'quick step counts' : 'warmup/steps per row in the JSON output'}.`);

if (opts.json) {
  const out = {
    date: new Date().toISOString(),
    browser: `chromium ${browserVersion}`,
    options: opts,
    notes,
    results: results.map((r) => ({
      task: opts.task, model: r.model, framework: r.framework, backend: r.backend, pool: r.pool,
      actual_backend: r.actual_backend, worker: r.worker, module: r.module,
      batch: r.config.batch, warmup: r.config.warmup, steps: r.config.steps,
      runs: r.runs, median_samples_per_second: r.median, error: r.error,
    })),
    ratios,
  };
  fs.writeFileSync(opts.json, JSON.stringify(out, null, 2) + '\n');
  console.error(`wrote ${opts.json}`);
}

process.exitCode = results.some((r) => r.error) ? 1 : 0;
