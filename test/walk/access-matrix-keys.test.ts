/**
 * Access matrix, part 2: accessed/dirty flags (SDM 4.8) with every A/D starting state at
 * every level across success and each fault kind, and protection keys (SDM 4.6.2, 4.7 PK):
 * PKRU/IA32_PKRS AD/WD for the leaf's key × CR4.PKE × CR4.PKS × user/supervisor pages ×
 * R/W × CR0.WP × SMAP/AC × access, in 4-level and 5-level paging at every page size; and
 * that keys have no effect in 32-bit and PAE paging. Compared case by case with the
 * independent SDM oracle.
 */

import { describe, expect, it } from "vitest";
import {
  ACCESSES,
  accessOf,
  BASE_CONTROL,
  keyRegister,
  makeCase,
  permissiveLevels,
  VARIANTS,
  type Variant,
} from "../oracle/matrix-cases.js";
import { formatMismatches, MatrixRunner, type NamedCpu, runBatch, testCpu } from "../oracle/vmmu-harness.js";
import type { CaseSpec, LevelSpec, OracleControl } from "../oracle/x86-paging-oracle.js";

const INTEL = testCpu("intel-sapphirerapids"); // has PKU and PKS
const AMD = testCpu("qemu-max"); // PKU only

interface Scenario {
  name: string;
  control: Partial<OracleControl>;
  access: (typeof ACCESSES)[number];
  /** Level overrides (by path index; -1 = leaf, -2 = parent). */
  levels: Record<number, LevelSpec>;
  applies?: (v: Variant) => boolean;
}

const long = (v: Variant) => v.mode === "4level" || v.mode === "5level";

const AD_SCENARIOS: Scenario[] = [
  { name: "supervisor read ok", control: { wp: true }, access: ACCESSES[3], levels: {} },
  { name: "user write ok", control: { wp: true }, access: ACCESSES[1], levels: {} },
  {
    name: "supervisor write to read-only leaf, WP=1 (protection)",
    control: { wp: true },
    access: ACCESSES[4],
    levels: { [-1]: { rw: false } },
  },
  {
    name: "supervisor write to read-only leaf, WP=0 (ok)",
    control: {},
    access: ACCESSES[4],
    levels: { [-1]: { rw: false } },
  },
  {
    name: "user read of supervisor parent (protection)",
    control: {},
    access: ACCESSES[0],
    levels: { [-2]: { us: false } },
    applies: (v) => v.depth >= 2 && !(v.mode === "pae" && v.depth === 2),
  },
  { name: "leaf not present", control: {}, access: ACCESSES[1], levels: { [-1]: { p: false } } },
  {
    name: "parent not present",
    control: {},
    access: ACCESSES[0],
    levels: { [-2]: { p: false } },
    applies: (v) => v.depth >= 2,
  },
  {
    name: "fetch from XD leaf, NXE=1 (protection)",
    control: { nxe: true },
    access: ACCESSES[5],
    levels: { [-1]: { nx: true } },
    applies: (v) => v.mode !== "32bit",
  },
  {
    name: "XD set with NXE=0 at the leaf (reserved)",
    control: {},
    access: ACCESSES[3],
    levels: { [-1]: { nx: true } },
    applies: (v) => v.mode !== "32bit",
  },
  {
    name: "PSE-36 bit 21 set in a 4 MiB PDE (reserved)",
    control: {},
    access: ACCESSES[3],
    levels: { [-1]: { extra: 1n << 21n } },
    applies: (v) => v.name === "32bit/4M",
  },
  {
    name: "protection key access-disabled (PK)",
    control: { pke: true, pkru: keyRegister(3, 1) },
    access: ACCESSES[0],
    levels: { [-1]: { pk: 3 } },
    applies: long,
  },
];

/** Every A/D combination at every level × the scenarios. */
function* accessedDirty(v: Variant, cpu: NamedCpu): Generator<CaseSpec> {
  const n = v.depth;
  for (const s of AD_SCENARIOS) {
    if (s.applies && !s.applies(v)) continue;
    for (let aMask = 0; aMask < 1 << n; aMask++)
      for (let dMask = 0; dMask < 1 << n; dMask++) {
        const levels: LevelSpec[] = [];
        for (let i = 0; i < n; i++) {
          const o = s.levels[i - n] ?? {};
          levels.push({ ...o, a: ((aMask >> i) & 1) === 1, d: ((dMask >> i) & 1) === 1 });
        }
        yield makeCase(
          v,
          cpu,
          { ...BASE_CONTROL, pse: v.pse, ...s.control },
          accessOf(s.access, false),
          levels,
        );
      }
  }
}

/**
 * Protection keys: key × PKRU value for the key × PKRS value × PKE × PKS × leaf U/S × leaf
 * R/W × parent U/S × WP × access. The other 15 keys get the complementary rights, so using
 * the wrong key shows.
 */
