/**
 * `GuestOs`: a guest kernel that manages memory the way Linux does, running on a `Vm`'s
 * vCPUs. It is the workload generator for the host MMUs: every page-table write it makes
 * is a store through a vCPU to the kernel direct-map address of the entry (or a hypercall,
 * through the `PagingOps` seam), so a hypervisor sees exactly what a real kernel does.
 *
 * The parts, in the order the code follows:
 *   (i)    boot: paging off, the kernel root and the direct map written physically, then
 *          CR3/CR0 (and CR4.PCIDE); secondary vCPUs start on the kernel root;
 *   (ii)   tables: reading entries through the direct map, creating tables on the way down;
 *   (iii)  address spaces: a root per process with the kernel half linked in, context
 *          switches (CR3 with PCID and the no-flush bit when its TLB entries are current);
 *   (iv)   VMAs: mmap, munmap, mprotect, brk;
 *   (v)    the #PF handler: demand paging (huge pages where the VMA asks), copy-on-write,
 *          SIGSEGV for faults outside a VMA or against its protection;
 *   (vi)   fork, exec, exit;
 *   (vii)  invalidation: INVLPG / full flush on every vCPU running the address space
 *          (a shootdown, IPIs counted), and only where SDM 4.10.4.3 requires it;
 *   (viii) aging (A-bit scan), the value model, the digest, and a self-audit.
 *
 * The vCPUs run at CPL 0 throughout: user accesses are made with user access descriptors
 * on the hot path (`read32`/`write32` with ACCESS_USER), which is what decides rights in
 * hardware, so no CPL switch (which `Vcpu.setState` would turn into a full TLB flush) is
 * needed.
 */

import { ACCESS_FETCH, ACCESS_USER, ACCESS_WRITE } from "../arch/access.js";
import { toU64, type U64Input } from "../arch/u64.js";
import { CR0_PE, PTE_A, PTE_D, PTE_G, PTE_P, PTE_PS, PTE_RW, PTE_US, PTE_XD_HI } from "../arch/x86.js";
import type { Vcpu } from "../vm/vcpu.js";
import { ACCESS_OK } from "../vm/vcpu.js";
import type { Vm } from "../vm/vm.js";
import {
  type MemoryCounts,
  PAGE_FREE,
  PAGE_KERNEL_TABLE,
  PAGE_USER,
  PAGE_USER_TABLE,
  PageAllocator,
} from "./allocator.js";
import {
  cr4WithPcid,
  type GuestLayout,
  type GuestPagingMode,
  guestLayout,
  indexOf,
  levelPages,
  vpnToVa,
} from "./layout.js";
import { Digest, GuestIntegrityError, ValueModel } from "./model.js";
import { KERNEL_SHARED, NativePagingOps, type PagingOps, type PteWrite } from "./paravirt.js";

/** mmap / mprotect protection bits. */
export const PROT_NONE = 0;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const PROT_EXEC = 4;

/** Linux's tlb_single_page_flush_ceiling: more pages than this get a full flush. */
export const FLUSH_CEILING = 33;

/** Software bit (ignored by hardware) marking a PROT_NONE entry that keeps its frame. */
const SOFT_PROTNONE = 1 << 9;

/** Access descriptors: supervisor (kernel) and user. */
const SUP_READ = 0;
const SUP_WRITE = ACCESS_WRITE;
const USER_READ = ACCESS_USER;
const USER_WRITE = ACCESS_USER | ACCESS_WRITE;
const USER_FETCH = ACCESS_USER | ACCESS_FETCH;

export type TouchKind = "read" | "write" | "fetch";

export interface GuestOsOptions {
  /** Guest paging mode. */
  mode: GuestPagingMode;
  /** vCPUs to create on the VM (default 1). */
  cpus?: number;
  /** 4/5-level: PCIDs per address space (CR4.PCIDE), so switching back can keep TLB entries. */
  pcid?: boolean;
  /** 32-bit: 4 MiB pages (CR4.PSE); default true. */
  pse?: boolean;
  /** 4/5-level: 1 GiB direct-map pages; default: whether the CPU has them. */
  gbPages?: boolean;
  /** RAM as [first gfn, pages] ranges; default: every writable, non-private memslot. */
  ram?: readonly (readonly [number, number])[];
  /** The paging operations (default `NativePagingOps`); a function gets the layout. */
  ops?: PagingOps | ((layout: GuestLayout) => PagingOps);
  /** Invalidate on other vCPUs (default true). false exists to show what goes wrong without it. */
  shootdown?: boolean;
  /** Pages above which a flush is a full flush instead of INVLPGs (default 33). */
  flushCeiling?: number;
  /** RAM is zero when the kernel boots (a fresh VM): pages never used need no clearing. Default true. */
  ramZeroed?: boolean;
}

export interface Vma {
  /** First virtual page and the page after the last. */
  start: number;
  end: number;
  prot: number;
  /** Fault in huge pages (2 MiB, 4 MiB in 32-bit PSE mode) where alignment and RAM allow. */
  huge: boolean;
  name: string;
}

export interface Signal {
  signal: "SIGSEGV";
  va: bigint;
  kind: TouchKind;
  /** The #PF error code (or 0 for a #GP on a non-canonical address). */
  errorCode: number;
  vector: number;
}

export type TouchResult =
  | { ok: true; value: number }
  | { ok: false; error: "SIGSEGV"; signal: Signal }
  | { ok: false; error: "ENOMEM" };

export type PidResult = { ok: true; pid: number } | { ok: false; error: "ENOMEM" };
export type MapResult = { ok: true; va: bigint } | { ok: false; error: "ENOMEM" };
export type OpResult = { ok: true } | { ok: false; error: "ENOMEM" };

export interface AgeResult {
  /** Present leaf entries examined. */
  scanned: number;
  /** Linear addresses of the pages (leaf entries) accessed since the last scan. */
  young: bigint[];
}

export interface GuestStats {
  pageFaults: number;
  demandFaults: number;
  hugeFaults: number;
  hugeFallbacks: number;
  cowBreaks: number;
  /** Write faults on read-only entries of exclusively owned pages: made writable in place. */
  writeUpgrades: number;
  spuriousFaults: number;
  segv: number;
  oom: number;
  invlpg: number;
  fullFlushes: number;
  shootdownIpis: number;
  cr3Writes: number;
  cr3NoFlush: number;
  tablesAllocated: number;
  tablesFreed: number;
  pagesZeroed: number;
  pagesCopied: number;
  spawns: number;
  forks: number;
  execs: number;
  exits: number;
}

/** One process (one address space; several vCPUs may run it, like threads). */
export class Process {
  readonly vmas: Vma[] = [];
  model = new ValueModel();
  readonly signals: Signal[] = [];
  /** vCPU indices whose current address space is this one (change with `activate`/`deactivate`). */
  readonly activeOn = new Set<number>();
  /** The lowest index in `activeOn`, or -1: the vCPU the kernel uses on this process's behalf. */
  firstCpu = -1;
  /** Index in `vmas` of the VMA `vmaAt` found last. */
  private vmaHint = 0;
  /** Bumped on every invalidation; a vCPU that saw an older value flushes this PCID on switch-in. */
  tlbGen = 0;
  brkStart = 0;
  brkEnd = 0;
  /** PAE: the three preallocated user page directories (PDPTEs 0..2 never change). */
  readonly paeDirs: number[] = [];

  constructor(
    readonly pid: number,
    readonly root: number,
    readonly pcid: number,
  ) {}

  /** The VMA holding `vpn`. VMAs never overlap, so the last one found is checked first. */
  vmaAt(vpn: number): Vma | undefined {
    const vmas = this.vmas;
    const h = vmas[this.vmaHint];
    if (h !== undefined && vpn >= h.start && vpn < h.end) return h;
    for (let i = 0; i < vmas.length; i++) {
      const v = vmas[i];
      if (vpn >= v.start && vpn < v.end) {
        this.vmaHint = i;
        return v;
      }
    }
    return undefined;
  }

