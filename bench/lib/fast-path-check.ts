/**
 * Differential check of GuestWalker's x86 fast path (compiled per format,
 * src/walk/specialize.ts): two identical guests (bench/lib/guest.ts, same seed), walked with
 * the fast path and without it (the general path only); page-table entries are damaged the
 * same way in both (present bit cleared, reserved bits, U/S, R/W, XD, PS flipped, XD moved
 * up a path, A/D cleared, a table pointer into MMIO, self-references), then random addresses (user and kernel ranges, unmapped, non-canonical) with random access
 * descriptors are walked with `translate` and `walk` on each. Every field of the `Walk`
 * records, the results, the retry counts and all of host memory must agree. The test suite
 * runs it (test/walk/x86-fast-path.test.ts); the full run:
 *
 *   npx tsx bench/lib/fast-path-check.ts
 */

import { GuestWalker, type PagingFormat, Walk, x86Format } from "../../src/index.js";
import { walkDifferences } from "../../test/helpers.js";
import { buildGuest, type Guest } from "./guest.js";
import { hashHostMemory } from "./image.js";
import { Prng } from "./prng.js";

const PAGES = 4096;

/** A walker like the guest's, with `format`, with or without the fast path. */
function walkerFor(g: Guest, format: PagingFormat, fastPath: boolean): GuestWalker {
  const src = g.walker;
  const w = new GuestWalker(g.physical, {
    format,
    permFault: src.permFault,
    fetchErrorBit: src.fetchErrorBit,
    pke: src.pke,
    pks: src.pks,
    pkru: src.pkru,
    pkrs: src.pkrs,
    wp: src.wp,
    fastPath,
  });
  w.rootGfn = src.rootGfn;
  return w;
}

function same(a: Walk, b: Walk, ra: boolean, rb: boolean, what: string): void {
  const bad = walkDifferences(a, b);
  if (ra !== rb) bad.unshift(`result ${ra} vs ${rb}`);
  if (bad.length > 0) throw new Error(`${what}: ${bad.join(", ")}`);
}

const MUTATIONS: ((lo: number, hi: number, rng: Prng) => [number, number])[] = [
  (lo, hi) => [lo & ~1, hi], // not present
  (lo, hi) => [lo ^ 2, hi], // R/W
  (lo, hi) => [lo ^ 4, hi], // U/S
  (lo, hi) => [lo & ~0x20, hi], // A clear
  (lo, hi) => [lo & ~0x40, hi], // D clear
  (lo, hi) => [lo ^ 0x80, hi], // PS
  (lo, hi, rng) => [lo | (1 << (13 + rng.below(8))), hi], // bits 20:13 (reserved in large leaves)
  (lo, hi) => [lo, hi ^ 0x80000000], // XD
  (lo, hi, rng) => [lo, hi | (1 << rng.below(20))], // address bits 51:32 (reserved above MAXPHYADDR)
  (lo, hi, rng) => [lo | (1 << (8 + rng.below(4))), hi], // G, ignored bits, bit 8
  (lo, hi) => [(lo & 0xfff) | 0x7fff0000, hi & 0xfff00000], // table/page in MMIO
  (lo, hi, rng) => [lo, (hi & 0x87ffffff) | (rng.below(16) << 27)], // protection key bits
];

/**
 * Runs the check for seeds 1..`seeds`, `walksPerSeed` walks each; throws on the first
 * difference. Returns the walks made and how many succeeded.
 */
