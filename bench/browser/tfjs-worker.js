// TensorFlow.js side of the in-tab benchmark: a classic dedicated Web
// Worker. The page posts one config and gets one reply:
//
//   in:  {task: 'train'|'infer', model: 'mlp'|'cnn'|'iris',
//         backend: 'cpu'|'wasm'|'webgpu', batch, warmup: <steps>, steps: <steps>}
//   out: {ok: true, samples_per_second, backend, steps, batch}
//        {ok: false, error}
//
// Training (the default task): Adam (lr 1e-3), softmax cross-entropy, on
// 256 synthetic samples cycled in batches. `warmup` steps are not timed;
// the clock stops after the last timed step's loss has been read back.
// Inference: each step uploads a batch of rows, runs the forward pass and
// the softmax, and reads the probabilities back, as our worker answers an
// inference lease; the figure is then rows a second.
'use strict';

const TFJS = '/node_modules/@tensorflow/tfjs/dist/tf.min.js';
const BACKEND_SCRIPTS = {
  wasm: '/node_modules/@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.min.js',
  webgpu: '/node_modules/@tensorflow/tfjs-backend-webgpu/dist/tf-backend-webgpu.min.js',
};
const WASM_DIR = '/node_modules/@tensorflow/tfjs-backend-wasm/dist/';

const SAMPLES = 256;
// Features and classes of each model's samples.
const SHAPES = {
  mlp: { features: 784, classes: 10 },
  cnn: { features: 784, classes: 10 },
  iris: { features: 4, classes: 3 },
};

// Deterministic data: feature k of sample s is ((i * 7919) % 255) / 255 with
// i = s * features + k; the label of sample s is s % classes.
function datasetValue(s, k, features) {
  const i = s * features + k;
  return ((i * 7919) % 255) / 255;
}

// Batches of `batch` samples cycling through the data set (wrapping around
// when `batch` does not divide it): [{rows, shape, x, y}] with the rows on
// the host, and x, y (one-hot float labels) as tensors.
function makeBatches(tf, model, batch) {
  const { features, classes } = SHAPES[model];
  const count = Math.max(1, Math.ceil(SAMPLES / batch));
  const batches = [];
  for (let b = 0; b < count; b++) {
    const rows = new Float32Array(batch * features);
    const labels = new Int32Array(batch);
    for (let j = 0; j < batch; j++) {
      const s = (b * batch + j) % SAMPLES;
      for (let k = 0; k < features; k++) rows[j * features + k] = datasetValue(s, k, features);
      labels[j] = s % classes;
    }
    const shape = model === 'cnn' ? [batch, 28, 28, 1] : [batch, features];
    const x = tf.tensor(rows, shape, 'float32');
    const y = tf.tidy(() => tf.oneHot(tf.tensor1d(labels, 'int32'), classes).toFloat());
    batches.push({ rows, shape, x, y });
  }
  return batches;
}

// Glorot-uniform weights from a fixed seed, zero biases.
function weight(tf, shape, fanIn, fanOut, seed) {
  const limit = Math.sqrt(6 / (fanIn + fanOut));
  return tf.variable(tf.randomUniform(shape, -limit, limit, 'float32', seed));
}

function bias(tf, n) {
  return tf.variable(tf.zeros([n]));
}

// Returns {forward(x) -> logits, variables}.
function buildModel(tf, model) {
  const { features, classes } = SHAPES[model] ?? {};
  if (model === 'mlp' || model === 'iris') {
    // mlp: 784 -> dense 128 relu -> dense 10; iris: 4 -> dense 16 relu -> dense 3
    const hidden = model === 'mlp' ? 128 : 16;
    const w1 = weight(tf, [features, hidden], features, hidden, 1);
    const b1 = bias(tf, hidden);
    const w2 = weight(tf, [hidden, classes], hidden, classes, 2);
    const b2 = bias(tf, classes);
    return {
      forward: (x) => tf.add(tf.matMul(tf.relu(tf.add(tf.matMul(x, w1), b1)), w2), b2),
      variables: [w1, b1, w2, b2],
    };
  }
  if (model === 'cnn') {
    // 28x28x1 -> conv 5x5x8 same, relu -> maxpool 2 -> conv 5x5x16 same,
    // relu -> maxpool 2 -> flatten 7*7*16 = 784 -> dense 10 (NHWC layout)
    const k1 = weight(tf, [5, 5, 1, 8], 5 * 5 * 1, 5 * 5 * 8, 1);
    const c1 = bias(tf, 8);
    const k2 = weight(tf, [5, 5, 8, 16], 5 * 5 * 8, 5 * 5 * 16, 2);
    const c2 = bias(tf, 16);
    const w = weight(tf, [7 * 7 * 16, classes], 7 * 7 * 16, classes, 3);
    const b = bias(tf, classes);
    return {
      forward: (x) => {
        let h = tf.relu(tf.add(tf.conv2d(x, k1, 1, 'same'), c1));
        h = tf.maxPool(h, 2, 2, 'valid');
        h = tf.relu(tf.add(tf.conv2d(h, k2, 1, 'same'), c2));
        h = tf.maxPool(h, 2, 2, 'valid');
        h = tf.reshape(h, [-1, 7 * 7 * 16]);
        return tf.add(tf.matMul(h, w), b);
      },
      variables: [k1, c1, k2, c2, w, b],
    };
  }
  throw new Error(`unknown model ${JSON.stringify(model)}`);
}

