/**
 * The guest's value model and digest on their own: the records (sparse, then dense past 16
 * words) and the record cache in front of the page map against a plain map-of-maps
 * reference over random stores, loads, drops and forks;
 * the digest's sensitivity to every input bit; `Process.vmaAt`'s hint against a scan.
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Digest, ValueModel } from "../../src/guest/model.js";
import { PROT_READ, PROT_WRITE } from "../../src/guest/os.js";
import { addr, bootGuest, pid } from "./helpers.js";

/** The reference: what each model's pages hold, copied on fork. */
type Ref = Map<number, Map<number, number>>;

const VPNS = [0, 1, 64, 128, 65, 0x1_0000_0000, 0x1_0000_0040, 2 ** 52 - 64];

type ModelOp =
  | { op: "store"; m: number; v: number; w: number; value: number }
  | { op: "load"; m: number; v: number; w: number }
  | { op: "drop"; m: number; v: number; n: number }
  | { op: "fork"; m: number };

const opArb: fc.Arbitrary<ModelOp> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant("store" as const),
      m: fc.nat(7),
      v: fc.nat(VPNS.length - 1),
      w: fc.nat(23),
      value: fc.oneof(fc.constant(0), fc.nat(0xffffffff)),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant("load" as const),
      m: fc.nat(7),
      v: fc.nat(VPNS.length - 1),
      w: fc.nat(3),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("drop" as const),
      m: fc.nat(7),
      v: fc.nat(VPNS.length - 1),
      n: fc.nat(80),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("fork" as const), m: fc.nat(7) }) },
);

describe("ValueModel", () => {
  it("matches a plain reference under stores, loads, drops and forks (cache conflicts included)", () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 300 }), (ops) => {
        const models = [new ValueModel()];
        const refs: Ref[] = [new Map()];
        for (const o of ops) {
          const i = o.m % models.length;
          const m = models[i];
          const ref = refs[i];
          if (o.op === "store") {
            const vpn = VPNS[o.v];
            m.store(vpn, o.w * 42, o.value);
            if (!ref.has(vpn)) ref.set(vpn, new Map());
            ref.get(vpn)!.set(o.w * 42, o.value);
          } else if (o.op === "load") {
            const vpn = VPNS[o.v];
            expect(m.expected(vpn, o.w * 42)).toBe(ref.get(vpn)?.get(o.w * 42) ?? 0);
          } else if (o.op === "drop") {
            const first = VPNS[o.v];
            m.drop(first, first + o.n);
            for (const v of [...ref.keys()]) if (v >= first && v < first + o.n) ref.delete(v);
          } else if (models.length < 8) {
            models.push(m.fork());
            refs.push(new Map([...ref].map(([v, words]) => [v, new Map(words)])));
          }
        }
        for (let i = 0; i < models.length; i++)
          for (const vpn of VPNS)
            for (let w = 0; w < 24; w++)
              expect(models[i].expected(vpn, w * 42)).toBe(refs[i].get(vpn)?.get(w * 42) ?? 0);
      }),
      { numRuns: 300 },
    );
  });

  it("keeps every word when a page record goes from sparse to dense, before and after a fork", () => {
    const a = new ValueModel();
    const want = new Map<number, number>();
    for (let i = 0; i < 40; i++) {
      const word = (i * 37) % 1024;
      a.store(9, word, i + 1);
      want.set(word, i + 1);
      for (const [w, v] of want) expect(a.expected(9, w)).toBe(v);
      if (i === 10) {
        // A child forked while the record is sparse goes dense on its own.
        const b = a.fork();
        for (let j = 0; j < 30; j++) b.store(9, 1000 - j, j + 100);
        for (let j = 0; j < 30; j++) expect(b.expected(9, 1000 - j)).toBe(j + 100);
        for (const [w, v] of want) expect(b.expected(9, w)).toBe(v);
        expect(a.expected(9, 1000)).toBe(0);
      }
    }
    expect(a.expected(9, 1)).toBe(0);
  });

  it("shares records across fork until a store breaks the sharing", () => {
    const a = new ValueModel();
    a.store(5, 0, 1);
    const b = a.fork();
    expect(b.pages.get(5)).toBe(a.pages.get(5));
    b.store(5, 0, 2);
    expect(b.pages.get(5)).not.toBe(a.pages.get(5));
    expect([a.expected(5, 0), b.expected(5, 0)]).toEqual([1, 2]);
    expect(a.pages.get(5)!.refs).toBe(1);
  });
});

describe("Digest", () => {
  it("every bit of every word, and the order of words, changes the value", () => {
    const of = (words: number[]) => {
      const d = new Digest();
      for (const w of words) d.mix(w);
      return d.value;
    };
    const base = [0x12345678, 0, 0xffffffff];
    const seen = new Set([of(base)]);
    for (let i = 0; i < base.length; i++)
      for (let bit = 0; bit < 32; bit++) {
        const w = [...base];
        w[i] = (w[i] ^ (1 << bit)) >>> 0;
        seen.add(of(w));
      }
    expect(seen.size).toBe(1 + 3 * 32);
    expect(of([1, 2])).not.toBe(of([2, 1]));
    expect(of([0])).not.toBe(of([0, 0]));
    const n = new Digest();
    n.mixNumber(2 ** 52 - 1);
    expect(n.value).toBe(of([0xffffffff, 0xfffff]));
  });
});

describe("Process.vmaAt", () => {
  it("finds the VMA a scan finds after mmap, munmap and mprotect changes", () => {
    const { os } = bootGuest("4level");
    const p = pid(os.spawn());
    const proc = os.process(p);
    const scan = (vpn: number) => proc.vmas.find((v) => vpn >= v.start && vpn < v.end);
    const va = addr(os.mmap(p, 64 * 4096, PROT_READ | PROT_WRITE));
    const first = Number(va >> 12n);
    const probe = () => {
      for (let v = first - 2; v < first + 66; v++) expect(proc.vmaAt(v)).toBe(scan(v));
      for (let v = first + 65; v >= first - 2; v--) expect(proc.vmaAt(v)).toBe(scan(v));
    };
    probe();
    os.munmap(p, va + 16n * 4096n, 8 * 4096);
    probe();
    os.mprotect(p, va + 40n * 4096n, 4 * 4096, PROT_READ);
    probe();
    os.munmap(p, va, 64 * 4096);
    probe();
  });
});
