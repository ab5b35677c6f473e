/**
 * Random operation sequences against a reference model (fast-check).
 *
 * The model knows the guest's page tables (one 4 KiB table of 32 pages plus a fixed 2 MiB
 * guest page), the memslots (base, backing, flags), the bytes of every host virtual page,
 * the MMIO device's log and the pages written while dirty logging is on. Operations: guest
 * loads/stores/fetches (page-crossing too) by 2-3 vCPUs, guest PTE changes with INVLPG or
 * a CR3 reload on every vCPU, memslot add/delete/move/flags, dirty-log collection (get and
 * manual clear), host discard/migrate (MMU notifiers), aging and VMM writes.
 *
 * After every step: vm.check() is clean; every access returned exactly what the model
 * predicts (data, #PF error code, MMIO value); touched host pages hold exactly the model's
 * bytes; MMIO reached the device and never memory; every page written while logging is set
 * in the slot's dirty bitmap. A dirty log may report a page not written only when a store to
 * it was translated (the VM exit marks the page dirty) but did not happen because the other
 * half of the page-crossing store faulted, as in KVM (dirty is recorded at fault time).
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MemslotError } from "../../src/mem/memslots.js";
import type { Vcpu } from "../../src/vm/vcpu.js";
import type { Vm } from "../../src/vm/vm.js";
import { x86Leaf } from "../../src/walk/builder.js";
import { bit, HOSTS, hex, makeGuest } from "./guest.js";
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
} from "./memory-model.js";

// --- The layout ------------------------------------------------------------------------------

const SMALL_PAGES = 32;
const VA_SMALL = 0x40000000;
const VA_HUGE = 0x40200000; // one 2 MiB guest page → GPA 0x1000000 (memslot 3's first home)
const TABLES_HVA = 0x10000;

/** With stolen bits on: GPA bit 40 (the "shared" alias), as a GFN offset. */
const ALIAS = 2 ** 28;

/** The initial PTE target of small page `p` (with stolen bits, every third one is an alias). */
const initialTarget = (p: number, stolen: boolean) =>
  TARGETS[p % TARGETS.length] + (stolen && p % 3 === 2 ? ALIAS : 0);

// --- Operations ------------------------------------------------------------------------------

type Size = 1 | 2 | 4 | 8;
type Op =
  | {
      t: "access";
      cpu: number;
      kind: "load" | "store" | "fetch";
      huge: boolean;
      page: number;
      offset: number;
      size: Size;
      value: bigint;
    }
  | {
      t: "pte";
      page: number;
      present: boolean;
      writable: boolean;
      nx: boolean;
      target: number;
      alias: boolean;
      inval: "invlpg" | "cr3";
    }
  | { t: "delete"; slot: number }
  | { t: "add"; slot: number; base: number; dirtyLog: boolean; readOnly: boolean }
  | { t: "move"; slot: number; base: number }
  | { t: "flags"; slot: number; readOnly?: boolean; dirtyLog?: boolean; private?: boolean }
  | { t: "getLog"; slot: number }
  | { t: "clearLog"; slot: number; first: number; count: number }
  | { t: "discard"; slot: number; page: number; count: number }
  | { t: "migrate"; slot: number; page: number }
  | { t: "age"; first: number; count: number }
  | { t: "vmmWrite"; target: number; offset: number; size: Size; value: bigint };

