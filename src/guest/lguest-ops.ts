/**
 * lguest-style paravirtual paging for the guest kernel: the guest writes its own tables
 * (under a paravirtual host they are not write-protected, so the store does not trap) and
 * then tells the host with a hypercall, which keeps the shadow tables in step; TLB flushes
 * are hypercalls too. The hypercalls follow lguest's: SET_PTE, SET_PMD/SET_PGD,
 * NEW_PGTABLE, FLUSH_TLB(0 / 1), plus an explicit "release table" (Linux's
 * paravirt_release_pte) so a freed table frame loses its shadows.
 */

import type { Vcpu } from "../vm/vcpu.js";
import type { GuestLayout } from "./layout.js";
import { type PagingOps, type PteWrite, storeEntry } from "./paravirt.js";

export class LguestPagingOps implements PagingOps {
  readonly name = "lguest";

  constructor(private readonly layout: GuestLayout) {}

  setPte(cpu: Vcpu, w: PteWrite): void {
    this.set(cpu, w);
  }

  setUpper(cpu: Vcpu, w: PteWrite): void {
    this.set(cpu, w);
  }

  allocTable(_cpu: Vcpu, _gpa: number, _level: number, _root: number): void {
    // A new table is zero: nothing maps through it yet, so the host has nothing to learn.
  }

  releaseTable(cpu: Vcpu, gpa: number, _level: number): void {
    cpu.hypercall({ kind: "release-table", tableGpa: gpa });
  }

  newPageTable(cpu: Vcpu, _root: number, cr3: bigint): void {
    // LHCALL_NEW_PGTABLE: the host switches to (or builds) the shadow of this root.
    cpu.writeCr3(cr3);
  }

  invlpg(cpu: Vcpu, va: bigint): void {
    cpu.hypercall({ kind: "invlpg", vaHi: Number(va >> 32n) >>> 0, vaLo: Number(va & 0xffffffffn) >>> 0 });
  }

  flushUser(cpu: Vcpu): void {
    cpu.hypercall({ kind: "flush", all: false });
  }

  flushAll(cpu: Vcpu): void {
    cpu.hypercall({ kind: "flush", all: true });
  }

  private set(cpu: Vcpu, w: PteWrite): void {
    storeEntry(cpu, this.layout, w.tableGpa, w.index, w.lo, w.hi);
    cpu.hypercall({
      kind: "set-entry",
      tableGpa: w.tableGpa,
      index: w.index,
      level: w.level,
      lo: w.lo,
      hi: w.hi,
    });
  }
}
