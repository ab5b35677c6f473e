/**
 * The paravirt seam: every page-table update and every TLB invalidation the guest kernel
 * makes goes through one `PagingOps` object, like Linux's `pv_ops.mmu`.
 *
 * `NativePagingOps` is the bare-metal (and TDP / trap-and-emulate shadow) implementation:
 * entries are written with ordinary stores through the vCPU to the kernel direct-map
 * address of the entry, and invalidations are INVLPG and MOV to CR3 / CR4 on that vCPU.
 * A hypervisor therefore sees exactly what it would see from a real kernel: under shadow
 * paging the stores hit write-protected guest tables and are emulated.
 *
 * A paravirtual (lguest-style) implementation replaces the writes and flushes with
 * hypercalls; the contract of each operation below says what it must achieve and which
 * lguest hypercall it corresponds to (drivers/lguest, `LHCALL_*`).
 *
 * The guest never reads its tables through this seam: reads are plain loads through the
 * direct map (a real lguest guest reads its own tables directly too).
 */

import { CR4_PGE } from "../arch/x86.js";
import type { Vcpu } from "../vm/vcpu.js";
import { cr4WithPcid, type GuestLayout } from "./layout.js";

/** `PteWrite.root` for a table shared by every address space (the kernel half). */
export const KERNEL_SHARED = -1;

/** One entry update, with everything a paravirtual hypervisor needs to shadow it. */
export interface PteWrite {
  /**
   * Guest-physical address of the root table (CR3 address bits) of the address space the
   * entry belongs to, or KERNEL_SHARED when the table is linked into every address space.
   */
  readonly root: number;
  /** First linear address the entry maps (for a non-leaf entry: of the range it covers). */
  readonly va: bigint;
  /** Level of the table holding the entry: 1 = page table (PTE), 2 = PD, ... root = layout.levels. */
  readonly level: number;
  /** Guest-physical address of the table holding the entry. */
  readonly tableGpa: number;
  /** Entry index in that table. */
  readonly index: number;
  /** The new entry, bits 31:0 and 63:32 (hi is 0 for 32-bit paging). */
  readonly lo: number;
  readonly hi: number;
}

/**
 * Page-table and TLB operations of the guest kernel.
 *
 * Ordering guarantees the kernel gives every implementation:
 * - a table is zeroed and announced with `allocTable` before any entry links it;
 * - an entry that makes a mapping less permissive or changes its frame is always followed
 *   (before the kernel relies on the change) by `invlpg` of each affected page or by
 *   `flushUser`, on every vCPU whose current address space contains the entry;
 * - entries that only become more permissive (not present → present, read-only → writable,
 *   NX cleared) are not followed by any invalidation (SDM 4.10.4.3: the processor re-walks
 *   after a fault, and a #PF invalidates the stale entry, SDM 4.10.4.2);
 * - a table is unlinked (its upper entry cleared and invalidated) before `releaseTable`.
 */
export interface PagingOps {
  /** A short name for reports ("native", "lguest"). */
  readonly name: string;

  /**
   * Writes a leaf entry: a 4 KiB PTE (level 1) or a huge-page entry (PS=1 at level 2 or
   * 3), also used to clear a leaf (lo = hi = 0) and to rewrite its bits (A cleared by
   * aging, R/W cleared for copy-on-write). lguest: LHCALL_SET_PTE(root, va, pte).
   * Afterwards a walk of `root` at `va` must see the new value.
   */
  setPte(cpu: Vcpu, w: PteWrite): void;

  /**
   * Writes a non-leaf entry: links a table (present) or unlinks one (0). Covers PDEs,
   * PDPTEs, PML4Es and PML5Es, and the per-process copies of the kernel half's root
   * entries. lguest: LHCALL_SET_PMD (level 2) / LHCALL_SET_PGD (root level).
   * PAE PDPTEs are written only into a root that no vCPU has loaded (PDPTEs are loaded
   * with CR3, SDM 4.4.1), so no CR3 reload is ever needed for them.
   */
  setUpper(cpu: Vcpu, w: PteWrite): void;

