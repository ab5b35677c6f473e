import { describe, expect, it } from "vitest";
import {
  TLB_1G,
  TLB_2M,
  TLB_4K,
  TLB_DIRTY,
  TLB_GLOBAL,
  TLB_HIGH_FRAME,
  TLB_MISS,
  Tlb,
  tlbAttrs,
  tlbAttrsFromWalk,
} from "../../src/hw/tlb.js";
import {
  FLUSH_ALL,
  FLUSH_INVEPT_GLOBAL,
  FLUSH_INVEPT_SINGLE,
  FLUSH_INVLPG,
  FLUSH_MOV_CR3,
  FLUSH_MOV_CR4,
  FLUSH_NAMES,
  FLUSH_RANGE,
} from "../../src/hw/tlb-stats.js";
import {
  ACCESS_AC,
  ACCESS_FETCH,
  ACCESS_USER,
  ACCESS_WRITE,
  type CpuRegisters,
  CpuRole,
  CR0_PG,
  CR0_WP,
  CR4_PAE,
  CR4_PCIDE,
  CR4_PGE,
  CR4_PKE,
  CR4_PSE,
  CR4_SMAP,
  CR4_SMEP,
  cpuModel,
  cpuWalker,
  PageTableBuilder,
  Walk,
  X86_EFF_U,
  X86_EFF_W,
  X86_EFF_X,
  x86Leaf,
} from "../../src/index.js";
import { makeGuest } from "../helpers.js";

// ---- helpers --------------------------------------------------------------------------------

const BASE_REGS: CpuRegisters = { cr0: 0x80010001n, cr4: 0xa0n, efer: 0xd00n }; // 4-level, WP, PGE
function role(regs: Partial<CpuRegisters> = {}): CpuRole {
  return CpuRole.from({ ...BASE_REGS, ...regs }, cpuModel("qemu-max"));
}
const ROLE = role();

const RWXU_D = tlbAttrs(7, true, 0, false);
const RWXU_D_G = tlbAttrs(7, true, 0, true);
const K = 4096;
const M2 = 2 << 20;

function halves(va: bigint): [number, number] {
  return [Number((va >> 32n) & 0xffffffffn), Number(va & 0xffffffffn)];
}
function makeTlb(spec = "huge"): Tlb {
  const t = new Tlb(spec);
  t.setPermissions(ROLE);
  return t;
}
function put(t: Tlb, va: bigint, pa: number, shift = 12, attrs = RWXU_D): number {
  const [hi, lo] = halves(va);
  return t.insert(hi, lo, pa, shift, attrs);
}
function get(t: Tlb, va: bigint, access = 0): number {
  const [hi, lo] = halves(va);
  return t.lookup(hi, lo, access);
}
function invlpg(t: Tlb, va: bigint): number {
  const [hi, lo] = halves(va);
  return t.invlpg(hi, lo);
}
/** Fills one 4 KiB entry at `va` per (vpid, pcid, ept, global) context and returns the TLB. */
function populated(contexts: [number, number, number, boolean][], va = 0x1000n, spec = "huge"): Tlb {
  const t = makeTlb(spec);
  contexts.forEach(([v, p, e, g], i) => {
    t.setContext(v, p, e);
    put(t, va, 0x100000 + i * K, 12, g ? RWXU_D_G : RWXU_D);
  });
  return t;
}
/** The (vpid, pcid, ept, global) of every entry, sorted. */
function contexts(t: Tlb): string[] {
  return t
    .entries()
    .map((e) => `${e.vpid}/${e.global ? "G" : e.pcid}/${e.eptTag}`)
    .sort();
}

// ---- lookup and fill -------------------------------------------------------------------------

