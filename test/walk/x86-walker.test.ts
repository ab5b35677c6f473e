import { describe, expect, it } from "vitest";
import {
  ACCESS_AC,
  ACCESS_FETCH,
  ACCESS_IMPLICIT,
  ACCESS_USER,
  ACCESS_WRITE,
  CpuRole,
  CpuStateError,
  cpuModel,
  cpuWalker,
  describeWalk,
  FAULT_GP,
  FAULT_NONE,
  FAULT_PAGE,
  loadCr3,
  PageTableBuilder,
  REASON_NON_CANONICAL,
  REASON_NOT_PRESENT,
  REASON_PKEY,
  REASON_PROTECTION,
  REASON_RESERVED,
  REASON_TABLE_NOT_RAM,
  VirtualMemory,
  Walk,
  x86Leaf,
} from "../../src/index.js";
import { entryAt, makeGuest, setup, va } from "../helpers.js";

const P = 1;
const W = 2;
const U = 4;
const RSVD = 8;
const I = 16;
const PK = 32;

describe("32-bit paging", () => {
  it("maps 4 KiB pages with 4-byte entries and sets A on both levels", () => {
    const s = setup("32bit");
    s.tables.map(0x00401000n, 0x123000, 4096, x86Leaf());
    const w = s.w;
    expect(s.walker().walk(0, 0x00401abc, 0, w)).toBe(true);
    expect(w.address).toBe(0x123abc);
    expect(w.pageShift).toBe(12);
    expect(w.depth).toBe(2);
    expect(w.entryAddr[0]).toBe(s.tables.rootGfn * 4096 + 1 * 4);
    expect(Number(entryAt(s.physical, w.entryAddr[1], 4) & 0x60n)).toBe(0x20);
  });

  it("4 MiB pages with CR4.PSE, PSE-36 high address bits, bit 21 reserved", () => {
    const s = setup("32bit"); // CR4.PSE=1
    s.tables.map(0x00800000n, 0x12_3440_0000, 4 << 20, x86Leaf()); // PA above 4 GiB via PSE-36
    const w = s.w;
    expect(s.walker().walk(0, 0x00812345, 0, w)).toBe(true);
    expect(w.address).toBe(0x12_3441_2345);
    expect(w.pageShift).toBe(22);
    const pde = w.entryAddr[0];
    s.tables.write(pde, (w.lo[0] | (1 << 21)) >>> 0, 0);
    expect(s.walker().walk(0, 0x00812345, 0, w)).toBe(false);
    expect(w.reason).toBe(REASON_RESERVED);
    expect(w.errorCode).toBe(P | RSVD);
  });

  it("with CR4.PSE=0 bit 7 of a PDE is ignored: the PDE points to a page table", () => {
    const g = makeGuest();
    const role = CpuRole.from({ cr0: 0x80000011n, cr4: 0n }, cpuModel("qemu-max"));
    const b = new PageTableBuilder(g.physical, role.format!, g.alloc);
    b.map(0x00400000n, 0x5000, 4096, x86Leaf());
    const pde = b.entryAddress(0x00400000n, 2, false);
    const [lo] = b.read(pde);
    b.write(pde, lo | 0x80, 0);
    const w = new Walk();
    expect(cpuWalker(g.physical, role, b.cr3).walk(0, 0x00400010, 0, w)).toBe(true);
    expect(w.address).toBe(0x5010);
    expect(w.depth).toBe(2);
  });

  it("ignores EFER.NXE: fetches report no I/D without SMEP", () => {
    const s = setup("32bit", { efer: 0x800n });
    const w = s.w;
    expect(s.walker().walk(0, 0x1000, ACCESS_FETCH, w)).toBe(false);
    expect(w.errorCode).toBe(0);
  });
});

