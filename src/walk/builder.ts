/**
 * Builds page tables in memory in any format: the demonstration, the tests, the
 * conformance generator and the guest OS model all make their tables with it.
 *
 * @example
 * ```ts
 * const b = new PageTableBuilder(physical, role.format!, bumpAllocator(physical, 0x100, 64));
 * b.map(0x400000n, 0x1234000, 4096, x86Leaf({ writable: true, user: true }));
 * const cr3 = b.cr3;
 * ```
 */

import { EPT_MT_SHIFT, EPT_MT_WB, EPT_R, EPT_W, EPT_X, EPT_XU } from "../arch/ept.js";
import { FORMAT_EPT, type PagingFormat } from "../arch/format.js";
import { hi32, lo32, toU64, type U64Input } from "../arch/u64.js";
import {
  PTE_A,
  PTE_D,
  PTE_G,
  PTE_P,
  PTE_PK_SHIFT_HI,
  PTE_PS,
  PTE_RW,
  PTE_US,
  PTE_XD_HI,
} from "../arch/x86.js";
import type { FrameSource } from "../mem/frame-source.js";

/** Entry bits other than the address and PS, as halves. */
export interface EntryBits {
  lo: number;
  hi: number;
}

export interface X86LeafOptions {
  writable?: boolean;
  user?: boolean;
  /** Execute-disable (bit 63; needs EFER.NXE=1 to be legal). */
  noExecute?: boolean;
  global?: boolean;
  /** Protection key 0..15 (IA-32e). */
  pkey?: number;
  accessed?: boolean;
  dirty?: boolean;
}

/** x86 leaf bits: present, plus what the options ask for. */
export function x86Leaf(o: X86LeafOptions = {}): EntryBits {
  let lo = PTE_P;
  if (o.writable ?? true) lo |= PTE_RW;
  if (o.user) lo |= PTE_US;
  if (o.global) lo |= PTE_G;
  if (o.accessed) lo |= PTE_A;
  if (o.dirty) lo |= PTE_D;
  let hi = o.noExecute ? PTE_XD_HI : 0;
  if (o.pkey !== undefined) {
    if (!Number.isInteger(o.pkey) || o.pkey < 0 || o.pkey > 15)
      throw new RangeError(`protection key ${o.pkey} is not 0..15`);
    hi |= o.pkey << PTE_PK_SHIFT_HI;
  }
  return { lo: lo >>> 0, hi: hi >>> 0 };
}

export interface EptLeafOptions {
  read?: boolean;
  write?: boolean;
  execute?: boolean;
  /** User-mode execute (MBEC). */
  userExecute?: boolean;
  /** Memory type (0 UC, 1 WC, 4 WT, 5 WP, 6 WB); default WB. */
  memoryType?: number;
}

export function eptLeaf(o: EptLeafOptions = {}): EntryBits {
  let lo = 0;
  if (o.read ?? true) lo |= EPT_R;
  if (o.write ?? true) lo |= EPT_W;
  if (o.execute ?? true) lo |= EPT_X;
  if (o.userExecute) lo |= EPT_XU;
  lo |= (o.memoryType ?? EPT_MT_WB) << EPT_MT_SHIFT;
  return { lo, hi: 0 };
}

/** Hands out zeroed frames for tables. */
export type TableAllocator = () => number;

/** Allocates frames [firstGfn, firstGfn + count) in order, zeroing each; throws when they run out. */
export function bumpAllocator(memory: FrameSource, firstGfn: number, count: number): TableAllocator {
  let next = firstGfn;
  return () => {
    if (next >= firstGfn + count)
      throw new RangeError(
        `table allocator ran out of its ${count} frames at gfn 0x${firstGfn.toString(16)}`,
      );
    const gfn = next++;
    const words = memory.frameWords(gfn);
    if (!words) throw new RangeError(`table frame 0x${gfn.toString(16)} is not in memory`);
    words.fill(0, memory.frameBase, memory.frameBase + 1024);
    return gfn;
  };
}

export class PageTableBuilder {
  /** Root table frame (PAE: the frame holding the PDPT at offset 0). */
  readonly rootGfn: number;
  /** Bits of every non-leaf entry the builder creates (permissive: the leaf decides). */
  readonly tableBits: EntryBits;

  constructor(
    readonly memory: FrameSource,
    readonly format: PagingFormat,
    private readonly alloc: TableAllocator,
    tableBits?: EntryBits,
  ) {
    this.rootGfn = alloc();
    this.tableBits =
      tableBits ??
      (format.kind === FORMAT_EPT
        ? { lo: EPT_R | EPT_W | EPT_X | (format.mbec ? EPT_XU : 0), hi: 0 }
        : { lo: PTE_P | PTE_RW | PTE_US, hi: 0 });
  }

  /** The value to load into CR3 (or the address part of an EPTP / nCR3). */
  get cr3(): bigint {
    return BigInt(this.rootGfn * 4096);
  }

