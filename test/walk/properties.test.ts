/**
 * Property tests of the guest walker on random page tables (fast-check).
 *
 * Tables are random: 16 table frames whose entries at a few indices hold random flags
 * (P, R/W, U/S, A, D, PS, XD, PK, sometimes one reserved bit) and random targets — other
 * table frames (including the same frame: self-references and cycles), frames outside
 * memory, or high data frames. Addresses are built from the populated indices so walks
 * go deep. For every walk:
 *  (a) a successful walk's physical address is what the entries along its path say, and
 *      every outcome matches the independent SDM oracle (fault, error code, address, size,
 *      memory afterwards);
 *  (b) A/D bits only go from 0 to 1, only in entries on the walk's path; nothing else in
 *      memory changes;
 *  (c) the walk reads only the root frame and frames named by entries on its path, and
 *      writes only path entries;
 *  (d) the walk terminates, is deterministic, and repeating it changes nothing more;
 *  (e) walker.translate (no A/D) never writes memory and decides the same as walk;
 *  (f) VirtualMemory reads/writes across a page boundary equal two single-page accesses,
 *      and a faulting write writes no data.
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  bumpAllocator,
  CpuRole,
  cpuWalker,
  FAULT_NONE,
  FAULT_PAGE,
  type FrameSource,
  type GuestPhysical,
  type GuestWalker,
  loadCr3,
  PageTableBuilder,
  REASON_NAMES,
  VirtualMemory,
  Walk,
  x86Leaf,
} from "../../src/index.js";
import {
  accessBits,
  type NamedCpu,
  oracleMemoryOf,
  registersFor,
  smallMemory,
  testCpu,
} from "../oracle/vmmu-harness.js";
import {
  accessedDirtyWrites,
  bitRange,
  entryBytes,
  isLeaf,
  levelsOf,
  loadPdptes,
  type OracleAccess,
  type OracleContext,
  type OracleControl,
  type OraclePagingMode,
  type OracleResult,
  oracleWalk,
  pageBaseOf,
  pageShiftOf,
  tableAddressOf,
  tableIndex,
} from "../oracle/x86-paging-oracle.js";

const CPUS: NamedCpu[] = [testCpu("intel-sapphirerapids"), testCpu("qemu-max")];
const RAM_FRAMES = 64;
const TABLE_BASE = 0x10;
const TABLE_COUNT = 16;
const ROOT_FRAMES = 6;
const INDICES_64 = [0, 1, 0x155, 0x1ff];
const INDICES_32 = [0, 1, 0x155, 0x3ff];

// ----------------------------------------------------------------------------------------------
// Memory helpers
// ----------------------------------------------------------------------------------------------

function snapshot(physical: GuestPhysical): Uint32Array {
  const out = new Uint32Array(RAM_FRAMES * 1024);
  for (let f = 0; f < RAM_FRAMES; f++) {
    const words = physical.frameWords(f)!;
    out.set(words.subarray(physical.frameBase, physical.frameBase + 1024), f * 1024);
  }
  return out;
}

function restore(physical: GuestPhysical, snap: Uint32Array): void {
  for (let f = 0; f < RAM_FRAMES; f++) {
    const words = physical.frameWords(f)!;
    words.set(snap.subarray(f * 1024, (f + 1) * 1024), physical.frameBase);
  }
}

/** Word indices (into a snapshot) that differ. */
function changedWords(a: Uint32Array, b: Uint32Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) out.push(i);
  return out;
}

/** A FrameSource that logs the frames a walker reads and the entries it updates. */
class LoggingSource implements FrameSource {
  readonly frames: number[] = [];
  readonly writes: number[] = [];
  constructor(readonly inner: GuestPhysical) {}
  get frameBase(): number {
    return this.inner.frameBase;
  }
  frameWords(gfn: number): Uint32Array | null {
    this.frames.push(gfn);
    return this.inner.frameWords(gfn);
  }
  compareExchange(pa: number, bytes: 4 | 8, eLo: number, eHi: number, nLo: number, nHi: number): number {
    this.writes.push(pa);
    return this.inner.compareExchange(pa, bytes, eLo, eHi, nLo, nHi);
  }
  clear(): void {
    this.frames.length = 0;
    this.writes.length = 0;
  }
}

