/**
 * A sweep worker thread: receives points ({ id, params }), runs each with `runPoint` and
 * posts back { id, ok, result, ms } or { id, ok: false, error }. One point at a time; the
 * pool in sweep-run.ts decides what runs where, the results do not depend on it.
 */

import { parentPort } from "node:worker_threads";
import { type PointParams, runPoint } from "./sweep.js";

export interface WorkerRequest {
  id: string;
  params: PointParams;
}

if (parentPort) {
  const port = parentPort;
  port.on("message", (m: WorkerRequest) => {
    const t0 = performance.now();
    try {
      const result = runPoint(m.params);
      port.postMessage({ id: m.id, ok: true, result, ms: performance.now() - t0 });
    } catch (e) {
      port.postMessage({ id: m.id, ok: false, error: e instanceof Error ? e.message : String(e) });
    }
  });
}
