/**
 * Model-based test of the shadow MMU: a guest changes its own page tables through its
 * vCPU (so the writes trap, are emulated, or go unsync), issues the invalidations the
 * architecture requires, switches between address spaces, and accesses memory. After
 * every step, every load must return what the guest's tables and memory say (a pure walk
 * over guest memory is the reference), and the MMU's check() must hold.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { bumpAllocator, CpuRole, PageTableBuilder, translate, x86Leaf } from "../../src/index.js";
import { Vm } from "../../src/vm/vm.js";

const REGS = { cr0: 0x80010011n, cr4: 0x20n, efer: 0xd00n };
/** The guest's window onto all of its RAM (2 MiB pages): where it writes its own tables. */
const WINDOW = 0x7f0000000000n;
const RAM_PAGES = 2048; // 8 MiB
const DATA_FIRST = 0x400; // data frames 0x400.. (4 MiB ..)
const USER_BASE = 0x40000000n;

type Op =
  | { kind: "load"; space: number; page: number }
  | { kind: "store"; space: number; page: number; value: number }
  | { kind: "remap"; space: number; page: number; frame: number; writable: boolean }
  | { kind: "unmap"; space: number; page: number }
  | { kind: "switch"; space: number }
  | { kind: "flushAll" };

function build(unsync: boolean, maxPages: number) {
  const vm = new Vm({ mmu: "shadow", hostMemory: 64 << 20, shadow: { unsync, maxPages } });
  vm.addMemslot({ id: 0, baseGfn: 0, pages: RAM_PAGES, hvaPage: 0x40000 });
  const role = CpuRole.from(REGS, vm.cpu);
  const alloc = bumpAllocator(vm.physical, 0x100, 0x200);
  const spaces = [0, 1, 2].map(() => {
    const t = new PageTableBuilder(vm.physical, role.format!, alloc);
    for (let gpa = 0; gpa < RAM_PAGES * 4096; gpa += 2 << 20)
      t.map(WINDOW + BigInt(gpa), gpa, 2 << 20, x86Leaf());
    // Pre-create the user PT so remaps only touch level-1 entries.
    for (let p = 0; p < 16; p++)
      t.map(USER_BASE + BigInt(p * 4096), (DATA_FIRST + p) * 4096, 4096, x86Leaf());
    return t;
  });
  // Every data frame holds a distinct value, so a stale translation reads a wrong one.
  for (let f = 0; f < 32; f++) vm.physical.write((DATA_FIRST + f) * 4096 + 8, 4, 0x1000 + f);
  const vcpu = vm.createVcpu();
  vcpu.setState({ ...REGS, cr3: spaces[0].cr3 });
  return { vm, spaces, vcpu };
}

const opArb = fc.oneof(
  fc.record({ kind: fc.constant("load" as const), space: fc.nat(2), page: fc.nat(15) }),
  fc.record({
    kind: fc.constant("store" as const),
    space: fc.nat(2),
    page: fc.nat(15),
    value: fc.nat(0xffffff),
  }),
  fc.record({
    kind: fc.constant("remap" as const),
    space: fc.nat(2),
    page: fc.nat(15),
    frame: fc.nat(31),
    writable: fc.boolean(),
  }),
  fc.record({ kind: fc.constant("unmap" as const), space: fc.nat(2), page: fc.nat(15) }),
  fc.record({ kind: fc.constant("switch" as const), space: fc.nat(2) }),
  fc.record({ kind: fc.constant("flushAll" as const) }),
);

function run(ops: Op[], unsync: boolean, maxPages: number): void {
  const { vm, spaces, vcpu } = build(unsync, maxPages);
  let current = 0;
  const state = () => ({ ...REGS, cr3: spaces[current].cr3 });
  for (const [step, op] of ops.entries()) {
    const where = `step ${step} ${JSON.stringify(op)}`;
    if (op.kind === "switch") {
      current = op.space;
      vcpu.writeCr3(spaces[current].cr3);
    } else if (op.kind === "flushAll") vcpu.writeCr3(spaces[current].cr3);
    else if (op.kind === "remap" || op.kind === "unmap") {
      // The guest edits its own PTE through its vCPU, then invalidates as the SDM requires.
      const t = spaces[op.space];
      const va = USER_BASE + BigInt(op.page * 4096);
      const pte = t.entryAddress(va, 1, false);
      const value =
        op.kind === "unmap" ? 0n : BigInt(((DATA_FIRST + op.frame) * 4096) | (op.writable ? 0x7 : 0x5));
      const r = vcpu.store(WINDOW + BigInt(pte), 8, value);
      expect(r.ok, where).toBe(true);
      if (op.space === current) vcpu.invlpg(va);
      // Other address spaces are not loaded: their next load of CR3 flushes (no PCID).
    } else {
      if (op.space !== current) {
        current = op.space;
        vcpu.writeCr3(spaces[current].cr3);
      }
      const va = USER_BASE + BigInt(op.page * 4096 + 8);
      const kind = op.kind === "load" ? "read" : "write";
      const ref = translate(vm.physical, state(), va, { cpu: vm.cpu, access: kind, setAccessedDirty: false });
      const r = op.kind === "load" ? vcpu.load(va, 4) : vcpu.store(va, 4, op.value);
      if (!ref.ok) {
        expect(r.ok, where).toBe(false);
        if (!r.ok) expect(r.fault.errorCode, where).toBe(ref.fault!.errorCode);
      } else {
        expect(r.ok, where).toBe(true);
        const pa = Number(ref.physical!);
        if (op.kind === "load" && r.ok) expect(r.value, where).toBe(vm.physical.read(pa, 4).value);
        if (op.kind === "store") expect(vm.physical.read(pa, 4).value, where).toBe(BigInt(op.value));
      }
    }
    const problems = vm.check();
    expect(problems, where).toEqual([]);
  }
  vm.destroy();
  expect(vm.host.framesInUse).toBe(0);
}

describe("shadow MMU against the guest's own tables", () => {
  it("an unsync table edited while its address space is not loaded is resynced when it is", () => {
    const ops: Op[] = [
      { kind: "load", space: 1, page: 0 },
      { kind: "switch", space: 0 },
      { kind: "remap", space: 1, page: 0, frame: 7, writable: true },
      { kind: "remap", space: 1, page: 0, frame: 9, writable: true },
      { kind: "load", space: 1, page: 0 },
    ];
    run(ops, true, 64);
  });

  for (const unsync of [false, true])
    it(`random table edits, switches and accesses (unsync ${unsync})`, () => {
      fc.assert(
        fc.property(fc.array(opArb, { minLength: 1, maxLength: 60 }), (ops) => run(ops, unsync, 64)),
        { numRuns: 150 },
      );
    });

  it("under a tight page bound (constant reclaim)", () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 60 }), (ops) => run(ops, true, 10)),
      { numRuns: 40 },
    );
  });
});
