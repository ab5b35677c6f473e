/**
 * Two-dimensional walks per second with nothing cached: `TwoDimensionalWalk.walk` (a
 * 4-level guest on 4-level EPT with accessed/dirty flags, every flag already set: 24 memory
 * references per walk) against the C reference in bench/c/two_d.c, plus the whole access path
 * with the TLB off (`Vcpu.read32` / `write32` with tlb "none": every access walks).
 *
 * Workload: a 64 MiB guest in a TDP VM (bench/lib/vm-guest.ts): 16,384 user pages mapped
 * with 4 KiB pages to a random permutation of guest frames, guest tables from a random
 * allocator, host frames scattered. Every page is written once through the vCPU first, so
 * the EPT is built (4 KiB EPT leaves: the backing is not huge) and every guest and EPT A/D
 * flag is set. 500k random addresses, 25 % writes. The JS writes host memory, the EPT
 * walker's and the guest walker's configuration for the C, which walks the same tables in
 * the same memory; checksums per pass and a final host-memory hash must agree.
 */

import { join } from "node:path";
import { cpuWalker, NestedFrameSource, TWO_D_OK, TwoDimensionalWalk, type Vcpu } from "../src/index.js";
import type { AccessList } from "./lib/guest.js";
import { type BenchContext, type Benchmark, BUILD_DIR, type Metric } from "./lib/harness.js";
import { hashHostMemory, writeAccessList, writeImage, writeWalkerConfig } from "./lib/image.js";
import { Prng } from "./lib/prng.js";
import { fmtRate, summarize } from "./lib/stats.js";
import { buildVmGuest, timed, userVa } from "./lib/vm-guest.js";

interface PassResult {
  sum: number;
  faults: number;
}

function passTwoD(t: TwoDimensionalWalk, l: AccessList): PassResult {
  const va = l.va;
  const access = l.access;
  let sum = 0;
  let faults = 0;
  for (let i = 0; i < l.count; i++) {
    if (t.walk(va[2 * i + 1], va[2 * i], access[i]) !== TWO_D_OK) faults++;
    sum = (sum + (t.hostPhysical >>> 0) + t.refs) | 0;
  }
  return { sum: sum >>> 0, faults };
}

/** The same addresses through the vCPU (TLB off): reads with read32, writes with write32 (writing what is there). */
function passVcpu(v: Vcpu, l: AccessList, write: number): PassResult {
  const va = l.va;
  const access = l.access;
  let sum = 0;
  let faults = 0;
  for (let i = 0; i < l.count; i++) {
    const hi = va[2 * i + 1];
    const lo = va[2 * i];
    if (access[i] === write) {
      if (!v.write32(hi, lo, write, 0x5a5a5a5a)) faults++;
    } else sum = (sum + v.read32(hi, lo, access[i])) | 0;
  }
  return { sum: sum >>> 0, faults };
}

interface Runs {
  ms: number[];
  cpuMs: number[];
  sums: number[];
  faults: number;
}

interface CResult {
  walk: Runs;
  completed: number;
  completedRefs: number;
  retries: number;
  memHash: number;
}

function check(cond: boolean, what: string): void {
  if (!cond) throw new Error(`two-d benchmark: ${what}`);
}

