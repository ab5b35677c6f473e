import { afterAll, describe, expect, it } from "vitest";
import { x86Leaf } from "../../src/index.js";
import { REGS } from "../fixtures/elf-core.js";
import { run, tempDir, writeDump } from "./helpers.js";

const { dir, cleanup } = tempDir();
afterAll(cleanup);

const small = writeDump(dir, "small.core", {
  regs: REGS.level4,
  build(t) {
    t.map(0x400000n, 0x200000, 4096, x86Leaf({ user: true, writable: false, accessed: true }));
    t.map(0x401000n, 0x201000, 4096, x86Leaf({ user: true, noExecute: true, dirty: true }));
    t.map(0xffffffff80000000n, 0x1000000, 2 << 20, x86Leaf({ global: true }));
  },
});

describe("vmmu maps", () => {
  it("prints QEMU's info tlb format (the default)", async () => {
    const r = await run("maps", "--dump", small.path, "--efer", "0xd00");
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe(
      [
        "0000000000400000: 0000000000200000 ----A--U-",
        "0000000000401000: 0000000000201000 X--D---UW",
        "ffffffff80000000: 0000000001000000 -GP-----W",
        "",
      ].join("\n"),
    );
  });

  it("prints QEMU's info mem format", async () => {
    const r = await run("maps", "--dump", small.path, "--efer", "0xd00", "--format", "qemu-mem");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      [
        "0000000000400000-0000000000401000 0000000000001000 ur-",
        "0000000000401000-0000000000402000 0000000000001000 urw",
        "ffffffff80000000-ffffffff80200000 0000000000200000 -rw",
        "",
      ].join("\n"),
    );
  });

  it("prints JSON", async () => {
    const r = await run("maps", "--dump", small.path, "--format", "json");
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc).toMatchObject({
      schemaVersion: 1,
      command: "maps",
      mode: "4level",
      registers: { cr0: "0x80010033", cr3: "0x100000", cr4: "0x20", efer: "0xd00" },
      registerSources: { cr0: "dump", cr3: "dump", cr4: "dump", efer: "inferred" },
      count: 3,
      reservedCount: 0,
      missingTables: [],
    });
    expect(doc.mappings).toEqual([
      {
        va: "0x400000",
        pa: "0x200000",
        size: 4096,
        level: 1,
        entryAddress: "0x103000",
        entry: "0x200025",
        writable: false,
        user: true,
        executable: true,
        global: false,
        accessed: true,
        dirty: false,
        reserved: false,
      },
      {
        va: "0x401000",
        pa: "0x201000",
        size: 4096,
        level: 1,
        entryAddress: "0x103008",
        entry: "0x8000000000201047",
        writable: true,
        user: true,
        executable: false,
        global: false,
        accessed: false,
        dirty: true,
        reserved: false,
      },
      {
        va: "0xffffffff80000000",
        pa: "0x1000000",
        size: 2097152,
        level: 2,
        entryAddress: "0x105000",
        entry: "0x1000183",
        writable: true,
        user: false,
        executable: true,
        global: true,
        accessed: false,
        dirty: false,
        reserved: false,
      },
    ]);
    // One mapping per line, for grep.
    expect(r.stdout.split("\n").filter((l) => l.startsWith('{"va"'))).toHaveLength(3);
  });

  it("prints PG disabled with paging off, as QEMU", async () => {
    for (const format of ["qemu-tlb", "qemu-mem"]) {
      const r = await run("maps", "--dump", small.path, "--cr0", "0x11", "--format", format);
      expect(r.stdout).toBe("PG disabled\n");
    }
    const j = await run("maps", "--dump", small.path, "--cr0", "0x11", "--format", "json");
    expect(JSON.parse(j.stdout)).toMatchObject({ mode: "none", mappings: [], count: 0 });
  });

  it("notes tables outside memory and reserved-bit entries on stderr", async () => {
    const odd = writeDump(dir, "odd.core", {
      regs: REGS.level4,
      build(t) {
        t.map(0x400000n, 0x200000, 4096, x86Leaf());
        t.map(0x40000000n, 0x200000, 4096, x86Leaf());
        t.write(t.entryAddress(0x40000000n, 2, false), 0x7000_0007, 0);
        t.map(0x600000n, 0x200000, 4096, x86Leaf());
        const pte = t.entryAddress(0x600000n, 1, false);
        const [lo, hi] = t.read(pte);
        t.write(pte, lo, hi | (1 << 12)); // bit 44: above MAXPHYADDR 40
      },
    });
    const r = await run("maps", "--dump", odd.path, "--cpu", "qemu-max");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      [
        "0000000000400000: 0000000000200000 --------W",
        "0000000000600000: 0000100000200000 --------W",
        "",
      ].join("\n"),
    );
    expect(r.stderr).toContain(
      "vmmu: note: 1 paging structure is outside the dump's memory and was skipped: PT at 0x70000000\n",
    );
    expect(r.stderr).toContain(
      "vmmu: note: 1 mapping goes through entries with reserved bits set for qemu-max; they are listed (QEMU's monitor does not check reserved bits), but an access through them faults (#PF with RSVD)\n",
    );
    const j = JSON.parse(
      (await run("maps", "--dump", odd.path, "--cpu", "qemu-max", "--format", "json")).stdout,
    );
    expect(j.reservedCount).toBe(1);
    expect(j.missingTables).toEqual([{ address: "0x70000000", level: 1, name: "PT" }]);
    expect(j.mappings[1].reserved).toBe(true);
    // With MAXPHYADDR 52 the same bit is an address bit.
    const wide = await run("maps", "--dump", odd.path, "--cpu", "intel-sapphirerapids");
    expect(wide.stderr).not.toContain("reserved");
  });

  it("errors: CR3 outside memory, bad format", async () => {
    const r = await run("maps", "--dump", small.path, "--cr3", "0x7ff000000");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/CR3 0x7ff000000 points outside the dump's memory/);
    const f = await run("maps", "--dump", small.path, "--format", "text");
    expect(f.code).toBe(2);
    expect(f.stderr).toMatch(/Allowed choices are qemu-tlb, qemu-mem, json/);
  });
});

