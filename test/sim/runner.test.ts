import { describe, expect, it } from "vitest";
import { guestLayout } from "../../src/guest/layout.js";
import { PROT_READ, PROT_WRITE } from "../../src/guest/os.js";
import { cyclesOf, DEFAULT_COSTS } from "../../src/sim/cost.js";
import { parseLackey, readLackeyFile, traceProgram } from "../../src/sim/lackey.js";
import { expandTouches, type Program, REGION_DATA, type SimOp, TouchBatch } from "../../src/sim/program.js";
import {
  ALL_MMUS,
  nativeFrom,
  parseMmuList,
  runProgram,
  SimulationError,
  simulate,
} from "../../src/sim/runner.js";
import { workload } from "../../src/sim/workloads.js";

/** 64 pages written (warm-up), then `rounds` reads of each: every read a TLB miss with TLB "none". */
function rereads(rounds: number): Program {
  return {
    name: "rereads",
    cpus: 1,
    ramPages: 8192,
    *ops(): Generator<SimOp> {
      yield { op: "spawn", proc: 0 };
      yield { op: "mmap", proc: 0, region: 0, pages: 64, prot: PROT_READ | PROT_WRITE };
      for (let p = 0; p < 64; p++)
        yield { op: "touch", proc: 0, region: 0, offset: p * 4096 + 8, kind: "write" };
      yield { op: "measure" };
      for (let r = 0; r < rounds; r++)
        for (let p = 0; p < 64; p++)
          yield { op: "touch", proc: 0, region: 0, offset: p * 4096 + 8, kind: "read" };
    },
  };
}

describe("memory references per walk", () => {
  it("shadow paging, 4-level guest, nothing cached: exactly 4 per completed walk (the whole run)", () => {
    for (const name of ["database", "churn", "server"]) {
      const r = runProgram(workload(name).create({ scale: 0.05 }), { mmu: "shadow", tlb: "none" });
      expect(r.completedWalks).toBeGreaterThan(1000);
      expect(r.refsPerCompletedWalk, name).toBe(4);
    }
  });

  it("shadow paging, 5-level guest: exactly 5", () => {
    const r = runProgram(workload("churn").create({ scale: 0.05 }), {
      mmu: "shadow-pv",
      guestPaging: "5level",
    });
    expect(r.refsPerCompletedWalk).toBe(5);
  });

  it("TDP, 4-level guest on 4-level EPT, 4 KiB pages, nothing cached: exactly 24 (4 + 4 × 4 + 4)", () => {
    const r = runProgram(rereads(3), { mmu: "tdp", tlb: "none", hostHugePages: false });
    expect(r.userAccesses).toBe(3 * 64);
    expect(r.completedWalks).toBe(r.accesses);
    expect(r.refsPerCompletedWalk).toBe(24);
    expect(r.exitsTotal).toBe(0);
    expect(r.guestPageFaults).toBe(0);
  });

  it("2-D walks: NPT as EPT, 5-level EPT 4 + 4 × 5 + 5 = 29, 5-level guest on 4-level EPT 5 + 5 × 4 + 4 = 29", () => {
    const o = { tlb: "none", hostHugePages: false } as const;
    expect(runProgram(rereads(1), { ...o, mmu: "tdp-npt" }).refsPerCompletedWalk).toBe(24);
    expect(runProgram(rereads(1), { ...o, mmu: "tdp-ept5" }).refsPerCompletedWalk).toBe(29);
    expect(runProgram(rereads(1), { ...o, mmu: "tdp", guestPaging: "5level" }).refsPerCompletedWalk).toBe(29);
    expect(runProgram(rereads(1), { ...o, mmu: "tdp", guestPaging: "pae" }).refsPerCompletedWalk).toBe(14);
  });

  it("caches cut the 2-D walk: a nested TLB and paging-structure caches", () => {
    const r = runProgram(rereads(3), {
      mmu: "tdp",
      tlb: "none",
      hostHugePages: false,
      caches: { pagingStructure: 32, nestedTlb: 64 },
    });
    expect(r.refsPerCompletedWalk).toBeLessThan(24);
    expect(r.refsPerCompletedWalk).toBeGreaterThanOrEqual(4);
  });
});

