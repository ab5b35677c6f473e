/**
 * The shadow MMU (KVM-style transparent shadow paging): the host keeps the page tables the
 * hardware really walks, lazily filled from the guest's own tables, which it cannot trust
 * and must keep in step with.
 *
 * There are seven parts, in this order:
 *  (i)   roots: picking the shadow root for the guest's CR3 and paging mode, a small cache of
 *        recent roots so a context switch back costs no rebuild;
 *  (ii)  the page fault: walk the guest's tables; inject the guest's own fault, or link
 *        shadow pages level by level and set the leaf (with prefetch of the neighbours);
 *  (iii) write protection of guest page tables, emulation of the guest's writes to them,
 *        write-flood detection, and unsync pages resynchronised at CR3 load / INVLPG / flush;
 *  (iv)  zapping: shadow pages, entries, the reverse map (gfn → SPTEs), LRU reclaim under a bound;
 *  (v)   the world: memslot changes, MMU-notifier invalidations, dirty logging, aging;
 *  (vi)  MMIO entries stamped with the memslot generation;
 *  (vii) `check()`.
 *
 * Shadow tables are in the x86 long-mode format (4-level, or 5-level for LA57 guests) in host
 * memory. 32-bit guest tables (1024 four-byte entries) are shadowed by several 512-entry
 * pages ("quadrants"); a PAE or 32-bit guest gets a PAE-style root: a host PML4 whose first
 * entry points at a 4-entry PDPT standing for the guest's PDPTEs (or its page directory's
 * four gigabyte-quarters). Guest large pages are mapped with 4 KiB shadow entries through
 * "direct" shadow pages. The hardware runs with CR0.WP=1; a guest with WP=0 gets
 * supervisor-only writable entries for the supervisor writes WP=0 allows (KVM's trick).
 */

import { ACCESS_IMPLICIT, ACCESS_PERM_INDEX_MASK, ACCESS_USER, ACCESS_WRITE } from "../../arch/access.js";
import type { CpuRole } from "../../arch/cpu.js";
import type { PagingFormat } from "../../arch/format.js";
import type { HostMemory } from "../../mem/host-memory.js";
import { isDirty, type Memslot, markDirty } from "../../mem/memslots.js";
import { FAULT_GP, REASON_RESERVED, REASON_TABLE_NOT_RAM, Walk } from "../../walk/walk.js";
import type { GuestWalker } from "../../walk/walker.js";
import { clearDirtyRange, forEachDirtyRun, takeDirtyLog } from "../dirty-log.js";
import { type MemslotChange, MMU_MMIO, MMU_RETRY, type Mmu, type MmuHost, type MmuVcpu } from "../mmu.js";
import { ReverseMap } from "./rmap.js";
import {
  ACC_ALL,
  ACC_U,
  ACC_W,
  ACC_X,
  childRole,
  describeRole,
  ROLE_CPU_MASK,
  ROLE_DIRECT,
  ROLE_GPTE32,
  ROLE_NXE,
  ROLE_PAE_ROOT,
  ROLE_SMAP_ANDNOT_WP,
  ROLE_SMEP_ANDNOT_WP,
  ROLE_WP,
  roleAccess,
  roleLevel,
  roleQuadrant,
} from "./role.js";
import { ShadowPages, SP_ROOT, SP_UNSYNC } from "./shadow-pages.js";

/** The guest's own fault must be injected: `injectVector` / `injectErrorCode`. */
export const MMU_INJECT = 2;
/** A write to a write-protected guest page table: emulate it with `emulateWrite(emulateGpa)`. */
export const MMU_EMULATE = 3;

export interface ShadowMmuOptions {
  /** Most shadow pages kept; beyond it the least recently used are reclaimed (default 8192). */
  maxPages?: number;
  /** Let level-1 guest tables that the guest maps writable go unsync instead of trapping every write (default true). */
  unsync?: boolean;
  /** Map the neighbouring guest PTEs on a fault (default true). */
  prefetch?: boolean;
  /** Emulated writes to one shadowed table, without it being used, before it is unshadowed (default 3). */
  floodThreshold?: number;
  /** Unused roots kept for context switches (default 4; lguest keeps 4 pgdirs). */
  rootCache?: number;
  /**
   * Paravirtual (lguest-style) mode: the guest announces every page-table change with a
   * hypercall, so its tables are not write-protected and its writes never trap; a guest
   * that hands over a bad entry is stopped.
   */
  paravirt?: boolean;
}

/** A paravirtual guest's page-table hypercalls (lguest's LHCALL_SET_PTE, SET_PMD/SET_PGD, FLUSH_TLB...). */
export type PagingHypercall =
  | { kind: "set-entry"; tableGpa: number; index: number; level: number; lo: number; hi: number }
  | { kind: "release-table"; tableGpa: number }
  | { kind: "invlpg"; vaHi: number; vaLo: number }
  | { kind: "flush"; all: boolean };

/** Thrown (once recorded in `ShadowMmu.stopReason`) when a paravirtual guest breaks the rules. */
export class GuestStoppedError extends Error {
  override name = "GuestStoppedError";
}

/** What the shadow MMU needs from a vCPU. */
export interface ShadowVcpu extends MmuVcpu {
  readonly cpuRole: CpuRole;
  /** Walker over the guest's tables in guest memory, loaded with the guest's CR3 (and PDPTEs); null with paging off. */
  readonly guestWalker: GuestWalker | null;
  readonly currentCr3: bigint;
  /** Set by the MMU: the shadow root (host frame and page id) the hardware walks. */
  shadowRootHfn: number;
  shadowRootId: number;
  /** Whether the last root load architecturally flushes the TLB (a MOV CR3 without the no-flush bit). */
  readonly rootLoadFlushes: boolean;
}

// Shadow entry bits (x86 long-mode format).
const P = 1;
const RW = 2;
const US = 4;
const A = 0x20;
const D = 0x40;
const XD_HI = 0x80000000;
const PK_MASK_HI = 0x78000000;
/** Non-present MMIO marker: bits 11:10 set with P clear; generation in bits 9:1 and 60:52. */
const MMIO_MARK = 0xc00;
const GEN_BITS = 18;

const NON_LEAF_LO = P | RW | US | A;

export class ShadowMmu implements Mmu {
  readonly kind: "shadow" | "shadow-pv";
  /** Why a paravirtual guest was stopped (null while it runs). */
  stopReason: string | null = null;
  readonly pages = new ShadowPages();
  readonly stats = {
    faults: 0,
    injected: 0,
    mmio: 0,
    mmioFast: 0,
    mmioStale: 0,
    emulatedWrites: 0,
    floodUnshadows: 0,
    pagesCreated: 0,
    pagesZapped: 0,
    reclaimed: 0,
    leavesInstalled: 0,
    prefetched: 0,
    unsynced: 0,
    synced: 0,
    syncZaps: 0,
    rootHits: 0,
    rootBuilds: 0,
    invlpgZaps: 0,
    flushes: 0,
    writeProtected: 0,
    hypercalls: 0,
  };
  /** Results of the last fault. */
  mmioGpa = 0;
  emulateGpa = 0;
  injectVector = 0;
  injectErrorCode = 0;