  activate(cpu: number): void {
    this.activeOn.add(cpu);
    if (this.firstCpu < 0 || cpu < this.firstCpu) this.firstCpu = cpu;
  }

  deactivate(cpu: number): void {
    this.activeOn.delete(cpu);
    if (cpu === this.firstCpu) {
      this.firstCpu = -1;
      for (const c of this.activeOn) if (this.firstCpu < 0 || c < this.firstCpu) this.firstCpu = c;
    }
  }
}

interface CpuSlot {
  current: Process | null;
  /** PCID → the process and tlbGen its TLB entries on this vCPU are current for. */
  seen: Map<number, { pid: number; gen: number }>;
}

const LOOKUP_OK = 0;
const LOOKUP_MISSING = 1;
const LOOKUP_OOM = 2;

const TWO32 = 2 ** 32;

/** `touchPage` outcomes. */
export const TOUCH_OK = 0;
export const TOUCH_SEGV = 1;
export const TOUCH_ENOMEM = 2;
export type TouchStatus = typeof TOUCH_OK | typeof TOUCH_SEGV | typeof TOUCH_ENOMEM;

const vaOf = (vpn: number, offset: number): bigint => (BigInt(vpn) << 12n) | BigInt(offset);

export class GuestOs {
  readonly layout: GuestLayout;
  readonly ops: PagingOps;
  readonly alloc: PageAllocator;
  readonly vcpus: Vcpu[] = [];
  readonly stats: GuestStats = {
    pageFaults: 0,
    demandFaults: 0,
    hugeFaults: 0,
    hugeFallbacks: 0,
    cowBreaks: 0,
    writeUpgrades: 0,
    spuriousFaults: 0,
    segv: 0,
    oom: 0,
    invlpg: 0,
    fullFlushes: 0,
    shootdownIpis: 0,
    cr3Writes: 0,
    cr3NoFlush: 0,
    tablesAllocated: 0,
    tablesFreed: 0,
    pagesZeroed: 0,
    pagesCopied: 0,
    spawns: 0,
    forks: 0,
    execs: 0,
    exits: 0,
  };
  /** The kernel root (swapper_pg_dir): kernel half only; idle vCPUs run on it. */
  readonly kernelRoot: number;
  /** Allocator counts right after boot: every exit together returns to these. */
  readonly bootMemory: MemoryCounts;
  shootdown: boolean;

  private readonly procs = new Map<number, Process>();
  private readonly cpuSlots: CpuSlot[] = [];
  private readonly pcids: Uint8Array;
  private readonly everUsed: Uint8Array;
  private readonly ramZeroed: boolean;
  private readonly flushCeiling: number;
  private readonly digestHash = new Digest();
  private nextPid = 1;
  private booting = true;
  private readonly dbHi: number;
  /** Highest virtual page number: 32-bit linear addresses in 32-bit and PAE modes, 64-bit otherwise. */
  private readonly maxVpn: number;
  /** The value the last successful `touchPage` loaded or stored. */
  touchValue = 0;
  private lastSignal: Signal | null = null;
  /** The process `proc` found last (pids are never reused). */
  private lastProc: Process | null = null;
  private readonly dbLo: number;
  /** The last entry `read` returned, and where `lookup` stopped. */
  private elo = 0;
  private ehi = 0;
  private eTable = 0;
  private eIndex = 0;
  private eLevel = 0;

  constructor(
    readonly vm: Vm,
    o: GuestOsOptions,
  ) {
    const cpus = o.cpus ?? 1;
    if (!Number.isInteger(cpus) || cpus < 1 || cpus > 64) throw new RangeError(`cpus ${cpus} is not 1..64`);
    if (o.pcid && !vm.cpu.pcid) throw new RangeError("the CPU model has no PCID");
    if (o.mode === "5level" && !vm.cpu.la57) throw new RangeError("the CPU model has no 5-level paging");
    this.layout = guestLayout(o.mode, {
      pse: o.pse,
      pcid: o.pcid,
      gbPages: (o.gbPages ?? true) && vm.cpu.gbPages,
    });
    const l = this.layout;
    this.ops = typeof o.ops === "function" ? o.ops(l) : (o.ops ?? new NativePagingOps(l));
    this.shootdown = o.shootdown ?? true;
    this.flushCeiling = o.flushCeiling ?? FLUSH_CEILING;
    this.ramZeroed = o.ramZeroed ?? true;
    this.dbHi = Number(l.directBase >> 32n);
    this.maxVpn = l.levels <= 3 ? 2 ** 20 - 1 : 2 ** 52 - 1;
    this.dbLo = Number(l.directBase & 0xffffffffn);

    const ram = (
      o.ram ??
      vm.memslots
        .list()
        .filter((s) => !s.flags.readOnly && !s.flags.private)
        .map((s) => [s.baseGfn, s.pages] as const)
    ).map(([first, pages]) => {
      if (!Number.isSafeInteger(first) || !Number.isSafeInteger(pages) || first < 0 || pages < 0)
        throw new RangeError(`RAM range [${first}, +${pages}) is not a range of frames`);
      return [first, Math.max(0, Math.min(first + pages, l.directLimit / 4096) - first)] as const;
    });
    const frames = ram.reduce((m, [f, p]) => Math.max(m, f + p), 0);
    if (frames === 0) throw new RangeError("the guest has no RAM (no writable memslot)");
    // Boot writes physical memory with paging off: linear addresses are 32 bits.
    if (ram.every(([f]) => f >= 0x100000)) throw new RangeError("the guest needs RAM below 4 GiB to boot");
    this.alloc = new PageAllocator(frames, ram);
    this.everUsed = new Uint8Array(frames);
    this.pcids = new Uint8Array(4096);
    this.pcids[0] = 1;

    for (let i = 0; i < cpus; i++) {
      this.vcpus.push(vm.createVcpu());
      this.cpuSlots.push({ current: null, seen: new Map() });
    }
    this.kernelRoot = this.boot(ram);
    this.bootMemory = this.alloc.snapshot();
  }

  // -------------------------------------------------------------------------------------
  // (i) Boot

  private boot(ram: readonly (readonly [number, number])[]): number {
    const l = this.layout;
    const cpu = this.vcpus[0];
    // Paging off, but CR4 and EFER already as they will be (EFER.LME takes effect with CR0.PG).
    cpu.setState({ cr0: BigInt(CR0_PE), cr4: BigInt(l.cr4), efer: BigInt(l.efer), cr3: 0n });
    const root = this.newTable(cpu, PAGE_KERNEL_TABLE, l.levels, KERNEL_SHARED);
    if (root < 0) throw new RangeError("guest RAM too small to boot");
    const leafHi = l.nx ? PTE_XD_HI : 0;
    for (const [first, pages] of ram) {
      let g = first;
      const end = first + pages;
      while (g < end) {
        let level = l.directHugeLevel;
        while (level > 1 && (g % levelPages(l, level) !== 0 || g + levelPages(l, level) > end)) level--;
        const vpn = Number(l.directBase >> 12n) + g;
        if (this.lookupIn(cpu, root, KERNEL_SHARED, vpn, level, true, PAGE_KERNEL_TABLE) !== LOOKUP_OK)
          throw new RangeError("guest RAM too small for the direct map's tables");
        const lo = PTE_P | PTE_RW | PTE_G | (level > 1 ? PTE_PS : 0);
        this.writeEntry(
          cpu,
          KERNEL_SHARED,
          vpn,
          level,
          true,
          lo | this.frameLo(g * 4096),
          leafHi | this.frameHi(g * 4096),
        );
        g += levelPages(l, level);
      }
    }
    this.booting = false;
    cpu.writeCr3(BigInt(root));
    cpu.writeControl("cr0", BigInt(l.cr0));
    if (l.pcid) cpu.writeControl("cr4", BigInt(cr4WithPcid(l)));
    this.stats.cr3Writes++;
    const regs = { cr0: BigInt(l.cr0), cr4: BigInt(cr4WithPcid(l)), efer: BigInt(l.efer), cr3: BigInt(root) };
    for (let i = 1; i < this.vcpus.length; i++) this.vcpus[i].setState(regs);
    for (const s of this.cpuSlots) s.seen.set(0, { pid: 0, gen: 0 });
    return root;
  }