describe("runProgram", () => {
  it("measures after a measure op only, counts every cause and prices it with the cost model", () => {
    const r = runProgram(rereads(2), { mmu: "shadow", tlb: "none" });
    expect(r.ops).toBe(2 + 64 + 1 + 128);
    expect(r.userAccesses).toBe(128);
    expect(r.guest.demandFaults).toBe(0);
    expect(r.exitsTotal).toBe(0);
    expect(r.tlbMisses).toBe(128);
    expect(r.walkMemoryRefs).toBe(128 * 4);
    expect(r.cycles).toBe(128 * DEFAULT_COSTS.tlbMiss + 128 * 4 * DEFAULT_COSTS.walkRef);
    expect(r.cyclesByCause).toEqual(
      cyclesOf(
        {
          tlbHits: r.tlbHits,
          tlbMisses: r.tlbMisses,
          walkMemoryRefs: r.walkMemoryRefs,
          exits: r.exits,
          guestPageFaults: r.guestPageFaults,
          tlbFlushes: r.tlbFlushes,
        },
        DEFAULT_COSTS,
      ),
    );
  });

  it("records exits by reason, host tables and flushes", () => {
    const p = workload("churn").create({ scale: 0.05 });
    const shadow = runProgram(p, { mmu: "shadow" });
    expect(shadow.exits.shadowPageFault).toBeGreaterThan(0);
    expect(shadow.exits.invlpg).toBe(shadow.guest.invlpg);
    expect(shadow.hostTableFrames).toBeGreaterThan(2);
    expect(shadow.hostTableBytes).toBe(shadow.hostTableFrames * 4096);
    expect(shadow.tlbFlushes.invlpg).toBeGreaterThan(0);
    expect(shadow.mmuStats.pagesCreated).toBeGreaterThan(0);
    const npt = runProgram(p, { mmu: "tdp-npt", hostHugePages: false });
    expect(npt.exits.npf).toBeGreaterThan(0);
    expect(npt.exits.eptViolation).toBe(0);
    expect(npt.digest).toBe(shadow.digest);
  });

  it("refuses programs that name handles they never made, and unknown MMUs", () => {
    const bad: Program = {
      name: "bad",
      cpus: 1,
      ramPages: 4096,
      *ops(): Generator<SimOp> {
        yield { op: "spawn", proc: 0 };
        yield { op: "touch", proc: 0, region: 3, offset: 0, kind: "read" };
      },
    };
    expect(() => runProgram(bad, { mmu: "tdp" })).toThrow(SimulationError);
    expect(() => runProgram(bad, { mmu: "tdp" })).toThrow("operation 1 names region handle 3");
    expect(() => runProgram(bad, { mmu: "ept" as "tdp" })).toThrow('unknown MMU "ept"');
  });

  it("a touches batch is its expansion: identical results, checks and progress", () => {
    const fixture = readLackeyFile(new URL("../fixtures/lackey/true.lackey", import.meta.url).pathname);
    // 6,000 loads over 40 pages: more than one 4096-access batch in a quantum.
    const lines = Array.from(
      { length: 6000 },
      (_, i) => ` L ${(0x500000 + ((i * 7919) % (40 * 4096))).toString(16)},4`,
    );
    const big = parseLackey(`${lines.join("\n")}\n`, "big");
    const trace = traceProgram([fixture, big], { quantum: 5000 });
    const expanded = (p: Program): Program => ({ ...p, ops: (env) => expandTouches(p.ops(env)) });
    const sizes = [...trace.ops({ layout: guestLayout("4level") })].flatMap((o) =>
      o.op === "touches" ? [o.count ?? o.offset.length] : [],
    );
    expect(sizes).toContain(4096);
    for (const mmu of ["tdp", "shadow"] as const) {
      const progress: number[][] = [[], []];
      const [a, b] = [trace, expanded(trace)].map((p, i) =>
        runProgram(p, { mmu, checkEvery: 997 }, { onProgress: (n) => progress[i].push(n) }),
      );
      expect(a.userAccesses).toBeGreaterThan(9000);
      expect(a).toEqual(b);
      expect(a.checks).toBeGreaterThan(1);
      expect(progress[0]).toEqual(progress[1]);
    }
  });

  it("TouchBatch collects touches into batches that expand to them", () => {
    const b = new TouchBatch(3, 1, 2);
    expect(b.add(0, 8, "read")).toBe(false);
    expect(b.add(REGION_DATA, 12, "fetch")).toBe(true);
    const first = [...expandTouches([b.take()])];
    expect(b.count).toBe(0);
    b.add(5, 16, "write");
    expect(first).toEqual([
      { op: "touch", proc: 3, region: 0, offset: 8, kind: "read", cpu: 1 },
      { op: "touch", proc: 3, region: REGION_DATA, offset: 12, kind: "fetch", cpu: 1 },
    ]);
    expect([...expandTouches([b.take()])]).toEqual([
      { op: "touch", proc: 3, region: 5, offset: 16, kind: "write", cpu: 1 },
    ]);
  });

  it("refuses malformed touches batches, naming the access", () => {
    const batch = (op: Partial<Extract<SimOp, { op: "touches" }>>): Program => ({
      name: "batch",
      cpus: 1,
      ramPages: 4096,
      *ops(): Generator<SimOp> {
        yield { op: "spawn", proc: 0 };
        yield { op: "mmap", proc: 0, region: 0, pages: 2, prot: PROT_READ | PROT_WRITE };
        yield { op: "touches", proc: 0, region: 0, offset: [0, 4, 8], kind: [0, 1, 0], ...op };
      },
    });
    const run = (op: Partial<Extract<SimOp, { op: "touches" }>>) => () =>
      runProgram(batch(op), { mmu: "tdp" });
    expect(run({})).not.toThrow();
    expect(run({ kind: [0, 3, 0] })).toThrow("operation 3: touch kind 3 is not 0, 1 or 2");
    expect(run({ count: 4 })).toThrow("a touches batch of 4 accesses has 3 offsets and 3 kinds");
    expect(run({ region: [0, 0] })).toThrow("has 2 regions");
    expect(run({ offset: [0, 8192, 8] })).toThrow(
      "operation 3: offset 8192 is not an aligned word of region 0",
    );
    expect(run({ offset: [0, 6, 8] })).toThrow("offset 6 is not an aligned word");
    expect(run({ region: [0, 0, 5] })).toThrow("operation 4 names region handle 5");
    expect(runProgram(batch({ count: 0 }), { mmu: "tdp" }).ops).toBe(2);
    expect(runProgram(batch({}), { mmu: "tdp" }).ops).toBe(5);
  });

  it("parses MMU lists", () => {
    expect(parseMmuList("all")).toEqual([...ALL_MMUS]);
    expect(parseMmuList("shadow, tdp,shadow")).toEqual(["shadow", "tdp"]);
    expect(() => parseMmuList("tdp,vtx")).toThrow('unknown MMU "vtx"');
  });
});