  private readonly maxPages: number;
  private readonly unsyncOn: boolean;
  private readonly prefetchOn: boolean;
  private readonly floodThreshold: number;
  private readonly rootCacheSize: number;
  private readonly paravirt: boolean;
  /** gfn → host addresses of leaf SPTEs mapping it. */
  private readonly rmap = new ReverseMap();
  /** Roots no vCPU uses, most recent last. */
  private readonly cachedRoots: number[] = [];
  private readonly w = new Walk();
  private readonly host: HostMemory;
  private readonly unlisten: () => void;
  private currentVcpu = -1;
  private faultClock = 0;

  constructor(
    private readonly vm: MmuHost,
    o: ShadowMmuOptions = {},
  ) {
    this.host = vm.host;
    this.maxPages = o.maxPages ?? 8192;
    if (!Number.isInteger(this.maxPages) || this.maxPages < 8)
      throw new RangeError(`maxPages ${this.maxPages} must be an integer of at least 8`);
    this.unsyncOn = o.unsync ?? true;
    this.prefetchOn = o.prefetch ?? true;
    this.floodThreshold = o.floodThreshold ?? 3;
    this.rootCacheSize = o.rootCache ?? 4;
    this.paravirt = o.paravirt ?? false;
    this.kind = this.paravirt ? "shadow-pv" : "shadow";
    this.unlisten = vm.hostSpace.onInvalidate((first, count) => this.hostInvalidate(first, count));
  }

  get tableFrames(): number {
    return this.pages.count;
  }

  // ---------------------------------------------------------------------------------------
  // (i) Roots

  /** Picks the shadow root for the vCPU's current guest CR3 and mode. */
  loadRoot(vcpu: MmuVcpu): void {
    const v = vcpu as ShadowVcpu;
    this.currentVcpu = v.id;
    // A flushing CR3 load is when the guest expects its table changes to be seen: resync.
    if (v.rootLoadFlushes) this.syncAll(v.cpuRole.format);
    const role = v.cpuRole;
    const cpuBits = this.cpuBits(role);
    let gfn: number;
    let rootRole: number;
    if (role.mode === "none") {
      gfn = 0;
      rootRole = childRole(cpuBits, 4, ACC_ALL, 0, true);
    } else if (role.mode === "pae" || role.mode === "32bit") {
      gfn = Number(v.currentCr3 >> 12n) & 0xfffff;
      rootRole = cpuBits | ROLE_PAE_ROOT | 4;
    } else {
      gfn = Number((v.currentCr3 & 0xffffffffff000n) >> 12n);
      rootRole = childRole(cpuBits, role.mode === "5level" ? 5 : 4, ACC_ALL, 0, false);
    }
    let id = this.pages.find(gfn, rootRole);
    if (id >= 0) {
      this.stats.rootHits++;
      const k = this.cachedRoots.indexOf(id);
      if (k >= 0) this.cachedRoots.splice(k, 1);
    } else {
      this.stats.rootBuilds++;
      id = this.newPage(gfn, rootRole);
      this.pages.flags[id] |= SP_ROOT;
      // A shadowed guest root is a guest page table like any other: write-protect it.
      if (!(rootRole & (ROLE_DIRECT | ROLE_PAE_ROOT)) && this.writeProtectGfn(gfn)) this.flush();
    }
    if (v.shadowRootId !== id) {
      this.pages.rootRefs[id]++;
      if (v.shadowRootId >= 0) this.releaseRoot(v.shadowRootId);
    }
    this.pages.touch(id);
    if (rootRole & ROLE_PAE_ROOT) this.refreshPaeRoot(id, v);
    v.shadowRootId = id;
    v.shadowRootHfn = this.pages.hfn[id];
  }

  private releaseRoot(id: number): void {
    if (--this.pages.rootRefs[id] > 0) return;
    this.cachedRoots.push(id);
    while (this.cachedRoots.length > this.rootCacheSize) this.zapPage(this.cachedRoots.shift()!);
  }

  /**
   * A PAE-style root: PML4[0] → a PDPT page whose entry i points at the shadow of the
   * guest's PD i (PAE: from the PDPTE registers; 32-bit: quarter i of the guest's PD).
   */
  private refreshPaeRoot(rootId: number, v: ShadowVcpu): void {
    const cpuBits = this.pages.role[rootId] & ~(ROLE_PAE_ROOT | 7);
    const pdptId = this.ensureChild(rootId, 0, this.pages.gfn[rootId], cpuBits | ROLE_PAE_ROOT | 3);
    this.pages.touch(pdptId);
    const gw = v.guestWalker!;
    const mode = v.cpuRole.mode;
    for (let i = 0; i < 4; i++) {
      const entry = this.pages.hfn[pdptId] * 4096 + i * 8;
      let pd: number;
      if (mode === "32bit")
        pd = this.ensureChild(pdptId, i, gw.rootGfn, childRole(cpuBits, 2, ACC_ALL, i, false));
      else {
        const lo = gw.pdpte[i * 2];
        const hi = gw.pdpte[i * 2 + 1];
        if ((lo & P) === 0) {
          this.clearEntry(entry, 3);
          continue;
        }
        pd = this.ensureChild(
          pdptId,
          i,
          (hi & 0xfffff) * 0x100000 + (lo >>> 12),
          childRole(cpuBits, 2, ACC_ALL, 0, false),
        );
      }
      // Mark each PD as used by this fault / root load: otherwise creating PD i+1 under a
      // tight page bound could reclaim PD i just linked, and the fault that follows found no
      // PD for a walk the guest allowed ("internal: PAE shadow root has no PD").
      if (pd >= 0) this.pages.touch(pd);
    }
  }

  private cpuBits(role: CpuRole): number {
    return (
      (role.mode === "32bit" ? ROLE_GPTE32 : 0) |
      (role.wp ? ROLE_WP : 0) |
      (role.smep && !role.wp ? ROLE_SMEP_ANDNOT_WP : 0) |
      (role.smap && !role.wp ? ROLE_SMAP_ANDNOT_WP : 0) |
      (role.nxe ? ROLE_NXE : 0)
    );
  }

  // ---------------------------------------------------------------------------------------
  // (ii) The page fault

  /**
   * A #PF the hardware raised walking the shadow tables at linear (vaHi, vaLo) for `access`.
   * Returns MMU_RETRY, MMU_INJECT (injectVector/injectErrorCode), MMU_MMIO (mmioGpa) or
   * MMU_EMULATE (emulateGpa).
   */
  pageFault(vcpu: ShadowVcpu, vaHi: number, vaLo: number, access: number): number {
    this.currentVcpu = vcpu.id;
    this.faultClock = this.pages.lastUse[vcpu.shadowRootId];
    this.stats.faults++;
    try {
      return this.fault(vcpu, vaHi, vaLo, access);
    } finally {
      this.currentVcpu = -1;
    }
  }

