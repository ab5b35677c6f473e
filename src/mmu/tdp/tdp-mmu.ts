/**
 * The TDP MMU: host EPT (or NPT) tables mapping guest-physical addresses directly to host
 * frames, built lazily on violations, in host memory, in the format the hardware walks.
 *
 * There are six parts, in this order: (i) the fault: MMIO fast path, memslot lookup, the
 * largest page the backing allows, installing the leaf; (ii) the fast path for write faults
 * on pages write-protected for dirty logging; (iii) walking a GFN range of the tables, the
 * one mechanism under zapping, write protection, aging and auditing; (iv) reacting to the
 * world: memslot changes, host invalidations (MMU notifiers), dirty logging; (v) stolen GPA
 * bits; (vi) `check()`.
 *
 * Stolen GPA bits (TDX's "shared" bit, KVM RFC "Add infrastructure for stolen GPA bits"):
 * some GPA bits are attributes, not address. The GFN used for memslots, dirty logging and
 * write protection has them stripped; each alias (each combination of stolen bits) has its
 * own SPTEs, so every range operation visits every alias. An alias with stolen bits set is
 * never mapped to a private memslot.
 */

import { ACCESS_FETCH, ACCESS_WRITE } from "../../arch/access.js";
import type { CpuFeatures } from "../../arch/cpu.js";
import { eptFormat, x86Format } from "../../arch/format.js";
import { type Memslot, markDirty } from "../../mem/memslots.js";
import { eptWalker, nptWalker } from "../../walk/contexts.js";
import type { GuestWalker } from "../../walk/walker.js";
import { clearDirtyRange, forEachDirtyRun, takeDirtyLog } from "../dirty-log.js";
import { type MemslotChange, MMU_MMIO, MMU_RETRY, type Mmu, type MmuHost, type MmuVcpu } from "../mmu.js";
import { MMIO_GEN_MASK, SPTE_HOST_WRITABLE_HI, SPTE_MMU_WRITABLE_HI, SpteFormat } from "../spte.js";

export interface TdpMmuOptions {
  /** Host table format: Intel EPT (default) or AMD NPT. */
  format?: "ept" | "npt";
  /** 4 (default) or 5 levels. */
  levels?: 4 | 5;
  /** EPT accessed/dirty flags (default: when the CPU has them). */
  accessedDirty?: boolean;
  /** Map 2 MiB / 1 GiB pages where the memslot and the host backing allow (default true). */
  hugePages?: boolean;
  /** iTLB-multihit workaround: huge pages are never executable; a fetch splits them (default false). */
  nxHugePages?: boolean;
  /** GPA bit numbers that are attributes (stolen bits), e.g. [47] or [51]. */
  stolenBits?: number[];
}

const PAGES_AT = [0, 1, 512, 262144];
const ORDER_AT = [0, 0, 9, 18];

export class TdpMmu implements Mmu {
  readonly kind = "tdp";
  readonly spte: SpteFormat;
  /** The walker the hardware uses over these tables (EPT or NPT). */
  readonly walker: GuestWalker;
  /** The EPTP or nCR3 value. */
  readonly pointer: bigint;
  readonly rootHfn: number;
  readonly levels: number;
  readonly stats = {
    faults: 0,
    mmioFaults: 0,
    mmioFast: 0,
    mmioStale: 0,
    fastWriteFaults: 0,
    readOnlyWrites: 0,
    leavesInstalled: 0,
    hugeLeaves: 0,
    splits: 0,
    zappedLeaves: 0,
    zappedTables: 0,
    writeProtected: 0,
    flushes: 0,
    agingCleared: 0,
  };
  /** GPA of the last MMIO outcome. */
  mmioGpa = 0;

  private readonly tables = new Set<number>();
  private readonly hugePages: boolean;
  private readonly nxHuge: boolean;
  /** Stolen bits as GFN bit positions, and every alias offset (sums of subsets). */
  private readonly stolenGfnBits: number[];
  private readonly aliasOffsets: number[];
  private readonly scratch = new Uint32Array(2);
  private readonly unlisten: () => void;
  /** The vCPU whose fault is being handled (for local vs remote flush counts). */
  private currentVcpu = -1;