describe("simulate and the native baseline", () => {
  it("derives native from the TDP run: one 1-D walk of the guest's depth per TLB miss, no exits", () => {
    const r = simulate(workload("server").create({ scale: 0.05 }), { mmus: ["shadow", "tdp"] });
    const tdp = r.runs[1];
    expect(r.native.source).toBe("tdp");
    expect(r.native.walks).toBe(tdp.tlbMisses);
    expect(r.native.walkMemoryRefs).toBe(tdp.tlbMisses * 4);
    expect(r.native.cyclesByCause.exits).toBe(0);
    expect(r.native).toEqual(nativeFrom(tdp));
    for (const x of r.runs) {
      expect(x.overheadVsNative).toBeCloseTo(x.cycles / r.native.cycles - 1, 12);
      expect(x.cycles).toBeGreaterThan(r.native.cycles);
    }
  });

  it("adds a TDP run for the baseline when none is asked for, and reports only the MMUs asked for", () => {
    const r = simulate(workload("churn").create({ scale: 0.05 }), {
      mmus: ["shadow-pv"],
      guestPaging: "pae",
      seed: 9,
    });
    expect(r.runs.map((x) => x.mmu)).toEqual(["shadow-pv"]);
    expect(r.native.refsPerWalk).toBe(2);
    expect(r.seed).toBe(9);
    expect(r.schemaVersion).toBe(1);
  });
});
