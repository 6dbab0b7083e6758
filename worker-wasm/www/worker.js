// Dedicated Web Worker hosting the Oblivion browser worker (wasm).
import init, { run_worker } from './oblivion_worker_wasm.js';

self.onmessage = async (event) => {
  const { coordinator, name, payout } = event.data;
  try {
    await init();
    await run_worker(coordinator, name, payout ?? null);
  } catch (e) {
    self.postMessage(JSON.stringify({ type: 'stopped', reason: String(e) }));
  }
};
