/**
 * Random guest OS operations for the property tests (test/guest/property.test.ts,
 * test/mmu/shadow-guest-property.test.ts): indices are taken modulo what exists when the
 * operation runs, so every sequence is meaningful whatever came before it.
 */

import fc from "fast-check";

export type GuestOp =
  | { op: "spawn" }
  | { op: "fork"; p: number }
  | { op: "exit"; p: number }
  | { op: "exec"; p: number }
  | { op: "mmap"; p: number; pages: number; prot: number; huge: boolean }
  | { op: "munmap"; p: number; r: number; from: number; pages: number }
  | { op: "mprotect"; p: number; r: number; prot: number }
  | {
      op: "touch";
      p: number;
      r: number;
      page: number;
      word: number;
      kind: "read" | "write" | "fetch";
      cpu: number;
    }
  | { op: "switch"; p: number; cpu: number }
  | { op: "age"; p: number };

const ix = fc.nat(3);
const prot = fc.integer({ min: 0, max: 7 });

/** One operation; `switchWeight` weighs context switches against the rest (touch: 12). */
export function guestOpArb(switchWeight = 2): fc.Arbitrary<GuestOp> {
  return fc.oneof(
    { weight: 1, arbitrary: fc.constant({ op: "spawn" as const }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant("fork" as const), p: ix }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant("exit" as const), p: ix }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant("exec" as const), p: ix }) },
    {
      weight: 3,
      arbitrary: fc.record({
        op: fc.constant("mmap" as const),
        p: ix,
        pages: fc.integer({ min: 1, max: 6 }),
        prot,
        huge: fc.boolean(),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        op: fc.constant("munmap" as const),
        p: ix,
        r: ix,
        from: fc.nat(5),
        pages: fc.integer({ min: 1, max: 3 }),
      }),
    },
    { weight: 2, arbitrary: fc.record({ op: fc.constant("mprotect" as const), p: ix, r: ix, prot }) },
    {
      weight: 12,
      arbitrary: fc.record({
        op: fc.constant("touch" as const),
        p: ix,
        r: ix,
        page: fc.nat(5),
        word: fc.nat(1023),
        kind: fc.constantFrom("read" as const, "write" as const, "fetch" as const),
        cpu: fc.nat(1),
      }),
    },
    {
      weight: switchWeight,
      arbitrary: fc.record({ op: fc.constant("switch" as const), p: ix, cpu: fc.nat(1) }),
    },
    { weight: 1, arbitrary: fc.record({ op: fc.constant("age" as const), p: ix }) },
  );
}

/** A mapping the test made in a process (the guest's VMAs may have split it since). */
export interface Region {
  va: bigint;
  pages: number;
  huge: boolean;
}
