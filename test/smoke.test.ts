import { describe, expect, it } from "vitest";
import {
  bumpAllocator,
  CpuRole,
  cpuModel,
  GuestPhysical,
  HostMemory,
  Memslots,
  PageTableBuilder,
  translate,
  x86Leaf,
} from "../src/index.js";

describe("smoke", () => {
  it("4-level walk", () => {
    const physical = new GuestPhysical(new Memslots(), new HostMemory(64 << 20));
    physical.memslots.add({ id: 0, baseGfn: 0, pages: 4096, hvaPage: 0x10000 });
    const regs = { cr0: 0x80010001n, cr4: 0x20n, efer: 0xd00n };
    const role = CpuRole.from(regs, cpuModel("qemu-max"));
    const tables = new PageTableBuilder(physical, role.format!, bumpAllocator(physical, 0x100, 64));
    tables.map(0x400000n, 0x200000, 4096, x86Leaf({ user: true }));
    const t = translate(physical, { ...regs, cr3: tables.cr3 }, 0x400123n, { cpu: "qemu-max" });
    expect(t.ok).toBe(true);
    expect(t.physical).toBe(0x200123n);
    expect(t.path.length).toBe(4);
    expect(t.path.every((p) => (p.after & 0x20n) !== 0n)).toBe(true);
  });
});
