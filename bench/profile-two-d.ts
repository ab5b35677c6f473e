/**
 * Profiling driver for the 2-D walk benchmark's JS side (two-d.bench.ts's workload, no C):
 *
 *   node --import tsx --cpu-prof --cpu-prof-dir=bench/build/prof bench/profile-two-d.ts [passes]
 *   npx tsx bench/lib/cpuprofile.ts bench/build/prof/<file>.cpuprofile
 */
import { cpuWalker, NestedFrameSource, TWO_D_OK, TwoDimensionalWalk } from "../src/index.js";
import { Prng } from "./lib/prng.js";
import { buildVmGuest, userVa } from "./lib/vm-guest.js";

const passes = Number(process.argv[2] ?? 20);
const pages = 16384;
const g = buildVmGuest({ pages, seed: 1, tlb: "none" });
for (let i = 0; i < pages; i++) {
  const a = userVa(i);
  g.vcpu.write32(a.hi, a.lo, g.write, 0x5a5a5a5a);
}
const frames = new NestedFrameSource(g.vm.mmu.walker, g.vm.host);
const t = new TwoDimensionalWalk(cpuWalker(frames, g.vcpu.cpuRole, g.cr3), frames);
const rng = new Prng(2);
const count = 500_000;
const va = new Uint32Array(count * 2);
const access = new Uint8Array(count);
for (let i = 0; i < count; i++) {
  const a = userVa(rng.below(pages), rng.next() & 0xff8);
  va[2 * i] = a.lo;
  va[2 * i + 1] = a.hi;
  access[i] = rng.below(100) < 25 ? g.write : g.read;
}
let sum = 0;
for (let p = 0; p < passes; p++) {
  const t0 = process.cpuUsage();
  for (let i = 0; i < count; i++) {
    if (t.walk(va[2 * i + 1], va[2 * i], access[i]) !== TWO_D_OK) sum++;
    sum = (sum + (t.hostPhysical >>> 0) + t.refs) | 0;
  }
  const c = process.cpuUsage(t0);
  if (p % 5 === 4)
    console.log(`pass ${p}: ${(count / ((c.user + c.system) / 1e6) / 1e6).toFixed(2)} M 2-D walks/s`);
}
console.log(sum >>> 0);
