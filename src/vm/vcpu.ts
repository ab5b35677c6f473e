/**
 * A virtual CPU: control registers, a TLB, and the access path of every guest memory
 * access, top to bottom:
 *
 *   load/store/fetch(va)
 *     → Tlb.lookup (one index, one compare)                    hit: host physical address
 *     → miss: the hardware's 2-D walk (guest tables × EPT/NPT)   ok: fill the TLB
 *         guest fault  → returned to the caller (who plays the guest kernel) as #PF/#GP
 *         host fault   → VM exit → Mmu.handleFault → retry, or MMIO → emulate the device
 *     → read or write host memory
 *
 * Accesses return values, never throw, for anything the guest can do; bad arguments
 * (sizes, addresses that are not numbers) throw at the API edge.
 */

import {
  ACCESS_WRITE,
  type AccessKind,
  EPT_EFF_R,
  EPT_EFF_W,
  EPT_EFF_X,
  EPT_EFF_XU,
  X86_EFF_U,
  X86_EFF_W,
  X86_EFF_X,
} from "../arch/access.js";
import { CpuRole, CpuStateError } from "../arch/cpu.js";
import { FORMAT_EPT } from "../arch/format.js";
import { hi32, lo32, toU64, type U64Input } from "../arch/u64.js";
import { CR4_LA57, CR4_PCIDE, CR4_PKE, CR4_PKS, CR4_SMAP, CR4_SMEP, PTE_D, PTE_G } from "../arch/x86.js";
import { NestedFrameSource } from "../hw/nested-frames.js";
import { PagingStructureCache } from "../hw/paging-structure-cache.js";
import { TLB_MISS, Tlb, tlbAttrs } from "../hw/tlb.js";
import type { TlbConfig } from "../hw/tlb-config.js";
import { TWO_D_GUEST_FAULT, TWO_D_OK, TwoDimensionalWalk } from "../hw/two-dimensional-walk.js";
import type { HostMemory } from "../mem/host-memory.js";
import { MMU_MMIO } from "../mmu/mmu.js";
import { MMU_EMULATE, MMU_INJECT, type PagingHypercall, ShadowMmu } from "../mmu/shadow/shadow-mmu.js";
import type { TdpMmu } from "../mmu/tdp/tdp-mmu.js";
import { loadCr3 } from "../walk/contexts.js";
import type { CpuState } from "../walk/translate.js";
import { FAULT_EPT_MISCONFIG, FAULT_GP, REASON_RESERVED, Walk } from "../walk/walk.js";
import { GuestWalker } from "../walk/walker.js";
import type { Vm } from "./vm.js";

/** A fault the guest must handle, as its kernel would see it. */
export interface GuestFault {
  /** 14 (#PF) or 13 (#GP). */
  vector: number;
  errorCode: number;
  /** The faulting linear address (CR2 for #PF). */
  address: bigint;
}

export type AccessResult<T> = { ok: true; value: T } | { ok: false; fault: GuestFault };

/**
 * `Vcpu.status` values. The hot path uses the module-local `OK`: V8 folds it, where an
 * exported constant is loaded from its module cell and checked for the hole on every use.
 */
const OK = 0;
export const ACCESS_OK = OK;
export const ACCESS_FAULTED = 1;

/** `translate` results below zero. */
const GUEST_FAULT = -1;
const MMIO = -2;
/** A write to a guest page table the shadow MMU write-protects: the MMU emulates it. */
const EMULATE = -3;

/** Exit reasons counted per vCPU. */
export interface ExitCounts {
  eptViolation: number;
  eptMisconfig: number;
  npf: number;
  /** Shadow paging: #PF intercepts. */
  shadowPageFault: number;
  /** Shadow paging: emulated writes to write-protected guest page tables. */
  emulation: number;
  /** Paravirtual page-table hypercalls. */
  hypercall: number;
  mmio: number;
}

const ALL_ALLOWED = new Uint16Array(32);

