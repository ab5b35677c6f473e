/**
 * Paging formats as data. One `PagingFormat` describes everything the walker needs
 * to know about a family of page tables: how many levels, where each level's
 * index sits in the address, which levels may map a page, the reserved bits of
 * each kind of entry, how permissions combine. Formats come from two factories
 * (`x86Format`, `eptFormat`), are cached, and all share one hidden class so the
 * walker's property reads stay monomorphic.
 *
 * Address splits (linear address bits, high to low):
 * ```
 *  32-bit        10 PD | 10 PT | 12 offset                         (4 MiB page: 10 PD | 22 offset)
 *  PAE            2 PDPTE | 9 PD | 9 PT | 12 offset                (2 MiB page: 2 | 9 | 21)
 *  4-level       [63:48 sign] 9 PML4 | 9 PDPT | 9 PD | 9 PT | 12   (1 GiB: ... | 30, 2 MiB: ... | 21)
 *  5-level       [63:57 sign] 9 PML5 | 9 PML4 | 9 PDPT | 9 PD | 9 PT | 12
 *  EPT 4/5-level  guest-physical address, same splits as 4/5-level
 * ```
 */

import { EPT_MT_SHIFT, EPT_R, EPT_W, EPT_X, EPT_XU } from "./ept.js";
import { PTE_PS, PTE_US, PTE_XD_HI } from "./x86.js";

/** The walker's two entry families. */
export const FORMAT_X86 = 0;
export const FORMAT_EPT = 1;

export type X86PagingMode = "32bit" | "pae" | "4level" | "5level";

export interface X86FormatOptions {
  mode: X86PagingMode;
  /** MAXPHYADDR, 32..52. */
  maxPhyAddr: number;
  /** EFER.NXE: bit 63 is execute-disable (else reserved). Ignored for 32-bit paging. */
  nxe: boolean;
  /** CR4.PSE (32-bit paging only): PS=1 in a PDE maps a 4 MiB page. */
  pse: boolean;
  /** CPUID PSE-36: 4 MiB pages carry physical address bits 39:32 in PDE bits 20:13. */
  pse36: boolean;
  /** CPUID 1 GiB pages (PDPTE with PS=1). */
  gbPages: boolean;
  /** AMD: bit 8 of non-leaf PML5E/PML4E/PDPTE must be zero (APM Vol. 2, 5.3.3); Intel ignores it. */
  amd: boolean;
}

export interface EptFormatOptions {
  levels: 4 | 5;
  maxPhyAddr: number;
  /** IA32_VMX_EPT_VPID_CAP bit 0: execute-only translations (X=1, R=0) are allowed. */
  executeOnly: boolean;
  /** Mode-based execute control: bit 2 = supervisor execute, bit 10 = user execute. */
  mbec: boolean;
  /** 1 GiB EPT pages (IA32_VMX_EPT_VPID_CAP bit 17). */
  gbPages: boolean;
  /** EPTP bit 6: accessed and dirty flags. */
  accessedDirty: boolean;
}