export function checkFastPaths(seeds: number, walksPerSeed: number): { walks: number; ok: number } {
  let walks = 0;
  let fastOk = 0;
  const kinds = [true, false];
  for (let seed = 1; seed <= seeds; seed++) {
    const rng = new Prng(seed * 7919);
    const guests = kinds.map(() => buildGuest({ pages: PAGES, seed }));
    const gA = guests[0];
    // The guest's own format (MAXPHYADDR 52: no reserved address bits), or a 4-level format
    // with other CPU facts, so reserved bits in both halves and the 1 GiB and XD rules vary.
    const format =
      seed % 2 === 1
        ? gA.walker.format
        : x86Format({
            mode: "4level",
            maxPhyAddr: 36 + rng.below(17),
            nxe: rng.below(2) === 0,
            pse: true,
            pse36: false,
            gbPages: rng.below(2) === 0,
            amd: rng.below(2) === 0,
          });
    const walkers = guests.map((g, i) => walkerFor(g, format, kinds[i]));
    const slow = walkers[1];
    // Damage some entries, identically in both guests: mostly entries on the path of a
    // mapped address (any level), sometimes any entry of a table frame.
    const damage = rng.below(12);
    const probe = new Walk();
    /** Addresses whose paths were damaged: some of the walks go there. */
    const damaged: [number, number][] = [];
    for (let n = 0; n < damage; n++) {
      let gpa: number;
      const a = gA.userBase + rng.below(PAGES) * 4096;
      const [pHi, pLo] =
        rng.below(2) === 0
          ? [Math.floor(a / 0x100000000), a % 0x100000000]
          : [gA.kernelBaseHi, rng.below(PAGES) * 4096];
      slow.translate(pHi, pLo, 0, probe);
      if (probe.depth > 0 && rng.below(4) !== 0) gpa = probe.entryAddr[rng.below(probe.depth)];
      else gpa = gA.tableGfns[rng.below(gA.tableGfns.length)] * 4096 + rng.below(512) * 8;
      const t = Math.floor(gpa / 4096);
      const lo = Number(gA.physical.read(gpa, 4).value);
      const hi = Number(gA.physical.read(gpa + 4, 4).value);
      let [nl, nh] = MUTATIONS[rng.below(MUTATIONS.length)](lo, hi, rng);
      if (rng.below(20) === 0) [nl, nh] = [(t * 4096 + 0x67) >>> 0, 0]; // self-reference
      const writes: [number, number, number][] = [[gpa, nl, nh]];
      // XD moved up a path: set on an upper entry, cleared on the leaf (only the OR across
      // levels then forbids a fetch).
      if (probe.depth > 1 && rng.below(4) === 0) {
        const up = probe.entryAddr[rng.below(probe.depth - 1)];
        const leaf = probe.entryAddr[probe.depth - 1];
        const upHi = Number(gA.physical.read(up + 4, 4).value);
        const leafHi = Number(gA.physical.read(leaf + 4, 4).value);
        writes.push([up + 4, -1, upHi | 0x80000000], [leaf + 4, -1, leafHi & 0x7fffffff]);
      }
      for (const g of guests)
        for (const [at, l, h] of writes) {
          if (l >= 0) g.physical.write(at, 4, BigInt(l >>> 0));
          g.physical.write(at + (l >= 0 ? 4 : 0), 4, BigInt(h >>> 0));
        }
      damaged.push([pHi, pLo]);
    }
    const records = kinds.map(() => new Walk());
    for (let i = 0; i < walksPerSeed; i++) {
      let vaHi: number;
      let vaLo: number;
      const kind = rng.below(10);
      if (kind < 5) {
        const a = gA.userBase + rng.below(PAGES + 64) * 4096 + (rng.next() & 0xfff);
        vaLo = a % 0x100000000;
        vaHi = Math.floor(a / 0x100000000);
      } else if (kind < 8) {
        vaLo = (rng.below(PAGES + 1024) * 4096 + (rng.next() & 0xfff)) >>> 0;
        vaHi = gA.kernelBaseHi;
      } else if (kind < 9) {
        vaLo = rng.next();
        vaHi = rng.next(); // mostly non-canonical
      } else if (damaged.length === 0 || rng.below(2) === 0) {
        vaLo = rng.next();
        vaHi = rng.next() & 0x7fff;
      } else {
        [vaHi, vaLo] = damaged[rng.below(damaged.length)];
        vaLo = (vaLo + (rng.next() & 0xffc)) >>> 0;
      }
      // Signed or unsigned halves: callers pass either.
      if (rng.below(2) === 0) {
        vaLo |= 0;
        vaHi |= 0;
      }
      // Half the time an access that can succeed (user at CPL 3 in the user range, supervisor
      // in the kernel range, read or write), otherwise any descriptor.
      const access = rng.below(2) === 0 ? (kind < 5 ? 4 : 0) | rng.below(2) : rng.next() & 0x7f;
      const useWalk = rng.below(2) === 0;
      const results = walkers.map((w, k) =>
        useWalk ? w.walk(vaHi, vaLo, access, records[k]) : w.translate(vaHi, vaLo, access, records[k]),
      );
      same(
        records[0],
        records[1],
        results[0],
        results[1],
        `the fast path differs from the general path: seed ${seed}, walk ${i}, ${useWalk ? "walk" : "translate"} ${vaHi}:${vaLo} access ${access}`,
      );
      walks++;
      if (results[1]) fastOk++;
    }
    if (walkers[0].retries !== slow.retries)
      throw new Error(`seed ${seed}: retries ${walkers[0].retries} vs ${slow.retries}`);
    if (hashHostMemory(guests[0].host) !== hashHostMemory(guests[1].host))
      throw new Error(`seed ${seed}: host memory differs`);
  }
  return { walks, ok: fastOk };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = checkFastPaths(40, 4000);
  console.log(
    `fast path check: ${r.walks} walks (${r.ok} successful): the fast path agrees with the general path`,
  );
}
