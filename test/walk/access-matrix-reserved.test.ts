/**
 * Access matrix, part 3: reserved bits (SDM 4.3-4.5 entry formats, 4.7 RSVD), canonical
 * addresses (4.5), PAE PDPTE registers (4.4.1), tables outside memory, and odd corners.
 *
 * The reserved sweep sets every bit position, one at a time, at every level of the path,
 * in every mode and page size, on four CPUs (Intel MAXPHYADDR 52; AMD MAXPHYADDR 40, where
 * bit 8 of non-leaf PML5E/PML4E/PDPTE is reserved; Intel MAXPHYADDR 36, where PSE-36 has
 * fewer address bits; AMD without 1 GiB pages), with EFER.NXE 0/1, and three accesses:
 * a permitted one, one that also violates access rights (the reserved-bit fault must win
 * and report RSVD with P=1), and one whose leaf is not present (reserved bits above still
 * fault; the non-present leaf's own bits are not checked).
 */

import { describe, expect, it } from "vitest";
import { type CpuRole, cpuWalker, FAULT_GP, type GuestWalker, Walk } from "../../src/index.js";
import {
  ACCESSES,
  accessOf,
  BASE_CONTROL,
  highVaFor,
  levelAt,
  makeCase,
  permissiveLevels,
  tablesFor,
  VARIANTS,
  type Variant,
  variant,
} from "../oracle/matrix-cases.js";
import {
  accessBits,
  describeCase,
  diffCase,
  formatMismatches,
  MatrixRunner,
  type Mismatch,
  type NamedCpu,
  runBatch,
  testCpu,
} from "../oracle/vmmu-harness.js";
import type { CaseSpec, LevelSpec, OracleControl } from "../oracle/x86-paging-oracle.js";
import { bitRange, entryBytes, expectedWalk, reservedMask } from "../oracle/x86-paging-oracle.js";

const CPUS: NamedCpu[] = [
  testCpu("intel-sapphirerapids"),
  testCpu("qemu-max"),
  testCpu("intel-sapphirerapids", { maxPhyAddr: 36 }, "intel-maxphyaddr-36"),
  testCpu("qemu-max", { gbPages: false }, "amd-no-1g-pages"),
];

/** One reserved-bit-sweep case: bit `bit` set at path index `at`. */
function* reservedSweep(v: Variant, cpu: NamedCpu): Generator<CaseSpec> {
  const bits = entryBytes(v.mode) * 8;
  const leafIdx = v.depth - 1;
  for (let at = 0; at < v.depth; at++)
    for (let bit = 1; bit < bits; bit++)
      for (const nxe of [false, true])
        for (const scenario of ["permitted", "violation", "leaf-not-present"] as const) {
          const control: OracleControl = { ...BASE_CONTROL, pse: v.pse, nxe, wp: true };
          const overrides: Record<number, LevelSpec> = {};
          let access = ACCESSES[3]; // supervisor read
          if (scenario === "violation") {
            access = ACCESSES[1]; // user write to a supervisor read-only leaf
            overrides[leafIdx] = { us: false, rw: false };
          } else if (scenario === "leaf-not-present") {
            overrides[leafIdx] = { p: false };
          }
          overrides[at] = { ...overrides[at], extra: 1n << BigInt(bit) };
          yield makeCase(v, cpu, control, accessOf(access, false), permissiveLevels(v, overrides));
        }
}

const runner = new MatrixRunner();
let total = 0;

describe("reserved bits: every bit at every level, each mode and page size", () => {
  for (const cpu of CPUS) {
    const variants = VARIANTS.filter((v) => cpu.oracle.gbPages || !v.name.endsWith("/1G"));
    it.each(variants.map((v) => [v.name, v] as const))(`${cpu.name}: %s`, (_n, v) => {
      const { count, mismatches } = runBatch(runner, cpu, reservedSweep(v, cpu));
      total += count;
      expect(mismatches.length, formatMismatches(mismatches)).toBe(0);
    });
  }
});