  private fault(v: ShadowVcpu, vaHi: number, vaLo: number, access: number): number {
    // MMIO fast path: a cached MMIO entry of the current generation.
    // (Only once an MMIO entry was ever made: until then there is nothing to find.)
    const mmio = this.mmioSeen ? this.lookupMmio(v, vaHi, vaLo, access) : -1;
    if (mmio >= 0) {
      this.stats.mmioFast++;
      this.mmioGpa = mmio * 4096 + (vaLo & 0xfff);
      return MMU_MMIO;
    }
    const w = this.w;
    const gw = v.guestWalker;
    let gfn: number;
    if (gw === null) {
      gfn = vaLo >>> 12; // paging off: linear = guest-physical (32 bits)
      w.depth = 0;
    } else {
      // The guest's own walk, setting its accessed/dirty bits as the hardware would.
      if (!gw.walk(vaHi, vaLo, access, w)) {
        // lguest does not accept tables outside the guest's memory or with reserved bits:
        // the guest is stopped, not given a fault it could misuse.
        if (this.paravirt && (w.reason === REASON_TABLE_NOT_RAM || w.reason === REASON_RESERVED))
          this.stop(
            `bad page-table entry at level ${w.faultLevel} for 0x${vaHi.toString(16)}${(vaLo >>> 0).toString(16).padStart(8, "0")} (${w.reason === REASON_RESERVED ? "reserved bits" : "points outside guest memory"})`,
          );
        this.stats.injected++;
        this.injectVector = w.fault === FAULT_GP ? 13 : 14;
        this.injectErrorCode = w.errorCode;
        return MMU_INJECT;
      }
      gfn = Math.floor(w.address / 4096);
    }
    const slot = this.vm.memslots.find(gfn);
    const write = (access & ACCESS_WRITE) !== 0;
    if (write && slot?.flags.readOnly) {
      this.mmioGpa = gfn * 4096 + (vaLo & 0xfff);
      this.stats.mmio++;
      return MMU_MMIO;
    }
    return this.fetch(v, vaHi, vaLo, access, gfn, slot);
  }

  /** Links shadow pages from the root down along the guest walk in `this.w` and sets the leaf. */
  private fetch(
    v: ShadowVcpu,
    vaHi: number,
    vaLo: number,
    access: number,
    gfn: number,
    slot: Memslot | undefined,
  ): number {
    const w = this.w;
    const role = v.cpuRole;
    const pages = this.pages;
    let id = v.shadowRootId;
    if (pages.role[id] & ROLE_PAE_ROOT) {
      // Re-link the PDPT if a zap cleared it since the root was loaded.
      this.refreshPaeRoot(id, v);
      const pdpt = this.childOf(id, 0);
      id = this.childOf(pdpt, vaLo >>> 30);
      if (id < 0) throw new Error("internal: PAE shadow root has no PD for a walk the guest allowed");
    }
    let access2 = ACC_ALL;
    const xdMask = role.nxe ? XD_HI : 0;
    for (;;) {
      pages.touch(id);
      const r = pages.role[id];
      const level = roleLevel(r);
      const index = shadowIndex(vaHi, vaLo, level);
      if (level === 1) {
        // The leaf's rights: the guest PTE's folded in, or the direct page's (a guest large page).
        if (r & ROLE_DIRECT) access2 = roleAccess(r);
        else if (w.depth > 0) {
          const lo = w.lo[w.depth - 1];
          const hi = w.hi[w.depth - 1];
          access2 &= (lo & RW ? ACC_W : 0) | (lo & US ? ACC_U : 0) | ((hi & xdMask) === 0 ? ACC_X : 0);
        }
        return this.setLeaf(v, id, index, access, gfn, vaLo & 0xfff, slot, access2);
      }
      let childGfn: number;
      let childR: number;
      if (r & ROLE_DIRECT) {
        childGfn = pages.gfn[id] + index * 512 ** (level - 1);
        childR = childRole(r & ROLE_CPU_MASK, level - 1, roleAccess(r), 0, true);
      } else {
        // The guest entry for this level, from the walk.
        let p = 0;
        while (p < w.depth && w.level[p] !== level) p++;
        const lo = w.lo[p];
        const hi = w.hi[p];
        access2 &= (lo & RW ? ACC_W : 0) | (lo & US ? ACC_U : 0) | ((hi & xdMask) === 0 ? ACC_X : 0) | 0;
        const cpu = r & ROLE_CPU_MASK;
        if (p === w.depth - 1) {
          // A guest large page: this entry's range of it is shadowed by a direct page.
          const accessGfn = Math.floor(w.address / 4096);
          childGfn = accessGfn - (accessGfn % 512 ** (level - 1));
          // A clean guest large page gives no write access (KVM's protect_clean_gpte): the
          // direct page is shared by every guest mapping of the range with the same role, and
          // a writable entry made through a dirty mapping let writes through a clean one (in
          // another address space) skip setting that mapping's D bit. The first write faults,
          // the walk sets D, and the mapping moves to the writable direct page.
          childR = childRole(cpu, level - 1, w.newLo[p] & D ? access2 : access2 & ~ACC_W, 0, true);
        } else {
          childGfn = (hi & 0xfffff) * 0x100000 + (lo >>> 12);
          // A 32-bit guest PDE covers two shadow PDEs; each takes one half of the guest PT.
          childR = childRole(cpu, level - 1, access2, r & ROLE_GPTE32 && level === 2 ? index & 1 : 0, false);
        }
      }
      const child = this.ensureChild(id, index, childGfn, childR);
      if (child < 0) return MMU_RETRY; // reclaim raced with this walk's own pages: start over
      id = child;
    }
  }

  /** Sets the level-1 entry `index` of page `id` for the faulting access to guest frame `gfn`. */
  private setLeaf(
    v: ShadowVcpu,
    id: number,
    index: number,
    access: number,
    gfn: number,
    offset: number,
    slot: Memslot | undefined,
    acc: number,
  ): number {
    const entry = this.pages.hfn[id] * 4096 + index * 8;
    if (slot === undefined) {
      this.setMmio(entry, gfn, this.w.depth > 0 ? this.w.effective : 7);
      this.mmioGpa = gfn * 4096 + offset;
      this.stats.mmio++;
      return MMU_MMIO;
    }
    const w = this.w;
    const role = v.cpuRole;
    const write = (access & ACCESS_WRITE) !== 0;
    const leafLo = w.depth > 0 ? w.newLo[w.depth - 1] : D;
    const pkey = w.depth > 0 && (role.pke || role.pks) ? (w.hi[w.depth - 1] & PK_MASK_HI) >>> 0 : 0;
    let acc2 = acc;
    if (w.depth === 0) acc2 = ACC_ALL;
    // CR0.WP=0: a supervisor write to a read-only page is allowed; the hardware runs with WP=1,
    // so map it writable but supervisor-only (and not executable under SMEP, which would
    // otherwise start applying to what is now a supervisor page... KVM's rule).
    const supervisorAccess = (access & (ACCESS_USER | ACCESS_IMPLICIT)) !== ACCESS_USER;
    if (!role.wp && write && supervisorAccess && (acc2 & ACC_W) === 0) {
      acc2 = (acc2 | ACC_W) & ~ACC_U;
      if (role.smep) acc2 &= ~ACC_X;
    }
    // Writable only if the guest allows it, the guest's D is set (dirty-bit emulation: the
    // first write must trap to set it), the page is not a guest page table we track, and
    // dirty logging has recorded it.
    let writable = (acc2 & ACC_W) !== 0 && (leafLo & D) !== 0 && !slot.flags.readOnly;
    if (writable && this.isTracked(gfn)) {
      if (!this.tryUnsync(gfn)) writable = false;
    }
    if (writable && slot.dirtyBitmap !== null) {
      if (write) markDirty(slot, gfn);
      else if (!isDirty(slot, gfn)) writable = false;
    }
    const hfn = this.vm.hostSpace.frameOf(slot.hvaPage + (gfn - slot.baseGfn));
    this.installLeaf(entry, gfn, hfn, writable, (acc2 & ACC_U) !== 0, (acc2 & ACC_X) !== 0, pkey);
    this.stats.leavesInstalled++;
    if (this.prefetchOn && !(this.pages.role[id] & ROLE_DIRECT)) this.prefetch(v, id, index);
    if (write && !writable && (acc2 & ACC_W) !== 0 && !slot.flags.readOnly && this.isTracked(gfn)) {
      // A write to a guest page table we shadow: emulate it.
      this.emulateGpa = gfn * 4096 + offset;
      return MMU_EMULATE;
    }
    return MMU_RETRY;
  }