  // -------------------------------------------------------------------------------------
  // (ii) Tables

  /** Linear address (hi, lo) at which the kernel reaches guest-physical `gpa`. */
  private linHi(gpa: number): number {
    if (this.booting) return 0;
    const lo = this.dbLo + (gpa % TWO32);
    return (this.dbHi + Math.floor(gpa / TWO32) + (lo >= TWO32 ? 1 : 0)) >>> 0;
  }

  private linLo(gpa: number): number {
    return this.booting ? gpa : (this.dbLo + (gpa % TWO32)) % TWO32;
  }

  /** Reads entry `index` of the table at `table` into elo/ehi. */
  private read(cpu: Vcpu, table: number, index: number): void {
    const a = table + index * this.layout.entryBytes;
    const hi = this.linHi(a);
    const lo = this.linLo(a);
    this.elo = cpu.read32(hi, lo, SUP_READ) >>> 0;
    if (cpu.status !== ACCESS_OK) this.kernelFault(cpu, a);
    if (this.layout.entryBytes === 8) {
      this.ehi = cpu.read32(hi, lo + 4, SUP_READ) >>> 0;
      if (cpu.status !== ACCESS_OK) this.kernelFault(cpu, a + 4);
    } else this.ehi = 0;
  }

  private kernelFault(cpu: Vcpu, gpa: number): never {
    throw new GuestIntegrityError(
      0,
      this.layout.directBase + BigInt(gpa),
      "a direct-map access",
      `#${cpu.fault.vector === 14 ? "PF" : "GP"} error 0x${cpu.fault.errorCode.toString(16)}`,
      "the kernel's own direct map faulted",
    );
  }

  /** Entry bits for a frame address. */
  private frameLo(gpa: number): number {
    return (gpa % TWO32) >>> 0;
  }

  private frameHi(gpa: number): number {
    return this.layout.entryBytes === 8 ? Math.floor(gpa / TWO32) : 0;
  }

  /** The frame address an entry at `level` holds (leaf or table). */
  private entryGpa(lo: number, hi: number, level: number, leaf: boolean): number {
    const l = this.layout;
    if (l.entryBytes === 4) return leaf && level > 1 ? (lo & 0xffc00000) >>> 0 : (lo & 0xfffff000) >>> 0;
    const a = (hi & 0xfffff) * TWO32 + ((lo & 0xfffff000) >>> 0);
    return leaf && level > 1 ? a - (a % (levelPages(l, level) * 4096)) : a;
  }

  /** A non-zero entry at `level` that is a leaf (a PTE, a PS=1 entry, or a PROT_NONE huge leaf). */
  private isLeaf(level: number, lo: number): boolean {
    return level === 1 || (lo & PTE_PS) !== 0;
  }

  /** Allocates and clears a table, announces it; -1 when RAM is out. */
  private newTable(cpu: Vcpu, use: number, level: number, root: number): number {
    const g = this.alloc.alloc(use);
    if (g < 0) return -1;
    this.clearFrames(cpu, g, 1);
    this.stats.tablesAllocated++;
    if (!this.booting)
      this.ops.allocTable(cpu, g * 4096, level, root < 0 && use === PAGE_USER_TABLE ? g * 4096 : root);
    return g * 4096;
  }

  private freeTable(cpu: Vcpu, gpa: number, level: number): void {
    this.ops.releaseTable(cpu, gpa, level);
    this.alloc.release(gpa / 4096);
    this.stats.tablesFreed++;
  }

  /**
   * Walks `root` down to the entry for `vpn` at `target` (or a leaf above it), creating
   * missing tables (of `use`) when `create`. Sets eTable/eIndex/eLevel and elo/ehi.
   */
  private lookupIn(
    cpu: Vcpu,
    root: number,
    owner: number,
    vpn: number,
    target: number,
    create: boolean,
    use: number,
  ): number {
    const l = this.layout;
    let table = root;
    for (let level = l.levels; ; level--) {
      const index = indexOf(l, vpn, level);
      this.read(cpu, table, index);
      this.eTable = table;
      this.eIndex = index;
      this.eLevel = level;
      if (level === target) return LOOKUP_OK;
      const lo = this.elo;
      const hi = this.ehi;
      if (lo === 0 && hi === 0) {
        if (!create) return LOOKUP_MISSING;
        const t = this.newTable(cpu, use, level - 1, owner);
        if (t < 0) return LOOKUP_OOM;
        // PAE PDPTEs have only P among the flags (R/W and U/S are reserved there).
        const flags =
          l.mode === "pae" && level === 3 ? PTE_P : PTE_P | PTE_RW | (use === PAGE_USER_TABLE ? PTE_US : 0);
        const baseVpn = vpn - (vpn % levelPages(l, level));
        this.writeEntry(
          cpu,
          owner,
          baseVpn,
          level,
          false,
          flags | this.frameLo(t),
          this.frameHi(t),
          table,
          index,
        );
        table = t;
      } else if (this.isLeaf(level, lo)) return LOOKUP_OK;
      else table = this.entryGpa(lo, hi, level, false);
    }
  }

  /**
   * Writes an entry: during boot a physical store (paging is off), afterwards through the
   * paging ops (leaf → setPte, table link → setUpper). Position from the last lookup unless given.
   */
  private writeEntry(
    cpu: Vcpu,
    root: number,
    vpn: number,
    level: number,
    leaf: boolean,
    lo: number,
    hi: number,
    table = this.eTable,
    index = this.eIndex,
  ): void {
    const w: PteWrite = { root, va: vpnToVa(vpn), level, tableGpa: table, index, lo: lo >>> 0, hi: hi >>> 0 };
    if (this.booting) {
      const a = BigInt(table + index * this.layout.entryBytes);
      const r =
        this.layout.entryBytes === 8
          ? cpu.store(a, 8, (BigInt(w.hi) << 32n) | BigInt(w.lo))
          : cpu.store(a, 4, w.lo);
      if (!r.ok) throw new Error(`guest boot: physical store at 0x${a.toString(16)} faulted`);
    } else if (leaf) this.ops.setPte(cpu, w);
    else this.ops.setUpper(cpu, w);
  }

  /** clear_page for `pages` frames from `gfn`, through the direct map. */
  private clearFrames(cpu: Vcpu, gfn: number, pages: number): void {
    for (let g = gfn; g < gfn + pages; g++) {
      const used = this.everUsed[g];
      this.everUsed[g] = 1;
      if (used === 0 && this.ramZeroed) continue;
      this.stats.pagesZeroed++;
      const base = g * 4096;
      const hi = this.linHi(base);
      const lo = this.linLo(base);
      for (let off = 0; off < 4096; off += 4) {
        cpu.write32(hi, lo + off, SUP_WRITE, 0);
        if (cpu.status !== ACCESS_OK) this.kernelFault(cpu, base + off);
      }
    }
  }

  /** copy_page for `pages` frames, through the direct map. */
  private copyFrames(cpu: Vcpu, from: number, to: number, pages: number): void {
    for (let i = 0; i < pages; i++) {
      this.everUsed[to + i] = 1;
      this.stats.pagesCopied++;
      const s = (from + i) * 4096;
      const d = (to + i) * 4096;
      const sh = this.linHi(s);
      const sl = this.linLo(s);
      const dh = this.linHi(d);
      const dl = this.linLo(d);
      for (let off = 0; off < 4096; off += 4) {
        const v = cpu.read32(sh, sl + off, SUP_READ);
        if (cpu.status !== ACCESS_OK) this.kernelFault(cpu, s + off);
        cpu.write32(dh, dl + off, SUP_WRITE, v);
        if (cpu.status !== ACCESS_OK) this.kernelFault(cpu, d + off);
      }
    }
  }

