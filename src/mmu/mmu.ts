/**
 * The contract between the VM and a host MMU (TDP now; shadow and nested MMUs implement
 * the same interface). The VM owns memory, memslots and vCPUs; the MMU owns the tables
 * the hardware walks and keeps them consistent with the memslots, the host address space
 * and (for shadow paging) the guest's own tables.
 */

import type { GuestPhysical } from "../mem/guest-physical.js";
import type { HostAddressSpace } from "../mem/host-address-space.js";
import type { HostMemory } from "../mem/host-memory.js";
import type { Memslot, Memslots } from "../mem/memslots.js";

/** What a host MMU needs from the VM around it. */
export interface MmuHost {
  readonly host: HostMemory;
  readonly hostSpace: HostAddressSpace;
  readonly memslots: Memslots;
  /** The VMM's view of guest memory (for reading guest tables and emulating writes). */
  readonly physical: GuestPhysical;
  /**
   * Flushes, on every vCPU, the TLB entries that may hold translations through this MMU's
   * tables (INVEPT single-context / ASID flush); `vcpu` is the one running, whose flush is
   * local (the others' are remote). Counted by the VM.
   */
  flushTlbs(vcpuId: number): void;
}

/** Fault-handling outcomes. */
/** The host tables now allow the access: retry it. */
export const MMU_RETRY = 0;
/** The access is to MMIO (no memslot, or a write to a read-only slot): emulate it. */
export const MMU_MMIO = 1;

export type MemslotChange =
  | { kind: "create"; slot: Memslot }
  | { kind: "delete"; old: Memslot }
  | { kind: "move"; old: Memslot; slot: Memslot }
  | { kind: "flags"; old: Memslot; slot: Memslot };

/** What an MMU sees of a vCPU. */
export interface MmuVcpu {
  readonly id: number;
}

export interface Mmu {
  readonly kind: "tdp" | "shadow" | "shadow-pv" | "nested";
  /**
   * The vCPU loaded a new guest root or paging mode (MOV CR3/CR0/CR4, VM entry). A shadow
   * MMU finds or builds the shadow root for it; a TDP MMU's root does not depend on it.
   */
  loadRoot(vcpu: MmuVcpu): void;
  /** The guest invalidated one linear page (INVLPG); a shadow MMU resynchronises its entry. */
  invalidatePage(vcpu: MmuVcpu, vaHi: number, vaLo: number): void;
  /** Called after the memslots changed. */
  memslotChanged(change: MemslotChange): void;
  /** Returns the slot's dirty bitmap (one bit per page) and clears it, re-protecting what it reported. */
  getDirtyLog(slotId: number): Uint32Array;
  /** Manual-protect variant: clears and re-protects the pages [first, first + count) of the slot. */
  clearDirtyLog(slotId: number, firstPage: number, count: number): void;
  /** Clears the accessed state of [gfn, gfn + count); returns how many pages had been accessed. */
  testAndClearYoung(gfn: number, count: number): number;
  /** Audits the MMU's state; returns one line per problem (empty when consistent). */
  check(): string[];
  /** Counters. */
  readonly stats: Record<string, number>;
  /** Host frames used by the MMU's own tables. */
  readonly tableFrames: number;
  /** Frees every table. */
  destroy(): void;
}
