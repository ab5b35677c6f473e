/**
 * The simulated translation lookaside buffer: the fast path of every simulated memory access.
 *
 * There are five parts, in this order: (i) the entry layout in typed arrays, (ii) the
 * current context (VPID, PCID, EPT tag) and the permission rules, (iii) `lookup`, the hit
 * path, (iv) `insert`, the fill after a walk, with replacement, and (v) invalidation: every
 * flush real software issues (INVLPG, MOV to CR0/CR3/CR4, INVPCID, INVVPID, INVEPT), each
 * with the rule of the SDM it follows, plus the flushes a host MMU needs.
 *
 * What an entry is. One cached translation, tagged like the hardware tags it:
 *  - VPID (0..0xffff; 0 is the host, or a guest run without VPID; also an AMD ASID),
 *  - PCID (0..0xfff), except that a global entry (leaf G=1 under CR4.PGE=1) is usable
 *    from every PCID of its VPID (SDM 4.10.2.4),
 *  - EPT tag (0..0xffff): a small number the host MMU gives each EPTP / nCR3; an entry with
 *    tag t is a combined guest+EPT translation valid only while that EPTP is in use; 0 means
 *    a plain linear translation.
 * It caches the rights a walk computed (x86 effective W/U/X, the SDM's "access rights"), the
 * leaf's protection key, and whether the leaf was already dirty (SDM 4.10.2.2 lists exactly
 * these), so the access check needs no walk. Whatever cannot be decided from the entry -- a
 * write through a clean entry (the CPU must walk to set D), an access the cached rights or
 * keys forbid -- is a miss: the caller walks, and the walk either faults or refills the
 * entry. (Intel allows either faulting from the stale entry or re-walking; AMD re-walks.
 * Re-walking is what makes the simulated guest see exactly what its tables say.)
 *
 * Page sizes. Each size has its own set-associative array (`TlbConfig`); lookups probe 4 KiB,
 * then 2 MiB, then 1 GiB. A 4 MiB page (32-bit paging with CR4.PSE) is cached as the 2 MiB
 * fragment that contains the accessed address, in the 2 MiB array: SDM 4.10.2.3 allows
 * caching a large page as smaller-page entries, and it keeps one page shift per array so a
 * probe is one shift and one mask. INVLPG and page faults drop both fragments of a 4 MiB
 * page, as the SDM requires ("all TLB entries corresponding to the translation").
 *
 * Addresses. The linear address travels as 32-bit halves like everywhere in vmmu. Only
 * bits 56:0 are used: a 4-level canonical address is the same linear address under 5-level
 * paging, and its bits 63:57 are copies of bit 56 or 47. A page number (address >> 12) is
 * < 2^45 and exact as a Number; inside the TLB it is kept as halves too (low 32 bits in
 * `vpn`, the rest in `tag`), so a probe never converts between doubles and integers.
 */

import {
  ACCESS_FETCH,
  ACCESS_IMPLICIT,
  ACCESS_USER,
  ACCESS_WRITE,
  X86_EFF_U,
  X86_EFF_W,
  X86_EFF_X,
} from "../arch/access.js";
import { CR0_PG, CR4_PAE, CR4_PCIDE, CR4_PGE, CR4_SMEP, PTE_D, PTE_G } from "../arch/x86.js";
import type { Walk } from "../walk/walk.js";
import {
  DEFAULT_TLB_PRESET,
  formatTlbSpec,
  type NormalizedTlbConfig,
  normalizeTlbConfig,
  parseTlbSpec,
  TLB_SIZES,
  type TlbConfig,
  type TlbSize,
} from "./tlb-config.js";
import {
  FLUSH_ALL,
  FLUSH_EPT_VIOLATION,
  FLUSH_INVEPT_GLOBAL,
  FLUSH_INVEPT_SINGLE,
  FLUSH_INVLPG,
  FLUSH_INVPCID_ADDRESS,
  FLUSH_INVPCID_ALL,
  FLUSH_INVPCID_ALL_NON_GLOBAL,
  FLUSH_INVPCID_SINGLE,
  FLUSH_INVVPID_ADDRESS,
  FLUSH_INVVPID_ALL,
  FLUSH_INVVPID_SINGLE,
  FLUSH_INVVPID_SINGLE_NON_GLOBAL,
  FLUSH_MOV_CR0,
  FLUSH_MOV_CR3,
  FLUSH_MOV_CR4,
  FLUSH_PAGE_FAULT,
  FLUSH_RANGE,
  FLUSH_TAG,
  FLUSH_VPID,
  TlbStats,
} from "./tlb-stats.js";

// ---------------------------------------------------------------------------------------------
// (i) Layout

/** Size indices: the three arrays, in lookup order. */
export const TLB_4K = 0;
export const TLB_2M = 1;
export const TLB_1G = 2;

// The lookups return the module-local MISS and HIGH: V8 folds them into the code, where an
// exported constant is loaded from its module cell (and is of unknown type there).
const MISS = -1;
const HIGH = -2;
/** `lookup` result when the access must walk. */
export const TLB_MISS = MISS;
/** `lookupFrame` result for a hit whose frame number is 2^31 or more: call `lookup`. */
export const TLB_HIGH_FRAME = HIGH;

/**
 * Entry attributes, as `insert` takes them and `TlbEntry.attrs` reports them:
 * ```
 *   8     7......4   3   2   1   0
 *  [G] [  PKEY   ] [D] [X] [U] [W]
 * ```
 * W/U/X are the walker's effective rights (X86_EFF_*); D: the leaf's dirty flag was set (for
 * a combined guest+EPT translation: a write needs no walk at all, i.e. guest D, EPT W and
 * EPT D are all set); PKEY: the leaf's protection key; G: global (leaf G and CR4.PGE).
 * Bits 7:0 index the permission table; G goes into the tag.
 */
export const TLB_W = X86_EFF_W;
export const TLB_U = X86_EFF_U;
export const TLB_X = X86_EFF_X;
export const TLB_DIRTY = 1 << 3;
export const TLB_PKEY_SHIFT = 4;
export const TLB_GLOBAL = 1 << 8;

