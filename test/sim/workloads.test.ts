import { describe, expect, it } from "vitest";
import type { GuestPagingMode } from "../../src/guest/layout.js";
import { guestLayout } from "../../src/guest/layout.js";
import { expandTouches } from "../../src/sim/program.js";
import { simulate } from "../../src/sim/runner.js";
import { WORKLOADS, workload } from "../../src/sim/workloads.js";

const SCALE = 0.05;

describe.each(WORKLOADS.map((w) => [w.name, w] as const))("workload %s", (_name, w) => {
  it("runs under TDP, shadow and shadow-pv with equal digests and clean audits", () => {
    const r = simulate(w.create({ scale: SCALE, seed: 11 }), { checkEvery: 400 });
    expect(r.problems).toEqual([]);
    expect(r.digestsAgree).toBe(true);
    expect(r.runs.map((x) => x.mmu)).toEqual(["tdp", "shadow", "shadow-pv"]);
    for (const x of r.runs) {
      expect(x.checks).toBeGreaterThan(0);
      expect(x.userAccesses).toBeGreaterThan(0);
      expect(x.guest.segv).toBe(0);
      expect(x.guest.oom).toBe(0);
    }
    // The guest sees the same thing everywhere: same faults it handled, same accesses.
    const [tdp, shadow, pv] = r.runs;
    expect(shadow.guest.demandFaults).toBe(tdp.guest.demandFaults);
    expect(pv.guest.cowBreaks).toBe(tdp.guest.cowBreaks);
    expect(shadow.accesses).toBe(tdp.accesses);
    // Only the paravirtual guest makes hypercalls; only TDP has EPT exits.
    expect(pv.exits.hypercall).toBeGreaterThan(0);
    expect(shadow.exits.hypercall).toBe(0);
    expect(shadow.exits.eptViolation + pv.exits.eptViolation).toBe(0);
  });

  it("is deterministic in its seed", () => {
    // Expanded: batches reuse their arrays, so the operations are read as the runner reads them.
    const ops = (seed: number) => [
      ...expandTouches(w.create({ scale: SCALE, seed }).ops({ layout: guestLayout("4level") })),
    ];
    const a = ops(5);
    const b = ops(5);
    const c = ops(6);
    expect(b).toEqual(a);
    expect(c).not.toEqual(a);
    expect(w.create({ scale: SCALE, seed: 5 }).opCount).toBe(a.length);
  });
});

describe("workloads", () => {
  it("scale grows the work", () => {
    for (const w of WORKLOADS)
      expect(w.create({ scale: 0.5 }).opCount, w.name).toBeGreaterThan(w.create({ scale: 0.05 }).opCount!);
  });

  it("each has an intent; unknown names and bad scales are refused", () => {
    for (const w of WORKLOADS) expect(w.intent.length).toBeGreaterThan(20);
    expect(() => workload("nope")).toThrow(
      'unknown workload "nope" (known: compile, database, server, stream, churn)',
    );
    expect(() => workload("stream").create({ scale: 0 })).toThrow("scale 0 must be a number in (0, 1000]");
    expect(() => workload("stream").create({ seed: -1 })).toThrow("seed -1 is not a non-negative integer");
  });

  it.each(["32bit", "pae", "5level"] as GuestPagingMode[])(
    "runs in a %s guest with equal digests",
    (mode) => {
      for (const name of ["compile", "churn"]) {
        const r = simulate(workload(name).create({ scale: SCALE, seed: 2 }), {
          guestPaging: mode,
          mmus: ["tdp", "tdp-npt", "shadow", "shadow-pv"],
          checkEvery: 1000,
        });
        expect(r.problems, `${name} ${mode}`).toEqual([]);
      }
    },
  );

  it("stream is served by huge pages: few TLB misses under TDP", () => {
    const r = simulate(workload("stream").create({ scale: SCALE }), { mmus: ["tdp"] });
    const x = r.runs[0];
    expect(x.guest.hugeFaults).toBeGreaterThan(0);
    expect(x.tlbHitsBySize["2m"]).toBeGreaterThan(x.userAccesses / 2);
    expect(x.tlbMissRate).toBeLessThan(0.01);
  });
});
