/**
 * GuestWalker: one page-table walk engine for every format (x86 32-bit, PAE, 4/5-level,
 * AMD NPT, Intel EPT), driven by a `PagingFormat` and a permission table.
 *
 * A walk has two steps, as in KVM's paging_tmpl.h:
 *  1. `translate`: a pure walk. It reads one entry per level, checks presence, reserved bits
 *     (and EPT misconfigurations), combines rights, computes the address, checks the access
 *     and protection keys, and records the path and an accessed/dirty plan in a `Walk`.
 *  2. `commitAccessedDirty`: sets the planned A/D flags by compare-exchange. If an entry
 *     changed since step 1 (a self-referencing table updated by this very walk), the walk
 *     is retried, as the processor's locked update would observe the new value.
 * `walk` does both.
 *
 * Which entries get A on a failed walk is left to the implementation by the SDM (4.8);
 * vmmu does what QEMU does: A on every level above the entry that faulted, never on the
 * faulting entry itself, and D only on success.
 */

import {
  ACCESS_FETCH,
  ACCESS_GUEST_TABLE,
  ACCESS_IMPLICIT,
  ACCESS_LINEAR_VALID,
  ACCESS_PERM_INDEX_MASK,
  ACCESS_USER,
  ACCESS_WRITE,
} from "../arch/access.js";
import {
  EPT_XU,
  EPTQ_FETCH,
  EPTQ_LINEAR_TRANSLATION,
  EPTQ_LINEAR_VALID,
  EPTQ_READ,
  EPTQ_WRITE,
} from "../arch/ept.js";
import { FORMAT_EPT, FORMAT_X86, type PagingFormat } from "../arch/format.js";
import { PFEC_P, PFEC_PK, PFEC_RSVD, PFEC_U, PFEC_W } from "../arch/x86.js";
import { CMPXCHG_CHANGED, type FrameSource } from "../mem/frame-source.js";
import { type SpecializedTranslate, specializeEpt, specializeX86 } from "./specialize.js";
import {
  FAULT_EPT_MISCONFIG,
  FAULT_EPT_VIOLATION,
  FAULT_GP,
  FAULT_NONE,
  FAULT_PAGE,
  REASON_BAD_EPT_BITS,
  REASON_NON_CANONICAL,
  REASON_NOT_PRESENT,
  REASON_PKEY,
  REASON_PROTECTION,
  REASON_RESERVED,
  REASON_TABLE_NOT_RAM,
  type Walk,
} from "./walk.js";

/** Everything that parameterises a walker besides memory: built by the factories in contexts.ts. */
export interface WalkerConfig {
  format: PagingFormat;
  /** [access & 0x1f] → bit e set when effective rights e fault. */
  permFault: Uint16Array;
  /** PFEC_I when fetches report I/D in the error code. */
  fetchErrorBit: number;
  /** Protection keys in force for user pages (PKRU) / supervisor pages (PKRS). */
  pke: boolean;
  pks: boolean;
  pkru: number;
  pkrs: number;
  /** CR0.WP: decides whether a key's write-disable binds supervisor writes. */
  wp: boolean;
  /**
   * Whether plain successful walks take the fast path compiled for the format
   * (specialize.ts; default true). The results are the same without it: false is for
   * differential tests. Where `new Function` is unavailable there is no fast path.
   */
  fastPath?: boolean;
}

const MAX_RETRIES = 16;

/** Fast path outcomes (specialize.ts). */
const FAST_NONE = 0; // not a plain success (or not handled): the general path must walk
const FAST_CLEAN = 1; // success, every accessed flag (and the dirty flag a write needs) already set
const FAST_COMMIT = 2; // success, the accessed/dirty commit has something to write

/**
 * Whether the compiled x86 fast path may stand in for `translate` under this configuration:
 * x86 4/5-level paging (or AMD NPT) with the architectural address split, 8-byte entries,
 * no PDPTE registers, and no protection keys, over a memory with `currentFrameCache`.
 */
function fastEligible(memory: FrameSource, f: PagingFormat, config: WalkerConfig): boolean {
  if (
    typeof memory.currentFrameCache !== "function" ||
    f.kind !== FORMAT_X86 ||
    f.entryBytes !== 8 ||
    f.rootIsPdpteRegisters ||
    f.pse36 ||
    (f.levels !== 4 && f.levels !== 5) ||
    f.addressBits !== (f.levels === 4 ? 48 : 57) ||
    f.presentMask !== 1 ||
    f.permMask !== 6 ||
    f.accessedMask !== 0x20 ||
    f.dirtyMask !== 0x40 ||
    config.pke ||
    config.pks
  )
    return false;
  for (let l = 1; l <= f.levels; l++)
    if (f.shifts[l] !== l * 9 + 3 || f.indexMasks[l] !== 0x1ff) return false;
  return true;
}