  /**
   * Visits every leaf entry of `p`'s user half mapping pages in [first, end): fn gets the
   * entry's table, index, level, first page and value.
   */
  private forEachLeaf(
    cpu: Vcpu,
    p: Process,
    first: number,
    end: number,
    fn: (table: number, index: number, level: number, vpn: number, lo: number, hi: number) => void,
  ): void {
    const l = this.layout;
    const visit = (table: number, level: number, base: number): void => {
      const span = levelPages(l, level);
      const n = level === l.levels ? l.userRootEnd : l.entries[level];
      const i0 = Math.max(0, Math.floor((first - base) / span));
      const i1 = Math.min(n, Math.ceil((end - base) / span));
      for (let i = i0; i < i1; i++) {
        this.read(cpu, table, i);
        const lo = this.elo;
        const hi = this.ehi;
        if (lo === 0 && hi === 0) continue;
        const vpn = base + i * span;
        if (this.isLeaf(level, lo)) fn(table, i, level, vpn, lo, hi);
        else visit(this.entryGpa(lo, hi, level, false), level - 1, vpn);
      }
    };
    visit(p.root, l.levels, 0);
  }

  // -------------------------------------------------------------------------------------
  // (iii) Address spaces and context switches

  private proc(pid: number): Process {
    if (pid === this.lastProc?.pid) return this.lastProc;
    const p = this.procs.get(pid);
    if (!p) throw new RangeError(`no process ${pid}`);
    this.lastProc = p;
    return p;
  }

  /** Live processes' ids, ascending. */
  get pids(): number[] {
    return [...this.procs.keys()].sort((a, b) => a - b);
  }

  process(pid: number): Process {
    return this.proc(pid);
  }

  /** The vCPU the kernel runs on for work on `p`: one running it, else vCPU 0. */
  private kernelCpu(p: Process | null): number {
    return p !== null && p.firstCpu >= 0 ? p.firstCpu : 0;
  }

  /** pgd_alloc: a root with the kernel half linked in (PAE: with its three user PDs). */
  private newAddressSpace(cpu: Vcpu): Process | null {
    const l = this.layout;
    const root = this.newTable(cpu, PAGE_USER_TABLE, l.levels, -1);
    if (root < 0) return null;
    let pcid = 0;
    if (l.pcid) {
      pcid = this.pcids.indexOf(0);
      if (pcid < 0) pcid = 0;
      else this.pcids[pcid] = 1;
    }
    const p = new Process(this.nextPid++, root, pcid);
    for (let i = l.userRootEnd; i < l.entries[l.levels]; i++) {
      this.read(cpu, this.kernelRoot, i);
      if (this.elo === 0 && this.ehi === 0) continue;
      const vpn = i * levelPages(l, l.levels);
      this.writeEntry(cpu, root, vpn, l.levels, false, this.elo, this.ehi, root, i);
    }
    if (l.mode === "pae")
      for (let i = 0; i < 3; i++) {
        const pd = this.newTable(cpu, PAGE_USER_TABLE, 2, root);
        if (pd < 0) {
          this.freeAddressSpace(cpu, p);
          return null;
        }
        p.paeDirs.push(pd);
        this.writeEntry(
          cpu,
          root,
          i * levelPages(l, 3),
          3,
          false,
          PTE_P | this.frameLo(pd),
          this.frameHi(pd),
          root,
          i,
        );
      }
    this.procs.set(p.pid, p);
    return p;
  }

  /** Frees a root (and PAE PDs) whose user half is already empty. */
  private freeAddressSpace(cpu: Vcpu, p: Process): void {
    for (const pd of p.paeDirs) this.freeTable(cpu, pd, 2);
    this.freeTable(cpu, p.root, this.layout.levels);
    if (p.pcid !== 0) this.pcids[p.pcid] = 0;
    this.procs.delete(p.pid);
    if (this.lastProc === p) this.lastProc = null;
  }

  /** Makes vCPU `index` run `p` (null: the kernel root, idle). */
  private load(index: number, p: Process | null): void {
    const slot = this.cpuSlots[index];
    const cpu = this.vcpus[index];
    slot.current?.deactivate(index);
    const root = p ? p.root : this.kernelRoot;
    const pcid = p ? p.pcid : 0;
    let cr3 = BigInt(root) | BigInt(pcid);
    if (this.layout.pcid) {
      const owner = p ? p.pid : 0;
      const gen = p ? p.tlbGen : 0;
      const seen = slot.seen.get(pcid);
      // The TLB's entries for this PCID are current: keep them (CR3 bit 63, SDM 4.10.4.1).
      if (seen && seen.pid === owner && seen.gen === gen) {
        cr3 |= 1n << 63n;
        this.stats.cr3NoFlush++;
      }
      slot.seen.set(pcid, { pid: owner, gen });
    }
    this.ops.newPageTable(cpu, root, cr3);
    this.stats.cr3Writes++;
    slot.current = p;
    p?.activate(index);
  }

  /** Runs `pid` on vCPU `cpuIndex` (a context switch: CR3 write unless already current). */
  switchTo(pid: number, cpuIndex = 0): void {
    const p = this.proc(pid);
    this.checkCpu(cpuIndex);
    if (this.cpuSlots[cpuIndex].current !== p) this.load(cpuIndex, p);
  }

  /** Puts vCPU `cpuIndex` on the kernel root (idle). */
  idle(cpuIndex = 0): void {
    this.checkCpu(cpuIndex);
    if (this.cpuSlots[cpuIndex].current !== null) this.load(cpuIndex, null);
  }

  /** The process vCPU `cpuIndex` runs (undefined when idle). */
  current(cpuIndex = 0): number | undefined {
    this.checkCpu(cpuIndex);
    return this.cpuSlots[cpuIndex].current?.pid;
  }

  private checkCpu(i: number): void {
    if (!Number.isInteger(i) || i < 0 || i >= this.vcpus.length)
      throw new RangeError(`vCPU ${i} does not exist (the guest has ${this.vcpus.length})`);
  }

  // -------------------------------------------------------------------------------------
  // (iv) VMAs

  private standardVmas(p: Process): void {
    const l = this.layout;
    p.vmas.length = 0;
    p.vmas.push({
      start: l.textVpn,
      end: l.textVpn + 16,
      prot: PROT_READ | PROT_EXEC,
      huge: false,
      name: "text",
    });
    p.vmas.push({
      start: l.textVpn + 16,
      end: l.textVpn + 32,
      prot: PROT_READ | PROT_WRITE,
      huge: false,
      name: "data",
    });
    p.vmas.push({
      start: l.stackTopVpn - 31,
      end: l.stackTopVpn + 1,
      prot: PROT_READ | PROT_WRITE,
      huge: false,
      name: "stack",
    });
    p.brkStart = p.brkEnd = l.textVpn + 64;
    this.sortVmas(p);
  }

  private sortVmas(p: Process): void {
    p.vmas.sort((a, b) => a.start - b.start);
  }

  private hugePages(): number {
    return levelPages(this.layout, this.layout.userHugeLevel);
  }

  private pageRange(va: U64Input, length: number, what: string): [number, number] {
    const v = toU64(va, `${what} address`);
    if (v % 4096n !== 0n) throw new RangeError(`${what}: 0x${v.toString(16)} is not page aligned`);
    if (!Number.isSafeInteger(length) || length <= 0)
      throw new RangeError(`${what}: length ${length} is not positive`);
    const first = Number(v >> 12n);
    const end = first + Math.ceil(length / 4096);
    if (first < this.layout.userFirstVpn || end > this.layout.userEndVpn)
      throw new RangeError(`${what}: [0x${v.toString(16)}, +0x${length.toString(16)}) is outside user space`);
    return [first, end];
  }

