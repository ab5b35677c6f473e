import { describe, expect, it } from "vitest";
import {
  CostConfigError,
  costModelFrom,
  cyclesOf,
  DEFAULT_COSTS,
  parseCostModel,
} from "../../src/sim/cost.js";

describe("cost model", () => {
  it("fills what a file leaves out with the defaults", () => {
    const m = parseCostModel(
      '{"walkRef": 40, "exits": {"hypercall": 700}, "tlbFlushByKind": {"mov-cr3": 300}}',
    );
    expect(m.walkRef).toBe(40);
    expect(m.tlbHit).toBe(DEFAULT_COSTS.tlbHit);
    expect(m.exits.hypercall).toBe(700);
    expect(m.exits.eptViolation).toBe(DEFAULT_COSTS.exits.eptViolation);
    expect(m.tlbFlushByKind).toEqual({ "mov-cr3": 300 });
    expect(parseCostModel("{}")).toEqual({
      ...DEFAULT_COSTS,
      exits: { ...DEFAULT_COSTS.exits },
      tlbFlushByKind: {},
    });
  });

  it("refuses unknown keys, wrong types and bad JSON, naming the key", () => {
    const bad = (text: string) => () => parseCostModel(text, "costs.json");
    expect(bad('{"walkref": 3}')).toThrow(CostConfigError);
    expect(bad('{"walkref": 3}')).toThrow(
      'costs.json: unknown key "walkref" (known: tlbHit, tlbMiss, walkRef,',
    );
    expect(bad('{"exits": {"vmcall": 3}}')).toThrow(
      'costs.json: unknown key "exits.vmcall" (known: eptViolation,',
    );
    expect(bad('{"tlbFlushByKind": {"shootdown": 3}}')).toThrow('unknown key "tlbFlushByKind.shootdown"');
    expect(bad('{"tlbHit": "1"}')).toThrow(
      'costs.json: "tlbHit" must be a non-negative number of cycles, got "1"',
    );
    expect(bad('{"exits": {"npf": -5}}')).toThrow(
      '"exits.npf" must be a non-negative number of cycles, got -5',
    );
    expect(bad('{"exits": 5}')).toThrow('"exits" must be an object');
    expect(bad("[1]")).toThrow("costs.json: expected a JSON object, got [1]");
    expect(bad("{walkRef: 1}")).toThrow("costs.json: not valid JSON");
    expect(() => costModelFrom(null)).toThrow("cost model: expected a JSON object, got null");
  });

  it("prices counts by cause", () => {
    const m = costModelFrom({
      tlbHit: 1,
      tlbMiss: 2,
      walkRef: 3,
      guestFault: 5,
      tlbFlush: 7,
      tlbFlushByKind: { invlpg: 11 },
    });
    const c = cyclesOf(
      {
        tlbHits: 100,
        tlbMisses: 10,
        walkMemoryRefs: 40,
        exits: { shadowPageFault: 2, hypercall: 1 },
        guestPageFaults: 3,
        tlbFlushes: { invlpg: 2, "mov-cr3": 1 },
      },
      m,
    );
    expect(c).toEqual({
      tlb: 120,
      walks: 120,
      exits: 2 * DEFAULT_COSTS.exits.shadowPageFault + DEFAULT_COSTS.exits.hypercall,
      guestFaults: 15,
      flushes: 29,
      total: 120 + 120 + 2 * DEFAULT_COSTS.exits.shadowPageFault + DEFAULT_COSTS.exits.hypercall + 15 + 29,
    });
  });
});