  constructor(
    private readonly vm: MmuHost,
    cpu: CpuFeatures,
    o: TdpMmuOptions = {},
  ) {
    const kind = o.format ?? "ept";
    this.levels = o.levels ?? 4;
    this.hugePages = o.hugePages ?? true;
    this.nxHuge = o.nxHugePages ?? false;
    const stolen = o.stolenBits ?? [];
    const maxBit = this.levels === 4 ? 47 : 56;
    for (const b of stolen)
      if (!Number.isInteger(b) || b < 12 || b > Math.min(maxBit, 51))
        throw new RangeError(
          `stolen GPA bit ${b} must be in 12..${Math.min(maxBit, 51)} for ${this.levels}-level host tables`,
        );
    this.stolenGfnBits = [...new Set(stolen)].map((b) => b - 12).sort((a, b) => a - b);
    this.aliasOffsets = [0];
    for (const b of this.stolenGfnBits)
      for (const a of [...this.aliasOffsets]) this.aliasOffsets.push(a + 2 ** b);
    for (const s of vm.memslots.list()) this.checkSlotFitsStolen(s);

    this.rootHfn = vm.host.alloc();
    this.tables.add(this.rootHfn);
    const root = BigInt(this.rootHfn) << 12n;
    if (kind === "ept") {
      const caps = cpu.ept;
      if (!caps) throw new RangeError("TDP with EPT needs a CPU model with EPT");
      if (this.levels === 5 && !caps.fiveLevel) throw new RangeError("the CPU model has no 5-level EPT");
      const ad = o.accessedDirty ?? caps.accessedDirty;
      this.pointer = root | 6n | (BigInt(this.levels - 1) << 3n) | (ad ? 0x40n : 0n);
      this.walker = eptWalker(vm.host, this.pointer, cpu);
      this.spte = new SpteFormat(
        eptFormat({
          levels: this.levels as 4 | 5,
          maxPhyAddr: cpu.maxPhyAddr,
          executeOnly: caps.executeOnly,
          mbec: caps.mbec,
          gbPages: caps.gbPages,
          accessedDirty: ad,
        }),
        "ept",
      );
    } else {
      if (this.levels === 5 && !cpu.la57) throw new RangeError("the CPU model has no 5-level paging for NPT");
      this.pointer = root;
      this.walker = nptWalker(vm.host, root, cpu, { levels: this.levels as 4 | 5 });
      this.spte = new SpteFormat(
        x86Format({
          mode: this.levels === 4 ? "4level" : "5level",
          maxPhyAddr: cpu.maxPhyAddr,
          nxe: true,
          pse: true,
          pse36: false,
          gbPages: cpu.gbPages,
          amd: cpu.vendor === "amd",
        }),
        "npt",
      );
    }
    this.unlisten = vm.hostSpace.onInvalidate((first, count) => this.hostInvalidate(first, count));
  }

  get tableFrames(): number {
    return this.tables.size;
  }

  /** The guest's CR3 is not part of a direct map: nothing to do. */
  loadRoot(_vcpu: MmuVcpu): void {}

  /** INVLPG concerns the guest's TLB entries only; the direct map is unaffected. */
  invalidatePage(_vcpu: MmuVcpu, _vaHi: number, _vaLo: number): void {}

  // ---------------------------------------------------------------------------------------
  // (i) The fault