  private checkProt(prot: number): void {
    if (!Number.isInteger(prot) || prot < 0 || prot > 7)
      throw new RangeError(`protection ${prot} is not PROT_* bits`);
  }

  /** Splits VMAs at `vpn` so no VMA straddles it; huge VMAs only at huge-page boundaries. */
  private splitAt(p: Process, vpn: number): void {
    const v = p.vmaAt(vpn);
    if (!v || v.start === vpn) return;
    if (v.huge && vpn % this.hugePages() !== 0)
      throw new RangeError(`0x${vpnToVa(vpn).toString(16)} splits a huge page of VMA ${v.name}`);
    p.vmas.push({ ...v, start: vpn });
    v.end = vpn;
    this.sortVmas(p);
  }

  /**
   * mmap(NULL or `at`, length, prot, MAP_PRIVATE | MAP_ANONYMOUS [| MAP_FIXED]): a new VMA,
   * no pages yet (demand paging). Huge VMAs are aligned and sized in huge pages.
   */
  mmap(pid: number, length: number, prot: number, o: { huge?: boolean; at?: U64Input } = {}): MapResult {
    const p = this.proc(pid);
    this.checkProt(prot);
    if (!Number.isSafeInteger(length) || length <= 0)
      throw new RangeError(`mmap length ${length} is not positive`);
    const huge = (o.huge ?? false) && this.layout.userHugeLevel > 1;
    const align = huge ? this.hugePages() : 1;
    const pages = Math.ceil(length / 4096 / align) * align;
    let start: number;
    if (o.at !== undefined) {
      [start] = this.pageRange(o.at, pages * 4096, "mmap");
      if (start % align !== 0) throw new RangeError("mmap: a huge mapping must be huge-page aligned");
      this.munmap(pid, vpnToVa(start), pages * 4096);
    } else {
      // Top-down from mmapTop, first fit below every VMA above it.
      let top = this.layout.mmapTopVpn;
      const sorted = [...p.vmas].sort((a, b) => b.start - a.start);
      start = -1;
      for (;;) {
        const cand = Math.floor((top - pages) / align) * align;
        if (cand < this.layout.userFirstVpn) break;
        const hit = sorted.find((v) => v.start < cand + pages && v.end > cand);
        if (!hit) {
          start = cand;
          break;
        }
        top = hit.start;
      }
      if (start < 0 || start < p.brkEnd) return { ok: false, error: "ENOMEM" };
    }
    p.vmas.push({ start, end: start + pages, prot, huge, name: huge ? "anon-huge" : "anon" });
    this.sortVmas(p);
    return { ok: true, va: vpnToVa(start) };
  }

  /** munmap: drops the VMAs, pages and empty tables of the range, then invalidates. */
  munmap(pid: number, va: U64Input, length: number): void {
    const p = this.proc(pid);
    const [first, end] = this.pageRange(va, length, "munmap");
    this.splitAt(p, first);
    this.splitAt(p, end);
    for (let i = p.vmas.length - 1; i >= 0; i--)
      if (p.vmas[i].start >= first && p.vmas[i].end <= end) p.vmas.splice(i, 1);
    if (p.brkEnd > first && p.brkStart < end) p.brkEnd = Math.max(p.brkStart, Math.min(p.brkEnd, first));
    this.zapRange(p, first, end, true);
    p.model.drop(first, end);
  }

  /**
   * mprotect: new protections for the VMAs of the range (all of it must be mapped), then
   * every present entry rewritten. Removing W or X, or going to PROT_NONE, invalidates;
   * adding rights does not (SDM 4.10.4.3), and W is granted lazily by the write fault so
   * copy-on-write pages stay protected.
   */
  mprotect(pid: number, va: U64Input, length: number, prot: number): OpResult {
    const p = this.proc(pid);
    this.checkProt(prot);
    const [first, end] = this.pageRange(va, length, "mprotect");
    for (let v = first; v < end; ) {
      const m = p.vmaAt(v);
      if (!m) return { ok: false, error: "ENOMEM" };
      v = m.end;
    }
    this.splitAt(p, first);
    this.splitAt(p, end);
    for (const m of p.vmas) if (m.start >= first && m.end <= end) m.prot = prot;
    const ci = this.kernelCpu(p);
    const cpu = this.vcpus[ci];
    const flush: number[] = [];
    this.forEachLeaf(cpu, p, first, end, (table, index, level, vpn, lo, hi) => {
      const present = (lo & PTE_P) !== 0;
      const frame = this.entryGpa(lo, hi, level, true);
      const writable = present && (lo & PTE_RW) !== 0 && (prot & PROT_WRITE) !== 0;
      const [nlo, nhi] = this.leafBits(prot, writable, level, frame, lo & (PTE_A | PTE_D));
      if (nlo === lo && nhi === hi) return;
      const lessPermissive =
        present &&
        ((nlo & PTE_P) === 0 ||
          ((lo & PTE_RW) !== 0 && (nlo & PTE_RW) === 0) ||
          ((hi & PTE_XD_HI) === 0 && (nhi & PTE_XD_HI) !== 0));
      this.writeEntry(cpu, p.root, vpn, level, true, nlo, nhi, table, index);
      if (lessPermissive) flush.push(vpn);
    });
    this.flushPages(p, flush, ci);
    return { ok: true };
  }

  /**
   * brk: grows (or shrinks) the heap after the data segment by `increment` bytes (rounded
   * to pages). Returns the old break.
   */
  brk(pid: number, increment: number): MapResult {
    const p = this.proc(pid);
    if (!Number.isSafeInteger(increment))
      throw new RangeError(`brk increment ${increment} is not an integer`);
    const old = p.brkEnd;
    const pages = Math.ceil(Math.abs(increment) / 4096) * Math.sign(increment);
    if (pages === 0) return { ok: true, va: vpnToVa(old) };
    if (pages < 0) {
      const to = Math.max(p.brkStart, old + pages);
      if (to < old) this.munmap(pid, vpnToVa(to), (old - to) * 4096);
      p.brkEnd = to;
      return { ok: true, va: vpnToVa(old) };
    }
    const to = old + pages;
    if (p.vmas.some((v) => v.name !== "heap" && v.start < to && v.end > old))
      return { ok: false, error: "ENOMEM" };
    const heap = p.vmas.find((v) => v.name === "heap" && v.end === old);
    if (heap) heap.end = to;
    else {
      p.vmas.push({ start: old, end: to, prot: PROT_READ | PROT_WRITE, huge: false, name: "heap" });
      this.sortVmas(p);
    }
    p.brkEnd = to;
    return { ok: true, va: vpnToVa(old) };
  }

  /** Leaf entry bits for protection `prot`. */
  private leafBits(
    prot: number,
    writable: boolean,
    level: number,
    frame: number,
    keepAd: number,
  ): [number, number] {
    const ps = level > 1 ? PTE_PS : 0;
    const lo = this.frameLo(frame);
    const hi = this.frameHi(frame);
    if (prot === PROT_NONE) return [(lo | SOFT_PROTNONE | ps) >>> 0, hi];
    const xd = this.layout.nx && (prot & PROT_EXEC) === 0 ? PTE_XD_HI : 0;
    return [(lo | PTE_P | PTE_US | (writable ? PTE_RW : 0) | ps | keepAd) >>> 0, (hi | xd) >>> 0];
  }

