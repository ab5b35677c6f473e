/**
 * Hostile guests against the shadow MMUs: the host must stay within its bounds and
 * consistent (check() holds, every frame comes back), and the guest must get
 * architectural behaviour (or, paravirtual, be stopped with a reason).
 */
import { describe, expect, it } from "vitest";
import { bumpAllocator, CpuRole, PageTableBuilder, x86Leaf } from "../../src/index.js";
import { GuestStoppedError, type ShadowMmu } from "../../src/mmu/shadow/shadow-mmu.js";
import { Vm } from "../../src/vm/vm.js";

const REGS = { cr0: 0x80010011n, cr4: 0x20n, efer: 0xd00n };

function vmWith(mmu: "shadow" | "shadow-pv", maxPages = 64) {
  const vm = new Vm({ mmu, hostMemory: 64 << 20, shadow: { maxPages } });
  vm.addMemslot({ id: 0, baseGfn: 0, pages: 4096, hvaPage: 0x10000 });
  vm.addMemslot({ id: 1, baseGfn: 0x2000, pages: 16, hvaPage: 0x20000, flags: { readOnly: true } });
  const role = CpuRole.from(REGS, vm.cpu);
  const tables = new PageTableBuilder(vm.physical, role.format!, bumpAllocator(vm.physical, 0x100, 0x400));
  const vcpu = vm.createVcpu();
  return { vm, mmu: vm.hostMmu as ShadowMmu, tables, vcpu };
}

function finish(vm: Vm): void {
  expect(vm.check()).toEqual([]);
  vm.destroy();
  expect(vm.host.framesInUse).toBe(0);
}

describe("hostile guests under shadow paging", () => {
  it("self-referencing root: the PML4 mapped through itself at every level", () => {
    const { vm, tables, vcpu } = vmWith("shadow");
    const root = tables.rootGfn * 4096;
    tables.write(root + 256 * 8, root | 0x7, 0);
    tables.map(0x400000n, 0x200000, 4096, x86Leaf());
    vcpu.setState({ ...REGS, cr3: tables.cr3 });
    // 0xffff804020100000: indexes 256,256,256,256 → the PML4 itself as data; entry 256 is the loop.
    const rec = 0xffff_8040_2010_0000n;
    const self = vcpu.load(rec + 256n * 8n, 8);
    expect(self.ok && self.value & ~0x60n).toBe(BigInt(root | 0x7));
    // Writing through it rewrites the guest's own root: trapped and emulated.
    expect(vcpu.store(rec + 8n, 8, 0n).ok).toBe(true);
    expect(vcpu.load(0x400000n, 4).ok).toBe(true);
    finish(vm);
  });

  it("one table page used at several levels", () => {
    const { vm, tables, vcpu } = vmWith("shadow");
    tables.map(0x400000n, 0x200000, 4096, x86Leaf());
    const pdpt = tables.entryAddress(0x400000n, 3, false);
    const pdptGpa = pdpt - (pdpt % 4096);
    // Link the PDPT page again as a PD (and so its entries as PTs): the same frame at two levels.
    const pde = tables.entryAddress(0x80000000n, 3, true); // creates PDPT[2] → new PD
    tables.write(pde, pdptGpa | 0x7, 0);
    vcpu.setState({ ...REGS, cr3: tables.cr3 });
    expect(vcpu.load(0x400000n, 4).ok).toBe(true);
    vcpu.load(0x80000000n, 4); // walks the PDPT page as a PD: whatever it finds, architecturally
    expect(vm.check()).toEqual([]);
    finish(vm);
  });

  it("tables in MMIO or read-only memory: the guest sees what the walk sees", () => {
    const { vm, tables, vcpu } = vmWith("shadow");
    tables.map(0x400000n, 0x200000, 4096, x86Leaf());
    const pml4e = tables.entryAddress(0x400000n, 4, false);
    const [lo] = tables.read(pml4e);
    // PDPT in MMIO space: the walk finds no RAM there → not-present #PF.
    tables.write(pml4e, ((lo & 0xfff) | 0xfee00000) >>> 0, 0);
    vcpu.setState({ ...REGS, cr3: tables.cr3 });
    expect(vcpu.load(0x400000n, 4)).toMatchObject({ ok: false, fault: { vector: 14, errorCode: 0 } });
    // A page table in the read-only slot: readable, its A bits cannot be set, accesses work.
    tables.write(pml4e, lo, 0);
    vcpu.writeCr3(tables.cr3);
    const pde = tables.entryAddress(0x400000n, 2, false);
    const ro = 0x2000 * 4096;
    vm.hostSpace.frameOf(0x20000); // populate, then copy the PT there through the host side
    const pt = tables.read(pde)[0] & 0xfffff000;
    const words = vm.physical.read(pt, 8).value;
    const h = vm.host.frame(vm.hostSpace.frameOf(0x20000));
    h.words[h.base] = Number(words & 0xffffffffn) | 0x20;
    tables.write(pde, (ro | 0x27) >>> 0, 0);
    vcpu.writeCr3(tables.cr3);
    expect(vcpu.load(0x400000n, 4).ok).toBe(true);
    // A guest write to the read-only table is an MMIO write (dropped), never a memory change.
    tables.map(0x600000n, ro, 4096, x86Leaf());
    vcpu.writeCr3(tables.cr3);
    expect(vcpu.store(0x600000n, 4, 0).ok).toBe(true);
    expect(vm.physical.read(ro, 4).value & 0xfffff000n).toBe(0x200000n);
    finish(vm);
  });

  it("flooding writes to a page table unshadow it", () => {
    const { vm, mmu, tables, vcpu } = vmWith("shadow");
    tables.map(0x400000n, 0x200000, 4096, x86Leaf());
    const pte = tables.entryAddress(0x400000n, 1, false);
    tables.map(0x500000n, pte - (pte % 4096), 4096, x86Leaf());
    vcpu.setState({ ...REGS, cr3: tables.cr3 });
    vcpu.load(0x400000n, 4);
    // Rewrite an unrelated entry of the shadowed page over and over.
    for (let i = 0; i < 20; i++)
      expect(vcpu.store(BigInt(0x500000 + 8 * 100), 8, BigInt(i << 12)).ok).toBe(true);
    expect(mmu.stats.floodUnshadows + mmu.stats.unsynced).toBeGreaterThan(0);
    expect(vcpu.load(0x400000n, 4).ok).toBe(true);
    finish(vm);
  });

  it("tens of thousands of tiny mappings against a small shadow-page bound", () => {
    const { vm, mmu, tables, vcpu } = vmWith("shadow", 24);
    // 900 page tables (one mapping each, every 2 MiB), so every access needs a new shadow PT.
    for (let i = 0; i < 900; i++)
      tables.map(BigInt(0x1_0000_0000 + i * 0x200000), 0x200000 + (i % 512) * 4096, 4096, x86Leaf());
    vcpu.setState({ ...REGS, cr3: tables.cr3 });
    for (let round = 0; round < 3; round++)
      for (let i = 0; i < 900; i += 3)
        expect(vcpu.load(BigInt(0x1_0000_0000 + i * 0x200000), 4).ok).toBe(true);
    expect(mmu.pages.count).toBeLessThanOrEqual(24);
    expect(mmu.stats.reclaimed).toBeGreaterThan(100);
    finish(vm);
  });
});

