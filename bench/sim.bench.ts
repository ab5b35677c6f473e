/**
 * Simulator throughput and footprint (BENCHMARKS.md, "Simulator").
 *
 * 1. Simulated accesses per second of the runner's operation loop (`runProgram`), per MMU,
 *    for a TLB-friendly workload (`hot`: one process touching 48 pages round-robin, every
 *    access a TLB hit after the first pass; as one `touch` operation per access, and as
 *    `hot-batched`, one `touches` batch per round, the form trace replay uses) and a
 *    TLB-hostile one (`database`, scale 1).
 *    Only the operation loop is timed: the program's operation generator is wrapped so that
 *    the clock starts when the runner asks for the first operation (after the VM and the
 *    guest have booted) and stops when it has consumed the last (before the results are
 *    gathered). Rates are per second of process CPU time (the machine is shared). Two rates:
 *    user touches (the program's operations) and vCPU accesses (touches plus the guest
 *    kernel's own accesses: page-table writes, page clearing).
 * 2. Sweep speed-up: a small grid (8 points) with 1 and then 2 worker threads; wall-clock.
 * 3. Footprint: a 4 GiB guest (1,048,576 pages of RAM) with one mapping of 1,048,576 pages,
 *    each read once (a million demand faults, a million mapped PTEs); process RSS and heap
 *    after the run. Guest memory lives in lazily committed typed arrays: the 4 GiB are
 *    reserved (arrayBuffers) but pages never written are never resident.
 */

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  expandGrid,
  type MmuName,
  type Program,
  type ProgramEnv,
  runProgram,
  runSweep,
  type SimOp,
  sweepConfigFrom,
  workload,
} from "../src/index.js";
import type { BenchContext, Benchmark, Metric } from "./lib/harness.js";
import { hotProgram, millionProgram } from "./lib/sim-programs.js";
import { fmtRate, summarize } from "./lib/stats.js";

const cpuSeconds = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

/**
 * Wraps a program so that the CPU time of its operation loop is recorded: the clock starts
 * at the first `next()` and stops when the stream ends. A plain iterator, not a generator
 * with `yield*`, so the wrapper adds one inlinable call per operation and no resume.
 */
function timedProgram(p: Program): { program: Program; seconds: () => number } {
  let t0 = 0;
  let t1 = 0;
  return {
    program: {
      name: p.name,
      cpus: p.cpus,
      ramPages: p.ramPages,
      ops(env: ProgramEnv): Iterable<SimOp> {
        const inner = p.ops(env)[Symbol.iterator]();
        const it: Iterator<SimOp> & Iterable<SimOp> = {
          next() {
            if (t0 === 0) t0 = cpuSeconds();
            const r = inner.next();
            if (r.done === true) t1 = cpuSeconds();
            return r;
          },
          [Symbol.iterator]() {
            return it;
          },
        };
        return it;
      },
    },
    seconds: () => t1 - t0,
  };
}

const MMUS: MmuName[] = ["tdp", "shadow", "shadow-pv"];

function rates(ctx: BenchContext, name: string, make: () => Program, reps: number, metrics: Metric[]) {
  const details: Record<string, unknown> = {};
  for (const mmu of MMUS) {
    const user: number[] = [];
    const all: number[] = [];
    let last = null as ReturnType<typeof runProgram> | null;
    for (let i = 0; i < reps; i++) {
      const t = timedProgram(make());
      last = runProgram(t.program, { mmu });
      const s = t.seconds();
      user.push(last.userAccesses / s);
      all.push(last.accesses / s);
    }
    const u = summarize(user);
    const a = summarize(all);
    ctx.log(
      `${name} ${mmu}: ${fmtRate(u.median)} user touches, ${fmtRate(a.median)} vCPU accesses (IQR ±${u.iqrPct.toFixed(0)}%; ${last!.userAccesses} touches, miss rate ${(last!.tlbMissRate * 100).toFixed(2)}%)`,
    );
    metrics.push(
      { name: `${name} ${mmu} touches/s`, value: u.median, unit: "1/s", summary: u },
      { name: `${name} ${mmu} accesses/s`, value: a.median, unit: "1/s", summary: a },
    );
    details[mmu] = {
      userAccesses: last!.userAccesses,
      accesses: last!.accesses,
      tlbMissRate: last!.tlbMissRate,
    };
  }
  return details;
}

