/**
 * The benchmark harness: what a benchmark file exports, what the runner gives it, and the
 * helpers for the C counterparts (compile with gcc -O2 into bench/build/, run, parse JSON).
 *
 * A benchmark is a file `bench/<name>.bench.ts` whose default export is a `Benchmark`.
 * Its optional C counterpart lives in `bench/c/` and is compiled through `ctx.compileC`.
 */

import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import { cpus } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const BENCH_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const BUILD_DIR = join(BENCH_DIR, "build");
export const RESULTS_DIR = join(BENCH_DIR, "results");

export interface BenchContext {
  /** Smaller workloads and fewer repetitions (a smoke run of the benchmark code, not a measurement). */
  quick: boolean;
  /** Progress output (stderr, so stdout stays clean). */
  log(msg: string): void;
  /**
   * Compiles `bench/c/<source>` with CFLAGS (-O2) plus `defines` (e.g. "-DFOO") into
   * bench/build/<name>; returns the executable's path.
   */
  compileC(source: string, name?: string, defines?: string[]): string;
  /** Runs an executable and parses the JSON it prints on stdout. */
  runC<T = unknown>(exe: string, args: string[]): T;
}

/** One named figure of a benchmark result; `unit` says what `value` counts. */
export interface Metric {
  name: string;
  value: number;
  unit: string;
  /** Optional detail: the samples' summary, the comparison it belongs to, ... */
  [extra: string]: unknown;
}

export interface BenchResult {
  /** Headline metrics (printed in the summary table). */
  metrics: Metric[];
  /** Anything else worth keeping in the JSON file. */
  details?: Record<string, unknown>;
}

export interface Benchmark {
  name: string;
  description: string;
  run(ctx: BenchContext): Promise<BenchResult> | BenchResult;
}

export const CFLAGS = ["-O2", "-std=c11", "-Wall", "-Wextra"];

export function compileC(source: string, name = source.replace(/\.c$/, ""), defines: string[] = []): string {
  mkdirSync(BUILD_DIR, { recursive: true });
  const src = join(BENCH_DIR, "c", source);
  const exe = join(BUILD_DIR, name);
  // Rebuild when the source or any header in bench/c is newer than the executable.
  let stale = true;
  try {
    const built = statSync(exe).mtimeMs;
    stale = statSync(src).mtimeMs > built || headerTimes().some((t) => t > built);
  } catch {}
  if (stale) execFileSync("gcc", [...CFLAGS, ...defines, "-o", exe, src], { stdio: "inherit" });
  return exe;
}

function headerTimes(): number[] {
  const dir = join(BENCH_DIR, "c");
  return readdirSync(dir)
    .filter((f) => f.endsWith(".h"))
    .map((f) => statSync(join(dir, f)).mtimeMs);
}

export function runC<T>(exe: string, args: string[]): T {
  const r = spawnSync(exe, args, { encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${exe} ${args.join(" ")} failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

export interface MachineInfo {
  cpu: string;
  cores: number;
  node: string;
  v8: string;
  gcc: string;
  cflags: string;
  os: string;
}

export function machineInfo(): MachineInfo {
  let cpu = cpus()[0]?.model ?? "unknown";
  try {
    const m = /^model name\s*:\s*(.*)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"));
    if (m) cpu = m[1];
  } catch {}
  let gcc = "unavailable";
  try {
    gcc = execFileSync("gcc", ["--version"], { encoding: "utf8" }).split("\n")[0];
  } catch {}
  let os = `${process.platform} ${process.arch}`;
  try {
    os = `${execFileSync("uname", ["-sr"], { encoding: "utf8" }).trim()} ${process.arch}`;
  } catch {}
  return {
    cpu,
    cores: cpus().length,
    node: process.version,
    v8: process.versions.v8,
    gcc,
    cflags: CFLAGS.join(" "),
    os,
  };
}
