/**
 * The TLB against two outside references.
 *
 * 1. A reference model: a plain list of translations with the same tagging and
 *    invalidation rules written straight from the SDM tables, and unlimited capacity. After
 *    any sequence of fills, lookups, context switches, permission changes and every kind of
 *    invalidation, each hit of the real TLB must be a translation the model holds (a real
 *    TLB may miss where the model hits, because of capacity; it must never answer with a
 *    translation that was invalidated or belongs to another VPID, PCID or EPT tag), and each
 *    entry the real TLB holds must be one the model holds. While nothing has been evicted,
 *    the two must agree exactly: same hits, same misses, same number of entries dropped.
 *
 * 2. The page-table walker: after a walk fills the TLB, a lookup hits exactly when a fresh
 *    walk of the same address would succeed without having to set D, and with the same
 *    physical address, in every paging mode, page size, and CR0/CR4/PKRU setting.
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { TLB_HIGH_FRAME, TLB_MISS, Tlb } from "../../src/hw/tlb.js";
import {
  ACCESS_FETCH,
  ACCESS_IMPLICIT,
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
  CR4_PKS,
  CR4_PSE,
  CR4_SMAP,
  CR4_SMEP,
  cpuModel,
  cpuWalker,
  PageTableBuilder,
  PTE_D,
  Walk,
  x86Leaf,
} from "../../src/index.js";
import { MODE_REGS, makeGuest } from "../helpers.js";

const MASK57 = (1n << 57n) - 1n;
const page4k = (va: bigint) => Number((va & MASK57) >> 12n);
const halves = (va: bigint): [number, number] => [
  Number((va >> 32n) & 0xffffffffn),
  Number(va & 0xffffffffn),
];

// ---- 1. the reference model ------------------------------------------------------------------

interface ModelEntry {
  vpid: number;
  ept: number;
  pcid: number;
  global: boolean;
  /** Page shift of the translation (22 = 4 MiB) and of what is cached (21 for a 4 MiB page). */
  transShift: number;
  cachedShift: number;
  /** First 4 KiB page of the cached page. */
  page: number;
  physical: number;
  /** Rights class: W U X D PKEY. */
  rights: number;
}

function covers(e: ModelEntry, p: number): boolean {
  return e.page <= p && p < e.page + 2 ** (e.cachedShift - 12);
}
function translationCovers(e: ModelEntry, p: number): boolean {
  const span = 2 ** (e.transShift - 12);
  const start = Math.floor(e.page / span) * span;
  return start <= p && p < start + span;
}
function translationOverlaps(e: ModelEntry, first: number, n: number): boolean {
  const span = 2 ** (e.transShift - 12);
  const start = Math.floor(e.page / span) * span;
  return start < first + n && first < start + span;
}

/** The SDM's access-rights and protection-key rules applied to a cached entry (4.6, 4.6.2). */
function modelAllows(rights: number, access: number, r: CpuRole): boolean {
  const eff = rights & 7;
  const a = access & 31;
  const write = (a & ACCESS_WRITE) !== 0;
  if ((r.permFault[a] >> eff) & 1) return false;
  if (write && (rights & 8) === 0) return false; // the walk must set D
  if (a & ACCESS_FETCH) return true;
  const key = (rights >> 4) & 15;
  const userPage = (eff & 2) !== 0;
  const reg = userPage ? (r.pke ? r.pkru : 0) : r.pks ? r.pkrs : 0;
  if ((reg >>> (2 * key)) & 1) return false;
  const userAccess = (a & ACCESS_USER) !== 0 && (a & ACCESS_IMPLICIT) === 0;
  return !(write && (reg >>> (2 * key + 1)) & 1 && (userAccess || r.wp));
}

const SIZES = [12, 21, 30];

class Model {
  entries: ModelEntry[] = [];
  vpid = 0;
  pcid = 0;
  ept = 0;
  constructor(readonly cached: boolean[]) {}

