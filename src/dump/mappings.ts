/**
 * Every mapping of an address space, found by enumerating the page tables (not by
 * walking each page): 32-bit (with PSE), PAE, 4-level and 5-level paging, over any
 * `FrameSource` (a dump, guest memory).
 *
 * The traversal is the one QEMU's monitor does (`info tlb`, `info mem`), so listings
 * can be compared line for line: a present entry with PS=1 is a leaf in a 32-bit PDE
 * (with CR4.PSE), a PAE PDE, or a 64-bit PDE/PDPTE; PS in a PML4E/PML5E is ignored.
 * What the processor would make of each entry is recorded alongside: `reserved` is set
 * when an entry on the path has a reserved bit set for the CPU model (SDM 4.3-4.5), so
 * an access through that mapping would #PF with RSVD (QEMU's monitor does not check).
 *
 * ```
 *  level: 5 PML5E   4 PML4E   3 PDPTE   2 PDE   1 PTE      (32-bit: 2 PDE, 1 PTE; PAE: 3 PDPTE, 2, 1)
 *  prot : AND of P|R/W|U/S over the levels (PAE PDPTEs have no R/W, U/S), as QEMU's `info mem`
 *  nx   : OR of bit 63 over the levels (meaningful when EFER.NXE=1)
 * ```
 */

import type { CpuRole } from "../arch/cpu.js";
import type { PagingFormat } from "../arch/format.js";
import { toU64, type U64Input } from "../arch/u64.js";
import { PTE_PS, PTE_XD_HI } from "../arch/x86.js";
import type { FrameSource } from "../mem/frame-source.js";

/** A leaf found by `enumerateMappings`. One record is reused for every mapping: copy what you keep. */
export class Mapping {
  /** Canonical (sign-extended) linear address of the page, as high and low 32-bit halves. */
  vaHi = 0;
  vaLo = 0;
  /** Physical address of the page (the leaf's address bits, PSE-36 included). */
  physical = 0;
  /** Level of the leaf: 1 (4 KiB), 2 (2 MiB / 4 MiB), 3 (1 GiB). */
  level = 0;
  /** log2 of the page size. */
  pageShift = 0;
  /** The leaf entry (low and high halves; `hi` is 0 for 32-bit paging). */
  lo = 0;
  hi = 0;
  /** Physical address of the leaf entry, of its table, and its index there. */
  entryAddress = 0;
  tableAddress = 0;
  index = 0;
  /** P (1) | R/W (2) | U/S (4) ANDed over the path. */
  prot = 0;
  /** Bit 63 set in some entry of the path. */
  nx = false;
  /** Some entry of the path has a reserved bit set: an access would #PF with RSVD. */
  reserved = false;

  /** The linear address as a bigint. */
  get va(): bigint {
    return (BigInt(this.vaHi >>> 0) << 32n) | BigInt(this.vaLo >>> 0);
  }

  get pageSize(): number {
    return 2 ** this.pageShift;
  }
}

export interface EnumerateOptions {
  /**
   * Called for each reference to a paging structure that is not in memory; the
   * structure is skipped (as if not present). `va` is the first address it would map.
   */
  onMissingTable?: (tableAddress: number, level: number, va: bigint) => void;
}

/**
 * The physical address of the root paging structure for a CR3 value (as software writes
 * it: PCID and the no-flush bit are not part of the address). PAE: the 32-byte-aligned PDPT.
 */
export function pageTableRoot(role: CpuRole, cr3In: U64Input): number {
  const cr3 = toU64(cr3In, "CR3");
  switch (role.mode) {
    case "32bit":
      return Number(cr3 & 0xfffff000n);
    case "pae":
      return Number(cr3 & 0xffffffe0n);
    case "4level":
    case "5level":
      return Number(cr3 & 0x000ffffffffff000n);
    default:
      throw new RangeError("paging is off (CR0.PG=0): there are no page tables");
  }
}

/** Levels at which QEMU's monitor treats PS=1 as a leaf. */
function monitorLeafLevels(f: PagingFormat): number {
  return f.levels >= 4 ? (1 << 2) | (1 << 3) : f.largeLevels;
}

/** Reads entry `index` of the table at `tableAddr` into `out` ([lo, hi]); false if not in memory. */
function entryAt(
  memory: FrameSource,
  f: PagingFormat,
  tableAddr: number,
  index: number,
  out: Uint32Array,
): boolean {
  const addr = tableAddr + index * f.entryBytes;
  const words = memory.frameWords(Math.floor(addr / 4096));
  if (words === null) return false;
  const i = memory.frameBase + (addr % 4096) / 4;
  out[0] = words[i];
  out[1] = f.entryBytes === 8 ? words[i + 1] : 0;
  return true;
}

/** The address of the next-level structure an entry points to (bits 51:12). */
function childAddress(lo: number, hi: number): number {
  return (hi & 0xfffff) * 0x1_0000_0000 + ((lo & 0xfffff000) >>> 0);
}

