import { describe, expect, it } from "vitest";
import {
  GuestPhysical,
  HostAddressSpace,
  HostMemory,
  HostMemoryExhaustedError,
  MemslotError,
  Memslots,
} from "../../src/index.js";

describe("HostMemory", () => {
  it("allocates zeroed frames, counts references and reuses freed frames", () => {
    const m = new HostMemory(3 * 4096);
    const a = m.alloc();
    const { words, base } = m.frame(a);
    words[base + 5] = 0xdead;
    m.get(a);
    expect(m.refCount(a)).toBe(2);
    m.put(a);
    m.put(a);
    expect(m.refCount(a)).toBe(0);
    expect(m.framesInUse).toBe(0);
    const b = m.alloc();
    expect(b).toBe(a);
    expect(m.frame(b).words[base + 5]).toBe(0);
  });

  it("says clearly when it is exhausted", () => {
    const m = new HostMemory(2 * 4096);
    m.alloc();
    m.alloc();
    expect(() => m.alloc()).toThrow(HostMemoryExhaustedError);
    expect(() => m.alloc()).toThrow(/all 2 frames/);
  });

  it("refuses bad sizes and unallocated frames", () => {
    expect(() => new HostMemory(1000)).toThrow(/multiple of 4096/);
    const m = new HostMemory(4096);
    expect(() => m.put(0)).toThrow(/not allocated/);
    expect(() => m.get(7)).toThrow(/not allocated/);
  });
});

describe("Memslots", () => {
  it("finds slots, bumps the generation on every change", () => {
    const s = new Memslots(1 << 20);
    s.add({ id: 1, baseGfn: 0x100, pages: 0x100, hvaPage: 0 });
    s.add({ id: 2, baseGfn: 0x300, pages: 0x10, hvaPage: 0x1000 });
    expect(s.generation).toBe(2);
    expect(s.find(0x150)?.id).toBe(1);
    expect(s.find(0x200)).toBeUndefined();
    expect(s.find(0x30f)?.id).toBe(2);
    s.move(2, 0x400);
    expect(s.find(0x300)).toBeUndefined();
    expect(s.find(0x400)?.id).toBe(2);
    s.setFlags(1, { readOnly: true });
    expect(s.find(0x100)?.flags.readOnly).toBe(true);
    s.delete(1);
    expect(s.find(0x100)).toBeUndefined();
    expect(s.generation).toBe(5);
  });

  it("rejects overlaps, naming both slots, and bad geometry", () => {
    const s = new Memslots(1 << 20);
    s.add({ id: 1, baseGfn: 0x100, pages: 0x100, hvaPage: 0 });
    expect(() => s.add({ id: 2, baseGfn: 0x1ff, pages: 2, hvaPage: 0 })).toThrow(
      /memslot 2 .* overlaps memslot 1/,
    );
    expect(() => s.add({ id: 1, baseGfn: 0x900, pages: 2, hvaPage: 0 })).toThrow(/already exists/);
    expect(() => s.add({ id: 3, baseGfn: 0.5, pages: 2, hvaPage: 0 })).toThrow(MemslotError);
    expect(() => s.add({ id: 3, baseGfn: 0x900, pages: 0, hvaPage: 0 })).toThrow(/positive/);
    expect(() => s.add({ id: 3, baseGfn: (1 << 20) - 1, pages: 2, hvaPage: 0 })).toThrow(/address width/);
    s.add({ id: 3, baseGfn: 0x400, pages: 0x10, hvaPage: 0 });
    expect(() => s.move(3, 0x150)).toThrow(/overlaps memslot 1/);
    expect(() => s.delete(9)).toThrow(/no memslot with id 9/);
  });
});