  /**
   * `gpa` is now a (zeroed) table of `level` in the address space `root` (KERNEL_SHARED
   * for kernel tables). Native: nothing to do. Paravirtual: may start tracking the frame
   * (Xen pins it; lguest may pre-create a shadow).
   */
  allocTable(cpu: Vcpu, gpa: number, level: number, root: number): void;

  /**
   * `gpa` is no longer a table (it was unlinked and invalidated, or its whole address
   * space is gone); the frame may be reused as data. Native: nothing to do. Paravirtual:
   * drop any shadow of it (Linux: paravirt_release_pte/pmd/pud/p4d).
   */
  releaseTable(cpu: Vcpu, gpa: number, level: number): void;

  /**
   * Switches the vCPU to the address space whose root is `root`; `cr3` is the full value
   * the kernel would load (root | PCID, bit 63 = keep that PCID's TLB entries).
   * lguest: LHCALL_NEW_PGTABLE(root). Native: MOV to CR3.
   */
  newPageTable(cpu: Vcpu, root: number, cr3: bigint): void;

  /**
   * Invalidates the translation of the page at `va` (any page size) in the vCPU's current
   * address space, and the paging-structure caches of that address space (SDM 4.10.4.1:
   * INVLPG drops all paging-structure-cache entries of the current PCID). lguest: the
   * guest's flush_tlb_single (LHCALL_SET_PTE of the current entry / LHCALL_FLUSH_TLB).
   */
  invlpg(cpu: Vcpu, va: bigint): void;

  /**
   * Invalidates every non-global translation of the vCPU's current address space.
   * lguest: LHCALL_FLUSH_TLB(0). Native: MOV to CR3 of the current value with the
   * no-flush bit clear.
   */
  flushUser(cpu: Vcpu): void;

  /**
   * Invalidates every translation including global (kernel) ones. lguest:
   * LHCALL_FLUSH_TLB(1). Native: toggling CR4.PGE (SDM 4.10.4.1).
   */
  flushAll(cpu: Vcpu): void;
}

/** Writes an entry through `cpu` at the direct-map address of (tableGpa, index). */
export function storeEntry(
  cpu: Vcpu,
  layout: GuestLayout,
  tableGpa: number,
  index: number,
  lo: number,
  hi: number,
): void {
  const va = layout.directBase + BigInt(tableGpa + index * layout.entryBytes);
  const r =
    layout.entryBytes === 8
      ? cpu.store(va, 8, (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0))
      : cpu.store(va, 4, lo >>> 0);
  if (!r.ok)
    throw new Error(
      `guest kernel: the direct-map store to table 0x${tableGpa.toString(16)}[${index}] faulted ` +
        `(vector ${r.fault.vector}, error 0x${r.fault.errorCode.toString(16)})`,
    );
}

/** The native implementation: stores through the vCPU, INVLPG, MOV CR3 / CR4. */
export class NativePagingOps implements PagingOps {
  readonly name = "native";

  constructor(private readonly layout: GuestLayout) {}

  setPte(cpu: Vcpu, w: PteWrite): void {
    storeEntry(cpu, this.layout, w.tableGpa, w.index, w.lo, w.hi);
  }

  setUpper(cpu: Vcpu, w: PteWrite): void {
    storeEntry(cpu, this.layout, w.tableGpa, w.index, w.lo, w.hi);
  }

  allocTable(_cpu: Vcpu, _gpa: number, _level: number, _root: number): void {
    // Native hardware needs no announcement: the table is found by the walk.
  }

  releaseTable(_cpu: Vcpu, _gpa: number, _level: number): void {
    // Native hardware keeps no state about tables beyond what the invalidations dropped.
  }

  newPageTable(cpu: Vcpu, _root: number, cr3: bigint): void {
    cpu.writeCr3(cr3);
  }

  invlpg(cpu: Vcpu, va: bigint): void {
    cpu.invlpg(va);
  }

  flushUser(cpu: Vcpu): void {
    cpu.writeCr3(cpu.currentCr3 & ~(1n << 63n));
  }

  flushAll(cpu: Vcpu): void {
    const cr4 = cr4WithPcid(this.layout);
    cpu.writeControl("cr4", cr4 & ~CR4_PGE);
    cpu.writeControl("cr4", cr4);
  }
}
