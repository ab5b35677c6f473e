/**
 * Runs the benchmarks: every bench/*.bench.ts (or those named on the command line), each in
 * a process of its own, then writes bench/results/<timestamp>.json and
 * bench/results/latest.json.
 *
 *   npm run bench                 all benchmarks
 *   npm run bench -- walk         only walk.bench.ts
 *   npm run bench -- --quick      small workloads, few repetitions (checks the code runs)
 *
 * A process per benchmark because V8's type feedback is per process: one benchmark's code
 * paths (the shadow MMU's, another walker format's) made polymorphic by the benchmarks run
 * before it measured 10-25 % slower than the same benchmark alone. The C references run in
 * processes of their own anyway.
 */

import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
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
// `--result FILE`: run the one named benchmark in this process and write its result to FILE.
const resultIndex = args.indexOf("--result");
const resultFile = resultIndex >= 0 ? args[resultIndex + 1] : undefined;
const only = args.filter((a, i) => !a.startsWith("--") && (resultIndex < 0 || i !== resultIndex + 1));

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
type Result = { description: string; seconds: number } & BenchResult;

async function runHere(f: string): Promise<Result> {
  const mod = (await import(pathToFileURL(join(BENCH_DIR, f)).href)) as { default: Benchmark };
  const b = mod.default;
  ctx.log(`\n== ${b.name}: ${b.description}`);
  const t0 = performance.now();
  const r = await b.run(ctx);
  return { description: b.description, seconds: (performance.now() - t0) / 1000, ...r };
}

if (resultFile !== undefined) {
  writeFileSync(resultFile, JSON.stringify(await runHere(files[0])));
  process.exit(0);
}

const machine = machineInfo();
const started = new Date();
const results: Record<string, Result> = {};
ctx.log(
  `${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, ${machine.gcc}${quick ? " (quick)" : ""}`,
);
const scratch = mkdtempSync(join(tmpdir(), "vmmu-bench-"));
try {
  for (const f of files) {
    const name = f.replace(/\.bench\.ts$/, "");
    const out = join(scratch, `${name}.json`);
    const child = spawnSync(
      process.execPath,
      [
        "--import",
        "tsx",
        fileURLToPath(import.meta.url),
        name,
        "--result",
        out,
        ...(quick ? ["--quick"] : []),
      ],
      { stdio: ["ignore", "inherit", "inherit"], cwd: join(BENCH_DIR, "..") },
    );
    if (child.status !== 0) {
      console.error(`benchmark ${name} failed (exit ${child.status ?? child.signal})`);
      process.exit(1);
    }
    const r = JSON.parse(readFileSync(out, "utf8")) as Result;
    results[name] = r;
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
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
