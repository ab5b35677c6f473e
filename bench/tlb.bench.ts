/**
 * TLB-hit accesses per second through the vCPU's hot path: `Vcpu.read32` and `Vcpu.write32`
 * (TDP VM, 4 KiB pages), against the C reference in bench/c/tlb.c.
 *
 * Workload: a 64 MiB guest (bench/lib/vm-guest.ts) whose first 64 user pages are the working
 * set: 64 consecutive 4 KiB pages fill the default TLB (skylake-l1d: 4 KiB array 16 sets × 4
 * ways, LRU) exactly, so after the warm-up every access hits. 1M random 4-byte-aligned
 * addresses in those pages for reads, another 1M for writes (all pages were written once,
 * so the entries are dirty and writes hit too). `stats.tlbMisses` must not move during the
 * timed passes (checked).
 *
 * The C reference gets the JS TLB's state after the warm-up (its slot arrays, with each
 * entry's deny word and frame number, and the context) and the same host memory, and runs
 * the same lookup and load; both sides print a checksum per read pass and a hash of host
 * memory at the end, which must agree.
 */

import { join } from "node:path";
import type { Vcpu } from "../src/index.js";
import type { AccessList } from "./lib/guest.js";
import { type BenchContext, type Benchmark, BUILD_DIR, type Metric } from "./lib/harness.js";
import { hashHostMemory, writeAccessList, writeImage } from "./lib/image.js";
import { Prng } from "./lib/prng.js";
import { fmtRate, summarize } from "./lib/stats.js";
import { writeTlbImage } from "./lib/tlb-image.js";
import { buildVmGuest, timed, userVa } from "./lib/vm-guest.js";

const WORKING_SET = 64;

function passRead(v: Vcpu, l: AccessList): number {
  const va = l.va;
  const access = l.access;
  let sum = 0;
  for (let i = 0; i < l.count; i++) sum = (sum + v.read32(va[2 * i + 1], va[2 * i], access[i])) | 0;
  return sum >>> 0;
}

function passWrite(v: Vcpu, l: AccessList): number {
  const va = l.va;
  const access = l.access;
  let n = 0;
  for (let i = 0; i < l.count; i++) if (v.write32(va[2 * i + 1], va[2 * i], access[i], i)) n++;
  return n;
}

function accesses(count: number, seed: number, access: number): AccessList {
  const rng = new Prng(seed);
  const va = new Uint32Array(count * 2);
  const acc = new Uint8Array(count).fill(access);
  for (let i = 0; i < count; i++) {
    const a = userVa(rng.below(WORKING_SET), rng.next() & 0xffc);
    va[2 * i] = a.lo;
    va[2 * i + 1] = a.hi;
  }
  return { count, va, access: acc };
}

interface Runs {
  ms: number[];
  cpuMs: number[];
  sums: number[];
}

interface CResult {
  read: Runs;
  write: Runs;
  accesses: number;
  hits: number;
  misses: number;
  memHash: number;
}

function check(cond: boolean, what: string): void {
  if (!cond) throw new Error(`tlb benchmark: ${what}`);
}