describe("PAE paging", () => {
  it("loads the PDPTEs at CR3 load; later changes in memory are invisible until the next load", () => {
    const s = setup("pae");
    s.tables.map(0x40201000n, 0x777000, 4096, x86Leaf());
    const walker = s.walker();
    const w = s.w;
    expect(walker.walk(0, 0x40201008, 0, w)).toBe(true);
    expect(w.address).toBe(0x777008);
    expect(w.registerMask).toBe(1);
    const pdpte = s.tables.entryAddress(0x40201000n, 3, false);
    s.tables.write(pdpte, 0, 0);
    expect(walker.walk(0, 0x40201008, 0, w)).toBe(true); // still the register copy
    expect(loadCr3(walker, s.role, s.tables.cr3).ok).toBe(true);
    expect(walker.walk(0, 0x40201008, 0, w)).toBe(false);
    expect(w.reason).toBe(REASON_NOT_PRESENT);
    expect(w.faultLevel).toBe(3);
  });

  it("a present PDPTE with reserved bits makes the CR3 load fail (#GP)", () => {
    const s = setup("pae");
    s.tables.map(0x1000n, 0x2000, 4096, x86Leaf());
    const walker = s.walker();
    const pdpte = s.tables.entryAddress(0x1000n, 3, false);
    const [lo, hi] = s.tables.read(pdpte);
    s.tables.write(pdpte, lo | 0x2, hi); // R/W is reserved in a PDPTE
    const r = loadCr3(walker, s.role, s.tables.cr3);
    expect(r.ok).toBe(false);
    expect(() => s.walker()).toThrow(CpuStateError);
  });

  it("2 MiB pages; XD is reserved without NXE", () => {
    const s = setup("pae", { efer: 0n });
    s.tables.map(0x00200000n, 0x00c00000, 2 << 20, { lo: 0x3, hi: 0x80000000 });
    const w = s.w;
    expect(s.walker().walk(0, 0x00234567, 0, w)).toBe(false);
    expect(w.reason).toBe(REASON_RESERVED);
    expect(w.faultLevel).toBe(2);
  });
});

describe("4-level and 5-level paging", () => {
  it("maps 4 KiB, 2 MiB and 1 GiB pages", () => {
    const s = setup("4level");
    s.tables.map(0x7f0000001000n, 0x3000, 4096, x86Leaf());
    s.tables.map(0x7f0000200000n, 0x400000, 2 << 20, x86Leaf());
    s.tables.map(0x7f0040000000n, 0x80000000, 1 << 30, x86Leaf());
    const walker = s.walker();
    const w = s.w;
    const expectPa = (v: bigint, pa: number, shift: number) => {
      expect(walker.walk(...va(v), 0, w)).toBe(true);
      expect(w.address).toBe(pa);
      expect(w.pageShift).toBe(shift);
    };
    expectPa(0x7f0000001234n, 0x3234, 12);
    expectPa(0x7f0000212345n, 0x412345, 21);
    expectPa(0x7f0052345678n, 0x92345678, 30);
  });

  it("PS in a PDPTE is reserved without 1 GiB page support", () => {
    const s = setup("4level", {}, { ...cpuModel("qemu-max"), gbPages: false });
    s.tables.map(0x40000000n, 0x1000, 4096, x86Leaf());
    const pdpte = s.tables.entryAddress(0x40000000n, 3, false);
    const [lo, hi] = s.tables.read(pdpte);
    s.tables.write(pdpte, lo | 0x80, hi);
    expect(s.walker().walk(0, 0x40000000, 0, s.w)).toBe(false);
    expect(s.w.errorCode).toBe(P | RSVD);
    expect(s.w.faultLevel).toBe(3);
  });

  it("a non-canonical address is #GP, not #PF, and walks nothing", () => {
    const s = setup("4level");
    expect(s.walker().walk(...va(0x0000800000000000n), 0, s.w)).toBe(false);
    expect(s.w.fault).toBe(FAULT_GP);
    expect(s.w.reason).toBe(REASON_NON_CANONICAL);
    expect(s.w.depth).toBe(0);
    const five = setup("5level");
    expect(five.walker().walk(...va(0x0000800000000000n), 0, five.w)).toBe(false);
    expect(five.w.fault).toBe(FAULT_PAGE); // canonical under LA57
    expect(five.walker().walk(...va(0x0100000000000000n), 0, five.w)).toBe(false);
    expect(five.w.fault).toBe(FAULT_GP);
  });

  it("5-level: a kernel address in the upper half", () => {
    const s = setup("5level");
    s.tables.map(0xff11_0000_0000_0000n, 0x9000, 4096, x86Leaf());
    expect(s.walker().walk(...va(0xff11_0000_0000_0123n), 0, s.w)).toBe(true);
    expect(s.w.depth).toBe(5);
    expect(s.w.address).toBe(0x9123);
  });

  it("a self-referencing PML4 entry walks correctly (recursive mapping)", () => {
    const s = setup("4level");
    s.tables.map(0x1000n, 0x5000, 4096, x86Leaf());
    const root = s.tables.rootGfn * 4096;
    s.tables.write(root + 511 * 8, root | 0x3, 0); // PML4[511] → PML4
    // 0xffffffffff000 + ...: four times index 511 reads the PML4 itself as a page.
    const rec = 0xfffffffffffff000n;
    expect(s.walker().walk(...va(rec), 0, s.w)).toBe(true);
    expect(s.w.address).toBe(root);
    // The entry's A bit was set once, though it was used at every level.
    expect(Number(entryAt(s.physical, root + 511 * 8) & 0x20n)).toBe(0x20);
    // PML4[511] → PML4, then PML4[0] as a PDPT ... reaches the PT of 0x1000 as a page.
    const w = s.w;
    expect(s.walker().walk(...va(0xffffff8000000000n), 0, w)).toBe(true);
  });

  it("a table outside every memslot is a not-present #PF, not garbage", () => {
    const s = setup("4level");
    s.tables.map(0x1000n, 0x5000, 4096, x86Leaf());
    const pml4e = s.tables.entryAddress(0x1000n, 4, false);
    s.tables.write(pml4e, (0x7_0000_0000 % 2 ** 32) | 0x7, 0x7); // a PDPT at 0x7_0000_0000: no RAM
    expect(s.walker().walk(0, 0x1000, ACCESS_WRITE, s.w)).toBe(false);
    expect(s.w.reason).toBe(REASON_TABLE_NOT_RAM);
    expect(s.w.errorCode).toBe(W);
    expect(s.w.faultLevel).toBe(3);
    expect(describeWalk(s.w).path[1].missing).toBe(true);
  });

  it("refuses a CR3 with bits above MAXPHYADDR, accepts PCID and the no-flush bit under PCIDE", () => {
    const s = setup("4level", { cr4: 0x20000n });
    expect(() => cpuWalker(s.physical, s.role, s.tables.cr3 | (1n << 45n))).toThrow(CpuStateError);
    const w = cpuWalker(s.physical, s.role, s.tables.cr3 | 0x8000_0000_0000_0005n);
    expect(w.rootGfn).toBe(s.tables.rootGfn);
  });
});