describe("Tlb lookup and insert", () => {
  it("misses when empty, hits after a fill, per page size, with the page offset added", () => {
    const t = makeTlb();
    expect(get(t, 0x7000_1234n)).toBe(TLB_MISS);
    put(t, 0x7000_1000n, 0x5_0000_0000 + 0x3000, 12);
    put(t, 0x4000_0000n + 2n * BigInt(M2), 0x8_0020_0000, 21);
    put(t, 0x80_0000_0000n, 0x40_0000_0000, 30);
    expect(get(t, 0x7000_1234n)).toBe(0x5_0000_3234);
    expect(get(t, 0x4000_0000n + 2n * BigInt(M2) + 0x1_2345n)).toBe(0x8_0021_2345);
    expect(get(t, 0x80_0000_0000n + 0x3fff_fffen)).toBe(0x40_3fff_fffe);
    expect(get(t, 0x7000_2000n)).toBe(TLB_MISS);
    expect([...t.stats.hits]).toEqual([1, 1, 1]);
    expect([...t.stats.inserts]).toEqual([1, 1, 1]);
    expect(t.stats.misses).toBe(2);
    expect(t.entriesInUse).toBe(3);
    expect(t.audit()).toEqual([]);
  });

  it("lookupFrame gives the 4 KiB frame number while the entry's frames are below 2^31", () => {
    const t = makeTlb();
    const frame = (va: bigint, access = 0) => {
      const [hi, lo] = halves(va);
      return t.lookupFrame(hi, lo, access);
    };
    put(t, 0x1000n, (2 ** 31 - 1) * K, 12);
    put(t, 0x2000n, 2 ** 31 * K, 12);
    put(t, 0x20_0000n, (2 ** 31 - 512) * K, 21); // last 4 KiB frame 2^31 - 1
    put(t, 0x40_0000n, 2 ** 31 * K, 21);
    put(t, 0x4000_0000n, 2 ** 39 * K, 30);
    expect(frame(0x1ffcn)).toBe(2 ** 31 - 1);
    expect(frame(0x20_0000n + 0x1f_f000n)).toBe(2 ** 31 - 1);
    expect(frame(0x20_0000n + 0x3000n)).toBe(2 ** 31 - 512 + 3);
    expect(t.stats.totalHits).toBe(3);
    // Frame numbers from 2^31: counted by nothing, answered by lookup.
    expect(frame(0x2ffcn)).toBe(TLB_HIGH_FRAME);
    expect(frame(0x40_1000n)).toBe(TLB_HIGH_FRAME);
    expect(frame(0x4000_0000n)).toBe(TLB_HIGH_FRAME);
    expect(t.stats.totalHits + t.stats.misses).toBe(3);
    expect(get(t, 0x2ffcn)).toBe(2 ** 31 * K + 0xffc);
    expect(get(t, 0x41_2345n)).toBe(2 ** 31 * K + 0x1_2345);
    expect(get(t, 0x4000_0000n + 0x3fff_fffcn)).toBe(2 ** 39 * K + 0x3fff_fffc);
    expect([...t.stats.hits]).toEqual([2, 3, 1]);
    // Misses and refused rights are counted as lookup counts them.
    expect(frame(0x3000n)).toBe(TLB_MISS);
    put(t, 0x5000n, 0x9000, 12, tlbAttrs(7, false, 0, false));
    expect(frame(0x5000n, ACCESS_WRITE)).toBe(TLB_MISS);
    expect(t.stats.misses).toBe(2);
    expect(t.stats.rightsMisses).toBe(1);
    expect(t.audit()).toEqual([]);
  });

  it("keeps words with bit 31 set exact: page numbers, VPIDs and EPT tags up to 0xffff", () => {
    const t = makeTlb("tiny");
    const va = 0x0800_0000_0234n; // page number bits 31:0 = 0x8000_0000
    t.setContext(0xffff, 0xfff, 0xffff);
    put(t, va, 0x7000, 12);
    put(t, 0x0800_0010_0000n, 0x4000_0000, 30); // the 1 GiB page holding va
    expect(get(t, va)).toBe(0x7234);
    expect(t.peek(...halves(va))).toMatchObject({ vpid: 0xffff, pcid: 0xfff, eptTag: 0xffff, vaHi: 0x800 });
    expect(t.audit()).toEqual([]);
    expect(t.flushRange(0xffff, 0x8000_0001, 1)).toBe(1); // the 1 GiB page only
    expect(get(t, va)).toBe(0x7234);
    expect(t.invept(1, 0xffff)).toBe(1);
    expect(get(t, va)).toBe(TLB_MISS);
  });

  it("takes the page base from any address inside the page", () => {
    const t = makeTlb();
    put(t, 0x20_0000n + 0x1_2345n, 0x4020_0000 + 0x1_2345, 21);
    expect(get(t, 0x20_0000n)).toBe(0x4020_0000);
    expect(t.entries()[0].physical).toBe(0x4020_0000);
  });

  it("uses linear address bits 56:0: high canonical and 5-level addresses are distinct pages", () => {
    const t = makeTlb();
    put(t, 0xffff_8000_0000_1000n, 0x1000, 12);
    put(t, 0x0000_8000_0000_1000n, 0x2000, 12);
    put(t, 0x00ff_ffff_ffff_f000n, 0x3000, 12);
    put(t, 0xff00_0000_0000_0000n, 0x4000, 12); // 5-level kernel half
    expect(get(t, 0xffff_8000_0000_1008n)).toBe(0x1008);
    expect(get(t, 0x0000_8000_0000_1008n)).toBe(0x2008);
    expect(get(t, 0x00ff_ffff_ffff_f008n)).toBe(0x3008);
    expect(get(t, 0xff00_0000_0000_0008n)).toBe(0x4008);
    expect(get(t, 0x0000_0000_0000_0008n)).toBe(TLB_MISS); // bit 56 differs from 0xff00...
    // Bits 63:57 only copy bit 56 in a canonical address, so they are not part of the page.
    expect(get(t, 0x0100_0000_0000_0008n)).toBe(0x4008);
    put(t, 0xffff_ffff_ffff_f000n, 0x5000, 12); // the last page: page number 2^45 - 1, exact
    expect(get(t, 0xffff_ffff_ffff_ffffn)).toBe(0x5fff);
    const e = t.entries().find((x) => x.page === 2 ** 45 - 1)!;
    expect([e.vaHi, e.vaLo]).toEqual([0x01ff_ffff, 0xffff_f000]);
    expect(t.entries().find((x) => x.physical === 0x3000)!.page).toBe(2 ** 44 - 1);
  });

  it("caches a 4 MiB page as the 2 MiB fragment holding the address", () => {
    const t = makeTlb();
    put(t, 0x0080_0000n + 0x30_1234n, 0x1234_0000_0000 + 0x30_1234, 22); // upper half
    const [e] = t.entries();
    expect(e).toMatchObject({ size: "2m", pageShift: 22, cachedShift: 21, physical: 0x1234_0020_0000 });
    expect(get(t, 0x00a0_0000n + 0x5n)).toBe(0x1234_0020_0005);
    expect(get(t, 0x0080_0000n)).toBe(TLB_MISS); // the other fragment was never filled
    expect(t.stats.inserts[TLB_2M]).toBe(1);
  });

  it("replaces the entry for the same address and context instead of shadowing it", () => {
    const t = makeTlb();
    put(t, 0x5000n, 0x1000, 12, tlbAttrs(7, false, 0, false));
    expect(get(t, 0x5000n, ACCESS_WRITE)).toBe(TLB_MISS);
    expect(t.stats.rightsMisses).toBe(1);
    put(t, 0x5000n, 0x1000, 12, RWXU_D); // the refill after the walk set D
    expect(get(t, 0x5000n, ACCESS_WRITE)).toBe(0x1000);
    expect(t.entriesInUse).toBe(1);
    expect(t.stats.replaced).toBe(1);
    // A fill of another size for the address replaces it too (tables changed, then a walk).
    put(t, 0x5000n, 0x20_5000, 21);
    expect(t.entriesInUse).toBe(1);
    expect(get(t, 0x5000n)).toBe(0x20_5000);
    expect(t.audit()).toEqual([]);
  });

  it("does not store sizes the configuration does not cache", () => {
    const t = makeTlb("4k:4x2");
    expect(put(t, 0x20_0000n, 0x20_0000, 21)).toBe(-1);
    expect(put(t, 0x4000_0000n, 0x4000_0000, 30)).toBe(-1);
    expect(t.stats.uncached).toBe(2);
    expect(get(t, 0x20_0000n)).toBe(TLB_MISS);
    expect(t.entriesInUse).toBe(0);
    const none = makeTlb("none");
    expect(none.capacity).toBe(0);
    expect(put(none, 0x1000n, 0x1000)).toBe(-1);
    expect(get(none, 0x1000n)).toBe(TLB_MISS);
  });

  it("refuses bad fills and bad tags", () => {
    const t = makeTlb();
    expect(() => put(t, 0n, 0, 13)).toThrow(/page shift 13/);
    expect(() => put(t, 0n, -1)).toThrow(/physical address/);
    expect(() => put(t, 0n, 2 ** 52)).toThrow(/physical address/);
    expect(() => put(t, 0n, 0, 12, 0x200)).toThrow(/attributes/);
    expect(() => t.setContext(0x10000, 0, 0)).toThrow(/VPID 65536/);
    expect(() => t.setContext(0, 0x1000, 0)).toThrow(/PCID 4096/);
    expect(() => t.setContext(0, 0, -1)).toThrow(/EPT tag -1/);
    expect(() => t.movToCr3(1.5)).toThrow(/PCID/);
  });
});