const bench: Benchmark = {
  name: "tlb",
  description: "TLB-hit accesses (Vcpu.read32 / write32, 4 KiB pages, working set in the TLB) vs C at -O2",
  run(ctx: BenchContext) {
    const quick = ctx.quick;
    const count = quick ? 100_000 : 1_000_000;
    const warmup = quick ? 1 : 5;
    const runs = quick ? 2 : 7;
    const rounds = quick ? 1 : 3;

    const g = buildVmGuest({ pages: 16384, seed: 1, mapped: WORKING_SET });
    const v = g.vcpu;
    for (let i = 0; i < WORKING_SET; i++) {
      const a = userVa(i);
      check(v.write32(a.hi, a.lo, g.write, i), "warm-up write faulted");
    }
    const reads = accesses(count, 2, g.read);
    const writes = accesses(count, 3, g.write);
    passWrite(v, writes); // memory as every later pass leaves it (writes are idempotent)
    check(v.tlb.entriesInUse === WORKING_SET, `${v.tlb.entriesInUse} TLB entries, expected ${WORKING_SET}`);

    const image = join(BUILD_DIR, "tlb.img");
    const tlbImage = join(BUILD_DIR, "tlb.tlb");
    const lists = [join(BUILD_DIR, "tlb.read.acc"), join(BUILD_DIR, "tlb.write.acc")];
    writeImage(image, {
      memslots: g.vm.memslots,
      hostSpace: g.vm.hostSpace,
      host: g.vm.host,
      walker: g.vm.mmu.walker,
    });
    writeTlbImage(tlbImage, v.tlb);
    writeAccessList(lists[0], reads);
    writeAccessList(lists[1], writes);
    const exe = ctx.compileC("tlb.c");

    const js: { read: Runs; write: Runs }[] = [];
    const c: CResult[] = [];
    for (let i = 0; i < warmup; i++) {
      passRead(v, reads);
      passWrite(v, writes);
    }
    const missesBefore = v.stats.tlbMisses;
    const hitsBefore = v.stats.tlbHits;
    let timedAccesses = 0;
    for (let r = 0; r < rounds; r++) {
      ctx.log(`round ${r + 1}/${rounds}: JS`);
      const jr: { read: Runs; write: Runs } = {
        read: { ms: [], cpuMs: [], sums: [] },
        write: { ms: [], cpuMs: [], sums: [] },
      };
      for (let i = 0; i < runs; i++) {
        const a = timed(() => passRead(v, reads));
        jr.read.ms.push(a.ms);
        jr.read.cpuMs.push(a.cpuMs);
        jr.read.sums.push(a.r);
        const b = timed(() => passWrite(v, writes));
        jr.write.ms.push(b.ms);
        jr.write.cpuMs.push(b.cpuMs);
        jr.write.sums.push(b.r);
        timedAccesses += 2 * count;
      }
      js.push(jr);
      ctx.log(`round ${r + 1}/${rounds}: C`);
      c.push(ctx.runC<CResult>(exe, [image, tlbImage, String(warmup), String(runs), ...lists]));
    }
    // Every timed access hit.
    check(v.stats.tlbMisses === missesBefore, `${v.stats.tlbMisses - missesBefore} TLB misses while timing`);
    check(v.stats.tlbHits - hitsBefore === timedAccesses, "hit count");
    const memHash = hashHostMemory(g.vm.host);
    const readSum = js[0].read.sums[0];
    for (const cr of c) {
      check(cr.misses === 0 && cr.hits === cr.accesses, "C side missed");
      check(cr.memHash === memHash, "JS and C disagree: host memory hash");
      check(
        [...cr.read.sums, ...js.flatMap((j) => j.read.sums)].every((s) => s === readSum),
        "read checksums",
      );
      check(
        [...cr.write.sums, ...js.flatMap((j) => j.write.sums)].every((s) => s === count),
        "write counts",
      );
    }

    const metrics: Metric[] = [];
    const details: Record<string, unknown> = {
      workingSetPages: WORKING_SET,
      tlb: v.tlb.spec,
      accessesPerPass: count,
      warmup,
      runsPerRound: runs,
      rounds,
      memHash,
    };
    const rate = (ms: number[]) => summarize(ms.map((m) => (count / m) * 1000));
    for (const op of ["read", "write"] as const) {
      const jsRate = rate(js.flatMap((r) => r[op].cpuMs));
      const cRate = rate(c.flatMap((r) => r[op].cpuMs));
      const ratio = jsRate.median / cRate.median;
      const jsWall = rate(js.flatMap((r) => r[op].ms));
      const cWall = rate(c.flatMap((r) => r[op].ms));
      details[op] = {
        js: jsRate,
        c: cRate,
        ratio,
        wall: { js: jsWall, c: cWall, ratio: jsWall.median / cWall.median },
      };
      metrics.push(
        { name: `${op}32 hit JS`, value: jsRate.median, unit: "accesses/s", iqrPct: jsRate.iqrPct },
        { name: `${op}32 hit C`, value: cRate.median, unit: "accesses/s", iqrPct: cRate.iqrPct },
        { name: `${op}32 hit JS/C`, value: ratio, unit: "ratio" },
      );
      ctx.log(
        `  ${op}32  JS ${fmtRate(jsRate.median).padStart(11)} ±${jsRate.iqrPct.toFixed(1)}%` +
          `  C ${fmtRate(cRate.median).padStart(11)} ±${cRate.iqrPct.toFixed(1)}%  JS/C ${ratio.toFixed(3)}`,
      );
    }
    return { metrics, details };
  },
};

export default bench;