function* protectionKeys(v: Variant, cpu: NamedCpu, withPks: boolean): Generator<CaseSpec> {
  const leafIdx = v.depth - 1;
  for (const key of [0, 9, 15])
    for (let pkruV = 0; pkruV < 4; pkruV++)
      for (let pkrsV = 0; pkrsV < (withPks ? 4 : 1); pkrsV++)
        for (const pke of [false, true])
          for (const pks of withPks ? [false, true] : [false])
            for (const leafUs of [false, true])
              for (const leafRw of [false, true])
                for (const parentUs of [false, true])
                  for (const wp of [false, true])
                    for (const a of ACCESSES) {
                      const control: OracleControl = {
                        ...BASE_CONTROL,
                        nxe: true,
                        wp,
                        pke,
                        pks,
                        pkru: keyRegister(key, pkruV),
                        pkrs: keyRegister(key, pkrsV),
                      };
                      const levels = permissiveLevels(v, {
                        [leafIdx]: { us: leafUs, rw: leafRw, pk: key },
                        // Non-leaf bits 62:59 are ignored (4.5): give the parent a key with the opposite rights.
                        [leafIdx - 1]: { us: parentUs, pk: (key + 7) & 15 },
                      });
                      yield makeCase(v, cpu, control, accessOf(a, false), levels);
                    }
}

/** Protection keys × SMAP × AC × SMEP (key 5 only). */
function* keysAndSmap(v: Variant, cpu: NamedCpu): Generator<CaseSpec> {
  const leafIdx = v.depth - 1;
  for (let pkruV = 0; pkruV < 4; pkruV++)
    for (let pkrsV = 0; pkrsV < 4; pkrsV++)
      for (const smap of [false, true])
        for (const smep of [false, true])
          for (const ac of [false, true])
            for (const leafUs of [false, true])
              for (const leafRw of [false, true])
                for (const a of ACCESSES) {
                  const control: OracleControl = {
                    ...BASE_CONTROL,
                    nxe: true,
                    wp: true,
                    smap,
                    smep,
                    pke: true,
                    pks: true,
                    pkru: keyRegister(5, pkruV),
                    pkrs: keyRegister(5, pkrsV),
                  };
                  const levels = permissiveLevels(v, { [leafIdx]: { us: leafUs, rw: leafRw, pk: 5 } });
                  yield makeCase(v, cpu, control, accessOf(a, ac), levels);
                }
}

/** 32-bit and PAE paging: CR4.PKE/PKS set with every key denied must change nothing (4.6.2). */
function* keysIgnoredOutsideIa32e(v: Variant, cpu: NamedCpu): Generator<CaseSpec> {
  const leafIdx = v.depth - 1;
  for (const pke of [false, true])
    for (const pks of [false, true])
      for (const leafUs of [false, true])
        for (const leafRw of [false, true])
          for (const wp of [false, true])
            for (const a of ACCESSES) {
              const control: OracleControl = {
                ...BASE_CONTROL,
                pse: v.pse,
                wp,
                pke,
                pks,
                pkru: 0xffffffff,
                pkrs: 0xffffffff,
              };
              const levels = permissiveLevels(v, { [leafIdx]: { us: leafUs, rw: leafRw } });
              yield makeCase(v, cpu, control, accessOf(a, false), levels);
            }
}

const runner = new MatrixRunner();
let total = 0;
const longVariants = VARIANTS.filter(long).map((v) => [v.name, v] as const);

describe("accessed/dirty: every A/D start state at every level × success and each fault kind", () => {
  it.each(VARIANTS.map((v) => [v.name, v] as const))("%s", (_n, v) => {
    const { count, mismatches } = runBatch(runner, INTEL, accessedDirty(v, INTEL));
    total += count;
    expect(mismatches.length, formatMismatches(mismatches)).toBe(0);
  });
});

describe("protection keys: PKRU/PKRS × PKE × PKS × U/S × R/W × WP × access (Intel, PKS)", () => {
  it.each(longVariants)("%s", (_n, v) => {
    const { count, mismatches } = runBatch(runner, INTEL, protectionKeys(v, INTEL, true));
    total += count;
    expect(mismatches.length, formatMismatches(mismatches)).toBe(0);
  });
});

describe("protection keys × SMAP × SMEP × AC (Intel)", () => {
  it.each(longVariants)("%s", (_n, v) => {
    const { count, mismatches } = runBatch(runner, INTEL, keysAndSmap(v, INTEL));
    total += count;
    expect(mismatches.length, formatMismatches(mismatches)).toBe(0);
  });
});

describe("protection keys: PKRU only (AMD qemu-max, no PKS)", () => {
  it.each(longVariants)("%s", (_n, v) => {
    const { count, mismatches } = runBatch(runner, AMD, protectionKeys(v, AMD, false));
    total += count;
    expect(mismatches.length, formatMismatches(mismatches)).toBe(0);
  });
});

describe("protection keys are ignored outside IA-32e paging", () => {
  it.each(VARIANTS.filter((v) => !long(v)).map((v) => [v.name, v] as const))("%s", (_n, v) => {
    const { count, mismatches } = runBatch(runner, INTEL, keysIgnoredOutsideIa32e(v, INTEL));
    total += count;
    expect(mismatches.length, formatMismatches(mismatches)).toBe(0);
  });

  it("case count", () => {
    console.log(`access-matrix-keys.test.ts: ${total} cases`);
    expect(total).toBeGreaterThan(50_000);
  });
});