describe("reserved bits: the oracle's masks (documentation of what the sweep expects)", () => {
  const intel = CPUS[0].oracle;
  const amd = CPUS[1].oracle;
  const m36 = CPUS[2].oracle;
  const noGb = CPUS[3].oracle;
  const c = (o: Partial<OracleControl> = {}) => ({ ...BASE_CONTROL, ...o });
  const PS = 1n << 7n;

  it("4-level: PML4E has PS and bits 51:M reserved, XD without NXE, bit 8 on AMD", () => {
    expect(reservedMask("4level", intel, c(), 4, 0n)).toBe(PS | (1n << 63n));
    expect(reservedMask("4level", amd, c({ nxe: true }), 4, 0n)).toBe(PS | (1n << 8n) | bitRange(40, 51));
    expect(reservedMask("5level", amd, c({ nxe: true }), 5, 0n)).toBe(PS | (1n << 8n) | bitRange(40, 51));
  });
  it("4-level: 1 GiB PDPTE bits 29:13; without 1 GiB pages PS itself is reserved", () => {
    expect(reservedMask("4level", intel, c({ nxe: true }), 3, PS)).toBe(bitRange(13, 29));
    expect(reservedMask("4level", noGb, c({ nxe: true }), 3, PS) & PS).toBe(PS);
    expect(reservedMask("4level", amd, c({ nxe: true }), 3, 0n)).toBe((1n << 8n) | bitRange(40, 51));
  });
  it("PAE: PDPTE bits 2:1, 8:5, 63:M; PDE/PTE bits 62:M; 2 MiB PDE bits 20:13", () => {
    expect(reservedMask("pae", intel, c({ nxe: true }), 3, 0n)).toBe(
      bitRange(1, 2) | bitRange(5, 8) | bitRange(52, 63),
    );
    expect(reservedMask("pae", amd, c({ nxe: true }), 1, 0n)).toBe(bitRange(40, 62));
    expect(reservedMask("pae", amd, c(), 2, PS)).toBe(bitRange(40, 63) | bitRange(13, 20));
  });
  it("32-bit: 4 MiB PDE bit 21, plus PSE-36 bits at or above MAXPHYADDR; nothing else", () => {
    expect(reservedMask("32bit", intel, c({ pse: true }), 2, PS)).toBe(1n << 21n);
    expect(reservedMask("32bit", m36, c({ pse: true }), 2, PS)).toBe(bitRange(17, 21));
    expect(reservedMask("32bit", intel, c({ pse: false }), 2, PS)).toBe(0n);
    expect(reservedMask("32bit", intel, c({ pse: true }), 1, PS)).toBe(0n);
  });
});

describe("PAE PDPTE registers (SDM 4.4.1)", () => {
  const cpu = CPUS[1];
  const v = variant("pae/4K");
  it("a present PDPTE with a reserved bit fails the CR3 load (#GP); a non-present one does not", () => {
    const mismatches: Mismatch[] = [];
    for (const p of [true, false])
      for (let bit = 1; bit < 64; bit++) {
        const spec = makeCase(
          v,
          cpu,
          { ...BASE_CONTROL, nxe: true },
          accessOf(ACCESSES[3], false),
          permissiveLevels(v, { 0: { p, extra: 1n << BigInt(bit) } }),
        );
        const { expected, actual } = runner.run(spec, cpu);
        const diff = diffCase(expected, actual);
        if (diff.length) mismatches.push({ case: describeCase(spec, cpu.name), diff });
        total++;
      }
    expect(mismatches.length, formatMismatches(mismatches)).toBe(0);
  });

  it("the PDPTEs are registers: changing the PDPT in memory after the load changes nothing, and they get no A", () => {
    const spec = makeCase(v, cpu, { ...BASE_CONTROL }, accessOf(ACCESSES[4], false), permissiveLevels(v));
    const { expected, actual } = runner.run(spec, cpu);
    expect(diffCase(expected, actual)).toEqual([]);
    // Now clear the PDPTE in memory: the loaded register still translates (no reload happened).
    const physical = runner.physical;
    const pdpteAddr = expected.entries[0].addr;
    const before = physical.read(pdpteAddr, 8).value;
    expect(before & 0x20n).toBe(0n); // no A on the PDPTE
    const role = runner.role(cpu, "pae", spec.control);
    // A fresh walker loads the registers; then memory changes under it.
    const walker = runnerWalker(role, expected.cr3);
    physical.write(pdpteAddr, 8, 0n);
    const w = new Walk();
    expect(walker.walk(0, Number(spec.va), accessBits(spec.access), w)).toBe(true);
    expect(w.address).toBe(expected.walk!.physical);
    physical.write(pdpteAddr, 8, before);
  });

  it("a PDPT outside memory fails the CR3 load", () => {
    const spec = makeCase(v, cpu, { ...BASE_CONTROL }, accessOf(ACCESSES[3], false), permissiveLevels(v));
    const outside = { ...spec, tables: [0x7ff_fe0, ...spec.tables.slice(1)] };
    const exp = expectedWalk(outside, runner.isRam);
    expect(exp.load?.ok).toBe(false);
    const role = runner.role(cpu, "pae", spec.control);
    expect(() => runnerWalker(role, 0x7ff_fe0n)).toThrow();
  });
});

function runnerWalker(role: CpuRole, cr3: bigint): GuestWalker {
  return cpuWalker(runner.physical, role, cr3);
}

