/**
 * The shadow MMU (JS only; the targets are absolute):
 *
 *  - faults: a 64 MiB guest (bench/lib/vm-guest.ts, `mmu: "shadow"`) touches each of its
 *    16,384 pages once, in address order, under 32 guest page tables: every touch is one
 *    shadow page fault (the guest PTEs are not yet accessed, so prefetch maps nothing; checked).
 *    Reported as `ShadowMmu.pageFault` calls per second (called directly) and as full accesses
 *    per second (`Vcpu.read32`: TLB miss, hardware walk of the shadow tables, #PF exit,
 *    pageFault, walk again, TLB fill). A fresh VM per pass.
 *  - emulated writes: the guest rewrites the 512 PTEs of one of its page tables, through its
 *    own writable mapping of that table, with `Vcpu.write32` (unsync off, so every write traps
 *    and is emulated; the flood threshold is raised so the table stays shadowed).
 *  - context switches: MOV to CR3 among N = 4 address spaces and a read of one page in each,
 *    with the default root cache (4) and with `rootCache: 0`.
 *  - bookkeeping: bytes per shadow page beside its 4 KiB table: `ShadowPages.BYTES_PER_PAGE`
 *    (typed arrays) plus the JS heap growth per page (maps, lists, reverse map) measured over
 *    10,240 page tables created by touching one page in each of 10,240 2 MiB regions.
 */

import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import {
  MMU_RETRY,
  PageTableBuilder,
  type ShadowMmu,
  type ShadowMmuOptions,
  ShadowPages,
  x86Leaf,
} from "../src/index.js";
import type { BenchContext, Benchmark, Metric } from "./lib/harness.js";
import { fmtRate, type Summary, summarize } from "./lib/stats.js";
import { buildVmGuest, timed, USER_BASE, userVa, type VmGuest } from "./lib/vm-guest.js";

function check(cond: boolean, what: string): void {
  if (!cond) throw new Error(`shadow benchmark: ${what}`);
}

const mmuOf = (g: VmGuest) => g.vm.hostMmu as ShadowMmu;

interface Runs {
  ms: number[];
  cpuMs: number[];
}

function push(r: Runs, t: { ms: number; cpuMs: number }): void {
  r.ms.push(t.ms);
  r.cpuMs.push(t.cpuMs);
}

const rate = (n: number, ms: number[]): Summary => summarize(ms.map((m) => (n / m) * 1000));

/** Shadow faults: `pageFault` called directly, and first touches through read32. Fresh VM per pass. */
function faults(pages: number, warmup: number, runs: number) {
  const raw: Runs = { ms: [], cpuMs: [] };
  const path: Runs = { ms: [], cpuMs: [] };
  for (let i = 0; i < warmup + runs; i++) {
    for (const direct of [true, false]) {
      const g = buildVmGuest({ pages, seed: 1 + i, mmu: "shadow" });
      const mmu = mmuOf(g);
      const v = g.vcpu;
      const f0 = mmu.stats.faults;
      const l0 = mmu.stats.leavesInstalled;
      const t = timed(() => {
        let n = 0;
        for (let p = 0; p < pages; p++) {
          const a = userVa(p);
          if (direct) {
            if (mmu.pageFault(v, a.hi, a.lo, g.read) === MMU_RETRY) n++;
          } else {
            v.read32(a.hi, a.lo, g.read);
            if (v.status === 0) n++;
          }
        }
        return n;
      });
      check(t.r === pages, "every touch succeeds");
      check(
        mmu.stats.faults - f0 === pages && mmu.stats.leavesInstalled - l0 === pages,
        "one fault, one leaf per page",
      );
      check(mmu.stats.prefetched === 0, "nothing prefetched");
      if (i === 0 && !direct) check(g.vm.check().length === 0, "audit");
      if (i >= warmup) push(direct ? raw : path, t);
    }
  }
  return { raw: rate(pages, raw.cpuMs), path: rate(pages, path.cpuMs), rawWall: rate(pages, raw.ms) };
}

