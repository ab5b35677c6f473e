/**
 * Host page-table entries (SPTEs) as the host MMUs write them, in the formats the hardware
 * walks: EPT for Intel, the x86 long-mode format for AMD NPT (and, later, shadow paging).
 * Like KVM's spte.h, every bit the MMU uses is named once here, including the software
 * bits kept in bits the hardware ignores.
 *
 * ```
 *  EPT SPTE                                   NPT SPTE
 *  63     62..54  53  52  ..  9 8  7  5:3 2 1 0     63  62..54  53  52  ..  7  6 5  2  1 0
 *  [SVE] [ gen ] [MW][HW] .. [D][A][PS][WB][X W R] [XD] [ gen ] [MW][HW] .. [PS][D A][U][W][P]
 *   MW = writable as far as the MMU is concerned (not write-protected for dirty logging)
 *   HW = the host mapping is writable (memslot not read-only)
 *  MMIO SPTE: EPT  → bits 2:0 = 110b (write+execute without read: always a misconfiguration),
 *                    the GFN in the address bits, the memslot generation in bits 11:3 and 62:54;
 *             NPT  → P plus reserved address bit 51 (a reserved-bit fault), same fields.
 * ```
 * The MMU-writable/host-writable pair is how a write fault on a write-protected SPTE can
 * be fixed on the fast path: if HW and MW are set, restore W without a full fault
 * (KVM's fast page fault for dirty logging).
 */

import { EPT_A, EPT_D, EPT_MT_SHIFT, EPT_MT_WB, EPT_PS, EPT_R, EPT_W, EPT_X, EPT_XU } from "../arch/ept.js";
import type { PagingFormat } from "../arch/format.js";
import { PTE_A, PTE_D, PTE_P, PTE_PS, PTE_RW, PTE_US, PTE_XD_HI } from "../arch/x86.js";

/** Software bit, high half (bit 52): the host mapping is writable. */
export const SPTE_HOST_WRITABLE_HI = 1 << 20;
/** Software bit, high half (bit 53): not write-protected by the MMU. */
export const SPTE_MMU_WRITABLE_HI = 1 << 21;
/** MMIO generation bits: 9 in bits 11:3 and 9 in bits 62:54. */
const GEN_LO_SHIFT = 3;
const GEN_HI_SHIFT = 22;
export const MMIO_GEN_BITS = 18;
export const MMIO_GEN_MASK = (1 << MMIO_GEN_BITS) - 1;

/** How SPTEs of one host format are made and read. */
export class SpteFormat {
  readonly kind: "ept" | "npt";
  readonly format: PagingFormat;
  /** Bits of a non-leaf entry besides the address. */
  readonly tableLo: number;
  readonly writableLo: number;
  readonly accessedLo: number;
  readonly dirtyLo: number;
  /** Whether MMIO SPTEs can be made (NPT needs a reserved address bit: MAXPHYADDR < 52). */
  readonly mmioCaching: boolean;

  constructor(format: PagingFormat, kind: "ept" | "npt") {
    this.kind = kind;
    this.format = format;
    if (kind === "ept") {
      this.tableLo = EPT_R | EPT_W | EPT_X | (format.mbec ? EPT_XU : 0);
      this.writableLo = EPT_W;
      this.accessedLo = format.accessedMask !== 0 ? EPT_A : 0;
      this.dirtyLo = format.dirtyMask !== 0 ? EPT_D : 0;
      this.mmioCaching = true;
    } else {
      this.tableLo = PTE_P | PTE_RW | PTE_US;
      this.writableLo = PTE_RW;
      this.accessedLo = PTE_A;
      this.dirtyLo = PTE_D;
      this.mmioCaching = format.maxPhyAddr < 52;
    }
  }

  /** A present mapping or table (not an MMIO SPTE). */
  isPresent(lo: number, hi: number): boolean {
    return (lo & this.format.presentMask) !== 0 && !this.isMmio(lo, hi);
  }

  /** A leaf mapping host frame `hfn` at `level` (1 = 4 KiB). */
  leaf(
    level: number,
    hfn: number,
    writable: boolean,
    executable: boolean,
    hostWritable: boolean,
    out: Uint32Array,
  ): void {
    let lo: number;
    let hi = Math.floor(hfn / 0x100000);
    if (this.kind === "ept") {
      lo = EPT_R | (writable ? EPT_W : 0) | (executable ? EPT_X | (this.format.mbec ? EPT_XU : 0) : 0);
      lo |= EPT_MT_WB << EPT_MT_SHIFT;
      if (level > 1) lo |= EPT_PS;
    } else {
      lo = PTE_P | PTE_US | (writable ? PTE_RW : 0);
      if (level > 1) lo |= PTE_PS;
      if (!executable) hi |= PTE_XD_HI;
    }
    if (hostWritable) hi |= SPTE_HOST_WRITABLE_HI;
    if (writable) hi |= SPTE_MMU_WRITABLE_HI;
    out[0] = (lo | ((hfn % 0x100000) << 12)) >>> 0;
    out[1] = hi >>> 0;
  }

  /** A non-leaf entry pointing at table frame `hfn`. */
  table(hfn: number, out: Uint32Array): void {
    out[0] = (this.tableLo | ((hfn % 0x100000) << 12)) >>> 0;
    out[1] = Math.floor(hfn / 0x100000);
  }

  isLeaf(lo: number, level: number): boolean {
    return level === 1 || (lo & PTE_PS) !== 0; // EPT_PS and PTE_PS are both bit 7
  }

  frameOf(lo: number, hi: number): number {
    return (hi & 0xfffff) * 0x100000 + (lo >>> 12);
  }

  isWritable(lo: number): boolean {
    return (lo & this.writableLo) !== 0;
  }

  isExecutable(lo: number, hi: number): boolean {
    return this.kind === "ept" ? (lo & EPT_X) !== 0 : (hi & PTE_XD_HI) === 0;
  }

  // --- MMIO SPTEs ---

  /** An MMIO SPTE for `gfn` stamped with memslot generation `gen`. */
  mmio(gfn: number, gen: number, out: Uint32Array): void {
    const g = gen & MMIO_GEN_MASK;
    let lo = ((gfn % 0x100000) << 12) | ((g & 0x1ff) << GEN_LO_SHIFT);
    let hi = Math.floor(gfn / 0x100000) | ((g >>> 9) << GEN_HI_SHIFT);
    if (this.kind === "ept") lo |= EPT_W | EPT_X;
    else {
      lo |= PTE_P;
      hi |= 1 << 19; // bit 51: reserved below MAXPHYADDR 52
    }
    out[0] = lo >>> 0;
    out[1] = hi >>> 0;
  }

  isMmio(lo: number, hi: number): boolean {
    if (this.kind === "ept") return (lo & 7) === (EPT_W | EPT_X);
    return (lo & PTE_P) !== 0 && (hi & (1 << 19)) !== 0;
  }

  mmioGeneration(lo: number, hi: number): number {
    return ((lo >>> GEN_LO_SHIFT) & 0x1ff) | (((hi >>> GEN_HI_SHIFT) & 0x1ff) << 9);
  }

  mmioGfn(lo: number, hi: number): number {
    return (hi & (this.kind === "ept" ? 0xfffff : 0x7ffff)) * 0x100000 + (lo >>> 12);
  }
}
