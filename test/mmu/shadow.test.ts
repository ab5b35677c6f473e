import { describe, expect, it } from "vitest";
import { bumpAllocator, CpuRole, PageTableBuilder, x86Leaf } from "../../src/index.js";
import { Vm } from "../../src/vm/vm.js";

const MODES = {
  "32bit": { cr0: 0x80010011n, cr4: 0x10n, efer: 0n },
  pae: { cr0: 0x80010011n, cr4: 0x20n, efer: 0x800n },
  "4level": { cr0: 0x80010011n, cr4: 0x20n, efer: 0xd00n },
  "5level": { cr0: 0x80010011n, cr4: 0x1020n, efer: 0xd00n },
} as const;

function shadowVm(mode: keyof typeof MODES = "4level", shadow = {}) {
  const vm = new Vm({ mmu: "shadow", hostMemory: 64 << 20, shadow });
  vm.addMemslot({ id: 0, baseGfn: 0, pages: 4096, hvaPage: 0x10000 });
  const regs = MODES[mode];
  const role = CpuRole.from(regs, vm.cpu);
  const tables = new PageTableBuilder(vm.physical, role.format!, bumpAllocator(vm.physical, 0x100, 256));
  const vcpu = vm.createVcpu();
  return { vm, tables, vcpu, regs };
}

