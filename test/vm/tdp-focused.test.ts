/**
 * The TDP MMU feature by feature: huge pages (alignment, split for dirty logging, collapse
 * afterwards), nx huge pages, MMIO SPTE generations, memslot changes (exact zaps, remote
 * flushes, no stale translation), host invalidations, aging, stolen GPA bits, read-only
 * memslots, teardown, and the configurations that must be refused.
 */

import { describe, expect, it } from "vitest";
import { CpuStateError, cpuModel } from "../../src/arch/cpu.js";
import { MemslotError } from "../../src/mem/memslots.js";
import type { MmioDevice } from "../../src/vm/mmio.js";
import { Vm } from "../../src/vm/vm.js";
import { x86Leaf } from "../../src/walk/builder.js";
import { eptWalker } from "../../src/walk/contexts.js";
import { bitsSet, hostLeaf, MODE_REGS, makeGuest, pokeHostEntry } from "./guest.js";

const ALL_ONES_4 = 0xffffffffn;

/** A device that answers `base tag + offset` and logs every write. */
function recordingDevice(tag: number) {
  const writes: string[] = [];
  let reads = 0;
  const device: MmioDevice = {
    read: (off) => {
      reads++;
      return BigInt(tag + off);
    },
    write: (off, size, v) => void writes.push(`${off.toString(16)}:${size}:${v.toString(16)}`),
  };
  return { device, writes, reads: () => reads };
}

// ---------------------------------------------------------------------------------------------

