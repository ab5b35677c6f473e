/**
 * Interleaved A/B comparison of two versions of src/ on the simulator's `hot` programs
 * (per-operation and batched touches), like ab.ts for the walker:
 *
 *   git worktree add or cp -r src bench/build/ab/$USER-sim-before    # then edit src/
 *   npx tsx bench/lib/ab-sim.ts bench/build/ab/$USER-sim-before src [pairs] [mmu]
 *
 * Both versions are loaded into one process; whole runs of A and B alternate; the median of
 * the per-pair B/A ratios of touches per CPU second is printed (boot included in each run,
 * the same for both). An A/A run shows the noise floor: ±10–20 % on this 2-vCPU machine,
 * so only larger effects are visible.
 */

import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type * as Vmmu from "../../src/index.js";
import { hotProgram } from "./sim-programs.js";

const [dirA, dirB] = [process.argv[2], process.argv[3]];
if (!dirA || !dirB) {
  console.error("usage: npx tsx bench/lib/ab-sim.ts SRC_A SRC_B [pairs] [mmu]");
  process.exit(1);
}
const pairs = Number(process.argv[4] ?? 9);
const mmu = (process.argv[5] ?? "tdp") as Vmmu.MmuName;

const load = async (dir: string) =>
  (await import(pathToFileURL(resolve(dir, "index.ts")).href)) as typeof Vmmu;
const sides = [await load(dirA), await load(dirB)];

const rate = (v: typeof Vmmu, batched: boolean): number => {
  const t0 = process.cpuUsage();
  const r = v.runProgram(hotProgram(48, 40000, batched), { mmu });
  const t = process.cpuUsage(t0);
  return r.userAccesses / ((t.user + t.system) / 1e6);
};

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const v of sides) for (const b of [false, true]) rate(v, b);
for (const batched of [false, true]) {
  const ratios: number[] = [];
  const rates: number[][] = [[], []];
  for (let i = 0; i < pairs; i++) {
    // The order alternates, so neither side always runs after the other.
    let a: number;
    let b: number;
    if (i % 2 === 0) {
      a = rate(sides[0], batched);
      b = rate(sides[1], batched);
    } else {
      b = rate(sides[1], batched);
      a = rate(sides[0], batched);
    }
    rates[0].push(a);
    rates[1].push(b);
    ratios.push(b / a);
  }
  console.log(
    `${batched ? "batched" : "per-op "}: A ${(median(rates[0]) / 1e6).toFixed(2)} M/s, B ${(median(rates[1]) / 1e6).toFixed(2)} M/s, B/A ${median(ratios).toFixed(3)}`,
  );
}
