#!/usr/bin/env node
/**
 * The `vmmu` command: a thin front end over the public API.
 *
 *   vmmu translate --dump FILE [--cr3 X ...] VA...   linear → physical through a dump's tables
 *   vmmu maps --dump FILE [--format ...]             every mapping (QEMU info tlb / info mem / JSON)
 *   vmmu demo                                        walks in every paging mode, explained
 *   vmmu simulate --workload NAME | --trace FILE...  a workload under several host MMUs
 *   vmmu workloads                                   the built-in workloads
 *   vmmu sweep CONFIG [--shard K/N]                  a grid of configurations, in parallel
 *   vmmu merge DIR... --out FILE                     combine the shards of a sweep
 *
 * `main(argv, io)` never exits the process: it returns 0 (ok), 1 (failure, or a translation
 * faulted) or 2 (usage). Results go to stdout, notes and errors to stderr.
 */

import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import type { AccessKind } from "../arch/access.js";
import { CPU_MODELS, CpuStateError, DEFAULT_CPU_MODEL } from "../arch/cpu.js";
import { DumpError } from "../dump/elf.js";
import { CostConfigError } from "../sim/cost.js";
import { TraceError } from "../sim/lackey.js";
import { SimulationError } from "../sim/runner.js";
import { SweepConfigError } from "../sim/sweep.js";
import { SweepDirError } from "../sim/sweep-run.js";
import { runDemo } from "./demo.js";
import { type Io, UsageError } from "./io.js";
import { type MapsFormat, runMaps } from "./maps.js";
import { registerMerge } from "./merge.js";
import { parseIndex, parseRegister, parseU32 } from "./registers.js";
import { InputError, registerSimulate } from "./simulate.js";
import { registerSweep } from "./sweep.js";
import { runTranslate } from "./translate.js";

export const VERSION = "0.1.0";

const REGISTER_HELP = `
Registers accept hex (0x...) or decimal; addresses are hex (0x optional).
Without --cr0/--cr3/--cr4 the values come from the dump's QEMU note of CPU --vcpu
(default 0); without a note CR0 = 0x80010033 and CR4 = 0x20, and --cr3 is required.
EFER is not in the dump: without --efer it is inferred (see docs/CLI.md).`;

function registerOptions(c: Command): Command {
  return c
    .requiredOption("--dump <file>", "QEMU dump-guest-memory ELF core (plain or .gz)")
    .option("--cr3 <value>", "CR3 as software writes it (PCID and no-flush bits allowed)", parseRegister)
    .option("--cr0 <value>", "CR0", parseRegister)
    .option("--cr4 <value>", "CR4", parseRegister)
    .option("--efer <value>", "IA32_EFER", parseRegister)
    .option("--vcpu <n>", "take registers from this CPU's QEMU note", parseIndex)
    .addOption(
      new Option("--cpu <model>", "CPU model (decides reserved bits, MAXPHYADDR, features)")
        .choices(Object.keys(CPU_MODELS))
        .default(DEFAULT_CPU_MODEL),
    );
}

/** Runs the command line `argv` (without the node and script paths). */
export async function main(
  argv: string[],
  io: Io = { stdout: process.stdout, stderr: process.stderr },
): Promise<number> {
  let code = 0;
  const program = new Command("vmmu")
    .description("Exact x86 memory virtualization: page-table walks over memory dumps")
    .version(VERSION)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
      outputError: (s, write) => write(`vmmu: ${s}`),
    })
    .showHelpAfterError("(run with --help for usage)");

  registerOptions(
    program
      .command("translate")
      .description("translate linear addresses through the page tables of a dump")
      .argument("<va...>", "linear addresses (hex)"),
  )
    .option("--cpl <n>", "current privilege level 0..3 (3 = user)", parseCpl, 0)
    .addOption(
      new Option("--access <kind>", "access kind").choices(["read", "write", "fetch"]).default("read"),
    )
    .option("--pkru <value>", "PKRU (protection keys for user pages)", parseU32)
    .option("--pkrs <value>", "IA32_PKRS (protection keys for supervisor pages)", parseU32)
    .option("--ac", "EFLAGS.AC=1 (lets supervisor code reach user pages under SMAP)")
    .option("--explain", "print the walk level by level")
    .option("--json", "machine-readable output (schemaVersion 1)")
    .addHelpText(
      "after",
      `${REGISTER_HELP}
Exit status: 0 when every address translates, 1 when one faults or on error, 2 on usage errors.

Example:
  vmmu translate --dump guest.core.gz --explain 0xffffffff81000000 0x400000`,
    )
    .action(async (vas: string[], o) => {
      code = await runTranslate(vas, { ...o, access: o.access as AccessKind }, io);
    });

  registerOptions(program.command("maps").description("list every mapping by enumerating the page tables"))
    .addOption(
      new Option("--format <format>", "output format")
        .choices(["qemu-tlb", "qemu-mem", "json"])
        .default("qemu-tlb"),
    )
    .addHelpText(
      "after",
      `${REGISTER_HELP}
Formats: qemu-tlb and qemu-mem are QEMU 7.2's monitor "info tlb" and "info mem"
line formats (where QEMU prints a wrong value vmmu prints the right one; see
docs/CLI.md); json lists each mapping with its flags.

Example:
  vmmu maps --dump guest.core.gz --format qemu-mem`,
    )
    .action(async (o) => {
      code = await runMaps({ ...o, format: o.format as MapsFormat }, io);
    });

  program
    .command("demo")
    .description("build page tables in every paging mode and explain a few walks")
    .action(() => {
      code = runDemo(io);
    });

  registerSimulate(program, io, (c) => {
    code = c;
  });
  registerSweep(program, io, (c) => {
    code = c;
  });
  registerMerge(program, io, (c) => {
    code = c;
  });

  try {
    await program.parseAsync(argv, { from: "user" });
    return code;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    if (e instanceof UsageError) {
      io.stderr.write(`vmmu: error: ${e.message}\n(run with --help for usage)\n`);
      return 2;
    }
    if (
      e instanceof DumpError ||
      e instanceof CpuStateError ||
      e instanceof TraceError ||
      e instanceof CostConfigError ||
      e instanceof SimulationError ||
      e instanceof SweepConfigError ||
      e instanceof SweepDirError ||
      e instanceof InputError
    ) {
      io.stderr.write(`vmmu: error: ${e.message}\n`);
      return 1;
    }
    if (e instanceof RangeError) {
      io.stderr.write(`vmmu: error: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}

function parseCpl(value: string): number {
  const n = parseIndex(value);
  if (n > 3) throw new InvalidArgumentError("the privilege level is 0..3");
  return n;
}

/** True when this module is the program being run (not imported). */
function isMain(): boolean {
  if (!process.argv[1]) return false;
  try {
    return realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) {
  // A closed pipe (vmmu maps ... | head) ends the listing quietly.
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "EPIPE") process.exit(0);
    throw e;
  });
  main(process.argv.slice(2)).then(
    (c) => {
      process.exitCode = c;
    },
    (e: unknown) => {
      process.stderr.write(
        `vmmu: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
      );
      process.exitCode = 1;
    },
  );
}
