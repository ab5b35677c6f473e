/**
 * The shadow MMU against a reference model over random operation sequences (fast-check), in
 * the spirit of test/vm/tdp-model.test.ts, for `mmu: "shadow"` (unsync on and off, with and
 * without a small page bound) and `mmu: "shadow-pv"`, in every guest paging mode.
 *
 * The guest's page tables live in memslot 0, which never moves; the guest maps all of it at
 * WINDOW and edits its own tables only through its vCPUs (so the stores trap and are
 * emulated, or go unsync; under shadow-pv they land directly and are announced with a
 * set-entry hypercall), followed by the invalidations the architecture requires on every vCPU
 * running an address space that contains the entry (INVLPG, a CR3 reload, or none when the
 * entry was not present). Every address space has its own page table A at VA_SMALL; page
 * table B is shared by every address space at VA_ALT (a kernel-style shared table, shadowed
 * under several roots) and can also be linked at VA_SMALL (one table, two parents); the
 * VA_SMALL PDE can also be a guest large page or not present.
 *
 * Data lives in memslots 1-3, which are added, deleted, moved, made read-only, dirty-logged;
 * host pages are discarded and migrated (MMU notifiers), pages are aged, MMIO is reached
 * through guest PTEs pointing at a device or at no memslot.
 *
 * After every step: vm.check() is [] (every present shadow entry matches a fresh guest walk
 * and the memslots with no more rights than the guest allows, no writable entry maps a
 * tracked guest table, reverse map and parent links consistent; every TLB consistent); every
 * access returned what a pure walk of the guest's tables (translate, no A/D) and a byte model
 * of guest memory predict; touched host pages hold exactly the model's bytes; MMIO reached the
 * device only; every page written while logging is in the next dirty log. After each run the
 * VM is destroyed and no host frame is in use.
 */

import fc from "fast-check";
import { beforeEach, describe, expect, it } from "vitest";
import { CpuRole } from "../../src/arch/cpu.js";
import { MemslotError } from "../../src/mem/memslots.js";
import type { ShadowMmu } from "../../src/mmu/shadow/shadow-mmu.js";
import type { Vcpu } from "../../src/vm/vcpu.js";
import { Vm } from "../../src/vm/vm.js";
import { bumpAllocator, PageTableBuilder, x86Leaf } from "../../src/walk/builder.js";
import { translate } from "../../src/walk/translate.js";
import { bit, hex, MODE_REGS } from "../vm/guest.js";
import {
  DEVICE_GPA,
  DEVICE_SIZE,
  DeviceModel,
  HostPagesModel,
  HUGE_GFN,
  leBytes,
  leValue,
  SLOTS,
  type SlotDef,
  TARGETS,
} from "../vm/memory-model.js";

// --- Layout ----------------------------------------------------------------------------------

type Mode = "32bit" | "pae" | "4level" | "5level";

const TABLE_PAGES = 1024; // memslot 0: gfn 0..0x3ff, the guest's tables from gfn 0x10
const TABLES_HVA = 0x10000;
const TABLE_FIRST = 0x10;
const TABLE_COUNT = 96;
const WINDOW = 0x80000000; // slot 0 mapped here (4 KiB or large pages)
const VA_SMALL = 0x40000000; // PDE → table A (per space), table B (shared), a large page, or none
const VA_HUGE = 0x40400000; // a large page → HUGE_GFN (4 MiB-aligned: valid in 32-bit paging too)
const VA_ALT = 0x40800000; // PDE → table B in every space
const SMALL_PAGES = 32;

// --- Operations ------------------------------------------------------------------------------

type Size = 1 | 2 | 4 | 8;
type Inval = "invlpg" | "cr3" | "none" | "hcInvlpg" | "hcFlush";
type Region = "small" | "alt" | "huge" | "window";
type AccessOp = Extract<Op, { t: "access" }>;
type PteOp = Extract<Op, { t: "pte" }>;
type Op =
  | {
      t: "access";
      cpu: number;
      kind: "load" | "store" | "fetch";
      region: Region;
      page: number;
      offset: number;
      size: Size;
      value: bigint;
    }
  | {
      t: "pte";
      cpu: number;
      /** 0..spaces-1: table A of that space; 3: the shared table B. */
      table: number;
      index: number;
      present: boolean;
      writable: boolean;
      nx: boolean;
      dirty: boolean;
      target: number;
      split: boolean;
      inval: Inval;
    }
  | { t: "pde"; cpu: number; space: number; to: "A" | "B" | "huge" | "none"; inval: "invlpg" | "cr3" }
  | { t: "switch"; cpu: number; space: number }
  | { t: "delete"; slot: number }
  | { t: "add"; slot: number; base: number; dirtyLog: boolean; readOnly: boolean }
  | { t: "move"; slot: number; base: number }
  | { t: "flags"; slot: number; readOnly?: boolean; dirtyLog?: boolean }
  | { t: "getLog"; slot: number }
  | { t: "clearLog"; slot: number; first: number; count: number }
  | { t: "discard"; slot: number; page: number; count: number }
  | { t: "migrate"; slot: number; page: number }
  | { t: "age"; first: number; count: number }
  | { t: "vmmWrite"; target: number; offset: number; size: Size; value: bigint };