export class Vcpu {
  readonly tlb: Tlb;
  /** `vm.host`, one load closer to the hot path. */
  private readonly host: HostMemory;
  /** VPID (ASID) tagging this vCPU's TLB entries. */
  readonly vpid: number;
  readonly stats = {
    accesses: 0,
    tlbHits: 0,
    tlbMisses: 0,
    walks: 0,
    walkRefs: 0,
    completedWalks: 0,
    completedWalkRefs: 0,
    guestFaults: 0,
    mmioAccesses: 0,
  };
  readonly exits: ExitCounts = {
    eptViolation: 0,
    eptMisconfig: 0,
    npf: 0,
    shadowPageFault: 0,
    emulation: 0,
    hypercall: 0,
    mmio: 0,
  };
  /** The last guest fault (valid after an access returned a fault). */
  readonly fault: GuestFault = { vector: 0, errorCode: 0, address: 0n };

  private role: CpuRole | null = null;
  private state: CpuState = { cr0: 0n, cr4: 0n, cr3: 0n };
  private cr0 = 0;
  private cr4 = 0;
  private cr3 = 0n;
  /** TDP hardware: the 2-D walk and the host format's facts; null under shadow paging. */
  private readonly tdp: {
    frames: NestedFrameSource;
    twoD: TwoDimensionalWalk;
    ept: boolean;
    mbec: boolean;
    eptAd: boolean;
  } | null;
  /** Shadow paging: the MMU, the hardware's 1-D walker over its tables, and the walker over the guest's own tables. */
  private readonly shadow: ShadowMmu | null;
  private hwWalker: GuestWalker | null = null;
  private softWalker: GuestWalker | null = null;
  private readonly hwWalk = new Walk();
  /** The paging-structure cache, when the VM enables it. */
  readonly psc: PagingStructureCache | null;
  /** ShadowVcpu: the root the hardware walks, set by the shadow MMU. */
  shadowRootHfn = -1;
  shadowRootId = -1;
  /** ShadowVcpu: whether the last root load flushed the TLB architecturally. */
  rootLoadFlushes = true;
  private mmioGpa = 0;
  private emulateGpa = 0;
  private readonly bytes = new Uint8Array(8);

  constructor(
    readonly vm: Vm,
    readonly id: number,
    tlb: TlbConfig | string | undefined,
  ) {
    this.vpid = id + 1;
    this.host = vm.host;
    this.tlb = new Tlb(tlb);
    this.psc = vm.caches.pagingStructure > 0 ? new PagingStructureCache(vm.caches.pagingStructure) : null;
    const mmu = vm.hostMmu;
    if (mmu instanceof ShadowMmu) {
      this.shadow = mmu;
      this.tdp = null;
    } else {
      this.shadow = null;
      const frames = new NestedFrameSource(mmu.walker, vm.host);
      const f = mmu.walker.format;
      const ept = f.kind === FORMAT_EPT;
      if (vm.caches.nestedTlb > 0) frames.setNestedTlb(vm.caches.nestedTlb);
      this.tdp = {
        frames,
        twoD: new TwoDimensionalWalk(null, frames),
        ept,
        mbec: f.mbec,
        eptAd: ept && f.accessedMask !== 0,
      };
    }
  }

  /** ShadowVcpu: the walker over the guest's own tables (shadow paging; null with paging off). */
  get guestWalker(): GuestWalker | null {
    return this.softWalker;
  }

  /** The current CPU role (after `setState`). */
  get cpuRole(): CpuRole {
    if (!this.role) throw new CpuStateError(`vCPU ${this.id} has no register state yet (call setState)`);
    return this.role;
  }

  /** Loads a complete register state (as at VM entry): every TLB entry of this vCPU is dropped. */
  setState(s: CpuState): void {
    const role = CpuRole.from(s, this.vm.cpu);
    if (this.vm.stolenBits.length > 0 && role.mode !== "4level" && role.mode !== "5level")
      throw new CpuStateError(`stolen GPA bits need a 4- or 5-level guest paging mode, not ${role.mode}`);
    this.cr0 = Number(toU64(s.cr0, "CR0"));
    this.cr4 = Number(toU64(s.cr4, "CR4"));
    this.state = { ...s };
    this.tlb.flushVpid(this.vpid);
    this.installRole(role);
    this.loadRoot(toU64(s.cr3, "CR3"), false);
  }

  /** CR3 as last loaded (as software wrote it). */
  get currentCr3(): bigint {
    return this.cr3;
  }