describe("access rights", () => {
  /** A 4-level setup mapping 0x1000 with the given leaf; returns a walk function. */
  function rights(
    leaf: Parameters<typeof x86Leaf>[0],
    extra: Parameters<typeof setup>[1] = {},
    upperUser = true,
  ) {
    const s = setup("4level", extra);
    s.tables.map(0x1000n, 0x5000, 4096, x86Leaf(leaf));
    if (!upperUser) {
      const pde = s.tables.entryAddress(0x1000n, 2, false);
      const [lo, hi] = s.tables.read(pde);
      s.tables.write(pde, lo & ~4, hi);
    }
    const walker = s.walker();
    return (access: number) => {
      const ok = walker.walk(0, 0x1000, access, s.w);
      return ok ? "ok" : `${s.w.errorCode}:${s.w.reason}`;
    };
  }

  it("U/S and R/W combine across levels; CR0.WP decides supervisor writes", () => {
    const userRo = rights({ user: true, writable: false });
    expect(userRo(ACCESS_USER)).toBe("ok");
    expect(userRo(ACCESS_USER | ACCESS_WRITE)).toBe(`${P | W | U}:${REASON_PROTECTION}`);
    const upperSupervisor = rights({ user: true }, {}, false);
    expect(upperSupervisor(ACCESS_USER)).toBe(`${P | U}:${REASON_PROTECTION}`);
    const ro = rights({ writable: false }, { cr0: 0x10000n });
    expect(ro(ACCESS_WRITE)).toBe(`${P | W}:${REASON_PROTECTION}`);
    const s = setup("4level", { cr0: 0n });
    const roNoWp = CpuRole.from({ cr0: 0x80000011n, cr4: 0x20n, efer: 0xd00n }, cpuModel("qemu-max"));
    s.tables.map(0x1000n, 0x5000, 4096, x86Leaf({ writable: false }));
    expect(cpuWalker(s.physical, roNoWp, s.tables.cr3).walk(0, 0x1000, ACCESS_WRITE, s.w)).toBe(true);
  });

  it("NX forbids fetches with EFER.NXE and reports I/D", () => {
    const nx = rights({ noExecute: true });
    expect(nx(0)).toBe("ok");
    expect(nx(ACCESS_FETCH)).toBe(`${P | I}:${REASON_PROTECTION}`);
  });

  it("SMEP: supervisor fetches from user pages fault", () => {
    const smep = rights({ user: true }, { cr4: 0x100000n });
    expect(smep(ACCESS_FETCH)).toBe(`${P | I}:${REASON_PROTECTION}`);
    expect(smep(ACCESS_FETCH | ACCESS_USER)).toBe("ok");
  });

  it("SMAP: supervisor data accesses to user pages fault unless explicit with AC=1", () => {
    const smap = rights({ user: true }, { cr4: 0x200000n });
    expect(smap(0)).toBe(`${P}:${REASON_PROTECTION}`);
    expect(smap(ACCESS_AC)).toBe("ok");
    expect(smap(ACCESS_WRITE | ACCESS_AC)).toBe("ok");
    expect(smap(ACCESS_IMPLICIT | ACCESS_AC)).toBe(`${P}:${REASON_PROTECTION}`);
    expect(smap(ACCESS_IMPLICIT | ACCESS_USER | ACCESS_AC)).toBe(`${P}:${REASON_PROTECTION}`); // implicit: U=0 in the error code
    expect(smap(ACCESS_FETCH)).toBe("ok"); // SMAP is about data
  });

  it("protection keys: PKRU for user pages, WD binds supervisor writes only with CR0.WP", () => {
    const pkeUser = (pkru: number, cr0: bigint) => {
      const s = setup("4level", { cr4: 0x400000n, pkru, cr0 });
      s.tables.map(0x1000n, 0x5000, 4096, x86Leaf({ user: true, pkey: 3 }));
      const w = s.walker();
      return (a: number) => (w.walk(0, 0x1000, a, s.w) ? "ok" : `${s.w.errorCode}:${s.w.reason}`);
    };
    const ad = pkeUser(1 << 6, 0x10000n); // AD for key 3
    expect(ad(ACCESS_USER)).toBe(`${P | U | PK}:${REASON_PKEY}`);
    expect(ad(ACCESS_USER | ACCESS_FETCH)).toBe("ok"); // keys do not govern fetches
    const wd = pkeUser(1 << 7, 0x10000n); // WD for key 3, CR0.WP=1
    expect(wd(ACCESS_USER)).toBe("ok");
    expect(wd(ACCESS_USER | ACCESS_WRITE)).toBe(`${P | W | U | PK}:${REASON_PKEY}`);
    expect(wd(ACCESS_WRITE | ACCESS_AC)).toBe(`${P | W | PK}:${REASON_PKEY}`);
    const s = setup("4level", { cr4: 0x400000n, pkru: 1 << 7 });
    const noWp = CpuRole.from(
      { cr0: 0x80000011n, cr4: 0x400020n, efer: 0xd00n, pkru: 1 << 7 },
      cpuModel("qemu-max"),
    );
    s.tables.map(0x1000n, 0x5000, 4096, x86Leaf({ user: true, pkey: 3 }));
    expect(cpuWalker(s.physical, noWp, s.tables.cr3).walk(0, 0x1000, ACCESS_WRITE, s.w)).toBe(true);
  });

  it("protection keys for supervisor pages use PKRS under CR4.PKS", () => {
    const cpu = cpuModel("intel-sapphirerapids");
    const s = setup("4level", { cr4: 0x1000000n, pkrs: 1 << 10 }, cpu);
    s.tables.map(0x1000n, 0x5000, 4096, x86Leaf({ pkey: 5 }));
    expect(s.walker().walk(0, 0x1000, 0, s.w)).toBe(false);
    expect(s.w.errorCode).toBe(P | PK);
    // A user-mode access to the supervisor page is refused by U/S; PKRS is not consulted.
    expect(s.walker().walk(0, 0x1000, ACCESS_USER, s.w)).toBe(false);
    expect(s.w.errorCode).toBe(P | U);
  });

  it("a reserved bit wins over a permission fault and sets RSVD with P", () => {
    const s = setup("4level");
    s.tables.map(0x1000n, 0x5000, 4096, { lo: 0x1, hi: 0x00100000 }); // read-only supervisor; bit 52 is ignored
    expect(s.walker().walk(0, 0x1000, ACCESS_USER | ACCESS_WRITE, s.w)).toBe(false);
    expect(s.w.reason).toBe(REASON_PROTECTION);
    s.tables.map(0x1000n, 0x5000, 4096, { lo: 0x1, hi: 0x00000100 }); // bit 40 ≥ MAXPHYADDR 40
    expect(s.walker().walk(0, 0x1000, ACCESS_USER | ACCESS_WRITE, s.w)).toBe(false);
    expect(s.w.errorCode).toBe(P | W | U | RSVD);
  });
});

