import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { x86Leaf } from "../../src/index.js";
import { REGS } from "../fixtures/elf-core.js";
import { run, tempDir, writeDump } from "./helpers.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");

describe("vmmu demo", () => {
  it("walks every paging mode and ends with a one-line summary", async () => {
    const r = await run("demo");
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines.length).toBeLessThan(100);
    for (const header of [
      "== 32-bit paging with PSE and PSE-36",
      "== PAE paging",
      "== 4-level paging",
      "== 5-level paging",
      "== EPT (Intel)",
      "== NPT (AMD)",
    ])
      expect(r.stdout).toContain(header);
    for (const result of [
      "0x400abc -> 0x123abc (4 KiB page; user, writable, executable)",
      "0x812345 -> 0x100412345 (4 MiB page; user, read-only, executable)",
      "0x400000 -> #PF error code 0x0 (none): not present at the PDPTE",
      "0x401008 -> #PF error code 0x7 (P W U): access rights at the PTE",
      "0x600000 -> #PF error code 0x9 (P RSVD): reserved bit set at the PDE",
      "0x100040 -> EPT violation, exit qualification 0x1a1 (read executable linear-valid linear-translation): access rights at the EPT PTE",
      "0x200000 -> EPT misconfiguration: forbidden R/W/X combination or memory type at the EPT PTE",
    ])
      expect(r.stdout).toContain(result);
    expect(lines[lines.length - 1]).toBe(
      "Summary: 12 walks in 6 formats (32-bit (PSE), PAE, 4-level, 5-level, EPT 4-level, NPT 4-level): 7 translated, 5 faulted (1 #PF not-present, 1 #PF protection, 1 #PF reserved-bit, 1 EPT violation, 1 EPT misconfig).",
    );
  });
});

describe("the vmmu program", () => {
  const { dir, cleanup } = tempDir();
  afterAll(cleanup);

  /** Runs src/cli/main.ts as a process (through tsx), as the bin runs dist/cli/main.js. */
  function spawnCli(
    args: string[],
    readBytes?: number,
  ): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const p = spawn(process.execPath, ["--import", "tsx", join(root, "src/cli/main.ts"), ...args], {
        cwd: root,
        env: { ...process.env, NO_COLOR: "1" },
      });
      let stdout = "";
      let stderr = "";
      p.stdout.setEncoding("utf8");
      p.stderr.setEncoding("utf8");
      p.stdout.on("data", (d: string) => {
        stdout += d;
        // Like `| head -c N`: close the pipe early.
        if (readBytes !== undefined && stdout.length >= readBytes) p.stdout.destroy();
      });
      p.stderr.on("data", (d: string) => {
        stderr += d;
      });
      p.on("close", (code) => resolve({ code, stdout, stderr }));
    });
  }

  it("sets the exit status and separates stdout from stderr", async () => {
    const d = writeDump(dir, "p.core", {
      regs: REGS.level4,
      build(t) {
        t.map(0x400000n, 0x200000, 4096, x86Leaf());
      },
    });
    const ok = await spawnCli(["translate", "--dump", d.path, "0x400000"]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toBe("0x0000000000400000 -> 0x200000 (4 KiB page; supervisor, writable, executable)\n");
    expect(ok.stderr).toMatch(/EFER is not in the dump/);
    const fault = await spawnCli(["translate", "--dump", d.path, "--efer", "0xd00", "0x800000"]);
    expect(fault.code).toBe(1);
    const usage = await spawnCli(["translate", "--dump", d.path, "--nope", "0x1"]);
    expect(usage.code).toBe(2);
    expect(usage.stdout).toBe("");
    expect(usage.stderr).toMatch(/unknown option '--nope'/);
  }, 30_000);

  it("ends quietly when its output pipe closes", async () => {
    const d = writeDump(dir, "big.core", {
      regs: REGS.level4,
      build(t) {
        for (let i = 0; i < 512; i++) t.map(BigInt(i * 4096), 0x200000, 4096, x86Leaf());
        const [lo, hi] = t.read(t.entryAddress(0n, 2, false));
        for (let i = 1; i < 512; i++) t.write(t.entryAddress(BigInt(i) << 21n, 2, true), lo, hi);
      },
    });
    const r = await spawnCli(["maps", "--dump", d.path, "--efer", "0xd00"], 100);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
  }, 30_000);
});
