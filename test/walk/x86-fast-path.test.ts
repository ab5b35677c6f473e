/**
 * The x86 fast path must be invisible: the one compiled per format (src/walk/specialize.ts)
 * against the general walk, over damaged page tables, random addresses and access
 * descriptors, `walk` and `translate`: the same records, results, retries and host memory
 * (bench/lib/fast-path-check.ts; `npx tsx bench/lib/fast-path-check.ts` runs it longer).
 */
import { describe, expect, it } from "vitest";
import { checkFastPaths } from "../../bench/lib/fast-path-check.js";
import { HostMemory, x86Format } from "../../src/index.js";
import { specializeX86 } from "../../src/walk/specialize.js";

describe("x86 fast path", () => {
  it("the compiled fast path walks exactly like the general path", () => {
    const r = checkFastPaths(8, 2500);
    expect(r.walks).toBe(8 * 2500);
    // Enough plain successes that the fast path did the work, enough failures to exercise
    // the hand-over to the general path.
    expect(r.ok).toBeGreaterThan(r.walks / 10);
    expect(r.ok).toBeLessThan(r.walks * 0.9);
  }, 60_000);

  it("compiles one function per distinct format and class of memory", () => {
    const opts = {
      mode: "4level",
      maxPhyAddr: 46,
      nxe: true,
      pse: true,
      pse36: false,
      gbPages: true,
      amd: false,
    } as const;
    const host = new HostMemory(1 << 20);
    const a = specializeX86(x86Format(opts), host);
    expect(typeof a).toBe("function");
    expect(specializeX86(x86Format({ ...opts }), new HostMemory(1 << 20))).toBe(a);
    expect(specializeX86(x86Format({ ...opts, maxPhyAddr: 52 }), host)).not.toBe(a);
    expect(specializeX86(x86Format({ ...opts, mode: "5level" }), host)).not.toBe(a);
    // Another class of memory: its own copy, so each stays monomorphic.
    expect(
      specializeX86(x86Format(opts), {
        frameBase: 0,
        frameWords: (g: number) => host.frameWords(g),
        compareExchange: () => 0,
      }),
    ).not.toBe(a);
  });
});
