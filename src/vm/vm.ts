/**
 * A virtual machine: host memory and the VMM's address space, memslots, MMIO devices,
 * one host MMU and its vCPUs. Every memslot change goes through the VM so the MMU hears
 * of it; every flush the MMU asks for reaches every vCPU's TLB (remote flushes counted).
 *
 * @example
 * ```ts
 * const vm = new Vm({ cpu: "intel-sapphirerapids", hostMemory: 256 << 20 });
 * vm.addMemslot({ id: 0, baseGfn: 0, pages: 0x4000, hvaPage: 0x100000 });
 * const vcpu = vm.createVcpu();
 * vcpu.setState({ cr0: 0x80010001n, cr4: 0x20n, efer: 0xd00n, cr3: 0x1000n });
 * const r = vcpu.load(0x400000n, 8);   // { ok: true, value } or { ok: false, fault }
 * ```
 */

import { type CpuFeatures, cpuModel, DEFAULT_CPU_MODEL } from "../arch/cpu.js";
import type { TlbConfig } from "../hw/tlb-config.js";
import { GuestPhysical } from "../mem/guest-physical.js";
import { HostAddressSpace } from "../mem/host-address-space.js";
import { HostMemory } from "../mem/host-memory.js";
import { type MemslotFlags, type MemslotSpec, Memslots } from "../mem/memslots.js";
import type { MmuHost } from "../mmu/mmu.js";
import { ShadowMmu, type ShadowMmuOptions } from "../mmu/shadow/shadow-mmu.js";
import { TdpMmu, type TdpMmuOptions } from "../mmu/tdp/tdp-mmu.js";
import { MmioBus, type MmioDevice } from "./mmio.js";
import { Vcpu } from "./vcpu.js";

export interface VmOptions {
  /** CPU model name or features (default "intel-sapphirerapids"). */
  cpu?: string | CpuFeatures;
  /** Host memory: a size in bytes (default 1 GiB) or a shared HostMemory. */
  hostMemory?: number | HostMemory;
  /** Guest physical address width in bits (default: the CPU's MAXPHYADDR). */
  guestPhysBits?: number;
  /**
   * The host MMU: "tdp" (EPT/NPT, default), "shadow" (KVM-style transparent shadow paging)
   * or "shadow-pv" (lguest-style paravirtual shadow paging: the guest makes hypercalls).
   */
  mmu?: "tdp" | "shadow" | "shadow-pv";
  /** The TDP MMU's options (format EPT/NPT, levels, huge pages, stolen bits...). */
  tdp?: TdpMmuOptions;
  /** The shadow MMU's options (page bound, unsync, prefetch, flood threshold, root cache). */
  shadow?: ShadowMmuOptions;
  /** TLB geometry for every vCPU (a preset name, a spec string or a TlbConfig). */
  tlb?: TlbConfig | string;
  /**
   * Optional hardware caches, off by default: paging-structure caches (entries per level)
   * and, for TDP, a nested TLB of guest-physical → host-physical translations used by the
   * 2-D walk's guest-table references (entries). Both powers of two.
   */
  caches?: { pagingStructure?: number; nestedTlb?: number };
}

export interface MemslotOptions extends MemslotSpec {
  /** Back the slot's host memory with huge pages of this order (9: 2 MiB, 18: 1 GiB). */
  hostHugePages?: 9 | 18;
}

/** The MMU type a VM built from options `O` has. */
export type MmuOf<O extends VmOptions> = O["mmu"] extends "shadow" | "shadow-pv" ? ShadowMmu : TdpMmu;

export class Vm<O extends VmOptions = VmOptions> implements MmuHost {
  readonly cpu: CpuFeatures;
  readonly host: HostMemory;
  readonly hostSpace: HostAddressSpace;
  readonly memslots: Memslots;
  /** The VMM's view of guest memory (device emulation, loading images, tests). */
  readonly physical: GuestPhysical;
  readonly mmio = new MmioBus();
  /** The host MMU (`TdpMmu`, or `ShadowMmu` for `mmu: "shadow"`). */
  readonly mmu: MmuOf<O>;
  readonly vcpus: Vcpu[] = [];
  readonly stolenBits: readonly number[];
  readonly stats = { localFlushes: 0, remoteFlushes: 0, memslotChanges: 0 };
  private readonly tlbConfig: TlbConfig | string | undefined;
  /** The optional hardware caches (0 = off). */
  readonly caches: { pagingStructure: number; nestedTlb: number };

  constructor(o: O = {} as O) {
    this.cpu = typeof o.cpu === "object" ? o.cpu : cpuModel(o.cpu ?? DEFAULT_CPU_MODEL);
    this.host = o.hostMemory instanceof HostMemory ? o.hostMemory : new HostMemory(o.hostMemory ?? 1 << 30);
    const bits = o.guestPhysBits ?? this.cpu.maxPhyAddr;
    if (!Number.isInteger(bits) || bits < 32 || bits > this.cpu.maxPhyAddr)
      throw new RangeError(
        `guest physical width ${bits} must be 32..${this.cpu.maxPhyAddr} (the CPU's MAXPHYADDR)`,
      );
    this.hostSpace = new HostAddressSpace(this.host);
    this.memslots = new Memslots(2 ** (bits - 12));
    this.physical = new GuestPhysical(this.memslots, this.hostSpace);
    this.stolenBits = [...(o.tdp?.stolenBits ?? [])];
    for (const b of this.stolenBits)
      if (b >= bits)
        throw new RangeError(`stolen GPA bit ${b} is outside the ${bits}-bit guest physical address width`);
    const shadow = o.mmu === "shadow" || o.mmu === "shadow-pv";
    if (shadow && this.stolenBits.length > 0)
      throw new RangeError("stolen GPA bits are supported with TDP only");
    if (o.mmu !== undefined && o.mmu !== "tdp" && !shadow)
      throw new RangeError(`unknown MMU "${o.mmu as string}" (tdp, shadow, shadow-pv)`);
    this.mmu = (
      shadow
        ? new ShadowMmu(this, { ...o.shadow, paravirt: o.mmu === "shadow-pv" })
        : new TdpMmu(this, this.cpu, o.tdp)
    ) as MmuOf<O>;
    this.tlbConfig = o.tlb;
    this.caches = { pagingStructure: o.caches?.pagingStructure ?? 0, nestedTlb: o.caches?.nestedTlb ?? 0 };
  }