const size = fc.constantFrom<Size>(1, 2, 4, 8);
const slotIndex = fc.integer({ min: 0, max: SLOTS.length - 1 });

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 10,
    arbitrary: fc.record({
      t: fc.constant("access" as const),
      cpu: fc.integer({ min: 0, max: 2 }),
      kind: fc.constantFrom("load" as const, "store" as const, "fetch" as const),
      huge: fc.boolean(),
      page: fc.integer({ min: 0, max: 511 }),
      offset: fc.oneof(fc.integer({ min: 0, max: 4095 }), fc.integer({ min: 4088, max: 4095 })),
      size,
      value: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      t: fc.constant("pte" as const),
      page: fc.integer({ min: 0, max: SMALL_PAGES - 1 }),
      present: fc.boolean(),
      writable: fc.boolean(),
      nx: fc.boolean(),
      target: fc.constantFrom(...TARGETS),
      alias: fc.boolean(),
      inval: fc.constantFrom("invlpg" as const, "cr3" as const),
    }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("delete" as const), slot: slotIndex }) },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant("add" as const),
      slot: slotIndex,
      base: fc.integer({ min: 0, max: 5 }),
      dirtyLog: fc.boolean(),
      readOnly: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant("move" as const),
      slot: slotIndex,
      base: fc.integer({ min: 0, max: 5 }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.oneof(
      fc.record({ t: fc.constant("flags" as const), slot: slotIndex, readOnly: fc.boolean() }),
      fc.record({ t: fc.constant("flags" as const), slot: slotIndex, dirtyLog: fc.boolean() }),
      fc.record({ t: fc.constant("flags" as const), slot: slotIndex, private: fc.boolean() }),
    ),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("getLog" as const), slot: slotIndex }) },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant("clearLog" as const),
      slot: slotIndex,
      first: fc.integer({ min: 0, max: 15 }),
      count: fc.integer({ min: 0, max: 8 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant("discard" as const),
      slot: slotIndex,
      page: fc.integer({ min: 0, max: 511 }),
      count: fc.integer({ min: 1, max: 4 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant("migrate" as const),
      slot: fc.integer({ min: -1, max: SLOTS.length - 1 }), // -1: the guest's page tables
      page: fc.integer({ min: 0, max: 511 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant("age" as const),
      first: fc.constantFrom(0x400, 0x800, 0x1000, 0x1200, 0x2000, 0),
      count: fc.constantFrom(1, 16, 512, 0x3000),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant("vmmWrite" as const),
      target: fc.constantFrom(...TARGETS),
      offset: fc.integer({ min: 0, max: 4088 }),
      size,
      value: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    }),
  },
);

function describeOp(op: Op): string {
  const rest = Object.entries(op)
    .filter(([k]) => k !== "t")
    .map(
      ([k, v]) => `${k}=${typeof v === "bigint" || k === "target" || k === "base" ? hex(v as number) : v}`,
    );
  return `${op.t}(${rest.join(", ")})`;
}

interface Config {
  mode: "pae" | "4level" | "5level";
  /** GPA bit 40 is a stolen attribute bit (4- and 5-level guests only). */
  stolen: boolean;
  host: number;
  nxHugePages: boolean;
  accessedDirty: boolean;
  vcpus: number;
  /** Memslots 1-3 start with dirty logging on. */
  logging: boolean[];
}

// --- The model -------------------------------------------------------------------------------

interface ModelSlot {
  base: number;
  readOnly: boolean;
  private: boolean;
  dirtyLog: boolean;
  /** Slot-relative pages written while logging, not yet collected. */
  written: Set<number>;
  /** Pages that may be reported without a write (see the header). */
  maybe: Set<number>;
}

interface Pte {
  present: boolean;
  writable: boolean;
  nx: boolean;
  target: number;
}

type Outcome =
  | { ok: true; value: bigint }
  | { ok: false; fault: { vector: number; errorCode: number; address: bigint } };

class Harness {
  readonly vm: Vm;
  readonly vcpus: Vcpu[];
  readonly tables: ReturnType<typeof makeGuest>["tables"];
  readonly slots = new Map<number, ModelSlot>();
  readonly ptes: Pte[] = [];
  /** Host virtual page → contents (absent: zeros). */
  readonly mem = new HostPagesModel();
  readonly device = new DeviceModel();
  /** Memory writes of the current access: (VMM-view GPA, bytes), read back through vm.physical. */
  private stored: { gpa: number; bytes: Uint8Array }[] = [];
  private readonly cr3: bigint;
  private readonly stolen: boolean;

  constructor(readonly cfg: Config) {
    const host = HOSTS[cfg.host];
    this.stolen = cfg.stolen && cfg.mode !== "pae";
    const tdp = { ...host.tdp, nxHugePages: cfg.nxHugePages, stolenBits: this.stolen ? [40] : [] };
    if (host.tdp?.format !== "npt") Object.assign(tdp, { accessedDirty: cfg.accessedDirty });
    const g = makeGuest(
      cfg.mode,
      { cpu: host.cpu, tdp, hostMemory: 64 << 20, guestPhysBits: this.stolen ? 41 : undefined },
      (t, vm) => {
        for (const s of SLOTS)
          vm.addMemslot({
            id: s.id,
            baseGfn: s.bases[0],
            pages: s.pages,
            hvaPage: s.hva,
            hostHugePages: s.huge,
          });
        for (let p = 0; p < SMALL_PAGES; p++) {
          const target = initialTarget(p, this.stolen);
          t.map(BigInt(VA_SMALL + p * 4096), target * 4096, 4096, x86Leaf());
        }
        t.map(BigInt(VA_HUGE), HUGE_GFN * 4096, 2 << 20, x86Leaf());
      },
      256,
    );
    this.vm = g.vm;
    this.tables = g.tables;
    this.cr3 = g.regs.cr3 as bigint;
    this.vcpus = [g.vcpu];
    for (let i = 1; i < cfg.vcpus; i++) {
      const v = g.vm.createVcpu();
      v.setState(g.regs);
      this.vcpus.push(v);
    }
    for (let p = 0; p < SMALL_PAGES; p++)
      this.ptes.push({ present: true, writable: true, nx: false, target: initialTarget(p, this.stolen) });
    for (const [i, s] of SLOTS.entries()) {
      const dirtyLog = cfg.logging[i] ?? false;
      // With stolen bits, memslot 2 starts private: its shared aliases are MMIO.
      const priv = this.stolen && s.id === 2;
      if (dirtyLog || priv) g.vm.setMemslotFlags(s.id, { dirtyLog, private: priv });
      this.slots.set(s.id, {
        base: s.bases[0],
        readOnly: false,
        private: priv,
        dirtyLog,
        written: new Set(),
        maybe: new Set(),
      });
    }
    g.vm.addMmio(DEVICE_GPA, DEVICE_SIZE, this.device.device);
  }

  // --- model helpers ---

  /** The memslot behind `gfn` as the guest reaches it (a stolen-bit alias of private memory: none). */
  private slotOf(gfnFull: number): { def: SlotDef; m: ModelSlot; gfn: number } | undefined {
    const aliased = this.stolen && gfnFull >= ALIAS;
    const gfn = aliased ? gfnFull - ALIAS : gfnFull;
    for (const def of SLOTS) {
      const m = this.slots.get(def.id);
      if (m && gfn >= m.base && gfn < m.base + def.pages)
        return aliased && m.private ? undefined : { def, m, gfn };
    }
    return undefined;
  }

  /** Reads (fills `bytes`) or writes guest-physical [gpa, +n) as the hardware + VMM would. */
  private physical(gpa: number, bytes: Uint8Array, at: number, n: number, write: boolean): void {
    const gfn = Math.floor(gpa / 4096);
    const s = this.slotOf(gfn);
    if (s && !(write && s.m.readOnly)) {
      const hva = s.def.hva + (s.gfn - s.m.base);
      const off = gpa % 4096;
      if (write) {
        this.stored.push({ gpa: s.gfn * 4096 + off, bytes: bytes.slice(at, at + n) });
        this.mem.write(hva, off, bytes, at, n);
        if (s.m.dirtyLog) s.m.written.add(s.gfn - s.m.base);
      } else {
        this.mem.read(hva, off, bytes, at, n);
      }
      return;
    }
    // MMIO: no memslot, or a write to a read-only one.
    this.device.access(gpa, bytes, at, n, write);
  }

  /** The guest translation of the page holding `va`: a GFN or a #PF error code. */
  private guestPage(va: number, kind: "load" | "store" | "fetch"): { gfn: number } | { errorCode: number } {
    if (va >= VA_HUGE) return { gfn: HUGE_GFN + Math.floor((va - VA_HUGE) / 4096) };
    const pte = this.ptes[Math.floor((va - VA_SMALL) / 4096)];
    const w = kind === "store" ? 2 : 0;
    const i = kind === "fetch" ? 0x10 : 0; // EFER.NXE=1: I/D reported
    if (!pte.present) return { errorCode: w | i };
    if ((kind === "store" && !pte.writable) || (kind === "fetch" && pte.nx)) return { errorCode: 1 | w | i };
    return { gfn: pte.target };
  }

  // --- operations ---

  run(op: Op): void {
    switch (op.t) {
      case "access":
        this.access(op);
        return;
      case "pte": {
        const va = BigInt(VA_SMALL + op.page * 4096);
        const target = op.alias && this.stolen ? op.target + ALIAS : op.target;
        const pte = { present: op.present, writable: op.writable, nx: op.nx, target };
        this.ptes[op.page] = pte;
        if (pte.present)
          this.tables.map(va, target * 4096, 4096, x86Leaf({ writable: op.writable, noExecute: op.nx }));
        else this.tables.unmap(va);
        for (const v of this.vcpus)
          if (op.inval === "invlpg") v.invlpg(va);
          else v.writeCr3(this.cr3);
        return;
      }
      case "delete": {
        const def = SLOTS[op.slot];
        if (!this.slots.has(def.id)) {
          expect(() => this.vm.deleteMemslot(def.id)).toThrow(MemslotError);
          return;
        }
        this.vm.deleteMemslot(def.id);
        this.slots.delete(def.id);
        return;
      }
      case "add": {
        const def = SLOTS[op.slot];
        const base = def.bases[op.base % def.bases.length];
        const spec = {
          id: def.id,
          baseGfn: base,
          pages: def.pages,
          hvaPage: def.hva,
          flags: { readOnly: op.readOnly, dirtyLog: op.dirtyLog },
        };
        if (this.slots.has(def.id) || this.overlaps(def, base)) {
          const gen = this.vm.memslots.generation;
          expect(() => this.vm.addMemslot(spec)).toThrow(MemslotError);
          expect(this.vm.memslots.generation).toBe(gen);
          return;
        }
        this.vm.addMemslot(spec);
        this.slots.set(def.id, {
          base,
          readOnly: op.readOnly,
          private: false,
          dirtyLog: op.dirtyLog,
          written: new Set(),
          maybe: new Set(),
        });
        return;
      }
      case "move": {
        const def = SLOTS[op.slot];
        const m = this.slots.get(def.id);
        const base = def.bases[op.base % def.bases.length];
        if (!m || this.overlaps(def, base)) {
          expect(() => this.vm.moveMemslot(def.id, base)).toThrow(MemslotError);
          return;
        }
        this.vm.moveMemslot(def.id, base);
        m.base = base; // the dirty log (pages relative to the slot) carries over, as in KVM
        return;
      }
      case "flags": {
        const def = SLOTS[op.slot];
        const m = this.slots.get(def.id);
        const flags =
          op.readOnly !== undefined
            ? { readOnly: op.readOnly }
            : op.private !== undefined
              ? { private: op.private }
              : { dirtyLog: op.dirtyLog! };
        if (!m) {
          expect(() => this.vm.setMemslotFlags(def.id, flags)).toThrow(MemslotError);
          return;
        }
        this.vm.setMemslotFlags(def.id, flags);
        if (op.readOnly !== undefined) m.readOnly = op.readOnly;
        else if (op.private !== undefined) m.private = op.private;
        else if (op.dirtyLog !== m.dirtyLog) {
          m.dirtyLog = op.dirtyLog!;
          m.written.clear();
          m.maybe.clear();
        }
        return;
      }
      case "getLog": {
        const def = SLOTS[op.slot];
        const m = this.slots.get(def.id);
        if (!m?.dirtyLog) {
          expect(() => this.vm.getDirtyLog(def.id)).toThrow(m ? /does not log/ : MemslotError);
          return;
        }
        const log = this.vm.getDirtyLog(def.id);
        this.checkLog(def, m, log, 0, def.pages);
        m.written.clear();
        m.maybe.clear();
        expect(this.vm.memslots.get(def.id).dirtyBitmap!.every((w) => w === 0)).toBe(true);
        return;
      }
      case "clearLog": {
        const def = SLOTS[op.slot];
        const m = this.slots.get(def.id);
        if (!m?.dirtyLog) {
          expect(() => this.vm.clearDirtyLog(def.id, op.first, op.count)).toThrow(
            m ? /does not log/ : MemslotError,
          );
          return;
        }
        // Manual protect: read the bitmap (KVM_GET_DIRTY_LOG), then clear a range of it.
        const first = Math.min(op.first, def.pages);
        const count = Math.min(op.count, def.pages - first);
        this.checkLog(def, m, this.vm.memslots.get(def.id).dirtyBitmap!.slice(), first, count);
        this.vm.clearDirtyLog(def.id, first, count);
        for (let p = first; p < first + count; p++) {
          m.written.delete(p);
          m.maybe.delete(p);
          expect(bit(this.vm.memslots.get(def.id).dirtyBitmap!, p)).toBe(0);
        }
        return;
      }
      case "discard": {
        const def = SLOTS[op.slot];
        const first = def.hva + (op.page % def.pages);
        const count = Math.min(op.count, def.hva + def.pages - first);
        this.vm.hostSpace.discard(first, count);
        for (let p = first; p < first + count; p++) {
          this.mem.discard(p);
        }
        return;
      }
      case "migrate": {
        const hva =
          op.slot < 0
            ? TABLES_HVA + 0x10 + (op.page % 8)
            : SLOTS[op.slot].hva + (op.page % SLOTS[op.slot].pages);
        const old = this.vm.hostSpace.peek(hva);
        const next = this.vm.hostSpace.migrate(hva);
        if (old >= 0) expect(next).not.toBe(old);
        this.mem.touched.add(hva);
        return;
      }
      case "age": {
        this.vm.testAndClearYoung(op.first, op.count);
        expect(this.vm.testAndClearYoung(op.first, op.count)).toBe(0);
        return;
      }
      case "vmmWrite": {
        const gpa = op.target * 4096 + op.offset;
        const value = BigInt.asUintN(op.size * 8, op.value);
        const s = this.slotOf(op.target); // never an alias: the VMM's view has no stolen bits
        const expected = !s ? "mmio" : s.m.readOnly ? "readonly" : "ok";
        expect(this.vm.physical.write(gpa, op.size, value)).toBe(expected);
        if (expected === "ok") {
          const bytes = leBytes(value, op.size);
          this.physical(gpa, bytes, 0, op.size, true);
        }
        return;
      }
    }
  }

  private overlaps(def: SlotDef, base: number): boolean {
    for (const other of SLOTS) {
      if (other.id === def.id) continue;
      const m = this.slots.get(other.id);
      if (m && base < m.base + other.pages && m.base < base + def.pages) return true;
    }
    return false;
  }

  private checkLog(def: SlotDef, m: ModelSlot, log: Uint32Array, first: number, count: number): void {
    for (let p = first; p < first + count; p++) {
      const set = bit(log, p) === 1;
      if (m.written.has(p))
        expect(set, `slot ${def.id} page ${p} was written but is not in the dirty log`).toBe(true);
      else if (set)
        expect(m.maybe.has(p), `slot ${def.id} page ${p} is in the dirty log but was never written`).toBe(
          true,
        );
    }
  }

  private access(op: Extract<Op, { t: "access" }>): void {
    const vcpu = this.vcpus[op.cpu % this.vcpus.length];
    const va = op.huge
      ? VA_HUGE + op.page * 4096 + Math.min(op.offset, 4096 - op.size)
      : VA_SMALL +
        (op.page % SMALL_PAGES) * 4096 +
        (op.page % SMALL_PAGES === SMALL_PAGES - 1 ? Math.min(op.offset, 4096 - op.size) : op.offset);
    const value = BigInt.asUintN(op.size * 8, op.value);
    const write = op.kind === "store";
    this.stored = [];
    const expected = this.expectAccess(va, op.size, op.kind, value);
    const got = write
      ? vcpu.store(BigInt(va), op.size, value)
      : op.kind === "load"
        ? vcpu.load(BigInt(va), op.size)
        : vcpu.fetch(BigInt(va), op.size);
    expect(got).toEqual(expected);
    for (const w of this.stored) {
      const back = new Uint8Array(w.bytes.length);
      expect(this.vm.physical.readBytes(w.gpa, back)).toBe("ok");
      expect(back, `store read back at GPA ${hex(w.gpa)}`).toEqual(w.bytes);
    }
  }

  private expectAccess(va: number, n: Size, kind: "load" | "store" | "fetch", value: bigint): Outcome {
    const first = Math.min(n, 4096 - (va % 4096));
    const parts = [{ va, at: 0, len: first }];
    if (first < n) parts.push({ va: va + first, at: first, len: n - first });
    const gfns: number[] = [];
    for (const [k, part] of parts.entries()) {
      const t = this.guestPage(part.va, kind);
      if ("errorCode" in t) {
        // The first half was translated: a store's VM exit may have marked its page dirty.
        if (k === 1 && kind === "store") {
          const s = this.slotOf(gfns[0]);
          if (s?.m.dirtyLog && !s.m.readOnly) s.m.maybe.add(s.gfn - s.m.base);
        }
        return { ok: false, fault: { vector: 14, errorCode: t.errorCode, address: BigInt(part.va) } };
      }
      gfns.push(t.gfn);
    }
    const bytes = kind === "store" ? leBytes(value, n) : new Uint8Array(n);
    for (const [k, part] of parts.entries())
      this.physical(gfns[k] * 4096 + (part.va % 4096), bytes, part.at, part.len, kind === "store");
    return { ok: true, value: kind === "store" ? value : leValue(bytes) };
  }

  // --- invariants ---

  verify(full: boolean): void {
    expect(this.vm.check()).toEqual([]);
    expect(this.device.log).toEqual(this.device.expected);
    expect(this.vm.mmio.unclaimed).toBe(this.device.unclaimed);
    for (const def of SLOTS) {
      const m = this.slots.get(def.id);
      if (!m?.dirtyLog) continue;
      const bm = this.vm.memslots.get(def.id).dirtyBitmap!;
      for (const p of m.written)
        expect(bit(bm, p), `slot ${def.id} page ${p} written, dirty bit clear`).toBe(1);
    }
    const pages = full
      ? SLOTS.flatMap((d) => Array.from({ length: d.pages }, (_, i) => d.hva + i))
      : [...this.mem.touched];
    for (const hva of pages) this.comparePage(hva);
    this.mem.touched.clear();
  }

  private comparePage(hva: number): void {
    if (hva >= TABLES_HVA && hva < TABLES_HVA + 256) return; // guest tables: not modelled
    this.mem.compare(this.vm, hva);
  }
}

// --- The property ----------------------------------------------------------------------------

const configArb: fc.Arbitrary<Config> = fc.record({
  mode: fc.constantFrom("pae" as const, "4level" as const, "5level" as const),
  stolen: fc.boolean(),
  host: fc.integer({ min: 0, max: HOSTS.length - 1 }),
  nxHugePages: fc.boolean(),
  accessedDirty: fc.boolean(),
  vcpus: fc.integer({ min: 2, max: 3 }),
  logging: fc.array(fc.boolean(), { minLength: SLOTS.length, maxLength: SLOTS.length }),
});

function runSequence(cfg: Config, ops: Op[]): void {
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
        `after step ${i} (${cfg.mode} guest${cfg.stolen ? " with stolen bit 40" : ""} on ${HOSTS[cfg.host].name}, nxHugePages=${cfg.nxHugePages}, A/D=${cfg.accessedDirty}, ${cfg.vcpus} vCPUs):\n${history}\n${(e as Error).message}`,
      );
    }
  }
  h.vm.destroy();
  expect(h.vm.host.framesInUse).toBe(0);
}

describe("TDP MMU against a reference model", () => {
  it("random operation sequences keep memory, MMIO, dirty logs and check() exact", () => {
    fc.assert(
      fc.property(configArb, fc.array(opArb, { minLength: 10, maxLength: 60, size: "max" }), (cfg, ops) =>
        runSequence(cfg, ops),
      ),
      {
        numRuns: Number(process.env.RUNS ?? 1500),
        seed: Number(process.env.SEED ?? 0x7d9_2024),
        endOnFailure: false,
      },
    );
  });

  it("a fixed sequence: move a logging slot after writes keeps the written pages in its log", () => {
    runSequence(
      {
        mode: "4level",
        stolen: false,
        host: 0,
        nxHugePages: false,
        accessedDirty: true,
        vcpus: 2,
        logging: [],
      },
      [
        { t: "flags", slot: 0, dirtyLog: true },
        {
          t: "pte",
          page: 0,
          present: true,
          writable: true,
          nx: false,
          target: 0x400,
          alias: false,
          inval: "invlpg",
        },
        { t: "access", cpu: 1, kind: "store", huge: false, page: 0, offset: 8, size: 8, value: 7n },
        { t: "move", slot: 0, base: 3 },
        { t: "getLog", slot: 0 },
      ],
    );
  });
});
