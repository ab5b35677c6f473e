import { describe, expect, it } from "vitest";
import {
  CpuRole,
  cpuModel,
  enumerateMappings,
  type FrameSource,
  type GuestPhysical,
  type Mapping,
  type PageTableBuilder,
  pageTableRoot,
  protectionRanges,
  QemuTlbFormatter,
  qemuMemLine,
  translate,
  x86Leaf,
} from "../../src/index.js";
import { guestMemory, REGS, type Regs, tables } from "../fixtures/elf-core.js";

const CPU = "qemu-max";

function setup(regs: Regs, cpu = CPU): { physical: GuestPhysical; t: PageTableBuilder; role: CpuRole } {
  const physical = guestMemory(2048);
  const t = tables(physical, regs, 0x100, 512, cpu);
  return { physical, t, role: CpuRole.from(regs, cpuModel(cpu)) };
}

function list(
  memory: FrameSource,
  role: CpuRole,
  cr3: bigint,
): { va: bigint; pa: number; size: number; m: Mapping }[] {
  // The generator reuses one record: copy each one as it comes.
  const out: { va: bigint; pa: number; size: number; m: Mapping }[] = [];
  for (const m of enumerateMappings(memory, role, cr3))
    out.push({
      va: m.va,
      pa: m.physical,
      size: m.pageSize,
      m: Object.assign(Object.create(Object.getPrototypeOf(m)), m),
    });
  return out;
}

function tlb(memory: FrameSource, role: CpuRole, cr3: bigint): string {
  const f = new QemuTlbFormatter();
  let s = "";
  for (const m of enumerateMappings(memory, role, cr3)) s += f.line(m);
  return s;
}

function mem(memory: FrameSource, role: CpuRole, cr3: bigint): string {
  let s = "";
  for (const r of protectionRanges(memory, role, cr3)) s += qemuMemLine(role.mode, r);
  return s;
}

/** Every enumerated mapping agrees with a walk of its first and last byte. */
function checkAgainstWalks(physical: GuestPhysical, regs: Regs, cr3: bigint, role: CpuRole, cpu = CPU) {
  for (const { va, pa, size, m } of list(physical, role, cr3)) {
    if (m.reserved) continue;
    for (const off of [0n, BigInt(size - 1)]) {
      const t = translate(physical, { ...regs, cr3 }, va + off, { cpu, setAccessedDirty: false });
      expect(t.ok, `walk of 0x${(va + off).toString(16)}`).toBe(true);
      expect(t.physical).toBe(BigInt(pa) + off);
      expect(t.pageSize).toBe(size);
    }
  }
}

