/**
 * The guest half of a 2-D walk takes the walker's fast path over the translating frame
 * source (NestedFrameSource offers an empty frame cache and `rewind`). It must be
 * invisible: against a guest walker with the fast path off, over damaged guest tables and
 * EPT/NPT entries missing under guest tables, every 2-D walk gives the same outcome, the
 * same memory references (a fast path that gives up must not count its reads twice), the
 * same guest and host records, and the same memory.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  ACCESS_FETCH,
  ACCESS_USER,
  ACCESS_WRITE,
  cpuWalker,
  GuestWalker,
  NestedFrameSource,
  TwoDimensionalWalk,
  x86Leaf,
} from "../../src/index.js";
import { walkDifferences } from "../helpers.js";
import { type GuestMode, hostLeaf, makeGuest, pokeHostEntry } from "../vm/guest.js";

const PAGES = 48;
const BASE = 0x7f00_0000_0000n;

/** A guest with PAGES user pages mapped at BASE and every page touched once (EPT/NPT built). */
function guest(mode: GuestMode, host: { cpu: string; tdp: object }) {
  const g = makeGuest(mode, { cpu: host.cpu, tdp: host.tdp }, (t) => {
    for (let i = 0; i < PAGES; i++)
      t.map(
        BASE + BigInt(i * 4096),
        0x200000 + i * 4096,
        4096,
        x86Leaf({ user: true, noExecute: i % 3 === 0 }),
      );
  });
  for (let i = 0; i < PAGES; i++) expect(g.vcpu.load(BASE + BigInt(i * 4096), 4).ok).toBe(true);
  return g;
}

function twoD(g: ReturnType<typeof guest>, fastPath: boolean) {
  const frames = new NestedFrameSource(g.vm.mmu.walker, g.vm.host);
  const w = cpuWalker(frames, g.vcpu.cpuRole, g.regs.cr3);
  const gw = !fastPath
    ? Object.assign(
        new GuestWalker(frames, {
          format: w.format,
          permFault: w.permFault,
          fetchErrorBit: w.fetchErrorBit,
          pke: w.pke,
          pks: w.pks,
          pkru: w.pkru,
          pkrs: w.pkrs,
          wp: w.wp,
          fastPath: false,
        }),
        { rootGfn: w.rootGfn },
      )
    : w;
  return new TwoDimensionalWalk(gw, frames);
}

const damageArb = fc.array(
  fc.record({
    page: fc.nat(PAGES - 1),
    level: fc.nat(4),
    kind: fc.constantFrom("clear-p", "clear-a", "clear-d", "rsvd", "rw", "us", "xd", "ept-hole"),
  }),
  { maxLength: 6 },
);

const hosts = [
  { name: "EPT 4", cpu: "intel-sapphirerapids", tdp: {} },
  { name: "EPT 5", cpu: "intel-sapphirerapids", tdp: { levels: 5 } },
  { name: "NPT 4", cpu: "amd-zen4", tdp: { format: "npt" } },
];

describe.each(hosts)("2-D walk fast path on $name", (host) => {
  it.each(["4level", "5level"] as const)("%s guest: the same walks as with the fast path off", (mode) => {
    fc.assert(
      fc.property(
        damageArb,
        fc.array(
          fc.record({ page: fc.nat(PAGES + 3), kind: fc.constantFrom(0, ACCESS_WRITE, ACCESS_FETCH) }),
          {
            minLength: 1,
            maxLength: 16,
          },
        ),
        (damage, accesses) => {
          const a = guest(mode, host);
          const b = guest(mode, host);
          for (const d of damage) {
            const va = BASE + BigInt(d.page * 4096);
            // The entry's address, from a pure walk (the same in both guests).
            const probe = twoD(a, false);
            probe.frames.reset();
            const path = probe.guest;
            probe.guestWalker!.translate(Number(va >> 32n), Number(va & 0xffffffffn), ACCESS_USER, path);
            if (path.depth === 0) continue;
            const at = Math.min(d.level, path.depth - 1);
            const addr = path.entryAddr[at];
            for (const g of [a, b]) {
              if (d.kind === "ept-hole") {
                // The host entry behind this guest table: the guest walk faults on it mid-way.
                const leaf = hostLeaf(g.vm, addr);
                if (leaf) pokeHostEntry(g.vm, leaf.addr, 0, 0);
                continue;
              }
              const lo = Number(g.vm.physical.read(addr, 4).value);
              const hi = Number(g.vm.physical.read(addr + 4, 4).value);
              const [nl, nh] =
                d.kind === "clear-p"
                  ? [lo & ~1, hi]
                  : d.kind === "clear-a"
                    ? [lo & ~0x20, hi]
                    : d.kind === "clear-d"
                      ? [lo & ~0x40, hi]
                      : d.kind === "rsvd"
                        ? [lo, hi | 0x80000]
                        : d.kind === "rw"
                          ? [lo ^ 2, hi]
                          : d.kind === "us"
                            ? [lo ^ 4, hi]
                            : [lo, hi ^ 0x80000000];
              g.vm.physical.write(addr, 4, BigInt(nl >>> 0));
              g.vm.physical.write(addr + 4, 4, BigInt(nh >>> 0));
            }
          }
          const fast = twoD(a, true);
          const slow = twoD(b, false);
          for (const acc of accesses) {
            const va = BASE + BigInt(acc.page * 4096 + 8);
            const [hi, lo] = [Number(va >> 32n), Number(va & 0xffffffffn)];
            const access = acc.kind | ACCESS_USER;
            const rf = fast.walk(hi, lo, access);
            const rs = slow.walk(hi, lo, access);
            expect(rf).toBe(rs);
            expect(fast.refs).toBe(slow.refs);
            expect(fast.frames.failed).toBe(slow.frames.failed);
            expect(walkDifferences(fast.guest, slow.guest)).toEqual([]);
            if (fast.frames.failed || rf === 0) expect(walkDifferences(fast.host, slow.host)).toEqual([]);
            expect(fast.hostPhysical).toBe(slow.hostPhysical);
          }
          expect([fast.walks, fast.totalRefs, fast.completed, fast.completedRefs]).toEqual([
            slow.walks,
            slow.totalRefs,
            slow.completed,
            slow.completedRefs,
          ]);
          for (let f = 0; f < 256; f++) {
            const x = a.vm.physical.frameWords(f);
            const xs = x && Array.from(x.subarray(a.vm.physical.frameBase, a.vm.physical.frameBase + 1024));
            const y = b.vm.physical.frameWords(f);
            const ys = y && Array.from(y.subarray(b.vm.physical.frameBase, b.vm.physical.frameBase + 1024));
            expect(xs).toEqual(ys);
          }
        },
      ),
      { numRuns: 12 },
    );
  });
});
