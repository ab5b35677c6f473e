import { describe, expect, it } from "vitest";
import { bumpAllocator, CpuRole, cpuModel, PageTableBuilder, x86Leaf } from "../../src/index.js";
import { ACCESS_FAULTED, ACCESS_OK } from "../../src/vm/vcpu.js";
import { Vm, type VmOptions } from "../../src/vm/vm.js";

const REGS = { cr0: 0x80010001n, cr4: 0x20n, efer: 0xd00n };

function guestVm(o: VmOptions = {}) {
  const vm = new Vm({ hostMemory: 64 << 20, ...o });
  vm.addMemslot({ id: 0, baseGfn: 0, pages: 4096, hvaPage: 0x10000 });
  const role = CpuRole.from(REGS, vm.cpu);
  const tables = new PageTableBuilder(vm.physical, role.format!, bumpAllocator(vm.physical, 0x100, 256));
  const vcpu = vm.createVcpu();
  return { vm, tables, vcpu };
}

describe("TDP: the access path", () => {
  it("loads and stores through guest tables and EPT built on demand", () => {
    const { vm, tables, vcpu } = guestVm();
    tables.map(0x400000n, 0x200000, 4096, x86Leaf({ user: true }));
    vcpu.setState({ ...REGS, cr3: tables.cr3 });
    expect(vcpu.store(0x400010n, 8, 0x1122334455667788n)).toEqual({ ok: true, value: 0x1122334455667788n });
    expect(vcpu.load(0x400010n, 8)).toEqual({ ok: true, value: 0x1122334455667788n });
    expect(vm.physical.read(0x200010, 8).value).toBe(0x1122334455667788n);
    expect(vcpu.exits.eptViolation).toBeGreaterThan(0);
    expect(vm.check()).toEqual([]);
    // Now cached: no more walks.
    const walks = vcpu.stats.walks;
    vcpu.load(0x400018n, 4);
    expect(vcpu.stats.walks).toBe(walks);
  });

  it("read32/write32: the hot path agrees with load/store, faults set status", () => {
    const { vm, tables, vcpu } = guestVm();
    tables.map(0x400000n, 0x200000, 4096, x86Leaf());
    vcpu.setState({ ...REGS, cr3: tables.cr3 });
    const r = vcpu.cpuRole.accessFor("read");
    const w = vcpu.cpuRole.accessFor("write");
    expect(vcpu.write32(0, 0x400008, w, 0xdeadbeef)).toBe(true);
    expect(vcpu.read32(0, 0x400008, r) >>> 0).toBe(0xdeadbeef);
    expect(vcpu.load(0x400008n, 4)).toEqual({ ok: true, value: 0xdeadbeefn });
    expect(vm.physical.read(0x200008, 4).value).toBe(0xdeadbeefn);
    vcpu.read32(0, 0x900000, r);
    expect(vcpu.status).toBe(ACCESS_FAULTED);
    expect(vcpu.fault).toMatchObject({ vector: 14, errorCode: 0 });
    vcpu.read32(0, 0x400000, r);
    expect(vcpu.status).toBe(ACCESS_OK);
    expect(() => vcpu.read32(0, 0x400001, r)).toThrow(/aligned/);
  });

  it("MOV to CR4 toggling PGE drops global entries; MOV to CR3 keeps them", () => {
    const { tables, vcpu } = guestVm();
    tables.map(0x400000n, 0x200000, 4096, x86Leaf({ global: true }));
    vcpu.setState({ ...REGS, cr4: 0xa0n, cr3: tables.cr3 });
    vcpu.load(0x400000n, 1);
    expect(vcpu.tlb.entriesInUse).toBe(1);
    vcpu.writeCr3(tables.cr3);
    expect(vcpu.tlb.entriesInUse).toBe(1); // global survives MOV CR3
    vcpu.writeControl("cr4", 0x20n);
    expect(vcpu.tlb.entriesInUse).toBe(0);
  });

  it("counts 24 memory references for a 4-level guest on 4-level EPT", () => {
    const { tables, vcpu } = guestVm();
    tables.map(0x400000n, 0x200000, 4096, x86Leaf());
    vcpu.setState({ ...REGS, cr3: tables.cr3 });
    vcpu.load(0x400000n, 1); // warms EPT and the guest's A bits
    vcpu.tlb.flushAll();
    const before = { walks: vcpu.stats.completedWalks, refs: vcpu.stats.completedWalkRefs };
    vcpu.load(0x400000n, 1);
    expect(vcpu.stats.completedWalks - before.walks).toBe(1);
    expect(vcpu.stats.completedWalkRefs - before.refs).toBe(24);
  });

  it("returns guest page faults as values", () => {
    const { tables, vcpu } = guestVm();
    tables.map(0x400000n, 0x200000, 4096, x86Leaf({ writable: false }));
    vcpu.setState({ ...REGS, cr3: tables.cr3 });
    const r = vcpu.store(0x400000n, 1, 1);
    expect(r).toEqual({ ok: false, fault: { vector: 14, errorCode: 0x3, address: 0x400000n } });
    expect(vcpu.load(0x800000n, 1)).toMatchObject({ ok: false, fault: { vector: 14, errorCode: 0 } });
  });

  it("MMIO: accesses reach the device, not memory, and later take the fast MMIO path", () => {
    const { vm, tables, vcpu } = guestVm();
    const log: string[] = [];
    vm.addMmio(0xfee00000, 0x1000, {
      read: (off, size) => BigInt(0xab00 + off + size),
      write: (off, size, v) => void log.push(`${off}:${size}:${v}`),
    });
    tables.map(0x500000n, 0xfee00000, 4096, x86Leaf());
    vcpu.setState({ ...REGS, cr3: tables.cr3 });
    expect(vcpu.load(0x500010n, 4)).toEqual({ ok: true, value: 0xab14n });
    expect(vcpu.store(0x500020n, 4, 7)).toEqual({ ok: true, value: 7n });
    expect(log).toEqual(["32:4:7"]);
    expect(vm.mmu.stats.mmioFast).toBeGreaterThan(0);
    expect(vm.check()).toEqual([]);
  });

  it("dirty logging: every written page appears in the next log, and is re-protected", () => {
    const { vm, tables, vcpu } = guestVm();
    for (let i = 0; i < 8; i++) tables.map(BigInt(0x400000 + i * 4096), 0x200000 + i * 4096, 4096, x86Leaf());
    vcpu.setState({ ...REGS, cr3: tables.cr3 });
    for (let i = 0; i < 8; i++) vcpu.store(BigInt(0x400000 + i * 4096), 1, 1);
    vm.setMemslotFlags(0, { dirtyLog: true });
    vm.getDirtyLog(0); // start clean
    vcpu.store(0x401000n, 1, 2);
    vcpu.store(0x403004n, 4, 2);
    const log = vm.getDirtyLog(0);
    const page = (g: number) => (log[g >>> 5] >>> (g & 31)) & 1;
    expect(page(0x201)).toBe(1);
    expect(page(0x203)).toBe(1);
    expect(page(0x202)).toBe(0);
    expect(vm.check()).toEqual([]);
    vcpu.store(0x401000n, 1, 3);
    expect((vm.getDirtyLog(0)[0x201 >>> 5] >>> (0x201 & 31)) & 1).toBe(1);
    expect(vm.mmu.stats.fastWriteFaults).toBeGreaterThan(0);
  });

  it("huge pages where the host backs them, split for dirty logging", () => {
    const vm = new Vm({ hostMemory: 64 << 20 });
    vm.addMemslot({ id: 0, baseGfn: 0, pages: 2048, hvaPage: 0x200000, hostHugePages: 9 });
    const role = CpuRole.from(REGS, vm.cpu);
    const tables = new PageTableBuilder(vm.physical, role.format!, bumpAllocator(vm.physical, 0x100, 64));
    tables.map(0x40000000n, 0x400000, 2 << 20, x86Leaf());
    const vcpu = vm.createVcpu();
    vcpu.setState({ ...REGS, cr3: tables.cr3 });
    expect(vcpu.store(0x40001000n, 4, 5).ok).toBe(true);
    expect(vm.mmu.stats.hugeLeaves).toBeGreaterThan(0);
    expect(vm.check()).toEqual([]);
    vm.setMemslotFlags(0, { dirtyLog: true });
    expect(vm.check()).toEqual([]);
    expect(vcpu.store(0x40002000n, 4, 6).ok).toBe(true);
    expect(vcpu.load(0x40001000n, 4)).toEqual({ ok: true, value: 5n });
    expect(vm.check()).toEqual([]);
  });

  it("destroying the VM returns every host frame", () => {
    const { vm, tables, vcpu } = guestVm();
    tables.map(0x400000n, 0x200000, 4096, x86Leaf());
    vcpu.setState({ ...REGS, cr3: tables.cr3 });
    vcpu.store(0x400000n, 8, 1);
    vm.destroy();
    expect(vm.host.framesInUse).toBe(0);
  });

  it("refuses bad configurations", () => {
    expect(() => new Vm({ cpu: "bochs-tigerlake", tdp: { levels: 5 } })).toThrow(/5-level/);
    expect(() => new Vm({ tdp: { stolenBits: [60] } })).toThrow(/stolen/);
    const vm = new Vm({ hostMemory: 16 << 20, guestPhysBits: 36, tdp: { stolenBits: [35] } });
    expect(() => vm.addMemslot({ id: 0, baseGfn: 2 ** 24, pages: 1, hvaPage: 0 })).toThrow(/address width/);
    const v = vm.createVcpu();
    expect(() => v.setState({ cr0: 0x80000011n, cr4: 0n, cr3: 0n })).toThrow(/stolen/);
    expect(cpuModel("qemu-max").ept).toBeUndefined();
    expect(() => new Vm({ cpu: "qemu-max" })).toThrow(/EPT/);
  });
});