  /**
   * Handles an EPT violation / misconfiguration (NPT fault) for `gpa` by `vcpuId`; `access`
   * is the failing walk's access (ACCESS_WRITE, ACCESS_FETCH). Returns MMU_RETRY or MMU_MMIO
   * (then `mmioGpa` holds the address to emulate).
   */
  handleFault(vcpuId: number, gpa: number, access: number, misconfig: boolean): number {
    this.currentVcpu = vcpuId;
    try {
      return this.fault(gpa, access, misconfig);
    } finally {
      // Flushes asked for later (memslot changes, notifiers, dirty-log calls) come from the
      // VMM, not from this vCPU: all of them are remote. Without the reset they were counted
      // as local to whichever vCPU faulted last.
      this.currentVcpu = -1;
    }
  }

  private fault(gpa: number, access: number, misconfig: boolean): number {
    this.stats.faults++;
    const gfnFull = Math.floor(gpa / 4096);
    if (misconfig) {
      // The MMIO fast path: a cached MMIO SPTE of the current memslot generation.
      const e = this.leafEntry(gfnFull);
      if (e.level === 1 && this.spte.isMmio(e.lo, e.hi)) {
        if (this.spte.mmioGeneration(e.lo, e.hi) === (this.vm.memslots.generation & MMIO_GEN_MASK)) {
          this.stats.mmioFast++;
          this.mmioGpa = gpa;
          return MMU_MMIO;
        }
        this.stats.mmioStale++; // stale: the memslots changed since; take the slow path
        this.writeEntry(e.addr, 0, 0);
      }
    }
    const gfn = this.stripStolen(gfnFull);
    const slot = this.vm.memslots.find(gfn);
    if (slot === undefined || (gfn !== gfnFull && slot.flags.private === true)) {
      this.stats.mmioFaults++;
      if (this.spte.mmioCaching) {
        this.spte.mmio(gfnFull, this.vm.memslots.generation, this.scratch);
        this.install(gfnFull, 1, this.scratch[0], this.scratch[1]);
      }
      this.mmioGpa = gpa;
      return MMU_MMIO;
    }
    const write = (access & ACCESS_WRITE) !== 0;
    if (write && slot.flags.readOnly) {
      this.stats.readOnlyWrites++;
      this.mmioGpa = gpa;
      return MMU_MMIO;
    }
    if (write && this.fastWriteFault(gfnFull, gfn, slot)) return MMU_RETRY;

    const fetch = (access & ACCESS_FETCH) !== 0;
    let level = this.hugeLevel(gfn, slot);
    // iTLB multihit: an executable mapping must be 4 KiB; huge mappings are non-executable.
    if (this.nxHuge && fetch) level = 1;
    const base = gfnFull - (gfnFull % PAGES_AT[level]);
    const hfn = this.hostFrame(slot, gfn - (gfnFull - base));
    const logging = slot.dirtyBitmap !== null;
    // With dirty logging, map read-only until the first write (which marks the page dirty).
    const writable = !slot.flags.readOnly && (!logging || write);
    if (logging && write) markDirty(slot, gfn);
    const exec = !(this.nxHuge && level > 1);
    this.spte.leaf(level, hfn, writable, exec, !slot.flags.readOnly, this.scratch);
    this.install(base, level, this.scratch[0], this.scratch[1]);
    this.stats.leavesInstalled++;
    if (level > 1) this.stats.hugeLeaves++;
    return MMU_RETRY;
  }

  /** The largest level (1..3) at which `gfn` may be mapped. */
  private hugeLevel(gfn: number, slot: Memslot): number {
    if (!this.hugePages || slot.dirtyBitmap !== null) return 1;
    const maxLevel = this.spte.format.largeLevels & (1 << 3) ? 3 : 2;
    for (let level = maxLevel; level > 1; level--) {
      const n = PAGES_AT[level];
      const first = gfn - (gfn % n);
      // The whole aligned range inside the slot, and the host virtual range equally aligned ...
      if (first < slot.baseGfn || first + n > slot.baseGfn + slot.pages) continue;
      const hva = slot.hvaPage + (first - slot.baseGfn);
      if (hva % n !== 0) continue;
      // ... and backed by one host huge page at least as large (contiguous frames).
      if (this.vm.hostSpace.hugeOrder(hva) >= ORDER_AT[level]) return level;
    }
    return 1;
  }

