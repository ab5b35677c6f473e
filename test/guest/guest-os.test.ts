/**
 * GuestOs on TDP VMs (EPT and NPT) in every paging mode: VMA churn, fork/COW storms,
 * context switches, huge pages, aging, SIGSEGV and OOM; every load checked against the
 * guest's value model, `vm.check()` and the guest's audit clean, the allocator balanced
 * after every process exits.
 */

import { describe, expect, it } from "vitest";
import { GuestIntegrityError } from "../../src/guest/model.js";
import { PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE, TOUCH_OK, TOUCH_SEGV } from "../../src/guest/os.js";
import { addr, bootGuest, EPT, expectBalanced, expectSound, MODES, NPT, pid } from "./helpers.js";

const RW = PROT_READ | PROT_WRITE;

describe.each(MODES)("%s guest", (mode) => {
  describe.each([EPT, NPT])("on $name", (host) => {
    it("mmap / munmap / mprotect churn: values, protections, SIGSEGV, tables freed", () => {
      const g = bootGuest(mode, { host });
      const { os } = g;
      const p = pid(os.spawn());
      const regions: bigint[] = [];
      for (let i = 0; i < 6; i++) {
        const va = addr(os.mmap(p, 5 * 4096, RW));
        regions.push(va);
        for (let k = 0; k < 5; k++) os.touch(p, va + BigInt(k * 4096 + 4 * i), "write", 0x100 * i + k + 1);
      }
      for (let i = 0; i < 6; i++)
        for (let k = 0; k < 5; k++)
          expect(os.touch(p, regions[i] + BigInt(k * 4096 + 4 * i), "read")).toEqual({
            ok: true,
            value: 0x100 * i + k + 1,
          });
      // Read-only: reads keep working, writes are SIGSEGV.
      const inv = os.stats.invlpg;
      os.mprotect(p, regions[1], 5 * 4096, PROT_READ);
      expect(os.stats.invlpg - inv).toBe(5); // W removed from five cached pages
      expect(os.touch(p, regions[1] + 4n, "read")).toEqual({ ok: true, value: 0x101 });
      expect(os.touch(p, regions[1] + 4n, "write", 9)).toMatchObject({ ok: false, error: "SIGSEGV" });
      // Writable again: no invalidation needed; the first write upgrades the entry in place.
      const inv2 = os.stats.invlpg;
      os.mprotect(p, regions[1], 5 * 4096, RW);
      expect(os.stats.invlpg).toBe(inv2);
      expect(os.touch(p, regions[1] + 4n, "write", 9)).toEqual({ ok: true, value: 9 });
      expect(os.stats.writeUpgrades).toBeGreaterThan(0);
      // PROT_NONE keeps the page but refuses reads; restoring shows the old data.
      os.mprotect(p, regions[2], 4096, PROT_NONE);
      expect(os.touch(p, regions[2] + 8n, "read")).toMatchObject({ ok: false, error: "SIGSEGV" });
      os.mprotect(p, regions[2], 4096, PROT_READ);
      expect(os.touch(p, regions[2] + 8n, "read")).toEqual({ ok: true, value: 0x201 });
      // Fetch from a non-executable mapping faults where the mode has NX.
      const f = os.touch(p, regions[3], "fetch");
      if (mode === "32bit") expect(f.ok).toBe(true);
      else expect(f).toMatchObject({ ok: false, error: "SIGSEGV" });
      os.mprotect(p, regions[3], 4096, PROT_READ | PROT_EXEC);
      expect(os.touch(p, regions[3] + 12n, "fetch")).toEqual({ ok: true, value: 0x301 });
      // munmap the middle of a region, then the rest: accesses become SIGSEGV, memory comes back.
      os.munmap(p, regions[4] + 4096n, 2 * 4096);
      expect(os.touch(p, regions[4] + 4096n, "read")).toMatchObject({ ok: false, error: "SIGSEGV" });
      expect(os.touch(p, regions[4] + 16n, "read")).toEqual({ ok: true, value: 0x401 });
      for (const r of regions) os.munmap(p, r, 5 * 4096);
      expect(os.touch(p, regions[0], "read")).toMatchObject({ ok: false, error: "SIGSEGV" });
      expect(os.process(p).signals.length).toBe(os.stats.segv);
      expectSound(g);
      // Mapped again at the same place: fresh zero pages.
      const again = addr(os.mmap(p, 4096, RW, { at: regions[0] }));
      expect(os.touch(p, again, "read")).toEqual({ ok: true, value: 0 });
      os.exit(p);
      expectBalanced(g);
    });

    it("fork / COW storm: each process sees its own values, frames shared until written", () => {
      const g = bootGuest(mode, { host });
      const { os } = g;
      const root = pid(os.spawn());
      const va = addr(os.mmap(root, 8 * 4096, RW));
      for (let k = 0; k < 8; k++) os.touch(root, va + BigInt(k * 4096), "write", 1000 + k);
      const userBefore = os.memory().user;
      const family = [root];
      for (let gen = 0; gen < 3; gen++) for (const p of [...family]) family.push(pid(os.fork(p)));
      expect(family.length).toBe(8);
      // Forking copied tables, not pages.
      expect(os.memory().user).toBe(userBefore);
      for (const p of family)
        for (let k = 0; k < 8; k++)
          expect(os.touch(p, va + BigInt(k * 4096), "read")).toEqual({ ok: true, value: 1000 + k });
      // Every process writes page (its index % 8): one COW copy each, except the last sharer
      // of a page, which may get it back in place.
      for (const [i, p] of family.entries()) os.touch(p, va + BigInt((i % 8) * 4096) + 4n, "write", p);
      expect(os.stats.cowBreaks + os.stats.writeUpgrades).toBe(8);
      family.forEach((p, i) => {
        for (let k = 0; k < 8; k++) {
          const own = k === i % 8;
          expect(os.touch(p, va + BigInt(k * 4096) + 4n, "read")).toEqual({ ok: true, value: own ? p : 0 });
          expect(os.touch(p, va + BigInt(k * 4096), "read")).toEqual({ ok: true, value: 1000 + k });
        }
      });
      expectSound(g);
      for (const p of family.reverse()) os.exit(p);
      expect(os.stats.tablesFreed).toBe(os.stats.tablesAllocated - os.bootMemory.kernelTable);
      expectBalanced(g);
    });

    it("context switches among many processes keep every address space apart", () => {
      const g = bootGuest(mode, { host });
      const { os } = g;
      const procs = Array.from({ length: 12 }, () => pid(os.spawn()));
      const data = 0x1000n * BigInt(mode === "32bit" || mode === "pae" ? 0x08058 : 0x410);
      for (let round = 0; round < 3; round++)
        for (const p of procs) {
          os.switchTo(p, 0);
          if (round > 0) expect(os.touch(p, data, "read")).toEqual({ ok: true, value: p * 10 + round - 1 });
          os.touch(p, data, "write", p * 10 + round);
          const stack = os.process(p).vmas.find((v) => v.name === "stack")!;
          os.touch(p, BigInt(stack.end - 1) * 4096n, "write", p);
        }
      expect(os.stats.cr3Writes).toBeGreaterThanOrEqual(36);
      expectSound(g);
      for (const p of procs) os.exec(p);
      for (const p of procs) expect(os.touch(p, data, "read")).toEqual({ ok: true, value: 0 });
      for (const p of procs) os.exit(p);
      expectBalanced(g);
    });

    it("huge pages: one fault maps a whole huge page, COW copies it, munmap frees it", () => {
      const g = bootGuest(mode, { host });
      const { os } = g;
      const p = pid(os.spawn());
      const huge = mode === "32bit" ? 4 << 20 : 2 << 20;
      const va = addr(os.mmap(p, huge, RW, { huge: true }));
      expect(va % BigInt(huge)).toBe(0n);
      os.touch(p, va + 0x1230n, "write", 0xabc);
      expect(os.stats.hugeFaults).toBe(1);
      const faults = os.stats.pageFaults;
      os.touch(p, va + BigInt(huge - 4), "write", 0xdef); // same huge page: no fault
      expect(os.stats.pageFaults).toBe(faults);
      expect(os.memory().user).toBe(huge / 4096);
      const c = pid(os.fork(p));
      expect(os.touch(c, va + 0x1230n, "read")).toEqual({ ok: true, value: 0xabc });
      os.touch(c, va + 0x1230n, "write", 1);
      expect(os.stats.cowBreaks).toBe(1);
      expect(os.touch(p, va + 0x1230n, "read")).toEqual({ ok: true, value: 0xabc });
      expect(os.touch(c, va + BigInt(huge - 4), "read")).toEqual({ ok: true, value: 0xdef });
      expectSound(g);
      expect(() => os.munmap(p, va + 4096n, 4096)).toThrow(/splits a huge page/);
      os.munmap(p, va, huge);
      expect(os.touch(p, va, "read")).toMatchObject({ ok: false, error: "SIGSEGV" });
      os.exit(c);
      os.exit(p);
      expectBalanced(g);
    });
  });
});