describe("accessed and dirty flags", () => {
  it("a write sets A everywhere and D on the leaf; a read sets no D", () => {
    const s = setup("4level");
    s.tables.map(0x200000n, 0x600000, 2 << 20, x86Leaf());
    const w = s.walker();
    expect(w.walk(0, 0x200010, 0, s.w)).toBe(true);
    expect(Number(entryAt(s.physical, s.w.entryAddr[2]) & 0x60n)).toBe(0x20);
    expect(w.walk(0, 0x200010, ACCESS_WRITE, s.w)).toBe(true);
    for (let i = 0; i < 2; i++) expect(Number(entryAt(s.physical, s.w.entryAddr[i]) & 0x60n)).toBe(0x20);
    expect(Number(entryAt(s.physical, s.w.entryAddr[2]) & 0x60n)).toBe(0x60);
    expect(s.w.newLo[2] & 0x60).toBe(0x60);
  });

  it("a not-present fault sets A above the faulting level only; a protection fault on every non-leaf level", () => {
    const s = setup("4level");
    s.tables.map(0x1000n, 0x5000, 4096, x86Leaf({ writable: false }));
    const w = s.walker();
    expect(w.walk(0, 0x4000_0000, 0, s.w)).toBe(false); // PDPTE 1 not present
    expect(s.w.faultLevel).toBe(3);
    expect(Number(entryAt(s.physical, s.w.entryAddr[0]) & 0x20n)).toBe(0x20);
    expect(Number(entryAt(s.physical, s.w.entryAddr[1]) & 0x20n)).toBe(0);
    expect(w.walk(0, 0x1000, ACCESS_WRITE, s.w)).toBe(false);
    expect(s.w.reason).toBe(REASON_PROTECTION);
    for (let i = 0; i < 3; i++) expect(Number(entryAt(s.physical, s.w.entryAddr[i]) & 0x20n)).toBe(0x20);
    expect(Number(entryAt(s.physical, s.w.entryAddr[3]) & 0x60n)).toBe(0);
  });

  it("translate() alone never writes; read-only memslots are walked but not written", () => {
    const s = setup("4level");
    s.tables.map(0x1000n, 0x5000, 4096, x86Leaf());
    const w = s.walker();
    expect(w.translate(0, 0x1000, ACCESS_WRITE, s.w)).toBe(true);
    expect(Number(entryAt(s.physical, s.w.entryAddr[3]) & 0x60n)).toBe(0);
    s.physical.memslots.setFlags(0, { readOnly: true });
    expect(w.walk(0, 0x1000, ACCESS_WRITE, s.w)).toBe(true);
    expect(Number(entryAt(s.physical, s.w.entryAddr[3]) & 0x60n)).toBe(0);
  });
});