  private installLeaf(
    entry: number,
    gfn: number,
    hfn: number,
    writable: boolean,
    user: boolean,
    exec: boolean,
    pkeyHi: number,
  ): void {
    const old = this.readEntry(entry);
    if ((old[0] & P) !== 0) this.dropLeaf(entry, old[0], old[1]);
    const lo = P | A | (writable ? RW | D : 0) | (user ? US : 0) | ((hfn % 0x100000) << 12);
    const hi = Math.floor(hfn / 0x100000) | (exec ? 0 : XD_HI) | pkeyHi;
    this.writeEntry(entry, lo >>> 0, hi >>> 0);
    this.rmap.add(gfn, entry);
  }

  /** Whether host frame `hfn` is what backs guest frame `gfn` now. */
  private mapsFrameOf(gfn: number, hfn: number): boolean {
    const slot = this.vm.memslots.find(gfn);
    return slot !== undefined && this.vm.hostSpace.peek(slot.hvaPage + (gfn - slot.baseGfn)) === hfn;
  }

  /**
   * The guest frames a host frame backs (through the VMM address space and the memslots;
   * usually one, more if two memslots alias one host range). This is how a leaf entry, which
   * holds only the host frame, finds its reverse-map list without a per-entry record.
   */
  private gfnsOfFrame(hfn: number): number[] {
    const hva = this.vm.hostSpace.hvaPageOf(hfn);
    const out: number[] = [];
    if (hva < 0) return out;
    for (const s of this.vm.memslots.list())
      if (hva >= s.hvaPage && hva < s.hvaPage + s.pages) out.push(s.baseGfn + (hva - s.hvaPage));
    return out;
  }

  /** Maps the guest PTEs around `index` that are present and accessed (KVM's pte prefetch). */
  private prefetch(v: ShadowVcpu, id: number, index: number): void {
    const pages = this.pages;
    const r = pages.role[id];
    const gpte32 = (r & ROLE_GPTE32) !== 0;
    const es = gpte32 ? 4 : 8;
    const firstGuestIndex = gpte32 ? roleQuadrant(r) * 512 : 0;
    const acc = roleAccess(r);
    const xdMask = v.cpuRole.nxe ? XD_HI : 0;
    const fmt = v.cpuRole.format!;
    const start = index & ~7;
    // Both tables are read as words directly: one frame lookup each, not one per entry.
    const host = this.host;
    const sWords = host.frameWords(pages.hfn[id])!;
    const sBase = host.frameBase;
    const phys = this.vm.physical;
    const gWords = phys.frameWords(pages.gfn[id]);
    if (gWords === null) return;
    const gBase = phys.frameBase + ((firstGuestIndex * es) >>> 2);
    for (let i = start; i < start + 8; i++) {
      if (i === index) continue;
      const entry = pages.hfn[id] * 4096 + i * 8;
      if ((sWords[sBase + i * 2] & (P | MMIO_MARK)) !== 0) continue;
      this.gLo = gWords[gBase + ((i * es) >>> 2)];
      this.gHi = es === 8 ? gWords[gBase + i * 2 + 1] : 0;
      const lo = this.gLo;
      const hi = this.gHi;
      // Only present, accessed entries without reserved bits (those must fault when used).
      if ((lo & (P | A)) !== (P | A) || (lo & fmt.rsvdLo[3]) !== 0 || (hi & fmt.rsvdHi[3]) !== 0) continue;
      const gfn = gpte32 ? lo >>> 12 : (hi & 0xfffff) * 0x100000 + (lo >>> 12);
      const slot = this.vm.memslots.find(gfn);
      if (!slot || (!gpte32 && (hi & XD_HI) !== 0 && xdMask === 0)) continue;
      const a = acc & ((lo & RW ? ACC_W : 0) | (lo & US ? ACC_U : 0) | ((hi & xdMask) === 0 ? ACC_X : 0));
      const writable =
        (a & ACC_W) !== 0 &&
        (lo & D) !== 0 &&
        !slot.flags.readOnly &&
        !this.isTracked(gfn) &&
        (slot.dirtyBitmap === null || isDirty(slot, gfn));
      const pkey = v.cpuRole.pke || v.cpuRole.pks ? (hi & PK_MASK_HI) >>> 0 : 0;
      this.installLeaf(
        entry,
        gfn,
        this.vm.hostSpace.frameOf(slot.hvaPage + (gfn - slot.baseGfn)),
        writable,
        (a & ACC_U) !== 0,
        (a & ACC_X) !== 0,
        pkey,
      );
      this.stats.prefetched++;
    }
  }

  // ---------------------------------------------------------------------------------------
  // (iii) Write protection, emulation, flooding, unsync

  /** A guest frame is write-tracked while a synced, indirect shadow page shadows it. */
  private isTracked(gfn: number): boolean {
    if (this.paravirt) return false; // the guest tells us about every change: nothing to trap
    const pages = this.pages;
    for (let id = pages.first(gfn); id >= 0; id = pages.sameGfn[id])
      if ((pages.role[id] & (ROLE_DIRECT | ROLE_PAE_ROOT)) === 0 && !(pages.flags[id] & SP_UNSYNC))
        return true;
    return false;
  }

  /** Lets the guest write `gfn` directly if it only holds level-1 tables (they go unsync). */
  private tryUnsync(gfn: number): boolean {
    if (!this.unsyncOn) return false;
    const list = this.pages.idsOf(gfn);
    for (const id of list) {
      const r = this.pages.role[id];
      if ((r & (ROLE_DIRECT | ROLE_PAE_ROOT)) === 0 && roleLevel(r) !== 1) return false;
    }
    for (const id of list)
      if (
        (this.pages.role[id] & (ROLE_DIRECT | ROLE_PAE_ROOT)) === 0 &&
        !(this.pages.flags[id] & SP_UNSYNC)
      ) {
        this.pages.flags[id] |= SP_UNSYNC;
        this.stats.unsynced++;
      }
    return true;
  }