  /**
   * Clears every leaf in [first, end) (dropping page references), frees tables left empty,
   * and invalidates (when `flush`) before the freed tables are released.
   */
  private zapRange(p: Process, first: number, end: number, flush: boolean): void {
    const l = this.layout;
    const ci = this.kernelCpu(p);
    const cpu = this.vcpus[ci];
    const flushList: number[] = [];
    const freed: [number, number][] = [];
    let unlinked = -1;
    const visit = (table: number, level: number, base: number): boolean => {
      const span = levelPages(l, level);
      const n = level === l.levels ? l.userRootEnd : l.entries[level];
      const i0 = Math.max(0, Math.floor((first - base) / span));
      const i1 = Math.min(n, Math.ceil((end - base) / span));
      let changed = false;
      for (let i = i0; i < i1; i++) {
        this.read(cpu, table, i);
        const lo = this.elo;
        const hi = this.ehi;
        if (lo === 0 && hi === 0) continue;
        const vpn = base + i * span;
        if (this.isLeaf(level, lo)) {
          this.alloc.put(this.entryGpa(lo, hi, level, true) / 4096, span);
          this.writeEntry(cpu, p.root, vpn, level, true, 0, 0, table, i);
          if (lo & PTE_P) flushList.push(vpn);
          changed = true;
        } else {
          const child = this.entryGpa(lo, hi, level, false);
          const empty = visit(child, level - 1, vpn);
          // PAE page directories are preallocated for the life of the address space.
          if (empty && !(l.mode === "pae" && level === 3)) {
            this.writeEntry(cpu, p.root, vpn, level, false, 0, 0, table, i);
            freed.push([child, level - 1]);
            if (unlinked < 0) unlinked = vpn;
            changed = true;
          }
        }
      }
      // A table wholly inside the range is now empty; a partly covered one must be looked at.
      if (base >= first && base + span * l.entries[level] <= end) return true;
      return changed && this.tableEmpty(cpu, table, level);
    };
    visit(p.root, l.levels, 0);
    // INVLPG of any address also drops the paging-structure caches (SDM 4.10.4.1).
    if (unlinked >= 0 && flushList.length === 0) flushList.push(unlinked);
    if (flush) this.flushPages(p, flushList, ci);
    for (const [t, level] of freed) this.freeTable(cpu, t, level);
  }

  private tableEmpty(cpu: Vcpu, table: number, level: number): boolean {
    for (let i = 0; i < this.layout.entries[level]; i++) {
      this.read(cpu, table, i);
      if (this.elo !== 0 || this.ehi !== 0) return false;
    }
    return true;
  }

  // -------------------------------------------------------------------------------------
  // (v) The page-fault handler and user accesses

  /**
   * A user access of process `pid` at `va` (4-byte aligned): a 32-bit load, store of
   * `value`, or instruction fetch, on the vCPU running `pid` (it is switched onto vCPU
   * `cpuIndex`, default 0, if no vCPU runs it). Page faults go to the guest's handler and
   * the access is retried; loads are checked against the value model.
   */
  touch(pid: number, va: U64Input, kind: TouchKind = "read", value = 0, cpuIndex?: number): TouchResult {
    const v = toU64(va, "touch address");
    if (v % 4n !== 0n) throw new RangeError(`touch: 0x${v.toString(16)} is not 4-byte aligned`);
    switch (this.touchPage(pid, Number(v >> 12n), Number(v & 0xfffn), kind, value, cpuIndex)) {
      case TOUCH_OK:
        return { ok: true, value: this.touchValue };
      case TOUCH_SEGV:
        return { ok: false, error: "SIGSEGV", signal: this.lastSignal! };
      default:
        return { ok: false, error: "ENOMEM" };
    }
  }

  /**
   * `touch` without BigInt or a result object, for simulators driving millions of
   * accesses: the address is a virtual page number (a safe integer) and a 4-byte aligned
   * byte offset in the page. Returns `TOUCH_OK` (a load's value is then in `touchValue`),
   * `TOUCH_SEGV` (the signal is in `process(pid).signals`) or `TOUCH_ENOMEM`.
   *
   * @example
   * ```ts
   * const os = new GuestOs(vm);
   * const { pid } = os.spawn() as { ok: true; pid: number };
   * const r = os.mmap(pid, 4096, PROT_READ | PROT_WRITE) as { ok: true; va: bigint };
   * const vpn = Number(r.va >> 12n);
   * os.touchPage(pid, vpn, 8, "write", 42);
   * if (os.touchPage(pid, vpn, 8, "read") === TOUCH_OK) console.log(os.touchValue); // 42
   * ```
   */
  touchPage(
    pid: number,
    vpn: number,
    offset: number,
    kind: TouchKind = "read",
    value = 0,
    cpuIndex?: number,
  ): TouchStatus {
    const p = this.proc(pid);
    if (
      !(vpn >= 0 && vpn <= this.maxVpn && Math.floor(vpn) === vpn) ||
      (offset & ~0xffc) !== 0 ||
      offset !== (offset | 0) ||
      value !== value >>> 0 ||
      (kind !== "read" && kind !== "write" && kind !== "fetch")
    )
      throw this.badTouch(vpn, offset, kind, value);
    if (cpuIndex !== undefined || p.firstCpu < 0) this.switchTo(pid, cpuIndex ?? 0);
    const ci = cpuIndex ?? p.firstCpu;
    const cpu = this.vcpus[ci];
    // vpn < 2^52: the high half is vpn / 2^20; ToInt32 keeps the low 20 bits exactly.
    const hi = (vpn / 1048576) >>> 0;
    const lo = (((vpn & 0xfffff) << 12) | offset) >>> 0;
    // The first attempt is the whole access for a TLB hit; faults go to touchFaulted. This
    // function stays small so that V8 inlines the vCPU's hit path into it.
    if (kind === "write") {
      if (!cpu.write32(hi, lo, USER_WRITE, value)) return this.touchFaulted(p, ci, vpn, offset, kind, value);
      return this.touchDone(p, ci, vpn, offset, kind, value);
    }
    const got = cpu.read32(hi, lo, kind === "read" ? USER_READ : USER_FETCH) >>> 0;
    if (cpu.status !== ACCESS_OK) return this.touchFaulted(p, ci, vpn, offset, kind, value);
    return this.touchDone(p, ci, vpn, offset, kind, got);
  }

  /**
   * A completed touch: the VMA must allow it (else the MMU used a stale or wrong
   * translation); a store goes into the value model, a load is checked against it.
   */
  private touchDone(
    p: Process,
    ci: number,
    vpn: number,
    offset: number,
    kind: TouchKind,
    value: number,
  ): TouchStatus {
    const m = p.vmaAt(vpn);
    if (
      m === undefined ||
      m.prot === PROT_NONE ||
      (kind === "write" && (m.prot & PROT_WRITE) === 0) ||
      (kind === "fetch" && this.layout.nx && (m.prot & PROT_EXEC) === 0)
    )
      throw new GuestIntegrityError(
        p.pid,
        vaOf(vpn, offset),
        m ? `a protection fault (VMA prot ${m.prot})` : "a fault (no VMA)",
        `a completed ${kind}`,
        "an access went through a stale or wrong translation",
      );
    const word = offset >>> 2;
    this.touchValue = value;
    if (kind === "write") {
      p.model.store(vpn, word, value);
      return TOUCH_OK;
    }
    const expected = p.model.expected(vpn, word);
    if (value !== expected)
      throw new GuestIntegrityError(p.pid, vaOf(vpn, offset), expected, value, `${kind} on vCPU ${ci}`);
    // Four words: vpn bits 31:0; bit 31 (a load), bit 30 (a fetch), the word index in bits
    // 29:20 and vpn bits 51:32 in bits 19:0; the pid; the value.
    const d = this.digestHash;
    d.mix(vpn | 0);
    d.mix((vpn / 4294967296) | (word << 20) | (kind === "fetch" ? 0xc0000000 : 0x80000000));
    d.mix(p.pid);
    d.mix(value);
    return TOUCH_OK;
  }

