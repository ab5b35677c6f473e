/**
 * A hostile guest with a million tiny (4 KiB) mappings against a small shadow-page bound:
 * every access needs shadow pages the bound does not allow to keep, so the MMU reclaims
 * constantly. The host must stay within its bound and consistent; the guest must read
 * exactly what its tables say.
 */
import { expect, it } from "vitest";
import { bumpAllocator, CpuRole, PageTableBuilder, type ShadowMmu } from "../../src/index.js";
import { Vm } from "../../src/vm/vm.js";

const REGS = { cr0: 0x80010011n, cr4: 0x20n, efer: 0xd00n };
const MAPPINGS = 1 << 20; // 4 GiB of linear space in 4 KiB pages
const BASE = 0x1_0000_0000;
const FRAMES = 64; // the data frames every mapping points into

it("a million 4 KiB mappings against a 64-page shadow bound", () => {
  const vm = new Vm({ mmu: "shadow", hostMemory: 64 << 20, shadow: { maxPages: 64 } });
  vm.addMemslot({ id: 0, baseGfn: 0, pages: 0x1000, hvaPage: 0x10000 }); // data frames + upper tables
  vm.addMemslot({ id: 1, baseGfn: 0x1000, pages: 2048 + 8, hvaPage: 0x20000 }); // the 2,048 page tables
  const role = CpuRole.from(REGS, vm.cpu);
  const tables = new PageTableBuilder(vm.physical, role.format!, bumpAllocator(vm.physical, 0x100, 0x100));
  // The PDEs point at 2,048 page tables, which are filled directly (the builder would be slow).
  for (let t = 0; t < MAPPINGS / 512; t++) {
    const pde = tables.entryAddress(BigInt(BASE + t * 0x200000), 2, true);
    const pt = (0x1000 + t) * 4096;
    tables.write(pde, (pt | 0x7) >>> 0, 0);
    const words = vm.physical.frameWords(0x1000 + t)!;
    const base = vm.physical.frameBase;
    for (let i = 0; i < 512; i++)
      words[base + 2 * i] = (((0x10 + ((t * 512 + i) % FRAMES)) << 12) | 0x7) >>> 0;
  }
  for (let f = 0; f < FRAMES; f++) vm.physical.write((0x10 + f) * 4096, 4, 0x5000 + f);
  const vcpu = vm.createVcpu();
  vcpu.setState({ ...REGS, cr3: tables.cr3 });
  const mmu = vm.hostMmu as ShadowMmu;
  const access = vcpu.cpuRole.accessFor("read");
  let wrong = 0;
  for (let p = 0; p < MAPPINGS; p++) {
    const va = BASE + p * 4096;
    const v = vcpu.read32(Math.floor(va / 2 ** 32), va >>> 0, access);
    if (vcpu.status !== 0 || v !== 0x5000 + (p % FRAMES)) wrong++;
    if (mmu.pages.count > 64) throw new Error(`the shadow-page bound was exceeded: ${mmu.pages.count} pages`);
  }
  expect(wrong).toBe(0);
  expect(mmu.stats.reclaimed).toBeGreaterThan(1000);
  expect(vm.check()).toEqual([]);
  vm.destroy();
  expect(vm.host.framesInUse).toBe(0);
});