// ----------------------------------------------------------------------------------------------
// Random page tables
// ----------------------------------------------------------------------------------------------

interface RandomEntry {
  present: boolean;
  flags: number; // bits 11:1
  target: number; // frame number
  xd: boolean;
  pk: number;
  reservedBit: number | null;
}

interface World {
  mode: OraclePagingMode;
  cpu: NamedCpu;
  control: OracleControl;
  rootFrame: number;
  /** [frame][index slot] */
  entries: RandomEntry[][];
  pdptes: RandomEntry[];
  walks: { indices: number[]; offset: number; nonCanonical: boolean; access: OracleAccess }[];
}

/** A boolean that is true with probability p/100. */
const chance = (p: number) => fc.integer({ min: 0, max: 99 }).map((n) => n < p);

/** Bits 11:1 other than PS: R/W, U/S, PWT, PCD, A, D, G, 11:9 — each with its own likelihood. */
const flagsArb = fc
  .tuple(
    chance(75),
    chance(75),
    chance(30),
    chance(30),
    chance(50),
    chance(50),
    chance(8),
    fc.integer({ min: 0, max: 7 }),
  )
  .map(
    ([rw, us, pwt, pcd, a, d, g, avl]) =>
      (rw ? 2 : 0) |
      (us ? 4 : 0) |
      (pwt ? 8 : 0) |
      (pcd ? 16 : 0) |
      (a ? 32 : 0) |
      (d ? 64 : 0) |
      (g ? 256 : 0) |
      (avl << 9),
  );

/** A data frame below 2^min(M, 44), aligned to 2^align frames. */
const dataFrameArb = (maxPhyAddr: number, aligns: number[]) =>
  fc
    .tuple(fc.integer({ min: 1, max: 2 ** (Math.min(maxPhyAddr, 44) - 12) - 1 }), fc.constantFrom(...aligns))
    .map(([f, align]) => Math.max(1, Math.floor(f / 2 ** align)) * 2 ** align);

const entryArb = (maxPhyAddr: number, psChance: number): fc.Arbitrary<RandomEntry> =>
  chance(psChance).chain((ps) =>
    fc.record({
      present: chance(88),
      flags: flagsArb.map((f) => f | (ps ? 0x80 : 0)),
      target: ps
        ? // a large page: usually aligned for 1 GiB / 2 MiB / 4 MiB, sometimes not (reserved bits)
          dataFrameArb(maxPhyAddr, [18, 18, 18, 9, 9, 10, 0])
        : fc.oneof(
            { weight: 17, arbitrary: fc.integer({ min: TABLE_BASE, max: TABLE_BASE + TABLE_COUNT - 1 }) },
            { weight: 1, arbitrary: fc.constantFrom(0x40, 0x1234, 0xfffff) }, // outside memory
            { weight: 2, arbitrary: dataFrameArb(maxPhyAddr, [0]) },
          ),
      xd: chance(10),
      pk: fc.integer({ min: 0, max: 15 }),
      // sometimes one extra bit anywhere (often a reserved one)
      reservedBit: chance(3).chain((b) => (b ? fc.integer({ min: 1, max: 63 }) : fc.constant(null))),
    }),
  );

const controlArb = (cpu: NamedCpu): fc.Arbitrary<OracleControl> =>
  fc.record({
    wp: fc.boolean(),
    pse: fc.boolean(),
    smep: fc.boolean(),
    smap: fc.boolean(),
    pke: chance(70),
    pks: cpu.features.pks ? chance(70) : fc.constant(false),
    nxe: chance(70),
    // three quarters of the AD/WD bits set, so key faults are common
    pkru: fc.tuple(fc.nat(0xffffffff), fc.nat(0xffffffff)).map(([a, b]) => (a | b) >>> 0),
    pkrs: fc.tuple(fc.nat(0xffffffff), fc.nat(0xffffffff)).map(([a, b]) => (a | b) >>> 0),
  });

const accessArb: fc.Arbitrary<OracleAccess> = fc
  .record({
    kind: fc.constantFrom("read", "write", "fetch") as fc.Arbitrary<OracleAccess["kind"]>,
    privilege: fc.constantFrom("user", "supervisor", "implicit") as fc.Arbitrary<OracleAccess["privilege"]>,
    ac: fc.boolean(),
  })
  .map((a) =>
    a.privilege === "implicit" && a.kind === "fetch" ? { ...a, privilege: "supervisor" as const } : a,
  );