  /** The host frame behind `gfn` of `slot`, faulting it in. */
  private hostFrame(slot: Memslot, gfn: number): number {
    return this.vm.hostSpace.frameOf(slot.hvaPage + (gfn - slot.baseGfn));
  }

  /**
   * Writes the entry for `gfnBase` at `level`, creating tables on the way; a huge leaf in the
   * way is split (its mapping kept at the next level down); tables below a new huge leaf are
   * freed. Flushes if a present translation was changed.
   */
  private install(gfnBase: number, level: number, lo: number, hi: number): void {
    const host = this.vm.host;
    let table = this.rootHfn;
    for (let l = this.levels; ; l--) {
      const addr = this.entryAddr(table, gfnBase, l);
      const words = host.frameWords(table)!;
      const i = host.frameBase + ((addr % 4096) >>> 2);
      const elo = words[i];
      const ehi = words[i + 1];
      const present = this.spte.isPresent(elo, ehi);
      if (l === level) {
        let flush = false;
        if (present && !this.spte.isLeaf(elo, l)) {
          this.freeSubtree(this.spte.frameOf(elo, ehi), l - 1);
          flush = true;
        } else if (present) {
          // A TLB may hold the old translation: flush when the frame changes or rights shrink.
          const sp = this.spte;
          flush =
            sp.frameOf(elo, ehi) !== sp.frameOf(lo, hi) ||
            (sp.isWritable(elo) && !sp.isWritable(lo)) ||
            (sp.isExecutable(elo, ehi) && !sp.isExecutable(lo, hi));
        }
        words[i] = lo;
        words[i + 1] = hi;
        if (flush) this.flush();
        return;
      }
      if (present && this.spte.isLeaf(elo, l)) {
        this.split(words, i, l);
        this.stats.splits++;
      } else if (!present) {
        const t = host.alloc();
        this.tables.add(t);
        this.spte.table(t, this.scratch);
        words[i] = this.scratch[0];
        words[i + 1] = this.scratch[1];
      }
      table = this.spte.frameOf(words[i], words[i + 1]);
    }
  }

  /** Replaces the huge leaf at words[i] (level l) by a table of 512 leaves of level l-1. */
  private split(words: Uint32Array, i: number, l: number): void {
    const host = this.vm.host;
    const lo = words[i];
    const hi = words[i + 1];
    const t = host.alloc();
    this.tables.add(t);
    const { words: tw, base } = host.frame(t);
    const frame = this.spte.frameOf(lo, hi);
    const step = PAGES_AT[l - 1];
    // Same rights; PS stays set for 2 MiB children of a 1 GiB page, and goes for 4 KiB ones.
    const childLo = l - 1 === 1 ? lo & ~0x80 & 0xfff : lo & 0xfff;
    for (let k = 0; k < 512; k++) {
      const f = frame + k * step;
      tw[base + 2 * k] = (childLo | ((f % 0x100000) << 12)) >>> 0;
      tw[base + 2 * k + 1] = ((hi & 0xfff00000) | Math.floor(f / 0x100000)) >>> 0;
    }
    this.spte.table(t, this.scratch);
    words[i] = this.scratch[0];
    words[i + 1] = this.scratch[1];
    // The translation of every address is unchanged; TLBs may keep the huge entry.
  }

  private freeSubtree(table: number, level: number): void {
    const host = this.vm.host;
    if (level > 1) {
      const words = host.frameWords(table)!;
      const base = host.frameBase;
      for (let k = 0; k < 512; k++) {
        const lo = words[base + 2 * k];
        const hi = words[base + 2 * k + 1];
        if (this.spte.isPresent(lo, hi) && !this.spte.isLeaf(lo, level))
          this.freeSubtree(this.spte.frameOf(lo, hi), level - 1);
      }
    }
    this.tables.delete(table);
    host.put(table);
    this.stats.zappedTables++;
  }

  // ---------------------------------------------------------------------------------------
  // (ii) Fast write faults