/**
 * Whether the compiled EPT fast path may stand in for `translate`: EPT with 4 or 5 levels
 * (with or without A/D and MBEC) over a memory with `currentFrameCache`.
 */
function fastEptEligible(memory: FrameSource, f: PagingFormat): boolean {
  const rights = f.mbec ? 0x407 : 7;
  if (
    typeof memory.currentFrameCache !== "function" ||
    f.kind !== FORMAT_EPT ||
    f.entryBytes !== 8 ||
    (f.levels !== 4 && f.levels !== 5) ||
    f.presentMask !== rights ||
    f.permMask !== rights ||
    (f.accessedMask !== 0 && (f.accessedMask !== 0x100 || f.dirtyMask !== 0x200))
  )
    return false;
  for (let l = 1; l <= f.levels; l++)
    if (f.shifts[l] !== l * 9 + 3 || f.indexMasks[l] !== 0x1ff) return false;
  return true;
}

/** What the walker needs from a paging-structure cache (src/hw/paging-structure-cache.ts). */
export interface PagingStructureCacheLike {
  hitTable: number;
  hitPerm: number;
  hitXd: number;
  lookup(f: PagingFormat, vaHi: number, vaLo: number): number;
  insert(
    f: PagingFormat,
    vaHi: number,
    vaLo: number,
    level: number,
    tableGfn: number,
    perm: number,
    xd: number,
  ): void;
}

export class GuestWalker {
  readonly memory: FrameSource;
  readonly format: PagingFormat;
  readonly permFault: Uint16Array;
  readonly fetchErrorBit: number;
  readonly pke: boolean;
  readonly pks: boolean;
  readonly pkru: number;
  readonly pkrs: number;
  readonly wp: boolean;
  /** Root table frame (PAE: the PDPT's frame, informational). */
  rootGfn = 0;
  /** PAE: physical address of the PDPT (32-byte aligned). */
  pdptAddr = 0;
  /** PAE: the four PDPTE registers as lo/hi pairs. */
  readonly pdpte = new Uint32Array(8);
  /** Walks that had to be retried because an entry changed during the A/D update. */
  retries = 0;
  /**
   * Optional paging-structure cache (simulated hardware): consulted before the walk and
   * filled with each non-leaf entry used. Null (the default) for an uncached walk.
   */
  psc: PagingStructureCacheLike | null = null;
  /**
   * The fast path compiled for this format and memory (specialize.ts; see `fastEligible`
   * and `fastEptEligible`), or null: every walk takes `translateGeneral`.
   */
  private readonly fast: SpecializedTranslate | null;
  /** The same without the path record, for `walkAddress`; null when `fast` is. */
  private readonly fastLean: SpecializedTranslate | null;

  constructor(memory: FrameSource, config: WalkerConfig) {
    this.memory = memory;
    this.format = config.format;
    this.permFault = config.permFault;
    this.fetchErrorBit = config.fetchErrorBit;
    this.pke = config.pke;
    this.pks = config.pks;
    this.pkru = config.pkru >>> 0;
    this.pkrs = config.pkrs >>> 0;
    this.wp = config.wp;
    const f = config.format;
    const specialize = !(config.fastPath ?? true)
      ? null
      : fastEligible(memory, f, config)
        ? specializeX86
        : fastEptEligible(memory, f)
          ? specializeEpt
          : null;
    this.fast = specialize?.(f, memory) ?? null;
    this.fastLean = specialize?.(f, memory, true) ?? null;
  }

  /**
   * Walks `va` (halves) for an access (ACCESS_* bits), updates accessed/dirty flags, and
   * fills `w`. Returns true when the access is allowed (`w.address` is the translation).
   */
  walk(vaHi: number, vaLo: number, access: number, w: Walk): boolean {
    // Small enough for V8 to inline into the caller: the steady state (a fast path success
    // with nothing to commit) returns here; the halves go on as int32 so they stay unboxed.
    if (this.fast !== null && this.psc === null) {
      const r = this.fast(this, this.memory, vaHi | 0, vaLo | 0, access, w);
      if (r === FAST_CLEAN) return true;
      return this.walkRest(vaHi, vaLo, access, w, r);
    }
    return this.walkRest(vaHi, vaLo, access, w, FAST_NONE);
  }

