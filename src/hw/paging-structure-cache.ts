/**
 * Paging-structure caches (SDM 4.10.3): a processor caches upper-level entries so a TLB miss
 * need not re-read every level. An entry of the level-ℓ cache (ℓ = 2: "PDE cache", 3: PDPTE,
 * 4: PML4E, 5: PML5E) maps the linear-address prefix selected by levels ≥ ℓ to the physical
 * frame of the level-(ℓ-1) table it leads to, with the rights accumulated down to it
 * (R/W and U/S ANDed, XD ORed), so the walk resumes at level ℓ-1. The deepest hit wins.
 *
 * Direct-mapped, `entries` per level, keyed by the exact prefix (≤ 45 bits: exact as a
 * Number). Off unless a VM asks for it; the vCPU flushes it whenever it invalidates its TLB
 * (INVLPG invalidates all paging-structure-cache entries of the PCID, SDM 4.10.4.1, and a
 * #PF those for the faulting address, 4.10.4.2; flushing all is always allowed).
 */

import type { PagingFormat } from "../arch/format.js";

export class PagingStructureCache {
  readonly entries: number;
  /** Counters: hits by level of the cached entry (index 2..5), misses, fills, flushes. */
  readonly hits = new Float64Array(6);
  misses = 0;
  fills = 0;
  flushes = 0;
  /** Result of the last hit. */
  hitTable = 0;
  hitPerm = 0;
  hitXd = 0;

  private readonly key: Float64Array;
  private readonly table: Float64Array;
  private readonly perm: Int32Array;
  private readonly xd: Int32Array;

  constructor(entries = 32) {
    if (!Number.isInteger(entries) || entries < 1 || (entries & (entries - 1)) !== 0)
      throw new RangeError(`paging-structure cache size ${entries} is not a power of two`);
    this.entries = entries;
    // Levels 2..5, `entries` slots each; key NaN = empty.
    this.key = new Float64Array(6 * entries).fill(Number.NaN);
    this.table = new Float64Array(6 * entries);
    this.perm = new Int32Array(6 * entries);
    this.xd = new Int32Array(6 * entries);
  }

  /**
   * The deepest cached entry for the address: returns the level of the table to read next
   * (1..4), with `hitTable`, `hitPerm`, `hitXd` set; or 0 on a miss.
   */
  lookup(f: PagingFormat, vaHi: number, vaLo: number): number {
    for (let level = 2; level <= f.levels; level++) {
      const prefix = prefixOf(f, vaHi, vaLo, level);
      const slot = level * this.entries + (prefix % this.entries);
      if (this.key[slot] === prefix) {
        this.hits[level]++;
        this.hitTable = this.table[slot];
        this.hitPerm = this.perm[slot];
        this.hitXd = this.xd[slot];
        return level - 1;
      }
    }
    this.misses++;
    return 0;
  }

  /** Caches a non-leaf entry of `level` that leads to table `tableGfn` with accumulated rights. */
  insert(
    f: PagingFormat,
    vaHi: number,
    vaLo: number,
    level: number,
    tableGfn: number,
    perm: number,
    xd: number,
  ): void {
    const prefix = prefixOf(f, vaHi, vaLo, level);
    const slot = level * this.entries + (prefix % this.entries);
    this.key[slot] = prefix;
    this.table[slot] = tableGfn;
    this.perm[slot] = perm;
    this.xd[slot] = xd;
    this.fills++;
  }

  flush(): void {
    this.key.fill(Number.NaN);
    this.flushes++;
  }
}

/** Linear-address bits selected by levels ≥ `level` (address >> shift of that level), < 2^45. */
function prefixOf(f: PagingFormat, vaHi: number, vaLo: number, level: number): number {
  const shift = f.shifts[level];
  const hi = vaHi & 0x1ffffff; // bits 56:32
  return shift >= 32 ? hi >>> (shift - 32) : hi * 2 ** (32 - shift) + (vaLo >>> shift);
}