  visible(e: ModelEntry): boolean {
    return e.vpid === this.vpid && e.ept === this.ept && (e.global || e.pcid === this.pcid);
  }
  drop(pred: (e: ModelEntry) => boolean): number {
    const before = this.entries.length;
    this.entries = this.entries.filter((e) => !pred(e));
    return before - this.entries.length;
  }
  insert(va: bigint, physical: number, shift: number, attrs: number): number {
    const p = page4k(va);
    const replaced = this.drop((e) => this.visible(e) && covers(e, p));
    const cachedShift = shift === 22 ? 21 : shift;
    if (this.cached[SIZES.indexOf(cachedShift)]) {
      const span = 2 ** (cachedShift - 12);
      this.entries.push({
        vpid: this.vpid,
        ept: this.ept,
        pcid: this.pcid,
        global: (attrs & 0x100) !== 0,
        transShift: shift,
        cachedShift,
        page: Math.floor(p / span) * span,
        physical: physical - (physical % 2 ** cachedShift),
        rights: attrs & 0xff,
      });
    }
    return replaced;
  }
  /** Candidate answers, in the order the TLB probes (4 KiB, 2 MiB, 1 GiB). */
  candidates(va: bigint): ModelEntry[] {
    const p = page4k(va);
    return this.entries
      .filter((e) => this.visible(e) && covers(e, p))
      .sort((a, b) => a.cachedShift - b.cachedShift);
  }
}

// The operations, with the rule each invalidation follows in the model.
type Op =
  | { k: "insert"; va: bigint; shift: number; frame: number; attrs: number }
  | { k: "lookup"; va: bigint; access: number; frame: boolean }
  | { k: "ctx"; vpid: number; pcid: number; ept: number }
  | { k: "perm"; role: number }
  | { k: "addr"; kind: "invlpg" | "pageFault" | "eptViolation"; va: bigint }
  | { k: "cr3"; pcid: number; noFlush: boolean }
  | { k: "cr4"; from: number; to: number }
  | { k: "cr0"; from: number; to: number }
  | { k: "invpcid"; type: number; pcid: number; va: bigint }
  | { k: "invvpid"; type: number; vpid: number; va: bigint }
  | { k: "invept"; type: number; tag: number }
  | { k: "flushTag"; tag: number }
  | { k: "flushVpid"; vpid: number }
  | { k: "flushRange"; vpid: number; first: number; pages: number }
  | { k: "flushAll" };

const ROLES: CpuRole[] = [
  CpuRole.from({ cr0: 0x80010001n, cr4: 0xa0n, efer: 0xd00n }, cpuModel("qemu-max")),
  CpuRole.from({ cr0: 0x80000001n, cr4: 0xa0n, efer: 0xd00n }, cpuModel("qemu-max")),
  CpuRole.from(
    { cr0: 0x80010001n, cr4: BigInt(0xa0 | CR4_SMEP | CR4_SMAP), efer: 0xd00n },
    cpuModel("qemu-max"),
  ),
  CpuRole.from(
    { cr0: 0x80010001n, cr4: BigInt(0xa0 | CR4_PKE), efer: 0xd00n, pkru: 0x5555_5554 },
    cpuModel("qemu-max"),
  ),
  CpuRole.from(
    {
      cr0: 0x80010001n,
      cr4: BigInt(0xa0 | CR4_PKE | CR4_PKS),
      efer: 0xd00n,
      pkru: 0xaaaa_aaa8,
      pkrs: 0x0c30_0c31,
    },
    cpuModel("intel-sapphirerapids"),
  ),
];

// A small address universe so that operations collide: neighbours, set aliases, large-page
// boundaries, the high half, 57-bit addresses.
const BASES = [
  0x0n,
  0x1000n,
  0x4000n,
  0x8000n,
  0x20_0000n,
  0x20_1000n,
  0x40_0000n,
  0x60_0000n,
  0x80_0000n,
  0x4000_0000n,
  0x4020_0000n,
  0x8000_0000n,
  0xffff_8000_0000_0000n,
  0xffff_8000_0020_1000n,
  0xff00_0000_0000_0000n,
];
const vaArb = fc
  .tuple(fc.constantFrom(...BASES), fc.integer({ min: 0, max: 0x1_ffff }))
  .map(([b, off]) => b + BigInt(off));