const worldArb: fc.Arbitrary<World> = fc
  .tuple(fc.constantFrom<OraclePagingMode>("32bit", "pae", "4level", "5level"), fc.constantFrom(...CPUS))
  .chain(([mode, cpu]) => {
    const n = levelsOf(mode).length;
    const slots = mode === "32bit" ? INDICES_32.length : INDICES_64.length;
    return fc.record({
      mode: fc.constant(mode),
      cpu: fc.constant(cpu),
      control: controlArb(cpu),
      // The root is one of the first ROOT_FRAMES frames, whose entries rarely have PS (always
      // reserved in a PML4E/PML5E), so that walks get past the top level often enough.
      rootFrame: fc.integer({ min: TABLE_BASE, max: TABLE_BASE + ROOT_FRAMES - 1 }),
      entries: fc.tuple(
        ...Array.from({ length: TABLE_COUNT }, (_, t) =>
          fc.array(
            entryArb(cpu.oracle.maxPhyAddr, t < ROOT_FRAMES && mode !== "32bit" && mode !== "pae" ? 2 : 20),
            {
              minLength: slots,
              maxLength: slots,
            },
          ),
        ),
      ),
      pdptes: fc.array(entryArb(cpu.oracle.maxPhyAddr, 0), { minLength: 4, maxLength: 4 }),
      walks: fc.array(
        fc.record({
          indices: fc.array(fc.integer({ min: 0, max: slots - 1 }), { minLength: n, maxLength: n }),
          offset: fc.integer({ min: 0, max: 0xfff }),
          nonCanonical: chance(5),
          access: accessArb,
        }),
        { minLength: 1, maxLength: 6 },
      ),
    });
  });

function encodeRandom(mode: OraclePagingMode, e: RandomEntry, pdpte: boolean): bigint {
  let v = BigInt(e.flags) | (e.present ? 1n : 0n);
  if (pdpte) v &= ~(bitRange(1, 2) | bitRange(5, 8)); // keep most PDPTEs loadable; reserved bit below
  if (mode === "32bit") {
    v |= BigInt(e.target % 2 ** 20) << 12n;
    if (e.reservedBit !== null && e.reservedBit < 32) v |= 1n << BigInt(e.reservedBit);
    return v;
  }
  v |= BigInt(e.target) << 12n;
  if (e.xd && !pdpte) v |= 1n << 63n;
  // Protection keys live in bits 62:59 of IA-32e entries; in PAE entries those bits are reserved.
  if (!pdpte && (mode === "4level" || mode === "5level" || e.pk === 15)) v |= BigInt(e.pk) << 59n;
  if (e.reservedBit !== null) v |= 1n << BigInt(e.reservedBit);
  return v;
}

/** Writes the world's tables into (cleared) memory; returns CR3. */
function layOut(physical: GuestPhysical, w: World): bigint {
  for (let f = 0; f < RAM_FRAMES; f++) {
    const words = physical.frameWords(f)!;
    words.fill(0, physical.frameBase, physical.frameBase + 1024);
  }
  const bytes = entryBytes(w.mode);
  const indices = w.mode === "32bit" ? INDICES_32 : INDICES_64;
  const write = (pa: number, v: bigint) => {
    const words = physical.frameWords(Math.floor(pa / 4096))!;
    const i = physical.frameBase + ((pa % 4096) >>> 2);
    words[i] = Number(v & 0xffffffffn);
    if (bytes === 8) words[i + 1] = Number(v >> 32n);
  };
  for (let t = 0; t < TABLE_COUNT; t++)
    for (let s = 0; s < indices.length; s++)
      write((TABLE_BASE + t) * 4096 + indices[s] * bytes, encodeRandom(w.mode, w.entries[t][s], false));
  if (w.mode === "pae")
    for (let i = 0; i < 4; i++) write(w.rootFrame * 4096 + 8 * i, encodeRandom(w.mode, w.pdptes[i], true));
  return BigInt(w.rootFrame * 4096);
}