  /**
   * Emulates the guest's write of `bytes` at `gpa`, a frame holding a guest page table we
   * shadow: writes guest memory, then drops the shadow entries derived from the guest entries
   * the write touched (they refault from the new values). Repeated writes to a table the guest
   * does not use as one (a page that was a table and is now data) unshadow it.
   */
  emulateWrite(vcpu: MmuVcpu, gpa: number, bytes: Uint8Array): "ok" | "mmio" | "readonly" {
    this.currentVcpu = vcpu.id;
    this.stats.emulatedWrites++;
    const status = this.guestPhysical().writeBytes(gpa, bytes);
    if (status !== "ok") return status;
    let flush = false;
    const gfn = Math.floor(gpa / 4096);
    const off = gpa % 4096;
    for (const id of this.pages.idsOf(gfn)) {
      const r = this.pages.role[id];
      if (r & (ROLE_DIRECT | ROLE_PAE_ROOT)) continue;
      if (++this.pages.flood[id] >= this.floodThreshold && !(this.pages.flags[id] & SP_ROOT)) {
        this.stats.floodUnshadows++;
        this.zapPage(id);
        flush = true;
        continue;
      }
      const es = r & ROLE_GPTE32 ? 4 : 8;
      for (let g = Math.floor(off / es); g <= Math.floor((off + bytes.length - 1) / es); g++)
        for (const i of this.shadowIndicesOf(r, g))
          if (this.clearEntry(this.pages.hfn[id] * 4096 + i * 8, roleLevel(r))) flush = true;
    }
    if (flush) this.flush();
    this.currentVcpu = -1;
    return "ok";
  }

  /** The shadow entry indices of page role `r` derived from guest entry `g` of its guest table. */
  private shadowIndicesOf(r: number, g: number): number[] {
    if (!(r & ROLE_GPTE32)) return [g];
    const q = roleQuadrant(r);
    if (roleLevel(r) === 1) return g >= q * 512 && g < q * 512 + 512 ? [g - q * 512] : [];
    return g >= q * 256 && g < q * 256 + 256 ? [2 * (g - q * 256), 2 * (g - q * 256) + 1] : [];
  }

  /** INVLPG: the guest says the translation of one page changed; drop its shadow entry. */
  invalidatePage(vcpu: MmuVcpu, vaHi: number, vaLo: number): void {
    const v = vcpu as ShadowVcpu;
    this.currentVcpu = v.id;
    const e = this.walkShadow(v.shadowRootId, vaHi, vaLo);
    if (e >= 0 && this.clearEntry(e, 1)) {
      this.stats.invlpgZaps++;
      this.flush();
    }
    this.currentVcpu = -1;
  }

  /** The guest flushed its TLB (MOV CR3 without no-flush, CR4 changes, INVPCID all): resync. */
  flushGuestTlb(vcpu: MmuVcpu): void {
    this.currentVcpu = vcpu.id;
    this.syncAll((vcpu as ShadowVcpu).cpuRole.format);
    this.currentVcpu = -1;
  }

  /** Brings every unsync page back in step with its guest table and write-protects it again. */
  private syncAll(fmt: PagingFormat | null): void {
    const pages = this.pages;
    let flush = false;
    for (const id of [...pages.ids()]) {
      if (!(pages.flags[id] & SP_UNSYNC)) continue;
      const r = pages.role[id];
      const gpte32 = (r & ROLE_GPTE32) !== 0;
      const es = gpte32 ? 4 : 8;
      const first = gpte32 ? roleQuadrant(r) * 512 : 0;
      const acc = roleAccess(r);
      for (let i = 0; i < 512; i++) {
        const entry = pages.hfn[id] * 4096 + i * 8;
        const [slo, shi] = this.readEntry(entry);
        if ((slo & P) === 0) continue;
        const inRam = this.readGuestEntry(pages.gfn[id] * 4096 + (first + i) * es, es);
        const lo = this.gLo;
        const hi = this.gHi;
        const gfn = gpte32 ? lo >>> 12 : (hi & 0xfffff) * 0x100000 + (lo >>> 12);
        const ok =
          inRam &&
          fmt !== null &&
          (lo & P) !== 0 &&
          // A guest entry whose A bit the guest cleared (aging) must fault again so the next
          // use sets it: keeping the SPTE hid every later access from the guest's A bit
          // (KVM's sync drops non-accessed gptes too, FNAME(prefetch_invalid_gpte)).
          (lo & A) !== 0 &&
          (lo & fmt.rsvdLo[3]) === 0 &&
          (hi & fmt.rsvdHi[3]) === 0 &&
          this.mapsFrameOf(gfn, frameOf(slo, shi)) &&
          (!(slo & RW) || ((lo & RW) !== 0 && (lo & D) !== 0 && (acc & ACC_W) !== 0)) &&
          (!(slo & US) || (lo & US) !== 0) &&
          ((shi & XD_HI) !== 0 || gpte32 || (hi & XD_HI) === 0);
        if (!ok) {
          this.clearEntry(entry, 1);
          this.stats.syncZaps++;
          flush = true;
        }
      }
      pages.flags[id] &= ~SP_UNSYNC;
      this.stats.synced++;
      if (this.writeProtectGfn(pages.gfn[id])) flush = true;
    }
    if (flush) this.flush();
  }

  /** Makes every leaf mapping `gfn` read-only; returns whether one was writable. */
  private writeProtectGfn(gfn: number): boolean {
    let changed = false;
    for (const entry of this.rmap.entriesOf(gfn)) {
      const [lo, hi] = this.readEntry(entry);
      if (lo & RW) {
        this.writeEntry(entry, (lo & ~(RW | D)) >>> 0, hi);
        this.stats.writeProtected++;
        changed = true;
      }
    }
    return changed;
  }

  // ---------------------------------------------------------------------------------------
  // (iii b) Paravirtual hypercalls (lguest)

  /**
   * A paravirtual guest's page-table hypercall. The guest has already written its own
   * table; the host checks the entry (like lguest's check_gpte/check_gpgd: nothing outside
   * guest memory, no reserved bits) and drops the shadow entries derived from it, in every
   * cached root (kernel mappings live in all of them). A bad entry stops the guest.
   */
  hypercall(vcpu: ShadowVcpu, call: PagingHypercall): void {
    if (!this.paravirt)
      throw new RangeError('page-table hypercalls need the paravirtual shadow MMU (mmu: "shadow-pv")');
    if (this.stopReason !== null) throw new GuestStoppedError(`guest stopped: ${this.stopReason}`);
    this.currentVcpu = vcpu.id;
    this.stats.hypercalls++;
    try {
      switch (call.kind) {
        case "set-entry":
          this.hcSetEntry(vcpu, call);
          return;
        case "release-table": {
          let flush = false;
          for (const id of this.pages.idsOf(Math.floor(call.tableGpa / 4096)))
            if (!(this.pages.role[id] & (ROLE_DIRECT | ROLE_PAE_ROOT)) && this.pages.rootRefs[id] === 0) {
              this.zapPage(id);
              flush = true;
            }
          if (flush) this.flush();
          return;
        }
        case "invlpg":
          this.invalidatePage(vcpu, call.vaHi, call.vaLo);
          return;
        case "flush": {
          // lguest's FLUSH_TLB: drop the user mappings of the current root (all mappings for
          // a global flush); they refault from the guest's tables.
          const root = vcpu.shadowRootId;
          if (root >= 0) {
            const level = roleLevel(this.pages.role[root]);
            const userEntries = call.all || level < 4 ? 512 : 256;
            let flush = false;
            for (let i = 0; i < userEntries; i++)
              if (this.clearEntry(this.pages.hfn[root] * 4096 + i * 8, level)) flush = true;
            if (flush) this.flush();
          }
          return;
        }
      }
    } finally {
      this.currentVcpu = -1;
    }
  }

