/**
 * 4-level guest page-table walks per second: GuestWalker.walk (translate + accessed/dirty
 * commit) and GuestWalker.translate, JS against the C reference in bench/c/walk.c.
 *
 * Workload (bench/lib/guest.ts): a 256 MiB guest (one memslot of 65,536 pages over host
 * memory through GuestPhysical), every page mapped with 4 KiB pages in a random
 * permutation, page-table frames from a random allocator, plus a 2 MiB-page kernel direct
 * map. 1M random addresses (25 % writes), precomputed as lo/hi halves. The JS dumps the
 * memory model and the address lists before the first walk; the C loads them, so both walk
 * identical tables in identical memory layouts, and both print a checksum of every pass
 * (and a hash of all host memory at the end) which must agree.
 *
 * Protocol per list, the same in both: one cold `walk` pass (sets A/D), warm-up passes,
 * then timed passes of `walk` and `translate` alternating. The whole JS/C pair is repeated
 * in rounds, alternating, so background load hits both alike; medians over all passes.
 */

import { join } from "node:path";
import { type GuestWalker, Walk } from "../src/index.js";
import { type AccessList, buildGuest, kernelAccesses, userAccesses } from "./lib/guest.js";
import { type BenchContext, type Benchmark, BUILD_DIR, type Metric } from "./lib/harness.js";
import { hashHostMemory, writeAccessList, writeImage } from "./lib/image.js";
import { fmtRate, summarize } from "./lib/stats.js";

interface PassResult {
  sum: number;
  faults: number;
}

// One function per variant, each a monomorphic loop; the checksum keeps the work observable
// (and is compared with the C side's).
function passWalk(walker: GuestWalker, w: Walk, l: AccessList): PassResult {
  const va = l.va;
  const access = l.access;
  let sum = 0;
  let faults = 0;
  for (let i = 0; i < l.count; i++) {
    if (!walker.walk(va[2 * i + 1], va[2 * i], access[i], w)) faults++;
    sum = (sum + (w.address >>> 0) + w.lo[w.depth - 1]) | 0;
  }
  return { sum: sum >>> 0, faults };
}

function passTranslate(walker: GuestWalker, w: Walk, l: AccessList): PassResult {
  const va = l.va;
  const access = l.access;
  let sum = 0;
  let faults = 0;
  for (let i = 0; i < l.count; i++) {
    if (!walker.translate(va[2 * i + 1], va[2 * i], access[i], w)) faults++;
    sum = (sum + (w.address >>> 0) + w.lo[w.depth - 1]) | 0;
  }
  return { sum: sum >>> 0, faults };
}

interface VariantRuns {
  /** Wall-clock milliseconds per pass. */
  ms: number[];
  /** Process CPU milliseconds per pass (what the rates are computed from; see BENCHMARKS.md). */
  cpuMs: number[];
  sums: number[];
  faults: number;
}

interface ListRuns {
  count: number;
  cold: { ms: number; sum: number; faults: number };
  walk: VariantRuns;
  translate: VariantRuns;
}

interface CResult {
  lists: ListRuns[];
  retries: number;
  memHash: number;
}