const bench: Benchmark = {
  name: "two-d",
  description: "2-D walks (4-level guest on 4-level EPT, nothing cached, 24 refs) vs C at -O2",
  run(ctx: BenchContext) {
    const quick = ctx.quick;
    const pages = quick ? 4096 : 16384;
    const count = quick ? 50_000 : 500_000;
    const warmup = quick ? 1 : 5;
    const runs = quick ? 2 : 7;
    const rounds = quick ? 1 : 3;

    const g = buildVmGuest({ pages, seed: 1, tlb: "none" });
    const v = g.vcpu;
    // Data pages hold a fixed pattern, so the vCPU pass's writes change nothing.
    for (let i = 0; i < pages; i++) {
      const a = userVa(i);
      for (let off = 0; off < 4096; off += 4)
        check(v.write32(a.hi, a.lo + off, g.write, 0x5a5a5a5a), "warm-up");
    }
    const exits = v.exits.eptViolation;
    ctx.log(
      `  ${pages} pages, ${g.tableGfns.length} guest table frames, ${exits} EPT violations while warming up`,
    );

    const frames = new NestedFrameSource(g.vm.mmu.walker, g.vm.host);
    const gw = cpuWalker(frames, v.cpuRole, g.cr3);
    const t = new TwoDimensionalWalk(gw, frames);

    const rng = new Prng(2);
    const l: AccessList = { count, va: new Uint32Array(count * 2), access: new Uint8Array(count) };
    for (let i = 0; i < count; i++) {
      const a = userVa(rng.below(pages), rng.next() & 0xff8);
      l.va[2 * i] = a.lo;
      l.va[2 * i + 1] = a.hi;
      l.access[i] = rng.below(100) < 25 ? g.write : g.read;
    }

    const image = join(BUILD_DIR, "two-d.img");
    const guestWalker = join(BUILD_DIR, "two-d.walker");
    const list = join(BUILD_DIR, "two-d.acc");
    writeImage(image, {
      memslots: g.vm.memslots,
      hostSpace: g.vm.hostSpace,
      host: g.vm.host,
      walker: g.vm.mmu.walker,
    });
    writeWalkerConfig(guestWalker, gw);
    writeAccessList(list, l);
    const exe = ctx.compileC("two_d.c");

    for (let i = 0; i < warmup; i++) passTwoD(t, l);
    const js: Runs[] = [];
    const c: CResult[] = [];
    const completed0 = t.completed;
    const refs0 = t.completedRefs;
    for (let r = 0; r < rounds; r++) {
      ctx.log(`round ${r + 1}/${rounds}: JS`);
      const jr: Runs = { ms: [], cpuMs: [], sums: [], faults: 0 };
      for (let i = 0; i < runs; i++) {
        const a = timed(() => passTwoD(t, l));
        jr.ms.push(a.ms);
        jr.cpuMs.push(a.cpuMs);
        jr.sums.push(a.r.sum);
        jr.faults += a.r.faults;
      }
      js.push(jr);
      ctx.log(`round ${r + 1}/${rounds}: C`);
      c.push(ctx.runC<CResult>(exe, [image, guestWalker, String(warmup), String(runs), list]));
    }
    const walks = t.completed - completed0;
    check(walks === rounds * runs * count, "every timed JS walk completes");
    check(t.completedRefs - refs0 === walks * 24, "24 references per walk");
    const memHash = hashHostMemory(g.vm.host);
    const sum = js[0].sums[0];
    for (const cr of c) {
      check(cr.memHash === memHash, "JS and C disagree: host memory hash");
      check(cr.walk.faults === 0 && cr.retries === 0, "C walks fault or retry");
      check(cr.completedRefs === cr.completed * 24, "C: 24 references per walk");
      check(
        [...cr.walk.sums, ...js.flatMap((j) => j.sums)].every((s) => s === sum),
        "JS and C disagree: checksums",
      );
    }

    // The whole access path with the TLB off (JS only): each access is a TLB miss and a 2-D walk.
    ctx.log("vCPU path (TLB off)");
    const stats0 = { ...v.stats };
    for (let i = 0; i < warmup; i++) passVcpu(v, l, g.write);
    const vcpuRuns: Runs = { ms: [], cpuMs: [], sums: [], faults: 0 };
    for (let i = 0; i < runs * rounds; i++) {
      const a = timed(() => passVcpu(v, l, g.write));
      vcpuRuns.ms.push(a.ms);
      vcpuRuns.cpuMs.push(a.cpuMs);
      vcpuRuns.faults += a.r.faults;
    }
    const n = (warmup + runs * rounds) * count;
    check(
      v.stats.tlbMisses - stats0.tlbMisses === n && v.stats.completedWalks - stats0.completedWalks === n,
      "vCPU: every access walks once",
    );
    check(v.stats.completedWalkRefs - stats0.completedWalkRefs === n * 24, "vCPU: 24 references per walk");
    check(
      hashHostMemory(g.vm.host) === memHash && vcpuRuns.faults === 0,
      "vCPU pass changed memory or faulted",
    );

    const rate = (ms: number[]) => summarize(ms.map((m) => (count / m) * 1000));
    const jsRate = rate(js.flatMap((r) => r.cpuMs));
    const cRate = rate(c.flatMap((r) => r.walk.cpuMs));
    const vcpuRate = rate(vcpuRuns.cpuMs);
    const ratio = jsRate.median / cRate.median;
    const jsWall = rate(js.flatMap((r) => r.ms));
    const cWall = rate(c.flatMap((r) => r.walk.ms));
    ctx.log(
      `  2-D walk  JS ${fmtRate(jsRate.median).padStart(11)} ±${jsRate.iqrPct.toFixed(1)}%` +
        `  C ${fmtRate(cRate.median).padStart(11)} ±${cRate.iqrPct.toFixed(1)}%  JS/C ${ratio.toFixed(3)}`,
    );
    ctx.log(`  vCPU access, TLB off  JS ${fmtRate(vcpuRate.median)} ±${vcpuRate.iqrPct.toFixed(1)}%`);
    const metrics: Metric[] = [
      { name: "2-D walk JS", value: jsRate.median, unit: "walks/s", iqrPct: jsRate.iqrPct },
      { name: "2-D walk C", value: cRate.median, unit: "walks/s", iqrPct: cRate.iqrPct },
      { name: "2-D walk JS/C", value: ratio, unit: "ratio" },
      { name: "2-D refs JS", value: jsRate.median * 24, unit: "refs/s" },
      { name: "vCPU access TLB off JS", value: vcpuRate.median, unit: "accesses/s", iqrPct: vcpuRate.iqrPct },
    ];
    return {
      metrics,
      details: {
        guestPages: pages,
        guestTableFrames: g.tableGfns.length,
        addresses: count,
        writePct: 25,
        refsPerWalk: 24,
        warmup,
        runsPerRound: runs,
        rounds,
        memHash,
        js: jsRate,
        c: cRate,
        ratio,
        wall: { js: jsWall, c: cWall, ratio: jsWall.median / cWall.median },
        vcpuTlbOff: vcpuRate,
      },
    };
  },
};

export default bench;