  /** `walk` after the fast path's outcome `r`: the A/D commit, or the general path. */
  private walkRest(vaHi: number, vaLo: number, access: number, w: Walk, r: number): boolean {
    let attempt = 0;
    if (r === FAST_COMMIT) {
      if (this.commitAccessedDirty(w)) return true;
      this.retries++;
      attempt = 1;
    }
    // The general path reads again what a fast path that gave up read (see FrameSource.rewind).
    if (attempt === 0) this.memory.rewind?.();
    for (; ; attempt++) {
      // Attempt 0 here means the fast path was not tried or did not handle this walk.
      const ok =
        attempt === 0 ? this.translateGeneral(vaHi, vaLo, access, w) : this.translate(vaHi, vaLo, access, w);
      if (w.accessedCount === 0 || this.commitAccessedDirty(w) || attempt === MAX_RETRIES) return ok;
      this.retries++;
    }
  }

  /**
   * `walk` for callers that need only where an address goes (the guest-table references of a
   * 2-D walk): a plain success with nothing to commit fills the result fields of `w`
   * (address, pageShift, effective, pkey, depth, fault, reason) but not its path (level,
   * entryAddr, lo/hi/newLo/newHi keep older values); anything else is a full `walk`.
   */
  walkAddress(vaHi: number, vaLo: number, access: number, w: Walk): boolean {
    if (
      this.fastLean !== null &&
      this.psc === null &&
      this.fastLean(this, this.memory, vaHi | 0, vaLo | 0, access, w) === FAST_CLEAN
    )
      return true;
    return this.walk(vaHi, vaLo, access, w);
  }

  /** Step 1: the pure walk (see the file comment). Never writes memory. */
  translate(vaHi: number, vaLo: number, access: number, w: Walk): boolean {
    if (this.fast !== null && this.psc === null) {
      if (this.fast(this, this.memory, vaHi | 0, vaLo | 0, access, w) !== FAST_NONE) return true;
      this.memory.rewind?.();
    }
    return this.translateGeneral(vaHi, vaLo, access, w);
  }