  /** A touch whose access faulted: the guest's fault handling, then up to three retries. */
  private touchFaulted(
    p: Process,
    ci: number,
    vpn: number,
    offset: number,
    kind: TouchKind,
    value: number,
  ): TouchStatus {
    const cpu = this.vcpus[ci];
    const d = this.digestHash;
    const hi = (vpn / 1048576) >>> 0;
    const lo = (((vpn & 0xfffff) << 12) | offset) >>> 0;
    for (let attempt = 1; attempt < 4; attempt++) {
      const f = cpu.fault;
      this.stats.pageFaults++;
      const r = f.vector === 14 ? this.pageFault(ci, p, vpn, kind) : "segv";
      if (r === "segv") {
        const s: Signal = {
          signal: "SIGSEGV",
          va: vaOf(vpn, offset),
          kind,
          errorCode: f.errorCode,
          vector: f.vector,
        };
        p.signals.push(s);
        this.lastSignal = s;
        this.stats.segv++;
        d.mix(0x20);
        d.mix(p.pid);
        d.mixNumber(vpn);
        d.mix(f.errorCode);
        return TOUCH_SEGV;
      }
      if (r === "oom") {
        this.stats.oom++;
        d.mix(0x30);
        d.mix(p.pid);
        d.mixNumber(vpn);
        return TOUCH_ENOMEM;
      }
      if (kind === "write") {
        if (cpu.write32(hi, lo, USER_WRITE, value)) return this.touchDone(p, ci, vpn, offset, kind, value);
      } else {
        const got = cpu.read32(hi, lo, kind === "read" ? USER_READ : USER_FETCH) >>> 0;
        if (cpu.status === ACCESS_OK) return this.touchDone(p, ci, vpn, offset, kind, got);
      }
    }
    throw new GuestIntegrityError(
      p.pid,
      vaOf(vpn, offset),
      "the access to complete",
      "repeated page faults",
      "the MMU ignores new entries",
    );
  }

  private badTouch(vpn: number, offset: number, kind: unknown, value: number): RangeError {
    if (value !== value >>> 0)
      return new RangeError(`touch: value ${value} is not a 32-bit unsigned integer`);
    if (kind !== "read" && kind !== "write" && kind !== "fetch")
      return new RangeError(`touch: kind ${String(kind)} is not "read", "write" or "fetch"`);
    return new RangeError(
      `touch: virtual page ${vpn} + offset ${offset} is not a 4-byte aligned ${this.layout.levels <= 3 ? "32" : "64"}-bit linear address`,
    );
  }

  /** The #PF handler: returns "retry", "segv" or "oom". */
  private pageFault(ci: number, p: Process, vpn: number, kind: TouchKind): "retry" | "segv" | "oom" {
    const l = this.layout;
    const cpu = this.vcpus[ci];
    const m = p.vmaAt(vpn);
    if (!m || m.prot === PROT_NONE) return "segv";
    if (kind === "write" && (m.prot & PROT_WRITE) === 0) return "segv";
    if (kind === "fetch" && l.nx && (m.prot & PROT_EXEC) === 0) return "segv";
    const hugeLevel = m.huge ? l.userHugeLevel : 1;
    const st = this.lookupIn(cpu, p.root, p.root, vpn, hugeLevel, true, PAGE_USER_TABLE);
    if (st === LOOKUP_OOM) return "oom";
    let level = this.eLevel;
    let lo = this.elo;
    let hi = this.ehi;
    if (level > 1 && lo !== 0 && !this.isLeaf(level, lo)) {
      // A huge VMA whose range fell back to 4 KiB pages earlier.
      if (this.lookupIn(cpu, p.root, p.root, vpn, 1, true, PAGE_USER_TABLE) === LOOKUP_OOM) return "oom";
      level = 1;
      lo = this.elo;
      hi = this.ehi;
    }
    const base = vpn - (vpn % levelPages(l, level));
    if (lo === 0 && hi === 0) {
      const writable = (m.prot & PROT_WRITE) !== 0;
      if (level > 1) {
        const pages = levelPages(l, level);
        const g = base >= m.start && base + pages <= m.end ? this.alloc.allocHuge(pages) : -1;
        if (g >= 0) {
          this.clearFrames(cpu, g, pages);
          const [nlo, nhi] = this.leafBits(m.prot, writable, level, g * 4096, 0);
          this.writeEntry(cpu, p.root, base, level, true, nlo, nhi);
          this.stats.hugeFaults++;
          this.stats.demandFaults++;
          return "retry";
        }
        this.stats.hugeFallbacks++;
        if (this.lookupIn(cpu, p.root, p.root, vpn, 1, true, PAGE_USER_TABLE) === LOOKUP_OOM) return "oom";
      }
      const g = this.alloc.alloc(PAGE_USER);
      if (g < 0) return "oom";
      this.clearFrames(cpu, g, 1);
      const [nlo, nhi] = this.leafBits(m.prot, writable, 1, g * 4096, 0);
      // Not present → present: no invalidation (SDM 4.10.4.3).
      this.writeEntry(cpu, p.root, vpn, 1, true, nlo, nhi);
      this.stats.demandFaults++;
      return "retry";
    }
    const frame = this.entryGpa(lo, hi, level, true);
    if ((lo & PTE_P) === 0) {
      // A PROT_NONE entry under a VMA that allows access again: restore it (more permissive).
      const [nlo, nhi] = this.leafBits(m.prot, false, level, frame, 0);
      this.writeEntry(cpu, p.root, base, level, true, nlo, nhi);
      return "retry";
    }
    if (kind === "write" && (lo & PTE_RW) === 0) {
      const head = frame / 4096;
      const pages = levelPages(l, level);
      if (this.alloc.refs[head] === 1) {
        // Exclusively ours: read-only → writable needs no invalidation.
        this.writeEntry(cpu, p.root, base, level, true, (lo | PTE_RW) >>> 0, hi);
        this.stats.writeUpgrades++;
        return "retry";
      }
      const g = pages > 1 ? this.alloc.allocHuge(pages) : this.alloc.alloc(PAGE_USER);
      if (g < 0) return "oom";
      this.copyFrames(cpu, head, g, pages);
      const [nlo, nhi] = this.leafBits(m.prot, true, level, g * 4096, 0);
      this.writeEntry(cpu, p.root, base, level, true, nlo, nhi);
      this.alloc.put(head, pages);
      // The frame changed: every vCPU running this address space must drop the old one.
      this.flushPages(p, [base], ci);
      this.stats.cowBreaks++;
      return "retry";
    }
    // The entry already allows the access: the fault came from a stale TLB entry, which
    // the #PF itself invalidated (SDM 4.10.4.2).
    this.stats.spuriousFaults++;
    return "retry";
  }

  // -------------------------------------------------------------------------------------
  // (vi) Processes

  /** A new process with the standard layout (text, data, heap, stack), not yet running. */
  spawn(): PidResult {
    const cpu = this.vcpus[0];
    const p = this.newAddressSpace(cpu);
    if (!p) {
      this.stats.oom++;
      return { ok: false, error: "ENOMEM" };
    }
    this.standardVmas(p);
    this.stats.spawns++;
    return { ok: true, pid: p.pid };
  }

