import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { x86Leaf } from "../../src/index.js";
import { REGS } from "../fixtures/elf-core.js";
import { run, tempDir, writeDump } from "./helpers.js";

const { dir, cleanup } = tempDir();
afterAll(cleanup);

const long = writeDump(dir, "long.core", {
  regs: REGS.level4,
  notes: { csFlags: 1 << 21 },
  build(t) {
    t.map(0x400000n, 0x200000, 4096, x86Leaf({ user: true }));
    t.map(0x401000n, 0x201000, 4096, x86Leaf({ writable: false }));
    t.map(0xffffffff80000000n, 0x1000000, 2 << 20, x86Leaf({ global: true, noExecute: true }));
    t.map(0x500000n, 0x205000, 4096, x86Leaf({ user: true, pkey: 1 }));
  },
});
const bare = writeDump(dir, "bare.core.gz", {
  regs: REGS.level4,
  notes: false,
  compress: true,
  build(t) {
    t.map(0x400000n, 0x200000, 4096, x86Leaf({ user: true }));
  },
});

describe("vmmu translate", () => {
  it("translates with registers from the dump's QEMU note", async () => {
    const r = await run("translate", "--dump", long.path, "0x400123", "ffffffff80001234", "0x600000");
    expect(r.code).toBe(1); // one address faults
    expect(r.stdout).toBe(
      [
        "0x0000000000400123 -> 0x200123 (4 KiB page; user, writable, executable)",
        "0xffffffff80001234 -> 0x1001234 (2 MiB page; supervisor, writable, no-execute)",
        "0x0000000000600000 -> #PF error code 0x0 (none): not present at the PDE",
        "",
      ].join("\n"),
    );
    expect(r.stderr).toBe(
      "vmmu: note: EFER is not in the dump; assuming 0xd00 (long mode: the ELF machine is x86-64; NXE assumed on). Pass --efer to override.\n",
    );
  });

  it("exits 0 when every address translates", async () => {
    const r = await run("translate", "--dump", long.path, "--efer", "0xd00", "400000");
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
  });

  it("explains the walk level by level", async () => {
    const r = await run("translate", "--dump", long.path, "--efer", "0xd00", "--explain", "0x400123");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      [
        "4-level paging, CR3 0x100000, read at CPL 0",
        "0x0000000000400123 -> 0x200123 (4 KiB page; user, writable, executable)",
        "    PML4E at 0x000100000 = 0x0000000000101007  P W U",
        "    PDPTE at 0x000101000 = 0x0000000000102007  P W U",
        "    PDE   at 0x000102010 = 0x0000000000103007  P W U",
        "    PTE   at 0x000103000 = 0x0000000000200007  P W U",
        "",
      ].join("\n"),
    );
  });

  it("reports protection faults with the error code for the access, CPL and keys", async () => {
    const base = ["translate", "--dump", long.path, "--efer", "0xd00"];
    const w = await run(...base, "--access", "write", "--cpl", "3", "0x401000");
    expect(w.stdout).toBe("0x0000000000401000 -> #PF error code 0x7 (P W U): access rights at the PTE\n");
    const f = await run(...base, "--access", "fetch", "0xffffffff80000000");
    expect(f.stdout).toMatch(/#PF error code 0x11 \(P I\): access rights at the PDE/);
    // CR4.PKE with PKRU.AD for key 1: a user read of the key-1 page faults with PK.
    const k = await run(...base, "--cr4", "0x400020", "--pkru", "0x4", "--cpl", "3", "0x500000", "0x400000");
    expect(k.stdout).toBe(
      [
        "0x0000000000500000 -> #PF error code 0x25 (P U PK): protection key at the PTE",
        "0x0000000000400000 -> 0x200000 (4 KiB page; user, writable, executable)",
        "",
      ].join("\n"),
    );
    // SMAP: a supervisor read of a user page faults unless EFLAGS.AC=1.
    const s = await run(...base, "--cr4", "0x200020", "0x400000");
    expect(s.stdout).toMatch(/#PF error code 0x1 \(P\): access rights/);
    const ac = await run(...base, "--cr4", "0x200020", "--ac", "0x400000");
    expect(ac.code).toBe(0);
    const nc = await run(...base, "0x800000000000");
    expect(nc.stdout).toBe("0x0000800000000000 -> #GP: non-canonical address\n");
  });

  it("prints JSON with a schema version and hex strings for 64-bit values", async () => {
    const r = await run(
      "translate",
      "--dump",
      long.path,
      "--json",
      "--cpu",
      "qemu-max",
      "0x400123",
      "0x600000",
    );
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.stdout);
    expect(doc).toMatchObject({
      schemaVersion: 1,
      command: "translate",
      dump: long.path,
      cpu: "qemu-max",
      mode: "4level",
      registers: { cr0: "0x80010033", cr3: "0x100000", cr4: "0x20", efer: "0xd00" },
      registerSources: { cr0: "dump", cr3: "dump", cr4: "dump", efer: "inferred" },
      access: "read",
      cpl: 0,
      ac: false,
      pkru: "0x0",
      pkrs: "0x0",
    });
    expect(doc.results[0]).toEqual({
      address: "0x400123",
      ok: true,
      physical: "0x200123",
      pageSize: 4096,
      writable: true,
      user: true,
      executable: true,
      pkey: 0,
      path: [
        {
          level: 4,
          name: "PML4E",
          entryAddress: "0x100000",
          value: "0x101007",
          fromRegister: false,
          missing: false,
          flags: ["P", "W", "U"],
        },
        {
          level: 3,
          name: "PDPTE",
          entryAddress: "0x101000",
          value: "0x102007",
          fromRegister: false,
          missing: false,
          flags: ["P", "W", "U"],
        },
        {
          level: 2,
          name: "PDE",
          entryAddress: "0x102010",
          value: "0x103007",
          fromRegister: false,
          missing: false,
          flags: ["P", "W", "U"],
        },
        {
          level: 1,
          name: "PTE",
          entryAddress: "0x103000",
          value: "0x200007",
          fromRegister: false,
          missing: false,
          flags: ["P", "W", "U"],
        },
      ],
    });
    expect(doc.results[1]).toMatchObject({
      address: "0x600000",
      ok: false,
      fault: {
        kind: "page-fault",
        vector: 14,
        errorCode: "0x0",
        reason: "not-present",
        level: 2,
        levelName: "PDE",
      },
    });
    expect(doc.results[1].path).toHaveLength(3);
  });

  it("takes registers from options, with PCID bits in CR3", async () => {
    const r = await run(
      "translate",
      "--dump",
      bare.path,
      "--cr3",
      `${bare.cr3 | 0x8000_0000_0000_0123n}`,
      "--cr4",
      "0x20020",
      "--json",
      "400000",
    );
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.registerSources).toEqual({ cr0: "default", cr3: "option", cr4: "option", efer: "default" });
    expect(doc.registers.efer).toBe("0xd00");
    expect(doc.results[0].physical).toBe("0x200000");
  });

  it("PAE and 32-bit paging, and paging off", async () => {
    const pae = writeDump(dir, "pae.core", {
      regs: REGS.pae,
      build(t) {
        t.map(0xc0000000n, 0x1000000, 2 << 20, x86Leaf({ noExecute: true }));
      },
    });
    const r = await run("translate", "--dump", pae.path, "--explain", "0xc0000010");
    expect(r.stderr).toMatch(
      /assuming 0x800 \(not long mode: the ELF machine is i386 and CS\.L=0; NXE assumed on\)/,
    );
    expect(r.stdout).toBe(
      [
        "PAE paging, CR3 0x100000, read at CPL 0",
        "0xc0000010 -> 0x1000010 (2 MiB page; supervisor, writable, no-execute)",
        "    PDPTE at 0x000100018 = 0x0000000000101001  P  (PDPTE register, loaded at CR3 load)",
        "    PDE   at 0x000101000 = 0x8000000001000083  P W PS XD",
        "",
      ].join("\n"),
    );
    const big = await run("translate", "--dump", pae.path, "0x100000000");
    expect(big.code).toBe(2);
    expect(big.stderr).toMatch(/address 0x100000000 exceeds 32 bits \(PAE paging\)/);
    const b32 = writeDump(dir, "b32.core", {
      regs: REGS.bit32,
      elfClass: 32,
      build(t) {
        t.map(0x800000n, 0x1_0040_0000, 4 << 20, x86Leaf({ user: true }));
      },
    });
    const p = await run("translate", "--dump", b32.path, "--explain", "0x812345");
    expect(p.stdout).toBe(
      [
        "32-bit (PSE) paging, CR3 0x100000, read at CPL 0",
        "0x00812345 -> 0x100412345 (4 MiB page; user, writable, executable)",
        "    PDE   at 0x00100008 = 0x00402087  P W U PS",
        "",
      ].join("\n"),
    );
    const off = await run("translate", "--dump", b32.path, "--cr0", "0x11", "0x1234");
    expect(off.stdout).toBe("0x00001234 -> 0x1234 (paging off)\n");
    expect(off.stderr).toMatch(/paging is off/);
  });

  it("takes registers from another CPU with --vcpu", async () => {
    // Two CPUs: CPU 1's CR3 points at the tables, CPU 0's at an empty page.
    const smp = writeDump(dir, "smp.core", {
      regs: REGS.level4,
      cpus: (cr3) => [
        { cr0: REGS.level4.cr0, cr3: 0x3ff000n, cr4: 0x20n },
        { cr0: REGS.level4.cr0, cr3, cr4: 0x20n },
      ],
      build(t) {
        t.map(0x400000n, 0x200000, 4096, x86Leaf());
      },
    });
    const r0 = await run("translate", "--dump", smp.path, "--efer", "0xd00", "0x400000");
    expect(r0.stdout).toMatch(/not present at the PML4E/);
    const r1 = await run("translate", "--dump", smp.path, "--efer", "0xd00", "--vcpu", "1", "0x400000");
    expect(r1.stdout).toMatch(/-> 0x200000 /);
    const r2 = await run("translate", "--dump", smp.path, "--vcpu", "2", "0x400000");
    expect(r2.code).toBe(2);
    expect(r2.stderr).toMatch(/--vcpu 2: the dump has 2 CPUs \(0\.\.1\)/);
  });
});

