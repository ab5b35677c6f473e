/**
 * npm run conformance [-- --seed N --count N --mode 0,1,2,3 --report N]
 *
 * Generates paging cases, runs them on QEMU (TCG, -cpu max) through the conformance
 * kernel and through vmmu's walker, and reports every disagreement. QEMU's documented
 * departures from the manuals (DEVIATIONS.md) are applied to vmmu's answer before the
 * comparison; nothing else is forgiven. Ends with "N passed, N failed".
 */

import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { type Case, describeCase } from "./src/case.js";
import { generate, QEMU_MAXPHYADDR } from "./src/generate.js";
import { MODE_NAMES, type ModeNumber } from "./src/layout.js";
import { describeOutcome, type Outcome, VmmuOracle } from "./src/oracle.js";
import { buildKernel, runBatch } from "./src/qemu.js";

const BATCH_CASES = 20_000;

const { values } = parseArgs({
  options: {
    seed: { type: "string", default: "1" },
    count: { type: "string", default: "100000" },
    mode: { type: "string", default: "0,1,2,3" },
    report: { type: "string", default: "20" },
    jobs: { type: "string", default: "2" },
  },
});
const seed = Number(values.seed);
const count = Number(values.count);
const modes = values.mode.split(",").map(Number) as ModeNumber[];
const reportMax = Number(values.report);
const jobs = Math.max(1, Number(values.jobs));
for (const [name, v] of [
  ["seed", seed],
  ["count", count],
  ["report", reportMax],
] as const)
  if (!Number.isInteger(v) || v < 0) usage(`--${name} must be a non-negative integer`);
if (!modes.every((m) => m >= 0 && m <= 3))
  usage("--mode takes a comma-separated list of 0 (32-bit), 1 (PAE), 2 (4-level), 3 (5-level)");

function usage(msg: string): never {
  console.error(`conformance: ${msg}`);
  process.exit(2);
}

/** Runs cases in QEMU; a case that stops QEMU is reported as such and the rest run again. */
async function runInQemu(
  mode: ModeNumber,
  cases: Case[],
  tag: string,
): Promise<{ outcomes: (Outcome | string)[]; maxPhyAddr: number }> {
  const outcomes: (Outcome | string)[] = new Array(cases.length);
  let maxPhyAddr = QEMU_MAXPHYADDR;
  let start = 0;
  for (let attempt = 0; start < cases.length; attempt++) {
    const slice = cases.slice(start);
    const r = await runBatch(mode, slice, `${tag}-${attempt}`);
    if (r.header) maxPhyAddr = r.header.maxPhyAddr;
    let first = slice.length;
    for (let i = 0; i < slice.length; i++) {
      const o = r.outcomes[i];
      if (o) outcomes[start + i] = o;
      else {
        first = i;
        break;
      }
    }
    if (first === slice.length) break;
    const why =
      r.errors.find((e) => e.startsWith(`ERR C ${first} `)) ??
      `QEMU stopped on this case (status ${r.status})`;
    outcomes[start + first] = why;
    if (r.errors.some((e) => e.startsWith("ERR HEADER") || e.startsWith("ERR PANIC")) || attempt > 50) {
      for (let i = start + first + 1; i < cases.length; i++) outcomes[i] = `not run: ${r.errors.join("; ")}`;
      break;
    }
    start += first + 1;
  }
  return { outcomes, maxPhyAddr };
}

function same(a: Outcome, b: Outcome): boolean {
  return (
    a.vector === b.vector &&
    a.errorCode === b.errorCode &&
    a.cr2 === b.cr2 &&
    a.watches.length === b.watches.length &&
    a.watches.every((w, i) => w === b.watches[i])
  );
}

async function main(): Promise<number> {
  await buildKernel();
  const started = Date.now();
  let passed = 0;
  let failed = 0;
  let reported = 0;
  const perMode: Record<
    string,
    { cases: number; failed: number; deviations: number; byLabel: Record<string, number> }
  > = {};
  const perModeRandom = Math.ceil(count / modes.length);
  // Generate everything first; run the modes' batches `jobs` at a time.
  const work = modes.map((mode) => {
    const systematic = generate(mode, { seed, randomCases: 0 }).length;
    const cases = generate(mode, { seed, randomCases: Math.max(0, perModeRandom - systematic) });
    return { mode, cases };
  });
  const tasks = work.flatMap(({ mode, cases }) => {
    const chunks: Case[][] = [];
    for (let i = 0; i < cases.length; i += BATCH_CASES) chunks.push(cases.slice(i, i + BATCH_CASES));
    return chunks.map((chunk, k) => ({ mode, chunk, k }));
  });
  const done: { mode: ModeNumber; k: number; chunk: Case[]; r: Awaited<ReturnType<typeof runInQemu>> }[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: jobs }, async () => {
      while (next < tasks.length) {
        const t = tasks[next++];
        done.push({ ...t, r: await runInQemu(t.mode, t.chunk, `m${t.mode}-${t.k}`) });
      }
    }),
  );
  done.sort((a, b) => a.mode - b.mode || a.k - b.k);
  for (const { mode, chunk, r } of done) {
    const oracle = new VmmuOracle(r.maxPhyAddr);
    perMode[MODE_NAMES[mode]] ??= { cases: 0, failed: 0, deviations: 0, byLabel: {} };
    const stats = perMode[MODE_NAMES[mode]];
    chunk.forEach((c, i) => {
      const actual = r.outcomes[i];
      const vendor = c.deviation === "amd-bit8" ? "intel" : "amd";
      const expected = oracle.evaluate(c, { vendor, qemu: true });
      stats.cases++;
      if (c.deviation) stats.deviations++;
      const ok = typeof actual !== "string" && same(expected, actual);
      if (ok) {
        passed++;
        return;
      }
      failed++;
      stats.failed++;
      const label = c.label.split(" ")[0];
      stats.byLabel[label] = (stats.byLabel[label] ?? 0) + 1;
      if (reported++ < reportMax) {
        console.log(`DISAGREEMENT (${MODE_NAMES[mode]} case ${i})`);
        console.log(describeCase(c));
        console.log(`  vmmu (QEMU view): ${describeOutcome(expected)}`);
        console.log(`  QEMU:             ${typeof actual === "string" ? actual : describeOutcome(actual)}`);
      }
    });
  }
  const seconds = (Date.now() - started) / 1000;
  console.log("");
  console.log("mode     cases   failed  via a documented QEMU departure");
  for (const [m, s] of Object.entries(perMode))
    console.log(
      `${m.padEnd(8)} ${String(s.cases).padStart(6)}  ${String(s.failed).padStart(6)}  ${s.deviations}${s.failed ? `  (${JSON.stringify(s.byLabel)})` : ""}`,
    );
  console.log(`seed ${seed}, ${passed + failed} cases in ${seconds.toFixed(1)} s`);
  writeFileSync(
    new URL("./out/last-run.json", import.meta.url),
    `${JSON.stringify({ date: new Date().toISOString(), seed, count, seconds, passed, failed, perMode }, null, 2)}\n`,
  );
  console.log(`${passed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(`conformance: ${e instanceof Error ? e.message : String(e)}`);
    console.log("0 passed, 1 failed");
    process.exit(1);
  },
);