function cpuNow(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

function timed(f: () => PassResult): { ms: number; cpuMs: number; r: PassResult } {
  const t0 = performance.now();
  const c0 = cpuNow();
  const r = f();
  const cpuMs = cpuNow() - c0;
  return { ms: performance.now() - t0, cpuMs, r };
}

/** The JS side of the protocol (same as main() in walk.c). */
function runJs(
  walker: GuestWalker,
  lists: AccessList[],
  warmup: number,
  runs: number,
  cold: boolean,
): ListRuns[] {
  const w = new Walk();
  return lists.map((l) => {
    const c = cold ? timed(() => passWalk(walker, w, l)) : { ms: Number.NaN, r: { sum: 0, faults: 0 } };
    for (let i = 0; i < warmup; i++) {
      passWalk(walker, w, l);
      passTranslate(walker, w, l);
    }
    const out: ListRuns = {
      count: l.count,
      cold: { ms: c.ms, sum: c.r.sum, faults: c.r.faults },
      walk: { ms: [], cpuMs: [], sums: [], faults: 0 },
      translate: { ms: [], cpuMs: [], sums: [], faults: 0 },
    };
    for (let i = 0; i < runs; i++) {
      const a = timed(() => passWalk(walker, w, l));
      out.walk.ms.push(a.ms);
      out.walk.cpuMs.push(a.cpuMs);
      out.walk.sums.push(a.r.sum);
      out.walk.faults = a.r.faults;
      const b = timed(() => passTranslate(walker, w, l));
      out.translate.ms.push(b.ms);
      out.translate.cpuMs.push(b.cpuMs);
      out.translate.sums.push(b.r.sum);
      out.translate.faults = b.r.faults;
    }
    return out;
  });
}

function check(cond: boolean, what: string): void {
  if (!cond) throw new Error(`walk benchmark: JS and C disagree: ${what}`);
}

const LIST_NAMES = ["user-4k", "kernel-2m"] as const;

const bench: Benchmark = {
  name: "walk",
  description: "4-level guest page-table walks (GuestWalker.walk / translate) vs C at -O2",
  run(ctx: BenchContext) {
    const quick = ctx.quick;
    const pages = quick ? 8192 : 65536;
    const count = quick ? 100_000 : 1_000_000;
    const warmup = quick ? 1 : 5;
    const runs = quick ? 2 : 7;
    const rounds = quick ? 1 : 3;

    ctx.log(`building a ${pages / 256} MiB guest...`);
    const t0 = performance.now();
    const g = buildGuest({ pages, seed: 1 });
    const lists = [userAccesses(g, count, 2), kernelAccesses(g, count, 3)];
    ctx.log(`  ${g.tableGfns.length} table frames, ${(performance.now() - t0).toFixed(0)} ms`);

    const image = join(BUILD_DIR, "walk.img");
    const listFiles = LIST_NAMES.map((n) => join(BUILD_DIR, `walk.${n}.acc`));
    writeImage(image, g);
    for (let i = 0; i < lists.length; i++) writeAccessList(listFiles[i], lists[i]);
    const exe = ctx.compileC("walk.c");
    // For reference: the C memory model without GuestPhysical's frame cache, i.e. the model
    // the JS had before the cache was added (BENCHMARKS.md, before/after).
    const exeNoCache = ctx.compileC("walk.c", "walk-nocache", ["-DVMMU_NO_FRAME_CACHE"]);
    // The C with the same restructuring as the JS (its fast path's structure transcribed):
    // the fair comparison for the JS as it is now; `exe` is the C reference as it was.
    const exeFast = ctx.compileC("walk.c", "walk-fast", ["-DWALK_FAST_PATH"]);
    const cArgs = [image, String(warmup), String(runs), ...listFiles];

    const js: ListRuns[][] = [];
    const c: CResult[] = [];
    const cNoCache: CResult[] = [];
    const cFast: CResult[] = [];
    for (let r = 0; r < rounds; r++) {
      ctx.log(`round ${r + 1}/${rounds}: JS`);
      js.push(runJs(g.walker, lists, warmup, runs, r === 0));
      ctx.log(`round ${r + 1}/${rounds}: C`);
      c.push(ctx.runC<CResult>(exe, cArgs));
      ctx.log(`round ${r + 1}/${rounds}: C without the frame cache`);
      cNoCache.push(ctx.runC<CResult>(exeNoCache, cArgs));
      ctx.log(`round ${r + 1}/${rounds}: C with the fast path`);
      cFast.push(ctx.runC<CResult>(exeFast, cArgs));
    }
    const allC = [...c, ...cNoCache, ...cFast];

    // Same results on both sides: every pass's checksum, the fault counts, final memory.
    for (let li = 0; li < lists.length; li++) {
      const j0 = js[0][li];
      for (const cr of allC) {
        const cl = cr.lists[li];
        check(cl.cold.sum === j0.cold.sum, `${LIST_NAMES[li]} cold checksum`);
        check(cl.cold.faults === j0.cold.faults && j0.cold.faults === 0, `${LIST_NAMES[li]} cold faults`);
        for (const v of ["walk", "translate"] as const)
          check(
            [...cl[v].sums, ...js.flatMap((jr) => jr[li][v].sums)].every((s) => s === j0.walk.sums[0]),
            `${LIST_NAMES[li]} ${v} checksums`,
          );
      }
    }
    const memHash = hashHostMemory(g.host);
    for (const cr of allC) check(cr.memHash === memHash, "host memory hash after the runs");
    check(g.walker.retries === 0 && allC.every((cr) => cr.retries === 0), "retries");

    const metrics: Metric[] = [];
    const details: Record<string, unknown> = {
      guestMiB: pages / 256,
      tableFrames: g.tableGfns.length,
      addresses: count,
      writePct: 25,
      warmup,
      runsPerRound: runs,
      rounds,
      memHash,
    };
    for (let li = 0; li < lists.length; li++) {
      const name = LIST_NAMES[li];
      const rate = (ms: number[]) => summarize(ms.map((m) => (count / m) * 1000));
      const per: Record<string, unknown> = {};
      for (const v of ["walk", "translate"] as const) {
        // Rates from process CPU time (robust to other load on the machine); wall-clock kept too.
        const jsRate = rate(js.flatMap((r) => r[li][v].cpuMs));
        const cRate = rate(c.flatMap((r) => r.lists[li][v].cpuMs));
        const jsWall = rate(js.flatMap((r) => r[li][v].ms));
        const cWall = rate(c.flatMap((r) => r.lists[li][v].ms));
        const cNoCacheRate = rate(cNoCache.flatMap((r) => r.lists[li][v].cpuMs));
        const cFastRate = rate(cFast.flatMap((r) => r.lists[li][v].cpuMs));
        const ratio = jsRate.median / cRate.median;
        const ratioFast = jsRate.median / cFastRate.median;
        per[v] = {
          js: jsRate,
          c: cRate,
          ratio,
          wall: { js: jsWall, c: cWall, ratio: jsWall.median / cWall.median },
          cNoFrameCache: cNoCacheRate,
          cFastPath: cFastRate,
          ratioFastPath: ratioFast,
        };
        metrics.push(
          { name: `${name} ${v} JS`, value: jsRate.median, unit: "walks/s", iqrPct: jsRate.iqrPct },
          { name: `${name} ${v} C`, value: cRate.median, unit: "walks/s", iqrPct: cRate.iqrPct },
          { name: `${name} ${v} JS/C`, value: ratio, unit: "ratio" },
          {
            name: `${name} ${v} C fast path`,
            value: cFastRate.median,
            unit: "walks/s",
            iqrPct: cFastRate.iqrPct,
          },
          { name: `${name} ${v} JS/C fast path`, value: ratioFast, unit: "ratio" },
          {
            name: `${name} ${v} C no frame cache`,
            value: cNoCacheRate.median,
            unit: "walks/s",
            iqrPct: cNoCacheRate.iqrPct,
          },
        );
        ctx.log(
          `  ${name.padEnd(10)} ${v.padEnd(9)} JS ${fmtRate(jsRate.median).padStart(11)} ±${jsRate.iqrPct.toFixed(1)}%` +
            `  C ${fmtRate(cRate.median).padStart(11)} ±${cRate.iqrPct.toFixed(1)}%  JS/C ${ratio.toFixed(3)}` +
            `  (wall: JS/C ${(jsWall.median / cWall.median).toFixed(3)})` +
            `  C fast path ${fmtRate(cFastRate.median)} JS/C ${ratioFast.toFixed(3)}`,
        );
      }
      details[name] = {
        ...per,
        // The first pass sets the accessed/dirty flags; the JS figure includes JIT warm-up.
        coldPassMs: { js: js[0][li].cold.ms, c: c.map((r) => r.lists[li].cold.ms) },
      };
    }
    return { metrics, details };
  },
};

export default bench;