describe("vmmu translate errors", () => {
  it("usage errors exit 2", async () => {
    const cases: [string[], RegExp][] = [
      [["translate", "--dump", long.path, "--bogus", "0x1"], /unknown option '--bogus'/],
      [
        ["translate", "--dump", long.path, "--cr3", "0xzz", "0x1"],
        /option '--cr3 <value>' argument '0xzz' is invalid\. "0xzz" is not a number/,
      ],
      [
        ["translate", "--dump", long.path, "--cpl", "4", "0x1"],
        /argument '4' is invalid\. the privilege level is 0\.\.3/,
      ],
      [
        ["translate", "--dump", long.path, "--access", "execute", "0x1"],
        /argument 'execute' is invalid\. Allowed choices are read, write, fetch/,
      ],
      [["translate", "--dump", long.path, "--cpu", "pentium", "0x1"], /Allowed choices are qemu-max/],
      [["translate", "--dump", long.path, "0xgg"], /"0xgg" is not a hex address/],
      [["translate", "--dump", long.path], /missing required argument 'va'/],
      [["translate", "0x1"], /required option '--dump <file>' not specified/],
      [["translate", "--dump", bare.path, "0x400000"], /--cr3 is required: the dump has no QEMU CPU notes/],
      [
        ["translate", "--dump", bare.path, "--vcpu", "0", "--cr3", "0x1000", "0x400000"],
        /--vcpu: the dump has no QEMU CPU notes/,
      ],
      [["frobnicate"], /unknown command 'frobnicate'/],
      [[], /Usage: vmmu/],
    ];
    for (const [argv, message] of cases) {
      const r = await run(...argv);
      expect(r.code, argv.join(" ")).toBe(2);
      expect(r.stderr, argv.join(" ")).toMatch(message);
      expect(r.stdout).toBe("");
    }
  });

  it("bad dumps and impossible states exit 1", async () => {
    const notElf = join(dir, "notes.txt");
    writeFileSync(notElf, "just some text, certainly not an ELF core\n");
    const truncated = join(dir, "truncated.core");
    writeFileSync(truncated, readFileSync(long.path).subarray(0, 0x10000));
    const cases: [string[], RegExp][] = [
      [["translate", "--dump", notElf, "0x1"], /vmmu: error: not an ELF file/],
      [["translate", "--dump", join(dir, "nope.core"), "0x1"], /vmmu: error: cannot open .*nope\.core/],
      [
        ["translate", "--dump", truncated, "0x1"],
        /vmmu: error: truncated segment 1 \(PT_LOAD\): file bytes 0x[0-9a-f]+\.\.0x[0-9a-f]+ extend past the end of the file \(0x10000 bytes\)/,
      ],
      [
        ["translate", "--dump", long.path, "--cr3", "0x40000000", "0x1"],
        /vmmu: error: CR3 0x40000000 points outside the dump's memory: its root table at guest-physical 0x40000000 is not in any PT_LOAD segment \(the dump holds 0x0-0x3fffff\)/,
      ],
      [
        ["translate", "--dump", long.path, "--cr4", "0x1020", "--cpu", "bochs-tigerlake", "0x1"],
        /vmmu: error: CR4\.LA57=1 but the CPU model does not support it/,
      ],
      [["translate", "--dump", long.path, "--cr4", "0x0", "0x1"], /IA-32e mode .* requires CR4\.PAE=1/],
    ];
    for (const [argv, message] of cases) {
      const r = await run(...argv);
      expect(r.stderr, argv.join(" ")).toMatch(message);
      expect(r.code, argv.join(" ")).toBe(1);
      expect(r.stdout).toBe("");
    }
  });

  it("--help for every command", async () => {
    for (const argv of [
      ["--help"],
      ["translate", "--help"],
      ["maps", "--help"],
      ["demo", "--help"],
      ["help", "maps"],
    ]) {
      const r = await run(...argv);
      expect(r.code, argv.join(" ")).toBe(0);
      expect(r.stdout).toMatch(/Usage: vmmu/);
    }
    const t = await run("translate", "--help");
    expect(t.stdout).toMatch(/--explain/);
    expect(t.stdout).toMatch(/EFER is not in the dump/);
    const v = await run("--version");
    expect(v.stdout).toBe("0.1.0\n");
  });
});