/** True when the entry at `level` has a reserved bit set, judged as the processor would. */
function hasReservedBits(f: PagingFormat, level: number, lo: number, hi: number): boolean {
  const leaf = level === 1 || ((f.largeLevels >>> level) & (lo >>> 7) & 1) !== 0;
  const k = level * 2 + (leaf ? 1 : 0);
  return (lo & f.rsvdLo[k]) !== 0 || (hi & f.rsvdHi[k]) !== 0;
}

/**
 * Enumerates every present leaf of the paging structures rooted at `cr3`, in linear
 * address order (for each half of a 64-bit space, from index 0 of the root up).
 *
 * @example
 * ```ts
 * for (const m of enumerateMappings(dump.memory, role, cr3))
 *   console.log(m.va.toString(16), m.physical.toString(16), m.pageSize);
 * ```
 */
export function* enumerateMappings(
  memory: FrameSource,
  role: CpuRole,
  cr3: U64Input,
  o: EnumerateOptions = {},
): Generator<Mapping, void, undefined> {
  const f = role.format;
  if (f === null) return;
  const root = pageTableRoot(role, cr3);
  const top = f.levels;
  const pae = f.rootIsPdpteRegisters;
  const leafLevels = monitorLeafLevels(f);
  const signBits = f.levels >= 4 ? 64 - f.addressBits : 0;
  const m = new Mapping();
  const wide = f.entryBytes === 8;

  // Per level: the table being scanned (its address, words and first word), the next
  // index, and what the path above it contributed.
  const table = new Float64Array(6);
  const words: (Uint32Array | null)[] = [null, null, null, null, null, null];
  const base = new Float64Array(6);
  const next = new Int32Array(6);
  const vaHi = new Uint32Array(7);
  const vaLo = new Uint32Array(7);
  const prot = new Int32Array(7);
  const nx = new Int32Array(7);
  const rsvd = new Int32Array(7);
  /** Starts scanning the table at `addr` at `level`; false (reported) when it is not in memory. */
  const enter = (level: number, addr: number): boolean => {
    const w = memory.frameWords(Math.floor(addr / 4096));
    if (w === null) {
      o.onMissingTable?.(addr, level, toBig(vaHi[level + 1], vaLo[level + 1], signBits));
      return false;
    }
    table[level] = addr;
    words[level] = w;
    base[level] = memory.frameBase + (addr % 4096) / 4;
    next[level] = 0;
    return true;
  };

  let level = top;
  prot[top + 1] = 7;
  if (!enter(top, root)) return;
  for (;;) {
    if (next[level] > f.indexMasks[level]) {
      if (level === top) return;
      level++;
      continue;
    }
    const i = next[level]++;
    const w = words[level]!;
    const j = base[level] + (wide ? i * 2 : i);
    const lo = w[j];
    if ((lo & 1) === 0) continue;
    const hi = wide ? w[j + 1] : 0;

    // This entry's linear address: the parent's prefix plus index << shift.
    const s = f.shifts[level];
    let h = vaHi[level + 1];
    let l = vaLo[level + 1];
    if (s >= 32) h |= i << (s - 32);
    else {
      l |= i << s;
      if (s > 0) h |= i >>> (32 - s);
    }
    const paeRoot = pae && level === 3;
    const p = paeRoot ? prot[level + 1] : prot[level + 1] & lo & 7;
    const x = paeRoot ? nx[level + 1] : nx[level + 1] | (hi & PTE_XD_HI);
    const leaf = level === 1 || ((leafLevels >>> level) & 1 && lo & PTE_PS) !== 0;
    const archLeaf = level === 1 || ((f.largeLevels >>> level) & (lo >>> 7) & 1) !== 0;
    const r = rsvd[level + 1] | (hasReservedBits(f, level, lo, hi) || leaf !== archLeaf ? 1 : 0);

    if (!leaf) {
      vaHi[level] = h;
      vaLo[level] = l;
      prot[level] = p;
      nx[level] = x;
      rsvd[level] = r;
      if (enter(level - 1, childAddress(lo, hi))) level--;
      continue;
    }

    if (signBits > 0) h = (h << signBits) >> signBits;
    m.vaHi = h >>> 0;
    m.vaLo = l >>> 0;
    // As the walker computes it: address bits above the page offset; a 4 MiB page's
    // bits 39:32 come from PDE bits 20:13 (PSE-36).
    const frameHi = f.pse36 && level === 2 && f.entryBytes === 4 ? (lo >>> 13) & 0xff : hi & 0xfffff;
    const frameLo = (lo & 0xfffff000) >>> 0;
    m.physical = frameHi * 0x1_0000_0000 + (frameLo - (frameLo % 2 ** s));
    m.level = level;
    m.pageShift = s;
    m.lo = lo >>> 0;
    m.hi = hi >>> 0;
    m.tableAddress = table[level];
    m.index = i;
    m.entryAddress = table[level] + i * f.entryBytes;
    m.prot = p;
    m.nx = x !== 0;
    m.reserved = r !== 0;
    yield m;
  }
}