const bench: Benchmark = {
  name: "sim",
  description:
    "simulated accesses/s of the runner loop per MMU, sweep speed-up on 2 workers, 4 GiB guest footprint",
  async run(ctx) {
    const metrics: Metric[] = [];
    const reps = ctx.quick ? 1 : 5;
    // 1. Throughput. Warm-up runs of every MMU and form first, as long as the timed ones:
    // V8 settles on its optimised code only after a few million touches (runs of 100 rounds
    // measured 20-30 % lower, and the first timed runs lower than the later ones).
    const rounds = ctx.quick ? 2000 : 40000;
    if (!ctx.quick)
      for (let i = 0; i < 2; i++)
        for (const mmu of MMUS) {
          runProgram(hotProgram(48, rounds), { mmu });
          runProgram(hotProgram(48, rounds, true), { mmu });
        }
    const hotDetails = rates(ctx, "hot", () => hotProgram(48, rounds), reps, metrics);
    const batchedDetails = rates(ctx, "hot-batched", () => hotProgram(48, rounds, true), reps, metrics);
    const dbDetails = rates(
      ctx,
      "database",
      () => workload("database").create({ scale: ctx.quick ? 0.1 : 1 }),
      ctx.quick ? 1 : 3,
      metrics,
    );

    // 2. Sweep speed-up: the same 8-point grid into fresh directories with 1 and 2 workers.
    const grid = sweepConfigFrom({
      workloads: ["churn", "compile", "database", "server"],
      mmus: ["tdp", "shadow"],
      scales: [ctx.quick ? 0.05 : 1],
    });
    const wall: Record<number, number> = {};
    for (const jobs of [1, 2]) {
      const dir = mkdtempSync(join(tmpdir(), "vmmu-sim-bench-"));
      try {
        const t0 = performance.now();
        const s = await runSweep(grid, { out: dir, jobs });
        wall[jobs] = (performance.now() - t0) / 1000;
        if (s.ran !== expandGrid(grid).length) throw new Error(`sweep with ${jobs} jobs ran ${s.ran} points`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
    const speedup = wall[1] / wall[2];
    ctx.log(
      `sweep of 8 points: ${wall[1].toFixed(1)} s on 1 worker, ${wall[2].toFixed(1)} s on 2: ${speedup.toFixed(2)}×`,
    );
    metrics.push({ name: "sweep speed-up 2 vs 1 workers", value: speedup, unit: "ratio", wall });

    // 3. Footprint of a 4 GiB guest with a million mapped pages.
    let footprint: Record<string, number> = {};
    if (!ctx.quick) {
      const t0 = performance.now();
      let peakRss = 0;
      const r = runProgram(
        millionProgram(),
        { mmu: "tdp" },
        {
          onProgress: () => {
            peakRss = Math.max(peakRss, process.memoryUsage.rss());
          },
        },
      );
      const m = process.memoryUsage();
      footprint = {
        seconds: (performance.now() - t0) / 1000,
        mappedPages: r.guest.demandFaults,
        peakRssMiB: Math.max(peakRss, m.rss) / 2 ** 20,
        heapUsedMiB: m.heapUsed / 2 ** 20,
        arrayBuffersMiB: m.arrayBuffers / 2 ** 20,
      };
      ctx.log(
        `4 GiB guest, ${r.guest.demandFaults} pages mapped: peak RSS ${footprint.peakRssMiB.toFixed(0)} MiB, heap ${footprint.heapUsedMiB.toFixed(0)} MiB, array buffers reserved ${footprint.arrayBuffersMiB.toFixed(0)} MiB, ${footprint.seconds.toFixed(1)} s`,
      );
      metrics.push({ name: "4 GiB guest peak RSS", value: footprint.peakRssMiB, unit: "MiB" });
    }
    return {
      metrics,
      details: {
        hot: hotDetails,
        hotBatched: batchedDetails,
        database: dbDetails,
        sweepWallSeconds: wall,
        footprint,
      },
    };
  },
};

export default bench;
