/**
 * Helpers for the VM tests: guest register states for every paging mode, the host TDP
 * configurations, and a guest whose page tables live in a memslot of a fresh VM.
 */

import { CpuRole } from "../../src/arch/cpu.js";
import type { Vcpu } from "../../src/vm/vcpu.js";
import { Vm, type VmOptions } from "../../src/vm/vm.js";
import { bumpAllocator, PageTableBuilder } from "../../src/walk/builder.js";
import type { CpuState } from "../../src/walk/translate.js";

export type GuestMode = "32bit" | "pae" | "4level" | "5level";

/** CR0 = PG|WP|PE. 32-bit: CR4.PSE; PAE: CR4.PAE + EFER.NXE; long modes: LME|LMA|NXE. */
export const MODE_REGS: Record<GuestMode, { cr0: bigint; cr4: bigint; efer: bigint }> = {
  "32bit": { cr0: 0x80010001n, cr4: 0x10n, efer: 0n },
  pae: { cr0: 0x80010001n, cr4: 0x20n, efer: 0x800n },
  "4level": { cr0: 0x80010001n, cr4: 0x20n, efer: 0xd00n },
  "5level": { cr0: 0x80010001n, cr4: 0x1020n, efer: 0xd00n },
};

/** Guest table levels read from memory for a 4 KiB page (PAE PDPTEs are registers). */
export const GUEST_TABLE_READS: Record<GuestMode, number> = { "32bit": 2, pae: 2, "4level": 4, "5level": 5 };

export interface HostConfig {
  name: string;
  cpu: string;
  tdp: VmOptions["tdp"];
  /** Host table levels (EPT/NPT references per guest-physical translation, 4 KiB leaves). */
  levels: number;
}

export const HOSTS: HostConfig[] = [
  { name: "EPT 4-level", cpu: "intel-sapphirerapids", tdp: {}, levels: 4 },
  { name: "EPT 5-level", cpu: "intel-sapphirerapids", tdp: { levels: 5 }, levels: 5 },
  { name: "NPT 4-level", cpu: "amd-zen4", tdp: { format: "npt" }, levels: 4 },
  { name: "NPT 5-level", cpu: "amd-zen4", tdp: { format: "npt", levels: 5 }, levels: 5 },
];

export interface Guest {
  vm: Vm;
  vcpu: Vcpu;
  tables: PageTableBuilder;
  regs: CpuState;
  role: CpuRole;
}

/**
 * A VM with memslot 0 = gfn 0..tablePages (guest tables allocated from gfn 0x10) and one vCPU
 * whose state is loaded after `map` ran.
 */
export function makeGuest(
  mode: GuestMode,
  o: VmOptions = {},
  map: (t: PageTableBuilder, vm: Vm) => void = () => {},
  tablePages = 1024,
): Guest {
  const vm = new Vm({ hostMemory: 64 << 20, ...o });
  vm.addMemslot({ id: 0, baseGfn: 0, pages: tablePages, hvaPage: 0x10000 });
  const role = CpuRole.from(MODE_REGS[mode], vm.cpu);
  const tables = new PageTableBuilder(vm.physical, role.format!, bumpAllocator(vm.physical, 0x10, 128));
  map(tables, vm);
  const vcpu = vm.createVcpu();
  const regs = { ...MODE_REGS[mode], cr3: tables.cr3 };
  vcpu.setState(regs);
  return { vm, vcpu, tables, regs, role };
}

export const hex = (n: number | bigint): string => `0x${n.toString(16)}`;

/** Bit `page` of a dirty bitmap. */
export function bit(bitmap: Uint32Array, page: number): number {
  return (bitmap[page >>> 5] >>> (page & 31)) & 1;
}

/** The pages set in a dirty bitmap of `pages` bits. */
export function bitsSet(bitmap: Uint32Array, pages: number): number[] {
  const out: number[] = [];
  for (let p = 0; p < pages; p++) if (bit(bitmap, p)) out.push(p);
  return out;
}

export interface HostLeaf {
  level: number;
  /** Host physical address of the entry. */
  addr: number;
  lo: number;
  hi: number;
  mmio: boolean;
}

/** The EPT/NPT entry that ends the walk for `gpa` (a leaf or MMIO SPTE), or null when none. */
export function hostLeaf(vm: Vm, gpa: number): HostLeaf | null {
  const sp = vm.mmu.spte;
  const gfn = Math.floor(gpa / 4096);
  let table = vm.mmu.rootHfn;
  for (let l = vm.mmu.levels; l >= 1; l--) {
    const idx = Math.floor(gfn / 512 ** (l - 1)) % 512;
    const words = vm.host.frameWords(table)!;
    const i = vm.host.frameBase + idx * 2;
    const lo = words[i];
    const hi = words[i + 1];
    if ((lo & sp.format.presentMask) === 0) return null;
    const addr = table * 4096 + idx * 8;
    if (sp.isMmio(lo, hi)) return { level: l, addr, lo, hi, mmio: true };
    if (sp.isLeaf(lo, l)) return { level: l, addr, lo, hi, mmio: false };
    table = sp.frameOf(lo, hi);
  }
  return null;
}

/** Overwrites the low half of a host table entry (to corrupt state for check() tests). */
export function pokeHostEntry(vm: Vm, addr: number, lo: number, hi: number): void {
  const words = vm.host.frameWords(Math.floor(addr / 4096))!;
  const i = vm.host.frameBase + ((addr % 4096) >>> 2);
  words[i] = lo >>> 0;
  words[i + 1] = hi >>> 0;
}
