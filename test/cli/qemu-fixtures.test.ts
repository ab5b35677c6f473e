/**
 * vmmu against QEMU 7.2 itself: the dumps, `info tlb` and `info mem` outputs in
 * test/fixtures/qemu were recorded from a live QEMU (capture.ts) for the tables of
 * scenarios.ts. vmmu must print the same bytes, except where QEMU prints a wrong value;
 * those lines are listed here, one by one, with the reason (and in docs/CLI.md).
 */

import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { openDump } from "../../src/index.js";
import { SCENARIOS } from "../fixtures/qemu/scenarios.js";
import { run } from "./helpers.js";

const here = join(dirname(fileURLToPath(import.meta.url)), "../fixtures/qemu");
const read = (f: string) => readFileSync(join(here, f), "utf8");

/** [QEMU's line, vmmu's line, why]: the only lines allowed to differ. */
const TLB_DIFFERENCES: Record<string, [string, string, string][]> = {
  "32bit": [
    [
      "0000000001000000: 0000000000400000 --P-A---W",
      "0000000001000000: 0000000100400000 --P-A---W",
      "4 MiB page above 4 GiB: QEMU drops the PSE-36 address bits 39:32 (PDE bits 20:13)",
    ],
    [
      "0000000001400000: 0000000000e00000 --P-----W",
      "0000000001400000: 0000000000c00000 --P-----W",
      "QEMU's 4 MiB mask keeps bit 21, which is reserved, inside the address",
    ],
  ],
  pae: [
    [
      "0000000000401000: 8000000000201000 X---A--UW",
      "0000000000401000: 0000000000201000 X---A--UW",
      "QEMU's PAE mask keeps bit 63 (NX) inside the physical address",
    ],
    [
      "00000000c0000000: 8000000001000000 XGP-----W",
      "00000000c0000000: 0000000001000000 XGP-----W",
      "QEMU's PAE mask keeps bit 63 (NX) inside the physical address",
    ],
  ],
  "4level": [],
  "5level": [],
};

/** QEMU 7.2's info mem tests presence inverted under 5-level paging and prints nothing. */
const MEM_5LEVEL = [
  "0000000000400000-0000000000401000 0000000000001000 urw",
  "0000000040000000-0000000080000000 0000000040000000 -rw",
  "0001000000000000-0001000000001000 0000000000001000 urw",
  "ff11000000000000-ff11000000200000 0000000000200000 -rw",
  "ffffffff80000000-ffffffff80200000 0000000000200000 -rw",
  "",
].join("\n");

function applyDifferences(qemu: string, diffs: [string, string, string][]): string {
  let out = qemu;
  for (const [q, v] of diffs) {
    expect(out, `QEMU's output has "${q}"`).toContain(`${q}\n`);
    out = out.replace(`${q}\n`, `${v}\n`);
  }
  return out;
}

describe("vmmu maps against QEMU 7.2's monitor", () => {
  for (const s of SCENARIOS) {
    const dump = join(here, `${s.name}.core.gz`);
    const regs = JSON.parse(read(`${s.name}.json`));

    it(`${s.name}: the dump QEMU wrote`, () => {
      const d = openDump(dump);
      expect(d.compression).toBe("gzip");
      expect(d.elfClass).toBe(64); // the BIOS ends at 4 GiB, so QEMU writes ELF64 even for 32-bit guests
      expect(d.machine).toBe((s.regs.efer & 0x400n) !== 0n ? "x86_64" : "i386");
      expect(d.cpus).toHaveLength(1);
      const c = d.cpus[0];
      expect([c.version, c.size]).toEqual([1, 440]);
      expect(c.kernelGsBase).toBe(0n);
      expect(`0x${c.cr0.toString(16)}`).toBe(regs.cr0);
      expect(`0x${c.cr3.toString(16)}`).toBe(regs.cr3);
      expect(`0x${c.cr4.toString(16)}`).toBe(regs.cr4);
      expect(d.memory.ranges).toEqual([
        [0, 0x200000],
        [0xffff0000, 0x100000000],
      ]);
      expect(d.memory.copiedPages).toBe(0);
    });

    it(`${s.name}: info tlb`, async () => {
      const r = await run("maps", "--dump", dump, "--cpu", "qemu-max", "--efer", regs.efer);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(applyDifferences(read(`${s.name}.tlb.txt`), TLB_DIFFERENCES[s.name]));
    });

    it(`${s.name}: info mem`, async () => {
      const r = await run(
        "maps",
        "--dump",
        dump,
        "--cpu",
        "qemu-max",
        "--efer",
        regs.efer,
        "--format",
        "qemu-mem",
      );
      expect(r.code).toBe(0);
      const qemu = read(`${s.name}.mem.txt`);
      if (s.name === "5level") {
        expect(qemu).toBe("");
        expect(r.stdout).toBe(MEM_5LEVEL);
      } else expect(r.stdout).toBe(qemu);
    });

    it(`${s.name}: every listed page translates to what the listing says`, async () => {
      const j = JSON.parse(
        (await run("maps", "--dump", dump, "--cpu", "qemu-max", "--efer", regs.efer, "--format", "json"))
          .stdout,
      );
      const ok = j.mappings.filter((m: { reserved: boolean }) => !m.reserved);
      const t = JSON.parse(
        (
          await run(
            "translate",
            "--dump",
            dump,
            "--cpu",
            "qemu-max",
            "--efer",
            regs.efer,
            "--json",
            ...ok.map((m: { va: string }) => m.va),
          )
        ).stdout,
      );
      expect(t.results.map((x: { physical: string }) => x.physical)).toEqual(
        ok.map((m: { pa: string }) => m.pa),
      );
    });
  }

  it("infers EFER from the dump as documented", async () => {
    const cases: [string, string][] = [
      ["32bit", "0x0"],
      ["pae", "0x800"],
      ["4level", "0xd00"],
      ["5level", "0xd00"],
    ];
    for (const [name, efer] of cases) {
      const r = await run(
        "translate",
        "--dump",
        join(here, `${name}.core.gz`),
        "--json",
        "--cpu",
        "qemu-max",
        "0x400000",
      );
      expect(JSON.parse(r.stdout).registers.efer, name).toBe(efer);
    }
  });
});