const small = (max: number) => fc.integer({ min: 0, max });
const CR4_BITS = [CR4_PGE, CR4_PCIDE, CR4_PAE, CR4_SMEP, CR4_SMAP, CR4_PSE];
const cr4Arb = fc.subarray(CR4_BITS).map((bits) => bits.reduce((a, b) => a | b, 0));
const cr0Arb = fc.subarray([CR0_PG, CR0_WP]).map((bits) => bits.reduce((a, b) => a | b, 1));

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.constantFrom(12, 21, 22, 30).chain((shift) =>
      fc.record({
        k: fc.constant("insert" as const),
        va: vaArb,
        shift: fc.constant(shift),
        // Small frames, any frame below 2^52, and the two sides of the bound under which the
        // TLB keeps an entry's 4 KiB frame numbers as int32s (`lookupFrame`).
        frame: fc.oneof(
          small(0xffff),
          fc.integer({ min: 0, max: 2 ** (52 - shift) - 1 }),
          fc.constantFrom(2 ** (43 - shift) - 1, 2 ** (43 - shift)),
        ),
        attrs: small(0x1ff),
      }),
    ),
  },
  {
    weight: 8,
    arbitrary: fc.record({
      k: fc.constant("lookup" as const),
      va: vaArb,
      access: small(31),
      frame: fc.boolean(),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({ k: fc.constant("ctx" as const), vpid: small(2), pcid: small(2), ept: small(2) }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("perm" as const), role: small(ROLES.length - 1) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant("addr" as const),
      kind: fc.constantFrom("invlpg" as const, "pageFault" as const, "eptViolation" as const),
      va: vaArb,
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant("cr3" as const), pcid: small(2), noFlush: fc.boolean() }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("cr4" as const), from: cr4Arb, to: cr4Arb }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("cr0" as const), from: cr0Arb, to: cr0Arb }) },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant("invpcid" as const), type: small(3), pcid: small(2), va: vaArb }),
  },
  {
    weight: 1,
    arbitrary: fc
      .record({ k: fc.constant("invvpid" as const), type: small(3), vpid: small(2), va: vaArb })
      .map((o) => (o.vpid === 0 && o.type !== 2 ? { ...o, vpid: 1 } : o)),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("invept" as const),
      type: fc.constantFrom(1, 2),
      tag: fc.integer({ min: 1, max: 2 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("flushTag" as const), tag: small(2) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("flushVpid" as const), vpid: small(2) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("flushRange" as const),
      vpid: small(2),
      first: fc
        .constantFrom(...BASES.map(page4k))
        .chain((p) => fc.integer({ min: Math.max(0, p - 600), max: p + 600 })),
      pages: fc.integer({ min: 0, max: 2000 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("flushAll" as const) }) },
);

/** Applies an invalidation to the model; returns the number of entries it dropped. */
function modelInvalidate(m: Model, op: Op): number {
  const cur = m;
  switch (op.k) {
    case "addr": {
      const p = page4k(op.va);
      if (op.kind === "eptViolation") return m.drop((e) => m.visible(e) && translationCovers(e, p));
      // INVLPG / #PF: current VPID, current PCID or global, every EPT tag.
      return m.drop(
        (e) => e.vpid === cur.vpid && (e.global || e.pcid === cur.pcid) && translationCovers(e, p),
      );
    }
    case "cr3":
      m.pcid = op.pcid;
      return op.noFlush ? 0 : m.drop((e) => e.vpid === cur.vpid && !e.global && e.pcid === op.pcid);
    case "cr4": {
      const changed = op.from ^ op.to;
      if (changed & CR4_PGE || (op.from & CR4_PCIDE && !(op.to & CR4_PCIDE))) {
        if (op.from & CR4_PCIDE && !(op.to & CR4_PCIDE)) m.pcid = 0;
        return m.drop((e) => e.vpid === cur.vpid);
      }
      if (changed & CR4_PAE || (!(op.from & CR4_SMEP) && op.to & CR4_SMEP))
        return m.drop((e) => e.vpid === cur.vpid && (e.global || e.pcid === cur.pcid));
      return 0;
    }
    case "cr0":
      return op.from & CR0_PG && !(op.to & CR0_PG) ? m.drop((e) => e.vpid === cur.vpid) : 0;
    case "invpcid": {
      const p = page4k(op.va);
      const v = cur.vpid;
      if (op.type === 0)
        return m.drop((e) => e.vpid === v && !e.global && e.pcid === op.pcid && translationCovers(e, p));
      if (op.type === 1) return m.drop((e) => e.vpid === v && !e.global && e.pcid === op.pcid);
      if (op.type === 2) return m.drop((e) => e.vpid === v);
      return m.drop((e) => e.vpid === v && !e.global);
    }
    case "invvpid": {
      const p = page4k(op.va);
      if (op.type === 0) return m.drop((e) => e.vpid === op.vpid && translationCovers(e, p));
      if (op.type === 1) return m.drop((e) => e.vpid === op.vpid);
      if (op.type === 2) return m.drop((e) => e.vpid !== 0);
      return m.drop((e) => e.vpid === op.vpid && !e.global);
    }
    case "invept":
      return op.type === 1 ? m.drop((e) => e.ept === op.tag) : m.drop((e) => e.ept !== 0);
    case "flushTag":
      return m.drop((e) => e.ept === op.tag);
    case "flushVpid":
      return m.drop((e) => e.vpid === op.vpid);
    case "flushRange":
      return m.drop((e) => e.vpid === op.vpid && translationOverlaps(e, op.first, op.pages));
    case "flushAll":
      return m.drop(() => true);
    default:
      throw new Error(`not an invalidation: ${op.k}`);
  }
}

function tlbInvalidate(t: Tlb, op: Op): number {
  switch (op.k) {
    case "addr": {
      const [hi, lo] = halves(op.va);
      return t[op.kind](hi, lo);
    }
    case "cr3":
      return t.movToCr3(op.pcid, op.noFlush);
    case "cr4":
      return t.movToCr4(op.from, op.to);
    case "cr0":
      return t.movToCr0(op.from, op.to);
    case "invpcid":
      return t.invpcid(op.type, op.pcid, ...halves(op.va));
    case "invvpid":
      return t.invvpid(op.type, op.vpid, ...halves(op.va));
    case "invept":
      return t.invept(op.type, op.tag);
    case "flushTag":
      return t.flushTag(op.tag);
    case "flushVpid":
      return t.flushVpid(op.vpid);
    case "flushRange":
      return t.flushRange(op.vpid, op.first, op.pages);
    case "flushAll":
      return t.flushAll();
    default:
      throw new Error(`not an invalidation: ${op.k}`);
  }
}

const sameEntry = (m: ModelEntry, e: ReturnType<Tlb["entries"]>[number]) =>
  m.vpid === e.vpid &&
  m.ept === e.eptTag &&
  m.global === e.global &&
  (m.global || m.pcid === e.pcid) &&
  m.page === e.page &&
  m.transShift === e.pageShift &&
  m.physical === e.physical &&
  m.rights === (e.attrs & 0xff);

function run(spec: string, ops: Op[]): void {
  const t = new Tlb(spec);
  const cached = t.config.sizes.map((g) => g !== null);
  const m = new Model(cached);
  let role = ROLES[0];
  t.setPermissions(role);
  const small = t.capacity <= 64;
  for (const [i, op] of ops.entries()) {
    const where = `op ${i} ${JSON.stringify(op, (_, v) => (typeof v === "bigint" ? `0x${v.toString(16)}` : v))}`;
    const exact = t.stats.evictions.every((n) => n === 0);
    if (op.k === "insert") {
      const [hi, lo] = halves(op.va);
      const size = 2 ** op.shift;
      const physical = op.frame * size + Number(op.va % BigInt(size));
      const replacedBefore = t.stats.replaced;
      t.insert(hi, lo, physical, op.shift, op.attrs);
      const replaced = m.insert(op.va, physical, op.shift, op.attrs);
      if (exact) expect(t.stats.replaced - replacedBefore, where).toBe(replaced);
    } else if (op.k === "lookup") {
      const [hi, lo] = halves(op.va);
      const counted = t.stats.totalHits + t.stats.misses;
      let got: number;
      if (op.frame) {
        // lookupFrame gives the 4 KiB frame number, or says to ask lookup (counting nothing).
        const fn = t.lookupFrame(hi, lo, op.access);
        if (fn === TLB_HIGH_FRAME) {
          expect(t.stats.totalHits + t.stats.misses, where).toBe(counted);
          got = t.lookup(hi, lo, op.access);
          // Only for a page whose last 4 KiB frame number is 2^31 or more.
          expect(got / 4096, where).toBeGreaterThan(2 ** 31 - 2 ** 18);
        } else got = fn === TLB_MISS ? TLB_MISS : fn * 4096 + (lo & 0xfff);
        if (fn >= 0) expect(fn, where).toBeLessThan(2 ** 31);
      } else got = t.lookup(hi, lo, op.access);
      expect(t.stats.totalHits + t.stats.misses, `${where}: counted once`).toBe(counted + 1);
      const cands = m.candidates(op.va);
      const answer = (c: ModelEntry) =>
        modelAllows(c.rights, op.access, role)
          ? c.physical + Number(op.va % BigInt(2 ** c.cachedShift))
          : TLB_MISS;
      if (got !== TLB_MISS)
        expect(cands.map(answer), `${where}: a hit the model does not hold`).toContain(got);
      if (exact) {
        // No capacity effect yet: the TLB answers from the first size that holds the address.
        const first = cands.filter((c) => c.cachedShift === cands[0]?.cachedShift);
        expect(first.length === 0 ? [TLB_MISS] : first.map(answer), where).toContain(got);
      }
    } else if (op.k === "ctx") {
      t.setContext(op.vpid, op.pcid, op.ept);
      m.vpid = op.vpid;
      m.pcid = op.pcid;
      m.ept = op.ept;
    } else if (op.k === "perm") {
      role = ROLES[op.role];
      t.setPermissions(role);
    } else {
      const got = tlbInvalidate(t, op);
      const want = modelInvalidate(m, op);
      if (exact) expect(got, `${where}: entries dropped`).toBe(want);
    }
    expect(t.pcid, where).toBe(m.pcid);
    if (t.stats.evictions.every((n) => n === 0)) expect(t.entriesInUse, where).toBe(m.entries.length);
    if (small || i === ops.length - 1) {
      // Every entry the TLB holds is one the model holds: nothing invalidated survives.
      for (const e of t.entries())
        expect(
          m.entries.some((x) => sameEntry(x, e)),
          `${where}: TLB holds ${JSON.stringify(e)} which the model does not`,
        ).toBe(true);
      expect(t.audit(), where).toEqual([]);
    }
  }
}

describe("the TLB against a reference model", () => {
  const specs = [
    "tiny,policy=lru",
    "tiny,policy=fifo",
    "tiny,policy=random,seed=5",
    "4k:1x1,2m:1x1,1g:1x1",
    "4k:4x4,2m:off,1g:2x2",
    "4k:64x16,2m:16x16,1g:4x16",
    "4k:256x32",
  ];
  for (const spec of specs)
    it(`${spec}: hits are always translations the model holds`, () => {
      fc.assert(
        fc.property(fc.array(opArb, { minLength: 1, maxLength: 120 }), (ops) => run(spec, ops)),
        { numRuns: 150 },
      );
    });

  it("the large configuration agrees exactly with the model while nothing is evicted", () => {
    // Guard that the property above exercised its exact branch: a run with no evictions.
    const ops: Op[] = [
      { k: "insert", va: 0x1000n, shift: 12, frame: 3, attrs: 0x10f },
      { k: "ctx", vpid: 0, pcid: 1, ept: 0 },
      { k: "lookup", va: 0x1234n, access: 0, frame: false },
      { k: "addr", kind: "invlpg", va: 0x1000n },
      { k: "lookup", va: 0x1234n, access: 0, frame: true },
    ];
    expect(() => run("4k:64x16,2m:16x16,1g:4x16", ops)).not.toThrow();
  });
});

// ---- 2. the TLB against the walker -----------------------------------------------------------

interface Mapping {
  va: bigint;
  size: number;
  pa: number;
}

/** Pages per paging mode: every page size the mode has. */
const LAYOUTS: Record<string, Mapping[]> = {
  "32bit": [
    { va: 0x0040_1000n, size: 4096, pa: 0x0123_4000 },
    { va: 0x0080_0000n, size: 4 << 20, pa: 0x1_2340_0000 }, // PSE-36 address above 4 GiB
  ],
  pae: [
    { va: 0x0040_1000n, size: 4096, pa: 0x0123_4000 },
    { va: 0x0060_0000n, size: 2 << 20, pa: 0x9_8760_0000 },
  ],
  "4level": [
    { va: 0x0040_1000n, size: 4096, pa: 0x0123_4000 },
    { va: 0x0060_0000n, size: 2 << 20, pa: 0x9_8760_0000 },
    { va: 0xffff_8080_0000_0000n, size: 1 << 30, pa: 0x40_0000_0000 },
  ],
  "5level": [
    { va: 0xff00_0000_0040_1000n, size: 4096, pa: 0x0123_4000 },
    { va: 0x00ff_0000_0060_0000n, size: 2 << 20, pa: 0x9_8760_0000 },
    { va: 0xff80_0080_0000_0000n, size: 1 << 30, pa: 0x40_0000_0000 },
  ],
};

describe("the TLB against the walker", () => {
  const leafArb = fc.record({
    writable: fc.boolean(),
    user: fc.boolean(),
    noExecute: fc.boolean(),
    global: fc.boolean(),
    dirty: fc.boolean(),
    accessed: fc.boolean(),
    pkey: small(15),
  });
  const controlArb = fc.record({
    wp: fc.boolean(),
    smep: fc.boolean(),
    smap: fc.boolean(),
    pke: fc.boolean(),
    pge: fc.boolean(),
    pkru: fc.constantFrom(0, 0x5555_5554, 0xaaaa_aaa8, 0x0000_0c30, 0xffff_fffc),
  });

  for (const mode of Object.keys(LAYOUTS))
    it(`${mode}: a hit after a fill is exactly a walk that succeeds without setting D`, () => {
      fc.assert(
        fc.property(
          controlArb,
          fc.array(leafArb, { minLength: 3, maxLength: 3 }),
          fc.nat(LAYOUTS[mode].length - 1),
          fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true })),
          small(31),
          small(31),
          (c, leaves, which, [o1, o2], a1, a2) => {
            const long = mode === "4level" || mode === "5level";
            const base = MODE_REGS[mode];
            let cr4 =
              Number(base.cr4) | (c.smep ? CR4_SMEP : 0) | (c.smap ? CR4_SMAP : 0) | (c.pge ? CR4_PGE : 0);
            if (long && c.pke) cr4 |= CR4_PKE;
            const regs: CpuRegisters = {
              ...base,
              cr0: c.wp ? 0x80010001n : 0x80000001n,
              cr4: BigInt(cr4),
              pkru: c.pkru,
            };
            const r = CpuRole.from(regs, cpuModel("qemu-max"));
            const g = makeGuest(4);
            const tables = new PageTableBuilder(g.physical, r.format!, g.alloc);
            LAYOUTS[mode].forEach((m, i) => {
              // 32-bit entries have no XD or key bits; PAE entries no key bits.
              const { pkey, noExecute, ...rest } = leaves[i];
              const bits = { ...rest, ...(mode !== "32bit" && { noExecute }), ...(long && { pkey }) };
              tables.map(m.va, m.pa, m.size, x86Leaf(bits));
            });
            const walker = cpuWalker(g.physical, r, tables.cr3);
            const m = LAYOUTS[mode][which];
            const va1 = m.va + BigInt(Math.floor(o1 * (m.size - 1)));
            const va2 = m.va + BigInt(Math.floor(o2 * (m.size - 1)));
            const w = new Walk();
            const t = new Tlb("skylake-l1d");
            t.setPermissions(r);
            if (!walker.walk(...halves(va1), a1, w)) {
              expect(t.lookup(...halves(va1), a1)).toBe(TLB_MISS);
              return;
            }
            t.insertWalk(w, r.pge);
            expect(t.entries()[0].global).toBe(r.pge && leaves[which].global);
            const got = t.lookup(...halves(va2), a2);
            // What the hardware would do now: a pure walk of va2 (A/D already set by the first walk).
            const w2 = new Walk();
            const ok = walker.translate(...halves(va2), a2, w2);
            const dirty = (w2.lo[w2.depth - 1] & PTE_D) !== 0;
            // A 4 MiB page is cached as the 2 MiB fragment of va1: the other half misses.
            const sameFragment = m.size !== 4 << 20 || va1 >> 21n === va2 >> 21n;
            const expectHit = ok && sameFragment && ((a2 & ACCESS_WRITE) === 0 || dirty);
            expect(got).toBe(expectHit ? w2.address : TLB_MISS);
          },
        ),
        { numRuns: 300 },
      );
    });
});