  /**
   * A write to a present 4 KiB leaf that is write-protected only for dirty logging (host- and
   * MMU-writable, W clear): mark the page dirty and restore W in place (KVM's fast page fault).
   */
  private fastWriteFault(gfnFull: number, gfn: number, slot: Memslot): boolean {
    const e = this.leafEntry(gfnFull);
    if (e.level !== 1 || !this.spte.isPresent(e.lo, e.hi) || this.spte.isWritable(e.lo)) return false;
    if (
      (e.hi & (SPTE_HOST_WRITABLE_HI | SPTE_MMU_WRITABLE_HI)) !==
      (SPTE_HOST_WRITABLE_HI | SPTE_MMU_WRITABLE_HI)
    )
      return false;
    if (this.spte.frameOf(e.lo, e.hi) !== this.vm.hostSpace.peek(slot.hvaPage + (gfn - slot.baseGfn)))
      return false;
    if (slot.dirtyBitmap !== null) markDirty(slot, gfn);
    this.writeEntry(e.addr, (e.lo | this.spte.writableLo) >>> 0, e.hi);
    this.stats.fastWriteFaults++;
    return true;
  }

  // ---------------------------------------------------------------------------------------
  // (iii) Range walks

  /**
   * Visits every present leaf (and MMIO SPTE) mapping a GFN in [first, first + count) of
   * alias `offset`; `fn` returns the new entry (halves in `out`) or false to keep it.
   * Returns whether any present translation changed (a flush is needed).
   */
  private forEachLeaf(
    first: number,
    count: number,
    fn: (gfnBase: number, level: number, lo: number, hi: number, out: Uint32Array) => boolean,
  ): boolean {
    let changed = false;
    for (const offset of this.aliasOffsets)
      changed =
        this.visit(this.rootHfn, this.levels, 0, first + offset, first + offset + count, fn) || changed;
    return changed;
  }

  private visit(
    table: number,
    level: number,
    tableBase: number,
    lo0: number,
    hi0: number,
    fn: (gfnBase: number, level: number, lo: number, hi: number, out: Uint32Array) => boolean,
  ): boolean {
    const host = this.vm.host;
    const spanOf = 512 ** (level - 1);
    let changed = false;
    const kFirst = Math.max(0, Math.floor((lo0 - tableBase) / spanOf));
    const kLast = Math.min(511, Math.floor((hi0 - 1 - tableBase) / spanOf));
    for (let k = kFirst; k <= kLast; k++) {
      const words = host.frameWords(table)!;
      const i = host.frameBase + 2 * k;
      const lo = words[i];
      const hi = words[i + 1];
      const gfnBase = tableBase + k * spanOf;
      if ((lo & this.spte.format.presentMask) === 0) continue;
      if (this.spte.isMmio(lo, hi) || this.spte.isLeaf(lo, level)) {
        const out = this.scratch;
        if (fn(gfnBase, level, lo, hi, out)) {
          const w2 = host.frameWords(table)!;
          const j = host.frameBase + 2 * k;
          if (!this.spte.isMmio(lo, hi)) changed = true;
          w2[j] = out[0];
          w2[j + 1] = out[1];
        }
      } else changed = this.visit(this.spte.frameOf(lo, hi), level - 1, gfnBase, lo0, hi0, fn) || changed;
    }
    return changed;
  }

  /** Removes every mapping of [first, first + count) (all aliases); flushes if needed. */
  zapRange(first: number, count: number): number {
    let zapped = 0;
    const changed = this.forEachLeaf(first, count, (_g, _l, _lo, _hi, out) => {
      out[0] = 0;
      out[1] = 0;
      zapped++;
      return true;
    });
    this.stats.zappedLeaves += zapped;
    if (changed) this.flush();
    return zapped;
  }

