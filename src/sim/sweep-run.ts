/**
 * Running a sweep: the output directory, the worker pool, resuming.
 *
 *   DIR/sweep.json          the manifest: grid hash, the validated grid, the point ids
 *   DIR/points/<id>.json    one record per finished point (written atomically: temp + rename)
 *   DIR/results.json        when every point of the grid has a record: the results document,
 *   DIR/results.csv         one CSV row per point,
 *   DIR/results.svg         and the chart (sweep.ts)
 *
 * A point whose record exists and is valid is not run again, so an interrupted sweep
 * resumes where it stopped, and shards of one sweep may share a directory. Points run on
 * `jobs` worker threads (default `os.availableParallelism()`); each reply is written as it
 * arrives. `jobs: 0` runs them on the calling thread (debugging, profiling).
 */

import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import type { RunResult } from "./runner.js";
import {
  assembleSweep,
  expandGrid,
  gridHash,
  type PointRecord,
  pointRecord,
  pointRecordProblem,
  runPoint,
  type Shard,
  SWEEP_SCHEMA_VERSION,
  type SweepConfig,
  type SweepPoint,
  type SweepResults,
  shardOf,
  sweepCsv,
  sweepSvg,
} from "./sweep.js";

/** An output directory that cannot be used for this sweep (another grid's, unreadable). */
export class SweepDirError extends Error {
  override name = "SweepDirError";
}

export interface SweepManifest {
  schemaVersion: typeof SWEEP_SCHEMA_VERSION;
  kind: "vmmu-sweep-manifest";
  grid: string;
  config: SweepConfig;
  points: string[];
}

export type PointEvent =
  | { status: "skipped"; id: string }
  | { status: "invalid"; id: string; reason: string }
  | { status: "done"; id: string; ms: number }
  | { status: "failed"; id: string; error: string };

export interface SweepRunOptions {
  /** The output directory (created when missing). */
  out: string;
  /** Worker threads (default `os.availableParallelism()`); 0 = run on this thread. */
  jobs?: number;
  /** Run only this shard's points. */
  shard?: Shard;
  /** Each point as it is skipped (valid record found), found invalid, done or failed. */
  onPoint?: (e: PointEvent, progress: { finished: number; todo: number }) => void;
  /** Stops the sweep: running points are abandoned, finished ones are kept. */
  signal?: AbortSignal;
}

export interface SweepRunSummary {
  grid: string;
  /** Points of the grid, and of this run (the shard). */
  total: number;
  selected: number;
  skipped: number;
  ran: number;
  failed: { id: string; error: string }[];
  interrupted: boolean;
  /** Every record in the directory, assembled (complete when `results.complete === results.total`). */
  results: SweepResults;
  /** Whether results.json, results.csv and results.svg were written (the grid is complete). */
  wroteResults: boolean;
}

/** Writes `text` to `file` atomically: a temporary file in the same directory, then rename. */
export function writeFileAtomic(file: string, text: string): void {
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2, 10)}.tmp`;
  try {
    writeFileSync(tmp, text);
    renameSync(tmp, file);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {}
    throw e;
  }
}

export const pointsDir = (dir: string) => join(dir, "points");
export const pointFile = (dir: string, id: string) => join(dir, "points", `${id}.json`);

/** Reads a point's record: the record, or why there is no valid one (null: no file). */
export function readPointRecord(
  dir: string,
  point: SweepPoint,
): { record: PointRecord } | { invalid: string } | null {
  const file = pointFile(dir, point.id);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    return { invalid: (e as Error).message };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { invalid: "not valid JSON" };
  }
  const problem = pointRecordProblem(value, point);
  return problem ? { invalid: problem } : { record: value as PointRecord };
}

/** Reads a directory's manifest (null when there is none). */
export function readManifest(dir: string): SweepManifest | null {
  const file = join(dir, "sweep.json");
  if (!existsSync(file)) return null;
  let m: SweepManifest;
  try {
    m = JSON.parse(readFileSync(file, "utf8")) as SweepManifest;
  } catch (e) {
    throw new SweepDirError(`${file}: cannot read the manifest (${(e as Error).message})`);
  }
  if (m?.kind !== "vmmu-sweep-manifest" || typeof m.grid !== "string" || !Array.isArray(m.points))
    throw new SweepDirError(`${file} is not a vmmu sweep manifest`);
  return m;
}

/** The results of every valid record in `dir` for `points`. */
export function collectRecords(dir: string, points: readonly SweepPoint[]): Map<string, PointRecord> {
  const records = new Map<string, PointRecord>();
  for (const p of points) {
    const r = readPointRecord(dir, p);
    if (r && "record" in r) records.set(p.id, r.record);
  }
  return records;
}

/** Writes results.json, results.csv and results.svg into `dir`. */
export function writeResults(dir: string, r: SweepResults): void {
  writeFileAtomic(join(dir, "results.json"), `${JSON.stringify(r, null, 2)}\n`);
  writeFileAtomic(join(dir, "results.csv"), sweepCsv(r));
  writeFileAtomic(join(dir, "results.svg"), sweepSvg(r));
}

/** How a worker thread is started: compiled JavaScript directly, TypeScript sources through tsx. */
function startWorker(): Worker {
  const self = import.meta.url;
  if (self.endsWith(".ts")) {
    // Development and tests (sources run through tsx or vitest): load the worker with tsx's
    // loader, resolved from this package's dependencies.
    const target = new URL("./sweep-worker.ts", self).href;
    let api = "tsx/esm/api";
    try {
      const resolver = (import.meta as { resolve?: (s: string) => string }).resolve;
      if (typeof resolver === "function") api = resolver("tsx/esm/api");
      else
        api = pathToFileURL(
          join(dirname(createRequire(self).resolve("tsx/package.json")), "dist/esm/api/index.mjs"),
        ).href;
    } catch {}
    const code = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(target)}); });`;
    return new Worker(code, { eval: true });
  }
  return new Worker(new URL("./sweep-worker.js", self));
}