  /**
   * fork: the child gets a copy of the VMAs and of every entry; private writable pages
   * become read-only in both (the parent's entries lose W, so its vCPUs invalidate them)
   * and are shared with a reference each until one side writes.
   */
  fork(pid: number): PidResult {
    const parent = this.proc(pid);
    const ci = this.kernelCpu(parent);
    const cpu = this.vcpus[ci];
    const child = this.newAddressSpace(cpu);
    if (!child) {
      this.stats.oom++;
      return { ok: false, error: "ENOMEM" };
    }
    for (const v of parent.vmas) child.vmas.push({ ...v });
    child.brkStart = parent.brkStart;
    child.brkEnd = parent.brkEnd;
    child.model = parent.model.fork();
    const flush: number[] = [];
    let oom = false;
    this.forEachLeaf(cpu, parent, 0, this.layout.userEndVpn, (table, index, level, vpn, lo, hi) => {
      if (oom) return;
      if (this.lookupIn(cpu, child.root, child.root, vpn, level, true, PAGE_USER_TABLE) !== LOOKUP_OK) {
        oom = true;
        return;
      }
      const shared = (lo & ~PTE_RW) >>> 0;
      this.alloc.get(this.entryGpa(lo, hi, level, true) / 4096);
      this.writeEntry(cpu, child.root, vpn, level, true, shared, hi);
      if (lo & PTE_RW) {
        this.writeEntry(cpu, parent.root, vpn, level, true, shared, hi, table, index);
        flush.push(vpn);
      }
    });
    this.flushPages(parent, flush, ci);
    if (oom) {
      this.teardown(child);
      this.stats.oom++;
      return { ok: false, error: "ENOMEM" };
    }
    this.stats.forks++;
    return { ok: true, pid: child.pid };
  }

  /** exec: drops the whole user half (flushing where it runs) and starts a fresh layout. */
  exec(pid: number): void {
    const p = this.proc(pid);
    this.zapRange(p, 0, this.layout.userEndVpn, true);
    p.model.drop(0, this.layout.userEndVpn);
    p.model = new ValueModel();
    this.standardVmas(p);
    this.stats.execs++;
  }

  /** exit: every vCPU running it goes idle; every user page and table is freed. */
  exit(pid: number): void {
    const p = this.proc(pid);
    this.teardown(p);
    this.stats.exits++;
  }

  private teardown(p: Process): void {
    for (let i = 0; i < this.vcpus.length; i++) if (this.cpuSlots[i].current === p) this.load(i, null);
    // No vCPU runs it: nothing to invalidate now. With PCIDs, the PCID's next owner has a
    // different pid, so its first switch-in flushes (see `load`).
    this.zapRange(p, 0, this.layout.userEndVpn, false);
    p.model.drop(0, this.layout.userEndVpn);
    this.freeAddressSpace(this.vcpus[0], p);
  }

  // -------------------------------------------------------------------------------------
  // (vii) Invalidation

  /**
   * Invalidates pages `vpns` (leaf starts) of `p` on every vCPU whose current address space
   * is `p`: INVLPG each, or a full flush past the ceiling; IPIs for the vCPUs other than
   * `local`. vCPUs that ran `p` earlier (PCID entries kept) flush on their next switch-in.
   */
  private flushPages(p: Process, vpns: number[], local: number): void {
    if (vpns.length === 0) return;
    p.tlbGen++;
    for (let i = 0; i < this.vcpus.length; i++) {
      if (!p.activeOn.has(i)) continue;
      if (i !== local && !this.shootdown) continue;
      const cpu = this.vcpus[i];
      if (i !== local) this.stats.shootdownIpis++;
      if (vpns.length > this.flushCeiling) {
        this.ops.flushUser(cpu);
        this.stats.fullFlushes++;
      } else
        for (const v of vpns) {
          this.ops.invlpg(cpu, vpnToVa(v));
          this.stats.invlpg++;
        }
      if (this.layout.pcid) this.cpuSlots[i].seen.set(p.pcid, { pid: p.pid, gen: p.tlbGen });
    }
  }

  // -------------------------------------------------------------------------------------
  // (viii) Aging, digest, accounting, audit

  /**
   * A kswapd-style scan: clears A in every present leaf of `pid` and reports the pages that
   * had it (used since the last scan); those are invalidated so the next use sets A again.
   */
  age(pid: number): AgeResult {
    const p = this.proc(pid);
    const ci = this.kernelCpu(p);
    const cpu = this.vcpus[ci];
    const young: number[] = [];
    let scanned = 0;
    this.forEachLeaf(cpu, p, 0, this.layout.userEndVpn, (table, index, level, vpn, lo, hi) => {
      if ((lo & PTE_P) === 0) return;
      scanned++;
      if ((lo & PTE_A) === 0) return;
      this.writeEntry(cpu, p.root, vpn, level, true, (lo & ~PTE_A) >>> 0, hi, table, index);
      young.push(vpn);
    });
    this.flushPages(p, young, ci);
    const d = this.digestHash;
    d.mix(0x40);
    d.mix(pid);
    d.mix(scanned);
    for (const v of young) d.mixNumber(v);
    return { scanned, young: young.map(vpnToVa) };
  }

  /**
   * A hash of everything the guest could observe: every loaded value, every SIGSEGV and
   * OOM, every aging result, and the fault counts that depend only on the guest's tables.
   * Identical across host MMUs for the same workload.
   */
  digest(): string {
    const d = new Digest();
    d.mix(this.digestHash.value);
    d.mix(this.digestHash.count);
    const s = this.stats;
    for (const n of [s.demandFaults, s.hugeFaults, s.cowBreaks, s.writeUpgrades, s.segv, s.oom]) d.mix(n);
    return d.value.toString(16).padStart(8, "0");
  }

  /** Allocator counts by use. */
  memory(): MemoryCounts {
    return this.alloc.snapshot();
  }

  /**
   * The kernel's self-audit: every user page's reference count equals the entries mapping
   * it, every reachable user table is accounted as one, no entry maps a free frame, and
   * every process's value model refers to pages inside its VMAs. One line per problem.
   */
  audit(): string[] {
    const problems: string[] = [];
    const l = this.layout;
    const cpu = this.vcpus[0];
    const refs = new Map<number, number>();
    let tables = 0;
    for (const p of this.procs.values()) {
      tables += 1 + p.paeDirs.length;
      const seenTables = new Set<number>();
      const visit = (table: number, level: number, base: number): void => {
        const n = level === l.levels ? l.userRootEnd : l.entries[level];
        for (let i = 0; i < n; i++) {
          this.read(cpu, table, i);
          const lo = this.elo;
          const hi = this.ehi;
          if (lo === 0 && hi === 0) continue;
          const vpn = base + i * levelPages(l, level);
          if (this.isLeaf(level, lo)) {
            const g = this.entryGpa(lo, hi, level, true) / 4096;
            refs.set(g, (refs.get(g) ?? 0) + 1);
            if (this.alloc.use[g] !== PAGE_USER)
              problems.push(
                `pid ${p.pid}: 0x${vpnToVa(vpn).toString(16)} maps frame 0x${g.toString(16)} that is not a user page`,
              );
            if (!p.vmaAt(vpn))
              problems.push(`pid ${p.pid}: 0x${vpnToVa(vpn).toString(16)} is mapped outside every VMA`);
          } else {
            const t = this.entryGpa(lo, hi, level, false);
            if (this.alloc.use[t / 4096] !== PAGE_USER_TABLE)
              problems.push(`pid ${p.pid}: table 0x${t.toString(16)} is not accounted as a user table`);
            if (!(l.mode === "pae" && level === 3)) {
              if (!seenTables.has(t)) tables++;
              seenTables.add(t);
            }
            visit(t, level - 1, vpn);
          }
        }
      };
      visit(p.root, l.levels, 0);
      for (const vpn of p.model.pages.keys())
        if (!p.vmaAt(vpn))
          problems.push(`pid ${p.pid}: value model holds 0x${vpnToVa(vpn).toString(16)} outside every VMA`);
    }
    for (let g = 0; g < this.alloc.frames; g++) {
      const r = this.alloc.refs[g];
      const n = refs.get(g) ?? 0;
      if (this.alloc.use[g] === PAGE_USER && r !== n && (r !== 0 || n !== 0))
        problems.push(`frame 0x${g.toString(16)}: ${r} references counted, ${n} entries map it`);
      if (this.alloc.use[g] === PAGE_FREE && n !== 0)
        problems.push(`frame 0x${g.toString(16)} is free but mapped`);
    }
    const counted = this.alloc.snapshot().userTable;
    if (counted !== tables) problems.push(`${counted} user tables allocated, ${tables} reachable`);
    return problems;
  }
}