function toBig(hi: number, lo: number, signBits: number): bigint {
  const h = signBits > 0 ? (hi << signBits) >> signBits : hi;
  return BigInt.asUintN(64, (BigInt(h) << 32n) | BigInt(lo >>> 0));
}

/** A range of linear addresses with one protection, for `info mem`. */
export interface ProtRange {
  /** First address (not sign-extended: a 48- or 57-bit offset into the space). */
  start: bigint;
  /** One past the last address (up to 2^32, 2^48 or 2^57). */
  end: bigint;
  /** P|R/W|U/S ANDed over the path (never 0). */
  prot: number;
}

interface Runs {
  /** Start offsets relative to the table's first address (< 2^48: exact Numbers). */
  starts: number[];
  prots: number[];
}

/**
 * The address space as maximal ranges of equal protection (`info mem`'s merging):
 * consecutive pages whose P|R/W|U/S (ANDed over the path) are equal form one range;
 * unmapped space ends a range and is not listed itself. Computed per table and memoized
 * by (table, level, protection above it), so tables referenced many times cost once.
 */
export function* protectionRanges(
  memory: FrameSource,
  role: CpuRole,
  cr3: U64Input,
  o: EnumerateOptions = {},
): Generator<ProtRange, void, undefined> {
  const f = role.format;
  if (f === null) return;
  const root = pageTableRoot(role, cr3);
  const top = f.levels;
  const leafLevels = monitorLeafLevels(f);
  const memo = new Map<string, Runs>();
  const e = new Uint32Array(2);
  const signBits = f.levels >= 4 ? 64 - f.addressBits : 0;

  const runsOf = (level: number, addr: number, parentProt: number, vaBase: bigint): Runs => {
    const key = `${level}:${addr}:${parentProt}`;
    const known = memo.get(key);
    if (known) return known;
    const out: Runs = { starts: [], prots: [] };
    const step = 2 ** f.shifts[level];
    for (let i = 0; i <= f.indexMasks[level]; i++) {
      const off = i * step;
      if (!entryAt(memory, f, addr, i, e)) {
        o.onMissingTable?.(addr, level, toBig(Number(vaBase >> 32n), Number(vaBase & 0xffffffffn), signBits));
        push(out, 0, 0);
        break;
      }
      const lo = e[0];
      const hi = e[1];
      if ((lo & 1) === 0) push(out, off, 0);
      else if (level === 1 || ((leafLevels >>> level) & 1 && lo & PTE_PS) !== 0)
        push(out, off, parentProt & lo & 7);
      else {
        const child = runsOf(level - 1, childAddress(lo, hi), parentProt & lo & 7, vaBase + BigInt(off));
        for (let k = 0; k < child.starts.length; k++) push(out, off + child.starts[k], child.prots[k]);
      }
    }
    memo.set(key, out);
    return out;
  };

  // The root: offsets may exceed 2^53 (5-level), so absolute positions are bigints here.
  let curStart = -1n;
  let curProt = 0;
  const step = 1n << BigInt(f.shifts[top]);
  const entries = f.indexMasks[top] + 1;
  const emitIf = function* (pos: bigint, p: number): Generator<ProtRange, void, undefined> {
    if (p === curProt) return;
    if (curProt !== 0) yield { start: curStart, end: pos, prot: curProt };
    curStart = pos;
    curProt = p;
  };
  for (let i = 0; i < entries; i++) {
    const base = BigInt(i) * step;
    if (!entryAt(memory, f, root, i, e)) {
      o.onMissingTable?.(root, top, 0n);
      break;
    }
    const lo = e[0];
    const hi = e[1];
    if ((lo & 1) === 0) yield* emitIf(base, 0);
    else if (f.rootIsPdpteRegisters) {
      const child = runsOf(top - 1, childAddress(lo, hi), 7, base);
      for (let k = 0; k < child.starts.length; k++)
        yield* emitIf(base + BigInt(child.starts[k]), child.prots[k]);
    } else if ((leafLevels >>> top) & 1 && lo & PTE_PS) yield* emitIf(base, lo & 7);
    else {
      const child = runsOf(top - 1, childAddress(lo, hi), lo & 7, base);
      for (let k = 0; k < child.starts.length; k++)
        yield* emitIf(base + BigInt(child.starts[k]), child.prots[k]);
    }
  }
  yield* emitIf(1n << BigInt(f.addressBits), 0);
}

function push(r: Runs, start: number, prot: number): void {
  const n = r.prots.length;
  if (n > 0 && r.prots[n - 1] === prot) return;
  r.starts.push(start);
  r.prots.push(prot);
}
