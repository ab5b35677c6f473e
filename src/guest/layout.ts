/**
 * The guest kernel's memory layout per paging mode: control registers, table geometry,
 * where the kernel half and its direct map of RAM sit, and where user space lives.
 *
 * ```
 *  mode    levels  entry  user space                     kernel half / direct map           huge pages
 *  32bit   2       4 B    0x00001000..0xbfffffff         PDE 768..1023, 0xc0000000 (896 MiB) 4 MiB (PSE)
 *  pae     3       8 B    PDPTE 0..2 (0..0xbfffffff)     PDPTE 3, 0xc0000000 (896 MiB)       2 MiB
 *  4level  4       8 B    PML4E 0..255  (< 2^47)         PML4E 256..511, 0xffff888000000000  2 MiB, 1 GiB
 *  5level  5       8 B    PML5E 0..255  (< 2^56)         PML5E 256..511, 0xff11000000000000  2 MiB, 1 GiB
 *
 *  32-bit linear address:  10 bits PD | 10 bits PT | 12 bits offset
 *  PAE linear address:      2 bits PDPT | 9 bits PD | 9 bits PT | 12 bits offset
 *  4-level:                 9 PML4 | 9 PDPT | 9 PD | 9 PT | 12 offset   (5-level: 9 PML5 first)
 * ```
 *
 * In 32-bit and PAE modes the direct map covers the first 896 MiB of guest-physical space,
 * like Linux's lowmem; this kernel has no highmem, so RAM above that is left unused.
 */

import {
  CR0_PE,
  CR0_PG,
  CR0_WP,
  CR4_LA57,
  CR4_PAE,
  CR4_PCIDE,
  CR4_PGE,
  CR4_PSE,
  EFER_LME,
  EFER_NXE,
} from "../arch/x86.js";

export type GuestPagingMode = "32bit" | "pae" | "4level" | "5level";

export interface GuestLayout {
  readonly mode: GuestPagingMode;
  readonly levels: number;
  /** Bytes per entry (4 or 8). */
  readonly entryBytes: number;
  /** [level] → shift of the address bits the level's index selects (level 1: 12). */
  readonly shifts: readonly number[];
  /** [level] → entries per table (the PAE PDPT has 4). */
  readonly entries: readonly number[];
  /** Root indices [userRootEnd, entries[levels]) belong to the kernel half. */
  readonly userRootEnd: number;
  /** First linear address of the direct map (bigint: 64-bit kernel addresses are not exact doubles). */
  readonly directBase: bigint;
  /** Guest-physical bytes the direct map can cover. */
  readonly directLimit: number;
  /** User virtual page numbers: [userFirstVpn, userEndVpn). */
  readonly userFirstVpn: number;
  readonly userEndVpn: number;
  /** Page levels that may hold user huge pages (2 = 2/4 MiB). */
  readonly userHugeLevel: number;
  /** Largest level the direct map may use. */
  readonly directHugeLevel: number;
  /** Program text, brk, mmap and stack placement (virtual page numbers). */
  readonly textVpn: number;
  readonly mmapTopVpn: number;
  readonly stackTopVpn: number;
  /** Execute-disable exists (EFER.NXE in PAE / IA-32e paging). */
  readonly nx: boolean;
  readonly pcid: boolean;
  /** Register values: CR0 with paging, CR4 without PCIDE (set after paging is on), EFER. */
  readonly cr0: number;
  readonly cr4: number;
  readonly efer: number;
}

export interface LayoutOptions {
  /** 32-bit mode: use 4 MiB pages (CR4.PSE); default true. */
  pse?: boolean;
  /** 4/5-level: tag address spaces with PCIDs (CR4.PCIDE); default false. */
  pcid?: boolean;
  /** 4/5-level: 1 GiB direct-map pages (the CPU must have them); default true. */
  gbPages?: boolean;
}

const MIB = 1 << 20;
const PAGE_OFFSET_32 = 0xc0000000;
const LOWMEM = 896 * MIB;

