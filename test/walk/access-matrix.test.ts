/**
 * The access matrix, kvm-unit-tests x86/access.c style: every combination of the entry
 * bits that decide access rights (P, R/W, U/S, XD) at the leaf and at one level above it,
 * × CR0.WP × CR4.SMEP × CR4.SMAP × EFLAGS.AC × EFER.NXE × user/supervisor/implicit ×
 * read/write/fetch, in every paging mode and page size; each case compared with the
 * independent SDM oracle (test/oracle/x86-paging-oracle.ts) on fault/no fault, fault kind,
 * error code, physical address, page size and the A/D bits of every entry afterwards.
 * A/D start clear everywhere here, so every case also checks which entries get A and D.
 */

import { describe, expect, it } from "vitest";
import {
  ACCESSES,
  accessOf,
  controlCombos,
  levelAt,
  makeCase,
  permissiveLevels,
  rightsCombos,
  VARIANTS,
  type Variant,
} from "../oracle/matrix-cases.js";
import { formatMismatches, MatrixRunner, type NamedCpu, runBatch, testCpu } from "../oracle/vmmu-harness.js";
import type { CaseSpec } from "../oracle/x86-paging-oracle.js";

const INTEL = testCpu("intel-sapphirerapids");
const AMD = testCpu("qemu-max");

/** Leaf × the level just above it (all other levels permissive), full control and access product. */
function* leafAndParent(v: Variant, cpu: NamedCpu): Generator<CaseSpec> {
  const leafIdx = v.depth - 1;
  const parentIdx = v.depth - 2;
  const leafSets = rightsCombos(v, levelAt(v, leafIdx));
  const parentSets = parentIdx >= 0 ? rightsCombos(v, levelAt(v, parentIdx)) : [undefined];
  for (const parent of parentSets)
    for (const leaf of leafSets)
      for (const { control, ac } of controlCombos(v, true))
        for (const a of ACCESSES) {
          const overrides: Record<number, object> = { [leafIdx]: leaf };
          if (parent) overrides[parentIdx] = parent;
          yield makeCase(v, cpu, control, accessOf(a, ac), permissiveLevels(v, overrides));
        }
}

/** Leaf × each level two or more above it (EFLAGS.AC fixed at 0). */
function* leafAndUpper(v: Variant, cpu: NamedCpu): Generator<CaseSpec> {
  const leafIdx = v.depth - 1;
  const leafSets = rightsCombos(v, levelAt(v, leafIdx));
  for (let j = 0; j <= v.depth - 3; j++)
    for (const upper of rightsCombos(v, levelAt(v, j)))
      for (const leaf of leafSets)
        for (const { control, ac } of controlCombos(v, false))
          for (const a of ACCESSES)
            yield makeCase(
              v,
              cpu,
              control,
              accessOf(a, ac),
              permissiveLevels(v, { [j]: upper, [leafIdx]: leaf }),
            );
}

const runner = new MatrixRunner();
let total = 0;

describe("access matrix: leaf × parent × WP × SMEP × SMAP × AC × NXE × access (Intel, MAXPHYADDR 52)", () => {
  it.each(VARIANTS.map((v) => [v.name, v] as const))("%s", (_name, v) => {
    const { count, mismatches } = runBatch(runner, INTEL, leafAndParent(v, INTEL));
    total += count;
    expect(count).toBeGreaterThan(0);
    expect(mismatches.length, formatMismatches(mismatches)).toBe(0);
  });
});

describe("access matrix: leaf × each higher level × WP × SMEP × SMAP × NXE × access (Intel)", () => {
  it.each(VARIANTS.filter((v) => v.depth >= 3).map((v) => [v.name, v] as const))("%s", (_name, v) => {
    const { count, mismatches } = runBatch(runner, INTEL, leafAndUpper(v, INTEL));
    total += count;
    expect(mismatches.length, formatMismatches(mismatches)).toBe(0);
  });
});

describe("access matrix: leaf × parent on an AMD model (qemu-max, MAXPHYADDR 40)", () => {
  it.each(VARIANTS.map((v) => [v.name, v] as const))("%s", (_name, v) => {
    const { count, mismatches } = runBatch(runner, AMD, leafAndParent(v, AMD));
    total += count;
    expect(mismatches.length, formatMismatches(mismatches)).toBe(0);
  });

  it("ran the expected number of cases", () => {
    // Printed for the record (the whole file's case count).
    console.log(`access-matrix.test.ts: ${total} cases`);
    expect(total).toBeGreaterThan(100_000);
  });
});
