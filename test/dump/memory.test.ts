import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  ACCESS_WRITE,
  CMPXCHG_NOT_RAM,
  CMPXCHG_READONLY,
  CpuRole,
  cpuModel,
  cpuWalker,
  DumpMemory,
  openDump,
  readDump,
  translate,
  Walk,
  x86Leaf,
} from "../../src/index.js";
import { guestMemory, gzip, physicalBytes, REGS, tables, writeElfCore } from "../fixtures/elf-core.js";

const dir = mkdtempSync(join(tmpdir(), "vmmu-dump-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Bytes whose value tells their guest-physical address: word i holds its address. */
function addressPattern(paddr: number, length: number): Uint8Array {
  const b = new Uint8Array(length);
  const v = new DataView(b.buffer);
  for (let i = 0; i + 4 <= length; i += 4) v.setUint32(i, paddr + i, true);
  return b;
}

describe("DumpMemory", () => {
  it("serves aligned pages in place and others by copy", () => {
    const d = readDump(
      writeElfCore({ segments: [{ paddr: 0x10000, data: addressPattern(0x10000, 0x4000) }] }),
    );
    const m = d.memory;
    for (let gfn = 0x10; gfn < 0x14; gfn++) {
      const w = m.frameWords(gfn)!;
      expect(w[m.frameBase]).toBe(gfn * 4096);
      expect(w[m.frameBase + 1023]).toBe(gfn * 4096 + 4092);
    }
    expect(m.copiedPages).toBe(0);
    expect(m.frameWords(0xf)).toBeNull();
    expect(m.frameWords(0x14)).toBeNull();
  });

  it("handles misaligned file offsets", () => {
    for (const pad of [1, 2, 3]) {
      const d = readDump(
        writeElfCore({ pad, segments: [{ paddr: 0x3000, data: addressPattern(0x3000, 0x2000) }] }),
      );
      const m = d.memory;
      const w = m.frameWords(4)!;
      expect(w[m.frameBase + 5]).toBe(0x4014);
      expect(m.copiedPages).toBe(1);
      // The copy is cached.
      m.frameWords(4);
      expect(m.copiedPages).toBe(1);
    }
  });

  it("handles segments that start and end mid-page, and zero-filled tails", () => {
    const d = readDump(
      writeElfCore({
        segments: [
          { paddr: 0x1800, data: addressPattern(0x1800, 0x1000) },
          { paddr: 0x2800, data: addressPattern(0x2800, 0x400), memSize: 0x1000 },
          { paddr: 0x5000, data: new Uint8Array(0), memSize: 0x1000 },
        ],
      }),
    );
    const m = d.memory;
    const p1 = m.frameWords(1)!;
    expect(p1[m.frameBase]).toBe(0); // before the segment: not in the dump, reads zero
    expect(p1[m.frameBase + 0x800 / 4]).toBe(0x1800);
    const p2 = m.frameWords(2)!;
    expect(p2[m.frameBase + 0x7fc / 4]).toBe(0x27fc);
    expect(p2[m.frameBase + 0x800 / 4]).toBe(0x2800); // second segment continues mid-page
    expect(p2[m.frameBase + 0xbfc / 4]).toBe(0x2bfc);
    expect(p2[m.frameBase + 0xc00 / 4]).toBe(0); // zero tail
    const p3 = m.frameWords(3)!;
    expect(p3[m.frameBase + 0x7fc / 4]).toBe(0); // tail up to 0x3800
    expect(m.frameWords(4)).toBeNull();
    expect(m.frameWords(5)![m.frameBase]).toBe(0); // memsz-only segment
    expect(m.ranges).toEqual([
      [0x1800, 0x3800],
      [0x5000, 0x6000],
    ]);
    expect(m.size).toBe(0x3000);
  });

  it("read() is exact to the byte", () => {
    const d = readDump(
      writeElfCore({
        segments: [
          { paddr: 0x1000, data: addressPattern(0x1000, 0x1000) },
          { paddr: 0x2000, data: addressPattern(0x2000, 0x800), memSize: 0x1000 },
        ],
      }),
    );
    const m = d.memory;
    expect(Array.from(m.read(0x1ffc, 8)!)).toEqual([0xfc, 0x1f, 0, 0, 0, 0x20, 0, 0]);
    expect(Array.from(m.read(0x27fe, 4)!)).toEqual([0, 0, 0, 0]);
    expect(m.read(0x2ffe, 4)).toBeNull();
    expect(m.read(0xfff, 2)).toBeNull();
    expect(m.read(0x1000, 0)).toEqual(new Uint8Array(0));
    expect(() => m.read(-1, 4)).toThrow(RangeError);
  });

  it("is read-only", () => {
    const d = readDump(writeElfCore({ segments: [{ paddr: 0, data: new Uint8Array(4096) }] }));
    expect(d.memory.compareExchange(0x10)).toBe(CMPXCHG_READONLY);
    expect(d.memory.compareExchange(0x10000)).toBe(CMPXCHG_NOT_RAM);
  });

  it("refuses overlapping pieces", () => {
    expect(
      () =>
        new DumpMemory([
          { start: 0, end: 0x2000, bytes: new Uint8Array(0x2000) },
          { start: 0x1000, end: 0x3000, bytes: new Uint8Array(0) },
        ]),
    ).toThrow(/overlap/);
  });
});

describe("walks over a dump", () => {
  const physical = guestMemory(1024);
  const t = tables(physical, REGS.level4, 0x10);
  const t4 = t;
  t.map(0x400000n, 0x200000, 4096, x86Leaf({ user: true }));
  t.map(0x7fff0000n, 0x300000, 4096, x86Leaf({ user: true, writable: false }));
  t.map(0xffffffff80000000n, 0x1000000, 2 << 20, x86Leaf({ global: true }));
  const bytes = physicalBytes(physical, 0, 1024 * 4096);

  it("agree with walks over the live guest memory, and write nothing", () => {
    // Odd padding: every frame of the dump is served by copy; the walker must not care.
    for (const pad of [0, 2]) {
      const core = writeElfCore({ pad, segments: [{ paddr: 0, data: bytes }] });
      const snapshot = core.slice();
      const d = readDump(core);
      const state = { ...REGS.level4, cr3: t.cr3 };
      for (const va of [0x400123n, 0x7fff0ffcn, 0xffffffff80123456n, 0x500000n, 0x8000_0000_0000n]) {
        for (const access of ["read", "write"] as const) {
          const a = translate(physical, state, va, { access, setAccessedDirty: false });
          const b = translate(d.memory, state, va, { access });
          expect(b).toEqual(a);
        }
      }
      // A walk asked to set A/D (the default) leaves the dump untouched.
      const role = CpuRole.from(REGS.level4, cpuModel("intel-sapphirerapids"));
      const w = new Walk();
      expect(cpuWalker(d.memory, role, t.cr3).walk(0, 0x400000, ACCESS_WRITE, w)).toBe(true);
      expect(Buffer.compare(core, snapshot)).toBe(0);
    }
  });

  it("open from files, plain and gzip, in chunks", () => {
    const core = writeElfCore({
      segments: [
        { paddr: 0, data: bytes.subarray(0, 0x80000) },
        { paddr: 0x80000, data: bytes.subarray(0x80000), memSize: bytes.length - 0x80000 + 0x1000 },
      ],
      cpus: [{ cr0: REGS.level4.cr0, cr3: t.cr3, cr4: REGS.level4.cr4 }],
    });
    const plain = join(dir, "guest.core");
    const packed = join(dir, "guest.core.gz");
    writeFileSync(plain, core);
    writeFileSync(packed, gzip(core));
    const state = { ...REGS.level4, cr3: t.cr3 };
    const expected = translate(physical, state, 0xffffffff80123456n, { setAccessedDirty: false });
    for (const d of [openDump(plain), openDump(plain, { readChunkBytes: 0x3000 }), openDump(packed)]) {
      expect(d.cpus[0].cr3).toBe(t.cr3);
      expect(translate(d.memory, state, 0xffffffff80123456n)).toEqual(expected);
      expect(d.memory.ranges).toEqual([[0, bytes.length + 0x1000]]);
      expect(d.memory.read(0x10000, 8)).toEqual(bytes.subarray(0x10000, 0x10008));
      expect(d.memory.copiedPages).toBe(0);
    }
    expect(openDump(packed).compression).toBe("gzip");
    expect(() => openDump(plain, { readChunkBytes: 100 })).toThrow(RangeError);
    expect(() => openDump(join(dir, "missing.core"))).toThrow(/cannot open/);
  });

  it("reads a plain file lazily, chunk by chunk, until closed", () => {
    const big = physicalBytes(physical, 0, bytes.length);
    const file = join(dir, "lazy.core");
    writeFileSync(file, writeElfCore({ segments: [{ paddr: 0, data: big }] }));
    const d = openDump(file, { readChunkBytes: 0x10000 });
    expect(d.memory.loadedBytes).toBe(0);
    const t = translate(d.memory, { ...REGS.level4, cr3: t4.cr3 }, 0xffffffff80123456n);
    expect(t.physical).toBe(0x1123456n);
    // The four tables live in one 64 KiB chunk.
    expect(d.memory.loadedBytes).toBe(0x10000);
    expect(d.memory.read(0x3ff000, 4)).toEqual(big.subarray(0x3ff000, 0x3ff004));
    expect(d.memory.loadedBytes).toBe(0x20000);
    d.close();
    d.close();
    expect(d.memory.read(0x3ff000, 4)).toEqual(big.subarray(0x3ff000, 0x3ff004)); // already loaded
    expect(() => d.memory.read(0x200000, 4)).toThrow(/the dump was closed/);
  });

  it("reads a plain file whose segment starts at an odd physical address", () => {
    const file = join(dir, "odd.core");
    writeFileSync(
      file,
      writeElfCore({ pad: 1, segments: [{ paddr: 0x1002, data: addressPattern(0x1002, 0x3000) }] }),
    );
    const d = openDump(file, { readChunkBytes: 0x1000 });
    const w = d.memory.frameWords(2)!;
    expect(new DataView(w.buffer, w.byteOffset + d.memory.frameBase * 4 + 2, 4).getUint32(0, true)).toBe(
      0x2002,
    );
    expect(d.memory.read(0x3ffe, 4)).toEqual(addressPattern(0x1002, 0x3000).subarray(0x2ffc, 0x3000));
  });
});
