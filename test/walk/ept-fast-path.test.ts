/**
 * The EPT fast path must be invisible: over random EPT tables (good, misconfigured, reserved
 * bits, not present, large pages, with and without A/D) every walk of the fast path compiled
 * for the format (src/walk/specialize.ts) gives exactly the record and the memory the general
 * walk gives, and `walkAddress` (the lean variant) the same result fields.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  ACCESS_FETCH,
  ACCESS_GUEST_TABLE,
  ACCESS_LINEAR_VALID,
  ACCESS_USER,
  ACCESS_WRITE,
  cpuModel,
  eptWalker,
  type FrameSource,
  HostMemory,
  Walk,
} from "../../src/index.js";
import { walkDifferences } from "../helpers.js";

/** Host memory without a frame cache: walkers over it take the general path only. */
function withoutCache(host: HostMemory): FrameSource {
  return {
    get frameBase() {
      return host.frameBase;
    },
    frameWords: (gfn) => host.frameWords(gfn),
    compareExchange: (pa, bytes, el, eh, nl, nh) => host.compareExchange(pa, bytes, el, eh, nl, nh),
  };
}

const entryArb = fc.record({
  kind: fc.constantFrom("table", "table", "table", "leaf", "empty", "random"),
  rwx: fc.constantFrom(7, 7, 7, 5, 3, 1, 4, 2, 6, 0, 0x400, 0x401, 0x407, 0x403),
  mt: fc.constantFrom(6, 6, 0, 2, 7),
  a: fc.boolean(),
  d: fc.boolean(),
  junkLo: fc.nat(0xffffffff),
  junkHi: fc.nat(0xffffffff),
  // Reserved bits on an otherwise good leaf: bit 13 (reserved in large leaves), bit 47 and
  // bit 51 (at or above MAXPHYADDR 46).
  rsvdLo: fc.constantFrom(0, 0, 0, 0x2000),
  rsvdHi: fc.constantFrom(0, 0, 0, 0x8000, 0x80000),
});

type Entry = {
  kind: string;
  rwx: number;
  mt: number;
  a: boolean;
  d: boolean;
  junkLo: number;
  junkHi: number;
  rsvdLo: number;
  rsvdHi: number;
};

/** EPT tables in frames 0..levels-1 (one path: each links the next; level-1 leaves map frame 6). */
function image(entries: Entry[], levels: number) {
  const host = new HostMemory(64 * 4096);
  for (let i = 0; i < 8; i++) host.alloc();
  let n = 0;
  for (let t = 0; t < levels; t++) {
    const { words, base } = host.frame(t);
    for (let i = 0; i < 512; i += 37) {
      const e = entries[n++ % entries.length];
      const level = levels - t;
      let lo = 0;
      let hi = 0;
      if (e.kind === "table") lo = ((t + 1 < levels ? t + 1 : 5) << 12) | e.rwx | (e.a ? 0x100 : 0);
      else if (e.kind === "leaf") {
        hi = e.rsvdHi;
        lo =
          (((level > 1 ? 0 : 6) << 12) |
            e.rwx |
            (e.mt << 3) |
            (level > 1 ? 0x80 : 0) |
            (e.a ? 0x100 : 0) |
            (e.d ? 0x200 : 0) |
            e.rsvdLo) >>>
          0;
      } else if (e.kind === "random") {
        lo = e.junkLo;
        hi = e.junkHi;
      }
      words[base + 2 * i] = lo >>> 0;
      words[base + 2 * i + 1] = hi >>> 0;
    }
  }
  return host;
}

describe("EPT fast path", () => {
  it("walks exactly like the general path", () => {
    const outcomes = new Set<string>();
    const base = cpuModel("intel-sapphirerapids");
    fc.assert(
      fc.property(
        fc.array(entryArb, { minLength: 1, maxLength: 20 }),
        fc.constantFrom(4, 5),
        fc.boolean(),
        fc.boolean(),
        fc.boolean(),
        fc.array(
          fc.record({
            index: fc.nat(13),
            kind: fc.constantFrom(0, ACCESS_WRITE, ACCESS_FETCH),
            user: fc.boolean(),
            table: fc.boolean(),
          }),
          { minLength: 1, maxLength: 12 },
        ),
        (entries, levels, ad, mbec, executeOnly, accesses) => {
          const cpu = { ...base, maxPhyAddr: 46, ept: { ...base.ept!, mbec, executeOnly } };
          const a = image(entries, levels);
          const b = image(entries, levels);
          const d = image(entries, levels);
          const eptp = BigInt(0x6 | ((levels - 1) << 3) | (ad ? 0x40 : 0));
          const fast = eptWalker(a, eptp, cpu);
          const slow = eptWalker(withoutCache(b), eptp, cpu);
          const lean = eptWalker(d, eptp, cpu);
          const wl = new Walk();
          const wf = new Walk();
          const ws = new Walk();
          for (const acc of accesses) {
            // Addresses whose every index is a multiple of 37 (where the entries are).
            let gpa = 0n;
            for (let l = 1; l <= levels; l++)
              gpa |= BigInt(((acc.index + l) % 14) * 37) << BigInt(12 + 9 * (l - 1));
            const access =
              acc.kind |
              (acc.user ? ACCESS_USER : 0) |
              (acc.table ? ACCESS_GUEST_TABLE | ACCESS_LINEAR_VALID : 0);
            const hi = Number(gpa >> 32n);
            const lo = Number(gpa & 0xffffffffn);
            const okF = fast.walk(hi, lo, access, wf);
            const okS = slow.walk(hi, lo, access, ws);
            // walkAddress: the same outcome and result fields (its path may be stale).
            const okL = lean.walkAddress(hi, lo, access, wl);
            expect(okL).toBe(okS);
            const result = (x: Walk) => [x.address, x.pageShift, x.effective, x.depth, x.fault, x.reason];
            expect(result(wl)).toEqual(result(ws));
            expect(okF).toBe(okS);
            outcomes.add(okS ? "ok" : `fault ${ws.fault}`);
            expect(walkDifferences(wf, ws)).toEqual([]);
          }
          for (let t = 0; t < levels; t++) {
            const [x, y, u] = [a.frame(t), b.frame(t), d.frame(t)];
            const words = (f: typeof x) => Array.from(f.words.subarray(f.base, f.base + 1024));
            expect(words(x)).toEqual(words(y));
            expect(words(u)).toEqual(words(y));
          }
        },
      ),
      { numRuns: 400 },
    );
    // The runs reached successes, violations and misconfigurations.
    expect([...outcomes].sort()).toEqual(["fault 3", "fault 4", "ok"]);
  });
});