// ---- rights ----------------------------------------------------------------------------------

describe("deciding an access from an entry", () => {
  const U = X86_EFF_U;
  const W = X86_EFF_W;
  const X = X86_EFF_X;

  it("misses on every access until permission rules are installed", () => {
    const t = new Tlb("huge");
    put(t, 0x1000n, 0x1000);
    expect(get(t, 0x1000n)).toBe(TLB_MISS);
    t.setPermissions(ROLE);
    expect(get(t, 0x1000n)).toBe(0x1000);
  });

  it("a write through a clean entry misses (the walk must set D); reads and fetches hit", () => {
    const t = makeTlb();
    put(t, 0x1000n, 0x1000, 12, tlbAttrs(W | X, false, 0, false));
    expect(get(t, 0x1000n, 0)).toBe(0x1000);
    expect(get(t, 0x1000n, ACCESS_FETCH)).toBe(0x1000);
    expect(get(t, 0x1000n, ACCESS_WRITE)).toBe(TLB_MISS);
    expect(t.stats.rightsMisses).toBe(1);
  });

  it("user/supervisor, read-only and execute-disable follow the role's table", () => {
    const t = makeTlb();
    put(t, 0x1000n, 0x1000, 12, tlbAttrs(W | X, true, 0, false)); // supervisor page
    put(t, 0x2000n, 0x2000, 12, tlbAttrs(U, true, 0, false)); // user, read-only, NX
    expect(get(t, 0x1000n, ACCESS_USER)).toBe(TLB_MISS);
    expect(get(t, 0x1000n, ACCESS_WRITE)).toBe(0x1000);
    expect(get(t, 0x2000n, ACCESS_USER)).toBe(0x2000);
    expect(get(t, 0x2000n, ACCESS_USER | ACCESS_WRITE)).toBe(TLB_MISS);
    expect(get(t, 0x2000n, ACCESS_USER | ACCESS_FETCH)).toBe(TLB_MISS);
    expect(get(t, 0x2000n, ACCESS_WRITE)).toBe(TLB_MISS); // CR0.WP=1: supervisor writes obey R/W
    t.setPermissions(role({ cr0: 0x80000001n })); // WP=0
    expect(get(t, 0x2000n, ACCESS_WRITE)).toBe(0x2000);
  });

  it("SMEP and SMAP apply on each hit, without a flush", () => {
    const t = makeTlb();
    put(t, 0x2000n, 0x2000, 12, tlbAttrs(U | W | X, true, 0, false));
    expect(get(t, 0x2000n, ACCESS_FETCH)).toBe(0x2000);
    expect(get(t, 0x2000n, 0)).toBe(0x2000);
    t.setPermissions(role({ cr4: BigInt(0xa0 | CR4_SMEP | CR4_SMAP) }));
    expect(get(t, 0x2000n, ACCESS_FETCH)).toBe(TLB_MISS);
    expect(get(t, 0x2000n, 0)).toBe(TLB_MISS);
    expect(get(t, 0x2000n, ACCESS_AC)).toBe(0x2000); // EFLAGS.AC=1 lifts SMAP for explicit accesses
    expect(t.entriesInUse).toBe(1);
  });

  it("protection keys: access-disable blocks data accesses, write-disable blocks writes; fetches pass", () => {
    const t = makeTlb();
    put(t, 0x3000n, 0x3000, 12, tlbAttrs(U | W | X, true, 5, false));
    const pke = (pkru: number) => role({ cr4: BigInt(0xa0 | CR4_PKE), pkru });
    t.setPermissions(pke(1 << 10)); // AD for key 5
    expect(get(t, 0x3000n, ACCESS_USER)).toBe(TLB_MISS);
    expect(get(t, 0x3000n, ACCESS_USER | ACCESS_FETCH)).toBe(0x3000);
    t.setPermissions(pke(2 << 10)); // WD for key 5
    expect(get(t, 0x3000n, ACCESS_USER)).toBe(0x3000);
    expect(get(t, 0x3000n, ACCESS_USER | ACCESS_WRITE)).toBe(TLB_MISS);
    t.setPermissions(pke(3 << 8)); // another key
    expect(get(t, 0x3000n, ACCESS_USER | ACCESS_WRITE)).toBe(0x3000);
  });

  it("tlbAttrsFromWalk takes rights, key, D and G (with PGE) from a real walk", () => {
    const g = makeGuest();
    const r = role({ cr4: BigInt(0xa0 | CR4_PKE) });
    const tables = new PageTableBuilder(g.physical, r.format!, g.alloc);
    tables.map(0x40_0000n, 0x20_0000, K, x86Leaf({ user: true, global: true, pkey: 3, noExecute: true }));
    const walker = cpuWalker(g.physical, r, tables.cr3);
    const w = new Walk();
    expect(walker.walk(0, 0x40_0123, ACCESS_USER, w)).toBe(true);
    const a = tlbAttrsFromWalk(w, true);
    expect(a).toBe(W | U | (3 << 4) | TLB_GLOBAL); // read: D not set, X clear (XD)
    expect(tlbAttrsFromWalk(w, false) & TLB_GLOBAL).toBe(0);
    expect(walker.walk(0, 0x40_0123, ACCESS_USER | ACCESS_WRITE, w)).toBe(true);
    expect(tlbAttrsFromWalk(w, true) & TLB_DIRTY).toBe(TLB_DIRTY);
    const t = new Tlb("tiny");
    t.setPermissions(r);
    t.insertWalk(w, r.pge);
    expect(t.lookup(0, 0x40_0456, ACCESS_USER | ACCESS_WRITE)).toBe(0x20_0456);
    expect(t.entries()[0]).toMatchObject({ global: true, pageShift: 12 });
  });
});