function vaOf(w: World, walk: World["walks"][number]): bigint {
  const levels = levelsOf(w.mode);
  const indices = w.mode === "32bit" ? INDICES_32 : INDICES_64;
  let va = BigInt(walk.offset);
  levels.forEach((level, i) => {
    const idx = w.mode === "pae" && level === 3 ? walk.indices[i] % 4 : indices[walk.indices[i]];
    const shift = w.mode === "32bit" ? (level === 2 ? 22 : 12) : 12 + 9 * (level - 1);
    va |= BigInt(idx) << BigInt(shift);
  });
  if (w.mode === "4level" || w.mode === "5level") {
    const bits = w.mode === "5level" ? 57n : 48n;
    if ((va >> (bits - 1n)) & 1n) va |= ((1n << 64n) - 1n) ^ ((1n << bits) - 1n); // sign-extend
    if (walk.nonCanonical) va ^= 1n << 60n;
  }
  return va;
}

interface Setup {
  physical: GuestPhysical;
  logging: LoggingSource;
  role: CpuRole;
  walker: GuestWalker | null;
  ctx: OracleContext | null;
  cr3: bigint;
}

const physical = smallMemory(RAM_FRAMES);

function setUp(w: World): Setup {
  const cr3 = layOut(physical, w);
  const logging = new LoggingSource(physical);
  const role = CpuRole.from(registersFor(w.mode, w.control), w.cpu.features);
  const mem = oracleMemoryOf(physical);
  let ctx: OracleContext | null = { mode: w.mode, cpu: w.cpu.oracle, control: w.control, cr3 };
  if (w.mode === "pae") {
    const load = loadPdptes(w.cpu.oracle, w.control, cr3, mem);
    ctx = load.ok ? { ...ctx, pdptes: load.pdptes } : null;
  }
  // A walker rooted at a zeroed frame, then MOV CR3 to the world's root (the PAE load may fail).
  const walker = cpuWalker(logging, role, BigInt((RAM_FRAMES - 1) * 4096));
  const load = loadCr3(walker, role, cr3);
  expect(load.ok, `CR3 load: oracle ${ctx !== null}, vmmu ${load.ok}`).toBe(ctx !== null);
  return { physical, logging, role, walker: load.ok ? walker : null, ctx, cr3 };
}

function outcome(w: Walk) {
  return {
    fault: w.fault,
    errorCode: w.errorCode >>> 0,
    reason: REASON_NAMES[w.reason],
    address: w.fault === FAULT_NONE ? w.address : -1,
    pageShift: w.fault === FAULT_NONE ? w.pageShift : 0,
  };
}

function expectedOutcome(r: OracleResult) {
  return {
    fault: r.fault === "none" ? FAULT_NONE : r.fault === "page" ? FAULT_PAGE : 2,
    errorCode: r.errorCode,
    reason: r.reason,
    address: r.fault === "none" ? r.physical : -1,
    pageShift: r.fault === "none" ? Math.log2(r.pageSize) : 0,
  };
}

const RUNS = 800;
const seen = new Map<string, number>();