  /**
   * MOV to CR0 / CR4 with a new value: the role is rebuilt and the TLB flushed as the SDM
   * requires for that change (4.10.4.1). Throws CpuStateError for values the CPU refuses.
   */
  writeControl(register: "cr0" | "cr4", value: U64Input): void {
    const v = Number(toU64(value, register.toUpperCase()));
    const next: CpuState = { ...this.state, [register]: BigInt(v), cr3: this.cr3 };
    const role = CpuRole.from(next, this.vm.cpu);
    this.state = next;
    if (register === "cr0") this.tlb.movToCr0(this.cr0, v);
    else this.tlb.movToCr4(this.cr4, v);
    if (register === "cr0") this.cr0 = v;
    else this.cr4 = v;
    this.installRole(role);
    this.loadRoot(this.cr3, false);
  }

  /** MOV to CR3 (with the no-flush bit 63 under CR4.PCIDE). Throws CpuStateError where the CPU raises #GP. */
  writeCr3(value: U64Input): void {
    this.loadRoot(toU64(value, "CR3"), true);
  }

  /**
   * A paravirtual guest's page-table hypercall (a VM exit to the lguest-style shadow MMU).
   * Throws GuestStoppedError when the host stops the guest for a bad request.
   */
  hypercall(call: PagingHypercall): void {
    if (!this.shadow) throw new RangeError("page-table hypercalls need a shadow-pv VM");
    this.exits.hypercall++;
    this.shadow.hypercall(this, call);
    if (call.kind === "invlpg") this.tlb.invlpg(call.vaHi, call.vaLo);
    else if (call.kind === "flush") this.tlb.flushVpid(this.vpid);
    this.psc?.flush();
  }

  /** INVLPG. */
  invlpg(va: U64Input): void {
    const v = toU64(va, "linear address");
    this.tlb.invlpg(hi32(v), lo32(v));
    this.psc?.flush(); // INVLPG drops every paging-structure-cache entry of the PCID (SDM 4.10.4.1)
    this.vm.hostMmu.invalidatePage(this, hi32(v), lo32(v));
  }

  private installRole(role: CpuRole): void {
    this.role = role;
    this.tlb.setPermissions(
      role.format === null
        ? { permFault: ALL_ALLOWED, wp: false, pke: false, pks: false, pkru: 0, pkrs: 0 }
        : role,
    );
    const config = (r: CpuRole) => ({
      format: r.format!,
      permFault: r.permFault,
      fetchErrorBit: r.fetchErrorBit,
      pke: r.pke,
      pks: r.pks,
      pkru: r.pkru,
      pkrs: r.pkrs,
      wp: r.wp,
    });
    this.psc?.flush();
    if (this.tdp) {
      const gw = role.format === null ? null : new GuestWalker(this.tdp.frames, config(role));
      if (gw !== null) gw.psc = this.psc;
      this.tdp.twoD.guestWalker = gw;
      return;
    }
    // Shadow paging: the hardware walks the shadow tables (long mode, 5-level for an LA57
    // guest) with the guest's CPL, SMEP, SMAP and keys but CR0.WP=1 always (the MMU builds
    // entries that emulate WP=0), and NXE on (the MMU sets XD where the guest forbids fetches).
    this.softWalker = role.format === null ? null : new GuestWalker(this.vm.physical, config(role));
    const hostRole = CpuRole.from(
      {
        cr0: 0x80010001n,
        cr4:
          BigInt(0x20 | (role.mode === "5level" ? CR4_LA57 : 0)) |
          BigInt((role.smep ? CR4_SMEP : 0) | (role.smap ? CR4_SMAP : 0)) |
          BigInt((role.pke ? CR4_PKE : 0) | (role.pks ? CR4_PKS : 0)),
        efer: 0xd00n,
        cpl: role.cpl,
        rflags: role.ac ? 0x40000n : 0n,
        pkru: role.pkru,
        pkrs: role.pkrs,
      },
      this.vm.cpu,
    );
    this.hwWalker = new GuestWalker(this.vm.host, config(hostRole));
    this.hwWalker.psc = this.psc;
    this.tlb.setPermissions(hostRole);
  }