/** A page-table format. Immutable; obtain one from `x86Format` or `eptFormat`. */
export class PagingFormat {
  /** Human-readable name, e.g. "4-level" or "EPT 4-level (A/D)". */
  readonly name: string;
  /** FORMAT_X86 or FORMAT_EPT. */
  readonly kind: number;
  /** Number of levels from the root; the root is level `levels`, 4 KiB leaves are level 1. */
  readonly levels: number;
  /** 4 (32-bit paging) or 8. */
  readonly entryBytes: number;
  /** PAE: the top level is the four PDPTE registers, loaded at CR3 load, not read during the walk. */
  readonly rootIsPdpteRegisters: boolean;
  /** Width of the input address in bits (32, 48 or 57). */
  readonly addressBits: number;
  /** [level] → bit position of that level's index in the input address. */
  readonly shifts: Int32Array;
  /** [level] → mask of that level's index. */
  readonly indexMasks: Int32Array;
  /** Bit L set: an entry at level L with PS=1 maps a page. */
  readonly largeLevels: number;
  /** Reserved-bit masks, indexed `level * 2 + (leaf ? 1 : 0)`, low and high halves. */
  readonly rsvdLo: Uint32Array;
  readonly rsvdHi: Uint32Array;
  /** An entry is present when `lo & presentMask` is non-zero. */
  readonly presentMask: number;
  /** Low-half permission bits combined by AND across levels (x86 R/W, U/S; EPT R, W, X, XU). */
  readonly permMask: number;
  /** High-half bits combined by OR across levels (x86 XD when EFER.NXE=1). */
  readonly xdMaskHi: number;
  /** Accessed and dirty flag masks in the low half; 0 when the format has none. */
  readonly accessedMask: number;
  readonly dirtyMask: number;
  /** 32-bit paging with PSE-36: a 4 MiB leaf carries address bits 39:32 in bits 20:13. */
  readonly pse36: boolean;
  /** EPT: [memory type << 3 | XWR] → 1 if the combination is a misconfiguration. Empty for x86. */
  readonly eptBadBits: Uint8Array;
  /** EPT with MBEC: bit 10 (user execute) counts as execute for presence and misconfiguration checks. */
  readonly mbec: boolean;
  /** MAXPHYADDR the reserved masks were built for. */
  readonly maxPhyAddr: number;

  constructor(init: Omit<PagingFormat, "pageSize">) {
    this.name = init.name;
    this.kind = init.kind;
    this.levels = init.levels;
    this.entryBytes = init.entryBytes;
    this.rootIsPdpteRegisters = init.rootIsPdpteRegisters;
    this.addressBits = init.addressBits;
    this.shifts = init.shifts;
    this.indexMasks = init.indexMasks;
    this.largeLevels = init.largeLevels;
    this.rsvdLo = init.rsvdLo;
    this.rsvdHi = init.rsvdHi;
    this.presentMask = init.presentMask;
    this.permMask = init.permMask;
    this.xdMaskHi = init.xdMaskHi;
    this.accessedMask = init.accessedMask;
    this.dirtyMask = init.dirtyMask;
    this.pse36 = init.pse36;
    this.eptBadBits = init.eptBadBits;
    this.mbec = init.mbec;
    this.maxPhyAddr = init.maxPhyAddr;
    Object.freeze(this);
  }

  /** Page size in bytes mapped by a leaf at `level`. */
  pageSize(level: number): number {
    return 2 ** this.shifts[level];
  }
}

/** Reserved address bits M..51 as a mask of the high half. */
export function highAddressReserved(maxPhyAddr: number): number {
  checkMaxPhyAddr(maxPhyAddr);
  const from = maxPhyAddr - 32;
  return ((0xfffff >>> from) << from) >>> 0;
}

function checkMaxPhyAddr(m: number): void {
  if (!Number.isInteger(m) || m < 32 || m > 52) throw new RangeError(`MAXPHYADDR ${m} is outside 32..52`);
}

/** Bits lo..hi (inclusive) of a 32-bit half. */
function bits(lo: number, hi: number): number {
  return hi - lo === 31 ? 0xffffffff : (((1 << (hi - lo + 1)) - 1) << lo) >>> 0;
}

function levelShifts(levels: number, first: number, step: number): Int32Array {
  const s = new Int32Array(6);
  for (let l = 1; l <= levels; l++) s[l] = first + step * (l - 1);
  return s;
}

function sameMask(levels: number, mask: number): Int32Array {
  const m = new Int32Array(6);
  for (let l = 1; l <= levels; l++) m[l] = mask;
  return m;
}

const cache = new Map<string, PagingFormat>();

function cached(key: string, make: () => PagingFormat): PagingFormat {
  let f = cache.get(key);
  if (!f) {
    f = make();
    cache.set(key, f);
  }
  return f;
}

const NO_EPT_BITS = new Uint8Array(0);