// ---- tags ------------------------------------------------------------------------------------

describe("tags: VPID, PCID, global, EPT tag", () => {
  it("a non-global entry matches only its PCID; a global one every PCID of its VPID and EPT tag", () => {
    const t = makeTlb();
    t.setContext(1, 5, 0);
    put(t, 0x1000n, 0xa000);
    put(t, 0x2000n, 0xb000, 12, RWXU_D_G);
    t.setContext(1, 6, 0);
    expect(get(t, 0x1000n)).toBe(TLB_MISS);
    expect(get(t, 0x2000n)).toBe(0xb000);
    t.setContext(2, 5, 0);
    expect(get(t, 0x1000n)).toBe(TLB_MISS);
    expect(get(t, 0x2000n)).toBe(TLB_MISS);
    t.setContext(1, 5, 3);
    expect(get(t, 0x1000n)).toBe(TLB_MISS);
    expect(get(t, 0x2000n)).toBe(TLB_MISS);
    t.setContext(1, 5, 0);
    expect(get(t, 0x1000n)).toBe(0xa000);
    expect([t.vpid, t.pcid, t.eptTag]).toEqual([1, 5, 0]);
  });

  it("the same address in different contexts holds different translations", () => {
    const t = makeTlb("4k:16x16");
    for (let v = 0; v < 3; v++)
      for (let e = 0; e < 3; e++) {
        t.setContext(v, 7, e);
        put(t, 0x1000n, (v * 3 + e + 1) * K);
      }
    expect(t.entriesInUse).toBe(9);
    for (let v = 0; v < 3; v++)
      for (let e = 0; e < 3; e++) {
        t.setContext(v, 7, e);
        expect(get(t, 0x1000n)).toBe((v * 3 + e + 1) * K);
      }
  });
});