/*
 * Slots. All arrays share one slot numbering: the 4 KiB array first, then 2 MiB, then 1 GiB;
 * inside an array, set i occupies slots base + i*ways .. base + i*ways + ways - 1.
 *
 *   slot:        0 ........ (4k sets*ways) ........ (+ 2m sets*ways) ........ (+ 1g) capacity
 *               [ 4k: set 0 | set 1 | ...        ][ 2m: set 0 | ...   ][ 1g ]
 *
 * Per slot s, what a hit reads is interleaved in one Int32Array, so that V8 loads one
 * array's data pointer and length for the whole probe, and the hit stays in integers:
 *   ent[8s + 0]  vpn    page number bits 31:0 (page number = linear address bits 56:shift)
 *   ent[8s + 1]  space  EPT tag << 16 | VPID
 *   ent[8s + 2]  tag    0 = empty, else:
 *                         31    27  26  25  24 .......... 13  12 ............ 0
 *                        [ 0     ][V][G][  PCID (12 bits) ][ page number 44:32 ]
 *   ent[8s + 3]  deny   deny[rights] (see `setPermissions`), refreshed when the rules change
 *   ent[8s + 4]  frame  4 KiB frame number of the cached page's base, or -1 when the page
 *                       reaches frame 2^31 (then `lookupFrame` defers to `lookup`)
 *   ent[8s + 5..7]      unused (a power-of-two stride)
 *   fs[2s]       frame  physical base address of the cached page (< 2^52, exact)
 *   fs[2s + 1]   stamp  LRU: last use; FIFO: fill order (a clock that does not wrap before 2^53)
 *   rights[s]    Uint8  rights class: W U X D PKEY (bits 7:0 of the attributes above)
 *   info[s]      Uint8  page shift of the translation: 12, 21, 30, or 22 (2 MiB fragment of a 4 MiB page)
 * The words are signed: vpn and space compare with keys made by `| 0`, not `>>> 0`.
 *
 * Filled slots are also listed in `used` (dense, in no order) with each slot's index in
 * `usedPos`, so a flush visits only the entries in use and removes one in O(1) by moving
 * the last listed slot into its place.
 */
const E_STRIDE = 8;
const E_VPN = 0;
const E_SPACE = 1;
const E_TAG = 2;
const E_DENY = 3;
const E_FRAME = 4;
const F_STRIDE = 2;
const F_STAMP = 1;
/** `i >>> E_TO_F` turns an index into `ent` (slot * E_STRIDE) into one into `fs` (slot * F_STRIDE). */
const E_TO_F = 2;
/** `ent[E_FRAME]` holds frame numbers up to this bound (exclusive) for every 4 KiB page of the entry. */
const FRAME_LIMIT = 2 ** 31;

const TAG_VALID = 1 << 26;
const TAG_GLOBAL = 1 << 25;
const TAG_PCID_SHIFT = 13;
const TAG_PCID_MASK = 0xfff << TAG_PCID_SHIFT;
const TAG_VPN_HI = 0x1fff;
/** Linear address bits 56:32 in the high half. */
const VA_HI_MASK = 0x1ffffff;

const SHIFTS = [12, 21, 30] as const;
const FRAGMENT_OF_4M = 22;

// ---------------------------------------------------------------------------------------------
// (ii) Permission rules and entry reports

/**
 * What decides an access from cached rights: the CpuRole's permission table and protection
 * key state. A `CpuRole` (or a `WalkerConfig`) is one.
 */
export interface TlbPermissions {
  /** [access & 0x1f] → bit e set when effective rights e (X86_EFF_*) fault. */
  readonly permFault: Uint16Array;
  readonly wp: boolean;
  readonly pke: boolean;
  readonly pks: boolean;
  readonly pkru: number;
  readonly pkrs: number;
}

/** One entry, decoded (for tests, `check()` and the explorer; allocates). */
export interface TlbEntry {
  slot: number;
  size: TlbSize;
  set: number;
  way: number;
  /** Page shift of the translation: 12, 21, 30, or 22 for a 4 MiB page (cached as a 2 MiB fragment). */
  pageShift: number;
  /** Page shift of what is cached: 12, 21 or 30. */
  cachedShift: number;
  /** First 4 KiB linear page number the cached entry covers (linear address bits 56:12; exact). */
  page: number;
  /** The cached page's linear base address (bits 56:0) as halves. */
  vaHi: number;
  vaLo: number;
  /** Physical base address of the cached page. */
  physical: number;
  /** TLB_W | TLB_U | TLB_X | TLB_DIRTY | pkey << TLB_PKEY_SHIFT | TLB_GLOBAL. */
  attrs: number;
  global: boolean;
  vpid: number;
  /** The PCID the entry was filled under (a global entry is usable from every PCID). */
  pcid: number;
  eptTag: number;
}

/** The attribute word `insert` takes. */
export function tlbAttrs(effective: number, dirty: boolean, pkey: number, global: boolean): number {
  return (
    (effective & 7) | (dirty ? TLB_DIRTY : 0) | ((pkey & 15) << TLB_PKEY_SHIFT) | (global ? TLB_GLOBAL : 0)
  );
}

/**
 * The attribute word for a successful x86 walk: its effective rights and key, D from the
 * leaf after the accessed/dirty update, G from the leaf when CR4.PGE is set.
 */
export function tlbAttrsFromWalk(w: Walk, pge: boolean): number {
  const leaf = w.newLo[w.depth - 1];
  return tlbAttrs(w.effective, (leaf & PTE_D) !== 0, w.pkey, pge && (leaf & PTE_G) !== 0);
}

// Invalidation predicates (see `matches`).
/** Same VPID, and global or of PCID p2 (what an access with this VPID/PCID could use). */
const M_VPID_VISIBLE = 1;
/** Same VPID and EPT tag (p1 = space), global or of PCID p2: exactly what `lookup` matches. */
const M_SPACE_VISIBLE = 2;
/** Same VPID, not global, PCID p2. */
const M_VPID_PCID_NON_GLOBAL = 3;
const M_VPID = 4;
const M_VPID_NON_GLOBAL = 5;
const M_NOT_VPID0 = 6;
const M_EPT = 7;
const M_ANY_EPT = 8;

// ---------------------------------------------------------------------------------------------