/**
 * The x86 format for a paging mode and the CPU facts that change its rules.
 * Reserved bits follow SDM Vol. 3A 4.3 (32-bit), 4.4 (PAE), 4.5 (4/5-level) and Table 4-5..4-20.
 */
export function x86Format(o: X86FormatOptions): PagingFormat {
  checkMaxPhyAddr(o.maxPhyAddr);
  const key = `x86:${o.mode}:${o.maxPhyAddr}:${+o.nxe}:${+o.pse}:${+o.pse36}:${+o.gbPages}:${+o.amd}`;
  return cached(key, () => {
    const rsvdLo = new Uint32Array(12);
    const rsvdHi = new Uint32Array(12);
    const high = highAddressReserved(o.maxPhyAddr);
    const xd = o.nxe ? 0 : PTE_XD_HI;
    const set = (level: number, leaf: boolean, lo: number, hi: number) => {
      rsvdLo[level * 2 + (leaf ? 1 : 0)] = lo >>> 0;
      rsvdHi[level * 2 + (leaf ? 1 : 0)] = hi >>> 0;
    };
    const common = {
      kind: FORMAT_X86,
      rsvdLo,
      rsvdHi,
      presentMask: 1,
      permMask: (1 << 1) | PTE_US,
      accessedMask: 1 << 5,
      dirtyMask: 1 << 6,
      eptBadBits: NO_EPT_BITS,
      mbec: false,
      maxPhyAddr: o.maxPhyAddr,
    };
    switch (o.mode) {
      case "32bit": {
        // A 4 MiB PDE's bits 20:13 hold address bits 39:32 up to min(M, 40) (SDM Table 4-4);
        // the rest of 21:13 is reserved. Without PSE-36 all of 21:13 is reserved.
        const m = Math.min(o.maxPhyAddr, 40);
        set(2, true, o.pse36 ? bits(13 + (m - 32), 21) : bits(13, 21), 0);
        return new PagingFormat({
          ...common,
          name: o.pse ? "32-bit (PSE)" : "32-bit",
          levels: 2,
          entryBytes: 4,
          rootIsPdpteRegisters: false,
          addressBits: 32,
          shifts: levelShifts(2, 12, 10),
          indexMasks: sameMask(2, 0x3ff),
          // With CR4.PSE=0, PS in a PDE is ignored (not reserved): the PDE always points to a table.
          largeLevels: o.pse ? 1 << 2 : 0,
          xdMaskHi: 0,
          pse36: o.pse36,
        });
      }
      case "pae": {
        // PDPTE registers: bits 2:1, 8:5 and 63:M reserved (SDM Table 4-8), checked at CR3 load.
        set(3, false, bits(1, 2) | bits(5, 8), high | bits(20, 31));
        // PAE PDE/PTE: bits 62:M reserved, 63 unless NXE (SDM Tables 4-9..4-11).
        const hi = high | bits(20, 30) | xd;
        set(2, false, 0, hi);
        set(2, true, bits(13, 20), hi);
        set(1, true, 0, hi);
        const shifts = levelShifts(3, 12, 9);
        const indexMasks = sameMask(3, 0x1ff);
        indexMasks[3] = 3;
        return new PagingFormat({
          ...common,
          name: "PAE",
          levels: 3,
          entryBytes: 8,
          rootIsPdpteRegisters: true,
          addressBits: 32,
          shifts,
          indexMasks,
          largeLevels: 1 << 2,
          xdMaskHi: o.nxe ? PTE_XD_HI : 0,
          pse36: false,
        });
      }
      case "4level":
      case "5level": {
        const levels = o.mode === "4level" ? 4 : 5;
        const hi = high | xd;
        // AMD requires bit 8 of non-leaf PML5E/PML4E/PDPTE to be zero; Intel ignores it.
        const bit8 = o.amd ? 1 << 8 : 0;
        for (let l = 4; l <= levels; l++) set(l, false, PTE_PS | bit8, hi); // PS is reserved in PML4E/PML5E
        // Without 1 GiB page support, PS in a PDPTE is reserved.
        set(3, false, bit8 | (o.gbPages ? 0 : PTE_PS), hi);
        set(3, true, bits(13, 29), hi);
        set(2, false, 0, hi);
        set(2, true, bits(13, 20), hi);
        set(1, true, 0, hi);
        return new PagingFormat({
          ...common,
          name: `${levels}-level`,
          levels,
          entryBytes: 8,
          rootIsPdpteRegisters: false,
          addressBits: levels === 4 ? 48 : 57,
          shifts: levelShifts(levels, 12, 9),
          indexMasks: sameMask(levels, 0x1ff),
          largeLevels: (1 << 2) | (o.gbPages ? 1 << 3 : 0),
          xdMaskHi: o.nxe ? PTE_XD_HI : 0,
          pse36: false,
        });
      }
    }
  });
}

