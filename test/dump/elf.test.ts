import { describe, expect, it } from "vitest";
import { memorySource } from "../../src/dump/elf.js";
import { decodeQemuCpuState } from "../../src/dump/qemu-note.js";
import { DumpError, parseElfCore, physicalRanges, readDump } from "../../src/index.js";
import { gzip, qemuCpuStateBytes, writeElfCore } from "../fixtures/elf-core.js";

const page = (fill: number, pages = 1) => new Uint8Array(4096 * pages).fill(fill);
const cpu0 = {
  cr0: 0x80050033n,
  cr3: 0x1234000n,
  cr4: 0x3006f0n,
  csFlags: 0xa09b00,
  rip: 0xffffffff81000000n,
};

function dumpError(bytes: Uint8Array): string {
  try {
    readDump(bytes);
  } catch (e) {
    expect(e).toBeInstanceOf(DumpError);
    return (e as Error).message;
  }
  throw new Error("expected a DumpError");
}

describe("ELF cores", () => {
  it("reads an ELF64 core with QEMU notes", () => {
    const core = writeElfCore({
      segments: [
        { paddr: 0, data: page(1, 2) },
        { paddr: 0x100000, data: page(2), memSize: 0x3000 },
      ],
      cpus: [cpu0, { ...cpu0, cr3: 0x5678000n, kernelGsBase: 0xffff888000010000n }],
    });
    const d = readDump(core);
    expect(d.elfClass).toBe(64);
    expect(d.machine).toBe("x86_64");
    expect(d.compression).toBe("none");
    expect(d.loads.map((l) => [l.index, l.paddr, l.fileSize, l.memSize])).toEqual([
      [1, 0, 0x2000, 0x2000],
      [2, 0x100000, 0x1000, 0x3000],
    ]);
    expect(d.memory.ranges).toEqual([
      [0, 0x2000],
      [0x100000, 0x103000],
    ]);
    expect(d.cpus).toHaveLength(2);
    const c = d.cpus[0];
    expect([c.index, c.version, c.size]).toEqual([0, 1, 432]);
    expect([c.cr0, c.cr3, c.cr4, c.rip]).toEqual([cpu0.cr0, cpu0.cr3, cpu0.cr4, cpu0.rip]);
    expect(c.cs.flags).toBe(0xa09b00);
    expect(c.cs.selector).toBe(0x10);
    expect(c.kernelGsBase).toBeUndefined();
    expect(d.cpus[1].cr3).toBe(0x5678000n);
    expect(d.cpus[1].size).toBe(440);
    expect(d.cpus[1].kernelGsBase).toBe(0xffff888000010000n);
  });

  it("reads an ELF32 core (EM_386)", () => {
    const core = writeElfCore({ elfClass: 32, segments: [{ paddr: 0x1000, data: page(7) }], cpus: [cpu0] });
    const d = readDump(core);
    expect(d.elfClass).toBe(32);
    expect(d.machine).toBe("i386");
    expect(d.cpus[0].cr3).toBe(cpu0.cr3);
    expect(d.memory.read(0x1ffe, 2)).toEqual(new Uint8Array([7, 7]));
  });

  it("reads gzip-compressed cores", () => {
    for (const elfClass of [32, 64] as const) {
      const d = readDump(
        gzip(writeElfCore({ elfClass, segments: [{ paddr: 0, data: page(9) }], cpus: [cpu0] })),
      );
      expect(d.compression).toBe("gzip");
      expect(d.memory.read(0, 4)).toEqual(new Uint8Array([9, 9, 9, 9]));
      expect(d.cpus[0].cr4).toBe(cpu0.cr4);
    }
  });

  it("reads extended program header numbering (e_phnum = PN_XNUM)", () => {
    for (const elfClass of [32, 64] as const) {
      const core = writeElfCore({ elfClass, xnum: true, segments: [{ paddr: 0x2000, data: page(3) }] });
      const elf = parseElfCore(memorySource(core));
      expect(elf.programHeaders).toBe(2);
      expect(elf.loads[0].paddr).toBe(0x2000);
    }
  });

  it("merges overlapping segments that describe the same bytes (dump-guest-memory -p)", () => {
    const core = writeElfCore({ segments: [{ paddr: 0, data: page(5, 2) }] });
    const elf = parseElfCore(memorySource(core));
    const s = elf.loads[0];
    // A second header for the second page, at the matching file offset (another virtual alias).
    const alias = {
      ...s,
      index: 2,
      paddr: 0x1000,
      offset: s.offset + 0x1000,
      fileSize: 0x1000,
      memSize: 0x1000,
    };
    expect(physicalRanges([s, alias])).toEqual([
      { paddr: 0, fileSize: 0x2000, memSize: 0x2000, offset: s.offset, segments: [1, 2] },
    ]);
    const extending = { ...alias, memSize: 0x1000, fileSize: 0x1000, paddr: 0x1000 };
    expect(physicalRanges([extending, s])[0].memSize).toBe(0x2000);
  });

  it("decodes QEMUCPUState field offsets", () => {
    const b = qemuCpuStateBytes({ cr0: 1n, cr3: 3n, cr4: 4n, cr2: 2n, rsp: 0x7ffcn, kernelGsBase: 9n });
    const s = decodeQemuCpuState(b, 5);
    expect([s.index, s.cr0, s.cr2, s.cr3, s.cr4, s.rsp, s.rflags, s.kernelGsBase]).toEqual([
      5,
      1n,
      2n,
      3n,
      4n,
      0x7ffcn,
      2n,
      9n,
    ]);
    expect(s.cs.limit).toBe(0xffffffff);
  });
});

