/**
 * A guest inside a `Vm` (TDP or shadow MMU) for the access-path benchmarks (tlb, two-d,
 * tdp-fault, shadow). Everything is reproducible from the seed.
 *
 *  - memslot 0: guest RAM, `pages` 4 KiB pages at gfn 0 (data pages);
 *  - memslot 1: the guest's page tables, at gfn `pages` (a separate slot, so a benchmark can
 *    drop the data pages' mappings and keep the tables');
 *  - one address space: `userBase` + i * 4 KiB → gfn `dataGfn[i]`, a random permutation of the
 *    data pages (user, writable, NX; accessed/dirty as asked), page-table frames taken from a
 *    random allocator over memslot 1, as a guest kernel's would be;
 *  - the host pages behind both slots populated in a random order when `populate` is set, so
 *    host frames are scattered.
 * The vCPU is in long mode with the registers of bench/lib/guest.ts (CPL 3, SMEP, SMAP, PGE, NXE).
 */

import {
  type EntryBits,
  PageTableBuilder,
  type ShadowMmuOptions,
  type TableAllocator,
  type TdpMmuOptions,
  type Vcpu,
  Vm,
  x86Leaf,
} from "../../src/index.js";
import { GUEST_CPU, GUEST_REGS } from "./guest.js";
import { Prng } from "./prng.js";

export const USER_BASE = 0x7f0000000000;
export const DATA_HVA_PAGE = 0x7f3a00000;

export interface VmGuestOptions {
  /** Data pages (memslot 0). */
  pages: number;
  seed: number;
  mmu?: "tdp" | "shadow";
  tdp?: TdpMmuOptions;
  shadow?: ShadowMmuOptions;
  /** TLB preset or spec (default skylake-l1d). */
  tlb?: string;
  /** Populate every host page of both slots (random order) before anything else (default true). */
  populate?: boolean;
  /** Leaf attributes of the user mapping (default user, writable, NX, not accessed, not dirty). */
  leaf?: EntryBits;
  /** Map only the first `mapped` pages (default all). */
  mapped?: number;
  /** Extra host memory in frames (shadow tables, EPT tables). */
  extraFrames?: number;
  /** Size of the page-table memslot (default: enough for `mapped` contiguous pages). */
  tablePages?: number;
}

export interface VmGuest {
  vm: Vm;
  vcpu: Vcpu;
  tables: PageTableBuilder;
  /** The guest's CR3. */
  cr3: bigint;
  pages: number;
  /** gfn of page i of the user mapping. */
  dataGfn: Uint32Array;
  tableGfns: number[];
  /** Access descriptors of the guest's CPL-3 read and write. */
  read: number;
  write: number;
  /** First gfn of the table slot, and its size in pages. */
  tableBase: number;
  tablePages: number;
  /** Allocates one more guest table frame (for extra address spaces). */
  alloc: TableAllocator;
}

export function buildVmGuest(o: VmGuestOptions): VmGuest {
  const rng = new Prng(o.seed);
  const pages = o.pages;
  const mapped = o.mapped ?? pages;
  const tablePages = o.tablePages ?? Math.max(256, Math.ceil(mapped / 512) * 2 + 64);
  const extra = o.extraFrames ?? Math.ceil(pages / 256) + 4096;
  const vm = new Vm({
    cpu: GUEST_CPU,
    hostMemory: (pages + tablePages + extra) * 4096,
    mmu: o.mmu ?? "tdp",
    tdp: o.tdp,
    shadow: o.shadow,
    tlb: o.tlb,
  });
  const tableBase = pages;
  vm.addMemslot({ id: 0, baseGfn: 0, pages, hvaPage: DATA_HVA_PAGE });
  vm.addMemslot({ id: 1, baseGfn: tableBase, pages: tablePages, hvaPage: DATA_HVA_PAGE + pages + 512 });
  if (o.populate ?? true) {
    const order = rng.shuffle(Uint32Array.from({ length: pages + tablePages }, (_, i) => i));
    for (const gfn of order) vm.physical.frameWords(gfn);
  }
  const free = rng.shuffle(Uint32Array.from({ length: tablePages }, (_, i) => tableBase + i));
  let nextFree = 0;
  const tableGfns: number[] = [];
  const alloc: TableAllocator = () => {
    if (nextFree >= free.length) throw new Error("vm-guest: table slot exhausted");
    const gfn = free[nextFree++];
    const words = vm.physical.frameWords(gfn)!;
    words.fill(0, vm.physical.frameBase, vm.physical.frameBase + 1024);
    tableGfns.push(gfn);
    return gfn;
  };
  const vcpu = vm.createVcpu();
  // The format of the guest's tables (the role is rebuilt by setState below).
  vcpu.setState({ ...GUEST_REGS, cr3: 0n });
  const tables = new PageTableBuilder(vm.physical, vcpu.cpuRole.format!, alloc);
  const leaf = o.leaf ?? x86Leaf({ writable: true, user: true, noExecute: true });
  const dataGfn = rng.shuffle(Uint32Array.from({ length: pages }, (_, i) => i));
  for (let i = 0; i < mapped; i++) tables.map(BigInt(USER_BASE + i * 4096), dataGfn[i] * 4096, 4096, leaf);
  vcpu.setState({ ...GUEST_REGS, cr3: tables.cr3 });
  const role = vcpu.cpuRole;
  return {
    vm,
    vcpu,
    tables,
    cr3: tables.cr3,
    pages,
    dataGfn,
    tableGfns,
    read: role.accessFor("read"),
    write: role.accessFor("write"),
    tableBase,
    tablePages,
    alloc,
  };
}

/** The halves of the linear address of user page i, offset `off`. */
export function userVa(i: number, off = 0): { hi: number; lo: number } {
  const a = USER_BASE + i * 4096 + off;
  return { hi: Math.floor(a / 0x100000000), lo: a % 0x100000000 };
}

/** Process CPU time in ms (the rates are computed from it; see BENCHMARKS.md). */
export function cpuNow(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** Runs `f` and returns its wall and CPU milliseconds and its result. */
export function timed<T>(f: () => T): { ms: number; cpuMs: number; r: T } {
  const t0 = performance.now();
  const c0 = cpuNow();
  const r = f();
  const cpuMs = cpuNow() - c0;
  return { ms: performance.now() - t0, cpuMs, r };
}