describe("enumerateMappings and the QEMU formats", () => {
  it("32-bit paging with 4 KiB and 4 MiB pages", () => {
    const { physical, t, role } = setup(REGS.bit32);
    t.map(0x400000n, 0x200000, 4096, x86Leaf({ user: true }));
    t.map(0x401000n, 0x201000, 4096, x86Leaf({ writable: false, accessed: true }));
    t.map(0x800000n, 0xc00000, 4 << 20, x86Leaf({ global: true, dirty: true }));
    t.map(0xffc00000n, 0x1_0000_0000, 4 << 20, x86Leaf({ user: true }));
    expect(tlb(physical, role, t.cr3)).toBe(
      [
        "0000000000400000: 0000000000200000 -------UW",
        "0000000000401000: 0000000000201000 ----A----",
        "0000000000800000: 0000000000c00000 -GPD----W",
        "00000000ffc00000: 0000000100000000 --P----UW",
        "",
      ].join("\n"),
    );
    expect(mem(physical, role, t.cr3)).toBe(
      [
        "0000000000400000-0000000000401000 0000000000001000 urw",
        "0000000000401000-0000000000402000 0000000000001000 -r-",
        "0000000000800000-0000000000c00000 0000000000400000 -rw",
        "00000000ffc00000-0000000100000000 0000000000400000 urw",
        "",
      ].join("\n"),
    );
    checkAgainstWalks(physical, REGS.bit32, t.cr3, role);
  });

  it("32-bit paging without CR4.PSE treats PS in a PDE as a table pointer", () => {
    const regs = { cr0: 0x80000011n, cr4: 0n, efer: 0n };
    const { physical, t, role } = setup(regs);
    t.map(0x400000n, 0x200000, 4096, x86Leaf());
    const pde = t.entryAddress(0x400000n, 2, false);
    const [lo] = t.read(pde);
    t.write(pde, lo | 0x80, 0);
    const [m] = list(physical, role, t.cr3);
    expect([m.va, m.pa, m.size, m.m.reserved]).toEqual([0x400000n, 0x200000, 4096, false]);
  });

  it("PAE paging: 2 MiB pages, NX outside the address, PDPTE flags ignored for protection", () => {
    const { physical, t, role } = setup(REGS.pae);
    t.map(0x400000n, 0x200000, 4096, x86Leaf({ user: true, noExecute: true }));
    t.map(0x600000n, 0xa00000, 2 << 20, x86Leaf({ user: true }));
    t.map(0xc0000000n, 0x1000000, 2 << 20, x86Leaf({ global: true, noExecute: true }));
    expect(tlb(physical, role, t.cr3)).toBe(
      [
        "0000000000400000: 0000000000200000 X------UW",
        "0000000000600000: 0000000000a00000 --P----UW",
        "00000000c0000000: 0000000001000000 XGP-----W",
        "",
      ].join("\n"),
    );
    expect(mem(physical, role, t.cr3)).toBe(
      [
        "0000000000400000-0000000000401000 0000000000001000 urw",
        "0000000000600000-0000000000800000 0000000000200000 urw",
        "00000000c0000000-00000000c0200000 0000000000200000 -rw",
        "",
      ].join("\n"),
    );
    checkAgainstWalks(physical, REGS.pae, t.cr3, role);
  });

  it("4-level paging: canonical addresses, 1 GiB pages, protection ANDed over levels", () => {
    const { physical, t, role } = setup(REGS.level4);
    t.map(0x400000n, 0x200000, 4096, x86Leaf({ user: true, writable: false }));
    t.map(0x40000000n, 0x80000000, 1 << 30, x86Leaf({ user: true }));
    t.map(0xffff888000000000n, 0, 1 << 30, x86Leaf({ global: true, noExecute: true }));
    t.map(0xffffffffffe00000n, 0x1200000, 2 << 20, x86Leaf({ global: true }));
    // Clear U/S in the PDPTE above 0x400000: the leaf says user, the path says supervisor.
    const pdpte = t.entryAddress(0x400000n, 3, false);
    const [lo, hi] = t.read(pdpte);
    t.write(pdpte, lo & ~4, hi);
    expect(tlb(physical, role, t.cr3)).toBe(
      [
        "0000000000400000: 0000000000200000 -------U-",
        "0000000040000000: 0000000080000000 --P----UW",
        "ffff888000000000: 0000000000000000 XGP-----W",
        "ffffffffffe00000: 0000000001200000 -GP-----W",
        "",
      ].join("\n"),
    );
    // The last range ends at 2^48, which QEMU prints without sign extension.
    expect(mem(physical, role, t.cr3)).toBe(
      [
        "0000000000400000-0000000000401000 0000000000001000 -r-",
        "0000000040000000-0000000080000000 0000000040000000 urw",
        "ffff888000000000-ffff888040000000 0000000040000000 -rw",
        "ffffffffffe00000-0001000000000000 0000000000200000 -rw",
        "",
      ].join("\n"),
    );
    const ms = list(physical, role, t.cr3);
    expect(ms[0].m.prot).toBe(1);
    expect(ms[2].m.nx).toBe(true);
    checkAgainstWalks(physical, REGS.level4, t.cr3, role);
  });

  it("5-level paging (where QEMU's info mem prints nothing, vmmu lists the ranges)", () => {
    const { physical, t, role } = setup(REGS.level5);
    t.map(0x400000n, 0x200000, 4096, x86Leaf({ user: true }));
    t.map(0x00ff800000001000n, 0x300000, 4096, x86Leaf({ user: true }));
    t.map(0xff11000000000000n, 0, 2 << 20, x86Leaf({ global: true }));
    expect(tlb(physical, role, t.cr3)).toBe(
      [
        "0000000000400000: 0000000000200000 -------UW",
        "00ff800000001000: 0000000000300000 -------UW",
        "ff11000000000000: 0000000000000000 -GP-----W",
        "",
      ].join("\n"),
    );
    expect(mem(physical, role, t.cr3)).toBe(
      [
        "0000000000400000-0000000000401000 0000000000001000 urw",
        "00ff800000001000-00ff800000002000 0000000000001000 urw",
        "ff11000000000000-ff11000000200000 0000000000200000 -rw",
        "",
      ].join("\n"),
    );
    checkAgainstWalks(physical, REGS.level5, t.cr3, role);
  });

  it("honours PCID bits in CR3 and finds the PAE PDPT at 32-byte alignment", () => {
    const regs = { cr0: 0x80010033n, cr4: 0x20020n, efer: 0xd00n };
    const { physical, t, role } = setup(regs);
    t.map(0x400000n, 0x200000, 4096, x86Leaf());
    expect(pageTableRoot(role, t.cr3 | 0x8000_0000_0000_0005n)).toBe(Number(t.cr3));
    expect(list(physical, role, t.cr3 | 5n)).toHaveLength(1);
    const pae = CpuRole.from(REGS.pae, cpuModel(CPU));
    expect(pageTableRoot(pae, 0x1234_5678n)).toBe(0x1234_5660);
    expect(() => pageTableRoot(CpuRole.from({ cr0: 0x11n, cr4: 0n }, cpuModel(CPU)), 0n)).toThrow(
      /paging is off/,
    );
  });

  it("enumerates nothing with paging off", () => {
    const role = CpuRole.from({ cr0: 0x11n, cr4: 0n }, cpuModel(CPU));
    expect([...enumerateMappings(guestMemory(16), role, 0n)]).toEqual([]);
    expect([...protectionRanges(guestMemory(16), role, 0n)]).toEqual([]);
  });
});