describe("ELF core errors", () => {
  const good = writeElfCore({ segments: [{ paddr: 0, data: page(1) }], cpus: [cpu0] });
  const with16 = (at: number, v: number) => {
    const b = good.slice();
    new DataView(b.buffer).setUint16(at, v, true);
    return b;
  };

  it("not an ELF file", () => {
    expect(dumpError(new TextEncoder().encode("hello, this is not a core file"))).toMatch(/not an ELF file/);
    expect(dumpError(new Uint8Array(3))).toMatch(/not an ELF file/);
  });

  it("bad class and data encoding", () => {
    const b = good.slice();
    b[4] = 3;
    expect(dumpError(b)).toMatch(/unknown ELF class 3/);
    const c = good.slice();
    c[5] = 0;
    expect(dumpError(c)).toMatch(/unknown ELF data encoding 0/);
  });

  it("big-endian", () => {
    expect(dumpError(writeElfCore({ bigEndian: true, segments: [{ paddr: 0, data: page(1) }] }))).toMatch(
      /big-endian/,
    );
  });

  it("not a core", () => {
    expect(dumpError(with16(16, 2))).toMatch(/not a core file: e_type is 2 \(ET_EXEC\)/);
  });

  it("wrong machine", () => {
    expect(dumpError(with16(18, 183))).toMatch(/wrong machine: e_machine is 183/);
  });

  it("truncated header", () => {
    expect(dumpError(good.subarray(0, 40))).toMatch(
      /truncated ELF header: the file has 40 bytes, an ELF64 header needs 64/,
    );
    const e32 = writeElfCore({ elfClass: 32, segments: [{ paddr: 0, data: page(1) }] });
    expect(dumpError(e32.subarray(0, 50))).toMatch(/ELF32 header needs 52/);
  });

  it("truncated program headers", () => {
    expect(dumpError(good.subarray(0, 100))).toMatch(
      /truncated program headers: 2 × 56 bytes at offset 0x40 end at 0xb0/,
    );
  });

  it("truncated segment, naming the segment and offsets", () => {
    const cut = good.subarray(0, good.length - 100);
    expect(dumpError(cut)).toMatch(
      new RegExp(
        `truncated segment 1 \\(PT_LOAD\\): file bytes 0x${(good.length - 4096).toString(16)}\\.\\.0x${good.length.toString(16)} extend past the end of the file \\(0x${cut.length.toString(16)} bytes\\)`,
      ),
    );
    const far = writeElfCore({ segments: [{ paddr: 0, data: page(1), offsetOverride: 0x10000000 }] });
    expect(dumpError(far)).toMatch(/truncated segment 1 \(PT_LOAD\): file bytes 0x10000000\.\.0x10001000/);
  });

  it("overlapping segments", () => {
    const b = writeElfCore({
      segments: [
        { paddr: 0, data: page(1, 2) },
        { paddr: 0x1000, data: page(2) },
      ],
    });
    expect(dumpError(b)).toMatch(
      /overlapping segments: PT_LOAD 1 and PT_LOAD 2 both describe guest-physical 0x1000\.\.0x2000 with different contents/,
    );
  });

  it("no PT_LOAD", () => {
    expect(dumpError(writeElfCore({ segments: [], cpus: [cpu0] }))).toMatch(/no PT_LOAD segment/);
    expect(dumpError(with16(56, 0))).toMatch(/no program headers/);
  });

  it("bad program header fields", () => {
    expect(dumpError(with16(54, 32))).toMatch(/e_phentsize is 32, expected 56/);
    const big = writeElfCore({ segments: [{ paddr: 2 ** 52 - 0x1000, data: page(1, 2) }] });
    expect(dumpError(big)).toMatch(/goes past 2\^52/);
    const tail = writeElfCore({ segments: [{ paddr: 0, data: page(1, 2), memSize: 0x1000 }] });
    expect(dumpError(tail)).toMatch(/p_filesz 0x2000 is larger than p_memsz 0x1000/);
    expect(dumpError(with16(56, 0xffff))).toMatch(/PN_XNUM/);
  });

  it("truncated and malformed notes", () => {
    // Shrink the PT_NOTE's p_filesz so the QEMU note no longer fits.
    const b = good.slice();
    const v = new DataView(b.buffer);
    const noteSize = Number(v.getBigUint64(64 + 32, true));
    v.setBigUint64(64 + 32, BigInt(noteSize - 8), true);
    expect(dumpError(b)).toMatch(/truncated note at offset 0x[0-9a-f]+ of PT_NOTE segment 0/);
    v.setBigUint64(64 + 32, BigInt(noteSize + 6), true);
    expect(dumpError(b)).toMatch(/truncated note header/);
    expect(
      dumpError(writeElfCore({ segments: [{ paddr: 0, data: page(1) }], cpus: [{ ...cpu0, version: 2 }] })),
    ).toMatch(/QEMU note of CPU 0: unsupported QEMUCPUState version 2/);
    expect(
      dumpError(writeElfCore({ segments: [{ paddr: 0, data: page(1) }], cpus: [{ ...cpu0, size: 100 }] })),
    ).toMatch(/size field 100 is not between 432/);
  });

  it("corrupt gzip", () => {
    const z = gzip(good);
    expect(dumpError(z.slice(0, z.length - 12))).toMatch(/corrupt gzip data: unexpected end of file/);
    const bad = z.slice();
    bad[3] = 0xff; // reserved FLG bits
    expect(dumpError(bad)).toMatch(/corrupt gzip data/);
  });
});
