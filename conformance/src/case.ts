/**
 * One conformance case: a complete set of page tables in the kernel's scratch area, CPU
 * state, and one 1-byte access. Built by the generator, encoded for the kernel
 * (kernel/FORMAT.md section 2), and evaluated by vmmu.
 */

import { LAYOUT, MODE_NAMES, type ModeNumber } from "./layout.js";

export const F_WP = 1 << 0;
export const F_PSE = 1 << 1;
export const F_SMEP = 1 << 2;
export const F_SMAP = 1 << 3;
export const F_PKE = 1 << 4;
export const F_PKS = 1 << 5;
export const F_NXE = 1 << 6;
export const F_AC = 1 << 7;
export const F_CPL3 = 1 << 8;
export const F_ACCESS_SHIFT = 9;
export type Access = 0 | 1 | 2; // read, write, fetch

/** Which documented QEMU departure (conformance/DEVIATIONS.md) a case exercises, if any. */
export type Deviation = "pdpte-reserved" | "amd-bit8";

export interface TableWrite {
  addr: number;
  value: bigint;
}

export interface Case {
  mode: ModeNumber;
  flags: number;
  pkru: number;
  pkrs: number;
  cr3: number;
  va: bigint;
  /** Scratch pages zeroed first. */
  pages: number[];
  writes: TableWrite[];
  /** Entry addresses read back after the access. */
  watches: number[];
  /** What the case is about, for reports. */
  label: string;
  deviation?: Deviation;
}

export function accessOf(c: Case): Access {
  return ((c.flags >>> F_ACCESS_SHIFT) & 3) as Access;
}

const LEVEL_SHIFTS: Record<ModeNumber, number[]> = {
  0: [22, 12],
  1: [30, 21, 12],
  2: [39, 30, 21, 12],
  3: [48, 39, 30, 21, 12],
};
const INDEX_MASK: Record<ModeNumber, number[]> = {
  0: [0x3ff, 0x3ff],
  1: [3, 0x1ff, 0x1ff],
  2: [0x1ff, 0x1ff, 0x1ff, 0x1ff],
  3: [0x1ff, 0x1ff, 0x1ff, 0x1ff, 0x1ff],
};

export function levelCount(mode: ModeNumber): number {
  return LEVEL_SHIFTS[mode].length;
}

/** Incrementally builds a case's tables (root first). Depth 0 is the root level. */
export class CaseBuilder {
  readonly tables = new Map<number, Map<number, bigint>>();
  readonly root: number;
  private readonly es: number;

  constructor(
    readonly mode: ModeNumber,
    private readonly allocPage: () => number,
  ) {
    this.es = LAYOUT.entrySize(mode);
    this.root = this.newTable();
    for (const e of LAYOUT.rootEntries(mode)) this.tables.get(this.root)!.set(e.index, BigInt(e.value));
  }

  newTable(): number {
    const pa = this.allocPage();
    this.tables.set(pa, new Map());
    return pa;
  }

  index(va: bigint, depth: number): number {
    return Number((va >> BigInt(LEVEL_SHIFTS[this.mode][depth])) & BigInt(INDEX_MASK[this.mode][depth]));
  }

  entryAddr(table: number, index: number): number {
    return table + index * this.es;
  }

  get(addr: number): bigint | undefined {
    return this.tables.get(addr - (addr % 4096))?.get((addr % 4096) / this.es);
  }

  set(addr: number, value: bigint): void {
    const t = this.tables.get(addr - (addr % 4096));
    if (!t) throw new Error(`0x${addr.toString(16)} is not in a case table`);
    t.set((addr % 4096) / this.es, BigInt.asUintN(this.es * 8, value));
  }

  /**
   * Creates the path for `va` down to `leafDepth`, using `upper(depth)` bits for new
   * non-leaf entries, and returns the entry addresses (root first). The leaf entry is
   * left for the caller to set.
   */
  path(va: bigint, leafDepth: number, upper: (depth: number) => bigint): number[] {
    const addrs: number[] = [];
    let table = this.root;
    for (let d = 0; ; d++) {
      const e = this.entryAddr(table, this.index(va, d));
      addrs.push(e);
      if (d === leafDepth) return addrs;
      const cur = this.get(e);
      if (cur === undefined) {
        const t = this.newTable();
        this.set(e, BigInt(t) | upper(d));
        table = t;
      } else table = Number(cur & 0xffffffffff000n);
    }
  }