  /**
   * Write-protects [first, first + count): clears W (and, for read-only slots, host-writable).
   * Huge leaves that reach outside 4 KiB granularity are zapped when `splitHuge` (dirty
   * logging maps 4 KiB pages so it can track each one).
   */
  private writeProtect(first: number, count: number, o: { hostToo: boolean; splitHuge: boolean }): void {
    const changed = this.forEachLeaf(first, count, (_g, level, lo, hi, out) => {
      if (this.spte.isMmio(lo, hi)) return false;
      if (level > 1 && o.splitHuge) {
        out[0] = 0;
        out[1] = 0;
        this.stats.zappedLeaves++;
        return true;
      }
      const hostBits = o.hostToo ? SPTE_HOST_WRITABLE_HI | SPTE_MMU_WRITABLE_HI : 0;
      if (!this.spte.isWritable(lo) && (hi & hostBits) === 0) return false;
      out[0] = (lo & ~this.spte.writableLo) >>> 0;
      out[1] = (hi & ~hostBits) >>> 0;
      this.stats.writeProtected++;
      return true;
    });
    if (changed) this.flush();
  }

  // ---------------------------------------------------------------------------------------
  // (iv) Memslots, host invalidation, dirty logging, aging

  memslotChanged(c: MemslotChange): void {
    switch (c.kind) {
      case "create":
        // MMIO SPTEs in the new range are stale by generation; zap them anyway, eagerly.
        this.checkSlotFitsStolen(c.slot);
        this.zapRange(c.slot.baseGfn, c.slot.pages);
        return;
      case "delete":
        this.zapRange(c.old.baseGfn, c.old.pages);
        return;
      case "move":
        this.checkSlotFitsStolen(c.slot);
        this.zapRange(c.old.baseGfn, c.old.pages);
        this.zapRange(c.slot.baseGfn, c.slot.pages);
        return;
      case "flags": {
        const { old, slot } = c;
        if (slot.flags.readOnly && !old.flags.readOnly)
          this.writeProtect(slot.baseGfn, slot.pages, { hostToo: true, splitHuge: false });
        if (!slot.flags.readOnly && old.flags.readOnly) this.zapRange(slot.baseGfn, slot.pages); // refault writable
        if (slot.flags.private !== old.flags.private) this.zapRange(slot.baseGfn, slot.pages);
        if (slot.dirtyBitmap && !old.dirtyBitmap)
          this.writeProtect(slot.baseGfn, slot.pages, { hostToo: false, splitHuge: true });
        // Logging off: zap 4 KiB mappings so the next faults can map huge pages again.
        if (!slot.dirtyBitmap && old.dirtyBitmap && this.hugePages) this.zapRange(slot.baseGfn, slot.pages);
        return;
      }
    }
  }

  /** MMU notifier: host pages [firstHvaPage, +count) are about to change. */
  hostInvalidate(firstHvaPage: number, count: number): void {
    for (const s of this.vm.memslots.list()) {
      const from = Math.max(firstHvaPage, s.hvaPage);
      const to = Math.min(firstHvaPage + count, s.hvaPage + s.pages);
      if (from >= to) continue;
      this.zapRange(s.baseGfn + (from - s.hvaPage), to - from);
    }
  }

  getDirtyLog(slotId: number): Uint32Array {
    const { slot, bits } = takeDirtyLog(this.vm.memslots, slotId);
    this.protectDirty(slot, bits, 0, slot.pages);
    return bits;
  }

  clearDirtyLog(slotId: number, firstPage: number, count: number): void {
    const { slot, bits } = clearDirtyRange(this.vm.memslots, slotId, firstPage, count);
    this.protectDirty(slot, bits, firstPage, count);
  }

  /** Write-protects the pages whose bit is set in `bits` within [first, first + count). */
  private protectDirty(slot: Memslot, bits: Uint32Array, first: number, count: number): void {
    forEachDirtyRun(bits, first, count, (page, pages) =>
      this.writeProtect(slot.baseGfn + page, pages, { hostToo: false, splitHuge: true }),
    );
  }

