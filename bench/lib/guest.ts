/**
 * A realistic guest for benchmarks: guest RAM in one memslot over host memory, every page
 * populated in a random order (so host frames are scattered, as on a host that has been up
 * a while), and 4-level page tables whose table frames come from a random page allocator,
 * as a guest kernel's would. Everything is reproducible from the seed.
 *
 * Mappings (all in one address space, one CR3):
 *  - user:   `userBase` + i * 4 KiB → a random permutation of all guest frames (4 KiB pages,
 *            user, writable, NX): the "process heap" the walk benchmark walks;
 *  - kernel: the direct map at `kernelBase` covering all guest RAM with 2 MiB pages
 *            (supervisor, writable, NX, global), reported separately.
 */

import * as vmmu from "../../src/index.js";
import {
  ACCESS_USER,
  ACCESS_WRITE,
  type CpuRole,
  type GuestPhysical,
  type GuestWalker,
  type HostAddressSpace,
  type HostMemory,
  type Memslots,
  type TableAllocator,
} from "../../src/index.js";
import { Prng } from "./prng.js";

/** The library's API; bench/lib/ab.ts passes another copy of src/ to compare two versions. */
export type Vmmu = typeof vmmu;

/** CR0 = PG|WP|NE|ET|MP|PE, CR4 = PSE|PAE|MCE|PGE|OSFXSR|OSXMMEXCPT|SMEP|SMAP, EFER = NXE|LMA|LME|SCE (Linux-like). */
export const GUEST_REGS = { cr0: 0x80010033n, cr4: 0x3006f0n, efer: 0xd01n, cpl: 3 } as const;
export const GUEST_CPU = "intel-sapphirerapids";

export interface GuestOptions {
  /** Guest RAM in 4 KiB pages. */
  pages: number;
  seed: number;
  /** Base of the 4 KiB user mapping (canonical lower half). */
  userBase?: number;
  /** High 32 bits of the kernel direct map base (low half 0). */
  kernelBaseHi?: number;
}

export interface Guest {
  host: HostMemory;
  hostSpace: HostAddressSpace;
  memslots: Memslots;
  physical: GuestPhysical;
  role: CpuRole;
  walker: GuestWalker;
  /** Guest frames holding page tables (allocation order). */
  tableGfns: number[];
  userBase: number;
  kernelBaseHi: number;
  pages: number;
}

/** Host virtual page of guest RAM (a QEMU-like mmap address, 0x7f3a00000000). */
export const SLOT_HVA_PAGE = 0x7f3a00000;

export function buildGuest(o: GuestOptions, api: Vmmu = vmmu): Guest {
  const { CpuRole, cpuModel, cpuWalker, GuestPhysical, HostAddressSpace, HostMemory, Memslots } = api;
  const { PageTableBuilder, x86Leaf } = api;
  const rng = new Prng(o.seed);
  const pages = o.pages;
  const userBase = o.userBase ?? 0x7f0000000000;
  const kernelBaseHi = o.kernelBaseHi ?? 0xffff8880;
  if (pages % 512 !== 0) throw new RangeError("guest pages must be a multiple of 512 (2 MiB)");

  const host = new HostMemory((pages + 1024) * 4096);
  const hostSpace = new HostAddressSpace(host);
  const memslots = new Memslots();
  memslots.add({ id: 0, baseGfn: 0, pages, hvaPage: SLOT_HVA_PAGE });
  const physical = new GuestPhysical(memslots, hostSpace);

  // Populate every guest page in a random order: host frame numbers end up scattered.
  const order = rng.shuffle(Uint32Array.from({ length: pages }, (_, i) => i));
  for (const gfn of order) physical.frameWords(gfn);

  // Page-table frames from a random allocator (zeroed on allocation, as bumpAllocator does).
  const tableGfns: number[] = [];
  const free = rng.shuffle(Uint32Array.from({ length: pages }, (_, i) => i));
  let nextFree = 0;
  const alloc: TableAllocator = () => {
    const gfn = free[nextFree++];
    const words = physical.frameWords(gfn)!;
    words.fill(0, physical.frameBase, physical.frameBase + 1024);
    tableGfns.push(gfn);
    return gfn;
  };

  const role = CpuRole.from(GUEST_REGS, cpuModel(GUEST_CPU));
  const b = new PageTableBuilder(physical, role.format!, alloc);

  const userLeaf = x86Leaf({ writable: true, user: true, noExecute: true });
  const target = rng.shuffle(Uint32Array.from({ length: pages }, (_, i) => i));
  for (let i = 0; i < pages; i++) b.map(BigInt(userBase + i * 4096), target[i] * 4096, 4096, userLeaf);

  const kernelLeaf = x86Leaf({ writable: true, user: false, noExecute: true, global: true });
  const kbase = BigInt(kernelBaseHi) << 32n;
  for (let i = 0; i < pages / 512; i++)
    b.map(kbase + BigInt(i) * 0x200000n, i * 0x200000, 0x200000, kernelLeaf);

  const walker = cpuWalker(physical, role, b.cr3);
  return { host, hostSpace, memslots, physical, role, walker, tableGfns, userBase, kernelBaseHi, pages };
}

/** A list of accesses: address halves interleaved (lo, hi) and one ACCESS_* descriptor each. */
export interface AccessList {
  count: number;
  /** [2i] = low half, [2i+1] = high half. */
  va: Uint32Array;
  access: Uint8Array;
}

/** `count` random user accesses over the whole user mapping; `writePct` of them writes. */
export function userAccesses(g: Guest, count: number, seed: number, writePct = 25): AccessList {
  const rng = new Prng(seed);
  const va = new Uint32Array(count * 2);
  const access = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const a = g.userBase + rng.below(g.pages) * 4096 + (rng.next() & 0xff8);
    va[2 * i] = a % 0x100000000;
    va[2 * i + 1] = Math.floor(a / 0x100000000);
    access[i] = ACCESS_USER | (rng.below(100) < writePct ? ACCESS_WRITE : 0);
  }
  return { count, va, access };
}

/** `count` random supervisor accesses over the kernel direct map (2 MiB pages). */
export function kernelAccesses(g: Guest, count: number, seed: number, writePct = 25): AccessList {
  const rng = new Prng(seed);
  const va = new Uint32Array(count * 2);
  const access = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    va[2 * i] = (rng.below(g.pages) * 4096 + (rng.next() & 0xff8)) >>> 0;
    va[2 * i + 1] = g.kernelBaseHi;
    access[i] = rng.below(100) < writePct ? ACCESS_WRITE : 0;
  }
  return { count, va, access };
}