  private loadRoot(cr3: bigint, asMov: boolean): void {
    const role = this.cpuRole;
    this.psc?.flush();
    const pcide = (this.cr4 & CR4_PCIDE) !== 0;
    const pcid = pcide ? Number(cr3 & 0xfffn) : 0;
    const noFlush = pcide && cr3 >> 63n === 1n;
    if (this.shadow) {
      const sw = this.softWalker;
      if (sw !== null) {
        const r = loadCr3(sw, role, cr3);
        if (!r.ok) throw new CpuStateError(r.reason);
      }
      this.cr3 = cr3;
      this.rootLoadFlushes = !asMov || !noFlush;
      if (asMov) this.tlb.movToCr3(pcid, noFlush);
      this.tlb.setContext(this.vpid, pcid, 0);
      this.shadow.loadRoot(this);
      this.hwWalker!.rootGfn = this.shadowRootHfn;
      return;
    }
    const tdp = this.tdp!;
    const gw = tdp.twoD.guestWalker;
    if (gw !== null) {
      // In PAE mode the load reads the PDPTEs through EPT/NPT: a host fault there is a VM exit.
      for (let tries = 0; ; tries++) {
        tdp.frames.reset();
        const r = loadCr3(gw, role, cr3);
        if (r.ok) break;
        if (!tdp.frames.failed) throw new CpuStateError(r.reason);
        const h = tdp.frames.nested;
        const gpa = h.vaHi * 0x100000000 + h.vaLo;
        // PDPTEs in MMIO space cannot be loaded: the MOV to CR3 fails with #GP (as KVM's
        // load_pdptrs does). Retrying would only meet the same MMIO outcome again.
        if (this.vmExit(gpa, h.access, this.isMisconfig()) === MMU_MMIO)
          throw new CpuStateError(`the PAE PDPT at guest-physical 0x${gpa.toString(16)} is not in RAM (#GP)`);
        if (tries > 8) throw new Error(`vCPU ${this.id}: the MMU did not map the PDPT at CR3 load`);
      }
    }
    this.cr3 = cr3;
    if (asMov) this.tlb.movToCr3(pcid, noFlush);
    this.tlb.setContext(this.vpid, pcid, 1);
  }

  // -------------------------------------------------------------------------------------
  // The access path

  /** Status of the last `read32`/`write32`: ACCESS_OK, or ACCESS_FAULTED (`fault` holds the guest fault). */
  status = ACCESS_OK;

  /**
   * The hot path: an aligned 4-byte read at (vaHi, vaLo) with access descriptor `access`
   * (ACCESS_* bits, e.g. from `cpuRole.accessFor("read")`). Returns the value; `status`
   * says whether it faulted. A TLB hit is one lookup and one load.
   */
  read32(vaHi: number, vaLo: number, access: number): number {
    if ((vaLo & 3) !== 0) throw new RangeError("read32 needs a 4-byte aligned address");
    const stats = this.stats;
    stats.accesses++;
    // The hit path stays in integers: the TLB gives the host frame number, and paging keeps
    // address bits 11:0, so the word comes from vaLo.
    const fn = this.tlb.lookupFrame(vaHi, vaLo, access);
    if (fn >= 0) {
      stats.tlbHits++;
      this.status = OK;
      const host = this.host;
      const words = host.frameWords(fn)!;
      return words[host.frameBase + ((vaLo & 0xfff) >>> 2)];
    }
    return this.read32Rest(vaHi, vaLo, access, fn);
  }

  /** `read32` after a TLB miss (or a frame number of 2^31 or more): kept out of the hit path's code. */
  private read32Rest(vaHi: number, vaLo: number, access: number, fn: number): number {
    const hpa = this.translateRest(vaHi, vaLo, access, fn);
    if (hpa < 0) return this.slowEnd(hpa, 4, false, 0);
    this.status = OK;
    const host = this.host;
    const words = host.frameWords(Math.floor(hpa / 4096))!;
    return words[host.frameBase + ((hpa & 0xfff) >>> 2)];
  }

  /** The hot path for an aligned 4-byte write; see `read32`. Returns whether it completed. */
  write32(vaHi: number, vaLo: number, access: number, value: number): boolean {
    if ((vaLo & 3) !== 0) throw new RangeError("write32 needs a 4-byte aligned address");
    const stats = this.stats;
    stats.accesses++;
    const fn = this.tlb.lookupFrame(vaHi, vaLo, access);
    if (fn >= 0) {
      stats.tlbHits++;
      this.status = OK;
      const host = this.host;
      const words = host.frameWords(fn)!;
      words[host.frameBase + ((vaLo & 0xfff) >>> 2)] = value;
      return true;
    }
    return this.write32Rest(vaHi, vaLo, access, value, fn);
  }