  /** The MMU with its precise type, whatever `O` says. */
  get hostMmu(): TdpMmu | ShadowMmu {
    return this.mmu;
  }

  createVcpu(): Vcpu {
    const v = new Vcpu(this, this.vcpus.length, this.tlbConfig);
    this.vcpus.push(v);
    return v;
  }

  // --- memslots ---

  addMemslot(spec: MemslotOptions): void {
    // Every check runs before anything changes: a refused memslot must leave no trace (it
    // used to stay in the memslots, unknown to the MMU, when the huge backing or the stolen
    // bits refused it after the add).
    if (spec.hostHugePages !== undefined) {
      const n = 2 ** spec.hostHugePages;
      if (spec.hvaPage % n !== 0 || spec.pages % n !== 0)
        throw new RangeError(
          `memslot ${spec.id}: host huge pages need a host range aligned to and sized in ${n} pages`,
        );
      for (let p = spec.hvaPage; p < spec.hvaPage + spec.pages; p++)
        if (this.hostSpace.peek(p) >= 0)
          throw new RangeError(
            `memslot ${spec.id}: host virtual page 0x${p.toString(16)} is already populated; cannot back it with a huge page`,
          );
    }
    // (A slot beyond the guest physical width gets the memslots' own error, below, first.)
    if (spec.baseGfn + spec.pages <= this.memslots.maxGfn)
      if (this.hostMmu instanceof TdpMmu) this.hostMmu.checkSlotFitsStolen(spec);
    const slot = this.memslots.add(spec);
    if (spec.hostHugePages !== undefined)
      for (let p = spec.hvaPage; p < spec.hvaPage + spec.pages; p += 2 ** spec.hostHugePages)
        this.hostSpace.backHuge(p, spec.hostHugePages);
    this.changed();
    this.mmu.memslotChanged({ kind: "create", slot });
  }

  deleteMemslot(id: number): void {
    const old = this.memslots.delete(id);
    this.changed();
    this.mmu.memslotChanged({ kind: "delete", old });
  }

  moveMemslot(id: number, newBaseGfn: number): void {
    const old = this.memslots.get(id);
    if (this.hostMmu instanceof TdpMmu)
      this.hostMmu.checkSlotFitsStolen({ id, baseGfn: newBaseGfn, pages: old.pages }); // before the move
    const slot = this.memslots.move(id, newBaseGfn);
    // Memslots.move starts a fresh bitmap; the pages written before the move would be missing
    // from the next dirty log. KVM keeps the bitmap across a move (pages are slot-relative).
    if (old.dirtyBitmap && slot.dirtyBitmap) slot.dirtyBitmap.set(old.dirtyBitmap);
    this.changed();
    this.mmu.memslotChanged({ kind: "move", old, slot });
  }

  setMemslotFlags(id: number, flags: Partial<MemslotFlags>): void {
    const old = this.memslots.get(id);
    const slot = this.memslots.setFlags(id, flags);
    this.changed();
    this.mmu.memslotChanged({ kind: "flags", old, slot });
  }

  /** Returns and clears the slot's dirty bitmap, write-protecting the pages it reports. */
  getDirtyLog(id: number): Uint32Array {
    return this.mmu.getDirtyLog(id);
  }

  /** Manual-protect dirty logging: clears [first, first + count) and re-protects those pages. */
  clearDirtyLog(id: number, firstPage: number, count: number): void {
    this.mmu.clearDirtyLog(id, firstPage, count);
  }

  testAndClearYoung(gfn: number, count: number): number {
    return this.mmu.testAndClearYoung(gfn, count);
  }

  addMmio(base: number, size: number, device: MmioDevice): void {
    this.mmio.add(base, size, device);
  }

  // --- MmuHost ---

  flushTlbs(vcpuId: number): void {
    for (const v of this.vcpus) {
      v.flushTlb();
      if (v.id === vcpuId) this.stats.localFlushes++;
      else this.stats.remoteFlushes++;
    }
  }

  /** Audits the MMU and every TLB; one line per problem. */
  check(): string[] {
    const problems = this.mmu.check();
    for (const v of this.vcpus) for (const p of v.tlb.audit()) problems.push(`vCPU ${v.id} TLB: ${p}`);
    return problems;
  }

  /** Frees the MMU's tables and the guest's memory; afterwards no host frame is in use. */
  destroy(): void {
    this.mmu.destroy();
    this.hostSpace.releaseAll();
    for (const v of this.vcpus) v.tlb.flushAll();
  }

  private changed(): void {
    this.stats.memslotChanges++;
  }
}