/**
 * A set-associative TLB with one array per page size.
 *
 * @example
 * ```ts
 * const tlb = new Tlb("skylake-l1d");
 * tlb.setPermissions(role);                 // the CpuRole's permission rules
 * tlb.setContext(0, 0, 0);                  // VPID, PCID, EPT tag
 * let pa = tlb.lookup(vaHi, vaLo, access);
 * if (pa === TLB_MISS && walker.walk(vaHi, vaLo, access, w)) {
 *   tlb.insertWalk(w, role.pge);
 *   pa = w.address;
 * }
 * ```
 */
export class Tlb {
  /** The validated configuration. */
  readonly config: Readonly<NormalizedTlbConfig>;
  /** The canonical spec of the configuration (`formatTlbSpec`), for reports. */
  readonly spec: string;
  /** Total number of slots. */
  readonly capacity: number;
  readonly stats = new TlbStats();
  /** `stats.hits`, one load closer to the hit path. */
  private readonly hits = this.stats.hits;

  /** Per slot s, at 8s: vpn, space, tag, deny word, frame number (see "Slots"). */
  private readonly ent: Int32Array;
  /** Per slot s: frame at 2s, stamp at 2s + 1. */
  private readonly fs: Float64Array;
  /** Per slot: the translation's page shift (cold: flushes and inspection only). */
  private readonly info: Uint8Array;
  private readonly used: Uint32Array;
  private readonly usedPos: Uint32Array;
  private inUse = 0;

  /** Per size: first slot, ways (0 = not cached), set mask. */
  private readonly zBase = new Uint32Array(3);
  private readonly zWays = new Uint32Array(3);
  private readonly zSetMask = new Uint32Array(3);
  /** The 4 KiB array's ways and set mask again, as plain fields for `lookup`'s first probe. */
  private readonly ways4k: number;
  private readonly setMask4k: number;

  /** [rights class] → bit a set when access descriptor a (ACCESS_* & 0x1f) cannot hit. */
  private readonly deny = new Uint32Array(256).fill(0xffffffff);
  /** Per slot: its rights class (the `deny` index), to refresh its deny word. */
  private readonly rights: Uint8Array;
  private readonly lru: boolean;
  private readonly random: boolean;
  private clock = 0;
  private rng: number;

  private curVpid = 0;
  private curPcid = 0;
  private curEpt = 0;
  /** EPT tag << 16 | VPID (signed, as `ent` holds it), compared with `space`. */
  private curSpace = 0;
  /** PCID << 13 | V, or'ed with the page number bits 44:32 to give a non-global entry's tag. */
  private curTag = TAG_VALID;

  /** `config` is a TlbConfig, a preset name or a spec (see tlb-config.ts). Default: skylake-l1d. */
  constructor(config: TlbConfig | string = DEFAULT_TLB_PRESET) {
    const raw = typeof config === "string" ? parseTlbSpec(config) : config;
    const c = normalizeTlbConfig(raw);
    this.config = Object.freeze(c);
    this.spec = formatTlbSpec(raw);
    let n = 0;
    c.sizes.forEach((g, z) => {
      this.zBase[z] = n;
      if (g) {
        this.zWays[z] = g.ways;
        this.zSetMask[z] = g.sets - 1;
        n += g.sets * g.ways;
      }
    });
    this.capacity = n;
    this.ways4k = this.zWays[TLB_4K];
    this.setMask4k = this.zSetMask[TLB_4K];
    this.ent = new Int32Array(n * E_STRIDE);
    this.fs = new Float64Array(n * F_STRIDE);
    this.info = new Uint8Array(n);
    this.rights = new Uint8Array(n);
    this.used = new Uint32Array(n);
    this.usedPos = new Uint32Array(n);
    this.lru = c.policy === "lru";
    this.random = c.policy === "random";
    this.rng = c.seed;
  }

  /** Number of filled entries. */
  get entriesInUse(): number {
    return this.inUse;
  }

  get vpid(): number {
    return this.curVpid;
  }

  get pcid(): number {
    return this.curPcid;
  }

  get eptTag(): number {
    return this.curEpt;
  }

  /**
   * Sets the tags of the accesses that follow (VM entry/exit, a vCPU switch). Flushes
   * nothing: entries of other contexts stay and are simply not matched.
   */
  setContext(vpid: number, pcid: number, eptTag: number): void {
    checkRange(vpid, 0xffff, "VPID");
    checkRange(pcid, 0xfff, "PCID");
    checkRange(eptTag, 0xffff, "EPT tag");
    this.curVpid = vpid;
    this.curEpt = eptTag;
    this.curSpace = (eptTag << 16) | vpid;
    this.setPcid(pcid);
  }

  private setPcid(pcid: number): void {
    this.curPcid = pcid;
    this.curTag = (TAG_VALID | (pcid << TAG_PCID_SHIFT)) >>> 0;
  }

  /**
   * Installs the rules that decide an access from an entry's cached rights: the CpuRole's
   * permission table (CR0.WP, CR4.SMEP/SMAP) and protection keys (PKRU, PKRS). Call it when
   * they change; changing them flushes nothing, as on a real CPU (WRPKRU, or MOV to CR0
   * changing WP, keep the TLB): the rights are re-checked on every hit. Until it is first
   * called the TLB decides nothing and every lookup misses.
   *
   * The table has one 32-bit word per rights class (W U X D PKEY: 256 classes): bit a is set
   * when access descriptor a must walk. 256 × 32 checks, done here; each filled entry keeps
   * its class's word (refreshed below, O(entries in use)), so a hit decides with one shift.
   */
  setPermissions(p: TlbPermissions): void {
    const deny = this.deny;
    for (let c = 0; c < 256; c++) {
      const eff = c & 7;
      const dirty = (c & TLB_DIRTY) !== 0;
      const key = c >>> TLB_PKEY_SHIFT;
      const userPage = (eff & X86_EFF_U) !== 0;
      // Protection keys (SDM 4.6.2): PKRU governs user pages, PKRS supervisor pages; two bits per key.
      const keyReg = userPage ? (p.pke ? p.pkru : 0) : p.pks ? p.pkrs : 0;
      const keyRights = (keyReg >>> (key * 2)) & 3;
      let bits = 0;
      for (let a = 0; a < 32; a++) {
        const write = (a & ACCESS_WRITE) !== 0;
        let d = ((p.permFault[a] >>> eff) & 1) !== 0 || (write && !dirty);
        if (!d && (a & ACCESS_FETCH) === 0 && keyRights !== 0) {
          const userAccess = (a & (ACCESS_USER | ACCESS_IMPLICIT)) === ACCESS_USER;
          d = (keyRights & 1) !== 0 || (write && (userAccess || p.wp));
        }
        if (d) bits |= 1 << a;
      }
      deny[c] = bits >>> 0;
    }
    const e = this.ent;
    for (let i = 0; i < this.inUse; i++) {
      const s = this.used[i];
      e[s * E_STRIDE + E_DENY] = deny[this.rights[s]];
    }
  }