  /**
   * Maps the page of `pageSize` bytes at `va` to physical `pa` with leaf bits `leaf`,
   * creating intermediate tables as needed. Throws if the size is not a page size of the
   * format, the addresses are misaligned, or a larger page already covers `va`.
   */
  map(vaIn: U64Input, pa: number, pageSize: number, leaf: EntryBits): void {
    const f = this.format;
    const level = this.levelForSize(pageSize);
    const va = toU64(vaIn, "virtual address");
    if (va % BigInt(pageSize) !== 0n || pa % pageSize !== 0)
      throw new RangeError(`0x${va.toString(16)} → 0x${pa.toString(16)} is not aligned to ${pageSize}`);
    // The entry must be able to hold the address: 40 bits in a PSE-36 4 MiB page, 32 in a
    // 32-bit PTE, MAXPHYADDR bits elsewhere (anything else would be a reserved or ignored bit).
    const limit = f.entryBytes === 4 ? (level === 2 ? 2 ** 40 : 2 ** 32) : 2 ** f.maxPhyAddr;
    if (!Number.isSafeInteger(pa) || pa < 0 || pa + pageSize > limit)
      throw new RangeError(
        `physical address 0x${pa.toString(16)} does not fit in a ${f.name} entry (limit 0x${limit.toString(16)})`,
      );
    const entry = this.entryAddress(va, level, true);
    let lo = (leaf.lo | (level > 1 ? PTE_PS : 0)) >>> 0;
    let hi = leaf.hi >>> 0;
    if (f.entryBytes === 4) {
      // 32-bit paging: a 4 MiB page keeps physical bits 39:32 in bits 20:13 (PSE-36).
      lo = (lo | (pa % 2 ** 32) | (level === 2 ? Math.floor(pa / 2 ** 32) << 13 : 0)) >>> 0;
      if (level === 1 && pa >= 2 ** 32)
        throw new RangeError("32-bit paging maps 4 KiB pages below 4 GiB only");
    } else {
      lo = (lo | (pa % 2 ** 32)) >>> 0;
      hi = (hi | Math.floor(pa / 2 ** 32)) >>> 0;
    }
    this.write(entry, lo, hi);
  }

  /** Clears the leaf entry for `va` at `level` (if its tables exist). */
  unmap(va: U64Input, level = 1): void {
    const e = this.entryAddress(toU64(va, "virtual address"), level, false);
    if (e >= 0) this.write(e, 0, 0);
  }

  /**
   * Physical address of the entry translating `va` at `level`; creates missing tables when
   * `create`, else returns -1 when a table on the way is missing.
   */
  entryAddress(va: bigint, level: number, create: boolean): number {
    const f = this.format;
    if (!Number.isInteger(level) || level < 1 || level > f.levels)
      throw new RangeError(`level ${level} does not exist in ${f.name}`);
    let tableAddr = this.rootGfn * 4096;
    const vaHi = hi32(va);
    const vaLo = lo32(va);
    for (let l = f.levels; ; l--) {
      const s = f.shifts[l];
      const index = (s >= 32 ? vaHi >>> (s - 32) : (vaLo >>> s) | (vaHi << (32 - s))) & f.indexMasks[l];
      const entry = tableAddr + index * f.entryBytes;
      if (l === level) return entry;
      const [lo, hi] = this.read(entry);
      if ((lo & f.presentMask) === 0) {
        if (!create) return -1;
        const gfn = this.alloc();
        // PAE PDPTEs have only P among the flag bits; R/W and U/S are reserved there.
        const bits = f.rootIsPdpteRegisters && l === 3 ? { lo: PTE_P, hi: 0 } : this.tableBits;
        this.write(
          entry,
          (bits.lo | ((gfn % 0x100000) << 12)) >>> 0,
          (bits.hi | Math.floor(gfn / 0x100000)) >>> 0,
        );
        tableAddr = gfn * 4096;
      } else {
        if (l > 1 && (f.largeLevels >>> l) & 1 && lo & PTE_PS)
          throw new RangeError(`0x${va.toString(16)} is already covered by a level-${l} page`);
        tableAddr = (hi & 0xfffff) * 2 ** 32 + ((lo & 0xfffff000) >>> 0);
      }
    }
  }

  /** Reads an entry (halves) at a physical address. */
  read(pa: number): [number, number] {
    const words = this.frame(pa);
    const i = this.memory.frameBase + ((pa % 4096) >>> 2);
    return [words[i], this.format.entryBytes === 8 ? words[i + 1] : 0];
  }

  /** Writes an entry (halves) at a physical address. */
  write(pa: number, lo: number, hi: number): void {
    const words = this.frame(pa);
    const i = this.memory.frameBase + ((pa % 4096) >>> 2);
    words[i] = lo;
    if (this.format.entryBytes === 8) words[i + 1] = hi;
    else if (hi !== 0) throw new RangeError("32-bit entries have no high half");
  }

  private frame(pa: number): Uint32Array {
    const words = this.memory.frameWords(Math.floor(pa / 4096));
    if (!words) throw new RangeError(`table address 0x${pa.toString(16)} is not in memory`);
    return words;
  }

  private levelForSize(size: number): number {
    const f = this.format;
    for (let l = 1; l <= f.levels; l++)
      if (2 ** f.shifts[l] === size && (l === 1 || ((f.largeLevels >>> l) & 1) === 1)) return l;
    throw new RangeError(`${f.name} paging has no ${size}-byte pages`);
  }
}