describe("canonical addresses (SDM 4.5): non-canonical → #GP, no #PF, no A/D", () => {
  const cpu = CPUS[0];
  const cases: [string, bigint][] = [
    ["4level/4K", 0x0000_8000_0000_0000n],
    ["4level/4K", 0x8000_0000_0000_0000n],
    ["4level/4K", 0xffff_7fff_ffff_f000n],
    ["4level/4K", 0x0001_0000_0000_0000n],
    ["4level/2M", 0x7fff_8000_0000_0000n],
    ["5level/4K", 0x0100_0000_0000_0000n],
    ["5level/4K", 0xfe00_0000_0000_0000n],
    ["5level/4K", 0x8000_0000_0000_1000n],
  ];
  it.each(cases)("%s va=%s", (name, va) => {
    const v = variant(name);
    const spec = makeCase(v, cpu, { ...BASE_CONTROL }, accessOf(ACCESSES[4], false), permissiveLevels(v), va);
    const { expected, actual } = runner.run(spec, cpu);
    total++;
    expect(expected.walk?.fault).toBe("gp");
    expect(diffCase(expected, actual), describeCase(spec, cpu.name)).toEqual([]);
  });

  it("canonical kernel-half addresses walk normally (and 5-level accepts 4-level-non-canonical ones)", () => {
    const mismatches: Mismatch[] = [];
    const extra: [string, bigint][] = [
      ["4level/4K", highVaFor("4level")],
      ["4level/1G", highVaFor("4level")],
      ["5level/4K", highVaFor("5level")],
      ["5level/2M", 0x0001_2345_6789_a000n],
      ["5level/4K", 0x00ff_ffff_ffff_f000n],
      ["5level/4K", 0xff00_0000_0000_0000n],
    ];
    for (const [name, va] of extra)
      for (const a of ACCESSES) {
        const v = variant(name);
        const spec = makeCase(
          v,
          cpu,
          { ...BASE_CONTROL, nxe: true },
          accessOf(a, false),
          permissiveLevels(v),
          va,
        );
        const { expected, actual } = runner.run(spec, cpu);
        total++;
        if (expected.walk?.fault !== "none" && a.privilege !== "user")
          throw new Error(`oracle: ${describeCase(spec, cpu.name)} should succeed`);
        const diff = diffCase(expected, actual);
        if (diff.length) mismatches.push({ case: describeCase(spec, cpu.name), diff });
      }
    expect(mismatches.length, formatMismatches(mismatches)).toBe(0);
  });

  it("#GP reports FAULT_GP", () => {
    const v = variant("4level/4K");
    const spec = makeCase(v, cpu, { ...BASE_CONTROL }, accessOf(ACCESSES[3], false), permissiveLevels(v));
    runner.run(spec, cpu);
    const walker = runnerWalker(runner.role(cpu, "4level", spec.control), BigInt(tablesFor("4level")[0]));
    const w = new Walk();
    expect(walker.walk(0x8000, 0, 0, w)).toBe(false);
    expect(w.fault).toBe(FAULT_GP);
  });
});

describe("paging structures outside memory: #PF not-present (table-not-in-memory)", () => {
  const cpu = CPUS[1];
  it.each(VARIANTS.map((v) => [v.name, v] as const))("%s", (_n, v) => {
    const mismatches: Mismatch[] = [];
    // Point each non-leaf entry (except PAE PDPTE registers, covered above) outside RAM.
    for (let at = v.mode === "pae" ? 1 : 0; at < v.depth - 1; at++)
      for (const outside of [0x4000_0000, 0xfff0_0000, 0x40_0000])
        for (const a of ACCESSES) {
          const spec = makeCase(
            v,
            cpu,
            { ...BASE_CONTROL, pse: v.pse, nxe: true },
            accessOf(a, false),
            permissiveLevels(v, { [at]: { addr: outside } }),
          );
          const { expected, actual } = runner.run(spec, cpu);
          total++;
          const diff = diffCase(expected, actual);
          if (diff.length) mismatches.push({ case: describeCase(spec, cpu.name), diff });
        }
    // The root itself outside RAM (not PAE: that is a CR3-load failure).
    if (v.mode !== "pae") {
      const spec = makeCase(
        v,
        cpu,
        { ...BASE_CONTROL, pse: v.pse },
        accessOf(ACCESSES[0], false),
        permissiveLevels(v),
      );
      const moved = { ...spec, tables: [0x3000_0000, ...spec.tables.slice(1)] };
      const { expected, actual } = runner.run(moved, cpu);
      total++;
      const diff = diffCase(expected, actual);
      if (diff.length) mismatches.push({ case: `${describeCase(moved, cpu.name)} (root outside RAM)`, diff });
      expect(expected.walk?.reason).toBe("table-not-in-memory");
    }
    expect(mismatches.length, formatMismatches(mismatches)).toBe(0);
  });
});

