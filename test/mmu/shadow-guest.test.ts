/**
 * The same guest workloads under shadow paging and under TDP: identical guest-visible
 * results (the guest model's digest), the MMUs' check() along the way, and every host
 * frame back after the VM is destroyed.
 */
import { describe, expect, it } from "vitest";
import type { GuestLayout, GuestPagingMode } from "../../src/guest/layout.js";
import { LguestPagingOps } from "../../src/guest/lguest-ops.js";
import { GuestOs, PROT_READ, PROT_WRITE } from "../../src/guest/os.js";
import type { ShadowMmu } from "../../src/mmu/shadow/shadow-mmu.js";
import { Vm, type VmOptions } from "../../src/vm/vm.js";

const MODES: GuestPagingMode[] = ["32bit", "pae", "4level", "5level"];

function boot(mode: GuestPagingMode, vmo: VmOptions, cpus = 1) {
  const vm = new Vm({ cpu: "intel-sapphirerapids", hostMemory: 96 << 20, ...vmo });
  vm.addMemslot({ id: 0, baseGfn: 0, pages: 32 * 256, hvaPage: 0x100000 });
  const ops = vmo.mmu === "shadow-pv" ? (layout: GuestLayout) => new LguestPagingOps(layout) : undefined;
  const os = new GuestOs(vm, { mode, cpus, ops });
  return { vm, os };
}

function ok<T extends { ok: boolean }>(r: T): T {
  if (!r.ok)
    throw new Error(
      `unexpected failure ${JSON.stringify(r, (_, v) => (typeof v === "bigint" ? v.toString(16) : v))}`,
    );
  return r;
}

/** fork/exec storm, mmap/munmap churn, COW, context switches among many processes. */
function workload({ vm, os }: ReturnType<typeof boot>, checkEvery: number): string {
  let step = 0;
  const checkpoint = () => {
    if (++step % checkEvery === 0) expect(vm.check()).toEqual([]);
  };
  const parent = (ok(os.spawn()) as { pid: number }).pid;
  const base = (ok(os.mmap(parent, 64 * 4096, PROT_READ | PROT_WRITE)) as { va: bigint }).va;
  for (let i = 0; i < 64; i++) {
    os.touch(parent, base + BigInt(i * 4096), "write", 0x1000 + i);
    checkpoint();
  }
  const children: number[] = [];
  for (let c = 0; c < 6; c++) {
    const child = (ok(os.fork(parent)) as { pid: number }).pid;
    children.push(child);
    os.switchTo(child);
    for (let i = c; i < 64; i += 7) {
      os.touch(child, base + BigInt(i * 4096), "read");
      os.touch(child, base + BigInt(i * 4096), "write", c * 100 + i); // COW break
      checkpoint();
    }
  }
  for (let round = 0; round < 3; round++)
    for (const p of [parent, ...children]) {
      os.switchTo(p);
      for (let i = round; i < 64; i += 9) os.touch(p, base + BigInt(i * 4096), "read");
      const m = os.mmap(p, 8 * 4096, PROT_READ | PROT_WRITE);
      if (m.ok) {
        for (let i = 0; i < 8; i++) os.touch(p, m.va + BigInt(i * 4096), "write", round * 10 + i);
        os.munmap(p, m.va, 8 * 4096);
      }
      checkpoint();
    }
  // Huge pages: a 4 MiB anonymous mapping faulted in with 2 MiB (4 MiB in 32-bit PSE) pages.
  const hugeLen = 4 << 20;
  const huge = os.mmap(parent, hugeLen, PROT_READ | PROT_WRITE, { huge: true });
  expect(huge.ok).toBe(true);
  if (huge.ok) {
    os.switchTo(parent);
    for (let off = 0; off < hugeLen; off += 0x81000)
      os.touch(parent, huge.va + BigInt(off), "write", off >>> 12);
    for (let off = 0; off < hugeLen; off += 0x81000) os.touch(parent, huge.va + BigInt(off), "read");
    os.munmap(parent, huge.va, hugeLen);
    checkpoint();
  }
  for (const c of children) {
    os.exec(c);
    os.exit(c);
    checkpoint();
  }
  os.exit(parent);
  expect(vm.check()).toEqual([]);
  expect(os.audit()).toEqual([]);
  return os.digest();
}

describe("the same guest under shadow paging and TDP", () => {
  for (const mode of MODES)
    it(`${mode}: identical guest-visible results`, () => {
      const tdp = boot(mode, {});
      const digestTdp = workload(tdp, 50);
      const shadow = boot(mode, { mmu: "shadow" });
      const digestShadow = workload(shadow, 10);
      expect(digestShadow).toBe(digestTdp);
      const stats = (shadow.vm.hostMmu as ShadowMmu).stats;
      expect(stats.emulatedWrites + stats.unsynced).toBeGreaterThan(0);
      shadow.vm.destroy();
      expect(shadow.vm.host.framesInUse).toBe(0);
      const pv = boot(mode, { mmu: "shadow-pv" });
      expect(workload(pv, 10)).toBe(digestTdp);
      const pvStats = (pv.vm.hostMmu as ShadowMmu).stats;
      expect(pvStats.hypercalls).toBeGreaterThan(0);
      expect(pvStats.emulatedWrites).toBe(0);
      pv.vm.destroy();
      expect(pv.vm.host.framesInUse).toBe(0);
    });

  it("a 2-vCPU guest with shootdowns under shadow paging", () => {
    const tdp = boot("4level", {}, 2);
    const shadow = boot("4level", { mmu: "shadow" }, 2);
    const run = ({ vm, os }: ReturnType<typeof boot>) => {
      const p = (ok(os.spawn()) as { pid: number }).pid;
      const va = (ok(os.mmap(p, 16 * 4096, PROT_READ | PROT_WRITE)) as { va: bigint }).va;
      os.switchTo(p, 0);
      os.switchTo(p, 1);
      for (let i = 0; i < 16; i++) os.touch(p, va + BigInt(i * 4096), "write", i, i % 2);
      for (let i = 0; i < 16; i++) os.touch(p, va + BigInt(i * 4096), "read", 0, (i + 1) % 2);
      os.mprotect(p, va, 8 * 4096, PROT_READ);
      for (let i = 0; i < 16; i++) os.touch(p, va + BigInt(i * 4096), "write", 100 + i, i % 2);
      os.munmap(p, va, 16 * 4096);
      for (let i = 0; i < 4; i++) os.touch(p, va + BigInt(i * 4096), "read", 0, i % 2);
      expect(vm.check()).toEqual([]);
      return os.digest();
    };
    const digest = run(tdp);
    expect(run(shadow)).toBe(digest);
    expect(run(boot("4level", { mmu: "shadow-pv" }, 2))).toBe(digest);
  });
});