  testAndClearYoung(gfn: number, count: number): number {
    // The result counts guest pages in [gfn, gfn + count), as the Mmu contract (and the shadow
    // MMU) says: a young huge leaf counts for its pages inside the range, and a page young
    // through two stolen-bit aliases counts once (it used to count leaves: 1 for 2 MiB).
    const youngRanges: number[] = [];
    let zapped = false;
    const a = this.spte.accessedLo;
    this.forEachLeaf(gfn, count, (gfnBase, level, lo, hi, out) => {
      if (this.spte.isMmio(lo, hi)) return false;
      if (a !== 0 && (lo & a) === 0) return false;
      const first = this.stripStolen(gfnBase);
      youngRanges.push(Math.max(first, gfn), Math.min(first + PAGES_AT[level], gfn + count));
      if (a === 0) {
        // No accessed flags: every present mapping counts as young and is zapped, so that the
        // next access faults and shows it was used (KVM's access tracking).
        zapped = true;
        out[0] = 0;
        out[1] = 0;
        return true;
      }
      out[0] = (lo & ~a) >>> 0;
      out[1] = hi;
      return true;
    });
    const young = unionLength(youngRanges);
    this.stats.agingCleared += young;
    // Clearing A needs no flush (a stale TLB entry only makes a page look idle for longer).
    // Zapping does: a TLB entry left behind outlives its SPTE, and a later invalidation of
    // the page (discard, migrate) finds no SPTE, so it would not flush either: the guest
    // would keep using the old host frame (stale data, or a frame freed and reused).
    if (zapped) this.flush();
    return young;
  }

  // ---------------------------------------------------------------------------------------
  // (v) Stolen bits

  private stripStolen(gfn: number): number {
    for (const b of this.stolenGfnBits) if (Math.floor(gfn / 2 ** b) % 2 === 1) gfn -= 2 ** b;
    return gfn;
  }

  /** Throws if the slot reaches a stolen bit (the VM calls it before changing the memslots). */
  checkSlotFitsStolen(s: Pick<Memslot, "id" | "baseGfn" | "pages">): void {
    for (const b of this.stolenGfnBits)
      if (s.baseGfn + s.pages > 2 ** b)
        throw new RangeError(`memslot ${s.id} reaches GPA bit ${b + 12}, which is a stolen attribute bit`);
  }

  // ---------------------------------------------------------------------------------------
  // (vi) Audit