describe("corners", () => {
  const intel = CPUS[0];
  const check = (spec: CaseSpec, cpu: NamedCpu) => {
    const { expected, actual } = runner.run(spec, cpu);
    total++;
    expect(diffCase(expected, actual), describeCase(spec, cpu.name)).toEqual([]);
    return expected;
  };

  it("32-bit paging, CR4.PSE=0: PDE.PS is ignored and the PDE references a page table", () => {
    const v = variant("32bit/4K");
    for (const a of ACCESSES) {
      const e = check(
        makeCase(v, intel, { ...BASE_CONTROL }, accessOf(a, false), permissiveLevels(v, { 0: { ps: true } })),
        intel,
      );
      expect(e.walk?.pageSize === 4096 || e.walk?.fault !== "none").toBe(true);
    }
  });

  it("32-bit paging, CR4.PSE=1: the same PDE maps a 4 MiB page (PSE-36 bits from the table address)", () => {
    const v = variant("32bit/4K+PSE");
    for (const cpu of CPUS)
      for (const a of ACCESSES)
        check(
          makeCase(
            v,
            cpu,
            { ...BASE_CONTROL, pse: true },
            accessOf(a, false),
            permissiveLevels(v, { 0: { ps: true } }),
          ),
          cpu,
        );
  });

  it("32-bit paging: PSE-36 maps physical bits 39:32 (every high-bit pattern, MAXPHYADDR 40 and 36)", () => {
    const v = variant("32bit/4M");
    for (const cpu of [CPUS[1], CPUS[2]])
      for (let high = 0; high < 256; high++) {
        const spec = makeCase(
          v,
          cpu,
          { ...BASE_CONTROL, pse: true },
          accessOf(ACCESSES[3], false),
          permissiveLevels(v),
        );
        check({ ...spec, page: high * 2 ** 32 + 0x8040_0000 }, cpu);
      }
  });

  it("32-bit paging with EFER.NXE=1: no XD, and I/D only with SMEP (SDM 4.7)", () => {
    const v = variant("32bit/4K");
    for (const smep of [false, true])
      for (const us of [false, true])
        for (const p of [false, true])
          for (const a of ACCESSES)
            check(
              makeCase(
                v,
                intel,
                { ...BASE_CONTROL, nxe: true, smep },
                accessOf(a, false),
                permissiveLevels(v, { 1: { us, p } }),
              ),
              intel,
            );
  });

  it("PAE/IA-32e with NXE=1: I/D on every fetch fault, including not-present and reserved", () => {
    for (const name of ["pae/4K", "4level/4K", "5level/1G"]) {
      const v = variant(name);
      for (const nxe of [false, true])
        for (const leaf of [{ p: false }, { extra: 1n << 51n }, { nx: true }, {}])
          for (const a of ACCESSES)
            check(
              makeCase(
                v,
                CPUS[1],
                { ...BASE_CONTROL, nxe },
                accessOf(a, false),
                permissiveLevels(v, { [v.depth - 1]: leaf }),
              ),
              CPUS[1],
            );
    }
  });

  it("an entry referencing its own table (PML4E → PML4) walks and sets A once", () => {
    const v = variant("4level/4K");
    const tables = tablesFor("4level");
    const spec = makeCase(
      v,
      intel,
      { ...BASE_CONTROL },
      accessOf(ACCESSES[1], false),
      permissiveLevels(v, { 0: { addr: tables[0] } }),
    );
    check(spec, intel);
  });

  it("leaf levels: PS in a PTE is PAT, not a page size", () => {
    for (const name of ["pae/4K", "4level/4K", "5level/4K", "32bit/4K+PSE"]) {
      const v = variant(name);
      const spec = makeCase(
        v,
        intel,
        { ...BASE_CONTROL, pse: v.pse },
        accessOf(ACCESSES[4], false),
        permissiveLevels(v, { [v.depth - 1]: { ps: true } }),
      );
      const e = check(spec, intel);
      expect(e.walk?.pageSize).toBe(4096);
    }
  });

  it("large-page leaves: bit 12 (PAT) is not reserved", () => {
    for (const name of ["pae/2M", "4level/2M", "4level/1G", "5level/1G", "32bit/4M"]) {
      const v = variant(name);
      const leafIdx = v.depth - 1;
      expect(levelAt(v, leafIdx)).toBeGreaterThan(1);
      const spec = makeCase(
        v,
        intel,
        { ...BASE_CONTROL, pse: v.pse },
        accessOf(ACCESSES[3], false),
        permissiveLevels(v, { [leafIdx]: { extra: 1n << 12n } }),
      );
      expect(check(spec, intel).walk?.fault).toBe("none");
    }
  });

  it("case count", () => {
    console.log(`access-matrix-reserved.test.ts: ${total} cases`);
    expect(total).toBeGreaterThan(10_000);
  });
});