describe("VirtualMemory", () => {
  it("reads and writes across a page boundary; a faulting write writes nothing", () => {
    const s = setup("4level");
    s.tables.map(0x1000n, 0x5000, 4096, x86Leaf());
    s.tables.map(0x2000n, 0x9000, 4096, x86Leaf());
    const vm = new VirtualMemory(s.walker(), s.physical);
    const data = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(vm.write(0x1ffcn, data, 0)).toEqual({ ok: true, value: 8 });
    expect(s.physical.read(0x5ffc, 4).value).toBe(0x04030201n);
    expect(s.physical.read(0x9000, 4).value).toBe(0x08070605n);
    const r = vm.read(0x1ffcn, 8, 0);
    expect(r.ok && Array.from(r.value)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    const f = vm.write(0x2ffcn, data, 0); // 0x3000 is unmapped
    expect(f.ok).toBe(false);
    expect(s.physical.read(0x9ffc, 4).value).toBe(0n);
  });
});

describe("fault values", () => {
  it("describeWalk turns a record into bigint fields", () => {
    const s = setup("4level");
    s.tables.map(0x1000n, 0x5000, 4096, x86Leaf());
    s.walker().walk(0, 0x1234, 0, s.w);
    const t = describeWalk(s.w);
    expect(t.ok).toBe(true);
    expect(t.physical).toBe(0x5234n);
    expect(t.path.map((p) => p.level)).toEqual([4, 3, 2, 1]);
    s.walker().walk(0, 0x9000, 0, s.w);
    const f = describeWalk(s.w);
    expect(f.fault).toMatchObject({
      kind: "page-fault",
      vector: 14,
      reason: "not-present",
      level: 1,
      address: 0x9000n,
    });
    expect(s.w.fault).not.toBe(FAULT_NONE);
  });
});