  private hcSetEntry(v: ShadowVcpu, c: Extract<PagingHypercall, { kind: "set-entry" }>): void {
    const fmt = v.cpuRole.format;
    if (fmt === null) this.stop("page-table hypercall with paging off");
    const f = fmt!;
    if (
      !Number.isInteger(c.level) ||
      c.level < 1 ||
      c.level > f.levels ||
      !Number.isInteger(c.index) ||
      c.index < 0 ||
      c.index >= (f.entryBytes === 4 ? 1024 : 512)
    )
      this.stop(`set-entry hypercall with level ${c.level}, index ${c.index}`);
    if (c.lo & P) {
      const leaf = c.level === 1 || ((f.largeLevels >>> c.level) & 1 & (c.lo >>> 7)) !== 0;
      const k = c.level * 2 + (leaf ? 1 : 0);
      if ((c.lo & f.rsvdLo[k]) !== 0 || (c.hi & f.rsvdHi[k]) !== 0)
        this.stop(
          `set-entry hypercall: entry 0x${(c.hi >>> 0).toString(16)}${(c.lo >>> 0).toString(16).padStart(8, "0")} has reserved bits set`,
        );
      const frame = f.entryBytes === 4 ? c.lo >>> 12 : (c.hi & 0xfffff) * 0x100000 + (c.lo >>> 12);
      const first = leaf && c.level > 1 ? frame - (frame % 512 ** (c.level - 1)) : frame;
      if (this.vm.memslots.find(first) === undefined)
        this.stop(`set-entry hypercall: entry points at gfn 0x${first.toString(16)}, outside guest memory`);
    }
    const gfn = Math.floor(c.tableGpa / 4096);
    let flush = false;
    for (const id of this.pages.idsOf(gfn)) {
      const r = this.pages.role[id];
      if (r & (ROLE_DIRECT | ROLE_PAE_ROOT)) continue;
      for (const i of this.shadowIndicesOf(r, c.index))
        if (this.clearEntry(this.pages.hfn[id] * 4096 + i * 8, roleLevel(r))) flush = true;
    }
    if (flush) this.flush();
  }

  private stop(reason: string): never {
    this.stopReason = reason;
    throw new GuestStoppedError(`guest stopped: ${reason}`);
  }

  // ---------------------------------------------------------------------------------------
  // (iv) Shadow pages and zapping

  /** The child linked from entry `index` of page `id` for (gfn, role), created or relinked as needed. */
  private ensureChild(id: number, index: number, gfn: number, role: number): number {
    const entry = this.pages.hfn[id] * 4096 + index * 8;
    const [lo, hi] = this.readEntry(entry);
    let child = this.pages.find(gfn, role);
    if (child >= 0 && (lo & P) !== 0 && frameOf(lo, hi) === this.pages.hfn[child]) return child;
    const level = roleLevel(this.pages.role[id]);
    // Replacing a link (a direct page for a guest large page whose D bit got set, below)
    // drops translations the TLBs may hold: flush, as KVM's validate_direct_spte does.
    if ((lo & (P | MMIO_MARK)) !== 0 && this.clearEntry(entry, level)) this.flush();
    if (child < 0) {
      child = this.newPage(gfn, role);
      if (child < 0) return -1;
      // A new shadow of a guest table: that table must now be write-protected everywhere.
      if (!(role & ROLE_DIRECT) && !(role & ROLE_PAE_ROOT) && this.writeProtectGfn(gfn)) this.flush();
    }
    // The page may have been reclaimed while making room for the child.
    if (!(this.pages.flags[id] & 1)) return -1;
    this.writeEntry(
      entry,
      (NON_LEAF_LO | ((this.pages.hfn[child] % 0x100000) << 12)) >>> 0,
      Math.floor(this.pages.hfn[child] / 0x100000),
    );
    this.pages.addParent(child, entry);
    return child;
  }

  private childOf(id: number, index: number): number {
    const [lo, hi] = this.readEntry(this.pages.hfn[id] * 4096 + index * 8);
    if ((lo & P) === 0) return -1;
    return this.pages.idOfFrame(frameOf(lo, hi));
  }

  private newPage(gfn: number, role: number): number {
    if (this.pages.count >= this.maxPages) this.reclaim();
    const hfn = this.host.alloc();
    this.stats.pagesCreated++;
    return this.pages.allocate(gfn, role, hfn);
  }

  /** Frees the least recently used pages not in use as a root and not part of the current fault. */
  private reclaim(): void {
    const pages = this.pages;
    while (pages.count >= this.maxPages) {
      let victim = -1;
      let oldest = Number.POSITIVE_INFINITY;
      for (const id of pages.ids()) {
        if (pages.rootRefs[id] > 0 || pages.lastUse[id] > this.faultClock) continue;
        if (pages.lastUse[id] < oldest) {
          oldest = pages.lastUse[id];
          victim = id;
        }
      }
      if (victim < 0) return; // everything is in use: go over the bound rather than fail
      const k = this.cachedRoots.indexOf(victim);
      if (k >= 0) this.cachedRoots.splice(k, 1);
      this.stats.reclaimed++;
      this.zapPage(victim);
      this.flush();
    }
  }

  /** Unlinks and frees a shadow page and every child left without a parent. */
  private zapPage(id: number): void {
    const pages = this.pages;
    if (!(pages.flags[id] & 1)) return;
    for (const parentEntry of pages.parents(id)) this.writeEntry(parentEntry, 0, 0);
    pages.parent[id] = -1;
    pages.moreParents.delete(id);
    const level = roleLevel(pages.role[id]);
    for (let i = 0; i < 512; i++) this.clearEntry(pages.hfn[id] * 4096 + i * 8, level);
    const k = this.cachedRoots.indexOf(id);
    if (k >= 0) this.cachedRoots.splice(k, 1);
    this.host.put(pages.hfn[id]);
    pages.release(id);
    this.stats.pagesZapped++;
  }

  /**
   * Clears one shadow entry of a page at `level`: a leaf leaves the reverse map; a link
   * leaves the child's parent list (and frees the child if that was its last parent).
   * Returns whether a present translation was removed.
   */
  private clearEntry(entry: number, level: number): boolean {
    const [lo, hi] = this.readEntry(entry);
    if ((lo & P) === 0) {
      if (lo & MMIO_MARK) this.writeEntry(entry, 0, 0);
      return false;
    }
    this.writeEntry(entry, 0, 0);
    if (level === 1) this.dropLeaf(entry, lo, hi);
    else {
      const child = this.pages.idOfFrame(frameOf(lo, hi));
      if (child >= 0) {
        this.pages.removeParent(child, entry);
        if (this.pages.parent[child] === -1 && !(this.pages.flags[child] & SP_ROOT)) this.zapPage(child);
      }
    }
    return true;
  }

  private dropLeaf(entry: number, lo: number, hi: number): void {
    for (const gfn of this.gfnsOfFrame(frameOf(lo, hi))) if (this.rmap.remove(gfn, entry)) return;
  }

  /** Drops every leaf mapping a gfn in [first, first + count); returns whether any was present. */
  private zapGfns(first: number, count: number): boolean {
    let any = false;
    if (count > this.rmap.size) {
      for (const gfn of this.rmap.gfns())
        if (gfn >= first && gfn < first + count) any = this.zapRmap(gfn) || any;
    } else for (let g = first; g < first + count; g++) any = this.zapRmap(g) || any;
    return any;
  }