interface Reply {
  id: string;
  ok: boolean;
  result?: RunResult;
  error?: string;
  ms?: number;
}

/** Runs `todo` on `jobs` workers; `settle` receives each reply as it comes. */
async function runPool(
  todo: SweepPoint[],
  jobs: number,
  settle: (p: SweepPoint, r: Reply) => void,
  signal: AbortSignal | undefined,
): Promise<boolean> {
  if (jobs === 0) {
    for (const p of todo) {
      if (signal?.aborted) return true;
      const t0 = performance.now();
      try {
        settle(p, { id: p.id, ok: true, result: runPoint(p.params), ms: performance.now() - t0 });
      } catch (e) {
        settle(p, { id: p.id, ok: false, error: e instanceof Error ? e.message : String(e) });
      }
      // Let an abort (SIGINT) through between points.
      await new Promise((r) => setImmediate(r));
    }
    return false;
  }
  let next = 0;
  const workers = new Set<Worker>();
  return new Promise<boolean>((resolve) => {
    let finished = false;
    const finish = (interrupted: boolean) => {
      if (finished) return;
      finished = true;
      signal?.removeEventListener("abort", onAbort);
      Promise.all([...workers].map((w) => w.terminate())).then(() => resolve(interrupted));
    };
    const onAbort = () => finish(true);
    signal?.addEventListener("abort", onAbort);
    let running = 0;
    const feed = (w: Worker, current: { p: SweepPoint | null }) => {
      if (finished) return;
      if (next >= todo.length) {
        current.p = null;
        workers.delete(w);
        void w.terminate();
        if (running === 0) finish(false);
        return;
      }
      const p = todo[next++];
      current.p = p;
      running++;
      w.postMessage({ id: p.id, params: p.params });
    };
    const spawn = () => {
      const w = startWorker();
      const current: { p: SweepPoint | null } = { p: null };
      workers.add(w);
      w.on("message", (r: Reply) => {
        const p = current.p;
        if (!p || finished) return;
        running--;
        settle(p, r);
        feed(w, current);
      });
      w.on("error", (e) => {
        // The worker died (out of memory, a crash): its point failed; carry on with a new one.
        workers.delete(w);
        const p = current.p;
        current.p = null;
        if (p && !finished) {
          running--;
          settle(p, { id: p.id, ok: false, error: `worker died: ${e.message}` });
          if (next < todo.length) spawn();
          else if (running === 0) finish(false);
        }
      });
      feed(w, current);
    };
    if (todo.length === 0) finish(false);
    else for (let i = 0; i < Math.min(jobs, todo.length); i++) spawn();
  });
}

/** Runs (or resumes) a sweep into `o.out`; see the file comment. */
export async function runSweep(config: SweepConfig, o: SweepRunOptions): Promise<SweepRunSummary> {
  const points = expandGrid(config);
  const grid = gridHash(points);
  const dir = o.out;
  const old = readManifest(dir);
  if (old && old.grid !== grid)
    throw new SweepDirError(
      `${dir} holds another sweep (grid ${old.grid}, ${old.points.length} points; this grid is ${grid}, ${points.length} points): use another --out`,
    );
  mkdirSync(pointsDir(dir), { recursive: true });
  const manifest: SweepManifest = {
    schemaVersion: SWEEP_SCHEMA_VERSION,
    kind: "vmmu-sweep-manifest",
    grid,
    config,
    points: points.map((p) => p.id),
  };
  writeFileAtomic(join(dir, "sweep.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  // Leftover temporary files of an interrupted run.
  for (const f of readdirSync(pointsDir(dir)))
    if (f.endsWith(".tmp"))
      try {
        unlinkSync(join(pointsDir(dir), f));
      } catch {}

  const selected = shardOf(points, o.shard);
  const todo: SweepPoint[] = [];
  let finished = 0;
  let skipped = 0;
  for (const p of selected) {
    const r = readPointRecord(dir, p);
    if (r && "record" in r) {
      skipped++;
      o.onPoint?.({ status: "skipped", id: p.id }, { finished: ++finished, todo: selected.length });
    } else {
      if (r)
        o.onPoint?.({ status: "invalid", id: p.id, reason: r.invalid }, { finished, todo: selected.length });
      todo.push(p);
    }
  }
  const failed: { id: string; error: string }[] = [];
  let ran = 0;
  const jobs = o.jobs ?? availableParallelism();
  if (!Number.isInteger(jobs) || jobs < 0) throw new RangeError(`jobs ${jobs} is not a non-negative integer`);
  const interrupted = await runPool(
    todo,
    jobs,
    (p, r) => {
      finished++;
      if (r.ok && r.result) {
        writeFileAtomic(pointFile(dir, p.id), `${JSON.stringify(pointRecord(p, r.result))}\n`);
        ran++;
        o.onPoint?.({ status: "done", id: p.id, ms: r.ms ?? 0 }, { finished, todo: selected.length });
      } else {
        const error = r.error ?? "no result";
        failed.push({ id: p.id, error });
        o.onPoint?.({ status: "failed", id: p.id, error }, { finished, todo: selected.length });
      }
    },
    o.signal,
  );
  const results = assembleSweep(config, points, collectRecords(dir, points));
  const wroteResults = results.complete === results.total;
  if (wroteResults) writeResults(dir, results);
  return {
    grid,
    total: points.length,
    selected: selected.length,
    skipped,
    ran,
    failed,
    interrupted,
    results,
    wroteResults,
  };
}