/**
 * The EPT format (SDM Vol. 3C 29.3.2, Tables 29-1..29-6; misconfigurations 29.3.3.1).
 */
export function eptFormat(o: EptFormatOptions): PagingFormat {
  checkMaxPhyAddr(o.maxPhyAddr);
  const key = `ept:${o.levels}:${o.maxPhyAddr}:${+o.executeOnly}:${+o.mbec}:${+o.gbPages}:${+o.accessedDirty}`;
  return cached(key, () => {
    const rsvdLo = new Uint32Array(12);
    const rsvdHi = new Uint32Array(12);
    const high = highAddressReserved(o.maxPhyAddr);
    const set = (level: number, leaf: boolean, lo: number) => {
      rsvdLo[level * 2 + (leaf ? 1 : 0)] = lo >>> 0;
      rsvdHi[level * 2 + (leaf ? 1 : 0)] = high;
    };
    for (let l = 4; l <= o.levels; l++) set(l, false, bits(3, 7)); // PML4E/PML5E: bits 7:3 reserved
    set(3, false, o.gbPages ? bits(3, 6) : bits(3, 7)); // PS in a PDPTE is reserved without 1 GiB pages
    set(3, true, bits(12, 29));
    set(2, false, bits(3, 6));
    set(2, true, bits(12, 20));
    set(1, true, 0);
    // [MT << 3 | XWR]: write without read, and execute without read when execute-only
    // translations are not supported, are misconfigurations; so are memory types 2, 3 and 7.
    const bad = new Uint8Array(64);
    for (let i = 0; i < 64; i++) {
      const xwr = i & 7;
      const mt = i >> EPT_MT_SHIFT;
      const writeNoRead = (xwr & (EPT_R | EPT_W)) === EPT_W;
      const execOnly = xwr === EPT_X && !o.executeOnly;
      bad[i] = writeNoRead || execOnly || mt === 2 || mt === 3 || mt === 7 ? 1 : 0;
    }
    return new PagingFormat({
      name: `EPT ${o.levels}-level${o.accessedDirty ? " (A/D)" : ""}${o.mbec ? " (MBEC)" : ""}`,
      kind: FORMAT_EPT,
      levels: o.levels,
      entryBytes: 8,
      rootIsPdpteRegisters: false,
      addressBits: o.levels === 4 ? 48 : 57,
      shifts: levelShifts(o.levels, 12, 9),
      indexMasks: sameMask(o.levels, 0x1ff),
      largeLevels: (1 << 2) | (o.gbPages ? 1 << 3 : 0),
      rsvdLo,
      rsvdHi,
      // With MBEC an entry whose only permission is user-execute is present too.
      presentMask: EPT_R | EPT_W | EPT_X | (o.mbec ? EPT_XU : 0),
      permMask: EPT_R | EPT_W | EPT_X | (o.mbec ? EPT_XU : 0),
      xdMaskHi: 0,
      accessedMask: o.accessedDirty ? 1 << 8 : 0,
      dirtyMask: o.accessedDirty ? 1 << 9 : 0,
      pse36: false,
      eptBadBits: bad,
      mbec: o.mbec,
      maxPhyAddr: o.maxPhyAddr,
    });
  });
}