  /** `translate` for every configuration and outcome. */
  private translateGeneral(vaHi: number, vaLo: number, access: number, w: Walk): boolean {
    const f = this.format;
    const mem = this.memory;
    w.vaHi = vaHi >>> 0;
    w.vaLo = vaLo >>> 0;
    w.access = access;
    w.registerMask = 0;
    w.missingMask = 0;
    w.setDirty = false;

    // Canonical check (SDM 3.3.7.1): bits above the top index must copy its sign bit.
    const bitsAbove = 64 - f.addressBits;
    if (bitsAbove < 32 && f.kind !== FORMAT_EPT && (vaHi << bitsAbove) >> bitsAbove !== (vaHi | 0)) {
      w.depth = 0;
      return this.fail(w, 0, FAULT_GP, REASON_NON_CANONICAL, 0, 0);
    }

    // Performance: `| 0` makes V8 keep `level` and `perm` as untagged int32 loop variables
    // (seeded from object fields they would stay tagged, and every use would untag them);
    // both are small non-negative integers, so the values are unchanged. About +5 % on
    // bench/walk.bench.ts.
    let level = f.levels | 0;
    let tableGfn = this.rootGfn;
    let perm = f.permMask | 0;
    let xd = 0;
    let d = 0;
    let lo = 0;
    let hi = 0;
    const wide = f.entryBytes === 8;
    const psc = this.psc;
    let cached = false;
    if (psc !== null) {
      const next = psc.lookup(f, vaHi, vaLo);
      if (next > 0) {
        // Resume below the cached entry: its table, and the rights accumulated above it.
        level = next;
        tableGfn = psc.hitTable;
        perm = psc.hitPerm;
        xd = psc.hitXd;
        cached = true;
      }
    }

    if (f.rootIsPdpteRegisters && !cached) {
      // PAE: the top level comes from the PDPTE registers (checked when CR3 was loaded).
      const i = vaLo >>> 30;
      lo = this.pdpte[i * 2];
      hi = this.pdpte[i * 2 + 1];
      w.level[0] = 3;
      w.entryAddr[0] = this.pdptAddr + i * 8;
      w.lo[0] = w.newLo[0] = lo;
      w.hi[0] = w.newHi[0] = hi;
      w.registerMask = 1;
      d = 1;
      if ((lo & 1) === 0) return this.fail(w, d, FAULT_PAGE, REASON_NOT_PRESENT, 3, 0);
      tableGfn = (hi & 0xfffff) * 0x100000 + (lo >>> 12);
      level = 2;
    }

    for (;;) {
      const shift = f.shifts[level];
      const index =
        (shift >= 32 ? vaHi >>> (shift - 32) : (vaLo >>> shift) | (vaHi << (32 - shift))) &
        f.indexMasks[level];
      const words = mem.frameWords(tableGfn);
      w.level[d] = level;
      w.entryAddr[d] = tableGfn * 4096 + index * f.entryBytes;
      if (words === null) {
        w.lo[d] = w.hi[d] = w.newLo[d] = w.newHi[d] = 0;
        w.missingMask |= 1 << d;
        return this.fail(
          w,
          d + 1,
          f.kind === FORMAT_EPT ? FAULT_EPT_VIOLATION : FAULT_PAGE,
          REASON_TABLE_NOT_RAM,
          level,
          0,
        );
      }
      const base = mem.frameBase;
      // `| 0`: entries with bit 31 set (address bit 31, XD) would otherwise be boxed as
      // doubles; as int32 they stay in registers, and every use below is a bit operation.
      if (wide) {
        lo = words[base + index * 2] | 0;
        hi = words[base + index * 2 + 1] | 0;
      } else {
        lo = words[base + index] | 0;
        hi = 0;
      }
      w.lo[d] = w.newLo[d] = lo;
      w.hi[d] = w.newHi[d] = hi;
      d++;

      if ((lo & f.presentMask) === 0)
        return this.fail(
          w,
          d,
          f.kind === FORMAT_EPT ? FAULT_EPT_VIOLATION : FAULT_PAGE,
          REASON_NOT_PRESENT,
          level,
          0,
        );
      // PS (bit 7) ends the walk only where the format allows pages at this level; elsewhere
      // it is either reserved (caught below) or ignored (32-bit PDE with CR4.PSE=0).
      const leaf = level === 1 || ((f.largeLevels >>> level) & (lo >>> 7) & 1) !== 0;
      const k = level * 2 + (leaf ? 1 : 0);
      if ((lo & f.rsvdLo[k]) !== 0 || (hi & f.rsvdHi[k]) !== 0)
        return this.fail(
          w,
          d,
          f.kind === FORMAT_EPT ? FAULT_EPT_MISCONFIG : FAULT_PAGE,
          REASON_RESERVED,
          level,
          0,
        );
      if (f.kind === FORMAT_EPT) {
        // With MBEC, user-execute counts as execute for the "execute-only" rule.
        const xwr = (lo & 7) | (f.mbec && (lo & EPT_XU) !== 0 ? 4 : 0);
        if (f.eptBadBits[leaf ? (lo & 0x38) | xwr : xwr] !== 0)
          return this.fail(w, d, FAULT_EPT_MISCONFIG, REASON_BAD_EPT_BITS, level, 0);
      }
      perm &= lo;
      xd |= hi;
      if (leaf) break;
      tableGfn = (hi & 0xfffff) * 0x100000 + (lo >>> 12);
      if (psc !== null) psc.insert(f, vaHi, vaLo, level, tableGfn, perm, xd);
      level--;
    }

    // The translation: frame bits above the page offset, offset bits from the address.
    const pageShift = f.shifts[level];
    const offsetMask = (1 << pageShift) - 1;
    const frameHi = f.pse36 && level === 2 ? (lo >>> 13) & 0xff : hi & 0xfffff;
    w.address = frameHi * 0x100000000 + ((lo & ~offsetMask & 0xfffff000) >>> 0) + ((vaLo & offsetMask) >>> 0);
    w.pageShift = pageShift;

    let eff: number;
    if (f.kind === FORMAT_EPT) eff = (perm & 7) | ((perm >>> 7) & 8);
    else eff = ((perm >>> 1) & 3) | ((xd & f.xdMaskHi) === 0 ? 4 : 0);
    w.effective = eff;
    let faulted = ((this.permFault[access & ACCESS_PERM_INDEX_MASK] >>> eff) & 1) !== 0;

    // Protection keys (SDM 4.6.2): data accesses only; PKRU governs user pages, PKRS supervisor pages.
    let keyFault = false;
    w.pkey = (hi >>> 27) & 15;
    if ((this.pke || this.pks) && (access & ACCESS_FETCH) === 0) {
      const userPage = (eff & 2) !== 0;
      const userAccess = (access & (ACCESS_USER | ACCESS_IMPLICIT)) === ACCESS_USER;
      // PKRS governs supervisor-mode accesses to supervisor pages; a user-mode access to a
      // supervisor page is refused by U/S alone, without PK (as QEMU 7.2 does; the SDM's PKS
      // write-disable rule, which only names CR0.WP, presumes a supervisor-mode access).
      const reg = userPage ? (this.pke ? this.pkru : 0) : this.pks && !userAccess ? this.pkrs : 0;
      const rights = reg >>> (w.pkey * 2);
      keyFault =
        (rights & 1) !== 0 ||
        ((rights & 2) !== 0 && (access & ACCESS_WRITE) !== 0 && (userAccess || this.wp));
      faulted ||= keyFault;
    }
    if (faulted) {
      const kind = f.kind === FORMAT_EPT ? FAULT_EPT_VIOLATION : FAULT_PAGE;
      return this.fail(w, d, kind, keyFault ? REASON_PKEY : REASON_PROTECTION, level, perm);
    }

    w.fault = FAULT_NONE;
    w.reason = 0;
    w.errorCode = 0;
    w.faultLevel = 0;
    w.depth = d;
    w.accessedCount = f.accessedMask === 0 ? 0 : d;
    w.setDirty = (access & ACCESS_WRITE) !== 0;
    return true;
  }