describe("shadow MMU", () => {
  for (const mode of Object.keys(MODES) as (keyof typeof MODES)[])
    it(`${mode}: loads and stores through shadow tables built on faults`, () => {
      const { vm, tables, vcpu, regs } = shadowVm(mode);
      tables.map(0x40400000n, 0x200000, 4096, x86Leaf({ user: true }));
      vcpu.setState({ ...regs, cr3: tables.cr3 });
      expect(vcpu.store(0x40400010n, 4, 0x11223344)).toEqual({ ok: true, value: 0x11223344n });
      expect(vcpu.load(0x40400010n, 4)).toEqual({ ok: true, value: 0x11223344n });
      expect(vm.physical.read(0x200010, 4).value).toBe(0x11223344n);
      expect(vcpu.exits.shadowPageFault).toBeGreaterThan(0);
      expect(vm.check()).toEqual([]);
      expect(vcpu.load(0x40800000n, 4)).toMatchObject({ ok: false, fault: { vector: 14 } });
      expect(vm.mmu.stats.injected).toBe(1);
    });

  it("guest large pages are mapped through direct shadow pages", () => {
    const { vm, tables, vcpu, regs } = shadowVm("4level");
    tables.map(0x40000000n, 0x400000, 2 << 20, x86Leaf());
    vcpu.setState({ ...regs, cr3: tables.cr3 });
    vcpu.store(0x40123456n, 4, 7);
    expect(vm.physical.read(0x523456, 4).value).toBe(7n);
    expect(vm.check()).toEqual([]);
  });

  it("a guest write to its own page table traps, is emulated, and takes effect", () => {
    const { vm, tables, vcpu, regs } = shadowVm("4level", { unsync: false });
    tables.map(0x400000n, 0x200000, 4096, x86Leaf());
    tables.map(0x401000n, 0x300000, 4096, x86Leaf());
    // Map the guest's own page table (the PT holding 0x400000's entry) at 0x500000.
    const pte = tables.entryAddress(0x400000n, 1, false);
    const ptGpa = pte - (pte % 4096);
    tables.map(0x500000n, ptGpa, 4096, x86Leaf());
    vcpu.setState({ ...regs, cr3: tables.cr3 });
    vm.physical.write(0x300000, 4, 0xbeef);
    expect(vcpu.load(0x400000n, 4)).toEqual({ ok: true, value: 0n });
    // Repoint 0x400000 at 0x300000 through the guest's own mapping of its page table.
    const leafValue = BigInt(0x300000 | 0x63);
    expect(vcpu.store(BigInt(0x500000 + (pte % 4096)), 8, leafValue).ok).toBe(true);
    expect(vcpu.exits.emulation).toBeGreaterThan(0);
    vcpu.invlpg(0x400000n);
    expect(vcpu.load(0x400000n, 4)).toEqual({ ok: true, value: 0xbeefn });
    expect(vm.check()).toEqual([]);
  });

  it("unsync: a level-1 table the guest writes goes unsync and is resynchronised at CR3 load", () => {
    const { vm, tables, vcpu, regs } = shadowVm("4level", { unsync: true });
    tables.map(0x400000n, 0x200000, 4096, x86Leaf());
    tables.map(0x401000n, 0x300000, 4096, x86Leaf());
    const pte = tables.entryAddress(0x400000n, 1, false);
    tables.map(0x500000n, pte - (pte % 4096), 4096, x86Leaf({ dirty: true }));
    vcpu.setState({ ...regs, cr3: tables.cr3 });
    vm.physical.write(0x300000, 4, 0xbeef);
    expect(vcpu.load(0x400000n, 4)).toEqual({ ok: true, value: 0n });
    expect(vcpu.store(BigInt(0x500000 + (pte % 4096)), 8, BigInt(0x300000 | 0x63)).ok).toBe(true);
    expect(vm.mmu.stats.unsynced).toBeGreaterThan(0);
    vcpu.writeCr3(tables.cr3); // the architectural flush: the MMU resyncs
    expect(vcpu.load(0x400000n, 4)).toEqual({ ok: true, value: 0xbeefn });
    expect(vm.check()).toEqual([]);
  });

  it("context switches reuse cached roots", () => {
    const { vm, tables, vcpu, regs } = shadowVm("4level");
    tables.map(0x400000n, 0x200000, 4096, x86Leaf());
    const role = CpuRole.from(regs, vm.cpu);
    const other = new PageTableBuilder(vm.physical, role.format!, bumpAllocator(vm.physical, 0x300, 64));
    other.map(0x400000n, 0x210000, 4096, x86Leaf());
    vcpu.setState({ ...regs, cr3: tables.cr3 });
    vm.physical.write(0x210000, 4, 2);
    vm.physical.write(0x200000, 4, 1);
    for (let i = 0; i < 4; i++) {
      vcpu.writeCr3(tables.cr3);
      expect(vcpu.load(0x400000n, 4)).toEqual({ ok: true, value: 1n });
      vcpu.writeCr3(other.cr3);
      expect(vcpu.load(0x400000n, 4)).toEqual({ ok: true, value: 2n });
    }
    expect(vm.mmu.stats.rootBuilds).toBe(2);
    expect(vm.mmu.stats.rootHits).toBeGreaterThan(4);
    expect(vm.check()).toEqual([]);
  });

  it("MMIO through shadow paging, with the fast path on repeat", () => {
    const { vm, tables, vcpu, regs } = shadowVm("4level");
    const seen: bigint[] = [];
    vm.addMmio(0xfee00000, 0x1000, { read: () => 0x55n, write: (_o, _s, v) => void seen.push(v) });
    tables.map(0x600000n, 0xfee00000, 4096, x86Leaf());
    vcpu.setState({ ...regs, cr3: tables.cr3 });
    expect(vcpu.load(0x600010n, 4)).toEqual({ ok: true, value: 0x55n });
    expect(vcpu.store(0x600010n, 4, 9).ok).toBe(true);
    expect(seen).toEqual([9n]);
    expect(vm.mmu.stats.mmioFast).toBeGreaterThan(0);
    expect(vm.check()).toEqual([]);
  });

  it("stays within its page bound by reclaiming", () => {
    const { vm, tables, vcpu, regs } = shadowVm("4level", { maxPages: 16 });
    for (let i = 0; i < 40; i++)
      tables.map(BigInt(0x40000000 + i * 0x200000), 0x200000 + i * 4096, 4096, x86Leaf());
    vcpu.setState({ ...regs, cr3: tables.cr3 });
    for (let i = 0; i < 40; i++) expect(vcpu.store(BigInt(0x40000000 + i * 0x200000), 4, i).ok).toBe(true);
    for (let i = 0; i < 40; i++)
      expect(vcpu.load(BigInt(0x40000000 + i * 0x200000), 4)).toEqual({ ok: true, value: BigInt(i) });
    expect(vm.mmu.pages.count).toBeLessThanOrEqual(16);
    expect(vm.mmu.stats.reclaimed).toBeGreaterThan(0);
    expect(vm.check()).toEqual([]);
  });

  it("destroy returns every host frame", () => {
    const { vm, tables, vcpu, regs } = shadowVm("pae");
    tables.map(0x40400000n, 0x200000, 4096, x86Leaf());
    vcpu.setState({ ...regs, cr3: tables.cr3 });
    vcpu.store(0x40400000n, 4, 1);
    vm.destroy();
    expect(vm.host.framesInUse).toBe(0);
  });
});