// ---- invalidation ----------------------------------------------------------------------------

describe("invalidation (SDM 4.10.4.1, 28.3.3.1)", () => {
  // vpid/pcid/ept/global contexts used by most tests below
  const CTX: [number, number, number, boolean][] = [
    [1, 1, 0, false],
    [1, 2, 0, false],
    [1, 3, 0, true],
    [1, 1, 4, false],
    [2, 1, 0, false],
    [2, 3, 0, true],
    [0, 0, 0, false],
    [0, 1, 0, true],
  ];

  it("INVLPG: current VPID, current PCID and globals, every EPT tag, every page size", () => {
    const t = populated(CTX);
    t.setContext(1, 1, 0);
    // other sizes covering the address, in the current context
    t.setContext(1, 1, 5);
    put(t, 0x1000n, 0x40_0000, 21);
    t.setContext(1, 1, 6);
    put(t, 0x1000n, 0x4000_0000, 30);
    t.setContext(1, 1, 0);
    put(t, 0x2000n, 0x2000); // another page stays
    const before = t.entriesInUse;
    expect(invlpg(t, 0x1abcn)).toBe(5); // 1/1/0, 1/G/0, 1/1/4, and the 2M and 1G entries
    expect(t.entriesInUse).toBe(before - 5);
    expect(contexts(t).filter((c) => c.startsWith("1/"))).toEqual(["1/1/0", "1/2/0"]);
    expect(t.entries().find((e) => e.vpid === 1 && e.pcid === 1)!.page).toBe(2);
    expect(t.stats.flushes[FLUSH_INVLPG]).toBe(1);
    expect(t.stats.dropped[FLUSH_INVLPG]).toBe(5);
  });

  it("INVLPG and page faults drop both 2 MiB fragments of a 4 MiB page", () => {
    const t = makeTlb();
    put(t, 0x40_0000n, 0x80_0000, 22);
    put(t, 0x60_0000n, 0xa0_0000, 22);
    put(t, 0x80_0000n, 0xc0_0000, 22); // the next 4 MiB page
    put(t, 0xa0_0000n, 0xe0_0000, 21); // a 2 MiB page next to it: not a fragment
    expect(t.entriesInUse).toBe(4);
    expect(invlpg(t, 0x40_0010n)).toBe(2);
    expect(t.entries().map((e) => e.page * K)).toEqual([0x80_0000, 0xa0_0000]);
    expect(t.pageFault(0, 0x80_0000)).toBe(1); // the 2 MiB neighbour is not a fragment of this page
    expect(t.entries().map((e) => e.page * K)).toEqual([0xa0_0000]);
  });

  it("MOV to CR3 without PCIDs: drops PCID 0's non-global entries of the current VPID", () => {
    const t = populated(CTX);
    t.setContext(0, 0, 0);
    expect(t.movToCr3(0)).toBe(1);
    expect(contexts(t)).toEqual(["0/G/0", "1/1/0", "1/1/4", "1/2/0", "1/G/0", "2/1/0", "2/G/0"]);
    expect(t.stats.flushes[FLUSH_MOV_CR3]).toBe(1);
  });

  it("MOV to CR3 with PCIDs: drops the new PCID's non-global entries unless bit 63 is set", () => {
    const t = populated(CTX);
    t.setContext(1, 2, 0);
    expect(t.movToCr3(1, true)).toBe(0);
    expect(t.pcid).toBe(1);
    expect(t.entriesInUse).toBe(CTX.length);
    expect(t.stats.flushes[FLUSH_MOV_CR3]).toBe(0);
    expect(t.movToCr3(1)).toBe(2); // 1/1/0 and 1/1/4 (any EPT tag)
    expect(contexts(t)).toEqual(["0/0/0", "0/G/0", "1/2/0", "1/G/0", "2/1/0", "2/G/0"]);
  });

  it("MOV to CR4 changing PGE, or clearing PCIDE, drops every entry of the current VPID", () => {
    for (const [from, to] of [
      [CR4_PAE, CR4_PAE | CR4_PGE],
      [CR4_PAE | CR4_PGE, CR4_PAE],
      [CR4_PAE | CR4_PCIDE, CR4_PAE],
    ]) {
      const t = populated(CTX);
      t.setContext(1, 2, 0);
      expect(t.movToCr4(from, to)).toBe(4);
      expect(contexts(t)).toEqual(["0/0/0", "0/G/0", "2/1/0", "2/G/0"]);
      expect(t.stats.flushes[FLUSH_MOV_CR4]).toBe(1);
      expect(t.pcid).toBe(from & CR4_PCIDE ? 0 : 2);
    }
  });

  it("MOV to CR4 changing PAE or setting SMEP drops what the current PCID can use", () => {
    for (const [from, to] of [
      [CR4_PSE, CR4_PSE | CR4_PAE],
      [CR4_PAE, CR4_PAE | CR4_SMEP],
    ]) {
      const t = populated(CTX);
      t.setContext(1, 2, 0);
      expect(t.movToCr4(from, to)).toBe(2);
      expect(contexts(t)).toEqual(["0/0/0", "0/G/0", "1/1/0", "1/1/4", "2/1/0", "2/G/0"]);
    }
  });

  it("MOV to CR4 clearing SMEP, or changing other bits, flushes nothing", () => {
    const t = populated(CTX);
    t.setContext(1, 1, 0);
    expect(t.movToCr4(CR4_PAE | CR4_SMEP, CR4_PAE)).toBe(0);
    expect(t.movToCr4(CR4_PAE, CR4_PAE | CR4_PCIDE | CR4_SMAP | CR4_PKE)).toBe(0);
    expect(t.entriesInUse).toBe(CTX.length);
    expect(t.stats.flushes[FLUSH_MOV_CR4]).toBe(0);
  });

  it("MOV to CR0 clearing PG drops the current VPID's entries; toggling WP does not", () => {
    const t = populated(CTX);
    t.setContext(2, 1, 0);
    const on = CR0_PG | CR0_WP | 1;
    expect(t.movToCr0(on, on & ~CR0_WP)).toBe(0);
    expect(t.movToCr0(1, on)).toBe(0);
    expect(t.movToCr0(on, CR0_WP | 1)).toBe(2);
    expect(contexts(t).filter((c) => c.startsWith("2/"))).toEqual([]);
  });

  it("INVPCID types 0..3", () => {
    let t = populated(CTX);
    t.setContext(1, 3, 0);
    put(t, 0x5000n, 0x5000); // 1/3/0 at another address
    expect(t.invpcid(0, 1, 0, 0x1000)).toBe(2); // PCID 1, any EPT tag, not globals
    expect(t.invpcid(0, 3, 0, 0x1000)).toBe(0); // 1/G/0 is global
    expect(contexts(t).filter((c) => c.startsWith("1/"))).toEqual(["1/2/0", "1/3/0", "1/G/0"]);

    t = populated(CTX);
    t.setContext(1, 3, 0);
    expect(t.invpcid(1, 2, 0, 0)).toBe(1);
    expect(contexts(t).filter((c) => c.startsWith("1/"))).toEqual(["1/1/0", "1/1/4", "1/G/0"]);

    t = populated(CTX);
    t.setContext(1, 3, 0);
    expect(t.invpcid(2, 0)).toBe(4);
    expect(contexts(t)).toEqual(["0/0/0", "0/G/0", "2/1/0", "2/G/0"]);

    t = populated(CTX);
    t.setContext(1, 3, 0);
    expect(t.invpcid(3, 0)).toBe(3);
    expect(contexts(t)).toEqual(["0/0/0", "0/G/0", "1/G/0", "2/1/0", "2/G/0"]);

    expect(() => t.invpcid(4, 0)).toThrow(/INVPCID type 4/);
    expect(() => t.invpcid(0, 0x1000)).toThrow(/PCID/);
  });

  it("INVVPID types 0..3; all-contexts spares VPID 0; VPID 0 is refused elsewhere", () => {
    let t = populated(CTX);
    put(t, 0x7000n, 0x7000); // 0/0/0 elsewhere
    t.setContext(0, 0, 0);
    expect(t.invvpid(0, 1, 0, 0x1000)).toBe(4); // all of VPID 1 at that address, globals too
    expect(t.invvpid(0, 2, 0, 0x9000)).toBe(0);

    t = populated(CTX);
    expect(t.invvpid(1, 2)).toBe(2);
    expect(contexts(t).filter((c) => c.startsWith("2/"))).toEqual([]);

    t = populated(CTX);
    expect(t.invvpid(2, 0)).toBe(6);
    expect(contexts(t)).toEqual(["0/0/0", "0/G/0"]);

    t = populated(CTX);
    expect(t.invvpid(3, 1)).toBe(3);
    expect(contexts(t).filter((c) => c.startsWith("1/"))).toEqual(["1/G/0"]);

    expect(() => t.invvpid(1, 0)).toThrow(/VPID 0/);
    expect(() => t.invvpid(0, 0)).toThrow(/VPID 0/);
    expect(() => t.invvpid(3, 0)).toThrow(/VPID 0/);
    expect(() => t.invvpid(5, 1)).toThrow(/INVVPID type 5/);
    expect(() => t.invvpid(1, 0x10000)).toThrow(/VPID/);
  });

  it("INVEPT single-context drops one EPT tag; global every tag; plain linear entries stay", () => {
    const ctx: [number, number, number, boolean][] = [
      [1, 0, 1, false],
      [2, 5, 1, true],
      [1, 0, 2, false],
      [1, 0, 0, false],
      [0, 0, 0, true],
    ];
    let t = populated(ctx);
    expect(t.invept(1, 1)).toBe(2);
    expect(contexts(t)).toEqual(["0/G/0", "1/0/0", "1/0/2"]);
    expect(t.stats.flushes[FLUSH_INVEPT_SINGLE]).toBe(1);
    t = populated(ctx);
    expect(t.invept(2)).toBe(3);
    expect(contexts(t)).toEqual(["0/G/0", "1/0/0"]);
    expect(t.stats.dropped[FLUSH_INVEPT_GLOBAL]).toBe(3);
    expect(() => t.invept(1, 0)).toThrow(/EPT tag 0/);
    expect(() => t.invept(3)).toThrow(/INVEPT type 3/);
  });

  it("EPT violation drops the address's entries of the current EPT tag only", () => {
    const t = populated(CTX);
    t.setContext(1, 1, 4);
    expect(t.eptViolation(0, 0x1000)).toBe(1);
    expect(contexts(t).filter((c) => c.startsWith("1/"))).toEqual(["1/1/0", "1/2/0", "1/G/0"]);
  });

  it("flushTag, flushVpid, flushAll", () => {
    let t = populated(CTX);
    expect(t.flushTag(4)).toBe(1);
    expect(t.flushTag(0)).toBe(CTX.length - 1);
    t = populated(CTX);
    expect(t.flushVpid(0)).toBe(2);
    expect(t.flushVpid(2)).toBe(2);
    expect(t.flushAll()).toBe(4);
    expect(t.entriesInUse).toBe(0);
    expect(t.stats.dropped[FLUSH_ALL]).toBe(4);
    expect(get(t, 0x1000n)).toBe(TLB_MISS);
    expect(t.audit()).toEqual([]);
  });

  it("flushRange drops the translations of one VPID overlapping the pages", () => {
    const t = makeTlb();
    t.setContext(3, 1, 0);
    put(t, 0x1000n, 0x1000); // page 1
    put(t, 0x5000n, 0x5000); // page 5
    put(t, 0x20_0000n, 0x20_0000, 21); // pages 512..1023
    put(t, 0x4000_0000n, 0x4000_0000, 30); // pages 2^18 ..
    put(t, 0x80_0000n, 0x80_0000, 22); // 4 MiB page 2048..3071, fragment 2048..2559
    t.setContext(4, 1, 0);
    put(t, 0x5000n, 0x9000); // another VPID
    expect(t.flushRange(3, 2, 3)).toBe(0); // pages 2, 3, 4
    expect(t.flushRange(3, 5, 1)).toBe(1);
    expect(t.flushRange(3, 1000, 1)).toBe(1); // inside the 2 MiB page
    expect(t.flushRange(3, 3000, 1)).toBe(1); // the other half of the 4 MiB page: still its translation
    expect(t.flushRange(3, 0, 2 ** 19)).toBe(2); // page 1 and the 1 GiB page
    expect(t.entriesInUse).toBe(1);
    expect(t.stats.flushes[FLUSH_RANGE]).toBe(5);
    expect(() => t.flushRange(3, 2 ** 45, 1)).toThrow(/first page/);
    expect(() => t.flushRange(3, 2 ** 45 - 1, 2)).toThrow(/beyond/);
  });
});

