/**
 * Profiling driver for the walk benchmark's JS side (no C, no checks; not run by run.ts):
 *
 *   node --import tsx --cpu-prof --cpu-prof-dir=bench/build/prof bench/profile-walk.ts [passes]
 *   npx tsx bench/lib/cpuprofile.ts bench/build/prof/<file>.cpuprofile
 *
 * For instruction-level profiles, compile with tsc and use perf with V8's jitdump:
 *
 *   npx tsc -p tsconfig.json --outDir /tmp/dc
 *   perf record -e cpu-clock -k mono node --perf-prof /tmp/dc/bench/profile-walk.js
 *   perf inject --jit -i perf.data -o perf.jit.data && perf annotate -i perf.jit.data
 */
import { Walk } from "../src/index.js";
import { buildGuest, userAccesses } from "./lib/guest.js";

const passes = Number(process.argv[2] ?? 20);
const g = buildGuest({ pages: 65536, seed: 1 });
const l = userAccesses(g, 1_000_000, 2);
const w = new Walk();
let sum = 0;
for (let p = 0; p < passes; p++) {
  const t0 = performance.now();
  for (let i = 0; i < l.count; i++) {
    g.walker.walk(l.va[2 * i + 1], l.va[2 * i], l.access[i], w);
    sum = (sum + (w.address >>> 0) + w.lo[w.depth - 1]) | 0;
  }
  const ms = performance.now() - t0;
  if (p % 5 === 4) console.log(`pass ${p}: ${(((l.count / ms) * 1000) / 1e6).toFixed(2)} M walks/s`);
}
console.log(sum >>> 0);