/** The guest rewrites its own PTEs through a writable mapping of its page table (every write emulated). */
function emulatedWrites(count: number, warmup: number, runs: number) {
  const g = buildVmGuest({
    pages: 4096,
    seed: 3,
    mmu: "shadow",
    shadow: { unsync: false, floodThreshold: 2 ** 30 },
  });
  const v = g.vcpu;
  // The page table holding the entries of user pages 0..511, mapped at USER_BASE - 2 MiB.
  const pte0 = g.tables.entryAddress(BigInt(USER_BASE), 1, false);
  const ptGpa = pte0 - (pte0 % 4096);
  const aliasBase = USER_BASE - 0x200000;
  g.tables.map(
    BigInt(aliasBase),
    ptGpa,
    4096,
    x86Leaf({ writable: true, user: true, noExecute: true, accessed: true, dirty: true }),
  );
  for (let p = 0; p < 512; p++) {
    const a = userVa(p);
    v.read32(a.hi, a.lo, g.read); // shadows the table (write-protected from now on)
  }
  const lows = new Uint32Array(512);
  for (let k = 0; k < 512; k++) lows[k] = Number(g.vm.physical.read(ptGpa + k * 8, 4).value);
  const aliasHi = Math.floor(aliasBase / 2 ** 32);
  const aliasLo = aliasBase % 2 ** 32;
  const pass = () => {
    let n = 0;
    for (let i = 0; i < count; i++) {
      const k = i & 511;
      if (v.write32(aliasHi, aliasLo + k * 8, g.write, lows[k])) n++;
    }
    return n;
  };
  const r: Runs = { ms: [], cpuMs: [] };
  const mmu = mmuOf(g);
  for (let i = 0; i < warmup + runs; i++) {
    const e0 = v.exits.emulation;
    const w0 = mmu.stats.emulatedWrites;
    const t = timed(pass);
    check(t.r === count, "writes complete");
    check(
      v.exits.emulation - e0 === count && mmu.stats.emulatedWrites - w0 === count,
      "every write emulated",
    );
    if (i >= warmup) push(r, t);
  }
  check(mmu.stats.floodUnshadows === 0 && mmu.stats.unsynced === 0, "the table stays shadowed and synced");
  check(g.vm.check().length === 0, "audit");
  return rate(count, r.cpuMs);
}

/** MOV to CR3 among `spaces` address spaces, reading one page in each. */
function contextSwitches(
  spaces: number,
  shadow: ShadowMmuOptions,
  count: number,
  warmup: number,
  runs: number,
) {
  const g = buildVmGuest({ pages: 4096, seed: 4, mmu: "shadow", shadow, mapped: 0 });
  const v = g.vcpu;
  const cr3s: bigint[] = [];
  for (let s = 0; s < spaces; s++) {
    const b = new PageTableBuilder(g.vm.physical, v.cpuRole.format!, g.alloc);
    b.map(
      BigInt(USER_BASE),
      g.dataGfn[s] * 4096,
      4096,
      x86Leaf({ writable: true, user: true, noExecute: true }),
    );
    g.vm.physical.write(g.dataGfn[s] * 4096, 4, s + 1);
    cr3s.push(b.cr3);
  }
  const a = userVa(0);
  const pass = () => {
    let sum = 0;
    for (let i = 0; i < count; i++) {
      v.writeCr3(cr3s[i % spaces]);
      sum += v.read32(a.hi, a.lo, g.read);
    }
    return sum;
  };
  const expected = (count / spaces) * ((spaces * (spaces + 1)) / 2);
  const r: Runs = { ms: [], cpuMs: [] };
  const mmu = mmuOf(g);
  for (let i = 0; i < warmup + runs; i++) {
    const t = timed(pass);
    check(t.r === expected, "each address space reads its own page");
    if (i >= warmup) push(r, t);
  }
  check(g.vm.check().length === 0, "audit");
  return { rate: rate(count, r.cpuMs), rootHits: mmu.stats.rootHits, rootBuilds: mmu.stats.rootBuilds };
}

