import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { StringOutput } from "../../src/cli/io.js";
import { main } from "../../src/cli/main.js";
import type { PageTableBuilder } from "../../src/index.js";
import {
  type CoreCpu,
  guestMemory,
  gzip,
  physicalBytes,
  type Regs,
  tables,
  writeElfCore,
} from "../fixtures/elf-core.js";

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI in-process with captured output. */
export async function run(...argv: string[]): Promise<Run> {
  const stdout = new StringOutput();
  const stderr = new StringOutput();
  const code = await main(argv, { stdout, stderr });
  return { code, stdout: stdout.text, stderr: stderr.text };
}

/** A temporary directory removed by `cleanup`. */
export function tempDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "vmmu-cli-test-"));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface DumpSpec {
  regs: Regs;
  /** Guest memory size in pages (default 1024 = 4 MiB). */
  pages?: number;
  cpu?: string;
  /** Fill the tables. */
  build(t: PageTableBuilder): void;
  /** Write a QEMU note (default true) with these extra fields. */
  notes?: boolean | Partial<CoreCpu>;
  /** Write these CPU notes instead (given the tables' CR3). */
  cpus?: (cr3: bigint) => CoreCpu[];
  elfClass?: 32 | 64;
  machine?: number;
  compress?: boolean;
}

/** Builds guest memory and tables, writes an ELF core to `dir/name`, returns its path and CR3. */
export function writeDump(dir: string, name: string, spec: DumpSpec): { path: string; cr3: bigint } {
  const pages = spec.pages ?? 1024;
  const physical = guestMemory(pages);
  const t = tables(physical, spec.regs, 0x100, 256, spec.cpu ?? "qemu-max");
  spec.build(t);
  const notes = spec.notes ?? true;
  const long = (spec.regs.efer & 0x400n) !== 0n;
  const core = writeElfCore({
    elfClass: spec.elfClass,
    machine: spec.machine ?? (long ? 62 : 3),
    segments: [{ paddr: 0, data: physicalBytes(physical, 0, pages * 4096) }],
    cpus: spec.cpus
      ? spec.cpus(t.cr3)
      : notes
        ? [
            {
              cr0: spec.regs.cr0,
              cr3: t.cr3,
              cr4: spec.regs.cr4,
              ...(typeof notes === "object" ? notes : {}),
            },
          ]
        : [],
  });
  const path = join(dir, name);
  writeFileSync(path, spec.compress ? gzip(core) : core);
  return { path, cr3: t.cr3 };
}
