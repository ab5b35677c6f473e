import { describe, expect, it } from "vitest";
import {
  CPU_MODELS,
  CpuRole,
  CpuStateError,
  cpuModel,
  eptFormat,
  highAddressReservedForTest,
  x86Format,
} from "./format-helpers.js";

describe("paging formats", () => {
  it("reserve exactly the address bits at and above MAXPHYADDR", () => {
    expect(highAddressReservedForTest(52)).toBe(0);
    expect(highAddressReservedForTest(40)).toBe(0x000fff00);
    expect(highAddressReservedForTest(36)).toBe(0x000ffff0);
    expect(() => highAddressReservedForTest(53)).toThrow(/MAXPHYADDR/);
  });

  it("never reserve a bit that the same entry uses as P, an address bit below MAXPHYADDR, or a permission bit", () => {
    for (const mode of ["32bit", "pae", "4level", "5level"] as const)
      for (const nxe of [false, true]) {
        const f = x86Format({ mode, maxPhyAddr: 40, nxe, pse: true, pse36: true, gbPages: true, amd: true });
        for (let k = 2; k < 12; k++) {
          // PAE PDPTEs (k = 6) are the exception: R/W and U/S are reserved there (SDM Table 4-8).
          if (f.rootIsPdpteRegisters && k === 6) {
            expect(f.rsvdLo[k] & 0x7).toBe(0x6);
            continue;
          }
          expect(f.rsvdLo[k] & 0x7).toBe(0); // P, R/W, U/S
          expect(f.rsvdHi[k] & 0xff).toBe(0); // address bits 39:32
        }
        if (nxe && f.entryBytes === 8)
          for (let k = 2; k < 12; k++)
            if (k !== 6 || !f.rootIsPdpteRegisters) expect(f.rsvdHi[k] & 0x80000000).toBe(0);
      }
  });

  /** 32-bit paging with PSE (and PSE-36 unless said otherwise). */
  const legacy = (maxPhyAddr: number, o: { pse?: boolean; pse36?: boolean } = {}) =>
    x86Format({
      mode: "32bit",
      maxPhyAddr,
      nxe: false,
      pse: true,
      pse36: true,
      gbPages: false,
      amd: false,
      ...o,
    });
  /** A long mode with NXE, MAXPHYADDR 48. */
  const long = (mode: "4level" | "5level", o: { gbPages: boolean; amd: boolean }) =>
    x86Format({ mode, maxPhyAddr: 48, nxe: true, pse: false, pse36: false, ...o });

  it("32-bit PSE-36: bits 20:13 carry address bits 39:32 up to MAXPHYADDR, bit 21 is reserved", () => {
    expect(legacy(40).rsvdLo[2 * 2 + 1]).toBe(1 << 21);
    expect(legacy(36).rsvdLo[2 * 2 + 1]).toBe(0x3e0000); // bits 21:17
    expect(legacy(40, { pse36: false }).rsvdLo[2 * 2 + 1]).toBe(0x3fe000); // bits 21:13
    expect(legacy(52).rsvdLo[2 * 2 + 1]).toBe(1 << 21); // capped at 40 bits
  });

  it("PS is a page-size bit only where pages exist", () => {
    const g = long("4level", { gbPages: true, amd: false });
    expect(g.largeLevels).toBe((1 << 2) | (1 << 3));
    expect(g.rsvdLo[4 * 2] & 0x80).toBe(0x80);
    const no1g = long("4level", { gbPages: false, amd: false });
    expect(no1g.largeLevels).toBe(1 << 2);
    expect(no1g.rsvdLo[3 * 2] & 0x80).toBe(0x80);
    const nopse = legacy(40, { pse: false });
    expect(nopse.largeLevels).toBe(0);
    expect(nopse.rsvdLo[2 * 2]).toBe(0); // ignored, not reserved
  });

  it("AMD reserves bit 8 of non-leaf PML5E/PML4E/PDPTE; Intel ignores it", () => {
    const amd = long("5level", { gbPages: true, amd: true });
    const intel = long("5level", { gbPages: true, amd: false });
    for (const l of [3, 4, 5]) {
      expect(amd.rsvdLo[l * 2] & 0x100).toBe(0x100);
      expect(intel.rsvdLo[l * 2] & 0x100).toBe(0);
    }
    expect(amd.rsvdLo[2 * 2] & 0x100).toBe(0);
  });

  it("EPT: bits 7:3 reserved in upper non-leaf entries, memory types 2/3/7 and W-without-R are misconfigurations", () => {
    const f = eptFormat({
      levels: 4,
      maxPhyAddr: 46,
      executeOnly: false,
      mbec: false,
      gbPages: true,
      accessedDirty: false,
    });
    expect(f.rsvdLo[4 * 2]).toBe(0xf8);
    expect(f.rsvdLo[2 * 2]).toBe(0x78);
    expect(f.rsvdLo[3 * 2 + 1]).toBe(0x3ffff000);
    expect(f.rsvdLo[2 * 2 + 1]).toBe(0x1ff000);
    const bad = (mt: number, xwr: number) => f.eptBadBits[(mt << 3) | xwr];
    expect(bad(6, 0b010)).toBe(1);
    expect(bad(6, 0b110)).toBe(1);
    expect(bad(6, 0b100)).toBe(1); // execute-only unsupported
    expect(bad(6, 0b111)).toBe(0);
    expect(bad(2, 0b111)).toBe(1);
    expect(bad(3, 0b001)).toBe(1);
    expect(bad(7, 0b001)).toBe(1);
    expect(bad(0, 0b001)).toBe(0);
    const xo = eptFormat({
      levels: 4,
      maxPhyAddr: 46,
      executeOnly: true,
      mbec: false,
      gbPages: true,
      accessedDirty: false,
    });
    expect(xo.eptBadBits[(6 << 3) | 0b100]).toBe(0);
  });

  it("formats are cached and share one shape", () => {
    const o = {
      mode: "4level",
      maxPhyAddr: 40,
      nxe: true,
      pse: false,
      pse36: false,
      gbPages: true,
      amd: false,
    } as const;
    expect(x86Format(o)).toBe(x86Format({ ...o }));
    const e = eptFormat({
      levels: 5,
      maxPhyAddr: 40,
      executeOnly: true,
      mbec: true,
      gbPages: true,
      accessedDirty: true,
    });
    expect(Object.keys(e)).toEqual(Object.keys(x86Format(o)));
  });
});