describe("walker properties on random page tables", () => {
  it("(a)+(b)+(c) matches the oracle; A/D only set, only on the path; reads only the tables it follows", () => {
    fc.assert(
      fc.property(worldArb, (world) => {
        const s = setUp(world);
        if (!s.walker || !s.ctx) return;
        const bytes = entryBytes(world.mode);
        const w = new Walk();
        for (const walk of world.walks) {
          const va = vaOf(world, walk);
          const before = snapshot(s.physical);
          const expected = oracleWalk(s.ctx, va, walk.access, oracleMemoryOf(s.physical));
          s.logging.clear();
          s.walker.walk(Number(va >> 32n), Number(va & 0xffffffffn), accessBits(walk.access), w);
          const after = snapshot(s.physical);
          const label = `${world.mode} ${world.cpu.name} control=${JSON.stringify(world.control)} va=0x${va.toString(16)} ${JSON.stringify(walk.access)} path=${expected.path.map((e) => `L${e.level}@0x${e.addr.toString(16)}=${e.value === null ? "missing" : `0x${e.value.toString(16)}`}`).join(" ")}`;

          // The oracle's verdict.
          expect(outcome(w), label).toEqual(expectedOutcome(expected));
          const key = `${world.mode}:${expected.reason}${expected.fault === "none" ? `:${expected.pageSize}` : ""}`;
          seen.set(key, (seen.get(key) ?? 0) + 1);
          const addrs = expected.path.map((e) => e.addr);
          if (new Set(addrs.map((a) => Math.floor(a / 4096))).size < addrs.length)
            seen.set("self-reference", (seen.get("self-reference") ?? 0) + 1);

          // (a) re-derive the translation from vmmu's own path and memory.
          const depth = w.depth;
          const pathAddrs: number[] = [];
          for (let i = 0; i < depth; i++) pathAddrs.push(w.entryAddr[i]);
          if (w.fault === FAULT_NONE) {
            let table = Number(s.cr3);
            const levels = levelsOf(world.mode);
            for (let i = 0; i < depth; i++) {
              const level = levels[i];
              const register = world.mode === "pae" && level === 3;
              const expAddr = register
                ? Number(s.cr3 & 0xffffffe0n) + 8 * tableIndex("pae", 3, va)
                : table + tableIndex(world.mode, level, va) * bytes;
              expect(w.entryAddr[i], `${label} path[${i}] address`).toBe(expAddr);
              const value = (BigInt(w.hi[i]) << 32n) | BigInt(w.lo[i]);
              if (!register) {
                const wi = expAddr / 4;
                const mem =
                  bytes === 8 ? (BigInt(before[wi + 1]) << 32n) | BigInt(before[wi]) : BigInt(before[wi]);
                // Modulo A/D: with self-referencing tables the walk may re-read an entry after
                // setting its own A (a retried locked update), which is what a processor would see.
                expect(value & ~0x60n, `${label} path[${i}] value is memory`).toBe(mem & ~0x60n);
              }
              if (i === depth - 1) {
                expect(isLeaf(world.mode, world.control, level, value), `${label} leaf`).toBe(true);
                const shift = pageShiftOf(world.mode, level);
                expect(w.pageShift).toBe(shift);
                expect(w.address).toBe(
                  pageBaseOf(world.mode, level, value) + Number(va & BigInt(2 ** shift - 1)),
                );
              } else table = tableAddressOf(world.mode, value);
            }
          }

          // (b) memory: exactly the oracle's A/D writes; each a 0→1 of A or D in a path entry.
          const writes = accessedDirtyWrites(expected);
          const changed = changedWords(before, after);
          for (const wi of changed) {
            const pa = wi * 4;
            const entryAddr = bytes === 8 ? pa & ~7 : pa;
            expect(
              pathAddrs.includes(entryAddr),
              `${label}: write at 0x${pa.toString(16)} off the path`,
            ).toBe(true);
            expect(pa, `${label}: A/D live in the low word`).toBe(entryAddr);
            const diff = before[wi] ^ after[wi];
            expect(diff & ~0x60, `${label}: only A/D change`).toBe(0);
            expect(before[wi] & diff, `${label}: bits only go 0→1`).toBe(0);
          }
          const expectedChanged = [...writes.entries()]
            .filter(([addr, { set }]) => {
              const wi = addr / 4;
              return (BigInt(before[wi]) & set) !== set;
            })
            .map(([addr]) => addr / 4)
            .sort((x, y) => x - y);
          expect(changed, `${label}: changed words`).toEqual(expectedChanged);

          // (c) frames read: the root, or frames of entries on the path (each named by the previous entry).
          const allowed = new Set<number>([world.rootFrame, ...pathAddrs.map((a) => Math.floor(a / 4096))]);
          for (const f of s.logging.frames)
            expect(allowed.has(f), `${label}: read frame 0x${f.toString(16)} not on the path`).toBe(true);
          for (const pa of s.logging.writes)
            expect(pathAddrs.includes(pa), `${label}: A/D update at 0x${pa.toString(16)} off the path`).toBe(
              true,
            );
        }
      }),
      { numRuns: RUNS },
    );
    // The generator must reach every outcome, in every mode (else the properties prove little).
    console.log(
      `properties: walk outcomes ${JSON.stringify(Object.fromEntries([...seen.entries()].sort()))}`,
    );
    const count = (re: RegExp) => [...seen.entries()].reduce((n, [k, c]) => (re.test(k) ? n + c : n), 0);
    for (const mode of ["32bit", "pae", "4level", "5level"])
      for (const reason of ["none", "not-present", "reserved-bit", "protection", "table-not-in-memory"])
        expect(count(new RegExp(`^${mode}:${reason}`)), `${mode}:${reason} never seen`).toBeGreaterThan(0);
    for (const re of [
      /^32bit:none:4194304/,
      /^pae:none:2097152/,
      /level:none:2097152/,
      /level:none:1073741824/,
      /level:protection-key/,
      /level:non-canonical/,
      /^self-reference/,
    ])
      expect(count(re), `${re} never seen`).toBeGreaterThan(0);
  });

  it("(d) terminates, deterministic, and a repeated walk changes nothing more", () => {
    fc.assert(
      fc.property(worldArb, (world) => {
        const s = setUp(world);
        if (!s.walker) return;
        const w1 = new Walk();
        const w2 = new Walk();
        for (const walk of world.walks) {
          const va = vaOf(world, walk);
          const [hi, lo, acc] = [Number(va >> 32n), Number(va & 0xffffffffn), accessBits(walk.access)];
          const start = snapshot(s.physical);
          s.walker.walk(hi, lo, acc, w1);
          const afterFirst = snapshot(s.physical);
          // Same state again → same result, same memory.
          restore(s.physical, start);
          s.walker.walk(hi, lo, acc, w2);
          expect(outcome(w2)).toEqual(outcome(w1));
          expect(changedWords(afterFirst, snapshot(s.physical))).toEqual([]);
          // Walk again on the updated state: same decision, no further writes (A/D already set).
          s.walker.walk(hi, lo, acc, w2);
          expect(outcome(w2)).toEqual(outcome(w1));
          expect(changedWords(afterFirst, snapshot(s.physical))).toEqual([]);
        }
      }),
      { numRuns: RUNS / 4 },
    );
  });

  it("(e) translate never writes memory and decides as walk does", () => {
    fc.assert(
      fc.property(worldArb, (world) => {
        const s = setUp(world);
        if (!s.walker || !s.ctx) return;
        const wt = new Walk();
        const ww = new Walk();
        for (const walk of world.walks) {
          const va = vaOf(world, walk);
          const [hi, lo, acc] = [Number(va >> 32n), Number(va & 0xffffffffn), accessBits(walk.access)];
          const before = snapshot(s.physical);
          s.logging.clear();
          const ok = s.walker.translate(hi, lo, acc, wt);
          expect(changedWords(before, snapshot(s.physical))).toEqual([]);
          expect(s.logging.writes).toEqual([]);
          expect(ok).toBe(wt.fault === FAULT_NONE);
          const expected = oracleWalk(s.ctx, va, walk.access, oracleMemoryOf(s.physical));
          expect(outcome(wt)).toEqual(expectedOutcome(expected));
          s.walker.walk(hi, lo, acc, ww);
          expect(outcome(ww)).toEqual(outcome(wt));
        }
      }),
      { numRuns: RUNS / 4 },
    );
  });
});