describe("hostile paravirtual guests", () => {
  it("a hypercall with an entry outside guest memory stops the guest cleanly", () => {
    const { vm, mmu, tables, vcpu } = vmWith("shadow-pv");
    tables.map(0x400000n, 0x200000, 4096, x86Leaf());
    vcpu.setState({ ...REGS, cr3: tables.cr3 });
    expect(vcpu.load(0x400000n, 4).ok).toBe(true);
    const pte = tables.entryAddress(0x400000n, 1, false);
    expect(() =>
      vcpu.hypercall({
        kind: "set-entry",
        tableGpa: pte - (pte % 4096),
        index: (pte % 4096) / 8,
        level: 1,
        lo: 0x7000_0003,
        hi: 0x12,
      }),
    ).toThrow(GuestStoppedError);
    expect(mmu.stopReason).toMatch(/outside guest memory/);
    expect(() => vcpu.hypercall({ kind: "flush", all: true })).toThrow(/stopped/);
    finish(vm);
  });

  it("reserved bits in an announced entry, and a table outside memory met on a fault, stop the guest", () => {
    const a = vmWith("shadow-pv");
    a.tables.map(0x400000n, 0x200000, 4096, x86Leaf());
    a.vcpu.setState({ ...REGS, cr3: a.tables.cr3 });
    // PS in a PML4E is reserved.
    expect(() =>
      a.vcpu.hypercall({
        kind: "set-entry",
        tableGpa: a.tables.rootGfn * 4096,
        index: 3,
        level: 4,
        lo: 0x200087,
        hi: 0,
      }),
    ).toThrow(/reserved bits/);
    finish(a.vm);
    const b = vmWith("shadow-pv");
    b.tables.map(0x400000n, 0x200000, 4096, x86Leaf());
    const pml4e = b.tables.entryAddress(0x400000n, 4, false);
    b.tables.write(pml4e, 0x7000_0007, 0);
    b.vcpu.setState({ ...REGS, cr3: b.tables.cr3 });
    expect(() => b.vcpu.load(0x400000n, 4)).toThrow(GuestStoppedError);
    expect((b.vm.hostMmu as ShadowMmu).stopReason).toMatch(/outside guest memory/);
    finish(b.vm);
  });

  it("hypercalls are refused on a transparent shadow VM", () => {
    const { vm, vcpu, tables } = vmWith("shadow");
    vcpu.setState({ ...REGS, cr3: tables.cr3 });
    expect(() => vcpu.hypercall({ kind: "flush", all: false })).toThrow(/shadow-pv/);
    finish(vm);
  });
});