describe("vmmu maps on a large aliased address space", () => {
  // 512 PDEs all pointing at one full page table: 262,144 4 KiB mappings.
  const aliased = writeDump(dir, "aliased.core.gz", {
    regs: REGS.level4,
    compress: true,
    build(t) {
      for (let i = 0; i < 512; i++)
        t.map(BigInt(i * 4096), 0x200000 + i * 4096, 4096, x86Leaf({ user: true }));
      const [lo, hi] = t.read(t.entryAddress(0n, 2, false));
      for (let i = 1; i < 512; i++) t.write(t.entryAddress(BigInt(i) << 21n, 2, true), lo, hi);
    },
  });

  it("lists all 262,144 mappings", async () => {
    const r = await run("maps", "--dump", aliased.path, "--efer", "0xd00");
    expect(r.code).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines).toHaveLength(262145);
    expect(lines[0]).toBe("0000000000000000: 0000000000200000 -------UW");
    expect(lines[511]).toBe("00000000001ff000: 00000000003ff000 -------UW");
    expect(lines[512]).toBe("0000000000200000: 0000000000200000 -------UW");
    expect(lines[262143]).toBe("000000003ffff000: 00000000003ff000 -------UW");
    expect(lines[262144]).toBe("");
  });

  it("merges them in info mem", async () => {
    const r = await run("maps", "--dump", aliased.path, "--efer", "0xd00", "--format", "qemu-mem");
    expect(r.stdout).toBe("0000000000000000-0000000040000000 0000000040000000 urw\n");
  });

  it("streams them as JSON", async () => {
    const r = await run("maps", "--dump", aliased.path, "--efer", "0xd00", "--format", "json");
    const doc = JSON.parse(r.stdout);
    expect(doc.count).toBe(262144);
    expect(doc.mappings).toHaveLength(262144);
    expect(doc.mappings[262143]).toMatchObject({ va: "0x3ffff000", pa: "0x3ff000" });
  });
});
