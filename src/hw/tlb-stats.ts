/**
 * TLB counters: hits by page size, misses, fills, evictions, and every invalidation by kind
 * with the number of entries it dropped. Plain numbers and Float64Arrays (exact to 2^53),
 * bumped on the hot path without allocation; `toJSON` names them for reports.
 */

import { TLB_SIZES, type TlbSize } from "./tlb-config.js";

/** Invalidation kinds, the index of `TlbStats.flushes` and `TlbStats.dropped`. */
export const FLUSH_INVLPG = 0;
/** A #PF drops the faulting address's entries (SDM 4.10.4.1, last paragraphs). */
export const FLUSH_PAGE_FAULT = 1;
/** An EPT violation drops the combined entries of the address (SDM 28.3.3.1). */
export const FLUSH_EPT_VIOLATION = 2;
export const FLUSH_MOV_CR0 = 3;
export const FLUSH_MOV_CR3 = 4;
export const FLUSH_MOV_CR4 = 5;
export const FLUSH_INVPCID_ADDRESS = 6;
export const FLUSH_INVPCID_SINGLE = 7;
export const FLUSH_INVPCID_ALL = 8;
export const FLUSH_INVPCID_ALL_NON_GLOBAL = 9;
export const FLUSH_INVVPID_ADDRESS = 10;
export const FLUSH_INVVPID_SINGLE = 11;
export const FLUSH_INVVPID_ALL = 12;
export const FLUSH_INVVPID_SINGLE_NON_GLOBAL = 13;
export const FLUSH_INVEPT_SINGLE = 14;
export const FLUSH_INVEPT_GLOBAL = 15;
/** Host MMU: all entries of one EPT tag. */
export const FLUSH_TAG = 16;
/** All entries of one VPID (VM entry/exit without VPID: VPID 0). */
export const FLUSH_VPID = 17;
/** A range of linear pages of one VPID. */
export const FLUSH_RANGE = 18;
export const FLUSH_ALL = 19;
export const FLUSH_KIND_COUNT = 20;

export const FLUSH_NAMES: readonly string[] = [
  "invlpg",
  "page-fault",
  "ept-violation",
  "mov-cr0",
  "mov-cr3",
  "mov-cr4",
  "invpcid-address",
  "invpcid-single",
  "invpcid-all",
  "invpcid-all-non-global",
  "invvpid-address",
  "invvpid-single",
  "invvpid-all",
  "invvpid-single-non-global",
  "invept-single",
  "invept-global",
  "flush-tag",
  "flush-vpid",
  "flush-range",
  "flush-all",
];

/** Counters of one TLB. Per-size arrays are indexed by TLB_4K, TLB_2M, TLB_1G (0, 1, 2). */
export class TlbStats {
  /** Lookups answered from the TLB, by the array that answered. */
  readonly hits = new Float64Array(3);
  /** Lookups that must walk (including `rightsMisses`). */
  misses = 0;
  /**
   * Misses where a matching entry could not decide the access: a write through a clean
   * entry, or rights or protection keys that forbid it (the walk decides).
   */
  rightsMisses = 0;
  /**
   * Fills after a walk, by page size. This is also "misses by page size": the size of a
   * missing translation is known only when the walk completes (like Intel's
   * DTLB_LOAD_MISSES.WALK_COMPLETED_4K/_2M_4M/_1G).
   */
  readonly inserts = new Float64Array(3);
  /** Entries a fill pushed out of a full set. */
  readonly evictions = new Float64Array(3);
  /** Entries a fill replaced because they translated the same address in the same context. */
  replaced = 0;
  /** Fills of a page size the configuration does not cache (nothing stored). */
  uncached = 0;
  /** Invalidation operations that flushed, by FLUSH_* kind. */
  readonly flushes = new Float64Array(FLUSH_KIND_COUNT);
  /** Entries they dropped, by FLUSH_* kind. */
  readonly dropped = new Float64Array(FLUSH_KIND_COUNT);

  get totalHits(): number {
    return this.hits[0] + this.hits[1] + this.hits[2];
  }

  reset(): void {
    this.hits.fill(0);
    this.misses = 0;
    this.rightsMisses = 0;
    this.inserts.fill(0);
    this.evictions.fill(0);
    this.replaced = 0;
    this.uncached = 0;
    this.flushes.fill(0);
    this.dropped.fill(0);
  }

  /** A plain object with named fields (for reports and `--json`). */
  toJSON(): TlbStatsJson {
    const bySize = (a: Float64Array) =>
      Object.fromEntries(TLB_SIZES.map((n, i) => [n, a[i]])) as Record<TlbSize, number>;
    const byKind = (a: Float64Array) => Object.fromEntries(FLUSH_NAMES.map((n, i) => [n, a[i]]));
    return {
      hits: bySize(this.hits),
      misses: this.misses,
      rightsMisses: this.rightsMisses,
      inserts: bySize(this.inserts),
      evictions: bySize(this.evictions),
      replaced: this.replaced,
      uncached: this.uncached,
      flushes: byKind(this.flushes),
      dropped: byKind(this.dropped),
    };
  }
}

export interface TlbStatsJson {
  hits: Record<TlbSize, number>;
  misses: number;
  rightsMisses: number;
  inserts: Record<TlbSize, number>;
  evictions: Record<TlbSize, number>;
  replaced: number;
  uncached: number;
  flushes: Record<string, number>;
  dropped: Record<string, number>;
}