  private zapRmap(gfn: number): boolean {
    const list = this.rmap.entriesOf(gfn);
    for (const entry of list) this.clearEntry(entry, 1);
    return list.length > 0;
  }

  /** Zaps every page except roots in use (which are emptied); vCPUs refault from scratch. */
  private zapAll(): void {
    for (const id of [...this.pages.ids()]) {
      if (!(this.pages.flags[id] & 1)) continue;
      if (this.pages.rootRefs[id] > 0) {
        const level = roleLevel(this.pages.role[id]);
        for (let i = 0; i < 512; i++) this.clearEntry(this.pages.hfn[id] * 4096 + i * 8, level);
      } else if (this.pages.parent[id] === -1) this.zapPage(id);
    }
    // Called after the memslots changed (a delete or move): leaves can no longer find their
    // reverse-map lists through the new layout, but every leaf is gone now, so neither is any list.
    this.rmap.clear();
    this.flush();
  }

  // ---------------------------------------------------------------------------------------
  // (v) The world

  memslotChanged(c: MemslotChange): void {
    switch (c.kind) {
      case "create":
        return; // MMIO entries for the range are stale by generation
      case "delete":
      case "move":
        // Guest tables may have lived in the slot: start over (KVM's fast zap of all pages).
        this.zapAll();
        return;
      case "flags": {
        const { old, slot } = c;
        if ((slot.flags.readOnly && !old.flags.readOnly) || (slot.dirtyBitmap && !old.dirtyBitmap)) {
          let changed = false;
          for (const gfn of this.rmap.gfns())
            if (gfn >= slot.baseGfn && gfn < slot.baseGfn + slot.pages)
              changed = this.writeProtectGfn(gfn) || changed;
          if (changed) this.flush();
        }
        if (!slot.flags.readOnly && old.flags.readOnly && this.zapGfns(slot.baseGfn, slot.pages))
          this.flush();
        return;
      }
    }
  }

  /** MMU notifier: host pages [first, first + count) change; drop every mapping of them and every shadow of a table in them. */
  private hostInvalidate(firstHvaPage: number, count: number): void {
    let flush = false;
    for (const s of this.vm.memslots.list()) {
      const from = Math.max(firstHvaPage, s.hvaPage);
      const to = Math.min(firstHvaPage + count, s.hvaPage + s.pages);
      if (from >= to) continue;
      const g0 = s.baseGfn + (from - s.hvaPage);
      flush = this.zapGfns(g0, to - from) || flush;
      for (let g = g0; g < g0 + (to - from); g++)
        for (const id of this.pages.idsOf(g))
          if (!(this.pages.role[id] & ROLE_DIRECT)) {
            if (this.pages.rootRefs[id] > 0) {
              const level = roleLevel(this.pages.role[id]);
              for (let i = 0; i < 512; i++) this.clearEntry(this.pages.hfn[id] * 4096 + i * 8, level);
            } else this.zapPage(id);
            flush = true;
          }
    }
    if (flush) this.flush();
  }

  getDirtyLog(slotId: number): Uint32Array {
    const { slot, bits } = takeDirtyLog(this.vm.memslots, slotId);
    this.protectPages(slot, bits, 0, slot.pages);
    return bits;
  }

  clearDirtyLog(slotId: number, firstPage: number, count: number): void {
    const { slot, bits } = clearDirtyRange(this.vm.memslots, slotId, firstPage, count);
    this.protectPages(slot, bits, firstPage, count);
  }

  private protectPages(slot: Memslot, bits: Uint32Array, first: number, count: number): void {
    let changed = false;
    forEachDirtyRun(bits, first, count, (page, pages) => {
      for (let g = slot.baseGfn + page; g < slot.baseGfn + page + pages; g++)
        changed = this.writeProtectGfn(g) || changed;
    });
    if (changed) this.flush();
  }

  testAndClearYoung(gfn: number, count: number): number {
    let young = 0;
    for (const g of this.rmap.gfns()) {
      if (g < gfn || g >= gfn + count) continue;
      const list = this.rmap.entriesOf(g);
      let used = false;
      for (const entry of list) {
        const [lo, hi] = this.readEntry(entry);
        if (lo & A) {
          used = true;
          this.writeEntry(entry, (lo & ~A) >>> 0, hi);
        }
      }
      if (used) young++;
    }
    return young;
  }

  // ---------------------------------------------------------------------------------------
  // (vi) MMIO entries

  /**
   * `eff`: the guest's effective rights (X86_EFF_W/U/X) for the page, kept in bits 63:61 so
   * the fast path can check a later access against them.
   */
  private setMmio(entry: number, gfn: number, eff: number): void {
    this.mmioSeen = true;
    const old = this.readEntry(entry);
    if (old[0] & P) this.clearEntry(entry, 1);
    const gen = this.vm.memslots.generation & ((1 << GEN_BITS) - 1);
    const lo = MMIO_MARK | ((gen & 0x1ff) << 1) | ((gfn % 0x100000) << 12);
    const hi = Math.floor(gfn / 0x100000) | ((gen >>> 9) << 20) | ((eff & 7) << 29);
    this.writeEntry(entry, lo >>> 0, hi >>> 0);
  }

  /** The gfn of a current-generation MMIO entry for the address, or -1 (a stale one is cleared). */
  private lookupMmio(v: ShadowVcpu, vaHi: number, vaLo: number, access: number): number {
    const e = this.walkShadow(v.shadowRootId, vaHi, vaLo);
    if (e < 0) return -1;
    const [lo, hi] = this.readEntry(e);
    if ((lo & P) !== 0 || (lo & MMIO_MARK) !== MMIO_MARK) return -1;
    const gen = ((lo >>> 1) & 0x1ff) | (((hi >>> 20) & 0x1ff) << 9);
    if (gen !== (this.vm.memslots.generation & ((1 << GEN_BITS) - 1))) {
      this.stats.mmioStale++;
      this.writeEntry(e, 0, 0);
      return -1;
    }
    // The entry was made for one access the guest's tables allowed; another access (a fetch
    // from an NX page, a write to a read-only one, a user access to a supervisor page) must
    // take the slow path, which walks the guest's tables and injects its fault. Without this
    // check a fetch from an NX MMIO mapping reached the device (KVM checks the access cached
    // with the MMIO SPTE the same way, vcpu_mmio_gva_to_gpa). Protection keys: slow path.
    const role = v.cpuRole;
    if (
      role.format !== null &&
      (role.pke ||
        role.pks ||
        ((role.permFault[access & ACCESS_PERM_INDEX_MASK] >>> ((hi >>> 29) & 7)) & 1) !== 0)
    )
      return -1;
    return (hi & 0xfffff) * 0x100000 + (lo >>> 12);
  }

  /** The level-1 entry address for a linear address in a root's tables, or -1 where a table is missing. */
  private walkShadow(rootId: number, vaHi: number, vaLo: number): number {
    if (rootId < 0) return -1;
    let id = rootId;
    for (;;) {
      const level = roleLevel(this.pages.role[id]);
      const entry = this.pages.hfn[id] * 4096 + shadowIndex(vaHi, vaLo, level) * 8;
      if (level === 1) return entry;
      const [lo, hi] = this.readEntry(entry);
      if ((lo & P) === 0) return -1;
      const child = this.pages.idOfFrame(frameOf(lo, hi));
      if (child < 0) return -1;
      id = child;
    }
  }