// tfjs-backend-wasm 4.22 registers no Conv2DBackpropFilter kernel, so conv2d
// cannot be trained on it as shipped. It does ship Conv3DBackpropFilterV2; a
// 2-D filter gradient is the 3-D one with a depth of 1, and that kernel only
// looks at shapes and data ids, so it runs on the 4-D buffers as they are.
function supplyWasmConv2DBackpropFilter(tf) {
  if (tf.getKernel('Conv2DBackpropFilter', 'wasm')) return;
  tf.registerKernel({
    kernelName: 'Conv2DBackpropFilter',
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x, dy } = inputs;
      const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs;
      // Only what the benchmark needs: checked against the cpu backend for
      // stride 1 (strided results did not match, so they are refused).
      const [sh, sw] = Array.isArray(strides) ? strides : [strides, strides];
      if ((dataFormat && dataFormat !== 'NHWC') || dimRoundingMode != null
          || (pad !== 'same' && pad !== 'valid') || sh !== 1 || sw !== 1) {
        throw new Error('Conv2DBackpropFilter (wasm): only NHWC, stride 1, same/valid padding');
      }
      const to5d = (t) => ({ dataId: t.dataId, dtype: t.dtype, shape: [t.shape[0], 1, ...t.shape.slice(1)] });
      const dw = tf.getKernel('Conv3DBackpropFilterV2', 'wasm').kernelFunc({
        inputs: { x: to5d(x), dy: to5d(dy) },
        backend,
        attrs: { strides: [1, sh, sw], pad, filterShape: [1, ...filterShape] },
      });
      return { dataId: dw.dataId, dtype: dw.dtype, shape: filterShape };
    },
  });
}

async function selectBackend(backend) {
  if (!['cpu', 'wasm', 'webgpu'].includes(backend)) {
    throw new Error(`unknown backend ${JSON.stringify(backend)}`);
  }
  importScripts(TFJS);
  if (BACKEND_SCRIPTS[backend]) importScripts(BACKEND_SCRIPTS[backend]);
  const tf = self.tf;
  if (backend === 'wasm') {
    tf.wasm.setWasmPaths(WASM_DIR);
    supplyWasmConv2DBackpropFilter(tf);
  }
  if (backend === 'webgpu' && !(self.navigator && self.navigator.gpu)) {
    throw new Error('navigator.gpu is not available in this worker');
  }
  // setBackend resolves to false (and logs) when initialisation fails.
  const ok = await tf.setBackend(backend);
  await tf.ready();
  if (!ok || tf.getBackend() !== backend) {
    throw new Error(`could not initialise tfjs backend ${backend} (got ${tf.getBackend()})`);
  }
  return tf;
}

async function run(config) {
  const { model, backend } = config;
  const task = config.task ?? 'train';
  if (!SHAPES[model]) throw new Error(`unknown model ${JSON.stringify(model)}`);
  if (!['train', 'infer'].includes(task)) throw new Error(`unknown task ${JSON.stringify(task)}`);
  const batch = Number(config.batch);
  const warmup = Number(config.warmup);
  const steps = Number(config.steps);
  if (!(batch >= 1) || !(warmup >= 0) || !(steps >= 1)) {
    throw new Error('batch and steps must be >= 1, warmup >= 0');
  }
  const tf = await selectBackend(backend);
  const net = buildModel(tf, model);
  const batches = makeBatches(tf, model, batch);
  const optimizer = tf.train.adam(1e-3);
  let cursor = 0;

  // One Adam step; returns the loss tensor only when asked.
  const step = (returnLoss) => {
    const { x, y } = batches[cursor];
    cursor = (cursor + 1) % batches.length;
    return optimizer.minimize(
      () => tf.losses.softmaxCrossEntropy(y, net.forward(x)),
      returnLoss,
      net.variables,
    );
  };
  // Runs `n` steps and waits until the last one has finished on the device.
  const train = async (n) => {
    for (let i = 0; i < n; i++) {
      const loss = step(i === n - 1);
      if (loss) {
        const value = (await loss.data())[0];
        loss.dispose();
        if (!Number.isFinite(value)) throw new Error(`loss is ${value}`);
      }
    }
  };

  // Runs `n` forward passes, each over rows uploaded afresh, and reads
  // every batch's probabilities back.
  const infer = async (n) => {
    for (let i = 0; i < n; i++) {
      const { rows, shape } = batches[cursor];
      cursor = (cursor + 1) % batches.length;
      const probabilities = tf.tidy(() => tf.softmax(net.forward(tf.tensor(rows, shape, 'float32'))));
      await probabilities.data();
      probabilities.dispose();
    }
  };
  const work = task === 'infer' ? infer : train;

  await work(warmup);
  const t0 = performance.now();
  await work(steps);
  const seconds = (performance.now() - t0) / 1000;
  return {
    ok: true,
    samples_per_second: (steps * batch) / seconds,
    backend: tf.getBackend(),
    steps,
    batch,
  };
}

let started = false;
self.onmessage = async (event) => {
  if (started) {
    self.postMessage({ ok: false, error: 'this worker runs one benchmark; start a new one' });
    return;
  }
  started = true;
  let reply;
  try {
    reply = await run(event.data || {});
  } catch (e) {
    reply = { ok: false, error: String(e && e.message !== undefined ? e.message : e) };
  }
  self.postMessage(reply);
};