describe("huge pages", () => {
  /** Guest: VA 0x40000000 + x → GPA 0x1000000 + x (2 MiB guest pages), memslot 1 as given. */
  function hugeVm(slot: { baseGfn: number; pages: number; hvaPage: number; huge?: 9 }, tdp = {}) {
    return makeGuest("4level", { tdp }, (t, vm) => {
      vm.addMemslot({
        id: 1,
        baseGfn: slot.baseGfn,
        pages: slot.pages,
        hvaPage: slot.hvaPage,
        hostHugePages: slot.huge,
      });
      for (let i = 0; i < 2; i++)
        t.map(BigInt(0x40000000 + i * (2 << 20)), 0x1000000 + i * (2 << 20), 2 << 20, x86Leaf());
    });
  }

  it("2 MiB host backing maps a 2 MiB EPT leaf; an uncached walk then reads 3 host levels for the data", () => {
    const { vm, vcpu } = hugeVm({ baseGfn: 0x1000, pages: 1024, hvaPage: 0x200000, huge: 9 });
    expect(vcpu.store(0x40012340n, 4, 0xabcd).ok).toBe(true);
    expect(vm.mmu.stats.hugeLeaves).toBe(1);
    expect(hostLeaf(vm, 0x1012000)?.level).toBe(2);
    // The rest of the 2 MiB page needs no further exit.
    const exits = vcpu.exits.eptViolation;
    expect(vcpu.load(0x401ff000n, 4)).toEqual({ ok: true, value: 0n });
    expect(vcpu.exits.eptViolation).toBe(exits);
    vcpu.tlb.flushAll();
    const refs = vcpu.stats.completedWalkRefs;
    expect(vcpu.load(0x40012340n, 4)).toEqual({ ok: true, value: 0xabcdn });
    // 3 guest reads (2 MiB guest page) × 4-level EPT for the 4 KiB-backed tables, + 3 for the data.
    expect(vcpu.stats.completedWalkRefs - refs).toBe(3 + 3 * 4 + 3);
    expect(vm.check()).toEqual([]);
  });

  it("1 GiB host backing maps a 1 GiB EPT leaf", () => {
    const { vm, vcpu } = makeGuest("4level", { hostMemory: 2 * 2 ** 30 }, (t, vm) => {
      vm.addMemslot({ id: 1, baseGfn: 0x40000, pages: 0x40000, hvaPage: 0x40000, hostHugePages: 18 });
      t.map(0x80000000n, 0x40000000, 1 << 30, x86Leaf());
    });
    expect(vcpu.store(0x80000000n + 0x3456789n, 1, 0x5a).ok).toBe(true);
    expect(hostLeaf(vm, 0x40000000)?.level).toBe(3);
    expect(vm.mmu.stats.hugeLeaves).toBe(1);
    expect(vcpu.load(0x80000000n + 0x3ffff000n, 1)).toEqual({ ok: true, value: 0n });
    expect(vm.mmu.stats.leavesInstalled).toBe(3); // the guest's PML4 and PDPT frames (4 KiB), the 1 GiB leaf
    vcpu.tlb.flushAll();
    const refs = vcpu.stats.completedWalkRefs;
    expect(vcpu.load(0x83456789n, 1)).toEqual({ ok: true, value: 0x5an });
    expect(vcpu.stats.completedWalkRefs - refs).toBe(2 + 2 * 4 + 2);
    expect(vm.check()).toEqual([]);
    vm.destroy();
    expect(vm.host.framesInUse).toBe(0);
  });

  it("a slot whose GFNs and host pages are not equally aligned maps 4 KiB pages", () => {
    // GFN 0x1000 is 2 MiB-aligned, but host page 0x200100 is not: no 2 MiB leaf can cover it.
    const { vm, vcpu } = makeGuest("4level", {}, (t, vm) => {
      vm.hostSpace.backHuge(0x200000, 9);
      vm.hostSpace.backHuge(0x200200, 9);
      vm.addMemslot({ id: 1, baseGfn: 0x1000, pages: 1024, hvaPage: 0x200100 });
      t.map(0x40000000n, 0x1000000, 2 << 20, x86Leaf());
    });
    expect(vcpu.store(0x40000000n, 4, 1).ok).toBe(true);
    expect(vm.mmu.stats.hugeLeaves).toBe(0);
    expect(hostLeaf(vm, 0x1000000)?.level).toBe(1);
    expect(vm.check()).toEqual([]);
  });

  it("a huge-backed range only partly inside the slot, or 4 KiB host backing, maps 4 KiB pages", () => {
    const partial = makeGuest("4level", {}, (t, vm) => {
      vm.hostSpace.backHuge(0x200000, 9);
      vm.addMemslot({ id: 1, baseGfn: 0x1000, pages: 256, hvaPage: 0x200000 });
      t.map(0x40000000n, 0x1000000, 2 << 20, x86Leaf());
    });
    expect(partial.vcpu.load(0x40000000n, 4).ok).toBe(true);
    expect(partial.vm.mmu.stats.hugeLeaves).toBe(0);
    const small = hugeVm({ baseGfn: 0x1000, pages: 1024, hvaPage: 0x200000 });
    expect(small.vcpu.load(0x40000000n, 4).ok).toBe(true);
    expect(small.vm.mmu.stats.hugeLeaves).toBe(0);
    expect(partial.vm.check()).toEqual([]);
    expect(small.vm.check()).toEqual([]);
  });

  it("dirty logging splits huge mappings to 4 KiB, and turning it off lets them collapse again", () => {
    const { vm, vcpu } = hugeVm({ baseGfn: 0x1000, pages: 1024, hvaPage: 0x200000, huge: 9 });
    expect(vcpu.store(0x40001000n, 4, 0x11).ok).toBe(true);
    expect(vcpu.store(0x40201000n, 4, 0x22).ok).toBe(true);
    expect(vm.mmu.stats.hugeLeaves).toBe(2);
    vm.setMemslotFlags(1, { dirtyLog: true });
    expect(vm.check()).toEqual([]);
    expect(hostLeaf(vm, 0x1001000)).toBeNull();
    // Reads refault as 4 KiB read-only pages; a write makes exactly its page dirty.
    expect(vcpu.load(0x40001000n, 4)).toEqual({ ok: true, value: 0x11n });
    expect(hostLeaf(vm, 0x1001000)?.level).toBe(1);
    expect(vm.mmu.spte.isWritable(hostLeaf(vm, 0x1001000)!.lo)).toBe(false);
    expect(vcpu.store(0x40003008n, 8, 0x33).ok).toBe(true);
    expect(vcpu.store(0x40201000n, 4, 0x44).ok).toBe(true);
    expect(vm.mmu.stats.hugeLeaves).toBe(2);
    expect(vm.check()).toEqual([]);
    expect(bitsSet(vm.getDirtyLog(1), 1024)).toEqual([3, 0x201]);
    expect(vm.check()).toEqual([]);
    // Logging off: the 4 KiB mappings go; the next faults map 2 MiB again.
    vm.setMemslotFlags(1, { dirtyLog: false });
    expect(vm.check()).toEqual([]);
    expect(vcpu.load(0x40003008n, 8)).toEqual({ ok: true, value: 0x33n });
    expect(vcpu.load(0x40201000n, 4)).toEqual({ ok: true, value: 0x44n });
    expect(vm.mmu.stats.hugeLeaves).toBe(4);
    expect(hostLeaf(vm, 0x1003000)?.level).toBe(2);
    expect(vm.check()).toEqual([]);
    vm.destroy();
    expect(vm.host.framesInUse).toBe(0);
  });

  it("nx huge pages: huge leaves are not executable; a fetch splits to an executable 4 KiB page", () => {
    const { vm, vcpu } = hugeVm(
      { baseGfn: 0x1000, pages: 1024, hvaPage: 0x200000, huge: 9 },
      { nxHugePages: true },
    );
    vm.physical.write(0x1005000, 4, 0x90909090);
    expect(vcpu.load(0x40005000n, 4)).toEqual({ ok: true, value: 0x90909090n });
    const huge = hostLeaf(vm, 0x1005000)!;
    expect(huge.level).toBe(2);
    expect(vm.mmu.spte.isExecutable(huge.lo, huge.hi)).toBe(false);
    expect(vcpu.fetch(0x40005000n, 4)).toEqual({ ok: true, value: 0x90909090n });
    const small = hostLeaf(vm, 0x1005000)!;
    expect(small.level).toBe(1);
    expect(vm.mmu.spte.isExecutable(small.lo, small.hi)).toBe(true);
    expect(vm.mmu.stats.splits).toBe(1);
    // The rest of the split page stays mapped (readable, not executable).
    const next = hostLeaf(vm, 0x1006000)!;
    expect(next.level).toBe(1);
    expect(vm.mmu.spte.isExecutable(next.lo, next.hi)).toBe(false);
    expect(vm.check()).toEqual([]);
    // check() flags an executable huge page.
    expect(vcpu.load(0x40200000n, 4).ok).toBe(true);
    const other = hostLeaf(vm, 0x1200000)!;
    expect(other.level).toBe(2);
    pokeHostEntry(vm, other.addr, other.lo | 4, other.hi); // EPT X
    expect(vm.check().join("\n")).toMatch(/executable huge page/);
    pokeHostEntry(vm, other.addr, other.lo, other.hi);
    expect(vm.check()).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------

describe("MMIO SPTEs and the memslot generation", () => {
  it.each([
    ["EPT", "intel-sapphirerapids", {}],
    ["NPT (MAXPHYADDR 40)", "qemu-max", { format: "npt" as const }],
  ])("%s: cached MMIO SPTEs are used, stale after any memslot change, and memory wins", (_n, cpu, tdp) => {
    const { vm, vcpu } = makeGuest("4level", { cpu, tdp }, (t) => {
      t.map(0x500000n, 0x3000000, 4096, x86Leaf());
    });
    expect(vm.mmu.spte.mmioCaching).toBe(true);
    const dev = recordingDevice(0xd000);
    vm.addMmio(0x3000000, 0x1000, dev.device);
    expect(vcpu.load(0x500010n, 4)).toEqual({ ok: true, value: 0xd010n });
    expect(vm.mmu.stats.mmioFaults).toBe(1);
    expect(hostLeaf(vm, 0x3000000)?.mmio).toBe(true);
    expect(vcpu.store(0x500020n, 2, 0xbeef)).toEqual({ ok: true, value: 0xbeefn });
    expect(dev.writes).toEqual(["20:2:beef"]);
    expect(vm.mmu.stats.mmioFast).toBe(1);
    expect(vm.check()).toEqual([]);
    // An unrelated memslot change: the SPTE is stale, the slow path re-creates it.
    vm.addMemslot({ id: 5, baseGfn: 0x5000, pages: 16, hvaPage: 0x50000 });
    expect(vcpu.load(0x500030n, 4)).toEqual({ ok: true, value: 0xd030n });
    expect(vm.mmu.stats.mmioStale).toBe(1);
    expect(vm.mmu.stats.mmioFaults).toBe(2);
    expect(vcpu.load(0x500030n, 4)).toEqual({ ok: true, value: 0xd030n });
    expect(vm.mmu.stats.mmioFast).toBe(2);
    vm.setMemslotFlags(5, { readOnly: true });
    expect(vcpu.load(0x500034n, 4)).toEqual({ ok: true, value: 0xd034n });
    expect(vm.mmu.stats.mmioStale).toBe(2);
    // A memslot now covers the GPA: the access reaches memory, never the device.
    vm.moveMemslot(5, 0x3000);
    vm.setMemslotFlags(5, { readOnly: false });
    vm.physical.write(0x3000010, 4, 0x12345678);
    const reads = dev.reads();
    expect(vcpu.load(0x500010n, 4)).toEqual({ ok: true, value: 0x12345678n });
    expect(vcpu.store(0x500020n, 2, 0x4444).ok).toBe(true);
    expect(vm.physical.read(0x3000020, 2).value).toBe(0x4444n);
    expect(dev.reads()).toBe(reads);
    expect(dev.writes).toEqual(["20:2:beef"]);
    expect(vm.check()).toEqual([]);
  });

  it("a stale MMIO SPTE whose GPA a new memslot covers reaches memory (generation check alone)", () => {
    const { vm, vcpu } = makeGuest("4level", {}, (t) => t.map(0x500000n, 0x3000000, 4096, x86Leaf()));
    expect(vcpu.load(0x500000n, 4)).toEqual({ ok: true, value: ALL_ONES_4 });
    const e = hostLeaf(vm, 0x3000000)!;
    expect(e.mmio).toBe(true);
    vm.addMemslot({ id: 5, baseGfn: 0x3000, pages: 1, hvaPage: 0x50000 });
    // Put the old-generation MMIO SPTE back (as if the eager zap had missed it).
    pokeHostEntry(vm, e.addr, e.lo, e.hi);
    vm.physical.write(0x3000000, 4, 0x600d);
    expect(vcpu.load(0x500000n, 4)).toEqual({ ok: true, value: 0x600dn });
    expect(vm.mmu.stats.mmioStale).toBe(1);
    expect(vm.mmio.unclaimed).toBe(1);
    expect(vm.check()).toEqual([]);
  });

  it("NPT without a free physical address bit never caches MMIO, and stays correct", () => {
    const { vm, vcpu } = makeGuest("4level", { cpu: "amd-zen4", tdp: { format: "npt" } }, (t) =>
      t.map(0x500000n, 0x3000000, 4096, x86Leaf()),
    );
    const dev = recordingDevice(0x100);
    vm.addMmio(0x3000000, 0x1000, dev.device);
    for (let i = 0; i < 3; i++) expect(vcpu.load(0x500008n, 4)).toEqual({ ok: true, value: 0x108n });
    expect(vm.mmu.stats.mmioFast).toBe(0);
    expect(vm.mmu.stats.mmioFaults).toBe(3);
    expect(hostLeaf(vm, 0x3000000)).toBeNull();
  });
});

// ---------------------------------------------------------------------------------------------

describe("memslot changes: exact zaps and remote flushes", () => {
  function threeVcpus() {
    const g = makeGuest("4level", {}, (t, vm) => {
      vm.addMemslot({ id: 1, baseGfn: 0x1000, pages: 64, hvaPage: 0x30000 });
      vm.addMemslot({ id: 2, baseGfn: 0x2000, pages: 64, hvaPage: 0x40000 });
      for (let i = 0; i < 4; i++) {
        t.map(BigInt(0x600000 + i * 4096), 0x1000000 + i * 4096, 4096, x86Leaf());
        t.map(BigInt(0x700000 + i * 4096), 0x2000000 + i * 4096, 4096, x86Leaf());
      }
      t.map(0x800000n, 0x3000000, 4096, x86Leaf());
      t.map(0x900000n, 0x4000000, 4096, x86Leaf());
    });
    const vcpus = [g.vcpu, g.vm.createVcpu(), g.vm.createVcpu()];
    for (const v of vcpus.slice(1)) v.setState(g.regs);
    for (let i = 0; i < 4; i++) {
      g.vm.physical.write(0x1000000 + i * 4096, 4, 0x1000 + i);
      g.vm.physical.write(0x2000000 + i * 4096, 4, 0x2000 + i);
    }
    // Every vCPU caches every translation.
    for (const v of vcpus)
      for (let i = 0; i < 4; i++) {
        expect(v.load(BigInt(0x600000 + i * 4096), 4)).toEqual({ ok: true, value: BigInt(0x1000 + i) });
        expect(v.load(BigInt(0x700000 + i * 4096), 4)).toEqual({ ok: true, value: BigInt(0x2000 + i) });
      }
    return { ...g, vcpus };
  }

  it("delete zaps exactly the slot, flushes every vCPU, and no vCPU reads the old memory", () => {
    const { vm, vcpus } = threeVcpus();
    const flushes = { ...vm.stats };
    const zapped = vm.mmu.stats.zappedLeaves;
    vm.deleteMemslot(1);
    expect(vm.mmu.stats.zappedLeaves - zapped).toBe(4);
    // A memslot change comes from the VMM, not from a vCPU: every vCPU's flush is remote.
    expect(vm.stats.remoteFlushes - flushes.remoteFlushes).toBe(3);
    expect(vm.stats.localFlushes - flushes.localFlushes).toBe(0);
    for (let i = 0; i < 4; i++) expect(hostLeaf(vm, 0x1000000 + i * 4096)).toBeNull();
    for (let i = 0; i < 4; i++) expect(hostLeaf(vm, 0x2000000 + i * 4096)?.level).toBe(1);
    expect(vcpus[1].load(0x600000n, 4)).toEqual({ ok: true, value: ALL_ONES_4 });
    expect(vcpus[1].store(0x601000n, 4, 0x77).ok).toBe(true);
    const exits = vcpus[2].exits.eptViolation;
    expect(vcpus[2].load(0x702000n, 4)).toEqual({ ok: true, value: 0x2002n });
    expect(vcpus[2].exits.eptViolation).toBe(exits); // slot 2 stayed mapped
    expect(vm.check()).toEqual([]);
    // The backing is still the VMM's: re-added elsewhere, the contents are there.
    vm.addMemslot({ id: 1, baseGfn: 0x3000, pages: 64, hvaPage: 0x30000 });
    expect(vcpus[0].load(0x800000n, 4)).toEqual({ ok: true, value: 0x1000n });
    expect(vm.physical.read(0x3001000, 4).value).toBe(0x1001n); // the MMIO store went nowhere
  });

  it("move zaps the old range; the old GPAs become MMIO, the new ones reach the same memory", () => {
    const { vm, vcpus } = threeVcpus();
    const zapped = vm.mmu.stats.zappedLeaves;
    const remote = vm.stats.remoteFlushes;
    vm.moveMemslot(2, 0x4000);
    expect(vm.mmu.stats.zappedLeaves - zapped).toBe(4);
    expect(vm.stats.remoteFlushes - remote).toBe(3);
    for (let i = 0; i < 4; i++) expect(hostLeaf(vm, 0x1000000 + i * 4096)?.level).toBe(1);
    expect(vcpus[2].load(0x700000n, 4)).toEqual({ ok: true, value: ALL_ONES_4 });
    expect(vcpus[1].load(0x900000n, 4)).toEqual({ ok: true, value: 0x2000n });
    expect(vcpus[1].store(0x900000n, 4, 0x55).ok).toBe(true);
    expect(vm.physical.read(0x4000000, 4).value).toBe(0x55n);
    expect(vm.check()).toEqual([]);
  });

  it("a flush asked for while handling vCPU 1's fault is local to vCPU 1", () => {
    const { vm, vcpus, tables } = threeVcpus();
    // Logging on then off leaves 4 KiB tables; a 2 MiB refault replaces the table (flush).
    vm.addMemslot({ id: 3, baseGfn: 0x8000, pages: 512, hvaPage: 0x80000, hostHugePages: 9 });
    tables.map(0xa00000n, 0x8000000, 4096, x86Leaf());
    tables.map(0xa01000n, 0x8001000, 4096, x86Leaf());
    vm.setMemslotFlags(3, { dirtyLog: true });
    expect(vcpus[1].load(0xa00000n, 4).ok).toBe(true);
    vm.setMemslotFlags(3, { dirtyLog: false });
    const s = { ...vm.stats };
    expect(vcpus[1].load(0xa01000n, 4).ok).toBe(true);
    expect(hostLeaf(vm, 0x8001000)?.level).toBe(2);
    expect(vm.stats.localFlushes - s.localFlushes).toBe(1);
    expect(vm.stats.remoteFlushes - s.remoteFlushes).toBe(2);
    expect(vm.check()).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------

describe("host invalidations (MMU notifiers)", () => {
  function oneSlot(tdp = {}) {
    return makeGuest("4level", { tdp }, (t, vm) => {
      vm.addMemslot({ id: 1, baseGfn: 0x1000, pages: 16, hvaPage: 0x30000 });
      for (let i = 0; i < 4; i++) t.map(BigInt(0x600000 + i * 4096), 0x1000000 + i * 4096, 4096, x86Leaf());
    });
  }

  it("discard: the next guest read sees zeros, never the old data", () => {
    const { vm, vcpu } = oneSlot();
    expect(vcpu.store(0x600100n, 8, 0xdeadbeefn).ok).toBe(true);
    expect(vcpu.store(0x601100n, 8, 0xcafen).ok).toBe(true);
    vm.hostSpace.discard(0x30000, 1);
    expect(hostLeaf(vm, 0x1000000)).toBeNull();
    expect(hostLeaf(vm, 0x1001000)?.level).toBe(1);
    expect(vcpu.load(0x600100n, 8)).toEqual({ ok: true, value: 0n });
    expect(vcpu.load(0x601100n, 8)).toEqual({ ok: true, value: 0xcafen });
    expect(vm.check()).toEqual([]);
  });

  it("migrate: same contents in a new frame; guest writes land in the new frame", () => {
    const { vm, vcpu } = oneSlot();
    expect(vcpu.store(0x600000n, 4, 0x1234).ok).toBe(true);
    const old = vm.hostSpace.peek(0x30000);
    const next = vm.hostSpace.migrate(0x30000);
    expect(next).not.toBe(old);
    expect(vcpu.load(0x600000n, 4)).toEqual({ ok: true, value: 0x1234n });
    expect(vm.mmu.spte.frameOf(hostLeaf(vm, 0x1000000)!.lo, hostLeaf(vm, 0x1000000)!.hi)).toBe(next);
    expect(vcpu.store(0x600004n, 4, 0x5678).ok).toBe(true);
    expect(vm.physical.read(0x1000004, 4).value).toBe(0x5678n);
    expect(vm.check()).toEqual([]);
  });

  it("migrating a guest page-table frame: walks and A/D updates use the new frame", () => {
    const { vm, vcpu, tables } = oneSlot();
    expect(vcpu.load(0x600000n, 4).ok).toBe(true);
    const pte = tables.entryAddress(0x601000n, 1, false);
    vm.hostSpace.migrate(0x10000 + Math.floor(pte / 4096));
    vcpu.tlb.flushAll();
    expect(vcpu.store(0x601000n, 4, 0x99).ok).toBe(true);
    expect(tables.read(pte)[0] & 0x60).toBe(0x60); // A and D set in the new frame
    tables.map(0x604000n, 0x1003000, 4096, x86Leaf());
    expect(vcpu.load(0x604000n, 4).ok).toBe(true);
    expect(vm.check()).toEqual([]);
  });

  it("a discard after aging without A/D bits (mappings zapped by aging) still drops every TLB entry", () => {
    const { vm, vcpu } = oneSlot({ accessedDirty: false });
    expect(vcpu.store(0x600000n, 8, 0xfeedn).ok).toBe(true);
    expect(vm.testAndClearYoung(0x1000, 16)).toBe(1);
    vm.hostSpace.discard(0x30000, 1);
    expect(vcpu.load(0x600000n, 8)).toEqual({ ok: true, value: 0n });
    expect(vm.check()).toEqual([]);
  });

  it("discarding part of a huge-backed slot breaks the 2 MiB mapping into 4 KiB ones", () => {
    const { vm, vcpu } = makeGuest("4level", {}, (t, vm) => {
      vm.addMemslot({ id: 1, baseGfn: 0x1000, pages: 512, hvaPage: 0x200000, hostHugePages: 9 });
      t.map(0x40000000n, 0x1000000, 2 << 20, x86Leaf());
    });
    expect(vcpu.store(0x40003000n, 4, 7).ok).toBe(true);
    expect(vcpu.store(0x40004000n, 4, 8).ok).toBe(true);
    expect(hostLeaf(vm, 0x1000000)?.level).toBe(2);
    vm.hostSpace.discard(0x200003, 1);
    expect(vcpu.load(0x40003000n, 4)).toEqual({ ok: true, value: 0n });
    expect(vcpu.load(0x40004000n, 4)).toEqual({ ok: true, value: 8n });
    expect(hostLeaf(vm, 0x1004000)?.level).toBe(1);
    expect(vm.check()).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------

describe("aging", () => {
  it.each([
    ["EPT with A/D", "intel-sapphirerapids", {}],
    ["EPT without A/D", "intel-sapphirerapids", { accessedDirty: false }],
    ["NPT", "amd-zen4", { format: "npt" as const }],
  ])("%s: testAndClearYoung reports the accessed pages once", (_n, cpu, tdp) => {
    const { vm, vcpu } = makeGuest("4level", { cpu, tdp }, (t, vm) => {
      vm.addMemslot({ id: 1, baseGfn: 0x1000, pages: 16, hvaPage: 0x30000 });
      for (let i = 0; i < 8; i++) t.map(BigInt(0x600000 + i * 4096), 0x1000000 + i * 4096, 4096, x86Leaf());
    });
    for (const i of [0, 2, 5]) expect(vcpu.load(BigInt(0x600000 + i * 4096), 1).ok).toBe(true);
    expect(vm.testAndClearYoung(0x1000, 16)).toBe(3);
    expect(vm.testAndClearYoung(0x1000, 16)).toBe(0);
    vcpu.tlb.flushAll(); // a cached translation sets no accessed flag
    expect(vcpu.store(BigInt(0x600000 + 5 * 4096), 1, 1).ok).toBe(true);
    expect(vm.testAndClearYoung(0x1000, 4)).toBe(0);
    expect(vm.testAndClearYoung(0x1004, 4)).toBe(1);
    expect(vm.testAndClearYoung(0x1000, 16)).toBe(0);
    expect(vm.check()).toEqual([]);
  });
});

describe("aging counts guest pages", () => {
  it("a young 2 MiB leaf counts for its pages inside the range", () => {
    const { vm, vcpu } = makeGuest("4level", {}, (t, vm) => {
      vm.addMemslot({ id: 1, baseGfn: 0x1000, pages: 512, hvaPage: 0x200000, hostHugePages: 9 });
      t.map(0x40000000n, 0x1000000, 2 << 20, x86Leaf());
    });
    expect(vcpu.load(0x40000000n, 1).ok).toBe(true);
    expect(hostLeaf(vm, 0x1000000)?.level).toBe(2);
    expect(vm.testAndClearYoung(0x1000, 512)).toBe(512);
    expect(vm.testAndClearYoung(0x1000, 512)).toBe(0);
    vcpu.tlb.flushAll();
    expect(vcpu.load(0x40000000n, 1).ok).toBe(true);
    expect(vm.testAndClearYoung(0x1100, 16)).toBe(16);
    expect(vm.testAndClearYoung(0x1000, 512)).toBe(0);
  });

  it("a page young through both stolen-bit aliases counts once", () => {
    const { vm, vcpu } = makeGuest("4level", { guestPhysBits: 41, tdp: { stolenBits: [40] } }, (t, vm) => {
      vm.addMemslot({ id: 1, baseGfn: 0x1000, pages: 16, hvaPage: 0x30000 });
      t.map(0x600000n, 0x1000000, 4096, x86Leaf());
      t.map(0x601000n, 2 ** 40 + 0x1000000, 4096, x86Leaf());
    });
    expect(vcpu.load(0x600000n, 1).ok).toBe(true);
    expect(vcpu.load(0x601000n, 1).ok).toBe(true);
    expect(vm.testAndClearYoung(0x1000, 16)).toBe(1);
    expect(vm.testAndClearYoung(0x1000, 16)).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------

describe("stolen GPA bits", () => {
  const SHARED = 2 ** 40;
  function stolenGuest() {
    return makeGuest("4level", { guestPhysBits: 41, tdp: { stolenBits: [40] } }, (t, vm) => {
      vm.addMemslot({ id: 1, baseGfn: 0x1000, pages: 16, hvaPage: 0x30000 });
      vm.addMemslot({ id: 2, baseGfn: 0x2000, pages: 4, hvaPage: 0x40000, flags: { private: true } });
      t.map(0x600000n, 0x1000000, 4096, x86Leaf());
      t.map(0x601000n, SHARED + 0x1000000, 4096, x86Leaf());
      t.map(0x602000n, 0x2000000, 4096, x86Leaf());
      t.map(0x603000n, SHARED + 0x2000000, 4096, x86Leaf());
    });
  }

  it("both aliases reach the same memory; a shared alias of private memory is MMIO", () => {
    const { vm, vcpu } = stolenGuest();
    const dev = recordingDevice(0x7000);
    vm.addMmio(SHARED + 0x2000000, 0x1000, dev.device);
    expect(vcpu.store(0x600010n, 4, 0xa1a1).ok).toBe(true);
    expect(vcpu.load(0x601010n, 4)).toEqual({ ok: true, value: 0xa1a1n });
    expect(vcpu.store(0x601020n, 4, 0xb2b2).ok).toBe(true);
    expect(vcpu.load(0x600020n, 4)).toEqual({ ok: true, value: 0xb2b2n });
    const a = hostLeaf(vm, 0x1000000)!;
    const b = hostLeaf(vm, SHARED + 0x1000000)!;
    expect(vm.mmu.spte.frameOf(a.lo, a.hi)).toBe(vm.mmu.spte.frameOf(b.lo, b.hi));
    // Private slot: direct alias is memory, shared alias goes to the device.
    vm.physical.write(0x2000000, 4, 0x5ec7e7);
    expect(vcpu.load(0x602000n, 4)).toEqual({ ok: true, value: 0x5ec7e7n });
    expect(vcpu.load(0x603008n, 4)).toEqual({ ok: true, value: 0x7008n });
    expect(vcpu.store(0x603000n, 4, 0x66).ok).toBe(true);
    expect(dev.writes).toEqual(["0:4:66"]);
    expect(vm.physical.read(0x2000000, 4).value).toBe(0x5ec7e7n);
    expect(vm.check()).toEqual([]);
  });

  it("zapping, host invalidation and dirty logging reach both aliases", () => {
    const { vm, vcpu } = stolenGuest();
    expect(vcpu.store(0x600000n, 4, 1).ok).toBe(true);
    expect(vcpu.store(0x601000n, 4, 2).ok).toBe(true);
    vm.hostSpace.discard(0x30000, 1);
    expect(hostLeaf(vm, 0x1000000)).toBeNull();
    expect(hostLeaf(vm, SHARED + 0x1000000)).toBeNull();
    expect(vcpu.load(0x601000n, 4)).toEqual({ ok: true, value: 0n });
    expect(vcpu.store(0x600000n, 4, 3).ok).toBe(true);
    // Dirty logging: enabling write-protects both aliases; a write through either is logged.
    vm.setMemslotFlags(1, { dirtyLog: true });
    expect(vm.check()).toEqual([]);
    expect(vcpu.store(0x601004n, 4, 4).ok).toBe(true);
    expect(bitsSet(vm.getDirtyLog(1), 16)).toEqual([0]);
    expect(vm.mmu.spte.isWritable(hostLeaf(vm, SHARED + 0x1000000)!.lo)).toBe(false);
    expect(vcpu.store(0x600008n, 4, 5).ok).toBe(true);
    expect(bitsSet(vm.getDirtyLog(1), 16)).toEqual([0]);
    expect(vcpu.store(0x601008n, 4, 6).ok).toBe(true);
    expect(bitsSet(vm.getDirtyLog(1), 16)).toEqual([0]);
    expect(bitsSet(vm.getDirtyLog(1), 16)).toEqual([]);
    expect(vm.check()).toEqual([]);
    // Deleting the slot removes both aliases.
    vm.deleteMemslot(1);
    expect(hostLeaf(vm, 0x1000000)).toBeNull();
    expect(hostLeaf(vm, SHARED + 0x1000000)).toBeNull();
    expect(vcpu.load(0x601000n, 4)).toEqual({ ok: true, value: ALL_ONES_4 });
    expect(vm.check()).toEqual([]);
    vm.destroy();
    expect(vm.host.framesInUse).toBe(0);
  });

  it("stolen bits are refused with 32-bit and PAE guests, and memslots may not reach them", () => {
    const vm = new Vm({ hostMemory: 16 << 20, guestPhysBits: 41, tdp: { stolenBits: [40] } });
    const v = vm.createVcpu();
    expect(() => v.setState({ ...MODE_REGS["32bit"], cr3: 0n })).toThrow(/stolen/);
    expect(() => v.setState({ ...MODE_REGS.pae, cr3: 0n })).toThrow(CpuStateError);
    expect(() => vm.addMemslot({ id: 0, baseGfn: 2 ** 28 - 1, pages: 2, hvaPage: 0 })).toThrow(
      /stolen attribute bit/,
    );
    // A refused memslot leaves no trace.
    expect(vm.memslots.list()).toEqual([]);
    vm.addMemslot({ id: 0, baseGfn: 2 ** 28 - 4, pages: 2, hvaPage: 0 });
    expect(() => vm.moveMemslot(0, 2 ** 28 - 1)).toThrow(/stolen attribute bit/);
    expect(vm.memslots.get(0).baseGfn).toBe(2 ** 28 - 4);
  });
});

// ---------------------------------------------------------------------------------------------

describe("read-only memslots", () => {
  it("guest writes become MMIO writes that never modify memory; reads work", () => {
    const { vm, vcpu } = makeGuest("4level", {}, (t, vm) => {
      vm.addMemslot({ id: 1, baseGfn: 0x1000, pages: 16, hvaPage: 0x30000 });
      t.map(0x600000n, 0x1000000, 4096, x86Leaf());
      t.map(0x601000n, 0x1001000, 4096, x86Leaf());
    });
    vm.physical.write(0x1000000, 8, 0x0102030405060708n);
    const dev = recordingDevice(0);
    vm.addMmio(0x1000000, 0x2000, dev.device); // the VMM's handler for ROM writes
    expect(vcpu.store(0x601000n, 4, 0x1111).ok).toBe(true); // writable mapping cached
    vm.setMemslotFlags(1, { readOnly: true });
    expect(vm.check()).toEqual([]);
    expect(vcpu.load(0x600000n, 8)).toEqual({ ok: true, value: 0x0102030405060708n });
    expect(vcpu.store(0x600000n, 4, 0xffff).ok).toBe(true);
    expect(vcpu.store(0x601000n, 4, 0x2222).ok).toBe(true);
    expect(dev.writes).toEqual(["0:4:ffff", "1000:4:2222"]);
    expect(vm.physical.read(0x1000000, 8).value).toBe(0x0102030405060708n);
    expect(vm.physical.read(0x1001000, 4).value).toBe(0x1111n);
    expect(vcpu.load(0x601000n, 4)).toEqual({ ok: true, value: 0x1111n });
    expect(vm.mmu.stats.readOnlyWrites).toBe(2);
    expect(dev.reads()).toBe(0);
    expect(vm.check()).toEqual([]);
    // Writable again.
    vm.setMemslotFlags(1, { readOnly: false });
    expect(vcpu.store(0x600000n, 4, 0x3333).ok).toBe(true);
    expect(vm.physical.read(0x1000000, 4).value).toBe(0x3333n);
    expect(dev.writes.length).toBe(2);
    expect(vm.check()).toEqual([]);
  });

  it("check() reports a writable mapping of a read-only memslot", () => {
    const { vm, vcpu } = makeGuest("4level", {}, (t, vm) => {
      vm.addMemslot({ id: 1, baseGfn: 0x1000, pages: 16, hvaPage: 0x30000, flags: { readOnly: true } });
      t.map(0x600000n, 0x1000000, 4096, x86Leaf());
    });
    expect(vcpu.load(0x600000n, 4)).toEqual({ ok: true, value: 0n });
    expect(vcpu.store(0x600000n, 4, 1).ok).toBe(true);
    expect(vm.mmio.unclaimed).toBe(1);
    const e = hostLeaf(vm, 0x1000000)!;
    pokeHostEntry(vm, e.addr, e.lo | 2, e.hi);
    expect(vm.check().join("\n")).toMatch(/writable in read-only memslot 1/);
  });
});

// ---------------------------------------------------------------------------------------------

describe("teardown and refused configurations", () => {
  it("destroy() returns every host frame, tables and memory alike", () => {
    const { vm, vcpu, regs } = makeGuest("4level", { hostMemory: 128 << 20 }, (t, vm) => {
      vm.addMemslot({ id: 1, baseGfn: 0x1000, pages: 1024, hvaPage: 0x200000, hostHugePages: 9 });
      t.map(0x40000000n, 0x1000000, 2 << 20, x86Leaf());
      t.map(0x500000n, 0x3000000, 4096, x86Leaf());
    });
    const v2 = vm.createVcpu();
    v2.setState(regs);
    expect(vcpu.store(0x40000000n, 4, 1).ok).toBe(true);
    expect(v2.load(0x500000n, 4).ok).toBe(true);
    vm.setMemslotFlags(1, { dirtyLog: true });
    expect(vcpu.store(0x40001000n, 4, 1).ok).toBe(true);
    expect(vm.host.framesInUse).toBeGreaterThan(512);
    vm.destroy();
    expect(vm.host.framesInUse).toBe(0);
  });

  it("refuses bad configurations with clear errors", () => {
    const vm = new Vm({ hostMemory: 16 << 20, guestPhysBits: 36 });
    expect(() => vm.addMemslot({ id: 0, baseGfn: 2 ** 24 - 1, pages: 2, hvaPage: 0 })).toThrow(MemslotError);
    expect(() => vm.addMemslot({ id: 0, baseGfn: 2 ** 24 - 1, pages: 2, hvaPage: 0 })).toThrow(
      /guest physical address width/,
    );
    expect(() => new Vm({ guestPhysBits: 53 })).toThrow(/MAXPHYADDR/);
    expect(() => new Vm({ guestPhysBits: 36, tdp: { stolenBits: [36] } })).toThrow(/stolen GPA bit 36/);
    expect(() => new Vm({ cpu: "bochs-tigerlake", tdp: { levels: 5 } })).toThrow(/5-level EPT/);
    expect(() => new Vm({ cpu: "amd-zen4" })).toThrow(/EPT/);
    expect(() => vm.addMemslot({ id: 1, baseGfn: 0, pages: 256, hvaPage: 0x100, hostHugePages: 9 })).toThrow(
      /huge pages/,
    );
    // EPTP walk lengths: 4 always, 5 only where the CPU has 5-level EPT.
    const tiger = cpuModel("bochs-tigerlake");
    expect(() => eptWalker(vm.host, 0x1000n | 6n | (4n << 3n), tiger)).toThrow(/page-walk length 5/);
    expect(() => eptWalker(vm.host, 0x1000n | 6n | (2n << 3n), tiger)).toThrow(/page-walk length 3/);
    expect(() => eptWalker(vm.host, 0x1000n | 6n | (3n << 3n), tiger)).not.toThrow();
    expect(() =>
      eptWalker(vm.host, 0x1000n | 6n | (4n << 3n), cpuModel("intel-sapphirerapids")),
    ).not.toThrow();
    expect(() => eptWalker(vm.host, 0x1000n | 6n | (7n << 3n), cpuModel("intel-sapphirerapids"))).toThrow(
      CpuStateError,
    );
  });

  it("a memslot whose host range cannot be backed by huge pages is refused without a trace", () => {
    const { vm, vcpu } = makeGuest("4level", {}, (t, vm) => {
      vm.addMemslot({ id: 1, baseGfn: 0x1000, pages: 512, hvaPage: 0x200000, hostHugePages: 9 });
      t.map(0x600000n, 0x1000000, 4096, x86Leaf());
    });
    expect(vcpu.store(0x600000n, 4, 9).ok).toBe(true);
    vm.deleteMemslot(1);
    const gen = vm.memslots.generation;
    // The host range is populated already: it cannot become a huge page.
    expect(() =>
      vm.addMemslot({ id: 1, baseGfn: 0x1000, pages: 512, hvaPage: 0x200000, hostHugePages: 9 }),
    ).toThrow(/populated/);
    expect(vm.memslots.list().map((s) => s.id)).toEqual([0]);
    expect(vm.memslots.generation).toBe(gen);
    expect(vcpu.load(0x600000n, 4)).toEqual({ ok: true, value: ALL_ONES_4 });
    vm.addMemslot({ id: 1, baseGfn: 0x1000, pages: 512, hvaPage: 0x200000 });
    expect(vcpu.load(0x600000n, 4)).toEqual({ ok: true, value: 9n });
    expect(vm.check()).toEqual([]);
  });
});

describe("guest tables outside RAM", () => {
  it("a PAE CR3 pointing at MMIO space fails with #GP (CpuStateError), and the vCPU keeps working", () => {
    const { vm, vcpu, tables } = makeGuest("pae", {}, (t) => t.map(0x400000n, 0x200000, 4096, x86Leaf()));
    expect(() => vcpu.writeCr3(0x5000000n)).toThrow(CpuStateError);
    expect(() => vcpu.writeCr3(0x5000000n)).toThrow(/not in RAM/);
    vcpu.writeCr3(tables.cr3);
    expect(vcpu.store(0x400000n, 4, 3)).toEqual({ ok: true, value: 3n });
    expect(vm.check()).toEqual([]);
  });

  it("a guest page table in MMIO space reads as not present: a #PF, never a crash", () => {
    const { vm, vcpu, tables } = makeGuest("4level", {}, (t) => t.map(0x400000n, 0x200000, 4096, x86Leaf()));
    // Point the PDE at a GPA no memslot covers.
    const pde = tables.entryAddress(0x400000n, 2, false);
    const [lo, hi] = tables.read(pde);
    tables.write(pde, ((lo & 0xfff) | 0x5000000) >>> 0, hi);
    vcpu.tlb.flushAll();
    const r = vcpu.load(0x400000n, 4);
    expect(r.ok).toBe(false);
    expect(r).toEqual({ ok: false, fault: { vector: 14, errorCode: 0, address: 0x400000n } });
    expect(vm.mmio.unclaimed).toBe(0);
    expect(vm.check()).toEqual([]);
  });
});