  // -------------------------------------------------------------------------------------------
  // (iii) The hit path

  /**
   * Looks up the linear address (halves) for an access (ACCESS_* bits) in the current
   * context. Returns the physical address, or TLB_MISS when the access must walk: no entry,
   * or an entry that cannot decide the access (write through a clean entry, rights or keys
   * that forbid it). Allocates nothing. (`lookupFrame` × 4096 + offset, exact below 2^43.)
   */
  lookup(vaHi: number, vaLo: number, access: number): number {
    const fn = this.lookupFrame(vaHi, vaLo, access);
    if (fn >= 0) return fn * 4096 + (vaLo & 0xfff);
    if (fn === MISS) return MISS;
    return this.hitHighFrame(vaHi, vaLo);
  }

  /**
   * `lookup` for callers that want the 4 KiB frame number of the physical address
   * (`Vcpu.read32`/`write32`): an integer, where the address is a double the caller would
   * have to divide. Returns the frame number, TLB_MISS (counted as `lookup` counts it), or
   * TLB_HIGH_FRAME when the entry's page reaches frame 2^31 (physical 8 TiB): then nothing
   * was counted and `lookup` gives the address.
   */
  lookupFrame(vaHi: number, vaLo: number, access: number): number {
    const h = vaHi & VA_HI_MASK;
    // The 4 KiB array first, on its own (its slots start at 0): most hits end here, and
    // plain fields instead of the per-size arrays keep the probe short.
    const ways = this.ways4k;
    if (ways !== 0) {
      const lo = (vaLo >>> 12) | (h << 20);
      const hi = h >>> 12;
      const e = this.ent;
      const space = this.curSpace;
      // The masks change nothing (sets <= 2^16, ways <= 256, slots < 2^20) but bound the
      // index for V8's typer, so `i + E_TAG` etc. need no overflow checks.
      const first = (((lo & this.setMask4k & 0xffff) * (ways & 0x1ff)) & 0xfffff) * E_STRIDE;
      const end = first + (ways & 0x1ff) * E_STRIDE;
      for (let i = first; i < end; i += E_STRIDE) {
        if (e[i + E_VPN] !== lo || e[i + E_SPACE] !== space) continue;
        const t = e[i + E_TAG];
        if (t !== (hi | this.curTag) && (t & ~TAG_PCID_MASK) !== (hi | TAG_VALID | TAG_GLOBAL)) continue;
        if ((e[i + E_DENY] >>> access) & 1) {
          this.stats.rightsMisses++;
          this.stats.misses++;
          return MISS;
        }
        const fn = e[i + E_FRAME];
        if (fn < 0) return HIGH;
        // `=== true` is one compare; V8 tests a boolean field's truthiness at length. The
        // literal 0 is TLB_4K (an exported constant is a cell load, see MISS).
        if (this.lru === true) this.fs[(i >>> E_TO_F) + F_STAMP] = ++this.clock;
        this.hits[0]++;
        return fn;
      }
    }
    // `| 0` changes nothing (the result is an int32) but tells V8 so: the hit above then
    // returns its frame number untagged.
    return this.lookupFrameLarge(h, vaLo, access) | 0;
  }

  /** `lookupFrame` in the 2 MiB and 1 GiB arrays. */
  private lookupFrameLarge(h: number, vaLo: number, access: number): number {
    const e = this.ent;
    const space = this.curSpace;
    const ctxTag = this.curTag;
    for (let z = TLB_2M; z < 3; z++) {
      const ways = this.zWays[z];
      if (ways === 0) continue;
      const shift = SHIFTS[z];
      // Page number halves: bits 31:0 select the set and are compared; bits 44:32 are in the tag.
      const lo = (vaLo >>> shift) | (h << (32 - shift));
      const hi = h >>> shift;
      const want = hi | ctxTag;
      const wantGlobal = hi | TAG_VALID | TAG_GLOBAL;
      let i = (this.zBase[z] + (lo & this.zSetMask[z]) * ways) * E_STRIDE;
      for (const end = i + ways * E_STRIDE; i < end; i += E_STRIDE) {
        if (e[i + E_VPN] !== lo || e[i + E_SPACE] !== space) continue;
        const t = e[i + E_TAG];
        // A non-global entry matches on its PCID; a global one on any PCID (mask the PCID out).
        if (t !== want && (t & ~TAG_PCID_MASK) !== wantGlobal) continue;
        // The entry's deny word and one shift decide the access; `>>> access` uses only its
        // low five bits, the permission-table index (ACCESS_PERM_INDEX_MASK).
        if ((e[i + E_DENY] >>> access) & 1) {
          this.stats.rightsMisses++;
          this.stats.misses++;
          return MISS;
        }
        const fn = e[i + E_FRAME];
        if (fn < 0) return HIGH;
        if (this.lru === true) this.fs[(i >>> E_TO_F) + F_STAMP] = ++this.clock;
        this.hits[z]++;
        // The 4 KiB frame inside the cached page (`insert` keeps the sum below 2^31).
        return fn + ((vaLo >>> 12) & ((1 << (shift - 12)) - 1));
      }
    }
    this.stats.misses++;
    return MISS;
  }

  /**
   * `lookup` after `lookupFrame` returned TLB_HIGH_FRAME: the same entry (the first that
   * matches, in lookup order), whose rights allow the access; counted here.
   */
  private hitHighFrame(vaHi: number, vaLo: number): number {
    const s = this.find(vaHi, vaLo);
    const z = s < this.zBase[1] ? 0 : s < this.zBase[2] ? 1 : 2;
    if (this.lru) this.fs[s * F_STRIDE + F_STAMP] = ++this.clock;
    this.hits[z]++;
    return this.fs[s * F_STRIDE] + (vaLo & (2 ** SHIFTS[z] - 1));
  }