// ----------------------------------------------------------------------------------------------
// (f) VirtualMemory across a page boundary
// ----------------------------------------------------------------------------------------------

interface PageSpec {
  mapped: boolean;
  writable: boolean;
  user: boolean;
  frame: number;
}

const pageArb = (frames: number[]): fc.Arbitrary<PageSpec> =>
  fc.record({
    mapped: fc.integer({ min: 0, max: 5 }).map((n) => n > 0),
    writable: fc.integer({ min: 0, max: 3 }).map((n) => n > 0),
    user: fc.integer({ min: 0, max: 3 }).map((n) => n > 0),
    frame: fc.constantFrom(...frames),
  });

const DATA_FRAMES = [0x30, 0x31, 0x33, 0x38, 0x3c];

describe("VirtualMemory across a page boundary", () => {
  const vmArb = fc.record({
    mode: fc.constantFrom<OraclePagingMode>("32bit", "pae", "4level", "5level"),
    pages: fc.tuple(pageArb(DATA_FRAMES), pageArb(DATA_FRAMES)),
    before: fc.integer({ min: 1, max: 24 }),
    after: fc.integer({ min: 1, max: 24 }),
    user: fc.boolean(),
    wp: fc.boolean(),
    fill: fc.integer({ min: 0, max: 0xffffffff }),
    data: fc.uint8Array({ minLength: 48, maxLength: 48 }),
  });

  it("(f) a crossing read/write equals two single-page accesses; a faulting write writes no data", () => {
    fc.assert(
      fc.property(vmArb, (c) => {
        const cpu = CPUS[0];
        const control: OracleControl = {
          wp: c.wp,
          pse: false,
          smep: false,
          smap: false,
          pke: false,
          pks: false,
          nxe: true,
          pkru: 0,
          pkrs: 0,
        };
        for (let f = 0; f < RAM_FRAMES; f++) {
          const words = physical.frameWords(f)!;
          words.fill(
            f === 0 ? 0 : (c.fill ^ (f * 0x01010101)) >>> 0,
            physical.frameBase,
            physical.frameBase + 1024,
          );
        }
        const role = CpuRole.from(registersFor(c.mode, control), cpu.features);
        const builder = new PageTableBuilder(physical, role.format!, bumpAllocator(physical, 0x10, 16));
        const va0 = c.mode === "32bit" || c.mode === "pae" ? 0x7fff_f000n : 0x7f12_3456_7000n;
        c.pages.forEach((p, i) => {
          if (p.mapped)
            builder.map(
              va0 + BigInt(i * 4096),
              p.frame * 4096,
              4096,
              x86Leaf({ writable: p.writable, user: p.user }),
            );
          else builder.entryAddress(va0 + BigInt(i * 4096), 1, true); // tables exist, the PTE stays 0
        });
        const walker = cpuWalker(physical, role, builder.cr3);
        const vm = new VirtualMemory(walker, physical);
        const access = accessBits({ kind: "read", privilege: c.user ? "user" : "supervisor", ac: false });
        const start = va0 + BigInt(4096 - c.before);
        const len = c.before + c.after;
        const split = va0 + 4096n;

        // Reads.
        const whole = vm.read(start, len, access);
        const first = vm.read(start, c.before, access);
        const second = vm.read(split, c.after, access);
        if (first.ok && second.ok) {
          expect(whole.ok).toBe(true);
          if (whole.ok) expect([...whole.value]).toEqual([...first.value, ...second.value]);
          // And the bytes are the frames' bytes.
          const p0 = c.pages[0].frame * 4096 + 4096 - c.before;
          const p1 = c.pages[1].frame * 4096;
          const exp = new Uint8Array(len);
          physical.readBytes(p0, exp.subarray(0, c.before));
          physical.readBytes(p1, exp.subarray(c.before));
          if (whole.ok) expect([...whole.value]).toEqual([...exp]);
        } else {
          expect(whole.ok).toBe(false);
          const firstFault = !first.ok ? first : second;
          if (!whole.ok && "fault" in whole && "fault" in firstFault)
            expect(whole.fault).toEqual(firstFault.fault);
        }

        // Writes: one crossing write vs two single-page writes, from the same state.
        const data = c.data.subarray(0, len);
        const state = snapshot(physical);
        const wholeW = vm.write(start, data, access);
        const afterWhole = snapshot(physical);
        restore(physical, state);
        const w1 = vm.write(start, data.subarray(0, c.before), access);
        const w2 = vm.write(split, data.subarray(c.before), access);
        const afterSplit = snapshot(physical);
        const dataWords = (snap: Uint32Array) =>
          DATA_FRAMES.map((f) => [...snap.subarray(f * 1024, (f + 1) * 1024)].join(",")).join(";");
        if (w1.ok && w2.ok) {
          expect(wholeW.ok).toBe(true);
          expect(changedWords(afterWhole, afterSplit)).toEqual([]);
        } else {
          expect(wholeW.ok).toBe(false);
          // A faulting write writes no data at all (page tables may get A/D from the page that translated).
          expect(dataWords(afterWhole)).toBe(dataWords(state));
          const firstFault = !w1.ok ? w1 : w2;
          if (!wholeW.ok && "fault" in wholeW && "fault" in firstFault)
            expect(wholeW.fault).toEqual(firstFault.fault);
        }
      }),
      { numRuns: 300 },
    );
  });
});
