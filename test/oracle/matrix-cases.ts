/**
 * Building blocks of the access matrix (in the spirit of kvm-unit-tests x86/access.c):
 * paging-mode/page-size variants, the per-level bit combinations that matter, control
 * register combinations, and accesses. Each matrix file enumerates products of these.
 */

import type { NamedCpu } from "./vmmu-harness.js";
import type {
  CaseSpec,
  LevelSpec,
  OracleAccess,
  OracleAccessKind,
  OracleControl,
  OraclePagingMode,
  OraclePrivilege,
} from "./x86-paging-oracle.js";
import { bitRange, levelsOf } from "./x86-paging-oracle.js";

export interface Variant {
  name: string;
  mode: OraclePagingMode;
  /** Entries walked down to the leaf (page size = what the leaf level maps). */
  depth: number;
  /** CR4.PSE (32-bit paging). */
  pse: boolean;
}

export const VARIANTS: readonly Variant[] = [
  { name: "32bit/4K", mode: "32bit", depth: 2, pse: false },
  { name: "32bit/4K+PSE", mode: "32bit", depth: 2, pse: true },
  { name: "32bit/4M", mode: "32bit", depth: 1, pse: true },
  { name: "pae/4K", mode: "pae", depth: 3, pse: false },
  { name: "pae/2M", mode: "pae", depth: 2, pse: false },
  { name: "4level/4K", mode: "4level", depth: 4, pse: false },
  { name: "4level/2M", mode: "4level", depth: 3, pse: false },
  { name: "4level/1G", mode: "4level", depth: 2, pse: false },
  { name: "5level/4K", mode: "5level", depth: 5, pse: false },
  { name: "5level/2M", mode: "5level", depth: 4, pse: false },
  { name: "5level/1G", mode: "5level", depth: 3, pse: false },
];

export const variant = (name: string): Variant => {
  const v = VARIANTS.find((x) => x.name === name);
  if (!v) throw new Error(`no variant ${name}`);
  return v;
};

/** Paging level of path index `i`. */
export const levelAt = (v: Variant, i: number): number => levelsOf(v.mode)[i];

/** Table frames (distinct, with assorted address bits) for the path, root first. */
const TABLE_FRAMES = [0x1f3, 0x2a7, 0x0c5, 0x3de, 0x14b];

export function tablesFor(mode: OraclePagingMode): number[] {
  const t = TABLE_FRAMES.map((f) => f * 4096);
  if (mode === "pae") t[0] += 0x7e0; // the PDPT is 32-byte aligned, anywhere in its frame
  return t;
}

/** Linear addresses with a distinct non-zero index at every level and a non-zero offset. */
export function vaFor(mode: OraclePagingMode): bigint {
  switch (mode) {
    case "32bit":
    case "pae":
      return 0xa5c37abcn;
    case "4level":
      return 0x0000_5a3c_9e6f_7abcn;
    case "5level":
      return 0x00ab_5a3c_9e6f_7abcn;
  }
}

/** Kernel-half (bit 47/56 set) canonical addresses. */
export function highVaFor(mode: OraclePagingMode): bigint {
  return mode === "5level" ? 0xff9b_5a3c_9e6f_7abcn : 0xffff_da3c_9e6f_7abcn;
}

/** A page base with many address bits set, below MAXPHYADDR (and 4 GiB / 40 bits where needed). */
export function pageFor(v: Variant, maxPhyAddr: number): number {
  const leafLevel = levelAt(v, v.depth - 1);
  if (v.mode === "32bit") {
    if (leafLevel === 1) return 0xdeadb000;
    return Number(0xab_c040_0000n & bitRange(22, Math.min(maxPhyAddr, 40) - 1));
  }
  const shift = leafLevel === 1 ? 12 : leafLevel === 2 ? 21 : 30;
  return Number(0x000a_bcde_f6a5_5000n & bitRange(shift, maxPhyAddr - 1));
}

export const BASE_CONTROL: OracleControl = {
  wp: false,
  pse: false,
  smep: false,
  smap: false,
  pke: false,
  pks: false,
  nxe: false,
  pkru: 0,
  pkrs: 0,
};

/** Per-level bit combinations that decide rights: not present, or present × R/W × U/S (× XD). */
export function rightsCombos(v: Variant, level: number): LevelSpec[] {
  if (v.mode === "pae" && level === 3) return [{ p: false }, {}]; // PDPTE: only P
  const out: LevelSpec[] = [{ p: false }];
  const nxs = v.mode === "32bit" ? [false] : [false, true];
  for (const rw of [false, true])
    for (const us of [false, true]) for (const nx of nxs) out.push({ rw, us, nx });
  return out;
}

/** CR0.WP × CR4.SMEP × CR4.SMAP × EFER.NXE (× EFLAGS.AC when `withAc`), for variant `v`. */
export function controlCombos(v: Variant, withAc: boolean): { control: OracleControl; ac: boolean }[] {
  const out: { control: OracleControl; ac: boolean }[] = [];
  for (const wp of [false, true])
    for (const smep of [false, true])
      for (const smap of [false, true])
        for (const nxe of [false, true])
          for (const ac of withAc ? [false, true] : [false])
            out.push({ control: { ...BASE_CONTROL, pse: v.pse, wp, smep, smap, nxe }, ac });
  return out;
}

/** user/supervisor × read/write/fetch, and implicit supervisor read/write (there are no implicit fetches). */
export const ACCESSES: readonly { privilege: OraclePrivilege; kind: OracleAccessKind }[] = [
  { privilege: "user", kind: "read" },
  { privilege: "user", kind: "write" },
  { privilege: "user", kind: "fetch" },
  { privilege: "supervisor", kind: "read" },
  { privilege: "supervisor", kind: "write" },
  { privilege: "supervisor", kind: "fetch" },
  { privilege: "implicit", kind: "read" },
  { privilege: "implicit", kind: "write" },
];

export function accessOf(
  a: { privilege: OraclePrivilege; kind: OracleAccessKind },
  ac: boolean,
): OracleAccess {
  return { ...a, ac };
}

export function makeCase(
  v: Variant,
  cpu: NamedCpu,
  control: OracleControl,
  access: OracleAccess,
  levels: LevelSpec[],
  va: bigint = vaFor(v.mode),
): CaseSpec {
  return {
    mode: v.mode,
    cpu: cpu.oracle,
    control,
    access,
    va,
    levels,
    tables: tablesFor(v.mode),
    page: pageFor(v, cpu.oracle.maxPhyAddr),
  };
}

/** All-permissive levels (present, writable, user, executable), with overrides at some indices. */
export function permissiveLevels(v: Variant, overrides: Record<number, LevelSpec> = {}): LevelSpec[] {
  const levels: LevelSpec[] = [];
  for (let i = 0; i < v.depth; i++) levels.push(overrides[i] ?? {});
  return levels;
}

/** PKRU/PKRS value with `v` (AD=bit 0, WD=bit 1) for `key` and the complement for every other key. */
export function keyRegister(key: number, v: number): number {
  let r = 0;
  for (let k = 0; k < 16; k++) r |= (k === key ? v : v ^ 3) << (2 * k);
  return r >>> 0;
}