describe("GuestPhysical", () => {
  function guest() {
    const host = new HostMemory(1 << 20);
    const g = new GuestPhysical(new Memslots(), host);
    g.memslots.add({ id: 0, baseGfn: 0, pages: 16, hvaPage: 0x100 });
    g.memslots.add({ id: 1, baseGfn: 32, pages: 4, hvaPage: 0x200, flags: { readOnly: true } });
    return { host, g };
  }

  it("reads and writes 1/2/4/8 bytes little-endian, across frame boundaries too", () => {
    const { g } = guest();
    expect(g.write(0x1000, 8, 0x0807060504030201n)).toBe("ok");
    expect(g.read(0x1000, 1).value).toBe(1n);
    expect(g.read(0x1001, 2).value).toBe(0x0302n);
    expect(g.read(0x1004, 4).value).toBe(0x08070605n);
    expect(g.write(0x1ffe, 4, 0xaabbccdd)).toBe("ok");
    expect(g.read(0x1ffe, 4).value).toBe(0xaabbccddn);
    expect(g.read(0x2000, 1).value).toBe(0xbbn);
    expect(() => g.write(0, 1, 256)).toThrow(/does not fit/);
    expect(() => g.read(0, 3 as 4)).toThrow(/size/);
  });

  it("reports MMIO and read-only slots instead of throwing, and writes nothing partially", () => {
    const { g } = guest();
    expect(g.read(16 * 4096, 4)).toEqual({ status: "mmio", value: 0n });
    expect(g.write(16 * 4096, 4, 1)).toBe("mmio");
    expect(g.write(15 * 4096 + 4094, 4, 0xffffffff)).toBe("mmio"); // straddles into MMIO
    expect(g.read(15 * 4096 + 4094, 2).value).toBe(0n);
    expect(g.write(32 * 4096, 4, 1)).toBe("readonly");
    expect(g.read(32 * 4096, 4).status).toBe("ok");
  });

  it("compare-exchange succeeds only on the expected value", () => {
    const { g } = guest();
    g.write(0x3000, 8, 0x1234n);
    expect(g.compareExchange64(0x3000, 0x1n, 0x5n)).toEqual({ status: "changed", actual: 0x1234n });
    expect(g.compareExchange64(0x3000, 0x1234n, 0xffff_0000_0000_0001n).status).toBe("ok");
    expect(g.read(0x3000, 8).value).toBe(0xffff_0000_0000_0001n);
    expect(g.compareExchange64(32 * 4096, 0n, 1n).status).toBe("readonly");
    expect(g.compareExchange64(64 * 4096, 0n, 1n).status).toBe("mmio");
    expect(() => g.compareExchange64(0x3004, 0n, 1n)).toThrow(/aligned/);
  });

  it("marks pages dirty while logging", () => {
    const { g } = guest();
    g.memslots.setFlags(0, { dirtyLog: true });
    g.write(3 * 4096 + 8, 4, 7);
    g.write(9 * 4096, 1, 7);
    expect(g.memslots.get(0).dirtyBitmap![0]).toBe((1 << 3) | (1 << 9));
  });

  it("populates host frames on first touch only", () => {
    const { host, g } = guest();
    expect(host.framesInUse).toBe(0);
    g.read(0x5000, 4);
    expect(host.framesInUse).toBe(1);
    g.write(0x5008, 4, 1);
    expect(host.framesInUse).toBe(1);
  });
});

describe("HostAddressSpace", () => {
  it("announces discards and migrations before they happen, and keeps contents across migration", () => {
    const host = new HostMemory(1 << 20);
    const space = new HostAddressSpace(host);
    const seen: [number, number][] = [];
    const off = space.onInvalidate((p, n) => seen.push([p, n]));
    const f = space.frameOf(0x42);
    host.frame(f).words[host.frame(f).base] = 99;
    const g = space.migrate(0x42);
    expect(g).not.toBe(f);
    expect(host.frame(g).words[host.frame(g).base]).toBe(99);
    space.discard(0x40, 4);
    expect(seen).toEqual([
      [0x42, 1],
      [0x40, 4],
    ]);
    expect(space.peek(0x42)).toBe(-1);
    off();
    space.discard(0x40, 1);
    expect(seen.length).toBe(2);
    space.frameOf(1);
    space.releaseAll();
    expect(host.framesInUse).toBe(0);
  });
});