  /** The slot a lookup in the current context matches for this address, or -1 (counts nothing). */
  private find(vaHi: number, vaLo: number): number {
    const h = vaHi & VA_HI_MASK;
    for (let z = 0; z < 3; z++) {
      const ways = this.zWays[z];
      if (ways === 0) continue;
      const shift = SHIFTS[z];
      const lo = (vaLo >>> shift) | (h << (32 - shift));
      const hi = h >>> shift;
      const first = this.zBase[z] + (lo & this.zSetMask[z]) * ways;
      for (let s = first; s < first + ways; s++) {
        const i = s * E_STRIDE;
        const t = this.ent[i + E_TAG];
        if (this.ent[i + E_VPN] !== lo || this.ent[i + E_SPACE] !== this.curSpace) continue;
        if (t === (hi | this.curTag) || (t & ~TAG_PCID_MASK) === (hi | TAG_VALID | TAG_GLOBAL)) return s;
      }
    }
    return -1;
  }

  // -------------------------------------------------------------------------------------------
  // (iv) Fills

  /**
   * Caches a translation after a successful walk in the current context: `physical` is the
   * walk's translation of (vaHi, vaLo), `pageShift` its page size (12, 21, 22 or 30), `attrs`
   * from `tlbAttrs`. First drops every entry the current context would match for this
   * address, in any size (a refill after a write to a clean page, or after the tables
   * changed without a flush, replaces the old entry rather than shadowing it). Returns the
   * slot, or -1 when this page size is not cached.
   */
  insert(vaHi: number, vaLo: number, physical: number, pageShift: number, attrs: number): number {
    let z: number;
    if (pageShift === 12) z = TLB_4K;
    else if (pageShift === 21 || pageShift === FRAGMENT_OF_4M) z = TLB_2M;
    else if (pageShift === 30) z = TLB_1G;
    else throw new RangeError(`TLB insert: page shift ${pageShift} is not 12, 21, 22 or 30`);
    if (!Number.isSafeInteger(physical) || physical < 0 || physical >= 2 ** 52)
      throw new RangeError(`TLB insert: physical address ${physical} is not an integer in [0, 2^52)`);
    if (!Number.isInteger(attrs) || attrs < 0 || attrs > 0x1ff)
      throw new RangeError(`TLB insert: attributes ${attrs} are not 0..0x1ff`);

    // The other 2 MiB fragment of a 4 MiB page answers other addresses: it may stay.
    this.stats.replaced += this.dropAddress(vaHi, vaLo, M_SPACE_VISIBLE, this.curSpace, this.curPcid, false);
    const ways = this.zWays[z];
    if (ways === 0) {
      this.stats.uncached++;
      return -1;
    }
    const shift = SHIFTS[z];
    const h = vaHi & VA_HI_MASK;
    const lo = (vaLo >>> shift) | (h << (32 - shift));
    const hi = h >>> shift;
    const first = this.zBase[z] + (lo & this.zSetMask[z]) * ways;
    const s = this.victim(z, first, ways);
    const e = this.ent;
    const i = s * E_STRIDE;
    e[i + E_VPN] = lo;
    e[i + E_SPACE] = this.curSpace;
    e[i + E_TAG] = hi | TAG_VALID | (this.curPcid << TAG_PCID_SHIFT) | (attrs & TLB_GLOBAL ? TAG_GLOBAL : 0);
    e[i + E_DENY] = this.deny[attrs & 0xff];
    this.rights[s] = attrs & 0xff;
    this.info[s] = pageShift;
    // The base of the cached page: for a 4 MiB page, of the 2 MiB fragment holding the address.
    const base = physical - (physical % 2 ** shift);
    this.fs[s * F_STRIDE] = base;
    const fn = base / 4096;
    e[i + E_FRAME] = fn + 2 ** (shift - 12) <= FRAME_LIMIT ? fn : -1;
    this.fs[s * F_STRIDE + F_STAMP] = ++this.clock;
    this.used[this.inUse] = s;
    this.usedPos[s] = this.inUse++;
    this.stats.inserts[z]++;
    return s;
  }

  /** `insert` for a successful x86 walk (`w.ok`), with `pge` = CR4.PGE of the walking context. */
  insertWalk(w: Walk, pge: boolean): number {
    return this.insert(w.vaHi, w.vaLo, w.address, w.pageShift, tlbAttrsFromWalk(w, pge));
  }

  /** An empty way of the set, else the one the policy gives up (counted as an eviction). */
  private victim(z: number, first: number, ways: number): number {
    const end = first + ways;
    for (let s = first; s < end; s++) if (this.ent[s * E_STRIDE + E_TAG] === 0) return s;
    let v = first;
    if (this.random) v = first + this.nextRandom(ways);
    else {
      // LRU: stamps are last uses; FIFO: fill times. Either way, the oldest goes.
      const f = this.fs;
      for (let s = first + 1; s < end; s++) if (f[s * F_STRIDE + F_STAMP] < f[v * F_STRIDE + F_STAMP]) v = s;
    }
    this.remove(v);
    this.stats.evictions[z]++;
    return v;
  }

