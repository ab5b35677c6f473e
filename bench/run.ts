/**
 * Runs the benchmarks: every bench/*.bench.ts (or those named on the command line), then
 * writes bench/results/<timestamp>.json and bench/results/latest.json.
 *
 *   npm run bench                 all benchmarks
 *   npm run bench -- walk         only walk.bench.ts
 *   npm run bench -- --quick      small workloads, few repetitions (checks the code runs)
 */

import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import {
  BENCH_DIR,
  type BenchContext,
  type Benchmark,
  type BenchResult,
  BUILD_DIR,
  compileC,
  machineInfo,
  RESULTS_DIR,
  runC,
} from "./lib/harness.js";

const args = process.argv.slice(2);
const quick = args.includes("--quick");
const only = args.filter((a) => !a.startsWith("--"));

const files = readdirSync(BENCH_DIR)
  .filter((f) => f.endsWith(".bench.ts"))
  .sort()
  .filter((f) => only.length === 0 || only.includes(f.replace(/\.bench\.ts$/, "")));
if (files.length === 0) {
  console.error(`no benchmark matches ${only.join(", ")}`);
  process.exit(1);
}

const ctx: BenchContext = {
  quick,
  log: (msg) => process.stderr.write(`${msg}\n`),
  compileC,
  runC,
};

mkdirSync(BUILD_DIR, { recursive: true });
const machine = machineInfo();
const started = new Date();
const results: Record<string, { description: string; seconds: number } & BenchResult> = {};
ctx.log(
  `${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, ${machine.gcc}${quick ? " (quick)" : ""}`,
);
for (const f of files) {
  const mod = (await import(pathToFileURL(join(BENCH_DIR, f)).href)) as { default: Benchmark };
  const b = mod.default;
  ctx.log(`\n== ${b.name}: ${b.description}`);
  const t0 = performance.now();
  const r = await b.run(ctx);
  results[b.name] = { description: b.description, seconds: (performance.now() - t0) / 1000, ...r };
}

const report = { date: started.toISOString(), quick, machine, results };
mkdirSync(RESULTS_DIR, { recursive: true });
const stamp = started.toISOString().replace(/[:.]/g, "-");
writeFileSync(join(RESULTS_DIR, `${stamp}.json`), `${JSON.stringify(report, null, 2)}\n`);
writeFileSync(join(RESULTS_DIR, "latest.json"), `${JSON.stringify(report, null, 2)}\n`);

console.log("\nbenchmark  metric                                   value");
for (const [name, r] of Object.entries(results))
  for (const m of r.metrics) {
    const v = m.unit === "ratio" ? m.value.toFixed(3) : m.value.toExponential(3);
    console.log(`${name.padEnd(10)} ${m.name.padEnd(40)} ${v} ${m.unit === "ratio" ? "" : m.unit}`);
  }
console.log(`\nresults: bench/results/${stamp}.json`);