const size = fc.constantFrom<Size>(1, 2, 4, 8);
const dataSlot = fc.integer({ min: 1, max: 3 });
const anySlot = fc.integer({ min: 0, max: 3 });
const cpu = fc.nat(2);

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 12,
    arbitrary: fc.record({
      t: fc.constant("access" as const),
      cpu,
      kind: fc.constantFrom("load" as const, "store" as const, "fetch" as const),
      region: fc.constantFrom<Region>("small", "small", "alt", "huge", "window"),
      page: fc.oneof(fc.nat(3), fc.nat(511)), // mostly the pages the PTE changes hit
      offset: fc.oneof(fc.nat(4095), fc.integer({ min: 4088, max: 4095 })),
      size,
      value: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    }),
  },
  {
    weight: 7,
    arbitrary: fc.record({
      t: fc.constant("pte" as const),
      cpu,
      table: fc.nat(3),
      index: fc.oneof(fc.nat(3), fc.nat(SMALL_PAGES - 1)),
      present: fc.boolean(),
      writable: fc.boolean(),
      nx: fc.boolean(),
      dirty: fc.boolean(),
      target: fc.constantFrom(...TARGETS),
      split: fc.boolean(),
      inval: fc.constantFrom<Inval>("invlpg", "cr3", "none", "hcInvlpg", "hcFlush"),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant("pde" as const),
      cpu,
      space: fc.nat(2),
      to: fc.constantFrom("A" as const, "B" as const, "huge" as const, "none" as const),
      inval: fc.constantFrom("invlpg" as const, "cr3" as const),
    }),
  },
  { weight: 3, arbitrary: fc.record({ t: fc.constant("switch" as const), cpu, space: fc.nat(2) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("delete" as const), slot: dataSlot }) },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant("add" as const),
      slot: dataSlot,
      base: fc.nat(5),
      dirtyLog: fc.boolean(),
      readOnly: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ t: fc.constant("move" as const), slot: dataSlot, base: fc.nat(5) }),
  },
  {
    weight: 2,
    arbitrary: fc.oneof(
      fc.record({ t: fc.constant("flags" as const), slot: dataSlot, readOnly: fc.boolean() }),
      fc.record({ t: fc.constant("flags" as const), slot: anySlot, dirtyLog: fc.boolean() }),
    ),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("getLog" as const), slot: anySlot }) },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant("clearLog" as const),
      slot: anySlot,
      first: fc.nat(15),
      count: fc.nat(8),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant("discard" as const),
      slot: dataSlot,
      page: fc.nat(511),
      count: fc.integer({ min: 1, max: 4 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ t: fc.constant("migrate" as const), slot: anySlot, page: fc.nat(511) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant("age" as const),
      first: fc.constantFrom(0, 0x400, 0x800, 0x1000, 0x1200, 0x2000),
      count: fc.constantFrom(1, 16, 512, 0x3000),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant("vmmWrite" as const),
      target: fc.constantFrom(...TARGETS),
      offset: fc.nat(4088),
      size,
      value: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    }),
  },
);

function describeOp(op: Op): string {
  const rest = Object.entries(op)
    .filter(([k]) => k !== "t")
    .map(
      ([k, v]) =>
        `${k}=${typeof v === "bigint" || k === "target" || k === "base" ? hex(v as number) : String(v)}`,
    );
  return `${op.t}(${rest.join(", ")})`;
}

interface Config {
  mode: Mode;
  mmu: "shadow" | "shadow-pv";
  unsync: boolean;
  maxPages: number | undefined;
  /** CR0.WP (WP=0: supervisor writes to read-only pages succeed; the MMU's WP=0 trick). */
  wp: boolean;
  vcpus: number;
  spaces: number;
  /** The window onto slot 0 uses large pages (direct shadow pages) instead of 4 KiB pages. */
  windowHuge: boolean;
  /** Slots 0-3 start with dirty logging on. */
  logging: boolean[];
}

// --- The model -------------------------------------------------------------------------------

interface ModelSlot {
  base: number;
  pages: number;
  hva: number;
  readOnly: boolean;
  dirtyLog: boolean;
  /** Slot-relative pages written while logging, not yet collected. */
  written: Set<number>;
  /** Pages that may be reported without a (data) write. */
  maybe: Set<number>;
}

type Outcome =
  | { ok: true; value: bigint }
  | { ok: false; fault: { vector: number; errorCode: number; address: bigint } };

type PdeState = "A" | "B" | "huge" | "none";

class Harness {
  readonly vm: Vm;
  readonly mmu: ShadowMmu;
  readonly vcpus: Vcpu[] = [];
  /** Which address space each vCPU runs. */
  readonly running: number[] = [];
  readonly cr3s: bigint[] = [];
  readonly regs: { cr0: bigint; cr4: bigint; efer: bigint };
  /** Table A of each space, then table B (shared): guest-physical addresses. */
  readonly tableGpa: number[] = [];
  /** The VA_SMALL PDE of each space (guest-physical address) and what it points at. */
  readonly pdeGpa: number[] = [];
  readonly pde: PdeState[] = [];
  readonly es: number;
  readonly slots = new Map<number, ModelSlot>();
  readonly mem = new HostPagesModel();
  readonly device = new DeviceModel();
  private stored: { gpa: number; bytes: Uint8Array }[] = [];
  private readonly pv: boolean;
  private readonly tablesEnd: number;