  build(o: {
    flags: number;
    pkru?: number;
    pkrs?: number;
    va: bigint;
    watches: number[];
    label: string;
    deviation?: Deviation;
  }): Case {
    const writes: TableWrite[] = [];
    for (const [t, entries] of [...this.tables].sort((a, b) => a[0] - b[0]))
      for (const [i, v] of [...entries].sort((a, b) => a[0] - b[0]))
        if (v !== 0n) writes.push({ addr: t + i * this.es, value: v });
    return {
      mode: this.mode,
      flags: o.flags,
      pkru: o.pkru ?? 0,
      pkrs: o.pkrs ?? 0,
      cr3: this.root,
      va: o.va,
      pages: [...this.tables.keys()].sort((a, b) => a - b),
      writes,
      watches: o.watches,
      label: o.label,
      deviation: o.deviation,
    };
  }
}

/** Encodes cases into a kernel batch (kernel/FORMAT.md section 2). */
export function encodeBatch(mode: ModeNumber, cases: readonly Case[]): Uint8Array {
  const es = LAYOUT.entrySize(mode);
  let size = 32;
  const sizes = cases.map((c) => {
    const s =
      4 + 4 + 4 + 4 + 8 + 8 + 4 + 8 * c.pages.length + 4 + 24 * c.writes.length + 4 + 16 * c.watches.length;
    const padded = Math.max(48, (s + 7) & ~7);
    size += padded;
    return padded;
  });
  const buf = new ArrayBuffer(size);
  const v = new DataView(buf);
  const u8 = new Uint8Array(buf);
  u8.set(new TextEncoder().encode("VMMUCASE"), 0);
  v.setUint32(8, 1, true);
  v.setUint32(12, mode, true);
  v.setUint32(16, cases.length, true);
  v.setUint32(20, 32, true);
  let o = 32;
  cases.forEach((c, i) => {
    if (c.mode !== mode) throw new Error(`case ${i} is mode ${c.mode}, batch is mode ${mode}`);
    const start = o;
    v.setUint32(o, sizes[i], true);
    v.setUint32(o + 4, c.flags, true);
    v.setUint32(o + 8, c.pkru >>> 0, true);
    v.setUint32(o + 12, c.pkrs >>> 0, true);
    v.setBigUint64(o + 16, BigInt(c.cr3), true);
    v.setBigUint64(o + 24, c.va, true);
    o += 32;
    v.setUint32(o, c.pages.length, true);
    o += 4;
    for (const p of c.pages) {
      v.setBigUint64(o, BigInt(p), true);
      o += 8;
    }
    v.setUint32(o, c.writes.length, true);
    o += 4;
    for (const w of c.writes) {
      v.setBigUint64(o, BigInt(w.addr), true);
      v.setBigUint64(o + 8, w.value, true);
      v.setUint32(o + 16, es, true);
      o += 24;
    }
    v.setUint32(o, c.watches.length, true);
    o += 4;
    for (const w of c.watches) {
      v.setBigUint64(o, BigInt(w), true);
      v.setUint32(o + 8, es, true);
      o += 16;
    }
    o = start + sizes[i];
  });
  return u8;
}

/** A one-paragraph description of a case for disagreement reports. */
export function describeCase(c: Case): string {
  const names = ["WP", "PSE", "SMEP", "SMAP", "PKE", "PKS", "NXE", "AC", "CPL3"];
  const flags = names.filter((_, i) => c.flags & (1 << i)).join("|") || "-";
  const access = ["read", "write", "fetch"][accessOf(c)];
  const hex = (n: bigint | number) => `0x${n.toString(16)}`;
  const lines = [
    `${c.label}: mode ${MODE_NAMES[c.mode]} ${access} va ${hex(c.va)} flags ${flags} pkru ${hex(c.pkru)} pkrs ${hex(c.pkrs)} cr3 ${hex(c.cr3)}`,
    ...c.writes.map((w) => `    [${hex(w.addr)}] = ${hex(w.value)}`),
  ];
  return lines.join("\n");
}