// ---- replacement -----------------------------------------------------------------------------

describe("replacement", () => {
  /** One set of four ways: fill A..D (pages 0..3 of set 0), optionally touch A, then fill E. */
  function scenario(policy: string, touch: boolean, seed = 1): number[] {
    const t = makeTlb(`4k:1x4,policy=${policy},seed=${seed}`);
    for (let i = 0; i < 4; i++) put(t, BigInt(i * K), i * K);
    if (touch) get(t, 0n);
    put(t, 4n * BigInt(K), 0x10000);
    expect(t.stats.evictions[TLB_4K]).toBe(1);
    return t
      .entries()
      .map((e) => e.page)
      .sort((a, b) => a - b);
  }

  it("fills empty ways before evicting", () => {
    const t = makeTlb("4k:1x4");
    for (let i = 0; i < 4; i++) put(t, BigInt(i * K), i * K);
    expect(t.stats.evictions[TLB_4K]).toBe(0);
    expect(t.entriesInUse).toBe(4);
  });

  it("LRU evicts the least recently used way", () => {
    expect(scenario("lru", false)).toEqual([1, 2, 3, 4]);
    expect(scenario("lru", true)).toEqual([0, 2, 3, 4]);
  });

  it("FIFO evicts the oldest fill, whatever was used since", () => {
    expect(scenario("fifo", false)).toEqual([1, 2, 3, 4]);
    expect(scenario("fifo", true)).toEqual([1, 2, 3, 4]);
  });

  it("random replacement reproduces from its seed", () => {
    const run = (seed: number) => {
      const t = makeTlb(`4k:2x4,policy=random,seed=${seed}`);
      for (let i = 0; i < 200; i++) put(t, BigInt(((i * 7) % 40) * K), i * K);
      return t.entries().map((e) => `${e.slot}:${e.page}`);
    };
    expect(run(42)).toEqual(run(42));
    expect(run(42)).not.toEqual(run(43));
  });

  it("each set replaces on its own; evictions are counted per size", () => {
    const t = makeTlb("4k:2x1,2m:1x1,1g:1x1");
    put(t, 0x0000n, 0); // set 0
    put(t, 0x1000n, K); // set 1
    put(t, 0x2000n, 2 * K); // set 0 again: evicts page 0
    expect(get(t, 0x1000n)).toBe(K);
    expect(get(t, 0x0000n)).toBe(TLB_MISS);
    put(t, 0x20_0000n, 0x20_0000, 21);
    put(t, 0x40_0000n, 0x40_0000, 22);
    put(t, 0x4000_0000n, 0x4000_0000, 30);
    put(t, 0x8000_0000n, 0x8000_0000, 30);
    expect([...t.stats.evictions]).toEqual([1, 1, 1]);
    expect(t.audit()).toEqual([]);
  });
});