  /** `write32` after a TLB miss (or a frame number of 2^31 or more). */
  private write32Rest(vaHi: number, vaLo: number, access: number, value: number, fn: number): boolean {
    const hpa = this.translateRest(vaHi, vaLo, access, fn);
    if (hpa < 0) return this.slowEnd(hpa, 4, true, value) === 0 && this.status === OK;
    this.status = OK;
    const host = this.host;
    const words = host.frameWords(Math.floor(hpa / 4096))!;
    words[host.frameBase + ((hpa & 0xfff) >>> 2)] = value;
    return true;
  }

  /** A fault or an MMIO access on the hot path. */
  private slowEnd(r: number, size: number, write: boolean, value: number): number {
    if (r === GUEST_FAULT) {
      this.status = ACCESS_FAULTED;
      return 0;
    }
    this.status = ACCESS_OK;
    if (r === EMULATE) {
      const b = new Uint8Array(4);
      new DataView(b.buffer).setUint32(0, value >>> 0, true);
      this.shadow!.emulateWrite(this, this.emulateGpa, b.subarray(0, size));
      return 0;
    }
    this.stats.mmioAccesses++;
    if (write) {
      this.vm.mmio.write(this.mmioGpa, size, BigInt(value >>> 0));
      return 0;
    }
    return Number(this.vm.mmio.read(this.mmioGpa, size));
  }

  /** Reads `size` (1, 2, 4 or 8) bytes at `va` as the current CPL would. */
  load(va: U64Input, size: 1 | 2 | 4 | 8): AccessResult<bigint> {
    return this.access(va, size, "read", 0n);
  }

  /** Writes `size` bytes of `value` (little-endian) at `va`. */
  store(va: U64Input, size: 1 | 2 | 4 | 8, value: bigint | number): AccessResult<bigint> {
    return this.access(va, size, "write", BigInt(value));
  }

  /** Fetches `size` instruction bytes at `va`. */
  fetch(va: U64Input, size: 1 | 2 | 4 | 8): AccessResult<bigint> {
    return this.access(va, size, "fetch", 0n);
  }

  private access(vaIn: U64Input, size: number, kind: AccessKind, value: bigint): AccessResult<bigint> {
    if (size !== 1 && size !== 2 && size !== 4 && size !== 8)
      throw new RangeError(`access size ${size} is not 1, 2, 4 or 8`);
    const va = toU64(vaIn, "linear address");
    const role = this.cpuRole;
    const access = role.accessFor(kind);
    if (kind === "write") {
      if (value < 0n || value >= 1n << BigInt(size * 8))
        throw new RangeError(`value ${value} does not fit in ${size} bytes`);
      for (let i = 0; i < size; i++) this.bytes[i] = Number((value >> BigInt(i * 8)) & 0xffn);
    }
    const ok = this.accessBytes(hi32(va), lo32(va), size, access);
    if (!ok) return { ok: false, fault: { ...this.fault } };
    let v = 0n;
    if (kind !== "write") for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(this.bytes[i]);
    return { ok: true, value: kind === "write" ? value : v };
  }

  /**
   * Moves `size` bytes between `this.bytes` and guest memory at (vaHi, vaLo). Both pages
   * of a page-crossing access are translated before either is touched.
   */
  private accessBytes(vaHi: number, vaLo: number, size: number, access: number): boolean {
    this.stats.accesses++;
    const first = 4096 - (vaLo & 0xfff);
    if (first >= size) return this.onePage(0, size, access, this.translate(vaHi, vaLo, access));
    const lo2 = (vaLo + first) >>> 0;
    const hi2 = lo2 < vaLo ? (vaHi + 1) >>> 0 : vaHi;
    const a = this.translate(vaHi, vaLo, access);
    if (a === GUEST_FAULT) return false;
    const gpaA = this.mmioGpa;
    const b = this.translate(hi2, lo2, access);
    if (b === GUEST_FAULT) return false;
    const gpaB = this.mmioGpa;
    this.mmioGpa = gpaA;
    this.onePage(0, first, access, a);
    this.mmioGpa = gpaB;
    return this.onePage(first, size - first, access, b);
  }

