// The benchmark protocol ({task, model, backend, batch, warmup, steps} in,
// one {ok, samples_per_second, ...} out; the task is 'train' or 'infer') over the browser worker's own `bench`
// command: the same wasm module the Contribute page runs, built into dist/
// (or the build that the query's `dist` and `module` name, such as the CPU
// build in /dist-bench/ndarray).
const MODELS = {
  mlp: { model: { kind: 'mlp', hidden: [128] }, input_shape: [784], classes: 10 },
  cnn: { model: { kind: 'cnn', channels: [8, 16], kernel_size: 5, hidden: [] }, input_shape: [1, 28, 28], classes: 10 },
  iris: { model: { kind: 'mlp', hidden: [16] }, input_shape: [4], classes: 3 },
};

const post = self.postMessage.bind(self);
let request = null;
let ready = false;

function send() {
  const { model, backend, batch, warmup, steps } = request;
  const task = request.task ?? 'train';
  const m = MODELS[model];
  if (!m) return post({ ok: false, error: `unknown model ${model}` });
  const command = { type: 'bench', task, ...m, backend, batch, warmup, steps };
  self.onmessage({ data: JSON.stringify(command) });
}

// The module reports to its page with postMessage(JSON text): translate.
self.postMessage = (message) => {
  const report = JSON.parse(message);
  if (report.type === 'ready') {
    ready = true;
    if (request) send();
  } else if (report.type === 'bench_result') {
    post(report.samples_per_second != null
      ? { ok: true, samples_per_second: report.samples_per_second, backend: report.backend, steps: request.steps, batch: request.batch }
      : { ok: false, error: report.error });
  } else if (report.type === 'panic') {
    post({ ok: false, error: `panic: ${report.message}` });
  }
};

self.addEventListener('message', (e) => {
  if (typeof e.data === 'object' && e.data && e.data.model) {
    request = e.data;
    if (ready) send();
  }
});

const query = new URL(import.meta.url).searchParams;
const dist = query.get('dist') ?? '/dist';
const module = query.get('module') ?? 'oblivion-worker-wasm';
await import(`${dist}/${module}_loader.js`);
