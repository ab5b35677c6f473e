/**
 * EPT violations handled per second by the TDP MMU (JS only; the target is an absolute rate).
 *
 *  - raw: `TdpMmu.handleFault` called directly for every page of a 256 MiB memslot, in a random
 *    order, on fresh tables (a new TdpMmu per pass: the EPT tables are allocated as the faults
 *    come, one leaf per fault; host pages already populated, 4 KiB backing, so 4 KiB leaves);
 *  - access path: the guest touches each of its 65,536 data pages once through `Vcpu.read32`
 *    (TLB miss, 2-D walk, EPT violation on the final address, handleFault, walk again, TLB
 *    fill). Before each pass the data memslot's EPT leaves are zapped (the tables stay, and
 *    the guest's own tables, in their own memslot, stay mapped), so each access makes exactly
 *    one EPT violation (checked).
 * Rates from process CPU time; several passes, median and spread.
 */

import { ACCESS_WRITE, MMU_RETRY, TdpMmu, Vm } from "../src/index.js";
import { GUEST_CPU } from "./lib/guest.js";
import type { BenchContext, Benchmark, Metric } from "./lib/harness.js";
import { Prng } from "./lib/prng.js";
import { fmtRate, type Summary, summarize } from "./lib/stats.js";
import { buildVmGuest, timed, userVa } from "./lib/vm-guest.js";

function check(cond: boolean, what: string): void {
  if (!cond) throw new Error(`tdp-fault benchmark: ${what}`);
}

function rawPass(vm: Vm, order: Uint32Array): { ms: number; cpuMs: number; leaves: number } {
  const mmu = new TdpMmu(vm, vm.cpu);
  const t = timed(() => {
    let ok = 0;
    for (let i = 0; i < order.length; i++)
      if (mmu.handleFault(0, order[i] * 4096, ACCESS_WRITE, false) === MMU_RETRY) ok++;
    return ok;
  });
  check(
    t.r === order.length && mmu.stats.leavesInstalled === order.length,
    "raw: every fault installs a leaf",
  );
  mmu.destroy();
  return { ms: t.ms, cpuMs: t.cpuMs, leaves: mmu.stats.leavesInstalled };
}

const bench: Benchmark = {
  name: "tdp-fault",
  description: "EPT violations handled (TdpMmu.handleFault, and guest first touches through the vCPU)",
  run(ctx: BenchContext) {
    const quick = ctx.quick;
    const pages = quick ? 8192 : 65536;
    const runs = quick ? 2 : 15;
    const warmup = quick ? 1 : 3;

    // Raw handler.
    const vm = new Vm({ cpu: GUEST_CPU, hostMemory: (pages + 4096) * 4096 });
    vm.addMemslot({ id: 0, baseGfn: 0, pages, hvaPage: 0x7f3a00000 });
    const rng = new Prng(1);
    for (const gfn of rng.shuffle(Uint32Array.from({ length: pages }, (_, i) => i)))
      vm.physical.frameWords(gfn);
    const order = rng.shuffle(Uint32Array.from({ length: pages }, (_, i) => i));
    for (let i = 0; i < warmup; i++) rawPass(vm, order);
    const raw: { ms: number[]; cpuMs: number[] } = { ms: [], cpuMs: [] };
    for (let i = 0; i < runs; i++) {
      const p = rawPass(vm, order);
      raw.ms.push(p.ms);
      raw.cpuMs.push(p.cpuMs);
    }

    // Access path.
    const g = buildVmGuest({ pages, seed: 2 });
    const v = g.vcpu;
    const mmu = g.vm.mmu;
    const touch = () => {
      let sum = 0;
      for (let i = 0; i < pages; i++) {
        const a = userVa(i);
        sum = (sum + v.read32(a.hi, a.lo, g.read)) | 0;
      }
      return sum;
    };
    touch(); // maps the guest's tables (memslot 1) for good, sets the guest's accessed flags
    const path: { ms: number[]; cpuMs: number[] } = { ms: [], cpuMs: [] };
    for (let i = 0; i < warmup + runs; i++) {
      mmu.zapRange(0, pages);
      const e0 = v.exits.eptViolation;
      const f0 = mmu.stats.leavesInstalled;
      const t = timed(touch);
      check(
        v.exits.eptViolation - e0 === pages && mmu.stats.leavesInstalled - f0 === pages,
        "one violation per access",
      );
      check(v.stats.guestFaults === 0, "no guest faults");
      if (i < warmup) continue;
      path.ms.push(t.ms);
      path.cpuMs.push(t.cpuMs);
    }
    check(g.vm.check().length === 0, "TDP MMU audit");

    const rate = (ms: number[]): Summary => summarize(ms.map((m) => (pages / m) * 1000));
    const rawRate = rate(raw.cpuMs);
    const pathRate = rate(path.cpuMs);
    ctx.log(`  handleFault, fresh tables   ${fmtRate(rawRate.median)} ±${rawRate.iqrPct.toFixed(1)}%`);
    ctx.log(`  first touch via read32      ${fmtRate(pathRate.median)} ±${pathRate.iqrPct.toFixed(1)}%`);
    const metrics: Metric[] = [
      { name: "handleFault (raw)", value: rawRate.median, unit: "faults/s", iqrPct: rawRate.iqrPct },
      { name: "first touch via read32", value: pathRate.median, unit: "faults/s", iqrPct: pathRate.iqrPct },
    ];
    return {
      metrics,
      details: {
        pages,
        runs,
        warmup,
        raw: rawRate,
        rawWall: rate(raw.ms),
        accessPath: pathRate,
        accessPathWall: rate(path.ms),
      },
    };
  },
};

export default bench;