  constructor(readonly cfg: Config) {
    this.pv = cfg.mmu === "shadow-pv";
    const m = MODE_REGS[cfg.mode];
    this.regs = { ...m, cr0: cfg.wp ? m.cr0 : m.cr0 & ~0x10000n };
    this.vm = new Vm({
      mmu: cfg.mmu,
      hostMemory: 48 << 20,
      shadow: { unsync: cfg.unsync, maxPages: cfg.maxPages },
    });
    this.mmu = this.vm.hostMmu as ShadowMmu;
    const vm = this.vm;
    vm.addMemslot({ id: 0, baseGfn: 0, pages: TABLE_PAGES, hvaPage: TABLES_HVA });
    this.slots.set(0, {
      base: 0,
      pages: TABLE_PAGES,
      hva: TABLES_HVA,
      readOnly: false,
      dirtyLog: false,
      written: new Set(),
      maybe: new Set(),
    });
    for (const s of SLOTS) {
      vm.addMemslot({ id: s.id, baseGfn: s.bases[0], pages: s.pages, hvaPage: s.hva, hostHugePages: s.huge });
      this.slots.set(s.id, {
        base: s.bases[0],
        pages: s.pages,
        hva: s.hva,
        readOnly: false,
        dirtyLog: false,
        written: new Set(),
        maybe: new Set(),
      });
    }
    // The guest's tables, built before it runs (as its boot code would).
    const role = CpuRole.from(this.regs, vm.cpu);
    const alloc = bumpAllocator(vm.physical, TABLE_FIRST, TABLE_COUNT);
    let allocated = 0;
    const counting = () => {
      allocated++;
      return alloc();
    };
    const large = cfg.mode === "32bit" ? 4 << 20 : 2 << 20;
    const builders: PageTableBuilder[] = [];
    for (let s = 0; s < cfg.spaces; s++) {
      const t = new PageTableBuilder(vm.physical, role.format!, counting);
      builders.push(t);
      if (cfg.windowHuge)
        for (let gpa = 0; gpa < TABLE_PAGES * 4096; gpa += large)
          t.map(BigInt(WINDOW + gpa), gpa, large, x86Leaf());
      else for (let g = 0; g < TABLE_PAGES; g++) t.map(BigInt(WINDOW + g * 4096), g * 4096, 4096, x86Leaf());
      for (let p = 0; p < SMALL_PAGES; p++)
        t.map(BigInt(VA_SMALL + p * 4096), TARGETS[(p + s) % TARGETS.length] * 4096, 4096, x86Leaf());
      t.map(BigInt(VA_HUGE), HUGE_GFN * 4096, large, x86Leaf());
      this.tableGpa.push(t.entryAddress(BigInt(VA_SMALL), 1, false));
      this.pdeGpa.push(t.entryAddress(BigInt(VA_SMALL), 2, false));
      this.pde.push("A");
      this.cr3s.push(t.cr3);
    }
    // Table B: built in space 0 at VA_ALT, linked at VA_ALT in every other space.
    for (let p = 0; p < SMALL_PAGES; p++)
      builders[0].map(BigInt(VA_ALT + p * 4096), TARGETS[(p * 7) % TARGETS.length] * 4096, 4096, x86Leaf());
    const bPde = builders[0].entryAddress(BigInt(VA_ALT), 2, false);
    const [bLo, bHi] = builders[0].read(bPde);
    for (let s = 1; s < cfg.spaces; s++)
      builders[s].write(builders[s].entryAddress(BigInt(VA_ALT), 2, true), bLo, bHi);
    this.tableGpa.push(builders[0].entryAddress(BigInt(VA_ALT), 1, false));
    this.es = role.format!.entryBytes;
    this.tablesEnd = TABLE_FIRST + allocated;
    for (let i = 0; i < cfg.vcpus; i++) {
      const v = vm.createVcpu();
      const space = i % cfg.spaces;
      v.setState({ ...this.regs, cr3: this.cr3s[space] });
      this.vcpus.push(v);
      this.running.push(space);
    }
    for (const [id, on] of cfg.logging.entries())
      if (on) {
        vm.setMemslotFlags(id, { dirtyLog: true });
        this.slots.get(id)!.dirtyLog = true;
      }
    vm.addMmio(DEVICE_GPA, DEVICE_SIZE, this.device.device);
  }

  // --- model helpers ---

  private slotOf(gfn: number): { id: number; m: ModelSlot } | undefined {
    for (const [id, m] of this.slots) if (gfn >= m.base && gfn < m.base + m.pages) return { id, m };
    return undefined;
  }

  /** Reads (fills `bytes`) or writes guest-physical [gpa, +n) as the hardware + VMM would. */
  private physical(gpa: number, bytes: Uint8Array, at: number, n: number, write: boolean): void {
    const gfn = Math.floor(gpa / 4096);
    const s = this.slotOf(gfn);
    if (s && !(write && s.m.readOnly)) {
      const off = gpa % 4096;
      if (s.id === 0) {
        // The guest's tables: not modelled byte by byte; guest memory itself is the reference.
        if (write) throw new Error("internal: data store to the table slot");
        const back = new Uint8Array(n);
        expect(this.vm.physical.readBytes(gpa, back)).toBe("ok");
        bytes.set(back, at);
        return;
      }
      const hva = s.m.hva + (gfn - s.m.base);
      if (write) {
        this.stored.push({ gpa, bytes: bytes.slice(at, at + n) });
        this.mem.write(hva, off, bytes, at, n);
        if (s.m.dirtyLog) s.m.written.add(gfn - s.m.base);
      } else {
        this.mem.read(hva, off, bytes, at, n);
      }
      return;
    }
    this.device.access(gpa, bytes, at, n, write);
  }

