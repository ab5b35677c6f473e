/**
 * The optional hardware caches: paging-structure caches (guest dimension, and the 1-D walk
 * of shadow tables) and the nested TLB (guest-table references of a 2-D walk). They cut
 * memory references exactly as expected, and change no result.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { bumpAllocator, CpuRole, PageTableBuilder, x86Leaf } from "../../src/index.js";
import { Vm, type VmOptions } from "../../src/vm/vm.js";

const REGS = { cr0: 0x80010011n, cr4: 0x20n, efer: 0xd00n };

function setup(o: VmOptions) {
  const vm = new Vm({ hostMemory: 64 << 20, ...o });
  vm.addMemslot({ id: 0, baseGfn: 0, pages: 4096, hvaPage: 0x10000 });
  const role = CpuRole.from(REGS, vm.cpu);
  const tables = new PageTableBuilder(vm.physical, role.format!, bumpAllocator(vm.physical, 0x100, 256));
  for (let i = 0; i < 16; i++) tables.map(BigInt(0x400000 + i * 4096), 0x200000 + i * 4096, 4096, x86Leaf());
  const vcpu = vm.createVcpu();
  vcpu.setState({ ...REGS, cr3: tables.cr3 });
  return { vm, tables, vcpu };
}

/** References of one completed walk of `va` with the TLB emptied first. */
function refsOf(vcpu: ReturnType<typeof setup>["vcpu"], va: bigint): number {
  vcpu.tlb.flushAll();
  const before = vcpu.stats.completedWalkRefs;
  expect(vcpu.load(va, 4).ok).toBe(true);
  return vcpu.stats.completedWalkRefs - before;
}

describe("paging-structure caches and the nested TLB", () => {
  it("4-level guest on 4-level EPT: 24 references, 9 with a PDE-cache hit, 5 with the nested TLB too", () => {
    const plain = setup({});
    plain.vcpu.load(0x400000n, 4);
    expect(refsOf(plain.vcpu, 0x401000n)).toBe(24);

    const psc = setup({ caches: { pagingStructure: 32 } });
    psc.vcpu.load(0x400000n, 4);
    expect(refsOf(psc.vcpu, 0x401000n)).toBe(1 + 4 + 4); // the PTE, its table through EPT, the final address
    expect(psc.vcpu.psc!.hits[2]).toBeGreaterThan(0);

    const both = setup({ caches: { pagingStructure: 32, nestedTlb: 64 } });
    both.vcpu.load(0x400000n, 4);
    expect(refsOf(both.vcpu, 0x401000n)).toBe(1 + 4);
    // Without the PSC, the nested TLB alone: 4 guest entries + the final address.
    const ntlb = setup({ caches: { nestedTlb: 64 } });
    ntlb.vcpu.load(0x400000n, 4);
    expect(refsOf(ntlb.vcpu, 0x401000n)).toBe(4 + 4);
  });

  it("shadow paging: a PDE-cache hit leaves one reference", () => {
    const s = setup({ mmu: "shadow", caches: { pagingStructure: 32 } });
    s.vcpu.load(0x400000n, 4);
    s.vcpu.load(0x401000n, 4);
    expect(refsOf(s.vcpu, 0x401000n)).toBe(1);
    expect(refsOf(setupPlainShadow(), 0x401000n)).toBe(4);
  });

  it("INVLPG drops cached upper levels: a changed PDE is seen", () => {
    const { vm, tables, vcpu } = setup({ caches: { pagingStructure: 32, nestedTlb: 64 } });
    vm.physical.write(0x200000, 4, 1);
    vm.physical.write(0x300000, 4, 2);
    expect(vcpu.load(0x400000n, 4)).toEqual({ ok: true, value: 1n });
    // Point the PDE at a new page table mapping 0x400000 → 0x300000.
    const role = CpuRole.from(REGS, vm.cpu);
    const other = new PageTableBuilder(vm.physical, role.format!, bumpAllocator(vm.physical, 0x400, 16));
    other.map(0x400000n, 0x300000, 4096, x86Leaf());
    const pde = tables.entryAddress(0x400000n, 2, false);
    const newPde = other.read(other.entryAddress(0x400000n, 2, false));
    tables.write(pde, newPde[0], newPde[1]);
    vcpu.invlpg(0x400000n);
    expect(vcpu.load(0x400000n, 4)).toEqual({ ok: true, value: 2n });
    expect(vm.check()).toEqual([]);
  });

  it("caches never change what an access returns (random accesses and remaps)", () => {
    const op = fc.oneof(
      fc.record({ k: fc.constant("load" as const), p: fc.nat(15) }),
      fc.record({ k: fc.constant("store" as const), p: fc.nat(15), v: fc.nat(0xffff) }),
      fc.record({ k: fc.constant("remap" as const), p: fc.nat(15), f: fc.nat(31) }),
      fc.record({ k: fc.constant("flush" as const) }),
    );
    fc.assert(
      fc.property(
        fc.constantFrom<VmOptions["mmu"]>("tdp", "shadow"),
        fc.array(op, { maxLength: 40 }),
        (mmu, ops) => {
          const a = setup({ mmu });
          const b = setup({ mmu, caches: { pagingStructure: 4, nestedTlb: 4 } });
          for (const o of ops) {
            const results = [a, b].map(({ vm, tables, vcpu }) => {
              const va = BigInt(0x400000 + (o.k === "flush" ? 0 : o.p) * 4096);
              if (o.k === "load") return vcpu.load(va, 4);
              if (o.k === "store") return vcpu.store(va, 4, o.v);
              if (o.k === "remap") {
                // The PTE changes behind the MMU's back (written from the host side), then the
                // guest INVLPGs: under shadow paging INVLPG drops the shadow entry too.
                const pte = tables.entryAddress(va, 1, false);
                tables.write(pte, ((0x200000 + o.f * 4096) | 0x67) >>> 0, 0);
                vcpu.invlpg(va);
                vcpu.writeCr3(tables.cr3);
                return vm.check();
              }
              vcpu.writeCr3(tables.cr3);
              return null;
            });
            expect(results[1]).toEqual(results[0]);
          }
        },
      ),
      { numRuns: 80 },
    );
  });
});

function setupPlainShadow() {
  const s = setup({ mmu: "shadow" });
  s.vcpu.load(0x400000n, 4);
  return s.vcpu;
}