  private onePage(at: number, n: number, access: number, hpa: number): boolean {
    if (hpa === GUEST_FAULT) return false;
    const write = (access & ACCESS_WRITE) !== 0;
    if (hpa === EMULATE) {
      this.shadow!.emulateWrite(this, this.emulateGpa, this.bytes.slice(at, at + n));
      return true;
    }
    if (hpa === MMIO) {
      this.stats.mmioAccesses++;
      if (write) {
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(this.bytes[at + i]);
        this.vm.mmio.write(this.mmioGpa, n, v);
      } else {
        let v = this.vm.mmio.read(this.mmioGpa, n);
        for (let i = 0; i < n; i++, v >>= 8n) this.bytes[at + i] = Number(v & 0xffn);
      }
      return true;
    }
    const host = this.vm.host;
    const words = host.frameWords(Math.floor(hpa / 4096))!;
    const view = new Uint8Array(words.buffer, words.byteOffset + host.frameBase * 4 + (hpa % 4096), n);
    if (write) view.set(this.bytes.subarray(at, at + n));
    else this.bytes.set(view, at);
    return true;
  }

  /**
   * Linear → host physical for one access: the TLB, else a 2-D walk with VM exits handled.
   * Returns the host physical address, GUEST_FAULT (`fault` filled) or MMIO (`mmioGpa`).
   */
  translate(vaHi: number, vaLo: number, access: number): number {
    const hpa = this.tlb.lookup(vaHi, vaLo, access);
    if (hpa !== TLB_MISS) {
      this.stats.tlbHits++;
      return hpa;
    }
    this.stats.tlbMisses++;
    return this.miss(vaHi, vaLo, access);
  }

  /**
   * `translate` after `Tlb.lookupFrame` gave no frame number: TLB_MISS (already counted by
   * the TLB) walks; TLB_HIGH_FRAME (a hit with a frame number of 2^31 or more, nothing
   * counted yet) takes the address from `lookup`.
   */
  private translateRest(vaHi: number, vaLo: number, access: number, r: number): number {
    if (r !== TLB_MISS) return this.translate(vaHi, vaLo, access);
    this.stats.tlbMisses++;
    return this.miss(vaHi, vaLo, access);
  }

  private miss(vaHi: number, vaLo: number, access: number): number {
    if (this.shadow) return this.shadowMiss(vaHi, vaLo, access);
    const tdp = this.tdp!;
    const t = tdp.twoD;
    for (let exits = 0; ; exits++) {
      const r = t.walk(vaHi, vaLo, access);
      this.stats.walks++;
      this.stats.walkRefs += t.refs;
      if (r === TWO_D_OK) {
        this.stats.completedWalks++;
        this.stats.completedWalkRefs += t.refs;
        this.fill(vaHi, vaLo);
        return t.hostPhysical;
      }
      if (r === TWO_D_GUEST_FAULT)
        return this.guestFault(vaHi, vaLo, t.guest.fault === FAULT_GP ? 13 : 14, t.guest.errorCode);
      // A VM exit: the host tables refused the access.
      this.tlb.eptViolation(vaHi, vaLo);
      const h = t.host;
      const outcome = this.vmExit(h.vaHi * 0x100000000 + h.vaLo, h.access, this.isMisconfig());
      if (outcome === MMU_MMIO) {
        this.exits.mmio++;
        // A guest paging structure in MMIO space cannot be walked: the guest sees "not present".
        if (t.hostFaultOnTable) return this.guestFault(vaHi, vaLo, 14, t.guest.errorCode);
        this.mmioGpa = (this.vm.mmu as TdpMmu).mmioGpa;
        return MMIO;
      }
      if (exits === 16)
        throw new Error(
          `vCPU ${this.id}: the MMU did not resolve a fault at GPA 0x${(h.vaHi * 2 ** 32 + h.vaLo).toString(16)}`,
        );
    }
  }