  check(): string[] {
    const problems: string[] = [];
    const seen = new Set<number>([this.rootHfn]);
    const memslots = this.vm.memslots;
    const walkTable = (table: number, level: number, base: number) => {
      const host = this.vm.host;
      if (!this.tables.has(table)) problems.push(`table frame ${table} is not one of the MMU's tables`);
      for (let k = 0; k < 512; k++) {
        const words = host.frameWords(table)!;
        const lo = words[host.frameBase + 2 * k];
        const hi = words[host.frameBase + 2 * k + 1];
        if ((lo & this.spte.format.presentMask) === 0) continue;
        const gfnFull = base + k * 512 ** (level - 1);
        if (this.spte.isMmio(lo, hi)) {
          if (level !== 1) problems.push(`MMIO SPTE at level ${level} for gfn ${hex(gfnFull)}`);
          else if (this.spte.mmioGfn(lo, hi) !== gfnFull)
            problems.push(`MMIO SPTE for gfn ${hex(gfnFull)} names gfn ${hex(this.spte.mmioGfn(lo, hi))}`);
          continue;
        }
        if (!this.spte.isLeaf(lo, level)) {
          const t = this.spte.frameOf(lo, hi);
          if (seen.has(t)) problems.push(`table frame ${t} is linked twice`);
          seen.add(t);
          walkTable(t, level - 1, gfnFull);
          continue;
        }
        const gfn = this.stripStolen(gfnFull);
        const slot = memslots.find(gfn);
        const where = `gfn ${hex(gfnFull)} (level ${level})`;
        if (!slot) {
          problems.push(`${where} is mapped but no memslot covers it`);
          continue;
        }
        if (gfn !== gfnFull && slot.flags.private)
          problems.push(`${where}: a stolen-bit alias maps private memslot ${slot.id}`);
        const n = 512 ** (level - 1);
        if (gfn + n > slot.baseGfn + slot.pages) problems.push(`${where} extends past memslot ${slot.id}`);
        const first = this.vm.hostSpace.peek(slot.hvaPage + (gfn - slot.baseGfn));
        if (first !== this.spte.frameOf(lo, hi))
          problems.push(
            `${where} maps host frame ${this.spte.frameOf(lo, hi)}, the memslot's backing is ${first}`,
          );
        if (this.spte.isWritable(lo)) {
          if (slot.flags.readOnly) problems.push(`${where} is writable in read-only memslot ${slot.id}`);
          if (slot.dirtyBitmap) {
            if (level > 1)
              problems.push(`${where} is a writable huge mapping while memslot ${slot.id} logs dirty pages`);
            const p = gfn - slot.baseGfn;
            if (((slot.dirtyBitmap[p >>> 5] >>> (p & 31)) & 1) === 0)
              problems.push(`${where} is writable but not marked dirty: a write could be missed`);
          }
        }
        if (this.nxHuge && level > 1 && this.spte.isExecutable(lo, hi))
          problems.push(`${where} is an executable huge page (nx huge pages on)`);
      }
    };
    walkTable(this.rootHfn, this.levels, 0);
    for (const t of this.tables)
      if (!seen.has(t)) problems.push(`table frame ${t} is allocated but not linked`);
    return problems;
  }

  destroy(): void {
    this.freeSubtree(this.rootHfn, this.levels);
    this.unlisten();
  }

  // ---------------------------------------------------------------------------------------

  private flush(): void {
    this.stats.flushes++;
    this.vm.flushTlbs(this.currentVcpu);
  }

  private entryAddr(table: number, gfn: number, level: number): number {
    const index = Math.floor(gfn / 512 ** (level - 1)) % 512;
    return table * 4096 + index * 8;
  }

  private readonly leafResult = { level: 0, addr: 0, lo: 0, hi: 0 };

  /** The entry that ends the walk for `gfn` (a leaf, an MMIO SPTE, or a non-present entry). */
  private leafEntry(gfn: number): { level: number; addr: number; lo: number; hi: number } {
    const host = this.vm.host;
    const r = this.leafResult;
    let table = this.rootHfn;
    for (let l = this.levels; l >= 1; l--) {
      const addr = this.entryAddr(table, gfn, l);
      const words = host.frameWords(table)!;
      const i = host.frameBase + ((addr % 4096) >>> 2);
      r.level = l;
      r.addr = addr;
      r.lo = words[i];
      r.hi = words[i + 1];
      if (
        (r.lo & this.spte.format.presentMask) === 0 ||
        this.spte.isMmio(r.lo, r.hi) ||
        this.spte.isLeaf(r.lo, l)
      )
        return r;
      table = this.spte.frameOf(r.lo, r.hi);
    }
    return r;
  }

  private writeEntry(addr: number, lo: number, hi: number): void {
    const host = this.vm.host;
    const words = host.frameWords(Math.floor(addr / 4096))!;
    const i = host.frameBase + ((addr % 4096) >>> 2);
    words[i] = lo;
    words[i + 1] = hi;
  }
}

/** Pages covered by the union of the ranges [r[0], r[1]), [r[2], r[3]), ... */
function unionLength(r: number[]): number {
  const order: number[] = [];
  for (let i = 0; i < r.length; i += 2) order.push(i);
  order.sort((x, y) => r[x] - r[y]);
  let total = 0;
  let end = -1;
  for (const i of order) {
    const from = Math.max(r[i], end);
    if (r[i + 1] > from) total += r[i + 1] - from;
    end = Math.max(end, r[i + 1]);
  }
  return total;
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}