// ---- statistics and inspection ---------------------------------------------------------------

describe("statistics and inspection", () => {
  it("toJSON names every counter; resetStats clears counters, not entries", () => {
    const t = makeTlb();
    put(t, 0x1000n, 0x1000);
    get(t, 0x1000n);
    get(t, 0x2000n);
    invlpg(t, 0x9000n);
    const j = t.stats.toJSON();
    expect(j.hits).toEqual({ "4k": 1, "2m": 0, "1g": 0 });
    expect(j.misses).toBe(1);
    expect(j.inserts["4k"]).toBe(1);
    expect(Object.keys(j.flushes)).toEqual(FLUSH_NAMES);
    expect(j.flushes.invlpg).toBe(1);
    expect(j.dropped.invlpg).toBe(0);
    expect(t.stats.totalHits).toBe(1);
    t.resetStats();
    expect(t.stats.totalHits + t.stats.misses + t.stats.flushes[FLUSH_INVLPG]).toBe(0);
    expect(t.entriesInUse).toBe(1);
  });

  it("peek finds the entry a lookup would use without counting or deciding rights", () => {
    const t = makeTlb();
    t.setContext(1, 2, 3);
    put(t, 0x1000n, 0x8000, 12, tlbAttrs(0, false, 9, true));
    expect(t.peek(0, 0x1fff)).toMatchObject({
      vpid: 1,
      pcid: 2,
      eptTag: 3,
      global: true,
      physical: 0x8000,
      attrs: (9 << 4) | TLB_GLOBAL,
    });
    t.setContext(1, 7, 3);
    expect(t.peek(0, 0x1000)?.global).toBe(true);
    t.setContext(1, 7, 0);
    expect(t.peek(0, 0x1000)).toBeNull();
    expect(t.stats.totalHits + t.stats.misses).toBe(0);
  });

  it("forEach visits every filled entry; the spec and capacity describe the geometry", () => {
    const t = makeTlb("skylake-l1d");
    expect(t.capacity).toBe(64 + 32 + 4);
    expect(t.spec).toBe("4k:16x4,2m:8x4,1g:1x4,policy=lru");
    for (let i = 0; i < 70; i++) put(t, BigInt(i * K), i * K);
    let n = 0;
    t.forEach(() => {
      n++;
    });
    expect(n).toBe(64);
    expect(t.entriesInUse).toBe(64);
    expect(t.stats.evictions[TLB_4K]).toBe(6);
    expect(t.stats.hits[TLB_1G]).toBe(0);
    expect(t.audit()).toEqual([]);
  });
});