describe("CpuRole", () => {
  const qemu = cpuModel("qemu-max");
  it("derives the paging mode", () => {
    expect(CpuRole.from({ cr0: 0x11n, cr4: 0n }, qemu).mode).toBe("none");
    expect(CpuRole.from({ cr0: 0x80000011n, cr4: 0n }, qemu).mode).toBe("32bit");
    expect(CpuRole.from({ cr0: 0x80000011n, cr4: 0x20n }, qemu).mode).toBe("pae");
    expect(CpuRole.from({ cr0: 0x80000011n, cr4: 0x20n, efer: 0x100n }, qemu).mode).toBe("4level");
    expect(CpuRole.from({ cr0: 0x80000011n, cr4: 0x1020n, efer: 0x500n }, qemu).mode).toBe("5level");
  });

  it("refuses what the CPU refuses", () => {
    const bad = [
      { cr0: 0x80000000n, cr4: 0n }, // PG without PE
      { cr0: 0x20000011n, cr4: 0n }, // NW without CD
      { cr0: 0x80000011n, cr4: 0n, efer: 0x100n }, // long mode without PAE
      { cr0: 0x11n, cr4: 0x20n, efer: 0x400n }, // LMA without paging
      { cr0: 0x80000011n, cr4: 0x20020n }, // PCIDE outside IA-32e mode
    ];
    for (const r of bad)
      expect(
        () => CpuRole.from(r, qemu),
        JSON.stringify(r, (_, v) => (typeof v === "bigint" ? v.toString(16) : v)),
      ).toThrow(CpuStateError);
    expect(() =>
      CpuRole.from({ cr0: 0x80000011n, cr4: 0x1000020n, efer: 0x500n }, cpuModel("amd-zen4")),
    ).toThrow(/PKS/);
    const noNx = { ...CPU_MODELS["qemu-max"], nx: false };
    expect(() => CpuRole.from({ cr0: 0x80000011n, cr4: 0x20n, efer: 0x800n }, noNx)).toThrow(/NX/);
    expect(() => CpuRole.from({ cr0: 0x1_0000_0000n, cr4: 0n }, qemu)).toThrow(/63:32/);
    expect(() => CpuRole.from({ cr0: 0x11n, cr4: 0n, cpl: 4 }, qemu)).toThrow(/CPL/);
  });

  it("protection keys and NXE apply only where the mode has them", () => {
    const pae = CpuRole.from({ cr0: 0x80000011n, cr4: 0x400020n }, qemu);
    expect(pae.pke).toBe(false);
    const long = CpuRole.from({ cr0: 0x80000011n, cr4: 0x400020n, efer: 0x100n }, qemu);
    expect(long.pke).toBe(true);
    const legacy = CpuRole.from({ cr0: 0x80000011n, cr4: 0n, efer: 0x800n }, qemu);
    expect(legacy.nxe).toBe(false);
    expect(legacy.fetchErrorBit).toBe(0);
    expect(CpuRole.from({ cr0: 0x80000011n, cr4: 0x100000n }, qemu).fetchErrorBit).toBe(0x10);
  });
});