  /** The reference translation: a pure walk of the guest's tables in guest memory. */
  private oracle(
    cpu: number,
    va: number,
    kind: "load" | "store" | "fetch",
  ): { gpa: number } | { errorCode: number } {
    const r = translate(this.vm.physical, { ...this.regs, cr3: this.cr3s[this.running[cpu]] }, BigInt(va), {
      cpu: this.vm.cpu,
      access: kind === "load" ? "read" : kind === "store" ? "write" : "fetch",
      setAccessedDirty: false,
    });
    return r.ok ? { gpa: Number(r.physical) } : { errorCode: r.fault!.errorCode };
  }

  /** The VAs at which table `table` (index into tableGpa) is currently reachable in `space`. */
  private vasOf(table: number, space: number): number[] {
    const out: number[] = [];
    const b = this.tableGpa.length - 1;
    if (table === b) out.push(VA_ALT);
    if ((this.pde[space] === "A" && table === space) || (this.pde[space] === "B" && table === b))
      out.push(VA_SMALL);
    return out;
  }

  /** The guest stores an entry of its own tables through vCPU `v` (at the window). */
  private storeEntry(v: Vcpu, gpa: number, lo: number, hi: number, split: boolean, present: boolean): void {
    const va = BigInt(WINDOW + gpa);
    if (this.es === 4) expect(v.store(va, 4, lo >>> 0).ok).toBe(true);
    else if (!split) expect(v.store(va, 8, (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0)).ok).toBe(true);
    else if (present) {
      // PAE-style set_pte: high half first, then the low half (with P).
      expect(v.store(va + 4n, 4, hi >>> 0).ok).toBe(true);
      expect(v.store(va, 4, lo >>> 0).ok).toBe(true);
    } else {
      expect(v.store(va, 4, lo >>> 0).ok).toBe(true);
      expect(v.store(va + 4n, 4, hi >>> 0).ok).toBe(true);
    }
    const back = this.vm.physical.read(gpa, this.es as 4 | 8);
    const want = this.es === 4 ? BigInt(lo >>> 0) : (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
    expect(back.value, `entry at ${hex(gpa)} after the guest's store`).toBe(want);
    const s0 = this.slots.get(0)!;
    if (s0.dirtyLog) s0.written.add(Math.floor(gpa / 4096));
  }

  // --- operations ---

  run(op: Op): void {
    switch (op.t) {
      case "access":
        this.access(op);
        return;
      case "pte":
        this.pte(op);
        return;
      case "pde":
        this.pdeOp(op);
        return;
      case "switch": {
        const c = op.cpu % this.vcpus.length;
        const space = op.space % this.cfg.spaces;
        this.running[c] = space;
        this.vcpus[c].writeCr3(this.cr3s[space]);
        return;
      }
      case "delete": {
        const def = SLOTS[op.slot - 1];
        if (!this.slots.has(def.id)) {
          expect(() => this.vm.deleteMemslot(def.id)).toThrow(MemslotError);
          return;
        }
        this.vm.deleteMemslot(def.id);
        this.slots.delete(def.id);
        return;
      }
      case "add": {
        const def = SLOTS[op.slot - 1];
        const base = def.bases[op.base % def.bases.length];
        if (this.slots.has(def.id) || this.overlaps(def, base)) {
          expect(() =>
            this.vm.addMemslot({
              id: def.id,
              baseGfn: base,
              pages: def.pages,
              hvaPage: def.hva,
              flags: { readOnly: op.readOnly, dirtyLog: op.dirtyLog },
            }),
          ).toThrow(MemslotError);
          return;
        }
        this.vm.addMemslot({
          id: def.id,
          baseGfn: base,
          pages: def.pages,
          hvaPage: def.hva,
          flags: { readOnly: op.readOnly, dirtyLog: op.dirtyLog },
        });
        this.slots.set(def.id, {
          base,
          pages: def.pages,
          hva: def.hva,
          readOnly: op.readOnly,
          dirtyLog: op.dirtyLog,
          written: new Set(),
          maybe: new Set(),
        });
        return;
      }
      case "move": {
        const def = SLOTS[op.slot - 1];
        const base = def.bases[op.base % def.bases.length];
        const m = this.slots.get(def.id);
        if (!m || this.overlaps(def, base)) {
          expect(() => this.vm.moveMemslot(def.id, base)).toThrow(MemslotError);
          return;
        }
        this.vm.moveMemslot(def.id, base);
        m.base = base;
        return;
      }
      case "flags": {
        const m = this.slots.get(op.slot);
        const flags = op.readOnly !== undefined ? { readOnly: op.readOnly } : { dirtyLog: op.dirtyLog! };
        if (!m) {
          expect(() => this.vm.setMemslotFlags(op.slot, flags)).toThrow(MemslotError);
          return;
        }
        this.vm.setMemslotFlags(op.slot, flags);
        if (op.readOnly !== undefined) m.readOnly = op.readOnly;
        else if (op.dirtyLog !== m.dirtyLog) {
          m.dirtyLog = op.dirtyLog!;
          m.written.clear();
          m.maybe.clear();
        }
        return;
      }
      case "getLog": {
        const m = this.slots.get(op.slot);
        if (!m?.dirtyLog) {
          expect(() => this.vm.getDirtyLog(op.slot)).toThrow(m ? /does not log/ : MemslotError);
          return;
        }
        const log = this.vm.getDirtyLog(op.slot);
        this.checkLog(op.slot, m, log, 0, m.pages);
        m.written.clear();
        m.maybe.clear();
        expect(this.vm.memslots.get(op.slot).dirtyBitmap!.every((w) => w === 0)).toBe(true);
        return;
      }
      case "clearLog": {
        const m = this.slots.get(op.slot);
        if (!m?.dirtyLog) {
          expect(() => this.vm.clearDirtyLog(op.slot, op.first, op.count)).toThrow(
            m ? /does not log/ : MemslotError,
          );
          return;
        }
        const first = op.slot === 0 ? TABLE_FIRST + op.first : op.first;
        const count = Math.min(op.count, m.pages - first);
        this.checkLog(op.slot, m, this.vm.memslots.get(op.slot).dirtyBitmap!.slice(), first, count);
        this.vm.clearDirtyLog(op.slot, first, count);
        for (let p = first; p < first + count; p++) {
          m.written.delete(p);
          m.maybe.delete(p);
        }
        return;
      }
      case "discard": {
        const def = SLOTS[op.slot - 1];
        const first = def.hva + (op.page % def.pages);
        const count = Math.min(op.count, def.hva + def.pages - first);
        this.vm.hostSpace.discard(first, count);
        for (let p = first; p < first + count; p++) {
          this.mem.discard(p);
        }
        return;
      }
      case "migrate": {
        // Slot 0: one of the guest's table pages (their contents move with them).
        const hva =
          op.slot === 0
            ? TABLES_HVA + TABLE_FIRST + (op.page % (this.tablesEnd - TABLE_FIRST))
            : SLOTS[op.slot - 1].hva + (op.page % SLOTS[op.slot - 1].pages);
        const old = this.vm.hostSpace.peek(hva);
        const next = this.vm.hostSpace.migrate(hva);
        if (old >= 0) expect(next).not.toBe(old);
        this.mem.touched.add(hva);
        return;
      }
      case "age":
        this.vm.testAndClearYoung(op.first, op.count);
        expect(this.vm.testAndClearYoung(op.first, op.count)).toBe(0);
        return;
      case "vmmWrite": {
        const gpa = op.target * 4096 + op.offset;
        const value = BigInt.asUintN(op.size * 8, op.value);
        const s = this.slotOf(op.target);
        const expected = !s ? "mmio" : s.m.readOnly ? "readonly" : "ok";
        expect(this.vm.physical.write(gpa, op.size, value)).toBe(expected);
        if (expected === "ok") this.physical(gpa, leBytes(value, op.size), 0, op.size, true);
        return;
      }
    }
  }

  private pte(op: Extract<Op, { t: "pte" }>): void {
    const b = this.tableGpa.length - 1;
    const table = op.table >= this.cfg.spaces ? b : op.table;
    const gpa = this.tableGpa[table] + op.index * this.es;
    const old = this.vm.physical.read(gpa, this.es as 4 | 8);
    const oldPresent = (Number(old.value & 1n) & 1) === 1;
    let present = op.present;
    // A paravirtual guest may only hand over entries pointing into its memory (else lguest
    // stops it): it does not map what it knows is not RAM.
    if (this.pv && present && !this.slotOf(op.target)) present = false;
    const lo = present ? op.target * 4096 + 0x1 + (op.writable ? 0x2 : 0) + (op.dirty ? 0x60 : 0) : 0;
    const hi = present && op.nx && this.cfg.mode !== "32bit" ? 0x80000000 : 0;
    const v = this.vcpus[op.cpu % this.vcpus.length];
    this.storeEntry(v, gpa, lo, hi, op.split, present);
    if (this.pv)
      v.hypercall({ kind: "set-entry", tableGpa: this.tableGpa[table], index: op.index, level: 1, lo, hi });
    // Invalidate on every vCPU running a space that reaches the entry. Only a not-present
    // entry becoming present may go without (not-present entries are never cached).
    let inval = op.inval;
    if (inval === "none" && oldPresent) inval = "invlpg";
    if (!this.pv && inval === "hcInvlpg") inval = "invlpg";
    if (!this.pv && inval === "hcFlush") inval = "cr3";
    if (inval === "none") return;
    for (const [c, vc] of this.vcpus.entries()) {
      const vas = this.vasOf(table, this.running[c]);
      if (vas.length === 0) continue;
      if (inval === "cr3") vc.writeCr3(this.cr3s[this.running[c]]);
      else if (inval === "hcFlush") vc.hypercall({ kind: "flush", all: false });
      for (const base of vas) {
        const va = base + op.index * 4096;
        if (inval === "invlpg") vc.invlpg(BigInt(va));
        else if (inval === "hcInvlpg") vc.hypercall({ kind: "invlpg", vaHi: 0, vaLo: va });
      }
    }
  }

  private pdeOp(op: Extract<Op, { t: "pde" }>): void {
    const space = op.space % this.cfg.spaces;
    const b = this.tableGpa.length - 1;
    let to = op.to;
    if (this.pv && to === "huge" && !this.slotOf(HUGE_GFN)) to = "none";
    const tableBits = 0x7;
    let lo = 0;
    if (to === "A") lo = this.tableGpa[space] - (this.tableGpa[space] % 4096) + tableBits;
    else if (to === "B") lo = this.tableGpa[b] - (this.tableGpa[b] % 4096) + tableBits;
    else if (to === "huge") lo = HUGE_GFN * 4096 + 0x80 + 0x3;
    const old = this.pde[space];
    const v = this.vcpus[op.cpu % this.vcpus.length];
    this.storeEntry(v, this.pdeGpa[space], lo, 0, false, to !== "none");
    if (this.pv) {
      const gpa = this.pdeGpa[space];
      v.hypercall({
        kind: "set-entry",
        tableGpa: gpa - (gpa % 4096),
        index: (gpa % 4096) / this.es,
        level: 2,
        lo,
        hi: 0,
      });
    }
    this.pde[space] = to;
    for (const [c, vc] of this.vcpus.entries()) {
      if (this.running[c] !== space) continue;
      if (op.inval === "cr3") vc.writeCr3(this.cr3s[space]);
      else if (old === "huge")
        vc.invlpg(BigInt(VA_SMALL)); // one INVLPG covers a large page
      else if (old !== "none") for (let p = 0; p < SMALL_PAGES; p++) vc.invlpg(BigInt(VA_SMALL + p * 4096));
    }
  }

  private overlaps(def: SlotDef, base: number): boolean {
    for (const [id, m] of this.slots) {
      if (id === def.id) continue;
      if (base < m.base + m.pages && m.base < base + def.pages) return true;
    }
    return false;
  }

  private checkLog(id: number, m: ModelSlot, log: Uint32Array, first: number, count: number): void {
    for (let p = first; p < first + count; p++) {
      const set = bit(log, p) === 1;
      if (m.written.has(p))
        expect(set, `slot ${id} page ${p} was written but is not in the dirty log`).toBe(true);
      else if (set) {
        // The walks set A/D bits in the guest's tables: any table page may be dirty.
        const table = id === 0 && p >= TABLE_FIRST && p < this.tablesEnd;
        expect(
          table || m.maybe.has(p),
          `slot ${id} page ${p} is in the dirty log but was never written`,
        ).toBe(true);
      }
    }
  }

  private access(op: Extract<Op, { t: "access" }>): void {
    const c = op.cpu % this.vcpus.length;
    const vcpu = this.vcpus[c];
    const pages = op.region === "huge" ? 512 : op.region === "window" ? this.tablesEnd : SMALL_PAGES;
    const base =
      op.region === "huge"
        ? VA_HUGE
        : op.region === "alt"
          ? VA_ALT
          : op.region === "small"
            ? VA_SMALL
            : WINDOW;
    const page = op.page % pages;
    const va = base + page * 4096 + (page === pages - 1 ? Math.min(op.offset, 4096 - op.size) : op.offset);
    // The guest reads its tables through the window but changes them only with "pte"/"pde".
    const kind = op.region === "window" && op.kind === "store" ? "load" : op.kind;
    const value = BigInt.asUintN(op.size * 8, op.value);
    this.stored = [];
    const got =
      kind === "store"
        ? vcpu.store(BigInt(va), op.size, value)
        : kind === "load"
          ? vcpu.load(BigInt(va), op.size)
          : vcpu.fetch(BigInt(va), op.size);
    // The expectation is computed after the access: a load of a table page must see the A/D
    // bits the access's own walk set (guest memory is the reference for the table slot).
    const expected = this.expectAccess(c, va, op.size, kind, value);
    expect(got).toEqual(expected);
    for (const w of this.stored) {
      const back = new Uint8Array(w.bytes.length);
      expect(this.vm.physical.readBytes(w.gpa, back)).toBe("ok");
      expect(back, `store read back at GPA ${hex(w.gpa)}`).toEqual(w.bytes);
    }
  }

  private expectAccess(
    c: number,
    va: number,
    n: Size,
    kind: "load" | "store" | "fetch",
    value: bigint,
  ): Outcome {
    const first = Math.min(n, 4096 - (va % 4096));
    const parts = [{ va, at: 0, len: first }];
    if (first < n) parts.push({ va: va + first, at: first, len: n - first });
    const gpas: number[] = [];
    for (const [k, part] of parts.entries()) {
      const t = this.oracle(c, part.va, kind);
      if ("errorCode" in t) {
        if (k === 1 && kind === "store") {
          const s = this.slotOf(Math.floor(gpas[0] / 4096));
          if (s?.m.dirtyLog && !s.m.readOnly) s.m.maybe.add(Math.floor(gpas[0] / 4096) - s.m.base);
        }
        return { ok: false, fault: { vector: 14, errorCode: t.errorCode, address: BigInt(part.va) } };
      }
      gpas.push(t.gpa);
    }
    const bytes = kind === "store" ? leBytes(value, n) : new Uint8Array(n);
    for (const [k, part] of parts.entries())
      this.physical(gpas[k], bytes, part.at, part.len, kind === "store");
    return { ok: true, value: kind === "store" ? value : leValue(bytes) };
  }

  // --- invariants ---

  verify(full: boolean): void {
    expect(this.vm.check()).toEqual([]);
    this.checkTlbs();
    expect(this.device.log).toEqual(this.device.expected);
    expect(this.vm.mmio.unclaimed).toBe(this.device.unclaimed);
    for (const [id, m] of this.slots) {
      if (!m.dirtyLog) continue;
      const bm = this.vm.memslots.get(id).dirtyBitmap!;
      for (const p of m.written) expect(bit(bm, p), `slot ${id} page ${p} written, dirty bit clear`).toBe(1);
    }
    const pages = full
      ? SLOTS.flatMap((d) => Array.from({ length: d.pages }, (_, i) => d.hva + i))
      : [...this.mem.touched];
    for (const hva of pages) this.comparePage(hva);
    this.mem.touched.clear();
  }

  /**
   * Every TLB entry is backed by the shadow tables the vCPU runs on, with no more rights:
   * whatever the MMU zaps or write-protects it flushes (the guest's own invalidations cover
   * only what the guest changed). No PCIDs and no global pages here, so every entry belongs
   * to the current root.
   */
  private checkTlbs(): void {
    const cr4 = this.cfg.mode === "5level" ? 0x1020n : 0x20n;
    for (const v of this.vcpus)
      for (const e of v.tlb.entries()) {
        if (e.vpid !== v.vpid) continue;
        const va = (BigInt(e.vaHi >>> 0) << 32n) | BigInt(e.vaLo >>> 0);
        const state = { cr0: 0x80010001n, cr4, efer: 0xd00n, cr3: BigInt(v.shadowRootHfn * 4096) };
        const t = translate(this.vm.host, state, va, { cpu: this.vm.cpu, setAccessedDirty: false });
        const where = `vCPU ${v.id} TLB entry for ${hex(va)}`;
        expect(t.ok, `${where}: no shadow translation`).toBe(true);
        expect(Number(t.physical), `${where}: another frame than the shadow tables`).toBe(e.physical);
        expect(e.attrs & 7 & ~t.effective!, `${where}: more rights than the shadow tables`).toBe(0);
      }
  }

  private comparePage(hva: number): void {
    if (hva >= TABLES_HVA && hva < TABLES_HVA + TABLE_PAGES) return;
    this.mem.compare(this.vm, hva);
  }
}

// --- The property ----------------------------------------------------------------------------

function runSequence(cfg: Config, ops: Op[]): Harness {
  const h = new Harness(cfg);
  for (const [i, op] of ops.entries()) {
    try {
      h.run(op);
      h.verify(i === ops.length - 1);
    } catch (e) {
      const history = ops
        .slice(0, i + 1)
        .map((o, j) => `  ${j}: ${describeOp(o)}`)
        .join("\n");
      throw new Error(
        `after step ${i} (${cfg.mmu}, ${cfg.mode} guest, unsync=${cfg.unsync}, maxPages=${cfg.maxPages}, WP=${cfg.wp}, ${cfg.vcpus} vCPUs, ${cfg.spaces} spaces, windowHuge=${cfg.windowHuge}, logging=${cfg.logging}):\n${history}\n${(e as Error).message}`,
      );
    }
  }
  for (const [k, n] of Object.entries(h.mmu.stats)) totals.set(k, (totals.get(k) ?? 0) + n);
  for (const v of h.vcpus) totals.set("guestFaults", (totals.get("guestFaults") ?? 0) + v.stats.guestFaults);
  h.vm.destroy();
  expect(h.vm.host.framesInUse).toBe(0);
  return h;
}

/** MMU statistics summed over the runs of a property: the paths the sequences exercised. */
const totals = new Map<string, number>();

const configArb = (mmu: Config["mmu"]): fc.Arbitrary<Config> =>
  fc.record({
    mode: fc.constantFrom<Mode>("32bit", "pae", "4level", "5level"),
    mmu: fc.constant(mmu),
    unsync: mmu === "shadow" ? fc.boolean() : fc.constant(true),
    maxPages: fc.constantFrom<number | undefined>(undefined, undefined, 10, 16),
    wp: fc.boolean(),
    vcpus: fc.integer({ min: 1, max: 3 }),
    spaces: fc.integer({ min: 2, max: 3 }),
    windowHuge: fc.boolean(),
    logging: fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
  });

const RUNS = Number(process.env.RUNS ?? 1);

describe("shadow MMU against a reference model", () => {
  beforeEach(() => totals.clear());

  it("transparent shadow paging: random operation sequences keep memory, MMIO, dirty logs and check() exact", () => {
    fc.assert(
      fc.property(
        configArb("shadow"),
        fc.array(opArb, { minLength: 10, maxLength: 60, size: "max" }),
        (cfg, ops) => {
          runSequence(cfg, ops);
        },
      ),
      { numRuns: Math.round(250 * RUNS), seed: Number(process.env.SEED ?? 0x5ad0_2024), endOnFailure: false },
    );
    // The sequences reached the paths they are meant to test.
    if (process.env.SHADOW_STATS) console.log(Object.fromEntries(totals));
    for (const k of [
      "emulatedWrites",
      "unsynced",
      "synced",
      "syncZaps",
      "invlpgZaps",
      "reclaimed",
      "mmio",
      "mmioFast",
      "prefetched",
      "rootHits",
      "writeProtected",
      "guestFaults",
    ])
      expect(totals.get(k), k).toBeGreaterThan(0);
    totals.clear();
  });

  it("paravirtual shadow paging: random operation sequences with set-entry hypercalls", () => {
    fc.assert(
      fc.property(
        configArb("shadow-pv"),
        fc.array(opArb, { minLength: 10, maxLength: 60, size: "max" }),
        (cfg, ops) => {
          runSequence(cfg, ops);
        },
      ),
      { numRuns: Math.round(120 * RUNS), seed: Number(process.env.SEED ?? 0x5ad1_2024), endOnFailure: false },
    );
    if (process.env.SHADOW_STATS) console.log(Object.fromEntries(totals));
    for (const k of ["hypercalls", "reclaimed", "mmio", "prefetched", "rootHits", "guestFaults"])
      expect(totals.get(k), k).toBeGreaterThan(0);
    expect(totals.get("emulatedWrites") ?? 0).toBe(0);
    totals.clear();
  });

  const base: Config = {
    mode: "4level",
    mmu: "shadow",
    unsync: true,
    maxPages: undefined,
    wp: true,
    vcpus: 2,
    spaces: 2,
    windowHuge: false,
    logging: [false, false, false, false],
  };
  const load = (cpu: number, region: Region, page: number): Op => ({
    t: "access",
    cpu,
    kind: "load",
    region,
    page,
    offset: 8,
    size: 8,
    value: 0n,
  });
  const remap = (cpu: number, table: number, index: number, target: number, inval: Inval): Op => ({
    t: "pte",
    cpu,
    table,
    index,
    present: true,
    writable: true,
    nx: false,
    dirty: false,
    target,
    split: false,
    inval,
  });

  for (const mode of ["32bit", "pae", "4level", "5level"] as const)
    it(`${mode}: a table edited while unsync and its space not loaded is resynced at the next CR3 load`, () => {
      const h = runSequence({ ...base, mode }, [
        load(1, "small", 0), // vCPU 1 runs space 1: shadow entry for table A(1)[0]
        { t: "switch", cpu: 1, space: 0 }, // space 1 is loaded nowhere (its root is cached)
        remap(0, 1, 0, 0x401, "none"), // first write: table A(1) goes unsync, written directly
        remap(0, 1, 0, 0x800, "invlpg"), // again (no vCPU runs space 1: nothing to invalidate)
        { t: "switch", cpu: 0, space: 1 }, // the CR3 load resyncs: the stale entry goes
        load(0, "small", 0),
      ]);
      expect(h.mmu.stats.unsynced).toBeGreaterThan(0);
      expect(h.mmu.stats.syncZaps).toBeGreaterThan(0);
    });

  it("a shared table (every space) edited by one vCPU is invalidated on every vCPU", () => {
    runSequence({ ...base, vcpus: 3, spaces: 3 }, [
      load(0, "alt", 1),
      load(1, "alt", 1),
      load(2, "alt", 1),
      remap(2, 3, 1, 0x2001, "invlpg"),
      load(0, "alt", 1),
      load(1, "alt", 1),
      remap(1, 3, 1, 0x1201, "cr3"),
      load(2, "alt", 1),
      load(0, "alt", 1),
    ]);
  });

  it("a cached MMIO entry does not let a fetch from an NX page or a write to a read-only page through", () => {
    const access = (kind: "load" | "store" | "fetch"): Op => ({ ...(load(0, "small", 0) as AccessOp), kind });
    const h = runSequence(base, [
      { ...(remap(0, 0, 0, 0xc00, "invlpg") as PteOp), writable: false, nx: true },
      access("load"), // the MMIO entry is cached
      access("fetch"), // #PF (I/D), not a fetch from the device
      access("store"), // #PF (W), not a write to the device
      access("load"),
    ]);
    expect(h.mmu.stats.mmioFast).toBeGreaterThan(0);
    expect(h.device.log.filter((l) => l.startsWith("W"))).toEqual([]);
  });

  for (const mode of ["32bit", "4level"] as const)
    it(`${mode}: a write through a clean guest large page sets its D bit even when another address space's dirty mapping of the same range was shadowed first`, () => {
      const h = new Harness({ ...base, mode, windowHuge: true });
      const [v0, v1] = h.vcpus; // vCPU 0 runs space 0, vCPU 1 space 1
      const data = WINDOW + 0x100 * 4096; // a page of the table slot that holds no table
      expect(v0.store(BigInt(data), 4, 1).ok).toBe(true); // space 0's window PDE: D set
      expect(v0.store(BigInt(data + 4096), 4, 1).ok).toBe(true);
      expect(v1.load(BigInt(data), 4).ok).toBe(true); // space 1's window PDE: still clean
      expect(v1.store(BigInt(data + 4096), 4, 2).ok).toBe(true); // must set it
      const t = translate(h.vm.physical, { ...h.regs, cr3: h.cr3s[1] }, BigInt(data + 4096), {
        cpu: h.vm.cpu,
        setAccessedDirty: false,
      });
      expect(Number(t.path[t.path.length - 1].before & 0x40n), "D in space 1's large PDE").toBe(0x40);
      expect(h.vm.check()).toEqual([]);
      h.vm.destroy();
      expect(h.vm.host.framesInUse).toBe(0);
    });
});