describe("aging, out of memory, odd requests", () => {
  it.each(MODES)("%s: age() reports the pages used since the last scan", (mode) => {
    const g = bootGuest(mode);
    const { os } = g;
    const p = pid(os.spawn());
    const va = addr(os.mmap(p, 6 * 4096, RW));
    for (let k = 0; k < 6; k++) os.touch(p, va + BigInt(k * 4096), "write", k + 1);
    const first = os.age(p);
    expect(first.scanned).toBe(6);
    expect(first.young).toEqual([0, 1, 2, 3, 4, 5].map((k) => va + BigInt(k * 4096)));
    expect(os.age(p).young).toEqual([]);
    os.touch(p, va + 4096n * 2n, "read");
    os.touch(p, va + 4096n * 4n, "read");
    expect(os.age(p).young).toEqual([va + 8192n, va + 16384n]);
    expectSound(g);
    os.exit(p);
    expectBalanced(g);
  });

  it.each(MODES)("%s: mapping more than RAM succeeds; touching it ends in ENOMEM, not a crash", (mode) => {
    const g = bootGuest(mode, { ramMiB: 8 });
    const { os } = g;
    const p = pid(os.spawn());
    const len = 16 << 20;
    const va = addr(os.mmap(p, len, RW));
    let oom = -1;
    for (let k = 0; k < len / 4096; k++) {
      const r = os.touch(p, va + BigInt(k * 4096), "write", k + 1);
      if (!r.ok) {
        expect(r.error).toBe("ENOMEM");
        oom = k;
        break;
      }
    }
    expect(oom).toBeGreaterThan(1000);
    expect(os.memory().free).toBeLessThan(4);
    expect(os.stats.oom).toBe(1);
    // Fork may fail for lack of tables; the caller gets ENOMEM and nothing leaks.
    const f = os.fork(p);
    if (f.ok) os.exit(f.pid);
    for (let k = 0; k < oom; k += 97)
      expect(os.touch(p, va + BigInt(k * 4096), "read")).toEqual({ ok: true, value: k + 1 });
    expectSound(g);
    os.exit(p);
    expectBalanced(g);
  });

  it("rejects bad requests with clear errors", () => {
    const { os } = bootGuest("4level");
    const p = pid(os.spawn());
    expect(() => os.touch(99, 0x1000n)).toThrow(/no process 99/);
    expect(() => os.touch(p, 0x1002n)).toThrow(/4-byte aligned/);
    expect(() => os.mmap(p, 0, RW)).toThrow(/not positive/);
    expect(() => os.mmap(p, 4096, 9)).toThrow(/PROT_/);
    expect(() => os.munmap(p, 0x1001n, 4096)).toThrow(/page aligned/);
    expect(() => os.switchTo(p, 3)).toThrow(/vCPU 3 does not exist/);
    expect(os.mprotect(p, 0x7000_0000_0000n, 4096, PROT_READ)).toEqual({ ok: false, error: "ENOMEM" });
    // A kernel address and a non-canonical address from user mode: SIGSEGV (#PF, #GP).
    expect(os.touch(p, 0xffff_8880_0000_1000n, "read")).toMatchObject({ ok: false, signal: { vector: 14 } });
    expect(os.touch(p, 0x8000_0000_0000n, "read")).toMatchObject({ ok: false, signal: { vector: 13 } });
    expect(() => bootGuest("32bit", { pcid: true })).toThrow(/PCID/);
  });

  it("touchPage: the same accesses as touch, without BigInt, and the same checks", () => {
    for (const mode of ["32bit", "4level"] as const) {
      const a = bootGuest(mode);
      const b = bootGuest(mode);
      const pa = pid(a.os.spawn());
      const pb = pid(b.os.spawn());
      const va = addr(a.os.mmap(pa, 4 * 4096, RW));
      expect(addr(b.os.mmap(pb, 4 * 4096, RW))).toBe(va);
      const vpn = Number(va >> 12n);
      for (let k = 0; k < 4; k++) {
        const off = (k * 1028) & 0xffc;
        expect(a.os.touch(pa, va + BigInt(k * 4096 + off), "write", k + 7)).toEqual({
          ok: true,
          value: k + 7,
        });
        expect(b.os.touchPage(pb, vpn + k, off, "write", k + 7)).toBe(TOUCH_OK);
        expect(a.os.touch(pa, va + BigInt(k * 4096 + off), "read")).toEqual({ ok: true, value: k + 7 });
        expect(b.os.touchPage(pb, vpn + k, off, "read")).toBe(TOUCH_OK);
        expect(b.os.touchValue).toBe(k + 7);
      }
      // Past the mapping: SIGSEGV, recorded as touch records it.
      expect(a.os.touch(pa, va + 4n * 4096n, "read")).toMatchObject({ ok: false, error: "SIGSEGV" });
      expect(b.os.touchPage(pb, vpn + 4, 0, "read")).toBe(TOUCH_SEGV);
      expect(b.os.process(pb).signals).toEqual(a.os.process(pa).signals);
      expect(b.os.digest()).toBe(a.os.digest());
      expect(b.os.stats).toEqual(a.os.stats);
      expect(() => b.os.touchPage(pb, vpn, 2)).toThrow(/4-byte aligned/);
      expect(() => b.os.touchPage(pb, vpn, 4096)).toThrow(/4-byte aligned/);
      expect(() => b.os.touchPage(pb, vpn + 0.5, 0)).toThrow(/4-byte aligned/);
      expect(() => b.os.touchPage(pb, -1, 0)).toThrow(/4-byte aligned/);
      expect(() => b.os.touchPage(pb, vpn, 0, "write", 2 ** 32)).toThrow(/32-bit unsigned/);
      expect(() => b.os.touchPage(pb, vpn, 0, "write", -1)).toThrow(/32-bit unsigned/);
      if (mode === "32bit") {
        expect(() => b.os.touchPage(pb, 2 ** 20, 0)).toThrow(/32-bit linear/);
        expect(() => a.os.touch(pa, 1n << 32n)).toThrow(/32-bit linear/);
      } else expect(() => b.os.touchPage(pb, 2 ** 52, 0)).toThrow(/64-bit linear/);
    }
  });

  it("brk grows and shrinks the heap", () => {
    const g = bootGuest("pae");
    const { os } = g;
    const p = pid(os.spawn());
    const base = addr(os.brk(p, 3 * 4096));
    os.touch(p, base + 8192n, "write", 5);
    expect(addr(os.brk(p, 4096))).toBe(base + 3n * 4096n);
    expect(os.touch(p, base + 8192n, "read")).toEqual({ ok: true, value: 5 });
    os.brk(p, -3 * 4096);
    expect(os.touch(p, base + 8192n, "read")).toMatchObject({ ok: false, error: "SIGSEGV" });
    os.brk(p, 3 * 4096);
    expect(os.touch(p, base + 8192n, "read")).toEqual({ ok: true, value: 0 });
    os.exit(p);
    expectBalanced(g);
  });

  it("clears reused pages when RAM is not assumed zero, and checks every load", () => {
    const g = bootGuest("4level", { ramZeroed: false });
    const { os } = g;
    const a = pid(os.spawn());
    const va = addr(os.mmap(a, 4096, RW));
    os.touch(a, va, "write", 0xdead);
    os.exit(a);
    const b = pid(os.spawn());
    const vb = addr(os.mmap(b, 4096, RW));
    expect(os.touch(b, vb, "read")).toEqual({ ok: true, value: 0 });
    expect(os.stats.pagesZeroed).toBeGreaterThan(0);
    // Corrupt the frame behind the guest's back (a wrong frame would look the same).
    g.vm.physical.write(findFrame(g, b, vb), 4, 0x5555n);
    expect(() => os.touch(b, vb, "read")).toThrow(GuestIntegrityError);
    expect(() => os.touch(b, vb, "read")).toThrow(/process \d+ at 0x[0-9a-f]+ expected 0x0, got 0x5555/);
  });
});

/** The guest-physical address `va` of process `p` maps, by a software walk. */
function findFrame(g: ReturnType<typeof bootGuest>, p: number, va: bigint): number {
  const cpu = g.os.vcpus[0];
  g.os.switchTo(p, 0);
  const r = cpu.cpuRole;
  expect(r.mode).toBe("4level");
  let table = Number(cpu.currentCr3 & 0xffffffffff000n);
  for (let level = 4; level >= 1; level--) {
    const idx = Number((va >> BigInt(12 + 9 * (level - 1))) & 0x1ffn);
    const e = g.vm.physical.read(table + idx * 8, 8).value;
    table = Number(e & 0xffffffffff000n);
  }
  return table + Number(va & 0xfffn);
}