  /**
   * Step 2: sets the accessed flags (and the leaf's dirty flag) the last `translate`
   * planned, by compare-exchange. Returns false when an entry had changed and the walk
   * must be retried. Entries in read-only memory are left as they are (KVM does the same
   * for read-only memslots).
   */
  commitAccessedDirty(w: Walk): boolean {
    const f = this.format;
    const a = f.accessedMask;
    const leaf = w.depth - 1;
    for (let i = 0; i < w.accessedCount; i++) {
      if ((w.registerMask >>> i) & 1) continue;
      const lo = w.lo[i];
      const next = (lo | a | (i === leaf && w.setDirty ? f.dirtyMask : 0)) >>> 0;
      if (next === lo) continue;
      const r = this.memory.compareExchange(
        w.entryAddr[i],
        f.entryBytes as 4 | 8,
        lo,
        w.hi[i],
        next,
        w.hi[i],
      );
      if (r === CMPXCHG_CHANGED) return false;
      if (r === 0) w.newLo[i] = next;
    }
    return true;
  }

  private fail(w: Walk, depth: number, kind: number, reason: number, level: number, perm: number): false {
    w.fault = kind;
    w.reason = reason;
    w.faultLevel = level;
    w.depth = depth;
    w.accessedCount = this.format.accessedMask === 0 || depth === 0 ? 0 : depth - 1;
    w.address = 0;
    w.pageShift = 0;
    const a = w.access;
    if (kind === FAULT_PAGE) {
      let ec =
        (a & ACCESS_WRITE ? PFEC_W : 0) |
        ((a & (ACCESS_USER | ACCESS_IMPLICIT)) === ACCESS_USER ? PFEC_U : 0);
      if (a & ACCESS_FETCH) ec |= this.fetchErrorBit;
      if (reason === REASON_RESERVED) ec |= PFEC_P | PFEC_RSVD;
      else if (reason === REASON_PROTECTION) ec |= PFEC_P;
      else if (reason === REASON_PKEY) ec |= PFEC_P | PFEC_PK;
      w.errorCode = ec;
    } else if (kind === FAULT_EPT_VIOLATION) {
      // Exit qualification (SDM Table 28-7). Bits 5:3 (6 with MBEC) are the rights of the
      // entries walked so far ANDed together: zero when an entry was not present.
      let q: number;
      if (a & ACCESS_FETCH) q = EPTQ_FETCH;
      else if (a & ACCESS_WRITE) q = a & ACCESS_GUEST_TABLE ? EPTQ_WRITE | EPTQ_READ : EPTQ_WRITE;
      else q = EPTQ_READ;
      if (reason === REASON_PROTECTION)
        q |= ((perm & 7) << 3) | (this.format.mbec ? ((perm >>> 10) & 1) << 6 : 0);
      if (a & ACCESS_LINEAR_VALID)
        q |= EPTQ_LINEAR_VALID | (a & ACCESS_GUEST_TABLE ? 0 : EPTQ_LINEAR_TRANSLATION);
      w.errorCode = q;
    } else w.errorCode = 0;
    return false;
  }
}