  // ---------------------------------------------------------------------------------------
  // (vii) Audit

  check(): string[] {
    const problems: string[] = [];
    const pages = this.pages;
    const phys = this.guestPhysical();
    const memslots = this.vm.memslots;
    let leaves = 0;
    for (const id of pages.ids()) {
      const r = pages.role[id];
      const level = roleLevel(r);
      const name = `shadow page ${id} (gfn 0x${pages.gfn[id].toString(16)}, ${describeRole(r)})`;
      if (pages.parent[id] === -1 && !(pages.flags[id] & SP_ROOT))
        problems.push(`${name} has no parent and is not a root`);
      for (const pe of pages.parents(id)) {
        const [plo, phi] = this.readEntry(pe);
        if ((plo & P) === 0 || frameOf(plo, phi) !== pages.hfn[id])
          problems.push(`${name}: parent entry 0x${pe.toString(16)} does not point at it`);
      }
      const gpte32 = (r & ROLE_GPTE32) !== 0;
      const es = gpte32 ? 4 : 8;
      for (let i = 0; i < 512; i++) {
        const entry = pages.hfn[id] * 4096 + i * 8;
        const [lo, hi] = this.readEntry(entry);
        if ((lo & P) === 0) continue;
        if (level > 1) {
          const child = pages.idOfFrame(frameOf(lo, hi));
          if (child < 0) problems.push(`${name} entry ${i} links a frame that is no shadow page`);
          else if (!pages.parents(child).includes(entry))
            problems.push(`${name} entry ${i}: child ${child} does not list it as parent`);
          continue;
        }
        leaves++;
        const gfn = this.gfnsOfFrame(frameOf(lo, hi)).find((g) => this.rmap.has(g, entry));
        if (gfn === undefined) {
          problems.push(`${name} entry ${i} is not in the reverse map`);
          continue;
        }
        const slot = memslots.find(gfn);
        if (!slot) {
          problems.push(`${name} entry ${i} maps gfn 0x${gfn.toString(16)}, which no memslot covers`);
          continue;
        }
        if (this.vm.hostSpace.peek(slot.hvaPage + (gfn - slot.baseGfn)) !== frameOf(lo, hi))
          problems.push(
            `${name} entry ${i} maps a host frame that no longer backs gfn 0x${gfn.toString(16)}`,
          );
        if (lo & RW) {
          if (slot.flags.readOnly)
            problems.push(`${name} entry ${i} is writable in read-only memslot ${slot.id}`);
          if (this.isTracked(gfn))
            problems.push(
              `${name} entry ${i} is writable but maps guest page table gfn 0x${gfn.toString(16)}`,
            );
          if (slot.dirtyBitmap && !isDirty(slot, gfn))
            problems.push(`${name} entry ${i} is writable but gfn 0x${gfn.toString(16)} is not marked dirty`);
        }
        // Against the guest's table: no more rights than the guest entry allows (synced pages).
        if (!(r & ROLE_DIRECT) && !(pages.flags[id] & SP_UNSYNC)) {
          const first = gpte32 ? roleQuadrant(r) * 512 : 0;
          const g = phys.read(pages.gfn[id] * 4096 + (first + i) * es, es as 4 | 8);
          const glo = Number(g.value & 0xffffffffn);
          const ghi = Number(g.value >> 32n);
          const ggfn = gpte32 ? glo >>> 12 : (ghi & 0xfffff) * 0x100000 + (glo >>> 12);
          const acc = roleAccess(r);
          const wp = (r & ROLE_WP) !== 0;
          if (g.status !== "ok" || (glo & P) === 0)
            problems.push(`${name} entry ${i} is present but the guest entry is not`);
          else if (ggfn !== gfn)
            problems.push(
              `${name} entry ${i} maps gfn 0x${gfn.toString(16)}, the guest entry says 0x${ggfn.toString(16)}`,
            );
          else {
            const guestW = (glo & RW) !== 0 && (acc & ACC_W) !== 0;
            if (lo & RW && !(guestW && glo & D) && !(!wp && !(lo & US)))
              problems.push(`${name} entry ${i} is writable beyond the guest's rights (or before its D bit)`);
            if (lo & US && !((glo & US) !== 0 && (acc & ACC_U) !== 0))
              problems.push(`${name} entry ${i} is user-accessible beyond the guest's rights`);
            const guestX = (acc & ACC_X) !== 0 && (gpte32 || !(r & ROLE_NXE) || (ghi & XD_HI) === 0);
            if (!(hi & XD_HI) && !guestX)
              problems.push(`${name} entry ${i} is executable beyond the guest's rights`);
          }
        }
      }
    }
    let rmapEntries = 0;
    rmapEntries = this.rmap.total;
    if (rmapEntries !== leaves)
      problems.push(`the reverse map holds ${rmapEntries} entries for ${leaves} present leaves`);
    return problems;
  }

  destroy(): void {
    for (const id of [...this.pages.ids()]) {
      this.pages.rootRefs[id] = 0;
      this.pages.flags[id] &= ~SP_ROOT;
    }
    for (const id of [...this.pages.ids()]) if (this.pages.flags[id] & 1) this.zapPage(id);
    this.cachedRoots.length = 0;
    this.unlisten();
  }

  // ---------------------------------------------------------------------------------------

  /** The guest's entry at `gpa` (4 or 8 bytes) into gLo/gHi without allocating; false if not RAM. */
  private readGuestEntry(gpa: number, es: number): boolean {
    const phys = this.vm.physical;
    const words = phys.frameWords(Math.floor(gpa / 4096));
    if (words === null) return false;
    const i = phys.frameBase + ((gpa % 4096) >>> 2);
    this.gLo = words[i];
    this.gHi = es === 8 ? words[i + 1] : 0;
    return true;
  }

  private gLo = 0;
  private gHi = 0;
  /** Whether any MMIO entry was ever made (the fault path probes for one only then). */
  private mmioSeen = false;

  private guestPhysical() {
    return this.vm.physical;
  }

  private flush(): void {
    this.stats.flushes++;
    this.vm.flushTlbs(this.currentVcpu);
  }

  private readonly pair = new Uint32Array(2);

  private readEntry(addr: number): Uint32Array {
    const words = this.host.frameWords(Math.floor(addr / 4096))!;
    const i = this.host.frameBase + ((addr % 4096) >>> 2);
    this.pair[0] = words[i];
    this.pair[1] = words[i + 1];
    return this.pair;
  }

  private writeEntry(addr: number, lo: number, hi: number): void {
    const words = this.host.frameWords(Math.floor(addr / 4096))!;
    const i = this.host.frameBase + ((addr % 4096) >>> 2);
    words[i] = lo;
    words[i + 1] = hi;
  }
}

/** The 9-bit index of a linear address at a 64-bit table level. */
function shadowIndex(vaHi: number, vaLo: number, level: number): number {
  const shift = 12 + 9 * (level - 1);
  return (shift >= 32 ? vaHi >>> (shift - 32) : (vaLo >>> shift) | (vaHi << (32 - shift))) & 511;
}

function frameOf(lo: number, hi: number): number {
  return (hi & 0xfffff) * 0x100000 + (lo >>> 12);
}