export function guestLayout(mode: GuestPagingMode, o: LayoutOptions = {}): GuestLayout {
  const cr0 = (CR0_PG | CR0_WP | CR0_PE) >>> 0;
  if (mode === "32bit") {
    const pse = o.pse ?? true;
    if (o.pcid) throw new RangeError("PCIDs need IA-32e paging (4- or 5-level), not 32bit");
    return {
      mode,
      levels: 2,
      entryBytes: 4,
      shifts: [0, 12, 22],
      entries: [0, 1024, 1024],
      userRootEnd: 768,
      directBase: BigInt(PAGE_OFFSET_32),
      directLimit: LOWMEM,
      userFirstVpn: 1,
      userEndVpn: PAGE_OFFSET_32 / 4096,
      userHugeLevel: pse ? 2 : 1,
      directHugeLevel: pse ? 2 : 1,
      textVpn: 0x08048,
      mmapTopVpn: 0xb0000,
      stackTopVpn: 0xbffff,
      nx: false,
      pcid: false,
      cr0,
      cr4: (pse ? CR4_PSE : 0) | CR4_PGE,
      efer: 0,
    };
  }
  if (mode === "pae") {
    if (o.pcid) throw new RangeError("PCIDs need IA-32e paging (4- or 5-level), not pae");
    return {
      mode,
      levels: 3,
      entryBytes: 8,
      shifts: [0, 12, 21, 30],
      entries: [0, 512, 512, 4],
      userRootEnd: 3,
      directBase: BigInt(PAGE_OFFSET_32),
      directLimit: LOWMEM,
      userFirstVpn: 1,
      userEndVpn: PAGE_OFFSET_32 / 4096,
      userHugeLevel: 2,
      directHugeLevel: 2,
      textVpn: 0x08048,
      mmapTopVpn: 0xb0000,
      stackTopVpn: 0xbffff,
      nx: true,
      pcid: false,
      cr0,
      cr4: CR4_PAE | CR4_PGE,
      efer: EFER_NXE,
    };
  }
  const five = mode === "5level";
  const levels = five ? 5 : 4;
  return {
    mode,
    levels,
    entryBytes: 8,
    shifts: five ? [0, 12, 21, 30, 39, 48] : [0, 12, 21, 30, 39],
    entries: five ? [0, 512, 512, 512, 512, 512] : [0, 512, 512, 512, 512],
    userRootEnd: 256,
    directBase: five ? 0xff11000000000000n : 0xffff888000000000n,
    directLimit: 2 ** (five ? 52 : 46),
    userFirstVpn: 1,
    userEndVpn: five ? 2 ** 44 - 1 : 2 ** 35 - 1,
    userHugeLevel: 2,
    directHugeLevel: (o.gbPages ?? true) ? 3 : 2,
    textVpn: 0x400,
    // 5-level: user space above 2^47, so the PML5 index and the upper PML4 indices are used.
    mmapTopVpn: five ? 0xfe000000000000 / 4096 : 0x7f0000000000 / 4096,
    stackTopVpn: five ? 2 ** 44 - 2 : 2 ** 35 - 2,
    nx: true,
    pcid: o.pcid ?? false,
    cr0,
    cr4: CR4_PAE | CR4_PGE | (five ? CR4_LA57 : 0),
    efer: EFER_LME | EFER_NXE,
  };
}

/** CR4 with PCIDE added (set once paging is on: SDM 4.10.1 refuses it outside IA-32e mode). */
export function cr4WithPcid(l: GuestLayout): number {
  return l.pcid ? l.cr4 | CR4_PCIDE : l.cr4;
}

/** Bytes mapped by one entry at `level`. */
export function levelSize(l: GuestLayout, level: number): number {
  return 2 ** l.shifts[level];
}

/** Pages (4 KiB) mapped by one entry at `level`. */
export function levelPages(l: GuestLayout, level: number): number {
  return 2 ** (l.shifts[level] - 12);
}

/** Index of `vpn` in a table at `level`. */
export function indexOf(l: GuestLayout, vpn: number, level: number): number {
  return Math.floor(vpn / levelPages(l, level)) % l.entries[level];
}

/** A virtual page number as a linear address. */
export function vpnToVa(vpn: number): bigint {
  return BigInt(vpn) << 12n;
}
