/**
 * Listings in the line formats of QEMU 7.2's monitor commands `info tlb` and `info mem`
 * (target/i386/monitor.c: print_pte and mem_print), so vmmu's output can be diffed
 * against a live QEMU for the same CPU state.
 *
 * ```
 *  info tlb   "%016lx: %016lx %c%c%c%c%c%c%c%c%c\n"   va: pa XGPDACTUW   (leaf bits: NX, G, PS, D, A, PCD, PWT, U/S, R/W)
 *  info mem   "%016lx-%016lx %016lx %c%c%c\n"          start-end size u r w  (protection ANDed over the path)
 *  linear addresses sign-extended from bit 47 (4-level) or 56 (5-level); "PG disabled" when CR0.PG=0
 * ```
 *
 * Where QEMU prints a wrong value, vmmu prints the right one (docs/CLI.md lists the cases):
 * the physical address is the page's address as the processor computes it (QEMU's PAE
 * mask keeps bit 63 (NX) and reserved bits; its 32-bit 4 MiB mask keeps reserved bit 21
 * and drops PSE-36 bits 39:32; its 64-bit mask drops bits 51:50), and `info mem` under
 * 5-level paging lists the ranges (QEMU's la57 walk tests presence inverted and lists nothing).
 */

import type { PagingMode } from "../arch/cpu.js";
import type { Mapping, ProtRange } from "./mappings.js";

/** What QEMU prints when paging is off. */
export const QEMU_PG_DISABLED = "PG disabled\n";

const MASK64 = (1n << 64n) - 1n;

/** Sign-extends a linear address as QEMU's addr_canonical does (bit 47, or bit 56 with LA57). */
export function canonicalAddress(mode: PagingMode, addr: bigint): bigint {
  const bits = mode === "5level" ? 57n : mode === "4level" ? 48n : 0n;
  if (bits === 0n || ((addr >> (bits - 1n)) & 1n) === 0n) return addr & MASK64;
  return (addr | (MASK64 ^ ((1n << bits) - 1n))) & MASK64;
}

function hex16(v: bigint | number): string {
  return v.toString(16).padStart(16, "0");
}

/** The nine `info tlb` flag characters of a leaf entry (PS shown for large pages only, as QEMU). */
export function qemuTlbFlags(m: Pick<Mapping, "lo" | "hi" | "level">): string {
  const lo = m.lo;
  return (
    (m.hi & 0x8000_0000 ? "X" : "-") +
    (lo & 0x100 ? "G" : "-") +
    (m.level > 1 && lo & 0x80 ? "P" : "-") +
    (lo & 0x40 ? "D" : "-") +
    (lo & 0x20 ? "A" : "-") +
    (lo & 0x10 ? "C" : "-") +
    (lo & 0x08 ? "T" : "-") +
    (lo & 0x04 ? "U" : "-") +
    (lo & 0x02 ? "W" : "-")
  );
}

/**
 * Formats `info tlb` lines. Remembers the text after the address for recently seen leaf
 * tables, so a table referenced from many places (aliases) is formatted once.
 */
export class QemuTlbFormatter {
  private readonly memo = new Map<string, string[]>();
  private static readonly MEMO_TABLES = 256;
  private lastTable = -1;
  private lastLevel = 0;
  private tails: string[] = [];
  private lastHi = -1;
  private hiText = "";

  /** One line, with its newline. */
  line(m: Mapping): string {
    if (m.tableAddress !== this.lastTable || m.level !== this.lastLevel) {
      const key = `${m.level}:${m.tableAddress}`;
      let tails = this.memo.get(key);
      if (tails === undefined) {
        if (this.memo.size >= QemuTlbFormatter.MEMO_TABLES)
          this.memo.delete(this.memo.keys().next().value as string);
        tails = [];
        this.memo.set(key, tails);
      }
      this.tails = tails;
      this.lastTable = m.tableAddress;
      this.lastLevel = m.level;
    }
    let tail = this.tails[m.index];
    if (tail === undefined) {
      tail = `: ${hex16(m.physical)} ${qemuTlbFlags(m)}\n`;
      this.tails[m.index] = tail;
    }
    if (m.vaHi !== this.lastHi) {
      this.lastHi = m.vaHi;
      this.hiText = (m.vaHi >>> 0).toString(16).padStart(8, "0");
    }
    return this.hiText + (m.vaLo >>> 0).toString(16).padStart(8, "0") + tail;
  }
}

/** One `info mem` line for a range, with its newline. */
export function qemuMemLine(mode: PagingMode, r: ProtRange): string {
  const start = canonicalAddress(mode, r.start);
  const end = canonicalAddress(mode, r.end);
  const size = canonicalAddress(mode, r.end - r.start);
  return `${hex16(start)}-${hex16(end)} ${hex16(size)} ${r.prot & 4 ? "u" : "-"}r${r.prot & 2 ? "w" : "-"}\n`;
}
