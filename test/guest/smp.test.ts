/**
 * SMP: TLB shootdowns when one vCPU changes a mapping another vCPU has cached, PCID
 * switches that keep (or flush) TLB entries, and digests equal across host MMUs.
 */

import { describe, expect, it } from "vitest";
import { GuestIntegrityError } from "../../src/guest/model.js";
import { PROT_READ, PROT_WRITE } from "../../src/guest/os.js";
import { addr, bootGuest, EPT, expectBalanced, expectSound, MODES, NPT, pid } from "./helpers.js";

const RW = PROT_READ | PROT_WRITE;
const hiLo = (va: bigint) => [Number(va >> 32n), Number(va & 0xffffffffn)] as const;

describe.each(MODES)("%s SMP guest, 2 vCPUs", (mode) => {
  /** A process running on both vCPUs (two threads), page cached in vCPU 1's TLB. */
  function setup(shootdown: boolean) {
    const g = bootGuest(mode, { cpus: 2, shootdown });
    const { os } = g;
    const p = pid(os.spawn());
    os.switchTo(p, 0);
    os.switchTo(p, 1);
    const va = addr(os.mmap(p, 4 * 4096, RW));
    os.touch(p, va, "write", 111, 0);
    expect(os.touch(p, va, "read", 0, 1)).toEqual({ ok: true, value: 111 });
    expect(os.vcpus[1].tlb.peek(...hiLo(va))).not.toBeNull();
    return { g, os, p, va };
  }

  it("munmap on vCPU 0 shoots the page down on vCPU 1", () => {
    const { g, os, p, va } = setup(true);
    const ipis = os.stats.shootdownIpis;
    os.munmap(p, va, 4 * 4096);
    expect(os.stats.shootdownIpis).toBe(ipis + 1);
    expect(os.vcpus[1].tlb.peek(...hiLo(va))).toBeNull();
    expect(os.touch(p, va, "read", 0, 1)).toMatchObject({ ok: false, error: "SIGSEGV" });
    expectSound(g);
    os.exit(p);
    expectBalanced(g);
  });

  it("without the shootdown vCPU 1 keeps the stale translation (the integrity check catches it)", () => {
    const { os, p, va } = setup(false);
    os.munmap(p, va, 4 * 4096);
    expect(os.vcpus[1].tlb.peek(...hiLo(va))).not.toBeNull();
    expect(() => os.touch(p, va, "read", 0, 1)).toThrow(GuestIntegrityError);
    expect(() => os.touch(p, va, "read", 0, 1)).toThrow(/stale or wrong translation/);
  });

  it("mprotect read-only and COW on one vCPU reach the other", () => {
    const { g, os, p, va } = setup(true);
    os.touch(p, va, "write", 5, 1); // writable entry cached on vCPU 1
    os.mprotect(p, va, 4096, PROT_READ);
    expect(os.touch(p, va, "write", 6, 1)).toMatchObject({ ok: false, error: "SIGSEGV" });
    os.mprotect(p, va, 4096, RW);
    // fork from vCPU 0 write-protects the parent on both vCPUs; the parent's write on
    // vCPU 1 then copies, and the child still sees the old value.
    const c = pid(os.fork(p));
    expect(os.touch(p, va, "read", 0, 0)).toEqual({ ok: true, value: 5 }); // read-only entry cached on vCPU 0
    expect(os.touch(p, va, "write", 7, 1)).toEqual({ ok: true, value: 7 }); // new frame: vCPU 0 must forget the old
    expect(os.touch(p, va, "read", 0, 0)).toEqual({ ok: true, value: 7 });
    expect(os.touch(c, va, "read")).toEqual({ ok: true, value: 5 });
    expect(os.stats.cowBreaks).toBe(1);
    expectSound(g);
    os.exit(c);
    os.exit(p);
    expectBalanced(g);
  });

  it("more than 33 pages: one full flush per vCPU instead of INVLPGs", () => {
    const { g, os, p } = setup(true);
    const big = addr(os.mmap(p, 40 * 4096, RW));
    for (let k = 0; k < 40; k++) os.touch(p, big + BigInt(k * 4096), "write", k + 1, k % 2);
    const before = { inv: os.stats.invlpg, full: os.stats.fullFlushes };
    os.mprotect(p, big, 40 * 4096, PROT_READ);
    expect(os.stats.invlpg).toBe(before.inv);
    expect(os.stats.fullFlushes).toBe(before.full + 2);
    for (let k = 0; k < 40; k++) expect(os.touch(p, big + BigInt(k * 4096), "write", 0, 1).ok).toBe(false);
    expectSound(g);
  });
});

describe.each(["4level", "5level"] as const)("%s with PCIDs", (mode) => {
  it("switching back keeps the TLB entries unless the address space changed meanwhile", () => {
    const g = bootGuest(mode, { pcid: true });
    const { os } = g;
    const a = pid(os.spawn());
    const b = pid(os.spawn());
    const va = addr(os.mmap(a, 4096, RW));
    os.touch(a, va, "write", 1);
    os.switchTo(b, 0);
    os.switchTo(a, 0);
    expect(os.stats.cr3NoFlush).toBeGreaterThan(0);
    expect(os.vcpus[0].tlb.peek(...hiLo(va))).not.toBeNull(); // kept across the switches
    // Change a's mapping while b runs: no INVLPG possible for a's PCID now; the switch back flushes.
    os.switchTo(b, 0);
    const noflush = os.stats.cr3NoFlush;
    os.munmap(a, va, 4096);
    os.switchTo(a, 0);
    expect(os.stats.cr3NoFlush).toBe(noflush);
    expect(os.vcpus[0].tlb.peek(...hiLo(va))).toBeNull();
    expect(os.touch(a, va, "read")).toMatchObject({ ok: false, error: "SIGSEGV" });
    // A PCID freed by exit and reused by a new process is flushed on its first use.
    os.exit(a);
    const c = pid(os.spawn());
    expect(os.process(c).pcid).toBe(os.process(b).pcid - 1);
    const n = os.stats.cr3NoFlush;
    os.switchTo(c, 0);
    expect(os.stats.cr3NoFlush).toBe(n);
    expectSound(g);
    os.exit(b);
    os.exit(c);
    expectBalanced(g);
  });
});

describe("digest", () => {
  /** A fixed workload: fork, COW, munmap, SIGSEGV, aging, switches on two vCPUs. */
  function workload(mode: (typeof MODES)[number], host: typeof EPT) {
    const g = bootGuest(mode, { host, cpus: 2 });
    const { os } = g;
    const p = pid(os.spawn());
    const va = addr(os.mmap(p, 16 * 4096, RW));
    for (let k = 0; k < 16; k++) os.touch(p, va + BigInt(k * 4096), "write", k * 7 + 1, k % 2);
    const c = pid(os.fork(p));
    os.switchTo(c, 1);
    for (let k = 0; k < 16; k += 3) os.touch(c, va + BigInt(k * 4096), "write", k, 1);
    for (let k = 0; k < 16; k++) os.touch(p, va + BigInt(k * 4096), "read", 0, 0);
    os.age(p);
    os.touch(p, va, "read");
    os.age(p);
    os.munmap(c, va, 8 * 4096);
    os.touch(c, va, "read");
    for (let k = 8; k < 16; k++) os.touch(c, va + BigInt(k * 4096), "read");
    const d = os.digest();
    expectSound(g);
    return d;
  }

  it.each(MODES)("%s: the same workload gives the same digest on EPT and NPT", (mode) => {
    expect(workload(mode, EPT)).toBe(workload(mode, NPT));
  });
});
