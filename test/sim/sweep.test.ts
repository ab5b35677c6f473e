import { describe, expect, it } from "vitest";
import { DEFAULT_COSTS } from "../../src/sim/cost.js";
import {
  assembleSweep,
  expandGrid,
  gridHash,
  type PointRecord,
  parseShard,
  parseSweepConfig,
  pointOf,
  pointRecord,
  pointRecordProblem,
  runPoint,
  SweepConfigError,
  shardOf,
  sweepConfigFrom,
  sweepCsv,
} from "../../src/sim/sweep.js";

const base = { workloads: ["churn"], mmus: ["tdp", "shadow"] };

function err(value: unknown): string {
  try {
    sweepConfigFrom(value, "grid.json");
  } catch (e) {
    expect(e).toBeInstanceOf(SweepConfigError);
    return (e as Error).message;
  }
  throw new Error("no error");
}

describe("sweep grid files", () => {
  it("fills defaults and normalises TLB specs", () => {
    const c = sweepConfigFrom(base);
    expect(c.tlbs).toEqual(["4k:16x4,2m:8x4,1g:1x4,policy=lru"]);
    expect(c.guestPaging).toEqual(["4level"]);
    expect(c.seeds).toEqual([1]);
    expect(c.scales).toEqual([1]);
    expect(c.hostPages).toEqual(["2m"]);
    expect(c.caches).toEqual([{ pagingStructure: 0, nestedTlb: 0 }]);
    expect(c.costs).toEqual({ ...DEFAULT_COSTS, tlbFlushByKind: {} });
    expect(sweepConfigFrom({ ...base, mmus: "all" }).mmus).toEqual([
      "tdp",
      "tdp-ept5",
      "tdp-npt",
      "shadow",
      "shadow-pv",
    ]);
  });

  it("adds tdp for the native baseline unless native is false", () => {
    expect(sweepConfigFrom({ workloads: ["churn"], mmus: ["shadow"] }).mmus).toEqual(["shadow", "tdp"]);
    expect(sweepConfigFrom({ workloads: ["churn"], mmus: ["shadow"], native: false }).mmus).toEqual([
      "shadow",
    ]);
  });

  it("rejects unknown keys, wrong types, empty axes, duplicates and unknown names, naming the key", () => {
    expect(err([])).toBe("grid.json: expected a JSON object, got []");
    expect(err({ ...base, workload: ["x"] })).toMatch(
      /^grid\.json: unknown key "workload" \(known: name, workloads, mmus,/,
    );
    expect(err({ mmus: ["tdp"] })).toMatch(
      /^grid\.json: missing "workloads": a non-empty array of workload names/,
    );
    expect(err({ ...base, workloads: "churn" })).toMatch(
      /"workloads" must be a non-empty array of workload names .*got "churn"/,
    );
    expect(err({ ...base, workloads: [] })).toBe(
      'grid.json: "workloads" is empty: an axis needs at least one value',
    );
    expect(err({ ...base, workloads: ["churn", "nope"] })).toBe(
      'grid.json: "workloads[1]": unknown workload "nope" (known: compile, database, server, stream, churn)',
    );
    expect(err({ ...base, mmus: ["tdp", "ept"] })).toMatch(/"mmus\[1\]": unknown MMU "ept" \(known: tdp, /);
    expect(err({ ...base, mmus: "some" })).toMatch(/"mmus" must be "all" or a non-empty array/);
    expect(err({ ...base, mmus: ["tdp", "tdp"] })).toBe('grid.json: "mmus[1]": duplicate value "tdp"');
    expect(err({ ...base, tlbs: ["skylake-l1d", "4k:16x4,2m:8x4,1g:1x4"] })).toMatch(
      /"tlbs\[1\]": duplicate value/,
    );
    expect(err({ ...base, tlbs: ["huge-tlb"] })).toMatch(/^grid\.json: "tlbs\[0\]": /);
    expect(err({ ...base, tlbs: [16] })).toMatch(/"tlbs\[0\]" must be a TLB preset or spec string, got 16/);
    expect(err({ ...base, guestPaging: ["3level"] })).toMatch(/unknown paging mode "3level"/);
    expect(err({ ...base, seeds: [1, -2] })).toBe(
      'grid.json: "seeds[1]" must be a non-negative integer, got -2',
    );
    expect(err({ ...base, scales: [0] })).toBe('grid.json: "scales[0]" must be a number in (0, 1000], got 0');
    expect(err({ ...base, hostPages: ["1g"] })).toMatch(/unknown host page size "1g" \(known: 2m, 4k\)/);
    expect(err({ ...base, caches: [{ psc: 4 }] })).toBe(
      'grid.json: unknown key "caches[0].psc" (known: pagingStructure, nestedTlb)',
    );
    expect(err({ ...base, caches: [{ nestedTlb: 12 }] })).toBe(
      'grid.json: "caches[0].nestedTlb": 12 entries is not 0 or a power of two',
    );
    expect(err({ ...base, pcid: "yes" })).toBe('grid.json: "pcid" must be a boolean, got "yes"');
    expect(err({ ...base, cpu: "z80" })).toMatch(/"cpu": unknown CPU model "z80"/);
    expect(err({ ...base, costs: { walkRef: -1 } })).toMatch(
      /^grid\.json: grid\.json: "costs": "walkRef" must be a non-negative number/,
    );
    expect(err({ ...base, costs: { exits: { vmcall: 1 } } })).toMatch(/unknown key "exits\.vmcall"/);
    expect(err({ ...base, costs: "c.json" })).toMatch(/cannot be read here/);
  });

  it("reports invalid JSON and reads cost files through the callback", () => {
    expect(() => parseSweepConfig("{", "g.json")).toThrow(/^g\.json: not valid JSON/);
    const c = parseSweepConfig(JSON.stringify({ ...base, costs: "c.json" }), "g.json", (f) => {
      expect(f).toBe("c.json");
      return { walkRef: 40 };
    });
    expect(c.costs.walkRef).toBe(40);
  });
});

describe("sweep points", () => {
  const grid = sweepConfigFrom({
    workloads: ["churn", "compile", "database"],
    mmus: ["tdp", "shadow", "shadow-pv"],
    tlbs: ["skylake-l1d", "tiny"],
    guestPaging: ["4level", "pae"],
    seeds: [1, 2],
    scales: [0.05],
  });
  const points = expandGrid(grid);

  it("expands the grid into points with distinct ids, sorted by id", () => {
    expect(points).toHaveLength(3 * 3 * 2 * 2 * 2);
    expect(new Set(points.map((p) => p.id)).size).toBe(points.length);
    expect(points.map((p) => p.id)).toEqual(points.map((p) => p.id).sort());
    expect(points[0].id).toMatch(/^churn-shadow-4level-[0-9a-f]{12}$/);
  });

  it("gives ids that depend only on the parameters (not on axis order or costs)", () => {
    const reordered = sweepConfigFrom({
      workloads: ["database", "compile", "churn"],
      mmus: ["shadow-pv", "tdp", "shadow"],
      tlbs: ["tiny", "4k:16x4,2m:8x4,1g:1x4"],
      guestPaging: ["pae", "4level"],
      seeds: [2, 1],
      scales: [0.05],
      costs: { walkRef: 99 },
    });
    expect(expandGrid(reordered).map((p) => p.id)).toEqual(points.map((p) => p.id));
    expect(gridHash(expandGrid(reordered))).toBe(gridHash(points));
    expect(pointOf({ ...points[0].params }).id).toBe(points[0].id);
    expect(pointOf({ ...points[0].params, seed: 3 }).id).not.toBe(points[0].id);
    // Points of one configuration under different MMUs share a group (the native baseline).
    const byGroup = new Map<string, string[]>();
    for (const p of points) byGroup.set(p.group, [...(byGroup.get(p.group) ?? []), p.params.mmu]);
    expect(byGroup.size).toBe(points.length / 3);
    for (const mmus of byGroup.values()) expect(mmus.sort()).toEqual(["shadow", "shadow-pv", "tdp"]);
  });

  it("partitions the points exactly into shards", () => {
    for (const n of [1, 2, 3, 5, 7, 72, 100]) {
      const shards = Array.from({ length: n }, (_, k) => shardOf(points, { index: k + 1, count: n }));
      const all = shards.flat().map((p) => p.id);
      expect(all.sort()).toEqual(points.map((p) => p.id).sort());
      expect(new Set(all).size).toBe(points.length);
      const sizes = shards.map((s) => s.length);
      expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
    }
    expect(shardOf(points, { index: 2, count: 5 }).map((p) => p.id)).toEqual(
      points.filter((_, i) => i % 5 === 1).map((p) => p.id),
    );
  });

  it("parses K/N", () => {
    expect(parseShard("3/8")).toEqual({ index: 3, count: 8 });
    expect(parseShard(" 1 / 1 ")).toEqual({ index: 1, count: 1 });
    for (const bad of ["0/4", "5/4", "1/0", "1", "a/b", "-1/2"])
      expect(() => parseShard(bad)).toThrow(RangeError);
  });
});

describe("sweep records and results", () => {
  const c = sweepConfigFrom({ workloads: ["churn"], mmus: ["tdp", "shadow"], scales: [0.05] });
  const points = expandGrid(c);
  const records = new Map<string, PointRecord>(points.map((p) => [p.id, pointRecord(p, runPoint(p.params))]));

  it("checks stored records against their point", () => {
    const [a, b] = points;
    const ra = records.get(a.id)!;
    expect(pointRecordProblem(JSON.parse(JSON.stringify(ra)), a)).toBeNull();
    expect(pointRecordProblem(ra, b)).toMatch(/record of/);
    expect(pointRecordProblem({ ...ra, params: { ...ra.params, seed: 9 } }, a)).toBe("its parameters differ");
    expect(pointRecordProblem({ ...ra, result: { ...ra.result, cycles: undefined } }, a)).toBe(
      "result.cycles is missing",
    );
    expect(pointRecordProblem([], a)).toBe("not a JSON object");
    expect(pointRecordProblem({ ...ra, schemaVersion: 2 }, a)).toBe("schema version 2");
  });

  it("assembles results like simulate: same counters, native from the TDP point, re-priced cycles", async () => {
    const { simulate } = await import("../../src/sim/runner.js");
    const { churn } = await import("../../src/sim/workloads.js");
    const rep = simulate(churn.create({ scale: 0.05, seed: 1 }), { mmus: ["tdp", "shadow"] });
    const r = assembleSweep(c, points, records);
    expect(r.complete).toBe(2);
    expect(r.missing).toEqual([]);
    expect(r.problems).toEqual([]);
    const byMmu = Object.fromEntries(r.points.map((p) => [p.result.mmu, p.result]));
    expect(byMmu.tdp).toEqual(rep.runs[0]);
    expect(byMmu.shadow).toEqual(rep.runs[1]);
    expect(Object.values(r.native)).toEqual([rep.native]);
    // Another cost model re-prices the same records.
    const dear = assembleSweep({ ...c, costs: { ...c.costs, walkRef: 50 } }, points, records);
    const d = dear.points.find((p) => p.result.mmu === "tdp")!.result;
    expect(d.cyclesByCause.walks).toBe(2 * byMmu.tdp.cyclesByCause.walks);
    // A missing point is listed.
    const part = assembleSweep(c, points, new Map([[points[0].id, records.get(points[0].id)!]]));
    expect(part.missing).toEqual([points[1].id]);
  });

  it("writes one CSV row per point with the run record's fields", () => {
    const csv = sweepCsv(assembleSweep(c, points, records));
    const lines = csv.trimEnd().split("\n");
    expect(lines).toHaveLength(3);
    const head = lines[0].split(",");
    expect(head.slice(0, 8)).toEqual([
      "id",
      "group",
      "workload",
      "seed",
      "scale",
      "mmu",
      "guestPaging",
      "tlb",
    ]);
    for (const f of [
      "cycles",
      "tlbMisses",
      "walkMemoryRefs",
      "exits.shadowPageFault",
      "overheadVsNative",
      "digest",
    ])
      expect(head).toContain(f);
    // The TLB spec has commas: quoted.
    expect(lines[1]).toContain('"4k:16x4,2m:8x4,1g:1x4,policy=lru"');
  });
});