  /** mulberry32: a small seeded PRNG, so random replacement reproduces from the seed. */
  private nextRandom(n: number): number {
    this.rng = (this.rng + 0x6d2b79f5) >>> 0;
    let t = this.rng;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 0x100000000) * n);
  }

  /** Empties a filled slot: O(1), by moving the last listed slot into its place in `used`. */
  private remove(s: number): void {
    const p = this.usedPos[s];
    const last = this.used[--this.inUse];
    this.used[p] = last;
    this.usedPos[last] = p;
    this.ent[s * E_STRIDE + E_TAG] = 0;
  }

  // -------------------------------------------------------------------------------------------
  // (v) Invalidation. Each returns the number of entries dropped. Section numbers are the
  // Intel SDM's, Vol. 3A ch. 4.10.4 (paging) and Vol. 3C 28.3.3 (VMX; 29.4.3 in 2024+
  // editions). VMX rule (28.3.3.1): instructions that invalidate "independent of VMX" (INVLPG,
  // INVPCID, MOV to CR0/CR3/CR4) act on the current VPID only, and on combined mappings of
  // every EPT tag; INVVPID acts on the VPIDs it names, all PCIDs, every EPT tag; INVEPT on
  // the EPT tags it names, every VPID and PCID.

  /**
   * INVLPG (4.10.4.1): every entry translating the address, any page size, of the current
   * VPID and current PCID, and global entries of the address whatever their PCID.
   */
  invlpg(vaHi: number, vaLo: number): number {
    return this.count(FLUSH_INVLPG, this.dropAddress(vaHi, vaLo, M_VPID_VISIBLE, this.curVpid, this.curPcid));
  }

  /**
   * A page fault on this address (4.10.4.1, "page faults invalidate..."): the entries the
   * access could have used, so the fault does not recur from a stale entry. The SDM says
   * "associated with the current PCID"; global entries of the address are dropped too (the
   * processor may always drop more, and a global entry is usable from the current PCID).
   */
  pageFault(vaHi: number, vaLo: number): number {
    return this.count(
      FLUSH_PAGE_FAULT,
      this.dropAddress(vaHi, vaLo, M_VPID_VISIBLE, this.curVpid, this.curPcid),
    );
  }

  /**
   * An EPT violation during a translation of this linear address (28.3.3.1): the combined
   * entries for it with the current VPID, PCID (and globals) and EPT tag.
   */
  eptViolation(vaHi: number, vaLo: number): number {
    return this.count(
      FLUSH_EPT_VIOLATION,
      this.dropAddress(vaHi, vaLo, M_SPACE_VISIBLE, this.curSpace, this.curPcid),
    );
  }

  /**
   * MOV to CR0 (4.10.4.1): clearing CR0.PG drops every entry of the current VPID, global
   * ones included, all PCIDs. Other changes flush nothing (CR0.WP is re-checked on each hit).
   */
  movToCr0(oldCr0: number, newCr0: number): number {
    if ((oldCr0 & CR0_PG) === 0 || (newCr0 & CR0_PG) !== 0) return 0;
    return this.sweep(FLUSH_MOV_CR0, M_VPID, this.curVpid, 0);
  }

  /**
   * MOV to CR3 (4.10.4.1), which also makes `pcid` current. CR4.PCIDE=0: pass PCID 0 and
   * noFlush false (bit 63 is reserved then); drops the non-global entries of PCID 0. PCIDE=1:
   * drops the non-global entries of the new PCID, unless `noFlush` (source bit 63) is set.
   * Entries of other PCIDs stay. Only the current VPID.
   */
  movToCr3(pcid: number, noFlush = false): number {
    checkRange(pcid, 0xfff, "PCID");
    this.setPcid(pcid);
    if (noFlush) return 0;
    return this.sweep(FLUSH_MOV_CR3, M_VPID_PCID_NON_GLOBAL, this.curVpid, pcid);
  }

  /**
   * MOV to CR4 (4.10.4.1), given the old and new values (bits 31:0):
   *  - CR4.PGE changes, or CR4.PCIDE goes 1 → 0: every entry of the current VPID, global
   *    ones included, all PCIDs (PCIDE 1 → 0 also makes PCID 0 current);
   *  - else CR4.PAE changes, or CR4.SMEP goes 0 → 1: every entry the current PCID can use
   *    (its own and the global ones);
   *  - anything else flushes nothing.
   */
  movToCr4(oldCr4: number, newCr4: number): number {
    const changed = oldCr4 ^ newCr4;
    const pcideOff = (oldCr4 & CR4_PCIDE) !== 0 && (newCr4 & CR4_PCIDE) === 0;
    if ((changed & CR4_PGE) !== 0 || pcideOff) {
      if (pcideOff) this.setPcid(0);
      return this.sweep(FLUSH_MOV_CR4, M_VPID, this.curVpid, 0);
    }
    if ((changed & CR4_PAE) !== 0 || (changed & newCr4 & CR4_SMEP) !== 0)
      return this.sweep(FLUSH_MOV_CR4, M_VPID_VISIBLE, this.curVpid, this.curPcid);
    return 0;
  }

  /**
   * INVPCID (SDM Vol. 2 INVPCID), in the current VPID:
   *  0 individual address: the non-global entries of `pcid` for the address;
   *  1 single context: the non-global entries of `pcid`;
   *  2 all contexts, including globals: every entry;
   *  3 all contexts: every non-global entry.
   * The address is ignored for types 1..3.
   */
  invpcid(type: number, pcid: number, vaHi = 0, vaLo = 0): number {
    checkRange(pcid, 0xfff, "INVPCID PCID");
    const v = this.curVpid;
    switch (type) {
      case 0:
        return this.count(
          FLUSH_INVPCID_ADDRESS,
          this.dropAddress(vaHi, vaLo, M_VPID_PCID_NON_GLOBAL, v, pcid),
        );
      case 1:
        return this.sweep(FLUSH_INVPCID_SINGLE, M_VPID_PCID_NON_GLOBAL, v, pcid);
      case 2:
        return this.sweep(FLUSH_INVPCID_ALL, M_VPID, v, 0);
      case 3:
        return this.sweep(FLUSH_INVPCID_ALL_NON_GLOBAL, M_VPID_NON_GLOBAL, v, 0);
      default:
        throw new RangeError(`INVPCID type ${type} is not 0..3 (#GP)`);
    }
  }

  /**
   * INVVPID (28.3.3.1, SDM Vol. 3C ch. 30), all PCIDs and EPT tags of the VPIDs named:
   *  0 individual address: every entry of `vpid` for the address, global ones included;
   *  1 single context: every entry of `vpid`;
   *  2 all contexts: every entry of every VPID except 0 (the host's);
   *  3 single context retaining globals: every non-global entry of `vpid`.
   * VPID 0 is refused for types 0, 1 and 3 (VMfailValid on a real CPU).
   */
  invvpid(type: number, vpid: number, vaHi = 0, vaLo = 0): number {
    checkRange(vpid, 0xffff, "INVVPID VPID");
    if (vpid === 0 && type !== 2)
      throw new RangeError(`INVVPID type ${type} with VPID 0 is invalid (VMfailValid)`);
    switch (type) {
      case 0:
        return this.count(FLUSH_INVVPID_ADDRESS, this.dropAddress(vaHi, vaLo, M_VPID, vpid, 0));
      case 1:
        return this.sweep(FLUSH_INVVPID_SINGLE, M_VPID, vpid, 0);
      case 2:
        return this.sweep(FLUSH_INVVPID_ALL, M_NOT_VPID0, 0, 0);
      case 3:
        return this.sweep(FLUSH_INVVPID_SINGLE_NON_GLOBAL, M_VPID_NON_GLOBAL, vpid, 0);
      default:
        throw new RangeError(`INVVPID type ${type} is not 0..3 (VMfailValid)`);
    }
  }

  /**
   * INVEPT (28.3.3.1), every VPID and PCID: type 1 (single context) drops the entries of
   * one EPT tag (1..0xffff), type 2 (global) the entries of every EPT tag. Plain linear
   * entries (tag 0) are not EPT mappings and stay.
   */
  invept(type: number, eptTag = 0): number {
    if (type === 1) {
      checkRange(eptTag, 0xffff, "INVEPT EPT tag");
      if (eptTag === 0) throw new RangeError("INVEPT single-context: EPT tag 0 names no EPTP");
      return this.sweep(FLUSH_INVEPT_SINGLE, M_EPT, eptTag, 0);
    }
    if (type === 2) return this.sweep(FLUSH_INVEPT_GLOBAL, M_ANY_EPT, 0, 0);
    throw new RangeError(`INVEPT type ${type} is not 1 (single-context) or 2 (global) (VMfailValid)`);
  }

  /** Host MMU: every entry of one EPT tag (0 = every plain linear entry), any VPID and PCID. */
  flushTag(eptTag: number): number {
    checkRange(eptTag, 0xffff, "EPT tag");
    return this.sweep(FLUSH_TAG, M_EPT, eptTag, 0);
  }

  /**
   * Every entry of one VPID, any PCID and EPT tag. VM entry and VM exit without "enable
   * VPID" do this for VPID 0 (28.3.3.1); AMD's TLB_CONTROL=3 for one ASID.
   */
  flushVpid(vpid: number): number {
    checkRange(vpid, 0xffff, "VPID");
    return this.sweep(FLUSH_VPID, M_VPID, vpid, 0);
  }

  /**
   * Every entry of `vpid` (any PCID, global or not, any EPT tag) whose translation overlaps
   * the 4 KiB linear pages [firstPage, firstPage + pages). Page numbers are linear address
   * bits 56:12 (< 2^45). A 4 MiB page counts as a whole, as for INVLPG. Costs O(entries in use).
   */
  flushRange(vpid: number, firstPage: number, pages: number): number {
    checkRange(vpid, 0xffff, "VPID");
    if (!Number.isSafeInteger(firstPage) || firstPage < 0 || firstPage >= 2 ** 45)
      throw new RangeError(`flushRange: first page ${firstPage} is not an integer in [0, 2^45)`);
    if (!Number.isSafeInteger(pages) || pages < 0 || firstPage + pages > 2 ** 45)
      throw new RangeError(`flushRange: ${pages} pages from ${firstPage} go beyond 2^45 pages`);
    const end = firstPage + pages;
    let n = 0;
    for (let i = this.inUse - 1; i >= 0; i--) {
      const s = this.used[i];
      if ((this.ent[s * E_STRIDE + E_SPACE] & 0xffff) !== vpid) continue;
      const shift = this.info[s];
      const span = 2 ** (shift - 12);
      // The cached page's first 4 KiB page, rounded down to the translation (4 MiB fragments).
      const start = Math.floor(this.firstPage(s) / span) * span;
      if (start < end && start + span > firstPage) {
        this.remove(s);
        n++;
      }
    }
    return this.count(FLUSH_RANGE, n);
  }

  /** Drops every entry (power-up, reset, or a flush request that names no context). */
  flushAll(): number {
    const n = this.inUse;
    for (let i = 0; i < n; i++) this.ent[this.used[i] * E_STRIDE + E_TAG] = 0;
    this.inUse = 0;
    return this.count(FLUSH_ALL, n);
  }

  private count(kind: number, n: number): number {
    this.stats.flushes[kind]++;
    this.stats.dropped[kind] += n;
    return n;
  }

  /** Drops the filled entries `matches` selects, visiting only filled slots. */
  private sweep(kind: number, mode: number, p1: number, p2: number): number {
    let n = 0;
    // Backwards: `remove` moves the last listed slot (already visited) into position i.
    for (let i = this.inUse - 1; i >= 0; i--) {
      const s = this.used[i];
      if (this.matches(s, mode, p1, p2)) {
        this.remove(s);
        n++;
      }
    }
    return this.count(kind, n);
  }

  /**
   * Drops the entries `matches` selects among those translating the address, in every size:
   * one set per array, plus, in the 2 MiB array and with `siblings`, the other 2 MiB
   * fragment of a 4 MiB page (invalidations drop the whole translation, SDM 4.10.4.1).
   */
  private dropAddress(
    vaHi: number,
    vaLo: number,
    mode: number,
    p1: number,
    p2: number,
    siblings = true,
  ): number {
    const h = vaHi & VA_HI_MASK;
    let n = 0;
    for (let z = 0; z < 3; z++) {
      if (this.zWays[z] === 0) continue;
      const shift = SHIFTS[z];
      const lo = (vaLo >>> shift) | (h << (32 - shift));
      const hi = h >>> shift;
      n += this.dropInSet(z, lo, hi, mode, p1, p2, false);
      if (z === TLB_2M && siblings) n += this.dropInSet(z, lo ^ 1, hi, mode, p1, p2, true);
    }
    return n;
  }

  private dropInSet(
    z: number,
    lo: number,
    hi: number,
    mode: number,
    p1: number,
    p2: number,
    fragmentsOnly: boolean,
  ): number {
    const ways = this.zWays[z];
    const first = this.zBase[z] + (lo & this.zSetMask[z]) * ways;
    let n = 0;
    for (let s = first; s < first + ways; s++) {
      const t = this.ent[s * E_STRIDE + E_TAG];
      if (t === 0 || this.ent[s * E_STRIDE + E_VPN] !== lo || (t & TAG_VPN_HI) !== hi) continue;
      if (fragmentsOnly && this.info[s] !== FRAGMENT_OF_4M) continue;
      if (this.matches(s, mode, p1, p2)) {
        this.remove(s);
        n++;
      }
    }
    return n;
  }

  private matches(s: number, mode: number, p1: number, p2: number): boolean {
    const space = this.ent[s * E_STRIDE + E_SPACE];
    const t = this.ent[s * E_STRIDE + E_TAG];
    const global = (t & TAG_GLOBAL) !== 0;
    const vpid = space & 0xffff;
    const pcid = (t & TAG_PCID_MASK) >>> TAG_PCID_SHIFT;
    switch (mode) {
      case M_VPID_VISIBLE:
        return vpid === p1 && (global || pcid === p2);
      case M_SPACE_VISIBLE:
        return space === p1 && (global || pcid === p2);
      case M_VPID_PCID_NON_GLOBAL:
        return vpid === p1 && !global && pcid === p2;
      case M_VPID:
        return vpid === p1;
      case M_VPID_NON_GLOBAL:
        return vpid === p1 && !global;
      case M_NOT_VPID0:
        return vpid !== 0;
      case M_EPT:
        return space >>> 16 === p1;
      case M_ANY_EPT:
        return space >>> 16 !== 0;
      default:
        throw new Error(`bug: TLB match mode ${mode}`);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Inspection (cold: allocates)

  /** First 4 KiB page number of slot s's cached page (exact: < 2^45). */
  private firstPage(s: number): number {
    const z = s < this.zBase[1] ? 0 : s < this.zBase[2] ? 1 : 2;
    const shift = SHIFTS[z];
    const hi = this.ent[s * E_STRIDE + E_TAG] & TAG_VPN_HI;
    return (hi * 0x100000000 + (this.ent[s * E_STRIDE + E_VPN] >>> 0)) * 2 ** (shift - 12);
  }

  private decode(s: number): TlbEntry {
    const z = s < this.zBase[1] ? 0 : s < this.zBase[2] ? 1 : 2;
    const ways = this.zWays[z];
    const t = this.ent[s * E_STRIDE + E_TAG];
    const space = this.ent[s * E_STRIDE + E_SPACE];
    const shift = SHIFTS[z];
    const page = this.firstPage(s);
    const global = (t & TAG_GLOBAL) !== 0;
    const rel = s - this.zBase[z];
    return {
      slot: s,
      size: TLB_SIZES[z],
      set: Math.floor(rel / ways),
      way: rel % ways,
      pageShift: this.info[s],
      cachedShift: shift,
      page,
      vaHi: Math.floor(page / 2 ** 20),
      vaLo: ((page % 2 ** 20) * 4096) >>> 0,
      physical: this.fs[s * F_STRIDE],
      attrs: this.rights[s] | (global ? TLB_GLOBAL : 0),
      global,
      vpid: space & 0xffff,
      pcid: (t & TAG_PCID_MASK) >>> TAG_PCID_SHIFT,
      eptTag: space >>> 16,
    };
  }

  /** Calls `fn` for each filled entry (in no particular order). */
  forEach(fn: (e: TlbEntry) => void): void {
    for (let i = 0; i < this.inUse; i++) fn(this.decode(this.used[i]));
  }

  /** All filled entries, sorted by slot. */
  entries(): TlbEntry[] {
    const out: TlbEntry[] = [];
    for (let i = 0; i < this.inUse; i++) out.push(this.decode(this.used[i]));
    return out.sort((a, b) => a.slot - b.slot);
  }

  /**
   * The entry a lookup in the current context would match for this address, without
   * counting, without touching LRU state, and whatever the access rights; null if none.
   */
  peek(vaHi: number, vaLo: number): TlbEntry | null {
    const s = this.find(vaHi, vaLo);
    return s < 0 ? null : this.decode(s);
  }

  /**
   * Checks the internal invariants; returns a list of problems (empty when sound). For
   * tests and the MMUs' `check()`: the filled-slot list matches the tags, every entry sits
   * in the set its page number selects, its frame is aligned, its page shift fits its array,
   * and no two entries of one array answer the same lookup.
   */
  audit(): string[] {
    const problems: string[] = [];
    let filled = 0;
    const keys = new Set<string>();
    for (let s = 0; s < this.capacity; s++) {
      const t = this.ent[s * E_STRIDE + E_TAG];
      if (t === 0) continue;
      filled++;
      const e = this.decode(s);
      const p = this.usedPos[s];
      if (p >= this.inUse || this.used[p] !== s) problems.push(`slot ${s} is filled but not listed as used`);
      if ((t & TAG_VALID) === 0 || t >>> 27 !== 0) problems.push(`slot ${s}: bad tag 0x${t.toString(16)}`);
      const z = TLB_SIZES.indexOf(e.size);
      if ((this.ent[s * E_STRIDE + E_VPN] & this.zSetMask[z]) !== e.set)
        problems.push(`slot ${s} is in set ${e.set}, wrong for its page`);
      const okShift =
        z === 0
          ? e.pageShift === 12
          : z === 1
            ? e.pageShift === 21 || e.pageShift === 22
            : e.pageShift === 30;
      if (!okShift) problems.push(`slot ${s}: page shift ${e.pageShift} in the ${e.size} array`);
      if (e.physical % 2 ** e.cachedShift !== 0)
        problems.push(`slot ${s}: frame ${e.physical} is not aligned`);
      const key = `${z}:${e.page}:${this.ent[s * E_STRIDE + E_SPACE]}:${e.global ? "g" : e.pcid}`;
      if (keys.has(key)) problems.push(`slot ${s} duplicates another entry (${key})`);
      keys.add(key);
    }
    if (filled !== this.inUse) problems.push(`${filled} slots are filled but ${this.inUse} are listed`);
    for (let i = 0; i < this.inUse; i++)
      if (this.ent[this.used[i] * E_STRIDE + E_TAG] === 0)
        problems.push(`listed slot ${this.used[i]} is empty`);
    return problems;
  }

  /** Clears the counters (not the entries). */
  resetStats(): void {
    this.stats.reset();
  }
}

function checkRange(v: number, max: number, what: string): void {
  if (!Number.isInteger(v) || v < 0 || v > max)
    throw new RangeError(`${what} ${v} is not an integer in 0..0x${max.toString(16)}`);
}