/** JS heap growth per shadow page, over `n` page tables (one touched page each). */
function bookkeeping(n: number) {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  const g = buildVmGuest({
    pages: 16384,
    seed: 5,
    mmu: "shadow",
    shadow: { maxPages: 2 * n + 64 },
    mapped: 0,
    tablePages: n + 512,
    extraFrames: n + 4096,
  });
  for (let i = 0; i < n; i++)
    g.tables.map(BigInt(USER_BASE + i * 0x200000), g.dataGfn[i] * 4096, 4096, x86Leaf({ user: true }));
  const mmu = mmuOf(g);
  const v = g.vcpu;
  const a0 = userVa(0);
  v.read32(a0.hi, a0.lo, g.read); // root, PDPT, first PD, first PT
  const p0 = mmu.pages.count;
  const leaves0 = mmu.stats.leavesInstalled;
  gc();
  gc();
  const h0 = process.memoryUsage().heapUsed;
  for (let i = 1; i < n; i++) {
    const a = userVa(i * 512);
    v.read32(a.hi, a.lo, g.read);
  }
  gc();
  gc();
  const h1 = process.memoryUsage().heapUsed;
  const pages = mmu.pages.count - p0;
  const leaves = mmu.stats.leavesInstalled - leaves0;
  check(pages >= n - 1 && mmu.stats.reclaimed === 0, "one shadow page table per touched region");
  const heapPerPage = (h1 - h0) / pages;
  return {
    pages,
    leaves,
    heapBytes: h1 - h0,
    heapPerPage,
    typedArrayBytesPerPage: ShadowPages.BYTES_PER_PAGE,
    totalPerPage: heapPerPage + ShadowPages.BYTES_PER_PAGE,
  };
}

const bench: Benchmark = {
  name: "shadow",
  description: "shadow MMU: faults, emulated guest PTE writes, context switches, bookkeeping per page",
  run(ctx: BenchContext) {
    const quick = ctx.quick;
    const warmup = quick ? 1 : 3;
    const runs = quick ? 2 : 11;

    ctx.log("faults");
    const f = faults(quick ? 2048 : 16384, warmup, runs);
    ctx.log(
      `  pageFault ${fmtRate(f.raw.median)} ±${f.raw.iqrPct.toFixed(1)}%   read32 first touch ${fmtRate(f.path.median)} ±${f.path.iqrPct.toFixed(1)}%`,
    );
    ctx.log("emulated writes");
    const e = emulatedWrites(quick ? 20_000 : 200_000, warmup, runs);
    ctx.log(`  ${fmtRate(e.median)} ±${e.iqrPct.toFixed(1)}%`);
    ctx.log("context switches");
    const switches = quick ? 20_000 : 200_000;
    const cached = contextSwitches(4, {}, switches, warmup, runs);
    const uncached = contextSwitches(4, { rootCache: 0 }, switches / 4, warmup, runs);
    ctx.log(
      `  root cache 4: ${fmtRate(cached.rate.median)} ±${cached.rate.iqrPct.toFixed(1)}%   root cache 0: ${fmtRate(uncached.rate.median)} ±${uncached.rate.iqrPct.toFixed(1)}%`,
    );
    ctx.log("bookkeeping");
    const b = bookkeeping(quick ? 2048 : 10240);
    ctx.log(
      `  ${b.typedArrayBytesPerPage} B typed arrays + ${b.heapPerPage.toFixed(0)} B heap = ${b.totalPerPage.toFixed(0)} B per shadow page`,
    );

    const metrics: Metric[] = [
      { name: "pageFault (direct)", value: f.raw.median, unit: "faults/s", iqrPct: f.raw.iqrPct },
      { name: "first touch via read32", value: f.path.median, unit: "faults/s", iqrPct: f.path.iqrPct },
      { name: "emulated PTE writes", value: e.median, unit: "writes/s", iqrPct: e.iqrPct },
      {
        name: "ctx switch, root cache 4",
        value: cached.rate.median,
        unit: "switches/s",
        iqrPct: cached.rate.iqrPct,
      },
      {
        name: "ctx switch, root cache 0",
        value: uncached.rate.median,
        unit: "switches/s",
        iqrPct: uncached.rate.iqrPct,
      },
      { name: "bookkeeping per shadow page", value: b.totalPerPage, unit: "bytes" },
    ];
    return {
      metrics,
      details: {
        warmup,
        runs,
        faults: f,
        emulatedWrites: e,
        contextSwitches: { spaces: 4, cached, uncached },
        bookkeeping: b,
      },
    };
  },
};

export default bench;
