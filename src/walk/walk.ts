/**
 * The record a walk fills: the path it followed (each level's entry address and value,
 * before and after the accessed/dirty update), then either the translation (physical
 * address, page size, effective rights) or the fault. One `Walk` is allocated by the
 * caller and reused for every walk, so the hot path allocates nothing.
 */

/** No fault: `address` holds the translation. */
export const FAULT_NONE = 0;
/** x86 page fault (#PF, vector 14): `errorCode` is the #PF error code. */
export const FAULT_PAGE = 1;
/** x86 general-protection fault (#GP, vector 13): a non-canonical linear address. */
export const FAULT_GP = 2;
/** EPT violation: `errorCode` is the exit qualification (low 32 bits; the rest are zero). */
export const FAULT_EPT_VIOLATION = 3;
/** EPT misconfiguration (no exit qualification). */
export const FAULT_EPT_MISCONFIG = 4;

/** Why a walk failed, beyond the architectural encoding (for explanations and statistics). */
export const REASON_NONE = 0;
export const REASON_NOT_PRESENT = 1;
export const REASON_RESERVED = 2;
/** Access rights (U/S, R/W, XD, SMEP, SMAP, EPT R/W/X) forbid the access. */
export const REASON_PROTECTION = 3;
/** Protection keys forbid the access (the #PF has PK set). */
export const REASON_PKEY = 4;
export const REASON_NON_CANONICAL = 5;
/** A paging-structure entry lies outside RAM (no memslot / outside the dump): treated as not present. */
export const REASON_TABLE_NOT_RAM = 6;
/** EPT: a forbidden R/W/X combination or memory type. */
export const REASON_BAD_EPT_BITS = 7;

export const REASON_NAMES: readonly string[] = [
  "none",
  "not-present",
  "reserved-bit",
  "protection",
  "protection-key",
  "non-canonical",
  "table-not-in-memory",
  "ept-misconfigured-bits",
];

export const FAULT_NAMES: readonly string[] = [
  "none",
  "page-fault",
  "general-protection",
  "ept-violation",
  "ept-misconfig",
];

/** Longest path: five levels. */
export const MAX_LEVELS = 5;

export class Walk {
  /** Input: the address walked (high and low halves) and the ACCESS_* descriptor. */
  vaHi = 0;
  vaLo = 0;
  access = 0;

  /** Number of path entries filled. */
  depth = 0;
  /** Per path index (0 = root): paging level (5..1). */
  readonly level = new Int8Array(MAX_LEVELS);
  /** Per path index: physical address of the entry read. */
  readonly entryAddr = new Float64Array(MAX_LEVELS);
  /**
   * `lo`, `hi`, `newLo` and `newHi` in one array, in that order, MAX_LEVELS words each (the
   * four are views of it): the walker's fast path stores a level's four words through this
   * one array.
   */
  readonly halves = new Uint32Array(4 * MAX_LEVELS);
  /** Per path index: entry value read (halves). */
  readonly lo = this.halves.subarray(0, MAX_LEVELS);
  readonly hi = this.halves.subarray(MAX_LEVELS, 2 * MAX_LEVELS);
  /** Per path index: entry value after the accessed/dirty update. */
  readonly newLo = this.halves.subarray(2 * MAX_LEVELS, 3 * MAX_LEVELS);
  readonly newHi = this.halves.subarray(3 * MAX_LEVELS, 4 * MAX_LEVELS);
  /** Bit i set: path entry i came from a register (PAE PDPTE), not memory. */
  registerMask = 0;
  /** Bit i set: path entry i's table was not RAM (its value is meaningless). */
  missingMask = 0;

  /** Accessed/dirty plan: set A on path entries [0, accessedCount), D on the leaf if `setDirty`. */
  accessedCount = 0;
  setDirty = false;

  /** FAULT_* code. */
  fault = FAULT_NONE;
  /** REASON_* code. */
  reason = REASON_NONE;
  /** #PF error code, or EPT exit qualification. */
  errorCode = 0;
  /** Level of the entry that caused the fault (0 when none). */
  faultLevel = 0;

  /** On success: the physical address (< 2^52, exact). */
  address = 0;
  /** On success: log2 of the page size (12, 21, 22 or 30). */
  pageShift = 0;
  /** On success or protection fault: effective rights (X86_EFF_* or EPT_EFF_* bits). */
  effective = 0;
  /** On success (x86 IA-32e): the leaf's protection key. */
  pkey = 0;

  get ok(): boolean {
    return this.fault === FAULT_NONE;
  }
}