  /**
   * Shadow paging: the hardware's 1-D walk of the shadow tables; a #PF there is a VM exit to
   * the shadow MMU, which fixes its tables, or says the fault is the guest's own, or MMIO, or
   * a write to a guest page table it must emulate.
   */
  private shadowMiss(vaHi: number, vaLo: number, access: number): number {
    const w = this.hwWalk;
    const hw = this.hwWalker!;
    const mmu = this.shadow!;
    for (let exits = 0; ; exits++) {
      const ok = hw.walk(vaHi, vaLo, access, w);
      this.stats.walks++;
      this.stats.walkRefs += w.depth;
      if (ok) {
        this.stats.completedWalks++;
        this.stats.completedWalkRefs += w.depth;
        this.tlb.insertWalk(w, false);
        return w.address;
      }
      if (w.fault === FAULT_GP) return this.guestFault(vaHi, vaLo, 13, 0);
      this.exits.shadowPageFault++;
      const outcome = mmu.pageFault(this, vaHi, vaLo, access);
      if (outcome === MMU_INJECT) return this.guestFault(vaHi, vaLo, mmu.injectVector, mmu.injectErrorCode);
      if (outcome === MMU_MMIO) {
        this.exits.mmio++;
        this.mmioGpa = mmu.mmioGpa;
        return MMIO;
      }
      if (outcome === MMU_EMULATE) {
        this.exits.emulation++;
        this.emulateGpa = mmu.emulateGpa;
        return EMULATE;
      }
      if (exits === 16)
        throw new Error(
          `vCPU ${this.id}: the shadow MMU did not resolve a fault at 0x${vaHi.toString(16)}${(vaLo >>> 0).toString(16).padStart(8, "0")}`,
        );
    }
  }

  private isMisconfig(): boolean {
    const tdp = this.tdp!;
    const h = tdp.frames.nested;
    return tdp.ept ? h.fault === FAULT_EPT_MISCONFIG : h.reason === REASON_RESERVED;
  }

  private vmExit(gpa: number, access: number, misconfig: boolean): number {
    if (!this.tdp!.ept) this.exits.npf++;
    else if (misconfig) this.exits.eptMisconfig++;
    else this.exits.eptViolation++;
    return (this.vm.mmu as TdpMmu).handleFault(this.id, gpa, access, misconfig);
  }

  private guestFault(vaHi: number, vaLo: number, vector: number, errorCode: number): number {
    this.stats.guestFaults++;
    this.fault.vector = vector;
    this.fault.errorCode = errorCode;
    this.fault.address = (BigInt(vaHi >>> 0) << 32n) | BigInt(vaLo >>> 0);
    // A #PF invalidates the TLB and paging-structure-cache entries for the faulting address (SDM 4.10.4.2).
    if (vector === 14) {
      this.tlb.pageFault(vaHi, vaLo);
      this.psc?.flush();
    }
    return GUEST_FAULT;
  }

  /** Caches the combined guest+host translation of the last 2-D walk. */
  private fill(vaHi: number, vaLo: number): void {
    const tdp = this.tdp!;
    const t = tdp.twoD;
    const g = t.guest;
    const h = t.host;
    const paging = t.guestWalker !== null;
    let eff = paging ? g.effective : X86_EFF_W | X86_EFF_U | X86_EFF_X;
    let dirty = paging ? (g.newLo[g.depth - 1] & PTE_D) !== 0 : true;
    const global = paging && this.cpuRole.pge && (g.newLo[g.depth - 1] & PTE_G) !== 0;
    const he = h.effective;
    if (tdp.ept) {
      if ((he & EPT_EFF_R) === 0) return; // execute-only: every read must walk (and fault)
      if ((he & EPT_EFF_W) === 0) eff &= ~X86_EFF_W;
      const exec = tdp.mbec && (eff & X86_EFF_U) !== 0 ? he & EPT_EFF_XU : he & EPT_EFF_X;
      if (exec === 0) eff &= ~X86_EFF_X;
      if (tdp.eptAd && (h.newLo[h.depth - 1] & (1 << 9)) === 0) dirty = false;
    } else {
      if ((he & X86_EFF_W) === 0) eff &= ~X86_EFF_W;
      if ((he & X86_EFF_X) === 0) eff &= ~X86_EFF_X;
      if ((h.newLo[h.depth - 1] & PTE_D) === 0) dirty = false;
    }
    this.tlb.insert(
      vaHi,
      vaLo,
      t.hostPhysical,
      t.pageShift,
      tlbAttrs(eff, dirty, paging ? g.pkey : 0, global),
    );
  }

  /** Flush requested by the MMU (remote or local): its EPT tag (TDP), or this vCPU's VPID (shadow). */
  flushTlb(): number {
    this.psc?.flush();
    if (this.shadow) return this.tlb.flushVpid(this.vpid);
    this.tdp!.frames.flushNestedTlb();
    return this.tlb.flushTag(1);
  }
}