describe("reserved bits and missing tables", () => {
  it("flags mappings an access would fault on with RSVD, and lists them as QEMU does", () => {
    const { physical, t, role } = setup({ ...REGS.level4, efer: 0x500n }); // NXE=0: bit 63 is reserved
    t.map(0x400000n, 0x200000, 4096, x86Leaf());
    t.map(0x401000n, 0x201000, 4096, x86Leaf({ noExecute: true }));
    t.map(0x600000n, 0x400000, 4096, x86Leaf());
    t.map(0x8000000000n, 0x400000, 4096, x86Leaf());
    // Bit 45 is above MAXPHYADDR 40 in the PTE of 0x600000.
    const pte = t.entryAddress(0x600000n, 1, false);
    const [plo, phi] = t.read(pte);
    t.write(pte, plo, phi | (1 << 13));
    // PS set in the PML4E of 0x8000000000: reserved, and QEMU treats it as a table pointer.
    const pml4e = t.entryAddress(0x8000000000n, 4, false);
    const [qlo, qhi] = t.read(pml4e);
    t.write(pml4e, qlo | 0x80, qhi);
    const ms = list(physical, role, t.cr3);
    expect(ms.map((x) => [x.va, x.pa, x.m.reserved])).toEqual([
      [0x400000n, 0x200000, false],
      [0x401000n, 0x201000, true],
      [0x600000n, 0x2000_0040_0000, true],
      [0x8000000000n, 0x400000, true],
    ]);
    for (const x of ms.filter((y) => y.m.reserved)) {
      const w = translate(physical, { ...REGS.level4, efer: 0x500n, cr3: t.cr3 }, x.va, {
        cpu: CPU,
        setAccessedDirty: false,
      });
      expect(w.fault?.reason).toBe("reserved-bit");
    }
  });

  it("a 1 GiB page on a CPU without 1 GiB pages is listed (QEMU) and flagged reserved", () => {
    const noGb = { ...cpuModel(CPU), gbPages: false };
    const { physical, t } = setup(REGS.level4);
    t.map(0x40000000n, 0x40000000, 1 << 30, x86Leaf());
    const role = CpuRole.from(REGS.level4, noGb);
    const [m] = list(physical, role, t.cr3);
    expect([m.va, m.pa, m.size, m.m.reserved]).toEqual([0x40000000n, 0x40000000, 1 << 30, true]);
  });

  it("skips paging structures outside memory and reports them", () => {
    const { physical, t, role } = setup(REGS.level4);
    t.map(0x400000n, 0x200000, 4096, x86Leaf());
    t.map(0x40000000n, 0x300000, 4096, x86Leaf());
    // Point the PDE of 0x40000000 at a page table far outside the 8 MiB of memory.
    const pde = t.entryAddress(0x40000000n, 2, false);
    t.write(pde, 0x7000_0000 | 7, 0);
    const missing: [number, number, bigint][] = [];
    const ms = [
      ...enumerateMappings(physical, role, t.cr3, { onMissingTable: (a, l, va) => missing.push([a, l, va]) }),
    ];
    expect(ms.map((m) => m.va)).toEqual([0x400000n]);
    expect(missing).toEqual([[0x7000_0000, 1, 0x40000000n]]);
    const missing2: number[] = [];
    const ranges = [...protectionRanges(physical, role, t.cr3, { onMissingTable: (a) => missing2.push(a) })];
    expect(ranges).toHaveLength(1);
    expect(missing2).toEqual([0x7000_0000]);
  });
});

describe("large aliased address spaces", () => {
  /** 512 PDEs all pointing at one full page table: 262,144 4 KiB mappings of 512 frames. */
  function aliased() {
    const { physical, t, role } = setup(REGS.level4);
    for (let i = 0; i < 512; i++) t.map(BigInt(i * 4096), 0x200000 + i * 4096, 4096, x86Leaf({ user: true }));
    const [lo, hi] = t.read(t.entryAddress(0n, 2, false));
    for (let i = 1; i < 512; i++) t.write(t.entryAddress(BigInt(i) << 21n, 2, true), lo, hi);
    return { physical, t, role };
  }

  it("lists every alias", () => {
    const { physical, t, role } = aliased();
    let n = 0;
    let last = 0n;
    let wrong = 0;
    for (const m of enumerateMappings(physical, role, t.cr3)) {
      if (n === 262143) last = m.va;
      if (m.physical !== 0x200000 + (n % 512) * 4096 || m.vaLo !== n * 4096) wrong++;
      n++;
    }
    expect(n).toBe(262144);
    expect(wrong).toBe(0);
    expect(last).toBe(0x3ffff000n);
  });

  it("merges them into one info mem range, reading the shared table once", () => {
    const { physical, t, role } = aliased();
    let reads = 0;
    const counting: FrameSource = {
      get frameBase() {
        return physical.frameBase;
      },
      frameWords(gfn) {
        reads++;
        return physical.frameWords(gfn);
      },
      compareExchange: () => 2,
    };
    expect(mem(counting, role, t.cr3)).toBe("0000000000000000-0000000040000000 0000000040000000 urw\n");
    // Root (512 entries) + PDPT + PD (512 each) + the shared PT once.
    expect(reads).toBe(512 * 4);
  });
});
